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
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::OwnedSemaphorePermit;
use tracing::debug;

use crate::bufpool::BufPool;
use crate::proto::{self, chunk};

/// Payloads up to this size are copied into the batch buffer.
const COPY_MAX_BYTES: usize = 16 * 1024;
/// A batch is written once it holds this many bytes.
const BATCH_MAX_BYTES: usize = 4 << 20;
/// READ replies longer than this are split into data/hole chunks at this
/// granularity when DF is not set.
const HOLE_SCAN_BYTES: usize = 64 * 1024;
/// Most slices per `writev`.
const IOV_MAX_SLICES: usize = 64;

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
    /// READ success; `data` goes back to the pool once written.
    Read {
        cookie: u64,
        offset: u64,
        data: Vec<u8>,
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

impl Reply {
    /// Bytes this reply holds until it is written: what it is charged to the
    /// connection's in-flight budget. That is its real memory, not its
    /// size on the wire: the queued [`Outgoing`] itself (a 16-byte simple
    /// reply still takes a whole channel slot), every heap buffer it owns by
    /// capacity, and an allocator's overhead per buffer. The bytes it is
    /// encoded into are fewer than these, so the charge also covers it once
    /// the writer has batched it.
    pub(crate) fn held_bytes(&self) -> usize {
        /// Allocator bookkeeping per heap buffer (glibc: 8 to 16 bytes).
        const ALLOC_OVERHEAD: usize = 16;
        let heap = |cap: usize| if cap == 0 { 0 } else { cap + ALLOC_OVERHEAD };
        let slot = std::mem::size_of::<Outgoing>();
        slot + match self {
            Reply::Simple { .. } => 0,
            Reply::ErrorChunk { message, .. } => heap(message.capacity()),
            Reply::Read { data, .. } => heap(data.capacity()),
            Reply::BlockStatus { descriptors, .. } => {
                heap(descriptors.capacity() * std::mem::size_of::<(u32, u32)>())
            }
        }
    }
}

/// A request's share of the in-flight budgets, given back when dropped
/// (after its reply is written): its connection's, and, for what the
/// connection holds above its floor, the server's
/// (`ServerConfig::max_inflight_bytes_total`).
pub(crate) struct Charge {
    pub(crate) _conn: OwnedSemaphorePermit,
    pub(crate) _shared: Option<OwnedSemaphorePermit>,
}

/// A reply plus the in-flight budget it holds until written.
pub(crate) struct Outgoing {
    pub reply: Reply,
    pub permit: Option<Charge>,
}

/// One piece of a batch: copied bytes, or a range of an owned READ buffer.
enum Seg {
    Copied(Bytes),
    Owned {
        buf: usize,
        start: usize,
        end: usize,
    },
}

/// A batch of bytes to write: headers and small payloads copied into one
/// buffer, large READ payloads referenced in place.
#[derive(Default)]
struct Batch {
    segments: Vec<Seg>,
    owned: Vec<Vec<u8>>,
    buf: BytesMut,
    len: usize,
}

impl Batch {
    fn seal(&mut self) {
        if !self.buf.is_empty() {
            self.segments.push(Seg::Copied(self.buf.split().freeze()));
        }
    }
    fn header(&mut self, f: impl FnOnce(&mut BytesMut)) {
        let before = self.buf.len();
        f(&mut self.buf);
        self.len += self.buf.len() - before;
    }
    /// Add `data[start..end]` of an owned buffer (index from `own`).
    fn push_data(&mut self, buf: usize, start: usize, end: usize) {
        self.len += end - start;
        if end - start <= COPY_MAX_BYTES {
            self.buf.extend_from_slice(&self.owned[buf][start..end]);
        } else {
            self.seal();
            self.segments.push(Seg::Owned { buf, start, end });
        }
    }
    fn own(&mut self, data: Vec<u8>) -> usize {
        self.owned.push(data);
        self.owned.len() - 1
    }
    fn slice<'a>(&'a self, seg: &'a Seg) -> &'a [u8] {
        match seg {
            Seg::Copied(b) => b,
            Seg::Owned { buf, start, end } => &self.owned[*buf][*start..*end],
        }
    }
}

/// Append the bytes of one reply to the batch (taking its READ buffer).
fn encode(b: &mut Batch, reply: Reply) {
    match reply {
        Reply::Simple { cookie, errno } => {
            b.header(|o| proto::encode_simple_reply(o, cookie, errno));
        }
        Reply::ErrorChunk {
            cookie,
            errno,
            message,
        } => b.header(|o| proto::encode_error_chunk(o, cookie, errno, &message)),
        Reply::BlockStatus {
            cookie,
            context_id,
            descriptors,
        } => b.header(|o| proto::encode_block_status_chunk(o, cookie, context_id, &descriptors)),
        Reply::Read {
            cookie,
            offset,
            data,
            structured,
            df,
        } => {
            let len = data.len();
            if !structured {
                b.header(|o| proto::encode_simple_reply(o, cookie, 0));
                let i = b.own(data);
                b.push_data(i, 0, len);
            } else if len == 0 {
                b.header(|o| proto::encode_none_chunk(o, cookie));
                b.own(data);
            } else {
                encode_read_chunks(b, cookie, offset, data, df);
            }
        }
    }
}

/// Structured READ: runs of all-zero 64 KiB pieces become `OFFSET_HOLE`
/// chunks (one chunk only with DF), the rest `OFFSET_DATA`.
fn encode_read_chunks(b: &mut Batch, cookie: u64, offset: u64, data: Vec<u8>, df: bool) {
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
    let i = b.own(data);
    let n = runs.len();
    for (k, (s, e, zero)) in runs.into_iter().enumerate() {
        let done = k + 1 == n;
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
            b.push_data(i, s, e);
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

/// Write every reply received until all senders are gone or the socket
/// fails. READ buffers go back to `pool` once written.
pub(crate) async fn run<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: UnboundedReceiver<Outgoing>,
    pool: Arc<BufPool>,
) -> std::io::Result<()> {
    let mut batch = Batch::default();
    let mut permits = Vec::new();
    while let Some(first) = rx.recv().await {
        encode(&mut batch, first.reply);
        permits.extend(first.permit);
        while batch.len < BATCH_MAX_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    encode(&mut batch, next.reply);
                    permits.extend(next.permit);
                }
                Err(_) => break,
            }
        }
        batch.seal();
        write_batch(&mut w, &mut batch).await?;
        // A no-op on sockets; needed for buffered streams such as stdout.
        w.flush().await?;
        for b in batch.owned.drain(..) {
            pool.give(b);
        }
        batch.len = 0;
        permits.clear();
    }
    w.flush().await?;
    debug!("writer finished");
    Ok(())
}

