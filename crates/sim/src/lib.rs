//! sim: deterministic simulation and fault injection with invariant checkers.
//!
//! What it is for: proving that no point-in-time image and no acknowledged
//! write is ever lost, under crashes, power loss, torn and misdirected writes,
//! I/O errors at named sites, resets and IPLs at any I/O boundary. One `u64`
//! seed drives a whole run (workload, fault choices, scheduling, simulated
//! time); the same seed gives the same trace hash.
//!
//! What it must not depend on: real disks or wall-clock time for anything that
//! decides behaviour (wall time is only measured for the recovery figures).
//! It depends on every layer below the binary; nothing depends on it except
//! the binary's `fault-run` command and tests.
//!
//! Key types:
//! - [`seed::Seeds`] / [`seed::Shard`]: seed splitting and campaign slices;
//! - [`trace::Trace`]: ordered events with a hash (determinism self-check);
//! - [`model::Model`]: the oracle of what every volume must read;
//! - [`check::Violation`]: a broken invariant with a reproduce command;
//! - [`summary::FaultRunSummary`]: the figures of docs/RELIABILITY.md.
//!
//! Features: `fuzz` adds the `fuzz` module (entry points of the cargo-fuzz
//! targets and `tests/fuzz_smoke.rs`; it needs nbd's test export, so the
//! shipped binary leaves it out). The fault stores come from volume-store's
//! `fault-injection` feature, which the product's `fault-run` needs.
//!
//! Invariants checked (ids of docs/RELIABILITY.md): PIT-1, PIT-2, COW-1,
//! CAS-1, IPL-1, INV-1, META-1, LIVE-1; each checker's module states what it
//! compares.
#![deny(missing_docs)]

pub mod check;
pub mod concurrent;
pub mod controller_world;
pub mod data;
pub mod engine_world;
pub mod exhaustive;
pub mod faults;
pub mod fixed;
#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod model;
pub mod realfs;
mod recovery;
pub mod runner;
pub mod seed;
mod sessions;
pub mod stores;
pub mod summary;
pub mod trace;
pub mod verify;
pub mod workload;
pub mod world;

pub use check::{Invariant, RunKind, Violation};
pub use exhaustive::exhaustive;
pub use runner::{
    crash_points, fault_run, run_seed, FaultRunConfig, RunOutcome, WorldKind, KNOWN_BUGS,
};
pub use seed::{Seeds, Shard};
pub use summary::{FaultRunSummary, RunStats};
pub use world::World;
