//! Reply encoding and the one writer per connection.
//!
//! Request tasks finish in any order and send an [`Outgoing`] on a channel;
//! the writer drains everything ready, encodes it into one batch (headers
//! and small payloads copied into one buffer, large payloads referenced
//! without copying) and writes the batch with vectored writes.
//!
//! Invariants:
//! - Only the writer writes to the socket during transmission, so the
//!   chunks of one reply are never interleaved with another reply's bytes.
//! - A request's in-flight permit is released only after its reply has been
//!   written, so unread replies count against the connection's budget.

use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::OwnedSemaphorePermit;
use tracing::debug;

use crate::proto::{self, chunk};

/// Payloads up to this size are copied into the batch buffer.
const COPY_MAX_BYTES: usize = 16 * 1024;
/// A batch is written once it holds this many bytes.
const BATCH_MAX_BYTES: usize = 4 << 20;
/// READ replies longer than this are split into data/hole chunks at this
/// granularity when DF is not set.
const HOLE_SCAN_BYTES: usize = 64 * 1024;

/// One reply to send.
pub(crate) enum Reply {
    /// Simple reply: errno (0 = success), no data.
    Simple { cookie: u64, errno: u32 },
    /// Error as a structured `ERROR` chunk.
    ErrorChunk {
        cookie: u64,
        errno: u32,
        message: String,
    },
    /// READ success.
    Read {
        cookie: u64,
        offset: u64,
        data: Bytes,
        structured: bool,
        df: bool,
    },
    /// A final `BLOCK_STATUS` chunk.
    BlockStatus {
        cookie: u64,
        context_id: u32,
        descriptors: Vec<(u32, u32)>,
    },
}

/// A reply plus the in-flight budget it holds until written.
pub(crate) struct Outgoing {
    pub reply: Reply,
    pub permit: Option<OwnedSemaphorePermit>,
}

/// A batch of bytes to write: copied small pieces and shared large ones.
#[derive(Default)]
struct Batch {
    segments: Vec<Bytes>,
    buf: BytesMut,
    len: usize,
}

impl Batch {
    fn seal(&mut self) {
        if !self.buf.is_empty() {
            self.segments.push(self.buf.split().freeze());
        }
    }
    fn push_large(&mut self, data: Bytes) {
        self.seal();
        self.len += data.len();
        self.segments.push(data);
    }
    fn push_data(&mut self, data: &Bytes) {
        if data.len() <= COPY_MAX_BYTES {
            self.buf.extend_from_slice(data);
            self.len += data.len();
        } else {
            self.push_large(data.clone());
        }
    }
    fn header(&mut self, f: impl FnOnce(&mut BytesMut)) {
        let before = self.buf.len();
        f(&mut self.buf);
        self.len += self.buf.len() - before;
    }
}

/// Append the bytes of one reply to the batch.
fn encode(b: &mut Batch, reply: &Reply) {
    match reply {
        Reply::Simple { cookie, errno } => {
            b.header(|o| proto::encode_simple_reply(o, *cookie, *errno));
        }
        Reply::ErrorChunk {
            cookie,
            errno,
            message,
        } => b.header(|o| proto::encode_error_chunk(o, *cookie, *errno, message)),
        Reply::BlockStatus {
            cookie,
            context_id,
            descriptors,
        } => b.header(|o| proto::encode_block_status_chunk(o, *cookie, *context_id, descriptors)),
        Reply::Read {
            cookie,
            offset,
            data,
            structured,
            df,
        } => {
            if !structured {
                b.header(|o| proto::encode_simple_reply(o, *cookie, 0));
                b.push_data(data);
            } else if data.is_empty() {
                b.header(|o| proto::encode_none_chunk(o, *cookie));
            } else {
                encode_read_chunks(b, *cookie, *offset, data, *df);
            }
        }
    }
}

/// Structured READ: runs of all-zero 64 KiB pieces become `OFFSET_HOLE`
/// chunks (one chunk only with DF), the rest `OFFSET_DATA`.
fn encode_read_chunks(b: &mut Batch, cookie: u64, offset: u64, data: &Bytes, df: bool) {
    let piece = if df { data.len() } else { HOLE_SCAN_BYTES };
    let mut runs: Vec<(usize, usize, bool)> = Vec::new(); // (start, end, zero)
    let mut start = 0;
    while start < data.len() {
        let end = (start + piece).min(data.len());
        let zero = is_zero(&data[start..end]);
        match runs.last_mut() {
            Some(last) if last.2 == zero => last.1 = end,
            _ => runs.push((start, end, zero)),
        }
        start = end;
    }
    let n = runs.len();
    for (i, (s, e, zero)) in runs.into_iter().enumerate() {
        let done = i + 1 == n;
        let off = offset + s as u64;
        if zero {
            b.header(|o| proto::encode_hole_chunk(o, done, cookie, off, (e - s) as u32));
        } else {
            let flags = if done { chunk::FLAG_DONE } else { 0 };
            b.header(|o| {
                proto::encode_chunk_header(
                    o,
                    flags,
                    chunk::OFFSET_DATA,
                    cookie,
                    8 + (e - s) as u32,
                );
                bytes::BufMut::put_u64(o, off);
            });
            b.push_data(&data.slice(s..e));
        }
    }
}

