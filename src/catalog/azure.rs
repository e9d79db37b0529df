//! The sound catalog in an Azure AI Search index of its own, so that several edge PCs can add
//! to and search one set of labelled sounds.
//!
//! Documents: one per entry (key = [`super::entry_id`], a hash of source path and offset, so a
//! re-run replaces instead of duplicating), with filterable `label`, `machine` and `source`
//! fields, the model's name, and the embedding; plus one `kind = "manifest"` document holding
//! the catalog's [`Header`] (model and windows), so that a catalog made with another model is
//! refused before anything is embedded, as with the embedded catalog. Writes go through the
//! batched, retried upload of `earshot index` ([`crate::index::upload::index_documents`]).
//!
//! Searches send one exhaustive vector query per query window (one vector query per request
//! keeps the score convertible to a cosine distance, see [`crate::index::azure`]) and fold the
//! hits with the same [`super::aggregate`] as the embedded catalog. Each window's query asks
//! for the k nearest entries and k grows until the answer provably equals the exhaustive one:
//! an entry not returned for a window is no closer than that window's k-th hit, so once the
//! `top`-th clip is more similar than every window's k-th hit, no clip left out can belong in
//! the answer, and no best pair can be missing. The answer is then the embedded catalog's,
//! clip for clip and in the same order.

use super::backend::{AddReport, CatalogBackend, Header, Removal};
use super::search::{Filter, Match, aggregate};
use super::store::{Catalog, CatalogError, Entry};
use crate::index::IndexError;
use crate::index::azure::{
    AzureClient, IndexSchema, KEY_FIELD, MACHINE_FIELD, MODEL_FIELD, VECTOR_FIELD,
    check_definition, score_to_distance,
};
use crate::index::config::AzureConfig;
use crate::index::embedded::normalise;
use crate::index::keys::odata_string;
use crate::index::retry::RetryPolicy;
use crate::index::upload::{UploadOptions, delete_documents, index_documents};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const KIND_FIELD: &str = "kind";
const LABEL_FIELD: &str = "label";
const SOURCE_FIELD: &str = "source";
const MANIFEST_FIELD: &str = "manifest";
const KIND_ENTRY: &str = "entry";
const KIND_MANIFEST: &str = "manifest";
/// The manifest document's key (entry keys are 32 hex digits: no clash).
const MANIFEST_KEY: &str = "earshot-catalog-manifest";
/// The entry fields read back (everything of [`Entry`]).
const ENTRY_SELECT: &str = "id,label,machine,source,offset_s,end_s,whole_clip,note,added";
/// Documents per listing page (Azure's page limit).
const PAGE: usize = 1000;
/// Documents per page when their embeddings come along (a 2048-dimensional one is ~20 kB of
/// JSON: 100 of them keep an answer near 2 MB).
const VECTOR_PAGE: usize = 100;
/// The most neighbours one window's query asks for.
const MAX_K: usize = 1000;

/// The catalog in Azure AI Search. The commands using it are synchronous, so it drives the
/// async REST client on a runtime of its own.
pub struct AzureCatalog {
    rt: tokio::runtime::Runtime,
    client: AzureClient,
    cfg: AzureConfig,
    /// The index definition when the index exists.
    definition: Option<Value>,
    header: Option<Header>,
}

fn remote(doing: &str, location: &str, e: IndexError, todo: &str) -> CatalogError {
    // Items the service kept refusing (at capacity) are worth another run too.
    let transient = e.is_degraded() || matches!(e, IndexError::Upload { .. });
    let todo = if transient {
        todo.to_owned()
    } else {
        // A wrong key, schema or config does not heal by waiting.
        "fix that, then run the command again".to_owned()
    };
    CatalogError::Remote {
        doing: doing.to_owned(),
        location: location.to_owned(),
        detail: e.to_string(),
        todo,
    }
}

const READ_AGAIN: &str = "nothing was changed; run the command again once Azure AI Search answers";

