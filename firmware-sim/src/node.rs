//! [`Node`]: the running subsystem as the daemon shares it between the NBD
//! exports, the control API and the copier.
//!
//! Invariants:
//! - the [`Subsystem`] handle is replaced only by [`Node::ipl`], under the
//!   write sides of `rm_gate` and then `slot`; every NBD request and control
//!   call runs under the read side of `slot` ([`Node::with`]), every
//!   resource-manager call under the read side of `rm_gate` with a clone of
//!   the handle ([`Node::with_rm`]), so an IPL waits for in-flight work,
//!   holds new work back, and no request ever meets a closed handle;
//! - the resource manager's [`ControllerPort`] always holds the same handle as
//!   `slot` (replaced together, under the write lock).

use std::path::Path;
use std::time::Instant;

use std::sync::Arc;

use controller::{CopierHandle, IplReport, Subsystem, SubsystemConfig};
use parking_lot::{Mutex, RwLock};
use resource_manager::{
    ControllerPort, Decisions, Outcome, Owed, ResourceManager, RmError, SubsystemPort,
};

use crate::metrics::IoStats;
use crate::peer::RemotePort;

/// What [`Node::ipl`] did.
pub struct IplOutcome {
    /// Lines for people about what the restart restored ([`ipl_notes`]),
    /// taken before the recovery.
    pub notes: Vec<String>,
    /// The resource manager's IPL recovery.
    pub recovered: Result<Decisions, RmError>,
}

/// How long the payer's probe of an owed peer may take (`Node::pay_owed`).
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The running subsystem plus what the daemon keeps beside it.
pub struct Node {
    /// The current subsystem handle. NBD I/O and control requests hold it
    /// shared for local work only; an IPL or close holds it exclusively.
    slot: RwLock<Subsystem>,
    /// Resource-manager requests (which may wait up to the port timeout on
    /// a peer) hold this shared, never `slot`; an IPL or close takes it
    /// exclusively *before* `slot`. So an IPL still waits for every session
    /// request in flight, but NBD I/O and local control requests go on
    /// while it waits: parking_lot queues new readers behind a waiting
    /// writer, and before this gate a request stuck on a hung peer froze
    /// every volume behind the IPL that waited for it (QA: 54 s).
    /// Lock order: `rm_gate`, then `slot`; nothing holding `slot` takes it.
    rm_gate: RwLock<()>,
    port: Arc<ControllerPort>,
    /// Ports to the peers' subsystems (sessions across daemons).
    peers: Vec<Arc<RemotePort>>,
    /// The host id the resource manager speaks for.
    host: String,
    /// User names of maps and groups (`names.json` in the data directory).
    pub names: crate::names::Names,
    /// Controller counters of the handles IPLs replaced (see [`Node::metrics`]).
    metrics_base: Mutex<controller::MetricsSnapshot>,
    rm: RwLock<Arc<ResourceManager>>,
    /// What the resource manager owes peers that did not answer an event
    /// (resource_manager's owed.rs): shared by every manager this process
    /// builds, lost only with the process (its next boot's IPL covers it).
    owed: Arc<Owed>,
    copier: Mutex<Option<CopierHandle>>,
    runtime: tokio::runtime::Handle,
    /// NBD request counters and host flush latency.
    pub stats: IoStats,
    /// When the daemon booted.
    pub started: Instant,
    /// NBD base URIs (`nbd://HOST:PORT/`, `nbd+unix:///?socket=...`).
    pub nbd_bases: RwLock<Vec<String>>,
    /// Recent events for the status page and `GET /events`.
    pub recent: crate::recent::Recent,
    /// Serializes the control API's compound map and group requests (see
    /// [`Node::control`]). Lock order: `control`, then `slot`.
    control: Mutex<()>,
}

