//! Group commit: many submitters, one leader at a time, one flush set per batch.
//!
//! A submitter enqueues its item and either becomes the leader (no batch is
//! being processed) or waits. The leader takes everything queued, processes it
//! as one batch (the caller's `process`: flush the stores that received data,
//! append one journal record, commit to the engine), publishes one outcome per
//! item, and repeats while items are queued. Items queued while a batch is in
//! flight form the next batch, so concurrent first-writes share flushes.
//!
//! Invariants: batches are processed one at a time, in submission order
//! (reliability.md rule 9: completions commit in submission order); every
//! submitter gets exactly the outcome of its own item; the queue is bounded by
//! the number of submitting threads (each waits for its outcome).

use std::collections::HashMap;

use parking_lot::{Condvar, Mutex};

use crate::error::{ControllerError, ErrorKind};

/// The outcome of one item: success, or the kind and message of its failure.
pub(crate) type Outcome = Result<(), (ErrorKind, String)>;

struct State<T> {
    queue: Vec<(u64, T)>,
    next_ticket: u64,
    leader: bool,
    outcomes: HashMap<u64, Outcome>,
}

/// A group committer over items of type `T`.
pub(crate) struct Committer<T> {
    state: Mutex<State<T>>,
    cv: Condvar,
}

impl<T> Committer<T> {
    pub(crate) fn new() -> Committer<T> {
        Committer {
            state: Mutex::new(State {
                queue: Vec::new(),
                next_ticket: 0,
                leader: false,
                outcomes: HashMap::new(),
            }),
            cv: Condvar::new(),
        }
    }

    /// Submits `item` and returns once its batch has been processed.
    /// `process` receives a batch in submission order and returns one outcome per item.
    pub(crate) fn submit(
        &self,
        item: T,
        process: &dyn Fn(Vec<T>) -> Vec<Outcome>,
    ) -> Result<(), ControllerError> {
        let mut st = self.state.lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push((ticket, item));
        loop {
            if let Some(outcome) = st.outcomes.remove(&ticket) {
                return outcome.map_err(|(kind, msg)| ControllerError::new(kind, msg));
            }
            if !st.leader {
                st.leader = true;
                let batch = std::mem::take(&mut st.queue);
                drop(st);
                let (tickets, items): (Vec<u64>, Vec<T>) = batch.into_iter().unzip();
                let n = items.len();
                let mut outcomes = process(items);
                // A process that returns too few outcomes fails the rest rather than hanging them.
                outcomes.resize_with(n, || {
                    Err((ErrorKind::Io, "group commit lost an outcome".into()))
                });
                st = self.state.lock();
                st.outcomes.extend(tickets.into_iter().zip(outcomes));
                st.leader = false;
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

    #[test]
    fn concurrent_submitters_share_batches_and_get_their_own_outcomes() {
        let c = Arc::new(Committer::<u32>::new());
        let batches = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16u32)
            .map(|i| {
                let (c, batches) = (c.clone(), batches.clone());
                std::thread::spawn(move || {
                    let process = |items: Vec<u32>| {
                        batches.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        items
                            .iter()
                            .map(|&x| {
                                if x % 2 == 0 {
                                    Ok(())
                                } else {
                                    Err((ErrorKind::Io, format!("odd {x}")))
                                }
                            })
                            .collect()
                    };
                    (i, c.submit(i, &process))
                })
            })
            .collect();
        for t in threads {
            let (i, r) = t.join().unwrap();
            if i % 2 == 0 {
                assert!(r.is_ok());
            } else {
                assert_eq!(r.unwrap_err().message(), format!("odd {i}"));
            }
        }
        assert!(batches.load(Ordering::SeqCst) <= 16);
    }
}
