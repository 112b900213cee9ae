//! Model-based property test of the engine against a reference oracle (each
//! map's image is the source's view at its start, overlaid with later writes
//! to the target; docs/TESTING.md, "Engine"): random interleavings of map
//! creation, prepare/start (also restore and consistency groups), stop, stop
//! --force, delete, host writes (whole and partial grains), background copy
//! and cleaning steps, and suspend/resume, over 5 volumes of 12 grains,
//! checking I1-I16 after every step (docs/SEMANTICS.md, "Invariants (I)";
//! see tests/common/mod.rs). `PROPTEST_CASES=n` runs more cases.

mod common;

use common::Sim;
use geometry::{Extent, ExtentSet};
use proptest::prelude::*;
use timezero::{CopyType, MapSpec, StartOptions, VolumeId};

const VOLUMES: u32 = 5;
const GRAINS: u64 = 12;

#[derive(Clone, Debug)]
enum Op {
    Write {
        vol: u8,
        grain: u8,
        len: u8,
        whole: bool,
    },
    Create {
        source: u8,
        target: u8,
        full: bool,
        incremental: bool,
        extents: Option<(u8, u8)>,
        rate: u8,
    },
    StartPrep {
        map: u8,
        restore: bool,
    },
    Prepare {
        map: u8,
    },
    FlushDone {
        map: u8,
    },
    FlushFailed {
        map: u8,
    },
    Start {
        map: u8,
        restore: bool,
    },
    Stop {
        map: u8,
        force: bool,
    },
    Delete {
        map: u8,
        force: bool,
    },
    /// A session's end: stop with cleaning, then gone (E6).
    Withdraw {
        map: u8,
    },
    Background {
        map: u8,
        n: u8,
    },
    Suspend {
        map: u8,
    },
    Resume {
        map: u8,
    },
    Group {
        a: u8,
        b: u8,
        restore: bool,
    },
    GroupStop {
        force: bool,
    },
    GroupDissolve,
    /// Save and load the engine (controller restart), then carry on.
    Reload,
    /// Create the reverse of an existing map (a restore candidate).
    Reverse {
        map: u8,
        full: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (any::<u8>(), any::<u8>(), prop_oneof![3 => Just(1u8), 1 => 2u8..4], any::<bool>()).prop_map(|(vol, grain, len, whole)| Op::Write { vol, grain, len, whole }),
        8 => (any::<u8>(), any::<u8>(), any::<bool>(), any::<bool>(), proptest::option::weighted(0.2, (any::<u8>(), any::<u8>())), prop_oneof![Just(0u8), Just(50u8), Just(100u8)])
            .prop_map(|(source, target, full, incremental, extents, rate)| Op::Create { source, target, full, incremental, extents, rate }),
        10 => (any::<u8>(), proptest::bool::weighted(0.3)).prop_map(|(map, restore)| Op::StartPrep { map, restore }),
        2 => any::<u8>().prop_map(|map| Op::Prepare { map }),
        2 => any::<u8>().prop_map(|map| Op::FlushDone { map }),
        1 => any::<u8>().prop_map(|map| Op::FlushFailed { map }),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(map, restore)| Op::Start { map, restore }),
        5 => (any::<u8>(), proptest::bool::weighted(0.3)).prop_map(|(map, force)| Op::Stop { map, force }),
        3 => (any::<u8>(), any::<bool>()).prop_map(|(map, force)| Op::Delete { map, force }),
        3 => any::<u8>().prop_map(|map| Op::Withdraw { map }),
        14 => (any::<u8>(), 1u8..6).prop_map(|(map, n)| Op::Background { map, n }),
        2 => any::<u8>().prop_map(|map| Op::Suspend { map }),
        3 => any::<u8>().prop_map(|map| Op::Resume { map }),
        3 => (any::<u8>(), any::<u8>(), proptest::bool::weighted(0.1)).prop_map(|(a, b, restore)| Op::Group { a, b, restore }),
        1 => any::<bool>().prop_map(|force| Op::GroupStop { force }),
        1 => Just(Op::GroupDissolve),
        2 => Just(Op::Reload),
        4 => (any::<u8>(), any::<bool>()).prop_map(|(map, full)| Op::Reverse { map, full }),
    ]
}

fn pick<T: Copy>(v: &[T], i: u8) -> Option<T> {
    (!v.is_empty()).then(|| v[usize::from(i) % v.len()])
}

