//! What a host's resource manager owes the peers that did not answer.
//!
//! A recovery event, or a `session terminate`, goes on over the subsystems
//! that answer (`ResourceManager::over_answering`). What it decided cannot
//! reach a silent peer: its rows stay open there and its physical sessions
//! keep copying, and a session whose every part is on that peer is out of
//! the event's sight entirely. Likewise a start whose establish on a peer
//! got no answer may have left a physical session there that nobody else
//! knows of. So the manager records a *debt* to each such peer, and pays it
//! once the peer answers: it runs the event again, restricted to the
//! sessions with rows on that peer (and, for a restart event, the host's
//! orphan physical sessions there), or withdraws what the unanswered
//! establish made.
//!
//! Invariants:
//! - D1: a debt is removed only once a payment reached its peer and the
//!   peer then shows it paid: no open row there of a session the event
//!   decided or had in its scope, and no physical session there that the
//!   debt covers and no open row accounts for (checked by reading the peer
//!   again, not assumed from the calls that succeeded);
//! - D2: a peer owed a restart event is asked nothing, by any request of
//!   the managers sharing the debts, but the payment
//!   (`Inner::usable`: it is refused as [`PortError::Owed`], so events go
//!   on without it and other requests fail naming the debt). So a session
//!   the event ended is never completed, resumed or listed as open from
//!   this daemon in between. A payment ends only sessions initiated before
//!   the debt was recorded (by their rows' time), so a session started
//!   afterwards (by another daemon for the same host) is not the event's.
//!   Requests pay first what they can at once ([`ResourceManager::pay_owed`]);
//!   the daemon's payer task pays the rest ([`ResourceManager::pay_owed_now`]);
//! - D3: debts are the one thing the manager keeps that the activity tables
//!   do not say. They are volatile: shared by every manager a daemon builds
//!   ([`ResourceManager::with_owed`]) and lost only with the process. The
//!   daemon's next boot is an IPL event of the same host, whose scope covers
//!   every debt it lost (what a restart event ends, an IPL ends too, and an
//!   unanswered establish's physical session is an orphan the IPL sweeps),
//!   and which is owed in turn to each peer still silent then;
//! - payments are idempotent (A5): paying a debt twice, or a debt whose
//!   peer rebooted since (its IPL already ended those sessions), decides
//!   nothing new;
//! - payments never sweep this daemon's own subsystems (a start there may be
//!   between its establish and its rows; the daemon's own events sweep
//!   them), and a start is refused while a withdraw of an earlier start of
//!   the same id is owed;
//! - a debt recorded for a peer while a payment to it runs (and absorbed by
//!   the debt being paid) keeps that debt for another payment.
//!
//! Limits (docs/SESSIONS.md): a restart payment's sweep of the peer may
//! withdraw a physical session another daemon is establishing there for
//! this same host (`--host`) at that moment, as any restart event's sweep
//! may; D3 covers this daemon's own host only, so debts of events run for
//! another host (`--host`) are lost with the process; a request that runs
//! while an event is still trying peers, before it records its debts, is
//! not refused; and a peer that answers again does not know of the debt,
//! so its own daemon may act on the session before this manager pays: a reset
//! notification there may resume it (the payment then terminates it), a
//! completion there completes it (a Completed row wins).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use activity_table::{SessionId, TerminateReason};

use crate::error::RmError;
use crate::ledger::{SessionKey, SessionState};
use crate::manager::ResourceManager;
use crate::port::{PhysState, PortError};
use crate::recovery::{Scope, NOT_JUDGED};
use crate::report::{Decisions, Event, OrphanWithdrawn};

/// How long a request leaves a peer whose payment failed to the daemon's
/// payer task before it tries to pay it itself again.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// One thing owed to a peer (see the module docs).
#[derive(Clone, PartialEq, Eq, Debug)]
enum Debt {
    /// A restart event of `host` that `peer` missed: its sessions in scope
    /// with rows there are terminated, the host's orphans there withdrawn.
    Restart {
        peer: String,
        event: Event,
        host: String,
        reason: TerminateReason,
        program: Option<String>,
        /// When it was recorded (ms since the epoch): sessions initiated
        /// later are not the event's (QA: a session another daemon started
        /// for this host while the peer was cut off from this one was ended
        /// by the payment).
        before_ms: u64,
    },
    /// A request that decided sessions without `peer` (a reset, a check, a
    /// terminate): the open rows there of decided sessions are settled.
    Settle { peer: String, what: String },
    /// A reset notification from `subsystem` that ran without `peer` and so
    /// left `sessions` unjudged (suspended): judged once the peer answers.
    Judge {
        peer: String,
        subsystem: String,
        sessions: Vec<SessionKey>,
    },
    /// An establish on `peer` for `session` of `host` that got no answer:
    /// a physical session it made there is withdrawn.
    Withdraw {
        peer: String,
        session: SessionId,
        host: String,
    },
}

