//! The controller's one error type: a matchable [`ErrorKind`] plus context.
//!
//! The binary maps [`ErrorKind`] to NBD errno and to HTTP status codes, each in
//! exactly one function, so every new failure must pick one of these kinds.

use std::fmt;

/// What kind of failure a [`ControllerError`] is; stable, matchable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A named volume, map, group or session does not exist.
    NotFound,
    /// An object with that id already exists.
    AlreadyExists,
    /// The request is malformed or contradicts the configuration.
    InvalidRequest,
    /// A byte range or track lies outside the volume.
    OutOfRange,
    /// The volume is offline or not accessible in its mapping's state
    /// (target of a preparing/prepared/stopped map, either volume of a
    /// suspended map): it cannot give its point-in-time image.
    Offline,
    /// The object is in use (volume in a mapping or session, data directory
    /// locked by another process).
    Busy,
    /// A mapping or group is in a state that does not allow the request.
    State,
    /// A limit was reached (sessions per volume, maps per source, ...).
    Limit,
    /// A store or metadata I/O failed (including a poisoned store).
    Io,
    /// The backing file system is full.
    NoSpace,
    /// Persisted data failed validation (checksum, header, decode).
    Corrupt,
    /// Metadata could not be made durable, so whether the request took
    /// effect is unknown: the subsystem refuses all work until an IPL or a
    /// reset rebuilds its state from what is durable.
    Fenced,
}

impl ErrorKind {
    /// Lower-case name used in logs and the JSON control API.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::OutOfRange => "out_of_range",
            ErrorKind::Offline => "offline",
            ErrorKind::Busy => "busy",
            ErrorKind::State => "state",
            ErrorKind::Limit => "limit",
            ErrorKind::Io => "io",
            ErrorKind::NoSpace => "no_space",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Fenced => "fenced",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A controller failure: kind, a message naming what failed (volume, map,
/// offset, operation), and the underlying cause when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ControllerError {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl ControllerError {
    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ControllerError {
        ControllerError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A new error of `kind` caused by `source`.
    /// An I/O failure whose cause is the process or system running out of
    /// file descriptors becomes [`ErrorKind::Limit`] naming the way out
    /// (QA: it was answered as `internal`).
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> ControllerError {
        let mut message = message.into();
        let mut kind = kind;
        if kind == ErrorKind::Io && out_of_descriptors(&source) {
            kind = ErrorKind::Limit;
            message.push_str(
                " (out of file descriptors: each volume holds two; raise the limit, \
                 `ulimit -n` or systemd's LimitNOFILE=)",
            );
        }
        ControllerError {
            kind,
            message,
            source: Some(Box::new(source)),
        }
    }

    /// The matchable kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with more context (`"{context}: {message}"`).
    pub fn context(mut self, context: impl fmt::Display) -> ControllerError {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The message followed by every cause, `": "`-separated (for logs and CLIs).
    pub fn full_message(&self) -> String {
        let mut text = self.message.clone();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = self
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }
}

/// Shorthand constructors used across the crate.
pub(crate) fn err(kind: ErrorKind, message: impl Into<String>) -> ControllerError {
    ControllerError::new(kind, message)
}

/// Result alias of this crate.
pub type Result<T, E = ControllerError> = std::result::Result<T, E>;

/// Whether `e` or one of its causes is EMFILE or ENFILE.
fn out_of_descriptors(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if let Some(io) = x.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(23 | 24)) {
                return true;
            }
        }
        cur = x.source();
    }
    false
}
