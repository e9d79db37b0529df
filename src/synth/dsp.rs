//! Small signal-processing blocks for the generator: biquads (RBJ cookbook forms), coloured
//! noise, and decaying resonances written at fractional sample positions (so impulse trains
//! keep their exact period instead of snapping to the sample grid).

use super::dmath::{cos_cycles, exp, sin_cycles, white};
use rand::Rng;

/// Direct-form-I biquad in f64.
#[derive(Clone, Debug)]
pub struct Biquad {
    b0: f64,
    b1: f64,
    b2: f64,
    a1: f64,
    a2: f64,
    x1: f64,
    x2: f64,
    y1: f64,
    y2: f64,
}

impl Biquad {
    fn from_raw(b: [f64; 3], a: [f64; 3]) -> Biquad {
        Biquad {
            b0: b[0] / a[0],
            b1: b[1] / a[0],
            b2: b[2] / a[0],
            a1: a[1] / a[0],
            a2: a[2] / a[0],
            x1: 0.0,
            x2: 0.0,
            y1: 0.0,
            y2: 0.0,
        }
    }

    fn trig(f: f64, sr: f64, q: f64) -> (f64, f64, f64) {
        // Keep the centre strictly inside (0, Nyquist) so the filter stays stable.
        let w = (f / sr).clamp(1e-5, 0.49);
        let (s, c) = (sin_cycles(w), cos_cycles(w));
        (s, c, s / (2.0 * q))
    }

    /// Band-pass with 0 dB peak gain.
    pub fn bandpass(f: f64, q: f64, sr: f64) -> Biquad {
        let (_, c, al) = Self::trig(f, sr, q);
        Self::from_raw([al, 0.0, -al], [1.0 + al, -2.0 * c, 1.0 - al])
    }

    pub fn lowpass(f: f64, q: f64, sr: f64) -> Biquad {
        let (_, c, al) = Self::trig(f, sr, q);
        let b = (1.0 - c) / 2.0;
        Self::from_raw([b, 1.0 - c, b], [1.0 + al, -2.0 * c, 1.0 - al])
    }

    pub fn highpass(f: f64, q: f64, sr: f64) -> Biquad {
        let (_, c, al) = Self::trig(f, sr, q);
        let b = (1.0 + c) / 2.0;
        Self::from_raw([b, -(1.0 + c), b], [1.0 + al, -2.0 * c, 1.0 - al])
    }

    #[inline]
    pub fn tick(&mut self, x: f64) -> f64 {
        let y = self.b0 * x + self.b1 * self.x1 + self.b2 * self.x2
            - self.a1 * self.y1
            - self.a2 * self.y2;
        self.x2 = self.x1;
        self.x1 = x;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }

    pub fn run(&mut self, buf: &mut [f64]) {
        for v in buf.iter_mut() {
            *v = self.tick(*v);
        }
    }
}

pub fn white_noise<R: Rng>(rng: &mut R, n: usize) -> Vec<f64> {
    (0..n).map(|_| white(rng)).collect()
}

/// Pink (1/f) noise: one-pole low-passed white noises at octave-spaced corners, each weighted
/// by 1/sqrt(corner) so the summed power falls 3 dB per octave. Room and plant noise is close
/// to pink.
pub fn pink_noise<R: Rng>(rng: &mut R, n: usize, sr: f64) -> Vec<f64> {
    let mut corners = Vec::new();
    let mut f = 8.0;
    while f < sr * 0.45 {
        corners.push(f);
        f *= 2.0;
    }
    let coefs: Vec<(f64, f64)> = corners
        .iter()
        .map(|&fc| (1.0 - exp(-std::f64::consts::TAU * fc / sr), 1.0 / fc.sqrt()))
        .collect();
    let mut state = vec![0.0; coefs.len()];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut acc = 0.0;
        for (s, &(a, g)) in state.iter_mut().zip(&coefs) {
            *s += a * (white(rng) - *s);
            acc += g * *s;
        }
        out.push(acc);
    }
    normalise_rms(&mut out);
    out
}

