//! Turning a WAV file's data chunk into `f32` samples, after `hound` has read and checked the
//! header.
//!
//! `hound` decodes one sample per call through its reader, which cost 24 ns a sample: 14 % of
//! a running monitor's CPU on a 48 kHz replay with the bundled MobileNetV1 (perf, 120 s
//! replay), and as much as the network itself. The layouts recorders write (16- and 24-bit
//! integer, 32-bit float, each sample in a container of its own size) are converted here a
//! block of bytes at a time, to the very values `hound` gives; anything else (8-bit, 32-bit
//! integer, samples in wider containers) still goes through `hound`.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Passes reads through and remembers the last 8 bytes read, where the caller can see them
/// while `hound` owns the reader: after `hound` has parsed the header these are the data
/// chunk's own header (`"data"` and its length in bytes), which `hound` does not expose but
/// the raw path needs to know the container size.
pub(super) struct Tap<R> {
    inner: R,
    last: Arc<AtomicU64>,
}

/// The last 8 bytes a [`Tap`] read, little-endian in a `u64`.
pub(super) type Last = Arc<AtomicU64>;

impl<R: Read> Tap<R> {
    pub(super) fn new(inner: R) -> (Self, Last) {
        let last = Arc::new(AtomicU64::new(0));
        (
            Self {
                inner,
                last: Arc::clone(&last),
            },
            last,
        )
    }
}

/// The data chunk's length as its header says, if the last bytes read were that header.
fn data_len(last: &Last) -> Option<u64> {
    let b = last.load(Ordering::Relaxed).to_le_bytes();
    (&b[..4] == b"data").then(|| u64::from(u32::from_le_bytes([b[4], b[5], b[6], b[7]])))
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            let mut b = self.last.load(Ordering::Relaxed).to_le_bytes();
            if n >= 8 {
                b.copy_from_slice(&buf[n - 8..n]);
            } else {
                b.copy_within(n.., 0);
                b[8 - n..].copy_from_slice(&buf[..n]);
            }
            self.last.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// Samples converted per read on the raw path (256 KiB of 32-bit floats).
const BLOCK_SAMPLES: usize = 1 << 16;

/// How the data chunk's samples are laid out, when the raw path can read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Raw {
    I16,
    I24,
    F32,
}

impl Raw {
    fn bytes(self) -> usize {
        match self {
            Raw::I16 => 2,
            Raw::I24 => 3,
            Raw::F32 => 4,
        }
    }
}

/// The samples of one data chunk, read in blocks; where they come from is this type's
/// business only.
pub(super) enum Samples<R: Read> {
    Hound {
        reader: hound::WavReader<Tap<R>>,
        /// 1 for float; 2^-(bits-1) for integers.
        scale: f64,
    },
    Raw {
        reader: Tap<R>,
        layout: Raw,
        /// Bytes of the data chunk not read yet.
        left: u64,
        /// Bytes read but not yet a whole sample (a read can end mid-sample).
        carry: Vec<u8>,
        buf: Vec<u8>,
    },
}

