//! A structured, proptest-based fuzzer of the control API's JSON bodies
//! (docs/SECURITY.md, "Fuzzing"). firmware-sim is a binary crate, so
//! cargo-fuzz cannot link it; this drives the real router, behind the real
//! guard, in process with `tower::ServiceExt::oneshot`.
//!
//! Each case boots a fresh node (three small volumes the requests may use,
//! and `KEEP01`, which no generated request names), writes a pattern to
//! `KEEP01` with FUA, then sends a sequence of POSTs to every route that takes
//! a body, with bodies that are
//! - arbitrary JSON values (nulls, bools, huge, negative and float numbers,
//!   long, unicode and control-character strings, nested arrays and objects);
//! - a valid body of that route with one field removed, replaced by an
//!   arbitrary value, or joined by an unknown one;
//! - bytes that are not JSON (random, truncated JSON, deep nesting, empty).
//!
//! Every answer must be a 2xx with a JSON body, or a 4xx whose body is the
//! API's `{error, kind}` with a non-empty message and a kind the client
//! crate knows and whose status it is: a bad body never gets a 5xx. After
//! the sequence, `KEEP01` still holds its pattern, the node shuts down
//! cleanly and the data directory passes `controller::check` (what
//! `firmware-sim check` runs).
//!
//! CI runs a few cases; `PROPTEST_CASES=N cargo test -p firmware-sim
//! api::fuzz_tests` runs N.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{header, Method, Request, StatusCode};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tower::ServiceExt;

use super::model::ErrorBody;
use super::{guard, router, AppState};
use crate::node::Node;

/// The `Host` every request names (a loopback one, as the guard requires
/// without a token), and the matching `Origin` a browser on the API's own
/// page would send.
const HOST: &str = "127.0.0.1:10810";
/// A volume no generated request names: its data must survive any sequence.
const KEEP: &str = "KEEP01";
/// Volumes the requests may name.
const VOLS: [&str; 4] = ["FB01", "FB02", "CK01", "CK02"];
const CONFIG: &str = r#"
id = "SS01"
host = "SYSA"

[[volumes]]
id = "FB01"
model = "fb:64M"

[[volumes]]
id = "FB02"
model = "fb:64M"

[[volumes]]
id = "CK01"
model = "3390-A:1"

[[volumes]]
id = "CK02"
model = "3390-A:1"

[[volumes]]
id = "KEEP01"
model = "fb:64M"
"#;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24)
}

/// Strings a field may hold: ids of the fixture, names, extents (sane and
/// absurd), unicode, control characters, long ones.
fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "FB01",
            "FB02",
            "CK01",
            "SS01",
            "SS01:FB01",
            "SS02:FB02",
            "SYSA",
            "S1",
            "nightly",
            "fb:64M",
            "fb:1M",
            "fb:0",
            "fb:64M:3K",
            "fb:99999999T",
            "fb:16E",
            "3390-1",
            "3390-A:0",
            "3390-A:99999999",
            "3390-9",
            "flash",
            "copy",
            "clone",
            "snapshot",
            "all",
            "0-0",
            "0-15",
            "15-0",
            "0-99999999",
            "18446744073709551615-0",
            "0-18446744073709551615",
            "FB01:0-3",
            "FB01:0-99999999",
            "FB01:0-3,FB02:0-3",
            "CK01:0-0",
            ",",
            "-",
            "",
            " ",
            "\u{0}",
            "\u{7f}\u{1b}[2J",
            "a\nb",
            "é",
            "☃",
            "\u{202e}FB01",
        ])
        .prop_map(str::to_string),
        "\\PC{0,24}",
        "[\\x00-\\x1f]{1,8}",
        "[A-Z0-9:,-]{0,16}",
        (1usize..9000).prop_map(|n| "x".repeat(n)),
    ]
}

fn any_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            json!(0),
            json!(1),
            json!(-1),
            json!(150),
            json!(151),
            json!(255),
            json!(256),
            json!(65536),
            json!(u32::MAX),
            json!(u64::from(u32::MAX) + 1),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1e300),
            json!(-0.0),
            json!(0.5),
        ]),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
    ]
}

/// Field names of the API's bodies, and some that are none of them.
fn any_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(FIELDS.to_vec()).prop_map(str::to_string),
        any_string(),
    ]
}

