//! `/port/...`: this daemon's subsystem as a resource-manager port, for the
//! resource managers of peer daemons ([`super::RemotePort`]).

use activity_table::{NewEntry, PhysSessionId, SessionId};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use resource_manager::{CopyPair, HeldSession, PortError, SubsystemPort};
use serde::{Deserialize, Serialize};

use crate::api::{body, ApiError, AppState};

/// `GET /port/id`.
#[derive(Debug, Serialize, Deserialize)]
pub struct IdBody {
    /// The subsystem id.
    pub id: String,
}

/// `POST /port/establish`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstablishBody {
    /// The logical session.
    pub session: SessionId,
    /// The host that starts it (its owner).
    pub host: String,
    /// Its pairs on this subsystem.
    pub pairs: Vec<CopyPair>,
}

/// `POST /port/withdraw`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawBody {
    /// The logical session the physical one must belong to.
    pub session: SessionId,
    /// The physical session.
    pub phys: PhysSessionId,
}

/// `POST /port/resume`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhysBody {
    /// The physical session.
    pub phys: PhysSessionId,
}

/// `POST /port/freeze`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeBody {
    /// Source volumes whose writes are held.
    pub volumes: Vec<String>,
    /// For at most this long.
    pub hold_ms: u64,
}

/// `POST /port/thaw`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThawBody {
    /// The token `freeze` returned.
    pub token: u64,
}

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/port/id", get(id))
        .route("/port/establish", post(establish))
        .route("/port/withdraw", post(withdraw))
        .route("/port/freeze", post(freeze))
        .route("/port/thaw", post(thaw))
        .route("/port/sessions", get(sessions))
        .route("/port/sessions/{phys}", get(query))
        .route("/port/resume", post(resume))
        .route("/port/append", post(append))
        .route("/port/entries", get(entries))
        .route("/port/volumes/{name}", get(volume_model))
}

type PortAnswer<T> = Result<Json<Result<T, PortError>>, ApiError>;

/// Runs `f` on the local port (blocking pool) and answers its `Result`.
async fn on_port<T: Serialize + Send + 'static>(
    s: AppState,
    f: impl FnOnce(&dyn SubsystemPort) -> Result<T, PortError> + Send + 'static,
) -> PortAnswer<T> {
    s.blocking(move |n| Ok(Json(n.with_port(|p| f(p))))).await
}

/// Like [`on_port`] for a call that changes tables or physical sessions:
/// this daemon's own resource manager reads them again afterwards.
async fn on_port_changing<T: Serialize + Send + 'static>(
    s: AppState,
    f: impl FnOnce(&dyn SubsystemPort) -> Result<T, PortError> + Send + 'static,
) -> PortAnswer<T> {
    s.blocking(move |n| {
        let r = n.with_port(|p| f(p));
        n.tables_changed_by_peer();
        Ok(Json(r))
    })
    .await
}

async fn id(State(s): State<AppState>) -> PortAnswer<IdBody> {
    s.blocking(|n| {
        Ok(Json(Ok(IdBody {
            id: n.with(|sub| sub.id().to_string()),
        })))
    })
    .await
}

async fn establish(
    State(s): State<AppState>,
    req: Result<Json<EstablishBody>, JsonRejection>,
) -> PortAnswer<PhysSessionId> {
    let req = body(req)?;
    on_port_changing(s, move |p| p.establish(&req.session, &req.host, &req.pairs)).await
}

async fn withdraw(
    State(s): State<AppState>,
    req: Result<Json<WithdrawBody>, JsonRejection>,
) -> PortAnswer<()> {
    let req = body(req)?;
    on_port_changing(s, move |p| p.withdraw(&req.session, req.phys)).await
}

async fn sessions(State(s): State<AppState>) -> PortAnswer<Vec<HeldSession>> {
    on_port(s, |p| p.physical_sessions()).await
}

async fn query(
    State(s): State<AppState>,
    Path(phys): Path<u8>,
) -> PortAnswer<Option<resource_manager::PhysicalSession>> {
    let phys = PhysSessionId::new(phys).map_err(|e| ApiError::bad_request(e.to_string()))?;
    on_port(s, move |p| p.query(phys)).await
}

async fn freeze(
    State(s): State<AppState>,
    req: Result<Json<FreezeBody>, JsonRejection>,
) -> PortAnswer<u64> {
    let req = body(req)?;
    on_port(s, move |p| p.freeze(&req.volumes, req.hold_ms)).await
}

async fn thaw(
    State(s): State<AppState>,
    req: Result<Json<ThawBody>, JsonRejection>,
) -> PortAnswer<bool> {
    let req = body(req)?;
    on_port(s, move |p| p.thaw(req.token)).await
}

async fn resume(
    State(s): State<AppState>,
    req: Result<Json<PhysBody>, JsonRejection>,
) -> PortAnswer<()> {
    let req = body(req)?;
    on_port_changing(s, move |p| p.resume(req.phys)).await
}

async fn append(
    State(s): State<AppState>,
    req: Result<Json<Vec<NewEntry>>, JsonRejection>,
) -> PortAnswer<()> {
    let entries = body(req)?;
    on_port_changing(s, move |p| p.append(&entries)).await
}

async fn entries(State(s): State<AppState>) -> PortAnswer<Vec<activity_table::ActivityEntry>> {
    on_port(s, |p| p.entries()).await
}

async fn volume_model(State(s): State<AppState>, Path(name): Path<String>) -> PortAnswer<String> {
    s.blocking(move |n| {
        Ok(Json(n.with(|sub| {
            sub.volume_view(&name)
                .map(|v| v.model.to_string())
                .map_err(|_| PortError::UnknownVolume {
                    volume: name.clone(),
                })
        })))
    })
    .await
}
