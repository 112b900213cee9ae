//! The recovery events of patent A on [`ResourceManager`]: restart events (IPL, restart of
//! the resource manager, abend of a backup program) terminate what is initiated and not
//! completed; a reset notification resumes or terminates (docs/SESSIONS.md, "Events and
//! decisions").
//!
//! Invariants (docs/SEMANTICS.md, "Invariants (A)") this module keeps:
//! - A1: after a restart event of a host every session of that host initiated and not
//!   completed (for abend: of that program) has terminal rows everywhere and no physical
//!   session on any subsystem; no other host's session is terminated by it (except by the
//!   machine's IPL, for sessions on the subsystems that restarted with it);
//! - A2: a session with a Completed row is never terminated; one with a Terminated row is
//!   never resumed (terminal states are only ever *settled*, never changed);
//! - A3: on a reset notification a session resumes iff the subsystem reports, for the
//!   recorded physical id and owner, exactly the recorded volumes with exactly the recorded
//!   extents; otherwise the whole logical session is terminated on all subsystems;
//! - A5: every event first re-reads the tables, writes all its entries before any withdraw or
//!   resume, skips entries that are already there, and treats already-done side effects as
//!   no-ops, so a second run (or a run after a crash at any point) ends in the same tables
//!   and subsystem state and reports the same outcomes.

use std::collections::BTreeMap;

use activity_table::{EntryStatus, NewEntry, PhysSessionId, TerminateReason};
use geometry::ExtentSet;

use crate::error::RmError;
use crate::ledger::{SessionKey, SessionLedger, SessionState};
use crate::manager::{now_ms, port_err, Inner, ResourceManager, SettlePlan};
use crate::port::{HeldSession, PhysState, PhysicalSession, PortError, SubsystemPort};
use crate::report::{Decision, Decisions, Event, OrphanWithdrawn, Outcome};

/// How a reset over a partial view marks the sessions it left unjudged
/// (their decisions' `why` starts with it).
pub(crate) const NOT_JUDGED: &str = "not judged";

/// Which open sessions a restart event ends: those owned by `host` (and of
/// `program`, for an abend), and for a machine IPL also every session with
/// rows on a subsystem that restarted with the host. A payment (owed.rs)
/// runs the event on one peer only (`only_on`), or ends nothing and only
/// settles decided sessions there (`host: None`).
pub(crate) struct Scope<'a> {
    pub host: Option<&'a str>,
    pub program: Option<&'a str>,
    pub restarted: &'a [String],
    pub only_on: Option<&'a str>,
    /// Only sessions initiated at or before this time (ms since the epoch,
    /// by their rows): a payment ends what existed when the event ran.
    pub initiated_by: Option<u64>,
}

impl Scope<'_> {
    /// Of the host in scope, or with a part on a subsystem that restarted
    /// (that subsystem, if so).
    fn owns<'s>(&self, owner: &str, s: &'s SessionLedger) -> (bool, Option<&'s String>) {
        let restarted = s.rows.keys().find(|sub| self.restarted.contains(sub));
        (Some(owner) == self.host || restarted.is_some(), restarted)
    }

    /// Of the program in scope (any, when none is).
    fn program_ok(&self, s: &SessionLedger) -> bool {
        self.program.is_none_or(|p| s.program.as_deref() == Some(p))
    }

    /// Initiated by the scope's time, if it has one.
    fn in_time(&self, s: &SessionLedger) -> bool {
        self.initiated_by
            .is_none_or(|t| s.initiated_ms.is_none_or(|i| i <= t))
    }

    /// Whether the event ends `s` (owned by `owner`) if it is open: the one
    /// rule `restart_event` applies and a payment's check (owed.rs) reads.
    pub fn ends(&self, owner: &str, s: &SessionLedger) -> bool {
        self.owns(owner, s).0 && self.program_ok(s) && self.in_time(s)
    }
}

