//! The [`TrackStore`] trait: the contract every volume backend keeps.
//!
//! ```text
//!            Arc<dyn TrackStore>          (controller, sim, nbd adapter)
//!           /         |          \
//!  SparseFileStore  MemStore   FaultyStore<S: TrackStore>  (feature fault-injection)
//!  (one sparse file (tracks in  (volatile write cache + injected faults
//!   per volume)      a BTreeMap)  around any store)
//! ```
//!
//! Contract (checked for every implementation by `tests/conformance.rs`):
//! - byte addressed: any range inside `0..geometry().size_bytes()` may be read or
//!   written, at any alignment, across track boundaries; a range that is not
//!   inside (including one whose end overflows `u64`) is an
//!   [`crate::ErrorKind::OutOfRange`] error and changes
//!   nothing; no input makes a store panic;
//! - bytes never written, or discarded, read as zeros;
//! - a write is visible to every later read through the same store at once;
//!   it is durable (survives power loss) only after a later successful `flush`;
//! - `allocated(extent)` reports the tracks of `extent` that hold data: every
//!   track written (even with zeros) since it was last wholly discarded; a track
//!   only partly discarded stays allocated (its discarded bytes read as zeros);
//! - `copy_from(src, offset, len)` leaves this store exactly as
//!   `src.read_at` followed by `write_at` of the same bytes would (a file
//!   store copies between two files in the kernel, `copy_file_range`, without
//!   a user-space buffer; every other pair goes through the buffer);
//! - a failed `flush` poisons the store: later writes, discards and flushes fail
//!   with [`crate::ErrorKind::Poisoned`] until the volume
//!   is reopened (reads still work and see what the OS holds).

use geometry::{split_range, Extent, ExtentSet, Geometry, TrackNo};

use crate::error::{ErrorKind, Op, StoreError};

/// A track-addressed volume backend. Object safe; shared as `Arc<dyn TrackStore>`.
pub trait TrackStore: Send + Sync {
    /// The volume's geometry (fixed for the life of the store).
    fn geometry(&self) -> Geometry;

    /// The volume id used in errors (and, for files, stored in the trailer).
    fn volume_id(&self) -> &str;

    /// Fills `buf` with the bytes at `offset..offset + buf.len()`; unwritten bytes
    /// read as zeros. Out of range: error, `buf` unspecified.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError>;

    /// Writes `data` at `offset`. Visible to later reads at once, durable after
    /// the next successful [`TrackStore::flush`]. Out of range: error, nothing written.
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StoreError>;

    /// Discards `offset..offset + len`: afterwards it reads as zeros. Whole tracks
    /// give their space back (holes) and stop being allocated; partial tracks
    /// are zeroed in place.
    fn discard(&self, offset: u64, len: u64) -> Result<(), StoreError>;

