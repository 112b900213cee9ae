//! Shared helpers for the activity-table integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use activity_table::{
    ActivityTable, EntryStatus, NewEntry, PhysSessionId, SessionId, TableId, TerminateReason,
};
use geometry::{Extent, ExtentSet};

pub const SUB: &str = "SS01";

pub fn sub_id() -> TableId {
    TableId::Subsystem(SUB.to_string())
}

pub fn vol_id(v: &str) -> TableId {
    TableId::Volume {
        subsystem: SUB.to_string(),
        volume: v.to_string(),
    }
}

pub fn extents(list: &[(u64, u64)]) -> ExtentSet {
    list.iter()
        .map(|&(a, b)| Extent::new(a, b).expect("test extents are ordered"))
        .collect()
}

/// A varied entry: session `n`, volume `VOL<n%3>`, status cycling through all kinds.
pub fn entry(n: u64) -> NewEntry {
    let status = match n % 5 {
        0 => EntryStatus::Initiated,
        1 => EntryStatus::Completed,
        2 => EntryStatus::Terminated {
            reason: TerminateReason::ALL[(n as usize / 5) % TerminateReason::ALL.len()],
        },
        3 => EntryStatus::LogicallyComplete,
        _ => EntryStatus::Resumed,
    };
    NewEntry {
        session_id: SessionId::new(format!("DUMP.JOB{n}")).expect("valid id"),
        phys_session_id: PhysSessionId::new((n % 255 + 1) as u8).expect("nonzero"),
        subsystem: SUB.to_string(),
        volume: (n % 5 != 4).then(|| format!("VOL{}", n % 3)),
        extents: extents(&[(n, n + 10), (n + 100, n + 100 + n % 7)]),
        status,
        program: (n % 2 == 0).then(|| "ADRDSSU".to_string()),
        host: (n % 3 != 0).then(|| format!("SYS{}", n % 3)),
        time_unix_ms: 1_700_000_000_000 + n,
    }
}

/// Creates a subsystem table at `path` with `n` entries; returns the file
/// offset where each record ends (index i = end of record i).
pub fn build_table(path: &Path, n: u64) -> Vec<u64> {
    let (mut t, report) = ActivityTable::open(path, sub_id()).expect("create");
    assert!(report.created);
    let mut ends = Vec::new();
    for i in 0..n {
        t.append(entry(i)).expect("append");
        ends.push(t.len_bytes());
    }
    assert_eq!(std::fs::metadata(path).expect("stat").len(), t.len_bytes());
    ends
}

pub fn file_in(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// The entries a table built by `build_table` holds after `k` appends.
pub fn expected_prefix(k: u64) -> Vec<activity_table::ActivityEntry> {
    (0..k).map(|i| entry(i).with_seq(i + 1)).collect()
}
