//! The controller world: the real `controller::Subsystem` (and through it the
//! engine, the journal and the activity tables) over [`SimStores`], driven by
//! the workload, with faults from a [`FaultPlan`], crashes and IPLs, and the
//! model checked after every step (recovery checks live in `recovery`).
//!
//! Host flushes are the only flushes the model trusts; a start is preceded by
//! a host flush of its source so the point-in-time image is made of durable
//! data. Map state changes are read back from the subsystem after every
//! operation: a map that became stopped makes its target undefined; a map
//! that became copying during a start snapshots its source in the model.

use std::collections::BTreeMap;
use std::sync::Arc;

use controller::{
    ErrorKind, GroupId, MapCreate, MapId, MapState, OpenOptions, Subsystem, SubsystemConfig,
    VolumeConfig,
};
use geometry::DeviceModel;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use volume_store::{FaultInjector, FaultPoint};

use crate::check::{Invariant, Violation};
use crate::data::SECTOR_BYTES;
use crate::faults::FaultPlan;
use crate::model::{Model, ReadCheck};
use crate::seed::Seeds;
use crate::stores::{Bug, SimStores};
use crate::summary::RunStats;
use crate::trace::Trace;
use crate::verify::{verify_volume, TrackRead};
use crate::workload::{HostWrite, Op, Shape};
use crate::world::World;

/// The subsystem under test, its stores, the model and the run's state.
pub struct ControllerWorld {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: SubsystemConfig,
    pub(crate) stores: SimStores,
    pub(crate) injector: Arc<FaultInjector>,
    pub(crate) plan: FaultPlan,
    pub(crate) sub: Option<Subsystem>,
    pub(crate) model: Model,
    pub(crate) slots: Vec<MapId>,
    pub(crate) ends: BTreeMap<u32, (usize, usize)>,
    pub(crate) states: BTreeMap<u32, MapState>,
    pub(crate) shape: Shape,
    pub(crate) names: Vec<String>,
    pub(crate) disk_rng: ChaCha8Rng,
    /// Signatures of known bugs to count instead of failing on.
    pub(crate) tolerate: Vec<String>,
    /// Trace lines produced inside an operation, recorded after its own line.
    pub(crate) notes: Vec<String>,
    /// The resource manager and its sessions.
    pub(crate) sessions: Option<crate::sessions::Sessions>,
    /// Crash images to check per operation (0 = no crash-point enumeration).
    pub(crate) capture_budget: usize,
    /// Counters of this run.
    pub stats: RunStats,
}

/// Why a world could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot boot the simulated subsystem: {0}")]
pub struct BootError(pub String);

impl ControllerWorld {
    /// Boots a subsystem of `shape` with the faults of `plan`; `bug` switches
    /// a deliberate bug on.
    pub fn new(
        shape: Shape,
        seeds: &Seeds,
        plan: FaultPlan,
        bug: Option<Bug>,
    ) -> Result<ControllerWorld, BootError> {
        let track_bytes = shape.sectors_per_track * SECTOR_BYTES as u64;
        let model = DeviceModel::Fb {
            size_bytes: shape.tracks * track_bytes,
            track_size_bytes: track_bytes,
        };
        let names: Vec<String> = (0..shape.volumes).map(|i| format!("v{i}")).collect();
        let config = SubsystemConfig {
            id: "SIM01".into(),
            durability: Default::default(),
            listen: Default::default(),
            nbd: Default::default(),
            rates: Default::default(),
            volumes: names
                .iter()
                .map(|n| VolumeConfig {
                    id: n.clone(),
                    model,
                    read_only: false,
                })
                .collect(),
            peers: Vec::new(),
            host: None,
        };
        let dir = sim_tempdir().map_err(|e| BootError(e.to_string()))?;
        let stores = SimStores::new(seeds.disk);
        stores.set_bug(bug);
        let injector = Arc::new(plan.injector(seeds.faults));
        let mut w = ControllerWorld {
            dir,
            config,
            stores,
            injector,
            plan,
            sub: None,
            model: Model::new(shape.volumes, shape.tracks, track_bytes),
            slots: Vec::new(),
            ends: BTreeMap::new(),
            states: BTreeMap::new(),
            shape,
            names,
            disk_rng: ChaCha8Rng::seed_from_u64(seeds.disk),
            capture_budget: 0,
            sessions: None,
            notes: Vec::new(),
            tolerate: Vec::new(),
            stats: RunStats::default(),
        };
        w.injector.set_enabled(false);
        let sub = w.open().map_err(|e| BootError(e.full_message()))?;
        w.sessions = Some(crate::sessions::Sessions::new(sub.clone()).map_err(BootError)?);
        w.sub = Some(sub);
        w.plan.install(&w.stores, &w.names);
        w.injector.set_enabled(true);
        Ok(w)
    }

