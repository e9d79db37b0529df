//! `earshot eval --catalog` on generated data with the bundled model on ONNX Runtime: fault
//! identification from a catalog of half of each fault type's clips must name the held-back
//! clips' faults well above chance, and feedback on half of the normal clips must lower the
//! false events a normal variation raises on the other half, and not cost detections.
//!
//! Seed 12 is reserved for this test: nothing is tuned on it. On the tuning seed (100) the same
//! run gave top-1 0.50 per window and 1.00 whole-clip (chance 0.20), and 5 -> 0 held-back
//! events after feedback with detection unchanged.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const EARSHOT: &str = env!("CARGO_BIN_EXE_earshot");
/// The machine under test, and the one whose test normals stand in for a normal variation
/// of it (another motor: as if a part had been replaced and it now sounds different
/// throughout, which the operator vouches for).
const MACHINE: &str = "motor_id01";
const VARIATION: &str = "motor_id02";

fn earshot(args: &[&str]) -> Output {
    Command::new(EARSHOT)
        .args(args)
        .env("EARSHOT_LOG", "error")
        .output()
        .expect("run earshot")
}

fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Rewrites `from` into `to`: the test normals of [`VARIATION`] become test normals of
/// [`MACHINE`]; the rest of [`VARIATION`] is dropped.
fn with_variation(from: &Path, to: &Path) {
    let mut rdr = csv::Reader::from_path(from).unwrap();
    let headers = rdr.headers().unwrap().clone();
    let col = |n: &str| headers.iter().position(|h| h == n).unwrap();
    let (machine, split, label) = (col("machine"), col("split"), col("label"));
    let mut w = csv::Writer::from_path(to).unwrap();
    w.write_record(&headers).unwrap();
    let mut n = 0;
    for r in rdr.records() {
        let mut r: Vec<String> = r.unwrap().iter().map(str::to_owned).collect();
        if r[machine] == VARIATION {
            if r[split] != "test" || r[label] != "normal" {
                continue;
            }
            r[machine] = MACHINE.into();
            n += 1;
        }
        w.write_record(&r).unwrap();
    }
    w.flush().unwrap();
    assert_eq!(n, 20);
}

#[test]
fn identification_above_chance_and_feedback_lowers_false_events() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    ok(
        earshot(&[
            "synth",
            "dataset",
            "--out",
            ds.to_str().unwrap(),
            "--seed",
            "12",
            "--machine",
            "motor:1",
            "--machine",
            "motor:2",
            "--train-clips",
            "10",
            "--test-clips",
            "20",
            "--levels-db",
            "-6",
        ]),
        "synth dataset",
    );
    let manifest = dir.path().join("variation.csv");
    with_variation(&ds.join("manifest.csv"), &manifest);
    let out = ok(
        earshot(&[
            "eval",
            "--manifest",
            manifest.to_str().unwrap(),
            "--root",
            ds.to_str().unwrap(),
            "--catalog",
            "--format",
            "json",
        ]),
        "eval --catalog",
    );
    let r: Value = serde_json::from_str(&out).expect("JSON");
    let m = &r["machines"][0];
    assert_eq!(m["machine"], MACHINE);
    println!(
        "{}",
        serde_json::to_string_pretty(&m["identification"]).unwrap()
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&m["after_feedback"]).unwrap()
    );

    // Identification: 5 fault types of 4 clips each, 2 of each in the catalog, 2 queried.
    let id = &m["identification"];
    assert_eq!(id["types"], 5, "{id}");
    assert_eq!(
        (id["catalog_clips"].as_u64(), id["queries"].as_u64()),
        (Some(10), Some(10))
    );
    let chance = id["chance_top1"].as_f64().unwrap();
    assert!((chance - 0.2).abs() < 1e-9);
    assert!(id["split"].as_str().unwrap().contains("sorted by path"));
    // Whole-clip entries are the steadier way (README: 15/15 against 11/15 per window), so
    // they carry the strong bar; per-window entries must still beat chance clearly.
    for (mode, bar) in [("whole_clip", 3.0 * chance), ("windows", 1.5 * chance)] {
        let top1 = id[mode]["top1"].as_f64().unwrap();
        let top3 = id[mode]["top3"].as_f64().unwrap();
        assert!(top3 >= top1, "{mode}: {id}");
        assert!(
            top1 >= bar - 1e-9,
            "{mode}: top-1 {top1} below {bar} (chance {chance})"
        );
    }
    // The answers name each query's own type and ranked labels from the catalog.
    for a in id["answers"].as_array().unwrap() {
        assert!(!a["windows"].as_array().unwrap().is_empty(), "{a}");
    }

    // Feedback: the variation raised events on the held-back half; marking the feedback
    // half's events normal lowers them, and costs no detection of the real faults.
    let f = &m["after_feedback"];
    let n = |k: &str| f[k].as_u64().unwrap_or_else(|| panic!("{k}: {f}"));
    assert_eq!((n("feedback_clips"), n("held_back_clips")), (20, 20), "{f}");
    assert!(n("feedback_events") > 0 && n("windows_added") > 0, "{f}");
    assert!(n("events_before") > 0, "the variation raises events: {f}");
    assert!(n("events_after") < n("events_before"), "{f}");
    assert!(f["per_day_after"].as_f64().unwrap() < f["per_day_before"].as_f64().unwrap());
    let (db, da) = (
        f["detected_before"].as_f64().unwrap(),
        f["detected_after"].as_f64().unwrap(),
    );
    assert!(da >= db - 0.1 - 1e-9, "detected {db} -> {da}: {f}");
    let t = &r["total_after_feedback"];
    assert_eq!(t["events_before"], f["events_before"]);
}

#[test]
fn catalog_without_anomaly_types_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing is read before the manifest is checked: the files need not exist.
    let plain = dir.path().join("plain.csv");
    std::fs::write(
        &plain,
        "path,machine,split,label\na.wav,m,train,normal\nb.wav,m,test,anomaly\n",
    )
    .unwrap();
    let o = earshot(&["eval", "--manifest", plain.to_str().unwrap(), "--catalog"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("plain.csv") && e.contains("anomaly_type column"),
        "{e}"
    );

    let partial = dir.path().join("partial.csv");
    std::fs::write(
        &partial,
        "path,machine,split,label,anomaly_type\na.wav,m,train,normal,\nb.wav,m,test,anomaly,rub\nc.wav,m,test,anomaly,\n",
    )
    .unwrap();
    let o = earshot(&["eval", "--manifest", partial.to_str().unwrap(), "--catalog"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("c.wav") && e.contains("empty anomaly_type"),
        "{e}"
    );
}
