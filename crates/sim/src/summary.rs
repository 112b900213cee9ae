//! The figures a fault run prints (docs/RELIABILITY.md, "Figures"): one
//! machine-readable summary (JSON) and the same as text for people.
//!
//! Per-run [`RunStats`] are merged into one [`FaultRunSummary`]; recovery times
//! are kept as samples so percentiles are exact.
//!
//! The summaries of the shards of one campaign (`fault-run --shard K/N
//! --json`, one per process or machine) combine with
//! [`FaultRunSummary::merge`] into the summary one process running every seed
//! would have printed: same seeds, failures, counters and checks
//! (docs/RELIABILITY.md, "Campaigns across processes and machines").

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::check::{Invariant, Violation};
use crate::seed::Shard;

/// Counters of one run (or of several, merged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStats {
    /// Steps executed (operations, crashes and recoveries).
    pub steps: u64,
    /// Host writes acknowledged.
    pub writes_acked: u64,
    /// Flush boundaries at which crash images were built.
    pub crash_points: u64,
    /// Crash images recovered and checked.
    pub images_checked: u64,
    /// Resets survived, without loss of volatile state.
    pub resets: u64,
    /// Resets survived with loss of volatile state.
    pub resets_lose_volatile: u64,
    /// IPLs survived (after a crash, power loss or reset).
    pub ipls: u64,
    /// IPLs survived that were themselves interrupted by a crash during replay.
    pub ipls_during_replay: u64,
    /// Resource-manager restarts and backup-program abends survived.
    pub rm_restarts: u64,
    /// Backup-program abends survived.
    pub abends: u64,
    /// Faults injected, by site (named controller sites and store-level kinds
    /// such as `store.write.eio`, `crash.power-loss`).
    pub faults: BTreeMap<String, u64>,
    /// Tracks read back and compared with the model.
    pub tracks_verified: u64,
    /// Invariant checks run, by id.
    pub checks: BTreeMap<Invariant, u64>,
    /// Journal or table entries replayed by IPLs.
    pub entries_replayed: u64,
    /// Violations of known, reported bugs that the run was told to tolerate
    /// (counted, then the run went on), by signature.
    pub tolerated: BTreeMap<String, u64>,
    /// Wall-clock IPL durations in microseconds (not part of the trace hash).
    pub recovery_us: Vec<u64>,
}

impl RunStats {
    /// Counts one check of `inv`.
    pub fn checked(&mut self, inv: Invariant) {
        *self.checks.entry(inv).or_default() += 1;
    }

    /// Counts one fault at `site`.
    pub fn fault(&mut self, site: &str) {
        *self.faults.entry(site.to_string()).or_default() += 1;
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &RunStats) {
        self.steps += other.steps;
        self.writes_acked += other.writes_acked;
        self.crash_points += other.crash_points;
        self.images_checked += other.images_checked;
        self.resets += other.resets;
        self.resets_lose_volatile += other.resets_lose_volatile;
        self.ipls += other.ipls;
        self.ipls_during_replay += other.ipls_during_replay;
        self.rm_restarts += other.rm_restarts;
        self.abends += other.abends;
        for (k, v) in &other.faults {
            *self.faults.entry(k.clone()).or_default() += v;
        }
        self.tracks_verified += other.tracks_verified;
        for (k, v) in &other.checks {
            *self.checks.entry(*k).or_default() += v;
        }
        self.entries_replayed += other.entries_replayed;
        for (k, v) in &other.tolerated {
            *self.tolerated.entry(k.clone()).or_default() += v;
        }
        self.recovery_us.extend_from_slice(&other.recovery_us);
    }
}

/// Result of running seeds twice and comparing trace hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Determinism {
    /// Seeds run twice.
    pub seeds_checked: u64,
    /// Seeds whose two runs gave different trace hashes.
    pub mismatched_seeds: Vec<u64>,
}

impl Determinism {
    /// Whether every rerun matched.
    pub fn ok(&self) -> bool {
        self.mismatched_seeds.is_empty()
    }
}

/// One failed seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The first violation found.
    pub violation: Violation,
    /// The last trace events before it.
    pub trace_tail: Vec<String>,
}