fn is_zero(b: &[u8]) -> bool {
    // OR-fold fixed 64-byte chunks: the compiler vectorises this loop.
    let mut chunks = b.chunks_exact(64);
    let body = chunks
        .by_ref()
        .all(|c| c.iter().fold(0u8, |acc, &x| acc | x) == 0);
    body && chunks.remainder().iter().all(|&x| x == 0)
}

/// Write every reply received until all senders are gone or the socket fails.
pub(crate) async fn run<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: UnboundedReceiver<Outgoing>,
) -> std::io::Result<()> {
    let mut batch = Batch::default();
    let mut permits = Vec::new();
    while let Some(first) = rx.recv().await {
        encode(&mut batch, &first.reply);
        permits.extend(first.permit);
        while batch.len < BATCH_MAX_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    encode(&mut batch, &next.reply);
                    permits.extend(next.permit);
                }
                Err(_) => break,
            }
        }
        batch.seal();
        write_segments(&mut w, &mut batch.segments).await?;
        // A no-op on sockets; needed for buffered streams such as stdout.
        w.flush().await?;
        batch.len = 0;
        permits.clear();
    }
    w.flush().await?;
    debug!("writer finished");
    Ok(())
}

async fn write_segments<W: AsyncWrite + Unpin>(
    w: &mut W,
    segments: &mut Vec<Bytes>,
) -> std::io::Result<()> {
    let mut first = 0;
    while first < segments.len() {
        let n = {
            let slices: Vec<IoSlice<'_>> = segments[first..]
                .iter()
                .take(64)
                .map(|s| IoSlice::new(s))
                .collect();
            w.write_vectored(&slices).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut left = n;
        while left > 0 {
            let seg = &mut segments[first];
            if seg.len() <= left {
                left -= seg.len();
                first += 1;
            } else {
                seg.advance(left);
                left = 0;
            }
        }
    }
    segments.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(reply: Reply) -> Vec<u8> {
        let mut b = Batch::default();
        encode(&mut b, &reply);
        b.seal();
        b.segments.iter().flat_map(|s| s.to_vec()).collect()
    }

    #[test]
    fn simple_reply_bytes() {
        let v = encoded(Reply::Simple {
            cookie: 7,
            errno: 22,
        });
        assert_eq!(&v[..4], &proto::SIMPLE_REPLY_MAGIC.to_be_bytes());
        assert_eq!(&v[4..8], &22u32.to_be_bytes());
        assert_eq!(&v[8..16], &7u64.to_be_bytes());
        assert_eq!(v.len(), 16);
    }

    #[test]
    fn structured_read_splits_zero_runs_into_holes() {
        let mut data = vec![0u8; 3 * HOLE_SCAN_BYTES];
        data[HOLE_SCAN_BYTES + 5] = 1;
        let v = encoded(Reply::Read {
            cookie: 1,
            offset: 1 << 20,
            data: Bytes::from(data),
            structured: true,
            df: false,
        });
        // hole chunk (20+12), data chunk (20+8+64K), hole chunk (20+12)
        assert_eq!(v.len(), 32 + 28 + HOLE_SCAN_BYTES + 32);
        assert_eq!(&v[6..8], &chunk::OFFSET_HOLE.to_be_bytes());
        assert_eq!(&v[4..6], &0u16.to_be_bytes(), "first chunk not DONE");
        let last = &v[v.len() - 32..];
        assert_eq!(&last[4..6], &chunk::FLAG_DONE.to_be_bytes());
        assert_eq!(
            &last[20..28],
            &((1u64 << 20) + 2 * HOLE_SCAN_BYTES as u64).to_be_bytes()
        );
    }

    #[test]
    fn df_read_is_one_chunk() {
        let mut data = vec![0u8; 2 * HOLE_SCAN_BYTES];
        data[0] = 9;
        let v = encoded(Reply::Read {
            cookie: 1,
            offset: 0,
            data: Bytes::from(data),
            structured: true,
            df: true,
        });
        assert_eq!(v.len(), 28 + 2 * HOLE_SCAN_BYTES);
        assert_eq!(&v[4..6], &chunk::FLAG_DONE.to_be_bytes());
    }

    #[test]
    fn error_chunk_message_fits_length() {
        let v = encoded(Reply::ErrorChunk {
            cookie: 3,
            errno: 5,
            message: "x".repeat(5000),
        });
        let len = u32::from_be_bytes(v[16..20].try_into().unwrap()) as usize;
        let msg_len = u16::from_be_bytes(v[24..26].try_into().unwrap()) as usize;
        assert_eq!(v.len(), 20 + len);
        assert!(msg_len <= len - 6);
    }
}
