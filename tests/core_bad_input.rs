//! Bad input to the offline commands (`learn`, `score`), run through the real binary on real
//! WAV files and the real bundled model on ONNX Runtime: every case either gives an error that
//! names the file (or model/key) and says what to do, or a defined, finite result.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const EARSHOT: &str = env!("CARGO_BIN_EXE_earshot");
const BUNDLED_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/panns-mobilenetv1-seeded"
);

fn earshot(args: &[&str]) -> Output {
    earshot_env(args, &[])
}

fn earshot_env(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(EARSHOT);
    c.args(args).env("EARSHOT_LOG", "warn");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run earshot")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Deterministic test signal: a 180 Hz hum with harmonics plus a little noise.
fn signal(sr: u32, seconds: f64, seed: u64) -> Vec<f32> {
    let n = (sr as f64 * seconds).round() as usize;
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|i| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = ((s >> 33) as f64 / (1u64 << 31) as f64) - 0.5;
            let t = i as f64 / sr as f64;
            let w = std::f64::consts::TAU * 180.0 * t;
            (0.2 * w.sin() + 0.08 * (2.0 * w).sin() + 0.04 * (3.0 * w).sin() + 0.05 * noise) as f32
        })
        .collect()
}

/// Writes `mono` to every channel with the given encoding.
fn write_wav(path: &Path, mono: &[f32], sr: u32, channels: u16, bits: u16, float: bool) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: sr,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &x in mono {
        for _ in 0..channels {
            if float {
                w.write_sample(x).unwrap();
            } else {
                let full = ((1i64 << (bits - 1)) - 1) as f32;
                w.write_sample((x.clamp(-1.0, 1.0) * full).round() as i32)
                    .unwrap();
            }
        }
    }
    w.finalize().unwrap();
}

fn write_mono16(path: &Path, mono: &[f32], sr: u32) {
    write_wav(path, mono, sr, 1, 16, false);
}

/// A hand-written RIFF/WAVE header (for encodings hound cannot write).
fn raw_header(format_tag: u16, ch: u16, sr: u32, bits: u16, data_len: u32) -> Vec<u8> {
    let block = ch * bits / 8;
    let mut fmt = Vec::new();
    fmt.extend(format_tag.to_le_bytes());
    fmt.extend(ch.to_le_bytes());
    fmt.extend(sr.to_le_bytes());
    fmt.extend((sr * block as u32).to_le_bytes());
    fmt.extend(block.to_le_bytes());
    fmt.extend(bits.to_le_bytes());
    let mut v = b"RIFF".to_vec();
    v.extend((4 + 8 + fmt.len() as u32 + 8 + data_len).to_le_bytes());
    v.extend(b"WAVEfmt ");
    v.extend((fmt.len() as u32).to_le_bytes());
    v.extend(fmt);
    v.extend(b"data");
    v.extend(data_len.to_le_bytes());
    v
}

struct Shared {
    _dir: tempfile::TempDir,
    profile: PathBuf,
    good: PathBuf,
}

/// One profile learned once (three 3 s clips) for all the scoring tests.
fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let normal = dir.path().join("normal");
        std::fs::create_dir(&normal).unwrap();
        for i in 0..3 {
            write_mono16(
                &normal.join(format!("n{i}.wav")),
                &signal(16_000, 3.0, i),
                16_000,
            );
        }
        let profile = dir.path().join("profile");
        let o = earshot(&[
            "learn",
            "--normal",
            normal.to_str().unwrap(),
            "--out",
            profile.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "learn failed: {}", stderr(&o));
        let good = dir.path().join("good.wav");
        write_mono16(&good, &signal(16_000, 2.0, 99), 16_000);
        Shared {
            _dir: dir,
            profile,
            good,
        }
    })
}

fn score(files: &[&Path]) -> Output {
    score_with(files, &[])
}

fn score_with(files: &[&Path], extra: &[&str]) -> Output {
    let s = shared();
    let mut args = vec!["score", "--profile", s.profile.to_str().unwrap()];
    args.extend(extra);
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    earshot(&args)
}

