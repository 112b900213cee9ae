//! Background copy and cleaning.
//!
//! [`Subsystem::copy_step`] is synchronous and deterministic (the simulator
//! calls it directly): maps are served in id order; each chunk is planned by
//! the engine as runs under the core lock, cut to the byte budget (holes are
//! free: one allocation query per run, see `runs`), with the grain locks
//! *tried*, executed, and committed through the group committer as runs; the
//! cut-off rest is abandoned. If a grain of the chunk is busy with host I/O,
//! one per-grain chunk runs instead (the busy grains are left for later).
//! [`Subsystem::start_copier`] runs it on tokio at each map's rate
//! (docs/ENGINE.md, "Copy and clean rates") under the config's caps, paced by a token bucket per
//! map (`bucket` module: whole grains, fractional budget carried over, at
//! most one second banked), yielding while host I/O is active.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use timezero::{rate_bytes_per_second, CopyType, GrainCopy, MapId, MapState, VolumeId};

use super::bucket::RateBucket;
use super::cow::CommitItem;
use super::Subsystem;
use crate::error::Result;
use crate::events::Event;
use crate::metrics::Metrics;

/// Grains planned per run chunk at most (a 3390-54 has 982,800 tracks).
const RUN_CHUNK_GRAINS_MAX: usize = 1 << 20;
/// Grains planned per per-grain chunk (the fallback when a grain is busy).
const GRAIN_CHUNK: usize = 1024;
/// Bytes of data copied per chunk at most (bounds how long grains stay locked).
const CHUNK_BYTES_MAX: u64 = 256 << 20;

/// What one [`Subsystem::copy_step`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CopyStepReport {
    /// Grains whose copy or cleaning was committed (holes included).
    pub grains: u64,
    /// Bytes of data moved.
    pub bytes: u64,
    /// Maps served.
    pub maps: Vec<u32>,
    /// Some map still has background work.
    pub more: bool,
}

/// Stops the tokio copier when dropped or on [`CopierHandle::stop`].
pub struct CopierHandle {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl CopierHandle {
    /// Stops the copier and waits for its current chunk.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for CopierHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Subsystem {
    /// Maps with background work (copying full maps with a rate, stopping
    /// maps), excluding maps of quiesced sessions; with the rate that applies.
    pub fn background_maps(&self) -> Vec<(MapId, u8)> {
        let core = self.inner.core.lock();
        core.engine
            .maps()
            .into_iter()
            .filter(|m| !Self::map_held(&core, m.id))
            .filter_map(|m| match m.state {
                MapState::Copying
                    if m.cascade.is_some()
                        && m.spec.copy_type == CopyType::Full
                        && m.spec.copy_rate > 0 =>
                {
                    Some((m.id, m.spec.copy_rate))
                }
                MapState::Stopping => Some((m.id, m.spec.clean_rate)),
                _ => None,
            })
            .collect()
    }

    /// Runs background copy and cleaning until `budget_bytes` of data have
    /// moved or no work is left; maps in id order. Holes are free.
    pub fn copy_step(&self, budget_bytes: u64) -> Result<CopyStepReport> {
        let mut report = CopyStepReport::default();
        let mut left = budget_bytes;
        for (map, _) in self.background_maps() {
            if left == 0 {
                break;
            }
            let (grains, bytes) = self.copy_map(map, left)?;
            if grains > 0 {
                report.maps.push(map.0);
            }
            report.grains += grains;
            report.bytes += bytes;
            left = left.saturating_sub(bytes);
        }
        report.more = !self.background_maps().is_empty();
        Ok(report)
    }

