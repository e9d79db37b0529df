//! Hostile inputs a plant's edge PC meets over months, run through the real binary on real
//! WAV files with the bundled model on ONNX Runtime: environment variables that are not
//! UTF-8, WAV headers with absurd rates or sizes, FIFOs where files should be, profiles left
//! half-replaced or tampered with, symlink loops, folders sharing file names, unreadable files
//! in an `eval`, tiny hops, and a binary installed away from its source tree. Each must end
//! in a clear error naming the file or key (or in a correct result), within bounded time and
//! memory, without losing the other inputs' results.

use serde_json::Value;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

const EARSHOT: &str = env!("CARGO_BIN_EXE_earshot");
const BUNDLED_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/panns-mobilenetv1-seeded"
);
/// Every run here finishes in seconds; one that takes this long has hung.
const HANG: Duration = Duration::from_secs(60);
/// Address space a run may reserve: far below what the absurd headers claim, far above
/// what scoring a few seconds of audio needs.
const ADDRESS_SPACE: u64 = 3 << 30;

fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(EARSHOT);
    c.args(args).env("EARSHOT_LOG", "warn");
    c
}

/// Runs to completion, failing the test (after killing the child) if it takes longer than
/// [`HANG`]: a hang must show up as a failure, not as a stuck test run.
fn run(mut c: Command) -> Output {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().expect("run earshot");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(HANG) {
        Ok(out) => out.expect("wait for earshot"),
        Err(_) => {
            // SAFETY: kill(2) on the PID of our own child that has not been reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("earshot hung (killed after {HANG:?}): {c:?}");
        }
    }
}

fn earshot(args: &[&str]) -> Output {
    run(cmd(args))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn assert_no_panic(o: &Output) {
    let e = stderr(o);
    assert!(
        !e.contains("panicked") && o.status.code().is_some_and(|c| c != 101),
        "earshot panicked or was killed ({:?}): {e}",
        o.status
    );
}

fn lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

/// Deterministic test signal: a hum with harmonics plus a little noise.
fn signal(sr: u32, seconds: f64, seed: u64) -> Vec<f32> {
    let n = (sr as f64 * seconds).round() as usize;
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let f0 = 150.0 + 10.0 * (seed % 5) as f64;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let noise = (x >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
            let w = std::f64::consts::TAU * f0 * i as f64 / sr as f64;
            (0.2 * w.sin() + 0.08 * (2.0 * w).sin() + 0.05 * noise) as f32
        })
        .collect()
}

fn write_wav(path: &Path, sr: u32, seconds: f64, seed: u64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: sr,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for v in signal(sr, seconds, seed) {
        w.write_sample((v * 32767.0).round() as i16).expect("write");
    }
    w.finalize().expect("finalize");
}

