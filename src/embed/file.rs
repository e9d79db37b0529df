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
    /// The log-mel the network saw (`frames x mel_bins`), when the embedder keeps it
    /// ([`Embedder::set_keep_logmel`]); else empty.
    pub logmel: Vec<f32>,
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

/// Window `i` of the last network call's log-mel when the embedder keeps it, else empty.
fn kept_logmel(embedder: &Embedder, i: usize) -> Vec<f32> {
    match embedder.keeps_logmel() {
        true => embedder
            .batch_logmel(i)
            .map(<[f32]>::to_vec)
            .unwrap_or_default(),
        false => Vec::new(),
    }
}

/// Windows per network call: amortises per-call overhead without making latency matter.
const BATCH: usize = 8;

/// Embeds `path` in windows of `window_s` every `hop_s` seconds.
///
/// The file is streamed ([`FileWindows`]): decoded, resampled and cut block by block, and
/// windows are embedded a batch at a time, so memory is bounded by a batch of windows plus the
/// embeddings returned (2 KB per window), whatever the recording's length. [`embed_clip`] is
/// the same path for audio already in memory and gives the same windows.
pub fn embed_file(
    embedder: &mut Embedder,
    path: &Path,
    window_s: f64,
    hop_s: f64,
) -> Result<(Vec<WindowEmbedding>, FileReport), FileError> {
    let name = path.display().to_string();
    let rate = embedder.sample_rate();
    let mut windows = FileWindows::open(path, rate, window_s, hop_s)?;
    let embed_err = |source| FileError::Embed {
        path: name.clone(),
        source,
    };
    let mut result = Vec::new();
    let mut batch: Vec<(u64, Vec<f32>)> = Vec::with_capacity(BATCH);
    let flush = |batch: &mut Vec<(u64, Vec<f32>)>,
                 result: &mut Vec<WindowEmbedding>,
                 embedder: &mut Embedder|
     -> Result<(), FileError> {
        if batch.is_empty() {
            return Ok(());
        }
        let views: Vec<(u64, &[f32])> = batch.iter().map(|(s, w)| (*s, w.as_slice())).collect();
        let outs = embedder.embed_batch_at(&views).map_err(embed_err)?;
        for (b, ((s, w), mut o)) in batch.iter().zip(outs).enumerate() {
            crate::score::normalize(&mut o.embedding);
            result.push(WindowEmbedding {
                start_s: *s as f64 / f64::from(rate),
                end_s: (*s as usize + w.len()) as f64 / f64::from(rate),
                embedding: o.embedding,
                level_dbfs: dsp::level::quietest_quarter_dbfs(w),
                impulse_db: dsp::impulse::impulse_db(w, rate),
                logmel: kept_logmel(embedder, b),
            });
        }
        batch.clear();
        Ok(())
    };
    while let Some((start, w)) = windows.next_window()? {
        batch.push((start, w));
        if batch.len() == BATCH {
            flush(&mut batch, &mut result, embedder)?;
        }
    }
    flush(&mut batch, &mut result, embedder)?;
    let mut report = windows.report();
    if result.is_empty() {
        // A recording shorter than a window is embedded whole (the networks pool globally),
        // as long as the model can take it.
        let x = windows.into_short_tail();
        if x.len() < embedder.min_samples() {
            return Err(FileError::TooShort {
                path: name,
                seconds: report.seconds,
                min: embedder.min_samples() as f64 / f64::from(rate),
            });
        }
        let mut out = embedder.embed(&x).map_err(embed_err)?;
        crate::score::normalize(&mut out.embedding);
        report.shorter_than_window = true;
        result.push(WindowEmbedding {
            start_s: 0.0,
            end_s: x.len() as f64 / f64::from(rate),
            embedding: out.embedding,
            level_dbfs: dsp::level::quietest_quarter_dbfs(&x),
            impulse_db: dsp::impulse::impulse_db(&x, rate),
            logmel: kept_logmel(embedder, 0),
        });
    }
    Ok((result, report))
}

/// The windows of a WAV file at the model's rate, read and cut block by block (one second of
/// the file at a time): decode -> mono -> resample -> windows, the same dsp the daemon streams
/// through. `score` consumes it through [`embed_file`]; it never holds the whole recording.
pub struct FileWindows {
    stream: audio::WavStream,
    name: String,
    resampler: StreamResampler,
    windower: Windower,
    /// Windows cut but not yet handed out, with their start sample.
    ready: std::collections::VecDeque<(u64, Vec<f32>)>,
    /// The first `window` resampled samples (a recording shorter than a window is embedded
    /// whole); dropped once a window exists.
    head: Option<Vec<f32>>,
    block: Vec<f32>,
    mono: Vec<f32>,
    resampled: Vec<f32>,
    clipped: u64,
    mono_samples: u64,
    done: bool,
}

