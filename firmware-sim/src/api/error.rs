//! [`ApiError`]: the control API's one error type. Controller and resource
//! manager failures become `ApiError`s through [`classify`], the single place
//! that decides the machine-readable `kind` (and so the HTTP status) of the
//! JSON body `{"error": ..., "kind": ...}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use controller::{ControllerError, ErrorKind as CtlKind};
use firmware_sim_client::ErrorKind as ClientKind;

use super::model::ErrorBody;

/// What kind of failure, as the API names it (`kind` in the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// A volume id the subsystem does not have.
    UnknownVolume,
    /// A map id that does not exist.
    UnknownMap,
    /// A group id that does not exist.
    UnknownGroup,
    /// A session id that does not exist.
    UnknownSession,
    /// An extent that does not parse or lies outside the volume.
    BadExtent,
    /// The object is in a state that does not allow the action.
    WrongState,
    /// The id is taken.
    AlreadyExists,
    /// The object is in use (volume in a mapping or session).
    Busy,
    /// A limit was reached.
    Limit,
    /// The request body or a parameter is malformed.
    BadRequest,
    /// No such route.
    NotFound,
    /// The backing file system is full.
    NoSpace,
    /// The subsystem failed (I/O, metadata).
    Internal,
    /// The subsystem is not serving (shut down, restarting).
    Unavailable,
    /// No or a wrong API token.
    Unauthorized,
    /// A cross-origin request (a web page in a browser).
    Forbidden,
    /// A state-changing request without `Content-Type: application/json`.
    UnsupportedMediaType,
    /// A request body over the limit.
    TooLarge,
}

impl ApiErrorKind {
    /// The client crate's kind for this one: the wire names are defined
    /// there once, for the daemon and every client.
    pub fn client_kind(self) -> ClientKind {
        use ApiErrorKind as K;
        match self {
            K::UnknownVolume => ClientKind::UnknownVolume,
            K::UnknownMap => ClientKind::UnknownMap,
            K::UnknownGroup => ClientKind::UnknownGroup,
            K::UnknownSession => ClientKind::UnknownSession,
            K::BadExtent => ClientKind::BadExtent,
            K::WrongState => ClientKind::WrongState,
            K::AlreadyExists => ClientKind::AlreadyExists,
            K::Busy => ClientKind::Busy,
            K::Limit => ClientKind::Limit,
            K::BadRequest => ClientKind::BadRequest,
            K::NotFound => ClientKind::NotFound,
            K::NoSpace => ClientKind::NoSpace,
            K::Internal => ClientKind::Internal,
            K::Unavailable => ClientKind::Unavailable,
            K::Unauthorized => ClientKind::Unauthorized,
            K::Forbidden => ClientKind::Forbidden,
            K::UnsupportedMediaType => ClientKind::UnsupportedMediaType,
            K::TooLarge => ClientKind::TooLarge,
        }
    }

    /// The HTTP status of this kind.
    pub fn status(self) -> StatusCode {
        use ApiErrorKind as K;
        match self {
            K::UnknownVolume | K::UnknownMap | K::UnknownGroup | K::UnknownSession => {
                StatusCode::NOT_FOUND
            }
            K::BadExtent | K::BadRequest => StatusCode::BAD_REQUEST,
            K::WrongState | K::AlreadyExists | K::Busy | K::Limit => StatusCode::CONFLICT,
            K::NotFound => StatusCode::NOT_FOUND,
            K::NoSpace => StatusCode::INSUFFICIENT_STORAGE,
            K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            K::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            K::Unauthorized => StatusCode::UNAUTHORIZED,
            K::Forbidden => StatusCode::FORBIDDEN,
            K::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            K::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    /// The `kind` string and HTTP status of this kind.
    pub fn wire(self) -> (&'static str, StatusCode) {
        // Every ApiErrorKind maps to a documented client kind, which has a name.
        let name = self.client_kind().known_name().unwrap_or("internal");
        (name, self.status())
    }
}

/// The resource a request is about: decides what "not found" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noun {
    /// `/volumes`.
    Volume,
    /// `/mappings`, `/cascades`.
    Map,
    /// `/groups`.
    Group,
    /// `/sessions`, `/tables`.
    Session,
    /// `/events`, `/health`.
    Subsystem,
}

/// A failure from a layer below the API.
pub enum Failure<'a> {
    /// A controller error.
    Controller(&'a ControllerError),
    /// A resource-manager error.
    Rm(&'a resource_manager::RmError),
}

/// The one mapping from controller and resource-manager error kinds to API kinds.
pub fn classify(failure: Failure<'_>, noun: Noun) -> ApiErrorKind {
    use ApiErrorKind as K;
    let not_found = match noun {
        Noun::Volume => K::UnknownVolume,
        Noun::Map => K::UnknownMap,
        Noun::Group => K::UnknownGroup,
        Noun::Session => K::UnknownSession,
        Noun::Subsystem => K::NotFound,
    };
    match failure {
        Failure::Controller(e) => match e.kind() {
            CtlKind::NotFound => not_found,
            CtlKind::AlreadyExists => K::AlreadyExists,
            CtlKind::InvalidRequest => K::BadRequest,
            CtlKind::OutOfRange => K::BadExtent,
            CtlKind::Offline | CtlKind::Fenced => K::Unavailable,
            CtlKind::Busy => K::Busy,
            CtlKind::State => K::WrongState,
            CtlKind::Limit => K::Limit,
            CtlKind::NoSpace => K::NoSpace,
            CtlKind::Io | CtlKind::Corrupt => K::Internal,
        },
        Failure::Rm(e) => {
            use resource_manager::{PortError, RejectKind, RmError as R};
            match e {
                R::InvalidSpec { .. } => K::BadRequest,
                R::DuplicateSession { .. } => K::AlreadyExists,
                R::UnknownSession { .. } => K::UnknownSession,
                R::AmbiguousSession { .. } => K::WrongState,
                R::UnknownSubsystem { .. } => K::NotFound,
                R::DuplicateSubsystem { .. } => K::Internal,
                R::SessionTerminated { .. } | R::CopyIncomplete { .. } => K::WrongState,
                R::PhysicalSessionGone { .. } | R::SessionCompleted { .. } => K::WrongState,
                R::Incomplete { .. } | R::Owed { .. } | R::FreezeExpired { .. } => K::Unavailable,
                R::Port { source, .. } => match source {
                    PortError::Limit { .. } => K::Limit,
                    PortError::UnknownVolume { .. } => K::UnknownVolume,
                    PortError::Rejected { kind, .. } => match kind {
                        RejectKind::Invalid => K::BadRequest,
                        RejectKind::Busy => K::Busy,
                        // At the port, the named objects are volumes.
                        RejectKind::NotFound => K::UnknownVolume,
                        RejectKind::State | RejectKind::Other => K::WrongState,
                    },
                    PortError::Gone { .. } => K::WrongState,
                    PortError::Unreachable { .. }
                    | PortError::Misconfigured { .. }
                    | PortError::Owed { .. } => K::Unavailable,
                    PortError::Failed { .. } | PortError::Crashed => K::Internal,
                },
            }
        }
    }
}

/// An error answer of the control API.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// Kind (decides status and `kind`).
    pub kind: ApiErrorKind,
    /// What was wrong, one line.
    pub message: String,
}

impl ApiError {
    /// An object created whose name `error` (from [`crate::names::Names::set`])
    /// could not be saved: `no_space` when the filesystem is full, else
    /// `internal`; `message` says what is left.
    pub fn name_not_saved(error: &str, message: String) -> Self {
        let kind = if crate::names::Names::is_no_space(error) {
            ApiErrorKind::NoSpace
        } else {
            ApiErrorKind::Internal
        };
        ApiError::new(kind, message)
    }

