//! Whole-track write and read through `SparseFileStore` versus a plain
//! `pwrite`/`pread` loop on the same file: the cost of the store layer (range
//! checks, poison check, error mapping) over the bare system calls.
//!
//! Volume: `fb:64M` (1,024 tracks of 64 KiB), in a temporary directory under
//! `$STORE_BENCH_DIR` (default `/work`, a real disk, not tmpfs). Data stays in
//! the page cache, which is where the layer's own overhead shows most.
//!
//! The machine this runs on is shared and its load drifts, so both variants run
//! *interleaved*: every iteration does one pass over all tracks in which each
//! track is written (or read) once through the store and once with the plain
//! call, alternating which goes first; a benchmark times only its own calls.
//! Both variants thus see the same load and the same page-cache state. Write
//! passes start after an untimed `fdatasync` so no writeback backlog builds up.
//!
//! `cargo bench -p volume-store --bench store -- --measurement-time 3 --warm-up-time 1`

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Store = 0,
    Plain = 1,
}

struct Fixture {
    store: SparseFileStore,
    plain: File,
    tracks: u64,
    track_size_bytes: u64,
}

impl Fixture {
    /// One interleaved pass; returns the time spent in `timed`'s calls.
    fn pass(&self, timed: Variant, write: bool, data: &[u8], buf: &mut [u8]) -> Duration {
        let (store, plain) = self.pass_both(write, data, buf);
        if timed == Variant::Store {
            store
        } else {
            plain
        }
    }

    /// One interleaved pass; returns (time in store calls, time in plain calls).
    fn pass_both(&self, write: bool, data: &[u8], buf: &mut [u8]) -> (Duration, Duration) {
        let mut spent = [Duration::ZERO; 2];
        self.visit(write, data, buf, |v, d| spent[v as usize] += d);
        (spent[0], spent[1])
    }

    /// One interleaved pass, reporting each call's variant and duration.
    fn visit(
        &self,
        write: bool,
        data: &[u8],
        buf: &mut [u8],
        mut record: impl FnMut(Variant, Duration),
    ) {
        for t in 0..self.tracks {
            let order = if t % 2 == 0 {
                [Variant::Store, Variant::Plain]
            } else {
                [Variant::Plain, Variant::Store]
            };
            for v in order {
                let start = Instant::now();
                match (v, write) {
                    (Variant::Store, true) => {
                        self.store.write_track(t, black_box(data)).expect("write")
                    }
                    (Variant::Store, false) => self
                        .store
                        .read_track(t, black_box(&mut *buf))
                        .expect("read"),
                    (Variant::Plain, true) => self
                        .plain
                        .write_all_at(black_box(data), t * self.track_size_bytes)
                        .expect("pwrite"),
                    (Variant::Plain, false) => self
                        .plain
                        .read_exact_at(black_box(&mut *buf), t * self.track_size_bytes)
                        .expect("pread"),
                }
                record(v, start.elapsed());
            }
        }
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
    let fx = Fixture {
        store,
        plain,
        tracks: g.tracks(),
        track_size_bytes: g.track_size_bytes(),
    };
    let data = vec![0x5Au8; g.track_size_bytes() as usize];
    let mut buf = vec![0u8; g.track_size_bytes() as usize];

    for (group, write) in [("track_write_64KiB", true), ("track_read_64KiB", false)] {
        let mut grp = c.benchmark_group(group);
        grp.throughput(Throughput::Bytes(g.size_bytes()));
        for (name, v) in [
            ("sparse_file_store", Variant::Store),
            ("plain_syscall", Variant::Plain),
        ] {
            grp.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        if write {
                            fx.store.flush().expect("untimed fdatasync");
                        }
                        total += fx.pass(v, write, &data, &mut buf);
                    }
                    total
                })
            });
        }
        grp.finish();
        fx.store.flush().expect("flush");
    }
    paired_ratio(&fx, &data, &mut buf);
}

/// Criterion times the two variants at different moments, so load drift on a
/// shared machine shows up as a difference. This prints the paired estimate:
/// every single-track call of 11 interleaved passes is timed, and the ratio of
/// the median store call to the median plain call is the figure quoted in
/// docs/PERFORMANCE.md (medians ignore calls hit by preemption).
fn paired_ratio(fx: &Fixture, data: &[u8], buf: &mut [u8]) {
    for (what, write) in [("write", true), ("read", false)] {
        let mut calls: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..11 {
            if write {
                fx.store.flush().expect("untimed fdatasync");
            }
            fx.visit(write, data, buf, |v, d| calls[v as usize].push(d));
        }
        let median = |v: &mut Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        let (store, plain) = (median(&mut calls[0]), median(&mut calls[1]));
        println!(
            "paired {what}: median per 64 KiB track store {:?}, plain {:?}, ratio store/plain {:.3}",
            store,
            plain,
            store.as_secs_f64() / plain.as_secs_f64()
        );
    }
}

criterion_group!(benches, tracks);
criterion_main!(benches);
