//! Explicit scenarios: 256 snapshot targets in one cascade, the mixed-type
//! stop (docs/ENGINE.md, "Decisions the semantics leave open"), restore
//! keeping other images, incremental restart, group start, limits, dirty
//! words.

mod common;

use common::Sim;
use timezero::{
    ControlError, CopyType, Engine, MapId, MapSpec, MapState, StartOptions, VolumeId,
    MAX_MAPS_PER_SOURCE,
};

const PREP: StartOptions = StartOptions {
    restore: false,
    prepare: true,
};

fn create(sim: &mut Sim, s: u32, t: u32, ty: CopyType) -> MapId {
    sim.eng
        .create_map(MapSpec::new(VolumeId(s), VolumeId(t), ty))
        .unwrap()
}

fn start(sim: &mut Sim, id: MapId, opts: StartOptions) {
    assert!(sim.start(&[id], opts, None), "start of {id} refused");
    sim.check();
}

#[test]
fn source_write_with_256_snapshots_plans_one_copy() {
    let mut e = Engine::new();
    let grains = 64;
    for v in 0..=257 {
        e.add_volume(VolumeId(v), grains).unwrap();
    }
    let mut ids = Vec::new();
    for t in 1..=256 {
        let id = e
            .create_map(MapSpec::new(VolumeId(0), VolumeId(t), CopyType::Nocopy))
            .unwrap();
        e.start(id, PREP).unwrap();
        ids.push(id);
    }
    // One cascade [source, newest, ..., oldest].
    let c = e.cascades();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].members.len(), 256);
    assert_eq!(c[0].members[0], VolumeId(256));
    let plan = e.plan_write(VolumeId(0), 5..6, true).unwrap();
    assert_eq!(plan.copies.len(), 1, "one copy, not 256");
    assert_eq!(plan.copies[0].to, VolumeId(256));
    assert_eq!(plan.copies[0].from, VolumeId(0));
    e.commit_copies(&plan.copies);
    e.record_write(VolumeId(0), 5..6);
    // The oldest target still reads grain 5 from the newest's preserved copy.
    assert_eq!(e.resolve_read(VolumeId(1), 5), Ok(VolumeId(256)));
    // A partial write to a middle target: its downstream neighbour + its fill.
    let plan = e.plan_write(VolumeId(100), 7..8, false).unwrap();
    assert_eq!(plan.copies.len(), 2);
    // The 257th map of the source is refused.
    let err = e
        .create_map(MapSpec::new(VolumeId(0), VolumeId(257), CopyType::Nocopy))
        .unwrap_err();
    assert_eq!(
        err,
        ControlError::TooManyMapsPerSource {
            source_volume: VolumeId(0),
            limit: MAX_MAPS_PER_SOURCE
        }
    );
}

#[test]
fn mixed_type_stop_is_rejected_and_force_stops_the_snapshot() {
    // T is a clone target (copying, incomplete) and heads a snapshot cascade.
    let mut sim = Sim::new(3, 8);
    let clone = create(&mut sim, 0, 1, CopyType::Full);
    start(&mut sim, clone, PREP);
    sim.background(clone, 3);
    let snap = create(&mut sim, 1, 2, CopyType::Nocopy);
    start(&mut sim, snap, PREP);
    assert!(sim.write(VolumeId(1), 0, false));
    assert!(sim.write(VolumeId(0), 1, true));
    sim.check();
    let before = sim.eng.save();
    let err = sim.eng.stop(clone, false).unwrap_err();
    assert_eq!(
        err,
        ControlError::OtherTypeDependants {
            map: clone,
            target: VolumeId(1),
            other: CopyType::Nocopy
        }
    );
    assert_eq!(before, sim.eng.save(), "a rejected stop changes nothing");
    assert_eq!(sim.eng.dependent_maps(clone), vec![snap]);
    assert!(sim.stop_force_checked(clone));
    sim.check();
    assert_eq!(sim.eng.map_state(clone), Some(MapState::Stopped));
    assert_eq!(sim.eng.map_state(snap), Some(MapState::Stopped));
}

#[test]
fn mixed_type_clone_completes_and_snapshot_keeps_its_image() {
    let mut sim = Sim::new(3, 8);
    let clone = create(&mut sim, 0, 1, CopyType::Full);
    start(&mut sim, clone, PREP);
    let snap = create(&mut sim, 1, 2, CopyType::Nocopy);
    start(&mut sim, snap, PREP);
    for g in 0..8 {
        assert!(sim.write(VolumeId(0), g, g % 2 == 0));
        sim.check();
    }
    while sim.eng.map_state(clone) == Some(MapState::Copying) {
        sim.background(clone, 3);
        sim.check();
    }
    assert_eq!(sim.eng.map_state(clone), Some(MapState::IdleOrCopied));
    assert_eq!(sim.eng.map_state(snap), Some(MapState::Copying));
    assert!(sim.write(VolumeId(1), 3, true));
    sim.check();
    // Nothing was ever copied into the snapshot except for the write to T.
    assert_eq!(sim.eng.split_bitmap(snap).unwrap().count_ones(), 1);
}

