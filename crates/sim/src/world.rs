//! The [`World`] trait: what the run loop, the exhaustive runner and the
//! crash-point enumerator need from a simulated system. Implemented by the
//! engine-only world and the controller world.

use crate::check::Violation;
use crate::summary::RunStats;
use crate::trace::Trace;
use crate::workload::Op;

/// A simulated system with its model and checkers.
pub trait World {
    /// Map slots created so far (the generator picks among them).
    fn map_slots(&self) -> usize;

    /// Session slots created so far (worlds without sessions have none).
    fn session_slots(&self) -> usize {
        0
    }

    /// Applies one operation (recording it in `trace`); a violation found
    /// while doing so (e.g. during recovery) ends the run.
    fn apply(&mut self, op: &Op, trace: &mut Trace) -> Result<(), Violation>;

    /// Checks every invariant that holds between operations.
    fn check_all(&mut self) -> Result<(), Violation>;

    /// Turns faults off, drains background work and checks LIVE-1 (then
    /// everything else once more).
    fn settle_live(&mut self, trace: &mut Trace) -> Result<(), Violation>;

    /// Counters so far.
    fn stats(&self) -> &RunStats;
}
