//! The bitmap journal: append-only records of bits set since the last checkpoint.
//!
//! Record layout (little-endian), packed back to back from the journal base:
//! ```text
//! 0   magic        4  b"FWJ1"
//! 4   payload_len  4
//! 8   generation   8  the root generation these records extend
//! 16  seq          8  1, 2, 3, ... within the generation
//! 24  crc          4  crc32c of bytes 0..24 and the payload
//! 28  reserved     4  zero
//! 32  payload      payload_len bytes (codec blob of journal operations)
//! ```
//! Every record is written to both journal copies at the same relative offset
//! and made durable and verified before the next ([`MetaStore::write_durable`]),
//! so at most one record is ever unflushed: a torn record can only be the
//! last one. Replay takes each record from whichever copy holds it whole.
//!
//! Damage is told apart from a torn tail: wherever the scan stops, the
//! allocated journal bytes that a next record could start in (up to one
//! maximal record further) are searched for a valid record (magic, length,
//! checksum) that should not exist there: one of the same generation with a
//! later sequence number (the stop was damage in the middle; replaying the
//! prefix would lose that record's bits, so PIT targets would read the
//! source's new data), or one of a newer generation (that root was durable
//! and its slot is damaged; loading the older root would roll back). Either
//! is an error of kind `Corrupt`, never a silent stop.
//!
//! A record whose header fields that identify it (magic, generation, seq)
//! were damaged, while its length, checksum and payload are whole, is still
//! ours: with the expected magic, generation and seq put back, its checksum
//! matches. It is replayed, and the scan says so ([`JournalScan::repaired`]).
//! Replaying it is safe even when a crash tore its header sector rather than
//! damage: a whole payload means the record was written in full, and what it
//! records was durable before it was written (docs/DURABILITY.md, rule 1).
//! Bytes left by an earlier generation, or one of its intact records, never
//! pass that check (their checksum covers their own generation).

use geometry::Extent;

use super::{journal_base, MetaStore, COPIES, JOURNAL_BYTES, META_TRACK_BYTES};
use crate::error::{err, ErrorKind, Result};

const MAGIC: &[u8; 4] = b"FWJ1";
/// Bytes of a record header.
pub const JOURNAL_RECORD_HEADER_BYTES: u64 = 32;
/// Largest payload accepted (a sanity bound on an untrusted length).
const PAYLOAD_MAX_BYTES: u32 = 64 << 20;
/// Read size of the journal scan (one metadata track: most journals are short).
const WINDOW_BYTES: usize = 64 << 10;

/// Why replay stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalStop {
    /// An all-zero header, no record magic, or a record of another generation:
    /// the clean end (what follows is left from an earlier generation).
    End,
    /// A record that failed a check (torn or damaged tail); the reason.
    Torn(String),
    /// The journal area is full.
    Full,
}

/// Records found by [`MetaStore::scan_journal`].
#[derive(Clone, Debug)]
pub struct JournalScan {
    /// Payloads of the valid records, in order.
    pub records: Vec<Vec<u8>>,
    /// Journal-relative offset just past the last valid record.
    pub end: u64,
    /// Why the scan stopped.
    pub stop: JournalStop,
    /// Records whose damaged header was recognised by their checksum and
    /// replayed (module doc), one line each: a warning for the operator.
    pub repaired: Vec<String>,
}

fn crc_of(header: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&header[..24]), payload)
}

/// Encodes one record.
pub(crate) fn encode_record(generation: u64, seq: u64, payload: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l <= PAYLOAD_MAX_BYTES)
        .ok_or_else(|| {
            err(
                ErrorKind::InvalidRequest,
                format!("journal payload of {} bytes", payload.len()),
            )
        })?;
    let mut rec = Vec::with_capacity(JOURNAL_RECORD_HEADER_BYTES as usize + payload.len());
    rec.extend_from_slice(MAGIC);
    rec.extend_from_slice(&len.to_le_bytes());
    rec.extend_from_slice(&generation.to_le_bytes());
    rec.extend_from_slice(&seq.to_le_bytes());
    let crc = crc_of(&rec, payload);
    rec.extend_from_slice(&crc.to_le_bytes());
    rec.extend_from_slice(&0u32.to_le_bytes());
    rec.extend_from_slice(payload);
    Ok(rec)
}

/// A sequential reader over the journal area with a 1 MiB window.
struct Window<'a> {
    meta: &'a MetaStore,
    base: u64,
    buf: Vec<u8>,
    start: u64,
}

