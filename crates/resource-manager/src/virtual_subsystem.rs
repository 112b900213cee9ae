//! [`VirtualSubsystem`]: an in-memory subsystem for tests (feature `test-utils`).
//!
//! It models what the resource manager's invariants talk about: volume contents (one `u64`
//! token per track), physical sessions with time-zero semantics (the first write to a
//! protected, not yet copied source track copies the old token to the target first;
//! background copy moves the rest), activity tables (subsystem and per volume), reset faults
//! that really change the subsystem state ([`ResetLoss`]), and crash injection after any
//! mutating call ([`CrashSwitch`]).
//!
//! Invariants: a live session's `pending` tracks are a subset of its domain; a target track
//! outside `pending` holds the time-zero token of its source track for as long as the
//! session protects it; limits are 16 live sessions per source volume, 64 per subsystem,
//! physical ids 1..=255.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use activity_table::{ActivityEntry, NewEntry, PhysSessionId, SessionId};
use geometry::ExtentSet;
use parking_lot::Mutex;

use crate::port::{
    CopyPair, HeldSession, PhysState, PhysicalSession, PortError, RejectKind, SubsystemPort,
};

/// Most live physical sessions protecting one source volume.
pub const MAX_SESSIONS_PER_VOLUME: usize = 16;
/// Most live physical sessions per subsystem.
pub const MAX_SESSIONS_PER_SUBSYSTEM: usize = 64;

/// Crash injection shared by the subsystems of one test "process": after `n` more mutating
/// port calls complete, the call that completes the n-th reports [`PortError::Crashed`] and
/// every later call fails the same way until [`CrashSwitch::recover`].
#[derive(Default, Debug)]
pub struct CrashSwitch {
    state: Mutex<CrashState>,
}

#[derive(Default, Debug)]
struct CrashState {
    remaining: Option<u64>,
    tripped: bool,
    ops: u64,
    /// `"<subsystem> <call>"` of every freeze, establish and thaw, in order
    /// across the subsystems sharing the switch.
    calls: Vec<String>,
}

impl CrashSwitch {
    /// A disarmed switch.
    pub fn new() -> Arc<CrashSwitch> {
        Arc::new(CrashSwitch::default())
    }

    /// Crash when the `after`-th mutating call from now completes (`after >= 1`).
    pub fn arm(&self, after: u64) {
        let mut s = self.state.lock();
        s.remaining = Some(after.max(1));
        s.tripped = false;
    }

    /// The process "restarted": calls work again and the switch is disarmed.
    pub fn recover(&self) {
        let mut s = self.state.lock();
        s.remaining = None;
        s.tripped = false;
    }

    /// Whether the armed crash has happened.
    pub fn tripped(&self) -> bool {
        self.state.lock().tripped
    }

    /// Mutating calls completed since creation.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// The freeze, establish and thaw calls so far, in order, as
    /// `"<subsystem> <call>"`.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().calls.clone()
    }

    fn note(&self, subsystem: &str, call: &str) {
        self.state.lock().calls.push(format!("{subsystem} {call}"));
    }

    fn check(&self) -> Result<(), PortError> {
        if self.state.lock().tripped {
            Err(PortError::Crashed)
        } else {
            Ok(())
        }
    }

    fn op_done(&self) -> Result<(), PortError> {
        let mut s = self.state.lock();
        s.ops += 1;
        if let Some(r) = s.remaining.as_mut() {
            *r -= 1;
            if *r == 0 {
                s.remaining = None;
                s.tripped = true;
                return Err(PortError::Crashed);
            }
        }
        Ok(())
    }
}

/// What a reset loses for one physical session (applied by [`VirtualSubsystem::reset`]).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ResetLoss {
    /// The whole relationship was not durable: the physical session is gone.
    Relationship,
    /// The subsystem rebuilt it but ended it: timed out, protection dropped.
    TimedOut,
    /// The relationship of one source volume was lost (protection of it dropped).
    Volume(String),
    /// Part of one source volume's domain was lost (protection of those tracks dropped).
    Tracks {
        /// Source volume.
        volume: String,
        /// Tracks no longer protected.
        lost: ExtentSet,
    },
}

