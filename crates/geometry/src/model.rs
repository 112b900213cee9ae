//! Device models, [`Geometry`] and CCHH addressing.
//!
//! Invariants owned here:
//! - a [`Geometry`] is only built by [`Geometry::new`], which validates its model:
//!   3390 cylinder counts in `1..=1_182_006`, FB track sizes a power of two in
//!   4 KiB..=1 MiB, FB sizes a non-zero multiple of the track size;
//! - `tracks() * track_size_bytes() == size_bytes()` and never overflows `u64`;
//! - a [`Cchh`] produced by [`Geometry::cchh`] has `head < 15` and `cyl < cylinders`.
//!
//! # 3390-A (EAV) choice
//! A 3390-A accepts any cylinder count from 1 to [`MAX_3390A_CYLINDERS`]
//! (1,182,006 = 1,062 x 1,113). z/OS allocates data sets in the
//! cylinder-managed space (cylinders at or above 65,536) in multi-cylinder units
//! of [`MULTI_CYLINDER_UNIT`] (21) cylinders; that is an allocation rule for the
//! layers above, not a constraint on the volume size, so the volume size is not
//! rounded. Cylinder numbers above 65,535 use the 28-bit EAV encoding in
//! [`Cchh`]'s text form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::extent::{Extent, ExtentSet};
use crate::TrackNo;

/// Bytes in one emulated 3390 track (56 KiB = 14 x 4 KiB, holds the 56,664-byte
/// maximum user data of a real 3390 track).
pub const CKD_TRACK_BYTES: u64 = 57_344;
/// Tracks (heads) per 3390 cylinder.
pub const TRACKS_PER_CYLINDER: u64 = 15;
/// Largest cylinder count of a 3390-A (extended address volume).
pub const MAX_3390A_CYLINDERS: u32 = 1_182_006;
/// Cylinders of a 3390-54, the largest non-EAV model; EAV cylinders lie above it.
pub const MAX_BASE_CYLINDERS: u32 = 65_520;
/// z/OS allocation unit (cylinders) in the cylinder-managed space of an EAV.
pub const MULTI_CYLINDER_UNIT: u32 = 21;
/// Smallest FB track size (4 KiB).
pub const FB_TRACK_BYTES_MIN: u64 = 4 * 1024;
/// Largest FB track size (1 MiB).
pub const FB_TRACK_BYTES_MAX: u64 = 1024 * 1024;
/// FB track size used when the model string names none (64 KiB).
pub const FB_TRACK_BYTES_DEFAULT: u64 = 64 * 1024;

