//! One monitor: a source, its pipeline and its decisions, on two threads.
//!
//! ```text
//! capture thread: source.next_block -> mono -> resample -> windows --(bounded queue)-->
//! embed thread:   log-mel + network -> centroid / k-NN scores -> decider -> events, metrics
//! ```
//! The capture thread never waits for inference: with a live source (device or real-time
//! replay) a full queue drops its oldest window (counted, logged), so detection stays on
//! the present instead of drifting behind. A fast replay instead waits: it wants every
//! window, as fast as inference allows.

use crate::alert::events::{Event, OperationalEvent, OperationalKind, Sinks};
use crate::capture::{self, CaptureError, Source, SourceState};
use crate::config::{MonitorSettings, Settings};
use crate::daemon::notify::Progress;
use crate::dsp::{self, ChannelMap, StreamResampler, Windower};
use crate::embed::Embedder;
use crate::index::VectorIndex;
use crate::metrics::{BreakerState, CaptureState, Health, Metrics, MonitorStatus};
use crate::score::decide::{Decider, ScoreSample, ScoredWindow};
use crate::score::{self, CENTROID, KNN, Profile};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("monitor {name}: `profile` {path}: {source}")]
    Profile {
        name: String,
        path: PathBuf,
        source: score::ProfileError,
    },
    #[error("monitor {name}: model: {source}")]
    Model {
        name: String,
        source: crate::embed::EmbedError,
    },
    #[error("monitor {name}: {detail}")]
    Mismatch { name: String, detail: String },
    #[error("monitor {name}: `source`: {source}")]
    Source { name: String, source: CaptureError },
    #[error("monitor {name}: `index`: {source}")]
    Index {
        name: String,
        source: crate::index::IndexError,
    },
    #[error("monitor {name}: cannot start a thread: {source}")]
    Thread {
        name: String,
        source: std::io::Error,
    },
}

/// What every monitor shares with the daemon.
#[derive(Clone)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub health: Health,
    pub sinks: Arc<Mutex<Sinks>>,
}

