//! [`Subsystem`]: the I/O shell around the engine.
//!
//! Invariants (each is enforced where named; docs/DURABILITY.md states them in
//! full: 1-7 under "The rules and where they hold", 8 in the paragraph after
//! that list, 9 under "IPL", step 4):
//! 1. data before metadata: a copied grain's store is flushed before the journal
//!    record with its bit is written (group commit, cow.rs `Stages::stage1`/`stage2`);
//! 2. old before new: a host write to a grain some target still needs is applied
//!    only after that grain's copy and bit are durable (`io::mutate`); chained
//!    copies of one grain commit in stages (`stages`);
//! 3. conservative bits: bits only ever reach the engine after they are durable,
//!    so a crash can lose a bit (redundant copy) but never invent one;
//! 4. one atomic root: checkpoints write the inactive slot (`checkpoint`);
//! 5. self-identifying records: root headers name slot, generation, subsystem;
//! 6. a failed data flush suspends the affected maps, and a checkpoint makes
//!    the suspension durable before anyone is answered (`cow::suspend`);
//!    metadata writes are retried until durable and verified (`meta`);
//! 7. `flush` makes every acknowledged write durable (`io::flush`);
//! 8. control requests are all or nothing: a failed one (rejected part-way or
//!    its checkpoint failed before writing) is undone in memory (`rollback`);
//!    a request whose metadata outcome is unknown is never answered as failed:
//!    the subsystem fences (every request fails `fenced`) until an IPL or a
//!    reset rebuilds memory from what is durable (`fence`);
//! 9. damaged metadata is refused, never replayed as a torn tail or rolled
//!    back to an older root (`meta` journal scan).
//!
//! Lock order: `topo` (shared for I/O, exclusive for topology changes) ->
//! grain locks -> `journal` -> `core` -> `volumes`. No thread takes `topo` twice.

mod bucket;
mod cleaning;
mod commit;
mod control;
mod copier;
mod cow;
mod freeze;
mod groups;
mod io;
pub(crate) mod ipl;
mod locks;
mod names;
mod persist;
mod rollback;
mod runs;
mod sessions;
mod table_recovery;
mod tables;
mod write_path;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use geometry::{DeviceModel, Geometry};
use parking_lot::{Mutex, RwLock};
use timezero::{Engine, VolumeId};
use tokio::sync::broadcast;
use volume_store::{FaultPoint, TrackStore};

use crate::config::SubsystemConfig;
use crate::datadir::{DataDir, DataDirLock};
use crate::error::{err, ErrorKind, Result};
use crate::events::Event;
use crate::meta::MetaStore;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::provider::StoreProvider;

pub use control::{CascadeView, GroupView, MapCreate, MapView, VolumeView};
pub use copier::{CopierHandle, CopyStepReport};
pub use freeze::MAX_FREEZE;
pub use io::{AllocationExtent, VolumeRef};
pub use ipl::IplReport;
pub use sessions::{
    PhysSessionInfo, PhysSessionState, SessionPair, MAX_SESSIONS_PER_SUBSYSTEM,
    MAX_SESSIONS_PER_VOLUME,
};

use commit::Committer;
use cow::CommitItem;
use locks::GrainLocks;
use sessions::PhysSession;
use tables::Tables;

/// Journal bytes after which a group commit also checkpoints.
const JOURNAL_CHECKPOINT_BYTES: u64 = 64 << 20;

/// A volume: its name, engine id, geometry and store.
pub(crate) struct Volume {
    pub(crate) name: String,
    pub(crate) id: VolumeId,
    pub(crate) model: DeviceModel,
    pub(crate) geometry: Geometry,
    pub(crate) store: Arc<dyn TrackStore>,
    /// False only while the engine says the volume is plain (no map names it,
    /// no cascade holds it; [`timezero::Engine::is_plain`]): host I/O then goes straight to the store (io.rs, the plain
    /// path). Starts true (the slow path is always correct) and is published
    /// by [`Inner::publish_mapped`] under the core lock after every engine
    /// change. It can become true only by creating a map, which happens
    /// under the exclusive topology lock, so a request holding the shared
    /// topology lock that read false cannot see a map appear under it.
    pub(crate) mapped: std::sync::atomic::AtomicBool,
}