impl<R: Read> Samples<R> {
    /// Takes a reader whose header `hound` has checked (`spec` is its format, already known
    /// to be supported: 32-bit float or 1..=32-bit integer); `last` is the [`Tap`]'s, with no
    /// sample read yet. Refuses, with what the file holds, samples in containers neither
    /// path decodes (which `hound` would only report part-way, as if the file were cut off).
    pub(super) fn new(
        reader: hound::WavReader<Tap<R>>,
        spec: hound::WavSpec,
        last: &Last,
    ) -> Result<Self, String> {
        let samples = u64::from(reader.len());
        let layout = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Int, 16) => Some(Raw::I16),
            (hound::SampleFormat::Int, 24) => Some(Raw::I24),
            (hound::SampleFormat::Float, 32) => Some(Raw::F32),
            _ => None,
        };
        // `hound` sets samples = data length / container size exactly, so the data length
        // equals samples x the sample's own size only when the container is that size.
        let raw = layout.and_then(|l| {
            let len = data_len(last)?;
            (len == samples * l.bytes() as u64).then_some((l, len))
        });
        match raw {
            Some((layout, left)) => Ok(Samples::Raw {
                reader: reader.into_inner(),
                layout,
                left,
                carry: Vec::new(),
                buf: Vec::new(),
            }),
            None => {
                let bits = spec.bits_per_sample;
                let container = data_len(last)
                    .filter(|_| samples > 0)
                    .map(|len| len / samples);
                if let Some(bytes) = container
                    && !hound_decodes(spec.sample_format, bytes, bits)
                {
                    return Err(format!(
                        "{bits}-bit samples stored in {bytes}-byte containers"
                    ));
                }
                let scale = match spec.sample_format {
                    hound::SampleFormat::Float => 1.0,
                    hound::SampleFormat::Int => {
                        1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f64
                    }
                };
                Ok(Samples::Hound { reader, scale })
            }
        }
    }

    /// Appends up to `want` samples to `out` (NaN and infinite floats become 0 and are
    /// counted in `non_finite`). Fewer than `want` means the data is used up, or cut short by
    /// the end of the file or a read error; the caller compares counts with the header.
    pub(super) fn read(&mut self, want: usize, out: &mut Vec<f32>, non_finite: &mut usize) {
        match self {
            Samples::Hound { reader, scale } => {
                if reader.spec().sample_format == hound::SampleFormat::Float {
                    for s in reader.samples::<f32>().take(want) {
                        let Ok(v) = s else { break };
                        push_float(v, out, non_finite);
                    }
                } else {
                    let scale = *scale;
                    for s in reader.samples::<i32>().take(want) {
                        let Ok(v) = s else { break };
                        out.push((f64::from(v) * scale) as f32);
                    }
                }
            }
            Samples::Raw {
                reader,
                layout,
                left,
                carry,
                buf,
            } => {
                let size = layout.bytes();
                let mut got = 0;
                while got < want && *left > 0 {
                    let block = ((want - got).min(BLOCK_SAMPLES) * size) as u64;
                    let n = block.min(*left) as usize;
                    buf.clear();
                    buf.extend_from_slice(carry);
                    let from = buf.len();
                    buf.resize(from + n, 0);
                    let read = match reader.read(&mut buf[from..]) {
                        Ok(0) | Err(_) => {
                            *left = 0;
                            break;
                        }
                        Ok(r) => r,
                    };
                    *left -= read as u64;
                    buf.truncate(from + read);
                    let whole = buf.len() / size * size;
                    convert(*layout, &buf[..whole], out, non_finite);
                    got += whole / size;
                    carry.clear();
                    carry.extend_from_slice(&buf[whole..]);
                }
            }
        }
    }
}

/// The (container bytes, bits) pairs `hound` 3.5 reads samples of.
fn hound_decodes(format: hound::SampleFormat, bytes: u64, bits: u16) -> bool {
    match format {
        hound::SampleFormat::Float => (bytes, bits) == (4, 32),
        hound::SampleFormat::Int => {
            matches!(
                (bytes, bits),
                (1, 8) | (2, 16) | (3, 24) | (4, 24) | (4, 32)
            )
        }
    }
}

fn push_float(v: f32, out: &mut Vec<f32>, non_finite: &mut usize) {
    if v.is_finite() {
        out.push(v);
    } else {
        *non_finite += 1;
        out.push(0.0);
    }
}

/// Little-endian samples to `f32`, the values `hound` gives times its integer scale: both
/// scales are powers of two and the integers fit the mantissa, so the results are exact.
fn convert(layout: Raw, bytes: &[u8], out: &mut Vec<f32>, non_finite: &mut usize) {
    match layout {
        Raw::I16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) * (1.0 / 32_768.0)),
        ),
        Raw::I24 => out.extend(bytes.chunks_exact(3).map(|b| {
            // The three bytes in the top of an i32, shifted down with their sign.
            (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 * (1.0 / 8_388_608.0)
        })),
        Raw::F32 => {
            for b in bytes.chunks_exact(4) {
                push_float(
                    f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                    out,
                    non_finite,
                );
            }
        }
    }
}