    /// Background work for one map, up to `budget_bytes` of data.
    /// Returns (grains committed, bytes moved).
    pub fn copy_map(&self, map: MapId, budget_bytes: u64) -> Result<(u64, u64)> {
        self.check_open()?;
        let inner = &*self.inner;
        let (mut grains_done, mut bytes_done) = (0u64, 0u64);
        let mut chunk = 1024usize;
        while bytes_done < budget_bytes {
            let cap = (budget_bytes - bytes_done).min(CHUNK_BYTES_MAX);
            let topo = self.io_lock()?;
            // Plan runs under the core lock, cut them to the byte cap (holes
            // are free) and hold their grains.
            let planned = {
                let mut core = inner.core.lock();
                if Self::map_held(&core, map) {
                    break;
                }
                let runs = core.engine.plan_background_runs(map, chunk);
                inner.note_state_change(&mut core);
                if runs.is_empty() {
                    None
                } else {
                    Some(runs)
                }
            };
            if let Err(e) = inner.harden_state_changes() {
                if let Some(runs) = &planned {
                    inner.core.lock().engine.abandon_runs(runs);
                }
                return Err(e);
            }
            let Some(runs) = planned else {
                break;
            };
            let planned = {
                let mut core = inner.core.lock();
                let (keep, rest) = match inner.trim_runs(runs.clone(), cap) {
                    Ok(x) => x,
                    Err(e) => {
                        core.engine.abandon_runs(&runs);
                        return Err(e.context(format!("background copy of {map}")));
                    }
                };
                core.engine.abandon_runs(&rest);
                let ranges: Vec<(u64, u64)> = keep.iter().map(|r| (r.first, r.last)).collect();
                match inner.grains.try_lock_ranges(&ranges) {
                    Some(guard) => Some((keep, guard, !rest.is_empty())),
                    None => {
                        core.engine.abandon_runs(&keep);
                        None
                    }
                }
            };
            let Some((runs, _guard, cut_short)) = planned else {
                // A grain is busy with host I/O: one per-grain chunk leaves just those.
                drop(topo);
                let (g, b, short) = self.copy_grains(map, cap)?;
                grains_done += g;
                bytes_done += b;
                if short {
                    break;
                }
                continue;
            };
            let grains: u64 = runs.iter().map(|r| r.grains()).sum();
            let ts = runs
                .first()
                .and_then(|r| inner.volume_by_id(r.to).ok())
                .map_or(1, |v| v.geometry.track_size_bytes())
                .max(1);
            // Chained runs commit stage by stage (`stages` module doc).
            let mut bytes = 0u64;
            for r in timezero::stages::stages(&runs) {
                let part = &runs[r.clone()];
                if part.is_empty() {
                    continue;
                }
                let (touched, b) = match inner.execute_runs(part) {
                    Ok(x) => x,
                    Err(e) => {
                        inner.core.lock().engine.abandon_runs(&runs[r.start..]);
                        return Err(e.context(format!("background copy of {map}")));
                    }
                };
                bytes += b;
                if let Err(e) = inner.commit(CommitItem {
                    flush: touched,
                    copies: Vec::new(),
                    runs: part.to_vec(),
                    ops: Vec::new(),
                }) {
                    inner.core.lock().engine.abandon_runs(&runs[r.end..]);
                    return Err(e);
                }
            }
            self.after_chunk(map, grains, bytes);
            grains_done += grains;
            bytes_done += bytes;
            // Mostly holes: plan much bigger chunks next time (planning runs
            // is cheap); mostly data: about one byte cap's worth of grains.
            chunk = if (bytes / ts) * 2 < grains {
                chunk.saturating_mul(64).min(RUN_CHUNK_GRAINS_MAX)
            } else {
                ((CHUNK_BYTES_MAX / ts) as usize).clamp(16, RUN_CHUNK_GRAINS_MAX)
            };
            if cut_short {
                break;
            }
        }
        Ok((grains_done, bytes_done))
    }

    fn after_chunk(&self, map: MapId, grains: u64, bytes: u64) {
        let inner = &*self.inner;
        Metrics::add(&inner.metrics.background_copies, grains);
        Metrics::add(&inner.metrics.background_bytes, bytes);
        if let Some(p) = inner.core.lock().engine.progress_percent(map) {
            inner.emit(Event::Progress {
                map,
                progress_percent: p,
            });
        }
    }

