//! Controller metadata on a metadata [`TrackStore`]: two root slots and a bitmap journal.
//!
//! ```text
//! meta store (sparse FB volume, 64 KiB tracks)
//! 0 GiB   slot 0: [root header, 4 KiB][root payload ...]
//! 16 GiB  slot 1: [root header, 4 KiB][root payload ...]
//! 32 GiB  journal: [record][record]...   (records of the current root generation)
//! ```
//!
//! Invariants (design.md 7, reliability.md "Rules for copy-on-write metadata"):
//! - a checkpoint writes the slot that does NOT hold the newest valid root, with
//!   generation + 1, and flushes; the newest valid root is never written in place;
//! - a root is valid only if its header crc, its payload crc, its slot number
//!   (misdirected writes) and its subsystem id all check;
//! - a journal record belongs to exactly one root generation and has a sequence
//!   number; replay accepts records of the root's generation with consecutive
//!   sequence numbers from 1 and stops at the first that fails any check (torn tail);
//! - the journal is reused from its start only after the checkpoint that
//!   absorbed its records is durable (no reuse of freed space before the commit
//!   that freed it is durable).
//!
//! All I/O goes through an `Arc<dyn TrackStore>`, so tests wrap the metadata in
//! the same `FaultyStore` as the volumes and crash images cover both.

pub mod codec;
mod journal;
mod root;

pub use journal::{JournalScan, JournalStop, JOURNAL_RECORD_HEADER_BYTES};
pub use root::{RootHeader, RootScan, SlotStatus, ROOT_FLAG_OPEN};

use std::sync::Arc;

use geometry::{DeviceModel, Geometry};
use volume_store::TrackStore;

use crate::error::{ControllerError, ErrorKind};

/// Track size of the metadata store.
pub const META_TRACK_BYTES: u64 = 64 << 10;
/// Bytes reserved for each root slot (header + payload).
pub const SLOT_BYTES: u64 = 16 << 30;
/// Bytes of the root header block at the start of a slot.
pub const ROOT_HEADER_BLOCK_BYTES: u64 = 4096;
/// Offset of the journal in the metadata store.
pub const JOURNAL_BASE: u64 = 2 * SLOT_BYTES;
/// Bytes reserved for the journal.
pub const JOURNAL_BYTES: u64 = 32 << 30;
/// Size of the metadata store.
pub const META_SIZE_BYTES: u64 = JOURNAL_BASE + JOURNAL_BYTES;
/// Name the metadata store carries (in its trailer and errors).
pub const META_VOLUME_ID: &str = "_meta";

/// The geometry of the metadata store (a sparse 64 GiB FB volume).
pub fn meta_geometry() -> Geometry {
    // Constant, valid arguments (power-of-two track, size a multiple of it).
    Geometry::new(DeviceModel::Fb {
        size_bytes: META_SIZE_BYTES,
        track_size_bytes: META_TRACK_BYTES,
    })
    .expect("metadata geometry is valid")
}

/// The metadata store with the durability policy applied to its flushes.
#[derive(Clone)]
pub struct MetaStore {
    store: Arc<dyn TrackStore>,
    sync: bool,
}

impl MetaStore {
    /// Wraps `store`; with `sync == false` (durability `nosync`) flushes are skipped.
    pub fn new(store: Arc<dyn TrackStore>, sync: bool) -> MetaStore {
        MetaStore { store, sync }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn TrackStore> {
        &self.store
    }

    pub(crate) fn read(
        &self,
        offset: u64,
        buf: &mut [u8],
        what: &str,
    ) -> Result<(), ControllerError> {
        self.store
            .read_at(offset, buf)
            .map_err(|e| store_err(what, e))
    }

    pub(crate) fn write(
        &self,
        offset: u64,
        data: &[u8],
        what: &str,
    ) -> Result<(), ControllerError> {
        self.store
            .write_at(offset, data)
            .map_err(|e| store_err(what, e))
    }

    pub(crate) fn flush(&self, what: &str) -> Result<(), ControllerError> {
        if self.sync {
            self.store.flush().map_err(|e| store_err(what, e))
        } else {
            Ok(())
        }
    }
}

/// Maps a store error into the controller's error kinds.
pub(crate) fn store_err(what: &str, e: volume_store::StoreError) -> ControllerError {
    use volume_store::ErrorKind as K;
    let kind = match e.kind() {
        K::OutOfRange => ErrorKind::OutOfRange,
        K::NoSpace => ErrorKind::NoSpace,
        K::WrongFile | K::WrongVolume | K::WrongGeometry | K::BadHeader => ErrorKind::Corrupt,
        K::AlreadyExists => ErrorKind::AlreadyExists,
        K::NotFound => ErrorKind::NotFound,
        K::InvalidArgument => ErrorKind::InvalidRequest,
        _ => ErrorKind::Io,
    };
    ControllerError::with_source(kind, what.to_string(), e)
}

#[cfg(test)]
mod tests;
