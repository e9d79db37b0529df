//! Delivery: the sink that puts alerts into the outbox, and one tokio task per target that
//! takes them out in order and posts them, with retries.
//!
//! The scoring thread only appends to the outbox (one write + fdatasync, one disk flush)
//! and wakes the target tasks: it never waits on the network. Each target task delivers its
//! alerts strictly in outbox order (so the firing and resolved alerts of an event arrive in
//! order), one at a time; a failed attempt is retried after an exponential backoff with
//! jitter (`retry_initial` doubling to `retry_max`, a random 50-100 % of it so that many edge
//! PCs do not retry in lockstep after a shared receiver comes back), or after the receiver's
//! `Retry-After` if that is longer. A 4xx answer other than 408/429 means the receiver will
//! never take this alert: it is dropped, logged and counted as `rejected` rather than block
//! every later alert. A target's outage does not hold up the other targets.
//!
//! Alertmanager targets also re-send every firing alert each `resend_interval` with `endsAt`
//! four intervals ahead (what Prometheus does), so Alertmanager keeps it firing while the
//! event lasts and resolves it by itself if earshot dies; the resolved alert carries the
//! event's real end.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::config::{AlertConfigError, AlertsConfig, Secret, TargetConfig, kind_selected};
use super::events::{AlertStatus, Emitted, Event, EventSink, SinkError};
use super::metrics::AlertMetrics;
use super::outbox::{Caps, Discarded, Outbox, OutboxError, now_ms};
use super::payload::{self, Alert, WebhookContext};

/// Failures starting alert delivery.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Config(#[from] AlertConfigError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("cannot register alert metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("alerts.{key}: cannot build the HTTP client: {source}")]
    Client { key: String, source: reqwest::Error },
}

/// Longest `Retry-After` honoured: a bogus header must not stall a target for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How often caps by age are applied and the outbox gauges refreshed.
const HOUSEKEEPING: Duration = Duration::from_secs(5);

struct TargetSlot {
    name: String,
    kinds: Vec<String>,
    wake: Arc<Notify>,
}

/// What the sink and the tasks share.
struct Inner {
    outbox: Mutex<Outbox>,
    metrics: AlertMetrics,
    targets: Vec<TargetSlot>,
}

impl Inner {
    fn count_discards(&self, d: &[Discarded]) {
        for x in d {
            self.metrics
                .discarded
                .with_label_values(&[&x.target, x.reason])
                .inc();
        }
        if let Some(first) = d.first() {
            tracing::warn!(
                count = d.len(),
                target = %first.target,
                reason = first.reason,
                "alert outbox full or alerts too old: discarded the oldest (see earshot_alert_outbox_discarded_total)"
            );
        }
    }

    fn update_gauges(&self) {
        let (stats, bytes) = {
            let ob = self.outbox.lock();
            (ob.stats(), ob.live_bytes())
        };
        let now = now_ms();
        for t in &self.targets {
            let (depth, oldest) = stats.get(&t.name).copied().unwrap_or((0, now));
            self.metrics
                .depth
                .with_label_values(&[&t.name])
                .set(depth as i64);
            self.metrics
                .oldest_age
                .with_label_values(&[&t.name])
                .set((now.saturating_sub(oldest) / 1000) as i64);
        }
        self.metrics.bytes.set(bytes as i64);
    }
}

/// Running alert delivery: the outbox, the target tasks and the sink that feeds them.
pub struct Alerting {
    inner: Arc<Inner>,
    drain: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    grace: Duration,
}

