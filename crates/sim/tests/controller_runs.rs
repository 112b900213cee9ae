//! Seeded fault runs of the real controller (the CI tier): a few hundred
//! short runs with crashes, resets, IPLs (also during replay) and injected
//! faults, invariants checked after every step. `SIM_SEED` / `SIM_RUNS`
//! select a longer campaign; `SIM_TRACE=1` prints every step;
//! `SIM_SUMMARY_JSON=path` also writes the summary as JSON.

use sim::{fault_run, FaultRunConfig, Invariant, KNOWN_BUGS};

// Whether a known bug is fixed is told by its (ignored) regression test in
// tests/regressions.rs, not by this campaign: some show only rarely.

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn controller_seeds_keep_every_invariant() {
    let mut cfg = FaultRunConfig::new(env_u64("SIM_SEED", 1), env_u64("SIM_RUNS", 150));
    cfg.tolerate = KNOWN_BUGS;
    let summary = fault_run(&cfg);
    println!("{summary}");
    if let Ok(path) = std::env::var("SIM_SUMMARY_JSON") {
        std::fs::write(&path, summary.to_json()).unwrap();
    }
    assert!(summary.determinism.ok(), "{summary}");
    assert!(
        summary.passed(),
        "new failure (keep it in tests/regressions.rs, then fix):\n{summary}"
    );
    let s = &summary.stats;
    assert!(
        s.ipls > 0 && s.ipls_during_replay > 0 && s.resets + s.resets_lose_volatile > 0,
        "{summary}"
    );
    assert!(!s.faults.is_empty(), "{summary}");
    for inv in [
        Invariant::Pit1,
        Invariant::Pit2,
        Invariant::Meta1,
        Invariant::Ipl1,
        Invariant::Live1,
    ] {
        assert!(
            s.checks.get(&inv).copied().unwrap_or(0) > 0,
            "{inv} never checked\n{summary}"
        );
    }
}

/// `SIM_DUMP=<seed>` prints that seed's run as a kept fixed run (its fault
/// plan and operations as JSON, the form tests/fixed_runs.rs replays from
/// testdata/sim-regressions) and its outcome; with `SIM_DUMP_JSON=DIR` it
/// also writes it to DIR/seed-<seed>.json.
#[test]
fn dump_controller_seed_ops() {
    let Some(seed) = std::env::var("SIM_DUMP").ok().and_then(|v| v.parse().ok()) else {
        return;
    };
    let (fixed, _) = sim::fixed::FixedRun::capture(seed);
    println!("{}\nviolation: {}", fixed.to_json(), fixed.found);
    if let Ok(dir) = std::env::var("SIM_DUMP_JSON") {
        let path = std::path::Path::new(&dir).join(format!("seed-{seed}.json"));
        std::fs::write(&path, fixed.to_json()).unwrap();
        println!("kept {}", path.display());
    }
}