/// A hand-written PCM RIFF/WAVE header, for headers no encoder would write.
fn raw_header(ch: u16, sr: u32, bits: u16, data_len: u32) -> Vec<u8> {
    let block = ch * bits / 8;
    let mut v = b"RIFF".to_vec();
    v.extend(36u32.wrapping_add(data_len).to_le_bytes());
    v.extend(b"WAVEfmt ");
    v.extend(16u32.to_le_bytes());
    v.extend(1u16.to_le_bytes());
    v.extend(ch.to_le_bytes());
    v.extend(sr.to_le_bytes());
    v.extend(sr.wrapping_mul(u32::from(block)).to_le_bytes());
    v.extend(block.to_le_bytes());
    v.extend(bits.to_le_bytes());
    v.extend(b"data");
    v.extend(data_len.to_le_bytes());
    v
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(s(path)).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

fn learn(normal: &[&Path], out: &Path) -> Output {
    let mut args = vec![
        "learn",
        "--model",
        BUNDLED_MODEL,
        "--out",
        s(out),
        "--normal",
    ];
    args.extend(normal.iter().map(|p| s(p)));
    earshot(&args)
}

fn learn_ok(normal: &[&Path], out: &Path) -> String {
    let o = learn(normal, out);
    assert!(o.status.success(), "learn failed: {}", stderr(&o));
    stdout(&o)
}

fn score(profile: &Path, files: &[&Path]) -> Output {
    let mut args = vec!["score", "--model", BUNDLED_MODEL, "--profile", s(profile)];
    args.extend(files.iter().map(|p| s(p)));
    earshot(&args)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn manifest(profile: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(profile.join("manifest.json")).unwrap()).unwrap()
}

fn set_manifest(profile: &Path, m: &Value) {
    std::fs::write(
        profile.join("manifest.json"),
        serde_json::to_string_pretty(m).unwrap(),
    )
    .unwrap();
}

struct Shared {
    _dir: tempfile::TempDir,
    /// Three 3 s normal clips.
    normal: PathBuf,
    /// Learned from `normal`.
    profile: PathBuf,
    /// Learned from clips of the same lengths but other sounds (same counts as `profile`).
    other: PathBuf,
    /// A 2 s clip to score.
    good: PathBuf,
}

fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let normal = dir.path().join("normal");
        let other_normal = dir.path().join("other-normal");
        std::fs::create_dir(&normal).unwrap();
        std::fs::create_dir(&other_normal).unwrap();
        for i in 0..3 {
            write_wav(&normal.join(format!("n{i}.wav")), 16_000, 3.0, i);
            write_wav(&other_normal.join(format!("n{i}.wav")), 16_000, 3.0, 10 + i);
        }
        let profile = dir.path().join("profile");
        learn_ok(&[&normal], &profile);
        let other = dir.path().join("other");
        learn_ok(&[&other_normal], &other);
        let good = dir.path().join("good.wav");
        write_wav(&good, 16_000, 2.0, 99);
        Shared {
            _dir: dir,
            normal,
            profile,
            other,
            good,
        }
    })
}

fn assert_scored(o: &Output, file: &Path) {
    assert!(
        lines(o)
            .iter()
            .any(|v| v["type"] == "clip" && v["file"] == s(file)),
        "{} was not scored: {}",
        file.display(),
        stderr(o)
    );
}

// ---------------------------------------------------------------------------------------
// Environment

