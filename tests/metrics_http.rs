//! The metrics endpoint over real HTTP on 127.0.0.1, scraped by reqwest and by a real
//! Prometheus server (Debian package `prometheus`).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use earshot::metrics::{
    BreakerState, CaptureState, Health, Metrics, MetricsConfig, MetricsServer, MonitorStatus, names,
};

type Series = Vec<(String, BTreeMap<String, String>, f64)>;

/// Parses the Prometheus text format (enough of it for our own output).
fn parse(text: &str) -> Series {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once("=\"").expect("label k=\"v\"");
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (n.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        out.push((name, labels, value));
    }
    out
}

fn value(s: &Series, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

async fn start() -> (Arc<Metrics>, Health, MetricsServer) {
    let m = Arc::new(Metrics::new().unwrap());
    let h = Health::new();
    let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), m.clone(), h.clone())
        .await
        .unwrap();
    (m, h, srv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_metrics_over_http() {
    let (m, _h, srv) = start().await;
    let cap = m.capture("press-1", "hw:1,0");
    cap.frames_received.inc_by(48_000);
    cap.frames_dropped.inc_by(7);
    cap.set_state(CaptureState::Running);
    let p = m.pipeline("press-1");
    p.window_done(0.042, 0.3);
    p.window_done(0.058, 0.1);
    let s = m.score("press-1");
    s.observe("centroid", 1.25, 1.0);
    s.set_anomaly(true);
    let idx = m.index("press-1", "azure");
    idx.set_breaker(BreakerState::Open, "timeout");
    idx.set_degraded(true);

    let url = format!("http://{}/metrics", srv.local_addr());
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = resp.text().await.unwrap();
    let s = parse(&text);
    let mon = [("monitor", "press-1")];
    let dev = [("monitor", "press-1"), ("device", "hw:1,0")];
    assert_eq!(
        value(&s, names::CAPTURE_FRAMES_RECEIVED, &dev),
        Some(48_000.0)
    );
    assert_eq!(value(&s, names::CAPTURE_FRAMES_DROPPED, &dev), Some(7.0));
    assert_eq!(value(&s, names::CAPTURE_STATE, &dev), Some(2.0));
    assert_eq!(value(&s, names::PIPELINE_WINDOWS, &mon), Some(2.0));
    assert_eq!(value(&s, names::PIPELINE_LAG, &mon), Some(0.1));
    let count = format!("{}_count", names::PIPELINE_EMBED_SECONDS);
    assert_eq!(value(&s, &count, &mon), Some(2.0));
    let sum = format!("{}_sum", names::PIPELINE_EMBED_SECONDS);
    assert!((value(&s, &sum, &mon).unwrap() - 0.1).abs() < 1e-9);
    let sc = [("monitor", "press-1"), ("scorer", "centroid")];
    assert_eq!(value(&s, names::SCORE, &sc), Some(1.25));
    assert_eq!(value(&s, names::SCORE_THRESHOLD, &sc), Some(1.0));
    assert_eq!(value(&s, names::ANOMALY_ACTIVE, &mon), Some(1.0));
    assert_eq!(value(&s, names::ANOMALY_EVENTS, &mon), Some(1.0));
    assert_eq!(
        value(
            &s,
            names::INDEX_DEGRADED,
            &[("monitor", "press-1"), ("backend", "azure")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            names::INDEX_BREAKER,
            &[("monitor", "press-1"), ("backend", "azure")]
        ),
        Some(2.0)
    );
    let ver = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(value(&s, names::BUILD_INFO, &ver), Some(1.0));
    assert!(value(&s, names::UPTIME, &[]).unwrap() >= 0.0);

    // A later scrape sees later values.
    cap.frames_dropped.inc();
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert_eq!(
        value(&parse(&text), names::CAPTURE_FRAMES_DROPPED, &dev),
        Some(8.0)
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_names_what_is_not_running_and_readyz_follows_startup() {
    let (_m, h, srv) = start().await;
    let base = format!("http://{}", srv.local_addr());
    let get = |p: &str| reqwest::get(format!("{base}{p}"));

    // Nothing registered yet: not healthy, not ready.
    let r = get("/healthz").await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(get("/readyz").await.unwrap().status(), 503);

    h.set("press-1", MonitorStatus::Running);
    h.set(
        "pump-2",
        MonitorStatus::Down {
            reason: "device hw:2 not found".into(),
        },
    );
    let r = get("/healthz").await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["not_running"], serde_json::json!(["pump-2"]));
    assert_eq!(body["monitors"]["pump-2"]["state"], "down");
    assert_eq!(
        body["monitors"]["pump-2"]["reason"],
        "device hw:2 not found"
    );

    h.set(
        "pump-2",
        MonitorStatus::Degraded {
            reason: "k-NN index unavailable".into(),
        },
    );
    h.set_ready(true);
    let r = get("/healthz").await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    assert_eq!(get("/nope").await.unwrap().status(), 404);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_port_is_a_clear_error() {
    let (m, h, srv) = start().await;
    let taken = srv.local_addr();
    let err = MetricsServer::start(taken, m, h)
        .await
        .err()
        .expect("port is taken");
    let msg = err.to_string();
    assert!(msg.contains(&taken.to_string()), "{msg}");
    assert!(msg.contains("listen"), "{msg}");
    srv.shutdown().await;
}

#[test]
fn config_defaults_to_loopback_and_rejects_unknown_keys() {
    let c: MetricsConfig = toml::from_str("").unwrap();
    assert!(c.enabled);
    assert!(c.listen.ip().is_loopback());
    assert_eq!(c.listen.port(), 9847);
    let c: MetricsConfig = toml::from_str("listen = \"0.0.0.0:9000\"").unwrap();
    assert_eq!(c.listen.port(), 9000);
    let e = toml::from_str::<MetricsConfig>("port = 1").unwrap_err();
    assert!(e.to_string().contains("port"), "{e}");
    assert!(toml::from_str::<MetricsConfig>("listen = \"nowhere\"").is_err());
}

/// Kills the child process (by its pid, via the handle) when the test ends, pass or fail.
struct Reap(Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_earshot() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!(
            "the `prometheus` binary is missing: install the Debian package with `apt-get install prometheus`"
        );
    }
    let (m, _h, srv) = start().await;
    m.score("press-1").observe("centroid", 0.75, 1.0);

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: earshot\n    static_configs:\n      - targets: ['{}']\n",
            srv.local_addr()
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _reap = Reap(child);

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let query = format!(
        "http://127.0.0.1:{port}/api/v1/query?query={}",
        "earshot_score%7Bmonitor%3D%22press-1%22%2Cscorer%3D%22centroid%22%7D"
    );
    // Bounded wait for start-up plus a few scrape intervals; not a speed assertion.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    let found = loop {
        if Instant::now() > deadline {
            break None;
        }
        if let Ok(r) = client.get(&query).send().await
            && let Ok(v) = r.json::<serde_json::Value>().await
        {
            last = v.to_string();
            if let Some(first) = v["data"]["result"].as_array().and_then(|a| a.first()) {
                break Some(first.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    let first = found.unwrap_or_else(|| {
        panic!(
            "prometheus never returned earshot_score; last answer {last}; log tail:\n{}",
            log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
        )
    });
    assert_eq!(first["metric"]["job"], "earshot");
    assert_eq!(first["value"][1], "0.75");
    srv.shutdown().await;
}
