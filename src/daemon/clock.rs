//! A monitor's clock: the one place that maps stream time (seconds of audio counted by the
//! pipeline, gaps included) to wall-clock time.
//!
//! - **Live sources** (devices, real-time replays): every block is stamped with the moment it
//!   arrived. Audio ending at stream time `s` that arrives at wall time `a` gives the anchor
//!   candidate `a - s` (wall time of stream 0). Delivery can only be late, never early, so the
//!   smallest candidate of the last few seconds is the least delayed one and becomes the
//!   anchor: it follows each block, drifts with the device's clock, follows a step of the system
//!   clock within [`HORIZON_S`], and is rebuilt from scratch after every gap (xrun, reconnect),
//!   because a gap's length is only an estimate while the audio's arrival is a fact. Stamps are
//!   never later than the arrival of the audio they describe, so never in the future.
//! - **Fast replays** have no wall time: a file replayed at 100x real time would put events in
//!   the future. Their stamps are plain stream time, seconds into the file written as an
//!   offset from 1970-01-01T00:00:00Z, and events say so (`time_base: "stream"`).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use crate::score::decide::TimeBase;

/// Seconds of arrivals the anchor is chosen from.
pub const HORIZON_S: f64 = 10.0;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Clock {
    base: TimeBase,
    /// (arrival, anchor candidate), both in seconds since the Unix epoch.
    candidates: VecDeque<(f64, f64)>,
}

fn epoch_s(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

fn from_epoch_s(s: f64) -> SystemTime {
    if s >= 0.0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s.min(1e12))
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs_f64((-s).min(1e12))
    }
}

impl Clock {
    /// A clock for a live source (wall time from the arrival of audio).
    pub fn live() -> Self {
        Self {
            base: TimeBase::Wall,
            candidates: VecDeque::new(),
        }
    }

    /// A clock for a fast replay (plain stream time).
    pub fn stream() -> Self {
        Self {
            base: TimeBase::Stream,
            candidates: VecDeque::new(),
        }
    }

    pub fn time_base(&self) -> TimeBase {
        self.base
    }

    /// Audio up to stream time `stream_end_s` arrived at `arrival`.
    pub fn observe(&mut self, stream_end_s: f64, arrival: SystemTime) {
        if self.base == TimeBase::Stream {
            return;
        }
        let a = epoch_s(arrival);
        // Forget candidates older than the horizon, and any "from the future" (the system
        // clock was stepped back).
        self.candidates
            .retain(|(t, _)| *t >= a - HORIZON_S && *t <= a);
        let c = a - stream_end_s;
        // Keep a monotonic deque: candidates not smaller than the new one can never be the
        // minimum again while it is in the horizon.
        while self.candidates.back().is_some_and(|(_, v)| *v >= c) {
            self.candidates.pop_back();
        }
        self.candidates.push_back((a, c));
    }

    /// A gap in the audio (lost frames, a reconnect): the next block re-anchors the clock.
    pub fn gap(&mut self) {
        self.candidates.clear();
    }

    /// The wall-clock time of stream time `stream_s`.
    pub fn wall(&self, stream_s: f64) -> SystemTime {
        match self.base {
            TimeBase::Stream => from_epoch_s(stream_s),
            TimeBase::Wall => match self.candidates.front() {
                // The deque is increasing in candidate value: the front is the minimum.
                Some((_, anchor)) => from_epoch_s(anchor + stream_s).min(SystemTime::now()),
                None => SystemTime::now(),
            },
        }
    }

    /// "Now" for a decision taken on a window ending at `stream_end_s`: the real time for live
    /// sources, the window's end for fast replays.
    pub fn decided_at(&self, stream_end_s: f64) -> SystemTime {
        match self.base {
            TimeBase::Stream => from_epoch_s(stream_end_s),
            TimeBase::Wall => SystemTime::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64) -> SystemTime {
        from_epoch_s(1_700_000_000.0 + s)
    }

    #[test]
    fn the_least_delayed_block_sets_the_anchor() {
        let mut c = Clock::live();
        // 50 ms blocks arriving 5..80 ms late (scheduling jitter), one 400 ms late (a stall).
        let delays = [0.03, 0.005, 0.08, 0.4, 0.02, 0.05];
        for (i, d) in delays.iter().enumerate() {
            let end = 0.05 * (i + 1) as f64;
            c.observe(end, at(end + d));
        }
        let w = epoch_s(c.wall(0.1)) - 1_700_000_000.0;
        assert!((w - (0.1 + 0.005)).abs() < 1e-6, "{w}");
    }

    #[test]
    fn a_gap_re_anchors_from_the_real_arrival() {
        let mut c = Clock::live();
        c.observe(1.0, at(1.0));
        // The source estimated a 2 s outage (stream jumps to 3.0) but audio came back 4.4 s
        // after the last block: stamps follow the arrival, not the estimate.
        c.gap();
        c.observe(3.05, at(5.45));
        let w = epoch_s(c.wall(3.0)) - 1_700_000_000.0;
        assert!((w - 5.4).abs() < 1e-6, "{w}");
    }

    #[test]
    fn clock_steps_are_followed_and_stamps_never_lie_in_the_future() {
        let mut c = Clock::live();
        c.observe(1.0, at(1.0));
        // The system clock is stepped back by an hour: the next block re-anchors at once.
        c.observe(1.05, at(1.05 - 3600.0));
        let w = epoch_s(c.wall(1.0)) - 1_700_000_000.0;
        assert!((w - (1.0 - 3600.0)).abs() < 1e-6, "{w}");
        // Real arrivals: no stamp after now.
        let mut c = Clock::live();
        c.observe(10.0, SystemTime::now());
        assert!(c.wall(10.0) <= SystemTime::now());
        assert!(c.wall(1000.0) <= SystemTime::now());
    }

    #[test]
    fn fast_replays_use_plain_stream_time() {
        let mut c = Clock::stream();
        c.observe(100.0, SystemTime::now());
        assert_eq!(c.time_base(), TimeBase::Stream);
        assert_eq!(
            humantime::format_rfc3339_millis(c.wall(15.25)).to_string(),
            "1970-01-01T00:00:15.250Z"
        );
        assert_eq!(c.decided_at(16.0), from_epoch_s(16.0));
    }
}
