//! `/sessions`: backup copy sessions through the resource manager (start,
//! release, complete, terminate, list). Extents arrive as `VOL:CCHH-CCHH[,...]` and are parsed
//! with each volume's own geometry.

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use controller::Subsystem;
use geometry::{ExtentSet, Geometry};
use resource_manager::{ResourceManager, SessionExtent, SessionId, SessionSpec};

use super::model::ErrorBody;
use super::model::{SessionInfo, SessionPart, SessionVolume, StartSession, TerminateSession};
use super::{body, ApiError, ApiErrorKind, AppState, Noun};
use crate::node::Node;

/// Program recorded for sessions started without `--program`.
pub const DEFAULT_PROGRAM: &str = "operator";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sessions", get(list).post(start))
        .route("/sessions/{id}/complete", post(complete))
        .route("/sessions/{id}/terminate", post(terminate))
        .route("/sessions/{id}/release", post(release))
}

/// A volume as a session names it: `VOL` (this subsystem) or `SS02/VOL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifiedVolume {
    /// The subsystem holding it.
    pub subsystem: String,
    /// The volume.
    pub volume: String,
    /// Written as `SUBSYSTEM/VOL` (messages repeat it as the user wrote it).
    pub qualified: bool,
}

impl QualifiedVolume {
    /// Parses `VOL` or `SUBSYSTEM/VOL` (`local` when unqualified).
    pub fn parse(text: &str, local: &str) -> QualifiedVolume {
        match text.split_once('/') {
            Some((ss, vol)) => QualifiedVolume {
                subsystem: ss.trim().to_string(),
                volume: vol.trim().to_string(),
                qualified: true,
            },
            None => QualifiedVolume {
                subsystem: local.to_string(),
                volume: text.trim().to_string(),
                qualified: false,
            },
        }
    }
}

impl std::fmt::Display for QualifiedVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.qualified {
            write!(f, "{}/{}", self.subsystem, self.volume)
        } else {
            f.write_str(&self.volume)
        }
    }
}

/// The geometry of `v`: from this subsystem, or asked of the peer that holds it.
fn geometry_of(node: &Node, sub: &Subsystem, v: &QualifiedVolume) -> Result<Geometry, ApiError> {
    if v.subsystem == sub.id() {
        return sub
            .geometry(&v.volume)
            .map_err(|e| ApiError::controller(e, Noun::Volume));
    }
    let peer = node.peer(&v.subsystem).ok_or_else(|| {
        ApiError::new(
            ApiErrorKind::NotFound,
            format!(
                "unknown subsystem {} in {v}: this daemon is {} and its peers are [{}] \
                 (boot --peer ID=HOST:PORT)",
                v.subsystem,
                sub.id(),
                node.peer_ids().join(", ")
            ),
        )
    })?;
    if let Some(debt) = node.owes_event_to(&v.subsystem) {
        return Err(ApiError::new(
            ApiErrorKind::Unavailable,
            format!(
                "volume {v}: {} is {}; the daemon pays it once {} answers (GET /health lists \
                 what is owed)",
                v.subsystem,
                resource_manager::PortError::Owed { debt },
                v.subsystem
            ),
        ));
    }
    let model = peer.volume_model(&v.volume).map_err(|e| {
        let kind = match e {
            resource_manager::PortError::UnknownVolume { .. } => ApiErrorKind::UnknownVolume,
            _ => ApiErrorKind::Unavailable,
        };
        ApiError::new(kind, format!("volume {v}: {e}"))
    })?;
    Geometry::new(model).map_err(|e| ApiError::bad_request(format!("volume {v}: {e}")))
}

