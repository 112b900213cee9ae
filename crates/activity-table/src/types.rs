//! The values an activity table stores: ids, entries and their status.
//!
//! Invariants owned here:
//! - a [`SessionId`] is 1..=64 ASCII graphic characters (no spaces, no control
//!   characters); a [`PhysSessionId`] is 1..=255 (0 means "none" and is not a value);
//! - subsystem, volume and host names are 1..=64 ASCII graphic characters;
//! - a program name is at most 256 characters and has no control characters.
//!
//! These rules are checked when a value is built ([`SessionId::new`],
//! [`PhysSessionId::new`], [`NewEntry::validate`]) and again when a record is
//! decoded from disk, so an entry in memory always satisfies them.
//!
//! The public types also implement serde (for JSON reports and the control
//! API): ids as their text/number (validated on deserialize), reasons by name
//! (`rm-restart`), statuses in kebab case (`"initiated"`,
//! `{"terminated":{"reason":"abend"}}`). The on-disk format does not use these
//! impls (see `codec`).

use std::fmt;

use geometry::ExtentSet;
use serde::{Deserialize, Serialize};

use crate::error::TableError;

/// Longest session id, subsystem name or volume name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest program name, in bytes.
pub const MAX_PROGRAM_LEN: usize = 256;

/// Which table a file is: the subsystem's own table or one volume's table.
///
/// Recorded in the file header, so a file names what it is; opening a file
/// whose header names another table is [`TableError::WrongTable`].
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TableId {
    /// The table of a whole subsystem (one row per session and volume, or
    /// subsystem-level rows with no volume).
    Subsystem(String),
    /// The table of one volume of a subsystem.
    Volume {
        /// Subsystem that owns the volume.
        subsystem: String,
        /// Volume name.
        volume: String,
    },
}

impl TableId {
    /// The subsystem this table belongs to.
    pub fn subsystem(&self) -> &str {
        match self {
            TableId::Subsystem(s) => s,
            TableId::Volume { subsystem, .. } => subsystem,
        }
    }

    /// The volume, for a per-volume table.
    pub fn volume(&self) -> Option<&str> {
        match self {
            TableId::Subsystem(_) => None,
            TableId::Volume { volume, .. } => Some(volume),
        }
    }

    /// Checks both names (1..=64 ASCII graphic characters).
    pub fn validate(&self) -> Result<(), TableError> {
        check_name("subsystem", self.subsystem())?;
        if let Some(v) = self.volume() {
            check_name("volume", v)?;
        }
        Ok(())
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableId::Subsystem(s) => write!(f, "subsystem {s}"),
            TableId::Volume { subsystem, volume } => write!(f, "volume {subsystem}/{volume}"),
        }
    }
}

/// The host's logical session id (one backup-program invocation).
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

impl TryFrom<String> for SessionId {
    type Error = TableError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SessionId::new(s)
    }
}

impl From<SessionId> for String {
    fn from(s: SessionId) -> String {
        s.0
    }
}

impl SessionId {
    /// Builds a session id; 1..=64 ASCII graphic characters.
    pub fn new(id: impl Into<String>) -> Result<SessionId, TableError> {
        let id = id.into();
        check_name("session id", &id)?;
        Ok(SessionId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SessionId {
    type Err = TableError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SessionId::new(s)
    }
}

/// The subsystem-local number of a session (`01..FF`); never 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct PhysSessionId(u8);

impl TryFrom<u8> for PhysSessionId {
    type Error = TableError;
    fn try_from(n: u8) -> Result<Self, Self::Error> {
        PhysSessionId::new(n)
    }
}

impl From<PhysSessionId> for u8 {
    fn from(p: PhysSessionId) -> u8 {
        p.0
    }
}

impl PhysSessionId {
    /// Builds a physical session id; 0 is [`TableError::InvalidField`].
    pub fn new(n: u8) -> Result<PhysSessionId, TableError> {
        if n == 0 {
            return Err(TableError::InvalidField {
                field: "physical session id",
                reason: "must be 1..=255, got 0".into(),
            });
        }
        Ok(PhysSessionId(n))
    }

    /// The number, 1..=255.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for PhysSessionId {
    /// Two hex digits, as the storage control prints it (`0A`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02X}", self.0)
    }
}

/// Why a session was terminated.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TerminateReason {
    /// Recovery after an operating-system IPL.
    Ipl,
    /// Recovery after a restart of the resource manager (SDM).
    RmRestart,
    /// Recovery after an abnormal end of the backup program.
    Abend,
    /// A reset notification whose reported extents did not match the table.
    ResetMismatch,
    /// Ended by the operator (TERMSESS).
    Operator,
    /// The start failed part-way (one subsystem refused); the rows already
    /// written are closed with this reason when the start is rolled back.
    StartFailed,
    /// A map of the session was stopped by something other than the session
    /// (a forced stop of a map it reads through, or the withdraw of another
    /// session that did): its time-zero image is no longer whole.
    ImageLost,
}

