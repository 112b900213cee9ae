//! Request validation and execution against an [`Export`].
//!
//! `validate` is pure: it turns a request header into an [`Op`] or the
//! errno and message to answer, before any payload is trusted or any
//! export call is made. `execute` runs on the blocking pool.
//!
//! Invariants:
//! - Every range handed to the export lies inside `[0, size)`.
//! - `ENOTSUP` only ever answers WRITE_ZEROES with FAST_ZERO: without the
//!   flag a backend that cannot zero natively gets zero-filled writes.
//! - TRIM and CACHE are advisory: "not supported" from the export is success.

use std::sync::Arc;

use tracing::{error, warn};

use crate::bufpool::BufPool;
use crate::export::{ErrorKind, Export, ExportError, ZeroFlags};
use crate::extents;
use crate::negotiate::{Session, BASE_ALLOCATION_ID};
use crate::proto::{cflag, cmd, errno, tflag, RequestHeader};
use crate::writer::Reply;

/// Largest zero-filled buffer used when an export cannot zero natively.
const ZERO_FILL_CHUNK_BYTES: u64 = 1 << 20;

/// A validated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Read {
        offset: u64,
        len: u32,
        df: bool,
    },
    Write {
        offset: u64,
        fua: bool,
    },
    Flush,
    Trim {
        offset: u64,
        len: u64,
        fua: bool,
    },
    WriteZeroes {
        offset: u64,
        len: u64,
        flags: ZeroFlags,
    },
    Cache {
        offset: u64,
        len: u64,
    },
    BlockStatus {
        offset: u64,
        len: u32,
        req_one: bool,
    },
    /// Zero-length WRITE/TRIM/WRITE_ZEROES/CACHE: success without a call.
    Nop,
}

/// Protocol name of a command, for messages.
pub(crate) fn cmd_name(kind: u16) -> &'static str {
    match kind {
        cmd::READ => "read",
        cmd::WRITE => "write",
        cmd::DISC => "disconnect",
        cmd::FLUSH => "flush",
        cmd::TRIM => "trim",
        cmd::CACHE => "cache",
        cmd::WRITE_ZEROES => "write zeroes",
        cmd::BLOCK_STATUS => "block status",
        _ => "unknown",
    }
}

/// Check a request against the session; `Err((errno, message))` to answer.
pub(crate) fn validate(h: &RequestHeader, s: &Session) -> Result<Op, (u32, String)> {
    let allowed = match h.kind {
        cmd::READ if s.structured => cflag::FUA | cflag::DF,
        cmd::READ | cmd::WRITE | cmd::TRIM | cmd::CACHE | cmd::FLUSH => cflag::FUA,
        cmd::WRITE_ZEROES => cflag::FUA | cflag::NO_HOLE | cflag::FAST_ZERO,
        cmd::BLOCK_STATUS => cflag::FUA | cflag::REQ_ONE,
        k => {
            return Err((
                errno::EINVAL,
                format!("invalid request type ({k}) received"),
            ))
        }
    };
    let name = cmd_name(h.kind);
    if h.flags & !allowed != 0 {
        return Err((
            errno::EINVAL,
            format!("unsupported flags for command {name} (got 0x{:x})", h.flags),
        ));
    }
    if h.kind == cmd::FLUSH {
        return Ok(Op::Flush);
    }
    let writes = matches!(h.kind, cmd::WRITE | cmd::TRIM | cmd::WRITE_ZEROES);
    if writes && s.tflags & tflag::READ_ONLY != 0 {
        return Err((errno::EPERM, format!("{name} on a read-only export")));
    }
    let len = u64::from(h.length);
    let offset = h.offset;
    if offset.checked_add(len).is_none_or(|end| end > s.size) {
        let e = if matches!(h.kind, cmd::WRITE | cmd::WRITE_ZEROES) {
            errno::ENOSPC
        } else {
            errno::EINVAL
        };
        return Err((
            e,
            format!(
                "operation past EOF; From: {offset}, Len: {len}, Size: {}",
                s.size
            ),
        ));
    }
    if matches!(h.kind, cmd::READ | cmd::WRITE) && h.length > s.block_size.max {
        return Err((
            errno::EINVAL,
            format!(
                "{name} length {len} exceeds the maximum {}",
                s.block_size.max
            ),
        ));
    }
    let min = u64::from(s.block_size.min);
    if s.block_size_negotiated
        && h.kind != cmd::BLOCK_STATUS
        && (offset % min != 0 || len % min != 0)
    {
        return Err((
            errno::EINVAL,
            format!("{name} {len}@{offset} is not aligned to the minimum block size {min}"),
        ));
    }
    let fua = h.flags & cflag::FUA != 0;
    Ok(match h.kind {
        cmd::READ => Op::Read {
            offset,
            len: h.length,
            df: h.flags & cflag::DF != 0,
        },
        cmd::BLOCK_STATUS if len == 0 => {
            return Err((errno::EINVAL, "block status of length 0".into()));
        }
        cmd::BLOCK_STATUS if !s.base_allocation => {
            return Err((
                errno::EINVAL,
                "block status without a negotiated base:allocation context".into(),
            ));
        }
        cmd::BLOCK_STATUS => Op::BlockStatus {
            offset,
            len: h.length,
            req_one: h.flags & cflag::REQ_ONE != 0,
        },
        _ if len == 0 => Op::Nop,
        cmd::WRITE => Op::Write { offset, fua },
        cmd::TRIM => Op::Trim { offset, len, fua },
        cmd::CACHE => Op::Cache { offset, len },
        _ => Op::WriteZeroes {
            offset,
            len,
            flags: ZeroFlags {
                may_trim: h.flags & cflag::NO_HOLE == 0,
                fua,
                fast_only: h.flags & cflag::FAST_ZERO != 0,
            },
        },
    })
}

