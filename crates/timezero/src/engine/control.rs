//! Control requests: create, prepare, start (single, group, restore), stop,
//! delete, suspend/resume, rates, consistency groups. Every request validates
//! first and changes nothing when it returns an error.
//!
//! Transitions follow the table in docs/SEMANTICS.md, "Transitions", exactly.
//! Where the semantics leave a choice open, this engine decides (also listed
//! in docs/ENGINE.md, "Decisions the semantics leave open"):
//! - stop of a suspended map records that it resumes into stopping;
//! - a non-force stop of an incomplete map whose target heads a cascade of
//!   another type is rejected ([`ControlError::OtherTypeDependants`]) rather
//!   than first pushing the target's unsplit grains into those cascades;
//!   `--force` stops the dependants;
//! - delete --force is accepted from copying (force stop, then delete) and stopped.

use std::collections::BTreeSet;

use crate::bitmap::Bitmap;
use crate::error::{ControlError, Operation};
use crate::rate::RATE_MAX;
use crate::types::{MapId, MapSpec, MapState, StartOptions, VolumeId};

use super::cycles::Shape;
use super::{Cascade, Engine, Map, MAX_CONNECTED_MAPS, MAX_MAPS_PER_SOURCE};

impl Engine {
    /// Define a map (state idle_or_copied). Validates sizes, extents, rates,
    /// that the target is the target of no other map, and the limits of 256
    /// maps per source and per connected set. Maps that would close a cycle
    /// are allowed; starting one needs `restore` (see [`Engine::start`]).
    pub fn create_map(&mut self, spec: MapSpec) -> Result<MapId, ControlError> {
        let s = self.vol(spec.source)?;
        let t = self.vol(spec.target)?;
        if spec.source == spec.target {
            return Err(ControlError::SameVolume(spec.source));
        }
        if s.grains != t.grains {
            return Err(ControlError::SizeMismatch {
                source_volume: spec.source,
                source_grains: s.grains,
                target: spec.target,
                target_grains: t.grains,
            });
        }
        if let Some(map) = t.target_map {
            return Err(ControlError::TargetInUse {
                target: spec.target,
                map,
            });
        }
        if s.source_maps.len() >= MAX_MAPS_PER_SOURCE {
            return Err(ControlError::TooManyMapsPerSource {
                source_volume: spec.source,
                limit: MAX_MAPS_PER_SOURCE,
            });
        }
        let grains = s.grains;
        if let Some(e) = &spec.extents {
            if e.is_empty() || e.extents().last().is_some_and(|x| x.last >= grains) {
                return Err(ControlError::BadExtents { grains });
            }
        }
        if spec.incremental && spec.copy_type != crate::types::CopyType::Full {
            return Err(ControlError::IncrementalNeedsFull);
        }
        for r in [spec.copy_rate, spec.clean_rate] {
            if r > RATE_MAX {
                return Err(ControlError::RateOutOfRange(r));
            }
        }
        if self.connected_maps(&[spec.source, spec.target]) + 1 > MAX_CONNECTED_MAPS {
            return Err(ControlError::TooManyConnectedMaps {
                limit: MAX_CONNECTED_MAPS,
            });
        }
        let id = MapId(self.next_map);
        self.next_map += 1;
        let outside = grains - spec.extents.as_ref().map_or(grains, |e| e.track_count());
        let (source, target) = (spec.source, spec.target);
        let cover = super::cover_of(spec.extents.as_ref(), grains);
        self.maps.insert(
            id,
            Map {
                diff: spec.incremental.then(|| Bitmap::new(grains)),
                cover,
                withdrawn: false,
                spec,
                state: MapState::IdleOrCopied,
                resume_to: None,
                group: None,
                split: Bitmap::new(grains),
                started_once: false,
                restoring: false,
                outside,
                pending: 0,
                bg_cursor: u64::MAX,
            },
        );
        self.vols.get_mut(&target).expect("checked").target_map = Some(id);
        self.vols
            .get_mut(&source)
            .expect("checked")
            .source_maps
            .push(id);
        Ok(id)
    }

