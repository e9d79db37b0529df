//! Turning finished clip audio into evidence on disk, off the scoring thread.
//!
//! [`Evidence`] is the daemon-wide part (config, directory, metrics, the free-space guard);
//! [`MonitorEvidence`] the part a monitor's decision stage drives (it sees the decisions and
//! the window scores); [`ClipWriter`] the monitor's writer thread.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use crossbeam_channel::{Sender, TrySendError};
use parking_lot::Mutex;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use super::recorder::{ClipRecorder, FinishedAudio};
use super::spectrogram::{self, Picture, Spectrogram, WindowScores};
use super::store::{EventEvidence, Store};
use super::{CLIP_FILE, EvidenceConfig, EvidenceError, IMAGE_FILE, META_FILE, io_err, split_id};
use crate::score::decide::{DecisionEvent, DecisionKind, ScoreSample};

pub mod names {
    /// Clips written, by `monitor`.
    pub const CLIPS_WRITTEN: &str = "earshot_evidence_clips_written_total";
    /// Clips not written, by `monitor` and `reason` (`low_disk`: under `min_free_megabytes`;
    /// `failed`: an I/O error, e.g. the disk filled while writing; `busy`: the writer was
    /// behind).
    pub const CLIPS_SKIPPED: &str = "earshot_evidence_clips_skipped_total";
    /// Events' evidence removed by retention, by `monitor`.
    pub const REMOVED: &str = "earshot_evidence_removed_total";
    /// 1 while clip writing is paused for lack of free space.
    pub const PAUSED: &str = "earshot_evidence_paused";

    pub const ALL: &[&str] = &[CLIPS_WRITTEN, CLIPS_SKIPPED, REMOVED, PAUSED];
}

/// The daemon-wide evidence state, shared by every monitor and the events page.
pub struct Evidence {
    pub cfg: EvidenceConfig,
    pub store: Store,
    written: IntCounterVec,
    skipped: IntCounterVec,
    removed: IntCounterVec,
    paused_gauge: IntGauge,
    paused: AtomicBool,
    health: crate::metrics::Health,
}

impl Evidence {
    /// Registers the metrics in `registry` and removes what a crash left in the directory.
    pub fn new(
        cfg: EvidenceConfig,
        state_dir: &Path,
        registry: &Registry,
        health: crate::metrics::Health,
    ) -> Result<Arc<Self>, prometheus::Error> {
        let c = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
            let m = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(m.clone()))?;
            Ok(m)
        };
        let written = c(names::CLIPS_WRITTEN, "Anomaly clips written.", &["monitor"])?;
        let skipped = c(
            names::CLIPS_SKIPPED,
            "Anomaly clips not written (low_disk, failed, busy).",
            &["monitor", "reason"],
        )?;
        let removed = c(
            names::REMOVED,
            "Events' evidence removed by retention.",
            &["monitor"],
        )?;
        let paused_gauge = IntGauge::new(
            names::PAUSED,
            "1 while clip writing is paused because the state directory's filesystem is low on space.",
        )?;
        registry.register(Box::new(paused_gauge.clone()))?;
        let store = Store::new(state_dir);
        let swept = store.sweep();
        if swept > 0 {
            tracing::info!(removed = swept, dir = %store.root().display(), "removed incomplete evidence left by an interrupted write");
        }
        Ok(Arc::new(Self {
            cfg,
            store,
            written,
            skipped,
            removed,
            paused_gauge,
            paused: AtomicBool::new(false),
            health,
        }))
    }

    /// Whether clip writing is paused for lack of space (for `/readyz` and the page).
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    fn skip(&self, monitor: &str, reason: &str) {
        self.skipped.with_label_values(&[monitor, reason]).inc();
    }

    /// The free-space guard: true when a clip may be written now. Entering and leaving the
    /// paused state is logged once each.
    fn room(&self) -> bool {
        let min = (self.cfg.min_free_megabytes * 1e6) as u64;
        let dir = self.store.root();
        let probe = if dir.exists() {
            dir
        } else {
            dir.parent().unwrap_or(dir)
        };
        let free = super::free_bytes(probe).unwrap_or(u64::MAX);
        let low = free < min;
        let was = self.paused.swap(low, Ordering::AcqRel);
        if low != was {
            self.paused_gauge.set(low as i64);
            self.health.set_note(
                "evidence",
                low.then(|| format!("anomaly clips paused: {:.0} MB free on the state directory's filesystem, under min_free_megabytes = {}", free as f64 / 1e6, self.cfg.min_free_megabytes)),
            );
            if low {
                tracing::warn!(free_mb = free as f64 / 1e6, min_free_megabytes = self.cfg.min_free_megabytes, dir = %dir.display(), "low on disk space: anomaly clips are not written until space returns (events and alerts go on)");
            } else {
                tracing::info!(
                    free_mb = free as f64 / 1e6,
                    "disk space is back: anomaly clips are written again"
                );
            }
        }
        !low
    }

    /// Writes one event's evidence and applies retention to its monitor. The clip so far
    /// (`partial`) is neither counted nor reported skipped: the whole clip that replaces it is.
    fn write(&self, job: WriteJob) {
        let monitor = job.monitor.clone();
        let id = &job.audio.event_id;
        let (written, not_written) = if job.partial {
            (
                "anomaly clip so far written (the whole clip replaces it when the event ends)",
                "anomaly clip so far not written (the whole clip is written when the event ends)",
            )
        } else {
            ("anomaly clip written", "anomaly clip not written")
        };
        if !self.room() {
            if !job.partial {
                self.skip(&monitor, "low_disk");
                tracing::warn!(monitor = %monitor, event_id = %id, "anomaly clip skipped: low on disk space");
            }
            return;
        }
        match write_event(&self.store, &job) {
            Ok(dir) => {
                if !job.partial {
                    self.written.with_label_values(&[&monitor]).inc();
                }
                let seconds = job.audio.samples.len() as f64 / f64::from(job.audio.sample_rate);
                tracing::info!(monitor = %monitor, event_id = %id, dir = %dir.display(), seconds, "{written}");
            }
            Err(e) => {
                if !job.partial {
                    self.skip(&monitor, "failed");
                }
                tracing::warn!(monitor = %monitor, event_id = %id, error = %e, "{not_written}");
            }
        }
        let p = super::retention::prune(&self.store, &monitor, &self.cfg, SystemTime::now());
        if p.events > 0 {
            self.removed
                .with_label_values(&[&monitor])
                .inc_by(p.events as u64);
        }
    }
}

