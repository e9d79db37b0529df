//! Evidence end to end with the real binary: a replayed fault's clip and spectrogram, the
//! `earshot events` listing, retention, the free-space guard, a crash while a clip is being
//! written, and the events page in headless Chromium (Debian's `chromium`).

#[path = "common/daemon.rs"]
mod daemon;

use daemon::{
    Daemon, EARSHOT, ONSET, daemon_header, fixture, motor_stream, replay_monitor, test_dir,
    write_config,
};
use earshot::evidence::spectrogram::Spectrogram;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RUN_LIMIT: Duration = Duration::from_secs(300);
const PRE_ROLL: f64 = 3.0;

fn evidence_section(extra: &str) -> String {
    format!(
        "[evidence]\npre_roll_seconds = {PRE_ROLL}\npost_roll_seconds = 1.0\nmax_clip_seconds = 30\nmin_free_megabytes = 0\n{extra}\n"
    )
}

/// `dir/earshot.toml`: the evidence section (plus `extra`) and one monitor, press-1,
/// replaying `file`.
fn press_config(dir: &Path, extra: &str, file: &Path, realtime: bool, looping: bool) -> PathBuf {
    let cfg = format!(
        "{}{}{}",
        daemon_header(dir),
        evidence_section(extra),
        replay_monitor("press-1", &fixture().profile, file, realtime, looping)
    );
    write_config(dir, &cfg)
}

/// Event directories (complete ones) of a monitor.
fn event_dirs(state: &Path, monitor: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(state.join("evidence").join(monitor)) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| !p.file_name().unwrap().to_str().unwrap().starts_with('.'))
        .collect();
    v.sort();
    v
}

fn events_cli(state: &Path, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(EARSHOT)
        .args(["events", "--state-dir"])
        .arg(state)
        .args(["--format", "json"])
        .args(extra)
        .output()
        .expect("run earshot events");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from earshot events")
}

/// (width, height) of a PNG, decoded in full.
fn png_size(path: &Path) -> (u32, u32) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut r = dec.read_info().expect("PNG header");
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).expect("PNG data");
    (info.width, info.height)
}

/// RGB pixels of a PNG (8-bit RGB or RGBA), decoded in full.
fn png_pixels(path: &Path) -> Vec<[u8; 3]> {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut r = dec.read_info().expect("PNG header");
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).expect("PNG data");
    let step = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    buf[..info.buffer_size()]
        .chunks_exact(step)
        .map(|p| [p[0], p[1], p[2]])
        .collect()
}

