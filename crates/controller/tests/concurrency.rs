//! Concurrent host I/O: different grains in parallel, the same grain ordered,
//! target readers always see the point-in-time image while the source changes.

use std::sync::Arc;

use controller::testing::{pattern, VirtualSubsystem};
use controller::{CopyType, MapCreate, SubsystemConfig};

const GRAIN: u64 = 64 << 10;
const GRAINS: u64 = 64;

fn setup() -> (Arc<VirtualSubsystem>, controller::MapId) {
    let cfg = SubsystemConfig::from_toml_str(
        "id = \"CC\"\n[[volumes]]\nid = \"S\"\nmodel = \"fb:4M:64K\"\n[[volumes]]\nid = \"T\"\nmodel = \"fb:4M:64K\"\n",
    )
    .unwrap();
    let vs = VirtualSubsystem::boot(cfg).unwrap();
    vs.write_pattern("S", 0, (GRAIN * GRAINS) as usize, 1, true)
        .unwrap();
    let m = vs
        .sub()
        .create_map(&MapCreate::new("S", "T", CopyType::Nocopy))
        .unwrap();
    vs.sub().start_map(m, false).unwrap();
    (Arc::new(vs), m)
}

#[test]
fn sixteen_writers_on_different_grains_with_target_readers() {
    let (vs, _) = setup();
    let mut threads = Vec::new();
    for w in 0..16u64 {
        let vs = vs.clone();
        threads.push(std::thread::spawn(move || {
            for k in 0..4u64 {
                let g = w * 4 + k;
                // Partial and whole-grain writes, some with FUA.
                let (off, len) = if k % 2 == 0 {
                    (g * GRAIN, GRAIN as usize)
                } else {
                    (g * GRAIN + 4096, 8192)
                };
                vs.write_pattern("S", off, len, 100 + g, k == 3).unwrap();
            }
        }));
    }
    for r in 0..4u64 {
        let vs = vs.clone();
        threads.push(std::thread::spawn(move || {
            for _ in 0..8 {
                vs.check_pattern("T", r * 16 * GRAIN, (16 * GRAIN) as usize, 1)
                    .unwrap();
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    vs.check_pattern("T", 0, (GRAIN * GRAINS) as usize, 1)
        .unwrap();
    for g in 0..GRAINS {
        let (off, len) = if g % 2 == 0 {
            (g * GRAIN, GRAIN as usize)
        } else {
            (g * GRAIN + 4096, 8192)
        };
        vs.check_pattern("S", off, len, 100 + g).unwrap();
    }
    let m = vs.sub().metrics();
    assert_eq!(
        m.cow_copies, GRAINS,
        "one copy per first write of a grain: {m:?}"
    );
}

#[test]
fn writers_on_the_same_grain_are_ordered_whole() {
    let (vs, _) = setup();
    let threads: Vec<_> = (0..8u64)
        .map(|w| {
            let vs = vs.clone();
            std::thread::spawn(move || {
                for i in 0..5u64 {
                    vs.write_pattern("S", 3 * GRAIN, GRAIN as usize, 1000 + w * 10 + i, false)
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut got = vec![0u8; GRAIN as usize];
    vs.sub().read("S", 3 * GRAIN, &mut got).unwrap();
    let winner = (0..8u64)
        .flat_map(|w| (0..5u64).map(move |i| 1000 + w * 10 + i))
        .find(|&s| pattern(s, 3 * GRAIN, GRAIN as usize) == got);
    assert!(winner.is_some(), "the grain holds a mix of writes");
    vs.check_pattern("T", 3 * GRAIN, GRAIN as usize, 1).unwrap();
    assert_eq!(vs.sub().metrics().cow_copies, 1);
}

#[test]
fn control_requests_drain_host_io() {
    let (vs, m) = setup();
    let writer = {
        let vs = vs.clone();
        std::thread::spawn(move || {
            for i in 0..200u64 {
                vs.write_pattern("S", (i % GRAINS) * GRAIN, 4096, 5000 + i, false)
                    .unwrap();
            }
        })
    };
    // Stop and restart the snapshot while writes run: each start is one instant.
    for _ in 0..5 {
        vs.sub().stop_map(m, false).unwrap();
        vs.sub().start_map(m, false).unwrap();
    }
    writer.join().unwrap();
    let mut s = vec![0u8; (GRAIN * GRAINS) as usize];
    vs.sub().read("S", 0, &mut s).unwrap();
    vs.sub().stop_map(m, false).unwrap();
    vs.sub().start_map(m, false).unwrap();
    let mut t = vec![0u8; s.len()];
    vs.sub().read("T", 0, &mut t).unwrap();
    assert!(s == t, "a quiet restart gives the source image");
}
