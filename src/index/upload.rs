//! Bulk upload of normal embeddings to Azure AI Search.
//!
//! Documented limits and behaviours handled here:
//! - a batch holds at most 1000 documents and 16 MB; a 1000-document batch of 1536-dimension
//!   vectors is ~32 MB, so batches are cut by count AND serialised size;
//! - `docs/index` answers 200 or 207 with one `{key, status, errorMessage, statusCode}` per item:
//!   only failed items are resent, with backoff, and only if their status is transient;
//! - 413 (body too large) and 400 for a whole batch (some services reject a malformed document
//!   that way) are answered by splitting the batch in halves until the culprit is alone;
//! - 429/503 are retried by [`AzureClient::send`] honouring Retry-After hints.
//!
//! Every document uses `mergeOrUpload` with a deterministic key ([`super::keys::doc_key`]), so a
//! resent batch or a re-run after an interruption overwrites instead of duplicating.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use ndarray::ArrayView2;
use reqwest::Method;
use serde_json::Value;

use super::IndexError;
use super::azure::{
    AzureClient, KEY_FIELD, MACHINE_FIELD, MODEL_FIELD, VECTOR_FIELD, WINDOW_FIELD, error_body,
    http_error,
};
use super::embedded::normalise;
use super::keys::{doc_key, is_valid_azure_key};
use super::retry::{RetryPolicy, is_retryable_item_status};

/// Batch limits and patience.
#[derive(Debug, Clone, Copy)]
pub struct UploadOptions {
    pub max_docs: usize,
    pub max_bytes: usize,
    pub policy: RetryPolicy,
    pub timeout: Duration,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            max_docs: 1000,
            max_bytes: 12 * 1024 * 1024,
            policy: RetryPolicy::UPLOAD,
            timeout: Duration::from_secs(120),
        }
    }
}

impl UploadOptions {
    /// The batch limits and patience a config asks for (`batch_max_docs`, `batch_max_bytes`,
    /// `upload_max_attempts`), with at least a minute per request: a 12 MB batch is slow
    /// on an edge PC's uplink.
    pub fn from_config(cfg: &super::AzureConfig) -> Self {
        UploadOptions {
            max_docs: cfg.batch_max_docs,
            max_bytes: cfg.batch_max_bytes,
            policy: RetryPolicy {
                max_attempts: cfg.upload_max_attempts.max(1),
                ..RetryPolicy::UPLOAD
            },
            timeout: Duration::from_millis(cfg.timeout_ms).max(Duration::from_secs(60)),
        }
    }
}

/// What an upload did, for the CLI summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadReport {
    /// Documents confirmed stored.
    pub documents: usize,
    /// `docs/index` requests that got an answer (not counting transport retries).
    pub requests: usize,
    /// Items resent after a per-item transient failure (207).
    pub retried_items: usize,
    /// Batches split after 400/413.
    pub splits: usize,
}

struct Batch {
    docs: Vec<usize>,
    attempt: u32,
}

/// Uploads `embeddings` (rows = windows, ids aligned) for `machine` with model name `model`.
pub async fn upload_embeddings(
    client: &AzureClient,
    machine: &str,
    model: &str,
    embeddings: ArrayView2<'_, f32>,
    ids: &[String],
    opts: &UploadOptions,
) -> Result<UploadReport, IndexError> {
    if ids.len() != embeddings.nrows() {
        return Err(IndexError::Config(format!(
            "{} embeddings but {} ids: the profile is inconsistent",
            embeddings.nrows(),
            ids.len()
        )));
    }
    let mut docs = Vec::with_capacity(ids.len());
    let mut keys = Vec::with_capacity(ids.len());
    for (row, id) in embeddings.outer_iter().zip(ids) {
        let key = doc_key(machine, id);
        if !is_valid_azure_key(&key) {
            return Err(IndexError::Config(format!(
                "window id `{id}` makes a document key longer than Azure's 1024 characters; shorten clip names"
            )));
        }
        let mut v = row.to_vec();
        if !normalise(&mut v) {
            return Err(IndexError::Config(format!(
                "embedding `{id}` is zero or not finite"
            )));
        }
        let doc = serde_json::json!({
            "@search.action": "mergeOrUpload",
            KEY_FIELD: key,
            MACHINE_FIELD: machine,
            WINDOW_FIELD: id,
            MODEL_FIELD: model,
            VECTOR_FIELD: v,
        });
        let text = serde_json::to_string(&doc).map_err(|e| IndexError::Protocol(e.to_string()))?;
        if text.len() + 16 > opts.max_bytes {
            return Err(IndexError::Config(format!(
                "one document is {} bytes, over the batch limit of {} bytes",
                text.len(),
                opts.max_bytes
            )));
        }
        docs.push(text);
        keys.push(key);
    }
    index_documents(client, &docs, &keys, ids, opts).await
}

