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

/// Runs `fault-run`: seeded fault injection over `runs` seeds from `seed`;
/// one summary line per figure and invariant; exit 4 (with the failing seed
/// and a reproduce command) when an invariant breaks or a rerun diverges.
pub fn fault_run(a: FaultRunArgs) -> Result<(), CliError> {
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    if a.runs == 0 {
        return Err(CliError::Usage("--runs must be at least 1".into()));
    }
    let cfg = sim::FaultRunConfig::new(seed, a.runs);
    let summary = sim::fault_run(&cfg);
    if a.json {
        println!("{}", summary.to_json());
    } else {
        print!("{summary}");
    }
    if summary.passed() {
        return Ok(());
    }
    match summary.failures.first() {
        Some(f) => {
            let violation = f.violation.to_string();
            let reproduce = if violation.contains("reproduce") {
                String::new()
            } else {
                format!("; reproduce: {}", f.violation.reproduce())
            };
            Err(CliError::Expectation(format!(
                "fault-run: {} of {} seeds failed; first: seed {}: {violation}{reproduce}",
                summary.seeds_failed, summary.seeds_run, f.seed,
            )))
        }
        None => Err(CliError::Expectation(format!(
            "fault-run: determinism check failed for seeds {:?}; reproduce: firmware-sim fault-run --seed {} --runs {}",
            summary.determinism.mismatched_seeds, seed, a.runs
        ))),
    }
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
        println!("  {}", r.summary());
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
