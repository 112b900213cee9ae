//! Consistency groups (mkfcconsistgrp, startfcconsistgrp, ...) and map
//! resume: control requests like those in `control` (exclusive topology lock,
//! checkpoint before returning, undone on failure).

use timezero::{GroupId, MapId, MapState, StartOptions};

use super::control::GroupView;
use super::Subsystem;
use crate::error::{err, ErrorKind, Result};

impl Subsystem {
    // ---- groups ----------------------------------------------------------

    /// Creates a consistency group holding `maps` (idle_or_copied or stopped).
    pub fn create_group(&self, maps: &[MapId], autodelete: bool) -> Result<GroupId> {
        self.control(|s, core| {
            Subsystem::not_session_owned(core, maps, None, "group")?;
            let g = core.engine.create_group(autodelete);
            for &m in maps {
                if let Err(e) = core.engine.add_to_group(m, g) {
                    let _ = core.engine.delete_group(g, true);
                    return Err(s.inner.engine_err(core, e));
                }
            }
            Ok(g)
        })
    }

    /// Prepares and starts every member at one instant (host I/O drained meanwhile).
    pub fn start_group(&self, group: GroupId, restore: bool) -> Result<()> {
        self.control(|s, core| {
            Subsystem::not_session_owned(core, &[], Some(group), "start")?;
            let members = core
                .engine
                .groups()
                .into_iter()
                .find(|g| g.id == group)
                .ok_or_else(|| err(ErrorKind::NotFound, format!("unknown group {}", group.0)))?
                .members;
            s.not_on_session_target(core, &members, "start")?;
            s.refuse_poisoned_maps(core, &members)?;
            let started = !members.is_empty()
                && members
                    .iter()
                    .all(|m| matches!(core.engine.map_state(*m), Some(MapState::Copying)));
            if started {
                return Err(err(
                    ErrorKind::State,
                    format!(
                        "group {} is already started: its maps are copying (`group stop {}` \
                         stops them; a new point in time needs a stop first)",
                        group.0, group.0
                    ),
                ));
            }
            let idle = members.iter().all(|m| {
                matches!(
                    core.engine.map_state(*m),
                    Some(MapState::IdleOrCopied | MapState::Stopped)
                )
            });
            if idle {
                core.engine
                    .check_start_group(
                        group,
                        StartOptions {
                            restore,
                            prepare: true,
                        },
                    )
                    .map_err(|e| s.inner.engine_err(core, e))?;
                core.engine
                    .prepare_group(group)
                    .map_err(|e| s.inner.engine_err(core, e))?;
                s.finish_prepare(core, &members)?;
            }
            core.engine
                .start_group(
                    group,
                    StartOptions {
                        restore,
                        prepare: false,
                    },
                )
                .map_err(|e| s.inner.engine_err(core, e))
        })
    }

    /// Stops every member.
    pub fn stop_group(&self, group: GroupId, force: bool) -> Result<()> {
        self.control(|s, core| {
            Subsystem::not_session_owned(core, &[], Some(group), "stop")?;
            core.engine
                .stop_group(group, force)
                .map_err(|e| s.inner.engine_err(core, e))
        })
    }

    /// Deletes a group (with `force`, members leave it first).
    pub fn delete_group(&self, group: GroupId, force: bool) -> Result<()> {
        self.control(|s, core| {
            Subsystem::not_session_owned(core, &[], Some(group), "delete")?;
            core.engine
                .delete_group(group, force)
                .map_err(|e| s.inner.engine_err(core, e))
        })
    }

    /// Adds an idle_or_copied or stopped map to an idle group.
    pub fn add_to_group(&self, group: GroupId, map: MapId) -> Result<()> {
        self.control(|s, core| {
            Subsystem::not_session_owned(core, &[map], Some(group), "regroup")?;
            core.engine
                .add_to_group(map, group)
                .map_err(|e| s.inner.engine_err(core, e))
        })
    }

    /// Takes an idle_or_copied or stopped map out of its group (`group` must
    /// be the one it is in).
    pub fn remove_from_group(&self, group: GroupId, map: MapId) -> Result<()> {
        self.control(|s, core| {
            Subsystem::not_session_owned(core, &[map], Some(group), "regroup")?;
            let now = core
                .engine
                .map_info(map)
                .ok_or_else(|| err(ErrorKind::NotFound, format!("unknown map {}", map.0)))?
                .group;
            if now != Some(group) {
                return Err(err(
                    ErrorKind::InvalidRequest,
                    format!("map {} is not in group {}", map.0, group.0),
                ));
            }
            core.engine
                .remove_from_group(map)
                .map_err(|e| s.inner.engine_err(core, e))
        })
    }

    /// Every group.
    pub fn groups(&self) -> Vec<GroupView> {
        let core = self.inner.core.lock();
        core.engine
            .groups()
            .into_iter()
            .map(|g| {
                let states: Vec<MapState> = g
                    .members
                    .iter()
                    .filter_map(|m| core.engine.map_state(*m))
                    .collect();
                GroupView {
                    id: g.id.0,
                    autodelete: g.autodelete,
                    members: g.members.iter().map(|m| m.0).collect(),
                    state: super::control::group_state(&states),
                }
            })
            .collect()
    }

    /// Resumes a suspended map (bitmap online again), e.g. after the failed
    /// store was replaced by an IPL. Refused while a store of either of its
    /// volumes is still poisoned: its writes would fail again, and what the
    /// failed flush dropped is only known once an IPL has reopened it.
    pub fn resume_map(&self, map: MapId) -> Result<()> {
        self.control(|s, core| {
            s.refuse_poisoned_maps(core, &[map])
                .map_err(|e| e.context(format!("map {} cannot resume", map.0)))?;
            core.engine
                .resume(map)
                .map_err(|e| s.inner.engine_err(core, e))
        })
    }
}