/// Errors from building geometries and parsing addresses; each names the bad input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// A model string that names no known device model.
    #[error("unknown device model `{text}` (expected 3390-1|3|9|27|54, 3390-A:<cylinders> or fb:<size>[:<track-size>])")]
    UnknownModel {
        /// The text that was parsed.
        text: String,
    },
    /// A 3390-A cylinder count outside `1..=1_182_006`.
    #[error("3390-A cylinder count {cylinders} out of range 1..={MAX_3390A_CYLINDERS}")]
    BadCylinderCount {
        /// The rejected count.
        cylinders: u64,
    },
    /// A size text that is not a number with an optional K/M/G/T suffix.
    #[error("bad size `{text}`: {reason}")]
    BadSize {
        /// The text that was parsed.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An FB track size that is not a power of two in 4 KiB..=1 MiB.
    #[error("FB track size {track_size_bytes} bytes is not a power of two in 4096..=1048576")]
    BadTrackSize {
        /// The rejected track size.
        track_size_bytes: u64,
    },
    /// An FB size that is zero or not a multiple of the track size.
    #[error("FB size {size_bytes} bytes is not a non-zero multiple of the track size {track_size_bytes}")]
    SizeNotMultiple {
        /// The rejected size.
        size_bytes: u64,
        /// The track size it must be a multiple of.
        track_size_bytes: u64,
    },
    /// A CCHH text that is not 8 hex digits.
    #[error("bad CCHH `{text}`: {reason}")]
    BadCchh {
        /// The text that was parsed.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A head number of 15 or more.
    #[error("head {head} out of range (a 3390 cylinder has heads 0..=14)")]
    HeadOutOfRange {
        /// The rejected head.
        head: u32,
    },
    /// A cylinder at or past the end of the volume.
    #[error("cylinder {cyl} past the end of the volume ({cylinders} cylinders)")]
    CylinderPastEnd {
        /// The rejected cylinder.
        cyl: u32,
        /// Cylinders of the volume.
        cylinders: u32,
    },
    /// A track at or past the end of the volume.
    #[error("track {track} past the end of the volume ({tracks} tracks)")]
    TrackPastEnd {
        /// The rejected track.
        track: TrackNo,
        /// Tracks of the volume.
        tracks: u64,
    },
    /// A text extent whose first track comes after its last.
    #[error("extent `{text}` is reversed (first track after last)")]
    ReversedExtent {
        /// The text that was parsed.
        text: String,
    },
    /// A text extent that is not `FIRST-LAST`.
    #[error("bad extent `{text}`: {reason}")]
    BadExtent {
        /// The text that was parsed.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A byte range that ends past the volume or overflows.
    #[error("byte range offset {offset} length {len} is outside the volume ({size_bytes} bytes)")]
    RangePastEnd {
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
        /// Size of the volume.
        size_bytes: u64,
    },
    /// A CKD-only operation (CCHH) asked of an FB volume.
    #[error("CCHH addressing asked of an FB volume")]
    NotCkd,
}

/// One of the fixed-size 3390 models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CkdModel {
    /// 3390-1: 1,113 cylinders.
    M1,
    /// 3390-3: 3,339 cylinders.
    M3,
    /// 3390-9: 10,017 cylinders.
    M9,
    /// 3390-27: 32,760 cylinders.
    M27,
    /// 3390-54: 65,520 cylinders.
    M54,
}

impl CkdModel {
    /// Cylinders of this model.
    pub fn cylinders(self) -> u32 {
        match self {
            CkdModel::M1 => 1_113,
            CkdModel::M3 => 3_339,
            CkdModel::M9 => 10_017,
            CkdModel::M27 => 32_760,
            CkdModel::M54 => 65_520,
        }
    }

    /// The model number as printed after `3390-`.
    pub fn number(self) -> u32 {
        match self {
            CkdModel::M1 => 1,
            CkdModel::M3 => 3,
            CkdModel::M9 => 9,
            CkdModel::M27 => 27,
            CkdModel::M54 => 54,
        }
    }
}

/// A device model, written `3390-1|3|9|27|54`, `3390-A:<cylinders>` or
/// `fb:<size>[:<track-size>]` (sizes in bytes or with a binary K/M/G/T suffix).
///
/// Parsing checks only the syntax and the model's own ranges; [`Geometry::new`]
/// checks the rest (FB size a multiple of the track size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceModel {
    /// A fixed-size 3390 model.
    Ckd3390(CkdModel),
    /// A 3390-A (extended address volume) with a configured cylinder count.
    Ckd3390A {
        /// Cylinders, `1..=1_182_006`.
        cylinders: u32,
    },
    /// A fixed-block volume.
    Fb {
        /// Volume size in bytes.
        size_bytes: u64,
        /// Track ("grain") size in bytes.
        track_size_bytes: u64,
    },
}

/// Parses `123`, `64K`, `512M`, `1G`, `2T` (binary multiples; `KiB` etc. also accepted).
fn parse_size(text: &str) -> Result<u64, GeometryError> {
    let bad = |reason| GeometryError::BadSize {
        text: text.to_string(),
        reason,
    };
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(bad("expected a number"));
    }
    let value: u64 = num.parse().map_err(|_| bad("number too large"))?;
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KIB" => 10,
        "M" | "MIB" => 20,
        "G" | "GIB" => 30,
        "T" | "TIB" => 40,
        _ => return Err(bad("unknown suffix (expected K, M, G or T)")),
    };
    value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| bad("size overflows 64 bits"))
}

/// Writes a byte count with the largest binary suffix that divides it exactly.
fn format_size(bytes: u64) -> String {
    for (shift, suffix) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        let unit = 1u64 << shift;
        if bytes != 0 && bytes % unit == 0 {
            return format!("{}{}", bytes / unit, suffix);
        }
    }
    bytes.to_string()
}

fn check_fb_track_size(track_size_bytes: u64) -> Result<(), GeometryError> {
    if track_size_bytes.is_power_of_two()
        && (FB_TRACK_BYTES_MIN..=FB_TRACK_BYTES_MAX).contains(&track_size_bytes)
    {
        Ok(())
    } else {
        Err(GeometryError::BadTrackSize { track_size_bytes })
    }
}

