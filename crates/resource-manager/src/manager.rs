//! [`ResourceManager`]: sessions across subsystems (start, complete, list).
//!
//! Invariants owned here:
//! - all requests are serialized by one mutex, so a recovery never races a start;
//! - the in-memory [`Ledger`] equals the fold of the attached subsystems' tables, except
//!   after a failed port call, when it is marked stale and rebuilt before the next use;
//! - a session's Initiated entries are durable on every subsystem before
//!   [`ResourceManager::start_session`] returns `Ok`;
//! - a session spanning subsystems has one time zero: writes to its sources are frozen on
//!   every subsystem before the first physical session is established, and thawed only
//!   after the last one is; a freeze that did not hold to the end fails the start with
//!   nothing left established;
//! - terminal entries are written before the physical sessions are withdrawn, so a crash
//!   between leaves a session whose state is already decided (and an orphan physical
//!   session that the next event withdraws), never an undecided half-withdrawn one;
//! - every session has an owner host, recorded in each of its rows and kept by each
//!   subsystem with its physical session: restart events of a host end only that host's
//!   sessions, and its orphan sweeps withdraw only that host's physical sessions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use activity_table::{EntryStatus, NewEntry, PhysSessionId, SessionId, TerminateReason};
use geometry::ExtentSet;
use parking_lot::{Mutex, MutexGuard};

use crate::error::RmError;
use crate::ledger::{Ledger, SessionKey, SessionLedger, SessionState};
use crate::owed::Owed;
use crate::port::{CopyPair, PhysicalSession, PortError, SubsystemPort};
use crate::report::{PhysicalPart, Progress, SessionInfo};

/// Reason recorded when a start fails part-way and is rolled back.
pub(crate) const START_FAILED: TerminateReason = TerminateReason::StartFailed;

/// One source volume of a session: where it is, which tracks, and its target.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SessionExtent {
    /// Subsystem holding the source and target volumes.
    pub subsystem: String,
    /// Source volume.
    pub volume: String,
    /// Protected tracks of the source.
    pub extents: ExtentSet,
    /// Target volume receiving the time-zero image of those tracks.
    pub target: String,
}

/// How long a start spanning subsystems may hold the writes to its sources (the freeze
/// expires by itself after it if this manager dies before the thaw).
pub const FREEZE_HOLD_MS: u64 = 5_000;

/// The host a resource manager speaks for unless told otherwise.
pub const DEFAULT_HOST: &str = "SYS1";

/// A request to start a backup copy session.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SessionSpec {
    /// The logical session id (unique in the tables).
    pub id: SessionId,
    /// The backup program that owns it (abend recovery terminates by program).
    pub program: String,
    /// The host starting it, its owner (`None`: the resource manager's own host).
    pub host: Option<String>,
    /// Background copy rate of its maps, SVC 0-150 scale (`None`: each
    /// subsystem's default for sessions).
    pub copy_rate: Option<u8>,
    /// Source extents; one physical session is established per subsystem named here.
    pub extents: Vec<SessionExtent>,
}

/// Terminal entries to write and physical sessions to withdraw, gathered while deciding.
#[derive(Default)]
pub(crate) struct SettlePlan {
    batches: BTreeMap<String, Vec<NewEntry>>,
    withdraws: BTreeMap<String, Vec<(SessionId, PhysSessionId)>>,
}

impl SettlePlan {
    /// `status` on every open row of `s`, and a withdraw of each physical session behind them.
    pub fn add(&mut self, s: &SessionLedger, status: EntryStatus, time: u64) {
        self.add_rows(s, status, time);
        for sub in s.rows.keys() {
            for phys in s.open_phys_on(sub) {
                self.withdraws
                    .entry(sub.clone())
                    .or_default()
                    .push((s.id.clone(), phys));
            }
        }
    }

    /// `status` on every open row of `s` (no withdraws).
    pub fn add_rows(&mut self, s: &SessionLedger, status: EntryStatus, time: u64) {
        for (sub, vol, row) in s.open_rows() {
            self.batches
                .entry(sub.to_string())
                .or_default()
                .push(NewEntry {
                    session_id: s.id.clone(),
                    phys_session_id: row.phys,
                    subsystem: sub.to_string(),
                    volume: Some(vol.to_string()),
                    extents: row.extents.clone(),
                    status,
                    program: s.program.clone(),
                    host: s.host.clone(),
                    time_unix_ms: time,
                });
        }
    }
}

