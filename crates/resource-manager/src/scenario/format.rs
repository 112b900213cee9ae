//! The scenario file format (TOML; docs/SESSIONS.md "Scenario files") and its parsing.
//!
//! Invariants: every value that refers to something (volume, subsystem, extent, state name)
//! is checked when the run reaches it, and errors name the line and the field; syntax and
//! type errors come from `toml` with the line of the offending value.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::ScenarioError;

/// A whole scenario file.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScenarioFile {
    pub name: String,
    #[serde(default)]
    #[allow(dead_code)]
    pub description: String,
    /// `strict` (default) or `nosync`.
    #[serde(default)]
    pub durability: Option<Spanned<String>>,
    #[serde(rename = "subsystem")]
    pub subsystems: Vec<SubsystemDef>,
    #[serde(rename = "step", default)]
    pub steps: Vec<Spanned<RawStep>>,
    #[serde(rename = "expect", default)]
    pub expects: Vec<Spanned<ExpectSession>>,
    #[serde(rename = "expect_target", default)]
    pub targets: Vec<Spanned<ExpectTarget>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubsystemDef {
    pub id: Spanned<String>,
    pub volumes: Vec<VolumeDef>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct VolumeDef {
    pub id: Spanned<String>,
    pub model: Spanned<String>,
}

/// Expected outcomes of one event: session id -> `resumed | terminated(<reason>) | untouched`.
pub(crate) type ExpectOutcomes = BTreeMap<String, String>;

/// A reset raised by a subsystem while the IPL replay is running.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetDuringReplay {
    /// The subsystem that resets.
    pub subsystem: String,
    /// The reset happens when the replay has made this many subsystem calls (>= 1).
    #[serde(default = "one")]
    pub after_calls: u64,
    #[serde(default)]
    pub lose_volatile: bool,
    #[serde(default)]
    pub expect: ExpectOutcomes,
}

fn one() -> u64 {
    1
}

/// One `[[step]]` as written: every field optional and spanned, so that type errors and
/// missing or misplaced fields name their line. [`RawStep::into_step`] checks it per action.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStep {
    action: Spanned<String>,
    volume: Option<Spanned<String>>,
    tracks: Option<Spanned<toml::Value>>,
    pattern: Option<Spanned<String>>,
    session: Option<Spanned<String>>,
    program: Option<Spanned<String>>,
    extents: Option<Spanned<Vec<String>>>,
    targets: Option<Spanned<Vec<String>>>,
    expect_error: Option<Spanned<String>>,
    subsystem: Option<Spanned<String>>,
    lose_volatile: Option<Spanned<bool>>,
    expect: Option<Spanned<ExpectOutcomes>>,
    reset_during_replay: Option<Spanned<ResetDuringReplay>>,
}

/// One step, checked.
#[derive(Debug)]
pub(crate) enum Step {
    /// Application write of `pattern` data to `tracks` of `volume`.
    Write {
        volume: String,
        tracks: String,
        pattern: String,
    },
    /// Start a backup copy session.
    Start {
        session: String,
        program: String,
        /// `[SUB/]VOL:EXTENTS` (extents as `firmware-sim` prints them for that volume).
        extents: Vec<String>,
        /// `[SUB/]SOURCE=TARGET`, one per source volume.
        targets: Vec<String>,
        /// The start must fail with a message containing this text.
        expect_error: Option<String>,
    },
    /// Complete a session.
    Complete {
        session: String,
        expect_error: Option<String>,
    },
    /// Background copy: `tracks` per subsystem (all subsystems unless named), or until idle.
    Copy {
        subsystem: Option<String>,
        tracks: Option<u64>,
    },
    /// Operating-system IPL: every subsystem IPLs, a new resource manager replays.
    Ipl {
        expect: ExpectOutcomes,
        reset_during_replay: Option<ResetDuringReplay>,
    },
    /// The resource manager restarts.
    RmRestart { expect: ExpectOutcomes },
    /// A backup program ends abnormally.
    Abend {
        program: String,
        expect: ExpectOutcomes,
    },
    /// Controller warmstart of `subsystem`, then its reset notification.
    Reset {
        subsystem: Option<String>,
        lose_volatile: bool,
        expect: ExpectOutcomes,
    },
}

