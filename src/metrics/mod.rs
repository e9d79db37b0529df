//! Every metric earshot exports, named in one place, and the HTTP endpoint that serves them.
//!
//! Why one module: dashboards and alert rules refer to metrics by name, so names must not drift
//! between stages ([`names`]). Each component has its own file with its metric families and a
//! small handle ([`CaptureHandle`], [`PipelineHandle`], [`ScoreHandle`], [`IndexHandle`],
//! [`SinkHandle`]) created once per monitor with its labels already resolved; the hot path
//! only increments, and each counter grows in exactly one method of its handle. Where an
//! operational happening deserves both a log line and a metric (device lost, lag, index
//! degraded), the handle has one method that does both, so they cannot disagree. A monitor's
//! health state is derived in one place too ([`health::StatusHandle`]).
//!
//! The registry belongs to earshot (not the process-global default) so tests can build as many
//! independent ones as they like and no library can inject metrics into our output; other
//! components (e.g. alert delivery) register their own families into [`Metrics::registry`].
//!
//! HTTP (`[metrics]` in the config): `GET /metrics` (Prometheus text format), `GET /healthz`
//! (200 when every monitor is healthy, else 503 with a JSON body naming those that are not),
//! `GET /readyz` (200 once start-up finished, the moment systemd gets READY=1). The default
//! listen address is `127.0.0.1:9847`: loopback, so nothing is exposed unless configured, and
//! not 9464, which OpenTelemetry's Prometheus exporter commonly holds on the same edge PC.
//! Exposed, the endpoint takes basic auth and TLS ([`security`]), applied by the accept loop
//! to every route.

mod capture;
mod catalog;
pub mod health;
mod index;
mod lease;
mod listener;
pub mod names;
mod pipeline;
mod score;
pub mod security;
mod server;
mod sinks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use serde::{Deserialize, Serialize};

pub use capture::{CaptureHandle, CaptureState};
pub use catalog::CatalogMetrics;
pub use health::{DevicePart, Health, IndexPart, MonitorStatus, StatusHandle};
pub use index::{BreakerState, IndexHandle};
pub use lease::Lease;
pub use pipeline::PipelineHandle;
pub use score::ScoreHandle;
pub use server::MetricsServer;
pub use sinks::SinkHandle;

/// Errors of the metrics registry and endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("internal error registering metric: {0} (a metric name is defined twice)")]
    Register(#[from] prometheus::Error),
    #[error(transparent)]
    Security(#[from] security::SecurityError),
    #[error(
        "cannot listen on {addr} for /metrics: {source}; is another earshot or exporter using the port? Set `listen` under [metrics] in the config to a free address"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// `[metrics]` section of the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve the HTTP endpoint at all.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Address to listen on; loopback by default. Any other address needs `basic_auth` (or
    /// `allow_unauthenticated = true`): see [`security`].
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `[metrics.basic_auth]`: user and a file holding the password's bcrypt/argon2 hash.
    #[serde(default)]
    pub basic_auth: Option<security::BasicAuthConfig>,
    /// `[metrics.tls]`: serve HTTPS with this PEM certificate chain and key (rustls).
    #[serde(default)]
    pub tls: Option<security::TlsConfig>,
    /// Permit a non-loopback `listen` without basic auth (a firewall or proxy guards it).
    #[serde(default)]
    pub allow_unauthenticated: bool,
}

fn default_enabled() -> bool {
    true
}

/// The default listen address, `127.0.0.1:9847`.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9847))
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_listen(),
            basic_auth: None,
            tls: None,
            allow_unauthenticated: false,
        }
    }
}

