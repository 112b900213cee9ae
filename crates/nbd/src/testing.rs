//! Test exports (feature `test-utils`): [`MemExport`] in memory with call
//! counters, a settable failure and per-offset delays, and [`FileExport`]
//! on a real file whose FLUSH/FUA go to `fdatasync`.
//!
//! Both keep the [`Export`] contracts: out-of-range calls fail with
//! `Invalid` (`NoSpace` for writes), zeroed ranges read back as zeroes, and
//! `block_status` reports 4 KiB allocation blocks.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::export::{BlockSize, ErrorKind, Export, ExportError, Extent, ExtentFlags, ZeroFlags};

/// Allocation granularity of the test exports.
pub const ALLOC_BLOCK_BYTES: u64 = 4096;

/// Counters of durability-relevant calls, for tests.
#[derive(Debug, Default)]
pub struct CallCounts {
    /// `flush()` calls.
    pub flushes: AtomicU64,
    /// Writes (including zeroing and trims) with FUA.
    pub fua_writes: AtomicU64,
    /// `write()` calls.
    pub writes: AtomicU64,
    /// `read()` calls.
    pub reads: AtomicU64,
    /// `trim()` calls.
    pub trims: AtomicU64,
    /// `write_zeroes()` calls.
    pub zeroes: AtomicU64,
    /// Reads and writes served by `try_read_now`/`try_write_now`.
    pub now: AtomicU64,
}

impl CallCounts {
    /// Read one counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::SeqCst)
    }
}

/// Bytes per lock stripe of a [`MemExport`]: I/O to different stripes
/// runs in parallel.
const STRIPE_BYTES: u64 = 1 << 20;

/// An export held in memory.
pub struct MemExport {
    size: u64,
    stripes: Vec<RwLock<Vec<u8>>>,
    allocated: Vec<AtomicBool>,
    block_size: BlockSize,
    read_only: bool,
    multi_conn: bool,
    fast_zero: bool,
    description: Option<String>,
    fail: Mutex<Option<ErrorKind>>,
    delays: Mutex<HashMap<u64, Duration>>,
    /// Answer `try_read_now`/`try_write_now` (when no delay is set).
    now: bool,
    /// Call counters.
    pub counts: CallCounts,
}

fn check(size: u64, offset: u64, len: u64, kind: ErrorKind) -> Result<(), ExportError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(ExportError::new(
            kind,
            format!("range {len}@{offset} outside export of {size} bytes"),
        )),
    }
}

impl MemExport {
    /// A zero-filled, unallocated export of `size` bytes.
    pub fn new(size: u64) -> Self {
        let blocks = size.div_ceil(ALLOC_BLOCK_BYTES) as usize;
        let stripes = (0..size.div_ceil(STRIPE_BYTES))
            .map(|i| {
                RwLock::new(vec![
                    0;
                    (size - i * STRIPE_BYTES).min(STRIPE_BYTES) as usize
                ])
            })
            .collect();
        MemExport {
            size,
            stripes,
            allocated: (0..blocks).map(|_| AtomicBool::new(false)).collect(),
            block_size: BlockSize::DEFAULT,
            read_only: false,
            multi_conn: true,
            fast_zero: true,
            description: None,
            fail: Mutex::new(None),
            delays: Mutex::new(HashMap::new()),
            now: false,
            counts: CallCounts::default(),
        }
    }
    /// Refuse writes (`EPERM`).
    pub fn read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }
    /// Advertise (or not) CAN_MULTI_CONN; memory is shared, so the promise holds.
    pub fn multi_conn(mut self, on: bool) -> Self {
        self.multi_conn = on;
        self
    }
    /// Whether `write_zeroes` with `fast_only` succeeds (else NotSupported).
    pub fn fast_zero(mut self, on: bool) -> Self {
        self.fast_zero = on;
        self
    }
    /// Serve small reads and writes on the connection's task (`try_read_now`,
    /// `try_write_now`) while no delay is set; off by default.
    pub fn now(mut self, on: bool) -> Self {
        self.now = on;
        self
    }
    fn can_now(&self) -> bool {
        self.now && self.delays.lock().is_empty()
    }
    /// Set the description.
    pub fn description(mut self, d: &str) -> Self {
        self.description = Some(d.to_string());
        self
    }
    /// Set the block size constraints.
    pub fn block_size(mut self, bs: BlockSize) -> Self {
        self.block_size = bs;
        self
    }
    /// Make every later call fail with `kind` (None: stop failing).
    pub fn set_failure(&self, kind: Option<ErrorKind>) {
        *self.fail.lock() = kind;
    }
    /// Make reads and writes starting at `offset` sleep for `d` first.
    pub fn set_delay(&self, offset: u64, d: Duration) {
        self.delays.lock().insert(offset, d);
    }
    fn pre(&self, offset: u64) -> Result<(), ExportError> {
        if let Some(kind) = *self.fail.lock() {
            return Err(ExportError::new(kind, "injected failure"));
        }
        let d = self.delays.lock().get(&offset).copied();
        if let Some(d) = d {
            std::thread::sleep(d);
        }
        Ok(())
    }
    fn perm(&self) -> Result<(), ExportError> {
        if self.read_only {
            return Err(ExportError::new(ErrorKind::Perm, "read-only export"));
        }
        Ok(())
    }
    /// Copy of the bytes of a range (test inspection); clipped to the export.
    pub fn snapshot(&self, offset: u64, len: usize) -> Vec<u8> {
        let start = offset.min(self.size);
        let end = start.saturating_add(len as u64).min(self.size);
        let mut out = vec![0u8; (end - start) as usize];
        self.each_piece(start, end - start, |stripe, at, pos| {
            let s = self.stripes[stripe].read();
            let n = (s.len() - at).min(out.len() - pos);
            out[pos..pos + n].copy_from_slice(&s[at..at + n]);
            n
        });
        out
    }

    /// Call `f(stripe, offset in stripe, position in range)` for each
    /// stripe piece of `[offset, offset+len)`; `f` returns the bytes it covered.
    fn each_piece(&self, offset: u64, len: u64, mut f: impl FnMut(usize, usize, usize) -> usize) {
        let mut pos = 0u64;
        while pos < len {
            let abs = offset + pos;
            let stripe = (abs / STRIPE_BYTES) as usize;
            let at = (abs % STRIPE_BYTES) as usize;
            let n = f(stripe, at, pos as usize).min((len - pos) as usize);
            pos += n as u64;
        }
    }

    fn fill_zero(&self, offset: u64, len: u64) {
        self.each_piece(offset, len, |stripe, at, pos| {
            let mut s = self.stripes[stripe].write();
            let n = (s.len() - at).min(len as usize - pos);
            s[at..at + n].fill(0);
            n
        });
    }

    fn zero(&self, offset: u64, len: u64, deallocate: bool) {
        self.fill_zero(offset, len);
        if !deallocate {
            mark_allocated(&self.allocated, offset, len);
            return;
        }
        // Only blocks wholly inside the range (or ending at the export end) become holes.
        let first = offset.div_ceil(ALLOC_BLOCK_BYTES);
        let end = if offset + len == self.size {
            self.allocated.len() as u64
        } else {
            (offset + len) / ALLOC_BLOCK_BYTES
        };
        for b in first..end {
            self.allocated[b as usize].store(false, Ordering::Relaxed);
        }
    }
}