    /// One per-grain chunk (used when a grain of the run plan is busy: the
    /// busy grains are left for later, the rest is copied). Returns (grains
    /// committed, bytes moved, cut short by `cap`).
    fn copy_grains(&self, map: MapId, cap: u64) -> Result<(u64, u64, bool)> {
        let inner = &*self.inner;
        let _topo = self.io_lock()?;
        let (plan, _guard) = {
            let mut core = inner.core.lock();
            if Self::map_held(&core, map) {
                return Ok((0, 0, true));
            }
            let copies = core.engine.plan_background(map, GRAIN_CHUNK);
            inner.note_state_change(&mut core);
            if copies.is_empty() {
                drop(core);
                inner.harden_state_changes()?;
                return Ok((0, 0, true));
            }
            let (guard, busy) = inner.grains.try_lock(copies.iter().map(|c| c.grain));
            let busy: std::collections::HashSet<u64> = busy.into_iter().collect();
            let (keep, drop): (Vec<GrainCopy>, Vec<GrainCopy>) =
                copies.into_iter().partition(|c| !busy.contains(&c.grain));
            core.engine.abandon_copies(&drop);
            (keep, guard)
        };
        if plan.is_empty() {
            // Every planned grain is busy with host I/O: let it finish.
            drop(_guard);
            drop(_topo);
            std::thread::sleep(Duration::from_millis(1));
            return Ok((0, 0, false));
        }
        // Chained copies commit stage by stage (`stages` module doc).
        let (mut bytes, mut done_all, mut cut_short) = (0u64, 0usize, false);
        for r in timezero::stages::stages(&plan) {
            let part = &plan[r.clone()];
            if part.is_empty() {
                continue;
            }
            let (touched, b, done) = match inner.execute_copies(part, cap.saturating_sub(bytes)) {
                Ok(x) => x,
                Err(e) => {
                    inner.core.lock().engine.abandon_copies(&plan[r.start..]);
                    return Err(e.context(format!("background copy of {map}")));
                }
            };
            bytes += b;
            cut_short = done < part.len();
            if cut_short {
                inner
                    .core
                    .lock()
                    .engine
                    .abandon_copies(&plan[r.start + done..]);
            }
            if done > 0 {
                if let Err(e) = inner.commit(CommitItem {
                    runs: Vec::new(),
                    flush: touched,
                    copies: part[..done].to_vec(),
                    ops: Vec::new(),
                }) {
                    if !cut_short {
                        inner.core.lock().engine.abandon_copies(&plan[r.end..]);
                    }
                    return Err(e);
                }
            }
            done_all += done;
            if cut_short {
                break;
            }
        }
        self.after_chunk(map, done_all as u64, bytes);
        Ok((done_all as u64, bytes, cut_short))
    }

