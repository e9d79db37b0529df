//! A webhook receiver on 127.0.0.1 for alert tests: a small axum server on its own tokio
//! runtime that keeps every POST (path, headers, body) and answers 200. It can be started on a
//! given port (to come back after an outage) and stopped, which closes the listener and every
//! connection, so the sender sees "connection refused".
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub json: serde_json::Value,
}

type Log = Arc<Mutex<Vec<Received>>>;

pub struct Receiver {
    pub addr: SocketAddr,
    log: Log,
    rt: Option<tokio::runtime::Runtime>,
}

/// A port that was free a moment ago (bound and released), for a receiver that is "down".
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

async fn hook(State(log): State<Log>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let headers = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    log.lock().unwrap().push(Received {
        path: uri.path().to_string(),
        headers,
        body: body.to_vec(),
        json,
    });
    StatusCode::OK
}

impl Receiver {
    /// Starts on `127.0.0.1:port` (0 = any free port).
    pub fn start(port: u16) -> Receiver {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("receiver runtime");
        let log: Log = Arc::default();
        let std_listener = {
            // The port may be in TIME_WAIT from a previous receiver: retry briefly.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match TcpListener::bind(("127.0.0.1", port)) {
                    Ok(l) => break l,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => panic!("cannot bind receiver on port {port}: {e}"),
                }
            }
        };
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(axum::routing::post(hook))
            .with_state(log.clone());
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            log,
            rt: Some(rt),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `cond` holds over what was received; panics with it after `limit`.
    pub fn wait_until(
        &self,
        what: &str,
        limit: Duration,
        cond: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let r = self.received();
            if cond(&r) {
                return r;
            }
            if Instant::now() > deadline {
                let bodies: Vec<&serde_json::Value> = r.iter().map(|x| &x.json).collect();
                panic!("receiver: no {what} within {limit:?}; got {bodies:#?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops listening and drops every connection.
    pub fn stop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_millis(500));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}
