//! The normal profile: what `earshot learn` writes and every scorer reads.
//!
//! A directory of versioned files with a manifest, so that a profile can be inspected,
//! copied to another edge PC, or indexed remotely without earshot-specific tools:
//! `manifest.json` (what, from which model, thresholds), `embeddings.f32` and
//! `centroids.f32` (little-endian f32 rows, L2-normalised embeddings), `ids.txt` (one id
//! per embedding row: `<clip>@<start seconds>`), `calibration.json` (held-out scores).
//!
//! The manifest carries the sha256 of every other file, so a profile whose files do not all
//! come from one `learn` is refused instead of giving wrong verdicts. `learn` over an existing
//! profile writes a complete new directory beside it (files and directory fsynced) and swaps
//! it in with one atomic rename: a crash leaves either the old profile or the new one.

use super::threshold::Threshold;
use crate::embed::EmbedMode;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "earshot-profile";
/// 2: the manifest carries checksums of the other files (`files`).
pub const VERSION: u32 = 2;
/// The files a profile must have, besides manifest.json.
pub const DATA_FILES: [&str; 4] = [
    "embeddings.f32",
    "centroids.f32",
    "ids.txt",
    "calibration.json",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub created: String,
    pub earshot_version: String,
    pub machine: String,
    pub model: ModelRef,
    pub window: WindowSpec,
    pub counts: Counts,
    pub kmeans_k: usize,
    pub knn_k: usize,
    /// Per scorer ("centroid", "knn").
    pub thresholds: BTreeMap<String, Threshold>,
    pub sources: Vec<String>,
    /// sha256 (hex) of every other file of the profile, by file name; written by `save`.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Signal level of the normal audio (absent in profiles learned before it existed: then
    /// only digital silence counts as "no signal").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<LevelStats>,
    /// Level of the impulse scorer (absent in profiles learned before it existed: then the
    /// impulse rule is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impulse: Option<super::impulse::ImpulseLevel>,
    /// Set when the thresholds rest on too few held-out windows (see `score::coverage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage_warning: Option<super::coverage::CoverageWarning>,
    /// What the thresholds mean in false events per day (absent in profiles learned before
    /// thresholds were calibrated that way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub false_alarms: Option<super::rate::FalseAlarms>,
    /// Log-mel statistics (the `mel` and `fused` scorers); absent in profiles learned before
    /// them or without the log-mel: those scorers are then off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mel: Option<MelInfo>,
}

/// What `melstats.f32` holds and how the fused score is normalised.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MelInfo {
    /// Mel bands (the model's front end).
    pub dim: usize,
    /// Log-mel frames the statistics were fitted on.
    pub frames: u64,
    /// Absent when the held-out scores were too few to normalise: then no `fused` score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<super::melstats::Fusion>,
    /// The quietest normal frame's level ([`super::melstats::MelGauss::floor`]); absent in
    /// profiles learned before it was kept (then every frame counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_floor: Option<f32>,
}

/// The profile file of the log-mel statistics (mean and whitening matrix, f32 LE).
pub const MEL_FILE: &str = "melstats.f32";

/// How loud the normal audio was, for telling "no signal" (device or machine off) from sound.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LevelStats {
    /// 1st percentile over normal windows of the quietest quarter's RMS (dBFS).
    pub quietest_dbfs: f64,
    /// Below this (dBFS, quietest quarter of a window) a window has no signal.
    pub floor_dbfs: f64,
    /// `quietest_dbfs - floor_dbfs` as chosen at learn time.
    pub margin_db: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    pub name: String,
    pub architecture: String,
    pub onnx_sha256: String,
    pub sample_rate: u32,
    pub embedding_dim: usize,
    pub untrained: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub seconds: f64,
    pub hop_seconds: f64,
    /// RMS level (dBFS) windows were normalised to before embedding; `None` = not normalised.
    #[serde(default)]
    pub level_dbfs: Option<f64>,
    /// How windows became embeddings ([`crate::embed::chunkmax`]); profiles from before the
    /// mode existed are exact.
    #[serde(default, skip_serializing_if = "EmbedMode::is_exact")]
    pub embed: EmbedMode,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub clips: usize,
    pub fit_windows: usize,
    pub holdout_windows: usize,
    pub holdout_clips: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Calibration {
    /// Held-out normal scores per scorer, as calibrated.
    pub holdout_scores: BTreeMap<String, Vec<f32>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "{path}: no profile here (manifest.json missing); make one with `earshot learn --normal <WAVs> --out {path}`"
    )]
    Missing { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid profile: {detail}")]
    Invalid { path: PathBuf, detail: String },
    #[error(
        "{path}: no profile here, but an interrupted `earshot learn` left the previous one in {backup}: rename it back to {path}, or re-run `earshot learn`"
    )]
    Interrupted { path: PathBuf, backup: PathBuf },
    #[error("{0}")]
    File(#[from] crate::files::PathError),
}