async fn write_batch<W: AsyncWrite + Unpin>(w: &mut W, batch: &mut Batch) -> std::io::Result<()> {
    let mut first = 0;
    // Bytes of segments[first] already written.
    let mut skip = 0;
    while first < batch.segments.len() {
        let n = {
            let slices: Vec<IoSlice<'_>> = batch.segments[first..]
                .iter()
                .take(IOV_MAX_SLICES)
                .enumerate()
                .map(|(k, seg)| {
                    let s = batch.slice(seg);
                    IoSlice::new(if k == 0 { &s[skip..] } else { s })
                })
                .collect();
            w.write_vectored(&slices).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut left = n;
        while left > 0 && first < batch.segments.len() {
            let seg_left = batch.slice(&batch.segments[first]).len() - skip;
            if seg_left <= left {
                left -= seg_left;
                first += 1;
                skip = 0;
            } else {
                skip += left;
                left = 0;
            }
        }
    }
    batch.segments.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(reply: Reply) -> Vec<u8> {
        let mut b = Batch::default();
        encode(&mut b, reply);
        b.seal();
        b.segments
            .iter()
            .flat_map(|s| b.slice(s).to_vec())
            .collect()
    }

    /// Every reply is charged at least the memory it takes while queued,
    /// and at least the bytes it is encoded into.
    #[test]
    fn replies_are_charged_their_real_size() {
        let slot = std::mem::size_of::<Outgoing>();
        let message = String::with_capacity(100) + "READ beyond the end";
        let replies = vec![
            Reply::Simple {
                cookie: 1,
                errno: 22,
            },
            Reply::ErrorChunk {
                cookie: 1,
                errno: 22,
                message,
            },
            Reply::Read {
                cookie: 1,
                offset: 0,
                data: Vec::with_capacity(8192),
                structured: true,
                df: false,
            },
            Reply::BlockStatus {
                cookie: 1,
                context_id: 1,
                descriptors: Vec::with_capacity(1000),
            },
        ];
        let heap = [0, 100, 8192, 8000];
        for (r, heap) in replies.into_iter().zip(heap) {
            let charged = r.held_bytes();
            assert!(charged >= slot + heap, "{charged} < {slot} + {heap}");
            let wire = encoded(r).len();
            assert!(charged >= wire, "{charged} < {wire} on the wire");
        }
        // A simple reply is 16 bytes on the wire but a whole queue slot in
        // memory: charging 16 (or a 32-byte header) let a flood of refused
        // requests hold several times the budget.
        assert!(slot >= 48, "Outgoing is {slot} bytes");
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
            data,
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
            data,
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
