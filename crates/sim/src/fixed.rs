//! Fixed runs: a failing seed kept as data (its fault plan and operations),
//! replayed by regression tests with [`crate::runner::replay`].
//!
//! A fixed run does not depend on the workload or fault-plan generators: the
//! operations and the plan are stored, only the disk, fault and scheduler
//! RNGs still come from the seed. So a change to a generator can never
//! silently empty a regression test. Files live in `testdata/sim-regressions/`
//! as one JSON document each (`SIM_DUMP_JSON=DIR SIM_DUMP=<seed>` writes one).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::faults::FaultPlan;
use crate::runner::{replay, run_seed, FaultRunConfig, RunOutcome};
use crate::workload::Op;

/// One kept failure: what it was, and everything needed to replay it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixedRun {
    /// The seed it came from (its disk, fault and scheduler RNGs).
    pub seed: u64,
    /// The violation it showed when found, and the cause (for the reader).
    pub found: String,
    /// The fault plan (sites by their dotted names).
    pub plan: FaultPlan,
    /// The operations, in order.
    pub ops: Vec<Op>,
}

impl FixedRun {
    /// Runs `seed` with the default campaign config and keeps it.
    pub fn capture(seed: u64) -> (FixedRun, RunOutcome) {
        let cfg = FaultRunConfig::new(seed, 1);
        let out = run_seed(&cfg, seed);
        let plan = FaultPlan::for_seed(seed, &cfg.shape);
        let found = out
            .violation
            .as_ref()
            .map_or_else(|| "no violation".to_string(), |v| v.to_string());
        (
            FixedRun {
                seed,
                found,
                plan,
                ops: out.ops.clone(),
            },
            out,
        )
    }

    /// Replays the kept operations with the kept plan.
    pub fn replay(&self) -> RunOutcome {
        let mut cfg = FaultRunConfig::new(self.seed, 1);
        cfg.determinism_every = 0;
        replay(&cfg, self.seed, self.plan.clone(), &self.ops)
    }

    /// Reads one kept run.
    pub fn load(path: &Path) -> Result<FixedRun, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Every kept run in `dir` (files ending in `.json`), sorted by name.
    pub fn load_dir(dir: &Path) -> Result<Vec<(String, FixedRun)>, String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| Ok((n.clone(), FixedRun::load(&dir.join(&n))?)))
            .collect()
    }

    /// The JSON document kept on disk: one operation per line.
    pub fn to_json(&self) -> String {
        let ops: Vec<String> = self
            .ops
            .iter()
            .map(|o| format!("    {}", compact(o)))
            .collect();
        format!(
            "{{\n  \"seed\": {},\n  \"found\": {},\n  \"plan\": {},\n  \"ops\": [\n{}\n  ]\n}}\n",
            self.seed,
            compact(&self.found),
            compact(&self.plan),
            ops.join(",\n")
        )
    }
}

/// Compact JSON of plain data (numbers, strings, enums: cannot fail).
fn compact<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
