//! NBD-side I/O statistics (per volume, as hosts see them) and the Prometheus
//! text rendering of `/metrics`.
//!
//! The controller counts what happens inside the subsystem (copy-on-write,
//! background copies, store flush latency); the NBD adapter counts requests
//! per volume and times host FLUSH/FUA round trips here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

/// Upper bounds (seconds) of the host flush latency buckets.
pub const HOST_FLUSH_BUCKETS_S: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Counters of one volume's NBD requests.
#[derive(Default)]
pub struct VolumeStats {
    /// READ requests.
    pub reads: AtomicU64,
    /// Bytes read.
    pub read_bytes: AtomicU64,
    /// WRITE requests.
    pub writes: AtomicU64,
    /// Bytes written.
    pub write_bytes: AtomicU64,
    /// TRIM requests.
    pub trims: AtomicU64,
    /// Bytes trimmed.
    pub trim_bytes: AtomicU64,
    /// WRITE_ZEROES requests.
    pub zeroes: AtomicU64,
    /// Bytes zeroed.
    pub zero_bytes: AtomicU64,
    /// FLUSH requests.
    pub flushes: AtomicU64,
    /// Requests answered with an error.
    pub errors: AtomicU64,
}

/// A cumulative latency histogram.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; HOST_FLUSH_BUCKETS_S.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, took: Duration) {
        let s = took.as_secs_f64();
        let i = HOST_FLUSH_BUCKETS_S
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(HOST_FLUSH_BUCKETS_S.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(took.as_nanos().min(u128::from(u64::MAX)) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cum = 0;
        for (i, b) in HOST_FLUSH_BUCKETS_S.iter().enumerate() {
            cum += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += self.buckets[HOST_FLUSH_BUCKETS_S.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_ns.load(Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {}", self.count.load(Relaxed));
    }
}

/// Every volume's counters plus the host flush histogram; shared by all exports.
#[derive(Default)]
pub struct IoStats {
    volumes: RwLock<BTreeMap<String, Arc<VolumeStats>>>,
    /// Latency of host FLUSH requests and FUA writes, as the NBD adapter sees them.
    pub host_flush: Histogram,
}

impl IoStats {
    /// The counters of `volume` (created on first use).
    pub fn volume(&self, volume: &str) -> Arc<VolumeStats> {
        if let Some(s) = self.volumes.read().get(volume) {
            return s.clone();
        }
        self.volumes
            .write()
            .entry(volume.to_string())
            .or_default()
            .clone()
    }

    /// Drops the counters of a deleted `volume` (connections still open to
    /// it keep theirs, unlisted); a volume created again under its name
    /// starts from zero, as after a restart.
    pub fn forget(&self, volume: &str) {
        self.volumes.write().remove(volume);
    }

    /// Appends the per-volume counters and the host flush histogram.
    pub fn render(&self, out: &mut String) {
        let vols = self.volumes.read().clone();
        type Get = fn(&VolumeStats) -> &AtomicU64;
        let series: [(&str, &str, Get); 10] = [
            ("firmware_sim_nbd_reads_total", "NBD READ requests", |s| {
                &s.reads
            }),
            (
                "firmware_sim_nbd_read_bytes_total",
                "Bytes read over NBD",
                |s| &s.read_bytes,
            ),
            ("firmware_sim_nbd_writes_total", "NBD WRITE requests", |s| {
                &s.writes
            }),
            (
                "firmware_sim_nbd_write_bytes_total",
                "Bytes written over NBD",
                |s| &s.write_bytes,
            ),
            ("firmware_sim_nbd_trims_total", "NBD TRIM requests", |s| {
                &s.trims
            }),
            (
                "firmware_sim_nbd_trim_bytes_total",
                "Bytes trimmed over NBD",
                |s| &s.trim_bytes,
            ),
            (
                "firmware_sim_nbd_write_zeroes_total",
                "NBD WRITE_ZEROES requests",
                |s| &s.zeroes,
            ),
            (
                "firmware_sim_nbd_write_zeroes_bytes_total",
                "Bytes zeroed over NBD",
                |s| &s.zero_bytes,
            ),
            (
                "firmware_sim_nbd_flushes_total",
                "NBD FLUSH requests",
                |s| &s.flushes,
            ),
            (
                "firmware_sim_nbd_errors_total",
                "NBD requests answered with an error",
                |s| &s.errors,
            ),
        ];
        for (name, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}, per volume.");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (v, s) in &vols {
                let _ = writeln!(out, "{name}{{volume=\"{v}\"}} {}", get(s).load(Relaxed));
            }
        }
        self.host_flush.render(
            out,
            "firmware_sim_host_flush_seconds",
            "Latency of host FLUSH requests and FUA writes (until durable).",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(2));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }

    #[test]
    fn volume_counters_are_labelled() {
        let s = IoStats::default();
        s.volume("GONE").writes.fetch_add(1, Relaxed);
        s.forget("GONE");
        s.volume("FB00").writes.fetch_add(2, Relaxed);
        let mut out = String::new();
        s.render(&mut out);
        assert!(
            out.contains("firmware_sim_nbd_writes_total{volume=\"FB00\"} 2\n"),
            "{out}"
        );
        assert!(
            !out.contains("GONE"),
            "a deleted volume's series stayed: {out}"
        );
    }
}
