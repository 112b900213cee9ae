//! Damaged metadata is never mistaken for a torn tail or a torn checkpoint.
//! Roots and journal records are mirrored: damage to one copy is repaired
//! from the other (IPL opens, images intact, `check` warns); damage to both
//! copies of a journal record followed by valid ones, or of the newest root
//! whose journal records exist, makes `check` report an error and IPL refuse,
//! so a point-in-time target never serves the source's new data.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use controller::meta::{
    JOURNAL_BASE, JOURNAL_BYTES, JOURNAL_RECORD_HEADER_BYTES, ROOT_COPY_BYTES,
    ROOT_HEADER_BLOCK_BYTES, SLOT_BYTES,
};
use controller::{check, CopyType, ErrorKind, MapCreate, Subsystem, SubsystemConfig};

const GRAIN: usize = 64 << 10;

fn config() -> SubsystemConfig {
    SubsystemConfig::from_toml_str(
        r#"
id = "DMG"
[[volumes]]
id = "S"
model = "fb:1M:64K"
[[volumes]]
id = "T"
model = "fb:1M:64K"
"#,
    )
    .unwrap()
}

/// A snapshot S -> T of an all-0x11 source, then four single-grain writes of
/// 0x22 to S (four copy-on-write journal records), then a process crash.
fn crashed_dir(dir: &Path) {
    let s = Subsystem::open(dir, config()).unwrap();
    s.write("S", 0, &vec![0x11; 16 * GRAIN], true).unwrap();
    let m = s
        .create_map(&MapCreate::new("S", "T", CopyType::Nocopy))
        .unwrap();
    s.start_map(m, false).unwrap();
    for g in 0..4u64 {
        s.write("S", g * GRAIN as u64, &vec![0x22; GRAIN], true)
            .unwrap();
    }
    s.abandon();
}

fn meta_file(dir: &Path) -> std::fs::File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("meta.store"))
        .unwrap()
}

/// The generation in the header of root slot `slot`, copy 0.
fn generation_in(f: &std::fs::File, slot: u64) -> u64 {
    let mut h = [0u8; 8];
    f.read_exact_at(&mut h, slot * SLOT_BYTES + 16).unwrap();
    u64::from_le_bytes(h)
}

fn flip(f: &std::fs::File, at: u64) {
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0xff], at).unwrap();
}

/// Absolute offsets of the journal records of the current generation.
fn record_offsets(f: &std::fs::File) -> Vec<u64> {
    let mut out = Vec::new();
    let mut at = JOURNAL_BASE;
    let mut first_gen = None;
    loop {
        let mut h = [0u8; 32];
        f.read_exact_at(&mut h, at).unwrap();
        let gen = u64::from_le_bytes(h[8..16].try_into().unwrap());
        if &h[0..4] != b"FWJ1" || first_gen.is_some_and(|g| g != gen) {
            return out;
        }
        first_gen = Some(gen);
        out.push(at);
        let len = u32::from_le_bytes(h[4..8].try_into().unwrap());
        at += JOURNAL_RECORD_HEADER_BYTES + u64::from(len);
    }
}

#[test]
fn undamaged_crash_replays_and_the_target_keeps_its_image() {
    let dir = tempfile::tempdir().unwrap();
    crashed_dir(dir.path());
    let r = check(dir.path()).unwrap();
    assert!(r.ok, "{r:?}");
    assert!(r.journal_records >= 4, "{r:?}");
    let s = Subsystem::open(dir.path(), config()).unwrap();
    let mut b = vec![0u8; 4 * GRAIN];
    s.read("T", 0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0x11));
}

#[test]
fn damaged_middle_journal_record_is_an_error_and_no_wrong_pit_data_is_served() {
    let dir = tempfile::tempdir().unwrap();
    crashed_dir(dir.path());
    let f = meta_file(dir.path());
    let recs = record_offsets(&f);
    assert!(recs.len() >= 4, "{recs:?}");
    // One byte of the second record's payload in copy 0: repaired from copy 1.
    flip(&f, recs[1] + JOURNAL_RECORD_HEADER_BYTES + 5);
    let r = check(dir.path()).unwrap();
    assert!(r.ok && r.journal_records >= 4, "one copy is enough: {r:?}");
    // The same byte in copy 1 too.
    flip(
        &f,
        recs[1] + JOURNAL_BYTES + JOURNAL_RECORD_HEADER_BYTES + 5,
    );
    drop(f);
    let r = check(dir.path()).unwrap();
    assert!(!r.ok, "check must report the damage: {r:?}");
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains("not a torn tail")
                && e.contains(&format!("byte offset {}", recs[1]))),
        "{r:?}"
    );
    match Subsystem::open(dir.path(), config()) {
        Ok(s) => {
            // Opening is refused; if it ever were not, T must still read its image.
            let mut b = vec![0u8; 4 * GRAIN];
            let read = s.read("T", 0, &mut b);
            panic!(
                "IPL accepted a damaged journal; T read {read:?}, 0x22 bytes: {}",
                b.iter().filter(|&&x| x == 0x22).count()
            );
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{}", e.full_message());
            let msg = e.full_message();
            assert!(
                msg.contains("meta.store") && msg.contains("backup"),
                "{msg}"
            );
        }
    }
}

