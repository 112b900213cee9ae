//! Device models, CCHH addressing and extent text: the behaviour users type and read.

use geometry::{
    Cchh, DeviceModel, Extent, ExtentSet, Geometry, GeometryError, CKD_TRACK_BYTES,
    MAX_3390A_CYLINDERS,
};

fn geo(s: &str) -> Geometry {
    s.parse().expect("valid model")
}

#[test]
fn fixed_3390_models_have_their_cylinders() {
    for (m, cyl) in [
        ("3390-1", 1_113u64),
        ("3390-3", 3_339),
        ("3390-9", 10_017),
        ("3390-27", 32_760),
        ("3390-54", 65_520),
    ] {
        let g = geo(m);
        assert_eq!(g.cylinders(), Some(cyl as u32), "{m}");
        assert_eq!(g.tracks(), cyl * 15, "{m}");
        assert_eq!(g.track_size_bytes(), CKD_TRACK_BYTES);
        assert_eq!(g.size_bytes(), cyl * 15 * 57_344);
        assert!(g.is_ckd());
        assert_eq!(g.to_string(), m);
    }
}

#[test]
fn model_3390_a_range_is_checked() {
    let g = geo("3390-A:1182006");
    assert_eq!(g.tracks(), 1_182_006 * 15);
    assert_eq!(g.cylinders(), Some(MAX_3390A_CYLINDERS));
    assert_eq!(
        "3390-A:1182007".parse::<DeviceModel>(),
        Err(GeometryError::BadCylinderCount {
            cylinders: 1_182_007
        })
    );
    assert!(matches!(
        "3390-A:0".parse::<DeviceModel>(),
        Err(GeometryError::BadCylinderCount { .. })
    ));
    assert!(matches!(
        "3390-A:x".parse::<DeviceModel>(),
        Err(GeometryError::UnknownModel { .. })
    ));
    assert!(matches!(
        Geometry::new(DeviceModel::Ckd3390A {
            cylinders: 2_000_000
        }),
        Err(GeometryError::BadCylinderCount { .. })
    ));
}

#[test]
fn unknown_model_is_named() {
    let e = "3390-7".parse::<DeviceModel>().unwrap_err();
    assert_eq!(
        e,
        GeometryError::UnknownModel {
            text: "3390-7".into()
        }
    );
    assert!(e.to_string().contains("3390-7"), "{e}");
    assert!(matches!(
        "disk".parse::<DeviceModel>(),
        Err(GeometryError::UnknownModel { .. })
    ));
}

#[test]
fn fb_sizes_and_track_sizes() {
    let g = geo("fb:1G");
    assert_eq!(g.size_bytes(), 1 << 30);
    assert_eq!(g.track_size_bytes(), 64 * 1024);
    assert_eq!(g.tracks(), 16_384);
    assert!(!g.is_ckd());
    assert_eq!(g.cylinders(), None);
    assert_eq!(geo("fb:1073741824").model(), g.model());
    assert_eq!(geo("fb:512M:4K").tracks(), 131_072);
    assert_eq!(geo("fb:512M:4096").to_string(), "fb:512M:4K");
    assert_eq!(geo("fb:1G:64K").to_string(), "fb:1G");
    assert_eq!(geo("fb:67108864:1M").to_string(), "fb:64M:1M");
}

#[test]
fn fb_bad_sizes_are_errors() {
    assert_eq!(
        "fb:100K".parse::<DeviceModel>(),
        Err(GeometryError::SizeNotMultiple {
            size_bytes: 100 * 1024,
            track_size_bytes: 65_536
        })
    );
    assert!(matches!(
        "fb:0".parse::<DeviceModel>(),
        Err(GeometryError::SizeNotMultiple { .. })
    ));
    assert!(matches!(
        "fb:1G:3K".parse::<DeviceModel>(),
        Err(GeometryError::BadTrackSize { .. })
    ));
    assert!(matches!(
        "fb:1G:2K".parse::<DeviceModel>(),
        Err(GeometryError::BadTrackSize { .. })
    ));
    assert!(matches!(
        "fb:1G:2M".parse::<DeviceModel>(),
        Err(GeometryError::BadTrackSize { .. })
    ));
    assert!(matches!(
        "fb:1X".parse::<DeviceModel>(),
        Err(GeometryError::BadSize { .. })
    ));
    assert!(matches!(
        "fb:".parse::<DeviceModel>(),
        Err(GeometryError::BadSize { .. })
    ));
    assert!(matches!(
        "fb:99999999999T".parse::<DeviceModel>(),
        Err(GeometryError::BadSize { .. })
    ));
}

#[test]
fn models_serialize_as_their_string() {
    let m: DeviceModel = "3390-A:70000".parse().expect("valid");
    assert_eq!(serde_json::to_string(&m).expect("ser"), "\"3390-A:70000\"");
    let g: Geometry = serde_json::from_str("\"fb:1G:4K\"").expect("de");
    assert_eq!(g.tracks(), 262_144);
    assert!(serde_json::from_str::<Geometry>("\"3390-7\"").is_err());
}

