//! The sound catalog in Azure AI Search (the emulator in tests/common on 127.0.0.1) against
//! the embedded one, with real WAV files from `earshot synth` embedded by the bundled model:
//! the same recordings give the same entries, and every search the same clips in the same
//! order; an outage during `catalog add` is finished by running it again, without duplicates.
//!
//! Seeds 61-64 are reserved for these tests: nothing is tuned on them.

#[path = "common/azure_emulator.rs"]
mod azure_emulator;

use azure_emulator::{ADMIN_KEY, Emulator, Fault};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

const EARSHOT: &str = env!("CARGO_BIN_EXE_earshot");
const FAULTS: [&str; 3] = ["bearing", "impact", "rub"];
const MACHINE: &str = "motor_id01";
const KEY_VAR: &str = "EARSHOT_TEST_AZURE_KEY";

/// Runs the binary off the runtime's threads (the emulator answers on them).
async fn earshot(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(EARSHOT)
            .args(&args)
            .env("EARSHOT_LOG", "error")
            .env(KEY_VAR, ADMIN_KEY)
            .output()
            .expect("run earshot")
    })
    .await
    .expect("join")
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
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

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A 5 s recording of motor 1 with `fault` from the start.
async fn clip(dir: &Path, fault: &str, seed: u32) -> PathBuf {
    let p = dir.join(format!("motor1-{fault}-{seed}.wav"));
    let seed = seed.to_string();
    ok(
        earshot(args(&[
            "synth",
            "stream",
            "--out",
            s(&p),
            "--machine",
            "motor",
            "--id",
            "1",
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
        ]))
        .await,
        "synth",
    );
    p
}

/// A config whose `[catalog.index]` is index `name` on `endpoint`, in small batches and
/// with little patience (so that an outage fails fast).
fn azure_config(dir: &Path, endpoint: &str, name: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            "[daemon]\nstate_dir = \"{}\"\n[catalog.index]\nkind = \"azure\"\nendpoint = \"{endpoint}\"\n\
             index_name = \"{name}\"\napi_key_env = \"{KEY_VAR}\"\nbatch_max_docs = 10\nupload_max_attempts = 2\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    p
}

/// `--catalog DIR` for the embedded catalog, `--config F` for the Azure one.
fn at(which: &[&str]) -> Vec<String> {
    args(which)
}

async fn search(at: &[String], query: &Path, extra: &[&str]) -> Vec<Value> {
    let mut a = vec!["search".to_string()];
    a.extend_from_slice(at);
    a.extend(args(&[s(query), "--format", "json"]));
    a.extend(args(extra));
    let out = ok(earshot(a).await, "search");
    let v: Value = serde_json::from_str(&out).expect("search --format json prints JSON");
    v["matches"].as_array().expect("matches").clone()
}

async fn listing(at: &[String]) -> Value {
    let mut a = args(&["catalog", "list", "--format", "json"]);
    a.extend_from_slice(at);
    serde_json::from_str(&ok(earshot(a).await, "catalog list")).expect("JSON")
}

