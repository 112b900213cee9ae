//! Cleaning progress of stopping maps (QA Q25).
//!
//! A stopping map must clean the grains split on its target but not on its
//! downstream neighbour's; the count left is computed from the engine's
//! bitmaps. The total to clean is remembered when the map is stopped (or,
//! for a map found stopping after an IPL, when first seen, so the percent
//! then restarts from that point); it lives in memory only.

use std::collections::HashMap;

use timezero::{Engine, MapId, MapState};

use super::Subsystem;

/// Grains `map` still has to clean (0 when it has no downstream neighbour).
fn clean_remaining(engine: &Engine, map: MapId) -> Option<u64> {
    let info = engine.map_info(map)?;
    let target = info.spec.target;
    let cascades = engine.cascades();
    let members = &cascades
        .iter()
        .find(|c| c.members.contains(&target))?
        .members;
    let i = members.iter().position(|v| *v == target)?;
    let Some(down) = members.get(i + 1) else {
        return Some(0);
    };
    let down_map = engine
        .maps()
        .into_iter()
        .find(|m| m.spec.target == *down && m.state.is_active())?;
    let (a, b) = (engine.split_bitmap(map)?, engine.split_bitmap(down_map.id)?);
    Some(
        a.as_words()
            .iter()
            .zip(b.as_words())
            .map(|(x, y)| u64::from((x & !y).count_ones()))
            .sum(),
    )
}

/// Percent cleaned of `total`, with `remaining` left.
fn percent(total: u64, remaining: u64) -> u8 {
    if total == 0 {
        return 100;
    }
    ((u128::from(total.saturating_sub(remaining)) * 100) / u128::from(total)) as u8
}

impl Subsystem {
    /// Remembers how much `map` has to clean (call right after a stop).
    pub(crate) fn note_clean_total(&self, engine: &Engine, map: MapId) {
        let mut totals = self.inner.clean_totals.lock();
        totals.retain(|m, _| engine.map_state(*m) == Some(MapState::Stopping));
        if engine.map_state(map) == Some(MapState::Stopping) {
            if let Some(r) = clean_remaining(engine, map) {
                totals.insert(map, r);
            }
        }
    }

    /// Cleaning progress of a stopping map; `None` for any other state.
    pub(crate) fn cleaning_percent(&self, engine: &Engine, map: MapId) -> Option<u8> {
        if engine.map_state(map) != Some(MapState::Stopping) {
            return None;
        }
        let remaining = clean_remaining(engine, map).unwrap_or(0);
        let mut totals = self.inner.clean_totals.lock();
        let total = totals.entry(map).or_insert(remaining);
        *total = (*total).max(remaining);
        Some(percent(*total, remaining))
    }
}

/// Type of [`super::Inner`]'s table of totals to clean.
pub(crate) type CleanTotals = HashMap<MapId, u64>;

#[cfg(test)]
mod tests {
    #[test]
    fn percent_is_cleaned_over_total() {
        assert_eq!(super::percent(0, 0), 100);
        assert_eq!(super::percent(200, 200), 0);
        assert_eq!(super::percent(200, 50), 75);
        assert_eq!(super::percent(3, 0), 100);
    }
}
