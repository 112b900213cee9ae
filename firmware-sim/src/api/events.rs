//! `/events/{ipl,rm-restart,abend,reset}`: subsystem and resource-manager
//! events; each answers with the decisions taken, per session.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};

use super::model::{EventReport, EventRequest};
use super::{body, ApiError, ApiErrorKind, AppState, Noun};
use crate::node::ipl_notes;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/events/{event}", post(event))
}

async fn event(
    State(s): State<AppState>,
    Path(event): Path<String>,
    req: Result<Json<EventRequest>, JsonRejection>,
) -> Result<Json<EventReport>, ApiError> {
    let req = body(req)?;
    s.blocking(move |n| {
        let (name, notes) = match event.as_str() {
            "ipl" => {
                let report = n
                    .ipl()
                    .map_err(|e| ApiError::controller(e, Noun::Subsystem))?;
                let maps = n.with(|sub| sub.maps().len());
                let notes = ipl_notes(&report, maps);
                for line in &notes {
                    tracing::info!("{line}");
                }
                ("ipl".to_string(), notes)
            }
            "reset" => {
                let report = n
                    .with(|sub| sub.reset(req.lose_volatile))
                    .map_err(|e| ApiError::controller(e, Noun::Subsystem))?;
                let maps = n.with(|sub| sub.maps().len());
                let mut notes = vec![format!(
                    "controller warmstart ({})",
                    if req.lose_volatile {
                        "volatile state lost"
                    } else {
                        "volatile state hardened first"
                    }
                )];
                notes.extend(ipl_notes(&report, maps).into_iter().skip(1));
                ("reset".to_string(), notes)
            }
            "rm-restart" | "abend" => {
                if event == "abend" && req.program.as_deref().is_none_or(str::is_empty) {
                    return Err(ApiError::bad_request("abend needs a program name"));
                }
                return Err(ApiError::new(
                    ApiErrorKind::Unavailable,
                    "the resource manager is not attached in this build",
                ));
            }
            other => {
                return Err(ApiError::new(
                    ApiErrorKind::NotFound,
                    format!("unknown event `{other}` (ipl, rm-restart, abend, reset)"),
                ))
            }
        };
        Ok(Json(EventReport {
            event: name,
            decisions: Vec::new(),
            orphans: Vec::new(),
            notes,
        }))
    })
    .await
}
