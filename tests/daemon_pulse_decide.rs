//! Decisions live through a real audio server (private PulseAudio null sink, cpal's ALSA
//! host): the fixture's motor with a bearing fault and a silence at known times, played in
//! real time. One anomaly event that ends within `release_after` + 3 s of the fault's end; no
//! anomaly for the silence but a no-signal state and its end; wall-clock times from the
//! arrival of the audio, never in the future.
//!
//! (The issue also asks for an impact reported within window + hop + 200 ms: with the bundled
//! untrained model a single knock does not score above even the threshold, see the README's
//! decision figures, so no rule can report it; the transient rule is tested in
//! `score::decide` and `tests/daemon_decide.rs` covers the replayed timing.)

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/pulse.rs"]
mod pulse;

use daemon::{
    Daemon, daemon_header, fixture, motor_stream, read_i16, test_dir, write_config, write_i16,
};
use pulse::PulseServer;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const RATE: u32 = 48_000;
const SECONDS: f64 = 28.0;
const FAULT: (f64, f64) = (7.0, 13.0);
const SILENCE: (f64, f64) = (18.0, 22.0);
const RELEASE_AFTER: f64 = 3.0;

fn synth(dir: &Path, name: &str, level_db: &str, onset: f64) -> Vec<i16> {
    read_i16(&motor_stream(dir, name, level_db, SECONDS, onset, RATE))
}

fn recording(dir: &Path) -> std::path::PathBuf {
    let normal = synth(dir, "normal.wav", "-60", SECONDS - 1.0);
    let faulty = synth(dir, "faulty.wav", "0", 1.0);
    let at = |t: f64| (t * f64::from(RATE)) as usize;
    let mut out = normal;
    out[at(FAULT.0)..at(FAULT.1)].copy_from_slice(&faulty[at(FAULT.0)..at(FAULT.1)]);
    out[at(SILENCE.0)..at(SILENCE.1)]
        .iter_mut()
        .for_each(|v| *v = 0);
    let path = dir.join("live.wav");
    write_i16(&path, RATE, &out);
    path
}

#[test]
fn a_fault_ends_and_a_silence_is_no_signal_live() {
    let fx = fixture();
    let dir = test_dir();
    let wav = recording(dir.path());
    let mut pa = PulseServer::start();
    // The null sink renders its first blocks late after the server starts.
    std::thread::sleep(Duration::from_millis(2500));
    let cfg = format!(
        "{}[[monitor]]\nname = \"live\"\nlabels = {{ machine = \"motor_id01\" }}\n\
         profile = \"{}\"\nsource = {{ device = \"alsa:pulse\" }}\n\
         decide = {{ release_after = {RELEASE_AFTER}, no_signal_after = 1.0 }}\n",
        daemon_header(dir.path()),
        fx.profile.display()
    );
    let t0 = Instant::now();
    pa.play(&wav);
    let mut d = Daemon::start(&write_config(dir.path(), &cfg), &[], &[]);
    // First sight of each kind of event, in seconds since the recording started playing.
    let mut seen: Vec<(String, f64)> = Vec::new();
    d.wait_for(
        "signal_back after the silence",
        Duration::from_secs_f64(SECONDS + 20.0),
        |d| {
            for e in d.events() {
                let k = e["kind"].as_str().unwrap_or("").to_string();
                if !seen.iter().any(|(s, _)| *s == k) {
                    seen.push((k, t0.elapsed().as_secs_f64()));
                }
            }
            seen.iter().any(|(k, _)| k == "signal_back")
        },
    );
    let at = |kind: &str| seen.iter().find(|(k, _)| k == kind).map(|(_, t)| *t);
    let log = d.log();
    let started = at("anomaly_started").unwrap_or_else(|| panic!("no anomaly: {seen:?}\n{log}"));
    let ended = at("anomaly_ended").unwrap_or_else(|| panic!("never ended: {seen:?}\n{log}"));
    assert!(
        started > FAULT.0 && started < FAULT.0 + 4.0,
        "started at {started} s: {seen:?}"
    );
    // Polling and the first block's delay add up to a second on top of the rule's bound.
    assert!(
        ended > FAULT.1 && ended <= FAULT.1 + RELEASE_AFTER + 3.0 + 1.0,
        "ended at {ended} s, the fault at {} s: {seen:?}\n{log}",
        FAULT.1
    );
    let ns = at("no_signal").unwrap_or_else(|| panic!("no no_signal: {seen:?}"));
    assert!(
        ns > SILENCE.0 && ns < SILENCE.1 + 1.0,
        "no_signal at {ns} s"
    );
    let events = d.events();
    let n_started = events
        .iter()
        .filter(|e| e["kind"] == "anomaly_started")
        .count();
    assert_eq!(n_started, 1, "the silence raised no anomaly: {events:#?}");
    let now = SystemTime::now();
    for e in &events {
        for key in ["startsAt", "endsAt", "detectedAt"] {
            if let Some(t) = e[key].as_str() {
                let t = humantime::parse_rfc3339(t).unwrap();
                assert!(t <= now, "{key} in the future: {e}");
                assert!(
                    now.duration_since(t).unwrap() < Duration::from_secs(120),
                    "{key}: {e}"
                );
            }
        }
    }
    let s: &Value = events
        .iter()
        .find(|e| e["kind"] == "anomaly_started")
        .unwrap();
    let starts = humantime::parse_rfc3339(s["startsAt"].as_str().unwrap()).unwrap();
    let detected = humantime::parse_rfc3339(s["detectedAt"].as_str().unwrap()).unwrap();
    assert!(starts < detected, "{s}");
    d.signal(libc::SIGTERM);
    assert!(d.expect_exit(Duration::from_secs(10)).success());
}