const FIELDS: [&str; 32] = [
    "id",
    "model",
    "source",
    "target",
    "type",
    "incremental",
    "extent",
    "extents",
    "copy_rate",
    "clean_rate",
    "name",
    "restore",
    "force",
    "maps",
    "map",
    "program",
    "host",
    "reason",
    "lose_volatile",
    "session",
    "pairs",
    "phys",
    "volumes",
    "hold_ms",
    "token",
    "session_id",
    "phys_session_id",
    "subsystem",
    "volume",
    "status",
    "time_unix_ms",
    "first",
];

/// Any JSON value, nested up to four deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any_number(),
        any_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any_key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn vol() -> impl Strategy<Value = String> {
    prop::sample::select(VOLS.to_vec()).prop_map(str::to_string)
}

fn rate() -> impl Strategy<Value = Value> {
    prop_oneof![Just(Value::Null), (0u8..=150).prop_map(Value::from)]
}

/// Extent lists as the port routes take them: in range, reversed, past
/// the end, at the top of u64.
fn extent_json() -> impl Strategy<Value = Value> {
    let bound = prop_oneof![
        8 => 0u64..64,
        1 => Just(16_383u64),
        1 => Just(16_384u64),
        1 => Just(u64::MAX),
    ];
    prop::collection::vec((bound.clone(), bound), 0..3).prop_map(|v| {
        Value::Array(
            v.into_iter()
                .map(|(a, b)| json!({"first": a, "last": b}))
                .collect(),
        )
    })
}