fn apply(sim: &mut Sim, op: &Op) {
    let ids = sim.map_ids();
    let vol = |i: u8| VolumeId(u32::from(i) % VOLUMES);
    match *op {
        Op::Write {
            vol: v,
            grain,
            len,
            whole,
        } => {
            sim.write_range(vol(v), u64::from(grain) % GRAINS, u64::from(len), whole);
        }
        Op::Create {
            source,
            target,
            full,
            incremental,
            extents,
            rate,
        } => {
            let mut spec = MapSpec::new(
                vol(source),
                vol(target),
                if full {
                    CopyType::Full
                } else {
                    CopyType::Nocopy
                },
            );
            spec.incremental = incremental && full;
            spec.copy_rate = if full { rate.max(1) } else { rate };
            spec.extents = extents.map(|(a, b)| {
                let (a, b) = (u64::from(a) % GRAINS, u64::from(b) % GRAINS);
                ExtentSet::from(Extent::new(a.min(b), a.max(b)).unwrap())
            });
            sim.control(|e| e.create_map(spec).map(|_| ()));
        }
        Op::StartPrep { map, restore } => {
            if let Some(id) = pick(&ids, map) {
                sim.start(
                    &[id],
                    StartOptions {
                        restore,
                        prepare: true,
                    },
                    None,
                );
            }
        }
        Op::Start { map, restore } => {
            if let Some(id) = pick(&ids, map) {
                sim.start(
                    &[id],
                    StartOptions {
                        restore,
                        prepare: false,
                    },
                    None,
                );
            }
        }
        Op::Prepare { map } => {
            if let Some(id) = pick(&ids, map) {
                sim.control(|e| e.prepare(id));
            }
        }
        Op::FlushDone { map } => {
            if let Some(id) = pick(&ids, map) {
                sim.control(|e| e.flush_done(id));
            }
        }
        Op::FlushFailed { map } => {
            if let Some(id) = pick(&ids, map) {
                sim.control(|e| e.flush_failed(id));
            }
        }
        Op::Stop { map, force } => {
            if let Some(id) = pick(&ids, map) {
                let before = sim.eng.save();
                let st = sim.eng.map_state(id);
                let ok = if force {
                    sim.stop_force_checked(id)
                } else {
                    sim.control(|e| e.stop(id, false))
                };
                // I16: stop of idle_or_copied/stopped (and non-force of stopping) changes nothing.
                use timezero::MapState::*;
                if ok
                    && (matches!(st, Some(IdleOrCopied | Stopped))
                        || (!force && st == Some(Stopping)))
                {
                    assert_eq!(
                        before,
                        sim.eng.save(),
                        "I16: stop in state {st:?} changed something"
                    );
                }
            }
        }
        Op::Delete { map, force } => {
            if let Some(id) = pick(&ids, map) {
                let st = sim.eng.map_state(id);
                let ok = sim.control(|e| e.delete(id, force));
                if st == Some(timezero::MapState::Stopped) && !force {
                    assert!(!ok, "I16: delete of a stopped map without force accepted");
                }
            }
        }
        Op::Withdraw { map } => {
            if let Some(id) = pick(&ids, map) {
                let ok = sim.control(|e| e.withdraw(id).map(|_| ()));
                if ok {
                    let st = sim.eng.map_state(id);
                    assert!(
                        st.is_none()
                            || (st == Some(timezero::MapState::Stopping)
                                && sim.eng.is_withdrawn(id)),
                        "a withdrawn map is gone or cleaning, not {st:?}"
                    );
                }
            }
        }
        Op::Background { map, n } => {
            if let Some(id) = pick(&ids, map) {
                sim.background(id, usize::from(n));
            }
        }
        Op::Suspend { map } => {
            if let Some(id) = pick(&ids, map) {
                sim.control(|e| e.suspend(id));
            }
        }
        Op::Resume { map } => {
            if let Some(id) = pick(&ids, map) {
                sim.control(|e| e.resume(id));
            }
        }
        Op::Group { a, b, restore } => {
            let (Some(a), Some(b)) = (pick(&ids, a), pick(&ids, b)) else {
                return;
            };
            if !sim.eng.groups().is_empty() {
                return;
            }
            let g = sim.eng.create_group(false);
            sim.control(|e| e.add_to_group(a, g));
            if a != b {
                sim.control(|e| e.add_to_group(b, g));
            }
            let members = sim.eng.groups()[0].members.clone();
            if members.is_empty() {
                sim.control(|e| e.delete_group(g, true));
                return;
            }
            sim.start(
                &members,
                StartOptions {
                    restore,
                    prepare: true,
                },
                Some(g),
            );
        }
        Op::GroupStop { force } => {
            if let Some(g) = sim.eng.groups().first().map(|g| g.id) {
                sim.control(|e| e.stop_group(g, force));
            }
        }
        Op::Reverse { map, full } => {
            if let Some(id) = pick(&ids, map) {
                let info = sim.eng.map_info(id).unwrap();
                let mut spec = MapSpec::new(
                    info.spec.target,
                    info.spec.source,
                    if full {
                        CopyType::Full
                    } else {
                        CopyType::Nocopy
                    },
                );
                spec.copy_rate = if full { 100 } else { 0 };
                spec.incremental = full && map % 3 == 0;
                sim.control(|e| e.create_map(spec).map(|_| ()));
            }
        }
        Op::Reload => {
            let bytes = sim.eng.save();
            let loaded = timezero::Engine::load(&bytes).expect("own output loads");
            assert_eq!(loaded.save(), bytes);
            for v in sim.eng.volumes() {
                for g in 0..GRAINS {
                    assert_eq!(loaded.resolve_read(v, g), sim.eng.resolve_read(v, g));
                }
            }
            sim.eng = loaded;
        }
        Op::GroupDissolve => {
            if let Some(g) = sim.eng.groups().first().map(|g| g.id) {
                sim.control(|e| e.delete_group(g, true));
            }
        }
    }
}

static STATS: std::sync::Mutex<std::collections::BTreeMap<String, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 4000, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_oracle(ops in proptest::collection::vec(op(), 1..90)) {
        let mut sim = Sim::new(VOLUMES, GRAINS);
        sim.check();
        for op in &ops {
            apply(&mut sim, op);
            sim.check();
        }
        if std::env::var("TZ_STATS").is_ok() {
            let mut all = STATS.lock().unwrap();
            for (k, v) in &sim.stats {
                *all.entry(k.clone()).or_default() += v;
            }
            eprintln!("{all:?}");
        }
        // Save/load round trip preserves every read.
        let bytes = sim.eng.save();
        let loaded = timezero::Engine::load(&bytes).expect("own output loads");
        prop_assert_eq!(loaded.save(), bytes);
    }
}