impl FromStr for DeviceModel {
    type Err = GeometryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let unknown = || GeometryError::UnknownModel {
            text: text.to_string(),
        };
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("fb:").or_else(|| t.strip_prefix("FB:")) {
            let (size, track) = match rest.split_once(':') {
                Some((size, track)) => (size, Some(track)),
                None => (rest, None),
            };
            let size_bytes = parse_size(size)?;
            let track_size_bytes = match track {
                Some(track) => parse_size(track)?,
                None => FB_TRACK_BYTES_DEFAULT,
            };
            check_fb_track_size(track_size_bytes)?;
            if size_bytes == 0 || size_bytes % track_size_bytes != 0 {
                return Err(GeometryError::SizeNotMultiple {
                    size_bytes,
                    track_size_bytes,
                });
            }
            return Ok(DeviceModel::Fb {
                size_bytes,
                track_size_bytes,
            });
        }
        let rest = t.strip_prefix("3390-").ok_or_else(unknown)?;
        if let Some(cyls) = rest.strip_prefix("A:").or_else(|| rest.strip_prefix("a:")) {
            let cylinders: u64 = cyls.trim().parse().map_err(|_| unknown())?;
            if cylinders == 0 || cylinders > u64::from(MAX_3390A_CYLINDERS) {
                return Err(GeometryError::BadCylinderCount { cylinders });
            }
            // In range, so it fits u32.
            let cylinders = u32::try_from(cylinders)
                .map_err(|_| GeometryError::BadCylinderCount { cylinders })?;
            return Ok(DeviceModel::Ckd3390A { cylinders });
        }
        let model = match rest {
            "1" => CkdModel::M1,
            "3" => CkdModel::M3,
            "9" => CkdModel::M9,
            "27" => CkdModel::M27,
            "54" => CkdModel::M54,
            _ => return Err(unknown()),
        };
        Ok(DeviceModel::Ckd3390(model))
    }
}

impl fmt::Display for DeviceModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DeviceModel::Ckd3390(m) => write!(f, "3390-{}", m.number()),
            DeviceModel::Ckd3390A { cylinders } => write!(f, "3390-A:{cylinders}"),
            DeviceModel::Fb {
                size_bytes,
                track_size_bytes,
            } => {
                write!(f, "fb:{}", format_size(size_bytes))?;
                if track_size_bytes != FB_TRACK_BYTES_DEFAULT {
                    write!(f, ":{}", format_size(track_size_bytes))?;
                }
                Ok(())
            }
        }
    }
}

impl TryFrom<String> for DeviceModel {
    type Error = GeometryError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DeviceModel> for String {
    fn from(m: DeviceModel) -> String {
        m.to_string()
    }
}

/// A 3390 track address: cylinder (up to 28 bits on an EAV) and head (0..=14).
///
/// Text form: 8 hex digits `CCCCcccH`, as z/OS prints EAV track addresses: the
/// low 16 bits of the cylinder, then its high 12 bits, then the head. For
/// cylinders below 65,536 this reads `CCCC000H`, which is also the classic
/// `CCCCHHHH` form with a head below 15, so the two forms never disagree.
///
/// Disambiguation rule: every 8-digit text is read as `CCCCcccH`. A classic
/// `CCCCHHHH` with `HHHH` of 15 or more is not a valid head: `000F` is rejected
/// as head 15; anything else (`0010`..) has non-zero middle digits, which are read
/// as high cylinder bits, giving a cylinder of 65,536 or more; on a volume of
/// up to 65,520 cylinders [`Geometry::track_of`] rejects it as past the end, and
/// on an EAV it addresses that EAV cylinder (as z/OS would read it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cchh {
    /// Cylinder number.
    pub cyl: u32,
    /// Head (track within the cylinder), `0..=14`.
    pub head: u8,
}

impl fmt::Display for Cchh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let low = self.cyl & 0xFFFF;
        let high = (self.cyl >> 16) & 0xFFF;
        write!(f, "{low:04X}{high:03X}{:X}", self.head & 0xF)
    }
}

impl FromStr for Cchh {
    type Err = GeometryError;