    /// Enables crash-point enumeration: up to `budget` flush boundaries per
    /// operation get their crash images recovered and checked.
    pub fn with_crash_points(mut self, budget: usize) -> ControllerWorld {
        self.capture_budget = budget;
        self
    }

    pub(crate) fn open(&self) -> controller::Result<Subsystem> {
        let options = OpenOptions {
            provider: Some(Arc::new(self.stores.clone())),
            faults: Some(self.injector.clone() as Arc<dyn FaultPoint>),
            lock: true,
            journal_before_durable_root: self.stores.bug() == Some(Bug::JournalBeforeRoot),
        };
        Subsystem::open_with(self.dir.path(), self.config.clone(), options)
    }

    /// The running subsystem, if up.
    pub fn subsystem(&self) -> Option<&Subsystem> {
        self.sub.as_ref()
    }

    pub(crate) fn sub(&self) -> Result<&Subsystem, Violation> {
        self.sub.as_ref().ok_or_else(|| {
            Violation::new(Invariant::Ipl1, "the subsystem is down after a failed IPL")
        })
    }

    pub(crate) fn track_bytes(&self) -> u64 {
        self.shape.sectors_per_track * SECTOR_BYTES as u64
    }

    fn map_outcome(r: controller::Result<()>) -> String {
        match r {
            Ok(()) => "ok".into(),
            // Not answered as failed: whether it happened is up to the IPL.
            Err(e) if e.kind() == ErrorKind::Fenced => {
                format!("unknown (fenced): {}", e.full_message())
            }
            Err(e) => format!("rejected ({}): {}", e.kind().as_str(), e.full_message()),
        }
    }

    fn apply_inner(&mut self, op: &Op) -> Result<String, Violation> {
        let out = match *op {
            Op::Write { .. } | Op::WriteFua { .. } | Op::Trim { .. } | Op::WriteZeroes { .. } => {
                let w = op.host_write().expect("a host data operation");
                self.host_write(w, matches!(op, Op::Trim { .. }))?
            }
            Op::WriteBatch { vol, ref writes } => self.host_write_batch(vol, writes)?,
            Op::Flush { vol } => self.host_flush(vol)?,
            Op::CreateMap {
                source,
                target,
                copy_type,
                copy_rate,
                incremental,
            } => {
                let mut req = MapCreate::new(&self.names[source], &self.names[target], copy_type);
                req.copy_rate = Some(copy_rate);
                req.incremental = incremental;
                match self.sub()?.create_map(&req) {
                    Ok(id) => {
                        self.slots.push(id);
                        self.ends.insert(id.0, (source, target));
                        format!("ok {id}")
                    }
                    Err(e) => format!("rejected: {}", e.full_message()),
                }
            }
            Op::Start { slot, restore } => {
                let id = self.slots[slot];
                match self.group_of(id)? {
                    Some(g) => self.start_group(g, restore)?,
                    None => match self.flush_sources(&[id])? {
                        Some(failed) => failed,
                        None => Self::map_outcome(self.sub()?.start_map(id, restore)),
                    },
                }
            }
            Op::StartGroup {
                a,
                b,
                restore,
                keep,
            } => {
                let maps = [self.slots[a], self.slots[b]];
                match self.sub()?.create_group(&maps, false) {
                    Err(e) => Self::map_outcome(Err(e)),
                    Ok(g) => {
                        let out = self.start_group(g, restore)?;
                        if !keep || out != "ok" {
                            // The maps leave the group as the start left them.
                            let gone = Self::map_outcome(self.sub()?.delete_group(g, true));
                            format!("{out}; group {} deleted: {gone}", g.0)
                        } else {
                            format!("{out}; group {} kept", g.0)
                        }
                    }
                }
            }
            Op::Stop { slot, force } => {
                let id = self.slots[slot];
                match self.group_of(id)? {
                    Some(g) => Self::map_outcome(self.sub()?.stop_group(g, force)),
                    None => Self::map_outcome(self.sub()?.stop_map(id, force)),
                }
            }
            Op::Delete { slot, force } => {
                let id = self.slots[slot];
                let left = match self.group_of(id)? {
                    // A kept group lets its maps go before one is deleted.
                    Some(g) => format!(
                        "group {} deleted: {}; ",
                        g.0,
                        Self::map_outcome(self.sub()?.delete_group(g, true))
                    ),
                    None => String::new(),
                };
                let out = Self::map_outcome(self.sub()?.delete_map(id, force));
                format!("{left}{out}")
            }
            Op::Suspend { .. } => "n/a (maps are suspended by failures only)".into(),
            Op::Resume { slot } => Self::map_outcome(self.sub()?.resume_map(self.slots[slot])),
            Op::CopyStep { slot, grains } => {
                let budget = grains as u64 * self.track_bytes();
                match self.sub()?.copy_map(self.slots[slot], budget) {
                    Ok((g, b)) => format!("{g} grains {b} bytes"),
                    Err(e) => format!("failed: {}", e.full_message()),
                }
            }
            Op::Crash {
                kind,
                during_replay,
            } => self.crash_and_ipl(kind, during_replay)?,
            Op::Reset { lose_volatile } => self.reset(lose_volatile)?,
            Op::StartSession {
                source,
                target,
                first,
                tracks,
                program,
            } => self.start_session(source, target, first, tracks, program)?,
            Op::CompleteSession { slot } => self.complete_session(slot)?,
            Op::Host(e) => self.host_event(e)?,
            Op::Recreate { vol, sectors } => self.recreate(vol, sectors)?,
        };
        Ok(out)
    }

