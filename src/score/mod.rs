//! Scoring windows against the learned normal model.
//!
//! Scores per window; the decision uses those the profile has thresholds for
//! (`learn.decide_on`):
//! - `centroid`: Euclidean distance to the nearest k-means centre of normal embeddings;
//! - `knn`: mean cosine distance to the k nearest normal embeddings;
//! - `mel`: Mahalanobis distance of the window's log-mel frames to the normal frames'
//!   Gaussian ([`melstats`]), when the profile has log-mel statistics;
//! - `fused`: `knn` and `mel` in units of their own spread on held-out normal audio, averaged
//!   ([`melstats::Fusion`]).
//!
//! Embeddings are L2-normalised first, so both scores live on a fixed scale (0..2) whatever
//! the model, and loudness alone does not move them.

pub mod centroid;
pub mod coverage;
pub mod decide;
pub mod impulse;
pub mod learn;
pub mod melstats;
pub mod profile;
pub mod rate;
pub mod replay;
pub mod signal;
pub mod threshold;

pub use learn::{LearnError, LearnOptions, learn};
pub use profile::{Profile, ProfileError};
pub use threshold::Threshold;

use crate::index::{EmbeddedConfig, EmbeddedIndex};
use serde::Serialize;

pub const CENTROID: &str = "centroid";
pub const KNN: &str = "knn";
pub use melstats::{FUSED, MEL};

/// L2-normalises in place. An all-zero vector (possible with ReLU outputs on digital silence)
/// stays zero: its cosine distance to anything is then 1, a defined, finite score.
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 1e-12 && n.is_finite() {
        v.iter_mut().for_each(|x| *x /= n);
    } else {
        v.iter_mut().for_each(|x| *x = 0.0);
    }
}

/// Scores of one window; `knn` is `None` when the index could not answer in time, `mel` and
/// `fused` when the profile has no log-mel statistics (or the log-mel was not kept).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Default)]
pub struct WindowScores {
    pub centroid: f32,
    pub knn: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mel: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fused: Option<f32>,
}

impl WindowScores {
    /// The (scorer, score) pairs present, in the order the daemon builds them.
    pub fn named(&self) -> Vec<(&'static str, f32)> {
        let mut v = vec![(CENTROID, self.centroid)];
        for (n, s) in [(KNN, self.knn), (MEL, self.mel), (FUSED, self.fused)] {
            if let Some(s) = s {
                v.push((n, s));
            }
        }
        v
    }

    /// The score of scorer `name`, if present.
    pub fn get(&self, name: &str) -> Option<f32> {
        self.named()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s)
    }

    /// The scores from the embedding's two, the window's log-mel and the profile's
    /// statistics (the one place `mel` and `fused` are derived, for every path). `nearest`
    /// is the id of the window's nearest normal neighbour: when it is a row feedback added
    /// and the window's `mel` score is within that event's ceiling, the window is the sound
    /// marked normal, and its log-mel counts as normal (no `mel` score, `fused` from the
    /// k-NN half alone; see [`melstats::mel_ceiling`]).
    pub fn with_mel(
        centroid: f32,
        knn: Option<f32>,
        nearest: Option<&str>,
        logmel: Option<&[f32]>,
        p: &Profile,
    ) -> Self {
        let mut mel = match (&p.mel, logmel) {
            (Some(g), Some(x)) if !x.is_empty() => g.score(x),
            _ => None,
        };
        let marked_normal = match (mel, nearest.and_then(|id| p.feedback_mel_ceiling(id))) {
            (Some(m), Some(ceiling)) => m <= ceiling,
            _ => false,
        };
        let fusion = p.manifest.mel.as_ref().and_then(|m| m.fusion);
        let fused = if marked_normal {
            mel = None;
            fusion.and_then(|f| f.score_normal_mel(knn))
        } else {
            fusion.and_then(|f| f.score(knn, mel))
        };
        Self {
            centroid,
            knn,
            mel,
            fused,
        }
    }
}

/// Exact k-NN score of `q` over the normal embeddings in `index` (mean of the k smallest
/// cosine distances; see [`crate::index::knn_score`]).
pub fn knn_distance(index: &EmbeddedIndex, q: &[f32], k: usize) -> Option<f32> {
    knn_nearest(index, q, k).0
}

/// [`knn_distance`] and the id of the nearest neighbour.
pub fn knn_nearest(index: &EmbeddedIndex, q: &[f32], k: usize) -> (Option<f32>, Option<String>) {
    match index.search(q, k) {
        Ok(n) => (crate::index::knn_score(&n), n.first().map(|x| x.id.clone())),
        Err(_) => (None, None),
    }
}

/// The offline scorer: centroids and exact k-NN over the profile's own embeddings.
pub struct Scorer<'a> {
    pub profile: &'a Profile,
    index: EmbeddedIndex,
}

impl<'a> Scorer<'a> {
    pub fn new(profile: &'a Profile) -> Result<Self, crate::index::IndexError> {
        let index = exact_index(profile)?;
        Ok(Self { profile, index })
    }

    /// Scores a normalised embedding.
    pub fn score(&self, emb: &[f32]) -> WindowScores {
        self.score_window(emb, None)
    }

    /// Scores a normalised embedding and, when given and the profile has log-mel statistics,
    /// the window's log-mel (`mel` and `fused`).
    pub fn score_window(&self, emb: &[f32], logmel: Option<&[f32]>) -> WindowScores {
        let (knn, nearest) = knn_nearest(&self.index, emb, self.profile.manifest.knn_k);
        WindowScores::with_mel(
            centroid::nearest_distance(&self.profile.centroids, emb),
            knn,
            nearest.as_deref(),
            logmel,
            self.profile,
        )
    }

    pub fn threshold(&self, scorer: &str) -> Option<f32> {
        self.profile
            .manifest
            .thresholds
            .get(scorer)
            .map(|t| t.value)
    }
}

/// The exact in-memory index over a profile's normal embeddings.
pub fn exact_index(profile: &Profile) -> Result<EmbeddedIndex, crate::index::IndexError> {
    EmbeddedIndex::new(
        profile.embeddings.view(),
        profile.ids.clone(),
        &EmbeddedConfig::default(),
    )
}
