//! Chained copies commit in stages (PIT-1, found by the simulator's
//! crash-point enumeration, requests-sim #8).
//!
//! A plan may hold, for one grain, a copy `A -> B` followed by a copy whose
//! target is `A` (`C -> A`): the later copy overwrites the source of the
//! earlier one. If both were written, flushed and journaled together, a power
//! loss that keeps the data but not the journal record would leave `B`
//! unsplit, reading through `A`, which already holds `C`'s data. So a plan is
//! cut into stages at every copy whose target is the source of an earlier
//! copy (of an overlapping grain) in the current stage; each stage's data is
//! flushed and its bits journaled (one group commit) before the next stage's
//! data is written.

use std::ops::Range;

use crate::types::{CopyRun, GrainCopy, VolumeId};

/// What staging needs to know about a planned copy.
pub trait Staged {
    /// The volume read.
    fn source_vol(&self) -> VolumeId;
    /// The volume written.
    fn target_vol(&self) -> VolumeId;
    /// First and last grain.
    fn grains(&self) -> (u64, u64);
}

impl Staged for GrainCopy {
    fn source_vol(&self) -> VolumeId {
        self.from
    }
    fn target_vol(&self) -> VolumeId {
        self.to
    }
    fn grains(&self) -> (u64, u64) {
        (self.grain, self.grain)
    }
}

impl Staged for CopyRun {
    fn source_vol(&self) -> VolumeId {
        self.from
    }
    fn target_vol(&self) -> VolumeId {
        self.to
    }
    fn grains(&self) -> (u64, u64) {
        (self.first, self.last)
    }
}

/// Index ranges of `plan` that must be committed one after the other
/// (always at least one range, empty for an empty plan).
pub fn stages<T: Staged>(plan: &[T]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0usize;
    for (i, c) in plan.iter().enumerate() {
        let (f, l) = c.grains();
        let chained = plan[start..i].iter().any(|e| {
            let (ef, el) = e.grains();
            e.source_vol() == c.target_vol()
                && e.source_vol() != e.target_vol()
                && f <= el
                && l >= ef
        });
        if chained {
            out.push(start..i);
            start = i;
        }
    }
    if start < plan.len() || plan.is_empty() {
        out.push(start..plan.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MapId;

    fn c(grain: u64, from: u32, to: u32) -> GrainCopy {
        GrainCopy {
            map: MapId(0),
            grain,
            from: VolumeId(from),
            to: VolumeId(to),
        }
    }

    #[test]
    fn a_copy_into_an_earlier_source_starts_a_new_stage() {
        // v2 -> v0 (preserve for map0), then v1 -> v2 overwrites v2: two stages.
        assert_eq!(stages(&[c(2, 2, 0), c(2, 1, 2)]), vec![0..1, 1..2]);
        // Independent grains or volumes: one stage.
        assert_eq!(stages(&[c(2, 2, 0), c(3, 1, 2)]), vec![0..2]);
        assert_eq!(stages(&[c(1, 0, 1), c(1, 1, 2)]), vec![0..2]);
        // v0 -> v1 preserve, then v2 -> v0: two stages (sim seed 1004).
        assert_eq!(
            stages(&[c(5, 0, 1), c(5, 2, 0), c(6, 0, 1)]),
            vec![0..1, 1..3]
        );
        assert_eq!(stages::<GrainCopy>(&[]), vec![0..0]);
    }
}
