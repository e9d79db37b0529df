//! One monitor: a source, its pipeline and its decisions, on two threads. This module only
//! wires the stages; each lives in its own file:
//!
//! ```text
//! capture thread (capture.rs): source.next_block -> mono -> resample -> windows, stamped by
//!                              the monitor's clock (daemon::clock) --(bounded queue)-->
//! embed thread   (scoring.rs): level gate -> log-mel + network -> centroid / k-NN scores
//!                (decision.rs): no-signal state, decider -> events, metrics, health
//! ```
//! The capture thread never waits for inference: with a live source (device or real-time
//! replay) a full queue drops its oldest window (counted, logged), so detection stays on
//! the present instead of drifting behind. A fast replay instead waits: it wants every
//! window, as fast as inference allows.

mod capture;
mod decision;
mod memory;
mod scoring;
mod sounds_like;

use crate::alert::events::Sinks;
use crate::capture::{self as cap, CaptureError, Source};
use crate::config::{MonitorSettings, Settings};
use crate::daemon::clock::Clock;
use crate::daemon::notify::Progress;
use crate::dsp::ChannelMap;
use crate::embed::Embedder;
use crate::index::VectorIndex;
use crate::metrics::{Health, Lease, Metrics};
use crate::score::decide::Decider;
use crate::score::signal::SignalGate;
use crate::score::{self, Profile};
use parking_lot::Mutex;
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
    /// Anomaly clips and spectrograms (None: disabled).
    pub evidence: Option<Arc<crate::evidence::Evidence>>,
    /// The sound catalog events are compared with (replaced at reload).
    pub known: crate::daemon::sounds::KnownHandle,
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
    /// Retired by [`Monitor::stop`]: threads that outlive it can no longer publish.
    lease: Lease,
}

/// A window cut from the stream, waiting for inference.
struct Job {
    /// Window start and end in stream seconds.
    start_s: f64,
    end_s: f64,
    /// The same in wall-clock time, from the monitor's clock (the one owner of that mapping).
    wall_start: SystemTime,
    wall_end: SystemTime,
    /// Window start in stream samples at the model's rate: lets the embedder reuse the
    /// log-mel frames this window shares with the one before.
    start_sample: u64,
    samples: Vec<f32>,
    cut_at: Instant,
}

impl Job {
    /// Wall time of a stream time at or before this window (a state that began in earlier
    /// windows), on this window's clock stamps: the clock maps stream to wall time linearly
    /// between its observations, so an offset in stream seconds is the same offset in wall
    /// time.
    fn wall_at(&self, stream_s: f64) -> SystemTime {
        let back = self.start_s - stream_s;
        if back.is_finite() && back > 0.0 {
            self.wall_start
                .checked_sub(std::time::Duration::from_secs_f64(back))
                .unwrap_or(self.wall_start)
        } else {
            self.wall_start
        }
    }
}

