//! Lifecycle under slow parts and hostile clients, with the real binary: a start and a reload
//! whose Azure schema check takes longer than the watchdog interval (the watchdog stays fed,
//! READY comes within `daemon.start_timeout_seconds`, the slow monitor joins late), a monitor
//! whose thread outlives its stop timeout (it cannot touch its successor), a reload that
//! changes `[metrics]`/`[events]` (reported as needing a restart), and 1100 idle HTTP clients
//! against a daemon limited to 1024 file descriptors (/metrics keeps answering).

#[path = "common/azure_emulator.rs"]
mod azure_emulator;
#[path = "common/daemon.rs"]
mod daemon;

use azure_emulator::{ADMIN_KEY, Emulator, Fault, Op, QUERY_KEY};
use daemon::{
    Daemon, daemon_header, fixture, http_request, replay_monitor, test_dir, write_config,
};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// systemd's notification socket, recording each datagram with its arrival time.
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

    /// Arrival times of datagrams with a line starting with `prefix`.
    fn times(&self, prefix: &str) -> Vec<Instant> {
        self.messages()
            .into_iter()
            .filter(|(_, m)| m.lines().any(|l| l.starts_with(prefix)))
            .map(|(t, _)| t)
            .collect()
    }

    fn wait(&self, d: &mut Daemon, prefix: &str, after: Instant, limit: Duration) -> Instant {
        let mut found = None;
        d.wait_for(&format!("{prefix} on NOTIFY_SOCKET"), limit, |_| {
            found = self.times(prefix).into_iter().find(|t| *t >= after);
            found.is_some()
        });
        found.expect("checked by wait_for")
    }

    /// The longest gap between WATCHDOG=1 pings (and the span ends) within [from, to].
    fn longest_watchdog_gap(&self, from: Instant, to: Instant) -> Duration {
        let mut prev = from;
        let mut worst = Duration::ZERO;
        for t in self
            .times("WATCHDOG=1")
            .into_iter()
            .filter(|t| *t >= from && *t <= to)
        {
            worst = worst.max(t - prev);
            prev = t;
        }
        worst.max(to.saturating_duration_since(prev))
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

fn healthz(addr: SocketAddr) -> serde_json::Value {
    let (_, body) = http_request(addr, "/healthz");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/healthz {body:?}: {e}"))
}

fn state_of(h: &serde_json::Value, monitor: &str) -> String {
    h["monitors"][monitor]["state"]
        .as_str()
        .unwrap_or("absent")
        .to_string()
}

/// An Azure monitor (index in the emulator) replaying `file` in real time, in a loop.
fn azure_monitor(name: &str, profile: &Path, file: &Path, endpoint: &str, extra: &str) -> String {
    format!(
        "[[monitor]]\nname = \"{name}\"\nprofile = \"{}\"\n\
         source = {{ file = \"{}\", realtime = true, loop = true }}\n{extra}\
         index = {{ kind = \"azure\", endpoint = \"{endpoint}\", index_name = \"motor-normals\", \
         api_key_env = \"EARSHOT_TEST_AZURE_KEY\", exhaustive = true, timeout_ms = 8000 }}\n",
        profile.display(),
        file.display()
    )
}

/// Uploads the fixture profile to the emulator (as `earshot index` does for a user).
fn upload(dir: &Path, endpoint: &str) {
    let f = fixture();
    let cfg = dir.join("upload.toml");
    std::fs::write(
        &cfg,
        format!(
            "[metrics]\nenabled = false\n{}",
            azure_monitor("slow", &f.profile, &f.short_normal, endpoint, "")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(daemon::EARSHOT)
        .args(["index", "--profile"])
        .arg(&f.profile)
        .arg("--config")
        .arg(&cfg)
        .args(["--monitor", "slow"])
        .env("EARSHOT_TEST_AZURE_KEY", ADMIN_KEY)
        .output()
        .expect("run earshot index");
    assert!(
        out.status.success(),
        "earshot index failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Start and reload while the Azure schema check of one monitor takes 8 s (beyond the 3 s
/// watchdog interval and the 3 s start bound): the other monitor starts in parallel, READY=1
/// comes within the bound, WATCHDOG=1 keeps flowing through start and reload, and the slow
/// monitor joins once its index answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_index_at_start_and_reload_keeps_the_watchdog_fed_and_ready_bounded() {
    let emu = Emulator::start().await;
    let endpoint = emu.endpoint();
    let tmp = test_dir();
    let dir = tmp.path().to_owned();
    let d = dir.clone();
    let ep = endpoint.clone();
    tokio::task::spawn_blocking(move || upload(&d, &ep))
        .await
        .unwrap();
    let f = fixture();
    let cfg = |extra: &str| {
        format!(
            "{}{}{}",
            daemon_header(&dir).replace("[metrics]\n", "start_timeout_seconds = 3\n[metrics]\n"),
            replay_monitor("fast", &f.profile, &f.short_normal, true, true),
            azure_monitor("slow", &f.profile, &f.short_normal, &endpoint, extra)
        )
    };
    let config = write_config(&dir, &cfg(""));
    let schema_delay = Duration::from_secs(8);
    emu.push_fault(Fault::Delay {
        op: Op::GetIndex,
        delay: schema_delay,
        times: 1,
    });
    let sock = NotifySocket::bind(&dir);
    let mut d = Daemon::start(
        &config,
        &[],
        &[
            ("NOTIFY_SOCKET", &sock.path),
            ("WATCHDOG_USEC", "3000000"),
            // An admin key: the schema check reads the index definition (GET), the request
            // the emulator delays. (A query key would check with a search instead.)
            ("EARSHOT_TEST_AZURE_KEY", ADMIN_KEY),
        ],
    );
    let t0 = d.started;
    let ready = sock.wait(&mut d, "READY=1", t0, Duration::from_secs(60));
    let addr = d.metrics_addr();
    // READY before the slow schema check could have finished: the fast monitor did not wait.
    let h = healthz(addr);
    assert_eq!(
        state_of(&h, "slow"),
        "down",
        "slow monitor should be 'still starting' at READY: {h}\n{}",
        d.log()
    );
    assert!(
        h["monitors"]["slow"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("still starting"),
        "{h}"
    );
    assert!(
        !sock.times("EXTEND_TIMEOUT_USEC=").is_empty(),
        "no EXTEND_TIMEOUT_USEC at start: {:?}",
        sock.messages()
    );
    // The slow monitor joins once its index answers.
    d.wait_log("monitor started late", Duration::from_secs(60));
    d.wait_for("slow monitor running", Duration::from_secs(30), |_| {
        state_of(&healthz(addr), "slow") == "running"
    });
    let joined = Instant::now();
    let gap = sock.longest_watchdog_gap(t0 + Duration::from_millis(500), joined);
    assert!(
        gap < Duration::from_secs(3),
        "WATCHDOG=1 gap of {gap:?} (> WatchdogSec 3 s) between start and the late join (ready after {:?})\n{}",
        ready - t0,
        d.log()
    );

    // Reload changing the slow monitor while its schema check is slow again.
    emu.push_fault(Fault::Delay {
        op: Op::GetIndex,
        delay: schema_delay,
        times: 1,
    });
    std::fs::write(&config, cfg("decide = { trigger_n = 2, trigger_m = 3 }\n")).unwrap();
    let before = Instant::now();
    d.signal(libc::SIGHUP);
    let reloading = sock.wait(&mut d, "RELOADING=1", before, Duration::from_secs(30));
    let done = sock.wait(&mut d, "READY=1", reloading, Duration::from_secs(30));
    assert!(
        d.log().contains("configuration reloaded"),
        "reload did not finish:\n{}",
        d.log()
    );
    d.wait_for(
        "slow monitor running after reload",
        Duration::from_secs(60),
        |d| {
            d.log().matches("monitor started late").count() >= 2
                && state_of(&healthz(addr), "slow") == "running"
        },
    );
    let after = Instant::now();
    let gap = sock.longest_watchdog_gap(reloading, after);
    assert!(
        gap < Duration::from_secs(3),
        "WATCHDOG=1 gap of {gap:?} (> WatchdogSec 3 s) during a reload that took {:?} (+ late join)\n{}",
        done - reloading,
        d.log()
    );
    assert_eq!(state_of(&healthz(addr), "fast"), "running");
    d.signal(libc::SIGTERM);
    d.expect_exit(Duration::from_secs(20));
}

/// A monitor whose embed thread is stuck in an index query (5 s) when a reload replaces it:
/// its stop times out, its successor starts, and when the old thread wakes up it must not
/// overwrite the successor's health ("stopped") nor emit a stale shutdown event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_stuck_past_its_stop_timeout_cannot_touch_its_successor() {
    let emu = Emulator::start().await;
    let endpoint = emu.endpoint();
    let tmp = test_dir();
    let dir = tmp.path().to_owned();
    let d = dir.clone();
    let ep = endpoint.clone();
    tokio::task::spawn_blocking(move || upload(&d, &ep))
        .await
        .unwrap();
    let f = fixture();
    let cfg = |extra: &str| {
        format!(
            "{}{}",
            daemon_header(&dir),
            azure_monitor("slow", &f.profile, &f.short_faulty, &endpoint, extra)
        )
    };
    let config = write_config(&dir, &cfg(""));
    let mut d = Daemon::start(&config, &[], &[("EARSHOT_TEST_AZURE_KEY", QUERY_KEY)]);
    let addr = d.metrics_addr();
    // An open event: the faulty part of the clip.
    d.wait_event("anomaly_started", Duration::from_secs(90));
    // From now on every query hangs 5 s (below the 8 s client timeout).
    emu.push_fault(Fault::Delay {
        op: Op::Search,
        delay: Duration::from_secs(5),
        times: 1000,
    });
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::write(&config, cfg("hop_seconds = 0.75\n")).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("did not stop in time", Duration::from_secs(30));
    d.wait_log("configuration reloaded", Duration::from_secs(30));
    emu.clear_faults();
    let reloaded_events = d.events().len();
    // Let the old thread wake up (its query returns within 5 s) and do whatever it would.
    std::thread::sleep(Duration::from_secs(8));
    let h = healthz(addr);
    assert_ne!(
        state_of(&h, "slow"),
        "stopped",
        "the old instance overwrote its successor's health: {h}\n{}",
        d.log()
    );
    let stale: Vec<serde_json::Value> = d
        .events()
        .into_iter()
        .skip(reloaded_events)
        .filter(|e| e["kind"] == "anomaly_resolved" && e.to_string().contains("shutdown"))
        .collect();
    assert!(
        stale.is_empty(),
        "the old instance emitted a shutdown event after its successor started: {stale:?}\n{}",
        d.log()
    );
    d.signal(libc::SIGTERM);
    d.expect_exit(Duration::from_secs(30));
}

/// A reload that changes `[metrics]` and `[events]` keeps the running values and says that
/// they need a restart (metric, /healthz); reverting the file clears it.
#[test]
fn reload_changing_metrics_and_events_reports_restart_required() {
    let f = fixture();
    let tmp = test_dir();
    let dir = tmp.path();
    let base = format!(
        "{}{}",
        daemon_header(dir),
        replay_monitor("m", &f.profile, &f.short_normal, true, true)
    );
    let config = write_config(dir, &base);
    let mut d = Daemon::start(&config, &[], &[]);
    let addr = d.metrics_addr();
    d.wait_windows_above("m", 1.0, Duration::from_secs(60));
    let required = |d: &mut Daemon, section: &str| -> f64 {
        let text = d.scrape();
        let needle = format!("earshot_config_restart_required{{section=\"{section}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {needle} in\n{text}"))
    };
    assert_eq!(required(&mut d, "metrics"), 0.0);
    let changed = base.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"")
        + "[events]\nkeep = 2\n";
    std::fs::write(&config, changed).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("only a restart applies it", Duration::from_secs(30));
    d.wait_log("configuration reloaded", Duration::from_secs(30));
    // Still served on the running address.
    assert_eq!(required(&mut d, "metrics"), 1.0);
    assert_eq!(required(&mut d, "events"), 1.0);
    assert_eq!(required(&mut d, "state_dir"), 0.0);
    let h = healthz(addr);
    let listed: Vec<&str> = h["restart_required"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(listed, ["events", "metrics"], "{h}");
    assert_eq!(h["status"], "ok", "a pending restart is not an outage: {h}");
    // Reverted: nothing to restart for.
    std::fs::write(&config, &base).unwrap();
    let n = d.log().matches("configuration reloaded").count();
    d.signal(libc::SIGHUP);
    d.wait_for("second reload", Duration::from_secs(30), |d| {
        d.log().matches("configuration reloaded").count() > n
    });
    assert_eq!(required(&mut d, "metrics"), 0.0);
    assert_eq!(required(&mut d, "events"), 0.0);
    assert!(healthz(addr).get("restart_required").is_none());
    d.signal(libc::SIGTERM);
    d.expect_exit(Duration::from_secs(20));
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// 1100 clients connect to /metrics and send nothing, against a daemon limited to 1024 file
/// descriptors (the default soft limit): /metrics still answers a scraper, and the daemon holds
/// a bounded number of descriptors (idle connections are evicted, oldest first).
#[test]
fn metrics_answers_with_1100_idle_connections_under_1024_fds() {
    let f = fixture();
    let tmp = test_dir();
    let dir = tmp.path();
    let config = write_config(
        dir,
        &format!(
            "{}{}",
            daemon_header(dir),
            replay_monitor("m", &f.profile, &f.short_normal, true, true)
        ),
    );
    let mut d = Daemon::start(&config, &[], &[]);
    let addr = d.metrics_addr();
    let pid = d.pid();
    let lim = libc::rlimit {
        rlim_cur: 1024,
        rlim_max: 1024,
    };
    // SAFETY: prlimit on our own child with a valid rlimit; no memory is shared.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &lim,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    // This test process needs descriptors for its 1100 clients.
    let mut mine = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut mine);
        if mine.rlim_cur < 4096 && mine.rlim_max >= 4096 {
            mine.rlim_cur = 4096;
            libc::setrlimit(libc::RLIMIT_NOFILE, &mine);
        }
    }
    assert!(
        mine.rlim_cur >= 2048,
        "the test needs 2048 descriptors (has {})",
        mine.rlim_cur
    );
    let mut idle = Vec::new();
    for _ in 0..1100 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            idle.push(s);
        }
    }
    assert!(idle.len() >= 1000, "only {} clients connected", idle.len());
    // Give the server time to accept them all (and run out of descriptors if it keeps them).
    std::thread::sleep(Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, body) = loop {
        let got = std::panic::catch_unwind(|| http_request(addr, "/metrics"));
        match got {
            Ok(r) => break r,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(500)),
            Err(_) => panic!(
                "/metrics does not answer with 1100 idle clients ({} fds open)\n{}",
                open_fds(pid),
                d.log()
            ),
        }
    };
    assert_eq!(status, 200);
    assert!(body.contains("earshot_uptime_seconds"), "{body}");
    let fds = open_fds(pid);
    assert!(
        fds < 600,
        "the daemon holds {fds} descriptors with idle clients (connection cap not applied)"
    );
    // The oldest idle clients were closed by the server.
    let mut first = idle.remove(0);
    first
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut buf = [0u8; 16];
    let n = first.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the oldest idle connection is still open");
    drop(idle);
    // Still healthy and answering afterwards.
    assert_eq!(http_request(addr, "/readyz").0, 200);
    d.signal(libc::SIGTERM);
    d.expect_exit(Duration::from_secs(20));
}

