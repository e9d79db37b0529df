//! `[alerts]`: where events go beyond the events file, typed and validated once.
//!
//! ```toml
//! [alerts]
//! max_age = "48h"            # outbox caps: older or beyond-size alerts are discarded (counted)
//! max_bytes = 16777216
//! [[alerts.webhook]]
//! name = "tickets"
//! url_file = "/etc/earshot/tickets.url"     # or url = "https://..."
//! hmac_secret_env = "EARSHOT_TICKETS_SECRET" # or hmac_secret_file
//! kinds = ["anomaly"]
//! [[alerts.alertmanager]]
//! name = "am"
//! url = "http://127.0.0.1:9093"
//! ```
//!
//! Secrets (a URL with a token in it, the HMAC key) are only named here, never written: they are
//! read from the environment or a file when the targets are built, and never logged
//! ([`Secret`]'s `Debug` prints a placeholder).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::capture::settings::serde_duration;

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Alerts older than this are discarded from the outbox (oldest first, counted).
    #[serde(default = "default_max_age", with = "serde_duration")]
    pub max_age: Duration,
    /// The outbox holds at most this many bytes of pending alerts; beyond it the oldest are
    /// discarded (counted).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// At shutdown, how long delivery may go on before pending alerts are left in the outbox
    /// for the next start.
    #[serde(default = "default_grace", with = "serde_duration")]
    pub shutdown_grace: Duration,
    /// Base URL of this earshot (e.g. `http://edge-pc-3:9847`): `externalURL` of webhook
    /// payloads and `generatorURL` of alerts. Empty by default.
    #[serde(default)]
    pub external_url: String,
    #[serde(default)]
    pub webhook: Vec<TargetConfig>,
    #[serde(default)]
    pub alertmanager: Vec<TargetConfig>,
}

fn default_max_age() -> Duration {
    Duration::from_secs(48 * 3600)
}
fn default_max_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_grace() -> Duration {
    Duration::from_secs(2)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retry_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(300)
}
fn default_resend() -> Duration {
    Duration::from_secs(60)
}
fn default_signature_header() -> String {
    "X-Earshot-Signature".into()
}
fn default_kinds() -> Vec<String> {
    KINDS.iter().map(|s| s.to_string()).collect()
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            max_age: default_max_age(),
            max_bytes: default_max_bytes(),
            shutdown_grace: default_grace(),
            external_url: String::new(),
            webhook: Vec::new(),
            alertmanager: Vec::new(),
        }
    }
}

/// Event kinds a target can filter on: each matches the event kinds that start with it
/// (`anomaly` = `anomaly_started`, `anomaly_ongoing`, `anomaly_ended`; `device` =
/// `device_lost`, `device_recovered`; `monitor` = `monitor_down`, ...; `no_signal` =
/// `no_signal` and its resolution `signal_back`).
pub const KINDS: &[&str] = &["anomaly", "device", "monitor", "no_signal"];

/// Whether an event kind (e.g. `anomaly_started`) passes a target's `kinds` filter. A
/// resolving kind goes wherever its firing kind goes, so no receiver is left with an alert
/// that never resolves.
pub fn kind_selected(kinds: &[String], kind: &str) -> bool {
    let kind = match kind {
        "signal_back" => "no_signal",
        k => k,
    };
    kinds
        .iter()
        .any(|k| kind == k || kind.starts_with(&format!("{k}_")))
}

/// One alert target (`[[alerts.webhook]]` or `[[alerts.alertmanager]]`): the HTTP side and
/// the retry policy. One struct for both so that unknown keys are refused by serde; the few
/// keys that apply to one type only are checked in [`AlertsConfig::validate`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Target name: the `target` label of the metrics and the webhook's `receiver`.
    pub name: String,
    /// The URL (webhook: the full URL; Alertmanager: its base, `/api/v2/alerts` is appended).
    #[serde(default)]
    pub url: Option<String>,
    /// File holding the URL (for URLs with a token in them); read at start.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    #[serde(default = "default_timeout", with = "serde_duration")]
    pub timeout: Duration,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Event kinds sent to this target (see [`KINDS`]); default all.
    #[serde(default = "default_kinds")]
    pub kinds: Vec<String>,
    /// First retry delay; doubles per failure up to `retry_max`, with jitter.
    #[serde(default = "default_retry_initial", with = "serde_duration")]
    pub retry_initial: Duration,
    #[serde(default = "default_retry_max", with = "serde_duration")]
    pub retry_max: Duration,
    /// Webhook only: environment variable holding the HMAC-SHA256 key; the signature of the
    /// body is sent in `signature_header` as `sha256=<hex>`.
    #[serde(default)]
    pub hmac_secret_env: Option<String>,
    /// Webhook only: file holding the HMAC key (trailing newline ignored).
    #[serde(default)]
    pub hmac_secret_file: Option<PathBuf>,
    /// Webhook only.
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
    /// Alertmanager only: firing alerts are re-sent this often with `endsAt` = now + 4 x this
    /// (as Prometheus does), so Alertmanager keeps them firing while the event lasts and
    /// resolves them by itself if earshot dies.
    #[serde(default = "default_resend", with = "serde_duration")]
    pub resend_interval: Duration,
}

