//! Turning a stream of per-window scores into anomaly events, with hysteresis.
//!
//! A single window above threshold is not an event: machines clank, doors slam. Two rules
//! start an event, both on levels learned from normal audio (`score::threshold` owns them):
//! - **sustained** (`n_of_m`): a scorer's score exceeds its threshold in `trigger_n` of its last
//!   `trigger_m` windows;
//! - **transient**: one window of a scorer exceeds its *transient level*, which normal audio
//!   reaches about once in a million windows. An impact or a squeal is then reported from the
//!   window that holds it, without waiting for N of M (`transient = false` turns it off).
//!   Besides the embedding scorers, the *impulse* scorer (`score::impulse`: loudest 10 ms of
//!   the window against its median 10 ms, in dB) feeds this rule only: its samples are not
//!   `sustained`, so they never join N of M. It exists because a 1 s embedding barely moves
//!   for a 50 ms knock, while the impulse value jumps by tens of dB.
//!
//! **Sound onsets are not transients.** A window that overlaps the end of a window without
//! signal (a window with no scores at all: the no-signal gate held it back), or that starts
//! less than half a window after that end, holds the machine starting up or the edge between
//! silence and sound: by construction it is unlike any normal window, and embeddings of
//! partly silent windows score high. Such *onset windows* can start no event by the transient
//! rule and count as "not exceeded" towards N of M; inside an open event (the sound stopped
//! and came back before it released) they neither hold it open nor count in its statistics.
//! (Seen live: with a profile learned from
//! few clips, both events of a test fired on the first window after `signal_back`, 10 s
//! before the faults, and then held open.) The cost: a fault already present when the machine
//! starts is found about a window later.
//!
//! An event *ends* once, for `release_after` seconds of stream time, no window exceeded its
//! threshold and the median of each scorer's scores over those seconds is below its release
//! level (the score 90 % of normal windows stay under). Normal audio meets this almost at once
//! (a stray window above the release level does not hold an event open), while a fault that
//! keeps scores high, even if it dips now and then, does.
//!
//! Rules in detail (each one is a unit test below):
//! - Each scorer ("centroid", "knn", ...) keeps its own N-of-M history. A window in which a
//!   known scorer is missing (k-NN degraded, or no signal) counts as "not exceeded" for it:
//!   missing data is not evidence of an anomaly, and old evidence must not combine with new
//!   across a gap.
//! - `require = "any"`: one triggered scorer starts the event. `require = "all"`: every scorer
//!   present in the window must be triggered (a scorer that is missing is not required, so a
//!   degraded index does not blind the monitor). The transient rule needs one scorer.
//! - While an event is open, a scorer that reaches its own N-of-M condition joins `fired`.
//! - **Onset** (`start`): the middle of the first window of the triggering run. The run is the
//!   exceeding windows that lead up to the triggering one, allowing single non-exceeding windows
//!   in between; two quiet windows in a row end it, so a stray exceedance before the run does
//!   not pull the onset earlier. The onset lies inside that first window, so its middle is
//!   within window/2 of it (plus a hop when the first window that heard the fault did not
//!   exceed).
//! - **detected**: the end of the window whose score started the event, and the time the
//!   decision was taken.
//! - **end**: the end of the last window above its threshold, i.e. when the fault was last heard,
//!   not when we became sure it is gone.
//! - After an event ends the histories are cleared, so the same evidence cannot start a second
//!   event at once.
//! - [`Decider::finish`] closes an open event with reason `shutdown`, so an event file never
//!   holds a start without an end after a clean stop.
//! - Event ids (used as fingerprints) hash the monitor, the onset's wall time, a per-process
//!   random nonce and a process-wide sequence number: unique across restarts and reloads, and
//!   the same in every message of one event.
//!
//! Times: every window carries its stream seconds and the wall-clock times the monitor's clock
//! mapped them to; this module only formats them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    /// Release level = threshold * release_ratio, only for profiles learned before release
    /// levels were calibrated; must be in (0, 1].
    #[serde(default = "default_release_ratio")]
    pub release_ratio: f64,
    /// Seconds of stream time with no exceedance and medians below the release levels that
    /// end an event.
    #[serde(default = "default_release_after")]
    pub release_after: f64,
    /// `any` or `all` scorers must trigger.
    #[serde(default)]
    pub require: Require,
    /// If set, an `ongoing` update is emitted every this many seconds of an open event.
    #[serde(default)]
    pub ongoing_every: Option<f64>,
    /// Start an event on a single window above the transient level (profiles learned before
    /// transient levels existed have none, and then this does nothing).
    #[serde(default = "default_true")]
    pub transient: bool,
    /// Whether "no signal" (input below the profile's level floor: the machine or the device
    /// is off) is normal for this machine. If true it is reported as information and
    /// `/healthz` stays healthy; if false it is an operational fault.
    #[serde(default)]
    pub no_signal_is_normal: bool,
    /// Seconds of windows below the level floor before "no signal" is declared.
    #[serde(default = "default_no_signal_after")]
    pub no_signal_after: f64,
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
fn default_true() -> bool {
    true
}
fn default_no_signal_after() -> f64 {
    2.0
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
            transient: true,
            no_signal_is_normal: false,
            no_signal_after: default_no_signal_after(),
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
        if !(self.release_after.is_finite() && (0.0..=86_400.0).contains(&self.release_after)) {
            return bad(
                "release_after",
                self.release_after.to_string(),
                "must be a finite number of seconds between 0 and 86400",
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
        if !(self.no_signal_after.is_finite() && (0.0..=86_400.0).contains(&self.no_signal_after)) {
            return bad(
                "no_signal_after",
                self.no_signal_after.to_string(),
                "must be a finite number of seconds between 0 and 86400",
            );
        }
        Ok(())
    }
}

/// One scorer's result for one window, with the levels it is judged against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreSample<'a> {
    /// Scorer name, e.g. "centroid" or "knn".
    pub scorer: &'a str,
    pub score: f64,
    /// Exceeding it counts towards N of M.
    pub threshold: f64,
    /// The median must come back below it for an event to end.
    pub release: f64,
    /// One window above it starts an event (None: no transient rule for this scorer).
    pub transient: Option<f64>,
    /// Whether this scorer takes part in N of M and in `require` (the embedding scorers). The
    /// impulse scorer is not: it only has the transient rule.
    pub sustained: bool,
}

