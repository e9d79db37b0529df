//! Thresholds calibrated on normal windows that the normal model did not see.
//!
//! Three levels per scorer, all learned from the same held-out normal scores, so that every
//! decision rule is calibrated the same way (this module owns them; `score::decide` only
//! compares):
//! - **threshold**: the score that a chosen fraction of held-out normal windows exceed (the
//!   target false-alarm rate per window). With fewer held-out windows than that rate can
//!   resolve, the largest held-out score plus a margin is used and the profile says so.
//! - **release**: the score [`RELEASE_QUANTILE`] of normal windows stay under. An event ends
//!   once, for `release_after` seconds, no window exceeded its threshold and each scorer's
//!   median stayed below its release level: on normal audio that median is below it with
//!   near certainty (the median of 10 windows exceeds the 90 % quantile with probability
//!   about 0.2 %), while a fault that keeps scores high holds the event open.
//! - **transient**: a level a single normal window should exceed only once in
//!   1 / [`TRANSIENT_FAR`] windows (about once in 6 days at a 0.5 s hop). No held-out set is
//!   that large, so the upper tail is modelled as exponential above the 90 % quantile (the
//!   peaks-over-threshold method with a light tail): `level = q90 + mean_excess * ln(0.1 /
//!   far)`, and never below the largest held-out score plus one mean excess. One window above
//!   it starts an event at once (an impact, a squeal), without waiting for N of M.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Threshold {
    pub value: f32,
    /// The false-alarm rate per window this threshold aims at.
    pub target_far: f64,
    /// Held-out normal windows it was calibrated on.
    pub n: usize,
    /// "quantile" or "max+margin" (too few windows for the rate).
    pub method: String,
    /// Fraction of held-out windows above `value` (what was achieved on calibration data).
    pub calibration_far: f64,
    /// Release level (see the module docs); absent in profiles learned before it existed,
    /// where `decide.release_ratio * value` is used instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<f32>,
    /// Quantile of held-out normal scores that `release` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_quantile: Option<f64>,
    /// Transient level (see the module docs); absent in older profiles (no transient rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transient: Option<f32>,
    /// Target false-alarm rate per window of `transient`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transient_far: Option<f64>,
}

/// Quantile of normal scores used as the release level.
pub const RELEASE_QUANTILE: f64 = 0.9;
/// False-alarm rate per window aimed at by the transient level.
pub const TRANSIENT_FAR: f64 = 1e-6;

impl Threshold {
    /// The level every score must come back under (in median) for an event to end: the
    /// calibrated one, or `value * fallback_ratio` for profiles without it; never above the
    /// threshold (hysteresis needs release <= trigger).
    pub fn release_level(&self, fallback_ratio: f64) -> f64 {
        let v = f64::from(self.value);
        self.release
            .map(f64::from)
            .unwrap_or(v * fallback_ratio)
            .min(v)
    }

    /// The single-window level, if the profile has one; never below the threshold.
    pub fn transient_level(&self) -> Option<f64> {
        self.transient
            .map(|t| f64::from(t).max(f64::from(self.value)))
    }
}

/// Linear interpolation between order statistics of sorted `s` at quantile `q`.
fn quantile(s: &[f32], q: f64) -> f32 {
    let n = s.len();
    let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = (pos - lo as f64) as f32;
    s[lo] + (s[hi] - s[lo]) * frac
}

/// The transient level of sorted `s` (see the module docs).
pub(crate) fn transient_level(s: &[f32], far: f64) -> f32 {
    let n = s.len();
    let u = quantile(s, 0.9);
    let excess: Vec<f64> = s
        .iter()
        .filter(|&&v| v > u)
        .map(|&v| f64::from(v - u))
        .collect();
    let max = s[n - 1];
    // Too few windows above the 90 % quantile to average: use the spread of the upper half.
    let beta = if excess.len() >= 3 {
        excess.iter().sum::<f64>() / excess.len() as f64
    } else {
        f64::from(max - quantile(s, 0.5)).max(0.0)
    };
    let extrapolated = f64::from(u) + beta * (0.1 / far).ln();
    (extrapolated.max(f64::from(max) + beta)) as f32
}

