//! The typed Rust client (firmware-sim-client) against a real daemon, and
//! nothing else: point-in-time copies, groups, sessions, tables, events and
//! the API's error kinds, each through one typed method.

mod common;

use std::time::Duration;

use common::nbd_client::NbdConn;
use common::Daemon;
use firmware_sim_client::model::{CreateGroup, CreateMap, CreateVolume, StartSession};
use firmware_sim_client::{Client, ClientError, ErrorKind, Event};

/// The API kind of a failed call (panics on success or a transport error).
fn kind<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorKind {
    match r {
        Err(ClientError::Api { kind, .. }) => kind,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn volume(c: &Client, id: &str) {
    let v = c
        .create_volume(&CreateVolume {
            id: id.into(),
            model: "fb:16M".into(),
        })
        .unwrap();
    assert_eq!((v.id.as_str(), v.size_bytes), (id, 16 << 20));
}

#[test]
fn a_point_in_time_copy_through_the_typed_client() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let c = Client::new(&d.api);

    let h = c.health().unwrap();
    assert_eq!(h.status, "ok");
    volume(&c, "SRC");
    volume(&c, "SNAP");
    volume(&c, "FULL");
    let vols: Vec<String> = c.volumes().unwrap().into_iter().map(|v| v.id).collect();
    assert!(
        ["SRC", "SNAP", "FULL"]
            .iter()
            .all(|v| vols.contains(&v.to_string())),
        "{vols:?}"
    );
    assert_eq!(c.health().unwrap().volumes, h.volumes + 3);

    let mut src = NbdConn::open(&d.nbd_addr(), "SRC");
    src.write(0, &[0x11; 65536]);

    // A nocopy map, by name: created idle, started, its target holds the
    // source as it was at the start.
    let m = c
        .create_map(&CreateMap {
            source: "SRC".into(),
            target: "SNAP".into(),
            copy_type: "nocopy".into(),
            name: Some("nightly".into()),
            ..CreateMap::default()
        })
        .unwrap();
    assert_eq!(m.state, "idle_or_copied");
    assert_eq!(m.name.as_deref(), Some("nightly"));
    assert_eq!(c.map_id("nightly").unwrap(), m.id);
    assert_eq!(c.map_id(&m.id.to_string()).unwrap(), m.id);
    // Waiting on a map never started is refused at once.
    assert_eq!(
        kind(c.wait_map("nightly", None, |_| {})),
        ErrorKind::WrongState
    );

    let started = c.start_map("nightly", false).unwrap();
    assert_eq!((started.id, started.state.as_str()), (m.id, "copying"));
    src.write(0, &[0x22; 65536]);
    let mut snap = NbdConn::open(&d.nbd_addr(), "SNAP");
    assert!(
        snap.read(0, 65536).iter().all(|b| *b == 0x11),
        "the image at the start"
    );
    assert!(src.read(0, 65536).iter().all(|b| *b == 0x22));

    let shown = c.map(&m.id.to_string()).unwrap();
    assert_eq!(shown.state, "copying");
    assert_eq!(
        (shown.source.as_str(), shown.target.as_str()),
        ("SRC", "SNAP")
    );
    let cascade = shown.cascade.expect("a started map is in a cascade");
    assert_eq!(cascade.order, ["SRC", "SNAP"]);
    assert!(c
        .cascades()
        .unwrap()
        .iter()
        .any(|k| k.order == ["SRC", "SNAP"] && k.maps == [m.id]));
    assert!(c.maps().unwrap().iter().any(|x| x.id == m.id));
    let v = c.volume("SRC").unwrap();
    assert!(v.mappings.contains(&m.id), "{v:?}");
    // A nocopy map copies only on write: waiting on it would never end.
    assert_eq!(
        kind(c.wait_map("nightly", None, |_| {})),
        ErrorKind::WrongState
    );

    // A full map copies in the background; the wait reports each poll.
    let full = c
        .create_map(&CreateMap {
            source: "SRC".into(),
            target: "FULL".into(),
            copy_type: "full".into(),
            copy_rate: Some(150),
            ..CreateMap::default()
        })
        .unwrap();
    let fid = full.id.to_string();
    c.start_map(&fid, false).unwrap();
    let mut polls = 0;
    let done = c
        .wait_map(&fid, Some(Duration::from_secs(120)), |_| polls += 1)
        .unwrap();
    assert!(polls >= 1);
    assert!(done.settled(), "{done:?}");
    assert_eq!(done.progress_percent, 100);
    let mut full_vol = NbdConn::open(&d.nbd_addr(), "FULL");
    assert!(full_vol.read(0, 65536).iter().all(|b| *b == 0x22));

    // Each error is its kind.
    assert_eq!(kind(c.map("999")), ErrorKind::UnknownMap);
    match c.start_map("999", false) {
        Err(ClientError::Api {
            status, message, ..
        }) => {
            assert_eq!(status, 404);
            assert!(message.contains("999"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(kind(c.volume("NOPE")), ErrorKind::UnknownVolume);
    assert_eq!(
        kind(c.create_volume(&CreateVolume {
            id: "SRC".into(),
            model: "fb:16M".into()
        })),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(c.create_volume(&CreateVolume {
            id: "X1".into(),
            model: "3390-0".into()
        })),
        ErrorKind::BadRequest
    );
    assert_eq!(
        kind(c.create_map(&CreateMap {
            source: "SRC".into(),
            target: "SNAP".into(),
            copy_type: "full".into(),
            extent: Some("99999-100000".into()),
            ..CreateMap::default()
        })),
        ErrorKind::BadExtent
    );
    assert_eq!(kind(c.delete_volume("SRC")), ErrorKind::Busy);
    assert!(matches!(
        c.start_map("../volumes", false),
        Err(ClientError::InvalidId { .. })
    ));

    // Stop and delete.
    let stopped = c.stop_map("nightly", true).unwrap();
    assert!(
        matches!(stopped.state.as_str(), "stopped" | "idle_or_copied"),
        "{stopped:?}"
    );
    let gone = c.delete_map("nightly", true).unwrap();
    assert!(gone.message.contains(&m.id.to_string()), "{}", gone.message);
    assert_eq!(kind(c.map("nightly")), ErrorKind::UnknownMap);
    assert!(c.metrics().unwrap().contains("# TYPE"));
}

#[test]
fn groups_sessions_tables_and_events_through_the_typed_client() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let c = Client::new(&d.api);
    for v in ["A", "B", "C", "D", "T"] {
        volume(&c, v);
    }

    // A consistency group of two maps, started at one instant.
    let new_map = |s: &str, t: &str| {
        c.create_map(&CreateMap {
            source: s.into(),
            target: t.into(),
            copy_type: "nocopy".into(),
            ..CreateMap::default()
        })
        .unwrap()
        .id
    };
    let (m1, m2) = (new_map("A", "B"), new_map("C", "D"));
    let g = c
        .create_group(&CreateGroup {
            id: None,
            name: Some("pair".into()),
            maps: vec![m1],
        })
        .unwrap();
    assert_eq!(g.maps, [m1]);
    let members = c.add_group_map("pair", m2).unwrap();
    assert_eq!(members.len(), 2);
    let started = c.start_group("pair", false).unwrap();
    assert!(started.iter().all(|m| m.state == "copying"), "{started:?}");
    let listed = c.groups().unwrap();
    let pair = listed.iter().find(|x| x.id == g.id).unwrap();
    assert_eq!(pair.state, "copying");
    assert_eq!(kind(c.remove_group_map("pair", m2)), ErrorKind::WrongState);
    let stopped = c.stop_group("pair", true).unwrap();
    assert!(stopped.iter().all(|m| m.state != "copying"), "{stopped:?}");
    assert_eq!(c.remove_group_map("pair", m2).unwrap().len(), 1);
    c.delete_group("pair", true).unwrap();
    assert_eq!(kind(c.start_group("pair", false)), ErrorKind::UnknownGroup);

    // A session: started, waited for, completed; its rows are in the table.
    let s = c
        .start_session(&StartSession {
            id: "BK1".into(),
            extent: "A:0-3".into(),
            target: "T".into(),
            program: Some("BACKUP".into()),
            host: None,
            copy_rate: Some(150),
        })
        .unwrap();
    assert_eq!(s.state, "active");
    assert_eq!(c.session("BK1").unwrap().program.as_deref(), Some("BACKUP"));
    let copied = c
        .wait_session("BK1", Some(Duration::from_secs(120)), |_| {})
        .unwrap();
    assert!(copied.copied() || copied.state == "completed", "{copied:?}");
    assert_eq!(c.complete_session("BK1").unwrap().state, "completed");
    assert_eq!(kind(c.session("NOPE")), ErrorKind::UnknownSession);
    assert_eq!(kind(c.complete_session("NOPE")), ErrorKind::UnknownSession);
    let rows = c.table(None).unwrap();
    assert!(
        rows.iter()
            .any(|r| r.session_id == "BK1" && r.status == "completed"),
        "{rows:?}"
    );
    assert!(c.table(Some("A")).unwrap().iter().all(|r| r.table == "A"));
    assert_eq!(kind(c.table(Some("NOPE"))), ErrorKind::UnknownVolume);

    // An abend ends the open sessions of its program, and says so.
    c.start_session(&StartSession {
        id: "BK2".into(),
        extent: "C:0-3".into(),
        target: "T".into(),
        program: Some("BACKUP".into()),
        host: None,
        copy_rate: Some(0),
    })
    .unwrap();
    // Rate 0: a wait without a timeout would never end, so it is refused.
    assert_eq!(
        kind(c.wait_session("BK2", None, |_| {})),
        ErrorKind::WrongState
    );
    let report = c
        .event(&Event::Abend {
            program: "BACKUP".into(),
            host: None,
        })
        .unwrap();
    assert!(
        report
            .decisions
            .iter()
            .any(|x| x.session == "BK2" && x.outcome == "terminated" && x.acted),
        "{report:?}"
    );
    let bk2 = c.session("BK2").unwrap();
    assert_eq!(bk2.state, "terminated");
    assert_eq!(
        kind(c.wait_session("BK2", None, |_| {})),
        ErrorKind::WrongState
    );
    assert_eq!(
        kind(c.post::<serde_json::Value>("/events/nonsense", &serde_json::json!({}))),
        ErrorKind::NotFound
    );
}

#[test]
fn the_token_and_the_openapi_document_through_the_typed_client() {
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("token");
    std::fs::write(&token, "s3cret-token-0123456789\n").unwrap();
    let d = Daemon::boot_with(tmp.path(), &["--api-token-file", token.to_str().unwrap()]);

    let anonymous = Client::new(&d.api);
    assert_eq!(anonymous.health().unwrap().status, "ok");
    match anonymous.volumes() {
        Err(ClientError::Api { status, kind, .. }) => {
            assert_eq!((status, kind), (401, ErrorKind::Unauthorized))
        }
        other => panic!("{other:?}"),
    }
    // The description needs no token, and is the checked-in one.
    let served = anonymous.openapi().unwrap();
    let checked_in: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(served, checked_in);

    let t = firmware_sim_client::resolve_token(None, Some(&token)).unwrap();
    let c = Client::new(&d.api).with_token(t);
    assert!(!c.volumes().unwrap().is_empty());
    assert!(
        !format!("{c:?}").contains("s3cret"),
        "Debug hides the token"
    );

    // Nothing listening: a transport error naming the address.
    match Client::new("127.0.0.1:1").maps() {
        Err(ClientError::Transport { addr, .. }) => assert_eq!(addr, "127.0.0.1:1"),
        other => panic!("{other:?}"),
    }
}

/// `GET /events` (the status page's "Recent events"): controller state
/// changes in words, kept across an IPL, which is recorded too; events after
/// the IPL come from the new subsystem handle.
#[test]
fn recent_events_follow_the_subsystem_across_an_ipl() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let c = Client::new(&d.api);
    let texts = |c: &Client| -> Vec<String> {
        c.recent_events()
            .unwrap()
            .into_iter()
            .map(|e| e.text)
            .collect()
    };
    let m = c
        .create_map(&CreateMap {
            source: "FB00".into(),
            target: "FB01".into(),
            copy_type: "nocopy".into(),
            ..Default::default()
        })
        .unwrap();
    c.start_map(&m.id.to_string(), false).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !texts(&c)
        .iter()
        .any(|t| t == "SS01: map 0 prepared -> copying")
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", texts(&c));
        std::thread::sleep(Duration::from_millis(20));
    }
    c.event(&Event::Ipl { host: None }).unwrap();
    assert!(
        texts(&c).iter().any(|t| t.starts_with("SS01: IPL (")),
        "{:?}",
        texts(&c)
    );
    c.stop_map(&m.id.to_string(), true).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !texts(&c)
        .iter()
        .any(|t| t == "SS01: map 0 copying -> stopped")
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", texts(&c));
        std::thread::sleep(Duration::from_millis(20));
    }
    d.terminate();
}
