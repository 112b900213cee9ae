//! A1, A3 and A4 (docs/SEMANTICS.md, "Invariants (A)") against a real `controller::Subsystem`: random
//! application writes, session starts, copy steps, warmstarts with and without loss of
//! volatile state (with writes between the warmstart and its notification), IPLs,
//! rm-restarts and completions. On completion every target track must equal the source
//! track read right after the start (the time-zero image).
//!
//! Cases: `PROPTEST_CASES` (default 12; each case opens a subsystem in a tempdir).

use std::collections::BTreeMap;
use std::sync::Arc;

use controller::{DurabilityMode, Subsystem, SubsystemConfig, VolumeConfig};
use geometry::{Extent, ExtentSet};
use proptest::prelude::*;
use resource_manager::{
    ControllerPort, Outcome, ResourceManager, RmError, SessionExtent, SessionId, SessionSpec,
    SessionState, SubsystemPort, TerminateReason,
};

const TS: u64 = 4096;
const TRACKS: u64 = 16;
const SRC: [&str; 2] = ["SRC0", "SRC1"];
const TGT: [&str; 4] = ["TGT0", "TGT1", "TGT2", "TGT3"];

#[derive(Clone, Debug)]
enum Op {
    Write(usize, u64),
    Start(usize, u64, u64, usize),
    Copy(u64),
    Reset(bool, Vec<(usize, u64)>),
    Ipl,
    RmRestart,
    Complete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..TRACKS).prop_map(|(v, t)| Op::Write(v, t)),
        3 => (0..2usize, 0..TRACKS, 1..8u64, 0..4usize).prop_map(|(s, a, l, t)| Op::Start(s, a, l, t)),
        3 => (1..6u64).prop_map(Op::Copy),
        3 => (any::<bool>(), prop::collection::vec((0..2usize, 0..TRACKS), 0..5)).prop_map(|(l, w)| Op::Reset(l, w)),
        1 => Just(Op::Ipl),
        1 => Just(Op::RmRestart),
        2 => (0..8usize).prop_map(Op::Complete),
    ]
}

struct Started {
    id: SessionId,
    src: String,
    tgt: String,
    extents: ExtentSet,
    t0: BTreeMap<u64, Vec<u8>>,
    checked: bool,
}

struct H {
    _dir: tempfile::TempDir,
    port: Arc<ControllerPort>,
    rm: ResourceManager,
    started: Vec<Started>,
    token: u64,
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

impl H {
    fn new() -> H {
        let dir = tempfile::tempdir().unwrap();
        let config = SubsystemConfig {
            id: "SS1".into(),
            durability: DurabilityMode::Nosync,
            listen: Default::default(),
            nbd: Default::default(),
            rates: Default::default(),
            volumes: SRC
                .iter()
                .chain(TGT.iter())
                .map(|v| VolumeConfig {
                    id: v.to_string(),
                    model: "fb:64K:4K".parse().unwrap(),
                    read_only: false,
                })
                .collect(),
            peers: Vec::new(),
            host: None,
        };
        let sub = Subsystem::open(dir.path().join("SS1"), config).unwrap();
        let port = Arc::new(ControllerPort::new(sub));
        let rm = ResourceManager::new(vec![port.clone() as Arc<dyn SubsystemPort>]).unwrap();
        H {
            _dir: dir,
            port,
            rm,
            started: Vec::new(),
            token: 1,
        }
    }

    fn sub(&self) -> Subsystem {
        self.port.subsystem()
    }

    fn read(&self, vol: &str, t: u64) -> Vec<u8> {
        let mut b = vec![0u8; TS as usize];
        self.sub().read(vol, t * TS, &mut b).unwrap();
        b
    }

    fn write(&mut self, vol: &str, t: u64) {
        let b = vec![(self.token % 251) as u8 + 1; TS as usize];
        self.token += 1;
        self.sub().write(vol, t * TS, &b, false).unwrap();
    }

