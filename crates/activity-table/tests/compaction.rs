//! Compaction: filtering, seq preservation, and crash safety around the rename.

mod common;

use std::sync::Arc;

use activity_table::{ActivityTable, EntryStatus, FaultSite, TableError};
use common::*;

#[test]
fn compaction_keeps_selected_entries_and_never_reuses_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "t");
    build_table(&path, 10);
    let (mut t, _) = ActivityTable::open(&path, sub_id()).unwrap();
    // Drop every terminal row and also the last entry (seq 10), so the file's
    // max seq falls below the next seq.
    let report = t
        .compact(|e| !e.status.is_terminal() && e.seq != 10)
        .unwrap();
    let want: Vec<_> = expected_prefix(10)
        .into_iter()
        .filter(|e| !e.status.is_terminal() && e.seq != 10)
        .collect();
    assert_eq!(t.entries(), &want[..]);
    assert_eq!(report.entries_before, 10);
    assert_eq!(report.entries_after, want.len());
    assert!(report.bytes_after < report.bytes_before);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), report.bytes_after);
    assert_eq!(t.next_seq(), 11);
    assert_eq!(t.append(entry(10)).unwrap(), 11);
    drop(t);
    let (mut t, _) = ActivityTable::open(&path, sub_id()).unwrap();
    assert_eq!(t.entries().len(), want.len() + 1);
    assert!(t.entries().windows(2).all(|w| w[0].seq < w[1].seq));
    // Compact away everything: the seq floor in the header still holds.
    t.compact(|_| false).unwrap();
    drop(t);
    let (mut t, _) = ActivityTable::open(&path, sub_id()).unwrap();
    assert!(t.entries().is_empty());
    assert_eq!(t.append(entry(0)).unwrap(), 12);
    assert!(!crate::common::file_in(&dir, "t.tmp").exists());
}

#[test]
fn failure_before_rename_leaves_the_old_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "t");
    build_table(&path, 6);
    let before = std::fs::read(&path).unwrap();
    let (mut t, _) = ActivityTable::open(&path, sub_id()).unwrap();
    t.set_fault_hook(Some(Arc::new(|site| {
        if site == FaultSite::TableCompactRename {
            Err(std::io::Error::from_raw_os_error(5))
        } else {
            Ok(())
        }
    })));
    assert!(matches!(
        t.compact(|e| e.status == EntryStatus::Initiated)
            .unwrap_err(),
        TableError::Io {
            op: "table.compact.rename",
            ..
        }
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(
        !file_in(&dir, "t.tmp").exists(),
        "temp file removed after a failure"
    );
    // The table is still usable and complete.
    assert_eq!(t.entries(), &expected_prefix(6)[..]);
    t.set_fault_hook(None);
    assert_eq!(t.append(entry(6)).unwrap(), 7);
    drop(t);
    let (t, _) = ActivityTable::open(&path, sub_id()).unwrap();
    assert_eq!(t.entries(), &expected_prefix(7)[..]);
}

/// A crash after the new file was written but before the rename leaves a
/// complete temp file next to the old one: open ignores and removes it.
#[test]
fn stale_temp_file_from_a_crash_is_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "t");
    build_table(&path, 4);
    // Make a "compacted" version elsewhere and leave it as the temp file.
    let other = file_in(&dir, "other");
    build_table(&other, 1);
    let tmp = file_in(&dir, "t.tmp");
    std::fs::copy(&other, &tmp).unwrap();
    let (t, report) = ActivityTable::open(&path, sub_id()).unwrap();
    assert_eq!(t.entries(), &expected_prefix(4)[..]);
    assert_eq!(report.removed_temp_files, vec![tmp.clone()]);
    assert!(!tmp.exists());
    // A half-written temp file (crash mid-write) is just as harmless.
    drop(t);
    std::fs::write(&tmp, b"FSIMATBL\x01").unwrap();
    let (t, report) = ActivityTable::open(&path, sub_id()).unwrap();
    assert_eq!(t.entries().len(), 4);
    assert_eq!(report.removed_temp_files.len(), 1);
}

/// Crash right after the rename (before anything else): the new file is complete.
#[test]
fn compacted_file_is_complete_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "t");
    build_table(&path, 8);
    let (mut t, _) = ActivityTable::open(&path, sub_id()).unwrap();
    t.compact(|e| e.seq % 2 == 0).unwrap();
    let kept = t.entries().to_vec();
    let compacted = std::fs::read(&path).unwrap();
    drop(t);
    let copy = file_in(&dir, "copy");
    std::fs::write(&copy, &compacted).unwrap();
    let (t, report) = ActivityTable::open(&copy, sub_id()).unwrap();
    assert_eq!(t.entries(), &kept[..]);
    assert_eq!(report.truncated_bytes(), 0);
    assert_eq!(t.next_seq(), 9);
}
