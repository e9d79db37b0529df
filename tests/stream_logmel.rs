//! The streamed front end (log-mel frames shared by overlapping windows computed once) gives
//! the embeddings of the per-window path, through a real ONNX Runtime session on the bundled
//! models: the PANNs MobileNetV1 (32 kHz, Slaney, dB, reflect padding) and the aisfx Cnn9
//! (44.1 kHz, HTK, log10(1 + 1e4 x), zero padding). The per-window path is the one
//! tests/parity.rs and tests/parity_aisfx.rs hold against the original code.

#[path = "common/signal.rs"]
mod signal;

use earshot::embed::file::{FileWindows, embed_file};
use earshot::embed::{EmbedOptions, Embedder};
use std::path::{Path, PathBuf};

fn model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
}

/// A signal that changes all the time, so that a wrongly reused frame would show.
fn signal(rate: u32, seconds: f64) -> Vec<f32> {
    signal::changing(rate, seconds, 0x9e37_79b9_7f4a_7c15)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Embeds every window of `x` (`win` samples every `hop`) both ways, in batches of 4, and
/// returns the worst cosine and max |diff| between the streamed and per-window embeddings.
fn compare(dir: &Path, x: &[f32], win: usize, hop: usize, level: Option<f64>) -> (f64, f32) {
    let opts = EmbedOptions {
        threads: 1,
        ..Default::default()
    };
    let mut streamed = Embedder::load(dir, &opts).expect("bundled model loads");
    let mut alone = Embedder::load(dir, &opts).expect("bundled model loads");
    streamed.set_level_dbfs(level);
    alone.set_level_dbfs(level);
    let starts: Vec<usize> = (0..)
        .map(|k| k * hop)
        .take_while(|s| s + win <= x.len())
        .collect();
    assert!(starts.len() >= 8);
    let (mut worst_cos, mut worst_diff) = (1.0f64, 0.0f32);
    for batch in starts.chunks(4) {
        let at: Vec<(u64, &[f32])> = batch.iter().map(|&s| (s as u64, &x[s..s + win])).collect();
        let plain: Vec<&[f32]> = batch.iter().map(|&s| &x[s..s + win]).collect();
        let a = streamed.embed_batch_at(&at).expect("streamed embedding");
        let b = alone.embed_batch(&plain).expect("per-window embedding");
        for (p, q) in a.iter().zip(&b) {
            worst_cos = worst_cos.min(cosine(&p.embedding, &q.embedding));
            for (u, v) in p.embedding.iter().zip(&q.embedding) {
                worst_diff = worst_diff.max((u - v).abs());
            }
        }
    }
    let (computed, reused) = streamed.frame_counts();
    // At hop = window / 2 a bit less than half of a window's frames are shared (the edge
    // frames never are); at window / 4 about three quarters.
    let share = reused as f64 / (reused + computed) as f64;
    let want = if hop * 4 <= win { 0.6 } else { 0.35 };
    assert!(
        share >= want,
        "hop {hop} of {win}: only {reused} frames reused, {computed} computed"
    );
    (worst_cos, worst_diff)
}

#[test]
fn streamed_front_end_gives_the_per_window_embeddings_on_both_bundled_models() {
    // (model, rate, window): aisfx windows of 44 STFT hops so that window / 2 and / 4 are
    // on its 1024-sample frame grid.
    for (name, rate, win) in [
        ("panns-mobilenetv1-seeded", 32000u32, 32000usize),
        ("aisfx-cnn9", 44100, 44 * 1024),
    ] {
        let x = signal(rate, 6.0);
        for hop in [win / 2, win / 4] {
            let (cos, diff) = compare(&model(name), &x, win, hop, None);
            // No level normalisation: the log-mel is bit for bit the same, so is the output.
            assert_eq!(
                diff, 0.0,
                "{name} hop {hop}: embeddings differ by {diff} (cos {cos})"
            );
            let (cos, diff) = compare(&model(name), &x, win, hop, Some(-10.0));
            println!("{name} hop {hop} level -10 dBFS: cosine {cos:.9}, max |diff| {diff:.2e}");
            assert!(
                cos >= 0.999_999,
                "{name} hop {hop} with level: cosine {cos}"
            );
        }
    }
}

/// `embed_file` (which `learn` and `score` use) streams the front end: same embeddings as
/// embedding the same windows one by one.
#[test]
fn embed_file_streams_the_front_end_with_the_per_window_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("machine.wav");
    let x = signal(48000, 8.0);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    for v in &x {
        w.write_sample(*v).unwrap();
    }
    w.finalize().unwrap();
    let opts = EmbedOptions {
        threads: 1,
        ..Default::default()
    };
    let mut e = Embedder::load(&model("panns-mobilenetv1-seeded"), &opts).unwrap();
    let (got, _) = embed_file(&mut e, &wav, 1.0, 0.25).expect("embed_file");
    let (computed, reused) = e.frame_counts();
    assert!(
        reused > 2 * computed,
        "{computed} computed, {reused} reused"
    );
    let mut alone = Embedder::load(&model("panns-mobilenetv1-seeded"), &opts).unwrap();
    // The same windows, embedded per window in embed_file's batches of 8 (a batch of one can
    // round differently inside the network).
    let mut windows = FileWindows::open(&wav, 32000, 1.0, 0.25).unwrap();
    let mut all = Vec::new();
    while let Some(w) = windows.next_window().unwrap() {
        all.push(w);
    }
    assert_eq!(all.len(), got.len());
    let mut n = 0;
    for batch in all.chunks(8) {
        let views: Vec<&[f32]> = batch.iter().map(|(_, w)| w.as_slice()).collect();
        for ((start, _), out) in batch.iter().zip(alone.embed_batch(&views).unwrap()) {
            let mut want = out.embedding;
            earshot::score::normalize(&mut want);
            let have = &got[n];
            assert_eq!(have.start_s, *start as f64 / 32000.0);
            assert_eq!(have.embedding, want, "window {n} at {} s", have.start_s);
            n += 1;
        }
    }
    assert!(n >= 25);
}
