//! `SparseFileStore` specifics: disk usage of a big volume, the identifying
//! trailer (wrong file, size, volume, geometry), poisoning after a failed
//! flush, and the in-memory allocation map agreeing with the file after reopen.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use geometry::{Extent, ExtentSet, Geometry};
use volume_store::{ErrorKind, SparseFileStore, TrackStore};

fn disk_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).expect("metadata").blocks() * 512
}

fn model(s: &str) -> Geometry {
    s.parse().expect("valid model")
}

/// Found by the control-API fuzzer: `POST /volumes` with `fb:1024T` got a
/// 500 "I/O error: File too large". A volume larger than any file, or than
/// the filesystem's largest file, is the caller's mistake: `InvalidArgument`
/// naming the size, and no file is left behind.
#[test]
fn a_volume_too_large_for_a_file_is_an_invalid_argument() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.img");
    let e = SparseFileStore::create(&path, "HUGE", model("fb:8388608T")).expect_err("2^63 bytes");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("larger than any file"), "{e}");
    assert!(!path.exists());
    // 1 PiB: over ext4's 16 TiB file limit (EFBIG); a filesystem that allows
    // it (XFS, btrfs) creates the sparse file. Never an I/O error.
    match SparseFileStore::create(&path, "HUGE", model("fb:1024T")) {
        Ok(_) => {}
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
            assert!(e.to_string().contains("does not allow a file"), "{e}");
            assert!(!path.exists());
        }
    }
}

#[test]
fn a_3390_54_volume_costs_nothing_until_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ckd54.img");
    let g = model("3390-54");
    let s = SparseFileStore::create(&path, "CKD54", g).expect("create");
    assert_eq!(g.size_bytes(), 56_357_683_200, "about 54 GiB addressable");
    assert_eq!(
        std::fs::metadata(&path).expect("md").len(),
        g.size_bytes() + 4096
    );
    // Only the trailer block is on disk.
    assert!(
        disk_bytes(&path) <= 64 * 1024,
        "fresh volume uses {} bytes",
        disk_bytes(&path)
    );
    assert!(s.allocated(g.full_extent()).expect("allocated").is_empty());

    let ts = g.track_size_bytes();
    let written = [0u64, 1, 700_000, 500_000, g.tracks() - 1];
    for &t in &written {
        s.write_track(t, &vec![0xC3; ts as usize])
            .expect("write track");
    }
    // A partial write allocates its track too.
    s.write_at(123_456 * ts + 100, b"partial")
        .expect("partial write");
    s.flush().expect("flush");
    let want: ExtentSet = written
        .iter()
        .chain([123_456u64].iter())
        .map(|&t| Extent::single(t))
        .collect();
    assert_eq!(s.allocated(g.full_extent()).expect("allocated"), want);
    assert_eq!(
        s.allocated(Extent {
            first: 2,
            last: 499_999
        })
        .expect("a"),
        Extent::single(123_456).into()
    );
    let used = disk_bytes(&path);
    assert!(
        used >= 5 * ts && used <= 6 * ts + 256 * 1024,
        "{used} bytes on disk for 6 tracks"
    );

    // Discarding a whole track gives its space back.
    s.discard(500_000 * ts, ts).expect("discard");
    assert!(disk_bytes(&path) <= used - ts + 4096, "hole punched");
    assert!(!s.allocated(g.full_extent()).expect("a").contains(500_000));
    let mut back = vec![1u8; ts as usize];
    s.read_track(500_000, &mut back).expect("read");
    assert!(back.iter().all(|&b| b == 0));
    // A plain read of the file sees the volume: track t at t * track_size.
    let f = std::fs::File::open(&path).expect("open plain");
    let mut raw = [0u8; 7];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut raw, 123_456 * ts + 100).expect("pread");
    assert_eq!(&raw, b"partial");
}

