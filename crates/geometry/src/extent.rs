//! Track extents and normalized extent sets.
//!
//! Invariants owned here:
//! - an [`Extent`] is inclusive; one with `first > last` is *reversed* and counts as
//!   empty everywhere (fields are public so callers can write literals; the
//!   parsers in [`crate::Geometry`] never produce reversed extents);
//! - an [`ExtentSet`] holds its extents sorted by `first`, with no two overlapping
//!   or adjacent (`a.last + 1 < b.first`) and none reversed, so sets that cover the
//!   same tracks are equal (`==`) and serialize to the same bytes. Every
//!   constructor and operation keeps this, including deserialization (which
//!   normalizes whatever list it is given).

use serde::{Deserialize, Serialize};

use crate::TrackNo;

/// An inclusive range of tracks `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Extent {
    /// First track.
    pub first: TrackNo,
    /// Last track (inclusive).
    pub last: TrackNo,
}

impl Extent {
    /// `first..=last`; `None` if reversed.
    pub fn new(first: TrackNo, last: TrackNo) -> Option<Extent> {
        (first <= last).then_some(Extent { first, last })
    }

    /// The one-track extent `track..=track`.
    pub fn single(track: TrackNo) -> Extent {
        Extent {
            first: track,
            last: track,
        }
    }

    /// True if `first > last` (an empty extent).
    pub fn is_reversed(&self) -> bool {
        self.first > self.last
    }

    /// Number of tracks (0 if reversed; saturates at `u64::MAX` for `0..=u64::MAX`).
    pub fn track_count(&self) -> u64 {
        if self.is_reversed() {
            0
        } else {
            (self.last - self.first).saturating_add(1)
        }
    }

    /// True if `track` lies in the extent.
    pub fn contains(&self, track: TrackNo) -> bool {
        self.first <= track && track <= self.last
    }

    /// The tracks in both extents, if any.
    pub fn intersect(&self, other: &Extent) -> Option<Extent> {
        Extent::new(self.first.max(other.first), self.last.min(other.last))
    }
}

/// A set of tracks kept as sorted, merged extents (see the module invariants).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "Vec<Extent>", into = "Vec<Extent>")]
pub struct ExtentSet {
    extents: Vec<Extent>,
}

impl From<Vec<Extent>> for ExtentSet {
    fn from(v: Vec<Extent>) -> Self {
        v.into_iter().collect()
    }
}

impl From<ExtentSet> for Vec<Extent> {
    fn from(s: ExtentSet) -> Self {
        s.extents
    }
}

impl From<Extent> for ExtentSet {
    fn from(e: Extent) -> Self {
        let mut s = ExtentSet::new();
        s.insert(e);
        s
    }
}

impl FromIterator<Extent> for ExtentSet {
    fn from_iter<I: IntoIterator<Item = Extent>>(iter: I) -> Self {
        let mut v: Vec<Extent> = iter.into_iter().filter(|e| !e.is_reversed()).collect();
        v.sort_unstable();
        let mut out: Vec<Extent> = Vec::with_capacity(v.len());
        for e in v {
            match out.last_mut() {
                Some(prev) if e.first <= prev.last.saturating_add(1) => {
                    prev.last = prev.last.max(e.last);
                }
                _ => out.push(e),
            }
        }
        ExtentSet { extents: out }
    }
}

impl ExtentSet {
    /// The empty set.
    pub fn new() -> ExtentSet {
        ExtentSet {
            extents: Vec::new(),
        }
    }

    /// All tracks `0..tracks` (empty if `tracks == 0`).
    pub fn full(tracks: u64) -> ExtentSet {
        if tracks == 0 {
            ExtentSet::new()
        } else {
            ExtentSet {
                extents: vec![Extent {
                    first: 0,
                    last: tracks - 1,
                }],
            }
        }
    }

    /// The normalized extents, sorted and merged.
    pub fn extents(&self) -> &[Extent] {
        &self.extents
    }

    /// True if the set holds no track.
    pub fn is_empty(&self) -> bool {
        self.extents.is_empty()
    }

    /// Number of tracks in the set (saturating).
    pub fn track_count(&self) -> u64 {
        self.extents
            .iter()
            .fold(0u64, |n, e| n.saturating_add(e.track_count()))
    }

    /// True if `track` is in the set.
    pub fn contains(&self, track: TrackNo) -> bool {
        // First extent whose last >= track.
        let i = self.extents.partition_point(|e| e.last < track);
        self.extents.get(i).is_some_and(|e| e.first <= track)
    }

    /// True if every track of `extent` is in the set (a reversed extent: true).
    pub fn contains_extent(&self, extent: &Extent) -> bool {
        if extent.is_reversed() {
            return true;
        }
        let i = self.extents.partition_point(|e| e.last < extent.first);
        self.extents
            .get(i)
            .is_some_and(|e| e.first <= extent.first && extent.last <= e.last)
    }

