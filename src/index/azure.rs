//! Azure AI Search over its REST API (there is no Rust SDK).
//!
//! The subset used, as documented in the Azure AI Search REST reference:
//! - `PUT  /indexes/{name}?api-version=` create or update the index (fields + `vectorSearch`);
//! - `GET  /indexes/{name}` read it back for `--check`; `DELETE` for `--recreate`;
//! - `POST /indexes/{name}/docs/index` upload batches (`@search.action`, 200 or 207 per item);
//! - `POST /indexes/{name}/docs/search` one `vectorQueries` entry per window, filtered by machine;
//! - `GET  /indexes/{name}/docs/$count` (text/plain, may start with a UTF-8 BOM).
//!
//! Scores: for the cosine metric Azure documents `@search.score = 1 / (1 + cosine_distance)` with
//! `cosine_distance = 1 - cos`, i.e. `score = 1 / (2 - cos)`. Hence `cos = 2 - 1/score` and the
//! distance we use everywhere is `d = 1 - cos = 1/score - 1`. Only one vector query is ever sent
//! per request: with several, the score is a fused rank and cannot be converted.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};

use super::config::{AzureConfig, HnswParams};
use super::embedded::normalise;
use super::keys::odata_string;
use super::retry::{RetryPolicy, is_retryable_status, retry_after};
use super::{IndexError, Neighbor, VectorIndex};

/// Field names of earshot indexes. `id` holds [`super::keys::doc_key`].
pub const KEY_FIELD: &str = "id";
pub const MACHINE_FIELD: &str = "machine";
pub const WINDOW_FIELD: &str = "window_id";
pub const MODEL_FIELD: &str = "model";
pub const VECTOR_FIELD: &str = "embedding";
const PROFILE_NAME: &str = "earshot-vector-profile";
const ALGORITHM_NAME: &str = "earshot-algorithm";

/// Where the api-key came from: named in auth errors so the user knows what to fix.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    Env(String),
    File(PathBuf),
}

impl KeySource {
    pub fn describe(&self) -> String {
        match self {
            KeySource::Env(v) => format!("environment variable {v}"),
            KeySource::File(p) => format!("file {}", p.display()),
        }
    }

    /// Reads the key, refusing an empty one.
    /// A relative key file name is looked up in systemd's `$CREDENTIALS_DIRECTORY` first
    /// (`LoadCredential=azure-key:/etc/earshot/azure.key` + `api_key_file = "azure-key"`). The key value never appears in errors.
    pub fn read(&self) -> Result<String, IndexError> {
        let raw = match self {
            KeySource::Env(v) => std::env::var(v).map_err(|_| {
                IndexError::Config(format!(
                    "the Azure api-key is read from environment variable {v}, which is not set"
                ))
            })?,
            KeySource::File(p) => {
                crate::files::read_regular_string(&credential_path(p)).map_err(|e| {
                    IndexError::Config(format!(
                        "cannot read the Azure api-key file {}: {e}",
                        p.display()
                    ))
                })?
            }
        };
        let key = raw.lines().next().unwrap_or("").trim().to_string();
        if key.is_empty() {
            return Err(IndexError::Config(format!(
                "the Azure api-key in {} is empty",
                self.describe()
            )));
        }
        Ok(key)
    }
}

/// An api-key that cannot be printed by accident.
#[derive(Clone)]
struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// A raw answer, for callers that interpret statuses themselves (uploads).
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

/// Thin REST client for one index. Cheap to clone (reqwest pools connections).
#[derive(Debug, Clone)]
pub struct AzureClient {
    http: reqwest::Client,
    endpoint: Url,
    index: String,
    api_version: String,
    key: ApiKey,
    key_source: KeySource,
    timeout: Duration,
}

impl AzureClient {
    /// From a validated config, reading the key from the env var or file it names.
    pub fn from_config(cfg: &AzureConfig) -> Result<Self, IndexError> {
        cfg.validate()?;
        let source = match (&cfg.api_key_env, &cfg.api_key_file) {
            (Some(v), _) => KeySource::Env(v.clone()),
            (None, Some(f)) => KeySource::File(PathBuf::from(f)),
            // validate() refuses this; kept as an error rather than a panic.
            (None, None) => return Err(IndexError::Config("no api-key source configured".into())),
        };
        let key = source.read()?;
        Self::with_key(cfg, key, source)
    }

