//! Sessions across daemons (issue 12): two daemons, SS01 and SS02, on free
//! ports; SS02 has SS01 as its peer. A session started on SS02 spans both;
//! SS02 killed with SIGKILL and rebooted terminates it on both, and an
//! unreachable peer makes a start fail cleanly with nothing established.

mod common;

use common::{assert_fails_with, Daemon};
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

const SS02: &str = r#"
id = "SS02"
durability = "strict"

[[volumes]]
id = "V0"
model = "fb:64M"

[[volumes]]
id = "V1"
model = "fb:64M"
"#;

#[test]
fn a_spanning_session_ends_on_both_subsystems_when_one_reboots() {
    let t1 = tempfile::tempdir().unwrap();
    let t2 = tempfile::tempdir().unwrap();
    let ss01 = Daemon::boot(t1.path());
    let cfg = t2.path().join("ss02.toml");
    std::fs::write(&cfg, SS02).unwrap();
    let peer = format!("SS01={}", ss01.api);
    let ss02 = Daemon::boot_with(
        t2.path(),
        &["--config", cfg.to_str().unwrap(), "--peer", &peer],
    );

    let s = ss02.cli_json(&[
        "session",
        "start",
        "--id",
        "X",
        "--extent",
        "SS01/FB00:0-15",
        "--extent",
        "SS02/V0:0-15",
        "--target",
        "SS01/FB01",
        "--target",
        "SS02/V1",
        "--program",
        "SPAN",
    ]);
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
