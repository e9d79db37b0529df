//! Index configuration, embedded in each `[[monitor]]` as `index = { kind = "...", ... }`.
//!
//! Validated once at the edge (`validate`), so that the backends can trust their numbers. The API
//! key itself is never in the config: only where to read it (`api_key_env` or `api_key_file`).

use serde::{Deserialize, Serialize};

use super::IndexError;

/// Latest stable (GA) Azure AI Search REST api-version; vector search is GA since 2023-11-01.
pub const DEFAULT_API_VERSION: &str = "2025-09-01";
/// Default k for the k-NN score.
pub const DEFAULT_K: usize = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum IndexConfig {
    Embedded(EmbeddedConfig),
    Azure(AzureConfig),
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig::Embedded(EmbeddedConfig::default())
    }
}

/// How the embedded index searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Brute force over all normal embeddings: exact, fine up to ~100k windows.
    #[default]
    Exact,
    /// Approximate (HNSW graph): for large normal sets; recall depends on `hnsw`.
    Hnsw,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    pub k: usize,
    pub mode: SearchMode,
    pub hnsw: HnswParams,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            k: DEFAULT_K,
            mode: SearchMode::Exact,
            hnsw: HnswParams {
                m: 16,
                ef_construction: 200,
                ef_search: 100,
            },
        }
    }
}

/// HNSW graph parameters. For Azure the documented ranges are m 4..=10, efConstruction and
/// efSearch 100..=1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HnswParams {
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
}

impl HnswParams {
    /// Azure's defaults (m = 4, efConstruction = 400, efSearch = 500).
    pub const AZURE_DEFAULT: HnswParams = HnswParams {
        m: 4,
        ef_construction: 400,
        ef_search: 500,
    };
}

/// Circuit breaker: after `failure_threshold` consecutive failures the index is skipped for
/// `open_ms`, then one probe query decides whether it closes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub open_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            open_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// `https://<service>.search.windows.net`
    pub endpoint: String,
    pub index_name: String,
    /// Environment variable holding the api-key (admin key for `earshot index`, query key is
    /// enough for the daemon).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// File holding the api-key (first line, surrounding whitespace ignored).
    #[serde(default)]
    pub api_key_file: Option<String>,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    #[serde(default = "default_k")]
    pub k: usize,
    /// Ask Azure for exhaustive (exact) k-NN on every query instead of HNSW.
    #[serde(default)]
    pub exhaustive: bool,
    /// Algorithm created with the index: HNSW with these parameters (exhaustive queries still
    /// work on an HNSW index). `None` with `exhaustive = true` creates an exhaustiveKnn index.
    #[serde(default = "default_azure_hnsw")]
    pub hnsw: Option<HnswParams>,
    /// Per-query timeout; a window not answered by then is scored by the centroid alone.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Queries in flight at once; more are dropped (centroid only), never queued.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Permit plain HTTP to a non-loopback endpoint (never needed in production).
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Upload batch limits: Azure allows 1000 documents and 16 MB per request.
    #[serde(default = "default_batch_max_docs")]
    pub batch_max_docs: usize,
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// Attempts per upload batch (throttling, outage) before a command gives up and says to
    /// run it again; uploads resume without duplicates, so giving up early loses nothing.
    #[serde(default = "default_upload_max_attempts")]
    pub upload_max_attempts: u32,
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_string()
}
fn default_k() -> usize {
    DEFAULT_K
}
fn default_azure_hnsw() -> Option<HnswParams> {
    Some(HnswParams::AZURE_DEFAULT)
}
fn default_timeout_ms() -> u64 {
    2_000
}
fn default_max_concurrency() -> usize {
    4
}
fn default_batch_max_docs() -> usize {
    1000
}
fn default_upload_max_attempts() -> u32 {
    super::retry::RetryPolicy::UPLOAD.max_attempts
}
fn default_batch_max_bytes() -> usize {
    // Under the documented 16 MB with room for headers and JSON number formatting variance.
    12 * 1024 * 1024
}

impl AzureConfig {
    /// A config with defaults for everything but where the service and key are.
    pub fn new(endpoint: &str, index_name: &str, api_key_env: &str) -> Self {
        AzureConfig {
            endpoint: endpoint.to_string(),
            index_name: index_name.to_string(),
            api_key_env: Some(api_key_env.to_string()),
            api_key_file: None,
            api_version: default_api_version(),
            k: DEFAULT_K,
            exhaustive: false,
            hnsw: default_azure_hnsw(),
            timeout_ms: default_timeout_ms(),
            max_concurrency: default_max_concurrency(),
            breaker: BreakerConfig::default(),
            allow_insecure_http: false,
            batch_max_docs: default_batch_max_docs(),
            batch_max_bytes: default_batch_max_bytes(),
            upload_max_attempts: default_upload_max_attempts(),
        }
    }
}

impl IndexConfig {
    /// k for the k-NN score.
    pub fn k(&self) -> usize {
        match self {
            IndexConfig::Embedded(e) => e.k,
            IndexConfig::Azure(a) => a.k,
        }
    }

    /// Checks every value and names the offending key (`index.<key>`) with what is allowed.
    pub fn validate(&self) -> Result<(), IndexError> {
        let bad = |key: &str, msg: String| Err(IndexError::Config(format!("index.{key}: {msg}")));
        match self {
            IndexConfig::Embedded(e) => {
                if e.k == 0 || e.k > 1000 {
                    return bad("k", format!("must be 1..=1000, got {}", e.k));
                }
                if e.hnsw.m < 2 || e.hnsw.m > 128 {
                    return bad("hnsw.m", format!("must be 2..=128, got {}", e.hnsw.m));
                }
                if e.hnsw.ef_construction < e.hnsw.m {
                    return bad(
                        "hnsw.ef_construction",
                        format!(
                            "must be >= m ({}), got {}",
                            e.hnsw.m, e.hnsw.ef_construction
                        ),
                    );
                }
                if e.hnsw.ef_search < e.k {
                    return bad(
                        "hnsw.ef_search",
                        format!("must be >= k ({}), got {}", e.k, e.hnsw.ef_search),
                    );
                }
                Ok(())
            }
            IndexConfig::Azure(a) => a.validate(),
        }
    }
}

