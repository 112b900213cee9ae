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
//! Wake-ups are targeted: a finished stage wakes exactly the submitters
//! whose outcomes it produced, and a submitter that leaves while a free
//! stage has work wakes one waiter to lead it. There is no `notify_all`: with
//! 16 writers a broadcast per stage woke every waiter twice per batch, and
//! those wake-ups cost more CPU than the commit on a fast store.
//!
//! Invariants: an item enters stage 2 only after its stage 1 finished (data
//! before metadata); each stage runs one batch at a time and stage 2 takes
//! items in submission order, even when their copies finished out of order
//! (docs/DURABILITY.md, "Group commit"); every submitter gets
//! exactly its own outcome; queues are bounded by the number of submitters;
//! whenever a stage is free and has work, some submitter is running or has
//! been woken to take it (no batch is stranded while everyone sleeps).

use std::collections::HashMap;
use std::thread::Thread;

use parking_lot::Mutex;

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
    /// Submitters parked (or about to park) for their outcome, by ticket.
    waiting: Vec<(u64, Thread)>,
}

impl<T> State<T> {
    /// Whether a stage is free and has work that nobody has taken.
    fn work_for_a_leader(&self) -> bool {
        (!self.stage2_busy && !self.flushed.is_empty())
            || (!self.stage1_busy && !self.queue.is_empty())
    }

    /// Called by a submitter that just took one stage: if the other stage
    /// is free and has work, wakes a waiter to run it meanwhile (so a
    /// batch's data flush overlaps the previous batch's journal record).
    fn hand_off_other_stage(&self) {
        if self.work_for_a_leader() {
            self.wake_a_leader();
        }
    }

    /// Wakes the waiters whose outcomes are ready.
    fn wake_finished(&self) {
        for (t, th) in &self.waiting {
            if self.outcomes.contains_key(t) {
                th.unpark();
            }
        }
    }

    /// Wakes one waiter still without an outcome, to lead a free stage.
    fn wake_a_leader(&self) {
        if let Some((_, th)) = self
            .waiting
            .iter()
            .find(|(t, _)| !self.outcomes.contains_key(t))
        {
            th.unpark();
        }
    }
}

/// A pipelined group committer over items of type `T`.
pub(crate) struct Committer<T> {
    state: Mutex<State<T>>,
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
                waiting: Vec::new(),
            }),
        }
    }

    /// Submits `item` and returns once both stages have processed it.
    pub(crate) fn submit(&self, item: T, stages: &dyn Stages<T>) -> Result<(), ControllerError> {
        let mut st = self.state.lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push((ticket, item));
        let mut registered = false;
        loop {
            if let Some(outcome) = st.outcomes.remove(&ticket) {
                if registered {
                    st.waiting.retain(|(t, _)| *t != ticket);
                }
                // Leaving: a free stage with work must not wait for a
                // submitter that happens to wake later.
                if st.work_for_a_leader() {
                    st.wake_a_leader();
                }
                return outcome.map_err(|(kind, msg)| ControllerError::new(kind, msg));
            }
            if !st.stage2_busy && !st.flushed.is_empty() {
                st.stage2_busy = true;
                let batch = std::mem::take(&mut st.flushed);
                st.hand_off_other_stage();
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
                st.wake_finished();
                continue;
            }
            if !st.stage1_busy && !st.queue.is_empty() {
                st.stage1_busy = true;
                let batch = std::mem::take(&mut st.queue);
                st.hand_off_other_stage();
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
                continue;
            }
            if !registered {
                st.waiting.push((ticket, std::thread::current()));
                registered = true;
            }
            // An unpark between this unlock and `park` is not lost: it
            // makes `park` return at once. Spurious returns just loop.
            drop(st);
            std::thread::park();
            st = self.state.lock();
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

    /// Every submitter returns (no batch stranded with every thread parked)
    /// under bursts of submitters with uneven stage times; a lost wake-up
    /// would hang, so the run has a deadline.
    #[test]
    fn no_submitter_is_stranded() {
        struct Jitter(AtomicUsize);
        impl Stages<u32> for Jitter {
            fn stage1(&self, batch: &[u32]) -> Vec<Outcome> {
                if self.0.fetch_add(1, Ordering::Relaxed) % 3 == 0 {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                batch.iter().map(|_| Ok(())).collect()
            }
            fn stage2(&self, batch: Vec<u32>, stage1: Vec<Outcome>) -> Vec<Outcome> {
                if self.0.fetch_add(1, Ordering::Relaxed) % 5 == 0 {
                    std::thread::yield_now();
                }
                assert_eq!(batch.len(), stage1.len());
                stage1
            }
        }
        let c = Arc::new(Committer::<u32>::new());
        let s = Arc::new(Jitter(AtomicUsize::new(0)));
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..12u32 {
            let (c, s, tx) = (c.clone(), s.clone(), tx.clone());
            std::thread::spawn(move || {
                for k in 0..400u32 {
                    c.submit(i * 1000 + k, &*s).expect("submit");
                    if k % 7 == i % 7 {
                        std::thread::sleep(std::time::Duration::from_micros(50));
                    }
                }
                tx.send(i).expect("report");
            });
        }
        drop(tx);
        let mut done = 0;
        while done < 12 {
            rx.recv_timeout(std::time::Duration::from_secs(60))
                .expect("a submitter never returned: a wake-up was lost");
            done += 1;
        }
        assert!(c.state.lock().waiting.is_empty());
    }
}
