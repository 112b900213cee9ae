//! Round trips, validation, identity checks, locking and fault injection.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use activity_table::{
    ActivityTable, EntryStatus, FaultSite, NewEntry, PhysSessionId, SessionId, TableError, TableId,
    TerminateReason,
};
use common::*;

#[test]
fn entries_survive_reopen_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "ss01.table");
    build_table(&path, 12);
    let (t, report) = ActivityTable::open(&path, sub_id()).unwrap();
    assert!(!report.created);
    assert_eq!(report.records, 12);
    assert_eq!(report.truncated_bytes(), 0);
    assert_eq!(t.entries(), &expected_prefix(12)[..]);
    assert_eq!(t.next_seq(), 13);
}

#[test]
fn new_table_is_empty_durable_and_starts_at_seq_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "new.table");
    let (mut t, report) = ActivityTable::open(&path, vol_id("VOL1")).unwrap();
    assert!(report.created);
    assert!(t.entries().is_empty());
    let mut e = entry(0);
    e.volume = Some("VOL1".into());
    assert_eq!(t.append(e).unwrap(), 1);
    drop(t);
    let (id, entries, _) = ActivityTable::read(&path).unwrap();
    assert_eq!(id, vol_id("VOL1"));
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].seq, 1);
}

#[test]
fn append_batch_assigns_consecutive_seqs_and_persists_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "t");
    let (mut t, _) = ActivityTable::open(&path, sub_id()).unwrap();
    t.append(entry(0)).unwrap();
    let seqs = t.append_batch(&[entry(1), entry(2), entry(3)]).unwrap();
    assert_eq!(seqs, vec![2, 3, 4]);
    assert!(t.append_batch(&[]).unwrap().is_empty());
    drop(t);
    let (t, _) = ActivityTable::open(&path, sub_id()).unwrap();
    assert_eq!(t.entries(), &expected_prefix(4)[..]);
}

#[test]
fn wrong_table_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "t");
    build_table(&path, 2);
    let err = ActivityTable::open(&path, vol_id("VOL1")).unwrap_err();
    match err {
        TableError::WrongTable {
            expected, found, ..
        } => {
            assert_eq!(expected, vol_id("VOL1"));
            assert_eq!(found, sub_id());
        }
        other => panic!("expected WrongTable, got {other}"),
    }
    let err = ActivityTable::open(&path, TableId::Subsystem("SS02".into())).unwrap_err();
    assert!(matches!(err, TableError::WrongTable { .. }), "{err}");
}

#[test]
fn foreign_and_damaged_headers_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "foreign");
    std::fs::write(&path, b"#!/bin/sh\necho not a table\n").unwrap();
    let err = ActivityTable::open(&path, sub_id()).unwrap_err();
    assert!(matches!(err, TableError::NotATable { .. }), "{err}");
    std::fs::write(&path, b"").unwrap();
    let err = ActivityTable::open(&path, sub_id()).unwrap_err();
    assert!(matches!(err, TableError::NotATable { .. }), "{err}");

    let path = file_in(&dir, "t");
    build_table(&path, 1);
    let good = std::fs::read(&path).unwrap();
    // Every byte of the fixed header and body: a flip is an error, never a silent open.
    let header_len = 20 + u32::from_le_bytes(good[12..16].try_into().unwrap()) as usize;
    for i in 8..header_len {
        let mut bad = good.clone();
        bad[i] ^= 0x5a;
        std::fs::write(&path, &bad).unwrap();
        let err = ActivityTable::open(&path, sub_id()).unwrap_err();
        assert!(
            matches!(
                err,
                TableError::BadHeader { .. } | TableError::UnsupportedVersion { .. }
            ),
            "byte {i}: {err}"
        );
    }
}