    /// True if the sets share a track.
    pub fn overlaps(&self, other: &ExtentSet) -> bool {
        !self.intersection(other).is_empty()
    }

    /// True if every track of `self` is in `other`.
    pub fn is_subset(&self, other: &ExtentSet) -> bool {
        self.extents.iter().all(|e| other.contains_extent(e))
    }

    /// Adds the tracks of `extent` (a reversed extent adds nothing).
    pub fn insert(&mut self, extent: Extent) {
        if extent.is_reversed() {
            return;
        }
        // Extents entirely before (and not adjacent to) the new one stay.
        let start = self
            .extents
            .partition_point(|e| e.last.saturating_add(1) < extent.first);
        let mut merged = extent;
        let mut end = start;
        while let Some(e) = self.extents.get(end) {
            if e.first > merged.last.saturating_add(1) {
                break;
            }
            merged.first = merged.first.min(e.first);
            merged.last = merged.last.max(e.last);
            end += 1;
        }
        self.extents.splice(start..end, std::iter::once(merged));
    }

    /// Removes the tracks of `extent`.
    pub fn remove(&mut self, extent: Extent) {
        *self = self.difference(&ExtentSet::from(extent));
    }

    /// Tracks in either set.
    pub fn union(&self, other: &ExtentSet) -> ExtentSet {
        self.extents
            .iter()
            .chain(other.extents.iter())
            .copied()
            .collect()
    }

    /// Tracks in both sets.
    pub fn intersection(&self, other: &ExtentSet) -> ExtentSet {
        let (a, b) = (&self.extents, &other.extents);
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < a.len() && j < b.len() {
            if let Some(x) = a[i].intersect(&b[j]) {
                out.push(x);
            }
            if a[i].last < b[j].last {
                i += 1;
            } else {
                j += 1;
            }
        }
        // Pieces of disjoint, sorted inputs are sorted and non-adjacent already.
        ExtentSet { extents: out }
    }

    /// Tracks in `self` but not in `other`.
    pub fn difference(&self, other: &ExtentSet) -> ExtentSet {
        let mut out = Vec::new();
        let b = &other.extents;
        let mut j = 0;
        for &e in &self.extents {
            let mut cur = e;
            // Skip other's extents that end before this one starts.
            while j < b.len() && b[j].last < cur.first {
                j += 1;
            }
            let mut k = j;
            let mut alive = true;
            while k < b.len() && b[k].first <= cur.last {
                let cut = b[k];
                if cut.first > cur.first {
                    out.push(Extent {
                        first: cur.first,
                        last: cut.first - 1,
                    });
                }
                if cut.last >= cur.last {
                    alive = false;
                    break;
                }
                cur.first = cut.last + 1;
                k += 1;
            }
            if alive {
                out.push(cur);
            }
        }
        ExtentSet { extents: out }
    }

    /// The set restricted to `extent`.
    pub fn clip(&self, extent: &Extent) -> ExtentSet {
        self.intersection(&ExtentSet::from(*extent))
    }

    /// Every track of the set in ascending order.
    pub fn tracks(&self) -> impl Iterator<Item = TrackNo> + '_ {
        self.extents.iter().flat_map(|e| e.first..=e.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[(u64, u64)]) -> ExtentSet {
        v.iter()
            .map(|&(a, b)| Extent { first: a, last: b })
            .collect()
    }

    #[test]
    fn normalizes_overlapping_and_adjacent() {
        let s = set(&[(5, 7), (0, 2), (3, 4), (10, 12), (11, 11)]);
        assert_eq!(
            s.extents(),
            &[
                Extent { first: 0, last: 7 },
                Extent {
                    first: 10,
                    last: 12
                }
            ]
        );
        assert_eq!(s.track_count(), 11);
        assert!(s.contains(7) && !s.contains(8) && s.contains(10));
    }

    #[test]
    fn reversed_extents_are_empty() {
        assert!(set(&[(5, 3)]).is_empty());
        assert_eq!(Extent { first: 5, last: 3 }.track_count(), 0);
    }

    #[test]
    fn difference_splits() {
        let s = set(&[(0, 10)]).difference(&set(&[(2, 3), (5, 5), (10, 20)]));
        assert_eq!(s, set(&[(0, 1), (4, 4), (6, 9)]));
    }

    #[test]
    fn insert_merges_across_many() {
        let mut s = set(&[(0, 0), (2, 2), (4, 4), (8, 9)]);
        s.insert(Extent { first: 1, last: 5 });
        assert_eq!(s, set(&[(0, 5), (8, 9)]));
        s.insert(Extent {
            first: u64::MAX,
            last: u64::MAX,
        });
        assert!(s.contains(u64::MAX));
    }

    #[test]
    fn serde_normalizes_untrusted_lists() {
        let json = r#"[{"first":4,"last":6},{"first":0,"last":5},{"first":9,"last":8}]"#;
        let s: ExtentSet = serde_json::from_str(json).expect("valid json");
        assert_eq!(s, set(&[(0, 6)]));
    }
}
