//! The one place that turns persisted structures into bytes and back.
//!
//! Every blob is `[magic: 4][version: u16 LE][reserved: u16][crc32c: u32 LE][bincode payload]`,
//! with the crc over the payload. bincode is pinned (=2.0.1, fixed-int
//! little-endian); swapping the codec means changing this file only.
//! Decoded bytes are untrusted: callers validate every field after `decode`.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{err, ErrorKind, Result};

const HEADER_BYTES: usize = 12;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian()
}

/// Encodes `value` behind `magic` and `version`, with a crc32c of the payload.
pub fn encode<T: Serialize>(magic: [u8; 4], version: u16, value: &T) -> Result<Vec<u8>> {
    let payload = bincode::serde::encode_to_vec(value, config()).map_err(|e| {
        err(
            ErrorKind::InvalidRequest,
            format!("encode {}: {e}", String::from_utf8_lossy(&magic)),
        )
    })?;
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The version field of a blob that carries `magic`, if it is long enough to
/// have one (for readers that accept older versions; [`decode`] checks the rest).
pub fn version_of(magic: [u8; 4], bytes: &[u8]) -> Option<u16> {
    (bytes.len() >= HEADER_BYTES && bytes[0..4] == magic)
        .then(|| u16::from_le_bytes([bytes[4], bytes[5]]))
}

/// Decodes a blob written by [`encode`], checking magic, version and crc.
pub fn decode<T: DeserializeOwned>(magic: [u8; 4], version: u16, bytes: &[u8]) -> Result<T> {
    let what = String::from_utf8_lossy(&magic).into_owned();
    let corrupt = |m: String| err(ErrorKind::Corrupt, format!("{what} blob: {m}"));
    if bytes.len() < HEADER_BYTES {
        return Err(corrupt(format!(
            "{} bytes, shorter than its header",
            bytes.len()
        )));
    }
    if bytes[0..4] != magic {
        return Err(corrupt(format!(
            "magic {:02x?} is not {what}",
            &bytes[0..4]
        )));
    }
    let v = u16::from_le_bytes([bytes[4], bytes[5]]);
    if v != version {
        return Err(corrupt(format!(
            "format version {v}, this build reads {version}"
        )));
    }
    let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let payload = &bytes[HEADER_BYTES..];
    if crc32c::crc32c(payload) != crc {
        return Err(corrupt("payload checksum mismatch".into()));
    }
    let (value, used) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| corrupt(format!("decode: {e}")))?;
    if used != payload.len() {
        return Err(corrupt(format!("{} trailing bytes", payload.len() - used)));
    }
    Ok(value)
}
