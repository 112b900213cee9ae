//! Root slots: a fixed little-endian header naming its slot, generation,
//! subsystem and payload checksum, followed by the payload.
//!
//! Header layout (first 128 bytes of the 4 KiB header block):
//! ```text
//! 0    magic        8  b"FWSROOT1"
//! 8    version      4  1
//! 12   slot         4  0 or 1 (a header found in the other slot is misdirected)
//! 16   generation   8  > 0, +1 per checkpoint
//! 24   payload_len  8
//! 32   payload_crc  4  crc32c of the payload
//! 36   flags        4  bit 0: OPEN (the subsystem was running; clear = clean shutdown)
//! 40   id_len       1
//! 41   subsystem   64  id bytes, zero padded
//! 105  reserved    19  zero
//! 124  header_crc   4  crc32c of bytes 0..124
//! ```

use super::{MetaStore, ROOT_HEADER_BLOCK_BYTES, SLOT_BYTES};
use crate::error::{err, ErrorKind, Result};

const MAGIC: &[u8; 8] = b"FWSROOT1";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 128;
/// Largest root payload accepted (a sanity bound on an untrusted length).
const PAYLOAD_MAX_BYTES: u64 = SLOT_BYTES - ROOT_HEADER_BLOCK_BYTES;

/// Root flag: the subsystem had the directory open (not shut down cleanly).
pub const ROOT_FLAG_OPEN: u32 = 1;

/// A decoded, validated root header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootHeader {
    /// Slot the header was written for.
    pub slot: u32,
    /// Checkpoint generation.
    pub generation: u64,
    /// Payload length in bytes.
    pub payload_len: u64,
    /// crc32c of the payload.
    pub payload_crc: u32,
    /// Flags ([`ROOT_FLAG_OPEN`]).
    pub flags: u32,
    /// The subsystem that wrote it.
    pub subsystem: String,
}

impl RootHeader {
    fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.slot.to_le_bytes());
        b[16..24].copy_from_slice(&self.generation.to_le_bytes());
        b[24..32].copy_from_slice(&self.payload_len.to_le_bytes());
        b[32..36].copy_from_slice(&self.payload_crc.to_le_bytes());
        b[36..40].copy_from_slice(&self.flags.to_le_bytes());
        let id = self.subsystem.as_bytes();
        let n = id.len().min(64);
        b[40] = n as u8;
        b[41..41 + n].copy_from_slice(&id[..n]);
        let crc = crc32c::crc32c(&b[..124]);
        b[124..128].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8], slot: u32) -> std::result::Result<RootHeader, String> {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        if &b[0..8] != MAGIC {
            return Err("no root magic".into());
        }
        if crc32c::crc32c(&b[..124]) != u32_at(124) {
            return Err("header checksum mismatch (torn or damaged)".into());
        }
        if u32_at(8) != VERSION {
            return Err(format!(
                "format version {} (this build reads {VERSION})",
                u32_at(8)
            ));
        }
        if u32_at(12) != slot {
            return Err(format!(
                "header names slot {} but sits in slot {slot} (misdirected write)",
                u32_at(12)
            ));
        }
        let n = b[40] as usize;
        if n == 0 || n > 64 {
            return Err(format!("subsystem id length {n}"));
        }
        let subsystem = std::str::from_utf8(&b[41..41 + n])
            .map_err(|_| "subsystem id is not UTF-8".to_string())?;
        let h = RootHeader {
            slot,
            generation: u64_at(16),
            payload_len: u64_at(24),
            payload_crc: u32_at(32),
            flags: u32_at(36),
            subsystem: subsystem.to_string(),
        };
        if h.generation == 0 {
            return Err("generation 0".into());
        }
        if h.payload_len > PAYLOAD_MAX_BYTES {
            return Err(format!("payload length {} exceeds the slot", h.payload_len));
        }
        Ok(h)
    }
}

/// What one slot holds.
#[derive(Clone, Debug)]
pub enum SlotStatus {
    /// Never written (all-zero header).
    Empty,
    /// Written but invalid; the reason.
    Invalid(String),
    /// A valid root.
    Valid {
        /// Its header.
        header: RootHeader,
        /// Its payload (checksum verified).
        payload: Vec<u8>,
    },
}

/// Both slots as found.
#[derive(Clone, Debug)]
pub struct RootScan {
    /// Slot 0 and slot 1.
    pub slots: [SlotStatus; 2],
}

impl RootScan {
    /// The valid root with the highest generation, if any.
    pub fn newest(&self) -> Option<(&RootHeader, &[u8])> {
        let mut best: Option<(&RootHeader, &[u8])> = None;
        for s in &self.slots {
            if let SlotStatus::Valid { header, payload } = s {
                if best.is_none_or(|(b, _)| header.generation > b.generation) {
                    best = Some((header, payload));
                }
            }
        }
        best
    }

    /// True when neither slot was ever written.
    pub fn is_blank(&self) -> bool {
        self.slots.iter().all(|s| matches!(s, SlotStatus::Empty))
    }
}

fn slot_base(slot: u32) -> u64 {
    u64::from(slot) * SLOT_BYTES
}

impl MetaStore {
    /// Reads and validates both root slots; `subsystem` must match the header's id.
    pub fn scan_roots(&self, subsystem: Option<&str>) -> Result<RootScan> {
        let mut slots = [SlotStatus::Empty, SlotStatus::Empty];
        for slot in 0..2u32 {
            let mut hb = [0u8; HEADER_BYTES];
            self.read(slot_base(slot), &mut hb, "read root header")?;
            slots[slot as usize] = if hb.iter().all(|&b| b == 0) {
                SlotStatus::Empty
            } else {
                match RootHeader::decode(&hb, slot) {
                    Err(reason) => SlotStatus::Invalid(reason),
                    Ok(h) if subsystem.is_some_and(|s| s != h.subsystem) => {
                        SlotStatus::Invalid(format!(
                            "root belongs to subsystem {} (expected {})",
                            h.subsystem,
                            subsystem.unwrap_or_default()
                        ))
                    }
                    Ok(header) => {
                        let mut payload = vec![0u8; header.payload_len as usize];
                        self.read(
                            slot_base(slot) + ROOT_HEADER_BLOCK_BYTES,
                            &mut payload,
                            "read root payload",
                        )?;
                        if crc32c::crc32c(&payload) != header.payload_crc {
                            SlotStatus::Invalid(format!(
                                "payload checksum mismatch (generation {}, torn checkpoint)",
                                header.generation
                            ))
                        } else {
                            SlotStatus::Valid { header, payload }
                        }
                    }
                }
            };
        }
        Ok(RootScan { slots })
    }

    /// Writes a root into `slot` (payload first, then header) and flushes.
    /// The caller picks the slot that does not hold the newest valid root.
    pub fn write_root(
        &self,
        slot: u32,
        generation: u64,
        flags: u32,
        subsystem: &str,
        payload: &[u8],
    ) -> Result<()> {
        if slot > 1 || payload.len() as u64 > PAYLOAD_MAX_BYTES {
            return Err(err(
                ErrorKind::InvalidRequest,
                format!("root slot {slot}, payload {} bytes", payload.len()),
            ));
        }
        let header = RootHeader {
            slot,
            generation,
            payload_len: payload.len() as u64,
            payload_crc: crc32c::crc32c(payload),
            flags,
            subsystem: subsystem.to_string(),
        };
        self.write(
            slot_base(slot) + ROOT_HEADER_BLOCK_BYTES,
            payload,
            "write root payload",
        )?;
        self.write(slot_base(slot), &header.encode(), "write root header")?;
        self.flush("flush root")
    }
}
