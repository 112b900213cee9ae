//! The seam between the host-side resource manager and one storage subsystem.
//!
//! Contract every implementation keeps (the RM's recovery relies on it):
//! - [`SubsystemPort::append`] makes each entry durable in the subsystem table and in the
//!   table of the entry's volume before it returns `Ok`; on `Err`, any prefix of the entries
//!   may have been written (the RM copes with that).
//! - [`SubsystemPort::entries`] returns the subsystem table in sequence order.
//! - [`SubsystemPort::withdraw`] is idempotent: a physical session that is gone, or that now
//!   belongs to another logical session (ids are reused), is left alone and `Ok` is returned.
//! - [`SubsystemPort::resume`] of an active session is a no-op.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use activity_table::{ActivityEntry, NewEntry, PhysSessionId, SessionId};
use geometry::ExtentSet;

/// One protected source extent set and the volume that receives its time-zero image.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CopyPair {
    /// Source volume (on this subsystem).
    pub source: String,
    /// Tracks of the source protected by the session (normalized).
    pub extents: ExtentSet,
    /// Target volume (on this subsystem); its tracks `extents` receive the image.
    pub target: String,
    /// Background copy rate of the pair's map, SVC 0-150 scale (`None`: the
    /// subsystem's default for sessions).
    #[serde(default)]
    pub copy_rate: Option<u8>,
}

/// State of a physical session as the subsystem reports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhysState {
    /// Protecting its domain and copying.
    Active,
    /// Quiesced by a reset; still protecting its domain; can be resumed or ended.
    Suspended,
    /// Ended by the subsystem; cannot be resumed.
    TimedOut,
    /// A map of it was stopped, or its bitmap is offline: its image is not
    /// whole; it cannot be resumed or completed.
    Failed,
}

impl PhysState {
    /// Whether the session still serves its image (active or quiesced).
    pub fn is_whole(self) -> bool {
        matches!(self, PhysState::Active | PhysState::Suspended)
    }
}

impl fmt::Display for PhysState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PhysState::Active => "active",
            PhysState::Suspended => "suspended",
            PhysState::TimedOut => "timed-out",
            PhysState::Failed => "failed",
        })
    }
}

/// What a subsystem knows about one of its physical sessions.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PhysicalSession {
    /// The logical session it was established for.
    pub owner: SessionId,
    /// The host that established it (`None`: established before hosts were recorded).
    #[serde(default)]
    pub host: Option<String>,
    /// Its state.
    pub state: PhysState,
    /// Active track extents per source volume (volumes with no active extents are absent).
    pub domain: BTreeMap<String, ExtentSet>,
    /// Tracks of the domain already on the targets.
    pub copied_tracks: u64,
    /// Tracks in the domain.
    pub total_tracks: u64,
}

/// One physical session a subsystem holds, as its orphan sweep needs it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct HeldSession {
    /// Its subsystem-local id.
    pub phys: PhysSessionId,
    /// The logical session it was established for.
    pub owner: SessionId,
    /// The host that established it (`None`: before hosts were recorded).
    #[serde(default)]
    pub host: Option<String>,
}

/// Why a subsystem refused a request ([`PortError::Rejected`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectKind {
    /// The request can never succeed as given (size mismatch, bad extents, no pairs).
    Invalid,
    /// A volume is in use (target of another map or session); may succeed later.
    Busy,
    /// A named object (volume) does not exist.
    NotFound,
    /// The object is in a state that does not allow the request.
    State,
    /// Anything else (offline volume, duplicate id, ...).
    Other,
}

