//! `earshot run` as systemd sees it: sd_notify messages on a real Unix datagram socket
//! (READY, STATUS, WATCHDOG only while the pipeline progresses, RELOADING, STOPPING) and the
//! signals systemd sends (SIGTERM stops within 2 s and closes open events; SIGHUP reloads
//! without restarting unchanged monitors and refuses an invalid configuration).

#[path = "common/daemon.rs"]
mod daemon;

use daemon::{
    Daemon, daemon_header, fixture, learn_motor_profile, model_table, replay_monitor, test_dir,
    write_config,
};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A stand-in for systemd's notification socket: records every datagram with its arrival time.
struct NotifySocket {
    path: String,
    got: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    g.lock().unwrap().push((Instant::now(), msg));
                }
            }
        });
        NotifySocket {
            path: path.to_str().expect("utf-8 path").to_string(),
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn messages(&self) -> Vec<(Instant, String)> {
        self.got.lock().unwrap().clone()
    }

    /// Datagrams containing the line `line` (e.g. "WATCHDOG=1").
    fn count(&self, line: &str) -> usize {
        self.messages()
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l == line))
            .count()
    }

    fn first(&self, line_prefix: &str) -> Option<(Instant, String)> {
        self.messages()
            .into_iter()
            .find(|(_, m)| m.lines().any(|l| l.starts_with(line_prefix)))
    }

    fn wait(&self, d: &mut Daemon, line_prefix: &str, limit: Duration) -> (Instant, String) {
        let mut found = None;
        d.wait_for(&format!("{line_prefix} on NOTIFY_SOCKET"), limit, |_| {
            found = self.first(line_prefix);
            found.is_some()
        });
        found.expect("checked by wait_for")
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start_with_notify(config: &Path, sock: &NotifySocket) -> Daemon {
    Daemon::start(
        config,
        &[],
        &[("NOTIFY_SOCKET", &sock.path), ("WATCHDOG_USEC", "1000000")],
    )
}

#[test]
fn ready_status_and_watchdog_pings_only_while_audio_flows() {
    let fx = fixture();
    let dir = test_dir();
    let sock = NotifySocket::bind(dir.path());
    let cfg = format!(
        "{}{}",
        daemon_header(dir.path()),
        replay_monitor("paced", &fx.profile, &fx.short_faulty, true, false)
    );
    let mut d = start_with_notify(&write_config(dir.path(), &cfg), &sock);
    let (ready_at, _) = sock.wait(&mut d, "READY=1", Duration::from_secs(60));
    // The STATUS after READY (before it, start-up says what it is waiting for).
    sock.wait(&mut d, "STATUS=", Duration::from_secs(10));
    let status = sock
        .messages()
        .into_iter()
        .filter(|(t, m)| *t >= ready_at && m.starts_with("STATUS="))
        .map(|(_, m)| m)
        .next()
        .unwrap_or_default();
    assert!(
        status.contains("1 monitor(s) running (paced)"),
        "STATUS is a one-line summary: {status:?}"
    );

    // 8 s of audio paced in real time: pings while windows are scored.
    d.wait_log("source ended", Duration::from_secs(60));
    let pings_while_flowing = sock
        .messages()
        .iter()
        .filter(|(t, m)| *t >= ready_at && m == "WATCHDOG=1")
        .count();
    assert!(
        pings_while_flowing >= 4,
        "expected periodic WATCHDOG=1 (every 0.5 s with progress) during 8 s of audio, got \
         {pings_while_flowing}: {:?}\nlog:\n{}",
        sock.messages(),
        d.log()
    );

    // The replay is over: no more windows, so no more pings. The last windows may still be
    // scored (and pinged for) just after "source ended"; after that nothing may come.
    std::thread::sleep(Duration::from_millis(1500));
    let settled = sock.count("WATCHDOG=1");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        sock.count("WATCHDOG=1"),
        settled,
        "watchdog pings continued although the pipeline made no progress: {:?}",
        sock.messages()
    );
    assert!(
        d.try_status().is_none(),
        "the daemon keeps running without --exit-when-done"
    );
    assert!(
        d.log().contains("withholding WATCHDOG=1"),
        "the stall is logged:\n{}",
        d.log()
    );

    d.signal(libc::SIGTERM);
    let st = d.expect_exit(Duration::from_secs(10));
    assert!(st.success(), "{st}; log:\n{}", d.log());
    sock.wait(&mut d, "STOPPING=1", Duration::from_secs(2));
}