/// Sends prepared documents (`docs[i]` serialised JSON with its `@search.action` and key
/// `keys[i]`; `names[i]` is what messages call it) in batches, resending transient failures:
/// the machinery of [`upload_embeddings`], shared with the sound catalog and feedback, which
/// store other fields but need the same limits, retries and idempotence.
pub async fn index_documents(
    client: &AzureClient,
    docs: &[String],
    keys: &[String],
    names: &[String],
    opts: &UploadOptions,
) -> Result<UploadReport, IndexError> {
    let ids = names;
    let index_of: HashMap<&str, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();

    let mut queue: VecDeque<Batch> = pack(docs, opts.max_docs.clamp(1, 1000), opts.max_bytes)
        .into_iter()
        .map(|docs| Batch { docs, attempt: 1 })
        .collect();
    let mut report = UploadReport::default();
    let mut failed: Vec<(usize, String)> = Vec::new();

    while let Some(batch) = queue.pop_front() {
        let body = batch_body(docs, &batch.docs);
        let r = client
            .send(
                Method::POST,
                "docs/index",
                Some(body),
                opts.policy,
                opts.timeout,
            )
            .await?;
        report.requests += 1;
        match r.status {
            200 | 201 | 207 => {
                let answer: Value =
                    serde_json::from_slice(r.body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&r.body))
                        .map_err(|e| {
                            IndexError::Protocol(format!("docs/index answer is not JSON: {e}"))
                        })?;
                let items = answer
                    .get("value")
                    .and_then(Value::as_array)
                    .ok_or_else(|| {
                        IndexError::Protocol("docs/index answer has no `value` array".into())
                    })?;
                let mut acknowledged = vec![false; batch.docs.len()];
                let pos: HashMap<usize, usize> = batch
                    .docs
                    .iter()
                    .enumerate()
                    .map(|(p, &d)| (d, p))
                    .collect();
                let mut retry = Vec::new();
                for it in items {
                    let key = it.get("key").and_then(Value::as_str).unwrap_or("");
                    let Some(&doc) = index_of.get(key) else {
                        continue;
                    };
                    let Some(&p) = pos.get(&doc) else { continue };
                    acknowledged[p] = true;
                    let ok = it.get("status").and_then(Value::as_bool).unwrap_or(false);
                    if ok {
                        report.documents += 1;
                        continue;
                    }
                    let code = it.get("statusCode").and_then(Value::as_u64).unwrap_or(0) as u16;
                    let msg = it
                        .get("errorMessage")
                        .and_then(Value::as_str)
                        .unwrap_or("no message")
                        .to_string();
                    if is_retryable_item_status(code) {
                        retry.push(doc);
                    } else {
                        failed.push((doc, format!("HTTP {code}: {msg}")));
                    }
                }
                // An item the service did not mention was not confirmed: send it again.
                retry.extend(
                    batch
                        .docs
                        .iter()
                        .zip(&acknowledged)
                        .filter(|(_, a)| !**a)
                        .map(|(d, _)| *d),
                );
                if !retry.is_empty() {
                    if batch.attempt >= opts.policy.max_attempts {
                        return Err(IndexError::Upload {
                            failed: retry.len(),
                            example_id: ids[retry[0]].clone(),
                            message: format!(
                                "still failing after {} attempts (service overloaded?); run the same \
                                 command again later: it resumes without duplicates",
                                batch.attempt
                            ),
                        });
                    }
                    report.retried_items += retry.len();
                    tracing::info!(
                        items = retry.len(),
                        attempt = batch.attempt,
                        "resending failed documents"
                    );
                    tokio::time::sleep(opts.policy.delay(batch.attempt, None)).await;
                    queue.push_front(Batch {
                        docs: retry,
                        attempt: batch.attempt + 1,
                    });
                }
            }
            400 | 413 if batch.docs.len() > 1 => {
                report.splits += 1;
                let mid = batch.docs.len() / 2;
                let (a, b) = batch.docs.split_at(mid);
                tracing::info!(
                    status = r.status,
                    size = batch.docs.len(),
                    "splitting batch"
                );
                queue.push_front(Batch {
                    docs: b.to_vec(),
                    attempt: batch.attempt,
                });
                queue.push_front(Batch {
                    docs: a.to_vec(),
                    attempt: batch.attempt,
                });
            }
            400 | 413 => {
                let (_, msg) = error_body(&r.body);
                failed.push((batch.docs[0], format!("HTTP {}: {msg}", r.status)));
            }
            404 => return Err(client.not_found()),
            _ => return Err(http_error(&r)),
        }
    }
    if let Some((doc, msg)) = failed.first() {
        return Err(IndexError::Upload {
            failed: failed.len(),
            example_id: ids[*doc].clone(),
            message: msg.clone(),
        });
    }
    Ok(report)
}

