//! The one conformance suite of the [`TrackStore`] contract, run against every
//! implementation: `SparseFileStore`, `MemStore` and `FaultyStore<MemStore>` with
//! faults off. Each check compares the store with a plain byte-vector model.

use std::sync::Arc;

use geometry::{Extent, ExtentSet, Geometry};
use tempfile::TempDir;
use volume_store::{ErrorKind, FaultyStore, MemStore, SparseFileStore, TrackStore};

/// Builds a store of one kind and reopens it (a no-op for in-memory stores).
trait Harness {
    fn new(geometry: Geometry) -> Self;
    fn store(&self) -> &dyn TrackStore;
    /// Drops and reopens the volume; for files, only flushed data must survive.
    fn reopen(&mut self);
}

struct Sparse {
    _dir: TempDir,
    path: std::path::PathBuf,
    store: Option<SparseFileStore>,
}

impl Harness for Sparse {
    fn new(geometry: Geometry) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vol.img");
        let store = SparseFileStore::create(&path, "VOL01", geometry).expect("create");
        Sparse {
            _dir: dir,
            path,
            store: Some(store),
        }
    }
    fn store(&self) -> &dyn TrackStore {
        self.store.as_ref().expect("open")
    }
    fn reopen(&mut self) {
        let g = self.store().geometry();
        self.store = None;
        self.store = Some(SparseFileStore::open(&self.path, "VOL01", g).expect("reopen"));
    }
}

struct Mem(MemStore);

impl Harness for Mem {
    fn new(geometry: Geometry) -> Self {
        Mem(MemStore::with_id("VOL01", geometry))
    }
    fn store(&self) -> &dyn TrackStore {
        &self.0
    }
    fn reopen(&mut self) {}
}

struct Faulty(FaultyStore<MemStore>);

impl Harness for Faulty {
    fn new(geometry: Geometry) -> Self {
        let f = FaultyStore::new(MemStore::with_id("VOL01", geometry), 7);
        f.set_faults_enabled(false);
        Faulty(f)
    }
    fn store(&self) -> &dyn TrackStore {
        &self.0
    }
    fn reopen(&mut self) {
        self.0.reopen();
    }
}

/// 16 tracks of 4 KiB.
fn small() -> Geometry {
    "fb:64K:4K".parse().expect("valid")
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            ((i as u64)
                .wrapping_mul(31)
                .wrapping_add(seed.wrapping_mul(7).wrapping_add(1))
                % 251) as u8
        })
        .collect()
}

fn read_all(s: &dyn TrackStore) -> Vec<u8> {
    let mut buf = vec![0xAAu8; s.geometry().size_bytes() as usize];
    s.read_at(0, &mut buf).expect("read all");
    buf
}

fn fresh_volume_reads_zeros_and_has_nothing_allocated<H: Harness>() {
    let h = H::new(small());
    let s = h.store();
    assert!(read_all(s).iter().all(|&b| b == 0));
    assert!(s
        .allocated(s.geometry().full_extent())
        .expect("allocated")
        .is_empty());
    s.flush().expect("flush");
}

fn read_write_at_every_alignment<H: Harness>() {
    let h = H::new(small());
    let s = h.store();
    let size = s.geometry().size_bytes() as usize;
    let mut model = vec![0u8; size];
    let offsets = [
        0usize,
        1,
        511,
        512,
        4095,
        4096,
        4097,
        8191,
        30_000,
        size - 4097,
        size - 1,
    ];
    let lens = [0usize, 1, 2, 511, 512, 513, 4095, 4096, 4097, 8192, 12_289];
    let mut seed = 0;
    for &off in &offsets {
        for &len in &lens {
            if off + len > size {
                continue;
            }
            seed += 1;
            let data = pattern(seed, len);
            s.write_at(off as u64, &data).expect("write in range");
            model[off..off + len].copy_from_slice(&data);
            let mut back = vec![0u8; len];
            s.read_at(off as u64, &mut back).expect("read in range");
            assert_eq!(back, data, "offset {off} len {len}");
        }
    }
    assert!(read_all(s) == model, "whole volume differs from the model");
    // Reads at every alignment see the model too.
    for &off in &offsets {
        for &len in &lens {
            if off + len <= size {
                let mut back = vec![0u8; len];
                s.read_at(off as u64, &mut back).expect("read");
                assert!(back == model[off..off + len], "offset {off} len {len}");
            }
        }
    }
}