#[test]
fn lost_newest_root_with_its_journal_records_is_an_error_not_a_rollback() {
    let dir = tempfile::tempdir().unwrap();
    crashed_dir(dir.path());
    let f = meta_file(dir.path());
    let gen_of = |slot: u64| generation_in(&f, slot);
    let newest = if gen_of(0) > gen_of(1) { 0 } else { 1 };
    // One byte of the newest root's payload in copy 0: the mirror copy loads.
    flip(&f, newest * SLOT_BYTES + ROOT_HEADER_BLOCK_BYTES + 3);
    let r = check(dir.path()).unwrap();
    assert!(r.ok, "one copy is enough: {r:?}");
    assert!(
        r.warnings.iter().any(|w| w.contains("copy 0")),
        "check warns about the damaged copy: {r:?}"
    );
    {
        let s = Subsystem::open(dir.path(), config()).unwrap();
        let mut b = vec![0u8; 4 * GRAIN];
        s.read("T", 0, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 0x11));
        // A copy-on-write journals under the generation the IPL wrote.
        s.write("S", 8 * GRAIN as u64, &vec![0x33; GRAIN], true)
            .unwrap();
        s.abandon();
    }
    // The IPL checkpointed into the other slot; damage both copies of that root.
    let newest = if gen_of(0) > gen_of(1) { 0 } else { 1 };
    for copy in 0..2 {
        flip(
            &f,
            newest * SLOT_BYTES + copy * ROOT_COPY_BYTES + ROOT_HEADER_BLOCK_BYTES + 3,
        );
    }
    drop(f);
    let r = check(dir.path()).unwrap();
    assert!(!r.ok, "check must report the lost root: {r:?}");
    assert!(r.errors.iter().any(|e| e.contains("roll")), "{r:?}");
    let e = Subsystem::open(dir.path(), config())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{}", e.full_message());
    assert!(e.full_message().contains("roll"), "{}", e.full_message());
    assert!(
        !e.full_message().contains("  "),
        "no runs of spaces in the message: {}",
        e.full_message()
    );
}

#[test]
fn lost_newest_root_without_journal_records_is_loaded_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Subsystem::open(dir.path(), config()).unwrap();
        // A control change: a checkpoint and no journal record after it.
        s.create_volume("E", "fb:1M:64K".parse().unwrap()).unwrap();
        s.abandon();
    }
    let f = meta_file(dir.path());
    let gen_of = |slot: u64| generation_in(&f, slot);
    let newest = if gen_of(0) > gen_of(1) { 0 } else { 1 };
    let older = gen_of(1 - newest);
    for copy in 0..2 {
        flip(&f, newest * SLOT_BYTES + copy * ROOT_COPY_BYTES + 20);
    }
    drop(f);
    // Indistinguishable from a checkpoint torn by a crash: loaded, but said.
    let r = check(dir.path()).unwrap();
    let said = |w: &String| w.contains(&format!("root slot {newest} holds no valid copy"));
    assert!(r.warnings.iter().any(said), "check warns: {r:?}");
    let s = Subsystem::open(dir.path(), config()).unwrap();
    let rep = s.ipl_report();
    let w = rep.root_warning.as_deref().unwrap_or_default();
    assert!(w.contains(&format!("generation {older}")), "{rep:?}");
    assert!(w.contains("volume list"), "says what to compare: {w}");
}