#[test]
fn misdirected_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut t, _) = ActivityTable::open(file_in(&dir, "v"), vol_id("VOL1")).unwrap();
    let mut e = entry(0);
    e.volume = Some("VOL2".into());
    assert!(matches!(
        t.append(e).unwrap_err(),
        TableError::MisdirectedEntry { offset: None, .. }
    ));
    let mut e = entry(0);
    e.volume = None;
    assert!(matches!(
        t.append(e).unwrap_err(),
        TableError::MisdirectedEntry { .. }
    ));
    let mut e = entry(0);
    e.subsystem = "SS02".into();
    e.volume = Some("VOL1".into());
    assert!(matches!(
        t.append(e).unwrap_err(),
        TableError::MisdirectedEntry { .. }
    ));
    assert!(t.entries().is_empty());
    assert_eq!(t.next_seq(), 1);
}

#[test]
fn invalid_fields_are_refused_with_their_name() {
    for bad in ["", "has space", "tab\t", &"x".repeat(65), "é"] {
        match SessionId::new(bad) {
            Err(TableError::InvalidField { field, .. }) => assert_eq!(field, "session id"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert!(SessionId::new("x".repeat(64)).is_ok());
    assert!(matches!(
        PhysSessionId::new(0),
        Err(TableError::InvalidField { .. })
    ));
    assert_eq!(PhysSessionId::new(255).unwrap().to_string(), "FF");

    let dir = tempfile::tempdir().unwrap();
    let (mut t, _) = ActivityTable::open(file_in(&dir, "t"), sub_id()).unwrap();
    let mut e = entry(0);
    e.program = Some("bad\nname".into());
    assert!(matches!(
        t.append(e).unwrap_err(),
        TableError::InvalidField {
            field: "program",
            ..
        }
    ));
    let mut e = entry(0);
    e.volume = Some(String::new());
    assert!(matches!(
        t.append(e).unwrap_err(),
        TableError::InvalidField {
            field: "volume",
            ..
        }
    ));
    assert!(matches!(
        ActivityTable::open(file_in(&dir, "u"), TableId::Subsystem("a b".into())).unwrap_err(),
        TableError::InvalidField { .. }
    ));
}

#[test]
fn terminate_reasons_have_stable_names() {
    let names: Vec<String> = TerminateReason::ALL.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        names,
        [
            "ipl",
            "rm-restart",
            "abend",
            "reset-mismatch",
            "operator",
            "start-failed",
            "image-lost"
        ]
    );
    for r in TerminateReason::ALL {
        assert_eq!(r.name().parse::<TerminateReason>().unwrap(), r);
    }
    assert!("reboot".parse::<TerminateReason>().is_err());
    assert_eq!(
        EntryStatus::Terminated {
            reason: TerminateReason::Abend
        }
        .to_string(),
        "terminated(abend)"
    );
}

#[test]
fn second_open_of_the_same_file_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "t");
    let (_t, _) = ActivityTable::open(&path, sub_id()).unwrap();
    assert!(matches!(
        ActivityTable::open(&path, sub_id()).unwrap_err(),
        TableError::Locked { .. }
    ));
}

#[test]
fn injected_append_fault_writes_nothing_and_table_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "t");
    let (mut t, _) = ActivityTable::open(&path, sub_id()).unwrap();
    t.append(entry(0)).unwrap();
    let fail = Arc::new(AtomicBool::new(true));
    let f = fail.clone();
    t.set_fault_hook(Some(Arc::new(move |site| {
        if site == FaultSite::TableAppend && f.load(Ordering::SeqCst) {
            Err(std::io::Error::from_raw_os_error(5))
        } else {
            Ok(())
        }
    })));
    let len = t.len_bytes();
    match t.append(entry(1)).unwrap_err() {
        TableError::Io { op, source, .. } => {
            assert_eq!(op, "table.append");
            assert_eq!(source.raw_os_error(), Some(5));
        }
        other => panic!("{other}"),
    }
    assert_eq!(t.len_bytes(), len);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    fail.store(false, Ordering::SeqCst);
    assert_eq!(t.append(entry(1)).unwrap(), 2);
    drop(t);
    let (t, _) = ActivityTable::open(&path, sub_id()).unwrap();
    assert_eq!(t.entries(), &expected_prefix(2)[..]);
}

