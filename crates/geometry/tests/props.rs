//! Property tests: address round trips, extent-set algebra against a `BTreeSet`
//! model, and `split_range` tiling. More cases: `PROPTEST_CASES=10000 cargo test -p geometry`.

use std::collections::BTreeSet;

use geometry::{split_range, Cchh, DeviceModel, Extent, ExtentSet, Geometry};
use proptest::prelude::*;

fn any_model() -> impl Strategy<Value = DeviceModel> {
    prop_oneof![
        prop::sample::select(vec!["3390-1", "3390-3", "3390-9", "3390-27", "3390-54"])
            .prop_map(|s| s.parse().expect("fixed model")),
        (1u32..=1_182_006).prop_map(|cylinders| DeviceModel::Ckd3390A { cylinders }),
        (12u32..=20, 1u64..5000).prop_map(|(shift, n)| {
            let track_size_bytes = 1u64 << shift;
            DeviceModel::Fb {
                size_bytes: n * track_size_bytes,
                track_size_bytes,
            }
        }),
    ]
}

fn geometry_and_track() -> impl Strategy<Value = (Geometry, u64)> {
    any_model().prop_flat_map(|m| {
        let g = Geometry::new(m).expect("generated models are valid");
        (Just(g), 0..g.tracks())
    })
}

/// Extents over a small track space so that sets overlap often.
fn small_set() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((0u64..200, 0u64..200), 0..8)
}

fn to_set(v: &[(u64, u64)]) -> ExtentSet {
    v.iter()
        .map(|&(a, b)| Extent {
            first: a.min(b),
            last: a.max(b),
        })
        .collect()
}

fn to_model(v: &[(u64, u64)]) -> BTreeSet<u64> {
    v.iter().flat_map(|&(a, b)| a.min(b)..=a.max(b)).collect()
}

fn of_set(s: &ExtentSet) -> BTreeSet<u64> {
    s.tracks().collect()
}

fn assert_normalized(s: &ExtentSet) {
    for w in s.extents().windows(2) {
        assert!(w[0].last + 1 < w[1].first, "not merged: {:?}", s.extents());
    }
    assert!(s.extents().iter().all(|e| e.first <= e.last));
}

proptest! {
    #[test]
    fn model_display_parse_round_trip(m in any_model()) {
        let text = m.to_string();
        prop_assert_eq!(text.parse::<DeviceModel>(), Ok(m));
        let g = Geometry::new(m).expect("valid");
        prop_assert_eq!(g.tracks() * g.track_size_bytes(), g.size_bytes());
    }

    #[test]
    fn cchh_track_round_trip((g, track) in geometry_and_track()) {
        if g.is_ckd() {
            let c = g.cchh(track).expect("inside");
            prop_assert!(c.head < 15);
            prop_assert_eq!(g.track_of(c), Ok(track));
            prop_assert_eq!(c.to_string().parse::<Cchh>(), Ok(c));
        }
        prop_assert_eq!(g.parse_track(&g.format_track(track)), Ok(track));
    }

    #[test]
    fn extent_display_parse_round_trip((g, a) in geometry_and_track(), b in any::<u64>()) {
        let b = b % g.tracks();
        let e = Extent { first: a.min(b), last: a.max(b) };
        prop_assert_eq!(g.parse_extent(&g.format_extent(&e)), Ok(e));
        let set: ExtentSet = [e, Extent::single(b)].into_iter().collect();
        prop_assert_eq!(g.parse_extent_set(&g.format_extent_set(&set)), Ok(set));
    }

    #[test]
    fn extent_set_algebra_matches_model(a in small_set(), b in small_set(), probe in 0u64..210) {
        let (sa, sb) = (to_set(&a), to_set(&b));
        let (ma, mb) = (to_model(&a), to_model(&b));
        for s in [&sa, &sb] {
            assert_normalized(s);
        }
        let u = sa.union(&sb);
        let i = sa.intersection(&sb);
        let d = sa.difference(&sb);
        for s in [&u, &i, &d] {
            assert_normalized(s);
        }
        prop_assert_eq!(of_set(&u), ma.union(&mb).copied().collect::<BTreeSet<_>>());
        prop_assert_eq!(of_set(&i), ma.intersection(&mb).copied().collect::<BTreeSet<_>>());
        prop_assert_eq!(of_set(&d), ma.difference(&mb).copied().collect::<BTreeSet<_>>());
        prop_assert_eq!(sa.track_count(), ma.len() as u64);
        prop_assert_eq!(sa.contains(probe), ma.contains(&probe));
        prop_assert_eq!(sa.is_empty(), ma.is_empty());
        prop_assert_eq!(sa.is_subset(&sb), ma.is_subset(&mb));
        prop_assert_eq!(sa.overlaps(&sb), !ma.is_disjoint(&mb));
        // Equality is set equality: build the same tracks another way.
        let rebuilt: ExtentSet = ma.iter().map(|&t| Extent::single(t)).collect();
        prop_assert_eq!(&rebuilt, &sa);
        // insert / remove agree with union / difference.
        let mut inc = sa.clone();
        for e in sb.extents() {
            inc.insert(*e);
        }
        prop_assert_eq!(&inc, &u);
        let mut dec = sa.clone();
        for e in sb.extents() {
            dec.remove(*e);
        }
        prop_assert_eq!(&dec, &d);
        prop_assert_eq!(ExtentSet::full(200).difference(&ExtentSet::full(200).difference(&sa)), sa.clone());
    }

    #[test]
    fn split_range_tiles_the_range(shift in 9u32..21, offset in 0u64..(1 << 24), len in 0u64..(1 << 22)) {
        let ts = 1u64 << shift;
        let mut expect_pos = offset;
        let mut expect_buf = 0u64;
        for p in split_range(ts, offset, len) {
            prop_assert!(p.len > 0 && p.offset_in_track + p.len <= ts);
            prop_assert_eq!(p.volume_offset(ts), expect_pos);
            prop_assert_eq!(p.buf_offset, expect_buf);
            expect_pos += p.len;
            expect_buf += p.len;
        }
        prop_assert_eq!(expect_buf, len);
        let n = split_range(ts, offset, len).count();
        prop_assert_eq!(split_range(ts, offset, len).size_hint(), (n, Some(n)));
    }
}
