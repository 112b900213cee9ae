//! Controller metadata on a metadata [`TrackStore`]: two root slots, each
//! mirrored, and a mirrored bitmap journal.
//!
//! ```text
//! meta store (sparse FB volume, 64 KiB tracks)
//! 0 GiB   slot 0 copy 0: [root header, 4 KiB][root payload ...]
//! 8 GiB   slot 0 copy 1: the same bytes
//! 16 GiB  slot 1 copy 0
//! 24 GiB  slot 1 copy 1
//! 32 GiB  journal copy 0: [record][record]...   (records of the current root generation)
//! 48 GiB  journal copy 1: the same records at the same relative offsets
//! ```
//!
//! Invariants (rules 4-6 of docs/DURABILITY.md, "The rules and where they hold"):
//! - a checkpoint writes both copies of the slot that does NOT hold the newest
//!   valid root, with generation + 1; the newest valid root is never written in place;
//! - every metadata write is made durable and verified before anything depends
//!   on it ([`MetaStore::write_durable`]): write, flush, read back, compare; on
//!   any failure the store is reopened and the whole write repeated. So one
//!   lost, misdirected or failed write never leaves a single copy, and journal
//!   records are only ever written under a root that is durable and verified;
//! - when the attempts run out the outcome is unknown: the error is of kind
//!   [`ErrorKind::Fenced`] and the caller must stop serving (fence) until an
//!   IPL or reset rebuilds memory from what is durable;
//! - a root copy is valid only if its header crc, its payload crc, its slot
//!   number (misdirected writes) and its subsystem id all check; the newest
//!   valid copy of either slot wins;
//! - a journal record belongs to exactly one root generation and has a sequence
//!   number; replay accepts records of the root's generation with consecutive
//!   sequence numbers from 1, taking each from whichever copy holds it whole,
//!   and stops where neither copy does (torn tail);
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
use parking_lot::RwLock;
use volume_store::{FaultPoint, NoFaults, TrackStore};

use crate::error::{err, ControllerError, ErrorKind};

/// Track size of the metadata store.
pub const META_TRACK_BYTES: u64 = 64 << 10;
/// Bytes reserved for each root slot (both copies).
pub const SLOT_BYTES: u64 = 16 << 30;
/// Offset of a slot's second copy from its first.
pub const ROOT_COPY_BYTES: u64 = 8 << 30;
/// Copies of each root and of each journal record.
pub const COPIES: u64 = 2;
/// Bytes of the root header block at the start of a root copy.
pub const ROOT_HEADER_BLOCK_BYTES: u64 = 4096;
/// Offset of the journal (copy 0) in the metadata store.
pub const JOURNAL_BASE: u64 = 2 * SLOT_BYTES;
/// Bytes reserved for each journal copy.
pub const JOURNAL_BYTES: u64 = 16 << 30;
/// Size of the metadata store.
pub const META_SIZE_BYTES: u64 = JOURNAL_BASE + COPIES * JOURNAL_BYTES;
/// Name the metadata store carries (in its trailer and errors).
pub const META_VOLUME_ID: &str = "_meta";
/// Attempts [`MetaStore::write_durable`] makes before the outcome is unknown.
pub const DURABLE_ATTEMPTS: u32 = 16;

/// Offset of copy `copy` of root slot `slot`.
pub fn root_base(slot: u32, copy: u64) -> u64 {
    u64::from(slot) * SLOT_BYTES + copy * ROOT_COPY_BYTES
}

/// Offset of journal copy `copy`.
pub fn journal_base(copy: u64) -> u64 {
    JOURNAL_BASE + copy * JOURNAL_BYTES
}

/// The geometry of the metadata store (a sparse 64 GiB FB volume).
pub fn meta_geometry() -> Geometry {
    // Constant, valid arguments (power-of-two track, size a multiple of it).
    Geometry::new(DeviceModel::Fb {
        size_bytes: META_SIZE_BYTES,
        track_size_bytes: META_TRACK_BYTES,
    })
    .expect("metadata geometry is valid")
}

/// Opens the metadata store afresh (a new file handle): used after a failed
/// write or flush, whose store may be poisoned and whose cache is not trusted.
pub type Reopen = Arc<dyn Fn() -> Result<Arc<dyn TrackStore>, ControllerError> + Send + Sync>;

struct Shared {
    store: RwLock<Arc<dyn TrackStore>>,
    sync: bool,
    reopen: Option<Reopen>,
    faults: Arc<dyn FaultPoint>,
    /// Deliberate bug for the simulator's self-test: roots are written once,
    /// unflushed and unverified, and a failed root write is ignored.
    unsafe_roots: bool,
}

/// The metadata store with the durability policy applied to its writes.
#[derive(Clone)]
pub struct MetaStore {
    shared: Arc<Shared>,
}

impl MetaStore {
    /// Wraps `store`; with `sync == false` (durability `nosync`) flushes are
    /// skipped. No reopen and no fault sites (see [`MetaStore::with_recovery`]).
    pub fn new(store: Arc<dyn TrackStore>, sync: bool) -> MetaStore {
        MetaStore {
            shared: Arc::new(Shared {
                store: RwLock::new(store),
                sync,
                reopen: None,
                faults: Arc::new(NoFaults),
                unsafe_roots: false,
            }),
        }
    }

