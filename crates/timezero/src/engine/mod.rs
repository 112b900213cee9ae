//! The engine state: volumes, maps, cascades, groups, and the queries shared
//! by control, planning and persistence.
//!
//! Invariants (checked by `tests/` after every step and by `load`):
//! - E1 A volume is a non-head *member* of at most one cascade, and only while
//!   its map (`target_map`) is copying, stopping or suspended; members of a
//!   cascade of type `t` have maps of type `t`.
//! - E2 Per volume and type at most one cascade holds the volume in a
//!   *non-frozen role* (member, or head with `frozen == false`). Frozen heads
//!   stand for the head's physical data (lazy restore, docs/ENGINE.md,
//!   "Restore") and are never used for insertion.
//! - E3 Every cascade has at least one member; a volume appears once in a
//!   cascade, except that a frozen head may also be a member of it.
//! - E4 Resolution terminates: following member -> non-frozen head -> its
//!   member cascade never revisits a volume (a start freezes every non-frozen
//!   cascade its target heads), and neither does rule A (frozen head -> first
//!   member). Starts and stops that would close a loop are refused; see
//!   `cycles.rs`.
//! - E5 A copying map that is not a member has a full split bitmap (it was cut
//!   at completion and waits for its dependants).
//! - E6 Extent-limited maps: split bits outside the extents are preset at
//!   start (the target keeps its own data there, so "full" = complete). In a
//!   *shared* (non-private) cascade such a member is **transparent** at the
//!   grains it does not cover: resolution walks past it, rule B hands a
//!   change to the next member that covers the grain, and rule A to the
//!   first covering member of a frozen cascade. So extent-limited maps join
//!   the cascade of their type like any other (Patent B, claim 1: k backup
//!   sessions on one volume cost one copy per host write). Two rules keep
//!   transparency sound:
//!   - nothing is inserted into a shared chain to read through an
//!     extent-limited member: a map whose source is one starts a *private*
//!     cascade headed by it (private cascades are never used for insertion
//!     from their head, E2 counts only shared roles, and nothing in them is
//!     transparent: all their members derive from their first member). A
//!     member whose map names such a member as its source can still sit
//!     below it, after a cut rehomed it (it then reads through the cut
//!     target, not through its map's source), so this is a rule of
//!     insertion, not a shape `load` could check;
//!   - an extent-limited member is never cut at completion (its own data
//!     outside its extents must not become its dependants' view): it stays
//!     in the chain at 100 %, *parked*, until no member downstream reads
//!     through it, then leaves with no view changing.
//! - E7 Split bits of an active map only go 0 -> 1; they are reset only at start.

mod control;
mod cycles;
mod groups;
mod host_write;
mod insert;
mod plan;
mod reach;
mod runs;
mod settle;

use std::collections::BTreeMap;

pub use host_write::{BitChange, HostWrite, HostWritePlan};
pub use runs::merge_runs;

use crate::bitmap::Bitmap;
use crate::error::{AccessError, ControlError};
use crate::types::{
    CascadeId, CascadeInfo, CopyType, EngineEvent, GroupId, GroupInfo, MapId, MapInfo, MapSpec,
    MapState, VolumeId,
};

/// Maps per source volume (limits of I7, docs/SEMANTICS.md).
pub const MAX_MAPS_PER_SOURCE: usize = 256;
/// Maps in one connected set of maps (maps linked through shared volumes;
/// I7, docs/SEMANTICS.md).
pub const MAX_CONNECTED_MAPS: usize = 256;

#[derive(Clone, Debug)]
pub(crate) struct Vol {
    pub(crate) grains: u64,
    /// The map (any state) whose target this volume is.
    pub(crate) target_map: Option<MapId>,
    /// Maps (any state) whose source this volume is.
    pub(crate) source_maps: Vec<MapId>,
    /// Cascade this volume is a non-head member of.
    pub(crate) member_of: Option<CascadeId>,
    /// Cascades this volume heads (frozen or not).
    pub(crate) heads: Vec<CascadeId>,
}

