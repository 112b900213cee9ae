//! Per-grain locks, sharded.
//!
//! A host write, a copy-on-write, a redirected read and a background copy of
//! the same grain number are serialized; different grains run in parallel.
//! The key is the grain number alone (not the volume): the engine requires the
//! steps of one grain operation to be atomic per (cascade component, grain)
//! (docs/SEMANTICS.md, "Concurrency"), and a grain-number key is a superset of that, stable
//! under topology changes.
//!
//! Invariant: a thread takes all the shards it needs in one call, in
//! ascending shard order, so two lockers can never deadlock.

use parking_lot::{Mutex, MutexGuard};

const SHARDS: usize = 4096;

/// The shard table.
pub(crate) struct GrainLocks {
    shards: Box<[Mutex<()>]>,
}

/// Holds a set of shards until dropped.
pub(crate) struct GrainGuard<'a> {
    _guards: Vec<MutexGuard<'a, ()>>,
}

fn shard_of(grain: u64) -> usize {
    // Fibonacci hashing: neighbouring and strided grains land on different shards.
    (grain.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize % SHARDS
}

impl GrainLocks {
    pub(crate) fn new() -> GrainLocks {
        GrainLocks {
            shards: (0..SHARDS).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Locks every grain of `grains` (any order, duplicates allowed).
    pub(crate) fn lock(&self, grains: impl IntoIterator<Item = u64>) -> GrainGuard<'_> {
        let mut idx: Vec<usize> = grains.into_iter().map(shard_of).collect();
        idx.sort_unstable();
        idx.dedup();
        GrainGuard {
            _guards: idx.into_iter().map(|i| self.shards[i].lock()).collect(),
        }
    }
}

impl GrainLocks {
    /// Tries to lock the shard of each grain without blocking (the caller may
    /// hold other locks, so it must not wait). Returns the guard and the
    /// grains whose shard was busy (the caller drops their work).
    pub(crate) fn try_lock(
        &self,
        grains: impl IntoIterator<Item = u64> + Clone,
    ) -> (GrainGuard<'_>, Vec<u64>) {
        // A shard bitset instead of a sort: O(grains + shards).
        let mut wanted = vec![false; SHARDS];
        for g in grains.clone() {
            wanted[shard_of(g)] = true;
        }
        let mut guards = Vec::new();
        let mut busy_shard = vec![false; SHARDS];
        for (s, _) in wanted.iter().enumerate().filter(|(_, w)| **w) {
            match self.shards[s].try_lock() {
                Some(g) => guards.push(g),
                None => busy_shard[s] = true,
            }
        }
        let busy = if busy_shard.iter().any(|b| *b) {
            grains
                .into_iter()
                .filter(|g| busy_shard[shard_of(*g)])
                .collect()
        } else {
            Vec::new()
        };
        (GrainGuard { _guards: guards }, busy)
    }
}

impl GrainLocks {
    /// Like [`GrainLocks::try_lock`] for inclusive grain ranges; a long range
    /// wants every shard without hashing each grain. Returns `None` (nothing
    /// held) if any wanted shard is busy.
    pub(crate) fn try_lock_ranges(&self, ranges: &[(u64, u64)]) -> Option<GrainGuard<'_>> {
        let mut wanted = vec![false; SHARDS];
        'runs: for &(first, last) in ranges {
            if last.saturating_sub(first) >= 16 * SHARDS as u64 {
                wanted.iter_mut().for_each(|w| *w = true);
                break 'runs;
            }
            for g in first..=last {
                wanted[shard_of(g)] = true;
            }
        }
        let mut guards = Vec::new();
        for (s, _) in wanted.iter().enumerate().filter(|(_, w)| **w) {
            guards.push(self.shards[s].try_lock()?);
        }
        Some(GrainGuard { _guards: guards })
    }
}