/// What `execute` needs to know about the request and connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReqInfo {
    pub cookie: u64,
    pub kind: u16,
    pub structured: bool,
    pub min_block: u32,
}

/// Longest error message kept in a reply: an export's error text can be
/// long, and a reply waiting for its client is charged a fixed overhead
/// beyond its data (`REQUEST_OVERHEAD_BYTES` in transmit.rs).
pub(crate) const ERROR_MESSAGE_MAX_BYTES: usize = 256;

/// The reply for an error, in the form the connection allows.
pub(crate) fn error_reply(info: &ReqInfo, errno: u32, message: String) -> Reply {
    let chunked = info.structured && matches!(info.kind, cmd::READ | cmd::BLOCK_STATUS);
    if chunked {
        let message = if message.len() > ERROR_MESSAGE_MAX_BYTES {
            crate::proto::truncate_utf8(&message, ERROR_MESSAGE_MAX_BYTES).to_string()
        } else {
            message
        };
        Reply::ErrorChunk {
            cookie: info.cookie,
            errno,
            message,
        }
    } else {
        Reply::Simple {
            cookie: info.cookie,
            errno,
        }
    }
}

/// Run one validated request (blocking) and build its reply.
/// A read or a write without FUA done at once on the caller's task, if the
/// export can do it without waiting ([`Export::try_read_now`],
/// [`Export::try_write_now`]); `None`: not attempted, run [`execute`] on a
/// blocking thread instead.
pub(crate) fn execute_now(
    op: Op,
    export: &Arc<dyn Export>,
    payload: &[u8],
    info: ReqInfo,
    pool: &BufPool,
) -> Option<Reply> {
    match op {
        Op::Read { offset, len, df } => {
            let mut buf = pool.take_filled(len as usize);
            match export.try_read_now(offset, &mut buf) {
                None => {
                    pool.give(buf);
                    None
                }
                Some(Ok(())) => Some(Reply::Read {
                    cookie: info.cookie,
                    offset,
                    data: buf,
                    structured: info.structured,
                    df,
                }),
                Some(Err(e)) => {
                    pool.give(buf);
                    Some(failed(op, &info, e))
                }
            }
        }
        Op::Write { offset, fua: false } => Some(outcome_reply(
            op,
            &info,
            export.try_write_now(offset, payload)?,
        )),
        _ => None,
    }
}

