//! The daemon's copy of a sound catalog kept in Azure AI Search.
//!
//! Events are compared with a copy held in memory, never with the service itself: a lookup
//! over the network would sit between an anomaly and its alert, and an outage would take
//! `sounds_like` away exactly when the plant's network is having a bad day. The copy is:
//!
//! - read from the state directory at start and reload (the last one saved), so that a
//!   daemon restarted during an outage still names faults;
//! - refreshed in the background, at once and then every `[catalog] refresh`, by a thread of
//!   its own: the service is asked for the catalog's `updated` stamp and entry count (two
//!   small requests), and only when they changed for every entry with its embedding;
//! - saved back to the state directory after each refresh that changed it.
//!
//! A refresh that fails keeps the copy in use, counts `earshot_catalog_sync_failures_total`
//! and says so in the log; `earshot_catalog_last_sync_timestamp_seconds` tells how old the
//! copy may be. A catalog of another model (or damaged) is refused like an embedded one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use super::KnownHandle;
use crate::catalog::azure::AzureCatalog;
use crate::catalog::backend::CatalogBackend;
use crate::catalog::known::{CatalogSettings, KnownSounds};
use crate::catalog::{Catalog, CatalogError};
use crate::embed::card::ModelCard;
use crate::index::AzureConfig;
use crate::metrics::CatalogMetrics;

/// Where the copy of the Azure catalog `index_name` is kept.
pub(super) fn copy_dir(state_dir: &Path, index_name: &str) -> PathBuf {
    state_dir.join("catalog-azure").join(index_name)
}

/// Everything the refresher needs, for one generation of the configuration.
pub(super) struct Copy {
    pub handle: KnownHandle,
    pub generation: u64,
    pub settings: CatalogSettings,
    pub azure: AzureConfig,
    /// [`copy_dir`].
    pub dir: PathBuf,
    pub card: ModelCard,
    pub card_path: PathBuf,
    pub metrics: CatalogMetrics,
}

/// What one look at the service found.
enum Look {
    /// The same `updated` stamp and entry count as the copy in use.
    Unchanged,
    /// No catalog in the index yet (or no index).
    NoCatalog,
    /// A new copy, with the stamp it was made at.
    Copied(Box<Catalog>, Stamp),
}

/// The catalog's `updated` (from its manifest document) and entry count: an add or remove
/// from any edge PC changes at least one of them.
type Stamp = (String, usize);

/// How long start-up waits for the first copy when none is saved: long enough for a
/// service that answers, short enough that one that does not delays monitoring only a little.
const FIRST_COPY_WAIT: Duration = Duration::from_secs(5);

/// Sets the saved copy (if usable) and starts refreshing it in the background. Without a
/// usable saved copy it waits up to [`FIRST_COPY_WAIT`] for the first one, so that the
/// first events of a fresh install are named too.
pub(super) fn start(c: Copy) {
    let saved = c.load_saved();
    let (tx, rx) = std::sync::mpsc::channel();
    c.handle.keep_refresher(tx);
    let (first_tx, first_rx) = std::sync::mpsc::sync_channel(1);
    let name = "earshot-catalog".to_string();
    if let Err(e) = std::thread::Builder::new()
        .name(name)
        .spawn(move || c.run(rx, first_tx))
    {
        tracing::error!(error = %e, "cannot start the thread refreshing the copy of the Azure sound catalog: the copy saved in the state directory (if any) stays in use until a reload");
        return;
    }
    if !saved && first_rx.recv_timeout(FIRST_COPY_WAIT).is_err() {
        tracing::warn!(
            waited = %humantime::format_duration(FIRST_COPY_WAIT),
            "the Azure sound catalog has not been read yet: monitoring starts, and events carry no `sounds_like` until it has"
        );
    }
}

impl Copy {
    fn location(&self) -> String {
        format!(
            "index `{}` at {}",
            self.azure.index_name, self.azure.endpoint
        )
    }

