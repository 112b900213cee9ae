//! Cleaning progress of stopping maps (QA Q25).
//!
//! A stopping map must clean the grains its target holds that a member
//! downstream still reads through it; the engine counts them
//! (`Engine::clean_remaining`). The total to clean is remembered when the map is stopped (or,
//! for a map found stopping after an IPL, when first seen, so the percent
//! then restarts from that point); it lives in memory only.

use std::collections::HashMap;

use timezero::{Engine, MapId, MapState};

use super::Subsystem;

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
            if let Some(r) = engine.clean_remaining(map) {
                totals.insert(map, r);
            }
        }
    }

    /// Cleaning progress of a stopping map; `None` for any other state.
    pub(crate) fn cleaning_percent(&self, engine: &Engine, map: MapId) -> Option<u8> {
        if engine.map_state(map) != Some(MapState::Stopping) {
            return None;
        }
        let remaining = engine.clean_remaining(map).unwrap_or(0);
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