/// Brown (1/f²) noise: leaky integral of white noise, the rumble of large distant plant.
pub fn brown_noise<R: Rng>(rng: &mut R, n: usize, sr: f64) -> Vec<f64> {
    let leak = exp(-std::f64::consts::TAU * 15.0 / sr);
    let mut y = 0.0;
    let mut out: Vec<f64> = (0..n)
        .map(|_| {
            y = leak * y + white(rng);
            y
        })
        .collect();
    normalise_rms(&mut out);
    out
}

pub fn mean_square(x: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64
}

/// Scales to unit RMS (no-op on silence).
pub fn normalise_rms(x: &mut [f64]) {
    let ms = mean_square(x);
    if ms > 0.0 {
        let g = 1.0 / ms.sqrt();
        x.iter_mut().for_each(|v| *v *= g);
    }
}

/// Adds `amp * e^{-t/decay_s} * sin(2π f t + phase)` starting at fractional sample `t0`, until
/// it has decayed by 80 dB. Models a structural mode rung by an impulse.
pub fn add_ring(buf: &mut [f64], t0: f64, amp: f64, f: f64, decay_s: f64, sr: f64) {
    if !(t0.is_finite()) || t0 >= buf.len() as f64 || amp == 0.0 {
        return;
    }
    let start = t0.max(0.0).ceil();
    let first = start as usize;
    let dt = (start - t0) / sr;
    let len = ((decay_s * sr) * 9.3) as usize + 1;
    let end = (first + len).min(buf.len());
    // Complex phasor rotated by one sample per step: exact and cheap.
    let a = amp * exp(-dt / decay_s);
    let (mut re, mut im) = (cos_cycles(f * dt) * a, sin_cycles(f * dt) * a);
    let r = exp(-1.0 / (decay_s * sr));
    let (c, s) = (cos_cycles(f / sr) * r, sin_cycles(f / sr) * r);
    for v in &mut buf[first..end] {
        *v += im;
        let nre = re * c - im * s;
        im = re * s + im * c;
        re = nre;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::dmath::stream;

    #[test]
    fn bandpass_passes_centre_and_rejects_far() {
        let sr = 16000.0;
        let tone = |f: f64| -> f64 {
            let mut bq = Biquad::bandpass(1000.0, 4.0, sr);
            let mut x: Vec<f64> = (0..16000).map(|i| sin_cycles(f * i as f64 / sr)).collect();
            bq.run(&mut x);
            mean_square(&x[8000..]).sqrt()
        };
        assert!((tone(1000.0) - std::f64::consts::FRAC_1_SQRT_2).abs() < 0.01);
        assert!(tone(100.0) < 0.05);
    }

    #[test]
    fn ring_decays_and_oscillates_at_its_frequency() {
        let mut b = vec![0.0; 2000];
        add_ring(&mut b, 10.25, 1.0, 1000.0, 0.005, 16000.0);
        assert!(b[..11].iter().all(|&v| v == 0.0));
        assert!(b[1500..].iter().all(|&v| v.abs() < 1e-4));
        // zero crossings ~ every 8 samples (1 kHz at 16 kHz)
        let zc = b[11..200].windows(2).filter(|w| w[0] * w[1] < 0.0).count();
        assert!((22..=25).contains(&zc), "{zc}");
    }

    #[test]
    fn pink_has_more_low_than_high_energy() {
        let mut r = stream(3, 4);
        let p = pink_noise(&mut r, 32000, 16000.0);
        let mut lo = p.clone();
        Biquad::lowpass(200.0, 0.7, 16000.0).run(&mut lo);
        let mut hi = p;
        Biquad::highpass(4000.0, 0.7, 16000.0).run(&mut hi);
        // pink: equal energy per octave: 200 Hz-down (~4.6 octaves) vs 4-8 kHz (1 octave)
        assert!(mean_square(&lo) > 2.0 * mean_square(&hi));
    }
}
