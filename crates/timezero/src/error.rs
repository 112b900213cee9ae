//! Errors of the engine layer: [`ControlError`] for control requests,
//! [`AccessError`] for host I/O resolution, [`LoadError`] for persisted state.
//! Each has a matchable variant plus the ids and state involved.

use thiserror::Error;

use crate::bitmap::BitmapError;
use crate::types::{GroupId, MapId, MapState, VolumeId};

/// A control operation, for [`ControlError::InvalidState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// prestartfcmap.
    Prepare,
    /// Flush done (internal).
    FlushDone,
    /// Flush failed (internal).
    FlushFailed,
    /// startfcmap.
    Start,
    /// stopfcmap.
    Stop,
    /// stopfcmap -force.
    StopForce,
    /// rmfcmap.
    Delete,
    /// rmfcmap -force.
    DeleteForce,
    /// Bitmap offline.
    Suspend,
    /// Bitmap online.
    Resume,
    /// Add to / remove from a consistency group.
    ChangeGroup,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Prepare => "prepare",
            Operation::FlushDone => "flush done",
            Operation::FlushFailed => "flush failed",
            Operation::Start => "start",
            Operation::Stop => "stop",
            Operation::StopForce => "stop --force",
            Operation::Delete => "delete",
            Operation::DeleteForce => "delete --force",
            Operation::Suspend => "suspend (bitmap offline)",
            Operation::Resume => "resume (bitmap online)",
            Operation::ChangeGroup => "change group",
        })
    }
}

/// A control request was rejected; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ControlError {
    /// No such volume.
    #[error("unknown volume {0}")]
    UnknownVolume(VolumeId),
    /// No such map.
    #[error("unknown map {0}")]
    UnknownMap(MapId),
    /// No such group.
    #[error("unknown consistency group {0}")]
    UnknownGroup(GroupId),
    /// The volume id is already registered.
    #[error("volume {0} already exists")]
    VolumeExists(VolumeId),
    /// A volume with maps cannot be removed.
    #[error("volume {volume} is used by map {map}")]
    VolumeInUse {
        /// Volume.
        volume: VolumeId,
        /// A map using it.
        map: MapId,
    },
    /// A volume in a cascade cannot be removed: other volumes of the
    /// cascade read through it (a target whose map was deleted can head the
    /// cascade of the targets downstream of it).
    #[error("volume {volume} is in cascade {cascade}")]
    VolumeInCascade {
        /// Volume.
        volume: VolumeId,
        /// The cascade it heads or belongs to.
        cascade: crate::CascadeId,
        /// The volumes that read through it (the cascade's members, less itself).
        dependents: Vec<VolumeId>,
    },
    /// Source and target are the same volume.
    #[error("map source and target are both {0}")]
    SameVolume(VolumeId),
    /// Source and target sizes differ.
    #[error("size mismatch: source {source_volume} has {source_grains} grains, target {target} has {target_grains}")]
    SizeMismatch {
        /// Source volume.
        source_volume: VolumeId,
        /// Its grains.
        source_grains: u64,
        /// Target volume.
        target: VolumeId,
        /// Its grains.
        target_grains: u64,
    },
    /// The target is already the target of a map.
    #[error("volume {target} is already the target of {map}")]
    TargetInUse {
        /// Target volume.
        target: VolumeId,
        /// Existing map.
        map: MapId,
    },
    /// Too many maps from one source.
    #[error("volume {source_volume} is already the source of {limit} maps")]
    TooManyMapsPerSource {
        /// Source volume.
        source_volume: VolumeId,
        /// Limit.
        limit: usize,
    },
    /// The connected set of maps would exceed the limit.
    #[error("the connected set of maps would exceed {limit}")]
    TooManyConnectedMaps {
        /// Limit.
        limit: usize,
    },
    /// Extent set empty or beyond the volume.
    #[error("extents of the map must be non-empty and below grain {grains}")]
    BadExtents {
        /// Grains of the volumes.
        grains: u64,
    },
    /// Only full maps can be incremental.
    #[error("only full (clone) maps can be incremental")]
    IncrementalNeedsFull,
    /// Rate above 150.
    #[error("rate {0} out of range 0..=150")]
    RateOutOfRange(u8),
    /// The operation is not allowed in the map's state (table 3.4).
    #[error("{op} is not allowed on {map} in state {state}")]
    InvalidState {
        /// Map.
        map: MapId,
        /// Requested operation.
        op: Operation,
        /// Its state.
        state: MapState,
    },
    /// Start without `restore` while the target is the source of active maps.
    #[error("target {target} of {map} is the source of active maps; start with restore")]
    TargetIsActiveSource {
        /// Map.
        map: MapId,
        /// Its target.
        target: VolumeId,
    },
    /// The source is not accessible (offline target or suspended).
    #[error("source {source_volume} of {map} is not accessible")]
    SourceNotAccessible {
        /// Map.
        map: MapId,
        /// Its source.
        source_volume: VolumeId,
    },
    /// A group member cannot be controlled individually.
    #[error("{map} is a member of {group}; use the group")]
    GroupMember {
        /// Map.
        map: MapId,
        /// Its group.
        group: GroupId,
    },
    /// The map is already in a group.
    #[error("{map} is already in {group}")]
    AlreadyInGroup {
        /// Map.
        map: MapId,
        /// Its group.
        group: GroupId,
    },
    /// Group membership cannot change while a member is active.
    #[error("{group} has a member in state {state}")]
    GroupBusy {
        /// Group.
        group: GroupId,
        /// A member's state.
        state: MapState,
    },
    /// A group with this id exists.
    #[error("{0} already exists")]
    GroupExists(GroupId),
    /// The group has no maps to start.
    #[error("{0} has no maps")]
    GroupEmpty(GroupId),
    /// The group still has maps (delete without force).
    #[error("{0} still has maps")]
    GroupNotEmpty(GroupId),
    /// Members of one start form a cycle.
    #[error("maps started together form a cycle")]
    StartCycle,
    /// Non-force stop of an incomplete map whose target heads a cascade of
    /// another type: this engine rejects it rather than pushing the target's
    /// unsplit grains into that cascade first (docs/ENGINE.md, "Decisions the
    /// semantics leave open").
    #[error("target {target} of {map} heads a {other} cascade with dependants; stop with force")]
    OtherTypeDependants {
        /// Map.
        map: MapId,
        /// Its target.
        target: VolumeId,
        /// Copy type of the dependent cascade.
        other: crate::types::CopyType,
    },
    /// A non-force stop would take the target offline while it is the source
    /// of a map that still copies from it (that map could never finish).
    #[error("target {target} of {map} is the source of {dependant}, which still copies from it; stop {dependant} first, or stop with force (which stops it too if its image reads grains the target holds)")]
    SourceOfCopyingMap {
        /// Map.
        map: MapId,
        /// Its target.
        target: VolumeId,
        /// The map still copying from that target.
        dependant: MapId,
    },
    /// The request would close a loop of restores: frozen heads whose first
    /// members lead back to themselves, so writes to those volumes could not
    /// be resolved (E4).
    #[error(
        "{map} would close a restore cycle through {}; stop or delete one of the restores first",
        VolumeList(volumes)
    )]
    RestoreCycle {
        /// The map being started or stopped.
        map: MapId,
        /// The volumes on the loop, in walk order.
        volumes: Vec<VolumeId>,
    },
    /// Raw bitmap words do not fit.
    #[error("bitmap of {map}: {source}")]
    Bitmap {
        /// Map.
        map: MapId,
        /// Cause.
        source: BitmapError,
    },
}

