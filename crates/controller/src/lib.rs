//! controller: the simulated subsystem. It owns volumes (sparse track files),
//! the time-zero engine, activity tables and a data directory, and executes
//! engine plans on the stores so that no point-in-time image is ever lost,
//! whatever crashes when.
//!
//! What it must not depend on: NBD, HTTP, the resource manager or the
//! simulator (they depend on it). The engine (`timezero`) stays pure: this
//! crate is its only I/O shell.
//!
//! Key types: [`Subsystem`] (open/IPL, host I/O, control, copier, physical
//! sessions, activity tables), [`SubsystemConfig`], [`ControllerError`] with
//! [`ErrorKind`], [`check()`] (offline checker), and behind feature
//! `test-utils` the `testing` module (`VirtualSubsystem`).
//!
//! Invariants: the durability rules of docs/DURABILITY.md ("The rules and
//! where they hold"), stated where they
//! are enforced (`subsystem` module doc); metadata format invariants in `meta`.
#![deny(missing_docs)]

pub mod check;
pub mod config;
pub mod datadir;
pub mod error;
pub mod events;
pub mod meta;
pub mod metrics;
pub mod provider;
pub mod subsystem;

pub use check::{check, repair_trailers, CheckReport};
pub use config::{
    check_id, ConfigError, DurabilityMode, ListenConfig, NbdConfig, PeerConfig, RateLimits,
    SubsystemConfig, VolumeConfig,
};
pub use error::{ControllerError, ErrorKind, Result};
pub use events::Event;
pub use metrics::MetricsSnapshot;
pub use provider::{FileStores, StoreProvider};
pub use subsystem::{
    AllocationExtent, CascadeView, CopierHandle, CopyStepReport, GroupView, IplReport, MapCreate,
    MapView, OpenOptions, PhysSessionInfo, PhysSessionState, SessionPair, Subsystem, VolumeRef,
    VolumeView, MAX_FREEZE, MAX_SESSIONS_PER_SUBSYSTEM, MAX_SESSIONS_PER_VOLUME,
};
pub use timezero::{CopyType, GroupId, MapId, MapState};

#[cfg(feature = "test-utils")]
pub mod testing;
