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
        let out = run.replay();
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
    let a = run.replay();
    let b = run.replay();
    assert_eq!(a.trace_hash, b.trace_hash, "{name}");
    // Ops whose slot exists are applied as kept (skipped ones are traced).
    assert!(a.ops.len() <= run.ops.len());
    assert_eq!(a.ops[0], run.ops[0], "{name}");
}

/// `SIM_FIXED=<file name>` replays one kept run (with `SIM_TRACE=1`, every step).
#[test]
fn replay_one_kept_run() {
    let Ok(name) = std::env::var("SIM_FIXED") else {
        return;
    };
    let (_, run) = kept()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no kept run {name}"));
    let out = run.replay();
    println!("{}", out.trace_tail.join("\n"));
    println!("violation: {:?}", out.violation.map(|v| v.to_string()));
}

/// `SIM_SHRINK=<file name>` removes operations from a kept run one at a
/// time while it still fails with the same invariant, and prints the
/// smallest sequence found with its trace (delta debugging).
#[test]
fn shrink_kept_run() {
    let Ok(name) = std::env::var("SIM_SHRINK") else {
        return;
    };
    let (_, mut run) = kept()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no kept run {name}"));
    let inv = run
        .replay()
        .violation
        .expect("the kept run passes: nothing to shrink")
        .invariant;
    let fails = |r: &FixedRun| r.replay().violation.is_some_and(|v| v.invariant == inv);
    let mut progress = true;
    while progress {
        progress = false;
        let mut i = run.ops.len();
        while i > 0 {
            i -= 1;
            let mut t = run.clone();
            t.ops.remove(i);
            if fails(&t) {
                run = t;
                progress = true;
            }
        }
    }
    let out = run.replay();
    println!("{}", run.to_json());
    println!("{}", out.trace_tail.join("\n"));
    println!("violation: {:?}", out.violation.map(|v| v.to_string()));
}
