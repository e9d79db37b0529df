//! `learn`: from embeddings of normal audio to a profile with calibrated thresholds.
//!
//! The normal model (centroids, k-NN memory) holds every normal window. Thresholds are
//! calibrated on scores of normal windows the model did not see: leave-one-clip-out, each
//! clip scored against a model of all the others (at most [`MAX_FOLDS`] folds; a single
//! recording is cut into [`MIN_UNITS`] parts, without the windows that overlap the part held
//! out). Holding out by clip, not by window, matters: overlapping windows of one clip are
//! near-copies, and calibrating on them would set thresholds far too low. The thresholds are
//! then set for a number of false events per day of the daemon's rule (`score::rate`).

use super::decide::DecideConfig;
use super::profile::{
    Calibration, Counts, FORMAT, LevelStats, Manifest, ModelRef, Profile, VERSION, WindowSpec,
};
use super::replay::WindowRecord;
use super::{CENTROID, KNN, WindowScores, centroid, knn_distance, rate, threshold};
use crate::index::{EmbeddedConfig, EmbeddedIndex};
use ndarray::Array2;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct LearnOptions {
    pub machine: String,
    /// None = [`centroid::default_k`].
    pub kmeans_k: Option<usize>,
    pub knn_k: usize,
    /// Target false-alarm rate per window for each threshold.
    pub target_far: f64,
    /// Unused since thresholds are calibrated leave-one-clip-out (kept so that configs that
    /// set it still load).
    pub holdout_fraction: f64,
    /// False events per day of the N-of-M rule the thresholds aim at (all scorers together).
    pub false_alarms_per_day: f64,
    /// The decision rule the thresholds are calibrated for.
    pub decide: DecideConfig,
}

impl Default for LearnOptions {
    fn default() -> Self {
        Self {
            machine: "machine".into(),
            kmeans_k: None,
            knn_k: 3,
            target_far: 0.01,
            holdout_fraction: 0.25,
            false_alarms_per_day: 1.0,
            decide: DecideConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error(
        "no normal windows to learn from: give at least one WAV of normal operation longer than one window"
    )]
    Empty,
    #[error(
        "too little normal audio: {fit} windows to fit and {holdout} to calibrate; give at least {min} seconds of normal audio (more is better: minutes)"
    )]
    TooLittle {
        fit: usize,
        holdout: usize,
        min: f64,
    },
    #[error(transparent)]
    Centroid(#[from] centroid::CentroidError),
    #[error(
        "two normal clips are both named {0:?}: window ids would collide; name clips after their paths (see `clip_names`)"
    )]
    DuplicateClip(String),
}

/// One normal clip's windows: its name and its normalised embeddings in time order.
pub struct ClipWindows {
    pub name: String,
    pub windows: Vec<(f64, Vec<f32>)>,
    /// Per window, [`crate::dsp::level::quietest_quarter_dbfs`] of its samples (same order as
    /// `windows`; may be empty when unknown, then the profile gets no level floor).
    pub levels_dbfs: Vec<f64>,
    /// Per window, [`crate::dsp::impulse::impulse_db`] of its samples (same order; may be
    /// empty when unknown, then the profile gets no impulse level and that rule is off).
    pub impulse_db: Vec<f64>,
}

/// How far below the normal audio's quietest windows "no signal" begins (dB).
pub const NO_SIGNAL_MARGIN_DB: f64 = 20.0;
/// The lowest floor ever used: quieter than any real microphone's self-noise.
pub const NO_SIGNAL_MIN_FLOOR_DBFS: f64 = -100.0;

/// The normal audio's level statistics, or `None` without levels. The floor is
/// [`NO_SIGNAL_MARGIN_DB`] below the 1st percentile of the windows' quietest quarters (one
/// odd window does not set it), and never below [`NO_SIGNAL_MIN_FLOOR_DBFS`].
pub fn level_stats(clips: &[ClipWindows]) -> Option<LevelStats> {
    let mut l: Vec<f64> = clips
        .iter()
        .flat_map(|c| c.levels_dbfs.iter().copied())
        .filter(|v| !v.is_nan())
        .collect();
    if l.is_empty() {
        return None;
    }
    l.sort_by(f64::total_cmp);
    let quietest = l[((l.len() - 1) as f64 * 0.01).floor() as usize];
    Some(LevelStats {
        quietest_dbfs: quietest,
        floor_dbfs: (quietest - NO_SIGNAL_MARGIN_DB).max(NO_SIGNAL_MIN_FLOOR_DBFS),
        margin_db: NO_SIGNAL_MARGIN_DB,
    })
}

