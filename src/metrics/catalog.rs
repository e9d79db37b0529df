//! Sound catalog metrics: whether the daemon compares anomalies with a catalog, and what the
//! events it compared sounded like.

use prometheus::{IntCounterVec, IntGauge, Registry};

use super::counter;
use super::names::*;

/// The catalog's metric families (one set per process: the catalog is shared by all monitors).
#[derive(Clone)]
pub struct CatalogMetrics {
    entries: IntGauge,
    refused: IntGauge,
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
        let events = counter(
            r,
            SOUNDS_LIKE_EVENTS,
            "Anomaly events started, by the catalog label they sound like most (none: no catalog or nothing close; other: beyond the labels given a series) and whether that label is benign.",
            &["monitor", "sounds_like", "benign"],
        )?;
        Ok(Self {
            entries,
            refused,
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

    /// One anomaly event started; `sounds_like` is already one of the bounded values
    /// (`catalog::known::KnownSounds::metric_label`).
    pub fn event(&self, monitor: &str, sounds_like: &str, benign: bool) {
        let benign = if benign { "true" } else { "false" };
        self.events
            .with_label_values(&[monitor, sounds_like, benign])
            .inc();
    }
}
