//! Thresholds in false alarms per day.
//!
//! A plant engineer chooses how many false events a day a monitor may raise
//! (`learn.false_alarms_per_day`); `learn` turns that into a threshold per scorer. The count is
//! the daemon's own: held-out normal scores (leave-one-clip-out, see `score::learn`) are
//! replayed through the real decider ([`super::replay`]) at candidate thresholds, and events
//! started are counted. The budget is split evenly between the scorers (with `require = any`
//! either one starts an event, so the rates add up; overlap makes this slightly cautious).
//!
//! A day of false alarms is far more audio than anyone records to learn from, so most budgets
//! need extrapolation:
//! - **observed**: when the budget expects at least [`MIN_OBSERVED`] events on the held-out
//!   audio, the threshold is the level at which the replay raises that many; its uncertainty
//!   is Poisson's (relative 1 / sqrt(count)).
//! - **tail**: otherwise the levels of the replayed events' peaks (the N-of-M statistic of
//!   [`super::replay::n_of_m_series`], the score the rule fires on) are modelled above a base
//!   level `u` that gives some [`TAIL_EVENTS`] events as exponential (peaks over threshold with
//!   a light tail): the event rate above x is `lambda_u * exp(-(x - u) / beta)`, `beta` the
//!   mean excess of the peaks. The threshold solves that for the budget:
//!   `x = u + beta * ln(lambda_u / budget)`. Both `lambda_u` and `beta` are estimated from `n`
//!   events (relative standard error 1 / sqrt(n) each), so the log of the rate at x has the
//!   standard error `sqrt((1 + ln(lambda_u / budget)^2) / n)`: the further the extrapolation,
//!   the wider the range. That range is stated (68 %, `low_per_day..high_per_day`), and `learn`
//!   warns when it spans more than a factor of 4 and says how much normal audio would narrow it
//!   to a factor of 2 either way.
//!
//! The transient rule (one window above the transient level) is calibrated per window in
//! `score::threshold` and comes on top (about 1e-6 per window and scorer: 0.17 a day at a
//! 0.5 s hop).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Threshold;
use super::decide::DecideConfig;
use super::profile::LevelStats;
use super::replay::{self, Levels, WindowRecord};

/// Events on the held-out audio from which the count is taken as observed.
pub const MIN_OBSERVED: f64 = 10.0;
/// Events above the base level of the tail model (more with more audio, see [`tail_events`]).
pub const TAIL_EVENTS: usize = 20;
/// A range wider than this factor (high / low) is "too little normal audio".
pub const MAX_SPREAD: f64 = 4.0;

const DAY_S: f64 = 86_400.0;
/// Levels probed for the one with the most events (see `Held::level_for`).
const GRID: usize = 24;

/// One scorer's calibration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScorerRate {
    /// The threshold (the scorer's `value`).
    pub level: f32,
    /// Expected false events per day from this scorer's N-of-M rule, and a 68 % range.
    pub per_day: f64,
    pub low_per_day: f64,
    /// Infinite when the rate is unknown ("max"); JSON has no infinity: written as null.
    #[serde(with = "unbounded")]
    pub high_per_day: f64,
    /// "observed", "tail" or "max" (too few events on the held-out audio to model any tail:
    /// the threshold is above every held-out event, the rate unknown).
    pub method: String,
    /// Events the model rests on (at the threshold for "observed", at the base level for
    /// "tail").
    pub events: usize,
}

/// The monitor's false-alarm calibration (the profile manifest's `false_alarms`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FalseAlarms {
    /// The budget asked for (events per day, all scorers together).
    pub target_per_day: f64,
    /// The N-of-M rule calibrated for (a monitor with other `trigger_n`/`trigger_m` gets
    /// other rates).
    pub trigger_n: usize,
    pub trigger_m: usize,
    /// Seconds of held-out normal audio (all of it: leave-one-clip-out).
    pub normal_seconds: f64,
    /// Folds of the leave-one-clip-out scoring.
    pub folds: usize,
    /// Expected false events per day and its 68 % range (sum over scorers).
    pub expected_per_day: f64,
    pub low_per_day: f64,
    /// Infinite when a scorer's rate is unknown; written as null.
    #[serde(with = "unbounded")]
    pub high_per_day: f64,
    /// False when the range spans more than [`MAX_SPREAD`]: learn from more normal audio.
    pub enough_audio: bool,
    /// Seconds of normal audio that would narrow the range to a factor of 2 either way
    /// (present when `enough_audio` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_needed_s: Option<f64>,
    pub scorers: BTreeMap<String, ScorerRate>,
}

