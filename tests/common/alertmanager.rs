//! A real Alertmanager (Debian's `prometheus-alertmanager`, installed by
//! `scripts/setup.sh --tests`) on 127.0.0.1 for alert tests, without clustering, with its
//! storage in a temporary directory; killed by PID when dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = "prometheus-alertmanager";

pub struct Alertmanager {
    pub addr: SocketAddr,
    child: Child,
    _storage: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts Alertmanager with `config` (YAML) written into `dir`; waits until it is ready.
    pub fn start(dir: &Path, config: &str, port: u16) -> Alertmanager {
        let cfg = dir.join("alertmanager.yml");
        std::fs::write(&cfg, config).expect("write alertmanager.yml");
        let storage = tempfile::tempdir().expect("alertmanager storage");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = std::fs::File::create(dir.join("alertmanager.log")).expect("am log");
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", storage.path().display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {BINARY} ({e}): run scripts/setup.sh --tests (Debian package prometheus-alertmanager)")
            });
        let mut am = Alertmanager {
            addr,
            child,
            _storage: storage,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = am.request("GET", "/-/ready", None) {
                break;
            }
            if let Ok(Some(st)) = am.child.try_wait() {
                panic!(
                    "alertmanager exited ({st}): {}",
                    std::fs::read_to_string(dir.join("alertmanager.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "alertmanager not ready: {}",
                std::fs::read_to_string(dir.join("alertmanager.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        am
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A minimal HTTP/1.1 request; returns status and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        json: Option<&serde_json::Value>,
    ) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let body = json.map(|j| j.to_string()).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        Ok((status, body))
    }

    /// Alerts Alertmanager holds (`GET /api/v2/alerts`, silenced ones included).
    pub fn alerts(&self) -> serde_json::Value {
        let (st, body) = self
            .request("GET", "/api/v2/alerts?silenced=true&inhibited=true", None)
            .expect("GET alerts");
        assert_eq!(st, 200, "{body}");
        serde_json::from_str(&body).expect("alerts JSON")
    }

    /// Creates a silence for `label=value` lasting an hour; returns its id.
    pub fn silence(&self, label: &str, value: &str) -> String {
        let now = std::time::SystemTime::now();
        let fmt = |t| humantime::format_rfc3339_millis(t).to_string();
        let body = serde_json::json!({
            "matchers": [{"name": label, "value": value, "isRegex": false, "isEqual": true}],
            "startsAt": fmt(now),
            "endsAt": fmt(now + Duration::from_secs(3600)),
            "createdBy": "earshot tests",
            "comment": "silence test",
        });
        let (st, resp) = self
            .request("POST", "/api/v2/silences", Some(&body))
            .expect("POST silence");
        assert_eq!(st, 200, "{resp}");
        let v: serde_json::Value = serde_json::from_str(&resp).expect("silence JSON");
        v["silenceID"].as_str().expect("silenceID").to_string()
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
