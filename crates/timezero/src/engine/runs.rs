//! Run-length background plans (for the controller's copier): the same copies
//! as [`Engine::plan_background`], merged into runs of consecutive grains with
//! one source and target. The common case (a copying full map whose upstream
//! chain ends at a plain or frozen head, no frozen cascades on the target) is
//! planned word by word over the split bitmaps without per-grain lookups;
//! every other case falls back to the per-grain planner.

use crate::types::{CopyRun, CopyType, GrainCopy, MapId, MapState};

use super::Engine;

const WORD: u64 = 64;

impl Engine {
    /// Like [`Engine::plan_background`], as runs. Release them with
    /// [`Engine::commit_runs`] or [`Engine::abandon_runs`].
    pub fn plan_background_runs(&mut self, map: MapId, max_grains: usize) -> Vec<CopyRun> {
        if let Some(runs) = self.fast_copy_runs(map, max_grains) {
            for r in &runs {
                if let Some(m) = self.maps.get_mut(&r.map) {
                    let n = u32::try_from(r.grains()).unwrap_or(u32::MAX);
                    m.pending = m.pending.saturating_add(n);
                }
            }
            return runs;
        }
        merge_runs(&self.plan_background(map, max_grains))
    }

    /// Report runs as durable (see [`Engine::commit_copies`]).
    pub fn commit_runs(&mut self, runs: &[CopyRun]) {
        let mut touched = Vec::new();
        for r in runs {
            let Some(m) = self.maps.get_mut(&r.map) else {
                continue;
            };
            let n = u32::try_from(r.grains()).unwrap_or(u32::MAX);
            m.pending = m.pending.saturating_sub(n);
            if m.state.is_active() && m.spec.target == r.to {
                m.split.set_range(r.first, r.last.saturating_add(1));
            }
            if !touched.contains(&r.map) {
                touched.push(r.map);
            }
        }
        self.settle(&touched);
    }

    /// Release runs that will not be executed.
    pub fn abandon_runs(&mut self, runs: &[CopyRun]) {
        let mut touched = Vec::new();
        for r in runs {
            if let Some(m) = self.maps.get_mut(&r.map) {
                let n = u32::try_from(r.grains()).unwrap_or(u32::MAX);
                m.pending = m.pending.saturating_sub(n);
                if !touched.contains(&r.map) {
                    touched.push(r.map);
                }
            }
        }
        self.settle(&touched);
    }

    /// `None` when the fast path does not apply.
    fn fast_copy_runs(&mut self, map: MapId, max_grains: usize) -> Option<Vec<CopyRun>> {
        let m = self.maps.get(&map)?;
        if m.state != MapState::Copying
            || m.spec.copy_type != CopyType::Full
            || m.spec.copy_rate == 0
        {
            return None;
        }
        let t = m.spec.target;
        let vol = &self.vols[&t];
        let cid = vol.member_of?;
        if vol.heads.iter().any(|c| self.cascades[c].frozen) {
            return None; // rule A copies: per grain
        }
        let c = &self.cascades[&cid];
        let i = c.members.iter().position(|x| *x == t)?;
        if !c.frozen && self.vols[&c.head].member_of.is_some() {
            return None; // the head redirects too: per grain
        }
        let head = c.head;
        let mut ups = Vec::with_capacity(i);
        for j in (0..i).rev() {
            let v = c.members[j];
            let um = &self.maps[&self.vols[&v].target_map?];
            if um.state == MapState::Suspended {
                // Per grain: copies whose upstream holder is split above the
                // suspended member need no offline bitmap (proptest case
                // 0c948416: this path planned nothing where grains planned).
                return None;
            }
            // A transparent member holds for its dependants only the
            // grains it covers (E6).
            let words: std::borrow::Cow<'_, [u64]> = match self.member_cover(cid, v) {
                None => std::borrow::Cow::Borrowed(um.split.as_words()),
                Some(cover) => std::borrow::Cow::Owned(
                    um.split
                        .as_words()
                        .iter()
                        .zip(cover.as_words())
                        .map(|(s, c)| s & c)
                        .collect(),
                ),
            };
            ups.push((v, words));
        }
        let split = &m.split;
        let len = split.len();
        let mut runs: Vec<CopyRun> = Vec::new();
        if len == 0 {
            return Some(runs);
        }
        let words = split.as_words();
        let start = m.bg_cursor.min(len - 1);
        let mut wi = (start / WORD) as usize;
        let mut first_found = None;
        let mut n = 0usize;
        loop {
            let mut cand = !words[wi];
            if wi + 1 == words.len() && len % WORD != 0 {
                cand &= (1u64 << (len % WORD)) - 1;
            }
            if wi == (start / WORD) as usize && start % WORD != 63 {
                cand &= (1u64 << (start % WORD + 1)) - 1;
            }
            // Whole word from the head: one step instead of 64.
            if cand == u64::MAX && n + 64 <= max_grains && ups.iter().all(|(_, w)| w[wi] == 0) {
                let (lo, hi) = (wi as u64 * WORD, wi as u64 * WORD + 63);
                first_found.get_or_insert(hi);
                match runs.last_mut() {
                    Some(r) if r.from == head && r.first == hi + 1 => r.first = lo,
                    _ => runs.push(CopyRun {
                        map,
                        from: head,
                        to: t,
                        first: lo,
                        last: hi,
                    }),
                }
                n += 64;
                cand = 0;
            }
            while cand != 0 && n < max_grains {
                let bit = 63 - u64::from(cand.leading_zeros());
                let g = wi as u64 * WORD + bit;
                first_found.get_or_insert(g);
                let from = ups
                    .iter()
                    .find(|(_, w)| (w[wi] >> bit) & 1 == 1)
                    .map_or(head, |(v, _)| *v);
                match runs.last_mut() {
                    Some(r) if r.from == from && r.first == g + 1 => r.first = g,
                    _ => runs.push(CopyRun {
                        map,
                        from,
                        to: t,
                        first: g,
                        last: g,
                    }),
                }
                n += 1;
                cand &= !(1u64 << bit);
            }
            if n >= max_grains || wi == 0 {
                break;
            }
            wi -= 1;
        }
        let cursor = first_found.unwrap_or(0);
        if let Some(m) = self.maps.get_mut(&map) {
            m.bg_cursor = cursor;
        }
        Some(runs)
    }
}

/// Run-length encodes single-grain copies: consecutive copies of one map,
/// source and target whose grains are adjacent (either direction) become one
/// run, keeping the order. Background plans (descending grains) and journal
/// records (any order: a commit only sets bits) both use it.
pub fn merge_runs(copies: &[GrainCopy]) -> Vec<CopyRun> {
    let mut runs: Vec<CopyRun> = Vec::new();
    for c in copies {
        if let Some(r) = runs.last_mut() {
            if (r.map, r.from, r.to) == (c.map, c.from, c.to) {
                if c.grain + 1 == r.first {
                    r.first = c.grain;
                    continue;
                }
                if c.grain == r.last + 1 {
                    r.last = c.grain;
                    continue;
                }
            }
        }
        runs.push(CopyRun {
            map: c.map,
            from: c.from,
            to: c.to,
            first: c.grain,
            last: c.grain,
        });
    }
    runs
}