    /// With a key already in hand (tests, benchmarks).
    pub fn with_key(
        cfg: &AzureConfig,
        key: String,
        key_source: KeySource,
    ) -> Result<Self, IndexError> {
        let endpoint = Url::parse(cfg.endpoint.trim_end_matches('/'))
            .map_err(|e| IndexError::Config(format!("index.endpoint: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("earshot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| IndexError::Transport(e.to_string()))?;
        Ok(AzureClient {
            http,
            endpoint,
            index: cfg.index_name.clone(),
            api_version: cfg.api_version.clone(),
            key: ApiKey(key),
            key_source,
            timeout: Duration::from_millis(cfg.timeout_ms),
        })
    }

    pub fn index_name(&self) -> &str {
        &self.index
    }

    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str().trim_end_matches('/')
    }

    /// Per-query timeout from the config.
    pub fn query_timeout(&self) -> Duration {
        self.timeout
    }

    fn url(&self, suffix: &str) -> Result<Url, IndexError> {
        let mut u = self.endpoint.clone();
        {
            let mut segs = u
                .path_segments_mut()
                .map_err(|_| IndexError::Config("index.endpoint cannot be a base URL".into()))?;
            segs.pop_if_empty().push("indexes").push(&self.index);
            for s in suffix.split('/').filter(|s| !s.is_empty()) {
                segs.push(s);
            }
        }
        u.query_pairs_mut()
            .append_pair("api-version", &self.api_version);
        Ok(u)
    }

    /// Sends one request, retrying throttling (429/503 ...) and transport errors per `policy`.
    /// 401/403 become [`IndexError::Auth`]; any other status is returned for the caller.
    pub async fn send(
        &self,
        method: Method,
        suffix: &str,
        body: Option<Vec<u8>>,
        policy: RetryPolicy,
        timeout: Duration,
    ) -> Result<RawResponse, IndexError> {
        let url = self.url(suffix)?;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header("api-key", &self.key.0)
                .header("Accept", "application/json")
                .timeout(timeout);
            if let Some(b) = &body {
                req = req
                    .header("Content-Type", "application/json")
                    .body(b.clone());
            }
            let outcome = req.send().await;
            let (err, hint) = match outcome {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    let bytes = match resp.bytes().await {
                        Ok(b) => b.to_vec(),
                        Err(e) => {
                            let err = transport_error(e, timeout);
                            if attempt >= policy.max_attempts {
                                return Err(err);
                            }
                            tokio::time::sleep(policy.delay(attempt, None)).await;
                            continue;
                        }
                    };
                    if status == 401 || status == 403 {
                        let (_, message) = error_body(&bytes);
                        return Err(IndexError::Auth {
                            status,
                            message,
                            key_source: self.key_source.describe(),
                        });
                    }
                    if !is_retryable_status(status) {
                        return Ok(RawResponse {
                            status,
                            headers,
                            body: bytes,
                        });
                    }
                    let hint = retry_after(&headers);
                    if attempt >= policy.max_attempts {
                        return if status == 429 || status == 503 {
                            Err(IndexError::Throttled {
                                status,
                                attempts: attempt,
                            })
                        } else {
                            Ok(RawResponse {
                                status,
                                headers,
                                body: bytes,
                            })
                        };
                    }
                    tracing::debug!(status, attempt, ?hint, "Azure AI Search asked us to retry");
                    (None, hint)
                }
                Err(e) => (Some(transport_error(e, timeout)), None),
            };
            if let Some(e) = err
                && attempt >= policy.max_attempts
            {
                return Err(e);
            }
            tokio::time::sleep(policy.delay(attempt, hint)).await;
        }
    }

    /// The index definition, or `None` if it does not exist.
    pub async fn get_index(&self) -> Result<Option<Value>, IndexError> {
        let r = self
            .send(
                Method::GET,
                "",
                None,
                RetryPolicy::MANAGEMENT,
                self.management_timeout(),
            )
            .await?;
        match r.status {
            200 => Ok(Some(parse_json(&r.body)?)),
            404 => Ok(None),
            _ => Err(http_error(&r)),
        }
    }

    /// Create or update (PUT) the index definition.
    pub async fn put_index(&self, definition: &Value) -> Result<(), IndexError> {
        let body =
            serde_json::to_vec(definition).map_err(|e| IndexError::Protocol(e.to_string()))?;
        let r = self
            .send(
                Method::PUT,
                "",
                Some(body),
                RetryPolicy::MANAGEMENT,
                self.management_timeout(),
            )
            .await?;
        match r.status {
            200 | 201 | 204 => Ok(()),
            _ => Err(http_error(&r)),
        }
    }

    /// Deletes the index (`--recreate`); a missing index is not an error.
    pub async fn delete_index(&self) -> Result<(), IndexError> {
        let r = self
            .send(
                Method::DELETE,
                "",
                None,
                RetryPolicy::MANAGEMENT,
                self.management_timeout(),
            )
            .await?;
        match r.status {
            200 | 204 | 404 => Ok(()),
            _ => Err(http_error(&r)),
        }
    }

    /// All documents in the index, from `docs/$count` (text/plain, tolerant of a UTF-8 BOM).
    pub async fn count_all(&self) -> Result<u64, IndexError> {
        let r = self
            .send(
                Method::GET,
                "docs/$count",
                None,
                RetryPolicy::MANAGEMENT,
                self.management_timeout(),
            )
            .await?;
        if r.status != 200 {
            return Err(http_error(&r));
        }
        parse_count(&r.body)
    }

    /// Documents matching an OData filter, via a search with `count: true` and `top: 0`
    /// (`$count` takes no filter).
    pub async fn count_filtered(&self, filter: &str) -> Result<u64, IndexError> {
        let body = json!({ "search": "*", "filter": filter, "count": true, "top": 0 });
        let v = self
            .search(&body, RetryPolicy::MANAGEMENT, self.management_timeout())
            .await?;
        v.get("@odata.count")
            .and_then(Value::as_u64)
            .ok_or_else(|| IndexError::Protocol("search answer has no @odata.count".into()))
    }

    /// `docs/search` with a JSON body; returns the parsed answer.
    pub async fn search(
        &self,
        body: &Value,
        policy: RetryPolicy,
        timeout: Duration,
    ) -> Result<Value, IndexError> {
        let bytes = serde_json::to_vec(body).map_err(|e| IndexError::Protocol(e.to_string()))?;
        let r = self
            .send(Method::POST, "docs/search", Some(bytes), policy, timeout)
            .await?;
        match r.status {
            200 => parse_json(&r.body),
            404 => Err(IndexError::NotFound {
                index: self.index.clone(),
                endpoint: self.endpoint().to_string(),
            }),
            _ => Err(http_error(&r)),
        }
    }

    pub(crate) fn management_timeout(&self) -> Duration {
        self.timeout.max(Duration::from_secs(30))
    }

    pub(crate) fn not_found(&self) -> IndexError {
        IndexError::NotFound {
            index: self.index.clone(),
            endpoint: self.endpoint().to_string(),
        }
    }
}

