//! Executing grain copies and committing them: the heart of rules 1-3 and 6.
//!
//! `execute_copies` moves data (sparse-aware: a hole on the source copies
//! nothing, a stale grain on the target is discarded). `CommitItem`s then go
//! through the group committer, whose stage leaders run `Stages::stage1`/`stage2`:
//! flush every store that received data -> one journal record (flushed) ->
//! apply to the engine in submission order. A failed flush or journal write
//! suspends the affected maps and fails their requests; the host data that
//! depended on them is never written.

use std::collections::BTreeMap;
use std::sync::Arc;

use geometry::{Extent, ExtentSet};
use timezero::{GrainCopy, MapId, VolumeId};
use volume_store::FaultSite;

use super::commit::{Outcome, Stages};
use super::persist::{decode_journal, encode_journal, JournalOp};
use super::{Core, Inner, JournalCursor, Volume};
use crate::error::{err, ControllerError, ErrorKind, Result};
use crate::events::Event;
use crate::meta::store_err;
use crate::metrics::Metrics;

thread_local! {
    /// The copy buffer of [`Inner::execute_copies`] on this thread (one
    /// track, used when a store cannot copy in the kernel; its contents never
    /// outlive a copy: each copy reads the whole track into it before writing
    /// any of it).
    static COPY_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Work whose durability a request waits for.
pub(crate) struct CommitItem {
    /// Stores that received data for this item (flushed before the journal record).
    pub(crate) flush: Vec<Arc<Volume>>,
    /// Grain copies whose data is in place (journaled as runs, committed to the engine).
    pub(crate) copies: Vec<GrainCopy>,
    /// Background runs whose data is in place (journaled as is, committed as runs).
    pub(crate) runs: Vec<timezero::CopyRun>,
    /// Other bit changes (difference bits, recorded writes).
    pub(crate) ops: Vec<JournalOp>,
}

impl CommitItem {
    /// What the journal record carries for this item.
    fn journal_ops(&self) -> Vec<JournalOp> {
        let mut ops = Vec::with_capacity(self.ops.len() + 1);
        if !self.copies.is_empty() || !self.runs.is_empty() {
            let mut runs = timezero::merge_runs(&self.copies);
            runs.extend(self.runs.iter().copied());
            ops.push(JournalOp::Copies(runs));
        }
        ops.extend(self.ops.iter().cloned());
        ops
    }
}

/// The maps an item's bits belong to (suspended if the item fails).
fn item_maps(core: &Core, item: &CommitItem) -> Vec<MapId> {
    let mut maps: Vec<MapId> = item.copies.iter().map(|c| c.map).collect();
    maps.extend(item.runs.iter().map(|r| r.map));
    for op in &item.ops {
        match op {
            JournalOp::Copies(runs) => maps.extend(runs.iter().map(|r| r.map)),
            JournalOp::Diff { map, .. } => maps.push(*map),
            JournalOp::Recorded { volume, .. } => {
                if let Some(m) = core.vol_maps.get(&VolumeId(*volume)).and_then(|v| v.member) {
                    maps.push(m);
                }
            }
        }
    }
    maps.sort();
    maps.dedup();
    maps
}

impl Inner {
    /// Executes `copies` in order: read each grain of `from`'s store, write it to
    /// `to`'s store. Holes are not copied (a stale target grain is discarded).
    /// Stops at the first grain boundary after `cap` bytes of data have moved.
    /// Returns the volumes that received data (to be flushed), bytes moved,
    /// and how many copies (a prefix of `copies`) were executed.
    pub(crate) fn execute_copies(
        &self,
        copies: &[GrainCopy],
        cap: u64,
    ) -> Result<(Vec<Arc<Volume>>, u64, usize)> {
        if copies.is_empty() {
            return Ok((Vec::new(), 0, 0));
        }
        // One allocation query per (volume) over the span of grains it is read or written at.
        let mut span: BTreeMap<VolumeId, (u64, u64)> = BTreeMap::new();
        for c in copies {
            for v in [c.from, c.to] {
                let e = span.entry(v).or_insert((c.grain, c.grain));
                e.0 = e.0.min(c.grain);
                e.1 = e.1.max(c.grain);
            }
        }
        let mut vols: BTreeMap<VolumeId, (Arc<Volume>, ExtentSet)> = BTreeMap::new();
        for (v, (lo, hi)) in span {
            let vol = self.volume_by_id(v)?;
            let alloc = vol
                .store
                .allocated(Extent {
                    first: lo,
                    last: hi,
                })
                .map_err(|e| store_err(&format!("allocation of volume {}", vol.name), e))?;
            vols.insert(v, (vol, alloc));
        }
        // Copies of one grain are contiguous in a plan, so a copy can only read
        // what an earlier copy of the same grain wrote: track just that group.
        let mut written: Vec<VolumeId> = Vec::new();
        let mut group_grain = u64::MAX;
        let mut touched: Vec<VolumeId> = Vec::new();
        let mut bytes = 0u64;
        // One track buffer per thread, kept between calls: a first write
        // otherwise allocated and zero-filled 64 KiB before every copy.
        let mut buf = COPY_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
        let mut executed = 0usize;
        for (i, c) in copies.iter().enumerate() {
            if bytes >= cap && i > 0 && copies[i - 1].grain != c.grain {
                break;
            }
            executed = i + 1;
            if c.from == c.to {
                continue;
            }
            let (from, from_alloc) = &vols[&c.from];
            let (to, to_alloc) = &vols[&c.to];
            let ts = to.geometry.track_size_bytes();
            if c.grain != group_grain {
                group_grain = c.grain;
                written.clear();
            }
            let src_has_data = written.contains(&c.from) || from_alloc.contains(c.grain);
            let dst_has_data = written.contains(&c.to) || to_alloc.contains(c.grain);
            if src_has_data {
                self.copy_data(from, to, c.grain * ts, ts, &mut buf, || {
                    format!("track {}", c.grain)
                })?;
                bytes += ts;
            } else if dst_has_data {
                to.store.discard(c.grain * ts, ts).map_err(|e| {
                    store_err(
                        &format!("discard stale track {} of volume {}", c.grain, to.name),
                        e,
                    )
                })?;
                Metrics::add(&self.metrics.holes_skipped, 1);
            } else {
                // Nothing to move: the target already reads as the hole the
                // source is. That hole may itself be an unflushed discard (a
                // failed earlier copy dropped a stale grain), so the target is
                // still flushed before the bit is journalled (rule 1).
                Metrics::add(&self.metrics.holes_skipped, 1);
                if !touched.contains(&c.to) {
                    touched.push(c.to);
                }
                continue;
            }
            written.push(c.to);
            if !touched.contains(&c.to) {
                touched.push(c.to);
            }
        }
        COPY_BUF.with(|b| *b.borrow_mut() = buf);
        Ok((
            touched.into_iter().map(|v| vols[&v].0.clone()).collect(),
            bytes,
            executed,
        ))
    }

    /// Copies `len` bytes at `offset` from `from`'s store to the same place
    /// in `to`'s (`TrackStore::copy_from`), behind the two copy fault sites;
    /// `tracks` names what is copied in an error. Every grain copy, of
    /// copy-on-write and of the background run copier, goes through here.
    pub(crate) fn copy_data(
        &self,
        from: &Volume,
        to: &Volume,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
        tracks: impl FnOnce() -> String,
    ) -> Result<()> {
        self.faults
            .check(FaultSite::CowCopyRead)
            .map_err(|e| store_err("copy read (injected)", e))?;
        self.faults
            .check(FaultSite::CowCopyWrite)
            .map_err(|e| store_err("copy write (injected)", e))?;
        to.store
            .copy_from(&*from.store, offset, len, buf)
            .map_err(|e| {
                store_err(
                    &format!(
                        "copy of {} from volume {} to volume {}",
                        tracks(),
                        from.name,
                        to.name
                    ),
                    e,
                )
            })
    }

    /// Submits an item to the group committer and waits until it is durable
    /// and applied to the engine.
    pub(crate) fn commit(&self, item: CommitItem) -> Result<()> {
        self.committer.submit(item, self)
    }
}

impl Stages<CommitItem> for Inner {
    /// Stage 1, data before metadata: flush each store that received data, once.
    fn stage1(&self, batch: &[CommitItem]) -> Vec<Outcome> {
        Metrics::add(&self.metrics.group_commits, 1);
        Metrics::add(&self.metrics.group_commit_items, batch.len() as u64);
        let mut flushed: BTreeMap<VolumeId, std::result::Result<(), String>> = BTreeMap::new();
        for item in batch {
            for v in &item.flush {
                flushed.entry(v.id).or_insert_with(|| {
                    self.faults
                        .check(FaultSite::CowFlush)
                        .map_err(|e| store_err("flush (injected)", e))
                        .and_then(|()| self.flush_store(&v.name, &v.store))
                        .map_err(|e| e.full_message())
                });
            }
        }
        batch
            .iter()
            .map(|item| {
                for v in &item.flush {
                    if let Some(Err(m)) = flushed.get(&v.id) {
                        return Err((
                            ErrorKind::Io,
                            format!("flush of volume {} failed: {m}", v.name),
                        ));
                    }
                }
                Ok(())
            })
            .collect()
    }

    /// Stage 2: one journal record for every item whose data is durable, then
    /// the engine, in submission order; failed items are abandoned and their
    /// maps suspended.
    fn stage2(&self, batch: Vec<CommitItem>, stage1: Vec<Outcome>) -> Vec<Outcome> {
        let mut outcomes = stage1;
        let mut cur = self.journal.lock();
        let mut ops: Vec<JournalOp> = Vec::new();
        for (i, item) in batch.iter().enumerate() {
            if outcomes[i].is_ok() {
                ops.extend(item.journal_ops());
            }
        }
        let result = if ops.is_empty() {
            Ok(())
        } else {
            self.journal_ops(&mut cur, &ops)
        };
        let fenced = self.check_fenced().err();
        if let Err(e) = &result {
            let msg = e.full_message();
            for o in outcomes.iter_mut().filter(|o| o.is_ok()) {
                *o = Err((e.kind(), format!("bitmap journal write failed: {msg}")));
            }
        }
        if let Some(f) = &fenced {
            // Nothing more can be made durable: no suspension either. Every
            // item fails `fenced`; an IPL replays whatever record is durable
            // (each one only sets bits whose data is already durable).
            for o in outcomes.iter_mut() {
                *o = Err((ErrorKind::Fenced, f.full_message()));
            }
        }
        // 3. Apply to the engine in submission order; fail (abandon + suspend) the rest.
        let mut suspend: Vec<(MapId, String)> = Vec::new();
        {
            let mut core = self.core.lock();
            for (i, item) in batch.iter().enumerate() {
                match &outcomes[i] {
                    Ok(()) => {
                        core.engine.commit_copies(&item.copies);
                        core.engine.commit_runs(&item.runs);
                        apply_ops(&mut core, &item.ops);
                    }
                    Err((_, m)) => {
                        core.engine.abandon_copies(&item.copies);
                        core.engine.abandon_runs(&item.runs);
                        for map in item_maps(&core, item) {
                            suspend.push((map, m.clone()));
                        }
                    }
                }
            }
            self.note_state_change(&mut core);
        }
        if fenced.is_none() {
            if !suspend.is_empty() {
                self.suspend_maps(&mut cur, suspend);
            }
            if self.state_dirty.load(std::sync::atomic::Ordering::SeqCst) {
                // A map changed state (copy complete, cleaning done): durable
                // before anyone is answered. A failure here can only fence.
                if let Err(e) = self.checkpoint(&mut cur) {
                    for o in outcomes.iter_mut() {
                        *o = Err((e.kind(), e.full_message()));
                    }
                }
            } else {
                self.maybe_checkpoint(&mut cur);
            }
        }
        outcomes
    }
}

impl Inner {
    /// Appends one journal record (checkpointing first if an unhardened map is
    /// involved, so a lost relationship never holds data others need).
    fn journal_ops(&self, cur: &mut JournalCursor, ops: &[JournalOp]) -> Result<()> {
        let needs_harden = {
            let core = self.core.lock();
            !core.unhardened_maps.is_empty()
                && ops.iter().any(|op| match op {
                    JournalOp::Copies(runs) => {
                        runs.iter().any(|r| core.unhardened_maps.contains(&r.map))
                    }
                    JournalOp::Diff { map, .. } => core.unhardened_maps.contains(map),
                    JournalOp::Recorded { volume, .. } => core
                        .vol_maps
                        .get(&VolumeId(*volume))
                        .and_then(|v| v.member)
                        .is_some_and(|m| core.unhardened_maps.contains(&m)),
                })
        };
        if needs_harden {
            self.checkpoint(cur)?;
        }
        let payload = encode_journal(ops)?;
        let end = self
            .meta
            .append_journal(cur.offset, cur.generation, cur.seq, &payload)
            .map_err(|e| self.fence_on(e))?;
        cur.offset = end;
        cur.seq += 1;
        Metrics::add(&self.metrics.journal_records, 1);
        Ok(())
    }

    /// Suspends `maps` (bitmap offline) and tries to make that durable.
    pub(crate) fn suspend_maps(&self, cur: &mut JournalCursor, maps: Vec<(MapId, String)>) {
        {
            let mut core = self.core.lock();
            for (map, reason) in &maps {
                match core.engine.suspend(*map) {
                    Ok(()) => {
                        tracing::error!(subsystem = %self.id, %map, %reason, "map suspended");
                        self.emit(Event::MapSuspended {
                            map: *map,
                            reason: reason.clone(),
                        });
                    }
                    Err(e) => {
                        tracing::debug!(subsystem = %self.id, %map, error = %e, "not suspended")
                    }
                }
            }
            self.after_engine_change(&mut core);
        }
        if let Err(e) = self.checkpoint(cur) {
            // Only a fence gets here (the root write retries until durable):
            // nothing is served until an IPL, which brings the maps back from
            // their last durable state (their sources were not written past
            // it, so their images hold).
            tracing::error!(
                subsystem = %self.id,
                error = %e.full_message(),
                "suspension not made durable"
            );
        }
    }

    /// Drains engine events into subsystem events and refreshes per-volume
    /// caches. Returns whether a map changed state (or was deleted): such a
    /// change outside a control request must be checkpointed before it is
    /// relied on ([`Inner::note_state_change`]).
    pub(crate) fn after_engine_change(&self, core: &mut Core) -> bool {
        let events = core.engine.take_events();
        if events.is_empty() {
            return false;
        }
        for e in events {
            use timezero::EngineEvent as E;
            self.emit(match e {
                E::StateChanged { map, from, to } => Event::MapState { map, from, to },
                E::CopyCompleted { map } => Event::CopyCompleted { map },
                E::CleaningDone { map } => Event::CleaningDone { map },
                E::MapDeleted { map, autodelete } => Event::MapDeleted { map, autodelete },
                E::GroupDeleted { .. } => continue,
            });
        }
        self.refresh_maps(core);
        true
    }

    /// Like [`Inner::after_engine_change`], and marks a state change as
    /// owed to a checkpoint ([`Inner::harden_state_changes`]).
    pub(crate) fn note_state_change(&self, core: &mut Core) {
        if self.after_engine_change(core) {
            self.state_dirty
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Checkpoints if a map changed state outside a control request since
    /// the last checkpoint, so map states survive an IPL exactly (IPL-1).
    /// Caller holds no engine lock.
    pub(crate) fn harden_state_changes(&self) -> Result<()> {
        if !self.state_dirty.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let mut cur = self.journal.lock();
        self.checkpoint(&mut cur)
    }
}

/// Applies journal ops to the engine (live after a durable append, and at replay).
pub(crate) fn apply_ops(core: &mut Core, ops: &[JournalOp]) {
    for op in ops {
        match op {
            JournalOp::Copies(runs) => core.engine.commit_runs(runs),
            JournalOp::Diff { map, start, end } => {
                let c = timezero::BitChange::Diff {
                    map: *map,
                    first: *start,
                    end: *end,
                };
                if let Err(e) = core.engine.apply_bit_change(&c) {
                    tracing::warn!(%map, error = %e, "diff bits not set");
                }
            }
            JournalOp::Recorded { volume, start, end } => {
                let c = timezero::BitChange::Recorded {
                    volume: VolumeId(*volume),
                    first: *start,
                    end: *end,
                };
                let _ = core.engine.apply_bit_change(&c);
            }
        }
    }
}

/// Replays one journal record's payload into the engine.
pub(crate) fn replay_record(core: &mut Core, payload: &[u8]) -> Result<usize> {
    let ops = decode_journal(payload)?;
    apply_ops(core, &ops);
    Ok(ops.len())
}

/// An engine access error of a request to `volume`, in the user's words:
/// the volume by name and maps by number, never the engine's ids (the
/// engine's volume in these errors is the volume the request is for).
pub(crate) fn access_err(e: timezero::AccessError, volume: &str) -> ControllerError {
    use timezero::AccessError as A;
    let (kind, msg) = match &e {
        A::UnknownVolume(_) => (ErrorKind::NotFound, format!("unknown volume {volume}")),
        A::OutOfRange { grain, grains, .. } => (
            ErrorKind::OutOfRange,
            format!("volume {volume}: track {grain} is beyond its {grains} tracks"),
        ),
        // Offline targets, suspended maps, unresolvable restore cycles and any
        // later reason the engine cannot give an image: an error, never data.
        A::TargetOffline { .. } | A::Suspended { .. } => (
            ErrorKind::Offline,
            format!(
                "volume {volume} is offline: {}",
                super::control::offline_reason(&e)
            ),
        ),
        A::Unresolvable { grain, .. } => (
            ErrorKind::Offline,
            format!("volume {volume}: track {grain} cannot be resolved (a loop of restores)"),
        ),
    };
    err(kind, msg)
}
