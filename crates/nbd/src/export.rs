//! The [`Export`] trait: what the server serves, and its error type.
//!
//! Contracts every implementation keeps (the server relies on them):
//! - All calls are **blocking** and may be slow; the server runs them on the
//!   blocking pool, several at once, so implementations are `Sync` and do
//!   their own locking.
//! - The server checks ranges before calling, but an implementation still
//!   answers a range outside `[0, size())` with an error, never a panic.
//! - `write(.., fua = true)`, `trim(.., fua = true)`, `write_zeroes` with
//!   `fua` and `flush()` return only once the data is durable (in the
//!   backend's own model). If `can_multi_conn()` is true, `flush()` makes the
//!   writes of **every** connection to this export durable and visible.
//! - After `write_zeroes` the range reads back as zeroes. With `fast_only`,
//!   an implementation that cannot zero faster than a write returns
//!   [`ErrorKind::NotSupported`] without changing anything.
//! - `trim` is advisory: the range may read back as anything afterwards.
//! - `block_status` returns extents starting at `offset`, in order, each
//!   with a non-zero length; they may stop short of `len` or run past it
//!   (the server clips and aligns them).

use std::fmt;

use crate::proto::errno;

/// Block size constraints advertised with `NBD_INFO_BLOCK_SIZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSize {
    /// Minimum block size: a power of two, at most 64 KiB.
    pub min: u32,
    /// Preferred block size: a power of two, at least `min`.
    pub preferred: u32,
    /// Maximum READ/WRITE payload: a multiple of `min`.
    pub max: u32,
}

impl BlockSize {
    /// 512 / 4096 / 32 MiB: what the simulator advertises for a 512-byte volume.
    pub const DEFAULT: BlockSize = BlockSize {
        min: 512,
        preferred: 4096,
        max: 32 << 20,
    };

    /// Check the proto.md rules; `Err` names the broken one.
    pub fn validate(&self) -> Result<(), String> {
        if !self.min.is_power_of_two() || self.min > 65536 {
            return Err(format!("min {} is not a power of two <= 64 KiB", self.min));
        }
        if !self.preferred.is_power_of_two() || self.preferred < self.min {
            return Err(format!(
                "preferred {} is not a power of two >= min {}",
                self.preferred, self.min
            ));
        }
        if self.max < self.preferred || self.max % self.min != 0 {
            return Err(format!(
                "max {} is not a multiple of min {} at least preferred {}",
                self.max, self.min, self.preferred
            ));
        }
        Ok(())
    }
}

impl Default for BlockSize {
    fn default() -> Self {
        BlockSize::DEFAULT
    }
}

/// Flags of one `WRITE_ZEROES` call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZeroFlags {
    /// The range may be deallocated (the client did not send `NO_HOLE`).
    pub may_trim: bool,
    /// Durable before return.
    pub fua: bool,
    /// Fail with [`ErrorKind::NotSupported`] unless zeroing is fast.
    pub fast_only: bool,
}

/// Allocation flags of one extent (`base:allocation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ExtentFlags(u32);

impl ExtentFlags {
    /// Allocated data.
    pub const DATA: ExtentFlags = ExtentFlags(0);
    /// Not allocated (`NBD_STATE_HOLE`).
    pub const HOLE: ExtentFlags = ExtentFlags(1);
    /// Reads as zeroes (`NBD_STATE_ZERO`).
    pub const ZERO: ExtentFlags = ExtentFlags(2);
    /// Unallocated and reads as zeroes.
    pub const HOLE_ZERO: ExtentFlags = ExtentFlags(3);

    /// The wire value.
    pub fn bits(self) -> u32 {
        self.0
    }
    /// Flags from a wire value (unknown bits dropped).
    pub fn from_bits(bits: u32) -> Self {
        ExtentFlags(bits & 3)
    }
    /// True when every flag of `other` is set.
    pub fn contains(self, other: ExtentFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Flags that hold for both (used when merging extents into one block).
    pub fn intersect(self, other: ExtentFlags) -> Self {
        ExtentFlags(self.0 & other.0)
    }
}

impl std::ops::BitOr for ExtentFlags {
    type Output = ExtentFlags;
    fn bitor(self, rhs: Self) -> Self {
        ExtentFlags(self.0 | rhs.0)
    }
}

/// One run of a block-status answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Length in bytes (non-zero).
    pub len: u64,
    /// Allocation state.
    pub flags: ExtentFlags,
}

/// What went wrong in an export call; mapped to an NBD errno by [`ErrorKind::nbd_errno`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Media or backend failure.
    Io,
    /// Out of space, or a write past the end.
    NoSpace,
    /// Bad argument (range, alignment).
    Invalid,
    /// Read-only export or volume.
    Perm,
    /// The operation is not supported (or, for `fast_only` zeroing, not fast).
    NotSupported,
    /// A value is too large to answer.
    Overflow,
    /// The backend is shutting down.
    Shutdown,
}

