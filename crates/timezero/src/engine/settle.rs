//! Automatic transitions and chain surgery: completion and cut, cleaning
//! done, forced stop with dependants, deletion and autodelete.

use crate::bitmap::Bitmap;
use crate::types::{CascadeId, EngineEvent, MapId, MapState, VolumeId};

use super::{Cascade, Engine};

impl Engine {
    /// Re-evaluate automatic transitions after bits or structure changed.
    /// `touched` are maps whose bits changed; related stopping maps and every
    /// cut copying map are checked too.
    pub(crate) fn settle(&mut self, touched: &[MapId]) {
        let mut stopping = Vec::new();
        let mut chains = Vec::new();
        for &id in touched {
            let Some(m) = self.maps.get(&id) else {
                continue;
            };
            let t = m.spec.target;
            // Stopping members upstream may have received their last
            // cleaning copy here (the next covering member downstream of a
            // stopping map need not be its neighbour, E6). Looked up before
            // a completion takes `t` out of the chain.
            if let Some(cid) = self.vols[&t].member_of {
                if !chains.contains(&cid) {
                    chains.push(cid);
                }
                for up in self.upstream_member_maps(t) {
                    if self.maps[&up].state == MapState::Stopping && !stopping.contains(&up) {
                        stopping.push(up);
                    }
                }
            }
            if m.state == MapState::Copying
                && m.split.is_full()
                && self.vols[&t].member_of.is_some()
                && !self.parked.contains(&id)
            {
                self.complete(id);
            }
            let Some(m) = self.maps.get(&id) else {
                continue;
            };
            if m.state == MapState::Stopping && !stopping.contains(&id) {
                stopping.push(id);
            }
        }
        for id in stopping {
            self.try_finish_stopping(id);
        }
        self.settle_cut_waiting();
        self.settle_parked(Some(&chains));
    }

    /// Maps of the members upstream of member `v` in its chain, nearest first.
    fn upstream_member_maps(&self, v: VolumeId) -> Vec<MapId> {
        let Some(cid) = self.vols.get(&v).and_then(|x| x.member_of) else {
            return Vec::new();
        };
        let c = &self.cascades[&cid];
        let i = c.members.iter().position(|x| *x == v).unwrap_or(0);
        c.members[..i]
            .iter()
            .rev()
            .filter_map(|u| self.vols[u].target_map)
            .collect()
    }

    /// Parked maps (E6) leave their chain, with no view changing, once no
    /// member downstream reads through them. `chains` limits the check to
    /// parked maps in those cascades (`None`: every parked map).
    pub(crate) fn settle_parked(&mut self, chains: Option<&[CascadeId]>) {
        loop {
            let ready: Vec<MapId> = self
                .parked
                .iter()
                .filter(|id| {
                    let t = self.maps[*id].spec.target;
                    let cid = self.vols[&t].member_of;
                    chains.is_none_or(|cs| cid.is_some_and(|c| cs.contains(&c)))
                        && !self.parked_has_readers(**id)
                })
                .copied()
                .collect();
            if ready.is_empty() {
                return;
            }
            for id in ready {
                self.parked.remove(&id);
                let t = self.maps[&id].spec.target;
                self.remove_member(t);
                self.push_state(id, MapState::IdleOrCopied);
                self.maybe_autodelete(id);
            }
        }
    }

    /// Copying maps already cut at 100 % go idle once no dependant reads
    /// through their target, i.e. no later member of the chain the target
    /// now heads has an unsplit grain that resolves to it (docs/ENGINE.md,
    /// "Completion and cut").
    pub(crate) fn settle_cut_waiting(&mut self) {
        loop {
            let ready: Vec<MapId> = self
                .waiting
                .iter()
                .filter(|id| {
                    let m = &self.maps[*id];
                    !self.has_dependants(m.spec.target, m.spec.copy_type)
                })
                .copied()
                .collect();
            if ready.is_empty() {
                return;
            }
            for id in ready {
                self.push_state(id, MapState::IdleOrCopied);
                self.maybe_autodelete(id);
            }
        }
    }

    /// Whether a member of a live cascade `t` heads still reads from `t`.
    /// Only the first member can: a later member reads grain `g` from `t`
    /// only if every member before it is unsplit at `g`, the first included;
    /// once the first member holds every grain, each later one finds its
    /// data upstream of `t` (issue 12: waiting for any unsplit member kept a
    /// finished map copying).
    fn has_dependants(&self, t: VolumeId, ty: crate::types::CopyType) -> bool {
        self.vols[&t].heads.iter().any(|cid| {
            let c = &self.cascades[cid];
            if c.frozen || c.ty != ty {
                return false;
            }
            let Some(first) = c.members.first() else {
                return false;
            };
            if self.member_cover(*cid, *first).is_none() {
                return self.vols[first]
                    .target_map
                    .is_some_and(|m| !self.maps[&m].split.is_full());
            }
            // A transparent first member passes the grains it does not
            // cover on to the members after it (E6).
            let grains = self.vols[&t].grains;
            !self
                .walk_down(*cid, &c.members, Bitmap::ones(grains), false)
                .readers
                .is_empty()
        })
    }