#[test]
fn sigterm_stops_within_2s_and_closes_the_open_anomaly() {
    let fx = fixture();
    let dir = test_dir();
    let sock = NotifySocket::bind(dir.path());
    // Fault from 3 s on, looped: the anomaly stays open (the 3 s of normal audio at each
    // restart are shorter than the 5 s release time).
    let cfg = format!(
        "{}{}",
        daemon_header(dir.path()),
        replay_monitor("faulty", &fx.profile, &fx.short_faulty, true, true)
    );
    let mut d = start_with_notify(&write_config(dir.path(), &cfg), &sock);
    let started = d.wait_event("anomaly_started", Duration::from_secs(60));
    // Let a few more windows into the event.
    let w = d.windows("faulty");
    d.wait_windows_above("faulty", w + 2.0, Duration::from_secs(20));
    assert!(
        d.events().iter().all(|e| e["kind"] != "anomaly_ended"),
        "the event is still open before SIGTERM: {:?}",
        d.events()
    );

    let t = Instant::now();
    d.signal(libc::SIGTERM);
    let st = d.expect_exit(Duration::from_secs(10));
    let took = t.elapsed();
    assert!(st.success(), "{st}; log:\n{}", d.log());
    assert!(
        took <= Duration::from_secs(2),
        "SIGTERM to exit took {took:?} (systemd's contract here: 2 s); log:\n{}",
        d.log()
    );
    sock.wait(&mut d, "STOPPING=1", Duration::from_secs(1));

    let events = d.events();
    let last = events.last().expect("events");
    assert_eq!(last["kind"], "anomaly_ended", "{events:#?}");
    assert_eq!(last["event"]["reason"], "shutdown");
    assert_eq!(last["event"]["event_id"], started["event"]["event_id"]);
    assert!(
        last["event"]["end"]["stream_s"].as_f64().expect("end")
            > started["event"]["start"]["stream_s"]
                .as_f64()
                .expect("start"),
        "{last}"
    );
}