impl Volume {
    pub(crate) fn new(
        name: &str,
        id: VolumeId,
        model: DeviceModel,
        geometry: Geometry,
        store: Arc<dyn TrackStore>,
    ) -> Volume {
        Volume {
            name: name.to_string(),
            id,
            model,
            geometry,
            store,
            mapped: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// True while no map names this volume (one atomic load; see `mapped`).
    pub(crate) fn is_plain(&self) -> bool {
        !self.mapped.load(std::sync::atomic::Ordering::Acquire)
    }
}

#[derive(Clone, Default)]
pub(crate) struct Volumes {
    pub(crate) by_name: BTreeMap<String, Arc<Volume>>,
    pub(crate) by_id: HashMap<VolumeId, Arc<Volume>>,
}

impl Volumes {
    pub(crate) fn insert(&mut self, v: Arc<Volume>) {
        self.by_id.insert(v.id, v.clone());
        self.by_name.insert(v.name.clone(), v);
    }
    pub(crate) fn remove(&mut self, name: &str) -> Option<Arc<Volume>> {
        let v = self.by_name.remove(name)?;
        self.by_id.remove(&v.id);
        Some(v)
    }
}

/// The engine and everything else that changes with topology.
#[derive(Clone)]
pub(crate) struct Core {
    pub(crate) engine: Engine,
    pub(crate) sessions: BTreeMap<u8, PhysSession>,
    pub(crate) next_volume_id: u32,
    /// Maps of sessions established since the last checkpoint. None has a
    /// committed grain: the group commit checkpoints before committing the first.
    pub(crate) unhardened_maps: std::collections::HashSet<timezero::MapId>,
    /// Per volume: its own map while a cascade member, and its incremental maps.
    /// Refreshed after every engine state change; a stale entry is harmless
    /// (bitmaps are checked before use).
    pub(crate) vol_maps: HashMap<VolumeId, VolMaps>,
}

/// The maps whose bits a host write to a volume may set.
#[derive(Clone, Debug, Default)]
pub(crate) struct VolMaps {
    /// The volume's own map while the volume is a cascade member.
    pub(crate) member: Option<timezero::MapId>,
    /// Incremental maps with the volume as source or target.
    pub(crate) incremental: Vec<timezero::MapId>,
}

impl Core {
    pub(crate) fn new(engine: Engine, next_volume_id: u32) -> Core {
        let mut c = Core {
            engine,
            sessions: BTreeMap::new(),
            next_volume_id,
            unhardened_maps: Default::default(),
            vol_maps: HashMap::new(),
        };
        c.refresh_vol_maps();
        c
    }

    /// Becomes `other` (a state from before an undone request, or one
    /// rebuilt from a durable root) without taking back any id this core
    /// handed out: volume serials, map and group ids stay used (docs/CLI.md:
    /// ids are never reused).
    pub(crate) fn replace_keeping_ids(&mut self, other: Core) {
        let next_volume_id = self.next_volume_id.max(other.next_volume_id);
        let counters = self.engine.id_counters();
        *self = other;
        self.next_volume_id = next_volume_id;
        self.engine.keep_id_counters(counters);
    }

    pub(crate) fn refresh_vol_maps(&mut self) {
        let mut m: HashMap<VolumeId, VolMaps> = HashMap::new();
        for info in self.engine.maps() {
            if info.cascade.is_some() {
                m.entry(info.spec.target).or_default().member = Some(info.id);
            }
            if info.spec.incremental {
                for v in [info.spec.source, info.spec.target] {
                    m.entry(v).or_default().incremental.push(info.id);
                }
            }
        }
        self.vol_maps = m;
    }
}

/// Where the next journal record goes and which root is current.
pub(crate) struct JournalCursor {
    /// Generation of the newest durable root.
    pub(crate) generation: u64,
    /// Slot holding it.
    pub(crate) slot: u32,
    /// Journal-relative offset of the next record.
    pub(crate) offset: u64,
    /// Sequence number of the next record.
    pub(crate) seq: u64,
    /// Root flags to write at checkpoints (OPEN while running).
    pub(crate) flags: u32,
}

pub(crate) struct Inner {
    pub(crate) id: String,
    /// The config it runs with: the one it was opened with, less the config
    /// volumes deleted since (`delete_volume`), so an IPL does not create
    /// them again.
    pub(crate) config: RwLock<SubsystemConfig>,
    pub(crate) dir: DataDir,
    pub(crate) lock: Mutex<Option<DataDirLock>>,
    pub(crate) options: OpenOptions,
    pub(crate) provider: Arc<dyn StoreProvider>,
    pub(crate) faults: Arc<dyn FaultPoint>,
    pub(crate) meta: MetaStore,
    pub(crate) sync: bool,
    pub(crate) topo: RwLock<()>,
    pub(crate) core: Mutex<Core>,
    pub(crate) volumes: RwLock<Volumes>,
    pub(crate) journal: Mutex<JournalCursor>,
    pub(crate) grains: GrainLocks,
    pub(crate) committer: Committer<CommitItem>,
    pub(crate) metrics: Metrics,
    pub(crate) events: broadcast::Sender<Event>,
    /// `None` after close (the table files are unlocked for the next open).
    pub(crate) tables: Mutex<Option<Tables>>,
    /// Host requests currently inside the subsystem (the copier yields to them).
    pub(crate) host_active: AtomicUsize,
    /// Maps whose background copy or cleaning failed on its last attempt:
    /// the error, until a later attempt moves data (shown by `map show`,
    /// so a copy stuck on a full disk does not look healthy).
    pub(crate) copy_stalls: Mutex<HashMap<timezero::MapId, String>>,
    pub(crate) closed: AtomicBool,
    /// A map changed state outside a control request since the last
    /// checkpoint (`cow::note_state_change`).
    pub(crate) state_dirty: AtomicBool,
    /// Why the subsystem is fenced (metadata outcome unknown), if it is.
    pub(crate) fenced: Mutex<Option<String>>,
    pub(crate) ipl_report: Mutex<IplReport>,
    /// Grains each stopping map had to clean when stopped (`cleaning`).
    pub(crate) clean_totals: Mutex<cleaning::CleanTotals>,
    /// Write freezes for a time zero across subsystems (`freeze`).
    pub(crate) freezes: freeze::Freezes,
}

/// The simulated subsystem. Cheap to clone (an `Arc` inside); every method is
/// blocking and thread safe. Dropping the last handle without [`Subsystem::close`]
/// is a crash: nothing is flushed and the data directory stays marked open.
#[derive(Clone)]
pub struct Subsystem {
    pub(crate) inner: Arc<Inner>,
}

/// How to open a subsystem; [`Subsystem::open`] uses the defaults.
#[derive(Clone)]
pub struct OpenOptions {
    /// Deliberate bug for the simulator's self-test (never set it otherwise):
    /// roots are written without flush or verification and a failed root
    /// write still moves the journal to the new generation.
    #[doc(hidden)]
    pub journal_before_durable_root: bool,
    /// Stores of volumes and metadata; default: sparse files in the data dir.
    pub provider: Option<Arc<dyn StoreProvider>>,
    /// Where [`volume_store::FaultSite`]s are checked: the copy sites, the
    /// metadata sites and, through a hook on every activity table opened,
    /// the table sites; default: none.
    pub faults: Option<Arc<dyn FaultPoint>>,
    /// Take the data directory lock (default true).
    pub lock: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            provider: None,
            faults: None,
            lock: true,
            journal_before_durable_root: false,
        }
    }
}