#[derive(Clone, Debug)]
pub(crate) struct Map {
    pub(crate) spec: MapSpec,
    pub(crate) state: MapState,
    pub(crate) resume_to: Option<MapState>,
    pub(crate) group: Option<GroupId>,
    pub(crate) split: Bitmap,
    pub(crate) diff: Option<Bitmap>,
    pub(crate) started_once: bool,
    pub(crate) restoring: bool,
    /// Grains outside the extents (preset as split at start).
    pub(crate) outside: u64,
    /// Planned copies not yet committed or abandoned (not persisted).
    pub(crate) pending: u32,
    /// Every grain above this one is split (background scan hint, not persisted).
    pub(crate) bg_cursor: u64,
    /// The grains an extent-limited map covers (`None`: every grain). Derived
    /// from the spec, not persisted.
    pub(crate) cover: Option<Bitmap>,
    /// Withdrawn while members downstream still read through its target: it
    /// cleans, then deletes itself instead of stopping (persisted).
    pub(crate) withdrawn: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cascade {
    pub(crate) ty: CopyType,
    pub(crate) head: VolumeId,
    pub(crate) frozen: bool,
    /// Started by an extent-limited map (E6): not used for insertion from the head.
    pub(crate) private: bool,
    pub(crate) members: Vec<VolumeId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Group {
    pub(crate) autodelete: bool,
    pub(crate) members: Vec<MapId>,
}

/// Word indices of a map's bitmaps changed since the last
/// [`Engine::take_dirty`] (for incremental persistence).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirtyWords {
    /// Changed words of the split bitmap.
    pub split: Vec<usize>,
    /// Changed words of the difference bitmap (incremental maps).
    pub diff: Vec<usize>,
}

/// The time-zero copy engine. See the crate docs for the contract.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    pub(crate) vols: BTreeMap<VolumeId, Vol>,
    pub(crate) maps: BTreeMap<MapId, Map>,
    pub(crate) cascades: BTreeMap<CascadeId, Cascade>,
    pub(crate) groups: BTreeMap<GroupId, Group>,
    pub(crate) next_map: u32,
    pub(crate) next_group: u32,
    pub(crate) next_cascade: u32,
    pub(crate) events: Vec<EngineEvent>,
    /// Number of maps in state suspended (fast path of `check_access`).
    pub(crate) n_suspended: usize,
    /// Copying maps already cut at 100 % that wait for their dependants.
    pub(crate) waiting: std::collections::BTreeSet<MapId>,
    /// Extent-limited members of shared cascades at 100 %, kept in the chain
    /// while downstream members read through them (E6).
    pub(crate) parked: std::collections::BTreeSet<MapId>,
}

impl Engine {
    /// An empty engine.
    pub fn new() -> Engine {
        Engine::default()
    }

    /// Register a volume of `grains` grains (tracks).
    pub fn add_volume(&mut self, volume: VolumeId, grains: u64) -> Result<(), ControlError> {
        if self.vols.contains_key(&volume) {
            return Err(ControlError::VolumeExists(volume));
        }
        self.vols.insert(
            volume,
            Vol {
                grains,
                target_map: None,
                source_maps: Vec::new(),
                member_of: None,
                heads: Vec::new(),
            },
        );
        Ok(())
    }

    /// Forget a volume that no map uses.
    pub fn remove_volume(&mut self, volume: VolumeId) -> Result<(), ControlError> {
        let v = self.vol(volume)?;
        if let Some(map) = v.target_map.or_else(|| v.source_maps.first().copied()) {
            return Err(ControlError::VolumeInUse { volume, map });
        }
        if let Some(cascade) = v.member_of.or_else(|| v.heads.first().copied()) {
            let dependents = self
                .cascades
                .get(&cascade)
                .map(|c| c.members.iter().copied().filter(|m| *m != volume).collect())
                .unwrap_or_default();
            return Err(ControlError::VolumeInCascade {
                volume,
                cascade,
                dependents,
            });
        }
        debug_assert!(
            self.is_plain(volume),
            "removing volume {volume} that is not plain"
        );
        self.vols.remove(&volume);
        Ok(())
    }

    /// Grains of a volume.
    pub fn volume_grains(&self, volume: VolumeId) -> Option<u64> {
        self.vols.get(&volume).map(|v| v.grains)
    }

    /// Registered volumes, ascending.
    pub fn volumes(&self) -> Vec<VolumeId> {
        self.vols.keys().copied().collect()
    }

    /// Drain the queued events (state changes, completions, deletions).
    pub fn take_events(&mut self) -> Vec<EngineEvent> {
        std::mem::take(&mut self.events)
    }

    /// State of a map.
    pub fn map_state(&self, map: MapId) -> Option<MapState> {
        self.maps.get(&map).map(|m| m.state)
    }

