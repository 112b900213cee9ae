//! Handshake and option haggling (fixed newstyle), up to the start of
//! transmission.
//!
//! Invariants:
//! - Every option payload is read in full (or the connection is dropped)
//!   before the reply, so the stream never desynchronises.
//! - An unknown option gets `ERR_UNSUP` and negotiation continues (qemu 10
//!   sends `EXTENDED_HEADERS` first).
//! - The selected `base:allocation` context belongs to the export named in
//!   the last `SET_META_CONTEXT`; a `GO`/`EXPORT_NAME` for another export
//!   clears it, an `INFO` in between does not.
//! - `INFO` and a following `GO` with the same parameters answer the same.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::server::client_warn;

use crate::export::{BlockSize, Export};
use crate::proto::{self, info, opt, rep, tflag};
use crate::registry::resolve_name;
use crate::server::ConnContext;
use crate::ConnError;

/// Id of the `base:allocation` context after `SET_META_CONTEXT`.
pub(crate) const BASE_ALLOCATION_ID: u32 = 1;
/// Option payloads larger than this are dropped with the connection
/// instead of being read and discarded.
const OPTION_DISCARD_MAX_BYTES: u32 = 1 << 20;

/// What negotiation agreed on; the input of the transmission phase.
pub(crate) struct Session {
    /// Canonical export name.
    pub name: String,
    /// The export.
    pub export: Arc<dyn Export>,
    /// Export size, fixed for the connection.
    pub size: u64,
    /// Block size constraints (max already capped by the server config).
    pub block_size: BlockSize,
    /// Structured replies negotiated.
    pub structured: bool,
    /// `base:allocation` selected (context id [`BASE_ALLOCATION_ID`]).
    pub base_allocation: bool,
    /// The client asked for `INFO_BLOCK_SIZE`, so it promised to honour it.
    pub block_size_negotiated: bool,
    /// Transmission flags sent.
    pub tflags: u16,
}

/// Meta-context selection and structured-reply state across options.
#[derive(Default)]
struct State {
    structured: bool,
    /// Export name (canonical) of the last SET_META_CONTEXT that selected base:allocation.
    meta_export: Option<String>,
}

/// How negotiation ended.
pub(crate) enum Negotiated {
    /// An export was selected: transmission starts.
    Session(Session),
    /// The client ended negotiation cleanly (ABORT, a refused EXPORT_NAME).
    Ended,
    /// `STARTTLS` was acknowledged: run the TLS handshake, then negotiate
    /// again inside it (`after_tls: Some(no_zeroes)`).
    StartTls {
        /// The client's NO_ZEROES flag from the greeting.
        no_zeroes: bool,
    },
}