impl<'a> ScoreSample<'a> {
    /// A sample with the levels of a profile threshold (the one place they are derived).
    pub fn from_threshold(
        scorer: &'a str,
        score: f64,
        t: &super::Threshold,
        cfg: &DecideConfig,
    ) -> Self {
        Self {
            scorer,
            score,
            threshold: f64::from(t.value),
            release: t.release_level(cfg.release_ratio),
            transient: if cfg.transient {
                t.transient_level()
            } else {
                None
            },
            sustained: true,
        }
    }

    /// The impulse scorer's sample (see the module docs): its level is its threshold, release
    /// and transient level at once, so another knock keeps an open event open and it never
    /// holds one open otherwise. `None` when the transient rule is off.
    pub fn impulse(
        score_db: f64,
        level: &super::impulse::ImpulseLevel,
        cfg: &DecideConfig,
    ) -> Option<Self> {
        cfg.transient.then_some(Self {
            scorer: super::impulse::IMPULSE,
            score: score_db,
            threshold: level.level_db,
            release: level.level_db,
            transient: Some(level.level_db),
            sustained: false,
        })
    }
}

/// Everything the decider needs about one scored window.
#[derive(Debug, Clone, Copy)]
pub struct ScoredWindow<'a> {
    /// Window start and end in stream seconds.
    pub start: f64,
    pub end: f64,
    /// Wall-clock times of `start` and `end`, from the monitor's clock.
    pub wall_start: SystemTime,
    pub wall_end: SystemTime,
    /// When this window was decided on (wall clock, or stream time for a fast replay).
    pub decided_at: SystemTime,
    /// Scores of the scorers that produced one for this window (any may be missing; none at
    /// all while there is no signal).
    pub scores: &'a [ScoreSample<'a>],
}

/// What the wall-clock strings of an event mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TimeBase {
    /// Real time: when the audio arrived (live devices, real-time replays).
    #[default]
    Wall,
    /// Stream time of a fast replay: seconds into the file, written as an offset from
    /// 1970-01-01T00:00:00Z (a fast replay has no wall time).
    Stream,
}

/// A point in time, in stream seconds and wall-clock RFC 3339 (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    pub stream_s: f64,
    pub wall: String,
}

impl Stamp {
    fn new(stream_s: f64, wall: SystemTime) -> Self {
        Self {
            stream_s,
            wall: humantime::format_rfc3339_millis(wall).to_string(),
        }
    }
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

/// Which rule started an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// N of the last M windows above threshold (a sustained change).
    NOfM,
    /// One window above the transient level (an impact, a squeal).
    Transient,
}

/// Why an event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndReason {
    /// No exceedance and medians below the release levels for `release_after` seconds.
    Released,
    /// The monitor stopped (daemon shutdown or reload) while the event was open.
    Shutdown,
    /// earshot stopped without ending the event (crash, SIGKILL, power loss); the next start
    /// ended it (see `alert::open`). Its end time is that start, or the last instant known.
    Interrupted,
}