impl Debt {
    fn peer(&self) -> &str {
        match self {
            Debt::Restart { peer, .. }
            | Debt::Settle { peer, .. }
            | Debt::Judge { peer, .. }
            | Debt::Withdraw { peer, .. } => peer,
        }
    }

    /// What was missed, without the peer (`rm-restart on host SYS1`).
    fn missed(&self) -> String {
        match self {
            Debt::Restart { event, .. } => event.to_string(),
            Debt::Settle { what, .. } => format!("the rows of sessions decided by {what}"),
            Debt::Judge {
                subsystem,
                sessions,
                ..
            } => {
                let ids: Vec<String> = sessions.iter().map(|k| k.id.to_string()).collect();
                format!(
                    "the judgment of session(s) {} after the reset notification from {subsystem}",
                    ids.join(", ")
                )
            }
            Debt::Withdraw { session, .. } => {
                format!("the withdraw of session {session}'s unanswered establish")
            }
        }
    }

    /// The restart event's scope on the peer and the reason it writes, for
    /// a debt paid by running one: a restart debt ends what its event would
    /// have there; a settle debt ends nothing (no host, so its reason is
    /// never written) and settles what is decided.
    fn scope(&self) -> Option<(Scope<'_>, TerminateReason)> {
        match self {
            Debt::Restart {
                peer,
                host,
                reason,
                program,
                before_ms,
                ..
            } => Some((
                Scope {
                    host: Some(host),
                    program: program.as_deref(),
                    restarted: &[],
                    only_on: Some(peer),
                    initiated_by: Some(*before_ms),
                },
                *reason,
            )),
            Debt::Settle { peer, .. } => Some((
                Scope {
                    host: None,
                    program: None,
                    restarted: &[],
                    only_on: Some(peer),
                    initiated_by: None,
                },
                TerminateReason::ImageLost,
            )),
            Debt::Judge { .. } | Debt::Withdraw { .. } => None,
        }
    }

    /// What is owed to whom (`rm-restart on host SYS1, owed to SS02`).
    fn describe(&self) -> String {
        format!("{}, owed to {}", self.missed(), self.peer())
    }
}

/// The debts of one daemon's resource managers (shared across their
/// restarts; see D3).
#[derive(Default)]
pub struct Owed {
    debts: Mutex<Vec<Debt>>,
    /// Held by the one manager paying, so two requests never pay (and sweep
    /// orphans on a peer) at once.
    paying: Mutex<()>,
    /// Reports of payments not yet taken by [`ResourceManager::take_payments`].
    paid: Mutex<Vec<Decisions>>,
    /// When a payment to each peer last failed (see [`RETRY_AFTER`]).
    failed: Mutex<BTreeMap<String, Instant>>,
    /// Bumped on every debt recorded for a peer, also one absorbed by a debt
    /// already there: a payment removes its debt only if no debt came for
    /// that peer while it ran (review: a terminate's settle debt, absorbed
    /// by a restart debt being paid, was lost with it).
    recorded: Mutex<BTreeMap<String, u64>>,
}

impl Owed {
    /// Whether nothing is owed.
    pub fn is_empty(&self) -> bool {
        self.debts.lock().is_empty()
    }

    /// One line per debt, oldest first: what is owed and to which peer.
    pub fn lines(&self) -> Vec<String> {
        self.debts.lock().iter().map(Debt::describe).collect()
    }

    /// The peers owed something, each once.
    pub fn peers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .debts
            .lock()
            .iter()
            .map(|d| d.peer().to_string())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether a payment to `peer` failed less than [`RETRY_AFTER`] ago.
    fn backing_off(&self, peer: &str) -> bool {
        self.failed
            .lock()
            .get(peer)
            .is_some_and(|t| t.elapsed() < RETRY_AFTER)
    }

