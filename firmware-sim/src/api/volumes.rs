//! `/volumes`: list, show, create, delete.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use geometry::Geometry;

use super::model::VolumeInfo;
use super::{ApiError, ApiErrorKind, AppState};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/{id}", get(show))
}

fn info(s: &AppState, v: &controller::VolumeConfig) -> VolumeInfo {
    let g = Geometry::new(v.model).ok();
    VolumeInfo {
        id: v.id.clone(),
        model: v.model.to_string(),
        size_bytes: g.map(|g| g.size_bytes()).unwrap_or(0),
        tracks: g.map(|g| g.tracks()).unwrap_or(0),
        track_size_bytes: g.map(|g| g.track_size_bytes()).unwrap_or(0),
        ckd: g.map(|g| g.is_ckd()).unwrap_or(false),
        mappings: Vec::new(),
        nbd_uri: s.nbd_uri(&v.id),
    }
}

async fn list(State(s): State<AppState>) -> Json<Vec<VolumeInfo>> {
    Json(s.inner.config.volumes.iter().map(|v| info(&s, v)).collect())
}

async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<VolumeInfo>, ApiError> {
    s.inner
        .config
        .volumes
        .iter()
        .find(|v| v.id == id)
        .map(|v| Json(info(&s, v)))
        .ok_or_else(|| ApiError::new(ApiErrorKind::UnknownVolume, format!("unknown volume {id}")))
}
