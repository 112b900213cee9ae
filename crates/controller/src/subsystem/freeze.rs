//! Write freezes: host writes to named volumes held for a bounded time, so
//! that sessions spanning several subsystems get one time zero.
//!
//! The resource manager freezes the source volumes on every subsystem of a
//! session, then establishes the physical sessions, then thaws. A write
//! issued after a freeze returned is held until the thaw, so no write that
//! another depends on can be missing from one subsystem's image while the
//! dependent write is in another's: the images form one consistent instant
//! (the argument is in docs/SESSIONS.md, "One time zero across subsystems").
//!
//! Invariants:
//! - `any` is true whenever `table` holds a freeze (set under the table lock
//!   before [`Subsystem::freeze_writes`] returns), so the write gate costs one
//!   atomic load while nothing is frozen;
//! - a freeze never outlives its deadline: a writer that waits past it, or
//!   any later call, removes it, so a resource manager that dies between
//!   freeze and thaw holds writes for at most [`MAX_FREEZE`];
//! - freezes are volatile: an IPL starts with none, and a token from before
//!   it is unknown ([`Subsystem::thaw_writes`] answers `false`): tokens are
//!   never reused, across IPLs and restarts of the process too (they count
//!   up from the wall clock in microseconds at the first freeze), so a late
//!   thaw can never release another start's freeze;
//! - once [`Subsystem::end_freezes`] ran, no freeze holds a writer and no new
//!   one is taken (until [`Subsystem::allow_freezes`]): an IPL that waits for
//!   the writes in flight never waits for a freeze, nor for a thaw queued
//!   behind itself (QA: a frozen write held the daemon's lock, the IPL
//!   queued behind it, and the thaw queued behind the IPL for the whole hold).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::Subsystem;
use crate::error::{err, ErrorKind, Result};

/// The longest a freeze may hold writes.
pub const MAX_FREEZE: Duration = Duration::from_secs(60);

struct Freeze {
    volumes: BTreeSet<String>,
    deadline: Instant,
}

#[derive(Default)]
struct Table {
    active: BTreeMap<u64, Freeze>,
}

impl Table {
    /// Drops freezes past their deadline.
    fn expire(&mut self, now: Instant) {
        self.active.retain(|_, f| f.deadline > now);
    }

    /// The latest deadline of a freeze holding `volume`.
    fn held_until(&self, volume: &str) -> Option<Instant> {
        self.active
            .values()
            .filter(|f| f.volumes.contains(volume))
            .map(|f| f.deadline)
            .max()
    }
}

/// A freeze token no freeze of this process, or of an earlier run of it, had
/// (review: a fresh handle counted from 1 again, so a thaw that arrived
/// late after an IPL could release another start's freeze and answer that
/// it had held).
fn next_token() -> u64 {
    static NEXT: std::sync::OnceLock<std::sync::atomic::AtomicU64> = std::sync::OnceLock::new();
    NEXT.get_or_init(|| {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        std::sync::atomic::AtomicU64::new(micros.max(1))
    })
    .fetch_add(1, Ordering::SeqCst)
}

/// The freezes of one subsystem.
#[derive(Default)]
pub(crate) struct Freezes {
    any: AtomicBool,
    /// Set by [`Subsystem::end_freezes`]: new freezes are refused.
    ended: AtomicBool,
    table: Mutex<Table>,
    thawed: Condvar,
}

impl Freezes {
    /// Whether any freeze may be active (one atomic load).
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::SeqCst)
    }

    /// Waits while `volume` is frozen (returns at once when nothing is).
    pub(crate) fn gate(&self, volume: &str) {
        if !self.any.load(Ordering::SeqCst) {
            return;
        }
        let mut t = self.table.lock();
        loop {
            t.expire(Instant::now());
            self.any.store(!t.active.is_empty(), Ordering::SeqCst);
            match t.held_until(volume) {
                None => return,
                Some(deadline) => {
                    self.thawed.wait_until(&mut t, deadline);
                }
            }
        }
    }

    fn freeze(&self, volumes: BTreeSet<String>, hold: Duration) -> Option<u64> {
        let mut t = self.table.lock();
        if self.ended.load(Ordering::SeqCst) {
            return None;
        }
        t.expire(Instant::now());
        let token = next_token();
        let deadline = Instant::now() + hold;
        t.active.insert(token, Freeze { volumes, deadline });
        self.any.store(true, Ordering::SeqCst);
        Some(token)
    }

    /// Drops every freeze and refuses new ones; the writers held go on.
    fn end(&self) {
        let mut t = self.table.lock();
        self.ended.store(true, Ordering::SeqCst);
        t.active.clear();
        self.any.store(false, Ordering::SeqCst);
        drop(t);
        self.thawed.notify_all();
    }

    fn thaw(&self, token: u64) -> bool {
        let mut t = self.table.lock();
        let now = Instant::now();
        let held = t.active.remove(&token).is_some_and(|f| f.deadline > now);
        t.expire(now);
        self.any.store(!t.active.is_empty(), Ordering::SeqCst);
        drop(t);
        self.thawed.notify_all();
        held
    }
}