    /// Progress in percent (floor of split grains / covered grains); `None`
    /// for an unknown map.
    pub fn progress_percent(&self, map: MapId) -> Option<u8> {
        self.maps.get(&map).map(progress_of)
    }

    /// Introspection of one map.
    pub fn map_info(&self, map: MapId) -> Option<MapInfo> {
        let m = self.maps.get(&map)?;
        Some(MapInfo {
            id: map,
            spec: m.spec.clone(),
            state: m.state,
            progress_percent: progress_of(m),
            group: m.group,
            restoring: m.restoring && m.state.is_active(),
            cascade: self.vols.get(&m.spec.target).and_then(|v| v.member_of),
            resume_to: m.resume_to,
            grains_total: m.split.len().saturating_sub(m.outside),
            grains_split: split_in(m),
            grains_changed: m.diff.as_ref().map(Bitmap::count_ones),
        })
    }

    /// All maps, ascending by id.
    pub fn maps(&self) -> Vec<MapInfo> {
        self.maps
            .keys()
            .filter_map(|id| self.map_info(*id))
            .collect()
    }

    /// True if `volume` exists and takes part in nothing: no map names it as
    /// source or target and no cascade has it as head or member (a cascade
    /// can outlive the map that made it, e.g. after a forced delete). Its
    /// reads and writes then need no plan: a write copies nothing, a read
    /// resolves to itself, and no map state can take it offline. It stops
    /// being plain only when a map naming it is created.
    pub fn is_plain(&self, volume: VolumeId) -> bool {
        self.vols.get(&volume).is_some_and(|v| {
            v.target_map.is_none()
                && v.source_maps.is_empty()
                && v.member_of.is_none()
                && v.heads.is_empty()
        })
    }

    /// All cascades, ascending by id.
    pub fn cascades(&self) -> Vec<CascadeInfo> {
        self.cascades
            .iter()
            .map(|(id, c)| CascadeInfo {
                id: *id,
                copy_type: c.ty,
                head: c.head,
                head_frozen: c.frozen,
                private: c.private,
                members: c.members.clone(),
            })
            .collect()
    }

    /// All consistency groups, ascending by id.
    pub fn groups(&self) -> Vec<GroupInfo> {
        self.groups
            .iter()
            .map(|(id, g)| GroupInfo {
                id: *id,
                autodelete: g.autodelete,
                members: g.members.clone(),
            })
            .collect()
    }

    /// The split bitmap of a map (bit g: the target holds its own grain g).
    pub fn split_bitmap(&self, map: MapId) -> Option<&Bitmap> {
        self.maps.get(&map).map(|m| &m.split)
    }

    /// The difference bitmap of an incremental map.
    pub fn diff_bitmap(&self, map: MapId) -> Option<&Bitmap> {
        self.maps.get(&map).and_then(|m| m.diff.as_ref())
    }

    /// Word indices of the map's bitmaps changed since the previous call.
    pub fn take_dirty(&mut self, map: MapId) -> Option<DirtyWords> {
        let m = self.maps.get_mut(&map)?;
        Some(DirtyWords {
            split: m.split.take_dirty(),
            diff: m.diff.as_mut().map(Bitmap::take_dirty).unwrap_or_default(),
        })
    }

    /// Replace a map's split bitmap with persisted raw words (e.g. after
    /// [`Engine::load`] when bitmaps are persisted separately). Then settles
    /// (a full bitmap of a member completes the map).
    pub fn set_split_words(&mut self, map: MapId, words: &[u64]) -> Result<(), ControlError> {
        let m = self
            .maps
            .get_mut(&map)
            .ok_or(ControlError::UnknownMap(map))?;
        m.split
            .replace_words(words)
            .map_err(|source| ControlError::Bitmap { map, source })?;
        m.bg_cursor = u64::MAX;
        self.settle(&[map]);
        Ok(())
    }

    /// Replace an incremental map's difference bitmap with persisted raw words.
    pub fn set_diff_words(&mut self, map: MapId, words: &[u64]) -> Result<(), ControlError> {
        let m = self
            .maps
            .get_mut(&map)
            .ok_or(ControlError::UnknownMap(map))?;
        let grains = m.split.len();
        let diff = m.diff.get_or_insert_with(|| Bitmap::new(grains));
        diff.replace_words(words)
            .map_err(|source| ControlError::Bitmap { map, source })
    }

