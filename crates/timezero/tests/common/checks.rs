//! The invariant checks run after every step: I1-I16 (docs/SEMANTICS.md,
//! "Invariants (I)") and E1-E7 (docs/ENGINE.md, "Module invariants").

use std::collections::{BTreeMap, BTreeSet};

use timezero::{AccessError, CascadeInfo, CopyType, MapInfo, MapState, VolumeId};

use super::Sim;

impl Sim {
    /// All invariants that hold after every step.
    pub fn check(&mut self) {
        self.steps += 1;
        let maps = self.eng.maps();
        let cascades = self.eng.cascades();
        check_structure(&maps, &cascades);
        assert_eq!(self.eng.resolution_cycle(), None, "E4: resolution loops");
        // I1/I2/I12: every volume reads its oracle image; the engine's holder
        // equals the independent walk.
        for v in self.eng.volumes() {
            let expect = self.expected_accessible(v);
            for g in 0..self.grains {
                let r = self.eng.resolve_read(v, g);
                // The read fast path: "reads its own store" must be exact
                // when it says so, and fail exactly when resolve_read fails.
                match (self.eng.reads_own(v, g..g + 1), &r) {
                    (Ok(true), Ok(h)) => assert_eq!(*h, v, "reads_own({v}@{g}) but held by {h}"),
                    (Ok(_), Ok(_)) => {}
                    // Only the walk meets an upstream member's suspended map.
                    (Ok(false), Err(AccessError::Suspended { .. })) => {}
                    (Err(a), Err(b)) => assert_eq!(&a, b, "reads_own and resolve_read of {v}@{g}"),
                    (a, b) => panic!("reads_own {a:?} but resolve_read {b:?} for {v}@{g}"),
                }
                let walk_holder = *self.walk(v, g).last().unwrap();
                match r {
                    Ok(h) => {
                        assert!(expect, "I12: read of inaccessible {v} accepted");
                        assert_eq!(h, walk_holder, "holder of {v}@{g}");
                        if let Some(want) = self.oracle[&v][g as usize] {
                            assert_eq!(
                                self.phys[&h][g as usize], want,
                                "I1/I2: {v} grain {g} reads from {h} wrong data (step {})",
                                self.steps
                            );
                        }
                    }
                    Err(AccessError::Suspended { .. }) => {}
                    Err(e) => assert!(!expect, "accessible {v} refused: {e}"),
                }
            }
        }
        // I3: chain invariant, per grain over the members covering it.
        for c in &cascades {
            for g in 0..self.grains {
                let mut up: Option<VolumeId> = None; // None = the head
                for &d in &c.members {
                    let dm = maps.iter().find(|m| m.spec.target == d).unwrap();
                    // E6: a transparent member neither reads nor serves here.
                    if !c.private && dm.spec.extents.as_ref().is_some_and(|e| !e.contains(g)) {
                        continue;
                    }
                    let split = self.eng.split_bitmap(dm.id).unwrap().get(g);
                    if !split {
                        let holder = match up {
                            None if c.head_frozen => Some(c.head),
                            None => self.eng.view_holder(c.head, g).ok(),
                            Some(u) => self.eng.view_holder(u, g).ok(),
                        };
                        if let (Some(h), Some(want)) = (holder, self.oracle[&d][g as usize]) {
                            assert_eq!(
                                self.phys[&h][g as usize], want,
                                "I3: {d} unsplit at {g} but its upstream shows other data (step {})",
                                self.steps
                            );
                        }
                    }
                    up = Some(d);
                }
            }
        }
        // I4 monotone bits; I11 completion.
        let mut next = BTreeMap::new();
        for m in &maps {
            let b = self.eng.split_bitmap(m.id).unwrap();
            let bits: Vec<bool> = (0..self.grains).map(|g| b.get(g)).collect();
            if m.state.is_active() {
                if let Some(prev) = self.prev_split.get(&m.id) {
                    for g in 0..self.grains as usize {
                        assert!(!prev[g] || bits[g], "I4: split bit {g} of {} cleared", m.id);
                    }
                }
                next.insert(m.id, bits);
            }
            if m.state == MapState::IdleOrCopied && self.started.contains(&m.id) {
                assert_eq!(
                    m.progress_percent, 100,
                    "I11: idle_or_copied {} incomplete",
                    m.id
                );
                assert!(
                    m.cascade.is_none(),
                    "I11: idle_or_copied {} still in a chain",
                    m.id
                );
            }
            if matches!(
                m.state,
                MapState::Stopped
                    | MapState::IdleOrCopied
                    | MapState::Preparing
                    | MapState::Prepared
            ) {
                assert!(
                    m.cascade.is_none(),
                    "I5/E1: {} in state {} is in a chain",
                    m.id,
                    m.state
                );
            }
        }
        self.prev_split = next;
    }
}

/// I7 structure checks on introspection.
pub fn check_structure(maps: &[MapInfo], cascades: &[CascadeInfo]) {
    let mut member_of: BTreeMap<VolumeId, usize> = BTreeMap::new();
    let mut live: BTreeSet<(VolumeId, CopyType)> = BTreeSet::new();
    let mut per_source: BTreeMap<VolumeId, usize> = BTreeMap::new();
    for m in maps {
        *per_source.entry(m.spec.source).or_default() += 1;
        if m.state == MapState::Copying && m.cascade.is_none() {
            assert_eq!(m.progress_percent, 100, "E5: cut map {} incomplete", m.id);
        }
    }
    assert!(
        per_source.values().all(|n| *n <= 256),
        "I7: > 256 maps per source"
    );
    for (ci, c) in cascades.iter().enumerate() {
        assert!(!c.members.is_empty(), "E3: empty cascade");
        let mut seen = BTreeSet::new();
        if !c.head_frozen && !c.private {
            assert!(
                live.insert((c.head, c.copy_type)),
                "I7: {} in two live {} cascades",
                c.head,
                c.copy_type
            );
            seen.insert(c.head);
        }
        for v in &c.members {
            assert!(seen.insert(*v), "I7: {v} twice in a cascade");
            assert!(
                member_of.insert(*v, ci).is_none(),
                "I7: {v} member of two cascades"
            );
            assert!(
                live.insert((*v, c.copy_type)),
                "I7: {v} in two live {} cascades",
                c.copy_type
            );
            let m = maps
                .iter()
                .find(|m| m.spec.target == *v)
                .expect("member has a map");
            assert!(
                m.state.is_active(),
                "E1: member {v} with map in state {}",
                m.state
            );
            assert_eq!(
                m.spec.copy_type, c.copy_type,
                "I9: member {v} of a cascade of another type"
            );
        }
    }
}
