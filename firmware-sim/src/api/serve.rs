//! The control API's accept loop: HTTP/1.1 over any axum `Listener` (plain
//! TCP, or [`super::tls::TlsListener`]), with the limits `axum::serve` does
//! not set.
//!
//! Invariants:
//! - At most [`MAX_CONNECTIONS`] connections are served at once; one beyond
//!   is closed at once (a throttled warning says so), so no client can take
//!   every file descriptor of the daemon (QA: 20,000 half-sent requests
//!   locked out the API and new NBD clients).
//! - A request's header must arrive whole within [`HEADER_TIMEOUT`] of the
//!   moment the connection waits for it (hyper's header read timeout, which
//!   needs the timer set here); a client that sends half a request and
//!   stops, or a keep-alive connection idle that long, is disconnected.
//! - Shutdown: stop accepting; each connection finishes the request in
//!   flight and closes; connections still open after [`SHUTDOWN_GRACE`] are
//!   dropped. So a clean stop always ends (QA: one unfinished request kept
//!   SIGTERM waiting for as long as its client stayed).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::serve::Listener;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 512;
/// Time a client has to send a request's header once hyper waits for it
/// (default; `boot --api-header-timeout`).
/// hyper starts this clock when it starts waiting for the next request, so
/// it is also how long an idle keep-alive connection stays open: longer
/// than clients keep an idle connection for reuse (ureq: 15 s; this
/// project's client: 5 s), so no client sends on a connection the server
/// is closing.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// Time open connections get to finish after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// At most one "connection refused" warning per this long.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` completes, then drains
/// (see the module docs).
pub async fn serve<L: Listener>(
    mut listener: L,
    router: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut refused = 0u64;
    let mut last_warn: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (io, _addr) = tokio::select! {
            () = &mut shutdown => break,
            c = listener.accept() => c,
        };
        // Reap finished connections so the set does not grow.
        while conns.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                warn!(
                    limit = MAX_CONNECTIONS,
                    refused, "control API: connection limit reached; closing new connections"
                );
                last_warn = Some(Instant::now());
                refused = 0;
            }
            drop(io);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        conns.spawn(async move {
            let _slot = slot;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = http.serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            let stopping = async move {
                // A dropped sender means the loop is gone: stop as well.
                let _ = stop.wait_for(|s| *s).await;
            };
            let ended = tokio::select! {
                r = conn.as_mut() => r,
                () = stopping => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                debug!(error = %e, "control API connection ended");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = conns.len();
    if open > 0 {
        info!(open, "control API: finishing requests in flight");
    }
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        warn!(
            open = conns.len(),
            "control API: closing connections still open after the grace period"
        );
        conns.shutdown().await;
    }
}
