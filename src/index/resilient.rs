//! Degraded mode for remote indexes: the audio path must never wait on the network.
//!
//! [`ResilientIndex`] wraps any [`VectorIndex`] with
//! - a per-query timeout (a late answer is useless: the window is already scored);
//! - a concurrency bound that drops excess queries (`Busy`) instead of queueing them;
//! - a circuit breaker: after `failure_threshold` consecutive failures it opens and answers
//!   `Unavailable` at once for `open_ms`; then a single probe query is let through (half-open)
//!   and success closes it again.
//!
//! The daemon maps `IndexError::is_degraded()` errors to "centroid only" scoring. State changes
//! are logged once each (not per query); [`ResilientIndex::health`] is cheap for metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::config::{AzureConfig, BreakerConfig};
use super::{IndexError, Neighbor, VectorIndex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Queries go to the index.
    Closed,
    /// Queries fail fast until the open period ends.
    Open,
    /// One probe is in flight; others fail fast until it answers.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Snapshot for metrics and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexHealth {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub total_failures: u64,
    pub total_queries: u64,
    /// Queries answered fast without calling the index (breaker open or busy).
    pub short_circuited: u64,
    /// How many times the breaker opened.
    pub opened: u64,
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Breaker {
    state: BreakerState,
    consecutive_failures: u32,
    open_until: Option<Instant>,
    total_failures: u64,
    total_queries: u64,
    short_circuited: u64,
    opened: u64,
    last_error: Option<String>,
}

pub struct ResilientIndex {
    inner: Arc<dyn VectorIndex>,
    timeout: Duration,
    permits: Semaphore,
    max_concurrency: usize,
    cfg: BreakerConfig,
    breaker: Mutex<Breaker>,
}

enum Admit {
    Normal,
    Probe,
}

impl ResilientIndex {
    pub fn new(inner: Arc<dyn VectorIndex>, cfg: &AzureConfig) -> Self {
        Self::with_limits(
            inner,
            Duration::from_millis(cfg.timeout_ms),
            cfg.max_concurrency,
            cfg.breaker,
        )
    }

    pub fn with_limits(
        inner: Arc<dyn VectorIndex>,
        timeout: Duration,
        max_concurrency: usize,
        cfg: BreakerConfig,
    ) -> Self {
        let max_concurrency = max_concurrency.max(1);
        ResilientIndex {
            inner,
            timeout,
            permits: Semaphore::new(max_concurrency),
            max_concurrency,
            cfg,
            breaker: Mutex::new(Breaker {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                open_until: None,
                total_failures: 0,
                total_queries: 0,
                short_circuited: 0,
                opened: 0,
                last_error: None,
            }),
        }
    }

    pub fn health(&self) -> IndexHealth {
        let b = self.breaker.lock();
        IndexHealth {
            state: b.state,
            consecutive_failures: b.consecutive_failures,
            total_failures: b.total_failures,
            total_queries: b.total_queries,
            short_circuited: b.short_circuited,
            opened: b.opened,
            last_error: b.last_error.clone(),
        }
    }

    fn admit(&self) -> Result<Admit, IndexError> {
        let mut b = self.breaker.lock();
        b.total_queries += 1;
        match b.state {
            BreakerState::Closed => Ok(Admit::Normal),
            BreakerState::Open if b.open_until.is_some_and(|t| Instant::now() >= t) => {
                b.state = BreakerState::HalfOpen;
                tracing::info!(index = %self.inner.describe(), "index circuit half-open: probing");
                Ok(Admit::Probe)
            }
            BreakerState::Open | BreakerState::HalfOpen => {
                b.short_circuited += 1;
                Err(IndexError::Unavailable {
                    last_error: b.last_error.clone().unwrap_or_default(),
                })
            }
        }
    }

    fn record(&self, probe: bool, outcome: &Result<Vec<Neighbor>, IndexError>) {
        let mut b = self.breaker.lock();
        match outcome {
            Ok(_) => {
                b.consecutive_failures = 0;
                if b.state != BreakerState::Closed {
                    b.state = BreakerState::Closed;
                    b.open_until = None;
                    tracing::info!(index = %self.inner.describe(), "index circuit closed: k-NN scoring resumed");
                }
            }
            Err(e) => {
                b.total_failures += 1;
                b.consecutive_failures = b.consecutive_failures.saturating_add(1);
                b.last_error = Some(e.to_string());
                let trip = probe || b.consecutive_failures >= self.cfg.failure_threshold;
                if trip && (b.state != BreakerState::Open) {
                    b.state = BreakerState::Open;
                    b.opened += 1;
                    b.open_until = Some(Instant::now() + Duration::from_millis(self.cfg.open_ms));
                    tracing::warn!(
                        index = %self.inner.describe(),
                        failures = b.consecutive_failures,
                        error = %e,
                        retry_in_ms = self.cfg.open_ms,
                        "index circuit open: scoring by centroid only"
                    );
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl VectorIndex for ResilientIndex {
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn describe(&self) -> String {
        format!(
            "{} (timeout {} ms, max {} in flight)",
            self.inner.describe(),
            self.timeout.as_millis(),
            self.max_concurrency
        )
    }

    fn breaker_state(&self) -> Option<BreakerState> {
        Some(self.breaker.lock().state)
    }

    async fn knn(&self, query: &[f32], k: usize) -> Result<Vec<Neighbor>, IndexError> {
        let admit = self.admit()?;
        let probe = matches!(admit, Admit::Probe);
        let Ok(_permit) = self.permits.try_acquire() else {
            let mut b = self.breaker.lock();
            b.short_circuited += 1;
            if probe {
                // Give the probe back: the next query will try again.
                b.state = BreakerState::Open;
            }
            return Err(IndexError::Busy(self.max_concurrency));
        };
        let outcome = match tokio::time::timeout(self.timeout, self.inner.knn(query, k)).await {
            Ok(r) => r,
            Err(_) => Err(IndexError::Timeout(self.timeout.as_millis() as u64)),
        };
        // Caller mistakes (wrong dimension, bad query) say nothing about the service's health.
        let service_fault = match &outcome {
            Ok(_) => true,
            Err(e) => !matches!(e, IndexError::Dimension { .. } | IndexError::Config(_)),
        };
        if service_fault {
            self.record(probe, &outcome);
        } else if probe {
            self.breaker.lock().state = BreakerState::Open;
        }
        outcome
    }
}
