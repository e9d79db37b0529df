//! Decisions live through a real audio server (private PulseAudio null sink, cpal's ALSA
//! host), played in real time: the fixture's motor with a bearing fault (sustained), a
//! silence, the machine starting again, and an impact fault (the generator's knocks at -6 dB).
//! Two anomaly events, each ending within `release_after` + 3 s of its fault's end; the
//! impact reported within window + hop + 200 ms of its first knock; no anomaly for the
//! silence nor for the machine starting after it, but a no-signal state and its end;
//! wall-clock times from the arrival of the audio, never in the future.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/pulse.rs"]
mod pulse;

use daemon::{
    Daemon, daemon_header, fixture, motor_fault_stream, motor_stream, read_i16, test_dir,
    write_config, write_i16,
};
use pulse::PulseServer;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const RATE: u32 = 48_000;
const SECONDS: f64 = 40.0;
const FAULT: (f64, f64) = (6.0, 12.0);
const SILENCE: (f64, f64) = (17.0, 20.0);
const IMPACT: (f64, f64) = (27.0, 29.0);
const RELEASE_AFTER: f64 = 3.0;
const WINDOW: f64 = 1.0;
const HOP: f64 = 0.5;

/// Scales `faulty` so that its part before `onset` has the RMS of `normal`'s (the generator
/// lowers a stream's gain when a fault would clip it; a spliced level step would be a sound).
fn match_gain(normal: &[i16], faulty: &[i16], onset: usize) -> Vec<i16> {
    let ms = |x: &[i16]| x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64;
    let g = (ms(&normal[..onset]) / ms(&faulty[..onset])).sqrt();
    faulty
        .iter()
        .map(|&v| (f64::from(v) * g).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// The live recording and the time (s) of the impact's first knock, found in the audio: the
/// first sample where the faulty stream departs from the normal one by a tenth of its
/// largest departure.
fn recording(dir: &Path) -> (std::path::PathBuf, f64) {
    let at = |t: f64| (t * f64::from(RATE)) as usize;
    let normal = read_i16(&motor_stream(
        dir,
        "normal.wav",
        "-60",
        SECONDS,
        SECONDS - 1.0,
        RATE,
    ));
    let bearing = read_i16(&motor_stream(dir, "faulty.wav", "0", SECONDS, 1.0, RATE));
    let impact = read_i16(&motor_fault_stream(
        dir,
        "impact.wav",
        "impact",
        "-6",
        SECONDS,
        IMPACT.0,
        RATE,
    ));
    let impact = match_gain(&normal, &impact, at(IMPACT.0));
    let mut out = normal.clone();
    out[at(FAULT.0)..at(FAULT.1)].copy_from_slice(&bearing[at(FAULT.0)..at(FAULT.1)]);
    out[at(IMPACT.0)..at(IMPACT.1)].copy_from_slice(&impact[at(IMPACT.0)..at(IMPACT.1)]);
    out[at(SILENCE.0)..at(SILENCE.1)]
        .iter_mut()
        .for_each(|v| *v = 0);
    let d: Vec<f64> = (at(IMPACT.0)..at(IMPACT.1))
        .map(|i| (f64::from(impact[i]) - f64::from(normal[i])).abs())
        .collect();
    let max = d.iter().copied().fold(0.0, f64::max);
    assert!(max > 1000.0, "no knock in the impact part");
    let knock = at(IMPACT.0) + d.iter().position(|&v| v > 0.1 * max).unwrap();
    let path = dir.join("live.wav");
    write_i16(&path, RATE, &out);
    (path, knock as f64 / f64::from(RATE))
}

fn stream_s(e: &Value, which: &str) -> f64 {
    e["event"][which]["stream_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("no {which}.stream_s: {e}"))
}

fn wall(e: &Value, which: &str) -> SystemTime {
    humantime::parse_rfc3339(e["event"][which]["wall"].as_str().unwrap()).unwrap()
}

#[test]
fn two_faults_end_an_impact_is_found_at_once_and_silence_is_no_signal_live() {
    let fx = fixture();
    let dir = test_dir();
    let (wav, knock) = recording(dir.path());
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
    let wall0 = SystemTime::now();
    pa.play(&wav);
    let mut d = Daemon::start(&write_config(dir.path(), &cfg), &[], &[]);
    // (kind, seconds since the recording started playing) of every event, at first sight.
    let mut seen: Vec<(String, String, f64)> = Vec::new();
    d.wait_for(
        "the second anomaly to end",
        Duration::from_secs_f64(SECONDS + 30.0),
        |d| {
            for e in d.events() {
                let k = e["kind"].as_str().unwrap_or("").to_string();
                let fp = e["fingerprint"].as_str().unwrap_or("").to_string();
                if !seen.iter().any(|(s, f, _)| *s == k && *f == fp) {
                    seen.push((k, fp, t0.elapsed().as_secs_f64()));
                }
            }
            seen.iter().filter(|(k, _, _)| k == "anomaly_ended").count() >= 2
                || t0.elapsed().as_secs_f64() > SECONDS + 12.0
        },
    );
    let log = d.log();
    let events = d.events();
    let of = |kind: &str| -> Vec<&Value> { events.iter().filter(|e| e["kind"] == kind).collect() };
    let started = of("anomaly_started");
    let ended = of("anomaly_ended");
    let first_sight = |kind: &str, fp: &Value| {
        seen.iter()
            .find(|(k, f, _)| k == kind && fp == f.as_str())
            .map(|(_, _, t)| *t)
            .unwrap()
    };
    assert_eq!(
        started.len(),
        2,
        "one event per fault, none for the silence or the restart: {seen:?}\n{events:#?}\n{log}"
    );
    assert_eq!(ended.len(), 2, "{seen:?}\n{log}");
    // The sustained fault: found within a few seconds, ended within the bound.
    let s0 = first_sight("anomaly_started", &started[0]["fingerprint"]);
    let e0 = first_sight("anomaly_ended", &started[0]["fingerprint"]);
    assert!(
        s0 > FAULT.0 && s0 < FAULT.0 + 4.0,
        "started at {s0} s: {seen:?}"
    );
    // Polling and the first block's delay add up to a second on top of the rule's bound.
    assert!(
        e0 > FAULT.1 && e0 <= FAULT.1 + RELEASE_AFTER + 3.0 + 1.0,
        "ended at {e0} s, the fault at {} s: {seen:?}\n{log}",
        FAULT.1
    );
    // The impact: reported from the window that holds its first knock. The knock's stream
    // time comes from the monitor's own clock (stream time <-> wall time of the audio's
    // arrival, in the event): it is late by the playback and capture latency, which only
    // makes the measured delay longer.
    let imp = started[1];
    let s1 = first_sight("anomaly_started", &imp["fingerprint"]);
    let e1 = first_sight("anomaly_ended", &imp["fingerprint"]);
    let anchor_s = stream_s(imp, "start");
    let anchor_wall = wall(imp, "start");
    let knock_wall = wall0 + Duration::from_secs_f64(knock);
    let knock_stream = anchor_s
        - anchor_wall
            .duration_since(knock_wall)
            .map(|d| d.as_secs_f64())
            .unwrap_or_else(|e| -e.duration().as_secs_f64());
    let detected = stream_s(imp, "detected");
    let delay = detected - knock_stream;
    let wall_delay = wall(imp, "detected")
        .duration_since(knock_wall)
        .map(|d| d.as_secs_f64())
        .unwrap_or(-1.0);
    eprintln!(
        "impact: first knock at {knock:.3} s of the recording; detected {delay:.3} s later in stream time, decided {wall_delay:.3} s after it was played (by {} / {})",
        imp["annotations"]["fired"], imp["annotations"]["rule"]
    );
    assert!(
        delay > 0.0 && delay <= WINDOW + HOP + 0.2,
        "impact detected {delay:.3} s after the knock (stream time): {imp}\n{log}"
    );
    assert!(
        s1 > IMPACT.0 && e1 > s1 && e1 <= IMPACT.1 + RELEASE_AFTER + 3.0 + 1.0,
        "impact event from {s1} s to {e1} s; the impact was {IMPACT:?}: {seen:?}"
    );
    // The silence: no signal and back, no anomaly (checked above: two events only).
    let ns = seen
        .iter()
        .find(|(k, _, _)| k == "no_signal")
        .map(|(_, _, t)| *t)
        .unwrap_or_else(|| panic!("no no_signal: {seen:?}"));
    assert!(
        ns > SILENCE.0 && ns < SILENCE.1 + 1.0,
        "no_signal at {ns} s"
    );
    assert_eq!(of("signal_back").len(), 1, "{seen:?}");
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
    for s in &started {
        let starts = humantime::parse_rfc3339(s["startsAt"].as_str().unwrap()).unwrap();
        let detected = humantime::parse_rfc3339(s["detectedAt"].as_str().unwrap()).unwrap();
        assert!(starts < detected, "{s}");
    }
    d.signal(libc::SIGTERM);
    assert!(d.expect_exit(Duration::from_secs(10)).success());
}