impl Step {
    /// The sessions whose outcomes the step expects (those of a reset
    /// during the IPL's replay included).
    pub fn expected_sessions(&self) -> impl Iterator<Item = &String> {
        let (a, b) = match self {
            Step::Ipl {
                expect,
                reset_during_replay,
            } => (
                Some(expect),
                reset_during_replay.as_ref().map(|r| &r.expect),
            ),
            Step::RmRestart { expect }
            | Step::Abend { expect, .. }
            | Step::Reset { expect, .. } => (Some(expect), None),
            _ => (None, None),
        };
        a.into_iter().chain(b).flat_map(|m| m.keys())
    }

    /// The action name as written in the file.
    pub fn action(&self) -> &'static str {
        match self {
            Step::Write { .. } => "write",
            Step::Start { .. } => "start",
            Step::Complete { .. } => "complete",
            Step::Copy { .. } => "copy",
            Step::Ipl { .. } => "ipl",
            Step::RmRestart { .. } => "rm-restart",
            Step::Abend { .. } => "abend",
            Step::Reset { .. } => "reset",
        }
    }
}

const ACTIONS: &str = "write, start, complete, copy, ipl, rm-restart, abend or reset";

impl RawStep {
    /// Checks the fields against the action: required ones present, others absent.
    pub fn into_step(self, src: &Source<'_>) -> Result<Step, ScenarioError> {
        let action = self.action.get_ref().clone();
        let allowed: &[&str] = match action.as_str() {
            "write" => &["volume", "tracks", "pattern"],
            "start" => &["session", "program", "extents", "targets", "expect_error"],
            "complete" => &["session", "expect_error"],
            "copy" => &["subsystem", "tracks"],
            "ipl" => &["expect", "reset_during_replay"],
            "rm-restart" => &["expect"],
            "abend" => &["program", "expect"],
            "reset" => &["subsystem", "lose_volatile", "expect"],
            other => {
                return Err(src.err(
                    &self.action,
                    "action",
                    format!("unknown action `{other}` (expected {ACTIONS})"),
                ))
            }
        };
        let present: [(&str, Option<std::ops::Range<usize>>); 12] = [
            ("volume", self.volume.as_ref().map(|x| x.span())),
            ("tracks", self.tracks.as_ref().map(|x| x.span())),
            ("pattern", self.pattern.as_ref().map(|x| x.span())),
            ("session", self.session.as_ref().map(|x| x.span())),
            ("program", self.program.as_ref().map(|x| x.span())),
            ("extents", self.extents.as_ref().map(|x| x.span())),
            ("targets", self.targets.as_ref().map(|x| x.span())),
            ("expect_error", self.expect_error.as_ref().map(|x| x.span())),
            ("subsystem", self.subsystem.as_ref().map(|x| x.span())),
            (
                "lose_volatile",
                self.lose_volatile.as_ref().map(|x| x.span()),
            ),
            ("expect", self.expect.as_ref().map(|x| x.span())),
            (
                "reset_during_replay",
                self.reset_during_replay.as_ref().map(|x| x.span()),
            ),
        ];
        for (name, span) in &present {
            if let Some(span) = span {
                if !allowed.contains(name) {
                    return Err(ScenarioError::Invalid {
                        path: src.path.to_string(),
                        line: src.line(span.start),
                        field: name.to_string(),
                        message: format!(
                            "`{name}` does not belong to action `{action}` (it takes: {})",
                            allowed.join(", ")
                        ),
                    });
                }
            }
        }
        let line = src.line(self.action.span().start);
        let missing = |name: &str| ScenarioError::Invalid {
            path: src.path.to_string(),
            line,
            field: name.to_string(),
            message: format!("action `{action}` needs `{name}`"),
        };
        let req = |v: Option<Spanned<String>>, name: &str| {
            v.map(Spanned::into_inner).ok_or_else(|| missing(name))
        };
        let opt = |v: Option<Spanned<String>>| v.map(Spanned::into_inner);
        if let Some(e) = &self.expect {
            check_outcomes(src, e, "expect", e.get_ref())?;
        }
        if let Some(r) = &self.reset_during_replay {
            check_outcomes(src, r, "reset_during_replay", &r.get_ref().expect)?;
        }
        if let Some(id) = &self.session {
            controller::check_id("session id", id.get_ref())
                .map_err(|m| src.err(id, "session", m))?;
        }
        let expect = self.expect.map(Spanned::into_inner).unwrap_or_default();
        Ok(match action.as_str() {
            "write" => {
                let tracks = match self.tracks {
                    Some(t) => match t.get_ref() {
                        toml::Value::String(s) => s.clone(),
                        _ => {
                            return Err(src.err(
                                &t,
                                "tracks",
                                "expected a string of extents, e.g. \"0-15\"",
                            ))
                        }
                    },
                    None => return Err(missing("tracks")),
                };
                Step::Write {
                    volume: req(self.volume, "volume")?,
                    tracks,
                    pattern: req(self.pattern, "pattern")?,
                }
            }
            "start" => {
                let extents = self.extents.ok_or_else(|| missing("extents"))?;
                if extents.get_ref().is_empty() {
                    return Err(src.err(
                        &extents,
                        "extents",
                        "a session protects at least one extent",
                    ));
                }
                let targets = self.targets.ok_or_else(|| missing("targets"))?;
                check_targets(src, &targets)?;
                Step::Start {
                    session: req(self.session, "session")?,
                    program: opt(self.program).unwrap_or_else(|| "DFSMSDSS".into()),
                    extents: extents.into_inner(),
                    targets: targets.into_inner(),
                    expect_error: opt(self.expect_error),
                }
            }
            "complete" => Step::Complete {
                session: req(self.session, "session")?,
                expect_error: opt(self.expect_error),
            },
            "copy" => {
                let tracks = match self.tracks {
                    None => None,
                    Some(t) => match t.get_ref() {
                        toml::Value::Integer(n) if *n > 0 => Some(*n as u64),
                        _ => {
                            return Err(src.err(
                                &t,
                                "tracks",
                                "expected a positive number of tracks",
                            ))
                        }
                    },
                };
                Step::Copy {
                    subsystem: opt(self.subsystem),
                    tracks,
                }
            }
            "ipl" => Step::Ipl {
                expect,
                reset_during_replay: self.reset_during_replay.map(Spanned::into_inner),
            },
            "rm-restart" => Step::RmRestart { expect },
            "abend" => Step::Abend {
                program: req(self.program, "program")?,
                expect,
            },
            _ => Step::Reset {
                subsystem: opt(self.subsystem),
                lose_volatile: self.lose_volatile.map(Spanned::into_inner).unwrap_or(false),
                expect,
            },
        })
    }
}