    /// An error of `kind`.
    pub fn new(kind: ApiErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }
    /// A malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ApiErrorKind::BadRequest, message)
    }
    /// A controller error on a request about `noun`.
    pub fn controller(e: ControllerError, noun: Noun) -> Self {
        Self::new(classify(Failure::Controller(&e), noun), e.full_message())
    }
    /// A resource-manager error on a request about `noun`.
    pub fn rm(e: resource_manager::RmError, noun: Noun) -> Self {
        let mut message = e.to_string();
        // QA: a request refused because a peer is down said only
        // "SS03: read table: unreachable"; say what still works.
        if let resource_manager::RmError::Port {
            subsystem,
            source: resource_manager::PortError::Unreachable { .. },
            ..
        } = &e
        {
            message.push_str(&format!(
                " (peer {subsystem} does not answer: events (`event ...`) still run over the \
                 subsystems that answer; a peer that will not come back is left out by booting \
                 this daemon again without its --peer)"
            ));
        }
        Self::new(classify(Failure::Rm(&e), noun), message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (kind, status) = self.kind.wire();
        if status.is_server_error() {
            tracing::warn!(kind, error = %self.message, "control API request failed");
        } else {
            tracing::debug!(kind, error = %self.message, "control API request refused");
        }
        (
            status,
            Json(ErrorBody {
                error: self.message,
                kind: kind.to_string(),
            }),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resource_manager::{PortError, RejectKind, RmError};

    fn port_rejection(kind: RejectKind) -> ApiErrorKind {
        let e = RmError::Port {
            subsystem: "SS01".into(),
            op: "establish",
            source: PortError::Rejected {
                kind,
                reason: "session pair FB03 -> T3: size mismatch".into(),
            },
        };
        classify(Failure::Rm(&e), Noun::Session)
    }

    #[test]
    fn port_rejections_keep_their_kind() {
        assert_eq!(
            port_rejection(RejectKind::Invalid),
            ApiErrorKind::BadRequest
        );
        assert_eq!(port_rejection(RejectKind::Invalid).wire().0, "bad_request");
        assert_eq!(port_rejection(RejectKind::Busy).wire().0, "busy");
        assert_eq!(
            port_rejection(RejectKind::NotFound).wire().0,
            "unknown_volume"
        );
        assert_eq!(port_rejection(RejectKind::State).wire().0, "wrong_state");
        assert_eq!(port_rejection(RejectKind::Other).wire().0, "wrong_state");
    }

    #[test]
    fn every_kind_has_the_client_crates_name_and_its_status() {
        use ApiErrorKind as K;
        let all = [
            K::UnknownVolume,
            K::UnknownMap,
            K::UnknownGroup,
            K::UnknownSession,
            K::BadExtent,
            K::WrongState,
            K::AlreadyExists,
            K::Busy,
            K::Limit,
            K::BadRequest,
            K::NotFound,
            K::NoSpace,
            K::Internal,
            K::Unavailable,
            K::Unauthorized,
            K::Forbidden,
            K::UnsupportedMediaType,
            K::TooLarge,
        ];
        // The client knows exactly the kinds the server sends.
        assert_eq!(all.len(), ClientKind::all().count());
        for k in all {
            let (name, status) = k.wire();
            assert!(k.client_kind().known_name().is_some(), "{k:?}");
            assert_eq!(ClientKind::parse(name), k.client_kind(), "{name}");
            assert!(status.is_client_error() || status.is_server_error());
        }
        assert_eq!(K::UnknownMap.wire(), ("unknown_map", StatusCode::NOT_FOUND));
        assert_eq!(K::NoSpace.wire().1, StatusCode::INSUFFICIENT_STORAGE);
    }
}