pub(crate) struct Inner {
    /// The host this resource manager speaks for (owner of sessions started
    /// without a host, and of rows that record none).
    pub host: String,
    pub ports: BTreeMap<String, Arc<dyn SubsystemPort>>,
    pub ledger: Ledger,
    pub stale: bool,
    /// Subsystems left out of this manager's view because they did not
    /// answer ([`ResourceManager::without`]): their rows may have decided a
    /// session, so a reset over this view resumes nothing.
    pub left_out: Vec<String>,
    /// The daemon's debts (owed.rs): a peer owed a restart event is not
    /// read nor asked by this manager until the event is paid (D2)...
    pub owed: Arc<Owed>,
    /// ...unless this manager is the one paying it.
    pub paying: bool,
}

/// The host-side resource manager (SDM): starts and completes backup copy sessions and
/// recovers them on IPL, its own restart, program abend and subsystem reset notifications.
///
/// Its only state is a cache of the subsystems' activity tables; a new instance over the same
/// subsystems knows everything the old one did.
pub struct ResourceManager {
    pub(crate) inner: Mutex<Inner>,
    /// Set by [`ResourceManager::invalidate`] without taking `inner`: a peer's
    /// write through this subsystem's port must never wait for this
    /// manager's own request, which may be waiting for that peer (QA: two
    /// spanning starts on two daemons at once deadlocked until the 30 s
    /// timeout). Taken into `Inner::stale` by [`ResourceManager::lock`].
    peer_changed: AtomicBool,
    /// What this host owes peers that did not answer (owed.rs), shared by
    /// the managers one daemon builds.
    pub(crate) owed: Arc<Owed>,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn port_err<'a>(
    subsystem: &'a str,
    op: &'static str,
) -> impl FnOnce(PortError) -> RmError + 'a {
    move |source| RmError::Port {
        subsystem: subsystem.to_string(),
        op,
        source,
    }
}

impl ResourceManager {
    /// Attaches to `ports` as the resource manager of host [`DEFAULT_HOST`].
    /// See [`ResourceManager::for_host`].
    pub fn new(ports: Vec<Arc<dyn SubsystemPort>>) -> Result<ResourceManager, RmError> {
        ResourceManager::for_host(DEFAULT_HOST, ports)
    }

    /// Attaches to `ports` as the resource manager of host `host`. Their activity tables
    /// are read on first use (every event re-reads them). Does not recover anything: call
    /// [`ResourceManager::on_rm_restart`] or [`ResourceManager::on_ipl`] for that.
    pub fn for_host(
        host: &str,
        ports: Vec<Arc<dyn SubsystemPort>>,
    ) -> Result<ResourceManager, RmError> {
        activity_table::SessionId::new(host).map_err(|e| RmError::InvalidSpec {
            reason: format!("host id {host:?}: {e}"),
        })?;
        let mut map = BTreeMap::new();
        for p in ports {
            let id = p.id().to_string();
            if map.insert(id.clone(), p).is_some() {
                return Err(RmError::DuplicateSubsystem { subsystem: id });
            }
        }
        let inner = Inner {
            host: host.to_string(),
            ports: map,
            ledger: Ledger::default(),
            stale: true,
            left_out: Vec::new(),
            owed: Arc::new(Owed::default()),
            paying: false,
        };
        Ok(ResourceManager {
            inner: Mutex::new(inner),
            peer_changed: AtomicBool::new(false),
            owed: Arc::new(Owed::default()),
        })
    }

    /// This manager with the debts of `owed` (owed.rs): a daemon passes the
    /// same [`Owed`] to every manager it builds, so a restart of the
    /// resource manager still pays what the old one owed.
    pub fn with_owed(mut self, owed: Arc<Owed>) -> ResourceManager {
        self.inner.get_mut().owed = owed.clone();
        self.owed = owed;
        self
    }

    /// Forgets what the manager knows of the tables: the next request reads
    /// them again. For a manager whose tables another writer changed (a
    /// peer daemon's resource manager writing through this subsystem's port).
    pub fn invalidate(&self) {
        self.peer_changed.store(true, Ordering::SeqCst);
    }