/// A running monitor.
pub struct Monitor {
    pub name: String,
    /// The settings it runs with (reload compares them).
    pub settings: MonitorSettings,
    pub progress: Progress,
    profile_mtime: Option<SystemTime>,
    stop: Arc<AtomicBool>,
    ended: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// A window cut from the stream, waiting for inference.
struct Job {
    /// Window start and end in stream seconds.
    start_s: f64,
    end_s: f64,
    samples: Vec<f32>,
    cut_at: Instant,
}

impl Monitor {
    /// Loads the profile and model, opens the source and starts both threads. Any error
    /// names the monitor and the key to fix; nothing is left running on error.
    pub fn start(
        ms: &MonitorSettings,
        settings: &Settings,
        shared: &Shared,
        source: Option<Box<dyn Source>>,
        progress: Progress,
    ) -> Result<Monitor, MonitorError> {
        let name = ms.name.clone();
        let profile_mtime = std::fs::metadata(ms.profile.join("manifest.json"))
            .and_then(|m| m.modified())
            .ok();
        let (profile, hop) = load_profile(ms)?;
        let mut opts = settings.embed_options();
        if opts.threads == 0 {
            // One intra-op thread per monitor: monitors run in parallel with each other and
            // the capture threads, and ORT's spinning pool would steal their cores.
            opts.threads = 1;
        }
        let mut embedder =
            Embedder::load(&settings.model_dir(), &opts).map_err(|source| MonitorError::Model {
                name: name.clone(),
                source,
            })?;
        let pm = &profile.manifest.model;
        if !pm
            .onnx_sha256
            .eq_ignore_ascii_case(&embedder.card().onnx.sha256)
        {
            return Err(MonitorError::Mismatch {
                name,
                detail: format!(
                    "`profile` {} was learned with model {:?}, but `model.dir` is {:?}: use the same model or re-run `earshot learn`",
                    ms.profile.display(),
                    pm.name,
                    embedder.card().name
                ),
            });
        }
        let window = profile.manifest.window;
        embedder.set_level_dbfs(window.level_dbfs);
        let rt = tokio::runtime::Handle::try_current().map_err(|_| MonitorError::Mismatch {
            name: name.clone(),
            detail: "monitors must be started inside the service's runtime".into(),
        })?;
        let index =
            build_index(&ms.index, &profile, &rt).map_err(|source| MonitorError::Index {
                name: name.clone(),
                source,
            })?;
        tracing::info!(monitor = %name, index = %index.describe(), "k-NN index ready");
        // A source handed in is a view of a shared device that already delivers only this
        // monitor's channel.
        let map = match (&source, ms.source.channel) {
            (None, Some(c)) => ChannelMap::Select(c),
            _ => ChannelMap::Downmix,
        };
        let source = match source {
            Some(s) => s,
            None => open_source(ms).map_err(|source| MonitorError::Source {
                name: name.clone(),
                source,
            })?,
        };
        let live = ms.source.device.is_some() || ms.source.realtime;
        let mut labels = ms.labels.clone();
        labels.insert("monitor".into(), name.clone());
        let decider = Decider::new(ms.decide.clone(), labels.clone()).map_err(|e| {
            MonitorError::Mismatch {
                name: name.clone(),
                detail: format!("`decide`: {e}"),
            }
        })?;
        shared.metrics.set_monitor_info(&name, &labels);
        shared.health.set(&name, MonitorStatus::Starting);
        tracing::info!(
            monitor = %name,
            source = %source.describe(),
            profile = %ms.profile.display(),
            model = %embedder.card().name,
            window_s = window.seconds,
            hop_s = hop,
            "monitor starting"
        );

        let (tx, rx) = crossbeam_channel::bounded::<Job>(settings.daemon.queue_windows);
        let stop = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(AtomicBool::new(false));
        let rate = embedder.sample_rate();
        let capture = CaptureLoop {
            name: name.clone(),
            labels: labels.clone(),
            source,
            map,
            rate,
            window_samples: (window.seconds * f64::from(rate)).round() as usize,
            hop_samples: ((hop * f64::from(rate)).round() as usize).max(1),
            live,
            tx,
            drop_rx: rx.clone(),
            stop: stop.clone(),
            shared: shared.clone(),
            progress: progress.clone(),
        };
        let embed = EmbedLoop {
            name: name.clone(),
            index_metrics: shared.metrics.index(index_backend(&ms.index)),
            index,
            rt,
            embedder,
            profile,
            decider,
            rx,
            shared: shared.clone(),
            progress: progress.clone(),
            ended: ended.clone(),
        };
        let spawn = |n: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(n)
                .spawn(f)
                .map_err(|source| MonitorError::Thread {
                    name: name.clone(),
                    source,
                })
        };
        let t_embed = spawn(format!("embed-{name}"), Box::new(move || embed.run()))?;
        let t_cap = spawn(format!("capture-{name}"), Box::new(move || capture.run()))?;
        Ok(Monitor {
            name: name.clone(),
            settings: ms.clone(),
            progress,
            profile_mtime,
            stop,
            ended,
            threads: vec![t_cap, t_embed],
        })
    }

    /// Checks what can be checked without touching the model or the device: the profile
    /// loads, the hop fits its window, a replayed file opens. A reload runs this before it
    /// stops a running monitor, so that bad new settings leave the old monitor running.
    pub fn preflight(ms: &MonitorSettings) -> Result<(), MonitorError> {
        load_profile(ms)?;
        if ms.source.file.is_some() {
            open_source(ms).map_err(|source| MonitorError::Source {
                name: ms.name.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// When the profile's manifest was last written, as seen at start (reload compares it).
    pub fn started_profile_mtime(&self) -> Option<SystemTime> {
        self.profile_mtime
    }

    /// True once the source has ended (a replay without loop) and every window is scored.
    pub fn finished(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Stops the capture thread, lets inference finish the queued windows, closes any open
    /// event (reason "shutdown") and waits up to `timeout` for the threads.
    pub fn stop(self, timeout: Duration) {
        self.stop.store(true, Ordering::Release);
        let deadline = Instant::now() + timeout;
        for t in self.threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!(monitor = %self.name, "a pipeline thread did not stop in time; leaving it");
            }
        }
    }
}

fn index_backend(cfg: &crate::index::IndexConfig) -> &'static str {
    match cfg {
        crate::index::IndexConfig::Embedded(_) => "embedded",
        crate::index::IndexConfig::Azure(_) => "azure",
    }
}

/// Builds the monitor's index. `index::build` is async (the Azure backend checks the remote
/// schema); it runs on the service's runtime from a short-lived plain thread, since monitors
/// are started from inside that runtime.
fn build_index(
    cfg: &crate::index::IndexConfig,
    profile: &Profile,
    rt: &tokio::runtime::Handle,
) -> Result<Arc<dyn VectorIndex>, crate::index::IndexError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            rt.block_on(crate::index::build(
                cfg,
                &profile.embeddings,
                &profile.ids,
                &profile.machine,
            ))
        })
        .join()
        .unwrap_or_else(|_| {
            Err(crate::index::IndexError::Build(
                "index construction panicked".into(),
            ))
        })
    })
}