impl Window<'_> {
    fn get(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        if offset < self.start || offset + len as u64 > self.start + self.buf.len() as u64 {
            let want = len.max(WINDOW_BYTES) as u64;
            let avail = JOURNAL_BYTES.saturating_sub(offset).min(want);
            self.buf = vec![0u8; avail as usize];
            self.meta
                .read(self.base + offset, &mut self.buf, "read journal")?;
            self.start = offset;
        }
        let at = (offset - self.start) as usize;
        Ok(self.buf[at..at + len].to_vec())
    }
}

impl MetaStore {
    /// Appends one record at journal-relative `offset` to both copies, made
    /// durable and verified (fault site `bitmap.commit`); returns the offset
    /// past it.
    pub fn append_journal(
        &self,
        offset: u64,
        generation: u64,
        seq: u64,
        payload: &[u8],
    ) -> Result<u64> {
        let rec = encode_record(generation, seq, payload)?;
        let end = offset + rec.len() as u64;
        if end > JOURNAL_BYTES {
            return Err(err(
                ErrorKind::NoSpace,
                "metadata journal full (checkpoint overdue)",
            ));
        }
        let parts: Vec<(u64, &[u8])> = (0..COPIES)
            .map(|c| (journal_base(c) + offset, &rec[..]))
            .collect();
        self.write_durable(
            volume_store::FaultSite::BitmapCommit,
            &parts,
            &format!("journal record {seq} of generation {generation}"),
        )?;
        Ok(end)
    }

    /// Reads the records of `generation` from the start of the journal,
    /// each from whichever copy holds it whole.
    pub fn scan_journal(&self, generation: u64) -> Result<JournalScan> {
        let mut windows: Vec<Window<'_>> = (0..COPIES)
            .map(|c| Window {
                meta: self,
                base: journal_base(c),
                buf: Vec::new(),
                start: 0,
            })
            .collect();
        let mut records = Vec::new();
        let mut repaired = Vec::new();
        let mut offset = 0u64;
        let mut seq = 1u64;
        let stop = loop {
            let mut stop = None;
            let mut found = None;
            let mut damaged = None;
            for (copy, w) in windows.iter_mut().enumerate() {
                match read_record(w, offset, generation, seq)? {
                    Ok((payload, None)) => {
                        found = Some(payload);
                        break;
                    }
                    // A whole copy of the record is better than a repaired one.
                    Ok((payload, Some(why))) => {
                        if damaged.is_none() {
                            damaged = Some((payload, copy, why));
                        }
                    }
                    // A torn or damaged copy says more than a clean end in the other.
                    Err(s) => {
                        if stop.is_none() || matches!(s, JournalStop::Torn(_)) {
                            stop = Some(s);
                        }
                    }
                }
            }
            if found.is_none() {
                if let Some((payload, copy, why)) = damaged {
                    repaired.push(format!(
                        "journal record {seq} of generation {generation} at byte offset {} \
                         of meta.store ({why}) was recognised by its checksum and replayed",
                        journal_base(copy as u64) + offset
                    ));
                    found = Some(payload);
                }
            }
            match found {
                Some(payload) => {
                    offset += JOURNAL_RECORD_HEADER_BYTES + payload.len() as u64;
                    records.push(payload);
                    seq += 1;
                }
                None => break stop.unwrap_or(JournalStop::End),
            }
        };
        if stop != JournalStop::Full {
            self.refuse_damage(generation, seq, offset, &stop)?;
        }
        Ok(JournalScan {
            records,
            end: offset,
            stop,
            repaired,
        })
    }