#[test]
fn cchh_text_uses_eav_layout() {
    let c = Cchh {
        cyl: 0x1_2345,
        head: 0xE,
    };
    assert_eq!(c.to_string(), "2345001E");
    assert_eq!("2345001E".parse::<Cchh>(), Ok(c));
    // Classic CCCCHHHH for a small cylinder reads the same.
    assert_eq!("0005000E".parse::<Cchh>(), Ok(Cchh { cyl: 5, head: 14 }));
    assert_eq!(Cchh { cyl: 5, head: 3 }.to_string(), "00050003");
    assert_eq!(
        "0005000F".parse::<Cchh>(),
        Err(GeometryError::HeadOutOfRange { head: 15 })
    );
    assert!(matches!(
        "12345".parse::<Cchh>(),
        Err(GeometryError::BadCchh { .. })
    ));
    assert!(matches!(
        "0005000G".parse::<Cchh>(),
        Err(GeometryError::BadCchh { .. })
    ));
    assert!(matches!(
        "+005000E".parse::<Cchh>(),
        Err(GeometryError::BadCchh { .. })
    ));
}

#[test]
fn cchh_and_tracks() {
    let g = geo("3390-3");
    assert_eq!(g.cchh(0), Ok(Cchh { cyl: 0, head: 0 }));
    assert_eq!(g.cchh(16), Ok(Cchh { cyl: 1, head: 1 }));
    assert_eq!(
        g.track_of(Cchh {
            cyl: 3338,
            head: 14
        }),
        Ok(g.tracks() - 1)
    );
    assert_eq!(
        g.track_of(Cchh { cyl: 3339, head: 0 }),
        Err(GeometryError::CylinderPastEnd {
            cyl: 3339,
            cylinders: 3339
        })
    );
    assert_eq!(
        g.cchh(g.tracks()),
        Err(GeometryError::TrackPastEnd {
            track: 50_085,
            tracks: 50_085
        })
    );
    assert_eq!(geo("fb:1G").cchh(0), Err(GeometryError::NotCkd));
}

#[test]
fn extent_text_3390() {
    let g = geo("3390-9");
    let e = g.parse_extent("00030000-0005000E").expect("valid");
    assert_eq!(
        e,
        Extent {
            first: 45,
            last: 89
        }
    );
    assert_eq!(g.format_extent(&e), "00030000-0005000E");
    assert_eq!(
        g.parse_extent("00050000-00030000"),
        Err(GeometryError::ReversedExtent {
            text: "00050000-00030000".into()
        })
    );
    assert!(matches!(
        g.parse_extent("27200000-27210000"),
        Err(GeometryError::CylinderPastEnd { .. })
    ));
    assert!(matches!(
        g.parse_extent("0000000F-00010000"),
        Err(GeometryError::HeadOutOfRange { .. })
    ));
    assert!(matches!(
        g.parse_extent("-00010000"),
        Err(GeometryError::BadExtent { .. })
    ));
    let s = g
        .parse_extent_set("00050000-0005000E, 00000000-00000001,00060000")
        .expect("valid");
    assert_eq!(
        g.format_extent_set(&s),
        "00000000-00000001,00050000-00060000"
    );
    assert_eq!(g.parse_extent_set("").expect("empty"), ExtentSet::new());
}

#[test]
fn extent_text_eav_cylinders() {
    let g = geo("3390-A:262668");
    let last = g.tracks() - 1;
    let text = g.format_extent(&Extent {
        first: 65_536 * 15,
        last,
    });
    // Cylinder 262,667 = 0x4020B: low 16 bits 020B, high bits 004.
    assert_eq!(text, "00000010-020B004E");
    assert_eq!(
        g.parse_extent(&text),
        Ok(Extent {
            first: 65_536 * 15,
            last
        })
    );
    assert_eq!(g.format_track(65_536 * 15), "00000010");
    assert_eq!(
        g.cchh(last),
        Ok(Cchh {
            cyl: 262_667,
            head: 14
        })
    );
    // A classic CCCCHHHH with HHHH >= 15 is rejected on a base-size volume.
    assert!(matches!(
        geo("3390-9").parse_extent("00010010"),
        Err(GeometryError::CylinderPastEnd { .. })
    ));
}

#[test]
fn extent_text_fb() {
    let g = geo("fb:1M:4K");
    assert_eq!(g.parse_extent("3-7"), Ok(Extent { first: 3, last: 7 }));
    assert_eq!(g.format_extent(&Extent { first: 3, last: 7 }), "3-7");
    assert_eq!(g.parse_extent("9"), Ok(Extent::single(9)));
    assert_eq!(
        g.parse_extent("5-3"),
        Err(GeometryError::ReversedExtent { text: "5-3".into() })
    );
    assert_eq!(
        g.parse_extent("0-256"),
        Err(GeometryError::TrackPastEnd {
            track: 256,
            tracks: 256
        })
    );
    assert!(matches!(
        g.parse_extent("a-b"),
        Err(GeometryError::BadExtent { .. })
    ));
}

#[test]
fn check_range_rejects_past_end_and_overflow() {
    let g = geo("fb:1M:4K");
    assert!(g.check_range(0, 1 << 20).is_ok());
    assert!(g.check_range(1 << 20, 0).is_ok());
    assert!(matches!(
        g.check_range(1, 1 << 20),
        Err(GeometryError::RangePastEnd { .. })
    ));
    assert!(matches!(
        g.check_range(u64::MAX, 2),
        Err(GeometryError::RangePastEnd { .. })
    ));
    assert_eq!(
        g.extent_of_range(4095, 2),
        Ok(Some(Extent { first: 0, last: 1 }))
    );
    assert_eq!(g.extent_of_range(4096, 0), Ok(None));
}
