//! Limits that keep one client from harming the others: connections per
//! peer address, and log lines about refused work that cannot fill a disk.
//!
//! Invariants:
//! - at most `max_connections_per_peer` connections from one IP address are
//!   served at once (unix sockets are not counted: they have no peer
//!   address, and their file permissions decide who connects);
//! - a [`Throttled`] log emits the first event (or the first `burst`) of
//!   each [`SUMMARY_EVERY`] window at once, then nothing more in that window;
//!   the next line carries the count it left out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a throttled log may write a summary line.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(5);

/// A log of repeated events: the first `burst` of a window are logged, then
/// counts.
#[derive(Debug)]
pub struct Throttled {
    /// Start of the current window.
    window: Option<Instant>,
    /// Events logged in the current window.
    logged: u64,
    /// Events logged at most per window.
    burst: u64,
    left_out: u64,
}

impl Default for Throttled {
    fn default() -> Self {
        Throttled::new()
    }
}

impl Throttled {
    /// Nothing logged yet; one line per window.
    pub fn new() -> Throttled {
        Throttled::with_burst(1)
    }

    /// Nothing logged yet; up to `burst` lines per window (at least 1).
    pub fn with_burst(burst: u64) -> Throttled {
        Throttled {
            window: None,
            logged: 0,
            burst: burst.max(1),
            left_out: 0,
        }
    }

    /// One more event at `now`. Returns `Some(n)` when a line should be
    /// written now, `n` being the events left out since the last line.
    pub fn event(&mut self, now: Instant) -> Option<u64> {
        match self.window {
            Some(t) if now.duration_since(t) < SUMMARY_EVERY => {
                if self.logged < self.burst {
                    self.logged += 1;
                    Some(std::mem::take(&mut self.left_out))
                } else {
                    self.left_out += 1;
                    None
                }
            }
            _ => {
                self.window = Some(now);
                self.logged = 1;
                Some(std::mem::take(&mut self.left_out))
            }
        }
    }

    /// Events not yet reported (for a last line when the connection ends).
    pub fn pending(&self) -> u64 {
        self.left_out
    }
}

/// A [`Throttled`] log shared by every connection of one server: the
/// warnings a client can cause at will (a broken handshake, a malformed
/// option, a connection ended on error) cost at most one line per
/// [`SUMMARY_EVERY`] however many clients cause them.
#[derive(Clone, Default)]
pub struct SharedThrottle {
    inner: Arc<Mutex<Throttled>>,
}

impl SharedThrottle {
    /// Up to `burst` lines per [`SUMMARY_EVERY`].
    pub fn with_burst(burst: u64) -> SharedThrottle {
        SharedThrottle {
            inner: Arc::new(Mutex::new(Throttled::with_burst(burst))),
        }
    }

    /// One more event now; `Some(n)` when a line should be written, `n`
    /// being the events left out since the last line.
    pub fn event(&self) -> Option<u64> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .event(Instant::now())
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
    fn a_burst_throttle_logs_that_many_per_window() {
        let mut t = Throttled::with_burst(3);
        let t0 = Instant::now();
        let logged: Vec<Option<u64>> = (0..10)
            .map(|i| t.event(t0 + Duration::from_millis(i)))
            .collect();
        assert_eq!(&logged[..3], &[Some(0), Some(0), Some(0)]);
        assert!(logged[3..].iter().all(Option::is_none));
        assert_eq!(
            t.event(t0 + SUMMARY_EVERY),
            Some(7),
            "the next window reports the count"
        );
        assert_eq!(t.event(t0 + SUMMARY_EVERY), Some(0));
    }

    #[test]
    fn a_shared_throttle_counts_events_from_every_clone() {
        let t = SharedThrottle::default();
        let clones: Vec<SharedThrottle> = (0..10).map(|_| t.clone()).collect();
        assert_eq!(t.event(), Some(0), "the first event is logged");
        let logged = clones.iter().filter_map(|c| c.event()).count();
        assert_eq!(logged, 0, "events within the window are left out");
        assert_eq!(t.inner.lock().unwrap().pending(), 10);
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