/// Host I/O cannot be resolved or planned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AccessError {
    /// No such volume.
    #[error("unknown volume {0}")]
    UnknownVolume(VolumeId),
    /// Grain beyond the volume.
    #[error("grain {grain} is beyond volume {volume} ({grains} grains)")]
    OutOfRange {
        /// Volume.
        volume: VolumeId,
        /// Grain.
        grain: u64,
        /// Grains of the volume.
        grains: u64,
    },
    /// The volume is the target of a map in a state that takes it offline.
    #[error("volume {volume} is the target of {map} in state {state}: not accessible")]
    TargetOffline {
        /// Volume.
        volume: VolumeId,
        /// Map.
        map: MapId,
        /// Its state.
        state: MapState,
    },
    /// Planning found a cycle of frozen (restore) heads; nothing was planned.
    #[error("grain {grain} of volume {volume} cannot be resolved (restore cycle)")]
    Unresolvable {
        /// Volume.
        volume: VolumeId,
        /// Grain.
        grain: u64,
    },
    /// The volume is source or target of a suspended map, or its data
    /// resolves through a suspended (bitmap offline) map.
    #[error("volume {volume} needs the bitmap of suspended {map}")]
    Suspended {
        /// Volume.
        volume: VolumeId,
        /// Suspended map.
        map: MapId,
    },
}

/// Persisted engine state could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LoadError {
    /// Shorter than its header or declared payload.
    #[error("engine state truncated: {len} bytes, need {needed}")]
    Truncated {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// Wrong magic.
    #[error("not engine state (bad magic)")]
    BadMagic,
    /// Unknown format version.
    #[error("unsupported engine state version {0}")]
    Version(u32),
    /// Checksum mismatch.
    #[error("engine state checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// Stored crc32c.
        stored: u32,
        /// Computed crc32c.
        computed: u32,
    },
    /// The payload does not decode.
    #[error("engine state does not decode: {0}")]
    Decode(String),
    /// A field is out of range or inconsistent.
    #[error("engine state invalid: {0}")]
    Invalid(String),
}

/// Volumes joined as `a -> b -> c -> a` for messages.
struct VolumeList<'a>(&'a [VolumeId]);

impl std::fmt::Display for VolumeList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for v in self.0 {
            write!(f, "{v} -> ")?;
        }
        match self.0.first() {
            Some(v) => write!(f, "{v}"),
            None => Ok(()),
        }
    }
}
