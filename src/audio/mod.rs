//! Reading audio files. Everything downstream sees `f32` samples in [-1, 1]; this is the one
//! place that knows about WAV encodings, so every bad file is reported here, with its name.

use std::path::{Path, PathBuf};

mod pcm;

/// Decoded audio: interleaved `f32` frames at the file's own rate and channel count.
#[derive(Debug, Clone)]
pub struct Clip {
    pub samples: Vec<f32>,
    pub channels: u16,
    pub sample_rate: u32,
    /// Samples that were NaN or infinite in a float file and were replaced by 0.
    pub non_finite: usize,
}

impl Clip {
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }
    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / f64::from(self.sample_rate)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: not a readable WAV file ({detail}); earshot reads RIFF/WAVE PCM or float files, convert others e.g. with `sox in.ext -b 16 out.wav`"
    )]
    NotWav { path: PathBuf, detail: String },
    #[error(
        "{path}: unsupported WAV encoding ({detail}); convert it to 16-bit PCM, e.g. `sox {path} -b 16 out.wav`"
    )]
    Unsupported { path: PathBuf, detail: String },
    #[error(
        "{path}: truncated: the header promises {expected} frames but only {got} could be read; re-copy or re-record the file (or repair it with `sox {path} fixed.wav`)"
    )]
    Truncated {
        path: PathBuf,
        expected: u64,
        got: u64,
    },
    #[error(
        "{path}: contains no audio (0 frames): the recording was cut off or never written; record or export it again"
    )]
    Empty { path: PathBuf },
    #[error(
        "{path}: the header says {value} {what}, outside the {min}..={max} earshot accepts: the header is damaged or the file is not a recording; re-export it (e.g. `sox {path} -r 48000 fixed.wav`)"
    )]
    OutOfBounds {
        path: PathBuf,
        what: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error(transparent)]
    NotRegular(crate::files::PathError),
}

/// Sample rates earshot accepts. Below 1 kHz nothing a machine-sound model hears is left, and
/// above 768 kHz (the fastest converters sold) the header is damaged: either way the
/// resampler would allocate for an absurd ratio.
pub const MIN_SAMPLE_RATE: u32 = 1_000;
pub const MAX_SAMPLE_RATE: u32 = 768_000;
/// Channels earshot accepts in one file (multitrack recorders stay well below).
pub const MAX_CHANNELS: u16 = 256;

/// Reads a whole WAV file. Integer PCM (8/16/24/32 bit) and 32-bit float are supported, any
/// rate, any channel count. NaN and infinite samples become 0 and are counted, so one bad
/// sample cannot poison a window's embedding; the caller decides whether to warn.
pub fn read_wav(path: &Path) -> Result<Clip, AudioError> {
    let file = open_file(path)?;
    // What is really there bounds every allocation, whatever the header claims.
    let file_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    decode_wav(std::io::BufReader::new(file), file_bytes, path)
}

/// Decodes a WAV from any reader (what [`read_wav`] does after opening the file); `available`
/// is how many bytes the source really holds and bounds every allocation, and `path` only
/// names the source in errors. Public so the fuzz targets can feed bytes without a file.
pub fn decode_wav<R: std::io::Read>(
    input: R,
    available: u64,
    path: &Path,
) -> Result<Clip, AudioError> {
    let (mut data, head) = open_data(input, path)?;
    // `available`, not the header, bounds the allocation.
    let bytes_per_sample = u64::from(head.spec.bits_per_sample.div_ceil(8).max(1));
    let capacity = head.samples.min(available / bytes_per_sample);
    let mut samples = Vec::with_capacity(capacity as usize);
    let mut non_finite = 0;
    // A read error part-way means the data chunk is shorter than the header says: the
    // samples stop there and the count reports the truncation.
    data.read(usize::MAX, &mut samples, &mut non_finite);
    let ch = usize::from(head.spec.channels);
    samples.truncate(samples.len() - samples.len() % ch);
    check_count(path, head.frames, (samples.len() / ch) as u64)?;
    Ok(Clip {
        samples,
        channels: head.spec.channels,
        sample_rate: head.spec.sample_rate,
        non_finite,
    })
}

/// A WAV file read block by block: what `score` and `learn` use, so a recording of hours costs
/// a block of memory, not the whole file (a one-hour 48 kHz stereo file is 1.4 GB as `f32`).
/// The same checks as [`read_wav`] apply: bounded header values, truncation (reported by
/// [`WavStream::finish`] once the data is used up) and empty files.
pub struct WavStream {
    samples: pcm::Samples<std::io::BufReader<std::fs::File>>,
    path: PathBuf,
    spec: hound::WavSpec,
    expected: u64,
    /// Interleaved samples read so far.
    read: u64,
    non_finite: usize,
    ended: bool,
}

impl WavStream {
    /// Opens and checks the header; reads no audio yet.
    pub fn open(path: &Path) -> Result<Self, AudioError> {
        let file = open_file(path)?;
        let (samples, head) = open_data(std::io::BufReader::new(file), path)?;
        Ok(Self {
            samples,
            expected: head.frames,
            path: path.to_owned(),
            spec: head.spec,
            read: 0,
            non_finite: 0,
            ended: false,
        })
    }

