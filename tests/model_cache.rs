//! The optimised-model cache (`embed::optimized`) with a real ONNX Runtime session on the
//! bundled models: the first load saves the graph ONNX Runtime optimised, the next loads that
//! file (it is not written again) and computes the same embeddings as a session made from the
//! original model; a damaged or unwritable cache costs nothing but the memory peak. The peak
//! itself is a benchmark figure (README "Speed": peak RSS), not asserted here.

#[path = "common/signal.rs"]
mod signal;

use earshot::embed::{EmbedOptions, Embedder};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

fn model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
}

/// Two seconds of a changing signal at `rate`.
fn signal(rate: u32) -> Vec<f32> {
    signal::changing(rate, 2.0, 0x2545_f491_4f6c_dd1d)
}

fn opts(cache: Option<&Path>) -> EmbedOptions {
    EmbedOptions {
        threads: 1,
        optimized_cache: cache.map(Path::to_owned),
        ..Default::default()
    }
}

fn embed(dir: &Path, cache: Option<&Path>) -> Vec<f32> {
    let mut e = Embedder::load(dir, &opts(cache)).expect("model loads");
    let x = signal(e.sample_rate());
    e.embed(&x).expect("embeds").embedding
}

/// The one entry directory under `cache` and its two files.
fn entry(cache: &Path) -> (PathBuf, PathBuf) {
    let dirs: Vec<PathBuf> = std::fs::read_dir(cache)
        .expect("cache dir made")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "one entry per model: {dirs:?}");
    let files: Vec<String> = std::fs::read_dir(&dirs[0])
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().all(|f| !f.ends_with(".tmp")),
        "staging files left behind: {files:?}"
    );
    (dirs[0].join("model.onnx"), dirs[0].join("entry.json"))
}

fn modified(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn a_saved_optimised_model_is_reused_and_computes_the_same_embeddings() {
    for name in ["aisfx-cnn9", "panns-mobilenetv1-seeded"] {
        let dir = model(name);
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("model-cache");
        let reference = embed(&dir, None);

        // First load: optimised from the original and saved.
        let first = embed(&dir, Some(&cache));
        let (saved, meta) = entry(&cache);
        assert!(saved.is_file() && meta.is_file(), "{name}: nothing saved");
        let (saved_at, meta_at) = (modified(&saved), modified(&meta));
        let text = std::fs::read_to_string(&meta).unwrap();
        let m: serde_json::Value = serde_json::from_str(&text).unwrap();
        let card: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("card.json")).unwrap()).unwrap();
        assert_eq!(m["source_sha256"], card["onnx"]["sha256"], "{name}: {text}");

        // Second load: the saved file, not written again, same numbers.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let second = embed(&dir, Some(&cache));
        let _ = entry(&cache);
        assert_eq!(
            modified(&saved),
            saved_at,
            "{name}: the saved model was rewritten"
        );
        assert_eq!(modified(&meta), meta_at, "{name}: the entry was rewritten");
        for (what, e) in [("first", &first), ("second", &second)] {
            let d = max_diff(e, &reference);
            assert!(
                d <= 1e-4,
                "{name}: {what} load differs from the original by {d}"
            );
        }

        // The weights are in a file of their own (mapped by later loads).
        let weights = weights_file(&saved);
        assert!(
            std::fs::metadata(&weights).unwrap().len() > std::fs::metadata(&saved).unwrap().len(),
            "{name}: the weights are not in their own file"
        );

        // A damaged saved graph or weights file is refused by its checksum and made again.
        for graph in [true, false] {
            let damaged = match graph {
                true => saved.clone(),
                false => weights_file(&saved),
            };
            let mut bytes = std::fs::read(&damaged).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            std::fs::write(&damaged, &bytes).unwrap();
            let again = embed(&dir, Some(&cache));
            let (saved, _) = entry(&cache);
            let now = if damaged == saved {
                saved.clone()
            } else {
                weights_file(&saved)
            };
            assert_ne!(
                std::fs::read(&now).unwrap(),
                bytes,
                "{name}: damage kept in {damaged:?}"
            );
            assert!(max_diff(&again, &reference) <= 1e-4, "{name}");
        }
    }
}

