//! [`FaultInjector`]: a seeded [`FaultPoint`] with per-site rules and counters.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::rules::{FaultEffect, Trigger};
use crate::error::{ErrorKind, Op, StoreError};
use crate::fault_point::FaultPoint;

/// Per-site counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SiteStats {
    /// Times the site was checked.
    pub hits: u64,
    /// Times a fault was injected there.
    pub faults: u64,
}

#[derive(Debug)]
struct SiteRule {
    site: &'static str,
    trigger: Trigger,
    kind: ErrorKind,
    matched: u64,
}

#[derive(Debug)]
struct State {
    rng: ChaCha8Rng,
    rules: Vec<SiteRule>,
    stats: BTreeMap<&'static str, SiteStats>,
    enabled: bool,
}

/// A seeded fault point: rules per site name (`"*"` matches every site), fired
/// by [`Trigger`]; every check is counted per site. Same seed, same calls:
/// same faults.
#[derive(Debug)]
pub struct FaultInjector {
    state: Mutex<State>,
}

impl FaultInjector {
    /// No rules yet; RNG seeded with `seed`.
    pub fn new(seed: u64) -> FaultInjector {
        FaultInjector {
            state: Mutex::new(State {
                rng: ChaCha8Rng::seed_from_u64(seed),
                rules: Vec::new(),
                stats: BTreeMap::new(),
                enabled: true,
            }),
        }
    }

    /// Adds a rule: at `site` (or `"*"`), fail with `effect` (only
    /// [`FaultEffect::Eio`] and [`FaultEffect::Enospc`] apply to sites; others
    /// act as EIO) when `trigger` fires. Builder style.
    pub fn with_rule(
        self,
        site: &'static str,
        trigger: Trigger,
        effect: FaultEffect,
    ) -> FaultInjector {
        let kind = match effect {
            FaultEffect::Enospc => ErrorKind::NoSpace,
            _ => ErrorKind::Io,
        };
        self.state.lock().rules.push(SiteRule {
            site,
            trigger,
            kind,
            matched: 0,
        });
        self
    }

    /// Turns injection on or off (checks are still counted).
    pub fn set_enabled(&self, enabled: bool) {
        self.state.lock().enabled = enabled;
    }

    /// Counters of one site (zero if never checked).
    pub fn stats(&self, site: &str) -> SiteStats {
        self.state
            .lock()
            .stats
            .get(site)
            .copied()
            .unwrap_or_default()
    }

    /// Counters of every site checked so far, by name.
    pub fn all_stats(&self) -> BTreeMap<&'static str, SiteStats> {
        self.state.lock().stats.clone()
    }
}

impl FaultPoint for FaultInjector {
    fn check(&self, site: &'static str) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        let State {
            rng,
            rules,
            stats,
            enabled,
        } = &mut *st;
        let entry = stats.entry(site).or_default();
        entry.hits += 1;
        if !*enabled {
            return Ok(());
        }
        for rule in rules.iter_mut().filter(|r| r.site == "*" || r.site == site) {
            rule.matched += 1;
            if rule.trigger.fires(rule.matched, rng) {
                entry.faults += 1;
                let err = std::io::Error::from_raw_os_error(match rule.kind {
                    ErrorKind::NoSpace => crate::error::ENOSPC,
                    _ => crate::error::EIO,
                });
                return Err(StoreError::new(rule.kind, "-", Op::Site(site), "")
                    .with_source(err)
                    .injected());
            }
        }
        Ok(())
    }
}
