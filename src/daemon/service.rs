//! `earshot run`: start every monitor, tell systemd, serve metrics, react to signals.
//!
//! Lifecycle: monitors start in parallel (a monitor that cannot start is logged with the key to
//! fix and reported down; the others run) -> READY=1 -> run until SIGTERM/SIGINT (stop within
//! 2 s, flushing events) ; SIGHUP re-reads the config: unchanged monitors keep running without
//! losing audio, changed ones restart, removed ones stop, new ones start; an invalid new
//! config is refused and the running one kept. The sound catalog (`[catalog]`) is read again
//! at every reload and handed to running monitors as well (`daemon::sounds`).
//!
//! Start-up and reload are bounded by `daemon.start_timeout_seconds`: loading a model or
//! checking an Azure index (with its retries) can take tens of seconds, and systemd kills a
//! service that does not report READY=1 within `TimeoutStartSec=` or stops pinging within
//! `WatchdogSec=`. So monitors start in parallel, the watchdog is fed while the signal loop is
//! busy (never beyond the bound), and a monitor still starting at the bound is reported down
//! ("still starting") and joins as soon as it is ready. A reload supersedes such a pending
//! start: its lease is retired so it can never publish over the monitor that replaces it.
//!
//! Sections a reload cannot apply (`[events]`, `[metrics]`, `[alerts]`, `daemon.state_dir`:
//! open files, a bound socket, the outbox) are compared with the running ones; a change is
//! logged and shown as `earshot_config_restart_required{section}` and in `/healthz`.