/// The last journal record with the same header field damaged in both copies
/// (its magic, or its generation) is not the clean end of the journal: its
/// checksum recognises it, it is replayed, and IPL and `check` warn. Before,
/// the scan stopped there and T served the source's new data for that grain.
#[test]
fn last_journal_record_with_a_damaged_header_is_recognised_and_replayed() {
    for (field, at) in [("magic", 0u64), ("generation", 10)] {
        let dir = tempfile::tempdir().unwrap();
        crashed_dir(dir.path());
        let f = meta_file(dir.path());
        let recs = record_offsets(&f);
        let last = *recs.last().unwrap();
        for copy in 0..2 {
            flip(&f, last + copy * JOURNAL_BYTES + at);
        }
        drop(f);
        let r = check(dir.path()).unwrap();
        assert!(r.ok, "{field}: {r:?}");
        assert_eq!(r.journal_records, recs.len(), "{field}: {r:?}");
        let said = |w: &String| {
            w.contains(&format!("journal record {}", recs.len()))
                && w.contains(&format!("damaged header field: {field}"))
                && w.contains("recognised by its checksum")
        };
        assert!(r.warnings.iter().any(said), "{field}: {r:?}");
        let s = Subsystem::open(dir.path(), config()).unwrap();
        assert_eq!(s.ipl_report().journal_repaired.len(), 1, "{field}");
        let mut b = vec![0u8; 4 * GRAIN];
        s.read("T", 0, &mut b).unwrap();
        assert!(
            b.iter().all(|&x| x == 0x11),
            "{field}: T serves its image, 0x22 bytes: {}",
            b.iter().filter(|&&x| x == 0x22).count()
        );
    }
}

/// Leftovers of an earlier, longer generation after the end of the journal
/// stay the clean end: no warning, nothing replayed from them.
#[test]
fn leftovers_of_an_earlier_generation_are_the_clean_end() {
    let dir = tempfile::tempdir().unwrap();
    crashed_dir(dir.path());
    {
        // A checkpoint (clean shutdown) resets the journal; then one record.
        let s = Subsystem::open(dir.path(), config()).unwrap();
        s.close().unwrap();
        drop(s);
        let s = Subsystem::open(dir.path(), config()).unwrap();
        s.write("S", 4 * GRAIN as u64, &vec![0x22; GRAIN], true)
            .unwrap();
        s.abandon();
    }
    let r = check(dir.path()).unwrap();
    assert!(r.ok && r.warnings.is_empty(), "{r:?}");
    let s = Subsystem::open(dir.path(), config()).unwrap();
    assert!(s.ipl_report().journal_repaired.is_empty());
    let mut b = vec![0u8; 5 * GRAIN];
    s.read("T", 0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0x11));
}

/// Zeroes the header block of both copies of root slot `slot`.
fn blank_headers(f: &std::fs::File, slot: u64) {
    for copy in 0..2 {
        f.write_all_at(
            &[0u8; ROOT_HEADER_BLOCK_BYTES as usize],
            slot * SLOT_BYTES + copy * ROOT_COPY_BYTES,
        )
        .unwrap();
    }
}

/// A subsystem whose S holds 0x5a in its first grain, shut down cleanly.
fn dir_with_data(dir: &Path) {
    let s = Subsystem::open(dir, config()).unwrap();
    s.write("S", 0, &vec![0x5a; GRAIN], true).unwrap();
    s.close().unwrap();
}

fn assert_s_holds_its_data(dir: &Path) {
    let s = Subsystem::open(dir, config()).unwrap();
    let mut buf = vec![0u8; GRAIN];
    s.read("S", 0, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0x5a), "S kept its data");
    s.close().unwrap();
}

/// QA: a missing meta.store used to start a new subsystem over the old
/// volume files, replacing each with an empty one.
#[test]
fn a_missing_metadata_store_over_volume_data_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    dir_with_data(dir.path());
    let meta = dir.path().join("meta.store");
    let aside = dir.path().join("meta.store.aside");
    std::fs::rename(&meta, &aside).unwrap();
    let Err(e) = Subsystem::open(dir.path(), config()) else {
        panic!("the IPL must refuse")
    };
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("is missing") && text.contains("volume file S.vol"),
        "names what is missing and what would be lost: {text}"
    );
    assert!(!meta.exists(), "no new metadata store is left behind");
    std::fs::rename(&aside, &meta).unwrap();
    assert_s_holds_its_data(dir.path());
}

/// QA: every root header zeroed (both slots, both copies) looked like a
/// blank store and started a new subsystem over the volumes.
#[test]
fn every_root_header_blank_over_volume_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    dir_with_data(dir.path());
    let f = meta_file(dir.path());
    let mut saved = vec![[0u8; ROOT_HEADER_BLOCK_BYTES as usize]; 4];
    for (i, h) in saved.iter_mut().enumerate() {
        let i = i as u64;
        f.read_exact_at(h, (i / 2) * SLOT_BYTES + (i % 2) * ROOT_COPY_BYTES)
            .unwrap();
    }
    blank_headers(&f, 0);
    blank_headers(&f, 1);
    let Err(e) = Subsystem::open(dir.path(), config()) else {
        panic!("the IPL must refuse")
    };
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("every root header is blank"), "{e}");
    for (i, h) in saved.iter().enumerate() {
        let i = i as u64;
        f.write_all_at(h, (i / 2) * SLOT_BYTES + (i % 2) * ROOT_COPY_BYTES)
            .unwrap();
    }
    drop(f);
    assert_s_holds_its_data(dir.path());
}

