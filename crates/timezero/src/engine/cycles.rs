//! E4, acyclic resolution, as a checked rule rather than an argument.
//!
//! Two walks follow the cascade structure and must never revisit a volume:
//! - **resolution** (`holder`): a member of a cascade whose head is not
//!   frozen reads through to that head, and on into the head's own cascade;
//! - **rule A** (`phys_change`): before the physical data of `X` changes,
//!   the first member of every *frozen* cascade headed by `X` receives it,
//!   which is itself a physical change of that member.
//!
//! Restores freeze heads, and a member that leaves a frozen cascade (stop,
//! cut at completion) makes the next member first, so a chain of restores
//! can close a loop of frozen heads (issue 12: maps x->F0, F->x restore,
//! F0->F restore, then F0 leaves). A loop would make every write to an
//! unsplit grain of its volumes unresolvable. [`Shape`] is a copy of the
//! structure only (no bitmaps), on which a start or a member removal is
//! tried before it is accepted; the engine refuses a request whose shape has
//! a loop ([`crate::ControlError::RestoreCycle`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{CascadeId, CopyType, VolumeId};

use super::{Cascade, Engine};

/// The cascade structure of an engine, without bitmaps.
#[derive(Clone, Debug)]
pub(crate) struct Shape {
    cascades: BTreeMap<CascadeId, Cascade>,
    next: u32,
    /// Targets of extent-limited maps (transparent where they are members
    /// of shared cascades, E6).
    extent_limited: BTreeSet<VolumeId>,
}

impl Shape {
    pub(crate) fn of(eng: &Engine) -> Shape {
        Shape {
            cascades: eng.cascades.clone(),
            next: eng.next_cascade,
            extent_limited: eng
                .maps
                .values()
                .filter(|m| m.spec.extents.is_some())
                .map(|m| m.spec.target)
                .collect(),
        }
    }

    /// The structure once every removal already scheduled has happened:
    /// the targets of stopping maps (and of suspended maps that resume into
    /// stopping) leave their chains when cleaning ends, with no request left
    /// to check then, so every check starts from this shape.
    pub(crate) fn after_pending(eng: &Engine) -> Shape {
        let mut shape = Shape::of(eng);
        for m in eng.maps.values() {
            let leaving = match m.state {
                crate::types::MapState::Stopping => true,
                crate::types::MapState::Suspended => {
                    m.resume_to == Some(crate::types::MapState::Stopping)
                }
                _ => false,
            };
            if leaving {
                shape.remove(m.spec.target);
            }
        }
        shape
    }

    fn member_of(&self, v: VolumeId) -> Option<CascadeId> {
        self.cascades
            .iter()
            .find(|(_, c)| c.members.contains(&v))
            .map(|(id, _)| *id)
    }

    /// What `start_one` does to the structure: freeze the cascades `t`
    /// heads, then place `t` as `insert::place` says.
    pub(crate) fn start(&mut self, s: VolumeId, t: VolumeId, ty: CopyType) {
        for c in self.cascades.values_mut() {
            if c.head == t {
                c.frozen = true;
            }
        }
        let ext = &self.extent_limited;
        let transparent = |v: VolumeId| {
            ext.contains(&v)
                && self
                    .cascades
                    .values()
                    .any(|c| !c.private && c.members.contains(&v))
        };
        match super::insert::place(&self.cascades, s, ty, ext.contains(&t), transparent) {
            super::insert::Place::At(cid, i) => {
                if let Some(c) = self.cascades.get_mut(&cid) {
                    c.members.insert(i, t);
                }
            }
            super::insert::Place::New { private } => {
                let id = CascadeId(self.next);
                self.next += 1;
                self.cascades.insert(
                    id,
                    Cascade {
                        ty,
                        head: s,
                        frozen: false,
                        private,
                        members: vec![t],
                    },
                );
            }
        }
    }

    /// `v` leaves its cascade as a stop that finishes cleaning does (the
    /// rest of the chain closes up behind it).
    pub(crate) fn remove(&mut self, v: VolumeId) {
        if let Some(cid) = self.member_of(v) {
            let c = self.cascades.get_mut(&cid).expect("found");
            c.members.retain(|x| *x != v);
            if c.members.is_empty() {
                self.cascades.remove(&cid);
            }
        }
    }