/// A loaded profile. `embeddings` rows and `ids` line up.
#[derive(Debug, Clone)]
pub struct Profile {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub embeddings: Array2<f32>,
    pub ids: Vec<String>,
    pub centroids: Array2<f32>,
    /// The `mel` scorer's model, when `manifest.mel` says there is one.
    pub mel: Option<super::melstats::MelGauss>,
    /// Per event marked normal by feedback (`feedback.json`): the `mel` score up to which a
    /// window whose nearest neighbour is one of its rows counts as normal
    /// ([`super::melstats::mel_ceiling`]).
    pub feedback_mel: std::collections::BTreeMap<String, f32>,
    pub machine: String,
    pub model: String,
}

impl Profile {
    pub fn dim(&self) -> usize {
        self.embeddings.ncols()
    }

    /// The `mel` ceiling of the feedback event whose row `neighbor_id` is, if it is one
    /// (ids `feedback:<event id>@<t>[#n]`).
    pub fn feedback_mel_ceiling(&self, neighbor_id: &str) -> Option<f32> {
        if self.feedback_mel.is_empty() {
            return None;
        }
        let rest = neighbor_id.strip_prefix(crate::feedback::ID_PREFIX)?;
        let (event, _) = rest.rsplit_once('@')?;
        self.feedback_mel.get(event).copied()
    }