    /// The manager's state, marked stale if a peer changed the tables since
    /// the last request (see `peer_changed`).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock();
        if self.peer_changed.swap(false, Ordering::SeqCst) {
            inner.stale = true;
        }
        inner
    }

    /// The host this resource manager speaks for.
    pub fn host(&self) -> String {
        self.lock().host.clone()
    }

    /// Names of the attached subsystems.
    pub fn subsystems(&self) -> Vec<String> {
        self.lock().ports.keys().cloned().collect()
    }

    /// Starts a session: establishes one physical session per subsystem, then writes the
    /// Initiated entries (subsystem table and each volume's table) on every subsystem.
    /// Returns the physical id per subsystem. On failure nothing stays established, and
    /// entries already written are followed by Terminated entries (best effort; whatever a
    /// failure leaves behind is settled by the next recovery event).
    pub fn start_session(
        &self,
        spec: &SessionSpec,
    ) -> Result<BTreeMap<String, PhysSessionId>, RmError> {
        self.pay_owed()?;
        let mut inner = self.lock();
        inner.refresh()?;
        if let Some(s) = inner.ledger.with_id(&spec.id).next() {
            return Err(RmError::DuplicateSession {
                id: spec.id.clone(),
                state: s.state().to_string(),
            });
        }
        let plan = plan_pairs(spec, &inner.ports)?;
        let host = match &spec.host {
            Some(h) => {
                SessionId::new(h.as_str()).map_err(|e| RmError::InvalidSpec {
                    reason: format!("host id {h:?}: {e}"),
                })?;
                h.clone()
            }
            None => inner.host.clone(),
        };
        // An earlier start of this id whose establish got no answer may have
        // left a physical session that a payment is about to withdraw: it
        // would take this start's for its own (review).
        if let Some(e) = self.refuse_retry(&spec.id, &host) {
            return Err(e);
        }
        // Admitted here, for every subsystem of the plan (its calls below
        // use `settle_port`: a debt recorded meanwhile must not cut it off
        // half-way).
        for sub in plan.keys() {
            inner.usable(sub, "start")?;
        }
        // 1. Freeze the sources everywhere (a session on one subsystem starts
        //    its maps at one instant without it), establish everywhere, thaw;
        //    on failure withdraw what was established.
        let frozen = if plan.len() > 1 {
            inner.freeze_sources(&plan)?
        } else {
            Vec::new()
        };
        let mut established: Vec<(String, PhysSessionId)> = Vec::new();
        let mut failure = None;
        // A subsystem whose establish did not answer may have carried it
        // out (a timeout, a connection lost with the answer).
        let mut unanswered: Option<String> = None;
        for (sub, pairs) in &plan {
            let port = inner.settle_port(sub)?;
            match port.establish(&spec.id, &host, pairs) {
                Ok(phys) => established.push((sub.clone(), phys)),
                Err(e) => {
                    if matches!(e, PortError::Unreachable { .. }) {
                        unanswered = Some(sub.clone());
                    }
                    failure = Some(port_err(sub, "establish")(e));
                    break;
                }
            }
        }
        if let Some(crash) = failure.take_if(|e| e.is_crash()) {
            return Err(crash);
        }
        if let Err(e) = inner.thaw(&frozen, spec) {
            failure.get_or_insert(e);
        }
        if let Some(e) = failure {
            inner.stale = true;
            if !e.is_crash() {
                for (s, phys) in &established {
                    if let Ok(p) = inner.settle_port(s) {
                        if p.withdraw(&spec.id, *phys) == Err(PortError::Crashed) {
                            break;
                        }
                    }
                }
                if let Some(sub) = &unanswered {
                    if !inner.withdraw_unanswered_establish(sub, &spec.id, &host) {
                        self.owe_withdraw(sub, &spec.id, &host);
                    }
                }
            }
            return Err(e);
        }
        // 2. Initiated entries, subsystem by subsystem.
        let time = now_ms();
        let phys_of: BTreeMap<String, PhysSessionId> = established.iter().cloned().collect();
        for (i, (sub, pairs)) in plan.iter().enumerate() {
            let entries: Vec<NewEntry> = pairs
                .iter()
                .map(|p| NewEntry {
                    session_id: spec.id.clone(),
                    phys_session_id: phys_of[sub],
                    subsystem: sub.clone(),
                    volume: Some(p.source.clone()),
                    extents: p.extents.clone(),
                    status: EntryStatus::Initiated,
                    program: Some(spec.program.clone()),
                    host: Some(host.clone()),
                    time_unix_ms: time,
                })
                .collect();
            let port = inner.settle_port(sub)?;
            if let Err(e) = port.append(&entries) {
                inner.stale = true;
                if e != PortError::Crashed {
                    inner.rollback_start(spec, &host, &plan, &phys_of, i);
                }
                return Err(port_err(sub, "append")(e));
            }
            for e in entries {
                inner.ledger.apply(&e.with_seq(0));
            }
        }
        tracing::info!(session = %spec.id, program = %spec.program, host = %host, subsystems = plan.len(), "session started");
        Ok(phys_of)
    }

    /// Completes a session whose copy is finished on every subsystem: Completed entries
    /// everywhere, then the physical sessions are withdrawn. Completing a completed session
    /// is a no-op; a terminated one is [`RmError::SessionTerminated`].
    pub fn complete_session(&self, id: &SessionId) -> Result<(), RmError> {
        self.pay_owed()?;
        let mut inner = self.lock();
        let session = inner.fresh_session(id)?;
        match session.state() {
            SessionState::Terminated(reason) => {
                return Err(RmError::SessionTerminated {
                    id: id.clone(),
                    reason,
                });
            }
            SessionState::Completed => {
                if session.is_unsettled() {
                    inner.settle(&[&session], EntryStatus::Completed)?;
                }
                return Ok(());
            }
            SessionState::Active | SessionState::Resumed => {}
        }
        for (sub, info) in inner.whole_parts(&session)? {
            if info.copied_tracks < info.total_tracks {
                return Err(RmError::CopyIncomplete {
                    id: id.clone(),
                    subsystem: sub,
                    copied: info.copied_tracks,
                    total: info.total_tracks,
                });
            }
        }
        inner.settle(&[&session], EntryStatus::Completed)?;
        tracing::info!(session = %id, "session completed");
        Ok(())
    }

    /// Terminates a session by operator request (TERMSESS): Terminated
    /// entries with reason `operator` everywhere, then its physical sessions
    /// are withdrawn, then the sessions that read through them are checked
    /// (integrity.rs). `why` is logged with the rows. Terminating a
    /// terminated session is a no-op (the first reason stays); a completed
    /// one is [`RmError::SessionCompleted`].
    pub fn terminate_session(&self, id: &SessionId, why: &str) -> Result<(), RmError> {
        self.pay_owed()?;
        {
            let mut inner = self.lock();
            let session = inner.fresh_session(id)?;
            let status = match session.state() {
                SessionState::Completed => {
                    return Err(RmError::SessionCompleted { id: id.clone() })
                }
                SessionState::Terminated(reason) if session.is_unsettled() => {
                    EntryStatus::Terminated { reason }
                }
                SessionState::Terminated(_) => return Ok(()),
                SessionState::Active | SessionState::Resumed => EntryStatus::Terminated {
                    reason: TerminateReason::Operator,
                },
            };
            inner.settle(&[&session], status)?;
            tracing::info!(session = %id, why, "session terminated by the operator");
        }
        let report = self.check_sessions()?;
        match report.problems.first() {
            None => Ok(()),
            Some(p) => Err(RmError::Incomplete {
                what: format!("terminate {id}: sessions that read through it"),
                problem: p.clone(),
            }),
        }
    }

    /// Marks a session *logically complete*: its backup program released
    /// serialization, so applications run again while the physical copy goes
    /// on. Writes LogicallyComplete rows on every subsystem, after checking
    /// that every physical session still holds the session's image (an image
    /// that is already gone cannot be released on). Releasing twice is a
    /// no-op; a completed or terminated session is refused.
    ///
    /// Recovery is unchanged by it, as the patent has it: a restart event
    /// still terminates a session that is initiated and not completed, and
    /// the report says the backup must be taken again.
    pub fn release_session(&self, id: &SessionId) -> Result<(), RmError> {
        self.pay_owed()?;
        let mut inner = self.lock();
        let session = inner.fresh_session(id)?;
        match session.state() {
            SessionState::Terminated(reason) => {
                return Err(RmError::SessionTerminated {
                    id: id.clone(),
                    reason,
                })
            }
            SessionState::Completed => return Err(RmError::SessionCompleted { id: id.clone() }),
            SessionState::Active | SessionState::Resumed => {}
        }
        let pending = session
            .open_rows()
            .any(|(_, _, r)| r.status != EntryStatus::LogicallyComplete);
        if session.logically_complete && !pending {
            return Ok(());
        }
        inner.whole_parts(&session)?;
        let mut plan = SettlePlan::default();
        plan.add_rows(&session, EntryStatus::LogicallyComplete, now_ms());
        if let Some(e) = inner.execute(plan)?.into_iter().next() {
            return Err(e);
        }
        tracing::info!(session = %id, "session logically complete (serialization released)");
        Ok(())
    }

    /// Every session in the tables, in id order, with progress from the subsystems.
    pub fn list_sessions(&self) -> Result<Vec<SessionInfo>, RmError> {
        self.pay_owed()?;
        let mut inner = self.lock();
        inner.refresh()?;
        Ok(inner
            .ledger
            .sessions
            .values()
            .map(|s| inner.info(s))
            .collect())
    }

    /// One session, if it is in the tables.
    pub fn session(&self, id: &SessionId) -> Result<Option<SessionInfo>, RmError> {
        self.pay_owed()?;
        let mut inner = self.lock();
        inner.refresh()?;
        Ok(inner.pick(id)?.map(|s| inner.info(s)))
    }
}

