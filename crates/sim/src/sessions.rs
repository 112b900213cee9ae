//! Backup copy sessions (patent A) in the controller world, driven through
//! the real resource manager over its controller port, with the session part
//! of IPL-1 (docs/RELIABILITY.md) checked after every recovery event, using
//! the session invariants of docs/SEMANTICS.md, "Invariants (A)":
//! - A1: after an IPL, resource-manager restart or reset notification no
//!   session in scope is left active (initiated, not completed, not resumed);
//!   after an abend, none of that program's;
//! - A2: a completed session is never terminated, a terminated one never resumed;
//! - A5: running the same event again changes nothing (every decision
//!   `acted == false`, same outcomes) — unless the first run reported
//!   problems (an activity-table append or a withdraw failed): then its
//!   decisions are not all carried out, the second run may act on them again
//!   (same outcomes), and sessions it could not settle may stay active until
//!   a later event, and a session the first run left untouched may be
//!   terminated (image-lost) by the rerun when the withdraws it completes
//!   break that session's image;
//! - nothing half-way: no physical session serves a terminated or completed
//!   session, and every open (active or resumed) session still has its
//!   physical session.
//!
//! A subsystem crash followed by IPL reaches the resource manager as a reset
//! notification from that subsystem.

use std::collections::BTreeMap;
use std::sync::Arc;

use geometry::{Extent, ExtentSet};
use resource_manager::{
    ControllerPort, Decisions, Outcome, ResourceManager, RmError, SessionExtent, SessionId,
    SessionSpec, SessionState, SubsystemPort,
};

use crate::check::{Invariant, Violation};
use crate::controller_world::ControllerWorld;
use crate::workload::HostEvent;

/// The resource manager of the world and what the sim knows of its sessions.
pub(crate) struct Sessions {
    pub(crate) port: Arc<ControllerPort>,
    pub(crate) rm: ResourceManager,
    pub(crate) ids: Vec<String>,
    pub(crate) last: BTreeMap<String, SessionState>,
}

fn rm_err(e: RmError) -> String {
    e.to_string()
}

impl ControllerWorld {
    /// `text` with the run's temporary data directory replaced by `$DATA`:
    /// errors name table files, and the trace must not depend on where the
    /// directory happens to be (determinism check).
    fn scrub(&self, text: String) -> String {
        let dir = self.dir.path().display().to_string();
        if dir.is_empty() {
            return text;
        }
        text.replace(&dir, "$DATA")
    }
}

impl Sessions {
    pub(crate) fn new(sub: controller::Subsystem) -> Result<Sessions, String> {
        let port = Arc::new(ControllerPort::new(sub));
        let rm =
            ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).map_err(rm_err)?;
        Ok(Sessions {
            port,
            rm,
            ids: Vec::new(),
            last: BTreeMap::new(),
        })
    }
}

/// Which sessions an event must settle.
enum Scope {
    All,
    Program(String),
}

impl ControllerWorld {
    pub(crate) fn start_session(
        &mut self,
        source: usize,
        target: usize,
        first: u64,
        tracks: u64,
        program: u8,
    ) -> Result<String, Violation> {
        let flushed = self.host_flush(source)?;
        if flushed != "ok" {
            return Ok(format!("source flush failed: {flushed}"));
        }
        let Some(s) = self.sessions.as_mut() else {
            return Ok("n/a (no resource manager)".into());
        };
        let id = format!("S{}", s.ids.len());
        let Some(extent) = Extent::new(first, first + tracks - 1) else {
            return Ok("empty extent".into());
        };
        let spec = SessionSpec {
            id: SessionId::new(id.clone())
                .map_err(|e| Violation::new(Invariant::Ipl1, e.to_string()))?,
            program: format!("P{program}"),
            host: None,
            copy_rate: None,
            extents: vec![SessionExtent {
                subsystem: self.config.id.clone(),
                volume: self.names[source].clone(),
                extents: ExtentSet::from_iter([extent]),
                target: self.names[target].clone(),
            }],
        };
        s.ids.push(id.clone());
        match s.rm.start_session(&spec) {
            Ok(phys) => {
                self.model.snapshot_tracks(source, target, first, tracks);
                for info in self.sub()?.physical_sessions() {
                    if info.session == id {
                        for m in info.maps {
                            self.ends.insert(m, (source, target));
                        }
                    }
                }
                Ok(format!("ok {id} phys {phys:?}"))
            }
            Err(e) => Ok(format!("rejected {id}: {}", self.scrub(rm_err(e)))),
        }
    }

    pub(crate) fn complete_session(&mut self, slot: usize) -> Result<String, Violation> {
        let Some(s) = self.sessions.as_mut() else {
            return Ok("n/a".into());
        };
        let Some(id) = s.ids.get(slot).cloned() else {
            return Ok("no such session".into());
        };
        let sid = SessionId::new(id.clone())
            .map_err(|e| Violation::new(Invariant::Ipl1, e.to_string()))?;
        let done = s.rm.complete_session(&sid);
        Ok(match done {
            Ok(()) => format!("ok {id}"),
            Err(e) => format!("rejected {id}: {}", self.scrub(rm_err(e))),
        })
    }

