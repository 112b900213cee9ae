//! `/tables`: activity-table entries, decoded (`?volume=VOL` for one
//! volume's table; default the subsystem table).

use activity_table::{ActivityEntry, EntryStatus};
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use controller::Subsystem;
use serde::Deserialize;

use super::model::ErrorBody;
use super::model::TableEntryInfo;
use super::{ApiError, AppState, Noun};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/tables", get(show))
}

#[derive(Deserialize)]
struct TableQuery {
    volume: Option<String>,
}

/// `initiated`/`completed`/`terminated`/`resumed`/`logically-complete` and the termination reason.
pub fn status_parts(s: &EntryStatus) -> (String, Option<String>) {
    match s {
        EntryStatus::Initiated => ("initiated".into(), None),
        EntryStatus::Completed => ("completed".into(), None),
        EntryStatus::Terminated { reason } => ("terminated".into(), Some(reason.to_string())),
        EntryStatus::Resumed => ("resumed".into(), None),
        EntryStatus::LogicallyComplete => ("logically-complete".into(), None),
    }
}

fn entry_info(sub: &Subsystem, table: &str, e: &ActivityEntry) -> TableEntryInfo {
    let extents = match &e.volume {
        Some(v) => sub
            .geometry(v)
            .map(|g| g.format_extent_set(&e.extents))
            .unwrap_or_else(|_| resource_manager::fmt_tracks(&e.extents)),
        None => resource_manager::fmt_tracks(&e.extents),
    };
    let (status, reason) = status_parts(&e.status);
    TableEntryInfo {
        table: table.to_string(),
        seq: e.seq,
        session_id: e.session_id.to_string(),
        phys_session_id: e.phys_session_id.get(),
        subsystem: e.subsystem.clone(),
        volume: e.volume.clone().unwrap_or_else(|| "-".into()),
        extents,
        status,
        reason,
        program: e.program.clone(),
        host: e.host.clone(),
        time_unix_ms: e.time_unix_ms,
    }
}

#[utoipa::path(
    get,
    operation_id = "table",
    path = "/tables",
    tag = "tables",
    summary = "Activity-table entries, decoded (default: the subsystem table)",
    params(("volume" = Option<String>, Query, description = "This volume's table instead")),
    responses((status = 200, description = "The entries", body = Vec<TableEntryInfo>), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn show(
    State(s): State<AppState>,
    Query(q): Query<TableQuery>,
) -> Result<Json<Vec<TableEntryInfo>>, ApiError> {
    s.blocking(move |n| {
        n.with(|sub| {
            let (table, entries) = match &q.volume {
                Some(v) => (
                    v.clone(),
                    sub.volume_activity_entries(v)
                        .map_err(|e| ApiError::controller(e, Noun::Volume))?,
                ),
                None => (
                    sub.id().to_string(),
                    sub.activity_entries()
                        .map_err(|e| ApiError::controller(e, Noun::Subsystem))?,
                ),
            };
            Ok(Json(
                entries.iter().map(|e| entry_info(sub, &table, e)).collect(),
            ))
        })
    })
    .await
}