#[test]
fn opening_the_wrong_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = model("fb:1M:4K");
    let path = dir.path().join("a.img");
    let s = SparseFileStore::create(&path, "FB00", g).expect("create");
    s.write_at(0, b"hello").expect("write");
    s.flush().expect("flush");
    drop(s);

    let kind = |r: Result<SparseFileStore, volume_store::StoreError>| {
        r.map(|_| ()).expect_err("must fail").kind()
    };
    assert_eq!(
        kind(SparseFileStore::open(&path, "FB01", g)),
        ErrorKind::WrongVolume
    );
    let e = SparseFileStore::open(&path, "FB01", g).expect_err("wrong volume");
    assert!(e.to_string().contains("FB00"), "names the owner: {e}");
    assert_eq!(
        kind(SparseFileStore::open(&path, "FB00", model("fb:2M:4K"))),
        ErrorKind::WrongGeometry
    );
    assert_eq!(
        kind(SparseFileStore::open(&path, "FB00", model("fb:1M"))),
        ErrorKind::WrongGeometry
    );
    assert_eq!(
        kind(SparseFileStore::open(
            dir.path().join("none.img"),
            "FB00",
            g
        )),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(SparseFileStore::create(&path, "FB00", g)),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(SparseFileStore::create(dir.path().join("b.img"), "", g)),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind(SparseFileStore::create(
            dir.path().join("c.img"),
            &"x".repeat(65),
            g
        )),
        ErrorKind::InvalidArgument
    );

    // Someone else's file of the right size.
    let other = dir.path().join("other.img");
    std::fs::write(&other, vec![7u8; (1 << 20) + 4096]).expect("write other");
    assert_eq!(
        kind(SparseFileStore::open(&other, "FB00", g)),
        ErrorKind::WrongFile
    );
    // A file too short to hold a trailer.
    std::fs::write(&other, b"tiny").expect("write tiny");
    assert_eq!(
        kind(SparseFileStore::open(&other, "FB00", g)),
        ErrorKind::WrongFile
    );

    // The right trailer but a changed size (truncated or extended volume data).
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    let len = f.metadata().expect("md").len();
    let mut tail = [0u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(
        &std::fs::File::open(&path).expect("o"),
        &mut tail,
        len - 4096,
    )
    .expect("read trailer");
    f.set_len(len + 4096).expect("extend");
    std::os::unix::fs::FileExt::write_all_at(&f, &tail, len).expect("move trailer");
    assert_eq!(
        kind(SparseFileStore::open(&path, "FB00", g)),
        ErrorKind::WrongGeometry
    );

    // A damaged trailer.
    let mut bad = tail;
    bad[50] ^= 1;
    std::os::unix::fs::FileExt::write_all_at(&f, &bad, len).expect("corrupt");
    assert_eq!(
        kind(SparseFileStore::open(&path, "FB00", g)),
        ErrorKind::BadHeader
    );

    // Restore and it opens again, with its data.
    f.set_len(len).expect("shrink");
    std::os::unix::fs::FileExt::write_all_at(&f, &tail, len - 4096).expect("restore");
    let s = SparseFileStore::open(&path, "FB00", g).expect("opens again");
    let mut back = [0u8; 5];
    s.read_at(0, &mut back).expect("read");
    assert_eq!(&back, b"hello");
    let t = SparseFileStore::probe(&path).expect("probe");
    assert_eq!((t.volume_id.as_str(), t.geometry), ("FB00", g));
}

#[test]
fn a_failed_flush_poisons_until_reopened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = model("fb:1M:4K");
    let path = dir.path().join("p.img");
    let s = SparseFileStore::create(&path, "FB00", g).expect("create");
    s.write_at(0, b"before").expect("write");
    s.fail_next_flush();
    let e = s.flush().expect_err("flush fails");
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(std::error::Error::source(&e).is_some(), "cause kept");
    assert!(s.is_poisoned());
    for (what, r) in [
        ("write", s.write_at(0, b"after")),
        ("discard", s.discard(0, 4096)),
        ("write_zeroes", s.write_zeroes(0, 10)),
        ("flush", s.flush()),
    ] {
        assert_eq!(r.expect_err(what).kind(), ErrorKind::Poisoned, "{what}");
    }
    let mut back = [0u8; 6];
    s.read_at(0, &mut back).expect("reads still work");
    assert_eq!(&back, b"before");
    drop(s);
    let s = SparseFileStore::open(&path, "FB00", g).expect("reopen");
    s.write_at(0, b"after!").expect("writes after reopen");
    s.flush().expect("flush after reopen");
}