    /// Number of maps connected (through shared volumes) to any of `start`.
    fn connected_maps(&self, start: &[VolumeId]) -> usize {
        let mut seen_v: BTreeSet<VolumeId> = start.iter().copied().collect();
        let mut seen_m: BTreeSet<MapId> = BTreeSet::new();
        let mut stack: Vec<VolumeId> = start.to_vec();
        while let Some(v) = stack.pop() {
            let Some(vol) = self.vols.get(&v) else {
                continue;
            };
            for id in vol.source_maps.iter().chain(vol.target_map.iter()) {
                if seen_m.insert(*id) {
                    let m = &self.maps[id];
                    for x in [m.spec.source, m.spec.target] {
                        if seen_v.insert(x) {
                            stack.push(x);
                        }
                    }
                }
            }
        }
        seen_m.len()
    }

    fn not_in_group(&self, id: MapId) -> Result<&Map, ControlError> {
        let m = self.map(id)?;
        if let Some(group) = m.group {
            return Err(ControlError::GroupMember { map: id, group });
        }
        Ok(m)
    }

    pub(super) fn invalid(&self, map: MapId, op: Operation) -> ControlError {
        ControlError::InvalidState {
            map,
            op,
            state: self.maps[&map].state,
        }
    }

    pub(super) fn check_prepare(&self, id: MapId) -> Result<(), ControlError> {
        match self.map(id)?.state {
            MapState::IdleOrCopied | MapState::Stopped => Ok(()),
            _ => Err(self.invalid(id, Operation::Prepare)),
        }
    }

    /// prestartfcmap: idle_or_copied or stopped -> preparing (target offline).
    /// There is no cache: call [`Engine::flush_done`] right away. Refused
    /// while the target is the source of active maps (taking it offline
    /// would cut them off); a restore prepares with
    /// [`Engine::prepare_for_restore`].
    pub fn prepare(&mut self, id: MapId) -> Result<(), ControlError> {
        let t = self.map(id)?.spec.target;
        if self.is_active_source(t) {
            self.check_prepare(id)?;
            return Err(ControlError::TargetIsActiveSource { map: id, target: t });
        }
        self.prepare_for_restore(id)
    }

    /// Like [`Engine::prepare`], for a map that will be started with
    /// `restore` (its target may be the source of active maps: the start
    /// freezes their cascades).
    pub fn prepare_for_restore(&mut self, id: MapId) -> Result<(), ControlError> {
        self.not_in_group(id)?;
        self.check_prepare(id)?;
        self.push_state(id, MapState::Preparing);
        Ok(())
    }

    /// Flush done: preparing -> prepared (also for group members).
    pub fn flush_done(&mut self, id: MapId) -> Result<(), ControlError> {
        if self.map(id)?.state != MapState::Preparing {
            return Err(self.invalid(id, Operation::FlushDone));
        }
        self.push_state(id, MapState::Prepared);
        Ok(())
    }

    /// Flush failed: preparing -> stopped.
    pub fn flush_failed(&mut self, id: MapId) -> Result<(), ControlError> {
        if self.map(id)?.state != MapState::Preparing {
            return Err(self.invalid(id, Operation::FlushFailed));
        }
        self.push_state(id, MapState::Stopped);
        Ok(())
    }

    /// startfcmap: prepared -> copying at this instant (with
    /// `opts.prepare`, also from idle_or_copied/stopped). The target is
    /// inserted immediately downstream of the source in the source's cascade
    /// of the map's type, or a new cascade starts (Patent B). With
    /// `opts.restore` the target may be the source of active maps: their
    /// cascades keep the target's current data (frozen head, lazy restore).
    pub fn start(&mut self, id: MapId, opts: StartOptions) -> Result<(), ControlError> {
        self.not_in_group(id)?;
        self.start_batch(&[id], opts)
    }