impl TerminateReason {
    /// Every reason, in wire-code order.
    pub const ALL: [TerminateReason; 7] = [
        TerminateReason::Ipl,
        TerminateReason::RmRestart,
        TerminateReason::Abend,
        TerminateReason::ResetMismatch,
        TerminateReason::Operator,
        TerminateReason::StartFailed,
        TerminateReason::ImageLost,
    ];

    /// The display name (`ipl`, `rm-restart`, `abend`, `reset-mismatch`, `operator`,
    /// `start-failed`, `image-lost`).
    pub fn name(self) -> &'static str {
        match self {
            TerminateReason::Ipl => "ipl",
            TerminateReason::RmRestart => "rm-restart",
            TerminateReason::Abend => "abend",
            TerminateReason::ResetMismatch => "reset-mismatch",
            TerminateReason::Operator => "operator",
            TerminateReason::StartFailed => "start-failed",
            TerminateReason::ImageLost => "image-lost",
        }
    }
}

impl fmt::Display for TerminateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TerminateReason {
    type Err = TableError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TerminateReason::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| TableError::InvalidField {
                field: "terminate reason",
                reason: format!(
                    "unknown reason {s:?} (expected ipl, rm-restart, abend, reset-mismatch, operator, start-failed or image-lost)"
                ),
            })
    }
}

/// Status written by one entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryStatus {
    /// The session was established (its domain is the entry's extents).
    Initiated,
    /// The session completed successfully (terminal).
    Completed,
    /// The session was ended by recovery or the operator (terminal).
    Terminated {
        /// Why.
        reason: TerminateReason,
    },
    /// The session was resumed after a reset notification whose extents matched.
    Resumed,
    /// The backup program released serialization: the time-zero image is
    /// fixed and applications run again, while the physical copy goes on
    /// (the patent's "logically complete"). Still open: only Completed ends it.
    LogicallyComplete,
}

impl EntryStatus {
    /// `Completed` and `Terminated` end a session; nothing follows them.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            EntryStatus::Completed | EntryStatus::Terminated { .. }
        )
    }

    /// `Initiated`, `Resumed` or `LogicallyComplete`: the session is still running on this row.
    pub fn is_open(self) -> bool {
        !self.is_terminal()
    }
}

impl fmt::Display for EntryStatus {
    /// `initiated`, `completed`, `terminated(<reason>)`, `resumed`, `logically-complete`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryStatus::Initiated => f.write_str("initiated"),
            EntryStatus::Completed => f.write_str("completed"),
            EntryStatus::Terminated { reason } => write!(f, "terminated({reason})"),
            EntryStatus::Resumed => f.write_str("resumed"),
            EntryStatus::LogicallyComplete => f.write_str("logically-complete"),
        }
    }
}

