//! The seeded run loop and the campaign driver (`fault_run`).
//!
//! One run: split the seed, build a world, then for each step pick an
//! operation from the workload RNG, apply it, advance simulated time from the
//! scheduler RNG, and check every invariant; at the end turn faults off and
//! check LIVE-1. The first violation ends the run. A campaign runs a shard of
//! `seed..seed+runs`, reruns some seeds to compare trace hashes, and merges
//! the figures.

use std::time::Instant;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::check::{Invariant, RunKind, Violation};
use crate::controller_world::ControllerWorld;
use crate::engine_world::EngineWorld;
use crate::faults::FaultPlan;
use crate::seed::{Seeds, Shard};
use crate::stores::Bug;
use crate::summary::{FaultRunSummary, RunStats};
use crate::trace::Trace;
use crate::workload::{next_op, Op, Shape, Weights};
use crate::world::World;

/// Known, reported bugs in other crates, by the text their violation
/// signature contains (docs/RELIABILITY.md, "Bugs found"; tests/regressions.rs
/// keeps a reproduction of each). Campaigns may tolerate them
/// ([`FaultRunConfig::tolerate`]): they are counted and the run goes on, so
/// they do not hide other failures. Empty: every bug found so far is fixed
/// at its root, and its failing runs are kept in testdata/sim-regressions.
pub const KNOWN_BUGS: &[&str] = &[];

/// Which system a run exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorldKind {
    /// The pure engine over in-memory stores (no durability faults).
    Engine,
    /// The real controller over fault-injecting in-memory stores.
    Controller,
}

/// What a campaign runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultRunConfig {
    /// First seed.
    pub seed: u64,
    /// Number of seeds in the whole campaign (all shards).
    pub runs: u64,
    /// The slice of the campaign to run here.
    pub shard: Shard,
    /// Operations per run.
    pub steps: usize,
    /// The system under test.
    pub world: WorldKind,
    /// Volumes and their size.
    pub shape: Shape,
    /// Operation mix.
    pub weights: Weights,
    /// Rerun every n-th seed of the slice to compare trace hashes (0 = never;
    /// the first seed is always rerun when n > 0).
    pub determinism_every: u64,
    /// Inject store and site faults (controller world; crashes and resets
    /// come from the workload either way).
    pub faults: bool,
    /// Crash-point enumeration: flush boundaries per operation whose crash
    /// images are recovered and checked (0 = off).
    pub crash_points: usize,
    /// A deliberate bug to switch on (tests of the checkers).
    pub bug: Option<Bug>,
    /// Signatures of known, reported bugs to count instead of failing on
    /// (see [`crate::summary::signature`]); empty by default.
    pub tolerate: &'static [&'static str],
}

impl FaultRunConfig {
    /// Short runs on a small system: the CI tier's defaults.
    pub fn new(seed: u64, runs: u64) -> FaultRunConfig {
        FaultRunConfig {
            seed,
            runs,
            shard: Shard::ALL,
            steps: 60,
            world: WorldKind::Controller,
            shape: Shape {
                volumes: 4,
                tracks: 8,
                sectors_per_track: 8,
            },
            weights: Weights::DEFAULT,
            determinism_every: 10,
            faults: true,
            crash_points: 0,
            bug: None,
            tolerate: &[],
        }
    }

    /// The same campaign on the engine-only world.
    pub fn engine_only(seed: u64, runs: u64) -> FaultRunConfig {
        FaultRunConfig {
            world: WorldKind::Engine,
            faults: false,
            ..FaultRunConfig::new(seed, runs)
        }
    }

    /// The config echo printed at the start and in the summary, in words
    /// (`merge` compares it between shards).
    pub fn describe(&self) -> String {
        let world = match self.world {
            WorldKind::Engine => "engine world",
            WorldKind::Controller => "controller world",
        };
        let crash = match self.crash_points {
            0 => "no crash-point enumeration".to_string(),
            n => format!("crash points enumerated in {n} runs"),
        };
        let bug = self.bug.map_or_else(
            || "no deliberate bug".to_string(),
            |b| format!("deliberate bug {b:?}"),
        );
        let tolerating = if self.tolerate.is_empty() {
            "nothing tolerated".to_string()
        } else {
            let names: Vec<String> = self.tolerate.iter().map(|i| format!("{i:?}")).collect();
            format!("tolerating {}", names.join(", "))
        };
        format!(
            "--seed {} --runs {} --shard {} ({world}, faults {}, {crash}, {bug}, {tolerating}, {} steps per seed, {} volumes of {} tracks of {} bytes)",
            self.seed,
            self.runs,
            self.shard,
            if self.faults { "on" } else { "off" },
            self.steps,
            self.shape.volumes,
            self.shape.tracks,
            self.shape.sectors_per_track * 512
        )
    }
}

/// The outcome of one seed.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The seed.
    pub seed: u64,
    /// Its counters.
    pub stats: RunStats,
    /// Hash over the whole trace.
    pub trace_hash: u64,
    /// The first violation, if any.
    pub violation: Option<Violation>,
    /// The last trace events, oldest first.
    pub trace_tail: Vec<String>,
    /// The operations applied, in order (for a regression test).
    pub ops: Vec<Op>,
}

impl RunOutcome {
    /// The operations of the run as a Rust array literal.
    pub fn ops_as_rust(&self) -> String {
        let lines: Vec<String> = self
            .ops
            .iter()
            .map(|o| format!("    {},", o.to_rust()))
            .collect();
        format!("[\n{}\n]", lines.join("\n"))
    }
}

/// Runs one seed.
pub fn run_seed(cfg: &FaultRunConfig, seed: u64) -> RunOutcome {
    run(cfg, seed, None, None)
}

