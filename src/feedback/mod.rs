//! "That was normal": an operator's verdict on an event, folded into the monitor's normal
//! memory so that the same sound stops raising events.
//!
//! `earshot feedback FP --normal` re-embeds the event's span from its evidence clip with the
//! profile's model and window, and appends those embeddings to the profile: as k-NN memory
//! rows (ids `feedback:<event id>@<stream s>`, unique and removable) and, because the centroid
//! scorer would otherwise still flag them, each as its own centroid. The impulse level, which
//! `learn` keeps [`crate::score::impulse::MIN_MARGIN_DB`] above the loudest normal window,
//! is kept that far above the added windows too ([`raise_impulse`]): a knock vouched for as
//! normal (a door, a hammer on the bench) stops starting events. The embedding thresholds are
//! not moved: they were calibrated for a false-alarm rate, and moving them silently would
//! change every other decision. The profile is rewritten whole and swapped in atomically (the same
//! [`crate::score::profile::replace_dir`] as `learn`), with `feedback.json` (what was added,
//! when, why) checksummed in its manifest, so `--undo` can remove exactly those rows.

pub mod azure;
pub mod record;

pub use record::{FEEDBACK_FILE, FeedbackRecord, Records};

use crate::evidence::Store;
use crate::evidence::store::Listed;
use crate::score::profile::{DATA_FILES, MEL_FILE, Profile, ProfileError};
use ndarray::{Array2, Axis};
use std::path::{Path, PathBuf};

/// The highest scores of the windows a feedback adds, where measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peaks {
    /// Impulse value (dB).
    pub impulse_db: Option<f64>,
    /// `mel` score under the profile before the feedback.
    pub mel: Option<f32>,
}

/// Prefix of the window ids feedback adds to a profile.
pub const ID_PREFIX: &str = "feedback:";

#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error(
        "no event {given:?} with evidence under {root}: use the fingerprint (`<monitor>/<hex>`) or its hex part as `earshot events` lists it; events without a saved clip cannot be marked normal"
    )]
    UnknownEvent { given: String, root: PathBuf },
    #[error(
        "{given:?} matches {n} events ({first}, ...): give more of the fingerprint (`earshot events` lists them)"
    )]
    Ambiguous {
        given: String,
        n: usize,
        first: String,
    },
    #[error(
        "event {0} is already marked normal in this profile; `earshot feedback {0} --undo` first to redo it"
    )]
    AlreadyAdded(String),
    #[error(
        "event {event} has no feedback in {profile}: `earshot feedback --list` shows what can be undone"
    )]
    NotAdded { event: String, profile: PathBuf },
    #[error(
        "the evidence clip of {0} gave no window inside the event's span (clip shorter than one window?): nothing to add"
    )]
    NoWindows(String),
    #[error("{path}: invalid feedback record: {detail}; restore it or re-run `earshot learn`")]
    BadRecord { path: PathBuf, detail: String },
    #[error(
        "{path}: embedding size {got} is not the profile's {want}: the clip was embedded with another model"
    )]
    Dim {
        path: PathBuf,
        got: usize,
        want: usize,
    },
    /// Azure AI Search did not take a change: `done` says what holds locally, `todo` how to
    /// finish.
    #[error("{done}, but Azure AI Search index {location} did not take it: {detail}; {todo}")]
    Azure {
        done: String,
        location: String,
        detail: String,
        todo: String,
    },
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// Finds an event's evidence by what users see: the full fingerprint `<monitor>/<hex>`
/// (events.jsonl `fingerprint`, alert `event_id`, the events page), the monitor's path segment
/// form of it (`/events/<segment>/<hex>`), or the hex part alone or a prefix of it (at least 4
/// characters) when that is unique.
pub fn find_event(store: &Store, given: &str) -> Result<Listed, FeedbackError> {
    let given = given.trim().trim_matches('/');
    let unknown = || FeedbackError::UnknownEvent {
        given: given.to_owned(),
        root: store.root().to_owned(),
    };
    let all = store.list(None);
    if let Some(l) = all.iter().find(|l| l.meta.event_id == given) {
        return Ok(l.clone());
    }
    let (seg, hex) = match given.rsplit_once('/') {
        Some((m, h)) => (Some(crate::evidence::monitor_segment(m)), h),
        None => (None, given),
    };
    if hex.len() < 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unknown());
    }
    let hex = hex.to_ascii_lowercase();
    let hits: Vec<&Listed> = all
        .iter()
        .filter(|l| {
            let Ok((m, h)) = crate::evidence::split_id(&l.meta.event_id) else {
                return false;
            };
            seg.as_ref()
                .is_none_or(|s| *s == crate::evidence::monitor_segment(m))
                && h.to_ascii_lowercase().starts_with(&hex)
        })
        .collect();
    match hits.as_slice() {
        [] => Err(unknown()),
        [one] => Ok((*one).clone()),
        many => Err(FeedbackError::Ambiguous {
            given: given.to_owned(),
            n: many.len(),
            first: many[0].meta.event_id.clone(),
        }),
    }
}