pub(crate) fn execute(
    op: Op,
    export: &Arc<dyn Export>,
    payload: &[u8],
    info: ReqInfo,
    pool: &BufPool,
) -> Reply {
    let res = match op {
        Op::Read { offset, len, df } => {
            let mut buf = pool.take_filled(len as usize);
            match export.read(offset, &mut buf) {
                Ok(()) => {
                    return Reply::Read {
                        cookie: info.cookie,
                        offset,
                        data: buf,
                        structured: info.structured,
                        df,
                    }
                }
                Err(e) => {
                    pool.give(buf);
                    Err(e)
                }
            }
        }
        Op::Write { offset, fua } => export.write(offset, payload, fua),
        Op::Flush => export.flush(),
        Op::Trim { offset, len, fua } => advisory(export.trim(offset, len, fua)),
        Op::Cache { offset, len } => advisory(export.cache(offset, len)),
        Op::WriteZeroes { offset, len, flags } => write_zeroes(export, offset, len, flags),
        Op::BlockStatus {
            offset,
            len,
            req_one,
        } => {
            let found = match export.block_status(offset, u64::from(len)) {
                Err(e) if e.kind == ErrorKind::NotSupported => Ok(vec![crate::Extent {
                    len: u64::from(len),
                    flags: crate::ExtentFlags::DATA,
                }]),
                other => other,
            };
            match found {
                Ok(ext) => match extents::descriptors(&ext, len, info.min_block, req_one) {
                    Some(descriptors) => {
                        return Reply::BlockStatus {
                            cookie: info.cookie,
                            context_id: BASE_ALLOCATION_ID,
                            descriptors,
                        }
                    }
                    None => {
                        error!(offset, len, "export returned no extents for block status");
                        Err(ExportError::io("export returned no extents"))
                    }
                },
                Err(e) => Err(e),
            }
        }
        Op::Nop => Ok(()),
    };
    outcome_reply(op, &info, res)
}

/// The reply to a request (not a READ or BLOCK_STATUS that succeeded: those
/// carry data) whose export call ended with `res`.
pub(crate) fn outcome_reply(op: Op, info: &ReqInfo, res: Result<(), ExportError>) -> Reply {
    match res {
        Ok(()) => Reply::Simple {
            cookie: info.cookie,
            errno: 0,
        },
        Err(e) => failed(op, info, e),
    }
}

/// Failed export calls logged, across every connection of the process: a
/// backend that fails every request (a fenced subsystem, a full disk) under
/// a client that retries must not fill the log, and with it the disk.
static FAILURES_LOGGED: std::sync::LazyLock<crate::limits::SharedThrottle> =
    std::sync::LazyLock::new(|| crate::limits::SharedThrottle::with_burst(10));

/// The error reply of a failed export call.
fn failed(op: Op, info: &ReqInfo, e: ExportError) -> Reply {
    if let Some(more) = FAILURES_LOGGED.event() {
        warn!(cookie = info.cookie, command = cmd_name(info.kind), error = %e,
            more_suppressed = more, "export call failed");
    }
    let fast_zero = matches!(op, Op::WriteZeroes { flags, .. } if flags.fast_only);
    // ENOTSUP is reserved for FAST_ZERO (docs/NBD.md).
    let kind = if e.kind == ErrorKind::NotSupported && !fast_zero {
        ErrorKind::Invalid
    } else {
        e.kind
    };
    error_reply(info, kind.nbd_errno(), e.message)
}

fn advisory(r: Result<(), ExportError>) -> Result<(), ExportError> {
    match r {
        Err(e) if e.kind == ErrorKind::NotSupported => Ok(()),
        other => other,
    }
}

fn write_zeroes(
    export: &Arc<dyn Export>,
    offset: u64,
    len: u64,
    flags: ZeroFlags,
) -> Result<(), ExportError> {
    match export.write_zeroes(offset, len, flags) {
        Err(e) if e.kind == ErrorKind::NotSupported && !flags.fast_only => {
            let zeroes = vec![0u8; len.min(ZERO_FILL_CHUNK_BYTES) as usize];
            let mut done = 0;
            while done < len {
                let n = (len - done).min(ZERO_FILL_CHUNK_BYTES);
                export.write(offset + done, &zeroes[..n as usize], false)?;
                done += n;
            }
            if flags.fua {
                export.flush()?;
            }
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An export's error reply waits for its client charged the request's
    /// data plus `REQUEST_OVERHEAD_BYTES`: a long message must not make it
    /// hold more.
    #[test]
    fn an_error_reply_fits_the_request_overhead() {
        let info = ReqInfo {
            cookie: 1,
            kind: cmd::BLOCK_STATUS,
            structured: true,
            min_block: 512,
        };
        let r = error_reply(&info, errno::EIO, "é".repeat(5000));
        let held = r.held_bytes();
        assert!(
            held <= crate::transmit::REQUEST_OVERHEAD_BYTES as usize,
            "{held} bytes held"
        );
        match r {
            Reply::ErrorChunk { message, .. } => {
                assert!(message.len() <= ERROR_MESSAGE_MAX_BYTES);
                assert!(message.chars().all(|c| c == 'é'), "cut at a char boundary");
                assert!(message.len() >= ERROR_MESSAGE_MAX_BYTES - 1);
            }
            _ => panic!("a structured BLOCK_STATUS error is a chunk"),
        }
    }
}