    /// Parses `CCCCcccH` (see the type docs); checks the head but not any volume.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason| GeometryError::BadCchh {
            text: text.to_string(),
            reason,
        };
        let t = text.trim();
        if t.len() != 8 {
            return Err(bad("expected 8 hex digits CCCCcccH"));
        }
        if !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("not hexadecimal"));
        }
        let v = u32::from_str_radix(t, 16).map_err(|_| bad("not hexadecimal"))?;
        let head = v & 0xF;
        if u64::from(head) >= TRACKS_PER_CYLINDER {
            return Err(GeometryError::HeadOutOfRange { head });
        }
        let low = v >> 16;
        let high = (v >> 4) & 0xFFF;
        Ok(Cchh {
            cyl: (high << 16) | low,
            head: head as u8,
        })
    }
}

/// The shape of a volume: model, track count and track size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "DeviceModel", into = "DeviceModel")]
pub struct Geometry {
    model: DeviceModel,
    tracks: u64,
    track_size_bytes: u64,
    /// Cylinders for 3390, 0 for FB.
    cylinders: u32,
}

impl TryFrom<DeviceModel> for Geometry {
    type Error = GeometryError;
    fn try_from(m: DeviceModel) -> Result<Self, Self::Error> {
        Geometry::new(m)
    }
}

impl From<Geometry> for DeviceModel {
    fn from(g: Geometry) -> DeviceModel {
        g.model
    }
}

impl FromStr for Geometry {
    type Err = GeometryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Geometry::new(s.parse()?)
    }
}

impl fmt::Display for Geometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.model.fmt(f)
    }
}

impl Geometry {
    /// Builds the geometry of `model`, validating it (a model built by hand rather
    /// than parsed may hold any numbers).
    pub fn new(model: DeviceModel) -> Result<Geometry, GeometryError> {
        let (cylinders, tracks, track_size_bytes) = match model {
            DeviceModel::Ckd3390(m) => {
                let c = m.cylinders();
                (c, u64::from(c) * TRACKS_PER_CYLINDER, CKD_TRACK_BYTES)
            }
            DeviceModel::Ckd3390A { cylinders } => {
                if cylinders == 0 || cylinders > MAX_3390A_CYLINDERS {
                    return Err(GeometryError::BadCylinderCount {
                        cylinders: cylinders.into(),
                    });
                }
                (
                    cylinders,
                    u64::from(cylinders) * TRACKS_PER_CYLINDER,
                    CKD_TRACK_BYTES,
                )
            }
            DeviceModel::Fb {
                size_bytes,
                track_size_bytes,
            } => {
                check_fb_track_size(track_size_bytes)?;
                if size_bytes == 0 || size_bytes % track_size_bytes != 0 {
                    return Err(GeometryError::SizeNotMultiple {
                        size_bytes,
                        track_size_bytes,
                    });
                }
                (0, size_bytes / track_size_bytes, track_size_bytes)
            }
        };
        Ok(Geometry {
            model,
            tracks,
            track_size_bytes,
            cylinders,
        })
    }

    /// The model this geometry was built from.
    pub fn model(&self) -> DeviceModel {
        self.model
    }

    /// Number of tracks (always at least one).
    pub fn tracks(&self) -> u64 {
        self.tracks
    }

    /// Bytes per track.
    pub fn track_size_bytes(&self) -> u64 {
        self.track_size_bytes
    }

    /// Addressable bytes: `tracks() * track_size_bytes()`.
    pub fn size_bytes(&self) -> u64 {
        self.tracks * self.track_size_bytes
    }

    /// True for 3390 (CKD) models, false for FB.
    pub fn is_ckd(&self) -> bool {
        self.cylinders != 0
    }

    /// Cylinders of a 3390 volume, `None` for FB.
    pub fn cylinders(&self) -> Option<u32> {
        self.is_ckd().then_some(self.cylinders)
    }

    /// The whole volume as one extent.
    pub fn full_extent(&self) -> Extent {
        Extent {
            first: 0,
            last: self.tracks - 1,
        }
    }

    /// The CCHH of `track` (3390 only; `track` must be inside the volume).
    pub fn cchh(&self, track: TrackNo) -> Result<Cchh, GeometryError> {
        if !self.is_ckd() {
            return Err(GeometryError::NotCkd);
        }
        self.check_track(track)?;
        // track < tracks <= 1_182_006 * 15, so the cylinder fits u32.
        let cyl = (track / TRACKS_PER_CYLINDER) as u32;
        let head = (track % TRACKS_PER_CYLINDER) as u8;
        Ok(Cchh { cyl, head })
    }