impl Alerting {
    /// Opens the outbox in `state_dir`, reads the targets' secrets and starts one task per
    /// target on the current tokio runtime. `None` when no target is configured.
    pub fn start(
        cfg: &AlertsConfig,
        state_dir: &Path,
        registry: &prometheus::Registry,
    ) -> Result<Option<Alerting>, AlertError> {
        if !cfg.any() {
            return Ok(None);
        }
        cfg.validate()?;
        let metrics = AlertMetrics::register(registry)?;
        let mut workers = Vec::new();
        let mut slots = Vec::new();
        for (key, t, is_am) in cfg.targets() {
            let url = t.resolve_url(&key)?;
            let secret = if is_am { None } else { t.resolve_secret(&key)? };
            let client = reqwest::Client::builder()
                .timeout(t.timeout)
                .build()
                .map_err(|source| AlertError::Client {
                    key: key.clone(),
                    source,
                })?;
            let wake = Arc::new(Notify::new());
            metrics.init_target(&t.name);
            slots.push(TargetSlot {
                name: t.name.clone(),
                kinds: t.kinds.clone(),
                wake: wake.clone(),
            });
            workers.push(Worker::new(
                t,
                is_am,
                url,
                secret,
                client,
                wake,
                cfg.external_url.clone(),
            ));
        }
        let caps = Caps {
            max_age: cfg.max_age,
            max_bytes: cfg.max_bytes,
        };
        let (outbox, rec) = Outbox::open(state_dir, caps)?;
        let path = outbox.path().to_path_buf();
        let inner = Arc::new(Inner {
            outbox: Mutex::new(outbox),
            metrics,
            targets: slots,
        });
        let discarded = inner.outbox.lock().enforce_caps(now_ms());
        inner.count_discards(&discarded);
        inner.update_gauges();
        let names: Vec<&str> = inner.targets.iter().map(|t| t.name.as_str()).collect();
        tracing::info!(outbox = %path.display(), pending = rec.pending, targets = ?names, "alert delivery started");
        let (drain, drain_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for w in workers {
            tasks.push(tokio::spawn(w.run(inner.clone(), drain_rx.clone())));
        }
        tasks.push(tokio::spawn(housekeeping(inner.clone(), drain_rx)));
        Ok(Some(Alerting {
            inner,
            drain,
            tasks,
            grace: cfg.shutdown_grace,
        }))
    }

    /// The event sink feeding this delivery (add it to [`super::events::Sinks`]).
    pub fn sink(&self) -> OutboxSink {
        OutboxSink {
            inner: self.inner.clone(),
        }
    }

    /// Delivers what it can within the shutdown grace, then stops; the rest stays in the
    /// outbox for the next start.
    pub async fn shutdown(self) {
        let _ = self.drain.send(true);
        for t in &self.inner.targets {
            t.wake.notify_one();
        }
        let deadline = tokio::time::Instant::now() + self.grace;
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
        self.inner.update_gauges();
        let mut ob = self.inner.outbox.lock();
        ob.sync();
        if !ob.is_empty() {
            tracing::warn!(
                pending = ob.len(),
                "alerts not yet delivered stay in the outbox and are sent at the next start"
            );
        }
    }
}

/// The [`EventSink`] that enqueues each event's alert for every target whose `kinds` match.
pub struct OutboxSink {
    inner: Arc<Inner>,
}

impl EventSink for OutboxSink {
    fn name(&self) -> &'static str {
        "alerts"
    }

    fn emit(&mut self, event: &Event) -> Result<Emitted, SinkError> {
        // A benign event with `catalog.benign_action = "record"` is written by the other
        // sinks but alerts no one; every message of the event carries the same verdict, so
        // receivers get neither its firing nor its resolution.
        if let Event::Anomaly(d) = event
            && d.sounds_like
                .as_ref()
                .is_some_and(|s| s.suppresses_alerts())
        {
            return Ok(Emitted::Skipped);
        }
        let record = event.to_record();
        let alert = Alert::from_record(&record);
        let list: Vec<(String, Alert)> = self
            .inner
            .targets
            .iter()
            .filter(|t| kind_selected(&t.kinds, &record.kind))
            .map(|t| (t.name.clone(), alert.clone()))
            .collect();
        if list.is_empty() {
            return Ok(Emitted::Skipped);
        }
        let (_, discarded, res) = self.inner.outbox.lock().put(list, now_ms());
        self.inner.count_discards(&discarded);
        for t in &self.inner.targets {
            t.wake.notify_one();
        }
        self.inner.update_gauges();
        res.map_err(|e| {
            self.inner.metrics.write_failures.inc();
            match e {
                OutboxError::Write { path, source, kept } => SinkError::Write {
                    path,
                    source: std::io::Error::new(
                        source.kind(),
                        format!(
                            "{source}; {kept} alert(s) kept in memory only: delivered unless earshot stops first"
                        ),
                    ),
                },
                other => SinkError::Write {
                    path: self.inner.outbox.lock().path().to_path_buf(),
                    source: std::io::Error::other(other.to_string()),
                },
            }
        })?;
        Ok(Emitted::Written)
    }
}

/// Applies the age cap and refreshes the gauges (oldest age grows while nothing happens).
async fn housekeeping(inner: Arc<Inner>, mut drain: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HOUSEKEEPING) => {}
            r = drain.changed() => if r.is_err() || *drain.borrow() { return; },
        }
        let d = inner.outbox.lock().enforce_caps(now_ms());
        inner.count_discards(&d);
        inner.update_gauges();
    }
}