/// What a fault run prints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRunSummary {
    /// Configuration echo (seed, runs, shard, mode).
    pub config: String,
    /// Seeds run.
    pub seeds_run: u64,
    /// Seeds that violated an invariant.
    pub seeds_failed: u64,
    /// Failures (first violation per failed seed, at most 20 kept).
    pub failures: Vec<Failure>,
    /// Every failed seed, in campaign order (the `failures` list keeps the
    /// details of the first few only).
    #[serde(default)]
    pub failed_seeds: Vec<u64>,
    /// Failed seeds by signature (invariant and message with numbers
    /// removed), so a campaign shows how many distinct bugs it hit.
    pub failure_signatures: BTreeMap<String, u64>,
    /// Counters over all runs.
    pub stats: RunStats,
    /// Median IPL time in microseconds (wall clock).
    pub recovery_us_p50: u64,
    /// 99th percentile IPL time in microseconds (wall clock).
    pub recovery_us_p99: u64,
    /// Determinism self-check.
    pub determinism: Determinism,
    /// Wall-clock duration of the campaign in milliseconds (for a merged
    /// summary: the longest shard's, the campaign's wall time when the shards
    /// ran side by side).
    pub elapsed_ms: u64,
    /// Set when this summary was merged from the summaries of shards
    /// ([`FaultRunSummary::merge`]); absent from a single process's JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<Merged>,
}

/// How a merged summary was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merged {
    /// Number of shard summaries merged (the campaign's `N`).
    pub shards: u32,
    /// Whether the recovery percentiles were computed from every IPL's time
    /// (exact), or, because the shard summaries carried no samples (JSON
    /// leaves them out), are the largest of the shards' own percentiles: an
    /// upper bound of the campaign's.
    pub recovery_exact: bool,
}

/// The campaign a summary belongs to, read from its configuration echo
/// (`--seed S --runs R --shard K/N (rest)`, as
/// [`crate::runner::FaultRunConfig::describe`] writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    /// First seed.
    pub seed: u64,
    /// Seeds in the whole campaign.
    pub runs: u64,
    /// The slice the summary covers.
    pub shard: Shard,
    /// Everything else of the configuration (world, faults, steps, shape...),
    /// compared verbatim.
    pub rest: String,
}

impl Campaign {
    /// Reads a configuration echo; `None` when it is not one of a seeded
    /// campaign (say, an exhaustive run's).
    pub fn parse(config: &str) -> Option<Campaign> {
        let mut it = config.splitn(7, ' ');
        let mut flag = |name: &str| -> Option<&str> {
            (it.next()? == name).then_some(())?;
            it.next()
        };
        let seed = flag("--seed")?.parse().ok()?;
        let runs = flag("--runs")?.parse().ok()?;
        let shard = flag("--shard")?.parse().ok()?;
        let rest = it.next().unwrap_or("").to_string();
        Some(Campaign {
            seed,
            runs,
            shard,
            rest,
        })
    }

    /// The configuration echo of this campaign slice.
    pub fn config(&self) -> String {
        let head = format!(
            "--seed {} --runs {} --shard {}",
            self.seed, self.runs, self.shard
        );
        if self.rest.is_empty() {
            head
        } else {
            format!("{head} {}", self.rest)
        }
    }

    /// The configuration echo with the slice written `K/N`: what every
    /// shard of the campaign has in common.
    pub fn slices(&self) -> String {
        Campaign {
            shard: Shard::ALL,
            ..self.clone()
        }
        .config()
        .replacen("--shard 1/1", &format!("--shard K/{}", self.shard.count), 1)
    }

    /// The 0-based index of `seed` in the campaign (the order one process
    /// runs the seeds in).
    pub fn index_of(&self, seed: u64) -> u64 {
        seed.wrapping_sub(self.seed)
    }

    /// How `other` differs from this campaign, ignoring the slice index;
    /// `None` when both are slices of the same campaign.
    fn difference(&self, other: &Campaign) -> Option<String> {
        if other.seed != self.seed {
            Some(format!("--seed {}, not {}", other.seed, self.seed))
        } else if other.runs != self.runs {
            Some(format!("--runs {}, not {}", other.runs, self.runs))
        } else if other.shard.count != self.shard.count {
            Some(format!(
                "{} shards (--shard {}), not {}",
                other.shard.count, other.shard, self.shard.count
            ))
        } else if other.rest != self.rest {
            Some(format!(
                "another configuration: {} instead of {}",
                other.rest, self.rest
            ))
        } else {
            None
        }
    }
}