    /// Deletes volume `vol` and creates it again under its name and model.
    /// Refused (a map or session uses it) or undone: nothing changed.
    /// Unknown (fenced; the caller IPLs): the old data or zeros, as the IPL
    /// decides. Deleted: zeros for good, whatever follows. Deleted but not
    /// created again: the world IPLs at once (a process crash), and the IPL
    /// creates the config volume again, empty.
    fn recreate(&mut self, vol: usize, sectors: u64) -> Result<String, Violation> {
        let (id, _) = self.model.zero_write(sectors);
        let name = self.names[vol].clone();
        let model = self.config.volumes[vol].model;
        match self.sub()?.delete_volume(&name) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Fenced => {
                self.model.write_done(vol, 0, sectors, id, false);
                return Ok(format!("unknown (fenced): {}", e.full_message()));
            }
            Err(e) => {
                return Ok(format!(
                    "rejected ({}): {}",
                    e.kind().as_str(),
                    e.full_message()
                ))
            }
        }
        self.model.write_done(vol, 0, sectors, id, true);
        self.model.flushed_range(vol, 0, sectors);
        let out = match self.sub()?.create_volume(&name, model) {
            Ok(_) => "ok".to_string(),
            Err(e) if e.kind() == ErrorKind::Fenced => {
                format!("deleted; create unknown (fenced): {}", e.full_message())
            }
            Err(e) => {
                let why = e.full_message();
                let ipl = self.crash_and_ipl(crate::workload::CrashKind::Process, false)?;
                format!("deleted; create failed ({why}); {ipl}")
            }
        };
        // The new store gets the run's store faults too.
        self.plan.install_volume(&self.stores, &name);
        Ok(out)
    }

    /// A host write, FUA write, trim (`trim`) or write of zeros. Refused
    /// (offline, state): nothing happened. Failed: its sectors are uncertain.
    /// Acknowledged: its sectors read the new id (0 for zeros), durable at
    /// once if FUA.
    fn host_write(&mut self, w: HostWrite, trim: bool) -> Result<String, Violation> {
        let HostWrite {
            vol,
            sector,
            sectors,
            zeros,
            fua,
        } = w;
        let (id, data) = if zeros {
            self.model.zero_write(sectors)
        } else {
            self.model.new_write(sector, sectors)
        };
        let sub = self.sub()?;
        let name = &self.names[vol];
        let off = sector * SECTOR_BYTES as u64;
        let len = sectors * SECTOR_BYTES as u64;
        let r = if trim {
            sub.discard(name, off, len, fua)
        } else if zeros {
            sub.write_zeroes(name, off, len, fua)
        } else {
            sub.write(name, off, &data, fua)
        };
        Ok(self.write_outcome(vol, sector, sectors, id, fua, r))
    }

    /// Writes a client had in flight together, as one batch
    /// (`Subsystem::write_many`): each outcome is recorded as
    /// [`ControllerWorld::host_write`] records one, in the batch's order.
    fn host_write_batch(&mut self, vol: usize, writes: &[(u64, u64)]) -> Result<String, Violation> {
        let made: Vec<(u32, Vec<u8>)> = writes
            .iter()
            .map(|&(sector, sectors)| self.model.new_write(sector, sectors))
            .collect();
        let sub = self.sub()?;
        let name = &self.names[vol];
        let batch: Vec<(u64, &[u8])> = writes
            .iter()
            .zip(&made)
            .map(|(&(sector, _), (_, data))| (sector * SECTOR_BYTES as u64, data.as_slice()))
            .collect();
        let outcomes = sub.write_many(name, &batch);
        if outcomes.len() != writes.len() {
            return Err(Violation::new(
                Invariant::Pit2,
                format!(
                    "write_many gave {} outcomes for {} writes",
                    outcomes.len(),
                    writes.len()
                ),
            ));
        }
        let mut text = Vec::with_capacity(writes.len());
        for ((&(sector, sectors), (id, _)), r) in writes.iter().zip(&made).zip(outcomes) {
            text.push(self.write_outcome(vol, sector, sectors, *id, false, r));
        }
        Ok(text.join("; "))
    }

    /// Records a host write's outcome in the model. Refused (offline,
    /// state): nothing happened. Failed: its sectors are uncertain.
    /// Acknowledged: its sectors read the new id, durable at once if FUA.
    fn write_outcome(
        &mut self,
        vol: usize,
        sector: u64,
        sectors: u64,
        id: u32,
        fua: bool,
        r: controller::Result<()>,
    ) -> String {
        match r {
            Ok(()) => {
                self.model.write_done(vol, sector, sectors, id, true);
                if fua {
                    self.model.flushed_range(vol, sector, sectors);
                }
                self.stats.writes_acked += 1;
                format!("ok #{id}")
            }
            Err(e) if matches!(e.kind(), ErrorKind::Offline | ErrorKind::State) => {
                format!("refused #{id}: {}", e.kind().as_str())
            }
            Err(e) => {
                self.model.write_done(vol, sector, sectors, id, false);
                format!("failed #{id}: {}", e.full_message())
            }
        }
    }

    fn group_of(&self, id: MapId) -> Result<Option<GroupId>, Violation> {
        Ok(self.sub()?.map(id).ok().and_then(|m| m.group).map(GroupId))
    }

    /// Flushes the sources of `maps` (the model's images are then defined);
    /// `Some(outcome)` when one failed.
    fn flush_sources(&mut self, maps: &[MapId]) -> Result<Option<String>, Violation> {
        for id in maps {
            let (source, _) = self.ends[&id.0];
            let flushed = self.host_flush(source)?;
            if flushed != "ok" {
                return Ok(Some(format!("source flush failed: {flushed}")));
            }
        }
        Ok(None)
    }

    /// Starts group `g` (its sources flushed first).
    fn start_group(&mut self, g: GroupId, restore: bool) -> Result<String, Violation> {
        let members: Vec<MapId> = self
            .sub()?
            .groups()
            .into_iter()
            .find(|x| x.id == g.0)
            .map(|x| x.members.into_iter().map(MapId).collect())
            .unwrap_or_default();
        Ok(match self.flush_sources(&members)? {
            Some(failed) => failed,
            None => Self::map_outcome(self.sub()?.start_group(g, restore)),
        })
    }

    pub(crate) fn host_flush(&mut self, vol: usize) -> Result<String, Violation> {
        let sub = self.sub()?;
        let name = &self.names[vol];
        match self.stores.honest(|| sub.flush(name)) {
            Ok(()) => {
                self.model.flushed(vol);
                Ok("ok".into())
            }
            Err(e) => Ok(format!("failed: {}", e.full_message())),
        }
    }

    /// Reads map states back; a newly stopped map makes its target
    /// undefined; a map that started during `op` snapshots its source.
    pub(crate) fn sync_states(&mut self, op: Option<&Op>) -> Result<(), Violation> {
        let maps = self.sub()?.maps();
        let mut now = BTreeMap::new();
        let mut starts = Vec::new();
        for m in &maps {
            now.insert(m.id, m.state);
            let before = self.states.get(&m.id).copied();
            if before == Some(m.state) {
                continue;
            }
            self.notes.push(format!(
                "  map{} {:?} -> {}",
                m.id,
                before.map(|s| s.to_string()),
                m.state
            ));
            let Some(&(source, target)) = self.ends.get(&m.id) else {
                continue;
            };
            if op.is_some_and(Op::starts_maps) && is_start(before, m.state) {
                starts.push((source, target));
            }
            if m.state == MapState::Stopped {
                self.model.forget(target);
            }
        }
        self.model.snapshot_group(&starts);
        // A map that vanished (deleted) leaves its target with whatever it
        // holds unless the copy was complete (idle_or_copied).
        for (id, st) in &self.states {
            if !now.contains_key(id) {
                self.notes.push(format!("  map{id} {st} -> deleted"));
                if *st != MapState::IdleOrCopied {
                    if let Some(&(_, target)) = self.ends.get(id) {
                        self.model.forget(target);
                    }
                }
            }
        }
        self.states = now;
        Ok(())
    }

    /// A violation whose signature is tolerated (a known, reported bug) is
    /// counted and swallowed; any other is returned.
    pub(crate) fn known(&mut self, v: Violation) -> Result<(), Violation> {
        let sig = crate::summary::signature(&v);
        if self.tolerate.iter().any(|t| sig.contains(t.as_str())) {
            *self.stats.tolerated.entry(sig).or_default() += 1;
            Ok(())
        } else {
            Err(v)
        }
    }

    /// Tolerates violations whose signature contains one of `texts`.
    pub fn tolerating(mut self, texts: &[&str]) -> ControllerWorld {
        self.tolerate = texts.iter().map(|t| t.to_string()).collect();
        self
    }

    /// Records the notes gathered since the last call.
    pub(crate) fn flush_notes(&mut self, trace: &mut Trace) {
        for n in self.notes.drain(..) {
            trace.record(n);
        }
    }

    /// Counts the faults injected so far into the run's figures.
    pub(crate) fn count_faults(&mut self) {
        for (site, st) in self.injector.all_stats() {
            if st.faults > 0 {
                self.stats.faults.insert(site.to_string(), st.faults);
            }
        }
        for (k, v) in self.stores.injected() {
            self.stats.faults.insert(k, v);
        }
    }

    fn verify_all(&mut self, mode: ReadCheck) -> Result<(), Violation> {
        let maps = self.sub()?.maps();
        let cascades = self.sub()?.cascades();
        let tb = self.track_bytes() as usize;
        let allow_failed = self.plan.any();
        let offline = offline_volumes(&maps, &cascades);
        for vol in 0..self.shape.volumes {
            let name = self.names[vol].clone();
            let role = role_of_named(&name, &maps, &cascades);
            let sub = self
                .sub
                .as_ref()
                .ok_or_else(|| Violation::new(Invariant::Ipl1, "subsystem down"))?;
            let plan = &self.plan;
            verify_volume(
                &mut self.model,
                vol,
                &name,
                role,
                mode,
                allow_failed,
                &mut self.stats,
                |t| {
                    let mut buf = vec![0u8; tb];
                    let r = sub.read(&name, t * tb as u64, &mut buf).map(|()| buf);
                    judge_read(r, &name, t, &offline, plan)
                },
            )?;
        }
        Ok(())
    }

    /// COW-1 against the model: for every active map, every grain its split
    /// bitmap says the target holds must hold the target's image *in the
    /// target's own store* (read physically, past the controller), whatever
    /// the engine believes.
    fn check_cow(&mut self) -> Result<(), Violation> {
        use volume_store::TrackStore;
        let maps = self.sub()?.maps();
        let tb = self.track_bytes() as usize;
        for m in maps.iter().filter(|m| {
            matches!(m.state, MapState::Copying | MapState::Stopping) && m.cascade.is_some()
        }) {
            let Some(target) = self.names.iter().position(|n| *n == m.target) else {
                continue;
            };
            let Some(bits) = self.sub()?.split_bitmap(MapId(m.id)) else {
                continue;
            };
            let Some(store) = self.stores.volume(&m.target) else {
                continue;
            };
            self.stats.checked(Invariant::Cow1);
            for g in 0..self.shape.tracks.min(bits.len()) {
                if !bits.get(g) {
                    continue;
                }
                let mut buf = vec![0u8; tb];
                // A latent error on the track: the controller would refuse too.
                if store.faulty().read_at(g * tb as u64, &mut buf).is_err() {
                    continue;
                }
                self.stats.tracks_verified += 1;
                self.model
                    .check_track(target, g, &buf, ReadCheck::Now)
                    .map_err(|mm| {
                        Violation::new(
                            Invariant::Cow1,
                            format!("map{} grain split, target store holds: {mm}", m.id),
                        )
                        .on(m.target.clone(), Some(g))
                    })?;
            }
        }
        Ok(())
    }

    pub(crate) fn verify_after_crash(&mut self) -> Result<(), Violation> {
        self.verify_all(ReadCheck::AfterCrash)
    }
}

