//! Embedding: window of samples at the model's rate -> log-mel (Rust) -> PANNs network (ONNX
//! Runtime) -> embedding vector.
//!
//! A model is a directory with `card.json` and the ONNX file it names. The card is checked
//! against the file (checksum) and against the network's inputs and outputs before anything
//! is embedded, so a wrong model is refused at start-up, not discovered in the scores.

pub mod card;
pub mod checksum;
pub mod chunkmax;
pub mod file;
pub mod optimized;
pub mod runtime;

pub use card::ModelCard;
pub use checksum::sha256_file;
pub use chunkmax::{Chunk, EmbedMode};

use crate::dsp::StreamLogMel;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::TensorRef;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Card(#[from] card::CardError),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error(
        "model file {path} not found (named by its card); re-run the conversion (models/convert_panns.py) or fix `onnx.file` in the card"
    )]
    ModelMissing { path: PathBuf },
    #[error(
        "model file {path} does not match its card (sha256 {actual}, card says {expected}): the model was replaced or corrupted; re-convert it or restore the matching card"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("ONNX Runtime cannot load {path}: {detail}")]
    Load { path: PathBuf, detail: String },
    #[error("model {path} does not match its card: {detail}")]
    Mismatch { path: PathBuf, detail: String },
    #[error(
        "window of {samples} samples is too short for model {model}: it needs at least {min} samples ({seconds:.2} s)"
    )]
    TooShort {
        model: String,
        samples: usize,
        min: usize,
        seconds: f64,
    },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error(
        "window of {samples} samples is not a whole number of {chunk}-sample chunks (the profile's chunk-max hop): the window must be the profile's"
    )]
    ChunkGrid { samples: usize, chunk: usize },
    #[error("the profile's window does not suit chunk-max embeddings: {0}")]
    ChunkMode(String),
}

/// How to run the model.
#[derive(Debug, Clone, Default)]
pub struct EmbedOptions {
    /// Intra-op threads for ONNX Runtime (0 = ONNX Runtime's default: all cores).
    pub threads: usize,
    /// Explicit libonnxruntime path (else the search in [`runtime::candidates`]).
    pub onnxruntime: Option<PathBuf>,
    /// Skip the checksum (for very large models on slow disks); the shape checks still run.
    pub skip_checksum: bool,
    /// A directory for the model as ONNX Runtime optimises it ([`optimized`]): the first load
    /// saves it there, later ones load it without optimising again, at about half the peak
    /// memory or less. None: optimise on every load (one-shot commands). Not used with
    /// `skip_checksum` (the model's identity is then unverified).
    pub optimized_cache: Option<PathBuf>,
}

/// What the network returns for one window.
#[derive(Debug, Clone)]
pub struct Output {
    pub embedding: Vec<f32>,
    pub clipwise: Option<Vec<f32>>,
}

pub struct Embedder {
    card: ModelCard,
    dir: PathBuf,
    session: Session,
    /// The front end: per window ([`Embedder::embed_batch`]) or streamed, reusing the frames
    /// consecutive windows share ([`Embedder::embed_batch_at`]); both give the same numbers.
    logmel: StreamLogMel,
    mel_buf: Vec<f32>,
    batch_buf: Vec<f32>,
    level_rms: Option<f32>,
    level_buf: Vec<f32>,
    /// Windows and frames of the last network call (its log-mels stay in `batch_buf`).
    last_batch: (usize, usize),
    keep_logmel: bool,
    /// Chunk-max mode ([`chunkmax`]): the kept chunks; `None` in the exact mode.
    chunks: Option<chunkmax::Chunks>,
}

/// Most a window is amplified by level normalisation (+40 dB): enough for a quiet machine,
/// not so much that dither in digital near-silence becomes a loud sound.
const MAX_LEVEL_GAIN: f32 = 100.0;

/// The gain that brings `w` to RMS `target`. Digital silence stays silence (gain 1).
fn level_gain(w: &[f32], target: f32) -> f32 {
    let rms = (w.iter().map(|x| x * x).sum::<f32>() / w.len().max(1) as f32).sqrt();
    if rms > 0.0 {
        (target / rms).min(MAX_LEVEL_GAIN)
    } else {
        1.0
    }
}