/// The `clip` summary line for `file` (named as given on the command line).
fn clip_line<'a>(out: &'a [Value], file: &Path) -> &'a Value {
    out.iter()
        .find(|v| v["type"] == "clip" && v["file"] == file.to_str().unwrap())
        .unwrap_or_else(|| panic!("no clip line for {}: {out:?}", file.display()))
}

fn assert_finite_scores(out: &[Value], file: &Path) {
    let rows: Vec<&Value> = out
        .iter()
        .filter(|v| v["file"] == file.to_str().unwrap())
        // Window and clip rows carry scores; `event` rows are the replayed decision.
        .filter(|v| v["type"] != "event")
        .collect();
    assert!(!rows.is_empty(), "no rows for {}", file.display());
    for r in rows {
        for k in ["centroid", "knn"] {
            let x = r[k]
                .as_f64()
                .unwrap_or_else(|| panic!("{k} is not a number in {r}"));
            assert!(x.is_finite() && x >= 0.0, "{k} = {x} in {r}");
        }
    }
}

#[test]
fn broken_wavs_are_named_and_the_good_file_is_still_scored() {
    let s = shared();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cases: Vec<(PathBuf, &str)> = Vec::new();

    let corrupt = d.join("corrupt.wav");
    let mut seed = 7u64;
    let bytes: Vec<u8> = (0..5000)
        .map(|_| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            (seed >> 56) as u8
        })
        .collect();
    std::fs::write(&corrupt, bytes).unwrap();
    cases.push((corrupt, "sox"));

    let empty = d.join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    cases.push((empty, "sox"));

    let header_only = d.join("header_only.wav");
    std::fs::write(&header_only, raw_header(1, 1, 16_000, 16, 0)).unwrap();
    cases.push((header_only, "record or export it again"));

    // Header promises 2 s of 16-bit mono, only 0.5 s follows.
    let truncated = d.join("truncated.wav");
    let mut t = raw_header(1, 1, 16_000, 16, 64_000);
    t.extend(std::iter::repeat_n([0x10u8, 0x01], 8000).flatten());
    std::fs::write(&truncated, t).unwrap();
    cases.push((truncated, "re-copy"));

    let alaw = d.join("alaw.wav");
    let mut a = raw_header(6, 1, 8000, 8, 16_000);
    a.extend(std::iter::repeat_n(0xd5u8, 16_000));
    std::fs::write(&alaw, a).unwrap();
    cases.push((alaw, "sox"));

    let f64wav = d.join("float64.wav");
    let mut f = raw_header(3, 1, 16_000, 64, 16_000 * 8);
    for x in signal(16_000, 1.0, 3) {
        f.extend((x as f64).to_le_bytes());
    }
    std::fs::write(&f64wav, f).unwrap();
    cases.push((f64wav, "sox"));

    for (bad, hint) in &cases {
        let o = score(&[bad, &s.good]);
        let err = stderr(&o);
        assert!(
            !o.status.success(),
            "{}: expected failure, stderr {err}",
            bad.display()
        );
        let named = err
            .lines()
            .find(|l| l.starts_with("error:") && l.contains(bad.to_str().unwrap()))
            .unwrap_or_else(|| panic!("{}: no error line naming it in {err}", bad.display()));
        assert!(
            named.contains(hint),
            "{}: error lacks the hint {hint:?}: {named}",
            bad.display()
        );
        assert!(err.contains("1 of 2 files"), "{err}");
        let out = lines(&o);
        assert_eq!(clip_line(&out, &s.good)["windows"], 3, "{out:?}");
        assert_finite_scores(&out, &s.good);
        assert!(
            !out.iter().any(|v| v["file"] == bad.to_str().unwrap()),
            "{}: the bad file got scores",
            bad.display()
        );
    }
}

#[test]
fn any_rate_channel_count_and_bit_depth_scores() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // (name, rate, channels, bits, float)
    let cases = [
        ("mono_8k.wav", 8000, 1, 16, false),
        ("stereo_44k1.wav", 44_100, 2, 16, false),
        ("six_ch_48k_float.wav", 48_000, 6, 32, true),
        ("mono_96k_24bit.wav", 96_000, 1, 24, false),
    ];
    let mut paths = Vec::new();
    for (name, sr, ch, bits, float) in cases {
        let p = d.join(name);
        write_wav(&p, &signal(sr, 2.0, 5), sr, ch, bits, float);
        paths.push(p);
    }
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    let o = score(&refs);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = lines(&o);
    for p in &paths {
        // 2 s in 1 s windows every 0.5 s: 3 windows.
        assert_eq!(clip_line(&out, p)["windows"], 3, "{}", p.display());
        let windows = out
            .iter()
            .filter(|v| v["type"] == "window" && v["file"] == p.to_str().unwrap());
        assert_eq!(windows.count(), 3, "{}", p.display());
        assert_finite_scores(&out, p);
    }
}