impl Subsystem {
    /// Creates the data directory and the subsystem, or IPLs an existing one
    /// (validates the roots, replays the journal, runs the checker if the
    /// directory was not shut down cleanly, creates config volumes that are missing).
    pub fn open(data_dir: impl AsRef<Path>, config: SubsystemConfig) -> Result<Subsystem> {
        Self::open_with(data_dir, config, OpenOptions::default())
    }

    /// [`Subsystem::open`] with explicit stores and fault sites.
    pub fn open_with(
        data_dir: impl AsRef<Path>,
        config: SubsystemConfig,
        options: OpenOptions,
    ) -> Result<Subsystem> {
        ipl::open(data_dir.as_ref(), config, options)
    }

    /// The subsystem id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The configuration it runs with: the one it was opened with, less
    /// the config volumes deleted since.
    pub fn config(&self) -> SubsystemConfig {
        self.inner.config.read().clone()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.inner.dir.root()
    }

    /// What the last open/IPL/reset found and did.
    pub fn ipl_report(&self) -> IplReport {
        self.inner.ipl_report.lock().clone()
    }

    /// Counters and the flush-latency histogram.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// Subscribes to events (state changes, progress, suspensions, checkpoints).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Clean shutdown: waits for in-flight I/O, flushes every volume, writes a
    /// root without the OPEN flag. The handle (and its clones) refuse I/O
    /// afterwards and the data directory is released, even when a flush or the
    /// root write fails (then the error is returned and the next open is a
    /// dirty IPL that runs the checker).
    pub fn close(&self) -> Result<()> {
        let _topo = self.inner.topo.write();
        if self
            .inner
            .closed
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        let result = (|| {
            self.flush_every_volume()?;
            let mut cur = self.inner.journal.lock();
            cur.flags &= !crate::meta::ROOT_FLAG_OPEN;
            self.inner.checkpoint(&mut cur)
        })();
        self.inner.tables.lock().take();
        self.inner.lock.lock().take();
        result
    }

