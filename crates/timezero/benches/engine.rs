//! Engine benchmarks: write plans per second with 1, 16 and 256 snapshot
//! targets of one source, background scans over a 3390-A-size bitmap, and
//! the memory of one mapping. Run: `cargo bench -p timezero --bench engine`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use timezero::{Bitmap, CopyType, Engine, MapSpec, StartOptions, VolumeId};

/// 3390-A at its largest (1,182,006 cylinders of 15 tracks).
const GRAINS_3390A: u64 = 1_182_006 * 15;
const PREP: StartOptions = StartOptions {
    restore: false,
    prepare: true,
};

fn engine_with_snapshots(targets: u32, grains: u64) -> Engine {
    let mut e = Engine::new();
    for v in 0..=targets {
        e.add_volume(VolumeId(v), grains).unwrap();
    }
    for t in 1..=targets {
        let id = e
            .create_map(MapSpec::new(VolumeId(0), VolumeId(t), CopyType::Nocopy))
            .unwrap();
        e.start(id, PREP).unwrap();
    }
    e
}

fn write_plans(c: &mut Criterion) {
    let grains = 1 << 16;
    let mut group = c.benchmark_group("plan_write");
    group.throughput(Throughput::Elements(1));
    for targets in [1u32, 16, 256] {
        let mut e = engine_with_snapshots(targets, grains);
        let mut g = 0u64;
        group.bench_with_input(
            BenchmarkId::new("source_whole", targets),
            &targets,
            |b, _| {
                b.iter(|| {
                    g = (g + 1) % grains;
                    let p = e.plan_write(VolumeId(0), g..g + 1, true).unwrap();
                    assert_eq!(p.copies.len(), 1);
                    e.abandon_copies(&p.copies);
                    black_box(p);
                })
            },
        );
        // Partial write to the oldest target: its fill walks the whole chain.
        group.bench_with_input(
            BenchmarkId::new("oldest_target_partial", targets),
            &targets,
            |b, _| {
                b.iter(|| {
                    g = (g + 1) % grains;
                    let p = e.plan_write(VolumeId(1), g..g + 1, false).unwrap();
                    e.abandon_copies(&p.copies);
                    black_box(p);
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("resolve_read_oldest", targets),
            &targets,
            |b, _| {
                b.iter(|| {
                    g = (g + 1) % grains;
                    black_box(e.resolve_read(VolumeId(1), g).unwrap());
                })
            },
        );
    }
    group.finish();
}

fn background_scans(c: &mut Criterion) {
    let mut group = c.benchmark_group("scan_3390a");
    group.throughput(Throughput::Elements(GRAINS_3390A));
    group.sample_size(20);
    // Everything split but grain 0: the scan for the next grain to copy
    // crosses the whole bitmap.
    let mut split = Bitmap::ones(GRAINS_3390A);
    let mut words = split.as_words().to_vec();
    words[0] &= !1;
    split.replace_words(&words).unwrap();
    group.bench_function("highest_zero", |b| {
        b.iter(|| assert_eq!(black_box(&split).highest_zero(), Some(0)))
    });
    let down = Bitmap::ones(GRAINS_3390A);
    group.bench_function("clean_scan_and_not", |b| {
        b.iter(|| assert_eq!(black_box(&split).prev_one_and_not(&down, u64::MAX), None))
    });
    // The engine's background planner on a 3390-A map (one batch of 64
    // grains after a full scan from the top).
    let mut e = Engine::new();
    e.add_volume(VolumeId(0), GRAINS_3390A).unwrap();
    e.add_volume(VolumeId(1), GRAINS_3390A).unwrap();
    let id = e
        .create_map(MapSpec::new(VolumeId(0), VolumeId(1), CopyType::Full))
        .unwrap();
    e.start(id, PREP).unwrap();
    let mut words = Bitmap::ones(GRAINS_3390A).as_words().to_vec();
    words[0] = 0;
    group.bench_function("plan_background_64", |b| {
        b.iter(|| {
            e.set_split_words(id, &words).unwrap();
            let p = e.plan_background(id, 64);
            assert_eq!(p.len(), 64);
            e.abandon_copies(&p);
        })
    });
    // A fresh full copy: 65,536 grains planned per grain vs as runs.
    let fresh = Bitmap::new(GRAINS_3390A).as_words().to_vec();
    group.throughput(Throughput::Elements(65_536));
    group.bench_function("plan_background_grains_65536", |b| {
        e.set_split_words(id, &fresh).unwrap();
        b.iter(|| {
            let p = e.plan_background(id, 65_536);
            assert_eq!(p.len(), 65_536);
            e.abandon_copies(&p);
        })
    });
    group.bench_function("plan_background_runs_65536", |b| {
        e.set_split_words(id, &fresh).unwrap();
        b.iter(|| {
            let p = e.plan_background_runs(id, 65_536);
            assert_eq!(p.len(), 1);
            e.abandon_runs(&p);
        })
    });
    group.finish();
}

fn mapping_memory(c: &mut Criterion) {
    let mut e = Engine::new();
    for v in 0..3 {
        e.add_volume(VolumeId(v), GRAINS_3390A).unwrap();
    }
    let full = e
        .create_map(MapSpec::new(VolumeId(0), VolumeId(1), CopyType::Full))
        .unwrap();
    let mut spec = MapSpec::new(VolumeId(0), VolumeId(2), CopyType::Full);
    spec.incremental = true;
    let incr = e.create_map(spec).unwrap();
    println!(
        "memory per 3390-A mapping ({GRAINS_3390A} grains): {} bytes, incremental {} bytes",
        e.map_heap_bytes(full).unwrap(),
        e.map_heap_bytes(incr).unwrap()
    );
    let mut group = c.benchmark_group("create_map_3390a");
    group.sample_size(10);
    group.bench_function("create_delete", |b| {
        b.iter(|| {
            let id = e
                .create_map(MapSpec::new(VolumeId(1), VolumeId(0), CopyType::Nocopy))
                .unwrap();
            e.delete(id, false).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, write_plans, background_scans, mapping_memory);
criterion_main!(benches);