/// Why summaries could not be merged: they are not exactly the shards
/// `1/N..N/N` of one campaign.
///
/// Inputs are named by their 0-based position; [`MergeError::message`] names
/// them otherwise (the CLI uses file names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeError {
    /// No summary given.
    Empty,
    /// A summary whose configuration echo is not a seeded campaign's.
    NotACampaign {
        /// Which input.
        input: usize,
        /// Its configuration echo.
        config: String,
    },
    /// A summary of another campaign than the first input's.
    MixedCampaigns {
        /// Which input.
        input: usize,
        /// The first input's configuration echo.
        expected: String,
        /// What differs.
        difference: String,
    },
    /// The same shard given twice.
    DuplicateShard {
        /// The shard.
        shard: Shard,
        /// The input that had it first.
        first: usize,
        /// The input that has it again.
        again: usize,
    },
    /// Shards of the campaign not given.
    MissingShards {
        /// The first missing shards (at most 10).
        missing: Vec<Shard>,
        /// How many are missing in all.
        count: u64,
    },
}

impl MergeError {
    /// The message, with input `i` called `name(i)`.
    pub fn message(&self, name: impl Fn(usize) -> String) -> String {
        match self {
            MergeError::Empty => "no summary to merge".to_string(),
            MergeError::NotACampaign { input, config } => format!(
                "{}: not the summary of a seeded fault-run campaign (config {config:?})",
                name(*input)
            ),
            MergeError::MixedCampaigns {
                input,
                expected,
                difference,
            } => format!(
                "{} belongs to another campaign than {}: {difference} (expected the shards of {expected})",
                name(*input),
                name(0)
            ),
            MergeError::DuplicateShard {
                shard,
                first,
                again,
            } => format!(
                "shard {shard} given twice: {} and {}",
                name(*first),
                name(*again)
            ),
            MergeError::MissingShards { missing, count } => {
                let list: Vec<String> = missing.iter().map(Shard::to_string).collect();
                let more = if *count > missing.len() as u64 {
                    format!(" and {} more", *count - missing.len() as u64)
                } else {
                    String::new()
                };
                let what = if *count == 1 { "shard" } else { "shards" };
                format!(
                    "{what} {}{more} missing: every shard 1/N..N/N of the campaign must be merged exactly once",
                    list.join(", ")
                )
            }
        }
    }
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message(|i| format!("summary {}", i + 1)))
    }
}

impl std::error::Error for MergeError {}

/// Keep at most this many failures in a summary.
pub const FAILURES_KEPT: usize = 20;

/// A violation without its numbers: `IPL-1: maps changed across the IPL`.
pub fn signature(v: &Violation) -> String {
    let head = v.detail.split([':', '[']).next().unwrap_or("");
    let words: Vec<&str> = head
        .split_whitespace()
        .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
        .take(8)
        .collect();
    format!("{}: {}", v.invariant, words.join(" "))
}

/// The `p`-th percentile (0..=100) of `samples` (nearest rank), 0 if empty.
pub fn percentile(samples: &[u64], p: u32) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let rank = (u64::from(p) * v.len() as u64).div_ceil(100).max(1) as usize;
    v[rank.min(v.len()) - 1]
}

impl FaultRunSummary {
    /// Adds one run's outcome.
    pub fn add_run(
        &mut self,
        seed: u64,
        stats: &RunStats,
        failure: Option<(Violation, Vec<String>)>,
    ) {
        self.seeds_run += 1;
        self.stats.merge(stats);
        if let Some((violation, trace_tail)) = failure {
            self.seeds_failed += 1;
            self.failed_seeds.push(seed);
            *self
                .failure_signatures
                .entry(signature(&violation))
                .or_default() += 1;
            if self.failures.len() < FAILURES_KEPT {
                self.failures.push(Failure {
                    seed,
                    violation,
                    trace_tail,
                });
            }
        }
    }

    /// Computes the percentiles from the samples (call once at the end).
    pub fn finish(&mut self, elapsed_ms: u64) {
        self.recovery_us_p50 = percentile(&self.stats.recovery_us, 50);
        self.recovery_us_p99 = percentile(&self.stats.recovery_us, 99);
        self.elapsed_ms = elapsed_ms;
    }

