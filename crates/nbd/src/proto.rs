//! Wire constants and the pure codec of the NBD protocol (fixed newstyle).
//!
//! Everything here is synchronous and does no I/O: parsers take byte slices,
//! encoders append to a [`BytesMut`]. All integers are big-endian.
//! Source: NetworkBlockDevice/nbd `doc/proto.md`; the checklist item by item
//! is in docs/NBD.md ("Checklist, item by item").
//!
//! Invariants:
//! - An encoder never writes a structured chunk whose length field disagrees
//!   with the payload that follows it.
//! - Parsers never index past the slice they were given; short or trailing
//!   input is an error, never a panic.

use bytes::{BufMut, BytesMut};

/// `NBDMAGIC`, first thing the server sends.
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`, second server magic and the prefix of every option request.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of every option reply.
pub const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of a (compact) transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Magic of a structured reply chunk.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Handshake flag: fixed newstyle.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// Handshake flag: no 124 zero bytes after `EXPORT_NAME`.
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flag: fixed newstyle.
pub const CLIENT_FIXED_NEWSTYLE: u32 = 1 << 0;
/// Client flag: no zeroes.
pub const CLIENT_NO_ZEROES: u32 = 1 << 1;

/// Option numbers.
pub mod opt {
    /// Choose an export; the reply has no option-reply header.
    pub const EXPORT_NAME: u32 = 1;
    /// End negotiation.
    pub const ABORT: u32 = 2;
    /// List exports.
    pub const LIST: u32 = 3;
    /// Start TLS (supported when the server has a `TlsConfig`).
    pub const STARTTLS: u32 = 5;
    /// Query an export.
    pub const INFO: u32 = 6;
    /// Query and choose an export.
    pub const GO: u32 = 7;
    /// Enable structured replies.
    pub const STRUCTURED_REPLY: u32 = 8;
    /// List metadata contexts.
    pub const LIST_META_CONTEXT: u32 = 9;
    /// Select metadata contexts.
    pub const SET_META_CONTEXT: u32 = 10;
    /// Extended headers (answered `ERR_UNSUP`).
    pub const EXTENDED_HEADERS: u32 = 11;
}

/// Option reply types.
pub mod rep {
    /// Final success reply.
    pub const ACK: u32 = 1;
    /// One export of a `LIST`.
    pub const SERVER: u32 = 2;
    /// One information item of `INFO`/`GO`.
    pub const INFO: u32 = 3;
    /// One metadata context.
    pub const META_CONTEXT: u32 = 4;
    const ERR: u32 = 1 << 31;
    /// Option not supported.
    pub const ERR_UNSUP: u32 = ERR + 1;
    /// Forbidden by server policy.
    pub const ERR_POLICY: u32 = ERR + 2;
    /// Malformed option.
    pub const ERR_INVALID: u32 = ERR + 3;
    /// TLS required: an option other than STARTTLS/ABORT in the clear under `require`.
    pub const ERR_TLS_REQD: u32 = ERR + 5;
    /// Unknown export.
    pub const ERR_UNKNOWN: u32 = ERR + 6;
    /// Server shutting down.
    pub const ERR_SHUTDOWN: u32 = ERR + 7;
    /// Request or reply too large.
    pub const ERR_TOO_BIG: u32 = ERR + 9;
}

/// `NBD_INFO_*` types inside an `INFO` option reply.
pub mod info {
    /// Size and transmission flags (mandatory).
    pub const EXPORT: u16 = 0;
    /// Canonical export name.
    pub const NAME: u16 = 1;
    /// Description.
    pub const DESCRIPTION: u16 = 2;
    /// Block size constraints.
    pub const BLOCK_SIZE: u16 = 3;
}

/// Transmission flags (u16).
pub mod tflag {
    /// Always set.
    pub const HAS_FLAGS: u16 = 1 << 0;
    /// Export is read-only.
    pub const READ_ONLY: u16 = 1 << 1;
    /// FLUSH supported.
    pub const SEND_FLUSH: u16 = 1 << 2;
    /// FUA supported.
    pub const SEND_FUA: u16 = 1 << 3;
    /// TRIM supported.
    pub const SEND_TRIM: u16 = 1 << 5;
    /// WRITE_ZEROES supported.
    pub const SEND_WRITE_ZEROES: u16 = 1 << 6;
    /// DF flag supported (only with structured replies).
    pub const SEND_DF: u16 = 1 << 7;
    /// Flush on one connection covers all connections.
    pub const CAN_MULTI_CONN: u16 = 1 << 8;
    /// CACHE supported.
    pub const SEND_CACHE: u16 = 1 << 10;
    /// FAST_ZERO supported.
    pub const SEND_FAST_ZERO: u16 = 1 << 11;
}

/// Command types.
pub mod cmd {
    /// Read.
    pub const READ: u16 = 0;
    /// Write (carries a payload).
    pub const WRITE: u16 = 1;
    /// Disconnect.
    pub const DISC: u16 = 2;
    /// Flush.
    pub const FLUSH: u16 = 3;
    /// Trim.
    pub const TRIM: u16 = 4;
    /// Cache (advisory).
    pub const CACHE: u16 = 5;
    /// Write zeroes.
    pub const WRITE_ZEROES: u16 = 6;
    /// Block status.
    pub const BLOCK_STATUS: u16 = 7;
}

/// Command flags (u16).
pub mod cflag {
    /// Force unit access.
    pub const FUA: u16 = 1 << 0;
    /// WRITE_ZEROES: the range must stay allocated.
    pub const NO_HOLE: u16 = 1 << 1;
    /// READ: don't fragment (one content chunk).
    pub const DF: u16 = 1 << 2;
    /// BLOCK_STATUS: one descriptor only.
    pub const REQ_ONE: u16 = 1 << 3;
    /// WRITE_ZEROES: fail with ENOTSUP unless fast.
    pub const FAST_ZERO: u16 = 1 << 4;
}

/// Structured reply chunk types.
pub mod chunk {
    /// Empty final chunk.
    pub const NONE: u16 = 0;
    /// Data at an offset.
    pub const OFFSET_DATA: u16 = 1;
    /// Zeroes at an offset.
    pub const OFFSET_HOLE: u16 = 2;
    /// Block status descriptors of one context.
    pub const BLOCK_STATUS: u16 = 5;
    /// Error with a message.
    pub const ERROR: u16 = 0x8001;
    /// Chunk flag: last chunk of the reply.
    pub const FLAG_DONE: u16 = 1;
}

/// NBD errno values allowed on the wire (nbd.md 5.6).
pub mod errno {
    /// Operation not permitted (read-only).
    pub const EPERM: u32 = 1;
    /// I/O error.
    pub const EIO: u32 = 5;
    /// Invalid argument.
    pub const EINVAL: u32 = 22;
    /// No space (write past the end).
    pub const ENOSPC: u32 = 28;
    /// Value too large (DF read too big).
    pub const EOVERFLOW: u32 = 75;
    /// Not supported (FAST_ZERO only).
    pub const ENOTSUP: u32 = 95;
    /// Server shutting down.
    pub const ESHUTDOWN: u32 = 108;
}

/// Name of the only metadata context this server offers.
pub const BASE_ALLOCATION: &str = "base:allocation";
/// Longest export name or context string accepted (proto.md: 4096).
pub const MAX_STRING_BYTES: usize = 4096;
/// Size of a compact transmission request header.
pub const REQUEST_HEADER_BYTES: usize = 28;
/// Length of the zero padding after `EXPORT_NAME` without NO_ZEROES.
pub const EXPORT_NAME_PADDING_BYTES: usize = 124;

/// Header of one transmission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    /// Command flags (`cflag`).
    pub flags: u16,
    /// Command type (`cmd`).
    pub kind: u16,
    /// Opaque cookie, echoed in the reply.
    pub cookie: u64,
    /// Byte offset.
    pub offset: u64,
    /// Byte length (payload length for WRITE).
    pub length: u32,
}

/// Parse a 28-byte request header; `Err` carries the bad magic.
pub fn parse_request(buf: &[u8; REQUEST_HEADER_BYTES]) -> Result<RequestHeader, u32> {
    let magic = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if magic != REQUEST_MAGIC {
        return Err(magic);
    }
    Ok(RequestHeader {
        flags: u16::from_be_bytes([buf[4], buf[5]]),
        kind: u16::from_be_bytes([buf[6], buf[7]]),
        cookie: be_u64(&buf[8..16]),
        offset: be_u64(&buf[16..24]),
        length: u32::from_be_bytes([buf[24], buf[25], buf[26], buf[27]]),
    })
}

/// Encode a request header (used by tests and tools).
pub fn encode_request(out: &mut BytesMut, h: &RequestHeader) {
    out.put_u32(REQUEST_MAGIC);
    out.put_u16(h.flags);
    out.put_u16(h.kind);
    out.put_u64(h.cookie);
    out.put_u64(h.offset);
    out.put_u32(h.length);
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Append the server greeting: magics and handshake flags.
pub fn encode_greeting(out: &mut BytesMut) {
    out.put_u64(NBD_MAGIC);
    out.put_u64(IHAVEOPT);
    out.put_u16(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
}

/// Append an option reply header plus its payload.
pub fn encode_opt_reply(out: &mut BytesMut, option: u32, reply: u32, data: &[u8]) {
    out.put_u64(OPT_REPLY_MAGIC);
    out.put_u32(option);
    out.put_u32(reply);
    out.put_u32(data.len() as u32);
    out.put_slice(data);
}

/// Append a simple reply header (data, if any, follows separately).
pub fn encode_simple_reply(out: &mut BytesMut, cookie: u64, error: u32) {
    out.put_u32(SIMPLE_REPLY_MAGIC);
    out.put_u32(error);
    out.put_u64(cookie);
}

/// Append a structured chunk header announcing `length` payload bytes.
pub fn encode_chunk_header(out: &mut BytesMut, flags: u16, kind: u16, cookie: u64, length: u32) {
    out.put_u32(STRUCTURED_REPLY_MAGIC);
    out.put_u16(flags);
    out.put_u16(kind);
    out.put_u64(cookie);
    out.put_u32(length);
}

/// Append an `OFFSET_HOLE` chunk.
pub fn encode_hole_chunk(out: &mut BytesMut, done: bool, cookie: u64, offset: u64, len: u32) {
    let flags = if done { chunk::FLAG_DONE } else { 0 };
    encode_chunk_header(out, flags, chunk::OFFSET_HOLE, cookie, 12);
    out.put_u64(offset);
    out.put_u32(len);
}

/// Append a final `ERROR` chunk; the message is cut to fit a u16 length.
pub fn encode_error_chunk(out: &mut BytesMut, cookie: u64, error: u32, message: &str) {
    let msg = truncate_utf8(message, 1024);
    encode_chunk_header(
        out,
        chunk::FLAG_DONE,
        chunk::ERROR,
        cookie,
        6 + msg.len() as u32,
    );
    out.put_u32(error);
    out.put_u16(msg.len() as u16);
    out.put_slice(msg.as_bytes());
}

/// Append a final `BLOCK_STATUS` chunk with (length, flags) descriptors.
pub fn encode_block_status_chunk(
    out: &mut BytesMut,
    cookie: u64,
    context_id: u32,
    descriptors: &[(u32, u32)],
) {
    let len = 4 + 8 * descriptors.len() as u32;
    encode_chunk_header(out, chunk::FLAG_DONE, chunk::BLOCK_STATUS, cookie, len);
    out.put_u32(context_id);
    for &(l, f) in descriptors {
        out.put_u32(l);
        out.put_u32(f);
    }
}

/// Append a final `NONE` chunk.
pub fn encode_none_chunk(out: &mut BytesMut, cookie: u64) {
    encode_chunk_header(out, chunk::FLAG_DONE, chunk::NONE, cookie, 0);
}

/// Longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A cursor over an option payload; every read is bounds-checked.
pub struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// Start reading `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data }
    }
    /// Take `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.data.len() < n {
            return None;
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Some(head)
    }
    /// Read a u16.
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    /// Read a u32.
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// Read a u32-length-prefixed string of at most [`MAX_STRING_BYTES`].
    pub fn string(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > MAX_STRING_BYTES {
            return None;
        }
        self.take(n)
    }
    /// True when every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Payload of `INFO`/`GO`: export name and requested info types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    /// Export name as sent.
    pub name: Vec<u8>,
    /// Requested `NBD_INFO_*` types.
    pub requests: Vec<u16>,
}

