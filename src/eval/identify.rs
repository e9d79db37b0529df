//! Known-fault identification on a labelled set: how often the sound catalog names the fault
//! of an anomalous clip it has not seen.
//!
//! Per machine, the anomalous test clips of each `anomaly_type` are split in two (sorted by
//! path: the 1st, 3rd, ... go into a catalog labelled with their type, the 2nd, 4th, ... are
//! the queries), so every type that has a query also has catalog clips, and the split is the
//! same on every run. Each query is looked up exactly as `earshot search` and the daemon's
//! "sounds like" do ([`crate::catalog::search_embedded`], then
//! [`crate::catalog::sounds_like`] for the labels in order): top-1 is right when the first
//! label is the query's type, top-3 when it is among the first three. Two catalogs are built
//! from the same embeddings, as `catalog add` makes them: one entry per window (the default)
//! and one per clip (`--whole-clip`, queried with the clip's mean embedding).

use super::Entry;
use crate::catalog::store::mean_embedding;
use crate::catalog::{Catalog, CatalogError, Filter, entry_id, search_embedded, sounds_like};
use crate::embed::file::WindowEmbedding;
use crate::score::profile::{ModelRef, WindowSpec};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// How the split is described in reports.
pub const SPLIT: &str = "per machine and anomaly_type, clips sorted by path: the 1st, 3rd, ... into the catalog, the 2nd, 4th, ... as queries";

/// Labels looked at for top-3.
const TOP: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    #[error(
        "{manifest}: --catalog needs an anomaly_type column naming the fault of each anomalous test clip (e.g. bearing, impact); the manifest has none (or it is empty on every anomalous row)"
    )]
    NoTypes { manifest: PathBuf },
    #[error(
        "{manifest}: {n} anomalous test clip(s) have an empty anomaly_type (first: {first}): fault identification needs the type of every anomalous clip"
    )]
    MissingType {
        manifest: PathBuf,
        n: usize,
        first: PathBuf,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Refuses a manifest that cannot be used for identification, saying what is missing.
pub fn check_types(entries: &[Entry], manifest: &Path) -> Result<(), IdentifyError> {
    let anomalous: Vec<&Entry> = entries.iter().filter(|e| e.anomaly).collect();
    let missing: Vec<&&Entry> = anomalous
        .iter()
        .filter(|e| e.anomaly_type.is_none())
        .collect();
    if anomalous.is_empty() || missing.len() == anomalous.len() {
        return Err(IdentifyError::NoTypes {
            manifest: manifest.to_owned(),
        });
    }
    if let Some(first) = missing.first() {
        return Err(IdentifyError::MissingType {
            manifest: manifest.to_owned(),
            n: missing.len(),
            first: first.path.clone(),
        });
    }
    Ok(())
}

/// An anomalous test clip with its fault type and embedded windows.
#[derive(Debug, Clone, Copy)]
pub struct Clip<'a> {
    pub path: &'a Path,
    pub anomaly_type: &'a str,
    pub windows: &'a [WindowEmbedding],
}

/// Splits clips into (catalog, queries) as [`SPLIT`] says.
pub fn split<'a>(clips: &[Clip<'a>]) -> (Vec<Clip<'a>>, Vec<Clip<'a>>) {
    let mut by_type: BTreeMap<&str, Vec<Clip<'a>>> = BTreeMap::new();
    for c in clips {
        by_type.entry(c.anomaly_type).or_default().push(*c);
    }
    let (mut catalog, mut queries) = (Vec::new(), Vec::new());
    for (_, mut v) in by_type {
        v.sort_by(|a, b| a.path.cmp(b.path));
        for (i, c) in v.into_iter().enumerate() {
            if i % 2 == 0 {
                catalog.push(c);
            } else {
                queries.push(c);
            }
        }
    }
    (catalog, queries)
}

/// Top-1 and top-3 accuracy of one way of building the catalog.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Accuracy {
    /// Share of queries whose first label is their type (`None` without queries).
    pub top1: Option<f64>,
    /// Share of queries whose type is among the first three labels.
    pub top3: Option<f64>,
    pub top1_hits: usize,
    pub top3_hits: usize,
}