fn ckd_tracks_and_boundaries<H: Harness>() {
    let h = H::new("3390-1".parse().expect("valid"));
    let s = h.store();
    let ts = 57_344u64;
    let data = pattern(3, 3 * ts as usize);
    // Straddles tracks 14..=17 (cylinder 0 head 14 into cylinder 1).
    let off = 14 * ts + 1000;
    s.write_at(off, &data).expect("write");
    let mut back = vec![0u8; data.len()];
    s.read_at(off, &mut back).expect("read");
    assert!(back == data);
    let want: ExtentSet = Extent {
        first: 14,
        last: 17,
    }
    .into();
    assert_eq!(
        s.allocated(s.geometry().full_extent()).expect("allocated"),
        want
    );
    let last = s.geometry().tracks() - 1;
    let t = pattern(4, ts as usize);
    s.write_track(last, &t).expect("last track");
    let mut back = vec![0u8; ts as usize];
    s.read_track(last, &mut back).expect("read last track");
    assert!(back == t);
}

fn out_of_range_is_an_error_and_changes_nothing<H: Harness>() {
    let h = H::new(small());
    let s = h.store();
    let size = s.geometry().size_bytes();
    let mut buf = [0u8; 2];
    let cases: Vec<(&str, Result<(), volume_store::StoreError>)> = vec![
        ("read past end", s.read_at(size - 1, &mut buf)),
        ("read at end", s.read_at(size, &mut buf)),
        ("read overflow", s.read_at(u64::MAX, &mut buf)),
        ("write past end", s.write_at(size - 1, &[1, 2])),
        ("write overflow", s.write_at(u64::MAX - 1, &[1, 2, 3])),
        ("discard past end", s.discard(0, size + 1)),
        ("discard overflow", s.discard(u64::MAX, u64::MAX)),
        ("write_zeroes past end", s.write_zeroes(size, 1)),
        (
            "allocated past end",
            s.allocated(Extent { first: 0, last: 16 }).map(|_| ()),
        ),
        (
            "allocated reversed",
            s.allocated(Extent { first: 3, last: 2 }).map(|_| ()),
        ),
        ("track past end", s.write_track(16, &[0u8; 4096])),
        (
            "read track past end",
            s.read_track(u64::MAX, &mut [0u8; 4096]),
        ),
    ];
    for (what, r) in cases {
        let e = r.expect_err(what);
        assert_eq!(e.kind(), ErrorKind::OutOfRange, "{what}: {e}");
        assert_eq!(e.volume(), "VOL01");
        assert!(e.to_string().contains("VOL01"), "{what}: {e}");
    }
    let e = s
        .write_track(0, &[0u8; 100])
        .expect_err("short track buffer");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(
        read_all(s).iter().all(|&b| b == 0),
        "a failed write changed data"
    );
    assert!(s
        .allocated(s.geometry().full_extent())
        .expect("allocated")
        .is_empty());
    // Empty ranges at the end are inside.
    s.read_at(size, &mut []).expect("empty read at end");
    s.write_at(size, &[]).expect("empty write at end");
    s.discard(size, 0).expect("empty discard at end");
}

fn discard_whole_and_partial_tracks<H: Harness>() {
    let h = H::new(small());
    let s = h.store();
    let size = s.geometry().size_bytes() as usize;
    // A partial discard of an unwritten track must not allocate it (found by
    // random_ops: SparseFileStore used to write zeros into the hole).
    s.discard(13, 418).expect("partial discard of a hole");
    assert!(s
        .allocated(s.geometry().full_extent())
        .expect("a")
        .is_empty());
    let mut model = pattern(9, size);
    s.write_at(0, &model).expect("fill");
    assert_eq!(
        s.allocated(s.geometry().full_extent()).expect("a"),
        ExtentSet::full(16)
    );
    // Partial track 1, whole tracks 2..=4, partial track 5.
    let (off, len) = (4096 + 100, 4 * 4096);
    s.discard(off as u64, len as u64).expect("discard");
    model[off..off + len].fill(0);
    assert!(read_all(s) == model);
    let want: ExtentSet = [Extent { first: 0, last: 1 }, Extent { first: 5, last: 15 }]
        .into_iter()
        .collect();
    assert_eq!(s.allocated(s.geometry().full_extent()).expect("a"), want);
    // A whole-track discard of everything leaves nothing allocated.
    s.discard(0, size as u64).expect("discard all");
    assert!(read_all(s).iter().all(|&b| b == 0));
    assert!(s
        .allocated(s.geometry().full_extent())
        .expect("a")
        .is_empty());
}

