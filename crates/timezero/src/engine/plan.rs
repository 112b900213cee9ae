//! Host I/O and background planning: read resolution, write plans, background
//! copy and cleaning plans, and their commits.
//!
//! Two rules generate every copy (docs/ENGINE.md, "The two copy rules"),
//! applied per grain:
//! - **Rule B (view change).** Before `view(V, g)` changes, the downstream
//!   neighbour `D` of `V` in every cascade where `V` has a non-frozen role
//!   receives `view(V, g)` unless `D` is split at `g`.
//! - **Rule A (physical change).** Before `phys(X, g)` changes (host write,
//!   or any copy into `X`), the first member `F` of every *frozen* cascade
//!   headed by `X` receives `phys(X, g)` unless `F` is split at `g`.
//!
//! A copy into an unsplit grain never changes the receiver's view, so the
//! rules only recurse through rule A; every copy sets a split bit that was
//! clear, so planning terminates. Planning is pure: planned-but-uncommitted
//! bits are kept in a per-grain overlay, so a plan lists copies in execution
//! order and each `from` is the physical holder at the moment the copy runs.

use std::ops::Range;

use crate::error::AccessError;
use crate::types::{CascadeId, CopyType, GrainCopy, MapId, MapState, VolumeId, WritePlan};

use super::{Engine, Map};

/// Planner state for one grain.
struct GrainPlanner<'e> {
    eng: &'e Engine,
    grain: u64,
    /// The volume the request is for (named in errors).
    origin: VolumeId,
    planned: Vec<MapId>,
    out: Vec<GrainCopy>,
}

