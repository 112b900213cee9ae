//! Sessions across daemons (issue 12): two daemons, SS01 and SS02, on free
//! ports; SS02 has SS01 as its peer. A session started on SS02 spans both;
//! SS02 killed with SIGKILL and rebooted terminates it on both, and an
//! unreachable peer makes a start fail cleanly with nothing established.

mod common;

use common::{assert_fails_with, assert_success, spanning_session_args, Daemon, SS02};
use serde_json::Value;

const EXIT_FAILED: i32 = 1;

fn session<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("session {id} missing from {list}"))
}

fn has_map(d: &Daemon, source: &str, target: &str) -> bool {
    let maps = d.cli_json(&["map", "list"]);
    maps.as_array()
        .unwrap()
        .iter()
        .any(|m| m["source"] == source && m["target"] == target)
}

const SS01_NOSYNC: &str = r#"
id = "SS01"
durability = "nosync"

[[volumes]]
id = "FB00"
model = "fb:64M"

[[volumes]]
id = "FB01"
model = "fb:64M"
"#;

/// SS02 (config `ss02`) booted in `t2` with `ss01` as its peer.
fn boot_ss02(t2: &std::path::Path, ss02: &str, ss01: &Daemon) -> Daemon {
    boot_ss02_with(t2, ss02, ss01, &[])
}

/// [`boot_ss02`] with `extra` boot arguments.
fn boot_ss02_with(t2: &std::path::Path, ss02: &str, ss01: &Daemon, extra: &[&str]) -> Daemon {
    let cfg = t2.join("ss02.toml");
    std::fs::write(&cfg, ss02).unwrap();
    let peer = format!("SS01={}", ss01.api);
    let mut args = vec!["--config", cfg.to_str().unwrap(), "--peer", &peer];
    args.extend_from_slice(extra);
    Daemon::boot_with(t2, &args)
}

/// Sends `sig` (`-STOP`, `-CONT`) to daemon `d`: a hung daemon, and its return.
fn signal(d: &Daemon, sig: &str) {
    let out = common::run("kill", &[sig, &d.pid().to_string()]);
    assert_success(&out, &format!("kill {sig} {}", d.api));
}

/// Waits until `d` owes nothing (its payer task pays within seconds of the
/// peer answering); fails after 40 s.
fn wait_paid(d: &Daemon) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    while !owed(d).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "still owed after 40 s: {:?}",
            owed(d)
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// `d` owes `peer` something described by `what` (`GET /health`).
fn assert_owes(d: &Daemon, what: &str, peer: &str) {
    let owes = owed(d);
    let to = format!("owed to {peer}");
    assert!(
        owes.iter().any(|l| l.contains(what) && l.contains(&to)),
        "{owes:?}"
    );
}