/// Deletes the documents with these keys, batched and retried like an upload. Deleting a key
/// the index does not hold succeeds, so an interrupted delete can simply be run again.
pub async fn delete_documents(
    client: &AzureClient,
    keys: &[String],
    opts: &UploadOptions,
) -> Result<UploadReport, IndexError> {
    let docs: Vec<String> = keys
        .iter()
        .map(|k| serde_json::json!({ "@search.action": "delete", KEY_FIELD: k }).to_string())
        .collect();
    index_documents(client, &docs, keys, keys, opts).await
}

/// Cuts documents into batches of at most `max_docs` and `max_bytes` of request body.
pub fn pack(docs: &[String], max_docs: usize, max_bytes: usize) -> Vec<Vec<usize>> {
    const ENVELOPE: usize = 12; // {"value":[ ... ]}
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = ENVELOPE;
    for (i, d) in docs.iter().enumerate() {
        let add = d.len() + 1;
        if !cur.is_empty() && (cur.len() >= max_docs || bytes + add > max_bytes) {
            out.push(std::mem::take(&mut cur));
            bytes = ENVELOPE;
        }
        cur.push(i);
        bytes += add;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn batch_body(docs: &[String], which: &[usize]) -> Vec<u8> {
    let len: usize = which.iter().map(|&i| docs[i].len() + 1).sum::<usize>() + 12;
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(b"{\"value\":[");
    for (n, &i) in which.iter().enumerate() {
        if n > 0 {
            b.push(b',');
        }
        b.extend_from_slice(docs[i].as_bytes());
    }
    b.extend_from_slice(b"]}");
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_respects_count_and_bytes() {
        let docs: Vec<String> = (0..25).map(|i| "x".repeat(100 + i)).collect();
        for (max_docs, max_bytes) in [(10, 1_000_000), (1000, 600), (3, 400)] {
            let batches = pack(&docs, max_docs, max_bytes);
            let flat: Vec<usize> = batches.iter().flatten().copied().collect();
            assert_eq!(flat, (0..25).collect::<Vec<_>>());
            for b in &batches {
                assert!(b.len() <= max_docs);
                assert!(
                    batch_body(&docs, b).len() <= max_bytes,
                    "{} > {max_bytes}",
                    batch_body(&docs, b).len()
                );
            }
        }
    }

    #[test]
    fn body_is_valid_json() {
        let docs = vec!["{\"a\":1}".to_string(), "{\"b\":2}".to_string()];
        let v: Value = serde_json::from_slice(&batch_body(&docs, &[1, 0])).unwrap_or(Value::Null);
        assert_eq!(v["value"][0]["b"], 2);
    }
}
