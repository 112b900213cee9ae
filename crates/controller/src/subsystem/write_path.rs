//! The write path: host writes, discards and zeroing, one request at a time
//! or a batch of them sharing their copy-on-write commits.
//!
//! One request (invariant 2, "old before new"): under the grain locks, plan
//! (the engine's complete `timezero::HostWritePlan`); execute the copies;
//! journal the copies' bits and any new difference bits (group commit:
//! stores flushed, then one journal record); only then apply the host data;
//! whole-grain data for an unsplit target grain is flushed before its bit is
//! journaled (never a bit over garbage).
//!
//! A batch ([`Subsystem::write_many`], the NBD writes a client had in
//! flight together) is cut into groups of consecutive requests whose grains
//! are disjoint: a request touching a grain an earlier request of its group
//! touches starts the next group, so overlapping requests apply in order. A
//! group holds the grain locks of all its requests, plans and copies each,
//! and commits every request's last copy stage and `before` bit changes as
//! one item (one flush per target store, one journal record), then writes
//! every request's host data, then commits every `after` bit change as one
//! item. So 16 first writes cost one data flush and one journal record, not
//! sixteen of each.
//!
//! Invariants (asserted below in debug builds, and by the simulator's crash
//! points, whose workloads include batches):
//! - A request's host data is written only after the commit holding its
//!   copies and `before` bits succeeded; a request whose plan, copy or commit
//!   failed writes nothing.
//! - Requests of one group touch disjoint grains, so their plans are
//!   independent and their order inside the group does not matter; groups
//!   run in the batch's order.
//! - Every request gets exactly one outcome, at its own index.

use std::sync::Arc;

use timezero::GrainCopy;

use super::cow::CommitItem;
use super::io::{check_io_range, grain_range, HostActive, Payload, VolumeRef};
use super::persist::JournalOp;
use super::{Inner, Subsystem, Volume};
use crate::error::{err, ControllerError, ErrorKind, Result};
use crate::meta::store_err;
use crate::metrics::Metrics;

/// One host mutation of a batch.
#[derive(Clone, Copy)]
pub(super) struct Mutation<'a> {
    pub(super) offset: u64,
    pub(super) len: u64,
    pub(super) payload: Payload<'a>,
}

/// What a request's plan left for its group's commits once every copy stage
/// but the last is durable.
struct Protected {
    /// Stores that received the last stage's data.
    touched: Vec<Arc<Volume>>,
    /// The last stage's copies (executed, not yet committed).
    copies: Vec<GrainCopy>,
    /// Bit changes due before the host data.
    before: Vec<JournalOp>,
    /// Bit changes due after it.
    after: Vec<JournalOp>,
}

impl ControllerError {
    /// The same failure again (kind and full message), for each request of
    /// a batch that one failure fails.
    pub(crate) fn shared(&self) -> ControllerError {
        ControllerError::new(self.kind(), self.full_message())
    }
}

