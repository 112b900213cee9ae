//! Controller throughput, side by side with the OS in the same run:
//!
//! - `full_copy`: background full copy of a fully written 1 GiB FB volume
//!   (64 KiB tracks) by `copy_step`, in `strict` and `nosync` durability, vs
//!   `cp --reflink=never` and a plain `copy_file_range` loop of the same file.
//! - `first_write`: 16 concurrent writers each write their own 64 KiB grains
//!   once, right after a snapshot started (every write copies on write), vs the
//!   same writes with no snapshot; both end with a flush, so both are durable.
//!
//! Files live under `CONTROLLER_BENCH_DIR` (default: cargo's target tmp dir,
//! i.e. the disk of the target directory, not tmpfs).
//! Run: `cargo bench -p controller --bench copy`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use controller::{CopyType, DurabilityMode, MapCreate, Subsystem, SubsystemConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const VOL_BYTES: u64 = 1 << 30;
const GRAIN: u64 = 64 << 10;
const WRITERS: u64 = 16;
const FIRST_WRITE_BYTES: u64 = 256 << 20;

fn bench_dir() -> PathBuf {
    std::env::var_os("CONTROLLER_BENCH_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from)
}

fn open(dir: &Path, durability: DurabilityMode) -> Subsystem {
    let mut cfg = SubsystemConfig::from_toml_str(
        "id = \"BENCH\"\n[[volumes]]\nid = \"S\"\nmodel = \"fb:1G:64K\"\n[[volumes]]\nid = \"T\"\nmodel = \"fb:1G:64K\"\n",
    )
    .unwrap();
    cfg.durability = durability;
    Subsystem::open(dir, cfg).unwrap()
}

fn fill(sub: &Subsystem) {
    let chunk: Vec<u8> = (0..(8u64 << 20)).map(|i| (i * 7 + 3) as u8).collect();
    for off in (0..VOL_BYTES).step_by(chunk.len()) {
        sub.write("S", off, &chunk, false).unwrap();
    }
    sub.flush("S").unwrap();
}

fn copy_file_range_all(from: &Path, to: &Path) {
    let src = std::fs::File::open(from).unwrap();
    let dst = std::fs::File::create(to).unwrap();
    let len = src.metadata().unwrap().len();
    let mut done = 0u64;
    while done < len {
        let n =
            rustix::fs::copy_file_range(&src, None, &dst, None, (len - done).min(1 << 30) as usize)
                .unwrap();
        if n == 0 {
            break;
        }
        done += n as u64;
    }
}

fn full_copy(c: &mut Criterion) {
    let root = tempfile::tempdir_in(bench_dir()).unwrap();
    let mut g = c.benchmark_group("full_copy_1GiB");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Bytes(VOL_BYTES));
    for (name, mode) in [
        ("controller_strict", DurabilityMode::Strict),
        ("controller_nosync", DurabilityMode::Nosync),
    ] {
        let dir = root.path().join(name);
        let sub = open(&dir, mode);
        fill(&sub);
        let m = sub
            .create_map(&MapCreate::new("S", "T", CopyType::Full))
            .unwrap();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // A restart of a non-incremental map copies everything again.
                    let t0 = Instant::now();
                    sub.start_map(m, false).unwrap();
                    while sub.copy_step(u64::MAX).unwrap().more {}
                    total += t0.elapsed();
                }
                total
            })
        });
        sub.close().unwrap();
    }
    let src = root
        .path()
        .join("controller_strict")
        .join("volumes")
        .join("S.vol");
    let dst = root.path().join("copy.out");
    g.bench_function("cp_reflink_never", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let _ = std::fs::remove_file(&dst);
                let t0 = Instant::now();
                let st = std::process::Command::new("cp")
                    .arg("--reflink=never")
                    .arg(&src)
                    .arg(&dst)
                    .status()
                    .unwrap();
                assert!(st.success());
                total += t0.elapsed();
            }
            total
        })
    });
    g.bench_function("cp_reflink_never_then_fdatasync", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let _ = std::fs::remove_file(&dst);
                let t0 = Instant::now();
                let st = std::process::Command::new("cp")
                    .arg("--reflink=never")
                    .arg(&src)
                    .arg(&dst)
                    .status()
                    .unwrap();
                assert!(st.success());
                std::fs::File::open(&dst).unwrap().sync_data().unwrap();
                total += t0.elapsed();
            }
            total
        })
    });
    g.bench_function("copy_file_range", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let _ = std::fs::remove_file(&dst);
                let t0 = Instant::now();
                copy_file_range_all(&src, &dst);
                total += t0.elapsed();
            }
            total
        })
    });
    g.finish();
}

/// 16 writers, each writing its own grains of the first `FIRST_WRITE_BYTES`.
fn sixteen_writers(sub: &Subsystem) {
    let sub = Arc::new(sub.clone());
    let per = FIRST_WRITE_BYTES / WRITERS;
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let sub = sub.clone();
            std::thread::spawn(move || {
                let data = vec![w as u8 ^ 0x5a; GRAIN as usize];
                for off in (w * per..(w + 1) * per).step_by(GRAIN as usize) {
                    sub.write("S", off, &data, false).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    sub.flush_all().unwrap();
}

fn first_write(c: &mut Criterion) {
    let root = tempfile::tempdir_in(bench_dir()).unwrap();
    let sub = open(&root.path().join("fw"), DurabilityMode::Strict);
    fill(&sub);
    sub.flush_all().unwrap();
    let m = sub
        .create_map(&MapCreate::new("S", "T", CopyType::Nocopy))
        .unwrap();
    let mut g = c.benchmark_group("first_write_16_writers_256MiB");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Bytes(FIRST_WRITE_BYTES));
    g.bench_function("after_snapshot", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                sub.start_map(m, false).unwrap();
                let t0 = Instant::now();
                sixteen_writers(&sub);
                total += t0.elapsed();
                sub.stop_map(m, false).unwrap();
            }
            total
        })
    });
    g.bench_function("plain", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                sixteen_writers(&sub);
                total += t0.elapsed();
            }
            total
        })
    });
    g.finish();
    let m = sub.metrics();
    eprintln!(
        "first_write: {} group commits for {} items, {} flushes, mean flush {} us, buckets {:?}",
        m.group_commits,
        m.group_commit_items,
        m.flushes,
        m.flush_us_total / m.flushes.max(1),
        m.flush_latency_buckets
    );
    sub.close().unwrap();
}

criterion_group!(benches, full_copy, first_write);
criterion_main!(benches);
