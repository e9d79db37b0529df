//! Capture metrics of one monitor: what the device delivered, lost, and how loud it was.

use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use super::names::*;
use super::{counter, fgauge, igauge};
use crate::capture::CaptureStats;

/// Capture state values of [`CAPTURE_STATE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum CaptureState {
    Stopped = 0,
    Starting = 1,
    Running = 2,
    /// Device lost; reconnecting with backoff.
    Lost = 3,
}

pub(super) struct CaptureFamilies {
    received: IntCounterVec,
    dropped: IntCounterVec,
    callbacks: IntCounterVec,
    errors: IntCounterVec,
    reconnects: IntCounterVec,
    state: IntGaugeVec,
    age: GaugeVec,
    rms: GaugeVec,
    peak: GaugeVec,
    clipped: IntCounterVec,
}

impl CaptureFamilies {
    pub(super) fn register(r: &Registry) -> prometheus::Result<Self> {
        let md = &["monitor", "device"];
        let m = &["monitor"];
        Ok(Self {
            received: counter(
                r,
                CAPTURE_FRAMES_RECEIVED,
                "Audio frames delivered by the capture callback.",
                md,
            )?,
            dropped: counter(
                r,
                CAPTURE_FRAMES_DROPPED,
                "Audio frames dropped because the ring buffer was full.",
                md,
            )?,
            callbacks: counter(r, CAPTURE_CALLBACKS, "Capture callbacks received.", md)?,
            errors: counter(
                r,
                CAPTURE_STREAM_ERRORS,
                "Errors reported by the audio stream.",
                md,
            )?,
            reconnects: counter(
                r,
                CAPTURE_RECONNECTS,
                "Successful reopenings of a lost capture device.",
                md,
            )?,
            state: igauge(
                r,
                CAPTURE_STATE,
                "Capture state: 0 stopped, 1 starting, 2 running, 3 lost (reconnecting).",
                md,
            )?,
            age: fgauge(
                r,
                CAPTURE_LAST_CALLBACK_AGE,
                "Seconds since the last capture callback.",
                md,
            )?,
            rms: fgauge(
                r,
                INPUT_RMS,
                "RMS level of the monitor's input over the last second, dBFS (-200 = digital silence).",
                m,
            )?,
            peak: fgauge(
                r,
                INPUT_PEAK,
                "Peak level of the monitor's input over the last second, dBFS.",
                m,
            )?,
            clipped: counter(
                r,
                INPUT_CLIPPED,
                "Input samples at or beyond full scale (|x| >= 0.999): lower the input gain if this rises.",
                m,
            )?,
        })
    }

    pub(super) fn forget(&self, monitor: &str) {
        let _ = self.rms.remove_label_values(&[monitor]);
        let _ = self.peak.remove_label_values(&[monitor]);
        let _ = self.clipped.remove_label_values(&[monitor]);
    }

    pub(super) fn handle(&self, monitor: &str, device: &str) -> CaptureHandle {
        let l = &[monitor, device];
        let m = &[monitor];
        CaptureHandle {
            monitor: monitor.to_string(),
            device: device.to_string(),
            frames_received: self.received.with_label_values(l),
            frames_dropped: self.dropped.with_label_values(l),
            callbacks: self.callbacks.with_label_values(l),
            stream_errors: self.errors.with_label_values(l),
            reconnects: self.reconnects.with_label_values(l),
            state: self.state.with_label_values(l),
            last_callback_age: self.age.with_label_values(l),
            input_rms_dbfs: self.rms.with_label_values(m),
            input_peak_dbfs: self.peak.with_label_values(m),
            clipped_samples: self.clipped.with_label_values(m),
        }
    }
}

/// Metrics of one capture stream. The counters are lock-free atomics, but the audio callback
/// should still count locally and add here from the consumer side, off the real-time thread.
#[derive(Clone)]
pub struct CaptureHandle {
    monitor: String,
    device: String,
    pub frames_received: IntCounter,
    pub frames_dropped: IntCounter,
    pub callbacks: IntCounter,
    pub stream_errors: IntCounter,
    /// Incremented only by [`CaptureHandle::add_stats`], from the source's own count.
    pub reconnects: IntCounter,
    pub state: IntGauge,
    pub last_callback_age: Gauge,
    pub input_rms_dbfs: Gauge,
    pub input_peak_dbfs: Gauge,
    pub clipped_samples: IntCounter,
}

impl CaptureHandle {
    pub fn set_state(&self, s: CaptureState) {
        self.state.set(s as i64);
    }

    /// Adds what the source counted between two snapshots: the one place the capture
    /// counters (reconnects included) grow.
    pub fn add_stats(&self, prev: &CaptureStats, now: &CaptureStats) {
        let d = |a: u64, b: u64| b.saturating_sub(a);
        self.frames_received
            .inc_by(d(prev.frames_received, now.frames_received));
        self.frames_dropped
            .inc_by(d(prev.frames_dropped, now.frames_dropped));
        self.callbacks.inc_by(d(prev.callbacks, now.callbacks));
        self.stream_errors
            .inc_by(d(prev.stream_errors, now.stream_errors));
        self.reconnects.inc_by(d(prev.reconnects, now.reconnects));
        if let Some(age) = now.last_callback_age {
            self.last_callback_age.set(age.as_secs_f64());
        }
    }

    /// The level of the input over the last second (dBFS) and samples clipped in it.
    pub fn input_level(&self, rms_dbfs: f64, peak_dbfs: f64, clipped: u64) {
        self.input_rms_dbfs.set(rms_dbfs);
        self.input_peak_dbfs.set(peak_dbfs);
        self.clipped_samples.inc_by(clipped);
    }

    /// The device is gone: log (with the real cause) and flag it together.
    pub fn device_lost(&self, reason: &str) {
        tracing::warn!(monitor = %self.monitor, device = %self.device, reason, "capture device lost; reconnecting with backoff");
        self.set_state(CaptureState::Lost);
    }

    /// The device is back after `attempts` tries (the reconnect itself is counted by
    /// [`CaptureHandle::add_stats`]).
    pub fn device_recovered(&self, attempts: u32) {
        tracing::info!(monitor = %self.monitor, device = %self.device, attempts, "capture device recovered");
        self.set_state(CaptureState::Running);
    }
}
