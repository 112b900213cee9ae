//! Crash at every step boundary of a small workload (snapshots, a clone, a
//! cascade, an incremental map), with unflushed writes dropped, kept or torn;
//! then IPL and check: every target reads its point-in-time image, every
//! flushed write survived, background copy finishes (LIVE-1) without changing
//! any image, and a second IPL changes nothing.

mod common;

use common::*;
use controller::testing::VirtualSubsystem;
use controller::MapState;
use volume_store::CrashMode;

const VOLS: [&str; 5] = ["S", "T1", "T2", "C", "I"];

fn verify_after_crash(vs: &mut VirtualSubsystem, model: &mut Model, what: &str) {
    let r = vs.sub().ipl_report();
    assert!(r.dirty, "{what}: a crash must leave the directory dirty");
    assert!(
        r.check_findings.is_empty(),
        "{what}: checker: {:?}",
        r.check_findings
    );
    for v in VOLS {
        let img = read_all(vs, v).unwrap_or_else(|e| panic!("{what}: read {v}: {e}"));
        if let Err(e) = model.check_after_crash(v, &img) {
            panic!("{what}: {e}");
        }
        model.settle(v, img);
    }
    // LIVE-1: background work finishes and changes no image.
    for _ in 0..64 {
        if !vs.sub().copy_step(1 << 30).unwrap().more {
            break;
        }
    }
    for m in vs.sub().maps() {
        if m.copy_type == controller::CopyType::Full {
            assert_eq!(m.state, MapState::IdleOrCopied, "{what}: map {m:?}");
        }
    }
    vs.ipl().unwrap();
    assert!(!vs.sub().ipl_report().dirty, "{what}: clean IPL");
    for v in VOLS {
        let img = read_all(vs, v).unwrap();
        assert!(
            img == model.current[v],
            "{what}: {v} changed after background copy and a clean IPL"
        );
    }
}

fn run_until(k: usize) -> (VirtualSubsystem, Model) {
    let vs = VirtualSubsystem::boot(config()).unwrap();
    let mut model = Model::new();
    for i in 0..k {
        step(&vs, &mut model, i).unwrap_or_else(|e| panic!("step {i}: {e}"));
    }
    (vs, model)
}

#[test]
fn workload_without_crash_keeps_every_image() {
    let (vs, model) = run_until(STEPS);
    for v in VOLS {
        assert!(read_all(&vs, v).unwrap() == model.current[v], "{v}");
    }
    let metrics = vs.sub().metrics();
    assert!(
        metrics.cow_copies > 0 && metrics.group_commits > 0,
        "{metrics:?}"
    );
}

#[test]
fn crash_at_every_step_boundary() {
    // CONTROLLER_CRASH_SEEDS=N adds N torn and N random-subset images per boundary.
    let extra: u64 = std::env::var("CONTROLLER_CRASH_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut modes = vec![
        CrashMode::DropAll,
        CrashMode::KeepAll,
        CrashMode::Torn { seed: 1 },
    ];
    for seed in 0..extra {
        modes.push(CrashMode::Torn { seed: 100 + seed });
        modes.push(CrashMode::RandomSubset { seed: 200 + seed });
    }
    for k in 0..=STEPS {
        for &mode in &modes {
            let (mut vs, mut model) = run_until(k);
            vs.crash(mode).unwrap();
            vs.ipl()
                .unwrap_or_else(|e| panic!("IPL after step {k} {mode:?}: {}", e.full_message()));
            verify_after_crash(
                &mut vs,
                &mut model,
                &format!("crash after {k} steps, {mode:?}"),
            );
        }
    }
}

#[test]
fn crash_with_only_a_prefix_of_unflushed_writes() {
    // Between flushes, every prefix of the pending writes of every store.
    for k in [3, 9, 15] {
        for n in 0..4 {
            let (mut vs, mut model) = run_until(k);
            vs.crash(CrashMode::KeepPrefix(n)).unwrap();
            vs.ipl().unwrap();
            verify_after_crash(
                &mut vs,
                &mut model,
                &format!("crash after {k} steps keeping {n} writes"),
            );
        }
    }
}
