//! Crashes, IPLs, resets and crash-image recovery of the controller world,
//! with the recovery invariants:
//! - IPL-1: an IPL after any crash (also one interrupted by a second power
//!   loss during its replay) succeeds and restores the same maps in the same
//!   states; every crash image of a flush boundary IPLs;
//! - INV-1: a suspended map is still suspended after IPL or reset;
//! - META-1: the checker run by a dirty IPL reports nothing;
//! - PIT-1/PIT-2/CAS-1 after recovery: every sector holds a write the model
//!   allows after a crash (flushed writes are never lost);
//! - LIVE-1 at the end of a run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use controller::{MapState, OpenOptions, Subsystem};
use rand::{Rng, RngCore};
use volume_store::{CrashMode, FaultEffect, FaultRule, OpFilter, Trigger};

use crate::check::{Invariant, Violation};
use crate::controller_world::{role_of_named, ControllerWorld};
use crate::faults::FaultPlan;
use crate::model::{Model, ReadCheck};
use crate::stores::{ImageSet, SimStores, META};
use crate::trace::Trace;
use crate::verify::verify_volume;
use crate::workload::{CrashKind, Op};

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

impl ControllerWorld {
    fn crash_mode(&mut self, kind: CrashKind) -> CrashMode {
        match kind {
            CrashKind::Process => CrashMode::KeepAll,
            CrashKind::PowerLoss => CrashMode::DropAll,
            CrashKind::Torn => CrashMode::Torn {
                seed: self.disk_rng.next_u64(),
            },
            CrashKind::RandomSubset => CrashMode::RandomSubset {
                seed: self.disk_rng.next_u64(),
            },
        }
    }

    fn power_loss(&mut self, mode: CrashMode) -> Result<(), Violation> {
        if let Some(s) = self.sub.take() {
            s.abandon();
        }
        self.stores.crash(mode).map_err(|e| {
            Violation::new(
                Invariant::Ipl1,
                format!("building the crash image failed: {e}"),
            )
        })
    }

    fn reinstall_faults(&self) {
        for (_, s) in self.stores.registry().all() {
            s.faulty().clear_rules();
        }
        self.plan.install(&self.stores, &self.names);
    }

    /// A crash of `kind`, optionally a second power loss in the middle of the
    /// IPL's replay (the n-th metadata I/O of the IPL fails, then power goes),
    /// then an IPL and the recovery checks.
    pub(crate) fn crash_and_ipl(
        &mut self,
        kind: CrashKind,
        during_replay: bool,
    ) -> Result<String, Violation> {
        self.crash_and_ipl_expecting(kind, during_replay, None)
    }

    /// The subsystem fenced itself during `op` (a metadata write whose
    /// outcome is unknown): a process crash and IPL, after which every map
    /// must be either as it was before `op` or as `op` left it in memory,
    /// and the model follows whichever the IPL shows.
    pub(crate) fn recover_from_fence(&mut self, op: &Op) -> Result<String, Violation> {
        self.stats.fault("controller.fenced");
        let post: BTreeMap<u32, MapState> =
            self.sub()?.maps().iter().map(|m| (m.id, m.state)).collect();
        let created = match *op {
            Op::CreateMap { source, target, .. } => post
                .keys()
                .find(|id| !self.states.contains_key(id))
                .map(|id| (*id, source, target)),
            _ => None,
        };
        let out = self.crash_and_ipl_expecting(CrashKind::Process, false, Some((op, post)))?;
        if let Op::Recreate { vol, .. } = *op {
            // The IPL may have created the volume again (a new store).
            let name = self.names[vol].clone();
            self.plan.install_volume(&self.stores, &name);
        }
        // A create that landed although it was not answered: adopt the map.
        if let Some((id, source, target)) = created {
            if self.states.contains_key(&id) && !self.ends.contains_key(&id) {
                self.slots.push(controller::MapId(id));
                self.ends.insert(id, (source, target));
            }
        }
        Ok(out)
    }

