//! The recording layer of crash-point enumeration over real files
//! (`sim::realfs`): crash images rebuilt from the operations a real
//! `SparseFileStore` has not yet synced.

use std::path::Path;

use controller::datadir::DataDir;
use controller::StoreProvider;
use geometry::{DeviceModel, Extent, Geometry};
use sim::realfs::{ImageSpec, Keep, RealFileStores};
use volume_store::{SparseFileStore, TrackStore};

fn read_file_volume(path: &Path, g: Geometry) -> (Vec<u8>, Vec<u64>) {
    let s = SparseFileStore::open(path, "v", g).unwrap();
    let mut buf = vec![0u8; g.size_bytes() as usize];
    s.read_at(0, &mut buf).unwrap();
    let alloc = s
        .allocated(Extent {
            first: 0,
            last: g.tracks() - 1,
        })
        .unwrap()
        .tracks()
        .collect();
    (buf, alloc)
}

/// The recorder itself: images rebuild the content (and the holes) at the
/// last flush, everything since, and 4 KiB prefixes of torn writes.
#[test]
fn crash_images_are_the_last_flush_plus_a_subset_of_what_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data"));
    dir.create_tree().unwrap();
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let stores = RealFileStores::new(dir.root(), &scratch);
    let g = Geometry::new(DeviceModel::Fb {
        size_bytes: 64 << 10,
        track_size_bytes: 8 << 10,
    })
    .unwrap();
    let s = stores.create_volume("v", g).unwrap();
    s.write_at(0, &[1u8; 24 << 10]).unwrap();
    s.write_at(40 << 10, &[2u8; 8 << 10]).unwrap();
    s.flush().unwrap();
    let (durable, durable_alloc) = read_file_volume(&dir.volume_path("v"), g);
    assert_eq!(durable_alloc, vec![0, 1, 2, 5]);
    // Since the flush: a hole punched, a 12 KiB write across tracks, zeros.
    s.discard(8 << 10, 8 << 10).unwrap();
    s.write_at(18 << 10, &[3u8; 12 << 10]).unwrap();
    s.write_zeroes(44 << 10, 2 << 10).unwrap();
    assert_eq!(stores.pending_counts()["volumes/v.vol"], 3);
    let (current, current_alloc) = read_file_volume(&dir.volume_path("v"), g);
    let point = stores.crash_point_now("test").unwrap();
    assert_eq!(point.pending(), 3);
    let build = |keep: Keep, name: &str| {
        let spec = ImageSpec {
            label: name.into(),
            meta: Keep::None,
            volumes: keep,
        };
        let into = tmp.path().join(name);
        let built = point.build(&spec, &into).unwrap();
        let (bytes, alloc) = read_file_volume(&into.join("volumes/v.vol"), g);
        (built, bytes, alloc)
    };
    let (_, bytes, alloc) = build(Keep::None, "none");
    assert!(bytes == durable, "drop-all is the last flush");
    assert_eq!(alloc, durable_alloc, "holes as at the last flush");
    let (_, bytes, alloc) = build(Keep::All, "all");
    assert!(bytes == current, "keep-all is the current content");
    assert_eq!(alloc, current_alloc, "the punched hole is a hole");
    let (_, bytes, _) = build(Keep::Prefix(1), "prefix");
    assert!(bytes[8 << 10..16 << 10].iter().all(|b| *b == 0));
    assert!(bytes[18 << 10..30 << 10] == durable[18 << 10..30 << 10]);
    // Torn: every 4 KiB block of the 12 KiB write is old or new, new ones
    // first (a prefix of its blocks), and some seed tears it.
    let mut torn_seen = false;
    for seed in 0..64 {
        let (built, bytes, _) = build(Keep::Torn(seed), &format!("torn{seed}"));
        torn_seen |= built.torn > 0;
        let mut old_seen = false;
        // Blocks of the write: [18K,20K) [20K,24K) [24K,28K) [28K,30K).
        for (a, b) in [(18, 20), (20, 24), (24, 28), (28, 30)] {
            let r = a << 10..b << 10;
            let new = bytes[r.clone()].iter().all(|x| *x == 3);
            let old = bytes[r.clone()] == durable[r];
            assert!(new || old, "seed {seed}: block {a}K..{b}K is neither");
            assert!(!(new && old_seen), "seed {seed}: not a prefix");
            old_seen |= old;
        }
    }
    assert!(torn_seen, "no seed tore the write");
}