/// The entry directories of the model cache.
fn cache_entries(cache: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(cache)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A reload that changes the model removes the saved optimised copy of the model it stopped
/// using (a start's removal is in tests/package_check.rs).
#[test]
fn sighup_with_another_model_removes_the_old_models_saved_copy() {
    let fx = fixture();
    let dir = test_dir();
    let text = format!(
        "{}{}",
        daemon_header(dir.path()),
        replay_monitor("steady", &fx.profile, &fx.short_normal, true, true)
    );
    let config = write_config(dir.path(), &text);
    let mut d = Daemon::start(&config, &[], &[]);
    d.wait_windows_above("steady", 1.0, Duration::from_secs(60));
    let cache = d.state_dir.join("model-cache");
    let before = cache_entries(&cache);
    assert_eq!(before.len(), 1, "{before:?}");
    assert!(
        before[0].starts_with("panns-mobilenetv1-seeded-"),
        "{before:?}"
    );
    // The same machine learned with the bundled aisfx-cnn9, and the service switched to it.
    let other = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/aisfx-cnn9");
    let learn_dir = dir.path().join("aisfx");
    std::fs::create_dir_all(&learn_dir).unwrap();
    let profile = learn_motor_profile(&learn_dir, &other, "");
    write_config(
        dir.path(),
        &format!(
            "{}{}{}",
            daemon_header(dir.path()),
            model_table(&other),
            replay_monitor("steady", &profile, &fx.short_normal, true, true)
        ),
    );
    d.signal(libc::SIGHUP);
    d.wait_log("configuration reloaded", Duration::from_secs(60));
    let w = d.wait_windows_above("steady", 0.0, Duration::from_secs(30));
    d.wait_windows_above("steady", w + 1.0, Duration::from_secs(30));
    let after = cache_entries(&cache);
    assert_eq!(after.len(), 1, "{after:?}\n{}", d.log());
    assert!(after[0].starts_with("aisfx-cnn9-"), "{after:?}");
    assert!(
        d.log().contains("removed an optimised model copy"),
        "{}",
        d.log()
    );
}

#[test]
fn sighup_keeps_unchanged_monitors_and_refuses_an_invalid_config() {
    let fx = fixture();
    let dir = test_dir();
    let sock = NotifySocket::bind(dir.path());
    let text = format!(
        "{}{}",
        daemon_header(dir.path()),
        replay_monitor("steady", &fx.profile, &fx.short_normal, true, true)
    );
    let config = write_config(dir.path(), &text);
    let mut d = start_with_notify(&config, &sock);
    sock.wait(&mut d, "READY=1", Duration::from_secs(60));
    let w0 = d.wait_windows_above("steady", 1.0, Duration::from_secs(30));
    let threads = (d.thread_ids("capture-steady"), d.thread_ids("embed-steady"));
    assert_eq!((threads.0.len(), threads.1.len()), (1, 1), "{threads:?}");

    // Same config again: the monitor keeps running, on the same threads.
    d.signal(libc::SIGHUP);
    d.wait_log("configuration reloaded", Duration::from_secs(20));
    sock.wait(&mut d, "RELOADING=1", Duration::from_secs(5));
    assert!(
        d.log().contains("unchanged monitors keep running"),
        "{}",
        d.log()
    );
    assert!(d.log().contains("steady"));
    assert_eq!(
        d.log().matches("monitor starting").count(),
        1,
        "an unchanged monitor must not restart:\n{}",
        d.log()
    );
    assert_eq!(
        (d.thread_ids("capture-steady"), d.thread_ids("embed-steady")),
        threads,
        "same pipeline threads after the reload"
    );
    let w1 = d.wait_windows_above("steady", w0 + 2.0, Duration::from_secs(30));

    // An invalid config: refused, the running monitor untouched.
    write_config(dir.path(), &format!("{text}bogus_key = 1\n"));
    d.signal(libc::SIGHUP);
    d.wait_log("reload refused", Duration::from_secs(20));
    let refusal = d
        .log()
        .lines()
        .find(|l| l.contains("reload refused"))
        .expect("found above")
        .to_string();
    assert!(
        refusal.contains("bogus_key"),
        "the refusal names the key: {refusal}"
    );
    d.wait_windows_above("steady", w1 + 2.0, Duration::from_secs(30));
    assert!(d.try_status().is_none(), "still running");
    assert_eq!(
        (d.thread_ids("capture-steady"), d.thread_ids("embed-steady")),
        threads
    );
    assert_eq!(d.log().matches("monitor starting").count(), 1);

    d.signal(libc::SIGTERM);
    let st = d.expect_exit(Duration::from_secs(10));
    assert!(st.success(), "{st}; log:\n{}", d.log());
}

#[test]
fn sighup_restarts_a_changed_monitor() {
    let fx = fixture();
    let dir = test_dir();
    let text = format!(
        "{}{}{}",
        daemon_header(dir.path()),
        replay_monitor("kept", &fx.profile, &fx.short_normal, true, true),
        replay_monitor("changed", &fx.profile, &fx.short_normal, true, true)
    );
    let config = write_config(dir.path(), &text);
    let mut d = Daemon::start(&config, &[], &[]);
    d.wait_windows_above("changed", 1.0, Duration::from_secs(60));
    let kept = d.thread_ids("embed-kept");
    let before = d.thread_ids("embed-changed");
    assert_eq!((kept.len(), before.len()), (1, 1));

    write_config(dir.path(), &format!("{text}hop_seconds = 0.25\n"));
    d.signal(libc::SIGHUP);
    d.wait_log("configuration reloaded", Duration::from_secs(30));
    assert_eq!(
        d.thread_ids("embed-kept"),
        kept,
        "the unchanged monitor keeps its thread"
    );
    let after = d.thread_ids("embed-changed");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before, "the changed monitor was restarted");
    let log = d.log();
    assert!(
        log.lines().any(|l| l.contains("monitor starting")
            && l.contains("changed")
            && l.contains("hop_s=0.25")),
        "{log}"
    );
    let w = d.windows("changed");
    d.wait_windows_above("changed", w + 2.0, Duration::from_secs(30));

    d.signal(libc::SIGTERM);
    let st = d.expect_exit(Duration::from_secs(10));
    assert!(st.success(), "{st}; log:\n{}", d.log());
}

