//! Every metric earshot exports, named in one place, and the HTTP endpoint that serves them.
//!
//! Why one module: dashboards and alert rules refer to metrics by name, so names must not drift
//! between stages. Each stage gets a small handle ([`CaptureHandle`], [`PipelineHandle`], ...)
//! created once per monitor with its labels already resolved; the hot path only increments.
//! Where an operational happening deserves both a log line and a metric (device lost, lag,
//! index degraded), the handle has one method that does both, so they cannot disagree.
//!
//! The registry belongs to earshot (not the process-global default) so tests can build as many
//! independent ones as they like and no library can inject metrics into our output.
//!
//! HTTP (`[metrics]` in the config): `GET /metrics` (Prometheus text format), `GET /healthz`
//! (200 when every monitor is running, else 503 with a JSON body naming those that are not),
//! `GET /readyz` (200 once start-up finished, the moment systemd gets READY=1). The default
//! listen address is `127.0.0.1:9847`: loopback, because the endpoint has no authentication
//! (put a reverse proxy or firewall rule in front to scrape from another host), and not 9464,
//! which OpenTelemetry's Prometheus exporter commonly holds on the same edge PC.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use serde::{Deserialize, Serialize};

/// Metric names. Dashboards (`dashboards/earshot.json`) and alert rules
/// (`dashboards/earshot.rules.yml`) use these; `tests/dashboards.rs` checks they exist.
pub mod names {
    pub const CAPTURE_FRAMES_RECEIVED: &str = "earshot_capture_frames_received_total";
    pub const CAPTURE_FRAMES_DROPPED: &str = "earshot_capture_frames_dropped_total";
    pub const CAPTURE_CALLBACKS: &str = "earshot_capture_callbacks_total";
    pub const CAPTURE_STREAM_ERRORS: &str = "earshot_capture_stream_errors_total";
    pub const CAPTURE_RECONNECTS: &str = "earshot_capture_reconnects_total";
    pub const CAPTURE_STATE: &str = "earshot_capture_state";
    pub const CAPTURE_LAST_CALLBACK_AGE: &str = "earshot_capture_last_callback_age_seconds";

    pub const PIPELINE_WINDOWS: &str = "earshot_pipeline_windows_processed_total";
    pub const PIPELINE_EMBED_SECONDS: &str = "earshot_pipeline_embed_seconds";
    pub const PIPELINE_LAG: &str = "earshot_pipeline_lag_seconds";
    pub const PIPELINE_SHED: &str = "earshot_pipeline_windows_shed_total";
    pub const PIPELINE_QUEUE_DEPTH: &str = "earshot_pipeline_queue_depth";

    pub const SCORE: &str = "earshot_score";
    pub const SCORE_THRESHOLD: &str = "earshot_score_threshold";
    pub const ANOMALY_ACTIVE: &str = "earshot_anomaly_active";
    pub const ANOMALY_EVENTS: &str = "earshot_anomaly_events_total";

    pub const INDEX_QUERIES: &str = "earshot_index_queries_total";
    pub const INDEX_FAILURES: &str = "earshot_index_query_failures_total";
    pub const INDEX_DEGRADED: &str = "earshot_index_degraded";
    pub const INDEX_BREAKER: &str = "earshot_index_breaker_state";
    pub const INDEX_QUERY_SECONDS: &str = "earshot_index_query_seconds";

    pub const UPTIME: &str = "earshot_uptime_seconds";
    pub const BUILD_INFO: &str = "earshot_build_info";
    pub const MONITOR_UP: &str = "earshot_monitor_up";
    pub const MONITOR_INFO: &str = "earshot_monitor_info";

    pub const EVENTS_WRITTEN: &str = "earshot_events_written_total";
    pub const EVENT_WRITE_FAILURES: &str = "earshot_event_write_failures_total";

    /// Every name above, for tests and documentation.
    pub const ALL: &[&str] = &[
        CAPTURE_FRAMES_RECEIVED,
        CAPTURE_FRAMES_DROPPED,
        CAPTURE_CALLBACKS,
        CAPTURE_STREAM_ERRORS,
        CAPTURE_RECONNECTS,
        CAPTURE_STATE,
        CAPTURE_LAST_CALLBACK_AGE,
        PIPELINE_WINDOWS,
        PIPELINE_EMBED_SECONDS,
        PIPELINE_LAG,
        PIPELINE_SHED,
        PIPELINE_QUEUE_DEPTH,
        SCORE,
        SCORE_THRESHOLD,
        ANOMALY_ACTIVE,
        ANOMALY_EVENTS,
        INDEX_QUERIES,
        INDEX_FAILURES,
        INDEX_DEGRADED,
        INDEX_BREAKER,
        INDEX_QUERY_SECONDS,
        UPTIME,
        BUILD_INFO,
        MONITOR_UP,
        MONITOR_INFO,
        EVENTS_WRITTEN,
        EVENT_WRITE_FAILURES,
    ];
}