#[derive(Clone, Debug)]
struct VPair {
    source: String,
    target: String,
    domain: ExtentSet,
    pending: BTreeSet<u64>,
}

#[derive(Clone, Debug)]
struct VSession {
    owner: SessionId,
    host: String,
    state: PhysState,
    pairs: Vec<VPair>,
}

impl VSession {
    fn protects(&self) -> bool {
        self.state.is_whole()
    }
}

#[derive(Clone, Default, Debug)]
struct VState {
    volumes: BTreeMap<String, Vec<u64>>,
    sessions: BTreeMap<u8, VSession>,
    table: Vec<ActivityEntry>,
    volume_tables: BTreeMap<String, Vec<ActivityEntry>>,
    next_seq: u64,
    fail_appends: bool,
    /// Freeze token -> frozen volumes. Recorded only: a virtual subsystem has
    /// no concurrent writers to hold (a start runs between two test steps).
    freezes: BTreeMap<u64, BTreeSet<String>>,
    next_freeze: u64,
    /// Test switch: every freeze expires before its thaw.
    expire_freezes: bool,
}

/// An in-memory subsystem implementing [`SubsystemPort`].
pub struct VirtualSubsystem {
    id: String,
    crash: Arc<CrashSwitch>,
    state: Mutex<VState>,
}

fn rejected(reason: String) -> PortError {
    PortError::Rejected {
        kind: RejectKind::Invalid,
        reason,
    }
}

fn busy(reason: String) -> PortError {
    PortError::Rejected {
        kind: RejectKind::Busy,
        reason,
    }
}

impl VirtualSubsystem {
    /// A subsystem named `id` with no volumes, sharing `crash` with the rest of the "process".
    pub fn new(id: &str, crash: Arc<CrashSwitch>) -> VirtualSubsystem {
        VirtualSubsystem {
            id: id.to_string(),
            crash,
            state: Mutex::new(VState {
                next_seq: 1,
                ..VState::default()
            }),
        }
    }

    /// An independent copy of this subsystem (tables, sessions, contents) using `crash`.
    pub fn fork(&self, crash: Arc<CrashSwitch>) -> VirtualSubsystem {
        VirtualSubsystem {
            id: self.id.clone(),
            crash,
            state: Mutex::new(self.state.lock().clone()),
        }
    }

    /// While set, every append fails with [`PortError::Failed`] before writing anything
    /// (a table I/O error).
    pub fn set_fail_appends(&self, fail: bool) {
        self.state.lock().fail_appends = fail;
    }

    /// Adds (or replaces) volume `name` of `tracks` tracks, all holding token 0.
    pub fn add_volume(&self, name: &str, tracks: u64) {
        self.state
            .lock()
            .volumes
            .insert(name.to_string(), vec![0; tracks as usize]);
    }

    /// Application write: token `value` into `track` of `volume`, copying the time-zero token
    /// to the target of every session that still needs it first.
    pub fn write(&self, volume: &str, track: u64, value: u64) -> Result<(), PortError> {
        let mut st = self.state.lock();
        let len = st
            .volumes
            .get(volume)
            .ok_or_else(|| PortError::UnknownVolume {
                volume: volume.into(),
            })?
            .len() as u64;
        if track >= len {
            return Err(rejected(format!(
                "track {track} outside {volume} ({len} tracks)"
            )));
        }
        let guarded = st.sessions.values().any(|s| {
            s.protects()
                && s.pairs
                    .iter()
                    .any(|p| p.target == volume && p.domain.contains(track))
        });
        if guarded {
            return Err(busy(format!("{volume} track {track} is a session target")));
        }
        let old = st.volumes[volume][track as usize];
        let mut copies = Vec::new();
        for s in st.sessions.values_mut().filter(|s| s.protects()) {
            for p in s.pairs.iter_mut().filter(|p| p.source == volume) {
                if p.pending.remove(&track) {
                    copies.push(p.target.clone());
                }
            }
        }
        for t in copies {
            if let Some(v) = st.volumes.get_mut(&t) {
                v[track as usize] = old;
            }
        }
        if let Some(v) = st.volumes.get_mut(volume) {
            v[track as usize] = value;
        }
        Ok(())
    }

