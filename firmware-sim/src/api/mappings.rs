//! `/mappings` (create, list, show, start, prepare, stop, delete, restore)
//! and `/cascades` (each cascade's type and order).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use controller::{CascadeView, CopyType, MapCreate, MapId, MapState, MapView, Subsystem};

use super::model::ErrorBody;
use super::model::{
    ActionDone, CascadeInfo, CreateMap, ForceFlag, MapInfo, RestoreRequest, StartFlags,
};
use super::{
    body, check_chosen_id, optional_body, ApiError, ApiErrorKind, AppState, Noun, MAX_SKIP,
};
use crate::names::{Kind, Names};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/mappings", get(list).post(create))
        .route("/mappings/{id}", get(show).delete(delete))
        .route("/mappings/{id}/start", post(start))
        .route("/mappings/{id}/prepare", post(prepare))
        .route("/mappings/{id}/stop", post(stop))
        .route("/mappings/{id}/resume", post(resume))
        .route("/mappings/{id}/restore", post(restore))
        .route("/cascades", get(cascades))
}

fn cascade_info(c: &CascadeView, maps: &[MapView]) -> CascadeInfo {
    let mut order = vec![c.head.clone()];
    order.extend(c.members.iter().cloned());
    let ids = c
        .members
        .iter()
        .filter_map(|t| {
            maps.iter()
                .find(|m| m.cascade == Some(c.id) && &m.target == t)
        })
        .map(|m| m.id)
        .collect();
    // A full copy cut from its chain at 100 %: its target heads the members
    // that still read through it, and the map stays copying until they
    // hold every grain (docs/ENGINE.md, "Completion and cut").
    let head_map = maps
        .iter()
        .find(|m| m.target == c.head && m.cascade.is_none() && m.state == MapState::Copying)
        .map(|m| m.id);
    CascadeInfo {
        id: c.id,
        copy_type: c.copy_type.to_string(),
        order,
        maps: ids,
        head_map,
    }
}

/// The API view of a map (with its cascade resolved and its name).
pub fn map_info(names: &Names, v: &MapView, maps: &[MapView], cascades: &[CascadeView]) -> MapInfo {
    MapInfo {
        id: v.id,
        name: names.name(Kind::Map, v.id),
        source: v.source.clone(),
        target: v.target.clone(),
        copy_type: v.copy_type.to_string(),
        incremental: v.incremental,
        state: v.state.to_string(),
        progress_percent: v.progress_percent,
        copy_rate: v.copy_rate,
        clean_rate: v.clean_rate,
        // A cut map (copying at 100 %, out of its own chain) shows the
        // chain its target heads: the one that still reads through it.
        cascade: v
            .cascade
            .and_then(|id| cascades.iter().find(|c| c.id == id))
            .or_else(|| {
                (v.cascade.is_none() && v.state == MapState::Copying)
                    .then(|| cascades.iter().find(|c| c.head == v.target))
                    .flatten()
            })
            .map(|c| cascade_info(c, maps)),
        extents: v.extents.clone().unwrap_or_else(|| "all".into()),
        group: v.group,
        restoring: v.restoring,
        withdrawn: v.withdrawn,
        copy_stalled: v.copy_stalled.clone(),
        also_stopped: Vec::new(),
    }
}

/// The current view of one map.
pub fn map_now(names: &Names, sub: &Subsystem, id: MapId) -> Result<MapInfo, ApiError> {
    let v = sub
        .map(id)
        .map_err(|e| ApiError::controller(e, Noun::Map))?;
    Ok(map_info(names, &v, &sub.maps(), &sub.cascades()))
}

/// A map given by id or by name.
fn parse_id(names: &Names, id: &str) -> Result<MapId, ApiError> {
    names.resolve(Kind::Map, id).map(MapId).ok_or_else(|| {
        ApiError::new(
            ApiErrorKind::UnknownMap,
            format!("unknown map {id} (no map has that id or name; `map list` shows them)"),
        )
    })
}