    /// The restart event owed to `peer`, if any: until it is paid, only the
    /// manager paying it may ask that peer anything (D2).
    pub fn blocks(&self, peer: &str) -> Option<String> {
        self.debts
            .lock()
            .iter()
            .find(|d| matches!(d, Debt::Restart { peer: p, .. } if p == peer))
            .map(Debt::describe)
    }

    /// Whether an unanswered establish of `session` of `host` is owed a
    /// withdraw, and to which peer.
    pub(crate) fn withdraw_pending(&self, session: &SessionId, host: &str) -> Option<String> {
        self.debts.lock().iter().find_map(|d| match d {
            Debt::Withdraw {
                peer,
                session: s,
                host: h,
            } if s == session && h == host => Some(peer.clone()),
            _ => None,
        })
    }

    /// Records that `peer` does not answer now (the daemon's probe): the
    /// requests that follow leave its debts to the payer task for
    /// [`RETRY_AFTER`] (QA: each request after the backoff called the hung
    /// peer for the whole timeout, an IPL included).
    pub fn silent(&self, peer: &str) {
        self.failed.lock().insert(peer.to_string(), Instant::now());
    }

    /// How many debts were recorded for `peer` so far.
    fn recorded_for(&self, peer: &str) -> u64 {
        self.recorded.lock().get(peer).copied().unwrap_or(0)
    }

    fn add(&self, debt: Debt) {
        // `recorded` is bumped under `debts`, so that a payment's check and
        // removal (also under `debts`) never miss a debt absorbed meanwhile.
        let mut debts = self.debts.lock();
        *self
            .recorded
            .lock()
            .entry(debt.peer().to_string())
            .or_default() += 1;
        if debts.contains(&debt) {
            return;
        }
        // The same restart event owed again (a second rm-restart while the
        // peer is silent) is one debt, covering what began before the later.
        if let Debt::Restart {
            peer,
            event,
            host,
            reason,
            program,
            before_ms,
        } = &debt
        {
            let same = debts.iter_mut().find_map(|d| match d {
                Debt::Restart {
                    peer: p,
                    event: e,
                    host: h,
                    reason: r,
                    program: g,
                    before_ms: b,
                } if p == peer && h == host && r == reason && g == program => Some((e, b)),
                _ => None,
            });
            if let Some((e, b)) = same {
                *e = event.clone();
                *b = (*b).max(*before_ms);
                return;
            }
        }
        // Paying any restart or settle debt settles every decided session
        // with rows on the peer: one is enough.
        if let Debt::Settle { peer, .. } = &debt {
            if debts.iter().any(|d| {
                matches!(d, Debt::Restart { peer: p, .. } | Debt::Settle { peer: p, .. } if p == peer)
            }) {
                return;
            }
        }
        tracing::warn!(debt = %debt.describe(), "owed to a peer that did not answer; paid once it answers");
        debts.push(debt);
    }

    /// Removes `debt` once paid, unless a debt was recorded for its peer
    /// since `recorded` (it may have been absorbed by this one).
    fn remove_paid(&self, debt: &Debt, recorded: u64) {
        let mut debts = self.debts.lock();
        if self.recorded_for(debt.peer()) == recorded {
            debts.retain(|d| d != debt);
        }
    }
}

impl ResourceManager {
    /// Records that `peer` missed the event `d` reports (it did not answer):
    /// a restart event of a host is owed to it, and so are the rows of the
    /// sessions the event decided.
    /// `began` is when the event began (ms since the epoch): sessions
    /// initiated after it are not the event's.
    pub(crate) fn owe_event(&self, peer: &str, d: &Decisions, began: u64) {
        let (host, reason, program) = match &d.event {
            Event::Ipl { host, .. } => (host, TerminateReason::Ipl, None),
            Event::RmRestart { host } => (host, TerminateReason::RmRestart, None),
            Event::Abend { host, program } => (host, TerminateReason::Abend, Some(program.clone())),
            Event::Reset { subsystem } => {
                let sessions: Vec<SessionKey> = d
                    .decisions
                    .iter()
                    .filter(|x| x.why.starts_with(NOT_JUDGED))
                    .map(|x| SessionKey {
                        id: x.session.clone(),
                        host: x.host.clone(),
                    })
                    .collect();
                if !sessions.is_empty() {
                    self.owed.add(Debt::Judge {
                        peer: peer.to_string(),
                        subsystem: subsystem.clone(),
                        sessions,
                    });
                }
                return self.owe_decided(peer, d);
            }
            _ => return self.owe_decided(peer, d),
        };
        self.owed.add(Debt::Restart {
            peer: peer.to_string(),
            event: d.event.clone(),
            host: host.clone(),
            reason,
            program,
            before_ms: began,
        });
    }