    /// Copy complete: cut the target from its chain; it heads its former
    /// dependants (docs/ENGINE.md, "Completion and cut").
    /// Returns whether the map was cut.
    fn complete(&mut self, id: MapId) -> bool {
        let t = self.maps[&id].spec.target;
        let Some(cid) = self.vols[&t].member_of else {
            return false;
        };
        if self.member_cover(cid, t).is_some() {
            // E6: never cut; parked while members downstream read through it.
            self.events.push(EngineEvent::CopyCompleted { map: id });
            self.parked.insert(id);
            self.settle_parked(Some(&[cid]));
            return false;
        }
        let c = self
            .cascades
            .get_mut(&cid)
            .expect("E1: member cascade exists");
        let Some(i) = c.members.iter().position(|x| *x == t) else {
            return false;
        };
        let tail: Vec<VolumeId> = c.members.split_off(i + 1);
        c.members.truncate(i);
        let ty = c.ty;
        let emptied = c.members.is_empty();
        self.vols.get_mut(&t).expect("volume of map").member_of = None;
        if emptied {
            self.drop_cascade(cid);
        }
        if !tail.is_empty() {
            let new = self.new_cascade(Cascade {
                ty,
                head: t,
                frozen: false,
                private: false,
                members: tail.clone(),
            });
            for v in tail {
                self.vols.get_mut(&v).expect("member volume").member_of = Some(new);
            }
        }
        self.events.push(EngineEvent::CopyCompleted { map: id });
        if self.has_dependants(t, ty) {
            self.waiting.insert(id);
        } else {
            self.push_state(id, MapState::IdleOrCopied);
            self.maybe_autodelete(id);
        }
        true
    }

    pub(crate) fn new_cascade(&mut self, c: Cascade) -> CascadeId {
        let id = CascadeId(self.next_cascade);
        self.next_cascade += 1;
        let head = c.head;
        self.cascades.insert(id, c);
        self.vols
            .get_mut(&head)
            .expect("head volume")
            .heads
            .push(id);
        id
    }

    fn drop_cascade(&mut self, cid: CascadeId) {
        if let Some(c) = self.cascades.remove(&cid) {
            if let Some(v) = self.vols.get_mut(&c.head) {
                v.heads.retain(|x| *x != cid);
            }
            for m in c.members {
                if let Some(v) = self.vols.get_mut(&m) {
                    if v.member_of == Some(cid) {
                        v.member_of = None;
                    }
                }
            }
        }
    }

    /// Take member `t` out of its cascade (its downstream neighbour now reads
    /// `t`'s upstream).
    pub(crate) fn remove_member(&mut self, t: VolumeId) {
        let Some(cid) = self.vols[&t].member_of else {
            return;
        };
        // Stopping maps upstream may have been cleaning only for `t`.
        let stopping: Vec<MapId> = self
            .upstream_member_maps(t)
            .into_iter()
            .filter(|m| self.maps[m].state == MapState::Stopping)
            .collect();
        self.vols.get_mut(&t).expect("volume").member_of = None;
        let c = self
            .cascades
            .get_mut(&cid)
            .expect("E1: member cascade exists");
        c.members.retain(|x| *x != t);
        if c.members.is_empty() {
            self.drop_cascade(cid);
        }
        for id in stopping {
            self.try_finish_stopping(id);
        }
    }

    /// Finish a stopping map when nothing is left to clean and no copies are
    /// in flight.
    pub(crate) fn try_finish_stopping(&mut self, id: MapId) {
        let Some(m) = self.maps.get(&id) else {
            return;
        };
        if m.state != MapState::Stopping || m.pending > 0 {
            return;
        }
        let t = m.spec.target;
        if self.downstream_suspended(t) || self.next_clean_grain(id, t, u64::MAX).is_some() {
            return;
        }
        self.remove_member(t);
        let full = self.maps[&id].split.is_full();
        self.events.push(EngineEvent::CleaningDone { map: id });
        if self.maps[&id].withdrawn {
            // Its session ended; it only stayed to hand its grains down.
            if !full {
                self.view_replaced(t, id);
            }
            self.push_state(
                id,
                if full {
                    MapState::IdleOrCopied
                } else {
                    MapState::Stopped
                },
            );
            self.delete_internal(id, false);
        } else if full {
            self.push_state(id, MapState::IdleOrCopied);
            self.maybe_autodelete(id);
        } else {
            self.view_replaced(t, id);
            self.push_state(id, MapState::Stopped);
        }
        self.settle_cut_waiting();
        self.settle_parked(None);
    }