impl Node {
    /// Opens (creates or IPLs) the subsystem in `data_dir`. Blocking.
    pub fn open(
        data_dir: &Path,
        config: SubsystemConfig,
        runtime: tokio::runtime::Handle,
    ) -> Result<Node, controller::ControllerError> {
        let peers: Vec<Arc<RemotePort>> = config
            .peers
            .iter()
            .map(|p| Arc::new(RemotePort::new(&p.id, &p.api)))
            .collect();
        let host = config.host_id();
        let sub = Subsystem::open(data_dir, config)?;
        let (names, warning) = crate::names::Names::load(data_dir);
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        let maps: std::collections::BTreeSet<u32> = sub.maps().iter().map(|m| m.id).collect();
        let groups: std::collections::BTreeSet<u32> = sub.groups().iter().map(|g| g.id).collect();
        for r in [
            names.retain(crate::names::Kind::Map, |id| maps.contains(&id)),
            names.retain(crate::names::Kind::Group, |id| groups.contains(&id)),
        ] {
            if let Err(e) = r {
                tracing::warn!("{e}");
            }
        }
        let port = Arc::new(ControllerPort::new(sub.clone()));
        let owed = Arc::new(Owed::default());
        let rm = new_rm(&host, &port, &peers, &owed).map_err(|e| {
            controller::ControllerError::new(
                controller::ErrorKind::InvalidRequest,
                format!("cannot attach the resource manager: {e}"),
            )
        })?;
        let recent = crate::recent::Recent::default();
        recent.follow(&runtime, sub.subscribe(), sub.id().to_string());
        Ok(Node {
            recent,
            slot: RwLock::new(sub),
            rm_gate: RwLock::new(()),
            port,
            peers,
            host,
            names,
            metrics_base: Mutex::new(Default::default()),
            rm: RwLock::new(Arc::new(rm)),
            owed,
            copier: Mutex::new(None),
            runtime,
            stats: IoStats::default(),
            started: Instant::now(),
            nbd_bases: RwLock::new(Vec::new()),
            control: Mutex::new(()),
        })
    }

    /// Held by a control request made of several controller steps that
    /// another request must not interleave with: a create that checks a
    /// name, creates, then saves the name; a restore that checks for a
    /// reverse map, creates one, starts it and deletes it again if the
    /// start is refused; and the map starts, stops and deletes that could
    /// land between those steps. QA: three concurrent creates named
    /// `nightly` made two unnamed maps (HTTP 500), and a refused restore
    /// force-deleted the reverse map a concurrent restore had just started
    /// and answered 200 for. Every single controller call is atomic on its
    /// own; this only makes the sequences so. Blocking.
    pub fn control(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.control.lock()
    }

    /// Runs `f` on the current subsystem; an IPL waits until `f` returns.
    /// Blocking: call from a blocking thread.
    pub fn with<R>(&self, f: impl FnOnce(&Subsystem) -> R) -> R {
        let s = self.slot.read();
        f(&s)
    }

    /// Runs `f` on the current subsystem only if no IPL holds it now (never
    /// waits): for the NBD reader's requests that must not block.
    pub fn try_with<R>(&self, f: impl FnOnce(&Subsystem) -> Option<R>) -> Option<R> {
        let s = self.slot.try_read()?;
        f(&s)
    }

    /// The controller's counters since the daemon started: those of the
    /// current handle plus those of every handle an IPL replaced.
    pub fn metrics(&self) -> controller::MetricsSnapshot {
        let mut m = self.with(|s| s.metrics());
        m.add(&self.metrics_base.lock());
        m
    }

    /// Runs `f` on this subsystem's resource-manager port (for peers'
    /// resource managers; an IPL waits until `f` returns).
    pub fn with_port<R>(&self, f: impl FnOnce(&dyn SubsystemPort) -> R) -> R {
        let _s = self.slot.read();
        f(self.port.as_ref())
    }

    /// A peer's resource manager changed this subsystem's tables or
    /// physical sessions: ours reads them again before its next request.
    pub fn tables_changed_by_peer(&self) {
        self.rm.read().invalidate();
    }

    /// The host id the daemon's resource manager speaks for.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port to peer subsystem `id`, if configured.
    pub fn peer(&self, id: &str) -> Option<Arc<RemotePort>> {
        self.peers.iter().find(|p| p.id() == id).cloned()
    }

    /// Ids of the configured peers.
    pub fn peer_ids(&self) -> Vec<String> {
        self.peers.iter().map(|p| p.id().to_string()).collect()
    }

    /// Runs `f` on the resource manager (an IPL waits until `f` returns).
    pub fn with_rm<R>(&self, f: impl FnOnce(&ResourceManager, &Subsystem) -> R) -> R {
        let (_gate, s) = self.for_rm();
        let rm = self.rm.read().clone();
        if !self.peers.is_empty() {
            // The peers' tables have other writers (their own resource
            // managers): never answer from a ledger read earlier.
            rm.invalidate();
        }
        let r = f(&rm, &s);
        self.log_payments(&rm);
        r
    }

    /// What the resource manager owes peers that did not answer, one line
    /// each (`GET /health`).
    pub fn owed(&self) -> Vec<String> {
        self.owed.lines()
    }