/// The weights file named in the entry beside the saved graph `model`.
fn weights_file(model: &Path) -> PathBuf {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.with_file_name("entry.json")).unwrap())
            .unwrap();
    let name = meta["weights"][0]
        .as_str()
        .expect("a weights file in the entry");
    model.with_file_name(name)
}

#[test]
fn a_cache_that_cannot_be_written_only_costs_the_peak() {
    let dir = model("panns-mobilenetv1-seeded");
    let tmp = tempfile::tempdir().unwrap();
    // A file where the cache directory should be: nothing can be saved.
    let cache = tmp.path().join("model-cache");
    std::fs::write(&cache, b"not a directory").unwrap();
    let reference = embed(&dir, None);
    let e = embed(&dir, Some(&cache));
    assert!(max_diff(&e, &reference) <= 1e-4);
    assert!(cache.is_file(), "the obstacle is left alone");
}

/// Monitors of one model start together: one of them optimises and saves the model while the
/// others wait and load what it saved, so the entry is whole (its graph, its metadata and the
/// weights file they name are one save's) and the next start uses it as it is. Before the
/// entry had a lock, every monitor optimised (its memory peak once per monitor) and the saves
/// removed each other's weights, so no later start could use the entry.
#[test]
fn monitors_starting_together_save_the_model_once() {
    let dir = model("aisfx-cnn9");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("model-cache");
    let reference = embed(&dir, None);
    let n = 4;
    let start = std::sync::Barrier::new(n);
    let got: Vec<Vec<f32>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    embed(&dir, Some(&cache))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for e in &got {
        assert!(max_diff(e, &reference) <= 1e-4);
    }
    let (saved, meta) = entry(&cache);
    let weights = weights_file(&saved);
    assert!(
        weights.is_file(),
        "the entry names a weights file that is gone: {weights:?}"
    );
    let stray: Vec<String> = std::fs::read_dir(saved.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| {
            f.starts_with("weights-") && *f != weights.file_name().unwrap().to_string_lossy()
        })
        .collect();
    assert!(stray.is_empty(), "weights of other saves left: {stray:?}");
    let (saved_at, meta_at) = (modified(&saved), modified(&meta));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = embed(&dir, Some(&cache));
    assert!(max_diff(&again, &reference) <= 1e-4);
    assert_eq!(modified(&saved), saved_at, "the next start optimised again");
    assert_eq!(modified(&meta), meta_at, "the next start rewrote the entry");
}

/// A new entry replaces the model's entries for another key (an earlier model file, ONNX
/// Runtime or CPU): nothing loads them again and each holds a copy of the weights. Another
/// model's entry, a directory that is not an entry, and an entry being saved (its lock held)
/// stay.
#[test]
fn a_new_entry_removes_the_same_models_outdated_ones() {
    let dir = model("aisfx-cnn9");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("model-cache");
    let made = |name: &str| {
        let d = cache.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("model.onnx"), b"an earlier save").unwrap();
        d
    };
    let outdated = made("aisfx-cnn9-0123456789abcdef");
    let busy = made("aisfx-cnn9-fedcba9876543210");
    let other_model = made("aisfx-cnn9-large-0123456789abcdef");
    let not_an_entry = made("aisfx-cnn9-notes");
    let _saving = earshot::files::lock_file(&busy.join("lock"), false)
        .unwrap()
        .expect("the lock is free");
    embed(&dir, Some(&cache));
    assert!(!outdated.exists(), "the outdated entry is still there");
    for kept in [&busy, &other_model, &not_an_entry] {
        assert!(kept.join("model.onnx").is_file(), "{kept:?} was removed");
    }
    let entries = std::fs::read_dir(&cache).unwrap().count();
    assert_eq!(entries, 4, "the new entry and the three kept");
}
