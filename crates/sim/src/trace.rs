//! The trace of one run: ordered events stamped with the step number and the
//! simulated time, and a running hash over all of them.
//!
//! The hash is the determinism self-check: the same seed run twice must give
//! the same hash. Only the last [`Trace::KEEP`] events are kept (bounded
//! memory); the hash covers every event.

use std::collections::VecDeque;
use std::fmt;

/// Simulated time in microseconds. Advanced only by the simulation (slow I/O,
/// background-copy ticks), never read from the wall clock, so runs replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct SimClock {
    now_us: u64,
}

impl SimClock {
    /// The current simulated time.
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// Moves time forward by `us`.
    pub fn advance(&mut self, us: u64) {
        self.now_us = self.now_us.saturating_add(us);
    }
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// Step number of the run when it happened.
    pub step: u64,
    /// Simulated time.
    pub time_us: u64,
    /// What happened (`write v0 @4096+1024 -> ok`, `crash power-loss`, ...).
    pub text: String,
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:>5} {:>9}us] {}", self.step, self.time_us, self.text)
    }
}

/// Ordered events of a run with a hash over all of them.
#[derive(Debug, Clone)]
pub struct Trace {
    recent: VecDeque<TraceEvent>,
    hash: u64,
    events: u64,
    /// Current step number (set by the runner).
    pub step: u64,
    /// Simulated time of the run.
    pub clock: SimClock,
    /// Also print every event to stderr as it is recorded (`SIM_TRACE=1`).
    pub echo: bool,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new()
    }
}

impl Trace {
    /// Events kept for a failure report.
    pub const KEEP: usize = 64;

    /// An empty trace at step 0, time 0.
    pub fn new() -> Trace {
        Trace {
            recent: VecDeque::new(),
            hash: FNV_OFFSET,
            events: 0,
            step: 0,
            clock: SimClock::default(),
            echo: std::env::var_os("SIM_TRACE").is_some_and(|v| v == "1"),
        }
    }

    /// Records one event (hashing step, time and text).
    pub fn record(&mut self, text: impl Into<String>) {
        let ev = TraceEvent {
            step: self.step,
            time_us: self.clock.now_us(),
            text: text.into(),
        };
        self.hash = fnv(self.hash, &ev.step.to_le_bytes());
        self.hash = fnv(self.hash, &ev.time_us.to_le_bytes());
        self.hash = fnv(self.hash, ev.text.as_bytes());
        self.events += 1;
        if self.echo {
            eprintln!("{ev}");
        }
        if self.recent.len() == Self::KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back(ev);
    }

    /// The hash over every event so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Number of events recorded.
    pub fn len(&self) -> u64 {
        self.events
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The last events (at most [`Trace::KEEP`]), oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &TraceEvent> {
        self.recent.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_events_same_hash_and_order_matters() {
        let mut a = Trace::new();
        let mut b = Trace::new();
        for t in [&mut a, &mut b] {
            t.record("x");
            t.step = 1;
            t.record("y");
        }
        assert_eq!(a.hash(), b.hash());
        let mut c = Trace::new();
        c.record("y");
        c.step = 1;
        c.record("x");
        assert_ne!(a.hash(), c.hash());
        let mut d = Trace::new();
        d.record("x");
        d.clock.advance(5);
        d.step = 1;
        d.record("y");
        assert_ne!(a.hash(), d.hash(), "time is part of the hash");
    }

    #[test]
    fn keeps_only_recent_events() {
        let mut t = Trace::new();
        for i in 0..(Trace::KEEP as u64 + 10) {
            t.record(format!("e{i}"));
        }
        assert_eq!(t.len(), Trace::KEEP as u64 + 10);
        assert_eq!(t.recent().count(), Trace::KEEP);
        assert_eq!(t.recent().next().unwrap().text, "e10");
    }
}