/// The span of the event inside its clip, in seconds from the clip's first sample: onset to
/// end (or to the clip's end while the event was still open when the clip was finished).
pub fn event_span(l: &Listed) -> (f64, f64) {
    span_in_clip(
        l.meta.onset_offset_s,
        l.meta.duration_s(),
        l.meta.clip_seconds,
    )
}

/// The span of an event that starts `onset_s` into a clip of `clip_seconds` and lasts
/// `duration_s` (`None`: still open when the clip ended), clamped to the clip. Shared by
/// [`event_span`] and `eval`'s replayed feedback, so both add the same windows of an event.
pub fn span_in_clip(onset_s: f64, duration_s: Option<f64>, clip_seconds: f64) -> (f64, f64) {
    let from = onset_s.max(0.0);
    let to = duration_s
        .map_or(clip_seconds, |d| from + d)
        .min(clip_seconds);
    (from, to.max(from))
}

/// The windows (start in the clip, embedding) that overlap the event's span; what is added.
pub fn span_windows<T>(windows: Vec<(f64, T)>, window_s: f64, span: (f64, f64)) -> Vec<(f64, T)> {
    windows
        .into_iter()
        .filter(|(t, _)| *t < span.1 && t + window_s > span.0)
        .collect()
}

/// Adds an event's windows to the profile in `dir` as normal memory (k-NN rows and own
/// centroids) and records it; returns the new profile. `windows` are (stream seconds,
/// normalised embedding).
/// `peaks` are those windows' highest scores where they are measured.
pub fn add(
    dir: &Path,
    event: &Listed,
    note: Option<String>,
    windows: &[(f64, Vec<f32>)],
    peaks: Peaks,
) -> Result<Profile, FeedbackError> {
    let profile = Profile::load(dir)?;
    let mut records = Records::load(&profile)?;
    let event_id = &event.meta.event_id;
    if records.get(event_id).is_some() {
        return Err(FeedbackError::AlreadyAdded(event_id.clone()));
    }
    let (mut p, ids) = with_normal(&profile, event_id, &event.clip, windows, peaks.mel)?;
    let impulse_peak_db = peaks.impulse_db.filter(|v| v.is_finite());
    if let (Some(level), Some(peak)) = (profile.manifest.impulse, impulse_peak_db) {
        records.impulse_learned.get_or_insert(level);
        raise_impulse(&mut p, peak);
    }
    records.entries.push(FeedbackRecord {
        event_id: event_id.clone(),
        monitor: event.meta.monitor.clone(),
        added_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        note,
        clip: event.clip.display().to_string(),
        windows: ids.len(),
        ids,
        impulse_peak_db: impulse_peak_db.filter(|_| profile.manifest.impulse.is_some()),
        mel_peak: peaks.mel.filter(|m| m.is_finite() && profile.mel.is_some()),
    });
    save(p, &records)
}

/// Keeps the profile's impulse level (if it has one) at least
/// [`crate::score::impulse::MIN_MARGIN_DB`] above `peak_db`, the impulse value of a window
/// now known to be normal, as `learn` does for the windows it learns from. Returns the level
/// before and after when it moved.
pub fn raise_impulse(profile: &mut Profile, peak_db: f64) -> Option<(f64, f64)> {
    use crate::score::impulse::MIN_MARGIN_DB;
    let level = profile.manifest.impulse.as_mut()?;
    if !peak_db.is_finite() {
        return None;
    }
    level.max_db = level.max_db.max(peak_db);
    let before = level.level_db;
    level.level_db = before.max(peak_db + MIN_MARGIN_DB);
    (level.level_db > before).then_some((before, level.level_db))
}

/// `profile` with an event's windows appended as normal memory, in memory only: each window
/// a k-NN row (id `feedback:<event_id>@<t>`, unique in the profile) and its own centroid, and
/// with `mel_peak` (their highest `mel` score) the event's `mel` ceiling.
/// Returns the new profile and the ids added. [`add`] saves and records the result; `eval`
/// uses it directly to measure what feedback does to false alarms, so the figure comes from
/// the same rule the command applies. `clip` only names the source in errors.
pub fn with_normal(
    profile: &Profile,
    event_id: &str,
    clip: &Path,
    windows: &[(f64, Vec<f32>)],
    mel_peak: Option<f32>,
) -> Result<(Profile, Vec<String>), FeedbackError> {
    if windows.is_empty() {
        return Err(FeedbackError::NoWindows(event_id.to_owned()));
    }
    let d = profile.dim();
    if let Some((_, e)) = windows.iter().find(|(_, e)| e.len() != d) {
        return Err(FeedbackError::Dim {
            path: clip.to_owned(),
            got: e.len(),
            want: d,
        });
    }
    let mut ids = Vec::with_capacity(windows.len());
    for (t, _) in windows {
        let mut id = format!("{ID_PREFIX}{event_id}@{t:.3}");
        // Two windows of one event never share a start, but stay unique whatever the hop.
        let mut n = 1;
        while ids.contains(&id) || profile.ids.contains(&id) {
            id = format!("{ID_PREFIX}{event_id}@{t:.3}#{n}");
            n += 1;
        }
        ids.push(id);
    }
    let rows: Vec<f32> = windows
        .iter()
        .flat_map(|(_, e)| e.iter().copied())
        .collect();
    let new_rows =
        Array2::from_shape_vec((windows.len(), d), rows).map_err(|e| FeedbackError::BadRecord {
            path: clip.to_owned(),
            detail: e.to_string(),
        })?;
    let mut p = profile.clone();
    p.embeddings = concat(&p.embeddings, &new_rows);
    p.centroids = concat(&p.centroids, &new_rows);
    p.ids.extend(ids.iter().cloned());
    if let Some(m) = mel_peak.filter(|m| m.is_finite() && profile.mel.is_some()) {
        p.feedback_mel
            .insert(event_id.to_owned(), crate::score::melstats::mel_ceiling(m));
    }
    Ok((p, ids))
}