/// A start, update or end of an anomaly event of one monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionEvent {
    pub kind: DecisionKind,
    /// Stable for all messages of one event and unique across restarts:
    /// `<monitor>/<16 hex digits>` (see the module docs).
    pub event_id: String,
    /// Monitor labels (monitor, machine, line, site).
    pub labels: BTreeMap<String, String>,
    /// Estimated onset (middle of the first window of the triggering run).
    pub start: Stamp,
    /// When the event was detected: end of the triggering window, wall time of the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected: Option<Stamp>,
    /// Set on `ended`: end of the last window above its threshold.
    pub end: Option<Stamp>,
    /// Per-scorer statistics since the event's onset.
    pub scores: BTreeMap<String, ScorerStats>,
    /// Scorers that reached their N-of-M condition (or transient level), in firing order.
    pub fired: Vec<String>,
    /// The rule that started the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    /// What the wall-clock strings mean.
    #[serde(default)]
    pub time_base: TimeBase,
    /// Set on `ended`.
    pub reason: Option<EndReason>,
    /// What the event sounds like among the sound catalog's labelled sounds. The decider
    /// never sets it: the daemon's decision stage looks the event up when it fires and copies
    /// the answer into every later message of the event (see `daemon::monitor::decision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sounds_like: Option<crate::catalog::known::SoundsLike>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    start: f64,
    end: f64,
    wall_start: SystemTime,
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

    /// First window of the run that ends at the latest exceedance: walk back through
    /// exceedances, tolerating single quiet windows; two quiet windows in a row end the run.
    fn run_start(&self) -> Option<&Entry> {
        let mut it = self.history.iter().rev().skip_while(|e| !e.exceeded);
        let mut first = it.next()?;
        let mut quiet = 0;
        for e in it {
            if e.exceeded {
                first = e;
                quiet = 0;
            } else {
                quiet += 1;
                if quiet >= 2 {
                    break;
                }
            }
        }
        Some(first)
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
    fn new(threshold: f64) -> Self {
        Acc {
            peak: f64::NEG_INFINITY,
            sum: 0.0,
            windows: 0,
            threshold,
        }
    }

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
    detected: Stamp,
    rule: Rule,
    fired: Vec<String>,
    acc: BTreeMap<String, Acc>,
    /// End (stream s, wall) of the last window in which a score exceeded its threshold.
    last_exceed: (f64, SystemTime),
    last_ongoing: f64,
    /// Per scorer, (window end, score, release level) of the last `release_after` seconds.
    recent: BTreeMap<String, VecDeque<(f64, f64, f64)>>,
}

/// The hysteresis state machine of one monitor. Feed it every scored window in order.
#[derive(Debug)]
pub struct Decider {
    cfg: DecideConfig,
    labels: BTreeMap<String, String>,
    scorers: BTreeMap<String, ScorerState>,
    open: Option<OpenEvent>,
    time_base: TimeBase,
    /// End of the latest window (stream s, wall), for closing on shutdown.
    last_seen: Option<(f64, SystemTime)>,
    /// End (stream s) of the latest window without signal (no scores), for onset windows.
    last_silent_end: Option<f64>,
}

/// A random number drawn once per process: event ids of two runs never collide.
fn process_nonce() -> u64 {
    static NONCE: OnceLock<u64> = OnceLock::new();
    *NONCE.get_or_init(rand::random::<u64>)
}

