//! Who reads through a member, over whole bitmaps (word by word): the
//! dependants of a forced stop, the members a parked or cut map still
//! serves, and the grains a stopping map must clean. Transparent members
//! (E6) pass the grains they do not cover on down the chain.
//!
//! Over a chain `members` (downstream of some volume `U`, in order) and a
//! set `reach` of grains whose view at `U` is still what the next member
//! would read:
//! - member `d` **reads** `reach & !split(d)` through `U` (an unsplit grain
//!   is always covered: grains outside the extents are preset split);
//! - `d` **stops** the covered grains it holds, `reach & split(d) & cover(d)`;
//! - `d` is the **receiver** of the grains it covers, `reach & cover(d)`: a
//!   cleaning copy of those goes to `d` and to no member further down.

use crate::bitmap::Bitmap;
use crate::types::{CascadeId, MapId, MapState, VolumeId};

use super::Engine;

/// What a walk down a chain found.
pub(crate) struct Reach {
    /// Maps of members that read some grain through the walk's start.
    pub(crate) readers: Vec<MapId>,
    /// Grains some member reads through the start, each at its first
    /// covering member (the cleaning work).
    pub(crate) need: Bitmap,
    /// A member that would read or receive is suspended (its bitmap is
    /// offline: nothing about it can be decided now).
    pub(crate) suspended: bool,
}

impl Engine {
    /// Walk `members` (chain order, in cascade `cid`) from `reach`.
    /// `receivers_only` stops each grain at its first covering member (the
    /// cleaning view); otherwise a grain goes on past members that read it.
    pub(crate) fn walk_down(
        &self,
        cid: CascadeId,
        members: &[VolumeId],
        mut reach: Bitmap,
        receivers_only: bool,
    ) -> Reach {
        let mut out = Reach {
            readers: Vec::new(),
            need: Bitmap::new(reach.len()),
            suspended: false,
        };
        for v in members {
            if reach.count_ones() == 0 {
                break;
            }
            let Some(mid) = self.vols[v].target_map else {
                break;
            };
            let d = &self.maps[&mid];
            let mut reads = reach.clone();
            reads.and_not_assign(&d.split);
            if reads.count_ones() > 0 {
                out.readers.push(mid);
                out.suspended |= d.state == MapState::Suspended;
                out.need.or_assign(&reads);
            }
            let cover = self.member_cover(cid, *v);
            match (cover, receivers_only) {
                (None, true) => break,
                (None, false) => {
                    reach.and_not_assign(&d.split);
                }
                (Some(c), true) => {
                    reach.and_not_assign(c);
                }
                (Some(c), false) => {
                    let mut held = d.split.clone();
                    held.and_assign(c);
                    reach.and_not_assign(&held);
                }
            }
        }
        out
    }

    /// The grains member `t`'s map `id` answers for in its chain: its split
    /// grains, within its extents when it is transparent elsewhere.
    pub(crate) fn held_grains(&self, id: MapId, t: VolumeId) -> Bitmap {
        let m = &self.maps[&id];
        let mut held = m.split.clone();
        if let Some(cid) = self.vols[&t].member_of {
            if let Some(c) = self.member_cover(cid, t) {
                held.and_assign(c);
            }
        }
        held
    }

    /// The walk from member `t` (map `id`) down its own chain.
    pub(crate) fn walk_below(&self, id: MapId, t: VolumeId, receivers_only: bool) -> Option<Reach> {
        let cid = self.vols[&t].member_of?;
        let c = &self.cascades[&cid];
        let i = c.members.iter().position(|x| *x == t)?;
        Some(self.walk_down(
            cid,
            &c.members[i + 1..],
            self.held_grains(id, t),
            receivers_only,
        ))
    }

    /// Grains stopping map `id` still has to clean (0 when it is not a
    /// member or nothing downstream reads through it).
    pub fn clean_remaining(&self, id: MapId) -> Option<u64> {
        let m = self.maps.get(&id)?;
        let t = m.spec.target;
        Some(
            self.walk_below(id, t, true)
                .map_or(0, |r| r.need.count_ones()),
        )
    }

    /// Whether a member downstream of parked map `id` still reads through
    /// its target (or one that might is suspended).
    pub(crate) fn parked_has_readers(&self, id: MapId) -> bool {
        let t = self.maps[&id].spec.target;
        self.walk_below(id, t, false)
            .is_some_and(|r| !r.readers.is_empty())
    }
}
