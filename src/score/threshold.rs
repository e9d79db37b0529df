//! Thresholds calibrated on normal windows that the normal model did not see.
//!
//! A threshold is the score that a chosen fraction of held-out normal windows exceed (the
//! target false-alarm rate per window). With fewer held-out windows than that rate can
//! resolve, the largest held-out score plus a margin is used and the profile says so.

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
        let pos = (1.0 - target_far) * (n - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(n - 1);
        let frac = (pos - lo as f64) as f32;
        (s[lo] + (s[hi] - s[lo]) * frac, "quantile")
    } else {
        // Not enough windows to see a false alarm at this rate: stay above everything seen,
        // with a margin of one inter-quartile range scaled down.
        let q1 = s[n / 4];
        let q3 = s[(3 * n) / 4];
        (s[n - 1] + 0.25 * (q3 - q1).max(0.0), "max+margin")
    };
    let above = s.iter().filter(|&&v| v > value).count();
    Some(Threshold {
        value,
        target_far,
        n,
        method: method.into(),
        calibration_far: above as f64 / n as f64,
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
}