    /// Pays what the resource manager owes peers that answer again, if it
    /// owes anything (the daemon calls this every few seconds, so a debt is
    /// paid without waiting for the next session request). Blocking.
    ///
    /// Each owed peer is first probed, outside the gate, with a call of at
    /// most [`PROBE_TIMEOUT`]: one that does not answer is left for the next
    /// round. So the payment holds the gate (which an IPL waits for, and
    /// every request behind that IPL) only for peers that answer, never for
    /// a hung peer's whole call timeout (review).
    pub fn pay_owed(&self) {
        if self.owed.is_empty() {
            return;
        }
        let owed = self.owed.peers();
        let silent: Vec<String> = owed
            .iter()
            .filter(|id| {
                self.peer(id)
                    .is_some_and(|p| !p.answers_within(PROBE_TIMEOUT))
            })
            .cloned()
            .collect();
        for id in &silent {
            self.owed.silent(id);
        }
        if silent.len() == owed.len() {
            return;
        }
        if let Err(e) = self.with_rm(|rm, _| rm.pay_owed_now(&silent)) {
            tracing::warn!(error = %e, "paying what peers are owed failed");
        }
    }

    /// The payments `rm` made, into the recent events and the log.
    fn log_payments(&self, rm: &ResourceManager) {
        for p in rm.take_payments() {
            let did = p.decisions.iter().any(|d| d.acted)
                || !p.orphans.is_empty()
                || !p.problems.is_empty();
            let text = if did {
                decision_lines(&p).join("; ")
            } else {
                "nothing left to do there".to_string()
            };
            self.recent.push(format!("{}: {text}", p.event));
        }
    }

    /// The restart event this daemon owes peer `id` and has not paid, if
    /// any: until it is paid, no request asks that peer anything.
    pub fn owes_event_to(&self, id: &str) -> Option<String> {
        self.owed.blocks(id)
    }

    /// Runs `f` on a resource manager over this subsystem alone (no peer
    /// is asked anything): what this subsystem's own tables say, for
    /// `GET /sessions?local=true`. It is a fresh manager, not the shared
    /// one, so it does not wait for a request the shared one is running.
    pub fn with_local_rm<R>(
        &self,
        f: impl FnOnce(&ResourceManager, &Subsystem) -> R,
    ) -> Result<R, RmError> {
        // No peer is asked, so `slot` is held, not the gate: a local list
        // goes on while an IPL's recovery waits on a hung peer.
        let s = self.slot.read();
        let rm = new_rm(&self.host, &self.port, &[], &Arc::default())?;
        Ok(f(&rm, &s))
    }

    /// The gate shared and a handle on the current subsystem, for a
    /// resource-manager request: no IPL can replace the handle while the
    /// gate is held, and `slot` is not held, so NBD I/O never queues behind
    /// an IPL that waits for this request.
    fn for_rm(&self) -> (parking_lot::RwLockReadGuard<'_, ()>, Subsystem) {
        let gate = self.rm_gate.read();
        let sub = self.slot.read().clone();
        (gate, sub)
    }

    /// Both locks exclusively, in the lock order (see `rm_gate`), for an
    /// IPL or close. Once no session request of ours runs, the write freezes
    /// end (peers' ones too): a write held by a freeze holds `slot` shared,
    /// and the thaw would queue behind this IPL (QA: a 20 s freeze stalled
    /// every volume for 20 s). Their thaws answer `false`, so the starts that
    /// froze fail cleanly. An IPL that fails calls `allow_freezes`.
    fn exclusive(
        &self,
    ) -> (
        parking_lot::RwLockWriteGuard<'_, ()>,
        parking_lot::RwLockWriteGuard<'_, Subsystem>,
    ) {
        let gate = self.rm_gate.write();
        self.slot.read().end_freezes();
        (gate, self.slot.write())
    }

    /// The resource manager's IPL recovery (cli.md: booting an existing data
    /// dir is an IPL): every session initiated and not completed is
    /// terminated with reason `ipl` (rows written, physical sessions
    /// withdrawn). Run at boot before anything is served or copied
    /// (`Node::ipl` runs it itself, before any other session request).
    pub fn recover_at_ipl(&self) -> Result<Decisions, RmError> {
        self.recover("IPL", |rm, _| rm.on_ipl())
    }

    /// Runs the recovery `event` (named `what` in the log) over this
    /// subsystem and its peers; a peer that does not answer is left out and
    /// named in the report
    /// (`ResourceManager::recover_over_answering`).
    pub fn recover(
        &self,
        what: &str,
        event: impl Fn(&ResourceManager, &Subsystem) -> Result<Decisions, RmError>,
    ) -> Result<Decisions, RmError> {
        self.with_rm(|rm, sub| rm.recover_over_answering(what, |rm| event(rm, sub)))
    }

