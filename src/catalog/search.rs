//! Query by example: the catalog clips most like a sound.
//!
//! The query is cut into the catalog's windows and each window is compared with every catalog
//! entry; a catalog clip (one source recording) scores the best similarity between any query
//! window and any of its windows. Aggregating per clip keeps one long recording, whose many
//! windows all resemble each other, from filling the whole answer. Similarity is the cosine
//! similarity `1 - d` of the index's cosine distance `d`.

use super::store::{Catalog, CatalogError, Entry};
use crate::index::EmbeddedIndex;
use crate::index::config::{EmbeddedConfig, SearchMode};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Which entries a search may return (`None`: any).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub machine: Option<String>,
    pub label: Option<String>,
}

impl Filter {
    pub fn accepts(&self, e: &Entry) -> bool {
        self.label.as_ref().is_none_or(|l| *l == e.label)
            && self
                .machine
                .as_ref()
                .is_none_or(|m| e.machine.as_ref() == Some(m))
    }
}

/// One catalog clip that sounds like the query, at its best-matching window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Match {
    /// Cosine similarity of the best (query window, catalog window) pair, 1 = identical.
    pub similarity: f32,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    pub source: String,
    /// The best-matching catalog window, seconds into `source`.
    pub offset_s: f64,
    pub end_s: f64,
    pub whole_clip: bool,
    /// The query window it matched, seconds into the query.
    pub query_offset_s: f64,
    /// The catalog entry's id.
    pub entry: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Folds each query window's neighbours (`(query offset, [(entry, cosine distance)])`, from
