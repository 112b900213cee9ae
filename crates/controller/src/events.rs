//! Events the subsystem publishes (tokio broadcast): state changes, progress,
//! suspensions, poisoned stores, checkpoints. Lagging receivers lose the
//! oldest events (broadcast semantics); the state itself is always queryable.

use serde::Serialize;
use timezero::{MapId, MapState};

/// Capacity of the event channel.
pub const EVENT_CAPACITY: usize = 4096;

/// One subsystem event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A map changed state.
    MapState {
        /// The map.
        map: MapId,
        /// Previous state.
        from: MapState,
        /// New state.
        to: MapState,
    },
    /// Background copy or cleaning progressed.
    Progress {
        /// The map.
        map: MapId,
        /// Split grains / covered grains, in percent (floor).
        progress_percent: u8,
    },
    /// A map's target holds every grain.
    CopyCompleted {
        /// The map.
        map: MapId,
    },
    /// A stopping map finished cleaning.
    CleaningDone {
        /// The map.
        map: MapId,
    },
    /// A map was deleted.
    MapDeleted {
        /// The map.
        map: MapId,
        /// By autodelete.
        autodelete: bool,
    },
    /// A map was suspended because its metadata or data could not be made durable.
    MapSuspended {
        /// The map.
        map: MapId,
        /// Why.
        reason: String,
    },
    /// A store failed a flush and refuses writes until the subsystem is IPLed.
    StorePoisoned {
        /// The volume (or `_meta`).
        volume: String,
        /// The failure.
        reason: String,
    },
    /// A checkpoint made a new root durable.
    Checkpoint {
        /// Its generation.
        generation: u64,
    },
}