/// The same clips, labels, windows and order; similarities equal to float precision.
fn assert_same(embedded: &[Value], azure: &[Value], what: &str) {
    assert_eq!(
        embedded.len(),
        azure.len(),
        "{what}: {embedded:?} vs {azure:?}"
    );
    for (e, a) in embedded.iter().zip(azure) {
        for f in [
            "source",
            "label",
            "machine",
            "offset_s",
            "query_offset_s",
            "entry",
        ] {
            assert_eq!(e[f], a[f], "{what}: field {f}: {e} vs {a}");
        }
        let (x, y) = (
            e["similarity"].as_f64().unwrap(),
            a["similarity"].as_f64().unwrap(),
        );
        assert!((x - y).abs() < 1e-4, "{what}: similarity {x} vs {y}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_catalog_answers_like_the_embedded_one() {
    let emu = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let embedded = at(&["--catalog", s(&dir.path().join("catalog"))]);
    let cfg = azure_config(dir.path(), &emu.endpoint(), "sounds");
    let azure = at(&["--config", s(&cfg)]);

    // Before anything is added: no catalog, in both.
    let probe = clip(dir.path(), "rub", 64).await;
    for a in [&embedded, &azure] {
        let mut c = vec!["search".to_string()];
        c.extend_from_slice(a);
        c.push(s(&probe).into());
        let err = failed(earshot(c).await, "search before add");
        assert!(err.contains("no sound catalog here yet"), "{err}");
    }

    let mut held_back = Vec::new();
    for fault in FAULTS {
        let mut clips = Vec::new();
        for seed in 61..=63 {
            clips.push(clip(dir.path(), fault, seed).await);
        }
        for a in [&embedded, &azure] {
            let mut c = args(&["catalog", "add", "--label", fault, "--machine", MACHINE]);
            c.extend_from_slice(a);
            c.extend(clips.iter().map(|p| s(p).to_string()));
            let out = ok(earshot(c).await, "catalog add");
            assert!(out.contains("27 new and 0 replaced"), "{out}");
        }
        held_back.push((fault, clip(dir.path(), fault, 64).await));
    }
    // 3 types x 3 clips x 9 windows, plus the manifest document.
    assert_eq!(emu.docs("sounds").len(), 81 + 1);
    let (le, la) = (listing(&embedded).await, listing(&azure).await);
    assert_eq!(le["entries"], 81);
    assert_eq!(le["labels"], la["labels"], "{le}\n{la}");
    assert_eq!(le["sources"], la["sources"]);
    assert_eq!(le["model"], la["model"]);
    assert_eq!(le["window"], la["window"]);

    let mut right = 0;
    for (fault, query) in &held_back {
        let e = search(&embedded, query, &["--top", "5"]).await;
        let a = search(&azure, query, &["--top", "5"]).await;
        assert_same(&e, &a, &format!("held-back {fault}"));
        let got = a[0]["label"].as_str().unwrap();
        println!("held-back {fault} -> {got} ({})", a[0]["similarity"]);
        right += usize::from(got == *fault);
        // Filters are applied by the index as by the embedded catalog.
        let e = search(&embedded, query, &["--label", "impact", "--top", "10"]).await;
        let a = search(&azure, query, &["--label", "impact", "--top", "10"]).await;
        assert_eq!(a.len(), 3, "{a:?}");
        assert_same(&e, &a, &format!("held-back {fault}, impact only"));
        let e = search(&embedded, query, &["--whole-clip", "--top", "9"]).await;
        let a = search(&azure, query, &["--whole-clip", "--top", "9"]).await;
        assert_same(&e, &a, &format!("held-back {fault}, whole clip"));
    }
    println!("top-1: {right}/{} (chance 1/3)", held_back.len());
    assert_eq!(
        right,
        FAULTS.len(),
        "each held-back clip is identified by its type"
    );

    // Another model's catalog is refused before anything is embedded, naming what to do.
    let other = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/aisfx-cnn9");
    let mut c = args(&["search", "--model", s(&other)]);
    c.extend_from_slice(&azure);
    c.push(s(&probe).into());
    let err = failed(earshot(c).await, "other model");
    assert!(
        err.contains("was made with model \"panns-mobilenetv1-seeded\"")
            && err.contains("aisfx-cnn9")
            && err.contains("index_name"),
        "{err}"
    );

    // Removing a label: the same entries go from both.
    for a in [&embedded, &azure] {
        let mut c = args(&["catalog", "remove", "--label", "rub"]);
        c.extend_from_slice(a);
        let out = ok(earshot(c).await, "remove");
        assert!(
            out.contains("removed 27 entries") && out.contains("54 left"),
            "{out}"
        );
    }
    assert_eq!(emu.docs("sounds").len(), 54 + 1);
    let (le, la) = (listing(&embedded).await, listing(&azure).await);
    assert_eq!(le["labels"], la["labels"]);
    let mut c = args(&["catalog", "remove", "--label", "rub"]);
    c.extend_from_slice(&azure);
    let err = failed(earshot(c).await, "remove again");
    assert!(
        err.contains("\"rub\"") && err.contains("bearing, impact"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_during_catalog_add_is_finished_by_running_it_again() {
    let emu = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = clip(dir.path(), "rub", 61).await;
    let b = clip(dir.path(), "impact", 61).await;

    // Nothing listening: refused before anything is embedded, saying nothing changed.
    let down = azure_config(dir.path(), "http://127.0.0.1:9", "down");
    let err = failed(
        earshot(args(&[
            "catalog",
            "add",
            "--config",
            s(&down),
            "--label",
            "rub",
            s(&a),
        ]))
        .await,
        "add with Azure down",
    );
    assert!(
        err.contains("could not reach Azure AI Search") && err.contains("nothing was changed"),
        "{err}"
    );

    let cfg = azure_config(dir.path(), &emu.endpoint(), "sounds");
    let add = |files: Vec<&Path>| {
        let mut c = args(&["catalog", "add", "--config", s(&cfg), "--label", "noise"]);
        c.extend(files.iter().map(|p| s(p).to_string()));
        earshot(c)
    };
    ok(add(vec![&a]).await, "first add");
    assert_eq!(emu.docs("sounds").len(), 9 + 1);

    // Half of each batch refused twice (as by a service at capacity): the command gives up
    // after upload_max_attempts, some entries stored, and says how to finish.
    emu.push_fault(Fault::Partial {
        every: 2,
        item_status: 503,
        times: 2,
    });
    let err = failed(add(vec![&a, &b]).await, "add under faults");
    assert!(
        err.contains("run the same `earshot catalog add` again") && err.contains("duplicated"),
        "{err}"
    );
    let partial = emu.docs("sounds").len();
    assert!(partial < 18 + 1, "the fault left entries out: {partial}");

    // Again, with the service well: every entry once.
    let out = ok(add(vec![&a, &b]).await, "add again");
    assert!(out.contains("it now holds 18 entries"), "{out}");
    let docs = emu.docs("sounds");
    assert_eq!(docs.len(), 18 + 1, "no duplicates");
    let sources: std::collections::BTreeSet<&str> = docs
        .values()
        .filter_map(|d| d.fields.get("source").and_then(Value::as_str))
        .collect();
    assert_eq!(sources.len(), 2);
    // And once more: replaced, not added.
    let out = ok(add(vec![&a, &b]).await, "add a third time");
    assert!(out.contains("0 new and 18 replaced"), "{out}");
    assert_eq!(emu.docs("sounds").len(), 18 + 1);
}
