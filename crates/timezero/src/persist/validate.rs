//! Validation of a decoded payload into live engine structures.

use std::collections::{BTreeMap, BTreeSet};

use geometry::{Extent, ExtentSet};

use super::{invalid, EngineDto, MapDto, STATES};
use crate::bitmap::Bitmap;
use crate::engine::{Cascade, Engine, Group, Map, Vol, MAX_MAPS_PER_SOURCE};
use crate::error::LoadError;
use crate::rate::RATE_MAX;
use crate::types::{CascadeId, CopyType, GroupId, MapId, MapSpec, MapState, VolumeId};

pub(super) fn from_dto(dto: EngineDto) -> Result<Engine, LoadError> {
    let mut e = Engine {
        next_map: dto.next_map,
        next_group: dto.next_group,
        next_cascade: dto.next_cascade,
        ..Engine::default()
    };
    for (id, grains) in dto.volumes {
        let vol = Vol {
            grains,
            target_map: None,
            source_maps: Vec::new(),
            member_of: None,
            heads: Vec::new(),
        };
        if e.vols.insert(VolumeId(id), vol).is_some() {
            return Err(invalid(format!("volume vol{id} twice")));
        }
    }
    let mut group_members: BTreeMap<GroupId, Vec<MapId>> = BTreeMap::new();
    for g in &dto.groups {
        let gid = GroupId(g.id);
        if g.id >= dto.next_group || group_members.contains_key(&gid) {
            return Err(invalid(format!(
                "group {gid} duplicated or beyond the id counter"
            )));
        }
        group_members.insert(gid, g.members.iter().map(|m| MapId(*m)).collect());
        e.groups.insert(
            gid,
            Group {
                autodelete: g.autodelete,
                members: Vec::new(),
            },
        );
    }
    for m in dto.maps {
        let id = MapId(m.id);
        let map = map_from_dto(&e, m)?;
        if e.maps.contains_key(&id) || id.0 >= e.next_map {
            return Err(invalid(format!(
                "map {id} duplicated or beyond the id counter"
            )));
        }
        let (s, t) = (map.spec.source, map.spec.target);
        let tv = e
            .vols
            .get_mut(&t)
            .ok_or_else(|| invalid(format!("{id}: unknown target")))?;
        if tv.target_map.is_some() {
            return Err(invalid(format!(
                "{id}: target {t} is the target of two maps"
            )));
        }
        tv.target_map = Some(id);
        let sv = e
            .vols
            .get_mut(&s)
            .ok_or_else(|| invalid(format!("{id}: unknown source")))?;
        sv.source_maps.push(id);
        if sv.source_maps.len() > MAX_MAPS_PER_SOURCE {
            return Err(invalid(format!("{s} is the source of too many maps")));
        }
        if let Some(gid) = map.group {
            if !group_members.get(&gid).is_some_and(|g| g.contains(&id)) {
                return Err(invalid(format!("{id}: group {gid} does not list it")));
            }
            e.groups.get_mut(&gid).expect("checked").members.push(id);
        }
        e.maps.insert(id, map);
    }
    for (gid, members) in &group_members {
        if e.groups[gid].members.len() != members.len() {
            return Err(invalid(format!(
                "{gid}: member list does not match its maps"
            )));
        }
        e.groups.get_mut(gid).expect("exists").members = members.clone();
    }
    for c in dto.cascades {
        let cid = CascadeId(c.id);
        if c.id >= e.next_cascade || e.cascades.contains_key(&cid) {
            return Err(invalid(format!(
                "{cid} duplicated or beyond the id counter"
            )));
        }
        let ty = *CopyType::ALL
            .get(usize::from(c.copy_type))
            .ok_or_else(|| invalid(format!("{cid}: copy type {}", c.copy_type)))?;
        let head = VolumeId(c.head);
        if !e.vols.contains_key(&head) {
            return Err(invalid(format!("{cid}: unknown head {head}")));
        }
        if c.members.is_empty() {
            return Err(invalid(format!("{cid}: no members")));
        }
        let members: Vec<VolumeId> = c.members.iter().map(|v| VolumeId(*v)).collect();
        for (i, v) in members.iter().enumerate() {
            if members[..i].contains(v) || (*v == head && !c.frozen) {
                return Err(invalid(format!("{cid}: {v} twice")));
            }
            let vol = e
                .vols
                .get_mut(v)
                .ok_or_else(|| invalid(format!("{cid}: unknown member {v}")))?;
            if vol.member_of.is_some() {
                return Err(invalid(format!("{v} is a member of two cascades")));
            }
            let mid = vol
                .target_map
                .ok_or_else(|| invalid(format!("{cid}: member {v} has no map")))?;
            vol.member_of = Some(cid);
            let m = &e.maps[&mid];
            if !m.state.is_active() || m.spec.copy_type != ty {
                return Err(invalid(format!(
                    "{cid}: member {v} has {mid} in state {} of type {}",
                    m.state, m.spec.copy_type
                )));
            }
        }
        e.vols.get_mut(&head).expect("checked").heads.push(cid);
        e.cascades.insert(
            cid,
            Cascade {
                ty,
                head,
                frozen: c.frozen,
                private: c.private,
                members,
            },
        );
    }
    for id in dto.withdrawn.iter().map(|m| MapId(*m)) {
        let m = e
            .maps
            .get_mut(&id)
            .ok_or_else(|| invalid(format!("withdrawn map {id} unknown")))?;
        if !matches!(m.state, MapState::Stopping | MapState::Suspended) {
            return Err(invalid(format!("withdrawn map {id} in state {}", m.state)));
        }
        m.withdrawn = true;
    }
    check_structure(&e)?;
    e.rebuild_indexes();
    Ok(e)
}

