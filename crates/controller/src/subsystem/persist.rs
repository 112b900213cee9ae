//! What a root holds (the controller's durable state besides the journal),
//! the journal payload, and the checkpoint procedure.
//!
//! Persisted bytes are untrusted: [`RootPayload::validate`] checks every field
//! before anything is built from them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use timezero::MapId;

use crate::config::check_id;
use crate::error::{err, ErrorKind, Result};
use crate::meta::codec;

const ROOT_MAGIC: [u8; 4] = *b"FWRP";
/// Version 2 added the owner host of each physical session; version 1 roots
/// are still read (their sessions have no host).
const ROOT_VERSION: u16 = 2;
const JOURNAL_MAGIC: [u8; 4] = *b"FWJP";
const JOURNAL_VERSION: u16 = 1;

/// One volume as the root records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VolumeRecord {
    pub name: String,
    pub id: u32,
    pub model: String,
}

/// One source extent set of a physical session and its map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionMemberRecord {
    pub source: String,
    /// Inclusive track ranges.
    pub extents: Vec<(u64, u64)>,
    pub target: String,
    pub map: u32,
}

/// One physical session as the root records it (only hardened sessions are here).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    pub phys: u8,
    pub session: String,
    /// The host that established it (version 2; `None` in version 1 roots).
    pub host: Option<String>,
    pub group: u32,
    pub members: Vec<SessionMemberRecord>,
}

/// A version 1 session record (no host).
#[derive(Deserialize)]
struct SessionRecordV1 {
    phys: u8,
    session: String,
    group: u32,
    members: Vec<SessionMemberRecord>,
}

/// A version 1 root payload.
#[derive(Deserialize)]
struct RootPayloadV1 {
    subsystem: String,
    volumes: Vec<VolumeRecord>,
    next_volume_id: u32,
    sessions: Vec<SessionRecordV1>,
    engine: Vec<u8>,
}

impl From<RootPayloadV1> for RootPayload {
    fn from(p: RootPayloadV1) -> RootPayload {
        RootPayload {
            subsystem: p.subsystem,
            volumes: p.volumes,
            next_volume_id: p.next_volume_id,
            sessions: p
                .sessions
                .into_iter()
                .map(|s| SessionRecord {
                    phys: s.phys,
                    session: s.session,
                    host: None,
                    group: s.group,
                    members: s.members,
                })
                .collect(),
            engine: p.engine,
        }
    }
}

/// The root payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RootPayload {
    pub subsystem: String,
    pub volumes: Vec<VolumeRecord>,
    pub next_volume_id: u32,
    pub sessions: Vec<SessionRecord>,
    /// `timezero::Engine::save` output (checked by the engine's own load).
    pub engine: Vec<u8>,
}

impl RootPayload {
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        codec::encode(ROOT_MAGIC, ROOT_VERSION, self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<RootPayload> {
        let p: RootPayload = match codec::version_of(ROOT_MAGIC, bytes) {
            Some(1) => codec::decode::<RootPayloadV1>(ROOT_MAGIC, 1, bytes)?.into(),
            _ => codec::decode(ROOT_MAGIC, ROOT_VERSION, bytes)?,
        };
        p.validate()?;
        Ok(p)
    }

    /// Checks names, id uniqueness and cross references.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: String| err(ErrorKind::Corrupt, format!("root payload: {m}"));
        check_id("subsystem id", &self.subsystem).map_err(bad)?;
        let mut names = BTreeSet::new();
        let mut ids = BTreeSet::new();
        for v in &self.volumes {
            check_id("volume id", &v.name).map_err(bad)?;
            if !names.insert(v.name.as_str()) || !ids.insert(v.id) {
                return Err(bad(format!("volume {} (id {}) listed twice", v.name, v.id)));
            }
            if v.id >= self.next_volume_id {
                return Err(bad(format!(
                    "volume {} has id {} >= next id {}",
                    v.name, v.id, self.next_volume_id
                )));
            }
            v.model
                .parse::<geometry::DeviceModel>()
                .map_err(|e| bad(format!("volume {} model {:?}: {e}", v.name, v.model)))?;
        }
        let mut phys = BTreeSet::new();
        for s in &self.sessions {
            if s.phys == 0 || !phys.insert(s.phys) {
                return Err(bad(format!(
                    "physical session id {} is 0 or listed twice",
                    s.phys
                )));
            }
            check_id("session id", &s.session).map_err(bad)?;
            if let Some(h) = &s.host {
                check_id("host id", h).map_err(bad)?;
            }
            for m in &s.members {
                for vol in [&m.source, &m.target] {
                    if !names.contains(vol.as_str()) {
                        return Err(bad(format!(
                            "session {} names unknown volume {vol}",
                            s.phys
                        )));
                    }
                }
                if m.extents.iter().any(|&(a, b)| a > b) {
                    return Err(bad(format!("session {} has a reversed extent", s.phys)));
                }
            }
        }
        Ok(())
    }
}

