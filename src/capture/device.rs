//! Live capture from a cpal input device, with loss detection and reconnection.
//!
//! Three kinds of thread, so that nothing the audio backend does can block the consumer:
//! - a *stream thread* per opening: builds the cpal stream (which is not `Send` on some hosts),
//!   plays it, then waits for the order to stop and drops it. If the drop hangs (it can, inside
//!   libpulse, when the server dies) the thread is abandoned after `drop_timeout` and logged.
//! - one *supervisor* per source: opens, watches for loss (a storm of stream errors, a fatal
//!   error kind, or no data callback for `stall_timeout`), tears down, and retries with
//!   exponential backoff. A device missing at start-up goes through the same retry loop.
//! - the audio backend's own callback thread, which only writes into the [`ring`].
//!
//! The consumer ([`DeviceSource::next_block`]) reads the ring of the current stream; each new
//! stream after a loss hands over a fresh ring, and `first_frame` jumps by the (estimated)
//! length of the outage so downstream windows never join audio across it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use parking_lot::Mutex;

use super::open::{OpenError, choose_config, find_device};
use super::ring::{self, RingCounters, RingReader};
use super::settings::{DeviceSettings, SampleFormat};
use super::{Block, CaptureError, CaptureStats, Source, SourceState};

/// State shared by the consumer, the supervisor and the callbacks of every stream.
struct Shared {
    counters: Arc<RingCounters>,
    stream_errors: AtomicU64,
    reconnects: AtomicU64,
    state: Mutex<SourceState>,
    /// Why the stream was last declared lost.
    lost_reason: Mutex<Option<String>>,
    device: Mutex<String>,
    describe: Mutex<String>,
    shutdown: AtomicBool,
}

impl Shared {
    fn set_state(&self, s: SourceState) {
        *self.state.lock() = s;
    }
}

/// Errors seen by one stream's error callback (which may run on the audio thread: atomics and a
/// `try_lock` only).
#[derive(Default)]
struct StreamErrors {
    count: AtomicU64,
    fatal: AtomicBool,
    first: Mutex<Option<cpal::Error>>,
}

impl StreamErrors {
    fn record(&self, shared: &Shared, e: cpal::Error) {
        self.count.fetch_add(1, Ordering::Relaxed);
        shared.stream_errors.fetch_add(1, Ordering::Relaxed);
        if matches!(
            e.kind(),
            cpal::ErrorKind::DeviceNotAvailable | cpal::ErrorKind::StreamInvalidated
        ) {
            self.fatal.store(true, Ordering::Relaxed);
        }
        if let Some(mut slot) = self.first.try_lock()
            && slot.is_none()
        {
            *slot = Some(e);
        }
    }
}

/// What a stream thread hands to the consumer once its stream plays.
struct Feed {
    reader: RingReader,
    channels: u16,
    sample_rate: u32,
    /// Last data callback of the previous stream, to estimate the outage.
    previous_audio: Option<Instant>,
    opened_at: Instant,
}

/// The consumer's current feed with its place on the source's timeline.
struct Current {
    feed: Feed,
    base: u64,
}

/// A live input device. See the module docs.
pub struct DeviceSource {
    shared: Arc<Shared>,
    feeds: Receiver<Feed>,
    current: Option<Current>,
    /// Timeline position just after the last delivered block.
    timeline_end: u64,
    supervisor_done: Receiver<()>,
    drop_timeout: Duration,
}

