//! The daemon's CPU scheduling policy.
//!
//! Every NBD request crosses threads: the connection's reader task hands a
//! request to a blocking-pool thread, which hands the reply to the writer
//! task, and copy-on-write commits wake their submitters. Under Linux's
//! default policy (`SCHED_OTHER`) each such wake-up may preempt the thread
//! that issued it, so on a machine with few cores the reader is switched
//! out before it can read the next request: measured on 2 cores with fio's
//! nbd engine at QD16 beside other load, a third of the daemon's context
//! switches were these preemptions, and 4 KiB writes ran at a third of what
//! the same daemon did without them. On an idle machine the difference is
//! smaller and mixed: writes gain, random reads may lose up to a tenth
//! (docs/PERFORMANCE.md, "CPU scheduling").
//!
//! `SCHED_BATCH` is the same fair scheduler without wake-up preemption: a
//! woken thread waits for the running one to block or use up its slice. It
//! needs no privilege, keeps the nice value, and is inherited by every
//! thread created afterwards, so it is set once on the main thread before
//! the async runtime starts its workers and blocking pool.

/// CPU scheduling policy of the daemon's threads (`boot --cpu-scheduling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CpuScheduling {
    /// `SCHED_BATCH`: no wake-up preemption between the daemon's own threads.
    Batch,
    /// Leave the policy the process was started with.
    Inherit,
}

/// Applies `policy` to the calling thread (and so to every thread it creates
/// afterwards). A failure is logged and otherwise ignored: the daemon runs
/// correctly under any policy, only slower.
pub fn apply(policy: CpuScheduling) {
    if policy == CpuScheduling::Inherit {
        return;
    }
    match set_batch() {
        Ok(()) => tracing::debug!("CPU scheduling: SCHED_BATCH"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot switch to SCHED_BATCH; the default policy stays")
        }
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_batch() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, initialised sched_param that outlives the
    // call; pid 0 names the calling thread; the call only reads `param`.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_batch() -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "SCHED_BATCH exists on Linux only",
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn batch_is_set_on_the_calling_thread_and_inherited() {
        // A thread of its own, so the test harness's threads keep their policy.
        std::thread::spawn(|| {
            super::set_batch().expect("SCHED_BATCH needs no privilege");
            let child = std::thread::spawn(policy_of_current).join().unwrap();
            assert_eq!(policy_of_current(), libc::SCHED_BATCH);
            assert_eq!(child, libc::SCHED_BATCH, "threads created later inherit it");
        })
        .join()
        .unwrap();
    }

    #[allow(unsafe_code)]
    fn policy_of_current() -> i32 {
        // SAFETY: no arguments besides pid 0 (the calling thread).
        unsafe { libc::sched_getscheduler(0) }
    }
}
