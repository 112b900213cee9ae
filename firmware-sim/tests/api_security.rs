//! The control API against a web page in the user's browser and clients on
//! a network (issue 14; docs/SECURITY.md): JSON-only state changes, foreign
//! origins refused, a token required off loopback, bounded bodies.

mod common;

use common::{assert_fails_with, http, http_with, run, Daemon, BIN};

const EXIT_FAILED: i32 = 1;
const EXIT_USAGE: i32 = 2;

fn kind(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .map(|v| v["kind"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[test]
fn cross_site_requests_and_non_json_state_changes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let base = format!("http://{}", d.api);
    let m = d.cli_json(&[
        "map", "create", "--source", "FB00", "--target", "FB01", "--type", "nocopy",
    ]);
    let start = format!("{base}/mappings/{}/start", m["id"]);

    // A plain cross-site form post: no JSON content type.
    let (status, text) = http("POST", &start, None);
    assert_eq!(
        (status, kind(&text).as_str()),
        (415, "unsupported_media_type"),
        "{text}"
    );
    // fetch() from another origin with JSON: the Origin header gives it away.
    let (status, text) = http_with(
        "POST",
        &start,
        Some("{}"),
        &[("origin", "http://evil.example")],
    );
    assert_eq!((status, kind(&text).as_str()), (403, "forbidden"), "{text}");
    let state = d.cli_json(&["map", "show", &m["id"].to_string()]);
    assert_eq!(
        state["state"], "idle_or_copied",
        "nothing was started: {state}"
    );
    // Its own origin (a page served by the API itself) is fine.
    let own = format!("http://{}", d.api);
    let (status, text) = http_with("POST", &start, Some("{}"), &[("origin", &own)]);
    assert_eq!(status, 200, "{text}");
    // DNS rebinding: the page's own name as Host, with a matching Origin.
    let (status, text) = http_with(
        "POST",
        &start,
        Some("{}"),
        &[
            ("host", "evil.example:10810"),
            ("origin", "http://evil.example:10810"),
        ],
    );
    assert_eq!((status, kind(&text).as_str()), (403, "forbidden"), "{text}");
    // Reads need nothing.
    assert_eq!(http("GET", &format!("{base}/volumes"), None).0, 200);
    // A body over the limit is refused from its declared length, before it
    // is sent. (Sending 5 MiB with a client that writes the whole body
    // before reading races the server's early close: EPIPE instead of 413.)
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    use std::io::{Read, Write};
    write!(
        s,
        "POST /volumes HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        5u64 << 20
    )
    .unwrap();
    let mut head = [0u8; 512];
    let n = s.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    // A body under the limit is read and judged on its content (no 413).
    let ok = format!("{{\"id\":\"{}\"}}", "x".repeat(1 << 10));
    let (status, _) = http("POST", &format!("{base}/volumes"), Some(&ok));
    assert_ne!(status, 413);
}

#[test]
fn a_token_is_required_off_loopback_and_then_on_every_request() {
    let tmp = tempfile::tempdir().unwrap();
    // Off loopback without a token: refused, naming the flag.
    let data = tmp.path().join("refused");
    let out = run(
        BIN,
        &[
            "boot",
            "--data-dir",
            data.to_str().unwrap(),
            "--api",
            "0.0.0.0:0",
            "--nbd",
            "127.0.0.1:0",
        ],
    );
    assert_fails_with(
        &out,
        EXIT_USAGE,
        "--api-token-file",
        "non-loopback API without a token",
    );
    let short = tmp.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    let out = run(
        BIN,
        &[
            "boot",
            "--data-dir",
            data.to_str().unwrap(),
            "--api-token-file",
            short.to_str().unwrap(),
        ],
    );
    assert_fails_with(&out, EXIT_USAGE, "at least 16", "a guessable token");

    let token = tmp.path().join("token");
    std::fs::write(&token, "s3cret-token-0123456789\n").unwrap();
    let d = Daemon::boot_with(tmp.path(), &["--api-token-file", token.to_str().unwrap()]);
    let base = format!("http://{}", d.api);
    let (status, text) = http("GET", &format!("{base}/volumes"), None);
    assert_eq!(
        (status, kind(&text).as_str()),
        (401, "unauthorized"),
        "{text}"
    );
    assert_eq!(
        http("GET", &format!("{base}/health"), None).0,
        200,
        "liveness stays open"
    );
    let (status, text) = http("GET", &format!("{base}/openapi.json"), None);
    assert_eq!(status, 200, "the API's description needs no token: {text}");
    assert!(text.contains("\"openapi\""), "{text}");
    let (status, text) = http_with(
        "GET",
        &format!("{base}/volumes"),
        None,
        &[("authorization", "Bearer wrong-token-0123456789")],
    );
    assert_eq!(status, 401);
    assert!(
        text.contains("does not match"),
        "a wrong token is named: {text}"
    );
    // The scheme name is case-insensitive (RFC 7235).
    let (status, text) = http_with(
        "GET",
        &format!("{base}/volumes"),
        None,
        &[("authorization", "bearer s3cret-token-0123456789")],
    );
    assert_eq!(status, 200, "{text}");
    // The CLI: refused without the token, served with --token-file or the env.
    let out = d.cli(&["volume", "list"]);
    assert_fails_with(&out, EXIT_FAILED, "--token-file", "CLI without a token");
    let out = d.cli(&["volume", "list", "--token-file", token.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let out = std::process::Command::new(BIN)
        .args(["volume", "list", "--api", &d.api])
        .env("FIRMWARE_SIM_API_TOKEN", "s3cret-token-0123456789")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A path or query the router cannot parse is refused as JSON like every
/// other refusal, never axum's plain-text rejection.
#[test]
fn unparsable_paths_and_queries_are_refused_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let base = format!("http://{}", d.api);
    for (method, path) in [
        ("GET", "/port/sessions/abc"),
        ("GET", "/port/sessions/300"),
        ("DELETE", "/mappings/0?force=maybe"),
    ] {
        let (status, text) = http(method, &format!("{base}{path}"), None);
        assert_eq!(
            (status, kind(&text).as_str()),
            (400, "bad_request"),
            "{method} {path}: {text}"
        );
    }
}

/// QA: request input was echoed and logged unbounded: a 100,000-byte
/// volume id came back whole in the 400, and a terminate `reason` of any
/// size went into one log line. Both are bounded now.
#[test]
fn hostile_lengths_are_refused_without_being_echoed_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let id = "A".repeat(100_000);
    let body = format!(r#"{{"id":"{id}","model":"fb:16M"}}"#);
    let (code, answer) = http("POST", &format!("http://{}/volumes", d.api), Some(&body));
    assert_eq!(code, 400, "{}", &answer[..answer.len().min(300)]);
    assert!(answer.len() < 1_000, "echoed {} bytes", answer.len());
    assert!(answer.contains("100000 bytes"), "{answer}");
    let reason = "r".repeat(10_000);
    let body = format!(r#"{{"reason":"{reason}"}}"#);
    let (code, answer) = http(
        "POST",
        &format!("http://{}/sessions/S1/terminate", d.api),
        Some(&body),
    );
    assert_eq!(code, 400, "{}", &answer[..answer.len().min(300)]);
    assert!(answer.contains("at most 256"), "{answer}");
    assert!(!d.log_text().contains(&reason), "the reason was logged");
}

/// The `host:port` of the daemon's API.
fn api_addr(d: &Daemon) -> String {
    d.api.trim_start_matches("http://").to_string()
}

#[test]
fn a_half_sent_request_is_dropped_and_does_not_hold_a_clean_stop() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot_with(tmp.path(), &["--api-header-timeout", "2"]);
    // QA: half a request header held SIGTERM for as long as its client
    // stayed, and 20,000 of them took every file descriptor.
    let mut half = std::net::TcpStream::connect(api_addr(&d)).unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    half.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 512];
    // The header timeout (2 s here) ends it: an error answer or a close.
    let _ = half.read(&mut buf);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "a half-sent request stayed open {:?}",
        t.elapsed()
    );
    // Another one, open while the daemon stops: the stop still ends.
    let mut other = std::net::TcpStream::connect(api_addr(&d)).unwrap();
    other
        .write_all(b"POST /events/ipl HTTP/1.1\r\nHost: 127")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let status = d.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        t.elapsed() < Duration::from_secs(25),
        "SIGTERM took {:?} with a half-sent request open",
        t.elapsed()
    );
}
