//! Save and load of the whole engine state (semantics of a checked root).
//!
//! Layout: `MAGIC` (8 bytes) | version u32 LE | payload length u64 LE |
//! crc32c(payload) u32 LE | payload. The payload is a plain DTO encoded with
//! bincode 2 (fixed-int little-endian; bitmaps as raw little-endian words).
//! Loading trusts nothing: header, length, checksum, then every field through
//! validation into live structures (ids, sizes, bitmap lengths, states,
//! cascade consistency E1-E4 of the engine module). Corrupt or truncated input
//! is an error, never a panic. In-flight plans (`pending`) are not persisted:
//! after a load no copies are in flight.

use std::collections::{BTreeMap, BTreeSet};

use geometry::{Extent, ExtentSet};
use serde::{Deserialize, Serialize};

use crate::bitmap::Bitmap;
use crate::engine::{Cascade, Engine, Group, Map, Vol, MAX_MAPS_PER_SOURCE};
use crate::error::LoadError;
use crate::rate::RATE_MAX;
use crate::types::{CascadeId, CopyType, GroupId, MapId, MapSpec, MapState, VolumeId};

/// File magic of saved engine state.
pub const MAGIC: [u8; 8] = *b"TZENGIN1";
/// Current format version.
pub const FORMAT_VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 4;

#[derive(Serialize, Deserialize)]
struct EngineDto {
    next_map: u32,
    next_group: u32,
    next_cascade: u32,
    volumes: Vec<(u32, u64)>,
    maps: Vec<MapDto>,
    cascades: Vec<CascadeDto>,
    groups: Vec<GroupDto>,
}

#[derive(Serialize, Deserialize)]
struct MapDto {
    id: u32,
    source: u32,
    target: u32,
    copy_type: u8,
    incremental: bool,
    extents: Option<Vec<(u64, u64)>>,
    copy_rate: u8,
    clean_rate: u8,
    autodelete: bool,
    state: u8,
    resume_to: Option<u8>,
    group: Option<u32>,
    started_once: bool,
    restoring: bool,
    split: Vec<u64>,
    diff: Option<Vec<u64>>,
}

#[derive(Serialize, Deserialize)]
struct CascadeDto {
    id: u32,
    copy_type: u8,
    head: u32,
    frozen: bool,
    private: bool,
    members: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
struct GroupDto {
    id: u32,
    autodelete: bool,
    members: Vec<u32>,
}

const STATES: [MapState; 7] = [
    MapState::IdleOrCopied,
    MapState::Preparing,
    MapState::Prepared,
    MapState::Copying,
    MapState::Stopping,
    MapState::Stopped,
    MapState::Suspended,
];

fn state_code(s: MapState) -> u8 {
    STATES.iter().position(|x| *x == s).unwrap_or(0) as u8
}

fn type_code(t: CopyType) -> u8 {
    CopyType::ALL.iter().position(|x| *x == t).unwrap_or(0) as u8
}

fn invalid(msg: impl Into<String>) -> LoadError {
    LoadError::Invalid(msg.into())
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian()
}

impl Engine {
    /// Serialize the whole state (maps, bitmaps, cascades, groups, id counters).
    /// Queued events and in-flight plans are not part of it.
    pub fn save(&self) -> Vec<u8> {
        let dto = EngineDto {
            next_map: self.next_map,
            next_group: self.next_group,
            next_cascade: self.next_cascade,
            volumes: self.vols.iter().map(|(id, v)| (id.0, v.grains)).collect(),
            maps: self
                .maps
                .iter()
                .map(|(id, m)| MapDto {
                    id: id.0,
                    source: m.spec.source.0,
                    target: m.spec.target.0,
                    copy_type: type_code(m.spec.copy_type),
                    incremental: m.spec.incremental,
                    extents: m
                        .spec
                        .extents
                        .as_ref()
                        .map(|e| e.extents().iter().map(|x| (x.first, x.last)).collect()),
                    copy_rate: m.spec.copy_rate,
                    clean_rate: m.spec.clean_rate,
                    autodelete: m.spec.autodelete,
                    state: state_code(m.state),
                    resume_to: m.resume_to.map(state_code),
                    group: m.group.map(|g| g.0),
                    started_once: m.started_once,
                    restoring: m.restoring,
                    split: m.split.as_words().to_vec(),
                    diff: m.diff.as_ref().map(|d| d.as_words().to_vec()),
                })
                .collect(),
            cascades: self
                .cascades
                .iter()
                .map(|(id, c)| CascadeDto {
                    id: id.0,
                    copy_type: type_code(c.ty),
                    head: c.head.0,
                    frozen: c.frozen,
                    private: c.private,
                    members: c.members.iter().map(|v| v.0).collect(),
                })
                .collect(),
            groups: self
                .groups
                .iter()
                .map(|(id, g)| GroupDto {
                    id: id.0,
                    autodelete: g.autodelete,
                    members: g.members.iter().map(|m| m.0).collect(),
                })
                .collect(),
        };
        // Encoding plain integers and vectors into a Vec cannot fail.
        let payload = bincode::serde::encode_to_vec(&dto, config()).unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Rebuild an engine from [`Engine::save`] output, validating everything.
    pub fn load(bytes: &[u8]) -> Result<Engine, LoadError> {
        if bytes.len() < HEADER {
            return Err(LoadError::Truncated {
                len: bytes.len(),
                needed: HEADER,
            });
        }
        if bytes[..8] != MAGIC {
            return Err(LoadError::BadMagic);
        }
        let word4 = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let version = word4(8);
        if version != FORMAT_VERSION {
            return Err(LoadError::Version(version));
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(&bytes[12..20]);
        let len = u64::from_le_bytes(len8);
        let needed = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(HEADER))
            .ok_or(LoadError::Truncated {
                len: bytes.len(),
                needed: usize::MAX,
            })?;
        if bytes.len() < needed {
            return Err(LoadError::Truncated {
                len: bytes.len(),
                needed,
            });
        }
        if bytes.len() > needed {
            return Err(invalid(format!("{} trailing bytes", bytes.len() - needed)));
        }
        let payload = &bytes[HEADER..needed];
        let stored = word4(20);
        let computed = crc32c::crc32c(payload);
        if stored != computed {
            return Err(LoadError::Checksum { stored, computed });
        }
        let (dto, used): (EngineDto, usize) = bincode::serde::decode_from_slice(payload, config())
            .map_err(|e| LoadError::Decode(e.to_string()))?;
        if used != payload.len() {
            return Err(LoadError::Decode(format!(
                "{} bytes left after the payload",
                payload.len() - used
            )));
        }
        from_dto(dto)
    }
}

fn from_dto(dto: EngineDto) -> Result<Engine, LoadError> {
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
    check_structure(&e)?;
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
        (MapState::Suspended, Some(MapState::Copying | MapState::Stopping)) => true,
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
    Ok(Map {
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
        // E4: resolution terminates.
        let mut cur = *v;
        let mut steps = 0usize;
        while let Some(cid) = e.vols[&cur].member_of {
            let c = &e.cascades[&cid];
            if c.frozen {
                break;
            }
            cur = c.head;
            steps += 1;
            if steps > e.cascades.len() {
                return Err(invalid(format!("resolution from {v} loops")));
            }
        }
        let _ = vol;
    }
    Ok(())
}
