//! The HTTP endpoint's security on a real server on 127.0.0.1: basic auth refuses a wrong
//! user or password (401) on every route, known or not, and serves the right one; with TLS a
//! client that trusts only the configured certificate gets `/metrics`, plain HTTP to the TLS
//! port gets nothing, and a client that does not trust the certificate is refused. The
//! certificate is made by the `openssl` command, not by the code under test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use earshot::metrics::security::{BasicAuthConfig, TlsConfig};
use earshot::metrics::{Health, Metrics, MetricsConfig, MetricsServer};

const USER: &str = "prometheus";
const PASSWORD: &str = "correct horse battery staple";

fn dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("earshot-http-security-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// A bcrypt hash of [`PASSWORD`] in `dir/metrics.hash` (cost 4: fast in a debug build).
fn bcrypt_file(dir: &Path) -> PathBuf {
    let p = dir.join("metrics.hash");
    std::fs::write(&p, format!("{}\n", bcrypt::hash(PASSWORD, 4).unwrap())).unwrap();
    p
}

/// A self-signed certificate for 127.0.0.1 / localhost made by openssl: (cert, key).
fn openssl_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=earshot-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        // An end-entity certificate (webpki refuses a CA certificate as the server's own).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian package openssl) must be installed");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// The endpoint with one extra route, as the events page adds: it must be guarded too.
async fn serve(cfg: MetricsConfig) -> MetricsServer {
    let m = Arc::new(Metrics::new().unwrap());
    m.set_monitor_up("press-1", true);
    let extra = axum::Router::new().route(
        "/events",
        axum::routing::get(|| async { "event page of press-1" }),
    );
    MetricsServer::start_secured(&cfg, m, Health::new(), extra)
        .await
        .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn get(
    c: &reqwest::Client,
    url: &str,
    auth: Option<(&str, &str)>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = c.get(url);
    if let Some((u, p)) = auth {
        req = req.basic_auth(u, Some(p));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_refuses_wrong_credentials_on_every_route() {
    let d = dir();
    let srv = serve(MetricsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        basic_auth: Some(BasicAuthConfig {
            user: USER.into(),
            password_hash_file: bcrypt_file(d.path()),
        }),
        ..Default::default()
    })
    .await;
    let base = format!("http://{}", srv.local_addr());
    let c = client();
    for path in [
        "/metrics",
        "/healthz",
        "/readyz",
        "/events",
        "/no-such-route",
    ] {
        let url = format!("{base}{path}");
        for auth in [
            None,
            Some((USER, "wrong password")),
            Some(("someone", PASSWORD)),
            Some((USER, "")),
        ] {
            let (status, headers, body) = get(&c, &url, auth).await;
            assert_eq!(status, 401, "{path} with {auth:?} must be refused: {body}");
            let challenge = headers
                .get("www-authenticate")
                .expect("a 401 carries a challenge")
                .to_str()
                .unwrap();
            assert!(challenge.starts_with("Basic "), "{challenge}");
            assert!(
                !body.contains("earshot_"),
                "no metric leaks in a 401: {body}"
            );
        }
    }
    // The right credentials: served (twice: the second time from the remembered credential).
    for _ in 0..2 {
        let (status, _, body) = get(&c, &format!("{base}/metrics"), Some((USER, PASSWORD))).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("earshot_monitor_up{monitor=\"press-1\"} 1"),
            "{body}"
        );
    }
    let (status, _, body) = get(&c, &format!("{base}/events"), Some((USER, PASSWORD))).await;
    assert_eq!((status, body.as_str()), (200, "event page of press-1"));
    // A wrong password after a right one is still refused (the remembered credential is the
    // exact pair, not "this client").
    let (status, _, _) = get(&c, &format!("{base}/metrics"), Some((USER, "wrong"))).await;
    assert_eq!(status, 401);
    // Unknown routes are 404 only once authenticated.
    let (status, _, _) = get(&c, &format!("{base}/no-such-route"), Some((USER, PASSWORD))).await;
    assert_eq!(status, 404);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argon2_hash_and_an_htpasswd_line_work_too() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let d = dir();
    let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0c2FsdA").unwrap();
    let phc = argon2::Argon2::default()
        .hash_password(PASSWORD.as_bytes(), &salt)
        .unwrap()
        .to_string();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    for line in [phc.clone(), format!("{USER}:{phc}")] {
        let hash = d.path().join("argon2.hash");
        std::fs::write(&hash, &line).unwrap();
        let srv = serve(MetricsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            basic_auth: Some(BasicAuthConfig {
                user: USER.into(),
                password_hash_file: hash,
            }),
            ..Default::default()
        })
        .await;
        let url = format!("http://{}/metrics", srv.local_addr());
        let c = client();
        assert_eq!(get(&c, &url, Some((USER, "nope"))).await.0, 401);
        assert_eq!(get(&c, &url, Some((USER, PASSWORD))).await.0, 200);
        srv.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_a_client_that_trusts_the_configured_certificate() {
    let d = dir();
    let (cert, key) = openssl_cert(d.path());
    let srv = serve(MetricsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(TlsConfig {
            cert_file: cert.clone(),
            key_file: key,
        }),
        basic_auth: Some(BasicAuthConfig {
            user: USER.into(),
            password_hash_file: bcrypt_file(d.path()),
        }),
        ..Default::default()
    })
    .await;
    let port = srv.local_addr().port();
    let pem = std::fs::read(&cert).unwrap();
    let trusting = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("https://{host}:{port}/metrics");
        let (status, _, body) = get(&trusting, &url, Some((USER, PASSWORD))).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert!(body.contains("earshot_monitor_up"), "{body}");
        assert_eq!(get(&trusting, &url, Some((USER, "wrong"))).await.0, 401);
    }
    // Plain HTTP to the TLS port: no HTTP answer at all.
    let plain = client()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP must fail: {plain:?}");
    // A client that trusts only the public roots refuses the self-signed certificate.
    let untrusting = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let r = untrusting
        .get(format!("https://127.0.0.1:{port}/metrics"))
        .send()
        .await;
    assert!(
        r.is_err(),
        "an unknown certificate must not be trusted: {r:?}"
    );
    // The endpoint still serves after those failed handshakes.
    let url = format!("https://127.0.0.1:{port}/metrics");
    assert_eq!(get(&trusting, &url, Some((USER, PASSWORD))).await.0, 200);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_security_files_are_refused_naming_the_key() {
    let d = dir();
    let m = || Arc::new(Metrics::new().unwrap());
    let plain = d.path().join("plain.txt");
    std::fs::write(&plain, format!("{PASSWORD}\n")).unwrap();
    let cfg = MetricsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        basic_auth: Some(BasicAuthConfig {
            user: USER.into(),
            password_hash_file: plain,
        }),
        ..Default::default()
    };
    let err = MetricsServer::start_secured(&cfg, m(), Health::new(), axum::Router::new())
        .await
        .err()
        .expect("a plain password in the hash file is refused")
        .to_string();
    assert!(err.contains("basic_auth.password_hash_file"), "{err}");
    assert!(
        !err.contains(PASSWORD),
        "the file's content is never echoed: {err}"
    );

    let (cert, _key) = openssl_cert(d.path());
    let cfg = MetricsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(TlsConfig {
            cert_file: cert.clone(),
            key_file: cert,
        }),
        ..Default::default()
    };
    let err = MetricsServer::start_secured(&cfg, m(), Health::new(), axum::Router::new())
        .await
        .err()
        .expect("a certificate is not a key")
        .to_string();
    assert!(err.contains("tls.key_file"), "{err}");

    // Exposed without authentication: refused unless said to be meant.
    let mut cfg = MetricsConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..Default::default()
    };
    let err = MetricsServer::start_secured(&cfg, m(), Health::new(), axum::Router::new())
        .await
        .err()
        .expect("exposed without auth is refused")
        .to_string();
    assert!(
        err.contains("metrics.listen") && err.contains("basic_auth"),
        "{err}"
    );
    cfg.allow_unauthenticated = true;
    cfg.listen = "127.0.0.2:0".parse().unwrap();
    let srv = MetricsServer::start_secured(&cfg, m(), Health::new(), axum::Router::new())
        .await
        .unwrap();
    srv.shutdown().await;
}

#[test]
fn the_config_file_refuses_an_exposed_endpoint_without_auth() {
    let d = dir();
    let cfg = d.path().join("earshot.toml");
    std::fs::write(&cfg, "[metrics]\nlisten = \"0.0.0.0:9847\"\n").unwrap();
    let err = earshot::config::Settings::load(Some(&cfg))
        .expect_err("refused")
        .to_string();
    assert!(err.contains("metrics.listen"), "{err}");
    std::fs::write(
        &cfg,
        "[metrics]\nlisten = \"0.0.0.0:9847\"\n[metrics.basic_auth]\nuser = \"p\"\npassword_hash_file = \"p.hash\"\n[metrics.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n",
    )
    .unwrap();
    let s = earshot::config::Settings::load(Some(&cfg)).unwrap();
    // Relative files are relative to the config file, as every other path in it.
    assert_eq!(
        s.metrics.basic_auth.unwrap().password_hash_file,
        d.path().join("p.hash")
    );
    assert_eq!(s.metrics.tls.unwrap().key_file, d.path().join("k.pem"));
}
