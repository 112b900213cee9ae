//! On-disk framing: the file header and the record frames around codec payloads.
//!
//! ```text
//! header:  magic "FSIMATBL" (8) | version u16 | reserved u16 = 0 | body_len u32 | crc32c u32 | body
//! record:  magic "ATRC" (4)     | len u32     | crc32c u32       | payload (len bytes)
//! ```
//! All integers little-endian. The header crc32c covers header bytes 0..16 and
//! the body; a record's crc32c covers its bytes 0..8 (magic and len) and the
//! payload. docs/FORMATS.md has the byte-by-byte description.
//!
//! Invariants: a frame is *valid* iff its magic matches, `1 <= len <=
//! MAX_RECORD_LEN`, the whole frame lies inside the file and the crc holds.
//! [`scan`] classifies every byte after the header as a valid frame, garbage
//! followed by a valid frame (corruption in the middle), or a tail with no
//! valid frame after it (torn tail) — nothing is skipped silently.

use std::path::Path;

use crate::codec;
use crate::error::TableError;
use crate::types::TableId;

/// Magic at offset 0 of every activity-table file.
pub const FILE_MAGIC: [u8; 8] = *b"FSIMATBL";
/// File (header) format version written by this build.
pub const FILE_VERSION: u16 = 1;
/// Magic at the start of every record frame.
pub const RECORD_MAGIC: [u8; 4] = *b"ATRC";
/// Size of the fixed part of the header (before the body).
pub const HEADER_FIXED_LEN: usize = 20;
/// Size of a record frame's fixed part (before the payload).
pub const FRAME_HEADER_LEN: usize = 12;
/// Largest record payload, in bytes.
pub const MAX_RECORD_LEN: usize = 16 << 20;
/// Largest header body, in bytes.
const MAX_HEADER_BODY: usize = 4096;

/// Builds a complete header for table `id` with sequence floor `base_seq`.
pub fn encode_header(id: &TableId, base_seq: u64) -> Result<Vec<u8>, TableError> {
    let body = codec::encode_header_body(id, base_seq).map_err(TableError::Encode)?;
    let body_len = u32::try_from(body.len())
        .ok()
        .filter(|&n| n as usize <= MAX_HEADER_BODY)
        .ok_or_else(|| TableError::Encode(format!("header body of {} bytes", body.len())))?;
    let mut out = Vec::with_capacity(HEADER_FIXED_LEN + body.len());
    out.extend_from_slice(&FILE_MAGIC);
    out.extend_from_slice(&FILE_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&body_len.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &body);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// A parsed header.
#[derive(Debug)]
pub struct Header {
    /// The table the file names.
    pub id: TableId,
    /// Sequence floor: the next seq is at least this.
    pub base_seq: u64,
    /// Header length in bytes (offset of the first record).
    pub len: usize,
}

/// Parses and checks the header at the start of `bytes`.
pub fn decode_header(path: &Path, bytes: &[u8]) -> Result<Header, TableError> {
    let not_table = |reason: String| TableError::NotATable {
        path: path.to_path_buf(),
        reason,
    };
    let bad = |reason: String| TableError::BadHeader {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < FILE_MAGIC.len() || bytes[..8] != FILE_MAGIC {
        return Err(not_table(format!(
            "missing magic {:?} at offset 0",
            String::from_utf8_lossy(&FILE_MAGIC)
        )));
    }
    if bytes.len() < HEADER_FIXED_LEN {
        return Err(bad(format!("header cut short at {} bytes", bytes.len())));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    let body_len = le_u32(bytes, 12) as usize;
    let stored_crc = le_u32(bytes, 16);
    if body_len > MAX_HEADER_BODY || bytes.len() < HEADER_FIXED_LEN + body_len {
        return Err(bad(format!(
            "header body length {body_len} does not fit in the file ({} bytes)",
            bytes.len()
        )));
    }
    let body = &bytes[HEADER_FIXED_LEN..HEADER_FIXED_LEN + body_len];
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..16]), body);
    if crc != stored_crc {
        return Err(bad(format!(
            "header checksum mismatch (stored {stored_crc:#010x}, computed {crc:#010x})"
        )));
    }
    if version != FILE_VERSION {
        return Err(TableError::UnsupportedVersion {
            path: path.to_path_buf(),
            what: "file",
            version: u32::from(version),
            offset: 0,
        });
    }
    let reserved = u16::from_le_bytes([bytes[10], bytes[11]]);
    if reserved != 0 {
        return Err(bad(format!(
            "reserved field is {reserved:#06x}, expected 0"
        )));
    }
    let (id, base_seq) = codec::decode_header_body(body).map_err(bad)?;
    Ok(Header {
        id,
        base_seq,
        len: HEADER_FIXED_LEN + body_len,
    })
}

