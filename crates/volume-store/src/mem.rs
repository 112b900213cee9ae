//! [`MemStore`]: a sparse in-memory volume for tests and simulations.
//!
//! Invariant: the map holds exactly the allocated tracks, each a buffer of one
//! track; absent tracks read as zeros. `flush` always succeeds (memory is the
//! durable medium of this store; crash models live in `FaultyStore`).

use std::collections::BTreeMap;

use geometry::{split_range, Extent, ExtentSet, Geometry, TrackNo};
use parking_lot::RwLock;

use crate::error::{Op, StoreError};
use crate::store::{check_extent, check_range, TrackStore};

/// A sparse in-memory volume: a map from track number to track bytes.
#[derive(Debug)]
pub struct MemStore {
    geometry: Geometry,
    volume_id: String,
    tracks: RwLock<BTreeMap<TrackNo, Box<[u8]>>>,
}

impl Clone for MemStore {
    fn clone(&self) -> Self {
        MemStore {
            geometry: self.geometry,
            volume_id: self.volume_id.clone(),
            tracks: RwLock::new(self.tracks.read().clone()),
        }
    }
}

impl MemStore {
    /// An empty (all zeros, nothing allocated) volume named `mem`.
    pub fn new(geometry: Geometry) -> MemStore {
        MemStore::with_id("mem", geometry)
    }

    /// An empty volume with the given id (used in errors).
    pub fn with_id(volume_id: &str, geometry: Geometry) -> MemStore {
        MemStore {
            geometry,
            volume_id: volume_id.to_string(),
            tracks: RwLock::new(BTreeMap::new()),
        }
    }

    /// A copy of every allocated track of `store` (its current, not only durable, view).
    pub fn copy_of(store: &dyn TrackStore) -> Result<MemStore, StoreError> {
        let g = store.geometry();
        let mem = MemStore::with_id(store.volume_id(), g);
        let mut buf = vec![0u8; g.track_size_bytes() as usize];
        for track in store.allocated(g.full_extent())?.tracks() {
            store.read_track(track, &mut buf)?;
            mem.tracks
                .write()
                .insert(track, buf.clone().into_boxed_slice());
        }
        Ok(mem)
    }

    /// Number of allocated tracks.
    pub fn allocated_tracks(&self) -> usize {
        self.tracks.read().len()
    }
}

impl TrackStore for MemStore {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn volume_id(&self) -> &str {
        &self.volume_id
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        check_range(
            &self.geometry,
            &self.volume_id,
            Op::Read,
            offset,
            buf.len() as u64,
        )?;
        let tracks = self.tracks.read();
        for p in split_range(self.geometry.track_size_bytes(), offset, buf.len() as u64) {
            let out = &mut buf[p.buf_range()];
            match tracks.get(&p.track) {
                Some(t) => out.copy_from_slice(&t[p.track_range()]),
                None => out.fill(0),
            }
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        check_range(
            &self.geometry,
            &self.volume_id,
            Op::Write,
            offset,
            data.len() as u64,
        )?;
        let ts = self.geometry.track_size_bytes() as usize;
        let mut tracks = self.tracks.write();
        for p in split_range(ts as u64, offset, data.len() as u64) {
            let t = tracks
                .entry(p.track)
                .or_insert_with(|| vec![0u8; ts].into_boxed_slice());
            t[p.track_range()].copy_from_slice(&data[p.buf_range()]);
        }
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        check_range(&self.geometry, &self.volume_id, Op::Discard, offset, len)?;
        let ts = self.geometry.track_size_bytes();
        let mut tracks = self.tracks.write();
        for p in split_range(ts, offset, len) {
            if p.is_whole_track(ts) {
                tracks.remove(&p.track);
            } else if let Some(t) = tracks.get_mut(&p.track) {
                t[p.track_range()].fill(0);
            }
        }
        Ok(())
    }

    fn allocated(&self, extent: Extent) -> Result<ExtentSet, StoreError> {
        check_extent(&self.geometry, &self.volume_id, Op::Allocated, extent)?;
        let tracks = self.tracks.read();
        Ok(tracks
            .range(extent.first..=extent.last)
            .map(|(&t, _)| Extent::single(t))
            .collect())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