/// A secret read from the environment or a file; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A bad `[alerts]` setting: the key and what to do.
#[derive(Debug, thiserror::Error)]
#[error("alerts.{key}: {detail}")]
pub struct AlertConfigError {
    pub key: String,
    pub detail: String,
}

fn bad(key: impl Into<String>, detail: impl Into<String>) -> AlertConfigError {
    AlertConfigError {
        key: key.into(),
        detail: detail.into(),
    }
}

impl AlertsConfig {
    /// Every target with its config key (`webhook[0] (name)`) and whether it is an
    /// Alertmanager.
    pub fn targets(&self) -> impl Iterator<Item = (String, &TargetConfig, bool)> {
        let w = self
            .webhook
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("webhook[{i}] ({})", t.name), t, false));
        let a = self
            .alertmanager
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("alertmanager[{i}] ({})", t.name), t, true));
        w.chain(a)
    }

    /// Checks every value that can be checked without reading secrets.
    pub fn validate(&self) -> Result<(), AlertConfigError> {
        if self.max_bytes < 4096 {
            return Err(bad("max_bytes", "must be at least 4096 bytes"));
        }
        if self.max_age < Duration::from_secs(1) {
            return Err(bad("max_age", "must be at least 1s"));
        }
        if self.shutdown_grace > Duration::from_secs(60) {
            return Err(bad(
                "shutdown_grace",
                "must be at most 60s (systemd stops the service after TimeoutStopSec)",
            ));
        }
        if !self.external_url.is_empty() {
            check_url(&self.external_url).map_err(|d| bad("external_url", d))?;
        }
        let mut names = std::collections::BTreeSet::new();
        for (key, c, is_am) in self.targets() {
            let k = |s: &str| format!("{key}.{s}");
            if c.name.trim().is_empty()
                || !c
                    .name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
            {
                return Err(bad(
                    k("name"),
                    "must be a non-empty name of letters, digits, '-', '_' or '.'",
                ));
            }
            if !names.insert(c.name.clone()) {
                return Err(bad(k("name"), "two alert targets have this name"));
            }
            match (&c.url, &c.url_file) {
                (Some(_), Some(_)) => {
                    return Err(bad(k("url"), "give either `url` or `url_file`, not both"));
                }
                (None, None) => {
                    return Err(bad(
                        k("url"),
                        "give `url = \"http://...\"` or `url_file = \"/path\"`",
                    ));
                }
                (Some(u), None) => check_url(u).map_err(|d| bad(k("url"), d))?,
                (None, Some(_)) => {}
            }
            if c.timeout < Duration::from_millis(10) || c.timeout > Duration::from_secs(300) {
                return Err(bad(k("timeout"), "must be between 10ms and 300s"));
            }
            if c.retry_initial < Duration::from_millis(10) || c.retry_max < c.retry_initial {
                return Err(bad(
                    k("retry_initial"),
                    "retry_initial must be at least 10ms and retry_max at least retry_initial",
                ));
            }
            if c.kinds.is_empty() {
                return Err(bad(
                    k("kinds"),
                    format!("empty: remove the target or list some of {KINDS:?}"),
                ));
            }
            for kind in &c.kinds {
                if !KINDS.contains(&kind.as_str()) {
                    return Err(bad(
                        k("kinds"),
                        format!("unknown kind {kind:?}; known: {KINDS:?}"),
                    ));
                }
            }
            for (h, v) in &c.headers {
                if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err()
                    || reqwest::header::HeaderValue::from_str(v).is_err()
                {
                    return Err(bad(
                        k("headers"),
                        format!("{h:?} is not a valid HTTP header"),
                    ));
                }
            }
            if is_am {
                if c.hmac_secret_env.is_some() || c.hmac_secret_file.is_some() {
                    return Err(bad(
                        k("hmac_secret_env"),
                        "Alertmanager does not check signatures: HMAC applies to webhook targets only",
                    ));
                }
                if c.resend_interval < Duration::from_secs(1) {
                    return Err(bad(k("resend_interval"), "must be at least 1s"));
                }
            } else {
                if c.hmac_secret_env.is_some() && c.hmac_secret_file.is_some() {
                    return Err(bad(
                        k("hmac_secret_env"),
                        "give either hmac_secret_env or hmac_secret_file, not both",
                    ));
                }
                if reqwest::header::HeaderName::from_bytes(c.signature_header.as_bytes()).is_err() {
                    return Err(bad(k("signature_header"), "not a valid HTTP header name"));
                }
            }
        }
        Ok(())
    }

    /// Whether any target is configured.
    pub fn any(&self) -> bool {
        !self.webhook.is_empty() || !self.alertmanager.is_empty()
    }
}

fn check_url(u: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(u.trim()).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    Ok(())
}

