//! `firmware-sim bench copy|cow|nbd`: track copy throughput, first writes
//! after a snapshot, and the daemon over NBD, measured on the user's own
//! disk (a scratch data dir under `--dir`, removed afterwards).
//!
//! Each run prints a table beside its reference (`cp` of the same data,
//! plain writes, fio against the daemon), the load average before and after
//! (figures taken beside other work are not to be trusted) and, with
//! `--json`, one JSON object instead. Progress bars go to stderr.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::error::CliError;

mod copy;
mod cow;
mod nbd;

/// `bench` and its verbs.
#[derive(Debug, Args)]
pub struct BenchCmd {
    #[command(subcommand)]
    verb: BenchVerb,
}

#[derive(Debug, Subcommand)]
enum BenchVerb {
    /// A full background copy of a volume, in tracks/s and MiB/s, beside `cp` of the same file.
    Copy(copy::CopyArgs),
    /// Random 4 KiB first writes after a nocopy snapshot starts, beside the same writes with no map.
    Cow(cow::CowArgs),
    /// fio's nbd engine against `firmware-sim boot` (needs fio).
    Nbd(nbd::NbdArgs),
}

/// Options every bench verb takes.
#[derive(Debug, Args)]
pub struct Common {
    /// Directory for the scratch data dir (it measures this disk).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `bench` verb.
pub fn run(cmd: BenchCmd) -> Result<(), CliError> {
    match cmd.verb {
        BenchVerb::Copy(a) => copy::run(a),
        BenchVerb::Cow(a) => cow::run(a),
        BenchVerb::Nbd(a) => nbd::run(a),
    }
}

/// A scratch directory removed when dropped (also on error).
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new(under: &Path, what: &str) -> Result<Scratch, CliError> {
        // The directory names the disk to measure: a missing one is a typo
        // (QA: `--dir /nonexistent` was created, and measured the root disk).
        if !under.is_dir() {
            return Err(CliError::Usage(format!(
                "--dir {}: not an existing directory (it names the disk to measure)",
                under.display()
            )));
        }
        let p = under.join(format!("fsim-bench-{what}-{}", std::process::id()));
        std::fs::create_dir(&p).map_err(|e| {
            CliError::Failed(format!(
                "cannot create the scratch directory {}: {e}",
                p.display()
            ))
        })?;
        Ok(Scratch(p))
    }
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The 1-minute load average, and what it says about the figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Load {
    pub(crate) before: f64,
    pub(crate) after: f64,
    pub(crate) cpus: usize,
}

pub(crate) fn load_now() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

impl Load {
    pub(crate) fn start() -> Load {
        Load {
            before: load_now(),
            after: 0.0,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
    pub(crate) fn finish(mut self) -> Load {
        self.after = load_now();
        self
    }
    /// One line for the human report.
    pub(crate) fn line(&self) -> String {
        // Only the load before counts: the benchmark's own threads raise
        // the figure after it.
        let busy = self.before > 0.5 * self.cpus as f64;
        format!(
            "load average {:.2} before, {:.2} after, {} CPUs{}",
            self.before,
            self.after,
            self.cpus,
            if busy {
                " -- the machine was busy: compare figures only within this run"
            } else {
                ""
            }
        )
    }
}

/// A progress bar on stderr (hidden with `--json` or when stderr is not a terminal).
pub(crate) fn bar(json: bool, len: u64, what: &str) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>14} [{bar:40}] {percent:>3}% {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// MiB per second.
pub(crate) fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64().max(1e-9)
}

/// `a / b` as `0.62x` (or `-` when `b` is zero).
pub(crate) fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

/// Parses `30%` or `30` as a percentage in 0..=100.
pub(crate) fn parse_percent(s: &str) -> Result<u8, String> {
    let n = s.trim().trim_end_matches('%');
    match n.parse::<u8>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(format!("`{s}` is not a percentage from 0% to 100%")),
    }
}

/// Opens a fresh subsystem in `dir` with `volumes` of `model`.
pub(crate) fn open_subsystem(
    dir: &Path,
    model: &geometry::DeviceModel,
    volumes: &[&str],
) -> Result<controller::Subsystem, CliError> {
    let mut toml = String::from("id = \"BENCH\"\n");
    for v in volumes {
        toml.push_str(&format!("[[volumes]]\nid = \"{v}\"\nmodel = \"{model}\"\n"));
    }
    let cfg = controller::SubsystemConfig::from_toml_str(&toml)
        .map_err(|e| CliError::Failed(format!("bench config: {e}")))?;
    controller::Subsystem::open(dir, cfg)
        .map_err(|e| CliError::Failed(format!("bench subsystem: {}", e.full_message())))
}

/// Maps a controller error to a one-line CLI failure.
pub(crate) fn ctl(what: &str) -> impl Fn(controller::ControllerError) -> CliError + '_ {
    move |e| CliError::Failed(format!("{what}: {}", e.full_message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_parse_with_or_without_the_sign_and_refuse_out_of_range() {
        assert_eq!(parse_percent("30%"), Ok(30));
        assert_eq!(parse_percent("100"), Ok(100));
        assert!(parse_percent("101%").unwrap_err().contains("0% to 100%"));
        assert!(parse_percent("x").is_err());
    }
}