/// Checks an event's expected outcomes before anything runs: each is
/// `resumed`, `untouched` or `terminated(<reason>)` with a known reason.
fn check_outcomes<T>(
    src: &Source<'_>,
    at: &Spanned<T>,
    field: &str,
    expect: &ExpectOutcomes,
) -> Result<(), ScenarioError> {
    for (session, want) in expect {
        let ok = match want.as_str() {
            "resumed" | "untouched" => true,
            w => w
                .strip_prefix("terminated(")
                .and_then(|r| r.strip_suffix(')'))
                .is_some_and(|r| r.parse::<activity_table::TerminateReason>().is_ok()),
        };
        if !ok {
            return Err(src.err(
                at,
                field,
                format!(
                    "session {session}: `{want}` is not resumed, untouched or \
                     terminated(<reason>) with a known reason"
                ),
            ));
        }
    }
    Ok(())
}

/// Final state of a session.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpectSession {
    pub session: Spanned<String>,
    /// `active | completed | resumed | terminated | terminated(<reason>)`.
    pub state: Spanned<String>,
}

/// Final content of a target: the time-zero image of its source in `session`, or a checksum.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpectTarget {
    /// `[SUB/]VOL`.
    pub volume: Spanned<String>,
    /// With `session`: the target holds that session's time-zero image of its source.
    pub session: Option<Spanned<String>>,
    /// With `crc32c`: the tracks to checksum.
    pub tracks: Option<Spanned<String>>,
    /// CRC-32C of the tracks' bytes in track order, `0x` + 8 hex digits.
    pub crc32c: Option<Spanned<String>>,
}