/// What `d` owes its peers (`GET /health`).
fn owed(d: &Daemon) -> Vec<String> {
    let (status, body) = common::http("GET", &format!("http://{}/health", d.api), None);
    assert_eq!(status, 200, "{body}");
    let h: Value = serde_json::from_str(&body).unwrap();
    h["owed"]
        .as_array()
        .map(|a| a.iter().map(|l| l.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn a_spanning_session_ends_on_both_subsystems_when_one_reboots() {
    let t1 = tempfile::tempdir().unwrap();
    let t2 = tempfile::tempdir().unwrap();
    let ss01 = Daemon::boot(t1.path());
    let ss02 = boot_ss02(t2.path(), SS02, &ss01);

    let s = ss02.cli_json(&spanning_session_args("X")[..14]);
    assert_eq!(s["state"], "active", "{s}");
    let subs: Vec<&str> = s["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["subsystem"].as_str().unwrap())
        .collect();
    assert_eq!(subs, ["SS01", "SS02"], "{s}");
    assert!(
        has_map(&ss01, "FB00", "FB01"),
        "SS01 holds X's physical session"
    );
    assert!(
        has_map(&ss02, "V0", "V1"),
        "SS02 holds X's physical session"
    );
    // SS01's own tables record X (its resource manager sees it too).
    let on1 = ss01.cli_json(&["session", "list"]);
    assert_eq!(session(&on1, "X")["state"], "active", "{on1}");

    // kill -9 SS02 and boot it again: its IPL terminates X everywhere.
    let ss02 = ss02.crash_and_reboot();
    let on2 = ss02.cli_json(&["session", "list"]);
    assert_eq!(session(&on2, "X")["state"], "terminated", "{on2}");
    assert_eq!(session(&on2, "X")["reason"], "ipl", "{on2}");
    let on1 = ss01.cli_json(&["session", "list"]);
    assert_eq!(session(&on1, "X")["state"], "terminated", "{on1}");
    assert_eq!(session(&on1, "X")["reason"], "ipl", "{on1}");
    assert!(!has_map(&ss01, "FB00", "FB01"), "withdrawn on SS01");
    assert!(!has_map(&ss02, "V0", "V1"), "withdrawn on SS02");

    // Unknown subsystems and volumes are named.
    let out = ss02.cli(&[
        "session",
        "start",
        "--id",
        "Y",
        "--extent",
        "SS09/V0:0-1",
        "--target",
        "SS09/V1",
    ]);
    assert_fails_with(&out, EXIT_FAILED, "unknown subsystem SS09", "unknown peer");
    let out = ss02.cli(&[
        "session",
        "start",
        "--id",
        "Y",
        "--extent",
        "SS01/NOPE:0-1",
        "--target",
        "SS01/FB01",
    ]);
    assert_fails_with(&out, EXIT_FAILED, "NOPE", "unknown volume on a peer");

    // A peer that does not answer: the start fails, nothing is established.
    drop(ss01);
    let out = ss02.cli(&[
        "session",
        "start",
        "--id",
        "Z",
        "--extent",
        "SS02/V0:0-3",
        "--target",
        "SS02/V1",
    ]);
    assert_fails_with(&out, EXIT_FAILED, "SS01", "start with the peer down");
    assert!(!has_map(&ss02, "V0", "V1"), "nothing established on SS02");
}

/// An event with the peer down still recovers this subsystem's sessions:
/// `event ipl` and `event reset` restart the subsystem, so they must not stop
/// at the peer that does not answer. They settle the rows here (a terminal
/// row anywhere decides a session), name the peer in the report, and exit 0.
/// A reset resumes nothing it cannot see whole (the peer's rows may decide
/// the session).
#[test]
fn events_with_the_peer_down_still_recover_this_subsystems_sessions() {
    let t1 = tempfile::tempdir().unwrap();
    let t2 = tempfile::tempdir().unwrap();
    let ss01 = Daemon::boot(t1.path());
    let ss02 = boot_ss02(t2.path(), SS02, &ss01);
    let s = ss02.cli_json(&spanning_session_args("R")[..14]);
    assert_eq!(s["state"], "active", "{s}");
    drop(ss01);

    // The full list needs the peer's rows, and says where to look instead.
    let out = ss02.cli(&["session", "list"]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "session list --local",
        "list with the peer down",
    );
    let local = ss02.cli_json(&["session", "list", "--local"]);
    let r = session(&local, "R");
    assert_eq!(r["state"], "active", "{local}");
    assert!(
        r["parts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["subsystem"] == "SS02"),
        "only this subsystem's parts: {local}"
    );

    // A reset whose extents match here: SS01's rows, which this reset
    // cannot read, may decide R, so R is not judged (not resumed).
    let out = ss02.cli(&["event", "reset"]);
    assert_success(&out, "reset with the peer down");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("R (program SPAN): resumed"), "{text}");
    assert!(text.contains("session R on SS02: not judged"), "{text}");
    assert!(text.contains("peer SS01 did not answer"), "{text}");

    // The IPL: R ends here, its map is withdrawn, the rows say why.
    let out = ss02.cli(&["event", "ipl"]);
    assert_success(&out, "ipl with the peer down");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("session R (program SPAN): terminated (ipl)"),
        "{text}"
    );
    assert!(text.contains("peer SS01 did not answer"), "{text}");
    assert!(!has_map(&ss02, "V0", "V1"), "withdrawn on SS02");
    let rows = ss02.cli_json(&["table", "show"]);
    let ended = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "terminated" && e["reason"] == "ipl")
        .count();
    assert_eq!(ended, 1, "{rows}");
}

/// A peer that wants a token this daemon does not send is a configuration
/// mismatch: the spanning start fails as unavailable, naming the fix, and
/// nothing is established.
#[test]
fn a_peer_token_mismatch_is_named_and_starts_nothing() {
    let t1 = tempfile::tempdir().unwrap();
    let t2 = tempfile::tempdir().unwrap();
    let token = t1.path().join("token");
    std::fs::write(&token, "s3cret-token-0123456789\n").unwrap();
    let ss01 = Daemon::boot_with(t1.path(), &["--api-token-file", token.to_str().unwrap()]);
    let ss02 = boot_ss02(t2.path(), SS02, &ss01);
    let out = ss02.cli(&spanning_session_args("X")[..14]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "the same --api-token-file, or neither) [unavailable]",
        "start across daemons with a token on one side only",
    );
    assert!(!has_map(&ss02, "V0", "V1"), "nothing established on SS02");
}

/// One time zero across daemons: a writer makes dependent writes, value k to
/// SS01/FB00 and, once that is acknowledged, k to SS02/V0, while a session
/// spanning both starts. Whatever instant the session took, the two images
/// must be a cut the writer could have seen: SS01's value is SS02's or one
/// more. (Establishing one subsystem after the other, without the freeze,
/// lets SS02's image hold a later k than SS01's.)
#[test]
fn a_spanning_session_takes_one_time_zero_under_dependent_writes() {
    use common::nbd_client::NbdConn;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    // nosync: a copy-on-write costs no fdatasync, so the writer gets through
    // the gap between the two establishes (with strict durability the first
    // write after SS01's instant waits for its copy's flush long enough that
    // SS02 is established first, and the test would prove little).
    let t1 = tempfile::tempdir().unwrap();
    let t2 = tempfile::tempdir().unwrap();
    let cfg1 = t1.path().join("ss01.toml");
    std::fs::write(&cfg1, SS01_NOSYNC).unwrap();
    let ss01 = Daemon::boot_with(t1.path(), &["--config", cfg1.to_str().unwrap()]);
    let ss02 = boot_ss02(t2.path(), &SS02.replace("strict", "nosync"), &ss01);
    let block = |k: u64| k.to_le_bytes().repeat(512);
    let value = |b: &[u8]| u64::from_le_bytes(b[0..8].try_into().unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        let (a, b) = (ss01.nbd_addr(), ss02.nbd_addr());
        std::thread::spawn(move || {
            let mut fb00 = NbdConn::open(&a, "FB00");
            let mut v0 = NbdConn::open(&b, "V0");
            let mut k = 0u64;
            while !stop.load(Ordering::SeqCst) {
                k += 1;
                fb00.write(0, &block(k));
                v0.write(0, &block(k));
                written.store(k, Ordering::SeqCst);
            }
            k
        })
    };
    while written.load(Ordering::SeqCst) < 200 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let s = ss02.cli_json(&spanning_session_args("CUT")[..14]);
    assert_eq!(s["state"], "active", "{s}");
    let at_start = written.load(Ordering::SeqCst);
    while written.load(Ordering::SeqCst) < at_start + 200 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    let last = writer.join().unwrap();

    let a = value(&NbdConn::open(&ss01.nbd_addr(), "FB01").read(0, 4096));
    let b = value(&NbdConn::open(&ss02.nbd_addr(), "V1").read(0, 4096));
    assert!(
        a >= 200 && a < last,
        "SS01's image holds k={a} (writes went to {last})"
    );
    assert!(
        a == b || a == b + 1,
        "the images are not one instant: SS01's holds k={a}, SS02's k={b} (dependent writes \
         wrote SS01 first)"
    );
    // Writes went on after the start: the sources moved past the images.
    assert_eq!(
        value(&NbdConn::open(&ss01.nbd_addr(), "FB00").read(0, 4096)),
        last
    );
}

/// A free TCP port on 127.0.0.1 (for daemons that must name each other as
/// peers before either is up).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const SS03: &str = r#"
id = "SS03"
durability = "nosync"

[[volumes]]
id = "W0"
model = "fb:64M"
"#;

/// QA (high): with a peer down that the session does not even use, an
/// abend on SS02 ran over SS02 alone, so SS01, which answered, kept the
/// session's physical session and rows, and a reset there resumed a
/// session the abend had terminated. The event now runs over every peer
/// that answers and names the silent one.
#[test]
fn an_event_with_one_peer_down_settles_the_peers_that_answer() {
    let (t1, t2, t3) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let ss01 = Daemon::boot(t1.path());
    let cfg3 = t3.path().join("ss03.toml");
    std::fs::write(&cfg3, SS03).unwrap();
    let ss03 = Daemon::boot_with(t3.path(), &["--config", cfg3.to_str().unwrap()]);
    let cfg2 = t2.path().join("ss02.toml");
    std::fs::write(&cfg2, SS02).unwrap();
    let (p1, p3) = (format!("SS01={}", ss01.api), format!("SS03={}", ss03.api));
    let ss02 = Daemon::boot_with(
        t2.path(),
        &[
            "--config",
            cfg2.to_str().unwrap(),
            "--peer",
            &p1,
            "--peer",
            &p3,
        ],
    );
    let s = ss02.cli_json(&spanning_session_args("F1")[..14]);
    assert_eq!(s["state"], "active", "{s}");
    drop(ss03);

    let out = ss02.cli(&["event", "abend", "--program", "SPAN"]);
    assert_success(&out, "abend with SS03 down");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("session F1 (program SPAN): terminated (abend)"),
        "{text}"
    );
    assert!(text.contains("peer SS03 did not answer"), "{text}");
    assert!(!has_map(&ss01, "FB00", "FB01"), "withdrawn on SS01 too");
    assert!(!has_map(&ss02, "V0", "V1"), "withdrawn on SS02");
    let on1 = ss01.cli_json(&["session", "list"]);
    assert_eq!(session(&on1, "F1")["state"], "terminated", "{on1}");
    // A reset of SS02 now finds nothing to resume.
    let out = ss02.cli(&["event", "reset"]);
    assert_success(&out, "reset with SS03 down");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("F1 (program SPAN): resumed"), "{text}");
}