/// Errors of the metrics registry and endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("internal error registering metric: {0} (a metric name is defined twice)")]
    Register(#[from] prometheus::Error),
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
    /// Address to listen on; loopback by default (the endpoint has no authentication).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
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
        }
    }
}

/// Capture state values of [`names::CAPTURE_STATE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum CaptureState {
    Stopped = 0,
    Starting = 1,
    Running = 2,
    /// Device lost; reconnecting with backoff.
    Lost = 3,
}

/// Circuit breaker states of [`names::INDEX_BREAKER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum BreakerState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

const EMBED_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const QUERY_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

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

/// The registry and every metric family of the process.
pub struct Metrics {
    registry: Registry,
    started: Instant,
    uptime: Gauge,
    monitor_up: IntGaugeVec,
    monitor_info: IntGaugeVec,
    capture: CaptureFamilies,
    pipeline: PipelineFamilies,
    score: ScoreFamilies,
    index: IndexFamilies,
    alert: AlertFamilies,
}

struct CaptureFamilies {
    received: IntCounterVec,
    dropped: IntCounterVec,
    callbacks: IntCounterVec,
    errors: IntCounterVec,
    reconnects: IntCounterVec,
    state: IntGaugeVec,
    age: GaugeVec,
}

struct PipelineFamilies {
    windows: IntCounterVec,
    embed: HistogramVec,
    lag: GaugeVec,
    shed: IntCounterVec,
    queue: IntGaugeVec,
}

struct ScoreFamilies {
    score: GaugeVec,
    threshold: GaugeVec,
    active: IntGaugeVec,
    events: IntCounterVec,
}

struct IndexFamilies {
    queries: IntCounterVec,
    failures: IntCounterVec,
    degraded: IntGaugeVec,
    breaker: IntGaugeVec,
    seconds: HistogramVec,
}

struct AlertFamilies {
    written: IntCounterVec,
    failures: IntCounterVec,
}

