//! HTTPS for the control API (`boot --api-tls`, with `--tls-cert` and
//! `--tls-key`): a listener that hands axum only connections whose TLS
//! handshake has finished.
//!
//! Invariants:
//! - Handshakes run beside each other, each in a task of its own with a
//!   deadline ([`HANDSHAKE_TIMEOUT`]), so a client that stalls its
//!   handshake delays nobody else; at most [`MAX_HANDSHAKES`] run at once
//!   (a flood of half-open handshakes cannot grow memory). A connection
//!   beyond them ends the *oldest* handshake still running, not itself: a
//!   real client's handshake takes milliseconds, so the ones left waiting
//!   are the stalled ones (QA: 64 idle sockets, reopened every 10 s, kept
//!   every client out when the newest connection was the one closed).
//! - A failed handshake (a plain-HTTP client, an unknown certificate on the
//!   client's side) closes that connection only and is logged at debug
//!   level, so scanners cannot fill the log.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// Time a client has from connect to the end of its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once.
pub const MAX_HANDSHAKES: usize = 256;

/// A TCP listener whose connections come out TLS-established.
pub struct TlsListener {
    ready: mpsc::UnboundedReceiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor_task: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener` with `config` (a rustls server config
    /// offering `http/1.1`). Must run inside the tokio runtime.
    pub fn new(
        listener: TcpListener,
        config: Arc<tokio_rustls::rustls::ServerConfig>,
    ) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        // Unbounded, so a handshake task ends the moment its handshake does
        // and is never the "oldest handshake" evicted while it waits to
        // hand over an established connection (axum takes them at once).
        let (tx, ready) = mpsc::unbounded_channel();
        let acceptor_task = tokio::spawn(async move {
            // Handshakes in progress, oldest first.
            let mut running: VecDeque<JoinHandle<()>> = VecDeque::new();
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off.
                        warn!(error = %e, "control API: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                running.retain(|h| !h.is_finished());
                if running.len() >= MAX_HANDSHAKES {
                    if let Some(oldest) = running.pop_front() {
                        oldest.abort();
                        debug!(%peer, "control API: too many TLS handshakes in progress; the oldest was closed");
                    }
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                running.push_back(tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            // Fails only when the server is gone.
                            let _ = tx.send((tls, peer));
                        }
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "control API: TLS handshake failed")
                        }
                        Err(_) => debug!(%peer, "control API: TLS handshake timed out"),
                    }
                }));
            }
        });
        Ok(TlsListener {
            ready,
            local,
            acceptor_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The acceptor task ended (it never does on its own): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
