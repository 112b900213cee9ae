//! [`FaultyStore`]: a volatile write cache and fault injector around any store
//! (feature `fault-injection`).
//!
//! Every write and discard goes to the inner store at once (so reads see it) and
//! is also kept as *pending*, with the pre-image of the tracks it touched, until
//! the next successful flush. [`FaultyStore::crash_image`] rebuilds what a power
//! loss would leave: the image at the last flush plus the pending entries the
//! [`CrashMode`] lets through (none, a prefix, a seeded subset, or torn at
//! 512-byte sectors). [`FaultyStore::crash`] does the same in place.
//!
//! Faults come from [`FaultRule`]s (EIO/ENOSPC on any operation, misdirected
//! writes, bit flips, latency), latent read errors on chosen tracks, and the
//! poison rule: a failed flush poisons the store until [`FaultyStore::reopen`].
//! Everything random comes from one ChaCha8 RNG seeded with a `u64`.
//!
//! Invariant (module `crash`): undoing the pending list restores the durable image,
//! hence the inner store must not be written except through this wrapper.

mod crash;
mod injector;
mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use geometry::{Extent, ExtentSet, Geometry, TrackNo};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use crash::{CrashMode, SECTOR_BYTES};
pub use injector::{FaultInjector, SiteStats};
pub use rules::{FaultEffect, FaultRule, OpFilter, Trigger};

use crate::error::{ErrorKind, Op, StoreError, EIO, ENOSPC};
use crate::mem::MemStore;
use crate::store::{check_range, TrackStore};
use crash::{Pending, PendingOp};

#[derive(Debug)]
struct State {
    rng: ChaCha8Rng,
    rules: Vec<(FaultRule, u64)>,
    enabled: bool,
    poisoned: bool,
    pending: Vec<Pending>,
    latent: BTreeSet<TrackNo>,
    injected: BTreeMap<String, u64>,
}

/// A store wrapper modelling a volatile write cache and injecting faults.
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    state: Mutex<State>,
}

/// What the rules decided for one call.
#[derive(Default)]
struct Decision {
    error: Option<ErrorKind>,
    misdirect: bool,
    bitflip: bool,
    delay: Option<Duration>,
}

impl<S: TrackStore> FaultyStore<S> {
    /// Wraps `inner` (whose current contents count as durable) with no rules.
    pub fn new(inner: S, seed: u64) -> FaultyStore<S> {
        FaultyStore {
            inner,
            state: Mutex::new(State {
                rng: ChaCha8Rng::seed_from_u64(seed),
                rules: Vec::new(),
                enabled: true,
                poisoned: false,
                pending: Vec::new(),
                latent: BTreeSet::new(),
                injected: BTreeMap::new(),
            }),
        }
    }

    /// Adds a fault rule.
    pub fn add_rule(&self, rule: FaultRule) {
        self.state.lock().rules.push((rule, 0));
    }

    /// Removes every rule (latent errors stay).
    pub fn clear_rules(&self) {
        self.state.lock().rules.clear();
    }

    /// Turns rules and latent errors on or off; the write cache model stays on.
    pub fn set_faults_enabled(&self, enabled: bool) {
        self.state.lock().enabled = enabled;
    }

    /// Reads touching `track` fail with EIO until the whole track is rewritten.
    pub fn add_latent_error(&self, track: TrackNo) {
        self.state.lock().latent.insert(track);
    }

