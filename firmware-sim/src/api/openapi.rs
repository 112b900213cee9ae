//! `GET /openapi.json`: the OpenAPI 3 document of the control API, built
//! from the code (utoipa): the handlers' `#[utoipa::path]` annotations and
//! the wire types of firmware-sim-client (`ToSchema`, feature `openapi`).
//! `firmware-sim openapi` prints the same document; docs/openapi.json is a
//! copy that a test keeps equal to it. It describes routes and no data, so
//! it is served without a token, like `/health`.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::model::{
    ActionDone, CascadeInfo, CreateGroup, CreateMap, CreateVolume, DecisionInfo, ErrorBody,
    EventReport, EventRequest, ForceFlag, GroupInfo, GroupMember, Health, MapInfo, OrphanInfo,
    RecentEvent, RestoreRequest, SessionInfo, SessionPart, SessionVolume, StartFlags, StartSession,
    TableEntryInfo, TerminateSession, VolumeInfo,
};
use super::AppState;

/// The bearer token (`--api-token-file` on the daemon) as a security scheme
/// that every route but `/health` and this document needs.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Needed when the daemon was booted with --api-token-file (always \
                         off loopback): the file's contents as `Authorization: Bearer TOKEN`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The description of the whole API, with the error kinds as the client
/// crate lists them (one source for the document, the server and clients).
struct Description;

impl Modify for Description {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let kinds: Vec<String> = firmware_sim_client::ErrorKind::all()
            .map(|k| k.to_string())
            .collect();
        doc.info.description = Some(format!(
            "JSON over HTTP: one resource per noun, actions are POSTs on the resource. Every \
             error answer is `{{\"error\": TEXT, \"kind\": KIND}}` with KIND one of {}. \
             State-changing requests carry `Content-Type: application/json`. The command line \
             (docs/CLI.md) and the Rust crate firmware-sim-client are clients of exactly these \
             routes; the peers' internal `/port/...` routes are not part of this API.",
            kinds.join(", ")
        ));
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "firmware-sim control API",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        super::status::health,
        super::status::metrics,
        super::volumes::list,
        super::volumes::create,
        super::volumes::show,
        super::volumes::delete,
        super::mappings::list,
        super::mappings::create,
        super::mappings::show,
        super::mappings::delete,
        super::mappings::start,
        super::mappings::prepare,
        super::mappings::stop,
        super::mappings::resume,
        super::mappings::restore,
        super::mappings::cascades,
        super::groups::list,
        super::groups::create,
        super::groups::delete,
        super::groups::start,
        super::groups::stop,
        super::groups::add_member,
        super::groups::remove_member,
        super::sessions::list,
        super::sessions::start,
        super::sessions::release,
        super::sessions::complete,
        super::sessions::terminate,
        super::events::recent,
        super::events::event,
        super::tables::show,
        openapi_json,
    ),
    components(schemas(
        RecentEvent,
        ErrorBody, Health, VolumeInfo, CreateVolume, MapInfo, CreateMap, StartFlags, ForceFlag,
        RestoreRequest, CascadeInfo, GroupInfo, CreateGroup, GroupMember, ActionDone,
        StartSession, SessionInfo, SessionPart, SessionVolume, TerminateSession, EventRequest,
        EventReport, DecisionInfo, OrphanInfo, TableEntryInfo
    )),
    modifiers(&BearerToken, &Description),
    security(("token" = [])),
    tags(
        (name = "status", description = "Health, metrics and this document"),
        (name = "volumes", description = "Volumes (NBD exports)"),
        (name = "mappings", description = "Time-zero mappings (FlashCopy maps) and cascades"),
        (name = "groups", description = "Consistency groups"),
        (name = "sessions", description = "Backup copy sessions (resource manager)"),
        (name = "events", description = "IPL, resource-manager restart, abend, reset"),
        (name = "tables", description = "Activity tables"),
    )
)]
struct ApiDoc;

/// The OpenAPI document as pretty JSON with a final newline (the form of
/// docs/openapi.json).
pub fn document_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"OpenAPI document: {e}\"}}"));
    text.push('\n');
    text
}

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

#[utoipa::path(
    get,
    operation_id = "openapi",
    path = "/openapi.json",
    tag = "status",
    summary = "This document (answered without a token)",
    security(()),
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json"))
)]
async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_route_and_schema() {
        let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/health",
            "/metrics",
            "/openapi.json",
            "/volumes",
            "/volumes/{id}",
            "/mappings",
            "/mappings/{id}",
            "/mappings/{id}/start",
            "/mappings/{id}/prepare",
            "/mappings/{id}/stop",
            "/mappings/{id}/restore",
            "/cascades",
            "/groups",
            "/groups/{id}",
            "/groups/{id}/start",
            "/groups/{id}/stop",
            "/groups/{id}/maps",
            "/groups/{id}/maps/{map}",
            "/sessions",
            "/sessions/{id}/release",
            "/sessions/{id}/complete",
            "/sessions/{id}/terminate",
            "/events/{event}",
            "/tables",
        ] {
            assert!(paths.contains_key(p), "{p} missing from the document");
        }
        // Operation ids are unique (generators name methods after them).
        let ids: Vec<&str> = paths
            .values()
            .flat_map(|p| p.as_object().unwrap().values())
            .map(|op| op["operationId"].as_str().unwrap())
            .collect();
        let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(ids.len(), unique.len(), "duplicate operationId in {ids:?}");
        let map = &doc["components"]["schemas"]["MapInfo"]["properties"];
        // serde's rename is what the document shows.
        assert!(map.get("type").is_some() && map.get("copy_type").is_none());
        assert!(doc["components"]["schemas"]["ErrorBody"]["properties"]["kind"].is_object());
        let description = doc["info"]["description"].as_str().unwrap();
        for k in firmware_sim_client::ErrorKind::all() {
            assert!(description.contains(k.as_str()), "{k} in the description");
        }
        // /health and this document need no token; the rest do.
        assert_eq!(
            doc["paths"]["/health"]["get"]["security"],
            serde_json::json!([{}])
        );
        assert_eq!(doc["security"], serde_json::json!([{"token": []}]));
    }
}