/// QA: spanning starts on two daemons that are each other's peers, at
/// once, deadlocked until the 30 s port timeout and both failed: a peer's
/// establish through this daemon's port waited for this daemon's resource
/// manager, busy with its own start, which waited for that peer. Both now
/// start.
#[test]
fn spanning_starts_on_two_daemons_at_once_both_succeed() {
    let (t1, t2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a1, a2) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let cfg2 = t2.path().join("ss02.toml");
    let four: String = (0..4)
        .map(|i| format!("\n[[volumes]]\nid = \"V{i}\"\nmodel = \"fb:64M\"\n"))
        .collect();
    std::fs::write(&cfg2, format!("id = \"SS02\"\n{four}")).unwrap();
    let (p1, p2) = (format!("SS01={a1}"), format!("SS02={a2}"));
    // SS01: the embedded default (FB00-FB03).
    let ss01 = Daemon::boot_with(t1.path(), &["--api", &a1, "--peer", &p2]);
    let ss02 = Daemon::boot_with(
        t2.path(),
        &[
            "--config",
            cfg2.to_str().unwrap(),
            "--api",
            &a2,
            "--peer",
            &p1,
        ],
    );
    let start = |d: &Daemon, id: &str, src: [&str; 2], tgt: [&str; 2]| {
        let args = [
            "session",
            "start",
            "--id",
            id,
            "--extent",
            src[0],
            "--extent",
            src[1],
            "--target",
            tgt[0],
            "--target",
            tgt[1],
            "--program",
            "PAR",
            "--copy-rate",
            "0",
        ];
        d.cli(&args)
    };
    for round in 0..3 {
        let (c1, c2) = (format!("C{round}"), format!("D{round}"));
        let (o1, o2) = std::thread::scope(|sc| {
            let h1 = sc.spawn(|| {
                start(
                    &ss01,
                    &c1,
                    ["SS01/FB00:0-3", "SS02/V0:0-3"],
                    ["SS01/FB01", "SS02/V1"],
                )
            });
            let h2 = sc.spawn(|| {
                start(
                    &ss02,
                    &c2,
                    ["SS02/V2:0-3", "SS01/FB02:0-3"],
                    ["SS02/V3", "SS01/FB03"],
                )
            });
            (h1.join().unwrap(), h2.join().unwrap())
        });
        assert_success(&o1, &format!("round {round}: start {c1} on SS01"));
        assert_success(&o2, &format!("round {round}: start {c2} on SS02"));
        for (d, id) in [(&ss01, &c1), (&ss02, &c2)] {
            let out = d.cli(&["session", "terminate", id]);
            assert_success(&out, &format!("terminate {id}"));
        }
    }
}

