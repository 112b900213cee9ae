//! Root slots and journal: torn, misdirected and stale data is never taken for valid.

use std::sync::Arc;

use volume_store::{MemStore, TrackStore};

use super::*;

/// Writes `bytes` at journal-relative `offset` of both journal copies.
fn damage_both(store: &MemStore, offset: u64, bytes: &[u8]) {
    for c in 0..COPIES {
        store.write_at(journal_base(c) + offset, bytes).unwrap();
    }
}

fn meta() -> (Arc<MemStore>, MetaStore) {
    let store = Arc::new(MemStore::with_id(META_VOLUME_ID, meta_geometry()));
    let m = MetaStore::new(store.clone(), true);
    (store, m)
}

#[test]
fn blank_store_has_no_root() {
    let (_, m) = meta();
    let scan = m.scan_roots(Some("SS")).unwrap();
    assert!(scan.is_blank());
    assert!(scan.newest().is_none());
}

#[test]
fn newest_valid_generation_wins_and_torn_payload_falls_back() {
    let (store, m) = meta();
    m.write_root(0, 1, ROOT_FLAG_OPEN, "SS", b"first").unwrap();
    m.write_root(1, 2, 0, "SS", b"second").unwrap();
    let scan = m.scan_roots(Some("SS")).unwrap();
    let (h, p) = scan.newest().unwrap();
    assert_eq!((h.generation, p), (2, &b"second"[..]));
    assert_eq!(h.flags, 0);
    // Tear generation 3's payload: its header checks but the payload crc does not.
    m.write_root(0, 3, 0, "SS", b"third!").unwrap();
    store.write_at(ROOT_HEADER_BLOCK_BYTES, b"XX").unwrap();
    let scan = m.scan_roots(Some("SS")).unwrap();
    // One torn copy: the other copy of generation 3 still loads.
    assert!(matches!(&scan.copies[0][0], SlotStatus::Invalid(r) if r.contains("payload")));
    assert_eq!(scan.newest().unwrap().1, b"third!");
    // Both copies torn: generation 2 wins.
    store
        .write_at(ROOT_COPY_BYTES + ROOT_HEADER_BLOCK_BYTES, b"XX")
        .unwrap();
    let scan = m.scan_roots(Some("SS")).unwrap();
    assert!(matches!(scan.slot(0), SlotStatus::Invalid(r) if r.contains("payload")));
    assert_eq!(scan.newest().unwrap().1, b"second");
}

#[test]
fn misdirected_and_foreign_headers_are_invalid() {
    let (store, m) = meta();
    m.write_root(0, 1, 0, "SS", b"p").unwrap();
    // Copy slot 0's header into slot 1: it names slot 0, so it is misdirected.
    let mut h = [0u8; 128];
    store.read_at(0, &mut h).unwrap();
    store.write_at(SLOT_BYTES, &h).unwrap();
    let scan = m.scan_roots(Some("SS")).unwrap();
    assert!(matches!(scan.slot(1), SlotStatus::Invalid(r) if r.contains("misdirected")));
    let scan = m.scan_roots(Some("OTHER")).unwrap();
    assert!(scan.newest().is_none());
    // A flipped header byte is caught by the header crc.
    store.write_at(20, &[0xff]).unwrap();
    let scan = m.scan_roots(Some("SS")).unwrap();
    assert!(matches!(&scan.copies[0][0], SlotStatus::Invalid(r) if r.contains("checksum")));
    assert_eq!(
        scan.newest().unwrap().0.generation,
        1,
        "copy 1 still holds it"
    );
}

