//! Embedding a whole recording: decode -> mono -> resample -> windows -> embed, the offline
//! path through the same dsp code the daemon streams through.

use super::{EmbedError, Embedder};
use crate::audio::{self, AudioError, Clip};
use crate::dsp::{self, ChannelMap, StreamResampler, Windower};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error("{path}: {source}")]
    Resample {
        path: String,
        source: dsp::resample::ResampleError,
    },
    #[error(
        "{path}: the recording is {seconds:.3} s long, shorter than the {min:.2} s the model needs; use longer recordings"
    )]
    TooShort {
        path: String,
        seconds: f64,
        min: f64,
    },
    #[error("{path}: {source}")]
    Embed { path: String, source: EmbedError },
}

/// One window's embedding and where it sits in the recording.
#[derive(Debug, Clone)]
pub struct WindowEmbedding {
    pub start_s: f64,
    pub end_s: f64,
    /// L2-normalised.
    pub embedding: Vec<f32>,
    /// [`crate::dsp::level::quietest_quarter_dbfs`] of the window's samples (before any level
    /// normalisation): what `learn` sets the "no signal" floor from.
    pub level_dbfs: f64,
    /// [`crate::dsp::impulse::impulse_db`] of the window's samples (resampled, before level
    /// normalisation): what `learn` calibrates the impulse level from.
    pub impulse_db: f64,
}

#[derive(Debug, Clone, Default)]
pub struct FileReport {
    pub seconds: f64,
    pub sample_rate: u32,
    pub channels: u16,
    /// Non-finite samples replaced by silence.
    pub non_finite: usize,
    /// Fraction of samples at or beyond full scale (clipping).
    pub clipped_fraction: f64,
    /// True when the recording was shorter than a window and embedded whole.
    pub shorter_than_window: bool,
}

/// Windows per network call: amortises per-call overhead without making latency matter.
const BATCH: usize = 8;

/// Embeds `path` in windows of `window_s` every `hop_s` seconds.
pub fn embed_file(
    embedder: &mut Embedder,
    path: &Path,
    window_s: f64,
    hop_s: f64,
) -> Result<(Vec<WindowEmbedding>, FileReport), FileError> {
    let clip = audio::read_wav(path)?;
    embed_clip(
        embedder,
        &clip,
        &path.display().to_string(),
        window_s,
        hop_s,
    )
}

pub fn embed_clip(
    embedder: &mut Embedder,
    clip: &Clip,
    name: &str,
    window_s: f64,
    hop_s: f64,
) -> Result<(Vec<WindowEmbedding>, FileReport), FileError> {
    let mut mono = Vec::with_capacity(clip.frames());
    dsp::to_mono(&clip.samples, clip.channels, ChannelMap::Downmix, &mut mono);
    let clipped = mono.iter().filter(|v| v.abs() >= 0.999).count();
    let report = FileReport {
        seconds: clip.seconds(),
        sample_rate: clip.sample_rate,
        channels: clip.channels,
        non_finite: clip.non_finite,
        clipped_fraction: clipped as f64 / mono.len().max(1) as f64,
        shorter_than_window: false,
    };
    let rate = embedder.sample_rate();
    let resample_err = |source| FileError::Resample {
        path: name.to_owned(),
        source,
    };
    let mut rs = StreamResampler::new(clip.sample_rate, rate).map_err(resample_err)?;
    let mut x = Vec::new();
    rs.push(&mono, &mut x).map_err(resample_err)?;
    rs.flush(&mut x).map_err(resample_err)?;

    let win = (window_s * f64::from(rate)).round() as usize;
    let hop = ((hop_s * f64::from(rate)).round() as usize).max(1);
    let embed_err = |source| FileError::Embed {
        path: name.to_owned(),
        source,
    };
    if x.len() < win {
        // A recording shorter than a window is embedded whole (the networks pool globally),
        // as long as the model can take it.
        if x.len() < embedder.min_samples() {
            return Err(FileError::TooShort {
                path: name.to_owned(),
                seconds: clip.seconds(),
                min: embedder.min_samples() as f64 / f64::from(rate),
            });
        }
        let mut out = embedder.embed(&x).map_err(embed_err)?;
        crate::score::normalize(&mut out.embedding);
        let report = FileReport {
            shorter_than_window: true,
            ..report
        };
        return Ok((
            vec![WindowEmbedding {
                start_s: 0.0,
                end_s: x.len() as f64 / f64::from(rate),
                embedding: out.embedding,
                level_dbfs: dsp::level::quietest_quarter_dbfs(&x),
                impulse_db: dsp::impulse::impulse_db(&x, rate),
            }],
            report,
        ));
    }
    let mut starts = Vec::new();
    let mut windower = Windower::new(win, hop);
    windower.push(&x, |start, _| starts.push(start as usize));
    let mut result = Vec::with_capacity(starts.len());
    for batch in starts.chunks(BATCH) {
        let views: Vec<&[f32]> = batch.iter().map(|&s| &x[s..s + win]).collect();
        let outs = embedder.embed_batch(&views).map_err(embed_err)?;
        for (&s, mut o) in batch.iter().zip(outs) {
            crate::score::normalize(&mut o.embedding);
            result.push(WindowEmbedding {
                start_s: s as f64 / f64::from(rate),
                end_s: (s + win) as f64 / f64::from(rate),
                embedding: o.embedding,
                level_dbfs: dsp::level::quietest_quarter_dbfs(&x[s..s + win]),
                impulse_db: dsp::impulse::impulse_db(&x[s..s + win], rate),
            });
        }
    }
    Ok((result, report))
}