/// Runs one seed with an explicit fault plan instead of the one the seed draws.
pub fn run_seed_with_plan(cfg: &FaultRunConfig, seed: u64, plan: FaultPlan) -> RunOutcome {
    run(cfg, seed, Some(plan), None)
}

/// Replays a fixed operation sequence (a regression test's): the seed still
/// drives the disk, fault and scheduler RNGs, the fault plan is given
/// explicitly and the operations replace the workload generator, so changes
/// to either generator cannot change what the test runs. Ops naming a map or
/// session slot that does not exist are skipped (and traced).
pub fn replay(cfg: &FaultRunConfig, seed: u64, plan: FaultPlan, ops: &[Op]) -> RunOutcome {
    let cfg = FaultRunConfig {
        steps: ops.len(),
        ..*cfg
    };
    run(&cfg, seed, Some(plan), Some(ops))
}

fn run(
    cfg: &FaultRunConfig,
    seed: u64,
    plan: Option<FaultPlan>,
    fixed: Option<&[Op]>,
) -> RunOutcome {
    let seeds = Seeds::split(seed);
    let mut trace = Trace::new();
    trace.record(format!("seed {seed} {}", cfg.describe()));
    let mut ops = Vec::new();
    let (stats, violation) = match cfg.world {
        WorldKind::Engine => drive(
            cfg,
            &seeds,
            &mut trace,
            (fixed, &mut ops),
            EngineWorld::new(cfg.shape),
        ),
        WorldKind::Controller => {
            let plan = if let Some(p) = plan {
                p
            } else if cfg.faults {
                FaultPlan::for_seed(seed, &cfg.shape)
            } else {
                FaultPlan::none()
            };
            trace.record(format!("faults {plan:?}"));
            match ControllerWorld::new(cfg.shape, &seeds, plan, cfg.bug) {
                Ok(w) => drive(
                    cfg,
                    &seeds,
                    &mut trace,
                    (fixed, &mut ops),
                    w.with_crash_points(cfg.crash_points)
                        .tolerating(cfg.tolerate),
                ),
                Err(e) => (
                    RunStats::default(),
                    Some(Violation::new(Invariant::Ipl1, e.to_string())),
                ),
            }
        }
    };
    let kind = match (cfg.world, cfg.crash_points) {
        (WorldKind::Engine, _) => RunKind::Engine,
        (WorldKind::Controller, 0) => RunKind::FaultRun,
        (WorldKind::Controller, _) => RunKind::CrashPoints,
    };
    let violation = violation.map(|v| v.at(kind, seed, trace.step));
    if let Some(v) = &violation {
        trace.record(format!("VIOLATION {v}"));
    }
    RunOutcome {
        seed,
        stats,
        trace_hash: trace.hash(),
        violation,
        trace_tail: trace.recent().map(|e| e.to_string()).collect(),
        ops,
    }
}

/// The run loop over any world: operations from the workload generator, or
/// the fixed sequence when one is given (`ops` records what ran).
fn drive<W: World>(
    cfg: &FaultRunConfig,
    seeds: &Seeds,
    trace: &mut Trace,
    (fixed, ops): (Option<&[Op]>, &mut Vec<Op>),
    mut world: W,
) -> (RunStats, Option<Violation>) {
    let mut workload = Seeds::rng(seeds.workload);
    let mut scheduler = Seeds::rng(seeds.scheduler);
    let result = (|| {
        for step in 0..cfg.steps {
            trace.step = step as u64;
            trace.clock.advance(scheduler.random_range(1..1_000));
            let op = match fixed {
                Some(f) => {
                    let op = f[step].clone();
                    if !op.fits(world.map_slots(), world.session_slots()) {
                        trace.record(format!("{op} -> skipped (no such slot in this replay)"));
                        continue;
                    }
                    op
                }
                None => next_op(
                    &mut workload,
                    &cfg.shape,
                    &cfg.weights,
                    world.map_slots(),
                    world.session_slots(),
                ),
            };
            ops.push(op.clone());
            world.apply(&op, trace)?;
            world.check_all()?;
        }
        trace.step = cfg.steps as u64;
        world.settle_live(trace)
    })();
    (world.stats().clone(), result.err())
}

/// Runs a campaign (one shard of it) and returns its figures.
pub fn fault_run(cfg: &FaultRunConfig) -> FaultRunSummary {
    let started = Instant::now();
    let mut summary = FaultRunSummary {
        config: cfg.describe(),
        ..FaultRunSummary::default()
    };
    for (i, seed) in cfg.shard.seeds(cfg.seed, cfg.runs).enumerate() {
        let out = run_seed(cfg, seed);
        if cfg.determinism_every > 0 && (i as u64) % cfg.determinism_every == 0 {
            summary.determinism.seeds_checked += 1;
            if run_seed(cfg, seed).trace_hash != out.trace_hash {
                summary.determinism.mismatched_seeds.push(seed);
            }
        }
        summary.add_run(seed, &out.stats, out.violation.map(|v| (v, out.trace_tail)));
    }
    summary.finish(started.elapsed().as_millis() as u64);
    summary
}

/// Crash-point enumeration over `runs` seeded workloads from `seed`: at up
/// to `per_op` flush boundaries inside every operation (and after it) every
/// crash image is IPL'd and checked; faults other than the crashes are off.
pub fn crash_points(seed: u64, runs: u64, per_op: usize) -> FaultRunSummary {
    let mut cfg = FaultRunConfig::new(seed, runs);
    cfg.faults = false;
    cfg.crash_points = per_op.max(1);
    cfg.steps = 40;
    cfg.determinism_every = 0;
    fault_run(&cfg)
}