/// Parses `VOL:RANGE[,RANGE|VOL:RANGE...]` (a volume may be `SS02/VOL`, a
/// peer's) into extent sets per volume, in order of first appearance; each
/// range is read in its own volume's geometry.
pub fn parse_session_extents(
    node: &Node,
    sub: &Subsystem,
    text: &str,
) -> Result<Vec<(QualifiedVolume, ExtentSet)>, ApiError> {
    let mut out: Vec<(QualifiedVolume, ExtentSet)> = Vec::new();
    let mut current: Option<QualifiedVolume> = None;
    for item in text.split(',').map(str::trim) {
        let range = match item.split_once(':') {
            Some((vol, range)) => {
                current = Some(QualifiedVolume::parse(vol, sub.id()));
                range
            }
            None => item,
        };
        let Some(vol) = current.clone() else {
            return Err(ApiError::new(
                ApiErrorKind::BadExtent,
                format!("extent `{item}` names no volume (expected VOL:FIRST-LAST)"),
            ));
        };
        let g = geometry_of(node, sub, &vol)?;
        let extent = g.parse_extent(range).map_err(|e| {
            ApiError::new(
                ApiErrorKind::BadExtent,
                format!("bad extent `{item}` for volume {vol}: {e}"),
            )
        })?;
        match out
            .iter_mut()
            .find(|(v, _)| v.subsystem == vol.subsystem && v.volume == vol.volume)
        {
            Some((_, set)) => set.insert(extent),
            None => {
                let mut set = ExtentSet::new();
                set.insert(extent);
                out.push((vol, set));
            }
        }
    }
    if out.is_empty() {
        return Err(ApiError::new(ApiErrorKind::BadExtent, "no extent given"));
    }
    Ok(out)
}

fn session_info(sub: &Subsystem, s: &resource_manager::SessionInfo) -> SessionInfo {
    let fmt = |vol: &str, set: &ExtentSet| {
        sub.geometry(vol)
            .map(|g| g.format_extent_set(set))
            .unwrap_or_else(|_| resource_manager::fmt_tracks(set))
    };
    let progress = s.progress().map(|p| {
        if p.total_tracks == 0 {
            100.0
        } else {
            (p.copied_tracks as f64 * 100.0 / p.total_tracks as f64 * 10.0).floor() / 10.0
        }
    });
    SessionInfo {
        id: s.id.to_string(),
        program: s.program.clone(),
        host: s.host.clone(),
        state: s.state.name().to_string(),
        reason: s.state.reason().map(|r| r.to_string()),
        logically_complete: s.logically_complete,
        parts: s
            .parts
            .iter()
            .map(|p| SessionPart {
                subsystem: p.subsystem.clone(),
                phys: p.phys.get(),
                volumes: p
                    .volumes
                    .iter()
                    .map(|(v, set)| SessionVolume {
                        volume: v.clone(),
                        extents: fmt(v, set),
                    })
                    .collect(),
                copied_tracks: p.progress.map(|x| x.copied_tracks),
                total_tracks: p.progress.map(|x| x.total_tracks),
                broken: p.broken.clone(),
                suspended: p.suspended,
            })
            .collect(),
        progress_percent: progress,
    }
}

/// A session id as the subsystems take it (they name files and physical
/// sessions after it): checked here so the message gives the real rule.
fn session_id(id: &str) -> Result<SessionId, ApiError> {
    controller::check_id("session id", id).map_err(ApiError::bad_request)?;
    SessionId::new(id).map_err(|e| ApiError::bad_request(format!("bad session id `{id}`: {e}")))
}

fn one(
    rm: &resource_manager::ResourceManager,
    sub: &Subsystem,
    id: &SessionId,
) -> Result<SessionInfo, ApiError> {
    let s = rm
        .session(id)
        .map_err(|e| ApiError::rm(e, Noun::Session))?
        .ok_or_else(|| {
            ApiError::new(
                ApiErrorKind::UnknownSession,
                format!("unknown session {id}"),
            )
        })?;
    Ok(session_info(sub, &s))
}