    /// Checks, without changing anything, that [`Engine::start`] of `id`
    /// with `opts` would be accepted. A caller that prepares a map before
    /// starting it (`start -prep`) asks with `opts.prepare = true` first, so
    /// a start that would be refused never leaves the map prepared (its
    /// target offline).
    pub fn check_start(&self, id: MapId, opts: StartOptions) -> Result<(), ControlError> {
        self.not_in_group(id)?;
        self.check_start_batch(&[id], opts).map(|_| ())
    }

    /// Steps 1-3 of a start (states, order, validation); returns the order.
    pub(super) fn check_start_batch(
        &self,
        ids: &[MapId],
        opts: StartOptions,
    ) -> Result<Vec<MapId>, ControlError> {
        // 1. states
        for &id in ids {
            let st = self.map(id)?.state;
            let ok = match st {
                MapState::Prepared => true,
                MapState::IdleOrCopied | MapState::Stopped => opts.prepare,
                _ => false,
            };
            if !ok {
                return Err(self.invalid(id, Operation::Start));
            }
        }
        // 2. order: a map whose source is another member's target goes after it.
        let order = self.start_order(ids)?;
        // 3. validate in order.
        let targets: BTreeSet<VolumeId> = ids.iter().map(|id| self.maps[id].spec.target).collect();
        for &id in &order {
            let m = &self.maps[&id];
            let (s, t) = (m.spec.source, m.spec.target);
            if !targets.contains(&s) && self.check_access(s).is_err() {
                return Err(ControlError::SourceNotAccessible {
                    map: id,
                    source_volume: s,
                });
            }
            if !opts.restore && self.is_active_source(t) {
                return Err(ControlError::TargetIsActiveSource { map: id, target: t });
            }
        }
        // 4. E4: the structure after the start (and after the removals
        // already scheduled) has no loop.
        let mut shape = Shape::after_pending(self);
        for &id in &order {
            let m = &self.maps[&id];
            shape.start(m.spec.source, m.spec.target, m.spec.copy_type);
            if let Some(volumes) = shape.cycle() {
                return Err(ControlError::RestoreCycle { map: id, volumes });
            }
        }
        Ok(order)
    }

    pub(super) fn start_batch(
        &mut self,
        ids: &[MapId],
        opts: StartOptions,
    ) -> Result<(), ControlError> {
        let order = self.check_start_batch(ids, opts)?;
        // 5. apply at one instant.
        for &id in &order {
            if self.maps[&id].state != MapState::Prepared {
                self.push_state(id, MapState::Preparing);
                self.push_state(id, MapState::Prepared);
            }
        }
        for &id in &order {
            self.start_one(id, opts.restore);
        }
        self.settle(&order);
        Ok(())
    }

    /// The order maps of one start are inserted in: a map whose source is
    /// another member's target after that member; otherwise by increasing
    /// background copy rate (nocopy maps count as 0), then id. Each target is
    /// inserted right after its source, so of several maps from one source
    /// the fastest-copying ends next to the source: it completes first and
    /// leaves the chain without waiting for the slower ones (docs/ENGINE.md,
    /// "Group starts"). All start at one instant, so the order changes no
    /// image.
    fn start_order(&self, ids: &[MapId]) -> Result<Vec<MapId>, ControlError> {
        let mut left: Vec<MapId> = ids.to_vec();
        left.sort();
        left.dedup();
        left.sort_by_key(|id| {
            let spec = &self.maps[id].spec;
            match spec.copy_type {
                crate::types::CopyType::Full => spec.copy_rate,
                crate::types::CopyType::Nocopy => 0,
            }
        });
        let mut order = Vec::with_capacity(left.len());
        while !left.is_empty() {
            let pos = left.iter().position(|a| {
                let s = self.maps[a].spec.source;
                !left.iter().any(|b| b != a && self.maps[b].spec.target == s)
            });
            let Some(pos) = pos else {
                return Err(ControlError::StartCycle);
            };
            order.push(left.remove(pos));
        }
        Ok(order)
    }

