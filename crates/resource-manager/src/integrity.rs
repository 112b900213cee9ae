//! The fixed point every event ends with: no open session whose image is
//! broken.
//!
//! Withdrawing a session force-stops its maps and every map that reads
//! through them, which may be the map of another session (one whose source
//! is the withdrawn session's target). A forced stop by an operator can do
//! the same. Such a session is no longer whole, whatever state its rows say.
//! So the restart events (IPL, resource-manager restart, abend) end with
//! passes of this check until one acts on nothing, and the daemon runs it
//! after any control request that may have stopped a session's map. A reset
//! notification has its own fixed point over the sessions with rows on the
//! notifying subsystem (withdraws there only stop maps there); it does not
//! judge sessions on other subsystems, which may be waiting for their own
//! notification, so the order of notifications never changes an outcome.
//!
//! Invariant (A6 in docs/SEMANTICS.md): when an event returns with no
//! problems, every session it leaves initiated or resumed has, on every
//! subsystem with its rows, its recorded physical session, owned by it, not
//! failed, reporting exactly the recorded extents. A session that is not is
//! terminated everywhere with reason `image-lost`.

use activity_table::{EntryStatus, SessionId, TerminateReason};

use crate::error::RmError;
use crate::ledger::SessionState;
use crate::manager::{now_ms, ResourceManager, SettlePlan};
use crate::recovery::{check_reset, decision};
use crate::report::{Decisions, Event, Outcome};

impl ResourceManager {
    /// Checks every open session against its subsystems and terminates
    /// (reason `image-lost`) each one whose physical session is gone, failed,
    /// or reports extents other than those recorded. Runs to a fixed point.
    pub fn check_sessions(&self) -> Result<Decisions, RmError> {
        self.pay_owed()?;
        self.close_broken(Decisions {
            event: Event::Check,
            decisions: Vec::new(),
            orphans: Vec::new(),
            problems: Vec::new(),
        })
    }

    /// `report` with the broken-session passes run after it until one acts
    /// on nothing; their decisions replace those of the same session.
    pub(crate) fn close_broken(&self, mut report: Decisions) -> Result<Decisions, RmError> {
        // Sessions the event itself terminated keep its reason, even when
        // an append of that termination failed (the session then still
        // looks open): the event, run again, finishes it with the same
        // reason, so a rerun decides what the first run decided.
        let decided: std::collections::BTreeSet<(SessionId, Option<String>)> = report
            .decisions
            .iter()
            .filter(|d| d.acted && matches!(d.outcome, Outcome::Terminated(_)))
            .map(|d| (d.session.clone(), d.host.clone()))
            .collect();
        // Each acting pass terminates at least one more session.
        let mut passes_left = self.lock().ledger.sessions.len() + 1;
        while passes_left > 0 {
            passes_left -= 1;
            let next = self.broken_pass(report.event.clone(), &decided)?;
            let acted = !next.orphans.is_empty() || next.decisions.iter().any(|d| d.acted);
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
            if !acted {
                break;
            }
        }
        report.decisions.sort_by(|a, b| a.session.cmp(&b.session));
        Ok(report)
    }

    fn broken_pass(
        &self,
        event: Event,
        decided: &std::collections::BTreeSet<(SessionId, Option<String>)>,
    ) -> Result<Decisions, RmError> {
        let mut inner = self.lock();
        inner.reload()?;
        let mut decisions = Vec::new();
        let mut plan = SettlePlan::default();
        let mut problems = Vec::new();
        let time = now_ms();
        let local = inner.local_subsystems();
        for s in inner.ledger.sessions.values() {
            if !matches!(s.state(), SessionState::Active | SessionState::Resumed)
                || decided.contains(&(s.id.clone(), s.host.clone()))
            {
                continue;
            }
            // Another host's session that lives only on peers is their
            // daemons' to judge.
            if inner.owner_of(s) != inner.host && !s.rows.keys().any(|sub| local.contains(sub)) {
                continue;
            }
            for sub in s.rows.keys() {
                let port = inner.port(sub)?;
                match check_reset(s, sub, port.as_ref()) {
                    Ok(Ok(_)) => {}
                    Ok(Err(why)) => {
                        let reason = TerminateReason::ImageLost;
                        plan.add(s, EntryStatus::Terminated { reason }, time);
                        let why = format!("{why}; terminated on {} subsystem(s)", s.rows.len());
                        decisions.push(decision(s, Outcome::Terminated(reason), true, why));
                        break;
                    }
                    Err(e) if e.is_crash() => return Err(e),
                    // Unreachable now: checked again by the next event.
                    Err(e) => problems.push(e),
                }
            }
        }
        let sweep = inner.local_subsystems();
        let host = inner.host.clone();
        inner.conclude(event, decisions, plan, problems, &sweep, &host)
    }
}
