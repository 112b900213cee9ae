//! The transmission phase of one connection: read requests, run them on
//! the blocking pool, hand the replies to the writer.
//!
//! Invariants:
//! - A WRITE payload is always consumed in full before its reply (an
//!   oversize one is read and discarded, an absurd one drops the connection),
//!   so the request stream never desynchronises.
//! - Before reading a payload or starting an export call, the reader takes
//!   permits worth the request's bytes from the connection's in-flight
//!   budget; the permits come back only after the reply is written. When the
//!   budget is spent the reader stops reading: backpressure, not buffering.
//!   Every reply is charged by its real size: a READ by its data, a
//!   BLOCK_STATUS by the most descriptors it may return (each plus
//!   `REQUEST_OVERHEAD_BYTES` for the job and its queued reply), an error
//!   reply the reader sends itself (a refused request) by the memory it
//!   holds while queued (`Reply::held_bytes`: the queue slot and its
//!   message, several times its 16 to 60 bytes on the wire). So a client
//!   that sends requests and never reads the replies holds at most the
//!   budget (plus the connection's buffer pool, at most 16 buffers of 1 MiB).
//! - Replies go out in completion order, not request order. Small requests
//!   may run in batches while the export is fast (see `dispatch`).
//! - After DISC, EOF or a protocol violation the reader stops; requests
//!   already started still finish and their replies are still written.
//! - Once the server shuts down, new requests get ESHUTDOWN.
//! - A WRITE payload arrives within the handshake deadline (or the idle
//!   timeout, if longer) plus a second per 64 KiB, or the connection is
//!   closed: a dribbled payload cannot hold its permits forever.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, BufReader};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::bufpool::BufPool;
use crate::dispatch::{Dispatcher, Job};
use crate::negotiate::{discard, Session};
use crate::ops::{self, cmd_name, ReqInfo};
use crate::proto::{self, cmd, errno, REQUEST_HEADER_BYTES};
use crate::server::{client_warn, conn_info, ConnContext};

use crate::writer::{self, Charge, Outgoing, Reply};
use crate::ServerError;

/// Budget charged per request on top of its data bytes.
pub(crate) const REQUEST_OVERHEAD_BYTES: u32 = 512;

/// Serve requests until the client disconnects or the connection breaks.
pub(crate) async fn transmit<R, W>(
    r: BufReader<R>,
    w: W,
    session: Session,
    ctx: &ConnContext,
) -> Result<(), ServerError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = Arc::new(Semaphore::new(ctx.config.max_inflight_bytes_per_conn));
    let pool = Arc::new(BufPool::default());
    let reader = read_loop(r, tx, &session, ctx, budget, pool.clone());
    let writer = writer::run(w, rx, pool);
    tokio::pin!(reader, writer);
    tokio::select! {
        res = &mut reader => {
            // The reader dropped its sender; the writer ends once every
            // started request has replied.
            let wres = writer.await;
            res?;
            wres.map_err(ServerError::Io)
        }
        wres = &mut writer => {
            // The reader still holds a sender, so the writer only ends on error.
            wres.map_err(ServerError::Io)?;
            Err(ServerError::Protocol("writer stopped early".into()))
        }
    }
}

/// Read a request header; `Ok(false)` on a clean EOF before its first byte.
async fn read_header<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8; REQUEST_HEADER_BYTES],
) -> Result<bool, ServerError> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = r.read(&mut buf[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(false);
            }
            return Err(ServerError::Protocol(format!(
                "client disconnected after {filled} bytes of a request header"
            )));
        }
        filled += n;
    }
    Ok(true)
}

/// Slowest payload rate accepted (bytes per second) beyond the deadline's
/// base (see the payload read in `read_loop`).
const PAYLOAD_MIN_RATE: u64 = 64 * 1024;

