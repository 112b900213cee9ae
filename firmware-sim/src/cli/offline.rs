//! Offline verbs: `replay FILE`, `fault-run`, `check --data-dir DIR`.

use std::path::PathBuf;

use clap::Args;

use crate::error::CliError;
use crate::output::{emit, print_json};

/// `replay FILE`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Scenario file (TOML) with expected outcomes.
    pub file: PathBuf,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `fault-run [--seed N] [--runs M] [--json]`.
#[derive(Debug, Args)]
pub struct FaultRunArgs {
    /// First seed (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of runs (seeds seed, seed+1, ...).
    #[arg(long, default_value_t = 100)]
    pub runs: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `check --data-dir DIR`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Data directory to check (the daemon must not be running on it).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `replay`: the scenario against real controller subsystems in a
/// temporary directory; exit 4 when an expectation fails.
pub fn replay(a: ReplayArgs) -> Result<(), CliError> {
    let file = a.file.display().to_string();
    let report = resource_manager::run_scenario(&a.file)
        .map_err(|e| CliError::Failed(format!("replay: {e}")))?;
    if a.json {
        print_json(&serde_json::json!({
            "name": report.name,
            "path": report.path,
            "passed": report.passed(),
            "log": report.log,
            "failures": report.failures,
        }))?;
    } else {
        print!("{report}");
    }
    if report.passed() {
        Ok(())
    } else {
        Err(CliError::Expectation(format!(
            "replay {file}: {} expectation(s) failed; reproduce with: firmware-sim replay {file}",
            report.failures.len()
        )))
    }
}

/// Runs `fault-run`.
pub fn fault_run(_a: FaultRunArgs) -> Result<(), CliError> {
    Err(CliError::Failed(
        "fault-run: the fault simulator (crate sim) is not in this build yet".into(),
    ))
}

/// Runs `check`: exit 0 when the data directory is consistent (warnings
/// allowed), exit 4 with the first error otherwise.
pub fn check(a: CheckArgs) -> Result<(), CliError> {
    let dir = a.data_dir.display().to_string();
    let r = controller::check(&a.data_dir)
        .map_err(|e| CliError::failed(format!("check {dir}"), e.full_message()))?;
    emit(a.json, &r, |r| {
        println!(
            "data dir {dir}: {}",
            if r.ok { "consistent" } else { "INCONSISTENT" }
        );
        for s in &r.slots {
            println!("  root {s}");
        }
        println!(
            "  generation {}, {} journal record(s) (stop: {}), {}",
            r.root_generation,
            r.journal_records,
            r.journal_stop,
            if r.dirty {
                "not shut down cleanly"
            } else {
                "shut down cleanly"
            }
        );
        println!(
            "  {} volume(s), {} map(s), {} physical session(s)",
            r.volumes, r.maps, r.sessions
        );
        for e in &r.errors {
            println!("  error: {e}");
        }
        for w in &r.warnings {
            println!("  warning: {w}");
        }
    })?;
    if r.ok {
        Ok(())
    } else {
        Err(CliError::Expectation(format!(
            "check {dir}: {} error(s), first: {}",
            r.errors.len(),
            r.errors.first().map(String::as_str).unwrap_or("-")
        )))
    }
}
