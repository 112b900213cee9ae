//! Consistency groups: several maps prepared, started and stopped at one
//! instant (docs/SEMANTICS.md, "Transitions", and I13). Membership changes only
//! while every member is idle_or_copied or stopped.

use crate::error::{ControlError, Operation};
use crate::types::{GroupId, MapId, MapState, StartOptions};

use super::{Engine, Group};

impl Engine {
    /// Create an empty consistency group.
    pub fn create_group(&mut self, autodelete: bool) -> GroupId {
        while self.groups.contains_key(&GroupId(self.next_group)) {
            self.next_group = self.next_group.wrapping_add(1);
        }
        let id = GroupId(self.next_group);
        self.next_group = self.next_group.saturating_add(1);
        self.groups.insert(
            id,
            Group {
                autodelete,
                members: Vec::new(),
            },
        );
        id
    }

    /// Create an empty consistency group with a chosen id (replay, API).
    pub fn create_group_with_id(
        &mut self,
        id: GroupId,
        autodelete: bool,
    ) -> Result<(), ControlError> {
        if self.groups.contains_key(&id) {
            return Err(ControlError::GroupExists(id));
        }
        self.next_group = self.next_group.max(id.0.saturating_add(1));
        self.groups.insert(
            id,
            Group {
                autodelete,
                members: Vec::new(),
            },
        );
        Ok(())
    }

    /// The id counters (next map id, next group id): every id below them
    /// has been handed out.
    pub fn id_counters(&self) -> (u32, u32) {
        (self.next_map, self.next_group)
    }

    /// Raises the id counters to at least `counters` (from
    /// [`Engine::id_counters`] of a state this one replaces). A controller
    /// reset that loses volatile state rebuilds the engine from a durable
    /// root older than ids it already handed out (maps of sessions never
    /// hardened); ids are never reused (docs/CLI.md), so it keeps counting
    /// from the higher of the two.
    pub fn keep_id_counters(&mut self, counters: (u32, u32)) {
        self.next_map = self.next_map.max(counters.0);
        self.next_group = self.next_group.max(counters.1);
    }

    fn group(&self, gid: GroupId) -> Result<&Group, ControlError> {
        self.groups.get(&gid).ok_or(ControlError::UnknownGroup(gid))
    }

    fn check_group_idle(&self, gid: GroupId) -> Result<(), ControlError> {
        for id in &self.group(gid)?.members {
            let st = self.maps[id].state;
            if !matches!(st, MapState::IdleOrCopied | MapState::Stopped) {
                return Err(ControlError::GroupBusy {
                    group: gid,
                    state: st,
                });
            }
        }
        Ok(())
    }

    /// Add an idle_or_copied or stopped map to an idle group.
    pub fn add_to_group(&mut self, id: MapId, gid: GroupId) -> Result<(), ControlError> {
        let m = self.map(id)?;
        if let Some(group) = m.group {
            return Err(ControlError::AlreadyInGroup { map: id, group });
        }
        if !matches!(m.state, MapState::IdleOrCopied | MapState::Stopped) {
            return Err(self.invalid(id, Operation::ChangeGroup));
        }
        self.check_group_idle(gid)?;
        self.maps.get_mut(&id).expect("checked").group = Some(gid);
        self.groups.get_mut(&gid).expect("checked").members.push(id);
        Ok(())
    }

    /// Take an idle_or_copied or stopped map out of its idle group.
    pub fn remove_from_group(&mut self, id: MapId) -> Result<(), ControlError> {
        let m = self.map(id)?;
        let Some(gid) = m.group else {
            return Ok(());
        };
        if !matches!(m.state, MapState::IdleOrCopied | MapState::Stopped) {
            return Err(self.invalid(id, Operation::ChangeGroup));
        }
        self.check_group_idle(gid)?;
        self.leave_group(id, gid);
        Ok(())
    }

    /// prestartfcconsistgrp: every member -> preparing.
    pub fn prepare_group(&mut self, gid: GroupId) -> Result<(), ControlError> {
        let members = self.group(gid)?.members.clone();
        if members.is_empty() {
            return Err(ControlError::GroupEmpty(gid));
        }
        for id in &members {
            self.check_prepare(*id)?;
        }
        for id in members {
            self.push_state(id, MapState::Preparing);
        }
        Ok(())
    }

    /// Checks, without changing anything, that [`Engine::start_group`] with
    /// `opts` would be accepted (see [`Engine::check_start`]).
    pub fn check_start_group(&self, gid: GroupId, opts: StartOptions) -> Result<(), ControlError> {
        let members = &self.group(gid)?.members;
        if members.is_empty() {
            return Err(ControlError::GroupEmpty(gid));
        }
        self.check_start_batch(members, opts).map(|_| ())
    }

    /// startfcconsistgrp: start every member at one instant (the controller
    /// pauses and drains host writes to the sources around this call).
    pub fn start_group(&mut self, gid: GroupId, opts: StartOptions) -> Result<(), ControlError> {
        let members = self.group(gid)?.members.clone();
        if members.is_empty() {
            return Err(ControlError::GroupEmpty(gid));
        }
        self.start_batch(&members, opts)
    }

    /// stopfcconsistgrp [-force]: stop every member.
    pub fn stop_group(&mut self, gid: GroupId, force: bool) -> Result<(), ControlError> {
        let members = self.group(gid)?.members.clone();
        for id in &members {
            self.check_stop(*id, force)?;
        }
        // E4 for the members together: each may be fine alone while their
        // removals together close a restore loop.
        let mut shape = super::cycles::Shape::after_pending(self);
        for id in &members {
            let m = &self.maps[id];
            if matches!(
                m.state,
                MapState::Copying | MapState::Stopping | MapState::Suspended
            ) {
                shape.remove(m.spec.target);
                if force {
                    for d in self.dependent_maps(*id) {
                        shape.remove(self.maps[&d].spec.target);
                    }
                }
            }
        }
        if let (Some(volumes), Some(&map)) = (shape.cycle(), members.first()) {
            return Err(ControlError::RestoreCycle { map, volumes });
        }
        for id in members {
            self.stop_one(id, force);
        }
        Ok(())
    }

    /// rmfcconsistgrp [-force]: an empty group is deleted; with force the
    /// members leave it (they are not deleted).
    pub fn delete_group(&mut self, gid: GroupId, force: bool) -> Result<(), ControlError> {
        let members = self.group(gid)?.members.clone();
        if !members.is_empty() && !force {
            return Err(ControlError::GroupNotEmpty(gid));
        }
        for id in members {
            if let Some(m) = self.maps.get_mut(&id) {
                m.group = None;
            }
        }
        self.groups.remove(&gid);
        Ok(())
    }
}
