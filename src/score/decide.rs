//! Turning a stream of per-window scores into anomaly events, with hysteresis.
//!
//! A single window above threshold is not an event: machines clank, doors slam. An event
//! *starts* when a scorer's score exceeds its threshold in `trigger_n` of its last `trigger_m`
//! windows, and *ends* only when every scorer has stayed below a lower release level
//! (`threshold * release_ratio`) for `release_after` seconds of stream time. The gap between
//! threshold and release level, plus the hold time, is what keeps a score hovering around its
//! threshold from producing a storm of start/end pairs.
//!
//! Rules in detail (each one is a unit test below):
//! - Each scorer ("centroid", "knn", ...) keeps its own N-of-M history. A window in which a
//!   known scorer is missing (e.g. k-NN degraded) counts as "not exceeded" for it: missing data
//!   is not evidence of an anomaly, and old evidence must not combine with new across a gap.
//! - `require = "any"`: one triggered scorer starts the event. `require = "all"`: every scorer
//!   present in the window must be triggered (a scorer that is missing is not required, so a
//!   degraded index does not blind the monitor).
//! - While an event is open, a scorer that reaches its own N-of-M condition joins `fired`.
//! - The event stays open while any present scorer is at or above its release level; it ends
//!   once none has been for `release_after` seconds. Its end time is the end of the last loud
//!   window, i.e. when the machine went quiet, not when we became sure of it.
//! - After an event ends the histories are cleared, so the same evidence cannot start a second
//!   event at once.
//! - [`Decider::finish`] closes an open event with reason `shutdown`, so an event file never
//!   holds a start without an end after a clean stop.
//!
//! Times are stream seconds (what the pipeline counts from its audio) plus wall-clock RFC 3339,
//! mapped from the wall-clock time the pipeline attaches to each window.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Whether one triggered scorer is enough to start an event, or all present ones are needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    /// Any single scorer reaching its N-of-M condition starts the event (more sensitive).
    #[default]
    Any,
    /// Every scorer present in the window must reach its condition (fewer false alarms).
    All,
}

/// Decision settings of one monitor (`[monitor.decide]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideConfig {
    /// Windows above threshold needed (N) ...
    #[serde(default = "default_trigger_n")]
    pub trigger_n: usize,
    /// ... among the last M windows to start an event.
    #[serde(default = "default_trigger_m")]
    pub trigger_m: usize,
    /// Release level = threshold * release_ratio; must be in (0, 1].
    #[serde(default = "default_release_ratio")]
    pub release_ratio: f64,
    /// Seconds of stream time every score must stay below its release level to end an event.
    #[serde(default = "default_release_after")]
    pub release_after: f64,
    /// `any` or `all` scorers must trigger.
    #[serde(default)]
    pub require: Require,
    /// If set, an `ongoing` update is emitted every this many seconds of an open event.
    #[serde(default)]
    pub ongoing_every: Option<f64>,
}

fn default_trigger_n() -> usize {
    3
}
fn default_trigger_m() -> usize {
    5
}
fn default_release_ratio() -> f64 {
    0.8
}
fn default_release_after() -> f64 {
    5.0
}

impl Default for DecideConfig {
    fn default() -> Self {
        Self {
            trigger_n: default_trigger_n(),
            trigger_m: default_trigger_m(),
            release_ratio: default_release_ratio(),
            release_after: default_release_after(),
            require: Require::Any,
            ongoing_every: None,
        }
    }
}

/// A decision setting that cannot work; names the key so the user can fix the config.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("decision setting `{key}` = {value}: {reason}")]
pub struct DecideConfigError {
    pub key: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl DecideConfig {
    /// Checks every setting; the first bad one is reported by key.
    pub fn validate(&self) -> Result<(), DecideConfigError> {
        let bad = |key, value: String, reason| Err(DecideConfigError { key, value, reason });
        if self.trigger_n == 0 {
            return bad("trigger_n", "0".into(), "must be at least 1");
        }
        if self.trigger_m < self.trigger_n {
            return bad(
                "trigger_m",
                self.trigger_m.to_string(),
                "must be at least trigger_n (N of the last M windows)",
            );
        }
        if self.trigger_m > 10_000 {
            return bad(
                "trigger_m",
                self.trigger_m.to_string(),
                "must be at most 10000 windows",
            );
        }
        if !(self.release_ratio > 0.0 && self.release_ratio <= 1.0) {
            return bad(
                "release_ratio",
                self.release_ratio.to_string(),
                "must be in (0, 1]: the release level is threshold * release_ratio",
            );
        }
        if !(self.release_after.is_finite() && self.release_after >= 0.0) {
            return bad(
                "release_after",
                self.release_after.to_string(),
                "must be a finite number of seconds >= 0",
            );
        }
        if let Some(every) = self.ongoing_every
            && !(every.is_finite() && every > 0.0)
        {
            return bad(
                "ongoing_every",
                every.to_string(),
                "must be a positive number of seconds (or left out)",
            );
        }
        Ok(())
    }
}

/// One scorer's result for one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreSample<'a> {
    /// Scorer name, e.g. "centroid" or "knn".
    pub scorer: &'a str,
    pub score: f64,
    pub threshold: f64,
}