impl<'e> GrainPlanner<'e> {
    fn new(eng: &'e Engine, grain: u64, origin: VolumeId) -> Self {
        GrainPlanner {
            eng,
            grain,
            origin,
            planned: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Split state of member volume `v` (with the overlay); errors if its
    /// bitmap is offline. (Always `Some`: grains outside a map's extents are
    /// preset split, so its target holds them.)
    fn node(&self, v: VolumeId) -> Result<Option<(MapId, bool)>, AccessError> {
        let id = self.eng.vols[&v]
            .target_map
            .ok_or(AccessError::UnknownVolume(v))?;
        Ok(Some((id, self.map_split(id, &self.eng.maps[&id])?)))
    }

    /// Whether map `m` (id `id`) has split the grain, planned copies
    /// included; errors if its bitmap is offline (suspended).
    fn map_split(&self, id: MapId, m: &Map) -> Result<bool, AccessError> {
        if m.state == MapState::Suspended {
            return Err(AccessError::Suspended {
                volume: self.origin,
                map: id,
            });
        }
        Ok(m.split.get(self.grain) || self.planned.contains(&id))
    }

    /// Whether member `v` holds its own grain.
    fn split(&self, v: VolumeId) -> Result<bool, AccessError> {
        Ok(self.node(v)?.is_none_or(|(_, s)| s))
    }

    /// The nearest member upstream of chain index `i` of cascade `c` that
    /// holds its own grain, skipping members transparent at the grain (E6):
    /// the walk a read of a deep cascade's oldest target makes, so it looks
    /// each member's map up once (not through `skips` and `node`, which
    /// repeat the cascade, volume and map lookups per member).
    fn first_holding_upstream(
        &self,
        c: &super::Cascade,
        i: usize,
    ) -> Result<Option<VolumeId>, AccessError> {
        let g = self.grain;
        for &m in c.members[..i].iter().rev() {
            let id = self
                .eng
                .vols
                .get(&m)
                .and_then(|vol| vol.target_map)
                .ok_or(AccessError::UnknownVolume(m))?;
            let map = &self.eng.maps[&id];
            // `skips`: only a shared cascade's extent-limited members are transparent.
            if !c.private && map.cover.as_ref().is_some_and(|cv| !cv.get(g)) {
                continue;
            }
            if self.map_split(id, map)? {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }

    /// Holder of the view at chain index `i` of cascade `cid`.
    fn holder_at(&self, cid: CascadeId, i: usize) -> Result<VolumeId, AccessError> {
        let c = &self.eng.cascades[&cid];
        if let Some(v) = self.first_holding_upstream(c, i)? {
            return Ok(v);
        }
        if c.frozen {
            Ok(c.head)
        } else {
            self.holder(c.head)
        }
    }

    /// Physical holder of `view(v, grain)`.
    fn holder(&self, v: VolumeId) -> Result<VolumeId, AccessError> {
        let mut v = v;
        // E4: the walk visits each cascade at most once.
        for _ in 0..=self.eng.cascades.len() {
            let vol = self.eng.vols.get(&v).ok_or(AccessError::UnknownVolume(v))?;
            let Some(cid) = vol.member_of else {
                return Ok(v);
            };
            if self.split(v)? {
                return Ok(v);
            }
            let c = &self.eng.cascades[&cid];
            let i = c
                .members
                .iter()
                .position(|x| *x == v)
                .ok_or(AccessError::UnknownVolume(v))?;
            if let Some(m) = self.first_holding_upstream(c, i)? {
                return Ok(m);
            }
            if c.frozen {
                return Ok(c.head);
            }
            v = c.head;
        }
        // E4 (cycles.rs) rules a loop out; answer it as one, never with a
        // volume that may not hold the data.
        Err(AccessError::Unresolvable {
            volume: self.origin,
            grain: self.grain,
        })
    }

    /// Holder of the view just upstream of member `v` in its cascade.
    fn holder_upstream(&self, v: VolumeId) -> Result<VolumeId, AccessError> {
        let cid = self.eng.vols[&v]
            .member_of
            .ok_or(AccessError::UnknownVolume(v))?;
        let i = self.eng.cascades[&cid]
            .members
            .iter()
            .position(|x| *x == v)
            .ok_or(AccessError::UnknownVolume(v))?;
        self.holder_at(cid, i)
    }

    /// Member at members index `from`, with its map.
    fn next_covering(&self, cid: CascadeId, from: usize) -> Option<(VolumeId, MapId)> {
        self.eng.next_covering(cid, from, self.grain)
    }

    fn push(&mut self, map: MapId, from: VolumeId, to: VolumeId) {
        self.planned.push(map);
        self.out.push(GrainCopy {
            map,
            grain: self.grain,
            from,
            to,
        });
    }

    /// Rule A: before `phys(x)` changes.
    fn phys_change(&mut self, x: VolumeId) -> Result<(), AccessError> {
        self.phys_change_at(x, 0)
    }

    fn phys_change_at(&mut self, x: VolumeId, depth: usize) -> Result<(), AccessError> {
        // Each level sets a split bit that was clear; deeper means a loop of
        // frozen heads, which starts and stops refuse (E4, cycles.rs).
        if depth > self.eng.cascades.len() {
            return Err(AccessError::Unresolvable {
                volume: self.origin,
                grain: self.grain,
            });
        }
        let heads = self.eng.vols[&x].heads.clone();
        for cid in heads {
            if !self.eng.cascades[&cid].frozen {
                continue;
            }
            let Some((f, id)) = self.next_covering(cid, 0) else {
                continue;
            };
            if !self.split(f)? {
                // `f == x`: the restore node of `x` reads `x`'s own physical
                // grain; the copy is a no-op that only marks it held.
                if f != x {
                    self.phys_change_at(f, depth + 1)?;
                }
                if !self.split(f)? {
                    self.push(id, x, f);
                }
            }
        }
        Ok(())
    }

    /// Rule B: before `view(v)` changes.
    fn view_change(&mut self, v: VolumeId) -> Result<(), AccessError> {
        for (cid, i) in self.eng.live_roles(v) {
            // A transparent member's view at this grain is its own data,
            // which no one downstream reads (E6).
            if i > 0 && self.eng.skips(cid, v, self.grain) {
                continue;
            }
            let Some((d, id)) = self.next_covering(cid, i) else {
                continue;
            };
            if !self.split(d)? {
                self.phys_change(d)?;
                if !self.split(d)? {
                    let from = self.holder(v)?;
                    self.push(id, from, d);
                }
            }
        }
        Ok(())
    }
}

impl Engine {
    fn check_grain(&self, volume: VolumeId, grain: u64) -> Result<(), AccessError> {
        let grains = self
            .vols
            .get(&volume)
            .ok_or(AccessError::UnknownVolume(volume))?
            .grains;
        if grain >= grains {
            return Err(AccessError::OutOfRange {
                volume,
                grain,
                grains,
            });
        }
        Ok(())
    }

    /// Which volume's physical store holds what a host reading `grain` of
    /// `volume` must see: a volume that is not an active target reads itself;
    /// a target's unsplit grain reads through to its upstream neighbour
    /// (docs/SEMANTICS.md, section 2). Fails if the volume is not accessible
    /// (docs/SEMANTICS.md, "Map states and volume access", I12) or the data
    /// needs an offline bitmap.
    pub fn resolve_read(&self, volume: VolumeId, grain: u64) -> Result<VolumeId, AccessError> {
        self.check_grain(volume, grain)?;
        self.check_access(volume)?;
        GrainPlanner::new(self, grain, volume).holder(volume)
    }

    /// Whether every grain of `grains` of `volume` reads `volume`'s own
    /// store, which is what [`Engine::resolve_read`] answers for each of them
    /// when this is `true`. Decided without walking any cascade: a member
    /// answers `false` as soon as one grain is unsplit (call `resolve_read`
    /// then). Fails as `resolve_read` fails.
    pub fn reads_own(&self, volume: VolumeId, grains: Range<u64>) -> Result<bool, AccessError> {
        if !grains.is_empty() {
            self.check_grain(volume, grains.end - 1)?;
        }
        let vol = self.check_access(volume)?;
        if vol.member_of.is_none() {
            return Ok(true);
        }
        let Some(id) = vol.target_map else {
            return Ok(false);
        };
        let split = &self.maps[&id].split;
        Ok(grains.into_iter().all(|g| split.get(g)))
    }

    /// Like [`Engine::resolve_read`] but ignoring the accessibility of
    /// `volume` itself (the view an offline target still presents to its
    /// dependants). For tests, fills and diagnostics.
    pub fn view_holder(&self, volume: VolumeId, grain: u64) -> Result<VolumeId, AccessError> {
        self.check_grain(volume, grain)?;
        GrainPlanner::new(self, grain, volume).holder(volume)
    }

    /// Plan a host write of `grains` on `volume`. `whole` says every grain of
    /// the range is overwritten entirely (no fill needed). The copies must be
    /// executed in order and be durable before the host data; then call
    /// [`Engine::commit_copies`], write the host data, and call
    /// [`Engine::record_write`]. Every plan must be committed or abandoned.
    pub fn plan_write(
        &mut self,
        volume: VolumeId,
        grains: Range<u64>,
        whole: bool,
    ) -> Result<WritePlan, AccessError> {
        if grains.is_empty() {
            self.check_access(volume)?;
            return Ok(WritePlan::default());
        }
        self.check_grain(volume, grains.end - 1)?;
        self.check_grain(volume, grains.start)?;
        self.check_access(volume)?;
        let own = self.member_map(volume);
        let mut copies = Vec::new();
        for g in grains {
            let mut p = GrainPlanner::new(self, g, volume);
            p.view_change(volume)?;
            p.phys_change(volume)?;
            if let Some(own) = own {
                if !whole && !p.split(volume)? {
                    let from = p.holder_upstream(volume)?;
                    p.push(own, from, volume);
                }
            }
            copies.extend(p.out);
        }
        self.add_pending(&copies);
        Ok(WritePlan { copies })
    }

    fn add_pending(&mut self, copies: &[GrainCopy]) {
        for c in copies {
            if let Some(m) = self.maps.get_mut(&c.map) {
                m.pending = m.pending.saturating_add(1);
            }
        }
    }

    /// Plan up to `max_grains` grains of background work for `map`:
    /// background copy of a copying full map (highest unsplit grain first,
    /// copy rate > 0), or cleaning of a stopping map (grains split on its
    /// target and not on the downstream neighbour). Each grain may need more
    /// than one copy (rule A); all copies of a grain are contiguous. Empty when
    /// there is nothing to do (a stopping map with nothing left to clean and
    /// no copies in flight finishes here and queues its events).
    pub fn plan_background(&mut self, map: MapId, max_grains: usize) -> Vec<GrainCopy> {
        let Some(m) = self.maps.get(&map) else {
            return Vec::new();
        };
        let target = m.spec.target;
        let member = self.vols[&target].member_of.is_some();
        let copies = match m.state {
            MapState::Copying
                if member && m.spec.copy_type == CopyType::Full && m.spec.copy_rate > 0 =>
            {
                self.plan_copy(map, target, max_grains)
            }
            MapState::Stopping if member => {
                let c = self.plan_clean(map, target, max_grains);
                if c.is_empty() {
                    self.try_finish_stopping(map);
                }
                c
            }
            MapState::Stopping => {
                self.try_finish_stopping(map);
                Vec::new()
            }
            _ => Vec::new(),
        };
        self.add_pending(&copies);
        copies
    }

    fn plan_copy(&mut self, map: MapId, target: VolumeId, max_grains: usize) -> Vec<GrainCopy> {
        let m = &self.maps[&map];
        let mut at = m.bg_cursor;
        let mut out = Vec::new();
        let mut first_found = None;
        let mut n = 0;
        while n < max_grains {
            let Some(g) = m.split.prev_zero(at) else {
                break;
            };
            first_found.get_or_insert(g);
            let mut p = GrainPlanner::new(self, g, target);
            let ok = p.phys_change(target).and_then(|()| {
                if !p.split(target)? {
                    let from = p.holder_upstream(target)?;
                    p.push(map, from, target);
                }
                Ok(())
            });
            if ok.is_err() {
                break;
            }
            out.extend(p.out);
            n += 1;
            if g == 0 {
                break;
            }
            at = g - 1;
        }
        let cursor = first_found.unwrap_or(0);
        if let Some(m) = self.maps.get_mut(&map) {
            m.bg_cursor = cursor;
        }
        out
    }

    fn plan_clean(&self, map: MapId, target: VolumeId, max_grains: usize) -> Vec<GrainCopy> {
        let mut out = Vec::new();
        let mut at = u64::MAX;
        let mut n = 0;
        // With transparent members the receiver varies by grain: the work is
        // computed once per call, not once per grain.
        let need = self.clean_need(map, target);
        while n < max_grains {
            let next = match &need {
                None => self.next_clean_grain(map, target, at),
                Some(need) => self.next_in_need(need, target, at),
            };
            let Some((g, down, down_map)) = next else {
                break;
            };
            let mut p = GrainPlanner::new(self, g, target);
            let ok = p.phys_change(down).map(|()| {
                if !p.planned.contains(&down_map) {
                    p.push(down_map, target, down);
                }
            });
            if ok.is_err() {
                break;
            }
            out.extend(p.out);
            n += 1;
            if g == 0 {
                break;
            }
            at = g - 1;
        }
        out
    }

    /// The cleaning work of stopping `map` as a bitmap, when the target or
    /// its neighbour is transparent (E6); `None` when the neighbour takes
    /// every grain (the word-level path of [`Engine::next_clean_grain`]).
    /// Empty when a member that would receive is suspended.
    fn clean_need(&self, map: MapId, target: VolumeId) -> Option<crate::bitmap::Bitmap> {
        if !self.clean_is_masked(target) {
            return None;
        }
        let r = self.walk_below(map, target, true)?;
        Some(if r.suspended {
            crate::bitmap::Bitmap::new(r.need.len())
        } else {
            r.need
        })
    }

    /// Whether cleaning from member `target` involves a transparent member.
    pub(crate) fn clean_is_masked(&self, target: VolumeId) -> bool {
        let Some(cid) = self.vols[&target].member_of else {
            return false;
        };
        let c = &self.cascades[&cid];
        let i = c.members.iter().position(|x| *x == target);
        self.member_cover(cid, target).is_some()
            || i.and_then(|i| c.members.get(i + 1))
                .is_some_and(|d| self.member_cover(cid, *d).is_some())
    }

    /// Highest grain of `need` at or below `at`, with its receiver.
    fn next_in_need(
        &self,
        need: &crate::bitmap::Bitmap,
        target: VolumeId,
        at: u64,
    ) -> Option<(u64, VolumeId, MapId)> {
        let g = need.prev_one(at)?;
        let cid = self.vols[&target].member_of?;
        let i = self.cascades[&cid]
            .members
            .iter()
            .position(|x| *x == target)?;
        let (d, id) = self.next_covering(cid, i + 1, g)?;
        Some((g, d, id))
    }

    /// Highest grain at or below `at` that stopping `map` (target `target`)
    /// must still clean: split on the target, unsplit on the member that
    /// reads it (its downstream neighbour, or with transparent members the
    /// next one covering the grain). Returns that member and its map.
    pub(crate) fn next_clean_grain(
        &self,
        map: MapId,
        target: VolumeId,
        at: u64,
    ) -> Option<(u64, VolumeId, MapId)> {
        if let Some(need) = self.clean_need(map, target) {
            return self.next_in_need(&need, target, at);
        }
        let cid = self.vols[&target].member_of?;
        let c = &self.cascades[&cid];
        let i = c.members.iter().position(|x| *x == target)?;
        let down = *c.members.get(i + 1)?;
        let down_id = self.vols[&down].target_map?;
        let dm = &self.maps[&down_id];
        if dm.state == MapState::Suspended {
            return None;
        }
        let g = self.maps[&map].split.prev_one_and_not(&dm.split, at)?;
        Some((g, down, down_id))
    }

    /// First member at members index `from` or later of `cid` that answers
    /// for grain `g` (transparent members skipped, E6), with its map.
    pub(crate) fn next_covering(
        &self,
        cid: CascadeId,
        from: usize,
        g: u64,
    ) -> Option<(VolumeId, MapId)> {
        let c = self.cascades.get(&cid)?;
        let v = *c
            .members
            .get(from..)?
            .iter()
            .find(|v| !self.skips(cid, **v, g))?;
        Some((v, self.vols[&v].target_map?))
    }

    /// Report copies as durable: sets their maps' split bits (idempotent; bits
    /// already set and maps no longer active are tolerated), releases them as
    /// in flight, and moves maps through completion, cut and cleaning-done
    /// (events queued, see [`Engine::take_events`]).
    pub fn commit_copies(&mut self, copies: &[GrainCopy]) {
        let mut touched = Vec::new();
        for c in copies {
            let Some(m) = self.maps.get_mut(&c.map) else {
                continue;
            };
            m.pending = m.pending.saturating_sub(1);
            if m.state.is_active() && m.spec.target == c.to {
                m.split.set(c.grain);
            }
            if !touched.contains(&c.map) {
                touched.push(c.map);
            }
        }
        self.settle(&touched);
    }

    /// Release planned copies that will not be executed (the request failed).
    /// Their grains stay unsplit; a later plan will copy them again.
    pub fn abandon_copies(&mut self, copies: &[GrainCopy]) {
        let mut touched = Vec::new();
        for c in copies {
            if let Some(m) = self.maps.get_mut(&c.map) {
                m.pending = m.pending.saturating_sub(1);
                if !touched.contains(&c.map) {
                    touched.push(c.map);
                }
            }
        }
        self.settle(&touched);
    }

    /// Record that the host data of a planned write to `grains` of `volume` is
    /// applied: the volume's own map (if it is a cascade member) now holds
    /// those grains (this is how a whole-grain write splits without a fill),
    /// and incremental maps of the volume record the difference. Persist the
    /// resulting bits only after the host data is durable.
    pub fn record_write(&mut self, volume: VolumeId, grains: Range<u64>) {
        let Some(vol) = self.vols.get(&volume) else {
            return;
        };
        let end = grains.end.min(vol.grains);
        let own = self.member_map(volume);
        let incr = self.incremental_maps_of(volume);
        if let Some(id) = own {
            if let Some(m) = self.maps.get_mut(&id) {
                // Every state in which the target is a cascade member, as
                // `commit_copies`: a map suspended (by another request's
                // failed commit) between this write's plan and its record
                // still has the host's data on its target, which a resumed
                // background copy must not overwrite.
                if m.state.is_active() {
                    m.split.set_range(grains.start, end);
                }
            }
        }
        for id in incr {
            if let Some(d) = self.maps.get_mut(&id).and_then(|m| m.diff.as_mut()) {
                d.set_range(grains.start, end);
            }
        }
        if let Some(id) = own {
            self.settle(&[id]);
        }
    }
}
