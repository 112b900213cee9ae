//! Saved engine state: round trip, and every truncation, byte flip and random
//! input is a typed error, never a panic.

use proptest::prelude::*;
use timezero::{CopyType, Engine, LoadError, MapSpec, StartOptions, VolumeId};

fn busy_engine() -> Engine {
    let mut e = Engine::new();
    for v in 0..4 {
        e.add_volume(VolumeId(v), 100).unwrap();
    }
    let prep = StartOptions {
        restore: false,
        prepare: true,
    };
    let a = e
        .create_map(MapSpec::new(VolumeId(0), VolumeId(1), CopyType::Nocopy))
        .unwrap();
    let mut spec = MapSpec::new(VolumeId(0), VolumeId(2), CopyType::Full);
    spec.incremental = true;
    let b = e.create_map(spec).unwrap();
    let c = e
        .create_map(MapSpec::new(VolumeId(2), VolumeId(3), CopyType::Nocopy))
        .unwrap();
    let g = e.create_group(false);
    e.add_to_group(c, g).unwrap();
    e.start(a, prep).unwrap();
    e.start(b, prep).unwrap();
    e.start_group(g, prep).unwrap();
    for grain in [3, 50, 99] {
        let p = e.plan_write(VolumeId(0), grain..grain + 1, false).unwrap();
        e.commit_copies(&p.copies);
        e.record_write(VolumeId(0), grain..grain + 1);
    }
    let bg = e.plan_background(b, 10);
    e.commit_copies(&bg);
    e
}

#[test]
fn round_trip_keeps_every_answer() {
    let e = busy_engine();
    let bytes = e.save();
    let l = Engine::load(&bytes).unwrap();
    assert_eq!(l.save(), bytes);
    assert_eq!(l.maps(), e.maps());
    assert_eq!(l.cascades(), e.cascades());
    for v in 0..4 {
        for g in 0..100 {
            assert_eq!(
                l.resolve_read(VolumeId(v), g),
                e.resolve_read(VolumeId(v), g)
            );
        }
    }
}

#[test]
fn truncation_and_corruption_are_errors() {
    let bytes = busy_engine().save();
    for len in 0..bytes.len() {
        assert!(Engine::load(&bytes[..len]).is_err(), "truncated to {len}");
    }
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x5a;
        let r = Engine::load(&b);
        assert!(r.is_err(), "flip at {i} accepted");
    }
    let mut b = bytes.clone();
    b[0] = b'X';
    assert_eq!(Engine::load(&b).err(), Some(LoadError::BadMagic));
    let mut b = bytes.clone();
    b[8] = 9;
    assert_eq!(Engine::load(&b).err(), Some(LoadError::Version(9)));
    let mut b = bytes.clone();
    let last = b.len() - 1;
    b[last] ^= 1;
    assert!(matches!(Engine::load(&b), Err(LoadError::Checksum { .. })));
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Engine::load(&bytes);
        let mut framed = timezero::MAGIC.to_vec();
        framed.extend_from_slice(&timezero::FORMAT_VERSION.to_le_bytes());
        framed.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        framed.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
        framed.extend_from_slice(&bytes);
        prop_assert!(Engine::load(&framed).is_err());
    }
}
