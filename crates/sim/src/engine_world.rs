//! The engine-only world: the pure `timezero` engine over in-memory grain
//! stores, executing plans exactly as the engine's plan/commit contract says.
//!
//! It has no crash model for data (memory is its durable medium); its "crash"
//! saves the engine state and loads it back, as an IPL of a controller whose
//! data and metadata were all durable would. It exists so the loop, the model
//! and the checkers are exercised independently of the controller, and to
//! check the engine's plans in isolation: a PIT violation here is an engine
//! bug, not a durability bug.

use std::collections::BTreeMap;

use geometry::{DeviceModel, Geometry};
use timezero::{Engine, EngineEvent, GrainCopy, MapId, MapSpec, MapState, StartOptions, VolumeId};
use volume_store::{MemStore, TrackStore};

use crate::check::{Invariant, Violation};
use crate::data::SECTOR_BYTES;
use crate::model::{Model, ReadCheck};
use crate::summary::RunStats;
use crate::trace::Trace;
use crate::verify::{role_of, verify_volume, TrackRead};
use crate::workload::{Op, Shape};
use crate::world::World;

/// The engine, one store per volume, the model, and the map slots.
pub struct EngineWorld {
    engine: Engine,
    stores: Vec<MemStore>,
    model: Model,
    slots: Vec<MapId>,
    ends: BTreeMap<MapId, (usize, usize)>,
    shape: Shape,
    /// Counters of this run.
    pub stats: RunStats,
}

fn vid(i: usize) -> VolumeId {
    VolumeId(i as u32)
}

impl EngineWorld {
    /// A world of `shape` (track size `sectors_per_track * 512`), all zeros.
    pub fn new(shape: Shape) -> EngineWorld {
        let track_bytes = shape.sectors_per_track * SECTOR_BYTES as u64;
        let model = DeviceModel::Fb {
            size_bytes: shape.tracks * track_bytes,
            track_size_bytes: track_bytes,
        };
        let geometry = Geometry::new(model).expect("sim shapes are valid FB geometries");
        let mut engine = Engine::new();
        let mut stores = Vec::new();
        for i in 0..shape.volumes {
            engine
                .add_volume(vid(i), shape.tracks)
                .expect("fresh engine");
            stores.push(MemStore::with_id(&format!("v{i}"), geometry));
        }
        EngineWorld {
            engine,
            stores,
            model: Model::new(shape.volumes, shape.tracks, track_bytes),
            slots: Vec::new(),
            ends: BTreeMap::new(),
            shape,
            stats: RunStats::default(),
        }
    }