impl AzureCatalog {
    /// Connects (reading the api-key from the env var or file the config names) and reads the
    /// catalog's header, if the index and its manifest exist.
    pub fn open(cfg: &AzureConfig) -> Result<AzureCatalog, CatalogError> {
        let location = format!("index `{}` at {}", cfg.index_name, cfg.endpoint);
        let client = AzureClient::from_config(cfg).map_err(|e| CatalogError::Remote {
            doing: "opening the sound catalog".into(),
            location: location.clone(),
            detail: e.to_string(),
            todo: "check [catalog.index] in the config".into(),
        })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CatalogError::Io {
                path: PathBuf::from("(async runtime)"),
                source: e,
            })?;
        let mut c = AzureCatalog {
            rt,
            client,
            cfg: cfg.clone(),
            definition: None,
            header: None,
        };
        let reading = |e| remote("reading the sound catalog", &location, e, READ_AGAIN);
        c.definition = c.rt.block_on(c.client.get_index()).map_err(reading)?;
        if let Some(def) = &c.definition {
            check_catalog_fields(def)?;
            c.header = c.read_header()?;
        }
        Ok(c)
    }

    /// One `docs/search` request (retried as management calls are); a failure says it was
    /// `doing` that and that nothing changed.
    fn query(&self, body: &Value, doing: &str) -> Result<Value, CatalogError> {
        self.rt
            .block_on(self.client.search(
                body,
                RetryPolicy::MANAGEMENT,
                self.client.management_timeout(),
            ))
            .map_err(|e| remote(doing, &self.location(), e, READ_AGAIN))
    }

    fn read_header(&self) -> Result<Option<Header>, CatalogError> {
        let body = json!({
            "search": "*",
            "filter": format!("{KIND_FIELD} eq {}", odata_string(KIND_MANIFEST)),
            "select": format!("{KEY_FIELD},{MANIFEST_FIELD}"),
            "top": 1,
        });
        let v = self.query(&body, "reading the sound catalog")?;
        let Some(doc) = v
            .get("value")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        else {
            return Ok(None);
        };
        let text = doc
            .get(MANIFEST_FIELD)
            .and_then(Value::as_str)
            .unwrap_or("");
        serde_json::from_str(text).map(Some).map_err(|e| {
            self.invalid(format!(
                "its manifest document is not one this earshot reads ({e}); use another [catalog.index] index_name"
            ))
        })
    }

    fn invalid(&self, detail: String) -> CatalogError {
        CatalogError::Invalid {
            path: PathBuf::from(self.location()),
            detail,
        }
    }

    fn missing(&self) -> CatalogError {
        CatalogError::Missing {
            path: PathBuf::from(self.location()),
        }
    }

    fn opts(&self) -> UploadOptions {
        UploadOptions::from_config(&self.cfg)
    }

    /// Creates the index for `header`'s embeddings, or checks that the existing one fits them.
    fn ensure_index(&mut self, header: &Header) -> Result<(), CatalogError> {
        let dim = header.model.embedding_dim;
        let doing = "preparing the sound catalog";
        match &self.definition {
            Some(def) => {
                check_definition(def, dim, &header.model.name)
                    .map_err(|e| remote(doing, &self.location(), e, READ_AGAIN))?;
                if !vectors_retrievable(def) {
                    // Made by an earlier earshot: daemons need the embeddings back to keep a
                    // copy of the catalog. `retrievable` is one of the attributes Azure lets
                    // an existing field change.
                    let mut def = def.clone();
                    set_vectors_retrievable(&mut def);
                    self.rt
                        .block_on(self.client.put_index(&def))
                        .map_err(|e| remote(doing, &self.location(), e, READ_AGAIN))?;
                    tracing::info!(index = %self.cfg.index_name, "made the catalog's embeddings retrievable, so that daemons can keep a copy of it");
                    self.definition = Some(def);
                }
            }
            None => {
                let def = catalog_definition(&self.cfg, &self.cfg.index_name, dim);
                self.rt
                    .block_on(self.client.put_index(&def))
                    .map_err(|e| remote(doing, &self.location(), e, READ_AGAIN))?;
                self.definition = Some(def);
            }
        }
        Ok(())
    }

    fn put_header(&mut self, header: &Header) -> Result<(), CatalogError> {
        let text = serde_json::to_string(header).map_err(|e| self.invalid(e.to_string()))?;
        let doc = json!({
            "@search.action": "mergeOrUpload",
            KEY_FIELD: MANIFEST_KEY,
            KIND_FIELD: KIND_MANIFEST,
            MODEL_FIELD: header.model.name,
            MANIFEST_FIELD: text,
        })
        .to_string();
        let key = MANIFEST_KEY.to_owned();
        self.rt
            .block_on(index_documents(
                &self.client,
                &[doc],
                std::slice::from_ref(&key),
                std::slice::from_ref(&key),
                &self.opts(),
            ))
            .map_err(|e| {
                remote(
                    "writing the sound catalog's manifest",
                    &self.location(),
                    e,
                    "run the command again once Azure AI Search answers (it resumes)",
                )
            })?;
        self.header = Some(header.clone());
        Ok(())
    }

    /// Entries matching `extra` (an OData clause, or none), by key, page by page.
    fn list(&self, extra: Option<&str>) -> Result<Vec<Entry>, CatalogError> {
        Ok(self
            .pages(extra, false)?
            .into_iter()
            .map(|(e, _)| e)
            .collect())
    }

    /// Entries matching `extra`, by key, with their embeddings when `vectors` (else empty).
    fn pages(
        &self,
        extra: Option<&str>,
        vectors: bool,
    ) -> Result<Vec<(Entry, Vec<f32>)>, CatalogError> {
        if self.definition.is_none() {
            return Ok(Vec::new());
        }
        let base = match extra {
            Some(x) => format!("{} and {x}", entry_filter()),
            None => entry_filter(),
        };
        let (select, page_size) = if vectors {
            (format!("{ENTRY_SELECT},{VECTOR_FIELD}"), VECTOR_PAGE)
        } else {
            (ENTRY_SELECT.to_owned(), PAGE)
        };
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            // Paging by key rather than `skip`, which Azure caps at 100 000 documents.
            let filter = match &after {
                Some(k) => format!("{base} and {KEY_FIELD} gt {}", odata_string(k)),
                None => base.clone(),
            };
            let body = json!({
                "search": "*",
                "filter": filter,
                "orderby": format!("{KEY_FIELD} asc"),
                "select": select,
                "top": page_size,
            });
            let v = self.query(&body, "listing the sound catalog")?;
            let page = hits(&v).map_err(|d| self.invalid(d))?;
            let n = page.len();
            after = page.last().map(|h| h.entry.id.clone());
            for h in page {
                let v = match (vectors, h.vector) {
                    (false, _) => Vec::new(),
                    (true, Some(v)) => v,
                    (true, None) => {
                        return Err(self.invalid(format!(
                            "entry {} came back without its embedding",
                            h.entry.id
                        )));
                    }
                };
                out.push((h.entry, v));
            }
            if n < page_size {
                break;
            }
        }
        Ok(out)
    }

    /// Every entry with its embedding, as an in-memory [`Catalog`] for `dir` (not saved):
    /// the copy a daemon compares events with, so that naming a fault needs no network
    /// round trip between an anomaly and its alert. `None` while there is no catalog yet.
    pub fn snapshot(&self, dir: &Path) -> Result<Option<Catalog>, CatalogError> {
        let Some(header) = &self.header else {
            return Ok(None);
        };
        if self
            .definition
            .as_ref()
            .is_some_and(|d| !vectors_retrievable(d))
        {
            return Err(self.invalid(format!(
                "its `{VECTOR_FIELD}` field is not retrievable (the index was made by an earlier earshot), so a daemon cannot keep a copy to compare events with; the next `earshot catalog add` to it makes the field retrievable (or set it so in the Azure portal)"
            )));
        }
        let mut c = Catalog::new(dir, header.model.clone(), header.window);
        for (e, v) in self.pages(None, true)? {
            let id = e.id.clone();
            c.upsert(e, v)
                .map_err(|err| self.invalid(format!("entry {id} cannot be used ({err})")))?;
        }
        Ok(Some(c))
    }

    fn count_where(&self, filter: &str) -> Result<usize, CatalogError> {
        if self.definition.is_none() {
            return Ok(0);
        }
        self.rt
            .block_on(self.client.count_filtered(filter))
            .map(|n| n as usize)
            .map_err(|e| {
                remote(
                    "counting the sound catalog",
                    &self.location(),
                    e,
                    READ_AGAIN,
                )
            })
    }

    /// One window's k nearest entries passing `filter`, nearest first, as cosine distances.
    fn knn(&self, q: &[f32], k: usize, filter: &str) -> Result<Vec<(Entry, f32)>, CatalogError> {
        let body = json!({
            "select": ENTRY_SELECT,
            "filter": filter,
            "vectorFilterMode": "preFilter",
            "top": k,
            "vectorQueries": [{
                "kind": "vector",
                "vector": q,
                "fields": VECTOR_FIELD,
                "k": k,
                // Exact, as the embedded catalog is: the same clips in the same order.
                "exhaustive": true
            }]
        });
        let v = self.query(&body, "searching the sound catalog")?;
        let h = hits(&v).map_err(|d| self.invalid(d))?;
        let mut out = Vec::with_capacity(h.len());
        for Hit { entry, score, .. } in h {
            let Some(d) = score.and_then(score_to_distance) else {
                return Err(self.invalid(format!("a search hit ({}) has no valid score", entry.id)));
            };
            out.push((entry, d));
        }
        out.sort_by(|a, b| a.1.total_cmp(&b.1));
        Ok(out)
    }

    fn touch(&mut self) -> Result<(), CatalogError> {
        if let Some(mut h) = self.header.clone() {
            h.updated = now();
            self.put_header(&h)?;
        }
        Ok(())
    }
}