/// Why a subsystem refused or failed a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "kebab-case")]
pub enum PortError {
    /// A limit was hit (sessions per volume, per subsystem, physical ids).
    #[error("limit reached: {what}")]
    Limit {
        /// Which limit, with the numbers.
        what: String,
    },
    /// The request names a volume the subsystem does not have.
    #[error("unknown volume {volume}")]
    UnknownVolume {
        /// The volume.
        volume: String,
    },
    /// The subsystem refused the request; `kind` says why, so callers can tell a request
    /// that can never succeed from one that may succeed later.
    #[error("rejected: {reason}")]
    Rejected {
        /// Why, as a matchable kind.
        kind: RejectKind,
        /// Why, in words.
        reason: String,
    },
    /// The physical session does not exist or cannot do this any more.
    #[error("physical session {phys} is gone or timed out")]
    Gone {
        /// The physical id.
        phys: PhysSessionId,
    },
    /// I/O or internal failure in the subsystem (activity table write, metadata, ...).
    #[error("subsystem failure: {reason}")]
    Failed {
        /// What failed.
        reason: String,
    },
    /// The subsystem did not answer (a peer daemon down or unreachable): the call may or
    /// may not have been carried out, as with `Failed`.
    #[error("unreachable: {reason}")]
    Unreachable {
        /// Who did not answer, and why.
        reason: String,
    },
    /// The peer answered, but is not the subsystem configured at that
    /// address, or refused this daemon's API token: a configuration mistake
    /// between daemons, not a peer that is down. The call was not carried out.
    #[error("misconfigured: {reason}")]
    Misconfigured {
        /// What answered, and what to fix.
        reason: String,
    },
    /// Not asked: this host's resource manager owes the peer a restart event
    /// that it has not paid yet (it did not answer that event), and no
    /// request but the payment may ask it anything until then.
    #[error("not asked until it is paid what it is owed ({debt})")]
    Owed {
        /// What is owed, in words.
        debt: String,
    },
    /// An injected crash of the resource manager (test doubles only): the operation that
    /// reports it was carried out, and the caller must stop as if its process died.
    #[error("injected crash")]
    Crashed,
}

impl PortError {
    /// The subsystem is taken for silent: it did not answer, answered as
    /// another (misconfigured), or is owed an event and not asked. An event
    /// goes on without such a peer; the API answers `unavailable`.
    pub fn is_silence(&self) -> bool {
        matches!(
            self,
            PortError::Unreachable { .. }
                | PortError::Misconfigured { .. }
                | PortError::Owed { .. }
        )
    }
}

/// What the resource manager needs from one subsystem. Object safe; shared across threads.
pub trait SubsystemPort: Send + Sync {
    /// The subsystem's name (as written in its activity entries).
    fn id(&self) -> &str;

    /// Establishes one physical session protecting `pairs` for logical session `session`
    /// started by `host`, and returns its subsystem-local id. Enforces the subsystem's
    /// limits. The subsystem keeps `host` with the session (the orphan sweeps of other
    /// hosts leave it alone while its rows are being written).
    fn establish(
        &self,
        session: &SessionId,
        host: &str,
        pairs: &[CopyPair],
    ) -> Result<PhysSessionId, PortError>;

    /// Holds host writes to `volumes` (sources on this subsystem) that arrive from now on,
    /// for at most `hold_ms`, until [`SubsystemPort::thaw`] with the returned token. The
    /// resource manager freezes every subsystem of a session before establishing any of
    /// them, so the session gets one time zero across subsystems.
    fn freeze(&self, volumes: &[String], hold_ms: u64) -> Result<u64, PortError>;

    /// Releases freeze `token`: `Ok(true)` if it still held the writes until now,
    /// `Ok(false)` if it expired first (writes may have gone through).
    fn thaw(&self, token: u64) -> Result<bool, PortError>;

    /// Ends physical session `phys` if it still belongs to `session` (mappings stopped,
    /// protection dropped). Gone or reused ids are left alone (`Ok`).
    fn withdraw(&self, session: &SessionId, phys: PhysSessionId) -> Result<(), PortError>;

    /// The subsystem's view of `phys`, `None` if it does not exist.
    fn query(&self, phys: PhysSessionId) -> Result<Option<PhysicalSession>, PortError>;

    /// Every physical session the subsystem holds, with its owner and host.
    fn physical_sessions(&self) -> Result<Vec<HeldSession>, PortError>;

    /// Returns a suspended physical session to active (copying continues from the durable
    /// bitmaps). Active: no-op. Gone or timed out: [`PortError::Gone`].
    fn resume(&self, phys: PhysSessionId) -> Result<(), PortError>;

    /// Appends `entries` to the subsystem table and each to its volume's table; durable on
    /// return. On error any prefix may have been written.
    fn append(&self, entries: &[NewEntry]) -> Result<(), PortError>;

    /// The subsystem table, in sequence order.
    fn entries(&self) -> Result<Vec<ActivityEntry>, PortError>;

    /// Whether this subsystem belongs to another daemon (a peer reached over
    /// the network, with a resource manager of its own). A machine IPL
    /// terminates the sessions with rows on the restarted (local) subsystems
    /// whoever owns them, and the broken-session check judges sessions of
    /// other hosts only where they have rows on a local subsystem.
    fn is_remote(&self) -> bool {
        false
    }
}