impl ErrorKind {
    /// The NBD errno for this kind: the only place that decides wire error codes.
    pub fn nbd_errno(self) -> u32 {
        match self {
            ErrorKind::Io => errno::EIO,
            ErrorKind::NoSpace => errno::ENOSPC,
            ErrorKind::Invalid => errno::EINVAL,
            ErrorKind::Perm => errno::EPERM,
            ErrorKind::NotSupported => errno::ENOTSUP,
            ErrorKind::Overflow => errno::EOVERFLOW,
            ErrorKind::Shutdown => errno::ESHUTDOWN,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::Io => "I/O error",
            ErrorKind::NoSpace => "no space",
            ErrorKind::Invalid => "invalid request",
            ErrorKind::Perm => "not permitted",
            ErrorKind::NotSupported => "not supported",
            ErrorKind::Overflow => "too large",
            ErrorKind::Shutdown => "shutting down",
        };
        f.write_str(s)
    }
}

/// Error of one export call: a matchable kind plus a message for the log
/// and for the structured error chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ExportError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Context (operation, range, cause).
    pub message: String,
}

impl ExportError {
    /// Build an error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ExportError {
            kind,
            message: message.into(),
        }
    }
    /// An [`ErrorKind::Io`] error.
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Io, message)
    }
    /// An [`ErrorKind::Invalid`] error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    /// An [`ErrorKind::NotSupported`] error.
    pub fn not_supported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotSupported, message)
    }
    /// The NBD errno to put on the wire.
    pub fn nbd_errno(&self) -> u32 {
        self.kind.nbd_errno()
    }
}

impl From<std::io::Error> for ExportError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::StorageFull | K::FileTooLarge | K::QuotaExceeded => ErrorKind::NoSpace,
            K::PermissionDenied | K::ReadOnlyFilesystem => ErrorKind::Perm,
            K::InvalidInput => ErrorKind::Invalid,
            K::Unsupported => ErrorKind::NotSupported,
            _ => ErrorKind::Io,
        };
        ExportError::new(kind, e.to_string())
    }
}

/// A block device the server can serve. Used as `Arc<dyn Export>`.
///
/// See the module docs for the contracts. Offsets and lengths are bytes.
pub trait Export: Send + Sync + 'static {
    /// Size in bytes; fixed while a connection is open.
    fn size(&self) -> u64;
    /// Block size constraints (must pass [`BlockSize::validate`]).
    fn block_size(&self) -> BlockSize {
        BlockSize::DEFAULT
    }
    /// True if writes, trims and zeroing are refused (`EPERM`).
    fn read_only(&self) -> bool {
        false
    }
    /// True only if a flush on one connection covers writes of all connections.
    fn can_multi_conn(&self) -> bool {
        false
    }
    /// Human-readable description (sent in `LIST` and `INFO_DESCRIPTION`).
    fn description(&self) -> Option<String> {
        None
    }
    /// Fill `buf` from `offset`. On `Ok` every byte of `buf` has been
    /// written: the server reuses buffers, so `buf` may arrive holding bytes
    /// of an earlier request.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), ExportError>;
    /// Write `data` at `offset`; durable before return when `fua`.
    fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), ExportError>;
    /// [`Export::read`], done now only if it needs no wait: no lock another
    /// thread holds, no device I/O the export knows of. `None` means "not
    /// attempted", and the server then calls [`Export::read`] on a blocking
    /// thread. Called on the connection's async task, so it must never block;
    /// it lets a small request skip two thread hand-offs. Default: `None`.
    fn try_read_now(&self, _offset: u64, _buf: &mut [u8]) -> Option<Result<(), ExportError>> {
        None
    }
    /// [`Export::write`] without FUA, done now only if it needs no wait (see
    /// [`Export::try_read_now`]). Default: `None`.
    fn try_write_now(&self, _offset: u64, _data: &[u8]) -> Option<Result<(), ExportError>> {
        None
    }
    /// Whether [`Export::write_many`] shares work between the writes of a
    /// batch (say one durable commit for many), so that the server should
    /// hand it the writes a client has in flight together instead of giving
    /// each a thread of its own. Default: `false`.
    fn batches_writes(&self) -> bool {
        false
    }
    /// Writes without FUA that a client had in flight together, applied in
    /// order (later writes win where they overlap); one outcome per write,
    /// at its index. Called on a blocking thread, only when
    /// [`Export::batches_writes`]. Default: [`Export::write`] for each.
    fn write_many(&self, writes: &[(u64, &[u8])]) -> Vec<Result<(), ExportError>> {
        writes
            .iter()
            .map(|&(offset, data)| self.write(offset, data, false))
            .collect()
    }
    /// Make every write already acknowledged durable.
    fn flush(&self) -> Result<(), ExportError>;
    /// Advisory discard of a range.
    fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), ExportError>;
    /// Make a range read as zeroes.
    fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> Result<(), ExportError>;
    /// Advisory prefetch.
    fn cache(&self, _offset: u64, _len: u64) -> Result<(), ExportError> {
        Ok(())
    }
    /// Allocation of a range, as extents starting at `offset`.
    fn block_status(&self, _offset: u64, len: u64) -> Result<Vec<Extent>, ExportError> {
        Ok(vec![Extent {
            len,
            flags: ExtentFlags::DATA,
        }])
    }
}