/// SIGTERM with the shortest hop allowed (10 ms: a window every 10 ms, far more than inference
/// keeps up with) still closes the open event ("shutdown") and exits promptly: queued windows
/// beyond a short drain are left unscored rather than holding the stop past its timeout.
#[test]
fn sigterm_with_a_very_short_hop_closes_the_open_event() {
    let f = fixture();
    let tmp = test_dir();
    let dir = tmp.path();
    let monitor = replay_monitor("faulty", &f.profile, &f.short_faulty, true, true)
        .replace("[[monitor]]\n", "[[monitor]]\nhop_seconds = 0.01\n");
    let config = write_config(dir, &format!("{}{monitor}", daemon_header(dir)));
    let mut d = Daemon::start(&config, &[], &[]);
    let started = d.wait_event("anomaly_started", Duration::from_secs(90));
    let t = Instant::now();
    d.signal(libc::SIGTERM);
    let st = d.expect_exit(Duration::from_secs(20));
    let took = t.elapsed();
    assert!(st.success(), "{st}; log:\n{}", d.log());
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM to exit took {took:?}\n{}",
        d.log()
    );
    let events = d.events();
    let last = events.last().expect("events");
    assert_eq!(last["kind"], "anomaly_ended", "{events:#?}\n{}", d.log());
    assert_eq!(last["event"]["reason"], "shutdown");
    assert_eq!(last["event"]["event_id"], started["event"]["event_id"]);
}