/// Loads the monitor's profile and returns it with the hop to use (configured, else the
/// profile's), refusing a hop longer than the profile's window.
fn load_profile(ms: &MonitorSettings) -> Result<(Profile, f64), MonitorError> {
    let profile = Profile::load(&ms.profile).map_err(|source| MonitorError::Profile {
        name: ms.name.clone(),
        path: ms.profile.clone(),
        source,
    })?;
    let window = profile.manifest.window;
    let hop = ms.hop_seconds.unwrap_or(window.hop_seconds);
    if hop > window.seconds {
        return Err(MonitorError::Mismatch {
            name: ms.name.clone(),
            detail: format!(
                "`hop_seconds` = {hop} is longer than the profile's window ({} s): audio between windows would never be heard",
                window.seconds
            ),
        });
    }
    Ok((profile, hop))
}

/// Opens the source a monitor's settings describe (devices shared between monitors are
/// opened by the daemon and passed in instead).
pub fn open_source(ms: &MonitorSettings) -> Result<Box<dyn Source>, CaptureError> {
    if let Some(file) = &ms.source.file {
        let s = capture::ReplaySource::open(capture::ReplaySettings {
            path: file.clone(),
            realtime: ms.source.realtime,
            looping: ms.source.looping,
        })?;
        return Ok(Box::new(s));
    }
    Ok(Box::new(capture::DeviceSource::open(device_settings(ms))?))
}

pub fn device_settings(ms: &MonitorSettings) -> capture::DeviceSettings {
    let mut d = ms.capture.clone().unwrap_or_default();
    d.device = ms
        .source
        .device
        .clone()
        .filter(|d| !d.eq_ignore_ascii_case("default"));
    d
}

struct CaptureLoop {
    name: String,
    labels: BTreeMap<String, String>,
    source: Box<dyn Source>,
    map: ChannelMap,
    rate: u32,
    window_samples: usize,
    hop_samples: usize,
    live: bool,
    tx: Sender<Job>,
    /// Lets the producer drop the oldest queued window when inference is behind.
    drop_rx: Receiver<Job>,
    stop: Arc<AtomicBool>,
    shared: Shared,
    progress: Progress,
}

