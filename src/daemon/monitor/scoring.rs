//! The embed/score stage of a monitor: for each window with a signal, log-mel + network ->
//! centroid distance and k-NN distance, each with the levels its profile calibrated, and the
//! window's impulse value (loudest 10 ms against the median 10 ms, on the same samples the
//! log-mel is computed from) against the profile's impulse level; the decision stage gets the
//! rest.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::Receiver;

use super::decision::DecisionStage;
use super::{Job, Shared};
use crate::daemon::notify::Progress;
use crate::dsp::impulse::impulse_db;
use crate::dsp::level::gate_level_dbfs;
use crate::embed::Embedder;
use crate::index::{IndexError, VectorIndex};
use crate::metrics::{DevicePart, IndexHandle, IndexPart, StatusHandle};
use crate::score::decide::ScoreSample;
use crate::score::impulse::IMPULSE;
use crate::score::{self, CENTROID, FUSED, KNN, MEL, Profile, WindowScores};

pub(super) struct EmbedLoop {
    pub name: String,
    pub index: Arc<dyn VectorIndex>,
    /// Notices `earshot feedback` changing the profile's normal memory (swapped in live).
    pub watch: super::memory::ProfileWatch,
    pub index_metrics: IndexHandle,
    pub rt: tokio::runtime::Handle,
    pub embedder: Embedder,
    pub profile: Profile,
    pub decision: DecisionStage,
    pub rx: Receiver<Job>,
    pub shared: Shared,
    pub status: StatusHandle,
    pub progress: Progress,
    pub ended: Arc<AtomicBool>,
    /// Set by `Monitor::stop`: queued windows are scored only for [`DRAIN_AT_STOP`] more.
    pub stop: Arc<AtomicBool>,
}

/// After a stop request, how long queued windows are still scored; the rest are consumed
/// unscored so the open event is closed ("shutdown") well within the stop timeout, however
/// short the hop (a queue of windows at a 10 ms hop can take longer to score than systemd
/// waits).
const DRAIN_AT_STOP: std::time::Duration = std::time::Duration::from_millis(400);

/// What the k-NN index is doing, as far as this monitor can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IndexMode {
    Ok,
    Degraded,
    Refused,
}

impl EmbedLoop {
    /// The k-NN score, or `None` when the index cannot answer: the window is then scored by
    /// its centroid distance alone. The index part of the monitor's state follows: degraded
    /// (a passing outage) or refused (the key is wrong: an error to fix), back to ok on the
    /// first answer. The breaker gauge shows the client's own breaker.
    /// The k-NN score and the nearest neighbour's id; `None` when the index did not answer.
    fn knn(&self, emb: &[f32], k: usize, mode: &mut IndexMode) -> Option<(f64, Option<String>)> {
        let t = Instant::now();
        let result = self.rt.block_on(self.index.knn(emb, k));
        if let Some(b) = self.index.breaker_state() {
            self.index_metrics
                .set_breaker(b.into(), "see the index log lines");
        }
        match result {
            Ok(n) => {
                self.index_metrics.query_ok(t.elapsed().as_secs_f64());
                if *mode != IndexMode::Ok {
                    *mode = IndexMode::Ok;
                    self.index_metrics.set_degraded(false);
                    self.index_metrics.set_refused(false);
                    self.status.index(IndexPart::Ok);
                    tracing::info!(monitor = %self.name, "k-NN index answers again: scoring by centroid and k-NN");
                }
                let nearest = n.first().map(|x| x.id.clone());
                crate::index::knn_score(&n).map(|v| (f64::from(v), nearest))
            }
            Err(e) => {
                self.index_metrics.query_failed(t.elapsed().as_secs_f64());
                let refused = matches!(e, IndexError::Auth { .. });
                if refused && *mode != IndexMode::Refused {
                    *mode = IndexMode::Refused;
                    self.index_metrics.set_degraded(true);
                    self.index_metrics.set_refused(true);
                    self.status.index(IndexPart::Refused {
                        reason: format!(
                            "k-NN index refuses the key ({e}); scoring by centroid alone"
                        ),
                    });
                    tracing::error!(monitor = %self.name, error = %e, "k-NN index refuses the key: fix the key; scoring by centroid alone");
                } else if *mode == IndexMode::Ok {
                    // While refused, later failures (the breaker short-circuiting) keep the
                    // error state: only an answer clears it.
                    *mode = IndexMode::Degraded;
                    self.index_metrics.set_degraded(true);
                    self.status.index(IndexPart::Degraded {
                        reason: format!("k-NN index unavailable ({e}); scoring by centroid alone"),
                    });
                    tracing::warn!(monitor = %self.name, error = %e, "k-NN index unavailable: scoring by centroid alone until it answers");
                }
                None
            }
        }
    }

