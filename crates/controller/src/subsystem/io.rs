//! Host I/O by volume name and byte offset: read, write, discard,
//! write_zeroes, flush, allocation. Targets included, always through the engine.
//!
//! Freeze gate: every mutation first waits while its volume is frozen
//! (`freeze` module; one atomic load when nothing is), before any lock.
//!
//! Plain path: a volume no map or cascade holds (`Volume::is_plain`, one atomic load)
//! is read and written straight through its store, with no engine lock, plan
//! or grain lock: nothing can copy from or redirect to it, and a map naming
//! it can only appear under the exclusive topology lock, which waits for the
//! request (it holds the shared one).
//!
//! Writes, discards and zeroing of a volume some map names take the write
//! path (`write_path`: plan, copy, commit, then the host data).

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use geometry::Extent;
use serde::Serialize;
use timezero::VolumeId;

use super::cow::access_err;
use super::write_path::apply_host_data;
use super::{Inner, Subsystem, Volume};
use crate::error::{err, ErrorKind, Result};
use crate::meta::store_err;
use crate::metrics::Metrics;

/// One run of an allocation map (NBD `base:allocation`), in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AllocationExtent {
    /// Byte offset in the volume.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Data is present (false: a hole that reads as zeros).
    pub allocated: bool,
}

/// A volume as a host request names it: by name, and optionally by the
/// serial of the volume the caller opened ([`Subsystem::volume_serial`]).
///
/// An NBD connection passes the serial it saw at connect time, so once its
/// volume is deleted its requests fail with [`ErrorKind::NotFound`] even
/// after a new volume is created under the same name: a stale connection
/// never reads or writes another volume. Serials are never reused (the root
/// records the next one) and survive IPL, so a connection stays valid
/// across an IPL of the same volume. A plain `&str` names the volume only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeRef<'a> {
    /// The volume's name (its export name).
    pub name: &'a str,
    /// The serial the caller expects, if it holds one.
    pub serial: Option<u32>,
}

impl<'a> From<&'a str> for VolumeRef<'a> {
    fn from(name: &'a str) -> Self {
        VolumeRef { name, serial: None }
    }
}

impl<'a> From<&'a String> for VolumeRef<'a> {
    fn from(name: &'a String) -> Self {
        VolumeRef {
            name: name.as_str(),
            serial: None,
        }
    }
}

impl std::fmt::Display for VolumeRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// What a mutation writes.
#[derive(Clone, Copy)]
pub(super) enum Payload<'a> {
    Data(&'a [u8]),
    /// Zeros (discard and write_zeroes: whole tracks become holes).
    Zeros,
}