/// Run the handshake. `after_tls` is `None` on a fresh connection (the
/// greeting is sent first) and `Some(no_zeroes)` inside TLS, where option
/// haggling starts again with nothing kept from before (see `tls`).
pub(crate) async fn negotiate<R, W>(
    r: &mut R,
    w: &mut W,
    ctx: &ConnContext,
    after_tls: Option<bool>,
) -> Result<Negotiated, ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut out = BytesMut::with_capacity(256);
    let no_zeroes = match after_tls {
        Some(no_zeroes) => no_zeroes,
        None => {
            proto::encode_greeting(&mut out);
            w.write_all(&out).await?;
            w.flush().await?;
            let client_flags = r.read_u32().await?;
            let known = proto::CLIENT_FIXED_NEWSTYLE | proto::CLIENT_NO_ZEROES;
            if client_flags & !known != 0 {
                return Err(ConnError::Protocol(format!(
                    "client flags 0x{client_flags:x} have unknown bits"
                )));
            }
            client_flags & proto::CLIENT_NO_ZEROES != 0
        }
    };
    let tls_active = after_tls.is_some();
    let tls_required = ctx.config.tls.as_ref().is_some_and(|t| t.require);
    let mut st = State::default();
    loop {
        let magic = r.read_u64().await?;
        if magic != proto::IHAVEOPT {
            return Err(ConnError::Protocol(format!(
                "option magic 0x{magic:x} is not IHAVEOPT"
            )));
        }
        let option = r.read_u32().await?;
        let len = r.read_u32().await?;
        if len > ctx.config.max_option_bytes {
            if len > OPTION_DISCARD_MAX_BYTES {
                return Err(ConnError::Protocol(format!(
                    "option {option} length {len} is absurd"
                )));
            }
            client_warn!(ctx, option, len, "option payload too large; discarded");
            discard(r, len as u64).await?;
            reply(w, &mut out, option, rep::ERR_TOO_BIG, b"option too large").await?;
            continue;
        }
        let mut data = vec![0u8; len as usize];
        r.read_exact(&mut data).await?;
        debug!(option, len, "option");
        if ctx.is_shutting_down() {
            reply(
                w,
                &mut out,
                option,
                rep::ERR_SHUTDOWN,
                b"server shutting down",
            )
            .await?;
            return Ok(Negotiated::Ended);
        }
        if option == opt::STARTTLS {
            if !data.is_empty() {
                reply(
                    w,
                    &mut out,
                    option,
                    rep::ERR_INVALID,
                    b"STARTTLS takes no data",
                )
                .await?;
                continue;
            }
            match (&ctx.config.tls, tls_active) {
                (None, _) => {
                    debug!("STARTTLS without TLS configured");
                    reply(
                        w,
                        &mut out,
                        option,
                        rep::ERR_UNSUP,
                        b"TLS is not configured",
                    )
                    .await?;
                }
                (Some(_), true) => {
                    reply(
                        w,
                        &mut out,
                        option,
                        rep::ERR_INVALID,
                        b"TLS already negotiated",
                    )
                    .await?;
                }
                (Some(_), false) => {
                    reply(w, &mut out, option, rep::ACK, &[]).await?;
                    return Ok(Negotiated::StartTls { no_zeroes });
                }
            }
            continue;
        }
        if tls_required && !tls_active && option != opt::ABORT {
            if option == opt::EXPORT_NAME {
                client_warn!(
                    ctx,
                    "EXPORT_NAME in the clear while TLS is required; closing"
                );
                return Ok(Negotiated::Ended);
            }
            debug!(option, "option in the clear while TLS is required");
            reply(
                w,
                &mut out,
                option,
                rep::ERR_TLS_REQD,
                b"TLS is required: send STARTTLS first",
            )
            .await?;
            continue;
        }
        match option {
            opt::EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data).into_owned();
                let Some(session) = open(ctx, &st, &name, false) else {
                    client_warn!(ctx, export = ?name, "EXPORT_NAME for an unknown export; closing");
                    return Ok(Negotiated::Ended);
                };
                out.clear();
                out.put_u64(session.size);
                out.put_u16(session.tflags);
                if !no_zeroes {
                    out.put_bytes(0, proto::EXPORT_NAME_PADDING_BYTES);
                }
                w.write_all(&out).await?;
                w.flush().await?;
                return Ok(Negotiated::Session(session));
            }
            opt::ABORT => {
                // The client may close without reading the ACK: ignore errors.
                let _ = reply(w, &mut out, option, rep::ACK, &[]).await;
                return Ok(Negotiated::Ended);
            }
            opt::LIST => {
                if !data.is_empty() {
                    client_warn!(ctx, "LIST with a payload");
                    reply(w, &mut out, option, rep::ERR_INVALID, b"LIST takes no data").await?;
                    continue;
                }
                for e in ctx.registry.list() {
                    let mut d = Vec::with_capacity(4 + e.name.len());
                    d.put_u32(e.name.len() as u32);
                    d.put_slice(e.name.as_bytes());
                    if let Some(desc) = &e.description {
                        d.put_slice(desc.as_bytes());
                    }
                    reply(w, &mut out, option, rep::SERVER, &d).await?;
                }
                reply(w, &mut out, option, rep::ACK, &[]).await?;
            }
            opt::INFO | opt::GO => {
                let Some(req) = proto::parse_info_request(&data) else {
                    client_warn!(ctx, option, "malformed INFO/GO payload");
                    reply(w, &mut out, option, rep::ERR_INVALID, b"malformed request").await?;
                    continue;
                };
                let name = String::from_utf8_lossy(&req.name).into_owned();
                let wants_bs = req.requests.contains(&info::BLOCK_SIZE);
                let Some(session) = open(ctx, &st, &name, wants_bs) else {
                    if let Some(why) = ctx.registry.unavailable() {
                        debug!(export = ?name, %why, "INFO/GO while exports are unavailable");
                        reply(w, &mut out, option, rep::ERR_SHUTDOWN, why.as_bytes()).await?;
                        continue;
                    }
                    debug!(export = ?name, "INFO/GO for an unknown export");
                    reply(w, &mut out, option, rep::ERR_UNKNOWN, b"unknown export").await?;
                    continue;
                };
                send_info(w, &mut out, option, &session, &req.requests).await?;
                reply(w, &mut out, option, rep::ACK, &[]).await?;
                if option == opt::GO {
                    return Ok(Negotiated::Session(session));
                }
            }
            opt::STRUCTURED_REPLY => {
                if !data.is_empty() {
                    client_warn!(ctx, "STRUCTURED_REPLY with a payload");
                    reply(w, &mut out, option, rep::ERR_INVALID, b"takes no data").await?;
                    continue;
                }
                st.structured = true;
                reply(w, &mut out, option, rep::ACK, &[]).await?;
            }
            opt::LIST_META_CONTEXT | opt::SET_META_CONTEXT => {
                meta_context(w, &mut out, ctx, &mut st, option, &data).await?;
            }
            _ => {
                debug!(option, "unsupported option");
                reply(w, &mut out, option, rep::ERR_UNSUP, b"option not supported").await?;
            }
        }
    }
}