/// A temporary data directory: under `SIM_TMPDIR` if set, else in memory
/// (`/dev/shm`) when available (the activity tables sync on every append and
/// the simulation needs no real disk), else the system temp dir.
pub fn sim_tempdir() -> std::io::Result<tempfile::TempDir> {
    if let Some(d) = std::env::var_os("SIM_TMPDIR") {
        return tempfile::Builder::new().prefix("sim-").tempdir_in(d);
    }
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new().prefix("sim-").tempdir_in(shm) {
            return Ok(d);
        }
    }
    tempfile::tempdir()
}

/// [`crate::verify::role_of`] for the controller's named views.
pub(crate) fn role_of_named(
    name: &str,
    maps: &[controller::MapView],
    cascades: &[controller::CascadeView],
) -> Invariant {
    let Some(m) = maps
        .iter()
        .find(|m| m.target == name && m.state.is_active())
    else {
        return Invariant::Pit2;
    };
    crate::verify::role_of_target(
        m.cascade
            .and_then(|c| cascades.iter().find(|x| x.id == c))
            .map(|c| c.members.len()),
    )
}

impl World for ControllerWorld {
    fn map_slots(&self) -> usize {
        self.slots.len()
    }

    fn session_slots(&self) -> usize {
        self.sessions.as_ref().map_or(0, |s| s.ids.len())
    }