/// Appends one frame around `payload` to `out`.
pub fn push_frame(out: &mut Vec<u8>, payload: &[u8]) -> Result<(), TableError> {
    if payload.is_empty() || payload.len() > MAX_RECORD_LEN {
        return Err(TableError::EntryTooLarge {
            len: payload.len(),
            max: MAX_RECORD_LEN,
        });
    }
    let start = out.len();
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 8]), payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// One piece of the file after the header, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A valid frame at `offset` whose payload is `bytes[payload.0..payload.1]`.
    Frame {
        /// Offset of the frame.
        offset: usize,
        /// Payload byte range.
        payload: (usize, usize),
    },
    /// Bytes that are no valid frame, followed by a valid frame.
    Garbage {
        /// Offset of the first bad byte.
        offset: usize,
        /// Length up to the next valid frame.
        len: usize,
        /// Why the frame at `offset` is not valid.
        reason: String,
    },
}

/// Result of [`scan`].
#[derive(Debug)]
pub struct Scan {
    /// Frames and garbage, in order.
    pub pieces: Vec<Piece>,
    /// A tail with no valid frame after it: `(offset, reason)`; the file's
    /// intact content ends at `offset`.
    pub torn_tail: Option<(usize, String)>,
}

/// Classifies every byte of `bytes[start..]`.
pub fn scan(bytes: &[u8], start: usize) -> Scan {
    let mut pieces = Vec::new();
    let mut pos = start;
    while pos < bytes.len() {
        match check_frame(bytes, pos) {
            Ok(end) => {
                pieces.push(Piece::Frame {
                    offset: pos,
                    payload: (pos + FRAME_HEADER_LEN, end),
                });
                pos = end;
            }
            Err(reason) => match find_next_frame(bytes, pos + 1) {
                Some(next) => {
                    pieces.push(Piece::Garbage {
                        offset: pos,
                        len: next - pos,
                        reason,
                    });
                    pos = next;
                }
                None => {
                    return Scan {
                        pieces,
                        torn_tail: Some((pos, reason)),
                    }
                }
            },
        }
    }
    Scan {
        pieces,
        torn_tail: None,
    }
}

/// Checks the frame at `pos`; returns its end offset.
fn check_frame(bytes: &[u8], pos: usize) -> Result<usize, String> {
    let rest = bytes.len() - pos;
    if rest < FRAME_HEADER_LEN {
        return Err(format!(
            "incomplete frame header ({rest} of {FRAME_HEADER_LEN} bytes)"
        ));
    }
    if bytes[pos..pos + 4] != RECORD_MAGIC {
        return Err("bad record magic".into());
    }
    let len = le_u32(bytes, pos + 4) as usize;
    if len == 0 || len > MAX_RECORD_LEN {
        return Err(format!("bad record length {len}"));
    }
    let end = pos + FRAME_HEADER_LEN + len;
    if end > bytes.len() {
        return Err(format!(
            "record of {len} bytes extends {} byte(s) past the end of the file",
            end - bytes.len()
        ));
    }
    let stored = le_u32(bytes, pos + 8);
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&bytes[pos..pos + 8]),
        &bytes[pos + FRAME_HEADER_LEN..end],
    );
    if crc != stored {
        return Err(format!(
            "record checksum mismatch (stored {stored:#010x}, computed {crc:#010x})"
        ));
    }
    Ok(end)
}

/// The first offset `>= from` where a valid frame starts.
fn find_next_frame(bytes: &[u8], from: usize) -> Option<usize> {
    let last_start = bytes.len().checked_sub(FRAME_HEADER_LEN)?;
    (from..=last_start)
        .filter(|&p| bytes[p..p + 4] == RECORD_MAGIC)
        .find(|&p| check_frame(bytes, p).is_ok())
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}
