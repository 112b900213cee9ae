//! Test harness: a simulated physical store that executes the engine's plans,
//! the reference oracle (snapshot the source view at each start, overlay
//! later writes, no cascades; docs/TESTING.md, "Engine"), an independent
//! resolution walker, and the invariant checks I1-I16 of docs/SEMANTICS.md,
//! "Invariants (I)".
#![allow(dead_code)]

mod checks;

use std::collections::{BTreeMap, BTreeSet};

use timezero::{
    AccessError, CopyType, Engine, EngineEvent, GrainCopy, MapId, MapInfo, MapState, StartOptions,
    VolumeId,
};

/// Partial write of `token` into a grain holding `old`.
pub fn mix(old: u64, token: u64) -> u64 {
    old.wrapping_mul(31).wrapping_add(token)
}

pub struct Sim {
    pub eng: Engine,
    pub grains: u64,
    /// Physical data of each volume (one token per grain).
    pub phys: BTreeMap<VolumeId, Vec<u64>>,
    /// Oracle: what each volume must read (None = not an image: data lost).
    pub oracle: BTreeMap<VolumeId, Vec<Option<u64>>>,
    next_token: u64,
    /// Split bitmaps after the previous step (I4).
    prev_split: BTreeMap<MapId, Vec<bool>>,
    /// Per active nocopy map: grains host-written anywhere since its start (I9).
    written_since_start: BTreeMap<MapId, BTreeSet<u64>>,
    /// A restore happened: I9's allocation bound does not apply (2.8 cleaning
    /// of the frozen head may fill snapshot targets).
    pub restore_seen: bool,
    /// Per map: grains unsplit right after its latest start (I14).
    unsplit_at_start: BTreeMap<MapId, BTreeSet<u64>>,
    /// Maps started at least once.
    started: BTreeSet<MapId>,
    pub steps: u64,
    /// Counts of what happened (coverage report with TZ_STATS=1).
    pub stats: BTreeMap<String, u64>,
}

impl Sim {
    pub fn new(volumes: u32, grains: u64) -> Sim {
        let mut eng = Engine::new();
        let mut phys = BTreeMap::new();
        let mut oracle = BTreeMap::new();
        for v in 0..volumes {
            let id = VolumeId(v);
            eng.add_volume(id, grains).unwrap();
            let data: Vec<u64> = (0..grains)
                .map(|g| 1_000_000 * u64::from(v + 1) + g)
                .collect();
            oracle.insert(id, data.iter().map(|x| Some(*x)).collect());
            phys.insert(id, data);
        }
        Sim {
            eng,
            grains,
            phys,
            oracle,
            next_token: 1,
            prev_split: BTreeMap::new(),
            written_since_start: BTreeMap::new(),
            restore_seen: false,
            unsplit_at_start: BTreeMap::new(),
            started: BTreeSet::new(),
            steps: 0,
            stats: BTreeMap::new(),
        }
    }

    pub fn maps(&self) -> Vec<MapInfo> {
        self.eng.maps()
    }

    pub fn map_ids(&self) -> Vec<MapId> {
        self.eng.maps().iter().map(|m| m.id).collect()
    }

    pub fn states(&self) -> BTreeMap<MapId, MapInfo> {
        self.eng.maps().into_iter().map(|m| (m.id, m)).collect()
    }

    /// Execute copies on the physical store (checking I9) and commit them.
    pub fn execute(&mut self, copies: &[GrainCopy]) {
        for c in copies {
            let info = self.eng.map_info(c.map).expect("copy for a live map");
            assert_eq!(
                info.spec.target, c.to,
                "copy sets the bit of the receiver's own map"
            );
            assert!(
                info.state.is_active(),
                "copy into a map in state {}",
                info.state
            );
            // Cleaning hands over whatever the stopping neighbour holds.
            let cleaning = self
                .eng
                .maps()
                .iter()
                .any(|m| m.spec.target == c.from && m.state == MapState::Stopping);
            if info.spec.copy_type == CopyType::Nocopy && !self.restore_seen && !cleaning {
                let w = self
                    .written_since_start
                    .get(&c.map)
                    .cloned()
                    .unwrap_or_default();
                assert!(
                    w.contains(&c.grain),
                    "I9: snapshot {:?} received grain {} that no host write touched",
                    c.map,
                    c.grain
                );
            }
            if let Some(u) = self.unsplit_at_start.get(&c.map) {
                assert!(u.contains(&c.grain), "I14: copy of grain split at start");
            }
            let data = self.phys[&c.from][c.grain as usize];
            self.phys.get_mut(&c.to).unwrap()[c.grain as usize] = data;
        }
        self.eng.commit_copies(copies);
    }

