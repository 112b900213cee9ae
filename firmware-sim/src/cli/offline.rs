//! Offline verbs: `replay FILE`, `fault-run` (and `fault-run merge FILE...`),
//! `check --data-dir DIR`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

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

/// `fault-run [--seed N] [--runs M] [--shard K/N] [--json] [--out FILE]`,
/// or `fault-run merge FILE...`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FaultRunArgs {
    /// First seed (default: random, printed; required with --shard).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of runs of the whole campaign (seeds seed, seed+1, ...), all shards together.
    #[arg(long, default_value_t = 100)]
    pub runs: u64,
    /// Run only shard K of N (1-based, e.g. 2/4): the seeds seed+i with
    /// i mod N = K-1. Combine the shards' JSON summaries with `fault-run merge`.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON summary to FILE (input of `fault-run merge`).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// `merge`.
    #[command(subcommand)]
    pub command: Option<FaultRunCmd>,
}

/// `fault-run` subcommands.
#[derive(Debug, Subcommand)]
pub enum FaultRunCmd {
    /// Merge the JSON summaries of the shards 1/N..N/N of one campaign into
    /// the summary of the whole campaign; exit 4 when a seed failed.
    Merge(MergeArgs),
}

/// `fault-run merge FILE... [--json] [--out FILE]`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Summaries written by `fault-run --shard K/N --json` (or `--out`), one per shard.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print the merged summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the merged JSON summary to FILE.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `check [--data-dir DIR]`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Data directory to check (the daemon must not be running on it);
    /// default: `boot`'s default.
    #[arg(long, value_name = "DIR", default_value = "./firmware-sim-data")]
    pub data_dir: PathBuf,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
    /// First salvage every activity table in DIR/tables: keep the intact
    /// records, leave damaged ones out (listed), keep a copy of each damaged
    /// file as <name>.damaged-N. The daemon must be stopped.
    #[arg(long)]
    pub salvage_tables: bool,
    /// First write again the damaged trailers of the volume files (the 4 KiB
    /// block that identifies a file) from the metadata root, which records
    /// the same. Only a trailer that is damaged, in a file of the right
    /// size, is rewritten; the volume's bytes are not touched. The daemon
    /// must be stopped.
    #[arg(long)]
    pub repair_trailers: bool,
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

/// Runs `fault-run`: seeded fault injection over `runs` seeds from `seed`
/// (or one shard of them); one summary line per figure and invariant; exit 4
/// (with the failing seed and a reproduce command) when an invariant breaks
/// or a rerun diverges. `fault-run merge` combines shard summaries.
pub fn fault_run(a: FaultRunArgs) -> Result<(), CliError> {
    if let Some(FaultRunCmd::Merge(m)) = a.command {
        return fault_run_merge(m);
    }
    let shard = match &a.shard {
        Some(text) => text
            .parse::<sim::Shard>()
            .map_err(|e| CliError::Usage(format!("--shard: {e}")))?,
        None => sim::Shard::ALL,
    };
    if shard.count > 1 && a.seed.is_none() {
        return Err(CliError::Usage(format!(
            "--shard {shard} needs --seed: every shard of a campaign must run the same seeds"
        )));
    }
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    if a.runs == 0 {
        return Err(CliError::Usage("--runs must be at least 1".into()));
    }
    // Before hours of seeds, not after (QA: an --out in a missing directory
    // threw away the whole campaign's summary).
    check_out(a.out.as_deref())?;
    let mut cfg = sim::FaultRunConfig::new(seed, a.runs);
    cfg.shard = shard;
    let summary = sim::fault_run(&cfg);
    report(&summary, a.json, a.out.as_deref())?;
    let mut campaign = format!("--seed {seed} --runs {}", a.runs);
    if shard != sim::Shard::ALL {
        campaign.push_str(&format!(" --shard {shard}"));
    }
    verdict("fault-run", &summary, &campaign)
}

