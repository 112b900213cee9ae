//! The self-identifying trailer block of a volume file.
//!
//! A volume file is `tracks * track_size` bytes of volume data (track `t` at byte
//! `t * track_size`, so a plain `pread` of the file sees the volume) followed by
//! one [`TRAILER_BYTES`] block. All integers little-endian:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `FSIMVOL\0` |
//! | 8 | 4 | format version, 1 |
//! | 12 | 4 | trailer length, 4096 |
//! | 16 | 8 | volume size in bytes |
//! | 24 | 8 | track size in bytes |
//! | 32 | 8 | tracks |
//! | 40 | 2 | volume id length, 1..=64 |
//! | 42 | 64 | volume id, UTF-8, zero padded |
//! | 106 | 2 | device model text length, 1..=64 |
//! | 108 | 64 | device model text (`3390-3`, `fb:1G:4K`), zero padded |
//! | 172 | 3920 | zero |
//! | 4092 | 4 | crc32c of bytes 0..4092 |
//!
//! The bytes read back are untrusted: [`Trailer::decode`] checks magic, checksum,
//! version, lengths and that the model text gives the recorded geometry.

use geometry::{DeviceModel, Geometry};

use crate::error::ErrorKind;

/// Size of the trailer block.
pub const TRAILER_BYTES: usize = 4096;
/// Trailer magic.
pub const MAGIC: [u8; 8] = *b"FSIMVOL\0";
/// The only trailer format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Longest volume id a volume file can hold.
pub const VOLUME_ID_BYTES_MAX: usize = 64;
const MODEL_BYTES_MAX: usize = 64;
const CRC_AT: usize = TRAILER_BYTES - 4;

/// The identity of a volume file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    /// The volume id.
    pub volume_id: String,
    /// The volume geometry.
    pub geometry: Geometry,
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

impl Trailer {
    /// Checks that `volume_id` fits a trailer (1..=64 bytes).
    pub fn check_volume_id(volume_id: &str) -> Result<(), String> {
        if volume_id.is_empty() || volume_id.len() > VOLUME_ID_BYTES_MAX {
            return Err(format!(
                "volume id `{volume_id}` must be 1..={VOLUME_ID_BYTES_MAX} bytes"
            ));
        }
        Ok(())
    }

    /// The block written after the last track. The volume id must pass
    /// [`Trailer::check_volume_id`] (callers check first; a longer id is cut).
    pub fn encode(&self) -> [u8; TRAILER_BYTES] {
        let mut b = [0u8; TRAILER_BYTES];
        let g = &self.geometry;
        put(&mut b, 0, &MAGIC);
        put(&mut b, 8, &FORMAT_VERSION.to_le_bytes());
        put(&mut b, 12, &(TRAILER_BYTES as u32).to_le_bytes());
        put(&mut b, 16, &g.size_bytes().to_le_bytes());
        put(&mut b, 24, &g.track_size_bytes().to_le_bytes());
        put(&mut b, 32, &g.tracks().to_le_bytes());
        let id = &self.volume_id.as_bytes()[..self.volume_id.len().min(VOLUME_ID_BYTES_MAX)];
        put(&mut b, 40, &(id.len() as u16).to_le_bytes());
        put(&mut b, 42, id);
        let model = g.model().to_string();
        let model = &model.as_bytes()[..model.len().min(MODEL_BYTES_MAX)];
        put(&mut b, 106, &(model.len() as u16).to_le_bytes());
        put(&mut b, 108, model);
        let crc = crc32c::crc32c(&b[..CRC_AT]);
        put(&mut b, CRC_AT, &crc.to_le_bytes());
        b
    }

    /// Validates and decodes a trailer block; the error kind says whether this is
    /// not a volume file at all ([`ErrorKind::WrongFile`]) or a damaged or
    /// unknown one ([`ErrorKind::BadHeader`]).
    pub fn decode(b: &[u8]) -> Result<Trailer, (ErrorKind, String)> {
        let bad = |what: String| Err((ErrorKind::BadHeader, what));
        if b.len() != TRAILER_BYTES || b[..8] != MAGIC {
            return Err((ErrorKind::WrongFile, "no volume trailer magic".to_string()));
        }
        let crc = u32_at(b, CRC_AT);
        let computed = crc32c::crc32c(&b[..CRC_AT]);
        if crc != computed {
            return bad(format!("trailer crc32c {crc:08x}, computed {computed:08x}"));
        }
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION {
            return bad(format!(
                "trailer format version {version}, this build reads {FORMAT_VERSION}"
            ));
        }
        if u32_at(b, 12) as usize != TRAILER_BYTES {
            return bad(format!("trailer length {}", u32_at(b, 12)));
        }
        let id_len = u16_at(b, 40) as usize;
        let model_len = u16_at(b, 106) as usize;
        if id_len == 0
            || id_len > VOLUME_ID_BYTES_MAX
            || model_len == 0
            || model_len > MODEL_BYTES_MAX
        {
            return bad(format!(
                "trailer id length {id_len} or model length {model_len} out of range"
            ));
        }
        let volume_id = match std::str::from_utf8(&b[42..42 + id_len]) {
            Ok(s) => s.to_string(),
            Err(_) => return bad("volume id is not UTF-8".to_string()),
        };
        let model_text = match std::str::from_utf8(&b[108..108 + model_len]) {
            Ok(s) => s,
            Err(_) => return bad("device model is not UTF-8".to_string()),
        };
        let geometry = match model_text.parse::<DeviceModel>().and_then(Geometry::new) {
            Ok(g) => g,
            Err(e) => return bad(format!("device model `{model_text}`: {e}")),
        };
        let (size, track, tracks) = (u64_at(b, 16), u64_at(b, 24), u64_at(b, 32));
        if size != geometry.size_bytes()
            || track != geometry.track_size_bytes()
            || tracks != geometry.tracks()
        {
            return bad(format!(
                "recorded size {size}/track {track}/tracks {tracks} disagree with model {model_text}"
            ));
        }
        Ok(Trailer {
            volume_id,
            geometry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Trailer {
        Trailer {
            volume_id: "CKD00".into(),
            geometry: "3390-A:70000".parse().expect("valid"),
        }
    }

    #[test]
    fn round_trip() {
        assert_eq!(Trailer::decode(&sample().encode()), Ok(sample()));
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let good = sample().encode();
        for i in (0..TRAILER_BYTES).step_by(7) {
            let mut b = good;
            b[i] ^= 0x40;
            let err = Trailer::decode(&b).expect_err("corruption detected");
            let expect = if i < 8 {
                ErrorKind::WrongFile
            } else {
                ErrorKind::BadHeader
            };
            assert_eq!(err.0, expect, "byte {i}");
        }
    }

    #[test]
    fn zeros_are_not_a_volume_file() {
        assert_eq!(
            Trailer::decode(&[0u8; TRAILER_BYTES]).map_err(|e| e.0),
            Err(ErrorKind::WrongFile)
        );
    }
}