/// A route that takes a JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    CreateVolume,
    CreateMap,
    /// `/mappings/{id}/start|prepare|stop|restore`.
    MapAction(&'static str),
    CreateGroup,
    /// `/groups/{id}/start|stop`.
    GroupAction(&'static str),
    GroupAddMember,
    StartSession,
    /// `/sessions/{id}/complete|terminate|release`.
    SessionAction(&'static str),
    /// `/events/{event}`.
    Event,
    PortEstablish,
    PortWithdraw,
    PortFreeze,
    PortThaw,
    PortResume,
    PortAppend,
}

fn route() -> impl Strategy<Value = Route> {
    use Route as R;
    prop_oneof![
        3 => Just(R::CreateVolume),
        4 => Just(R::CreateMap),
        2 => prop::sample::select(vec!["start", "prepare", "stop", "restore"]).prop_map(R::MapAction),
        2 => Just(R::CreateGroup),
        1 => prop::sample::select(vec!["start", "stop"]).prop_map(R::GroupAction),
        1 => Just(R::GroupAddMember),
        3 => Just(R::StartSession),
        2 => prop::sample::select(vec!["complete", "terminate", "release"]).prop_map(R::SessionAction),
        1 => Just(R::Event),
        2 => Just(R::PortEstablish),
        1 => Just(R::PortWithdraw),
        1 => Just(R::PortFreeze),
        1 => Just(R::PortThaw),
        1 => Just(R::PortResume),
        2 => Just(R::PortAppend),
    ]
}

/// A path segment naming a map, group, session or event (existing or not).
fn path_id(r: Route) -> BoxedStrategy<String> {
    let odd = prop::sample::select(vec![
        "4294967295",
        "4294967296",
        "99999999999999999999",
        "-1",
        "x",
        "%20",
        "%E2%98%83",
        "%00",
        "..",
        "FB01",
    ]);
    let s = match r {
        Route::SessionAction(_) => prop_oneof![
            3 => prop::sample::select(vec!["S1", "S2", "BK"]),
            1 => odd
        ]
        .boxed(),
        Route::Event => prop_oneof![
            4 => prop::sample::select(vec!["ipl", "rm-restart", "abend", "reset"]),
            1 => odd
        ]
        .boxed(),
        _ => prop_oneof![
            3 => prop::sample::select(vec!["0", "1", "2", "3", "nightly"]),
            1 => odd
        ]
        .boxed(),
    };
    s.prop_map(str::to_string).boxed()
}

/// A valid (or nearly: ids may not exist) body of `r`.
fn valid_body(r: Route) -> BoxedStrategy<Map<String, Value>> {
    use Route as R;
    let obj = |v: Value| match v {
        Value::Object(m) => m,
        _ => unreachable!("bodies are objects"),
    };
    match r {
        R::CreateVolume => (
            prop::sample::select(vec!["NEW1", "NEW2", "FB01"]),
            prop::sample::select(vec![
                "fb:1M",
                "fb:64M",
                "3390-A:1",
                "fb:4M:64K",
                "fb:1T",
                "fb:1024T",
                "fb:8388608T",
                "3390-54",
                "3390-A:268434453",
            ]),
        )
            .prop_map(move |(id, model)| obj(json!({"id": id, "model": model})))
            .boxed(),
        R::CreateMap => (
            prop_oneof![
                4 => prop::sample::select(vec![
                    ("FB01", "FB02"),
                    ("FB02", "FB01"),
                    ("CK01", "CK02"),
                    ("CK02", "CK01"),
                ])
                .prop_map(|(s, t)| (s.to_string(), t.to_string())),
                1 => (vol(), vol()),
            ],
            prop::sample::select(vec!["full", "nocopy"]),
            any::<bool>(),
            prop_oneof![
                Just(Value::Null),
                Just(json!("0-3")),
                Just(json!("2-9,12-12")),
                Just(json!("00000000-00000003"))
            ],
            rate(),
            rate(),
            prop_oneof![Just(Value::Null), (0u32..4).prop_map(Value::from)],
            prop_oneof![Just(Value::Null), Just(json!("nightly"))],
        )
            .prop_map(move |((s, t), ty, inc, ext, cr, cl, id, name)| {
                let inc = inc && ty == "full";
                obj(
                    json!({"source": s, "target": t, "type": ty, "incremental": inc,
                    "extent": ext, "copy_rate": cr, "clean_rate": cl, "id": id, "name": name}),
                )
            })
            .boxed(),
        R::MapAction("restore") => rate()
            .prop_map(move |cr| obj(json!({ "copy_rate": cr })))
            .boxed(),
        R::MapAction("stop") | R::GroupAction("stop") => any::<bool>()
            .prop_map(move |f| obj(json!({ "force": f })))
            .boxed(),
        R::MapAction(_) | R::GroupAction(_) => any::<bool>()
            .prop_map(move |f| obj(json!({ "restore": f })))
            .boxed(),
        R::CreateGroup => (
            prop_oneof![Just(Value::Null), (0u32..4).prop_map(Value::from)],
            prop_oneof![Just(Value::Null), Just(json!("g"))],
            prop::collection::vec(0u32..4, 1..3),
        )
            .prop_map(move |(id, name, maps)| obj(json!({"id": id, "name": name, "maps": maps})))
            .boxed(),
        R::GroupAddMember => (0u32..4)
            .prop_map(move |m| obj(json!({ "map": m })))
            .boxed(),
        R::StartSession => (
            prop::sample::select(vec!["S1", "S2", "BK"]),
            (vol(), 0u64..8, 0u64..8),
            vol(),
            prop_oneof![Just(Value::Null), Just(json!("DFSMSdss"))],
            prop_oneof![Just(Value::Null), Just(json!("SYSA")), Just(json!("SYSB"))],
            rate(),
        )
            .prop_map(move |(id, (v, a, b), t, p, h, cr)| {
                obj(
                    json!({"id": id, "extent": format!("{v}:{}-{}", a.min(b), a.max(b)),
                    "target": t, "program": p, "host": h, "copy_rate": cr}),
                )
            })
            .boxed(),
        R::SessionAction(_) => prop_oneof![Just(Value::Null), Just(json!("operator"))]
            .prop_map(move |reason| obj(json!({ "reason": reason })))
            .boxed(),
        R::Event => (
            prop_oneof![Just(Value::Null), Just(json!("DFSMSdss"))],
            prop_oneof![Just(Value::Null), Just(json!("SYSA")), Just(json!("SYSB"))],
            any::<bool>(),
        )
            .prop_map(move |(p, h, lose)| {
                obj(json!({"program": p, "host": h, "lose_volatile": lose}))
            })
            .boxed(),
        R::PortEstablish => (
            prop::sample::select(vec!["S1", "S2", "BK"]),
            prop::collection::vec((vol(), extent_json(), vol(), rate()), 0..3),
        )
            .prop_map(move |(s, pairs)| {
                let pairs: Vec<Value> = pairs
                    .into_iter()
                    .map(|(src, ext, t, cr)| {
                        json!({"source": src, "extents": ext, "target": t, "copy_rate": cr})
                    })
                    .collect();
                obj(json!({"session": s, "host": "SYSA", "pairs": pairs}))
            })
            .boxed(),
        R::PortWithdraw => (prop::sample::select(vec!["S1", "S2", "BK"]), 1u8..4)
            .prop_map(move |(s, p)| obj(json!({"session": s, "phys": p})))
            .boxed(),
        R::PortFreeze => (
            prop::collection::vec(vol(), 0..3),
            prop_oneof![4 => 0u64..50, 1 => Just(u64::MAX)],
        )
            .prop_map(move |(v, ms)| obj(json!({"volumes": v, "hold_ms": ms})))
            .boxed(),
        R::PortThaw => (0u64..4)
            .prop_map(move |t| obj(json!({ "token": t })))
            .boxed(),
        R::PortResume => (1u8..4)
            .prop_map(move |p| obj(json!({ "phys": p })))
            .boxed(),
        R::PortAppend => (
            prop::sample::select(vec!["S1", "S2", "BK"]),
            1u8..4,
            prop_oneof![Just(Value::Null), vol().prop_map(Value::String)],
            extent_json(),
            prop::sample::select(vec![
                json!("initiated"),
                json!("completed"),
                json!("resumed"),
                json!("logically-complete"),
                json!({"terminated": {"reason": "operator"}}),
            ]),
        )
            .prop_map(move |(s, p, v, ext, st)| {
                obj(
                    json!({"session_id": s, "phys_session_id": p, "subsystem": "SS01",
                    "volume": v, "extents": ext, "status": st, "program": null,
                    "host": "SYSA", "time_unix_ms": 1}),
                )
            })
            .boxed(),
    }
}

/// One field of a valid body changed.
#[derive(Debug, Clone)]
enum Mutation {
    None,
    Remove(prop::sample::Index),
    Replace(prop::sample::Index, Value),
    Add(String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => Just(Mutation::None),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Remove),
        4 => (any::<prop::sample::Index>(), any_json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        1 => (any_key(), any_json()).prop_map(|(k, v)| Mutation::Add(k, v)),
    ]
}

fn mutate(mut m: Map<String, Value>, how: Mutation) -> Map<String, Value> {
    let keys: Vec<String> = m.keys().cloned().collect();
    match how {
        Mutation::None => {}
        Mutation::Remove(i) if !keys.is_empty() => {
            m.remove(&keys[i.index(keys.len())]);
        }
        Mutation::Replace(i, v) if !keys.is_empty() => {
            m.insert(keys[i.index(keys.len())].clone(), v);
        }
        Mutation::Add(k, v) => {
            m.insert(k, v);
        }
        Mutation::Remove(_) | Mutation::Replace(..) => {}
    }
    m
}

/// A body of route `r`: bytes as sent.
fn body_for(r: Route) -> impl Strategy<Value = Vec<u8>> {
    let valid = (valid_body(r), mutation()).prop_map(move |(m, how)| {
        let m = mutate(m, how);
        // /port/append takes a list of entries.
        let v = if r == Route::PortAppend {
            json!([m])
        } else {
            Value::Object(m)
        };
        serde_json::to_vec(&v).expect("a JSON value serializes")
    });
    let arbitrary = any_json().prop_map(|v| serde_json::to_vec(&v).expect("serializes"));
    let truncated = (valid_body(r), any::<prop::sample::Index>()).prop_map(|(m, i)| {
        let mut b = serde_json::to_vec(&Value::Object(m)).expect("serializes");
        let cut = i.index(b.len());
        b.truncate(cut);
        b
    });
    let raw = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        Just(Vec::new()),
        Just(b"   ".to_vec()),
        (1usize..4000).prop_map(|n| "[".repeat(n).into_bytes()),
        (1usize..400)
            .prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes()),
        Just(b"{\"id\": \"\xff\xfe\"}".to_vec()),
        Just(b"{\"id\":1e99999}".to_vec()),
        Just(b"{} {}".to_vec()),
        Just(b"\xef\xbb\xbf{}".to_vec()),
    ];
    prop_oneof![5 => valid, 3 => arbitrary, 1 => truncated, 1 => raw]
}