impl Monitor {
    /// Loads the profile and model, opens the source and starts both threads. Any error
    /// names the monitor and the key to fix; nothing is left running on error. Everything the
    /// instance publishes (health, events) goes through `lease`, which the caller may retire
    /// early (a start that took too long and was superseded).
    pub fn start(
        ms: &MonitorSettings,
        settings: &Settings,
        shared: &Shared,
        source: Option<Box<dyn Source>>,
        progress: Progress,
        lease: Lease,
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
        // The long-running service keeps the optimised model: every later start (and each
        // monitor's session) then peaks at the model's size, not three times it.
        opts.optimized_cache = Some(settings.model_cache_dir());
        let model_dir = settings
            .find_model_dir()
            .map_err(|e| MonitorError::Mismatch {
                name: name.clone(),
                detail: format!("model: {e}"),
            })?;
        let mut embedder =
            Embedder::load(&model_dir, &opts).map_err(|source| MonitorError::Model {
                name: name.clone(),
                source,
            })?;
        // Checksum, sample rate and embedding size: the profile's embeddings mean nothing
        // with another model.
        profile
            .check_model(
                embedder.card(),
                &model_dir.join(crate::embed::card::CARD_FILE),
            )
            .map_err(|source| MonitorError::Profile {
                name: name.clone(),
                path: ms.profile.clone(),
                source,
            })?;
        let window = profile.manifest.window;
        embedder
            .use_window(&window)
            .map_err(|source| MonitorError::Model {
                name: name.clone(),
                source,
            })?;
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
        let clock = if ms.source.file.is_some() && !ms.source.realtime {
            Clock::stream()
        } else {
            Clock::live()
        };
        let mut decider = decider;
        decider.set_time_base(clock.time_base());
        let gate = SignalGate::new(profile.manifest.level.as_ref(), ms.decide.no_signal_after);
        shared.metrics.set_monitor_info(&name, &labels);
        let status = shared
            .metrics
            .status_leased(&name, &shared.health, lease.clone());
        tracing::info!(
            monitor = %name,
            source = %source.describe(),
            profile = %ms.profile.display(),
            model = %embedder.card().name,
            window_s = window.seconds,
            hop_s = hop,
            no_signal_below_dbfs = gate.floor_dbfs(),
            time_base = ?clock.time_base(),
            "monitor starting"
        );

        let (recorder, monitor_evidence) = evidence_for(
            &name,
            shared,
            &ms.profile,
            window.seconds,
            hop,
            // + 1: a start held back for a hop (the decision stage's sounds-like wait).
            ms.decide.trigger_m + settings.daemon.queue_windows + 1,
        )?;
        let (tx, rx) = crossbeam_channel::bounded::<Job>(settings.daemon.queue_windows);
        let stop = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(AtomicBool::new(false));
        let rate = embedder.sample_rate();
        let capture = capture::CaptureLoop {
            name: name.clone(),
            labels: labels.clone(),
            source,
            map,
            rate,
            window_samples: (window.seconds * f64::from(rate)).round() as usize,
            hop_samples: ((hop * f64::from(rate)).round() as usize).max(1),
            live,
            clock: clock.clone(),
            tx,
            drop_rx: rx.clone(),
            stop: stop.clone(),
            shared: shared.clone(),
            status: status.clone(),
            progress: progress.clone(),
            lease: lease.clone(),
            recorder,
        };
        let decision = decision::DecisionStage::new(
            name.clone(),
            labels,
            decider,
            gate,
            clock.time_base(),
            shared.metrics.score(&name),
            status.clone(),
            shared.sinks.clone(),
            lease.clone(),
        )
        .with_evidence(monitor_evidence)
        .with_sounds_like(sounds_like::SoundsLikeStage::new(
            &name,
            shared.known.clone(),
            shared.metrics.catalog().clone(),
            ms.decide.trigger_m,
        ));
        warn_window_mismatch(&name, shared, &window);
        let embed = scoring::EmbedLoop {
            name: name.clone(),
            index_metrics: shared.metrics.index(&name, index_backend(&ms.index)),
            index,
            watch: memory::ProfileWatch::new(ms.profile.clone(), ms.index.clone()),
            rt,
            embedder,
            profile,
            decision,
            rx,
            shared: shared.clone(),
            status,
            progress: progress.clone(),
            ended: ended.clone(),
            stop: stop.clone(),
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
            lease,
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
    /// event (reason "shutdown") and waits up to `timeout` for the threads. Then retires the
    /// instance's lease: a thread still running past `timeout` (stuck in inference, a device
    /// or an index call) can no longer publish health or events, so it cannot overwrite the
    /// state of a successor started under the same name. Returns false if a thread was left.
    pub fn stop(self, timeout: Duration) -> bool {
        self.stop.store(true, Ordering::Release);
        let deadline = Instant::now() + timeout;
        let mut all = true;
        for t in self.threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                all = false;
                tracing::warn!(monitor = %self.name, "a pipeline thread did not stop in time; leaving it, muted (it can no longer publish health or events)");
            }
        }
        self.lease.retire();
        all
    }
}