#[test]
fn clip_shorter_than_a_window_is_one_window_and_too_short_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("half_second.wav");
    write_mono16(&short, &signal(16_000, 0.5, 1), 16_000);
    let o = score(&[&short]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = lines(&o);
    assert_eq!(clip_line(&out, &short)["windows"], 1);
    assert_finite_scores(&out, &short);

    let tiny = dir.path().join("tiny.wav");
    write_mono16(&tiny, &signal(16_000, 0.1, 1), 16_000);
    let o = score(&[&tiny]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains(tiny.to_str().unwrap()), "{err}");
    assert!(
        err.contains("shorter than") && err.contains("longer recordings"),
        "{err}"
    );
}

#[test]
fn nan_inf_silence_and_clipping_give_finite_scores_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let nan = d.join("nan.wav");
    let mut x = signal(16_000, 2.0, 2);
    for i in (0..x.len()).step_by(997) {
        x[i] = if i % 2 == 0 { f32::NAN } else { f32::INFINITY };
    }
    x[10] = f32::NEG_INFINITY;
    write_wav(&nan, &x, 16_000, 1, 32, true);
    let o = score(&[&nan]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("NaN/infinite") && err.contains("nan.wav"),
        "{err}"
    );
    assert_finite_scores(&lines(&o), &nan);

    let silence = d.join("silence.wav");
    write_mono16(&silence, &vec![0.0; 32_000], 16_000);
    let o = score(&[&silence]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = lines(&o);
    assert_eq!(clip_line(&out, &silence)["windows"], 3);
    assert_finite_scores(&out, &silence);
    // Defined: the same file scores the same again.
    let again = lines(&score(&[&silence]));
    assert_eq!(
        clip_line(&out, &silence)["knn"],
        clip_line(&again, &silence)["knn"]
    );

    let clipped = d.join("clipped.wav");
    let sq: Vec<f32> = signal(16_000, 2.0, 4)
        .iter()
        .map(|v| (v * 20.0).clamp(-1.0, 1.0))
        .collect();
    write_mono16(&clipped, &sq, 16_000);
    let o = score(&[&clipped]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("clipped") && err.contains("lower the input gain"),
        "{err}"
    );
    assert_finite_scores(&lines(&o), &clipped);
}

/// A private copy of the bundled model whose card can be edited.
fn model_copy(dir: &Path) -> PathBuf {
    let m = dir.join("model");
    std::fs::create_dir(&m).unwrap();
    for f in ["card.json", "model.onnx"] {
        std::fs::copy(Path::new(BUNDLED_MODEL).join(f), m.join(f)).unwrap();
    }
    m
}

fn edit_card(model: &Path, f: impl FnOnce(&mut Value)) {
    let p = model.join("card.json");
    let mut card: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut card);
    std::fs::write(&p, serde_json::to_string_pretty(&card).unwrap()).unwrap();
}

