//! Decisions on a replayed recording with known onsets: the real binary, a profile learned by
//! `earshot learn`, ONNX Runtime, the events file.
//!
//! The recording is the fixture's motor, spliced from generated streams of the same machine
//! (same seed, so the machine sound is continuous): normal, a bearing fault from 12 s to 20 s,
//! normal, digital silence from 32 s to 37 s (machine off), normal, the fault again from
//! 41.3 s to 48 s, normal to 60 s. Expected: two anomaly events, each starting within
//! hop + window/2 of its onset and ending within `release_after` + 3 s of its fault's end;
//! no anomaly for the silence but one no-signal state; fast-replay times in stream time.

#[path = "common/daemon.rs"]
mod daemon;

use daemon::{
    Daemon, WINDOW, daemon_header, fixture, motor_stream, read_i16, replay_monitor, test_dir,
    write_config, write_i16,
};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const RATE: u32 = 48_000;
const FAULTS: [(f64, f64); 2] = [(12.0, 20.0), (41.3, 48.0)];
const SILENCE: (f64, f64) = (32.0, 37.0);
const SECONDS: f64 = 60.0;
const HOP: f64 = 0.5;
const RELEASE_AFTER: f64 = 5.0;

fn synth(dir: &Path, name: &str, level_db: &str, onset: f64) -> Vec<i16> {
    read_i16(&motor_stream(dir, name, level_db, SECONDS, onset, RATE))
}

/// Writes the spliced recording described in the module docs.
fn recording(dir: &Path) -> std::path::PathBuf {
    // "Normal": the fault 60 dB down and only in the last second.
    let normal = synth(dir, "normal.wav", "-60", SECONDS - 1.0);
    let faulty = synth(dir, "faulty.wav", "0", 1.0);
    let at = |t: f64| (t * f64::from(RATE)) as usize;
    let mut out = normal.clone();
    for (a, b) in FAULTS {
        out[at(a)..at(b)].copy_from_slice(&faulty[at(a)..at(b)]);
    }
    out[at(SILENCE.0)..at(SILENCE.1)]
        .iter_mut()
        .for_each(|v| *v = 0);
    let path = dir.join("spliced.wav");
    write_i16(&path, RATE, &out);
    path
}

/// Stream end (s) of the last window scored before the log line of the event `fingerprint`
/// of this `kind`: when the decision was taken.
fn decided_at(log: &str, kind: &str, fingerprint: &str) -> f64 {
    let mut last = None;
    for line in log.lines() {
        if line.contains("window scored") {
            last = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("start_s="))
                .and_then(|v| v.parse::<f64>().ok());
        } else if line.contains(&format!("kind={kind}")) && line.contains(fingerprint) {
            return last.expect("a window before the event") + WINDOW;
        }
    }
    panic!("no {kind} of {fingerprint} in the log:\n{log}");
}