#[test]
fn restore_keeps_other_images() {
    let mut sim = Sim::new(4, 8);
    let snap = create(&mut sim, 0, 1, CopyType::Nocopy);
    start(&mut sim, snap, PREP);
    for g in [0, 2, 4] {
        assert!(sim.write(VolumeId(0), g, true));
    }
    let clone = create(&mut sim, 0, 2, CopyType::Full);
    start(&mut sim, clone, PREP);
    for g in [1, 2, 5] {
        assert!(sim.write(VolumeId(0), g, g == 5));
    }
    sim.check();
    // Restore the snapshot onto the source.
    let restore = create(&mut sim, 1, 0, CopyType::Full);
    let before = sim.eng.save();
    assert_eq!(
        sim.eng.start(restore, PREP),
        Err(ControlError::TargetIsActiveSource {
            map: restore,
            target: VolumeId(0)
        })
    );
    assert_eq!(before, sim.eng.save());
    start(
        &mut sim,
        restore,
        StartOptions {
            restore: true,
            prepare: true,
        },
    );
    assert!(sim
        .eng
        .cascades()
        .iter()
        .any(|c| c.head == VolumeId(0) && c.head_frozen));
    // Source reads as the snapshot; the clone and the snapshot are unchanged
    // (the harness compares every read with the oracle after each step).
    for g in 0..8 {
        assert!(sim.write(VolumeId(0), g, g % 3 == 0));
        sim.check();
        assert!(sim.write(VolumeId(1), (g + 3) % 8, true));
        sim.check();
        sim.background(restore, 2);
        sim.check();
        sim.background(clone, 1);
        sim.check();
    }
    while sim.eng.map_state(restore) == Some(MapState::Copying) {
        sim.background(restore, 4);
        sim.check();
    }
    assert!(sim.eng.map_info(restore).unwrap().progress_percent == 100);
}

#[test]
fn incremental_restart_copies_only_changed_grains() {
    let mut sim = Sim::new(2, 16);
    let mut spec = MapSpec::new(VolumeId(0), VolumeId(1), CopyType::Full);
    spec.incremental = true;
    let id = sim.eng.create_map(spec).unwrap();
    start(&mut sim, id, PREP);
    let first = sim.eng.plan_background(id, 100);
    assert_eq!(first.len(), 16, "the first start copies everything");
    assert_eq!(first[0].grain, 15, "highest grain first");
    sim.execute(&first);
    sim.eng.take_events();
    sim.check();
    assert_eq!(sim.eng.map_state(id), Some(MapState::IdleOrCopied));
    assert!(sim.write(VolumeId(0), 3, true));
    assert!(sim.write(VolumeId(0), 9, false));
    assert!(sim.write(VolumeId(1), 12, true));
    sim.check();
    start(&mut sim, id, PREP);
    let copies = sim.eng.plan_background(id, 100);
    let mut grains: Vec<u64> = copies.iter().map(|c| c.grain).collect();
    grains.sort();
    assert_eq!(grains, vec![3, 9, 12]);
    sim.execute(&copies);
    sim.check();
    assert_eq!(sim.eng.map_state(id), Some(MapState::IdleOrCopied));
}

