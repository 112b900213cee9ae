//! Public value types of the engine: ids, copy types, map states, map specs,
//! plans and events. Plain data; all behaviour lives in [`crate::Engine`].

use std::fmt;

use geometry::ExtentSet;
use serde::{Deserialize, Serialize};

/// A volume known to the engine (the controller chooses the number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VolumeId(pub u32);

/// A mapping (FlashCopy map), assigned by [`crate::Engine::create_map`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MapId(pub u32);

/// A consistency group, assigned by [`crate::Engine::create_group`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupId(pub u32);

/// A cascade (one typed dependency chain), assigned by the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CascadeId(pub u32);

macro_rules! display_id {
    ($t:ty, $p:literal) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($p, "{}"), self.0)
            }
        }
    };
}
display_id!(VolumeId, "vol");
display_id!(MapId, "map");
display_id!(GroupId, "group");
display_id!(CascadeId, "cascade");

/// Backup process type of Patent B. Each type has its own cascades; data is
/// never copied across types. Open for more types (hence `non_exhaustive`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CopyType {
    /// Clone: background copy until the target is a complete, independent copy.
    Full,
    /// Snapshot: only grains about to change upstream are copied.
    Nocopy,
}

impl CopyType {
    /// All types, in a fixed order (persistence codes follow this order).
    pub const ALL: [CopyType; 2] = [CopyType::Full, CopyType::Nocopy];
}

impl fmt::Display for CopyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CopyType::Full => "full",
            CopyType::Nocopy => "nocopy",
        })
    }
}

/// FlashCopy map states (docs/SEMANTICS.md, "Map states and volume access"
/// and "Transitions").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapState {
    /// Never started, or copy complete and out of every chain. Both volumes online.
    IdleOrCopied,
    /// Prepare requested; target not accessible until start.
    Preparing,
    /// Ready to start; target not accessible.
    Prepared,
    /// Started: target in a cascade, background copy at the copy rate.
    Copying,
    /// Stop requested: cleaning into the downstream neighbour at the clean rate.
    Stopping,
    /// Stopped incomplete: target offline, its data is not an image.
    Stopped,
    /// Bitmap offline: source and target offline until resume.
    Suspended,
}

impl MapState {
    /// Whether the map's target is a member of a cascade in this state
    /// (copying maps may already have been cut at 100 %).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            MapState::Copying | MapState::Stopping | MapState::Suspended
        )
    }
}

impl fmt::Display for MapState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MapState::IdleOrCopied => "idle_or_copied",
            MapState::Preparing => "preparing",
            MapState::Prepared => "prepared",
            MapState::Copying => "copying",
            MapState::Stopping => "stopping",
            MapState::Stopped => "stopped",
            MapState::Suspended => "suspended",
        })
    }
}

/// What a new mapping copies and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapSpec {
    /// Volume copied from.
    pub source: VolumeId,
    /// Volume copied to (same number of grains; the target of no other map).
    pub target: VolumeId,
    /// Backup process type: selects the cascade.
    pub copy_type: CopyType,
    /// Keep a difference bitmap so a restart copies only changed grains (full maps only).
    pub incremental: bool,
    /// Grains (tracks) covered; `None` = the whole volume. Outside the set the
    /// target keeps its own data.
    pub extents: Option<ExtentSet>,
    /// Background copy rate, 0..=150 (0 = no background copy).
    pub copy_rate: u8,
    /// Cleaning rate, 0..=150.
    pub clean_rate: u8,
    /// Delete the map when it reaches idle_or_copied after a copy completes.
    pub autodelete: bool,
}

impl MapSpec {
    /// A whole-volume map with the SVC default rates (50/50), not incremental.
    pub fn new(source: VolumeId, target: VolumeId, copy_type: CopyType) -> MapSpec {
        MapSpec {
            source,
            target,
            copy_type,
            incremental: false,
            extents: None,
            copy_rate: 50,
            clean_rate: 50,
            autodelete: false,
        }
    }
}

/// Options of a start request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartOptions {
    /// `-restore`: allow the target to be the source of active maps (reverse
    /// FlashCopy); their images are kept (I15, docs/SEMANTICS.md).
    pub restore: bool,
    /// `-prep`: prepare (and complete the flush) first if the map is
    /// idle_or_copied or stopped.
    pub prepare: bool,
}