use super::monitor::{Monitor, MonitorError, Shared, device_settings};
use super::notify::{Notifier, Progress, Watchdog};
use crate::alert::delivery::Alerting;
use crate::alert::events::Sinks;
use crate::capture::{DeviceSource, SharedSource, Source};
use crate::config::{MonitorSettings, Settings};
use crate::metrics::{Health, Lease, Metrics, MetricsServer, MonitorStatus};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a stopping monitor may take to flush (its open event is closed within this).
const STOP_TIMEOUT: Duration = Duration::from_millis(1500);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("no `[[monitor]]` in {0}: add at least one (see config/earshot.toml)")]
    NoMonitors(String),
    #[error("no monitor could start (see the errors above)")]
    NothingRunning,
    #[error("state directory {path}: {source}; create it or set `daemon.state_dir`")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error(transparent)]
    Sink(#[from] crate::alert::events::SinkError),
    #[error(transparent)]
    Alerts(#[from] crate::alert::delivery::AlertError),
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub config: Option<PathBuf>,
    /// Exit once every monitor's source has ended (replays without loop).
    pub exit_when_done: bool,
}

/// Runs the service until a stop signal (or, with `exit_when_done`, the end of all replays).
pub async fn run(opts: RunOptions) -> Result<(), DaemonError> {
    let settings = Settings::load(opts.config.as_deref())?;
    if settings.monitors.is_empty() {
        return Err(DaemonError::NoMonitors(shown(opts.config.as_deref())));
    }
    let state_dir = settings.state_dir();
    std::fs::create_dir_all(&state_dir).map_err(|source| DaemonError::StateDir {
        path: state_dir.clone(),
        source,
    })?;
    let metrics = Arc::new(Metrics::new()?);
    let health = Health::new();
    // Anomaly clips and spectrograms, served by the events page on the metrics endpoint.
    let evidence = crate::evidence::Evidence::new(
        settings.evidence.clone(),
        &state_dir,
        metrics.registry(),
        health.clone(),
    )
    .map_err(crate::metrics::MetricsError::from)?;
    let page = crate::evidence::page::router(crate::evidence::page::PageState::new(
        evidence.clone(),
        metrics.clone(),
        health.clone(),
    ));
    let server = if settings.metrics.enabled {
        Some(
            MetricsServer::start_secured(&settings.metrics, metrics.clone(), health.clone(), page)
                .await?,
        )
    } else {
        None
    };
    let mut sinks = Sinks::standard(&state_dir, settings.events.clone(), Some(&metrics))?;
    // Alerts (webhooks, Alertmanager) go through a durable outbox; delivery runs on this runtime.
    let alerting = Alerting::start(&settings.alerts, &state_dir, metrics.registry())?;
    if let Some(a) = &alerting {
        sinks.add(Box::new(a.sink()), Some(metrics.sink("alerts")));
    }
    // Before any monitor can raise something new under the same fingerprint.
    sinks.resolve_left_open();
    prune_model_cache(&settings);
    tracing::info!(file = %state_dir.join(&settings.events.file_name).display(), "events are written here");
    let known = crate::daemon::sounds::KnownHandle::default();
    crate::daemon::sounds::reload(&known, &settings, &metrics);
    let shared = Shared {
        evidence: Some(evidence),
        known,
        metrics,
        health: health.clone(),
        sinks: Arc::new(Mutex::new(sinks)),
    };
    let notifier = Arc::new(Notifier::from_env().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "NOTIFY_SOCKET is unusable; not talking to systemd");
        Notifier::disabled()
    }));

    let limit = settings.daemon.start_timeout();
    let mut starter = Starter::new();
    let mut monitors = {
        // Start-up may take up to the bound: say so to systemd and keep its watchdog fed.
        let _ = notifier.extend_timeout(limit + Duration::from_secs(30));
        let _ = notifier.status(&format!(
            "starting {} monitor(s) (up to {:.0} s)",
            settings.monitors.len(),
            limit.as_secs_f64()
        ));
        let _busy = Watchdog::busy(notifier.clone(), limit + Duration::from_secs(10));
        start_all(&settings, &settings.monitors, &shared, &mut starter).await
    };
    if monitors.is_empty() && starter.pending.is_empty() {
        return Err(DaemonError::NothingRunning);
    }
    health.set_ready(true);
    let _ = notifier.ready();
    let _ = notifier.status(&status_line(&monitors, &settings));
    let mut watchdog = arm_watchdog(&notifier, &monitors, &starter, limit);
    tracing::info!(monitors = monitors.len(), "earshot running");

    let boot = settings.clone();
    let mut current = settings;
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted: stopping"); break; }
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            Some(arrival) = starter.rx.recv() => {
                if let Some(m) = starter.accept(arrival, &shared) {
                    tracing::info!(monitor = %m.name, "monitor started late (after `daemon.start_timeout_seconds`); now running");
                    monitors.insert(m.name.clone(), m);
                    if let Some(w) = watchdog.take() { w.stop(); }
                    watchdog = arm_watchdog(&notifier, &monitors, &starter, current.daemon.start_timeout());
                    let _ = notifier.status(&status_line(&monitors, &current));
                }
            }
            _ = hup.recv() => {
                let _ = notifier.reloading();
                match Settings::load(opts.config.as_deref()) {
                    Ok(new) => {
                        if let Some(w) = watchdog.take() { w.stop(); }
                        let limit = new.daemon.start_timeout();
                        let _ = notifier.extend_timeout(limit + STOP_TIMEOUT + Duration::from_secs(30));
                        let _ = notifier.status("reloading the configuration");
                        let busy = Watchdog::busy(notifier.clone(), limit + STOP_TIMEOUT + Duration::from_secs(10));
                        // Before the monitors: those that restart check their windows against it.
                        crate::daemon::sounds::reload(&shared.known, &new, &shared.metrics);
                        monitors = reload(&current, &new, &shared, monitors, &mut starter).await;
                        drop(busy);
                        watchdog = arm_watchdog(&notifier, &monitors, &starter, limit);
                        apply_restart_required(&boot, &new, &shared);
                        current = new;
                        tracing::info!(monitors = monitors.len(), "configuration reloaded");
                    }
                    Err(e) => tracing::error!(error = %e, "reload refused: the new configuration is invalid; keeping the running one"),
                }
                let _ = notifier.ready();
                let _ = notifier.status(&status_line(&monitors, &current));
            }
            _ = tick.tick() => {
                ticks += 1;
                if ticks.is_multiple_of(20) {
                    let _ = notifier.status(&status_line(&monitors, &current));
                }
                if opts.exit_when_done
                    && starter.pending.is_empty()
                    && monitors.values().all(Monitor::finished)
                {
                    tracing::info!("every source has ended: stopping");
                    break;
                }
            }
        }
    }
    let _ = notifier.stopping();
    if let Some(w) = watchdog {
        w.stop();
    }
    stop_all(monitors).await;
    for e in shared.sinks.lock().close() {
        tracing::error!(error = %e, "closing an event sink failed");
    }
    if let Some(a) = alerting {
        a.shutdown().await;
    }
    if let Some(s) = server {
        s.shutdown().await;
    }
    Ok(())
}