    fn crash_and_ipl_expecting(
        &mut self,
        kind: CrashKind,
        during_replay: bool,
        fenced: Option<(&Op, BTreeMap<u32, MapState>)>,
    ) -> Result<String, Violation> {
        // Maps of sessions no durable root lists yet may be lost by design
        // (docs/DURABILITY.md, "Hardening"): not part of the IPL-1 comparison.
        let unhardened: Vec<u32> = match &self.sub {
            Some(s) => s
                .physical_sessions()
                .into_iter()
                .filter(|p| !p.hardened)
                .flat_map(|p| p.maps)
                .collect(),
            None => Vec::new(),
        };
        let mut before = self.states.clone();
        before.retain(|id, _| !unhardened.contains(id));
        // A full map whose copy is complete stays copying only while a later
        // map depends on it; when those are unhardened session maps the IPL
        // loses them (by design) and the map may settle to idle_or_copied.
        let complete: std::collections::BTreeSet<u32> = match &self.sub {
            Some(s) if !unhardened.is_empty() => s
                .maps()
                .iter()
                .filter(|m| {
                    m.state == MapState::Copying
                        && m.copy_type == controller::CopyType::Full
                        && m.progress_percent == 100
                })
                .map(|m| m.id)
                .collect(),
            _ => Default::default(),
        };
        let mode = self.crash_mode(kind);
        self.power_loss(mode)?;
        self.stats.fault(kind.name());
        self.injector.set_enabled(false);
        let mut note = String::new();
        if during_replay {
            let n = self.disk_rng.random_range(1..8u64);
            if let Some((_, meta)) = self
                .stores
                .registry()
                .all()
                .into_iter()
                .find(|(n, _)| n == META)
            {
                meta.faulty().add_rule(FaultRule::new(
                    OpFilter::Any,
                    Trigger::Nth(n),
                    FaultEffect::Eio,
                ));
            }
            let interrupted = self.open();
            note = match &interrupted {
                Ok(_) => format!(" (replay survived a failed metadata I/O #{n})"),
                Err(e) => format!(
                    " (replay failed at metadata I/O #{n}: {})",
                    e.kind().as_str()
                ),
            };
            if let Ok(s) = interrupted {
                s.abandon();
            }
            self.reinstall_faults();
            self.power_loss(CrashMode::DropAll)?;
            self.stats.ipls_during_replay += 1;
        }
        // The IPL itself runs on healthy devices (a failing device during
        // replay is the `during_replay` case above).
        FaultPlan::set_enabled(&self.stores, false);
        let started = Instant::now();
        let opened = self.open();
        self.stats
            .recovery_us
            .push(started.elapsed().as_micros() as u64);
        FaultPlan::set_enabled(&self.stores, true);
        let sub = opened.map_err(|e| {
            Violation::new(
                Invariant::Ipl1,
                format!("IPL after {} failed: {}", kind.name(), e.full_message()),
            )
        })?;
        self.injector.set_enabled(true);
        let report = sub.ipl_report();
        self.stats.entries_replayed += report.journal_records as u64;
        self.stats.checked(Invariant::Meta1);
        if !report.check_findings.is_empty() {
            return Err(Violation::new(
                Invariant::Meta1,
                format!("IPL checker: {}", report.check_findings.join("; ")),
            ));
        }
        let mut after: BTreeMap<u32, MapState> =
            sub.maps().iter().map(|m| (m.id, m.state)).collect();
        after.retain(|id, _| !unhardened.contains(id));
        self.sub = Some(sub);
        self.stats.ipls += 1;
        self.stats.checked(Invariant::Ipl1);
        match &fenced {
            None => {
                self.stats.checked(Invariant::Inv1);
                check_sticky(&before, &after)?;
                let settled = |id: &u32, st: &MapState| {
                    complete.contains(id)
                        && *st == MapState::Copying
                        && after.get(id) == Some(&MapState::IdleOrCopied)
                };
                let mut expect = before.clone();
                for (id, st) in &before {
                    if settled(id, st) {
                        expect.insert(*id, MapState::IdleOrCopied);
                    }
                }
                if expect != after {
                    return Err(Violation::new(
                        Invariant::Ipl1,
                        format!("maps changed across the IPL: before {before:?}, after {after:?}"),
                    ));
                }
            }
            Some((_, post)) => {
                // Suspended both before and after the fenced op: still suspended.
                let mut both = before.clone();
                both.retain(|id, st| post.get(id) == Some(st));
                self.stats.checked(Invariant::Inv1);
                check_sticky(&both, &after)?;
                let ids: std::collections::BTreeSet<u32> = before
                    .keys()
                    .chain(post.keys())
                    .chain(after.keys())
                    .copied()
                    .filter(|id| !unhardened.contains(id))
                    .collect();
                for id in ids {
                    let now = after.get(&id);
                    if now != before.get(&id) && now != post.get(&id) {
                        return Err(Violation::new(
                            Invariant::Ipl1,
                            format!(
                                "map{id} after the IPL that followed a fence is {now:?}: neither \
                                 {:?} (before the fenced request) nor {:?} (after it)",
                                before.get(&id),
                                post.get(&id)
                            ),
                        ));
                    }
                }
            }
        }
        // Maps lost with unhardened sessions leave their targets undefined;
        // after a fence, the request's change is followed if it landed.
        self.sync_states(fenced.as_ref().map(|(op, _)| *op))?;
        self.verify_after_crash()?;
        let rm = self.notify_reset()?;
        Ok(format!(
            "IPL ok, {} journal records replayed{note}; {rm}",
            report.journal_records
        ))
    }