    /// After a control request that may have stopped a session's map (a
    /// forced stop reaches dependants): terminates, with their rows written,
    /// the sessions whose image is no longer whole (reason `image-lost`).
    /// Blocking. Problems are logged; the next event finishes them.
    pub fn close_broken_sessions(&self) {
        let broken = self.with(|sub| {
            sub.physical_sessions()
                .iter()
                .any(|p| p.state == controller::PhysSessionState::Failed)
        });
        if !broken {
            return;
        }
        match self.with_rm(|rm, _| rm.check_sessions()) {
            Ok(d) => {
                for p in &d.problems {
                    tracing::warn!(problem = %p, "session check incomplete");
                }
            }
            Err(e) => tracing::warn!(error = %e, "session check failed"),
        }
    }

    /// Restarts the resource manager: a new instance over the same subsystem
    /// (it rebuilds everything from the activity tables).
    pub fn restart_rm(&self) -> Result<(), RmError> {
        // No request of the old manager runs beside the new one.
        let _gate = self.rm_gate.write();
        let rm = new_rm(&self.host, &self.port, &self.peers, &self.owed)?;
        *self.rm.write() = Arc::new(rm);
        Ok(())
    }

    /// Starts the background copier (copy and cleaning at each map's rate).
    pub fn start_copier(&self) {
        let handle = self.slot.read().start_copier(&self.runtime);
        *self.copier.lock() = Some(handle);
    }

    fn stop_copier(&self) {
        // Dropping the handle stops the task before its next chunk.
        self.copier.lock().take();
    }

    /// Restarts the subsystem: clean shutdown, then a fresh open of the same
    /// data directory (tables replayed), then the resource manager's IPL
    /// recovery. In-flight requests finish
    /// first. No other session request runs between the restart and the
    /// recovery: one that did would be a session of the restarted system
    /// that the recovery then terminates as initiated before the IPL (QA: a
    /// start that waited behind the IPL answered "active", and the recovery
    /// terminated it). NBD I/O resumes once the subsystem is open.
    pub fn ipl(&self) -> Result<IplOutcome, controller::ControllerError> {
        self.stop_copier();
        let (gate, mut slot) = self.exclusive();
        let before = slot.metrics();
        let fresh = match slot.ipl() {
            Ok(f) => f,
            Err(e) => {
                slot.allow_freezes();
                return Err(e);
            }
        };
        // The controller's counters start again with the new handle; the
        // per-volume NBD counters do not, and neither may /metrics.
        self.metrics_base.lock().add(&before);
        self.port.replace(fresh.clone());
        self.recent
            .follow(&self.runtime, fresh.subscribe(), fresh.id().to_string());
        *slot = fresh;
        // The host side restarts too: a new resource manager over the same port
        // (it rebuilds everything from the activity tables).
        match new_rm(&self.host, &self.port, &self.peers, &self.owed) {
            Ok(rm) => *self.rm.write() = Arc::new(rm),
            Err(e) => tracing::warn!(error = %e, "resource manager not rebuilt after IPL"),
        }
        let report = slot.ipl_report();
        self.recent.push(format!(
            "{}: IPL ({} journal records replayed)",
            slot.id(),
            report.journal_records
        ));
        // What the IPL restored, before the recovery withdraws the maps of
        // the sessions it ends.
        let notes = ipl_notes(&report, &slot);
        drop(slot);
        let rm = self.rm.read().clone();
        if !self.peers.is_empty() {
            rm.invalidate();
        }
        let recovered = rm.recover_over_answering("IPL", |rm| rm.on_ipl());
        drop(gate);
        self.start_copier();
        Ok(IplOutcome { notes, recovered })
    }

    /// Clean shutdown: stop the copier, flush every volume, close the data dir.
    pub fn close(&self) -> Result<(), controller::ControllerError> {
        self.stop_copier();
        let (_gate, slot) = self.exclusive();
        slot.close()
    }

    /// The NBD URI of `volume`: on the first TCP listener, else the unix socket.
    pub fn nbd_uri(&self, volume: &str) -> Option<String> {
        let bases = self.nbd_bases.read();
        let base = bases
            .iter()
            .find(|b| b.starts_with("nbd://"))
            .or(bases.first())?;
        Some(match base.split_once("?socket=") {
            Some((_, sock)) => format!("nbd+unix:///{volume}?socket={sock}"),
            None => format!("{base}{volume}"),
        })
    }
}

