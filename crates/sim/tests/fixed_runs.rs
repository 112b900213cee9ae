//! Every failure the simulator ever found, kept as a fixed run (fault plan
//! and operation sequence as data, testdata/sim-regressions/*.json) and
//! replayed here: each must now pass every invariant. docs/RELIABILITY.md
//! lists the bugs behind them. New ones: `SIM_DUMP=<seed> SIM_DUMP_JSON=DIR
//! cargo test -p sim --test controller_runs dump_controller_seed_ops`.

use std::path::Path;

use sim::fixed::FixedRun;

fn kept() -> Vec<(String, FixedRun)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/sim-regressions");
    FixedRun::load_dir(&dir).unwrap()
}

#[test]
fn every_kept_failure_now_passes() {
    let runs = kept();
    assert!(runs.len() >= 96, "only {} kept runs", runs.len());
    let mut failed = Vec::new();
    for (name, run) in &runs {
        assert!(!run.ops.is_empty(), "{name}: no operations");
        let out = run.replay().unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some(v) = out.violation {
            failed.push(format!(
                "{name} (found as: {})\n  now: {v}\n  {}",
                run.found,
                out.trace_tail.join("\n  ")
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn replay_is_deterministic_and_follows_the_kept_operations() {
    let runs = kept();
    let (name, run) = &runs[0];
    let a = run.replay().unwrap();
    let b = run.replay().unwrap();
    assert_eq!(a.trace_hash, b.trace_hash, "{name}");
    // Ops whose slot exists are applied as kept (skipped ones are traced).
    assert!(a.ops.len() <= run.ops.len());
    assert_eq!(a.ops[0], run.ops[0], "{name}");
}
