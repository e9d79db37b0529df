//! Where a catalog's entries are kept, behind one small trait so that `earshot catalog` and
//! `earshot search` run the same steps whether the catalog is a directory ([`EmbeddedCatalog`])
//! or an Azure AI Search index ([`super::azure::AzureCatalog`]).
//!
//! Both backends take entries with the same deterministic ids ([`super::entry_id`]), hold the
//! model and windows they were made with ([`Header`]), and answer searches through the same
//! per-clip [`super::aggregate`], so that a query gets the same clips in the same order from
//! either.

use super::search::{Filter, Match, search_embedded};
use super::store::{Catalog, CatalogError, CatalogLock, Entry, check_model_ref};
use crate::embed::card::ModelCard;
use crate::score::profile::{ModelRef, WindowSpec};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What every entry of a catalog was made with: another model is refused, and queries are cut
/// into the same windows at the same level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub model: ModelRef,
    pub window: WindowSpec,
    /// RFC 3339.
    pub created: String,
    pub updated: String,
}

/// What an add did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddReport {
    pub new: usize,
    /// Entries whose id was there already (the same recording and offset): replaced.
    pub replaced: usize,
    /// Entries in the catalog afterwards.
    pub total: usize,
}

/// A sound catalog, wherever it is kept.
pub trait CatalogBackend {
    /// Where it is, for messages: the directory, or the index and endpoint.
    fn location(&self) -> String;
    /// How to start a catalog for another model with this backend (for the refusal message).
    fn elsewhere(&self) -> &'static str;
    /// The model and windows of its entries; `None` while the catalog does not exist yet.
    fn header(&self) -> Option<&Header>;
    /// Adds `rows` (entry, embedding), replacing entries with the same id; creates the catalog
    /// with `header` when there is none yet. Rows whose embedding is silent or not finite are
    /// left out with a warning, as one bad window must not cost a recording its others.
    fn add(
        &mut self,
        header: Header,
        rows: Vec<(Entry, Vec<f32>)>,
    ) -> Result<AddReport, CatalogError>;
    /// Every entry (without embeddings).
    fn entries(&self) -> Result<Vec<Entry>, CatalogError>;
    /// How many entries there are.
    fn count(&self) -> Result<usize, CatalogError>;
    /// Removes the entries for which `which` holds; returns (removed, left). `what` names
    /// them for the error when there are none: see [`Removal`].
    fn remove(&mut self, which: &Removal) -> Result<(usize, usize), CatalogError>;
    /// The `top` catalog clips most like `query` (`(window offset, unit embedding)` per query
    /// window), aggregated per clip ([`super::aggregate`]).
    fn search(
        &self,
        query: &[(f64, Vec<f32>)],
        filter: &Filter,
        top: usize,
    ) -> Result<Vec<Match>, CatalogError>;

    /// Refuses a model other than the catalog's, from its card alone (before any embedding).
    fn check_model(&self, card: &ModelCard, card_path: &Path) -> Result<(), CatalogError> {
        match self.header() {
            Some(h) => check_model_ref(
                &h.model,
                &self.location(),
                self.elsewhere(),
                card,
                card_path,
            ),
            None => Ok(()),
        }
    }
}

/// What `catalog remove` removes.
#[derive(Debug, Clone)]
pub enum Removal {
    Label(String),
    /// Any of these stored source paths (the canonical form first, then as given, for a file
    /// deleted since it was added).
    Source(Vec<String>),
}

impl Removal {
    pub fn matches(&self, e: &Entry) -> bool {
        match self {
            Removal::Label(l) => e.label == *l,
            Removal::Source(s) => s.contains(&e.source),
        }
    }

    /// The error for a removal that matched nothing; `entries` are the catalog's.
    pub fn nothing(&self, entries: &[Entry]) -> CatalogError {
        match self {
            Removal::Label(l) => CatalogError::NoSuchLabel {
                label: l.clone(),
                known: known_labels(entries),
            },
            Removal::Source(s) => CatalogError::NoSuchSource {
                source_path: s.first().cloned().unwrap_or_default(),
            },
        }
    }
}