    /// A host write through the engine's plan. Returns whether it was accepted.
    pub fn write(&mut self, v: VolumeId, g: u64, whole: bool) -> bool {
        self.write_range(v, g, 1, whole)
    }

    /// A host write of `len` grains from `g` (clamped to the volume).
    pub fn write_range(&mut self, v: VolumeId, g: u64, len: u64, whole: bool) -> bool {
        let before = self.states();
        let ok = self.write_inner(v, g, len.clamp(1, self.grains - g), whole);
        self.after_control(&before);
        ok
    }

    fn write_inner(&mut self, v: VolumeId, g: u64, len: u64, whole: bool) -> bool {
        let expect_ok = self.expected_accessible(v);
        let cascades_of_v = self.live_roles(v) + self.frozen_count();
        let range = g..g + len;
        let base = self.eng.clone();
        let w = timezero::HostWrite {
            volume: v,
            grains: range.clone(),
            whole: if whole { range.clone() } else { 0..0 },
            rejournal_diffs: false,
        };
        let plan = match self.eng.plan_host_write(&w) {
            Ok(p) => p,
            Err(e) => {
                assert!(
                    !expect_ok || matches!(e, AccessError::Suspended { .. }),
                    "write to accessible {v} refused: {e}"
                );
                return false;
            }
        };
        assert!(expect_ok, "I12: write to inaccessible {v} accepted");
        for x in range.clone() {
            let n = plan.copies.iter().filter(|c| c.grain == x).count();
            assert!(
                n <= 1 + cascades_of_v,
                "I10: {n} copies for one write to {v}@{x} in {cascades_of_v} cascades"
            );
            *self.stats.entry(format!("write_copies={n}")).or_default() += 1;
        }
        self.check_plan_order(&base, &plan, v, range.clone());
        for set in self.written_since_start.values_mut() {
            set.extend(range.clone());
        }
        self.execute(&plan.copies);
        for x in range.clone() {
            let token = self.next_token;
            self.next_token += 1;
            let cell = &mut self.phys.get_mut(&v).unwrap()[x as usize];
            *cell = if whole { token } else { mix(*cell, token) };
            let o = &mut self.oracle.get_mut(&v).unwrap()[x as usize];
            *o = if whole {
                Some(token)
            } else {
                o.map(|y| mix(y, token))
            };
        }
        for c in plan.before.iter().chain(&plan.after) {
            self.eng.apply_bit_change(c).unwrap();
        }
        if plan.after.is_empty() {
            // Nothing for the own map to record: the write changes no bit.
            let before = self.eng.save();
            self.eng.record_write(v, range);
            assert_eq!(
                before,
                self.eng.save(),
                "an own-map bit the plan did not record"
            );
        }
        true
    }

