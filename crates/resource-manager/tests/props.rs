//! Property tests of invariants A1-A6 (docs/SEMANTICS.md, "Invariants (A)") over random
//! interleavings of session starts and completions by two hosts, application writes,
//! background copy, restart events (of the machine, or of one host alone), reset
//! notifications with random losses, and crashes of the resource manager at random port
//! calls, against `VirtualSubsystem`s (two subsystems, `A` and `B`). A1 is checked per
//! host: a host's restart event ends that host's sessions and no other host's.
//!
//! Cases: `PROPTEST_CASES` (default 64); see docs/TESTING.md.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use geometry::ExtentSet;
use proptest::prelude::*;
use resource_manager::{
    Outcome, PhysSessionId, ResetLoss, ResourceManager, RmError, SessionSpec, SessionState,
    SubsystemPort, TerminateReason,
};

const SUBS: [&str; 2] = ["A", "B"];
const PROGRAMS: [&str; 2] = ["P0", "P1"];
/// `SYS1` is the resource manager's own host (`DEFAULT_HOST`).
const HOSTS: [&str; 2] = ["SYS1", "SYS2"];

#[derive(Clone, Debug)]
enum Loss {
    Relationship,
    TimedOut,
    Volume(usize),
    Tracks(usize, u64, u64),
}

#[derive(Clone, Debug)]
enum Event {
    /// The machine's IPL: its host and every subsystem restart.
    Ipl,
    /// The IPL of one host alone.
    HostIpl(usize),
    /// Restart of one host's resource manager.
    RmRestart(usize),
    /// Abend of (host, program).
    Abend(usize, usize),
    /// Reset of a subsystem with losses, and application writes (source volume, track) that
    /// land between the reset and the notification reaching the resource manager.
    Reset(usize, Vec<(usize, Loss)>, Vec<(usize, u64)>),
}

#[derive(Clone, Debug)]
enum Op {
    Start {
        parts: Vec<(usize, usize, u64, u64, usize)>,
        program: usize,
        host: usize,
    },
    /// Host `host` has established its physical sessions and not yet written
    /// its rows when the events of the other host run: they must leave it alone.
    Establishing {
        parts: Vec<(usize, usize, u64, u64, usize)>,
        host: usize,
        during: Event,
    },
    Complete(usize),
    Write {
        sub: usize,
        vol: usize,
        track: u64,
    },
    Copy {
        sub: usize,
        n: u64,
    },
    Event(Event),
    /// Both subsystems reset; notifications handled in both orders must agree (A5).
    ResetBoth(Vec<(usize, Loss)>, Vec<(usize, Loss)>),
    /// The resource manager crashes after `after` port calls of the event, restarts, reruns.
    Crash(Event, u64),
    /// Crash during a start; the restarted RM runs rm-restart recovery.
    CrashStart {
        parts: Vec<(usize, usize, u64, u64, usize)>,
        host: usize,
        after: u64,
    },
}

fn loss() -> impl Strategy<Value = Loss> {
    prop_oneof![
        Just(Loss::Relationship),
        Just(Loss::TimedOut),
        (0..3usize).prop_map(Loss::Volume),
        (0..3usize, 0..TRACKS, 1..4u64).prop_map(|(v, a, l)| Loss::Tracks(v, a, l)),
    ]
}

fn losses() -> impl Strategy<Value = Vec<(usize, Loss)>> {
    prop::collection::vec((0..8usize, loss()), 0..3)
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        1 => Just(Event::Ipl),
        1 => (0..2usize).prop_map(Event::HostIpl),
        1 => (0..2usize).prop_map(Event::RmRestart),
        1 => (0..2usize, 0..2usize).prop_map(|(h, p)| Event::Abend(h, p)),
        5 => (0..2usize, losses(), prop::collection::vec((0..3usize, 0..TRACKS), 0..8))
            .prop_map(|(s, l, w)| Event::Reset(s, l, w)),
    ]
}