/// The store answers `allocated` from memory; a reopen rebuilds that map from
/// the file's holes, and both must agree on every track (written, partly and
/// wholly discarded, never written).
#[test]
fn allocation_in_memory_matches_the_file_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fb.img");
    let g = model("fb:8M:64K");
    let ts = g.track_size_bytes();
    let s = SparseFileStore::create(&path, "FB00", g).expect("create");
    for t in [0u64, 1, 2, 3, 40, 64, 65, 127] {
        s.write_track(t, &vec![7; ts as usize]).expect("write");
    }
    s.write_zeroes(90 * ts + 10, 20).expect("write zeroes"); // allocates track 90
    s.discard(ts, 2 * ts).expect("discard 1-2 whole"); // holes again
    s.discard(64 * ts + 5, 10).expect("partial discard"); // stays allocated
    s.discard(100 * ts, 5 * ts).expect("discard of holes"); // nothing to do
    s.flush().expect("flush");
    let live = s.allocated(g.full_extent()).expect("allocated");
    let want: Vec<u64> = vec![0, 3, 40, 64, 65, 90, 127];
    assert_eq!(live.tracks().collect::<Vec<_>>(), want);
    drop(s);
    let s = SparseFileStore::open(&path, "FB00", g).expect("reopen");
    assert_eq!(s.allocated(g.full_extent()).expect("allocated"), live);
    let mut back = vec![1u8; 10];
    s.read_at(64 * ts + 5, &mut back).expect("read");
    assert_eq!(
        back,
        vec![0u8; 10],
        "the partly discarded bytes read as zeros"
    );
}

/// `rewrite_trailer` writes only a damaged trailer, in a file of the right
/// size; a valid trailer naming another volume and a file of another size
/// are refused and left as they are.
#[test]
fn rewrite_trailer_repairs_only_a_damaged_trailer_of_the_right_file() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v.img");
    let g = model("fb:1M:64K");
    let s = SparseFileStore::create(&path, "V", g).expect("create");
    s.write_track(3, &vec![7u8; 64 << 10]).expect("write");
    s.flush().expect("flush");
    drop(s);
    assert!(!SparseFileStore::rewrite_trailer(&path, "V", g).expect("intact"));
    // A valid trailer of another volume is not relabelled.
    let e = SparseFileStore::rewrite_trailer(&path, "W", g).expect_err("other volume");
    assert_eq!(e.kind(), ErrorKind::WrongVolume, "{e}");
    // A damaged checksum is repaired; the data is untouched.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open");
    f.write_all_at(&[0xff], g.size_bytes() + 30)
        .expect("damage");
    assert_eq!(
        SparseFileStore::open(&path, "V", g).err().map(|e| e.kind()),
        Some(ErrorKind::BadHeader)
    );
    assert!(SparseFileStore::rewrite_trailer(&path, "V", g).expect("repaired"));
    let s = SparseFileStore::open(&path, "V", g).expect("opens again");
    let mut b = vec![0u8; 64 << 10];
    s.read_track(3, &mut b).expect("read");
    assert!(b.iter().all(|&x| x == 7));
    drop(s);
    // A file of another size is not touched.
    f.write_all_at(&[0xff], g.size_bytes() + 30)
        .expect("damage");
    f.set_len(g.size_bytes() + 8192).expect("grow");
    let e = SparseFileStore::rewrite_trailer(&path, "V", g).expect_err("wrong size");
    assert_eq!(e.kind(), ErrorKind::WrongGeometry, "{e}");
}

/// QA: a volume file truncated or deleted under the daemon kept taking
/// acknowledged writes (lost at the next IPL) and served zeros as data. The
/// next flush now fails, naming what happened, and the store is poisoned.
#[test]
fn a_flush_fails_once_the_file_was_truncated_or_deleted_under_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    for damage in ["truncate", "delete"] {
        let path = dir.path().join(format!("{damage}.vol"));
        let s = SparseFileStore::create(&path, "V", model("fb:1M:64K")).expect("create");
        s.write_at(0, &[1u8; 4096]).expect("write");
        s.flush().expect("a flush of an intact file");
        match damage {
            "truncate" => std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(4096))
                .expect("truncate"),
            _ => std::fs::remove_file(&path).expect("delete"),
        }
        s.write_at(65536, &[2u8; 4096])
            .expect("the write itself succeeds");
        let e = s.flush().expect_err("the flush reports the damage");
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text.push_str(&format!(": {c}"));
            cause = c.source();
        }
        let said = if damage == "truncate" {
            "truncated or extended while in use"
        } else {
            "deleted or replaced while in use"
        };
        assert!(text.contains(said), "{damage}: {text}");
        let e = s.write_at(0, &[3u8; 4096]).expect_err("poisoned");
        assert_eq!(e.kind(), volume_store::ErrorKind::Poisoned, "{damage}: {e}");
    }
}
