//! The one error type of the store layer: a matchable [`ErrorKind`], the volume
//! and operation it concerns, a short context (offsets, paths), and the cause in
//! [`std::error::Error::source`].

use std::fmt;
use std::io;

/// What went wrong, for callers to match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The byte or track range lies (partly) outside the volume, or overflows.
    OutOfRange,
    /// An I/O error from the operating system (or an injected EIO).
    Io,
    /// No space left on the backing device (ENOSPC/EDQUOT, or injected).
    NoSpace,
    /// The process or system is out of file descriptors (EMFILE/ENFILE).
    TooManyFiles,
    /// An earlier flush failed; the store refuses writes and flushes until reopened.
    Poisoned,
    /// The file is not a firmware-sim volume file (no valid trailer magic).
    WrongFile,
    /// The file is a volume file of another volume.
    WrongVolume,
    /// The file's geometry or size differs from the one asked for.
    WrongGeometry,
    /// The trailer is damaged (checksum) or of an unknown format version.
    BadHeader,
    /// `create` found a file already at the path.
    AlreadyExists,
    /// `open` found no file at the path.
    NotFound,
    /// A bad argument, such as a volume id that cannot be stored in the trailer.
    InvalidArgument,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::OutOfRange => "range outside the volume",
            ErrorKind::Io => "I/O error",
            ErrorKind::NoSpace => "no space left on the backing device",
            ErrorKind::TooManyFiles => {
                "too many open files (each volume holds two descriptors: raise the limit, \
                 `ulimit -n` or systemd's LimitNOFILE=)"
            }
            ErrorKind::Poisoned => "store poisoned by an earlier failed flush; reopen it",
            ErrorKind::WrongFile => "not a firmware-sim volume file",
            ErrorKind::WrongVolume => "file belongs to another volume",
            ErrorKind::WrongGeometry => "file geometry or size differs from the volume's",
            ErrorKind::BadHeader => "volume file trailer damaged or of an unknown version",
            ErrorKind::AlreadyExists => "file already exists",
            ErrorKind::NotFound => "file not found",
            ErrorKind::InvalidArgument => "invalid argument",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Creating a volume file.
    Create,
    /// Opening a volume file.
    Open,
    /// `read_at`.
    Read,
    /// `write_at`.
    Write,
    /// `discard`.
    Discard,
    /// `write_zeroes`.
    WriteZeroes,
    /// `allocated`.
    Allocated,
    /// `flush`.
    Flush,
    /// A named fault site checked through [`crate::FaultPoint`].
    Site(crate::FaultSite),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Create => f.write_str("create"),
            Op::Open => f.write_str("open"),
            Op::Read => f.write_str("read"),
            Op::Write => f.write_str("write"),
            Op::Discard => f.write_str("discard"),
            Op::WriteZeroes => f.write_str("write_zeroes"),
            Op::Allocated => f.write_str("allocated"),
            Op::Flush => f.write_str("flush"),
            Op::Site(s) => write!(f, "fault site {s}"),
        }
    }
}

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error of the store layer. Display: `<op> on volume <id> (<context>): <kind>`;
/// the underlying cause (an `io::Error`, a geometry error) is in `source()`.
#[derive(Debug)]
pub struct StoreError {
    kind: ErrorKind,
    volume: String,
    op: Op,
    context: String,
    injected: bool,
    source: Option<Cause>,
}

impl StoreError {
    /// A new error; `context` says where (offsets, path), may be empty.
    pub fn new(kind: ErrorKind, volume: &str, op: Op, context: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            volume: volume.to_string(),
            op,
            context: context.into(),
            injected: false,
            source: None,
        }
    }

    /// An error from an OS I/O error; ENOSPC/EDQUOT become [`ErrorKind::NoSpace`].
    pub fn from_io(volume: &str, op: Op, context: impl Into<String>, err: io::Error) -> StoreError {
        let kind = match err.raw_os_error() {
            Some(code) if code == ENOSPC || code == EDQUOT => ErrorKind::NoSpace,
            Some(code) if code == EMFILE || code == ENFILE => ErrorKind::TooManyFiles,
            _ if err.kind() == io::ErrorKind::StorageFull => ErrorKind::NoSpace,
            _ => ErrorKind::Io,
        };
        StoreError::new(kind, volume, op, context).with_source(err)
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, cause: impl Into<Cause>) -> StoreError {
        self.source = Some(cause.into());
        self
    }

    /// Marks the error as produced by fault injection (shown in the message).
    pub fn injected(mut self) -> StoreError {
        self.injected = true;
        self
    }

    /// The matchable kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The volume id the error concerns.
    pub fn volume(&self) -> &str {
        &self.volume
    }

    /// The operation that failed.
    pub fn op(&self) -> Op {
        self.op
    }

    /// True if a fault injector produced the error.
    pub fn is_injected(&self) -> bool {
        self.injected
    }
}

/// Linux errno values (stable ABI) used to classify I/O errors.
pub(crate) const EIO: i32 = 5;
pub(crate) const ENOSPC: i32 = 28;
/// Linux EMFILE: this process has no free file descriptor.
pub(crate) const EMFILE: i32 = 24;
/// Linux ENFILE: the system has no free file descriptor.
pub(crate) const ENFILE: i32 = 23;
/// File too large for the filesystem (a `set_len` past its maximum file size).
pub(crate) const EFBIG: i32 = 27;
const EDQUOT: i32 = 122;

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on volume {}", self.op, self.volume)?;
        if !self.context.is_empty() {
            write!(f, " ({})", self.context)?;
        }
        write!(f, ": {}", self.kind)?;
        if self.injected {
            f.write_str(" [injected fault]")?;
        }
        Ok(())
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Out of descriptors is its own kind (the controller answers it as a
    /// limit, not as an internal error); a full disk stays `NoSpace`.
    #[test]
    fn os_errors_map_to_their_kinds() {
        let kind = |code| {
            StoreError::from_io("V", Op::Create, "", io::Error::from_raw_os_error(code)).kind()
        };
        assert_eq!(kind(EMFILE), ErrorKind::TooManyFiles);
        assert_eq!(kind(ENFILE), ErrorKind::TooManyFiles);
        assert_eq!(kind(ENOSPC), ErrorKind::NoSpace);
        assert_eq!(kind(5), ErrorKind::Io);
        let e = StoreError::from_io("V", Op::Create, "", io::Error::from_raw_os_error(EMFILE));
        assert!(e.to_string().contains("ulimit -n"), "{e}");
    }
}
