//! Live pickup of a changed normal memory: `earshot feedback` rewrites a monitor's profile
//! (more or fewer normal windows, the impulse level kept above them; same model, window and
//! thresholds), and the scoring thread swaps its centroids, k-NN memory and impulse level
//! between two windows, without a restart and without
//! losing audio. Anything else that changed (a new `learn`: other thresholds, model or
//! window) waits for a SIGHUP, which restarts the monitor as before. A profile that does not
//! load never replaces the working one: it is logged once and the old memory stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::index::{IndexConfig, VectorIndex};
use crate::score::Profile;

/// How often the manifest is looked at (one small file read and hash).
const CHECK_EVERY: Duration = Duration::from_millis(500);

pub(super) struct ProfileWatch {
    dir: PathBuf,
    index: IndexConfig,
    /// sha256 of the manifest last seen (loaded or refused).
    seen: Option<String>,
    last_check: Instant,
}

/// A new memory to score with: the profile and, for an embedded index, its index.
pub(super) struct Swap {
    pub profile: Profile,
    pub index: Option<Arc<dyn VectorIndex>>,
}

impl ProfileWatch {
    pub fn new(dir: PathBuf, index: IndexConfig) -> Self {
        let seen = manifest_hash(&dir);
        Self {
            dir,
            index,
            seen,
            last_check: Instant::now(),
        }
    }

    /// A new memory when the profile on disk changed since last seen and can replace
    /// `current` (same model, window and thresholds); `None` otherwise.
    pub fn poll(&mut self, current: &Profile, monitor: &str) -> Option<Swap> {
        if self.last_check.elapsed() < CHECK_EVERY {
            return None;
        }
        self.last_check = Instant::now();
        let now = manifest_hash(&self.dir);
        if now.is_none() || now == self.seen {
            return None;
        }
        self.seen = now;
        let p = match Profile::load(&self.dir) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(monitor, error = %e, "the profile on disk changed but does not load: scoring goes on with the memory already loaded");
                return None;
            }
        };
        let m = (&p.manifest, &current.manifest);
        if m.0.model != m.1.model
            || m.0.window != m.1.window
            || m.0.knn_k != m.1.knn_k
            || m.0.impulse.is_some() != m.1.impulse.is_some()
            || m.0.level != m.1.level
            || m.0.thresholds != m.1.thresholds
        {
            tracing::warn!(monitor, profile = %self.dir.display(), "the profile was learned again (model, window or thresholds differ): send SIGHUP (systemctl reload earshot) to apply it; scoring goes on with the memory already loaded");
            return None;
        }
        let index = match &self.index {
            IndexConfig::Embedded(cfg) => {
                match crate::index::EmbeddedIndex::new(p.embeddings.view(), p.ids.clone(), cfg) {
                    Ok(i) => Some(Arc::new(i) as Arc<dyn VectorIndex>),
                    Err(e) => {
                        tracing::error!(monitor, error = %e, "cannot index the changed profile: scoring goes on with the memory already loaded");
                        return None;
                    }
                }
            }
            // The remote index is changed by `earshot feedback` itself; only the centroids
            // are local.
            IndexConfig::Azure(_) => None,
        };
        tracing::info!(
            monitor,
            profile = %self.dir.display(),
            windows = p.embeddings.nrows(),
            was = current.embeddings.nrows(),
            centroids = p.centroids.nrows(),
            impulse_level_db = ?p.manifest.impulse.map(|l| l.level_db),
            "normal memory reloaded from the changed profile (feedback); embedding thresholds unchanged"
        );
        Some(Swap { profile: p, index })
    }
}

fn manifest_hash(dir: &std::path::Path) -> Option<String> {
    crate::files::read_regular(&dir.join("manifest.json"))
        .ok()
        .map(|b| crate::score::profile::sha256_hex(&b))
}
