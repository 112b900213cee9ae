//! Device geometry for the simulated subsystem: 3390 (CKD) models and FB volumes,
//! CCHH <-> linear track numbers, track extents and normalized extent sets, and the
//! one function that splits a byte range into per-track pieces.
//!
//! This crate is pure: no I/O, no allocation beyond extent vectors. Everything
//! above it (stores, tables, engine, controller) addresses data by [`TrackNo`].
//!
//! Invariants owned here:
//! - a [`Geometry`] always has `track_size_bytes` a power-of-two multiple of 4 KiB
//!   (FB) or exactly [`CKD_TRACK_BYTES`] (3390), and at least one track;
//! - an [`Extent`] has `first <= last`;
//! - an [`ExtentSet`] is sorted, non-overlapping and non-adjacent (merged), so two
//!   sets covering the same tracks compare equal.
#![deny(missing_docs)]

mod extent;
mod model;
mod split;

pub use extent::{Extent, ExtentSet};
pub use model::{
    Cchh, CkdModel, DeviceModel, Geometry, GeometryError, CKD_TRACK_BYTES, FB_TRACK_BYTES_DEFAULT,
    FB_TRACK_BYTES_MAX, FB_TRACK_BYTES_MIN, MAX_3390A_CYLINDERS, MAX_BASE_CYLINDERS,
    MULTI_CYLINDER_UNIT, TRACKS_PER_CYLINDER,
};
pub use split::{split_range, SplitRange, TrackPiece};

/// A linear track number: `cylinder * 15 + head` on 3390, `byte_offset / track_size` on FB.
pub type TrackNo = u64;
