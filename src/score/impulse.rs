//! The impulse scorer: a level for [`crate::dsp::impulse::impulse_db`] learned from normal
//! audio, so that an impact or a squeal is reported from the window that holds it.
//!
//! The embedding scorers see a 1 s window pooled into one vector; a 50 ms knock barely moves
//! them. The impulse value (loudest 10 ms block over the median block, dB) does not dilute, so
//! it gets the transient rule of `score::decide`: one window above its level starts an event.
//! It never takes part in N of M (a machine that is impulsive by nature is judged by its
//! embedding scores; this scorer only answers "was there a knock louder than any normal
//! one?").
//!
//! The level is calibrated like the embedding scorers' transient levels
//! ([`super::threshold::transient_level`]: exponential upper tail above the 90 % quantile,
//! aiming at [`super::threshold::TRANSIENT_FAR`] per window) on the impulse values of *all*
//! normal windows: the value does not depend on the model, so there is nothing to hold out.
//! It is never less than [`MIN_MARGIN_DB`] above the loudest normal window.

use serde::{Deserialize, Serialize};

use super::learn::ClipWindows;
use super::threshold::{TRANSIENT_FAR, transient_level};

/// Scorer name in events and metrics.
pub const IMPULSE: &str = "impulse";
/// The level stays at least this far above every normal window's impulse value (dB).
pub const MIN_MARGIN_DB: f64 = 3.0;

/// The learned impulse level of a profile (`impulse` in the manifest; absent in profiles
/// learned before it existed: then the impulse rule is off).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImpulseLevel {
    /// One window above this (dB) starts an event.
    pub level_db: f64,
    /// Target false-alarm rate per window of `level_db`.
    pub far: f64,
    /// Normal windows it was calibrated on.
    pub windows: usize,
    /// 90 % quantile and maximum of the normal windows' values (dB), for inspection.
    pub q90_db: f64,
    pub max_db: f64,
}

/// Calibrates on the impulse values of normal windows; `None` without any (finite) value.
pub fn calibrate(values: &[f64]) -> Option<ImpulseLevel> {
    let mut s: Vec<f32> = values
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| v as f32)
        .collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f32::total_cmp);
    let max = f64::from(s[s.len() - 1]);
    let q90 = f64::from(s[((s.len() - 1) as f64 * 0.9).floor() as usize]);
    let level = f64::from(transient_level(&s, TRANSIENT_FAR)).max(max + MIN_MARGIN_DB);
    Some(ImpulseLevel {
        level_db: level,
        far: TRANSIENT_FAR,
        windows: s.len(),
        q90_db: q90,
        max_db: max,
    })
}

/// The level of a profile's normal clips (`None` when the clips carry no impulse values).
pub fn from_clips(clips: &[ClipWindows]) -> Option<ImpulseLevel> {
    let v: Vec<f64> = clips
        .iter()
        .flat_map(|c| c.impulse_db.iter().copied())
        .collect();
    calibrate(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent reference: exponential values (rate 1) above an offset of 2 dB; the level
    /// aiming at 1e-6 per window is 2 + ln(1e6).
    #[test]
    fn level_matches_an_exponential_tail() {
        let n = 20_000;
        let v: Vec<f64> = (0..n)
            .map(|i| 2.0 - (1.0 - (i as f64 + 0.5) / n as f64).ln())
            .collect();
        let l = calibrate(&v).unwrap();
        let exact = 2.0 + (1.0 / TRANSIENT_FAR).ln();
        assert!((l.level_db - exact).abs() < 0.1 * exact, "{l:?} vs {exact}");
        assert_eq!(l.windows, n);
        assert!(l.level_db >= l.max_db + MIN_MARGIN_DB);
    }

    #[test]
    fn few_or_no_values() {
        assert!(calibrate(&[]).is_none());
        assert!(calibrate(&[f64::NAN]).is_none());
        // Identical values: no spread to extrapolate, the margin keeps it above them.
        let l = calibrate(&[3.0; 10]).unwrap();
        assert!((l.level_db - 6.0).abs() < 1e-6, "{l:?}");
    }
}