    /// A process crash: the handle (and its clones) refuse work and the data
    /// directory is released, without flushing or writing anything. The next
    /// open is a dirty IPL.
    pub fn abandon(&self) {
        let _topo = self.inner.topo.write();
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.tables.lock().take();
        self.inner.lock.lock().take();
    }

    /// Shared topology lock for I/O, checked against a concurrent close.
    pub(crate) fn io_lock(&self) -> Result<parking_lot::RwLockReadGuard<'_, ()>> {
        let g = self.inner.topo.read();
        self.check_open()?;
        Ok(g)
    }

    /// Exclusive topology lock for control, checked against a concurrent close.
    pub(crate) fn control_lock(&self) -> Result<parking_lot::RwLockWriteGuard<'_, ()>> {
        let g = self.inner.topo.write();
        self.check_open()?;
        Ok(g)
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(err(
                ErrorKind::Offline,
                format!("subsystem {} is shut down", self.inner.id),
            ));
        }
        self.inner.check_fenced()
    }

    /// Why the subsystem is fenced, if it is (see [`ErrorKind::Fenced`]).
    pub fn fenced(&self) -> Option<String> {
        self.inner.fenced.lock().clone()
    }
}

impl Inner {
    /// Refreshes the per-volume map caches and publishes every volume's
    /// `mapped` flag (the caller holds the core lock; lock order core, then volumes).
    pub(crate) fn refresh_maps(&self, core: &mut Core) {
        core.refresh_vol_maps();
        self.publish_mapped(core);
    }

    /// Publishes the engine's [`timezero::Engine::is_plain`] to the volumes' lock-free flags.
    pub(crate) fn publish_mapped(&self, core: &Core) {
        for v in self.volumes.read().by_id.values() {
            let mapped = !core.engine.is_plain(v.id);
            v.mapped.store(mapped, std::sync::atomic::Ordering::Release);
        }
    }