/// One grain copy of a plan: read grain `grain` of the physical store of
/// `from` and write it to the physical store of `to`; once durable, report it
/// with [`crate::Engine::commit_copies`], which sets `map`'s split bit.
/// `from == to` is possible (the data is already in place): it still needs a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GrainCopy {
    /// Map whose split bit the copy sets (the map whose target is `to`).
    pub map: MapId,
    /// Grain (track) number.
    pub grain: u64,
    /// Volume whose physical store holds the data now.
    pub from: VolumeId,
    /// Volume whose physical store receives it.
    pub to: VolumeId,
}

/// The copies a host write needs before it may be applied, in the order they
/// must be executed (and made durable before the host data).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WritePlan {
    /// Ordered copies, grain by grain (all copies of one grain are contiguous).
    pub copies: Vec<GrainCopy>,
}

/// A state change the controller should log or act on; drained with
/// [`crate::Engine::take_events`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EngineEvent {
    /// A map changed state.
    StateChanged {
        /// The map.
        map: MapId,
        /// Previous state.
        from: MapState,
        /// New state.
        to: MapState,
    },
    /// A map's target now holds every grain; it was cut from its chain.
    CopyCompleted {
        /// The map.
        map: MapId,
    },
    /// A stopping map finished cleaning and left its cascade.
    CleaningDone {
        /// The map.
        map: MapId,
    },
    /// A map was deleted (`autodelete` when it went by itself).
    MapDeleted {
        /// The map.
        map: MapId,
        /// Deleted by autodelete rather than a request.
        autodelete: bool,
    },
    /// A consistency group was deleted by its autodelete option.
    GroupDeleted {
        /// The group.
        group: GroupId,
    },
}

/// Introspection of one map (for the control API).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapInfo {
    /// Id.
    pub id: MapId,
    /// The spec it was created with (rates as currently set).
    pub spec: MapSpec,
    /// Current state.
    pub state: MapState,
    /// Split grains / covered grains, in percent (floor).
    pub progress_percent: u8,
    /// Consistency group, if any.
    pub group: Option<GroupId>,
    /// Started with `-restore` (shows as restoring while active).
    pub restoring: bool,
    /// Cascade the target is a member of, if any.
    pub cascade: Option<CascadeId>,
    /// For a suspended map: the state it returns to on resume.
    pub resume_to: Option<MapState>,
    /// Grains the map covers (its extents, or the whole volume).
    pub grains_total: u64,
    /// Covered grains split (held by the target) since the last start.
    pub grains_split: u64,
    /// Incremental maps: grains changed on source or target since the last start.
    pub grains_changed: Option<u64>,
}

/// Introspection of one cascade.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CascadeInfo {
    /// Id.
    pub id: CascadeId,
    /// Backup process type.
    pub copy_type: CopyType,
    /// Head volume (the cascade source).
    pub head: VolumeId,
    /// The head stands for the head's *physical* data, not its view: set when
    /// the head became a restore target (lazy restore, docs/ENGINE.md, "Restore").
    pub head_frozen: bool,
    /// Started by an extent-limited map: maps from the head are not inserted here.
    pub private: bool,
    /// Targets, upstream to downstream (newest first).
    pub members: Vec<VolumeId>,
}

/// Introspection of one consistency group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Id.
    pub id: GroupId,
    /// Delete the group when its last map leaves.
    pub autodelete: bool,
    /// Member maps.
    pub members: Vec<MapId>,
}

/// A run of background copies with one source and one target: grains
/// `first..=last`, each copied from `from`'s store to `to`'s (any order within
/// the run; runs in the order given). Commit with
/// [`crate::Engine::commit_runs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CopyRun {
    /// Map whose split bits the run sets.
    pub map: MapId,
    /// Volume whose physical store holds the data now.
    pub from: VolumeId,
    /// Volume whose physical store receives it.
    pub to: VolumeId,
    /// Lowest grain.
    pub first: u64,
    /// Highest grain (inclusive).
    pub last: u64,
}

impl CopyRun {
    /// Number of grains.
    pub fn grains(&self) -> u64 {
        self.last - self.first + 1
    }

    /// The run as single grain copies, highest grain first.
    pub fn copies(&self) -> impl Iterator<Item = GrainCopy> + '_ {
        (self.first..=self.last).rev().map(|grain| GrainCopy {
            map: self.map,
            grain,
            from: self.from,
            to: self.to,
        })
    }
}
