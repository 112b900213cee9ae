//! [`ApiError`]: the control API's one error type. Controller and resource
//! manager failures become `ApiError`s through [`classify`], the single place
//! that decides the machine-readable `kind` (and so the HTTP status) of the
//! JSON body `{"error": ..., "kind": ...}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use controller::{ControllerError, ErrorKind as CtlKind};

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
    /// The `kind` string and HTTP status of this kind.
    pub fn wire(self) -> (&'static str, StatusCode) {
        use ApiErrorKind as K;
        match self {
            K::UnknownVolume => ("unknown_volume", StatusCode::NOT_FOUND),
            K::UnknownMap => ("unknown_map", StatusCode::NOT_FOUND),
            K::UnknownGroup => ("unknown_group", StatusCode::NOT_FOUND),
            K::UnknownSession => ("unknown_session", StatusCode::NOT_FOUND),
            K::BadExtent => ("bad_extent", StatusCode::BAD_REQUEST),
            K::WrongState => ("wrong_state", StatusCode::CONFLICT),
            K::AlreadyExists => ("already_exists", StatusCode::CONFLICT),
            K::Busy => ("busy", StatusCode::CONFLICT),
            K::Limit => ("limit", StatusCode::CONFLICT),
            K::BadRequest => ("bad_request", StatusCode::BAD_REQUEST),
            K::NotFound => ("not_found", StatusCode::NOT_FOUND),
            K::NoSpace => ("no_space", StatusCode::INSUFFICIENT_STORAGE),
            K::Internal => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
            K::Unavailable => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
            K::Unauthorized => ("unauthorized", StatusCode::UNAUTHORIZED),
            K::Forbidden => ("forbidden", StatusCode::FORBIDDEN),
            K::TooLarge => ("too_large", StatusCode::PAYLOAD_TOO_LARGE),
            K::UnsupportedMediaType => {
                ("unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE)
            }
        }
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
                R::UnknownSubsystem { .. } => K::NotFound,
                R::DuplicateSubsystem { .. } => K::Internal,
                R::SessionTerminated { .. } | R::CopyIncomplete { .. } => K::WrongState,
                R::PhysicalSessionGone { .. } | R::SessionCompleted { .. } => K::WrongState,
                R::Incomplete { .. } | R::FreezeExpired { .. } => K::Unavailable,
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
                    PortError::Unreachable { .. } => K::Unavailable,
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
        Self::new(classify(Failure::Rm(&e), noun), e.to_string())
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
}
