//! Activity-table faults injected through the controller's `OpenOptions::faults`
//! (sites `table.append`, `table.sync`): a session start whose Initiated entries
//! cannot be written fails with an error naming the cause, leaves no physical
//! session and no open row behind (the start is recorded as failed), and an
//! IPL afterwards replays to a consistent state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use activity_table::EntryStatus;
use controller::{DurabilityMode, OpenOptions, Subsystem, SubsystemConfig, VolumeConfig};
use geometry::{Extent, ExtentSet};
use resource_manager::{
    ControllerPort, PortError, ResourceManager, RmError, SessionExtent, SessionId, SessionSpec,
    SessionState, SubsystemPort, TerminateReason,
};
use volume_store::{ErrorKind, FaultPoint, FaultSite, Op, StoreError};

/// Fails the `n`th check of `site` from now on (counting from 1); 0: never.
struct FailNth {
    site: FaultSite,
    n: AtomicU64,
}

impl FailNth {
    fn arm(&self, n: u64) {
        self.n.store(n, Ordering::SeqCst);
    }
}

impl FaultPoint for FailNth {
    fn check(&self, site: FaultSite) -> Result<(), StoreError> {
        if site != self.site {
            return Ok(());
        }
        match self.n.load(Ordering::SeqCst) {
            0 => Ok(()),
            1 => {
                self.n.store(0, Ordering::SeqCst);
                Err(StoreError::new(ErrorKind::Io, "-", Op::Site(site), "").injected())
            }
            n => {
                self.n.store(n - 1, Ordering::SeqCst);
                Ok(())
            }
        }
    }
}

fn open(dir: &std::path::Path, faults: Arc<FailNth>) -> Subsystem {
    let volumes = ["SRC0", "TGT0"]
        .iter()
        .map(|v| VolumeConfig {
            id: v.to_string(),
            model: "fb:64K:4K".parse().unwrap(),
            read_only: false,
        })
        .collect();
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
    let options = OpenOptions {
        faults: Some(faults as Arc<dyn FaultPoint>),
        ..OpenOptions::default()
    };
    Subsystem::open_with(dir.join("SS1"), config, options).unwrap()
}

fn spec() -> SessionSpec {
    SessionSpec {
        id: SessionId::new("S1").unwrap(),
        program: "DSS".into(),
        host: None,
        copy_rate: None,
        extents: vec![SessionExtent {
            subsystem: "SS1".into(),
            volume: "SRC0".into(),
            extents: ExtentSet::from(Extent::new(0, 3).unwrap()),
            target: "TGT0".into(),
        }],
    }
}

fn failed_append(e: &RmError) -> String {
    match e {
        RmError::Port {
            op: "append",
            source: PortError::Failed { reason },
            ..
        } => reason.clone(),
        other => panic!("not a failed append: {other:?}"),
    }
}

#[test]
fn a_start_whose_subsystem_table_append_fails_is_decided_and_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FailNth {
        site: FaultSite::TableAppend,
        n: AtomicU64::new(0),
    });
    let port = Arc::new(ControllerPort::new(open(dir.path(), faults.clone())));
    let rm = ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).unwrap();
    faults.arm(1);
    let e = rm.start_session(&spec()).unwrap_err();
    let reason = failed_append(&e);
    assert!(reason.contains("subsystem table"), "{reason}");
    assert!(reason.contains("table.append"), "{reason}");
    assert!(reason.contains("injected"), "{reason}");
    let sub = port.subsystem();
    assert!(sub.physical_sessions().is_empty(), "establish rolled back");
    // The rollback records the start as failed (it cannot know what part of
    // a failed append reached the file), so the id is decided, not open.
    let s = rm.session(&spec().id).unwrap().expect("recorded");
    assert_eq!(
        s.state,
        SessionState::Terminated(TerminateReason::StartFailed)
    );
    assert!(matches!(
        rm.start_session(&spec()).unwrap_err(),
        RmError::DuplicateSession { .. }
    ));
    let mut again = spec();
    again.id = SessionId::new("S2").unwrap();
    rm.start_session(&again).unwrap();
    assert_eq!(sub.physical_sessions().len(), 1);

    port.replace(sub.ipl().unwrap());
    let rm = ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).unwrap();
    let d = rm.on_ipl().unwrap();
    assert_eq!(d.acted().count(), 1, "only S2 was running: {d}");
    let sub = port.subsystem();
    assert!(sub.physical_sessions().is_empty());
    let rows: Vec<(String, EntryStatus)> = sub
        .activity_entries()
        .unwrap()
        .into_iter()
        .map(|e| (e.session_id.as_str().to_string(), e.status))
        .collect();
    let terminated = |reason| EntryStatus::Terminated { reason };
    assert_eq!(
        rows,
        vec![
            ("S1".into(), terminated(TerminateReason::StartFailed)),
            ("S2".into(), EntryStatus::Initiated),
            ("S2".into(), terminated(TerminateReason::Ipl)),
        ]
    );
    let _ = sub.close();
}

