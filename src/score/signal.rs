//! "No signal": input below the level floor learned from the normal audio.
//!
//! Digital zeros (a device delivering nothing, a muted input) or a machine that stopped score
//! far above every threshold, because nothing in the normal audio sounded like silence. Such
//! windows are not anomalies: they are a state of the monitor ("no signal": the device or the
//! machine is off), shown in metrics, `/healthz` and an operational event, and never scored.
//!
//! A window has no signal when the RMS of its quietest quarter
//! ([`crate::dsp::level::quietest_quarter_dbfs`]) is below the floor, or when it holds more
//! than 20 ms of digital silence ([`crate::dsp::level::gate_level_dbfs`]), so windows that
//! straddle a stop or a start are not scored either. The state is declared after `after_s`
//! seconds of such windows (a short dropout is not worth an event) and ends with the first
//! window that has a signal again.

use crate::score::learn::NO_SIGNAL_MIN_FLOOR_DBFS;
use crate::score::profile::LevelStats;

/// A change of the no-signal state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SignalChange {
    /// No signal since this stream time (start of the first quiet window).
    Lost { since_s: f64 },
    /// A signal again, from this stream time (start of the first window with one).
    Back { at_s: f64 },
}

/// Tracks the no-signal state of one monitor.
#[derive(Debug, Clone)]
pub struct SignalGate {
    floor_dbfs: f64,
    after_s: f64,
    below_since: Option<f64>,
    absent: bool,
}

impl SignalGate {
    /// The floor of a profile's level statistics, or [`NO_SIGNAL_MIN_FLOOR_DBFS`] (digital
    /// silence and dead inputs only) for profiles without them.
    pub fn new(level: Option<&LevelStats>, after_s: f64) -> Self {
        Self {
            floor_dbfs: level.map_or(NO_SIGNAL_MIN_FLOOR_DBFS, |l| l.floor_dbfs),
            after_s: after_s.max(0.0),
            below_since: None,
            absent: false,
        }
    }

    pub fn floor_dbfs(&self) -> f64 {
        self.floor_dbfs
    }

    /// True while the no-signal state holds.
    pub fn absent(&self) -> bool {
        self.absent
    }

    /// Judges one window. Returns whether it has a signal (and should be scored) and the state
    /// change it caused, if any.
    pub fn push(&mut self, start: f64, end: f64, level_dbfs: f64) -> (bool, Option<SignalChange>) {
        if level_dbfs < self.floor_dbfs || level_dbfs.is_nan() {
            let since = *self.below_since.get_or_insert(start);
            if !self.absent && end - since >= self.after_s {
                self.absent = true;
                return (false, Some(SignalChange::Lost { since_s: since }));
            }
            return (false, None);
        }
        self.below_since = None;
        if self.absent {
            self.absent = false;
            return (true, Some(SignalChange::Back { at_s: start }));
        }
        (true, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_declared_after_a_while_and_ends_at_once() {
        let level = LevelStats {
            quietest_dbfs: -40.0,
            floor_dbfs: -60.0,
            margin_db: 20.0,
        };
        let mut g = SignalGate::new(Some(&level), 2.0);
        let w = |i: usize| (i as f64 * 0.5, i as f64 * 0.5 + 1.0);
        let (s, e) = w(0);
        assert_eq!(g.push(s, e, -30.0), (true, None));
        // Quiet from window 1: not scored at once, declared once 2 s are covered.
        for i in 1..3 {
            let (s, e) = w(i);
            assert_eq!(g.push(s, e, -200.0), (false, None), "window {i}");
        }
        let (s, e) = w(3);
        assert_eq!(
            g.push(s, e, -70.0),
            (false, Some(SignalChange::Lost { since_s: 0.5 }))
        );
        assert!(g.absent());
        let (s, e) = w(4);
        assert_eq!(g.push(s, e, -200.0), (false, None));
        let (s, e) = w(5);
        assert_eq!(
            g.push(s, e, -35.0),
            (true, Some(SignalChange::Back { at_s: 2.5 }))
        );
        // A short dropout is not a state.
        let (s, e) = w(6);
        assert_eq!(g.push(s, e, -200.0), (false, None));
        let (s, e) = w(7);
        assert_eq!(g.push(s, e, -30.0), (true, None));
        // Without level statistics only (near-)digital silence counts.
        let mut g = SignalGate::new(None, 0.0);
        assert_eq!(g.push(0.0, 1.0, -90.0), (true, None));
        assert!(matches!(
            g.push(0.5, 1.5, -200.0),
            (false, Some(SignalChange::Lost { .. }))
        ));
    }
}
