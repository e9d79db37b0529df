//! Score and decision metrics of one monitor.

use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use super::names::*;
use super::{counter, fgauge, igauge};
use crate::score::decide::{DecisionEvent, DecisionKind};

pub(super) struct ScoreFamilies {
    score: GaugeVec,
    threshold: GaugeVec,
    active: IntGaugeVec,
    events: IntCounterVec,
    no_signal: IntGaugeVec,
}

impl ScoreFamilies {
    pub(super) fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = &["monitor"];
        Ok(Self {
            score: fgauge(
                r,
                SCORE,
                "Latest anomaly score of a window, per scorer.",
                &["monitor", "scorer"],
            )?,
            threshold: fgauge(
                r,
                SCORE_THRESHOLD,
                "Threshold in force, per scorer.",
                &["monitor", "scorer"],
            )?,
            active: igauge(r, ANOMALY_ACTIVE, "1 while an anomaly event is open.", m)?,
            events: counter(r, ANOMALY_EVENTS, "Anomaly events started.", m)?,
            no_signal: igauge(
                r,
                NO_SIGNAL,
                "1 while the input is below the profile's level floor (device or machine off); never an anomaly.",
                m,
            )?,
        })
    }

    pub(super) fn forget(&self, monitor: &str) {
        let _ = self.active.remove_label_values(&[monitor]);
        let _ = self.events.remove_label_values(&[monitor]);
        let _ = self.no_signal.remove_label_values(&[monitor]);
    }

    pub(super) fn handle(&self, monitor: &str) -> ScoreHandle {
        ScoreHandle {
            monitor: monitor.to_string(),
            score: self.score.clone(),
            threshold: self.threshold.clone(),
            active: self.active.with_label_values(&[monitor]),
            events: self.events.with_label_values(&[monitor]),
            no_signal: self.no_signal.with_label_values(&[monitor]),
        }
    }
}

/// Score and decision metrics of one monitor.
#[derive(Clone)]
pub struct ScoreHandle {
    monitor: String,
    score: GaugeVec,
    threshold: GaugeVec,
    pub active: IntGauge,
    /// Incremented only by [`ScoreHandle::set_anomaly`]`(true)`, which the daemon reaches only
    /// through [`ScoreHandle::decision`] on a `started` message: once per event.
    pub events: IntCounter,
    pub no_signal: IntGauge,
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

    /// An event started (true: counted) or ended (false).
    pub fn set_anomaly(&self, open: bool) {
        if open {
            self.events.inc();
        }
        self.active.set(open as i64);
    }

    /// Updates the anomaly gauges from a decision (started/ended; ongoing changes nothing).
    pub fn decision(&self, ev: &DecisionEvent) {
        match ev.kind {
            DecisionKind::Started => self.set_anomaly(true),
            DecisionKind::Ended => self.set_anomaly(false),
            DecisionKind::Ongoing => {}
        }
    }

    /// The no-signal state of the monitor.
    pub fn set_no_signal(&self, no_signal: bool) {
        self.no_signal.set(no_signal as i64);
    }
}
