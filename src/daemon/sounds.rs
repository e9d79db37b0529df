//! The sound catalog as the running daemon holds it: loaded at start and at every reload
//! (SIGHUP), so sounds added with `earshot catalog add` reach running monitors without a
//! restart, and shared by all monitors, which read it only when an event fires.
//!
//! A catalog that cannot be used (made with another model, damaged) never stops monitoring:
//! it is logged as an error, shown as `earshot_catalog_refused 1`, and events go on without
//! `sounds_like` until a reload finds a usable one.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::catalog::known::KnownSounds;
use crate::config::Settings;
use crate::metrics::Metrics;

/// The catalog in use (None: none), swapped whole by [`reload`].
#[derive(Clone, Default)]
pub struct KnownHandle(Arc<RwLock<Option<Arc<KnownSounds>>>>);

impl KnownHandle {
    /// The catalog in use now.
    pub fn current(&self) -> Option<Arc<KnownSounds>> {
        self.0.read().clone()
    }

    fn set(&self, k: Option<Arc<KnownSounds>>) {
        *self.0.write() = k;
    }
}

/// Loads the catalog `settings` name, checked against the configured model, into `handle`;
/// says what happened in the log and the catalog metrics.
pub fn reload(handle: &KnownHandle, settings: &Settings, metrics: &Metrics) {
    let cfg = &settings.catalog;
    let dir = cfg.dir(&settings.state_dir());
    let refuse = |why: String| {
        tracing::error!(
            catalog = %dir.display(),
            error = %why,
            "sound catalog refused: anomaly events are still detected and alerted, without `sounds_like`; fix the catalog and reload (systemctl reload earshot)"
        );
        metrics.catalog().refused();
        handle.set(None);
    };
    if !cfg.sounds_like {
        tracing::info!(
            "catalog.sounds_like = false: events are not compared with the sound catalog"
        );
        metrics.catalog().in_use(0);
        handle.set(None);
        return;
    }
    if let crate::catalog::known::CatalogIndex::Azure(a) = &cfg.index {
        // Looking an event up in Azure would put a network round trip (and its failures)
        // between an anomaly and its alert; the shared catalog is for `earshot search`.
        tracing::warn!(
            index = %a.index_name,
            "the sound catalog is in Azure AI Search: `earshot catalog` and `earshot search` use it, but events are compared with an embedded catalog only, so they carry no `sounds_like`"
        );
        metrics.catalog().in_use(0);
        handle.set(None);
        return;
    }
    let card = settings
        .find_model_dir()
        .map_err(|e| e.to_string())
        .and_then(|d| crate::embed::card::ModelCard::load(&d).map_err(|e| e.to_string()));
    let (card, card_path) = match card {
        Ok(c) => c,
        Err(e) => return refuse(format!("cannot read the model card to check it: {e}")),
    };
    match KnownSounds::load(cfg, &settings.state_dir(), &card, &card_path) {
        Ok(None) => {
            tracing::info!(
                catalog = %dir.display(),
                "no sound catalog entries here: events carry no `sounds_like` (add labelled sounds with `earshot catalog add --label NAME WAV...`, then reload)"
            );
            metrics.catalog().in_use(0);
            handle.set(None);
        }
        Ok(Some(k)) => {
            let labels = k.catalog().known_labels();
            tracing::info!(
                catalog = %dir.display(),
                entries = k.catalog().len(),
                labels = %labels,
                top = cfg.top,
                min_similarity = cfg.min_similarity,
                "anomaly events are compared with the sound catalog (`sounds_like`)"
            );
            let unknown = k.unknown_benign();
            if !unknown.is_empty() {
                tracing::warn!(
                    benign = ?unknown,
                    known = %labels,
                    "catalog.benign names labels the catalog does not hold: they cannot match until sounds with that label are added"
                );
            }
            metrics.catalog().in_use(k.catalog().len());
            handle.set(Some(Arc::new(k)));
        }
        Err(e) => refuse(e.to_string()),
    }
}
