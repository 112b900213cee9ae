//! Executes a parsed scenario against controller subsystems.
//!
//! Each subsystem lives in its own data directory under one temporary directory. The
//! resource manager sees them through [`ScenarioPort`]s, which can raise a reset of a
//! subsystem after a given number of replay calls (for `reset_during_replay`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use activity_table::SessionId;
use controller::{DurabilityMode, Subsystem, SubsystemConfig, VolumeConfig};
use geometry::{DeviceModel, ExtentSet, Geometry};
use parking_lot::Mutex;

use super::port::{ScenarioPort, Trigger};

use super::format::{ExpectOutcomes, ScenarioFile, Source, Step};
use super::{ScenarioError, ScenarioReport};
use crate::controller_port::ControllerPort;
use crate::port::SubsystemPort;
use crate::{Decisions, ResourceManager, SessionExtent, SessionSpec};

/// The time-zero image of one source recorded at a session's start.
pub(super) struct Image {
    pub(super) subsystem: String,
    pub(super) target: String,
    pub(super) extents: ExtentSet,
    pub(super) crc: u32,
}

pub(super) struct World<'a> {
    pub(super) src: Source<'a>,
    pub(super) _dir: tempfile::TempDir,
    pub(super) ports: BTreeMap<String, Arc<ScenarioPort>>,
    pub(super) rm: ResourceManager,
    pub(super) images: BTreeMap<String, Vec<Image>>,
    pub(super) report: ScenarioReport,
}

/// Parses the file and converts every step, without running anything.
pub(super) fn check(src: Source<'_>) -> Result<usize, ScenarioError> {
    let file = src.parse()?;
    let n = file.steps.len();
    steps(&src, file.steps)?;
    Ok(n)
}

/// The steps, each checked before anything runs: its fields, and that the
/// sessions whose outcomes it expects were started by an earlier step.
fn steps(
    src: &Source<'_>,
    raw: Vec<toml::Spanned<crate::scenario::format::RawStep>>,
) -> Result<Vec<(Step, std::ops::Range<usize>)>, ScenarioError> {
    let mut started = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        let span = r.span();
        let step = r.into_inner().into_step(src)?;
        if let Some(unknown) = step.expected_sessions().find(|s| !started.contains(*s)) {
            return Err(ScenarioError::Invalid {
                path: src.path.to_string(),
                line: src.line(span.start),
                field: "expect".into(),
                message: format!("session {unknown} is not started by an earlier step"),
            });
        }
        if let Step::Start { session, .. } = &step {
            started.insert(session.clone());
        }
        out.push((step, span));
    }
    Ok(out)
}

pub(super) fn run(src: Source<'_>) -> Result<ScenarioReport, ScenarioError> {
    let mut file = src.parse()?;
    let steps = steps(&src, std::mem::take(&mut file.steps))?;
    let mut w = World::setup(src, &file)?;
    for (i, (step, span)) in steps.iter().enumerate() {
        let line = w.src.line(span.start);
        match w.step(step, span.clone(), line) {
            Ok(()) => {}
            Err(StepError::Invalid(e)) => return Err(e),
            Err(StepError::Failed(msg)) => {
                w.report.failures.push(format!(
                    "line {line} (step {}, {}): {msg}",
                    i + 1,
                    step.action()
                ));
                w.report
                    .log
                    .push("stopped: the remaining steps were not run".into());
                w.close();
                return Ok(w.report);
            }
        }
    }
    w.check_final(&file)?;
    w.close();
    Ok(w.report)
}

pub(super) enum StepError {
    Invalid(ScenarioError),
    Failed(String),
}

impl From<ScenarioError> for StepError {
    fn from(e: ScenarioError) -> Self {
        StepError::Invalid(e)
    }
}

fn failed(e: impl std::fmt::Display) -> StepError {
    StepError::Failed(e.to_string())
}

