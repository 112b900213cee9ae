//! Sparse-aware background copy: a full copy of a 3390-54 (982,800 tracks)
//! with 10 written tracks. Holes cost nothing but their bits.
//! Run: `cargo bench -p controller --bench sparse`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use controller::{CopyType, MapCreate, Subsystem, SubsystemConfig};
use criterion::{criterion_group, criterion_main, Criterion};

fn bench_dir() -> PathBuf {
    std::env::var_os("CONTROLLER_BENCH_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from)
}

/// Full copy of a 3390-54 (982,800 tracks) with 10 written tracks: holes cost nothing.
fn sparse_full_copy(c: &mut Criterion) {
    let root = tempfile::tempdir_in(bench_dir()).unwrap();
    let cfg = SubsystemConfig::from_toml_str(
        "id = \"SPARSE\"\n[[volumes]]\nid = \"A\"\nmodel = \"3390-54\"\n[[volumes]]\nid = \"B\"\nmodel = \"3390-54\"\n",
    )
    .unwrap();
    let sub = Subsystem::open(root.path(), cfg).unwrap();
    let tracks = sub.geometry("A").unwrap().tracks();
    let ts = sub.geometry("A").unwrap().track_size_bytes();
    for i in 0..10u64 {
        sub.write(
            "A",
            (i * (tracks / 10) + 3) * ts,
            &vec![i as u8 + 1; ts as usize],
            false,
        )
        .unwrap();
    }
    let m = sub
        .create_map(&MapCreate::new("A", "B", CopyType::Full))
        .unwrap();
    let mut g = c.benchmark_group("sparse_full_copy_3390_54_10_tracks");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("controller_strict", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                sub.start_map(m, false).unwrap();
                while sub.copy_step(u64::MAX).unwrap().more {}
                total += t0.elapsed();
            }
            total
        })
    });
    g.finish();
    sub.close().unwrap();
}

criterion_group!(benches, sparse_full_copy);
criterion_main!(benches);