    fn start_one(&mut self, id: MapId, restore: bool) {
        let m = self.maps.get_mut(&id).expect("validated");
        let (s, t, ty) = (m.spec.source, m.spec.target, m.spec.copy_type);
        if m.spec.incremental && m.started_once {
            // Grains held since the last start and unchanged on both sides.
            if let Some(diff) = &m.diff {
                m.split.and_not_assign(diff);
            }
        } else {
            m.split.fill(false);
        }
        if let Some(e) = &m.spec.extents {
            let mut next = 0;
            for x in e.extents() {
                m.split.set_range(next, x.first);
                next = x.last + 1;
            }
            m.split.set_range(next, m.split.len());
        }
        if let Some(d) = m.diff.as_mut() {
            d.fill(false);
        }
        m.started_once = true;
        m.restoring = restore;
        m.resume_to = None;
        m.bg_cursor = u64::MAX;
        // The target's view is replaced: other incremental maps of it recopy.
        self.view_replaced(t, id);
        // Lazy restore: cascades the target heads keep its physical data.
        let heads = self.vols[&t].heads.clone();
        for cid in heads {
            if let Some(c) = self.cascades.get_mut(&cid) {
                c.frozen = true;
            }
        }
        let ext = self.maps[&id].spec.extents.is_some();
        let place = super::insert::place(&self.cascades, s, ty, ext, |v| {
            self.is_transparent_member(v)
        });
        let cid = match place {
            super::insert::Place::At(cid, i) => {
                let c = self.cascades.get_mut(&cid).expect("placed");
                c.members.insert(i, t);
                cid
            }
            super::insert::Place::New { private } => self.new_cascade(Cascade {
                ty,
                head: s,
                frozen: false,
                private,
                members: vec![t],
            }),
        };
        self.vols.get_mut(&t).expect("target").member_of = Some(cid);
        self.push_state(id, MapState::Copying);
    }

    pub(super) fn check_stop(&self, id: MapId, force: bool) -> Result<(), ControlError> {
        let m = self.map(id)?;
        if force {
            // A forced stop takes the target and every dependant out of
            // their chains at once: refused if that closes a restore loop
            // (stop one of the restores first), since a loop would leave
            // writes unresolvable and the saved state unloadable.
            if matches!(
                m.state,
                MapState::Copying | MapState::Stopping | MapState::Suspended
            ) {
                let mut shape = Shape::after_pending(self);
                shape.remove(m.spec.target);
                for d in self.dependent_maps(id) {
                    if let Some(dm) = self.maps.get(&d) {
                        shape.remove(dm.spec.target);
                    }
                }
                if let Some(volumes) = shape.cycle() {
                    return Err(ControlError::RestoreCycle { map: id, volumes });
                }
            }
            return Ok(());
        }
        let active_copy = match m.state {
            MapState::Copying => true,
            MapState::Suspended => m.resume_to == Some(MapState::Copying),
            _ => false,
        };
        if active_copy && !m.split.is_full() {
            let t = m.spec.target;
            if self.vols[&t].member_of.is_some() {
                for cid in &self.vols[&t].heads {
                    let c = &self.cascades[cid];
                    if !c.frozen {
                        return Err(ControlError::OtherTypeDependants {
                            map: id,
                            target: t,
                            other: c.ty,
                        });
                    }
                }
            }
            // The stop ends with the target offline (stopped): no map may
            // still need to copy from it, except its own restore (seed
            // 53228: a full restore whose source was stopped under it stayed
            // copying at 0 % for ever).
            if let Some((&dep, _)) = self.maps.iter().find(|(did, d)| {
                **did != id
                    && d.spec.source == t
                    // The direct restore of this map (t back onto its
                    // source) resolves through the frozen head and finishes.
                    && d.spec.target != m.spec.source
                    && !d.split.is_full()
                    && match d.state {
                        MapState::Copying | MapState::Stopping => true,
                        MapState::Suspended => d.resume_to.is_some(),
                        _ => false,
                    }
            }) {
                return Err(ControlError::SourceOfCopyingMap {
                    map: id,
                    target: t,
                    dependant: dep,
                });
            }
        }
        // E4: the target leaves its chain when cleaning ends.
        if matches!(m.state, MapState::Copying | MapState::Suspended) {
            let mut shape = Shape::after_pending(self);
            shape.remove(m.spec.target);
            if let Some(volumes) = shape.cycle() {
                return Err(ControlError::RestoreCycle { map: id, volumes });
            }
        }
        Ok(())
    }

