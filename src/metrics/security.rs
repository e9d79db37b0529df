//! Securing the HTTP endpoint when it leaves loopback: basic auth against a password hash read
//! from a file, and TLS (rustls) from PEM certificate and key files.
//!
//! Both are applied by the accept loop ([`super::listener`]) around the *whole* service, not
//! per route: TLS wraps the connection before HTTP is spoken, and basic auth is checked before
//! the request reaches the router, so every route anyone adds later (`/metrics`, `/healthz`,
//! an events page, clip downloads) and every unknown path (404) is behind the same door.
//!
//! Why a hash in a file: the config is world-readable on many installs and is shown around
//! when asking for help; the password itself is never stored. Accepted hashes: bcrypt
//! (`$2b$`/`$2y$`/`$2a$`, what Prometheus' own `web.yml` and `htpasswd -nBC 10 ""` use) and
//! argon2 PHC strings (`$argon2id$...`, from the `argon2` command). Verifying costs tens of
//! milliseconds by design, so the last accepted credential is remembered (as a SHA-256 digest,
//! compared in constant time) and a scraper asking every few seconds does not pay it each time;
//! at most one verification runs at a time, so wrong passwords cannot eat the CPU cores.
//!
//! A non-loopback `listen` without `basic_auth` is refused unless `allow_unauthenticated =
//! true` says it is meant (TLS alone encrypts but does not say who may read).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// `[metrics.basic_auth]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// The user name clients send.
    pub user: String,
    /// File whose first line is the password's bcrypt or argon2 (PHC) hash.
    pub password_hash_file: PathBuf,
}

/// `[metrics.tls]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (server certificate first).
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Why the endpoint's security settings cannot be used; says which key and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(
        "`metrics.listen` = {0} is not loopback and the endpoint has no `[metrics.basic_auth]`: anyone on the network could read it. Add basic auth (and TLS), listen on 127.0.0.1, or set `metrics.allow_unauthenticated = true` if a firewall or proxy guards it"
    )]
    Exposed(SocketAddr),
    #[error("`metrics.{key}` {path}: {detail}")]
    File {
        key: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("`metrics.basic_auth.user`: {0}")]
    User(String),
}

fn file_err(key: &'static str, path: &Path, detail: impl Into<String>) -> SecurityError {
    SecurityError::File {
        key,
        path: path.to_owned(),
        detail: detail.into(),
    }
}

/// What `earshot check` reports about the endpoint beyond errors.
#[derive(Debug, Default)]
pub struct Notes {
    pub ok: Vec<String>,
    pub warnings: Vec<String>,
}

/// Loads everything the endpoint would load (hash, certificate, key) without binding.
pub fn check(cfg: &super::MetricsConfig) -> Result<Notes, SecurityError> {
    let mut n = Notes::default();
    let guard = Guard::load(cfg)?;
    let scheme = if guard.tls.is_some() { "https" } else { "http" };
    let auth = if guard.auth.is_some() {
        "basic auth"
    } else {
        "no authentication"
    };
    n.ok.push(format!("endpoint {scheme}://{} with {auth}", cfg.listen));
    if !cfg.listen.ip().is_loopback() && guard.tls.is_none() {
        n.warnings.push(format!(
            "`listen` = {} is reachable from the network over plain HTTP: add `[metrics.tls]` so passwords and metrics are not sent in clear",
            cfg.listen
        ));
    }
    if let Some(w) = cfg
        .basic_auth
        .as_ref()
        .and_then(|a| world_readable(&a.password_hash_file))
    {
        n.warnings.push(w);
    }
    if let Some(w) = cfg.tls.as_ref().and_then(|t| world_readable(&t.key_file)) {
        n.warnings.push(w);
    }
    Ok(n)
}

#[cfg(unix)]
fn world_readable(p: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p).ok()?.permissions().mode();
    (mode & 0o004 != 0).then(|| {
        format!(
            "{} is readable by every user (mode {:o}): `chmod o-rwx` it (group earshot may read)",
            p.display(),
            mode & 0o777
        )
    })
}

#[cfg(not(unix))]
fn world_readable(_: &Path) -> Option<String> {
    None
}