/// One request: method POST, a path, a body.
#[derive(Clone)]
struct Req {
    path: String,
    body: Vec<u8>,
    /// Send `Origin` (the API's own) too.
    origin: bool,
    /// `application/json; charset=utf-8` rather than the bare type.
    charset: bool,
}

/// The body as text (lossy), so a failing case reads as the request it is.
impl std::fmt::Debug for Req {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Req")
            .field("path", &self.path)
            .field("body", &String::from_utf8_lossy(&self.body))
            .field("origin", &self.origin)
            .field("charset", &self.charset)
            .finish()
    }
}

fn request() -> impl Strategy<Value = Req> {
    route().prop_flat_map(|r| {
        (path_id(r), body_for(r), any::<bool>(), any::<bool>()).prop_map(
            move |(id, body, origin, charset)| {
                let path = match r {
                    Route::CreateVolume => "/volumes".to_string(),
                    Route::CreateMap => "/mappings".to_string(),
                    Route::MapAction(a) => format!("/mappings/{id}/{a}"),
                    Route::CreateGroup => "/groups".to_string(),
                    Route::GroupAction(a) => format!("/groups/{id}/{a}"),
                    Route::GroupAddMember => format!("/groups/{id}/maps"),
                    Route::StartSession => "/sessions".to_string(),
                    Route::SessionAction(a) => format!("/sessions/{id}/{a}"),
                    Route::Event => format!("/events/{id}"),
                    Route::PortEstablish => "/port/establish".to_string(),
                    Route::PortWithdraw => "/port/withdraw".to_string(),
                    Route::PortFreeze => "/port/freeze".to_string(),
                    Route::PortThaw => "/port/thaw".to_string(),
                    Route::PortResume => "/port/resume".to_string(),
                    Route::PortAppend => "/port/append".to_string(),
                };
                Req {
                    path,
                    body,
                    origin,
                    charset,
                }
            },
        )
    })
}