/// Removes exactly the rows one feedback added, and its record; returns the new profile.
pub fn undo(dir: &Path, event_id: &str) -> Result<(Profile, FeedbackRecord), FeedbackError> {
    let profile = Profile::load(dir)?;
    let mut records = Records::load(&profile)?;
    let Some(pos) = records.entries.iter().position(|r| r.event_id == event_id) else {
        return Err(FeedbackError::NotAdded {
            event: event_id.to_owned(),
            profile: dir.to_owned(),
        });
    };
    let rec = records.entries.remove(pos);
    let remove: std::collections::BTreeSet<&str> = rec.ids.iter().map(String::as_str).collect();
    let keep: Vec<usize> = (0..profile.ids.len())
        .filter(|&i| !remove.contains(profile.ids[i].as_str()))
        .collect();
    // The centroids it added are copies of its rows: remove one matching centroid per row.
    let gone: Vec<usize> = (0..profile.ids.len())
        .filter(|&i| remove.contains(profile.ids[i].as_str()))
        .collect();
    let mut drop_centroid = vec![false; profile.centroids.nrows()];
    for &i in &gone {
        let row = profile.embeddings.row(i);
        if let Some(c) = (0..profile.centroids.nrows())
            .rev()
            .find(|&c| !drop_centroid[c] && profile.centroids.row(c) == row)
        {
            drop_centroid[c] = true;
        }
    }
    let keep_c: Vec<usize> = (0..drop_centroid.len())
        .filter(|&c| !drop_centroid[c])
        .collect();
    let mut p = profile.clone();
    p.embeddings = profile.embeddings.select(Axis(0), &keep);
    p.centroids = profile.centroids.select(Axis(0), &keep_c);
    p.ids = keep.iter().map(|&i| profile.ids[i].clone()).collect();
    // The impulse level: what `learn` set, raised again for the feedback that stays.
    if let Some(learned) = records.impulse_learned {
        p.manifest.impulse = Some(learned);
        let peaks: Vec<f64> = records
            .entries
            .iter()
            .filter_map(|r| r.impulse_peak_db)
            .collect();
        for peak in &peaks {
            raise_impulse(&mut p, *peak);
        }
        if peaks.is_empty() {
            records.impulse_learned = None;
        }
    }
    let p = save(p, &records)?;
    Ok((p, rec))
}

fn concat(a: &Array2<f32>, b: &Array2<f32>) -> Array2<f32> {
    ndarray::concatenate(Axis(0), &[a.view(), b.view()]).unwrap_or_else(|_| a.clone())
}

/// Writes the profile with its counts updated, keeping every other file it had (calibration,
/// the reference clip), and `feedback.json` checksummed with them.
fn save(mut p: Profile, records: &Records) -> Result<Profile, FeedbackError> {
    let dir = p.dir.clone();
    p.manifest.counts.fit_windows = p.embeddings.nrows();
    p.manifest.kmeans_k = p.centroids.nrows();
    let cal_path = dir.join("calibration.json");
    let cal_text = crate::files::read_regular_string(&cal_path).map_err(ProfileError::from)?;
    let cal = serde_json::from_str(&cal_text).map_err(|e| ProfileError::Invalid {
        path: cal_path.clone(),
        detail: e.to_string(),
    })?;
    let mut optional: Vec<(String, Vec<u8>)> = Vec::new();
    for name in p.manifest.files.keys() {
        // What `save_with` writes from the profile itself (the data files and the log-mel
        // statistics) or from `records` is not carried over as an extra file.
        if DATA_FILES.contains(&name.as_str()) || name == MEL_FILE || name == FEEDBACK_FILE {
            continue;
        }
        let bytes = crate::files::read_regular(&dir.join(name)).map_err(ProfileError::from)?;
        optional.push((name.clone(), bytes));
    }
    if !records.entries.is_empty() {
        optional.push((FEEDBACK_FILE.to_owned(), records.to_bytes()));
    }
    let optional: Vec<(&str, Vec<u8>)> = optional
        .iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .collect();
    p.save_with(&dir, &cal, &optional)?;
    Ok(Profile::load(&dir)?)
}