/// The loaded security of one endpoint: what the accept loop applies.
#[derive(Clone, Default)]
pub(crate) struct Guard {
    pub auth: Option<Arc<BasicAuth>>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Guard {
    /// Validates the settings and loads the files they name.
    pub fn load(cfg: &super::MetricsConfig) -> Result<Self, SecurityError> {
        if !cfg.listen.ip().is_loopback() && cfg.basic_auth.is_none() && !cfg.allow_unauthenticated
        {
            return Err(SecurityError::Exposed(cfg.listen));
        }
        let auth = cfg
            .basic_auth
            .as_ref()
            .map(BasicAuth::load)
            .transpose()?
            .map(Arc::new);
        let tls = cfg.tls.as_ref().map(load_tls).transpose()?;
        Ok(Self { auth, tls })
    }
}

/// The basic-auth check of every request.
pub(crate) struct BasicAuth {
    user: String,
    hash: Hash,
    /// Digest of the last `user:password` that verified: repeated scrapes skip the slow hash.
    accepted: Mutex<Option<[u8; 32]>>,
    /// One slow verification at a time.
    verifying: tokio::sync::Semaphore,
}

enum Hash {
    Bcrypt(String),
    Phc(String),
}

impl BasicAuth {
    fn load(cfg: &BasicAuthConfig) -> Result<Self, SecurityError> {
        const KEY: &str = "basic_auth.password_hash_file";
        if cfg.user.is_empty() || cfg.user.contains(':') {
            return Err(SecurityError::User(
                "must be non-empty and contain no `:`".into(),
            ));
        }
        let p = &cfg.password_hash_file;
        let text = crate::files::read_regular_string(p)
            .map_err(|e| file_err(KEY, p, format!("cannot read it ({e})")))?;
        let line = text.lines().next().unwrap_or("").trim();
        // An htpasswd line `user:hash` is accepted too; its user must be the configured one.
        let hash = match line.split_once(':') {
            Some((u, h)) if !u.starts_with('$') => {
                if u != cfg.user {
                    return Err(file_err(
                        KEY,
                        p,
                        format!(
                            "the htpasswd line is for user {u:?}, but `basic_auth.user` is {:?}",
                            cfg.user
                        ),
                    ));
                }
                h.trim()
            }
            _ => line,
        };
        let how = "make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'` (bcrypt) or `echo -n PASSWORD | argon2 SALT -id -e` (argon2), and put it on the file's first line";
        let hash = if ["$2a$", "$2b$", "$2y$", "$2x$"]
            .iter()
            .any(|p| hash.starts_with(p))
        {
            // Parse now so a truncated hash is a start-up error, not a refused scrape.
            bcrypt::verify("", hash)
                .map_err(|e| file_err(KEY, p, format!("not a valid bcrypt hash ({e}); {how}")))?;
            Hash::Bcrypt(hash.to_string())
        } else if hash.starts_with("$argon2") {
            argon2::PasswordHash::new(hash).map_err(|e| {
                file_err(
                    KEY,
                    p,
                    format!("not a valid argon2 PHC string ({e}); {how}"),
                )
            })?;
            Hash::Phc(hash.to_string())
        } else if hash.is_empty() {
            return Err(file_err(KEY, p, format!("is empty; {how}")));
        } else {
            // Never echo the line: it might be a password put there by mistake.
            return Err(file_err(
                KEY,
                p,
                format!(
                    "the first line is not a bcrypt or argon2 hash (a plain password is not accepted); {how}"
                ),
            ));
        };
        Ok(Self {
            user: cfg.user.clone(),
            hash,
            accepted: Mutex::new(None),
            verifying: tokio::sync::Semaphore::new(1),
        })
    }

    /// Whether the `Authorization` header value carries the right user and password.
    pub async fn allows(self: &Arc<Self>, header: Option<&[u8]>) -> bool {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let digest: [u8; 32] = {
            let mut h = Sha256::new();
            h.update(user.as_bytes());
            h.update(b":");
            h.update(password.as_bytes());
            h.finalize().into()
        };
        let known = *self.accepted.lock();
        if known.is_some_and(|k| bool::from(k.ct_eq(&digest))) {
            return true;
        }
        if !bool::from(user.as_bytes().ct_eq(self.user.as_bytes())) {
            return false;
        }
        let Ok(_permit) = self.verifying.acquire().await else {
            return false;
        };
        let me = self.clone();
        let ok = tokio::task::spawn_blocking(move || me.verify(&password))
            .await
            .unwrap_or(false);
        if ok {
            *self.accepted.lock() = Some(digest);
        }
        ok
    }

    fn verify(&self, password: &str) -> bool {
        match &self.hash {
            Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Hash::Phc(h) => {
                use argon2::PasswordVerifier;
                argon2::PasswordHash::new(h)
                    .map(|parsed| {
                        argon2::Argon2::default()
                            .verify_password(password.as_bytes(), &parsed)
                            .is_ok()
                    })
                    .unwrap_or(false)
            }
        }
    }
}

/// `Basic base64(user:password)` -> (user, password).
fn parse_basic(v: &[u8]) -> Option<(String, String)> {
    use base64::Engine;
    let v = std::str::from_utf8(v).ok()?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn load_tls(cfg: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, SecurityError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            file_err(
                "tls.cert_file",
                &cfg.cert_file,
                format!("cannot read a PEM certificate chain ({e})"),
            )
        })?;
    if certs.is_empty() {
        return Err(file_err(
            "tls.cert_file",
            &cfg.cert_file,
            "holds no `BEGIN CERTIFICATE` block",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file).map_err(|e| {
        file_err(
            "tls.key_file",
            &cfg.key_file,
            format!("cannot read a PEM private key ({e})"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| file_err("tls.cert_file", &cfg.cert_file, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            file_err(
                "tls.key_file",
                &cfg.key_file,
                format!("does not go with the certificate in tls.cert_file ({e})"),
            )
        })?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_parses_and_rejects_other_schemes() {
        // "prom:s3cr:et" — the password may itself hold a colon.
        let h = b"Basic cHJvbTpzM2NyOmV0";
        assert_eq!(
            parse_basic(h),
            Some(("prom".to_string(), "s3cr:et".to_string()))
        );
        assert_eq!(parse_basic(b"Bearer cHJvbTpzM2NyOmV0"), None);
        assert_eq!(parse_basic(b"Basic !!!"), None);
    }
}
