//! Known faults in events: what an anomaly "sounds like" among the catalog's labelled sounds,
//! and whether that label is one the plant has declared benign (a forklift passing, cleaning).
//!
//! The daemon looks the event's anomalous windows up once, when the event fires, and the
//! answer ([`SoundsLike`]) travels inside the event from then on: the events file, the alert
//! annotations, the events page, the log line and the metric all read that one record, so
//! they cannot disagree. [`KnownSounds`] is the catalog as the daemon uses it: loaded once
//! (start, reload), checked against the running model, with the `[catalog]` settings.

use super::search::{Filter, search_embedded, sounds_like};
use super::store::{Catalog, CatalogError, check_name};
use crate::embed::card::ModelCard;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// At most this many catalog labels become values of the metric label `sounds_like` (the
/// benign ones first, then the others by name); the rest are counted as `other`. Each value
/// is a time series per monitor: a catalog with hundreds of labels must not become hundreds
/// of series.
pub const MAX_METRIC_LABELS: usize = 32;
/// Metric label value of an event no catalog label resembles closely enough (or with no
/// catalog in use).
pub const METRIC_NONE: &str = "none";
/// Metric label value of a label beyond [`MAX_METRIC_LABELS`].
pub const METRIC_OTHER: &str = "other";

/// What a benign match does to the event's alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BenignAction {
    /// The event is written (events file, log, evidence, metrics) but sent to no alert
    /// target.
    #[default]
    Record,
    /// The event is alerted with the label `severity = "info"`, for receivers to route to a
    /// quieter channel.
    LowSeverity,
}

impl BenignAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BenignAction::Record => "record",
            BenignAction::LowSeverity => "low_severity",
        }
    }
}

/// Where the catalog's entries live: `[catalog.index]`, `kind = "embedded"` (the default: a
/// directory, `dir`) or `kind = "azure"` (an Azure AI Search index of its own, with the same
/// keys as `[[monitor]] index`). A shared Azure catalog lets several edge PCs add to and search
/// one set of labelled sounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CatalogIndex {
    #[default]
    Embedded,
    Azure(Box<crate::index::AzureConfig>),
}

/// `[catalog]`: the sound catalog the daemon compares anomalies with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSettings {
    /// Catalog directory (default: `catalog` in the state directory, where
    /// `earshot catalog add` puts it).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Look events up in the catalog at all. With no catalog (or an empty one) nothing is
    /// added to events either way.
    #[serde(default = "default_true")]
    pub sounds_like: bool,
    /// Labels named per event, most similar first.
    #[serde(default = "default_top")]
    pub top: usize,
    /// Cosine similarity (1 = identical) a label needs to be named at all.
    #[serde(default = "default_min_similarity")]
    pub min_similarity: f32,
    /// Labels of sounds that are not faults: an event whose nearest label is one of these is
    /// handled by `benign_action`.
    #[serde(default)]
    pub benign: Vec<String>,
    #[serde(default)]
    pub benign_action: BenignAction,
    /// Embedded (in `dir`) or Azure AI Search.
    #[serde(default)]
    pub index: CatalogIndex,
    /// With an Azure catalog: how often the daemon checks it for sounds added or removed
    /// (from any edge PC) and refreshes its copy. A reload (SIGHUP) refreshes at once.
    #[serde(
        default = "default_refresh",
        with = "crate::capture::settings::serde_duration"
    )]
    pub refresh: std::time::Duration,
}

fn default_refresh() -> std::time::Duration {
    std::time::Duration::from_secs(600)
}

fn default_true() -> bool {
    true
}
fn default_top() -> usize {
    2
}
fn default_min_similarity() -> f32 {
    0.5
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self {
            dir: None,
            sounds_like: true,
            top: default_top(),
            min_similarity: default_min_similarity(),
            benign: Vec::new(),
            benign_action: BenignAction::default(),
            index: CatalogIndex::default(),
            refresh: default_refresh(),
        }
    }
}

