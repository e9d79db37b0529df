//! The capture stage of a monitor: source blocks -> mono -> resample -> windows, stamped by
//! the monitor's clock and queued for scoring; device state, input level and capture counters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::{Job, Shared};
use crate::alert::events::{Event, OperationalEvent, OperationalKind};
use crate::capture::{self, CaptureError, Source, SourceState};
use crate::daemon::clock::Clock;
use crate::daemon::notify::Progress;
use crate::dsp::{self, ChannelMap, StreamResampler, Windower};
use crate::metrics::{CaptureHandle, CaptureState, DevicePart, StatusHandle};

/// Level of the input over about a second (for the input level metrics).
#[derive(Default)]
struct LevelMeter {
    sum_sq: f64,
    n: u64,
    peak: f32,
    clipped: u64,
}

impl LevelMeter {
    fn add(&mut self, x: &[f32]) {
        for &v in x {
            let a = v.abs();
            self.sum_sq += f64::from(v) * f64::from(v);
            self.peak = self.peak.max(a);
            if a >= 0.999 {
                self.clipped += 1;
            }
        }
        self.n += x.len() as u64;
    }

    /// Publishes and resets; nothing when no audio came (the gauges keep their last value,
    /// and the device state tells why).
    fn publish(&mut self, cap: &CaptureHandle) {
        if self.n == 0 {
            return;
        }
        let rms = (self.sum_sq / self.n as f64).sqrt();
        cap.input_level(
            dsp::level::to_dbfs(rms),
            dsp::level::to_dbfs(f64::from(self.peak)),
            self.clipped,
        );
        *self = Self::default();
    }
}

pub(super) struct CaptureLoop {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub source: Box<dyn Source>,
    pub map: ChannelMap,
    pub rate: u32,
    pub window_samples: usize,
    pub hop_samples: usize,
    pub live: bool,
    pub clock: Clock,
    pub tx: Sender<Job>,
    /// Lets the producer drop the oldest queued window when inference is behind.
    pub drop_rx: Receiver<Job>,
    pub stop: Arc<AtomicBool>,
    pub shared: Shared,
    pub status: StatusHandle,
    pub progress: Progress,
    /// This monitor instance's right to emit events (see [`crate::metrics::Lease`]).
    pub lease: crate::metrics::Lease,
    /// The evidence clip recorder: gets the mono audio at the capture rate.
    pub recorder: Option<Arc<parking_lot::Mutex<crate::evidence::ClipRecorder>>>,
}