/// any index) into the best `top` catalog clips, most similar first. Ties go to the source
/// path, then the offsets, so the order is the same whichever index answered.
pub fn aggregate<'a>(
    per_window: impl IntoIterator<Item = (f64, Vec<(&'a Entry, f32)>)>,
    top: usize,
) -> Vec<Match> {
    let mut best: BTreeMap<&'a str, Match> = BTreeMap::new();
    for (q, hits) in per_window {
        for (e, d) in hits {
            let m = Match {
                similarity: 1.0 - d,
                label: e.label.clone(),
                machine: e.machine.clone(),
                source: e.source.clone(),
                offset_s: e.offset_s,
                end_s: e.end_s,
                whole_clip: e.whole_clip,
                query_offset_s: q,
                entry: e.id.clone(),
                note: e.note.clone(),
            };
            match best.get_mut(e.source.as_str()) {
                Some(b) if !better(&m, b) => {}
                Some(b) => *b = m,
                None => {
                    best.insert(&e.source, m);
                }
            }
        }
    }
    let mut out: Vec<Match> = best.into_values().collect();
    out.sort_by(|a, b| {
        b.similarity
            .total_cmp(&a.similarity)
            .then_with(|| a.source.cmp(&b.source))
    });
    out.truncate(top);
    out
}

/// The labels of `matches`, each once at its best similarity, most similar first, at most
/// `n`: what a sound "sounds like" (the line alerts and `search` show).
pub fn sounds_like(matches: &[Match], n: usize) -> Vec<(String, f32)> {
    let mut out: Vec<(String, f32)> = Vec::new();
    for m in matches {
        match out.iter_mut().find(|(l, _)| *l == m.label) {
            Some((_, s)) => *s = s.max(m.similarity),
            None => out.push((m.label.clone(), m.similarity)),
        }
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out.truncate(n);
    out
}

/// `bearing squeal (0.93), belt slip (0.71)`.
pub fn format_sounds_like(labels: &[(String, f32)]) -> String {
    labels
        .iter()
        .map(|(l, s)| format!("{l} ({s:.2})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `a` beats `b` as a clip's best pair: more similar, then earlier in the query, then
/// earlier in the catalog clip.
fn better(a: &Match, b: &Match) -> bool {
    a.similarity
        .total_cmp(&b.similarity)
        .then_with(|| b.query_offset_s.total_cmp(&a.query_offset_s))
        .then_with(|| b.offset_s.total_cmp(&a.offset_s))
        .is_gt()
}

/// Searches the catalog itself (exactly: every entry the filter allows is compared with every
/// query window). `query` is `(window offset, embedding)` per window.
pub fn search_embedded(
    catalog: &Catalog,
    query: &[(f64, Vec<f32>)],
    filter: &Filter,
    top: usize,
) -> Result<Vec<Match>, CatalogError> {
    if catalog.is_empty() {
        return Err(CatalogError::Empty {
            path: catalog.dir().to_owned(),
        });
    }
    let rows: Vec<usize> = (0..catalog.len())
        .filter(|&i| filter.accepts(&catalog.entries()[i]))
        .collect();
    if rows.is_empty() {
        return Err(nothing_matches(catalog, filter));
    }
    let dim = catalog.dim();
    let mut data = Vec::with_capacity(rows.len() * dim);
    for &i in &rows {
        data.extend_from_slice(catalog.embedding(i));
    }
    let invalid = |detail: String| CatalogError::Invalid {
        path: catalog.dir().to_owned(),
        detail,
    };
    let view = ndarray::ArrayView2::from_shape((rows.len(), dim), &data)
        .map_err(|e| invalid(e.to_string()))?;
    let ids = rows
        .iter()
        .map(|i| catalog.entries()[*i].id.clone())
        .collect();
    let cfg = EmbeddedConfig {
        mode: SearchMode::Exact,
        ..EmbeddedConfig::default()
    };
    let index = EmbeddedIndex::new(view, ids, &cfg).map_err(|e| invalid(e.to_string()))?;
    let mut per_window = Vec::with_capacity(query.len());
    for (offset, q) in query {
        let hits = index
            .search_indices(q, rows.len())
            .map_err(|e| invalid(format!("query window at {offset:.2} s: {e}")))?;
        let hits = hits
            .into_iter()
            .map(|(r, d)| (&catalog.entries()[rows[r]], d))
            .collect();
        per_window.push((*offset, hits));
    }
    Ok(aggregate(per_window, top))
}

/// The message for a filter that leaves nothing: what the catalog does hold.
pub fn nothing_matches(catalog: &Catalog, filter: &Filter) -> CatalogError {
    nothing_matches_in(
        &catalog.dir().display().to_string(),
        catalog.entries(),
        filter,
    )
}

/// [`nothing_matches`] for the entries of a catalog anywhere (`location` names it).
pub fn nothing_matches_in(location: &str, entries: &[Entry], filter: &Filter) -> CatalogError {
    let machines: BTreeSet<&str> = entries
        .iter()
        .filter_map(|e| e.machine.as_deref())
        .collect();
    let asked = match (&filter.label, &filter.machine) {
        (Some(l), Some(m)) => format!("label {l:?} on machine {m:?}"),
        (Some(l), None) => format!("label {l:?}"),
        (None, Some(m)) => format!("machine {m:?}"),
        (None, None) => "any label".into(),
    };
    CatalogError::Invalid {
        path: std::path::PathBuf::from(location),
        detail: format!(
            "no entries with {asked}; the catalog's labels are: {}; its machines: {}",
            super::backend::known_labels(entries),
            if machines.is_empty() {
                "(none given)".to_string()
            } else {
                machines.into_iter().collect::<Vec<_>>().join(", ")
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(label: &str, source: &str, offset: f64) -> Entry {
        Entry {
            id: super::super::entry_id(source, Some(offset)),
            label: label.into(),
            machine: None,
            source: source.into(),
            offset_s: offset,
            end_s: offset + 1.0,
            whole_clip: false,
            note: None,
            added: String::new(),
        }
    }

    #[test]
    fn one_match_per_clip_at_its_best_window() {
        let (a0, a1, a2) = (
            e("rub", "/a", 0.0),
            e("rub", "/a", 1.0),
            e("rub", "/a", 2.0),
        );
        let b0 = e("bearing", "/b", 0.0);
        // Clip /a has three close windows; /b one farther: /b must still be listed second.
        let m = aggregate(
            [
                (
                    0.0,
                    vec![(&a0, 0.10), (&a1, 0.11), (&a2, 0.12), (&b0, 0.30)],
                ),
                (0.5, vec![(&a1, 0.05), (&b0, 0.40)]),
            ],
            5,
        );
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].source.as_str(), m[0].offset_s), ("/a", 1.0));
        assert_eq!(m[0].query_offset_s, 0.5);
        assert!((m[0].similarity - 0.95).abs() < 1e-6);
        assert_eq!(m[1].label, "bearing");
        assert!((m[1].similarity - 0.70).abs() < 1e-6);
        assert_eq!(aggregate([(0.0, vec![(&a0, 0.1), (&b0, 0.2)])], 1).len(), 1);
    }

    #[test]
    fn sounds_like_lists_each_label_once_at_its_best() {
        let (a, b, c) = (
            e("rub", "/a", 0.0),
            e("rub", "/b", 0.0),
            e("bearing", "/c", 0.0),
        );
        let m = aggregate([(0.0, vec![(&a, 0.2), (&b, 0.1), (&c, 0.3)])], 10);
        let s = sounds_like(&m, 5);
        assert_eq!(s.len(), 2);
        assert_eq!(format_sounds_like(&s), "rub (0.90), bearing (0.70)");
        assert_eq!(sounds_like(&m, 1).len(), 1);
    }

    #[test]
    fn equal_similarities_are_ordered_by_source() {
        let (x, y) = (e("l", "/y", 0.0), e("l", "/x", 0.0));
        let m = aggregate([(0.0, vec![(&x, 0.2), (&y, 0.2)])], 2);
        assert_eq!(m[0].source, "/x");
    }
}
