//! `/groups`: consistency groups (create, list, start all members at one
//! instant, stop, delete, add and remove members).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use controller::{GroupId, MapId, Subsystem};

use super::mappings::map_now;
use super::model::ErrorBody;
use super::model::{
    ActionDone, CreateGroup, ForceFlag, GroupInfo, GroupMember, MapInfo, StartFlags,
};
use super::{
    body, check_chosen_id, optional_body, ApiError, ApiErrorKind, AppState, Noun, MAX_SKIP,
};
use crate::names::{Kind, Names};
use crate::node::session_maps;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/groups", get(list).post(create))
        .route("/groups/{id}", axum::routing::delete(delete))
        .route("/groups/{id}/start", post(start))
        .route("/groups/{id}/stop", post(stop))
        .route("/groups/{id}/maps", post(add_member))
        .route(
            "/groups/{id}/maps/{map}",
            axum::routing::delete(remove_member),
        )
}

/// A group given by id or by name.
fn parse_id(names: &Names, id: &str) -> Result<GroupId, ApiError> {
    names.resolve(Kind::Group, id).map(GroupId).ok_or_else(|| {
        ApiError::new(
            ApiErrorKind::UnknownGroup,
            format!("unknown group {id} (no group has that id or name; `group list` shows them)"),
        )
    })
}

