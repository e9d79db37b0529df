//! Talking to systemd (sd_notify) without linking libsystemd.
//!
//! The protocol is one datagram per message on the Unix socket named by `NOTIFY_SOCKET`
//! (a path, or `@name` for an abstract socket), carrying newline-separated `KEY=VALUE` lines.
//! Implementing it directly keeps the binary free of a C dependency and lets tests use a plain
//! datagram socket in a temp directory. When `NOTIFY_SOCKET` is unset (run by hand, in a
//! container, in tests) every call is a no-op, so callers never need to ask.
//!
//! The [`Watchdog`] sends `WATCHDOG=1` only while the pipeline proves it is alive by calling
//! [`Progress::tick`]: a pipeline that hangs stops the pings and systemd restarts the service,
//! which a timer that pings unconditionally would never achieve.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Failures to reach systemd's notification socket.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(
        "NOTIFY_SOCKET={0:?} is not a socket path or @abstract name; earshot supports only Unix sockets (unset it to run without systemd notification)"
    )]
    UnsupportedAddress(String),
    #[error("NOTIFY_SOCKET={path:?}: cannot address the socket: {source}")]
    Address {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create a datagram socket for sd_notify: {0}")]
    Socket(std::io::Error),
    #[error("sending {what:?} to systemd on NOTIFY_SOCKET={path:?} failed: {source}")]
    Send {
        what: String,
        path: String,
        source: std::io::Error,
    },
}

struct Target {
    sock: UnixDatagram,
    addr: SocketAddr,
    display: String,
}

/// A handle to systemd's notification socket (or a no-op when there is none).
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("socket", &self.target.as_ref().map(|t| &t.display))
            .field("watchdog", &self.watchdog)
            .finish()
    }
}

impl Notifier {
    /// A notifier that does nothing (no systemd).
    pub fn disabled() -> Self {
        Self {
            target: None,
            watchdog: None,
        }
    }

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    pub fn from_env() -> Result<Self, NotifyError> {
        let var = |k| std::env::var(k).ok();
        Self::from_vars(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
        )
    }