fn parts() -> impl Strategy<Value = Vec<(usize, usize, u64, u64, usize)>> {
    prop::collection::vec((0..2usize, 0..3usize, 0..TRACKS, 1..8u64, 0..6usize), 1..4)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (parts(), 0..2usize, 0..2usize)
            .prop_map(|(parts, program, host)| Op::Start { parts, program, host }),
        1 => (parts(), 0..2usize, event())
            .prop_map(|(parts, host, during)| Op::Establishing { parts, host, during }),
        2 => (0..16usize).prop_map(Op::Complete),
        4 => (0..2usize, 0..9usize, 0..TRACKS).prop_map(|(sub, vol, track)| Op::Write { sub, vol, track }),
        3 => (0..2usize, 1..12u64).prop_map(|(sub, n)| Op::Copy { sub, n }),
        3 => event().prop_map(Op::Event),
        1 => (losses(), losses()).prop_map(|(a, b)| Op::ResetBoth(a, b)),
        1 => (event(), 1..12u64).prop_map(|(e, k)| Op::Crash(e, k)),
        1 => (parts(), 0..2usize, 1..8u64)
            .prop_map(|(parts, host, after)| Op::CrashStart { parts, host, after }),
    ]
}

/// What the test remembers about a session it started.
struct Started {
    id: String,
    host: String,
    /// Completed (and A4-checked) already: its target is an ordinary volume again.
    done: bool,
    /// (subsystem, source) -> (extents, target).
    parts: BTreeMap<(String, String), (ExtentSet, String)>,
    /// (subsystem, source) -> contents at the instant of the start.
    t0: BTreeMap<(String, String), Vec<u64>>,
}

struct Harness {
    w: World,
    rm: ResourceManager,
    started: Vec<Started>,
    seen: BTreeMap<String, SessionState>,
    next_id: usize,
    next_token: u64,
}

fn make_spec(
    id: &str,
    program: &str,
    host: usize,
    parts: &[(usize, usize, u64, u64, usize)],
) -> SessionSpec {
    SessionSpec {
        id: sid(id),
        program: program.to_string(),
        host: Some(HOSTS[host].to_string()),
        copy_rate: None,
        extents: indexed_extents(&SUBS, parts),
    }
}

fn to_losses(w: &World, sub: usize, raw: &[(usize, Loss)]) -> Vec<(PhysSessionId, ResetLoss)> {
    let live = w.sub(SUBS[sub]).live_sessions();
    if live.is_empty() {
        return Vec::new();
    }
    raw.iter()
        .map(|(i, l)| {
            let phys = live[i % live.len()].0;
            let loss = match l {
                Loss::Relationship => ResetLoss::Relationship,
                Loss::TimedOut => ResetLoss::TimedOut,
                Loss::Volume(v) => ResetLoss::Volume(SOURCES[*v].to_string()),
                Loss::Tracks(v, a, len) => ResetLoss::Tracks {
                    volume: SOURCES[*v].to_string(),
                    lost: set(*a, (a + len - 1).min(TRACKS - 1)),
                },
            };
            (phys, loss)
        })
        .collect()
}

fn run_event(rm: &ResourceManager, e: &Event) -> Result<resource_manager::Decisions, RmError> {
    match e {
        Event::Ipl => rm.on_ipl(),
        Event::HostIpl(h) => rm.on_host_ipl(HOSTS[*h]),
        Event::RmRestart(h) => rm.on_host_rm_restart(HOSTS[*h]),
        Event::Abend(h, p) => rm.on_host_abend(HOSTS[*h], PROGRAMS[*p]),
        Event::Reset(s, ..) => rm.on_reset(SUBS[*s]),
    }
}

impl Harness {
    fn new() -> Harness {
        let w = World::new(&SUBS);
        let rm = w.rm();
        Harness {
            w,
            rm,
            started: Vec::new(),
            seen: BTreeMap::new(),
            next_id: 0,
            next_token: 1,
        }
    }