impl ResourceManager {
    /// Runs the recovery `event` (one of the `on_*` methods; `what` names it
    /// in the log) over every subsystem, and again over those that answer
    /// when a peer does not.
    ///
    /// A peer that does not answer (or answers as another subsystem) must not
    /// stop a recovery event once the subsystem restarted: the event then
    /// runs again on a fresh manager over the local subsystems and every peer
    /// that answers, and the report names each silent peer in `problems`.
    /// Their sessions' rows are settled everywhere that answers; the silent
    /// peer's own rows and physical sessions are settled by the next event
    /// that reaches it, because a terminal row anywhere decides a session.
    /// Events are rerun-safe (A5), so what the first attempt did stays done.
    /// Without a silent peer's rows, a reset resumes nothing (its rows may
    /// decide the session). A local subsystem that fails, or a peer that answers with
    /// an error, fails the event as before. (QA: with one peer down an event
    /// ran over the local subsystem alone, and a reachable peer's reset then
    /// resumed a session the event had terminated.)
    pub fn recover_over_answering(
        &self,
        what: &str,
        event: impl Fn(&ResourceManager) -> Result<Decisions, RmError>,
    ) -> Result<Decisions, RmError> {
        let began = now_ms();
        let (mut d, left_out, skipped) = self.answering(what, event)?;
        for peer in &skipped {
            self.owe_event(peer, &d, began);
        }
        d.problems.extend(left_out);
        Ok(d)
    }

    /// Runs `f` over every subsystem and, when a peer does not answer (or
    /// answers as another subsystem), again on a fresh manager without it,
    /// until one run gets past every peer it still asks. Returns `f`'s
    /// result and one line per peer left out. For requests whose outcome a
    /// row anywhere decides and that must not wait for a dead peer: the
    /// recovery events and `terminate_session`. A failure of a local
    /// subsystem, or an error a peer answered with, is returned as is.
    /// Each peer left out is owed `what` (owed.rs): once it answers, the
    /// open rows there of the sessions decided are settled.
    pub fn over_answering<T>(
        &self,
        what: &str,
        f: impl Fn(&ResourceManager) -> Result<T, RmError>,
    ) -> Result<(T, Vec<String>), RmError> {
        let (v, left_out, skipped) = self.answering(what, f)?;
        for peer in &skipped {
            self.owe_settle(peer, what);
        }
        Ok((v, left_out))
    }

    /// [`ResourceManager::over_answering`] without the debts: also returns
    /// the ids of the peers left out.
    pub(crate) fn answering<T>(
        &self,
        what: &str,
        f: impl Fn(&ResourceManager) -> Result<T, RmError>,
    ) -> Result<(T, Vec<String>, Vec<String>), RmError> {
        let mut skipped: Vec<String> = Vec::new();
        let mut left_out: Vec<String> = Vec::new();
        let mut first_silent: Option<RmError> = None;
        loop {
            let r = if skipped.is_empty() {
                f(self)
            } else {
                f(&self.without(&skipped)?)
            };
            match r {
                Err(RmError::Port {
                    subsystem,
                    op,
                    source,
                }) if source.is_silence()
                    && self.is_peer(&subsystem)
                    && !skipped.contains(&subsystem) =>
                {
                    first_silent.get_or_insert_with(|| RmError::Port {
                        subsystem: subsystem.clone(),
                        op,
                        source: source.clone(),
                    });
                    tracing::warn!(peer = %subsystem, op, error = %source,
                        "peer unreachable during {what}: going on over the subsystems that answer");
                    let how = match source {
                        PortError::Misconfigured { .. } => "is misconfigured",
                        PortError::Owed { .. } => "is owed an event not paid yet",
                        _ => "did not answer",
                    };
                    left_out.push(format!(
                        "peer {subsystem} {how} ({op}: {source}); what it missed is owed to it \
                         and paid once it answers"
                    ));
                    skipped.push(subsystem);
                }
                Ok(v) => return Ok((v, left_out, skipped)),
                // Not found where the answering subsystems can see: it may
                // live on a peer left out, so that peer's silence is the answer.
                Err(e) => {
                    return Err(match (e, first_silent) {
                        (RmError::UnknownSession { .. }, Some(silent)) => silent,
                        (e, _) => e,
                    })
                }
            }
        }
    }