impl TargetConfig {
    /// The URL, read from `url_file` if that is how it is given. The error never holds the URL.
    pub fn resolve_url(&self, key: &str) -> Result<Secret, AlertConfigError> {
        let url = match (&self.url, &self.url_file) {
            (Some(u), _) => u.trim().to_string(),
            (None, Some(p)) => {
                read_secret_file(p).map_err(|d| bad(format!("{key}.url_file"), d))?
            }
            (None, None) => return Err(bad(format!("{key}.url"), "missing")),
        };
        check_url(&url).map_err(|d| bad(format!("{key}.url_file"), d))?;
        Ok(Secret(url))
    }

    /// The HMAC key, if one is configured. The error names the variable or file, never the key.
    pub fn resolve_secret(&self, key: &str) -> Result<Option<Secret>, AlertConfigError> {
        if let Some(var) = &self.hmac_secret_env {
            return match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Some(Secret(v))),
                _ => Err(bad(
                    format!("{key}.hmac_secret_env"),
                    format!("environment variable {var} is not set (or empty or not UTF-8)"),
                )),
            };
        }
        if let Some(p) = &self.hmac_secret_file {
            return read_secret_file(p)
                .map(|s| Some(Secret(s)))
                .map_err(|d| bad(format!("{key}.hmac_secret_file"), d));
        }
        Ok(None)
    }
}

fn read_secret_file(p: &std::path::Path) -> Result<String, String> {
    let md = std::fs::metadata(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    if !md.is_file() || md.len() > 64 * 1024 {
        return Err(format!(
            "{} must be a regular file of at most 64 KiB",
            p.display()
        ));
    }
    let s = std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    let s = s.trim_end_matches(['\n', '\r']).to_string();
    if s.is_empty() {
        return Err(format!("{} is empty", p.display()));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<AlertsConfig, String> {
        let c: AlertsConfig = toml::from_str(s).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn a_full_section_parses() {
        let c = parse(
            r#"
            max_age = "2h"
            [[webhook]]
            name = "t"
            url = "http://127.0.0.1:9/x"
            headers = { "X-Team" = "maint" }
            hmac_secret_env = "X"
            kinds = ["anomaly"]
            [[alertmanager]]
            name = "am"
            url = "http://127.0.0.1:9093"
            resend_interval = "30s"
            "#,
        )
        .unwrap();
        assert_eq!(c.max_age, Duration::from_secs(7200));
        assert_eq!(c.webhook[0].kinds, vec!["anomaly"]);
        assert_eq!(c.alertmanager[0].kinds.len(), KINDS.len());
        assert_eq!(c.alertmanager[0].resend_interval, Duration::from_secs(30));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("[[webhook]]\nname = \"a\"\n", "webhook[0] (a).url"),
            ("[[webhook]]\nname = \"a\"\nurl = \"ftp://x\"\n", "url"),
            (
                "[[webhook]]\nname = \"a\"\nurl = \"http://x\"\nkinds = [\"anomalies\"]\n",
                "kinds",
            ),
            (
                "[[webhook]]\nname = \"a\"\nurl = \"http://x\"\n[[alertmanager]]\nname = \"a\"\nurl = \"http://y\"\n",
                "alertmanager[0] (a).name",
            ),
            ("max_bytes = 10\n", "max_bytes"),
            (
                "[[webhook]]\nname = \"a\"\nurl = \"http://x\"\nsecret = \"s\"\n",
                "secret",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn secrets_come_from_env_or_file_and_are_not_printed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("url");
        std::fs::write(&f, "http://127.0.0.1:1/hook?token=s3cr3t\n").unwrap();
        let c = parse(&format!(
            "[[webhook]]\nname = \"a\"\nurl_file = \"{}\"\nhmac_secret_file = \"{}\"\n",
            f.display(),
            f.display()
        ))
        .unwrap();
        let url = c.webhook[0].resolve_url("webhook[0]").unwrap();
        assert_eq!(url.expose(), "http://127.0.0.1:1/hook?token=s3cr3t");
        assert!(!format!("{url:?}").contains("s3cr3t"));
        let w = TargetConfig {
            hmac_secret_file: None,
            hmac_secret_env: Some("EARSHOT_TEST_SURELY_UNSET_VAR".into()),
            ..c.webhook[0].clone()
        };
        let e = w.resolve_secret("webhook[0]").unwrap_err().to_string();
        assert!(e.contains("EARSHOT_TEST_SURELY_UNSET_VAR"), "{e}");
        std::fs::write(&f, "").unwrap();
        let e = c.webhook[0].resolve_url("webhook[0]").unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }

    #[test]
    fn kind_filter_matches_prefixes() {
        let k = vec!["anomaly".to_string(), "device".to_string()];
        assert!(kind_selected(&k, "anomaly_started"));
        assert!(kind_selected(&k, "device_recovered"));
        assert!(!kind_selected(&k, "monitor_down"));
        assert!(!kind_selected(&k, "anomalyx"));
        let k = vec!["no_signal".to_string()];
        assert!(kind_selected(&k, "no_signal"));
        assert!(
            kind_selected(&k, "signal_back"),
            "the resolution follows its alert"
        );
        assert!(!kind_selected(&k, "anomaly_started"));
    }
}
