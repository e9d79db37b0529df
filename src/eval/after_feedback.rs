//! The drop in false alarms after "that was normal", measured offline on held-back audio.
//!
//! Per machine, the normal test clips are split in two (sorted by path: the 1st, 3rd, ... are
//! the feedback half, the 2nd, 4th, ... are held back). Every event the daemon's rule raises
//! on the feedback half is marked normal the way `earshot feedback --normal` marks one: the
//! windows overlapping the event's span ([`crate::feedback::span_in_clip`],
//! [`crate::feedback::span_windows`]) join the normal memory ([`crate::feedback::with_normal`]:
//! k-NN rows and own centroids, thresholds untouched). The held-back half is then replayed
//! through the same decision path ([`crate::score::replay`]) before and after. Only events on
//! audio the feedback never saw count, so the figure says whether feedback generalises to the
//! next occurrence of a sound rather than whether it remembers the one it was given. The
//! anomalous clips are replayed before and after too: feedback that also silences real
//! faults is no improvement.

use crate::embed::file::WindowEmbedding;
use crate::feedback::{FeedbackError, raise_impulse, span_in_clip, span_windows, with_normal};
use crate::score::decide::{DecideConfig, DecideConfigError, DecisionKind};
use crate::score::replay::{Levels, replay, scored_windows, started};
use crate::score::{Profile, Scorer};
use serde::Serialize;
use std::path::Path;

/// How the split is described in reports.
pub const SPLIT: &str = "per machine, normal test clips sorted by path: the 1st, 3rd, ... are the feedback half (each of their events marked normal), the 2nd, 4th, ... are held back and counted";

#[derive(Debug, thiserror::Error)]
pub enum AfterFeedbackError {
    #[error(transparent)]
    Feedback(#[from] FeedbackError),
    #[error(transparent)]
    Decide(#[from] DecideConfigError),
    #[error("building the scorer: {0}")]
    Index(#[from] crate::index::IndexError),
}

/// A test clip's embedded windows.
#[derive(Debug, Clone, Copy)]
pub struct Clip<'a> {
    pub path: &'a Path,
    pub windows: &'a [WindowEmbedding],
}

/// One machine's figures.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct AfterFeedback {
    pub split: &'static str,
    pub feedback_clips: usize,
    pub held_back_clips: usize,
    pub held_back_seconds: f64,
    /// Events raised on the feedback half, each marked normal.
    pub feedback_events: usize,
    /// Windows those events added to the normal memory.
    pub windows_added: usize,
    /// Events on the held-back half before and after the feedback.
    pub events_before: usize,
    pub events_after: usize,
    /// The same per 24 h of held-back audio.
    pub per_day_before: Option<f64>,
    pub per_day_after: Option<f64>,
    /// Share of anomalous test clips with an event, before and after (what feedback must not
    /// cost).
    pub detected_before: Option<f64>,
    pub detected_after: Option<f64>,
}

/// Splits normal clips into (feedback half, held back) as [`SPLIT`] says.
pub fn split<'a>(normals: &[Clip<'a>]) -> (Vec<Clip<'a>>, Vec<Clip<'a>>) {
    let mut v = normals.to_vec();
    v.sort_by(|a, b| a.path.cmp(b.path));
    let (mut fb, mut held) = (Vec::new(), Vec::new());
    for (i, c) in v.into_iter().enumerate() {
        if i % 2 == 0 {
            fb.push(c);
        } else {
            held.push(c);
        }
    }
    (fb, held)
}

/// Measures the events on held-back normal clips (and the detected anomalous clips) of
/// `machine` before and after marking the feedback half's events normal in a copy of
/// `profile` (see the module docs). `cfg` is the decision rule replayed.
pub fn after_feedback(
    profile: &Profile,
    cfg: &DecideConfig,
    machine: &str,
    normals: &[Clip<'_>],
    anomalies: &[Clip<'_>],
) -> Result<AfterFeedback, AfterFeedbackError> {
    let (fb, held) = split(normals);
    let before = Scorer::new(profile)?;
    let window_s = profile.manifest.window.seconds;
    let mut learned = profile.clone();
    let mut out = AfterFeedback {
        split: SPLIT,
        feedback_clips: fb.len(),
        held_back_clips: held.len(),
        held_back_seconds: held.iter().map(|c| seconds(c.windows)).sum(),
        ..Default::default()
    };
    for c in &fb {
        let scored = scored_windows(&before, c.windows);
        let events = replay(Levels::of(profile), cfg, machine, &scored)?;
        let clip_end = c.windows.last().map_or(0.0, |w| w.end_s);
        for ev in events.iter().filter(|e| e.kind == DecisionKind::Ended) {
            let onset = ev.start.stream_s;
            let span = span_in_clip(onset, ev.end.as_ref().map(|e| e.stream_s - onset), clip_end);
            let (windows, impulses): (Vec<_>, Vec<_>) = span_windows(
                c.windows
                    .iter()
                    .map(|w| (w.start_s, (w.embedding.clone(), w.impulse_db)))
                    .collect(),
                window_s,
                span,
            )
            .into_iter()
            .map(|(t, (e, i))| ((t, e), i))
            .unzip();
            if windows.is_empty() {
                continue;
            }
            out.feedback_events += 1;
            tracing::debug!(clip = %c.path.display(), ?span, fired = ?ev.fired, "feedback event");
            let id = format!("eval:{}:{}", c.path.display(), ev.event_id);
            // As `earshot feedback` does: the highest `mel` score of the added windows.
            let mel_peak = scored
                .iter()
                .filter(|w| windows.iter().any(|(t, _)| *t == w.start_s))
                .filter_map(|w| w.scores.mel)
                .reduce(f32::max);
            let (mut p, ids) = with_normal(&learned, &id, c.path, &windows, mel_peak)?;
            // As `earshot feedback` does: the impulse level stays above the added windows.
            if let Some(peak) = impulses
                .into_iter()
                .filter(|v| v.is_finite())
                .reduce(f64::max)
            {
                raise_impulse(&mut p, peak);
            }
            out.windows_added += ids.len();
            learned = p;
        }
    }
    let after = Scorer::new(&learned)?;
    let events = |scorer: &Scorer, p: &Profile, clips: &[Clip]| {
        clips
            .iter()
            .map(|c| {
                replay(
                    Levels::of(p),
                    cfg,
                    machine,
                    &scored_windows(scorer, c.windows),
                )
                .map(|e| started(&e))
            })
            .collect::<Result<Vec<usize>, _>>()
    };
    out.events_before = events(&before, profile, &held)?.iter().sum();
    out.events_after = events(&after, &learned, &held)?.iter().sum();
    let per_day = |n: usize| {
        (out.held_back_seconds > 0.0).then(|| n as f64 * 86_400.0 / out.held_back_seconds)
    };
    out.per_day_before = per_day(out.events_before);
    out.per_day_after = per_day(out.events_after);
    let detected = |v: Vec<usize>| {
        (!v.is_empty()).then(|| v.iter().filter(|&&n| n > 0).count() as f64 / v.len() as f64)
    };
    out.detected_before = detected(events(&before, profile, anomalies)?);
    out.detected_after = detected(events(&after, &learned, anomalies)?);
    Ok(out)
}

/// Seconds a clip's windows cover (as `eval` counts normal audio).
fn seconds(w: &[WindowEmbedding]) -> f64 {
    match (w.first(), w.last()) {
        (Some(a), Some(b)) => b.end_s - a.start_s,
        _ => 0.0,
    }
}