impl CatalogSettings {
    /// Checks the settings; the error is `(key, what is wrong)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=10).contains(&self.top) {
            return Err(("top".into(), format!("{} must be in 1..=10", self.top)));
        }
        let s = self.min_similarity;
        if !(s.is_finite() && (0.0..=1.0).contains(&s)) {
            return Err((
                "min_similarity".into(),
                format!("{s} must be a cosine similarity in 0..=1 (1 = identical sounds)"),
            ));
        }
        for b in &self.benign {
            check_name("label", b, 128)
                .map_err(|e| ("benign".into(), format!("{e} (a catalog label)")))?;
        }
        if let CatalogIndex::Azure(a) = &self.index {
            a.validate().map_err(|e| ("index".into(), e.to_string()))?;
        }
        if self.refresh < std::time::Duration::from_secs(10) {
            return Err((
                "refresh".into(),
                format!(
                    "{} is too often: the whole catalog may be read each time; use \"10s\" or more (default \"10m\")",
                    humantime::format_duration(self.refresh)
                ),
            ));
        }
        Ok(())
    }

    /// The catalog directory: configured, else `<state_dir>/catalog`.
    pub fn dir(&self, state_dir: &Path) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| state_dir.join("catalog"))
    }
}

/// One label an event sounds like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Similar {
    pub label: String,
    /// Cosine similarity of the closest (anomalous window, catalog window) pair.
    pub similarity: f32,
}

/// What an event sounds like, decided when it fired and kept for all its messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoundsLike {
    /// The nearest labels, most similar first, each at least `min_similarity`; empty when
    /// the catalog holds nothing that close.
    pub labels: Vec<Similar>,
    /// Set when the nearest label is benign: what was done with the event's alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub benign: Option<BenignAction>,
    /// Anomalous windows that were compared with the catalog.
    pub windows: usize,
}

impl SoundsLike {
    /// `bearing squeal (0.93), belt slip (0.71)`; empty when nothing matched.
    pub fn text(&self) -> String {
        let pairs: Vec<(String, f32)> = self
            .labels
            .iter()
            .map(|s| (s.label.clone(), s.similarity))
            .collect();
        super::format_sounds_like(&pairs)
    }

    /// The nearest label, if any was close enough.
    pub fn nearest(&self) -> Option<&str> {
        self.labels.first().map(|s| s.label.as_str())
    }

    /// True when the event's alerts must not be sent (benign, `benign_action = "record"`).
    pub fn suppresses_alerts(&self) -> bool {
        self.benign == Some(BenignAction::Record)
    }
}

/// The catalog in use by the daemon, with its settings.
#[derive(Debug)]
pub struct KnownSounds {
    catalog: Catalog,
    settings: CatalogSettings,
    /// Values the metric label may take besides `none` and `other`.
    metric_labels: BTreeSet<String>,
}

impl KnownSounds {
    /// Loads the embedded catalog the settings name and checks it against the running model
    /// (an Azure catalog reaches the daemon as a copy: see `daemon::sounds`).
    /// `Ok(None)`: nothing to compare with (disabled, no catalog, or an empty one), which is
    /// not an error. A catalog of another model or a damaged one is an error saying what to do.
    pub fn load(
        settings: &CatalogSettings,
        state_dir: &Path,
        card: &ModelCard,
        card_path: &Path,
    ) -> Result<Option<KnownSounds>, CatalogError> {
        if !settings.sounds_like || settings.index != CatalogIndex::Embedded {
            return Ok(None);
        }
        match Catalog::open(&settings.dir(state_dir))? {
            Some(c) => Self::checked(c, settings, card, card_path),
            None => Ok(None),
        }
    }

    /// `catalog` for the daemon, if it has entries and the running model made them.
    pub fn checked(
        catalog: Catalog,
        settings: &CatalogSettings,
        card: &ModelCard,
        card_path: &Path,
    ) -> Result<Option<KnownSounds>, CatalogError> {
        if catalog.is_empty() {
            return Ok(None);
        }
        catalog.check_model(card, card_path)?;
        Ok(Some(Self::new(catalog, settings.clone())))
    }