/// An upper bound that may be infinite (no finite bound known): JSON has no infinity, so it
/// is written as `null` and read back as infinity (serde_json would write `null` and then
/// refuse to read it, leaving a profile that does not load).
mod unbounded {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

/// Events above the tail model's base level for `windows` held-out windows.
pub fn tail_events(windows: usize) -> usize {
    TAIL_EVENTS.max(windows / 200)
}

/// One scorer's held-out scores in time order, per held-out recording (unit of the
/// leave-one-clip-out), with what the replay needs.
pub struct Held<'a> {
    pub seqs: &'a [Vec<WindowRecord>],
    pub level: Option<&'a LevelStats>,
    pub decide: &'a DecideConfig,
    pub normal_seconds: f64,
}

impl Held<'_> {
    fn score_of(w: &WindowRecord, scorer: &str) -> Option<f32> {
        w.named_scores()
            .into_iter()
            .find(|(n, _)| *n == scorer)
            .map(|(_, s)| s as f32)
    }

    /// Events the daemon's rule raises with `scorer` alone at threshold `x`, and per event the
    /// peak of the N-of-M statistic between its detection and its end.
    fn events(&self, scorer: &str, base: &Threshold, x: f32) -> (usize, Vec<f32>) {
        let mut t = base.clone();
        t.value = x;
        t.release = Some(
            base.release_level(self.decide.release_ratio)
                .min(f64::from(x)) as f32,
        );
        t.transient = None;
        let th = BTreeMap::from([(scorer.to_string(), t)]);
        let levels = Levels {
            thresholds: &th,
            level: self.level,
            // Per scorer: the impulse rule has its own level (score::impulse).
            impulse: None,
        };
        let (mut n, mut peaks) = (0, Vec::new());
        for seq in self.seqs {
            let Ok(evs) = replay::replay(levels, self.decide, "calibration", seq) else {
                continue;
            };
            let v: Vec<f32> = seq
                .iter()
                .map(|w| Self::score_of(w, scorer).unwrap_or(f32::NEG_INFINITY))
                .collect();
            let (nn, mm) = (self.decide.trigger_n.max(1), self.decide.trigger_m);
            let r = replay::n_of_m_series(&v, nn, mm);
            // r[j] belongs to window j + n - 1.
            let r_at = |i: usize| {
                i.checked_sub(nn - 1)
                    .and_then(|j| r.get(j))
                    .copied()
                    .unwrap_or(f32::NEG_INFINITY)
            };
            let mut open: Option<f64> = None;
            for e in &evs {
                match e.kind {
                    super::decide::DecisionKind::Started => {
                        n += 1;
                        open = e.detected.as_ref().map(|d| d.stream_s);
                    }
                    super::decide::DecisionKind::Ended => {
                        let (Some(a), Some(b)) = (open.take(), e.end.as_ref()) else {
                            continue;
                        };
                        let peak = seq
                            .iter()
                            .enumerate()
                            .filter(|(_, w)| w.end_s >= a - 1e-9 && w.end_s <= b.stream_s + 1e-9)
                            .map(|(i, _)| r_at(i))
                            .fold(f32::NEG_INFINITY, f32::max);
                        peaks.push(peak.max(x));
                    }
                    super::decide::DecisionKind::Ongoing => {}
                }
            }
        }
        (n, peaks)
    }

    /// The lowest candidate level at which at most `count` events are raised (candidates: the
    /// scorer's N-of-M statistics), with its events and peaks.
    fn level_for(&self, scorer: &str, base: &Threshold, count: f64) -> (f32, usize, Vec<f32>) {
        let mut cand: Vec<f32> = self
            .seqs
            .iter()
            .flat_map(|seq| {
                let v: Vec<f32> = seq
                    .iter()
                    .filter_map(|w| Self::score_of(w, scorer))
                    .collect();
                replay::n_of_m_series(&v, self.decide.trigger_n, self.decide.trigger_m)
            })
            .filter(|v| v.is_finite())
            .collect();
        cand.sort_by(f32::total_cmp);
        cand.dedup();
        if cand.is_empty() {
            return (f32::INFINITY, 0, Vec::new());
        }
        // The count is not monotonic over all levels: far down, events never end and a whole
        // recording is one. Find the level with the most events on a coarse grid, then binary
        // search above it, where the count falls (nearly monotonically) with the level.
        let top = cand.len() - 1;
        let peak = (0..=GRID)
            .map(|i| top * i / GRID)
            .map(|i| (i, self.events(scorer, base, cand[i]).0))
            .fold(
                (top, 0),
                |best, (i, n)| if n >= best.1 { (i, n) } else { best },
            );
        let (mut lo, mut hi) = (peak.0, top);
        let mut best = self.events(scorer, base, cand[hi]);
        let mut best_x = cand[hi];
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (n, p) = self.events(scorer, base, cand[mid]);
            if n as f64 <= count {
                hi = mid;
                best = (n, p);
                best_x = cand[mid];
            } else {
                lo = mid + 1;
            }
        }
        (best_x, best.0, best.1)
    }

    /// Calibrates `scorer` for `per_day` false events a day (see the module docs).
    pub fn calibrate(&self, scorer: &str, base: &Threshold, per_day: f64) -> ScorerRate {
        let t = self.normal_seconds.max(1e-9);
        let rho = per_day / DAY_S;
        let expected_here = rho * t;
        if expected_here >= MIN_OBSERVED {
            let (x, n, _) = self.level_for(scorer, base, expected_here);
            let per = n as f64 / t * DAY_S;
            let se = 1.0 / (n.max(1) as f64).sqrt();
            return ScorerRate {
                level: x,
                per_day: per,
                low_per_day: per * (-se).exp(),
                high_per_day: per * se.exp(),
                method: "observed".into(),
                events: n,
            };
        }
        let windows: usize = self.seqs.iter().map(Vec::len).sum();
        let (u, n_u, peaks) = self.level_for(scorer, base, tail_events(windows) as f64);
        if n_u < 3 {
            // Too few events at any level to model a tail: stay above all of them. No event at
            // any level (every held-out run shorter than the rule's N windows, and no window
            // over the transient level): above every held-out window's score instead, or the
            // per-window threshold when no window has this score.
            let x = if u.is_finite() {
                peaks.iter().copied().fold(u, f32::max)
            } else {
                self.seqs
                    .iter()
                    .flatten()
                    .filter_map(|w| w.scores.get(scorer))
                    .filter(|v| v.is_finite())
                    .reduce(f32::max)
                    .unwrap_or(base.value)
            };
            let x = x + (x.abs() * 0.05).max(1e-3);
            return ScorerRate {
                level: x,
                per_day,
                low_per_day: 0.0,
                high_per_day: f64::INFINITY,
                method: "max".into(),
                events: n_u,
            };
        }
        // The far tail is lighter than the body's (cosine distances are bounded): estimate it
        // from the upper half of the peaks only, above their median.
        let mut top = peaks.clone();
        top.sort_by(|a, b| b.total_cmp(a));
        let half = (top.len() / 2).max(2);
        let u2 = top[half.min(top.len() - 1)];
        let above: Vec<f64> = top[..half]
            .iter()
            .map(|p| f64::from(p - u2).max(0.0))
            .collect();
        let n_t = above.len();
        let beta = above.iter().sum::<f64>() / n_t as f64;
        let lambda = n_t as f64 / t;
        let l = (lambda / rho).ln().max(0.0);
        let x = (f64::from(u2.max(u)) + beta.max(1e-6) * l) as f32;
        let se = ((1.0 + l * l) / n_t as f64).sqrt();
        ScorerRate {
            level: x,
            per_day,
            low_per_day: per_day * (-se).exp(),
            high_per_day: per_day * se.exp(),
            method: "tail".into(),
            events: n_t,
        }
    }
}