#[utoipa::path(
    get,
    operation_id = "maps",
    path = "/mappings",
    tag = "mappings",
    summary = "List mappings",
    responses((status = 200, description = "Every mapping", body = Vec<MapInfo>), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn list(State(s): State<AppState>) -> Result<Json<Vec<MapInfo>>, ApiError> {
    s.blocking(|n| {
        n.with(|sub| {
            let maps = sub.maps();
            let cs = sub.cascades();
            Ok(Json(
                maps.iter()
                    .map(|m| map_info(&n.names, m, &maps, &cs))
                    .collect(),
            ))
        })
    })
    .await
}

#[utoipa::path(
    get,
    operation_id = "map",
    path = "/mappings/{id}",
    tag = "mappings",
    summary = "Show one mapping",
    params(("id" = String, Path, description = "Map id or name")),
    responses((status = 200, description = "The mapping", body = MapInfo), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<MapInfo>, ApiError> {
    let id = parse_id(&s.node.names, &id)?;
    s.blocking(move |n| n.with(|sub| map_now(&n.names, sub, id)).map(Json))
        .await
}

fn map_create(names: &Names, sub: &Subsystem, req: &CreateMap) -> Result<MapInfo, ApiError> {
    if let Some(name) = &req.name {
        names
            .check_new(Kind::Map, name)
            .map_err(ApiError::bad_request)?;
    }
    let copy_type = match req.copy_type.as_str() {
        "full" => CopyType::Full,
        "nocopy" => CopyType::Nocopy,
        other => {
            return Err(ApiError::bad_request(format!(
                "bad map type `{other}` (expected full or nocopy)"
            )))
        }
    };
    for (what, rate) in [("copy_rate", req.copy_rate), ("clean_rate", req.clean_rate)] {
        if let Some(r) = rate.filter(|r| *r > 150) {
            return Err(ApiError::bad_request(format!(
                "{what} {r} is outside 0-150"
            )));
        }
    }
    for v in [&req.source, &req.target] {
        sub.volume_view(v)
            .map_err(|e| ApiError::controller(e, Noun::Volume))?;
    }
    let extents = match &req.extent {
        None => None,
        Some(text) if text.split(',').any(|p| p.trim().is_empty()) => {
            return Err(ApiError::new(
                ApiErrorKind::BadExtent,
                format!("bad extent `{text}`: empty range between commas"),
            ))
        }
        Some(text) => {
            let g = sub
                .geometry(&req.source)
                .map_err(|e| ApiError::controller(e, Noun::Volume))?;
            let set = g.parse_extent_set(text).map_err(|e| {
                ApiError::new(
                    ApiErrorKind::BadExtent,
                    format!("bad extent `{text}` for volume {}: {e}", req.source),
                )
            })?;
            Some(set)
        }
    };
    let spec = MapCreate {
        extents,
        incremental: req.incremental,
        copy_rate: req.copy_rate,
        clean_rate: req.clean_rate,
        ..MapCreate::new(&req.source, &req.target, copy_type)
    };
    let id = create_with_id(sub, &spec, req.id)?;
    tracing::info!(map = id.0, name = ?req.name, source = %req.source, target = %req.target, "map created");
    if let Some(name) = &req.name {
        // The map exists durably; a failure here leaves it unnamed.
        names.set(Kind::Map, id.0, name).map_err(|e| {
            ApiError::name_not_saved(
                &e,
                format!(
                    "map {} was created but not named: {e}; it is listed without a \
                     name (delete it and create it again once the name can be saved)",
                    id.0
                ),
            )
        })?;
    }
    map_now(names, sub, id)
}

/// Creates the map of `spec` with id `wanted` when given. The subsystem
/// assigns map ids upward from a counter (the controller has no
/// create-with-id), so: refuse a taken id, an id the counter has passed, or
/// one more than `MAX_SKIP` ahead of it, without creating anything
/// (`check_chosen_id`); otherwise create, and while the
/// id given is below `wanted` delete it and create again (skipped ids are
/// never used). The caller holds `Node::control`, so no other create moves
/// the counter meanwhile.
fn create_with_id(
    sub: &Subsystem,
    spec: &MapCreate,
    wanted: Option<u32>,
) -> Result<MapId, ApiError> {
    if let Some(w) = wanted {
        if sub.maps().iter().any(|m| m.id == w) {
            return Err(ApiError::new(
                ApiErrorKind::AlreadyExists,
                format!("map {w} already exists"),
            ));
        }
        check_chosen_id(
            &format!("--id {w}"),
            "map",
            w,
            sub.next_map_id(),
            ", or omit --id",
        )?;
    }
    loop {
        let id = sub
            .create_map(spec)
            .map_err(|e| ApiError::controller(e, Noun::Map))?;
        let Some(w) = wanted.filter(|w| *w != id.0) else {
            return Ok(id);
        };
        let _ = sub.delete_map(id, true);
        if id.0 > w {
            return Err(ApiError::bad_request(format!(
                "--id {w}: the subsystem assigns map ids upward and the lowest it can give now \
                 is {} (use that or a higher id, or omit --id)",
                id.0.saturating_add(1)
            )));
        }
        if w - id.0 > MAX_SKIP {
            return Err(ApiError::bad_request(format!(
                "--id {w} is too far ahead: the next map id is {} and at most {MAX_SKIP} ids \
                 are skipped to reach a chosen one",
                id.0.saturating_add(1)
            )));
        }
    }
}

#[utoipa::path(
    post,
    operation_id = "create_map",
    path = "/mappings",
    tag = "mappings",
    summary = "Create a mapping (state idle_or_copied until started)",
    request_body = CreateMap,
    responses((status = 200, description = "The new mapping", body = MapInfo), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn create(
    State(s): State<AppState>,
    req: Result<Json<CreateMap>, JsonRejection>,
) -> Result<Json<MapInfo>, ApiError> {
    let req = body(req)?;
    s.blocking(move |n| {
        let _control = n.control();
        n.with(|sub| map_create(&n.names, sub, &req)).map(Json)
    })
    .await
}

async fn act(
    s: AppState,
    id: String,
    what: &'static str,
    f: impl FnOnce(&Subsystem, MapId) -> controller::Result<()> + Send + 'static,
) -> Result<Json<MapInfo>, ApiError> {
    let id = parse_id(&s.node.names, &id)?;
    s.blocking(move |n| {
        let _control = n.control();
        let info = n.with(|sub| {
            let before = sub.maps();
            f(sub, id).map_err(|e| ApiError::controller(e, Noun::Map))?;
            tracing::info!(map = id.0, action = what, "map {what}");
            let mut info = map_now(&n.names, sub, id)?;
            // QA: a forced stop took an unrelated snapshot offline and said
            // nothing of it.
            info.also_stopped = stopped_besides(&before, &sub.maps(), id.0);
            Ok::<_, ApiError>(info)
        })?;
        // A forced stop may have stopped a session's map as a dependant.
        n.close_broken_sessions();
        Ok(info)
    })
    .await
    .map(Json)
}

#[utoipa::path(
    post,
    operation_id = "start_map",
    path = "/mappings/{id}/start",
    tag = "mappings",
    summary = "Start a mapping: its point in time is now (body optional)",
    params(("id" = String, Path, description = "Map id or name")),
    request_body = Option<StartFlags>,
    responses((status = 200, description = "The mapping after the start", body = MapInfo), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn start(
    State(s): State<AppState>,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Json<MapInfo>, ApiError> {
    let flags: StartFlags = optional_body(&bytes)?;
    act(s, id, "start", move |sub, id| {
        sub.start_map(id, flags.restore)
    })
    .await
}

#[utoipa::path(
    post,
    operation_id = "prepare_map",
    path = "/mappings/{id}/prepare",
    tag = "mappings",
    summary = "Prepare a mapping (flush the source) so a later start is instant",
    params(("id" = String, Path, description = "Map id or name")),
    responses((status = 200, description = "The mapping, prepared", body = MapInfo), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn prepare(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<MapInfo>, ApiError> {
    act(s, id, "prepare", |sub, id| sub.prepare_map(id)).await
}

#[utoipa::path(
    post,
    operation_id = "resume_map",
    path = "/mappings/{id}/resume",
    tag = "mappings",
    summary = "Resume a suspended mapping (after an IPL reopened its stores)",
    params(("id" = String, Path, description = "Map id or name")),
    responses((status = 200, description = "The mapping, resumed (copying, or stopping if a stop was asked while suspended)", body = MapInfo), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn resume(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<MapInfo>, ApiError> {
    act(s, id, "resume", |sub, id| sub.resume_map(id)).await
}

#[utoipa::path(
    post,
    operation_id = "stop_map",
    path = "/mappings/{id}/stop",
    tag = "mappings",
    summary = "Stop a mapping (cleaning dependants first unless forced)",
    params(("id" = String, Path, description = "Map id or name")),
    request_body = ForceFlag,
    responses((status = 200, description = "The mapping after the stop", body = MapInfo), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn stop(
    State(s): State<AppState>,
    Path(id): Path<String>,
    req: Result<Json<ForceFlag>, JsonRejection>,
) -> Result<Json<MapInfo>, ApiError> {
    let force = body(req)?.force;
    act(s, id, "stop", move |sub, id| {
        let before = sub.maps();
        let r = sub.stop_map(id, force);
        stopped_besides(&before, &sub.maps(), id.0);
        r
    })
    .await
}

/// The maps that a forced stop or delete of map `id` stopped besides it (a
/// map downstream in its cascade read through it), each said in words and
/// logged: their targets are offline and their images lost.
fn stopped_besides(
    before: &[controller::MapView],
    after: &[controller::MapView],
    id: u32,
) -> Vec<String> {
    let was = |m: u32| before.iter().find(|b| b.id == m).map(|b| b.state);
    after
        .iter()
        .filter(|m| m.id != id && m.state == MapState::Stopped)
        .filter(|m| was(m.id).is_some_and(|s| s != MapState::Stopped))
        .map(|m| {
            let line = format!(
                "also stopped map {} ({} -> {}), which read through it: {} is offline and \
                 its image is lost",
                m.id, m.source, m.target, m.target
            );
            tracing::warn!(map = id, stopped = m.id, "{line}");
            line
        })
        .collect()
}

/// Copy rate of a reverse map when neither the request nor the map gives one.
const DEFAULT_RESTORE_RATE: u8 = 50;

#[utoipa::path(
    post,
    operation_id = "restore_map",
    path = "/mappings/{id}/restore",
    tag = "mappings",
    summary = "Copy the target back onto the source: a reverse mapping, started now",
    params(("id" = String, Path, description = "Map id or name")),
    request_body = RestoreRequest,
    responses((status = 200, description = "The reverse mapping", body = MapInfo), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn restore(
    State(s): State<AppState>,
    Path(id): Path<String>,
    req: Result<Json<RestoreRequest>, JsonRejection>,
) -> Result<Json<MapInfo>, ApiError> {
    let id = parse_id(&s.node.names, &id)?;
    let req = body(req)?;
    if let Some(r) = req.copy_rate.filter(|r| *r > 150) {
        return Err(ApiError::bad_request(format!(
            "copy_rate {r} is outside 0-150"
        )));
    }
    s.blocking(move |n| {
        let _control = n.control();
        n.with(|sub| {
            let rev = restore_map(sub, id, req.copy_rate)?;
            tracing::info!(map = id.0, reverse = rev.0, "restore started");
            map_now(&n.names, sub, rev)
        })
    })
    .await
    .map(Json)
}

/// Restores map `id`: refuses a map that holds no point-in-time image, and
/// creates the reverse map itself (at the requested rate) when there is none,
/// so the controller's restore starts that one instead of one at rate 1.
fn restore_map(sub: &Subsystem, id: MapId, rate: Option<u8>) -> Result<MapId, ApiError> {
    // A restore must finish: a rate of 0 (copy only on write) becomes the default.
    let rate = rate.map(|r| if r == 0 { DEFAULT_RESTORE_RATE } else { r });
    sub.ensure_not_session_map(id, "restore")
        .map_err(|e| ApiError::controller(e, Noun::Map))?;
    let v = sub
        .map(id)
        .map_err(|e| ApiError::controller(e, Noun::Map))?;
    let wrong = |why: String| ApiError::new(ApiErrorKind::WrongState, why);
    match v.state {
        MapState::IdleOrCopied if v.progress_percent < 100 => {
            return Err(wrong(format!(
                "map {} has no point-in-time image to restore (idle_or_copied at {}%: never \
                 started, or its copy did not finish); start it first",
                id.0, v.progress_percent
            )))
        }
        MapState::IdleOrCopied | MapState::Copying => {}
        other => {
            return Err(wrong(format!(
                "map {} is {other}: its target {} holds no whole point-in-time image to \
                 restore (only a copying map, or one whose copy finished, has one)",
                id.0, v.target
            )))
        }
    }
    let geometry = sub
        .geometry(&v.target)
        .map_err(|e| ApiError::controller(e, Noun::Volume))?;
    let extents_of = |m: &controller::MapView| match &m.extents {
        None => Ok(geometry::ExtentSet::full(geometry.tracks())),
        Some(text) => geometry.parse_extent_set(text).map_err(|e| {
            ApiError::new(
                ApiErrorKind::Internal,
                format!("extents `{text}` of map {}: {e}", m.id),
            )
        }),
    };
    let existing = sub
        .maps()
        .into_iter()
        .find(|m| m.source == v.target && m.target == v.source);
    if let Some(m) = &existing {
        // QA: a nocopy or narrower reverse map restored part of the image,
        // or never finished, and the restore said it was running.
        let missing = extents_of(&v)?.difference(&extents_of(m)?);
        if m.copy_type != CopyType::Full || !missing.is_empty() {
            return Err(wrong(format!(
                "map {r} ({} -> {}) already exists but is {}: it cannot copy back all of map \
                 {}'s image; delete it (`map delete {r}`) and run the restore again",
                m.source,
                m.target,
                if m.copy_type != CopyType::Full {
                    "a nocopy map".to_string()
                } else {
                    format!(
                        "limited to tracks {}",
                        m.extents.as_deref().unwrap_or("all")
                    )
                },
                id.0,
                r = m.id
            )));
        }
        if m.restoring && matches!(m.state, MapState::Copying) {
            return Err(wrong(format!(
                "a restore of map {} is already running as map {} ({}%); `map wait {}` waits \
                 for it",
                id.0, m.id, m.progress_percent, m.id
            )));
        }
        // QA: this answered the controller's "start is not allowed".
        if matches!(m.state, MapState::Copying) {
            return Err(wrong(format!(
                "map {r} ({} -> {}), the reverse of map {}, is {} as a map of its own: a \
                 restore starts it; wait for it (`map wait {r}`) or stop it, then restore",
                m.source,
                m.target,
                id.0,
                m.state,
                r = m.id
            )));
        }
    }
    let mut created = None;
    if existing.is_none() {
        let extents = match &v.extents {
            None => None,
            Some(_) => Some(extents_of(&v)?),
        };
        let own = Some(v.copy_rate).filter(|r| *r > 0);
        let spec = MapCreate {
            extents,
            copy_rate: Some(rate.or(own).unwrap_or(DEFAULT_RESTORE_RATE)),
            clean_rate: Some(v.clean_rate),
            ..MapCreate::new(&v.target, &v.source, CopyType::Full)
        };
        created = Some(
            sub.create_map(&spec)
                .map_err(|e| ApiError::controller(e, Noun::Map))?,
        );
    }
    let rev = sub.restore_map(id).map_err(|e| {
        if let Some(m) = created {
            // A refused restore leaves nothing behind. Not forced: a map
            // that something started meanwhile is not this request's to
            // take away (QA: it was, while a concurrent restore of it ran).
            if let Err(d) = sub.delete_map(m, false) {
                tracing::warn!(map = m.0, error = %d, "the reverse map of a refused restore stays");
            }
        }
        ApiError::controller(e, Noun::Map)
    })?;
    // A reverse map that existed already copies at the rate asked for, or,
    // if it would never copy (a nocopy map, rate 0), at the default: a
    // restore must finish.
    if let Some(m) = existing {
        let want = rate.or((m.copy_rate == 0).then_some(DEFAULT_RESTORE_RATE));
        if let Some(r) = want.filter(|r| *r != m.copy_rate) {
            sub.set_map_rates(rev, Some(r), None)
                .map_err(|e| ApiError::controller(e, Noun::Map))?;
        }
    }
    Ok(rev)
}

#[utoipa::path(
    delete,
    operation_id = "delete_map",
    path = "/mappings/{id}",
    tag = "mappings",
    summary = "Delete a mapping",
    params(("id" = String, Path, description = "Map id or name"), ("force" = Option<bool>, Query, description = "Delete even while copying (the target image is lost)")),
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
        let before = n.with(|sub| sub.maps());
        n.with(|sub| sub.delete_map(id, q.force)).map_err(|e| {
            let mut err = ApiError::controller(e, Noun::Map);
            if err.kind == ApiErrorKind::WrongState && !q.force && !err.message.contains("force") {
                err.message.push_str(&format!(
                    "; `map delete {} --force` deletes it anyway (the target keeps whatever it \
                     holds, possibly not a consistent image)",
                    id.0
                ));
            }
            err
        })?;
        tracing::info!(map = id.0, force = q.force, "map deleted");
        if let Err(e) = n.names.remove(Kind::Map, id.0) {
            tracing::warn!(map = id.0, "{e}");
        }
        n.close_broken_sessions();
        let mut message = format!("deleted map {}", id.0);
        for m in stopped_besides(&before, &n.with(|sub| sub.maps()), id.0) {
            message.push_str(&format!("; {m}"));
        }
        Ok(Json(ActionDone { message }))
    })
    .await
}

#[utoipa::path(
    get,
    operation_id = "cascades",
    path = "/cascades",
    tag = "mappings",
    summary = "List cascades, head first",
    responses((status = 200, description = "Every cascade", body = Vec<CascadeInfo>), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn cascades(State(s): State<AppState>) -> Result<Json<Vec<CascadeInfo>>, ApiError> {
    s.blocking(|n| {
        n.with(|sub| {
            let maps = sub.maps();
            Ok(Json(
                sub.cascades()
                    .iter()
                    .map(|c| cascade_info(c, &maps))
                    .collect(),
            ))
        })
    })
    .await
}
