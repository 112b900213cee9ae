//! Offline verbs: `replay FILE`, `fault-run`, `check --data-dir DIR`.

use std::path::PathBuf;

use clap::Args;

use super::salvage::{name_salvage, salvage_tables};
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
    /// First salvage every activity table in DIR/tables: keep the intact
    /// records, leave damaged ones out (listed), keep a copy of each damaged
    /// file as <name>.damaged-N. The daemon must be stopped.
    #[arg(long)]
    pub salvage_tables: bool,
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
    if !a.data_dir.is_dir() {
        return Err(CliError::Failed(format!("check {dir}: no such directory")));
    }
    let salvaged = if a.salvage_tables {
        Some(salvage_tables(&a.data_dir)?)
    } else {
        None
    };
    let unsalvaged = salvaged
        .iter()
        .flatten()
        .filter(|t| t.error.is_some())
        .count();
    if let (Some(tables), false) = (&salvaged, a.json) {
        println!("salvage of the activity tables in {dir}:");
        let mut intact = 0;
        for t in tables {
            if t.error.is_none() && t.skipped.is_empty() && t.torn_tail_bytes == 0 {
                intact += 1;
            } else {
                println!("  {t}");
            }
        }
        println!("  {intact} other table(s) intact");
    }
    let mut r = controller::check(&a.data_dir).map_err(|e| {
        CliError::failed(
            format!("check {dir}"),
            name_salvage(&e.full_message(), &a.data_dir),
        )
    })?;
    for e in &mut r.errors {
        *e = name_salvage(e, &a.data_dir);
    }
    if let (Some(tables), true) = (&salvaged, a.json) {
        print_json(&serde_json::json!({ "salvage": tables, "check": r }))?;
        return check_outcome(&dir, &r, unsalvaged);
    }
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
    check_outcome(&dir, &r, unsalvaged)
}

/// Exit 0 when consistent and every table was salvaged; else 4 naming the first problem.
fn check_outcome(
    dir: &str,
    r: &controller::CheckReport,
    unsalvaged: usize,
) -> Result<(), CliError> {
    if !r.ok {
        return Err(CliError::Expectation(format!(
            "check {dir}: {} error(s), first: {}",
            r.errors.len(),
            r.errors.first().map(String::as_str).unwrap_or("-")
        )));
    }
    if unsalvaged > 0 {
        return Err(CliError::Expectation(format!(
            "check {dir}: {unsalvaged} activity table(s) could not be salvaged (see above)"
        )));
    }
    Ok(())
}
