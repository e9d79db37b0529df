//! Streaming sample-rate conversion to the model's rate with `rubato`.
//!
//! An FFT resampler (rubato's `FftFixedInOut`) is exact for the fixed ratios met in practice
//! (44.1/48 kHz -> 32/16 kHz) and cheap. Its latency is compensated here, so sample `n` of the
//! output lines up with time `n / rate_out` of the input: window timestamps stay true.

use rubato::{FftFixedInOut, Resampler};

#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error("cannot resample from {from} Hz to {to} Hz: {detail}")]
    Construct { from: u32, to: u32, detail: String },
    #[error("resampling failed: {0}")]
    Process(String),
}

/// Mono streaming resampler; a pass-through when the rates are equal.
pub struct StreamResampler {
    from: u32,
    to: u32,
    inner: Option<Inner>,
}

struct Inner {
    rs: FftFixedInOut<f32>,
    pending: Vec<f32>,
    out: Vec<Vec<f32>>,
    /// Output samples still to discard to compensate the resampler's delay.
    skip: usize,
    consumed_in: u64,
    emitted_out: u64,
}

impl StreamResampler {
    pub fn new(from: u32, to: u32) -> Result<Self, ResampleError> {
        if from == 0 || to == 0 {
            return Err(ResampleError::Construct {
                from,
                to,
                detail: "a sample rate of 0 Hz".into(),
            });
        }
        if from == to {
            return Ok(Self {
                from,
                to,
                inner: None,
            });
        }
        // ~50 ms input chunks: small enough for live latency, large enough to be efficient.
        // The FFT size must be even: rubato's filter is centred on size/2 and its reported
        // delay is an integer, so an odd size would shift the output by half an input sample.
        let (f, t) = (from as usize, to as usize);
        let min_in = f / gcd(f, t);
        let mut blocks = (f / 20).max(256).div_ceil(min_in);
        if (blocks * min_in) % 2 == 1 {
            blocks += 1;
        }
        let chunk = blocks * min_in;
        let rs = FftFixedInOut::<f32>::new(from as usize, to as usize, chunk, 1).map_err(|e| {
            ResampleError::Construct {
                from,
                to,
                detail: e.to_string(),
            }
        })?;
        let out = rs.output_buffer_allocate(true);
        let skip = rs.output_delay();
        Ok(Self {
            from,
            to,
            inner: Some(Inner {
                pending: Vec::with_capacity(rs.input_frames_max() * 2),
                rs,
                out,
                skip,
                consumed_in: 0,
                emitted_out: 0,
            }),
        })
    }

    pub fn rates(&self) -> (u32, u32) {
        (self.from, self.to)
    }

    /// Resamples `input`, appending what is ready to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), ResampleError> {
        let Some(inner) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return Ok(());
        };
        inner.pending.extend_from_slice(input);
        inner.consumed_in += input.len() as u64;
        inner.run(out)
    }

    /// Ends the stream: pushes out the tail so the output holds exactly
    /// `round(input_len * to / from)` samples in total.
    pub fn flush(&mut self, out: &mut Vec<f32>) -> Result<(), ResampleError> {
        let (from, to) = (self.from, self.to);
        let Some(inner) = self.inner.as_mut() else {
            return Ok(());
        };
        let target = (inner.consumed_in as u128 * to as u128 + from as u128 / 2) / from as u128;
        let target = target as u64;
        let mut guard = 0;
        while inner.emitted_out < target && guard < 64 {
            let need = inner.rs.input_frames_next();
            let pad = need - inner.pending.len() % need;
            inner.pending.extend(std::iter::repeat_n(0.0, pad));
            let before = out.len();
            inner.run(out)?;
            let extra = inner.emitted_out.saturating_sub(target) as usize;
            if extra > 0 {
                out.truncate(out.len() - extra.min(out.len() - before));
                inner.emitted_out = target;
            }
            guard += 1;
        }
        inner.pending.clear();
        Ok(())
    }
}

impl Inner {
    fn run(&mut self, out: &mut Vec<f32>) -> Result<(), ResampleError> {
        let mut offset = 0;
        loop {
            let need = self.rs.input_frames_next();
            if self.pending.len() - offset < need {
                break;
            }
            let (_, n_out) = self
                .rs
                .process_into_buffer(&[&self.pending[offset..offset + need]], &mut self.out, None)
                .map_err(|e| ResampleError::Process(e.to_string()))?;
            offset += need;
            let produced = &self.out[0][..n_out];
            let skip = self.skip.min(produced.len());
            self.skip -= skip;
            out.extend_from_slice(&produced[skip..]);
            self.emitted_out += (produced.len() - skip) as u64;
        }
        self.pending.drain(..offset);
        Ok(())
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Resamples a whole mono signal (the offline path).
pub fn resample_all(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, ResampleError> {
    let mut rs = StreamResampler::new(from, to)?;
    let mut out = Vec::with_capacity(input.len() * to as usize / from.max(1) as usize + 16);
    rs.push(input, &mut out)?;
    rs.flush(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin() as f32)
            .collect()
    }

    #[test]
    fn length_and_alignment_are_exact() {
        for (from, to) in [
            (48000u32, 32000u32),
            (44100, 32000),
            (16000, 32000),
            (22050, 16000),
        ] {
            let n = from as usize * 2 + 123;
            let input = sine(440.0, from, n);
            let out = resample_all(&input, from, to).unwrap();
            let want = ((n as u64 * to as u64 + from as u64 / 2) / from as u64) as usize;
            assert_eq!(out.len(), want, "{from}->{to}");
            // The resampled sine must still be the same sine at the same phase (delay removed).
            let reference = sine(440.0, to, out.len());
            let mid = &out[out.len() / 4..out.len() * 3 / 4];
            let refm = &reference[out.len() / 4..out.len() * 3 / 4];
            let err = mid
                .iter()
                .zip(refm)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 1e-3, "{from}->{to}: max error {err}");
        }
    }

    #[test]
    fn streaming_in_odd_chunks_equals_one_shot() {
        let input = sine(1000.0, 48000, 48000);
        let whole = resample_all(&input, 48000, 32000).unwrap();
        let mut rs = StreamResampler::new(48000, 32000).unwrap();
        let mut out = Vec::new();
        for c in input.chunks(333) {
            rs.push(c, &mut out).unwrap();
        }
        rs.flush(&mut out).unwrap();
        assert_eq!(out.len(), whole.len());
        assert!(out.iter().zip(&whole).all(|(a, b)| (a - b).abs() < 1e-6));
    }
}
