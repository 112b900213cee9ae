//! Running validated requests: at once on the connection's task when the
//! export can do them without waiting, else on the blocking pool, one at a
//! time or in small batches.
//!
//! A small read, or write without FUA, is first offered to the export's
//! `try_read_now`/`try_write_now` (while the export has been answering
//! quickly): an export that can do it without waiting (data in memory, no
//! lock held elsewhere) does, and the reply is sent with no thread hand-off
//! at all. So is a large read, while large reads have been quick (average
//! under [`FAST_LARGE_NS`], page-cache speed): the data is then filled and
//! sent by one core, and the reader yields so the writer sends the reply
//! from it. A large write is not: run on the connection's task it held the
//! reader for the whole copy into the file, so the client's next payload
//! waited in the socket, and 1 MiB writes on tmpfs reached 0.87x of
//! nbdkit's (whose threads take turns receiving while others write); on a
//! blocking thread they reach 1.04x, for about a sixth more CPU per write
//! (docs/PERFORMANCE.md).
//! Done on a blocking thread, a 1 MiB read was filled on one core and
//! copied into the socket on another, and the daemon spent about a quarter
//! more CPU per MiB than nbdkit (whose threads read and send); pinned to
//! one core, the two were equal (docs/PERFORMANCE.md). Everything else
//! takes the paths below.
//!
//! Handing a request to a blocking thread and its reply back costs two
//! thread wake-ups, which is more than a memory or page-cache copy of
//! 4 KiB. So while the export has been answering quickly (average under
//! [`FAST_OP_NS`]) and more requests are already buffered, the reader
//! groups up to `max_batch` (config) small requests into one blocking task that
//! runs them in order and sends each reply as it completes. Large requests,
//! and every request while the export is slow (or before anything is known
//! about it), get a blocking task of their own, so a slow request never
//! delays another.
//!
//! An export whose writes share work when batched (`Export::batches_writes`:
//! the firmware-sim controller commits the copy-on-write of many writes at
//! once) also gets small writes without FUA held back while it is slow, and
//! every run of such writes in a batch goes to `Export::write_many` in one
//! call: a client's 16 first writes after a snapshot then cost one thread
//! hand-off and one commit, not 16 of each. The moving average counts such a
//! call per write, so an export that turns fast again (its map deleted)
//! returns to the paths above.
//!
//! Invariants:
//! - Every submitted job runs exactly once and sends exactly one reply
//!   (a panicking export gives EIO), and its in-flight permit is released
//!   only with the reply.
//! - A held-back batch is flushed before the reader waits on anything the
//!   client controls (see `transmit`), so batching never adds a wait on the
//!   client.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;
use tracing::error;

use crate::bufpool::BufPool;
use crate::export::Export;
use crate::ops::{self, cmd_name, Op, ReqInfo};
use crate::proto::errno;
use crate::writer::Outgoing;

/// Average export call time under which small requests are batched.
pub(crate) const FAST_OP_NS: u64 = 20_000;
/// Requests moving more data than this always run alone.
pub(crate) const BATCH_JOB_MAX_BYTES: usize = 64 * 1024;
/// Average time of large requests under which they run on the connection's
/// task: a 1 MiB copy to or from the page cache takes 100-300 us; a disk
/// read or a write throttled by writeback takes milliseconds, which would
/// hold up the reader, so those keep their thread.
pub(crate) const FAST_LARGE_NS: u64 = 500_000;
/// Average before any call has completed: treated as slow.
const UNKNOWN_NS: u64 = u64::MAX;

/// One validated request, ready to run.
pub(crate) struct Job {
    pub op: Op,
    pub payload: Vec<u8>,
    pub info: ReqInfo,
    pub permit: crate::writer::Charge,
    /// Data the request moves: a read's length, a write's payload, a
    /// BLOCK_STATUS reply's size (what the in-flight budget is charged).
    pub data_len: u32,
}