/// Calibrates on held-out normal scores. `scores` must be non-empty and finite.
pub fn calibrate(scores: &[f32], target_far: f64) -> Option<Threshold> {
    let mut s: Vec<f32> = scores.iter().copied().filter(|v| v.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f32::total_cmp);
    let n = s.len();
    let (value, method) = if (n as f64) * target_far >= 1.0 {
        // Linear interpolation between order statistics at quantile 1 - far.
        (quantile(&s, 1.0 - target_far), "quantile")
    } else {
        // Not enough windows to see a false alarm at this rate: stay above everything seen,
        // with a margin of one inter-quartile range scaled down.
        let q1 = s[n / 4];
        let q3 = s[(3 * n) / 4];
        (s[n - 1] + 0.25 * (q3 - q1).max(0.0), "max+margin")
    };
    let above = s.iter().filter(|&&v| v > value).count();
    let release = quantile(&s, RELEASE_QUANTILE).min(value);
    let transient = transient_level(&s, TRANSIENT_FAR).max(value);
    Some(Threshold {
        value,
        target_far,
        n,
        method: method.into(),
        calibration_far: above as f64 / n as f64,
        release: Some(release),
        release_quantile: Some(RELEASE_QUANTILE),
        transient: Some(transient),
        transient_far: Some(TRANSIENT_FAR),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_gives_the_asked_false_alarm_rate() {
        let scores: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let t = calibrate(&scores, 0.01).unwrap();
        assert_eq!(t.method, "quantile");
        assert!((t.calibration_far - 0.01).abs() <= 0.002, "{t:?}");
    }

    #[test]
    fn few_windows_stay_above_the_maximum() {
        let t = calibrate(&[1.0, 2.0, 3.0, 4.0], 0.01).unwrap();
        assert_eq!(t.method, "max+margin");
        assert!(t.value > 4.0);
        assert_eq!(t.calibration_far, 0.0);
        assert!(calibrate(&[], 0.01).is_none());
        assert!(calibrate(&[f32::NAN], 0.01).is_none());
    }

    /// Independent reference: for exponential scores the 90 % release quantile and the
    /// transient level have closed forms (q = -ln(1 - p) / lambda).
    #[test]
    fn release_and_transient_levels_match_an_exponential_reference() {
        let n = 20_000;
        // Exact exponential quantiles (lambda = 1) at evenly spaced probabilities.
        let scores: Vec<f32> = (0..n)
            .map(|i| -(1.0 - (i as f64 + 0.5) / n as f64).ln() as f32)
            .collect();
        let t = calibrate(&scores, 0.01).unwrap();
        let release = t.release.unwrap();
        assert!((f64::from(release) - 10f64.ln()).abs() < 0.01, "{release}");
        assert!(release < t.value);
        // P(S > x) = far  <=>  x = ln(1 / far) for lambda = 1.
        let transient = f64::from(t.transient.unwrap());
        let exact = (1.0 / TRANSIENT_FAR).ln();
        assert!(
            (transient - exact).abs() < 0.1 * exact,
            "{transient} vs {exact}"
        );
        assert_eq!(t.release_level(0.8), f64::from(release));
        assert!(t.transient_level().unwrap() > f64::from(t.value));
    }

    #[test]
    fn older_profiles_without_levels_fall_back() {
        let json = r#"{"value": 2.0, "target_far": 0.01, "n": 100, "method": "quantile", "calibration_far": 0.01}"#;
        let t: Threshold = serde_json::from_str(json).unwrap();
        assert_eq!(t.release_level(0.8), 1.6);
        assert_eq!(t.transient_level(), None);
    }
}