#[test]
fn journal_replays_its_generation_and_stops_at_torn_or_stale_records() {
    let (store, m) = meta();
    let mut end = 0;
    for seq in 1..=3u64 {
        end = m
            .append_journal(end, 7, seq, format!("rec{seq}").as_bytes())
            .unwrap();
    }
    let scan = m.scan_journal(7).unwrap();
    assert_eq!(
        scan.records,
        vec![b"rec1".to_vec(), b"rec2".to_vec(), b"rec3".to_vec()]
    );
    assert_eq!((scan.end, scan.stop.clone()), (end, JournalStop::End));
    // After a checkpoint to generation 8 the journal restarts; generation-7 records beyond are the end.
    let e1 = m.append_journal(0, 8, 1, b"new-one").unwrap();
    let scan = m.scan_journal(8).unwrap();
    assert_eq!(scan.records, vec![b"new-one".to_vec()]);
    assert_eq!(scan.end, e1);
    assert_eq!(scan.stop, JournalStop::End);
    // A torn second record: crc fails, replay keeps the first.
    let e2 = m.append_journal(e1, 8, 2, b"second-record").unwrap();
    damage_both(&store, e2 - 3, b"\0\0\0");
    let scan = m.scan_journal(8).unwrap();
    assert_eq!(scan.records.len(), 1);
    assert!(matches!(scan.stop, JournalStop::Torn(_)));
    assert_eq!(scan.end, e1);
}

#[test]
fn codec_rejects_flipped_bits_and_wrong_magic() {
    let blob = codec::encode(*b"TEST", 1, &(1u32, String::from("x"))).unwrap();
    let back: (u32, String) = codec::decode(*b"TEST", 1, &blob).unwrap();
    assert_eq!(back, (1, "x".into()));
    assert!(codec::decode::<(u32, String)>(*b"TEST", 2, &blob).is_err());
    assert!(codec::decode::<(u32, String)>(*b"OTHR", 1, &blob).is_err());
    let mut bad = blob.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let e = codec::decode::<(u32, String)>(*b"TEST", 1, &bad).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Corrupt);
}

#[test]
fn damaged_middle_record_is_corruption_not_a_torn_tail() {
    // Three records; damage the first one's payload, its magic, or zero its header.
    type Damage = fn(&MemStore, u64);
    let damages: [(&str, Damage); 3] = [
        ("payload byte", |s, at| {
            let mut b = [0u8; 1];
            s.read_at(at + JOURNAL_RECORD_HEADER_BYTES + 1, &mut b)
                .unwrap();
            s.write_at(at + JOURNAL_RECORD_HEADER_BYTES + 1, &[b[0] ^ 0xff])
                .unwrap();
        }),
        ("magic", |s, at| s.write_at(at, b"XXXX").unwrap()),
        ("zeroed header", |s, at| s.write_at(at, &[0u8; 32]).unwrap()),
    ];
    for (what, damage) in damages {
        let (store, m) = meta();
        let mut end = 0;
        let mut starts = Vec::new();
        for seq in 1..=3u64 {
            starts.push(end);
            end = m
                .append_journal(end, 5, seq, format!("record-{seq}").as_bytes())
                .unwrap();
        }
        // One damaged copy is repaired from the other.
        damage(&store, journal_base(0) + starts[1]);
        let scan = m.scan_journal(5).unwrap();
        assert_eq!(scan.records.len(), 3, "{what}");
        damage(&store, journal_base(1) + starts[1]);
        if what == "magic" {
            // Only the magic damaged: the checksum still recognises the record.
            let scan = m.scan_journal(5).unwrap();
            assert_eq!(scan.records.len(), 3, "{what}");
            assert_eq!(scan.repaired.len(), 1, "{what}");
            assert!(scan.repaired[0].contains("damaged header field: magic"));
            // With its checksum damaged too it cannot be told from leftovers.
            let mut crc = [0u8; 1];
            for copy in 0..2 {
                let at = journal_base(copy) + starts[1] + 24;
                store.read_at(at, &mut crc).unwrap();
                store.write_at(at, &[crc[0] ^ 0xff]).unwrap();
            }
        }
        let e = m.scan_journal(5).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{what}: {e}");
        let msg = e.to_string();
        assert!(msg.contains("meta.store"), "{what}: {msg}");
        assert!(
            msg.contains(&format!("byte offset {}", JOURNAL_BASE + starts[1])),
            "{what}: {msg}"
        );
        assert!(
            msg.contains(&format!("byte offset {}", JOURNAL_BASE + starts[2])),
            "{what}: {msg}"
        );
        assert!(msg.contains("not a torn tail"), "{what}: {msg}");
    }
}