    /// A reset notification (controller warmstart).
    pub(crate) fn reset(&mut self, lose_volatile: bool) -> Result<String, Violation> {
        let before = self.states.clone();
        let r = self.sub()?.reset(lose_volatile);
        match r {
            Ok(rep) => {
                if lose_volatile {
                    self.stats.resets_lose_volatile += 1;
                } else {
                    self.stats.resets += 1;
                }
                self.stats.entries_replayed += rep.journal_records as u64;
                let after: BTreeMap<u32, MapState> =
                    self.sub()?.maps().iter().map(|m| (m.id, m.state)).collect();
                self.stats.checked(Invariant::Inv1);
                check_sticky(&before, &after)?;
                let rm = self.notify_reset()?;
                Ok(format!("ok, {} journal records; {rm}", rep.journal_records))
            }
            Err(e) => Ok(format!("failed: {}", e.full_message())),
        }
    }

    /// LIVE-1: faults off, a clean IPL (reopens poisoned stores), resume
    /// suspended maps, drain background work; nothing may be left stopping
    /// and every copying full map with a copy rate must reach 100 %.
    pub(crate) fn live(&mut self, trace: &mut Trace) -> Result<(), Violation> {
        self.stats.checked(Invariant::Live1);
        self.injector.set_enabled(false);
        FaultPlan::set_enabled(&self.stores, false);
        if let Some(s) = self.sub.take() {
            let _ = self.stores.honest(|| s.close());
        }
        self.sub = Some(self.open().map_err(|e| {
            Violation::new(
                Invariant::Live1,
                format!("IPL with faults off failed: {}", e.full_message()),
            )
        })?);
        self.sync_states(None)?;
        self.flush_notes(trace);
        for m in self.sub()?.maps() {
            if m.state == MapState::Suspended {
                let r = self.sub()?.resume_map(controller::MapId(m.id));
                trace.record(format!(
                    "live: resume map{} -> {:?}",
                    m.id,
                    r.map_err(|e| e.full_message())
                ));
            }
        }
        for _ in 0..64 {
            let rep = self.sub()?.copy_step(1 << 30).map_err(|e| {
                Violation::new(
                    Invariant::Live1,
                    format!("copy step failed with faults off: {e}"),
                )
            })?;
            if !rep.more {
                break;
            }
        }
        self.sync_states(None)?;
        self.flush_notes(trace);
        trace.record("live: background work drained");
        for m in self.sub()?.maps() {
            let stuck = m.state == MapState::Copying
                && m.copy_type == controller::CopyType::Full
                && m.copy_rate > 0
                && m.progress_percent < 100;
            // Nothing may be left half-way with faults off: a target of a
            // stopped map stays offline by design, everything else is readable.
            let half_way = matches!(
                m.state,
                MapState::Stopping | MapState::Suspended | MapState::Preparing | MapState::Prepared
            );
            if half_way || stuck {
                return Err(Violation::new(
                    Invariant::Live1,
                    format!(
                        "map{} still {} at {} % with faults off",
                        m.id, m.state, m.progress_percent
                    ),
                )
                .on(m.target.clone(), None));
            }
        }
        crate::world::World::check_all(self)
    }

    /// Recovers and checks every crash image captured during `op` (at flush
    /// boundaries inside it) and at the boundary after it.
    pub(crate) fn check_captured(
        &mut self,
        op: &Op,
        pre_model: Model,
        pre_states: &BTreeMap<u32, MapState>,
        mut captured: Vec<ImageSet>,
        trace: &mut Trace,
    ) -> Result<(), Violation> {
        let inside = captured.len();
        captured.push(
            self.stores
                .registry()
                .images("op-boundary", self.stats.steps),
        );
        let mut inflight = pre_model;
        if let Some(w) = op.host_write() {
            let (id, _) = if w.zeros {
                inflight.zero_write(w.sectors)
            } else {
                inflight.new_write(w.sector, w.sectors)
            };
            inflight.write_done(w.vol, w.sector, w.sectors, id, true);
        }
        if let Op::WriteBatch { vol, writes } = op {
            // Any write of the batch may have reached its store before a
            // crash inside the batch (ids as the world gave them, in order).
            for &(sector, sectors) in writes {
                let (id, _) = inflight.new_write(sector, sectors);
                inflight.write_done(*vol, sector, sectors, id, true);
            }
        }
        let post_states = self.states.clone();
        let post_model = self.model.clone();
        let mut images = 0;
        for (i, set) in captured.iter().enumerate() {
            let boundary = i == inside;
            let (model, states) = if boundary {
                (&post_model, &post_states)
            } else {
                (&inflight, pre_states)
            };
            for (label, imgs) in &set.images {
                self.stats.images_checked += 1;
                images += 1;
                self.check_image(
                    op,
                    model.clone(),
                    states,
                    imgs.clone(),
                    &format!("{label} before flush of {}", set.at),
                )?;
            }
        }
        self.stats.crash_points += captured.len() as u64;
        trace.record(format!(
            "  crash points: {} boundaries, {images} images recovered and checked",
            captured.len()
        ));
        Ok(())
    }