    /// The plan's order is crash safe: executed stage by stage, with the
    /// bits of earlier stages durable, every image still reads its oracle
    /// data at any crash point; so it does after the host data is written
    /// (outside the written grains of `v`) with the `before` bits durable
    /// and the `after` bits not yet. `before` names only incremental maps of
    /// `v`, `after` only `v`'s own record.
    fn check_plan_order(
        &self,
        base: &Engine,
        plan: &timezero::HostWritePlan,
        v: VolumeId,
        range: std::ops::Range<u64>,
    ) {
        let covered: usize = plan.stages.iter().map(|r| r.len()).sum();
        assert_eq!(covered, plan.copies.len(), "stages cover the plan");
        assert!(plan.stages.windows(2).all(|w| w[0].end == w[1].start));
        for c in &plan.before {
            assert!(
                matches!(c, timezero::BitChange::Diff { .. }),
                "before: {c:?}"
            );
        }
        for c in &plan.after {
            assert!(
                matches!(c, timezero::BitChange::Recorded { volume, .. } if *volume == v),
                "after: {c:?}"
            );
        }
        let mut phys = self.phys.clone();
        let owner = |eng: &Engine, u: VolumeId| {
            eng.maps()
                .into_iter()
                .find(|m| m.spec.target == u)
                .map(|m| (m.id, m.state))
        };
        let check = |eng: &Engine, phys: &BTreeMap<VolumeId, Vec<u64>>, at: &str| {
            for u in eng.volumes() {
                // A commit may end a map (its cleaning done, a withdrawn map
                // deleted): its target is no image any more.
                if owner(eng, u) != owner(base, u) {
                    continue;
                }
                for g in 0..self.grains {
                    if u == v && range.contains(&g) {
                        continue;
                    }
                    let Some(want) = self.oracle[&u][g as usize] else {
                        continue;
                    };
                    if let Ok(h) = eng.resolve_read(u, g) {
                        assert_eq!(
                            phys[&h][g as usize], want,
                            "crash {at}: {u}@{g} reads {h}, not its image (step {})",
                            self.steps
                        );
                    }
                }
            }
        };
        for (k, r) in plan.stages.iter().enumerate() {
            for c in &plan.copies[r.clone()] {
                let d = phys[&c.from][c.grain as usize];
                phys.get_mut(&c.to).unwrap()[c.grain as usize] = d;
            }
            let mut crashed = base.clone();
            crashed.commit_copies(&plan.copies[..r.start]);
            check(&crashed, &phys, &format!("in stage {k}"));
        }
        let mut crashed = base.clone();
        crashed.commit_copies(&plan.copies);
        for c in &plan.before {
            crashed.apply_bit_change(c).unwrap();
        }
        for g in range.clone() {
            phys.get_mut(&v).unwrap()[g as usize] = u64::MAX;
        }
        check(&crashed, &phys, "after the host data");
    }

    /// Background copy/cleaning steps for one map.
    pub fn background(&mut self, map: MapId, n: usize) {
        let before = self.states();
        // The run-length planner must plan exactly the same copies.
        let runs = self.eng.plan_background_runs(map, n);
        let expanded: Vec<GrainCopy> = runs.iter().flat_map(|r| r.copies()).collect();
        self.eng.abandon_runs(&runs);
        let copies = self.eng.plan_background(map, n);
        assert_eq!(
            expanded, copies,
            "plan_background_runs differs from plan_background"
        );
        if self.steps % 2 == 0 {
            self.execute(&copies);
        } else {
            // Same data movement, committed as runs.
            self.eng.abandon_copies(&copies);
            let runs = self.eng.plan_background_runs(map, n);
            let expanded: Vec<GrainCopy> = runs.iter().flat_map(|r| r.copies()).collect();
            for c in &expanded {
                let data = self.phys[&c.from][c.grain as usize];
                self.phys.get_mut(&c.to).unwrap()[c.grain as usize] = data;
            }
            self.eng.commit_runs(&runs);
        }
        self.after_control(&before);
    }

    pub fn live_roles(&self, v: VolumeId) -> usize {
        self.eng
            .cascades()
            .iter()
            .filter(|c| (c.head == v && !c.head_frozen) || c.members.contains(&v))
            .count()
    }

    pub fn frozen_count(&self) -> usize {
        self.eng.cascades().iter().filter(|c| c.head_frozen).count()
    }

    /// I12 from map states alone.
    pub fn expected_accessible(&self, v: VolumeId) -> bool {
        self.eng.maps().iter().all(|m| {
            let as_target = m.spec.target == v
                && match m.state {
                    MapState::Preparing | MapState::Prepared | MapState::Stopped => true,
                    MapState::Stopping => m.progress_percent < 100,
                    MapState::Suspended => true,
                    _ => false,
                };
            let as_source = m.spec.source == v && m.state == MapState::Suspended;
            !as_target && !as_source
        })
    }