#[test]
fn failed_sync_poisons_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "t");
    let (mut t, _) = ActivityTable::open(&path, sub_id()).unwrap();
    t.append(entry(0)).unwrap();
    t.set_fault_hook(Some(Arc::new(|site| {
        if site == FaultSite::TableSync {
            Err(std::io::Error::from_raw_os_error(5))
        } else {
            Ok(())
        }
    })));
    assert!(matches!(
        t.append(entry(1)).unwrap_err(),
        TableError::Io {
            op: "table.sync",
            ..
        }
    ));
    assert_eq!(t.entries().len(), 1, "a failed append is not in memory");
    t.set_fault_hook(None);
    assert!(matches!(
        t.append(entry(2)).unwrap_err(),
        TableError::Poisoned {
            op: "fdatasync",
            ..
        }
    ));
    drop(t);
    // The write reached the file before the sync failed: the outcome of a
    // failed append is unknown, and reopening recovers whatever is intact.
    let (mut t, _) = ActivityTable::open(&path, sub_id()).unwrap();
    assert_eq!(t.entries(), &expected_prefix(2)[..]);
    assert_eq!(t.append(entry(2)).unwrap(), 3);
}

#[test]
fn sessions_summarize_latest_status_per_volume() {
    let dir = tempfile::tempdir().unwrap();
    let (mut t, _) = ActivityTable::open(file_in(&dir, "t"), sub_id()).unwrap();
    let mk = |sid: &str, vol: &str, status, ext: &[(u64, u64)]| NewEntry {
        session_id: SessionId::new(sid).unwrap(),
        phys_session_id: PhysSessionId::new(7).unwrap(),
        subsystem: SUB.into(),
        volume: Some(vol.into()),
        extents: extents(ext),
        status,
        program: None,
        host: None,
        time_unix_ms: 5,
    };
    t.append(mk("A", "V1", EntryStatus::Initiated, &[(0, 9)]))
        .unwrap();
    t.append(mk("A", "V2", EntryStatus::Initiated, &[(5, 6)]))
        .unwrap();
    t.append(mk("B", "V1", EntryStatus::Initiated, &[(20, 29)]))
        .unwrap();
    t.append(mk("A", "V1", EntryStatus::Completed, &[]))
        .unwrap();
    t.append(mk("B", "V1", EntryStatus::Completed, &[]))
        .unwrap();
    let s = t.sessions();
    assert_eq!(s.len(), 2);
    let a = &s[&SessionId::new("A").unwrap()];
    assert!(a.is_open());
    assert!(!a.is_completed());
    let open: Vec<_> = a.open_rows().map(|r| r.volume.clone()).collect();
    assert_eq!(open, vec![Some("V2".to_string())]);
    let v1 = &a.rows[&Some("V1".to_string())];
    assert_eq!(v1.status, EntryStatus::Completed);
    assert_eq!(
        v1.extents,
        extents(&[(0, 9)]),
        "domain comes from Initiated"
    );
    assert_eq!((v1.first_seq, v1.last_seq), (1, 4));
    let b = &s[&SessionId::new("B").unwrap()];
    assert!(b.is_completed() && !b.is_open() && !b.is_terminated());
}

#[test]
fn json_form_of_public_types_is_validated() {
    let e = entry(2).with_seq(3);
    let json = serde_json::to_string(&e).unwrap();
    assert!(
        json.contains(r#""status":{"terminated":{"reason":"ipl"}}"#),
        "{json}"
    );
    assert!(json.contains(r#""session_id":"DUMP.JOB2""#), "{json}");
    let back: activity_table::ActivityEntry = serde_json::from_str(&json).unwrap();
    assert_eq!(back, e);
    assert_eq!(
        serde_json::to_string(&TerminateReason::RmRestart).unwrap(),
        r#""rm-restart""#
    );
    assert!(serde_json::from_str::<PhysSessionId>("0").is_err());
    assert!(serde_json::from_str::<SessionId>(r#""two words""#).is_err());
    assert_eq!(
        serde_json::to_string(&vol_id("V1")).unwrap(),
        r#"{"volume":{"subsystem":"SS01","volume":"V1"}}"#
    );
}