    /// Writes zeros over `offset..offset + len`; the tracks stay (or become)
    /// allocated. The default writes zero buffers of at most one track.
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        let g = self.geometry();
        check_range(&g, self.volume_id(), Op::WriteZeroes, offset, len)?;
        let zeros = vec![0u8; g.track_size_bytes() as usize];
        for piece in split_range(g.track_size_bytes(), offset, len) {
            self.write_at(
                piece.volume_offset(g.track_size_bytes()),
                &zeros[..piece.len as usize],
            )?;
        }
        Ok(())
    }

    /// The tracks of `extent` that hold data (see the module contract). `extent`
    /// must lie inside the volume.
    fn allocated(&self, extent: Extent) -> Result<ExtentSet, StoreError>;

    /// Makes every write and discard before it durable; on failure the store is
    /// poisoned (see the module contract).
    fn flush(&self) -> Result<(), StoreError>;

    /// True once a flush has failed: writes, discards and flushes fail until
    /// the store is reopened (an IPL). Stores that never poison say `false`.
    fn poisoned(&self) -> bool {
        false
    }

    /// The open file holding this store's bytes at their volume offsets, if
    /// the store is one plain file (lets [`TrackStore::copy_from`] copy in the
    /// kernel). Default: none.
    fn backing_file(&self) -> Option<&std::fs::File> {
        None
    }

    /// Copies `src`'s bytes at `offset..offset + len` to the same range of
    /// this store, as `src.read_at` then `self.write_at` would; `buf` is
    /// scratch space the default implementation reads into. A failure leaves
    /// the range's contents unspecified (as a failed write does).
    fn copy_from(
        &self,
        src: &dyn TrackStore,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        copy_through_buffer(self, src, offset, len, buf)
    }

    /// Reads the whole `track` into `buf`, which must be exactly one track long.
    fn read_track(&self, track: TrackNo, buf: &mut [u8]) -> Result<(), StoreError> {
        let g = self.geometry();
        let offset = track_offset(&g, self.volume_id(), Op::Read, track, buf.len())?;
        self.read_at(offset, buf)
    }

    /// Writes the whole `track` from `data`, which must be exactly one track long.
    fn write_track(&self, track: TrackNo, data: &[u8]) -> Result<(), StoreError> {
        let g = self.geometry();
        let offset = track_offset(&g, self.volume_id(), Op::Write, track, data.len())?;
        self.write_at(offset, data)
    }
}

/// [`TrackStore::copy_from`] through `buf`: `src.read_at`, then
/// `dst.write_at` (the default, and a file store's fallback).
pub(crate) fn copy_through_buffer<S: TrackStore + ?Sized>(
    dst: &S,
    src: &dyn TrackStore,
    offset: u64,
    len: u64,
    buf: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let data = read_into(src, offset, len, buf)?;
    dst.write_at(offset, data)
}

/// Reads `src`'s `offset..offset + len` into `buf` (resized to `len`).
pub(crate) fn read_into<'b>(
    src: &dyn TrackStore,
    offset: u64,
    len: u64,
    buf: &'b mut Vec<u8>,
) -> Result<&'b [u8], StoreError> {
    let n = usize::try_from(len).map_err(|_| {
        StoreError::new(
            ErrorKind::OutOfRange,
            src.volume_id(),
            Op::Read,
            format!("offset {offset} length {len}"),
        )
    })?;
    buf.resize(n, 0);
    src.read_at(offset, buf)?;
    Ok(buf)
}

/// The [`ErrorKind::OutOfRange`] check every store runs first.
pub fn check_range(
    geometry: &Geometry,
    volume: &str,
    op: Op,
    offset: u64,
    len: u64,
) -> Result<(), StoreError> {
    geometry.check_range(offset, len).map_err(|e| {
        StoreError::new(
            ErrorKind::OutOfRange,
            volume,
            op,
            format!("offset {offset} length {len}"),
        )
        .with_source(e)
    })
}

/// Checks that `extent` is non-reversed and inside the volume.
pub fn check_extent(
    geometry: &Geometry,
    volume: &str,
    op: Op,
    extent: Extent,
) -> Result<(), StoreError> {
    if extent.first > extent.last || extent.last >= geometry.tracks() {
        return Err(StoreError::new(
            ErrorKind::OutOfRange,
            volume,
            op,
            format!(
                "tracks {}..={} of {}",
                extent.first,
                extent.last,
                geometry.tracks()
            ),
        ));
    }
    Ok(())
}

fn track_offset(
    g: &Geometry,
    volume: &str,
    op: Op,
    track: TrackNo,
    buf_len: usize,
) -> Result<u64, StoreError> {
    if buf_len as u64 != g.track_size_bytes() {
        return Err(StoreError::new(
            ErrorKind::InvalidArgument,
            volume,
            op,
            format!(
                "track buffer of {buf_len} bytes, track size {}",
                g.track_size_bytes()
            ),
        ));
    }
    if track >= g.tracks() {
        return Err(StoreError::new(
            ErrorKind::OutOfRange,
            volume,
            op,
            format!("track {track} of {}", g.tracks()),
        ));
    }
    Ok(track * g.track_size_bytes())
}