    /// Starts a tokio task that runs background work at each map's rate
    /// (copy rate, or clean rate while stopping), capped by the config, and
    /// yields while host requests are in flight. Stop it with the handle.
    pub fn start_copier(&self, runtime: &tokio::runtime::Handle) -> CopierHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let sub = self.clone();
        let stop2 = stop.clone();
        let tick = Duration::from_millis(100);
        let task = runtime.spawn(async move {
            let mut interval = tokio::time::interval(tick);
            let mut buckets: HashMap<MapId, RateBucket> = HashMap::new();
            let mut last = Instant::now();
            // The last background-copy failure logged: (message, when, repeats since).
            let mut repeated: Option<(String, Instant, u64)> = None;
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop2.load(Ordering::SeqCst) {
                interval.tick().await;
                if sub.inner.closed.load(Ordering::SeqCst) {
                    break;
                }
                // Host I/O first: wait (briefly, bounded) while requests are in flight.
                for _ in 0..20 {
                    if sub.inner.host_active.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let now = Instant::now();
                let elapsed = now.duration_since(last);
                last = now;
                let s = sub.clone();
                let mut b = std::mem::take(&mut buckets);
                let r = tokio::task::spawn_blocking(move || {
                    let r = s.copier_tick(elapsed, &mut b);
                    (r, b)
                })
                .await;
                match r {
                    Ok((Ok(()), b)) => buckets = b,
                    Ok((Err(e), b)) => {
                        buckets = b;
                        // The same failure every tick (a full disk, a fenced
                        // subsystem) is logged once per minute, with a count.
                        let msg = e.full_message();
                        let now = Instant::now();
                        match &mut repeated {
                            Some((m, at, n))
                                if *m == msg
                                    && now.duration_since(*at) < Duration::from_secs(60) =>
                            {
                                *n += 1;
                            }
                            _ => {
                                if let Some((last, _, n)) = repeated.take().filter(|r| r.2 > 0) {
                                    tracing::warn!(subsystem = %sub.inner.id, error = %last,
                                        "background copy: the error above repeated {n} more time(s)");
                                }
                                tracing::warn!(subsystem = %sub.inner.id, error = %msg, "background copy");
                                repeated = Some((msg, now, 0));
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(subsystem = %sub.inner.id, error = %e, "copier task failed")
                    }
                }
            }
        });
        CopierHandle {
            stop,
            task: Some(task),
        }
    }

    /// One tick of the tokio copier: each map's token bucket (`bucket`
    /// module) gains its rate's share of `elapsed`, scaled down so the total
    /// respects the config caps; a map moves whole grains of its budget.
    fn copier_tick(
        &self,
        elapsed: Duration,
        buckets: &mut HashMap<MapId, RateBucket>,
    ) -> Result<()> {
        let maps = self.background_maps();
        buckets.retain(|m, _| maps.iter().any(|(id, _)| id == m));
        // A map that no longer copies (deleted, stopped, done) is not stalled.
        self.inner
            .copy_stalls
            .lock()
            .retain(|m, _| maps.iter().any(|(id, _)| id == m));
        if maps.is_empty() {
            return Ok(());
        }
        let core_states: Vec<(MapId, u8, bool, Option<VolumeId>)> = {
            let core = self.inner.core.lock();
            maps.iter()
                .map(|&(m, r)| {
                    (
                        m,
                        r,
                        core.engine.map_state(m) == Some(MapState::Stopping),
                        core.engine.map_info(m).map(|i| i.spec.target),
                    )
                })
                .collect()
        };
        let want = |stopping: bool| {
            core_states
                .iter()
                .filter(|c| c.2 == stopping)
                .map(|c| rate_bytes_per_second(c.1) as f64)
                .sum::<f64>()
        };
        let caps = self.inner.config.read().rates;
        let scale = |stopping: bool, cap: Option<u64>| {
            let w = want(stopping);
            cap.map_or(1.0, |c| {
                if w > 0.0 {
                    (c as f64 * 1048576.0 / w).min(1.0)
                } else {
                    1.0
                }
            })
        };
        let (copy_scale, clean_scale) = (
            scale(false, caps.copy_mib_per_s_max),
            scale(true, caps.clean_mib_per_s_max),
        );
        let mut failed = None;
        for (map, rate, stopping, target) in core_states {
            let s = if stopping { clean_scale } else { copy_scale };
            let grain = target
                .and_then(|t| self.inner.volume_by_id(t).ok())
                .map_or(1, |v| v.geometry.track_size_bytes())
                .max(1);
            let bucket = buckets.entry(map).or_default();
            bucket.refill(rate_bytes_per_second(rate) as f64 * s, elapsed, grain);
            let allowed = bucket.allowance(grain);
            if allowed == 0 {
                continue;
            }
            match self.copy_map(map, allowed) {
                Ok((_, bytes)) => {
                    bucket.spend(bytes);
                    if bytes > 0 {
                        self.inner.copy_stalls.lock().remove(&map);
                    }
                }
                Err(e) => {
                    // Said by `map show` until the copy moves again; the
                    // other maps still get their turn.
                    self.inner.copy_stalls.lock().insert(map, e.full_message());
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}