/// Several full maps from one source started as a group are inserted in
/// order of increasing copy rate: the fastest ends next to the source (so it
/// completes first and leaves without waiting for the slower ones), and it
/// does complete and leave while the slow ones still copy; every image stays
/// the source's at the instant (the Sim's oracle checks reads).
#[test]
fn a_group_start_puts_the_fastest_copy_next_to_the_source() {
    let mut sim = Sim::new(4, 8);
    let mut rated = |t: u32, rate: u8| {
        let mut spec = MapSpec::new(VolumeId(0), VolumeId(t), CopyType::Full);
        spec.copy_rate = rate;
        sim.eng.create_map(spec).unwrap()
    };
    let (slow, fast, mid) = (rated(1, 10), rated(2, 100), rated(3, 50));
    let g = sim.eng.create_group(false);
    for m in [slow, fast, mid] {
        sim.eng.add_to_group(m, g).unwrap();
    }
    assert!(sim.start(&[slow, fast, mid], PREP, Some(g)));
    sim.check();
    let c = sim
        .eng
        .cascades()
        .into_iter()
        .find(|c| c.head == VolumeId(0))
        .unwrap();
    assert_eq!(c.members, [VolumeId(2), VolumeId(3), VolumeId(1)]);
    // The fastest copies everything and is cut from the chain at once (its
    // copy does not wait for the slower ones); it heads the others, which
    // read through it until they have copied.
    sim.background(fast, 64);
    sim.check();
    let info = |m: MapId| sim.eng.maps().into_iter().find(|i| i.id == m).unwrap();
    assert_eq!(info(fast).progress_percent, 100);
    assert_eq!(info(fast).cascade, None, "the fastest was cut");
    assert_eq!(sim.eng.map_state(slow), Some(MapState::Copying));
    assert_eq!(sim.eng.map_state(mid), Some(MapState::Copying));
    sim.background(mid, 64);
    sim.background(slow, 64);
    sim.check();
    for m in [fast, mid, slow] {
        assert_eq!(sim.eng.map_state(m), Some(MapState::IdleOrCopied), "{m}");
    }
}

#[test]
fn group_starts_at_one_instant_and_members_are_not_controlled_alone() {
    let mut sim = Sim::new(4, 8);
    let a = create(&mut sim, 0, 1, CopyType::Nocopy);
    let b = create(&mut sim, 2, 3, CopyType::Full);
    let g = sim.eng.create_group(true);
    sim.eng.add_to_group(a, g).unwrap();
    sim.eng.add_to_group(b, g).unwrap();
    assert_eq!(
        sim.eng.stop(a, false),
        Err(ControlError::GroupMember { map: a, group: g })
    );
    assert!(sim.start(&[a, b], PREP, Some(g)));
    sim.check();
    assert_eq!(sim.eng.map_state(a), Some(MapState::Copying));
    assert_eq!(sim.eng.map_state(b), Some(MapState::Copying));
    assert!(matches!(
        sim.eng.remove_from_group(a),
        Err(ControlError::InvalidState { .. })
    ));
    sim.eng.stop_group(g, true).unwrap();
    assert_eq!(sim.eng.map_state(a), Some(MapState::Stopped));
    sim.eng.delete(a, true).unwrap();
    sim.eng.delete(b, true).unwrap();
    assert!(
        sim.eng.groups().is_empty(),
        "autodelete group goes with its last map"
    );
}

#[test]
fn create_validates_sizes_targets_and_rates() {
    let mut e = Engine::new();
    e.add_volume(VolumeId(0), 10).unwrap();
    e.add_volume(VolumeId(1), 10).unwrap();
    e.add_volume(VolumeId(2), 11).unwrap();
    e.add_volume(VolumeId(3), 10).unwrap();
    assert!(matches!(
        e.create_map(MapSpec::new(VolumeId(0), VolumeId(2), CopyType::Full)),
        Err(ControlError::SizeMismatch { .. })
    ));
    assert_eq!(
        e.create_map(MapSpec::new(VolumeId(0), VolumeId(0), CopyType::Full)),
        Err(ControlError::SameVolume(VolumeId(0)))
    );
    let m = e
        .create_map(MapSpec::new(VolumeId(0), VolumeId(1), CopyType::Full))
        .unwrap();
    assert_eq!(
        e.create_map(MapSpec::new(VolumeId(3), VolumeId(1), CopyType::Full)),
        Err(ControlError::TargetInUse {
            target: VolumeId(1),
            map: m
        })
    );
    let mut spec = MapSpec::new(VolumeId(0), VolumeId(3), CopyType::Nocopy);
    spec.incremental = true;
    assert_eq!(
        e.create_map(spec.clone()),
        Err(ControlError::IncrementalNeedsFull)
    );
    spec.incremental = false;
    spec.copy_rate = 151;
    assert_eq!(e.create_map(spec), Err(ControlError::RateOutOfRange(151)));
    assert!(matches!(
        e.plan_write(VolumeId(0), 9..11, true),
        Err(timezero::AccessError::OutOfRange { grain: 10, .. })
    ));
    assert_eq!(
        e.resolve_read(VolumeId(9), 0),
        Err(timezero::AccessError::UnknownVolume(VolumeId(9)))
    );
}