pub fn learn(
    clips: &[ClipWindows],
    opts: &LearnOptions,
    model: ModelRef,
    window: WindowSpec,
) -> Result<(Profile, Calibration), LearnError> {
    let total: usize = clips.iter().map(|c| c.windows.len()).sum();
    if total == 0 {
        return Err(LearnError::Empty);
    }
    let mut names = std::collections::BTreeSet::new();
    if let Some(c) = clips.iter().find(|c| !names.insert(c.name.as_str())) {
        return Err(LearnError::DuplicateClip(c.name.clone()));
    }
    let fit: Windows = clips
        .iter()
        .flat_map(|c| c.windows.iter().map(|(t, e)| (window_id(c, *t), e.clone())))
        .collect();
    let units = units(clips, window);
    if fit.len() < 2 || units.len() < 2 {
        return Err(LearnError::TooLittle {
            fit: fit.len(),
            holdout: 0,
            min: window.seconds * 4.0,
        });
    }
    let d = model.embedding_dim;
    let embeddings = to_array(fit.iter().map(|(_, e)| e.as_slice()), d)?;
    let ids: Vec<String> = fit.iter().map(|(id, _)| id.clone()).collect();
    let k = opts
        .kmeans_k
        .unwrap_or_else(|| centroid::default_k(fit.len()))
        .min(fit.len());
    let centroids = centroid::fit(&embeddings, k)?;
    let knn_k = opts.knn_k.max(1);

    let level = level_stats(clips);
    let (held, folds) = cross_scores(clips, &units, k, knn_k, window, d)?;
    let mut scores: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for w in held.iter().flatten() {
        scores
            .entry(CENTROID.into())
            .or_default()
            .push(w.scores.centroid);
        if let Some(s) = w.scores.knn {
            scores.entry(KNN.into()).or_default().push(s);
        }
    }
    let holdout_windows = held.iter().map(Vec::len).sum::<usize>();
    let normal_seconds: f64 = held
        .iter()
        .filter_map(|s| Some(s.last()?.end_s - s.first()?.start_s))
        .sum();
    let rates = rate::Held {
        seqs: &held,
        level: level.as_ref(),
        decide: &opts.decide,
        normal_seconds,
    };
    let budget = opts.false_alarms_per_day / scores.len().max(1) as f64;
    let mut thresholds = BTreeMap::new();
    let mut per_scorer = BTreeMap::new();
    for (name, s) in &scores {
        // Release and transient levels per window; the threshold in events per day.
        if let Some(mut t) = threshold::calibrate(s, opts.target_far) {
            let r = rates.calibrate(name, &t, budget);
            t.value = r.level;
            t.method = format!("events_per_day:{}", r.method);
            t.calibration_far =
                s.iter().filter(|&&v| v > r.level).count() as f64 / s.len().max(1) as f64;
            t.release = t.release.map(|v| v.min(r.level));
            t.transient = t.transient.map(|v| v.max(r.level));
            thresholds.insert(name.clone(), t);
            per_scorer.insert(name.clone(), r);
        }
    }
    let false_alarms = rate::combine(
        opts.false_alarms_per_day,
        &opts.decide,
        normal_seconds,
        folds,
        per_scorer,
    );
    if !false_alarms.enough_audio {
        tracing::warn!(
            target_per_day = false_alarms.target_per_day,
            low = false_alarms.low_per_day,
            high = false_alarms.high_per_day,
            normal_seconds,
            "too little normal audio to know the false alarms per day well: expected {:.2}/day, 68 % range {:.2}..{:.2}; learn from about {:.0} minutes of normal audio for a factor of 2",
            false_alarms.expected_per_day,
            false_alarms.low_per_day,
            false_alarms.high_per_day,
            false_alarms.audio_needed_s.unwrap_or(f64::NAN) / 60.0
        );
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        earshot_version: env!("CARGO_PKG_VERSION").into(),
        machine: opts.machine.clone(),
        model: model.clone(),
        window,
        counts: Counts {
            clips: clips.len(),
            fit_windows: fit.len(),
            holdout_windows,
            holdout_clips: units.len(),
        },
        kmeans_k: k,
        knn_k,
        thresholds,
        sources: clips.iter().map(|c| c.name.clone()).collect(),
        files: BTreeMap::new(),
        level,
        impulse: super::impulse::from_clips(clips),
        coverage_warning: coverage_warning(holdout_windows, opts, window),
        false_alarms: Some(false_alarms),
    };
    let profile = Profile {
        dir: Default::default(),
        machine: opts.machine.clone(),
        model: model.name,
        manifest,
        embeddings,
        ids,
        centroids,
    };
    Ok((
        profile,
        Calibration {
            holdout_scores: scores,
        },
    ))
}

