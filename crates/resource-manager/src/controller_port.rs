//! [`ControllerPort`]: the [`SubsystemPort`] of a `controller::Subsystem`.
//!
//! The only place that maps controller errors to [`PortError`] (controller kinds to
//! [`RejectKind`]: invalid request -> `Invalid`, busy -> `Busy`, ...) and controller
//! session states to [`PhysState`] (quiesced -> suspended; failed -> timed out: a session
//! whose map stopped or was suspended can never resume). An IPL replaces the subsystem handle
//! ([`ControllerPort::replace`]); the port keeps its name.

use activity_table::{ActivityEntry, NewEntry, PhysSessionId, SessionId};
use controller::{ControllerError, ErrorKind, PhysSessionState, SessionPair, Subsystem};
use parking_lot::RwLock;

use crate::port::{
    CopyPair, HeldSession, PhysState, PhysicalSession, PortError, RejectKind, SubsystemPort,
};

/// A controller subsystem seen by the resource manager.
pub struct ControllerPort {
    id: String,
    sub: RwLock<Subsystem>,
}

fn port_error(e: ControllerError) -> PortError {
    // The whole chain: the controller's message says what it was doing, the
    // causes say why (e.g. which table, which fault site, which OS error).
    let text = e.full_message();
    match e.kind() {
        ErrorKind::Limit => PortError::Limit { what: text },
        ErrorKind::Io | ErrorKind::NoSpace | ErrorKind::Corrupt | ErrorKind::Fenced => {
            PortError::Failed { reason: text }
        }
        ErrorKind::InvalidRequest | ErrorKind::OutOfRange => rejected(RejectKind::Invalid, text),
        ErrorKind::Busy => rejected(RejectKind::Busy, text),
        ErrorKind::NotFound => rejected(RejectKind::NotFound, text),
        ErrorKind::State => rejected(RejectKind::State, text),
        ErrorKind::AlreadyExists | ErrorKind::Offline => rejected(RejectKind::Other, text),
    }
}

fn rejected(kind: RejectKind, reason: String) -> PortError {
    PortError::Rejected { kind, reason }
}

fn phys_id(n: u8) -> Result<PhysSessionId, PortError> {
    PhysSessionId::new(n).map_err(|e| PortError::Failed {
        reason: e.to_string(),
    })
}

impl ControllerPort {
    /// Wraps `sub`.
    pub fn new(sub: Subsystem) -> ControllerPort {
        ControllerPort {
            id: sub.id().to_string(),
            sub: RwLock::new(sub),
        }
    }

    /// The current subsystem handle.
    pub fn subsystem(&self) -> Subsystem {
        self.sub.read().clone()
    }

    /// Installs the handle returned by an IPL of the same subsystem.
    pub fn replace(&self, sub: Subsystem) {
        *self.sub.write() = sub;
    }
}

impl SubsystemPort for ControllerPort {
    fn id(&self) -> &str {
        &self.id
    }

    fn establish(
        &self,
        session: &SessionId,
        host: &str,
        pairs: &[CopyPair],
    ) -> Result<PhysSessionId, PortError> {
        let pairs: Vec<SessionPair> = pairs
            .iter()
            .map(|p| SessionPair {
                source: p.source.clone(),
                extents: p.extents.clone(),
                target: p.target.clone(),
                copy_rate: p.copy_rate,
            })
            .collect();
        let n = self
            .sub
            .read()
            .establish_session(session.as_str(), Some(host), &pairs)
            .map_err(port_error)?;
        phys_id(n)
    }

    fn freeze(&self, volumes: &[String], hold_ms: u64) -> Result<u64, PortError> {
        self.sub
            .read()
            .freeze_writes(volumes, std::time::Duration::from_millis(hold_ms))
            .map_err(port_error)
    }

    fn thaw(&self, token: u64) -> Result<bool, PortError> {
        Ok(self.sub.read().thaw_writes(token))
    }

    fn withdraw(&self, session: &SessionId, phys: PhysSessionId) -> Result<(), PortError> {
        self.sub
            .read()
            .withdraw_session(phys.get(), Some(session.as_str()))
            .map(|_| ())
            .map_err(port_error)
    }

    fn query(&self, phys: PhysSessionId) -> Result<Option<PhysicalSession>, PortError> {
        let Some(info) = self.sub.read().session_info(phys.get()) else {
            return Ok(None);
        };
        let owner = SessionId::new(info.session).map_err(|e| PortError::Failed {
            reason: e.to_string(),
        })?;
        Ok(Some(PhysicalSession {
            owner,
            host: info.host,
            state: match info.state {
                PhysSessionState::Active => PhysState::Active,
                PhysSessionState::Quiesced => PhysState::Suspended,
                PhysSessionState::Failed => PhysState::Failed,
            },
            domain: info.domain,
            copied_tracks: info.copied_tracks,
            total_tracks: info.total_tracks,
        }))
    }

    fn physical_sessions(&self) -> Result<Vec<HeldSession>, PortError> {
        self.sub
            .read()
            .physical_sessions()
            .into_iter()
            .map(|i| {
                let owner = SessionId::new(i.session).map_err(|e| PortError::Failed {
                    reason: e.to_string(),
                })?;
                Ok(HeldSession {
                    phys: phys_id(i.phys)?,
                    owner,
                    host: i.host,
                })
            })
            .collect()
    }

    fn resume(&self, phys: PhysSessionId) -> Result<(), PortError> {
        self.sub
            .read()
            .resume_session(phys.get())
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound | ErrorKind::State => PortError::Gone { phys },
                _ => port_error(e),
            })
    }

    fn append(&self, entries: &[NewEntry]) -> Result<(), PortError> {
        self.sub
            .read()
            .append_activity(entries)
            .map(|_| ())
            .map_err(port_error)
    }

    fn entries(&self) -> Result<Vec<ActivityEntry>, PortError> {
        self.sub.read().activity_entries().map_err(port_error)
    }
}