fn allocation_map_reports_written_tracks<H: Harness>() {
    let h = H::new(small());
    let s = h.store();
    for t in [0u64, 3, 4, 15] {
        s.write_at(t * 4096 + 17, &[0u8])
            .expect("write one zero byte");
    }
    let all = s.allocated(s.geometry().full_extent()).expect("a");
    let want: ExtentSet = [
        Extent::single(0),
        Extent { first: 3, last: 4 },
        Extent::single(15),
    ]
    .into_iter()
    .collect();
    assert_eq!(all, want);
    assert_eq!(
        s.allocated(Extent { first: 4, last: 14 }).expect("a"),
        ExtentSet::from(Extent::single(4))
    );
    assert!(s
        .allocated(Extent { first: 5, last: 14 })
        .expect("a")
        .is_empty());
    s.write_zeroes(6 * 4096, 2 * 4096).expect("write_zeroes");
    assert!(
        s.allocated(Extent { first: 5, last: 14 }).expect("a")
            == Extent { first: 6, last: 7 }.into()
    );
}

fn flushed_data_survives_reopen<H: Harness>() {
    let mut h = H::new(small());
    let data = pattern(5, 10_000);
    h.store().write_at(3000, &data).expect("write");
    h.store().discard(12 * 4096, 4096).expect("discard");
    h.store().flush().expect("flush");
    h.reopen();
    let s = h.store();
    let mut back = vec![0u8; data.len()];
    s.read_at(3000, &mut back).expect("read");
    assert!(back == data);
    assert_eq!(
        s.allocated(s.geometry().full_extent()).expect("a"),
        Extent { first: 0, last: 3 }.into()
    );
    s.flush().expect("flush after reopen");
}

