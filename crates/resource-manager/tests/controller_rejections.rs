//! Controller refusals reach the resource manager with a matchable [`RejectKind`]: a pair
//! that can never work (size mismatch) is `Invalid`, a target already in use is `Busy`
//! (QA Q15: both used to look like a state error).

use std::sync::Arc;

use controller::{DurabilityMode, Subsystem, SubsystemConfig, VolumeConfig};
use geometry::{Extent, ExtentSet};
use resource_manager::{
    ControllerPort, CopyPair, PortError, RejectKind, ResourceManager, RmError, SessionExtent,
    SessionId, SessionSpec, SubsystemPort,
};

fn open(dir: &std::path::Path) -> Subsystem {
    let vol = |id: &str, model: &str| VolumeConfig {
        id: id.into(),
        model: model.parse().unwrap(),
        read_only: false,
    };
    let config = SubsystemConfig {
        id: "SS1".into(),
        durability: DurabilityMode::Nosync,
        listen: Default::default(),
        nbd: Default::default(),
        rates: Default::default(),
        volumes: vec![
            vol("SRC0", "fb:64K:4K"),
            vol("SRC1", "fb:64K:4K"),
            vol("TGT0", "fb:64K:4K"),
            vol("SMALL", "fb:32K:4K"),
        ],
        peers: Vec::new(),
        host: None,
    };
    Subsystem::open(dir.join("SS1"), config).unwrap()
}

fn pair(source: &str, target: &str) -> CopyPair {
    CopyPair {
        source: source.into(),
        extents: ExtentSet::from(Extent::new(0, 3).unwrap()),
        target: target.into(),
        copy_rate: None,
    }
}

fn reject_kind(e: &PortError) -> Option<RejectKind> {
    match e {
        PortError::Rejected { kind, .. } => Some(*kind),
        _ => None,
    }
}

#[test]
fn size_mismatch_is_invalid_and_busy_target_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let port = ControllerPort::new(open(dir.path()));

    let err = port
        .establish(
            &SessionId::new("S1").unwrap(),
            "SYS1",
            &[pair("SRC0", "SMALL")],
        )
        .unwrap_err();
    assert_eq!(reject_kind(&err), Some(RejectKind::Invalid), "{err}");
    assert!(err.to_string().contains("size mismatch"), "{err}");

    port.establish(
        &SessionId::new("S2").unwrap(),
        "SYS1",
        &[pair("SRC0", "TGT0")],
    )
    .unwrap();
    let err = port
        .establish(
            &SessionId::new("S3").unwrap(),
            "SYS1",
            &[pair("SRC1", "TGT0")],
        )
        .unwrap_err();
    assert_eq!(reject_kind(&err), Some(RejectKind::Busy), "{err}");
    assert!(err.to_string().contains("TGT0"), "{err}");
    assert_eq!(port.subsystem().physical_sessions().len(), 1);
    let _ = port.subsystem().close();
}

#[test]
fn start_session_reports_the_kind_through_rm_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = Arc::new(ControllerPort::new(open(dir.path())));
    let rm = ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).unwrap();
    let spec = SessionSpec {
        id: SessionId::new("BK2").unwrap(),
        program: "DSS".into(),
        host: None,
        copy_rate: None,
        extents: vec![SessionExtent {
            subsystem: "SS1".into(),
            volume: "SRC0".into(),
            extents: ExtentSet::from(Extent::new(0, 3).unwrap()),
            target: "SMALL".into(),
        }],
    };
    let err = rm.start_session(&spec).unwrap_err();
    assert!(
        matches!(
            &err,
            RmError::Port {
                op: "establish",
                source: PortError::Rejected {
                    kind: RejectKind::Invalid,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    assert!(rm.list_sessions().unwrap().is_empty());
    let _ = port.subsystem().close();
}
