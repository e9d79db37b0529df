//! `learn`: from embeddings of normal audio to a profile with calibrated thresholds.
//!
//! Normal windows are split by clip into a fit set (centroids, k-NN memory) and a held-out
//! set (thresholds). Splitting by clip, not by window, matters: overlapping windows of one
//! clip are near-copies, and calibrating on them would set thresholds far too low.

use super::profile::{
    Calibration, Counts, FORMAT, LevelStats, Manifest, ModelRef, Profile, VERSION, WindowSpec,
};
use super::{CENTROID, KNN, centroid, knn_distance, threshold};
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
    /// Fraction of clips (or, with one clip, of its duration) held out for calibration.
    pub holdout_fraction: f64,
}

impl Default for LearnOptions {
    fn default() -> Self {
        Self {
            machine: "machine".into(),
            kmeans_k: None,
            knn_k: 3,
            target_far: 0.01,
            holdout_fraction: 0.25,
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
    let (fit, holdout, holdout_clips) = split(clips, opts.holdout_fraction, window);
    if fit.len() < 2 || holdout.is_empty() {
        return Err(LearnError::TooLittle {
            fit: fit.len(),
            holdout: holdout.len(),
            min: window.seconds * 4.0,
        });
    }
    let d = model.embedding_dim;
    let mut ids = Vec::with_capacity(fit.len());
    let mut flat = Vec::with_capacity(fit.len() * d);
    for (id, e) in &fit {
        ids.push(id.clone());
        flat.extend_from_slice(e);
    }
    let embeddings = Array2::from_shape_vec((fit.len(), d), flat)
        .map_err(|e| centroid::CentroidError::Fit(e.to_string()))?;
    let k = opts
        .kmeans_k
        .unwrap_or_else(|| centroid::default_k(fit.len()))
        .min(fit.len());
    let centroids = centroid::fit(&embeddings, k)?;
    let knn_k = opts.knn_k.max(1);
    let index = EmbeddedIndex::new(embeddings.view(), ids.clone(), &EmbeddedConfig::default())
        .map_err(|e| centroid::CentroidError::Fit(e.to_string()))?;

    let mut scores: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for (_, e) in &holdout {
        scores
            .entry(CENTROID.into())
            .or_default()
            .push(centroid::nearest_distance(&centroids, e));
        if let Some(s) = knn_distance(&index, e, knn_k) {
            scores.entry(KNN.into()).or_default().push(s);
        }
    }
    let mut thresholds = BTreeMap::new();
    for (name, s) in &scores {
        if let Some(t) = threshold::calibrate(s, opts.target_far) {
            if t.method != "quantile" {
                tracing::warn!(
                    scorer = %name,
                    held_out = s.len(),
                    target_far = opts.target_far,
                    "too few held-out normal windows to calibrate this false-alarm rate; threshold set above the largest held-out score (learn from more normal audio)"
                );
            }
            thresholds.insert(name.clone(), t);
        }
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
            holdout_windows: holdout.len(),
            holdout_clips,
        },
        kmeans_k: k,
        knn_k,
        thresholds,
        sources: clips.iter().map(|c| c.name.clone()).collect(),
        files: BTreeMap::new(),
        level: level_stats(clips),
        impulse: super::impulse::from_clips(clips),
        coverage_warning: coverage_warning(holdout.len(), opts, window),
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

/// The coverage check of [`super::coverage`], logged where `learn` runs.
fn coverage_warning(
    held_out: usize,
    opts: &LearnOptions,
    window: WindowSpec,
) -> Option<super::coverage::CoverageWarning> {
    let w = super::coverage::check(
        held_out,
        opts.target_far,
        window.hop_seconds,
        opts.holdout_fraction,
    )?;
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

/// Splits into (fit, holdout, number of held-out clips). With several clips, every
/// `1/fraction`-th clip (spread over the list, deterministic) is held out; with one clip,
/// its last `fraction` of windows, minus the windows that overlap the fit part.
fn split(clips: &[ClipWindows], fraction: f64, window: WindowSpec) -> (Windows, Windows, usize) {
    let id = |c: &ClipWindows, t: f64| format!("{}@{t:.3}", c.name);
    let usable: Vec<&ClipWindows> = clips.iter().filter(|c| !c.windows.is_empty()).collect();
    let mut fit = Vec::new();
    let mut hold = Vec::new();
    if usable.len() >= 2 {
        let n = usable.len();
        let n_hold = ((n as f64 * fraction).round() as usize).clamp(1, n - 1);
        let held: Vec<usize> = (0..n_hold)
            .map(|i| (i * n) / n_hold + n / (2 * n_hold))
            .map(|i| i.min(n - 1))
            .collect();
        for (i, c) in usable.iter().enumerate() {
            let dest = if held.contains(&i) {
                &mut hold
            } else {
                &mut fit
            };
            dest.extend(c.windows.iter().map(|(t, e)| (id(c, *t), e.clone())));
        }
        return (fit, hold, n_hold);
    }
    let Some(c) = usable.first() else {
        return (fit, hold, 0);
    };
    let n = c.windows.len();
    let n_hold = ((n as f64 * fraction).round() as usize).max(1);
    let overlap = (window.seconds / window.hop_seconds.max(1e-9)).ceil() as usize - 1;
    let cut = n.saturating_sub(n_hold);
    for (i, (t, e)) in c.windows.iter().enumerate() {
        if i + overlap < cut {
            fit.push((id(c, *t), e.clone()));
        } else if i >= cut {
            hold.push((id(c, *t), e.clone()));
        }
    }
    (fit, hold, 1)
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