fn new_rm(
    host: &str,
    port: &Arc<ControllerPort>,
    peers: &[Arc<RemotePort>],
    owed: &Arc<Owed>,
) -> Result<ResourceManager, RmError> {
    let mut ports: Vec<Arc<dyn SubsystemPort>> = vec![port.clone()];
    ports.extend(peers.iter().map(|p| p.clone() as Arc<dyn SubsystemPort>));
    Ok(ResourceManager::for_host(host, ports)?.with_owed(owed.clone()))
}

/// The maps that serve backup sessions: map id -> logical session id.
pub fn session_maps(sub: &Subsystem) -> std::collections::BTreeMap<u32, String> {
    sub.physical_sessions()
        .into_iter()
        .flat_map(|p| p.maps.into_iter().map(move |m| (m, p.session.clone())))
        .collect()
}

/// The lines a boot logs for the resource manager's IPL decisions: one per
/// session it acted on (terminated and why), orphans withdrawn, problems,
/// and one count of the sessions left as they were (so the log does not
/// grow with history).
pub fn decision_lines(d: &Decisions) -> Vec<String> {
    let mut lines = Vec::new();
    let (mut resumed, mut terminated, mut untouched) = (0usize, 0usize, 0usize);
    for x in &d.decisions {
        if !x.acted {
            match x.outcome {
                Outcome::Resumed => resumed += 1,
                Outcome::Terminated(_) => terminated += 1,
                Outcome::Untouched => untouched += 1,
            }
            continue;
        }
        let outcome = match x.outcome {
            Outcome::Terminated(r) => format!("terminated ({r})"),
            other => other.to_string(),
        };
        lines.push(format!(
            "session {} (program {}): {outcome}: {}",
            x.session,
            x.program.as_deref().unwrap_or("-"),
            x.why
        ));
    }
    for o in &d.orphans {
        lines.push(format!(
            "orphan physical session {} of session {} on {} withdrawn",
            o.phys, o.owner, o.subsystem
        ));
    }
    if resumed + terminated + untouched > 0 {
        lines.push(format!(
            "sessions unchanged: {resumed} already resumed, {terminated} already terminated, {untouched} untouched"
        ));
    }
    for p in &d.problems {
        lines.push(resource_manager::incomplete_line(p));
    }
    if lines.is_empty() {
        lines.push("no sessions to recover".into());
    }
    lines
}

/// One line per thing an open/IPL/reset found and did (logged at boot and
/// printed by `event ipl|reset`).
pub fn ipl_notes(r: &IplReport, sub: &Subsystem) -> Vec<String> {
    restart_notes("IPL", r, sub)
}

/// The notes of a restart of the subsystem, each line starting with `what`
/// (`IPL`, or `reset` for a controller warmstart).
pub fn restart_notes(what: &str, r: &IplReport, sub: &Subsystem) -> Vec<String> {
    let maps = sub.maps().len();
    let sessions = session_maps(sub);
    let mut notes = Vec::new();
    if r.created {
        notes.push("new subsystem: data directory created".to_string());
        return notes;
    }
    notes.push(format!(
        "{what}: metadata root generation {}, {} journal record(s) replayed (stop: {}), {}",
        r.root_generation,
        r.journal_records,
        r.journal_stop,
        if r.dirty {
            "previous run did not shut down cleanly (checker ran)"
        } else {
            "previous run shut down cleanly"
        }
    ));
    if sessions.is_empty() {
        notes.push(format!("{what}: {maps} map(s) restored"));
    } else {
        let mut names: Vec<&str> = sessions.values().map(String::as_str).collect();
        names.dedup();
        notes.push(format!(
            "{what}: {maps} map(s) restored, {} of them copying for backup sessions ({}; \
             the resource manager decides whether those sessions go on)",
            sessions.len(),
            names.join(", ")
        ));
    }
    if let Some(w) = &r.root_warning {
        notes.push(format!("{what} WARNING: {w}"));
    }
    for w in &r.journal_repaired {
        notes.push(format!("{what} WARNING: {w}"));
    }
    for f in &r.check_findings {
        notes.push(format!("{what} check: {f}"));
    }
    if !r.volumes_created.is_empty() {
        notes.push(format!(
            "{what}: config volumes created: {}",
            r.volumes_created.join(", ")
        ));
    }
    if !r.suspended_maps.is_empty() {
        notes.push(format!("{what}: suspended maps: {:?}", r.suspended_maps));
    }
    if !r.sessions.is_empty() {
        notes.push(format!("{what}: physical sessions found: {:?}", r.sessions));
    }
    if !r.sessions_lost.is_empty() {
        notes.push(format!(
            "{what}: physical sessions lost: {:?}",
            r.sessions_lost
        ));
    }
    for t in &r.table_notes {
        notes.push(format!("{what} activity tables: {t}"));
    }
    notes
}
