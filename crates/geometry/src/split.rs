//! Splitting a byte range into per-track pieces: the one place this is done.
//!
//! Invariants: the pieces of `split_range(ts, offset, len)` are in ascending track
//! order, each non-empty and inside one track, and they tile `offset..offset+len`
//! exactly (piece `i + 1` starts where piece `i` ends, in both the volume and the
//! caller's buffer).

use std::ops::Range;

use crate::TrackNo;

/// One track's share of a byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrackPiece {
    /// The track.
    pub track: TrackNo,
    /// Where the piece starts inside the track.
    pub offset_in_track: u64,
    /// Bytes in the piece (non-zero, at most the track size).
    pub len: u64,
    /// Where the piece starts in the caller's buffer (bytes from the range start).
    pub buf_offset: u64,
}

impl TrackPiece {
    /// True if the piece is the whole track.
    pub fn is_whole_track(&self, track_size_bytes: u64) -> bool {
        self.offset_in_track == 0 && self.len == track_size_bytes
    }

    /// The piece's bytes in the caller's buffer, as an index range.
    pub fn buf_range(&self) -> Range<usize> {
        let start = self.buf_offset as usize;
        start..start + self.len as usize
    }

    /// The piece's bytes inside its track, as an index range.
    pub fn track_range(&self) -> Range<usize> {
        let start = self.offset_in_track as usize;
        start..start + self.len as usize
    }

    /// The piece's byte offset in the volume.
    pub fn volume_offset(&self, track_size_bytes: u64) -> u64 {
        self.track * track_size_bytes + self.offset_in_track
    }
}

/// Iterator returned by [`split_range`].
#[derive(Debug, Clone)]
pub struct SplitRange {
    track_size_bytes: u64,
    /// Next volume byte to cover.
    pos: u64,
    /// Bytes still to cover.
    remaining: u64,
    buf_offset: u64,
}

impl Iterator for SplitRange {
    type Item = TrackPiece;

    fn next(&mut self) -> Option<TrackPiece> {
        if self.remaining == 0 || self.track_size_bytes == 0 {
            return None;
        }
        let track = self.pos / self.track_size_bytes;
        let offset_in_track = self.pos % self.track_size_bytes;
        let len = (self.track_size_bytes - offset_in_track).min(self.remaining);
        let piece = TrackPiece {
            track,
            offset_in_track,
            len,
            buf_offset: self.buf_offset,
        };
        self.remaining -= len;
        self.buf_offset += len;
        self.pos = self.pos.wrapping_add(len);
        Some(piece)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.remaining == 0 || self.track_size_bytes == 0 {
            return (0, Some(0));
        }
        let first = self.pos / self.track_size_bytes;
        let last_byte = self.pos.saturating_add(self.remaining - 1);
        let n = usize::try_from(last_byte / self.track_size_bytes - first + 1).ok();
        (n.unwrap_or(usize::MAX), n)
    }
}

/// Splits the byte range `offset..offset+len` into per-track pieces.
///
/// Callers check the range against the volume first
/// ([`crate::Geometry::check_range`]). If `offset + len` would overflow `u64`,
/// the range is cut at `u64::MAX`; a zero `track_size_bytes` yields nothing.
pub fn split_range(track_size_bytes: u64, offset: u64, len: u64) -> SplitRange {
    let remaining = len.min(u64::MAX - offset);
    SplitRange {
        track_size_bytes,
        pos: offset,
        remaining,
        buf_offset: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_track_boundaries() {
        let pieces: Vec<_> = split_range(100, 250, 260).collect();
        assert_eq!(
            pieces,
            vec![
                TrackPiece {
                    track: 2,
                    offset_in_track: 50,
                    len: 50,
                    buf_offset: 0
                },
                TrackPiece {
                    track: 3,
                    offset_in_track: 0,
                    len: 100,
                    buf_offset: 50
                },
                TrackPiece {
                    track: 4,
                    offset_in_track: 0,
                    len: 100,
                    buf_offset: 150
                },
                TrackPiece {
                    track: 5,
                    offset_in_track: 0,
                    len: 10,
                    buf_offset: 250
                },
            ]
        );
        assert!(pieces[1].is_whole_track(100));
        assert_eq!(split_range(100, 250, 260).size_hint(), (4, Some(4)));
    }

    #[test]
    fn empty_range_yields_nothing() {
        assert_eq!(split_range(4096, 12, 0).count(), 0);
        assert_eq!(split_range(0, 12, 10).count(), 0);
    }
}
