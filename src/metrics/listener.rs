//! The metrics endpoint's accept loop: every connection gets a header/idle timeout, and the
//! number of open connections is capped.
//!
//! Why not `axum::serve`: it never times out a connection that sends nothing (or half a
//! request), so a scanner, a stuck proxy or 1100 idle clients exhaust the process's file
//! descriptors (1024 by default): `/metrics` goes blind and every later `open()` fails,
//! including a reload's. Here an idle or slow client is dropped after [`Limits::header_timeout`]
//! (hyper's header-read timeout, which also covers the wait for the next request on a
//! keep-alive connection), and when [`Limits::max_connections`] are open the oldest connection
//! is closed to admit the new one: a scraper that connects and asks at once is answered even
//! while the endpoint is flooded, and the flood costs at most the cap in descriptors.
//!
//! Security ([`super::security`]) is applied here, around the whole router, so no route can be
//! added without it: TLS wraps each accepted connection (the handshake shares the header
//! timeout), and basic auth answers 401 before a request reaches any route.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot, watch};
use tower::ServiceExt;

use super::security::{BasicAuth, Guard};

/// Connection limits of the endpoint.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// A connection that has not sent a complete request head within this is closed.
    pub header_timeout: Duration,
    /// Open connections beyond this evict the oldest.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_connections: 128,
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// Open connections, oldest first (ids grow), each with the handle that closes it.
type Open = Arc<Mutex<BTreeMap<u64, Arc<Notify>>>>;

/// Serves `app` on `listener` until `stop` fires (or its sender is dropped), behind `guard`
/// (TLS and/or basic auth; [`Guard::default`] = neither).
pub(super) async fn serve(
    listener: TcpListener,
    app: axum::Router,
    guard: Guard,
    limits: Limits,
    mut stop: oneshot::Receiver<()>,
) {
    let open: Open = Arc::default();
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_id = 0u64;
    let mut accept_errors = 0u64;
    loop {
        let stream = tokio::select! {
            _ = &mut stop => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE/ENFILE and friends: say so (not on every retry) and back off a
                    // little so a descriptor can come free.
                    accept_errors += 1;
                    if accept_errors.is_power_of_two() {
                        tracing::warn!(error = %e, count = accept_errors, "metrics endpoint cannot accept a connection");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let id = next_id;
        next_id += 1;
        let evict = Arc::new(Notify::new());
        {
            let mut g = open.lock();
            while g.len() >= limits.max_connections.max(1) {
                if let Some((_, oldest)) = g.pop_first() {
                    oldest.notify_one();
                }
            }
            g.insert(id, evict.clone());
        }
        let (app, guard) = (app.clone(), guard.clone());
        let (open, closing) = (open.clone(), closing_rx.clone());
        tasks.spawn(async move {
            tokio::select! {
                _ = connection(stream, app, guard, limits, closing) => {}
                // Dropping the connection closes the socket.
                _ = evict.notified() => {}
            }
            open.lock().remove(&id);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let grace = limits.shutdown_grace + Duration::from_millis(500);
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
}

/// One connection: TLS handshake if configured (bounded by the header timeout: a client that
/// opens a socket and says nothing is dropped as on plain HTTP), then HTTP/1.
async fn connection(
    stream: tokio::net::TcpStream,
    app: axum::Router,
    guard: Guard,
    limits: Limits,
    mut closing: watch::Receiver<bool>,
) {
    match &guard.tls {
        None => http1(stream, app, guard.auth, limits, closing).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(limits.header_timeout, acceptor.accept(stream));
            let done = tokio::select! {
                r = handshake => r,
                _ = closing.changed() => return,
            };
            match done {
                Ok(Ok(tls)) => http1(tls, app, guard.auth, limits, closing).await,
                // Plain HTTP to the TLS port, a bad client certificate store, a scanner:
                // nothing to answer (debug only: a scanner must not flood the log).
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

async fn http1<I>(
    io: I,
    app: axum::Router,
    auth: Option<Arc<BasicAuth>>,
    limits: Limits,
    mut closing: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let (app, auth) = (app.clone(), auth.clone());
        async move {
            if let Some(auth) = &auth {
                let header = req
                    .headers()
                    .get(hyper::header::AUTHORIZATION)
                    .map(|v| v.as_bytes());
                if !auth.allows(header).await {
                    return Ok(unauthorized());
                }
            }
            app.oneshot(req.map(axum::body::Body::new)).await
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = closing.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.shutdown_grace, conn).await;
        }
    }
}

fn unauthorized() -> axum::response::Response {
    (
        axum::http::StatusCode::UNAUTHORIZED,
        [(
            axum::http::header::WWW_AUTHENTICATE,
            "Basic realm=\"earshot\", charset=\"UTF-8\"",
        )],
        "authentication required\n",
    )
        .into_response()
}