impl CaptureLoop {
    pub(super) fn run(mut self) {
        let cap = self
            .shared
            .metrics
            .capture(&self.name, &self.source.stats().device);
        let pipe = self.shared.metrics.pipeline(&self.name);
        let mut resampler: Option<StreamResampler> = None;
        let mut windower = Windower::new(self.window_samples, self.hop_samples);
        let mut mono = Vec::new();
        let mut resampled = Vec::new();
        let mut next_frame: Option<u64> = None;
        let mut last_stats = Instant::now();
        let mut last_state = SourceState::Starting;
        let mut lost_since: Option<SystemTime> = None;
        let mut prev = self.source.stats();
        let mut shed_pending = 0u64;
        let mut meter = LevelMeter::default();
        let mut first_block = true;
        let rate = f64::from(self.rate);
        while !self.stop.load(Ordering::Acquire) {
            let block = match self.source.next_block(Duration::from_millis(100)) {
                Ok(b) => b,
                Err(CaptureError::Ended) => {
                    tracing::info!(monitor = %self.name, "source ended");
                    break;
                }
                Err(e) => {
                    tracing::error!(monitor = %self.name, error = %e, "source failed; monitor stops");
                    self.status.device(DevicePart::Failed {
                        reason: e.to_string(),
                    });
                    cap.set_state(CaptureState::Stopped);
                    return;
                }
            };
            if let Some(b) = block {
                let arrival = SystemTime::now();
                if let ChannelMap::Select(c) = self.map
                    && c >= b.channels
                {
                    // Clamping to the last channel would listen to another machine.
                    let reason = format!(
                        "monitor {}: `channel` = {c}, but the device delivers {} channel(s) (0 to {}); fix `source.channel`",
                        self.name,
                        b.channels,
                        b.channels.saturating_sub(1)
                    );
                    tracing::error!(monitor = %self.name, "{reason}");
                    self.status.device(DevicePart::Failed { reason });
                    cap.set_state(CaptureState::Stopped);
                    return;
                }
                if first_block {
                    // Audio flows: the device part of the state is known before the first
                    // once-a-second look (a short fast replay may end before it).
                    first_block = false;
                    cap.set_state(CaptureState::Running);
                    self.status.device(DevicePart::Running);
                }
                // A new rate (another device) or a gap in the frames: a fresh resampler, so
                // audio from before the gap is never spliced into the windows after it, and a
                // fresh clock anchor from the real arrival of the audio.
                let rate_changed = resampler
                    .as_ref()
                    .is_none_or(|r| r.rates().0 != b.sample_rate);
                let gap_frames = match next_frame {
                    Some(expected) if b.first_frame > expected && !rate_changed => {
                        b.first_frame - expected
                    }
                    _ => 0,
                };
                if rate_changed || gap_frames > 0 {
                    match StreamResampler::new(b.sample_rate, self.rate) {
                        Ok(r) => resampler = Some(r),
                        Err(e) => {
                            tracing::error!(monitor = %self.name, error = %e, "cannot resample this source");
                            self.status.device(DevicePart::Failed {
                                reason: format!("cannot resample: {e}"),
                            });
                            return;
                        }
                    }
                    // Windows must not straddle the hole (and none spans a rate change).
                    let gap = (gap_frames as f64 * rate / f64::from(b.sample_rate)).round() as u64;
                    windower.gap(gap);
                    self.clock.gap();
                }
                let Some(rs) = resampler.as_mut() else { break };
                next_frame = Some(b.first_frame + b.frames() as u64);
                mono.clear();
                dsp::to_mono(&b.samples, b.channels, self.map, &mut mono);
                for v in &mut mono {
                    if !v.is_finite() {
                        *v = 0.0;
                    }
                }
                meter.add(&mono);
                if let Some(r) = &self.recorder {
                    r.lock().push(&mono, b.sample_rate, gap_frames);
                }
                resampled.clear();
                if let Err(e) = rs.push(&mono, &mut resampled) {
                    tracing::error!(monitor = %self.name, error = %e, "resampling failed");
                    break;
                }
                let mut cut = Vec::new();
                windower.push(&resampled, |start, w| cut.push((start, w.to_vec())));
                self.clock
                    .observe(windower.position() as f64 / rate, arrival);
                for (start, samples) in cut {
                    let job = self.job(start, samples);
                    if !self.send(job, &mut shed_pending, &pipe) {
                        return;
                    }
                }
                pipe.queue_depth.set(self.tx.len() as i64);
            }
            if last_stats.elapsed() >= Duration::from_secs(1) {
                last_stats = Instant::now();
                if shed_pending > 0 {
                    pipe.windows_shed(shed_pending, pipe.lag_seconds.get());
                    shed_pending = 0;
                }
                meter.publish(&cap);
                let st = self.source.stats();
                cap.add_stats(&prev, &st);
                if st.reconnects > prev.reconnects
                    && lost_since.is_none()
                    && matches!(last_state, SourceState::Running)
                    && matches!(st.state, SourceState::Running)
                {
                    // Lost and reopened between two of these once-a-second looks: the loss
                    // must still be reported (as lost, then recovered).
                    self.state_changed(&cap, last_state, SourceState::Lost, &st, &mut lost_since);
                    self.state_changed(&cap, SourceState::Lost, st.state, &st, &mut lost_since);
                }
                if st.state != last_state {
                    self.state_changed(&cap, last_state, st.state, &st, &mut lost_since);
                    last_state = st.state;
                }
                if !matches!(st.state, SourceState::Running) {
                    // The supervisor is alive and working on the device: not a hang.
                    self.progress.tick();
                }
                prev = st;
            }
        }
        if let Some(rs) = resampler.as_mut() {
            // End of stream: whatever completes a last window is scored too.
            resampled.clear();
            if rs.flush(&mut resampled).is_ok() {
                let mut cut = Vec::new();
                windower.push(&resampled, |start, w| cut.push((start, w.to_vec())));
                for (start, samples) in cut {
                    let job = self.job(start, samples);
                    let _ = self.tx.send(job);
                }
            }
        }
        if let Some(r) = &self.recorder {
            r.lock().source_ended();
        }
        cap.set_state(CaptureState::Stopped);
    }