/// `earshot score --spectrogram` draws the scores that decide, as the daemon's evidence does:
/// with the profile deciding on centroid and fused (learn's default), the picture has the
/// second scorer's line (magenta) as well as the first's (blue). It used to draw centroid and
/// k-NN only, so a fused profile's picture showed the centroid alone.
#[test]
fn score_pictures_draw_the_deciding_scores() {
    let f = fixture();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.profile.join("manifest.json")).unwrap())
            .unwrap();
    let deciding: Vec<&String> = manifest["thresholds"].as_object().unwrap().keys().collect();
    assert_eq!(
        deciding,
        ["centroid", "fused"],
        "the fixture's deciding scores"
    );
    let tmp = test_dir();
    let dir = tmp.path();
    let out = Command::new(EARSHOT)
        .args(["score", "--profile"])
        .arg(&f.profile)
        .arg("--spectrogram")
        .arg(dir.join("png"))
        .arg(&f.stream)
        .output()
        .expect("run earshot score");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pngs: Vec<PathBuf> = std::fs::read_dir(dir.join("png"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(pngs.len(), 1, "{pngs:?}");
    let px = png_pixels(&pngs[0]);
    let count = |c: [u8; 3]| px.iter().filter(|p| **p == c).count();
    // plotters' BLUE and MAGENTA: the first and second scorer's colours (the viridis
    // spectrogram has neither).
    let (blue, magenta) = (count([0, 0, 255]), count([255, 0, 255]));
    assert!(blue > 200, "centroid's line: {blue} blue pixels");
    assert!(magenta > 200, "fused's line: {magenta} magenta pixels");
}

/// Runs a fast replay of a 48 kHz stream with a bearing fault at ONSET to its end.
fn replay_fault(dir: &Path, extra: &str) -> (PathBuf, String) {
    let f = fixture();
    let cfg = press_config(dir, extra, &f.stream, false, false);
    let mut d = Daemon::start(&cfg, &["--exit-when-done"], &[]);
    let st = d.expect_exit(RUN_LIMIT);
    assert!(st.success(), "{}", d.log());
    (d.state_dir.clone(), d.log())
}

/// The clip holds the fault's onset where it should (pre-roll honoured), at the capture rate;
/// its energy in the bearing's band rises at that offset; the PNG decodes at its stated size;
/// `earshot events` lists it with its files.
#[test]
fn a_replayed_fault_leaves_a_clip_and_spectrogram() {
    let dir = test_dir();
    let (state, log) = replay_fault(dir.path(), "");
    let dirs = event_dirs(&state, "press-1");
    assert_eq!(dirs.len(), 1, "one event with evidence: {dirs:?}\n{log}");
    let ev_dir = &dirs[0];
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ev_dir.join("event.json")).unwrap()).unwrap();
    let r = hound::WavReader::open(ev_dir.join("clip.wav")).unwrap();
    let spec = r.spec();
    assert_eq!(
        spec.sample_rate, 48_000,
        "the capture rate, not the model's"
    );
    assert_eq!(spec.channels, 1);
    let samples: Vec<f32> = r
        .into_samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect();
    let secs = samples.len() as f64 / 48_000.0;
    assert!(
        (secs - meta["clip_seconds"].as_f64().unwrap()).abs() < 1e-3,
        "{secs} vs {meta}"
    );
    // Written after the event's end (closed by the end of the replay), so it has it.
    assert_eq!(meta["event"]["kind"], "ended", "{meta}");
    assert!(meta["event"]["end"]["stream_s"].is_number(), "{meta}");
    // Pre-roll: the clip starts PRE_ROLL before the event's estimated onset.
    let clip_start = meta["clip_start_s"].as_f64().unwrap();
    let onset_est = meta["event"]["start"]["stream_s"].as_f64().unwrap();
    assert!(
        (onset_est - clip_start - PRE_ROLL).abs() < 0.05,
        "clip from {clip_start}, estimated onset {onset_est}"
    );
    // The clip runs to the end of the stream (the event is open until the replay ends).
    assert!(
        clip_start + secs > 29.0,
        "clip ends at {}",
        clip_start + secs
    );
    // Independent check of what the clip holds: where the true onset is.
    let expected = ONSET - clip_start;
    let s = Spectrogram::compute(&samples, 48_000, 2000, 512);
    let band = s.band_db(1200.0, 8000.0);
    let dt = secs / band.len() as f64;
    let at = |t: f64| ((t / dt) as usize).min(band.len() - 1);
    let mean = |a: f64, b: f64| {
        let v = &band[at(a)..at(b)];
        v.iter().sum::<f64>() / v.len() as f64
    };
    let before = mean(0.0, expected - 0.3);
    let after = mean(expected + 0.3, (expected + 3.0).min(secs));
    assert!(
        after - before > 6.0,
        "band level {before:.1} dB before the onset, {after:.1} dB after"
    );
    // The rise: first time the band (smoothed over ~0.2 s) crosses halfway in dB.
    let mid = 0.5 * (before + after);
    let k = ((0.2 / dt) as usize).max(1);
    let rise = (0..band.len() - k)
        .find(|&i| band[i..i + k].iter().sum::<f64>() / k as f64 > mid)
        .map(|i| (i as f64 + k as f64 / 2.0) * dt)
        .expect("a rise");
    assert!(
        (rise - expected).abs() < 0.35,
        "energy rises at {rise:.2} s into the clip; the fault starts at {expected:.2} s"
    );
    assert_eq!(
        png_size(&ev_dir.join("spectrogram.png")),
        (
            earshot::evidence::spectrogram::WIDTH,
            earshot::evidence::spectrogram::HEIGHT
        )
    );
    // The CLI lists it, without the daemon, with its files.
    let listed = events_cli(&state, &["--monitor", "press-1"]);
    let arr = listed.as_array().unwrap();
    assert_eq!(arr.len(), 1, "{listed}");
    assert_eq!(arr[0]["event_id"], meta["event_id"]);
    assert!(Path::new(arr[0]["clip_path"].as_str().unwrap()).is_file());
    assert!(Path::new(arr[0]["image_path"].as_str().unwrap()).is_file());
    // The events file's event has the same id (one owner of event identity).
    let events = daemon::read_events(&state.join("events.jsonl"));
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "anomaly_started" && e["fingerprint"] == meta["event_id"]),
        "{events:?}"
    );
    let none = events_cli(&state, &["--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(none.as_array().unwrap().len(), 0);
}

/// Many events, small limits: the limit holds and the oldest go first. Then a free-space
/// threshold no filesystem meets: scoring and events go on, clips are counted as skipped.
#[test]
fn retention_keeps_the_newest_and_the_free_space_guard_skips_clips() {
    let f = fixture();
    let dir = test_dir();
    // Normal, fault, normal, fault, ...: one event per faulty stretch.
    let mut parts = Vec::new();
    for i in 0..4 {
        let p = motor_stream(
            dir.path(),
            &format!("part{i}.wav"),
            daemon::FAULT_DB,
            12.0,
            5.0,
            48_000,
        );
        parts.push(p);
    }
    let mut all: Vec<i16> = Vec::new();
    for p in &parts {
        let s = daemon::read_i16(p);
        // The faulty half of each part, then normal audio again from the fixture's stream.
        all.extend_from_slice(&s);
        all.extend_from_slice(&daemon::read_i16(&f.stream)[..48_000 * 10]);
    }
    let stream = dir.path().join("many.wav");
    daemon::write_i16(&stream, 48_000, &all);
    let cfg = press_config(dir.path(), "max_events = 2", &stream, false, false);
    let mut d = Daemon::start(&cfg, &["--exit-when-done"], &[]);
    assert!(d.expect_exit(RUN_LIMIT).success(), "{}", d.log());
    let events = daemon::read_events(&d.state_dir.join("events.jsonl"));
    let started: Vec<String> = events
        .iter()
        .filter(|e| e["kind"] == "anomaly_started")
        .map(|e| e["fingerprint"].as_str().unwrap().to_string())
        .collect();
    assert!(
        started.len() >= 3,
        "several events: {started:?}\n{}",
        d.log()
    );
    let kept: Vec<String> = events_cli(&d.state_dir, &[])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    let newest: Vec<String> = started[started.len() - 2..].to_vec();
    for id in &newest {
        assert!(kept.contains(id), "kept {kept:?}, newest {newest:?}");
    }
    assert_eq!(event_dirs(&d.state_dir, "press-1").len(), 2);

    // The guard: nothing is written, events still are, the skip is counted and logged.
    let dir2 = test_dir();
    let cfg = format!(
        "{}{}{}",
        daemon_header(dir2.path()),
        "[evidence]\nmin_free_megabytes = 1e12\n",
        replay_monitor("press-1", &f.profile, &f.short_faulty, true, false)
    );
    let mut d = Daemon::start(&write_config(dir2.path(), &cfg), &[], &[]);
    d.wait_event("anomaly_started", RUN_LIMIT);
    let addr = d.metrics_addr();
    let mut skipped = 0.0;
    d.wait_for("a skipped clip", RUN_LIMIT, |_| {
        let text = get(addr, "/metrics").1;
        skipped = daemon::metric_value(
            &String::from_utf8_lossy(&text),
            "earshot_evidence_clips_skipped_total",
            "press-1",
        )
        .unwrap_or(0.0);
        skipped >= 1.0
    });
    let (code, body) = get(addr, "/readyz");
    assert_eq!(code, 200);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        body["notes"]["evidence"]
            .as_str()
            .is_some_and(|n| n.contains("paused")),
        "{body}"
    );
    assert!(d.log().contains("low on disk space"), "{}", d.log());
    assert!(event_dirs(&d.state_dir, "press-1").is_empty());
    assert!(d.events().iter().any(|e| e["kind"] == "anomaly_started"));
}