    pub(super) fn run(mut self) {
        let pipe = self.shared.metrics.pipeline(&self.name);
        let sm = self.shared.metrics.score(&self.name);
        let thresholds = self.profile.manifest.thresholds.clone();
        let t_c = thresholds.get(CENTROID);
        let t_k = thresholds.get(KNN);
        let t_mel = thresholds.get(MEL);
        let t_fused = thresholds.get(FUSED);
        let knn_k = self.profile.manifest.knn_k;
        let rate = self.embedder.sample_rate();
        let cfg = self.decision.config().clone();
        let mut mode = IndexMode::Ok;
        let mut stopping: Option<Instant> = None;
        let mut unscored = 0u64;
        while let Ok(job) = self.rx.recv() {
            if self.stop.load(Ordering::Acquire)
                && stopping.get_or_insert_with(Instant::now).elapsed() > DRAIN_AT_STOP
            {
                // Keep receiving (a waiting replay must not block) but score no more.
                unscored += 1;
                continue;
            }
            if let Some(swap) = self.watch.poll(&self.profile, &self.name) {
                self.profile = swap.profile;
                if let Some(i) = swap.index {
                    self.index = i;
                }
                self.shared.metrics.memory_reloaded(&self.name);
            }
            let level = gate_level_dbfs(&job.samples, rate);
            if !self.decision.gate(&job, level) {
                // No signal: nothing to score (silence is not an anomaly), but the decider
                // still sees the window pass (an open event can end).
                self.decision.decide(&job, &[], None);
                self.progress.tick();
                continue;
            }
            let t0 = Instant::now();
            let out = match self.embedder.embed_at(job.start_sample, &job.samples) {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(monitor = %self.name, error = %e, "window could not be embedded; skipped");
                    continue;
                }
            };
            let embed_s = t0.elapsed().as_secs_f64();
            let mut emb = out.embedding;
            score::normalize(&mut emb);
            let c = f64::from(score::centroid::nearest_distance(
                &self.profile.centroids,
                &emb,
            ));
            let (k, nearest) = self.knn(&emb, knn_k, &mut mode).unzip();
            // The log-mel scorers on the log-mel the network was just fed (none without the
            // profile's statistics); `fused` needs the k-NN answer too.
            let ws = WindowScores::with_mel(
                c as f32,
                k.map(|v| v as f32),
                nearest.flatten().as_deref(),
                self.embedder.batch_logmel(0),
                &self.profile,
            );
            let mut samples = Vec::with_capacity(5);
            if let Some(t) = t_c {
                let s = ScoreSample::from_threshold(CENTROID, c, t, &cfg);
                sm.observe(CENTROID, c, s.threshold);
                samples.push(s);
            }
            if let (Some(k), Some(t)) = (k, t_k) {
                let s = ScoreSample::from_threshold(KNN, k, t, &cfg);
                sm.observe(KNN, k, s.threshold);
                samples.push(s);
            }
            for (name, v, t) in [(MEL, ws.mel, t_mel), (FUSED, ws.fused, t_fused)] {
                if let (Some(v), Some(t)) = (v, t) {
                    let v = f64::from(v);
                    let s = ScoreSample::from_threshold(name, v, t, &cfg);
                    sm.observe(name, v, s.threshold);
                    samples.push(s);
                }
            }
            let imp = impulse_db(&job.samples, rate);
            // Read per window: feedback may raise it (a live memory swap).
            if let Some(s) = self
                .profile
                .manifest
                .impulse
                .as_ref()
                .and_then(|l| ScoreSample::impulse(imp, l, &cfg))
            {
                sm.observe(IMPULSE, imp, s.threshold);
                samples.push(s);
            }
            tracing::debug!(monitor = %self.name, start_s = job.start_s, level_dbfs = level, centroid = c, knn = ?k, impulse_db = imp, "window scored");
            self.decision.decide(&job, &samples, Some(&emb));
            pipe.window_done(embed_s, job.cut_at.elapsed().as_secs_f64());
            pipe.queue_depth.set(self.rx.len() as i64);
            self.progress.tick();
        }
        if unscored > 0 {
            tracing::info!(monitor = %self.name, windows = unscored, "stopping: queued windows left unscored so the open event closes in time");
        }
        self.decision.finish();
        self.status.device(DevicePart::Stopped);
        self.ended.store(true, Ordering::Release);
    }
}