    fn new_rm(&mut self) {
        self.rm = ResourceManager::new(vec![self.port.clone() as Arc<dyn SubsystemPort>]).unwrap();
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Write(v, t) => self.write(SRC[*v], *t),
            Op::Start(s, a, l, t) => {
                let id = SessionId::new(format!("S{}", self.started.len())).unwrap();
                let extents =
                    ExtentSet::from(Extent::new(*a, (a + l - 1).min(TRACKS - 1)).unwrap());
                let spec = SessionSpec {
                    id: id.clone(),
                    program: "DSS".into(),
                    host: None,
                    copy_rate: None,
                    extents: vec![SessionExtent {
                        subsystem: "SS1".into(),
                        volume: SRC[*s].into(),
                        extents: extents.clone(),
                        target: TGT[*t].into(),
                    }],
                };
                if self.rm.start_session(&spec).is_ok() {
                    let t0 = extents
                        .tracks()
                        .map(|t| (t, self.read(SRC[*s], t)))
                        .collect();
                    self.started.push(Started {
                        id,
                        src: SRC[*s].into(),
                        tgt: TGT[*t].into(),
                        extents,
                        t0,
                        checked: false,
                    });
                }
            }
            Op::Copy(n) => {
                self.sub().copy_step(n * TS).map_err(fail)?;
            }
            Op::Reset(lose, writes) => {
                let open: Vec<(SessionId, u8)> = self
                    .rm
                    .list_sessions()
                    .map_err(fail)?
                    .into_iter()
                    .filter(|i| !i.state.is_terminal())
                    .map(|i| (i.id, i.parts[0].phys.get()))
                    .collect();
                let report = self.sub().reset(*lose).map_err(fail)?;
                for (v, t) in writes {
                    self.write(SRC[*v], *t);
                }
                let d = self.rm.on_reset("SS1").map_err(fail)?;
                for (id, phys) in open {
                    // A3: resumed iff the warmstart kept the physical session.
                    let want = if report.sessions_lost.contains(&phys) {
                        Outcome::Terminated(TerminateReason::ResetMismatch)
                    } else {
                        Outcome::Resumed
                    };
                    prop_assert_eq!(d.get(id.as_str()).map(|x| x.outcome), Some(want), "{}", d);
                }
            }
            Op::Ipl | Op::RmRestart => {
                if matches!(op, Op::Ipl) {
                    let new = self.sub().ipl().map_err(fail)?;
                    self.port.replace(new);
                }
                self.new_rm();
                if matches!(op, Op::Ipl) {
                    self.rm.on_ipl().map_err(fail)?;
                } else {
                    self.rm.on_rm_restart().map_err(fail)?;
                }
                // A1: nothing open, nothing established.
                prop_assert!(self.sub().physical_sessions().is_empty());
                for i in self.rm.list_sessions().map_err(fail)? {
                    prop_assert!(i.state.is_terminal(), "{} is {}", i.id, i.state);
                }
            }
            Op::Complete(i) => {
                if self.started.is_empty() {
                    return Ok(());
                }
                let n = self.started.len();
                let idx = i % n;
                match self.rm.complete_session(&self.started[idx].id) {
                    Ok(()) if !self.started[idx].checked => {
                        // A4: the finished copy equals the time-zero image.
                        let st = &self.started[idx];
                        for t in st.extents.tracks() {
                            let got = self.read(&st.tgt, t);
                            prop_assert!(
                                got == st.t0[&t],
                                "{} {}->{} track {}",
                                st.id,
                                st.src,
                                st.tgt,
                                t
                            );
                        }
                        self.started[idx].checked = true;
                    }
                    Ok(())
                    | Err(RmError::CopyIncomplete { .. })
                    | Err(RmError::SessionTerminated { .. }) => {}
                    Err(e) => return Err(fail(e)),
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(12),
        ..ProptestConfig::default()
    })]

    #[test]
    fn resumed_sessions_finish_with_the_time_zero_image(ops in prop::collection::vec(op(), 1..25)) {
        let mut h = H::new();
        for op in &ops {
            h.apply(op)?;
        }
        loop {
            let r = h.sub().copy_step(u64::MAX / 2).map_err(fail)?;
            if r.grains == 0 {
                break;
            }
        }
        for i in 0..h.started.len() {
            h.apply(&Op::Complete(i))?;
        }
        for i in h.rm.list_sessions().map_err(fail)? {
            prop_assert!(matches!(i.state, SessionState::Completed | SessionState::Terminated(_)), "{} {}", i.id, i.state);
        }
        let _ = h.sub().close();
    }
}