    /// Whether a member that reads through member `t` has its bitmap
    /// offline (cleaning cannot be judged complete).
    fn downstream_suspended(&self, t: VolumeId) -> bool {
        let Some(cid) = self.vols[&t].member_of else {
            return false;
        };
        let c = &self.cascades[&cid];
        let Some(i) = c.members.iter().position(|x| *x == t) else {
            return false;
        };
        if !self.clean_is_masked(t) {
            return c.members.get(i + 1).is_some_and(|d| {
                self.vols[d]
                    .target_map
                    .is_some_and(|m| self.maps[&m].state == MapState::Suspended)
            });
        }
        self.vols[&t]
            .target_map
            .and_then(|id| self.walk_below(id, t, true))
            .is_some_and(|r| r.suspended)
    }

    /// Maps whose view reads data through `id`'s target and would change if
    /// the target left its chain now (the maps a forced stop also stops, I6
    /// in docs/SEMANTICS.md; docs/ENGINE.md, "Stop with cleaning"):
    /// downstream members reaching the target's split grains, and, while the
    /// map is incomplete, members of other-type cascades the target heads that
    /// reach its unsplit grains.
    pub fn dependent_maps(&self, id: MapId) -> Vec<MapId> {
        let Some(m) = self.maps.get(&id) else {
            return Vec::new();
        };
        let t = m.spec.target;
        let mut deps = Vec::new();
        if let Some(r) = self.walk_below(id, t, false) {
            deps.extend(r.readers);
        }
        if !m.split.is_full() && m.state.is_active() {
            let mut unsplit = Bitmap::ones(m.split.len());
            unsplit.and_not_assign(&m.split);
            for cid in &self.vols[&t].heads {
                let c = &self.cascades[cid];
                if !c.frozen {
                    deps.extend(
                        self.walk_down(*cid, &c.members, unsplit.clone(), false)
                            .readers,
                    );
                }
            }
        }
        deps
    }

    /// `stop --force`: the map and (recursively) its dependants go to stopped.
    pub(crate) fn force_stop(&mut self, id: MapId) {
        let Some(m) = self.maps.get(&id) else {
            return;
        };
        if !matches!(
            m.state,
            MapState::Copying
                | MapState::Stopping
                | MapState::Suspended
                | MapState::Preparing
                | MapState::Prepared
        ) {
            return;
        }
        let t = m.spec.target;
        let deps = self.dependent_maps(id);
        let was_active = m.state.is_active();
        let full = m.split.is_full();
        self.remove_member(t);
        if let Some(m) = self.maps.get_mut(&id) {
            m.resume_to = None;
        }
        if was_active && !full {
            self.view_replaced(t, id);
        }
        self.push_state(id, MapState::Stopped);
        for d in deps {
            self.force_stop(d);
        }
        if self.maps.get(&id).is_some_and(|m| m.withdrawn) {
            self.delete_internal(id, false);
        }
        self.settle_cut_waiting();
        self.settle_parked(None);
    }

    pub(crate) fn maybe_autodelete(&mut self, id: MapId) {
        let Some(m) = self.maps.get(&id) else {
            return;
        };
        if m.spec.autodelete && m.state == MapState::IdleOrCopied && m.split.is_full() {
            self.delete_internal(id, true);
        }
    }

    /// Remove a map that is out of every chain.
    pub(crate) fn delete_internal(&mut self, id: MapId, autodelete: bool) {
        let Some(m) = self.maps.remove(&id) else {
            return;
        };
        if let Some(v) = self.vols.get_mut(&m.spec.target) {
            v.target_map = None;
        }
        if let Some(v) = self.vols.get_mut(&m.spec.source) {
            v.source_maps.retain(|x| *x != id);
        }
        self.events.push(EngineEvent::MapDeleted {
            map: id,
            autodelete,
        });
        if let Some(gid) = m.group {
            self.leave_group(id, gid);
        }
    }

    pub(crate) fn leave_group(&mut self, id: MapId, gid: crate::types::GroupId) {
        if let Some(g) = self.groups.get_mut(&gid) {
            g.members.retain(|x| *x != id);
            if g.members.is_empty() && g.autodelete {
                self.groups.remove(&gid);
                self.events.push(EngineEvent::GroupDeleted { group: gid });
            }
        }
        if let Some(m) = self.maps.get_mut(&id) {
            m.group = None;
        }
    }
}