    /// Like [`Notifier::from_env`] with the variables given explicitly (for tests and
    /// embedding). The watchdog is enabled only if `watchdog_usec` is a positive integer and
    /// `watchdog_pid`, when set, is this process: systemd sets it so that a child which
    /// inherited the environment does not ping on the parent's behalf.
    pub fn from_vars(
        notify_socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
    ) -> Result<Self, NotifyError> {
        let Some(path) = notify_socket.filter(|p| !p.is_empty()) else {
            return Ok(Self::disabled());
        };
        let addr = if let Some(name) = path.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes())
        } else if path.starts_with('/') {
            SocketAddr::from_pathname(path)
        } else {
            return Err(NotifyError::UnsupportedAddress(path.to_string()));
        }
        .map_err(|source| NotifyError::Address {
            path: path.to_string(),
            source,
        })?;
        let sock = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        let ours = watchdog_pid
            .map(|p| p.trim().parse::<u32>().ok() == Some(std::process::id()))
            .unwrap_or(true);
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(Duration::from_micros);
        Ok(Self {
            target: Some(Target {
                sock,
                addr,
                display: path.to_string(),
            }),
            watchdog,
        })
    }

    /// True when there is a socket to talk to.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog interval systemd expects pings within (`WatchdogSec=`), if any.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends raw `KEY=VALUE` lines. No-op without a socket.
    pub fn notify(&self, state: &str) -> Result<(), NotifyError> {
        let Some(t) = &self.target else {
            return Ok(());
        };
        t.sock
            .send_to_addr(state.as_bytes(), &t.addr)
            .map(|_| ())
            .map_err(|source| NotifyError::Send {
                what: state.to_string(),
                path: t.display.clone(),
                source,
            })
    }

    /// Startup finished: every monitor is running.
    pub fn ready(&self) -> Result<(), NotifyError> {
        self.notify("READY=1")
    }

    /// One-line status shown by `systemctl status`; newlines are flattened to spaces.
    pub fn status(&self, line: &str) -> Result<(), NotifyError> {
        let clean: String = line
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        self.notify(&format!("STATUS={clean}"))
    }

    /// Shutdown began.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.notify("STOPPING=1")
    }

    /// Config reload began; send [`Notifier::ready`] when it is done. Carries
    /// `MONOTONIC_USEC`, which systemd 253+ requires for `Type=notify-reload` and older
    /// versions ignore.
    pub fn reloading(&self) -> Result<(), NotifyError> {
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()))
    }

    /// Asks systemd to wait `d` longer (from now) for the current start-up, reload or stop
    /// (`EXTEND_TIMEOUT_USEC`); it never shortens a timeout. No-op on systemd < 236.
    pub fn extend_timeout(&self, d: Duration) -> Result<(), NotifyError> {
        self.notify(&format!("EXTEND_TIMEOUT_USEC={}", d.as_micros()))
    }

    /// One watchdog keep-alive. Prefer [`Watchdog`], which pings only on progress.
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.notify("WATCHDOG=1")
    }
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` against.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists on
    // Linux, and on the impossible failure the zeroed value is sent, which systemd ignores.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

/// Cloneable handle the pipeline uses to say "I scored a window".
#[derive(Clone, Debug, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records progress; cheap (one relaxed atomic add), call it per scored window.
    pub fn tick(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Progress count so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Background thread that pings `WATCHDOG=1` at half the interval, only after progress.
///
/// With several [`Progress`] handles (one per monitor) it pings only when *every* one advanced,
/// so one hung monitor is enough to withhold pings. "Progress" must mean "this monitor's loop is
/// alive", so a monitor waiting for a lost device should tick on each reconnect attempt too;
/// otherwise an unplugged microphone would get the whole service restarted by the watchdog.
///
/// Stops (without a final ping) when dropped or on [`Watchdog::stop`].
pub struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts pinging if systemd asked for a watchdog; `None` otherwise (nothing to do).
    pub fn start(notifier: Arc<Notifier>, progress: Progress) -> Option<Self> {
        Self::start_all(notifier, vec![progress])
    }

    /// Like [`Watchdog::start`], pinging only when every handle progressed.
    pub fn start_all(notifier: Arc<Notifier>, progress: Vec<Progress>) -> Option<Self> {
        let interval = notifier.watchdog_interval()?;
        Some(Self::with_period(notifier, progress, interval / 2))
    }

    /// Keeps systemd's watchdog fed while the service is busy on the signal loop (start-up, a
    /// reload stopping and starting monitors) rather than scoring: pings `WATCHDOG=1` every
    /// half interval, unconditionally, but only until `limit` has passed, so a start or reload
    /// that hangs beyond its own bound still gets the service restarted. Stop it (or drop it)
    /// when the work is done and hand over to a progress-checking [`Watchdog`].
    pub fn busy(notifier: Arc<Notifier>, limit: Duration) -> Option<Self> {
        let period = notifier.watchdog_interval()? / 2;
        let (tx, rx) = mpsc::channel::<()>();
        let until = std::time::Instant::now() + limit;
        let thread = std::thread::Builder::new()
            .name("earshot-watchdog-busy".into())
            .spawn(move || {
                while std::time::Instant::now() < until {
                    if let Err(e) = notifier.watchdog() {
                        tracing::warn!(error = %e, "watchdog ping failed");
                    }
                    match rx.recv_timeout(period) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
                tracing::warn!(
                    limit_s = limit.as_secs_f64(),
                    "start-up or reload still busy past its bound; withholding WATCHDOG=1"
                );
            });
        match thread {
            Ok(handle) => Some(Self {
                stop: Some(tx),
                thread: Some(handle),
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the watchdog thread");
                None
            }
        }
    }

    /// Starts a ticker with an explicit period (tests and custom policies).
    pub fn with_period(notifier: Arc<Notifier>, progress: Vec<Progress>, period: Duration) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("earshot-watchdog".into())
            .spawn(move || {
                let counts = || progress.iter().map(Progress::count).collect::<Vec<_>>();
                let mut seen = counts();
                let mut stalled = false;
                loop {
                    match rx.recv_timeout(period) {
                        Err(RecvTimeoutError::Timeout) => {}
                        // Stop requested or the handle was dropped.
                        _ => return,
                    }
                    let now = counts();
                    // Every handle must have advanced; one that did not holds the ping back
                    // (and `seen` keeps the others' old counts, so they stay "advanced").
                    // An empty set never pings: nothing proves the service is alive.
                    if !now.is_empty() && now.iter().zip(&seen).all(|(n, s)| n != s) {
                        seen = now;
                        if stalled {
                            tracing::info!("pipeline progressing again; watchdog pings resumed");
                            stalled = false;
                        }
                        if let Err(e) = notifier.watchdog() {
                            tracing::warn!(error = %e, "watchdog ping failed");
                        }
                    } else if !stalled {
                        stalled = true;
                        tracing::warn!(
                            period_ms = period.as_millis() as u64,
                            "no window scored since the last watchdog check; withholding WATCHDOG=1 so systemd can restart a hung pipeline"
                        );
                    }
                }
            });
        match thread {
            Ok(handle) => Self {
                stop: Some(tx),
                thread: Some(handle),
            },
            Err(e) => {
                // Without the thread systemd will see no pings and restart us: say why.
                tracing::error!(error = %e, "cannot start the watchdog thread");
                Self {
                    stop: None,
                    thread: None,
                }
            }
        }
    }

    /// Stops the ticker and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shutdown();
    }
}
