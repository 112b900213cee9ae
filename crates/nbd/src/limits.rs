//! Limits that keep one client from harming the others: connections per
//! peer address, and log lines about refused work that cannot fill a disk.
//!
//! Invariants:
//! - at most `max_connections_per_peer` connections from one IP address are
//!   served at once (unix sockets are not counted: they have no peer
//!   address, and their file permissions decide who connects);
//! - a [`Throttled`] log emits the first event of a burst at once, then at
//!   most one summary line per [`SUMMARY_EVERY`] with the count it left out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a throttled log may write a summary line.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(5);

/// A log of repeated events: the first is logged, then counts.
#[derive(Debug)]
pub struct Throttled {
    last: Option<Instant>,
    left_out: u64,
}

impl Default for Throttled {
    fn default() -> Self {
        Throttled::new()
    }
}

impl Throttled {
    /// Nothing logged yet.
    pub fn new() -> Throttled {
        Throttled {
            last: None,
            left_out: 0,
        }
    }

    /// One more event at `now`. Returns `Some(n)` when a line should be
    /// written now, `n` being the events left out since the last line.
    pub fn event(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < SUMMARY_EVERY => {
                self.left_out += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.left_out))
            }
        }
    }

    /// Events not yet reported (for a last line when the connection ends).
    pub fn pending(&self) -> u64 {
        self.left_out
    }
}

/// Connections per peer address, shared by one serve loop.
#[derive(Clone, Default)]
pub struct PeerCounts {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A connection counted against its peer; uncounted on drop.
pub struct PeerSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PeerCounts {
    /// A slot for `ip`, or `None` if it already has `limit` connections.
    pub fn try_take(&self, ip: IpAddr, limit: usize) -> Option<PeerSlot> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            counts: self.counts.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_logs_once_then_a_count() {
        let mut t = Throttled::new();
        let t0 = Instant::now();
        assert_eq!(t.event(t0), Some(0));
        for i in 1..1000 {
            assert_eq!(t.event(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(t.pending(), 999);
        assert_eq!(t.event(t0 + SUMMARY_EVERY), Some(999));
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn peer_slots_count_and_free() {
        let p = PeerCounts::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = p.try_take(ip, 2).unwrap();
        let _b = p.try_take(ip, 2).unwrap();
        assert!(p.try_take(ip, 2).is_none());
        assert!(p.try_take("10.0.0.2".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(p.try_take(ip, 2).is_some());
    }
}