    /// The same store with a way to reopen it after a failed write or flush,
    /// and the fault sites `root.write` and `bitmap.commit`.
    pub fn with_recovery(
        store: Arc<dyn TrackStore>,
        sync: bool,
        reopen: Reopen,
        faults: Arc<dyn FaultPoint>,
    ) -> MetaStore {
        MetaStore {
            shared: Arc::new(Shared {
                store: RwLock::new(store),
                sync,
                reopen: Some(reopen),
                faults,
                unsafe_roots: false,
            }),
        }
    }

    /// Switches on the deliberate bug "journal under a root that is not
    /// durable" (simulator self-test only; see `sim::Bug::JournalBeforeRoot`).
    #[doc(hidden)]
    pub fn with_unsafe_roots(self) -> MetaStore {
        let s = &self.shared;
        MetaStore {
            shared: Arc::new(Shared {
                store: RwLock::new(s.store.read().clone()),
                sync: s.sync,
                reopen: s.reopen.clone(),
                faults: s.faults.clone(),
                unsafe_roots: true,
            }),
        }
    }

    /// The underlying store (the current handle).
    pub fn store(&self) -> Arc<dyn TrackStore> {
        self.shared.store.read().clone()
    }

    pub(crate) fn read(
        &self,
        offset: u64,
        buf: &mut [u8],
        what: &str,
    ) -> Result<(), ControllerError> {
        self.store()
            .read_at(offset, buf)
            .map_err(|e| store_err(what, e))
    }

    fn write(&self, offset: u64, data: &[u8], what: &str) -> Result<(), ControllerError> {
        self.store()
            .write_at(offset, data)
            .map_err(|e| store_err(what, e))
    }

    fn flush(&self, what: &str) -> Result<(), ControllerError> {
        if self.shared.sync {
            self.store().flush().map_err(|e| store_err(what, e))
        } else {
            Ok(())
        }
    }

    pub(crate) fn unsafe_roots(&self) -> bool {
        self.shared.unsafe_roots
    }

    pub(crate) fn site_ok(&self, site: volume_store::FaultSite) -> bool {
        self.shared.faults.check(site).is_ok()
    }

    /// Replaces the store handle with a freshly opened one (no-op without a reopen).
    pub(crate) fn reopen(&self) -> Result<(), ControllerError> {
        if let Some(reopen) = &self.shared.reopen {
            *self.shared.store.write() = reopen()?;
        }
        Ok(())
    }

    /// One attempt: the fault site, every part written, one flush, every part
    /// read back and compared.
    fn attempt(
        &self,
        site: volume_store::FaultSite,
        parts: &[(u64, &[u8])],
    ) -> Result<(), ControllerError> {
        self.shared
            .faults
            .check(site)
            .map_err(|e| store_err(&format!("{site} (injected)"), e))?;
        for (offset, data) in parts {
            self.write(*offset, data, &format!("write metadata at byte {offset}"))?;
        }
        self.flush("flush metadata")?;
        let mut back = Vec::new();
        for (offset, data) in parts {
            back.resize(data.len(), 0);
            self.read(
                *offset,
                &mut back,
                &format!("read back metadata at byte {offset}"),
            )?;
            if back != *data {
                return Err(err(
                    ErrorKind::Io,
                    format!(
                        "metadata at byte {offset} ({} bytes) reads back different from what was \
                         written (lost or misdirected write)",
                        data.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Makes `parts` (offset, bytes) durable and verified: write them all,
    /// flush, read each back and compare. Any failure reopens the store and
    /// repeats the whole write (rewriting after a failed flush is what makes
    /// the bytes durable again: the kernel may have dropped the dirty pages).
    /// Returns the attempts used. After [`DURABLE_ATTEMPTS`] failures the
    /// bytes may or may not be durable: the error is [`ErrorKind::Fenced`].
    pub(crate) fn write_durable(
        &self,
        site: volume_store::FaultSite,
        parts: &[(u64, &[u8])],
        what: &str,
    ) -> Result<u32, ControllerError> {
        let mut last = None;
        for attempt in 1..=DURABLE_ATTEMPTS {
            if attempt > 1 {
                if let Err(e) = self.reopen() {
                    last = Some(e);
                    continue;
                }
            }
            match self.attempt(site, parts) {
                Ok(()) => {
                    if attempt > 1 {
                        tracing::warn!(what, attempt, "metadata write durable after retries");
                    }
                    return Ok(attempt);
                }
                Err(e) => {
                    tracing::warn!(what, attempt, error = %e.full_message(), "metadata write failed; retrying");
                    last = Some(e);
                }
            }
        }
        let last = last.map(|e| e.full_message()).unwrap_or_default();
        Err(err(
            ErrorKind::Fenced,
            format!(
                "{what}: not durable after {DURABLE_ATTEMPTS} attempts (last: {last}); whether it \
                 reached the metadata store is unknown, so the subsystem is fenced until an IPL \
                 or reset rebuilds its state from what is durable"
            ),
        ))
    }
}

/// Maps a store error into the controller's error kinds.
pub(crate) fn store_err(what: &str, e: volume_store::StoreError) -> ControllerError {
    use volume_store::ErrorKind as K;
    let kind = match e.kind() {
        K::OutOfRange => ErrorKind::OutOfRange,
        K::NoSpace => ErrorKind::NoSpace,
        K::TooManyFiles => ErrorKind::Limit,
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