impl Job {
    /// Small enough to batch with others ([`BATCH_JOB_MAX_BYTES`] or less).
    fn is_small(&self) -> bool {
        self.data_len as usize <= BATCH_JOB_MAX_BYTES
    }

    /// The offset of a small write without FUA: such a write may go to
    /// `Export::write_many` with others.
    fn batchable_write(&self) -> Option<u64> {
        match self.op {
            Op::Write {
                offset, fua: false, ..
            } if self.is_small() => Some(offset),
            _ => None,
        }
    }

    /// A large read or non-FUA write (timed apart from small requests).
    fn is_large_transfer(&self) -> bool {
        !self.is_small() && matches!(self.op, Op::Read { .. } | Op::Write { fua: false, .. })
    }

    /// A large read: may run on the connection's task while large
    /// transfers have been quick (see the module doc for why writes do not).
    fn is_large_read(&self) -> bool {
        self.is_large_transfer() && matches!(self.op, Op::Read { .. })
    }
}

pub(crate) struct Dispatcher {
    export: Arc<dyn Export>,
    tx: UnboundedSender<Outgoing>,
    pool: Arc<BufPool>,
    /// Exponential moving average of export call time, in nanoseconds
    /// (every call but large transfers).
    avg_ns: Arc<AtomicU64>,
    /// The same, of reads larger than [`BATCH_JOB_MAX_BYTES`] (large
    /// writes are timed in neither: see `average_of`).
    avg_large_ns: Arc<AtomicU64>,
    pending: Vec<Job>,
    max_batch: usize,
    /// The export's `batches_writes`.
    batches_writes: bool,
}

impl Dispatcher {
    pub fn new(
        export: Arc<dyn Export>,
        tx: UnboundedSender<Outgoing>,
        pool: Arc<BufPool>,
        max_batch: usize,
    ) -> Self {
        Dispatcher {
            batches_writes: export.batches_writes(),
            export,
            tx,
            pool,
            avg_ns: Arc::new(AtomicU64::new(UNKNOWN_NS)),
            avg_large_ns: Arc::new(AtomicU64::new(UNKNOWN_NS)),
            pending: Vec::with_capacity(max_batch),
            max_batch,
        }
    }

    /// Queue a job; it starts now unless it can join a batch. `true`: a
    /// large request was done on this task, whose reply the caller should
    /// let the writer send (yield) before it reads on.
    pub fn submit(&mut self, job: Job) -> bool {
        let fast = self.avg_ns.load(Ordering::Relaxed) < FAST_OP_NS;
        let small = job.is_small();
        let now = if small {
            fast
        } else {
            job.is_large_read() && self.avg_large_ns.load(Ordering::Relaxed) < FAST_LARGE_NS
        };
        let job = if now {
            match self.run_now(job) {
                Ok(()) => return !small,
                Err(job) => job,
            }
        } else {
            job
        };
        let held = fast || (self.batches_writes && job.batchable_write().is_some());
        if small && held && self.max_batch > 1 {
            self.pending.push(job);
            if self.pending.len() >= self.max_batch {
                self.flush();
            }
        } else {
            self.spawn(vec![job]);
        }
        false
    }

    /// Runs `job` on this task if the export can do it without waiting
    /// (`ops::execute_now`), sending its reply; gives it back otherwise.
    fn run_now(&self, job: Job) -> Result<(), Job> {
        let start = Instant::now();
        let reply = std::panic::catch_unwind(AssertUnwindSafe(|| {
            ops::execute_now(job.op, &self.export, &job.payload, job.info, &self.pool)
        }))
        .unwrap_or_else(|_| {
            error!(
                cookie = job.info.cookie,
                command = cmd_name(job.info.kind),
                "export panicked"
            );
            Some(ops::error_reply(
                &job.info,
                errno::EIO,
                "internal error in the export".into(),
            ))
        });
        let Some(reply) = reply else {
            return Err(job);
        };
        if let Some(avg) = average_of(&self.avg_ns, &self.avg_large_ns, &job) {
            record(avg, start.elapsed().as_nanos() as u64);
        }
        answer(job, reply, &self.pool, &self.tx);
        Ok(())
    }