impl<'a> World<'a> {
    fn setup(src: Source<'a>, file: &ScenarioFile) -> Result<World<'a>, ScenarioError> {
        let setup_err = |m: String| ScenarioError::Setup {
            path: src.path.to_string(),
            message: m,
        };
        let durability = match &file.durability {
            None => DurabilityMode::Strict,
            Some(d) => match d.get_ref().as_str() {
                "strict" => DurabilityMode::Strict,
                "nosync" => DurabilityMode::Nosync,
                other => {
                    return Err(src.err(
                        d,
                        "durability",
                        format!("`{other}` is not strict or nosync"),
                    ))
                }
            },
        };
        if file.subsystems.is_empty() {
            return Err(ScenarioError::Invalid {
                path: src.path.to_string(),
                line: 1,
                field: "subsystem".into(),
                message: "a scenario needs at least one [[subsystem]]".into(),
            });
        }
        let dir =
            tempfile::tempdir().map_err(|e| setup_err(format!("temporary directory: {e}")))?;
        let mut ports = BTreeMap::new();
        for s in &file.subsystems {
            let id = s.id.get_ref().clone();
            if ports.contains_key(&id) {
                return Err(src.err(&s.id, "id", format!("subsystem {id} defined twice")));
            }
            let mut volumes = Vec::new();
            for v in &s.volumes {
                let model: DeviceModel = v
                    .model
                    .get_ref()
                    .parse()
                    .map_err(|e| src.err(&v.model, "model", format!("{e}")))?;
                volumes.push(VolumeConfig {
                    id: v.id.get_ref().clone(),
                    model,
                    read_only: false,
                });
            }
            let config = SubsystemConfig {
                id: id.clone(),
                durability,
                listen: Default::default(),
                nbd: Default::default(),
                rates: Default::default(),
                volumes,
                peers: Vec::new(),
                host: None,
            };
            let sub = Subsystem::open(dir.path().join(&id), config).map_err(|e| {
                src.err(
                    &s.id,
                    "subsystem",
                    format!("cannot open subsystem {id}: {e}"),
                )
            })?;
            ports.insert(
                id,
                Arc::new(ScenarioPort {
                    inner: Arc::new(ControllerPort::new(sub)),
                    calls: AtomicU64::new(0),
                    trigger: Mutex::new(None),
                    fired: Mutex::new(None),
                }),
            );
        }
        let rm = new_rm(&ports).map_err(|e| setup_err(e.to_string()))?;
        Ok(World {
            report: ScenarioReport {
                name: file.name.clone(),
                path: src.path.to_string(),
                log: Vec::new(),
                failures: Vec::new(),
            },
            src,
            _dir: dir,
            ports,
            rm,
            images: BTreeMap::new(),
        })
    }

    fn close(&self) {
        for p in self.ports.values() {
            let _ = p.inner.subsystem().close();
        }
    }
}

fn new_rm(ports: &BTreeMap<String, Arc<ScenarioPort>>) -> Result<ResourceManager, crate::RmError> {
    ResourceManager::new(
        ports
            .values()
            .map(|p| p.clone() as Arc<dyn SubsystemPort>)
            .collect(),
    )
}

/// Deterministic track contents for pattern `pattern`.
pub(super) fn pattern_bytes(pattern: &str, track: u64, len: usize) -> Vec<u8> {
    let seed = (u64::from(crc32c::crc32c(pattern.as_bytes())) << 32)
        ^ track.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(len);
    let mut x = seed | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

impl World<'_> {
    /// Splits `[SUB/]NAME`; the subsystem may be left out when there is only one.
    pub(super) fn split_volume(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
        text: &str,
    ) -> Result<(String, String), ScenarioError> {
        let (sub, vol) = match text.split_once('/') {
            Some((s, v)) => (s.to_string(), v.to_string()),
            None if self.ports.len() == 1 => (
                self.ports.keys().next().cloned().unwrap_or_default(),
                text.to_string(),
            ),
            None => {
                return Err(self.src.field_err(
                    span,
                    field,
                    format!("`{text}`: name the subsystem (SUB/VOLUME) when there are several"),
                ))
            }
        };
        let port = self.ports.get(&sub).ok_or_else(|| {
            self.src
                .field_err(span.clone(), field, format!("unknown subsystem `{sub}`"))
        })?;
        if port.inner.subsystem().geometry(&vol).is_err() {
            return Err(self.src.field_err(
                span,
                field,
                format!("unknown volume `{vol}` on subsystem {sub}"),
            ));
        }
        Ok((sub, vol))
    }

    fn geometry(&self, sub: &str, vol: &str) -> Result<Geometry, StepError> {
        self.ports[sub]
            .inner
            .subsystem()
            .geometry(vol)
            .map_err(failed)
    }

    /// CRC-32C of `extents` of `vol` (track order).
    pub(super) fn checksum(
        &self,
        sub: &str,
        vol: &str,
        extents: &ExtentSet,
    ) -> Result<u32, StepError> {
        let s = self.ports[sub].inner.subsystem();
        let g = s.geometry(vol).map_err(failed)?;
        let ts = g.track_size_bytes();
        let mut buf = vec![0u8; ts as usize];
        let mut crc = 0u32;
        for t in extents.tracks() {
            s.read(vol, t * ts, &mut buf)
                .map_err(|e| failed(format!("read {sub}/{vol} track {t}: {e}")))?;
            crc = crc32c::crc32c_append(crc, &buf);
        }
        Ok(crc)
    }

    fn check_outcomes(&mut self, line: usize, what: &str, d: &Decisions, expect: &ExpectOutcomes) {
        for l in d.to_string().lines() {
            self.report.log.push(format!("line {line}: {l}"));
        }
        for (session, want) in expect {
            let got = d.get(session).map(|x| x.outcome.to_string());
            if got.as_deref() != Some(want.as_str()) {
                self.report.failures.push(format!(
                    "line {line} ({what}): session {session}: expected {want}, got {}",
                    got.unwrap_or_else(|| "no decision".into())
                ));
            }
        }
    }

    fn step(
        &mut self,
        step: &Step,
        span: std::ops::Range<usize>,
        line: usize,
    ) -> Result<(), StepError> {
        match step {
            Step::Write {
                volume,
                tracks,
                pattern,
            } => {
                let (sub, vol) = self.split_volume(span.clone(), "volume", volume)?;
                let g = self.geometry(&sub, &vol)?;
                let set = g
                    .parse_extent_set(tracks)
                    .map_err(|e| self.src.field_err(span.clone(), "tracks", e.to_string()))?;
                let s = self.ports[&sub].inner.subsystem();
                let ts = g.track_size_bytes();
                for t in set.tracks() {
                    let data = pattern_bytes(pattern, t, ts as usize);
                    s.write(&vol, t * ts, &data, false)
                        .map_err(|e| failed(format!("write {sub}/{vol} track {t}: {e}")))?;
                }
                self.report.log.push(format!(
                    "line {line}: write `{pattern}` to {sub}/{vol} tracks {tracks}"
                ));
            }
            Step::Start { .. } => self.start(step, span, line)?,
            Step::Complete {
                session,
                expect_error,
            } => {
                let id = SessionId::new(session.as_str())
                    .map_err(|e| self.src.field_err(span.clone(), "session", e.to_string()))?;
                let r = self.rm.complete_session(&id);
                self.expect_result(
                    line,
                    &format!("complete {session}"),
                    r.map(|_| ()),
                    expect_error,
                )?;
            }
            Step::Copy { subsystem, tracks } => {
                let subs: Vec<String> = match subsystem {
                    Some(s) if self.ports.contains_key(s) => vec![s.clone()],
                    Some(s) => {
                        return Err(self
                            .src
                            .field_err(span, "subsystem", format!("unknown subsystem `{s}`"))
                            .into())
                    }
                    None => self.ports.keys().cloned().collect(),
                };
                for sub in subs {
                    let s = self.ports[&sub].inner.subsystem();
                    let ts = s
                        .volumes()
                        .iter()
                        .map(|v| v.track_size_bytes)
                        .max()
                        .unwrap_or(1);
                    let mut grains = 0;
                    match tracks {
                        Some(n) => {
                            grains += s.copy_step(n.saturating_mul(ts)).map_err(failed)?.grains
                        }
                        None => loop {
                            let r = s.copy_step(u64::MAX / 2).map_err(failed)?;
                            grains += r.grains;
                            if r.grains == 0 {
                                break;
                            }
                        },
                    }
                    self.report
                        .log
                        .push(format!("line {line}: copy on {sub}: {grains} track(s)"));
                }
            }
            Step::Ipl {
                expect,
                reset_during_replay,
            } => {
                for (id, p) in &self.ports {
                    let new = p
                        .inner
                        .subsystem()
                        .ipl()
                        .map_err(|e| failed(format!("IPL of {id}: {e}")))?;
                    p.inner.replace(new);
                }
                if let Some(r) = reset_during_replay {
                    let p = self.ports.get(&r.subsystem).ok_or_else(|| {
                        self.src.field_err(
                            span.clone(),
                            "reset_during_replay",
                            format!("unknown subsystem `{}`", r.subsystem),
                        )
                    })?;
                    let base = p.calls.load(Ordering::SeqCst);
                    *p.trigger.lock() = Some(Trigger {
                        after: base + r.after_calls.max(1),
                        lose_volatile: r.lose_volatile,
                    });
                }
                self.rm = new_rm(&self.ports).map_err(failed)?;
                let d = self.rm.on_ipl().map_err(failed)?;
                self.check_outcomes(line, "ipl", &d, expect);
                if let Some(r) = reset_during_replay {
                    let p = &self.ports[&r.subsystem];
                    *p.trigger.lock() = None;
                    let fired = p.fired.lock().take();
                    match fired {
                        Some(msg) => {
                            self.report.log.push(format!("line {line}: {} on {}", msg, r.subsystem));
                            let d = self.rm.on_reset(&r.subsystem).map_err(failed)?;
                            self.check_outcomes(line, "reset during IPL replay", &d, &r.expect);
                        }
                        None => self.report.failures.push(format!(
                            "line {line} (ipl): the replay made fewer than {} call(s) on {}; no reset was raised",
                            r.after_calls, r.subsystem
                        )),
                    }
                }
            }
            Step::RmRestart { expect } => {
                self.rm = new_rm(&self.ports).map_err(failed)?;
                let d = self.rm.on_rm_restart().map_err(failed)?;
                self.check_outcomes(line, "rm-restart", &d, expect);
            }
            Step::Abend { program, expect } => {
                let d = self.rm.on_abend(program).map_err(failed)?;
                self.check_outcomes(line, "abend", &d, expect);
            }
            Step::Reset {
                subsystem,
                lose_volatile,
                expect,
            } => {
                let sub = match subsystem {
                    Some(s) if self.ports.contains_key(s) => s.clone(),
                    Some(s) => {
                        return Err(self
                            .src
                            .field_err(span, "subsystem", format!("unknown subsystem `{s}`"))
                            .into())
                    }
                    None if self.ports.len() == 1 => {
                        self.ports.keys().next().cloned().unwrap_or_default()
                    }
                    None => {
                        return Err(self
                            .src
                            .field_err(
                                span,
                                "subsystem",
                                "name the subsystem when there are several",
                            )
                            .into())
                    }
                };
                let rep = self.ports[&sub]
                    .inner
                    .subsystem()
                    .reset(*lose_volatile)
                    .map_err(failed)?;
                self.report.log.push(format!(
                    "line {line}: reset of {sub} (lose_volatile = {lose_volatile}): {} session(s) lost",
                    rep.sessions_lost.len()
                ));
                let d = self.rm.on_reset(&sub).map_err(failed)?;
                self.check_outcomes(line, "reset", &d, expect);
            }
        }
        Ok(())
    }

    fn expect_result(
        &mut self,
        line: usize,
        what: &str,
        r: Result<(), crate::RmError>,
        expect_error: &Option<String>,
    ) -> Result<(), StepError> {
        match (r, expect_error) {
            (Ok(()), None) => self.report.log.push(format!("line {line}: {what}: ok")),
            (Err(e), Some(want)) if e.to_string().contains(want.as_str()) => self
                .report
                .log
                .push(format!("line {line}: {what}: failed as expected: {e}")),
            (Ok(()), Some(want)) => self.report.failures.push(format!(
                "line {line}: {what}: expected an error containing `{want}`, it succeeded"
            )),
            (Err(e), Some(want)) => self.report.failures.push(format!(
                "line {line}: {what}: expected an error containing `{want}`, got: {e}"
            )),
            (Err(e), None) => return Err(failed(format!("{what}: {e}"))),
        }
        Ok(())
    }

    fn start(
        &mut self,
        step: &Step,
        span: std::ops::Range<usize>,
        line: usize,
    ) -> Result<(), StepError> {
        let Step::Start {
            session,
            program,
            extents,
            targets,
            expect_error,
        } = step
        else {
            return Ok(());
        };
        let id = SessionId::new(session.as_str())
            .map_err(|e| self.src.field_err(span.clone(), "session", e.to_string()))?;
        let mut target_of: BTreeMap<(String, String), String> = BTreeMap::new();
        for t in targets {
            let Some((src, tgt)) = t.split_once('=') else {
                return Err(self
                    .src
                    .field_err(
                        span.clone(),
                        "targets",
                        format!("`{t}` is not [SUB/]SOURCE=TARGET"),
                    )
                    .into());
            };
            let (sub, src) = self.split_volume(span.clone(), "targets", src)?;
            let tgt_name = tgt.rsplit('/').next().unwrap_or(tgt).to_string();
            // QA: a target's subsystem prefix was dropped, so `SS2/T0`
            // silently meant the source subsystem's T0.
            if let Some((tsub, _)) = tgt.split_once('/') {
                if tsub != sub {
                    return Err(self
                        .src
                        .field_err(
                            span.clone(),
                            "targets",
                            format!(
                                "`{t}`: the target is on subsystem {tsub}, the source on {sub}: \
                                 a session's target is on its source's subsystem"
                            ),
                        )
                        .into());
                }
            }
            self.split_volume(span.clone(), "targets", &format!("{sub}/{tgt_name}"))?;
            target_of.insert((sub, src), tgt_name);
        }
        let mut parts = Vec::new();
        for e in extents {
            let Some((vol, ext)) = e.rsplit_once(':') else {
                return Err(self
                    .src
                    .field_err(
                        span.clone(),
                        "extents",
                        format!("`{e}` is not [SUB/]VOLUME:EXTENTS"),
                    )
                    .into());
            };
            let (sub, vol) = self.split_volume(span.clone(), "extents", vol)?;
            let g = self.geometry(&sub, &vol)?;
            let set = g.parse_extent_set(ext).map_err(|er| {
                self.src
                    .field_err(span.clone(), "extents", format!("`{e}`: {er}"))
            })?;
            let target = target_of
                .get(&(sub.clone(), vol.clone()))
                .cloned()
                .ok_or_else(|| {
                    self.src.field_err(
                        span.clone(),
                        "targets",
                        format!("no target for source {sub}/{vol}"),
                    )
                })?;
            parts.push(SessionExtent {
                subsystem: sub,
                volume: vol,
                extents: set,
                target,
            });
        }
        let spec = SessionSpec {
            id: id.clone(),
            program: program.clone(),
            host: None,
            copy_rate: None,
            extents: parts,
        };
        let r = self.rm.start_session(&spec);
        if let Ok(phys) = &r {
            // Record the time-zero image of every source (no write can come in between).
            let mut images = Vec::new();
            let mut merged: BTreeMap<(String, String), (ExtentSet, String)> = BTreeMap::new();
            for p in &spec.extents {
                let e = merged
                    .entry((p.subsystem.clone(), p.volume.clone()))
                    .or_insert((ExtentSet::new(), p.target.clone()));
                e.0 = e.0.union(&p.extents);
            }
            for ((sub, vol), (ext, target)) in merged {
                let crc = self.checksum(&sub, &vol, &ext)?;
                images.push(Image {
                    subsystem: sub,
                    target,
                    extents: ext,
                    crc,
                });
            }
            self.images.insert(session.clone(), images);
            let ids: Vec<String> = phys.iter().map(|(s, p)| format!("{s}:{p}")).collect();
            self.report.log.push(format!(
                "line {line}: start {session} ({program}): physical {}",
                ids.join(" ")
            ));
            return Ok(());
        }
        self.expect_result(
            line,
            &format!("start {session}"),
            r.map(|_| ()),
            expect_error,
        )
    }
}
