//! Metrics of alert delivery and the outbox, registered into earshot's registry
//! ([`crate::metrics::Metrics::registry`]). Named here, in one place, like the rest of earshot's
//! metrics; the dashboard and the alert rules use these names (`tests/dashboards.rs` checks).

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

pub mod names {
    /// Delivery attempts by `target` and `outcome` (`delivered`, `failed`: will be retried,
    /// `rejected`: the receiver refused it for good (4xx), dropped).
    pub const DELIVERIES: &str = "earshot_alert_deliveries_total";
    /// Retries scheduled after a failed attempt, by `target`.
    pub const RETRIES: &str = "earshot_alert_retries_total";
    /// Alerts waiting in the outbox, by `target`.
    pub const OUTBOX_DEPTH: &str = "earshot_alert_outbox_depth";
    /// Age of the oldest waiting alert, by `target` (0 when none wait).
    pub const OUTBOX_OLDEST_AGE: &str = "earshot_alert_outbox_oldest_age_seconds";
    /// Alerts discarded by the outbox caps, by `target` and `reason` (`age`, `size`).
    pub const OUTBOX_DISCARDED: &str = "earshot_alert_outbox_discarded_total";
    /// Outbox writes that failed (disk full, I/O error): those alerts live only in memory.
    pub const OUTBOX_WRITE_FAILURES: &str = "earshot_alert_outbox_write_failures_total";
    /// Bytes of pending alerts in the outbox.
    pub const OUTBOX_BYTES: &str = "earshot_alert_outbox_bytes";

    pub const ALL: &[&str] = &[
        DELIVERIES,
        RETRIES,
        OUTBOX_DEPTH,
        OUTBOX_OLDEST_AGE,
        OUTBOX_DISCARDED,
        OUTBOX_WRITE_FAILURES,
        OUTBOX_BYTES,
    ];
}

/// The delivery outcomes of [`names::DELIVERIES`].
pub const OUTCOMES: &[&str] = &["delivered", "failed", "rejected"];
/// The discard reasons of [`names::OUTBOX_DISCARDED`].
pub const DISCARD_REASONS: &[&str] = &["age", "size"];

/// Handles of the alert metrics.
#[derive(Clone)]
pub struct AlertMetrics {
    pub deliveries: IntCounterVec,
    pub retries: IntCounterVec,
    pub depth: IntGaugeVec,
    pub oldest_age: IntGaugeVec,
    pub discarded: IntCounterVec,
    pub write_failures: IntCounter,
    pub bytes: IntGauge,
}

impl AlertMetrics {
    /// Registers the alert metrics in `r`.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<_> {
            let m = IntCounterVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(m.clone()))?;
            Ok(m)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<_> {
            let m = IntGaugeVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(m.clone()))?;
            Ok(m)
        };
        let write_failures = IntCounter::new(
            names::OUTBOX_WRITE_FAILURES,
            "Alert outbox writes that failed (disk full?); those alerts are kept in memory only",
        )?;
        r.register(Box::new(write_failures.clone()))?;
        let bytes = IntGauge::new(names::OUTBOX_BYTES, "Bytes of alerts waiting in the outbox")?;
        r.register(Box::new(bytes.clone()))?;
        Ok(Self {
            deliveries: counter(
                names::DELIVERIES,
                "Alert delivery attempts by target and outcome",
                &["target", "outcome"],
            )?,
            retries: counter(
                names::RETRIES,
                "Alert delivery retries scheduled, by target",
                &["target"],
            )?,
            depth: gauge(
                names::OUTBOX_DEPTH,
                "Alerts waiting in the outbox, by target",
                &["target"],
            )?,
            oldest_age: gauge(
                names::OUTBOX_OLDEST_AGE,
                "Age in seconds of the oldest alert waiting for a target",
                &["target"],
            )?,
            discarded: counter(
                names::OUTBOX_DISCARDED,
                "Alerts discarded by the outbox caps, by target and reason (age, size)",
                &["target", "reason"],
            )?,
            write_failures,
            bytes,
        })
    }

    /// Makes every series of `target` exist (at 0), so dashboards and rate() see it from the
    /// start rather than from its first failure.
    pub fn init_target(&self, target: &str) {
        for o in OUTCOMES {
            self.deliveries.with_label_values(&[target, o]);
        }
        for r in DISCARD_REASONS {
            self.discarded.with_label_values(&[target, r]);
        }
        self.retries.with_label_values(&[target]);
        self.depth.with_label_values(&[target]).set(0);
        self.oldest_age.with_label_values(&[target]).set(0);
    }
}