impl DeviceSource {
    /// Starts capturing in the background and returns at once, even if the device is not there
    /// yet (it is retried; see `stats().state`). Fails only for settings that can never work.
    pub fn open(settings: DeviceSettings) -> Result<Self, CaptureError> {
        settings.validate()?;
        let wanted = settings
            .device
            .clone()
            .unwrap_or_else(|| "default input device".to_string());
        let shared = Arc::new(Shared {
            counters: Arc::new(RingCounters::new()),
            stream_errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            state: Mutex::new(SourceState::Starting),
            lost_reason: Mutex::new(None),
            device: Mutex::new(wanted.clone()),
            describe: Mutex::new(format!("{wanted} (not opened yet)")),
            shutdown: AtomicBool::new(false),
        });
        let (feed_tx, feed_rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let drop_timeout = settings.drop_timeout;
        let sup_shared = shared.clone();
        std::thread::Builder::new()
            .name("earshot-capture".into())
            .spawn(move || {
                supervise(&settings, &sup_shared, &feed_tx);
                let _ = done_tx.send(());
            })
            .map_err(|e| CaptureError::Settings(format!("cannot start the capture thread: {e}")))?;
        Ok(DeviceSource {
            shared,
            feeds: feed_rx,
            current: None,
            timeline_end: 0,
            supervisor_done: done_rx,
            drop_timeout,
        })
    }

    /// Switches to a newer stream once the current ring is drained.
    fn adopt_feed(&mut self) -> Result<(), CaptureError> {
        let drained = self
            .current
            .as_ref()
            .is_none_or(|c| c.feed.reader.available_frames() == 0);
        if !drained {
            return Ok(());
        }
        match self.feeds.try_recv() {
            Ok(feed) => {
                let base = match (&self.current, feed.previous_audio) {
                    (None, _) => self.timeline_end,
                    (Some(_), None) => self.timeline_end,
                    (Some(_), Some(prev)) => {
                        let gap = feed.opened_at.saturating_duration_since(prev);
                        self.timeline_end
                            + (gap.as_secs_f64() * f64::from(feed.sample_rate)).round() as u64
                    }
                };
                self.current = Some(Current { feed, base });
                Ok(())
            }
            Err(TryRecvError::Empty) => Ok(()),
            Err(TryRecvError::Disconnected) => {
                if self.shared.shutdown.load(Ordering::Relaxed) || self.current.is_some() {
                    Ok(())
                } else {
                    Err(CaptureError::Disconnected(
                        self.shared.device.lock().clone(),
                    ))
                }
            }
        }
    }
}

impl Source for DeviceSource {
    fn describe(&self) -> String {
        self.shared.describe.lock().clone()
    }

    fn next_block(&mut self, timeout: Duration) -> Result<Option<Block>, CaptureError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.adopt_feed()?;
            if let Some(cur) = &mut self.current {
                // Up to 50 ms per block: small enough for low latency, large enough to keep
                // per-block overhead negligible when the consumer catches up.
                let max = (cur.feed.sample_rate as usize / 20).max(1);
                let mut samples = Vec::with_capacity(max * usize::from(cur.feed.channels));
                if let Some(pos) = cur.feed.reader.read(max, &mut samples) {
                    let block = Block {
                        samples,
                        channels: cur.feed.channels,
                        sample_rate: cur.feed.sample_rate,
                        first_frame: cur.base + pos,
                    };
                    self.timeline_end = block.first_frame + block.frames() as u64;
                    return Ok(Some(block));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            // Polling, not a wake-up from the callback: signalling a condvar would make the
            // audio thread do a syscall. 2 ms is far below any block length that matters.
            std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
        }
    }

    fn stats(&self) -> CaptureStats {
        let c = &self.shared.counters;
        CaptureStats {
            state: *self.shared.state.lock(),
            device: self.shared.device.lock().clone(),
            frames_received: c.frames_received.load(Ordering::Relaxed),
            frames_dropped: c.frames_dropped.load(Ordering::Relaxed),
            callbacks: c.callbacks.load(Ordering::Relaxed),
            stream_errors: self.shared.stream_errors.load(Ordering::Relaxed),
            reconnects: self.shared.reconnects.load(Ordering::Relaxed),
            last_callback_age: c.last_callback().map(|t| t.elapsed()),
            lost_reason: self.shared.lost_reason.lock().clone(),
        }
    }
}

impl Drop for DeviceSource {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Relaxed);
        // Bounded: the supervisor checks the flag at least every 50 ms, and gives a hanging
        // stream drop at most `drop_timeout`.
        let wait = self.drop_timeout + Duration::from_secs(1);
        if self.supervisor_done.recv_timeout(wait).is_err() {
            tracing::error!(
                device = %self.shared.device.lock(),
                "the capture thread did not stop in time; leaving it behind"
            );
        }
    }
}