    /// Subsystem-side effects of an event that happen before the RM hears of it.
    fn prepare_event(&mut self, e: &Event) {
        match e {
            Event::Ipl => {
                for s in &self.w.subs {
                    s.reset(&[]);
                }
                self.rm = self.w.rm();
            }
            // A host that restarts alone: its resource manager is new too.
            Event::HostIpl(_) | Event::RmRestart(_) => self.rm = self.w.rm(),
            Event::Abend(..) => {}
            Event::Reset(sub, raw, writes) => {
                let l = to_losses(&self.w, *sub, raw);
                self.w.sub(SUBS[*sub]).reset(&l);
                for (v, t) in writes {
                    let _ = self
                        .w
                        .sub(SUBS[*sub])
                        .write(SOURCES[*v], *t, self.next_token);
                    self.next_token += 1;
                }
            }
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Start {
                parts,
                program,
                host,
            } => {
                let id = format!("S{}", self.next_id);
                self.next_id += 1;
                let spec = make_spec(&id, PROGRAMS[*program], *host, parts);
                if self.rm.start_session(&spec).is_ok() {
                    let mut st = Started {
                        id: id.clone(),
                        host: HOSTS[*host].to_string(),
                        done: false,
                        parts: BTreeMap::new(),
                        t0: BTreeMap::new(),
                    };
                    for e in &spec.extents {
                        let key = (e.subsystem.clone(), e.volume.clone());
                        let entry = st
                            .parts
                            .entry(key.clone())
                            .or_insert((ExtentSet::new(), e.target.clone()));
                        entry.0 = entry.0.union(&e.extents);
                        st.t0
                            .insert(key, self.w.sub(&e.subsystem).contents(&e.volume).unwrap());
                    }
                    let info = self.rm.session(&sid(&id)).unwrap().unwrap();
                    prop_assert_eq!(info.state, SessionState::Active);
                    prop_assert_eq!(&info.host, HOSTS[*host]);
                    self.started.push(st);
                }
            }
            Op::Complete(i) => {
                if self.started.is_empty() {
                    return Ok(());
                }
                let n = self.started.len();
                let st = &mut self.started[i % n];
                match self.rm.complete_session(&sid(&st.id)) {
                    Ok(()) if st.done => {}
                    Ok(()) => {
                        st.done = true;
                        // The owner recorded at the start is the owner read back.
                        let info = self.rm.session(&sid(&st.id)).unwrap().unwrap();
                        prop_assert_eq!(&info.host, &st.host);
                        // A4: the final backup equals the time-zero image.
                        for ((sub, src), (ext, tgt)) in &st.parts {
                            let target = self.w.sub(sub).contents(tgt).unwrap();
                            let t0 = &st.t0[&(sub.clone(), src.clone())];
                            for t in ext.tracks() {
                                prop_assert_eq!(
                                    target[t as usize],
                                    t0[t as usize],
                                    "{} {}/{} track {}",
                                    st.id,
                                    sub,
                                    tgt,
                                    t
                                );
                            }
                        }
                    }
                    Err(RmError::CopyIncomplete { .. })
                    | Err(RmError::SessionTerminated { .. }) => {}
                    Err(e) => prop_assert!(false, "complete {}: {}", st.id, e),
                }
            }
            Op::Write { sub, vol, track } => {
                let before = self.w.settled_view();
                let name = SOURCES.iter().chain(TARGETS.iter()).nth(*vol).unwrap();
                let _ = self.w.sub(SUBS[*sub]).write(name, *track, self.next_token);
                self.next_token += 1;
                prop_assert_eq!(self.w.settled_view(), before, "A6: a write moved a row");
            }
            Op::Copy { sub, n } => {
                let before = self.w.settled_view();
                self.w.sub(SUBS[*sub]).copy_step(*n);
                prop_assert_eq!(self.w.settled_view(), before, "A6: a copy step moved a row");
            }
            Op::Event(e) => {
                let expected = self.expected_reset(e);
                self.prepare_event(e);
                let d = run_event(&self.rm, e).map_err(|e| TestCaseError::fail(e.to_string()))?;
                self.check_event(e, &d, &expected)?;
                // A5: running it again changes nothing and gives the same outcomes.
                let before = self.w.observe();
                let again =
                    run_event(&self.rm, e).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(self.w.observe(), before, "A5: second run changed state");
                prop_assert_eq!(again.acted().count(), 0, "A5: second run acted: {}", again);
                for dd in &d.decisions {
                    prop_assert_eq!(
                        again.get(dd.session.as_str()).map(|x| x.outcome),
                        Some(dd.outcome)
                    );
                }
            }
            Op::ResetBoth(la, lb) => {
                let la = to_losses(&self.w, 0, la);
                let lb = to_losses(&self.w, 1, lb);
                self.w.sub("A").reset(&la);
                self.w.sub("B").reset(&lb);
                let other = self.w.fork();
                let rm2 = other.rm();
                self.rm
                    .on_reset("A")
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                self.rm
                    .on_reset("B")
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                rm2.on_reset("B")
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                rm2.on_reset("A")
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(self.w.observe(), other.observe(), "A5: reset order matters");
            }
            Op::Crash(e, after) => {
                self.prepare_event(e);
                let clean = self.w.fork();
                let expected =
                    run_event(&clean.rm(), e).map_err(|e| TestCaseError::fail(e.to_string()))?;
                self.w.crash.arm(*after);
                let first = run_event(&self.rm, e);
                self.w.crash.recover();
                self.rm = self.w.rm();
                let d = match first {
                    Ok(d) => d,
                    Err(err) if err.is_crash() => {
                        run_event(&self.rm, e).map_err(|e| TestCaseError::fail(e.to_string()))?
                    }
                    Err(err) => return Err(TestCaseError::fail(err.to_string())),
                };
                prop_assert_eq!(
                    self.w.observe(),
                    clean.observe(),
                    "crash+rerun differs from a clean run"
                );
                for dd in &expected.decisions {
                    prop_assert_eq!(
                        d.get(dd.session.as_str()).map(|x| x.outcome),
                        Some(dd.outcome)
                    );
                }
            }
            Op::Establishing {
                parts,
                host,
                during,
            } => {
                self.establishing(parts, *host, during)?;
            }
            Op::CrashStart { parts, host, after } => {
                let id = format!("S{}", self.next_id);
                self.next_id += 1;
                let spec = make_spec(&id, "P0", *host, parts);
                self.w.crash.arm(*after);
                let r = self.rm.start_session(&spec);
                let crashed = self.w.crash.tripped();
                self.w.crash.recover();
                if crashed {
                    prop_assert!(r.is_err());
                    self.rm = self.w.rm();
                    let d = self
                        .rm
                        .on_host_rm_restart(HOSTS[*host])
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    self.check_event(&Event::RmRestart(*host), &d, &BTreeMap::new())?;
                }
                // A started-but-not-crashed session is not tracked for A4 (no t0 taken).
            }
        }
        self.check_always()
    }