/// A run of grain copies with the same map, source and target store:
/// grains `first..=last` (the order of commits inside one record is
/// irrelevant: commits only set bits). The engine's own type, journaled as
/// it is (`timezero::merge_runs` run-length encodes single copies).
pub(crate) use timezero::CopyRun;

/// What one journal record carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum JournalOp {
    /// Grain copies made durable (their split bits are now set).
    Copies(Vec<CopyRun>),
    /// Difference bits of an incremental map, made durable BEFORE the host
    /// data that changes those grains reaches its store.
    Diff { map: MapId, start: u64, end: u64 },
    /// Host data of `start..end` on `volume` is durable: `Engine::record_write`
    /// (whole-grain writes split the volume's own map without a fill).
    Recorded { volume: u32, start: u64, end: u64 },
}

impl From<&timezero::BitChange> for JournalOp {
    /// The engine's bit changes journal one to one (the controller does not
    /// interpret them).
    fn from(c: &timezero::BitChange) -> JournalOp {
        match *c {
            timezero::BitChange::Diff { map, first, end } => JournalOp::Diff {
                map,
                start: first,
                end,
            },
            timezero::BitChange::Recorded { volume, first, end } => JournalOp::Recorded {
                volume: volume.0,
                start: first,
                end,
            },
        }
    }
}

pub(crate) fn encode_journal(ops: &[JournalOp]) -> Result<Vec<u8>> {
    codec::encode(JOURNAL_MAGIC, JOURNAL_VERSION, &ops)
}

pub(crate) fn decode_journal(bytes: &[u8]) -> Result<Vec<JournalOp>> {
    codec::decode(JOURNAL_MAGIC, JOURNAL_VERSION, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root written before owner hosts were recorded (version 1) is read:
    /// its sessions have no host. A version 2 root keeps the host.
    #[test]
    fn version_1_roots_are_read_and_version_2_keeps_hosts() {
        #[derive(Serialize)]
        struct SessionV1<'a> {
            phys: u8,
            session: &'a str,
            group: u32,
            members: Vec<SessionMemberRecord>,
        }
        #[derive(Serialize)]
        struct RootV1<'a> {
            subsystem: &'a str,
            volumes: Vec<VolumeRecord>,
            next_volume_id: u32,
            sessions: Vec<SessionV1<'a>>,
            engine: Vec<u8>,
        }
        let volumes = vec![
            VolumeRecord {
                name: "V0".into(),
                id: 0,
                model: "fb:64M".into(),
            },
            VolumeRecord {
                name: "V1".into(),
                id: 1,
                model: "fb:64M".into(),
            },
        ];
        let member = SessionMemberRecord {
            source: "V0".into(),
            extents: vec![(0, 9)],
            target: "V1".into(),
            map: 3,
        };
        let v1 = RootV1 {
            subsystem: "SS01",
            volumes: volumes.clone(),
            next_volume_id: 2,
            sessions: vec![SessionV1 {
                phys: 1,
                session: "BKUP1",
                group: 7,
                members: vec![member.clone()],
            }],
            engine: vec![1, 2, 3],
        };
        let bytes = codec::encode(ROOT_MAGIC, 1, &v1).unwrap();
        let root = RootPayload::decode(&bytes).unwrap();
        assert_eq!(root.sessions[0].session, "BKUP1");
        assert_eq!(root.sessions[0].host, None);
        assert_eq!(root.sessions[0].members, std::slice::from_ref(&member));
        assert_eq!(root.engine, [1, 2, 3]);

        let mut v2 = root.clone();
        v2.sessions[0].host = Some("SYS2".into());
        let again = RootPayload::decode(&v2.encode().unwrap()).unwrap();
        assert_eq!(again, v2);
        // A version this build does not know is named.
        let bytes = codec::encode(ROOT_MAGIC, 9, &v2).unwrap();
        let e = RootPayload::decode(&bytes).unwrap_err().to_string();
        assert!(e.contains("format version 9"), "{e}");
    }
}