    /// The linear track of `cchh` (3390 only; head < 15, cylinder inside the volume).
    pub fn track_of(&self, cchh: Cchh) -> Result<TrackNo, GeometryError> {
        if !self.is_ckd() {
            return Err(GeometryError::NotCkd);
        }
        if u64::from(cchh.head) >= TRACKS_PER_CYLINDER {
            return Err(GeometryError::HeadOutOfRange {
                head: cchh.head.into(),
            });
        }
        if cchh.cyl >= self.cylinders {
            return Err(GeometryError::CylinderPastEnd {
                cyl: cchh.cyl,
                cylinders: self.cylinders,
            });
        }
        Ok(u64::from(cchh.cyl) * TRACKS_PER_CYLINDER + u64::from(cchh.head))
    }

    /// Error unless `track` is inside the volume.
    pub fn check_track(&self, track: TrackNo) -> Result<(), GeometryError> {
        if track < self.tracks {
            Ok(())
        } else {
            Err(GeometryError::TrackPastEnd {
                track,
                tracks: self.tracks,
            })
        }
    }

    /// Error unless the byte range `offset..offset+len` lies inside the volume
    /// (an empty range at `offset == size_bytes()` is inside).
    pub fn check_range(&self, offset: u64, len: u64) -> Result<(), GeometryError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size_bytes() => Ok(()),
            _ => Err(GeometryError::RangePastEnd {
                offset,
                len,
                size_bytes: self.size_bytes(),
            }),
        }
    }

    /// The tracks touched by a non-empty byte range inside the volume, `None` if
    /// the range is empty. Errors as [`Geometry::check_range`].
    pub fn extent_of_range(&self, offset: u64, len: u64) -> Result<Option<Extent>, GeometryError> {
        self.check_range(offset, len)?;
        if len == 0 {
            return Ok(None);
        }
        let first = offset / self.track_size_bytes;
        let last = (offset + len - 1) / self.track_size_bytes;
        Ok(Some(Extent { first, last }))
    }

    /// Parses one track address: `CCCCcccH` for 3390, a decimal track number for FB.
    pub fn parse_track(&self, text: &str) -> Result<TrackNo, GeometryError> {
        if self.is_ckd() {
            self.track_of(text.parse()?)
        } else {
            let t = text.trim();
            let track: u64 = t.parse().map_err(|_| GeometryError::BadExtent {
                text: text.to_string(),
                reason: "expected a decimal track number",
            })?;
            self.check_track(track)?;
            Ok(track)
        }
    }

    /// Writes one track address: `CCCCcccH` for 3390, decimal for FB.
    pub fn format_track(&self, track: TrackNo) -> String {
        match self.cchh(track) {
            Ok(c) => c.to_string(),
            Err(_) => track.to_string(),
        }
    }

    /// Parses `FIRST-LAST` (CCHH-CCHH for 3390, decimal tracks for FB), or a single
    /// track address for a one-track extent. Errors name the bad part: syntax,
    /// head >= 15, a cylinder or track past the end, or a reversed range.
    pub fn parse_extent(&self, text: &str) -> Result<Extent, GeometryError> {
        let t = text.trim();
        let (a, b) = match t.split_once('-') {
            Some((a, b)) => (a, b),
            None => (t, t),
        };
        if a.trim().is_empty() || b.trim().is_empty() {
            return Err(GeometryError::BadExtent {
                text: text.to_string(),
                reason: "expected FIRST-LAST",
            });
        }
        let first = self.parse_track(a)?;
        let last = self.parse_track(b)?;
        if first > last {
            return Err(GeometryError::ReversedExtent {
                text: text.to_string(),
            });
        }
        Ok(Extent { first, last })
    }

    /// Writes `FIRST-LAST` in this volume's address form.
    pub fn format_extent(&self, extent: &Extent) -> String {
        format!(
            "{}-{}",
            self.format_track(extent.first),
            self.format_track(extent.last)
        )
    }

    /// Parses a comma-separated list of extents (empty text is the empty set).
    pub fn parse_extent_set(&self, text: &str) -> Result<ExtentSet, GeometryError> {
        let mut set = ExtentSet::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            set.insert(self.parse_extent(part)?);
        }
        Ok(set)
    }

    /// Writes the extents of `set` comma-separated (empty set: empty string).
    pub fn format_extent_set(&self, set: &ExtentSet) -> String {
        let parts: Vec<String> = set
            .extents()
            .iter()
            .map(|e| self.format_extent(e))
            .collect();
        parts.join(",")
    }
}