#[test]
fn non_utf8_environment_variables() {
    let sh = shared();
    // Not ours (a Latin-1 file name in some other program's variable): ignored.
    let mut c = cmd(&["score", "--profile", s(&sh.profile), s(&sh.good)]);
    c.env("PLANT_NOTE", OsString::from_vec(b"Pr\xfcfstand 3".to_vec()));
    let o = run(c);
    assert_no_panic(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_scored(&o, &sh.good);

    // Ours: a clear error naming it.
    let mut c = cmd(&["score", "--profile", s(&sh.profile), s(&sh.good)]);
    c.env(
        "EARSHOT_WINDOW__HOP_SECONDS",
        OsString::from_vec(b"0.\xff".to_vec()),
    );
    let o = run(c);
    assert_no_panic(&o);
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("EARSHOT_WINDOW__HOP_SECONDS") && e.contains("UTF-8"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------
// WAV headers

#[test]
fn absurd_wav_headers_are_refused_in_bounded_memory_and_later_files_still_scored() {
    let sh = shared();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut bad = Vec::new();
    // 8-bit mono, so that even 4294967295 Hz gives a consistent byte rate.
    for (name, sr) in [("one_hz.wav", 1u32), ("max_hz.wav", u32::MAX)] {
        let p = d.join(name);
        let mut b = raw_header(1, sr, 8, 16_000);
        b.extend(std::iter::repeat_n(0x90u8, 16_000));
        std::fs::write(&p, b).unwrap();
        bad.push((p, "sample rate"));
    }
    // Claims 4 GB of audio; 1 s is really there.
    let huge = d.join("claims_4gb.wav");
    let mut b = raw_header(2, 48_000, 16, 0xFFFF_FFF0);
    b.extend(std::iter::repeat_n([0x10u8, 0x01], 2 * 48_000).flatten());
    std::fs::write(&huge, b).unwrap();
    bad.push((huge, "truncated"));
    // Thousands of channels.
    let wide = d.join("channels.wav");
    let mut b = raw_header(4000, 48_000, 16, 4000 * 2 * 10);
    b.extend(std::iter::repeat_n(0u8, 4000 * 2 * 10));
    std::fs::write(&wide, b).unwrap();
    bad.push((wide, "channels"));

    let mut c = cmd(&[
        "score",
        "--model",
        BUNDLED_MODEL,
        "--profile",
        s(&sh.profile),
    ]);
    c.args(bad.iter().map(|(p, _)| s(p)));
    c.arg(&sh.good);
    // What the headers claim must not be allocated: cap the address space well below it.
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: ADDRESS_SPACE,
                rlim_max: ADDRESS_SPACE,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = run(c);
    assert_no_panic(&o);
    let e = stderr(&o);
    assert!(!e.contains("memory allocation"), "{e}");
    assert_scored(&o, &sh.good);
    for (p, what) in &bad {
        let line = e
            .lines()
            .find(|l| l.contains(s(p)))
            .unwrap_or_else(|| panic!("{} not named: {e}", p.display()));
        assert!(line.contains(what), "{line}");
    }
    assert!(
        !o.status.success(),
        "bad files must make the exit status fail"
    );
}

// ---------------------------------------------------------------------------------------
// FIFOs

#[test]
fn fifos_wherever_earshot_reads_are_refused_without_hanging() {
    let sh = shared();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // The WAV to score; the good file after it is still scored.
    let fifo_wav = d.join("pipe.wav");
    mkfifo(&fifo_wav);
    let o = score(&sh.profile, &[&fifo_wav, &sh.good]);
    assert!(stderr(&o).contains(s(&fifo_wav)) && stderr(&o).contains("FIFO"));
    assert_scored(&o, &sh.good);

    // A WAV in a --normal directory.
    let normal = d.join("normal");
    copy_dir(&sh.normal, &normal);
    mkfifo(&normal.join("zz.wav"));
    let o = learn(&[&normal], &d.join("p"));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("zz.wav") && stderr(&o).contains("FIFO"),
        "{}",
        stderr(&o)
    );

    // Model files.
    for file in ["card.json", "model.onnx"] {
        let model = d.join(format!("model-{file}"));
        copy_dir(Path::new(BUNDLED_MODEL), &model);
        std::fs::remove_file(model.join(file)).unwrap();
        mkfifo(&model.join(file));
        let o = earshot(&[
            "score",
            "--model",
            s(&model),
            "--profile",
            s(&sh.profile),
            s(&sh.good),
        ]);
        let e = stderr(&o);
        assert!(!o.status.success(), "{e}");
        assert!(e.contains(file) && e.contains("FIFO"), "{file}: {e}");
    }

    // Profile files.
    for file in ["manifest.json", "ids.txt", "embeddings.f32"] {
        let p = d.join(format!("profile-{file}"));
        copy_dir(&sh.profile, &p);
        std::fs::remove_file(p.join(file)).unwrap();
        mkfifo(&p.join(file));
        let o = score(&p, &[&sh.good]);
        let e = stderr(&o);
        assert!(!o.status.success(), "{e}");
        assert!(e.contains(file) && e.contains("FIFO"), "{file}: {e}");
    }

    // The config file, an eval manifest.
    let cfg = d.join("earshot.toml");
    mkfifo(&cfg);
    let o = earshot(&[
        "learn",
        "--config",
        s(&cfg),
        "--normal",
        s(&sh.normal),
        "--out",
        s(&d.join("q")),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("FIFO"),
        "{}",
        stderr(&o)
    );
    let csv = d.join("manifest.csv");
    mkfifo(&csv);
    let o = earshot(&["eval", "--model", BUNDLED_MODEL, "--manifest", s(&csv)]);
    assert!(
        !o.status.success() && stderr(&o).contains("FIFO"),
        "{}",
        stderr(&o)
    );

    // The service: the events file in the state directory, and a replayed source.
    let state = d.join("state");
    std::fs::create_dir(&state).unwrap();
    mkfifo(&state.join("events.jsonl"));
    let service_cfg = d.join("service.toml");
    std::fs::write(
        &service_cfg,
        format!(
            "[model]\ndir = \"{BUNDLED_MODEL}\"\n[daemon]\nstate_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[[monitor]]\nname = \"m\"\nprofile = \"{}\"\nsource = {{ file = \"{}\", realtime = false }}\n",
            s(&state),
            s(&sh.profile),
            s(&sh.good)
        ),
    )
    .unwrap();
    let o = earshot(&["run", "--exit-when-done", "--config", s(&service_cfg)]);
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(e.contains("events.jsonl") && e.contains("FIFO"), "{e}");

    let state2 = d.join("state2");
    std::fs::create_dir(&state2).unwrap();
    std::fs::write(
        &service_cfg,
        format!(
            "[model]\ndir = \"{BUNDLED_MODEL}\"\n[daemon]\nstate_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[[monitor]]\nname = \"piped\"\nprofile = \"{}\"\nsource = {{ file = \"{}\", realtime = false }}\n\n[[monitor]]\nname = \"fine\"\nprofile = \"{}\"\nsource = {{ file = \"{}\", realtime = false }}\n",
            s(&state2),
            s(&sh.profile),
            s(&fifo_wav),
            s(&sh.profile),
            s(&sh.good)
        ),
    )
    .unwrap();
    let o = earshot(&["run", "--exit-when-done", "--config", s(&service_cfg)]);
    let e = stderr(&o);
    assert!(e.contains("pipe.wav") && e.contains("FIFO"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Profiles

fn siblings(profile: &Path) -> Vec<String> {
    let name = profile.file_name().unwrap().to_string_lossy().into_owned();
    let mut v: Vec<String> = std::fs::read_dir(profile.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!(".{name}.")))
        .collect();
    v.sort();
    v
}

#[test]
fn relearning_replaces_a_profile_whole_even_after_an_interrupted_write() {
    let sh = shared();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("press");
    copy_dir(&sh.profile, &p);
    let before = manifest(&p);

    // An earlier learn killed while writing its new copy: a partial directory beside it.
    let partial = dir.path().join(".press.new-4242-1");
    std::fs::create_dir(&partial).unwrap();
    std::fs::write(partial.join("embeddings.f32"), [0u8; 100]).unwrap();
    let o = score(&p, &[&sh.good]);
    assert!(
        o.status.success(),
        "the old profile must still load: {}",
        stderr(&o)
    );

    // Learn again from other clips: the profile is the new one, nothing is left beside it.
    let other = dir.path().join("other-normal");
    std::fs::create_dir(&other).unwrap();
    for i in 0..4 {
        write_wav(&other.join(format!("o{i}.wav")), 16_000, 2.5, 50 + i);
    }
    learn_ok(&[&other], &p);
    let after = manifest(&p);
    assert_ne!(before["sources"], after["sources"]);
    assert_eq!(after["counts"]["clips"], 4);
    assert_eq!(siblings(&p), Vec::<String>::new());
    assert!(score(&p, &[&sh.good]).status.success());

    // Killed between moving the old profile aside and moving the new one in (filesystems
    // without an atomic exchange): the error says where the old one is.
    let aside = dir.path().join(".press.old-4242-2");
    std::fs::rename(&p, &aside).unwrap();
    let o = score(&p, &[&sh.good]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains(".press.old-4242-2") && e.contains("rename it back"),
        "{e}"
    );
    // Learning again puts a complete profile in place.
    learn_ok(&[&other], &p);
    assert!(score(&p, &[&sh.good]).status.success());

    // A directory that is not a profile is never replaced.
    let notes = dir.path().join("notes");
    std::fs::create_dir(&notes).unwrap();
    std::fs::write(notes.join("keep.txt"), b"mine").unwrap();
    let o = learn(&[&other], &notes);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not an earshot profile"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(notes.join("keep.txt")).unwrap(), b"mine");
}

#[test]
fn a_profile_mixing_files_of_two_learns_is_refused() {
    let sh = shared();
    let dir = tempfile::tempdir().unwrap();
    // Same counts and dimensions, so only the checksums can tell.
    assert_eq!(
        manifest(&sh.profile)["counts"],
        manifest(&sh.other)["counts"]
    );
    for file in ["embeddings.f32", "centroids.f32", "ids.txt"] {
        let p = dir.path().join(format!("mixed-{file}"));
        copy_dir(&sh.profile, &p);
        std::fs::copy(sh.other.join(file), p.join(file)).unwrap();
        if file == "ids.txt"
            && std::fs::read(sh.other.join(file)).unwrap()
                == std::fs::read(sh.profile.join(file)).unwrap()
        {
            // Same ids (same file names and lengths): nothing mixed.
            continue;
        }
        let o = score(&p, &[&sh.good]);
        let e = stderr(&o);
        assert!(!o.status.success(), "{file}: mixed profile loaded");
        assert!(e.contains(file) && e.contains("one `earshot learn`"), "{e}");
        assert!(lines(&o).is_empty());
    }
}

/// Rewrites a profile file and its checksum, as a buggy tool (not a crash) would.
fn rewrite(p: &Path, file: &str, bytes: &[u8]) {
    use sha2::Digest;
    std::fs::write(p.join(file), bytes).unwrap();
    let mut m = manifest(p);
    m["files"][file] = Value::from(hex::encode(sha2::Sha256::digest(bytes)));
    set_manifest(p, &m);
}

#[test]
fn unusable_profile_contents_are_refused_naming_file_and_key() {
    let sh = shared();
    let dir = tempfile::tempdir().unwrap();
    /// (what, how the profile is damaged, file and key the error must name)
    type Case = (&'static str, Box<dyn Fn(&Path)>, &'static str, &'static str);
    let cases: Vec<Case> = vec![
        (
            "no thresholds",
            Box::new(|p| {
                let mut m = manifest(p);
                m["thresholds"] = serde_json::json!({});
                set_manifest(p, &m);
            }),
            "manifest.json",
            "thresholds.centroid",
        ),
        (
            "a fused threshold without log-mel statistics",
            Box::new(|p| {
                let mut m = manifest(p);
                assert!(
                    m["thresholds"]["fused"].is_object(),
                    "fused decides by default"
                );
                m.as_object_mut().unwrap().remove("mel");
                set_manifest(p, &m);
            }),
            "manifest.json",
            "mel",
        ),
        (
            "knn_k = 0",
            Box::new(|p| {
                let mut m = manifest(p);
                m["knn_k"] = Value::from(0);
                set_manifest(p, &m);
            }),
            "manifest.json",
            "knn_k",
        ),
        (
            "tiny hop",
            Box::new(|p| {
                let mut m = manifest(p);
                m["window"]["hop_seconds"] = Value::from(1e-6);
                set_manifest(p, &m);
            }),
            "manifest.json",
            "window.hop_seconds",
        ),
        (
            "NaN centroid",
            Box::new(|p| {
                let mut b = std::fs::read(p.join("centroids.f32")).unwrap();
                b[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
                rewrite(p, "centroids.f32", &b);
            }),
            "centroids.f32",
            "NaN",
        ),
        (
            "infinite embedding",
            Box::new(|p| {
                let mut b = std::fs::read(p.join("embeddings.f32")).unwrap();
                let n = b.len();
                b[n - 4..].copy_from_slice(&f32::INFINITY.to_le_bytes());
                rewrite(p, "embeddings.f32", &b);
            }),
            "embeddings.f32",
            "infinite",
        ),
        (
            "duplicate ids",
            Box::new(|p| {
                let text = std::fs::read_to_string(p.join("ids.txt")).unwrap();
                let mut ids: Vec<&str> = text.lines().collect();
                ids[1] = ids[0];
                rewrite(p, "ids.txt", format!("{}\n", ids.join("\n")).as_bytes());
            }),
            "ids.txt",
            "unique",
        ),
    ];
    for (i, (what, damage, file, key)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("p{i}"));
        copy_dir(&sh.profile, &p);
        damage(&p);
        let o = score(&p, &[&sh.good]);
        let e = stderr(&o);
        assert!(!o.status.success(), "{what}: loaded anyway");
        assert!(e.contains(file) && e.contains(key), "{what}: {e}");
        assert!(lines(&o).is_empty(), "{what}: scored anyway");
    }

    // A model card whose sample rate differs from the profile's (same network file).
    let model = dir.path().join("model");
    copy_dir(Path::new(BUNDLED_MODEL), &model);
    let card_path = model.join("card.json");
    let mut card: Value =
        serde_json::from_str(&std::fs::read_to_string(&card_path).unwrap()).unwrap();
    card["sample_rate"] = Value::from(44_100);
    std::fs::write(&card_path, serde_json::to_string_pretty(&card).unwrap()).unwrap();
    let o = earshot(&[
        "score",
        "--model",
        s(&model),
        "--profile",
        s(&sh.profile),
        s(&sh.good),
    ]);
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("model.sample_rate") && e.contains(s(&card_path)) && e.contains("44100"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------
// Walking --normal directories, window ids

#[test]
fn a_symlink_loop_in_a_normal_directory_reads_each_file_once() {
    let sh = shared();
    let dir = tempfile::tempdir().unwrap();
    let normal = dir.path().join("normal");
    copy_dir(&sh.normal, &normal);
    std::os::unix::fs::symlink(&normal, normal.join("again")).unwrap();
    std::os::unix::fs::symlink(normal.join("n0.wav"), normal.join("alias.wav")).unwrap();
    let out = learn_ok(&[&normal, &normal.join("n1.wav")], &dir.path().join("p"));
    assert!(out.contains("from 3 clips"), "{out}");
}

#[test]
fn clips_sharing_file_names_in_two_folders_get_distinct_window_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut folders = Vec::new();
    for (k, line) in ["line1", "line2"].iter().enumerate() {
        let f = dir.path().join(line);
        std::fs::create_dir(&f).unwrap();
        for i in 0..2 {
            write_wav(
                &f.join(format!("clip{i}.wav")),
                16_000,
                3.0,
                20 * k as u64 + i,
            );
        }
        folders.push(f);
    }
    let p = dir.path().join("p");
    learn_ok(&[&folders[0], &folders[1]], &p);
    let ids = std::fs::read_to_string(p.join("ids.txt")).unwrap();
    let ids: Vec<&str> = ids.lines().collect();
    let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
    assert!(
        ids.iter()
            .all(|i| i.starts_with("line1/") || i.starts_with("line2/")),
        "{ids:?}"
    );
    assert_eq!(manifest(&p)["counts"]["fit_windows"], ids.len());
}

// ---------------------------------------------------------------------------------------
// eval

#[test]
fn eval_reports_skips_and_counts_unreadable_files_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut rows = vec!["path,machine,split,label".to_string()];
    for i in 0..3 {
        write_wav(&d.join(format!("train{i}.wav")), 16_000, 3.0, i);
        rows.push(format!("train{i}.wav,fan,train,normal"));
    }
    rows.push("missing.wav,fan,train,normal".into());
    for i in 0..2 {
        write_wav(&d.join(format!("test_n{i}.wav")), 16_000, 2.0, 30 + i);
        rows.push(format!("test_n{i}.wav,fan,test,normal"));
        write_wav(&d.join(format!("test_a{i}.wav")), 16_000, 2.0, 1000 + i);
        rows.push(format!("test_a{i}.wav,fan,test,anomaly"));
    }
    std::fs::write(d.join("garbage.wav"), b"this is not audio").unwrap();
    rows.push("garbage.wav,fan,test,anomaly".into());
    std::fs::write(d.join("m.csv"), rows.join("\n")).unwrap();
    let o = earshot(&[
        "eval",
        "--model",
        BUNDLED_MODEL,
        "--manifest",
        s(&d.join("m.csv")),
        "--format",
        "json",
    ]);
    assert_no_panic(&o);
    let e = stderr(&o);
    assert!(
        e.contains("missing.wav") && e.contains("garbage.wav"),
        "{e}"
    );
    assert!(
        !o.status.success(),
        "skipped files must show in the exit status"
    );
    let r: Value = serde_json::from_str(&stdout(&o)).unwrap_or_else(|err| panic!("{err}: {e}"));
    let fan = &r["machines"][0];
    assert_eq!(fan["train_clips"], 4);
    assert_eq!(fan["skipped"], 2);
    assert_eq!(fan["test_normal"], 2);
    assert_eq!(fan["test_anomaly"], 2);
    assert!(fan["scorers"]["knn"]["auc"].is_number(), "{r}");
    assert_eq!(r["skipped"].as_array().unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------
// Hop

#[test]
fn a_tiny_hop_is_refused_naming_the_key() {
    let sh = shared();
    let dir = tempfile::tempdir().unwrap();
    let mut c = cmd(&[
        "learn",
        "--model",
        BUNDLED_MODEL,
        "--normal",
        s(&sh.normal),
        "--out",
    ]);
    c.arg(dir.path().join("p"));
    c.env("EARSHOT_WINDOW__HOP_SECONDS", "0.0001");
    let o = run(c);
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("window.hop_seconds") && e.contains("minimum"),
        "{e}"
    );

    let cfg = dir.path().join("earshot.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[monitor]]\nname = \"press\"\nprofile = \"{}\"\nhop_seconds = 0.000001\nsource = {{ file = \"{}\" }}\n",
            s(&sh.profile),
            s(&sh.good)
        ),
    )
    .unwrap();
    let o = earshot(&["run", "--exit-when-done", "--config", s(&cfg)]);
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(e.contains("monitor[0] (press).hop_seconds"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Default model

#[test]
fn an_installed_binary_finds_its_model_by_its_own_path_not_the_build_tree() {
    let sh = shared();
    // Beside the build directory (same filesystem, so the binary can be hard-linked).
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let bin = root.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let exe = bin.join("earshot");
    if std::fs::hard_link(EARSHOT, &exe).is_err() {
        std::fs::copy(EARSHOT, &exe).unwrap();
    }
    let ort = std::env::var_os("ORT_DYLIB_PATH").unwrap_or_else(|| {
        OsString::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/.ort/libonnxruntime.so.1.31.1"
        ))
    });
    let out = root.path().join("p");
    let learn_installed = || {
        let mut c = Command::new(&exe);
        c.args(["learn", "--normal", s(&sh.normal), "--out", s(&out)])
            .env("EARSHOT_LOG", "warn")
            .env("ORT_DYLIB_PATH", &ort);
        run(c)
    };
    let system_wide = Path::new("/usr/share/earshot/models/panns-mobilenetv1-seeded/card.json");
    if !system_wide.exists()
        && !Path::new("/usr/local/share/earshot/models/panns-mobilenetv1-seeded/card.json").exists()
    {
        let o = learn_installed();
        let e = stderr(&o);
        assert!(
            !o.status.success(),
            "found a model it should not know about: {e}"
        );
        assert!(
            e.contains(s(&bin.join("models")))
                && e.contains(s(&root.path().join("share/earshot/models")))
                && e.contains("/usr/share/earshot/models")
                && !e.contains(concat!(env!("CARGO_MANIFEST_DIR"), "/models")),
            "{e}"
        );
    }
    // Installed under the binary's prefix: found.
    let share = root
        .path()
        .join("share/earshot/models/panns-mobilenetv1-seeded");
    copy_dir(Path::new(BUNDLED_MODEL), &share);
    let o = learn_installed();
    assert!(o.status.success(), "{}", stderr(&o));
}