    fn apply(&mut self, op: &Op, trace: &mut Trace) -> Result<(), Violation> {
        self.stats.steps += 1;
        let pre_model = (self.capture_budget > 0).then(|| self.model.clone());
        let pre_states = self.states.clone();
        if self.capture_budget > 0 {
            self.stores
                .arm_capture(self.capture_budget, self.stats.steps);
        }
        let out = self.apply_inner(op);
        let captured = if self.capture_budget > 0 {
            self.stores.take_capture()
        } else {
            Vec::new()
        };
        let mut out = out?;
        let fenced = self.sub.as_ref().is_some_and(|s| s.fenced().is_some());
        if fenced {
            let recovered = self.recover_from_fence(op)?;
            out = format!("{out}; fenced, crash and {recovered}");
        }
        trace.record(format!("{op} -> {out}"));
        let control = matches!(
            op,
            Op::CreateMap { .. }
                | Op::Start { .. }
                | Op::StartGroup { .. }
                | Op::Stop { .. }
                | Op::Delete { .. }
                | Op::Resume { .. }
                | Op::StartSession { .. }
                | Op::CompleteSession { .. }
                | Op::Recreate { .. }
        );
        if control && !fenced && out.starts_with("rejected") {
            // A rejected request must change nothing: anything it left
            // behind lives in memory only and an IPL would undo it.
            let now: BTreeMap<u32, MapState> =
                self.sub()?.maps().iter().map(|m| (m.id, m.state)).collect();
            self.stats.checked(Invariant::Ipl1);
            if now != pre_states {
                let v = Violation::new(
                    Invariant::Ipl1,
                    format!(
                        "failed control request changed state in memory only: before {pre_states:?}, after {now:?}"
                    ),
                );
                self.known(v)?;
                // Tolerated: return to the durable state and go on. A process
                // crash, not a clean close: a close would checkpoint the very
                // in-memory state the bug left behind.
                if let Some(s) = self.sub.take() {
                    s.abandon();
                }
                self.stores
                    .crash(volume_store::CrashMode::KeepAll)
                    .map_err(|e| {
                        Violation::new(
                            Invariant::Ipl1,
                            format!("crash image for a tolerated finding: {e}"),
                        )
                    })?;
                self.injector.set_enabled(false);
                FaultPlan::set_enabled(&self.stores, false);
                let opened = self.open();
                FaultPlan::set_enabled(&self.stores, true);
                self.injector.set_enabled(true);
                let sub = opened.map_err(|e| {
                    Violation::new(
                        Invariant::Ipl1,
                        format!("IPL after a tolerated finding failed: {}", e.full_message()),
                    )
                })?;
                if let Some(sess) = self.sessions.as_ref() {
                    sess.port.replace(sub.clone());
                }
                self.sub = Some(sub);
                trace.record(
                    "  tolerated known bug: process crash and IPL back to the durable state",
                );
            }
        }
        self.sync_states(Some(op))?;
        self.flush_notes(trace);
        self.count_faults();
        if let Some(pre) = pre_model {
            self.check_captured(op, pre, &pre_states, captured, trace)?;
        }
        Ok(())
    }