/// Valid requests that give the generated ones maps, a group and a session
/// to act on (maps 1 and 2, group 1 of map 1, session S1).
fn prelude_requests() -> Vec<Req> {
    [
        ("/mappings", json!({"source": "FB01", "target": "FB02", "type": "full", "id": 1})),
        (
            "/mappings",
            json!({"source": "CK01", "target": "CK02", "type": "nocopy", "id": 2, "name": "nightly"}),
        ),
        ("/groups", json!({"id": 1, "maps": [1]})),
        ("/sessions", json!({"id": "S1", "extent": "FB02:0-7", "target": "FB01"})),
    ]
    .into_iter()
    .map(|(path, body)| Req {
        path: path.into(),
        body: body.to_string().into_bytes(),
        origin: false,
        charset: false,
    })
    .collect()
}

const PATTERN_BYTES: usize = 256 << 10;

fn pattern() -> Vec<u8> {
    (0..PATTERN_BYTES)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect()
}

/// Sends `r` through the router and checks the answer; `Err` says what was
/// wrong with it.
async fn send(app: &axum::Router, r: &Req) -> Result<StatusCode, String> {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(&r.path)
        .header(header::HOST, HOST)
        .header(
            header::CONTENT_TYPE,
            if r.charset {
                "application/json; charset=utf-8"
            } else {
                "application/json"
            },
        );
    if r.origin {
        b = b.header(header::ORIGIN, format!("http://{HOST}"));
    }
    let req = b
        .body(Body::from(r.body.clone()))
        .map_err(|e| format!("request: {e}"))?;
    let resp = app
        .clone()
        .oneshot(req)
        .await
        .map_err(|e| format!("router: {e}"))?;
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), usize::MAX)
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    if status.is_success() {
        serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| format!("{status} answer is not JSON ({e}): {text}"))?;
        return Ok(status);
    }
    let err: ErrorBody = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{status} answer is not the API's error body ({e}): {text}"))?;
    if err.error.trim().is_empty() {
        return Err(format!("{status} answer with an empty message: {text}"));
    }
    let kind = firmware_sim_client::ErrorKind::parse(&err.kind);
    if kind.known_name().is_none() {
        return Err(format!("{status} answer of an unknown kind: {text}"));
    }
    if status.is_server_error() {
        return Err(format!("a bad request got {status}: {text}"));
    }
    // Every request is built to pass the guard (loopback Host, JSON
    // Content-Type, own Origin): a refusal there means the bodies never
    // reached the handlers.
    if matches!(
        status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::UNSUPPORTED_MEDIA_TYPE
    ) {
        return Err(format!("the guard refused the request: {status}: {text}"));
    }
    if !status.is_client_error() {
        return Err(format!("unexpected status {status}: {text}"));
    }
    Ok(status)
}

