//! Offline replay of the daemon's decision on a recording's window scores.
//!
//! `score`, `eval` and `learn` must predict what `run` will raise, so they feed per-window
//! scores and levels through the very [`SignalGate`] and [`Decider`] the daemon's decision
//! stage uses (`daemon::monitor::decision`), with the same samples
//! ([`ScoreSample::from_threshold`]). Nothing here restates a rule: a change to the decision
//! rules changes offline figures and live alerts alike.
//!
//! Stream times of a replay are file seconds; wall times are the same offsets from the Unix
//! epoch (a fast replay has no wall time, as in the daemon's fast file replay).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::decide::{
    DecideConfig, DecideConfigError, Decider, DecisionEvent, DecisionKind, ScoreSample,
    ScoredWindow, TimeBase,
};
use super::impulse::ImpulseLevel;
use super::profile::LevelStats;
use super::signal::SignalGate;
use super::{Threshold, WindowScores};

/// One window of a recording as the daemon sees it: where it is, how loud its quietest
/// quarter is ([`crate::dsp::level::quietest_quarter_dbfs`]) and its scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WindowRecord {
    pub start_s: f64,
    pub end_s: f64,
    pub level_dbfs: f64,
    pub scores: WindowScores,
    /// [`crate::dsp::impulse::impulse_db`] of the window's samples, when known: the impulse
    /// scorer's value (the transient rule's third scorer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impulse_db: Option<f64>,
}

impl WindowRecord {
    /// The (scorer, score) pairs of this window, in the order the daemon builds them.
    pub fn named_scores(&self) -> Vec<(&'static str, f64)> {
        self.scores
            .named()
            .into_iter()
            .map(|(n, s)| (n, f64::from(s)))
            .collect()
    }
}

/// The daemon's view of embedded windows under `scorer`: `score`, `eval` and `eval`'s
/// replayed feedback all build their [`WindowRecord`]s here, so a re-scored window is the
/// same record the first scoring made.
pub fn scored_windows(
    scorer: &super::Scorer<'_>,
    windows: &[crate::embed::file::WindowEmbedding],
) -> Vec<WindowRecord> {
    windows
        .iter()
        .map(|win| WindowRecord {
            start_s: win.start_s,
            end_s: win.end_s,
            level_dbfs: win.level_dbfs,
            scores: scorer.score_window(&win.embedding, Some(&win.logmel)),
            impulse_db: Some(win.impulse_db),
        })
        .collect()
}

/// What a profile contributes to a decision: thresholds per scorer, the level floor and the
/// impulse level.
#[derive(Debug, Clone, Copy)]
pub struct Levels<'a> {
    pub thresholds: &'a BTreeMap<String, Threshold>,
    pub level: Option<&'a LevelStats>,
    pub impulse: Option<&'a ImpulseLevel>,
}

impl<'a> Levels<'a> {
    pub fn of(p: &'a super::Profile) -> Self {
        Self {
            thresholds: &p.manifest.thresholds,
            level: p.manifest.level.as_ref(),
            impulse: p.manifest.impulse.as_ref(),
        }
    }
}

fn at(s: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(s.max(0.0))
}

/// The decision messages (started, ongoing, ended, and a `shutdown` end for an event still
/// open at the end of the recording) the daemon would emit on `windows`, given in time order.
/// `monitor` names the event ids.
pub fn replay(
    levels: Levels<'_>,
    cfg: &DecideConfig,
    monitor: &str,
    windows: &[WindowRecord],
) -> Result<Vec<DecisionEvent>, DecideConfigError> {
    let labels = BTreeMap::from([("monitor".to_string(), monitor.to_string())]);
    let mut d = Decider::new(cfg.clone(), labels)?;
    d.set_time_base(TimeBase::Stream);
    let mut gate = SignalGate::new(levels.level, cfg.no_signal_after);
    let mut out = Vec::new();
    for w in windows {
        let (signal, _) = gate.push(w.start_s, w.end_s, w.level_dbfs);
        let samples: Vec<ScoreSample> = if signal {
            let mut v: Vec<ScoreSample> = w
                .named_scores()
                .into_iter()
                .filter_map(|(name, s)| {
                    levels
                        .thresholds
                        .get(name)
                        .map(|t| ScoreSample::from_threshold(name, s, t, cfg))
                })
                .collect();
            // The daemon's third sample (daemon::monitor::scoring), on the same value.
            if let (Some(l), Some(db)) = (levels.impulse, w.impulse_db) {
                v.extend(ScoreSample::impulse(db, l, cfg));
            }
            v
        } else {
            Vec::new()
        };
        let sw = ScoredWindow {
            start: w.start_s,
            end: w.end_s,
            wall_start: at(w.start_s),
            wall_end: at(w.end_s),
            decided_at: at(w.end_s),
            scores: &samples,
        };
        out.extend(d.push(&sw));
    }
    out.extend(d.finish());
    Ok(out)
}

/// Number of events started among `events`.
pub fn started(events: &[DecisionEvent]) -> usize {
    events
        .iter()
        .filter(|e| e.kind == DecisionKind::Started)
        .count()
}

/// The clip score of one scorer over a recording's window scores (`eval --clip-score`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ClipScore {
    /// Mean of all window scores (the DCASE convention).
    Mean,
    /// Mean of the k highest window scores (anomalies are often short).
    TopK,
    /// The largest N-th highest score over any M consecutive windows: the N-of-M rule fires
    /// on a clip exactly when this exceeds the threshold.
    NOfM,
}

/// Mean of the `k` highest of `v` (all of them when fewer); `None` when empty.
pub fn top_k_mean(v: &[f32], k: usize) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| b.total_cmp(a));
    let k = k.clamp(1, s.len());
    Some(s[..k].iter().sum::<f32>() / k as f32)
}

