//! The HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::TEXT_FORMAT;

use super::{Health, Metrics, MetricsError};

/// The running HTTP endpoint; stops on [`MetricsServer::shutdown`] or when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Health,
}

impl MetricsServer {
    /// Binds `listen` and serves plain HTTP without authentication (tests, loopback use).
    pub async fn start(
        listen: SocketAddr,
        metrics: Arc<Metrics>,
        health: Health,
    ) -> Result<Self, MetricsError> {
        let cfg = super::MetricsConfig {
            listen,
            ..Default::default()
        };
        Self::start_secured(&cfg, metrics, health, axum::Router::new()).await
    }

    /// Serves as `[metrics]` says: `listen`, and the TLS and basic auth of
    /// [`super::security`], loaded (and refused with the key to fix) before binding, around
    /// every route: `/metrics`, `/healthz`, `/readyz` and the `extra` ones (e.g. an events
    /// page) alike. Binding happens before this returns, so a taken port is reported at
    /// start-up, not discovered by a failing scrape.
    pub async fn start_secured(
        cfg: &super::MetricsConfig,
        metrics: Arc<Metrics>,
        health: Health,
        extra: axum::Router,
    ) -> Result<Self, MetricsError> {
        use axum::routing::get;
        let listen = cfg.listen;
        let guard = super::security::Guard::load(cfg)?;
        let scheme = if guard.tls.is_some() { "https" } else { "http" };
        let auth = guard.auth.is_some();
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| MetricsError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| MetricsError::Bind {
            addr: listen,
            source,
        })?;
        let app = axum::Router::new()
            .route("/metrics", get(serve_metrics))
            .route("/healthz", get(serve_healthz))
            .route("/readyz", get(serve_readyz))
            .with_state(AppState { metrics, health })
            .merge(extra);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // Our own accept loop: idle/half-sent connections time out and are capped.
        let task = tokio::spawn(super::listener::serve(
            listener,
            app,
            guard,
            super::listener::Limits::default(),
            rx,
        ));
        tracing::info!(%addr, scheme, basic_auth = auth, "serving /metrics, /healthz and /readyz");
        Ok(Self {
            addr,
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for in-flight requests.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn serve_metrics(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, TEXT_FORMAT)],
        s.metrics.render(),
    )
}

fn json_response(ok: bool, body: serde_json::Value) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn serve_healthz(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> axum::response::Response {
    let (ok, body) = s.health.report();
    json_response(ok, body)
}

async fn serve_readyz(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> axum::response::Response {
    let ready = s.health.is_ready();
    json_response(
        ready,
        serde_json::json!({ "ready": ready, "notes": s.health.notes() }),
    )
}
