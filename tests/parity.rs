//! Parity with the reference PANNs code: the Rust log-mel front end and the converted ONNX
//! models must reproduce what the original audioset_tagging_cnn PyTorch models (with
//! torchlibrosa) computed for the same seeded checkpoints and audio.
//!
//! The expected values in tests/fixtures/parity were produced by
//! scripts/parity/regen-fixtures.sh (outside this repo's code: it runs the original
//! repository). The models are regenerated from the same seeds by
//! scripts/make-test-models.sh into target/test-models (or $EARSHOT_TEST_MODELS); the card
//! records the checkpoint's sha256, which must be the one the fixtures were made from.
//!
//! Tolerances (from the issue): log-mel max abs difference <= 1e-3 dB; embedding cosine
//! similarity >= 0.9999.

use earshot::audio::read_wav;
use earshot::dsp::{FrontEnd, LogMel};
use earshot::embed::{EmbedOptions, Embedder};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).expect("fixture manifest");
    serde_json::from_str(&text).expect("fixture manifest is JSON")
}

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixtures().join(name)).expect("fixture file");
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn test_models() -> PathBuf {
    std::env::var_os("EARSHOT_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-models"))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 && nb == 0.0 {
        return 1.0;
    }
    dot / (na * nb)
}

#[test]
fn logmel_matches_torchlibrosa() {
    let m = manifest();
    let clips = m["clips"].as_object().expect("clips");
    assert!(clips.len() >= 6, "fixtures incomplete");
    for (name, c) in clips {
        let mut fe_json = m["frontends"][c["frontend"].as_str().unwrap()].clone();
        // The fixture records the rate beside the parameters; the card keeps it separately.
        fe_json.as_object_mut().unwrap().remove("sample_rate");
        let fe: FrontEnd = serde_json::from_value(fe_json).expect("front end in fixture");
        let sr = c["sample_rate"].as_u64().unwrap() as u32;
        fe.validate(sr).expect("fixture front end is supported");
        let clip = read_wav(&fixtures().join(c["wav"].as_str().unwrap())).expect("fixture wav");
        assert_eq!(clip.sample_rate, sr);
        assert_eq!(clip.samples.len() as u64, c["samples"].as_u64().unwrap());
        let mut lm = LogMel::new(&fe, sr);
        let mut ours = Vec::new();
        let frames = lm.compute(&clip.samples, &mut ours);
        let reference = read_f32(c["logmel"].as_str().unwrap());
        assert_eq!(
            frames as u64,
            c["frames"].as_u64().unwrap(),
            "{name}: frame count"
        );
        assert_eq!(ours.len(), reference.len(), "{name}: log-mel size");
        let max_diff = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!("{name}: log-mel max |diff| = {max_diff:.3e} dB over {frames} frames");
        assert!(
            max_diff <= 1e-3,
            "{name}: log-mel differs by {max_diff} dB (> 1e-3)"
        );
    }
}

fn model_parity(key: &str) {
    let m = manifest();
    let spec = &m["models"][key];
    let dir = test_models().join(spec["onnx_dir"].as_str().unwrap());
    assert!(
        dir.join("card.json").is_file(),
        "test model {} missing: run `scripts/make-test-models.sh {}` (the README's test command does)",
        dir.display(),
        test_models().display()
    );
    let mut e = Embedder::load(&dir, &EmbedOptions::default()).expect("load test model");
    assert_eq!(
        e.card().provenance.checkpoint_sha256.as_deref(),
        spec["checkpoint_sha256"].as_str(),
        "{key}: the test model was not made from the checkpoint the fixtures were made from (seeded generation changed?)"
    );
    let mut checked = 0;
    for (name, c) in m["clips"].as_object().unwrap() {
        let Some(expect) = c["models"].get(key) else {
            continue;
        };
        let clip = read_wav(&fixtures().join(c["wav"].as_str().unwrap())).unwrap();
        let out = e.embed(&clip.samples).expect("embed");
        let reference = read_f32(expect["embedding"].as_str().unwrap());
        assert_eq!(out.embedding.len(), reference.len(), "{key}/{name}: dim");
        let cos = cosine(&out.embedding, &reference);
        let ref_clip = read_f32(expect["clipwise"].as_str().unwrap());
        let clip_diff = out
            .clipwise
            .as_ref()
            .expect("clipwise output")
            .iter()
            .zip(&ref_clip)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!("{key}/{name}: embedding cosine {cos:.7}, clipwise max |diff| {clip_diff:.2e}");
        assert!(cos >= 0.9999, "{key}/{name}: cosine {cos} < 0.9999");
        assert!(
            clip_diff < 1e-3,
            "{key}/{name}: clipwise differs by {clip_diff}"
        );
        checked += 1;
    }
    assert!(checked >= 1, "no fixture clip for {key}");
}

#[test]
fn mobilenetv1_matches_reference() {
    model_parity("mobilenetv1");
}

#[test]
fn cnn14_matches_reference() {
    model_parity("cnn14");
}

#[test]
fn cnn14_16k_matches_reference() {
    model_parity("cnn14_16k");
}

/// The bundled default model is the seed-1 MobileNetV1 of the fixtures: the same parity holds.
#[test]
fn bundled_default_model_is_the_fixture_model() {
    let m = manifest();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/panns-mobilenetv1-seeded");
    let e = Embedder::load(&dir, &EmbedOptions::default()).expect("bundled model loads");
    assert_eq!(
        e.card().provenance.checkpoint_sha256.as_deref(),
        m["models"]["mobilenetv1"]["checkpoint_sha256"].as_str()
    );
}