/// A crash (SIGKILL) while a clip is being written leaves nothing half-written listed or served,
/// and the next start removes the leftovers.
#[test]
fn a_crash_while_writing_leaves_no_partial_evidence() {
    let f = fixture();
    let dir = test_dir();
    let cfg = press_config(dir.path(), "", &f.stream, false, false);
    let config = cfg;
    let mut d = Daemon::start(&config, &["--exit-when-done"], &[]);
    let mon = d.state_dir.join("evidence").join("press-1");
    // Kill the moment a temporary event directory appears (the writer is at work in it).
    let t0 = Instant::now();
    let mut caught = false;
    while t0.elapsed() < RUN_LIMIT {
        if let Ok(rd) = std::fs::read_dir(&mon)
            && rd
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        {
            d.signal(libc::SIGKILL);
            caught = true;
            break;
        }
        if d.try_status().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(caught, "never saw a clip being written:\n{}", d.log());
    d.wait_exit(Duration::from_secs(10));
    let state = d.state_dir.clone();
    drop(d);
    assert!(
        std::fs::read_dir(&mon)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-")),
        "the temp directory is there after the crash"
    );
    // The half-written directory is not listed (the daemon is not running). The kill came at
    // the first write seen: normally the clip so far, written at detection; if that one was
    // missed, the whole clip's write, and then the clip so far is there, complete.
    let listed = events_cli(&state, &[]);
    let listed = listed.as_array().unwrap();
    assert!(listed.len() <= 1, "{listed:?}");
    assert!(listed.iter().all(|e| e["partial"] == true), "{listed:?}");
    // Not served, and swept, by the next daemon.
    let cfg2 = press_config(dir.path(), "", &f.short_normal, true, true);
    let mut d2 = Daemon::start(&cfg2, &[], &[]);
    let addr = d2.metrics_addr();
    let (code, body) = get(addr, "/api/events");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["events"].as_array().unwrap().len(), listed.len(), "{v}");
    let leftovers: Vec<_> = std::fs::read_dir(&mon)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "swept at start: {leftovers:?}");
}

