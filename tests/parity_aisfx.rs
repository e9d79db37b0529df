//! Parity with the aisfx 0.1.2 package (Ma and Lerch, ISMIR 2022): earshot's Rust front end and
//! the bundled ONNX conversion (models/aisfx-cnn9) must reproduce what the package's own code
//! computes for the same audio.
//!
//! tests/fixtures/parity-aisfx was produced by scripts/parity/regen-aisfx-fixtures.sh, which runs
//! the package from its PyPI wheel: its librosa spectrogram (`spectrogram_librosa`), its
//! Essentia spectrogram (`spectrogram_essentia`, the front end of the paper) and its torch
//! network (`CrossNet.get_embedding` with the wheel's checkpoint.pth).
//!
//! Tolerances:
//! - librosa path: max |difference| <= 1e-4 in log10(1 + 1e4 x) units (values span 0..~9; the
//!   reference is float32, we compute in f64; measured about 1e-6);
//! - Essentia path (other triangle weighting and framing, one more frame at the end): on the
//!   frames both have, max |difference| <= 0.03 and mean <= 0.003 (measured 0.012 and 0.001);
//! - network: embedding cosine >= 0.9999 against the torch output (measured 1.0000000).

use earshot::audio::read_wav;
use earshot::dsp::LogMel;
use earshot::embed::{EmbedOptions, Embedder, ModelCard};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/parity-aisfx")
}

fn model_dir() -> PathBuf {
    root().join("models/aisfx-cnn9")
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

/// Each clip's samples and earshot's log-mel of them with the bundled card's front end.
fn ours() -> Vec<(String, Value, Vec<f32>, usize)> {
    let (card, _) = ModelCard::load(&model_dir()).expect("bundled aisfx card");
    let mut lm = LogMel::new(&card.frontend, card.sample_rate);
    let m = manifest();
    let clips = m["clips"].as_object().expect("clips");
    assert!(clips.len() >= 4, "fixtures incomplete");
    clips
        .iter()
        .map(|(name, c)| {
            let clip = read_wav(&fixtures().join(c["wav"].as_str().unwrap())).expect("fixture wav");
            assert_eq!(clip.sample_rate, card.sample_rate);
            let mut out = Vec::new();
            let frames = lm.compute(&clip.samples, &mut out);
            (name.clone(), c.clone(), out, frames)
        })
        .collect()
}

#[test]
fn logmel_matches_the_package_librosa_path() {
    for (name, c, out, frames) in ours() {
        let reference = read_f32(c["logmel_librosa"].as_str().unwrap());
        assert_eq!(
            frames as u64,
            c["frames"].as_u64().unwrap(),
            "{name}: frames"
        );
        assert_eq!(out.len(), reference.len(), "{name}: size");
        let max = out
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!("{name}: max |ours - librosa| = {max:.2e}");
        assert!(max <= 1e-4, "{name}: log-mel differs from librosa by {max}");
    }
}

#[test]
fn logmel_is_close_to_the_package_essentia_path() {
    for (name, c, out, frames) in ours() {
        let Some(file) = c["logmel_essentia"].as_str() else {
            panic!("{name}: fixtures lack the Essentia log-mel (regenerate with an Essentia venv)");
        };
        let reference = read_f32(file);
        let ess_frames = c["frames_essentia"].as_u64().unwrap() as usize;
        // Essentia's FrameCutter emits one frame more at the end; the rest line up.
        assert_eq!(ess_frames, frames + 1, "{name}: Essentia frame count");
        let common = frames * 96;
        let diffs: Vec<f32> = out[..common]
            .iter()
            .zip(&reference[..common])
            .map(|(a, b)| (a - b).abs())
            .collect();
        let max = diffs.iter().copied().fold(0.0f32, f32::max);
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        println!("{name}: |ours - essentia| max {max:.4}, mean {mean:.5}");
        assert!(
            max <= 0.03 && mean <= 0.003,
            "{name}: max {max}, mean {mean}"
        );
    }
}

#[test]
fn bundled_model_matches_the_package_network() {
    let mut e =
        Embedder::load(&model_dir(), &EmbedOptions::default()).expect("bundled aisfx model");
    assert_eq!(e.dim(), 512);
    assert!(!e.card().is_untrained());
    let credit = e.card().provenance.attribution.clone().unwrap_or_default();
    assert!(credit.contains("Ma") && credit.contains("Lerch") && credit.contains("CC BY 4.0"));
    for (name, c) in manifest()["clips"].as_object().unwrap() {
        let clip = read_wav(&fixtures().join(c["wav"].as_str().unwrap())).unwrap();
        let out = e.embed(&clip.samples).expect("embed");
        let reference = read_f32(c["embedding"].as_str().unwrap());
        let cos = cosine(&out.embedding, &reference);
        println!("{name}: cosine to the torch network {cos:.7}");
        assert!(cos >= 0.9999, "{name}: cosine {cos} < 0.9999");
    }
}

/// The licence of the bundled pretrained weights (CC BY 4.0) requires the credit where the
/// program names its models.
#[test]
fn version_credits_the_aisfx_authors_and_licence() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_earshot"))
        .arg("--version")
        .output()
        .expect("run earshot --version");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for needle in [
        "Alison B. Ma",
        "Alexander Lerch",
        "ISMIR 2022",
        "CC BY 4.0",
        "aisfx-cnn9",
    ] {
        assert!(text.contains(needle), "--version lacks {needle:?}: {text}");
    }
}
