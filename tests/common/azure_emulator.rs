//! An Azure AI Search emulator for tests and benchmarks: an HTTP server on 127.0.0.1 (random port)
//! implementing the documented REST subset earshot uses, with fault injection.
//!
//! Shapes follow the Azure AI Search REST reference:
//! - Create or Update Index: `PUT /indexes/{name}?api-version=...` with
//!   `{"name", "fields": [{"name","type":"Edm.String","key":true}, {"name","type":"Collection(Edm.Single)",
//!   "dimensions":N,"vectorSearchProfile":"p"}], "vectorSearch": {"algorithms":[{"name","kind":"hnsw",
//!   "hnswParameters":{"m":4,"efConstruction":400,"efSearch":500,"metric":"cosine"}}],
//!   "profiles":[{"name":"p","algorithm":"a"}]}}` -> 201 (created) / 200 (updated).
//! - Index Documents: `POST /indexes/{name}/docs/index` with
//!   `{"value":[{"@search.action":"upload|merge|mergeOrUpload|delete","<key>":"...",...}]}` ->
//!   200, or 207 when some items failed, body `{"value":[{"key","status","errorMessage","statusCode"}]}`.
//!   More than 1000 documents -> 400; body too large -> 413.
//! - Search Documents: `POST /indexes/{name}/docs/search` with `{"select","filter","top","count",
//!   "vectorQueries":[{"kind":"vector","vector":[...],"fields":"...","k":N,"exhaustive":bool}]}` ->
//!   `{"@odata.count"?, "value":[{"@search.score": s, ...selected fields}]}`; for cosine
//!   `@search.score = 1/(1 + (1 - cos))`.
//! - Count Documents: `GET /indexes/{name}/docs/$count` -> text/plain integer, with a UTF-8 BOM.
//! - Errors: `{"error":{"code":"...","message":"..."}}`; 401 without `api-key`, 403 with a wrong key
//!   or a query key on a write; 400 without a supported `api-version`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};

pub const ADMIN_KEY: &str = "emulator-admin-key-0123456789";
pub const QUERY_KEY: &str = "emulator-query-key-9876543210";
pub const API_VERSIONS: &[&str] = &["2023-11-01", "2024-07-01", "2025-09-01"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    PutIndex,
    GetIndex,
    DeleteIndex,
    IndexDocs,
    Search,
    Count,
}

/// How a throttling answer says when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryHint {
    None,
    /// `Retry-After: <seconds>`
    Seconds(u64),
    /// `retry-after-ms`
    Ms(u64),
    /// `x-ms-retry-after-ms`
    XMsMs(u64),
}

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer the next `times` requests of `op` with `status` (429/503/500...).
    Status {
        op: Op,
        status: u16,
        hint: RetryHint,
        times: usize,
    },
    /// Next `times` docs/index requests: items at positions `p % every == 0` fail with
    /// `item_status` in a 207 answer and are not stored.
    Partial {
        every: usize,
        item_status: u16,
        times: usize,
    },
    /// Delay the next `times` requests of `op` (to provoke client timeouts).
    Delay {
        op: Op,
        delay: Duration,
        times: usize,
    },
}

#[derive(Debug, Clone)]
pub struct StoredDoc {
    pub fields: Map<String, Value>,
    pub vector: Vec<f32>,
}

#[derive(Debug, Clone)]
struct EmuIndex {
    definition: Value,
    key_field: String,
    vector_field: String,
    dims: usize,
    metric: String,
    docs: BTreeMap<String, StoredDoc>,
}

#[derive(Default)]
struct Inner {
    indexes: HashMap<String, EmuIndex>,
    faults: VecDeque<Fault>,
    /// While set, every request of these ops answers this status.
    outage: HashMap<Op, u16>,
    max_body_bytes: usize,
    count_bom: bool,
    requests: HashMap<Op, usize>,
    statuses: Vec<(Op, u16)>,
    stored_writes: usize,
}