/// In real time: the clip so far is on disk and served while the event is still open (the
/// alert's link plays at once), holds the pre-roll and the onset, and survives a SIGKILL
/// before the event ends, listed as partial.
#[test]
fn the_clip_so_far_is_served_while_the_event_is_open_and_survives_a_kill() {
    let f = fixture();
    let dir = test_dir();
    let cfg = press_config(dir.path(), "", &f.stream, true, false);
    let mut d = Daemon::start(&cfg, &[], &[]);
    let addr = d.metrics_addr();
    let started = d.wait_event("anomaly_started", RUN_LIMIT);
    let state = d.state_dir.clone();
    let mut dirs = Vec::new();
    d.wait_for("the clip so far", Duration::from_secs(20), |_| {
        dirs = event_dirs(&state, "press-1");
        !dirs.is_empty()
    });
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dirs[0].join("event.json")).unwrap())
            .unwrap();
    assert_eq!(meta["event_id"], started["fingerprint"], "{meta}");
    assert_eq!(meta["partial"], true, "{meta}");
    assert_eq!(meta["event"]["kind"], "started", "{meta}");
    // Pre-roll before the estimated onset, and audio past the true onset.
    let clip_start = meta["clip_start_s"].as_f64().unwrap();
    let clip_end = clip_start + meta["clip_seconds"].as_f64().unwrap();
    let onset_est = meta["event"]["start"]["stream_s"].as_f64().unwrap();
    assert!(
        (onset_est - clip_start - PRE_ROLL).abs() < 0.05,
        "clip from {clip_start}, estimated onset {onset_est}"
    );
    assert!(clip_end > ONSET + 0.5, "clip ends at {clip_end}");
    // Served while the event is open (the replay runs until 30 s).
    let hex = dirs[0].file_name().unwrap().to_str().unwrap().to_owned();
    let (code, body) = get(addr, &format!("/events/press-1/{hex}/clip.wav"));
    assert_eq!(code, 200);
    assert_eq!(&body[..4], b"RIFF");
    let (code, page) = get(addr, &format!("/events/press-1/{hex}"));
    assert_eq!(code, 200);
    assert!(
        String::from_utf8_lossy(&page).contains("clip up to the detection"),
        "{}",
        String::from_utf8_lossy(&page)
    );
    // `feedback` will not mark an open event's clip so far normal (it changes nothing).
    let fingerprint = started["fingerprint"].as_str().unwrap();
    let out = feedback_normal(fingerprint, &dir.path().join("earshot.toml"), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("has not ended"), "{err}");
    assert!(
        !d.events().iter().any(|e| e["kind"] == "anomaly_ended"),
        "the event ended before the check; the replay is too short:\n{}",
        d.log()
    );
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(10));
    drop(d);
    // Left as it was: the onset is kept, marked partial.
    let listed = events_cli(&state, &["--monitor", "press-1"]);
    let arr = listed.as_array().unwrap();
    assert_eq!(arr.len(), 1, "{listed}");
    assert_eq!(arr[0]["partial"], true, "{listed}");
    assert!(Path::new(arr[0]["clip_path"].as_str().unwrap()).is_file());
    // The next start resolves the event left open; `feedback` then marks the clip so far
    // normal and says that is all there is (on a copy of the profile: the fixture's is shared).
    let cfg = press_config(dir.path(), "", &f.short_normal, true, true);
    let mut d2 = Daemon::start(&cfg, &[], &[]);
    d2.wait_log("earshot running", Duration::from_secs(60));
    drop(d2);
    let own = dir.path().join("own-profile");
    std::fs::create_dir_all(&own).unwrap();
    for e in std::fs::read_dir(&f.profile).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), own.join(e.file_name())).unwrap();
    }
    let out = feedback_normal(fingerprint, &cfg, &["--profile".as_ref(), own.as_os_str()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("only its clip so far"), "{said}");
}