/// A directory whose volumes hold nothing (what a crash during a first
/// boot leaves) still starts afresh without its metadata store.
#[test]
fn a_missing_metadata_store_over_empty_volumes_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    Subsystem::open(dir.path(), config())
        .unwrap()
        .close()
        .unwrap();
    std::fs::remove_file(dir.path().join("meta.store")).unwrap();
    let s = Subsystem::open(dir.path(), config()).unwrap();
    assert!(s.ipl_report().created);
    s.close().unwrap();
}

/// QA: both header copies of the newest root zeroed loaded the older root
/// with no warning; a zeroed header over a written payload is now named.
#[test]
fn newest_root_with_blank_headers_is_loaded_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Subsystem::open(dir.path(), config()).unwrap();
        s.create_volume("E", "fb:1M:64K".parse().unwrap()).unwrap();
        s.abandon();
    }
    let f = meta_file(dir.path());
    let newest = if generation_in(&f, 0) > generation_in(&f, 1) {
        0
    } else {
        1
    };
    let older = generation_in(&f, 1 - newest);
    blank_headers(&f, newest);
    drop(f);
    let r = check(dir.path()).unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains(&format!("root slot {newest} holds no valid copy"))),
        "check warns: {r:?}"
    );
    let s = Subsystem::open(dir.path(), config()).unwrap();
    let w = s.ipl_report().root_warning.clone().unwrap_or_default();
    assert!(
        w.contains(&format!("generation {older}")) && w.contains("blank header"),
        "{w}"
    );
}

/// QA: one byte of meta.store's trailer (its fixed identity) made the whole
/// directory unbootable, and `--repair-trailers` did not touch it.
#[test]
fn a_damaged_metadata_store_trailer_is_named_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    dir_with_data(dir.path());
    let f = meta_file(dir.path());
    let len = f.metadata().unwrap().len();
    flip(&f, len - 4000);
    drop(f);
    let Err(e) = Subsystem::open(dir.path(), config()) else {
        panic!("the IPL must refuse")
    };
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("--repair-trailers"), "{e}");
    let done = controller::repair_trailers(dir.path()).unwrap();
    assert!(
        done.iter()
            .any(|l| l.starts_with("metadata store: the trailer")),
        "{done:?}"
    );
    assert!(
        controller::repair_trailers(dir.path()).unwrap().is_empty(),
        "nothing left to repair"
    );
    assert_s_holds_its_data(dir.path());
}

/// QA: a deleted activity table was recreated empty without a word, and the
/// session history it held vanished from `session list`.
#[test]
fn missing_activity_tables_are_named_when_recreated() {
    let dir = tempfile::tempdir().unwrap();
    dir_with_data(dir.path());
    std::fs::remove_file(dir.path().join("tables/T.tbl")).unwrap();
    let r = check(dir.path()).unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("volume(s) T are missing")),
        "check warns: {r:?}"
    );
    let s = Subsystem::open(dir.path(), config()).unwrap();
    let notes = s.ipl_report().table_notes.clone();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("volume(s) T were missing") && n.contains("history")),
        "{notes:?}"
    );
    s.close().unwrap();
    std::fs::remove_dir_all(dir.path().join("tables")).unwrap();
    let s = Subsystem::open(dir.path(), config()).unwrap();
    let notes = s.ipl_report().table_notes.clone();
    assert!(
        notes.iter().any(|n| n.contains("subsystem activity table")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("volume(s) S, T were missing")),
        "{notes:?}"
    );
    s.close().unwrap();
}

/// QA: a truncated volume file got "no volume trailer magic ... run
/// --repair-trailers", which then refused it for its size. The size is the
/// cause, and the IPL now says so.
#[test]
fn a_truncated_volume_file_is_named_as_truncated() {
    let dir = tempfile::tempdir().unwrap();
    dir_with_data(dir.path());
    let path = dir.path().join("volumes/S.vol");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let Err(e) = Subsystem::open(dir.path(), config()) else {
        panic!("the IPL must refuse")
    };
    let text = e.to_string();
    assert!(
        text.contains("is 4096 bytes") && text.contains("truncated or extended"),
        "{text}"
    );
    assert!(!text.contains("--repair-trailers"), "{text}");
}