    /// Start everything held back.
    pub fn flush(&mut self) {
        if !self.pending.is_empty() {
            let jobs = std::mem::replace(&mut self.pending, Vec::with_capacity(self.max_batch));
            self.spawn(jobs);
        }
    }

    fn spawn(&self, jobs: Vec<Job>) {
        let export = self.export.clone();
        let tx = self.tx.clone();
        let pool = self.pool.clone();
        let avg = self.avg_ns.clone();
        let avg_large = self.avg_large_ns.clone();
        let batches_writes = self.batches_writes;
        tokio::task::spawn_blocking(move || {
            for work in group_writes(jobs, batches_writes) {
                let job = match work {
                    Work::Writes(run) => {
                        run_writes(&export, run, &tx, &pool, &avg);
                        continue;
                    }
                    Work::One(job) => job,
                };
                let start = Instant::now();
                let reply = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    ops::execute(job.op, &export, &job.payload, job.info, &pool)
                }))
                .unwrap_or_else(|_| {
                    error!(
                        cookie = job.info.cookie,
                        command = cmd_name(job.info.kind),
                        "export panicked"
                    );
                    ops::error_reply(&job.info, errno::EIO, "internal error in the export".into())
                });
                if let Some(avg) = average_of(&avg, &avg_large, &job) {
                    record(avg, start.elapsed().as_nanos() as u64);
                }
                answer(job, reply, &pool, &tx);
            }
        });
    }
}

/// What a blocking batch runs: one job, or a run of at least two small
/// writes without FUA (with their offsets) for one `Export::write_many`.
enum Work {
    One(Job),
    Writes(Vec<(u64, Job)>),
}

/// Splits a batch, in order, into runs of consecutive batchable writes (when
/// the export batches writes) and single jobs; a run of one is a single job.
fn group_writes(jobs: Vec<Job>, batches_writes: bool) -> Vec<Work> {
    let mut out: Vec<Work> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let write = if batches_writes {
            job.batchable_write()
        } else {
            None
        };
        match (write, out.last_mut()) {
            (Some(offset), Some(Work::Writes(run))) => run.push((offset, job)),
            (Some(offset), _) => out.push(Work::Writes(vec![(offset, job)])),
            (None, _) => out.push(Work::One(job)),
        }
    }
    for w in &mut out {
        if let Work::Writes(run) = w {
            if run.len() == 1 {
                if let Some((_, job)) = run.pop() {
                    *w = Work::One(job);
                }
            }
        }
    }
    out
}

/// Sends `job`'s reply with its in-flight permit (released with the
/// reply) and returns its payload buffer to the pool.
fn answer(job: Job, reply: crate::writer::Reply, pool: &BufPool, tx: &UnboundedSender<Outgoing>) {
    pool.give(job.payload);
    // Fails only when the writer is gone: the connection is ending.
    let _ = tx.send(Outgoing {
        reply,
        permit: Some(job.permit),
    });
}

/// Runs small writes without FUA as one [`Export::write_many`] call and
/// sends each its reply (a panicking export gives each EIO); the moving
/// average gets the call's time per write.
fn run_writes(
    export: &Arc<dyn Export>,
    run: Vec<(u64, Job)>,
    tx: &UnboundedSender<Outgoing>,
    pool: &BufPool,
    avg: &AtomicU64,
) {
    let start = Instant::now();
    let writes: Vec<(u64, &[u8])> = run
        .iter()
        .map(|(offset, j)| (*offset, j.payload.as_slice()))
        .collect();
    let mut results = std::panic::catch_unwind(AssertUnwindSafe(|| export.write_many(&writes)))
        .unwrap_or_else(|_| {
            error!(writes = run.len(), "export panicked in write_many");
            Vec::new()
        });
    drop(writes);
    results.resize_with(run.len(), || {
        Err(crate::export::ExportError::io(
            "internal error in the export: no outcome for this write",
        ))
    });
    record(avg, start.elapsed().as_nanos() as u64 / run.len() as u64);
    for ((_, job), res) in run.into_iter().zip(results) {
        let reply = ops::outcome_reply(job.op, &job.info, res);
        answer(job, reply, pool, tx);
    }
}