/// Sleeps up to `d`, waking early on shutdown. Returns false on shutdown.
fn sleep_unless_shutdown(shared: &Shared, d: Duration) -> bool {
    let until = Instant::now() + d;
    loop {
        if shared.shutdown.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

/// A stream playing on its own thread.
struct RunningStream {
    stop: Sender<()>,
    stopped: Receiver<()>,
    errors: Arc<StreamErrors>,
    opened_at: Instant,
}

impl RunningStream {
    /// Asks the stream thread to drop the stream; false if that did not finish in `timeout`.
    fn stop(self, timeout: Duration) -> bool {
        drop(self.stop);
        self.stopped.recv_timeout(timeout).is_ok()
    }
}

/// The supervisor loop: open, watch, tear down, back off, repeat until shutdown.
fn supervise(settings: &DeviceSettings, shared: &Arc<Shared>, feeds: &Sender<Feed>) {
    let mut failures: u32 = 0;
    let mut ever_ran = false;
    let mut previous_audio: Option<Instant> = None;
    while !shared.shutdown.load(Ordering::Relaxed) {
        shared.set_state(if ever_ran {
            SourceState::Reconnecting
        } else {
            SourceState::Starting
        });
        let running = match start_stream(settings, shared, feeds, previous_audio) {
            Ok(r) => r,
            Err(e) => {
                let delay = settings.retry.delay(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(
                    device = %shared.device.lock(),
                    attempt = failures,
                    retry_in = ?delay,
                    "cannot open the audio input: {e}; retrying"
                );
                if !sleep_unless_shutdown(shared, delay) {
                    break;
                }
                continue;
            }
        };
        if ever_ran {
            shared.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                after_attempts = failures + 1,
                "audio input recovered: {}",
                shared.describe.lock()
            );
        } else {
            tracing::info!("capturing audio from {}", shared.describe.lock());
        }
        ever_ran = true;
        failures = 0;
        shared.set_state(SourceState::Running);

        let reason = watch(settings, shared, &running);
        let errors = running.errors.clone();
        previous_audio = shared.counters.last_callback();
        match reason {
            None => {
                // Shutdown.
                if !running.stop(settings.drop_timeout) {
                    tracing::error!(
                        device = %shared.device.lock(),
                        "dropping the audio stream hung; abandoning its thread"
                    );
                }
                break;
            }
            Some(reason) => {
                *shared.lost_reason.lock() = Some(reason.clone());
                shared.set_state(SourceState::Lost);
                let first = errors.first.lock().take();
                tracing::warn!(
                    device = %shared.device.lock(),
                    first_error = first.map(|e| e.to_string()).unwrap_or_else(|| "none".into()),
                    "audio input lost: {reason}; reopening it"
                );
                if !running.stop(settings.drop_timeout) {
                    tracing::error!(
                        device = %shared.device.lock(),
                        timeout = ?settings.drop_timeout,
                        "dropping the lost audio stream hung (the audio server probably died); \
                         abandoning its thread and carrying on"
                    );
                }
                shared.set_state(SourceState::Reconnecting);
                if !sleep_unless_shutdown(shared, settings.retry.delay(0)) {
                    break;
                }
            }
        }
    }
    shared.set_state(SourceState::Ended);
}

/// Watches a playing stream. Returns why it is considered lost, or None on shutdown.
fn watch(settings: &DeviceSettings, shared: &Shared, running: &RunningStream) -> Option<String> {
    let mut history: VecDeque<(Instant, u64)> = VecDeque::new();
    loop {
        if shared.shutdown.load(Ordering::Relaxed) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
        let now = Instant::now();
        if running.errors.fatal.load(Ordering::Relaxed) {
            return Some("the device reported that it is no longer available".into());
        }
        let errors = running.errors.count.load(Ordering::Relaxed);
        history.push_back((now, errors));
        while history
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(1))
        {
            history.pop_front();
        }
        if let Some((_, oldest)) = history.front()
            && errors - oldest >= u64::from(settings.error_storm)
        {
            return Some(format!(
                "{} stream errors within a second (error_storm = {})",
                errors - oldest,
                settings.error_storm
            ));
        }
        let last = shared
            .counters
            .last_callback()
            .filter(|t| *t >= running.opened_at);
        // A new stream gets twice the time for its first callback: PulseAudio's null sink (and
        // some USB devices) deliver the first block up to ~2 s late.
        let (since, limit) = match last {
            Some(t) => (t, settings.stall_timeout),
            None => (running.opened_at, settings.stall_timeout * 2),
        };
        let quiet = now.saturating_duration_since(since);
        if quiet > limit {
            return Some(format!(
                "no audio for {:.1} s (stall_timeout = {:?}{})",
                quiet.as_secs_f64(),
                settings.stall_timeout,
                if last.is_none() {
                    ", doubled for a new stream"
                } else {
                    ""
                }
            ));
        }
    }
}

/// Starts a stream thread and waits (bounded) until its stream plays.
fn start_stream(
    settings: &DeviceSettings,
    shared: &Arc<Shared>,
    feeds: &Sender<Feed>,
    previous_audio: Option<Instant>,
) -> Result<RunningStream, OpenError> {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let (stopped_tx, stopped_rx) = crossbeam_channel::bounded::<()>(1);
    let (opened_tx, opened_rx) = crossbeam_channel::bounded(1);
    let errors = Arc::new(StreamErrors::default());
    let thread_settings = settings.clone();
    let thread_shared = shared.clone();
    let thread_errors = errors.clone();
    std::thread::Builder::new()
        .name("earshot-stream".into())
        .spawn(move || {
            match open_stream(&thread_settings, &thread_shared, &thread_errors) {
                Ok((stream, feed, describe)) => {
                    if opened_tx.send(Ok((feed, describe))).is_err() {
                        return; // The supervisor gave up waiting: drop the stream here.
                    }
                    // Blocks until the supervisor drops `stop` (or sends on it).
                    let _ = stop_rx.recv();
                    drop(stream);
                    let _ = stopped_tx.send(());
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            }
        })
        .map_err(|e| OpenError::NotFound(format!("cannot start a stream thread: {e}")))?;
    let (mut feed, describe): (Feed, String) = match opened_rx.recv_timeout(settings.open_timeout) {
        Ok(r) => r?,
        Err(RecvTimeoutError::Timeout) => return Err(OpenError::Timeout(settings.open_timeout)),
        Err(RecvTimeoutError::Disconnected) => {
            return Err(OpenError::NotFound("the stream thread died".into()));
        }
    };
    feed.previous_audio = previous_audio;
    let opened_at = feed.opened_at;
    *shared.describe.lock() = describe;
    // If the consumer is gone, the source is being dropped; the watch loop sees the shutdown.
    let _ = feeds.send(feed);
    Ok(RunningStream {
        stop: stop_tx,
        stopped: stopped_rx,
        errors,
        opened_at,
    })
}

/// Resolves the device, picks the format and builds a playing stream. Runs on the stream thread.
fn open_stream(
    settings: &DeviceSettings,
    shared: &Arc<Shared>,
    errors: &Arc<StreamErrors>,
) -> Result<(cpal::Stream, Feed, String), OpenError> {
    let (device, id, why) = find_device(settings.device.as_deref())?;
    *shared.device.lock() = id.clone();
    let label = device
        .description()
        .map(|d| d.name().to_string())
        .unwrap_or_default();
    let (config, format, choice) = choose_config(&device, settings)?;
    let frames = (settings.ring_seconds as f64 * f64::from(config.sample_rate)).ceil() as usize;
    let (writer, reader) = ring::ring(frames, config.channels, shared.counters.clone());
    let stream = build(&device, &config, format, writer, shared, errors)?;
    stream.play().map_err(|err| OpenError::Cpal {
        what: "cannot start the stream",
        err,
    })?;
    let describe = format!(
        "device {id} ({label:?}; {why}), {choice}, ring {:.1} s",
        settings.ring_seconds
    );
    let feed = Feed {
        reader,
        channels: config.channels,
        sample_rate: config.sample_rate,
        previous_audio: None,
        opened_at: Instant::now(),
    };
    Ok((stream, feed, describe))
}

fn build(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    format: SampleFormat,
    writer: ring::RingWriter,
    shared: &Arc<Shared>,
    errors: &Arc<StreamErrors>,
) -> Result<cpal::Stream, OpenError> {
    fn typed<T>(
        device: &cpal::Device,
        config: &cpal::StreamConfig,
        mut writer: ring::RingWriter,
        shared: Arc<Shared>,
        errors: Arc<StreamErrors>,
    ) -> Result<cpal::Stream, cpal::Error>
    where
        T: cpal::SizedSample,
        f32: cpal::FromSample<T>,
    {
        device.build_input_stream::<T, _, _>(
            *config,
            move |data: &[T], _| writer.push_interleaved(data),
            move |e| errors.record(&shared, e),
            // ALSA polls with this timeout, so its worker notices a dead device even when no
            // poll event arrives.
            Some(Duration::from_secs(1)),
        )
    }
    let (s, e) = (shared.clone(), errors.clone());
    let r = match format {
        SampleFormat::F32 => typed::<f32>(device, config, writer, s, e),
        SampleFormat::I16 => typed::<i16>(device, config, writer, s, e),
        SampleFormat::I24 => typed::<cpal::I24>(device, config, writer, s, e),
        SampleFormat::I32 => typed::<i32>(device, config, writer, s, e),
    };
    r.map_err(|err| OpenError::Cpal {
        what: "cannot build the input stream",
        err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_settings_are_rejected_up_front() {
        let s = DeviceSettings {
            ring_seconds: 0.0,
            ..Default::default()
        };
        assert!(matches!(
            DeviceSource::open(s),
            Err(CaptureError::Settings(m)) if m.contains("ring_seconds")
        ));
    }
}