#[test]
fn dirty_words_name_the_changed_bitmap_words() {
    let mut e = Engine::new();
    e.add_volume(VolumeId(0), 300).unwrap();
    e.add_volume(VolumeId(1), 300).unwrap();
    let id = e
        .create_map(MapSpec::new(VolumeId(0), VolumeId(1), CopyType::Nocopy))
        .unwrap();
    e.start(id, PREP).unwrap();
    e.take_dirty(id);
    let plan = e.plan_write(VolumeId(0), 200..201, true).unwrap();
    e.commit_copies(&plan.copies);
    assert_eq!(e.take_dirty(id).unwrap().split, vec![3]);
    let words = e.split_bitmap(id).unwrap().as_words().to_vec();
    let mut copy = Engine::load(&e.save()).unwrap();
    copy.set_split_words(id, &words).unwrap();
    assert_eq!(copy.resolve_read(VolumeId(1), 200), Ok(VolumeId(1)));
    assert!(matches!(
        copy.set_split_words(id, &words[..2]),
        Err(ControlError::Bitmap { .. })
    ));
}

#[test]
fn cleaning_waits_for_copies_in_flight_into_the_stopping_target() {
    // [S, T2, T1]: T2 stopping; a host write to S planned before cleaning
    // finishes copies into T2; T2 must not leave before that copy commits.
    let mut e = Engine::new();
    for v in 0..3 {
        e.add_volume(VolumeId(v), 4).unwrap();
    }
    let t1 = e
        .create_map(MapSpec::new(VolumeId(0), VolumeId(1), CopyType::Nocopy))
        .unwrap();
    e.start(t1, PREP).unwrap();
    let t2 = e
        .create_map(MapSpec::new(VolumeId(0), VolumeId(2), CopyType::Nocopy))
        .unwrap();
    e.start(t2, PREP).unwrap();
    let p = e.plan_write(VolumeId(0), 0..1, true).unwrap();
    e.commit_copies(&p.copies);
    e.record_write(VolumeId(0), 0..1);
    e.stop(t2, false).unwrap();
    assert_eq!(e.map_state(t2), Some(MapState::Stopping));
    // In flight: a write to S at grain 1 preserves into T2.
    let inflight = e.plan_write(VolumeId(0), 1..2, true).unwrap();
    assert_eq!(inflight.copies[0].to, VolumeId(2));
    let clean = e.plan_background(t2, 10);
    assert_eq!(clean.len(), 1);
    e.commit_copies(&clean);
    assert_eq!(
        e.map_state(t2),
        Some(MapState::Stopping),
        "must wait for the copy in flight"
    );
    e.commit_copies(&inflight.copies);
    e.record_write(VolumeId(0), 1..2);
    // The committed copy created new cleaning work for grain 1.
    let clean = e.plan_background(t2, 10);
    assert_eq!(clean.iter().map(|c| c.grain).collect::<Vec<_>>(), vec![1]);
    e.commit_copies(&clean);
    assert_eq!(e.map_state(t2), Some(MapState::Stopped));
    assert_eq!(e.resolve_read(VolumeId(1), 1), Ok(VolumeId(1)));
    // Abandoned plans release their maps too.
    let p = e.plan_write(VolumeId(0), 2..3, true).unwrap();
    e.abandon_copies(&p.copies);
    assert_eq!(e.resolve_read(VolumeId(1), 2), Ok(VolumeId(0)));
}

#[test]
fn stop_inside_a_restore_cycle_keeps_resolution_finite() {
    // Reported by the sim (seed 1041): after map0 leaves, the restore target
    // v0 is both the frozen head and the only member of the old chain.
    let mut sim = Sim::new(4, 8);
    let mut spec = MapSpec::new(VolumeId(0), VolumeId(3), CopyType::Full);
    spec.incremental = true;
    spec.copy_rate = 100;
    let map0 = sim.eng.create_map(spec).unwrap();
    let mut spec = MapSpec::new(VolumeId(3), VolumeId(0), CopyType::Full);
    spec.copy_rate = 100;
    let map1 = sim.eng.create_map(spec).unwrap();
    start(&mut sim, map0, PREP);
    start(
        &mut sim,
        map1,
        StartOptions {
            restore: true,
            prepare: true,
        },
    );
    sim.background(map0, 1);
    sim.check();
    assert!(sim.write(VolumeId(0), 7, false));
    sim.check();
    assert!(sim.control(|e| e.stop(map0, false)));
    sim.check();
    for g in 0..8 {
        assert!(sim.write(VolumeId(0), g, g % 2 == 0));
        sim.check();
    }
    while sim.eng.map_state(map1) == Some(MapState::Copying) {
        sim.background(map1, 3);
        sim.check();
    }
}

