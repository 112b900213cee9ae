//! [`Server`]: accept loop, connection limit, graceful shutdown, and one
//! connection's life (handshake, then transmission).
//!
//! Invariants:
//! - At most `max_connections` connections are served at once; extra ones
//!   are accepted and closed at once with a log line (never left hanging in
//!   the backlog).
//! - A handshake that takes longer than `handshake_timeout` is dropped, and
//!   a connection with no request for `idle_timeout` is closed.
//! - At most `max_connections_per_peer` TCP connections per IP address; the
//!   lines about refused connections are throttled (`limits.rs`).
//! - Shutdown: stop accepting, answer new options `ERR_SHUTDOWN` and new
//!   requests `ESHUTDOWN`, let started requests finish and reply, close a
//!   connection in transmission as soon as it has nothing in flight, and
//!   close connections still open after `shutdown_grace`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::limits::{PeerCounts, SharedThrottle, Throttled};
use crate::negotiate::{negotiate, Negotiated};
use crate::registry::ExportRegistry;
use crate::tls::Acceptor;
use crate::transmit::transmit;

/// Errors of the server layer.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Socket I/O failed (including a client disconnecting mid-message).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The client broke the protocol; the connection was closed.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The handshake took longer than the configured timeout.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Limits and timeouts of a [`Server`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Connections served at once (more are closed on accept).
    pub max_connections: usize,
    /// Bytes of requests and unsent replies one connection may have in flight.
    pub max_inflight_bytes_per_conn: usize,
    /// Bytes in flight every connection may hold without drawing on the
    /// server-wide budget (so a connection always makes progress).
    pub inflight_floor_per_conn: usize,
    /// The server-wide budget for what connections hold above their floor,
    /// shared by all of them: the NBD side's memory is bounded by
    /// `max_connections * inflight_floor_per_conn + max_inflight_bytes_total`.
    pub max_inflight_bytes_total: usize,
    /// Largest READ/WRITE accepted (the advertised maximum block size is
    /// capped to it); larger ones get EINVAL.
    pub max_request_bytes: u32,
    /// An oversize WRITE up to this length is read and discarded before the
    /// EINVAL reply; a longer one drops the connection.
    pub max_discard_bytes: u32,
    /// Largest option payload processed; larger ones get `ERR_TOO_BIG`
    /// (up to 1 MiB, read and discarded) or drop the connection.
    pub max_option_bytes: u32,
    /// Time allowed from accept to the end of negotiation.
    pub handshake_timeout: Duration,
    /// After shutdown, time given to open connections before they are closed.
    pub shutdown_grace: Duration,
    /// Most small requests run together in one blocking task while the
    /// export answers fast (1 turns batching off; see docs/NBD.md).
    pub max_batch: usize,
    /// Connections from one IP address served at once (so one peer cannot
    /// take every slot); loopback and unix-socket connections are not
    /// counted (every local client shares one address).
    pub max_connections_per_peer: usize,
    /// A connection with no request for this long, and none in flight, is
    /// closed (`None`, the default: never).
    pub idle_timeout: Option<Duration>,
    /// TLS (`STARTTLS`): `None`, the default, answers it `ERR_UNSUP`.
    pub tls: Option<crate::tls::TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 64,
            max_inflight_bytes_per_conn: 64 << 20,
            inflight_floor_per_conn: 16 << 20,
            max_inflight_bytes_total: 512 << 20,
            max_request_bytes: 32 << 20,
            max_discard_bytes: 128 << 20,
            max_option_bytes: 64 << 10,
            handshake_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            max_batch: 8,
            max_connections_per_peer: 16,
            // Off: a mounted kernel nbd-client or qemu drive may stay idle
            // for hours and has no keepalive request (qemu-nbd and nbdkit
            // do not time idle clients out either).
            idle_timeout: None,
            tls: None,
        }
    }
}