    /// stopfcmap [-force] (docs/SEMANTICS.md, "Transitions"). Non-force from
    /// copying: cleaning starts (stopping), or the map goes straight to
    /// stopped/idle_or_copied when nothing needs cleaning. Force: the map and its dependants
    /// ([`Engine::dependent_maps`]) go to stopped. Stop on idle_or_copied,
    /// stopping (non-force) or stopped changes nothing.
    pub fn stop(&mut self, id: MapId, force: bool) -> Result<(), ControlError> {
        self.not_in_group(id)?;
        self.check_stop(id, force)?;
        self.stop_one(id, force);
        Ok(())
    }

    pub(super) fn stop_one(&mut self, id: MapId, force: bool) {
        let Some(m) = self.maps.get(&id) else {
            return;
        };
        match (m.state, force) {
            (MapState::IdleOrCopied | MapState::Stopped, _) | (MapState::Stopping, false) => {}
            (MapState::Preparing | MapState::Prepared, _) => self.push_state(id, MapState::Stopped),
            (MapState::Suspended, false) => {
                // A cut map (100 %, out of its chain) has nothing to clean.
                let to = if self.vols[&m.spec.target].member_of.is_some() {
                    MapState::Stopping
                } else {
                    MapState::IdleOrCopied
                };
                if let Some(m) = self.maps.get_mut(&id) {
                    m.resume_to = Some(to);
                }
            }
            (MapState::Copying, false) => {
                if self.vols[&m.spec.target].member_of.is_none() {
                    self.push_state(id, MapState::IdleOrCopied);
                    self.maybe_autodelete(id);
                } else {
                    self.push_state(id, MapState::Stopping);
                    self.try_finish_stopping(id);
                }
            }
            (MapState::Copying | MapState::Stopping | MapState::Suspended, true) => {
                self.force_stop(id)
            }
        }
    }

    /// rmfcmap [-force]: idle_or_copied -> deleted; stopped needs force (the
    /// target comes online with whatever it holds); copying needs force
    /// (force stop, then delete); other states are rejected.
    pub fn delete(&mut self, id: MapId, force: bool) -> Result<(), ControlError> {
        let st = self.map(id)?.state;
        let op = if force {
            Operation::DeleteForce
        } else {
            Operation::Delete
        };
        match (st, force) {
            (MapState::IdleOrCopied, _) | (MapState::Stopped, true) => {}
            (MapState::Copying, true) => {
                self.check_stop(id, true)?;
                self.force_stop(id)
            }
            _ => return Err(self.invalid(id, op)),
        }
        self.delete_internal(id, false);
        Ok(())
    }

