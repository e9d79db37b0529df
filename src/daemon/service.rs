//! `earshot run`: start every monitor, tell systemd, serve metrics, react to signals.
//!
//! Lifecycle: monitors start (a monitor that cannot start is logged with the key to fix and
//! reported down; the others run) -> READY=1 -> run until SIGTERM/SIGINT (stop within 2 s,
//! flushing events) ; SIGHUP re-reads the config: unchanged monitors keep running without
//! losing audio, changed ones restart, removed ones stop, new ones start; an invalid new
//! config is refused and the running one kept.

use super::monitor::{Monitor, MonitorError, Shared, device_settings};
use super::notify::{Notifier, Progress, Watchdog};
use crate::alert::delivery::Alerting;
use crate::alert::events::Sinks;
use crate::capture::{DeviceSource, SharedSource, Source};
use crate::config::{MonitorSettings, Settings};
use crate::metrics::{Health, Metrics, MetricsServer, MonitorStatus};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
            MetricsServer::start_with(
                settings.metrics.listen,
                metrics.clone(),
                health.clone(),
                page,
            )
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
    tracing::info!(file = %state_dir.join(&settings.events.file_name).display(), "events are written here");
    let shared = Shared {
        evidence: Some(evidence),
        metrics,
        health: health.clone(),
        sinks: Arc::new(Mutex::new(sinks)),
    };
    let notifier = Arc::new(Notifier::from_env().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "NOTIFY_SOCKET is unusable; not talking to systemd");
        Notifier::disabled()
    }));

    let mut monitors = start_all(&settings, &settings.monitors, &shared, BTreeMap::new());
    if monitors.is_empty() {
        return Err(DaemonError::NothingRunning);
    }
    health.set_ready(true);
    let _ = notifier.ready();
    let _ = notifier.status(&status_line(&monitors, &settings));
    let mut watchdog = Watchdog::start_all(notifier.clone(), progresses(&monitors));
    tracing::info!(monitors = monitors.len(), "earshot running");

    let mut current = settings;
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted: stopping"); break; }
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = hup.recv() => {
                let _ = notifier.reloading();
                match Settings::load(opts.config.as_deref()) {
                    Ok(new) => {
                        if let Some(w) = watchdog.take() { w.stop(); }
                        monitors = reload(&current, &new, &shared, monitors).await;
                        watchdog = Watchdog::start_all(notifier.clone(), progresses(&monitors));
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
                if opts.exit_when_done && monitors.values().all(Monitor::finished) {
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

/// Starts the given monitors. Monitors sharing one device get channel views of one stream.
/// Failures are logged and reported in health; the others start anyway.
fn start_all(
    settings: &Settings,
    list: &[MonitorSettings],
    shared: &Shared,
    mut progress: BTreeMap<String, Progress>,
) -> BTreeMap<String, Monitor> {
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
    let mut out = BTreeMap::new();
    for m in list {
        let p = progress.remove(&m.name).unwrap_or_default();
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
        match Monitor::start(m, settings, shared, view, p) {
            // `earshot_monitor_up` then follows the device (the monitor's status handle).
            Ok(mon) => {
                out.insert(m.name.clone(), mon);
            }
            Err(e) => report_failed(shared, &m.name, &e),
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
        .map(|m| tokio::task::spawn_blocking(move || m.stop(Duration::from_millis(1500))))
        .collect();
    for h in handles {
        let _ = h.await;
    }
}

/// Applies a new configuration. A monitor is kept running when its settings, the model
/// settings and its profile files are unchanged; monitors on a shared device restart
/// together when any of them changes.
async fn reload(
    old: &Settings,
    new: &Settings,
    shared: &Shared,
    mut running: BTreeMap<String, Monitor>,
) -> BTreeMap<String, Monitor> {
    let model_same = old.model.dir == new.model.dir
        && old.model.threads == new.model.threads
        && old.model.onnxruntime == new.model.onnxruntime
        && old.daemon == new.daemon;
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
    let mut progress = BTreeMap::new();
    let stopping: Vec<Monitor> = running.into_values().collect();
    for m in &stopping {
        progress.insert(m.name.clone(), m.progress.clone());
        if !new.monitors.iter().any(|n| n.name == m.name) {
            shared.health.remove(&m.name);
            shared.metrics.forget_monitor(&m.name);
            tracing::info!(monitor = %m.name, "monitor removed from the configuration: stopping");
        }
    }
    let handles: Vec<_> = stopping
        .into_iter()
        .map(|m| tokio::task::spawn_blocking(move || m.stop(Duration::from_millis(1500))))
        .collect();
    for h in handles {
        let _ = h.await;
    }
    if !keep.is_empty() {
        let names: Vec<&String> = keep.keys().collect();
        tracing::info!(?names, "unchanged monitors keep running");
    }
    let started = start_all(new, &restart, shared, progress);
    keep.extend(started);
    keep
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