    /// Whether `subsystem` is a peer's (a remote port), not this daemon's.
    fn is_peer(&self, subsystem: &str) -> bool {
        self.lock()
            .ports
            .get(subsystem)
            .is_some_and(|p| p.is_remote())
    }

    /// A fresh manager of the same host over every port but those in `skip`.
    pub fn without(&self, skip: &[String]) -> Result<ResourceManager, RmError> {
        let (host, ports) = {
            let inner = self.lock();
            let ports = inner
                .ports
                .iter()
                .filter(|(id, _)| !skip.contains(id))
                .map(|(_, p)| p.clone())
                .collect();
            (inner.host.clone(), ports)
        };
        let rm = ResourceManager::for_host(&host, ports)?.with_owed(self.owed.clone());
        // What this manager already left out stays left out (a payer built
        // by a manager that went on without a peer must not take its view
        // for a whole one: it resumed a session over it).
        let (paying, mut left_out) = {
            let inner = self.lock();
            (inner.paying, inner.left_out.clone())
        };
        left_out.extend(skip.iter().cloned());
        {
            let mut inner = rm.lock();
            inner.left_out = left_out;
            inner.paying = paying;
        }
        Ok(rm)
    }

    /// IPL of the machine this resource manager runs on: its host and its
    /// local subsystems restart together (a daemon's boot). Terminates
    /// (reason `ipl`) every session initiated and not completed that this
    /// host owns, and every one, whoever owns it, with rows on a local
    /// subsystem.
    pub fn on_ipl(&self) -> Result<Decisions, RmError> {
        let (host, local) = {
            let inner = self.lock();
            (inner.host.clone(), inner.local_subsystems())
        };
        self.on_ipl_with(&host, &local)
    }

    /// IPL of host `host` alone (its subsystems keep running): terminates
    /// (reason `ipl`) the sessions initiated and not completed that `host`
    /// owns; other hosts' sessions are untouched.
    pub fn on_host_ipl(&self, host: &str) -> Result<Decisions, RmError> {
        self.on_ipl_with(host, &[])
    }

    fn on_ipl_with(&self, host: &str, restarted: &[String]) -> Result<Decisions, RmError> {
        self.pay_owed()?;
        let event = Event::Ipl {
            host: host.to_string(),
            subsystems: restarted.to_vec(),
        };
        let scope = Scope {
            host: Some(host),
            program: None,
            restarted,
            only_on: None,
            initiated_by: None,
        };
        self.restart_event(event, TerminateReason::Ipl, scope)
    }

    /// This host's resource manager restarted: terminates (reason `rm-restart`) every
    /// session initiated and not completed that this host owns.
    pub fn on_rm_restart(&self) -> Result<Decisions, RmError> {
        let host = self.host();
        self.on_host_rm_restart(&host)
    }

    /// The resource manager of `host` restarted: terminates (reason
    /// `rm-restart`) the sessions initiated and not completed that `host` owns.
    pub fn on_host_rm_restart(&self, host: &str) -> Result<Decisions, RmError> {
        self.pay_owed()?;
        let event = Event::RmRestart {
            host: host.to_string(),
        };
        let scope = Scope {
            host: Some(host),
            program: None,
            restarted: &[],
            only_on: None,
            initiated_by: None,
        };
        self.restart_event(event, TerminateReason::RmRestart, scope)
    }

    /// Backup program `program` of this host ended abnormally: terminates (reason `abend`)
    /// its sessions that are initiated and not completed; other programs' sessions are
    /// untouched.
    pub fn on_abend(&self, program: &str) -> Result<Decisions, RmError> {
        let host = self.host();
        self.on_host_abend(&host, program)
    }

    /// Backup program `program` of host `host` ended abnormally: terminates
    /// (reason `abend`) the sessions of that program that `host` owns.
    pub fn on_host_abend(&self, host: &str, program: &str) -> Result<Decisions, RmError> {
        self.pay_owed()?;
        let event = Event::Abend {
            host: host.to_string(),
            program: program.to_string(),
        };
        let scope = Scope {
            host: Some(host),
            program: Some(program),
            restarted: &[],
            only_on: None,
            initiated_by: None,
        };
        self.restart_event(event, TerminateReason::Abend, scope)
    }

