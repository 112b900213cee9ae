//! `/volumes`: list, show, create, delete.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use controller::VolumeView;
use geometry::DeviceModel;

use super::model::ErrorBody;
use super::model::{ActionDone, CreateVolume, VolumeInfo};
use super::{body, ApiError, AppState, Noun};
use crate::node::Node;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/volumes", get(list).post(create))
        .route("/volumes/{id}", get(show).delete(delete))
}

/// The API view of a controller volume.
pub fn info(node: &Node, v: &VolumeView) -> VolumeInfo {
    let mut mappings = v.source_of.clone();
    mappings.extend(v.target_of);
    mappings.sort_unstable();
    mappings.dedup();
    VolumeInfo {
        id: v.id.clone(),
        model: v.model.clone(),
        size_bytes: v.size_bytes,
        tracks: v.tracks,
        track_size_bytes: v.track_size_bytes,
        ckd: v.model.starts_with("3390"),
        mappings,
        sessions: v.sessions.clone(),
        nbd_uri: node.nbd_uri(&v.id),
        online: v.online,
        offline_reason: v.offline_reason.clone(),
        allocated_bytes: v.allocated_tracks.saturating_mul(v.track_size_bytes),
        warning: None,
    }
}

#[utoipa::path(
    get,
    operation_id = "volumes",
    path = "/volumes",
    tag = "volumes",
    summary = "List volumes",
    responses((status = 200, description = "Every volume", body = Vec<VolumeInfo>), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn list(State(s): State<AppState>) -> Result<Json<Vec<VolumeInfo>>, ApiError> {
    s.blocking(|n| {
        let vols = n.with(|sub| sub.volumes());
        Ok(Json(vols.iter().map(|v| info(n, v)).collect()))
    })
    .await
}

#[utoipa::path(
    get,
    operation_id = "volume",
    path = "/volumes/{id}",
    tag = "volumes",
    summary = "Show one volume",
    params(("id" = String, Path, description = "Volume id")),
    responses((status = 200, description = "The volume", body = VolumeInfo), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<VolumeInfo>, ApiError> {
    s.blocking(move |n| {
        let v = n
            .with(|sub| sub.volume_view(&id))
            .map_err(|e| ApiError::controller(e, Noun::Volume))?;
        Ok(Json(info(n, &v)))
    })
    .await
}

#[utoipa::path(
    post,
    operation_id = "create_volume",
    path = "/volumes",
    tag = "volumes",
    summary = "Create a volume",
    request_body = CreateVolume,
    responses((status = 200, description = "The new volume", body = VolumeInfo), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn create(
    State(s): State<AppState>,
    req: Result<Json<CreateVolume>, JsonRejection>,
) -> Result<Json<VolumeInfo>, ApiError> {
    let req = body(req)?;
    let model: DeviceModel = req
        .model
        .parse()
        .map_err(|e| ApiError::bad_request(format!("bad model `{}`: {e}", req.model)))?;
    s.blocking(move |n| {
        // With the delete of the same id: the answer describes the volume
        // made (QA: a concurrent delete made it 404 'unknown volume').
        let _control = n.control();
        let v = n
            .with(|sub| sub.create_volume(&req.id, model))
            .map_err(|e| ApiError::controller(e, Noun::Volume))?;
        tracing::info!(volume = %v.id, model = %v.model, "volume created");
        let mut answer = info(n, &v);
        // QA: `fb:15T` on a disk with 30 GiB free was created silently;
        // the overcommit warning came only at the next boot.
        answer.warning = n.with(crate::daemon::config::overcommit_of);
        if let Some(w) = &answer.warning {
            tracing::warn!(volume = %v.id, "{w}");
        }
        Ok(Json(answer))
    })
    .await
}

#[utoipa::path(
    delete,
    operation_id = "delete_volume",
    path = "/volumes/{id}",
    tag = "volumes",
    summary = "Delete a volume (refused while in a mapping or session)",
    params(("id" = String, Path, description = "Volume id")),
    responses((status = 200, description = "Deleted", body = ActionDone), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ActionDone>, ApiError> {
    s.blocking(move |n| {
        let _control = n.control();
        n.with(|sub| sub.delete_volume(&id))
            .map_err(|e| ApiError::controller(e, Noun::Volume))?;
        tracing::info!(volume = %id, "volume deleted");
        // QA: 300 create/read/delete cycles left 3,000 series of volumes
        // that no longer exist in /metrics.
        n.stats.forget(&id);
        Ok(Json(ActionDone {
            message: format!("deleted volume {id}"),
        }))
    })
    .await
}