    /// Loads and checks a profile: every file must match the checksum in manifest.json and
    /// every value must be usable (thresholds present and finite, k >= 1, finite vectors, a
    /// sane window and hop, unique ids); errors name the file and the key.
    pub fn load(dir: &Path) -> Result<Profile, ProfileError> {
        let mpath = dir.join("manifest.json");
        if !mpath.exists() {
            if let Some(backup) = backup_of(dir) {
                return Err(ProfileError::Interrupted {
                    path: dir.to_owned(),
                    backup,
                });
            }
            return Err(ProfileError::Missing {
                path: dir.to_owned(),
            });
        }
        let invalid = |file: &str, detail: String| ProfileError::Invalid {
            path: dir.join(file),
            detail,
        };
        let text = crate::files::read_regular_string(&mpath)?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| invalid("manifest.json", e.to_string()))?;
        if manifest.format != FORMAT || manifest.version != VERSION {
            return Err(invalid(
                "manifest.json",
                format!(
                    "format {:?} version {} is not one this earshot reads ({FORMAT:?} version {VERSION}); re-run `earshot learn`",
                    manifest.format, manifest.version
                ),
            ));
        }
        let mut data = BTreeMap::new();
        for name in DATA_FILES {
            let Some(expected) = manifest.files.get(name) else {
                return Err(invalid(
                    "manifest.json",
                    format!("`files` has no checksum for {name}; re-run `earshot learn`"),
                ));
            };
            let bytes = crate::files::read_regular(&dir.join(name))?;
            let actual = sha256_hex(&bytes);
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(invalid(
                    name,
                    format!(
                        "its sha256 {} is not the {} that manifest.json records: the profile's files do not come from one `earshot learn` (an interrupted write, or a file copied in); re-run `earshot learn`",
                        &actual[..12],
                        &expected[..12.min(expected.len())]
                    ),
                ));
            }
            data.insert(name, bytes);
        }
        check_manifest(&manifest)
            .map_err(|(k, d)| invalid("manifest.json", format!("`{k}`: {d}")))?;
        let d = manifest.model.embedding_dim;
        let matrix =
            |name: &str| read_matrix(&data[name], d).map_err(|detail| invalid(name, detail));
        let embeddings = matrix("embeddings.f32")?;
        let centroids = matrix("centroids.f32")?;
        let ids: Vec<String> = std::str::from_utf8(&data["ids.txt"])
            .map_err(|_| invalid("ids.txt", "is not UTF-8 text".into()))?
            .lines()
            .map(str::to_owned)
            .collect();
        if ids.len() != embeddings.nrows() {
            return Err(invalid(
                "ids.txt",
                format!(
                    "{} lines but embeddings.f32 has {} rows",
                    ids.len(),
                    embeddings.nrows()
                ),
            ));
        }
        let mut first = BTreeMap::new();
        for (line, id) in ids.iter().enumerate() {
            if let Some(prev) = first.insert(id.as_str(), line + 1) {
                return Err(invalid(
                    "ids.txt",
                    format!(
                        "id {id:?} on lines {prev} and {}: window ids must be unique; re-run `earshot learn`",
                        line + 1
                    ),
                ));
            }
        }
        if embeddings.nrows() != manifest.counts.fit_windows {
            return Err(invalid(
                "embeddings.f32",
                format!(
                    "{} rows but manifest.json `counts.fit_windows` = {}",
                    embeddings.nrows(),
                    manifest.counts.fit_windows
                ),
            ));
        }
        if centroids.nrows() != manifest.kmeans_k {
            return Err(invalid(
                "centroids.f32",
                format!(
                    "{} rows but manifest.json `kmeans_k` = {}",
                    centroids.nrows(),
                    manifest.kmeans_k
                ),
            ));
        }
        for (name, m) in [
            ("embeddings.f32", &embeddings),
            ("centroids.f32", &centroids),
        ] {
            if let Some(row) = m
                .outer_iter()
                .position(|r| r.iter().any(|v| !v.is_finite()))
            {
                return Err(invalid(
                    name,
                    format!("row {row} holds NaN or infinite values; re-run `earshot learn`"),
                ));
            }
        }
        let mel = match &manifest.mel {
            None => None,
            Some(info) => {
                let Some(expected) = manifest.files.get(MEL_FILE) else {
                    return Err(invalid(
                        "manifest.json",
                        format!(
                            "`mel` is set but `files` has no checksum for {MEL_FILE}; re-run `earshot learn`"
                        ),
                    ));
                };
                let bytes = crate::files::read_regular(&dir.join(MEL_FILE))?;
                if !sha256_hex(&bytes).eq_ignore_ascii_case(expected) {
                    return Err(invalid(
                        MEL_FILE,
                        "its sha256 is not the one manifest.json records: the profile's files do not come from one `earshot learn`; re-run `earshot learn`".into(),
                    ));
                }
                if let Some(f) = info.fusion {
                    let ok = |n: super::melstats::Norm| {
                        n.mean.is_finite() && n.std.is_finite() && n.std > 0.0
                    };
                    if !(ok(f.knn) && ok(f.mel)) {
                        return Err(invalid(
                            "manifest.json",
                            "`mel.fusion` needs finite means and positive spreads; re-run `earshot learn`".into(),
                        ));
                    }
                }
                if info.frame_floor.is_some_and(|f| !f.is_finite()) {
                    return Err(invalid(
                        "manifest.json",
                        "`mel.frame_floor` must be a finite number; re-run `earshot learn`".into(),
                    ));
                }
                let mut g = super::melstats::MelGauss::from_bytes(&bytes, info.dim)
                    .map_err(|e| invalid(MEL_FILE, format!("{e}; re-run `earshot learn`")))?;
                g.floor = info.frame_floor;
                Some(g)
            }
        };
        let mut p = Profile {
            dir: dir.to_owned(),
            mel,
            feedback_mel: Default::default(),
            machine: manifest.machine.clone(),
            model: manifest.model.name.clone(),
            manifest,
            embeddings,
            ids,
            centroids,
        };
        // What feedback marked normal (checked against the manifest and the ids).
        p.feedback_mel = crate::feedback::Records::load(&p)
            .map_err(|e| ProfileError::Invalid {
                path: dir.join(crate::feedback::FEEDBACK_FILE),
                detail: e.to_string(),
            })?
            .mel_ceilings();
        Ok(p)
    }

    /// Refuses a model other than the one the profile was learned with: another network
    /// (checksum), another front end (sample rate) or another embedding size would make the
    /// stored embeddings meaningless. `card_path` is named in the error.
    pub fn check_model(
        &self,
        card: &crate::embed::card::ModelCard,
        card_path: &Path,
    ) -> Result<(), ProfileError> {
        let m = &self.manifest.model;
        let mismatch = |key: &str, ours: String, theirs: String| ProfileError::Invalid {
            path: self.dir.join("manifest.json"),
            detail: format!(
                "`model.{key}` = {ours}, but the model card {} says {theirs}: the profile was learned with another model; pass the same model (--model or model.dir) or re-run `earshot learn`",
                card_path.display()
            ),
        };
        if !m.onnx_sha256.eq_ignore_ascii_case(&card.onnx.sha256) {
            return Err(mismatch(
                "onnx_sha256",
                format!(
                    "{} ({:?})",
                    &m.onnx_sha256[..12.min(m.onnx_sha256.len())],
                    m.name
                ),
                format!(
                    "`onnx.sha256` = {} ({:?})",
                    &card.onnx.sha256[..12.min(card.onnx.sha256.len())],
                    card.name
                ),
            ));
        }
        if m.sample_rate != card.sample_rate {
            return Err(mismatch(
                "sample_rate",
                m.sample_rate.to_string(),
                format!("`sample_rate` = {}", card.sample_rate),
            ));
        }
        if m.embedding_dim != card.embedding_dim {
            return Err(mismatch(
                "embedding_dim",
                m.embedding_dim.to_string(),
                format!("`embedding_dim` = {}", card.embedding_dim),
            ));
        }
        Ok(())
    }

    /// Writes the profile to `dir`, replacing any profile there atomically: the files go into
    /// a new directory beside it (each fsynced, then the directory), which is swapped in with
    /// one rename and the old one removed. A crash at any point leaves the old profile or the
    /// new one, never a mix (and a stale temporary directory that the next save removes).
    /// An existing directory that is not a profile is refused, never replaced.
    pub fn save(&self, dir: &Path, calibration: &Calibration) -> Result<(), ProfileError> {
        self.save_with(dir, calibration, &[])
    }

    /// [`Profile::save`] with optional files (e.g. the normal reference clip) written and
    /// checksummed with the others; loading does not require them.
    pub fn save_with(
        &self,
        dir: &Path,
        calibration: &Calibration,
        optional: &[(&str, Vec<u8>)],
    ) -> Result<(), ProfileError> {
        let invalid = |detail: String| ProfileError::Invalid {
            path: dir.to_owned(),
            detail,
        };
        let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
        files.push(("embeddings.f32", matrix_bytes(&self.embeddings)));
        files.push(("centroids.f32", matrix_bytes(&self.centroids)));
        let mut ids = self.ids.join("\n");
        ids.push('\n');
        files.push(("ids.txt", ids.into_bytes()));
        files.push((
            "calibration.json",
            serde_json::to_vec_pretty(calibration).map_err(|e| invalid(e.to_string()))?,
        ));
        if let Some(g) = &self.mel {
            files.push((MEL_FILE, g.to_bytes()));
        }
        for (n, b) in optional {
            files.push((n, b.clone()));
        }
        // What `load` would refuse is never written (an infinite threshold became `null`
        // in JSON once, and the profile could not be read back).
        check_manifest(&self.manifest)
            .map_err(|(key, detail)| invalid(format!("{key}: {detail}")))?;
        let mut manifest = self.manifest.clone();
        manifest.files = files
            .iter()
            .map(|(n, b)| ((*n).to_owned(), sha256_hex(b)))
            .collect();
        let man = serde_json::to_vec_pretty(&manifest).map_err(|e| invalid(e.to_string()))?;
        files.push(("manifest.json", man));
        replace_dir(dir, &files, "earshot profile")
    }
}