    fn check_all(&mut self) -> Result<(), Violation> {
        self.verify_all(ReadCheck::Now)?;
        self.check_cow()
    }

    fn settle_live(&mut self, trace: &mut Trace) -> Result<(), Violation> {
        self.live(trace)
    }

    fn stats(&self) -> &RunStats {
        &self.stats
    }
}

/// Volumes a map state takes offline, with the reason: the target of a
/// preparing, prepared, stopping or stopped map; both volumes of a suspended
/// map, and every volume whose reads may resolve through its bitmap (the
/// volumes its cascade is linked with: heads, members, and cascades joined
/// through a restore's frozen head) (the engine's access rule, semantics 3.4).
pub(crate) fn offline_volumes(
    maps: &[controller::MapView],
    cascades: &[controller::CascadeView],
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    // Linked volumes: union of every cascade's head and members.
    let mut group: BTreeMap<String, usize> = BTreeMap::new();
    for (i, c) in cascades.iter().enumerate() {
        let vols: Vec<&String> = std::iter::once(&c.head).chain(&c.members).collect();
        let joined: Vec<usize> = vols.iter().filter_map(|v| group.get(*v).copied()).collect();
        for (_, g) in group.iter_mut() {
            if joined.contains(g) {
                *g = i;
            }
        }
        for v in vols {
            group.insert(v.clone(), i);
        }
    }
    for m in maps.iter().filter(|m| m.state == MapState::Suspended) {
        let linked = [&m.source, &m.target]
            .iter()
            .filter_map(|v| group.get(*v).copied())
            .collect::<Vec<_>>();
        for (v, g) in &group {
            if linked.contains(g) {
                out.insert(v.clone(), format!("linked to suspended map{}", m.id));
            }
        }
    }
    for m in maps {
        use MapState as S;
        match m.state {
            S::Preparing | S::Prepared | S::Stopping | S::Stopped => {
                out.insert(
                    m.target.clone(),
                    format!("target of map{} ({})", m.id, m.state),
                );
            }
            S::Suspended => {
                for v in [&m.source, &m.target] {
                    out.insert(v.clone(), format!("volume of suspended map{}", m.id));
                }
            }
            _ => {}
        }
    }
    out
}