/// Groups the spec's extents by subsystem into copy pairs, checking the spec.
fn plan_pairs(
    spec: &SessionSpec,
    ports: &BTreeMap<String, Arc<dyn SubsystemPort>>,
) -> Result<BTreeMap<String, Vec<CopyPair>>, RmError> {
    let invalid = |reason: String| RmError::InvalidSpec { reason };
    if let Some(r) = spec.copy_rate.filter(|r| *r > 150) {
        return Err(invalid(format!(
            "session {}: copy rate {r} is outside 0-150",
            spec.id
        )));
    }
    if spec.extents.is_empty() {
        return Err(invalid(format!("session {} names no extents", spec.id)));
    }
    if spec.program.is_empty() {
        // Abend recovery ends sessions by program name: one without a name
        // could never be ended by it.
        return Err(invalid(format!(
            "session {}: the program name is empty",
            spec.id
        )));
    }
    // Checked before anything starts: the activity tables refuse such a
    // name only after the physical sessions were established.
    activity_table::check_program(&spec.program)
        .map_err(|e| invalid(format!("session {}: {e}", spec.id)))?;
    let mut plan: BTreeMap<String, BTreeMap<String, CopyPair>> = BTreeMap::new();
    for e in &spec.extents {
        if !ports.contains_key(&e.subsystem) {
            return Err(RmError::UnknownSubsystem {
                subsystem: e.subsystem.clone(),
            });
        }
        if e.extents.is_empty() {
            return Err(invalid(format!(
                "{}/{}: empty extent set",
                e.subsystem, e.volume
            )));
        }
        if e.volume == e.target {
            return Err(invalid(format!(
                "{}/{}: target is the source",
                e.subsystem, e.volume
            )));
        }
        let pairs = plan.entry(e.subsystem.clone()).or_default();
        match pairs.get_mut(&e.volume) {
            Some(p) if p.target != e.target => {
                return Err(invalid(format!(
                    "{}/{}: two targets ({} and {})",
                    e.subsystem, e.volume, p.target, e.target
                )))
            }
            Some(p) => p.extents = p.extents.union(&e.extents),
            None => {
                pairs.insert(
                    e.volume.clone(),
                    CopyPair {
                        source: e.volume.clone(),
                        extents: e.extents.clone(),
                        target: e.target.clone(),
                        copy_rate: spec.copy_rate,
                    },
                );
            }
        }
    }
    for (sub, pairs) in &plan {
        let mut targets = std::collections::BTreeSet::new();
        for p in pairs.values() {
            if pairs.contains_key(&p.target) || !targets.insert(p.target.clone()) {
                return Err(invalid(format!(
                    "{sub}/{}: target {} is used twice or is also a source",
                    p.source, p.target
                )));
            }
        }
    }
    Ok(plan
        .into_iter()
        .map(|(s, pairs)| (s, pairs.into_values().collect()))
        .collect())
}