fn transport_error(e: reqwest::Error, timeout: Duration) -> IndexError {
    if e.is_timeout() {
        IndexError::Timeout(timeout.as_millis() as u64)
    } else {
        // reqwest errors carry the URL (no key: it is in a header); keep the chain short.
        IndexError::Transport(e.without_url().to_string())
    }
}

fn parse_json(body: &[u8]) -> Result<Value, IndexError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    serde_json::from_slice(body).map_err(|e| IndexError::Protocol(format!("invalid JSON: {e}")))
}

/// Parses the `$count` body: optional UTF-8 BOM, whitespace, a non-negative integer.
pub fn parse_count(body: &[u8]) -> Result<u64, IndexError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = std::str::from_utf8(body)
        .map_err(|_| IndexError::Protocol("$count is not UTF-8".into()))?;
    text.trim().parse::<u64>().map_err(|_| {
        IndexError::Protocol(format!("$count answered `{}`, not a number", text.trim()))
    })
}

/// `{"error":{"code","message"}}` -> (code, message); falls back to the raw text.
pub fn error_body(body: &[u8]) -> (String, String) {
    let v: Option<Value> = parse_json(body).ok();
    let err = v.as_ref().and_then(|v| v.get("error"));
    let code = err
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect());
    (code, message)
}

pub(crate) fn http_error(r: &RawResponse) -> IndexError {
    let (code, message) = error_body(&r.body);
    IndexError::Http {
        status: r.status,
        code: if code.is_empty() {
            StatusCode::from_u16(r.status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .to_string()
        } else {
            code
        },
        message,
    }
}

/// The index definition earshot creates and expects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexSchema {
    pub dim: usize,
    /// `Some` creates an HNSW index (exhaustive queries still possible), `None` exhaustiveKnn.
    pub hnsw: Option<HnswParams>,
}

/// What `--check` found in a remote index definition.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSchema {
    pub dim: usize,
    pub metric: String,
    pub algorithm: String,
}