    /// A loop in either walk, as the volumes on it in walk order.
    pub(crate) fn cycle(&self) -> Option<Vec<VolumeId>> {
        let mut resolution: BTreeMap<VolumeId, Vec<VolumeId>> = BTreeMap::new();
        let mut rule_a: BTreeMap<VolumeId, Vec<VolumeId>> = BTreeMap::new();
        for c in self.cascades.values() {
            if c.frozen {
                if let Some(&f) = c.members.first() {
                    // A restore target that is also the first member reads
                    // its own physical grain: no step.
                    if f != c.head {
                        rule_a.entry(c.head).or_default().push(f);
                    }
                }
            } else {
                for &m in &c.members {
                    resolution.entry(m).or_default().push(c.head);
                }
            }
        }
        find_cycle(&resolution).or_else(|| find_cycle(&rule_a))
    }
}

/// A directed cycle of `graph`, if any (iterative three-colour DFS).
fn find_cycle(graph: &BTreeMap<VolumeId, Vec<VolumeId>>) -> Option<Vec<VolumeId>> {
    let mut done: BTreeSet<VolumeId> = BTreeSet::new();
    for &root in graph.keys() {
        if done.contains(&root) {
            continue;
        }
        // Stack of (node, next edge index); `path` mirrors it.
        let mut stack: Vec<(VolumeId, usize)> = vec![(root, 0)];
        let mut on_path: BTreeSet<VolumeId> = BTreeSet::from([root]);
        while let Some(&mut (v, ref mut i)) = stack.last_mut() {
            let next = graph.get(&v).and_then(|e| e.get(*i)).copied();
            *i += 1;
            match next {
                Some(w) if on_path.contains(&w) => {
                    let at = stack.iter().position(|(x, _)| *x == w).unwrap_or(0);
                    return Some(stack[at..].iter().map(|(x, _)| *x).collect());
                }
                Some(w) if !done.contains(&w) => {
                    on_path.insert(w);
                    stack.push((w, 0));
                }
                Some(_) => {}
                None => {
                    on_path.remove(&v);
                    done.insert(v);
                    stack.pop();
                }
            }
        }
    }
    None
}

impl Engine {
    /// E4 on the current structure: a loop of either walk, if any. `load`
    /// refuses a state with one, and tests check it after every step.
    pub fn resolution_cycle(&self) -> Option<Vec<VolumeId>> {
        Shape::of(self).cycle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cascade(head: u32, frozen: bool, members: &[u32]) -> Cascade {
        Cascade {
            ty: CopyType::Full,
            head: VolumeId(head),
            frozen,
            private: false,
            members: members.iter().map(|v| VolumeId(*v)).collect(),
        }
    }

    #[test]
    fn a_member_leaving_a_frozen_cascade_can_close_a_restore_loop() {
        // x=0, F0=1, F=2 after a: x->F0, b: F->x restore, c: F0->F restore.
        let mut shape = Shape {
            cascades: BTreeMap::from([
                (CascadeId(0), cascade(0, true, &[1, 2])),
                (CascadeId(1), cascade(2, true, &[0])),
            ]),
            next: 2,
            extent_limited: BTreeSet::new(),
        };
        assert_eq!(shape.cycle(), None);
        shape.remove(VolumeId(1));
        assert_eq!(shape.cycle(), Some(vec![VolumeId(0), VolumeId(2)]));
    }

    #[test]
    fn restarting_a_restore_onto_a_head_whose_chain_leads_back_is_a_loop() {
        // y=1 heads a frozen cascade whose first member is x=0; starting
        // x->y (restore, a new cascade from x) freezes nothing new but a
        // second restore y->x freezes x's cascade whose first member is y.
        let mut shape = Shape {
            cascades: BTreeMap::from([(CascadeId(0), cascade(1, true, &[0]))]),
            next: 1,
            extent_limited: BTreeSet::new(),
        };
        shape.start(VolumeId(0), VolumeId(1), CopyType::Nocopy);
        assert_eq!(shape.cycle(), None, "x heads a live cascade: no loop yet");
        shape.start(VolumeId(3), VolumeId(0), CopyType::Full);
        assert_eq!(shape.cycle(), Some(vec![VolumeId(0), VolumeId(1)]));
    }

    #[test]
    fn resolution_loops_are_found_too() {
        let shape = Shape {
            cascades: BTreeMap::from([
                (CascadeId(0), cascade(0, false, &[1])),
                (CascadeId(1), cascade(1, false, &[0])),
            ]),
            next: 2,
            extent_limited: BTreeSet::new(),
        };
        assert_eq!(shape.cycle(), Some(vec![VolumeId(0), VolumeId(1)]));
    }
}