/// Runs `fault-run merge`: reads the shard summaries, checks that they are
/// every shard of one campaign exactly once (exit 2 naming the file or shard
/// otherwise; 1 when a file cannot be read), prints the merged summary and
/// exits like `fault-run` would have for the whole campaign.
fn fault_run_merge(m: MergeArgs) -> Result<(), CliError> {
    check_out(m.out.as_deref())?;
    let mut parts = Vec::with_capacity(m.files.len());
    for path in &m.files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::failed(format!("fault-run merge: {}", path.display()), e))?;
        let part = sim::FaultRunSummary::from_json(&text).map_err(|e| {
            CliError::Usage(format!(
                "fault-run merge: {}: not a `fault-run --json` summary: {e}",
                path.display()
            ))
        })?;
        parts.push(part);
    }
    let merged = sim::FaultRunSummary::merge(&parts).map_err(|e| {
        CliError::Usage(format!(
            "fault-run merge: {}",
            e.message(|i| m.files[i].display().to_string())
        ))
    })?;
    report(&merged, m.json, m.out.as_deref())?;
    let campaign = sim::summary::Campaign::parse(&merged.config)
        .map(|c| format!("--seed {} --runs {}", c.seed, c.runs))
        .unwrap_or_default();
    verdict("fault-run merge", &merged, &campaign)
}

/// Fails unless `out` can be written: opened for appending (created
/// empty if missing; an existing file is left as it is until the summary
/// replaces it).
fn check_out(out: Option<&std::path::Path>) -> Result<(), CliError> {
    let Some(path) = out else {
        return Ok(());
    };
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map(drop)
        .map_err(|e| CliError::failed(format!("--out {}: cannot write it", path.display()), e))
}

/// Prints a summary (JSON or text), then writes its JSON to `out` (printed
/// first, so a file that cannot be written loses nothing).
fn report(
    summary: &sim::FaultRunSummary,
    json: bool,
    out: Option<&std::path::Path>,
) -> Result<(), CliError> {
    let text = summary.to_json();
    if json {
        println!("{text}");
    } else {
        print!("{summary}");
    }
    if let Some(path) = out {
        std::fs::write(path, format!("{text}\n"))
            .map_err(|e| CliError::failed(format!("--out {}", path.display()), e))?;
    }
    Ok(())
}

/// Exit 0 when every seed passed and reruns matched; else 4 naming the first
/// failed seed and how to reproduce it (`campaign`: `--seed S --runs R`).
fn verdict(verb: &str, summary: &sim::FaultRunSummary, campaign: &str) -> Result<(), CliError> {
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
                "{verb}: {} of {} seeds failed; first: seed {}: {violation}{reproduce}",
                summary.seeds_failed, summary.seeds_run, f.seed,
            )))
        }
        None => Err(CliError::Expectation(format!(
            "{verb}: determinism check failed for seeds {:?}; reproduce: firmware-sim fault-run {campaign}",
            summary.determinism.mismatched_seeds
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
    let repaired = if a.repair_trailers {
        Some(controller::repair_trailers(&a.data_dir).map_err(|e| {
            CliError::failed(format!("check {dir}: repair trailers"), e.full_message())
        })?)
    } else {
        None
    };
    if let (Some(lines), false) = (&repaired, a.json) {
        println!("trailers of the volume files in {dir}:");
        if lines.is_empty() {
            println!("  none damaged");
        }
        for l in lines {
            println!("  {l}");
        }
    }
    let mut r = controller::check(&a.data_dir).map_err(|e| {
        let text = format!(
            "check {dir}: {}",
            name_salvage(&e.full_message(), &a.data_dir)
        );
        // A directory too damaged to check is a finding (exit 4, as for the
        // errors a check reports); a lock held or a failed read is not.
        if e.kind() == controller::ErrorKind::Corrupt {
            CliError::Expectation(text)
        } else {
            CliError::Failed(text)
        }
    })?;
    for e in &mut r.errors {
        *e = name_salvage(e, &a.data_dir);
    }
    if a.json && (salvaged.is_some() || repaired.is_some()) {
        print_json(&serde_json::json!({
            "salvage": salvaged,
            "repair_trailers": repaired,
            "check": r,
        }))?;
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