impl Metrics {
    /// Registers every metric family in a fresh registry.
    pub fn new() -> Result<Self, MetricsError> {
        use names::*;
        let r = Registry::new();
        let md = &["monitor", "device"];
        let m = &["monitor"];
        let capture = CaptureFamilies {
            received: counter(
                &r,
                CAPTURE_FRAMES_RECEIVED,
                "Audio frames delivered by the capture callback.",
                md,
            )?,
            dropped: counter(
                &r,
                CAPTURE_FRAMES_DROPPED,
                "Audio frames dropped because the ring buffer was full.",
                md,
            )?,
            callbacks: counter(&r, CAPTURE_CALLBACKS, "Capture callbacks received.", md)?,
            errors: counter(
                &r,
                CAPTURE_STREAM_ERRORS,
                "Errors reported by the audio stream.",
                md,
            )?,
            reconnects: counter(
                &r,
                CAPTURE_RECONNECTS,
                "Successful reopenings of a lost capture device.",
                md,
            )?,
            state: igauge(
                &r,
                CAPTURE_STATE,
                "Capture state: 0 stopped, 1 starting, 2 running, 3 lost (reconnecting).",
                md,
            )?,
            age: fgauge(
                &r,
                CAPTURE_LAST_CALLBACK_AGE,
                "Seconds since the last capture callback.",
                md,
            )?,
        };
        let pipeline = PipelineFamilies {
            windows: counter(&r, PIPELINE_WINDOWS, "Windows embedded and scored.", m)?,
            embed: histogram(
                &r,
                PIPELINE_EMBED_SECONDS,
                "Time to embed one window (log-mel + model).",
                m,
                EMBED_BUCKETS,
            )?,
            lag: fgauge(
                &r,
                PIPELINE_LAG,
                "How far scoring runs behind the audio it scores, in seconds.",
                m,
            )?,
            shed: counter(
                &r,
                PIPELINE_SHED,
                "Windows skipped because inference fell behind (load shedding).",
                m,
            )?,
            queue: igauge(
                &r,
                PIPELINE_QUEUE_DEPTH,
                "Windows waiting for the embedding worker.",
                m,
            )?,
        };
        let score = ScoreFamilies {
            score: fgauge(
                &r,
                SCORE,
                "Latest anomaly score of a window, per scorer.",
                &["monitor", "scorer"],
            )?,
            threshold: fgauge(
                &r,
                SCORE_THRESHOLD,
                "Threshold in force, per scorer.",
                &["monitor", "scorer"],
            )?,
            active: igauge(&r, ANOMALY_ACTIVE, "1 while an anomaly event is open.", m)?,
            events: counter(&r, ANOMALY_EVENTS, "Anomaly events started.", m)?,
        };
        let index = IndexFamilies {
            queries: counter(
                &r,
                INDEX_QUERIES,
                "k-NN queries sent to the vector index.",
                &["backend"],
            )?,
            failures: counter(
                &r,
                INDEX_FAILURES,
                "k-NN queries that failed or timed out.",
                &["backend"],
            )?,
            degraded: igauge(
                &r,
                INDEX_DEGRADED,
                "1 while the index is unavailable and k-NN scoring is skipped.",
                &["backend"],
            )?,
            breaker: igauge(
                &r,
                INDEX_BREAKER,
                "Circuit breaker: 0 closed, 1 half-open, 2 open.",
                &["backend"],
            )?,
            seconds: histogram(
                &r,
                INDEX_QUERY_SECONDS,
                "k-NN query latency.",
                &["backend"],
                QUERY_BUCKETS,
            )?,
        };
        let alert = AlertFamilies {
            written: counter(
                &r,
                EVENTS_WRITTEN,
                "Events written by an event sink.",
                &["sink"],
            )?,
            failures: counter(
                &r,
                EVENT_WRITE_FAILURES,
                "Events an event sink failed to write.",
                &["sink"],
            )?,
        };
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
            "1 while a monitor is running (capturing and scoring).",
            m,
        )?;
        let monitor_info = igauge(
            &r,
            MONITOR_INFO,
            "Always 1; maps a monitor to its machine, line and site (join on monitor in queries).",
            &["monitor", "machine", "line", "site"],
        )?;
        Ok(Self {
            registry: r,
            started: Instant::now(),
            uptime,
            monitor_up,
            monitor_info,
            capture,
            pipeline,
            score,
            index,
            alert,
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

    /// Sets `earshot_monitor_up` of a monitor.
    pub fn set_monitor_up(&self, monitor: &str, up: bool) {
        self.monitor_up.with_label_values(&[monitor]).set(up as i64);
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
    /// labels (device, scorer, monitor info) stay until restart: prometheus 0.14 cannot remove
    /// by partial label set, and their last values are harmless.
    pub fn forget_monitor(&self, monitor: &str) {
        let _ = self.monitor_up.remove_label_values(&[monitor]);
        let _ = self.score.active.remove_label_values(&[monitor]);
        let _ = self.score.events.remove_label_values(&[monitor]);
        let _ = self.pipeline.windows.remove_label_values(&[monitor]);
        let _ = self.pipeline.lag.remove_label_values(&[monitor]);
        let _ = self.pipeline.shed.remove_label_values(&[monitor]);
        let _ = self.pipeline.queue.remove_label_values(&[monitor]);
        let _ = self.pipeline.embed.remove_label_values(&[monitor]);
    }

    pub fn capture(&self, monitor: &str, device: &str) -> CaptureHandle {
        let l = &[monitor, device];
        let f = &self.capture;
        CaptureHandle {
            monitor: monitor.to_string(),
            device: device.to_string(),
            frames_received: f.received.with_label_values(l),
            frames_dropped: f.dropped.with_label_values(l),
            callbacks: f.callbacks.with_label_values(l),
            stream_errors: f.errors.with_label_values(l),
            reconnects: f.reconnects.with_label_values(l),
            state: f.state.with_label_values(l),
            last_callback_age: f.age.with_label_values(l),
        }
    }

    pub fn pipeline(&self, monitor: &str) -> PipelineHandle {
        let l = &[monitor];
        let f = &self.pipeline;
        PipelineHandle {
            monitor: monitor.to_string(),
            windows: f.windows.with_label_values(l),
            embed_seconds: f.embed.with_label_values(l),
            lag_seconds: f.lag.with_label_values(l),
            shed: f.shed.with_label_values(l),
            queue_depth: f.queue.with_label_values(l),
        }
    }

    pub fn score(&self, monitor: &str) -> ScoreHandle {
        ScoreHandle {
            monitor: monitor.to_string(),
            score: self.score.score.clone(),
            threshold: self.score.threshold.clone(),
            active: self.score.active.with_label_values(&[monitor]),
            events: self.score.events.with_label_values(&[monitor]),
        }
    }

    /// Handle for one index backend ("embedded", "azure").
    pub fn index(&self, backend: &str) -> IndexHandle {
        let l = &[backend];
        let f = &self.index;
        IndexHandle {
            backend: backend.to_string(),
            queries: f.queries.with_label_values(l),
            failures: f.failures.with_label_values(l),
            degraded: f.degraded.with_label_values(l),
            breaker: f.breaker.with_label_values(l),
            query_seconds: f.seconds.with_label_values(l),
        }
    }

    /// Handle for one event sink ("jsonl", "log", ...).
    pub fn sink(&self, sink: &str) -> SinkHandle {
        SinkHandle {
            written: self.alert.written.with_label_values(&[sink]),
            failures: self.alert.failures.with_label_values(&[sink]),
        }
    }
}

/// Metrics of one capture stream. The counters are lock-free atomics, but the audio callback
/// should still count locally and add here from the consumer side, off the real-time thread.
#[derive(Clone)]
pub struct CaptureHandle {
    monitor: String,
    device: String,
    pub frames_received: IntCounter,
    pub frames_dropped: IntCounter,
    pub callbacks: IntCounter,
    pub stream_errors: IntCounter,
    pub reconnects: IntCounter,
    pub state: IntGauge,
    pub last_callback_age: Gauge,
}

impl CaptureHandle {
    pub fn set_state(&self, s: CaptureState) {
        self.state.set(s as i64);
    }

    /// The device is gone (error storm or silence): log and flag it together.
    pub fn device_lost(&self, reason: &str) {
        tracing::warn!(monitor = %self.monitor, device = %self.device, reason, "capture device lost; reconnecting with backoff");
        self.set_state(CaptureState::Lost);
    }

    /// The device is back after `attempts` tries.
    pub fn device_recovered(&self, attempts: u32) {
        tracing::info!(monitor = %self.monitor, device = %self.device, attempts, "capture device recovered");
        self.reconnects.inc();
        self.set_state(CaptureState::Running);
    }
}

/// Metrics of one monitor's windowing/embedding pipeline.
#[derive(Clone)]
pub struct PipelineHandle {
    monitor: String,
    pub windows: IntCounter,
    pub embed_seconds: Histogram,
    pub lag_seconds: Gauge,
    pub shed: IntCounter,
    pub queue_depth: IntGauge,
}

impl PipelineHandle {
    /// One window scored, taking `embed_s` to embed.
    pub fn window_done(&self, embed_s: f64, lag_s: f64) {
        self.windows.inc();
        self.embed_seconds.observe(embed_s);
        self.lag_seconds.set(lag_s);
    }

    /// Windows dropped by the load-shedding policy; logged at warn because detection has gaps.
    pub fn windows_shed(&self, n: u64, lag_s: f64) {
        self.shed.inc_by(n);
        tracing::warn!(monitor = %self.monitor, windows = n, lag_s, "inference is behind real time; skipped windows to catch up");
    }
}

/// Score and decision metrics of one monitor.
#[derive(Clone)]
pub struct ScoreHandle {
    monitor: String,
    score: GaugeVec,
    threshold: GaugeVec,
    pub active: IntGauge,
    pub events: IntCounter,
}

impl ScoreHandle {
    /// Latest score and threshold of `scorer`.
    pub fn observe(&self, scorer: &str, score: f64, threshold: f64) {
        self.score
            .with_label_values(&[&self.monitor, scorer])
            .set(score);
        self.threshold
            .with_label_values(&[&self.monitor, scorer])
            .set(threshold);
    }

    /// An event started (true) or ended (false).
    pub fn set_anomaly(&self, open: bool) {
        if open {
            self.events.inc();
        }
        self.active.set(open as i64);
    }

    /// Updates the anomaly gauges from a decision (started/ended; ongoing changes nothing).
    pub fn decision(&self, ev: &crate::score::decide::DecisionEvent) {
        use crate::score::decide::DecisionKind;
        match ev.kind {
            DecisionKind::Started => self.set_anomaly(true),
            DecisionKind::Ended => self.set_anomaly(false),
            DecisionKind::Ongoing => {}
        }
    }
}

/// Metrics of one vector index backend.
#[derive(Clone)]
pub struct IndexHandle {
    backend: String,
    pub queries: IntCounter,
    pub failures: IntCounter,
    pub degraded: IntGauge,
    pub breaker: IntGauge,
    pub query_seconds: Histogram,
}

impl IndexHandle {
    pub fn query_ok(&self, seconds: f64) {
        self.queries.inc();
        self.query_seconds.observe(seconds);
    }

    pub fn query_failed(&self, seconds: f64) {
        self.queries.inc();
        self.failures.inc();
        self.query_seconds.observe(seconds);
    }

    /// Breaker transitions, logged together with the gauges.
    pub fn set_breaker(&self, s: BreakerState, why: &str) {
        if self.breaker.get() != s as i64 {
            match s {
                BreakerState::Open => {
                    tracing::warn!(backend = %self.backend, why, "vector index unavailable; k-NN scoring degraded")
                }
                BreakerState::HalfOpen => {
                    tracing::info!(backend = %self.backend, "probing vector index")
                }
                BreakerState::Closed => {
                    tracing::info!(backend = %self.backend, "vector index available again")
                }
            }
        }
        self.breaker.set(s as i64);
        self.degraded.set((s == BreakerState::Open) as i64);
    }
}

/// Metrics of one event sink.
#[derive(Clone)]
pub struct SinkHandle {
    pub written: IntCounter,
    pub failures: IntCounter,
}

/// What `/healthz` reports per monitor.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum MonitorStatus {
    Starting,
    Running,
    /// Running with reduced capability (e.g. k-NN off); counts as healthy.
    Degraded {
        reason: String,
    },
    /// Not scoring (device lost, failed to start, ...).
    Down {
        reason: String,
    },
    Stopped,
}

impl MonitorStatus {
    fn healthy(&self) -> bool {
        matches!(
            self,
            MonitorStatus::Running | MonitorStatus::Degraded { .. }
        )
    }
}

#[derive(Default)]
struct HealthInner {
    monitors: BTreeMap<String, MonitorStatus>,
    ready: bool,
}

/// Shared health state the daemon updates and the HTTP endpoint reads.
#[derive(Clone, Default)]
pub struct Health(Arc<parking_lot::RwLock<HealthInner>>);

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self, monitor: &str, status: MonitorStatus) {
        self.0.write().monitors.insert(monitor.to_string(), status);
    }