#[test]
fn group_ids_chosen_by_the_caller_and_diff_replay() {
    let mut e = Engine::new();
    e.add_volume(VolumeId(0), 8).unwrap();
    e.add_volume(VolumeId(1), 8).unwrap();
    let g = timezero::GroupId(5);
    e.create_group_with_id(g, false).unwrap();
    assert_eq!(
        e.create_group_with_id(g, true),
        Err(ControlError::GroupExists(g))
    );
    assert_eq!(e.create_group(false), timezero::GroupId(6));
    let mut spec = MapSpec::new(VolumeId(0), VolumeId(1), CopyType::Full);
    spec.incremental = true;
    let id = e.create_map(spec).unwrap();
    e.mark_diff(id, 2..5).unwrap();
    let info = e.map_info(id).unwrap();
    assert_eq!(
        (info.grains_total, info.grains_split, info.grains_changed),
        (8, 0, Some(3))
    );
    assert_eq!(
        e.mark_diff(MapId(9), 0..1),
        Err(ControlError::UnknownMap(MapId(9)))
    );
}

#[test]
fn run_plans_equal_grain_plans_on_wide_bitmaps() {
    // 300 grains: whole words, partial words, upstream splits.
    let mut sim = Sim::new(3, 300);
    let snap = create(&mut sim, 0, 1, CopyType::Nocopy);
    let clone = create(&mut sim, 0, 2, CopyType::Full);
    start(&mut sim, clone, PREP);
    start(&mut sim, snap, PREP);
    for g in [0, 63, 64, 65, 130, 131, 250, 299] {
        assert!(sim.write(VolumeId(0), g, true));
    }
    // The clone now reads some grains from the snapshot (inserted after it).
    for n in [1, 5, 64, 70, 128, 300] {
        let runs = sim.eng.plan_background_runs(clone, n);
        let expanded: Vec<_> = runs.iter().flat_map(|r| r.copies()).collect();
        sim.eng.abandon_runs(&runs);
        let copies = sim.eng.plan_background(clone, n);
        sim.eng.abandon_copies(&copies);
        assert_eq!(expanded, copies, "max {n}");
        assert!(runs.len() < copies.len().max(2) || n == 1);
    }
    while sim.eng.map_state(clone) == Some(MapState::Copying) {
        sim.background(clone, 100);
        sim.check();
    }
}

#[test]
fn stop_is_refused_while_its_target_is_the_source_of_a_copying_map() {
    // Sim seed 53228, shrunk: map1 v0->v2 full; map0 v1->v0 nocopy restore;
    // map3 v2->v1 full restore; a plain stop of map1 took v2 offline under
    // map3, which then stayed copying at 0 % for ever (LIVE-1).
    let mut sim = Sim::new(4, 8);
    let map0 = create(&mut sim, 1, 0, CopyType::Nocopy);
    let map1 = create(&mut sim, 0, 2, CopyType::Full);
    let map3 = create(&mut sim, 2, 1, CopyType::Full);
    let restore = StartOptions {
        restore: true,
        prepare: true,
    };
    start(&mut sim, map1, PREP);
    start(&mut sim, map0, restore);
    start(&mut sim, map3, restore);
    sim.check();
    let before = sim.eng.save();
    assert_eq!(
        sim.eng.stop(map1, false).unwrap_err(),
        ControlError::SourceOfCopyingMap {
            map: map1,
            target: VolumeId(2),
            dependant: map3
        }
    );
    assert_eq!(before, sim.eng.save(), "a rejected stop changes nothing");
    // Once map3 has finished copying, the same stop is accepted.
    while sim.eng.map_state(map3) == Some(MapState::Copying) {
        sim.background(map3, 3);
        sim.check();
    }
    assert!(sim.control(|e| e.stop(map1, false)));
    sim.check();
}

#[test]
fn restore_cycle_of_three_full_maps_never_leaves_writes_unresolvable() {
    // Issue 12 hole 2: a: x->F0, b: F->x (restore), c: F0->F (restore), then
    // a plain stop of a. Had F0 left x's frozen cascade, F would be its first
    // member while x is the first member of F's frozen cascade: a loop, and
    // every write to x or F unresolvable. The stop is refused instead, and
    // the restores can still be unwound in an order that keeps E4.
    let (x, f0, f) = (0, 1, 2);
    let mut sim = Sim::new(3, 8);
    let a = create(&mut sim, x, f0, CopyType::Full);
    let b = create(&mut sim, f, x, CopyType::Full);
    let c = create(&mut sim, f0, f, CopyType::Full);
    const RESTORE: StartOptions = StartOptions {
        restore: true,
        prepare: true,
    };
    start(&mut sim, a, PREP);
    start(&mut sim, b, RESTORE);
    start(&mut sim, c, RESTORE);
    let before = sim.eng.save();
    let err = sim.eng.stop(a, false).unwrap_err();
    assert!(
        matches!(
            err,
            ControlError::SourceOfCopyingMap { .. } | ControlError::RestoreCycle { .. }
        ),
        "{err}"
    );
    assert_eq!(before, sim.eng.save(), "a refused stop changes nothing");
    for g in 0..8 {
        for v in [x, f0, f] {
            assert!(sim.write(VolumeId(v), g, g % 2 == 0), "write {v}@{g}");
            sim.check();
        }
    }
    assert!(sim.control(|e| e.stop(c, false)));
    sim.check();
    assert!(sim.control(|e| e.stop(a, false)));
    sim.check();
    for _ in 0..32 {
        for id in [a, b, c] {
            sim.background(id, 4);
            sim.check();
        }
    }
    for id in [a, b, c] {
        let st = sim.eng.map_state(id).unwrap();
        assert!(
            !matches!(st, MapState::Copying | MapState::Stopping),
            "map {id} never finished: {st}"
        );
    }
}

