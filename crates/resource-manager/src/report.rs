//! What the resource manager reports: session listings and the decisions of an event.

use std::collections::BTreeMap;
use std::fmt;

use activity_table::{PhysSessionId, SessionId, TerminateReason};
use geometry::ExtentSet;
use serde::Serialize;

use crate::ledger::SessionState;

/// The recovery event a [`Decisions`] report answers. JSON: `{"event": "abend", "program": "P"}`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// Operating-system IPL of `host`.
    Ipl {
        /// The host.
        host: String,
        /// Subsystems that restarted with it (a daemon's boot restarts its
        /// own subsystem); empty for the IPL of a host alone.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        subsystems: Vec<String>,
    },
    /// Restart of the resource manager of `host`.
    RmRestart {
        /// The host.
        host: String,
    },
    /// Abnormal end of a backup program on `host`.
    Abend {
        /// The host.
        host: String,
        /// The program.
        program: String,
    },
    /// Reset notification from a subsystem.
    Reset {
        /// The subsystem.
        subsystem: String,
    },
    /// A check of every open session's image (after a control request that
    /// may have stopped a session's map).
    Check,
    /// An event (or terminate) a peer missed because it did not answer, run
    /// again on that peer once it answered (docs/SESSIONS.md, "Peers that do
    /// not answer").
    Owed {
        /// The peer it was owed to.
        to: String,
        /// What it missed, in words (`rm-restart on host SYS1`).
        missed: String,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Ipl { host, subsystems } if subsystems.is_empty() => {
                write!(f, "ipl of host {host}")
            }
            Event::Ipl { host, subsystems } => {
                write!(f, "ipl of host {host} and {}", subsystems.join(", "))
            }
            Event::RmRestart { host } => write!(f, "rm-restart on host {host}"),
            Event::Abend { host, program } => {
                write!(f, "abend of program {program} on host {host}")
            }
            Event::Reset { subsystem } => write!(f, "reset notification from {subsystem}"),
            Event::Check => f.write_str("session check"),
            Event::Owed { to, missed } => write!(f, "{missed}, owed to {to} and paid"),
        }
    }
}

/// The disposition of one session after an event. JSON: `{"outcome": "resumed"}`,
/// `{"outcome": "terminated", "reason": "reset-mismatch"}`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "kebab-case")]
pub enum Outcome {
    /// The session runs on (resumed now, or found already resumed with matching extents).
    Resumed,
    /// The session is terminated (now, or found terminated already) with this reason.
    Terminated(TerminateReason),
    /// The event does not concern the session (completed, other program, other subsystem).
    Untouched,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Resumed => f.write_str("resumed"),
            Outcome::Terminated(r) => write!(f, "terminated({r})"),
            Outcome::Untouched => f.write_str("untouched"),
        }
    }
}

/// One session's decision.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Decision {
    /// The logical session.
    pub session: SessionId,
    /// The host that started it, as its rows record it (`None`: rows recorded before
    /// hosts were). Two hosts that raced to start one id hold two sessions of that id.
    pub host: Option<String>,
    /// Its backup program, if recorded.
    pub program: Option<String>,
    /// Its disposition after the event.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Whether this run changed anything for it (entries written, sessions withdrawn or
    /// resumed). A second run of the same event gives the same outcomes with `acted: false`.
    pub acted: bool,
    /// Why, in words (which volume differed, which rule applied).
    pub why: String,
}

/// A physical session found on a subsystem with no open activity row, and withdrawn.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct OrphanWithdrawn {
    /// The subsystem.
    pub subsystem: String,
    /// Its physical id.
    pub phys: PhysSessionId,
    /// The logical session it was established for.
    pub owner: SessionId,
}

/// The report of one event: a decision per session examined, in session-id order.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Decisions {
    /// The event.
    #[serde(flatten)]
    pub event: Event,
    /// Per session examined.
    pub decisions: Vec<Decision>,
    /// Physical sessions without open rows (left by a crash between establish and the
    /// Initiated entries, or between terminal entries and the withdraw), withdrawn.
    pub orphans: Vec<OrphanWithdrawn>,
    /// Subsystem calls that failed (a table that refused an append, a withdraw that
    /// failed). What they concern stays open or established and is finished by the next
    /// event; empty when the event was carried out completely.
    pub problems: Vec<String>,
}