    pub fn remove(&self, monitor: &str) {
        self.0.write().monitors.remove(monitor);
    }

    /// Start-up finished (every monitor attempted); what `/readyz` reports.
    pub fn set_ready(&self, ready: bool) {
        self.0.write().ready = ready;
    }

    /// (healthy, JSON body) as served by `/healthz`.
    pub fn report(&self) -> (bool, serde_json::Value) {
        let g = self.0.read();
        let not_running: Vec<&String> = g
            .monitors
            .iter()
            .filter(|(_, s)| !s.healthy())
            .map(|(k, _)| k)
            .collect();
        let ok = !g.monitors.is_empty() && not_running.is_empty();
        let body = serde_json::json!({
            "status": if ok { "ok" } else { "unhealthy" },
            "monitors": g.monitors,
            "not_running": not_running,
            "reason": if g.monitors.is_empty() { Some("no monitors registered yet") } else { None },
        });
        (ok, body)
    }

    pub fn is_ready(&self) -> bool {
        self.0.read().ready
    }
}

/// The running HTTP endpoint; stops on [`MetricsServer::shutdown`] or when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Health,
}

impl MetricsServer {
    /// Binds `listen` and serves on the current tokio runtime. Binding happens before this
    /// returns, so a taken port is reported at start-up, not discovered by a failing scrape.
    pub async fn start(
        listen: SocketAddr,
        metrics: Arc<Metrics>,
        health: Health,
    ) -> Result<Self, MetricsError> {
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| MetricsError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| MetricsError::Bind {
            addr: listen,
            source,
        })?;
        let app = axum::Router::new()
            .route("/metrics", get(serve_metrics))
            .route("/healthz", get(serve_healthz))
            .route("/readyz", get(serve_readyz))
            .with_state(AppState { metrics, health });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "metrics endpoint stopped");
            }
        });
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
        Ok(Self {
            addr,
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for in-flight requests.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn serve_metrics(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        s.metrics.render(),
    )
}

fn json_response(ok: bool, body: serde_json::Value) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn serve_healthz(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> axum::response::Response {
    let (ok, body) = s.health.report();
    json_response(ok, body)
}

async fn serve_readyz(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> axum::response::Response {
    let ready = s.health.is_ready();
    json_response(ready, serde_json::json!({ "ready": ready }))
}
