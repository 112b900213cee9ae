//! The checkers catch a deliberate durability bug within the CI seed budget.
//!
//! `Bug::BitsBeforeData` makes every flush the controller issues to a volume
//! store do nothing (host flushes stay honest): a grain copied for
//! copy-on-write is not durable when its split bit is journalled, breaking
//! rule 1 (data before metadata). After a power loss the bit says "split"
//! while the target lost the copy, so the target no longer reads its
//! point-in-time image (PIT-1 / CAS-1 while the map is active, PIT-2 once a
//! completed clone is independent).
//!
//! `Bug::JournalBeforeRoot` makes the controller journal under a root
//! generation whose root is not durable: roots are written once, unflushed
//! and unverified, and a failed root write (fault site `root.write`) is
//! ignored. The next crash then finds journal records of a generation with
//! no root (the IPL refuses: IPL-1) or a root older than the state the host
//! was shown (maps change across the IPL: IPL-1, or images lost: PIT).

use sim::faults::FaultPlan;
use sim::runner::run_seed_with_plan;
use sim::stores::Bug;
use sim::{fault_run, run_seed, FaultRunConfig, Invariant};

#[test]
fn bits_before_data_is_caught() {
    let mut cfg = FaultRunConfig::new(1, 60);
    cfg.bug = Some(Bug::BitsBeforeData);
    cfg.faults = false;
    cfg.determinism_every = 0;
    cfg.tolerate = sim::KNOWN_BUGS;
    let summary = fault_run(&cfg);
    println!("{summary}");
    assert!(
        summary.seeds_failed > 0,
        "the bug went unnoticed in 60 seeds:\n{summary}"
    );
    let first = &summary.failures[0].violation;
    assert!(
        matches!(
            first.invariant,
            Invariant::Pit1 | Invariant::Pit2 | Invariant::Cas1 | Invariant::Cow1
        ),
        "caught, but not as a data violation: {first}"
    );
    assert!(
        first
            .to_string()
            .contains("reproduce: firmware-sim fault-run --seed"),
        "{first}"
    );
    // The bug is the cause: the same seed passes with it switched off.
    let mut clean = cfg;
    clean.bug = None;
    let again = run_seed(&clean, first.seed);
    assert!(
        again.violation.is_none(),
        "seed {} fails without the bug too: {:?}",
        first.seed,
        again.violation
    );
}

#[test]
fn crash_points_catch_it_on_the_first_workloads() {
    let mut cfg = FaultRunConfig::new(100, 10);
    cfg.bug = Some(Bug::BitsBeforeData);
    cfg.faults = false;
    cfg.crash_points = 3;
    cfg.steps = 40;
    cfg.determinism_every = 0;
    cfg.tolerate = sim::KNOWN_BUGS;
    let summary = fault_run(&cfg);
    println!("{summary}");
    assert!(summary.seeds_failed > 0, "{summary}");
}

#[test]
fn journal_before_durable_root_is_caught() {
    let mut cfg = FaultRunConfig::new(1, 1);
    cfg.bug = Some(Bug::JournalBeforeRoot);
    cfg.determinism_every = 0;
    let plan = FaultPlan {
        sites: vec![(volume_store::FaultSite::RootWrite, 0.3, false)],
        ..FaultPlan::none()
    };
    let mut caught = None;
    for seed in 1..=40u64 {
        let out = run_seed_with_plan(&cfg, seed, plan.clone());
        if let Some(v) = out.violation {
            caught = Some((seed, v));
            break;
        }
    }
    let (seed, v) = caught.expect("the bug went unnoticed in 40 seeds with root.write faults");
    assert!(
        matches!(
            v.invariant,
            Invariant::Ipl1 | Invariant::Inv1 | Invariant::Pit1 | Invariant::Pit2 | Invariant::Cas1
        ),
        "seed {seed}: caught as {v}"
    );
    // The bug is the cause: the same seed and faults pass with it off.
    let mut clean = cfg;
    clean.bug = None;
    let again = run_seed_with_plan(&clean, seed, plan);
    assert!(
        again.violation.is_none(),
        "seed {seed} fails without the bug too: {:?}",
        again.violation.map(|v| v.to_string())
    );
}
