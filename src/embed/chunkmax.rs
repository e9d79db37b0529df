//! Chunk-max embeddings: the network runs once per hop, not once per window.
//!
//! In the exact mode every window is a network call over its whole log-mel, so at hop =
//! window / 4 each stretch of audio goes through the network four times. In chunk-max mode the
//! stream is cut into chunks of one hop (a whole number of front-end frames), each chunk's
//! log-mel goes through the network once, and a window's embedding is the element-wise maximum
//! of its chunks' embeddings. For a network whose embedding is itself a maximum over time
//! cells (aisfx-cnn9: mean over frequency, max over time) this is the same pooling over time
//! with each chunk's cells computed from the chunk alone: a different feature than the exact
//! window's (cosine about 0.6 to it for 11-frame chunks), not an approximation of it, so it is
//! a property of a profile (`[window] embed = "chunk-max"`, recorded in the manifest) and
//! everything that compares embeddings (learn, score, eval, feedback, the catalog, the
//! indexes) uses the profile's mode. Measured on the dev set before it was built
//! (`scripts/research/chunkmax/`): detection within noise of the exact windows at under a
//! fifth of the network work at hop 0.25 s.
//!
//! A chunk is levelled once, by the RMS of the last second of the stream up to its end (what a
//! stream can know when the chunk completes), and its frames are the window's own centred
//! frames, so a chunk computed as the last chunk of one window is the same chunk, bit for bit,
//! in the next windows that hold it. Chunks are kept with their samples and reused only when
//! the samples at that stream position are the same (a gap, a restarted stream or a looped
//! replay recompute, as the streamed front end does). The first window after a start or a gap
//! computes all its chunks, the earlier ones with less than a second of level history.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{EmbedError, Embedder, Output, level_gain};

/// How a profile's windows become embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmbedMode {
    /// One network call per window over the window's whole log-mel.
    #[default]
    Exact,
    /// One network call per hop-long chunk; a window is the element-wise max of its chunks.
    ChunkMax,
}

impl EmbedMode {
    pub fn is_exact(&self) -> bool {
        *self == EmbedMode::Exact
    }

    pub fn name(&self) -> &'static str {
        match self {
            EmbedMode::Exact => "exact",
            EmbedMode::ChunkMax => "chunk-max",
        }
    }
}

/// The chunk of a chunk-max profile: its length in front-end frames and in samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub frames: usize,
    pub samples: usize,
}

impl Chunk {
    /// The chunk for a profile's hop on `card`'s front end: the hop must be a whole number of
    /// front-end frames (learn rounds it so, [`Chunk::round_window`]) and at least the
    /// network's shortest input.
    pub fn for_hop(card: &super::ModelCard, hop_seconds: f64) -> Result<Chunk, String> {
        let rate = f64::from(card.sample_rate);
        let fhop = card.frontend.hop_size;
        let samples = hop_seconds * rate;
        let frames = (samples / fhop as f64).round() as usize;
        if frames == 0 || (samples - (frames * fhop) as f64).abs() > 0.5 {
            return Err(format!(
                "chunk-max needs a hop of whole front-end frames ({fhop} samples at {} Hz); {hop_seconds} s is not: re-learn the profile (learn rounds the hop)",
                card.sample_rate
            ));
        }
        if frames < card.min_frames {
            return Err(format!(
                "chunk-max needs a hop of at least {} front-end frames ({:.3} s) for model {}; {hop_seconds} s is {frames}",
                card.min_frames,
                (card.min_frames * fhop) as f64 / rate,
                card.name
            ));
        }
        Ok(Chunk {
            frames,
            samples: frames * fhop,
        })
    }

    /// The window and hop (seconds) a chunk-max profile is learned with for the configured
    /// ones: the hop rounded to whole front-end frames (at least the network's shortest
    /// input), the window to a whole number of such hops. At 44.1 kHz with 1024-sample frames,
    /// 1 s / 0.25 s becomes 1.0216 s / 0.2554 s (4 chunks of 11 frames).
    pub fn round_window(card: &super::ModelCard, window_s: f64, hop_s: f64) -> (f64, f64) {
        let rate = f64::from(card.sample_rate);
        let fhop = card.frontend.hop_size;
        let frames = ((hop_s * rate / fhop as f64).round() as usize).max(card.min_frames.max(1));
        let chunk_s = (frames * fhop) as f64 / rate;
        let chunks = ((window_s / chunk_s).round() as usize).max(1);
        ((chunks * frames * fhop) as f64 / rate, chunk_s)
    }
}

/// One chunk computed: where it starts in the stream, its samples (to check a reuse), the
/// log-mel the network saw and the network's embedding (not normalised).
struct Kept {
    start: u64,
    samples: Vec<f32>,
    logmel: Vec<f32>,
    embedding: Vec<f32>,
}

/// The chunks of the last windows, for the next ones.
pub(super) struct Chunks {
    chunk: Chunk,
    kept: VecDeque<Kept>,
    computed: u64,
    reused: u64,
}

impl Chunks {
    pub(super) fn new(chunk: Chunk) -> Self {
        Self {
            chunk,
            kept: VecDeque::new(),
            computed: 0,
            reused: 0,
        }
    }

    pub(super) fn chunk(&self) -> Chunk {
        self.chunk
    }

    /// Chunks computed by the network and chunks reused so far.
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.computed, self.reused)
    }

    fn find(&self, start: u64, samples: &[f32]) -> Option<usize> {
        self.kept.iter().position(|k| {
            k.start == start
                && k.samples.len() == samples.len()
                && k.samples
                    .iter()
                    .zip(samples)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
        })
    }
}