/// The coverage check of [`super::coverage`], logged where `learn` runs. Every window is
/// held out once (leave-one-clip-out), so each second of added audio adds `1/hop` of them.
fn coverage_warning(
    held_out: usize,
    opts: &LearnOptions,
    window: WindowSpec,
) -> Option<super::coverage::CoverageWarning> {
    let w = super::coverage::check(held_out, opts.target_far, window.hop_seconds, 1.0)?;
    tracing::warn!(
        held_out = w.held_out_windows,
        needed = w.needed_held_out_windows,
        more_audio_s = w.more_audio_s,
        "{}",
        w.message
    );
    Some(w)
}

type Windows = Vec<(String, Vec<f32>)>;

/// Folds of the leave-one-clip-out scoring: beyond this, clips are grouped (each model then
/// lacks a tenth of the audio instead of one clip; k-means is fitted once per fold).
pub const MAX_FOLDS: usize = 10;
/// Fewer clips than this are cut into parts so that there are this many units.
pub const MIN_UNITS: usize = 8;

fn window_id(c: &ClipWindows, t: f64) -> String {
    format!("{}@{t:.3}", c.name)
}

fn to_array<'a>(
    rows: impl Iterator<Item = &'a [f32]>,
    d: usize,
) -> Result<Array2<f32>, centroid::CentroidError> {
    let flat: Vec<f32> = rows.flatten().copied().collect();
    Array2::from_shape_vec((flat.len() / d.max(1), d), flat)
        .map_err(|e| centroid::CentroidError::Fit(e.to_string()))
}

/// A held-out unit: a clip's window index range.
type Unit = (usize, std::ops::Range<usize>);

/// The units of the leave-one-clip-out: whole clips, or, with fewer than [`MIN_UNITS`] clips,
/// parts of clips (each at least a few windows longer than the overlap of one window).
fn units(clips: &[ClipWindows], window: WindowSpec) -> Vec<Unit> {
    let usable: Vec<usize> = (0..clips.len())
        .filter(|&i| !clips[i].windows.is_empty())
        .collect();
    if usable.len() >= MIN_UNITS {
        return usable
            .into_iter()
            .map(|i| (i, 0..clips[i].windows.len()))
            .collect();
    }
    let overlap = overlap_windows(window);
    let parts = MIN_UNITS.div_ceil(usable.len().max(1));
    let mut out = Vec::new();
    for i in usable {
        let n = clips[i].windows.len();
        // A part must outlast the windows excluded around it.
        let p = parts.min(n / (2 * overlap + 2).max(1)).max(1);
        for j in 0..p {
            out.push((i, (j * n) / p..((j + 1) * n) / p));
        }
    }
    out
}

/// Windows before or after a window that share samples with it.
fn overlap_windows(window: WindowSpec) -> usize {
    ((window.seconds / window.hop_seconds.max(1e-9)).ceil() as usize).saturating_sub(1)
}

/// Scores every unit's windows against a model (centroids with `k` clusters, k-NN memory) of
/// the windows of the other folds, leaving out windows that overlap the held-out ones.
/// Returns the held-out windows per unit in time order, and the number of folds.
fn cross_scores(
    clips: &[ClipWindows],
    units: &[Unit],
    k: usize,
    knn_k: usize,
    window: WindowSpec,
    d: usize,
) -> Result<(Vec<Vec<WindowRecord>>, usize), LearnError> {
    let folds = units.len().min(MAX_FOLDS);
    let overlap = overlap_windows(window);
    let mut held: Vec<Vec<WindowRecord>> = vec![Vec::new(); units.len()];
    for f in 0..folds {
        let members: Vec<usize> = (0..units.len())
            .filter(|&u| u * folds / units.len() == f)
            .collect();
        // Per clip, the window indices no model of this fold may see.
        let excluded = |ci: usize, wi: usize| {
            members.iter().any(|&u| {
                let (c, r) = &units[u];
                *c == ci && wi + overlap >= r.start && wi < r.end + overlap
            })
        };
        let mut ids = Vec::new();
        let mut rows: Vec<&[f32]> = Vec::new();
        for (ci, c) in clips.iter().enumerate() {
            for (wi, (t, e)) in c.windows.iter().enumerate() {
                if !excluded(ci, wi) {
                    ids.push(window_id(c, *t));
                    rows.push(e);
                }
            }
        }
        if rows.len() < 2 {
            return Err(LearnError::TooLittle {
                fit: rows.len(),
                holdout: clips.iter().map(|c| c.windows.len()).sum(),
                min: window.seconds * 4.0,
            });
        }
        let emb = to_array(rows.into_iter(), d)?;
        let cents = centroid::fit(&emb, k.min(emb.nrows()))?;
        let index = EmbeddedIndex::new(emb.view(), ids, &EmbeddedConfig::default())
            .map_err(|e| centroid::CentroidError::Fit(e.to_string()))?;
        for &u in &members {
            let (ci, r) = &units[u];
            let c = &clips[*ci];
            held[u] = r
                .clone()
                .map(|wi| {
                    let (t, e) = &c.windows[wi];
                    WindowRecord {
                        start_s: *t,
                        end_s: *t + window.seconds,
                        level_dbfs: c.levels_dbfs.get(wi).copied().unwrap_or(0.0),
                        scores: WindowScores {
                            centroid: centroid::nearest_distance(&cents, e),
                            knn: knn_distance(&index, e, knn_k),
                        },
                        impulse_db: c.impulse_db.get(wi).copied(),
                    }
                })
                .collect();
        }
    }
    Ok((held, folds))
}