#[test]
fn prepare_is_refused_while_the_target_is_an_active_source() {
    // Issue 12: prepare took an active source offline, cutting its snapshot off.
    let mut sim = Sim::new(3, 8);
    let snap = create(&mut sim, 1, 2, CopyType::Nocopy);
    start(&mut sim, snap, PREP);
    let onto = create(&mut sim, 0, 1, CopyType::Full);
    let before = sim.eng.save();
    assert_eq!(
        sim.eng.prepare(onto),
        Err(ControlError::TargetIsActiveSource {
            map: onto,
            target: VolumeId(1)
        })
    );
    assert_eq!(before, sim.eng.save(), "a refused prepare changes nothing");
    assert!(
        sim.write(VolumeId(1), 3, true),
        "the snapshot's source stays online"
    );
    sim.check();
    // A restore prepares anyway and freezes the snapshot's cascade at start.
    sim.eng.prepare_for_restore(onto).unwrap();
    sim.eng.flush_done(onto).unwrap();
    start(
        &mut sim,
        onto,
        StartOptions {
            restore: true,
            prepare: false,
        },
    );
}

#[test]
fn a_cut_map_goes_idle_once_its_first_dependant_holds_everything() {
    // Issue 12: has_dependants waited for every unsplit member of the chain
    // the cut target heads, though only the first one can read it.
    let mut sim = Sim::new(4, 8);
    let a = create(&mut sim, 0, 1, CopyType::Full);
    start(&mut sim, a, PREP);
    // Two dependants of 1: starts insert right after the source, so the
    // chain is [0; 1, 3, 2] and, once a is cut, 1 heads [3, 2].
    let b = create(&mut sim, 1, 2, CopyType::Full);
    start(&mut sim, b, PREP);
    let c = create(&mut sim, 1, 3, CopyType::Full);
    start(&mut sim, c, PREP);
    // Finish a: it is cut and waits while 3 (first after 1) is unsplit.
    for _ in 0..4 {
        sim.background(a, 8);
        sim.check();
    }
    assert!(sim.eng.split_bitmap(a).unwrap().is_full());
    assert_eq!(sim.eng.map_state(a), Some(MapState::Copying), "waits for c");
    for _ in 0..4 {
        sim.background(c, 8);
        sim.check();
    }
    assert!(sim.eng.split_bitmap(c).unwrap().is_full());
    assert_eq!(sim.eng.map_state(b), Some(MapState::Copying));
    assert!(!sim.eng.split_bitmap(b).unwrap().is_full());
    assert_eq!(
        sim.eng.map_state(a),
        Some(MapState::IdleOrCopied),
        "nothing reads 1 any more: b finds every grain in 3"
    );
    for g in 0..8 {
        assert!(sim.write(VolumeId(1), g, g % 2 == 0));
        sim.check();
    }
}

#[test]
fn a_forced_stop_that_would_close_a_restore_loop_is_refused() {
    // Review of issue 12: a forced stop skipped the E4 check. a: x->F0,
    // b: F->x (restore), c: F0->F (restore), then `stop a --force` at once:
    // F0 leaves x's frozen cascade, whose first member becomes F, while x is
    // the first member of F's frozen cascade.
    let (x, f0, f) = (0, 1, 2);
    let mut sim = Sim::new(3, 8);
    let a = create(&mut sim, x, f0, CopyType::Full);
    let b = create(&mut sim, f, x, CopyType::Full);
    let c = create(&mut sim, f0, f, CopyType::Full);
    const RESTORE: StartOptions = StartOptions {
        restore: true,
        prepare: true,
    };
    start(&mut sim, a, PREP);
    start(&mut sim, b, RESTORE);
    start(&mut sim, c, RESTORE);
    let before = sim.eng.save();
    let err = sim.eng.stop(a, true);
    assert!(
        matches!(err, Err(ControlError::RestoreCycle { .. })),
        "{err:?}"
    );
    assert_eq!(before, sim.eng.save(), "a refused stop changes nothing");
    let err = sim.eng.delete(a, true);
    assert!(
        matches!(err, Err(ControlError::RestoreCycle { .. })),
        "{err:?}"
    );
    assert_eq!(before, sim.eng.save(), "a refused delete changes nothing");
    sim.check();
    for g in 0..8 {
        for v in [x, f0, f] {
            sim.write(VolumeId(v), g, g % 2 == 0);
            sim.check();
        }
    }
}