/// Everything the decider needs about one scored window.
#[derive(Debug, Clone, Copy)]
pub struct ScoredWindow<'a> {
    /// Window start and end in stream seconds.
    pub start: f64,
    pub end: f64,
    /// Wall-clock time corresponding to `end` (used to stamp events in RFC 3339).
    pub wall_end: SystemTime,
    /// Scores of the scorers that produced one for this window (any may be missing).
    pub scores: &'a [ScoreSample<'a>],
}

/// A point in time, in stream seconds and wall-clock RFC 3339 (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    pub stream_s: f64,
    pub wall: String,
}

/// Score statistics of one scorer over an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorerStats {
    pub peak: f64,
    pub mean: f64,
    /// Windows that contributed (windows in which the scorer was missing do not).
    pub windows: u64,
    /// Threshold in force at the last contributing window.
    pub threshold: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionKind {
    Started,
    Ongoing,
    Ended,
}

/// Why an event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndReason {
    /// Every score stayed below its release level for `release_after` seconds.
    Released,
    /// The monitor stopped (daemon shutdown or reload) while the event was open.
    Shutdown,
}

/// A start, update or end of an anomaly event of one monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionEvent {
    pub kind: DecisionKind,
    /// Stable for all messages of one event: `<monitor label>/<sequence>`.
    pub event_id: String,
    /// Monitor labels (monitor, machine, line, site).
    pub labels: BTreeMap<String, String>,
    pub start: Stamp,
    /// Set on `ended`: end of the last window at or above the release level.
    pub end: Option<Stamp>,
    /// Per-scorer statistics since the event's onset.
    pub scores: BTreeMap<String, ScorerStats>,
    /// Scorers that reached their N-of-M condition, in the order they fired.
    pub fired: Vec<String>,
    /// Set on `ended`.
    pub reason: Option<EndReason>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    start: f64,
    score: Option<f64>,
    threshold: f64,
    exceeded: bool,
}

#[derive(Debug, Default)]
struct ScorerState {
    history: VecDeque<Entry>,
}

impl ScorerState {
    fn triggered(&self, n: usize) -> bool {
        self.history.iter().filter(|e| e.exceeded).count() >= n
    }
}

#[derive(Debug, Clone, Copy)]
struct Acc {
    peak: f64,
    sum: f64,
    windows: u64,
    threshold: f64,
}

impl Acc {
    fn add(&mut self, score: f64, threshold: f64) {
        self.peak = self.peak.max(score);
        self.sum += score;
        self.windows += 1;
        self.threshold = threshold;
    }
}

#[derive(Debug)]
struct OpenEvent {
    id: String,
    start: Stamp,
    fired: Vec<String>,
    acc: BTreeMap<String, Acc>,
    /// End (stream s) of the last window in which a score was at or above its release level.
    last_loud: f64,
    last_ongoing: f64,
}

/// The hysteresis state machine of one monitor. Feed it every scored window in order.
#[derive(Debug)]
pub struct Decider {
    cfg: DecideConfig,
    labels: BTreeMap<String, String>,
    scorers: BTreeMap<String, ScorerState>,
    open: Option<OpenEvent>,
    seq: u64,
    /// Wall-clock anchor from the latest window: (stream s, wall time) of its end.
    anchor: Option<(f64, SystemTime)>,
}