impl FileWindows {
    /// Opens `path` for windows of `window_s` every `hop_s` seconds at `rate` Hz.
    pub fn open(path: &Path, rate: u32, window_s: f64, hop_s: f64) -> Result<Self, FileError> {
        let name = path.display().to_string();
        let stream = audio::WavStream::open(path)?;
        let resampler = StreamResampler::new(stream.sample_rate(), rate).map_err(|source| {
            FileError::Resample {
                path: name.clone(),
                source,
            }
        })?;
        let win = (window_s * f64::from(rate)).round() as usize;
        let hop = ((hop_s * f64::from(rate)).round() as usize).max(1);
        Ok(Self {
            stream,
            name,
            resampler,
            windower: Windower::new(win, hop),
            ready: Default::default(),
            head: Some(Vec::new()),
            block: Vec::new(),
            mono: Vec::new(),
            resampled: Vec::new(),
            clipped: 0,
            mono_samples: 0,
            done: false,
        })
    }

    /// The next window (start sample at the model's rate, samples), or `None` at the end.
    pub fn next_window(&mut self) -> Result<Option<(u64, Vec<f32>)>, FileError> {
        while self.ready.is_empty() && !self.done {
            self.pull()?;
        }
        Ok(self.ready.pop_front())
    }

    fn pull(&mut self) -> Result<(), FileError> {
        let resample_err = |name: &str, source| FileError::Resample {
            path: name.to_owned(),
            source,
        };
        let frames = self.stream.sample_rate() as usize;
        self.resampled.clear();
        if self.stream.read_block(frames, &mut self.block) {
            self.mono.clear();
            dsp::to_mono(
                &self.block,
                self.stream.channels(),
                ChannelMap::Downmix,
                &mut self.mono,
            );
            self.clipped += self.mono.iter().filter(|v| v.abs() >= 0.999).count() as u64;
            self.mono_samples += self.mono.len() as u64;
            self.resampler
                .push(&self.mono, &mut self.resampled)
                .map_err(|e| resample_err(&self.name, e))?;
        } else {
            self.stream.finish()?;
            self.resampler
                .flush(&mut self.resampled)
                .map_err(|e| resample_err(&self.name, e))?;
            self.done = true;
        }
        let win = self.windower.length();
        if let Some(h) = self.head.as_mut() {
            let room = win.saturating_sub(h.len()).min(self.resampled.len());
            h.extend_from_slice(&self.resampled[..room]);
        }
        let ready = &mut self.ready;
        self.windower.push(&self.resampled, |start, w| {
            ready.push_back((start, w.to_vec()))
        });
        if !self.ready.is_empty() {
            self.head = None;
        }
        Ok(())
    }

    /// What was read (complete once [`FileWindows::next_window`] returned `None`).
    pub fn report(&self) -> FileReport {
        FileReport {
            seconds: self.stream.frames_read() as f64 / f64::from(self.stream.sample_rate()),
            sample_rate: self.stream.sample_rate(),
            channels: self.stream.channels(),
            non_finite: self.stream.non_finite(),
            clipped_fraction: self.clipped as f64 / self.mono_samples.max(1) as f64,
            shorter_than_window: false,
        }
    }

    /// The whole (resampled) recording when it was shorter than one window.
    pub fn into_short_tail(self) -> Vec<f32> {
        self.head.unwrap_or_default()
    }
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
                logmel: kept_logmel(embedder, 0),
            }],
            report,
        ));
    }
    let mut starts = Vec::new();
    let mut windower = Windower::new(win, hop);
    windower.push(&x, |start, _| starts.push(start as usize));
    let mut result = Vec::with_capacity(starts.len());
    for batch in starts.chunks(BATCH) {
        let views: Vec<(u64, &[f32])> = batch.iter().map(|&s| (s as u64, &x[s..s + win])).collect();
        let outs = embedder.embed_batch_at(&views).map_err(embed_err)?;
        for (b, (&s, mut o)) in batch.iter().zip(outs).enumerate() {
            crate::score::normalize(&mut o.embedding);
            result.push(WindowEmbedding {
                start_s: s as f64 / f64::from(rate),
                end_s: (s + win) as f64 / f64::from(rate),
                embedding: o.embedding,
                level_dbfs: dsp::level::quietest_quarter_dbfs(&x[s..s + win]),
                impulse_db: dsp::impulse::impulse_db(&x[s..s + win], rate),
                logmel: kept_logmel(embedder, b),
            });
        }
    }
    Ok((result, report))
}