    /// The tokens of `volume`.
    pub fn contents(&self, volume: &str) -> Option<Vec<u64>> {
        self.state.lock().volumes.get(volume).cloned()
    }

    /// Background copy: up to `max_tracks` pending tracks of active sessions (lowest first).
    /// Returns the tracks copied.
    pub fn copy_step(&self, max_tracks: u64) -> u64 {
        let mut st = self.state.lock();
        let mut moves = Vec::new();
        for s in st
            .sessions
            .values_mut()
            .filter(|s| s.state == PhysState::Active)
        {
            for p in &mut s.pairs {
                while (moves.len() as u64) < max_tracks {
                    let Some(t) = p.pending.pop_first() else {
                        break;
                    };
                    moves.push((p.source.clone(), p.target.clone(), t));
                }
            }
        }
        for (src, tgt, t) in &moves {
            let v = st.volumes[src][*t as usize];
            if let Some(tv) = st.volumes.get_mut(tgt) {
                tv[*t as usize] = v;
            }
        }
        moves.len() as u64
    }

    /// Controller warmstart: applies `losses`, then suspends every session still protecting.
    pub fn reset(&self, losses: &[(PhysSessionId, ResetLoss)]) {
        let mut st = self.state.lock();
        st.freezes.clear();
        for (phys, loss) in losses {
            let key = phys.get();
            let Some(s) = st.sessions.get_mut(&key) else {
                continue;
            };
            match loss {
                ResetLoss::Relationship => {
                    st.sessions.remove(&key);
                }
                ResetLoss::TimedOut => s.state = PhysState::TimedOut,
                ResetLoss::Volume(v) => s.pairs.retain(|p| &p.source != v),
                ResetLoss::Tracks { volume, lost } => {
                    for p in s.pairs.iter_mut().filter(|p| &p.source == volume) {
                        p.domain = p.domain.difference(lost);
                        p.pending.retain(|t| !lost.contains(*t));
                    }
                }
            }
        }
        for s in st.sessions.values_mut() {
            if s.state == PhysState::Active {
                s.state = PhysState::Suspended;
            }
        }
    }

    /// Makes every freeze expire before its thaw (`true`), as a freeze does when the
    /// establishes it waits for take longer than its hold.
    pub fn expire_freezes(&self, on: bool) {
        self.state.lock().expire_freezes = on;
    }

    /// Freezes made and not thawed.
    pub fn frozen(&self) -> usize {
        self.state.lock().freezes.len()
    }

    /// Freezes made so far.
    pub fn freezes_made(&self) -> u64 {
        self.state.lock().next_freeze
    }

    /// Live physical sessions: id, owner, state.
    pub fn live_sessions(&self) -> Vec<(PhysSessionId, SessionId, PhysState)> {
        let st = self.state.lock();
        st.sessions
            .iter()
            .filter_map(|(k, s)| Some((PhysSessionId::new(*k).ok()?, s.owner.clone(), s.state)))
            .collect()
    }

    /// The table of `volume` (entries that went to it).
    pub fn volume_table(&self, volume: &str) -> Vec<ActivityEntry> {
        self.state
            .lock()
            .volume_tables
            .get(volume)
            .cloned()
            .unwrap_or_default()
    }

