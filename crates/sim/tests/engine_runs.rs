//! Engine-only seeded runs: the loop, the model and the checkers against the
//! pure engine (no controller, no durability faults). `SIM_SEED` / `SIM_RUNS`
//! select a longer campaign; `SIM_TRACE=1` prints every step.

use sim::{fault_run, run_seed, FaultRunConfig, Invariant};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seeds that fail because of a known, reported bug below the sim (see
/// docs/RELIABILITY.md, "Bugs found"). A fixed bug makes its seed pass, and
/// this test then fails until the seed is removed here (its regression test
/// in tests/regressions.rs stays).
const OPEN_BUGS: &[(u64, Invariant)] = &[];

#[test]
fn engine_seeds_keep_every_invariant() {
    let cfg = FaultRunConfig::engine_only(env_u64("SIM_SEED", 1), env_u64("SIM_RUNS", 200));
    let summary = fault_run(&cfg);
    assert!(summary.determinism.ok(), "{summary}");
    for f in &summary.failures {
        assert!(
            OPEN_BUGS.contains(&(f.seed, f.violation.invariant)),
            "new failure (add a regression test, then fix):\n{summary}"
        );
    }
    for (seed, _) in OPEN_BUGS {
        if cfg.shard.seeds(cfg.seed, cfg.runs).any(|s| s == *seed) {
            assert!(
                summary.failures.iter().any(|f| f.seed == *seed),
                "seed {seed} passes now: remove it from OPEN_BUGS"
            );
        }
    }
    assert_eq!(summary.seeds_run, cfg.runs);
    let s = &summary.stats;
    assert!(
        s.writes_acked > 5 * cfg.runs && s.tracks_verified > 50 * cfg.runs,
        "{summary}"
    );
    for inv in [
        Invariant::Pit1,
        Invariant::Pit2,
        Invariant::Cow1,
        Invariant::Meta1,
        Invariant::Ipl1,
        Invariant::Live1,
    ] {
        assert!(
            s.checks.get(&inv).copied().unwrap_or(0) > 0,
            "{inv} never checked\n{summary}"
        );
    }
    assert!(summary.determinism.seeds_checked > 0);
}

#[test]
fn same_seed_same_trace_and_different_seeds_differ() {
    let cfg = FaultRunConfig::engine_only(0, 1);
    let a = run_seed(&cfg, 77);
    let b = run_seed(&cfg, 77);
    let c = run_seed(&cfg, 78);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_ne!(a.trace_hash, c.trace_hash);
}

/// `SIM_DUMP=<seed>` prints that seed's operations as Rust (for
/// tests/regressions.rs) and its outcome.
#[test]
fn dump_seed_ops() {
    let Some(seed) = std::env::var("SIM_DUMP").ok().and_then(|v| v.parse().ok()) else {
        return;
    };
    let out = run_seed(&FaultRunConfig::engine_only(seed, 1), seed);
    println!(
        "{}\nviolation: {:?}",
        out.ops_as_rust(),
        out.violation.map(|v| v.to_string())
    );
}
