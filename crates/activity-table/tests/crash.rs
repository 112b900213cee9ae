//! Crash and corruption: torn tails at every byte offset, damaged records in
//! the middle, records out of order or in the wrong table.

mod common;

use activity_table::{ActivityTable, TableError};
use common::*;

const RECORDS: u64 = 6;

/// Cutting the file at every offset inside the last three records keeps
/// exactly the records that end at or before the cut, truncates the rest, and
/// a following append and reopen work.
#[test]
fn truncation_at_every_offset_keeps_the_complete_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let src = file_in(&dir, "full");
    let ends = build_table(&src, RECORDS);
    let full = std::fs::read(&src).unwrap();
    let first_cut = ends[ends.len() - 4]; // start of the third-last record
    let path = file_in(&dir, "cut");
    for cut in first_cut..=full.len() as u64 {
        std::fs::write(&path, &full[..cut as usize]).unwrap();
        let complete = ends.iter().filter(|&&e| e <= cut).count() as u64;
        let intact_end = ends[complete as usize - 1];
        let (mut t, report) = ActivityTable::open(&path, sub_id()).unwrap();
        assert_eq!(t.entries(), &expected_prefix(complete)[..], "cut {cut}");
        assert_eq!(report.truncated_bytes(), cut - intact_end, "cut {cut}");
        assert_eq!(report.torn_tail.is_some(), cut != intact_end, "cut {cut}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), intact_end);
        assert_eq!(t.append(entry(complete)).unwrap(), complete + 1);
        drop(t);
        let (t, report) = ActivityTable::open(&path, sub_id()).unwrap();
        assert_eq!(t.entries(), &expected_prefix(complete + 1)[..], "cut {cut}");
        assert_eq!(report.truncated_bytes(), 0);
    }
}

/// A tail of zeros (size updated, data never written) is a torn tail too.
#[test]
fn zero_filled_tail_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "t");
    let ends = build_table(&path, 3);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&path, &bytes).unwrap();
    let (t, report) = ActivityTable::open(&path, sub_id()).unwrap();
    assert_eq!(t.entries(), &expected_prefix(3)[..]);
    let tail = report.torn_tail.unwrap();
    assert_eq!((tail.offset, tail.len), (ends[2], 4096));
}

/// Flipping any byte of a record in the middle is CorruptRecord at that
/// record's offset (never a silent drop or a truncation), and salvage keeps
/// every other record.
#[test]
fn every_flipped_byte_of_a_middle_record_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let src = file_in(&dir, "full");
    let ends = build_table(&src, 5);
    let full = std::fs::read(&src).unwrap();
    let (start, end) = (ends[1], ends[2]); // record index 2 (seq 3)
    let path = file_in(&dir, "bad");
    for i in start..end {
        let mut bytes = full.clone();
        bytes[i as usize] ^= if i % 2 == 0 { 0xff } else { 0x01 };
        std::fs::write(&path, &bytes).unwrap();
        match ActivityTable::open(&path, sub_id()).unwrap_err() {
            TableError::CorruptRecord {
                offset, good_after, ..
            } => {
                assert_eq!(offset, start, "byte {i}");
                assert_eq!(good_after, 2, "byte {i}");
            }
            other => panic!("byte {i}: expected CorruptRecord, got {other}"),
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "strict open must not modify"
        );
    }
    // Salvage the last variant.
    let (mut t, report) = ActivityTable::open_salvage(&path, sub_id()).unwrap();
    let mut want = expected_prefix(5);
    want.remove(2);
    assert_eq!(t.entries(), &want[..]);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].offset, start);
    assert_eq!(report.skipped[0].len, end - start);
    let copy = report.damaged_copy.clone().unwrap();
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        {
            let mut b = full.clone();
            b[end as usize - 1] ^= if (end - 1) % 2 == 0 { 0xff } else { 0x01 };
            b
        },
        "the damaged file is kept for inspection"
    );
    assert_eq!(
        t.append(entry(9)).unwrap(),
        6,
        "seq continues after the max kept"
    );
    drop(t);
    let (t, report) = ActivityTable::open(&path, sub_id()).unwrap();
    assert_eq!(t.entries().len(), 5);
    assert!(report.skipped.is_empty());
}

/// A record copied out of order (seq not after the previous one) is an error.
#[test]
fn non_increasing_seq_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "t");
    let ends = build_table(&path, 3);
    let mut bytes = std::fs::read(&path).unwrap();
    let header_len = 20 + u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    // The first record's frame, appended again at the end: seq 1 after seq 3.
    let first_record = bytes[header_len..ends[0] as usize].to_vec();
    bytes.extend_from_slice(&first_record);
    std::fs::write(&path, &bytes).unwrap();
    match ActivityTable::open(&path, sub_id()).unwrap_err() {
        TableError::SeqNotIncreasing {
            offset, prev, seq, ..
        } => assert_eq!((offset, prev, seq), (ends[2], 3, 1)),
        other => panic!("{other}"),
    }
    assert_eq!(
        ActivityTable::open(&path, sub_id()).unwrap_err().kind(),
        activity_table::TableErrorKind::Corrupt
    );
    let (t, report) = ActivityTable::open_salvage(&path, sub_id()).unwrap();
    assert_eq!(t.entries(), &expected_prefix(3)[..]);
    assert_eq!(report.skipped.len(), 1);
}

/// A record of another table spliced in is a misdirected entry, not data.
#[test]
fn record_of_another_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "sub");
    build_table(&path, 2);
    let other = file_in(&dir, "other");
    let other_id = activity_table::TableId::Subsystem("SS09".into());
    let (mut t, _) = ActivityTable::open(&other, other_id).unwrap();
    let before = t.len_bytes();
    let mut e = entry(7);
    e.subsystem = "SS09".into();
    for _ in 0..3 {
        t.append(e.clone()).unwrap();
    }
    let other_bytes = std::fs::read(&other).unwrap();
    let rec_len = (t.len_bytes() - before) as usize / 3;
    let last = &other_bytes[other_bytes.len() - rec_len..]; // seq 3 > 2
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() as u64;
    bytes.extend_from_slice(last);
    std::fs::write(&path, &bytes).unwrap();
    match ActivityTable::open(&path, sub_id()).unwrap_err() {
        TableError::MisdirectedEntry {
            subsystem, offset, ..
        } => assert_eq!((subsystem.as_str(), offset), ("SS09", Some(at))),
        other => panic!("{other}"),
    }
}

/// Read-only inspection reports a torn tail without truncating it.
#[test]
fn read_reports_without_modifying() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(&dir, "t");
    let ends = build_table(&path, 3);
    let full = std::fs::read(&path).unwrap();
    let cut = &full[..full.len() - 5];
    std::fs::write(&path, cut).unwrap();
    let (id, entries, report) = ActivityTable::read(&path).unwrap();
    assert_eq!(id, sub_id());
    assert_eq!(entries, expected_prefix(2));
    assert_eq!(report.torn_tail.unwrap().offset, ends[1]);
    assert_eq!(std::fs::read(&path).unwrap(), cut);
}
