//! The NBD adapter: every controller volume is an [`nbd::Export`] named by its
//! volume id, served through [`NodeRegistry`].
//!
//! Contracts kept (nbd::Export): a FLUSH or FUA write returns only after the
//! controller made the data durable; a volume that cannot give a valid image
//! (offline target) answers with an error, never wrong data. Controller errors
//! become NBD error kinds in exactly one function, [`nbd_error`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use controller::{ControllerError, ErrorKind as CtlKind, VolumeRef};
use nbd::{
    BlockSize, ErrorKind, Export, ExportError, ExportListing, ExportRegistry, Extent, ExtentFlags,
    ZeroFlags,
};

use crate::metrics::VolumeStats;
use crate::node::Node;

/// Largest zero buffer written for `WRITE_ZEROES` with `NO_HOLE`.
const ZERO_CHUNK_BYTES: u64 = 1 << 20;

/// The one mapping from controller errors to NBD error kinds (and so errno).
pub fn nbd_error(e: ControllerError) -> ExportError {
    let kind = match e.kind() {
        CtlKind::OutOfRange | CtlKind::InvalidRequest => ErrorKind::Invalid,
        CtlKind::NoSpace => ErrorKind::NoSpace,
        // An offline volume (target of a stopped/preparing map, suspended map,
        // shut-down subsystem) must not serve wrong data: EIO.
        CtlKind::Offline
        | CtlKind::Io
        | CtlKind::Corrupt
        | CtlKind::NotFound
        | CtlKind::Busy
        | CtlKind::State
        | CtlKind::Limit
        | CtlKind::AlreadyExists
        | CtlKind::Fenced => ErrorKind::Io,
    };
    ExportError::new(kind, e.full_message())
}

/// Seconds since the epoch of the last "filesystem full" warning.
static LAST_FULL_WARNING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Says what to do when the data directory's filesystem is full: at most
/// once every 10 seconds (a client retrying must not flood the log).
fn warn_full(volume: &str, e: &ControllerError) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_FULL_WARNING.load(Relaxed);
    if now >= last + 10
        && LAST_FULL_WARNING
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_ok()
    {
        tracing::warn!(volume, error = %e.full_message(),
            "the data directory's filesystem is full: the write was refused with ENOSPC and \
             nothing acknowledged was lost; free space on that filesystem (or move the data \
             directory, README \"Runbook\"), then retry the write");
    }
}

/// One volume as an NBD export.
pub struct VolumeExport {
    node: Arc<Node>,
    volume: String,
    /// The serial of the volume this connection opened: once that volume is
    /// deleted, requests fail (EIO) even if a new one takes its name.
    serial: u32,
    size_bytes: u64,
    description: String,
    stats: Arc<VolumeStats>,
    /// Writes, trims and zeroing refused with EPERM (the nbd crate checks
    /// the export flag before a request reaches this adapter).
    read_only: bool,
}

impl VolumeExport {
    /// The volume this connection opened, by name and serial.
    fn vref(&self) -> VolumeRef<'_> {
        VolumeRef {
            name: &self.volume,
            serial: Some(self.serial),
        }
    }

    fn count(&self, r: Result<(), ControllerError>) -> Result<(), ExportError> {
        r.map_err(|e| {
            self.stats.errors.fetch_add(1, Relaxed);
            if e.kind() == CtlKind::NoSpace {
                warn_full(&self.volume, &e);
            }
            tracing::debug!(volume = %self.volume, error = %e.full_message(), "NBD request failed");
            nbd_error(e)
        })
    }
}

impl Export for VolumeExport {
    fn size(&self) -> u64 {
        self.size_bytes
    }

    fn block_size(&self) -> BlockSize {
        BlockSize {
            min: 512,
            preferred: 4096,
            max: 32 << 20,
        }
    }

    /// Every connection writes through the same subsystem and a flush makes
    /// the volume's store durable, so the multi-conn promise holds.
    fn can_multi_conn(&self) -> bool {
        true
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn description(&self) -> Option<String> {
        Some(self.description.clone())
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), ExportError> {
        self.stats.reads.fetch_add(1, Relaxed);
        self.stats.read_bytes.fetch_add(buf.len() as u64, Relaxed);
        let r = self.node.with(|s| s.read(self.vref(), offset, buf));
        self.count(r)
    }

    fn try_read_now(&self, offset: u64, buf: &mut [u8]) -> Option<Result<(), ExportError>> {
        let r = self
            .node
            .try_with(|s| s.try_read_now(self.vref(), offset, buf))?;
        self.stats.reads.fetch_add(1, Relaxed);
        self.stats.read_bytes.fetch_add(buf.len() as u64, Relaxed);
        Some(self.count(r))
    }

    fn try_write_now(&self, offset: u64, data: &[u8]) -> Option<Result<(), ExportError>> {
        if self.read_only {
            return None;
        }
        let r = self
            .node
            .try_with(|s| s.try_write_now(self.vref(), offset, data))?;
        self.stats.writes.fetch_add(1, Relaxed);
        self.stats.write_bytes.fetch_add(data.len() as u64, Relaxed);
        Some(self.count(r))
    }

    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), ExportError> {
        self.stats.writes.fetch_add(1, Relaxed);
        self.stats.write_bytes.fetch_add(data.len() as u64, Relaxed);
        let t = Instant::now();
        let r = self.node.with(|s| s.write(self.vref(), offset, data, fua));
        if fua && r.is_ok() {
            self.node.stats.host_flush.observe(t.elapsed());
        }
        self.count(r)
    }

