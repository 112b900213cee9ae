//! The complete plan of one host write (issue 13): the engine says, in
//! order, everything the controller must make durable and write, so the
//! controller executes it without reading engine bitmaps or states.
//!
//! Contract of [`HostWritePlan`] (executed strictly in this order):
//! 1. `copies`, cut into `stages`: each stage's copies are executed, their
//!    targets flushed and their bits journaled before the next stage's data
//!    is written (a later copy may overwrite the source of an earlier one,
//!    `crate::stages`). The **last** stage commits together with `before`.
//! 2. `before`: bit changes that must be durable before the host data
//!    (difference bits of incremental maps: a crash after the data but
//!    without them would leave an incremental restart that skips the grain).
//! 3. The host data.
//! 4. `after`: bit changes that may only become durable after the host
//!    data is (the volume's own map holds whole grains it had not split:
//!    durable earlier, a crash would expose the old upstream data as the
//!    volume's own).
//!
//! Every planned copy is released by exactly one of
//! [`Engine::commit_copies`] (after its stage is durable) or
//! [`Engine::abandon_copies`]. A bit change is applied to the engine with
//! [`Engine::apply_bit_change`] once durable, live or at journal replay.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::error::AccessError;
use crate::types::{GrainCopy, MapId, MapState, VolumeId};

use super::Engine;

/// A change of engine bits the controller journals as it is (the engine's
/// vocabulary: the controller does not interpret it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BitChange {
    /// Difference bits `first..end` of incremental map `map`.
    Diff {
        /// The incremental map.
        map: MapId,
        /// First grain.
        first: u64,
        /// One past the last grain.
        end: u64,
    },
    /// Host data of `volume` over grains `first..end` is durable: the
    /// volume's own map holds them ([`Engine::record_write`]).
    Recorded {
        /// The written volume.
        volume: VolumeId,
        /// First grain.
        first: u64,
        /// One past the last grain.
        end: u64,
    },
}

/// One host write, as the controller describes it to the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostWrite {
    /// The written volume.
    pub volume: VolumeId,
    /// Every grain the write touches.
    pub grains: Range<u64>,
    /// The grains it overwrites entirely (a sub-range of `grains`; the
    /// others need a fill of their old view first).
    pub whole: Range<u64>,
    /// Journal the difference bits even where they are set in memory (the
    /// controller's memory may hold bits not yet durable).
    pub rejournal_diffs: bool,
}

/// Everything one host write needs, in execution order (module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostWritePlan {
    /// Copies in execution order.
    pub copies: Vec<GrainCopy>,
    /// Index ranges of `copies` to commit one after the other.
    pub stages: Vec<Range<usize>>,
    /// Durable with the last stage, before the host data.
    pub before: Vec<BitChange>,
    /// Durable after the host data.
    pub after: Vec<BitChange>,
}

impl Engine {
    /// Plans host write `w` completely (module doc). On error nothing is
    /// left planned.
    pub fn plan_host_write(&mut self, w: &HostWrite) -> Result<HostWritePlan, AccessError> {
        let (grains, whole) = (w.grains.clone(), w.whole.clone());
        debug_assert!(
            whole.is_empty() || (grains.start <= whole.start && whole.end <= grains.end),
            "whole grains {whole:?} outside the write {grains:?}"
        );
        let mut segs: Vec<(Range<u64>, bool)> = Vec::with_capacity(3);
        if whole.is_empty() {
            segs.push((grains.clone(), false));
        } else {
            if grains.start < whole.start {
                segs.push((grains.start..whole.start, false));
            }
            segs.push((whole.clone(), true));
            if whole.end < grains.end {
                segs.push((whole.end..grains.end, false));
            }
        }
        let mut copies = Vec::new();
        for (range, is_whole) in segs {
            match self.plan_write(w.volume, range, is_whole) {
                Ok(p) => copies.extend(p.copies),
                Err(e) => {
                    self.abandon_copies(&copies);
                    return Err(e);
                }
            }
        }
        let stages = crate::stages::stages(&copies);
        let before = self
            .incremental_maps_of(w.volume)
            .into_iter()
            .filter(|m| {
                w.rejournal_diffs
                    || self.maps[m].diff.as_ref().is_some_and(|b| {
                        b.next_zero(grains.start)
                            .is_some_and(|z| z < grains.end.min(b.len()))
                    })
            })
            .map(|map| BitChange::Diff {
                map,
                first: grains.start,
                end: grains.end,
            })
            .collect();
        // Partial grains are split by their fill copies; whole grains still
        // unsplit on the volume's own map are split by the record.
        let record = !whole.is_empty()
            && self.member_map(w.volume).is_some_and(|m| {
                let m = &self.maps[&m];
                matches!(m.state, MapState::Copying | MapState::Stopping)
                    && m.split
                        .next_zero(whole.start)
                        .is_some_and(|z| z < whole.end)
            });
        let after = if record {
            vec![BitChange::Recorded {
                volume: w.volume,
                first: grains.start,
                end: grains.end,
            }]
        } else {
            Vec::new()
        };
        Ok(HostWritePlan {
            copies,
            stages,
            before,
            after,
        })
    }

    /// Applies a durable bit change (live after its commit, or at journal
    /// replay).
    pub fn apply_bit_change(&mut self, c: &BitChange) -> Result<(), crate::ControlError> {
        match *c {
            BitChange::Diff { map, first, end } => self.mark_diff(map, first..end),
            BitChange::Recorded { volume, first, end } => {
                self.record_write(volume, first..end);
                Ok(())
            }
        }
    }
}