impl Subsystem {
    /// Writes each `(offset, data)` of `writes` to `volume`, without FUA, in
    /// order, and returns one outcome per write (at its index). Writes to
    /// grains a map still needs share their copy-on-write commits: one data
    /// flush per store and one journal record for the batch, where
    /// [`Subsystem::write`] makes one commit per call. Each outcome means
    /// what [`Subsystem::write`]'s would.
    pub fn write_many<'v>(
        &self,
        volume: impl Into<VolumeRef<'v>>,
        writes: &[(u64, &[u8])],
    ) -> Vec<Result<()>> {
        let volume = volume.into();
        let muts: Vec<Mutation<'_>> = writes
            .iter()
            .map(|&(offset, data)| Mutation {
                offset,
                len: data.len() as u64,
                payload: Payload::Data(data),
            })
            .collect();
        let out = self.mutate_many(volume, &muts, false);
        for (r, m) in out.iter().zip(&muts) {
            self.count(
                r,
                &self.inner.metrics.writes,
                &self.inner.metrics.write_bytes,
                m.len as usize,
            );
        }
        out
    }

    /// One mutation: a batch of one.
    pub(super) fn mutate(
        &self,
        volume: VolumeRef<'_>,
        offset: u64,
        len: u64,
        payload: Payload<'_>,
        fua: bool,
    ) -> Result<()> {
        let m = Mutation {
            offset,
            len,
            payload,
        };
        self.mutate_many(volume, &[m], fua)
            .pop()
            .unwrap_or_else(|| Err(err(ErrorKind::Io, "a write got no outcome")))
    }

    /// Applies `muts` to `volume` in order (see the module docs); with `fua`
    /// every one is durable on success.
    fn mutate_many(
        &self,
        volume: VolumeRef<'_>,
        muts: &[Mutation<'_>],
        fua: bool,
    ) -> Vec<Result<()>> {
        let inner = &*self.inner;
        let fail_all = |e: ControllerError| muts.iter().map(|_| Err(e.shared())).collect();
        // Before any lock: a held write must not keep the establish that
        // the freeze is for from taking the topology lock.
        inner.freezes.gate(volume.name);
        let _active = HostActive::new(inner);
        let _topo = match self.io_lock() {
            Ok(g) => g,
            Err(e) => return fail_all(e),
        };
        let v = match inner.volume_ref(volume) {
            Ok(v) => v,
            Err(e) => return fail_all(e),
        };
        let mut out: Vec<Result<()>> = muts
            .iter()
            .map(|m| check_io_range(&v, volume.name, m.offset, m.len))
            .collect();
        if v.is_plain() {
            debug_assert!(
                inner.core.lock().engine.is_plain(v.id),
                "plain path taken for volume {} that a map names",
                v.name
            );
            for (m, o) in muts.iter().zip(out.iter_mut()) {
                if o.is_ok() && m.len > 0 {
                    *o = apply_host_data(&v, m.offset, m.len, m.payload);
                }
            }
            if fua {
                self.flush_for(&v, &mut out, |_| true);
            }
            return out;
        }
        let ts = v.geometry.track_size_bytes();
        let mut start = 0;
        while start < muts.len() {
            let mut end = start;
            let mut grains: Vec<std::ops::Range<u64>> = Vec::new();
            while end < muts.len() {
                let m = &muts[end];
                if out[end].is_ok() && m.len > 0 {
                    let g = grain_range(ts, m.offset, m.len);
                    if grains.iter().any(|s| s.start < g.end && g.start < s.end) {
                        break;
                    }
                    grains.push(g);
                }
                end += 1;
            }
            self.mutate_group(&v, &muts[start..end], &mut out[start..end], grains, fua);
            start = end;
        }
        debug_assert_eq!(out.len(), muts.len(), "one outcome per request");
        out
    }

    /// One group of a batch: requests on disjoint `grains` (see the module
    /// docs). `out` holds range-check outcomes; requests already failed or
    /// empty are left as they are.
    fn mutate_group(
        &self,
        v: &Arc<Volume>,
        muts: &[Mutation<'_>],
        out: &mut [Result<()>],
        grains: Vec<std::ops::Range<u64>>,
        fua: bool,
    ) {
        let inner = &*self.inner;
        let live: Vec<usize> = (0..muts.len())
            .filter(|&i| out[i].is_ok() && muts[i].len > 0)
            .collect();
        if live.is_empty() {
            return;
        }
        debug_assert!(
            grains.iter().enumerate().all(|(k, a)| grains[..k]
                .iter()
                .all(|b| a.end <= b.start || b.end <= a.start)),
            "requests of one group share a grain"
        );
        let _g = inner.grains.lock(grains.into_iter().flatten());
        // 1. Plan and copy each request; its last copy stage and `before`
        // bits wait for the group's one commit.
        let mut flush: Vec<Arc<Volume>> = Vec::new();
        let mut copies: Vec<GrainCopy> = Vec::new();
        let mut ops: Vec<JournalOp> = Vec::new();
        let mut in_commit: Vec<usize> = Vec::new();
        let mut after: Vec<Vec<JournalOp>> = vec![Vec::new(); muts.len()];
        for &i in &live {
            match self.protect(v, &muts[i]) {
                Ok(p) => {
                    if !p.copies.is_empty() || !p.before.is_empty() {
                        in_commit.push(i);
                    }
                    for t in p.touched {
                        if !flush.iter().any(|f| f.id == t.id) {
                            flush.push(t);
                        }
                    }
                    copies.extend(p.copies);
                    ops.extend(p.before);
                    after[i] = p.after;
                }
                Err(e) => out[i] = Err(e),
            }
        }
        if !in_commit.is_empty() {
            if let Err(e) = inner.commit(CommitItem {
                runs: Vec::new(),
                flush,
                copies,
                ops,
            }) {
                let e = e.context(format!("copy-on-write for volume {}", v.name));
                for &i in &in_commit {
                    out[i] = Err(e.shared());
                }
            }
        }
        // 2. The host data (only now may it reach the store).
        for &i in &live {
            if out[i].is_ok() {
                let m = &muts[i];
                out[i] = apply_host_data(v, m.offset, m.len, m.payload);
            }
        }
        // 3. Bits that follow the data (whole grains the volume's own map
        // had not split): durable data, then its bits; the flush in that
        // commit also serves FUA.
        let with_after: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| out[i].is_ok() && !after[i].is_empty())
            .collect();
        if !with_after.is_empty() {
            let ops = with_after
                .iter()
                .flat_map(|&i| std::mem::take(&mut after[i]))
                .collect();
            if let Err(e) = inner.commit(CommitItem {
                runs: Vec::new(),
                flush: vec![v.clone()],
                copies: Vec::new(),
                ops,
            }) {
                for &i in &with_after {
                    out[i] = Err(e.shared());
                }
            }
        }
        if fua {
            self.flush_for(v, out, |i| live.contains(&i) && !with_after.contains(&i));
        }
    }

    /// Flushes `v`'s store once for the successful requests `wanted` picks;
    /// a failed flush fails them.
    fn flush_for(&self, v: &Volume, out: &mut [Result<()>], wanted: impl Fn(usize) -> bool) {
        let due: Vec<usize> = (0..out.len())
            .filter(|&i| out[i].is_ok() && wanted(i))
            .collect();
        if due.is_empty() {
            return;
        }
        if let Err(e) = self.inner.flush_store(&v.name, &v.store) {
            for i in due {
                out[i] = Err(e.shared());
            }
        }
    }

    /// Plans `m` and executes its copies (caller holds its grain locks):
    /// every copy stage but the last is committed here, in order; the last
    /// one's copies are executed and returned, with the plan's bit changes,
    /// for the group's commits. On failure the plan's uncommitted copies are
    /// abandoned and nothing of `m` is written.
    fn protect(&self, v: &Volume, m: &Mutation<'_>) -> Result<Protected> {
        let inner = &*self.inner;
        let plan = inner.plan_host_write(v, m.offset, m.len)?;
        let mut last = Protected {
            touched: Vec::new(),
            copies: Vec::new(),
            before: plan.before.iter().map(JournalOp::from).collect(),
            after: plan.after.iter().map(JournalOp::from).collect(),
        };
        // A failed step: the plan's copies from `from` on will not be
        // committed (those before it are, or were never made).
        let give_up = |from: usize, e: ControllerError| {
            inner
                .core
                .lock()
                .engine
                .abandon_copies(&plan.copies[from..]);
            e.context(format!("copy-on-write for volume {}", v.name))
        };
        let n_stages = plan.stages.len();
        for (k, r) in plan.stages.iter().cloned().enumerate() {
            let part = &plan.copies[r.clone()];
            if part.is_empty() {
                continue;
            }
            let touched = match inner.execute_copies(part, u64::MAX) {
                Ok((touched, bytes, _)) => {
                    Metrics::add(&inner.metrics.cow_copies, part.len() as u64);
                    Metrics::add(&inner.metrics.cow_bytes, bytes);
                    touched
                }
                Err(e) => return Err(give_up(r.start, e)),
            };
            if k + 1 < n_stages {
                if let Err(e) = inner.commit(CommitItem {
                    runs: Vec::new(),
                    flush: touched,
                    copies: part.to_vec(),
                    ops: Vec::new(),
                }) {
                    return Err(give_up(r.end, e));
                }
            } else {
                last.touched = touched;
                last.copies = part.to_vec();
            }
        }
        Ok(last)
    }
}