    /// Reset notification from `subsystem`: each open session with rows there resumes if the
    /// subsystem's active extents equal the recorded ones, else is terminated everywhere
    /// with reason `reset-mismatch`.
    ///
    /// Withdrawing a terminated session force-stops its maps and, with them, every map
    /// that depends on them — possibly the map of another session that reads through the
    /// terminated session's target. Such a session no longer matches; it is settled in
    /// the same notification (the checks run again until a pass neither terminates a
    /// session nor withdraws an orphan), so that a duplicate notification decides
    /// nothing new (A5).
    pub fn on_reset(&self, subsystem: &str) -> Result<Decisions, RmError> {
        self.pay_owed()?;
        self.reset_event(subsystem, None)
    }

    /// The passes of a reset notification from `subsystem`, over the
    /// sessions with rows there (only those of `only`, if given: a payment
    /// judging what a reset over a partial view left unjudged).
    pub(crate) fn reset_event(
        &self,
        subsystem: &str,
        only: Option<&[SessionKey]>,
    ) -> Result<Decisions, RmError> {
        // A pass that withdrew anything (a newly terminated session, or an
        // orphan physical session left by an earlier, interrupted event) may
        // have force-stopped maps other sessions read through: check again
        // (sim seed 30408: an orphan's withdraw stopped a resumed session's map).
        let mut report = self.reset_pass(subsystem, only)?;
        let mut again = report.ended_something();
        // Each further pass terminates at least one more session, or stops.
        let mut passes_left = report.decisions.len();
        while again && passes_left > 0 {
            passes_left -= 1;
            let next = self.reset_pass(subsystem, only)?;
            again = next.ended_something();
            for d in next.decisions.into_iter().filter(|d| d.acted) {
                match report
                    .decisions
                    .iter_mut()
                    .find(|o| o.session == d.session && o.host == d.host)
                {
                    Some(o) => *o = d,
                    None => report.decisions.push(d),
                }
            }
            report.orphans.extend(next.orphans);
            report.problems.extend(next.problems);
        }
        // Withdraws here only stop maps here: the passes above already
        // checked every session with rows on this subsystem. (Sessions on
        // other subsystems wait for their own notification: judging them now
        // would make the outcome depend on the order of notifications.)
        Ok(report)
    }