/// Counts a host request as active (the copier yields while any is).
pub(super) struct HostActive<'a>(&'a Inner);
impl<'a> HostActive<'a> {
    pub(super) fn new(inner: &'a Inner) -> Self {
        inner.host_active.fetch_add(1, Ordering::SeqCst);
        HostActive(inner)
    }
}
impl Drop for HostActive<'_> {
    fn drop(&mut self) {
        self.0.host_active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `offset..offset+len` lies inside `v` (`volume`: its name as the
/// request gave it), else an `OutOfRange` error naming it.
pub(super) fn check_io_range(v: &Volume, volume: &str, offset: u64, len: u64) -> Result<()> {
    v.geometry.check_range(offset, len).map_err(|e| {
        err(
            ErrorKind::OutOfRange,
            format!("volume {volume}: offset {offset} length {len}: {e}"),
        )
    })
}

pub(super) fn grain_range(track_bytes: u64, offset: u64, len: u64) -> Range<u64> {
    offset / track_bytes..(offset + len - 1) / track_bytes + 1
}

impl Subsystem {
    fn io_volume(&self, volume: VolumeRef<'_>, offset: u64, len: u64) -> Result<Arc<Volume>> {
        self.check_open()?;
        let v = self.inner.volume_ref(volume)?;
        check_io_range(&v, volume.name, offset, len)?;
        Ok(v)
    }

    /// The serial of the volume named `name` now: pass it in a
    /// [`VolumeRef`] so that requests never reach a later volume of the
    /// same name.
    pub fn volume_serial(&self, name: &str) -> Result<u32> {
        // Under the topology lock: a volume being created is not seen until
        // its root is durable (an undone create must not lend its serial).
        // Refused while fenced: memory may hold a create whose root write
        // failed, whose serial the IPL may give to another volume.
        let _topo = self.io_lock()?;
        Ok(self.inner.volume(name)?.id.0)
    }

    /// Reads `buf.len()` bytes at `offset` of `volume`'s current image (a
    /// target reads its point-in-time image). Offline targets fail with
    /// [`ErrorKind::Offline`], never with wrong data.
    pub fn read<'v>(
        &self,
        volume: impl Into<VolumeRef<'v>>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        let volume = volume.into();
        let r = self.read_inner(volume, offset, buf);
        self.count(
            &r,
            &self.inner.metrics.reads,
            &self.inner.metrics.read_bytes,
            buf.len(),
        );
        r
    }

    fn read_inner(&self, volume: VolumeRef<'_>, offset: u64, buf: &mut [u8]) -> Result<()> {
        let inner = &*self.inner;
        let _active = HostActive::new(inner);
        // The volume is looked up under the topology lock, so a delete cannot
        // come between the lookup and the store access.
        let _topo = self.io_lock()?;
        let v = self.io_volume(volume, offset, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        let ts = v.geometry.track_size_bytes();
        let grains = grain_range(ts, offset, buf.len() as u64);
        if inner.reads_own(&v, grains.clone())? {
            return v
                .store
                .read_at(offset, buf)
                .map_err(|e| store_err(&format!("read volume {volume}"), e));
        }
        // Redirected: hold the grains so no copy-on-write changes the holder
        // under us, then walk the cascade once.
        let _g = inner.grains.lock(grains.clone());
        let holders = inner.resolve(&v, grains.clone())?;
        for piece in geometry::split_range(ts, offset, buf.len() as u64) {
            let holder = holders[(piece.track - grains.start) as usize];
            let store = if holder == v.id {
                v.store.clone()
            } else {
                inner.volume_by_id(holder)?.store.clone()
            };
            store
                .read_at(piece.volume_offset(ts), &mut buf[piece.buf_range()])
                .map_err(|e| {
                    store_err(
                        &format!(
                            "read volume {volume} track {} (via {})",
                            piece.track, holder
                        ),
                        e,
                    )
                })?;
        }
        Ok(())
    }

    /// [`Subsystem::read`] done only if it needs no wait: `volume` is plain
    /// (no map names it) and no control request holds the topology lock.
    /// `None`: not attempted (nothing counted); call [`Subsystem::read`].
    /// For callers that must not block, such as an async NBD reader.
    pub fn try_read_now<'v>(
        &self,
        volume: impl Into<VolumeRef<'v>>,
        offset: u64,
        buf: &mut [u8],
    ) -> Option<Result<()>> {
        let volume = volume.into();
        let inner = &*self.inner;
        let _topo = inner.topo.try_read()?;
        let v = self.fast_volume(volume, offset, buf.len() as u64)?;
        let _active = HostActive::new(inner);
        let r = v
            .store
            .read_at(offset, buf)
            .map_err(|e| store_err(&format!("read volume {volume}"), e));
        self.count(
            &r,
            &inner.metrics.reads,
            &inner.metrics.read_bytes,
            buf.len(),
        );
        Some(r)
    }

    /// [`Subsystem::write`] without FUA, done only if it needs no wait:
    /// `volume` is plain, nothing is frozen, and no control request holds the
    /// topology lock. `None`: not attempted; call [`Subsystem::write`].
    pub fn try_write_now<'v>(
        &self,
        volume: impl Into<VolumeRef<'v>>,
        offset: u64,
        data: &[u8],
    ) -> Option<Result<()>> {
        let volume = volume.into();
        let inner = &*self.inner;
        if inner.freezes.any() {
            return None;
        }
        let _topo = inner.topo.try_read()?;
        let v = self.fast_volume(volume, offset, data.len() as u64)?;
        let _active = HostActive::new(inner);
        let r = apply_host_data(&v, offset, data.len() as u64, Payload::Data(data));
        self.count(
            &r,
            &inner.metrics.writes,
            &inner.metrics.write_bytes,
            data.len(),
        );
        Some(r)
    }

    /// The plain volume `volume`, if the fast paths may serve `offset..+len`
    /// of it (open, known, plain, in range, not empty); `None` sends the
    /// request down the full path, which reports any error.
    fn fast_volume(&self, volume: VolumeRef<'_>, offset: u64, len: u64) -> Option<Arc<Volume>> {
        if len == 0 || self.check_open().is_err() {
            return None;
        }
        let v = self.inner.volume_ref(volume).ok()?;
        if !v.is_plain() || v.geometry.check_range(offset, len).is_err() {
            return None;
        }
        debug_assert!(
            self.inner.core.lock().engine.is_plain(v.id),
            "fast path taken for volume {} that a map names",
            v.name
        );
        Some(v)
    }

    /// Writes `data` at `offset` of `volume`; with `fua` it is durable on return.
    pub fn write<'v>(
        &self,
        volume: impl Into<VolumeRef<'v>>,
        offset: u64,
        data: &[u8],
        fua: bool,
    ) -> Result<()> {
        let volume = volume.into();
        let r = self.mutate(volume, offset, data.len() as u64, Payload::Data(data), fua);
        self.count(
            &r,
            &self.inner.metrics.writes,
            &self.inner.metrics.write_bytes,
            data.len(),
        );
        r
    }

    /// Discards `offset..offset+len`: whole tracks become holes, partial
    /// tracks are zeroed (the range reads as zeros afterwards). Dependent
    /// targets are protected first, exactly as for a write.
    pub fn discard<'v>(
        &self,
        volume: impl Into<VolumeRef<'v>>,
        offset: u64,
        len: u64,
        fua: bool,
    ) -> Result<()> {
        let volume = volume.into();
        let r = self.mutate(volume, offset, len, Payload::Zeros, fua);
        self.count(
            &r,
            &self.inner.metrics.discards,
            &self.inner.metrics.discard_bytes,
            len as usize,
        );
        r
    }

    /// Writes zeros over `offset..offset+len` (whole tracks become holes, so it
    /// is fast); reads as zeros afterwards.
    pub fn write_zeroes<'v>(
        &self,
        volume: impl Into<VolumeRef<'v>>,
        offset: u64,
        len: u64,
        fua: bool,
    ) -> Result<()> {
        let volume = volume.into();
        let r = self.mutate(volume, offset, len, Payload::Zeros, fua);
        self.count(
            &r,
            &self.inner.metrics.writes,
            &self.inner.metrics.write_bytes,
            len as usize,
        );
        r
    }

    /// Makes every acknowledged write to `volume` durable (copies made for
    /// copy-on-write are durable before their writes were acknowledged).
    pub fn flush<'v>(&self, volume: impl Into<VolumeRef<'v>>) -> Result<()> {
        self.check_open()?;
        Metrics::add(&self.inner.metrics.host_flushes, 1);
        let v = self.inner.volume_ref(volume.into())?;
        let r = self.inner.flush_store(&v.name, &v.store);
        if r.is_err() {
            Metrics::add(&self.inner.metrics.errors, 1);
        }
        r
    }

    /// Flushes every volume.
    pub fn flush_all(&self) -> Result<()> {
        self.check_open()?;
        self.flush_every_volume()
    }

    /// Flushes every volume's store (also used by `close`, after the handle
    /// is marked closed).
    pub(crate) fn flush_every_volume(&self) -> Result<()> {
        let vols: Vec<Arc<Volume>> = self
            .inner
            .volumes
            .read()
            .by_name
            .values()
            .cloned()
            .collect();
        for v in vols {
            self.inner.flush_store(&v.name, &v.store)?;
        }
        Ok(())
    }

    /// The allocation map of `volume`'s current image over `offset..offset+len`,
    /// in track granularity (a target's unsplit grains report the holder's allocation).
    pub fn allocation<'v>(
        &self,
        volume: impl Into<VolumeRef<'v>>,
        offset: u64,
        len: u64,
    ) -> Result<Vec<AllocationExtent>> {
        let volume = volume.into();
        let v = self.io_volume(volume, offset, len)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let inner = &*self.inner;
        let _topo = self.io_lock()?;
        let ts = v.geometry.track_size_bytes();
        let grains = grain_range(ts, offset, len);
        let holders = inner.resolve(&v, grains.clone())?;
        let mut out: Vec<AllocationExtent> = Vec::new();
        let mut push = |first: u64, last: u64, allocated: bool| {
            let start = (first * ts).max(offset);
            let end = ((last + 1) * ts).min(offset + len);
            match out.last_mut() {
                Some(l) if l.allocated == allocated && l.offset + l.len == start => {
                    l.len += end - start
                }
                _ => out.push(AllocationExtent {
                    offset: start,
                    len: end - start,
                    allocated,
                }),
            }
        };
        let mut i = 0usize;
        while i < holders.len() {
            let h = holders[i];
            let mut j = i;
            while j + 1 < holders.len() && holders[j + 1] == h {
                j += 1;
            }
            let (first, last) = (grains.start + i as u64, grains.start + j as u64);
            let store = if h == v.id {
                v.store.clone()
            } else {
                inner.volume_by_id(h)?.store.clone()
            };
            let alloc = store
                .allocated(Extent { first, last })
                .map_err(|e| store_err(&format!("allocation of volume {volume}"), e))?;
            let mut at = first;
            for e in alloc.extents() {
                if e.first > at {
                    push(at, e.first - 1, false);
                }
                push(e.first, e.last, true);
                at = e.last + 1;
            }
            if at <= last {
                push(at, last, false);
            }
            i = j + 1;
        }
        Ok(out)
    }

    pub(super) fn count<T>(
        &self,
        r: &Result<T>,
        ops: &std::sync::atomic::AtomicU64,
        bytes: &std::sync::atomic::AtomicU64,
        n: usize,
    ) {
        if r.is_ok() {
            Metrics::add(ops, 1);
            Metrics::add(bytes, n as u64);
        } else {
            Metrics::add(&self.inner.metrics.errors, 1);
        }
    }
}

