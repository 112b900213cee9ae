//! The on-disk bytes are exactly what docs/FORMATS.md ("Activity tables")
//! describes: built here by hand, independently of bincode.

mod common;

use activity_table::{
    ActivityTable, EntryStatus, NewEntry, PhysSessionId, SessionId, TableId, TerminateReason,
};
use common::*;

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

#[test]
fn header_and_record_bytes_match_the_documented_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "vol1.table");
    let id = TableId::Volume {
        subsystem: "SS01".into(),
        volume: "VOL1".into(),
    };
    let (mut t, _) = ActivityTable::open(&path, id).unwrap();
    t.append(NewEntry {
        session_id: SessionId::new("JOB7").unwrap(),
        phys_session_id: PhysSessionId::new(0x0a).unwrap(),
        subsystem: "SS01".into(),
        volume: Some("VOL1".into()),
        extents: extents(&[(0, 14), (30, 44)]),
        status: EntryStatus::Terminated {
            reason: TerminateReason::ResetMismatch,
        },
        program: None,
        host: Some("SYS1".into()),
        time_unix_ms: 0x0102_0304_0506_0708,
    })
    .unwrap();
    drop(t);
    let bytes = std::fs::read(&path).unwrap();

    // Header.
    let mut body = Vec::new();
    string(&mut body, "SS01");
    body.push(1); // Some(volume)
    string(&mut body, "VOL1");
    body.extend_from_slice(&1u64.to_le_bytes()); // base_seq
    let mut header = b"FSIMATBL".to_vec();
    header.extend_from_slice(&1u16.to_le_bytes()); // version
    header.extend_from_slice(&0u16.to_le_bytes()); // reserved
    header.extend_from_slice(&(body.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header), &body);
    header.extend_from_slice(&crc.to_le_bytes());
    header.extend_from_slice(&body);
    assert_eq!(header.len(), 53);
    assert_eq!(&bytes[..53], &header[..]);

    // Record.
    let mut payload = vec![2u8]; // record version
    payload.extend_from_slice(&1u64.to_le_bytes()); // seq
    string(&mut payload, "JOB7");
    payload.push(0x0a); // phys session id
    string(&mut payload, "SS01");
    payload.push(1);
    string(&mut payload, "VOL1");
    payload.extend_from_slice(&2u64.to_le_bytes()); // extent count
    for v in [0u64, 14, 30, 44] {
        payload.extend_from_slice(&v.to_le_bytes());
    }
    payload.push(3); // terminated
    payload.push(4); // reset-mismatch
    payload.push(0); // program: None
    payload.push(1); // host: Some
    string(&mut payload, "SYS1");
    payload.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(&bytes[53..], &frame_of(&payload)[..]);
}

fn frame_of(payload: &[u8]) -> Vec<u8> {
    let mut frame = b"ATRC".to_vec();
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&frame), payload);
    frame.extend_from_slice(&crc.to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A version 1 record (written before owner hosts were recorded) is still
/// read: no host, every other field as written. A table holding one takes
/// version 2 records after it.
#[test]
fn version_1_records_are_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "ss01.table");
    let id = TableId::Subsystem("SS01".into());
    let (t, _) = ActivityTable::open(&path, id.clone()).unwrap();
    drop(t);
    let mut payload = vec![1u8]; // record version 1
    payload.extend_from_slice(&1u64.to_le_bytes()); // seq
    string(&mut payload, "JOB7");
    payload.push(0x0a);
    string(&mut payload, "SS01");
    payload.push(1);
    string(&mut payload, "VOL1");
    payload.extend_from_slice(&1u64.to_le_bytes());
    for v in [0u64, 14] {
        payload.extend_from_slice(&v.to_le_bytes());
    }
    payload.push(1); // initiated
    payload.push(0);
    payload.push(1); // program: Some
    string(&mut payload, "ADRDSSU");
    payload.extend_from_slice(&7u64.to_le_bytes());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&frame_of(&payload));
    std::fs::write(&path, &bytes).unwrap();

    let (mut t, report) = ActivityTable::open(&path, id).unwrap();
    assert!(report.skipped.is_empty(), "{report:?}");
    let e = &t.entries()[0];
    assert_eq!(e.session_id.as_str(), "JOB7");
    assert_eq!(e.status, EntryStatus::Initiated);
    assert_eq!(e.program.as_deref(), Some("ADRDSSU"));
    assert_eq!(e.host, None);
    assert_eq!(e.time_unix_ms, 7);
    t.append(NewEntry {
        session_id: SessionId::new("JOB7").unwrap(),
        phys_session_id: PhysSessionId::new(0x0a).unwrap(),
        subsystem: "SS01".into(),
        volume: Some("VOL1".into()),
        extents: extents(&[(0, 14)]),
        status: EntryStatus::LogicallyComplete,
        program: Some("ADRDSSU".into()),
        host: Some("SYS1".into()),
        time_unix_ms: 8,
    })
    .unwrap();
    drop(t);
    let (t, _) = ActivityTable::open(&path, TableId::Subsystem("SS01".into())).unwrap();
    assert_eq!(t.entries().len(), 2);
    assert_eq!(t.entries()[1].status, EntryStatus::LogicallyComplete);
    assert_eq!(t.entries()[1].host.as_deref(), Some("SYS1"));
}

/// A record whose checksum holds but whose version byte is unknown is an
/// "unsupported version" error naming its offset, not a torn tail.
#[test]
fn unknown_record_version_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "t");
    let ends = build_table(&path, 2);
    let mut bytes = std::fs::read(&path).unwrap();
    let start = ends[0] as usize;
    bytes[start + 12] = 9; // version byte of the second record
    let len = (ends[1] - ends[0]) as usize;
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&bytes[start..start + 8]),
        &bytes[start + 12..start + len],
    );
    bytes[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    match ActivityTable::open(&path, sub_id()).unwrap_err() {
        activity_table::TableError::UnsupportedVersion {
            what,
            version,
            offset,
            ..
        } => assert_eq!((what, version, offset), ("record", 9, ends[0])),
        other => panic!("{other}"),
    }
    // Salvage leaves it out and says why.
    let (t, report) = ActivityTable::open_salvage(&path, sub_id()).unwrap();
    assert_eq!(t.entries(), &expected_prefix(1)[..]);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].offset, ends[0]);
    assert!(
        report.skipped[0].reason.contains("version 9"),
        "{:?}",
        report.skipped
    );
}
