//! `/events/{ipl,rm-restart,abend,reset}`: subsystem and resource-manager
//! events; each answers with what it did and the decisions taken, per session.
//! `GET /events`: the daemon's recent events (`crate::recent`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use resource_manager::{Decisions, Outcome};

use super::model::ErrorBody;
use super::model::{DecisionInfo, EventReport, EventRequest, OrphanInfo, RecentEvent};
use super::{body, ApiError, ApiErrorKind, AppState, Noun};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(recent))
        .route("/events/{event}", post(event))
}

#[utoipa::path(
    get,
    operation_id = "recent_events",
    path = "/events",
    tag = "events",
    summary = "Recent events",
    description = "The daemon's recent events, oldest first (at most 200, in memory): map state changes, completions, cleaning, deletions, suspensions, poisoned stores and IPLs.",
    responses((status = 200, description = "Recent events", body = [RecentEvent]))
)]
async fn recent(State(s): State<AppState>) -> Json<Vec<RecentEvent>> {
    Json(s.node.recent.list())
}

fn report(d: Decisions, notes: Vec<String>) -> EventReport {
    EventReport {
        event: d.event.to_string(),
        decisions: d
            .decisions
            .iter()
            .map(|x| {
                let (outcome, reason) = match x.outcome {
                    Outcome::Resumed => ("resumed", None),
                    Outcome::Terminated(r) => ("terminated", Some(r.to_string())),
                    Outcome::Untouched => ("untouched", None),
                };
                DecisionInfo {
                    session: x.session.to_string(),
                    host: x.host.clone(),
                    program: x.program.clone(),
                    outcome: outcome.into(),
                    reason,
                    acted: x.acted,
                    why: x.why.clone(),
                }
            })
            .collect(),
        orphans: d
            .orphans
            .iter()
            .map(|o| OrphanInfo {
                subsystem: o.subsystem.clone(),
                phys: o.phys.get(),
                owner: o.owner.to_string(),
            })
            .collect(),
        notes,
        problems: d.problems.clone(),
    }
}

#[utoipa::path(
    post,
    operation_id = "event",
    path = "/events/{event}",
    tag = "events",
    summary = "A subsystem event: ipl, rm-restart, abend or reset",
    params(("event" = String, Path, description = "ipl, rm-restart, abend or reset")),
    request_body = EventRequest,
    responses((status = 200, description = "What the event did, per session", body = EventReport), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn event(
    State(s): State<AppState>,
    Path(event): Path<String>,
    req: Result<Json<EventRequest>, JsonRejection>,
) -> Result<Json<EventReport>, ApiError> {
    let req = body(req)?;
    if let Some(h) = &req.host {
        controller::check_id("host id", h).map_err(ApiError::bad_request)?;
    }
    s.blocking(move |n| {
        let rm_err = |e| ApiError::rm(e, Noun::Session);
        let out = match event.as_str() {
            "ipl" if req.host.is_some() => {
                let host = req.host.as_deref().unwrap_or_default();
                let d = n
                    .recover("host IPL", |rm, _| rm.on_host_ipl(host))
                    .map_err(rm_err)?;
                report(d, vec![format!("IPL of host {host} alone (the subsystem kept running)")])
            }
            "ipl" => {
                let o = n.ipl().map_err(|e| ApiError::controller(e, Noun::Subsystem))?;
                report(o.recovered.map_err(rm_err)?, o.notes)
            }
            "rm-restart" => {
                let host = match &req.host {
                    Some(h) => h.clone(),
                    None => {
                        n.restart_rm().map_err(rm_err)?;
                        n.with_rm(|rm, _| rm.host())
                    }
                };
                let d = n
                    .recover("resource-manager restart", |rm, _| {
                        rm.on_host_rm_restart(&host)
                    })
                    .map_err(rm_err)?;
                report(d, vec![format!("resource manager of host {host} restarted (state rebuilt from the activity tables)")])
            }
            "abend" => {
                let program = req
                    .program
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| ApiError::bad_request("abend needs a program name"))?;
                let d = n
                    .recover("abend", |rm, _| match req.host.as_deref() {
                        Some(host) => rm.on_host_abend(host, program),
                        None => rm.on_abend(program),
                    })
                    .map_err(rm_err)?;
                report(d, Vec::new())
            }
            "reset" => {
                let r = n
                    .with(|sub| sub.reset(req.lose_volatile))
                    .map_err(|e| ApiError::controller(e, Noun::Subsystem))?;
                let mut notes = vec![format!(
                    "controller warmstart ({})",
                    if req.lose_volatile {
                        "volatile state lost"
                    } else {
                        "volatile state hardened first"
                    }
                )];
                notes.extend(
                    n.with(|sub| crate::node::restart_notes("reset", &r, sub))
                        .into_iter()
                        .skip(1),
                );
                let d = n
                    .recover("reset", |rm, sub| rm.on_reset(sub.id()))
                    .map_err(rm_err)?;
                report(d, notes)
            }
            other => {
                return Err(ApiError::new(
                    ApiErrorKind::NotFound,
                    format!("unknown event `{other}` (ipl, rm-restart, abend, reset)"),
                ))
            }
        };
        for line in &out.notes {
            tracing::info!(event = %out.event, "{line}");
        }
        for d in out.decisions.iter().filter(|d| d.acted) {
            tracing::info!(event = %out.event, session = %d.session, outcome = %d.outcome, why = %d.why, "session decision");
        }
        Ok(Json(out))
    })
    .await
}