#[utoipa::path(
    get,
    operation_id = "groups",
    path = "/groups",
    tag = "groups",
    summary = "List consistency groups",
    responses((status = 200, description = "Every group", body = Vec<GroupInfo>), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn list(State(s): State<AppState>) -> Result<Json<Vec<GroupInfo>>, ApiError> {
    s.blocking(|n| {
        let (gs, sessions) = n.with(|sub| (sub.groups(), session_maps(sub)));
        Ok(Json(
            gs.into_iter()
                .map(|g| GroupInfo {
                    id: g.id,
                    name: n.names.name(Kind::Group, g.id),
                    session: g.members.iter().find_map(|m| sessions.get(m).cloned()),
                    maps: g.members,
                    state: g.state,
                })
                .collect(),
        ))
    })
    .await
}

#[utoipa::path(
    post,
    operation_id = "create_group",
    path = "/groups",
    tag = "groups",
    summary = "Create a consistency group of maps",
    request_body = CreateGroup,
    responses((status = 200, description = "The new group", body = GroupInfo), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn create(
    State(s): State<AppState>,
    req: Result<Json<CreateGroup>, JsonRejection>,
) -> Result<Json<GroupInfo>, ApiError> {
    let req = body(req)?;
    if req.maps.is_empty() {
        return Err(ApiError::bad_request("a group needs at least one map"));
    }
    s.blocking(move |n| {
        let _control = n.control();
        if let Some(name) = &req.name {
            n.names
                .check_new(Kind::Group, name)
                .map_err(ApiError::bad_request)?;
        }
        n.with(|sub| {
            if let Some(id) = req.id {
                if sub.groups().iter().any(|g| g.id == id) {
                    return Err(ApiError::new(
                        ApiErrorKind::AlreadyExists,
                        format!("group {id} already exists"),
                    ));
                }
            }
            for &m in &req.maps {
                sub.map(MapId(m))
                    .map_err(|e| ApiError::controller(e, Noun::Map))?;
            }
            let maps: Vec<MapId> = req.maps.iter().copied().map(MapId).collect();
            let g = match req.id {
                Some(id) => create_with_id(sub, id, &maps)?,
                None => sub.create_group(&maps, false).map_err(group_err)?,
            };
            tracing::info!(group = g.0, name = ?req.name, maps = ?req.maps, "group created");
            if let Some(name) = &req.name {
                // The group exists; a failure here leaves it unnamed.
                n.names.set(Kind::Group, g.0, name).map_err(|e| {
                    ApiError::name_not_saved(
                        &e,
                        format!(
                            "group {} was created but not named: {e}; it is listed without \
                             a name",
                            g.0
                        ),
                    )
                })?;
            }
            let view = sub.groups().into_iter().find(|v| v.id == g.0);
            let (maps, state) = view
                .map(|v| (v.members, v.state))
                .unwrap_or((req.maps, String::new()));
            Ok(Json(GroupInfo {
                id: g.0,
                name: req.name.clone(),
                maps,
                state,
                session: None,
            }))
        })
    })
    .await
}

/// Creates a group with id `wanted`. The subsystem assigns group ids upward
/// from a counter (the controller has no create-with-id), so: refuse an id
/// the counter has passed or one too far ahead without creating anything
/// (`check_chosen_id`; the caller holds `Node::control`); otherwise create,
/// and while the id given is below `wanted`, delete it and create again;
/// ids skipped that way are simply never used. Should a session's own
/// create move the counter meanwhile, the probe is deleted and the error
/// names the lowest id that can be chosen.
fn create_with_id(sub: &Subsystem, wanted: u32, maps: &[MapId]) -> Result<GroupId, ApiError> {
    check_chosen_id(
        &format!("group id {wanted}"),
        "group",
        wanted,
        sub.next_group_id(),
        "",
    )?;
    loop {
        let g = sub.create_group(maps, false).map_err(group_err)?;
        if g.0 == wanted {
            return Ok(g);
        }
        let _ = sub.delete_group(g, true);
        if g.0 > wanted {
            return Err(ApiError::bad_request(format!(
                "group id {wanted} cannot be chosen: the subsystem assigns group ids upward and \
                 the lowest it can give now is {} (use that or a higher id)",
                g.0.saturating_add(1)
            )));
        }
        if wanted - g.0 > MAX_SKIP {
            return Err(ApiError::bad_request(format!(
                "group id {wanted} is too far ahead: the next group id is {} and at most \
                 {MAX_SKIP} ids are skipped to reach a chosen one",
                g.0.saturating_add(1)
            )));
        }
    }
}

/// A controller error of a group request: "unknown map" is about the map.
fn group_err(e: controller::ControllerError) -> ApiError {
    let noun = if e.to_string().starts_with("unknown map") {
        Noun::Map
    } else {
        Noun::Group
    };
    ApiError::controller(e, noun)
}

/// The members of group `id` as they are now.
fn members_now(names: &Names, sub: &Subsystem, id: GroupId) -> Result<Vec<MapInfo>, ApiError> {
    let members = sub
        .groups()
        .into_iter()
        .find(|g| g.id == id.0)
        .map(|g| g.members)
        .unwrap_or_default();
    members
        .into_iter()
        .map(|m| map_now(names, sub, MapId(m)))
        .collect()
}

#[utoipa::path(
    post,
    operation_id = "start_group",
    path = "/groups/{id}/start",
    tag = "groups",
    summary = "Start every map of the group at one instant (body optional)",
    params(("id" = String, Path, description = "Group id or name")),
    request_body = Option<StartFlags>,
    responses((status = 200, description = "The members after the start", body = Vec<MapInfo>), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn start(
    State(s): State<AppState>,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Json<Vec<MapInfo>>, ApiError> {
    let id = parse_id(&s.node.names, &id)?;
    let flags: StartFlags = optional_body(&bytes)?;
    s.blocking(move |n| {
        let _control = n.control();
        n.with(|sub| {
            sub.start_group(id, flags.restore).map_err(group_err)?;
            tracing::info!(group = id.0, restore = flags.restore, "group started");
            members_now(&n.names, sub, id)
        })
    })
    .await
    .map(Json)
}

#[utoipa::path(
    post,
    operation_id = "stop_group",
    path = "/groups/{id}/stop",
    tag = "groups",
    summary = "Stop every map of the group",
    params(("id" = String, Path, description = "Group id or name")),
    request_body = ForceFlag,
    responses((status = 200, description = "The members after the stop", body = Vec<MapInfo>), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn stop(
    State(s): State<AppState>,
    Path(id): Path<String>,
    req: Result<Json<ForceFlag>, JsonRejection>,
) -> Result<Json<Vec<MapInfo>>, ApiError> {
    let id = parse_id(&s.node.names, &id)?;
    let force = body(req)?.force;
    s.blocking(move |n| {
        let _control = n.control();
        let maps = n.with(|sub| {
            sub.stop_group(id, force).map_err(group_err)?;
            tracing::info!(group = id.0, force, "group stopped");
            members_now(&n.names, sub, id)
        })?;
        n.close_broken_sessions();
        Ok(maps)
    })
    .await
    .map(Json)
}

#[utoipa::path(
    delete,
    operation_id = "delete_group",
    path = "/groups/{id}",
    tag = "groups",
    summary = "Delete a group",
    params(("id" = String, Path, description = "Group id or name"), ("force" = Option<bool>, Query, description = "Delete even if it still has maps (the maps stay)")),
    responses((status = 200, description = "Deleted", body = ActionDone), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ForceFlag>,
) -> Result<Json<ActionDone>, ApiError> {
    let id = parse_id(&s.node.names, &id)?;
    s.blocking(move |n| {
        let _control = n.control();
        n.with(|sub| sub.delete_group(id, q.force))
            .map_err(group_err)?;
        tracing::info!(group = id.0, force = q.force, "group deleted");
        if let Err(e) = n.names.remove(Kind::Group, id.0) {
            tracing::warn!(group = id.0, "{e}");
        }
        Ok(Json(ActionDone {
            message: format!("deleted group {}", id.0),
        }))
    })
    .await
}

#[utoipa::path(
    post,
    operation_id = "add_group_map",
    path = "/groups/{id}/maps",
    tag = "groups",
    summary = "Add an idle_or_copied or stopped map to the group",
    params(("id" = String, Path, description = "Group id or name")),
    request_body = GroupMember,
    responses((status = 200, description = "The members afterwards", body = Vec<MapInfo>), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn add_member(
    State(s): State<AppState>,
    Path(id): Path<String>,
    req: Result<Json<GroupMember>, JsonRejection>,
) -> Result<Json<Vec<MapInfo>>, ApiError> {
    let id = parse_id(&s.node.names, &id)?;
    let map = MapId(body(req)?.map);
    s.blocking(move |n| {
        let _control = n.control();
        n.with(|sub| {
            sub.add_to_group(id, map).map_err(group_err)?;
            members_now(&n.names, sub, id)
        })
    })
    .await
    .map(Json)
}

#[utoipa::path(
    delete,
    operation_id = "remove_group_map",
    path = "/groups/{id}/maps/{map}",
    tag = "groups",
    summary = "Take an idle_or_copied or stopped map out of the group",
    params(("id" = String, Path, description = "Group id or name"), ("map" = u32, Path, description = "Map id")),
    responses((status = 200, description = "The members afterwards", body = Vec<MapInfo>), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn remove_member(
    State(s): State<AppState>,
    Path((id, map)): Path<(String, u32)>,
) -> Result<Json<Vec<MapInfo>>, ApiError> {
    let id = parse_id(&s.node.names, &id)?;
    s.blocking(move |n| {
        let _control = n.control();
        n.with(|sub| {
            sub.remove_from_group(id, MapId(map)).map_err(group_err)?;
            members_now(&n.names, sub, id)
        })
    })
    .await
    .map(Json)
}