impl Decider {
    /// `labels` are copied into every event; `monitor` names the event ids.
    pub fn new(
        cfg: DecideConfig,
        labels: BTreeMap<String, String>,
    ) -> Result<Self, DecideConfigError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            labels,
            scorers: BTreeMap::new(),
            open: None,
            seq: 0,
            anchor: None,
        })
    }

    /// True while an event is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Processes one window; returns the event message it caused, if any.
    pub fn push(&mut self, w: &ScoredWindow<'_>) -> Option<DecisionEvent> {
        self.anchor = Some((w.end, w.wall_end));
        let m = self.cfg.trigger_m;
        let n = self.cfg.trigger_n;
        // Histories: every known scorer gets an entry, missing ones as "not exceeded".
        for s in w.scores {
            self.scorers.entry(s.scorer.to_string()).or_default();
        }
        for (name, st) in self.scorers.iter_mut() {
            let sample = w.scores.iter().find(|s| s.scorer == name);
            let entry = match sample {
                Some(s) => Entry {
                    start: w.start,
                    score: Some(s.score),
                    threshold: s.threshold,
                    exceeded: s.score > s.threshold,
                },
                None => Entry {
                    start: w.start,
                    score: None,
                    threshold: f64::NAN,
                    exceeded: false,
                },
            };
            st.history.push_back(entry);
            while st.history.len() > m {
                st.history.pop_front();
            }
        }
        let triggered: Vec<String> = self
            .scorers
            .iter()
            .filter(|(_, st)| st.triggered(n))
            .map(|(k, _)| k.clone())
            .collect();

        match self.open.as_mut() {
            None => {
                let start_now = match self.cfg.require {
                    Require::Any => !triggered.is_empty(),
                    Require::All => {
                        !w.scores.is_empty()
                            && w.scores
                                .iter()
                                .all(|s| triggered.iter().any(|t| t == s.scorer))
                    }
                };
                if !start_now {
                    return None;
                }
                Some(self.start_event(triggered, w.end))
            }
            Some(ev) => {
                for s in w.scores {
                    ev.acc
                        .entry(s.scorer.to_string())
                        .or_insert(Acc {
                            peak: f64::NEG_INFINITY,
                            sum: 0.0,
                            windows: 0,
                            threshold: s.threshold,
                        })
                        .add(s.score, s.threshold);
                }
                for t in triggered {
                    if !ev.fired.contains(&t) {
                        ev.fired.push(t);
                    }
                }
                let loud = w
                    .scores
                    .iter()
                    .any(|s| s.score >= s.threshold * self.cfg.release_ratio);
                if loud {
                    ev.last_loud = w.end;
                } else if w.end - ev.last_loud >= self.cfg.release_after {
                    return Some(self.close(EndReason::Released));
                }
                if let Some(every) = self.cfg.ongoing_every
                    && w.end - ev.last_ongoing >= every
                {
                    ev.last_ongoing = w.end;
                    return Some(self.message(DecisionKind::Ongoing));
                }
                None
            }
        }
    }

    /// Closes an open event because the monitor stops; call on shutdown and reload.
    pub fn finish(&mut self) -> Option<DecisionEvent> {
        self.open.as_ref()?;
        // The machine was still loud up to the last window we saw: that is the honest end.
        if let (Some(ev), Some((t, _))) = (self.open.as_mut(), self.anchor) {
            ev.last_loud = t;
        }
        Some(self.close(EndReason::Shutdown))
    }

    fn start_event(&mut self, fired: Vec<String>, now: f64) -> DecisionEvent {
        // Onset: the earliest exceeding window still in the history of a firing scorer.
        let onset = fired
            .iter()
            .filter_map(|f| self.scorers.get(f))
            .flat_map(|st| st.history.iter().filter(|e| e.exceeded).map(|e| e.start))
            .fold(f64::INFINITY, f64::min);
        let onset = if onset.is_finite() { onset } else { now };
        let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
        for (name, st) in &self.scorers {
            for e in st.history.iter().filter(|e| e.start >= onset) {
                if let Some(score) = e.score {
                    acc.entry(name.clone())
                        .or_insert(Acc {
                            peak: f64::NEG_INFINITY,
                            sum: 0.0,
                            windows: 0,
                            threshold: e.threshold,
                        })
                        .add(score, e.threshold);
                }
            }
        }
        self.seq += 1;
        let monitor = self
            .labels
            .get("monitor")
            .map(String::as_str)
            .unwrap_or("monitor");
        self.open = Some(OpenEvent {
            id: format!("{monitor}/{}", self.seq),
            start: self.stamp(onset),
            fired,
            acc,
            last_loud: now,
            last_ongoing: now,
        });
        self.message(DecisionKind::Started)
    }

    fn close(&mut self, reason: EndReason) -> DecisionEvent {
        let mut msg = self.message(DecisionKind::Ended);
        if let Some(ev) = self.open.take() {
            msg.end = Some(self.stamp(ev.last_loud));
        }
        msg.reason = Some(reason);
        for st in self.scorers.values_mut() {
            st.history.clear();
        }
        msg
    }

    /// Builds a message from the open event (callers guarantee one is open).
    fn message(&self, kind: DecisionKind) -> DecisionEvent {
        let (id, start, fired, scores) = match &self.open {
            Some(ev) => (
                ev.id.clone(),
                ev.start.clone(),
                ev.fired.clone(),
                ev.acc
                    .iter()
                    .map(|(k, a)| {
                        (
                            k.clone(),
                            ScorerStats {
                                peak: a.peak,
                                mean: a.sum / a.windows.max(1) as f64,
                                windows: a.windows,
                                threshold: a.threshold,
                            },
                        )
                    })
                    .collect(),
            ),
            // Not reachable through the public API; an empty message is still well-formed.
            None => (String::new(), self.stamp(0.0), Vec::new(), BTreeMap::new()),
        };
        DecisionEvent {
            kind,
            event_id: id,
            labels: self.labels.clone(),
            start,
            end: None,
            scores,
            fired,
            reason: None,
        }
    }

    fn stamp(&self, stream_s: f64) -> Stamp {
        let wall = match self.anchor {
            Some((t, wall)) => {
                let d = t - stream_s;
                let off = Duration::from_secs_f64(d.abs().min(1e9));
                if d >= 0.0 {
                    wall.checked_sub(off).unwrap_or(wall)
                } else {
                    wall.checked_add(off).unwrap_or(wall)
                }
            }
            None => SystemTime::now(),
        };
        Stamp {
            stream_s,
            wall: humantime::format_rfc3339_millis(wall).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOP: f64 = 0.5;
    const WIN: f64 = 1.0;

    fn labels() -> BTreeMap<String, String> {
        [
            ("monitor", "press-1"),
            ("machine", "press"),
            ("line", "A"),
            ("site", "x"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    }

    fn cfg(n: usize, m: usize, release_after: f64) -> DecideConfig {
        DecideConfig {
            trigger_n: n,
            trigger_m: m,
            release_ratio: 0.8,
            release_after,
            require: Require::Any,
            ongoing_every: None,
        }
    }

    /// Feeds windows i = 0.. with the given (scorer, score) lists, threshold 1.0 for all.
    struct Feed {
        d: Decider,
        i: usize,
        base: SystemTime,
    }

    impl Feed {
        fn new(c: DecideConfig) -> Self {
            Self {
                d: Decider::new(c, labels()).unwrap(),
                i: 0,
                base: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            }
        }
        fn push(&mut self, scores: &[(&str, f64)]) -> Option<DecisionEvent> {
            let samples: Vec<ScoreSample> = scores
                .iter()
                .map(|&(scorer, score)| ScoreSample {
                    scorer,
                    score,
                    threshold: 1.0,
                })
                .collect();
            let start = self.i as f64 * HOP;
            let end = start + WIN;
            self.i += 1;
            self.d.push(&ScoredWindow {
                start,
                end,
                wall_end: self.base + Duration::from_secs_f64(end),
                scores: &samples,
            })
        }
        /// Pushes the same window `k` times, collecting events.
        fn run(&mut self, k: usize, scores: &[(&str, f64)]) -> Vec<DecisionEvent> {
            (0..k).filter_map(|_| self.push(scores)).collect()
        }
    }

    #[test]
    fn validate_names_bad_keys() {
        let mut c = DecideConfig::default();
        assert!(c.validate().is_ok());
        c.trigger_n = 0;
        assert_eq!(c.validate().unwrap_err().key, "trigger_n");
        c.trigger_n = 4;
        c.trigger_m = 3;
        assert_eq!(c.validate().unwrap_err().key, "trigger_m");
        c.trigger_m = 5;
        c.release_ratio = 1.5;
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "release_ratio");
        assert!(e.to_string().contains("release_ratio"), "{e}");
        c.release_ratio = 0.8;
        c.release_after = f64::NAN;
        assert_eq!(c.validate().unwrap_err().key, "release_after");
        c.release_after = 1.0;
        c.ongoing_every = Some(0.0);
        assert_eq!(c.validate().unwrap_err().key, "ongoing_every");
        assert!(Decider::new(c, labels()).is_err());
    }

    #[test]
    fn config_rejects_unknown_keys_and_parses_require() {
        let c: DecideConfig = toml::from_str("trigger_n = 2\nrequire = \"all\"").unwrap();
        assert_eq!(c.trigger_n, 2);
        assert_eq!(c.require, Require::All);
        let e = toml::from_str::<DecideConfig>("trigger_x = 2").unwrap_err();
        assert!(e.to_string().contains("trigger_x"), "{e}");
    }

    #[test]
    fn starts_on_n_of_m_not_before() {
        let mut f = Feed::new(cfg(3, 5, 2.0));
        // Two exceeding windows among quiet ones: not enough.
        assert!(f.push(&[("centroid", 2.0)]).is_none());
        assert!(f.push(&[("centroid", 0.1)]).is_none());
        assert!(f.push(&[("centroid", 2.0)]).is_none());
        assert!(f.push(&[("centroid", 0.1)]).is_none());
        // Third exceedance within the last five windows starts the event.
        let ev = f.push(&[("centroid", 3.0)]).expect("event starts");
        assert_eq!(ev.kind, DecisionKind::Started);
        assert_eq!(ev.fired, vec!["centroid".to_string()]);
        assert_eq!(ev.labels.get("machine").unwrap(), "press");
        // Onset is the first exceeding window still in the history (window 0).
        assert_eq!(ev.start.stream_s, 0.0);
        assert_eq!(ev.start.wall, "2023-11-14T22:13:20.000Z");
        let s = &ev.scores["centroid"];
        assert_eq!(s.peak, 3.0);
        assert_eq!(s.windows, 5);
        assert!((s.mean - (2.0 + 0.1 + 2.0 + 0.1 + 3.0) / 5.0).abs() < 1e-12);
        assert!(f.d.is_open());
    }

    #[test]
    fn exceedances_spread_wider_than_m_do_not_start() {
        let mut f = Feed::new(cfg(3, 5, 2.0));
        for _ in 0..20 {
            assert!(f.push(&[("centroid", 2.0)]).is_none());
            assert!(f.push(&[("centroid", 0.1)]).is_none());
            assert!(f.push(&[("centroid", 0.1)]).is_none());
        }
    }

    #[test]
    fn equal_to_threshold_is_not_exceeding() {
        let mut f = Feed::new(cfg(1, 1, 2.0));
        assert!(f.run(10, &[("centroid", 1.0)]).is_empty());
        assert_eq!(f.run(1, &[("centroid", 1.0001)]).len(), 1);
    }

    #[test]
    fn ends_after_release_time_below_release_level() {
        let mut f = Feed::new(cfg(2, 3, 2.0));
        let evs = f.run(4, &[("centroid", 2.0)]);
        assert_eq!(evs.len(), 1);
        // Below threshold but above release level (0.8): still loud, stays open forever.
        assert!(f.run(40, &[("centroid", 0.9)]).is_empty());
        assert!(f.d.is_open());
        // Below the release level: needs 2 s of stream time = 4 hops.
        let last_loud_end = (f.i - 1) as f64 * HOP + WIN;
        assert!(f.run(3, &[("centroid", 0.5)]).is_empty());
        let ev = f.push(&[("centroid", 0.5)]).expect("released after 2 s");
        assert_eq!(ev.kind, DecisionKind::Ended);
        assert_eq!(ev.reason, Some(EndReason::Released));
        assert_eq!(ev.end.as_ref().unwrap().stream_s, last_loud_end);
        assert_eq!(ev.event_id, evs[0].event_id);
        assert_eq!(ev.scores["centroid"].peak, 2.0);
        assert!(!f.d.is_open());
        // Quiet afterwards: nothing more.
        assert!(f.run(20, &[("centroid", 0.5)]).is_empty());
    }

    #[test]
    fn flapping_dips_do_not_end_the_event() {
        let mut f = Feed::new(cfg(2, 3, 2.0));
        assert_eq!(f.run(3, &[("centroid", 2.0)]).len(), 1);
        // Dips of 1.5 s (3 hops) below the release level, shorter than 2 s, repeat.
        for _ in 0..10 {
            assert!(f.run(3, &[("centroid", 0.1)]).is_empty());
            assert!(f.run(1, &[("centroid", 2.0)]).is_empty());
        }
        assert!(f.d.is_open());
    }

    #[test]
    fn no_immediate_restart_after_release() {
        let mut f = Feed::new(cfg(1, 10, 0.0));
        assert_eq!(f.run(1, &[("centroid", 2.0)]).len(), 1);
        let ended = f.run(1, &[("centroid", 0.1)]);
        assert_eq!(ended[0].kind, DecisionKind::Ended);
        // The exceedance still in the 10-window history must not restart the event.
        assert!(f.run(5, &[("centroid", 0.1)]).is_empty());
        let again = f.run(1, &[("centroid", 2.0)]);
        assert_eq!(again[0].kind, DecisionKind::Started);
        assert_ne!(again[0].event_id, ended[0].event_id);
    }

    #[test]
    fn missing_scorer_counts_as_not_exceeded() {
        let mut f = Feed::new(cfg(3, 4, 2.0));
        assert!(f.push(&[("centroid", 0.1), ("knn", 2.0)]).is_none());
        assert!(f.push(&[("centroid", 0.1), ("knn", 2.0)]).is_none());
        // k-NN degraded for a while: its old exceedances age out.
        assert!(f.run(4, &[("centroid", 0.1)]).is_empty());
        assert!(f.push(&[("centroid", 0.1), ("knn", 2.0)]).is_none());
        assert!(f.push(&[("centroid", 0.1), ("knn", 2.0)]).is_none());
        let ev = f.push(&[("centroid", 0.1), ("knn", 2.0)]).unwrap();
        assert_eq!(ev.fired, vec!["knn".to_string()]);
        assert_eq!(ev.scores["knn"].windows, 3);
    }

    #[test]
    fn require_all_needs_every_present_scorer() {
        let mut c = cfg(2, 3, 1.0);
        c.require = Require::All;
        let mut f = Feed::new(c);
        assert!(f.run(5, &[("centroid", 2.0), ("knn", 0.1)]).is_empty());
        // Both above: starts once both reach 2 of 3.
        assert!(f.push(&[("centroid", 2.0), ("knn", 2.0)]).is_none());
        let ev = f.push(&[("centroid", 2.0), ("knn", 2.0)]).unwrap();
        assert_eq!(ev.fired, vec!["centroid".to_string(), "knn".to_string()]);
        // With k-NN missing, centroid alone satisfies "all present".
        let mut c = cfg(2, 3, 1.0);
        c.require = Require::All;
        let mut f = Feed::new(c);
        assert_eq!(f.run(2, &[("centroid", 2.0)]).len(), 1);
    }

    #[test]
    fn second_scorer_joins_an_open_event() {
        let mut f = Feed::new(cfg(2, 3, 2.0));
        let evs = f.run(2, &[("centroid", 2.0), ("knn", 0.5)]);
        assert_eq!(evs[0].fired, vec!["centroid".to_string()]);
        // k-NN now fires too, during the same event: no second start.
        assert!(f.run(3, &[("centroid", 2.0), ("knn", 3.0)]).is_empty());
        let end = f.run(10, &[("centroid", 0.1), ("knn", 0.1)]);
        assert_eq!(end.len(), 1);
        assert_eq!(
            end[0].fired,
            vec!["centroid".to_string(), "knn".to_string()]
        );
        assert_eq!(end[0].scores["knn"].peak, 3.0);
        assert_eq!(end[0].scores["centroid"].peak, 2.0);
    }

    #[test]
    fn open_event_is_closed_on_shutdown() {
        let mut f = Feed::new(cfg(1, 1, 2.0));
        assert!(f.d.finish().is_none(), "nothing open, nothing to close");
        f.run(3, &[("centroid", 2.0)]);
        let ev = f.d.finish().expect("open event closed");
        assert_eq!(ev.kind, DecisionKind::Ended);
        assert_eq!(ev.reason, Some(EndReason::Shutdown));
        assert_eq!(ev.end.unwrap().stream_s, 2.0 * HOP + WIN);
        assert!(f.d.finish().is_none());
    }

    #[test]
    fn ongoing_updates_when_configured() {
        let mut c = cfg(1, 1, 2.0);
        c.ongoing_every = Some(2.0);
        let mut f = Feed::new(c);
        let evs = f.run(9, &[("centroid", 2.0)]);
        let kinds: Vec<_> = evs.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                DecisionKind::Started,
                DecisionKind::Ongoing,
                DecisionKind::Ongoing
            ]
        );
    }

    #[test]
    fn serializes_with_lowercase_kinds() {
        let mut f = Feed::new(cfg(1, 1, 0.0));
        f.run(1, &[("centroid", 2.0)]);
        let ev = f.run(1, &[("centroid", 0.0)]).remove(0);
        let j = serde_json::to_value(&ev).unwrap();
        assert_eq!(j["kind"], "ended");
        assert_eq!(j["reason"], "released");
        let back: DecisionEvent = serde_json::from_value(j).unwrap();
        assert_eq!(back, ev);
    }
}