    /// After the scan of `generation` stopped at journal offset `offset`
    /// expecting record `seq`: a valid record that proves the stop is damage,
    /// not the end or a torn tail, is an error (module doc).
    fn refuse_damage(
        &self,
        generation: u64,
        seq: u64,
        offset: u64,
        stop: &JournalStop,
    ) -> Result<()> {
        let limit = (offset + 2 * JOURNAL_RECORD_HEADER_BYTES + u64::from(PAYLOAD_MAX_BYTES))
            .min(JOURNAL_BYTES);
        let mut found = None;
        for copy in 0..COPIES {
            found = self.find_valid_record(copy, offset, limit, |g, s| {
                g > generation || (g == generation && s >= seq)
            })?;
            if found.is_some() {
                break;
            }
        }
        let Some((copy, at, g, s)) = found else {
            return Ok(());
        };
        let stop_at = journal_base(copy) + offset;
        let found_at = journal_base(copy) + at;
        let why = match stop {
            JournalStop::Torn(w) => w.clone(),
            _ => "no valid record header".to_string(),
        };
        Err(if g > generation {
            err(
                ErrorKind::Corrupt,
                format!(
                    "metadata store meta.store: the journal holds a valid record \
                     of generation {g} (seq {s}) at byte offset {found_at}, newer \
                     than the newest valid root (generation {generation}): the \
                     root of generation {g} was durable and its slot is now \
                     damaged; opening generation {generation} would silently roll \
                     the maps and volumes back, so the subsystem is not opened. \
                     Keep the data directory unchanged (copy it aside), run \
                     `firmware-sim check` on it, and restore it from a backup"
                ),
            )
        } else {
            err(
                ErrorKind::Corrupt,
                format!(
                    "metadata store meta.store: journal record {seq} of \
                     generation {generation} at byte offset {stop_at} is damaged \
                     ({why}), but record {s} of the same generation follows at \
                     byte offset {found_at}, so it is not a torn tail (only the \
                     last record can be torn): bits in the damaged record are \
                     lost and point-in-time targets could read wrong data, so the \
                     subsystem is not opened. Keep the data directory unchanged \
                     (copy it aside), run `firmware-sim check` on it, and restore \
                     it from a backup"
                ),
            )
        })
    }

    /// The first valid record (magic, sane length, checksum) starting in
    /// offsets `from..limit` of journal copy `copy` whose generation and seq
    /// satisfy `want`; only allocated tracks are searched. Returns (copy,
    /// offset, generation, seq).
    fn find_valid_record(
        &self,
        copy: u64,
        from: u64,
        limit: u64,
        want: impl Fn(u64, u64) -> bool,
    ) -> Result<Option<(u64, u64, u64, u64)>> {
        if from >= limit {
            return Ok(None);
        }
        let base = journal_base(copy);
        let first = (base + from) / META_TRACK_BYTES;
        let last = (base + limit - 1) / META_TRACK_BYTES;
        let Some(extent) = Extent::new(first, last) else {
            return Ok(None);
        };
        let allocated = self
            .store()
            .allocated(extent)
            .map_err(|e| super::store_err("journal allocation", e))?;
        let hdr = JOURNAL_RECORD_HEADER_BYTES;
        for e in allocated.extents() {
            let lo = (e.first * META_TRACK_BYTES).max(base + from) - base;
            let hi = ((e.last + 1) * META_TRACK_BYTES).min(base + limit) - base;
            let mut at = lo;
            while at < hi {
                // Chunks overlap by 3 bytes so a magic across a boundary is seen.
                let n = (hi - at).min(WINDOW_BYTES as u64);
                let read = (n + 3).min(JOURNAL_BYTES - at);
                let mut buf = vec![0u8; read as usize];
                self.read(base + at, &mut buf, "read journal")?;
                let mut i = 0usize;
                while i + 4 <= buf.len() && (i as u64) < n {
                    if buf[i] == MAGIC[0] && &buf[i..i + 4] == MAGIC {
                        let off = at + i as u64;
                        if let Some((g, s)) = self.valid_record_at(base, off, hdr)? {
                            if want(g, s) {
                                return Ok(Some((copy, off, g, s)));
                            }
                        }
                    }
                    i += 1;
                }
                at += n;
            }
        }
        Ok(None)
    }

    /// (generation, seq) of a record at journal offset `off` if it is whole and valid.
    fn valid_record_at(&self, base: u64, off: u64, hdr: u64) -> Result<Option<(u64, u64)>> {
        if off + hdr > JOURNAL_BYTES {
            return Ok(None);
        }
        let mut h = [0u8; JOURNAL_RECORD_HEADER_BYTES as usize];
        self.read(base + off, &mut h, "read journal")?;
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        if &h[0..4] != MAGIC
            || len > PAYLOAD_MAX_BYTES
            || off + hdr + u64::from(len) > JOURNAL_BYTES
        {
            return Ok(None);
        }
        let mut payload = vec![0u8; len as usize];
        self.read(base + off + hdr, &mut payload, "read journal")?;
        if crc_of(&h, &payload) != u32::from_le_bytes([h[24], h[25], h[26], h[27]]) {
            return Ok(None);
        }
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&h[o..o + 8]);
            u64::from_le_bytes(a)
        };
        Ok(Some((u64_at(8), u64_at(16))))
    }
}

