//! Crash-safe, append-only activity tables: patent A's persistent record of
//! backup sessions, one table per subsystem and one per volume.
//!
//! An entry is written when a session is initiated and another when it
//! completes, is terminated or resumed ([`ActivityEntry`], [`EntryStatus`]).
//! The resource manager replays the tables after a restart or reset to decide
//! which sessions to resume and which to terminate ([`ActivityTable::sessions`]).
//!
//! Depends only on `geometry` (for [`geometry::ExtentSet`]) and `fault-site`
//! (the [`FaultSite`]s its [`FaultHook`] is called with); it must not depend
//! on the stores, the engine or the controller.
//!
//! Key types: [`ActivityTable`] (open / append / compact), [`TableId`] (recorded
//! in the file header so a file names what it is), [`NewEntry`] / [`ActivityEntry`],
//! [`RecoveryReport`], [`TableError`].
//!
//! Guarantees (details at the top of each module, bytes in docs/FORMATS.md):
//! - an append is durable (fdatasync) before it returns `Ok`;
//! - recovery keeps every intact record and truncates only a torn tail (a tail
//!   with no intact record after it); a damaged record followed by intact ones
//!   is [`TableError::CorruptRecord`], never dropped silently —
//!   [`ActivityTable::open_salvage`] keeps the intact ones and lists the rest;
//! - sequence numbers are strictly increasing in the file and never reused,
//!   also across compaction;
//! - compaction writes a new file, fsyncs it, renames it over the old one and
//!   fsyncs the directory;
//! - bincode is used only in the private `codec` module (one file to swap).
#![deny(missing_docs)]

mod codec;
mod error;
mod format;
mod fsio;
mod recovery;
mod sessions;
mod table;
mod types;

pub use error::{TableError, TableErrorKind};
pub use fault_site::FaultSite;
pub use format::{FILE_MAGIC, FILE_VERSION, MAX_RECORD_LEN, RECORD_MAGIC};
pub use recovery::{RecoveryReport, SkippedRecord, TornTail};
pub use sessions::{summarize, RowSummary, SessionSummary};
pub use table::{ActivityTable, CompactReport, FaultHook};
pub use types::{
    check_program, ActivityEntry, EntryStatus, NewEntry, PhysSessionId, SessionId, TableId,
    TerminateReason, MAX_NAME_LEN, MAX_PROGRAM_LEN,
};

/// Version byte at the start of every record payload written by this build.
pub const RECORD_VERSION: u8 = codec::RECORD_VERSION;
