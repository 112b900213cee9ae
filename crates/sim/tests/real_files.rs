//! Crash-point enumeration over real files: the production `SparseFileStore`
//! (pwrite, hole punching, fdatasync on a real file system) recorded by
//! `sim::realfs`, crash images built from the operations not yet synced
//! (kept, dropped, metadata prefixes, random subsets, torn at 4 KiB), each
//! IPL'd with the production provider and checked (IPL-1, META-1, PIT-1,
//! PIT-2). `SIM_REALFS_RUNS=N` (and `SIM_REALFS_SEED=S`) run another campaign;
//! `SIM_REALFS_DIR` puts the files elsewhere (default: `/dev/shm`, else the
//! system temp directory).

use std::path::Path;

use controller::datadir::DataDir;
use controller::StoreProvider;
use geometry::{DeviceModel, Extent, Geometry};
use sim::realfs::campaign::{campaign, generate, run_workload, RealFsConfig};
use sim::realfs::{ImageSpec, Keep, RealFileStores};
use volume_store::{SparseFileStore, TrackStore};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// 100 workloads of 30 operations (CI tier); `SIM_REALFS_RUNS=N` runs N
/// with the thorough setting (two random and two torn images per boundary).
#[test]
fn every_crash_image_of_a_hundred_workloads_recovers() {
    let first = env_u64("SIM_REALFS_SEED").unwrap_or(1);
    let (runs, cfg) = match env_u64("SIM_REALFS_RUNS") {
        Some(n) => (n, RealFsConfig::default()),
        None => (100, RealFsConfig::ci()),
    };
    let fig = campaign(first, runs, &cfg);
    println!("{fig}");
    assert!(fig.violations.is_empty(), "{fig}");
    assert_eq!(fig.workloads, runs);
    assert_eq!(fig.ipls, fig.images, "{fig}");
    if runs >= 100 {
        assert!(
            fig.crash_points > 10 * runs && fig.images > 50 * runs,
            "{fig}"
        );
        assert!(
            fig.images_torn > 0 && fig.starts > 0 && fig.grains_copied > 0,
            "{fig}"
        );
    }
}

/// The checkers have teeth: with the controller's own volume flushes
/// skipped (copied grains not durable when their bits are journalled), some
/// crash image of the first few workloads reads wrong.
#[test]
fn skipped_volume_flushes_are_caught() {
    let cfg = RealFsConfig {
        skip_volume_flushes: true,
        ..RealFsConfig::ci()
    };
    let mut caught = None;
    for seed in 1..=40 {
        let fig = run_workload(seed, &cfg);
        if let Some(v) = fig.violations.first() {
            caught = Some(v.clone());
            break;
        }
    }
    let v = caught.expect("40 workloads with volume flushes skipped and no violation");
    println!("caught: {v}");
    assert!(v.image.is_some(), "{v}");
    assert!(v.check.starts_with("PIT-"), "{v}");
}

/// One workload, with its steps: `SIM_REALFS_SEED=S cargo test -p sim
/// --test real_files one_seed -- --ignored --nocapture`.
#[test]
#[ignore]
fn one_seed() {
    let seed = env_u64("SIM_REALFS_SEED").unwrap_or(1);
    let cfg = RealFsConfig::default();
    for (i, s) in generate(seed, cfg.steps).iter().enumerate() {
        println!("{i:3} {s}");
    }
    let fig = run_workload(seed, &cfg);
    println!("{fig}");
    assert!(fig.violations.is_empty(), "{fig}");
}

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