/// Read exactly `n` payload bytes into a fresh buffer without zero-filling it first.
async fn read_payload<R: AsyncRead + Unpin>(
    r: &mut R,
    n: usize,
    pool: &BufPool,
) -> std::io::Result<Vec<u8>> {
    let mut buf = pool.take_empty(n);
    while buf.len() < n {
        let want = (n - buf.len()) as u64;
        if r.take(want).read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(buf)
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut r: BufReader<R>,
    tx: UnboundedSender<Outgoing>,
    s: &Session,
    ctx: &ConnContext,
    budget: Arc<Semaphore>,
    pool: Arc<BufPool>,
) -> Result<(), ServerError> {
    let mut disp = Dispatcher::new(
        s.export.clone(),
        tx.clone(),
        pool.clone(),
        ctx.config.max_batch,
    );
    // Refused requests are counted, not logged one by one (limits.rs).
    let mut refused = crate::limits::Throttled::new();
    let res = read_requests(&mut r, &tx, s, ctx, &budget, &pool, &mut disp, &mut refused).await;
    // Requests already read still run and reply, whatever ended the loop.
    disp.flush();
    if refused.pending() > 0 {
        warn!(
            more_refused = refused.pending(),
            "requests refused since the last report"
        );
    }
    res
}

/// Completes once the server shuts down and the connection has nothing in
/// flight (every budget permit back); never, should the server's side of
/// the signal be gone.
async fn shut_down_and_idle(ctx: &ConnContext, budget: &Semaphore, total: u32) {
    let mut rx = ctx.shutdown.clone();
    if rx.wait_for(|down| *down).await.is_err() {
        std::future::pending::<()>().await;
    }
    // Requests in flight still reply; the reader only stops reading.
    let _all = budget.acquire_many(total).await;
}

#[allow(clippy::too_many_arguments)]
async fn read_requests<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    tx: &UnboundedSender<Outgoing>,
    s: &Session,
    ctx: &ConnContext,
    budget: &Arc<Semaphore>,
    pool: &Arc<BufPool>,
    disp: &mut Dispatcher,
    refused: &mut crate::limits::Throttled,
) -> Result<(), ServerError> {
    let mut hdr = [0u8; REQUEST_HEADER_BYTES];
    let budget_total = ctx
        .config
        .max_inflight_bytes_per_conn
        .min(u32::MAX as usize) as u32;
    loop {
        // Hold back a batch only while the next header is already buffered,
        // so no request waits on the client.
        if r.buffer().len() < REQUEST_HEADER_BYTES {
            disp.flush();
        }
        // Idle only with nothing in flight: a client waiting for a slow
        // reply is not idle.
        let busy = budget.available_permits() < budget_total as usize;
        let next = async {
            match ctx.config.idle_timeout.filter(|_| !busy) {
                Some(t) => tokio::time::timeout(t, read_header(r, &mut hdr))
                    .await
                    .map_err(|_| t),
                None => Ok(read_header(r, &mut hdr).await),
            }
        };
        // A server shutting down closes a connection as soon as nothing is
        // in flight (QA: every idle client held a clean stop for the whole
        // grace period); a header already on its way still gets its
        // ESHUTDOWN (biased: the read is polled first).
        let got = tokio::select! {
            biased;
            next = next => match next {
                Ok(res) => res?,
                Err(t) => {
                    conn_info!(
                        ctx,
                        idle_s = t.as_secs(),
                        "no request for the idle timeout; closing"
                    );
                    return Ok(());
                }
            },
            () = shut_down_and_idle(ctx, budget, budget_total) => {
                conn_info!(ctx, "server shutting down; closing the connection between requests");
                return Ok(());
            }
        };
        if !got {
            conn_info!(ctx, "client closed the connection without DISC");
            return Ok(());
        }
        let h = proto::parse_request(&hdr).map_err(|magic| {
            client_warn!(
                ctx,
                magic = format_args!("0x{magic:08x}"),
                "bad request magic; closing"
            );
            ServerError::Protocol(format!("bad request magic 0x{magic:08x}"))
        })?;
        if h.kind == cmd::DISC {
            debug!("DISC: finishing requests in flight, then closing");
            return Ok(());
        }
        let info = ReqInfo {
            cookie: h.cookie,
            kind: h.kind,
            structured: s.structured,
            min_block: s.block_size.min,
        };
        let payload_len = if h.kind == cmd::WRITE { h.length } else { 0 };
        // A reply the reader makes itself is charged by its bytes, and waits
        // for budget like any request (a client that never reads its replies
        // stops being read). A send fails only when the writer is gone.
        macro_rules! send {
            ($reply:expr) => {{
                let reply: Reply = $reply;
                let cost = (reply.held_bytes() as u32).min(budget_total);
                let permit = charge(ctx, budget, disp, cost).await?;
                let _ = tx.send(Outgoing {
                    reply,
                    permit: Some(permit),
                });
            }};
        }
        if payload_len > s.block_size.max && payload_len > ctx.config.max_discard_bytes {
            client_warn!(ctx, len = payload_len, "absurd WRITE length; closing");
            return Err(ServerError::Protocol(format!(
                "WRITE of {payload_len} bytes exceeds the discard limit"
            )));
        }
        let op = match ops::validate(&h, s) {
            Ok(op) => op,
            Err((e, message)) => {
                // A flood of bad requests must not flood the log.
                if let Some(more) = refused.event(std::time::Instant::now()) {
                    warn!(cookie = h.cookie, command = cmd_name(h.kind), errno = e, %message,
                        more_refused = more, "request refused");
                }
                discard(r, u64::from(payload_len)).await?;
                send!(ops::error_reply(&info, e, message));
                continue;
            }
        };
        if ctx.is_shutting_down() {
            debug!(cookie = h.cookie, "request during shutdown: ESHUTDOWN");
            discard(r, u64::from(payload_len)).await?;
            send!(ops::error_reply(
                &info,
                errno::ESHUTDOWN,
                "server shutting down".into(),
            ));
            continue;
        }
        let data_len = match op {
            ops::Op::Read { len, .. } => len,
            ops::Op::BlockStatus { len, req_one, .. } => block_status_reply_bytes(len, req_one, s),
            _ => payload_len,
        };
        let cost = data_len
            .saturating_add(REQUEST_OVERHEAD_BYTES)
            .min(budget_total);
        let permit = charge(ctx, budget, disp, cost).await?;
        // A payload must keep coming: the whole of it within the handshake
        // deadline (or the idle timeout, if longer) plus one second per
        // PAYLOAD_MIN_RATE bytes, so a client cannot hold its permits and
        // a connection slot by dribbling a WRITE forever.
        let base = ctx
            .config
            .idle_timeout
            .map_or(ctx.config.handshake_timeout, |t| {
                t.max(ctx.config.handshake_timeout)
            });
        // Saturating: an idle timeout near the largest Duration must not
        // overflow (QA: it panicked the connection's task).
        let deadline = base.saturating_add(std::time::Duration::from_millis(
            u64::from(payload_len).saturating_mul(1000) / PAYLOAD_MIN_RATE,
        ));
        let read = tokio::time::timeout(deadline, read_payload(r, payload_len as usize, pool));
        let payload = match read.await {
            Err(_) => {
                client_warn!(
                    ctx,
                    cookie = h.cookie,
                    len = payload_len,
                    deadline_ms = deadline.as_millis() as u64,
                    "WRITE payload not received in time; closing"
                );
                return Err(ServerError::Protocol(format!(
                    "WRITE payload of {payload_len} bytes not received within {deadline:?}"
                )));
            }
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                client_warn!(
                    ctx,
                    cookie = h.cookie,
                    len = payload_len,
                    "client disconnected in a WRITE payload"
                );
                return Err(e.into());
            }
        };
        let large_done = disp.submit(Job {
            op,
            payload,
            info,
            permit,
            data_len,
        });
        if large_done {
            // Let the writer send it from this core (its data is in this
            // core's cache) while the client prepares the next one.
            tokio::task::yield_now().await;
        }
    }
}