/// What one query sounded like, per catalog.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub path: PathBuf,
    pub anomaly_type: String,
    /// The first labels with their similarity, per-window catalog.
    pub windows: Vec<(String, f32)>,
    /// The same with whole-clip entries and query.
    pub whole_clip: Vec<(String, f32)>,
}

/// One machine's identification figures.
#[derive(Debug, Clone, Serialize)]
pub struct Identification {
    pub split: &'static str,
    /// Fault types in the catalog (what a query can be named).
    pub types: usize,
    /// Accuracy of guessing: 1/types for top-1, min(3, types)/types for top-3.
    pub chance_top1: Option<f64>,
    pub chance_top3: Option<f64>,
    pub catalog_clips: usize,
    pub queries: usize,
    /// Types with a single clip: in the catalog, never queried.
    pub unqueried_types: Vec<String>,
    /// One catalog entry per window, queried window by window (`catalog add` and `search`).
    pub windows: Accuracy,
    /// One entry per clip, queried with the clip's mean (`--whole-clip`).
    pub whole_clip: Accuracy,
    pub answers: Vec<Answer>,
}

/// Builds the two catalogs of `machine` from its anomalous test clips and identifies the
/// held-back ones (see the module docs). `model` and `window` are what the clips were
/// embedded with.
pub fn identify(
    machine: &str,
    model: &ModelRef,
    window: WindowSpec,
    clips: &[Clip<'_>],
) -> Result<Identification, IdentifyError> {
    let (in_catalog, queries) = split(clips);
    let types: BTreeSet<&str> = in_catalog.iter().map(|c| c.anomaly_type).collect();
    let queried: BTreeSet<&str> = queries.iter().map(|c| c.anomaly_type).collect();
    let name = PathBuf::from(format!("(eval catalog of {machine})"));
    let mut per_window = Catalog::new(&name, model.clone(), window);
    let mut whole = Catalog::new(&name, model.clone(), window);
    for c in &in_catalog {
        let source = c.path.display().to_string();
        let entry = |offset: Option<f64>, end_s: f64| crate::catalog::Entry {
            id: entry_id(&source, offset),
            label: c.anomaly_type.to_owned(),
            machine: Some(machine.to_owned()),
            source: source.clone(),
            offset_s: offset.unwrap_or(0.0),
            end_s,
            whole_clip: offset.is_none(),
            note: None,
            added: String::new(),
        };
        for w in c.windows {
            // A silent window has no direction: `catalog add` leaves it out too.
            if let Err(e) = per_window.upsert(entry(Some(w.start_s), w.end_s), w.embedding.clone())
            {
                tracing::debug!(error = %e, "window left out of the eval catalog");
            }
        }
        let end = c.windows.last().map_or(0.0, |w| w.end_s);
        let mean = mean_embedding(
            c.windows.iter().map(|w| w.embedding.as_slice()),
            whole.dim(),
        );
        if let Err(e) = whole.upsert(entry(None, end), mean) {
            tracing::debug!(error = %e, "clip left out of the eval catalog");
        }
    }
    let filter = Filter {
        machine: Some(machine.to_owned()),
        label: None,
    };
    let mut out = Identification {
        split: SPLIT,
        types: types.len(),
        chance_top1: (!types.is_empty()).then(|| 1.0 / types.len() as f64),
        chance_top3: (!types.is_empty()).then(|| TOP.min(types.len()) as f64 / types.len() as f64),
        catalog_clips: in_catalog.len(),
        queries: queries.len(),
        unqueried_types: types
            .iter()
            .filter(|t| !queried.contains(*t))
            .map(|t| t.to_string())
            .collect(),
        windows: Accuracy::default(),
        whole_clip: Accuracy::default(),
        answers: Vec::new(),
    };
    if per_window.is_empty() || whole.is_empty() || queries.is_empty() {
        return Ok(out);
    }
    for q in &queries {
        let query: Vec<(f64, Vec<f32>)> = q
            .windows
            .iter()
            .map(|w| (w.start_s, w.embedding.clone()))
            .collect();
        let mean = vec![(
            0.0,
            mean_embedding(
                q.windows.iter().map(|w| w.embedding.as_slice()),
                whole.dim(),
            ),
        )];
        let labels = |cat: &Catalog, query: &[(f64, Vec<f32>)]| {
            search_embedded(cat, query, &filter, cat.len()).map(|m| sounds_like(&m, TOP))
        };
        let a = Answer {
            path: q.path.to_owned(),
            anomaly_type: q.anomaly_type.to_owned(),
            windows: labels(&per_window, &query)?,
            whole_clip: labels(&whole, &mean)?,
        };
        count(&mut out.windows, &a.windows, q.anomaly_type);
        count(&mut out.whole_clip, &a.whole_clip, q.anomaly_type);
        out.answers.push(a);
    }
    let n = queries.len() as f64;
    for acc in [&mut out.windows, &mut out.whole_clip] {
        acc.top1 = Some(acc.top1_hits as f64 / n);
        acc.top3 = Some(acc.top3_hits as f64 / n);
    }
    Ok(out)
}

fn count(acc: &mut Accuracy, labels: &[(String, f32)], want: &str) {
    if labels.first().is_some_and(|(l, _)| l == want) {
        acc.top1_hits += 1;
    }
    if labels.iter().take(TOP).any(|(l, _)| l == want) {
        acc.top3_hits += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: f64, v: [f32; 2]) -> WindowEmbedding {
        WindowEmbedding {
            start_s: start,
            end_s: start + 1.0,
            embedding: v.to_vec(),
            level_dbfs: -20.0,
            impulse_db: 0.0,
            logmel: Vec::new(),
        }
    }

    #[test]
    fn split_alternates_within_each_type_by_path() {
        let ws = [w(0.0, [1.0, 0.0])];
        let c = |p: &'static str, t: &'static str| Clip {
            path: Path::new(p),
            anomaly_type: t,
            windows: &ws,
        };
        let clips = [c("/d", "a"), c("/b", "a"), c("/c", "b"), c("/a", "a")];
        let (cat, q) = split(&clips);
        let names = |v: &[Clip]| {
            v.iter()
                .map(|c| c.path.display().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&cat), ["/a", "/d", "/c"]);
        assert_eq!(names(&q), ["/b"]);
    }

    #[test]
    fn identifies_by_the_catalogs_search() {
        let model = ModelRef {
            name: "m".into(),
            architecture: "a".into(),
            onnx_sha256: "0".into(),
            sample_rate: 16_000,
            embedding_dim: 2,
            untrained: false,
        };
        let window = WindowSpec {
            seconds: 1.0,
            hop_seconds: 0.5,
            level_dbfs: None,
            embed: Default::default(),
        };
        let (x, y) = ([w(0.0, [1.0, 0.1])], [w(0.0, [0.1, 1.0])]);
        let (x2, y2) = ([w(0.0, [1.0, 0.2])], [w(0.0, [0.2, 1.0])]);
        let clips = [
            Clip {
                path: Path::new("/x1"),
                anomaly_type: "x",
                windows: &x,
            },
            Clip {
                path: Path::new("/x2"),
                anomaly_type: "x",
                windows: &x2,
            },
            Clip {
                path: Path::new("/y1"),
                anomaly_type: "y",
                windows: &y,
            },
            Clip {
                path: Path::new("/y2"),
                anomaly_type: "y",
                windows: &y2,
            },
        ];
        let r = identify("m1", &model, window, &clips).unwrap();
        assert_eq!((r.types, r.catalog_clips, r.queries), (2, 2, 2));
        assert_eq!(r.chance_top1, Some(0.5));
        assert_eq!(r.windows.top1, Some(1.0));
        assert_eq!(r.whole_clip.top1, Some(1.0));
        assert_eq!(r.answers[0].windows[0].0, r.answers[0].anomaly_type);
    }
}