impl Inner {
    /// Session `id` from tables read again if a failed call left them unsure.
    fn fresh_session(&mut self, id: &SessionId) -> Result<SessionLedger, RmError> {
        self.refresh()?;
        self.pick(id)?
            .cloned()
            .ok_or_else(|| RmError::UnknownSession { id: id.clone() })
    }

    /// The session an operator means by `id`: the only one of that id, else the one this
    /// resource manager's host owns (hosts that raced to start one id hold one each). On a
    /// partial view (`left_out`) only this host's: the one in sight may be another host's
    /// while ours lives on a peer left out.
    fn pick<'a>(&'a self, id: &'a SessionId) -> Result<Option<&'a SessionLedger>, RmError> {
        let all: Vec<&SessionLedger> = self.ledger.with_id(id).collect();
        if !self.left_out.is_empty() {
            return Ok(all.into_iter().find(|s| self.owner_of(s) == self.host));
        }
        if all.len() <= 1 {
            return Ok(all.first().copied());
        }
        let own: Vec<&SessionLedger> = all
            .iter()
            .copied()
            .filter(|s| self.owner_of(s) == self.host)
            .collect();
        match own.as_slice() {
            [one] => Ok(Some(one)),
            _ => Err(RmError::AmbiguousSession {
                id: id.clone(),
                hosts: all.iter().map(|s| self.owner_of(s).to_string()).collect(),
            }),
        }
    }