    /// Records that `peer` missed the event `d` reports, if it decided
    /// anything: the open rows there of what it decided are settled.
    fn owe_decided(&self, peer: &str, d: &Decisions) {
        if d.ended_something() {
            self.owe_settle(peer, &d.event.to_string());
        }
    }

    /// Records that `peer` missed `what`, which decided sessions: their open
    /// rows there are settled once it answers.
    pub(crate) fn owe_settle(&self, peer: &str, what: &str) {
        self.owed.add(Debt::Settle {
            peer: peer.to_string(),
            what: what.to_string(),
        });
    }

    /// Records that an establish on `peer` for `session` of `host` got no
    /// answer and what it made there could not be withdrawn yet.
    pub(crate) fn owe_withdraw(&self, peer: &str, session: &SessionId, host: &str) {
        self.owed.add(Debt::Withdraw {
            peer: peer.to_string(),
            session: session.clone(),
            host: host.to_string(),
        });
    }

    /// The refusal of a start of `session` by `host` while an earlier start
    /// of it owes a peer the withdraw of its unanswered establish.
    pub fn refuse_retry(&self, session: &SessionId, host: &str) -> Option<RmError> {
        let peer = self.owed.withdraw_pending(session, host)?;
        Some(RmError::Owed {
            what: format!("session {session}"),
            problem: format!(
                "an earlier start of it got no answer from {peer}, which is owed the withdraw \
                 of what it may have established; start it again once that is paid (GET \
                 /health no longer lists it)"
            ),
        })
    }

    /// What this manager owes peers that did not answer, one line each.
    pub fn owed(&self) -> Vec<String> {
        self.owed.lines()
    }

    /// The reports of the payments made since the last call (each an event
    /// run again on a peer that missed it), oldest first.
    pub fn take_payments(&self) -> Vec<Decisions> {
        std::mem::take(&mut *self.owed.paid.lock())
    }

    /// Pays, before a request, what can be paid at once (D2 holds without
    /// it: a peer owed a restart event is refused to every request until it
    /// is paid; this only spares the caller that refusal once the peer
    /// answers). Never waits: not while another request or the daemon's
    /// payer pays, and not on a peer whose last payment failed less than
    /// [`RETRY_AFTER`] ago (it may be hung, and its call would take the
    /// whole timeout: QA, a terminate of a local session waited 31 s
    /// behind it); the daemon's payer retries those. Only an injected crash
    /// is returned as an error.
    pub fn pay_owed(&self) -> Result<(), RmError> {
        if self.owed.is_empty() {
            return Ok(());
        }
        let Some(paying) = self.owed.paying.try_lock() else {
            return Ok(());
        };
        self.pay_all(paying, false, &[])
    }

    /// Pays every debt whose peer this manager reaches and that answers now,
    /// waiting for a payment in progress and for silent peers' calls: for
    /// the daemon's payer task (every few seconds). A peer still silent
    /// keeps its debts. Only an injected crash is returned as an error.
    /// Peers in `skip` are left for the next round (the daemon leaves out
    /// those that do not answer a short probe, so that the payment never
    /// waits out a hung peer's call timeout).
    pub fn pay_owed_now(&self, skip: &[String]) -> Result<(), RmError> {
        if self.owed.is_empty() {
            return Ok(());
        }
        let paying = self.owed.paying.lock();
        self.pay_all(paying, true, skip)
    }