/// Clip names for normal recordings, unique per path and deterministic: the file stem where
/// that is unique, else as many parent folders as needed to tell the paths apart
/// (`line1/pump` and `line2/pump`), else the whole path. Window ids are `<name>@<start>`, and
/// an id shared by two windows would make `earshot index` upload fewer vectors than the
/// profile holds.
pub fn clip_names(paths: &[std::path::PathBuf]) -> Vec<String> {
    use std::path::Component;
    let parts: Vec<Vec<String>> = paths
        .iter()
        .map(|p| {
            let mut v: Vec<String> = p
                .components()
                .filter_map(|c| match c {
                    Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                    Component::ParentDir => Some("..".into()),
                    _ => None,
                })
                .collect();
            if let (Some(last), Some(stem)) = (v.last_mut(), p.file_stem()) {
                *last = stem.to_string_lossy().into_owned();
            }
            v
        })
        .collect();
    let name = |i: usize, depth: usize| {
        let v = &parts[i];
        v[v.len().saturating_sub(depth)..].join("/")
    };
    let mut depth = vec![1usize; paths.len()];
    let mut names: Vec<String> = (0..paths.len()).map(|i| name(i, 1)).collect();
    loop {
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, n) in names.iter().enumerate() {
            groups.entry(n.as_str()).or_default().push(i);
        }
        let clashing: Vec<usize> = groups
            .into_values()
            .filter(|g| g.len() > 1)
            .flatten()
            .collect();
        if clashing.is_empty() {
            return names;
        }
        let mut deeper = false;
        for &i in &clashing {
            if depth[i] < parts[i].len() {
                depth[i] += 1;
                names[i] = name(i, depth[i]);
                deeper = true;
            }
        }
        if !deeper {
            // Paths that differ only in the extension's case or in `.`/root components:
            // the full path as given, then (same path twice) a number.
            let mut used = std::collections::BTreeSet::new();
            for i in 0..names.len() {
                if clashing.contains(&i) {
                    names[i] = paths[i].display().to_string();
                }
            }
            for (i, n) in names.iter_mut().enumerate() {
                if !used.insert(n.clone()) {
                    *n = format!("{n}#{i}");
                    used.insert(n.clone());
                }
            }
            return names;
        }
    }
}

#[cfg(test)]
mod clip_name_tests {
    use super::clip_names;
    use std::path::PathBuf;

    fn names(paths: &[&str]) -> Vec<String> {
        clip_names(&paths.iter().map(PathBuf::from).collect::<Vec<_>>())
    }

    #[test]
    fn unique_stems_stay_stems_and_shared_names_get_their_folders() {
        assert_eq!(names(&["a/x.wav", "a/y.wav"]), ["x", "y"]);
        assert_eq!(
            names(&["/d/line1/pump.wav", "/d/line2/pump.wav", "/d/line2/fan.wav"]),
            ["line1/pump", "line2/pump", "fan"]
        );
        // Different depths: the shorter path runs out of folders first.
        assert_eq!(
            names(&["a/b.wav", "x/a/b.wav", "c/b.wav"]),
            ["a/b", "x/a/b", "c/b"]
        );
        // Only the extension's case differs: the whole path; the same path twice: numbered.
        assert_eq!(names(&["a/x.wav", "a/x.WAV"]), ["a/x.wav", "a/x.WAV"]);
        assert_eq!(names(&["x.wav", "x.wav"]), ["x.wav", "x.wav#1"]);
    }
}
