//! The normal profile: what `earshot learn` writes and every scorer reads.
//!
//! A directory of versioned files with a manifest, so that a profile can be inspected,
//! copied to another edge PC, or indexed remotely without earshot-specific tools:
//! `manifest.json` (what, from which model, thresholds), `embeddings.f32` and
//! `centroids.f32` (little-endian f32 rows, L2-normalised embeddings), `ids.txt` (one id
//! per embedding row: `<clip>@<start seconds>`), `calibration.json` (held-out scores).

use super::threshold::Threshold;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "earshot-profile";
pub const VERSION: u32 = 1;

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
    /// Signal level of the normal audio (absent in profiles learned before it existed: then
    /// only digital silence counts as "no signal").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<LevelStats>,
}

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
}

/// A loaded profile. `embeddings` rows and `ids` line up.
#[derive(Debug, Clone)]
pub struct Profile {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub embeddings: Array2<f32>,
    pub ids: Vec<String>,
    pub centroids: Array2<f32>,
    pub machine: String,
    pub model: String,
}

impl Profile {
    pub fn dim(&self) -> usize {
        self.embeddings.ncols()
    }

    pub fn load(dir: &Path) -> Result<Profile, ProfileError> {
        let mpath = dir.join("manifest.json");
        if !mpath.is_file() {
            return Err(ProfileError::Missing {
                path: dir.to_owned(),
            });
        }
        let invalid = |detail: String| ProfileError::Invalid {
            path: dir.to_owned(),
            detail,
        };
        let text = read_string(&mpath)?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| invalid(format!("manifest.json: {e}")))?;
        if manifest.format != FORMAT || manifest.version != VERSION {
            return Err(invalid(format!(
                "format {:?} version {} is not one this earshot reads ({FORMAT:?} version {VERSION}); re-run `earshot learn`",
                manifest.format, manifest.version
            )));
        }
        let d = manifest.model.embedding_dim;
        let embeddings = read_matrix(&dir.join("embeddings.f32"), d)?;
        let centroids = read_matrix(&dir.join("centroids.f32"), d)?;
        let ids: Vec<String> = read_string(&dir.join("ids.txt"))?
            .lines()
            .map(str::to_owned)
            .collect();
        if ids.len() != embeddings.nrows() {
            return Err(invalid(format!(
                "ids.txt has {} lines but embeddings.f32 has {} rows",
                ids.len(),
                embeddings.nrows()
            )));
        }
        if embeddings.nrows() != manifest.counts.fit_windows
            || centroids.nrows() != manifest.kmeans_k
        {
            return Err(invalid(
                "embeddings or centroids do not match the counts in manifest.json".into(),
            ));
        }
        if embeddings.iter().any(|v| !v.is_finite()) {
            return Err(invalid(
                "embeddings.f32 holds NaN or infinite values".into(),
            ));
        }
        Ok(Profile {
            dir: dir.to_owned(),
            machine: manifest.machine.clone(),
            model: manifest.model.name.clone(),
            manifest,
            embeddings,
            ids,
            centroids,
        })
    }

    /// Writes the profile into `dir` (created if needed). Files are written beside and then
    /// renamed, so a crash never leaves a half-written profile that loads.
    pub fn save(&self, dir: &Path, calibration: &Calibration) -> Result<(), ProfileError> {
        std::fs::create_dir_all(dir).map_err(|source| ProfileError::Io {
            path: dir.to_owned(),
            source,
        })?;
        write_atomic(&dir.join("embeddings.f32"), &matrix_bytes(&self.embeddings))?;
        write_atomic(&dir.join("centroids.f32"), &matrix_bytes(&self.centroids))?;
        let mut ids = self.ids.join("\n");
        ids.push('\n');
        write_atomic(&dir.join("ids.txt"), ids.as_bytes())?;
        let cal = serde_json::to_vec_pretty(calibration).map_err(|e| ProfileError::Invalid {
            path: dir.to_owned(),
            detail: e.to_string(),
        })?;
        write_atomic(&dir.join("calibration.json"), &cal)?;
        // The manifest goes last: its presence marks a complete profile.
        let man = serde_json::to_vec_pretty(&self.manifest).map_err(|e| ProfileError::Invalid {
            path: dir.to_owned(),
            detail: e.to_string(),
        })?;
        write_atomic(&dir.join("manifest.json"), &man)
    }
}

fn read_string(path: &Path) -> Result<String, ProfileError> {
    std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
        path: path.to_owned(),
        source,
    })
}

fn read_matrix(path: &Path, d: usize) -> Result<Array2<f32>, ProfileError> {
    let bytes = std::fs::read(path).map_err(|source| ProfileError::Io {
        path: path.to_owned(),
        source,
    })?;
    if d == 0 || bytes.len() % (4 * d) != 0 {
        return Err(ProfileError::Invalid {
            path: path.to_owned(),
            detail: format!(
                "{} bytes is not a whole number of {d}-dimensional rows",
                bytes.len()
            ),
        });
    }
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Array2::from_shape_vec((v.len() / d, d), v).map_err(|e| ProfileError::Invalid {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

fn matrix_bytes(m: &Array2<f32>) -> Vec<u8> {
    m.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ProfileError> {
    let tmp = path.with_extension("part");
    let io = |source| ProfileError::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