    /// One pass of the reset checks over the sessions with rows on `subsystem`.
    fn reset_pass(
        &self,
        subsystem: &str,
        only: Option<&[SessionKey]>,
    ) -> Result<Decisions, RmError> {
        let mut inner = self.lock();
        inner.reload()?;
        let port = inner.port(subsystem)?;
        let left_out = inner.left_out.clone();
        let mut unjudged: Vec<RmError> = Vec::new();
        let mut decisions = Vec::new();
        let mut plan = SettlePlan::default();
        let mut resumed_rows: Vec<NewEntry> = Vec::new();
        let mut resumes: Vec<(PhysSessionId, SessionKey)> = Vec::new();
        let time = now_ms();
        for s in inner
            .ledger
            .sessions
            .values()
            .filter(|s| s.rows.contains_key(subsystem))
            .filter(|s| only.is_none_or(|keys| keys.contains(&s.key())))
        {
            let (outcome, acted, why) = match s.state() {
                SessionState::Completed | SessionState::Terminated(_) => {
                    settled(s, &mut plan, time)
                }
                SessionState::Active | SessionState::Resumed if !left_out.is_empty() => {
                    // A row on a subsystem that did not answer may have
                    // decided it (terminated there by an event that could
                    // not reach this one): never resume on a partial view
                    // (peer_outages.rs, O2). It stays as the reset left it,
                    // and the report says so among its problems.
                    let why = format!(
                        "{NOT_JUDGED}: {} did not answer, and its rows there may decide the \
                         session; it stays suspended, and its judgment is owed to them and made \
                         once they answer",
                        left_out.join(", ")
                    );
                    unjudged.push(RmError::Owed {
                        what: format!("session {} on {subsystem}", s.id),
                        problem: why.clone(),
                    });
                    (Outcome::Untouched, false, why)
                }
                SessionState::Active | SessionState::Resumed => {
                    match check_reset(s, subsystem, port.as_ref())? {
                        Ok((phys, info)) => {
                            let rows = &s.rows[subsystem];
                            // A genuine reset (the session is quiesced) is
                            // recorded every time, also after an earlier
                            // resume; a duplicate notification writes nothing.
                            let resume = info.state != PhysState::Active;
                            for (vol, row) in rows
                                .iter()
                                .filter(|(_, r)| resume || r.status != EntryStatus::Resumed)
                            {
                                resumed_rows.push(NewEntry {
                                    session_id: s.id.clone(),
                                    phys_session_id: phys,
                                    subsystem: subsystem.to_string(),
                                    volume: Some(vol.clone()),
                                    extents: row.extents.clone(),
                                    status: EntryStatus::Resumed,
                                    program: s.program.clone(),
                                    host: s.host.clone(),
                                    time_unix_ms: time,
                                });
                            }
                            let new_rows =
                                resume || rows.values().any(|r| r.status != EntryStatus::Resumed);
                            if resume {
                                resumes.push((phys, s.key()));
                            }
                            let why = if new_rows || resume {
                                format!(
                                    "physical session {phys} on {subsystem}: extents match on {} volume(s); \
                                     copy continues at {}/{} tracks",
                                    rows.len(),
                                    info.copied_tracks,
                                    info.total_tracks
                                )
                            } else {
                                format!(
                                    "already resumed; extents still match on {} volume(s)",
                                    rows.len()
                                )
                            };
                            (Outcome::Resumed, new_rows || resume, why)
                        }
                        Err(why) => {
                            let status = EntryStatus::Terminated {
                                reason: TerminateReason::ResetMismatch,
                            };
                            plan.add(s, status, time);
                            let why = format!("{why}; terminated on {} subsystem(s)", s.rows.len());
                            (
                                Outcome::Terminated(TerminateReason::ResetMismatch),
                                true,
                                why,
                            )
                        }
                    }
                }
            };
            decisions.push(decision(s, outcome, acted, why));
        }
        // Entries first (Resumed, then Terminated/Completed), then withdraws, then resumes.
        let mut problems = unjudged;
        let mut resume_ok = true;
        if !resumed_rows.is_empty() {
            match port.append(&resumed_rows) {
                Ok(()) => {
                    for e in resumed_rows {
                        inner.ledger.apply(&e.with_seq(0));
                    }
                }
                Err(e) => {
                    inner.stale = true;
                    if e == PortError::Crashed {
                        return Err(port_err(subsystem, "append")(e));
                    }
                    resume_ok = false;
                    problems.push(port_err(subsystem, "append")(e));
                }
            }
        }
        problems.extend(inner.execute(plan)?);
        if resume_ok {
            // A resume the subsystem refuses is not a resume: the session is
            // terminated (its Resumed rows are already written, so only the
            // terminal rows and the withdraw are left), never reported as
            // resumed with its copy held.
            let mut refused = SettlePlan::default();
            for (phys, key) in resumes {
                let Err(e) = port.resume(phys) else {
                    continue;
                };
                if e == PortError::Crashed {
                    return Err(port_err(subsystem, "resume")(e));
                }
                // A failure whose outcome is unknown (I/O, no answer) leaves
                // the session quiesced: the next notification tries again.
                if !matches!(e, PortError::Gone { .. } | PortError::Rejected { .. }) {
                    problems.push(port_err(subsystem, "resume")(e));
                    continue;
                }
                let Some(s) = inner.ledger.sessions.get(&key) else {
                    problems.push(port_err(subsystem, "resume")(e));
                    continue;
                };
                let reason = TerminateReason::ResetMismatch;
                refused.add(s, EntryStatus::Terminated { reason }, time);
                if let Some(d) = decisions
                    .iter_mut()
                    .find(|d| d.session == key.id && d.host == key.host)
                {
                    d.outcome = Outcome::Terminated(reason);
                    d.acted = true;
                    d.why = format!(
                        "physical session {phys} on {subsystem} matched but could not be resumed ({e}); \
                         terminated on {} subsystem(s)",
                        s.rows.len()
                    );
                }
            }
            problems.extend(inner.execute(refused)?);
        }
        let event = Event::Reset {
            subsystem: subsystem.to_string(),
        };
        // Orphans on every local subsystem: a crash between an event's rows
        // and its withdraws leaves them anywhere. (An orphan withdrawn on
        // another subsystem may break a session there; that session is
        // judged by the next event that checks it, not by this one, so the
        // order of notifications never changes an outcome.)
        let sweep = inner.local_subsystems();
        let host = inner.host.clone();
        inner.conclude(
            event,
            decisions,
            SettlePlan::default(),
            problems,
            &sweep,
            &host,
        )
    }