/// A record's payload, and what was damaged in its header if it was
/// recognised by its checksum.
type Found = (Vec<u8>, Option<String>);

/// The record of `generation` numbered `seq` at `offset` of one copy, or why
/// there is none (the clean end, a torn or damaged record, the end of the area).
/// A record recognised by its checksum despite a damaged magic, generation or
/// seq (module doc) comes with what was damaged.
fn read_record(
    w: &mut Window<'_>,
    offset: u64,
    generation: u64,
    seq: u64,
) -> Result<std::result::Result<Found, JournalStop>> {
    if offset + JOURNAL_RECORD_HEADER_BYTES > JOURNAL_BYTES {
        return Ok(Err(JournalStop::Full));
    }
    let h = w.get(offset, JOURNAL_RECORD_HEADER_BYTES as usize)?;
    if h.iter().all(|&b| b == 0) {
        return Ok(Err(JournalStop::End));
    }
    let u64_at = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&h[o..o + 8]);
        u64::from_le_bytes(a)
    };
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let damaged = [
        (&h[0..4] != MAGIC, "magic"),
        (u64_at(8) != generation, "generation"),
        (u64_at(16) != seq, "seq"),
    ];
    let wrong = damaged.iter().filter(|d| d.0).count();
    if damaged[0].0 || damaged[1].0 {
        // Bytes left from a longer earlier generation (records are packed,
        // so the new end need not fall on an old record boundary), or a
        // record of an earlier generation (the checkpoint of `generation`
        // reset the journal): the clean end, unless the checksum says this
        // is record `seq` with one damaged identity field. (Two wrong
        // fields are what leftovers look like: not worth a payload read.)
        let probe = wrong == 1 && h[28..32] == [0u8; 4];
        if probe {
            if let Some(payload) = recognised(w, offset, &h, len, generation, seq)? {
                let field = damaged.iter().find(|d| d.0).map_or("", |d| d.1);
                return Ok(Ok((
                    payload,
                    Some(format!("damaged header field: {field}")),
                )));
            }
        }
        return Ok(Err(JournalStop::End));
    }
    if len > PAYLOAD_MAX_BYTES
        || offset + JOURNAL_RECORD_HEADER_BYTES + u64::from(len) > JOURNAL_BYTES
    {
        return Ok(Err(JournalStop::Torn(format!(
            "record length {len} at journal offset {offset}"
        ))));
    }
    if damaged[2].0 {
        if let Some(payload) = recognised(w, offset, &h, len, generation, seq)? {
            return Ok(Ok((payload, Some("damaged header field: seq".into()))));
        }
        return Ok(Err(JournalStop::Torn(format!(
            "record seq {} at journal offset {offset}, expected {seq}",
            u64_at(16)
        ))));
    }
    let payload = w.get(offset + JOURNAL_RECORD_HEADER_BYTES, len as usize)?;
    let crc = u32::from_le_bytes([h[24], h[25], h[26], h[27]]);
    if crc_of(&h, &payload) != crc {
        return Ok(Err(JournalStop::Torn(format!(
            "record {seq} at journal offset {offset}: checksum mismatch"
        ))));
    }
    Ok(Ok((payload, None)))
}

/// The payload of the record at `offset` if, with the expected magic,
/// `generation` and `seq` put in its header `h`, its checksum matches.
fn recognised(
    w: &mut Window<'_>,
    offset: u64,
    h: &[u8],
    len: u32,
    generation: u64,
    seq: u64,
) -> Result<Option<Vec<u8>>> {
    if len > PAYLOAD_MAX_BYTES
        || offset + JOURNAL_RECORD_HEADER_BYTES + u64::from(len) > JOURNAL_BYTES
    {
        return Ok(None);
    }
    let mut fixed = h.to_vec();
    fixed[0..4].copy_from_slice(MAGIC);
    fixed[8..16].copy_from_slice(&generation.to_le_bytes());
    fixed[16..24].copy_from_slice(&seq.to_le_bytes());
    let payload = w.get(offset + JOURNAL_RECORD_HEADER_BYTES, len as usize)?;
    let crc = u32::from_le_bytes([h[24], h[25], h[26], h[27]]);
    Ok((crc_of(&fixed, &payload) == crc).then_some(payload))
}