/// Boots a node, runs `reqs`, and checks everything the module doc promises.
fn run_sequence(reqs: &[Req]) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let config = controller::SubsystemConfig::from_toml_str(CONFIG).map_err(|e| e.to_string())?;
    let node = Arc::new(
        Node::open(dir.path(), config, rt.handle().clone())
            .map_err(|e| format!("boot: {}", e.full_message()))?,
    );
    let data = pattern();
    let offset = 3 << 20;
    node.with(|s| s.write(KEEP, offset, &data, true))
        .map_err(|e| format!("writing {KEEP}: {}", e.full_message()))?;
    // As the daemon builds it for a loopback bind without a token or TLS.
    let guard = guard::Guard {
        token: None,
        scheme: "http",
    };
    let app = router(AppState { node: node.clone() }, guard);
    let outcome: Result<(), String> = rt.block_on(async {
        for (i, r) in reqs.iter().enumerate() {
            send(&app, r)
                .await
                .map_err(|e| format!("request {i} POST {}: {e}", r.path))?;
        }
        Ok(())
    });
    drop(app);
    outcome?;
    let mut back = vec![0u8; PATTERN_BYTES];
    node.with(|s| s.read(KEEP, offset, &mut back))
        .map_err(|e| format!("reading {KEEP} back: {}", e.full_message()))?;
    if back != data {
        return Err(format!("{KEEP} changed though no request named it"));
    }
    node.close()
        .map_err(|e| format!("shutdown: {}", e.full_message()))?;
    drop(node);
    rt.shutdown_timeout(std::time::Duration::from_secs(10));
    let report =
        controller::check(dir.path()).map_err(|e| format!("check: {}", e.full_message()))?;
    if !report.ok {
        return Err(format!("check found errors: {:?}", report.errors));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn json_bodies_never_break_the_api(
        prelude in any::<bool>(),
        reqs in prop::collection::vec(request(), 1..32),
    ) {
        let mut all = if prelude { prelude_requests() } else { Vec::new() };
        all.extend(reqs);
        if let Err(e) = run_sequence(&all) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// What the fuzzer found, as fixed sequences (proptest's seed files do not
/// survive a change of the generators; these do).
#[test]
fn found_cases_stay_fixed() {
    let req = |path: &str, body: Value| Req {
        path: path.into(),
        body: body.to_string().into_bytes(),
        origin: false,
        charset: false,
    };
    // A volume larger than the filesystem's largest file (ext4: 16 TiB)
    // and one larger than any file: was a 500 "I/O error: File too large".
    for model in ["fb:1024T", "fb:8388608T"] {
        run_sequence(&[req("/volumes", json!({"id": "NEW1", "model": model}))])
            .unwrap_or_else(|e| panic!("{model}: {e}"));
    }
    // A program name the activity tables refuse (a control character):
    // was a 500 "subsystem failure" from the table append, after the
    // physical session had been established and had to be rolled back.
    for program in ["\u{0}", "tab\there", &"p".repeat(257)] {
        run_sequence(&[req(
            "/sessions",
            json!({"id": "S1", "extent": "FB01:0-0", "target": "FB02", "program": program}),
        )])
        .unwrap_or_else(|e| panic!("program {program:?}: {e}"));
    }
}

/// The fuzzer's oracle is not vacuous: a 5xx, a non-JSON error, an empty
/// message and a guard refusal are each reported.
#[test]
fn the_oracle_rejects_what_it_must() {
    use axum::routing::post;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route(
            "/five",
            post(|| async { super::ApiError::new(super::ApiErrorKind::Internal, "disk on fire") }),
        )
        .route(
            "/text",
            post(|| async { (StatusCode::BAD_REQUEST, "plain text") }),
        )
        .route(
            "/empty",
            post(|| async { super::ApiError::bad_request("  ") }),
        )
        .route(
            "/guard",
            post(|| async { super::ApiError::new(super::ApiErrorKind::Forbidden, "foreign") }),
        )
        .route("/ok", post(|| async { axum::Json(json!({"fine": true})) }));
    let req = |path: &str| Req {
        path: path.into(),
        body: b"{}".to_vec(),
        origin: false,
        charset: false,
    };
    rt.block_on(async {
        assert!(send(&app, &req("/five")).await.unwrap_err().contains("500"));
        assert!(send(&app, &req("/text")).await.is_err());
        assert!(send(&app, &req("/empty"))
            .await
            .unwrap_err()
            .contains("empty"));
        assert!(send(&app, &req("/guard"))
            .await
            .unwrap_err()
            .contains("guard"));
        assert_eq!(send(&app, &req("/ok")).await.unwrap(), StatusCode::OK);
    });
}