fn sha256_hex(bytes: &[u8]) -> String {
    // sha2 is a dependency of earshot already (the card checksum).
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn score_with_model(model: &Path) -> (Output, String) {
    let s = shared();
    let o = score_with(&[&s.good], &["--model", model.to_str().unwrap()]);
    let e = stderr(&o);
    assert!(
        !o.status.success(),
        "model {} accepted: {e}",
        model.display()
    );
    (o, e)
}

#[test]
fn missing_corrupt_or_mismatching_models_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let (_, e) = score_with_model(&d.join("no_such_model"));
    assert!(
        e.contains("no_such_model") && e.contains("models/README.md"),
        "{e}"
    );

    let m = model_copy(&d.join("a").tap_mkdir());
    std::fs::write(m.join("card.json"), "{ \"card_version\": 1, \"name\": ").unwrap();
    let (_, e) = score_with_model(&m);
    assert!(e.contains("card.json") && e.contains("not valid"), "{e}");

    let m = model_copy(&d.join("no_onnx").tap_mkdir());
    std::fs::remove_file(m.join("model.onnx")).unwrap();
    let (_, e) = score_with_model(&m);
    assert!(e.contains("model.onnx") && e.contains("not found"), "{e}");
    assert!(e.contains("re-run the conversion"), "{e}");

    let m = model_copy(&d.join("b").tap_mkdir());
    edit_card(&m, |c| c["onnx"]["sha256"] = Value::from("00".repeat(32)));
    let (_, e) = score_with_model(&m);
    assert!(
        e.contains("model.onnx") && e.contains("does not match its card"),
        "{e}"
    );
    assert!(e.contains("re-convert"), "{e}");

    let m = model_copy(&d.join("c").tap_mkdir());
    let garbage = b"this is not an ONNX model, just text".repeat(100);
    std::fs::write(m.join("model.onnx"), &garbage).unwrap();
    let sha = sha256_hex(&garbage);
    edit_card(&m, |c| c["onnx"]["sha256"] = Value::from(sha));
    let (_, e) = score_with_model(&m);
    assert!(
        e.contains("ONNX Runtime cannot load") && e.contains("model.onnx"),
        "{e}"
    );

    let m = model_copy(&d.join("e").tap_mkdir());
    edit_card(&m, |c| c["embedding_dim"] = Value::from(512));
    let (_, e) = score_with_model(&m);
    assert!(
        e.contains("does not match its card") && e.contains("512"),
        "{e}"
    );
    assert!(e.contains("1024"), "mismatch not spelled out: {e}");
}

#[test]
fn profile_from_another_model_is_refused() {
    let s = shared();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("profile");
    std::fs::create_dir(&p).unwrap();
    for e in std::fs::read_dir(&s.profile).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), p.join(e.file_name())).unwrap();
    }
    // As if learned with another network: its checksum differs from the bundled model's.
    let mf = p.join("manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&mf).unwrap()).unwrap();
    m["model"]["name"] = Value::from("panns-cnn14-other");
    m["model"]["onnx_sha256"] = Value::from("ab".repeat(32));
    std::fs::write(&mf, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let o = earshot(&[
        "score",
        "--profile",
        p.to_str().unwrap(),
        s.good.to_str().unwrap(),
    ]);
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("panns-cnn14-other") && e.contains("re-run `earshot learn`"),
        "{e}"
    );
    assert!(lines(&o).is_empty(), "scored anyway");
}

#[test]
fn empty_or_too_short_normal_set_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let empty = d.join("empty_normals");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("readme.txt"), "no audio here").unwrap();
    let o = earshot(&[
        "learn",
        "--normal",
        empty.to_str().unwrap(),
        "--out",
        d.join("p1").to_str().unwrap(),
    ]);
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("empty_normals") && e.contains("no .wav files"),
        "{e}"
    );
    assert!(e.contains("point it at the folder"), "{e}");
    assert!(!d.join("p1").join("manifest.json").exists());

    let short = d.join("short_normals");
    std::fs::create_dir(&short).unwrap();
    write_mono16(&short.join("only.wav"), &signal(16_000, 1.0, 8), 16_000);
    let o = earshot(&[
        "learn",
        "--normal",
        short.to_str().unwrap(),
        "--out",
        d.join("p2").to_str().unwrap(),
    ]);
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("too little normal audio") && e.contains("at least"),
        "{e}"
    );
    assert!(!d.join("p2").join("manifest.json").exists());
}

#[test]
fn onnx_runtime_not_a_library_is_a_clear_error() {
    let s = shared();
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake, "not a shared library").unwrap();
    let o = earshot_env(
        &[
            "score",
            "--profile",
            s.profile.to_str().unwrap(),
            s.good.to_str().unwrap(),
        ],
        &[("ORT_DYLIB_PATH", fake.to_str().unwrap())],
    );
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(e.contains("scripts/setup-ort.sh"), "{e}");
    assert!(e.contains(fake.to_str().unwrap()), "{e}");
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