fn map_from_dto(e: &Engine, m: MapDto) -> Result<Map, LoadError> {
    let id = MapId(m.id);
    let (source, target) = (VolumeId(m.source), VolumeId(m.target));
    let grains = e
        .vols
        .get(&source)
        .ok_or_else(|| invalid(format!("{id}: unknown source {source}")))?
        .grains;
    let tg = e
        .vols
        .get(&target)
        .ok_or_else(|| invalid(format!("{id}: unknown target {target}")))?
        .grains;
    if source == target || grains != tg {
        return Err(invalid(format!(
            "{id}: source and target must differ and match in size"
        )));
    }
    let copy_type = *CopyType::ALL
        .get(usize::from(m.copy_type))
        .ok_or_else(|| invalid(format!("{id}: copy type {}", m.copy_type)))?;
    let state = *STATES
        .get(usize::from(m.state))
        .ok_or_else(|| invalid(format!("{id}: state {}", m.state)))?;
    let resume_to = match m.resume_to {
        None => None,
        Some(c) => Some(
            *STATES
                .get(usize::from(c))
                .ok_or_else(|| invalid(format!("{id}: state {c}")))?,
        ),
    };
    let resume_ok = match (state, resume_to) {
        (
            MapState::Suspended,
            Some(MapState::Copying | MapState::Stopping | MapState::IdleOrCopied),
        ) => true,
        (MapState::Suspended, _) => false,
        (_, r) => r.is_none(),
    };
    if !resume_ok {
        return Err(invalid(format!(
            "{id}: resume state inconsistent with {state}"
        )));
    }
    let extents = match m.extents {
        None => None,
        Some(list) => {
            let mut v = Vec::with_capacity(list.len());
            for (first, last) in list {
                let x = Extent::new(first, last)
                    .ok_or_else(|| invalid(format!("{id}: reversed extent")))?;
                if last >= grains {
                    return Err(invalid(format!("{id}: extent beyond the volume")));
                }
                v.push(x);
            }
            let set = ExtentSet::from(v);
            if set.is_empty() {
                return Err(invalid(format!("{id}: empty extent set")));
            }
            Some(set)
        }
    };
    if m.copy_rate > RATE_MAX || m.clean_rate > RATE_MAX {
        return Err(invalid(format!("{id}: rate out of range")));
    }
    if m.incremental != m.diff.is_some() || (m.incremental && copy_type != CopyType::Full) {
        return Err(invalid(format!("{id}: difference bitmap inconsistent")));
    }
    let group = m.group.map(GroupId);
    if let Some(g) = group {
        if !e.groups.contains_key(&g) {
            return Err(invalid(format!("{id}: unknown group {g}")));
        }
    }
    let split =
        Bitmap::from_words(grains, &m.split).map_err(|x| invalid(format!("{id}: split {x}")))?;
    let diff = match m.diff {
        None => None,
        Some(w) => {
            Some(Bitmap::from_words(grains, &w).map_err(|x| invalid(format!("{id}: diff {x}")))?)
        }
    };
    let outside = grains
        - extents
            .as_ref()
            .map_or(grains, |e: &ExtentSet| e.track_count());
    let cover = crate::engine::cover_of(extents.as_ref(), grains);
    Ok(Map {
        cover,
        withdrawn: false,
        spec: MapSpec {
            source,
            target,
            copy_type,
            incremental: m.incremental,
            extents,
            copy_rate: m.copy_rate,
            clean_rate: m.clean_rate,
            autodelete: m.autodelete,
        },
        state,
        resume_to,
        group,
        split,
        diff,
        started_once: m.started_once,
        restoring: m.restoring,
        outside,
        pending: 0,
        bg_cursor: u64::MAX,
    })
}

/// E1-E5 on a freshly loaded engine.
fn check_structure(e: &Engine) -> Result<(), LoadError> {
    for (id, m) in &e.maps {
        let member = e.vols[&m.spec.target].member_of.is_some();
        let needs_member = m.state == MapState::Stopping
            || (m.state == MapState::Suspended && m.resume_to == Some(MapState::Stopping));
        if (needs_member && !member) || (m.state.is_active() && !member && !m.split.is_full()) {
            return Err(invalid(format!(
                "{id} in state {} is not in a cascade",
                m.state
            )));
        }
    }
    for (v, vol) in &e.vols {
        let mut types = BTreeSet::new();
        for (cid, i) in e.live_roles(*v) {
            let c = &e.cascades[&cid];
            if i == 0 && c.private {
                continue;
            }
            if !types.insert(c.ty) {
                return Err(invalid(format!("{v} is in two live cascades of one type")));
            }
        }
        let _ = vol;
    }
    // E4: neither walk loops.
    if let Some(volumes) = e.resolution_cycle() {
        return Err(invalid(format!("resolution loops through {volumes:?}")));
    }
    Ok(())
}