/// Scales `w` to RMS `target` into `out`.
fn level_normalize(w: &[f32], target: f32, out: &mut Vec<f32>) {
    let g = level_gain(w, target);
    out.clear();
    out.extend(w.iter().map(|x| x * g));
}

impl Embedder {
    /// Loads the model in `model_dir` (or the directory of a `card.json` path).
    pub fn load(model_dir: &Path, opts: &EmbedOptions) -> Result<Self, EmbedError> {
        let (card, card_path) = ModelCard::load(model_dir)?;
        let dir = card_path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        let onnx_path = dir.join(&card.onnx.file);
        if !onnx_path.exists() {
            return Err(EmbedError::ModelMissing { path: onnx_path });
        }
        // A FIFO or device in its place would block the checksum read forever.
        crate::files::ensure_regular(&onnx_path).map_err(|e| EmbedError::Load {
            path: onnx_path.clone(),
            detail: e.to_string(),
        })?;
        if !opts.skip_checksum {
            let actual =
                checksum::sha256_file_cached(&onnx_path).map_err(|e| EmbedError::Load {
                    path: onnx_path.clone(),
                    detail: e.to_string(),
                })?;
            if !actual.eq_ignore_ascii_case(&card.onnx.sha256) {
                return Err(EmbedError::Checksum {
                    path: onnx_path,
                    expected: card.onnx.sha256.clone(),
                    actual,
                });
            }
        }
        runtime::ensure(opts.onnxruntime.as_deref())?;
        let env = runtime::environment().ok_or_else(|| {
            EmbedError::Runtime(runtime::RuntimeError::Init("environment missing".into()))
        })?;
        let load_err = |detail: String| EmbedError::Load {
            path: onnx_path.clone(),
            detail,
        };
        let builder = |level: GraphOptimizationLevel| -> Result<SessionBuilder, EmbedError> {
            let b = Session::builder(env)
                .map_err(|e| load_err(e.to_string()))?
                .with_optimization_level(level)
                .map_err(|e| load_err(e.to_string()))?;
            match opts.threads {
                0 => Ok(b),
                n => b.with_intra_threads(n).map_err(|e| load_err(e.to_string())),
            }
        };
        let session = match opts.optimized_cache.as_deref() {
            Some(cache) if !opts.skip_checksum => {
                let entry = optimized::Entry::new(cache, &card.name, &card.onnx.sha256);
                session_via_cache(&entry, &onnx_path, builder)?
            }
            _ => builder(GraphOptimizationLevel::All)?
                .commit_from_file(&onnx_path)
                .map_err(|e| load_err(e.to_string()))?,
        };
        check_io(&session, &card).map_err(|detail| EmbedError::Mismatch {
            path: onnx_path.clone(),
            detail,
        })?;
        let logmel = StreamLogMel::new(&card.frontend, card.sample_rate);
        Ok(Self {
            card,
            dir,
            session,
            logmel,
            mel_buf: Vec::new(),
            batch_buf: Vec::new(),
            level_rms: None,
            level_buf: Vec::new(),
            last_batch: (0, 0),
            keep_logmel: false,
            chunks: None,
        })
    }

    /// Scales every window to this RMS level (dBFS) before the front end, or not at all
    /// (`None`). Microphone gain and distance then do not move the scores; the level a
    /// profile was learned with is recorded in it and used for scoring.
    pub fn set_level_dbfs(&mut self, dbfs: Option<f64>) {
        self.level_rms = dbfs.map(|d| 10f64.powf(d / 20.0) as f32);
    }

    /// Embeds the way a profile's window says: its level normalisation and its mode (exact
    /// windows, or chunk-max with the profile's hop as the chunk). Every command that compares
    /// embeddings with a profile's or a catalog's sets the embedder up through here.
    pub fn use_window(&mut self, w: &crate::score::profile::WindowSpec) -> Result<(), EmbedError> {
        self.set_level_dbfs(w.level_dbfs);
        self.set_mode(w.embed, w.seconds, w.hop_seconds)
    }

