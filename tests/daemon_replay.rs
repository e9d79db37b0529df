//! `earshot run` end to end on a replayed WAV, as fast as inference allows: the real binary,
//! a profile learned by `earshot learn`, ONNX Runtime, the events file.
//!
//! The stream is a synthetic motor, normal for `ONSET` seconds and then with a bearing fault.
//! Stream time makes these tests deterministic: no event may begin before the onset, and the
//! window whose score starts the event must end within window + hop + 1 s of the onset.

#[path = "common/daemon.rs"]
mod daemon;

use daemon::{
    Daemon, ONSET, STREAM_SECONDS, WINDOW, daemon_header, detection_window_start, fixture,
    replay_monitor, scored_windows, test_dir, write_config,
};
use serde_json::Value;
use std::time::Duration;

/// Generous: a debug build scores about 20 windows a second on one core.
const RUN_LIMIT: Duration = Duration::from_secs(240);

fn anomalies<'a>(events: &'a [Value], monitor: &str, kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["kind"] == kind && e["event"]["labels"]["monitor"] == monitor)
        .collect()
}

/// Checks one monitor's events and log against the stream: one event, begun at the fault,
/// detected in time, closed with reason "shutdown" at the end of the stream.
fn check_monitor(events: &[Value], log: &str, monitor: &str, hop: f64) {
    let started = anomalies(events, monitor, "anomaly_started");
    assert_eq!(
        started.len(),
        1,
        "{monitor}: expected exactly one anomaly, got {started:#?}\nlog:\n{log}"
    );
    let ev = &started[0]["event"];
    let onset = ev["start"]["stream_s"].as_f64().expect("start.stream_s");
    // The event's first window must already hold fault audio: nothing starts before the fault.
    assert!(
        onset + WINDOW > ONSET,
        "{monitor}: event starts at {onset} s, in a window that ends before the fault at {ONSET} s"
    );
    assert!(
        onset < ONSET + WINDOW + hop,
        "{monitor}: onset {onset} s is late"
    );
    let detected_start = detection_window_start(log, monitor)
        .unwrap_or_else(|| panic!("{monitor}: no scored window before the event in the log"));
    let detected = detected_start + WINDOW;
    assert!(
        detected > ONSET && detected <= ONSET + WINDOW + hop + 1.0 + 1e-9,
        "{monitor}: detected at stream {detected} s; the fault starts at {ONSET} s and must be \
         reported by {} s",
        ONSET + WINDOW + hop + 1.0
    );
    assert_eq!(
        ev["labels"]["machine"], "motor_id01",
        "labels carried: {ev}"
    );
    assert_eq!(ev["labels"]["line"], "test");
    assert!(
        !ev["fired"].as_array().expect("fired").is_empty(),
        "the event names the scorers that fired: {ev}"
    );

    let ended = anomalies(events, monitor, "anomaly_ended");
    assert_eq!(ended.len(), 1, "{monitor}: {ended:#?}");
    let end = &ended[0]["event"];
    assert_eq!(end["event_id"], ev["event_id"]);
    assert_eq!(
        end["reason"], "shutdown",
        "the fault lasts to the end of the stream: the event is closed by the shutdown"
    );
    let end_s = end["end"]["stream_s"].as_f64().expect("end.stream_s");
    assert!(
        (end_s - STREAM_SECONDS).abs() <= hop + 1e-6,
        "{monitor}: event ends at {end_s} s, the stream at {STREAM_SECONDS} s"
    );

    // Nothing shed: a fast replay waits for inference and scores every window, in order.
    let starts = scored_windows(log, monitor);
    let expected = ((STREAM_SECONDS - WINDOW) / hop).floor() as usize + 1;
    assert_eq!(starts.len(), expected, "{monitor}: scored windows");
    for (i, s) in starts.iter().enumerate() {
        assert!(
            (s - i as f64 * hop).abs() < 1e-3,
            "{monitor}: window {i} starts at {s} s, expected {} s",
            i as f64 * hop
        );
    }
}

fn run_to_end(config: &std::path::Path) -> Daemon {
    let mut d = Daemon::start(config, &["--exit-when-done"], &[]);
    let st = d.expect_exit(RUN_LIMIT);
    assert!(st.success(), "earshot run failed ({st}); log:\n{}", d.log());
    assert!(
        d.log().contains("every source has ended: stopping"),
        "{}",
        d.log()
    );
    d
}

#[test]
fn a_fault_is_reported_after_its_onset_and_closed_at_the_end() {
    let fx = fixture();
    let dir = test_dir();
    let cfg = format!(
        "{}{}hop_seconds = 0.25\ndecide = {{ trigger_n = 2, trigger_m = 3 }}\n",
        daemon_header(dir.path()),
        replay_monitor("motor-1", &fx.profile, &fx.stream, false, false)
    );
    let d = run_to_end(&write_config(dir.path(), &cfg));
    let events = d.events();
    check_monitor(&events, &d.log(), "motor-1", 0.25);
    assert_eq!(
        events.len(),
        2,
        "only the anomaly's start and end: {events:#?}"
    );
}

/// Two monitors in one process, one with the default decision settings (3 of 5 windows,
/// hop 0.5 s) and one like the test above: each decides on its own, and the second gives
/// exactly the events of the single-monitor run (scores are deterministic).
#[test]
fn monitors_in_one_process_decide_independently_and_deterministically() {
    let fx = fixture();
    let dir = test_dir();
    let cfg = format!(
        "{}{}{}hop_seconds = 0.25\ndecide = {{ trigger_n = 2, trigger_m = 3 }}\n",
        daemon_header(dir.path()),
        replay_monitor("default", &fx.profile, &fx.stream, false, false),
        replay_monitor("fast", &fx.profile, &fx.stream, false, false),
    );
    let d = run_to_end(&write_config(dir.path(), &cfg));
    let events = d.events();
    let log = d.log();
    check_monitor(&events, &log, "default", 0.5);
    check_monitor(&events, &log, "fast", 0.25);

    // The same stream alone in another process: identical stream times and scores.
    let dir2 = test_dir();
    let cfg2 = format!(
        "{}{}hop_seconds = 0.25\ndecide = {{ trigger_n = 2, trigger_m = 3 }}\n",
        daemon_header(dir2.path()),
        replay_monitor("fast", &fx.profile, &fx.stream, false, false),
    );
    let d2 = run_to_end(&write_config(dir2.path(), &cfg2));
    let strip = |evs: Vec<Value>| -> Vec<Value> {
        evs.into_iter()
            .filter(|e| e["event"]["labels"]["monitor"] == "fast")
            .map(|e| {
                let ev = &e["event"];
                serde_json::json!({
                    "kind": e["kind"],
                    "start": ev["start"]["stream_s"],
                    "end": ev["end"]["stream_s"],
                    "scores": ev["scores"],
                    "fired": ev["fired"],
                })
            })
            .collect()
    };
    assert_eq!(strip(events), strip(d2.events()));
}

/// A normal stream that ends: no event at all, and the process exits by itself.
#[test]
fn a_normal_replay_raises_nothing() {
    let fx = fixture();
    let dir = test_dir();
    let cfg = format!(
        "{}{}",
        daemon_header(dir.path()),
        replay_monitor("quiet", &fx.profile, &fx.short_normal, false, false)
    );
    let d = run_to_end(&write_config(dir.path(), &cfg));
    assert_eq!(d.events(), Vec::<Value>::new(), "log:\n{}", d.log());
    let starts = scored_windows(&d.log(), "quiet");
    assert_eq!(starts.len(), 9, "5 s at window 1 s, hop 0.5 s");
}