    /// What each subsystem reports for the open physical sessions of `s`,
    /// all of which must still be its own and whole (active or quiesced);
    /// else [`RmError::PhysicalSessionGone`] for the first that is not.
    fn whole_parts(&self, s: &SessionLedger) -> Result<Vec<(String, PhysicalSession)>, RmError> {
        let mut parts = Vec::new();
        for sub in s.rows.keys() {
            let port = self.port(sub)?;
            for phys in s.open_phys_on(sub) {
                let why = match port.query(phys).map_err(port_err(sub, "query"))? {
                    Some(i) if s.owns(&i.owner, i.host.as_deref()) && i.state.is_whole() => {
                        parts.push((sub.clone(), i));
                        continue;
                    }
                    Some(i) if s.owns(&i.owner, i.host.as_deref()) => match i.state {
                        crate::PhysState::TimedOut => "timed out".to_string(),
                        _ => "failed: a map of it was stopped, or is suspended (its bitmap \
                              is offline after a failed flush), so its image is not whole"
                            .to_string(),
                    },
                    _ => "is gone".to_string(),
                };
                return Err(RmError::PhysicalSessionGone {
                    id: s.id.clone(),
                    subsystem: sub.clone(),
                    phys,
                    why,
                });
            }
        }
        Ok(parts)
    }

    /// The host that owns `s`: the one its rows record, else this manager's.
    pub fn owner_of<'a>(&'a self, s: &'a SessionLedger) -> &'a str {
        s.host.as_deref().unwrap_or(&self.host)
    }

