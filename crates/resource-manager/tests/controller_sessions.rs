//! The resource manager over a real controller through `ControllerPort`: entries in the
//! subsystem and volume tables, the controller's session limits as clear errors, and an IPL
//! replay that leaves no physical session behind.

use std::sync::Arc;

use activity_table::EntryStatus;
use controller::{
    DurabilityMode, Subsystem, SubsystemConfig, VolumeConfig, MAX_SESSIONS_PER_VOLUME,
};
use geometry::{Extent, ExtentSet};
use resource_manager::{
    ControllerPort, PortError, ResourceManager, RmError, SessionExtent, SessionId, SessionSpec,
    SessionState, SubsystemPort, TerminateReason,
};

fn open(dir: &std::path::Path, targets: usize) -> Subsystem {
    let mut volumes = vec![VolumeConfig {
        id: "SRC0".into(),
        model: "fb:64K:4K".parse().unwrap(),
        read_only: false,
    }];
    for i in 0..targets {
        volumes.push(VolumeConfig {
            id: format!("TGT{i:02}"),
            model: "fb:64K:4K".parse().unwrap(),
            read_only: false,
        });
    }
    let config = SubsystemConfig {
        id: "SS1".into(),
        durability: DurabilityMode::Nosync,
        listen: Default::default(),
        nbd: Default::default(),
        rates: Default::default(),
        volumes,
        peers: Vec::new(),
        host: None,
    };
    Subsystem::open(dir.join("SS1"), config).unwrap()
}

fn spec(n: usize) -> SessionSpec {
    SessionSpec {
        id: SessionId::new(format!("S{n:02}")).unwrap(),
        program: "DSS".into(),
        host: None,
        copy_rate: None,
        extents: vec![SessionExtent {
            subsystem: "SS1".into(),
            volume: "SRC0".into(),
            extents: ExtentSet::from(Extent::new(0, 3).unwrap()),
            target: format!("TGT{n:02}"),
        }],
    }
}

#[test]
fn limits_are_clear_errors_and_ipl_replay_withdraws_everything() {
    let dir = tempfile::tempdir().unwrap();
    let port = Arc::new(ControllerPort::new(open(
        dir.path(),
        MAX_SESSIONS_PER_VOLUME + 1,
    )));
    let rm = ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).unwrap();
    for n in 0..MAX_SESSIONS_PER_VOLUME {
        rm.start_session(&spec(n)).unwrap();
    }
    let err = rm
        .start_session(&spec(MAX_SESSIONS_PER_VOLUME))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            RmError::Port {
                op: "establish",
                source: PortError::Limit { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("SRC0"), "{err}");
    assert_eq!(rm.list_sessions().unwrap().len(), MAX_SESSIONS_PER_VOLUME);

    let sub = port.subsystem();
    let vol = sub.volume_activity_entries("SRC0").unwrap();
    assert_eq!(vol.len(), MAX_SESSIONS_PER_VOLUME);
    assert!(vol.iter().all(|e| e.status == EntryStatus::Initiated));
    assert_eq!(sub.physical_sessions().len(), MAX_SESSIONS_PER_VOLUME);

    // IPL: new subsystem handle, new resource manager, replay.
    port.replace(sub.ipl().unwrap());
    let rm = ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).unwrap();
    let d = rm.on_ipl().unwrap();
    assert_eq!(d.acted().count(), MAX_SESSIONS_PER_VOLUME, "{d}");
    let sub = port.subsystem();
    assert!(sub.physical_sessions().is_empty());
    let vol = sub.volume_activity_entries("SRC0").unwrap();
    assert_eq!(vol.len(), 2 * MAX_SESSIONS_PER_VOLUME);
    assert!(vol[MAX_SESSIONS_PER_VOLUME..].iter().all(|e| e.status
        == EntryStatus::Terminated {
            reason: TerminateReason::Ipl
        }));
    for s in rm.list_sessions().unwrap() {
        assert_eq!(s.state, SessionState::Terminated(TerminateReason::Ipl));
    }
    // The freed ids can be used again, and a replay of the old rows does not touch them.
    rm.start_session(&spec(MAX_SESSIONS_PER_VOLUME)).unwrap();
    let d = rm.on_reset("SS1").unwrap();
    assert_eq!(d.acted().count(), 1, "{d}");
    assert_eq!(port.subsystem().physical_sessions().len(), 1);
    let _ = port.subsystem().close();
}