    fn pay_all(
        &self,
        _paying: MutexGuard<'_, ()>,
        retry_now: bool,
        skip: &[String],
    ) -> Result<(), RmError> {
        // A manager that went on without a peer pays nothing: its view is
        // partial, and the manager it was built from pays (review).
        if !self.lock().left_out.is_empty() {
            return Ok(());
        }
        // Restart debts first: until one is paid the peer is refused to
        // every request, and another debt of the same peer that cannot be
        // paid yet (a judgment waiting for a third peer) must not hold it up.
        let mut debts = self.owed.debts.lock().clone();
        debts.sort_by_key(|d| !matches!(d, Debt::Restart { .. }));
        let mut failed_now: Vec<String> = skip.to_vec();
        let reach = self.subsystems();
        // A manager of its own that may ask the peers it pays. It goes on
        // over the subsystems that answer, as events do, and leaves out the
        // peers the daemon's probe found silent (so that it never waits on
        // their call timeout); both are owed the rows of what it decides.
        let payer = self.without(skip)?;
        payer.lock().paying = true;
        for debt in debts {
            let peer = debt.peer();
            if !reach.iter().any(|s| s == peer)
                || failed_now.iter().any(|f| f == peer)
                || (!retry_now && self.owed.backing_off(peer))
            {
                continue;
            }
            let recorded = self.owed.recorded_for(peer);
            let what = format!("a payment to {peer}");
            match payer.answering(&what, |rm| rm.pay(&debt)) {
                Ok((report, _, skipped)) => {
                    for other in skipped.iter().chain(skip) {
                        self.owe_settle(other, &format!("the payment of {}", debt.describe()));
                    }
                    self.owed.paid.lock().push(report);
                    // A debt recorded for the peer meanwhile may have been
                    // absorbed by this one: then it stays, to be paid again.
                    self.owed.remove_paid(&debt, recorded);
                    self.owed.failed.lock().remove(peer);
                    tracing::info!(debt = %debt.describe(), "paid");
                }
                Err(e) if e.is_crash() => return Err(e),
                Err(e) => {
                    // When the peer itself did not answer, its other debts
                    // wait for the next round, and requests leave it to the
                    // payer task for a while.
                    if silent_peer(&e, peer) {
                        failed_now.push(peer.to_string());
                        self.owed.silent(peer);
                    }
                    tracing::debug!(debt = %debt.describe(), error = %e, "not paid yet");
                }
            }
        }
        Ok(())
    }

    /// Pays one debt; `Ok` once the peer shows it paid (D1), with the
    /// report of what the payment did (an empty one when an event there,
    /// such as the peer's own IPL, had already done it).
    fn pay(&self, debt: &Debt) -> Result<Decisions, RmError> {
        let owed = Event::Owed {
            to: debt.peer().to_string(),
            missed: debt.missed(),
        };
        let report = match debt {
            Debt::Restart { .. } | Debt::Settle { .. } => {
                // Both have a scope (`Debt::scope`); an error, not a panic,
                // should that ever change.
                let Some((scope, reason)) = debt.scope() else {
                    return Err(RmError::Incomplete {
                        what: debt.describe(),
                        problem: "the debt names no scope to end".to_string(),
                    });
                };
                self.restart_event(owed, reason, scope)?
            }
            Debt::Judge {
                subsystem,
                sessions,
                ..
            } => {
                let mut report = self.reset_event(subsystem, Some(sessions))?;
                report.event = owed;
                report
            }
            Debt::Withdraw {
                peer,
                session,
                host,
            } => Decisions {
                event: owed,
                decisions: Vec::new(),
                orphans: self.withdraw_unaccounted(peer, session, host)?,
                problems: Vec::new(),
            },
        };
        self.check_paid(debt)?;
        Ok(report)
    }

    /// Withdraws the physical sessions of `session` of `host` on `peer`
    /// that no open row accounts for, and names them.
    fn withdraw_unaccounted(
        &self,
        peer: &str,
        session: &SessionId,
        host: &str,
    ) -> Result<Vec<OrphanWithdrawn>, RmError> {
        let mut inner = self.lock();
        inner.reload()?;
        let port = inner.port(peer)?;
        let key = SessionKey {
            id: session.clone(),
            host: Some(host.to_string()),
        };
        let held = port
            .physical_sessions()
            .map_err(crate::manager::port_err(peer, "list sessions"))?;
        let mut out = Vec::new();
        let mine = |h: &&crate::port::HeldSession| {
            &h.owner == session && h.host.as_deref().unwrap_or(&inner.host) == host
        };
        for h in held.iter().filter(mine) {
            let accounted = inner
                .ledger
                .sessions
                .get(&key)
                .is_some_and(|s| s.open_phys_on(peer).contains(&h.phys));
            if !accounted {
                match port.withdraw(session, h.phys) {
                    Ok(()) | Err(PortError::Gone { .. }) => out.push(OrphanWithdrawn {
                        subsystem: peer.to_string(),
                        phys: h.phys,
                        owner: session.clone(),
                    }),
                    Err(e) => return Err(crate::manager::port_err(peer, "withdraw")(e)),
                }
            }
        }
        Ok(out)
    }

