//! The sound catalog end to end: `earshot catalog add|list|remove` and `earshot search` on
//! real WAV files from `earshot synth`, embedded by the bundled model on ONNX Runtime.
//!
//! Seeds 31-34 are reserved for these tests: nothing is tuned on them.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EARSHOT: &str = env!("CARGO_BIN_EXE_earshot");
const FAULTS: [&str; 3] = ["bearing", "impact", "rub"];
const MACHINE: &str = "motor_id01";

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

fn failed(o: Output, what: &str) -> String {
    assert!(
        !o.status.success(),
        "{what} should have failed but printed: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stderr).unwrap()
}

/// A 5 s recording of motor 1 with `fault` from the start.
fn clip(dir: &Path, machine: &str, id: &str, fault: &str, seed: u32) -> PathBuf {
    let p = dir.join(format!("{machine}{id}-{fault}-{seed}.wav"));
    let seed = seed.to_string();
    ok(
        earshot(&[
            "synth",
            "stream",
            "--out",
            p.to_str().unwrap(),
            "--machine",
            machine,
            "--id",
            id,
            "--fault",
            fault,
            "--level-db",
            "-6",
            "--seconds",
            "5",
            "--onset",
            "0",
            "--seed",
            &seed,
        ]),
        "synth",
    );
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `catalog list --format json`.
fn listing(cat: &Path) -> Value {
    let out = ok(
        earshot(&["catalog", "list", "--catalog", s(cat), "--format", "json"]),
        "catalog list",
    );
    serde_json::from_str(&out).expect("catalog list --format json prints JSON")
}

fn entries(cat: &Path) -> u64 {
    listing(cat)["entries"].as_u64().expect("entries")
}

fn search(cat: &Path, query: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["search", "--catalog", s(cat), s(query), "--format", "json"];
    args.extend_from_slice(extra);
    let out = ok(earshot(&args), "search");
    let v: Value = serde_json::from_str(&out).expect("search --format json prints JSON");
    v["matches"].as_array().expect("matches").clone()
}

/// Builds a catalog of three clips of each fault type, and returns it with one held-back clip
/// per type (another seed, never added).
fn fault_catalog(dir: &Path, cat: &Path, whole_clip: bool) -> Vec<(&'static str, PathBuf)> {
    let mut held_back = Vec::new();
    for fault in FAULTS {
        let clips: Vec<PathBuf> = (31..=33)
            .map(|seed| clip(dir, "motor", "1", fault, seed))
            .collect();
        let mut args = vec![
            "catalog",
            "add",
            "--catalog",
            s(cat),
            "--label",
            fault,
            "--machine",
            MACHINE,
        ];
        if whole_clip {
            args.push("--whole-clip");
        }
        args.extend(clips.iter().map(|p| s(p)));
        ok(earshot(&args), "catalog add");
        held_back.push((fault, clip(dir, "motor", "1", fault, 34)));
    }
    held_back
}

/// Top-1 label of each held-back clip; prints the accuracy and returns how many were right.
fn identify(cat: &Path, held_back: &[(&str, PathBuf)], what: &str) -> usize {
    let mut right = 0;
    for (fault, query) in held_back {
        let m = search(cat, query, &["--top", "3"]);
        assert_eq!(m.len(), 3, "{m:?}");
        let sources: std::collections::BTreeSet<&str> =
            m.iter().map(|x| x["source"].as_str().unwrap()).collect();
        assert_eq!(sources.len(), 3, "one match per catalog clip: {m:?}");
        let sims: Vec<f64> = m
            .iter()
            .map(|x| x["similarity"].as_f64().unwrap())
            .collect();
        assert!(
            sims.windows(2).all(|w| w[0] >= w[1]),
            "most similar first: {sims:?}"
        );
        let got = m[0]["label"].as_str().unwrap();
        println!("{what}: held-back {fault} -> {got} ({:.3})", sims[0]);
        right += usize::from(got == *fault);
    }
    println!(
        "{what}: top-1 accuracy {right}/{} (chance {:.2})",
        held_back.len(),
        1.0 / FAULTS.len() as f64
    );
    right
}

/// The label on the first result line of `search`'s text output (`  1. 0.873  bearing [m] ...`).
fn m_label(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("1. "))
        .unwrap();
    line.split_whitespace().nth(2).unwrap().to_string()
}

#[test]
fn held_back_fault_clips_are_identified_by_their_type() {
    let dir = tempfile::tempdir().unwrap();
    let cat = dir.path().join("catalog");
    let held_back = fault_catalog(dir.path(), &cat, false);
    let l = listing(&cat);
    let labels = l["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 3, "{l}");
    for row in labels {
        assert_eq!(row["clips"], 3, "{row}");
        assert_eq!(row["machine"], MACHINE, "{row}");
        // 5 s in 1 s windows every 0.5 s.
        assert_eq!(row["entries"], 27, "{row}");
    }
    assert!(identify(&cat, &held_back, "per window") >= 2);

    // A clip that is in the catalog finds itself, window for window.
    let member = PathBuf::from(
        l["sources"][0]["source"]
            .as_str()
            .expect("sources are listed"),
    );
    let m = search(&cat, &member, &["--top", "1"]);
    assert_eq!(m[0]["source"].as_str(), member.to_str());
    assert!(m[0]["similarity"].as_f64().unwrap() > 0.9999, "{m:?}");
    assert_eq!(m[0]["offset_s"], m[0]["query_offset_s"], "{m:?}");

    // Filters: a label keeps only its clips, another machine's entries stay out.
    let fan = clip(dir.path(), "fan", "2", "bearing", 31);
    ok(
        earshot(&[
            "catalog",
            "add",
            "--catalog",
            s(&cat),
            "--label",
            "bearing",
            "--machine",
            "fan_id02",
            s(&fan),
        ]),
        "catalog add fan",
    );
    let (_, rub) = &held_back[2];
    let m = search(&cat, rub, &["--label", "impact", "--top", "10"]);
    assert_eq!(m.len(), 3, "three impact clips: {m:?}");
    assert!(m.iter().all(|x| x["label"] == "impact"), "{m:?}");
    let m = search(&cat, rub, &["--machine", MACHINE, "--top", "20"]);
    assert_eq!(m.len(), 9, "{m:?}");
    assert!(m.iter().all(|x| x["machine"] == MACHINE), "{m:?}");
    let m = search(&cat, rub, &["--top", "20"]);
    assert_eq!(
        m.len(),
        10,
        "the fan clip is there without the filter: {m:?}"
    );

    // The text form names the label and the source of the best match.
    let text = ok(
        earshot(&[
            "search",
            "--catalog",
            s(&cat),
            s(&held_back[0].1),
            "--top",
            "2",
        ]),
        "search text",
    );
    assert_eq!(text.lines().count(), 4, "{text}");
    let sounds_like = text.lines().nth(1).unwrap();
    let best = m_label(&text);
    assert!(
        sounds_like.starts_with(&format!("sounds like: {best} (0.")),
        "{text}"
    );
    assert!(text.lines().nth(2).unwrap().contains("  1. "), "{text}");

    // --spectrogram: a PNG of the query beside its matches.
    let pics = dir.path().join("pics");
    ok(
        earshot(&[
            "search",
            "--catalog",
            s(&cat),
            s(&held_back[0].1),
            "--spectrogram",
            s(&pics),
        ]),
        "search --spectrogram",
    );
    let stem = held_back[0].1.file_stem().unwrap().to_str().unwrap();
    let png = std::fs::read(pics.join(format!("{stem}.search.png"))).expect("PNG written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (1200, 446));
    assert!(
        png.len() > 20_000,
        "a picture, not a blank: {} bytes",
        png.len()
    );
}

#[test]
fn whole_clip_entries_identify_held_back_clips() {
    let dir = tempfile::tempdir().unwrap();
    let cat = dir.path().join("catalog");
    let held_back = fault_catalog(dir.path(), &cat, true);
    assert_eq!(entries(&cat), 9, "one entry per recording");
    let right = identify(&cat, &held_back, "whole clip");
    assert!(right >= 2);
    let m = search(&cat, &held_back[0].1, &["--whole-clip", "--top", "1"]);
    assert_eq!(m[0]["whole_clip"], true, "{m:?}");
}

#[test]
fn bad_input_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let cat = dir.path().join("catalog");
    let a = clip(dir.path(), "motor", "1", "rub", 31);
    let b = clip(dir.path(), "motor", "1", "impact", 31);

    // No catalog yet.
    let err = failed(earshot(&["search", "--catalog", s(&cat), s(&a)]), "search");
    assert!(
        err.contains("no sound catalog here yet") && err.contains("catalog add"),
        "{err}"
    );

    // Adding the same recording twice (also through another path) changes nothing.
    ok(
        earshot(&[
            "catalog",
            "add",
            "--catalog",
            s(&cat),
            "--label",
            "rub",
            s(&a),
        ]),
        "add",
    );
    let n = entries(&cat);
    assert_eq!(n, 9);
    let before = std::fs::read(cat.join("embeddings.f32")).unwrap();
    let dotted = dir.path().join(".").join(a.file_name().unwrap());
    let out = ok(
        earshot(&[
            "catalog",
            "add",
            "--catalog",
            s(&cat),
            "--label",
            "rub",
            s(&dotted),
        ]),
        "add again",
    );
    assert!(out.contains("0 new and 9 replaced"), "{out}");
    assert_eq!(entries(&cat), n);
    assert_eq!(std::fs::read(cat.join("embeddings.f32")).unwrap(), before);
    ok(
        earshot(&[
            "catalog",
            "add",
            "--catalog",
            s(&cat),
            "--label",
            "impact",
            s(&b),
        ]),
        "add impact",
    );
    assert_eq!(entries(&cat), 18);

    // Another model's card is refused before anything is embedded, and the catalog is kept.
    let other = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/aisfx-cnn9");
    for args in [
        vec![
            "catalog",
            "add",
            "--catalog",
            s(&cat),
            "--label",
            "rub",
            "--model",
            s(&other),
            s(&a),
        ],
        vec!["search", "--catalog", s(&cat), "--model", s(&other), s(&a)],
    ] {
        let err = failed(earshot(&args), "other model");
        assert!(
            err.contains("was made with model \"panns-mobilenetv1-seeded\"")
                && err.contains("aisfx-cnn9")
                && err.contains("--model"),
            "{err}"
        );
    }
    assert_eq!(entries(&cat), 18);

    // Unknown label: refused, naming the labels there are; nothing removed.
    let err = failed(
        earshot(&[
            "catalog",
            "remove",
            "--catalog",
            s(&cat),
            "--label",
            "squeal",
        ]),
        "remove unknown",
    );
    assert!(
        err.contains("\"squeal\"") && err.contains("impact, rub"),
        "{err}"
    );
    assert_eq!(entries(&cat), 18);
    // Bad names are refused before anything is embedded.
    let err = failed(
        earshot(&[
            "catalog",
            "add",
            "--catalog",
            s(&cat),
            "--label",
            "a\nb",
            s(&a),
        ]),
        "bad label",
    );
    assert!(err.contains("--label"), "{err}");

    // Removing by source, then by label, down to an empty catalog.
    let out = ok(
        earshot(&["catalog", "remove", "--catalog", s(&cat), "--source", s(&b)]),
        "remove source",
    );
    assert!(out.contains("removed 9 entries"), "{out}");
    ok(
        earshot(&["catalog", "remove", "--catalog", s(&cat), "--label", "rub"]),
        "remove label",
    );
    assert_eq!(entries(&cat), 0);
    let text = ok(earshot(&["catalog", "list", "--catalog", s(&cat)]), "list");
    assert!(text.contains("empty"), "{text}");
    let err = failed(
        earshot(&["search", "--catalog", s(&cat), s(&a)]),
        "search empty",
    );
    assert!(err.contains("the sound catalog is empty"), "{err}");

    // The default place is the state directory.
    let state = dir.path().join("state");
    let out = Command::new(EARSHOT)
        .args(["catalog", "add", "--label", "rub", s(&a)])
        .env("EARSHOT_LOG", "error")
        .env("EARSHOT_DAEMON__STATE_DIR", &state)
        .output()
        .unwrap();
    ok(out, "add to the state directory");
    assert!(state.join("catalog/manifest.json").is_file());
}