    /// Independent resolution walk over the introspected cascades: the volumes
    /// visited from `v` at grain `g`, ending with the physical holder.
    pub fn walk(&self, v: VolumeId, g: u64) -> Vec<VolumeId> {
        let cascades = self.eng.cascades();
        let maps = self.eng.maps();
        // Some(split bit) of a member (grains outside extents are preset split).
        // None: a transparent member (extent-limited, in a shared cascade,
        // not covering `g`: E6), which the walk passes.
        let node = |x: VolumeId, private: bool| {
            let m = maps.iter().find(|m| m.spec.target == x).unwrap();
            if !private && m.spec.extents.as_ref().is_some_and(|e| !e.contains(g)) {
                return None;
            }
            Some(self.eng.split_bitmap(m.id).unwrap().get(g))
        };
        let mut path = vec![v];
        let mut cur = v;
        for _ in 0..=cascades.len() {
            let Some(c) = cascades.iter().find(|c| c.members.contains(&cur)) else {
                return path;
            };
            let i = c.members.iter().position(|x| *x == cur).unwrap();
            if self
                .eng
                .split_bitmap(maps.iter().find(|m| m.spec.target == cur).unwrap().id)
                .unwrap()
                .get(g)
            {
                return path;
            }
            for j in (0..i).rev() {
                match node(c.members[j], c.private) {
                    None => continue,
                    Some(s) => {
                        path.push(c.members[j]);
                        if s {
                            return path;
                        }
                    }
                }
            }
            path.push(c.head);
            if c.head_frozen {
                return path;
            }
            cur = c.head;
        }
        panic!("E4: resolution from {v} does not terminate");
    }

    /// Run a control request; on error nothing may change (I16 and typed errors).
    pub fn control<E: std::fmt::Debug>(
        &mut self,
        f: impl FnOnce(&mut Engine) -> Result<(), E>,
    ) -> bool {
        let before = self.eng.save();
        let before_states = self.states();
        let res = f(&mut self.eng);
        match res {
            Err(_) => {
                assert_eq!(
                    before,
                    self.eng.save(),
                    "a rejected request changed the state"
                );
                assert!(self.eng.take_events().is_empty());
                false
            }
            Ok(()) => {
                self.after_control(&before_states);
                true
            }
        }
    }

    /// Oracle updates from the state changes and events of a request.
    pub fn after_control(&mut self, before: &BTreeMap<MapId, MapInfo>) {
        let events = self.eng.take_events();
        for e in &events {
            let k = match e {
                EngineEvent::StateChanged { from, to, .. } => format!("{from}->{to}"),
                EngineEvent::CopyCompleted { .. } => "copy_completed".into(),
                EngineEvent::CleaningDone { .. } => "cleaning_done".into(),
                EngineEvent::MapDeleted { autodelete, .. } => format!("deleted(auto={autodelete})"),
                EngineEvent::GroupDeleted { .. } => "group_deleted".into(),
            };
            *self.stats.entry(k).or_default() += 1;
        }
        let frozen = self.frozen_count() as u64;
        *self.stats.entry("frozen_cascade_steps".into()).or_default() += frozen.min(1);
        let after = self.states();
        let autodeleted: BTreeSet<MapId> = events
            .iter()
            .filter_map(|e| match e {
                EngineEvent::MapDeleted {
                    map,
                    autodelete: true,
                } => Some(*map),
                _ => None,
            })
            .collect();
        for (id, b) in before {
            let t = b.spec.target;
            match after.get(id) {
                None if !autodeleted.contains(id) && b.state != MapState::IdleOrCopied => {
                    // delete --force: the target comes online with its own data.
                    let p = self.phys[&t].clone();
                    self.oracle.insert(t, p.into_iter().map(Some).collect());
                }
                Some(a) if a.state == MapState::Stopped && b.state != MapState::Stopped => {
                    self.oracle.insert(t, vec![None; self.grains as usize]);
                    self.written_since_start.remove(id);
                }
                _ => {}
            }
        }
    }

