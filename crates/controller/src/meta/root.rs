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

use super::{root_base, MetaStore, COPIES, ROOT_COPY_BYTES, ROOT_HEADER_BLOCK_BYTES};
use crate::error::{err, ErrorKind, Result};

const MAGIC: &[u8; 8] = b"FWSROOT1";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 128;
/// Largest root payload accepted (a sanity bound on an untrusted length).
const PAYLOAD_MAX_BYTES: u64 = ROOT_COPY_BYTES - ROOT_HEADER_BLOCK_BYTES;

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

/// What one root copy (or, summarised, one slot) holds.
#[derive(Clone, Debug, Default)]
pub enum SlotStatus {
    /// Never written (all-zero header and first payload block).
    #[default]
    Empty,
    /// An all-zero header over a payload that was written: a first
    /// checkpoint into this slot torn before its header, or a header the
    /// medium lost. Counts as blank for a first boot, and as unreadable
    /// beside a valid root in the other slot (which is then warned about).
    BlankHeader,
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

impl SlotStatus {
    fn generation(&self) -> Option<u64> {
        match self {
            SlotStatus::Valid { header, .. } => Some(header.generation),
            _ => None,
        }
    }

    /// One line: `empty`, `invalid (why)` or `generation N`.
    pub fn describe(&self) -> String {
        match self {
            SlotStatus::Empty => "empty".into(),
            SlotStatus::BlankHeader => {
                "blank header over a written payload (a checkpoint torn before its header, \
                 or a lost header)"
                    .into()
            }
            SlotStatus::Invalid(why) => format!("invalid ({why})"),
            SlotStatus::Valid { header, payload } => format!(
                "generation {}, {} payload bytes{}",
                header.generation,
                payload.len(),
                if header.flags & ROOT_FLAG_OPEN != 0 {
                    ", open"
                } else {
                    ""
                }
            ),
        }
    }
}

/// Both slots, both copies each, as found.
#[derive(Clone, Debug)]
pub struct RootScan {
    /// `copies[slot][copy]`.
    pub copies: [[SlotStatus; 2]; 2],
}

impl RootScan {
    /// What `slot` holds: its newest valid copy, else its first invalid one, else empty.
    pub fn slot(&self, slot: usize) -> &SlotStatus {
        let c = &self.copies[slot];
        match (c[0].generation(), c[1].generation()) {
            (Some(a), Some(b)) if b > a => &c[1],
            (Some(_), _) => &c[0],
            (None, Some(_)) => &c[1],
            (None, None) if matches!(c[0], SlotStatus::Invalid(_)) => &c[0],
            (None, None) => &c[1],
        }
    }

    /// The valid root with the highest generation in any copy, if any.
    pub fn newest(&self) -> Option<(&RootHeader, &[u8])> {
        let mut best: Option<(&RootHeader, &[u8])> = None;
        for s in self.copies.iter().flatten() {
            if let SlotStatus::Valid { header, payload } = s {
                if best.is_none_or(|(b, _)| header.generation > b.generation) {
                    best = Some((header, payload));
                }
            }
        }
        best
    }

    /// When the root loaded came from slot `loaded` and the other slot was
    /// written but holds no valid copy: what it holds. A crash during a
    /// checkpoint leaves exactly this (the change it recorded was never
    /// acknowledged); so does damage to a durable root (the change it
    /// recorded is lost with it). Nothing on disk tells the two apart when
    /// the journal holds no record of the newer generation, so the caller
    /// warns instead of refusing.
    pub fn unreadable_other_slot(&self, loaded: u32) -> Option<String> {
        let other = 1 - (loaded as usize & 1);
        let copies = &self.copies[other];
        if copies
            .iter()
            .all(|c| matches!(c, SlotStatus::Invalid(_) | SlotStatus::BlankHeader))
        {
            Some(format!(
                "root slot {other} holds no valid copy (copy 0: {}; copy 1: {})",
                copies[0].describe(),
                copies[1].describe()
            ))
        } else {
            None
        }
    }

    /// True when no copy of either slot has a header: never written, or a
    /// first checkpoint torn before its headers (or every header lost: the
    /// IPL then refuses a directory that still holds data).
    pub fn is_blank(&self) -> bool {
        self.copies
            .iter()
            .flatten()
            .all(|s| matches!(s, SlotStatus::Empty | SlotStatus::BlankHeader))
    }

    /// `slot S copy C: ...` for every copy (diagnostics and `check`).
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (slot, copies) in self.copies.iter().enumerate() {
            for (copy, s) in copies.iter().enumerate() {
                out.push(format!("slot {slot} copy {copy}: {}", s.describe()));
            }
        }
        out
    }
}

impl MetaStore {
    fn scan_copy(&self, slot: u32, copy: u64, subsystem: Option<&str>) -> Result<SlotStatus> {
        let base = root_base(slot, copy);
        let mut hb = [0u8; HEADER_BYTES];
        self.read(base, &mut hb, "read root header")?;
        if hb.iter().all(|&b| b == 0) {
            let mut first = [0u8; 4096];
            self.read(
                base + ROOT_HEADER_BLOCK_BYTES,
                &mut first,
                "read root payload",
            )?;
            return Ok(if first.iter().all(|&b| b == 0) {
                SlotStatus::Empty
            } else {
                SlotStatus::BlankHeader
            });
        }
        Ok(match RootHeader::decode(&hb, slot) {
            Err(reason) => SlotStatus::Invalid(reason),
            Ok(h) if subsystem.is_some_and(|s| s != h.subsystem) => SlotStatus::Invalid(format!(
                "root belongs to subsystem {} (expected {})",
                h.subsystem,
                subsystem.unwrap_or_default()
            )),
            Ok(header) => {
                let mut payload = vec![0u8; header.payload_len as usize];
                self.read(
                    base + ROOT_HEADER_BLOCK_BYTES,
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
        })
    }

    /// Reads and validates every copy of both root slots; `subsystem` must
    /// match the header's id.
    pub fn scan_roots(&self, subsystem: Option<&str>) -> Result<RootScan> {
        let mut copies: [[SlotStatus; 2]; 2] = Default::default();
        for slot in 0..2u32 {
            for copy in 0..COPIES {
                copies[slot as usize][copy as usize] = self.scan_copy(slot, copy, subsystem)?;
            }
        }
        Ok(RootScan { copies })
    }

    /// Writes a root into both copies of `slot` (payloads, then headers),
    /// made durable and verified ([`MetaStore::write_durable`], fault site
    /// `root.write`). The caller picks the slot that does not hold the newest
    /// valid root.
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
        }
        .encode();
        let mut parts: Vec<(u64, &[u8])> = Vec::new();
        for copy in 0..COPIES {
            parts.push((root_base(slot, copy) + ROOT_HEADER_BLOCK_BYTES, payload));
        }
        for copy in 0..COPIES {
            parts.push((root_base(slot, copy), &header));
        }
        if self.unsafe_roots() {
            // The deliberate bug: one unflushed, unverified try whose failure
            // is ignored, so the journal moves on to a generation with no root.
            if self.site_ok(volume_store::FaultSite::RootWrite) {
                for (offset, data) in &parts {
                    let _ = self.store().write_at(*offset, data);
                }
            }
            return Ok(());
        }
        self.write_durable(
            volume_store::FaultSite::RootWrite,
            &parts,
            &format!("root generation {generation} (slot {slot})"),
        )
        .map(|_| ())
    }
}