impl CaptureLoop {
    fn run(mut self) {
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
                    self.shared.metrics.set_monitor_up(&self.name, false);
                    self.shared.health.set(
                        &self.name,
                        MonitorStatus::Down {
                            reason: e.to_string(),
                        },
                    );
                    break;
                }
            };
            if let Some(b) = block {
                // (Re)build the resampler when the source's rate changes (another device).
                if resampler
                    .as_ref()
                    .is_none_or(|r| r.rates().0 != b.sample_rate)
                {
                    match StreamResampler::new(b.sample_rate, self.rate) {
                        Ok(r) => resampler = Some(r),
                        Err(e) => {
                            tracing::error!(monitor = %self.name, error = %e, "cannot resample this source");
                            break;
                        }
                    }
                    windower.gap(0);
                    next_frame = None;
                }
                let Some(rs) = resampler.as_mut() else { break };
                if let Some(expected) = next_frame
                    && b.first_frame > expected
                {
                    // Frames lost in capture: windows must not straddle the hole.
                    let missing = b.first_frame - expected;
                    let gap = (missing as f64 * rate / f64::from(b.sample_rate)).round() as u64;
                    windower.gap(gap);
                }
                next_frame = Some(b.first_frame + b.frames() as u64);
                mono.clear();
                dsp::to_mono(&b.samples, b.channels, self.map, &mut mono);
                for v in &mut mono {
                    if !v.is_finite() {
                        *v = 0.0;
                    }
                }
                resampled.clear();
                if let Err(e) = rs.push(&mono, &mut resampled) {
                    tracing::error!(monitor = %self.name, error = %e, "resampling failed");
                    break;
                }
                let mut jobs = Vec::new();
                windower.push(&resampled, |start, w| {
                    jobs.push(Job {
                        start_s: start as f64 / rate,
                        end_s: (start as usize + w.len()) as f64 / rate,
                        samples: w.to_vec(),
                        cut_at: Instant::now(),
                    });
                });
                for job in jobs {
                    if self.live {
                        let mut job = job;
                        loop {
                            match self.tx.try_send(job) {
                                Ok(()) => break,
                                Err(TrySendError::Full(j)) => {
                                    if let Ok(old) = self.drop_rx.try_recv() {
                                        shed_pending += 1;
                                        let lag = old.cut_at.elapsed().as_secs_f64();
                                        pipe.lag_seconds.set(lag);
                                    }
                                    job = j;
                                }
                                Err(TrySendError::Disconnected(_)) => return,
                            }
                        }
                    } else if self.tx.send(job).is_err() {
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
                let st = self.source.stats();
                cap.frames_received
                    .inc_by(st.frames_received.saturating_sub(prev.frames_received));
                cap.frames_dropped
                    .inc_by(st.frames_dropped.saturating_sub(prev.frames_dropped));
                cap.callbacks
                    .inc_by(st.callbacks.saturating_sub(prev.callbacks));
                cap.stream_errors
                    .inc_by(st.stream_errors.saturating_sub(prev.stream_errors));
                cap.reconnects
                    .inc_by(st.reconnects.saturating_sub(prev.reconnects));
                if let Some(age) = st.last_callback_age {
                    cap.last_callback_age.set(age.as_secs_f64());
                }
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
                windower.push(&resampled, |start, w| {
                    let _ = self.tx.send(Job {
                        start_s: start as f64 / rate,
                        end_s: (start as usize + w.len()) as f64 / rate,
                        samples: w.to_vec(),
                        cut_at: Instant::now(),
                    });
                });
            }
        }
        cap.set_state(CaptureState::Stopped);
    }

    fn state_changed(
        &self,
        cap: &crate::metrics::CaptureHandle,
        from: SourceState,
        to: SourceState,
        st: &capture::CaptureStats,
        lost_since: &mut Option<SystemTime>,
    ) {
        match to {
            SourceState::Running => {
                cap.set_state(CaptureState::Running);
                self.shared.health.set(&self.name, MonitorStatus::Running);
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
                    cap.device_lost("no audio from the device");
                    self.shared.health.set(
                        &self.name,
                        MonitorStatus::Down {
                            reason: format!("device {} lost; reconnecting", st.device),
                        },
                    );
                    self.emit(OperationalEvent::now(
                        OperationalKind::DeviceLost,
                        self.labels.clone(),
                        None,
                        format!(
                            "{} stopped delivering audio; reconnecting with backoff",
                            st.device
                        ),
                    ));
                }
            }
            SourceState::Starting => cap.set_state(CaptureState::Starting),
            SourceState::Ended => cap.set_state(CaptureState::Stopped),
        }
    }

    fn emit(&self, ev: OperationalEvent) {
        self.shared.sinks.lock().emit(&Event::Operational(ev));
    }
}

struct EmbedLoop {
    name: String,
    index: Arc<dyn VectorIndex>,
    index_metrics: crate::metrics::IndexHandle,
    rt: tokio::runtime::Handle,
    embedder: Embedder,
    profile: Profile,
    decider: Decider,
    rx: Receiver<Job>,
    shared: Shared,
    progress: Progress,
    ended: Arc<AtomicBool>,
}

