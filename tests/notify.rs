//! sd_notify against a real Unix datagram socket, the way systemd listens.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use earshot::daemon::notify::{Notifier, Progress, Watchdog};

/// Generous bound on waiting for a datagram that must come (never a speed assertion).
const MUST_ARRIVE: Duration = Duration::from_secs(20);

fn listener() -> (tempfile::TempDir, String, UnixDatagram) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    (dir, path.to_str().unwrap().to_string(), sock)
}

fn recv(sock: &UnixDatagram, timeout: Duration) -> Option<String> {
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8(buf[..n].to_vec()).unwrap()),
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            None
        }
        Err(e) => panic!("recv: {e}"),
    }
}

#[test]
fn unset_socket_is_a_silent_no_op() {
    let n = Notifier::from_vars(None, Some("1000000"), None).unwrap();
    assert!(!n.is_enabled());
    assert_eq!(n.watchdog_interval(), None);
    n.ready().unwrap();
    n.status("x").unwrap();
    n.watchdog().unwrap();
    let n = Notifier::from_vars(Some(""), None, None).unwrap();
    assert!(!n.is_enabled());
}

#[test]
fn sends_ready_status_stopping_reloading_to_a_path_socket() {
    let (_dir, path, sock) = listener();
    let n = Notifier::from_vars(Some(&path), None, None).unwrap();
    assert!(n.is_enabled());
    n.ready().unwrap();
    assert_eq!(recv(&sock, MUST_ARRIVE).unwrap(), "READY=1");
    n.status("2 monitors running\nall good").unwrap();
    assert_eq!(
        recv(&sock, MUST_ARRIVE).unwrap(),
        "STATUS=2 monitors running all good"
    );
    n.reloading().unwrap();
    let msg = recv(&sock, MUST_ARRIVE).unwrap();
    let mut lines = msg.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"));
    let usec: u64 = lines
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC line")
        .parse()
        .unwrap();
    assert!(usec > 0);
    n.stopping().unwrap();
    assert_eq!(recv(&sock, MUST_ARRIVE).unwrap(), "STOPPING=1");
}

#[test]
fn sends_to_an_abstract_socket() {
    let name = format!("earshot-test-notify-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    let n = Notifier::from_vars(Some(&format!("@{name}")), None, None).unwrap();
    n.ready().unwrap();
    assert_eq!(recv(&sock, MUST_ARRIVE).unwrap(), "READY=1");
}

#[test]
fn watchdog_interval_respects_usec_and_pid() {
    let (_dir, path, _sock) = listener();
    let me = std::process::id().to_string();
    let n = Notifier::from_vars(Some(&path), Some("30000000"), Some(&me)).unwrap();
    assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(30)));
    let n = Notifier::from_vars(Some(&path), Some("30000000"), None).unwrap();
    assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(30)));
    // Meant for another process (we inherited the environment): no watchdog for us.
    let other = (std::process::id() + 1).to_string();
    let n = Notifier::from_vars(Some(&path), Some("30000000"), Some(&other)).unwrap();
    assert_eq!(n.watchdog_interval(), None);
    let n = Notifier::from_vars(Some(&path), Some("soon"), None).unwrap();
    assert_eq!(n.watchdog_interval(), None);
    assert!(Watchdog::start(Arc::new(n), Progress::new()).is_none());
}

#[test]
fn unsupported_address_is_a_clear_error() {
    let e = Notifier::from_vars(Some("vsock:2:1234"), None, None).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("NOTIFY_SOCKET"), "{msg}");
    assert!(msg.contains("vsock:2:1234"), "{msg}");
}

#[test]
fn send_to_a_missing_socket_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.sock");
    let n = Notifier::from_vars(Some(path.to_str().unwrap()), None, None).unwrap();
    let msg = n.ready().unwrap_err().to_string();
    assert!(
        msg.contains("gone.sock") && msg.contains("READY=1"),
        "{msg}"
    );
}

#[test]
fn watchdog_pings_only_while_progressing() {
    let (_dir, path, sock) = listener();
    // 100 ms interval -> pings checked every 50 ms.
    let n = Arc::new(Notifier::from_vars(Some(&path), Some("100000"), None).unwrap());
    let progress = Progress::new();
    let wd = Watchdog::start(n, progress.clone()).expect("watchdog configured");

    // A pipeline scoring windows: pings keep coming.
    let ticking = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let ticker = {
        let (p, t) = (progress.clone(), ticking.clone());
        std::thread::spawn(move || {
            while t.load(std::sync::atomic::Ordering::Relaxed) {
                p.tick();
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    for _ in 0..3 {
        assert_eq!(recv(&sock, MUST_ARRIVE).as_deref(), Some("WATCHDOG=1"));
    }

    // The pipeline stalls: after at most one in-flight ping, silence.
    ticking.store(false, std::sync::atomic::Ordering::Relaxed);
    ticker.join().unwrap();
    let quiet = Duration::from_secs(1); // 20 check periods
    while recv(&sock, quiet).is_some() {}
    assert_eq!(
        recv(&sock, quiet),
        None,
        "a stalled pipeline must not be pinged for"
    );

    // Progress resumes: pings resume.
    progress.tick();
    assert_eq!(recv(&sock, MUST_ARRIVE).as_deref(), Some("WATCHDOG=1"));
    wd.stop();
    progress.tick();
    assert_eq!(recv(&sock, quiet), None, "no pings after stop");
}

#[test]
fn one_stalled_monitor_withholds_pings() {
    let (_dir, path, sock) = listener();
    let n = Arc::new(Notifier::from_vars(Some(&path), Some("100000"), None).unwrap());
    let (a, b) = (Progress::new(), Progress::new());
    let _wd = Watchdog::start_all(n, vec![a.clone(), b.clone()]).unwrap();
    let quiet = Duration::from_secs(1);
    // Only monitor `a` progresses, for 20+ check periods: no ping at all.
    for _ in 0..200 {
        a.tick();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        recv(&sock, quiet),
        None,
        "pinged although monitor b is stalled"
    );
    // `b` catches up: the next check pings.
    b.tick();
    a.tick();
    assert_eq!(recv(&sock, MUST_ARRIVE).as_deref(), Some("WATCHDOG=1"));
}

#[test]
fn an_empty_progress_set_never_pings() {
    let (_dir, path, sock) = listener();
    let n = Arc::new(Notifier::from_vars(Some(&path), Some("100000"), None).unwrap());
    let _wd = Watchdog::start_all(n, Vec::new()).unwrap();
    assert_eq!(recv(&sock, Duration::from_secs(1)), None);
}

/// The real environment path: a child process with NOTIFY_SOCKET set by us, as systemd would.
#[test]
fn from_env_in_a_child_process() {
    let (_dir, path, sock) = listener();
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "child_helper_notifies_from_env",
            "--ignored",
            "--nocapture",
        ])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "4000000")
        .env_remove("WATCHDOG_PID")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(recv(&sock, MUST_ARRIVE).unwrap(), "READY=1");
    assert_eq!(recv(&sock, MUST_ARRIVE).unwrap(), "STATUS=watchdog 4s");
}

/// Helper for `from_env_in_a_child_process`; does nothing unless run by it.
#[test]
#[ignore = "helper: run by from_env_in_a_child_process with NOTIFY_SOCKET set"]
fn child_helper_notifies_from_env() {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let n = Notifier::from_env().unwrap();
    assert!(n.is_enabled());
    let wd = n.watchdog_interval().unwrap();
    n.ready().unwrap();
    n.status(&format!("watchdog {}s", wd.as_secs())).unwrap();
}