    /// Host `host` establishes physical sessions for a new session and stops
    /// before writing its rows; the other host's event `during` runs (and, for
    /// a reset, so do its losses). Every physical session `host` holds must
    /// still be there afterwards unless the event was the machine's IPL or
    /// one of `host`'s own. Then `host`'s resource manager restarts, which
    /// withdraws what it left.
    fn establishing(
        &mut self,
        parts: &[(usize, usize, u64, u64, usize)],
        host: usize,
        during: &Event,
    ) -> Result<(), TestCaseError> {
        let id = format!("S{}", self.next_id);
        self.next_id += 1;
        let spec = make_spec(&id, "P0", host, parts);
        let mut pairs: BTreeMap<&str, BTreeMap<&str, resource_manager::CopyPair>> = BTreeMap::new();
        for e in &spec.extents {
            let p = pairs
                .entry(e.subsystem.as_str())
                .or_default()
                .entry(e.volume.as_str())
                .or_insert_with(|| resource_manager::CopyPair {
                    source: e.volume.clone(),
                    extents: ExtentSet::new(),
                    target: e.target.clone(),
                    copy_rate: None,
                });
            p.extents = p.extents.union(&e.extents);
        }
        let mut held = Vec::new();
        for (sub, pairs) in &pairs {
            let pairs: Vec<_> = pairs.values().cloned().collect();
            if let Ok(phys) = self.w.sub(sub).establish(&sid(&id), HOSTS[host], &pairs) {
                held.push((sub.to_string(), phys));
            }
        }
        let own = match during {
            Event::Ipl => true,
            Event::HostIpl(h) | Event::RmRestart(h) | Event::Abend(h, _) => *h == host,
            Event::Reset(..) => false,
        };
        if !own {
            // A reset loss aimed at the half-started session would end it on
            // the subsystem's own account, which is not what is tested here.
            let during = match during {
                Event::Reset(s, _, w) => Event::Reset(*s, Vec::new(), w.clone()),
                other => other.clone(),
            };
            // The event runs in the other host's resource manager: a host's
            // own manager never interleaves with its own start.
            self.prepare_event(&during);
            let other = self.w.rm_for(HOSTS[1 - host]);
            run_event(&other, &during).map_err(|e| TestCaseError::fail(e.to_string()))?;
            for (sub, phys) in &held {
                let live = self.w.sub(sub).live_sessions();
                prop_assert!(
                    live.iter().any(|(p, o, _)| p == phys && o.as_str() == id),
                    "{:?} of host {} withdrew {}'s physical session {} on {} while it was being established",
                    during,
                    HOSTS[1 - host],
                    id,
                    phys,
                    sub
                );
            }
        }
        self.rm = self.w.rm();
        let d = self
            .rm
            .on_host_rm_restart(HOSTS[host])
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        self.check_event(&Event::RmRestart(host), &d, &BTreeMap::new())
    }