    /// The subsystems this resource manager's own daemon holds (not peers).
    pub fn local_subsystems(&self) -> Vec<String> {
        self.ports
            .iter()
            .filter(|(_, p)| !p.is_remote())
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn port(&self, subsystem: &str) -> Result<Arc<dyn SubsystemPort>, RmError> {
        self.usable(subsystem, "ask")?;
        self.settle_port(subsystem)
    }

    /// The port to `subsystem` for settling what is decided (terminal rows,
    /// withdraws), and for a start's calls once its table read admitted it:
    /// also a peer owed a restart event, since settling only carries out a
    /// decision and reads nothing to decide on, and a start refused half-way
    /// would leave its parts behind (review: a refusal there aborted a
    /// completion half-written, and a start without its rollback).
    pub fn settle_port(&self, subsystem: &str) -> Result<Arc<dyn SubsystemPort>, RmError> {
        self.ports
            .get(subsystem)
            .cloned()
            .ok_or_else(|| RmError::UnknownSubsystem {
                subsystem: subsystem.to_string(),
            })
    }

    /// Refuses a peer owed a restart event this manager is not paying
    /// (owed.rs, D2): as a peer that does not answer, so that events go on
    /// without it and other requests fail naming it.
    pub(crate) fn usable(&self, subsystem: &str, op: &'static str) -> Result<(), RmError> {
        match self.owed.blocks(subsystem) {
            Some(debt) if !self.paying => Err(port_err(subsystem, op)(PortError::Owed { debt })),
            _ => Ok(()),
        }
    }

    /// Re-reads every subsystem table.
    pub fn reload(&mut self) -> Result<(), RmError> {
        let mut tables = Vec::with_capacity(self.ports.len());
        for (id, p) in &self.ports {
            self.usable(id, "read table")?;
            tables.push(p.entries().map_err(port_err(id, "read table"))?);
        }
        self.ledger = Ledger::rebuild(tables.iter().map(|t| t.as_slice()));
        self.stale = false;
        Ok(())
    }

    /// Rebuilds the ledger if a failed call left it unsure.
    pub fn refresh(&mut self) -> Result<(), RmError> {
        if self.stale {
            self.reload()?;
        }
        Ok(())
    }

    /// Freezes the writes to each subsystem's sources in `plan`, in plan order. On a
    /// failure the freezes already made are thawed and the error returned.
    fn freeze_sources(
        &mut self,
        plan: &BTreeMap<String, Vec<CopyPair>>,
    ) -> Result<Vec<(String, u64)>, RmError> {
        let mut frozen = Vec::with_capacity(plan.len());
        for (sub, pairs) in plan {
            let port = self.settle_port(sub)?;
            let mut sources: Vec<String> = pairs.iter().map(|p| p.source.clone()).collect();
            sources.dedup();
            match port.freeze(&sources, FREEZE_HOLD_MS) {
                Ok(token) => frozen.push((sub.clone(), token)),
                Err(e) => {
                    if e != PortError::Crashed {
                        for (s, token) in &frozen {
                            if let Ok(p) = self.settle_port(s) {
                                if p.thaw(*token) == Err(PortError::Crashed) {
                                    break;
                                }
                            }
                        }
                    }
                    return Err(port_err(sub, "freeze")(e));
                }
            }
        }
        Ok(frozen)
    }

    /// Thaws every freeze in `frozen` (all of them, whatever happens to one).
    /// The first problem is returned: a freeze that expired before its thaw
    /// ([`RmError::FreezeExpired`]), or a subsystem that did not answer.
    fn thaw(&mut self, frozen: &[(String, u64)], spec: &SessionSpec) -> Result<(), RmError> {
        let mut first = None;
        for (sub, token) in frozen {
            let port = self.settle_port(sub)?;
            match port.thaw(*token) {
                Ok(true) => {}
                Ok(false) => {
                    first.get_or_insert(RmError::FreezeExpired {
                        id: spec.id.clone(),
                        subsystem: sub.clone(),
                        hold_ms: FREEZE_HOLD_MS,
                    });
                }
                Err(PortError::Crashed) => return Err(port_err(sub, "thaw")(PortError::Crashed)),
                Err(e) => {
                    first.get_or_insert(port_err(sub, "thaw")(e));
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Best effort after an establish on `sub` that did not answer: a
    /// physical session of `session` held there by `host` can only come from
    /// this start (the id has no rows anywhere: a duplicate is refused
    /// first), so it is withdrawn now rather than left for later (QA: an
    /// establish timed out and the peer established 14 ms later). `false`
    /// when the peer is still silent (RemotePort answers at once for a
    /// while after a timeout): the caller then owes it the withdraw (owed.rs).
    fn withdraw_unanswered_establish(
        &mut self,
        sub: &str,
        session: &SessionId,
        host: &str,
    ) -> bool {
        let Ok(port) = self.settle_port(sub) else {
            return true;
        };
        let held = match port.physical_sessions() {
            Ok(h) => h,
            Err(_) => return false,
        };
        let mut done = true;
        for h in held
            .iter()
            .filter(|h| &h.owner == session && h.host.as_deref() == Some(host))
        {
            match port.withdraw(session, h.phys) {
                Ok(()) | Err(PortError::Gone { .. }) => {
                    tracing::info!(subsystem = sub, phys = %h.phys, %session,
                    "withdrew the physical session of an establish that did not answer")
                }
                Err(_) => done = false,
            }
        }
        done
    }

    /// Best-effort rollback of a start whose entries failed on plan subsystem `failed_at`.
    fn rollback_start(
        &mut self,
        spec: &SessionSpec,
        host: &str,
        plan: &BTreeMap<String, Vec<CopyPair>>,
        phys_of: &BTreeMap<String, PhysSessionId>,
        failed_at: usize,
    ) {
        let time = now_ms();
        for (sub, pairs) in plan.iter().take(failed_at + 1) {
            let entries: Vec<NewEntry> = pairs
                .iter()
                .map(|p| NewEntry {
                    session_id: spec.id.clone(),
                    phys_session_id: phys_of[sub],
                    subsystem: sub.clone(),
                    volume: Some(p.source.clone()),
                    extents: p.extents.clone(),
                    status: EntryStatus::Terminated {
                        reason: START_FAILED,
                    },
                    program: Some(spec.program.clone()),
                    host: Some(host.to_string()),
                    time_unix_ms: time,
                })
                .collect();
            if let Ok(p) = self.settle_port(sub) {
                if p.append(&entries) == Err(PortError::Crashed) {
                    return;
                }
            }
        }
        for (sub, phys) in phys_of {
            if let Ok(p) = self.settle_port(sub) {
                if p.withdraw(&spec.id, *phys) == Err(PortError::Crashed) {
                    return;
                }
            }
        }
    }

    /// Writes `status` (Completed or Terminated) on every open row of `sessions`, all
    /// subsystems, one append per subsystem; then withdraws their physical sessions.
    /// The first problem (see [`Inner::execute`]) is returned as the error.
    pub fn settle(
        &mut self,
        sessions: &[&SessionLedger],
        status: EntryStatus,
    ) -> Result<(), RmError> {
        let mut plan = SettlePlan::default();
        let time = now_ms();
        for s in sessions {
            plan.add(s, status, time);
        }
        match self.execute(plan)?.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Carries out a [`SettlePlan`]: every entry (one append per subsystem) before any
    /// withdraw. Best effort per subsystem: a subsystem whose entries were not recorded gets
    /// no withdraws (its rows stay open, so the decision is not lost and the next event
    /// settles it); other failures are collected and returned as problems. Only an injected
    /// crash stops it (`Err`).
    ///
    /// A failed append may still have recorded the entries where the ledger reads them:
    /// the controller writes the subsystem table (one all-or-nothing batch) before the
    /// volume tables, and fails the call if a volume table then fails. So after a failed
    /// append the tables are re-read: if every entry of the batch is there, the decision is
    /// durable and is carried out (withdraws included; leaving them would keep a terminated
    /// or completed session's copy running) and the failure is only logged: the volume
    /// tables are a per-volume copy this manager does not read.
    pub fn execute(&mut self, plan: SettlePlan) -> Result<Vec<RmError>, RmError> {
        let mut problems = Vec::new();
        let mut failed: BTreeMap<String, RmError> = BTreeMap::new();
        for (sub, entries) in &plan.batches {
            let port = self.settle_port(sub)?;
            match port.append(entries) {
                Ok(()) => {
                    for e in entries {
                        self.ledger.apply(&e.clone().with_seq(0));
                    }
                }
                Err(e) => {
                    self.stale = true;
                    if e == PortError::Crashed {
                        return Err(port_err(sub, "append")(e));
                    }
                    failed.insert(sub.clone(), port_err(sub, "append")(e));
                }
            }
        }
        if !failed.is_empty() {
            match self.reload() {
                Ok(()) => {}
                Err(e) if e.is_crash() => return Err(e),
                Err(e) => problems.push(e),
            }
        }
        let mut failed_appends = std::collections::BTreeSet::new();
        for (sub, e) in failed {
            if !self.stale && self.recorded(&sub, &plan.batches[&sub]) {
                tracing::warn!(subsystem = %sub, error = %e,
                    "append failed after the subsystem table recorded the entries; carried out");
            } else {
                failed_appends.insert(sub);
                problems.push(e);
            }
        }
        for (sub, list) in &plan.withdraws {
            if failed_appends.contains(sub) {
                continue;
            }
            let port = self.settle_port(sub)?;
            for (id, phys) in list {
                if let Err(e) = port.withdraw(id, *phys) {
                    self.stale = true;
                    if e == PortError::Crashed {
                        return Err(port_err(sub, "withdraw")(e));
                    }
                    problems.push(port_err(sub, "withdraw")(e));
                }
            }
        }
        Ok(problems)
    }

    /// True if the ledger (just re-read) has every entry of `entries` as the latest status
    /// of its row on `subsystem`.
    fn recorded(&self, subsystem: &str, entries: &[NewEntry]) -> bool {
        entries.iter().all(|e| {
            let row = self
                .ledger
                .sessions
                .get(&SessionKey {
                    id: e.session_id.clone(),
                    host: e.host.clone(),
                })
                .and_then(|s| s.rows.get(subsystem))
                .and_then(|vols| vols.get(e.volume.as_deref()?));
            row.is_some_and(|r| r.status == e.status)
        })
    }

    pub fn info(&self, s: &SessionLedger) -> SessionInfo {
        let state = s.state();
        let parts = s
            .rows
            .iter()
            .filter_map(|(sub, vols)| {
                let phys = vols.values().map(|r| r.phys).next()?;
                // Open sessions only: (progress, what is broken, suspended).
                let (progress, broken, suspended) = match self.ports.get(sub) {
                    Some(p) if !state.is_terminal() => match p.query(phys) {
                        Ok(Some(i)) if s.owns(&i.owner, i.host.as_deref()) => (
                            Some(Progress {
                                copied_tracks: i.copied_tracks,
                                total_tracks: i.total_tracks,
                            }),
                            match i.state {
                                crate::PhysState::TimedOut => Some("timed_out".to_string()),
                                crate::PhysState::Failed => Some("failed".to_string()),
                                crate::PhysState::Active | crate::PhysState::Suspended => None,
                            },
                            i.state == crate::PhysState::Suspended,
                        ),
                        Ok(_) => (None, Some("gone".to_string()), false),
                        Err(_) => (None, None, false),
                    },
                    _ => (None, None, false),
                };
                Some(PhysicalPart {
                    subsystem: sub.clone(),
                    phys,
                    volumes: vols
                        .iter()
                        .map(|(v, r)| (v.clone(), r.extents.clone()))
                        .collect(),
                    progress,
                    broken,
                    suspended,
                })
            })
            .collect();
        SessionInfo {
            id: s.id.clone(),
            program: s.program.clone(),
            host: self.owner_of(s).to_string(),
            state,
            logically_complete: s.logically_complete,
            parts,
        }
    }
}
