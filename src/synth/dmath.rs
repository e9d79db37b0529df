//! Deterministic maths and random helpers.
//!
//! `f64::sin`, `exp`, `ln`, `powf` and friends are documented as platform- and
//! version-dependent in their last bits, so a generator built on them could not promise
//! bit-identical audio across machines. Everything here uses only `+ - * /`, `sqrt`, `round`
//! and `floor`, which IEEE 754 defines exactly, plus polynomial/series evaluations accurate to
//! far below 16-bit audio resolution.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::f64::consts::{LN_2, LOG2_E, TAU};

/// sin(2πx) with `x` in cycles (turns); absolute error below 1e-9.
pub fn sin_cycles(x: f64) -> f64 {
    let mut r = x - x.round(); // [-0.5, 0.5]
    if r > 0.25 {
        r = 0.5 - r;
    } else if r < -0.25 {
        r = -0.5 - r;
    }
    let t = TAU * r; // [-π/2, π/2]
    let t2 = t * t;
    t * (1.0
        + t2 * (-1.0 / 6.0
            + t2 * (1.0 / 120.0
                + t2 * (-1.0 / 5040.0
                    + t2 * (1.0 / 362_880.0
                        + t2 * (-1.0 / 39_916_800.0
                            + t2 * (1.0 / 6_227_020_800.0 + t2 * (-1.0 / 1_307_674_368_000.0))))))))
}

/// cos(2πx) with `x` in cycles.
pub fn cos_cycles(x: f64) -> f64 {
    sin_cycles(x + 0.25)
}

/// e^x, relative error ~1e-15; saturates outside ±700.
pub fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x < -700.0 {
        return 0.0;
    }
    if x > 700.0 {
        return f64::INFINITY;
    }
    let k = (x * LOG2_E).round();
    let r = x - k * LN_2; // |r| <= 0.35
    let mut term = 1.0;
    let mut sum = 1.0;
    for i in 1..=14 {
        term *= r / i as f64;
        sum += term;
    }
    // k is within [-1010, 1010]: a normal power of two.
    sum * f64::from_bits(((k as i64 + 1023) as u64) << 52)
}

/// Natural logarithm for positive finite `x` (returns -inf for 0 and NaN for negatives).
pub fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    // Scale subnormals into the normal range first.
    let (x, extra) = if x < f64::MIN_POSITIVE {
        (x * 18_446_744_073_709_551_616.0, -64i64) // 2^64, exact
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023 + extra;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000); // [1,2)
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0); // |s| <= 0.172
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    let mut k = 1.0;
    while k < 30.0 {
        sum += term / k;
        term *= s2;
        k += 2.0;
    }
    e as f64 * LN_2 + 2.0 * sum
}

/// Amplitude factor for a level in dB.
pub fn db_to_amp(db: f64) -> f64 {
    exp(db * (std::f64::consts::LN_10 / 20.0))
}

/// SplitMix64 finaliser: turns structured seeds (clip index, component tag) into well-mixed
/// independent ones.
pub fn mix(seed: u64, tag: u64) -> u64 {
    let mut z = seed ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An independent, portable random stream for one component of one clip. Components get
/// their own streams so that adding a fault never perturbs the normal part of a clip.
pub fn stream(seed: u64, tag: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(mix(seed, tag))
}

/// Uniform in [a, b).
pub fn uni<R: Rng>(rng: &mut R, a: f64, b: f64) -> f64 {
    a + (b - a) * rng.random::<f64>()
}

/// Log-uniform in [a, b): for scale parameters (frequencies, decay times) where ratios matter.
pub fn log_uni<R: Rng>(rng: &mut R, a: f64, b: f64) -> f64 {
    a * exp(rng.random::<f64>() * ln(b / a))
}

/// Integer uniform in [a, b] (inclusive), portable (no usize).
pub fn int<R: Rng>(rng: &mut R, a: u32, b: u32) -> u32 {
    rng.random_range(a..=b)
}

/// Zero-mean, unit-variance white sample (uniform; filtering makes it Gaussian enough).
pub fn white<R: Rng>(rng: &mut R) -> f64 {
    (rng.random::<f64>() * 2.0 - 1.0) * 1.732_050_807_568_877_2
}

/// Approximately Gaussian, unit variance (Irwin–Hall of four uniforms): for amplitude jitter
/// and unfiltered noise where a bounded, bell-shaped distribution is wanted.
pub fn gauss<R: Rng>(rng: &mut R) -> f64 {
    let s: f64 = (0..4).map(|_| rng.random::<f64>()).sum();
    (s - 2.0) * 1.732_050_807_568_877_2
}

/// Waiting time of a Poisson process with the given rate (events per second).
pub fn exp_interval<R: Rng>(rng: &mut R, rate: f64) -> f64 {
    -ln(1.0 - rng.random::<f64>()) / rate
}

/// A smooth random process in [-1, 1]: random control points every `1/rate_hz` seconds,
/// joined by smoothstep curves. Models slow drifts (speed, load, turbulence) without any
/// filter start-up transient.
pub fn slow_noise<R: Rng>(rng: &mut R, n: usize, sample_rate: f64, rate_hz: f64) -> Vec<f64> {
    let step = (sample_rate / rate_hz).max(1.0);
    let points = (n as f64 / step) as usize + 2;
    let ctrl: Vec<f64> = (0..points).map(|_| uni(rng, -1.0, 1.0)).collect();
    (0..n)
        .map(|i| {
            let pos = i as f64 / step;
            let j = pos.floor() as usize;
            let u = pos - j as f64;
            let s = u * u * (3.0 - 2.0 * u);
            ctrl[j] + (ctrl[j + 1] - ctrl[j]) * s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_match_std_closely() {
        for i in -2000..2000 {
            let x = i as f64 * 0.00731;
            assert!((sin_cycles(x) - (TAU * x).sin()).abs() < 1e-9, "sin {x}");
            assert!((cos_cycles(x) - (TAU * x).cos()).abs() < 1e-9, "cos {x}");
            let e = x * 20.0;
            assert!((exp(e) / e.exp() - 1.0).abs() < 1e-13, "exp {e}");
            let l = 1e-9 + (i + 2000) as f64 * 0.37;
            assert!((ln(l) - l.ln()).abs() < 1e-13, "ln {l}");
        }
        assert_eq!(ln(1.0), 0.0);
        assert!((db_to_amp(-6.0) - 0.501_187).abs() < 1e-6);
    }

    #[test]
    fn slow_noise_is_bounded_and_smooth() {
        let mut r = stream(1, 2);
        let v = slow_noise(&mut r, 16000, 16000.0, 3.0);
        assert!(v.iter().all(|x| x.abs() <= 1.0));
        let max_step = v
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f64::max);
        assert!(max_step < 0.01, "{max_step}");
    }
}