/// One row of an activity table, as stored (with its sequence number).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ActivityEntry {
    /// Sequence number; strictly increasing within a table, never reused.
    pub seq: u64,
    /// The host's logical session id.
    pub session_id: SessionId,
    /// The subsystem's number for the session.
    pub phys_session_id: PhysSessionId,
    /// Subsystem the row is about (equals the table's subsystem).
    pub subsystem: String,
    /// Volume the row is about; `None` for subsystem-level rows.
    pub volume: Option<String>,
    /// Track extents of the session's domain on that volume.
    pub extents: ExtentSet,
    /// What happened.
    pub status: EntryStatus,
    /// The backup program that owns the session, if known.
    pub program: Option<String>,
    /// The host that started the session (its owner), if recorded; rows
    /// written before record version 2 carry none.
    pub host: Option<String>,
    /// Wall-clock (or simulated) time of the event, milliseconds since the Unix epoch.
    pub time_unix_ms: u64,
}

/// An entry to append: everything but the sequence number, which the table assigns.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NewEntry {
    /// The host's logical session id.
    pub session_id: SessionId,
    /// The subsystem's number for the session.
    pub phys_session_id: PhysSessionId,
    /// Subsystem the row is about (must equal the table's subsystem).
    pub subsystem: String,
    /// Volume the row is about; `None` for subsystem-level rows. A per-volume
    /// table only takes rows naming its own volume.
    pub volume: Option<String>,
    /// Track extents of the session's domain on that volume.
    pub extents: ExtentSet,
    /// What happened.
    pub status: EntryStatus,
    /// The backup program that owns the session, if known.
    pub program: Option<String>,
    /// The host that started the session (its owner), if known.
    pub host: Option<String>,
    /// Time of the event, milliseconds since the Unix epoch.
    pub time_unix_ms: u64,
}

impl NewEntry {
    /// Checks names and the program field (see the module invariants).
    pub fn validate(&self) -> Result<(), TableError> {
        check_name("subsystem", &self.subsystem)?;
        if let Some(v) = &self.volume {
            check_name("volume", v)?;
        }
        if let Some(p) = &self.program {
            check_program(p)?;
        }
        if let Some(h) = &self.host {
            check_name("host", h)?;
        }
        Ok(())
    }

    /// The stored entry with sequence number `seq`.
    pub fn with_seq(self, seq: u64) -> ActivityEntry {
        ActivityEntry {
            seq,
            session_id: self.session_id,
            phys_session_id: self.phys_session_id,
            subsystem: self.subsystem,
            volume: self.volume,
            extents: self.extents,
            status: self.status,
            program: self.program,
            host: self.host,
            time_unix_ms: self.time_unix_ms,
        }
    }
}

impl ActivityEntry {
    /// Whether this row may be stored in table `id`: same subsystem, and for a
    /// per-volume table, the same volume.
    pub fn belongs_to(&self, id: &TableId) -> bool {
        entry_belongs(&self.subsystem, self.volume.as_deref(), id)
    }
}

pub(crate) fn entry_belongs(subsystem: &str, volume: Option<&str>, id: &TableId) -> bool {
    subsystem == id.subsystem()
        && match id.volume() {
            None => true,
            Some(v) => volume == Some(v),
        }
}

/// 1..=64 ASCII graphic characters.
pub(crate) fn check_name(field: &'static str, s: &str) -> Result<(), TableError> {
    if s.is_empty() || s.len() > MAX_NAME_LEN {
        return Err(TableError::InvalidField {
            field,
            reason: format!("must be 1..={MAX_NAME_LEN} characters, got {}", s.len()),
        });
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(TableError::InvalidField {
            field,
            reason: format!("{s:?} contains {c:?}; only printable ASCII without spaces is allowed"),
        });
    }
    Ok(())
}

/// Checks a program name as an entry's `program` field must be: at most
/// [`MAX_PROGRAM_LEN`] bytes, no control characters. Callers that take a
/// program name from a user check it with this before they start anything.
pub fn check_program(s: &str) -> Result<(), TableError> {
    if s.len() > MAX_PROGRAM_LEN {
        return Err(TableError::InvalidField {
            field: "program",
            reason: format!("longer than {MAX_PROGRAM_LEN} bytes ({})", s.len()),
        });
    }
    if s.chars().any(char::is_control) {
        return Err(TableError::InvalidField {
            field: "program",
            reason: format!("{s:?} contains a control character"),
        });
    }
    Ok(())
}