impl EmbedLoop {
    /// The k-NN score, or `None` when the index cannot answer in time: the window is then
    /// scored by its centroid distance alone, and the degraded state is shown once in the log
    /// and in health/metrics until the index answers again.
    fn knn(&self, emb: &[f32], k: usize, degraded: &mut bool) -> Option<f64> {
        let t = Instant::now();
        match self.rt.block_on(self.index.knn(emb, k)) {
            Ok(n) => {
                self.index_metrics.query_ok(t.elapsed().as_secs_f64());
                if *degraded {
                    *degraded = false;
                    self.index_metrics
                        .set_breaker(BreakerState::Closed, "index answers again");
                    self.shared.health.set(&self.name, MonitorStatus::Running);
                    tracing::info!(monitor = %self.name, "k-NN index answers again: scoring by centroid and k-NN");
                }
                crate::index::knn_score(&n).map(f64::from)
            }
            Err(e) => {
                self.index_metrics.query_failed(t.elapsed().as_secs_f64());
                if !*degraded {
                    *degraded = true;
                    self.index_metrics
                        .set_breaker(BreakerState::Open, &e.to_string());
                    self.shared.health.set(
                        &self.name,
                        MonitorStatus::Degraded {
                            reason: format!(
                                "k-NN index unavailable ({e}); scoring by centroid alone"
                            ),
                        },
                    );
                    tracing::warn!(monitor = %self.name, error = %e, "k-NN index unavailable: scoring by centroid alone until it answers");
                }
                None
            }
        }
    }

    fn run(mut self) {
        let pipe = self.shared.metrics.pipeline(&self.name);
        let sm = self.shared.metrics.score(&self.name);
        let t_c = self
            .profile
            .manifest
            .thresholds
            .get(CENTROID)
            .map(|t| f64::from(t.value));
        let t_k = self
            .profile
            .manifest
            .thresholds
            .get(KNN)
            .map(|t| f64::from(t.value));
        let knn_k = self.profile.manifest.knn_k;
        // Stream time 0 corresponds to this wall-clock instant (for event stamps).
        let mut origin: Option<SystemTime> = None;
        let mut running = false;
        let mut degraded = false;
        while let Ok(job) = self.rx.recv() {
            if !running {
                running = true;
                self.shared.health.set(&self.name, MonitorStatus::Running);
            }
            let t0 = Instant::now();
            let out = match self.embedder.embed(&job.samples) {
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
            let k = self.knn(&emb, knn_k, &mut degraded);
            let mut samples = Vec::with_capacity(2);
            if let Some(t) = t_c {
                samples.push(ScoreSample {
                    scorer: CENTROID,
                    score: c,
                    threshold: t,
                });
                sm.observe(CENTROID, c, t);
            }
            if let (Some(k), Some(t)) = (k, t_k) {
                samples.push(ScoreSample {
                    scorer: KNN,
                    score: k,
                    threshold: t,
                });
                sm.observe(KNN, k, t);
            }
            let origin = *origin
                .get_or_insert_with(|| SystemTime::now() - Duration::from_secs_f64(job.end_s));
            let w = ScoredWindow {
                start: job.start_s,
                end: job.end_s,
                wall_end: origin + Duration::from_secs_f64(job.end_s),
                scores: &samples,
            };
            tracing::debug!(monitor = %self.name, start_s = job.start_s, centroid = c, knn = ?k, "window scored");
            if let Some(ev) = self.decider.push(&w) {
                sm.decision(&ev);
                sm.set_anomaly(self.decider.is_open());
                self.shared.sinks.lock().emit(&Event::Anomaly(ev));
            }
            pipe.window_done(embed_s, job.cut_at.elapsed().as_secs_f64());
            pipe.queue_depth.set(self.rx.len() as i64);
            self.progress.tick();
        }
        if let Some(ev) = self.decider.finish() {
            sm.decision(&ev);
            sm.set_anomaly(false);
            self.shared.sinks.lock().emit(&Event::Anomaly(ev));
        }
        self.shared.health.set(&self.name, MonitorStatus::Stopped);
        self.ended.store(true, Ordering::Release);
    }
}