fn shown(p: Option<&Path>) -> String {
    p.map_or_else(|| "the configuration".into(), |p| p.display().to_string())
}

fn signal(
    kind: tokio::signal::unix::SignalKind,
) -> Result<tokio::signal::unix::Signal, DaemonError> {
    tokio::signal::unix::signal(kind).map_err(DaemonError::Signals)
}

fn progresses(monitors: &BTreeMap<String, Monitor>) -> Vec<Progress> {
    monitors.values().map(|m| m.progress.clone()).collect()
}

/// The watchdog after start-up, a reload or a late join: one ping now (the work just
/// finished, and the busy ticker's last ping may be almost an interval old), then pings only
/// while every running monitor progresses. With no monitor running but some still starting,
/// the busy ticker goes on for one more `limit`: a start that never finishes still gets the
/// service restarted.
fn arm_watchdog(
    notifier: &Arc<Notifier>,
    monitors: &BTreeMap<String, Monitor>,
    starter: &Starter,
    limit: Duration,
) -> Option<Watchdog> {
    notifier.watchdog_interval()?;
    let _ = notifier.watchdog();
    if monitors.is_empty() && !starter.pending.is_empty() {
        return Watchdog::busy(notifier.clone(), limit);
    }
    Watchdog::start_all(notifier.clone(), progresses(monitors))
}

fn status_line(monitors: &BTreeMap<String, Monitor>, s: &Settings) -> String {
    let down = s.monitors.len().saturating_sub(monitors.len());
    let names: Vec<&str> = monitors.keys().map(String::as_str).collect();
    format!(
        "{} monitor(s) running ({}){}",
        monitors.len(),
        names.join(", "),
        if down > 0 {
            format!(", {down} failed to start")
        } else {
            String::new()
        }
    )
}

/// A monitor start's outcome, tagged with the start-up or reload that asked for it.
struct Arrival {
    name: String,
    generation: u64,
    result: Result<Monitor, MonitorError>,
}

/// Monitor starts in flight. Each runs on the blocking pool and reports back over `rx`; one
/// that misses its batch's deadline stays `pending` and is accepted by the signal loop when it
/// arrives, unless a reload superseded it (then it is stopped, muted).
struct Starter {
    tx: tokio::sync::mpsc::UnboundedSender<Arrival>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Arrival>,
    /// Bumped by each reload: arrivals of an older generation are stale.
    generation: u64,
    /// Starts past their deadline, by monitor name, with the lease their instance publishes
    /// under.
    pending: BTreeMap<String, Lease>,
}

impl Starter {
    fn new() -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            tx,
            rx,
            generation: 0,
            pending: BTreeMap::new(),
        }
    }

    /// A reload begins: pending starts are superseded (their leases retired, so a start that
    /// finishes later publishes nothing over the monitor that replaces it). Returns their
    /// names.
    fn supersede(&mut self) -> Vec<String> {
        self.generation += 1;
        let mut names = Vec::new();
        for (name, lease) in std::mem::take(&mut self.pending) {
            tracing::warn!(monitor = %name, "a reload supersedes this monitor's unfinished start");
            lease.retire();
            names.push(name);
        }
        names
    }

    /// Takes an arrival: the monitor if it is current and started, else `None` (failures are
    /// reported; stale monitors are stopped in the background).
    fn accept(&mut self, a: Arrival, shared: &Shared) -> Option<Monitor> {
        if a.generation != self.generation {
            if let Ok(m) = a.result {
                tracing::info!(monitor = %a.name, "stopping a superseded monitor start");
                tokio::task::spawn_blocking(move || m.stop(STOP_TIMEOUT));
            }
            return None;
        }
        self.pending.remove(&a.name);
        match a.result {
            Ok(m) => Some(m),
            Err(e) => {
                report_failed(shared, &a.name, &e);
                None
            }
        }
    }
}