    /// Number of writes and discards since the last successful flush.
    pub fn pending_count(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// True after a failed flush, until [`FaultyStore::reopen`] or [`FaultyStore::crash`].
    pub fn is_poisoned(&self) -> bool {
        self.state.lock().poisoned
    }

    /// Models reopening the volume: clears the poison (pending writes stay).
    pub fn reopen(&self) {
        self.state.lock().poisoned = false;
    }

    /// Faults injected so far, by `op.effect` (e.g. `write.eio`).
    pub fn injected_counts(&self) -> BTreeMap<String, u64> {
        self.state.lock().injected.clone()
    }

    /// The wrapped store (its contents include pending writes).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The durable image a power loss now would leave, as a new [`MemStore`];
    /// this store is unchanged.
    pub fn crash_image(&self, mode: CrashMode) -> Result<MemStore, StoreError> {
        let st = self.state.lock();
        let image = MemStore::copy_of(&self.inner)?;
        crash::apply_crash(&image, &st.pending, mode)?;
        Ok(image)
    }

    /// Applies a power loss in place: the inner store becomes the crash image,
    /// the pending list empties and the poison clears (the volume restarts).
    pub fn crash(&self, mode: CrashMode) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        crash::apply_crash(&self.inner, &st.pending, mode)?;
        self.inner.flush()?;
        st.pending.clear();
        st.poisoned = false;
        Ok(())
    }

    fn decide(&self, st: &mut State, op: OpFilter, touched: Option<Extent>) -> Decision {
        let mut d = Decision::default();
        if !st.enabled {
            return d;
        }
        let State {
            rng,
            rules,
            injected,
            ..
        } = st;
        for (rule, count) in rules.iter_mut() {
            if !rule.matches(op, touched) {
                continue;
            }
            *count += 1;
            if !rule.trigger.fires(*count, rng) {
                continue;
            }
            let applies = match rule.effect {
                FaultEffect::Eio | FaultEffect::Enospc if d.error.is_none() => {
                    d.error = Some(if rule.effect == FaultEffect::Eio {
                        ErrorKind::Io
                    } else {
                        ErrorKind::NoSpace
                    });
                    true
                }
                FaultEffect::Misdirect if op == OpFilter::Write && !d.misdirect => {
                    d.misdirect = true;
                    true
                }
                FaultEffect::BitFlip
                    if matches!(op, OpFilter::Read | OpFilter::Write) && !d.bitflip =>
                {
                    d.bitflip = true;
                    true
                }
                FaultEffect::Latency(max) => {
                    let ns = rng.random_range(0..=max.as_nanos().min(u128::from(u64::MAX)) as u64);
                    d.delay = Some(Duration::from_nanos(ns));
                    true
                }
                _ => false,
            };
            if applies {
                *injected
                    .entry(format!("{}.{}", op_name(op), rule.effect.name()))
                    .or_default() += 1;
            }
        }
        d
    }

    fn fail(&self, kind: ErrorKind, op: Op, context: String) -> StoreError {
        let errno = if kind == ErrorKind::NoSpace {
            ENOSPC
        } else {
            EIO
        };
        StoreError::new(kind, self.inner.volume_id(), op, context)
            .with_source(std::io::Error::from_raw_os_error(errno))
            .injected()
    }

    fn poisoned_err(&self, st: &State, op: Op) -> Result<(), StoreError> {
        if st.poisoned {
            return Err(StoreError::new(
                ErrorKind::Poisoned,
                self.inner.volume_id(),
                op,
                "after a failed flush",
            ));
        }
        Ok(())
    }

    fn touched(&self, offset: u64, len: u64) -> Option<Extent> {
        self.inner
            .geometry()
            .extent_of_range(offset, len)
            .ok()
            .flatten()
    }
}

fn op_name(op: OpFilter) -> &'static str {
    match op {
        OpFilter::Read => "read",
        OpFilter::Write => "write",
        OpFilter::Flush => "flush",
        OpFilter::Discard => "discard",
        OpFilter::Any => "any",
    }
}

