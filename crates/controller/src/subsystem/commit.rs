//! Group commit as a two-stage pipeline: many submitters, at most one leader
//! per stage, one flush set per batch.
//!
//! ```text
//! submit -> queue --[stage 1 leader: flush data stores]--> flushed --[stage 2 leader: journal + engine]--> outcome
//! ```
//!
//! A submitter enqueues its item, then does whatever work is free: if no
//! stage-1 batch is running and items are queued, it takes them all and runs
//! stage 1 (the caller's data flush); if no stage-2 batch is running and
//! flushed items wait, it takes them all and runs stage 2 (journal record,
//! engine commit); otherwise it waits. So while one batch's journal record is
//! being made durable, the next batch's data is already being flushed, and
//! items that arrive meanwhile form the next batch.
//!
//! Invariants: an item enters stage 2 only after its stage 1 finished (data
//! before metadata); each stage runs one batch at a time and stage 2 takes
//! items in submission order, even when their copies finished out of order
//! (docs/DURABILITY.md, "Group commit"); every submitter gets
//! exactly its own outcome; queues are bounded by the number of submitters.

use std::collections::HashMap;

use parking_lot::{Condvar, Mutex};

use crate::error::{ControllerError, ErrorKind};

/// The outcome of one item: success, or the kind and message of its failure.
pub(crate) type Outcome = Result<(), (ErrorKind, String)>;

struct State<T> {
    queue: Vec<(u64, T)>,
    flushed: Vec<(u64, T, Outcome)>,
    next_ticket: u64,
    stage1_busy: bool,
    stage2_busy: bool,
    outcomes: HashMap<u64, Outcome>,
}

/// A pipelined group committer over items of type `T`.
pub(crate) struct Committer<T> {
    state: Mutex<State<T>>,
    cv: Condvar,
}

/// The two stages of a commit.
pub(crate) trait Stages<T> {
    /// Stage 1 for a batch: one outcome per item (e.g. flush its stores).
    fn stage1(&self, batch: &[T]) -> Vec<Outcome>;
    /// Stage 2 for a batch with its stage-1 outcomes: final outcomes.
    fn stage2(&self, batch: Vec<T>, stage1: Vec<Outcome>) -> Vec<Outcome>;
}

fn lost() -> Outcome {
    Err((ErrorKind::Io, "group commit lost an outcome".into()))
}

impl<T> Committer<T> {
    pub(crate) fn new() -> Committer<T> {
        Committer {
            state: Mutex::new(State {
                queue: Vec::new(),
                flushed: Vec::new(),
                next_ticket: 0,
                stage1_busy: false,
                stage2_busy: false,
                outcomes: HashMap::new(),
            }),
            cv: Condvar::new(),
        }
    }

    /// Submits `item` and returns once both stages have processed it.
    pub(crate) fn submit(&self, item: T, stages: &dyn Stages<T>) -> Result<(), ControllerError> {
        let mut st = self.state.lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push((ticket, item));
        loop {
            if let Some(outcome) = st.outcomes.remove(&ticket) {
                return outcome.map_err(|(kind, msg)| ControllerError::new(kind, msg));
            }
            if !st.stage2_busy && !st.flushed.is_empty() {
                st.stage2_busy = true;
                let batch = std::mem::take(&mut st.flushed);
                drop(st);
                let n = batch.len();
                let mut tickets = Vec::with_capacity(n);
                let mut items = Vec::with_capacity(n);
                let mut first = Vec::with_capacity(n);
                for (t, i, o) in batch {
                    tickets.push(t);
                    items.push(i);
                    first.push(o);
                }
                let mut outcomes = stages.stage2(items, first);
                outcomes.resize_with(n, lost);
                st = self.state.lock();
                st.outcomes.extend(tickets.into_iter().zip(outcomes));
                st.stage2_busy = false;
                self.cv.notify_all();
                continue;
            }
            if !st.stage1_busy && !st.queue.is_empty() {
                st.stage1_busy = true;
                let batch = std::mem::take(&mut st.queue);
                drop(st);
                let (tickets, items): (Vec<u64>, Vec<T>) = batch.into_iter().unzip();
                let mut outcomes = stages.stage1(&items);
                outcomes.resize_with(items.len(), lost);
                st = self.state.lock();
                st.flushed.extend(
                    tickets
                        .into_iter()
                        .zip(items)
                        .zip(outcomes)
                        .map(|((t, i), o)| (t, i, o)),
                );
                st.stage1_busy = false;
                self.cv.notify_all();
                continue;
            }
            self.cv.wait(&mut st);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    struct Odd {
        stage1_batches: AtomicUsize,
        order: Mutex<Vec<u32>>,
    }

    impl Stages<u32> for Odd {
        fn stage1(&self, batch: &[u32]) -> Vec<Outcome> {
            self.stage1_batches.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(2));
            batch
                .iter()
                .map(|&x| {
                    if x % 3 == 0 {
                        Err((ErrorKind::Io, format!("flush {x}")))
                    } else {
                        Ok(())
                    }
                })
                .collect()
        }
        fn stage2(&self, batch: Vec<u32>, stage1: Vec<Outcome>) -> Vec<Outcome> {
            self.order.lock().extend(batch.iter().copied());
            std::thread::sleep(std::time::Duration::from_millis(2));
            batch
                .iter()
                .zip(stage1)
                .map(|(&x, o)| {
                    o.and_then(|()| {
                        if x % 2 == 1 {
                            Err((ErrorKind::Io, format!("odd {x}")))
                        } else {
                            Ok(())
                        }
                    })
                })
                .collect()
        }
    }

    #[test]
    fn submitters_get_their_own_outcomes_and_stage2_follows_submission_order() {
        let c = Arc::new(Committer::<u32>::new());
        let s = Arc::new(Odd {
            stage1_batches: AtomicUsize::new(0),
            order: Mutex::new(Vec::new()),
        });
        let threads: Vec<_> = (0..16u32)
            .map(|i| {
                let (c, s) = (c.clone(), s.clone());
                std::thread::spawn(move || {
                    let mut results = Vec::new();
                    for k in 0..5u32 {
                        let x = i * 5 + k;
                        results.push((x, c.submit(x, &*s)));
                    }
                    results
                })
            })
            .collect();
        for t in threads {
            for (x, r) in t.join().unwrap() {
                match (x % 3 == 0, x % 2 == 1) {
                    (true, _) => assert_eq!(r.unwrap_err().message(), format!("flush {x}")),
                    (false, true) => assert_eq!(r.unwrap_err().message(), format!("odd {x}")),
                    (false, false) => assert!(r.is_ok()),
                }
            }
        }
        // Each thread's items reached stage 2 in the order it submitted them.
        let order = s.order.lock().clone();
        assert_eq!(order.len(), 80);
        for i in 0..16u32 {
            let mine: Vec<u32> = order.iter().copied().filter(|x| x / 5 == i).collect();
            assert_eq!(mine, (i * 5..i * 5 + 5).collect::<Vec<_>>());
        }
        assert!(s.stage1_batches.load(Ordering::SeqCst) <= 80);
    }
}