/// Everything the writer thread needs for one event.
pub struct WriteJob {
    pub monitor: String,
    pub audio: FinishedAudio,
    pub event: DecisionEvent,
    /// Windows over the clip, times relative to its first sample.
    pub windows: Vec<WindowScores>,
    pub reference: Option<Arc<Spectrogram>>,
    /// The clip so far, written at detection (see [`EventEvidence::partial`]).
    pub partial: bool,
}

/// Writes WAV, PNG and `event.json` into a hidden temp directory, fsyncs them and renames the
/// directory into place: the event appears complete or not at all.
pub fn write_event(store: &Store, job: &WriteJob) -> Result<std::path::PathBuf, EvidenceError> {
    let final_dir = store.event_dir(&job.audio.event_id)?;
    let (_, hex) = split_id(&job.audio.event_id)?;
    let parent = final_dir.parent().unwrap_or(store.root()).to_owned();
    std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let tmp = parent.join(format!(".tmp-{hex}"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    let result = (|| {
        write_wav(&tmp.join(CLIP_FILE), &job.audio)?;
        let rate = job.audio.sample_rate;
        let clip_s = job.audio.samples.len() as f64 / f64::from(rate.max(1));
        let onset = job.event.start.stream_s - job.audio.start_s;
        let spec = Spectrogram::compute(&job.audio.samples, rate, 800, 256);
        let title = format!(
            "{} - event {} ({})",
            job.monitor, job.audio.event_id, job.event.start.wall
        );
        let image_path = tmp.join(IMAGE_FILE);
        let image = match spectrogram::draw(
            &Picture {
                title: &title,
                clip: &spec,
                windows: &job.windows,
                onset_s: Some(onset),
                reference: job.reference.as_deref(),
            },
            &image_path,
        ) {
            Ok(()) => {
                sync_file(&image_path)?;
                true
            }
            Err(e) => {
                // The clip matters more than its picture: keep it without the image.
                tracing::warn!(monitor = %job.monitor, error = %e, "spectrogram not drawn");
                let _ = std::fs::remove_file(&image_path);
                false
            }
        };
        let meta = EventEvidence {
            event_id: job.audio.event_id.clone(),
            monitor: job.monitor.clone(),
            event: job.event.clone(),
            sample_rate: rate,
            clip_seconds: clip_s,
            clip_start_s: job.audio.start_s,
            onset_offset_s: onset,
            image,
            windows: job.windows.clone(),
            written_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            partial: job.partial,
        };
        let meta_path = tmp.join(META_FILE);
        let text = serde_json::to_vec_pretty(&meta).map_err(|e| EvidenceError::Io {
            path: meta_path.clone(),
            source: std::io::Error::other(e),
        })?;
        let mut f = std::fs::File::create(&meta_path).map_err(io_err(&meta_path))?;
        f.write_all(&text).map_err(io_err(&meta_path))?;
        f.sync_all().map_err(io_err(&meta_path))?;
        sync_dir(&tmp)?;
        store.replace(&tmp, &final_dir)?;
        sync_dir(&parent)?;
        Ok(final_dir.clone())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn write_wav(path: &Path, a: &FinishedAudio) -> Result<(), EvidenceError> {
    crate::audio::write_wav_i16(path, &a.samples, a.sample_rate).map_err(|e| {
        EvidenceError::Wav {
            path: path.to_owned(),
            detail: e.to_string(),
        }
    })?;
    sync_file(path)
}

fn sync_file(path: &Path) -> Result<(), EvidenceError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))
}

fn sync_dir(path: &Path) -> Result<(), EvidenceError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))
}