    /// The controller commits the copy-on-write of a batch's first writes
    /// together (one data flush, one journal record).
    fn batches_writes(&self) -> bool {
        true
    }

    fn write_many(&self, writes: &[(u64, &[u8])]) -> Vec<Result<(), ExportError>> {
        self.stats.writes.fetch_add(writes.len() as u64, Relaxed);
        let bytes: usize = writes.iter().map(|(_, d)| d.len()).sum();
        self.stats.write_bytes.fetch_add(bytes as u64, Relaxed);
        let out = self.node.with(|s| s.write_many(self.vref(), writes));
        out.into_iter().map(|r| self.count(r)).collect()
    }

    fn flush(&self) -> Result<(), ExportError> {
        self.stats.flushes.fetch_add(1, Relaxed);
        let t = Instant::now();
        let r = self.node.with(|s| s.flush(self.vref()));
        if r.is_ok() {
            self.node.stats.host_flush.observe(t.elapsed());
        }
        self.count(r)
    }

    fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), ExportError> {
        self.stats.trims.fetch_add(1, Relaxed);
        self.stats.trim_bytes.fetch_add(len, Relaxed);
        let r = self.node.with(|s| s.discard(self.vref(), offset, len, fua));
        self.count(r)
    }

    fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> Result<(), ExportError> {
        self.stats.zeroes.fetch_add(1, Relaxed);
        self.stats.zero_bytes.fetch_add(len, Relaxed);
        if flags.may_trim {
            // The controller punches whole tracks: at least as fast as a write.
            let r = self
                .node
                .with(|s| s.write_zeroes(self.vref(), offset, len, flags.fua));
            return self.count(r);
        }
        // NO_HOLE: the range must stay allocated, so write real zeros.
        if flags.fast_only {
            return Err(ExportError::not_supported(
                "zeroing without holes is no faster than writing",
            ));
        }
        let zeros = vec![0u8; len.min(ZERO_CHUNK_BYTES) as usize];
        let mut at = offset;
        let end = offset.saturating_add(len);
        while at < end {
            let n = (end - at).min(ZERO_CHUNK_BYTES);
            let fua = flags.fua && at + n == end;
            let r = self
                .node
                .with(|s| s.write(self.vref(), at, &zeros[..n as usize], fua));
            self.count(r)?;
            at += n;
        }
        Ok(())
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>, ExportError> {
        let runs = self
            .node
            .with(|s| s.allocation(self.vref(), offset, len))
            .map_err(|e| {
                self.stats.errors.fetch_add(1, Relaxed);
                nbd_error(e)
            })?;
        Ok(runs
            .into_iter()
            .filter(|r| r.len > 0)
            .map(|r| Extent {
                len: r.len,
                flags: if r.allocated {
                    ExtentFlags::DATA
                } else {
                    ExtentFlags::HOLE_ZERO
                },
            })
            .collect())
    }
}

/// Every volume of the node's subsystem, looked up at connect time (volumes
/// created through the API are served at once).
pub struct NodeRegistry {
    node: Arc<Node>,
    default_export: Option<String>,
    read_only_all: bool,
}

impl NodeRegistry {
    /// A registry over `node`; `default_export` is what an empty export name selects.
    pub fn new(node: Arc<Node>, default_export: Option<String>) -> NodeRegistry {
        NodeRegistry {
            node,
            default_export,
            read_only_all: false,
        }
    }

    /// Serves every export read-only (`boot --read-only`); otherwise only the
    /// volumes the config marks `read_only = true` are.
    pub fn read_only(mut self, all: bool) -> NodeRegistry {
        self.read_only_all = all;
        self
    }
}

impl ExportRegistry for NodeRegistry {
    fn list(&self) -> Vec<ExportListing> {
        self.node
            .with(|s| s.volumes())
            .into_iter()
            .map(|v| ExportListing {
                name: v.id.clone(),
                description: Some(describe(&v)),
            })
            .collect()
    }

    fn open(&self, name: &str) -> Option<Arc<dyn Export>> {
        let (v, serial, configured) = self
            .node
            .with(|s| {
                let ro = s
                    .config()
                    .volumes
                    .iter()
                    .any(|c| c.id == name && c.read_only);
                // The serial first: a delete and re-create between the two
                // lookups leaves a connection that fails, never one that
                // reaches the wrong volume.
                let serial = s.volume_serial(name)?;
                s.volume_view(name).map(|v| (v, serial, ro))
            })
            .ok()?;
        Some(Arc::new(VolumeExport {
            read_only: self.read_only_all || configured,
            node: self.node.clone(),
            volume: v.id.clone(),
            serial,
            size_bytes: v.size_bytes,
            description: describe(&v),
            stats: self.node.stats.volume(&v.id),
        }))
    }

    fn default_export(&self) -> Option<String> {
        self.default_export.clone()
    }

    fn unavailable(&self) -> Option<String> {
        self.node.with(|s| s.fenced())
    }
}

fn describe(v: &controller::VolumeView) -> String {
    format!("firmware-sim volume {} ({})", v.id, v.model)
}