fn mark_allocated(allocated: &[AtomicBool], offset: u64, len: u64) {
    if len == 0 {
        return;
    }
    let first = offset / ALLOC_BLOCK_BYTES;
    let last = (offset + len - 1) / ALLOC_BLOCK_BYTES;
    for b in first..=last {
        allocated[b as usize].store(true, Ordering::Relaxed);
    }
}

/// Extents of `[offset, offset+len)` from per-block allocation bits.
fn extents_from(allocated: &[AtomicBool], offset: u64, len: u64, size: u64) -> Vec<Extent> {
    let mut out: Vec<Extent> = Vec::new();
    let end = offset + len;
    let mut pos = offset;
    while pos < end {
        let b = pos / ALLOC_BLOCK_BYTES;
        let block_end = ((b + 1) * ALLOC_BLOCK_BYTES).min(size).min(end);
        let flags = if allocated[b as usize].load(Ordering::Relaxed) {
            ExtentFlags::DATA
        } else {
            ExtentFlags::HOLE_ZERO
        };
        match out.last_mut() {
            Some(last) if last.flags == flags => last.len += block_end - pos,
            _ => out.push(Extent {
                len: block_end - pos,
                flags,
            }),
        }
        pos = block_end;
    }
    out
}

impl Export for MemExport {
    fn size(&self) -> u64 {
        self.size
    }
    fn block_size(&self) -> BlockSize {
        self.block_size
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn can_multi_conn(&self) -> bool {
        self.multi_conn
    }
    fn description(&self) -> Option<String> {
        self.description.clone()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), ExportError> {
        self.counts.reads.fetch_add(1, Ordering::SeqCst);
        self.pre(offset)?;
        check(self.size, offset, buf.len() as u64, ErrorKind::Invalid)?;
        let len = buf.len();
        self.each_piece(offset, len as u64, |stripe, at, pos| {
            let s = self.stripes[stripe].read();
            let n = (s.len() - at).min(len - pos);
            buf[pos..pos + n].copy_from_slice(&s[at..at + n]);
            n
        });
        Ok(())
    }
    fn try_read_now(&self, offset: u64, buf: &mut [u8]) -> Option<Result<(), ExportError>> {
        self.can_now().then(|| {
            self.counts.now.fetch_add(1, Ordering::SeqCst);
            self.read(offset, buf)
        })
    }
    fn try_write_now(&self, offset: u64, data: &[u8]) -> Option<Result<(), ExportError>> {
        self.can_now().then(|| {
            self.counts.now.fetch_add(1, Ordering::SeqCst);
            self.write(offset, data, false)
        })
    }
    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), ExportError> {
        self.counts.writes.fetch_add(1, Ordering::SeqCst);
        if fua {
            self.counts.fua_writes.fetch_add(1, Ordering::SeqCst);
        }
        self.perm()?;
        self.pre(offset)?;
        check(self.size, offset, data.len() as u64, ErrorKind::NoSpace)?;
        self.each_piece(offset, data.len() as u64, |stripe, at, pos| {
            let mut s = self.stripes[stripe].write();
            let n = (s.len() - at).min(data.len() - pos);
            s[at..at + n].copy_from_slice(&data[pos..pos + n]);
            n
        });
        mark_allocated(&self.allocated, offset, data.len() as u64);
        Ok(())
    }
    fn flush(&self) -> Result<(), ExportError> {
        self.counts.flushes.fetch_add(1, Ordering::SeqCst);
        self.pre(u64::MAX)
    }
    fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), ExportError> {
        self.counts.trims.fetch_add(1, Ordering::SeqCst);
        if fua {
            self.counts.fua_writes.fetch_add(1, Ordering::SeqCst);
        }
        self.perm()?;
        self.pre(offset)?;
        check(self.size, offset, len, ErrorKind::Invalid)?;
        self.zero(offset, len, true);
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> Result<(), ExportError> {
        self.counts.zeroes.fetch_add(1, Ordering::SeqCst);
        if flags.fua {
            self.counts.fua_writes.fetch_add(1, Ordering::SeqCst);
        }
        self.perm()?;
        if flags.fast_only && !self.fast_zero {
            return Err(ExportError::not_supported("zeroing is not fast here"));
        }
        self.pre(offset)?;
        check(self.size, offset, len, ErrorKind::NoSpace)?;
        self.zero(offset, len, flags.may_trim);
        Ok(())
    }
    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>, ExportError> {
        self.pre(offset)?;
        check(self.size, offset, len, ErrorKind::Invalid)?;
        Ok(extents_from(&self.allocated, offset, len, self.size))
    }
}