    /// D1: reads the peer again and fails unless it shows `debt` paid.
    fn check_paid(&self, debt: &Debt) -> Result<(), RmError> {
        let mut inner = self.lock();
        inner.reload()?;
        let peer = debt.peer();
        let port = inner.port(peer)?;
        let unpaid = |what: String| RmError::Incomplete {
            what: debt.describe(),
            problem: what,
        };
        if let Debt::Judge {
            subsystem,
            sessions,
            ..
        } = debt
        {
            // Judged only over a whole view (review: over a partial one it
            // judged nothing, and a session whose physical session had failed
            // meanwhile passed for judged).
            if !inner.left_out.is_empty() {
                return Err(unpaid(format!(
                    "{} did not answer, so nothing was judged",
                    inner.left_out.join(", ")
                )));
            }
            // Judged: ended, or its physical session there runs again.
            let there = inner.port(subsystem)?;
            for s in sessions.iter().filter_map(|k| inner.ledger.sessions.get(k)) {
                if s.state().is_terminal() {
                    continue;
                }
                for phys in s.open_phys_on(subsystem) {
                    let info = there
                        .query(phys)
                        .map_err(crate::manager::port_err(subsystem, "query"))?;
                    if !info.is_some_and(|i| i.state == PhysState::Active) {
                        return Err(unpaid(format!(
                            "session {} does not run again on {subsystem}",
                            s.id
                        )));
                    }
                }
            }
            return Ok(());
        }
        for s in inner
            .ledger
            .sessions
            .values()
            .filter(|s| s.rows.contains_key(peer))
            // A withdraw settles no rows (review: a Withdraw debt waited on
            // an unrelated session's rows).
            .filter(|_| !matches!(debt, Debt::Withdraw { .. }))
        {
            let open_here = s.open_rows().any(|(sub, _, _)| sub == peer);
            let state = s.state();
            let in_scope = debt
                .scope()
                .is_some_and(|(sc, _)| sc.ends(inner.owner_of(s), s));
            if open_here
                && (state.is_terminal()
                    || (in_scope && matches!(state, SessionState::Active | SessionState::Resumed)))
            {
                return Err(unpaid(format!(
                    "session {} still has open rows on {peer}",
                    s.id
                )));
            }
        }
        let (sweep_host, only): (Option<&str>, Option<&SessionId>) = match debt {
            Debt::Restart { host, .. } => (Some(host), None),
            Debt::Withdraw { host, session, .. } => (Some(host), Some(session)),
            Debt::Settle { .. } | Debt::Judge { .. } => (None, None),
        };
        let Some(sweep_host) = sweep_host else {
            return Ok(());
        };
        let held = port
            .physical_sessions()
            .map_err(crate::manager::port_err(peer, "list sessions"))?;
        for h in held {
            if h.host.as_deref().unwrap_or(&inner.host) != sweep_host
                || only.is_some_and(|id| *id != h.owner)
            {
                continue;
            }
            let accounted = inner
                .ledger
                .with_id(&h.owner)
                .filter(|s| s.owns(&h.owner, h.host.as_deref()))
                .any(|s| s.open_phys_on(peer).contains(&h.phys));
            if !accounted {
                return Err(unpaid(format!(
                    "physical session {} of session {} on {peer} has no open row",
                    h.phys, h.owner
                )));
            }
        }
        Ok(())
    }
}

/// Whether `e` says that `peer` did not answer (or was left out of the
/// payer's view because it did not).
fn silent_peer(e: &RmError, peer: &str) -> bool {
    match e {
        RmError::Port {
            subsystem, source, ..
        } => subsystem == peer && source.is_silence(),
        RmError::UnknownSubsystem { subsystem } => subsystem == peer,
        _ => false,
    }
}