    /// A window cut at stream sample `start`, stamped by the clock.
    fn job(&self, start: u64, samples: Vec<f32>) -> Job {
        let rate = f64::from(self.rate);
        let start_s = start as f64 / rate;
        let end_s = (start as usize + samples.len()) as f64 / rate;
        Job {
            start_s,
            end_s,
            wall_start: self.clock.wall(start_s),
            wall_end: self.clock.wall(end_s),
            start_sample: start,
            samples,
            cut_at: Instant::now(),
        }
    }

    /// Queues a window; a live source drops the oldest waiting one when the queue is full.
    /// False when the scoring stage is gone.
    fn send(
        &self,
        job: Job,
        shed_pending: &mut u64,
        pipe: &crate::metrics::PipelineHandle,
    ) -> bool {
        if !self.live {
            return self.tx.send(job).is_ok();
        }
        let mut job = job;
        loop {
            match self.tx.try_send(job) {
                Ok(()) => return true,
                Err(TrySendError::Full(j)) => {
                    if let Ok(old) = self.drop_rx.try_recv() {
                        *shed_pending += 1;
                        pipe.lag_seconds.set(old.cut_at.elapsed().as_secs_f64());
                    }
                    job = j;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
    }

    fn state_changed(
        &self,
        cap: &CaptureHandle,
        from: SourceState,
        to: SourceState,
        st: &capture::CaptureStats,
        lost_since: &mut Option<SystemTime>,
    ) {
        match to {
            SourceState::Running => {
                cap.set_state(CaptureState::Running);
                self.status.device(DevicePart::Running);
                if matches!(from, SourceState::Lost | SourceState::Reconnecting) {
                    cap.device_recovered(st.reconnects as u32);
                    self.emit(OperationalEvent::now(
                        OperationalKind::DeviceRecovered,
                        self.labels.clone(),
                        lost_since.take(),
                        format!("{} is delivering audio again", st.device),
                    ));
                }
            }
            SourceState::Lost | SourceState::Reconnecting => {
                cap.set_state(CaptureState::Lost);
                if lost_since.is_none() {
                    *lost_since = Some(SystemTime::now());
                    // The real cause, as the source found it (an error storm, no audio, the
                    // device reporting itself gone).
                    let cause = st
                        .lost_reason
                        .clone()
                        .unwrap_or_else(|| "the device stopped delivering audio".into());
                    cap.device_lost(&cause);
                    self.status.device(DevicePart::Lost {
                        reason: format!("device {} lost ({cause}); reconnecting", st.device),
                    });
                    self.emit(OperationalEvent::now(
                        OperationalKind::DeviceLost,
                        self.labels.clone(),
                        None,
                        format!("{} lost: {cause}; reconnecting with backoff", st.device),
                    ));
                }
            }
            SourceState::Starting => cap.set_state(CaptureState::Starting),
            SourceState::Ended => cap.set_state(CaptureState::Stopped),
        }
    }

    fn emit(&self, ev: OperationalEvent) {
        self.lease
            .with(|| self.shared.sinks.lock().emit(&Event::Operational(ev)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::events::Sinks;
    use crate::capture::{Block, CaptureStats};
    use crate::metrics::{Health, Metrics};
    use parking_lot::Mutex;

    const RATE: u32 = 16_000;

    /// 50 ms blocks in real time; after `gap_after` blocks it goes silent for `pause` and then
    /// resumes with `first_frame` jumped by an *estimated* outage of `estimate` (as a device
    /// source does after a reconnect).
    struct Gappy {
        n: usize,
        frame: u64,
        gap_after: usize,
        pause: Duration,
        estimate: Duration,
        total: usize,
    }

    impl Source for Gappy {
        fn describe(&self) -> String {
            "test source".into()
        }
        fn next_block(&mut self, _: Duration) -> Result<Option<Block>, CaptureError> {
            if self.n == self.total {
                return Err(CaptureError::Ended);
            }
            std::thread::sleep(Duration::from_millis(50));
            if self.n == self.gap_after {
                std::thread::sleep(self.pause);
                self.frame += (self.estimate.as_secs_f64() * f64::from(RATE)) as u64;
            }
            self.n += 1;
            let frames = RATE as usize / 20;
            let b = Block {
                samples: vec![0.1; frames],
                channels: 1,
                sample_rate: RATE,
                first_frame: self.frame,
            };
            self.frame += frames as u64;
            Ok(Some(b))
        }
        fn stats(&self) -> CaptureStats {
            CaptureStats {
                state: SourceState::Running,
                device: "test".into(),
                frames_received: 0,
                frames_dropped: 0,
                callbacks: 0,
                stream_errors: 0,
                reconnects: 0,
                last_callback_age: None,
                lost_reason: None,
            }
        }
    }

    /// After a simulated reconnect whose outage the source overestimates by 1.5 s, windows are
    /// stamped from the real arrival of their audio: never in the future, never late.
    #[test]
    fn windows_after_a_reconnect_are_stamped_from_the_arrival_of_audio() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let health = Health::new();
        let shared = Shared {
            metrics: metrics.clone(),
            health: health.clone(),
            sinks: Arc::new(Mutex::new(Sinks::new())),
            evidence: None,
            known: Default::default(),
        };
        let (tx, rx) = crossbeam_channel::bounded::<Job>(64);
        let lp = CaptureLoop {
            name: "m".into(),
            labels: BTreeMap::new(),
            source: Box::new(Gappy {
                n: 0,
                frame: 0,
                gap_after: 30,
                pause: Duration::from_millis(500),
                estimate: Duration::from_secs(2),
                total: 70,
            }),
            map: ChannelMap::Downmix,
            rate: RATE,
            window_samples: RATE as usize,
            hop_samples: RATE as usize / 2,
            live: true,
            clock: Clock::live(),
            tx,
            drop_rx: rx.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            shared,
            status: metrics.status("m", &health),
            progress: Progress::default(),
            lease: crate::metrics::Lease::new(),
            recorder: None,
        };
        let t = std::thread::spawn(move || lp.run());
        let mut after_gap = 0;
        while let Ok(job) = rx.recv() {
            let now = SystemTime::now();
            assert!(job.wall_end <= now, "window end stamped in the future");
            let late = now.duration_since(job.wall_end).unwrap();
            // The window is cut the moment its last block arrives.
            assert!(
                late < Duration::from_millis(250),
                "stamped {late:?} early (window at stream {} s)",
                job.end_s
            );
            let d = job
                .wall_end
                .duration_since(job.wall_start)
                .unwrap()
                .as_secs_f64();
            assert!((d - 1.0).abs() < 0.01, "{d}");
            if job.start_s > 2.0 {
                after_gap += 1;
            }
        }
        t.join().unwrap();
        assert!(
            after_gap >= 2,
            "windows after the gap were scored: {after_gap}"
        );
    }
}