fn concurrent_writers_to_distinct_tracks<H: Harness + Send + Sync + 'static>() {
    let h = Arc::new(H::new(small()));
    let threads: Vec<_> = (0..4u64)
        .map(|i| {
            let h = Arc::clone(&h);
            std::thread::spawn(move || {
                for t in (i..16).step_by(4) {
                    h.store()
                        .write_at(t * 4096, &pattern(t, 4096))
                        .expect("write");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let all = read_all(h.store());
    for t in 0..16usize {
        assert!(
            all[t * 4096..(t + 1) * 4096] == pattern(t as u64, 4096)[..],
            "track {t}"
        );
    }
}

/// `copy_from` out of a store of every kind (file to file is the kernel's
/// copy, the rest go through the buffer): the copied range reads back as the
/// source, its tracks become allocated, the rest of the volume is untouched,
/// an out-of-range copy is refused and changes nothing, and the copy is
/// durable after a flush.
fn copy_from_every_kind<H: Harness>() {
    let mut h = H::new(small());
    h.store().write_at(0, &pattern(9, 64 * 1024)).expect("fill");
    h.store().discard(8 * 4096, 8 * 4096).expect("holes");
    let (file, mem, faulty) = (
        Sparse::new(small()),
        Mem::new(small()),
        Faulty::new(small()),
    );
    let mut buf = Vec::new();
    let mut want = read_all(h.store());
    for (i, s) in [file.store(), mem.store(), faulty.store()]
        .into_iter()
        .enumerate()
    {
        s.write_at(0, &pattern(20 + i as u64, 64 * 1024))
            .expect("source");
        // Tracks 8+2i.. and one unaligned range: 3000 bytes into track 9+2i.
        let (at, len) = ((8 + 2 * i as u64) * 4096, 4096);
        h.store().copy_from(s, at, len, &mut buf).expect("copy");
        let (at2, len2) = (at + 4096 + 100, 3000);
        h.store().copy_from(s, at2, len2, &mut buf).expect("copy");
        let from = read_all(s);
        want[at as usize..(at + len) as usize]
            .copy_from_slice(&from[at as usize..(at + len) as usize]);
        want[at2 as usize..(at2 + len2) as usize]
            .copy_from_slice(&from[at2 as usize..(at2 + len2) as usize]);
        let err = h
            .store()
            .copy_from(s, 15 * 4096, 2 * 4096, &mut buf)
            .expect_err("past the end");
        assert_eq!(err.kind(), ErrorKind::OutOfRange);
        assert!(read_all(h.store()) == want, "after a copy from source {i}");
    }
    assert_eq!(
        h.store()
            .allocated(Extent { first: 8, last: 15 })
            .expect("a"),
        Extent { first: 8, last: 13 }.into()
    );
    h.store().flush().expect("flush");
    h.reopen();
    assert!(read_all(h.store()) == want, "after reopen");
}

macro_rules! conformance {
    ($name:ident, $h:ty) => {
        mod $name {
            use super::*;
            #[test]
            fn fresh_volume_reads_zeros_and_has_nothing_allocated() {
                super::fresh_volume_reads_zeros_and_has_nothing_allocated::<$h>();
            }
            #[test]
            fn read_write_at_every_alignment() {
                super::read_write_at_every_alignment::<$h>();
            }
            #[test]
            fn ckd_tracks_and_boundaries() {
                super::ckd_tracks_and_boundaries::<$h>();
            }
            #[test]
            fn out_of_range_is_an_error_and_changes_nothing() {
                super::out_of_range_is_an_error_and_changes_nothing::<$h>();
            }
            #[test]
            fn discard_whole_and_partial_tracks() {
                super::discard_whole_and_partial_tracks::<$h>();
            }
            #[test]
            fn allocation_map_reports_written_tracks() {
                super::allocation_map_reports_written_tracks::<$h>();
            }
            #[test]
            fn flushed_data_survives_reopen() {
                super::flushed_data_survives_reopen::<$h>();
            }
            #[test]
            fn copy_from_every_kind() {
                super::copy_from_every_kind::<$h>();
            }
            #[test]
            fn concurrent_writers_to_distinct_tracks() {
                super::concurrent_writers_to_distinct_tracks::<$h>();
            }
        }
    };
}

conformance!(sparse_file_store, Sparse);
conformance!(mem_store, Mem);
conformance!(faulty_mem_store, Faulty);

mod random_ops {
    //! Random sequences of writes, discards, write_zeroes and flushes against a
    //! byte model and an allocation model, on every store.
    //! More cases: `PROPTEST_CASES=1000 cargo test -p volume-store --test conformance`.

    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Debug, Clone)]
    enum Step {
        Write { offset: u64, len: u64, seed: u64 },
        Discard { offset: u64, len: u64 },
        Zeroes { offset: u64, len: u64 },
        Flush,
    }

    fn step() -> impl Strategy<Value = Step> {
        let size = 16 * 4096u64;
        let range = (0..size).prop_flat_map(move |o| (Just(o), 0..=(size - o).min(3 * 4096)));
        prop_oneof![
            4 => (range.clone(), any::<u64>()).prop_map(|((offset, len), seed)| Step::Write { offset, len, seed }),
            2 => range.clone().prop_map(|(offset, len)| Step::Discard { offset, len }),
            1 => range.prop_map(|(offset, len)| Step::Zeroes { offset, len }),
            1 => Just(Step::Flush),
        ]
    }

    /// 48 cases unless `PROPTEST_CASES` asks for another number.
    fn cases() -> u32 {
        if std::env::var_os("PROPTEST_CASES").is_some() {
            ProptestConfig::default().cases
        } else {
            48
        }
    }

    fn run<H: Harness>(steps: &[Step]) -> Result<(), TestCaseError> {
        let h = H::new(small());
        let s = h.store();
        let mut bytes = vec![0u8; 16 * 4096];
        let mut alloc: BTreeSet<u64> = BTreeSet::new();
        for st in steps {
            match *st {
                Step::Write { offset, len, seed } => {
                    let data = pattern(seed, len as usize);
                    s.write_at(offset, &data).expect("write");
                    bytes[offset as usize..(offset + len) as usize].copy_from_slice(&data);
                    if len > 0 {
                        alloc.extend(offset / 4096..=(offset + len - 1) / 4096);
                    }
                }
                Step::Zeroes { offset, len } => {
                    s.write_zeroes(offset, len).expect("write_zeroes");
                    bytes[offset as usize..(offset + len) as usize].fill(0);
                    if len > 0 {
                        alloc.extend(offset / 4096..=(offset + len - 1) / 4096);
                    }
                }
                Step::Discard { offset, len } => {
                    s.discard(offset, len).expect("discard");
                    bytes[offset as usize..(offset + len) as usize].fill(0);
                    for p in geometry::split_range(4096, offset, len) {
                        if p.is_whole_track(4096) {
                            alloc.remove(&p.track);
                        }
                    }
                }
                Step::Flush => s.flush().expect("flush"),
            }
        }
        prop_assert!(read_all(s) == bytes, "bytes differ from the model");
        let want: ExtentSet = alloc.iter().map(|&t| Extent::single(t)).collect();
        prop_assert_eq!(
            s.allocated(s.geometry().full_extent()).expect("allocated"),
            want
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]
        #[test]
        fn sparse_file_store_matches_model(steps in prop::collection::vec(step(), 1..24)) {
            run::<Sparse>(&steps)?;
        }
        #[test]
        fn mem_store_matches_model(steps in prop::collection::vec(step(), 1..24)) {
            run::<Mem>(&steps)?;
        }
        #[test]
        fn faulty_mem_store_matches_model(steps in prop::collection::vec(step(), 1..24)) {
            run::<Faulty>(&steps)?;
        }
    }
}