/// Resolve and open an export and work out what this connection will see.
fn open(ctx: &ConnContext, st: &State, name: &str, wants_bs: bool) -> Option<Session> {
    let canonical = resolve_name(ctx.registry.as_ref(), name)?;
    let export = ctx.registry.open(&canonical)?;
    let mut block_size = export.block_size();
    if let Err(e) = block_size.validate() {
        client_warn!(ctx, export = %canonical, error = %e, "export block size invalid; using 1/4096/max");
        block_size = BlockSize {
            min: 1,
            preferred: 4096,
            max: BlockSize::DEFAULT.max,
        };
    }
    // Cap max at the server limit, keeping it a multiple of min and >= preferred.
    let cap = ctx.config.max_request_bytes.max(block_size.preferred);
    if block_size.max > cap {
        block_size.max = cap - cap % block_size.min;
    }
    let mut tflags = tflag::HAS_FLAGS
        | tflag::SEND_FLUSH
        | tflag::SEND_FUA
        | tflag::SEND_TRIM
        | tflag::SEND_WRITE_ZEROES
        | tflag::SEND_CACHE
        | tflag::SEND_FAST_ZERO;
    if st.structured {
        tflags |= tflag::SEND_DF;
    }
    if export.read_only() {
        tflags |= tflag::READ_ONLY;
    }
    if export.can_multi_conn() {
        tflags |= tflag::CAN_MULTI_CONN;
    }
    let base_allocation = st.structured && st.meta_export.as_deref() == Some(canonical.as_str());
    Some(Session {
        size: export.size(),
        name: canonical,
        export,
        block_size,
        structured: st.structured,
        base_allocation,
        block_size_negotiated: wants_bs,
        tflags,
    })
}

async fn send_info<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut BytesMut,
    option: u32,
    s: &Session,
    requests: &[u16],
) -> Result<(), ConnError> {
    let mut d = Vec::with_capacity(64);
    if requests.contains(&info::NAME) {
        d.put_u16(info::NAME);
        d.put_slice(s.name.as_bytes());
        reply(w, out, option, rep::INFO, &d).await?;
    }
    if requests.contains(&info::DESCRIPTION) {
        if let Some(desc) = s.export.description() {
            d.clear();
            d.put_u16(info::DESCRIPTION);
            d.put_slice(proto::truncate_utf8(&desc, proto::MAX_STRING_BYTES).as_bytes());
            reply(w, out, option, rep::INFO, &d).await?;
        }
    }
    // Always sent: a server may advertise constraints unasked.
    d.clear();
    d.put_u16(info::BLOCK_SIZE);
    d.put_u32(s.block_size.min);
    d.put_u32(s.block_size.preferred);
    d.put_u32(s.block_size.max);
    reply(w, out, option, rep::INFO, &d).await?;
    d.clear();
    d.put_u16(info::EXPORT);
    d.put_u64(s.size);
    d.put_u16(s.tflags);
    reply(w, out, option, rep::INFO, &d).await
}

async fn meta_context<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut BytesMut,
    ctx: &ConnContext,
    st: &mut State,
    option: u32,
    data: &[u8],
) -> Result<(), ConnError> {
    if !st.structured {
        client_warn!(ctx, option, "meta context option before STRUCTURED_REPLY");
        return reply(
            w,
            out,
            option,
            rep::ERR_INVALID,
            b"structured replies not negotiated",
        )
        .await;
    }
    let Some(req) = proto::parse_meta_request(data) else {
        client_warn!(ctx, option, "malformed meta context payload");
        return reply(w, out, option, rep::ERR_INVALID, b"malformed request").await;
    };
    let name = String::from_utf8_lossy(&req.name).into_owned();
    let canonical =
        resolve_name(ctx.registry.as_ref(), &name).filter(|n| ctx.registry.open(n).is_some());
    let Some(canonical) = canonical else {
        return reply(w, out, option, rep::ERR_UNKNOWN, b"unknown export").await;
    };
    let list = option == opt::LIST_META_CONTEXT;
    let matches = |q: &[u8]| {
        q == proto::BASE_ALLOCATION.as_bytes() || (list && (q == b"base:" || q == b"base:*"))
    };
    let selected = if req.queries.is_empty() {
        list
    } else {
        req.queries.iter().any(|q| matches(q))
    };
    if !list {
        // SET replaces any earlier selection.
        st.meta_export = selected.then(|| canonical.clone());
    }
    if selected {
        let id = if list { 0 } else { BASE_ALLOCATION_ID };
        let mut d = Vec::with_capacity(4 + proto::BASE_ALLOCATION.len());
        d.put_u32(id);
        d.put_slice(proto::BASE_ALLOCATION.as_bytes());
        reply(w, out, option, rep::META_CONTEXT, &d).await?;
    }
    reply(w, out, option, rep::ACK, &[]).await
}

async fn reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut BytesMut,
    option: u32,
    kind: u32,
    data: &[u8],
) -> Result<(), ConnError> {
    out.clear();
    proto::encode_opt_reply(out, option, kind, data);
    w.write_all(out).await?;
    w.flush().await?;
    Ok(())
}

/// Read and drop `n` bytes.
pub(crate) async fn discard<R: AsyncRead + Unpin>(r: &mut R, n: u64) -> Result<(), ConnError> {
    let copied = tokio::io::copy(&mut r.take(n), &mut tokio::io::sink()).await?;
    if copied < n {
        return Err(ConnError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(())
}
