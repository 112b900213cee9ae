//! Per-session summaries for the resource manager (patent A recovery).
//!
//! A session's *row* is one (session id, volume) pair; its state is the status
//! of the row's latest entry. The recorded domain is the extent set of the
//! row's latest `Initiated` entry (later `Completed`/`Terminated`/`Resumed`
//! entries may carry any extents; they do not change the domain).

use std::collections::BTreeMap;

use geometry::ExtentSet;

use crate::table::ActivityTable;
use crate::types::{ActivityEntry, EntryStatus, PhysSessionId, SessionId};

/// The latest state of one (session, volume) row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowSummary {
    /// Subsystem of the row.
    pub subsystem: String,
    /// Volume of the row (`None` for subsystem-level rows).
    pub volume: Option<String>,
    /// Physical session id of the latest entry.
    pub phys_session_id: PhysSessionId,
    /// Status of the latest entry.
    pub status: EntryStatus,
    /// The recorded domain: extents of the latest `Initiated` entry (or of the
    /// latest entry if the row has no `Initiated` entry).
    pub extents: ExtentSet,
    /// Program of the latest entry that named one.
    pub program: Option<String>,
    /// Seq of the row's first entry.
    pub first_seq: u64,
    /// Seq of the row's latest entry.
    pub last_seq: u64,
    /// Time of the row's latest entry (ms since the Unix epoch).
    pub last_time_unix_ms: u64,
}

/// Everything a table says about one logical session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSummary {
    /// The session.
    pub session_id: SessionId,
    /// Rows by volume (`None` = subsystem-level row).
    pub rows: BTreeMap<Option<String>, RowSummary>,
}

impl SessionSummary {
    /// Rows whose latest status is `Initiated` or `Resumed`.
    pub fn open_rows(&self) -> impl Iterator<Item = &RowSummary> {
        self.rows.values().filter(|r| r.status.is_open())
    }

    /// Some row is still `Initiated`/`Resumed` ("initiated but not completed").
    pub fn is_open(&self) -> bool {
        self.open_rows().next().is_some()
    }

    /// Every row's latest status is `Completed`.
    pub fn is_completed(&self) -> bool {
        self.rows
            .values()
            .all(|r| r.status == EntryStatus::Completed)
    }

    /// Some row's latest status is `Terminated`.
    pub fn is_terminated(&self) -> bool {
        self.rows
            .values()
            .any(|r| matches!(r.status, EntryStatus::Terminated { .. }))
    }
}

/// Summarizes `entries` (in seq order) per session id.
pub fn summarize(entries: &[ActivityEntry]) -> BTreeMap<SessionId, SessionSummary> {
    let mut out: BTreeMap<SessionId, SessionSummary> = BTreeMap::new();
    for e in entries {
        let s = out
            .entry(e.session_id.clone())
            .or_insert_with(|| SessionSummary {
                session_id: e.session_id.clone(),
                rows: BTreeMap::new(),
            });
        let row = s
            .rows
            .entry(e.volume.clone())
            .or_insert_with(|| RowSummary {
                subsystem: e.subsystem.clone(),
                volume: e.volume.clone(),
                phys_session_id: e.phys_session_id,
                status: e.status,
                extents: e.extents.clone(),
                program: None,
                first_seq: e.seq,
                last_seq: e.seq,
                last_time_unix_ms: e.time_unix_ms,
            });
        row.phys_session_id = e.phys_session_id;
        row.status = e.status;
        row.last_seq = e.seq;
        row.last_time_unix_ms = e.time_unix_ms;
        if e.status == EntryStatus::Initiated {
            row.extents = e.extents.clone();
        }
        if e.program.is_some() {
            row.program = e.program.clone();
        }
    }
    out
}

impl ActivityTable {
    /// Per session id, the latest status of each of its rows (see [`summarize`]).
    pub fn sessions(&self) -> BTreeMap<SessionId, SessionSummary> {
        summarize(self.entries())
    }
}