    /// Whether every seed passed and the determinism check held.
    pub fn passed(&self) -> bool {
        self.seeds_failed == 0 && self.determinism.ok()
    }

    /// Merges the summaries of the shards `1/N..N/N` of one campaign into
    /// the summary of the whole campaign, as one process running every seed
    /// would have printed it:
    ///
    /// - seeds run and failed, every counter and check, faults, tolerated
    ///   bugs and failure signatures are summed;
    /// - failures are united and kept in campaign order, the first
    ///   [`FAILURES_KEPT`] (each shard keeps its first ones, so these are
    ///   exactly those one process would keep);
    /// - determinism: seeds rerun summed, mismatched seeds united (shards
    ///   rerun every n-th seed *of their slice*, so the number rerun differs
    ///   slightly from one process's);
    /// - elapsed: the longest shard's (the wall time when shards run side by
    ///   side; the sum would be the CPU time);
    /// - recovery percentiles: exact from the samples when every shard with
    ///   IPLs has them (summaries in memory), else the largest of the shards'
    ///   percentiles, an upper bound ([`Merged::recovery_exact`] says which).
    ///
    /// Fails, naming the input, unless the summaries are exactly the shards
    /// of one campaign (same seed, runs, shard count and configuration; each
    /// shard once).
    pub fn merge(parts: &[FaultRunSummary]) -> Result<FaultRunSummary, MergeError> {
        let campaigns = parts
            .iter()
            .enumerate()
            .map(|(input, p)| {
                Campaign::parse(&p.config).ok_or_else(|| MergeError::NotACampaign {
                    input,
                    config: p.config.clone(),
                })
            })
            .collect::<Result<Vec<Campaign>, MergeError>>()?;
        let first = campaigns.first().ok_or(MergeError::Empty)?;
        let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
        for (input, c) in campaigns.iter().enumerate() {
            if let Some(difference) = first.difference(c) {
                return Err(MergeError::MixedCampaigns {
                    input,
                    expected: first.slices(),
                    difference,
                });
            }
            if let Some(&earlier) = seen.get(&c.shard.index) {
                return Err(MergeError::DuplicateShard {
                    shard: c.shard,
                    first: earlier,
                    again: input,
                });
            }
            seen.insert(c.shard.index, input);
        }
        let count = first.shard.count;
        let missing_count = u64::from(count) - seen.len() as u64;
        if missing_count > 0 {
            let missing = (1..=count)
                .filter(|k| !seen.contains_key(k))
                .take(10)
                .map(|index| Shard { index, count })
                .collect();
            return Err(MergeError::MissingShards {
                missing,
                count: missing_count,
            });
        }

        let whole = Campaign {
            shard: Shard::ALL,
            ..first.clone()
        };
        let mut out = FaultRunSummary {
            config: whole.config(),
            ..FaultRunSummary::default()
        };
        // Each shard's percentiles stand for samples it no longer has (JSON
        // leaves them out) unless it has them or had no IPL at all.
        let recovery_exact = parts.iter().all(|p| {
            !p.stats.recovery_us.is_empty() || (p.recovery_us_p50 == 0 && p.recovery_us_p99 == 0)
        });
        for p in parts {
            out.seeds_run += p.seeds_run;
            out.seeds_failed += p.seeds_failed;
            out.failures.extend(p.failures.iter().cloned());
            out.failed_seeds.extend_from_slice(&p.failed_seeds);
            for (sig, n) in &p.failure_signatures {
                *out.failure_signatures.entry(sig.clone()).or_default() += n;
            }
            out.stats.merge(&p.stats);
            out.determinism.seeds_checked += p.determinism.seeds_checked;
            out.determinism
                .mismatched_seeds
                .extend_from_slice(&p.determinism.mismatched_seeds);
            out.elapsed_ms = out.elapsed_ms.max(p.elapsed_ms);
        }
        out.failures.sort_by_key(|f| whole.index_of(f.seed));
        out.failed_seeds.sort_by_key(|s| whole.index_of(*s));
        out.failures.truncate(FAILURES_KEPT);
        out.determinism
            .mismatched_seeds
            .sort_by_key(|s| whole.index_of(*s));
        if recovery_exact {
            out.recovery_us_p50 = percentile(&out.stats.recovery_us, 50);
            out.recovery_us_p99 = percentile(&out.stats.recovery_us, 99);
        } else {
            out.recovery_us_p50 = parts.iter().map(|p| p.recovery_us_p50).max().unwrap_or(0);
            out.recovery_us_p99 = parts.iter().map(|p| p.recovery_us_p99).max().unwrap_or(0);
        }
        out.merged = Some(Merged {
            shards: count,
            recovery_exact,
        });
        Ok(out)
    }