    /// Sets the mode for windows of `window_s` every `hop_s` seconds (the chunk is the hop).
    pub fn set_mode(
        &mut self,
        mode: EmbedMode,
        window_s: f64,
        hop_s: f64,
    ) -> Result<(), EmbedError> {
        self.chunks = match mode {
            EmbedMode::Exact => None,
            EmbedMode::ChunkMax => {
                let chunk = Chunk::for_hop(&self.card, hop_s).map_err(EmbedError::ChunkMode)?;
                let win = (window_s * f64::from(self.card.sample_rate)).round() as usize;
                if !win.is_multiple_of(chunk.samples) {
                    return Err(EmbedError::ChunkMode(format!(
                        "the window ({window_s} s, {win} samples) is not a whole number of hops ({} samples); re-learn the profile (learn rounds the window)",
                        chunk.samples
                    )));
                }
                Some(chunkmax::Chunks::new(chunk))
            }
        };
        Ok(())
    }

    /// Chunk-max mode: chunks run through the network and chunks reused so far.
    pub fn chunk_counts(&self) -> Option<(u64, u64)> {
        self.chunks.as_ref().map(chunkmax::Chunks::counts)
    }

    /// Whether the file embedding paths ([`file::embed_file`]) also hand out each window's
    /// log-mel (for the `mel` scorer: 17 KB per 1 s window at 44.1 kHz, so off unless asked).
    pub fn set_keep_logmel(&mut self, keep: bool) {
        self.keep_logmel = keep;
    }

    pub fn keeps_logmel(&self) -> bool {
        self.keep_logmel
    }