/// Writes a host request's data (or zeros) to the volume's own store.
pub(super) fn apply_host_data(
    v: &Volume,
    offset: u64,
    len: u64,
    payload: Payload<'_>,
) -> Result<()> {
    let res = match payload {
        Payload::Data(d) => v.store.write_at(offset, d),
        Payload::Zeros => v.store.discard(offset, len),
    };
    res.map_err(|e| store_err(&format!("write volume {}", v.name), e))
}

impl Inner {
    /// Plans a host write of `offset..offset+len` on `v` (caller holds its
    /// grain locks): the engine's complete plan (timezero::HostWritePlan).
    fn plan_host_write(
        &self,
        v: &Volume,
        offset: u64,
        len: u64,
    ) -> Result<timezero::HostWritePlan> {
        let ts = v.geometry.track_size_bytes();
        let grains = grain_range(ts, offset, len);
        let whole = offset.div_ceil(ts)..(offset + len) / ts;
        let mut core = self.core.lock();
        // In-memory difference bits are trusted to be durable only while no
        // session is unhardened: establishing one may set bits of other maps
        // (its target's view is replaced) that only the next checkpoint makes
        // durable, so until then every write journals its bits again.
        let rejournal_diffs = !core.unhardened_maps.is_empty();
        let w = timezero::HostWrite {
            volume: v.id,
            grains,
            whole: if whole.start < whole.end { whole } else { 0..0 },
            rejournal_diffs,
        };
        core.engine
            .plan_host_write(&w)
            .map_err(|e| super::cow::access_err(e, &v.name))
    }
}
