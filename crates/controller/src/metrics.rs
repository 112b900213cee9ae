//! I/O and copy counters, and a flush-latency histogram; lock-free.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

/// Upper bounds (microseconds) of the flush-latency buckets; a last bucket
/// counts everything slower.
pub const FLUSH_LATENCY_BUCKETS_US: [u64; 11] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
];

/// Live counters (shared by every I/O path).
#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) reads: AtomicU64,
    pub(crate) read_bytes: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) write_bytes: AtomicU64,
    pub(crate) discards: AtomicU64,
    pub(crate) discard_bytes: AtomicU64,
    pub(crate) host_flushes: AtomicU64,
    pub(crate) cow_copies: AtomicU64,
    pub(crate) cow_bytes: AtomicU64,
    pub(crate) background_copies: AtomicU64,
    pub(crate) background_bytes: AtomicU64,
    pub(crate) holes_skipped: AtomicU64,
    pub(crate) group_commits: AtomicU64,
    pub(crate) group_commit_items: AtomicU64,
    pub(crate) journal_records: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    pub(crate) table_appends: AtomicU64,
    pub(crate) errors: AtomicU64,
    flush_count: AtomicU64,
    flush_us_total: AtomicU64,
    flush_buckets: [AtomicU64; FLUSH_LATENCY_BUCKETS_US.len() + 1],
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Records one store flush (data or metadata) that took `took`.
    pub(crate) fn flush_latency(&self, took: Duration) {
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = FLUSH_LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(FLUSH_LATENCY_BUCKETS_US.len());
        self.flush_buckets[i].fetch_add(1, Relaxed);
        self.flush_count.fetch_add(1, Relaxed);
        self.flush_us_total.fetch_add(us, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let g = |c: &AtomicU64| c.load(Relaxed);
        MetricsSnapshot {
            reads: g(&self.reads),
            read_bytes: g(&self.read_bytes),
            writes: g(&self.writes),
            write_bytes: g(&self.write_bytes),
            discards: g(&self.discards),
            discard_bytes: g(&self.discard_bytes),
            host_flushes: g(&self.host_flushes),
            cow_copies: g(&self.cow_copies),
            cow_bytes: g(&self.cow_bytes),
            background_copies: g(&self.background_copies),
            background_bytes: g(&self.background_bytes),
            holes_skipped: g(&self.holes_skipped),
            group_commits: g(&self.group_commits),
            group_commit_items: g(&self.group_commit_items),
            journal_records: g(&self.journal_records),
            checkpoints: g(&self.checkpoints),
            table_appends: g(&self.table_appends),
            errors: g(&self.errors),
            flushes: g(&self.flush_count),
            flush_us_total: g(&self.flush_us_total),
            flush_latency_buckets: FLUSH_LATENCY_BUCKETS_US
                .iter()
                .map(|&b| Some(b))
                .chain([None])
                .zip(self.flush_buckets.iter().map(g))
                .collect(),
        }
    }
}

/// A point-in-time copy of the counters (for `/metrics` and tests).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// Host reads.
    pub reads: u64,
    /// Bytes read by hosts.
    pub read_bytes: u64,
    /// Host writes (write and write_zeroes).
    pub writes: u64,
    /// Bytes written by hosts.
    pub write_bytes: u64,
    /// Host discards.
    pub discards: u64,
    /// Bytes discarded by hosts.
    pub discard_bytes: u64,
    /// Host flush requests.
    pub host_flushes: u64,
    /// Grains copied for copy-on-write (including fills and whole-grain claims).
    pub cow_copies: u64,
    /// Bytes copied for copy-on-write.
    pub cow_bytes: u64,
    /// Grains copied or cleaned in the background.
    pub background_copies: u64,
    /// Bytes copied in the background.
    pub background_bytes: u64,
    /// Grain copies that found a hole and copied nothing.
    pub holes_skipped: u64,
    /// Group commits (batches).
    pub group_commits: u64,
    /// Items committed by group commits (items / commits = batching factor).
    pub group_commit_items: u64,
    /// Journal records appended.
    pub journal_records: u64,
    /// Checkpoints (root writes).
    pub checkpoints: u64,
    /// Activity-table batch appends (one fdatasync each): one per touched
    /// table per `append_activity` call.
    pub table_appends: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Store flushes timed.
    pub flushes: u64,
    /// Total microseconds spent in timed flushes.
    pub flush_us_total: u64,
    /// Flush-latency histogram: (upper bound in microseconds, `None` = +inf; count).
    pub flush_latency_buckets: Vec<(Option<u64>, u64)>,
}

impl MetricsSnapshot {
    /// Adds `other`'s counters to these (the flush histograms bucket by
    /// bucket; a bucket bound `other` has and these lack is appended). The
    /// daemon keeps the counters of the handles an IPL replaced this way, so
    /// its `/metrics` counters never go down across an IPL.
    pub fn add(&mut self, other: &MetricsSnapshot) {
        let pairs = [
            (&mut self.reads, other.reads),
            (&mut self.read_bytes, other.read_bytes),
            (&mut self.writes, other.writes),
            (&mut self.write_bytes, other.write_bytes),
            (&mut self.discards, other.discards),
            (&mut self.discard_bytes, other.discard_bytes),
            (&mut self.host_flushes, other.host_flushes),
            (&mut self.cow_copies, other.cow_copies),
            (&mut self.cow_bytes, other.cow_bytes),
            (&mut self.background_copies, other.background_copies),
            (&mut self.background_bytes, other.background_bytes),
            (&mut self.holes_skipped, other.holes_skipped),
            (&mut self.group_commits, other.group_commits),
            (&mut self.group_commit_items, other.group_commit_items),
            (&mut self.journal_records, other.journal_records),
            (&mut self.checkpoints, other.checkpoints),
            (&mut self.table_appends, other.table_appends),
            (&mut self.errors, other.errors),
            (&mut self.flushes, other.flushes),
            (&mut self.flush_us_total, other.flush_us_total),
        ];
        for (mine, theirs) in pairs {
            *mine = mine.saturating_add(theirs);
        }
        for (bound, count) in &other.flush_latency_buckets {
            match self
                .flush_latency_buckets
                .iter_mut()
                .find(|(b, _)| b == bound)
            {
                Some((_, c)) => *c = c.saturating_add(*count),
                None => self.flush_latency_buckets.push((*bound, *count)),
            }
        }
    }
}

#[cfg(test)]
mod add_tests {
    use super::MetricsSnapshot;

    #[test]
    fn adding_snapshots_sums_every_counter_and_bucket() {
        let a = MetricsSnapshot {
            reads: 2,
            cow_bytes: 10,
            flush_latency_buckets: vec![(Some(100), 1), (None, 2)],
            ..MetricsSnapshot::default()
        };
        let mut b = MetricsSnapshot {
            reads: 3,
            errors: 1,
            flush_latency_buckets: vec![(Some(100), 4), (None, 0)],
            ..MetricsSnapshot::default()
        };
        b.add(&a);
        assert_eq!((b.reads, b.cow_bytes, b.errors), (5, 10, 1));
        assert_eq!(b.flush_latency_buckets, [(Some(100), 5), (None, 2)]);
    }
}