#[test]
fn faults_start_and_end_on_time_and_silence_is_no_signal() {
    let fx = fixture();
    let dir = test_dir();
    let wav = recording(dir.path());
    let cfg = format!(
        "{}{}",
        daemon_header(dir.path()),
        replay_monitor("motor-1", &fx.profile, &wav, false, false)
    );
    let mut d = Daemon::start(&write_config(dir.path(), &cfg), &["--exit-when-done"], &[]);
    let st = d.expect_exit(Duration::from_secs(240));
    let log = d.log();
    assert!(st.success(), "earshot run failed ({st}); log:\n{log}");
    let events = d.events();
    let of = |kind: &str| -> Vec<&Value> { events.iter().filter(|e| e["kind"] == kind).collect() };
    let started = of("anomaly_started");
    let ended = of("anomaly_ended");
    assert_eq!(started.len(), 2, "one event per fault: {events:#?}");
    assert_eq!(ended.len(), 2, "{events:#?}");
    for (i, (onset, fault_end)) in FAULTS.into_iter().enumerate() {
        let s = started[i];
        let e = ended[i];
        assert_eq!(s["fingerprint"], e["fingerprint"], "one id per event");
        let start = s["event"]["start"]["stream_s"].as_f64().unwrap();
        assert!(
            (start - onset).abs() <= HOP + WINDOW / 2.0 + 1e-9,
            "event {i}: starts at {start} s, the fault at {onset} s"
        );
        assert_eq!(e["event"]["reason"], "released", "{e}");
        let fp = s["fingerprint"].as_str().unwrap();
        let ended_at = decided_at(&log, "anomaly_ended", fp);
        assert!(
            ended_at > fault_end && ended_at <= fault_end + RELEASE_AFTER + 3.0,
            "event {i}: ended at stream {ended_at} s; its fault ended at {fault_end} s"
        );
        let detected = s["event"]["detected"]["stream_s"].as_f64().unwrap();
        assert!(detected > onset && detected >= start, "{s}");
        // A fast replay has no wall time: stream time, said so, never in the future.
        assert_eq!(s["annotations"]["time_base"], "stream", "{s}");
        let starts_at = humantime::parse_rfc3339(s["startsAt"].as_str().unwrap()).unwrap();
        let expect = std::time::UNIX_EPOCH + Duration::from_secs_f64(start);
        assert!(starts_at.duration_since(expect).unwrap_or_default() < Duration::from_millis(2));
        assert!(starts_at <= std::time::SystemTime::now());
    }
    assert_ne!(started[0]["fingerprint"], started[1]["fingerprint"]);
    // The silence: a no-signal state, not an anomaly.
    let ns = of("no_signal");
    let back = of("signal_back");
    assert_eq!((ns.len(), back.len()), (1, 1), "{events:#?}");
    let since = ns[0]["event"]["detail"].as_str().unwrap();
    assert!(since.contains("dBFS"), "{since}");
    // The alert starts when the silence began (the first quiet window), not when it had
    // lasted long enough to be called one, and at the instant its text names.
    let ns_at = humantime::parse_rfc3339(ns[0]["startsAt"].as_str().unwrap()).unwrap();
    let ns_s = ns_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (ns_s - SILENCE.0).abs() <= WINDOW / 2.0 + 1e-6,
        "no signal from {ns_s} s; the silence from {} s",
        SILENCE.0
    );
    assert!(
        since.contains(&format!("since stream {ns_s:.2} s")),
        "{since} vs {ns_s}"
    );
    let back_at = humantime::parse_rfc3339(back[0]["startsAt"].as_str().unwrap()).unwrap();
    let back_s = back_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (back_s - SILENCE.1).abs() <= HOP + 1e-6,
        "signal back at {back_s} s"
    );
    assert_eq!(ns[0]["labels"]["severity"], "warning");
    for e in &started {
        let s = e["event"]["start"]["stream_s"].as_f64().unwrap();
        assert!(
            !(SILENCE.0 - 1.0..SILENCE.1).contains(&s),
            "an anomaly in the silence: {e}"
        );
    }
    // `earshot score` replays the same decision offline: the same events, to the window.
    let replayed = score_events(&fx.profile, &wav);
    let daemon_view: Vec<String> = events
        .iter()
        .filter(|e| e["kind"] == "anomaly_started" || e["kind"] == "anomaly_ended")
        .map(|e| decision_key(&e["event"]))
        .collect();
    let score_view: Vec<String> = replayed.iter().map(decision_key).collect();
    assert_eq!(score_view, daemon_view, "score's replay vs the daemon");
}

/// The decision messages `earshot score --format jsonl` reports for `wav`.
fn score_events(profile: &Path, wav: &Path) -> Vec<Value> {
    let out = std::process::Command::new(daemon::EARSHOT)
        .args(["score", "--format", "jsonl", "--profile"])
        .arg(profile)
        .arg(wav)
        .env("EARSHOT_LOG", "warn")
        .output()
        .expect("run earshot score");
    assert!(
        out.status.success(),
        "earshot score: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON lines"))
        .filter(|v| v["type"] == "event")
        .map(|v| v["event"].clone())
        .collect()
}

/// What must agree between a live decision and its replay: kind, rule, firing scorers and
/// every time (the ids differ by design; peaks and means are compared to 3 decimals, as the
/// windows are resampled in one piece offline and in chunks live).
fn decision_key(e: &Value) -> String {
    let t = |v: &Value| v["stream_s"].as_f64().map(|x| format!("{x:.3}"));
    let peaks: Vec<String> = e["scores"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}:{:.3}", v["peak"].as_f64().unwrap_or(f64::NAN)))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{} rule={} fired={} start={:?} detected={:?} end={:?} reason={} peaks={peaks:?}",
        e["kind"],
        e["rule"],
        e["fired"],
        t(&e["start"]),
        t(&e["detected"]),
        t(&e["end"]),
        e["reason"]
    )
}