/// Handle to a running emulator; the server stops when the test's runtime ends.
#[derive(Clone)]
pub struct Emulator {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl Emulator {
    pub async fn start() -> Emulator {
        let inner = Arc::new(Mutex::new(Inner {
            max_body_bytes: 16 * 1024 * 1024,
            count_bom: true,
            ..Default::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = inner.clone();
        let app = Router::new().fallback(move |req: Request<Body>| {
            let state = state.clone();
            async move { handle(state, req).await }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Emulator { addr, inner }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn push_fault(&self, f: Fault) {
        self.inner.lock().unwrap().faults.push_back(f);
    }

    pub fn clear_faults(&self) {
        let mut i = self.inner.lock().unwrap();
        i.faults.clear();
        i.outage.clear();
    }

    pub fn set_outage(&self, op: Op, status: Option<u16>) {
        let mut i = self.inner.lock().unwrap();
        match status {
            Some(s) => {
                i.outage.insert(op, s);
            }
            None => {
                i.outage.remove(&op);
            }
        }
    }

    pub fn set_max_body_bytes(&self, n: usize) {
        self.inner.lock().unwrap().max_body_bytes = n;
    }

    pub fn set_count_bom(&self, on: bool) {
        self.inner.lock().unwrap().count_bom = on;
    }

    pub fn requests(&self, op: Op) -> usize {
        *self.inner.lock().unwrap().requests.get(&op).unwrap_or(&0)
    }

    /// Statuses answered for `op`, in order.
    pub fn statuses(&self, op: Op) -> Vec<u16> {
        let i = self.inner.lock().unwrap();
        i.statuses
            .iter()
            .filter(|(o, _)| *o == op)
            .map(|(_, s)| *s)
            .collect()
    }

    pub fn docs(&self, index: &str) -> BTreeMap<String, StoredDoc> {
        let i = self.inner.lock().unwrap();
        i.indexes
            .get(index)
            .map(|x| x.docs.clone())
            .unwrap_or_default()
    }

    pub fn definition(&self, index: &str) -> Option<Value> {
        let i = self.inner.lock().unwrap();
        i.indexes.get(index).map(|x| x.definition.clone())
    }
}

fn error(status: u16, code: &str, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn json_response(status: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; odata.metadata=minimal"),
    );
    r
}

fn query_param(req: &Request<Body>, name: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

async fn handle(state: Arc<Mutex<Inner>>, req: Request<Body>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("%24", "$"))
        .collect();
    let op = match (
        method.clone(),
        segs.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
    ) {
        (Method::PUT, ["indexes", _]) => Op::PutIndex,
        (Method::GET, ["indexes", _]) => Op::GetIndex,
        (Method::DELETE, ["indexes", _]) => Op::DeleteIndex,
        (Method::POST, ["indexes", _, "docs", "index"]) => Op::IndexDocs,
        (Method::POST, ["indexes", _, "docs", "search"]) => Op::Search,
        (Method::GET, ["indexes", _, "docs", "$count"]) => Op::Count,
        _ => {
            return error(
                404,
                "ResourceNotFound",
                &format!("no route {method} {path}"),
            );
        }
    };
    let index_name = segs[1].clone();
    let resp = dispatch(&state, op, &index_name, req).await;
    let mut i = state.lock().unwrap();
    *i.requests.entry(op).or_insert(0) += 1;
    i.statuses.push((op, resp.status().as_u16()));
    resp
}

async fn dispatch(
    state: &Arc<Mutex<Inner>>,
    op: Op,
    index: &str,
    req: Request<Body>,
) -> Response<Body> {
    // Authentication first, as the service does: 401 without credentials, 403 with a bad key.
    let key = req
        .headers()
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let writes = matches!(
        op,
        Op::PutIndex | Op::DeleteIndex | Op::IndexDocs | Op::GetIndex
    );
    match key.as_deref() {
        None => {
            return error(
                401,
                "",
                "Authorization failed: no api-key header or bearer token",
            );
        }
        Some(ADMIN_KEY) => {}
        Some(QUERY_KEY) if !writes => {}
        Some(QUERY_KEY) => {
            return error(
                403,
                "",
                "Forbidden: this operation requires an admin api-key; a query key can only search and count",
            );
        }
        Some(_) => {
            return error(
                403,
                "",
                "Forbidden: the api-key is not valid for this service",
            );
        }
    }
    match query_param(&req, "api-version") {
        None => {
            return error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            );
        }
        Some(v) if !API_VERSIONS.contains(&v.as_str()) => {
            return error(
                400,
                "InvalidApiVersionParameter",
                &format!("Invalid or unsupported api-version '{v}'."),
            );
        }
        Some(_) => {}
    }

    // Fault injection.
    let (status_fault, delay, partial, max_body) = {
        let mut i = state.lock().unwrap();
        let mut status_fault = i.outage.get(&op).map(|s| (*s, RetryHint::None));
        let mut delay = None;
        let mut partial = None;
        let mut keep = VecDeque::new();
        while let Some(f) = i.faults.pop_front() {
            match f {
                Fault::Status {
                    op: o,
                    status,
                    hint,
                    times,
                } if o == op && status_fault.is_none() => {
                    status_fault = Some((status, hint));
                    if times > 1 {
                        keep.push_back(Fault::Status {
                            op: o,
                            status,
                            hint,
                            times: times - 1,
                        });
                    }
                }
                Fault::Delay {
                    op: o,
                    delay: d,
                    times,
                } if o == op && delay.is_none() => {
                    delay = Some(d);
                    if times > 1 {
                        keep.push_back(Fault::Delay {
                            op: o,
                            delay: d,
                            times: times - 1,
                        });
                    }
                }
                Fault::Partial {
                    every,
                    item_status,
                    times,
                } if op == Op::IndexDocs && partial.is_none() && status_fault.is_none() => {
                    partial = Some((every.max(1), item_status));
                    if times > 1 {
                        keep.push_back(Fault::Partial {
                            every,
                            item_status,
                            times: times - 1,
                        });
                    }
                }
                other => keep.push_back(other),
            }
        }
        i.faults = keep;
        (status_fault, delay, partial, i.max_body_bytes)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if let Some((status, hint)) = status_fault {
        let mut r = error(
            status,
            "ServiceUnavailable",
            "Injected fault: the service is throttling or unavailable",
        );
        let h = r.headers_mut();
        match hint {
            RetryHint::None => {}
            RetryHint::Seconds(s) => {
                h.insert(
                    "retry-after",
                    HeaderValue::from_str(&s.to_string()).unwrap(),
                );
            }
            RetryHint::Ms(ms) => {
                h.insert(
                    "retry-after-ms",
                    HeaderValue::from_str(&ms.to_string()).unwrap(),
                );
            }
            RetryHint::XMsMs(ms) => {
                h.insert(
                    "x-ms-retry-after-ms",
                    HeaderValue::from_str(&ms.to_string()).unwrap(),
                );
            }
        }
        return r;
    }

    let body = match to_bytes(req.into_body(), usize::MAX).await {
        Ok(b) => b,
        Err(_) => return error(400, "InvalidRequest", "could not read the body"),
    };
    if body.len() > max_body {
        return error(
            413,
            "RequestEntityTooLarge",
            "The request is too large; split the batch.",
        );
    }
    let parsed: Option<Value> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    if !body.is_empty() && parsed.is_none() {
        return error(
            400,
            "InvalidRequestBody",
            "The request body is not valid JSON.",
        );
    }
    let mut i = state.lock().unwrap();
    match op {
        Op::PutIndex => put_index(&mut i, index, parsed.unwrap_or(Value::Null)),
        Op::GetIndex => match i.indexes.get(index) {
            Some(x) => json_response(200, &x.definition),
            None => error(
                404,
                "ResourceNameNotFound",
                &format!("No index with the name '{index}' was found."),
            ),
        },
        Op::DeleteIndex => match i.indexes.remove(index) {
            Some(_) => Response::builder().status(204).body(Body::empty()).unwrap(),
            None => error(
                404,
                "ResourceNameNotFound",
                &format!("No index with the name '{index}' was found."),
            ),
        },
        Op::IndexDocs => index_docs(&mut i, index, parsed.unwrap_or(Value::Null), partial),
        Op::Search => search(&i, index, parsed.unwrap_or(Value::Null)),
        Op::Count => match i.indexes.get(index) {
            Some(x) => {
                let text = format!(
                    "{}{}",
                    if i.count_bom { "\u{feff}" } else { "" },
                    x.docs.len()
                );
                let mut r = Response::new(Body::from(text));
                r.headers_mut()
                    .insert("content-type", HeaderValue::from_static("text/plain"));
                r
            }
            None => error(
                404,
                "ResourceNameNotFound",
                &format!("No index with the name '{index}' was found."),
            ),
        },
    }
}

fn put_index(i: &mut Inner, name: &str, def: Value) -> Response<Body> {
    if def.get("name").and_then(Value::as_str) != Some(name) {
        return error(
            400,
            "InvalidRequestParameter",
            "The index name in the body must match the URL.",
        );
    }
    let fields = def
        .get("fields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let keys: Vec<&Value> = fields
        .iter()
        .filter(|f| f.get("key").and_then(Value::as_bool) == Some(true))
        .collect();
    if keys.len() != 1 || keys[0].get("type").and_then(Value::as_str) != Some("Edm.String") {
        return error(
            400,
            "InvalidRequestParameter",
            "The index must have exactly one key field of type Edm.String.",
        );
    }
    let key_field = keys[0]["name"].as_str().unwrap_or("").to_string();
    let vs = def.get("vectorSearch").cloned().unwrap_or(Value::Null);
    let mut vector = None;
    for f in &fields {
        if f.get("type").and_then(Value::as_str) != Some("Collection(Edm.Single)") {
            continue;
        }
        let dims = f.get("dimensions").and_then(Value::as_u64).unwrap_or(0) as usize;
        if !(2..=4096).contains(&dims) {
            return error(
                400,
                "InvalidRequestParameter",
                "Vector field 'dimensions' must be between 2 and 4096.",
            );
        }
        let profile = f
            .get("vectorSearchProfile")
            .and_then(Value::as_str)
            .unwrap_or("");
        let algo_name = vs["profiles"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == profile))
            .and_then(|p| p["algorithm"].as_str());
        let Some(algo_name) = algo_name else {
            return error(
                400,
                "InvalidRequestParameter",
                &format!("Vector search profile '{profile}' is not defined."),
            );
        };
        let Some(algo) = vs["algorithms"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == algo_name))
        else {
            return error(
                400,
                "InvalidRequestParameter",
                &format!("Vector search algorithm '{algo_name}' is not defined."),
            );
        };
        let params = match algo["kind"].as_str() {
            Some("hnsw") => {
                let p = &algo["hnswParameters"];
                let m = p["m"].as_u64().unwrap_or(4);
                let efc = p["efConstruction"].as_u64().unwrap_or(400);
                let efs = p["efSearch"].as_u64().unwrap_or(500);
                if !(4..=10).contains(&m)
                    || !(100..=1000).contains(&efc)
                    || !(100..=1000).contains(&efs)
                {
                    return error(
                        400,
                        "InvalidRequestParameter",
                        "hnswParameters out of range (m 4..10, efConstruction/efSearch 100..1000).",
                    );
                }
                p
            }
            Some("exhaustiveKnn") => &algo["exhaustiveKnnParameters"],
            _ => {
                return error(
                    400,
                    "InvalidRequestParameter",
                    "Unknown vector algorithm kind.",
                );
            }
        };
        let metric = params["metric"].as_str().unwrap_or("cosine").to_string();
        if !["cosine", "euclidean", "dotProduct", "hamming"].contains(&metric.as_str()) {
            return error(400, "InvalidRequestParameter", "Unknown metric.");
        }
        vector = Some((f["name"].as_str().unwrap_or("").to_string(), dims, metric));
    }
    let Some((vector_field, dims, metric)) = vector else {
        return error(
            400,
            "InvalidRequestParameter",
            "The emulator needs one vector field.",
        );
    };
    let mut stored = def.clone();
    stored["@odata.etag"] = json!("\"0x1\"");
    if let Some(existing) = i.indexes.get_mut(name) {
        if existing.dims != dims || existing.vector_field != vector_field {
            return error(
                400,
                "OperationNotAllowed",
                "Existing field definitions cannot be changed; delete and recreate the index.",
            );
        }
        existing.definition = stored;
        existing.metric = metric;
        return json_response(200, &existing.definition);
    }
    i.indexes.insert(
        name.to_string(),
        EmuIndex {
            definition: stored.clone(),
            key_field,
            vector_field,
            dims,
            metric,
            docs: BTreeMap::new(),
        },
    );
    json_response(201, &stored)
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with('_')
        && k.len() <= 1024
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-=".contains(c))
}

fn index_docs(
    i: &mut Inner,
    name: &str,
    body: Value,
    partial: Option<(usize, u16)>,
) -> Response<Body> {
    let Some(idx) = i.indexes.get_mut(name) else {
        return error(
            404,
            "ResourceNameNotFound",
            &format!("No index with the name '{name}' was found."),
        );
    };
    let Some(items) = body.get("value").and_then(Value::as_array) else {
        return error(
            400,
            "InvalidRequestBody",
            "The request body must have a 'value' array.",
        );
    };
    if items.len() > 1000 {
        return error(
            400,
            "InvalidRequestBody",
            "The request contains more than 1000 documents; split the batch.",
        );
    }
    let known: Vec<String> = idx.definition["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|x| x["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    // Malformed documents fail the whole request with 400, as some live services do.
    for it in items {
        for (k, v) in it.as_object().into_iter().flatten() {
            if k == "@search.action" {
                continue;
            }
            if !known.contains(k) {
                return error(
                    400,
                    "InvalidDocument",
                    &format!("The property '{k}' does not exist on type 'search.documentFields'."),
                );
            }
            if *k == idx.vector_field && v.as_array().map(Vec::len) != Some(idx.dims) {
                return error(
                    400,
                    "InvalidDocument",
                    &format!("The vector field '{k}' must have {} dimensions.", idx.dims),
                );
            }
        }
    }
    let mut results = Vec::new();
    let mut any_failed = false;
    let mut stored = 0;
    for (pos, it) in items.iter().enumerate() {
        let key = it
            .get(&idx.key_field)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let action = it
            .get("@search.action")
            .and_then(Value::as_str)
            .unwrap_or("upload");
        if let Some((every, item_status)) = partial
            && pos % every == 0
        {
            any_failed = true;
            results.push(json!({"key": key, "status": false, "errorMessage": "Service busy, retry later", "statusCode": item_status}));
            continue;
        }
        if !valid_key(&key) {
            any_failed = true;
            results.push(json!({"key": key, "status": false, "errorMessage": "Invalid document key", "statusCode": 400}));
            continue;
        }
        let mut fields = it.as_object().cloned().unwrap_or_default();
        fields.remove("@search.action");
        let vector: Option<Vec<f32>> = fields.remove(&idx.vector_field).and_then(|v| {
            v.as_array()
                .map(|a| a.iter().map(|x| x.as_f64().unwrap_or(0.0) as f32).collect())
        });
        match action {
            "upload" => {
                idx.docs.insert(
                    key.clone(),
                    StoredDoc {
                        fields,
                        vector: vector.unwrap_or_default(),
                    },
                );
            }
            "merge" | "mergeOrUpload" => match idx.docs.get_mut(&key) {
                Some(d) => {
                    d.fields.extend(fields);
                    if let Some(v) = vector {
                        d.vector = v;
                    }
                }
                None if action == "merge" => {
                    any_failed = true;
                    results.push(json!({"key": key, "status": false, "errorMessage": "Document not found.", "statusCode": 404}));
                    continue;
                }
                None => {
                    idx.docs.insert(
                        key.clone(),
                        StoredDoc {
                            fields,
                            vector: vector.unwrap_or_default(),
                        },
                    );
                }
            },
            "delete" => {
                idx.docs.remove(&key);
            }
            _ => return error(400, "InvalidRequestBody", "Unknown @search.action."),
        }
        stored += 1;
        results.push(json!({"key": key, "status": true, "errorMessage": null, "statusCode": 200}));
    }
    i.stored_writes += stored;
    json_response(
        if any_failed { 207 } else { 200 },
        &json!({ "value": results }),
    )
}

/// Supports `field eq 'value'` and `field gt 'value'` (string order, for paging by key)
/// clauses joined by ` and ` (OData quotes doubled). Returns (field, op, value).
fn parse_filter(f: &str) -> Option<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    let mut rest = f.trim();
    while !rest.is_empty() {
        let (field, op, after) = match (rest.split_once(" eq "), rest.split_once(" gt ")) {
            (Some((fe, ae)), Some((fg, _))) if fe.len() < fg.len() => (fe, "eq", ae),
            (_, Some((fg, ag))) => (fg, "gt", ag),
            (Some((fe, ae)), None) => (fe, "eq", ae),
            (None, None) => return None,
        };
        let after = after.trim_start().strip_prefix('\'')?;
        let mut value = String::new();
        let mut chars = after.char_indices().peekable();
        let mut end = None;
        while let Some((p, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().map(|(_, c)| *c) == Some('\'') {
                    value.push('\'');
                    chars.next();
                } else {
                    end = Some(p + 1);
                    break;
                }
            } else {
                value.push(c);
            }
        }
        out.push((field.trim().to_string(), op.to_string(), value));
        rest = after[end?..].trim_start();
        if !rest.is_empty() {
            rest = rest.strip_prefix("and ")?;
        }
    }
    Some(out)
}

fn search(i: &Inner, name: &str, body: Value) -> Response<Body> {
    let Some(idx) = i.indexes.get(name) else {
        return error(
            404,
            "ResourceNameNotFound",
            &format!("No index with the name '{name}' was found."),
        );
    };
    let filter = match body.get("filter").and_then(Value::as_str) {
        None => Vec::new(),
        Some(f) => match parse_filter(f) {
            Some(c) => c,
            None => {
                return error(
                    400,
                    "InvalidRequestParameter",
                    &format!("Invalid expression in $filter: {f}"),
                );
            }
        },
    };
    let matches = |d: &StoredDoc| {
        filter.iter().all(|(k, op, v)| {
            let got = d.fields.get(k).and_then(Value::as_str);
            match op.as_str() {
                "gt" => got.is_some_and(|g| g > v.as_str()),
                _ => got == Some(v.as_str()),
            }
        })
    };
    let top = body.get("top").and_then(Value::as_u64).unwrap_or(50) as usize;
    let vqs = body
        .get("vectorQueries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if vqs.len() > 1 {
        return error(
            400,
            "InvalidRequestParameter",
            "The emulator supports one vector query (several give fused rank scores).",
        );
    }
    let mut hits: Vec<(f64, &StoredDoc)> = match vqs.first() {
        None => idx
            .docs
            .values()
            .filter(|d| matches(d))
            .map(|d| (1.0, d))
            .collect(),
        Some(vq) => {
            if vq["kind"] != "vector" || vq["fields"].as_str() != Some(idx.vector_field.as_str()) {
                return error(
                    400,
                    "InvalidRequestParameter",
                    "vectorQueries[0] must be kind 'vector' on the vector field.",
                );
            }
            let q: Vec<f64> = vq["vector"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default();
            if q.len() != idx.dims {
                return error(
                    400,
                    "InvalidRequestParameter",
                    &format!(
                        "The vector query's dimensions ({}) do not match the field's ({}).",
                        q.len(),
                        idx.dims
                    ),
                );
            }
            let k = vq["k"].as_u64().unwrap_or(50) as usize;
            let qn = q.iter().map(|x| x * x).sum::<f64>().sqrt();
            let mut scored: Vec<(f64, &StoredDoc)> = idx
                .docs
                .values()
                // A document without a vector is not in the vector index, as in Azure.
                .filter(|d| matches(d) && d.vector.len() == idx.dims)
                .map(|d| {
                    let dot: f64 = d.vector.iter().zip(&q).map(|(a, b)| *a as f64 * b).sum();
                    let dn = d
                        .vector
                        .iter()
                        .map(|x| (*x as f64) * (*x as f64))
                        .sum::<f64>()
                        .sqrt();
                    let score = match idx.metric.as_str() {
                        "cosine" => 1.0 / (1.0 + (1.0 - dot / (qn * dn))),
                        "dotProduct" => dot,
                        _ => {
                            let d2: f64 = d
                                .vector
                                .iter()
                                .zip(&q)
                                .map(|(a, b)| (*a as f64 - b).powi(2))
                                .sum();
                            1.0 / (1.0 + d2.sqrt())
                        }
                    };
                    (score, d)
                })
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            scored.truncate(k);
            scored
        }
    };
    let count = hits.len();
    hits.truncate(top);
    let select: Option<Vec<String>> = body
        .get("select")
        .and_then(Value::as_str)
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    // Like the service: a vector comes back only from a retrievable field, and selecting a
    // field that is not retrievable is an error.
    let vector_retrievable = idx.definition["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|x| x["name"] == idx.vector_field.as_str()))
        .is_some_and(|f| f["retrievable"].as_bool() != Some(false));
    let wants_vector = select
        .as_ref()
        .is_some_and(|s| s.contains(&idx.vector_field));
    if wants_vector && !vector_retrievable {
        return error(
            400,
            "InvalidRequestParameter",
            &format!(
                "Invalid expression: The field '{}' in $select is not retrievable.",
                idx.vector_field
            ),
        );
    }
    let with_vector = vector_retrievable && select.as_ref().is_none_or(|_| wants_vector);
    let value: Vec<Value> = hits
        .iter()
        .map(|(score, d)| {
            let mut o = Map::new();
            o.insert("@search.score".into(), json!(score));
            for (k, v) in &d.fields {
                if select.as_ref().is_none_or(|s| s.contains(k)) {
                    o.insert(k.clone(), v.clone());
                }
            }
            if with_vector {
                o.insert(idx.vector_field.clone(), json!(d.vector));
            }
            Value::Object(o)
        })
        .collect();
    let mut answer = json!({ "@odata.context": format!("https://emulator/indexes('{name}')/$metadata#docs(*)"), "value": value });
    if body.get("count").and_then(Value::as_bool) == Some(true) {
        answer["@odata.count"] = json!(count);
    }
    json_response(200, &answer)
}
