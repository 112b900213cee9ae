//! Shared helpers for the resource-manager tests over `VirtualSubsystem`s.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use geometry::{Extent, ExtentSet};
use resource_manager::{
    CrashSwitch, EntryStatus, PhysState, ResourceManager, SessionExtent, SessionId, SessionSpec,
    SubsystemPort, VirtualSubsystem,
};

pub const TRACKS: u64 = 16;
pub const SOURCES: [&str; 3] = ["S0", "S1", "S2"];
pub const TARGETS: [&str; 6] = ["T0", "T1", "T2", "T3", "T4", "T5"];

/// Subsystems of one simulated process, sharing a crash switch.
pub struct World {
    pub crash: Arc<CrashSwitch>,
    pub subs: Vec<Arc<VirtualSubsystem>>,
}

impl World {
    pub fn new(names: &[&str]) -> World {
        let crash = CrashSwitch::new();
        let subs = names
            .iter()
            .map(|n| {
                let s = Arc::new(VirtualSubsystem::new(n, crash.clone()));
                for v in SOURCES.iter().chain(TARGETS.iter()) {
                    s.add_volume(v, TRACKS);
                }
                s
            })
            .collect();
        World { crash, subs }
    }

    /// An independent copy (own crash switch).
    pub fn fork(&self) -> World {
        let crash = CrashSwitch::new();
        let subs = self
            .subs
            .iter()
            .map(|s| Arc::new(s.fork(crash.clone())))
            .collect();
        World { crash, subs }
    }

    pub fn ports(&self) -> Vec<Arc<dyn SubsystemPort>> {
        self.subs
            .iter()
            .map(|s| s.clone() as Arc<dyn SubsystemPort>)
            .collect()
    }

    pub fn rm(&self) -> ResourceManager {
        ResourceManager::new(self.ports()).expect("attach")
    }

    /// The resource manager of host `host` (another host's, when `host` is not `SYS1`).
    #[allow(dead_code)]
    pub fn rm_for(&self, host: &str) -> ResourceManager {
        ResourceManager::for_host(host, self.ports()).expect("attach")
    }

    pub fn sub(&self, name: &str) -> &Arc<VirtualSubsystem> {
        self.subs
            .iter()
            .find(|s| s.id() == name)
            .expect("subsystem")
    }

    /// Per subsystem: (session, volume) -> latest status; the durable meaning of the tables.
    pub fn settled_view(&self) -> BTreeMap<(String, String, String), EntryStatus> {
        let mut out = BTreeMap::new();
        for s in &self.subs {
            for e in s.entries().expect("entries") {
                let key = (
                    s.id().to_string(),
                    e.session_id.to_string(),
                    e.volume.clone().unwrap_or_default(),
                );
                out.insert(key, e.status);
            }
        }
        out
    }

    /// Per subsystem: live physical sessions (owner, state).
    pub fn live(&self) -> BTreeMap<String, Vec<(u8, String, PhysState)>> {
        self.subs
            .iter()
            .map(|s| {
                let v = s
                    .live_sessions()
                    .into_iter()
                    .map(|(p, o, st)| (p.get(), o.to_string(), st))
                    .collect();
                (s.id().to_string(), v)
            })
            .collect()
    }

    pub fn contents(&self) -> BTreeMap<(String, String), Vec<u64>> {
        let mut out = BTreeMap::new();
        for s in &self.subs {
            for v in SOURCES.iter().chain(TARGETS.iter()) {
                out.insert(
                    (s.id().to_string(), v.to_string()),
                    s.contents(v).expect("volume"),
                );
            }
        }
        out
    }

    /// Everything observable, for "same outcome" comparisons.
    pub fn observe(&self) -> Observed {
        Observed {
            settled: self.settled_view(),
            live: self.live(),
            contents: self.contents(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Observed {
    pub settled: BTreeMap<(String, String, String), EntryStatus>,
    pub live: BTreeMap<String, Vec<(u8, String, PhysState)>>,
    pub contents: BTreeMap<(String, String), Vec<u64>>,
}

pub fn sid(s: &str) -> SessionId {
    SessionId::new(s).expect("session id")
}

pub fn set(first: u64, last: u64) -> ExtentSet {
    ExtentSet::from(Extent::new(first, last).expect("extent"))
}

/// The extents of generated parts (subsystem, source, first track, tracks,
/// target), as indexes into `subs`, [`SOURCES`] and [`TARGETS`]; a part
/// running past the volume ends at its last track.
pub fn indexed_extents(
    subs: &[&str],
    parts: &[(usize, usize, u64, u64, usize)],
) -> Vec<SessionExtent> {
    parts
        .iter()
        .map(|&(sub, src, a, len, tgt)| SessionExtent {
            subsystem: subs[sub].to_string(),
            volume: SOURCES[src].to_string(),
            extents: set(a, (a + len - 1).min(TRACKS - 1)),
            target: TARGETS[tgt].to_string(),
        })
        .collect()
}

/// A spec over (subsystem, source, first, last, target) parts.
pub fn spec(id: &str, program: &str, parts: &[(&str, &str, u64, u64, &str)]) -> SessionSpec {
    SessionSpec {
        id: sid(id),
        program: program.to_string(),
        host: None,
        copy_rate: None,
        extents: parts
            .iter()
            .map(|(sub, vol, a, b, t)| SessionExtent {
                subsystem: sub.to_string(),
                volume: vol.to_string(),
                extents: set(*a, *b),
                target: t.to_string(),
            })
            .collect(),
    }
}