    /// A3 oracle: for a reset, which open sessions with rows on the subsystem must resume.
    fn expected_reset(&self, e: &Event) -> BTreeMap<String, Outcome> {
        let Event::Reset(sub, raw, _) = e else {
            return BTreeMap::new();
        };
        let name = SUBS[*sub];
        let losses = to_losses(&self.w, *sub, raw);
        let live: BTreeMap<PhysSessionId, String> = self
            .w
            .sub(name)
            .live_sessions()
            .into_iter()
            .map(|(p, o, _)| (p, o.to_string()))
            .collect();
        let mut out = BTreeMap::new();
        for info in self.rm.list_sessions().unwrap() {
            if info.state.is_terminal() {
                continue;
            }
            let Some(part) = info.parts.iter().find(|p| p.subsystem == name) else {
                continue;
            };
            let hit = losses.iter().any(|(phys, loss)| {
                live.get(phys).map(String::as_str) == Some(info.id.as_str())
                    && match loss {
                        ResetLoss::Relationship | ResetLoss::TimedOut => true,
                        ResetLoss::Volume(v) => part.volumes.iter().any(|(pv, _)| pv == v),
                        ResetLoss::Tracks { volume, lost } => part
                            .volumes
                            .iter()
                            .any(|(pv, ext)| pv == volume && ext.overlaps(lost)),
                    }
            });
            let o = if hit {
                Outcome::Terminated(TerminateReason::ResetMismatch)
            } else {
                Outcome::Resumed
            };
            out.insert(info.id.to_string(), o);
        }
        out
    }

