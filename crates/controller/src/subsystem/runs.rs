//! Run-length background copy: the engine plans runs of consecutive grains
//! with one source and target (`Engine::plan_background_runs`); each run is
//! executed by asking the stores which of its tracks hold data, so holes cost
//! one allocation query per run instead of work per grain. Data is copied in
//! I/Os of up to [`IO_BYTES`]; target tracks that hold stale data where the
//! source has a hole are discarded (the target must read as the source).
//!
//! Invariants: runs are executed in plan order and each run's allocation is
//! asked when it runs, so a run reading what an earlier run of the same grain
//! wrote (cascade copies) sees it; a plan is cut only between runs of
//! different grains or inside a run (whose grains have one copy each).

use std::sync::Arc;

use geometry::Extent;
use timezero::CopyRun;

use super::{Inner, Volume};
use crate::error::Result;
use crate::meta::store_err;
use crate::metrics::Metrics;

/// Largest single copy I/O.
const IO_BYTES: u64 = 1 << 20;

fn extent(r: &CopyRun) -> Extent {
    Extent {
        first: r.first,
        last: r.last,
    }
}

impl Inner {
    fn source_data(&self, r: &CopyRun) -> Result<(Arc<Volume>, geometry::ExtentSet)> {
        let from = self.volume_by_id(r.from)?;
        let alloc = from
            .store
            .allocated(extent(r))
            .map_err(|e| store_err(&format!("allocation of volume {}", from.name), e))?;
        Ok((from, alloc))
    }

    /// Splits `runs` (plan order) after about `cap` bytes of source data;
    /// returns (runs to execute, runs to abandon). Holes are free.
    pub(crate) fn trim_runs(
        &self,
        runs: Vec<CopyRun>,
        cap: u64,
    ) -> Result<(Vec<CopyRun>, Vec<CopyRun>)> {
        let mut keep: Vec<CopyRun> = Vec::with_capacity(runs.len());
        let mut rest = Vec::new();
        let mut bytes = 0u64;
        let mut it = runs.into_iter();
        while let Some(r) = it.next() {
            let overlaps = keep
                .last()
                .is_some_and(|p| r.first <= p.last && r.last >= p.first);
            if bytes >= cap && !overlaps && !keep.is_empty() {
                rest.push(r);
                rest.extend(it);
                break;
            }
            if r.from == r.to {
                keep.push(r);
                continue;
            }
            let (from, alloc) = self.source_data(&r)?;
            let ts = from.geometry.track_size_bytes().max(1);
            let mut cut = None;
            for e in alloc.extents() {
                if bytes >= cap && e.first > r.first {
                    cut = Some(e.first);
                    break;
                }
                let n = e.last - e.first + 1;
                let room = (cap.saturating_sub(bytes) / ts).max(1);
                if n > room {
                    bytes += room * ts;
                    cut = Some(e.first + room);
                    break;
                }
                bytes += n * ts;
            }
            match cut {
                Some(k) if k > r.first && k <= r.last => {
                    keep.push(CopyRun { last: k - 1, ..r });
                    rest.push(CopyRun { first: k, ..r });
                    rest.extend(it);
                    break;
                }
                _ => keep.push(r),
            }
        }
        Ok((keep, rest))
    }

    /// Executes `runs` (their grains are locked): copies the source's data
    /// tracks, discards stale target tracks. Returns (stores written, bytes copied).
    pub(crate) fn execute_runs(&self, runs: &[CopyRun]) -> Result<(Vec<Arc<Volume>>, u64)> {
        let mut touched: Vec<Arc<Volume>> = Vec::new();
        let mut bytes = 0u64;
        let mut buf = Vec::new();
        for r in runs {
            if r.from == r.to {
                continue;
            }
            let (from, src) = self.source_data(r)?;
            let to = self.volume_by_id(r.to)?;
            let dst = to
                .store
                .allocated(extent(r))
                .map_err(|e| store_err(&format!("allocation of volume {}", to.name), e))?;
            let ts = to.geometry.track_size_bytes().max(1);
            let per_io = (IO_BYTES / ts).max(1);
            let mut data = 0u64;
            for e in src.extents() {
                let mut t = e.first;
                while t <= e.last {
                    let n = (e.last - t + 1).min(per_io);
                    self.copy_data(&from, &to, t * ts, n * ts, &mut buf, || {
                        format!("tracks {t}+{n}")
                    })?;
                    data += n;
                    t += n;
                }
            }
            let stale = dst.difference(&src);
            for e in stale.extents() {
                to.store
                    .discard(e.first * ts, e.track_count() * ts)
                    .map_err(|er| {
                        store_err(
                            &format!(
                                "discard stale tracks {}-{} of volume {}",
                                e.first, e.last, to.name
                            ),
                            er,
                        )
                    })?;
            }
            bytes += data * ts;
            Metrics::add(&self.metrics.holes_skipped, r.grains() - data);
            // Flushed even when nothing moved: a hole the target shows may be
            // an unflushed discard of an earlier failed copy (rule 1).
            if !touched.iter().any(|v| v.id == to.id) {
                touched.push(to);
            }
        }
        Ok((touched, bytes))
    }
}