/// What a read of `track` of `name` tells the checker: data; a refusal the
/// model justifies (a map state in `offline`); a failure a fault justifies
/// (a latent error the plan put on that track of some volume, which a read
/// may resolve through); else [`TrackRead::Unjustified`].
pub(crate) fn judge_read(
    r: controller::Result<Vec<u8>>,
    name: &str,
    track: u64,
    offline: &BTreeMap<String, String>,
    plan: &FaultPlan,
) -> TrackRead {
    match r {
        Ok(buf) => TrackRead::Data(buf),
        Err(e) if matches!(e.kind(), ErrorKind::Offline | ErrorKind::State) => {
            match offline.get(name) {
                Some(_) => TrackRead::Refused(e.full_message()),
                None => TrackRead::Unjustified(format!(
                    "read refused but no map state takes {name} offline: {}",
                    e.full_message()
                )),
            }
        }
        Err(e) if plan.latent.iter().any(|&(_, t)| t == track) => {
            TrackRead::Failed(e.full_message())
        }
        Err(e) => TrackRead::Unjustified(format!(
            "read failed with no fault on track {track}: {}",
            e.full_message()
        )),
    }
}

/// Whether a map that went from `before` to `now` during a start took a
/// new image (a resume of a suspended map takes none).
pub(crate) fn is_start(before: Option<MapState>, now: MapState) -> bool {
    now == MapState::Copying
        && matches!(
            before,
            Some(
                MapState::IdleOrCopied
                    | MapState::Stopped
                    | MapState::Preparing
                    | MapState::Prepared
            )
        )
}
