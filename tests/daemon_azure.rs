//! `earshot run` with its k-NN index in Azure AI Search (the local emulator on 127.0.0.1):
//! the profile is uploaded with `earshot index`, the daemon scores windows by querying the
//! service, and when the service fails it keeps detecting by centroid alone and says so.

#[path = "common/azure_emulator.rs"]
#[allow(dead_code)]
mod azure_emulator;

use azure_emulator::{ADMIN_KEY, Emulator, Op, QUERY_KEY};
use std::path::Path;
use std::process::Output;

fn earshot(dir: &Path, args: &[&str], key: &'static str) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_earshot"))
        .args(args)
        .current_dir(dir)
        .env("EARSHOT_TEST_AZURE_KEY", key)
        .env("EARSHOT_LOG", "info")
        .output()
        .expect("run earshot")
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "earshot failed:\n{err}");
    err
}

fn events(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("state/events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("event JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_scores_with_azure_and_falls_back_to_centroid_when_it_fails() {
    let emu = Emulator::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_owned();
    let endpoint = emu.endpoint();
    let d = dir.clone();
    tokio::task::spawn_blocking(move || {
        ok(&earshot(&d, &["synth", "dataset", "--out", "data", "--machine", "motor:1", "--test-clips", "1"], ADMIN_KEY));
        ok(&earshot(&d, &["synth", "stream", "--out", "stream.wav", "--machine", "motor", "--id", "1",
            "--fault", "bearing", "--level-db", "-6", "--seconds", "20", "--onset", "10"], ADMIN_KEY));
        // A few clips of normal audio cannot resolve 1 false event a day (the default): its
        // extrapolated thresholds sit above this fault. This test is about the index, not
        // calibration (see tests/common/daemon.rs).
        std::fs::write(d.join("learn.toml"), "[learn]\nfalse_alarms_per_day = 300\n").expect("learn config");
        ok(&earshot(&d, &["learn", "--config", "learn.toml", "--normal", "data/motor_id01/train", "--out", "profile", "--machine", "motor_id01"], ADMIN_KEY));
        std::fs::write(
            d.join("run.toml"),
            format!(
                "[daemon]\nstate_dir = \"state\"\n[metrics]\nenabled = false\n\
                 [[monitor]]\nname = \"motor\"\nprofile = \"profile\"\n\
                 source = {{ file = \"stream.wav\", realtime = false }}\n\
                 index = {{ kind = \"azure\", endpoint = \"{endpoint}\", index_name = \"motor-normals\", \
                 api_key_env = \"EARSHOT_TEST_AZURE_KEY\", exhaustive = true, timeout_ms = 500 }}\n"
            ),
        )
        .expect("write config");
        let up = ok(&earshot(&d, &["index", "--profile", "profile", "--config", "run.toml", "--monitor", "motor"], ADMIN_KEY));
        assert!(!up.contains(ADMIN_KEY), "the key must never be logged");
    })
    .await
    .expect("setup");
    assert!(
        !emu.docs("motor-normals").is_empty(),
        "upload stored nothing"
    );

    // 1. Service up: every window is scored with k-NN from Azure (a query key suffices).
    let d = dir.clone();
    let err = tokio::task::spawn_blocking(move || {
        ok(&earshot(
            &d,
            &["run", "--config", "run.toml", "--exit-when-done"],
            QUERY_KEY,
        ))
    })
    .await
    .expect("run");
    let searches = emu.requests(Op::Search);
    assert!(
        searches >= 30,
        "expected one search per window, saw {searches}\n{err}"
    );
    assert!(!err.contains("scoring by centroid alone"), "{err}");
    assert!(!err.contains(QUERY_KEY), "the key must never be logged");
    let ev = events(&dir);
    let started: Vec<&serde_json::Value> = ev
        .iter()
        .filter(|e| e["kind"] == "anomaly_started")
        .collect();
    assert_eq!(started.len(), 1, "one anomaly event expected: {ev:?}");
    // The event carries the fused score, whose k-NN half is what Azure answered (which
    // scorer fired first depends on the thresholds; the transient rule may fire on the
    // centroid a window earlier). Without Azure's answers it has no value (part 2).
    assert!(
        started[0]["event"]["scores"]["fused"]["peak"]
            .as_f64()
            .is_some(),
        "no fused (k-NN) score in the event: {:?}",
        started[0]
    );
    let onset = started[0]["event"]["start"]["stream_s"]
        .as_f64()
        .expect("stream_s");
    assert!(
        onset > 8.0,
        "anomaly raised during the normal part at {onset} s"
    );

    // 2. Service failing: the daemon keeps running, scores by centroid, and says so.
    std::fs::remove_file(dir.join("state/events.jsonl")).expect("reset events");
    emu.set_outage(Op::Search, Some(503));
    let d = dir.clone();
    let err = tokio::task::spawn_blocking(move || {
        ok(&earshot(
            &d,
            &["run", "--config", "run.toml", "--exit-when-done"],
            QUERY_KEY,
        ))
    })
    .await
    .expect("run");
    assert!(
        err.contains("scoring by centroid alone"),
        "degraded state not logged:\n{err}"
    );
    let ev = events(&dir);
    let started: Vec<&serde_json::Value> = ev
        .iter()
        .filter(|e| e["kind"] == "anomaly_started")
        .collect();
    assert_eq!(
        started.len(),
        1,
        "centroid alone should still detect the fault: {ev:?}"
    );
    assert_eq!(started[0]["annotations"]["fired"], "centroid");
}
