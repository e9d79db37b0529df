//! Pipeline metrics of one monitor: windows scored, embedding time, lag, shedding.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Registry,
};

use super::names::*;
use super::{counter, fgauge, histogram, igauge};

const EMBED_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub(super) struct PipelineFamilies {
    windows: IntCounterVec,
    embed: HistogramVec,
    lag: GaugeVec,
    shed: IntCounterVec,
    queue: IntGaugeVec,
}

impl PipelineFamilies {
    pub(super) fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = &["monitor"];
        Ok(Self {
            windows: counter(r, PIPELINE_WINDOWS, "Windows embedded and scored.", m)?,
            embed: histogram(
                r,
                PIPELINE_EMBED_SECONDS,
                "Time to embed one window (log-mel + model).",
                m,
                EMBED_BUCKETS,
            )?,
            lag: fgauge(
                r,
                PIPELINE_LAG,
                "How far scoring runs behind the audio it scores, in seconds.",
                m,
            )?,
            shed: counter(
                r,
                PIPELINE_SHED,
                "Windows skipped because inference fell behind (load shedding).",
                m,
            )?,
            queue: igauge(
                r,
                PIPELINE_QUEUE_DEPTH,
                "Windows waiting for the embedding worker.",
                m,
            )?,
        })
    }

    pub(super) fn forget(&self, monitor: &str) {
        let _ = self.windows.remove_label_values(&[monitor]);
        let _ = self.lag.remove_label_values(&[monitor]);
        let _ = self.shed.remove_label_values(&[monitor]);
        let _ = self.queue.remove_label_values(&[monitor]);
        let _ = self.embed.remove_label_values(&[monitor]);
    }

    pub(super) fn handle(&self, monitor: &str) -> PipelineHandle {
        let l = &[monitor];
        PipelineHandle {
            monitor: monitor.to_string(),
            windows: self.windows.with_label_values(l),
            embed_seconds: self.embed.with_label_values(l),
            lag_seconds: self.lag.with_label_values(l),
            shed: self.shed.with_label_values(l),
            queue_depth: self.queue.with_label_values(l),
        }
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