    pub(crate) fn restart_event(
        &self,
        event: Event,
        reason: TerminateReason,
        scope: Scope<'_>,
    ) -> Result<Decisions, RmError> {
        let mut inner = self.lock();
        inner.reload()?;
        let mut decisions = Vec::with_capacity(inner.ledger.sessions.len());
        let mut plan = SettlePlan::default();
        let time = now_ms();
        let host = scope.host.unwrap_or("");
        for s in inner.ledger.sessions.values() {
            if scope.only_on.is_some_and(|p| !s.rows.contains_key(p)) {
                continue;
            }
            let (outcome, acted, why) = match s.state() {
                SessionState::Completed | SessionState::Terminated(_) => {
                    settled(s, &mut plan, time)
                }
                SessionState::Active | SessionState::Resumed => {
                    let owner = inner.owner_of(s);
                    let (ours, restarted) = scope.owns(owner, s);
                    let program_ok = scope.program_ok(s);
                    if ours && program_ok && !scope.in_time(s) {
                        let why = "initiated after the event".to_string();
                        (Outcome::Untouched, false, why)
                    } else if ours && program_ok {
                        plan.add(s, EntryStatus::Terminated { reason }, time);
                        let mut why = match restarted {
                            Some(sub) if owner != host => format!(
                                "initiated and not completed, with a part on {sub}, which restarted; \
                                 terminated on {} subsystem(s)",
                                s.rows.len()
                            ),
                            _ => format!(
                                "initiated and not completed; terminated on {} subsystem(s)",
                                s.rows.len()
                            ),
                        };
                        if s.logically_complete {
                            why.push_str(
                                "; it was logically complete (serialization released), \
                                 so the backup must be taken again",
                            );
                        }
                        (Outcome::Terminated(reason), true, why)
                    } else if !ours {
                        let why = format!("owned by host {owner}, not {host}");
                        (Outcome::Untouched, false, why)
                    } else {
                        let why = format!(
                            "belongs to program {}, not {}",
                            s.program.as_deref().unwrap_or("(none)"),
                            scope.program.unwrap_or("")
                        );
                        (Outcome::Untouched, false, why)
                    }
                }
            };
            // A payment reports what it did on its peer, not every session there.
            if scope.only_on.is_none() || acted {
                decisions.push(decision(s, outcome, acted, why));
            }
        }
        let sweep: Vec<String> = match scope.only_on {
            Some(p) => vec![p.to_string()],
            None => inner.ports.keys().cloned().collect(),
        };
        // With no host (a payment that only settles), only decided sessions'
        // physical sessions are withdrawn.
        let report = inner.conclude(event, decisions, plan, Vec::new(), &sweep, host)?;
        drop(inner);
        // Withdraws may have broken sessions the event left alone, and an
        // earlier event may have left a broken one open (integrity.rs).
        self.close_broken(report)
    }
}

