//! The decision stage of a monitor: the no-signal state and the anomaly decider, and the one
//! place their results become events, metrics and health.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use super::Job;
use crate::alert::events::{Event, OperationalEvent, OperationalKind, Sinks};
use crate::metrics::{Lease, ScoreHandle, StatusHandle};
use crate::score::decide::{
    DecideConfig, Decider, DecisionEvent, DecisionKind, ScoreSample, ScoredWindow, TimeBase,
};
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
    /// This monitor instance's right to emit (see [`Lease`]).
    lease: Lease,
    /// Clips and spectrograms of this monitor's events (None: `[evidence] enabled = false`).
    evidence: Option<crate::evidence::writer::MonitorEvidence>,
    /// What events sound like (None: not wired, as in unit tests of the decisions alone).
    sounds_like: Option<super::sounds_like::SoundsLikeStage>,
    /// An event started by a single anomalous window, held back for one hop so that what it
    /// sounds like is looked up with the next window too (see [`Self::decide`]).
    held: Option<DecisionEvent>,
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
        lease: Lease,
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
            lease,
            evidence: None,
            sounds_like: None,
            held: None,
        }
    }

    pub(super) fn with_evidence(
        mut self,
        e: Option<crate::evidence::writer::MonitorEvidence>,
    ) -> Self {
        self.evidence = e;
        self
    }

    pub(super) fn with_sounds_like(mut self, s: super::sounds_like::SoundsLikeStage) -> Self {
        self.sounds_like = Some(s);
        self
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
                    // Detected with this window, but the silence began at `since_s`: that
                    // is when the state (and its alert) starts, the instant the text names.
                    .at_time(job.wall_at(since_s), None)
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

    /// Feeds one window (no scores and no embedding while there is no signal) to the decider;
    /// its decisions get what the event sounds like, then go to the evidence, the sinks and the
    /// anomaly metrics (each event counted once, on `started`).
    ///
    /// An event that a single window started (the transient rule, or a score far above its
    /// threshold on the first window of a fault) is held back for one hop when a sound
    /// catalog names events: that first window usually straddles the fault's onset, half
    /// normal machine, and the catalog's nearest sound to it is whatever catalog sound is
    /// closest to the normal machine (a loose part's quiet stretches between knocks, say).
    /// With the next window the lookup hears the fault itself. What is said at firing is never
    /// revised (see `sounds_like`), so it waits instead: one hop more on the alert of such
    /// events, within the latency target of window + hop; `detected` still says when the rule
    /// was met.
    pub(super) fn decide(
        &mut self,
        job: &Job,
        scores: &[ScoreSample<'_>],
        embedding: Option<&[f32]>,
    ) {
        let mut out = Vec::with_capacity(2);
        // A held start is looked up with this window when it has sound; a silent one clears
        // the lookup's windows, so it is remembered after: the start goes out on what it had.
        if embedding.is_some() {
            self.remember(job, scores, embedding);
        }
        if let Some(held) = self.held.take() {
            out.push(self.stamped(held));
        }
        if embedding.is_none() {
            self.remember(job, scores, embedding);
        }
        let w = ScoredWindow {
            start: job.start_s,
            end: job.end_s,
            wall_start: job.wall_start,
            wall_end: job.wall_end,
            decided_at: self.decided_at(job),
            scores,
        };
        if let Some(ev) = self.decider.push(&w) {
            let hold = ev.kind == DecisionKind::Started
                && self
                    .sounds_like
                    .as_ref()
                    .is_some_and(|s| s.wants_another_window());
            if hold {
                self.held = Some(ev);
            } else {
                out.push(self.stamped(ev));
            }
        }
        if let Some(e) = self.evidence.as_mut() {
            e.window(job.start_s, job.end_s, scores, &out);
        }
        for ev in out {
            self.metrics.decision(&ev);
            self.emit(Event::Anomaly(ev));
        }
    }

    fn remember(&mut self, job: &Job, scores: &[ScoreSample<'_>], embedding: Option<&[f32]>) {
        if let Some(s) = self.sounds_like.as_mut() {
            s.window(job.start_s, embedding, scores);
        }
    }

    /// A decision with what its event sounds like on it.
    fn stamped(&mut self, mut ev: DecisionEvent) -> DecisionEvent {
        if let Some(s) = self.sounds_like.as_mut() {
            s.stamp(&mut ev);
        }
        ev
    }

    /// Closes an open event (reason "shutdown"). A retired instance (its stop timed out and
    /// a successor may run under the same name) closes nothing: its event would be stale.
    pub(super) fn finish(&mut self) {
        let held = self.held.take().map(|ev| self.stamped(ev));
        let last = self.decider.finish().map(|ev| self.stamped(ev));
        let mut out: Vec<DecisionEvent> = held.into_iter().chain(last).collect();
        if !out.is_empty() {
            let emitted = self.lease.with(|| {
                let mut sinks = self.sinks.lock();
                for ev in &out {
                    self.metrics.decision(ev);
                    sinks.emit(&Event::Anomaly(ev.clone()));
                }
            });
            if emitted.is_none() {
                tracing::warn!(monitor = %self.name, "a monitor that was stopped late had an open event; not closing it over its successor");
                out.clear();
            }
        }
        // Writes the last clips (joins the writer thread): after the event's end is emitted.
        if let Some(mut e) = self.evidence.take() {
            e.finish(&out);
        }
    }

    fn emit(&self, ev: Event) {
        self.lease.with(|| self.sinks.lock().emit(&ev));
    }
}

fn severity(expected: bool) -> &'static str {
    if expected { "info" } else { "warning" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Health, Metrics};
    use crate::score::decide::DecideConfig;
    use std::time::{Duration, Instant};

    fn job(i: usize) -> Job {
        let start_s = i as f64 * 0.5;
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Job {
            start_s,
            end_s: start_s + 1.0,
            wall_start: t0 + Duration::from_secs_f64(start_s),
            wall_end: t0 + Duration::from_secs_f64(start_s + 1.0),
            start_sample: i as u64 * 16000,
            samples: Vec::new(),
            cut_at: Instant::now(),
        }
    }

    /// One event with ongoing updates, one no-signal spell: each counted once. (The old
    /// monitor counted a started event twice and every ongoing update once more.)
    #[test]
    fn one_event_and_its_updates_count_once() {
        let m = Metrics::new().unwrap();
        let cfg = DecideConfig {
            trigger_n: 1,
            trigger_m: 1,
            release_after: 2.0,
            ongoing_every: Some(1.0),
            ..DecideConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut stage = stage(&m, cfg, dir.path());
        let loud = [ScoreSample {
            scorer: "centroid",
            score: 2.0,
            threshold: 1.0,
            release: 0.8,
            transient: None,
            sustained: true,
        }];
        let quiet = [ScoreSample {
            score: 0.1,
            ..loud[0]
        }];
        let mut i = 0;
        for _ in 0..10 {
            assert!(stage.gate(&job(i), -20.0));
            stage.decide(&job(i), &loud, None);
            i += 1;
        }
        for _ in 0..10 {
            assert!(stage.gate(&job(i), -20.0));
            stage.decide(&job(i), &quiet, None);
            i += 1;
        }
        // Silence: not scored, no anomaly, one no-signal state.
        for _ in 0..10 {
            assert!(!stage.gate(&job(i), -200.0));
            stage.decide(&job(i), &[], None);
            i += 1;
        }
        assert!(stage.gate(&job(i), -20.0));
        stage.finish();
        let sm = m.score("press-1");
        assert_eq!(sm.events.get(), 1, "one event counted once");
        assert_eq!(sm.active.get(), 0);
        assert_eq!(sm.no_signal.get(), 0);
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        let kinds: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert!(
            kinds.iter().filter(|k| *k == "anomaly_ongoing").count() >= 3,
            "{kinds:?}"
        );
        assert_eq!(kinds.iter().filter(|k| *k == "anomaly_started").count(), 1);
        assert_eq!(kinds.iter().filter(|k| *k == "no_signal").count(), 1);
        assert_eq!(kinds.iter().filter(|k| *k == "signal_back").count(), 1);
    }

    /// A handle holding a catalog with one entry per (label, embedding).
    fn known(labels: &[(&str, [f32; 3])]) -> crate::daemon::sounds::KnownHandle {
        crate::daemon::sounds::KnownHandle::holding(crate::catalog::known::KnownSounds::new(
            crate::catalog::known::test_catalog(labels),
            Default::default(),
        ))
    }

    /// A decision stage for monitor `press-1` writing its events to `dir`.
    fn stage(m: &Metrics, cfg: DecideConfig, dir: &std::path::Path) -> DecisionStage {
        let health = Health::new();
        let status = m.status("press-1", &health);
        status.device(crate::metrics::DevicePart::Running);
        let labels = BTreeMap::from([("monitor".to_string(), "press-1".to_string())]);
        let sinks = Sinks::standard(dir, Default::default(), Some(m)).unwrap();
        DecisionStage::new(
            "press-1".into(),
            labels.clone(),
            Decider::new(cfg, labels).unwrap(),
            SignalGate::new(None, 1.0),
            TimeBase::Wall,
            m.score("press-1"),
            status,
            Arc::new(Mutex::new(sinks)),
            Lease::new(),
        )
    }

    fn kinds_and_labels(dir: &std::path::Path) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let label = v["event"]["sounds_like"]["labels"][0]["label"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                (v["kind"].as_str().unwrap().to_string(), label)
            })
            .collect()
    }

    /// An event that one window starts waits one window with a catalog in use, and is named
    /// from both: the first window (half the normal machine) is nearest to `loose part`, the
    /// next (the fault) to `bearing squeal`, and the alert says `bearing squeal`. Stopped
    /// while it waits, the start still goes out, before its end.
    #[test]
    fn a_start_made_by_one_window_waits_a_hop_for_its_name() {
        let run = |stop_early: bool| {
            let m = Metrics::new().unwrap();
            let cfg = DecideConfig {
                trigger_n: 1,
                trigger_m: 1,
                ..DecideConfig::default()
            };
            let dir = tempfile::tempdir().unwrap();
            let known = known(&[
                ("bearing squeal", [1.0, 0.0, 0.0]),
                ("loose part", [0.0, 1.0, 0.0]),
            ]);
            let mut stage = stage(&m, cfg, dir.path()).with_sounds_like(
                super::super::sounds_like::SoundsLikeStage::new(
                    "press-1",
                    known,
                    m.catalog().clone(),
                    1,
                ),
            );
            let sample = |score: f64| ScoreSample {
                scorer: "centroid",
                score,
                threshold: 1.0,
                release: 0.8,
                transient: None,
                sustained: true,
            };
            let (quiet, loud) = ([sample(0.1)], [sample(2.0)]);
            stage.decide(&job(0), &quiet, Some(&[0.0, 0.8, 0.6]));
            stage.decide(&job(1), &loud, Some(&[0.3, 0.9, 0.3]));
            let after_first = kinds_and_labels(dir.path());
            assert!(after_first.is_empty(), "went out at once: {after_first:?}");
            if stop_early {
                stage.finish();
                return kinds_and_labels(dir.path());
            }
            stage.decide(&job(2), &loud, Some(&[0.95, 0.1, 0.2]));
            let after_second = kinds_and_labels(dir.path());
            assert_eq!(after_second.len(), 1, "{after_second:?}");
            for i in 3..12 {
                stage.decide(&job(i), &quiet, Some(&[0.0, 0.8, 0.6]));
            }
            stage.finish();
            assert_eq!(m.score("press-1").events.get(), 1);
            kinds_and_labels(dir.path())
        };
        let full = run(false);
        assert_eq!(
            full[0],
            ("anomaly_started".into(), "bearing squeal".into()),
            "{full:?}"
        );
        assert_eq!(full.last().unwrap().0, "anomaly_ended", "{full:?}");
        // Stopped during the wait: named from the one window it had, then ended.
        let early = run(true);
        let kinds: Vec<&str> = early.iter().map(|k| k.0.as_str()).collect();
        assert_eq!(kinds, ["anomaly_started", "anomaly_ended"], "{early:?}");
        assert_eq!(early[0].1, "loose part");
    }

    /// Reconnects come from the source's own count, once per recovery.
    #[test]
    fn one_reconnect_counts_once() {
        let m = Metrics::new().unwrap();
        let cap = m.capture("press-1", "alsa:pulse");
        let mut prev = crate::capture::CaptureStats {
            state: crate::capture::SourceState::Running,
            device: "alsa:pulse".into(),
            frames_received: 0,
            frames_dropped: 0,
            callbacks: 0,
            stream_errors: 0,
            reconnects: 0,
            last_callback_age: None,
            lost_reason: None,
        };
        let mut now = prev.clone();
        now.reconnects = 1;
        cap.add_stats(&prev, &now);
        cap.device_lost("5000 stream errors within a second");
        cap.device_recovered(1);
        prev = now.clone();
        cap.add_stats(&prev, &now);
        assert_eq!(cap.reconnects.get(), 1);
    }
}