    /// Appends `entries` straight to the tables (no checks, no crash counting): for building
    /// large tables in benches.
    pub fn load_entries(&self, entries: impl IntoIterator<Item = NewEntry>) {
        let mut st = self.state.lock();
        for e in entries {
            let seq = st.next_seq;
            st.next_seq += 1;
            let stored = e.with_seq(seq);
            if let Some(v) = &stored.volume {
                st.volume_tables
                    .entry(v.clone())
                    .or_default()
                    .push(stored.clone());
            }
            st.table.push(stored);
        }
    }

    fn check_pairs(st: &VState, pairs: &[CopyPair]) -> Result<(), PortError> {
        if pairs.is_empty() {
            return Err(rejected("no copy pairs".into()));
        }
        for p in pairs {
            for v in [&p.source, &p.target] {
                if !st.volumes.contains_key(v) {
                    return Err(PortError::UnknownVolume { volume: v.clone() });
                }
            }
            let src_len = st.volumes[&p.source].len() as u64;
            let tgt_len = st.volumes[&p.target].len() as u64;
            match p.extents.extents().last() {
                None => return Err(rejected(format!("{}: empty extents", p.source))),
                Some(e) if e.last >= src_len.min(tgt_len) => {
                    return Err(rejected(format!(
                        "{} -> {}: track {} outside the volumes",
                        p.source, p.target, e.last
                    )))
                }
                Some(_) => {}
            }
            let live = st.sessions.values().filter(|s| s.protects());
            let mut on_source = 0;
            for s in live {
                for q in &s.pairs {
                    if q.target == p.target || q.source == p.target || q.target == p.source {
                        return Err(busy(format!(
                            "{} -> {}: volume already in another session's copy",
                            p.source, p.target
                        )));
                    }
                    if q.source == p.source {
                        on_source += 1;
                    }
                }
            }
            if on_source >= MAX_SESSIONS_PER_VOLUME {
                return Err(PortError::Limit {
                    what: format!("{MAX_SESSIONS_PER_VOLUME} sessions on volume {}", p.source),
                });
            }
        }
        if st.sessions.len() >= MAX_SESSIONS_PER_SUBSYSTEM {
            return Err(PortError::Limit {
                what: format!("{MAX_SESSIONS_PER_SUBSYSTEM} sessions per subsystem"),
            });
        }
        Ok(())
    }
}

impl SubsystemPort for VirtualSubsystem {
    fn id(&self) -> &str {
        &self.id
    }

    fn establish(
        &self,
        session: &SessionId,
        host: &str,
        pairs: &[CopyPair],
    ) -> Result<PhysSessionId, PortError> {
        self.crash.check()?;
        self.crash.note(&self.id, "establish");
        let phys = {
            let mut st = self.state.lock();
            Self::check_pairs(&st, pairs)?;
            let free = (1..=255u8)
                .find(|k| !st.sessions.contains_key(k))
                .ok_or_else(|| PortError::Limit {
                    what: "physical session ids 01..FF".into(),
                })?;
            let pairs = pairs
                .iter()
                .map(|p| VPair {
                    source: p.source.clone(),
                    target: p.target.clone(),
                    domain: p.extents.clone(),
                    pending: p.extents.tracks().collect(),
                })
                .collect();
            st.sessions.insert(
                free,
                VSession {
                    owner: session.clone(),
                    host: host.to_string(),
                    state: PhysState::Active,
                    pairs,
                },
            );
            PhysSessionId::new(free).map_err(|e| PortError::Failed {
                reason: e.to_string(),
            })?
        };
        self.crash.op_done()?;
        Ok(phys)
    }

    fn freeze(&self, volumes: &[String], _hold_ms: u64) -> Result<u64, PortError> {
        self.crash.check()?;
        self.crash.note(&self.id, "freeze");
        let token = {
            let mut st = self.state.lock();
            if let Some(v) = volumes.iter().find(|v| !st.volumes.contains_key(*v)) {
                return Err(PortError::UnknownVolume { volume: v.clone() });
            }
            st.next_freeze += 1;
            let token = st.next_freeze;
            st.freezes.insert(token, volumes.iter().cloned().collect());
            token
        };
        self.crash.op_done()?;
        Ok(token)
    }