    pub fn channels(&self) -> u16 {
        self.spec.channels
    }

    pub fn sample_rate(&self) -> u32 {
        self.spec.sample_rate
    }

    /// Frames the header promises.
    pub fn frames_expected(&self) -> u64 {
        self.expected
    }

    /// Samples that were NaN or infinite so far (replaced by 0).
    pub fn non_finite(&self) -> usize {
        self.non_finite
    }

    /// Reads up to `frames` whole frames into `out` (cleared first, interleaved); false when
    /// the data is used up (or cut short: see [`WavStream::finish`]).
    pub fn read_block(&mut self, frames: usize, out: &mut Vec<f32>) -> bool {
        out.clear();
        if self.ended {
            return false;
        }
        let ch = usize::from(self.spec.channels);
        let want = frames.max(1) * ch;
        self.samples.read(want, out, &mut self.non_finite);
        if out.len() < want {
            // End of data (or a read error part-way: the data chunk is shorter than claimed).
            self.ended = true;
            out.truncate(out.len() - out.len() % ch);
        }
        self.read += out.len() as u64;
        !out.is_empty()
    }

    /// Frames delivered so far.
    pub fn frames_read(&self) -> u64 {
        self.read / u64::from(self.spec.channels.max(1))
    }

    /// After the last block: a file shorter than its header, or empty, is an error.
    pub fn finish(&self) -> Result<(), AudioError> {
        check_count(&self.path, self.expected, self.frames_read())
    }
}

/// Opens a file earshot may read audio from (a regular file: not a FIFO or a device).
fn open_file(path: &Path) -> Result<std::fs::File, AudioError> {
    crate::files::open_regular(path).map_err(|e| match e {
        crate::files::PathError::Io { path, source } => AudioError::Open { path, source },
        e @ crate::files::PathError::NotRegular { .. } => AudioError::NotRegular(e),
    })
}

/// What a checked header says.
struct Header {
    spec: hound::WavSpec,
    /// Frames the header promises.
    frames: u64,
    /// Samples (all channels) the data chunk holds by its length.
    samples: u64,
}

/// Reads and checks the header (hound parses it; earshot bounds it), and returns the data
/// chunk's samples ready to read.
fn open_data<R: std::io::Read>(
    input: R,
    path: &Path,
) -> Result<(pcm::Samples<R>, Header), AudioError> {
    let (input, last) = pcm::Tap::new(input);
    let reader = hound::WavReader::new(input).map_err(|e| header_error(path, e))?;
    let spec = reader.spec();
    check_spec(path, spec)?;
    check_format(path, spec)?;
    let head = Header {
        spec,
        frames: u64::from(reader.duration()),
        samples: u64::from(reader.len()),
    };
    let samples =
        pcm::Samples::new(reader, spec, &last).map_err(|detail| AudioError::Unsupported {
            path: path.to_owned(),
            detail,
        })?;
    Ok((samples, head))
}

/// Fewer frames than the header promises is a cut-off file; none at all is an empty one.
fn check_count(path: &Path, expected: u64, got: u64) -> Result<(), AudioError> {
    if got < expected {
        return Err(AudioError::Truncated {
            path: path.to_owned(),
            expected,
            got,
        });
    }
    if got == 0 {
        return Err(AudioError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(())
}

fn header_error(path: &Path, e: hound::Error) -> AudioError {
    match e {
        hound::Error::Unsupported => AudioError::Unsupported {
            path: path.to_owned(),
            detail: "format hound cannot decode".into(),
        },
        hound::Error::IoError(ref io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioError::NotWav {
                path: path.to_owned(),
                detail: "the header is cut short".into(),
            }
        }
        other => AudioError::NotWav {
            path: path.to_owned(),
            detail: other.to_string(),
        },
    }
}

/// Refuses headers no recording has (0 or absurd rates, 0 or thousands of channels).
fn check_spec(path: &Path, spec: hound::WavSpec) -> Result<(), AudioError> {
    let bounds = |what, value: u64, min: u64, max: u64| {
        if (min..=max).contains(&value) {
            Ok(())
        } else {
            Err(AudioError::OutOfBounds {
                path: path.to_owned(),
                what,
                value,
                min,
                max,
            })
        }
    };
    bounds(
        "Hz sample rate",
        spec.sample_rate.into(),
        MIN_SAMPLE_RATE.into(),
        MAX_SAMPLE_RATE.into(),
    )?;
    bounds("channels", spec.channels.into(), 1, MAX_CHANNELS.into())
}

/// Refuses sample formats earshot does not decode (hound parses a few more).
fn check_format(path: &Path, spec: hound::WavSpec) -> Result<(), AudioError> {
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) | (hound::SampleFormat::Int, 1..=32) => Ok(()),
        (fmt, bits) => Err(AudioError::Unsupported {
            path: path.to_owned(),
            detail: format!("{fmt:?} with {bits} bits per sample"),
        }),
    }
}

/// Writes mono `f32` samples as 16-bit PCM (used for anomaly clips and test fixtures).
pub fn write_wav_i16(path: &Path, samples: &[f32], sample_rate: u32) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for &s in samples {
        let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
        w.write_sample(v)?;
    }
    w.finalize()
}
