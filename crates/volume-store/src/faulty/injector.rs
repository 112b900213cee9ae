//! [`FaultInjector`]: a seeded [`FaultPoint`] with per-site rules and counters.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::rules::{FaultEffect, Trigger};
use crate::error::{ErrorKind, Op, StoreError};
use crate::fault_point::{FaultPoint, FaultSite};

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
    /// `None`: every site.
    site: Option<FaultSite>,
    trigger: Trigger,
    kind: ErrorKind,
    matched: u64,
}

#[derive(Debug)]
struct State {
    rng: ChaCha8Rng,
    rules: Vec<SiteRule>,
    stats: BTreeMap<FaultSite, SiteStats>,
    enabled: bool,
}

/// A seeded fault point: rules per [`FaultSite`] (or for every site, see
/// [`FaultInjector::with_rule_all`]), fired by [`Trigger`]; every check is
/// counted per site. Same seed, same calls: same faults.
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

    /// Adds a rule: at `site`, fail with `effect` (only [`FaultEffect::Eio`]
    /// and [`FaultEffect::Enospc`] apply to sites; others act as EIO) when
    /// `trigger` fires. Builder style.
    pub fn with_rule(
        self,
        site: FaultSite,
        trigger: Trigger,
        effect: FaultEffect,
    ) -> FaultInjector {
        self.push_rule(Some(site), trigger, effect)
    }

    /// Like [`FaultInjector::with_rule`], for every site: the rule counts the
    /// checks of all sites together.
    pub fn with_rule_all(self, trigger: Trigger, effect: FaultEffect) -> FaultInjector {
        self.push_rule(None, trigger, effect)
    }

    fn push_rule(
        self,
        site: Option<FaultSite>,
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
    pub fn stats(&self, site: FaultSite) -> SiteStats {
        self.state
            .lock()
            .stats
            .get(&site)
            .copied()
            .unwrap_or_default()
    }

    /// Counters of every site checked so far, by site (its `Display` is the
    /// name used in summaries).
    pub fn all_stats(&self) -> BTreeMap<FaultSite, SiteStats> {
        self.state.lock().stats.clone()
    }
}

impl FaultPoint for FaultInjector {
    fn check(&self, site: FaultSite) -> Result<(), StoreError> {
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
        for rule in rules
            .iter_mut()
            .filter(|r| r.site.is_none_or(|s| s == site))
        {
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