/// The labels of `entries`, comma-separated, or "(none: the catalog is empty)".
pub fn known_labels(entries: &[Entry]) -> String {
    let labels: std::collections::BTreeSet<&str> =
        entries.iter().map(|e| e.label.as_str()).collect();
    if labels.is_empty() {
        return "(none: the catalog is empty)".into();
    }
    labels.into_iter().collect::<Vec<_>>().join(", ")
}

/// The catalog in a directory ([`Catalog`]), locked while a command changes it.
pub struct EmbeddedCatalog {
    dir: PathBuf,
    catalog: Option<Catalog>,
    header: Option<Header>,
    _lock: Option<CatalogLock>,
}

impl EmbeddedCatalog {
    /// Opens the catalog in `dir` (none there yet is fine); `write` takes the lock first, so
    /// that two `catalog add` at once cannot lose each other's entries.
    pub fn open(dir: &Path, write: bool) -> Result<EmbeddedCatalog, CatalogError> {
        let lock = if write {
            Some(CatalogLock::acquire(dir)?)
        } else {
            None
        };
        let catalog = Catalog::open(dir)?;
        let header = catalog.as_ref().map(header_of);
        Ok(EmbeddedCatalog {
            dir: dir.to_owned(),
            catalog,
            header,
            _lock: lock,
        })
    }

    /// The catalog, or why there is none to read.
    fn loaded(&self) -> Result<&Catalog, CatalogError> {
        self.catalog.as_ref().ok_or_else(|| CatalogError::Missing {
            path: self.dir.clone(),
        })
    }
}

fn header_of(c: &Catalog) -> Header {
    Header {
        model: c.model().clone(),
        window: c.window(),
        created: c.manifest().created.clone(),
        updated: c.manifest().updated.clone(),
    }
}

impl CatalogBackend for EmbeddedCatalog {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn elsewhere(&self) -> &'static str {
        "start a new catalog for this model (--catalog DIR)"
    }

    fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    fn add(
        &mut self,
        header: Header,
        rows: Vec<(Entry, Vec<f32>)>,
    ) -> Result<AddReport, CatalogError> {
        let mut catalog = match self.catalog.take() {
            Some(c) => c,
            None => Catalog::new(&self.dir, header.model, header.window),
        };
        let mut report = AddReport::default();
        for (entry, embedding) in rows {
            match catalog.upsert(entry, embedding) {
                Ok(true) => report.new += 1,
                Ok(false) => report.replaced += 1,
                Err(err) => tracing::warn!(error = %err, "window left out of the catalog"),
            }
        }
        let saved = if report.new + report.replaced > 0 {
            catalog.save()
        } else {
            Ok(())
        };
        report.total = catalog.len();
        self.header = Some(header_of(&catalog));
        self.catalog = Some(catalog);
        saved.map(|_| report)
    }

    fn entries(&self) -> Result<Vec<Entry>, CatalogError> {
        Ok(self.loaded()?.entries().to_vec())
    }

    fn count(&self) -> Result<usize, CatalogError> {
        Ok(self.catalog.as_ref().map_or(0, Catalog::len))
    }

    fn remove(&mut self, which: &Removal) -> Result<(usize, usize), CatalogError> {
        let mut c = self.loaded()?.clone();
        let n = match which {
            Removal::Label(l) => c.remove_label(l)?,
            Removal::Source(sources) => {
                let mut n = 0;
                for s in sources {
                    if let Ok(k) = c.remove_source(s) {
                        n = k;
                        break;
                    }
                }
                if n == 0 {
                    return Err(which.nothing(c.entries()));
                }
                n
            }
        };
        c.save()?;
        let left = c.len();
        self.header = Some(header_of(&c));
        self.catalog = Some(c);
        Ok((n, left))
    }

    fn search(
        &self,
        query: &[(f64, Vec<f32>)],
        filter: &Filter,
        top: usize,
    ) -> Result<Vec<Match>, CatalogError> {
        search_embedded(self.loaded()?, query, filter, top)
    }
}