/// Documents that are entries (not the manifest).
fn entry_filter() -> String {
    format!("{KIND_FIELD} eq {}", odata_string(KIND_ENTRY))
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// One document of a `docs/search` answer.
struct Hit {
    entry: Entry,
    /// `@search.score`.
    score: Option<f64>,
    /// The embedding, when it was selected.
    vector: Option<Vec<f32>>,
}

/// The entries of a `docs/search` answer with their `@search.score` (and embedding).
fn hits(v: &Value) -> Result<Vec<Hit>, String> {
    let items = v
        .get("value")
        .and_then(Value::as_array)
        .ok_or("the search answer has no `value` array")?;
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let Some(obj) = it.as_object() else {
            return Err("a search hit is not an object".into());
        };
        let score = obj.get("@search.score").and_then(Value::as_f64);
        let fields: serde_json::Map<String, Value> = obj
            .iter()
            .filter(|(k, _)| !k.starts_with('@') && k.as_str() != VECTOR_FIELD)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let entry: Entry = serde_json::from_value(Value::Object(fields))
            .map_err(|e| format!("a document is not a catalog entry: {e}"))?;
        let vector =
            match obj.get(VECTOR_FIELD) {
                None | Some(Value::Null) => None,
                Some(v) => Some(serde_json::from_value::<Vec<f32>>(v.clone()).map_err(|e| {
                    format!("entry {}: its embedding is not numbers: {e}", entry.id)
                })?),
            };
        out.push(Hit {
            entry,
            score,
            vector,
        });
    }
    Ok(out)
}

