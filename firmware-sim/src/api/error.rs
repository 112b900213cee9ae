//! [`ApiError`]: the control API's one error type. Every failure a handler
//! can meet becomes an `ApiError` through [`classify`], the single place that
//! decides the HTTP status and the machine-readable `kind` of the JSON body
//! `{"error": ..., "kind": ...}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

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
    /// The request conflicts with existing mappings or sessions.
    Conflict,
    /// A limit was reached.
    Limit,
    /// The request body or a parameter is malformed.
    BadRequest,
    /// No such route.
    NotFound,
    /// The subsystem failed (I/O, metadata).
    Internal,
    /// The subsystem is not serving (shutting down, restarting).
    Unavailable,
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
            K::Conflict => ("conflict", StatusCode::CONFLICT),
            K::Limit => ("limit", StatusCode::TOO_MANY_REQUESTS),
            K::BadRequest => ("bad_request", StatusCode::BAD_REQUEST),
            K::NotFound => ("not_found", StatusCode::NOT_FOUND),
            K::Internal => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
            K::Unavailable => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
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