/// A monitor's writer thread; dropping it lets queued clips finish, then joins the thread.
pub struct ClipWriter {
    tx: Option<Sender<WriteJob>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ClipWriter {
    pub fn start(monitor: &str, evidence: Arc<Evidence>) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded::<WriteJob>(4);
        let thread = std::thread::Builder::new()
            .name(format!("evidence-{monitor}"))
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    evidence.write(job);
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a job; false when the writer is behind (the clip is dropped).
    fn send(&self, job: WriteJob) -> bool {
        match self.tx.as_ref().map(|t| t.try_send(job)) {
            Some(Ok(())) => true,
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => false,
        }
    }
}

impl Drop for ClipWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The window scores a monitor saw recently, in stream seconds.
#[derive(Default)]
pub struct WindowTrace {
    windows: VecDeque<WindowScores>,
}

impl WindowTrace {
    fn push(&mut self, start_s: f64, end_s: f64, scores: &[ScoreSample<'_>], keep_s: f64) {
        self.windows.push_back(WindowScores {
            start_s,
            end_s,
            scores: scores
                .iter()
                .map(|s| (s.scorer.to_string(), s.score, s.threshold))
                .collect(),
        });
        while self
            .windows
            .front()
            .is_some_and(|w| w.end_s < end_s - keep_s)
        {
            self.windows.pop_front();
        }
    }

    /// Windows overlapping `[from, to)`, with times relative to `from`.
    fn span(&self, from: f64, to: f64) -> Vec<WindowScores> {
        self.windows
            .iter()
            .filter(|w| w.end_s > from && w.start_s < to && !w.scores.is_empty())
            .map(|w| WindowScores {
                start_s: w.start_s - from,
                end_s: w.end_s - from,
                scores: w.scores.clone(),
            })
            .collect()
    }
}

/// What a monitor's decision stage drives: the recorder (shared with the capture thread),
/// the window trace, the latest decision of each event awaiting its clip, the writer.
pub struct MonitorEvidence {
    monitor: String,
    evidence: Arc<Evidence>,
    recorder: Arc<Mutex<ClipRecorder>>,
    writer: ClipWriter,
    trace: WindowTrace,
    keep_s: f64,
    pending: BTreeMap<String, DecisionEvent>,
    ready: Vec<FinishedAudio>,
    reference: Option<Arc<Spectrogram>>,
}

impl MonitorEvidence {
    /// `ring_seconds`: how far back the recorder reaches (pre-roll plus decision delay).
    pub fn new(
        monitor: &str,
        evidence: Arc<Evidence>,
        recorder: Arc<Mutex<ClipRecorder>>,
        ring_seconds: f64,
        reference: Option<Arc<Spectrogram>>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            monitor: monitor.to_string(),
            writer: ClipWriter::start(monitor, evidence.clone())?,
            evidence,
            recorder,
            trace: WindowTrace::default(),
            keep_s: ring_seconds + 5.0,
            pending: BTreeMap::new(),
            ready: Vec::new(),
            reference,
        })
    }