    /// Runs `f` on the open activity tables.
    pub(crate) fn with_tables<T>(&self, f: impl FnOnce(&mut Tables) -> Result<T>) -> Result<T> {
        let mut t = self.tables.lock();
        let t = t.as_mut().ok_or_else(|| {
            err(
                ErrorKind::Offline,
                format!("subsystem {} is shut down", self.id),
            )
        })?;
        f(t)
    }

    pub(crate) fn volume(&self, name: &str) -> Result<Arc<Volume>> {
        let vols = self.volumes.read();
        vols.by_name.get(name).cloned().ok_or_else(|| {
            let hint = match closest(name, vols.by_name.keys().map(String::as_str)) {
                Some(c) => {
                    format!(" (did you mean {c}? ids are case-sensitive; `volume list` shows them)")
                }
                None => String::new(),
            };
            err(ErrorKind::NotFound, format!("unknown volume {name}{hint}"))
        })
    }

    /// The volume `r` names; with a serial, only if it is still that volume
    /// (a stale NBD connection must not reach a new volume of the same name).
    pub(crate) fn volume_ref(&self, r: io::VolumeRef<'_>) -> Result<Arc<Volume>> {
        let v = self.volume(r.name)?;
        match r.serial {
            Some(s) if s != v.id.0 => Err(err(
                ErrorKind::NotFound,
                format!(
                    "volume {} was deleted; the volume of that name now is another one \
                     (reconnect to use it)",
                    r.name
                ),
            )),
            _ => Ok(v),
        }
    }

    pub(crate) fn volume_by_id(&self, id: VolumeId) -> Result<Arc<Volume>> {
        self.volumes
            .read()
            .by_id
            .get(&id)
            .cloned()
            .ok_or_else(|| err(ErrorKind::NotFound, format!("unknown volume id {}", id.0)))
    }

    pub(crate) fn emit(&self, e: Event) {
        tracing::debug!(subsystem = %self.id, event = ?e, "event");
        // No receivers is fine: events are also reflected in queryable state.
        let _ = self.events.send(e);
    }

    /// Flushes one store (skipped in `nosync`), timing it.
    pub(crate) fn flush_store(&self, name: &str, store: &Arc<dyn TrackStore>) -> Result<()> {
        if !self.sync {
            return Ok(());
        }
        let t = std::time::Instant::now();
        let r = store.flush();
        self.metrics.flush_latency(t.elapsed());
        r.map_err(|e| {
            if e.kind() != volume_store::ErrorKind::Poisoned {
                self.emit(Event::StorePoisoned {
                    volume: name.to_string(),
                    reason: e.to_string(),
                });
            }
            crate::meta::store_err(&format!("flush volume {name}"), e)
        })
    }

    /// Writes a new root (engine state, volumes, hardened sessions) into the
    /// inactive slot and restarts the journal. Caller holds the journal lock,
    /// so no group commit is between its journal append and its engine commit.
    pub(crate) fn checkpoint(&self, cur: &mut JournalCursor) -> Result<()> {
        // Every state change made so far is in the payload taken below.
        self.state_dirty
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let payload = {
            let core = self.core.lock();
            let vols = self.volumes.read();
            persist::RootPayload {
                subsystem: self.id.clone(),
                volumes: vols
                    .by_name
                    .values()
                    .map(|v| persist::VolumeRecord {
                        name: v.name.clone(),
                        id: v.id.0,
                        model: v.model.to_string(),
                    })
                    .collect(),
                next_volume_id: core.next_volume_id,
                sessions: core.sessions.values().map(|s| s.record()).collect(),
                engine: core.engine.save(),
            }
        };
        let bytes = payload.encode()?;
        let slot = 1 - cur.slot;
        let generation = cur.generation + 1;
        let written = self
            .meta
            .write_root(slot, generation, cur.flags, &self.id, &bytes);
        if let Err(e) = written {
            return Err(self.fence_on(e));
        }
        cur.slot = slot;
        cur.generation = generation;
        cur.offset = 0;
        cur.seq = 1;
        {
            // Everything in the root just written is hardened (docs/DURABILITY.md).
            let mut core = self.core.lock();
            for s in core.sessions.values_mut() {
                s.hardened = true;
            }
            core.unhardened_maps.clear();
        }
        Metrics::add(&self.metrics.checkpoints, 1);
        self.emit(Event::Checkpoint { generation });
        Ok(())
    }