/// The id of a new event (see the module docs).
fn new_event_id(monitor: &str, onset_wall: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut h = Sha256::new();
    h.update(monitor.as_bytes());
    h.update([0]);
    h.update(onset_wall.as_bytes());
    h.update([0]);
    h.update(process_nonce().to_le_bytes());
    h.update(seq.to_le_bytes());
    let digest = h.finalize();
    format!("{monitor}/{}", hex::encode(&digest[..8]))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

impl Decider {
    /// `labels` are copied into every event; `labels["monitor"]` names the event ids.
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
            time_base: TimeBase::Wall,
            last_seen: None,
            last_silent_end: None,
        })
    }

    /// Declares what the wall times of the windows mean (set by the monitor's clock).
    pub fn set_time_base(&mut self, tb: TimeBase) {
        self.time_base = tb;
    }

    /// The settings in force.
    pub fn config(&self) -> &DecideConfig {
        &self.cfg
    }

    /// True while an event is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Processes one window; returns the event message it caused, if any.
    pub fn push(&mut self, w: &ScoredWindow<'_>) -> Option<DecisionEvent> {
        self.last_seen = Some((w.end, w.wall_end));
        let m = self.cfg.trigger_m;
        let n = self.cfg.trigger_n;
        if w.scores.is_empty() {
            self.last_silent_end = Some(w.end);
        }
        let onset = self.is_onset_window(w);
        // Histories: every known sustained scorer gets an entry, missing ones (and all in an
        // onset window) as "not exceeded".
        for s in w.scores.iter().filter(|s| s.sustained) {
            self.scorers.entry(s.scorer.to_string()).or_default();
        }
        for (name, st) in self.scorers.iter_mut() {
            let sample = w.scores.iter().find(|s| s.scorer == name && s.sustained);
            st.history.push_back(Entry {
                start: w.start,
                end: w.end,
                wall_start: w.wall_start,
                score: sample.map(|s| s.score),
                threshold: sample.map_or(f64::NAN, |s| s.threshold),
                exceeded: !onset && sample.is_some_and(|s| s.score > s.threshold),
            });
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
        let transient: Vec<String> = w
            .scores
            .iter()
            .filter(|_| !onset)
            .filter(|s| s.transient.is_some_and(|t| s.score > t))
            .map(|s| s.scorer.to_string())
            .collect();

        let Some(ev) = self.open.as_mut() else {
            if !transient.is_empty() {
                return Some(self.start_event(Rule::Transient, transient, w));
            }
            let start_now = match self.cfg.require {
                Require::Any => !triggered.is_empty(),
                Require::All => {
                    let mut present = w.scores.iter().filter(|s| s.sustained).peekable();
                    present.peek().is_some()
                        && present.all(|s| triggered.iter().any(|t| t == s.scorer))
                }
            };
            if !start_now {
                return None;
            }
            return Some(self.start_event(Rule::NOfM, triggered, w));
        };

        // An onset window inside an open event (the sound stopped and came back before the
        // event released) tells nothing of the machine: it neither holds the event open nor
        // counts in its statistics, as it starts nothing outside one.
        let scores = if onset { &[][..] } else { w.scores };
        for s in scores {
            ev.acc
                .entry(s.scorer.to_string())
                .or_insert(Acc::new(s.threshold))
                .add(s.score, s.threshold);
        }
        for t in triggered.into_iter().chain(transient) {
            if !ev.fired.contains(&t) {
                ev.fired.push(t);
            }
        }
        let horizon = w.end - self.cfg.release_after;
        for s in scores {
            ev.recent
                .entry(s.scorer.to_string())
                .or_default()
                .push_back((w.end, s.score, s.release));
        }
        for q in ev.recent.values_mut() {
            // Keep the windows ending within the last `release_after` s (always this one).
            while q
                .front()
                .is_some_and(|(end, _, _)| *end <= horizon && *end < w.end)
            {
                q.pop_front();
            }
        }
        let exceeded = scores.iter().any(|s| s.score > s.threshold);
        if exceeded {
            ev.last_exceed = (w.end, w.wall_end);
        } else if w.end - ev.last_exceed.0 >= self.cfg.release_after - 1e-9 {
            let calm = ev.recent.values().all(|q| {
                let release = q.back().map_or(f64::INFINITY, |r| r.2);
                let mut scores: Vec<f64> = q.iter().map(|r| r.1).collect();
                scores.is_empty() || median(&mut scores) < release
            });
            if calm {
                return Some(self.close(EndReason::Released));
            }
        }
        if let Some(every) = self.cfg.ongoing_every
            && w.end - ev.last_ongoing >= every
        {
            ev.last_ongoing = w.end;
            return Some(self.message(DecisionKind::Ongoing));
        }
        None
    }

    /// An onset window (see the module docs): it overlaps the latest window without signal,
    /// or starts less than half a window after its end.
    fn is_onset_window(&self, w: &ScoredWindow<'_>) -> bool {
        !w.scores.is_empty()
            && self
                .last_silent_end
                .is_some_and(|e| w.start < e + 0.5 * (w.end - w.start))
    }

    /// Closes an open event because the monitor stops; call on shutdown and reload.
    pub fn finish(&mut self) -> Option<DecisionEvent> {
        self.open.as_ref()?;
        // The machine was still abnormal up to the last window we saw: that is the honest end.
        if let (Some(ev), Some(seen)) = (self.open.as_mut(), self.last_seen) {
            ev.last_exceed = seen;
        }
        Some(self.close(EndReason::Shutdown))
    }

    fn start_event(
        &mut self,
        rule: Rule,
        fired: Vec<String>,
        w: &ScoredWindow<'_>,
    ) -> DecisionEvent {
        // Onset: the first window of the triggering run of a firing scorer (for a transient,
        // the window itself).
        let onset: Option<Entry> = match rule {
            Rule::Transient => None,
            Rule::NOfM => fired
                .iter()
                .filter_map(|f| self.scorers.get(f))
                .filter_map(|st| st.run_start().copied())
                .min_by(|a, b| a.start.total_cmp(&b.start)),
        };
        let (first_start, first_end, first_wall) = match onset {
            Some(e) => (e.start, e.end, e.wall_start),
            None => (w.start, w.end, w.wall_start),
        };
        let half = ((first_end - first_start) / 2.0).max(0.0);
        let start = Stamp::new(
            first_start + half,
            first_wall + Duration::from_secs_f64(half),
        );
        let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
        for (name, st) in &self.scorers {
            for e in st.history.iter().filter(|e| e.start >= first_start) {
                if let Some(score) = e.score {
                    acc.entry(name.clone())
                        .or_insert(Acc::new(e.threshold))
                        .add(score, e.threshold);
                }
            }
        }
        // Scorers without N-of-M history (impulse) count from the window that started it.
        for s in w.scores.iter().filter(|s| !s.sustained) {
            acc.entry(s.scorer.to_string())
                .or_insert(Acc::new(s.threshold))
                .add(s.score, s.threshold);
        }
        let monitor = self
            .labels
            .get("monitor")
            .map(String::as_str)
            .unwrap_or("monitor");
        let recent = w
            .scores
            .iter()
            .map(|s| {
                (
                    s.scorer.to_string(),
                    VecDeque::from([(w.end, s.score, s.release)]),
                )
            })
            .collect();
        self.open = Some(OpenEvent {
            id: new_event_id(monitor, &start.wall),
            start,
            detected: Stamp::new(w.end, w.decided_at),
            rule,
            fired,
            acc,
            last_exceed: (w.end, w.wall_end),
            last_ongoing: w.end,
            recent,
        });
        self.message(DecisionKind::Started)
    }

    fn close(&mut self, reason: EndReason) -> DecisionEvent {
        let mut msg = self.message(DecisionKind::Ended);
        if let Some(ev) = self.open.take() {
            msg.end = Some(Stamp::new(ev.last_exceed.0, ev.last_exceed.1));
        }
        msg.reason = Some(reason);
        for st in self.scorers.values_mut() {
            st.history.clear();
        }
        msg
    }

    /// Builds a message from the open event (callers guarantee one is open).
    fn message(&self, kind: DecisionKind) -> DecisionEvent {
        let Some(ev) = &self.open else {
            // Not reachable through the public API; an empty message is still well-formed.
            return DecisionEvent {
                kind,
                event_id: String::new(),
                labels: self.labels.clone(),
                start: Stamp::new(0.0, SystemTime::UNIX_EPOCH),
                detected: None,
                end: None,
                scores: BTreeMap::new(),
                fired: Vec::new(),
                rule: None,
                time_base: self.time_base,
                reason: None,
                sounds_like: None,
            };
        };
        DecisionEvent {
            kind,
            event_id: ev.id.clone(),
            labels: self.labels.clone(),
            start: ev.start.clone(),
            detected: Some(ev.detected.clone()),
            end: None,
            scores: ev
                .acc
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
            fired: ev.fired.clone(),
            rule: Some(ev.rule),
            time_base: self.time_base,
            reason: None,
            sounds_like: None,
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
            ..DecideConfig::default()
        }
    }

    /// Feeds windows i = 0.. with the given (scorer, score) lists: threshold 1.0, release
    /// level 0.8 and transient level `transient` (None: off) for all.
    struct Feed {
        d: Decider,
        i: usize,
        base: SystemTime,
        transient: Option<f64>,
    }

    impl Feed {
        fn new(c: DecideConfig) -> Self {
            Self {
                d: Decider::new(c, labels()).unwrap(),
                i: 0,
                base: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                transient: None,
            }
        }
        fn push(&mut self, scores: &[(&str, f64)]) -> Option<DecisionEvent> {
            let samples: Vec<ScoreSample> = scores
                .iter()
                .map(|&(scorer, score)| ScoreSample {
                    scorer,
                    score,
                    threshold: 1.0,
                    release: 0.8,
                    transient: self.transient,
                    sustained: true,
                })
                .collect();
            self.push_samples(&samples)
        }
        fn push_samples(&mut self, samples: &[ScoreSample<'_>]) -> Option<DecisionEvent> {
            let start = self.i as f64 * HOP;
            let end = start + WIN;
            self.i += 1;
            let wall_end = self.base + Duration::from_secs_f64(end);
            self.d.push(&ScoredWindow {
                start,
                end,
                wall_start: self.base + Duration::from_secs_f64(start),
                wall_end,
                decided_at: wall_end,
                scores: samples,
            })
        }
        /// Stream seconds of the end of the last window pushed.
        fn last_end(&self) -> f64 {
            (self.i - 1) as f64 * HOP + WIN
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
        // The run (exceedances with single quiet windows between) begins at window 0: the
        // onset is its middle.
        assert_eq!(ev.start.stream_s, 0.5);
        assert_eq!(ev.start.wall, "2023-11-14T22:13:20.500Z");
        assert_eq!(ev.rule, Some(Rule::NOfM));
        let det = ev.detected.as_ref().unwrap();
        assert_eq!(det.stream_s, 4.0 * HOP + WIN);
        assert_eq!(det.wall, "2023-11-14T22:13:23.000Z");
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
    fn ends_after_release_time_with_medians_below_release_level() {
        let mut f = Feed::new(cfg(2, 3, 2.0));
        let evs = f.run(4, &[("centroid", 2.0)]);
        assert_eq!(evs.len(), 1);
        let last_exceed_end = f.last_end();
        // Below threshold but above release level (0.8): still abnormal, stays open.
        assert!(f.run(40, &[("centroid", 0.9)]).is_empty());
        assert!(f.d.is_open());
        // The median over the last 2 s (4 windows) falls below 0.8 with the second quiet one.
        assert!(f.push(&[("centroid", 0.5)]).is_none());
        let ev = f.push(&[("centroid", 0.5)]).expect("released");
        assert_eq!(ev.kind, DecisionKind::Ended);
        assert_eq!(ev.reason, Some(EndReason::Released));
        // The end is when the fault was last heard: the last window above threshold.
        assert_eq!(ev.end.as_ref().unwrap().stream_s, last_exceed_end);
        assert_eq!(ev.event_id, evs[0].event_id);
        assert_eq!(ev.scores["centroid"].peak, 2.0);
        assert!(!f.d.is_open());
        // Quiet afterwards: nothing more.
        assert!(f.run(20, &[("centroid", 0.5)]).is_empty());
    }

    #[test]
    fn needs_release_after_seconds_without_exceedance() {
        let mut f = Feed::new(cfg(1, 1, 2.0));
        assert_eq!(f.run(1, &[("centroid", 2.0)]).len(), 1);
        let fault_end = f.last_end();
        // Clearly normal at once, but the event ends only 2 s of stream after the last
        // exceeding window.
        let mut ended = None;
        for _ in 0..10 {
            if let Some(e) = f.push(&[("centroid", 0.1)]) {
                ended = Some((f.last_end(), e));
                break;
            }
        }
        let (at, e) = ended.expect("ends");
        assert_eq!(at - fault_end, 2.0);
        assert_eq!(e.end.unwrap().stream_s, fault_end);
    }

    /// Normal audio's scores scatter around the release level: the old rule (every window
    /// below it for `release_after`) kept events open for minutes; the median rule ends it
    /// within `release_after` plus a few windows.
    #[test]
    fn noisy_normal_scores_still_end_the_event() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
        for trial in 0..50 {
            let mut f = Feed::new(cfg(3, 5, 5.0));
            assert_eq!(f.run(5, &[("centroid", 2.0)]).len(), 1);
            let fault_end = f.last_end();
            let mut ended_at = None;
            for _ in 0..200 {
                // Uniform on [0, 0.889): 90 % below 0.8, none above the threshold.
                let s = rng.random::<f64>() * 0.8 / 0.9;
                if f.push(&[("centroid", s)]).is_some() {
                    ended_at = Some(f.last_end());
                    break;
                }
            }
            let at = ended_at.unwrap_or_else(|| panic!("trial {trial}: never ended"));
            assert!(
                at - fault_end <= 5.0 + 2.0,
                "trial {trial}: ended {} s after the fault",
                at - fault_end
            );
        }
    }

    #[test]
    fn a_stray_exceedance_before_the_run_does_not_move_the_onset() {
        let mut f = Feed::new(cfg(3, 5, 2.0));
        assert!(f.run(10, &[("centroid", 0.1)]).is_empty());
        // Stray at window 10, two quiet windows, then the fault from window 13 on.
        assert!(f.push(&[("centroid", 1.5)]).is_none());
        assert!(f.run(2, &[("centroid", 0.1)]).is_empty());
        assert!(f.push(&[("centroid", 2.0)]).is_none());
        // 3 of the last 5 (the stray among them) trigger here ...
        let ev = f.push(&[("centroid", 2.0)]).expect("starts");
        // ... but the onset is the fault's first window (13), not the stray's (10).
        assert_eq!(ev.start.stream_s, 13.0 * HOP + WIN / 2.0);
        // A single quiet window inside a run does not cut it.
        let mut f = Feed::new(cfg(3, 5, 2.0));
        assert!(f.run(10, &[("centroid", 0.1)]).is_empty());
        assert!(f.push(&[("centroid", 2.0)]).is_none());
        assert!(f.push(&[("centroid", 0.1)]).is_none());
        assert!(f.push(&[("centroid", 2.0)]).is_none());
        let ev = f.push(&[("centroid", 2.0)]).expect("starts");
        assert_eq!(ev.start.stream_s, 10.0 * HOP + WIN / 2.0);
    }

    #[test]
    fn one_window_above_the_transient_level_starts_at_once() {
        let mut f = Feed::new(cfg(3, 5, 2.0));
        f.transient = Some(3.0);
        assert!(f.run(10, &[("centroid", 0.1)]).is_empty());
        // Above threshold but below the transient level: N of M still needed.
        assert!(f.push(&[("centroid", 2.5)]).is_none());
        assert!(f.run(4, &[("centroid", 0.1)]).is_empty());
        let ev = f
            .push(&[("centroid", 4.0)])
            .expect("transient fires at once");
        assert_eq!(ev.rule, Some(Rule::Transient));
        assert_eq!(ev.fired, vec!["centroid".to_string()]);
        assert_eq!(ev.start.stream_s, 15.0 * HOP + WIN / 2.0);
        assert_eq!(ev.detected.as_ref().unwrap().stream_s, 15.0 * HOP + WIN);
        // It ends release_after later, like any event.
        let ended = f.run(10, &[("centroid", 0.1)]);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].end.as_ref().unwrap().stream_s, 15.0 * HOP + WIN);
        // Off by configuration: the same window alone is not an event.
        let mut c = cfg(3, 5, 2.0);
        c.transient = false;
        let t = crate::score::Threshold {
            value: 1.0,
            target_far: 0.01,
            n: 100,
            method: "quantile".into(),
            calibration_far: 0.01,
            release: Some(0.75),
            release_quantile: Some(0.9),
            transient: Some(3.0),
            transient_far: Some(1e-6),
        };
        let s = ScoreSample::from_threshold("centroid", 4.0, &t, &c);
        assert_eq!(s.transient, None);
        assert_eq!(s.release, 0.75);
        c.transient = true;
        assert_eq!(
            ScoreSample::from_threshold("centroid", 4.0, &t, &c).transient,
            Some(3.0)
        );
    }

    /// The impulse scorer's sample for a level of 20 dB, with a centroid sample beside it.
    fn with_impulse(f: &mut Feed, centroid: f64, impulse_db: f64) -> Option<DecisionEvent> {
        let level = crate::score::impulse::ImpulseLevel {
            level_db: 20.0,
            far: 1e-6,
            windows: 1000,
            q90_db: 5.0,
            max_db: 12.0,
        };
        let imp = ScoreSample::impulse(impulse_db, &level, f.d.config()).unwrap();
        let c = ScoreSample {
            scorer: "centroid",
            score: centroid,
            threshold: 1.0,
            release: 0.8,
            transient: f.transient,
            sustained: true,
        };
        f.push_samples(&[c, imp])
    }

    #[test]
    fn an_impulse_above_its_level_starts_at_once_and_never_joins_n_of_m() {
        let mut f = Feed::new(cfg(3, 5, 2.0));
        // Impulse values below the level, however many: nothing (it has no N of M).
        for _ in 0..20 {
            assert!(with_impulse(&mut f, 0.1, 19.9).is_none());
        }
        // One knock: an event from this very window (window 20: 10.0 .. 11.0 s).
        let ev = with_impulse(&mut f, 0.1, 35.0).expect("impulse fires at once");
        assert_eq!(ev.rule, Some(Rule::Transient));
        assert_eq!(ev.fired, vec!["impulse".to_string()]);
        assert_eq!(ev.start.stream_s, 10.5);
        assert_eq!(ev.detected.as_ref().unwrap().stream_s, 11.0);
        // Knocks every second keep it open ...
        for _ in 0..5 {
            assert!(with_impulse(&mut f, 0.1, 5.0).is_none());
            assert!(with_impulse(&mut f, 0.1, 30.0).is_none());
        }
        let last_knock_end = f.last_end();
        // ... and it ends 2 s (release_after) after the last one.
        let mut ended = None;
        for _ in 0..10 {
            if let Some(e) = with_impulse(&mut f, 0.1, 5.0) {
                ended = Some((f.last_end(), e));
                break;
            }
        }
        let (at, e) = ended.expect("ends");
        assert_eq!(at - last_knock_end, 2.0);
        assert_eq!(e.end.unwrap().stream_s, last_knock_end);
        assert_eq!(e.scores["impulse"].peak, 35.0);
        // The transient rule off: the impulse scorer gives no sample at all.
        let mut c = cfg(3, 5, 2.0);
        c.transient = false;
        let level = crate::score::impulse::ImpulseLevel {
            level_db: 20.0,
            far: 1e-6,
            windows: 10,
            q90_db: 1.0,
            max_db: 2.0,
        };
        assert!(ScoreSample::impulse(35.0, &level, &c).is_none());
    }

    #[test]
    fn require_all_is_not_blocked_by_the_impulse_scorer() {
        let mut c = cfg(2, 3, 2.0);
        c.require = Require::All;
        let mut f = Feed::new(c);
        // Centroid reaches 2 of 3 at window 1; the impulse sample beside it (below its level,
        // never "triggered") must not be required.
        assert!(with_impulse(&mut f, 2.0, 5.0).is_none());
        let ev = with_impulse(&mut f, 2.0, 5.0).expect("centroid alone is all sustained");
        assert_eq!(ev.rule, Some(Rule::NOfM));
        assert_eq!(ev.fired, vec!["centroid".to_string()]);
    }

    /// Silence (windows without scores) ends at window 9 (4.5 .. 5.5 s). Windows 10 (5.0 s)
    /// and 11 (5.5 s) start before 5.5 + half a window: onset windows. Window 12 (6.0 s) is
    /// the first that can start an event.
    #[test]
    fn onset_windows_after_a_silence_start_nothing() {
        // Transient rule, embedding and impulse scorers alike.
        let mut f = Feed::new(cfg(3, 5, 2.0));
        f.transient = Some(3.0);
        assert!(f.run(10, &[]).is_empty());
        assert!(with_impulse(&mut f, 9.0, 40.0).is_none(), "window 10");
        assert!(with_impulse(&mut f, 9.0, 40.0).is_none(), "window 11");
        let ev = with_impulse(&mut f, 9.0, 40.0).expect("window 12 fires");
        assert_eq!(ev.rule, Some(Rule::Transient));
        assert_eq!(ev.start.stream_s, 6.5);
        // N of M: onset windows count as not exceeded, so 3 of 5 needs windows 12, 13, 14,
        // and the onset is window 12's middle (not window 10's).
        let mut f = Feed::new(cfg(3, 5, 2.0));
        assert!(f.run(10, &[]).is_empty());
        assert!(f.run(4, &[("centroid", 2.0)]).is_empty());
        let ev = f.push(&[("centroid", 2.0)]).expect("window 14 fires");
        assert_eq!(ev.rule, Some(Rule::NOfM));
        assert_eq!(ev.start.stream_s, 6.5);
        assert_eq!(ev.detected.as_ref().unwrap().stream_s, 8.0);
        // Without a silence before, the same windows fire at once (the rule is about onsets).
        let mut f = Feed::new(cfg(3, 5, 2.0));
        f.transient = Some(3.0);
        assert!(f.run(10, &[("centroid", 0.1)]).is_empty());
        assert!(with_impulse(&mut f, 0.1, 40.0).is_some());
    }

    /// The sound stops for a second while an event is open (less than `release_after`) and
    /// comes back with onset windows that score high: like the windows without signal before
    /// them they tell nothing of the machine, so they neither hold the event open nor become
    /// its peak.
    #[test]
    fn onset_windows_inside_an_open_event_do_not_hold_it() {
        let mut f = Feed::new(cfg(2, 3, 2.0));
        // Windows 0-2 exceed (the last ends at 2.0 s): the event starts at window 1.
        assert_eq!(f.run(3, &[("centroid", 2.0)]).len(), 1);
        // Windows 3-4 without signal (ends 2.5, 3.0 s): within release_after, still open.
        assert!(f.run(2, &[]).is_empty());
        assert!(f.d.is_open());
        // Windows 5-6 start before 3.0 + half a window: onset windows, scoring high. Window 6
        // ends 2.0 s after the last real exceedance: released there, ending at 2.0 s.
        assert!(f.push(&[("centroid", 9.0)]).is_none());
        let ev = f.push(&[("centroid", 9.0)]).expect("released at window 6");
        assert_eq!(ev.kind, DecisionKind::Ended);
        assert_eq!(ev.reason, Some(EndReason::Released));
        assert_eq!(f.last_end(), 4.0);
        assert_eq!(ev.end.as_ref().unwrap().stream_s, 2.0);
        assert_eq!(ev.scores["centroid"].peak, 2.0);
        // The same scores with no silence between are the fault going on: held open.
        let mut f = Feed::new(cfg(2, 3, 2.0));
        assert_eq!(f.run(3, &[("centroid", 2.0)]).len(), 1);
        assert!(f.run(4, &[("centroid", 9.0)]).is_empty());
        assert!(f.push(&[("centroid", 0.1)]).is_none());
        assert!(f.d.is_open());
    }

    #[test]
    fn windows_without_signal_end_an_open_event() {
        let mut f = Feed::new(cfg(2, 3, 2.0));
        assert_eq!(f.run(3, &[("centroid", 2.0)]).len(), 1);
        // No signal: the pipeline passes windows without scores.
        let ended = f.run(5, &[]);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].reason, Some(EndReason::Released));
        // And silence never starts one.
        assert!(f.run(50, &[]).is_empty());
    }

    #[test]
    fn event_ids_are_unique_across_deciders_and_stable_within_an_event() {
        let mut ids = std::collections::BTreeSet::new();
        for _ in 0..3 {
            // A new decider per "restart", with identical input and times.
            let mut f = Feed::new(cfg(1, 1, 0.0));
            let evs = f.run(2, &[("centroid", 2.0)]);
            let mut evs2 = f.run(1, &[("centroid", 0.1)]);
            evs2.insert(0, evs[0].clone());
            assert_eq!(evs2[0].event_id, evs2[1].event_id);
            assert!(evs2[0].event_id.starts_with("press-1/"));
            assert!(
                ids.insert(evs2[0].event_id.clone()),
                "id reused: {}",
                evs2[0].event_id
            );
            // A second event of the same decider gets a new id.
            let again = f.run(1, &[("centroid", 2.0)]);
            assert!(ids.insert(again[0].event_id.clone()));
        }
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