/// Source text with line lookup for spans.
pub(crate) struct Source<'a> {
    pub path: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    /// 1-based line of byte offset `at`.
    pub fn line(&self, at: usize) -> usize {
        let end = at.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// An error about `field` whose value starts at `span`.
    pub fn err<T>(
        &self,
        span: &Spanned<T>,
        field: &str,
        message: impl Into<String>,
    ) -> ScenarioError {
        ScenarioError::Invalid {
            path: self.path.to_string(),
            line: self.line(span.span().start),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// An error about `field` of the table (step or expectation) starting at `span`: the
    /// line is the one inside that table where `field` is written (else the table's first).
    pub fn field_err(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> ScenarioError {
        let first = self.line(span.start);
        let key = field.split(['.', '[']).next().unwrap_or(field);
        let line = self
            .text
            .lines()
            .enumerate()
            .skip(first) // the lines after the table header
            .take_while(|(_, l)| !l.trim_start().starts_with('['))
            .map(|(i, _)| i + 1)
            .find(|l| key_on_line(self.text, *l).is_some_and(|k| k == key))
            .unwrap_or(first);
        ScenarioError::Invalid {
            path: self.path.to_string(),
            line,
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// Parses the file; syntax and type errors carry the line and the key on it.
    pub fn parse(&self) -> Result<ScenarioFile, ScenarioError> {
        toml::from_str(self.text).map_err(|e| {
            let line = e.span().map(|s| self.line(s.start)).unwrap_or(0);
            let field = key_on_line(self.text, line).unwrap_or_else(|| "(document)".into());
            // toml reports an integer beyond 64 bits in its own words
            // (QA: "invalid type: integer `99...` as i128").
            let message = if e.message().contains("as i128") {
                "a number beyond the 64-bit range".to_string()
            } else {
                e.message().to_string()
            };
            ScenarioError::Invalid {
                path: self.path.to_string(),
                line,
                field,
                message,
            }
        })
    }
}

/// The key at the start of `line` (1-based), if that line is `key = ...`.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (key, _) = l.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && !key.starts_with('#')).then(|| key.to_string())
}

/// A start's `targets`, each `[SUB/]SOURCE=[SUB/]TARGET`, checked before
/// anything runs (QA: a second target for one source silently replaced
/// the first, and a target's subsystem prefix was ignored): one target per
/// source, never the source itself, and a target on its source's
/// subsystem (a session copies within each subsystem).
fn check_targets(src: &Source<'_>, targets: &Spanned<Vec<String>>) -> Result<(), ScenarioError> {
    let bad = |m: String| Err(src.err(targets, "targets", m));
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for t in targets.get_ref() {
        let Some((source, target)) = t.split_once('=') else {
            return bad(format!("`{t}` is not [SUB/]SOURCE=TARGET"));
        };
        let split = |text: &str| -> (Option<String>, String) {
            match text.split_once('/') {
                Some((s, n)) => (Some(s.to_string()), n.to_string()),
                None => (None, text.to_string()),
            }
        };
        let (ssub, sname) = split(source);
        let (tsub, tname) = split(target);
        if let (Some(a), Some(b)) = (&ssub, &tsub) {
            if a != b {
                return bad(format!(
                    "`{t}`: the target is on subsystem {b}, the source on {a}: a session's \
                     target is on its source's subsystem"
                ));
            }
        }
        if sname == tname && (ssub == tsub || ssub.is_none() || tsub.is_none()) {
            return bad(format!("`{t}`: a volume cannot be its own target"));
        }
        if let Some((_, first)) = seen.iter().find(|(s, _)| *s == source) {
            return bad(format!(
                "source {source} has two targets (`{first}` and `{target}`): one per source"
            ));
        }
        seen.push((source, target));
    }
    Ok(())
}