impl<S: TrackStore> TrackStore for FaultyStore<S> {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }

    fn volume_id(&self) -> &str {
        self.inner.volume_id()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let g = self.inner.geometry();
        check_range(&g, self.volume_id(), Op::Read, offset, buf.len() as u64)?;
        let touched = self.touched(offset, buf.len() as u64);
        let mut st = self.state.lock();
        let d = self.decide(&mut st, OpFilter::Read, touched);
        let ctx = || format!("offset {offset} length {}", buf.len());
        if let Some(kind) = d.error {
            return Err(self.fail(kind, Op::Read, ctx()));
        }
        if let (true, Some(t)) = (st.enabled, touched) {
            if let Some(bad) = st.latent.range(t.first..=t.last).next().copied() {
                *st.injected.entry("read.latent".to_string()).or_default() += 1;
                return Err(self.fail(
                    ErrorKind::Io,
                    Op::Read,
                    format!("latent error on track {bad}"),
                ));
            }
        }
        let flip = (d.bitflip && !buf.is_empty()).then(|| st.rng.random_range(0..buf.len() * 8));
        drop(st);
        if let Some(delay) = d.delay {
            std::thread::sleep(delay);
        }
        self.inner.read_at(offset, buf)?;
        if let Some(bit) = flip {
            buf[bit / 8] ^= 1 << (bit % 8);
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let g = self.inner.geometry();
        let len = data.len() as u64;
        check_range(&g, self.volume_id(), Op::Write, offset, len)?;
        let mut st = self.state.lock();
        self.poisoned_err(&st, Op::Write)?;
        let touched = self.touched(offset, len);
        let d = self.decide(&mut st, OpFilter::Write, touched);
        if let Some(kind) = d.error {
            return Err(self.fail(kind, Op::Write, format!("offset {offset} length {len}")));
        }
        let Some(intended) = touched else {
            return Ok(());
        };
        let ts = g.track_size_bytes();
        let mut landed_offset = offset;
        if d.misdirect {
            // Same in-track offsets, another first track; if none fits, the write is lost.
            let span = intended.last - intended.first + 1;
            let choices = g.tracks() - span; // other first tracks that fit
            if choices == 0 {
                return Ok(());
            }
            let mut first = st.rng.random_range(0..choices);
            if first >= intended.first {
                first += 1;
            }
            landed_offset = offset - intended.first * ts + first * ts;
        }
        let mut bytes = data.to_vec();
        if d.bitflip && !bytes.is_empty() {
            let bit = st.rng.random_range(0..bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        let landed = self.touched(landed_offset, len).unwrap_or(intended);
        let pre = crash::capture(&self.inner, landed)?;
        if let Some(delay) = d.delay {
            std::thread::sleep(delay);
        }
        self.inner.write_at(landed_offset, &bytes)?;
        for p in geometry::split_range(ts, landed_offset, len) {
            if p.is_whole_track(ts) {
                st.latent.remove(&p.track);
            }
        }
        st.pending.push(Pending {
            op: PendingOp::Write {
                offset: landed_offset,
                data: bytes,
            },
            pre,
        });
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        let g = self.inner.geometry();
        check_range(&g, self.volume_id(), Op::Discard, offset, len)?;
        let mut st = self.state.lock();
        self.poisoned_err(&st, Op::Discard)?;
        let touched = self.touched(offset, len);
        let d = self.decide(&mut st, OpFilter::Discard, touched);
        if let Some(kind) = d.error {
            return Err(self.fail(kind, Op::Discard, format!("offset {offset} length {len}")));
        }
        let Some(t) = touched else { return Ok(()) };
        let pre = crash::capture(&self.inner, t)?;
        if let Some(delay) = d.delay {
            std::thread::sleep(delay);
        }
        self.inner.discard(offset, len)?;
        st.pending.push(Pending {
            op: PendingOp::Discard { offset, len },
            pre,
        });
        Ok(())
    }

    fn allocated(&self, extent: Extent) -> Result<ExtentSet, StoreError> {
        self.inner.allocated(extent)
    }

    fn poisoned(&self) -> bool {
        self.is_poisoned()
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        self.poisoned_err(&st, Op::Flush)?;
        let d = self.decide(&mut st, OpFilter::Flush, None);
        if let Some(delay) = d.delay {
            std::thread::sleep(delay);
        }
        if let Some(kind) = d.error {
            st.poisoned = true;
            return Err(self.fail(kind, Op::Flush, "flush failed; store poisoned".to_string()));
        }
        if let Err(e) = self.inner.flush() {
            st.poisoned = true;
            return Err(e);
        }
        st.pending.clear();
        Ok(())
    }
}
