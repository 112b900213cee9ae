//! timezero: the pure time-zero copy engine of firmware-sim (FlashCopy maps,
//! split and difference bitmaps, Patent B cascades per backup process type).
//!
//! **What it is for.** Given control requests and host I/O requests, the
//! engine decides which physical volume holds the data of a grain, which grain
//! copies a write needs first and in what order, which grains background copy
//! and cleaning move next, and how maps move through the FlashCopy states. The
//! controller executes the plans on real stores and reports them done.
//!
//! **What it must not depend on.** No files, sockets, async, threads or
//! clocks; only `geometry` (for [`geometry::ExtentSet`]). Grains are tracks
//! (`u64`). Everything is deterministic.
//!
//! **Key types.** [`Engine`] (all state), [`MapSpec`], [`MapState`],
//! [`CopyType`], [`GrainCopy`] / [`WritePlan`] (plans), [`EngineEvent`],
//! [`Bitmap`], errors [`ControlError`], [`AccessError`], [`LoadError`].
//!
//! **Invariants** (module docs of `engine` hold the structural ones E1-E7;
//! all are listed in docs/SEMANTICS.md, "Invariants (I)", and docs/ENGINE.md,
//! "Module invariants"):
//! - reading any accessible volume returns its point-in-time image overlaid
//!   with the host writes to it (I1/I2), provided the controller executes
//!   every plan as documented below;
//! - a write to a volume costs at most one copy per cascade it is in, plus one
//!   fill, plus one per frozen (restore) cascade reached (I10);
//! - split bits of an active map only go 0 -> 1 (I4).
//!
//! **The plan/commit contract (what the controller must do).**
//! 1. Host write to `grains` of `vol`: `plan_write(vol, grains, whole)`;
//!    execute the copies in order (read `from`'s physical store, write `to`'s);
//!    make them durable; `commit_copies(&plan.copies)` (persist the split
//!    bits after the data is durable); apply the host write;
//!    `record_write(vol, grains)`.
//! 2. Between a plan and its commit the controller holds a lock on the grain
//!    number for every volume of the connected set of maps (simplest: a lock
//!    per grain number shared by all volumes), so that no other plan for the
//!    same grain runs, and it blocks control requests (start, stop, delete,
//!    suspend, resume, group operations): they need no plans in flight.
//!    Automatic transitions inside `commit_copies` are safe with other plans in
//!    flight: a cut only moves fully split targets, and a stopping map leaves
//!    its cascade only when none of its or its neighbour's copies is in flight.
//! 3. A plan that will not be executed must be released with
//!    `abandon_copies`. `commit_copies` is idempotent and tolerates bits
//!    already set and maps that left their chain.
//! 4. Background: `plan_background(map, n)` at the map's rate (see
//!    [`rate_grains_per_second`]), execute, `commit_copies`; drain
//!    [`Engine::take_events`] for completions, cleaning done and deletions.
//! 5. Persistence: [`Engine::save`] / [`Engine::load`] (checked); bitmaps can
//!    also be persisted per word ([`Engine::take_dirty`], [`Bitmap::as_words`])
//!    and installed after load with [`Engine::set_split_words`].
#![deny(missing_docs)]

mod bitmap;
mod engine;
mod error;
mod persist;
mod rate;
pub mod stages;
mod types;

pub use bitmap::{words_for, Bitmap, BitmapError};
pub use engine::{
    merge_runs, BitChange, DirtyWords, Engine, HostWrite, HostWritePlan, MAX_CONNECTED_MAPS,
    MAX_MAPS_PER_SOURCE,
};
pub use error::{AccessError, ControlError, LoadError, Operation};
pub use persist::{FORMAT_VERSION, MAGIC};
pub use rate::{rate_bytes_per_second, rate_grains_per_second, RATE_MAX};
pub use types::{
    CascadeId, CascadeInfo, CopyRun, CopyType, EngineEvent, GrainCopy, GroupId, GroupInfo, MapId,
    MapInfo, MapSpec, MapState, StartOptions, VolumeId, WritePlan,
};
