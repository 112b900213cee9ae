//! Replay time of the resource manager with activity tables holding 10,000 sessions
//! (goal: under one second). Tables live in `VirtualSubsystem`s (in memory), so this
//! measures the RM's own work: reading and folding the tables, deciding, and writing the
//! Terminated entries. Run: `cargo bench -p resource-manager --bench replay`.

use std::hint::black_box;
use std::sync::Arc;

use activity_table::{EntryStatus, NewEntry, PhysSessionId, SessionId};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use geometry::{Extent, ExtentSet};
use resource_manager::{CrashSwitch, ResourceManager, SubsystemPort, VirtualSubsystem};

const SESSIONS: usize = 10_000;
const SUBSYSTEMS: usize = 4;
const VOLUMES_PER_SESSION: usize = 2;

/// `SESSIONS` sessions spread over the subsystems, two volume rows each; `finished` sessions
/// also have Completed rows (every other one) or Terminated rows.
fn world(finished: bool) -> Vec<Arc<dyn SubsystemPort>> {
    let crash = CrashSwitch::new();
    let subs: Vec<Arc<VirtualSubsystem>> = (0..SUBSYSTEMS)
        .map(|i| Arc::new(VirtualSubsystem::new(&format!("SS{i}"), crash.clone())))
        .collect();
    let mut batches: Vec<Vec<NewEntry>> = vec![Vec::new(); SUBSYSTEMS];
    for n in 0..SESSIONS {
        let sub = n % SUBSYSTEMS;
        let id = SessionId::new(format!("SESSION{n:05}")).expect("id");
        let phys = PhysSessionId::new((n % 255) as u8 + 1).expect("phys");
        let mut statuses = vec![EntryStatus::Initiated];
        if finished {
            statuses.push(if n % 2 == 0 {
                EntryStatus::Completed
            } else {
                EntryStatus::Terminated {
                    reason: resource_manager::TerminateReason::Ipl,
                }
            });
        }
        for status in statuses {
            for v in 0..VOLUMES_PER_SESSION {
                batches[sub].push(NewEntry {
                    session_id: id.clone(),
                    phys_session_id: phys,
                    subsystem: format!("SS{sub}"),
                    volume: Some(format!("VOL{:03}", (n + v) % 64)),
                    extents: ExtentSet::from(Extent::new(0, 1_000 + n as u64).expect("extent")),
                    status,
                    program: Some(format!("DSS{}", n % 8)),
                    host: None,
                    time_unix_ms: 1,
                });
            }
        }
    }
    for (s, b) in subs.iter().zip(batches) {
        s.load_entries(b);
    }
    subs.into_iter()
        .map(|s| s as Arc<dyn SubsystemPort>)
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay_10k_sessions");
    g.sample_size(10);
    g.bench_function("on_ipl_all_open", |b| {
        b.iter_batched(
            || world(false),
            |ports| {
                let rm = ResourceManager::new(ports).expect("attach");
                black_box(rm.on_ipl().expect("ipl"))
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("on_ipl_all_settled", |b| {
        b.iter_batched(
            || world(true),
            |ports| {
                let rm = ResourceManager::new(ports).expect("attach");
                black_box(rm.on_ipl().expect("ipl"))
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("on_reset_all_settled", |b| {
        b.iter_batched(
            || world(true),
            |ports| {
                let rm = ResourceManager::new(ports).expect("attach");
                black_box(rm.on_reset("SS0").expect("reset"))
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