/// `earshot feedback <fingerprint> --normal --config <config> <extra>`.
fn feedback_normal(
    fingerprint: &str,
    config: &Path,
    extra: &[&std::ffi::OsStr],
) -> std::process::Output {
    Command::new(EARSHOT)
        .args(["feedback", fingerprint, "--normal", "--config"])
        .arg(config)
        .args(extra)
        .output()
        .expect("run earshot feedback")
}

/// A minimal binary-safe HTTP GET: (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // Read until the body named by Content-Length is complete (Chromium's DevTools server
    // keeps the connection open), or to the end of the stream.
    let mut resp = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        if let Some(split) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if len.is_some_and(|n| resp.len() >= split + 4 + n) {
                break;
            }
        }
        let n = s.read(&mut buf).expect("read response");
        if n == 0 {
            break;
        }
        resp.extend_from_slice(&buf[..n]);
    }
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers");
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = resp[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
            rest = &rest[eol + 2 + n + 2..];
        }
        body = out;
    }
    (code, body)
}

/// Headless Chromium, killed (by PID) when dropped.
struct Chromium {
    child: std::process::Child,
    _profile: tempfile::TempDir,
    port: u16,
}

impl Chromium {
    fn start(url: &str) -> Option<Chromium> {
        let bin = ["chromium", "chromium-browser"].into_iter().find(|b| {
            Command::new("which")
                .arg(b)
                .output()
                .is_ok_and(|o| o.status.success())
        })?;
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1400,1800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start chromium");
        let port_file = profile.path().join("DevToolsActivePort");
        let t0 = Instant::now();
        let port = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
            {
                break p;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "chromium did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        Some(Chromium {
            child,
            _profile: profile,
            port,
        })
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DevTools session on the page target.
struct Cdp {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    id: u64,
}

impl Cdp {
    fn connect(port: u16) -> Cdp {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let t0 = Instant::now();
        let ws_url = loop {
            let (_, body) = get(addr, "/json/list");
            let list: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(u) = list.as_array().and_then(|a| {
                a.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(String::from))
            }) {
                break u;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "no page target");
            std::thread::sleep(Duration::from_millis(200));
        };
        let (ws, _) = tungstenite::connect(ws_url.as_str()).expect("DevTools websocket");
        Cdp { ws, id: 0 }
    }

    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.id += 1;
        let id = self.id;
        let msg = serde_json::json!({ "id": id, "method": method, "params": params });
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .expect("send");
        loop {
            let m = self.ws.read().expect("DevTools answer");
            if let tungstenite::Message::Text(t) = m {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    /// Evaluates `expr` (awaiting a promise) and returns its value.
    fn eval(&mut self, expr: &str) -> serde_json::Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({ "expression": expr, "awaitPromise": true, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }
}

/// The events page in headless Chromium: the replayed event is listed, its spectrogram
/// loads, its audio source is a WAV; a screenshot is saved as `target/evidence-page.png`.
#[test]
fn the_events_page_shows_the_event_in_chromium() {
    let dir = test_dir();
    let (state, _) = replay_fault(dir.path(), "");
    let f = fixture();
    // A daemon that serves the page (listening to normal audio now).
    let cfg = press_config(dir.path(), "", &f.short_normal, true, true);
    let mut d = Daemon::start(&cfg, &[], &[]);
    assert_eq!(d.state_dir, state);
    let addr = d.metrics_addr();
    let listed = events_cli(&state, &[]);
    let id = listed[0]["event_id"].as_str().unwrap().to_string();
    // The API and the files, over plain HTTP first.
    let (code, body) = get(addr, "/api/events?monitor=press-1");
    assert_eq!(code, 200);
    let api: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(api["events"][0]["event_id"], id.as_str());
    let clip_url = api["events"][0]["urls"]["clip"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, wav) = get(addr, &clip_url);
    assert_eq!(code, 200);
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(&wav[8..12], b"WAVE");
    assert_eq!(get(addr, "/events/press-1/0123/clip.wav").0, 404);
    assert_eq!(
        get(addr, "/events/press-1/..%2F..%2Fevents.jsonl/clip.wav").0,
        404
    );

    let (code, html) = get(addr, "/events");
    let html = String::from_utf8_lossy(&html).to_string();
    assert_eq!(code, 200, "{html}");
    assert!(
        html.contains(&id.replace('/', "&#x2f;")),
        "the page lists the event: {html}"
    );
    let url = format!("http://{addr}/events");
    let Some(chrome) = Chromium::start(&url) else {
        panic!("chromium is not installed: run scripts/setup.sh --tests");
    };
    let mut cdp = Cdp::connect(chrome.port);
    cdp.call("Page.navigate", serde_json::json!({ "url": url }));
    let t0 = Instant::now();
    loop {
        let ready = cdp.eval(&format!(
            "location.href === '{url}' && document.readyState === 'complete' && [...document.images].every(i => i.complete)"
        ));
        if ready == serde_json::Value::Bool(true) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "page did not load");
        std::thread::sleep(Duration::from_millis(200));
    }
    let listed_id = cdp.eval("document.querySelector('article.event')?.dataset.eventId ?? null");
    assert_eq!(listed_id, serde_json::Value::String(id.clone()));
    let width = cdp.eval("document.querySelector('img.spectrogram').naturalWidth");
    assert_eq!(
        width.as_u64(),
        Some(u64::from(earshot::evidence::spectrogram::WIDTH)),
        "the spectrogram loads in the browser"
    );
    let head = cdp.eval(
        "fetch(document.querySelector('audio.clip').src).then(r => r.arrayBuffer()).then(b => { \
           const u = new Uint8Array(b); const d = new DataView(b); \
           return String.fromCharCode(...u.slice(0, 4)) + String.fromCharCode(...u.slice(8, 12)) + ':' + d.getUint32(24, true); })",
    );
    assert_eq!(head, serde_json::Value::String("RIFFWAVE:48000".into()));
    let shot = cdp.call(
        "Page.captureScreenshot",
        serde_json::json!({ "format": "png", "captureBeyondViewport": true }),
    );
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/evidence-page.png");
    std::fs::write(&out, &bytes).unwrap();
    assert!(png_size(&out).0 > 0);
    drop(chrome);
    d.signal(libc::SIGTERM);
    d.wait_exit(Duration::from_secs(30));
}