fn session_map(e: &mut Engine, s: u32, t: u32, first: u64, last: u64) -> MapId {
    let mut spec = MapSpec::new(VolumeId(s), VolumeId(t), CopyType::Full);
    spec.extents = Some(geometry::ExtentSet::from(vec![geometry::Extent::new(
        first, last,
    )
    .unwrap()]));
    spec.copy_rate = 0;
    let id = e.create_map(spec).unwrap();
    e.start(id, PREP).unwrap();
    id
}

/// Patent B, claim 1 (E6): extent-limited maps of one backup type join one
/// cascade, so k sessions on a volume cost one copy per host write; each
/// member passes through the grains outside its extents.
#[test]
fn extent_limited_maps_share_one_cascade_and_a_write_copies_once() {
    let mut e = Engine::new();
    for v in 0..5 {
        e.add_volume(VolumeId(v), 64).unwrap();
    }
    let old = session_map(&mut e, 0, 1, 0, 31);
    let mid = session_map(&mut e, 0, 2, 16, 47);
    let new = session_map(&mut e, 0, 3, 40, 63);
    let c = e.cascades();
    assert_eq!(c.len(), 1, "one shared cascade, not one per session: {c:?}");
    assert!(!c[0].private);
    assert_eq!(c[0].members, vec![VolumeId(3), VolumeId(2), VolumeId(1)]);
    // Grain 20: covered by old and mid; the newest covering member (mid)
    // takes the only copy, old reads it through mid.
    let plan = e.plan_write(VolumeId(0), 20..21, true).unwrap();
    assert_eq!(plan.copies.len(), 1, "one copy for two sessions: {plan:?}");
    assert_eq!(plan.copies[0].to, VolumeId(2));
    e.commit_copies(&plan.copies);
    e.record_write(VolumeId(0), 20..21);
    assert_eq!(e.resolve_read(VolumeId(1), 20), Ok(VolumeId(2)));
    // Grain 5: only old covers it; new and mid are transparent there.
    let plan = e.plan_write(VolumeId(0), 5..6, true).unwrap();
    assert_eq!(plan.copies.len(), 1);
    assert_eq!(plan.copies[0].to, VolumeId(1));
    e.commit_copies(&plan.copies);
    // Grain 45: new and mid cover it; the copy goes to new only.
    let plan = e.plan_write(VolumeId(0), 45..46, true).unwrap();
    assert_eq!(plan.copies.len(), 1);
    assert_eq!(plan.copies[0].to, VolumeId(3));
    e.commit_copies(&plan.copies);
    assert_eq!(e.resolve_read(VolumeId(2), 45), Ok(VolumeId(3)));
    // Outside its extents a target reads its own data.
    assert_eq!(e.resolve_read(VolumeId(3), 5), Ok(VolumeId(3)));
    // A map from a transparent member starts a private cascade of its own.
    let from_mid = e
        .create_map(MapSpec::new(VolumeId(2), VolumeId(4), CopyType::Full))
        .unwrap();
    e.start(from_mid, PREP).unwrap();
    let c = e.cascades();
    assert_eq!(c.len(), 2);
    assert!(c.iter().any(|c| c.private && c.head == VolumeId(2)));
    let _ = (old, mid, new);
}