    fn check_event(
        &self,
        e: &Event,
        d: &resource_manager::Decisions,
        expected: &BTreeMap<String, Outcome>,
    ) -> Result<(), TestCaseError> {
        prop_assert!(d.complete(), "no failures were injected: {}", d);
        let infos = self.rm.list_sessions().unwrap();
        let live: BTreeSet<String> = self
            .w
            .subs
            .iter()
            .flat_map(|s| s.live_sessions().into_iter().map(|(_, o, _)| o.to_string()))
            .collect();
        match e {
            Event::Ipl | Event::HostIpl(_) | Event::RmRestart(_) | Event::Abend(..) => {
                // A1: nothing of that host (and program) is left initiated-and-not-completed,
                // and its physical sessions are gone everywhere. The machine's IPL restarts
                // every subsystem, so it ends every host's sessions.
                let (host, program) = match e {
                    Event::Abend(h, p) => (Some(HOSTS[*h]), Some(PROGRAMS[*p])),
                    Event::HostIpl(h) | Event::RmRestart(h) => (Some(HOSTS[*h]), None),
                    _ => (None, None),
                };
                let reason = match e {
                    Event::Abend(..) => TerminateReason::Abend,
                    Event::RmRestart(_) => TerminateReason::RmRestart,
                    _ => TerminateReason::Ipl,
                };
                for i in &infos {
                    let ours = program.is_none_or(|p| i.program.as_deref() == Some(p))
                        && host.is_none_or(|h| i.host == h);
                    if !ours {
                        // Another host's (or program's) session is never ended by it.
                        let ended_here = d
                            .get(i.id.as_str())
                            .is_some_and(|x| x.acted && x.outcome == Outcome::Terminated(reason));
                        prop_assert!(
                            !ended_here,
                            "A1: {} of host {} ended by {}",
                            i.id,
                            i.host,
                            d
                        );
                    }
                    if ours {
                        prop_assert!(i.state.is_terminal(), "A1: {} still {}", i.id, i.state);
                        prop_assert!(
                            !live.contains(i.id.as_str()),
                            "A1: {} still has a physical session",
                            i.id
                        );
                    }
                }
                let rows_ok = self.w.settled_view().iter().all(|((_, s, _), st)| {
                    st.is_terminal()
                        || infos
                            .iter()
                            .any(|i| i.id.as_str() == s && !i.state.is_terminal())
                });
                prop_assert!(rows_ok, "A1: an open row of a terminal session");
            }
            Event::Reset(..) => {
                // A3: resumed iff the extents still match.
                for (id, want) in expected {
                    let got = d.get(id).map(|x| x.outcome);
                    prop_assert_eq!(got, Some(*want), "A3: session {}: {}", id, d);
                }
            }
        }
        Ok(())
    }

    fn check_always(&mut self) -> Result<(), TestCaseError> {
        let infos = self.rm.list_sessions().unwrap();
        // A6: a restarted resource manager reads the same sessions back.
        prop_assert_eq!(&self.w.rm().list_sessions().unwrap(), &infos);
        // A2: terminal states never change.
        for i in &infos {
            if let Some(prev) = self.seen.get(i.id.as_str()) {
                if prev.is_terminal() {
                    prop_assert_eq!(*prev, i.state, "A2: {} changed from {}", i.id, prev);
                }
            }
            self.seen.insert(i.id.to_string(), i.state);
        }
        // No orphan: every physical session is accounted for by an open session's rows.
        for s in &self.w.subs {
            for (phys, owner, _) in s.live_sessions() {
                let ok = infos.iter().any(|i| {
                    i.id == owner
                        && !i.state.is_terminal()
                        && i.parts
                            .iter()
                            .any(|p| p.subsystem == s.id() && p.phys == phys)
                });
                prop_assert!(
                    ok,
                    "orphan physical session {} of {} on {}",
                    phys,
                    owner,
                    s.id()
                );
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn invariants_a1_to_a6_hold_under_random_interleavings(ops in prop::collection::vec(op(), 1..30)) {
        let mut h = Harness::new();
        for op in &ops {
            h.apply(op)?;
        }
        // Finish: copy everything and complete what is still open; A4 checked in Complete.
        for s in &h.w.subs {
            s.copy_step(u64::MAX);
        }
        for i in 0..h.started.len() {
            h.apply(&Op::Complete(i))?;
        }
    }
}