    /// The engine (for tests).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn track_bytes(&self) -> usize {
        self.shape.sectors_per_track as usize * SECTOR_BYTES
    }

    fn read_phys(&self, vol: VolumeId, track: u64) -> Vec<u8> {
        let mut buf = vec![0u8; self.track_bytes()];
        // In-range by construction; MemStore reads cannot fail otherwise.
        self.stores[vol.0 as usize]
            .read_track(track, &mut buf)
            .expect("in-range track read");
        buf
    }

    fn execute(&mut self, copies: &[GrainCopy]) {
        for c in copies {
            if c.from != c.to {
                let data = self.read_phys(c.from, c.grain);
                self.stores[c.to.0 as usize]
                    .write_track(c.grain, &data)
                    .expect("in-range track write");
            }
        }
        self.engine.commit_copies(copies);
    }

    fn apply_op(&mut self, op: &Op, trace: &mut Trace) -> Result<(), Violation> {
        self.stats.steps += 1;
        let outcome = match *op {
            Op::Write {
                vol,
                sector,
                sectors,
            }
            | Op::WriteFua {
                vol,
                sector,
                sectors,
            } => self.write(vol, sector, sectors, false),
            // No durability in the engine world: zeros are a plain write of
            // zeros, FUA a plain write.
            Op::Trim {
                vol,
                sector,
                sectors,
            }
            | Op::WriteZeroes {
                vol,
                sector,
                sectors,
                ..
            } => self.write(vol, sector, sectors, true),
            Op::WriteBatch { vol, ref writes } => {
                let outs: Vec<String> = writes
                    .iter()
                    .map(|&(sector, sectors)| self.write(vol, sector, sectors, false))
                    .collect();
                outs.join("; ")
            }
            Op::Flush { vol } => {
                self.model.flushed(vol);
                "ok".to_string()
            }
            Op::CreateMap {
                source,
                target,
                copy_type,
                copy_rate,
                incremental,
            } => {
                let mut spec = MapSpec::new(vid(source), vid(target), copy_type);
                spec.copy_rate = copy_rate;
                spec.incremental = incremental;
                match self.engine.create_map(spec) {
                    Ok(id) => {
                        self.slots.push(id);
                        self.ends.insert(id, (source, target));
                        format!("ok {id}")
                    }
                    Err(e) => format!("rejected: {e}"),
                }
            }
            Op::Start { slot, restore } => {
                let id = self.slots[slot];
                match self.group_of(id) {
                    Some(g) => self.start_group(g, restore),
                    None => self.start_group_of(&[id], restore, |e, o| e.start(id, o)),
                }
            }
            Op::StartGroup {
                a,
                b,
                restore,
                keep,
            } => {
                let (ma, mb) = (self.slots[a], self.slots[b]);
                let g = self.engine.create_group(false);
                let added = self
                    .engine
                    .add_to_group(ma, g)
                    .and_then(|()| self.engine.add_to_group(mb, g));
                let out = match added {
                    Ok(()) => self.start_group(g, restore),
                    Err(e) => format!("rejected: {e}"),
                };
                if !keep || !out.starts_with("ok") {
                    // The maps leave the group as the start left them.
                    let _ = self.engine.delete_group(g, true);
                }
                format!("{out} (group {})", g.0)
            }
            Op::Stop { slot, force } => {
                let id = self.slots[slot];
                match self.group_of(id) {
                    Some(g) => result(self.engine.stop_group(g, force)),
                    None => result(self.engine.stop(id, force)),
                }
            }
            Op::Delete { slot, force } => {
                let id = self.slots[slot];
                if let Some(g) = self.group_of(id) {
                    // A kept group lets its maps go before one is deleted.
                    let _ = self.engine.delete_group(g, true);
                }
                result(self.engine.delete(id, force))
            }
            Op::Suspend { slot } => result(self.engine.suspend(self.slots[slot])),
            Op::Resume { slot } => result(self.engine.resume(self.slots[slot])),
            Op::CopyStep { slot, grains } => {
                let copies = self.engine.plan_background(self.slots[slot], grains);
                self.execute(&copies);
                format!("{} copies", copies.len())
            }
            Op::Crash { during_replay, .. } => self.restart(during_replay)?,
            Op::Reset { .. }
            | Op::StartSession { .. }
            | Op::CompleteSession { .. }
            | Op::Recreate { .. }
            | Op::Host(_) => "n/a (no subsystem in the engine world)".into(),
        };
        trace.record(format!("{op} -> {outcome}"));
        self.drain_events(trace);
        Ok(())
    }

    fn write(&mut self, vol: usize, sector: u64, sectors: u64, zeros: bool) -> String {
        let spt = self.shape.sectors_per_track;
        let (first, last) = (sector / spt, (sector + sectors - 1) / spt);
        let whole = sector % spt == 0 && sectors % spt == 0;
        let plan = match self.engine.plan_write(vid(vol), first..last + 1, whole) {
            Ok(p) => p,
            Err(e) => return format!("refused: {e}"),
        };
        self.execute(&plan.copies);
        let (id, data) = if zeros {
            self.model.zero_write(sectors)
        } else {
            self.model.new_write(sector, sectors)
        };
        self.stores[vol]
            .write_at(sector * SECTOR_BYTES as u64, &data)
            .expect("in-range write");
        self.engine.record_write(vid(vol), first..last + 1);
        self.model.write_done(vol, sector, sectors, id, true);
        self.stats.writes_acked += 1;
        format!("ok #{id} ({} copies)", plan.copies.len())
    }

    /// Save and reload the engine (twice when `during_replay`, as an IPL
    /// interrupted and redone). Checks META-1 (the saved state loads and saves
    /// back identically), IPL-1 (maps and cascades are unchanged by the
    /// reload, and a second reload changes nothing) and INV-1 (suspended maps
    /// stay suspended).
    fn restart(&mut self, during_replay: bool) -> Result<String, Violation> {
        let bytes = self.engine.save();
        let before = (self.engine.maps(), self.engine.cascades());
        let start = std::time::Instant::now();
        let mut loaded = Engine::load(&bytes).map_err(|e| {
            Violation::new(
                Invariant::Meta1,
                format!("saved engine state does not load: {e}"),
            )
        })?;
        if during_replay {
            loaded = Engine::load(&loaded.save()).map_err(|e| {
                Violation::new(
                    Invariant::Ipl1,
                    format!("reloaded state does not load: {e}"),
                )
            })?;
            self.stats.ipls_during_replay += 1;
        }
        self.stats
            .recovery_us
            .push(start.elapsed().as_micros() as u64);
        self.stats.checked(Invariant::Meta1);
        if loaded.save() != bytes {
            return Err(Violation::new(
                Invariant::Meta1,
                "engine state changed across save/load",
            ));
        }
        self.stats.checked(Invariant::Ipl1);
        let after = (loaded.maps(), loaded.cascades());
        if after != before {
            return Err(Violation::new(
                Invariant::Ipl1,
                "maps or cascades changed across restart",
            ));
        }
        self.stats.checked(Invariant::Inv1);
        for m in &before.0 {
            if m.state == MapState::Suspended && loaded.map_state(m.id) != Some(MapState::Suspended)
            {
                return Err(Violation::new(
                    Invariant::Inv1,
                    format!("{} was suspended, not after restart", m.id),
                ));
            }
        }
        self.engine = loaded;
        self.stats.ipls += 1;
        Ok(format!("reloaded {} bytes", bytes.len()))
    }

    fn group_of(&self, id: MapId) -> Option<timezero::GroupId> {
        self.engine.map_info(id).and_then(|i| i.group)
    }

    fn start_group(&mut self, g: timezero::GroupId, restore: bool) -> String {
        let members = self
            .engine
            .groups()
            .into_iter()
            .find(|x| x.id == g)
            .map(|x| x.members)
            .unwrap_or_default();
        self.start_group_of(&members, restore, |e, o| e.start_group(g, o))
    }

    /// Starts `maps` at one instant with `start`; on success the model
    /// takes each one's image (sources count as flushed: a start prepares).
    fn start_group_of(
        &mut self,
        maps: &[MapId],
        restore: bool,
        start: impl FnOnce(&mut Engine, StartOptions) -> Result<(), timezero::ControlError>,
    ) -> String {
        let opts = StartOptions {
            restore,
            prepare: true,
        };
        match start(&mut self.engine, opts) {
            Ok(()) => {
                let pairs: Vec<(usize, usize)> = maps.iter().map(|m| self.ends[m]).collect();
                for &(source, _) in &pairs {
                    self.model.flushed(source);
                }
                self.model.snapshot_group(&pairs);
                "ok".into()
            }
            Err(e) => format!("rejected: {e}"),
        }
    }

    fn drain_events(&mut self, trace: &mut Trace) {
        for ev in self.engine.take_events() {
            if let EngineEvent::StateChanged {
                map,
                to: MapState::Stopped,
                ..
            } = ev
            {
                if let Some(&(_, target)) = self.ends.get(&map) {
                    self.model.forget(target);
                }
            }
            trace.record(format!(
                "  event {}",
                serde_json::to_string(&ev).unwrap_or_default()
            ));
        }
    }

    /// Checks every volume against the model (PIT-1/PIT-2/CAS-1) and every
    /// active map's split bits against where the data is (COW-1).
    fn check_reads(&mut self) -> Result<(), Violation> {
        let maps = self.engine.maps();
        let cascades = self.engine.cascades();
        for vol in 0..self.shape.volumes {
            let role = role_of(vid(vol), &maps, &cascades);
            let engine = &self.engine;
            let stores = &self.stores;
            let tb = self.track_bytes();
            verify_volume(
                &mut self.model,
                vol,
                &format!("v{vol}"),
                role,
                ReadCheck::Now,
                false,
                &mut self.stats,
                |t| match engine.resolve_read(vid(vol), t) {
                    Ok(h) => {
                        let mut buf = vec![0u8; tb];
                        match stores[h.0 as usize].read_track(t, &mut buf) {
                            Ok(()) => TrackRead::Data(buf),
                            Err(e) => TrackRead::Failed(e.to_string()),
                        }
                    }
                    Err(e) => TrackRead::Refused(e.to_string()),
                },
            )?;
        }
        self.check_cow(&maps)
    }

    fn check_cow(&mut self, maps: &[timezero::MapInfo]) -> Result<(), Violation> {
        for m in maps
            .iter()
            .filter(|m| m.state.is_active() && m.cascade.is_some())
        {
            self.stats.checked(Invariant::Cow1);
            let target = m.spec.target;
            let name = format!("v{}", target.0);
            let Some(bits) = self.engine.split_bitmap(m.id).cloned() else {
                continue;
            };
            let offline = self.engine.resolve_read(target, 0).is_err();
            for g in 0..self.shape.tracks {
                let Ok(holder) = self.engine.view_holder(target, g) else {
                    continue;
                };
                // Split: the target holds the grain itself. Not split: the view
                // comes from upstream, which after a restore may be the
                // target's own physical data through a frozen head, so only
                // the data (checked below and by PIT-1) can tell.
                if bits.get(g) && holder != target {
                    return Err(Violation::new(
                        Invariant::Cow1,
                        format!("{} grain split but the view is held by {holder}", m.id),
                    )
                    .on(name, Some(g)));
                }
                if offline {
                    // An offline target still presents its image to its dependants.
                    let buf = self.read_phys(holder, g);
                    self.model
                        .check_track(target.0 as usize, g, &buf, ReadCheck::Now)
                        .map_err(|mm| {
                            Violation::new(Invariant::Cow1, mm.to_string())
                                .on(name.clone(), Some(g))
                        })?;
                    self.stats.tracks_verified += 1;
                }
            }
        }
        Ok(())
    }

    /// LIVE-1: with faults off, resume every suspended map and run background
    /// copy and cleaning until nothing is left; then no map may be stopping
    /// and every copying full map with a copy rate must be at 100 %.
    fn live(&mut self, trace: &mut Trace) -> Result<(), Violation> {
        self.stats.checked(Invariant::Live1);
        for m in self.engine.maps() {
            if m.state == MapState::Suspended {
                let _ = self.engine.resume(m.id);
            }
        }
        let bound = 4 * self.shape.tracks as usize * (self.slots.len() + 1);
        for _ in 0..bound {
            let mut work = false;
            for m in self.engine.maps() {
                let copies = self.engine.plan_background(m.id, 8);
                work |= !copies.is_empty();
                self.execute(&copies);
            }
            self.drain_events(trace);
            if !work {
                break;
            }
        }
        trace.record("live: background work drained");
        for m in self.engine.maps() {
            let stuck_copy = m.state == MapState::Copying
                && m.spec.copy_type == timezero::CopyType::Full
                && m.spec.copy_rate > 0
                && m.progress_percent < 100;
            if m.state == MapState::Stopping || stuck_copy {
                return Err(Violation::new(
                    Invariant::Live1,
                    format!(
                        "{} still {} at {} % with faults off",
                        m.id, m.state, m.progress_percent
                    ),
                )
                .on(format!("v{}", m.spec.target.0), None));
            }
        }
        self.check_reads()
    }
}

impl World for EngineWorld {
    fn map_slots(&self) -> usize {
        self.slots.len()
    }

    fn apply(&mut self, op: &Op, trace: &mut Trace) -> Result<(), Violation> {
        self.apply_op(op, trace)
    }

    fn check_all(&mut self) -> Result<(), Violation> {
        self.check_reads()
    }

    fn settle_live(&mut self, trace: &mut Trace) -> Result<(), Violation> {
        self.live(trace)
    }

    fn stats(&self) -> &RunStats {
        &self.stats
    }
}

fn result(r: Result<(), timezero::ControlError>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => format!("rejected: {e}"),
    }
}
