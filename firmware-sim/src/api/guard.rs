//! What every control-API request passes before a handler sees it: the
//! defences against a web page in the user's browser and against clients on
//! a network (docs/SECURITY.md).
//!
//! Rules, in order:
//! 1. with a token configured (`--api-token-file`), every request but
//!    `GET /health`, `GET /` (the static status page) and
//!    `GET /openapi.json` (the API's description, no data) carries
//!    `Authorization: Bearer TOKEN` (401 otherwise);
//! 2. without a token, the `Host` header must be a loopback name (a web page
//!    using DNS rebinding sends its own name); a request with an `Origin`
//!    header that is not this API's own origin is
//!    refused (403): browsers send it on cross-site requests, and nothing
//!    but a browser sends a foreign one;
//! 3. a state-changing request (any method but GET/HEAD) has
//!    `Content-Type: application/json` (415 otherwise): a cross-site form or
//!    `fetch` without a CORS preflight cannot send that type, and this API
//!    answers no preflight;
//! 4. a request body is at most [`BODY_LIMIT_BYTES`], and a request gets at
//!    most [`REQUEST_TIMEOUT`] (503 after it; the work it started finishes).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiErrorKind};

/// Largest request body accepted.
pub const BODY_LIMIT_BYTES: usize = 4 << 20;
/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The guard's settings.
#[derive(Clone, Default)]
pub struct Guard {
    /// The bearer token every request must carry, if any.
    pub token: Option<Arc<String>>,
    /// The API's own URL scheme (`http`, or `https` under `--api-tls`): a
    /// page served by this API sends `Origin: SCHEME://HOST`.
    pub scheme: &'static str,
}

fn refuse(kind: ApiErrorKind, msg: impl Into<String>) -> Response {
    ApiError::new(kind, msg).into_response()
}

/// Constant-time comparison (the token is a secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port (digits
/// only: QA, `127.0.0.1:1@evil.com` and `127.0.0.1:1.evil.com` passed).
fn loopback_host(host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((name, after)) => match after {
                "" => (name, None),
                _ => match after.strip_prefix(':') {
                    Some(p) => (name, Some(p)),
                    None => return false,
                },
            },
            None => return false,
        },
        None => match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        },
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn check(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let h = req.headers();
    // `/health`, `/` (the status page: static, it holds no data) and
    // `/openapi.json` (describes the routes, holds no data).
    let open = req.method() == Method::GET
        && matches!(req.uri().path(), "/health" | "/" | "/openapi.json");
    if let Some(token) = &g.token {
        // The scheme name is case-insensitive (RFC 7235).
        let given = h
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t);
        let ok = given.is_some_and(|t| same(t.trim().as_bytes(), token.as_bytes()));
        if !ok && !open {
            return refuse(
                ApiErrorKind::Unauthorized,
                if given.is_some() {
                    "the token given does not match this control API's: check --token-file \
                     FILE or FIRMWARE_SIM_API_TOKEN (Authorization: Bearer TOKEN)"
                } else {
                    "this control API needs a token: pass --token-file FILE or set \
                     FIRMWARE_SIM_API_TOKEN (Authorization: Bearer TOKEN)"
                },
            );
        }
    }
    // DNS rebinding: a page whose name resolves to 127.0.0.1 sends its own
    // name as Host (and a matching Origin). Without a token, only loopback
    // names reach the API.
    if g.token.is_none() {
        let host = h
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !loopback_host(host) {
            return refuse(
                ApiErrorKind::Forbidden,
                format!(
                    "Host {host:?} is not a loopback name; an API reached under other names \
                     needs --api-token-file"
                ),
            );
        }
    }
    if let Some(origin) = h.get(header::ORIGIN) {
        let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
        let own = host.map(|host| format!("{}://{host}", g.scheme));
        let origin = origin.to_str().unwrap_or("");
        if own.as_deref() != Some(origin) {
            return refuse(
                ApiErrorKind::Forbidden,
                format!("cross-origin request from {origin:?} refused"),
            );
        }
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let json = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
            });
        if !json {
            return refuse(
                ApiErrorKind::UnsupportedMediaType,
                format!(
                    "{} {} needs Content-Type: application/json (send {{}} when there is \
                     nothing to say)",
                    req.method(),
                    req.uri().path()
                ),
            );
        }
    }
    // A declared length over the limit is refused before any of the body is
    // read (the body limit layer would otherwise read 4 MiB first).
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT_BYTES as u64) {
        return refuse(
            ApiErrorKind::TooLarge,
            format!("request body over the limit of {BODY_LIMIT_BYTES} bytes"),
        );
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => refuse(
            ApiErrorKind::Unavailable,
            format!(
                "request took longer than {} s; what it started goes on (check the state)",
                REQUEST_TIMEOUT.as_secs()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:10810",
            "localhost:1",
            "LOCALHOST",
            "[::1]:10810",
            "127.0.0.2",
        ] {
            assert!(super::loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:10810",
            "10.0.0.1:10810",
            "",
            "[::2]:1",
            "localhost.evil:1",
            "127.0.0.1:24102@evil.com",
            "127.0.0.1:24102.evil.com",
            "localhost:@evil.com",
            "127.0.0.1:1/evil",
            "127.0.0.1:",
            "[::1]evil",
            "[::1]:1x",
            "::1",
        ] {
            assert!(!super::loopback_host(h), "{h}");
        }
    }
}