fn counter(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let m = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn igauge(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let m = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn fgauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
    let m = GaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> prometheus::Result<HistogramVec> {
    let m = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

/// Config sections a reload cannot apply (the daemon compares them with the running ones and
/// sets `earshot_config_restart_required{section}`).
pub const RELOAD_ONLY_AT_RESTART: &[&str] = &["events", "metrics", "state_dir", "alerts"];

/// The registry and every metric family of the process.
pub struct Metrics {
    registry: Registry,
    started: Instant,
    uptime: Gauge,
    monitor_up: IntGaugeVec,
    monitor_info: IntGaugeVec,
    restart_required: IntGaugeVec,
    memory_reloads: IntCounterVec,
    capture: capture::CaptureFamilies,
    pipeline: pipeline::PipelineFamilies,
    score: score::ScoreFamilies,
    index: index::IndexFamilies,
    sinks: sinks::SinkFamilies,
    catalog: CatalogMetrics,
}

impl Metrics {
    /// Registers every metric family in a fresh registry.
    pub fn new() -> Result<Self, MetricsError> {
        use names::*;
        let r = Registry::new();
        let capture = capture::CaptureFamilies::register(&r)?;
        let pipeline = pipeline::PipelineFamilies::register(&r)?;
        let score = score::ScoreFamilies::register(&r)?;
        let index = index::IndexFamilies::register(&r)?;
        let sinks = sinks::SinkFamilies::register(&r)?;
        let catalog = CatalogMetrics::register(&r)?;
        let uptime = Gauge::new(UPTIME, "Seconds since earshot started.")?;
        r.register(Box::new(uptime.clone()))?;
        let build = IntGaugeVec::new(
            Opts::new(BUILD_INFO, "Always 1; labels carry the build version."),
            &["version"],
        )?;
        r.register(Box::new(build.clone()))?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let monitor_up = igauge(
            &r,
            MONITOR_UP,
            "1 while a monitor's device delivers audio (0 while it is lost, starting or stopped).",
            &["monitor"],
        )?;
        let monitor_info = igauge(
            &r,
            MONITOR_INFO,
            "Always 1; maps a monitor to its machine, line and site (join on monitor in queries).",
            &["monitor", "machine", "line", "site"],
        )?;
        let restart_required = igauge(
            &r,
            CONFIG_RESTART_REQUIRED,
            "1 while the configuration file's section differs from the running one and only a restart applies it (a reload cannot).",
            &["section"],
        )?;
        let memory_reloads = counter(
            &r,
            PROFILE_MEMORY_RELOADS,
            "Times a monitor swapped in a changed normal memory (earshot feedback) without a restart.",
            &["monitor"],
        )?;
        for section in RELOAD_ONLY_AT_RESTART {
            restart_required.with_label_values(&[section]).set(0);
        }
        Ok(Self {
            registry: r,
            started: Instant::now(),
            uptime,
            monitor_up,
            monitor_info,
            restart_required,
            memory_reloads,
            capture,
            pipeline,
            score,
            index,
            sinks,
            catalog,
        })
    }

    /// The registry, e.g. to add metrics of a component not covered here.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Renders the Prometheus text exposition format (refreshes uptime first).
    pub fn render(&self) -> String {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics; a failure yields an empty page.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Sets `earshot_config_restart_required{section}` (1 = changed on disk, needs a restart).
    pub fn set_restart_required(&self, section: &str, required: bool) {
        self.restart_required
            .with_label_values(&[section])
            .set(required as i64);
    }

    /// Counts a live swap of a monitor's normal memory (`earshot_profile_memory_reloads_total`).
    pub fn memory_reloaded(&self, monitor: &str) {
        self.memory_reloads.with_label_values(&[monitor]).inc();
    }

    /// Sets `earshot_monitor_up` of a monitor directly (for monitors that never started; a
    /// running monitor's value comes from its [`StatusHandle`]).
    pub fn set_monitor_up(&self, monitor: &str, up: bool) {
        self.monitor_up.with_label_values(&[monitor]).set(up as i64);
    }

    /// The state of one monitor, published to `health` and `earshot_monitor_up`.
    pub fn status(&self, monitor: &str, health: &Health) -> StatusHandle {
        self.status_leased(monitor, health, Lease::new())
    }

    /// Like [`Metrics::status`], publishing only while `lease` is live (one monitor instance;
    /// see [`Lease`]).
    pub fn status_leased(&self, monitor: &str, health: &Health, lease: Lease) -> StatusHandle {
        StatusHandle::new(
            monitor,
            health.clone(),
            self.monitor_up.with_label_values(&[monitor]),
            lease,
        )
    }

    /// Publishes `earshot_monitor_info` for a monitor from its labels (`machine`, `line`,
    /// `site`; missing ones are empty). Machine labels live here, not on every series, so
    /// dashboards can select by machine without multiplying series.
    pub fn set_monitor_info(&self, monitor: &str, labels: &BTreeMap<String, String>) {
        let get = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
        self.monitor_info
            .with_label_values(&[monitor, get("machine"), get("line"), get("site")])
            .set(1);
    }

    /// Removes the per-monitor series of a monitor a reload dropped. Series with further
    /// labels (device, scorer, backend, monitor info) stay until restart: prometheus 0.14
    /// cannot remove by partial label set, and their last values are harmless.
    pub fn forget_monitor(&self, monitor: &str) {
        let _ = self.monitor_up.remove_label_values(&[monitor]);
        self.score.forget(monitor);
        self.pipeline.forget(monitor);
        self.capture.forget(monitor);
    }

    pub fn capture(&self, monitor: &str, device: &str) -> CaptureHandle {
        self.capture.handle(monitor, device)
    }

    pub fn pipeline(&self, monitor: &str) -> PipelineHandle {
        self.pipeline.handle(monitor)
    }

    pub fn score(&self, monitor: &str) -> ScoreHandle {
        self.score.handle(monitor)
    }

    /// Handle for one monitor's index backend ("embedded", "azure").
    pub fn index(&self, monitor: &str, backend: &str) -> IndexHandle {
        self.index.handle(monitor, backend)
    }

    /// The sound catalog's metrics (shared by every monitor).
    pub fn catalog(&self) -> &CatalogMetrics {
        &self.catalog
    }

    /// Handle for one event sink ("jsonl", "log", ...).
    pub fn sink(&self, sink: &str) -> SinkHandle {
        self.sinks.handle(sink)
    }
}