impl Subsystem {
    /// Holds host writes (write, discard, write-zeroes) to `volumes` that
    /// arrive from now on, for at most `hold` (at most [`MAX_FREEZE`]), until
    /// [`Subsystem::thaw_writes`] with the returned token. Writes already in
    /// progress finish. Reads are not held.
    pub fn freeze_writes(&self, volumes: &[String], hold: Duration) -> Result<u64> {
        self.check_open()?;
        if volumes.is_empty() {
            return Err(err(ErrorKind::InvalidRequest, "a freeze names no volume"));
        }
        if hold.is_zero() || hold > MAX_FREEZE {
            return Err(err(
                ErrorKind::InvalidRequest,
                format!(
                    "a freeze holds writes for 1 ms to {} s, not {} ms",
                    MAX_FREEZE.as_secs(),
                    hold.as_millis()
                ),
            ));
        }
        for v in volumes {
            self.inner.volume(v)?;
        }
        let token = self
            .inner
            .freezes
            .freeze(volumes.iter().cloned().collect(), hold)
            .ok_or_else(|| {
                err(
                    ErrorKind::Busy,
                    format!(
                        "subsystem {} is restarting (IPL or shutdown): no write freeze now",
                        self.inner.id
                    ),
                )
            })?;
        tracing::debug!(subsystem = %self.inner.id, token, ?volumes, hold_ms = hold.as_millis() as u64, "writes frozen");
        Ok(token)
    }

    /// Releases freeze `token`. `true` if it still held the writes until now;
    /// `false` if it had expired (or is unknown: from before an IPL), in
    /// which case writes may have gone through in the meantime.
    pub fn thaw_writes(&self, token: u64) -> bool {
        let held = self.inner.freezes.thaw(token);
        tracing::debug!(subsystem = %self.inner.id, token, held, "writes thawed");
        held
    }

    /// Ends every freeze now and refuses new ones: an IPL or shutdown is
    /// coming (freezes do not survive it). The writes they held go on, and
    /// their thaws answer `false`, so a session start that froze them fails
    /// and withdraws what it established.
    pub fn end_freezes(&self) {
        self.inner.freezes.end();
        tracing::debug!(subsystem = %self.inner.id, "write freezes ended");
    }

    /// Takes freezes again after [`Subsystem::end_freezes`] (an IPL that
    /// failed left this handle in service).
    pub fn allow_freezes(&self) {
        self.inner.freezes.ended.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn vols(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_frozen_volume_holds_its_writers_until_the_thaw() {
        let f = Arc::new(Freezes::default());
        let token = f.freeze(vols(&["V0"]), Duration::from_secs(30)).unwrap();
        f.gate("V1"); // another volume passes
        let (f2, done) = (f.clone(), Arc::new(AtomicBool::new(false)));
        let done2 = done.clone();
        let writer = std::thread::spawn(move || {
            f2.gate("V0");
            done2.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!done.load(Ordering::SeqCst), "the writer passed a freeze");
        assert!(f.thaw(token), "the freeze held until its thaw");
        writer.join().unwrap();
        assert!(done.load(Ordering::SeqCst));
        assert!(!f.any.load(Ordering::SeqCst));
    }

    #[test]
    fn an_expired_freeze_releases_writers_and_its_thaw_says_so() {
        let f = Freezes::default();
        let token = f.freeze(vols(&["V0"]), Duration::from_millis(20)).unwrap();
        let t0 = Instant::now();
        f.gate("V0");
        assert!(t0.elapsed() >= Duration::from_millis(15));
        assert!(!f.thaw(token), "an expired freeze did not hold");
        assert!(!f.thaw(999), "an unknown token did not hold");
    }

    #[test]
    fn ended_freezes_release_their_writers_and_refuse_new_ones() {
        let f = Arc::new(Freezes::default());
        let token = f.freeze(vols(&["V0"]), Duration::from_secs(60)).unwrap();
        let f2 = f.clone();
        let writer = std::thread::spawn(move || f2.gate("V0"));
        std::thread::sleep(Duration::from_millis(50));
        f.end();
        writer.join().unwrap();
        assert!(!f.thaw(token), "an ended freeze did not hold to its thaw");
        assert_eq!(f.freeze(vols(&["V0"]), Duration::from_secs(1)), None);
        f.ended.store(false, Ordering::SeqCst);
        assert!(f.freeze(vols(&["V0"]), Duration::from_secs(1)).is_some());
    }

    #[test]
    fn a_thaw_from_before_an_ipl_never_releases_a_freeze_after_it() {
        // Two handles, as before and after an IPL: the old token is unknown
        // to the new table, whatever freezes the new one has taken.
        let old = Freezes::default();
        let t_old = old.freeze(vols(&["V0"]), Duration::from_secs(60)).unwrap();
        old.end();
        let fresh = Freezes::default();
        let t_new = fresh
            .freeze(vols(&["V0"]), Duration::from_secs(60))
            .unwrap();
        assert_ne!(t_old, t_new, "a token was reused across handles");
        assert!(!fresh.thaw(t_old), "a stale thaw released the new freeze");
        assert!(fresh.thaw(t_new), "the new freeze held until its own thaw");
    }
}
