//! Known faults in alerts, end to end with real parts: a catalog of labelled fault recordings
//! made by `earshot catalog add` (generated with `earshot synth`, seeds 41-46: held apart from
//! the replayed stream's seed 0), the `earshot` daemon replaying a bearing fault with the
//! seeded MobileNetV1 model, and a webhook receiver on 127.0.0.1.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/receiver.rs"]
mod receiver;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use daemon::{
    Daemon, daemon_header, earshot_ok, fixture, http_get, replay_monitor, test_dir, write_config,
};
use receiver::{Received, Receiver};
use serde_json::Value;

const RUN_LIMIT: Duration = Duration::from_secs(180);
/// The label of the replayed fault's kind.
const BEARING: &str = "bearing squeal";

/// Two recordings (6 s, fault throughout) per fault kind of the fixture's motor, with the
/// label each is added under; made once per test binary.
fn labelled_clips() -> &'static Vec<(&'static str, Vec<PathBuf>)> {
    static CLIPS: OnceLock<Vec<(&'static str, Vec<PathBuf>)>> = OnceLock::new();
    CLIPS.get_or_init(|| {
        let fx = fixture();
        let dir = fx.dir.join("sounds-like");
        std::fs::create_dir_all(&dir).unwrap();
        let mut seed = 41;
        let mut out = Vec::new();
        for (fault, label) in [
            ("bearing", BEARING),
            ("rub", "rotor rub"),
            ("impact", "loose part"),
        ] {
            let mut clips = Vec::new();
            for _ in 0..2 {
                let p = dir.join(format!("{fault}-{seed}.wav"));
                earshot_ok(
                    &[
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
                        "0",
                        "--seconds",
                        "6",
                        "--onset",
                        "0",
                        "--seed",
                        &seed.to_string(),
                    ],
                    &dir,
                );
                clips.push(p);
                seed += 1;
            }
            out.push((label, clips));
        }
        out
    })
}

/// `earshot catalog add` of every labelled clip, with `at` (`--catalog DIR` or
/// `--config FILE`) saying where.
fn add_clips(at: &[&str], cwd: &Path, envs: &[(&str, &str)]) {
    for (label, clips) in labelled_clips() {
        let mut args = vec!["catalog", "add"];
        args.extend_from_slice(at);
        args.extend(["--label", label]);
        args.extend(clips.iter().map(|p| s(p)));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_earshot"));
        cmd.args(&args).current_dir(cwd);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let (st, out) = daemon::run_bounded(&mut cmd, Duration::from_secs(300));
        assert!(st.success(), "earshot {args:?} failed ({st}):\n{out}");
    }
}

/// The labelled clips in an embedded catalog; made once per test binary.
fn catalog() -> &'static PathBuf {
    static CAT: OnceLock<PathBuf> = OnceLock::new();
    CAT.get_or_init(|| {
        let dir = fixture().dir.join("sounds-like");
        let cat = dir.join("catalog");
        add_clips(&["--catalog", s(&cat)], &dir, &[]);
        cat
    })
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A copy of the catalog in `dir`.
fn copy_catalog(dir: &Path) -> PathBuf {
    let to = dir.join("catalog");
    std::fs::create_dir_all(&to).unwrap();
    for f in std::fs::read_dir(catalog()).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
        }
    }
    to
}

/// Replays the fixture's short faulty stream (fault from 3 s) with `catalog_toml` as the
/// `[catalog]` section and a webhook target until the event fires, then stops the daemon;
/// returns the daemon (exited), the requests the receiver got and the metrics page scraped
/// once the event had fired.
fn replay(dir: &Path, catalog_toml: &str) -> (Daemon, Vec<Received>, String) {
    replay_with(dir, catalog_toml, &[])
}

