//! Backup sessions on one volume share one cascade (Patent B, claim 1):
//! first writes to a source protected by k sessions should cost what they
//! cost with one, since each first-written track is copied once, into the
//! newest session's target, and the older sessions read it through that
//! target.
//!
//! `first_writes_k_sessions`: k = 0 (no session), 1, 4, 16 sessions, each
//! over the whole 64 MiB source (1024 tracks of 64 KiB, written), then every
//! track written once from 4 writers and flushed. The copies counted by the
//! controller's metrics are printed beside the times.
//!
//! Files live under `CONTROLLER_BENCH_DIR` (default: cargo's target tmp dir).
//! Run: `cargo bench -p controller --bench sessions`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use controller::{DurabilityMode, SessionPair, Subsystem, SubsystemConfig};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use geometry::{Extent, ExtentSet};

const TRACK: u64 = 64 << 10;
const TRACKS: u64 = 1024;
const VOL_BYTES: u64 = TRACK * TRACKS;
const WRITERS: u64 = 4;
const MAX_K: usize = 16;

fn bench_dir() -> PathBuf {
    std::env::var_os("CONTROLLER_BENCH_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from)
}

fn open(dir: &Path) -> Subsystem {
    let mut t = String::from("id = \"BENCH\"\n[[volumes]]\nid = \"S\"\nmodel = \"fb:64M:64K\"\n");
    for k in 0..MAX_K {
        t.push_str(&format!(
            "[[volumes]]\nid = \"T{k:02}\"\nmodel = \"fb:64M:64K\"\n"
        ));
    }
    let mut cfg = SubsystemConfig::from_toml_str(&t).unwrap();
    cfg.durability = DurabilityMode::Strict;
    Subsystem::open(dir, cfg).unwrap()
}

fn fill(sub: &Subsystem, seed: u8) {
    let chunk: Vec<u8> = (0..(4u64 << 20)).map(|i| (i as u8) ^ seed).collect();
    for off in (0..VOL_BYTES).step_by(chunk.len()) {
        sub.write("S", off, &chunk, false).unwrap();
    }
    sub.flush_all().unwrap();
}

fn first_writes(sub: &Subsystem) {
    let sub = Arc::new(sub.clone());
    let per = VOL_BYTES / WRITERS;
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let sub = sub.clone();
            std::thread::spawn(move || {
                let data = vec![w as u8 ^ 0xa5; TRACK as usize];
                for off in (w * per..(w + 1) * per).step_by(TRACK as usize) {
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

fn sessions(c: &mut Criterion) {
    let root = tempfile::tempdir_in(bench_dir()).unwrap();
    let mut g = c.benchmark_group("first_writes_k_sessions_64MiB");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Bytes(VOL_BYTES));
    for k in [0usize, 1, 4, 16] {
        let sub = open(&root.path().join(format!("k{k}")));
        let mut copies = 0u64;
        let mut runs = 0u64;
        g.bench_with_input(BenchmarkId::from_parameter(k), &k, |b, &k| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    fill(&sub, i as u8);
                    let mut phys = Vec::new();
                    for s in 0..k {
                        let pair = SessionPair {
                            source: "S".into(),
                            extents: ExtentSet::from(Extent {
                                first: 0,
                                last: TRACKS - 1,
                            }),
                            target: format!("T{s:02}"),
                            copy_rate: Some(0),
                        };
                        let id = format!("K{s}");
                        phys.push((sub.establish_session(&id, None, &[pair]).unwrap(), id));
                    }
                    let before = sub.metrics().cow_copies;
                    let t0 = Instant::now();
                    first_writes(&sub);
                    total += t0.elapsed();
                    copies += sub.metrics().cow_copies - before;
                    runs += 1;
                    // Oldest first: nothing reads through it, so it goes at
                    // once; the newer ones then have no one to clean for.
                    for (p, id) in phys {
                        sub.withdraw_session(p, Some(&id)).unwrap();
                    }
                    while sub.copy_step(u64::MAX).unwrap().more {}
                }
                total
            })
        });
        eprintln!(
            "k = {k:2}: {:.1} copies per first-written track",
            copies as f64 / (runs.max(1) * TRACKS) as f64
        );
        sub.close().unwrap();
    }
    g.finish();
}

criterion_group!(benches, sessions);
criterion_main!(benches);
