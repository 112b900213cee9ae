//! One `u64` seed per run, split into independent sub-seeds, and the shard
//! arithmetic that spreads a campaign's seeds over machines.
//!
//! Invariant: `Seeds::split(s)` is a pure function of `s`; changing how one
//! sub-seed is consumed (say, a new kind of fault) never changes the others,
//! so a workload stays the same when the fault mix changes.

use std::fmt;
use std::str::FromStr;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The sub-seeds of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seeds {
    /// The run's seed (what a reproduce command names).
    pub run: u64,
    /// Disk behaviour: crash images, torn-write choices, latent errors.
    pub disk: u64,
    /// Which faults are injected, where and when.
    pub faults: u64,
    /// The host and control operations.
    pub workload: u64,
    /// Interleaving of background copies, host I/O and simulated delays.
    pub scheduler: u64,
}

impl Seeds {
    /// Splits `run` into sub-seeds (ChaCha8 keyed by `run`).
    pub fn split(run: u64) -> Seeds {
        let mut rng = ChaCha8Rng::seed_from_u64(run);
        Seeds {
            run,
            disk: rng.next_u64(),
            faults: rng.next_u64(),
            workload: rng.next_u64(),
            scheduler: rng.next_u64(),
        }
    }

    /// A fresh RNG for one purpose, from a sub-seed.
    pub fn rng(sub_seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(sub_seed)
    }
}

/// One slice `index` of `count` (written `K/N`, 1-based: `1/4` .. `4/4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 1-based slice number, `1..=count`.
    pub index: u32,
    /// Number of slices, at least 1.
    pub count: u32,
}

/// A `--shard` value that is not `K/N` with `1 <= K <= N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad shard {text:?}: expected K/N with 1 <= K <= N (e.g. 2/4)")]
pub struct ShardError {
    /// The rejected text.
    pub text: String,
}

impl Shard {
    /// The whole campaign (`1/1`).
    pub const ALL: Shard = Shard { index: 1, count: 1 };

    /// Whether the `i`-th run of a campaign (0-based) belongs to this slice.
    pub fn owns(&self, i: u64) -> bool {
        i % u64::from(self.count) == u64::from(self.index - 1)
    }

    /// The seeds of this slice of the campaign `first, first+1, .., first+runs-1`.
    pub fn seeds(&self, first: u64, runs: u64) -> impl Iterator<Item = u64> + '_ {
        (0..runs)
            .filter(|i| self.owns(*i))
            .map(move |i| first.wrapping_add(i))
    }
}

impl Default for Shard {
    fn default() -> Self {
        Shard::ALL
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Shard, ShardError> {
        let bad = || ShardError {
            text: text.to_string(),
        };
        let (k, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = k.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_deterministic_and_sub_seeds_differ() {
        let a = Seeds::split(7);
        assert_eq!(a, Seeds::split(7));
        assert_ne!(a, Seeds::split(8));
        let subs = [a.disk, a.faults, a.workload, a.scheduler];
        for i in 0..subs.len() {
            for j in i + 1..subs.len() {
                assert_ne!(subs[i], subs[j]);
            }
        }
    }

    #[test]
    fn shards_partition_the_campaign() {
        let mut all: Vec<u64> = Vec::new();
        for k in 1..=3 {
            let s: Shard = format!("{k}/3").parse().unwrap();
            all.extend(s.seeds(100, 10));
        }
        all.sort();
        assert_eq!(all, (100..110).collect::<Vec<_>>());
    }

    #[test]
    fn bad_shards_are_rejected() {
        for t in ["0/3", "4/3", "1/0", "x/2", "3", ""] {
            assert!(t.parse::<Shard>().is_err(), "{t}");
        }
        assert_eq!("2/5".parse::<Shard>().unwrap().to_string(), "2/5");
    }
}