/// [`replay`] with environment variables for the daemon.
fn replay_with(
    dir: &Path,
    catalog_toml: &str,
    envs: &[(&str, &str)],
) -> (Daemon, Vec<Received>, String) {
    let fx = fixture();
    let rx = Receiver::start(0);
    let cfg = format!(
        "{}[alerts]\nshutdown_grace = \"5s\"\n[[alerts.webhook]]\nname = \"hook\"\nurl = \"{}\"\n\
         retry_initial = \"100ms\"\n[catalog]\n{catalog_toml}\n{}",
        daemon_header(dir),
        rx.url("/hook"),
        replay_monitor("motor-1", &fx.profile, &fx.short_faulty, false, false),
    );
    let config = write_config(dir, &cfg);
    let mut d = Daemon::start(&config, &[], envs);
    d.wait_event("anomaly_started", RUN_LIMIT);
    // The events file is written before the alerts sink takes the event: wait until that sink
    // has counted it (queued or deliberately skipped), then keep that page.
    let addr = d.metrics_addr();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let m = http_get(addr, "/metrics");
        let alerts = [
            "earshot_events_written_total",
            "earshot_events_skipped_total",
        ]
        .iter()
        .filter_map(|n| sample(&m, n, &["sink=\"alerts\""]))
        .sum::<f64>();
        if alerts >= 1.0 || std::time::Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Stopping ends the open event: its resolution is delivered within the grace.
    d.signal(libc::SIGTERM);
    let st = d.expect_exit(Duration::from_secs(30));
    assert!(st.success(), "{}", d.log());
    // Delivery finished within the shutdown grace: what arrived is all that will.
    let got = rx.received();
    (d, got, metrics)
}

