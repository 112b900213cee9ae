//! The fault mix of one controller run, chosen from the run's fault sub-seed.
//!
//! Faults that no design can survive are not injected: silent bit flips and
//! misdirected writes on *data* tracks (data carries no checksum; rule 8 of
//! the reliability spec protects metadata), so those target the metadata
//! store only. Everything else (EIO/ENOSPC at named sites, failed writes and
//! flushes on volumes, latent read errors, slow I/O) may hit anywhere.

use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use volume_store::{FaultEffect, FaultInjector, FaultRule, FaultSite, OpFilter, Trigger};

use crate::stores::{SimStores, META};

/// The sites [`FaultPlan::random`] draws rules for, in draw order (the order
/// is part of every seed's plan): every [`FaultSite`], so a new site is in the
/// campaign as soon as it exists. The table sites reach the controller's
/// activity tables through the hook it installs on each of them.
pub const SITES: &[FaultSite] = FaultSite::ALL;

/// What one run injects (serialized as is in kept fixed runs, `sim::fixed`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FaultPlan {
    /// Site rules: (site, probability, ENOSPC instead of EIO).
    pub sites: Vec<(FaultSite, f64, bool)>,
    /// Probability of EIO on a volume write.
    pub volume_write_eio: f64,
    /// Probability of a failed (poisoning) volume flush.
    pub volume_flush_eio: f64,
    /// Latent read errors: (volume index, track).
    pub latent: Vec<(usize, u64)>,
    /// Probability of a misdirected metadata write.
    pub meta_misdirect: f64,
    /// Probability of EIO on a metadata write.
    pub meta_write_eio: f64,
    /// Probability of a slow (delayed) volume I/O.
    pub slow_io: f64,
}

impl FaultPlan {
    /// No faults (crashes and resets still come from the workload).
    pub fn none() -> FaultPlan {
        FaultPlan::default()
    }

    /// Whether any fault can fire (reads may then fail legitimately).
    pub fn any(&self) -> bool {
        *self != FaultPlan::default()
    }

    /// A seeded mix: about a third of runs have no faults, the others one or
    /// more kinds at low rates.
    pub fn random(rng: &mut ChaCha8Rng, volumes: usize, tracks: u64) -> FaultPlan {
        let mut p = FaultPlan::none();
        if rng.random_bool(0.35) {
            return p;
        }
        for &site in SITES {
            if rng.random_bool(0.25) {
                p.sites
                    .push((site, rng.random_range(0.02..0.15), rng.random_bool(0.3)));
            }
        }
        if rng.random_bool(0.25) {
            p.volume_write_eio = rng.random_range(0.01..0.05);
        }
        if rng.random_bool(0.15) {
            p.volume_flush_eio = rng.random_range(0.01..0.05);
        }
        if rng.random_bool(0.2) {
            for _ in 0..rng.random_range(1..3) {
                p.latent
                    .push((rng.random_range(0..volumes), rng.random_range(0..tracks)));
            }
        }
        if rng.random_bool(0.1) {
            p.meta_misdirect = rng.random_range(0.005..0.02);
        }
        if rng.random_bool(0.15) {
            p.meta_write_eio = rng.random_range(0.005..0.03);
        }
        if rng.random_bool(0.2) {
            p.slow_io = 0.05;
        }
        p
    }

    /// The plan a fault run of `seed` draws (the same as `run_seed` uses).
    pub fn for_seed(seed: u64, shape: &crate::workload::Shape) -> FaultPlan {
        FaultPlan::random(
            &mut crate::seed::Seeds::rng(crate::seed::Seeds::split(seed).faults),
            shape.volumes,
            shape.tracks,
        )
    }

    /// The site injector for this plan (seeded).
    pub fn injector(&self, seed: u64) -> FaultInjector {
        let mut inj = FaultInjector::new(seed);
        for (site, prob, enospc) in &self.sites {
            let effect = if *enospc {
                FaultEffect::Enospc
            } else {
                FaultEffect::Eio
            };
            inj = inj.with_rule(*site, Trigger::Probability(*prob), effect);
        }
        inj
    }

    /// Installs the store rules on `stores` (volumes named by `names`).
    pub fn install(&self, stores: &SimStores, names: &[String]) {
        for (i, name) in names.iter().enumerate() {
            let Some(s) = stores.volume(name) else {
                continue;
            };
            self.add_volume_rules(&s);
            let f = s.faulty();
            for (v, track) in &self.latent {
                if *v == i {
                    f.add_latent_error(*track);
                }
            }
        }
        if let Some((_, meta)) = stores.registry().all().into_iter().find(|(n, _)| n == META) {
            let f = meta.faulty();
            if self.meta_misdirect > 0.0 {
                f.add_rule(FaultRule::new(
                    OpFilter::Write,
                    Trigger::Probability(self.meta_misdirect),
                    FaultEffect::Misdirect,
                ));
            }
            if self.meta_write_eio > 0.0 {
                f.add_rule(FaultRule::new(
                    OpFilter::Write,
                    Trigger::Probability(self.meta_write_eio),
                    FaultEffect::Eio,
                ));
            }
        }
    }

    /// Installs the store rules on volume `name`, whose store was created
    /// after [`FaultPlan::install`] ran (a volume deleted and created again,
    /// or created again by an IPL). Latent errors are not: they belong to
    /// the medium under the first store. Idempotent: the store's rules are
    /// replaced, not added to.
    pub fn install_volume(&self, stores: &SimStores, name: &str) {
        if let Some(s) = stores.volume(name) {
            s.faulty().clear_rules();
            self.add_volume_rules(&s);
        }
    }

    fn add_volume_rules(&self, s: &crate::stores::SimStore) {
        let f = s.faulty();
        if self.volume_write_eio > 0.0 {
            f.add_rule(FaultRule::new(
                OpFilter::Write,
                Trigger::Probability(self.volume_write_eio),
                FaultEffect::Eio,
            ));
        }
        if self.volume_flush_eio > 0.0 {
            f.add_rule(FaultRule::fail_flush(Trigger::Probability(
                self.volume_flush_eio,
            )));
        }
        if self.slow_io > 0.0 {
            f.add_rule(FaultRule::new(
                OpFilter::Any,
                Trigger::Probability(self.slow_io),
                FaultEffect::Latency(Duration::from_micros(200)),
            ));
        }
    }

    /// Turns every store rule off (faults end for LIVE-1), or back on.
    pub fn set_enabled(stores: &SimStores, enabled: bool) {
        for (_, s) in stores.registry().all() {
            s.faulty().set_faults_enabled(enabled);
        }
    }
}