/// Writes `files` (name, bytes) as the whole content of directory `dir`, replacing what is
/// there atomically: the files go into a new directory beside it (each fsynced, then the
/// directory), which is swapped in with one rename and the old one removed. A crash at any
/// point leaves the old directory or the new one, never a mix (and a stale temporary
/// directory that the next call removes). `dir` must not exist, be empty, or hold a
/// `manifest.json` (it is one of earshot's own directories, `what` in messages): anything
/// else is refused, never replaced. Profiles and the sound catalog are written this way.
pub fn replace_dir(dir: &Path, files: &[(&str, Vec<u8>)], what: &str) -> Result<(), ProfileError> {
    let invalid = |detail: String| ProfileError::Invalid {
        path: dir.to_owned(),
        detail,
    };
    // A symlinked directory keeps its link: the directory it points to is replaced.
    let dir = match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(dir).map_err(io(dir))?,
        _ => dir.to_owned(),
    };
    let dir = dir.as_path();
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(invalid(format!(
            "not a directory name an {what} can be written to"
        )));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let name = name.to_string_lossy().into_owned();
    let exists = dir.exists();
    if exists {
        if !dir.is_dir() {
            return Err(invalid("exists and is not a directory".into()));
        }
        let empty = std::fs::read_dir(dir).map_err(io(dir))?.next().is_none();
        if !empty && !dir.join("manifest.json").exists() {
            return Err(invalid(format!(
                "exists and is not an {what} (no manifest.json): choose a new directory or empty this one"
            )));
        }
    }
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    remove_stale(parent, &name, exists);

    let tmp = parent.join(format!(".{name}.new-{}", unique_suffix()));
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    let written = (|| {
        for (n, b) in files {
            crate::files::write_synced(&tmp.join(n), b)?;
        }
        crate::files::sync_dir(&tmp)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.into());
    }
    if !exists {
        std::fs::rename(&tmp, dir).map_err(io(dir))?;
        crate::files::sync_dir(parent)?;
        return Ok(());
    }
    match exchange(&tmp, dir) {
        Ok(()) => {
            // `tmp` now holds the old directory.
            crate::files::sync_dir(parent)?;
            remove_old(&tmp);
            Ok(())
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
            // No atomic exchange on this filesystem: move the old directory aside first. A
            // crash between the two renames leaves it at `.<name>.old-*`, which
            // `Profile::load` points to.
            let old = parent.join(format!(".{name}.old-{}", unique_suffix()));
            std::fs::rename(dir, &old).map_err(io(dir))?;
            std::fs::rename(&tmp, dir).map_err(io(dir))?;
            crate::files::sync_dir(parent)?;
            remove_old(&old);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(io(dir)(e))
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ProfileError + '_ {
    move |source| ProfileError::Io {
        path: path.to_owned(),
        source,
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// Swaps two paths atomically (Linux `renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Siblings `.<name>.new-*` (a `learn` interrupted while writing) and, once the profile itself
/// is in place, `.<name>.old-*` (one interrupted after moving the old profile aside).
fn stale_siblings(parent: &Path, name: &str, kind: &str) -> Vec<PathBuf> {
    let prefix = format!(".{name}.{kind}-");
    let mut v: Vec<PathBuf> = std::fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

fn remove_stale(parent: &Path, name: &str, profile_in_place: bool) {
    let mut stale = stale_siblings(parent, name, "new");
    if profile_in_place {
        stale.extend(stale_siblings(parent, name, "old"));
    }
    for p in stale {
        tracing::info!(path = %p.display(), "removing what an interrupted write (`earshot learn`, `catalog add`) left");
        remove_old(&p);
    }
}

fn remove_old(p: &Path) {
    if let Err(e) = std::fs::remove_dir_all(p) {
        tracing::warn!(path = %p.display(), error = %e, "cannot remove the previous profile's files; remove them by hand");
    }
}

/// The newest `.<name>.old-*` beside `dir`: the previous profile, when a `learn` was
/// interrupted between moving it aside and moving the new one in.
fn backup_of(dir: &Path) -> Option<PathBuf> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = dir.file_name()?.to_string_lossy().into_owned();
    stale_siblings(parent, &name, "old")
        .into_iter()
        .filter(|p| p.join("manifest.json").is_file())
        .max()
}

/// Checks the manifest's values; errors are (key, detail).
fn check_manifest(m: &Manifest) -> Result<(), (String, String)> {
    let err = |k: &str, d: String| Err((k.to_owned(), d));
    let model = &m.model;
    if model.embedding_dim == 0 {
        return err("model.embedding_dim", "must be > 0".into());
    }
    if !(crate::audio::MIN_SAMPLE_RATE..=crate::audio::MAX_SAMPLE_RATE).contains(&model.sample_rate)
    {
        return err(
            "model.sample_rate",
            format!("{} Hz is not a model's sample rate", model.sample_rate),
        );
    }
    let w = crate::config::WindowSettings {
        seconds: m.window.seconds,
        hop_seconds: m.window.hop_seconds,
        level_dbfs: m.window.level_dbfs,
        embed: m.window.embed,
    };
    w.check("window.", None)?;
    if !(1..=100).contains(&m.knn_k) {
        return err("knn_k", format!("{} must be in 1..=100", m.knn_k));
    }
    if m.kmeans_k == 0 {
        return err("kmeans_k", "must be >= 1".into());
    }
    // The deciding scorers are those with thresholds (`learn.decide_on`): at least one, each
    // known. centroid and knn must have one unless a log-mel scorer decides instead.
    let known = [super::CENTROID, super::KNN, super::MEL, super::FUSED];
    if let Some(other) = m.thresholds.keys().find(|k| !known.contains(&k.as_str())) {
        return err(
            &format!("thresholds.{other}"),
            format!("is not a scorer this earshot knows ({known:?}); re-run `earshot learn`"),
        );
    }
    let mel_decides =
        m.thresholds.contains_key(super::MEL) || m.thresholds.contains_key(super::FUSED);
    if mel_decides && m.mel.is_none() {
        return err(
            "mel",
            "is missing, but a log-mel scorer has a threshold; re-run `earshot learn`".into(),
        );
    }
    for scorer in known {
        let key = format!("thresholds.{scorer}");
        let Some(t) = m.thresholds.get(scorer) else {
            if !mel_decides && (scorer == super::CENTROID || scorer == super::KNN) {
                return err(
                    &key,
                    "is missing: without it this score could never report a fault; re-run `earshot learn`".into(),
                );
            }
            continue;
        };
        // The fused score is in standard units around the normal mean: it may be negative.
        let signed = scorer == super::FUSED;
        let ok = |v: f32| v.is_finite() && (signed || v >= 0.0);
        let what = if signed {
            "a finite number"
        } else {
            "a finite distance >= 0"
        };
        if !ok(t.value) {
            return err(
                &format!("{key}.value"),
                format!("{} must be {what}", t.value),
            );
        }
        for (field, v) in [("release", t.release), ("transient", t.transient)] {
            if let Some(v) = v.filter(|v| !ok(*v)) {
                return err(&format!("{key}.{field}"), format!("{v} must be {what}"));
            }
        }
    }
    if let Some(l) = &m.level
        && !(l.floor_dbfs.is_finite() && l.quietest_dbfs.is_finite() && l.margin_db.is_finite())
    {
        return err(
            "level",
            "floor_dbfs, quietest_dbfs and margin_db must be finite".into(),
        );
    }
    Ok(())
}

/// Little-endian f32 rows of `d` columns.
pub(crate) fn read_matrix(bytes: &[u8], d: usize) -> Result<Array2<f32>, String> {
    if d == 0 || !bytes.len().is_multiple_of(4 * d) {
        return Err(format!(
            "{} bytes is not a whole number of {d}-dimensional rows",
            bytes.len()
        ));
    }
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Array2::from_shape_vec((v.len() / d, d), v).map_err(|e| e.to_string())
}

fn matrix_bytes(m: &Array2<f32>) -> Vec<u8> {
    m.iter().flat_map(|v| v.to_le_bytes()).collect()
}