impl IndexSchema {
    pub fn from_config(cfg: &AzureConfig, dim: usize) -> Self {
        IndexSchema {
            dim,
            hnsw: cfg.hnsw,
        }
    }

    /// The Create Index body (REST reference shape: `name`, `fields[]` with `dimensions` and
    /// `vectorSearchProfile` on the vector field, `vectorSearch.algorithms[]`/`profiles[]`).
    pub fn definition(&self, index_name: &str) -> Value {
        let algorithm = match self.hnsw {
            Some(h) => json!({
                "name": ALGORITHM_NAME,
                "kind": "hnsw",
                "hnswParameters": {
                    "m": h.m,
                    "efConstruction": h.ef_construction,
                    "efSearch": h.ef_search,
                    "metric": "cosine"
                }
            }),
            None => json!({
                "name": ALGORITHM_NAME,
                "kind": "exhaustiveKnn",
                "exhaustiveKnnParameters": { "metric": "cosine" }
            }),
        };
        json!({
            "name": index_name,
            "fields": [
                { "name": KEY_FIELD, "type": "Edm.String", "key": true, "filterable": true,
                  "retrievable": true, "searchable": false },
                { "name": MACHINE_FIELD, "type": "Edm.String", "filterable": true,
                  "retrievable": true, "searchable": false, "facetable": true },
                { "name": WINDOW_FIELD, "type": "Edm.String", "retrievable": true,
                  "searchable": false, "filterable": false },
                { "name": MODEL_FIELD, "type": "Edm.String", "filterable": true,
                  "retrievable": true, "searchable": false },
                { "name": VECTOR_FIELD, "type": "Collection(Edm.Single)", "searchable": true,
                  "retrievable": false, "filterable": false, "sortable": false, "facetable": false,
                  "dimensions": self.dim, "vectorSearchProfile": PROFILE_NAME }
            ],
            "vectorSearch": {
                "algorithms": [algorithm],
                "profiles": [ { "name": PROFILE_NAME, "algorithm": ALGORITHM_NAME } ]
            }
        })
    }
}

/// Reads dimension, metric and algorithm of the vector field from a GET Index answer and checks
/// the fields earshot relies on. `expected_dim` and `model` are used for the messages.
pub fn check_definition(
    def: &Value,
    expected_dim: usize,
    model: &str,
) -> Result<RemoteSchema, IndexError> {
    let name = def.get("name").and_then(Value::as_str).unwrap_or("?");
    let mismatch = |m: String| IndexError::SchemaMismatch(format!("index `{name}`: {m}"));
    let fields = def
        .get("fields")
        .and_then(Value::as_array)
        .ok_or_else(|| mismatch("definition has no fields".into()))?;
    let field = |n: &str| {
        fields
            .iter()
            .find(|f| f.get("name").and_then(Value::as_str) == Some(n))
    };
    let keys: Vec<&str> = fields
        .iter()
        .filter(|f| f.get("key").and_then(Value::as_bool) == Some(true))
        .filter_map(|f| f.get("name").and_then(Value::as_str))
        .collect();
    if keys != [KEY_FIELD] {
        return Err(mismatch(format!(
            "key field is {keys:?}, earshot expects `{KEY_FIELD}`: this index was not made by earshot; \
             use another index_name or `earshot index --recreate`"
        )));
    }
    match field(MACHINE_FIELD) {
        Some(f) if f.get("filterable").and_then(Value::as_bool) == Some(true) => {}
        _ => {
            return Err(mismatch(format!(
                "needs a filterable `{MACHINE_FIELD}` field; recreate it with `earshot index --recreate`"
            )));
        }
    }
    let vf = field(VECTOR_FIELD)
        .ok_or_else(|| mismatch(format!("has no `{VECTOR_FIELD}` vector field")))?;
    if vf.get("type").and_then(Value::as_str) != Some("Collection(Edm.Single)") {
        return Err(mismatch(format!(
            "`{VECTOR_FIELD}` is not Collection(Edm.Single)"
        )));
    }
    let dim = vf.get("dimensions").and_then(Value::as_u64).unwrap_or(0) as usize;
    if dim != expected_dim {
        let who = if model.is_empty() {
            "the profile".to_string()
        } else {
            format!("the profile's model `{model}`")
        };
        return Err(mismatch(format!(
            "`{VECTOR_FIELD}` has {dim} dimensions but {who} makes {expected_dim}: \
             it holds another model's embeddings. Use another index_name, or rebuild it with \
             `earshot index --recreate`"
        )));
    }
    let profile_name = vf
        .get("vectorSearchProfile")
        .and_then(Value::as_str)
        .unwrap_or("");
    let vs = def.get("vectorSearch");
    let profile = vs
        .and_then(|v| v.get("profiles"))
        .and_then(Value::as_array)
        .and_then(|ps| {
            ps.iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(profile_name))
        })
        .ok_or_else(|| {
            mismatch(format!(
                "vector search profile `{profile_name}` is not defined"
            ))
        })?;
    let algo_name = profile
        .get("algorithm")
        .and_then(Value::as_str)
        .unwrap_or("");
    let algo = vs
        .and_then(|v| v.get("algorithms"))
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|x| x.get("name").and_then(Value::as_str) == Some(algo_name))
        })
        .ok_or_else(|| {
            mismatch(format!(
                "vector search algorithm `{algo_name}` is not defined"
            ))
        })?;
    let kind = algo
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let params = match kind.as_str() {
        "hnsw" => algo.get("hnswParameters"),
        "exhaustiveKnn" => algo.get("exhaustiveKnnParameters"),
        other => {
            return Err(mismatch(format!(
                "unsupported vector algorithm kind `{other}`"
            )));
        }
    };
    // Azure's default metric is cosine when the parameters are omitted.
    let metric = params
        .and_then(|p| p.get("metric"))
        .and_then(Value::as_str)
        .unwrap_or("cosine")
        .to_string();
    if metric != "cosine" {
        return Err(mismatch(format!(
            "metric is `{metric}` but earshot's k-NN distances are cosine (only the cosine score \
             converts back to a distance); recreate it with `earshot index --recreate`"
        )));
    }
    Ok(RemoteSchema {
        dim,
        metric,
        algorithm: kind,
    })
}