/// The N-of-M statistic of `v` (see [`ClipScore::NOfM`]): per position the `n`-th highest of
/// the last `m` windows (fewer at the start, where it needs `n` of them), maximised over the
/// clip; `None` when the clip has fewer than `n` windows.
pub fn n_of_m_max(v: &[f32], n: usize, m: usize) -> Option<f32> {
    n_of_m_series(v, n, m).into_iter().reduce(f32::max)
}

/// Per window the `n`-th highest score of the last `m` windows (from the `n`-th window on):
/// the rule "N of the last M above x" holds at a window exactly when this is above x.
pub fn n_of_m_series(v: &[f32], n: usize, m: usize) -> Vec<f32> {
    let n = n.max(1);
    let m = m.max(n);
    let mut buf = Vec::with_capacity(m);
    (0..v.len())
        .filter(|&i| i + 1 >= n)
        .map(|i| {
            buf.clear();
            buf.extend_from_slice(&v[(i + 1).saturating_sub(m)..=i]);
            buf.sort_by(|a, b| b.total_cmp(a));
            buf[n - 1]
        })
        .collect()
}

/// One scorer's clip score of `v` by `how` (`k` for top-k, N and M of `cfg` for N of M).
pub fn clip_score(v: &[f32], how: ClipScore, k: usize, cfg: &DecideConfig) -> Option<f32> {
    match how {
        ClipScore::Mean => (!v.is_empty()).then(|| v.iter().sum::<f32>() / v.len() as f32),
        ClipScore::TopK => top_k_mean(v, k),
        ClipScore::NOfM => n_of_m_max(v, cfg.trigger_n, cfg.trigger_m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::CENTROID;

    #[test]
    fn top_k_and_n_of_m_by_hand() {
        let v = [0.1, 0.9, 0.2, 0.8, 0.3, 0.7];
        assert!((top_k_mean(&v, 3).unwrap() - 0.8).abs() < 1e-6);
        assert_eq!(top_k_mean(&v, 100), Some(0.5));
        assert_eq!(top_k_mean(&[], 3), None);
        // 2nd highest of the last 3: [0.1 0.9]->0.1, [0.1 0.9 0.2]->0.2, [0.9 0.2 0.8]->0.8,
        // [0.2 0.8 0.3]->0.3, [0.8 0.3 0.7]->0.7.
        assert_eq!(n_of_m_series(&v, 2, 3), vec![0.1, 0.2, 0.8, 0.3, 0.7]);
        assert_eq!(n_of_m_max(&v, 2, 3), Some(0.8));
        assert_eq!(n_of_m_max(&[0.5], 2, 3), None);
    }

    fn threshold(value: f32) -> Threshold {
        Threshold {
            value,
            target_far: 0.01,
            n: 100,
            method: "quantile".into(),
            calibration_far: 0.01,
            release: Some(value * 0.5),
            release_quantile: Some(0.9),
            transient: None,
            transient_far: None,
        }
    }

    fn rec(i: usize, c: f32, level: f64) -> WindowRecord {
        WindowRecord {
            start_s: i as f64 * 0.5,
            end_s: i as f64 * 0.5 + 1.0,
            level_dbfs: level,
            scores: WindowScores {
                centroid: c,
                ..Default::default()
            },
            impulse_db: None,
        }
    }

    /// The decision's clip statistic predicts the decider: on random clips, N of M fires
    /// exactly when the N-of-M maximum exceeds the threshold (the decider is the reference).
    #[test]
    fn n_of_m_statistic_predicts_the_decider() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(3);
        let th = BTreeMap::from([(CENTROID.to_string(), threshold(0.9))]);
        let levels = Levels {
            thresholds: &th,
            level: None,
            impulse: None,
        };
        let cfg = DecideConfig::default();
        let (mut fired, mut quiet) = (0, 0);
        for _ in 0..300 {
            let v: Vec<f32> = (0..20).map(|_| rng.random::<f32>()).collect();
            let wins: Vec<WindowRecord> = v
                .iter()
                .enumerate()
                .map(|(i, &c)| rec(i, c, -20.0))
                .collect();
            let evs = replay(levels, &cfg, "m", &wins).unwrap();
            let stat = n_of_m_max(&v, cfg.trigger_n, cfg.trigger_m).unwrap();
            assert_eq!(started(&evs) > 0, stat > 0.9, "{v:?}");
            if stat > 0.9 {
                fired += 1;
                // Every start has its end (shutdown at the latest).
                assert_eq!(evs.last().unwrap().kind, DecisionKind::Ended);
            } else {
                quiet += 1;
            }
        }
        assert!(fired > 20 && quiet > 20, "{fired} {quiet}");
    }

    /// Windows below the level floor are not scored, as in the daemon: high scores in
    /// silence raise nothing.
    #[test]
    fn silence_is_gated_like_the_daemon() {
        let th = BTreeMap::from([(CENTROID.to_string(), threshold(0.5))]);
        let level = LevelStats {
            quietest_dbfs: -40.0,
            floor_dbfs: -60.0,
            margin_db: 20.0,
        };
        let levels = Levels {
            thresholds: &th,
            level: Some(&level),
            impulse: None,
        };
        let cfg = DecideConfig::default();
        let quiet: Vec<WindowRecord> = (0..20).map(|i| rec(i, 2.0, -90.0)).collect();
        assert_eq!(started(&replay(levels, &cfg, "m", &quiet).unwrap()), 0);
        let loud: Vec<WindowRecord> = (0..20).map(|i| rec(i, 2.0, -30.0)).collect();
        let evs = replay(levels, &cfg, "m", &loud).unwrap();
        assert_eq!(started(&evs), 1);
        assert_eq!(evs[0].time_base, TimeBase::Stream);
    }
}