    /// OR `grains` into an incremental map's difference bitmap (journal
    /// replay by the controller). Not incremental: nothing to record, `Ok`.
    pub fn mark_diff(
        &mut self,
        map: MapId,
        grains: std::ops::Range<u64>,
    ) -> Result<(), ControlError> {
        let m = self
            .maps
            .get_mut(&map)
            .ok_or(ControlError::UnknownMap(map))?;
        if let Some(d) = m.diff.as_mut() {
            d.set_range(grains.start, grains.end);
        }
        Ok(())
    }

    /// Heap bytes held for one map (bitmaps and bookkeeping), for capacity planning.
    pub fn map_heap_bytes(&self, map: MapId) -> Option<usize> {
        self.maps.get(&map).map(|m| {
            std::mem::size_of::<Map>()
                + m.split.heap_bytes()
                + m.diff.as_ref().map_or(0, Bitmap::heap_bytes)
                + m.spec
                    .extents
                    .as_ref()
                    .map_or(0, |e| e.extents().len() * 16)
        })
    }

    // ---- internal helpers -------------------------------------------------

    pub(crate) fn vol(&self, v: VolumeId) -> Result<&Vol, ControlError> {
        self.vols.get(&v).ok_or(ControlError::UnknownVolume(v))
    }

    pub(crate) fn map(&self, id: MapId) -> Result<&Map, ControlError> {
        self.maps.get(&id).ok_or(ControlError::UnknownMap(id))
    }

    /// The map whose target is `v`, if `v` is a cascade member.
    pub(crate) fn member_map(&self, v: VolumeId) -> Option<MapId> {
        let vol = self.vols.get(&v)?;
        vol.member_of?;
        vol.target_map
    }

    /// The grains member `v` of cascade `cid` answers for, when it is
    /// transparent elsewhere (an extent-limited member of a shared cascade,
    /// E6); `None` when it answers for every grain.
    pub(crate) fn member_cover(&self, cid: CascadeId, v: VolumeId) -> Option<&Bitmap> {
        if self.cascades.get(&cid)?.private {
            return None;
        }
        let id = self.vols.get(&v)?.target_map?;
        self.maps.get(&id)?.cover.as_ref()
    }

    /// Whether member `v` of cascade `cid` is transparent at grain `g` (E6).
    pub(crate) fn skips(&self, cid: CascadeId, v: VolumeId, g: u64) -> bool {
        self.member_cover(cid, v).is_some_and(|c| !c.get(g))
    }

    /// Whether `v` is an extent-limited member of a shared cascade (nothing
    /// in that chain may derive from it, E6).
    pub(crate) fn is_transparent_member(&self, v: VolumeId) -> bool {
        self.vols
            .get(&v)
            .and_then(|vol| vol.member_of)
            .is_some_and(|cid| self.member_cover(cid, v).is_some())
    }

    /// Every (cascade, chain index) where `v` has a non-frozen role.
    pub(crate) fn live_roles(&self, v: VolumeId) -> Vec<(CascadeId, usize)> {
        let mut out = Vec::new();
        let Some(vol) = self.vols.get(&v) else {
            return out;
        };
        if let Some(cid) = vol.member_of {
            if let Some(i) = self.cascades[&cid].members.iter().position(|x| *x == v) {
                out.push((cid, i + 1));
            }
        }
        for cid in &vol.heads {
            if !self.cascades[cid].frozen {
                out.push((*cid, 0));
            }
        }
        out
    }

    /// Whether `v` heads a non-frozen cascade with members.
    pub(crate) fn is_active_source(&self, v: VolumeId) -> bool {
        self.vols
            .get(&v)
            .is_some_and(|vol| vol.heads.iter().any(|c| !self.cascades[c].frozen))
    }

    /// Whether hosts may read and write `v` now (docs/SEMANTICS.md, "Map
    /// states and volume access"): `Err` says why not (target of a prepared,
    /// stopped or not yet cleaned map; source or target of a suspended map).
    pub fn access(&self, v: VolumeId) -> Result<(), AccessError> {
        self.check_access(v).map(|_| ())
    }