impl ServerConfig {
    /// Check the values fit together; `Err` names the offending field.
    pub fn validate(&self) -> Result<(), ServerError> {
        let bad = |m: String| Err(ServerError::Config(m));
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1".into());
        }
        if self.max_connections_per_peer == 0 {
            return bad("max_connections_per_peer must be at least 1".into());
        }
        if self.idle_timeout.is_some_and(|t| t.is_zero()) {
            return bad("idle_timeout must be positive (None: never)".into());
        }
        if self.max_batch == 0 || self.max_batch > 64 {
            return bad(format!("max_batch {} is not in 1..=64", self.max_batch));
        }
        if self.max_request_bytes < 4096 {
            return bad(format!(
                "max_request_bytes {} < 4096",
                self.max_request_bytes
            ));
        }
        if self.max_inflight_bytes_per_conn < self.max_request_bytes as usize {
            return bad(format!(
                "max_inflight_bytes_per_conn {} < max_request_bytes {}",
                self.max_inflight_bytes_per_conn, self.max_request_bytes
            ));
        }
        if self.max_inflight_bytes_per_conn > Semaphore::MAX_PERMITS {
            return bad("max_inflight_bytes_per_conn is too large".into());
        }
        if self.max_inflight_bytes_total > Semaphore::MAX_PERMITS
            || self.max_inflight_bytes_total > u32::MAX as usize
        {
            return bad("max_inflight_bytes_total is too large".into());
        }
        if self.inflight_floor_per_conn < self.max_request_bytes as usize
            && self.max_inflight_bytes_total < self.max_request_bytes as usize
        {
            return bad(format!(
                "a request of max_request_bytes {} fits neither inflight_floor_per_conn {} nor \
                 max_inflight_bytes_total {}",
                self.max_request_bytes, self.inflight_floor_per_conn, self.max_inflight_bytes_total
            ));
        }
        Ok(())
    }
}

/// What every connection of one serve call shares.
pub(crate) struct ConnContext {
    pub config: Arc<ServerConfig>,
    pub registry: Arc<dyn ExportRegistry>,
    pub shutdown: watch::Receiver<bool>,
    /// Warnings any client can cause at will, throttled across connections.
    pub warnings: SharedThrottle,
    /// Lines about each connection's start and end: a client can open
    /// connections as fast as it likes, so these are throttled too, with a
    /// burst ([`LIFECYCLE_BURST`]) that normal use never reaches.
    pub lifecycle: SharedThrottle,
    /// The server-wide in-flight budget (`max_inflight_bytes_total`).
    pub shared_budget: Arc<Semaphore>,
}

/// Connection start and end lines written per `SUMMARY_EVERY` (5 s) before
/// the rest are only counted.
pub(crate) const LIFECYCLE_BURST: u64 = 32;

impl ConnContext {
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// A warning a client can cause at will (a malformed handshake or option, a
/// connection ended on error): written at most once per `SUMMARY_EVERY`
/// across the server's connections, with the count of those left out.
macro_rules! client_warn {
    ($ctx:expr, $($arg:tt)+) => {
        if let Some(more) = $ctx.warnings.event() {
            tracing::warn!(more_suppressed = more, $($arg)+);
        }
    };
}
pub(crate) use client_warn;

/// An info line about one connection's start or end, throttled across the
/// server's connections (`ConnContext::lifecycle`).
macro_rules! conn_info {
    ($ctx:expr, $($arg:tt)+) => {
        if let Some(more) = $ctx.lifecycle.event() {
            tracing::info!(more_suppressed = more, $($arg)+);
        }
    };
}
pub(crate) use conn_info;

/// A listening socket the server can accept on.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix domain socket.
    Unix(UnixListener),
}

/// The NBD server. Cheap to clone; one instance can serve several listeners.
#[derive(Clone)]
pub struct Server {
    config: Arc<ServerConfig>,
    conn_ids: Arc<AtomicU64>,
    /// Shared by every listener this server serves.
    shared_budget: Arc<Semaphore>,
}

