//! Vector index metrics, per monitor and backend (monitors with their own index each have one).

use prometheus::{
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};

use super::names::*;
use super::{counter, histogram, igauge};

const QUERY_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Circuit breaker states of [`INDEX_BREAKER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum BreakerState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

impl From<crate::index::BreakerState> for BreakerState {
    fn from(s: crate::index::BreakerState) -> Self {
        match s {
            crate::index::BreakerState::Closed => BreakerState::Closed,
            crate::index::BreakerState::HalfOpen => BreakerState::HalfOpen,
            crate::index::BreakerState::Open => BreakerState::Open,
        }
    }
}

pub(super) struct IndexFamilies {
    queries: IntCounterVec,
    failures: IntCounterVec,
    degraded: IntGaugeVec,
    breaker: IntGaugeVec,
    refused: IntGaugeVec,
    seconds: HistogramVec,
}

const LABELS: &[&str] = &["monitor", "backend"];

impl IndexFamilies {
    pub(super) fn register(r: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            queries: counter(
                r,
                INDEX_QUERIES,
                "k-NN queries sent to the vector index.",
                LABELS,
            )?,
            failures: counter(
                r,
                INDEX_FAILURES,
                "k-NN queries that failed or timed out.",
                LABELS,
            )?,
            degraded: igauge(
                r,
                INDEX_DEGRADED,
                "1 while the index is unavailable and k-NN scoring is skipped.",
                LABELS,
            )?,
            breaker: igauge(
                r,
                INDEX_BREAKER,
                "The index client's circuit breaker: 0 closed, 1 half-open, 2 open.",
                LABELS,
            )?,
            refused: igauge(
                r,
                INDEX_REFUSED,
                "1 while the index refuses earshot's key (HTTP 401/403): an error to fix, not a passing outage.",
                LABELS,
            )?,
            seconds: histogram(
                r,
                INDEX_QUERY_SECONDS,
                "k-NN query latency.",
                LABELS,
                QUERY_BUCKETS,
            )?,
        })
    }

    pub(super) fn handle(&self, monitor: &str, backend: &str) -> IndexHandle {
        let l = &[monitor, backend];
        IndexHandle {
            monitor: monitor.to_string(),
            backend: backend.to_string(),
            queries: self.queries.with_label_values(l),
            failures: self.failures.with_label_values(l),
            degraded: self.degraded.with_label_values(l),
            breaker: self.breaker.with_label_values(l),
            refused: self.refused.with_label_values(l),
            query_seconds: self.seconds.with_label_values(l),
        }
    }
}

/// Metrics of one monitor's vector index.
#[derive(Clone)]
pub struct IndexHandle {
    monitor: String,
    backend: String,
    pub queries: IntCounter,
    pub failures: IntCounter,
    pub degraded: IntGauge,
    pub breaker: IntGauge,
    pub refused: IntGauge,
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

    /// Publishes the breaker's own state (read from the index client after each query).
    pub fn set_breaker(&self, s: BreakerState, why: &str) {
        if self.breaker.get() != s as i64 {
            match s {
                BreakerState::Open => {
                    tracing::warn!(monitor = %self.monitor, backend = %self.backend, why, "vector index circuit open; k-NN scoring degraded")
                }
                BreakerState::HalfOpen => {
                    tracing::info!(monitor = %self.monitor, backend = %self.backend, "probing vector index")
                }
                BreakerState::Closed => {
                    tracing::info!(monitor = %self.monitor, backend = %self.backend, "vector index circuit closed")
                }
            }
        }
        self.breaker.set(s as i64);
    }

    /// Whether k-NN scoring is currently skipped for this monitor.
    pub fn set_degraded(&self, degraded: bool) {
        self.degraded.set(degraded as i64);
    }

    /// Whether the index refuses the key.
    pub fn set_refused(&self, refused: bool) {
        self.refused.set(refused as i64);
    }
}