    /// Fences the subsystem if `e` says a metadata outcome is unknown; returns `e`.
    pub(crate) fn fence_on(
        &self,
        e: crate::error::ControllerError,
    ) -> crate::error::ControllerError {
        if e.kind() == ErrorKind::Fenced {
            let mut f = self.fenced.lock();
            if f.is_none() {
                tracing::error!(subsystem = %self.id, error = %e.full_message(), "subsystem fenced: metadata outcome unknown; IPL or reset to recover");
                *f = Some(e.message().to_string());
            }
        }
        e
    }

    /// `Err(fenced)` while the subsystem is fenced.
    pub(crate) fn check_fenced(&self) -> Result<()> {
        match &*self.fenced.lock() {
            None => Ok(()),
            Some(why) => Err(err(
                ErrorKind::Fenced,
                format!(
                    "subsystem {} is fenced ({why}); IPL it (`firmware-sim \
                     event ipl`, or restart firmware-sim) to recover from its \
                     durable state",
                    self.id
                ),
            )),
        }
    }

    /// Checkpoints if the journal has grown past its budget.
    pub(crate) fn maybe_checkpoint(&self, cur: &mut JournalCursor) {
        if cur.offset >= JOURNAL_CHECKPOINT_BYTES {
            if let Err(e) = self.checkpoint(cur) {
                tracing::warn!(subsystem = %self.id, error = %e.full_message(), "periodic checkpoint failed");
            }
        }
    }
}

/// The one name in `names` that `typed` is probably a typo of: equal but for
/// case, or one character added, dropped or changed (names of 3 or more).
fn closest<'a>(typed: &str, names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let near = |n: &str| {
        if n.eq_ignore_ascii_case(typed) {
            return true;
        }
        let (a, b): (Vec<char>, Vec<char>) = (typed.chars().collect(), n.chars().collect());
        if a.len().min(b.len()) < 3 || a.len().abs_diff(b.len()) > 1 {
            return false;
        }
        // One edit: skip the first difference in the longer (or both).
        let Some(i) = a.iter().zip(&b).position(|(x, y)| x != y) else {
            return true; // one is the other plus a last character
        };
        match a.len().cmp(&b.len()) {
            std::cmp::Ordering::Equal => a[i + 1..] == b[i + 1..],
            std::cmp::Ordering::Less => a[i..] == b[i + 1..],
            std::cmp::Ordering::Greater => a[i + 1..] == b[i..],
        }
    };
    let mut hits = names.filter(|n| near(n));
    match (hits.next(), hits.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

#[cfg(test)]
mod closest_tests {
    use super::closest;

    #[test]
    fn typos_of_one_character_or_case_name_the_volume() {
        let names = ["FB00", "FB01", "CKD00"];
        let c = |t: &str| closest(t, names.iter().copied());
        assert_eq!(c("fb00"), Some("FB00"));
        assert_eq!(c("CKD0"), Some("CKD00"));
        assert_eq!(c("CKD000"), Some("CKD00"));
        assert_eq!(c("CXD00"), Some("CKD00"));
        // Two candidates (FB00, FB01) or none: no guess.
        assert_eq!(c("FB0"), None);
        assert_eq!(c("NOPE"), None);
    }
}