/// A `channel` the source does not have is refused, naming the monitor and the channel count
/// (it used to be clamped to the last channel: a monitor could listen to the wrong machine).
#[test]
fn a_channel_beyond_the_source_is_refused() {
    let fx = fixture();
    let dir = test_dir();
    let cfg = format!(
        "{}[[monitor]]\nname = \"wrong-ch\"\nprofile = \"{}\"\n\
         source = {{ file = \"{}\", realtime = false, loop = false, channel = 3 }}\n",
        daemon_header(dir.path()),
        fx.profile.display(),
        fx.short_normal.display()
    );
    let mut d = Daemon::start(&write_config(dir.path(), &cfg), &["--exit-when-done"], &[]);
    d.expect_exit(Duration::from_secs(60));
    let log = d.log();
    assert!(
        log.contains("monitor wrong-ch: `channel` = 3, but the device delivers 1 channel(s)"),
        "{log}"
    );
    assert!(
        !log.contains("window scored"),
        "nothing may be scored: {log}"
    );
}

/// Scales `faulty` so that its part before `onset` has the RMS of `normal`'s: the generator
/// lowers a stream's gain when the fault would clip it, and a spliced level step would be a
/// sound of its own.
fn match_gain(normal: &[i16], faulty: &[i16], onset: usize) -> Vec<i16> {
    let ms = |x: &[i16]| x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64;
    let g = (ms(&normal[..onset]) / ms(&faulty[..onset])).sqrt();
    faulty
        .iter()
        .map(|&v| (f64::from(v) * g).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// First sample of `[a, b)` where `faulty` departs from `normal` by a tenth of its largest
/// departure there: the first knock of an impact fault, found in the audio itself.
fn first_knock(normal: &[i16], faulty: &[i16], a: usize, b: usize) -> usize {
    let d: Vec<f64> = (a..b)
        .map(|i| (f64::from(faulty[i]) - f64::from(normal[i])).abs())
        .collect();
    let max = d.iter().copied().fold(0.0, f64::max);
    assert!(max > 1000.0, "no knock between samples {a} and {b}");
    a + d.iter().position(|&v| v > 0.1 * max).unwrap()
}

/// An impact fault (the generator's knocks at -6 dB) is reported from the window that holds
/// its first knock, within window + hop + 200 ms of stream time, by the impulse scorer's
/// transient rule; and silence -> machine edges at several positions against the window grid
/// start no event (those windows hold the onset of sound by construction).
#[test]
fn impacts_are_reported_within_a_window_and_silence_edges_start_nothing() {
    const IMPACTS: [(f64, f64); 2] = [(24.0, 26.0), (31.3, 33.3)];
    const SILENCES: [(f64, f64); 3] = [(4.0, 6.13), (10.0, 12.37), (16.0, 18.71)];
    const SECS: f64 = 40.0;
    let fx = fixture();
    let dir = test_dir();
    let at = |t: f64| (t * f64::from(RATE)) as usize;
    let normal = read_i16(&motor_stream(
        dir.path(),
        "n.wav",
        "-60",
        SECS,
        SECS - 1.0,
        RATE,
    ));
    let mut out = normal.clone();
    let mut knocks = Vec::new();
    for (i, (a, b)) in IMPACTS.into_iter().enumerate() {
        let f = read_i16(&daemon::motor_fault_stream(
            dir.path(),
            &format!("impact{i}.wav"),
            "impact",
            "-6",
            SECS,
            a,
            RATE,
        ));
        let f = match_gain(&normal, &f, at(a));
        out[at(a)..at(b)].copy_from_slice(&f[at(a)..at(b)]);
        knocks.push(first_knock(&normal, &f, at(a), at(b)) as f64 / f64::from(RATE));
    }
    for (a, b) in SILENCES {
        out[at(a)..at(b)].iter_mut().for_each(|v| *v = 0);
    }
    let wav = dir.path().join("impacts.wav");
    write_i16(&wav, RATE, &out);
    let cfg = format!(
        "{}{}decide = {{ release_after = 2.0, no_signal_after = 1.0 }}\n",
        daemon_header(dir.path()),
        replay_monitor("motor-1", &fx.profile, &wav, false, false)
    );
    let mut d = Daemon::start(&write_config(dir.path(), &cfg), &["--exit-when-done"], &[]);
    let st = d.expect_exit(Duration::from_secs(240));
    let log = d.log();
    assert!(st.success(), "earshot run failed ({st}); log:\n{log}");
    let events = d.events();
    let started: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "anomaly_started")
        .collect();
    assert_eq!(
        started.len(),
        2,
        "one event per impact, none for the silences: {events:#?}"
    );
    let bound = WINDOW + HOP + 0.2;
    for (s, (knock, (a, _))) in started.iter().zip(knocks.iter().zip(IMPACTS)) {
        let detected = s["event"]["detected"]["stream_s"].as_f64().unwrap();
        eprintln!(
            "impact at {a} s: first knock at {knock:.3} s, detected at {detected:.3} s ({:.3} s later) by {} ({})",
            detected - knock,
            s["annotations"]["fired"],
            s["annotations"]["rule"]
        );
        assert!(
            detected > *knock && detected - knock <= bound,
            "knock at {knock:.3} s, detected at {detected:.3} s: {s}"
        );
    }
    let no_signal = events.iter().filter(|e| e["kind"] == "no_signal").count();
    assert_eq!(no_signal, SILENCES.len(), "{events:#?}");
}

/// The input stopping a little way into a window (a device muted, a splice to digital zeros)
/// starts nothing: the window keeps three loud quarters, so the quietest-quarter level alone
/// let it through, and the edge to zeros scored far above every threshold. Stops 0.2-0.3 s
/// before a window's end at hop 0.5 s, and a silence that starts a window later.
#[test]
fn a_stop_a_little_way_into_a_window_starts_nothing() {
    const STOPS: [(f64, f64); 3] = [(8.3, 11.0), (16.8, 19.0), (25.27, 28.0)];
    let dir = test_dir();
    // The pretrained default model: it hears such an edge far louder than the seeded one.
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/aisfx-cnn9");
    let profile = daemon::learn_motor_profile(dir.path(), &model, "");
    let model_cfg = daemon::model_table(&model);
    let at = |t: f64| (t * f64::from(RATE)) as usize;
    let mut out = read_i16(&motor_stream(dir.path(), "n.wav", "-60", 34.0, 33.0, RATE));
    for (a, b) in STOPS {
        out[at(a)..at(b)].iter_mut().for_each(|v| *v = 0);
    }
    let wav = dir.path().join("stops.wav");
    write_i16(&wav, RATE, &out);
    let cfg = format!(
        "{}{model_cfg}{}decide = {{ no_signal_after = 1.0 }}\n",
        daemon_header(dir.path()),
        replay_monitor("motor-1", &profile, &wav, false, false)
    );
    let mut d = Daemon::start(&write_config(dir.path(), &cfg), &["--exit-when-done"], &[]);
    let st = d.expect_exit(Duration::from_secs(240));
    assert!(st.success(), "earshot run failed ({st}); log:\n{}", d.log());
    let events = d.events();
    let count = |kind: &str| events.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!(count("anomaly_started"), 0, "{events:#?}");
    assert_eq!(count("no_signal"), STOPS.len(), "{events:#?}");
}

/// `earshot score` flags windows by the scores that decide (`learn.decide_on`, by default
/// centroid and fused): each row carries the fused score and its threshold (the profile's),
/// a score that does not decide has no threshold (null, not infinity), a window over the
/// fused threshold counts as anomalous, and the text verdict names the deciding thresholds.
#[test]
fn score_rows_flag_windows_by_the_deciding_scores() {
    let fx = fixture();
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(fx.profile.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest JSON");
    let tf = manifest["thresholds"]["fused"]["value"]
        .as_f64()
        .expect("fused decides by default");
    assert!(manifest["thresholds"]["knn"].is_null(), "{manifest}");
    let run = |format: &str| {
        let out = std::process::Command::new(daemon::EARSHOT)
            .args(["score", "--format", format, "--profile"])
            .arg(&fx.profile)
            .arg(&fx.short_faulty)
            .env("EARSHOT_LOG", "warn")
            .output()
            .expect("run earshot score");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let rows: Vec<Value> = run("jsonl")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON lines"))
        .filter(|v| v["type"] == "window")
        .collect();
    assert!(!rows.is_empty());
    let mut fused_over = 0;
    for r in &rows {
        assert!(r["knn_threshold"].is_null(), "{r}");
        let t = r["fused_threshold"].as_f64().expect("fused threshold");
        assert!((t - tf).abs() < 1e-4, "{t} vs the profile's {tf}");
        let f = r["fused"].as_f64().expect("fused score");
        assert_eq!(r["fused_anomaly"], f > tf, "{r}");
        if f > tf {
            fused_over += 1;
            assert_eq!(r["anomaly"], true, "over the fused threshold: {r}");
        }
    }
    assert!(
        fused_over > 0,
        "the fault is over the fused threshold somewhere: {rows:?}"
    );
    let text = run("text");
    assert!(
        text.contains("mean fused") && text.contains("ANOMALOUS"),
        "{text}"
    );
    assert!(!text.contains("inf"), "{text}");
}