/// A completed extent-limited member is not cut (its own data outside its
/// extents must not become the view of older sessions): it stays, parked
/// at 100 %, until no member reads through it. Withdrawing it (the
/// session's end) hands its grains down first, so the older session's
/// image never changes.
#[test]
fn a_finished_session_map_parks_and_its_withdraw_cleans_before_it_goes() {
    let mut sim = Sim::new(3, 64);
    let spec = |s: u32, t: u32, first: u64, last: u64| {
        let mut spec = MapSpec::new(VolumeId(s), VolumeId(t), CopyType::Full);
        spec.extents = Some(geometry::ExtentSet::from(vec![geometry::Extent::new(
            first, last,
        )
        .unwrap()]));
        spec.copy_rate = 50;
        spec
    };
    let old = sim.eng.create_map(spec(0, 1, 0, 31)).unwrap();
    let new = sim.eng.create_map(spec(0, 2, 0, 31)).unwrap();
    start(&mut sim, old, PREP);
    sim.write(VolumeId(0), 3, true);
    sim.check();
    start(&mut sim, new, PREP);
    // A write both cover: one copy, into the newer target.
    sim.write(VolumeId(0), 7, true);
    sim.check();
    sim.background(new, 64);
    sim.check();
    assert_eq!(sim.eng.map_state(new), Some(MapState::Copying));
    assert_eq!(sim.eng.progress_percent(new), Some(100));
    assert!(
        sim.eng.map_info(new).unwrap().cascade.is_some(),
        "parked in the chain while the older session reads through it"
    );
    // The older session still reads grain 7 through the newer target.
    assert_eq!(sim.eng.resolve_read(VolumeId(1), 7), Ok(VolumeId(2)));
    // Withdraw: stop with cleaning; the older map is not stopped.
    assert!(sim.control(|e| e.withdraw(new).map(|_| ())));
    assert!(sim.eng.is_withdrawn(new));
    assert_eq!(sim.eng.map_state(old), Some(MapState::Copying));
    assert_eq!(sim.eng.clean_remaining(new), Some(31));
    sim.background(new, 64);
    sim.check();
    assert_eq!(sim.eng.map_state(new), None, "deleted once clean");
    // The older target holds every grain now: it finished and left too.
    assert_eq!(sim.eng.map_state(old), Some(MapState::IdleOrCopied));
    assert_eq!(sim.eng.resolve_read(VolumeId(1), 7), Ok(VolumeId(1)));
}

/// A stopping map that was cleaning only for the member below it finishes
/// as soon as that member leaves, not at some later, unrelated commit
/// (found by the model test with withdraws: it finished as a side effect of
/// an abandoned plan).
#[test]
fn a_stopping_map_finishes_when_the_member_it_cleans_for_leaves() {
    let mut sim = Sim::new(3, 16);
    let older = create(&mut sim, 0, 1, CopyType::Nocopy);
    let newer = create(&mut sim, 0, 2, CopyType::Nocopy);
    start(&mut sim, older, PREP);
    start(&mut sim, newer, PREP);
    sim.write(VolumeId(0), 4, true);
    sim.check();
    assert!(sim.control(|e| e.stop(newer, false)));
    assert_eq!(sim.eng.map_state(newer), Some(MapState::Stopping));
    assert!(sim.control(|e| e.stop(older, true)));
    sim.check();
    assert_eq!(
        sim.eng.map_state(newer),
        Some(MapState::Stopped),
        "nothing is left to clean for"
    );
}

/// Bug 21 (docs/RELIABILITY.md): a full target whose map completed and was
/// deleted stays the head of the cascade an older target reads through, so
/// its volume cannot be removed until that target's map is gone.
#[test]
fn a_volume_an_older_target_reads_through_cannot_be_removed() {
    let mut sim = Sim::new(3, 8);
    let mut spec = MapSpec::new(VolumeId(0), VolumeId(1), CopyType::Full);
    spec.copy_rate = 0; // the older copy stays copying
    let older = sim.eng.create_map(spec).unwrap();
    start(&mut sim, older, PREP);
    assert!(sim.write(VolumeId(0), 2, true));
    let newer = create(&mut sim, 0, 2, CopyType::Full);
    start(&mut sim, newer, PREP);
    for g in [2, 5] {
        assert!(sim.write(VolumeId(0), g, true));
        sim.check();
    }
    for _ in 0..8 {
        sim.background(newer, 3);
        sim.check();
    }
    assert!(sim.control(|e| e.stop(newer, false)));
    assert_eq!(sim.eng.map_state(newer), Some(MapState::IdleOrCopied));
    assert!(sim.control(|e| e.delete(newer, false)));
    sim.check();
    let refused = sim.eng.remove_volume(VolumeId(2)).unwrap_err();
    assert!(
        matches!(
            &refused,
            ControlError::VolumeInCascade { volume, dependents, .. }
                if *volume == VolumeId(2) && dependents == &[VolumeId(1)]
        ),
        "{refused:?}"
    );
    sim.check();
    // Once the older map is gone, nothing reads through it.
    assert!(sim.control(|e| e.stop(older, true)));
    assert!(sim.control(|e| e.delete(older, true)));
    assert!(sim.eng.is_plain(VolumeId(2)), "{:?}", sim.eng.cascades());
    sim.eng.remove_volume(VolumeId(2)).unwrap();
}