/// QA: a `--peer` naming the address of another subsystem was reported as
/// a peer that "did not answer". The event report says it is not at its
/// configured address, naming what answers there.
#[test]
fn a_peer_address_that_answers_as_another_subsystem_is_named() {
    let (t2, t3) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg3 = t3.path().join("ss03.toml");
    std::fs::write(&cfg3, SS03).unwrap();
    let ss03 = Daemon::boot_with(t3.path(), &["--config", cfg3.to_str().unwrap()]);
    let cfg2 = t2.path().join("ss02.toml");
    std::fs::write(&cfg2, SS02).unwrap();
    let wrong = format!("SS01={}", ss03.api);
    let ss02 = Daemon::boot_with(
        t2.path(),
        &["--config", cfg2.to_str().unwrap(), "--peer", &wrong],
    );
    let out = ss02.cli(&["event", "ipl"]);
    assert_success(&out, "ipl with a misaddressed peer");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("peer SS01 is misconfigured") && text.contains("serves subsystem SS03"),
        "{text}"
    );
}

/// A session request waiting on a hung peer (up to the 30 s port timeout)
/// must not freeze this daemon's NBD I/O when an IPL arrives: the IPL waits
/// for the request, and the volumes keep serving meanwhile. Before, the
/// request held the subsystem's read lock across the peer call, the IPL
/// queued for the write lock, and every NBD request queued behind the IPL
/// (QA saw API and NBD frozen for 54 s).
#[test]
fn nbd_keeps_serving_while_an_ipl_waits_for_a_hung_peer() {
    let (t1, t2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ss01 = Daemon::boot(t1.path());
    let ss02 = boot_ss02(t2.path(), SS02, &ss01);
    let mut conn = common::nbd_client::NbdConn::open(&ss02.nbd_addr(), "V0");
    conn.write(0, &[0x5a; 4096]);

    signal(&ss01, "-STOP");
    std::thread::scope(|sc| {
        // Asks SS01's tables: hangs until SS01 runs again.
        let list = sc.spawn(|| ss02.cli(&["session", "list"]));
        std::thread::sleep(std::time::Duration::from_secs(1));
        let ipl = sc.spawn(|| ss02.cli(&["event", "ipl"]));
        std::thread::sleep(std::time::Duration::from_secs(1));
        let data = conn.read(0, 4096);
        let list_waiting = !list.is_finished();
        signal(&ss01, "-CONT");
        assert_eq!(data, vec![0x5a; 4096]);
        assert!(
            list_waiting,
            "the NBD read waited until the request on the hung peer ended"
        );
        assert_success(&list.join().unwrap(), "session list once SS01 runs");
        assert_success(&ipl.join().unwrap(), "event ipl once SS01 runs");
    });
    assert_eq!(conn.read(0, 4096), vec![0x5a; 4096], "after the IPL");
}

/// QA: with a peer down, a session on this subsystem alone could not be
/// terminated (the request read the peer's tables first and failed). A
/// terminal row anywhere decides a session, so the terminate goes on over
/// the subsystems that answer; a session that may live on the silent peer
/// is still refused, naming the peer.
#[test]
fn a_local_session_terminates_while_a_peer_is_down() {
    let (t1, t2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ss01 = Daemon::boot(t1.path());
    let ss02 = boot_ss02(t2.path(), SS02, &ss01);
    let start = [
        "session",
        "start",
        "--id",
        "L1",
        "--extent",
        "V0:0-3",
        "--target",
        "V1",
        "--program",
        "LOC",
    ];
    assert_success(&ss02.cli(&start), "local session start");
    drop(ss01);
    let out = ss02.cli(&["session", "terminate", "L1"]);
    assert_success(&out, "terminate a local session with the peer down");
    let on2 = ss02.cli_json(&["session", "list", "--local"]);
    assert_eq!(session(&on2, "L1")["state"], "terminated", "{on2}");
    assert!(!has_map(&ss02, "V0", "V1"), "its map is withdrawn");
    let out = ss02.cli(&["session", "terminate", "NOWHERE"]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "peer SS01 does not answer",
        "terminate of a session nobody answering has",
    );
}

/// QA: with a peer hung, every request that asked it waited out the whole
/// call timeout, one after the other (an IPL, a queued start and a list:
/// 90 s). After one call times out, the peer is not asked again for a
/// while: the next request fails at once and says why, and once the peer
/// runs again and the while has passed, requests reach it.
#[test]
fn a_peer_that_timed_out_is_not_asked_again_at_once() {
    let (t1, t2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ss01 = Daemon::boot(t1.path());
    let ss02 = boot_ss02_with(t2.path(), SS02, &ss01, &["--peer-timeout", "2"]);
    signal(&ss01, "-STOP");
    let out = ss02.cli(&["session", "list"]);
    assert_fails_with(&out, EXIT_FAILED, "timeout", "list with SS01 hung");
    let out = ss02.cli(&["session", "list"]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "not asked: it did not answer",
        "the next list, at once",
    );
    signal(&ss01, "-CONT");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let out = ss02.cli(&["session", "list"]);
    assert_success(&out, "list once SS01 runs again");
}

/// A session of SS02's host whose only part is on SS01 is out of sight of
/// SS02's `event rm-restart` while SS01 is hung: SS02 owes SS01 the event
/// (`GET /health` says so), and pays it once SS01 answers again, without
/// any further request: the session ends terminated (rm-restart) on SS01
/// and its map is withdrawn. (Before, it went on copying as active.)
#[test]
fn an_event_a_hung_peer_missed_is_paid_when_it_answers() {
    let (t1, t2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ss01 = Daemon::boot(t1.path());
    let ss02 = boot_ss02_with(t2.path(), SS02, &ss01, &["--peer-timeout", "2"]);
    let start = [
        "session",
        "start",
        "--id",
        "H1",
        "--extent",
        "SS01/FB00:0-3",
        "--target",
        "SS01/FB01",
        "--program",
        "HUNG",
    ];
    assert_success(&ss02.cli(&start), "a session of SS02's host on SS01 only");
    assert!(has_map(&ss01, "FB00", "FB01"));
    signal(&ss01, "-STOP");
    let out = ss02.cli(&["event", "rm-restart"]);
    // Until it is paid, SS01 is asked nothing (QA: a spanning start asked
    // it for a volume's geometry and waited out the whole timeout).
    let span = ss02.cli(&spanning_session_args("Y"));
    signal(&ss01, "-CONT");
    assert_success(&out, "rm-restart with SS01 hung");
    assert_fails_with(
        &span,
        EXIT_FAILED,
        "is not asked until it is paid what it is owed (rm-restart",
        "a spanning start while SS01 is owed",
    );
    assert_owes(&ss02, "rm-restart", "SS01");
    wait_paid(&ss02);
    let on1 = ss01.cli_json(&["session", "list", "--local"]);
    assert_eq!(session(&on1, "H1")["state"], "terminated", "{on1}");
    assert_eq!(session(&on1, "H1")["reason"], "rm-restart", "{on1}");
    assert!(!has_map(&ss01, "FB00", "FB01"), "its map is withdrawn");
    let (status, text) = common::http("GET", &format!("http://{}/events", ss02.api), None);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("owed to SS01 and paid"), "{text}");
}

/// A reset notification on SS02 while SS01 hangs cannot judge a spanning
/// session (SS01's rows may decide it): the session stays suspended, `session
/// list --local` says so, and SS01 is owed the judgment. Once SS01 answers the
/// daemon judges it without any request: the extents match, so it resumes.
#[test]
fn a_reset_that_left_a_hung_peer_out_is_judged_when_it_answers() {
    let (t1, t2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ss01 = Daemon::boot(t1.path());
    let ss02 = boot_ss02_with(t2.path(), SS02, &ss01, &["--peer-timeout", "2"]);
    assert_success(&ss02.cli(&spanning_session_args("J")), "spanning start");
    signal(&ss01, "-STOP");
    let out = ss02.cli(&["event", "reset"]);
    let local = ss02.cli_json(&["session", "list", "--local"]);
    signal(&ss01, "-CONT");
    assert_success(&out, "reset with SS01 hung");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not judged"), "{text}");
    let part = &session(&local, "J")["parts"][0];
    assert_eq!(part["suspended"], true, "{local}");
    assert_owes(&ss02, "judgment of session(s) J", "SS01");
    wait_paid(&ss02);
    let list = ss02.cli_json(&["session", "list"]);
    assert_eq!(session(&list, "J")["state"], "resumed", "{list}");
    for part in session(&list, "J")["parts"].as_array().unwrap() {
        assert!(part.get("suspended").is_none(), "{list}");
    }
}