/// Parse the payload of `INFO`/`GO`; `None` when malformed.
pub fn parse_info_request(data: &[u8]) -> Option<InfoRequest> {
    let mut c = Cursor::new(data);
    let name = c.string()?.to_vec();
    let n = c.u16()? as usize;
    let mut requests = Vec::with_capacity(n.min(16));
    for _ in 0..n {
        requests.push(c.u16()?);
    }
    c.is_empty().then_some(InfoRequest { name, requests })
}

/// Payload of `LIST_META_CONTEXT`/`SET_META_CONTEXT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRequest {
    /// Export name as sent.
    pub name: Vec<u8>,
    /// Context queries.
    pub queries: Vec<Vec<u8>>,
}

/// Parse the payload of the meta-context options; `None` when malformed.
pub fn parse_meta_request(data: &[u8]) -> Option<MetaRequest> {
    let mut c = Cursor::new(data);
    let name = c.string()?.to_vec();
    let n = c.u32()? as usize;
    // Each query takes at least 4 bytes: a count larger than the rest is malformed.
    if n > data.len() / 4 {
        return None;
    }
    let mut queries = Vec::with_capacity(n);
    for _ in 0..n {
        queries.push(c.string()?.to_vec());
    }
    c.is_empty().then_some(MetaRequest { name, queries })
}