    /// The recorder's ring length for a monitor: pre-roll, the window and the windows that
    /// can stand between hearing the onset and deciding on it (N of M, the queue), plus slack.
    pub fn ring_seconds(
        cfg: &EvidenceConfig,
        window_s: f64,
        hop_s: f64,
        windows_behind: usize,
    ) -> f64 {
        cfg.pre_roll_seconds + window_s + hop_s * windows_behind as f64 + 5.0
    }

    /// After each window: its scores (none while there is no signal) and the decisions that
    /// went out with it, in order (a start held back for a hop goes out with the next window).
    pub fn window(
        &mut self,
        start_s: f64,
        end_s: f64,
        scores: &[ScoreSample<'_>],
        decisions: &[DecisionEvent],
    ) {
        self.trace.push(start_s, end_s, scores, self.keep_s);
        for ev in decisions {
            self.decision(ev);
        }
        self.flush(end_s, false);
    }

    /// The monitor stops: an open clip is finished as it is and every finished clip written.
    pub fn finish(&mut self, last: &[DecisionEvent]) {
        for ev in last {
            self.decision(ev);
        }
        self.recorder.lock().finish_active();
        self.flush(f64::INFINITY, true);
    }

    fn decision(&mut self, ev: &DecisionEvent) {
        let cfg = &self.evidence.cfg;
        let mut rec = self.recorder.lock();
        match ev.kind {
            DecisionKind::Started => {
                rec.begin(
                    &ev.event_id,
                    ev.start.stream_s - cfg.pre_roll_seconds,
                    cfg.max_clip_seconds,
                );
            }
            DecisionKind::Ongoing => {}
            DecisionKind::Ended => {
                let end = ev.end.as_ref().map_or(ev.start.stream_s, |e| e.stream_s);
                rec.end(&ev.event_id, end + cfg.post_roll_seconds);
            }
        }
        let so_far = (ev.kind == DecisionKind::Started)
            .then(|| rec.snapshot(&ev.event_id))
            .flatten();
        drop(rec);
        if ev.kind == DecisionKind::Started || self.pending.contains_key(&ev.event_id) {
            self.pending.insert(ev.event_id.clone(), ev.clone());
        }
        // The clip so far, at once: whoever the alert reaches can listen to the onset now,
        // not only when the event ends (up to `max_clip_seconds` later), and a kill before
        // then still leaves it.
        if let Some(audio) = so_far.filter(|a| !a.samples.is_empty()) {
            let job = WriteJob {
                monitor: self.monitor.clone(),
                windows: self.trace.span(audio.start_s, audio.end_s()),
                audio,
                event: ev.clone(),
                reference: self.reference.clone(),
                partial: true,
            };
            if !self.writer.send(job) {
                tracing::debug!(monitor = %self.monitor, "clip so far not written: the evidence writer is behind");
            }
        }
    }

    /// Hands finished clips to the writer once the windows over them are scored (`scored_to`
    /// is the end of the latest scored window), or all of them when `all`.
    fn flush(&mut self, scored_to: f64, all: bool) {
        let done = self.recorder.lock().take_done();
        self.ready.extend(done);
        let mut i = 0;
        while i < self.ready.len() {
            let a = &self.ready[i];
            // Written once the windows over it are scored and its event has ended (or the
            // clip reached its maximum length): event.json then has the event's end.
            let ended = self
                .pending
                .get(&a.event_id)
                .is_none_or(|e| e.kind == DecisionKind::Ended);
            let full = a.end_s() - a.start_s + 1e-3 >= self.evidence.cfg.max_clip_seconds;
            if !(all || (scored_to >= a.end_s() && (ended || full))) {
                i += 1;
                continue;
            }
            let audio = self.ready.swap_remove(i);
            let Some(event) = self.pending.remove(&audio.event_id) else {
                continue;
            };
            let windows = self.trace.span(audio.start_s, audio.end_s());
            let job = WriteJob {
                monitor: self.monitor.clone(),
                audio,
                event,
                windows,
                reference: self.reference.clone(),
                partial: false,
            };
            if !self.writer.send(job) {
                self.evidence.skip(&self.monitor, "busy");
                tracing::warn!(monitor = %self.monitor, "anomaly clip skipped: the evidence writer is behind");
            }
        }
    }
}