/// Takes `cost` permits of the in-flight budget; when it is spent, starts
/// what the dispatcher holds back and waits (backpressure).
async fn charge(
    ctx: &ConnContext,
    budget: &Arc<Semaphore>,
    disp: &mut Dispatcher,
    cost: u32,
) -> Result<Charge, ServerError> {
    let closed = |_| ServerError::Protocol("in-flight budget closed".into());
    let conn = match budget.clone().try_acquire_many_owned(cost) {
        Ok(p) => p,
        Err(_) => {
            disp.flush();
            budget
                .clone()
                .acquire_many_owned(cost)
                .await
                .map_err(closed)?
        }
    };
    // What the connection now holds above its floor (at most this
    // request's cost) also comes from the server's budget, so many
    // connections cannot each hold their whole budget (QA: 63 connections
    // of unread 1 MiB READs took 4 GiB). Under the floor a connection never
    // waits on others: while it waits, its own replies drain and the share
    // it needs is worked out again.
    let shared_total = ctx.config.max_inflight_bytes_total.min(u32::MAX as usize);
    let shared = loop {
        let held = ctx
            .config
            .max_inflight_bytes_per_conn
            .saturating_sub(budget.available_permits());
        let above = held
            .saturating_sub(ctx.config.inflight_floor_per_conn)
            .min(cost as usize)
            .min(shared_total) as u32;
        if above == 0 {
            break None;
        }
        let s = ctx.shared_budget.clone();
        if let Ok(p) = s.clone().try_acquire_many_owned(above) {
            break Some(p);
        }
        disp.flush();
        tokio::select! {
            p = s.acquire_many_owned(above) => break Some(p.map_err(closed)?),
            () = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
        }
    };
    Ok(Charge {
        _conn: conn,
        _shared: shared,
    })
}

/// The largest BLOCK_STATUS reply a request of `len` bytes can get: one
/// 8-byte descriptor per minimum block, at most `MAX_DESCRIPTORS`.
fn block_status_reply_bytes(len: u32, req_one: bool, s: &Session) -> u32 {
    let blocks = if req_one {
        1
    } else {
        (len.div_ceil(s.block_size.min.max(1)) as usize).min(crate::extents::MAX_DESCRIPTORS)
    };
    (8 * blocks + 4) as u32
}