impl Server {
    /// A server with the given limits.
    pub fn new(config: ServerConfig) -> Result<Server, ServerError> {
        config.validate()?;
        Ok(Server {
            shared_budget: Arc::new(Semaphore::new(config.max_inflight_bytes_total)),
            config: Arc::new(config),
            conn_ids: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The limits in force.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Serve a TCP listener until `shutdown` completes and connections drain.
    pub async fn serve_tcp(
        &self,
        listener: TcpListener,
        registry: Arc<dyn ExportRegistry>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        self.serve(Listener::Tcp(listener), registry, shutdown)
            .await
    }

    /// Serve a unix-socket listener until `shutdown` completes and connections drain.
    pub async fn serve_unix(
        &self,
        listener: UnixListener,
        registry: Arc<dyn ExportRegistry>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        self.serve(Listener::Unix(listener), registry, shutdown)
            .await
    }

    /// Serve any listener (see [`crate::listener_from_systemd_env`]).
    pub async fn serve(
        &self,
        listener: Listener,
        registry: Arc<dyn ExportRegistry>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let (sd_tx, sd_rx) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(self.config.max_connections));
        let peers = PeerCounts::default();
        let mut refused = Throttled::new();
        let mut accept_failed = Throttled::new();
        let warnings = SharedThrottle::default();
        let lifecycle = SharedThrottle::with_burst(LIFECYCLE_BURST);
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                res = accept(&listener) => match res {
                    Ok((stream, peer)) => {
                        let per_peer = match peer_ip(&stream) {
                            Some(ip) => match peers.try_take(ip, self.config.max_connections_per_peer) {
                                Some(s) => Some(s),
                                None => {
                                    if let Some(more) = refused.event(std::time::Instant::now()) {
                                        warn!(%peer, limit = self.config.max_connections_per_peer, more,
                                            "per-peer connection limit reached; closing new connection(s)");
                                    }
                                    continue;
                                }
                            },
                            None => None,
                        };
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            if let Some(more) = refused.event(std::time::Instant::now()) {
                                warn!(%peer, limit = self.config.max_connections, more,
                                    "connection limit reached; closing new connection(s)");
                            }
                            continue;
                        };
                        let ctx = ConnContext {
                            config: self.config.clone(),
                            registry: registry.clone(),
                            shutdown: sd_rx.clone(),
                            warnings: warnings.clone(),
                            lifecycle: lifecycle.clone(),
                            shared_budget: self.shared_budget.clone(),
                        };
                        let id = self.conn_ids.fetch_add(1, Ordering::Relaxed);
                        let span = info_span!("nbd_conn", id, %peer);
                        tasks.spawn(async move {
                            let _slot = slot;
                            let _per_peer = per_peer;
                            match stream {
                                Stream::Tcp(s) => {
                                    let _ = s.set_nodelay(true);
                                    connection(s, &ctx).await
                                }
                                Stream::Unix(s) => {
                                    unix_send_buffer(&s);
                                    connection(s, &ctx).await
                                }
                            }
                        }.instrument(span));
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning,
                        // and say so once per window (QA: 20 lines a second
                        // while another client held every descriptor).
                        if let Some(more) = accept_failed.event(std::time::Instant::now()) {
                            warn!(error = %e, more_failed = more, "accept failed");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        let open = tasks.len();
        info!(open, "NBD server shutting down: no new connections");
        let _ = sd_tx.send(true);
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(self.config.shutdown_grace, drain)
            .await
            .is_err()
        {
            warn!(
                open = tasks.len(),
                "closing connections still open after the grace period"
            );
            tasks.shutdown().await;
        }
        Ok(())
    }

    /// Serve one already-connected stream (stdin/stdout mode, inetd-style
    /// sockets, tests) until the client disconnects.
    pub async fn serve_stream<S>(
        &self,
        stream: S,
        registry: Arc<dyn ExportRegistry>,
    ) -> Result<(), ServerError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin,
    {
        let (_never, sd_rx) = watch::channel(false);
        let ctx = ConnContext {
            config: self.config.clone(),
            registry,
            shutdown: sd_rx,
            warnings: SharedThrottle::default(),
            lifecycle: SharedThrottle::with_burst(LIFECYCLE_BURST),
            shared_budget: self.shared_budget.clone(),
        };
        let id = self.conn_ids.fetch_add(1, Ordering::Relaxed);
        connection(stream, &ctx)
            .instrument(info_span!("nbd_conn", id, peer = "stream"))
            .await
    }

    /// Serve the protocol on this process's stdin and stdout (`nbdkit -s`
    /// style, for `h.connect_command` and fuzzing). Logs must not go to stdout.
    pub async fn serve_stdio(&self, registry: Arc<dyn ExportRegistry>) -> Result<(), ServerError> {
        let stream = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
        self.serve_stream(stream, registry).await
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// The peer's IP address, if it counts against the per-peer limit (TCP from
/// another host).
fn peer_ip(s: &Stream) -> Option<std::net::IpAddr> {
    match s {
        Stream::Tcp(t) => t
            .peer_addr()
            .ok()
            .map(|a| a.ip())
            .filter(|ip| !ip.is_loopback()),
        Stream::Unix(_) => None,
    }
}

/// Send buffer asked for on a unix-socket connection.
const UNIX_SEND_BUFFER_BYTES: usize = 4 << 20;

/// Asks for a send buffer that holds whole large READ replies. The default
/// (about 208 KiB) splits a 1 MiB reply into five or six partial writes,
/// each followed by a wait for the socket to become writable again; with
/// room for the reply, the writer finishes it in one call. The kernel caps
/// the size at `net.core.wmem_max`, so on a system that keeps the default
/// cap nothing changes. TCP is left alone: setting it there would switch
/// off the kernel's own buffer autotuning.
fn unix_send_buffer(s: &tokio::net::UnixStream) {
    if let Err(e) = socket2::SockRef::from(s).set_send_buffer_size(UNIX_SEND_BUFFER_BYTES) {
        debug!(error = %e, "cannot enlarge the unix socket's send buffer");
    }
}

async fn accept(listener: &Listener) -> std::io::Result<(Stream, String)> {
    match listener {
        Listener::Tcp(l) => {
            let (s, addr) = l.accept().await?;
            Ok((Stream::Tcp(s), addr.to_string()))
        }
        Listener::Unix(l) => {
            let (s, _) = l.accept().await?;
            Ok((Stream::Unix(s), "unix".to_string()))
        }
    }
}

/// One connection from greeting to close. Errors are logged here.
async fn connection<S>(stream: S, ctx: &ConnContext) -> Result<(), ServerError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::with_capacity(256 * 1024, r);
    let deadline = tokio::time::Instant::now() + ctx.config.handshake_timeout;
    let negotiated = handshake(deadline, negotiate(&mut r, &mut w, ctx, None)).await;
    match negotiated {
        Ok(Negotiated::Session(session)) => transmission(r, w, session, ctx).await,
        Ok(Negotiated::Ended) => {
            debug!("negotiation ended without an export");
            Ok(())
        }
        Ok(Negotiated::StartTls { no_zeroes }) => {
            // The client waits for the ACK before its hello: anything
            // already buffered would be lost in the switch.
            if !r.buffer().is_empty() {
                let e = ServerError::Protocol("data sent after STARTTLS before its ACK".into());
                log_end(ctx, &e, "handshake");
                return Err(e);
            }
            let Some(tls) = ctx.config.tls.as_ref() else {
                return Err(ServerError::Protocol(
                    "STARTTLS acknowledged without TLS".into(),
                ));
            };
            let stream = r.into_inner().unsplit(w);
            match &tls.acceptor {
                Acceptor::Certificate(acceptor) => {
                    let accepted = tokio::time::timeout_at(deadline, acceptor.accept(stream)).await;
                    match accepted {
                        Ok(Ok(s)) => inside_tls(s, deadline, no_zeroes, ctx).await,
                        Ok(Err(e)) => {
                            client_warn!(ctx, error = %e, "TLS handshake failed");
                            Err(ServerError::Io(e))
                        }
                        Err(_) => Err(ServerError::HandshakeTimeout),
                    }
                }
                Acceptor::Psk(context) => {
                    let accept = async {
                        let ssl = openssl::ssl::Ssl::new(context)
                            .map_err(|e| std::io::Error::other(e.to_string()))?;
                        let mut s = tokio_openssl::SslStream::new(ssl, stream)
                            .map_err(|e| std::io::Error::other(e.to_string()))?;
                        std::pin::Pin::new(&mut s)
                            .accept()
                            .await
                            .map_err(|e| std::io::Error::other(e.to_string()))?;
                        Ok::<_, std::io::Error>(s)
                    };
                    match tokio::time::timeout_at(deadline, accept).await {
                        Ok(Ok(s)) => inside_tls(s, deadline, no_zeroes, ctx).await,
                        Ok(Err(e)) => {
                            client_warn!(ctx, error = %e, "TLS-PSK handshake failed (unknown username or wrong key?)");
                            Err(ServerError::Io(e))
                        }
                        Err(_) => Err(ServerError::HandshakeTimeout),
                    }
                }
            }
        }
        Err(e) => {
            log_end(ctx, &e, "handshake");
            Err(e)
        }
    }
}

/// Negotiation again inside TLS (nothing kept from before), then transmission.
async fn inside_tls<S>(
    stream: S,
    deadline: tokio::time::Instant,
    no_zeroes: bool,
    ctx: &ConnContext,
) -> Result<(), ServerError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    debug!("TLS established");
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::with_capacity(256 * 1024, r);
    match handshake(deadline, negotiate(&mut r, &mut w, ctx, Some(no_zeroes))).await {
        Ok(Negotiated::Session(session)) => transmission(r, w, session, ctx).await,
        Ok(_) => Ok(()),
        Err(e) => {
            log_end(ctx, &e, "handshake");
            Err(e)
        }
    }
}

/// Negotiation under the connection's handshake deadline.
async fn handshake(
    deadline: tokio::time::Instant,
    f: impl Future<Output = Result<Negotiated, ServerError>>,
) -> Result<Negotiated, ServerError> {
    match tokio::time::timeout_at(deadline, f).await {
        Ok(res) => res,
        Err(_) => Err(ServerError::HandshakeTimeout),
    }
}

/// The transmission phase of a negotiated session, logged at its end.
async fn transmission<R, W>(
    r: BufReader<R>,
    w: W,
    session: crate::negotiate::Session,
    ctx: &ConnContext,
) -> Result<(), ServerError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    conn_info!(ctx, export = %session.name, size = session.size, structured = session.structured,
        tflags = format_args!("0x{:x}", session.tflags), "transmission started");
    let res = transmit(r, w, session, ctx).await;
    match &res {
        Ok(()) => debug!("connection closed"),
        Err(e) => log_end(ctx, e, "transmission"),
    }
    res
}

/// How a connection ended on error. Throttled across connections: a client
/// can end connections this way as fast as it can open them.
fn log_end(ctx: &ConnContext, e: &ServerError, phase: &str) {
    let Some(more) = ctx.warnings.event() else {
        return;
    };
    match e {
        ServerError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            info!(
                phase,
                more_suppressed = more,
                "client disconnected mid-message"
            )
        }
        _ => warn!(phase, error = %e, more_suppressed = more, "connection closed on error"),
    }
}
