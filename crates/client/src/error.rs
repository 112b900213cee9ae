//! [`ClientError`] and [`ErrorKind`]: every way a call of the control API
//! fails, with the API's machine-readable error kinds as an enum.

use std::fmt;

/// The `kind` of an error answer (`{"error": ..., "kind": ...}`), as the
/// control API names it. A kind this client does not know yet (a newer
/// daemon) is kept as [`ErrorKind::Other`] with its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `unknown_volume`: a volume id the subsystem does not have.
    UnknownVolume,
    /// `unknown_map`: a map id or name that does not exist.
    UnknownMap,
    /// `unknown_group`: a group id or name that does not exist.
    UnknownGroup,
    /// `unknown_session`: a session id that does not exist.
    UnknownSession,
    /// `bad_extent`: an extent that does not parse or lies outside the volume.
    BadExtent,
    /// `wrong_state`: the object's state does not allow the action.
    WrongState,
    /// `already_exists`: the id is taken.
    AlreadyExists,
    /// `busy`: the object is in use (a volume in a mapping or session).
    Busy,
    /// `limit`: a limit was reached.
    Limit,
    /// `bad_request`: the request body or a parameter is malformed.
    BadRequest,
    /// `not_found`: no such route (or event).
    NotFound,
    /// `no_space`: the subsystem's backing file system is full.
    NoSpace,
    /// `internal`: the subsystem failed (I/O, metadata).
    Internal,
    /// `unavailable`: the subsystem is not serving (shut down, restarting).
    Unavailable,
    /// `unauthorized`: no or a wrong API token.
    Unauthorized,
    /// `forbidden`: a cross-origin request, or a non-loopback `Host` without a token.
    Forbidden,
    /// `unsupported_media_type`: a state-changing request that is not JSON.
    UnsupportedMediaType,
    /// `too_large`: a request body over the limit.
    TooLarge,
    /// A kind this client does not know (kept as the API sent it).
    Other(String),
}

/// Every known kind with its wire name, in one table (parsing and printing
/// both read it, so they cannot disagree).
const KINDS: &[(ErrorKind, &str)] = &[
    (ErrorKind::UnknownVolume, "unknown_volume"),
    (ErrorKind::UnknownMap, "unknown_map"),
    (ErrorKind::UnknownGroup, "unknown_group"),
    (ErrorKind::UnknownSession, "unknown_session"),
    (ErrorKind::BadExtent, "bad_extent"),
    (ErrorKind::WrongState, "wrong_state"),
    (ErrorKind::AlreadyExists, "already_exists"),
    (ErrorKind::Busy, "busy"),
    (ErrorKind::Limit, "limit"),
    (ErrorKind::BadRequest, "bad_request"),
    (ErrorKind::NotFound, "not_found"),
    (ErrorKind::NoSpace, "no_space"),
    (ErrorKind::Internal, "internal"),
    (ErrorKind::Unavailable, "unavailable"),
    (ErrorKind::Unauthorized, "unauthorized"),
    (ErrorKind::Forbidden, "forbidden"),
    (ErrorKind::UnsupportedMediaType, "unsupported_media_type"),
    (ErrorKind::TooLarge, "too_large"),
];

impl ErrorKind {
    /// The kind named `wire` (`unknown_map` is [`ErrorKind::UnknownMap`]);
    /// an unknown name is [`ErrorKind::Other`].
    pub fn parse(wire: &str) -> ErrorKind {
        KINDS
            .iter()
            .find(|(_, name)| *name == wire)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| ErrorKind::Other(wire.to_string()))
    }

    /// The wire name (`unknown_map`); [`ErrorKind::Other`] gives its own text.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorKind::Other(s) => s,
            known => known.known_name().unwrap_or(""),
        }
    }

    /// The wire name of a kind the API documents; `None` for [`ErrorKind::Other`].
    pub fn known_name(&self) -> Option<&'static str> {
        KINDS.iter().find(|(k, _)| k == self).map(|(_, name)| *name)
    }

    /// Every kind the API documents (not [`ErrorKind::Other`]).
    pub fn all() -> impl Iterator<Item = ErrorKind> {
        KINDS.iter().map(|(k, _)| k.clone())
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorKind {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ErrorKind::parse(s))
    }
}

