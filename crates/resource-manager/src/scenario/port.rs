//! [`ScenarioPort`]: the port the scenario's resource manager uses. It forwards to a
//! [`ControllerPort`] and counts mutating calls, so a scenario can raise a reset of the
//! subsystem part-way through an IPL replay (`reset_during_replay`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use activity_table::{ActivityEntry, NewEntry, PhysSessionId, SessionId};
use parking_lot::Mutex;

use crate::controller_port::ControllerPort;
use crate::port::{CopyPair, HeldSession, PhysicalSession, PortError, SubsystemPort};

/// A pending reset to raise after `after` more mutating calls.
pub(super) struct Trigger {
    pub after: u64,
    pub lose_volatile: bool,
}

/// The port the scenario's resource manager uses: a controller port plus a reset trigger.
pub(super) struct ScenarioPort {
    pub inner: Arc<ControllerPort>,
    pub calls: AtomicU64,
    pub trigger: Mutex<Option<Trigger>>,
    /// What the raised reset did, once it fired.
    pub fired: Mutex<Option<String>>,
}

impl ScenarioPort {
    fn count(&self) {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let mut t = self.trigger.lock();
        if let Some(tr) = t.as_ref() {
            if n >= tr.after {
                let lose = tr.lose_volatile;
                *t = None;
                let r = self.inner.subsystem().reset(lose);
                *self.fired.lock() = Some(match r {
                    Ok(rep) => format!(
                        "reset raised during replay: {} session(s) lost",
                        rep.sessions_lost.len()
                    ),
                    Err(e) => format!("reset during replay failed: {e}"),
                });
            }
        }
    }
}

impl SubsystemPort for ScenarioPort {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn establish(
        &self,
        session: &SessionId,
        host: &str,
        pairs: &[CopyPair],
    ) -> Result<PhysSessionId, PortError> {
        let r = self.inner.establish(session, host, pairs);
        self.count();
        r
    }
    fn freeze(&self, volumes: &[String], hold_ms: u64) -> Result<u64, PortError> {
        let r = self.inner.freeze(volumes, hold_ms);
        self.count();
        r
    }
    fn thaw(&self, token: u64) -> Result<bool, PortError> {
        let r = self.inner.thaw(token);
        self.count();
        r
    }
    fn withdraw(&self, session: &SessionId, phys: PhysSessionId) -> Result<(), PortError> {
        let r = self.inner.withdraw(session, phys);
        self.count();
        r
    }
    fn query(&self, phys: PhysSessionId) -> Result<Option<PhysicalSession>, PortError> {
        self.inner.query(phys)
    }
    fn physical_sessions(&self) -> Result<Vec<HeldSession>, PortError> {
        self.inner.physical_sessions()
    }
    fn resume(&self, phys: PhysSessionId) -> Result<(), PortError> {
        let r = self.inner.resume(phys);
        self.count();
        r
    }
    fn append(&self, entries: &[NewEntry]) -> Result<(), PortError> {
        let r = self.inner.append(entries);
        self.count();
        r
    }
    fn entries(&self) -> Result<Vec<ActivityEntry>, PortError> {
        self.inner.entries()
    }
}
