//! Fault rules shared by `FaultyStore` and `FaultInjector`: which calls a rule
//! matches, when it fires, and what it does.

use std::time::Duration;

use geometry::Extent;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Which store operations a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpFilter {
    /// `read_at` (and `read_track`).
    Read,
    /// `write_at` (and `write_track`, `write_zeroes`).
    Write,
    /// `flush`.
    Flush,
    /// `discard`.
    Discard,
    /// Every operation.
    Any,
}

/// When a rule fires, counted over the calls it matches (1-based).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// Only the n-th matching call.
    Nth(u64),
    /// Every matching call after the first n (a device that stays broken).
    After(u64),
    /// Every matching call.
    Always,
    /// Each matching call with this probability (0.0..=1.0), from the seeded RNG.
    Probability(f64),
}

impl Trigger {
    /// Decides for the `count`-th matching call (1-based).
    pub(crate) fn fires(&self, count: u64, rng: &mut ChaCha8Rng) -> bool {
        match *self {
            Trigger::Nth(n) => count == n,
            Trigger::After(n) => count > n,
            Trigger::Always => true,
            Trigger::Probability(p) => rng.random_bool(p.clamp(0.0, 1.0)),
        }
    }
}

/// What a fired rule does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultEffect {
    /// Fail with EIO; nothing is written. On a flush this poisons the store.
    Eio,
    /// Fail with ENOSPC; nothing is written. On a flush this poisons the store.
    Enospc,
    /// Writes only: the write lands on other tracks (seeded choice, same offsets
    /// inside the track); the intended tracks keep their old data. Reported as success.
    Misdirect,
    /// Writes: one seeded bit of the stored data is flipped (silent corruption).
    /// Reads: one bit of the returned buffer is flipped (transient).
    BitFlip,
    /// The call sleeps a seeded time up to this bound, then proceeds.
    Latency(Duration),
}

impl FaultEffect {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            FaultEffect::Eio => "eio",
            FaultEffect::Enospc => "enospc",
            FaultEffect::Misdirect => "misdirect",
            FaultEffect::BitFlip => "bitflip",
            FaultEffect::Latency(_) => "latency",
        }
    }
}

/// One rule of a `FaultyStore`.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// Operations it matches.
    pub ops: OpFilter,
    /// When it fires.
    pub trigger: Trigger,
    /// What it does.
    pub effect: FaultEffect,
    /// If set, only I/O touching these tracks matches (flushes never do).
    pub tracks: Option<Extent>,
}

impl FaultRule {
    /// A rule on `ops` with `trigger` and `effect`, on any track.
    pub fn new(ops: OpFilter, trigger: Trigger, effect: FaultEffect) -> FaultRule {
        FaultRule {
            ops,
            trigger,
            effect,
            tracks: None,
        }
    }

    /// A failed flush (EIO), which poisons the store.
    pub fn fail_flush(trigger: Trigger) -> FaultRule {
        FaultRule::new(OpFilter::Flush, trigger, FaultEffect::Eio)
    }

    /// Restricts the rule to I/O touching `tracks`.
    pub fn on_tracks(mut self, tracks: Extent) -> FaultRule {
        self.tracks = Some(tracks);
        self
    }

    pub(crate) fn matches(&self, op: OpFilter, touched: Option<Extent>) -> bool {
        let op_ok = self.ops == OpFilter::Any || self.ops == op;
        let track_ok = match (self.tracks, touched) {
            (None, _) => true,
            (Some(want), Some(t)) => want.intersect(&t).is_some(),
            (Some(_), None) => false,
        };
        op_ok && track_ok
    }
}