#[test]
fn damaged_last_record_is_still_a_torn_tail_even_with_stale_records_after_it() {
    let (store, m) = meta();
    // A longer earlier generation leaves stale records beyond the new end.
    let mut end = 0;
    for seq in 1..=6u64 {
        end = m.append_journal(end, 3, seq, b"old-generation").unwrap();
    }
    let e1 = m.append_journal(0, 4, 1, b"a").unwrap();
    let e2 = m.append_journal(e1, 4, 2, b"bb").unwrap();
    damage_both(&store, e2 - 1, b"\xff");
    let scan = m.scan_journal(4).unwrap();
    assert_eq!(scan.records, vec![b"a".to_vec()]);
    assert!(matches!(scan.stop, JournalStop::Torn(_)));
    assert!(end > e2);
}

#[test]
fn a_record_of_a_newer_generation_refuses_the_older_root() {
    let (_store, m) = meta();
    // Generation 9's root was durable (its records exist), generation 8 is what loads.
    m.append_journal(0, 9, 1, b"newer").unwrap();
    let e = m.scan_journal(8).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("generation 9"), "{e}");
    assert!(e.to_string().contains("roll"), "{e}");
    // Older records after a newer root are the clean end.
    assert_eq!(m.scan_journal(10).unwrap().stop, JournalStop::End);
}

fn faulty_meta(
    rules: Vec<volume_store::FaultRule>,
) -> (Arc<volume_store::FaultyStore<MemStore>>, MetaStore) {
    let store = Arc::new(volume_store::FaultyStore::new(
        MemStore::with_id(META_VOLUME_ID, meta_geometry()),
        7,
    ));
    for r in rules {
        store.add_rule(r);
    }
    let reopen_store = store.clone();
    let m = MetaStore::with_recovery(
        store.clone(),
        true,
        Arc::new(move || {
            reopen_store.reopen();
            Ok(reopen_store.clone() as Arc<dyn TrackStore>)
        }),
        Arc::new(volume_store::NoFaults),
    );
    (store, m)
}

#[test]
fn misdirected_failed_and_unflushed_metadata_writes_are_retried_until_verified() {
    use volume_store::{CrashMode, FaultEffect, FaultRule, OpFilter, Trigger};
    // Every other write misdirected, a failed flush (poisons the store), a failed write.
    let (store, m) = faulty_meta(vec![
        FaultRule::new(
            OpFilter::Write,
            Trigger::Probability(0.5),
            FaultEffect::Misdirect,
        ),
        FaultRule::fail_flush(Trigger::Nth(1)),
        FaultRule::new(OpFilter::Write, Trigger::Nth(3), FaultEffect::Eio),
    ]);
    let mut end = 0;
    for gen in 1..=6u64 {
        m.write_root(
            (gen % 2) as u32,
            gen,
            0,
            "SS",
            format!("root {gen}").as_bytes(),
        )
        .unwrap();
        for seq in 1..=3u64 {
            end = m
                .append_journal(if seq == 1 { 0 } else { end }, gen, seq, b"bits")
                .unwrap();
        }
    }
    // Whatever the faults did, a power loss now keeps every root and record.
    store.set_faults_enabled(false);
    store.crash(CrashMode::DropAll).unwrap();
    let scan = m.scan_roots(Some("SS")).unwrap();
    assert_eq!(scan.newest().unwrap().0.generation, 6);
    assert_eq!(scan.newest().unwrap().1, b"root 6");
    assert_eq!(m.scan_journal(6).unwrap().records.len(), 3);
}

#[test]
fn a_store_that_never_takes_a_write_fences_instead_of_answering_failed() {
    use volume_store::{FaultEffect, FaultRule, OpFilter, Trigger};
    let (_store, m) = faulty_meta(vec![FaultRule::new(
        OpFilter::Write,
        Trigger::Always,
        FaultEffect::Eio,
    )]);
    let e = m.write_root(0, 1, 0, "SS", b"p").unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Fenced, "{e}");
    assert!(e.to_string().contains("unknown"), "{e}");
    let e = m.append_journal(0, 1, 1, b"x").unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Fenced, "{e}");
}