/// A reload whose new settings for a monitor cannot work (here: hop longer than the
/// profile's window, which only the profile reveals) must not end that monitor: it keeps
/// running with its previous settings, and the log says why.
#[test]
fn sighup_with_unworkable_monitor_settings_keeps_the_running_monitor() {
    let fx = fixture();
    let dir = test_dir();
    let text = format!(
        "{}{}",
        daemon_header(dir.path()),
        replay_monitor("precious", &fx.profile, &fx.short_normal, true, true)
    );
    let config = write_config(dir.path(), &text);
    let mut d = Daemon::start(&config, &[], &[]);
    let w0 = d.wait_windows_above("precious", 1.0, Duration::from_secs(60));
    let threads = d.thread_ids("embed-precious");
    assert_eq!(threads.len(), 1);

    write_config(dir.path(), &format!("{text}hop_seconds = 2.0\n"));
    d.signal(libc::SIGHUP);
    d.wait_log("configuration reloaded", Duration::from_secs(30));
    let log = d.log();
    assert!(
        log.lines().any(|l| l.contains("precious")
            && l.contains("`hop_seconds`")
            && l.contains("keeps running with its previous settings")),
        "the refusal names the monitor and the key:\n{log}"
    );
    assert_eq!(d.thread_ids("embed-precious"), threads, "not restarted");
    d.wait_windows_above("precious", w0 + 3.0, Duration::from_secs(30));
    assert_eq!(d.metric("earshot_monitor_up", "precious"), Some(1.0));

    // Fixed settings are then applied by the next reload.
    write_config(dir.path(), &format!("{text}hop_seconds = 0.25\n"));
    d.signal(libc::SIGHUP);
    d.wait_for(
        "the monitor restarted with hop 0.25 s",
        Duration::from_secs(30),
        |d| {
            d.log()
                .lines()
                .any(|l| l.contains("monitor starting") && l.contains("hop_s=0.25"))
        },
    );
    let w = d.windows("precious");
    d.wait_windows_above("precious", w + 2.0, Duration::from_secs(30));

    d.signal(libc::SIGTERM);
    let st = d.expect_exit(Duration::from_secs(10));
    assert!(st.success(), "{st}; log:\n{}", d.log());
}

/// Monitors a reload stops while their machines are silent: nothing would ever end their
/// `no_signal` state (a removed monitor never runs again; a restarted one starts its level
/// gate afresh), so the reload resolves it, and a restarted monitor raises it again since
/// the silence goes on. An unchanged monitor keeps its state. (A webhook receiver would
/// otherwise keep those alerts open for good.)
#[test]
fn sighup_resolves_the_no_signal_state_of_the_monitors_it_stops() {
    let fx = fixture();
    let dir = test_dir();
    let silence = dir.path().join("silence.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&silence, spec).unwrap();
    for _ in 0..48_000 * 4 {
        w.write_sample(0i16).unwrap();
    }
    w.finalize().unwrap();
    let monitor = |name| replay_monitor(name, &fx.profile, &silence, true, true);
    let header = daemon_header(dir.path());
    let text = format!(
        "{header}{}{}{}",
        monitor("kept"),
        monitor("removed"),
        monitor("changed")
    );
    let config = write_config(dir.path(), &text);
    let mut d = Daemon::start(&config, &[], &[]);
    let of = |d: &Daemon, monitor: &str, kind: &str| {
        d.events()
            .into_iter()
            .filter(|e| e["kind"] == kind && e["labels"]["monitor"] == monitor)
            .collect::<Vec<_>>()
    };
    d.wait_for("every monitor in no_signal", Duration::from_secs(60), |d| {
        ["kept", "removed", "changed"]
            .iter()
            .all(|m| !of(d, m, "no_signal").is_empty())
    });

    write_config(
        dir.path(),
        &format!(
            "{header}{}{}hop_seconds = 0.5\n",
            monitor("kept"),
            monitor("changed")
        ),
    );
    d.signal(libc::SIGHUP);
    d.wait_log("configuration reloaded", Duration::from_secs(30));
    for m in ["removed", "changed"] {
        let back = of(&d, m, "signal_back");
        assert_eq!(back.len(), 1, "{m}: {:#?}", d.events());
        let fired = &of(&d, m, "no_signal")[0];
        assert_eq!(back[0]["fingerprint"], fired["fingerprint"]);
        assert_eq!(back[0]["startsAt"], fired["startsAt"]);
        let summary = back[0]["annotations"]["summary"].as_str().unwrap_or("");
        assert!(
            summary.contains("a reload stopped the monitor"),
            "{summary}"
        );
    }
    d.wait_for(
        "the restarted monitor's silence raised again",
        Duration::from_secs(30),
        |d| of(d, "changed", "no_signal").len() == 2,
    );
    assert!(
        of(&d, "kept", "signal_back").is_empty(),
        "the unchanged monitor is still silent: {:#?}",
        d.events()
    );

    d.signal(libc::SIGTERM);
    let st = d.expect_exit(Duration::from_secs(10));
    assert!(st.success(), "{st}; log:\n{}", d.log());
}