/// Sums the scorers' calibrations into the monitor's.
pub fn combine(
    target_per_day: f64,
    decide: &DecideConfig,
    normal_seconds: f64,
    folds: usize,
    scorers: BTreeMap<String, ScorerRate>,
) -> FalseAlarms {
    let sum = |f: &dyn Fn(&ScorerRate) -> f64| scorers.values().map(f).sum::<f64>();
    let (expected, low, high) = (
        sum(&|s| s.per_day),
        sum(&|s| s.low_per_day),
        sum(&|s| s.high_per_day),
    );
    let spread = if low > 0.0 { high / low } else { f64::INFINITY };
    let enough = spread <= MAX_SPREAD;
    // se scales as 1 / sqrt(audio); a factor of 2 either way is se = ln 2.
    let audio_needed_s = (!enough).then(|| {
        let se = 0.5 * spread.ln();
        if se.is_finite() {
            normal_seconds * (se / 2f64.ln()).powi(2)
        } else {
            normal_seconds * 10.0
        }
    });
    FalseAlarms {
        target_per_day,
        trigger_n: decide.trigger_n,
        trigger_m: decide.trigger_m,
        normal_seconds,
        folds,
        expected_per_day: expected,
        low_per_day: low,
        high_per_day: high,
        enough_audio: enough,
        audio_needed_s,
        scorers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::{CENTROID, WindowScores};

    /// An unknown rate (too little audio: infinite upper bound) survives the manifest's JSON:
    /// a profile learned from a few seconds must load again (it did not: `null` for f64).
    #[test]
    fn an_unbounded_range_round_trips_through_json() {
        let r = ScorerRate {
            level: 0.5,
            per_day: 0.5,
            low_per_day: 0.0,
            high_per_day: f64::INFINITY,
            method: "max".into(),
            events: 2,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"high_per_day\":null"), "{text}");
        let back: ScorerRate = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        let finite = ScorerRate {
            high_per_day: 12.5,
            ..r
        };
        let back: ScorerRate =
            serde_json::from_str(&serde_json::to_string(&finite).unwrap()).unwrap();
        assert_eq!(back.high_per_day, 12.5);
    }

    /// A window of normal audio at -20 dBFS with only a centroid score.
    fn window(start_s: f64, end_s: f64, centroid: f32) -> WindowRecord {
        WindowRecord {
            start_s,
            end_s,
            level_dbfs: -20.0,
            scores: WindowScores {
                centroid,
                ..Default::default()
            },
            impulse_db: None,
        }
    }

    /// Held-out clips of two windows each can never meet a 3-of-5 rule, and no window is a
    /// transient: no event happens at any level. The level must still be a number above every
    /// held-out window (it was infinite, which `learn` wrote as `null` into a profile that
    /// nothing could load).
    #[test]
    fn runs_shorter_than_the_rule_still_give_a_level_above_every_window() {
        let seqs: Vec<Vec<WindowRecord>> = (0..10)
            .map(|c| {
                (0..2)
                    .map(|i| {
                        let start = i as f64 * 1.28;
                        window(start, start + 2.56, 0.1 + 0.01 * (c * 2 + i) as f32)
                    })
                    .collect()
            })
            .collect();
        let decide = DecideConfig::default();
        assert!(
            decide.trigger_n > 2,
            "the rule needs more windows than a run has"
        );
        let all: Vec<f32> = seqs.iter().flatten().map(|w| w.scores.centroid).collect();
        let mut base = crate::score::threshold::calibrate(&all, 0.01).unwrap();
        base.transient = None;
        let held = Held {
            seqs: &seqs,
            level: None,
            decide: &decide,
            normal_seconds: 10.0 * 3.84,
        };
        let r = held.calibrate(CENTROID, &base, 1.0);
        let top = all.iter().copied().fold(f32::MIN, f32::max);
        assert!(
            r.level.is_finite() && r.level > top,
            "{r:?} (top window {top})"
        );
        assert!(r.level < 2.0 * top, "{r:?}: not far above the windows");
    }

    /// Independent scores from a known distribution, one long recording cut in clips: the
    /// observed and tail calibrations must both land near the event rate a replay of fresh
    /// scores from the same distribution measures.
    #[test]
    fn calibrated_levels_give_the_asked_rate_on_fresh_scores() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(11);
        let mut make = |clips: usize| -> Vec<Vec<WindowRecord>> {
            (0..clips)
                .map(|_| {
                    (0..240)
                        .map(|i| {
                            // Exponential scores.
                            let centroid = -(1.0 - rng.random::<f32>()).ln();
                            window(i as f64 * 0.5, i as f64 * 0.5 + 1.0, centroid)
                        })
                        .collect()
                })
                .collect()
        };
        let seconds = |s: &[Vec<WindowRecord>]| s.len() as f64 * 120.5;
        let decide = DecideConfig::default();
        let train = make(30); // one hour
        let test = make(120); // four hours
        let base = crate::score::threshold::calibrate(
            &train
                .iter()
                .flatten()
                .map(|w| w.scores.centroid)
                .collect::<Vec<_>>(),
            0.01,
        )
        .unwrap();
        let held = Held {
            seqs: &train,
            level: None,
            decide: &decide,
            normal_seconds: seconds(&train),
        };
        let fresh = Held {
            seqs: &test,
            level: None,
            decide: &decide,
            normal_seconds: seconds(&test),
        };
        // 2000/day: 83 expected in the hour (observed); 50/day: 2 (tail).
        for (per_day, method) in [(2000.0, "observed"), (50.0, "tail")] {
            let r = held.calibrate(CENTROID, &base, per_day);
            assert_eq!(r.method, method, "{r:?}");
            let (n, _) = fresh.events(CENTROID, &base, r.level);
            let measured = n as f64 / fresh.normal_seconds * DAY_S;
            // The stated range, widened by the measurement's own Poisson error.
            let m_se = 1.0 / (n.max(1) as f64).sqrt();
            assert!(
                measured >= r.low_per_day * (-2.0 * m_se).exp()
                    && measured <= r.high_per_day * (2.0 * m_se).exp(),
                "{per_day}/day: measured {measured:.1}/day ({n} events), stated {r:?}"
            );
        }
    }
}
