//! The one error type of this crate.

use std::path::PathBuf;

use crate::types::TableId;

/// Everything that can go wrong opening, reading or writing an activity table.
///
/// Each variant is a kind callers can match on; each carries the path and,
/// for on-disk problems, the byte offset.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// An operating-system call failed (or a fault was injected at a site).
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`open`, `read`, `table.append`, `fdatasync`, ...).
        op: &'static str,
        /// File concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an activity table (wrong magic, or shorter than a header).
    #[error("{} is not an activity table: {reason}", path.display())]
    NotATable {
        /// File concerned.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },
    /// The header has the right magic but its checksum or contents are wrong.
    #[error("{}: bad table header: {reason}", path.display())]
    BadHeader {
        /// File concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file or a record uses a format version this build cannot read.
    #[error("{}: unsupported {what} format version {version} at offset {offset}", path.display())]
    UnsupportedVersion {
        /// File concerned.
        path: PathBuf,
        /// `file` or `record`.
        what: &'static str,
        /// The version found.
        version: u32,
        /// Byte offset of the header or record.
        offset: u64,
    },
    /// The header names another table than the caller expected (a misdirected
    /// or foreign file).
    #[error("{}: file belongs to {found}, expected {expected}", path.display())]
    WrongTable {
        /// File concerned.
        path: PathBuf,
        /// The table the caller asked for.
        expected: TableId,
        /// The table the header names.
        found: TableId,
    },
    /// A record in the middle of the file is damaged while records after it
    /// are intact. Nothing is dropped or truncated; use
    /// [`crate::ActivityTable::open_salvage`] to keep the intact records.
    #[error(
        "{}: corrupt record at offset {offset} ({reason}); {good_after} intact record(s) follow, \
         refusing to drop them (use salvage)",
        path.display()
    )]
    CorruptRecord {
        /// File concerned.
        path: PathBuf,
        /// Byte offset of the damaged record's frame.
        offset: u64,
        /// What is wrong (bad magic, bad checksum, undecodable payload, ...).
        reason: String,
        /// Intact records found after it (at least 1 for a frame error).
        good_after: u64,
    },
    /// A record's sequence number is not greater than the one before it.
    #[error("{}: record at offset {offset} has seq {seq}, not after {prev}", path.display())]
    SeqNotIncreasing {
        /// File concerned.
        path: PathBuf,
        /// Byte offset of the record.
        offset: u64,
        /// Sequence number of the record before.
        prev: u64,
        /// Sequence number found.
        seq: u64,
    },
    /// An entry names another subsystem or volume than the table it is in (or
    /// is being appended to).
    #[error("entry for subsystem {subsystem} volume {volume:?} does not belong to {table}{}",
        offset.map(|o| format!(" (record at offset {o})")).unwrap_or_default())]
    MisdirectedEntry {
        /// The table.
        table: TableId,
        /// Subsystem named by the entry.
        subsystem: String,
        /// Volume named by the entry.
        volume: Option<String>,
        /// Byte offset, when found on disk.
        offset: Option<u64>,
    },
    /// A field of an id or entry is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An encoded entry is larger than a record may be.
    #[error("entry encodes to {len} bytes, more than the record limit of {max}")]
    EntryTooLarge {
        /// Encoded size.
        len: usize,
        /// Limit ([`crate::MAX_RECORD_LEN`]).
        max: usize,
    },
    /// An earlier write or sync failed, so what is on disk is unknown; the
    /// table refuses further appends until it is reopened (which re-reads the
    /// file and recovers).
    #[error("{}: table poisoned by an earlier failed {op}; reopen it", path.display())]
    Poisoned {
        /// File concerned.
        path: PathBuf,
        /// The operation that failed.
        op: &'static str,
    },
    /// Another open table (in this or another process) holds the file's lock.
    #[error("{}: table is open elsewhere (lock held)", path.display())]
    Locked {
        /// File concerned.
        path: PathBuf,
    },
    /// Encoding a value failed (a bug, or a value the codec cannot represent).
    #[error("encoding failed: {0}")]
    Encode(String),
}

impl TableError {
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        TableError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The broad class of a [`TableError`], for callers that map errors to their
/// own kinds (e.g. the controller's `Corrupt` vs `Io`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TableErrorKind {
    /// An OS call failed or a fault was injected.
    Io,
    /// The file is not an activity table at all.
    NotATable,
    /// The file is a table but damaged: bad header, corrupt record, seq out
    /// of order, or a record of another table inside it.
    Corrupt,
    /// Written by a newer format version.
    Unsupported,
    /// The file is another table than the one asked for.
    WrongTable,
    /// The caller's input is invalid (bad field, too large, wrong table for the entry).
    InvalidInput,
    /// An earlier failed write/sync; reopen needed.
    Poisoned,
    /// The file is open elsewhere.
    Locked,
    /// Internal encoding failure (a bug).
    Internal,
}

impl TableError {
    /// The class of this error.
    pub fn kind(&self) -> TableErrorKind {
        match self {
            TableError::Io { .. } => TableErrorKind::Io,
            TableError::NotATable { .. } => TableErrorKind::NotATable,
            TableError::BadHeader { .. }
            | TableError::CorruptRecord { .. }
            | TableError::SeqNotIncreasing { .. } => TableErrorKind::Corrupt,
            TableError::MisdirectedEntry {
                offset: Some(_), ..
            } => TableErrorKind::Corrupt,
            TableError::MisdirectedEntry { offset: None, .. }
            | TableError::InvalidField { .. }
            | TableError::EntryTooLarge { .. } => TableErrorKind::InvalidInput,
            TableError::UnsupportedVersion { .. } => TableErrorKind::Unsupported,
            TableError::WrongTable { .. } => TableErrorKind::WrongTable,
            TableError::Poisoned { .. } => TableErrorKind::Poisoned,
            TableError::Locked { .. } => TableErrorKind::Locked,
            TableError::Encode(_) => TableErrorKind::Internal,
        }
    }
}