    /// A catalog already loaded and checked.
    pub fn new(catalog: Catalog, settings: CatalogSettings) -> KnownSounds {
        let all: BTreeSet<&str> = catalog.entries().iter().map(|e| e.label.as_str()).collect();
        let mut metric_labels: BTreeSet<String> = BTreeSet::new();
        let benign_known = settings
            .benign
            .iter()
            .filter(|b| all.contains(b.as_str()))
            .map(String::as_str);
        for l in benign_known.chain(all.iter().copied()) {
            if metric_labels.len() >= MAX_METRIC_LABELS {
                break;
            }
            metric_labels.insert(l.to_string());
        }
        KnownSounds {
            catalog,
            settings,
            metric_labels,
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn settings(&self) -> &CatalogSettings {
        &self.settings
    }

    /// Benign labels the catalog does not hold (typos, or sounds not added yet): they can
    /// never match, which the daemon says at start.
    pub fn unknown_benign(&self) -> Vec<&str> {
        self.settings
            .benign
            .iter()
            .filter(|b| !self.catalog.entries().iter().any(|e| &e.label == *b))
            .map(String::as_str)
            .collect()
    }

    /// What the anomalous windows (`(stream offset, unit embedding)`) sound like. Each
    /// catalog clip scores its best pair with any of the windows; labels are named once, at
    /// their best clip.
    pub fn identify(&self, windows: &[(f64, Vec<f32>)]) -> Result<SoundsLike, CatalogError> {
        let matches = search_embedded(
            &self.catalog,
            windows,
            &Filter::default(),
            self.catalog.len(),
        )?;
        let labels: Vec<Similar> = sounds_like(&matches, self.settings.top)
            .into_iter()
            .filter(|(_, s)| *s >= self.settings.min_similarity)
            .map(|(label, similarity)| Similar { label, similarity })
            .collect();
        let benign = labels
            .first()
            .filter(|s| self.settings.benign.contains(&s.label))
            .map(|_| self.settings.benign_action);
        Ok(SoundsLike {
            labels,
            benign,
            windows: windows.len(),
        })
    }

    /// The metric label value of an event's answer: its nearest label if that is one of the
    /// bounded set, `other` if not, `none` without one.
    pub fn metric_label(&self, s: Option<&SoundsLike>) -> String {
        metric_label(s, |l| self.metric_labels.contains(l))
    }
}

/// [`KnownSounds::metric_label`] with the set given as a predicate (`none` without a label).
pub fn metric_label(s: Option<&SoundsLike>, known: impl Fn(&str) -> bool) -> String {
    match s.and_then(SoundsLike::nearest) {
        None => METRIC_NONE.to_string(),
        Some(l) if known(l) => l.to_string(),
        Some(_) => METRIC_OTHER.to_string(),
    }
}

/// A catalog in memory with one entry per (label, 3-d embedding), for unit tests of what
/// uses one.
#[cfg(test)]
pub(crate) fn test_catalog(labels: &[(&str, [f32; 3])]) -> Catalog {
    use crate::catalog::Entry;
    use crate::score::profile::{ModelRef, WindowSpec};
    let model: ModelRef = serde_json::from_value(serde_json::json!({
        "name": "m", "architecture": "a", "onnx_sha256": "ab", "sample_rate": 16000,
        "embedding_dim": 3, "untrained": true
    }))
    .unwrap();
    let window: WindowSpec = serde_json::from_value(serde_json::json!({
        "seconds": 1.0, "hop_seconds": 0.5, "level_dbfs": -10.0
    }))
    .unwrap();
    let mut c = Catalog::new(Path::new("/nonexistent"), model, window);
    for (i, (l, v)) in labels.iter().enumerate() {
        let source = format!("/{l}-{i}.wav");
        let e = Entry {
            id: crate::catalog::entry_id(&source, Some(0.0)),
            label: l.to_string(),
            machine: None,
            source,
            offset_s: 0.0,
            end_s: 1.0,
            whole_clip: false,
            note: None,
            added: String::new(),
        };
        c.upsert(e, v.to_vec()).unwrap();
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_catalog as catalog;

    fn unit(v: [f32; 3]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn nearest_label_first_and_far_ones_left_out() {
        let k = KnownSounds::new(
            catalog(&[
                ("bearing squeal", [1.0, 0.0, 0.0]),
                ("belt slip", [0.0, 1.0, 0.0]),
                ("forklift", [0.0, 0.0, 1.0]),
            ]),
            CatalogSettings {
                top: 3,
                min_similarity: 0.3,
                ..CatalogSettings::default()
            },
        );
        let s = k
            .identify(&[(0.0, unit([0.9, 0.4, 0.0])), (0.5, unit([1.0, 0.1, 0.0]))])
            .unwrap();
        assert_eq!(s.nearest(), Some("bearing squeal"));
        assert_eq!(s.labels.len(), 2, "forklift is orthogonal: {s:?}");
        // The best pair counts: the second window is almost exactly the bearing entry.
        assert!(s.labels[0].similarity > 0.99, "{s:?}");
        assert_eq!(s.text(), "bearing squeal (1.00), belt slip (0.41)");
        assert_eq!(s.benign, None);
        assert!(!s.suppresses_alerts());
        assert_eq!(k.metric_label(Some(&s)), "bearing squeal");
        assert_eq!(k.metric_label(None), METRIC_NONE);
    }

    #[test]
    fn benign_only_when_the_nearest_label_is() {
        let settings = CatalogSettings {
            benign: vec!["forklift".into(), "cleaning".into()],
            benign_action: BenignAction::Record,
            ..CatalogSettings::default()
        };
        let k = KnownSounds::new(
            catalog(&[("bearing", [1.0, 0.0, 0.0]), ("forklift", [0.0, 1.0, 0.0])]),
            settings,
        );
        assert_eq!(k.unknown_benign(), vec!["cleaning"]);
        let s = k.identify(&[(0.0, unit([0.2, 1.0, 0.0]))]).unwrap();
        assert_eq!(s.benign, Some(BenignAction::Record));
        assert!(s.suppresses_alerts());
        let s = k.identify(&[(0.0, unit([1.0, 0.6, 0.0]))]).unwrap();
        assert_eq!(s.nearest(), Some("bearing"));
        assert_eq!(s.benign, None, "forklift is second, not nearest");
    }

    #[test]
    fn metric_labels_are_capped() {
        let names: Vec<String> = (0..MAX_METRIC_LABELS + 5)
            .map(|i| format!("l{i:03}"))
            .collect();
        let rows: Vec<(&str, [f32; 3])> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), [1.0, i as f32, 0.5]))
            .collect();
        let last = names.last().unwrap().clone();
        let k = KnownSounds::new(
            catalog(&rows),
            CatalogSettings {
                benign: vec![last.clone()],
                ..CatalogSettings::default()
            },
        );
        let answer = |l: &str| SoundsLike {
            labels: vec![Similar {
                label: l.into(),
                similarity: 0.9,
            }],
            benign: None,
            windows: 1,
        };
        // The benign label keeps its own value even though it sorts last.
        assert_eq!(k.metric_label(Some(&answer(&last))), last);
        assert_eq!(k.metric_label(Some(&answer("l000"))), "l000");
        let over = &names[MAX_METRIC_LABELS + 2];
        assert_eq!(k.metric_label(Some(&answer(over))), METRIC_OTHER);
    }

    #[test]
    fn settings_name_the_bad_key() {
        let bad = |s: CatalogSettings| s.validate().unwrap_err().0;
        assert_eq!(
            bad(CatalogSettings {
                top: 0,
                ..Default::default()
            }),
            "top"
        );
        assert_eq!(
            bad(CatalogSettings {
                min_similarity: 1.5,
                ..Default::default()
            }),
            "min_similarity"
        );
        assert_eq!(
            bad(CatalogSettings {
                benign: vec![" forklift".into()],
                ..Default::default()
            }),
            "benign"
        );
        assert!(CatalogSettings::default().validate().is_ok());
    }
}
