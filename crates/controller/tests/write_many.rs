//! Batches of host writes (`Subsystem::write_many`, what the NBD server
//! hands over when a client has many writes in flight): every write's
//! outcome at its index, overlapping writes in order, points in time kept,
//! and one commit per group of first writes instead of one per write.

mod common;

use common::{read_at as read, tagged as pattern};
use controller::{CopyType, ErrorKind, MapCreate, Subsystem, SubsystemConfig};

const TRACK: u64 = 64 * 1024;

fn config() -> SubsystemConfig {
    SubsystemConfig::from_toml_str(
        r#"
id = "B1"
[[volumes]]
id = "S"
model = "fb:1M:64K"
[[volumes]]
id = "T"
model = "fb:1M:64K"
[[volumes]]
id = "P"
model = "fb:1M:64K"
"#,
    )
    .unwrap()
}

/// A subsystem in `dir` whose S (filled with `pattern(tag)`, returned)
/// has a nocopy snapshot on T, just started.
fn snapshot(dir: &std::path::Path, tag: u8) -> (Subsystem, Vec<u8>) {
    let s = Subsystem::open(dir, config()).unwrap();
    let old = pattern(tag, 1 << 20);
    s.write("S", 0, &old, false).unwrap();
    let m = s
        .create_map(&MapCreate::new("S", "T", CopyType::Nocopy))
        .unwrap();
    s.start_map(m, false).unwrap();
    (s, old)
}

/// Applies `writes` to `img` in order (what the volume must read afterwards).
fn apply(img: &mut [u8], writes: &[(u64, &[u8])]) {
    for (off, d) in writes {
        img[*off as usize..*off as usize + d.len()].copy_from_slice(d);
    }
}

#[test]
fn first_writes_share_commits_and_keep_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (s, old) = snapshot(dir.path(), 1);

    let (a, b, c, d, e) = (
        pattern(2, 4096),
        pattern(3, 4096),
        pattern(4, 100),
        pattern(5, 4096),
        pattern(6, 8192),
    );
    // Tracks 0, 3, 9, then track 0 again (a new group), then 12..13
    // across a track boundary; one write beyond the end in the middle.
    let writes: Vec<(u64, &[u8])> = vec![
        (100, &a),
        (3 * TRACK + 7, &b),
        (9 * TRACK, &c),
        (1 << 20, &d),
        (200, &d),
        (13 * TRACK - 4096, &e),
    ];
    let before = s.metrics();
    let out = s.write_many("S", &writes);
    let after = s.metrics();
    assert_eq!(out.len(), writes.len());
    for (i, r) in out.iter().enumerate() {
        if i == 3 {
            assert_eq!(r.as_ref().unwrap_err().kind(), ErrorKind::OutOfRange);
        } else {
            r.as_ref().unwrap();
        }
    }
    let mut expect = old.clone();
    let done: Vec<(u64, &[u8])> = writes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .map(|(_, w)| *w)
        .collect();
    apply(&mut expect, &done);
    assert_eq!(read(&s, "S", 0, 1 << 20), expect);
    assert_eq!(read(&s, "T", 0, 1 << 20), old, "the point in time changed");
    // Tracks 0, 3, 9, 12 and 13 copied once each, in two commits: one for
    // the first group (0, 3, 9), one for the second (0 again, 12, 13).
    assert_eq!(after.cow_copies - before.cow_copies, 5);
    assert_eq!(after.group_commits - before.group_commits, 2);

    // The batch's copies are durable: an IPL (after the host's flush) shows
    // the same images.
    s.flush("S").unwrap();
    let s = s.ipl().unwrap();
    assert_eq!(read(&s, "T", 0, 1 << 20), old);
    assert_eq!(read(&s, "S", 0, 1 << 20), expect);
    s.close().unwrap();
}

#[test]
fn writes_to_a_target_fill_before_and_record_after() {
    let dir = tempfile::tempdir().unwrap();
    let (s, old) = snapshot(dir.path(), 7);
    let (part, whole, again) = (
        pattern(8, 512),
        pattern(9, TRACK as usize),
        pattern(10, 1000),
    );
    // A partial write (fill from the source first), a whole track (no
    // fill, its bit follows the data), and a write over that track.
    let writes: Vec<(u64, &[u8])> = vec![
        (5 * TRACK + 10, &part),
        (6 * TRACK, &whole),
        (6 * TRACK + 50, &again),
    ];
    for r in s.write_many("T", &writes) {
        r.unwrap();
    }
    let mut expect = old.clone();
    apply(&mut expect, &writes);
    assert_eq!(read(&s, "T", 0, 1 << 20), expect);
    assert_eq!(
        read(&s, "S", 0, 1 << 20),
        old,
        "a target write changed its source"
    );
    s.flush("T").unwrap();
    let s = s.ipl().unwrap();
    assert_eq!(read(&s, "T", 0, 1 << 20), expect);
    s.close().unwrap();
}

#[test]
fn a_plain_volume_and_bad_names_answer_per_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = Subsystem::open(dir.path(), config()).unwrap();
    let (a, b) = (pattern(11, 3000), pattern(12, 3000));
    let writes: Vec<(u64, &[u8])> = vec![(0, &a), (1000, &b), ((1 << 20) - 10, &a)];
    let out = s.write_many("P", &writes);
    out[0].as_ref().unwrap();
    out[1].as_ref().unwrap();
    assert_eq!(out[2].as_ref().unwrap_err().kind(), ErrorKind::OutOfRange);
    let mut expect = vec![0u8; 4000];
    apply(&mut expect, &writes[..2]);
    assert_eq!(read(&s, "P", 0, 4000), expect);
    let out = s.write_many("nope", &writes);
    assert_eq!(out.len(), 3);
    assert!(out
        .iter()
        .all(|r| r.as_ref().unwrap_err().kind() == ErrorKind::NotFound));
    assert!(s.write_many("P", &[]).is_empty());
    s.close().unwrap();
}