/// Decision for a session already completed or terminated (finishing it if interrupted).
fn settled(s: &SessionLedger, plan: &mut SettlePlan, time: u64) -> (Outcome, bool, String) {
    let unsettled = s.is_unsettled();
    match s.state() {
        SessionState::Terminated(reason) => {
            if unsettled {
                plan.add(s, EntryStatus::Terminated { reason }, time);
                (
                    Outcome::Terminated(reason),
                    true,
                    "finished an interrupted termination".into(),
                )
            } else {
                (
                    Outcome::Terminated(reason),
                    false,
                    "already terminated".into(),
                )
            }
        }
        _ => {
            if unsettled {
                plan.add(s, EntryStatus::Completed, time);
                (
                    Outcome::Untouched,
                    true,
                    "completed; finished an interrupted completion".into(),
                )
            } else {
                (Outcome::Untouched, false, "completed".into())
            }
        }
    }
}

pub(crate) fn decision(s: &SessionLedger, outcome: Outcome, acted: bool, why: String) -> Decision {
    Decision {
        session: s.id.clone(),
        host: s.host.clone(),
        program: s.program.clone(),
        outcome,
        acted,
        why,
    }
}

/// Compares what `port` reports for the session's physical session with the rows.
/// `Ok(Ok(..))`: match; `Ok(Err(why))`: mismatch; `Err`: the subsystem did not answer.
pub(crate) fn check_reset(
    s: &SessionLedger,
    subsystem: &str,
    port: &dyn SubsystemPort,
) -> Result<Result<(PhysSessionId, PhysicalSession), String>, RmError> {
    let phys_ids = s.phys_on(subsystem);
    let mut ids = phys_ids.iter();
    let phys = match (ids.next(), ids.next()) {
        (Some(p), None) => *p,
        _ => {
            let list: Vec<String> = phys_ids.iter().map(|p| p.to_string()).collect();
            return Ok(Err(format!(
                "rows on {subsystem} name physical ids {} (expected one)",
                list.join(",")
            )));
        }
    };
    let info = port.query(phys).map_err(port_err(subsystem, "query"))?;
    let Some(info) = info else {
        return Ok(Err(format!(
            "physical session {phys} no longer exists on {subsystem}"
        )));
    };
    if !s.owns(&info.owner, info.host.as_deref()) {
        return Ok(Err(format!(
            "physical session {phys} on {subsystem} now belongs to session {}",
            info.owner
        )));
    }
    match info.state {
        PhysState::Active | PhysState::Suspended => {}
        PhysState::TimedOut => {
            return Ok(Err(format!(
                "physical session {phys} on {subsystem} timed out"
            )))
        }
        PhysState::Failed => {
            return Ok(Err(format!(
                "physical session {phys} on {subsystem} failed (a map of it is stopped or its \
                 bitmap is offline)"
            )))
        }
    }
    let recorded: BTreeMap<&str, &ExtentSet> = s.rows[subsystem]
        .iter()
        .map(|(v, r)| (v.as_str(), &r.extents))
        .collect();
    let reported: BTreeMap<&str, &ExtentSet> = info
        .domain
        .iter()
        .filter(|(_, e)| !e.is_empty())
        .map(|(v, e)| (v.as_str(), e))
        .collect();
    if recorded != reported {
        let vols: std::collections::BTreeSet<&str> =
            recorded.keys().chain(reported.keys()).copied().collect();
        for v in vols {
            let (a, b) = (recorded.get(v), reported.get(v));
            if a != b {
                return Ok(Err(format!(
                    "volume {v} on {subsystem}: recorded extents {}, reported {}",
                    a.map_or("none".into(), |e| fmt_tracks(e)),
                    b.map_or("none".into(), |e| fmt_tracks(e)),
                )));
            }
        }
    }
    Ok(Ok((phys, info)))
}

