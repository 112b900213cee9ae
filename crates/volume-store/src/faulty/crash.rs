//! The volatile write cache model of `FaultyStore`: pending (unflushed) writes
//! with the pre-images needed to rebuild the durable image after a power loss.
//!
//! Invariant: undoing every pending entry in reverse order (restoring its
//! pre-images) turns the inner store back into its state at the last successful
//! flush, provided nothing else writes to the inner store.

use geometry::{Extent, TrackNo};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::StoreError;
use crate::store::TrackStore;

/// Sector size for torn writes.
pub const SECTOR_BYTES: u64 = 512;

/// How unflushed writes fare in a simulated power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every pending write and discard is lost.
    DropAll,
    /// Every pending write survives (a process crash: the OS kept them).
    KeepAll,
    /// The first n pending entries survive, in order; the rest are lost.
    KeepPrefix(usize),
    /// Each pending entry independently survives or not (seeded).
    RandomSubset {
        /// Seed of the choice.
        seed: u64,
    },
    /// Each pending write lands whole, not at all, or as a prefix of its
    /// 512-byte sectors (seeded); discards land whole or not at all.
    Torn {
        /// Seed of the choice.
        seed: u64,
    },
}

/// What a pending entry did to the inner store.
#[derive(Debug, Clone)]
pub(crate) enum PendingOp {
    Write { offset: u64, data: Vec<u8> },
    Discard { offset: u64, len: u64 },
}

/// The old contents of each touched track (`None`: it was unallocated).
pub(crate) type PreImage = Vec<(TrackNo, Option<Vec<u8>>)>;

/// One unflushed operation and the contents of the tracks it touched before it.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) op: PendingOp,
    pub(crate) pre: PreImage,
}

/// Reads the pre-image of `tracks` from `store`.
pub(crate) fn capture(store: &dyn TrackStore, tracks: Extent) -> Result<PreImage, StoreError> {
    let allocated = store.allocated(tracks)?;
    let ts = store.geometry().track_size_bytes() as usize;
    let mut pre = Vec::new();
    for t in tracks.first..=tracks.last {
        if allocated.contains(t) {
            let mut buf = vec![0u8; ts];
            store.read_track(t, &mut buf)?;
            pre.push((t, Some(buf)));
        } else {
            pre.push((t, None));
        }
    }
    Ok(pre)
}

/// Bytes of a write that land: all, none, or a whole number of its sectors
/// (sector boundaries are at multiples of 512 in the volume).
fn torn_len(offset: u64, len: u64, rng: &mut ChaCha8Rng) -> u64 {
    let end = offset + len;
    let mut cuts = vec![0u64];
    let mut b = (offset / SECTOR_BYTES + 1) * SECTOR_BYTES;
    while b < end {
        cuts.push(b - offset);
        b += SECTOR_BYTES;
    }
    cuts.push(len);
    match rng.random_range(0..3u8) {
        0 => len,
        1 => 0,
        _ => cuts[rng.random_range(0..cuts.len())],
    }
}

/// Rewrites `target` (holding the current image) into the crash image.
pub(crate) fn apply_crash(
    target: &dyn TrackStore,
    pending: &[Pending],
    mode: CrashMode,
) -> Result<(), StoreError> {
    let ts = target.geometry().track_size_bytes();
    for p in pending.iter().rev() {
        for (track, old) in &p.pre {
            match old {
                Some(bytes) => target.write_track(*track, bytes)?,
                None => target.discard(track * ts, ts)?,
            }
        }
    }
    let mut rng = match mode {
        CrashMode::RandomSubset { seed } | CrashMode::Torn { seed } => {
            ChaCha8Rng::seed_from_u64(seed)
        }
        _ => ChaCha8Rng::seed_from_u64(0),
    };
    for (i, p) in pending.iter().enumerate() {
        let fraction_len = |len: u64, rng: &mut ChaCha8Rng, offset: u64| match mode {
            CrashMode::DropAll => 0,
            CrashMode::KeepAll => len,
            CrashMode::KeepPrefix(n) => {
                if i < n {
                    len
                } else {
                    0
                }
            }
            CrashMode::RandomSubset { .. } => {
                if rng.random_bool(0.5) {
                    len
                } else {
                    0
                }
            }
            CrashMode::Torn { .. } => torn_len(offset, len, rng),
        };
        match &p.op {
            PendingOp::Write { offset, data } => {
                let n = fraction_len(data.len() as u64, &mut rng, *offset);
                if n > 0 {
                    target.write_at(*offset, &data[..n as usize])?;
                }
            }
            PendingOp::Discard { offset, len } => {
                // A discard is not torn: whole or nothing.
                let n = fraction_len(*len, &mut rng, *offset);
                if n == *len && n > 0 {
                    target.discard(*offset, *len)?;
                }
            }
        }
    }
    Ok(())
}
