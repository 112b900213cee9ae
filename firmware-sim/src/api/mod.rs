//! The control API: JSON over HTTP (axum), one resource per noun
//! (`/volumes`, `/mappings`, `/cascades`, `/groups`, `/sessions`, `/tables`,
//! `/events`) plus `/health` and `/metrics`. Actions are `POST`s on the
//! resource (`POST /mappings/{id}/start`). Errors are `{error, kind}` with a
//! proper status, built by [`error::ApiError`].

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{Method, Uri};
use axum::routing::get;
use axum::{Json, Router};
use controller::SubsystemConfig;

pub mod error;
pub mod model;
mod volumes;

pub use error::{ApiError, ApiErrorKind};
use model::Health;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: SubsystemConfig,
    nbd_bases: Vec<String>,
    started: Instant,
}

impl AppState {
    /// State for a daemon serving `config`, whose NBD base URIs are `nbd_bases`.
    pub fn new(config: SubsystemConfig, nbd_bases: Vec<String>, started: Instant) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                config,
                nbd_bases,
                started,
            }),
        }
    }

    /// The NBD URI of `volume` on the first TCP listener.
    pub fn nbd_uri(&self, volume: &str) -> Option<String> {
        self.inner.nbd_bases.first().map(|b| format!("{b}{volume}"))
    }
}

/// The router of every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .merge(volumes::routes())
        .fallback(fallback)
        .with_state(state)
}

async fn health(State(s): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        subsystem: s.inner.config.id.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_s: s.inner.started.elapsed().as_secs(),
        volumes: s.inner.config.volumes.len(),
        nbd: s.inner.nbd_bases.clone(),
    })
}

async fn fallback(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ApiErrorKind::NotFound,
        format!("no API route {method} {}", uri.path()),
    )
}

/// Unwraps a JSON body, turning axum's rejection into an [`ApiError`].
pub fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::bad_request(format!("bad request body: {}", e.body_text())))
}
