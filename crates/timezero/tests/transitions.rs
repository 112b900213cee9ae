//! Every cell of the state transition table (docs/SEMANTICS.md,
//! "Transitions"): allowed requests reach the listed state, every other
//! request is a typed `InvalidState` naming the map, the operation and the
//! state, and changes nothing.

use timezero::{
    ControlError, CopyType, Engine, MapId, MapSpec, MapState, Operation, StartOptions, VolumeId,
};

const PREP: StartOptions = StartOptions {
    restore: false,
    prepare: true,
};

/// An engine where map `m` (S=0 -> T=1, nocopy) is in `state`. For stopping,
/// a second snapshot (0 -> 2) downstream still needs cleaning.
fn engine_in(state: MapState) -> (Engine, MapId) {
    let mut e = Engine::new();
    for v in 0..3 {
        e.add_volume(VolumeId(v), 8).unwrap();
    }
    let older = e
        .create_map(MapSpec::new(VolumeId(0), VolumeId(2), CopyType::Nocopy))
        .unwrap();
    let m = e
        .create_map(MapSpec::new(VolumeId(0), VolumeId(1), CopyType::Nocopy))
        .unwrap();
    match state {
        MapState::IdleOrCopied => {}
        MapState::Preparing => e.prepare(m).unwrap(),
        MapState::Prepared => {
            e.prepare(m).unwrap();
            e.flush_done(m).unwrap();
        }
        MapState::Copying => e.start(m, PREP).unwrap(),
        MapState::Stopping => {
            e.start(older, PREP).unwrap();
            e.start(m, PREP).unwrap();
            let p = e.plan_write(VolumeId(0), 0..1, true).unwrap();
            e.commit_copies(&p.copies);
            e.record_write(VolumeId(0), 0..1);
            e.stop(m, false).unwrap();
        }
        MapState::Stopped => {
            e.start(m, PREP).unwrap();
            e.stop(m, true).unwrap();
        }
        MapState::Suspended => {
            e.start(m, PREP).unwrap();
            e.suspend(m).unwrap();
        }
    }
    assert_eq!(e.map_state(m), Some(state));
    e.take_events();
    (e, m)
}

#[derive(Clone, Copy, Debug)]
enum Req {
    Prepare,
    FlushDone,
    FlushFailed,
    Start,
    StartPrep,
    Stop,
    StopForce,
    Delete,
    DeleteForce,
    Suspend,
    Resume,
}

fn run(e: &mut Engine, m: MapId, r: Req) -> Result<(), ControlError> {
    match r {
        Req::Prepare => e.prepare(m),
        Req::FlushDone => e.flush_done(m),
        Req::FlushFailed => e.flush_failed(m),
        Req::Start => e.start(m, StartOptions::default()),
        Req::StartPrep => e.start(m, PREP),
        Req::Stop => e.stop(m, false),
        Req::StopForce => e.stop(m, true),
        Req::Delete => e.delete(m, false),
        Req::DeleteForce => e.delete(m, true),
        Req::Suspend => e.suspend(m),
        Req::Resume => e.resume(m),
    }
}

fn op_of(r: Req) -> Operation {
    match r {
        Req::Prepare => Operation::Prepare,
        Req::FlushDone => Operation::FlushDone,
        Req::FlushFailed => Operation::FlushFailed,
        Req::Start | Req::StartPrep => Operation::Start,
        Req::Stop => Operation::Stop,
        Req::StopForce => Operation::StopForce,
        Req::Delete => Operation::Delete,
        Req::DeleteForce => Operation::DeleteForce,
        Req::Suspend => Operation::Suspend,
        Req::Resume => Operation::Resume,
    }
}

/// `Some(state after)` (None = deleted) for allowed cells; `Err(())` for rejected ones.
fn expected(from: MapState, r: Req) -> Result<Option<MapState>, ()> {
    use MapState::*;
    let same = Ok(Some(from));
    match (from, r) {
        (IdleOrCopied, Req::Prepare) => Ok(Some(Preparing)),
        (IdleOrCopied, Req::StartPrep) => Ok(Some(Copying)),
        (IdleOrCopied, Req::Stop | Req::StopForce) => same,
        (IdleOrCopied, Req::Delete | Req::DeleteForce) => Ok(None),
        (Preparing, Req::FlushDone) => Ok(Some(Prepared)),
        (Preparing, Req::FlushFailed | Req::Stop | Req::StopForce) => Ok(Some(Stopped)),
        (Prepared, Req::Start | Req::StartPrep) => Ok(Some(Copying)),
        (Prepared, Req::Stop | Req::StopForce) => Ok(Some(Stopped)),
        // Map 1 is the tail of its cascade: nothing to clean, straight to stopped.
        (Copying, Req::Stop | Req::StopForce) => Ok(Some(Stopped)),
        (Copying, Req::DeleteForce) => Ok(None),
        (Copying, Req::Suspend) => Ok(Some(Suspended)),
        (Stopping, Req::Stop) => same,
        (Stopping, Req::StopForce) => Ok(Some(Stopped)),
        (Stopping, Req::Suspend) => Ok(Some(Suspended)),
        (Stopped, Req::Prepare) => Ok(Some(Preparing)),
        (Stopped, Req::StartPrep) => Ok(Some(Copying)),
        (Stopped, Req::Stop | Req::StopForce) => same,
        (Stopped, Req::DeleteForce) => Ok(None),
        // Stays suspended and resumes into stopping (docs/ENGINE.md,
        // "Decisions the semantics leave open").
        (Suspended, Req::Stop) => same,
        (Suspended, Req::StopForce) => Ok(Some(Stopped)),
        (Suspended, Req::Resume) => Ok(Some(Copying)),
        _ => Err(()),
    }
}

