//! `earshot eval` on a generated DCASE-style dataset: detection must be far above chance with
//! the bundled model, and a malformed manifest must be refused naming the line.
//!
//! Seed 11 is reserved for this test: never tune the synthesiser, the model or the scorers on it,
//! or the bar below stops meaning anything.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const EARSHOT: &str = env!("CARGO_BIN_EXE_earshot");

fn earshot(args: &[&str]) -> Output {
    Command::new(EARSHOT)
        .args(args)
        .env("EARSHOT_LOG", "warn")
        .output()
        .expect("run earshot")
}

fn synth(out: &Path, seed: &str, test_clips: &str, train_clips: &str) {
    let o = earshot(&[
        "synth",
        "dataset",
        "--out",
        out.to_str().unwrap(),
        "--seed",
        seed,
        "--test-clips",
        test_clips,
        "--train-clips",
        train_clips,
    ]);
    assert!(
        o.status.success(),
        "synth: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn num(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!((0.0..=1.0).contains(&x), "{what} = {x} outside [0, 1]");
    x
}

#[test]
fn eval_on_generated_data_is_far_above_chance() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    synth(&ds, "11", "10", "10");
    let manifest = ds.join("manifest.csv");
    let o = earshot(&[
        "eval",
        "--manifest",
        manifest.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(
        o.status.success(),
        "eval: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r: Value = serde_json::from_slice(&o.stdout).expect("eval --format json prints JSON");

    let machines = r["machines"].as_array().expect("machines array");
    let names: Vec<&str> = machines
        .iter()
        .map(|m| m["machine"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for want in ["motor_id01", "fan_id02", "pump_id03"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    println!("machine      scorer    AUC    pAUC");
    for m in machines {
        assert_eq!(m["train_clips"], 10, "{m}");
        assert_eq!(m["test_normal"], 10, "{m}");
        assert_eq!(m["test_anomaly"], 10, "{m}");
        // The log-mel scorers are learned and reported beside the embedding's.
        for s in ["centroid", "knn", "mel", "fused"] {
            let name = m["machine"].as_str().unwrap();
            let auc = num(&m["scorers"][s]["auc"], &format!("{name} {s} auc"));
            let pauc = num(&m["scorers"][s]["pauc"], &format!("{name} {s} pauc"));
            println!("{name:<12} {s:<9} {auc:.3}  {pauc:.3}");
        }
    }
    let mean = |s: &str, k: &str| num(&r["mean"][s][k], &format!("mean {s} {k}"));
    let (knn, cen) = (mean("knn", "auc"), mean("centroid", "auc"));
    println!(
        "mean         knn       {knn:.3}  {:.3}\nmean         centroid  {cen:.3}  {:.3}",
        mean("knn", "pauc"),
        mean("centroid", "pauc")
    );
    // The mean must agree with the per-machine figures it summarises.
    for s in ["centroid", "knn", "mel", "fused"] {
        let avg = machines
            .iter()
            .map(|m| m["scorers"][s]["auc"].as_f64().unwrap())
            .sum::<f64>()
            / machines.len() as f64;
        assert!(
            (avg - mean(s, "auc")).abs() < 1e-9,
            "{s}: mean {} vs {avg}",
            mean(s, "auc")
        );
    }
    // Chance is 0.5; these bars are far above it (seed 11 measured 0.93 / 0.88 when written).
    assert!(knn >= 0.75, "knn mean AUC {knn:.3} < 0.75");
    assert!(cen >= 0.7, "centroid mean AUC {cen:.3} < 0.7");
    // The log-mel scorers separate the generated faults too (seed 11 measured mel 0.873 and
    // fused 0.953 mean AUC with the pretrained default model when they were added).
    let (mel, fused) = (mean("mel", "auc"), mean("fused", "auc"));
    println!("mean         mel       {mel:.3}\nmean         fused     {fused:.3}");
    assert!(mel >= 0.7, "mel mean AUC {mel:.3} < 0.7");
    assert!(fused >= 0.8, "fused mean AUC {fused:.3} < 0.8");
}

#[test]
fn manifest_with_a_bad_split_or_label_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    synth(&ds, "5", "1", "2");
    let text = std::fs::read_to_string(ds.join("manifest.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Line numbers are 1-based and count the header.
    let i = lines
        .iter()
        .position(|l| l.contains(",test,normal,"))
        .expect("a test normal row");

    let mut bad = lines.clone();
    bad[i] = bad[i].replace(",test,normal,", ",tset,normal,");
    let p = dir.path().join("bad_split.csv");
    std::fs::write(&p, bad.join("\n") + "\n").unwrap();
    let o = earshot(&[
        "eval",
        "--manifest",
        p.to_str().unwrap(),
        "--root",
        ds.to_str().unwrap(),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{e}");
    assert!(e.contains(&format!("bad_split.csv, line {}", i + 1)), "{e}");
    assert!(e.contains("tset") && e.contains("train or test"), "{e}");

    lines[i] = lines[i].replace(",test,normal,", ",test,anomalus,");
    let p = dir.path().join("bad_label.csv");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    let o = earshot(&[
        "eval",
        "--manifest",
        p.to_str().unwrap(),
        "--root",
        ds.to_str().unwrap(),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{e}");
    assert!(e.contains(&format!("bad_label.csv, line {}", i + 1)), "{e}");
    assert!(
        e.contains("anomalus") && e.contains("normal or anomaly"),
        "{e}"
    );
}
