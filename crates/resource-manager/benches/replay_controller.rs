//! IPL replay through a real controller: activity tables on disk (strict durability)
//! holding 10,000 finished sessions plus 32 open ones with live physical sessions. Each
//! sample IPLs a fresh copy of a prepared data directory (setup, not timed), then times a
//! new resource manager's `on_ipl`: read and fold the tables, terminate the 32 open
//! sessions (durable entries in the subsystem and volume tables), withdraw them.
//! Run: `cargo bench -p resource-manager --bench replay_controller`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use activity_table::{
    ActivityTable, EntryStatus, NewEntry, PhysSessionId, SessionId, TableId, TerminateReason,
};
use controller::datadir::DataDir;
use controller::{DurabilityMode, Subsystem, SubsystemConfig, VolumeConfig};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use geometry::{Extent, ExtentSet};
use resource_manager::{
    ControllerPort, ResourceManager, SessionExtent, SessionSpec, SubsystemPort,
};

const HISTORY: usize = 10_000;
const OPEN: usize = 32;

fn config() -> SubsystemConfig {
    let mut volumes = Vec::new();
    for i in 0..OPEN {
        for p in ["SRC", "TGT"] {
            volumes.push(VolumeConfig {
                id: format!("{p}{i:02}"),
                model: "fb:64K:4K".parse().expect("model"),
                read_only: false,
            });
        }
    }
    SubsystemConfig {
        id: "SS1".into(),
        durability: DurabilityMode::Strict,
        listen: Default::default(),
        nbd: Default::default(),
        rates: Default::default(),
        volumes,
        peers: Vec::new(),
        host: None,
    }
}

/// History rows written straight into the table files (one batch per table).
fn write_history(root: &Path) {
    let dir = DataDir::new(root);
    let mut by_volume: Vec<Vec<NewEntry>> = vec![Vec::new(); OPEN];
    let mut all = Vec::new();
    for n in 0..HISTORY {
        let vol = n % OPEN;
        let id = SessionId::new(format!("OLD{n:05}")).expect("id");
        let end = if n % 2 == 0 {
            EntryStatus::Completed
        } else {
            EntryStatus::Terminated {
                reason: TerminateReason::Ipl,
            }
        };
        for status in [EntryStatus::Initiated, end] {
            let e = NewEntry {
                session_id: id.clone(),
                phys_session_id: PhysSessionId::new((n % 64) as u8 + 1).expect("phys"),
                subsystem: "SS1".into(),
                volume: Some(format!("SRC{vol:02}")),
                extents: ExtentSet::from(Extent::new(0, 7).expect("extent")),
                status,
                program: Some("DSS".into()),
                host: None,
                time_unix_ms: 1,
            };
            by_volume[vol].push(e.clone());
            all.push(e);
        }
    }
    let (mut t, _) =
        ActivityTable::open(dir.subsystem_table_path(), TableId::Subsystem("SS1".into()))
            .expect("table");
    t.append_batch(&all).expect("append");
    for (i, entries) in by_volume.iter().enumerate() {
        let volume = format!("SRC{i:02}");
        let id = TableId::Volume {
            subsystem: "SS1".into(),
            volume: volume.clone(),
        };
        let (mut t, _) = ActivityTable::open(dir.volume_table_path(&volume), id).expect("table");
        t.append_batch(entries).expect("append");
    }
}

fn template(root: &Path) {
    Subsystem::open(root, config())
        .expect("create")
        .close()
        .expect("close");
    write_history(root);
    let sub = Subsystem::open(root, config()).expect("reopen");
    let port = Arc::new(ControllerPort::new(sub.clone()));
    let rm = ResourceManager::new(vec![port as Arc<dyn SubsystemPort>]).expect("rm");
    for i in 0..OPEN {
        rm.start_session(&SessionSpec {
            id: SessionId::new(format!("NEW{i:02}")).expect("id"),
            program: "DSS".into(),
            host: None,
            copy_rate: None,
            extents: vec![SessionExtent {
                subsystem: "SS1".into(),
                volume: format!("SRC{i:02}"),
                extents: ExtentSet::from(Extent::new(0, 7).expect("extent")),
                target: format!("TGT{i:02}"),
            }],
        })
        .expect("start");
    }
    sub.harden().expect("harden");
    sub.close().expect("close");
}

/// Copies a data directory keeping sparse files sparse (the metadata store and the
/// volumes are mostly holes).
fn copy_dir(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp")
        .args(["-a", "--sparse=always"])
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp")
        .success();
    assert!(ok, "cp {} {}", from.display(), to.display());
}

fn bench(c: &mut Criterion) {
    let base = tempfile::tempdir().expect("tempdir");
    let tpl = base.path().join("template");
    template(&tpl);
    let mut g = c.benchmark_group("replay_controller");
    g.sample_size(10);
    g.bench_function("on_ipl_10k_history_32_open", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir_in(base.path()).expect("tempdir");
                copy_dir(&tpl, &dir.path().join("SS1"));
                let sub = Subsystem::open(dir.path().join("SS1"), config()).expect("ipl");
                (dir, sub)
            },
            |(dir, sub)| {
                let port = Arc::new(ControllerPort::new(sub.clone()));
                let rm = ResourceManager::new(vec![port as Arc<dyn SubsystemPort>]).expect("rm");
                let d = rm.on_ipl().expect("on_ipl");
                assert_eq!(d.acted().count(), OPEN);
                black_box(d);
                (dir, sub)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
