//! The decision stage of a monitor: the no-signal state and the anomaly decider, and the one
//! place their results become events, metrics and health.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use super::Job;
use crate::alert::events::{Event, OperationalEvent, OperationalKind, Sinks};
use crate::metrics::{ScoreHandle, StatusHandle};
use crate::score::decide::{DecideConfig, Decider, ScoreSample, ScoredWindow, TimeBase};
use crate::score::signal::{SignalChange, SignalGate};

pub(super) struct DecisionStage {
    name: String,
    labels: BTreeMap<String, String>,
    decider: Decider,
    gate: SignalGate,
    time_base: TimeBase,
    metrics: ScoreHandle,
    status: StatusHandle,
    sinks: Arc<Mutex<Sinks>>,
}

impl DecisionStage {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        name: String,
        labels: BTreeMap<String, String>,
        decider: Decider,
        gate: SignalGate,
        time_base: TimeBase,
        metrics: ScoreHandle,
        status: StatusHandle,
        sinks: Arc<Mutex<Sinks>>,
    ) -> Self {
        metrics.set_no_signal(false);
        metrics.active.set(0);
        Self {
            name,
            labels,
            decider,
            gate,
            time_base,
            metrics,
            status,
            sinks,
        }
    }

    pub(super) fn config(&self) -> &DecideConfig {
        self.decider.config()
    }

    fn decided_at(&self, job: &Job) -> SystemTime {
        match self.time_base {
            TimeBase::Stream => job.wall_end,
            TimeBase::Wall => SystemTime::now(),
        }
    }

    /// Judges the window's level; false when it has no signal (and must not be scored).
    /// Entering or leaving the no-signal state is published here (metric, health, event).
    pub(super) fn gate(&mut self, job: &Job, level_dbfs: f64) -> bool {
        let (signal, change) = self.gate.push(job.start_s, job.end_s, level_dbfs);
        let expected = self.decider.config().no_signal_is_normal;
        match change {
            Some(SignalChange::Lost { since_s }) => {
                let floor = self.gate.floor_dbfs();
                let detail = format!(
                    "input below {floor:.1} dBFS (quieter than the normal audio it learned from) since stream {since_s:.2} s: device or machine off{}",
                    if expected {
                        " (a stopped machine is normal for this monitor)"
                    } else {
                        ""
                    }
                );
                if expected {
                    tracing::info!(monitor = %self.name, "no signal: {detail}");
                } else {
                    tracing::warn!(monitor = %self.name, "no signal: {detail}");
                }
                self.metrics.set_no_signal(true);
                self.status.no_signal(Some((detail.clone(), expected)));
                self.emit(Event::Operational(
                    OperationalEvent::now(
                        OperationalKind::NoSignal,
                        self.labels.clone(),
                        None,
                        detail,
                    )
                    .at_time(job.wall_start, None)
                    .with_severity(severity(expected)),
                ));
            }
            Some(SignalChange::Back { at_s }) => {
                tracing::info!(monitor = %self.name, at_s, "signal back");
                self.metrics.set_no_signal(false);
                self.status.no_signal(None);
                self.emit(Event::Operational(
                    OperationalEvent::now(
                        OperationalKind::SignalBack,
                        self.labels.clone(),
                        None,
                        format!("signal back at stream {at_s:.2} s"),
                    )
                    .at_time(job.wall_start, None)
                    .with_severity(severity(expected)),
                ));
            }
            None => {}
        }
        signal
    }

    /// Feeds one window (no scores while there is no signal) to the decider; its decisions
    /// go to the sinks and the anomaly metrics (each event counted once, on `started`).
    pub(super) fn decide(&mut self, job: &Job, scores: &[ScoreSample<'_>]) {
        let w = ScoredWindow {
            start: job.start_s,
            end: job.end_s,
            wall_start: job.wall_start,
            wall_end: job.wall_end,
            decided_at: self.decided_at(job),
            scores,
        };
        if let Some(ev) = self.decider.push(&w) {
            self.metrics.decision(&ev);
            self.emit(Event::Anomaly(ev));
        }
    }

    /// Closes an open event (reason "shutdown").
    pub(super) fn finish(&mut self) {
        if let Some(ev) = self.decider.finish() {
            self.metrics.decision(&ev);
            self.emit(Event::Anomaly(ev));
        }
    }

    fn emit(&self, ev: Event) {
        self.sinks.lock().emit(&ev);
    }
}

fn severity(expected: bool) -> &'static str {
    if expected { "info" } else { "warning" }
}