/// Why a call failed; `Display` is one line.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The API answered with an error document `{"error", "kind"}`, or the
    /// client refused for the API's reason (waiting on a map that is not
    /// started is `wrong_state`, as the API would say).
    #[error("{message} [{kind}]")]
    Api {
        /// HTTP status.
        status: u16,
        /// Machine-readable kind.
        kind: ErrorKind,
        /// What was wrong, one line.
        message: String,
    },
    /// Nothing answered at the address, the connection broke, or what
    /// answered is not a firmware-sim control API.
    #[error("cannot reach the control API at {addr}: {cause}")]
    Transport {
        /// The address tried.
        addr: String,
        /// What went wrong.
        cause: String,
    },
    /// The API answered success with a document this client cannot read
    /// (a daemon of another version).
    #[error("the API at {addr} answered {path} with unexpected JSON: {cause}")]
    Decode {
        /// The API address.
        addr: String,
        /// The route asked.
        path: String,
        /// What did not fit.
        cause: String,
    },
    /// An id that cannot be put into a URL path as it is; nothing was sent.
    #[error("`{id}` is not a valid id (allowed: A-Z a-z 0-9 . _ - :)")]
    InvalidId {
        /// The id given.
        id: String,
    },
    /// A wait gave up at its timeout; the message says where things stood.
    #[error("{0}")]
    Timeout(String),
}

impl ClientError {
    /// The API's error kind, when the API answered with one.
    pub fn kind(&self) -> Option<&ErrorKind> {
        match self {
            ClientError::Api { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// An API-style refusal made by the client itself.
    pub(crate) fn refused(status: u16, kind: ErrorKind, message: String) -> ClientError {
        ClientError::Api {
            status,
            kind,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_kind_parses_back_to_itself() {
        let all: Vec<ErrorKind> = ErrorKind::all().collect();
        assert_eq!(all.len(), 18, "one entry per documented kind");
        for k in all {
            let wire = k.to_string();
            assert!(!wire.is_empty(), "{k:?} has a wire name");
            assert_eq!(ErrorKind::parse(&wire), k, "{wire}");
            assert!(!matches!(k, ErrorKind::Other(_)));
        }
    }

    #[test]
    fn wire_names_are_the_api_ones() {
        assert_eq!(ErrorKind::parse("unknown_map"), ErrorKind::UnknownMap);
        assert_eq!(ErrorKind::parse("wrong_state"), ErrorKind::WrongState);
        assert_eq!(
            ErrorKind::parse("unsupported_media_type"),
            ErrorKind::UnsupportedMediaType
        );
        assert_eq!(ErrorKind::UnknownSession.as_str(), "unknown_session");
        assert_eq!(ErrorKind::TooLarge.as_str(), "too_large");
    }

    #[test]
    fn an_unknown_kind_is_kept_verbatim() {
        let k = ErrorKind::parse("quota_exceeded");
        assert_eq!(k, ErrorKind::Other("quota_exceeded".into()));
        assert_eq!(k.to_string(), "quota_exceeded");
        // Kinds are exact: case and spelling variants are not guessed.
        assert_eq!(
            ErrorKind::parse("Unknown_Map"),
            ErrorKind::Other("Unknown_Map".into())
        );
        assert_eq!(ErrorKind::parse(""), ErrorKind::Other(String::new()));
    }

    #[test]
    fn api_errors_print_message_and_kind() {
        let e = ClientError::Api {
            status: 404,
            kind: ErrorKind::UnknownMap,
            message: "unknown map 7".into(),
        };
        assert_eq!(e.to_string(), "unknown map 7 [unknown_map]");
        assert_eq!(e.kind(), Some(&ErrorKind::UnknownMap));
        assert_eq!(e.status(), Some(404));
        let t = ClientError::Transport {
            addr: "127.0.0.1:1".into(),
            cause: "refused".into(),
        };
        assert_eq!(t.kind(), None);
        assert_eq!(t.status(), None);
    }
}
