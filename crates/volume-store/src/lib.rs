//! Track-addressed volume stores for firmware-sim.
//!
//! What it is for: holding the bytes of each simulated volume. The controller
//! reads and writes volumes through [`TrackStore`] (`Arc<dyn TrackStore>`), by
//! byte offset, and asks it which tracks hold data and to make writes durable.
//!
//! What it must not depend on: anything above it (engine, controller, NBD). It
//! depends on `geometry` and `fault-site` only, plus OS file APIs.
//!
//! Key types:
//! - [`TrackStore`]: the contract (module [`store`] states it in full);
//! - [`SparseFileStore`]: one sparse file per volume with a self-identifying
//!   trailer ([`trailer`]); holes for unwritten tracks; poisoned after a failed flush;
//! - [`MemStore`]: sparse, in memory;
//! - [`StoreError`] with [`ErrorKind`]: the one error type of this layer;
//! - [`FaultPoint`] / [`NoFaults`]: fault sites ([`FaultSite`], re-exported
//!   from crate `fault-site`) checked by the controller;
//! - feature `fault-injection` (the simulator, hence the product's
//!   `fault-run`): `FaultyStore` (volatile write cache with crash images and
//!   injected faults around any store) and `FaultInjector` (seeded
//!   [`FaultPoint`] with per-site rules and counters). Both are deterministic
//!   from a `u64` seed;
//! - feature `test-utils` (tests only): `SparseFileStore::fail_next_flush`.
//!
//! Invariants: see [`store`] (the contract every store keeps), [`sparse`] (file
//! layout, poisoning) and [`mem`].
#![deny(missing_docs)]

mod alloc_map;
mod error;
mod fault_point;
#[cfg(feature = "fault-injection")]
pub mod faulty;
pub mod mem;
pub mod sparse;
pub mod store;
pub mod trailer;

pub use error::{ErrorKind, Op, StoreError};
pub use fault_point::{FaultPoint, FaultSite, NoFaults, UnknownFaultSite};
#[cfg(feature = "fault-injection")]
pub use faulty::{
    CrashMode, FaultEffect, FaultInjector, FaultRule, FaultyStore, OpFilter, SiteStats, Trigger,
};
pub use mem::MemStore;
pub use sparse::SparseFileStore;
pub use store::TrackStore;
