//! The sound catalog as the running daemon holds it: loaded at start and at every reload
//! (SIGHUP), so sounds added with `earshot catalog add` reach running monitors without a
//! restart, and shared by all monitors, which read it only when an event fires.
//!
//! An embedded catalog is read from its directory. An Azure AI Search catalog is held as a
//! copy ([`azure`]): kept in the state directory, refreshed in the background, so that naming
//! a fault never waits on the network and an outage (or a restart during one) leaves events
//! their `sounds_like`.
//!
//! A catalog that cannot be used (made with another model, damaged) never stops monitoring:
//! it is logged as an error, shown as `earshot_catalog_refused 1`, and events go on without
//! `sounds_like` until a reload finds a usable one.

mod azure;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::catalog::known::{CatalogIndex, KnownSounds};
use crate::config::Settings;
use crate::metrics::Metrics;

/// The catalog in use (None: none), swapped whole by [`reload`] and by the refresher of an
/// Azure catalog's copy.
#[derive(Clone, Default)]
pub struct KnownHandle(Arc<Inner>);

#[derive(Default)]
struct Inner {
    current: RwLock<Option<Arc<KnownSounds>>>,
    /// Bumped by every reload: a refresher started by an earlier one may no longer set
    /// the catalog (its settings are gone).
    generation: AtomicU64,
    /// Dropping it stops the running refresher.
    stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

impl KnownHandle {
    /// The catalog in use now.
    pub fn current(&self) -> Option<Arc<KnownSounds>> {
        self.0.current.read().clone()
    }

    /// Starts a new generation: stops the refresher of the previous one.
    fn begin(&self) -> u64 {
        self.0.stop.lock().take();
        self.0.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Sets the catalog if `generation` is still the current one; false if it is not.
    fn set(&self, generation: u64, k: Option<Arc<KnownSounds>>) -> bool {
        let mut cur = self.0.current.write();
        if self.0.generation.load(Ordering::SeqCst) != generation {
            return false;
        }
        *cur = k;
        true
    }

    fn is_current(&self, generation: u64) -> bool {
        self.0.generation.load(Ordering::SeqCst) == generation
    }

    fn keep_refresher(&self, stop: std::sync::mpsc::Sender<()>) {
        *self.0.stop.lock() = Some(stop);
    }

    /// A handle holding `k` (unit tests of the stages that use it).
    #[cfg(test)]
    pub(crate) fn holding(k: KnownSounds) -> Self {
        let h = Self::default();
        let generation = h.begin();
        h.set(generation, Some(Arc::new(k)));
        h
    }
}

/// Loads the catalog `settings` name, checked against the configured model, into `handle`;
/// says what happened in the log and the catalog metrics. With an Azure catalog this sets
/// the local copy (if any) and starts refreshing it in the background.
pub fn reload(handle: &KnownHandle, settings: &Settings, metrics: &Metrics) {
    let generation = handle.begin();
    let cfg = &settings.catalog;
    let refuse = |location: &str, why: String| {
        refused(handle, generation, location, &why, metrics.catalog());
    };
    if !cfg.sounds_like {
        tracing::info!(
            "catalog.sounds_like = false: events are not compared with the sound catalog"
        );
        metrics.catalog().in_use(0);
        handle.set(generation, None);
        return;
    }
    let location = match &cfg.index {
        CatalogIndex::Embedded => cfg.dir(&settings.state_dir()).display().to_string(),
        CatalogIndex::Azure(a) => format!("index `{}` at {}", a.index_name, a.endpoint),
    };
    let card = settings
        .find_model_dir()
        .map_err(|e| e.to_string())
        .and_then(|d| crate::embed::card::ModelCard::load(&d).map_err(|e| e.to_string()));
    let (card, card_path) = match card {
        Ok(c) => c,
        Err(e) => {
            return refuse(
                &location,
                format!("cannot read the model card to check it: {e}"),
            );
        }
    };
    if let CatalogIndex::Azure(a) = &cfg.index {
        azure::start(azure::Copy {
            handle: handle.clone(),
            generation,
            settings: cfg.clone(),
            azure: (**a).clone(),
            dir: azure::copy_dir(&settings.state_dir(), &a.index_name),
            card,
            card_path,
            metrics: metrics.catalog().clone(),
        });
        return;
    }
    match KnownSounds::load(cfg, &settings.state_dir(), &card, &card_path) {
        Ok(None) => {
            tracing::info!(
                catalog = %location,
                "no sound catalog entries here: events carry no `sounds_like` (add labelled sounds with `earshot catalog add --label NAME WAV...`, then reload)"
            );
            metrics.catalog().in_use(0);
            handle.set(generation, None);
        }
        Ok(Some(k)) => {
            in_use(&k, &location, metrics.catalog());
            handle.set(generation, Some(Arc::new(k)));
        }
        Err(e) => refuse(&location, e.to_string()),
    }
}

/// A catalog that cannot be used: none is, and the log and metrics say so.
fn refused(
    handle: &KnownHandle,
    generation: u64,
    location: &str,
    why: &dyn std::fmt::Display,
    metrics: &crate::metrics::CatalogMetrics,
) {
    tracing::error!(
        catalog = %location,
        error = %why,
        "sound catalog refused: anomaly events are still detected and alerted, without `sounds_like`; fix the catalog and reload (systemctl reload earshot)"
    );
    metrics.refused();
    handle.set(generation, None);
}

/// Says that `k` is the catalog events are compared with now.
fn in_use(k: &KnownSounds, location: &str, metrics: &crate::metrics::CatalogMetrics) {
    let cfg = k.settings();
    let labels = k.catalog().known_labels();
    tracing::info!(
        catalog = %location,
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
    metrics.in_use(k.catalog().len());
}
