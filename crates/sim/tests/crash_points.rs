//! Crash-point enumeration on the real controller: at every flush boundary
//! (and after every operation) of a few seeded workloads, the crash images
//! (metadata at every prefix of its pending writes with volumes losing or
//! keeping theirs, seeded random subsets, torn variants) are each IPL'd and
//! checked against the model, and the run keeps going. `SIM_SEED` /
//! `SIM_RUNS` select other workloads.

use sim::{fault_run, FaultRunConfig, Invariant};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn every_crash_image_of_a_few_workloads_recovers() {
    let mut cfg = FaultRunConfig::new(env_u64("SIM_SEED", 100), env_u64("SIM_RUNS", 6));
    cfg.faults = false;
    cfg.crash_points = 3;
    cfg.steps = 40;
    cfg.determinism_every = 0;
    cfg.tolerate = sim::KNOWN_BUGS;
    let summary = fault_run(&cfg);
    println!("{summary}");
    assert!(summary.passed(), "{summary}");
    let s = &summary.stats;
    assert!(s.crash_points > 50 && s.images_checked > 500, "{summary}");
    assert!(
        s.checks.get(&Invariant::Meta1).copied().unwrap_or(0) >= s.images_checked,
        "{summary}"
    );
}
