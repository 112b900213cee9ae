//! Activity-table benchmarks: durable append throughput (one fdatasync per
//! append, and per batch), and open + replay of a table of 10,000 sessions
//! (20,000 entries: Initiated + Completed). Results in docs/PERFORMANCE.md.
//!
//! Run: `cargo bench -p activity-table --bench table`

use std::hint::black_box;

use activity_table::{ActivityTable, EntryStatus, NewEntry, PhysSessionId, SessionId, TableId};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use geometry::{Extent, ExtentSet};

fn id() -> TableId {
    TableId::Subsystem("SS01".into())
}

fn entry(n: u64, status: EntryStatus) -> NewEntry {
    NewEntry {
        session_id: SessionId::new(format!("DUMP.JOB{n:06}")).expect("valid id"),
        phys_session_id: PhysSessionId::new((n % 255 + 1) as u8).expect("nonzero"),
        subsystem: "SS01".into(),
        volume: Some(format!("VOL{:03}", n % 64)),
        extents: [Extent {
            first: n * 15,
            last: n * 15 + 149,
        }]
        .into_iter()
        .collect::<ExtentSet>(),
        status,
        program: Some("ADRDSSU".into()),
        host: None,
        time_unix_ms: 1_700_000_000_000 + n,
    }
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("activity_table_append");
    g.throughput(Throughput::Elements(1));
    let (mut t, _) = ActivityTable::open(dir.path().join("single"), id()).expect("open");
    let mut n = 0u64;
    g.bench_function("append_fdatasync", |b| {
        b.iter(|| {
            n += 1;
            black_box(t.append(entry(n, EntryStatus::Initiated)).expect("append"))
        })
    });
    drop(t);
    let batch: Vec<NewEntry> = (0..64).map(|n| entry(n, EntryStatus::Initiated)).collect();
    g.throughput(Throughput::Elements(batch.len() as u64));
    let (mut t, _) = ActivityTable::open(dir.path().join("batch"), id()).expect("open");
    g.bench_function("append_batch64_fdatasync", |b| {
        b.iter(|| black_box(t.append_batch(&batch).expect("append")))
    });
    g.finish();
}

fn open_replay(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ss01.table");
    {
        let (mut t, _) = ActivityTable::open(&path, id()).expect("open");
        let all: Vec<NewEntry> = (0..10_000u64)
            .flat_map(|n| {
                [
                    entry(n, EntryStatus::Initiated),
                    entry(n, EntryStatus::Completed),
                ]
            })
            .collect();
        for chunk in all.chunks(1000) {
            t.append_batch(chunk).expect("append");
        }
        assert_eq!(t.entries().len(), 20_000);
    }
    let mut g = c.benchmark_group("activity_table_open");
    g.throughput(Throughput::Elements(20_000));
    g.sample_size(20);
    g.bench_function("open_replay_10k_sessions", |b| {
        b.iter_batched(
            || (),
            |()| {
                let (t, report) = ActivityTable::open(&path, id()).expect("open");
                assert_eq!(report.records, 20_000);
                black_box(t.entries().len())
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("open_replay_and_summarize_10k_sessions", |b| {
        b.iter(|| {
            let (t, _) = ActivityTable::open(&path, id()).expect("open");
            black_box(t.sessions().len())
        })
    });
    g.finish();
}

criterion_group!(benches, append, open_replay);
criterion_main!(benches);
