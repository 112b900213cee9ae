//! Invariant ids and violations.
//!
//! The ids are those of docs/RELIABILITY.md (from the shared reliability
//! spec). A [`Violation`] names the invariant, the volume and track where it
//! broke, the seed and step, what was expected and found, and a one-line
//! command that reproduces it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The invariants the simulator checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Invariant {
    /// Point in time: a target reads as its source did at the start, overlaid
    /// with the target's own writes.
    #[serde(rename = "PIT-1")]
    Pit1,
    /// Acknowledged writes: after FLUSH an acknowledged write is never lost
    /// (and a plain volume reads back what was last written).
    #[serde(rename = "PIT-2")]
    Pit2,
    /// Split bits: "split" means the target holds the right image; "not split"
    /// means the upstream image is still the right one.
    #[serde(rename = "COW-1")]
    Cow1,
    /// Cascades: every target of a multi-target cascade reads its own image.
    #[serde(rename = "CAS-1")]
    Cas1,
    /// Replay is idempotent and survives a crash during replay.
    #[serde(rename = "IPL-1")]
    Ipl1,
    /// Suspended / invalid is sticky across IPL.
    #[serde(rename = "INV-1")]
    Inv1,
    /// The offline checker finds no leaked or doubly used space and valid roots.
    #[serde(rename = "META-1")]
    Meta1,
    /// With faults off, every background copy and cleaning finishes.
    #[serde(rename = "LIVE-1")]
    Live1,
}

impl Invariant {
    /// Every invariant, in report order.
    pub const ALL: [Invariant; 8] = [
        Invariant::Pit1,
        Invariant::Pit2,
        Invariant::Cow1,
        Invariant::Cas1,
        Invariant::Ipl1,
        Invariant::Inv1,
        Invariant::Meta1,
        Invariant::Live1,
    ];

    /// The spec's name (`PIT-1`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Invariant::Pit1 => "PIT-1",
            Invariant::Pit2 => "PIT-2",
            Invariant::Cow1 => "COW-1",
            Invariant::Cas1 => "CAS-1",
            Invariant::Ipl1 => "IPL-1",
            Invariant::Inv1 => "INV-1",
            Invariant::Meta1 => "META-1",
            Invariant::Live1 => "LIVE-1",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which kind of run found a violation (it selects the reproduce command).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// A seeded fault run.
    FaultRun,
    /// Crash-point enumeration of one workload.
    CrashPoints,
    /// One sequence of a bounded-exhaustive run.
    Exhaustive,
    /// An engine-only run (no controller).
    Engine,
}

/// A broken invariant, with enough context to reproduce it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// Volume name, if the violation is about one volume.
    pub volume: Option<String>,
    /// Track (grain), if about one track.
    pub track: Option<u64>,
    /// The run's seed (for exhaustive runs: the sequence number).
    pub seed: u64,
    /// Step of the run at which the check failed.
    pub step: u64,
    /// Kind of run.
    pub kind: RunKind,
    /// Expected versus found, in one line.
    pub detail: String,
}

impl Violation {
    /// A violation of `invariant` with `detail`; the run fields are filled in
    /// by the runner with [`Violation::at`].
    pub fn new(invariant: Invariant, detail: impl Into<String>) -> Violation {
        Violation {
            invariant,
            volume: None,
            track: None,
            seed: 0,
            step: 0,
            kind: RunKind::FaultRun,
            detail: detail.into(),
        }
    }

    /// Sets the volume and track.
    pub fn on(mut self, volume: impl Into<String>, track: Option<u64>) -> Violation {
        self.volume = Some(volume.into());
        self.track = track;
        self
    }

    /// Sets the run context.
    pub fn at(mut self, kind: RunKind, seed: u64, step: u64) -> Violation {
        self.kind = kind;
        self.seed = seed;
        self.step = step;
        self
    }

    /// The one-line command that reruns exactly this case.
    pub fn reproduce(&self) -> String {
        match self.kind {
            RunKind::FaultRun => format!("firmware-sim fault-run --seed {} --runs 1", self.seed),
            RunKind::Engine => format!(
                "firmware-sim fault-run --engine-only --seed {} --runs 1",
                self.seed
            ),
            RunKind::CrashPoints => format!(
                "SIM_SEED={} SIM_RUNS=1 cargo test -p sim --test crash_points",
                self.seed
            ),
            RunKind::Exhaustive => format!(
                "SIM_SEQUENCE={} cargo test -p sim --test exhaustive",
                self.seed
            ),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violated", self.invariant)?;
        if let Some(v) = &self.volume {
            write!(f, " on {v}")?;
        }
        if let Some(t) = self.track {
            write!(f, " track {t}")?;
        }
        write!(
            f,
            " (seed {}, step {}): {}; reproduce: {}",
            self.seed,
            self.step,
            self.detail,
            self.reproduce()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_invariant_volume_track_seed_and_command() {
        let v = Violation::new(Invariant::Pit1, "expected write #3, found #5")
            .on("v1", Some(4))
            .at(RunKind::FaultRun, 42, 17);
        let s = v.to_string();
        assert!(
            s.starts_with("PIT-1 violated on v1 track 4 (seed 42, step 17)"),
            "{s}"
        );
        assert!(
            s.ends_with("reproduce: firmware-sim fault-run --seed 42 --runs 1"),
            "{s}"
        );
    }
}