#[utoipa::path(
    get,
    operation_id = "sessions",
    path = "/sessions",
    tag = "sessions",
    summary = "List backup copy sessions",
    params(("local" = Option<bool>, Query, description = "true: from this subsystem's own activity tables alone, asking no peer (a spanning session then shows only its parts here, and its state as these rows decide it; for use while a peer does not answer)")),
    responses((status = 200, description = "Every session", body = Vec<SessionInfo>), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<SessionInfo>>, ApiError> {
    s.blocking(move |n| {
        let list = |rm: &ResourceManager, sub: &Subsystem| {
            let all = rm
                .list_sessions()
                .map_err(|e| ApiError::rm(e, Noun::Session))?;
            Ok(Json(all.iter().map(|x| session_info(sub, x)).collect()))
        };
        if q.local.unwrap_or(false) {
            n.with_local_rm(list)
                .map_err(|e| ApiError::rm(e, Noun::Session))?
        } else {
            n.with_rm(list)
        }
    })
    .await
}

/// `GET /sessions` query.
#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    local: Option<bool>,
}

#[utoipa::path(
    post,
    operation_id = "start_session",
    path = "/sessions",
    tag = "sessions",
    summary = "Start a backup copy session protecting source extents",
    request_body = StartSession,
    responses((status = 200, description = "The new session", body = SessionInfo), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn start(
    State(s): State<AppState>,
    req: Result<Json<StartSession>, JsonRejection>,
) -> Result<Json<SessionInfo>, ApiError> {
    let req = body(req)?;
    let id = session_id(&req.id)?;
    if let Some(h) = &req.host {
        controller::check_id("host id", h).map_err(ApiError::bad_request)?;
    }
    s.blocking(move |n| {
        n.with_rm(|rm, sub| {
            // Refused before any peer is asked for a volume's geometry (QA:
            // with the peer hung, a retry waited out the timeout instead).
            let host = req.host.clone().unwrap_or_else(|| n.host().to_string());
            if let Some(e) = rm.refuse_retry(&id, &host) {
                return Err(ApiError::rm(e, Noun::Session));
            }
            let sources = parse_session_extents(n, sub, &req.extent)?;
            let targets: Vec<QualifiedVolume> = req
                .target
                .split(',')
                .map(|t| QualifiedVolume::parse(t, sub.id()))
                .collect();
            if targets.len() != sources.len() {
                let names: Vec<String> = sources.iter().map(|(v, _)| v.to_string()).collect();
                let got: Vec<String> = targets.iter().map(|v| v.to_string()).collect();
                return Err(ApiError::bad_request(format!(
                    "{} source volume(s) ({}) need {} target(s), one per source in order \
                     (--target A,B,...); got {}: {}",
                    sources.len(),
                    names.join(", "),
                    sources.len(),
                    targets.len(),
                    got.join(", ")
                )));
            }
            let mut extents = Vec::new();
            for ((vol, set), target) in sources.into_iter().zip(targets) {
                if target.subsystem != vol.subsystem {
                    return Err(ApiError::bad_request(format!(
                        "source {vol} and target {target} are on different subsystems; a \
                         target must be on its source's subsystem"
                    )));
                }
                geometry_of(n, sub, &target)?;
                extents.push(SessionExtent {
                    subsystem: vol.subsystem,
                    volume: vol.volume,
                    extents: set,
                    target: target.volume,
                });
            }
            let spec = SessionSpec {
                id: id.clone(),
                program: req
                    .program
                    .clone()
                    .unwrap_or_else(|| DEFAULT_PROGRAM.into()),
                host: req.host.clone(),
                copy_rate: req.copy_rate,
                extents,
            };
            let phys: BTreeMap<_, _> = rm
                .start_session(&spec)
                .map_err(|e| ApiError::rm(e, Noun::Session))?;
            tracing::info!(session = %id, physical = ?phys, "session started");
            one(rm, sub, &id)
        })
    })
    .await
    .map(Json)
}

/// Whether every map of session `id` on this subsystem copies at rate 0
/// (and it has one here).
fn copies_at_rate_0(sub: &controller::Subsystem, id: &str) -> bool {
    let mine: Vec<u32> = crate::node::session_maps(sub)
        .into_iter()
        .filter(|(_, s)| s == id)
        .map(|(m, _)| m)
        .collect();
    let maps = sub.maps();
    !mine.is_empty()
        && mine.iter().all(|m| {
            maps.iter()
                .find(|v| v.id == *m)
                .is_some_and(|v| v.copy_rate == 0)
        })
}

#[utoipa::path(
    post,
    operation_id = "complete_session",
    path = "/sessions/{id}/complete",
    tag = "sessions",
    summary = "Complete a session whose copy has finished",
    params(("id" = String, Path, description = "Logical session id")),
    responses((status = 200, description = "The session, completed", body = SessionInfo), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn complete(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SessionInfo>, ApiError> {
    let id = session_id(&id)?;
    s.blocking(move |n| {
        n.with_rm(|rm, sub| {
            rm.complete_session(&id).map_err(|e| {
                let copying = matches!(e, resource_manager::RmError::CopyIncomplete { .. });
                let mut a = ApiError::rm(e, Noun::Session);
                if copying && copies_at_rate_0(sub, id.as_str()) {
                    a.message.push_str(&format!(
                        "; it copies at rate 0 (only tracks that host writes touch are \
                         copied), so the copy may never finish: end it with \
                         `firmware-sim session terminate {id}`, or start the next one with \
                         --copy-rate"
                    ));
                } else if copying {
                    a.message.push_str(&format!(
                        "; wait for it with `firmware-sim session wait {id} --complete`"
                    ));
                }
                a
            })?;
            tracing::info!(session = %id, "session completed");
            one(rm, sub, &id)
        })
    })
    .await
    .map(Json)
}

#[utoipa::path(
    post,
    operation_id = "release_session",
    path = "/sessions/{id}/release",
    tag = "sessions",
    summary = "Mark a session logically complete (the copy goes on)",
    params(("id" = String, Path, description = "Logical session id")),
    responses((status = 200, description = "The session", body = SessionInfo), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn release(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SessionInfo>, ApiError> {
    let id = session_id(&id)?;
    s.blocking(move |n| {
        n.with_rm(|rm, sub| {
            rm.release_session(&id)
                .map_err(|e| ApiError::rm(e, Noun::Session))?;
            one(rm, sub, &id)
        })
    })
    .await
    .map(Json)
}

/// Longest `reason` a terminate request may give.
const MAX_REASON_BYTES: usize = 256;

#[utoipa::path(
    post,
    operation_id = "terminate_session",
    path = "/sessions/{id}/terminate",
    tag = "sessions",
    summary = "Terminate a session now",
    params(("id" = String, Path, description = "Logical session id")),
    request_body = TerminateSession,
    responses((status = 200, description = "The session, terminated", body = SessionInfo), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn terminate(
    State(s): State<AppState>,
    Path(id): Path<String>,
    req: Result<Json<TerminateSession>, JsonRejection>,
) -> Result<Json<SessionInfo>, ApiError> {
    let id = session_id(&id)?;
    let why = body(req)?
        .reason
        .unwrap_or_else(|| "operator request".into());
    // Logged with the rows: bounded, so one request cannot write megabytes
    // of log (QA).
    if why.len() > MAX_REASON_BYTES {
        return Err(ApiError::bad_request(format!(
            "reason is {} bytes long; at most {MAX_REASON_BYTES}",
            why.len()
        )));
    }
    s.blocking(move |n| {
        n.with_rm(|rm, sub| {
            // A terminal row anywhere decides a session, so a peer that does
            // not answer must not keep an operator from ending one (QA: a
            // session on this subsystem alone could not be terminated while
            // an unrelated peer hung). Its rows are settled by the next
            // event that reaches it.
            let (s, left_out) = rm
                .over_answering("session terminate", |rm| {
                    rm.terminate_session(&id, &why)?;
                    rm.session(&id)
                })
                .map_err(|e| ApiError::rm(e, Noun::Session))?;
            for line in &left_out {
                tracing::warn!(session = %id, "terminate: {line}");
            }
            let s = s.ok_or_else(|| {
                ApiError::new(
                    ApiErrorKind::UnknownSession,
                    format!("unknown session {id}"),
                )
            })?;
            Ok(session_info(sub, &s))
        })
    })
    .await
    .map(Json)
}