impl AzureConfig {
    pub fn validate(&self) -> Result<(), IndexError> {
        let bad = |key: &str, msg: String| Err(IndexError::Config(format!("index.{key}: {msg}")));
        let url = match reqwest::Url::parse(&self.endpoint) {
            Ok(u) => u,
            Err(e) => {
                return bad(
                    "endpoint",
                    format!(
                        "`{}` is not a URL ({e}); expected https://<service>.search.windows.net",
                        self.endpoint
                    ),
                );
            }
        };
        match url.scheme() {
            "https" => {}
            "http" if self.allow_insecure_http || is_loopback(&url) => {}
            "http" => {
                return bad(
                    "endpoint",
                    "plain http would send the api-key unencrypted; use https (or set \
                     allow_insecure_http = true for a test service)"
                        .to_string(),
                );
            }
            other => {
                return bad(
                    "endpoint",
                    format!("unsupported scheme `{other}`, use https"),
                );
            }
        }
        if !valid_index_name(&self.index_name) {
            return bad(
                "index_name",
                format!(
                    "`{}` is not a valid Azure index name: 2-128 lowercase letters, digits or dashes, \
                     starting with a letter or digit, no `--`",
                    self.index_name
                ),
            );
        }
        match (&self.api_key_env, &self.api_key_file) {
            (Some(_), Some(_)) => {
                return bad(
                    "api_key_env",
                    "set either api_key_env or api_key_file, not both".to_string(),
                );
            }
            (None, None) => {
                return bad(
                    "api_key_env",
                    "say where the api-key is: api_key_env = \"EARSHOT_AZURE_KEY\" or api_key_file = \"...\" \
                     (the key itself never goes in the config)"
                        .to_string(),
                );
            }
            (Some(v), None) if v.trim().is_empty() => {
                return bad("api_key_env", "is empty".to_string());
            }
            _ => {}
        }
        if !valid_api_version(&self.api_version) {
            return bad(
                "api_version",
                format!(
                    "`{}` is not a stable api-version with vector search (YYYY-MM-DD, 2023-11-01 or later, \
                     e.g. {DEFAULT_API_VERSION})",
                    self.api_version
                ),
            );
        }
        if self.k == 0 || self.k > 1000 {
            return bad("k", format!("must be 1..=1000, got {}", self.k));
        }
        if let Some(h) = self.hnsw {
            if !(4..=10).contains(&h.m) {
                return bad("hnsw.m", format!("Azure allows 4..=10, got {}", h.m));
            }
            if !(100..=1000).contains(&h.ef_construction) {
                return bad(
                    "hnsw.ef_construction",
                    format!("Azure allows 100..=1000, got {}", h.ef_construction),
                );
            }
            if !(100..=1000).contains(&h.ef_search) {
                return bad(
                    "hnsw.ef_search",
                    format!("Azure allows 100..=1000, got {}", h.ef_search),
                );
            }
        } else if !self.exhaustive {
            return bad(
                "hnsw",
                "no hnsw parameters: set exhaustive = true for an exhaustive KNN index".to_string(),
            );
        }
        if self.timeout_ms == 0 || self.timeout_ms > 120_000 {
            return bad(
                "timeout_ms",
                format!("must be 1..=120000, got {}", self.timeout_ms),
            );
        }
        if self.max_concurrency == 0 || self.max_concurrency > 256 {
            return bad(
                "max_concurrency",
                format!("must be 1..=256, got {}", self.max_concurrency),
            );
        }
        if self.breaker.failure_threshold == 0 {
            return bad(
                "breaker.failure_threshold",
                "must be at least 1".to_string(),
            );
        }
        if self.breaker.open_ms == 0 {
            return bad("breaker.open_ms", "must be at least 1".to_string());
        }
        if self.batch_max_docs == 0 || self.batch_max_docs > 1000 {
            return bad(
                "batch_max_docs",
                format!(
                    "Azure allows 1..=1000 documents per batch, got {}",
                    self.batch_max_docs
                ),
            );
        }
        if self.batch_max_bytes < 64 * 1024 || self.batch_max_bytes > 16 * 1024 * 1024 {
            return bad(
                "batch_max_bytes",
                format!("must be 64 KiB..=16 MiB, got {}", self.batch_max_bytes),
            );
        }
        if !(1..=50).contains(&self.upload_max_attempts) {
            return bad(
                "upload_max_attempts",
                format!("must be 1..=50, got {}", self.upload_max_attempts),
            );
        }
        Ok(())
    }
}

/// Loopback endpoints (tests, emulators) may use plain HTTP: nothing leaves the machine.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Azure index names: lowercase letters, digits, dashes; start with a letter or digit; 2..128;
/// no consecutive dashes.
pub fn valid_index_name(name: &str) -> bool {
    let len_ok = (2..=128).contains(&name.len());
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let start_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    len_ok && chars_ok && start_ok && !name.ends_with('-') && !name.contains("--")
}

fn valid_api_version(v: &str) -> bool {
    let b = v.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    // Preview versions (suffix `-preview`) are refused on purpose: a pinned GA version is stable.
    shape && v >= "2023-11-01"
}
