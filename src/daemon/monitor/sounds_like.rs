//! "Sounds like" for one monitor: keeps the embeddings of its latest scored windows, looks
//! the anomalous ones up in the sound catalog when an event fires, and stamps the answer on
//! every message of that event.
//!
//! The answer is decided once, when the event goes out (a start that one window made waits
//! one hop for the next window: `DecisionStage::decide`), and not revised while the event is open or when it
//! resolves: Alertmanager pairs a resolved alert with its firing one by their labels, and a
//! benign match changes what is sent (nothing, or `severity = "info"`), so a label that
//! changed mid-event would leave receivers with a firing alert that never resolves, or a
//! resolution of an alert they never got. It is also what people were told when they were
//! paged. The cost: a fault that changes character later is still named by its beginning; its
//! evidence clip and spectrogram show the rest.

use std::collections::VecDeque;

use crate::catalog::known::{self, SoundsLike};
use crate::daemon::sounds::KnownHandle;
use crate::metrics::CatalogMetrics;
use crate::score::decide::{DecisionEvent, DecisionKind, ScoreSample};

/// At most this many recent windows are kept for the lookup, whatever `trigger_m` is.
const MAX_WINDOWS: usize = 32;

pub(super) struct SoundsLikeStage {
    monitor: String,
    known: KnownHandle,
    metrics: CatalogMetrics,
    /// The latest scored windows since the last silent one: (stream start, unit embedding,
    /// whether a score exceeded its threshold or transient level).
    recent: VecDeque<(f64, Vec<f32>, bool)>,
    keep: usize,
    /// The open event's answer (None: no catalog in use when it fired).
    current: Option<SoundsLike>,
}

impl SoundsLikeStage {
    /// `windows`: how many recent windows may hold an event's evidence (the decider's
    /// `trigger_m`).
    pub(super) fn new(
        monitor: &str,
        known: KnownHandle,
        metrics: CatalogMetrics,
        windows: usize,
    ) -> Self {
        let keep = windows.clamp(1, MAX_WINDOWS);
        Self {
            monitor: monitor.to_string(),
            known,
            metrics,
            recent: VecDeque::with_capacity(keep),
            keep,
            current: None,
        }
    }

    /// Remembers a window before the decider sees it. A window without an embedding (no
    /// signal) forgets the others: like the decider's histories, evidence on either side of
    /// a silence is not combined.
    pub(super) fn window(
        &mut self,
        start_s: f64,
        embedding: Option<&[f32]>,
        scores: &[ScoreSample<'_>],
    ) {
        let Some(e) = embedding else {
            self.recent.clear();
            return;
        };
        let anomalous = scores
            .iter()
            .any(|s| s.score > s.threshold || s.transient.is_some_and(|t| s.score > t));
        if self.recent.len() == self.keep {
            self.recent.pop_front();
        }
        self.recent.push_back((start_s, e.to_vec(), anomalous));
    }

    /// Whether an event starting now should wait a hop for its lookup: a catalog names
    /// events and at most one recent window exceeded (the event's only evidence is a window
    /// that usually straddles the onset; see `DecisionStage::decide`).
    pub(super) fn wants_another_window(&self) -> bool {
        self.known.current().is_some() && self.recent.iter().filter(|w| w.2).count() < 2
    }

    /// Puts the event's answer on a decision message: looked up (and counted) on `started`,
    /// copied onto `ongoing` and `ended`, forgotten after `ended`.
    pub(super) fn stamp(&mut self, ev: &mut DecisionEvent) {
        if ev.kind == DecisionKind::Started {
            self.current = self.look_up();
            let label = match (self.known.current(), &self.current) {
                (Some(k), s) => k.metric_label(s.as_ref()),
                (None, s) => known::metric_label(s.as_ref(), |_| false),
            };
            let benign = self.current.as_ref().is_some_and(|s| s.benign.is_some());
            self.metrics.event(&self.monitor, &label, benign);
            if let Some(s) = self.current.as_ref().filter(|s| s.benign.is_some()) {
                tracing::info!(
                    monitor = %self.monitor,
                    event_id = %ev.event_id,
                    sounds_like = %s.text(),
                    action = s.benign.map_or("", |a| a.as_str()),
                    "the event sounds like a benign label (catalog.benign): catalog.benign_action applies"
                );
            }
        }
        ev.sounds_like = self.current.clone();
        if ev.kind == DecisionKind::Ended {
            self.current = None;
        }
    }

    /// The catalog's answer for the anomalous windows among the recent ones (all recent ones
    /// if none exceeded: an event is always started by some window, so that is a fallback).
    fn look_up(&self) -> Option<SoundsLike> {
        let k = self.known.current()?;
        let mut windows: Vec<(f64, Vec<f32>)> = self
            .recent
            .iter()
            .filter(|w| w.2)
            .map(|w| (w.0, w.1.clone()))
            .collect();
        if windows.is_empty() {
            windows = self.recent.iter().map(|w| (w.0, w.1.clone())).collect();
        }
        if windows.is_empty() {
            return None;
        }
        match k.identify(&windows) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(monitor = %self.monitor, error = %e, "sound catalog lookup failed: this event carries no `sounds_like`");
                None
            }
        }
    }
}
