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
        for &id in touched {
            let Some(m) = self.maps.get(&id) else {
                continue;
            };
            let t = m.spec.target;
            if m.state == MapState::Copying
                && m.split.is_full()
                && self.vols[&t].member_of.is_some()
            {
                self.complete(id);
            }
            let Some(m) = self.maps.get(&id) else {
                continue;
            };
            if m.state == MapState::Stopping {
                stopping.push(id);
            }
            // The upstream neighbour of a map that received a cleaning copy.
            if let Some(up) = self.upstream_member_map(t) {
                if self.maps[&up].state == MapState::Stopping && !stopping.contains(&up) {
                    stopping.push(up);
                }
            }
        }
        for id in stopping {
            self.try_finish_stopping(id);
        }
        self.settle_cut_waiting();
    }

    fn upstream_member_map(&self, v: VolumeId) -> Option<MapId> {
        let cid = self.vols.get(&v)?.member_of?;
        let c = &self.cascades[&cid];
        let i = c.members.iter().position(|x| *x == v)?;
        if i == 0 {
            return None;
        }
        self.vols[&c.members[i - 1]].target_map
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
            !c.frozen
                && c.ty == ty
                && c.members.first().is_some_and(|v| {
                    self.vols[v]
                        .target_map
                        .is_some_and(|m| !self.maps[&m].split.is_full())
                })
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
        self.vols.get_mut(&t).expect("volume").member_of = None;
        let c = self
            .cascades
            .get_mut(&cid)
            .expect("E1: member cascade exists");
        c.members.retain(|x| *x != t);
        if c.members.is_empty() {
            self.drop_cascade(cid);
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
        if full {
            self.push_state(id, MapState::IdleOrCopied);
            self.maybe_autodelete(id);
        } else {
            self.view_replaced(t, id);
            self.push_state(id, MapState::Stopped);
        }
        self.settle_cut_waiting();
    }

    /// Whether the downstream neighbour of member `t` has its bitmap offline
    /// (cleaning cannot be judged complete).
    fn downstream_suspended(&self, t: VolumeId) -> bool {
        let Some(cid) = self.vols[&t].member_of else {
            return false;
        };
        let c = &self.cascades[&cid];
        let Some(i) = c.members.iter().position(|x| *x == t) else {
            return false;
        };
        c.members.get(i + 1).is_some_and(|d| {
            self.vols[d]
                .target_map
                .is_some_and(|m| self.maps[&m].state == MapState::Suspended)
        })
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
        let mut walk = |start: Bitmap, members: &[VolumeId]| {
            let mut cur = start;
            for v in members {
                let Some(mid) = self.vols[v].target_map else {
                    break;
                };
                cur.and_not_assign(&self.maps[&mid].split);
                if cur.count_ones() == 0 {
                    break;
                }
                deps.push(mid);
            }
        };
        if let Some(cid) = self.vols[&t].member_of {
            let c = &self.cascades[&cid];
            if let Some(i) = c.members.iter().position(|x| *x == t) {
                walk(m.split.clone(), &c.members[i + 1..]);
            }
        }
        if !m.split.is_full() && m.state.is_active() {
            let mut unsplit = Bitmap::ones(m.split.len());
            unsplit.and_not_assign(&m.split);
            for cid in &self.vols[&t].heads {
                let c = &self.cascades[cid];
                if !c.frozen {
                    walk(unsplit.clone(), &c.members);
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
        self.settle_cut_waiting();
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
