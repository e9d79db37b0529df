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
use super::melstats::{Accum, Fusion, Norm};
use super::profile::MelInfo;
use super::profile::{
    Calibration, Counts, FORMAT, LevelStats, Manifest, ModelRef, Profile, VERSION, WindowSpec,
};
use super::replay::WindowRecord;
use super::{CENTROID, FUSED, KNN, MEL, WindowScores, centroid, knn_distance, rate, threshold};
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
    /// Mel bands of the windows' log-mel (`ClipWindows::logmels`): fit the `mel` scorer's
    /// statistics and the `fused` score. `None`: neither.
    pub mel_bins: Option<usize>,
    /// The scorers the decision uses: only these get thresholds (the false-alarm budget is
    /// shared among them). Scorers named here but not computed are left out (`fused`
    /// without log-mel statistics becomes `knn`); if none is left, `centroid` and `knn`
    /// decide.
    pub decide_on: Vec<String>,
}

/// The scorers that decide unless configured otherwise (`learn.decide_on`): centroid and
/// `fused`, which on the dev set detect more anomalous clips with fewer false events than
/// centroid and `knn` (README "Scorers that use what the network sees"). Without log-mel
/// statistics `fused` falls back to `knn` ([`deciding_scorers`]).
pub fn default_decide_on() -> Vec<String> {
    vec![CENTROID.into(), FUSED.into()]
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
            mel_bins: None,
            decide_on: default_decide_on(),
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
    /// Per window, its log-mel (`frames x mel_bins`, same order; empty when not kept: then
    /// no `mel`/`fused` scorer).
    pub logmels: Vec<Vec<f32>>,
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
    let mel_total = opts.mel_bins.and_then(|dim| mel_accum(clips, dim));
    // Too little audio for the statistics (fewer than 2 frames per band) is not an error:
    // the log-mel scorers are then off, the embedding's decide.
    let mel = mel_total.as_ref().and_then(|a| match a.fit() {
        Ok(g) => Some(g),
        Err(e) => {
            tracing::warn!(error = %e, "no log-mel statistics: the mel and fused scorers are off");
            None
        }
    });
    let mel_total = mel_total.filter(|_| mel.is_some());
    let (mut held, folds) = cross_scores(clips, &units, k, knn_k, window, d, mel_total.as_ref())?;
    let fusion = fuse_held(&mut held);
    let mut scores: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for w in held.iter().flatten() {
        for (name, v) in w.named_scores() {
            scores.entry(name.into()).or_default().push(v as f32);
        }
    }
    let longest = held.iter().map(Vec::len).max().unwrap_or(0);
    if longest < opts.decide.trigger_n {
        let needed = window.seconds + (opts.decide.trigger_n - 1) as f64 * window.hop_seconds;
        tracing::warn!(
            windows = longest,
            trigger_n = opts.decide.trigger_n,
            "held-out normal audio comes in runs of at most {longest} windows, fewer than the {} windows the rule needs to start an event: learn cannot see how often normal audio would, so each threshold is set just above every held-out window; learn from recordings of at least {needed:.1} s, or with a shorter window",
            opts.decide.trigger_n
        );
    }
    let deciding = deciding_scorers(&opts.decide_on, &scores);
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
    let budget = opts.false_alarms_per_day / deciding.len().max(1) as f64;
    let mut thresholds = BTreeMap::new();
    let mut per_scorer = BTreeMap::new();
    for (name, s) in scores.iter().filter(|(n, _)| deciding.contains(*n)) {
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
        mel: mel_total
            .as_ref()
            .zip(opts.mel_bins)
            .map(|(a, dim)| MelInfo {
                dim,
                frames: a.frames(),
                fusion,
                frame_floor: a.quietest(),
            }),
    };

    let profile = Profile {
        dir: Default::default(),
        machine: opts.machine.clone(),
        model: model.name,
        manifest,
        embeddings,
        ids,
        centroids,
        mel,
        feedback_mel: Default::default(),
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

/// The sums of every window's log-mel frames, or `None` when some window has none (the
/// log-mel was not kept) or the sizes do not fit `dim` bands.
fn mel_accum(clips: &[ClipWindows], dim: usize) -> Option<Accum> {
    let ok = clips.iter().all(|c| {
        c.logmels.len() == c.windows.len()
            && c.logmels
                .iter()
                .all(|m| !m.is_empty() && m.len() % dim.max(1) == 0)
    });
    if !ok || dim == 0 || clips.iter().all(|c| c.windows.is_empty()) {
        return None;
    }
    let mut a = Accum::new(dim);
    clips.iter().flat_map(|c| &c.logmels).for_each(|m| a.add(m));
    Some(a)
}

/// Normalises `knn` and `mel` by their held-out scores and sets every held-out window's
/// `fused` score; `None` (no fused score) when either has too few held-out values.
fn fuse_held(held: &mut [Vec<WindowRecord>]) -> Option<Fusion> {
    let all = |f: &dyn Fn(&WindowScores) -> Option<f32>| -> Vec<f32> {
        held.iter().flatten().filter_map(|w| f(&w.scores)).collect()
    };
    let fusion = Fusion {
        knn: Norm::of(&all(&|s| s.knn))?,
        mel: Norm::of(&all(&|s| s.mel))?,
    };
    for w in held.iter_mut().flatten() {
        w.scores.fused = fusion.score(w.scores.knn, w.scores.mel);
    }
    Some(fusion)
}

/// The configured deciding scorers that have held-out scores; `centroid` and `knn` when none.
fn deciding_scorers(decide_on: &[String], scores: &BTreeMap<String, Vec<f32>>) -> Vec<String> {
    let known = [CENTROID, KNN, MEL, FUSED];
    let mut v: Vec<String> = Vec::new();
    for n in decide_on.iter().filter(|n| known.contains(&n.as_str())) {
        // `fused` without log-mel statistics (not kept, or too few held-out scores): `knn`,
        // its embedding half, decides in its place.
        let n = if n == FUSED && !scores.contains_key(FUSED) {
            KNN.to_string()
        } else {
            n.clone()
        };
        if scores.contains_key(n.as_str()) && !v.contains(&n) {
            v.push(n);
        }
    }
    if v.is_empty() {
        if !decide_on.is_empty() {
            tracing::warn!(
                ?decide_on,
                "none of the scorers in learn.decide_on was computed (the log-mel scorers need the log-mel): centroid and knn decide"
            );
        }
        return vec![CENTROID.into(), KNN.into()];
    }
    v
}

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
    mel_total: Option<&Accum>,
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
        // The fold's log-mel model: all frames minus those of the excluded windows (fewer to
        // add up than the kept ones).
        let mut mel_out = mel_total.map(|t| Accum::new(t.dim()));
        for (ci, c) in clips.iter().enumerate() {
            for (wi, (t, e)) in c.windows.iter().enumerate() {
                if !excluded(ci, wi) {
                    ids.push(window_id(c, *t));
                    rows.push(e);
                } else if let (Some(a), Some(m)) = (mel_out.as_mut(), c.logmels.get(wi)) {
                    a.add(m);
                }
            }
        }
        let mel_model = match (mel_total, &mel_out) {
            (Some(t), Some(o)) => t.minus(o).fit().ok(),
            _ => None,
        };
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
                            mel: mel_model
                                .as_ref()
                                .zip(c.logmels.get(wi))
                                .and_then(|(g, m)| g.score(m)),
                            fused: None,
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

#[cfg(test)]
mod mel_tests {
    use super::deciding_scorers;

    #[test]
    fn fused_without_log_mel_statistics_gives_way_to_knn() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all: BTreeMap<String, Vec<f32>> = [CENTROID, KNN, MEL, FUSED]
            .iter()
            .map(|n| (n.to_string(), vec![0.0]))
            .collect();
        let no_mel: BTreeMap<String, Vec<f32>> = [CENTROID, KNN]
            .iter()
            .map(|n| (n.to_string(), vec![0.0]))
            .collect();
        let cf = names(&[CENTROID, FUSED]);
        assert_eq!(deciding_scorers(&cf, &all), cf);
        assert_eq!(deciding_scorers(&cf, &no_mel), names(&[CENTROID, KNN]));
        // Named twice after the substitution: once.
        assert_eq!(
            deciding_scorers(&names(&[KNN, FUSED]), &no_mel),
            names(&[KNN])
        );
        // Only `mel`, not computed: the old default.
        assert_eq!(
            deciding_scorers(&names(&[MEL]), &no_mel),
            names(&[CENTROID, KNN])
        );
    }

    use super::*;
    use crate::score::melstats::MEL;
    use rand::{Rng, SeedableRng};

    const BANDS: usize = 8;
    const FRAMES: usize = 12;

    /// A window: a random unit embedding and log-mel frames around a fixed spectrum, with a
    /// shared level per frame; `shift` adds energy to the top bands (a new noise band).
    fn frames_window(rng: &mut impl Rng, shift: f32) -> (Vec<f32>, Vec<f32>) {
        let mut e: Vec<f32> = (0..16).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        crate::score::normalize(&mut e);
        let mut m = Vec::with_capacity(FRAMES * BANDS);
        for _ in 0..FRAMES {
            let level: f32 = rng.random_range(-0.5..0.5);
            for b in 0..BANDS {
                let top = if b >= BANDS - 2 { shift } else { 0.0 };
                m.push(2.0 - 0.1 * b as f32 + level + 0.05 * rng.random_range(-1.0f32..1.0) + top);
            }
        }
        (e, m)
    }

    fn clip(rng: &mut impl Rng, i: usize) -> ClipWindows {
        let (mut windows, mut logmels) = (Vec::new(), Vec::new());
        for w in 0..10 {
            let (e, m) = frames_window(rng, 0.0);
            windows.push((w as f64 * 0.5, e));
            logmels.push(m);
        }
        ClipWindows {
            name: format!("c{i}"),
            windows,
            levels_dbfs: Vec::new(),
            impulse_db: Vec::new(),
            logmels,
        }
    }

    #[test]
    fn learn_fits_log_mel_statistics_that_flag_a_new_band_and_survive_save_and_load() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
        let clips: Vec<ClipWindows> = (0..12).map(|i| clip(&mut rng, i)).collect();
        let model = ModelRef {
            name: "test".into(),
            architecture: "test".into(),
            onnx_sha256: "0".repeat(64),
            sample_rate: 16_000,
            embedding_dim: 16,
            untrained: true,
        };
        let window = WindowSpec {
            seconds: 1.0,
            hop_seconds: 0.5,
            level_dbfs: None,
            embed: Default::default(),
        };
        let opts = LearnOptions {
            mel_bins: Some(BANDS),
            ..Default::default()
        };
        let (profile, cal) = learn(&clips, &opts, model, window).expect("learn");
        let info = profile
            .manifest
            .mel
            .expect("mel statistics in the manifest");
        assert_eq!(info.dim, BANDS);
        assert_eq!(info.frames, (12 * 10 * FRAMES) as u64);
        assert!(info.fusion.is_some(), "fusion normalisation");
        // Held-out scores exist for all four scorers; only the default ones decide.
        for s in [CENTROID, KNN, MEL, FUSED] {
            assert_eq!(cal.holdout_scores[s].len(), 120, "{s}");
        }
        let deciding: Vec<&String> = profile.manifest.thresholds.keys().collect();
        assert_eq!(deciding, [CENTROID, FUSED]);

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p");
        profile.save(&path, &cal).expect("save");
        let back = crate::score::Profile::load(&path).expect("load");
        assert_eq!(back.mel, profile.mel);
        let scorer = crate::score::Scorer::new(&back).expect("scorer");
        let score = |shift: f32, rng: &mut rand_xoshiro::Xoshiro256PlusPlus| {
            let (e, m) = frames_window(rng, shift);
            scorer.score_window(&e, Some(&m))
        };
        let normal = score(0.0, &mut rng);
        let banded = score(0.5, &mut rng);
        let (nm, bm) = (normal.mel.expect("mel"), banded.mel.expect("mel"));
        assert!(bm > 3.0 * nm, "a new band: mel {bm} vs normal {nm}");
        // The embedding cannot see it here (random embeddings), the fused score still does.
        assert!(banded.fused.expect("fused") > normal.fused.expect("fused") + 3.0);
        assert_eq!(
            scorer.score(&[0.0; 16]).mel,
            None,
            "no log-mel, no mel score"
        );

        // A corrupted statistics file is refused at load, naming it.
        std::fs::write(path.join(crate::score::profile::MEL_FILE), [0u8; 8]).expect("write");
        let err = crate::score::Profile::load(&path).expect_err("corrupt melstats");
        assert!(err.to_string().contains("melstats.f32"), "{err}");

        // Deciding on the fused score: it alone gets a threshold, and the profile loads.
        let opts = LearnOptions {
            mel_bins: Some(BANDS),
            decide_on: vec![FUSED.into()],
            ..Default::default()
        };
        let (p2, cal2) =
            learn(&clips, &opts, profile.manifest.model.clone(), window).expect("learn");
        let deciding: Vec<&String> = p2.manifest.thresholds.keys().collect();
        assert_eq!(deciding, [FUSED]);
        let path2 = dir.path().join("p2");
        p2.save(&path2, &cal2).expect("save");
        crate::score::Profile::load(&path2).expect("a fused-only profile loads");
    }
}
