//! Sound catalog metrics: whether the daemon compares anomalies with a catalog, how fresh its
//! copy of an Azure catalog is, and what the events it compared sounded like.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Registry};

use super::counter;
use super::names::*;

/// The catalog's metric families (one set per process: the catalog is shared by all monitors).
#[derive(Clone)]
pub struct CatalogMetrics {
    entries: IntGauge,
    refused: IntGauge,
    synced: Gauge,
    sync_failures: IntCounter,
    events: IntCounterVec,
}

impl CatalogMetrics {
    pub(super) fn register(r: &Registry) -> prometheus::Result<Self> {
        let entries = IntGauge::new(
            CATALOG_ENTRIES,
            "Entries of the sound catalog anomalies are compared with (0: none in use).",
        )?;
        r.register(Box::new(entries.clone()))?;
        let refused = IntGauge::new(
            CATALOG_REFUSED,
            "1 while the configured sound catalog cannot be used (another model's, or damaged); events then carry no sounds_like.",
        )?;
        r.register(Box::new(refused.clone()))?;
        let synced = Gauge::new(
            CATALOG_SYNCED,
            "With an Azure AI Search catalog: Unix time the daemon's copy was last confirmed current (0: never since start). Alert on time() minus this.",
        )?;
        r.register(Box::new(synced.clone()))?;
        let sync_failures = IntCounter::new(
            CATALOG_SYNC_FAILURES,
            "Refreshes of the daemon's copy of an Azure AI Search catalog that failed (the copy in use stays).",
        )?;
        r.register(Box::new(sync_failures.clone()))?;
        let events = counter(
            r,
            SOUNDS_LIKE_EVENTS,
            "Anomaly events started, by the catalog label they sound like most (none: no catalog or nothing close; other: beyond the labels given a series) and whether that label is benign.",
            &["monitor", "sounds_like", "benign"],
        )?;
        Ok(Self {
            entries,
            refused,
            synced,
            sync_failures,
            events,
        })
    }

    /// A catalog of `entries` entries is in use (0: none, without error).
    pub fn in_use(&self, entries: usize) {
        self.entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.refused.set(0);
    }

    /// The configured catalog was refused: nothing is compared until a reload brings a usable
    /// one.
    pub fn refused(&self) {
        self.entries.set(0);
        self.refused.set(1);
    }

    /// The copy of the Azure catalog was confirmed current (refreshed, or unchanged) now.
    pub fn synced(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.synced.set(now);
    }

    /// A refresh of the copy of the Azure catalog failed.
    pub fn sync_failed(&self) {
        self.sync_failures.inc();
    }

    /// One anomaly event started; `sounds_like` is already one of the bounded values
    /// (`catalog::known::KnownSounds::metric_label`).
    pub fn event(&self, monitor: &str, sounds_like: &str, benign: bool) {
        let benign = if benign { "true" } else { "false" };
        self.events
            .with_label_values(&[monitor, sounds_like, benign])
            .inc();
    }
}
