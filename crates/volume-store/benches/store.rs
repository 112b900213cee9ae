//! Whole-track write and read through `SparseFileStore` versus a plain
//! `pwrite`/`pread` loop on the same file: the cost of the store layer (range
//! checks, poison check, error mapping) over the bare system calls.
//!
//! Volume: `fb:64M` (1,024 tracks of 64 KiB), in a temporary directory under
//! `$STORE_BENCH_DIR` (default `/work`, a real disk, not tmpfs). Data stays in
//! the page cache (no flush), which is where the layer's own overhead shows most.
//!
//! `cargo bench -p volume-store --bench store -- --measurement-time 3 --warm-up-time 1`

use std::fs::OpenOptions;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use geometry::Geometry;
use volume_store::{SparseFileStore, TrackStore};

fn bench_dir() -> PathBuf {
    let base = std::env::var_os("STORE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work"));
    if base.is_dir() {
        base
    } else {
        std::env::temp_dir()
    }
}

fn tracks(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(bench_dir()).expect("bench tempdir");
    let path = dir.path().join("bench.img");
    let g: Geometry = "fb:64M".parse().expect("valid model");
    let store = SparseFileStore::create(&path, "BENCH", g).expect("create volume");
    let plain = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open plain");
    let ts = g.track_size_bytes();
    let n = g.tracks();
    let data = vec![0x5Au8; ts as usize];
    let mut buf = vec![0u8; ts as usize];

    let mut w = c.benchmark_group("track_write_64KiB");
    w.throughput(Throughput::Bytes(g.size_bytes()));
    w.bench_function("sparse_file_store", |b| {
        b.iter(|| {
            for t in 0..n {
                store.write_track(t, black_box(&data)).expect("write");
            }
        })
    });
    w.bench_function("plain_pwrite", |b| {
        b.iter(|| {
            for t in 0..n {
                plain
                    .write_all_at(black_box(&data), t * ts)
                    .expect("pwrite");
            }
        })
    });
    w.finish();

    let mut r = c.benchmark_group("track_read_64KiB");
    r.throughput(Throughput::Bytes(g.size_bytes()));
    r.bench_function("sparse_file_store", |b| {
        b.iter(|| {
            for t in 0..n {
                store.read_track(t, black_box(&mut buf)).expect("read");
            }
        })
    });
    r.bench_function("plain_pread", |b| {
        b.iter(|| {
            for t in 0..n {
                plain
                    .read_exact_at(black_box(&mut buf), t * ts)
                    .expect("pread");
            }
        })
    });
    r.finish();
}

criterion_group!(benches, tracks);
criterion_main!(benches);
