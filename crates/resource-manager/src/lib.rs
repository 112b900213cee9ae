//! The resource manager (the patent's SDM): the host-side service that backup copy programs
//! use to start and complete *backup copy sessions*, and that recovers them after an IPL, its
//! own restart, an abnormal end of a backup program, or a subsystem's reset notification
//! (patent A, US 5,241,668 / RE37,038; the rules are restated in docs/SESSIONS.md and
//! docs/SEMANTICS.md, invariants A1-A6 in "Invariants (A)").
//!
//! A logical session (host [`SessionId`]) covers extents of volumes on one or more
//! subsystems; on each it is one *physical session* ([`PhysSessionId`], 1..=255) protecting
//! those extents with time-zero copies onto target volumes. The subsystems' activity tables
//! are the only durable record: [`ResourceManager`] keeps nothing that it cannot rebuild
//! from them, so a new instance over the same subsystems knows what the old one knew.
//!
//! Depends on: `activity-table` (entry types), `geometry` (extent sets), and reaches a
//! subsystem only through [`SubsystemPort`]; it must not depend on the NBD layer, the
//! simulator or the binary. The adapter for `controller::Subsystem` ([`ControllerPort`],
//! the one place that maps controller errors and session states) and the scenario runner
//! ([`run_scenario`], behind `firmware-sim replay`) live in this crate.
//!
//! Key types: [`ResourceManager`], [`SessionSpec`], [`SubsystemPort`], [`ControllerPort`],
//! [`Decisions`], [`SessionInfo`], [`RmError`], [`ScenarioReport`], [`ScenarioError`].
//! With the `test-utils` feature: `VirtualSubsystem`, an in-memory subsystem with a model of
//! volume contents, reset faults and crash injection.
//!
//! Usage: one `ResourceManager` per host process over all subsystems it can reach
//! ([`ResourceManager::for_host`]); after a restart of the host or of the RM, build a new one
//! and call the matching event first. Every session has an owner host: a host's restart
//! events end only its sessions (the machine's IPL also ends every session on the
//! subsystems that restarted with it).
//!
//! Invariants: see the module docs of `manager` (ordering of entries and side effects),
//! `ledger` (how tables fold into session states) and `recovery` (A1-A5).
#![deny(missing_docs)]

mod controller_port;
mod error;
mod integrity;
mod ledger;
mod manager;
mod owed;
mod port;
mod recovery;
mod report;
mod scenario;
#[cfg(feature = "test-utils")]
mod virtual_subsystem;

pub use activity_table::{EntryStatus, PhysSessionId, SessionId, TerminateReason};
pub use controller_port::ControllerPort;
pub use error::RmError;
pub use ledger::SessionState;
pub use manager::{ResourceManager, SessionExtent, SessionSpec, DEFAULT_HOST, FREEZE_HOLD_MS};
pub use owed::{Owed, RETRY_AFTER};
pub use port::{
    CopyPair, HeldSession, PhysState, PhysicalSession, PortError, RejectKind, SubsystemPort,
};
pub use recovery::fmt_tracks;
pub use report::{
    incomplete_line, Decision, Decisions, Event, OrphanWithdrawn, Outcome, PhysicalPart, Progress,
    SessionInfo,
};
pub use scenario::{
    check_scenario_str, run_scenario, run_scenario_str, ScenarioError, ScenarioReport,
};
#[cfg(feature = "test-utils")]
pub use virtual_subsystem::{CrashSwitch, ResetLoss, VirtualSubsystem};