#[test]
fn a_start_whose_volume_table_append_fails_is_recorded_as_start_failed() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FailNth {
        site: FaultSite::TableAppend,
        n: AtomicU64::new(0),
    });
    let port = Arc::new(ControllerPort::new(open(dir.path(), faults.clone())));
    let rm = ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).unwrap();
    // Check 1: the subsystem table (written); check 2: the volume table (fails).
    faults.arm(2);
    let e = rm.start_session(&spec()).unwrap_err();
    assert!(failed_append(&e).contains("table.append"), "{e}");
    let sub = port.subsystem();
    assert!(sub.physical_sessions().is_empty(), "establish rolled back");
    let s = rm.session(&spec().id).unwrap().expect("recorded");
    assert_eq!(
        s.state,
        SessionState::Terminated(TerminateReason::StartFailed)
    );
    // The decision is durable: an IPL has nothing left to settle.
    port.replace(sub.ipl().unwrap());
    let rm = ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).unwrap();
    let d = rm.on_ipl().unwrap();
    assert_eq!(d.acted().count(), 0, "{d}");
    let s = rm.session(&spec().id).unwrap().expect("recorded");
    assert_eq!(
        s.state,
        SessionState::Terminated(TerminateReason::StartFailed)
    );
    assert!(port.subsystem().physical_sessions().is_empty());
    let _ = port.subsystem().close();
}

#[test]
fn a_start_whose_table_sync_fails_is_settled_by_the_ipl() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FailNth {
        site: FaultSite::TableSync,
        n: AtomicU64::new(0),
    });
    let port = Arc::new(ControllerPort::new(open(dir.path(), faults.clone())));
    let rm = ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).unwrap();
    faults.arm(1);
    let e = rm.start_session(&spec()).unwrap_err();
    assert!(failed_append(&e).contains("table.sync"), "{e}");
    let sub = port.subsystem();
    assert!(sub.physical_sessions().is_empty(), "establish rolled back");
    // The subsystem table is poisoned until the IPL: starts fail clearly.
    let e = rm.start_session(&spec()).unwrap_err();
    assert!(
        matches!(e, RmError::Port { .. }) && e.to_string().contains("SS1"),
        "{e}"
    );
    port.replace(sub.ipl().unwrap());
    let rm = ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).unwrap();
    rm.on_ipl().unwrap();
    // The Initiated record whose sync failed may have reached the file; if so
    // the IPL terminated it. Either way nothing is active or half-recorded.
    for s in rm.list_sessions().unwrap() {
        assert!(matches!(s.state, SessionState::Terminated(_)), "{s:?}");
    }
    assert!(port.subsystem().physical_sessions().is_empty());
    let d = rm.on_ipl().unwrap();
    assert_eq!(d.acted().count(), 0, "replay is idempotent: {d}");
    let _ = port.subsystem().close();
}