/// The index definition: the normal index's vector search (from [`IndexSchema`]) with the
/// catalog's fields.
pub fn catalog_definition(cfg: &AzureConfig, name: &str, dim: usize) -> Value {
    let mut def = IndexSchema::from_config(cfg, dim).definition(name);
    let vector = def["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|x| x["name"] == VECTOR_FIELD))
        .cloned()
        .unwrap_or(Value::Null);
    let text = |name: &str, filterable: bool| {
        json!({ "name": name, "type": "Edm.String", "filterable": filterable,
                "retrievable": true, "searchable": false })
    };
    let mut vector = vector;
    // Retrievable (unlike a monitor's normal index): daemons keep a copy of the catalog.
    vector["retrievable"] = json!(true);
    let mut label = text(LABEL_FIELD, true);
    label["facetable"] = json!(true);
    let mut machine = text(MACHINE_FIELD, true);
    machine["facetable"] = json!(true);
    def["fields"] = json!([
        { "name": KEY_FIELD, "type": "Edm.String", "key": true, "filterable": true,
          "sortable": true, "retrievable": true, "searchable": false },
        text(KIND_FIELD, true),
        label,
        machine,
        text(SOURCE_FIELD, true),
        { "name": "offset_s", "type": "Edm.Double", "retrievable": true },
        { "name": "end_s", "type": "Edm.Double", "retrievable": true },
        { "name": "whole_clip", "type": "Edm.Boolean", "retrievable": true },
        text("note", false),
        text("added", false),
        text(MODEL_FIELD, true),
        text(MANIFEST_FIELD, false),
        vector,
    ]);
    def
}

/// Whether the definition's vector field gives its values back.
fn vectors_retrievable(def: &Value) -> bool {
    def["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|x| x["name"] == VECTOR_FIELD))
        .is_some_and(|v| v["retrievable"].as_bool() != Some(false))
}

fn set_vectors_retrievable(def: &mut Value) {
    if let Some(f) = def["fields"].as_array_mut() {
        for x in f.iter_mut().filter(|x| x["name"] == VECTOR_FIELD) {
            x["retrievable"] = json!(true);
        }
    }
}

/// Refuses an index that is not a catalog (e.g. the normal embeddings of `earshot index`):
/// entries would be mixed with windows of another kind.
fn check_catalog_fields(def: &Value) -> Result<(), CatalogError> {
    let name = def.get("name").and_then(Value::as_str).unwrap_or("?");
    let fields = def.get("fields").and_then(Value::as_array);
    for want in [KIND_FIELD, LABEL_FIELD, SOURCE_FIELD] {
        let ok = fields.is_some_and(|f| {
            f.iter().any(|x| {
                x.get("name").and_then(Value::as_str) == Some(want)
                    && x.get("filterable").and_then(Value::as_bool) == Some(true)
            })
        });
        if !ok {
            return Err(CatalogError::Invalid {
                path: PathBuf::from(format!("index `{name}`")),
                detail: format!(
                    "not a sound catalog (no filterable `{want}` field; is it an index of `earshot index`?): give the catalog an index of its own ([catalog.index] index_name)"
                ),
            });
        }
    }
    Ok(())
}

impl CatalogBackend for AzureCatalog {
    fn location(&self) -> String {
        format!(
            "index `{}` at {}",
            self.client.index_name(),
            self.client.endpoint()
        )
    }

    fn elsewhere(&self) -> &'static str {
        "give this model's catalog another index ([catalog.index] index_name)"
    }

    fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    fn add(
        &mut self,
        header: Header,
        rows: Vec<(Entry, Vec<f32>)>,
    ) -> Result<AddReport, CatalogError> {
        let header = self.header.clone().unwrap_or(header);
        self.ensure_index(&header)?;
        if self.header.is_none() {
            // The manifest goes first: entries never exist without the model they need.
            self.put_header(&header)?;
        }
        let existing: BTreeSet<String> = self.list(None)?.into_iter().map(|e| e.id).collect();
        // The last row of an id wins, as in the embedded catalog.
        let mut docs: BTreeMap<String, String> = BTreeMap::new();
        for (e, mut v) in rows {
            if v.len() != header.model.embedding_dim || !normalise(&mut v) {
                tracing::warn!(source = %e.source, offset_s = e.offset_s, "window left out of the catalog: no usable embedding (silent or not finite)");
                continue;
            }
            let doc = json!({
                "@search.action": "mergeOrUpload",
                KEY_FIELD: e.id,
                KIND_FIELD: KIND_ENTRY,
                LABEL_FIELD: e.label,
                MACHINE_FIELD: e.machine,
                SOURCE_FIELD: e.source,
                "offset_s": e.offset_s,
                "end_s": e.end_s,
                "whole_clip": e.whole_clip,
                "note": e.note,
                "added": e.added,
                MODEL_FIELD: header.model.name,
                VECTOR_FIELD: v,
            });
            docs.insert(e.id, doc.to_string());
        }
        let keys: Vec<String> = docs.keys().cloned().collect();
        let bodies: Vec<String> = docs.into_values().collect();
        let n = keys.len();
        if n > 0 {
            self.rt
                .block_on(index_documents(
                    &self.client,
                    &bodies,
                    &keys,
                    &keys,
                    &self.opts(),
                ))
                .map_err(|e| {
                    remote(
                        &format!("uploading {n} catalog entries"),
                        &self.location(),
                        e,
                        "the entries already stored stay; run the same `earshot catalog add` again to finish: keys are derived from source and offset, so nothing is duplicated",
                    )
                })?;
            self.touch()?;
        }
        let new = keys.iter().filter(|k| !existing.contains(*k)).count();
        Ok(AddReport {
            new,
            replaced: n - new,
            total: existing.len() + new,
        })
    }

    fn entries(&self) -> Result<Vec<Entry>, CatalogError> {
        if self.header.is_none() {
            return Err(self.missing());
        }
        self.list(None)
    }

    fn count(&self) -> Result<usize, CatalogError> {
        self.count_where(&entry_filter())
    }

    fn remove(&mut self, which: &Removal) -> Result<(usize, usize), CatalogError> {
        if self.header.is_none() {
            return Err(self.missing());
        }
        let gone = match which {
            Removal::Label(l) => {
                self.list(Some(&format!("{LABEL_FIELD} eq {}", odata_string(l))))?
            }
            Removal::Source(sources) => {
                let mut found = Vec::new();
                for s in sources {
                    found = self.list(Some(&format!("{SOURCE_FIELD} eq {}", odata_string(s))))?;
                    if !found.is_empty() {
                        break;
                    }
                }
                found
            }
        };
        if gone.is_empty() {
            return Err(which.nothing(&self.list(None)?));
        }
        let before = self.count()?;
        let keys: Vec<String> = gone.into_iter().map(|e| e.id).collect();
        self.rt
            .block_on(delete_documents(&self.client, &keys, &self.opts()))
            .map_err(|e| {
                remote(
                    &format!("removing {} catalog entries", keys.len()),
                    &self.location(),
                    e,
                    "run the same `earshot catalog remove` again to finish (removing is idempotent)",
                )
            })?;
        self.touch()?;
        Ok((keys.len(), before.saturating_sub(keys.len())))
    }

    fn search(
        &self,
        query: &[(f64, Vec<f32>)],
        filter: &Filter,
        top: usize,
    ) -> Result<Vec<Match>, CatalogError> {
        if self.header.is_none() {
            return Err(self.missing());
        }
        let mut f = entry_filter();
        if let Some(m) = &filter.machine {
            f.push_str(&format!(" and {MACHINE_FIELD} eq {}", odata_string(m)));
        }
        if let Some(l) = &filter.label {
            f.push_str(&format!(" and {LABEL_FIELD} eq {}", odata_string(l)));
        }
        let n = self.count_where(&f)?;
        if n == 0 {
            let all = self.list(None)?;
            if all.is_empty() {
                return Err(CatalogError::Empty {
                    path: PathBuf::from(self.location()),
                });
            }
            return Err(super::search::nothing_matches_in(
                &self.location(),
                &all,
                filter,
            ));
        }
        let mut queries = Vec::with_capacity(query.len());
        for (t, q) in query {
            let mut q = q.clone();
            if !normalise(&mut q) {
                return Err(self.invalid(format!(
                    "the query window at {t:.2} s has no usable embedding (silent or not finite)"
                )));
            }
            queries.push((*t, q));
        }
        let mut k = n.min(MAX_K).min((top * 10).max(50));
        loop {
            let mut per_window = Vec::with_capacity(queries.len());
            // The most similar entry any window left out could have.
            let mut unseen = f32::NEG_INFINITY;
            for (t, q) in &queries {
                let h = self.knn(q, k, &f)?;
                if h.len() >= k
                    && let Some((_, d)) = h.last()
                {
                    unseen = unseen.max(1.0 - d);
                }
                per_window.push((*t, h));
            }
            let refs = per_window
                .iter()
                .map(|(t, h)| (*t, h.iter().map(|(e, d)| (e, *d)).collect::<Vec<_>>()));
            let matches = aggregate(refs, top);
            let proven = k >= n
                || (matches.len() >= top && matches.last().is_some_and(|m| m.similarity > unseen));
            if proven {
                return Ok(matches);
            }
            let next = (k * 4).min(n).min(MAX_K);
            if next == k {
                tracing::warn!(
                    k,
                    entries = n,
                    "the catalog is too large to prove this answer exhaustive with {MAX_K} neighbours per window: an embedded catalog might order the last matches differently"
                );
                return Ok(matches);
            }
            k = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_definition_passes_both_checks_and_a_normal_index_is_refused() {
        let cfg = AzureConfig::new("https://x.search.windows.net", "cat", "KEY_VAR");
        let def = catalog_definition(&cfg, "cat", 64);
        assert!(check_definition(&def, 64, "m").is_ok());
        assert!(check_catalog_fields(&def).is_ok());
        // Another model's dimension is named.
        let err = check_definition(&def, 128, "m")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("64") && err.contains("128"), "{err}");
        let normal = IndexSchema::from_config(&cfg, 64).definition("normals");
        let err = check_catalog_fields(&normal).unwrap_err().to_string();
        assert!(
            err.contains("not a sound catalog") && err.contains("index_name"),
            "{err}"
        );
    }

    #[test]
    fn hits_become_entries_with_their_scores() {
        let v = json!({ "value": [{
            "@search.score": 0.8, "id": "ab", "label": "rub", "machine": null,
            "source": "/a.wav", "offset_s": 0.5, "end_s": 1.5, "whole_clip": false,
            "note": null, "added": "2026-12-06T00:00:00Z"
        }]});
        let h = hits(&v).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].entry.label, "rub");
        assert_eq!(h[0].entry.machine, None);
        assert_eq!(h[0].score, Some(0.8));
        assert!(h[0].vector.is_none());
        let mut with = v.clone();
        with["value"][0][VECTOR_FIELD] = json!([0.5, -1.0]);
        assert_eq!(hits(&with).unwrap()[0].vector, Some(vec![0.5, -1.0]));
        with["value"][0][VECTOR_FIELD] = json!(["x"]);
        assert!(hits(&with).is_err());
        assert!(hits(&json!({ "value": [{ "id": "x" }] })).is_err());
    }
}
