//! Vector indexes of normal embeddings, searched for the k-NN score of each window.
//!
//! Two backends sit behind one [`VectorIndex`] trait so that a monitor can switch between them in
//! config without the scorer knowing: an [`EmbeddedIndex`] (the default: the profile's own
//! embeddings in memory, exact or HNSW) and an [`AzureIndex`] (Azure AI Search over REST).
//! The daemon never calls a remote index directly: it goes through a [`ResilientIndex`] that adds a
//! timeout, bounded concurrency and a circuit breaker, so that a slow or absent service degrades
//! scoring to "centroid only" instead of stalling audio.
//!
//! Distances are cosine distances `d = 1 - cos(q, x)` in both backends (0 = identical direction,
//! 2 = opposite). The k-NN score of a window is the mean of its k nearest distances
//! ([`knn_score`]).

pub mod azure;
pub mod config;
pub mod embedded;
pub mod keys;
pub mod manage;
pub mod resilient;
pub mod retry;
pub mod upload;

use std::sync::Arc;

use ndarray::Array2;

pub use azure::{AzureClient, AzureIndex, IndexSchema, KeySource};
pub use config::{AzureConfig, BreakerConfig, EmbeddedConfig, HnswParams, IndexConfig, SearchMode};
pub use embedded::EmbeddedIndex;
pub use resilient::{BreakerState, IndexHealth, ResilientIndex};
pub use upload::{UploadOptions, UploadReport};

/// One neighbour of a query: the normal window's id (as in the profile) and its cosine distance.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbor {
    pub id: String,
    pub distance: f32,
}

/// A searchable set of normal embeddings.
///
/// `knn` is async because the remote backend is; the embedded backend answers immediately and
/// also offers a synchronous [`EmbeddedIndex::search`] for the offline scorer.
#[async_trait::async_trait]
pub trait VectorIndex: Send + Sync {
    /// Embedding dimension the index holds; queries of another length are refused.
    fn dim(&self) -> usize;
    /// One line for logs: backend, size, mode (never secrets).
    fn describe(&self) -> String;
    /// The k nearest normal embeddings, nearest first, as cosine distances.
    async fn knn(&self, query: &[f32], k: usize) -> Result<Vec<Neighbor>, IndexError>;
    /// The client's circuit breaker state, for backends that have one (metrics publish the
    /// breaker's own state, not a guess from query outcomes).
    fn breaker_state(&self) -> Option<BreakerState> {
        None
    }
}

/// The k-NN score: the mean of the neighbours' distances, `None` when there are none (an empty
/// index must not look perfectly normal).
pub fn knn_score(neighbors: &[Neighbor]) -> Option<f32> {
    if neighbors.is_empty() {
        return None;
    }
    let sum: f64 = neighbors.iter().map(|n| n.distance as f64).sum();
    Some((sum / neighbors.len() as f64) as f32)
}

/// Everything that can go wrong building, filling or querying an index. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index config: {0}")]
    Config(String),
    #[error(
        "Azure AI Search refused the api-key (HTTP {status}: {message}); check the key in {key_source} \
         (an admin key is needed to create indexes and upload, a query key is enough to search)"
    )]
    Auth {
        status: u16,
        message: String,
        key_source: String,
    },
    #[error(
        "index `{index}` does not exist on {endpoint}; create it with `earshot index --profile DIR ...`"
    )]
    NotFound { index: String, endpoint: String },
    #[error("index schema mismatch: {0}")]
    SchemaMismatch(String),
    #[error("query has {got} dimensions but the index holds {expected}-dimensional embeddings")]
    Dimension { expected: usize, got: usize },
    #[error("Azure AI Search answered HTTP {status} ({code}): {message}")]
    Http {
        status: u16,
        code: String,
        message: String,
    },
    #[error(
        "Azure AI Search is throttling (HTTP {status}) and still was after {attempts} attempts"
    )]
    Throttled { status: u16, attempts: u32 },
    #[error("index query timed out after {0} ms")]
    Timeout(u64),
    #[error("could not reach Azure AI Search: {0}")]
    Transport(String),
    #[error("unexpected answer from Azure AI Search: {0}")]
    Protocol(String),
    #[error("upload failed for {failed} document(s), e.g. `{example_id}`: {message}")]
    Upload {
        failed: usize,
        example_id: String,
        message: String,
    },
    /// Circuit breaker open: the daemon scores by centroid only until it closes again.
    #[error("index unavailable (circuit open after repeated failures; last: {last_error})")]
    Unavailable { last_error: String },
    /// All concurrency permits in use: the query is dropped rather than queued.
    #[error("index busy: {0} queries already in flight")]
    Busy(usize),
    #[error("index check failed: {0}")]
    Check(String),
    #[error("building the embedded index: {0}")]
    Build(String),
}

impl IndexError {
    /// True for errors that mean "score this window without k-NN" rather than a bug or config
    /// error: the daemon maps these to centroid-only scoring.
    pub fn is_degraded(&self) -> bool {
        matches!(
            self,
            IndexError::Unavailable { .. }
                | IndexError::Busy(_)
                | IndexError::Timeout(_)
                | IndexError::Transport(_)
                | IndexError::Throttled { .. }
                | IndexError::Http { .. }
        )
    }
}

/// Builds the index a monitor's config asks for, over the profile's normal embeddings for
/// `machine`. The azure backend is wrapped in a [`ResilientIndex`]; it does not upload (that is
/// `earshot index`), but it checks that the remote schema matches `embeddings`' dimension.
pub async fn build(
    cfg: &IndexConfig,
    embeddings: &Array2<f32>,
    ids: &[String],
    machine: &str,
) -> Result<Arc<dyn VectorIndex>, IndexError> {
    cfg.validate()?;
    match cfg {
        IndexConfig::Embedded(e) => {
            let idx = EmbeddedIndex::new(embeddings.view(), ids.to_vec(), e)?;
            Ok(Arc::new(idx))
        }
        IndexConfig::Azure(a) => {
            let client = AzureClient::from_config(a)?;
            let idx = AzureIndex::new(
                client,
                machine.to_string(),
                embeddings.ncols(),
                a.exhaustive,
            );
            match idx.verify_schema().await {
                Ok(_) => {}
                // Unreachable at start-up is not fatal: the breaker keeps scoring by centroid
                // until the service answers. A wrong key or schema is fatal: it will not heal.
                Err(e) if e.is_degraded() => {
                    tracing::warn!(index = %idx.describe(), error = %e, "cannot check the Azure index now; starting degraded");
                }
                Err(e) => return Err(e),
            }
            Ok(Arc::new(ResilientIndex::new(Arc::new(idx), a)))
        }
    }
}
