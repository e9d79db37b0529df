//! The model card: the JSON file beside each ONNX model that says what the model is and how
//! to feed it. earshot trusts the card only after checking the model against it.

use crate::dsp::FrontEnd;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub card_version: u32,
    pub name: String,
    pub architecture: String,
    pub sample_rate: u32,
    pub frontend: FrontEnd,
    pub input: CardInput,
    pub outputs: CardOutputs,
    pub embedding_dim: usize,
    #[serde(default)]
    pub num_classes: Option<usize>,
    /// Fewest log-mel frames the network accepts (its poolings need that many).
    pub min_frames: usize,
    pub onnx: CardOnnx,
    pub provenance: Provenance,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardInput {
    pub name: String,
    pub layout: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardOutputs {
    pub embedding: String,
    #[serde(default)]
    pub clipwise: Option<String>,
    /// Feature maps of inner blocks the graph also returns (for scorers that look at
    /// time-frequency patches before the global pooling), e.g. `["conv_block3"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intermediate: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardOnnx {
    pub file: String,
    pub sha256: String,
    pub opset: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    /// "seeded-random", "audioset-pretrained" (PANNs) or "sfx-pretrained" (aisfx).
    pub weights: String,
    #[serde(default)]
    pub checkpoint: Option<String>,
    #[serde(default)]
    pub checkpoint_sha256: Option<String>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub converted_by: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    /// Where the weights were obtained.
    #[serde(default)]
    pub source: Option<String>,
    /// SPDX id of the weights' licence (e.g. "CC-BY-4.0").
    #[serde(default)]
    pub license: Option<String>,
    /// The credit the licence requires; earshot prints it wherever it names the model.
    #[serde(default)]
    pub attribution: Option<String>,
}

pub const CARD_FILE: &str = "card.json";
pub const SUPPORTED_LAYOUT: &str = "batch,1,frames,mel_bins";

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error(
        "model card {path} not found: a model is a directory with card.json and model.onnx (see models/README.md to make one)"
    )]
    Missing { path: PathBuf },
    #[error("cannot read model card {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model card {path} is not valid: {detail}")]
    Invalid { path: PathBuf, detail: String },
}

impl ModelCard {
    /// Loads `card.json` from a model directory (or a card file given directly).
    pub fn load(path: &Path) -> Result<(ModelCard, PathBuf), CardError> {
        let card_path = if path.is_dir() {
            path.join(CARD_FILE)
        } else {
            path.to_owned()
        };
        if !card_path.exists() {
            return Err(CardError::Missing { path: card_path });
        }
        let text = crate::files::read_regular_string(&card_path).map_err(|e| match e {
            crate::files::PathError::Io { path, source } => CardError::Read { path, source },
            e => CardError::Invalid {
                path: card_path.clone(),
                detail: e.to_string(),
            },
        })?;
        let card: ModelCard = serde_json::from_str(&text).map_err(|e| CardError::Invalid {
            path: card_path.clone(),
            detail: e.to_string(),
        })?;
        card.validate().map_err(|detail| CardError::Invalid {
            path: card_path.clone(),
            detail,
        })?;
        Ok((card, card_path))
    }

    fn validate(&self) -> Result<(), String> {
        if self.card_version != 1 {
            return Err(format!(
                "card_version {} is not supported by this earshot (it reads version 1)",
                self.card_version
            ));
        }
        if self.input.layout != SUPPORTED_LAYOUT {
            return Err(format!(
                "input.layout {:?} is not supported (expected {SUPPORTED_LAYOUT:?})",
                self.input.layout
            ));
        }
        if self.embedding_dim == 0 || self.min_frames == 0 {
            return Err("embedding_dim and min_frames must be > 0".into());
        }
        self.frontend
            .validate(self.sample_rate)
            .map_err(|e| format!("frontend: {e}"))
    }

    /// Shortest window (seconds) this model can embed.
    pub fn min_window_seconds(&self) -> f64 {
        let samples = (self.min_frames - 1) * self.frontend.hop_size;
        samples.max(self.frontend.min_samples()) as f64 / f64::from(self.sample_rate)
    }

    /// True when the weights are not a trained checkpoint (say so wherever scores are shown).
    pub fn is_untrained(&self) -> bool {
        !self.provenance.weights.ends_with("-pretrained")
    }
}
