//! Is there enough normal audio behind the thresholds?
//!
//! A threshold at a false-alarm rate `far` per window is only measured when a few held-out
//! windows lie above it: [`MIN_ABOVE`] / `far` held-out windows. With fewer, the threshold is
//! the largest of a few dozen scores plus a margin, and the release and transient levels are
//! extrapolated from as few: a profile learned from a handful of clips then fires on the
//! first odd window (seen live: both events of a test started on the windows right after a
//! silence). `learn` still writes such a profile (better than none), but says so in the log
//! and in the manifest (`coverage_warning`), with how much more normal audio would do.

use serde::{Deserialize, Serialize};

/// Held-out windows that should lie above a threshold for it to be measured, not guessed.
pub const MIN_ABOVE: f64 = 3.0;

/// Written to the manifest when the thresholds rest on too few held-out windows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CoverageWarning {
    /// Held-out normal windows the thresholds were calibrated on.
    pub held_out_windows: usize,
    /// Held-out windows needed for the target false-alarm rate.
    pub needed_held_out_windows: usize,
    /// About this many more seconds of normal audio would give them.
    pub more_audio_s: f64,
    /// The same, for a person.
    pub message: String,
}

/// `None` when `held_out` windows are enough for `target_far`; else the warning. `hop_s` and
/// `holdout_fraction` turn missing windows into seconds of normal audio to add.
pub fn check(
    held_out: usize,
    target_far: f64,
    hop_s: f64,
    holdout_fraction: f64,
) -> Option<CoverageWarning> {
    if target_far.is_nan() || target_far <= 0.0 {
        return None;
    }
    let needed = (MIN_ABOVE / target_far).ceil() as usize;
    if held_out >= needed {
        return None;
    }
    let per_s = holdout_fraction.clamp(1e-3, 1.0) / hop_s.max(1e-3);
    let more = ((needed - held_out) as f64 / per_s).ceil();
    Some(CoverageWarning {
        held_out_windows: held_out,
        needed_held_out_windows: needed,
        more_audio_s: more,
        message: format!(
            "thresholds rest on {held_out} held-out normal windows, fewer than the {needed} a false-alarm rate of {target_far} per window needs: they are the largest few scores plus a margin, and odd but normal windows (a start after a silence) may raise events; learn from about {more:.0} s ({:.1} min) more normal audio",
            more / 60.0
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_windows_warn_with_the_audio_missing() {
        // 60 held-out windows at 1 %: 300 needed; a quarter held out at 0.5 s hops is
        // 0.5 held-out windows per second of audio, so 240 windows are 480 s.
        let w = check(60, 0.01, 0.5, 0.25).expect("warns");
        assert_eq!(w.needed_held_out_windows, 300);
        assert_eq!(w.more_audio_s, 480.0);
        assert!(w.message.contains("480 s"), "{}", w.message);
        assert!(check(300, 0.01, 0.5, 0.25).is_none());
        assert!(check(10, 0.0, 0.5, 0.25).is_none());
    }
}