fn pair(id: &str, program: &str, source: &str, target: &str) -> SessionSpec {
    SessionSpec {
        id: SessionId::new(id).unwrap(),
        program: program.into(),
        host: None,
        copy_rate: None,
        extents: vec![SessionExtent {
            subsystem: "SS1".into(),
            volume: source.into(),
            extents: ExtentSet::from(Extent::new(0, 3).unwrap()),
            target: target.into(),
        }],
    }
}

fn state(rm: &ResourceManager, id: &str) -> SessionState {
    rm.session(&SessionId::new(id).unwrap())
        .unwrap()
        .unwrap()
        .state
}

#[test]
fn an_abend_settles_the_sessions_its_withdraws_break() {
    // Issue 12 hole 3: P's session SRC0 -> TGT00 and Q's session TGT00 ->
    // TGT01 (Q's source is P's target). The abend of P withdraws P's session,
    // whose forced stop stops Q's map as a dependant: Q must be terminated in
    // the same event, not reported untouched with no physical session.
    let dir = tempfile::tempdir().unwrap();
    let port = Arc::new(ControllerPort::new(open(dir.path(), 2)));
    let rm = ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).unwrap();
    rm.start_session(&pair("P1", "P", "SRC0", "TGT00")).unwrap();
    rm.start_session(&pair("Q1", "Q", "TGT00", "TGT01"))
        .unwrap();
    let report = rm.on_abend("P").unwrap();
    assert!(report.complete(), "{:?}", report.problems);
    assert_eq!(
        state(&rm, "P1"),
        SessionState::Terminated(TerminateReason::Abend)
    );
    assert_eq!(
        state(&rm, "Q1"),
        SessionState::Terminated(TerminateReason::ImageLost),
        "{report:?}"
    );
    let q = report.get("Q1").expect("Q1 decided");
    assert!(q.acted, "{q:?}");
    assert!(
        port.subsystem().physical_sessions().is_empty(),
        "nothing half-way: no physical session serves a terminated session"
    );
    // A5: the same event again decides nothing new.
    let again = rm.on_abend("P").unwrap();
    assert!(again.decisions.iter().all(|d| !d.acted), "{again:?}");
    // Q's rows say why, in both tables.
    let rows = port.subsystem().volume_activity_entries("TGT00").unwrap();
    assert!(
        rows.iter().any(|e| e.session_id.as_str() == "Q1"
            && e.status
                == EntryStatus::Terminated {
                    reason: TerminateReason::ImageLost
                }),
        "{rows:?}"
    );
}

#[test]
fn operator_termination_writes_operator_rows_and_frees_the_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let port = Arc::new(ControllerPort::new(open(dir.path(), 2)));
    let rm = ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).unwrap();
    rm.start_session(&pair("K1", "P", "SRC0", "TGT00")).unwrap();
    rm.start_session(&pair("K2", "P", "TGT00", "TGT01"))
        .unwrap();
    let k1 = SessionId::new("K1").unwrap();
    rm.terminate_session(&k1, "test").unwrap();
    assert_eq!(
        state(&rm, "K1"),
        SessionState::Terminated(TerminateReason::Operator)
    );
    // K2 read through K1's target: its image went with K1's withdraw.
    assert_eq!(
        state(&rm, "K2"),
        SessionState::Terminated(TerminateReason::ImageLost)
    );
    assert!(port.subsystem().physical_sessions().is_empty());
    rm.terminate_session(&k1, "again").unwrap();
    assert_eq!(
        state(&rm, "K1"),
        SessionState::Terminated(TerminateReason::Operator),
        "the first reason stays"
    );
    assert!(matches!(
        rm.complete_session(&k1),
        Err(RmError::SessionTerminated { .. })
    ));
    rm.start_session(&pair("K3", "P", "SRC0", "TGT00")).unwrap();
}
