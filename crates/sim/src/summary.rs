//! The figures a fault run prints (docs/RELIABILITY.md, "Figures"): one
//! machine-readable summary (JSON) and the same as text for people.
//!
//! Per-run [`RunStats`] are merged into one [`FaultRunSummary`]; recovery times
//! are kept as samples so percentiles are exact.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::check::{Invariant, Violation};

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
    /// Wall-clock duration of the campaign in milliseconds.
    pub elapsed_ms: u64,
}

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
        writeln!(f, "  elapsed                 {} ms", self.elapsed_ms)?;
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
