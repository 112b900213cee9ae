//! The one error type of the resource manager.

use activity_table::{PhysSessionId, SessionId, TerminateReason};

use crate::port::PortError;

/// Everything the resource manager can refuse or fail; each variant is a matchable kind
/// with the context needed to act on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RmError {
    /// The session spec is not acceptable (empty, duplicate volume, missing target, ...).
    #[error("invalid session spec: {reason}")]
    InvalidSpec {
        /// What is wrong.
        reason: String,
    },
    /// A session with this id is already in the activity tables.
    #[error("session {id} already exists (state {state})")]
    DuplicateSession {
        /// The id.
        id: SessionId,
        /// Its current state.
        state: String,
    },
    /// No session with this id is in the tables.
    #[error("unknown session {id}")]
    UnknownSession {
        /// The id.
        id: SessionId,
    },
    /// Several hosts started sessions of this id at the same instant (each where the
    /// other's rows were not visible yet), and none of them is this resource manager's
    /// host, so the id alone does not say which is meant.
    #[error(
        "session {id} was started by {} hosts at once ({}); act on it from the daemon of \
         the host that owns the one you mean",
        hosts.len(),
        hosts.join(", ")
    )]
    AmbiguousSession {
        /// The id.
        id: SessionId,
        /// The hosts that hold a session of this id.
        hosts: Vec<String>,
    },
    /// The request names a subsystem the resource manager is not attached to.
    #[error("unknown subsystem {subsystem}")]
    UnknownSubsystem {
        /// The name.
        subsystem: String,
    },
    /// Two attached subsystems report the same name.
    #[error("subsystem {subsystem} attached twice")]
    DuplicateSubsystem {
        /// The name.
        subsystem: String,
    },
    /// The session was terminated; it cannot be completed.
    #[error("session {id} was terminated ({reason})")]
    SessionTerminated {
        /// The id.
        id: SessionId,
        /// Why it was terminated.
        reason: TerminateReason,
    },
    /// The copy is not finished: completion needs every protected track on the target.
    #[error("session {id}: copy not finished on {subsystem} ({copied}/{total} tracks)")]
    CopyIncomplete {
        /// The id.
        id: SessionId,
        /// The subsystem still copying.
        subsystem: String,
        /// Tracks copied.
        copied: u64,
        /// Tracks in the domain.
        total: u64,
    },
    /// The subsystem no longer has the session's physical session, or it
    /// timed out or failed (its image is not whole).
    #[error("session {id}: physical session {phys} on {subsystem} {why}; `session terminate {id}` ends the session (so does the next event)")]
    PhysicalSessionGone {
        /// The id.
        id: SessionId,
        /// The subsystem.
        subsystem: String,
        /// The physical id.
        phys: PhysSessionId,
        /// What the subsystem says of it: "is gone", "timed out", "failed: ...".
        why: String,
    },
    /// The session was completed: its image is kept, and it can be neither
    /// released nor terminated.
    #[error("session {id} is completed: its image is kept, and a completed session can be neither released nor terminated")]
    SessionCompleted {
        /// The id.
        id: SessionId,
    },
    /// The request was carried out, but a follow-up step could not be
    /// (the next recovery event finishes it).
    #[error("{what}: {problem} (the next recovery event finishes it)")]
    Incomplete {
        /// What was left.
        what: String,
        /// The first problem met.
        problem: String,
    },
    /// Part of the request waits for a peer that did not answer: it is owed
    /// to that peer and carried out once it answers (no event needed).
    #[error("{what}: {problem}")]
    Owed {
        /// What waits.
        what: String,
        /// Why, and for whom.
        problem: String,
    },
    /// A start spanning subsystems could not keep writes held on `subsystem` until every
    /// physical session was established, so its parts would not share one time zero.
    /// Nothing was left established.
    #[error(
        "session {id}: writes on {subsystem} were released before every subsystem had \
         established its part (the freeze of {hold_ms} ms expired, or {subsystem} restarted: \
         an IPL ends freezes), so the parts would not share one time zero; nothing was \
         started, try again"
    )]
    FreezeExpired {
        /// The session.
        id: SessionId,
        /// Where the freeze did not hold.
        subsystem: String,
        /// How long it was to hold writes.
        hold_ms: u64,
    },
    /// A subsystem refused or failed a request.
    #[error("{subsystem}: {op}: {source}")]
    Port {
        /// The subsystem.
        subsystem: String,
        /// What the RM asked (`establish`, `withdraw`, `append`, ...).
        op: &'static str,
        /// The subsystem's answer.
        #[source]
        source: PortError,
    },
}

impl RmError {
    /// True if this is an injected crash (test doubles): the caller must drop the resource
    /// manager as if its process had died.
    pub fn is_crash(&self) -> bool {
        matches!(
            self,
            RmError::Port {
                source: PortError::Crashed,
                ..
            }
        )
    }
}