fn anomaly_alerts(r: &[Received]) -> Vec<Value> {
    r.iter()
        .flat_map(|x| x.json["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["alertname"] == "EarshotAnomaly")
        .collect()
}

fn anomaly_events(d: &Daemon) -> Vec<Value> {
    d.events()
        .into_iter()
        .filter(|e| e["kind"].as_str().is_some_and(|k| k.starts_with("anomaly")))
        .collect()
}

/// The value of `name`'s sample whose labels contain every one of `needles`.
fn sample(text: &str, name: &str, needles: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn alerts_of_a_replayed_fault_say_what_it_sounds_like() {
    let dir = test_dir();
    let cat = copy_catalog(dir.path());
    let (d, got, metrics) = replay(dir.path(), &format!("dir = \"{}\"\ntop = 2", s(&cat)));
    let events = anomaly_events(&d);
    assert!(!events.is_empty(), "{}", d.log());
    let started = &events[0];
    let sl = &started["event"]["sounds_like"];
    assert_eq!(sl["labels"][0]["label"], BEARING, "{started:#}");
    assert!(sl["labels"].as_array().unwrap().len() <= 2, "top = 2: {sl}");
    assert!(sl.get("benign").is_none(), "{sl}");
    let text = started["annotations"]["sounds_like"].as_str().unwrap();
    assert!(text.starts_with(&format!("{BEARING} (0.")), "{text}");
    // Every message of the event says the same.
    for e in &events {
        assert_eq!(e["annotations"]["sounds_like"], text, "{e:#}");
    }
    let alerts = anomaly_alerts(&got);
    assert!(
        alerts.iter().any(|a| a["status"] == "firing")
            && alerts.iter().any(|a| a["status"] == "resolved"),
        "{alerts:#?}"
    );
    for a in &alerts {
        assert_eq!(a["annotations"]["sounds_like"], text, "{a:#}");
        assert!(a["labels"].get("severity").is_none(), "{a:#}");
        assert!(
            a["annotations"]["description"]
                .as_str()
                .unwrap()
                .contains(BEARING),
            "{a:#}"
        );
    }
    assert!(
        d.log().contains(&format!("sounds like: {BEARING} (0.")),
        "the event's log line names it: {}",
        d.log()
    );
    assert_eq!(
        sample(&metrics, "earshot_catalog_entries", &[]).map(|v| v > 0.0),
        Some(true)
    );
    assert_eq!(sample(&metrics, "earshot_catalog_refused", &[]), Some(0.0));
    assert!(
        sample(
            &metrics,
            "earshot_events_written_total",
            &["sink=\"alerts\""]
        ) >= Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "earshot_sounds_like_events_total",
            &[
                "monitor=\"motor-1\"",
                &format!("sounds_like=\"{BEARING}\""),
                "benign=\"false\""
            ]
        ),
        Some(
            events
                .iter()
                .filter(|e| e["kind"] == "anomaly_started")
                .count() as f64
        ),
        "{metrics}"
    );
}

#[test]
fn a_benign_label_keeps_the_event_but_sends_no_alert() {
    let dir = test_dir();
    let cat = copy_catalog(dir.path());
    let (d, got, metrics) = replay(
        dir.path(),
        &format!(
            "dir = \"{}\"\nbenign = [\"{BEARING}\"]\nbenign_action = \"record\"",
            s(&cat)
        ),
    );
    let events = anomaly_events(&d);
    assert!(
        events.iter().any(|e| e["kind"] == "anomaly_started"),
        "the event is recorded: {}",
        d.log()
    );
    for e in &events {
        assert_eq!(e["event"]["sounds_like"]["benign"], "record", "{e:#}");
        assert_eq!(e["annotations"]["benign"], "record", "{e:#}");
    }
    assert!(
        anomaly_alerts(&got).is_empty(),
        "no anomaly alert may be sent: {:#?}",
        got.iter().map(|r| &r.json).collect::<Vec<_>>()
    );
    assert_eq!(
        sample(
            &metrics,
            "earshot_sounds_like_events_total",
            &[&format!("sounds_like=\"{BEARING}\""), "benign=\"true\""]
        ),
        Some(1.0),
        "{metrics}"
    );
    // The alerts sink counts the event's messages as skipped, not as alerts queued: at least
    // the start, and no more than the events file had taken when the page was scraped (the
    // event may have gone on meanwhile: an `ongoing` or `ended` message is skipped too).
    let skipped = sample(
        &metrics,
        "earshot_events_skipped_total",
        &["sink=\"alerts\""],
    )
    .unwrap_or(0.0);
    let written = sample(
        &metrics,
        "earshot_events_written_total",
        &["sink=\"jsonl\""],
    )
    .unwrap_or(0.0);
    assert!(skipped >= 1.0 && skipped <= written, "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "earshot_events_written_total",
            &["sink=\"alerts\""]
        )
        .unwrap_or(0.0),
        0.0,
        "{metrics}"
    );
}

#[test]
fn a_benign_label_can_lower_the_severity_instead() {
    let dir = test_dir();
    let cat = copy_catalog(dir.path());
    let (d, got, _) = replay(
        dir.path(),
        &format!(
            "dir = \"{}\"\nbenign = [\"{BEARING}\"]\nbenign_action = \"low_severity\"",
            s(&cat)
        ),
    );
    let alerts = anomaly_alerts(&got);
    assert!(!alerts.is_empty(), "{}", d.log());
    for a in &alerts {
        assert_eq!(a["labels"]["severity"], "info", "{a:#}");
        assert_eq!(a["annotations"]["benign"], "low_severity", "{a:#}");
    }
}

#[test]
fn another_models_catalog_is_refused_and_monitoring_goes_on() {
    let dir = test_dir();
    let cat = copy_catalog(dir.path());
    // The same files, claimed by another network (the manifest names the model).
    let mpath = cat.join("manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    m["model"]["onnx_sha256"] = Value::String("0".repeat(64));
    std::fs::write(&mpath, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let (d, got, metrics) = replay(dir.path(), &format!("dir = \"{}\"", s(&cat)));
    let log = d.log();
    assert!(log.contains("sound catalog refused"), "{log}");
    assert!(
        log.contains("embeddings of different models cannot be compared"),
        "{log}"
    );
    assert_eq!(
        sample(&metrics, "earshot_catalog_refused", &[]),
        Some(1.0),
        "{metrics}"
    );
    let events = anomaly_events(&d);
    assert!(!events.is_empty(), "still detected: {log}");
    assert!(
        events
            .iter()
            .all(|e| e["event"].get("sounds_like").is_none())
    );
    let alerts = anomaly_alerts(&got);
    assert!(!alerts.is_empty(), "still alerted");
    assert!(
        alerts
            .iter()
            .all(|a| a["annotations"].get("sounds_like").is_none())
    );
    assert_eq!(
        sample(
            &metrics,
            "earshot_sounds_like_events_total",
            &["sounds_like=\"none\""]
        ),
        Some(1.0),
        "{metrics}"
    );
}

#[test]
fn an_empty_catalog_adds_nothing_and_is_no_error() {
    let dir = test_dir();
    let cat = copy_catalog(dir.path());
    for label in [BEARING, "rotor rub", "loose part"] {
        earshot_ok(
            &["catalog", "remove", "--catalog", s(&cat), "--label", label],
            dir.path(),
        );
    }
    let (d, got, metrics) = replay(dir.path(), &format!("dir = \"{}\"", s(&cat)));
    let log = d.log();
    assert!(!log.contains("sound catalog refused"), "{log}");
    assert!(log.contains("no sound catalog entries here"), "{log}");
    assert_eq!(sample(&metrics, "earshot_catalog_refused", &[]), Some(0.0));
    assert_eq!(sample(&metrics, "earshot_catalog_entries", &[]), Some(0.0));
    let alerts = anomaly_alerts(&got);
    assert!(!alerts.is_empty(), "{log}");
    assert!(
        alerts
            .iter()
            .all(|a| a["annotations"].get("sounds_like").is_none())
    );
}

#[path = "common/azure_emulator.rs"]
mod azure_emulator;

const KEY_VAR: &str = "EARSHOT_TEST_AZURE_KEY";

/// The started anomaly events' `sounds_like` nearest labels.
fn nearest_labels(d: &Daemon) -> Vec<String> {
    anomaly_events(d)
        .iter()
        .filter(|e| e["kind"] == "anomaly_started")
        .map(|e| {
            e["event"]["sounds_like"]["labels"][0]["label"]
                .as_str()
                .unwrap_or("(none)")
                .to_string()
        })
        .collect()
}

/// With the catalog in Azure AI Search (the emulator on 127.0.0.1), the daemon compares
/// events with a copy of it: the replayed fault is named while the service answers, and
/// again after a restart while the service fails, from the copy saved in the state directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_catalog_names_the_fault_and_its_saved_copy_outlives_an_outage() {
    let emu = azure_emulator::Emulator::start().await;
    let toml = format!(
        "top = 2\n[catalog.index]\nkind = \"azure\"\nendpoint = \"{}\"\nindex_name = \"sounds\"\n\
         api_key_env = \"{KEY_VAR}\"\nupload_max_attempts = 2\n",
        emu.endpoint()
    );
    let dir = test_dir();
    let d = dir.path().to_owned();
    let t = toml.clone();
    let (first, metrics) = tokio::task::spawn_blocking(move || {
        let envs = [(KEY_VAR, azure_emulator::ADMIN_KEY)];
        let cfg = d.join("catalog.toml");
        std::fs::write(&cfg, format!("{}[catalog]\n{t}", daemon_header(&d))).unwrap();
        add_clips(&["--config", s(&cfg)], &d, &envs);
        let (daemon, _, metrics) = replay_with(&d, &t, &envs);
        (daemon, metrics)
    })
    .await
    .unwrap();
    let labels = nearest_labels(&first);
    assert!(!labels.is_empty(), "{}", first.log());
    assert!(labels.iter().all(|l| l == BEARING), "{labels:?}");
    assert!(
        first
            .log()
            .contains("no copy of the Azure sound catalog here yet"),
        "{}",
        first.log()
    );
    let entries = sample(&metrics, "earshot_catalog_entries", &[]).unwrap_or(0.0);
    assert!(entries >= 6.0, "{metrics}");
    assert!(
        sample(&metrics, "earshot_catalog_last_sync_timestamp_seconds", &[])
            .is_some_and(|t| t > 1.7e9),
        "{metrics}"
    );
    let copy = dir.path().join("state/catalog-azure/sounds");
    assert!(copy.join("manifest.json").is_file(), "no saved copy");

    // The service fails from now on; the restarted daemon names the fault from its copy.
    for op in [
        azure_emulator::Op::GetIndex,
        azure_emulator::Op::Search,
        azure_emulator::Op::Count,
    ] {
        emu.set_outage(op, Some(503));
    }
    std::fs::remove_file(dir.path().join("state/events.jsonl")).unwrap();
    let d = dir.path().to_owned();
    let (second, metrics) = tokio::task::spawn_blocking(move || {
        let (daemon, _, metrics) = replay_with(&d, &toml, &[(KEY_VAR, azure_emulator::ADMIN_KEY)]);
        (daemon, metrics)
    })
    .await
    .unwrap();
    let labels = nearest_labels(&second);
    assert!(!labels.is_empty(), "{}", second.log());
    assert!(labels.iter().all(|l| l == BEARING), "{labels:?}");
    assert!(
        second
            .log()
            .contains("using the copy of the Azure sound catalog saved in the state directory"),
        "{}",
        second.log()
    );
    assert_eq!(
        sample(&metrics, "earshot_catalog_entries", &[]),
        Some(entries),
        "the copy holds every entry: {metrics}"
    );
}
