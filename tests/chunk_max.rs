//! Chunk-max embeddings (`[window] embed = "chunk-max"`): the network runs once per hop-long
//! chunk and a window is the element-wise max of its chunks.
//!
//! Held against an independent reference on a real ONNX Runtime session of the bundled
//! aisfx-cnn9: each chunk's log-mel computed by the per-window front end (the one
//! tests/parity_aisfx.rs holds against the original code) on the chunk's samples scaled by the
//! level of the second before its end, the network run on it alone, the max taken here. Then
//! the whole path as a user drives it: `learn` records the mode and the rounded window, the
//! service scores a replay with it and raises the fault, and refuses a hop that breaks chunks.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/signal.rs"]
mod signal;

use daemon::{
    Daemon, EARSHOT, daemon_header, learn_motor_profile, model_table, motor_stream, test_dir,
    write_config,
};
use earshot::embed::{EmbedMode, EmbedOptions, Embedder};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn aisfx() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/aisfx-cnn9")
}

/// A signal that changes all the time and whose level swells and falls too, so that a wrong
/// chunk, a wrong reuse or a wrong gain shows.
fn signal(rate: u32, seconds: f64) -> Vec<f32> {
    let mut x = signal::changing(rate, seconds, 0x51_7cc1_b727_220a);
    for (i, v) in x.iter_mut().enumerate() {
        let t = i as f64 / f64::from(rate);
        *v *= (0.3 + 0.7 * (0.5 + 0.5 * (2.0 * std::f64::consts::PI * 0.23 * t).sin())) as f32;
    }
    x
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn load() -> Embedder {
    let opts = EmbedOptions {
        threads: 1,
        ..Default::default()
    };
    Embedder::load(&aisfx(), &opts).expect("bundled aisfx-cnn9 loads")
}

const RATE: usize = 44_100;
const FRAME: usize = 1024;
const CHUNK: usize = 11 * FRAME;
const WINDOW: usize = 4 * CHUNK;
const LEVEL_DBFS: f64 = -10.0;

/// The reference embedding of chunk `j` of the stream `x`: its 11 frames (centred every 1024
/// samples from the chunk's start, the first reaching 1024 samples back, zeros before the
/// stream) from the per-window front end on the samples scaled to -10 dBFS by the RMS of the
/// last second up to the chunk's end; then the network on those 11 frames alone.
fn reference_chunk(e: &mut Embedder, x: &[f32], j: usize) -> Vec<f32> {
    let (start, end) = (j * CHUNK, (j + 1) * CHUNK);
    let last = &x[end.saturating_sub(RATE)..end];
    let rms = (last.iter().map(|v| v * v).sum::<f32>() / last.len() as f32).sqrt();
    let gain = (10f64.powf(LEVEL_DBFS / 20.0) as f32 / rms).min(100.0);
    // One frame of context before the chunk (zeros before the stream), one after: frames 1..=11
    // of this segment's centred framing are the chunk's frames and read only real samples.
    let mut seg = vec![0f32; FRAME + CHUNK + FRAME];
    for (k, s) in seg.iter_mut().enumerate() {
        let i = (start + k) as isize - FRAME as isize;
        if i >= 0 && (i as usize) < x.len() {
            *s = x[i as usize] * gain;
        }
    }
    let (mel, frames) = e.logmel(&seg);
    assert_eq!(frames, 14);
    let bins = mel.len() / frames;
    let chunk = &mel[bins..12 * bins];
    e.embed_logmel(chunk, 11)
        .expect("network on one chunk")
        .embedding
}

#[test]
fn a_window_is_the_max_of_its_chunks_each_through_the_network_once() {
    let x = signal(RATE as u32, 9.0);
    let mut streamed = load();
    streamed.set_level_dbfs(Some(LEVEL_DBFS));
    streamed
        .set_mode(
            EmbedMode::ChunkMax,
            WINDOW as f64 / RATE as f64,
            CHUNK as f64 / RATE as f64,
        )
        .expect("a hop of 11 frames is a chunk");
    let mut reference = load();
    let starts: Vec<usize> = (0..)
        .map(|k| k * CHUNK)
        .take_while(|s| s + WINDOW <= x.len())
        .collect();
    let chunks: Vec<Vec<f32>> = (0..starts.len() + 3)
        .map(|j| reference_chunk(&mut reference, &x, j))
        .collect();
    let mut worst = 0f32;
    // Batches of 3 windows: chunks are shared across calls as well as within one.
    for batch in starts.chunks(3) {
        let at: Vec<(u64, &[f32])> = batch
            .iter()
            .map(|&s| (s as u64, &x[s..s + WINDOW]))
            .collect();
        let outs = streamed.embed_batch_at(&at).expect("chunk-max embedding");
        for (&s, o) in batch.iter().zip(outs) {
            let j = s / CHUNK;
            let mut want = chunks[j].clone();
            for c in &chunks[j + 1..j + 4] {
                want.iter_mut().zip(c).for_each(|(w, v)| *w = w.max(*v));
            }
            for (a, b) in unit(o.embedding).iter().zip(unit(want)) {
                worst = worst.max((a - b).abs());
            }
            // The `mel` scorer sees the window's 44 frames, the chunks' own.
            assert_eq!(streamed.batch_logmel(0).map(<[f32]>::len), Some(44 * 96));
        }
    }
    assert!(
        worst < 1e-4,
        "chunk-max differs from the reference by {worst}"
    );
    // The network ran once per chunk of audio: 4 for the first window, 1 for each next one.
    let (computed, reused) = streamed.chunk_counts().expect("chunk-max mode");
    assert_eq!(computed as usize, starts.len() + 3);
    assert_eq!((computed + reused) as usize, 4 * starts.len());
    // And it is not the exact window's embedding (a different feature, fixed per profile).
    let mut exact = load();
    exact.set_level_dbfs(Some(LEVEL_DBFS));
    let e = unit(
        exact
            .embed(&x[starts[4]..starts[4] + WINDOW])
            .expect("exact")
            .embedding,
    );
    let mut again = load();
    again.set_level_dbfs(Some(LEVEL_DBFS));
    again
        .set_mode(
            EmbedMode::ChunkMax,
            WINDOW as f64 / 44100.0,
            CHUNK as f64 / 44100.0,
        )
        .expect("chunk-max");
    let c = unit(
        again
            .embed(&x[starts[4]..starts[4] + WINDOW])
            .expect("chunk-max")
            .embedding,
    );
    let cos: f32 = e.iter().zip(&c).map(|(a, b)| a * b).sum();
    assert!(cos < 0.95, "cosine to the exact embedding {cos}");
}

#[test]
fn changed_samples_at_a_known_position_are_recomputed_not_reused() {
    let x = signal(RATE as u32, 4.0);
    let w = WINDOW as f64 / RATE as f64;
    let h = CHUNK as f64 / RATE as f64;
    let mut streamed = load();
    streamed
        .set_mode(EmbedMode::ChunkMax, w, h)
        .expect("chunk-max");
    streamed.embed_at(0, &x[..WINDOW]).expect("first window");
    // The next hop's position, but other samples (a looped replay, a restarted stream).
    let other = &x[2 * CHUNK..2 * CHUNK + WINDOW];
    let got = streamed
        .embed_at(CHUNK as u64, other)
        .expect("second window");
    assert_eq!(streamed.chunk_counts(), Some((8, 0)));
    let mut fresh = load();
    fresh
        .set_mode(EmbedMode::ChunkMax, w, h)
        .expect("chunk-max");
    let want = fresh.embed_at(CHUNK as u64, other).expect("alone");
    assert_eq!(got.embedding, want.embedding);
    // A window that is not whole chunks is refused with what to do, not embedded wrongly.
    let err = streamed
        .embed_at(0, &x[..WINDOW - 100])
        .expect_err("not whole chunks");
    assert!(err.to_string().contains("whole number"), "{err}");
}

/// The user's path: learn in chunk-max mode, score a fault offline, run the service on a replay.
/// (The profile is learned on 50 s of audio; a budget of 300 false events a day puts its
/// thresholds where these decisions can be checked, as in tests/common/daemon.rs's fixture.)
#[test]
fn learn_records_the_mode_and_the_service_raises_the_fault_with_it() {
    let dir = test_dir();
    let d = dir.path();
    let model = aisfx();
    let profile = learn_motor_profile(
        d,
        &model,
        "[window]\nseconds = 1.0\nhop_seconds = 0.25\nembed = \"chunk-max\"\n",
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(profile.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let w = &manifest["window"];
    assert_eq!(w["embed"], "chunk-max", "{w}");
    // Rounded to whole frames of the model: 4 chunks of 11 frames of 1024 samples at 44.1 kHz.
    let samples = |k: &str| (w[k].as_f64().expect("seconds") * 44100.0).round() as usize;
    assert_eq!(
        (samples("seconds"), samples("hop_seconds")),
        (WINDOW, CHUNK)
    );

    // The service on a replay with a bearing fault from 15 s.
    let wav = motor_stream(d, "stream.wav", "0", 30.0, 15.0, 48_000);

    // Offline: `score` cuts the profile's windows, one hop apart, and flags the fault only.
    let out = std::process::Command::new(EARSHOT)
        .args(["score", "--format", "jsonl", "--model"])
        .arg(&model)
        .arg("--profile")
        .arg(&profile)
        .arg(&wav)
        .env("EARSHOT_LOG", "warn")
        .output()
        .expect("earshot score runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "window")
        .collect();
    let at = |r: &serde_json::Value, k: &str| r[k].as_f64().expect("seconds");
    for (i, r) in rows.iter().enumerate() {
        let (s, e) = (at(r, "start_s"), at(r, "end_s"));
        assert!((s - (i * CHUNK) as f64 / 44100.0).abs() < 1e-6, "{r}");
        assert!((e - s - WINDOW as f64 / 44100.0).abs() < 1e-6, "{r}");
    }
    let flagged = |from: f64, to: f64| {
        rows.iter()
            .filter(|r| at(r, "start_s") >= from && at(r, "end_s") <= to && r["anomaly"] == true)
            .count()
    };
    assert_eq!(flagged(0.0, 14.0), 0, "normal audio flagged: {rows:?}");
    assert!(flagged(16.0, 30.0) > 20, "the fault is flagged: {rows:?}");
    let monitor = |hop: &str| {
        format!(
            "{}{}[[monitor]]\nname = \"m\"\nprofile = \"{}\"\n{hop}\
             source = {{ file = \"{}\", realtime = false, loop = false }}\n",
            daemon_header(d),
            model_table(&model),
            profile.display(),
            wav.display()
        )
    };
    let cfg = write_config(d, &monitor(""));
    let mut daemon = Daemon::start(&cfg, &["--exit-when-done"], &[]);
    let status = daemon.expect_exit(Duration::from_secs(300));
    assert!(status.success(), "{}", daemon.log());
    let anomalies: Vec<serde_json::Value> = daemon
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "anomaly_started")
        .collect();
    assert!(!anomalies.is_empty(), "no anomaly event:\n{}", daemon.log());
    let first = anomalies[0]["event"]["start"]["stream_s"]
        .as_f64()
        .expect("start");
    assert!(
        (14.0..18.0).contains(&first),
        "first anomaly starts at {first} s, the fault at 15 s: {anomalies:?}"
    );

    // A hop that does not step whole chunks is refused at start, saying what to do.
    let cfg = write_config(d, &monitor("hop_seconds = 0.3\n"));
    let out = std::process::Command::new(EARSHOT)
        .args(["check", "--config", cfg.to_str().expect("utf-8")])
        .output()
        .expect("earshot check runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "check accepted hop 0.3: {text}");
    assert!(
        text.contains("whole number of the chunk-max profile's hops"),
        "{text}"
    );
}