    /// The copy saved by an earlier refresh, so that events are named from the first window
    /// even while Azure AI Search does not answer. True if it is in use.
    fn load_saved(&self) -> bool {
        let saved = Catalog::open(&self.dir).and_then(|c| match c {
            Some(c) => {
                let when = c.manifest().updated.clone();
                KnownSounds::checked(c, &self.settings, &self.card, &self.card_path)
                    .map(|k| k.map(|k| (k, when)))
            }
            None => Ok(None),
        });
        match saved {
            Ok(Some((k, when))) => {
                tracing::info!(
                    copy = %self.dir.display(),
                    saved = %when,
                    "using the copy of the Azure sound catalog saved in the state directory until Azure AI Search answers"
                );
                super::in_use(&k, &self.location(), &self.metrics);
                self.handle.set(self.generation, Some(Arc::new(k)));
                true
            }
            Ok(None) => {
                tracing::info!(
                    catalog = %self.location(),
                    "no copy of the Azure sound catalog here yet: reading it"
                );
                self.metrics.in_use(0);
                self.handle.set(self.generation, None);
                false
            }
            Err(e) => {
                // Another model's copy (the model changed) or a damaged one: the service
                // has the catalog; this copy is simply not used.
                tracing::warn!(
                    copy = %self.dir.display(),
                    error = %e,
                    "the saved copy of the Azure sound catalog cannot be used: waiting for Azure AI Search"
                );
                self.metrics.in_use(0);
                self.handle.set(self.generation, None);
                false
            }
        }
    }

    /// Refreshes now, then every `refresh`, until a reload starts another generation.
    /// `first` hears when the first refresh is over (whatever it found).
    fn run(self, stop: Receiver<()>, first: SyncSender<()>) {
        let mut seen: Option<Stamp> = None;
        let mut first = Some(first);
        while self.handle.is_current(self.generation) {
            self.refresh(&mut seen);
            if let Some(f) = first.take() {
                let _ = f.try_send(());
            }
            match stop.recv_timeout(self.settings.refresh) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn look(&self, seen: Option<&Stamp>) -> Result<Look, CatalogError> {
        let az = AzureCatalog::open(&self.azure)?;
        let Some(header) = az.header() else {
            return Ok(Look::NoCatalog);
        };
        az.check_model(&self.card, &self.card_path)?;
        let stamp = (header.updated.clone(), az.count()?);
        if seen == Some(&stamp) {
            return Ok(Look::Unchanged);
        }
        match az.snapshot(&self.dir)? {
            Some(c) => Ok(Look::Copied(Box::new(c), stamp)),
            None => Ok(Look::NoCatalog),
        }
    }

    fn refresh(&self, seen: &mut Option<Stamp>) {
        let look = self.look(seen.as_ref());
        if !self.handle.is_current(self.generation) {
            return;
        }
        match look {
            Ok(Look::Unchanged) => self.metrics.synced(),
            Ok(Look::NoCatalog) => {
                if seen.take().is_some() || self.handle.current().is_some() {
                    tracing::info!(
                        catalog = %self.location(),
                        "the Azure sound catalog holds no catalog (any more): events carry no `sounds_like` (add labelled sounds with `earshot catalog add`)"
                    );
                }
                self.handle.set(self.generation, None);
                self.metrics.in_use(0);
                self.metrics.synced();
            }
            Ok(Look::Copied(mut c, stamp)) => {
                if let Err(e) = c.save() {
                    tracing::warn!(
                        copy = %self.dir.display(),
                        error = %e,
                        "cannot save the copy of the Azure sound catalog: it is used from memory, but a restart while Azure AI Search is unreachable will have none"
                    );
                }
                match KnownSounds::checked(*c, &self.settings, &self.card, &self.card_path) {
                    Ok(Some(k)) => {
                        super::in_use(&k, &self.location(), &self.metrics);
                        self.handle.set(self.generation, Some(Arc::new(k)));
                    }
                    Ok(None) => {
                        tracing::info!(
                            catalog = %self.location(),
                            "the Azure sound catalog is empty: events carry no `sounds_like` (add labelled sounds with `earshot catalog add`)"
                        );
                        self.handle.set(self.generation, None);
                        self.metrics.in_use(0);
                    }
                    Err(e) => return self.refuse(e),
                }
                self.metrics.synced();
                *seen = Some(stamp);
            }
            Err(e @ (CatalogError::OtherModel { .. } | CatalogError::Invalid { .. })) => {
                self.refuse(e)
            }
            Err(e) => {
                self.metrics.sync_failed();
                let held = self.handle.current().map_or(0, |k| k.catalog().len());
                tracing::warn!(
                    catalog = %self.location(),
                    error = %e,
                    entries_in_use = held,
                    retry_in = %humantime::format_duration(self.settings.refresh),
                    "cannot refresh the copy of the Azure sound catalog: events are compared with the copy in use (none if entries_in_use = 0)"
                );
            }
        }
    }

    fn refuse(&self, e: CatalogError) {
        super::refused(
            &self.handle,
            self.generation,
            &self.location(),
            &e,
            &self.metrics,
        );
    }
}
