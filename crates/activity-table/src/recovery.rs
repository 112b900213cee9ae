//! Recovery: turning a file image into entries, and what it found.
//!
//! Rules (docs/FORMATS.md, "Recovery"): every valid record is kept; a tail with
//! no valid record after it is a torn tail (cut by the caller); a bad record
//! followed by a valid one is corruption in the middle — an error in strict
//! mode, listed in `skipped` in salvage mode, never dropped silently. Decoded
//! entries must have strictly increasing seqs and belong to the table.

use std::path::{Path, PathBuf};

use crate::codec;
use crate::error::TableError;
use crate::format::{self, Piece};
use crate::types::{ActivityEntry, TableId};

/// A torn tail cut off by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Offset where the intact content ended (the new file length).
    pub offset: u64,
    /// Bytes removed.
    pub len: u64,
    /// Why the first removed frame was not valid.
    pub reason: String,
}

/// A damaged record left out by [`crate::ActivityTable::open_salvage`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedRecord {
    /// Offset of the skipped bytes in the damaged file.
    pub offset: u64,
    /// Number of bytes skipped.
    pub len: u64,
    /// What was wrong.
    pub reason: String,
}

/// What opening a table found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The file did not exist and was created.
    pub created: bool,
    /// Records loaded.
    pub records: usize,
    /// A torn tail that was truncated (`None` if the file ended cleanly).
    pub torn_tail: Option<TornTail>,
    /// Stale temporary files (from an interrupted create or compaction) removed.
    pub removed_temp_files: Vec<PathBuf>,
    /// Damaged records left out (only [`crate::ActivityTable::open_salvage`]).
    pub skipped: Vec<SkippedRecord>,
    /// Where salvage kept a copy of the damaged file before rewriting it.
    pub damaged_copy: Option<PathBuf>,
}

impl RecoveryReport {
    /// Bytes truncated from a torn tail (0 if none).
    pub fn truncated_bytes(&self) -> u64 {
        self.torn_tail.as_ref().map_or(0, |t| t.len)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Errors on any damage but a torn tail.
    Strict,
    /// Skips damaged records and lists them.
    Salvage,
}

/// The decoded content of a table file.
pub(crate) struct Loaded {
    pub(crate) id: TableId,
    pub(crate) base_seq: u64,
    pub(crate) entries: Vec<ActivityEntry>,
    pub(crate) valid_end: usize,
    pub(crate) torn_tail: Option<TornTail>,
    pub(crate) skipped: Vec<SkippedRecord>,
}

/// Decodes a whole file image. `expected`: the table the caller wants.
pub(crate) fn load(
    path: &Path,
    bytes: &[u8],
    expected: Option<&TableId>,
    mode: Mode,
) -> Result<Loaded, TableError> {
    let header = format::decode_header(path, bytes)?;
    if let Some(want) = expected {
        if *want != header.id {
            return Err(TableError::WrongTable {
                path: path.to_path_buf(),
                expected: want.clone(),
                found: header.id,
            });
        }
    }
    let scan = format::scan(bytes, header.len);
    let frames_after = |i: usize| {
        scan.pieces[i + 1..]
            .iter()
            .filter(|p| matches!(p, Piece::Frame { .. }))
            .count() as u64
    };
    let mut entries: Vec<ActivityEntry> = Vec::with_capacity(scan.pieces.len());
    let mut skipped = Vec::new();
    for (i, piece) in scan.pieces.iter().enumerate() {
        let (offset, problem) = match piece {
            Piece::Garbage {
                offset,
                len,
                reason,
            } => (*offset, (*len as u64, reason.clone(), None)),
            Piece::Frame { offset, payload } => {
                let end = payload.1 as u64;
                let frame_len = end - *offset as u64;
                match check_entry(
                    path,
                    *offset,
                    &bytes[payload.0..payload.1],
                    &header.id,
                    entries.last(),
                ) {
                    Ok(e) => {
                        entries.push(e);
                        continue;
                    }
                    Err(err) => (*offset, (frame_len, err.to_string(), Some(err))),
                }
            }
        };
        let (len, reason, err) = problem;
        if mode == Mode::Salvage {
            skipped.push(SkippedRecord {
                offset: offset as u64,
                len,
                reason,
            });
            continue;
        }
        return Err(match err {
            Some(
                e @ (TableError::SeqNotIncreasing { .. }
                | TableError::MisdirectedEntry { .. }
                | TableError::UnsupportedVersion { .. }),
            ) => e,
            _ => TableError::CorruptRecord {
                path: path.to_path_buf(),
                offset: offset as u64,
                reason,
                good_after: frames_after(i),
            },
        });
    }
    let (valid_end, torn_tail) = match scan.torn_tail {
        Some((offset, reason)) => (
            offset,
            Some(TornTail {
                offset: offset as u64,
                len: (bytes.len() - offset) as u64,
                reason,
            }),
        ),
        None => (bytes.len(), None),
    };
    Ok(Loaded {
        id: header.id,
        base_seq: header.base_seq,
        entries,
        valid_end,
        torn_tail,
        skipped,
    })
}

/// Decodes one record payload and checks it against the table and the previous entry.
fn check_entry(
    path: &Path,
    offset: usize,
    payload: &[u8],
    table: &TableId,
    prev: Option<&ActivityEntry>,
) -> Result<ActivityEntry, TableError> {
    let entry = codec::decode_entry(payload).map_err(|f| match f {
        codec::DecodeFailure::Version(v) => TableError::UnsupportedVersion {
            path: path.to_path_buf(),
            what: "record",
            version: u32::from(v),
            offset: offset as u64,
        },
        codec::DecodeFailure::Invalid(reason) => TableError::CorruptRecord {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason: format!("checksum holds but payload is invalid: {reason}"),
            good_after: 0,
        },
    })?;
    if let Some(p) = prev {
        if entry.seq <= p.seq {
            return Err(TableError::SeqNotIncreasing {
                path: path.to_path_buf(),
                offset: offset as u64,
                prev: p.seq,
                seq: entry.seq,
            });
        }
    }
    if !entry.belongs_to(table) {
        return Err(TableError::MisdirectedEntry {
            table: table.clone(),
            subsystem: entry.subsystem,
            volume: entry.volume,
            offset: Some(offset as u64),
        });
    }
    Ok(entry)
}
