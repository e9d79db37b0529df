//! Signal level of a window: the one definition `learn` (the normal audio's quietest windows)
//! and the daemon (is there a signal at all?) share.
//!
//! Why the *quietest quarter* of a window rather than its RMS: a machine that stops half-way
//! through a window still leaves half a window of sound, so the window's RMS drops by only
//! 3 dB; its quietest quarter drops to the floor at once. Windows that straddle a stop or a
//! start are then treated as "no signal" instead of being scored as strange sounds.

/// dBFS reported for digital silence (an exact zero has no logarithm).
pub const SILENCE_DBFS: f64 = -200.0;

/// RMS of `x` in dBFS (full scale = 1.0); [`SILENCE_DBFS`] for all zeros or an empty slice.
pub fn rms_dbfs(x: &[f32]) -> f64 {
    if x.is_empty() {
        return SILENCE_DBFS;
    }
    let ms = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64;
    to_dbfs(ms.sqrt())
}

/// Amplitude (linear, full scale 1.0) in dBFS, floored at [`SILENCE_DBFS`].
pub fn to_dbfs(amplitude: f64) -> f64 {
    if amplitude > 0.0 && amplitude.is_finite() {
        (20.0 * amplitude.log10()).max(SILENCE_DBFS)
    } else {
        SILENCE_DBFS
    }
}

/// The RMS level (dBFS) of the quietest of the four quarters of a window.
pub fn quietest_quarter_dbfs(window: &[f32]) -> f64 {
    let q = window.len() / 4;
    if q == 0 {
        return rms_dbfs(window);
    }
    window
        .chunks(q)
        .filter(|c| c.len() == q)
        .map(rms_dbfs)
        .fold(f64::INFINITY, f64::min)
}

/// Below this a sample is digital silence: -120 dBFS, under the noise floor of any live
/// microphone input (a 16-bit LSB is -90 dBFS), so only zeros from a muted or stopped device,
/// a dropout or a splice stay below it for long.
const DIGITAL_SILENCE: f32 = 1e-6;

/// The longest stretch of digital silence (seconds) a window may hold and still be scored.
pub const MAX_DIGITAL_SILENCE_S: f64 = 0.02;

/// The level the no-signal gate judges a window by: [`quietest_quarter_dbfs`], or
/// [`SILENCE_DBFS`] when the window holds more than [`MAX_DIGITAL_SILENCE_S`] of digital
/// silence. A window whose input stops or resumes a little way in keeps three loud quarters,
/// but the edge between sound and digital zeros is a click no machine made, and it scored far
/// above every threshold (seen live at hop 0.25 s, where windows straddle a stop at any
/// offset). `learn` keeps [`quietest_quarter_dbfs`]: normal audio with a dropout must not
/// drag the learned floor down to digital silence.
pub fn gate_level_dbfs(window: &[f32], rate: u32) -> f64 {
    let limit = (MAX_DIGITAL_SILENCE_S * f64::from(rate)) as usize;
    let mut run = 0usize;
    for &v in window {
        if v.abs() < DIGITAL_SILENCE {
            run += 1;
            if run > limit {
                return SILENCE_DBFS;
            }
        } else {
            run = 0;
        }
    }
    quietest_quarter_dbfs(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_scale_sine_is_minus_3_db_and_silence_is_the_floor() {
        let s: Vec<f32> = (0..48_000)
            .map(|i| (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 48_000.0).sin())
            .collect();
        assert!((rms_dbfs(&s) + 3.0103).abs() < 0.01, "{}", rms_dbfs(&s));
        assert_eq!(rms_dbfs(&[0.0; 100]), SILENCE_DBFS);
        assert_eq!(rms_dbfs(&[]), SILENCE_DBFS);
    }

    #[test]
    fn a_window_that_stops_short_of_a_quarter_is_gated_by_its_digital_silence() {
        let rate = 44_100;
        // Sound with zero crossings (a sampled sine passes near zero, never stays there).
        let mut w: Vec<f32> = (0..rate)
            .map(|i| 0.1 * (i as f32 * 2.0 * std::f32::consts::PI * 50.0 / rate as f32).sin())
            .collect();
        let sound = quietest_quarter_dbfs(&w);
        assert!(sound > -30.0, "{sound}");
        assert_eq!(gate_level_dbfs(&w, rate as u32), sound);
        // The input stops 0.1 s before the window's end: the quietest quarter hardly moves...
        w[rate - rate / 10..].iter_mut().for_each(|v| *v = 0.0);
        assert!(quietest_quarter_dbfs(&w) > -35.0);
        // ... but the gate sees no signal.
        assert_eq!(gate_level_dbfs(&w, rate as u32), SILENCE_DBFS);
        // A 10 ms dropout is still sound.
        let mut d: Vec<f32> = (0..rate)
            .map(|i| if i % 2 == 0 { 0.1 } else { -0.1 })
            .collect();
        d[1000..1000 + rate / 100].iter_mut().for_each(|v| *v = 0.0);
        assert!(gate_level_dbfs(&d, rate as u32) > -30.0);
    }

    #[test]
    fn a_window_that_goes_silent_half_way_is_at_the_floor() {
        let mut w = vec![0.1f32; 16_000];
        // Whole-window RMS only drops 3 dB ...
        w[8_000..].iter_mut().for_each(|v| *v = 0.0);
        assert!((rms_dbfs(&w) - (-23.0103)).abs() < 0.01);
        // ... but its quietest quarter is digital silence.
        assert_eq!(quietest_quarter_dbfs(&w), SILENCE_DBFS);
        assert!((quietest_quarter_dbfs(&[0.1; 16_000]) + 20.0).abs() < 1e-6);
    }
}