#[test]
fn a_recovery_whose_volume_table_append_fails_is_carried_out_once_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FailNth {
        site: FaultSite::TableAppend,
        n: AtomicU64::new(0),
    });
    let port = Arc::new(ControllerPort::new(open(dir.path(), faults.clone())));
    let rm = ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).unwrap();
    rm.start_session(&spec()).unwrap();
    assert_eq!(port.subsystem().physical_sessions().len(), 1);
    // The Terminated entries reach the subsystem table (check 1), not the
    // volume table (check 2): the decision is recorded where the resource
    // manager reads it, so it is carried out now (the physical session must
    // not linger behind a terminated session until some later event).
    faults.arm(2);
    let rm = ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).unwrap();
    let d = rm.on_rm_restart().unwrap();
    assert!(d.problems.is_empty(), "carried out: {d}");
    assert_eq!(d.acted().count(), 1, "{d}");
    assert!(port.subsystem().physical_sessions().is_empty(), "{d}");
    let s = rm.session(&spec().id).unwrap().expect("recorded");
    assert_eq!(
        s.state,
        SessionState::Terminated(TerminateReason::RmRestart)
    );
    let d = rm.on_rm_restart().unwrap();
    assert_eq!(d.acted().count(), 0, "{d}");
    assert!(d.orphans.is_empty(), "{d}");
    let _ = port.subsystem().close();
}

#[test]
fn a_recovery_whose_subsystem_table_append_fails_keeps_the_session_for_the_next_event() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FailNth {
        site: FaultSite::TableAppend,
        n: AtomicU64::new(0),
    });
    let port = Arc::new(ControllerPort::new(open(dir.path(), faults.clone())));
    let rm = ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).unwrap();
    rm.start_session(&spec()).unwrap();
    faults.arm(1);
    let rm = ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).unwrap();
    let d = rm.on_rm_restart().unwrap();
    assert_eq!(d.problems.len(), 1, "{d}");
    // Nothing recorded: the physical session stays with its open rows.
    assert_eq!(port.subsystem().physical_sessions().len(), 1);
    assert_eq!(
        rm.session(&spec().id).unwrap().expect("recorded").state,
        SessionState::Active
    );
    // The next event settles it.
    let d = rm.on_rm_restart().unwrap();
    assert!(d.problems.is_empty(), "{d}");
    assert_eq!(d.acted().count(), 1, "{d}");
    assert!(port.subsystem().physical_sessions().is_empty());
    let _ = port.subsystem().close();
}

#[test]
fn a_completion_whose_volume_table_append_fails_completes_once_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FailNth {
        site: FaultSite::TableAppend,
        n: AtomicU64::new(0),
    });
    let port = Arc::new(ControllerPort::new(open(dir.path(), faults.clone())));
    let rm = ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).unwrap();
    rm.start_session(&spec()).unwrap();
    while port.subsystem().copy_step(1 << 30).unwrap().more {}
    faults.arm(2);
    rm.complete_session(&spec().id).unwrap();
    assert!(port.subsystem().physical_sessions().is_empty());
    let s = rm.session(&spec().id).unwrap().expect("recorded");
    assert_eq!(s.state, SessionState::Completed);
    // A completion whose entries were not recorded at all fails and changes nothing.
    let mut other = spec();
    other.id = SessionId::new("S2").unwrap();
    rm.start_session(&other).unwrap();
    while port.subsystem().copy_step(1 << 30).unwrap().more {}
    faults.arm(1);
    let e = rm.complete_session(&other.id).unwrap_err();
    assert!(failed_append(&e).contains("table.append"), "{e}");
    assert_eq!(port.subsystem().physical_sessions().len(), 1);
    let s = rm.session(&other.id).unwrap().expect("recorded");
    assert_eq!(s.state, SessionState::Active);
    rm.complete_session(&other.id).unwrap();
    assert!(port.subsystem().physical_sessions().is_empty());
    let _ = port.subsystem().close();
}