/// Cosine `@search.score` to cosine distance: `d = 1/score - 1` (see the module doc), clamped
/// to the valid range [0, 2].
pub fn score_to_distance(score: f64) -> Option<f32> {
    if !score.is_finite() || score <= 0.0 {
        return None;
    }
    Some(((1.0 / score) - 1.0).clamp(0.0, 2.0) as f32)
}

/// The remote backend for one machine's normal set.
pub struct AzureIndex {
    client: AzureClient,
    machine: String,
    dim: usize,
    exhaustive: bool,
}

impl AzureIndex {
    pub fn new(client: AzureClient, machine: String, dim: usize, exhaustive: bool) -> Self {
        AzureIndex {
            client,
            machine,
            dim,
            exhaustive,
        }
    }

    pub fn client(&self) -> &AzureClient {
        &self.client
    }

    /// Fails if the index is missing or its vector field does not fit `dim`/cosine.
    /// Reading the definition needs an admin key; with a query key (all the daemon needs) a
    /// one-neighbour probe query checks the dimension instead (Azure answers 400 on a mismatch).
    pub async fn verify_schema(&self) -> Result<Option<RemoteSchema>, IndexError> {
        if self.dim == 0 {
            return Err(IndexError::Config(
                "the profile's embeddings have 0 dimensions".into(),
            ));
        }
        match self.client.get_index().await {
            Ok(None) => Err(self.client.not_found()),
            Ok(Some(def)) => check_definition(&def, self.dim, "").map(Some),
            Err(IndexError::Auth { status: 403, .. }) => {
                let mut probe = vec![0.0f32; self.dim];
                probe[0] = 1.0;
                let body = self.query_body(&probe, 1);
                match self
                    .client
                    .search(
                        &body,
                        RetryPolicy::MANAGEMENT,
                        self.client.management_timeout(),
                    )
                    .await
                {
                    Ok(_) => Ok(None),
                    Err(IndexError::Http {
                        status: 400,
                        message,
                        ..
                    }) => Err(IndexError::SchemaMismatch(format!(
                        "index `{}` refused a {}-dimensional query ({message}): it holds another model's embeddings",
                        self.client.index_name(),
                        self.dim
                    ))),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The `docs/search` body for one window (one vector query; see the module doc).
    pub fn query_body(&self, query: &[f32], k: usize) -> Value {
        json!({
            "select": WINDOW_FIELD,
            "filter": format!("{MACHINE_FIELD} eq {}", odata_string(&self.machine)),
            "vectorFilterMode": "preFilter",
            "top": k,
            "vectorQueries": [{
                "kind": "vector",
                "vector": query,
                "fields": VECTOR_FIELD,
                "k": k,
                "exhaustive": self.exhaustive
            }]
        })
    }
}

/// Parses the raw body of a `docs/search` answer (optional UTF-8 BOM, JSON) into neighbours,
/// nearest first: exactly what a k-NN query does with a 200 answer. Public for the fuzz
/// targets and tests.
pub fn parse_search_body(body: &[u8]) -> Result<Vec<Neighbor>, IndexError> {
    parse_neighbors(&parse_json(body)?)
}

/// Parses a `docs/search` answer into neighbours, nearest first.
pub fn parse_neighbors(answer: &Value) -> Result<Vec<Neighbor>, IndexError> {
    let items = answer
        .get("value")
        .and_then(Value::as_array)
        .ok_or_else(|| IndexError::Protocol("search answer has no `value` array".into()))?;
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let score = it
            .get("@search.score")
            .and_then(Value::as_f64)
            .ok_or_else(|| IndexError::Protocol("search hit without @search.score".into()))?;
        let distance = score_to_distance(score).ok_or_else(|| {
            IndexError::Protocol(format!("search hit with invalid score {score}"))
        })?;
        let id = it
            .get(WINDOW_FIELD)
            .and_then(Value::as_str)
            .ok_or_else(|| IndexError::Protocol(format!("search hit without `{WINDOW_FIELD}`")))?
            .to_string();
        out.push(Neighbor { id, distance });
    }
    out.sort_by(|a, b| a.distance.total_cmp(&b.distance));
    Ok(out)
}

#[async_trait::async_trait]
impl VectorIndex for AzureIndex {
    fn dim(&self) -> usize {
        self.dim
    }

    fn describe(&self) -> String {
        format!(
            "azure index `{}` at {} (machine `{}`, {} dims, {})",
            self.client.index_name(),
            self.client.endpoint(),
            self.machine,
            self.dim,
            if self.exhaustive {
                "exhaustive"
            } else {
                "hnsw"
            }
        )
    }

    async fn knn(&self, query: &[f32], k: usize) -> Result<Vec<Neighbor>, IndexError> {
        if query.len() != self.dim {
            return Err(IndexError::Dimension {
                expected: self.dim,
                got: query.len(),
            });
        }
        let mut q = query.to_vec();
        if !normalise(&mut q) {
            return Err(IndexError::Config(
                "query embedding is zero or not finite".into(),
            ));
        }
        let body = self.query_body(&q, k);
        let answer = self
            .client
            .search(&body, RetryPolicy::QUERY, self.client.query_timeout())
            .await?;
        let mut n = parse_neighbors(&answer)?;
        n.truncate(k);
        Ok(n)
    }
}

/// Where a key file really is: relative names are credentials handed over by systemd when
/// `$CREDENTIALS_DIRECTORY` holds them.
fn credential_path(p: &std::path::Path) -> std::path::PathBuf {
    if p.is_relative()
        && let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY")
    {
        let c = std::path::Path::new(&dir).join(p);
        if c.is_file() {
            return c;
        }
    }
    p.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_conversion_inverts_the_documented_formula() {
        for cos in [-1.0f64, -0.3, 0.0, 0.5, 0.99, 1.0] {
            let score = 1.0 / (1.0 + (1.0 - cos));
            let d = score_to_distance(score).unwrap_or(f32::NAN) as f64;
            assert!((d - (1.0 - cos)).abs() < 1e-6, "cos {cos} -> d {d}");
        }
        assert_eq!(score_to_distance(0.0), None);
    }

    #[test]
    fn count_tolerates_bom_and_whitespace() {
        assert_eq!(parse_count(b"\xEF\xBB\xBF1234").ok(), Some(1234));
        assert_eq!(parse_count(b" 7\r\n").ok(), Some(7));
        assert!(parse_count(b"abc").is_err());
    }

    #[test]
    fn created_definition_passes_its_own_check_and_wrong_dims_are_named() {
        let s = IndexSchema {
            dim: 512,
            hnsw: Some(HnswParams::AZURE_DEFAULT),
        };
        let def = s.definition("pumps");
        let got = check_definition(&def, 512, "cnn14").map_err(|e| e.to_string());
        assert_eq!(got.map(|r| r.dim), Ok(512));
        let err = check_definition(&def, 2048, "cnn14")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("512") && err.contains("2048") && err.contains("cnn14"),
            "{err}"
        );
    }
}
