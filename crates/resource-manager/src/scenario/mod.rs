//! Scenario files: a TOML description of volumes, application writes, session starts,
//! copy steps, recovery events and expected outcomes, run against real controller
//! subsystems in a temporary directory (docs/SESSIONS.md "Scenario files").
//!
//! [`run_scenario`] is what `firmware-sim replay FILE` calls. It returns `Err` only for a
//! file that cannot be read or is malformed (the error names the line and the field). A
//! scenario that runs but whose expectations fail returns a report with
//! [`ScenarioReport::passed`] false that lists every failed expectation.

mod expect;
mod format;
mod port;
mod runner;

use std::fmt;
use std::path::Path;

/// Why a scenario could not be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The file is malformed: bad TOML, a wrong type, an unknown field, or a value that
    /// names something that does not exist or cannot be parsed.
    #[error("{path}: line {line}, field `{field}`: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line of the offending value (0 if unknown).
        line: usize,
        /// The field (key) concerned.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The subsystems could not be set up (data directory, controller open).
    #[error("{path}: setup failed: {message}")]
    Setup {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
}

/// The outcome of one scenario run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioReport {
    /// The scenario's `name`.
    pub name: String,
    /// The file.
    pub path: String,
    /// What happened, one line per step (decisions of events included).
    pub log: Vec<String>,
    /// Failed expectations and unexpected errors, each naming its line.
    pub failures: Vec<String>,
}

impl ScenarioReport {
    /// True when every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for ScenarioReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scenario: {} ({})", self.name, self.path)?;
        for l in &self.log {
            writeln!(f, "  {l}")?;
        }
        if self.passed() {
            writeln!(f, "PASS")
        } else {
            writeln!(f, "FAIL: {} expectation(s) failed", self.failures.len())?;
            for x in &self.failures {
                writeln!(f, "  - {x}")?;
            }
            Ok(())
        }
    }
}

/// Runs the scenario in `path` against controller subsystems in a temporary directory.
pub fn run_scenario(path: impl AsRef<Path>) -> Result<ScenarioReport, ScenarioError> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ScenarioError::Io {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    // Not UTF-8: say where (QA: "stream did not contain valid UTF-8", no
    // line), as for every other malformed scenario.
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let ok = &e.as_bytes()[..at];
        ScenarioError::Invalid {
            path: shown.clone(),
            line: ok.iter().filter(|b| **b == b'\n').count() + 1,
            field: "(document)".into(),
            message: format!(
                "byte {at} is not UTF-8: a scenario is TOML text (is this the right file?)"
            ),
        }
    })?;
    run_scenario_str(&shown, &text)
}

/// Parses and checks a scenario given as text without running it: every
/// step is converted as [`run_scenario_str`] would. Returns the number of
/// steps. For `scenario check`-style validation and fuzzing (it must return
/// an error, never panic, whatever the text).
pub fn check_scenario_str(path: &str, text: &str) -> Result<usize, ScenarioError> {
    runner::check(format::Source { path, text })
}

/// Runs a scenario given as text; `path` is only used in messages.
pub fn run_scenario_str(path: &str, text: &str) -> Result<ScenarioReport, ScenarioError> {
    runner::run(format::Source { path, text })
}