    /// The log-mel (`frames x mel_bins`) the last network call fed for its window `i`: what
    /// the network saw, level normalisation included, without computing it twice.
    pub fn batch_logmel(&self, i: usize) -> Option<&[f32]> {
        let (n, frames) = self.last_batch;
        let len = frames * self.card.frontend.mel_bins;
        (i < n).then(|| self.batch_buf.get(i * len..(i + 1) * len))?
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn sample_rate(&self) -> u32 {
        self.card.sample_rate
    }
    pub fn dim(&self) -> usize {
        self.card.embedding_dim
    }

    /// Fewest samples a window must have.
    pub fn min_samples(&self) -> usize {
        if let Some(c) = &self.chunks {
            return c.chunk().samples;
        }
        let fe = &self.card.frontend;
        ((self.card.min_frames - 1) * fe.hop_size).max(fe.min_samples())
    }

    /// The log-mel of a window, row-major `frames x mel_bins` (exposed for parity tests).
    pub fn logmel(&mut self, samples: &[f32]) -> (Vec<f32>, usize) {
        let mut out = Vec::new();
        let frames = self.logmel.compute_window(samples, &mut out);
        (out, frames)
    }

    /// Embeds one window of mono samples at the model's sample rate.
    pub fn embed(&mut self, samples: &[f32]) -> Result<Output, EmbedError> {
        let mut v = self.embed_batch(&[samples])?;
        v.pop()
            .ok_or_else(|| EmbedError::Inference("no output".into()))
    }

    /// Embeds windows of equal length in one network call (cheaper per window).
    pub fn embed_batch(&mut self, windows: &[&[f32]]) -> Result<Vec<Output>, EmbedError> {
        let Some(first) = windows.first() else {
            return Ok(Vec::new());
        };
        if self.chunks.is_some() {
            return self.embed_chunks_alone(windows);
        }
        let len = first.len();
        self.check_lengths(len, windows.iter().map(|w| w.len()))?;
        self.batch_buf.clear();
        let mut frames = 0;
        for w in windows {
            let w = match self.level_rms {
                Some(target) => {
                    level_normalize(w, target, &mut self.level_buf);
                    self.level_buf.as_slice()
                }
                None => w,
            };
            frames = self.logmel.compute_window(w, &mut self.mel_buf);
            self.batch_buf.extend_from_slice(&self.mel_buf);
        }
        let mels = self.card.frontend.mel_bins;
        self.run_logmel_batch(windows.len(), frames, mels)
    }

    /// Embeds one window of a stream that starts at stream sample `start` (at the model's
    /// rate): [`Embedder::embed_batch_at`] for one window.
    pub fn embed_at(&mut self, start: u64, samples: &[f32]) -> Result<Output, EmbedError> {
        let mut v = self.embed_batch_at(&[(start, samples)])?;
        v.pop()
            .ok_or_else(|| EmbedError::Inference("no output".into()))
    }

    /// [`Embedder::embed_batch`] for windows of one stream, each with its start sample, in
    /// stream order: the log-mel frames a window shares with the window before it are reused
    /// instead of recomputed ([`crate::dsp::mel_stream`]), which makes overlapping windows
    /// cheap. The log-mel is bit for bit the per-window one; with level normalisation the
    /// gain is applied to the mel energies, which differs from scaling the samples by f32
    /// rounding only (below 1e-4 dB, tested in `dsp::mel_stream`).
    pub fn embed_batch_at(&mut self, windows: &[(u64, &[f32])]) -> Result<Vec<Output>, EmbedError> {
        let Some((_, first)) = windows.first() else {
            return Ok(Vec::new());
        };
        if self.chunks.is_some() {
            return self.embed_chunks_at(windows);
        }
        let len = first.len();
        self.check_lengths(len, windows.iter().map(|(_, w)| w.len()))?;
        self.batch_buf.clear();
        let mut frames = 0;
        for (start, w) in windows {
            let gain = self.level_rms.map_or(1.0, |target| level_gain(w, target));
            frames = self.logmel.compute_at(*start, w, gain, &mut self.mel_buf);
            self.batch_buf.extend_from_slice(&self.mel_buf);
        }
        let mels = self.card.frontend.mel_bins;
        self.run_logmel_batch(windows.len(), frames, mels)
    }

    /// The log-mel the network is fed for one window of a stream (level normalisation
    /// included), row-major `frames x mel_bins`; returns the number of frames. What
    /// [`Embedder::embed_batch_at`] computes before the network, for scorers that look at the
    /// spectrogram itself and for research dumps that must see exactly earshot's features.
    pub fn logmel_at(&mut self, start: u64, samples: &[f32], out: &mut Vec<f32>) -> usize {
        let gain = self
            .level_rms
            .map_or(1.0, |target| level_gain(samples, target));
        self.logmel.compute_at(start, samples, gain, out)
    }

    /// Log-mel frames computed and reused so far by the streamed front end.
    pub fn frame_counts(&self) -> (u64, u64) {
        self.logmel.frame_counts()
    }

    /// Refuses a batch whose windows are too short for the model or of different lengths.
    fn check_lengths(
        &self,
        len: usize,
        mut lens: impl Iterator<Item = usize>,
    ) -> Result<(), EmbedError> {
        if len < self.min_samples() {
            return Err(EmbedError::TooShort {
                model: self.card.name.clone(),
                samples: len,
                min: self.min_samples(),
                seconds: self.min_samples() as f64 / f64::from(self.card.sample_rate),
            });
        }
        if lens.any(|l| l != len) {
            return Err(EmbedError::Inference(
                "windows in one batch must have the same length".into(),
            ));
        }
        Ok(())
    }

    /// Runs the network on a log-mel given directly (`frames x mel_bins`).
    pub fn embed_logmel(&mut self, logmel: &[f32], frames: usize) -> Result<Output, EmbedError> {
        self.batch_buf.clear();
        self.batch_buf.extend_from_slice(logmel);
        let mels = self.card.frontend.mel_bins;
        let mut v = self.run_logmel_batch(1, frames, mels)?;
        v.pop()
            .ok_or_else(|| EmbedError::Inference("no output".into()))
    }

    fn run_logmel_batch(
        &mut self,
        batch: usize,
        frames: usize,
        mels: usize,
    ) -> Result<Vec<Output>, EmbedError> {
        let inf = |e: ort::Error| EmbedError::Inference(e.to_string());
        self.last_batch = (batch, frames);
        let view =
            ndarray::ArrayView4::from_shape((batch, 1, frames, mels), self.batch_buf.as_slice())
                .map_err(|e| EmbedError::Inference(e.to_string()))?;
        let input = TensorRef::from_array_view(view).map_err(inf)?;
        let card = &self.card;
        let outputs = self
            .session
            .run(ort::inputs![card.input.name.as_str() => input])
            .map_err(inf)?;
        let emb = outputs[card.outputs.embedding.as_str()]
            .try_extract_array::<f32>()
            .map_err(inf)?;
        let dim = card.embedding_dim;
        if emb.len() != batch * dim {
            return Err(EmbedError::Inference(format!(
                "embedding output has {} values, expected {batch} x {dim}",
                emb.len()
            )));
        }
        let emb: Vec<f32> = emb.iter().copied().collect();
        let clip: Option<Vec<f32>> = match &card.outputs.clipwise {
            Some(name) => match outputs.get(name.as_str()) {
                Some(v) => Some(
                    v.try_extract_array::<f32>()
                        .map_err(inf)?
                        .iter()
                        .copied()
                        .collect(),
                ),
                None => None,
            },
            None => None,
        };
        let per_clip = clip.as_ref().map(|c| c.len() / batch.max(1));
        Ok((0..batch)
            .map(|b| Output {
                embedding: emb[b * dim..(b + 1) * dim].to_vec(),
                clipwise: clip
                    .as_ref()
                    .zip(per_clip)
                    .map(|(c, n)| c[b * n..(b + 1) * n].to_vec()),
            })
            .collect())
    }
}

/// Checks the network's declared inputs and outputs against the card.
fn check_io(session: &Session, card: &ModelCard) -> Result<(), String> {
    let inputs = session.inputs();
    let Some(input) = inputs.iter().find(|i| i.name() == card.input.name) else {
        let names: Vec<&str> = inputs.iter().map(|i| i.name()).collect();
        return Err(format!(
            "the card's input {:?} is not an input of the network (it has {names:?})",
            card.input.name
        ));
    };
    if inputs.len() != 1 {
        return Err(format!(
            "the network has {} inputs, earshot feeds exactly one",
            inputs.len()
        ));
    }
    if let Some(shape) = input.dtype().tensor_shape() {
        let dims: Vec<i64> = shape.iter().copied().collect();
        if dims.len() != 4 {
            return Err(format!(
                "input {:?} has rank {} (shape {dims:?}), expected [batch, 1, frames, mel_bins]",
                card.input.name,
                dims.len()
            ));
        }
        let mels = card.frontend.mel_bins as i64;
        if (dims[1] > 0 && dims[1] != 1) || (dims[3] > 0 && dims[3] != mels) {
            return Err(format!(
                "input shape {dims:?} does not take [batch, 1, frames, {mels}] as the card's front end produces"
            ));
        }
    }
    let outputs = session.outputs();
    let Some(emb) = outputs.iter().find(|o| o.name() == card.outputs.embedding) else {
        let names: Vec<&str> = outputs.iter().map(|o| o.name()).collect();
        return Err(format!(
            "the card's embedding output {:?} is not an output of the network (it has {names:?})",
            card.outputs.embedding
        ));
    };
    if let Some(shape) = emb.dtype().tensor_shape() {
        let dims: Vec<i64> = shape.iter().copied().collect();
        if let Some(&last) = dims.last()
            && last > 0
            && last as usize != card.embedding_dim
        {
            return Err(format!(
                "embedding output has {last} dimensions, the card says {}",
                card.embedding_dim
            ));
        }
    }
    if let Some(missing) = card
        .outputs
        .intermediate
        .iter()
        .find(|n| !outputs.iter().any(|o| o.name() == n.as_str()))
    {
        return Err(format!(
            "the card's intermediate output {missing:?} is not an output of the network"
        ));
    }
    if let Some(c) = &card.outputs.clipwise
        && !outputs.iter().any(|o| o.name() == c)
    {
        return Err(format!(
            "the card's clipwise output {c:?} is not an output of the network"
        ));
    }
    Ok(())
}

/// A session from the cache entry's optimised model when it holds a usable one (made with
/// optimisations off: they are in the file), else from the original, optimised and saved
/// into the entry for the next load. A cache that cannot be read or written is logged and
/// costs only the memory peak.
///
/// Monitors of one model start at once: a usable entry is loaded by all of them together,
/// but an entry to be made is made by one of them while the others wait for it (the entry's
/// lock) and then load what it saved. Each making its own would peak at the optimisation's
/// memory once per monitor, and their saves would replace each other's weights.
fn session_via_cache(
    entry: &optimized::Entry,
    onnx_path: &Path,
    builder: impl Fn(GraphOptimizationLevel) -> Result<SessionBuilder, EmbedError>,
) -> Result<Session, EmbedError> {
    if let Some(s) = load_saved(entry, &builder, false)? {
        return Ok(s);
    }
    let _lock = entry.lock();
    if let Some(s) = load_saved(entry, &builder, true)? {
        return Ok(s);
    }
    save_to_cache(entry, onnx_path, builder)
}

/// The session from the entry's saved model, if it holds a usable one. Why one that is there
/// cannot be used is logged when `report` (the check under the entry's lock, which then makes
/// it again); the check before the lock stays quiet, so it is said once.
fn load_saved(
    entry: &optimized::Entry,
    builder: &impl Fn(GraphOptimizationLevel) -> Result<SessionBuilder, EmbedError>,
    report: bool,
) -> Result<Option<Session>, EmbedError> {
    let dir = entry.dir().display().to_string();
    match entry.usable() {
        Ok(Some(saved)) => match builder(GraphOptimizationLevel::Disable)?.commit_from_file(&saved)
        {
            Ok(s) => {
                tracing::debug!(cache = %dir, "model loaded from its optimised copy");
                Ok(Some(s))
            }
            Err(e) if report => {
                tracing::warn!(cache = %dir, error = %e, "the saved optimised model does not load: optimising the original again");
                Ok(None)
            }
            Err(_) => Ok(None),
        },
        Ok(None) => Ok(None),
        Err(why) if report => {
            tracing::warn!(cache = %dir, "saved optimised model not used ({why}): optimising the original again");
            Ok(None)
        }
        Err(_) => Ok(None),
    }
}

/// Optimises the original model into a session and saves the result as the entry (called
/// with the entry's lock held).
fn save_to_cache(
    entry: &optimized::Entry,
    onnx_path: &Path,
    builder: impl Fn(GraphOptimizationLevel) -> Result<SessionBuilder, EmbedError>,
) -> Result<Session, EmbedError> {
    let dir = entry.dir().display().to_string();
    let load_err = |e: &dyn std::fmt::Display| EmbedError::Load {
        path: onnx_path.to_owned(),
        detail: e.to_string(),
    };
    let staged = match entry.stage() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(cache = %dir, error = %e, "cannot keep the optimised model (each start peaks at up to 3x the model's size); check the state directory's permissions and space");
            return builder(GraphOptimizationLevel::All)?
                .commit_from_file(onnx_path)
                .map_err(|e| load_err(&e));
        }
    };
    // The weights go to a file of their own (all but the smallest tensors), which a later
    // load maps instead of copying.
    let save = || -> Result<Session, EmbedError> {
        let mut b = builder(GraphOptimizationLevel::All)?
            .with_config_entry(
                "session.optimized_model_external_initializers_file_name",
                &staged.weights,
            )
            .map_err(|e| load_err(&e))?
            .with_config_entry(
                "session.optimized_model_external_initializers_min_size_in_bytes",
                "1024",
            )
            .map_err(|e| load_err(&e))?
            .with_optimized_model_path(&staged.model)
            .map_err(|e| load_err(&e))?;
        b.commit_from_file(onnx_path).map_err(|e| load_err(&e))
    };
    let saved = save();
    match saved {
        Ok(s) => {
            match entry.commit(&staged) {
                Ok(()) => {
                    tracing::info!(cache = %dir, "optimised model saved: later starts load it without optimising (a lower memory peak)")
                }
                Err(e) => {
                    entry.discard(&staged);
                    tracing::warn!(cache = %dir, error = %e, "cannot keep the optimised model (each start peaks at up to 3x the model's size)");
                }
            }
            Ok(s)
        }
        Err(e) => {
            // Saving may be what failed (a full disk): the session without it.
            entry.discard(&staged);
            tracing::warn!(cache = %dir, error = %e, "optimising with a saved copy failed: loading the original without one");
            builder(GraphOptimizationLevel::All)?
                .commit_from_file(onnx_path)
                .map_err(|e| load_err(&e))
        }
    }
}
