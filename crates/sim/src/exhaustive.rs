//! Bounded-exhaustive runs: every operation sequence up to a length over the
//! alphabet {start map, stop map, write source, write target, copy step,
//! flush, reset, IPL}, on a tiny system of two volumes and one map, each from
//! two initial states (map idle, map already copying with data on both
//! volumes). Invariants are checked after every operation, and LIVE-1 at the
//! end of each sequence.
//!
//! Sequences are numbered in enumeration order (length 1 first, then
//! lexicographic); a violation names the number, which `SIM_SEQUENCE`
//! selects to rerun one.

use std::fmt;
use std::time::Instant;

use timezero::CopyType;

use crate::check::{RunKind, Violation};
use crate::summary::FaultRunSummary;
use crate::trace::Trace;
use crate::workload::{CrashKind, Op, Shape};
use crate::world::World;

/// One letter of the alphabet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symbol {
    /// Prepare and start the map.
    StartMap,
    /// Stop the map (not forced).
    StopMap,
    /// Partial-grain write to the source.
    WriteSource,
    /// Partial-grain write to the target.
    WriteTarget,
    /// One grain of background copy or cleaning.
    CopyStep,
    /// Flush both volumes.
    Flush,
    /// Reset notification with loss of volatile state.
    Reset,
    /// Power loss, then IPL.
    Ipl,
}

impl Symbol {
    /// The alphabet, in enumeration order.
    pub const ALL: [Symbol; 8] = [
        Symbol::StartMap,
        Symbol::StopMap,
        Symbol::WriteSource,
        Symbol::WriteTarget,
        Symbol::CopyStep,
        Symbol::Flush,
        Symbol::Reset,
        Symbol::Ipl,
    ];

    /// The operations the letter stands for, on `shape`.
    pub fn ops(self, shape: &Shape) -> Vec<Op> {
        let spt = shape.sectors_per_track;
        match self {
            Symbol::StartMap => vec![Op::Start {
                slot: 0,
                restore: false,
            }],
            Symbol::StopMap => vec![Op::Stop {
                slot: 0,
                force: false,
            }],
            Symbol::WriteSource => vec![Op::Write {
                vol: 0,
                sector: 1,
                sectors: 3,
            }],
            Symbol::WriteTarget => vec![Op::Write {
                vol: 1,
                sector: spt + 2,
                sectors: 3,
            }],
            Symbol::CopyStep => vec![Op::CopyStep { slot: 0, grains: 1 }],
            Symbol::Flush => vec![Op::Flush { vol: 0 }, Op::Flush { vol: 1 }],
            Symbol::Reset => vec![Op::Reset {
                lose_volatile: true,
            }],
            Symbol::Ipl => vec![Op::Crash {
                kind: CrashKind::PowerLoss,
                during_replay: false,
            }],
        }
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Symbol::StartMap => "start",
            Symbol::StopMap => "stop",
            Symbol::WriteSource => "write-source",
            Symbol::WriteTarget => "write-target",
            Symbol::CopyStep => "copy-step",
            Symbol::Flush => "flush",
            Symbol::Reset => "reset",
            Symbol::Ipl => "ipl",
        })
    }
}

/// The tiny system: two volumes of four tracks of 4 KiB.
pub const TINY: Shape = Shape {
    volumes: 2,
    tracks: 4,
    sectors_per_track: 8,
};

/// Every sequence of length 1..=`max_len`, in enumeration order.
pub fn sequences(max_len: usize) -> Vec<Vec<Symbol>> {
    let mut out = Vec::new();
    let mut layer: Vec<Vec<Symbol>> = vec![Vec::new()];
    for _ in 0..max_len {
        let mut next = Vec::new();
        for seq in &layer {
            for s in Symbol::ALL {
                let mut v = seq.clone();
                v.push(s);
                next.push(v);
            }
        }
        out.extend(next.iter().cloned());
        layer = next;
    }
    out
}

/// The setup before a sequence: data on both volumes, flushed, one full map
/// v0 -> v1 (rate 50), started if `started`.
pub fn setup_ops(shape: &Shape, started: bool) -> Vec<Op> {
    let spt = shape.sectors_per_track;
    let mut ops = vec![
        Op::Write {
            vol: 0,
            sector: 0,
            sectors: shape.tracks * spt,
        },
        Op::Write {
            vol: 1,
            sector: spt,
            sectors: spt,
        },
        Op::Flush { vol: 0 },
        Op::Flush { vol: 1 },
        Op::CreateMap {
            source: 0,
            target: 1,
            copy_type: CopyType::Full,
            copy_rate: 50,
            incremental: false,
        },
    ];
    if started {
        ops.push(Op::Start {
            slot: 0,
            restore: false,
        });
        ops.push(Op::Write {
            vol: 0,
            sector: 2 * spt,
            sectors: spt,
        });
    }
    ops
}