impl Inner {
    /// Resolves the holder of every grain in `grains` of `v` (one engine lock).
    pub(crate) fn resolve(&self, v: &Volume, grains: Range<u64>) -> Result<Vec<VolumeId>> {
        if v.is_plain() {
            // No map names it: nothing redirects it and nothing can take it offline.
            debug_assert!(
                self.core.lock().engine.is_plain(v.id),
                "plain read of volume {} that a map names",
                v.name
            );
            return Ok(vec![v.id; (grains.end - grains.start) as usize]);
        }
        let core = self.core.lock();
        if core.vol_maps.get(&v.id).is_none_or(|m| m.member.is_none()) {
            // Not a cascade member: reads its own store (docs/SEMANTICS.md, I2); the
            // access check still applies (a source of a suspended map is offline).
            core.engine
                .resolve_read(v.id, grains.start)
                .map_err(|e| access_err(e, &v.name))?;
            return Ok(vec![v.id; (grains.end - grains.start) as usize]);
        }
        grains
            .map(|g| {
                core.engine
                    .resolve_read(v.id, g)
                    .map_err(|e| access_err(e, &v.name))
            })
            .collect()
    }

    /// Whether every grain of `grains` of `v` reads `v`'s own store, decided
    /// without walking a cascade (timezero::Engine::reads_own); `false`:
    /// resolve the holders under the grain locks.
    pub(crate) fn reads_own(&self, v: &Volume, grains: Range<u64>) -> Result<bool> {
        if v.is_plain() {
            return Ok(true);
        }
        let core = self.core.lock();
        core.engine
            .reads_own(v.id, grains)
            .map_err(|e| access_err(e, &v.name))
    }
}