    fn thaw(&self, token: u64) -> Result<bool, PortError> {
        self.crash.check()?;
        self.crash.note(&self.id, "thaw");
        let held = {
            let mut st = self.state.lock();
            st.freezes.remove(&token).is_some() && !st.expire_freezes
        };
        self.crash.op_done()?;
        Ok(held)
    }

    fn withdraw(&self, session: &SessionId, phys: PhysSessionId) -> Result<(), PortError> {
        self.crash.check()?;
        {
            let mut st = self.state.lock();
            if st
                .sessions
                .get(&phys.get())
                .is_some_and(|s| &s.owner == session)
            {
                st.sessions.remove(&phys.get());
            }
        }
        self.crash.op_done()
    }

    fn query(&self, phys: PhysSessionId) -> Result<Option<PhysicalSession>, PortError> {
        self.crash.check()?;
        let st = self.state.lock();
        Ok(st.sessions.get(&phys.get()).map(|s| {
            let pending: u64 = s.pairs.iter().map(|p| p.pending.len() as u64).sum();
            let domain_tracks: u64 = s.pairs.iter().map(|p| p.domain.track_count()).sum();
            PhysicalSession {
                owner: s.owner.clone(),
                host: Some(s.host.clone()),
                state: s.state,
                domain: s
                    .pairs
                    .iter()
                    .filter(|p| !p.domain.is_empty())
                    .map(|p| (p.source.clone(), p.domain.clone()))
                    .collect(),
                copied_tracks: domain_tracks.saturating_sub(pending),
                total_tracks: domain_tracks,
            }
        }))
    }

    fn physical_sessions(&self) -> Result<Vec<HeldSession>, PortError> {
        self.crash.check()?;
        let st = self.state.lock();
        Ok(st
            .sessions
            .iter()
            .filter_map(|(k, s)| {
                Some(HeldSession {
                    phys: PhysSessionId::new(*k).ok()?,
                    owner: s.owner.clone(),
                    host: Some(s.host.clone()),
                })
            })
            .collect())
    }

    fn resume(&self, phys: PhysSessionId) -> Result<(), PortError> {
        self.crash.check()?;
        {
            let mut st = self.state.lock();
            match st.sessions.get_mut(&phys.get()) {
                Some(s) if s.state.is_whole() => s.state = PhysState::Active,
                _ => return Err(PortError::Gone { phys }),
            }
        }
        self.crash.op_done()
    }

    fn append(&self, entries: &[NewEntry]) -> Result<(), PortError> {
        self.crash.check()?;
        if self.state.lock().fail_appends {
            return Err(PortError::Failed {
                reason: format!("{}: activity table write failed (injected)", self.id),
            });
        }
        for e in entries {
            if e.subsystem != self.id {
                return Err(rejected(format!(
                    "entry for subsystem {} sent to {}",
                    e.subsystem, self.id
                )));
            }
            let Some(volume) = e.volume.clone() else {
                return Err(rejected("entry names no volume".into()));
            };
            let stored = {
                let mut st = self.state.lock();
                let seq = st.next_seq;
                st.next_seq += 1;
                let stored = e.clone().with_seq(seq);
                st.table.push(stored.clone());
                stored
            };
            self.crash.op_done()?;
            self.state
                .lock()
                .volume_tables
                .entry(volume)
                .or_default()
                .push(stored);
            self.crash.op_done()?;
        }
        Ok(())
    }

    fn entries(&self) -> Result<Vec<ActivityEntry>, PortError> {
        self.crash.check()?;
        Ok(self.state.lock().table.clone())
    }
}