    /// Ends a map for good on behalf of its owner (a backup session that
    /// completes or is terminated). Members downstream that read through its
    /// target first receive the grains they read (a stop with cleaning), so
    /// no other map's image changes: with extent-limited maps in one shared
    /// cascade (E6) an older session reads through a newer one's target.
    /// Returns `true` when the map is gone at once; `false` when it stays,
    /// stopping and marked withdrawn, until its cleaning ends and it deletes
    /// itself. A map that cannot clean (suspended, or a stop with cleaning
    /// refused) is force-stopped and deleted, as `delete --force` does.
    pub fn withdraw(&mut self, id: MapId) -> Result<bool, ControlError> {
        let m = self.map(id)?;
        if let Some(g) = m.group {
            self.leave_group(id, g);
        }
        let m = &self.maps[&id];
        let member = self.vols[&m.spec.target].member_of.is_some();
        let cleans = member
            && matches!(m.state, MapState::Copying | MapState::Stopping)
            && self.check_stop(id, false).is_ok();
        if cleans {
            self.maps.get_mut(&id).expect("checked").withdrawn = true;
            if self.maps[&id].state == MapState::Copying {
                self.stop_one(id, false);
            }
            self.try_finish_stopping(id);
            return Ok(!self.maps.contains_key(&id));
        }
        match self.maps[&id].state {
            MapState::IdleOrCopied | MapState::Stopped => {}
            _ => {
                self.check_stop(id, true)?;
                self.force_stop(id);
            }
        }
        if self.maps.contains_key(&id) {
            self.delete_internal(id, false);
        }
        Ok(true)
    }

    /// Whether `id` was withdrawn and is still cleaning before it deletes
    /// itself ([`Engine::withdraw`]).
    pub fn is_withdrawn(&self, id: MapId) -> bool {
        self.maps.get(&id).is_some_and(|m| m.withdrawn)
    }

    /// Bitmap offline: copying/stopping -> suspended (source and target offline).
    pub fn suspend(&mut self, id: MapId) -> Result<(), ControlError> {
        let st = self.map(id)?.state;
        if !matches!(st, MapState::Copying | MapState::Stopping) {
            return Err(self.invalid(id, Operation::Suspend));
        }
        self.maps.get_mut(&id).expect("checked").resume_to = Some(st);
        self.push_state(id, MapState::Suspended);
        Ok(())
    }

    /// Bitmap online: suspended -> the state it came from (or stopping if a
    /// stop was requested meanwhile).
    pub fn resume(&mut self, id: MapId) -> Result<(), ControlError> {
        let m = self.map(id)?;
        if m.state != MapState::Suspended {
            return Err(self.invalid(id, Operation::Resume));
        }
        let to = m.resume_to.unwrap_or(MapState::Copying);
        self.maps.get_mut(&id).expect("checked").resume_to = None;
        self.push_state(id, to);
        if to == MapState::Stopping {
            self.try_finish_stopping(id);
        }
        if to == MapState::IdleOrCopied {
            self.maybe_autodelete(id);
        }
        self.settle(&[id]);
        Ok(())
    }

    /// Change the background copy rate (any state).
    pub fn set_copy_rate(&mut self, id: MapId, rate: u8) -> Result<(), ControlError> {
        if rate > RATE_MAX {
            return Err(ControlError::RateOutOfRange(rate));
        }
        self.maps
            .get_mut(&id)
            .ok_or(ControlError::UnknownMap(id))?
            .spec
            .copy_rate = rate;
        Ok(())
    }

    /// Change the cleaning rate (any state).
    pub fn set_clean_rate(&mut self, id: MapId, rate: u8) -> Result<(), ControlError> {
        if rate > RATE_MAX {
            return Err(ControlError::RateOutOfRange(rate));
        }
        self.maps
            .get_mut(&id)
            .ok_or(ControlError::UnknownMap(id))?
            .spec
            .clean_rate = rate;
        Ok(())
    }

    /// Change autodelete; turning it on for a completed idle map deletes it at once.
    pub fn set_autodelete(&mut self, id: MapId, on: bool) -> Result<(), ControlError> {
        self.maps
            .get_mut(&id)
            .ok_or(ControlError::UnknownMap(id))?
            .spec
            .autodelete = on;
        if on && self.maps[&id].started_once {
            self.maybe_autodelete(id);
        }
        Ok(())
    }
}