impl Embedder {
    /// [`Embedder::embed_batch_at`] in chunk-max mode: windows of one stream, each a whole
    /// number of chunks, in stream order.
    pub(super) fn embed_chunks_at(
        &mut self,
        windows: &[(u64, &[f32])],
    ) -> Result<Vec<Output>, EmbedError> {
        let Some(mut chunks) = self.chunks.take() else {
            return Err(EmbedError::Inference(
                "chunk-max mode without a chunk".into(),
            ));
        };
        let result = self.embed_chunks_with(&mut chunks, windows);
        self.chunks = Some(chunks);
        result
    }

    fn embed_chunks_with(
        &mut self,
        chunks: &mut Chunks,
        windows: &[(u64, &[f32])],
    ) -> Result<Vec<Output>, EmbedError> {
        let Some((_, first)) = windows.first() else {
            return Ok(Vec::new());
        };
        let Chunk {
            frames: cf,
            samples: cs,
        } = chunks.chunk;
        let len = first.len();
        if len < cs || !len.is_multiple_of(cs) || windows.iter().any(|(_, w)| w.len() != len) {
            return Err(EmbedError::ChunkGrid {
                samples: len,
                chunk: cs,
            });
        }
        let per_window = len / cs;
        let rate = self.card.sample_rate as usize;
        // Which kept chunk each window's chunk is; new ones are computed into `batch_buf`.
        let mut refs = Vec::with_capacity(windows.len() * per_window);
        let fresh_from = chunks.kept.len();
        self.batch_buf.clear();
        for (start, w) in windows {
            for i in 0..per_window {
                let at = *start + (i * cs) as u64;
                let samples = &w[i * cs..(i + 1) * cs];
                if let Some(j) = chunks.find(at, samples) {
                    chunks.reused += 1;
                    refs.push(j);
                    continue;
                }
                let end = (i + 1) * cs;
                let gain = self
                    .level_rms
                    .map_or(1.0, |t| level_gain(&w[end.saturating_sub(rate)..end], t));
                let mut logmel = Vec::with_capacity(cf * self.card.frontend.mel_bins);
                self.logmel.frames_of(w, i * cf, cf, gain, &mut logmel);
                self.batch_buf.extend_from_slice(&logmel);
                chunks.kept.push_back(Kept {
                    start: at,
                    samples: samples.to_vec(),
                    logmel,
                    embedding: Vec::new(),
                });
                chunks.computed += 1;
                refs.push(chunks.kept.len() - 1);
            }
        }
        let fresh = chunks.kept.len() - fresh_from;
        if fresh > 0 {
            let mels = self.card.frontend.mel_bins;
            let outs = match self.run_logmel_batch(fresh, cf, mels) {
                Ok(o) => o,
                Err(e) => {
                    chunks.kept.truncate(fresh_from);
                    return Err(e);
                }
            };
            for (k, o) in chunks.kept.iter_mut().skip(fresh_from).zip(outs) {
                k.embedding = o.embedding;
            }
        }
        // Each window: the element-wise max of its chunks; its log-mel is theirs in order
        // (what the `mel` scorer and `batch_logmel` see).
        self.batch_buf.clear();
        let mut out = Vec::with_capacity(windows.len());
        for r in refs.chunks(per_window) {
            let mut emb = chunks.kept[r[0]].embedding.clone();
            for &j in &r[1..] {
                for (e, v) in emb.iter_mut().zip(&chunks.kept[j].embedding) {
                    *e = e.max(*v);
                }
            }
            for &j in r {
                self.batch_buf.extend_from_slice(&chunks.kept[j].logmel);
            }
            out.push(Output {
                embedding: emb,
                clipwise: None,
            });
        }
        self.last_batch = (windows.len(), per_window * cf);
        // The next window of the stream shares at most `per_window - 1` chunks with the last.
        while chunks.kept.len() > per_window {
            chunks.kept.pop_front();
        }
        Ok(out)
    }

    /// [`Embedder::embed_batch`] in chunk-max mode: each window is a stream of its own (from
    /// sample 0), cut into as many whole chunks as it holds.
    pub(super) fn embed_chunks_alone(
        &mut self,
        windows: &[&[f32]],
    ) -> Result<Vec<Output>, EmbedError> {
        let Some(chunk) = self.chunks.as_ref().map(Chunks::chunk) else {
            return Err(EmbedError::Inference(
                "chunk-max mode without a chunk".into(),
            ));
        };
        let mut out = Vec::with_capacity(windows.len());
        let mut logmels = Vec::new();
        let mut frames = 0;
        for w in windows {
            if w.len() < chunk.samples {
                return Err(EmbedError::TooShort {
                    model: self.card.name.clone(),
                    samples: w.len(),
                    min: chunk.samples,
                    seconds: chunk.samples as f64 / f64::from(self.card.sample_rate),
                });
            }
            let whole = w.len() / chunk.samples * chunk.samples;
            let mut fresh = Chunks::new(chunk);
            let mut o = self.embed_chunks_with(&mut fresh, &[(0, &w[..whole])])?;
            out.append(&mut o);
            frames = self.last_batch.1;
            logmels.extend_from_slice(&self.batch_buf);
        }
        // Windows of different lengths have no common log-mel shape: keep only a uniform one.
        if logmels.len() == windows.len() * frames * self.card.frontend.mel_bins {
            self.batch_buf = logmels;
            self.last_batch = (windows.len(), frames);
        } else {
            self.last_batch = (0, 0);
        }
        Ok(out)
    }
}