/// Linear track ranges, `first-last,...` (`none` for the empty set).
pub fn fmt_tracks(set: &ExtentSet) -> String {
    if set.is_empty() {
        return "none".into();
    }
    set.extents()
        .iter()
        .map(|e| {
            if e.first == e.last {
                e.first.to_string()
            } else {
                format!("{}-{}", e.first, e.last)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn log_report(report: &Decisions) {
    for d in report.acted() {
        tracing::info!(event = %report.event, session = %d.session, outcome = %d.outcome, why = %d.why, "recovery decision");
    }
    for p in &report.problems {
        tracing::warn!(event = %report.event, problem = %p, "recovery incomplete");
    }
    for o in &report.orphans {
        tracing::info!(event = %report.event, subsystem = %o.subsystem, phys = %o.phys, owner = %o.owner, "orphan physical session withdrawn");
    }
}

impl Inner {
    /// The end of every event: carry out `plan` (entries, then withdraws),
    /// withdraw `host`'s orphans on the subsystems `sweep`, and report with
    /// `problems` met before.
    pub(crate) fn conclude(
        &mut self,
        event: Event,
        decisions: Vec<Decision>,
        plan: SettlePlan,
        mut problems: Vec<RmError>,
        sweep: &[String],
        host: &str,
    ) -> Result<Decisions, RmError> {
        problems.extend(self.execute(plan)?);
        let orphans = self.withdraw_orphans(sweep, host, &mut problems)?;
        let report = Decisions {
            event,
            decisions,
            orphans,
            problems: problems.iter().map(|e| e.to_string()).collect(),
        };
        log_report(&report);
        Ok(report)
    }

    /// Withdraws physical sessions on `subsystems` that no open row accounts for, except
    /// another host's whose session is not decided (no rows, or some open): that host may
    /// be establishing it right now (its rows follow the establish, one subsystem after
    /// the other), and that host's events withdraw it if its start never finished. (A
    /// session whose rows are all terminal is decided, so its physical sessions are
    /// withdrawn whoever owns them.) A physical session that
    /// names no host (established before hosts were recorded) counts as `host`'s. A
    /// subsystem that
    /// fails to answer or to withdraw is noted in `problems` and skipped (its orphans wait
    /// for the next event); only an injected crash stops it.
    pub(crate) fn withdraw_orphans(
        &mut self,
        subsystems: &[String],
        host: &str,
        problems: &mut Vec<RmError>,
    ) -> Result<Vec<OrphanWithdrawn>, RmError> {
        let mut out = Vec::new();
        for sub in subsystems {
            // A payment never sweeps this daemon's own subsystems: it runs
            // beside the daemon's requests, and a start there may be between
            // its establish and its rows (review). Its own events sweep them.
            if self.paying && self.ports.get(sub).is_some_and(|p| !p.is_remote()) {
                continue;
            }
            let port = self.port(sub)?;
            let held = match port.physical_sessions() {
                Ok(h) => h,
                Err(PortError::Crashed) => {
                    return Err(port_err(sub, "list sessions")(PortError::Crashed))
                }
                Err(e) => {
                    problems.push(port_err(sub, "list sessions")(e));
                    continue;
                }
            };
            for HeldSession {
                phys,
                owner,
                host: held_by,
            } in held
            {
                // Another host's physical session is withdrawn only once its
                // session is decided (it has rows, all terminal). One with no
                // rows, or with open rows on some subsystems and none here
                // yet, may be one it is establishing now: a spanning start
                // records one subsystem after the other (QA: a start that
                // had reported success was terminated image-lost).
                let mine: Vec<&SessionLedger> = self
                    .ledger
                    .with_id(&owner)
                    .filter(|s| s.owns(&owner, held_by.as_deref()))
                    .collect();
                let decided = !mine.is_empty() && mine.iter().all(|s| s.state().is_terminal());
                if held_by.as_deref().unwrap_or(&self.host) != host && !decided {
                    continue;
                }
                let accounted = mine.iter().any(|s| s.open_phys_on(sub).contains(&phys));
                if !accounted {
                    if let Err(e) = port.withdraw(&owner, phys) {
                        self.stale = true;
                        if e == PortError::Crashed {
                            return Err(port_err(sub, "withdraw")(e));
                        }
                        problems.push(port_err(sub, "withdraw")(e));
                        continue;
                    }
                    out.push(OrphanWithdrawn {
                        subsystem: sub.clone(),
                        phys,
                        owner: owner.clone(),
                    });
                }
            }
        }
        Ok(out)
    }
}