impl Decisions {
    /// True when every entry, withdraw and resume of the event was carried out.
    pub fn complete(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Decisions {
    /// The decision for `session`, if it was examined.
    pub fn get(&self, session: &str) -> Option<&Decision> {
        self.decisions
            .iter()
            .find(|d| d.session.as_str() == session)
    }

    /// Decisions that changed something in this run.
    pub fn acted(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| d.acted)
    }

    /// Whether this run terminated a session or withdrew an orphan (either
    /// may have stopped maps other sessions read through).
    pub fn ended_something(&self) -> bool {
        !self.orphans.is_empty()
            || self
                .acted()
                .any(|d| matches!(d.outcome, Outcome::Terminated(_)))
    }
}

impl fmt::Display for Decisions {
    /// One line per session this run acted on; the others are counted by outcome.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "event: {}", self.event)?;
        let (mut resumed, mut terminated, mut untouched) = (0usize, 0usize, 0usize);
        for d in &self.decisions {
            if !d.acted {
                match d.outcome {
                    Outcome::Resumed => resumed += 1,
                    Outcome::Terminated(_) => terminated += 1,
                    Outcome::Untouched => untouched += 1,
                }
                continue;
            }
            let program = d.program.as_deref().unwrap_or("-");
            // Hosts that raced to start one id hold one session each: name the host.
            let twin = self
                .decisions
                .iter()
                .any(|o| o.session == d.session && o.host != d.host);
            let host = match (&d.host, twin) {
                (Some(h), true) => format!(", host {h}"),
                _ => String::new(),
            };
            writeln!(
                f,
                "  {} (program {program}{host}): {}: {}",
                d.session, d.outcome, d.why
            )?;
        }
        for o in &self.orphans {
            writeln!(
                f,
                "  orphan physical session {} of {} on {} withdrawn",
                o.phys, o.owner, o.subsystem
            )?;
        }
        if resumed + terminated + untouched > 0 {
            writeln!(
                f,
                "  unchanged: {resumed} already resumed, {terminated} already terminated, {untouched} untouched"
            )?;
        }
        for p in &self.problems {
            writeln!(f, "  INCOMPLETE: {p} (the next event finishes it)")?;
        }
        if self.decisions.is_empty() && self.orphans.is_empty() {
            writeln!(f, "  no sessions concerned")?;
        }
        Ok(())
    }
}

/// Copy progress of a physical session.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub struct Progress {
    /// Tracks on the target.
    pub copied_tracks: u64,
    /// Tracks in the domain.
    pub total_tracks: u64,
}

/// One subsystem's part of a session.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct PhysicalPart {
    /// The subsystem.
    pub subsystem: String,
    /// Its physical session id.
    pub phys: PhysSessionId,
    /// Recorded domain per source volume.
    pub volumes: BTreeMap<String, ExtentSet>,
    /// Copy progress as the subsystem reports it; `None` when the physical session is gone
    /// (terminal sessions) or the subsystem did not answer.
    pub progress: Option<Progress>,
    /// What the subsystem says of the physical session while the session is
    /// open and it is not whole: `timed_out`, `failed` (a map stopped or
    /// suspended), or `gone`; `None` while it serves its image, once the
    /// session ended, or when the subsystem did not answer.
    pub broken: Option<String>,
    /// The physical session is suspended by a reset of the subsystem and
    /// waits for a reset notification's judgment (resumed if its extents
    /// match); also while that judgment is owed to a peer that did not
    /// answer.
    pub suspended: bool,
}

/// A session as `session list` shows it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct SessionInfo {
    /// The id.
    pub id: SessionId,
    /// Its backup program.
    pub program: Option<String>,
    /// The host that started it (its owner: that host's IPL, resource-manager
    /// restart and abends end it).
    pub host: String,
    /// Its state.
    #[serde(flatten)]
    pub state: SessionState,
    /// The backup program released serialization: the image is fixed and
    /// applications run again while the copy goes on (the patent's
    /// "logically complete"). A restart event still terminates the session
    /// until it completes, and the backup must then be taken again.
    pub logically_complete: bool,
    /// One part per subsystem.
    pub parts: Vec<PhysicalPart>,
}

impl SessionInfo {
    /// Progress summed over the parts that answered.
    pub fn progress(&self) -> Option<Progress> {
        let answered: Vec<Progress> = self.parts.iter().filter_map(|p| p.progress).collect();
        if answered.is_empty() {
            return None;
        }
        Some(Progress {
            copied_tracks: answered.iter().map(|p| p.copied_tracks).sum(),
            total_tracks: answered.iter().map(|p| p.total_tracks).sum(),
        })
    }
}

/// One problem of a [`Decisions`] report as a line for people: `INCOMPLETE:`
/// and the problem, with "(the next event finishes it)" unless the problem
/// already says what finishes it (so no line says it twice).
pub fn incomplete_line(problem: &str) -> String {
    if problem.contains("the next ") {
        format!("INCOMPLETE: {problem}")
    } else {
        format!("INCOMPLETE: {problem} (the next event finishes it)")
    }
}
