//! Sessions across daemons: each daemon serves its own subsystem's side of
//! the resource manager's port (`/port/...`, [`routes`]), and reaches the
//! subsystems of its peers through [`RemotePort`], a
//! [`SubsystemPort`](resource_manager::SubsystemPort) over their control
//! APIs. A session whose extents name `SS02/VOL` is established on SS02 by
//! SS01's resource manager through SS02's `/port` routes, and its rows are
//! written to SS02's own activity tables, so SS02's IPL, with SS01 as its
//! peer, terminates it on both.
//!
//! Wire format: JSON bodies; every `/port` answer is `{"Ok": ...}` or
//! `{"Err": PortError}` with status 200, so the port contract (which calls
//! may have partly happened, `Gone` vs `Failed`) crosses the network intact.
//! A peer that does not answer is `PortError::Failed` naming it and its
//! address; nothing is retried here (the resource manager's events are).

mod remote;
mod routes;

pub use remote::{set_peer_roots, set_peer_timeout, set_peer_token, RemotePort};
pub use routes::routes;
