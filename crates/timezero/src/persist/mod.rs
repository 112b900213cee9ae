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

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::LoadError;
use crate::types::{CopyType, MapState};

/// File magic of saved engine state.
pub const MAGIC: [u8; 8] = *b"TZENGIN1";
/// Current format version. Version 2 adds the withdrawn maps (E6: a
/// session's map that still hands its grains down before it deletes
/// itself); version 1 states still load (no map withdrawn).
pub const FORMAT_VERSION: u32 = 2;
const HEADER: usize = 8 + 4 + 8 + 4;

#[cfg(test)]
mod tests;
mod validate;

use validate::from_dto;

#[derive(Serialize, Deserialize)]
pub(super) struct EngineDto {
    pub(super) next_map: u32,
    pub(super) next_group: u32,
    pub(super) next_cascade: u32,
    pub(super) volumes: Vec<(u32, u64)>,
    pub(super) maps: Vec<MapDto>,
    pub(super) cascades: Vec<CascadeDto>,
    pub(super) groups: Vec<GroupDto>,
    /// Maps withdrawn while cleaning (version 2).
    pub(super) withdrawn: Vec<u32>,
}

/// Version 1: [`EngineDto`] without `withdrawn`.
#[derive(Deserialize)]
struct EngineDtoV1 {
    next_map: u32,
    next_group: u32,
    next_cascade: u32,
    volumes: Vec<(u32, u64)>,
    maps: Vec<MapDto>,
    cascades: Vec<CascadeDto>,
    groups: Vec<GroupDto>,
}

impl From<EngineDtoV1> for EngineDto {
    fn from(v: EngineDtoV1) -> EngineDto {
        EngineDto {
            next_map: v.next_map,
            next_group: v.next_group,
            next_cascade: v.next_cascade,
            volumes: v.volumes,
            maps: v.maps,
            cascades: v.cascades,
            groups: v.groups,
            withdrawn: Vec::new(),
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct MapDto {
    pub(super) id: u32,
    pub(super) source: u32,
    pub(super) target: u32,
    pub(super) copy_type: u8,
    pub(super) incremental: bool,
    pub(super) extents: Option<Vec<(u64, u64)>>,
    pub(super) copy_rate: u8,
    pub(super) clean_rate: u8,
    pub(super) autodelete: bool,
    pub(super) state: u8,
    pub(super) resume_to: Option<u8>,
    pub(super) group: Option<u32>,
    pub(super) started_once: bool,
    pub(super) restoring: bool,
    pub(super) split: Vec<u64>,
    pub(super) diff: Option<Vec<u64>>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct CascadeDto {
    pub(super) id: u32,
    pub(super) copy_type: u8,
    pub(super) head: u32,
    pub(super) frozen: bool,
    pub(super) private: bool,
    pub(super) members: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct GroupDto {
    pub(super) id: u32,
    pub(super) autodelete: bool,
    pub(super) members: Vec<u32>,
}

pub(super) const STATES: [MapState; 7] = [
    MapState::IdleOrCopied,
    MapState::Preparing,
    MapState::Prepared,
    MapState::Copying,
    MapState::Stopping,
    MapState::Stopped,
    MapState::Suspended,
];

pub(super) fn state_code(s: MapState) -> u8 {
    STATES.iter().position(|x| *x == s).unwrap_or(0) as u8
}

pub(super) fn type_code(t: CopyType) -> u8 {
    CopyType::ALL.iter().position(|x| *x == t).unwrap_or(0) as u8
}

pub(super) fn invalid(msg: impl Into<String>) -> LoadError {
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
            withdrawn: self
                .maps
                .iter()
                .filter(|(_, m)| m.withdrawn)
                .map(|(id, _)| id.0)
                .collect(),
        };
        frame(&dto)
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
        if version != FORMAT_VERSION && version != 1 {
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
        let (dto, used): (EngineDto, usize) = if version == 1 {
            bincode::serde::decode_from_slice::<EngineDtoV1, _>(payload, config())
                .map(|(d, used)| (d.into(), used))
        } else {
            bincode::serde::decode_from_slice(payload, config())
        }
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

pub(super) fn frame(dto: &EngineDto) -> Vec<u8> {
    // Encoding plain integers and vectors into a Vec cannot fail.
    let payload = bincode::serde::encode_to_vec(dto, config()).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}