/// Why an attempt failed.
#[derive(Debug)]
enum SendError {
    /// Try again later (network error, timeout, 408, 429, 5xx).
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// The receiver refuses this alert for good (other 4xx).
    Rejected(String),
}

enum Kind {
    Webhook {
        secret: Option<Secret>,
        signature_header: HeaderName,
    },
    Alertmanager {
        resend_interval: Duration,
        /// Firing alerts delivered and not yet resolved, by event: re-sent periodically.
        active: BTreeMap<String, Alert>,
    },
}

struct Worker {
    name: String,
    url: Secret,
    client: reqwest::Client,
    headers: HeaderMap,
    retry_initial: Duration,
    retry_max: Duration,
    external_url: String,
    wake: Arc<Notify>,
    kind: Kind,
}

impl Worker {
    fn new(
        t: &TargetConfig,
        is_am: bool,
        url: Secret,
        secret: Option<Secret>,
        client: reqwest::Client,
        wake: Arc<Notify>,
        external_url: String,
    ) -> Worker {
        let mut headers = HeaderMap::new();
        for (k, v) in &t.headers {
            // Checked by validate().
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.insert(k, v);
            }
        }
        let kind = if is_am {
            Kind::Alertmanager {
                resend_interval: t.resend_interval,
                active: BTreeMap::new(),
            }
        } else {
            Kind::Webhook {
                secret,
                signature_header: HeaderName::from_bytes(t.signature_header.as_bytes())
                    .unwrap_or(HeaderName::from_static("x-earshot-signature")),
            }
        };
        Worker {
            name: t.name.clone(),
            url,
            client,
            headers,
            retry_initial: t.retry_initial,
            retry_max: t.retry_max,
            external_url,
            wake,
            kind,
        }
    }

    async fn run(mut self, inner: Arc<Inner>, mut drain: watch::Receiver<bool>) {
        let resend_every = match &self.kind {
            Kind::Alertmanager {
                resend_interval, ..
            } => *resend_interval,
            Kind::Webhook { .. } => Duration::from_secs(3600 * 24 * 365),
        };
        let mut resend =
            tokio::time::interval_at(tokio::time::Instant::now() + resend_every, resend_every);
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u32;
        loop {
            let next = inner.outbox.lock().next_for(&self.name);
            let Some(entry) = next else {
                if *drain.borrow() {
                    return;
                }
                let resend_due = tokio::select! {
                    _ = self.wake.notified() => false,
                    r = drain.changed() => if r.is_err() { return; } else { false },
                    _ = resend.tick() => true,
                };
                if resend_due {
                    self.resend(&inner).await;
                }
                continue;
            };
            let delivered = |outcome: &str| {
                inner
                    .metrics
                    .deliveries
                    .with_label_values(&[&self.name, outcome])
                    .inc()
            };
            match self.send(&entry.alert).await {
                Ok(()) => {
                    delivered("delivered");
                    if failures > 0 {
                        tracing::info!(target_name = %self.name, after_failures = failures, "alert target reachable again");
                    }
                    failures = 0;
                    if let Kind::Alertmanager { active, .. } = &mut self.kind {
                        let id = entry.alert.event_id().to_string();
                        match entry.alert.status {
                            AlertStatus::Firing => {
                                active.insert(id, entry.alert.clone());
                            }
                            AlertStatus::Resolved => {
                                active.remove(&id);
                            }
                        }
                    }
                    self.ack(&inner, entry.seq);
                }
                Err(SendError::Rejected(why)) => {
                    delivered("rejected");
                    tracing::error!(target_name = %self.name, kind = %entry.alert.kind, event_id = entry.alert.event_id(), error = %why, "alert refused by the receiver for good: dropped (check the receiver's log and the target's url)");
                    failures = 0;
                    self.ack(&inner, entry.seq);
                }
                Err(SendError::Retry { why, after }) => {
                    delivered("failed");
                    inner.metrics.retries.with_label_values(&[&self.name]).inc();
                    let delay = backoff(failures, self.retry_initial, self.retry_max, after);
                    failures = failures.saturating_add(1);
                    if failures.is_power_of_two() || failures.is_multiple_of(50) {
                        tracing::warn!(target_name = %self.name, attempt = failures, retry_in_ms = delay.as_millis() as u64, error = %why, "alert delivery failed; retrying (the alert waits in the outbox)");
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn ack(&self, inner: &Inner, seq: u64) {
        if let Err(e) = inner.outbox.lock().ack(&[seq]) {
            tracing::error!(error = %e, "alert outbox: cannot record a delivery; the alert may be sent again after a restart");
        }
        inner.update_gauges();
    }

    async fn send(&self, alert: &Alert) -> Result<(), SendError> {
        match &self.kind {
            Kind::Webhook {
                secret,
                signature_header,
            } => {
                let ctx = WebhookContext {
                    receiver: &self.name,
                    external_url: &self.external_url,
                };
                let body = serde_json::to_vec(&payload::webhook_payload(alert, &ctx))
                    .map_err(|e| SendError::Rejected(e.to_string()))?;
                let mut req = self
                    .client
                    .post(self.url.expose())
                    .headers(self.headers.clone())
                    .header(CONTENT_TYPE, "application/json");
                if let Some(s) = secret {
                    req = req.header(
                        signature_header.clone(),
                        payload::signature(s.expose().as_bytes(), &body),
                    );
                }
                self.finish(req.body(body)).await
            }
            Kind::Alertmanager {
                resend_interval, ..
            } => {
                let until = firing_until(*resend_interval);
                let body = serde_json::Value::Array(vec![payload::alertmanager_alert(
                    alert,
                    &until,
                    &self.external_url,
                )]);
                self.finish(self.am_request(&body)).await
            }
        }
    }

    fn am_request(&self, body: &serde_json::Value) -> reqwest::RequestBuilder {
        let url = format!("{}/api/v2/alerts", self.url.expose().trim_end_matches('/'));
        self.client
            .post(url)
            .headers(self.headers.clone())
            .json(body)
    }

    async fn finish(&self, req: reqwest::RequestBuilder) -> Result<(), SendError> {
        let resp = req.send().await.map_err(|e| SendError::Retry {
            // Without the URL: it may hold a token.
            why: e.without_url().to_string(),
            after: None,
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text: String = resp
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        let why = format!("HTTP {status}: {}", text.trim());
        if status.is_client_error()
            && status != StatusCode::REQUEST_TIMEOUT
            && status != StatusCode::TOO_MANY_REQUESTS
        {
            Err(SendError::Rejected(why))
        } else {
            Err(SendError::Retry { why, after })
        }
    }

    /// Re-sends every firing alert to Alertmanager with a fresh `endsAt`.
    async fn resend(&mut self, inner: &Inner) {
        let Kind::Alertmanager {
            resend_interval,
            active,
        } = &self.kind
        else {
            return;
        };
        if active.is_empty() {
            return;
        }
        let until = firing_until(*resend_interval);
        let body = serde_json::Value::Array(
            active
                .values()
                .map(|a| payload::alertmanager_alert(a, &until, &self.external_url))
                .collect(),
        );
        let outcome = match self.finish(self.am_request(&body)).await {
            Ok(()) => "delivered",
            Err(e) => {
                tracing::warn!(target_name = %self.name, error = ?e, "re-sending firing alerts to Alertmanager failed; next try in resend_interval");
                "failed"
            }
        };
        inner
            .metrics
            .deliveries
            .with_label_values(&[&self.name, outcome])
            .inc();
    }
}

/// `endsAt` of a firing alert sent now: four resend intervals ahead, as Prometheus does, so
/// that three lost resends in a row do not resolve it.
fn firing_until(resend_interval: Duration) -> String {
    humantime::format_rfc3339_millis(SystemTime::now() + resend_interval * 4).to_string()
}

/// Delay before retry number `failures` (0-based): `initial * 2^failures` capped at `max`,
/// scaled by a random 50-100 % (jitter), and at least the receiver's `Retry-After`.
pub fn backoff(
    failures: u32,
    initial: Duration,
    max: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = initial.saturating_mul(1u32 << failures.min(20)).min(max);
    let jittered = exp.mul_f64(rand::rng().random_range(0.5..=1.0));
    match retry_after {
        Some(r) => jittered.max(r.min(MAX_RETRY_AFTER)),
        None => jittered,
    }
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(60));
        for f in 0..10u32 {
            let want = Duration::from_secs(1 << f).min(m);
            for _ in 0..50 {
                let d = backoff(f, i, m, None);
                assert!(d >= want / 2 && d <= want, "{f}: {d:?} vs {want:?}");
            }
        }
        // Jitter really varies.
        let ds: std::collections::BTreeSet<u128> = (0..20)
            .map(|_| backoff(5, i, m, None).as_millis())
            .collect();
        assert!(ds.len() > 5, "{ds:?}");
        assert_eq!(
            backoff(0, i, m, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(
            backoff(0, i, m, Some(Duration::from_secs(1 << 20))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        let later = SystemTime::now() + Duration::from_secs(90);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(
            d > Duration::from_secs(85) && d <= Duration::from_secs(90),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
