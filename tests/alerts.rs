//! Alerts that reach people, end to end with real parts: the `earshot` binary replaying a
//! generated fault with the seeded MobileNetV1 model, a real Alertmanager 0.25 on 127.0.0.1,
//! and a webhook receiver (axum) on 127.0.0.1.

#[path = "common/alertmanager.rs"]
mod alertmanager;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/receiver.rs"]
mod receiver;

use std::time::Duration;

use alertmanager::Alertmanager;
use daemon::{Daemon, daemon_header, fixture, http_get, replay_monitor, test_dir, write_config};
use earshot::alert::payload::{hmac_sha256, labels_fingerprint};
use receiver::{Received, Receiver, free_port};
use serde_json::Value;

const RUN_LIMIT: Duration = Duration::from_secs(120);
const SECRET: &str = "test-hmac-key-not-a-real-secret";

/// The value of the first sample of `name` whose label text contains `needle`.
fn sample(text: &str, name: &str, needle: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| l.contains(needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn scrape(d: &mut Daemon) -> String {
    let addr = d.metrics_addr();
    http_get(addr, "/metrics")
}

/// Alerts inside webhook payloads (each payload carries a list).
fn alerts_of(r: &[Received]) -> Vec<Value> {
    r.iter()
        .flat_map(|x| x.json["alerts"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Checks a payload against the fields Alertmanager documents for its webhook (version 4).
fn check_webhook_shape(p: &Value) {
    for (k, kind) in [
        ("receiver", "string"),
        ("status", "string"),
        ("alerts", "array"),
        ("groupLabels", "object"),
        ("commonLabels", "object"),
        ("commonAnnotations", "object"),
        ("externalURL", "string"),
        ("version", "string"),
        ("groupKey", "string"),
        ("truncatedAlerts", "number"),
    ] {
        let v = &p[k];
        let ok = match kind {
            "string" => v.is_string(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => v.is_number(),
        };
        assert!(ok, "payload field {k} should be a {kind}: {p:#}");
    }
    assert_eq!(p["version"], "4");
    assert!(matches!(p["status"].as_str(), Some("firing" | "resolved")));
    for a in p["alerts"].as_array().unwrap() {
        for k in [
            "status",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint",
        ] {
            assert!(a[k].is_string(), "alert field {k}: {a:#}");
        }
        for k in ["labels", "annotations"] {
            assert!(a[k].is_object(), "alert field {k}: {a:#}");
        }
        for t in ["startsAt", "endsAt"] {
            let s = a[t].as_str().unwrap();
            if s == "0001-01-01T00:00:00Z" {
                continue; // Alertmanager's "unset", before the epoch humantime knows
            }
            humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
                .unwrap_or_else(|e| panic!("{t} {s:?} is not RFC 3339: {e}"));
        }
        if a["status"] == "firing" {
            assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
        }
        // Alertmanager's fingerprint is its hash of the label set.
        let labels: std::collections::BTreeMap<String, String> =
            serde_json::from_value(a["labels"].clone()).unwrap();
        assert_eq!(
            a["fingerprint"].as_str().unwrap(),
            format!("{:016x}", labels_fingerprint(&labels))
        );
    }
}

fn anomaly_events(d: &Daemon) -> Vec<Value> {
    d.events()
        .into_iter()
        .filter(|e| e["kind"].as_str().is_some_and(|k| k.starts_with("anomaly")))
        .collect()
}

/// Alerts of each event in the order received, checked against the events file: every event
/// message arrived, in order, with its labels; duplicates only repeat the same alert.
fn check_delivered_in_order(events: &[Value], alerts: &[Value]) {
    assert!(!events.is_empty());
    for ev in events {
        let id = ev["fingerprint"].as_str().unwrap();
        let want_status = ev["status"].as_str().unwrap();
        let got: Vec<&Value> = alerts
            .iter()
            .filter(|a| a["labels"]["event_id"] == id)
            .collect();
        assert!(
            got.iter().any(|a| a["status"] == want_status),
            "event {id} ({}) not delivered: {alerts:#?}",
            ev["kind"]
        );
        for (k, v) in ev["labels"].as_object().unwrap() {
            for a in &got {
                assert_eq!(&a["labels"][k], v, "label {k} of {id}");
            }
        }
        let fps: std::collections::BTreeSet<&str> = got
            .iter()
            .map(|a| a["fingerprint"].as_str().unwrap())
            .collect();
        assert_eq!(fps.len(), 1, "one fingerprint per event: {got:#?}");
    }
    // Per event: never resolved before firing.
    let mut seen_resolved = std::collections::BTreeSet::new();
    for a in alerts {
        let id = a["labels"]["event_id"].as_str().unwrap().to_string();
        if a["status"] == "resolved" {
            seen_resolved.insert(id);
        } else {
            assert!(
                !seen_resolved.contains(&id),
                "firing after resolved for {id}: {alerts:#?}"
            );
        }
    }
}

fn webhook_section(url: &str) -> String {
    format!(
        "[[alerts.webhook]]\nname = \"hook\"\nurl = \"{url}\"\nhmac_secret_env = \"EARSHOT_TEST_HMAC\"\n\
         retry_initial = \"100ms\"\nretry_max = \"500ms\"\nheaders = {{ \"X-Team\" = \"maint\" }}\n"
    )
}

#[test]
fn webhook_gets_signed_alertmanager_payloads_in_order_after_an_outage() {
    let fx = fixture();
    let dir = test_dir();
    let port = free_port();
    let cfg = format!(
        "{}[alerts]\nexternal_url = \"http://edge-pc:9847\"\nshutdown_grace = \"5s\"\n{}{}",
        daemon_header(dir.path()),
        webhook_section(&format!("http://127.0.0.1:{port}/hook")),
        replay_monitor("motor-1", &fx.profile, &fx.short_faulty, false, false),
    );
    let config = write_config(dir.path(), &cfg);
    // The receiver is down: nothing listens on the port.
    let mut d = Daemon::start(&config, &[], &[("EARSHOT_TEST_HMAC", SECRET)]);
    d.wait_event("anomaly_started", RUN_LIMIT);
    let mut retries = 0.0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while retries < 3.0 {
        let text = scrape(&mut d);
        retries = sample(&text, "earshot_alert_retries_total", "target=\"hook\"").unwrap_or(0.0);
        assert!(std::time::Instant::now() < deadline, "no retries: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = scrape(&mut d);
    let waiting = d.events().len() as f64;
    assert_eq!(
        sample(&text, "earshot_alert_outbox_depth", "target=\"hook\""),
        Some(waiting),
        "every event's alert waits in the outbox: {:#?}",
        d.events()
    );
    assert!(
        sample(
            &text,
            "earshot_alert_deliveries_total",
            "outcome=\"failed\",target=\"hook\""
        )
        .unwrap_or(0.0)
            >= 3.0,
        "{text}"
    );
    assert!(
        !d.log().contains(SECRET),
        "the HMAC key must never be logged"
    );

    // The receiver comes back: the waiting alert arrives.
    let rx = Receiver::start(port);
    rx.wait_until("firing alert", Duration::from_secs(10), |r| !r.is_empty());
    // Stop: the open event ends and its resolved alert is delivered before exit.
    d.signal(libc::SIGTERM);
    let st = d.expect_exit(Duration::from_secs(20));
    assert!(st.success(), "{}", d.log());
    let got = rx.wait_until("resolved alert", Duration::from_secs(5), |r| {
        alerts_of(r).iter().any(|a| a["status"] == "resolved")
    });
    for r in &got {
        assert_eq!(r.path, "/hook");
        check_webhook_shape(&r.json);
        assert_eq!(r.json["receiver"], "hook");
        assert_eq!(r.json["externalURL"], "http://edge-pc:9847");
        assert_eq!(r.headers.get("x-team").map(String::as_str), Some("maint"));
        let sig = r
            .headers
            .get("x-earshot-signature")
            .expect("signature header");
        assert_eq!(
            sig,
            &format!(
                "sha256={}",
                hex::encode(hmac_sha256(SECRET.as_bytes(), &r.body))
            ),
            "signature over the exact body"
        );
    }
    let events = anomaly_events(&d);
    assert_eq!(events.len(), 2, "{events:#?}");
    let alerts = alerts_of(&got);
    check_delivered_in_order(&events, &alerts);
    let firing = &alerts[0];
    assert_eq!(firing["status"], "firing");
    assert_eq!(firing["labels"]["alertname"], "EarshotAnomaly");
    let ann = &firing["annotations"];
    for k in ["summary", "description", "fired"] {
        assert!(ann[k].as_str().is_some_and(|s| !s.is_empty()), "{k}: {ann}");
    }
    assert!(
        ann.as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("peak_")),
        "{ann}"
    );
}

#[test]
fn undelivered_alerts_survive_sigkill_and_are_sent_after_restart() {
    let fx = fixture();
    let dir = test_dir();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let cfg = format!(
        "{}[alerts]\n{}{}",
        daemon_header(dir.path()),
        webhook_section(&url),
        // Real time, so that the kill comes while the fault (3-8 s) still plays and its event
        // is open (a fast replay reaches the end, and ends the event, first).
        replay_monitor("motor-1", &fx.profile, &fx.short_faulty, true, false),
    );
    let config = write_config(dir.path(), &cfg);
    let mut d = Daemon::start(&config, &[], &[("EARSHOT_TEST_HMAC", SECRET)]);
    d.wait_event("anomaly_started", RUN_LIMIT);
    d.wait_log("alert delivery failed", Duration::from_secs(10));
    d.signal(libc::SIGKILL);
    d.expect_exit(Duration::from_secs(10));
    let before = anomaly_events(&d);
    assert!(!before.is_empty());
    drop(d);

    // Restart on normal audio (no new event) with the receiver up: the alerts of the killed
    // run are delivered from the outbox, and the anomaly it left open is resolved.
    let rx = Receiver::start(port);
    let cfg = format!(
        "{}[alerts]\n{}{}",
        daemon_header(dir.path()),
        webhook_section(&url),
        replay_monitor("motor-1", &fx.profile, &fx.short_normal, false, false),
    );
    let config = write_config(dir.path(), &cfg);
    let mut d = Daemon::start(&config, &[], &[("EARSHOT_TEST_HMAC", SECRET)]);
    d.wait_log("alert delivery started", Duration::from_secs(30));
    assert!(
        d.log().contains(&format!("pending={}", before.len())),
        "the outbox held the killed run's alerts: {}",
        d.log()
    );
    let got = rx.wait_until(
        "the alerts of the killed run",
        Duration::from_secs(30),
        |r| alerts_of(r).len() >= before.len(),
    );
    check_delivered_in_order(&before, &alerts_of(&got));

    // The event the kill left open is ended by the new run before it scores anything: in
    // the events file (reason `interrupted`) and at the receiver (resolved, same labels).
    let mut left_open: Vec<&str> = before
        .iter()
        .filter(|e| e["kind"] == "anomaly_started")
        .filter_map(|e| e["fingerprint"].as_str())
        .collect();
    left_open.retain(|id| {
        !before
            .iter()
            .any(|e| e["fingerprint"] == *id && e["kind"] == "anomaly_ended")
    });
    assert!(
        !left_open.is_empty(),
        "the kill came while an anomaly was open: {before:#?}"
    );
    let got = rx.wait_until(
        "the resolution of what the kill left open",
        Duration::from_secs(30),
        |r| {
            let alerts = alerts_of(r);
            left_open.iter().all(|id| {
                alerts.iter().any(|a| {
                    a["labels"]["event_id"] == *id
                        && a["status"] == "resolved"
                        && a["annotations"]["reason"] == "interrupted"
                })
            })
        },
    );
    let after = anomaly_events(&d);
    for id in &left_open {
        let ended = after
            .iter()
            .find(|e| e["fingerprint"] == *id && e["kind"] == "anomaly_ended")
            .unwrap_or_else(|| panic!("{id} left open by the kill was not ended: {after:#?}"));
        assert_eq!(ended["annotations"]["reason"], "interrupted");
        assert_eq!(ended["status"], "resolved");
    }
    check_delivered_in_order(&after, &alerts_of(&got));
    d.wait_log(
        "resolving the events the last run left open",
        Duration::from_secs(1),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(&mut d);
        if sample(&text, "earshot_alert_outbox_depth", "target=\"hook\"") == Some(0.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "outbox not emptied: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    d.signal(libc::SIGTERM);
    d.expect_exit(Duration::from_secs(20));
}

#[test]
fn alertmanager_routes_earshot_alerts_and_its_silences_apply() {
    let fx = fixture();
    let dir = test_dir();
    let rx = Receiver::start(0);
    let am_port = free_port();
    // The example shipped in dashboards/, with the test receiver and short waits.
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dashboards/alertmanager.yml"
    ))
    .unwrap();
    assert!(example.contains("http://127.0.0.1:8080/earshot"));
    let am_cfg = example
        .replace("http://127.0.0.1:8080/earshot", &rx.url("/from-am"))
        .replace("group_wait: 10s", "group_wait: 1s")
        .replace("group_wait: 30s", "group_wait: 1s")
        .replace("group_interval: 1m", "group_interval: 1s");
    let am = Alertmanager::start(dir.path(), &am_cfg, am_port);
    let alerts_cfg = format!(
        "[alerts]\n[[alerts.alertmanager]]\nname = \"am\"\nurl = \"{}\"\nresend_interval = \"2s\"\n",
        am.url()
    );
    // Real time, so the event lasts a few seconds: Alertmanager notifies it firing, then
    // resolved when earshot stops at the end of the file.
    let cfg = format!(
        "{}{alerts_cfg}{}",
        daemon_header(dir.path()),
        replay_monitor("motor-1", &fx.profile, &fx.short_faulty, true, false),
    );
    let mut d = Daemon::start(&write_config(dir.path(), &cfg), &["--exit-when-done"], &[]);
    let st = d.expect_exit(RUN_LIMIT);
    assert!(st.success(), "{}", d.log());
    let events = anomaly_events(&d);
    assert_eq!(events.len(), 2, "{events:#?}");
    rx.wait_until(
        "a resolved notification from Alertmanager",
        Duration::from_secs(20),
        |r| r.iter().any(|x| x.json["status"] == "resolved"),
    );
    // Let any late duplicate arrive before counting.
    std::thread::sleep(Duration::from_secs(3));
    let got: Vec<Received> = rx
        .received()
        .into_iter()
        .filter(|r| r.path == "/from-am")
        .collect();
    assert_eq!(
        got.len(),
        2,
        "one firing and one resolved notification: {:#?}",
        got.iter().map(|r| &r.json).collect::<Vec<_>>()
    );
    assert_eq!(got[0].json["status"], "firing");
    assert_eq!(got[1].json["status"], "resolved");
    for r in &got {
        check_webhook_shape(&r.json);
    }
    let alerts = alerts_of(&got);
    check_delivered_in_order(&events, &alerts);
    let resolved = &alerts[1];
    let t = |v: &Value| {
        humantime::parse_rfc3339_weak(v.as_str().unwrap().trim_end_matches('Z')).unwrap()
    };
    let (got_end, real_end) = (t(&resolved["endsAt"]), t(&events[1]["endsAt"]));
    let diff = got_end
        .duration_since(real_end)
        .or_else(|_| real_end.duration_since(got_end))
        .unwrap();
    assert!(
        diff < Duration::from_millis(500),
        "resolved with the event's real end: {resolved:#} vs {:#}",
        events[1]
    );
    assert_eq!(resolved["labels"]["machine"], "motor_id01");

    // A silence made through Alertmanager's API suppresses the next monitor's alerts.
    am.silence("monitor", "motor-2");
    let before = rx.received().len();
    let cfg = format!(
        "{}{alerts_cfg}{}",
        daemon_header(dir.path()),
        replay_monitor("motor-2", &fx.profile, &fx.short_faulty, true, false),
    );
    let mut d = Daemon::start(&write_config(dir.path(), &cfg), &["--exit-when-done"], &[]);
    // While the event is open, Alertmanager holds its alert, silenced.
    let mut held = Value::Null;
    d.wait_for("motor-2's alert in Alertmanager", RUN_LIMIT, |_| {
        held = am.alerts();
        held.as_array()
            .is_some_and(|a| a.iter().any(|x| x["labels"]["monitor"] == "motor-2"))
    });
    let ours: Vec<&Value> = held
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["monitor"] == "motor-2")
        .collect();
    assert!(
        ours.iter().all(|a| a["status"]["state"] == "suppressed"
            && !a["status"]["silencedBy"].as_array().unwrap().is_empty()),
        "{held:#}"
    );
    let st = d.expect_exit(RUN_LIMIT);
    assert!(st.success(), "{}", d.log());
    assert!(
        d.events()
            .iter()
            .any(|e| e["kind"] == "anomaly_ended" && e["labels"]["monitor"] == "motor-2"),
        "the second run raised and ended an event"
    );
    // The receiver never hears of it.
    std::thread::sleep(Duration::from_secs(4));
    let after: Vec<Received> = rx.received().into_iter().skip(before).collect();
    assert!(
        after.is_empty(),
        "silenced alerts were notified: {:#?}",
        after.iter().map(|r| &r.json).collect::<Vec<_>>()
    );
}

/// A tmpfs mounted over a directory for one test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// `None` when mounting is not permitted (not root): the caller skips, saying so.
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem of `dir` with a file until the kernel says it is full.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [65536usize, 4096, 1] {
        let buf = vec![0u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    path
}

#[test]
fn a_full_state_filesystem_keeps_the_daemon_scoring_and_alerts_flowing() {
    let fx = fixture();
    let dir = test_dir();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let Some(_tmpfs) = Tmpfs::mount(&state, "512k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs (this test needs root)");
        return;
    };
    // An events file whose last page has 100 bytes free: the next event's write stops
    // part-way when the filesystem is full, which used to leave a torn line.
    let pad = 4096 - 100 - "{\"pad\":\"\"}\n".len();
    std::fs::write(
        state.join("events.jsonl"),
        format!("{{\"pad\":\"{}\"}}\n", "x".repeat(pad)),
    )
    .unwrap();
    let filler = fill(&state);
    let rx = Receiver::start(0);
    let cfg = format!(
        "{}[alerts]\n{}{}",
        daemon_header(dir.path()),
        webhook_section(&rx.url("/hook")),
        replay_monitor("motor-1", &fx.profile, &fx.short_faulty, false, false),
    );
    let config = write_config(dir.path(), &cfg);
    let mut d = Daemon::start(&config, &[], &[("EARSHOT_TEST_HMAC", SECRET)]);
    // Neither the events file nor the outbox can be written; scoring goes on to the end of
    // the file, and the alert is delivered from memory.
    d.wait_log("event not delivered", RUN_LIMIT);
    d.wait_windows_above("motor-1", 13.0, RUN_LIMIT);
    rx.wait_until("the firing alert", Duration::from_secs(10), |r| {
        alerts_of(r).iter().any(|a| a["status"] == "firing")
    });
    let log = d.log();
    assert!(log.contains("No space left on device"), "{log}");
    assert!(log.contains("kept in memory only"), "{log}");
    let text = scrape(&mut d);
    assert!(
        sample(&text, "earshot_alert_outbox_write_failures_total", "").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            "earshot_event_write_failures_total",
            "sink=\"jsonl\""
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    // The end of the event (the file ended) is delivered from memory too.
    rx.wait_until("the resolved alert", Duration::from_secs(10), |r| {
        alerts_of(r).iter().any(|a| a["status"] == "resolved")
    });
    d.signal(libc::SIGTERM);
    let st = d.expect_exit(Duration::from_secs(20));
    assert!(st.success(), "{}", d.log());
    // Space comes back and earshot runs again: the torn write was cut back, so the new
    // events start on their own lines and every line is whole JSON (read_events panics
    // otherwise).
    std::fs::remove_file(&filler).unwrap();
    let mut d = Daemon::start(
        &config,
        &["--exit-when-done"],
        &[("EARSHOT_TEST_HMAC", SECRET)],
    );
    let st = d.expect_exit(RUN_LIMIT);
    assert!(st.success(), "{}", d.log());
    let events = d.events();
    assert_eq!(events.len(), 3, "{events:#?}");
    assert!(events[0].get("pad").is_some());
    assert_eq!(events[1]["kind"], "anomaly_started");
    assert_eq!(events[2]["kind"], "anomaly_ended");
}