#[test]
fn every_cell_of_the_transition_table() {
    use MapState::*;
    let reqs = [
        Req::Prepare,
        Req::FlushDone,
        Req::FlushFailed,
        Req::Start,
        Req::StartPrep,
        Req::Stop,
        Req::StopForce,
        Req::Delete,
        Req::DeleteForce,
        Req::Suspend,
        Req::Resume,
    ];
    let mut rejected = 0;
    for from in [
        IdleOrCopied,
        Preparing,
        Prepared,
        Copying,
        Stopping,
        Stopped,
        Suspended,
    ] {
        for r in reqs {
            let (mut e, m) = engine_in(from);
            let before = e.save();
            let got = run(&mut e, m, r);
            match expected(from, r) {
                Ok(after) => {
                    assert!(got.is_ok(), "{r:?} in {from} refused: {got:?}");
                    assert_eq!(e.map_state(m), after, "{r:?} in {from}");
                }
                Err(()) => {
                    rejected += 1;
                    assert_eq!(
                        got,
                        Err(ControlError::InvalidState {
                            map: m,
                            op: op_of(r),
                            state: from
                        }),
                        "{r:?} in {from}"
                    );
                    assert_eq!(before, e.save(), "rejected {r:?} in {from} changed state");
                }
            }
        }
    }
    assert!(rejected > 40);
}

#[test]
fn stopping_with_cleaning_then_idle_or_stopped() {
    let (mut e, m) = engine_in(MapState::Stopping);
    // Target offline while below 100 %.
    assert!(matches!(
        e.resolve_read(VolumeId(1), 0),
        Err(timezero::AccessError::TargetOffline { .. })
    ));
    let copies = e.plan_background(m, 10);
    assert_eq!(copies.len(), 1);
    assert_eq!(
        (copies[0].from, copies[0].to, copies[0].grain),
        (VolumeId(1), VolumeId(2), 0)
    );
    e.commit_copies(&copies);
    assert_eq!(e.map_state(m), Some(MapState::Stopped));
    assert!(e
        .take_events()
        .contains(&timezero::EngineEvent::CleaningDone { map: m }));
    // The older snapshot keeps the preserved grain; the stopped target is out.
    assert_eq!(e.resolve_read(VolumeId(2), 0), Ok(VolumeId(2)));
    assert_eq!(e.cascades()[0].members, vec![VolumeId(2)]);
}

#[test]
fn suspended_volumes_are_offline_and_resume_restores_access() {
    let (mut e, m) = engine_in(MapState::Suspended);
    for v in [0, 1] {
        assert!(matches!(
            e.plan_write(VolumeId(v), 0..1, true),
            Err(timezero::AccessError::Suspended { .. })
        ));
    }
    e.stop(m, false).unwrap();
    assert_eq!(e.map_info(m).unwrap().resume_to, Some(MapState::Stopping));
    e.resume(m).unwrap();
    // Tail of the cascade: nothing to clean, so stopping finishes at once.
    assert_eq!(e.map_state(m), Some(MapState::Stopped));
    assert!(e.plan_write(VolumeId(0), 0..1, true).is_ok());
}

/// `map stop AB` is refused while B -> C still copies from B; `map stop AB
/// --force` stops B -> C too exactly when C's image reads a grain B holds
/// (I6). When B holds nothing C reads, C's unsplit grains resolve past B to
/// A, whose data there is still the image, so B -> C goes on copying (QA:
/// the refusal's hint said the forced stop stops it regardless).
#[test]
fn force_stop_stops_a_map_copying_from_the_target_only_if_it_reads_what_the_target_holds() {
    for copied_first in [false, true] {
        let mut e = Engine::new();
        for v in 0..3 {
            e.add_volume(VolumeId(v), 8).unwrap();
        }
        let ab = e
            .create_map(MapSpec::new(VolumeId(0), VolumeId(1), CopyType::Full))
            .unwrap();
        let bc = e
            .create_map(MapSpec::new(VolumeId(1), VolumeId(2), CopyType::Full))
            .unwrap();
        e.start(ab, PREP).unwrap();
        if copied_first {
            // B holds grain 0 of its own, which C then reads through B.
            let p = e.plan_write(VolumeId(0), 0..1, true).unwrap();
            e.commit_copies(&p.copies);
            e.record_write(VolumeId(0), 0..1);
        }
        e.start(bc, PREP).unwrap();
        let refused = e.stop(ab, false).unwrap_err();
        assert!(
            matches!(refused, ControlError::SourceOfCopyingMap { dependant, .. } if dependant == bc),
            "{refused:?}"
        );
        assert_eq!(e.dependent_maps(ab).contains(&bc), copied_first);
        e.stop(ab, true).unwrap();
        assert_eq!(e.map_state(ab), Some(MapState::Stopped));
        let want = if copied_first {
            MapState::Stopped
        } else {
            MapState::Copying
        };
        assert_eq!(e.map_state(bc), Some(want), "copied_first {copied_first}");
    }
}