    /// A host event: resource-manager restart (a new manager over the same
    /// subsystem), host IPL, or a program's abend.
    pub(crate) fn host_event(&mut self, event: HostEvent) -> Result<String, Violation> {
        if self.sessions.is_none() {
            return Ok("n/a".into());
        }
        match event {
            HostEvent::RmRestart => {
                if let Some(s) = self.sessions.as_mut() {
                    s.rm = ResourceManager::new(vec![s.port.clone() as Arc<dyn SubsystemPort>])
                        .map_err(|e| {
                            Violation::new(Invariant::Ipl1, format!("new resource manager: {e}"))
                        })?;
                }
                self.stats.rm_restarts += 1;
                self.rm_event(Scope::All, |rm| rm.on_rm_restart())
            }
            HostEvent::HostIpl => self.rm_event(Scope::All, |rm| rm.on_ipl()),
            HostEvent::Abend(p) => {
                self.stats.abends += 1;
                let program = format!("P{p}");
                self.rm_event(Scope::Program(program.clone()), move |rm| {
                    rm.on_abend(&program)
                })
            }
        }
    }

    /// The subsystem came back from a crash or reset: tell the resource
    /// manager (installing the new handle first).
    pub(crate) fn notify_reset(&mut self) -> Result<String, Violation> {
        let Some(sub) = self.sub.clone() else {
            return Ok(String::new());
        };
        let Some(s) = self.sessions.as_mut() else {
            return Ok(String::new());
        };
        s.port.replace(sub);
        let id = self.config.id.clone();
        self.rm_event(Scope::All, move |rm| rm.on_reset(&id))
    }

    fn rm_event(
        &mut self,
        scope: Scope,
        run: impl Fn(&ResourceManager) -> Result<Decisions, RmError>,
    ) -> Result<String, Violation> {
        let Some(s) = self.sessions.as_ref() else {
            return Ok(String::new());
        };
        let first = match run(&s.rm) {
            Ok(d) => d,
            Err(e) => return Ok(format!("recovery failed: {}", self.scrub(rm_err(e)))),
        };
        // Problems (a failed append or withdraw) mean the first run could not
        // carry out every decision: the second run retries them (module doc).
        let incomplete = !first.problems.is_empty();
        let second = run(&s.rm);
        let list = s.rm.list_sessions();
        let last = s.last.clone();
        self.stats.checked(Invariant::Ipl1);
        // A5: the same event again changes nothing.
        if let Ok(second) = second {
            for d in &second.decisions {
                let before = first.get(d.session.as_str()).map(|x| x.outcome);
                // A first run with problems left withdraws undone; the rerun
                // carries them out, and a session whose image that breaks
                // (it read through a withdrawn session's target) is decided
                // by it: untouched, then terminated(image-lost). Seeds
                // 300068341, 300140076, 300626839, 300982202.
                let completed_breaks = incomplete
                    && before == Some(Outcome::Untouched)
                    && d.outcome
                        == Outcome::Terminated(resource_manager::TerminateReason::ImageLost);
                if (d.acted && !incomplete)
                    || (before.is_some_and(|o| o != d.outcome) && !completed_breaks)
                {
                    return Err(Violation::new(
                        Invariant::Ipl1,
                        format!(
                            "recovery is not idempotent for session {}: second run {} (acted {}), first run {} (problems: {})",
                            d.session,
                            d.outcome,
                            d.acted,
                            before.map_or_else(|| "-".to_string(), |o| o.to_string()),
                            first.problems.len()
                        ),
                    ));
                }
            }
        }
        let list =
            list.map_err(|e| Violation::new(Invariant::Ipl1, format!("list sessions: {e}")))?;
        let phys = self.sub()?.physical_sessions();
        let mut now = BTreeMap::new();
        for info in &list {
            let id = info.id.as_str().to_string();
            let in_scope = match &scope {
                Scope::All => true,
                Scope::Program(p) => info.program.as_deref() == Some(p.as_str()),
            };
            if in_scope && info.state == SessionState::Active && !incomplete {
                return Err(Violation::new(
                    Invariant::Ipl1,
                    format!("session {id} left active (half-way) after recovery"),
                ));
            }
            match (last.get(&id), info.state) {
                (Some(SessionState::Completed), st) if st != SessionState::Completed => {
                    return Err(Violation::new(
                        Invariant::Ipl1,
                        format!("completed session {id} became {}", st.name()),
                    ));
                }
                (
                    Some(SessionState::Terminated(_)),
                    SessionState::Resumed | SessionState::Active,
                ) => {
                    return Err(Violation::new(
                        Invariant::Ipl1,
                        format!("terminated session {id} came back"),
                    ));
                }
                _ => {}
            }
            let has_phys = phys.iter().any(|p| p.session == id);
            if info.state.is_terminal() && has_phys {
                self.known(Violation::new(
                    Invariant::Ipl1,
                    format!(
                        "session {id} is {} but its physical session remains",
                        info.state.name()
                    ),
                ))?;
            }
            // Every event ends with the broken-session fixed point (the
            // resource manager's integrity.rs): an open session always has
            // its physical session.
            if info.state == SessionState::Active && !has_phys && !incomplete {
                return Err(Violation::new(
                    Invariant::Ipl1,
                    format!("session {id} left active without a physical session"),
                ));
            }
            if info.state == SessionState::Resumed && !has_phys {
                return Err(Violation::new(
                    Invariant::Ipl1,
                    format!("session {id} resumed without a physical session"),
                ));
            }
            now.insert(id, info.state);
        }
        let summary: Vec<String> = first
            .decisions
            .iter()
            .filter(|d| d.acted)
            .map(|d| format!("{} {}", d.session, d.outcome))
            .collect();
        let resumed = first
            .decisions
            .iter()
            .filter(|d| d.outcome == Outcome::Resumed)
            .count();
        if let Some(s) = self.sessions.as_mut() {
            s.last = now;
        }
        let problems = if incomplete {
            format!(", problems [{}]", self.scrub(first.problems.join("; ")))
        } else {
            String::new()
        };
        Ok(format!(
            "recovery: {} decisions, {resumed} resumed, acted [{}]{problems}",
            first.decisions.len(),
            summary.join(", ")
        ))
    }
}
