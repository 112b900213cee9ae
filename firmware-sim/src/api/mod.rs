//! The control API: JSON over HTTP (axum), one resource per noun
//! (`/volumes`, `/mappings`, `/cascades`, `/groups`, `/sessions`, `/tables`,
//! `/events`) plus `/health`, `/metrics` and `/openapi.json` (the OpenAPI 3
//! document of all of them, [`openapi`]). Actions are `POST`s on the
//! resource (`POST /mappings/{id}/start`). Errors are `{error, kind}` with a
//! proper status, built by [`error::ApiError`].
//!
//! Every handler does its subsystem work on the blocking pool through
//! [`AppState::blocking`] (controller calls block, e.g. while a topology
//! change drains host I/O), inside [`Node::with`] so an IPL never races it.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::http::{Method, Uri};
use axum::{Json, Router};

pub mod error;
mod events;
#[cfg(test)]
mod fuzz_tests;
mod groups;
pub mod guard;
mod mappings;
pub mod openapi;
/// The wire types, defined once in the client crate (server and clients
/// share them).
pub use firmware_sim_client::model;
pub mod serve;
mod sessions;
mod status;
mod tables;
pub mod tls;
mod volumes;

pub use error::{ApiError, ApiErrorKind, Noun};

use crate::node::Node;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The running subsystem.
    pub node: Arc<Node>,
}

impl AppState {
    /// Runs `f` on the blocking pool with the node.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Node) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || f(&node))
            .await
            .map_err(|e| {
                ApiError::new(ApiErrorKind::Internal, format!("request task failed: {e}"))
            })?
    }
}

/// The router of every route, behind the [`guard`].
pub fn router(state: AppState, guard: guard::Guard) -> Router {
    Router::new()
        .merge(status::routes())
        .merge(openapi::routes())
        .merge(volumes::routes())
        .merge(mappings::routes())
        .merge(groups::routes())
        .merge(events::routes())
        .merge(tables::routes())
        .merge(sessions::routes())
        .merge(crate::peer::routes())
        .fallback(fallback)
        .method_not_allowed_fallback(fallback)
        .with_state(state)
        .layer(axum::middleware::map_response(json_rejections))
        .layer(axum::middleware::from_fn_with_state(guard, guard::check))
        .layer(axum::extract::DefaultBodyLimit::max(
            guard::BODY_LIMIT_BYTES,
        ))
}

/// axum's own rejections of a path or query it cannot parse (`/port/sessions/abc`,
/// `?force=maybe`) are plain-text 400s; every refusal of the API is `{error, kind}`.
async fn json_rejections(resp: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let plain = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    let status = resp.status();
    // 400 only: what axum's path and query extractors answer (JSON bodies
    // are checked by the handlers themselves).
    if !plain || status != axum::http::StatusCode::BAD_REQUEST {
        return resp;
    }
    let text = axum::body::to_bytes(resp.into_body(), 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    ApiError::bad_request(if text.is_empty() {
        "malformed request".to_string()
    } else {
        text
    })
    .into_response()
}

async fn fallback(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ApiErrorKind::NotFound,
        format!("no API route {method} {}", uri.path()),
    )
}

/// How many ids a create with a chosen id (`map create --id`, `group
/// create ID`) skips at most to reach it.
const MAX_SKIP: u32 = 64;

/// Refuses a chosen id for a new map or group before anything is created
/// (QA: a refused one used up an id each time): one the subsystem's upward
/// counter has passed (`wanted < next`), or one more than [`MAX_SKIP`]
/// ahead of it. `what` names the request in messages (`--id 7`, `group id
/// 7`), `noun` the kind of id, and `hint` ends the first message.
fn check_chosen_id(
    what: &str,
    noun: &str,
    wanted: u32,
    next: u32,
    hint: &str,
) -> Result<(), ApiError> {
    if wanted < next {
        return Err(ApiError::bad_request(format!(
            "{what} cannot be chosen: the subsystem assigns {noun} ids upward and the lowest \
             it can give now is {next} (use that or a higher id{hint})"
        )));
    }
    if wanted - next > MAX_SKIP {
        return Err(ApiError::bad_request(format!(
            "{what} is too far ahead: the next {noun} id is {next} and at most {MAX_SKIP} ids \
             are skipped to reach a chosen one"
        )));
    }
    Ok(())
}

/// An optional JSON body: empty is `T::default()`, anything else must parse.
pub fn optional_body<T: Default + serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("bad request body: {e}")))
}

/// Unwraps a JSON body, turning axum's rejection into an [`ApiError`].
pub fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v).map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ApiErrorKind::TooLarge,
                format!(
                    "request body over the limit of {} bytes",
                    guard::BODY_LIMIT_BYTES
                ),
            )
        } else {
            ApiError::bad_request(format!("bad request body: {}", e.body_text()))
        }
    })
}