    /// Host accessibility of a volume from map states (docs/SEMANTICS.md,
    /// "Map states and volume access").
    pub(crate) fn check_access(&self, v: VolumeId) -> Result<&Vol, AccessError> {
        let vol = self.vols.get(&v).ok_or(AccessError::UnknownVolume(v))?;
        if let Some(id) = vol.target_map {
            let m = &self.maps[&id];
            match m.state {
                MapState::Preparing | MapState::Prepared | MapState::Stopped => {
                    return Err(AccessError::TargetOffline {
                        volume: v,
                        map: id,
                        state: m.state,
                    })
                }
                MapState::Stopping if !m.split.is_full() => {
                    return Err(AccessError::TargetOffline {
                        volume: v,
                        map: id,
                        state: m.state,
                    })
                }
                MapState::Suspended => return Err(AccessError::Suspended { volume: v, map: id }),
                _ => {}
            }
        }
        if let Some(id) = vol
            .source_maps
            .iter()
            .filter(|_| self.n_suspended > 0)
            .find(|id| self.maps[*id].state == MapState::Suspended)
        {
            return Err(AccessError::Suspended {
                volume: v,
                map: *id,
            });
        }
        Ok(vol)
    }

    /// Incremental maps whose source or target is `v`.
    pub(crate) fn incremental_maps_of(&self, v: VolumeId) -> Vec<MapId> {
        let Some(vol) = self.vols.get(&v) else {
            return Vec::new();
        };
        vol.source_maps
            .iter()
            .chain(vol.target_map.iter())
            .copied()
            .filter(|id| self.maps[id].spec.incremental)
            .collect()
    }

    /// `v`'s view changed other than by a host write (start of its map, loss
    /// of its data): every other incremental map of `v` must recopy everything.
    pub(crate) fn view_replaced(&mut self, v: VolumeId, except: MapId) {
        for id in self.incremental_maps_of(v) {
            if id != except {
                if let Some(d) = self.maps.get_mut(&id).and_then(|m| m.diff.as_mut()) {
                    d.fill(true);
                }
            }
        }
    }

    /// The one place map states change (keeps the derived indexes).
    pub(crate) fn push_state(&mut self, map: MapId, to: MapState) {
        let Some(m) = self.maps.get_mut(&map) else {
            return;
        };
        let from = m.state;
        if from == to {
            return;
        }
        m.state = to;
        let target = m.spec.target;
        self.events
            .push(EngineEvent::StateChanged { map, from, to });
        if from == MapState::Suspended {
            self.n_suspended -= 1;
        }
        if to == MapState::Suspended {
            self.n_suspended += 1;
        }
        let cut = self
            .vols
            .get(&target)
            .is_some_and(|v| v.member_of.is_none());
        if to == MapState::Copying && cut {
            self.waiting.insert(map);
        } else {
            self.waiting.remove(&map);
        }
        if to != MapState::Copying {
            self.parked.remove(&map);
        }
    }

    /// Recompute derived indexes (after load).
    pub(crate) fn rebuild_indexes(&mut self) {
        self.n_suspended = self
            .maps
            .values()
            .filter(|m| m.state == MapState::Suspended)
            .count();
        self.waiting = self
            .maps
            .iter()
            .filter(|(_, m)| {
                m.state == MapState::Copying && self.vols[&m.spec.target].member_of.is_none()
            })
            .map(|(id, _)| *id)
            .collect();
        self.parked = self
            .maps
            .iter()
            .filter(|(_, m)| {
                m.state == MapState::Copying
                    && m.split.is_full()
                    && self.is_transparent_member(m.spec.target)
            })
            .map(|(id, _)| *id)
            .collect();
    }
}

/// The grains an extent set covers, as a bitmap of `grains` bits (`None`
/// for no extent set: every grain).
pub(crate) fn cover_of(extents: Option<&geometry::ExtentSet>, grains: u64) -> Option<Bitmap> {
    let e = extents?;
    let mut b = Bitmap::new(grains);
    for x in e.extents() {
        b.set_range(x.first, x.last.saturating_add(1).min(grains));
    }
    b.clear_dirty();
    Some(b)
}

fn split_in(m: &Map) -> u64 {
    let covered = m.split.len().saturating_sub(m.outside);
    if m.started_once {
        m.split.count_ones().saturating_sub(m.outside)
    } else {
        m.split.count_ones().min(covered)
    }
}

fn progress_of(m: &Map) -> u8 {
    let covered = m.split.len().saturating_sub(m.outside);
    if covered == 0 {
        return 100;
    }
    ((u128::from(split_in(m)) * 100) / u128::from(covered)) as u8
}
