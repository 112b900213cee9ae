//! `/` (the live status page, for browsers), `/health` and `/metrics`
//! (Prometheus text format).
//!
//! The status page is one HTML file embedded in the binary
//! (`status.html`, no framework, nothing fetched from elsewhere): its script
//! reads the JSON routes of this API every second and draws the volumes,
//! maps with progress bars, cascades as an SVG picture, groups, sessions and
//! the latest activity-table entries. It holds no data itself, so it is
//! served without a token; the routes it reads are guarded as always.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use super::model::ErrorBody;
use super::model::Health;
use super::{ApiError, AppState};

/// The status page.
const STATUS_PAGE: &str = include_str!("status.html");

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
}

/// `GET /`: the status page for a browser (`Accept: text/html`), else a
/// short JSON index for scripts.
async fn index(headers: axum::http::HeaderMap) -> axum::response::Response {
    let html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if html {
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            STATUS_PAGE,
        )
            .into_response()
    } else {
        Json(serde_json::json!({
            "status_page": "GET / with Accept: text/html",
            "routes": ["/health", "/metrics", "/openapi.json", "/volumes", "/mappings", "/cascades", "/groups",
                       "/sessions", "/tables", "/events", "/events/{event}"],
            "docs": "docs/CLI.md, \"Control API\"",
        }))
        .into_response()
    }
}

#[utoipa::path(
    get,
    operation_id = "health",
    path = "/health",
    tag = "status",
    summary = "Liveness and identity (answered without a token)",
    security(()),
    responses((status = 200, description = "Serving", body = Health), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn health(State(s): State<AppState>) -> Result<Json<Health>, ApiError> {
    s.blocking(|n| {
        let (id, volumes, fenced, poisoned_volumes) = n.with(|sub| {
            (
                sub.id().to_string(),
                sub.volumes().len(),
                sub.fenced(),
                sub.poisoned_volumes(),
            )
        });
        let status = if fenced.is_some() {
            "fenced"
        } else if !poisoned_volumes.is_empty() {
            "degraded"
        } else {
            "ok"
        };
        Ok(Json(Health {
            status: status.into(),
            fenced,
            poisoned_volumes,
            subsystem: id,
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_s: n.started.elapsed().as_secs(),
            volumes,
            nbd: n.nbd_bases.read().clone(),
            owed: n.owed(),
        }))
    })
    .await
}

#[utoipa::path(
    get,
    operation_id = "metrics",
    path = "/metrics",
    tag = "status",
    summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"), (status = "4XX", description = "Refused: `{error, kind}` (kinds: see `ErrorBody`)", body = ErrorBody), (status = "5XX", description = "The subsystem failed or is not serving: `{error, kind}`", body = ErrorBody))
)]
async fn metrics(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let text = s
        .blocking(|n| {
            let snap = n.metrics();
            let maps = n.with(|sub| sub.maps());
            let mut out = String::new();
            let mut counter = |name: &str, help: &str, v: u64| {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} counter");
                let _ = writeln!(out, "{name} {v}");
            };
            counter(
                "firmware_sim_host_reads_total",
                "Host reads inside the subsystem.",
                snap.reads,
            );
            counter(
                "firmware_sim_host_read_bytes_total",
                "Bytes read by hosts.",
                snap.read_bytes,
            );
            counter(
                "firmware_sim_host_writes_total",
                "Host writes (and write-zeroes).",
                snap.writes,
            );
            counter(
                "firmware_sim_host_write_bytes_total",
                "Bytes written by hosts.",
                snap.write_bytes,
            );
            counter(
                "firmware_sim_host_flushes_total",
                "Host flush requests.",
                snap.host_flushes,
            );
            counter(
                "firmware_sim_cow_copies_total",
                "Grains copied for copy-on-write.",
                snap.cow_copies,
            );
            counter(
                "firmware_sim_cow_bytes_total",
                "Bytes copied for copy-on-write.",
                snap.cow_bytes,
            );
            counter(
                "firmware_sim_background_copies_total",
                "Grains copied or cleaned in the background.",
                snap.background_copies,
            );
            counter(
                "firmware_sim_background_bytes_total",
                "Bytes copied in the background.",
                snap.background_bytes,
            );
            counter(
                "firmware_sim_group_commits_total",
                "Group commits.",
                snap.group_commits,
            );
            counter(
                "firmware_sim_errors_total",
                "Requests that failed in the subsystem.",
                snap.errors,
            );

            let name = "firmware_sim_flush_latency_seconds";
            let _ = writeln!(
                out,
                "# HELP {name} Latency of store flushes (data and metadata)."
            );
            let _ = writeln!(out, "# TYPE {name} histogram");
            let mut cum = 0;
            for (bound_us, count) in &snap.flush_latency_buckets {
                cum += count;
                let le = bound_us.map_or("+Inf".to_string(), |b| (b as f64 / 1e6).to_string());
                let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cum}");
            }
            let _ = writeln!(out, "{name}_sum {}", snap.flush_us_total as f64 / 1e6);
            let _ = writeln!(out, "{name}_count {}", snap.flushes);

            let name = "firmware_sim_map_progress_percent";
            let _ = writeln!(
                out,
                "# HELP {name} Copy (or cleaning) progress of each map."
            );
            let _ = writeln!(out, "# TYPE {name} gauge");
            for m in &maps {
                let _ = writeln!(
                    out,
                    "{name}{{map=\"{}\",source=\"{}\",target=\"{}\",type=\"{}\"}} {}",
                    m.id, m.source, m.target, m.copy_type, m.progress_percent
                );
            }
            n.stats.render(&mut out);
            Ok(out)
        })
        .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}
