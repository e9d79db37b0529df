//! `earshot score` of a long recording runs in bounded memory: the file is streamed window by
//! window, not decoded whole. Measured for real: the peak resident set of the `score` process
//! (the kernel's `ru_maxrss` of the waited-for child) while it scores 10 minutes of 48 kHz
//! stereo audio, whose samples alone are 230 MB as `f32` (decoded whole, with its mono and
//! resampled copies, scoring it peaked above 500 MB). The windows are checked against the
//! in-memory path too, so streaming changed memory, not results.
//!
//! `RUSAGE_CHILDREN` is the peak over all children this process waited for, so the only other
//! test here runs in-process (no child).

use std::path::Path;
use std::process::{Command, Stdio};

const EARSHOT: &str = env!("CARGO_BIN_EXE_earshot");
const BUNDLED_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/panns-mobilenetv1-seeded"
);
/// Minutes of audio in the long file.
const MINUTES: u32 = 10;
/// Peak RSS allowed for scoring it (the model and runtime take ~100 MB; the audio must not
/// add more than a few blocks).
const PEAK_LIMIT_MB: i64 = 320;

/// Deterministic hum with harmonics and a little noise, `channels` interleaved.
fn write_wav(path: &Path, sr: u32, channels: u16, seconds: u32, seed: u64) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: sr,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let f0 = 150.0 + 10.0 * (seed % 5) as f64;
    for i in 0..u64::from(sr) * u64::from(seconds) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let noise = (x >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
        let t = std::f64::consts::TAU * f0 * i as f64 / f64::from(sr);
        let v = 0.2 * t.sin() + 0.08 * (2.0 * t).sin() + 0.05 * noise;
        for _ in 0..channels {
            w.write_sample((v * 32767.0).round() as i16).expect("write");
        }
    }
    w.finalize().expect("finalize");
}

fn earshot(args: &[&str]) -> std::process::Output {
    let out = Command::new(EARSHOT)
        .args(args)
        .env("EARSHOT_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run earshot");
    assert!(
        out.status.success(),
        "earshot {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn children_peak_rss_mb() -> i64 {
    // SAFETY: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    ru.ru_maxrss / 1024
}

#[test]
fn scoring_a_long_wav_runs_in_bounded_memory_with_the_same_windows() {
    let dir = tempfile::Builder::new()
        .prefix("earshot-long-wav-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let d = dir.path();
    let normal = d.join("normal");
    std::fs::create_dir(&normal).unwrap();
    for i in 0..3 {
        write_wav(&normal.join(format!("n{i}.wav")), 16_000, 1, 3, i);
    }
    let profile = d.join("profile");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    earshot(&[
        "learn",
        "--model",
        BUNDLED_MODEL,
        "--normal",
        &s(&normal),
        "--out",
        &s(&profile),
    ]);
    let long = d.join("long.wav");
    write_wav(&long, 48_000, 2, MINUTES * 60, 7);
    let before = children_peak_rss_mb();
    let out = earshot(&[
        "score",
        "--model",
        BUNDLED_MODEL,
        "--profile",
        &s(&profile),
        &s(&long),
    ]);
    let peak = children_peak_rss_mb();
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON row"))
        .collect();
    let windows: Vec<&serde_json::Value> = rows.iter().filter(|r| r["type"] == "window").collect();
    let clip = rows.iter().find(|r| r["type"] == "clip").expect("clip row");
    eprintln!(
        "scored {} windows of {MINUTES} min 48 kHz stereo; peak RSS {peak} MB (learn: {before} MB)",
        windows.len()
    );
    // Every window of the file, in order, up to its end.
    let hop = windows[1]["start_s"].as_f64().unwrap() - windows[0]["start_s"].as_f64().unwrap();
    let expected = ((f64::from(MINUTES * 60) - windows[0]["end_s"].as_f64().unwrap()) / hop).floor()
        as usize
        + 1;
    assert_eq!(windows.len(), expected, "windows missing or extra");
    assert_eq!(clip["windows"].as_u64().unwrap() as usize, windows.len());
    let last_end = windows.last().unwrap()["end_s"].as_f64().unwrap();
    assert!(
        f64::from(MINUTES * 60) - last_end < hop + 1e-6,
        "{last_end}"
    );
    assert!(
        peak < PEAK_LIMIT_MB,
        "scoring {MINUTES} min of 48 kHz stereo peaked at {peak} MB (limit {PEAK_LIMIT_MB} MB)"
    );

    // Same windows as a short cut of the same audio: the first 20 s of the long file
    // scored alone give the same scores for the windows they share.
    let short = d.join("short.wav");
    write_wav(&short, 48_000, 2, 20, 7);
    let out = earshot(&[
        "score",
        "--model",
        BUNDLED_MODEL,
        "--profile",
        &s(&profile),
        &s(&short),
    ]);
    let short_rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["type"] == "window")
        .collect();
    // The resampler's look-ahead differs only near the short file's end.
    for (a, b) in short_rows
        .iter()
        .zip(&windows)
        .take(short_rows.len().saturating_sub(3))
    {
        assert_eq!(a["start_s"], b["start_s"]);
        let (ca, cb) = (
            a["centroid"].as_f64().unwrap(),
            b["centroid"].as_f64().unwrap(),
        );
        assert!((ca - cb).abs() < 1e-4, "{a} vs {b}");
    }
}

/// The streamed path (`embed_file`, block by block) gives the windows of the in-memory path
/// (`embed_clip` on the whole decoded file): same count, starts and embeddings, for a file
/// whose rate needs resampling and whose channels need mixing. (In-process: no child, so it
/// does not disturb the RSS test above.)
#[test]
fn streamed_windows_equal_the_in_memory_ones() {
    use earshot::embed::file::{embed_clip, embed_file};
    use earshot::embed::{EmbedOptions, Embedder};
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("a.wav");
    write_wav(&wav, 44_100, 2, 17, 3);
    let opts = EmbedOptions {
        threads: 1,
        ..EmbedOptions::default()
    };
    let mut e = Embedder::load(Path::new(BUNDLED_MODEL), &opts).expect("bundled model loads");
    let (streamed, r1) = embed_file(&mut e, &wav, 1.0, 0.37).unwrap();
    let clip = earshot::audio::read_wav(&wav).unwrap();
    let (whole, r2) = embed_clip(&mut e, &clip, "a.wav", 1.0, 0.37).unwrap();
    assert_eq!(streamed.len(), whole.len());
    assert!((r1.seconds - r2.seconds).abs() < 1e-9);
    assert_eq!(r1.clipped_fraction, r2.clipped_fraction);
    for (a, b) in streamed.iter().zip(&whole) {
        assert_eq!(a.start_s, b.start_s);
        assert_eq!(a.end_s, b.end_s);
        let d = a
            .embedding
            .iter()
            .zip(&b.embedding)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(d < 1e-5, "window at {} s differs by {d}", a.start_s);
        assert!((a.level_dbfs - b.level_dbfs).abs() < 1e-6);
    }
    // Shorter than a window: embedded whole, both ways.
    let short = dir.path().join("short.wav");
    write_wav(&short, 22_050, 1, 1, 4);
    let (s1, r) = embed_file(&mut e, &short, 2.0, 0.5).unwrap();
    assert!(r.shorter_than_window);
    let clip = earshot::audio::read_wav(&short).unwrap();
    let (s2, _) = embed_clip(&mut e, &clip, "short.wav", 2.0, 0.5).unwrap();
    assert_eq!(s1.len(), 1);
    assert_eq!(s1[0].end_s, s2[0].end_s);
}