/// Warns when the catalog in use was cut into other windows than the monitor's profile (or
/// levelled otherwise): its embeddings still compare, but less closely, so `sounds_like`
/// similarities come out lower than `earshot search` shows for the same sounds.
fn warn_window_mismatch(name: &str, shared: &Shared, window: &crate::score::profile::WindowSpec) {
    let Some(k) = shared.known.current() else {
        return;
    };
    let c = k.catalog().window();
    if c.seconds != window.seconds || c.level_dbfs != window.level_dbfs || c.embed != window.embed {
        tracing::warn!(
            monitor = %name,
            catalog = %k.catalog().dir().display(),
            catalog_window_s = c.seconds,
            catalog_level_dbfs = ?c.level_dbfs,
            profile_window_s = window.seconds,
            profile_level_dbfs = ?window.level_dbfs,
            catalog_embed = c.embed.name(),
            profile_embed = window.embed.name(),
            "the sound catalog's windows differ from this monitor's profile: `sounds_like` similarities will be lower; build the catalog with the profile's [window] settings"
        );
    }
}

type Evidence = (
    Option<Arc<Mutex<crate::evidence::ClipRecorder>>>,
    Option<crate::evidence::writer::MonitorEvidence>,
);

/// The clip recorder (fed by the capture thread) and the decision stage's side of the
/// evidence, when evidence is enabled; the profile's normal reference spectrogram goes with it.
fn evidence_for(
    name: &str,
    shared: &Shared,
    profile_dir: &std::path::Path,
    window_s: f64,
    hop_s: f64,
    windows_behind: usize,
) -> Result<Evidence, MonitorError> {
    use crate::evidence::writer::MonitorEvidence;
    let Some(ev) = shared.evidence.clone().filter(|e| e.cfg.enabled) else {
        return Ok((None, None));
    };
    let ring = MonitorEvidence::ring_seconds(&ev.cfg, window_s, hop_s, windows_behind);
    let recorder = Arc::new(Mutex::new(crate::evidence::ClipRecorder::new(ring)));
    let reference = crate::evidence::reference::load(profile_dir).map(Arc::new);
    let me =
        MonitorEvidence::new(name, ev, recorder.clone(), ring, reference).map_err(|source| {
            MonitorError::Thread {
                name: name.to_string(),
                source,
            }
        })?;
    Ok((Some(recorder), Some(me)))
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
    if window.embed == crate::embed::EmbedMode::ChunkMax {
        // A chunk-max profile's windows are made of hop-long chunks: another hop must still
        // step whole chunks, or no window would be made of the profile's chunks.
        let rate = f64::from(profile.manifest.model.sample_rate);
        let chunk = (window.hop_seconds * rate).round() as usize;
        let samples = (hop * rate).round() as usize;
        if chunk == 0 || !samples.is_multiple_of(chunk) {
            return Err(MonitorError::Mismatch {
                name: ms.name.clone(),
                detail: format!(
                    "`hop_seconds` = {hop} is not a whole number of the chunk-max profile's hops ({} s): use a multiple of it, or leave hop_seconds unset",
                    window.hop_seconds
                ),
            });
        }
    }
    Ok((profile, hop))
}

/// Opens the source a monitor's settings describe (devices shared between monitors are
/// opened by the daemon and passed in instead).
pub fn open_source(ms: &MonitorSettings) -> Result<Box<dyn Source>, CaptureError> {
    if let Some(file) = &ms.source.file {
        let s = cap::ReplaySource::open(cap::ReplaySettings {
            path: file.clone(),
            realtime: ms.source.realtime,
            looping: ms.source.looping,
        })?;
        return Ok(Box::new(s));
    }
    Ok(Box::new(cap::DeviceSource::open(device_settings(ms))?))
}

pub fn device_settings(ms: &MonitorSettings) -> cap::DeviceSettings {
    let mut d = ms.capture.clone().unwrap_or_default();
    d.device = ms
        .source
        .device
        .clone()
        .filter(|d| !d.eq_ignore_ascii_case("default"));
    d
}