/// An export on a regular file: pread/pwrite, `fdatasync` for FLUSH and
/// FUA, no native zeroing (the server falls back to writes), trim ignored,
/// and block status reporting everything as data (the trait default).
pub struct FileExport {
    file: File,
    size: u64,
    /// Call counters (`flushes` counts fdatasync calls, FUA included).
    pub counts: CallCounts,
}

impl FileExport {
    /// Open an existing file read-write; the export size is the file size.
    pub fn open(path: &Path) -> Result<Self, ExportError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(FileExport {
            file,
            size,
            counts: CallCounts::default(),
        })
    }
    fn sync(&self) -> Result<(), ExportError> {
        self.counts.flushes.fetch_add(1, Ordering::SeqCst);
        self.file.sync_data()?;
        Ok(())
    }
}

impl Export for FileExport {
    fn size(&self) -> u64 {
        self.size
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), ExportError> {
        self.counts.reads.fetch_add(1, Ordering::SeqCst);
        check(self.size, offset, buf.len() as u64, ErrorKind::Invalid)?;
        self.file.read_exact_at(buf, offset)?;
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), ExportError> {
        self.counts.writes.fetch_add(1, Ordering::SeqCst);
        check(self.size, offset, data.len() as u64, ErrorKind::NoSpace)?;
        self.file.write_all_at(data, offset)?;
        if fua {
            self.counts.fua_writes.fetch_add(1, Ordering::SeqCst);
            self.sync()?;
        }
        Ok(())
    }
    fn flush(&self) -> Result<(), ExportError> {
        self.sync()
    }
    fn trim(&self, offset: u64, len: u64, _fua: bool) -> Result<(), ExportError> {
        self.counts.trims.fetch_add(1, Ordering::SeqCst);
        check(self.size, offset, len, ErrorKind::Invalid)?;
        Err(ExportError::not_supported("trim is ignored"))
    }
    fn write_zeroes(&self, offset: u64, len: u64, _flags: ZeroFlags) -> Result<(), ExportError> {
        self.counts.zeroes.fetch_add(1, Ordering::SeqCst);
        check(self.size, offset, len, ErrorKind::NoSpace)?;
        Err(ExportError::not_supported("no native zeroing"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_zero_deallocates_whole_blocks_only() {
        let m = MemExport::new(16384);
        m.write(0, &[1u8; 16384], false).unwrap();
        m.trim(100, 8192, false).unwrap();
        let e = m.block_status(0, 16384).unwrap();
        // block 0 partly trimmed stays allocated; block 1 freed; block 2 partly.
        assert_eq!(
            e,
            vec![
                Extent {
                    len: 4096,
                    flags: ExtentFlags::DATA
                },
                Extent {
                    len: 4096,
                    flags: ExtentFlags::HOLE_ZERO
                },
                Extent {
                    len: 8192,
                    flags: ExtentFlags::DATA
                },
            ]
        );
        assert!(m.snapshot(100, 8192).iter().all(|&b| b == 0));
        assert_eq!(m.snapshot(99, 1), vec![1]);
    }

    #[test]
    fn mem_out_of_range_is_an_error() {
        let m = MemExport::new(4096);
        let mut b = [0u8; 2];
        assert_eq!(m.read(4095, &mut b).unwrap_err().kind, ErrorKind::Invalid);
        assert_eq!(
            m.write(4095, &b, false).unwrap_err().kind,
            ErrorKind::NoSpace
        );
    }
}