    /// Start maps at one instant (single or group); oracle snapshots in the
    /// engine's order (a map whose source is another's target goes after it).
    pub fn start(
        &mut self,
        ids: &[MapId],
        opts: StartOptions,
        group: Option<timezero::GroupId>,
    ) -> bool {
        let before = self.states();
        let before_save = self.eng.save();
        let res = match group {
            Some(g) => self.eng.start_group(g, opts),
            None => self.eng.start(ids[0], opts),
        };
        if res.is_err() {
            assert_eq!(
                before_save,
                self.eng.save(),
                "a rejected start changed the state"
            );
            assert!(self.eng.take_events().is_empty());
            return false;
        }
        let mut left: Vec<MapId> = ids.to_vec();
        left.sort();
        left.dedup();
        // Insertion order: by increasing copy rate (nocopy counts as 0), then
        // id, a map after the member whose target is its source.
        left.sort_by_key(|id| {
            let spec = &before[id].spec;
            if spec.copy_type == CopyType::Full {
                spec.copy_rate
            } else {
                0
            }
        });
        let mut order = Vec::new();
        while !left.is_empty() {
            let pos = left
                .iter()
                .position(|a| {
                    let s = before[a].spec.source;
                    !left.iter().any(|b| b != a && before[b].spec.target == s)
                })
                .unwrap();
            order.push(left.remove(pos));
        }
        for id in &order {
            let spec = &before[id].spec;
            let src = self.oracle[&spec.source].clone();
            let tp = self.phys[&spec.target].clone();
            let t = self.oracle.get_mut(&spec.target).unwrap();
            for g in 0..self.grains {
                let inside = spec.extents.as_ref().is_none_or(|e| e.contains(g));
                let gi = g as usize;
                if inside {
                    t[gi] = src[gi];
                } else if t[gi].is_none() {
                    t[gi] = Some(tp[gi]);
                }
            }
            if opts.restore {
                self.restore_seen = true;
            }
            self.started.insert(*id);
            self.written_since_start.insert(*id, BTreeSet::new());
        }
        // I8: insertion right after the source, in the source's cascade of the type.
        let cascades = self.eng.cascades();
        for id in &order {
            let spec = &before[id].spec;
            if let Some(c) = cascades.iter().find(|c| c.members.contains(&spec.target)) {
                let i = c.members.iter().position(|x| *x == spec.target).unwrap();
                let up = if i == 0 { c.head } else { c.members[i - 1] };
                // A later member of the same instant may have been inserted after
                // the same source, or the map completed at once and was cut.
                let later_from_same_source =
                    order.iter().skip_while(|x| *x != id).skip(1).any(|x| {
                        before[x].spec.source == spec.source && before[x].spec.target == up
                    });
                assert!(
                    up == spec.source || later_from_same_source,
                    "I8: target {} of {id} sits after {up}, not after its source {}",
                    spec.target,
                    spec.source
                );
                assert_eq!(
                    c.copy_type, spec.copy_type,
                    "I8/I9: inserted in a cascade of its type"
                );
            }
        }
        for id in &order {
            if let Some(b) = self.eng.split_bitmap(*id) {
                let u = (0..self.grains).filter(|g| !b.get(*g)).collect();
                self.unsplit_at_start.insert(*id, u);
            }
        }
        self.after_control(&before);
        true
    }

    /// Forced stop: the maps that went to stopped besides `id` must be in the
    /// closure of maps whose resolution passed through a stopped target (I6).
    pub fn stop_force_checked(&mut self, id: MapId) -> bool {
        let before = self.states();
        let mut closure: BTreeSet<VolumeId> = BTreeSet::new();
        if let Some(m) = before.get(&id) {
            closure.insert(m.spec.target);
        }
        let mut paths: BTreeMap<MapId, Vec<VolumeId>> = BTreeMap::new();
        for (mid, m) in &before {
            if m.state.is_active() {
                let mut all = Vec::new();
                for g in 0..self.grains {
                    all.extend(self.walk(m.spec.target, g).into_iter().skip(1));
                }
                paths.insert(*mid, all);
            }
        }
        loop {
            let n = closure.len();
            for (mid, p) in &paths {
                if p.iter().any(|v| closure.contains(v)) {
                    closure.insert(before[mid].spec.target);
                }
            }
            if closure.len() == n {
                break;
            }
        }
        let ok = self.control(|e| e.stop(id, true));
        if ok {
            for (mid, m) in self.states() {
                // A stopping map upstream that cleaned only for the
                // removed target finishes its own stop now: not forced.
                let finished_cleaning = before[&mid].state == MapState::Stopping;
                if mid != id
                    && m.state == MapState::Stopped
                    && before[&mid].state != MapState::Stopped
                    && !finished_cleaning
                {
                    assert!(
                        closure.contains(&m.spec.target),
                        "I6: {mid} stopped by force stop of {id} without depending on it"
                    );
                }
            }
        }
        ok
    }

    /// Reset I4 tracking for maps restarted by the last op.
    pub fn forget_split(&mut self, ids: &[MapId]) {
        for id in ids {
            self.prev_split.remove(id);
        }
    }

    /// Whether `id` may be restarted (used to reset I4 tracking).
    pub fn is_idle_like(&self, id: MapId) -> bool {
        self.eng.map_state(id).is_some_and(|s| !s.is_active())
    }
}
