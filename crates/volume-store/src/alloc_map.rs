//! [`AllocMap`]: which tracks of a volume file hold data, kept in memory.
//!
//! The copy-on-write path asks "does this grain hold data?" on every first
//! write. Asking the filesystem (`SEEK_DATA`/`SEEK_HOLE`) costs a walk of the
//! file's extent tree or, on tmpfs, of its page cache; on a mostly-hole file
//! that walk dominated a first write. So [`crate::SparseFileStore`] asks the
//! file once, at open, and keeps one bit per track afterwards.
//!
//! Invariants (upheld by the store, which owns the map):
//! - **never under-reports**: a track whose bytes in the file may differ from
//!   zeros has its bit set. The store sets bits *before* it writes, and clears
//!   them only *after* a hole punch succeeded, with writes excluded for the
//!   punch's duration (so no write can land between the punch and the clear);
//! - over-reporting is allowed and harmless: a set bit over a hole (a write
//!   that failed, a punch the filesystem could not do) reads as zeros, which
//!   is what a copy of a hole must produce anyway;
//! - bits past the last track are never set (the last word is masked).
//!
//! Lock-free: one `AtomicU64` per 64 tracks; set and clear are `fetch_or` /
//! `fetch_and`, reads are relaxed loads (the store's own locking and the
//! caller's grain locks order them against writes of the same track).

use std::sync::atomic::{AtomicU64, Ordering};

use geometry::{Extent, ExtentSet, TrackNo};

/// One bit per track: set when the track may hold data (see the module docs).
#[derive(Debug)]
pub(crate) struct AllocMap {
    words: Box<[AtomicU64]>,
    tracks: u64,
}

/// The mask of bits `lo..=hi` within one word.
fn mask(lo: u64, hi: u64) -> u64 {
    debug_assert!(lo <= hi && hi < 64);
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

impl AllocMap {
    /// A map of `tracks` tracks, all holes.
    pub(crate) fn new(tracks: u64) -> AllocMap {
        AllocMap {
            words: (0..tracks.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            tracks,
        }
    }

    /// Applies `f(word, mask)` to every word that `first..=last` touches.
    fn each_word(&self, first: TrackNo, last: TrackNo, f: impl Fn(&AtomicU64, u64)) {
        debug_assert!(
            first <= last && last < self.tracks,
            "extent inside the volume"
        );
        let (w0, w1) = (first / 64, last / 64);
        for w in w0..=w1 {
            let lo = if w == w0 { first % 64 } else { 0 };
            let hi = if w == w1 { last % 64 } else { 63 };
            f(&self.words[w as usize], mask(lo, hi));
        }
    }

    /// Marks `first..=last` as (possibly) holding data.
    pub(crate) fn set(&self, first: TrackNo, last: TrackNo) {
        self.each_word(first, last, |w, m| {
            w.fetch_or(m, Ordering::Release);
        });
    }

    /// Marks `first..=last` as holes (only after a successful punch).
    pub(crate) fn clear(&self, first: TrackNo, last: TrackNo) {
        self.each_word(first, last, |w, m| {
            w.fetch_and(!m, Ordering::Release);
        });
    }

    /// True if `track`'s bit is set.
    pub(crate) fn contains(&self, track: TrackNo) -> bool {
        let w = self.words[(track / 64) as usize].load(Ordering::Acquire);
        w & (1 << (track % 64)) != 0
    }

    /// The tracks of `extent` whose bits are set, as runs (word at a time).
    pub(crate) fn extents(&self, extent: Extent) -> ExtentSet {
        debug_assert!(extent.first <= extent.last && extent.last < self.tracks);
        let mut set = ExtentSet::new();
        let mut run: Option<TrackNo> = None;
        let mut t = extent.first;
        while t <= extent.last {
            let word = self.words[(t / 64) as usize].load(Ordering::Acquire);
            let hi = (t | 63).min(extent.last);
            let bits = word & mask(t % 64, hi % 64);
            if bits == mask(t % 64, hi % 64) {
                run.get_or_insert(t);
            } else if bits == 0 {
                if let Some(s) = run.take() {
                    set.insert(Extent {
                        first: s,
                        last: t - 1,
                    });
                }
            } else {
                for u in t..=hi {
                    if bits & (1 << (u % 64)) != 0 {
                        run.get_or_insert(u);
                    } else if let Some(s) = run.take() {
                        set.insert(Extent {
                            first: s,
                            last: u - 1,
                        });
                    }
                }
            }
            t = hi + 1;
        }
        if let Some(s) = run {
            set.insert(Extent {
                first: s,
                last: extent.last,
            });
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The map answers exactly like a plain per-track bool model.
        #[test]
        fn matches_a_bool_per_track(
            tracks in 1u64..300,
            ops in proptest::collection::vec((any::<bool>(), 0u64..300, 0u64..300), 0..40),
            query in (0u64..300, 0u64..300),
        ) {
            let map = AllocMap::new(tracks);
            let mut model = vec![false; tracks as usize];
            for (set, a, b) in ops {
                let (first, last) = (a.min(b) % tracks, a.max(b) % tracks);
                let (first, last) = (first.min(last), first.max(last));
                if set { map.set(first, last) } else { map.clear(first, last) }
                for t in first..=last {
                    model[t as usize] = set;
                }
            }
            let (a, b) = (query.0 % tracks, query.1 % tracks);
            let q = Extent { first: a.min(b), last: a.max(b) };
            let got: Vec<u64> = map.extents(q).tracks().collect();
            let want: Vec<u64> = (q.first..=q.last).filter(|&t| model[t as usize]).collect();
            prop_assert_eq!(got, want);
            for t in 0..tracks {
                prop_assert_eq!(map.contains(t), model[t as usize]);
            }
        }
    }
}