/// Starts the given monitors in parallel, waiting up to `daemon.start_timeout_seconds` for
/// them. Monitors sharing one device get channel views of one stream. Failures are logged and
/// reported in health; the others start anyway. Starts still running at the deadline are left
/// pending in `starter` (reported down as "still starting").
async fn start_all(
    settings: &Settings,
    list: &[MonitorSettings],
    shared: &Shared,
    starter: &mut Starter,
) -> BTreeMap<String, Monitor> {
    let deadline = tokio::time::Instant::now() + settings.daemon.start_timeout();
    let mut by_device: BTreeMap<String, Vec<&MonitorSettings>> = BTreeMap::new();
    for m in list {
        if let Some(d) = &m.source.device {
            by_device.entry(d.clone()).or_default().push(m);
        }
    }
    let mut views: BTreeMap<String, Box<dyn Source>> = BTreeMap::new();
    let mut hubs = Vec::new();
    for (dev, ms) in &by_device {
        if ms.len() < 2 {
            continue;
        }
        let opened =
            DeviceSource::open(device_settings(ms[0])).and_then(|d| SharedSource::new(Box::new(d)));
        match opened {
            Ok(hub) => {
                for m in ms {
                    let ch = m.source.channel.unwrap_or(0);
                    match hub.subscribe(&[ch]) {
                        Ok(v) => {
                            views.insert(m.name.clone(), Box::new(v));
                        }
                        Err(e) => {
                            tracing::error!(monitor = %m.name, device = %dev, error = %e, "cannot listen to this channel")
                        }
                    }
                }
                hubs.push(hub);
            }
            Err(e) => {
                tracing::error!(device = %dev, error = %e, "cannot open a device shared by several monitors")
            }
        }
    }
    let all = Arc::new(settings.clone());
    let mut batch = Vec::new();
    for m in list {
        let shared_dev = m
            .source
            .device
            .as_ref()
            .is_some_and(|d| by_device[d].len() >= 2);
        let view = views.remove(&m.name);
        if shared_dev && view.is_none() {
            shared.health.set(
                &m.name,
                MonitorStatus::Down {
                    reason: "shared device could not be opened".into(),
                },
            );
            continue;
        }
        let lease = Lease::new();
        starter.pending.insert(m.name.clone(), lease.clone());
        batch.push(m.name.clone());
        let (ms, all, sh, tx) = (m.clone(), all.clone(), shared.clone(), starter.tx.clone());
        let generation = starter.generation;
        tokio::task::spawn_blocking(move || {
            // `earshot_monitor_up` then follows the device (the monitor's status handle).
            let result = Monitor::start(&ms, &all, &sh, view, Progress::new(), lease);
            let arrival = Arrival {
                name: ms.name.clone(),
                generation,
                result,
            };
            if let Err(e) = tx.send(arrival)
                && let Ok(m) = e.0.result
            {
                // The service is shutting down: nobody will take this monitor.
                m.stop(STOP_TIMEOUT);
            }
        });
    }
    let mut out = BTreeMap::new();
    while batch.iter().any(|n| starter.pending.contains_key(n)) {
        match tokio::time::timeout_at(deadline, starter.rx.recv()).await {
            Ok(Some(a)) => {
                if let Some(m) = starter.accept(a, shared) {
                    out.insert(m.name.clone(), m);
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    for name in batch.iter().filter(|n| starter.pending.contains_key(*n)) {
        tracing::warn!(
            monitor = %name,
            timeout_s = settings.daemon.start_timeout_seconds,
            "monitor still starting after `daemon.start_timeout_seconds`; the others run, it joins when ready"
        );
        if let Some(lease) = starter.pending.get(name) {
            lease.with(|| {
                shared.health.set(
                    name,
                    MonitorStatus::Down {
                        reason: format!(
                            "still starting after {} s (`daemon.start_timeout_seconds`): model or index slow to load; it joins when ready",
                            settings.daemon.start_timeout_seconds
                        ),
                    },
                )
            });
        }
    }
    for hub in &hubs {
        hub.start();
    }
    // The hubs' pulling threads live as long as a view does.
    std::mem::forget(hubs);
    out
}

fn report_failed(shared: &Shared, name: &str, e: &MonitorError) {
    tracing::error!(monitor = %name, error = %e, "monitor not started; the others keep running");
    shared.health.set(
        name,
        MonitorStatus::Down {
            reason: e.to_string(),
        },
    );
    shared.metrics.set_monitor_up(name, false);
}

async fn stop_all(monitors: BTreeMap<String, Monitor>) {
    let handles: Vec<_> = monitors
        .into_values()
        .map(|m| tokio::task::spawn_blocking(move || m.stop(STOP_TIMEOUT)))
        .collect();
    for h in handles {
        let _ = h.await;
    }
}

/// Compares the sections a reload cannot apply with those the service started with, and
/// publishes the difference (log, metric, `/healthz`). Comparing with the start-up values
/// (not the previous reload) clears the flag when a change is reverted.
fn apply_restart_required(boot: &Settings, new: &Settings, shared: &Shared) {
    let changed = |section: &str| match section {
        "events" => boot.events != new.events,
        "metrics" => boot.metrics != new.metrics,
        "state_dir" => boot.state_dir() != new.state_dir(),
        "alerts" => boot.alerts != new.alerts,
        _ => false,
    };
    let mut need = Vec::new();
    for section in crate::metrics::RELOAD_ONLY_AT_RESTART {
        let c = changed(section);
        shared.metrics.set_restart_required(section, c);
        if c {
            tracing::warn!(
                section,
                "reload: this section changed, but only a restart applies it; the running values stay in use until `systemctl restart earshot`"
            );
            need.push(section.to_string());
        }
    }
    shared.health.set_restart_required(need);
}

/// Applies a new configuration. A monitor is kept running when its settings, the model
/// settings and its profile files are unchanged; monitors on a shared device restart
/// together when any of them changes.
async fn reload(
    old: &Settings,
    new: &Settings,
    shared: &Shared,
    mut running: BTreeMap<String, Monitor>,
    starter: &mut Starter,
) -> BTreeMap<String, Monitor> {
    // Unfinished starts are restarted with the new settings below (they are not `running`).
    let superseded = starter.supersede();
    let model_same = old.model.dir == new.model.dir
        && old.model.threads == new.model.threads
        && old.model.onnxruntime == new.model.onnxruntime
        && old.daemon.queue_windows == new.daemon.queue_windows;
    let mut keep = BTreeMap::new();
    let mut restart = Vec::new();
    for m in &new.monitors {
        let same = model_same
            && running
                .get(&m.name)
                .is_some_and(|r| r.settings == *m && !profile_changed(r))
            && !shares_device_with_changed(m, old, new);
        if same {
            if let Some(r) = running.remove(&m.name) {
                keep.insert(m.name.clone(), r);
            }
            continue;
        }
        // A running monitor is only stopped for new settings that can start: otherwise a
        // typo in a reload would silently end the monitoring of that machine. (Monitors on
        // a shared device restart together, so they are not kept alone.)
        let alone = m.source.device.is_none() || !shares_device_with_changed(m, old, new);
        if alone
            && running.contains_key(&m.name)
            && let Err(e) = Monitor::preflight(m)
        {
            tracing::error!(
                monitor = %m.name,
                error = %e,
                "reload: the new settings of this monitor cannot work; it keeps running with its previous settings"
            );
            if let Some(r) = running.remove(&m.name) {
                keep.insert(m.name.clone(), r);
            }
            continue;
        }
        restart.push(m.clone());
    }
    let stopping: Vec<Monitor> = running.into_values().collect();
    // Every monitor this reload ends: running ones stopped, and starts it superseded (one
    // may have reported its device lost before it was superseded).
    let mut stopped: Vec<String> = stopping.iter().map(|m| m.name.clone()).collect();
    stopped.extend(superseded);
    for m in &stopping {
        if !new.monitors.iter().any(|n| n.name == m.name) {
            shared.health.remove(&m.name);
            shared.metrics.forget_monitor(&m.name);
            tracing::info!(monitor = %m.name, "monitor removed from the configuration: stopping");
        }
    }
    // A stopped monitor's lease is retired when `stop` returns, even if a thread outlived the
    // timeout: its successor below starts with a clean slate.
    let handles: Vec<_> = stopping
        .into_iter()
        .map(|m| tokio::task::spawn_blocking(move || m.stop(STOP_TIMEOUT)))
        .collect();
    for h in handles {
        let _ = h.await;
    }
    // Nothing would resolve a stopped monitor's no-signal or device state (or an event its
    // late stop could not close): a removed monitor never runs again, and a restarted one
    // starts its level gate and device watch afresh, raising the state again only if it
    // persists. Its receivers would keep it firing.
    for name in &stopped {
        let n = shared.sinks.lock().resolve_open_of(
            name,
            "resolved because a reload stopped the monitor (removed from the configuration, or restarted with new settings: then raised again if it persists)",
        );
        if n > 0 {
            tracing::info!(monitor = %name, count = n, "resolved the stopped monitor's open events");
        }
    }
    if !keep.is_empty() {
        let names: Vec<&String> = keep.keys().collect();
        tracing::info!(?names, "unchanged monitors keep running");
    }
    if !model_same {
        // The old model's sessions are stopped: its saved copy is not needed any more.
        prune_model_cache(new);
    }
    let started = start_all(new, &restart, shared, starter).await;
    keep.extend(started);
    keep
}

/// Only the service reads the model cache and it runs one model: the configured model's
/// entry stays, the others (another model tried before, an earlier file of this one) are
/// removed, so months of model changes do not fill the state disk. Nothing is removed when the
/// configured model's card or ONNX Runtime cannot be loaded (its monitors then fail and say
/// why) or when the cache is off (`model.skip_checksum`).
fn prune_model_cache(settings: &Settings) {
    if settings.model.skip_checksum {
        return;
    }
    let Ok(dir) = settings.find_model_dir() else {
        return;
    };
    let Ok((card, _)) = crate::embed::card::ModelCard::load(&dir) else {
        return;
    };
    // An entry is keyed by the runtime's build: start it (once per process, as a monitor
    // would); if it cannot start, the monitors say why and nothing is removed.
    if crate::embed::runtime::ensure(settings.model.onnxruntime.as_deref()).is_err() {
        return;
    }
    let entry = crate::embed::optimized::Entry::new(
        &settings.model_cache_dir(),
        &card.name,
        &card.onnx.sha256,
    );
    entry.remove_other_entries();
}

fn profile_changed(m: &Monitor) -> bool {
    // `learn` writes manifest.json last: its modification time marks a new profile.
    let started = m.started_profile_mtime();
    let now = std::fs::metadata(m.settings.profile.join("manifest.json"))
        .and_then(|md| md.modified())
        .ok();
    started != now
}

fn shares_device_with_changed(m: &MonitorSettings, old: &Settings, new: &Settings) -> bool {
    let Some(dev) = &m.source.device else {
        return false;
    };
    let peers = |s: &Settings| -> Vec<MonitorSettings> {
        s.monitors
            .iter()
            .filter(|x| x.source.device.as_ref() == Some(dev))
            .cloned()
            .collect()
    };
    let (a, b) = (peers(old), peers(new));
    (a.len() >= 2 || b.len() >= 2) && a != b
}