/// The average `job`'s call time belongs to: large reads have their own
/// (it decides whether they run on the connection's task); large writes
/// count in neither, so a slow copy-on-write of 1 MiB writes neither turns
/// large reads off the connection's task nor makes small requests look slow.
fn average_of<'a>(avg: &'a AtomicU64, large: &'a AtomicU64, job: &Job) -> Option<&'a AtomicU64> {
    if job.is_large_read() {
        Some(large)
    } else if job.is_large_transfer() {
        None
    } else {
        Some(avg)
    }
}

fn record(avg: &AtomicU64, sample_ns: u64) {
    let old = avg.load(Ordering::Relaxed);
    let new = if old == UNKNOWN_NS {
        sample_ns
    } else {
        (old.saturating_mul(7).saturating_add(sample_ns)) / 8
    };
    avg.store(new, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(op: Op, data_len: u32, cookie: u64) -> Job {
        let permit = crate::writer::Charge {
            _conn: Arc::new(tokio::sync::Semaphore::new(1))
                .try_acquire_owned()
                .expect("a fresh semaphore has a permit"),
            _shared: None,
        };
        Job {
            op,
            payload: Vec::new(),
            info: ReqInfo {
                cookie,
                kind: 0,
                structured: false,
                min_block: 1,
            },
            permit,
            data_len,
        }
    }

    /// The shape of a grouping: cookies per run, `One` as a run of one.
    fn shape(work: &[Work]) -> Vec<Vec<u64>> {
        work.iter()
            .map(|w| match w {
                Work::One(j) => vec![j.info.cookie],
                Work::Writes(run) => run
                    .iter()
                    .map(|(o, j)| {
                        assert_eq!(*o, j.info.cookie * 4096, "each write keeps its offset");
                        j.info.cookie
                    })
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn runs_of_small_plain_writes_are_grouped_in_order() {
        let w = |c: u64| {
            job(
                Op::Write {
                    offset: c * 4096,
                    fua: false,
                },
                4096,
                c,
            )
        };
        let jobs = || {
            vec![
                w(0),
                w(1),
                job(
                    Op::Read {
                        offset: 0,
                        len: 4096,
                        df: false,
                    },
                    4096,
                    2,
                ),
                w(3),
                job(
                    Op::Write {
                        offset: 4 * 4096,
                        fua: true,
                    },
                    4096,
                    4,
                ),
                w(5),
                w(6),
                w(7),
                job(
                    Op::Write {
                        offset: 8 * 4096,
                        fua: false,
                    },
                    1 << 20,
                    8,
                ),
                w(9),
            ]
        };
        let grouped = group_writes(jobs(), true);
        assert_eq!(
            shape(&grouped),
            vec![
                vec![0, 1],
                vec![2],
                vec![3],
                vec![4],
                vec![5, 6, 7],
                vec![8],
                vec![9]
            ]
        );
        assert!(
            matches!(grouped[2], Work::One(_)),
            "a lone write runs alone"
        );
        let plain = group_writes(jobs(), false);
        assert!(plain.iter().all(|w| matches!(w, Work::One(_))));
        assert_eq!(plain.len(), 10);
    }

    #[test]
    fn average_starts_unknown_and_follows_samples() {
        let a = AtomicU64::new(UNKNOWN_NS);
        record(&a, 1_000);
        assert_eq!(a.load(Ordering::Relaxed), 1_000);
        for _ in 0..50 {
            record(&a, 1_000_000);
        }
        assert!(
            a.load(Ordering::Relaxed) > FAST_OP_NS,
            "slow calls end batching"
        );
    }
}