    /// Reads a summary written by [`FaultRunSummary::to_json`].
    pub fn from_json(text: &str) -> Result<FaultRunSummary, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The summary as JSON (recovery samples left out).
    pub fn to_json(&self) -> String {
        let mut copy = self.clone();
        copy.stats.recovery_us.clear();
        serde_json::to_string_pretty(&copy).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl fmt::Display for FaultRunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(f, "fault-run {}", self.config)?;
        if let Some(m) = &self.merged {
            writeln!(
                f,
                "  merged from {} shard {}{}",
                m.shards,
                if m.shards == 1 {
                    "summary"
                } else {
                    "summaries"
                },
                if m.recovery_exact {
                    ""
                } else {
                    " (recovery percentiles: largest of the shards')"
                }
            )?;
        }
        writeln!(
            f,
            "  seeds run / failed      {} / {}",
            self.seeds_run, self.seeds_failed
        )?;
        writeln!(
            f,
            "  steps                   {}  (host writes acknowledged {})",
            s.steps, s.writes_acked
        )?;
        writeln!(f, "  crash points enumerated {}", s.crash_points)?;
        writeln!(f, "  images checked          {}", s.images_checked)?;
        writeln!(
            f,
            "  resets survived         {} (+{} losing volatile state)",
            s.resets, s.resets_lose_volatile
        )?;
        writeln!(
            f,
            "  IPLs survived           {} (of which during replay {})",
            s.ipls, s.ipls_during_replay
        )?;
        writeln!(
            f,
            "  rm restarts / abends    {} / {}",
            s.rm_restarts, s.abends
        )?;
        writeln!(f, "  tracks verified         {}", s.tracks_verified)?;
        writeln!(
            f,
            "  recovery time p50/p99   {} us / {} us",
            self.recovery_us_p50, self.recovery_us_p99
        )?;
        writeln!(f, "  entries replayed        {}", s.entries_replayed)?;
        writeln!(f, "  faults injected:")?;
        if s.faults.is_empty() {
            writeln!(f, "    (none)")?;
        }
        for (site, n) in &s.faults {
            writeln!(f, "    {site:<28} {n}")?;
        }
        writeln!(f, "  invariant checks:")?;
        for inv in Invariant::ALL {
            writeln!(
                f,
                "    {:<8} {}",
                inv.name(),
                s.checks.get(&inv).copied().unwrap_or(0)
            )?;
        }
        let d = &self.determinism;
        if d.ok() {
            writeln!(
                f,
                "  determinism             ok ({} seeds rerun, same trace hash)",
                d.seeds_checked
            )?;
        } else {
            writeln!(
                f,
                "  determinism             FAILED for seeds {:?}",
                d.mismatched_seeds
            )?;
        }
        match self.merged {
            Some(_) => writeln!(
                f,
                "  elapsed                 {} ms (longest shard)",
                self.elapsed_ms
            )?,
            None => writeln!(f, "  elapsed                 {} ms", self.elapsed_ms)?,
        }
        if !s.tolerated.is_empty() {
            writeln!(f, "  tolerated known bugs (counted, run continued):")?;
            for (sig, n) in &s.tolerated {
                writeln!(f, "    {n:>6}  {sig}")?;
            }
        }
        if !self.failure_signatures.is_empty() {
            writeln!(f, "  failed seeds by signature:")?;
            for (sig, n) in &self.failure_signatures {
                writeln!(f, "    {n:>6}  {sig}")?;
            }
            let shown: Vec<String> = self
                .failed_seeds
                .iter()
                .take(200)
                .map(u64::to_string)
                .collect();
            let more = self.failed_seeds.len().saturating_sub(shown.len());
            writeln!(
                f,
                "  failed seeds: {}{}",
                shown.join(" "),
                if more > 0 {
                    format!(" (and {more} more in the JSON summary)")
                } else {
                    String::new()
                }
            )?;
        }
        for fl in &self.failures {
            writeln!(f, "FAIL seed {}: {}", fl.seed, fl.violation)?;
            for line in fl.trace_tail.iter().rev().take(12).rev() {
                writeln!(f, "    {line}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 50), 0);
    }

    use crate::runner::{fault_run, FaultRunConfig};

    /// A campaign small enough for a debug build.
    fn tiny(shard: Shard) -> FaultRunConfig {
        let mut cfg = FaultRunConfig::new(40, 12);
        cfg.steps = 25;
        cfg.determinism_every = 4;
        cfg.shard = shard;
        cfg
    }

    fn shard(text: &str) -> Shard {
        text.parse().unwrap()
    }

    /// A summary with only the configuration echo of `cfg` (no runs).
    fn empty(cfg: &FaultRunConfig) -> FaultRunSummary {
        FaultRunSummary {
            config: cfg.describe(),
            ..FaultRunSummary::default()
        }
    }

    #[test]
    fn the_campaign_is_read_back_from_the_config_echo() {
        let cfg = tiny(shard("2/3"));
        let c = Campaign::parse(&cfg.describe()).expect("describe() parses");
        assert_eq!((c.seed, c.runs, c.shard), (40, 12, shard("2/3")));
        assert!(
            c.rest.starts_with("(controller world, faults on"),
            "{}",
            c.rest
        );
        assert_eq!(c.config(), cfg.describe());
        assert!(c
            .slices()
            .starts_with("--seed 40 --runs 12 --shard K/3 (controller world"));
        assert_eq!(Campaign::parse("exhaustive sequences of length <= 2"), None);
    }

    #[test]
    fn merged_shards_give_the_figures_of_one_process() {
        let whole = fault_run(&tiny(Shard::ALL));
        // Through JSON, as `fault-run merge` reads them (no recovery samples).
        let parts: Vec<FaultRunSummary> = ["1/3", "3/3", "2/3"]
            .iter()
            .map(|k| FaultRunSummary::from_json(&fault_run(&tiny(shard(k))).to_json()).unwrap())
            .collect();
        let merged = FaultRunSummary::merge(&parts).unwrap();
        assert_eq!(merged.config, whole.config);
        assert_eq!(merged.seeds_run, 12);
        assert_eq!(
            (merged.seeds_run, merged.seeds_failed),
            (whole.seeds_run, whole.seeds_failed)
        );
        assert_eq!(merged.stats.steps, whole.stats.steps);
        assert_eq!(merged.stats.checks, whole.stats.checks);
        let mut counters = whole.stats.clone();
        counters.recovery_us.clear();
        assert_eq!(merged.stats, counters, "every counter, fault and check");
        assert_eq!(merged.failure_signatures, whole.failure_signatures);
        let seeds = |s: &FaultRunSummary| s.failures.iter().map(|f| f.seed).collect::<Vec<_>>();
        assert_eq!(seeds(&merged), seeds(&whole));
        assert_eq!(merged.passed(), whole.passed());
        assert_eq!(
            merged.merged,
            Some(Merged {
                shards: 3,
                recovery_exact: whole.stats.ipls == 0,
            })
        );
        assert!(merged.elapsed_ms <= parts.iter().map(|p| p.elapsed_ms).sum::<u64>());
        assert!(merged.to_string().contains("merged from 3 shard summaries"));
        // In memory the samples are there: the percentiles are exact.
        let parts: Vec<FaultRunSummary> = ["1/3", "2/3", "3/3"]
            .iter()
            .map(|k| fault_run(&tiny(shard(k))))
            .collect();
        let merged = FaultRunSummary::merge(&parts).unwrap();
        assert!(merged.merged.unwrap().recovery_exact);
        assert_eq!(
            merged.stats.recovery_us.len(),
            whole.stats.recovery_us.len()
        );
    }

    #[test]
    fn failures_are_kept_in_campaign_order() {
        // Every seed fails; the seeds wrap past u64::MAX.
        let first = u64::MAX - 1;
        let parts: Vec<FaultRunSummary> = [2, 1]
            .into_iter()
            .map(|index| {
                let mut cfg = FaultRunConfig::new(first, 40);
                cfg.shard = Shard { index, count: 2 };
                let mut p = empty(&cfg);
                for seed in cfg.shard.seeds(first, 40) {
                    let v = Violation::new(Invariant::Pit1, "sector 3 lost");
                    p.add_run(seed, &RunStats::default(), Some((v, Vec::new())));
                }
                p
            })
            .collect();
        let merged = FaultRunSummary::merge(&parts).unwrap();
        assert_eq!((merged.seeds_run, merged.seeds_failed), (40, 40));
        assert_eq!(merged.failure_signatures["PIT-1: sector lost"], 40);
        let kept: Vec<u64> = merged.failures.iter().map(|f| f.seed).collect();
        let expected: Vec<u64> = (0..FAILURES_KEPT as u64)
            .map(|i| first.wrapping_add(i))
            .collect();
        assert_eq!(kept, expected);
    }

    #[test]
    fn merge_refuses_what_is_not_one_whole_campaign() {
        let part = |seed: u64, k: &str| {
            let mut cfg = FaultRunConfig::new(seed, 12);
            cfg.shard = shard(k);
            empty(&cfg)
        };
        assert_eq!(FaultRunSummary::merge(&[]), Err(MergeError::Empty));
        let e = FaultRunSummary::merge(&[part(1, "1/3"), part(1, "3/3")]).unwrap_err();
        assert_eq!(
            e,
            MergeError::MissingShards {
                missing: vec![shard("2/3")],
                count: 1
            }
        );
        assert!(e.to_string().starts_with("shard 2/3 missing"), "{e}");
        let e =
            FaultRunSummary::merge(&[part(1, "1/2"), part(1, "2/2"), part(1, "1/2")]).unwrap_err();
        assert!(matches!(
            e,
            MergeError::DuplicateShard {
                first: 0,
                again: 2,
                ..
            }
        ));
        assert_eq!(
            e.message(|i| format!("f{i}.json")),
            "shard 1/2 given twice: f0.json and f2.json"
        );
        let e = FaultRunSummary::merge(&[part(1, "1/2"), part(2, "2/2")]).unwrap_err();
        assert!(e.to_string().contains("--seed 2, not 1"), "{e}");
        let e = FaultRunSummary::merge(&[part(1, "1/2"), part(1, "2/3")]).unwrap_err();
        assert!(
            e.to_string().contains("3 shards (--shard 2/3), not 2"),
            "{e}"
        );
        let mut engine = FaultRunConfig::engine_only(1, 12);
        engine.shard = shard("2/2");
        let e = FaultRunSummary::merge(&[part(1, "1/2"), empty(&engine)]).unwrap_err();
        assert!(e.to_string().contains("another configuration"), "{e}");
        let e = FaultRunSummary::merge(&[FaultRunSummary::default()]).unwrap_err();
        assert!(matches!(e, MergeError::NotACampaign { input: 0, .. }));
        let mut big = FaultRunConfig::new(1, 100);
        big.shard = shard("7/40");
        let e = FaultRunSummary::merge(&[empty(&big)]).unwrap_err();
        assert!(e.to_string().contains("and 29 more missing"), "{e}");
    }

    #[test]
    fn merge_adds_and_output_names_every_figure() {
        let mut a = RunStats::default();
        a.checked(Invariant::Pit1);
        a.fault("cow.copy.write");
        a.recovery_us.push(10);
        let mut sum = FaultRunSummary::default();
        sum.add_run(1, &a, None);
        sum.add_run(2, &a, None);
        sum.finish(5);
        assert_eq!(sum.stats.checks[&Invariant::Pit1], 2);
        assert_eq!(sum.stats.faults["cow.copy.write"], 2);
        assert!(sum.passed());
        let text = sum.to_string();
        for needle in [
            "seeds run / failed      2 / 0",
            "cow.copy.write",
            "PIT-1    2",
            "META-1",
            "determinism",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        let json: serde_json::Value = serde_json::from_str(&sum.to_json()).unwrap();
        assert_eq!(json["seeds_run"], 2);
        assert_eq!(json["stats"]["checks"]["PIT-1"], 2);
    }
}