    fn check_image(
        &mut self,
        op: &Op,
        mut model: Model,
        states: &BTreeMap<u32, MapState>,
        images: BTreeMap<String, volume_store::MemStore>,
        label: &str,
    ) -> Result<(), Violation> {
        let ctx = |v: Violation| Violation {
            detail: format!("{} [crash image {label}]", v.detail),
            ..v
        };
        let dir = crate::controller_world::sim_tempdir()
            .map_err(|e| Violation::new(Invariant::Ipl1, e.to_string()))?;
        copy_dir(self.dir.path(), dir.path())
            .map_err(|e| Violation::new(Invariant::Ipl1, e.to_string()))?;
        let stores = SimStores::from_images(self.stats.steps, images);
        let options = OpenOptions {
            provider: Some(Arc::new(stores)),
            faults: None,
            lock: false,
            ..OpenOptions::default()
        };
        let sub = Subsystem::open_with(dir.path(), self.config.clone(), options).map_err(|e| {
            ctx(Violation::new(
                Invariant::Ipl1,
                format!("crash image does not IPL: {}", e.full_message()),
            ))
        })?;
        let report = sub.ipl_report();
        self.stats.checked(Invariant::Meta1);
        if !report.check_findings.is_empty() {
            return Err(ctx(Violation::new(
                Invariant::Meta1,
                report.check_findings.join("; "),
            )));
        }
        let maps = sub.maps();
        let after: BTreeMap<u32, MapState> = maps.iter().map(|m| (m.id, m.state)).collect();
        self.stats.checked(Invariant::Inv1);
        check_sticky(states, &after).map_err(ctx)?;
        let mut starts = Vec::new();
        for m in &maps {
            let Some(&(source, target)) = self.ends.get(&m.id) else {
                continue;
            };
            let was = states.get(&m.id).copied();
            if op.starts_maps() && crate::controller_world::is_start(was, m.state) {
                starts.push((source, target));
            }
            if m.state == MapState::Stopped && was != Some(MapState::Stopped) {
                model.forget(target);
            }
        }
        model.snapshot_group(&starts);
        // Deleted in the image: the target keeps whatever it holds.
        for (id, st) in states {
            if !after.contains_key(id) && *st != MapState::IdleOrCopied {
                if let Some(&(_, target)) = self.ends.get(id) {
                    model.forget(target);
                }
            }
        }
        let cascades = sub.cascades();
        let tb = self.track_bytes() as usize;
        let offline = crate::controller_world::offline_volumes(&maps, &cascades);
        for vol in 0..self.shape.volumes {
            let name = self.names[vol].clone();
            let role = role_of_named(&name, &maps, &cascades);
            let plan = &self.plan;
            verify_volume(
                &mut model,
                vol,
                &name,
                role,
                ReadCheck::AfterCrash,
                self.plan.any(),
                &mut self.stats,
                |t| {
                    let mut buf = vec![0u8; tb];
                    let r = sub.read(&name, t * tb as u64, &mut buf).map(|()| buf);
                    crate::controller_world::judge_read(r, &name, t, &offline, plan)
                },
            )
            .map_err(ctx)?;
        }
        sub.abandon();
        Ok(())
    }
}

/// INV-1: every map suspended in `before` is suspended in `after`.
fn check_sticky(
    before: &BTreeMap<u32, MapState>,
    after: &BTreeMap<u32, MapState>,
) -> Result<(), Violation> {
    for (id, st) in before {
        if *st == MapState::Suspended && after.get(id).is_some_and(|s| *s != MapState::Suspended) {
            return Err(Violation::new(
                Invariant::Inv1,
                format!("map{id} was suspended, now {}", after[id]),
            ));
        }
    }
    Ok(())
}