/// Runs one sequence from one initial state on a fresh world; returns the
/// world's counters and the first violation.
pub fn run_sequence<W: World>(
    mut world: W,
    shape: &Shape,
    seq: &[Symbol],
    started: bool,
    number: u64,
) -> (crate::RunStats, Option<Violation>) {
    let mut trace = Trace::new();
    let text: Vec<String> = seq.iter().map(|s| s.to_string()).collect();
    trace.record(format!(
        "sequence {number}: [{}] from map {}",
        text.join(", "),
        if started { "copying" } else { "idle" }
    ));
    let result = (|| {
        for op in setup_ops(shape, started) {
            world.apply(&op, &mut trace)?;
        }
        world.check_all()?;
        for sym in seq {
            trace.step += 1;
            for op in sym.ops(shape) {
                world.apply(&op, &mut trace)?;
            }
            world.check_all()?;
        }
        trace.step += 1;
        world.settle_live(&mut trace)
    })();
    let v = result.err().map(|v| {
        let v = v.at(RunKind::Exhaustive, number, trace.step);
        Violation {
            detail: format!("{} [sequence {}]", v.detail, text.join(", ")),
            ..v
        }
    });
    (world.stats().clone(), v)
}

/// Runs every sequence up to `max_len` (both initial states) on worlds made
/// by `make`; `only` restricts to one sequence number.
pub fn exhaustive_with<W: World>(
    max_len: usize,
    only: Option<u64>,
    shape: &Shape,
    mut make: impl FnMut() -> W,
) -> FaultRunSummary {
    let started_at = Instant::now();
    let mut summary = FaultRunSummary {
        config: format!(
            "exhaustive sequences of length <= {max_len} over 8 operations, 2 initial states"
        ),
        ..FaultRunSummary::default()
    };
    for (i, seq) in sequences(max_len).iter().enumerate() {
        for started in [false, true] {
            let number = 2 * i as u64 + u64::from(started);
            if only.is_some_and(|o| o != number) {
                continue;
            }
            let (stats, v) = run_sequence(make(), shape, seq, started, number);
            summary.add_run(number, &stats, v.map(|v| (v, Vec::new())));
        }
    }
    summary.finish(started_at.elapsed().as_millis() as u64);
    summary
}

/// The bounded-exhaustive set on the real controller (no injected faults;
/// the alphabet's reset and IPL are the faults), `only` selecting one
/// sequence number.
pub fn exhaustive(max_len: usize, only: Option<u64>) -> FaultSummaryResult {
    let seeds = crate::seed::Seeds::split(0);
    let mut boot_error = None;
    let summary =
        exhaustive_with(
            max_len,
            only,
            &TINY,
            || match crate::controller_world::ControllerWorld::new(
                TINY,
                &seeds,
                crate::faults::FaultPlan::none(),
                None,
            ) {
                Ok(w) => Some(w),
                Err(e) => {
                    boot_error = Some(e.to_string());
                    None
                }
            },
        );
    match boot_error {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// A summary, or why the system could not even boot.
pub type FaultSummaryResult = Result<FaultRunSummary, String>;

/// A world that may have failed to boot acts as one that applies nothing;
/// the caller reports the boot error instead.
impl<W: World> World for Option<W> {
    fn map_slots(&self) -> usize {
        self.as_ref().map_or(0, |w| w.map_slots())
    }
    fn session_slots(&self) -> usize {
        self.as_ref().map_or(0, |w| w.session_slots())
    }
    fn apply(&mut self, op: &Op, trace: &mut Trace) -> Result<(), Violation> {
        match self {
            Some(w) => w.apply(op, trace),
            None => Ok(()),
        }
    }
    fn check_all(&mut self) -> Result<(), Violation> {
        self.as_mut().map_or(Ok(()), |w| w.check_all())
    }
    fn settle_live(&mut self, trace: &mut Trace) -> Result<(), Violation> {
        self.as_mut().map_or(Ok(()), |w| w.settle_live(trace))
    }
    fn stats(&self) -> &crate::RunStats {
        static EMPTY: std::sync::OnceLock<crate::RunStats> = std::sync::OnceLock::new();
        match self {
            Some(w) => w.stats(),
            None => EMPTY.get_or_init(crate::RunStats::default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_counts() {
        assert_eq!(sequences(1).len(), 8);
        assert_eq!(sequences(2).len(), 8 + 64);
        assert_eq!(sequences(3).len(), 8 + 64 + 512);
        assert_eq!(sequences(2)[8], vec![Symbol::StartMap, Symbol::StartMap]);
    }
}
