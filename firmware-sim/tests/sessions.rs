//! Backup copy sessions, activity tables, recovery events and scenario replay
//! through the CLI: states and reasons users see, entries recorded, and the
//! exits of failing requests and failing expectations.

mod common;

use std::time::{Duration, Instant};

use common::{assert_fails_with, assert_success, run, Daemon, BIN};
use serde_json::Value;

const EXIT_FAILED: i32 = 1;
const EXIT_EXPECTATION: i32 = 4;

fn session<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("session {id} missing from {list}"))
}

fn decision<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["decisions"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["session"] == id))
        .unwrap_or_else(|| panic!("no decision for {id} in {report}"))
}

#[test]
fn sessions_tables_and_events_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());

    let s1 = d.cli_json(&[
        "session",
        "start",
        "--id",
        "S1",
        "--extent",
        "CKD00:00000000-0000000E",
        "--target",
        "CKD01",
        "--program",
        "BKUP",
    ]);
    assert_eq!(s1["state"], "active", "{s1}");
    assert_eq!(s1["program"], "BKUP");
    assert_eq!(
        s1["parts"][0]["volumes"][0]["extents"], "00000000-0000000E",
        "{s1}"
    );
    let s2 = d.cli_json(&[
        "session",
        "start",
        "--id",
        "S2",
        "--extent",
        "FB00:0-15,FB02:0-3",
        "--target",
        "FB01,FB03",
    ]);
    let vols: Vec<&str> = s2["parts"][0]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["volume"].as_str().unwrap())
        .collect();
    assert_eq!(vols, ["FB00", "FB02"], "{s2}");

    // Refusals name what was wrong.
    let out = d.cli(&[
        "session",
        "start",
        "--id",
        "S9",
        "--extent",
        "CKD00:banana",
        "--target",
        "CKD02",
    ]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "banana",
        "session with an unparsable extent",
    );
    let out = d.cli(&[
        "session", "start", "--id", "S9", "--extent", "NOPE:0-1", "--target", "CKD02",
    ]);
    assert_fails_with(&out, EXIT_FAILED, "NOPE", "session on an unknown volume");
    let out = d.cli(&[
        "session",
        "start",
        "--id",
        "S1",
        "--extent",
        "CKD02:00000000-00000001",
        "--target",
        "CKD03",
    ]);
    assert_fails_with(&out, EXIT_FAILED, "S1", "duplicate session id");
    let out = d.cli(&[
        "session",
        "start",
        "--id",
        "S9",
        "--extent",
        "FB01:0-3,FB03:0-3",
        "--target",
        "CKD02",
    ]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "2 source volume(s) (FB01, FB03) need 2 target(s)",
        "two sources, one target",
    );
    let out = d.cli(&["session", "complete", "S404"]);
    assert_fails_with(&out, EXIT_FAILED, "S404", "complete of an unknown session");

    // The subsystem table holds one Initiated row per volume; FB00's table its own row.
    let t = d.cli_json(&["table", "show"]);
    let rows: Vec<(String, String)> = t
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["session_id"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 3, "{t}");
    assert!(rows.iter().all(|(_, s)| s == "initiated"), "{t}");
    let t = d.cli_json(&["table", "show", "--volume", "FB00"]);
    assert_eq!(t.as_array().unwrap().len(), 1, "{t}");
    assert_eq!(t[0]["extents"], "0-15", "{t}");
    let out = d.cli(&["table", "show", "--volume", "NOPE"]);
    assert_fails_with(&out, EXIT_FAILED, "NOPE", "table of an unknown volume");

    // Abend ends only that program's sessions; the text names the one it ended.
    let out = d.cli(&["event", "abend", "--program", "BKUP"]);
    assert_success(&out, "event abend (text)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("session S1 (program BKUP): terminated (abend)"),
        "{text}"
    );
    assert!(
        text.contains("unchanged: 0 already resumed, 0 already terminated, 1 untouched"),
        "{text}"
    );
    assert!(
        !text.contains("session S2"),
        "S2 is counted, not listed:\n{text}"
    );
    // JSON keeps every decision; a second run acts on nothing.
    let r = d.cli_json(&["event", "abend", "--program", "BKUP"]);
    assert_eq!(decision(&r, "S1")["outcome"], "terminated", "{r}");
    assert_eq!(decision(&r, "S1")["reason"], "abend", "{r}");
    assert_eq!(decision(&r, "S1")["acted"], false, "{r}");
    assert_eq!(decision(&r, "S2")["outcome"], "untouched", "{r}");
    // The text of an event that acts on nothing does not list history.
    let out = d.cli(&["event", "abend", "--program", "NOBODY"]);
    assert_success(&out, "event abend of a program with no sessions");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!text.contains("session S1"), "{text}");
    assert!(
        text.contains("unchanged: 0 already resumed, 1 already terminated, 1 untouched"),
        "{text}"
    );

    // IPL restarts the subsystem: open sessions end with reason ipl; maps survive.
    let m = d.cli_json(&[
        "map", "create", "--source", "FB02", "--target", "FB00", "--type", "nocopy",
    ]);
    // The group the resource manager made for S2 is marked as S2's.
    let groups = d.cli_json(&["group", "list"]);
    assert!(
        groups
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["session"] == "S2"),
        "{groups}"
    );
    let r = d.cli_json(&["event", "ipl"]);
    assert!(
        r["notes"]
            .to_string()
            .contains("copying for backup sessions (S2"),
        "the maps restored are explained: {r}"
    );
    assert_eq!(decision(&r, "S2")["outcome"], "terminated", "{r}");
    assert_eq!(decision(&r, "S2")["reason"], "ipl", "{r}");
    assert_eq!(decision(&r, "S1")["acted"], false, "{r}");
    let notes = r["notes"].to_string();
    assert!(notes.contains("IPL"), "{r}");
    d.cli_json(&["map", "show", &m["id"].to_string()]);
    let list = d.cli_json(&["session", "list"]);
    assert_eq!(session(&list, "S1")["reason"], "abend");
    assert_eq!(session(&list, "S2")["state"], "terminated");
    assert_eq!(session(&list, "S2")["reason"], "ipl");
    let t = d.cli_json(&["table", "show", "--volume", "FB02"]);
    assert_eq!(
        t.as_array().unwrap().last().unwrap()["reason"],
        "ipl",
        "{t}"
    );

    // A fresh session copies and completes; rm-restart and reset leave it alone.
    let s3 = d.cli_json(&[
        "session", "start", "--id", "S3", "--extent", "FB03:0-3", "--target", "FB01",
    ]);
    assert_eq!(s3["state"], "active");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = d.cli(&["session", "complete", "S3", "--json"]);
        if out.status.success() {
            let s: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(s["state"], "completed", "{s}");
            break;
        }
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not finished"),
            "complete failed for another reason: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            Instant::now() < deadline,
            "S3 did not finish copying within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = d.cli_json(&["event", "rm-restart"]);
    assert_eq!(decision(&r, "S3")["outcome"], "untouched", "{r}");
    let r = d.cli_json(&["event", "reset"]);
    assert!(r["event"].as_str().unwrap().contains("reset"), "{r}");
    assert!(
        r["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["acted"] == false),
        "{r}"
    );
    let out = d.cli(&["event", "abend"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "abend without --program is a usage error"
    );
}

/// The last activity-table row of `volume` for `session`.
fn last_row(d: &Daemon, volume: &str, session: &str) -> Value {
    let t = d.cli_json(&["table", "show", "--volume", volume]);
    t.as_array()
        .and_then(|a| a.iter().rev().find(|e| e["session_id"] == session))
        .cloned()
        .unwrap_or_else(|| panic!("no row of {session} in the table of {volume}: {t}"))
}

#[test]
fn booting_an_existing_data_dir_terminates_open_sessions_with_reason_ipl() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let start = |d: &Daemon, id: &str, extent: &str, target: &str| {
        let s = d.cli_json(&[
            "session",
            "start",
            "--id",
            id,
            "--extent",
            extent,
            "--target",
            target,
            "--program",
            "NIGHTLY",
        ]);
        assert_eq!(s["state"], "active", "{s}");
    };

    // A clean stop (SIGTERM) and a boot: the session the restart interrupted ends.
    start(&d, "K1", "FB00:0-16383", "FB01");
    let d = d.reboot();
    let list = d.cli_json(&["session", "list"]);
    assert_eq!(session(&list, "K1")["state"], "terminated", "{list}");
    assert_eq!(session(&list, "K1")["reason"], "ipl", "{list}");
    let row = last_row(&d, "FB00", "K1");
    assert_eq!(row["reason"], "ipl", "{row}");
    assert!(
        d.log_text()
            .contains("IPL session recovery: session K1 (program NIGHTLY): terminated (ipl)"),
        "boot log should name the decision:\n{}",
        d.log_text()
    );
    // Its volumes are free again: a new session on them is accepted.
    start(&d, "K2", "FB00:0-16383", "FB01");

    // kill -9: no shutdown at all; the next boot still ends K2 and leaves K1 as it was.
    let d = d.crash_and_reboot();
    let list = d.cli_json(&["session", "list"]);
    assert_eq!(session(&list, "K2")["state"], "terminated", "{list}");
    assert_eq!(session(&list, "K2")["reason"], "ipl", "{list}");
    assert_eq!(session(&list, "K1")["reason"], "ipl", "{list}");
    let row = last_row(&d, "FB00", "K2");
    assert_eq!(row["reason"], "ipl", "{row}");
    let subsystem_rows = d.cli_json(&["table", "show"]);
    let terminated = subsystem_rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "ipl")
        .count();
    assert!(
        terminated >= 2,
        "one terminated(ipl) row per session expected: {subsystem_rows}"
    );
    assert!(
        d.log_text()
            .contains("sessions unchanged: 0 already resumed, 1 already terminated"),
        "the already terminated K1 is counted, not listed:\n{}",
        d.log_text()
    );
}

#[test]
fn replay_runs_the_scenarios_and_fails_on_a_broken_expectation() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("testdata/scenarios")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenarios in {dir}");
    for f in &files {
        let out = run(BIN, &["replay", f.to_str().unwrap()]);
        assert_success(&out, &format!("replay {}", f.display()));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("PASS"),
            "{out:?}"
        );
    }

    // The same abend scenario expecting the wrong outcome fails with exit 4
    // and a reproduce line.
    let src = files
        .iter()
        .find(|f| f.to_string_lossy().contains("abend"))
        .expect("an abend scenario");
    let text = std::fs::read_to_string(src).unwrap();
    let broken = text.replace("state = \"completed\"", "state = \"terminated(abend)\"");
    assert_ne!(broken, text, "scenario text changed");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("broken.toml");
    std::fs::write(&path, broken).unwrap();
    let out = run(BIN, &["replay", path.to_str().unwrap()]);
    assert_fails_with(
        &out,
        EXIT_EXPECTATION,
        "reproduce with: firmware-sim replay",
        "broken scenario",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FAIL"),
        "{out:?}"
    );

    let out = run(
        BIN,
        &["replay", tmp.path().join("missing.toml").to_str().unwrap()],
    );
    assert_fails_with(&out, EXIT_FAILED, "missing.toml", "missing scenario file");
}

#[test]
fn a_damaged_activity_table_is_salvaged_by_check_and_the_dir_boots_again() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    // Both on FB00, so SALV2's intact row follows SALV1's in FB00's table.
    for (id, extent, target) in [
        ("SALV1", "FB00:0-3", "FB01"),
        ("SALV2", "FB00:8-11", "FB03"),
    ] {
        d.cli_json(&[
            "session", "start", "--id", id, "--extent", extent, "--target", target,
        ]);
    }
    let data_dir = d.data_dir.clone();
    assert!(d.terminate().success());

    // Damage SALV1's row in FB00's volume table. (A damaged subsystem table
    // is rebuilt from the volume tables at IPL: see the next test.)
    let table = data_dir.join("tables/FB00.tbl");
    let mut bytes = std::fs::read(&table).unwrap();
    let at = bytes
        .windows(5)
        .position(|w| w == b"SALV1")
        .expect("SALV1's row in FB00.tbl");
    bytes[at] ^= 0xff;
    std::fs::write(&table, &bytes).unwrap();

    let dir = data_dir.to_str().unwrap();
    let boot = || {
        run(
            "timeout",
            &[
                "60",
                BIN,
                "boot",
                "--data-dir",
                dir,
                "--nbd",
                "127.0.0.1:0",
                "--api",
                "127.0.0.1:0",
            ],
        )
    };
    let out = boot();
    assert_fails_with(
        &out,
        EXIT_FAILED,
        &format!("firmware-sim check --data-dir {dir} --salvage-tables"),
        "boot with a damaged activity table names the salvage command",
    );

    let out = run(BIN, &["check", "--data-dir", dir, "--salvage-tables"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_success(&out, "check --salvage-tables");
    assert!(
        text.contains("FB00.tbl: 1 record(s) kept, 1 damaged record(s) left out"),
        "{text}"
    );
    assert!(text.contains("damaged file kept as"), "{text}");
    assert!(text.contains("8 other table(s) intact"), "{text}");
    let copy = data_dir.join("tables/FB00.tbl.damaged-1");
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        bytes,
        "the damaged copy is kept as it was"
    );

    // The directory boots again; both sessions are found (the subsystem table
    // is intact) and ended by the IPL.
    let d = Daemon::boot(tmp.path());
    let list = d.cli_json(&["session", "list"]);
    assert_eq!(session(&list, "SALV1")["reason"], "ipl", "{list}");
    assert_eq!(session(&list, "SALV2")["reason"], "ipl", "{list}");
    assert!(d.terminate().success());

    // A damaged header cannot be salvaged: reported, left as it is, exit 4.
    let table = data_dir.join("tables/FB02.tbl");
    let mut bytes = std::fs::read(&table).unwrap();
    bytes[30] ^= 0xff;
    std::fs::write(&table, &bytes).unwrap();
    let out = run(BIN, &["check", "--data-dir", dir, "--salvage-tables"]);
    assert_eq!(out.status.code(), Some(EXIT_EXPECTATION), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("FB02.tbl: NOT SALVAGED (left unchanged)") && text.contains("move it aside"),
        "{text}"
    );
    assert_eq!(std::fs::read(&table).unwrap(), bytes, "left unchanged");
}

/// The id of the map `source -> target` in `map list --json`.
fn map_between(d: &Daemon, source: &str, target: &str) -> Value {
    let maps = d.cli_json(&["map", "list"]);
    maps.as_array()
        .and_then(|a| {
            a.iter()
                .find(|m| m["source"] == source && m["target"] == target)
        })
        .cloned()
        .unwrap_or_else(|| panic!("no map {source} -> {target}: {maps}"))
}

#[test]
fn a_session_image_is_changed_only_by_the_session() {
    // Issue 12 hole 1: map and group verbs reached a session's maps.
    common::require_tool("qemu-io");
    let tmp = tempfile::tempdir().unwrap();
    // Background copy capped at 1 MiB/s, and 8 MiB of data for K1 to copy:
    // its copy cannot finish before the forced stop below (a finished copy
    // no longer reads through FB00, and rightly survives that stop).
    let cfg = tmp.path().join("slow-copy.toml");
    std::fs::write(
        &cfg,
        controller::config::EMBEDDED_DEFAULT_TOML
            .replace("[rates]", "[rates]\ncopy_mib_per_s_max = 1"),
    )
    .unwrap();
    let d = Daemon::boot_with(tmp.path(), &["--config", cfg.to_str().unwrap()]);
    let out = run(
        "qemu-io",
        &["-f", "raw", "-c", "write -P 0x55 0 8M", &d.uri("FB02")],
    );
    assert_success(&out, "qemu-io write");
    // FB00 is the target of a full map that copies nothing in the background,
    // so K1's source reads through it.
    let m = d.cli_json(&[
        "map",
        "create",
        "--source",
        "FB02",
        "--target",
        "FB00",
        "--type",
        "full",
        "--copy-rate",
        "0",
    ]);
    let outer = m["id"].as_u64().unwrap().to_string();
    assert_success(&d.cli(&["map", "start", &outer]), "map start");
    // FB00 holds data of its own too (written after its map started): K1's
    // image takes those tracks from FB00 itself, and the rest through it
    // from FB02.
    let out = run(
        "qemu-io",
        &["-f", "raw", "-c", "write -P 0x66 0 1M", &d.uri("FB00")],
    );
    assert_success(&out, "qemu-io write FB00");
    let s = d.cli_json(&[
        "session",
        "start",
        "--id",
        "K1",
        "--extent",
        "FB00:0-16383",
        "--target",
        "FB01",
    ]);
    assert_eq!(s["state"], "active", "{s}");
    let sm = map_between(&d, "FB00", "FB01");
    let id = sm["id"].as_u64().unwrap().to_string();
    let group = sm["group"]
        .as_u64()
        .expect("session map in its group")
        .to_string();
    for (args, what) in [
        (vec!["map", "stop", &id], "map stop"),
        (vec!["map", "stop", &id, "--force"], "map stop --force"),
        (vec!["map", "start", &id], "map start"),
        (vec!["map", "prepare", &id], "map prepare"),
        (vec!["map", "delete", &id, "--force"], "map delete --force"),
        (vec!["map", "restore", &id], "map restore"),
        (vec!["group", "start", &group], "group start"),
        (
            vec!["group", "stop", &group, "--force"],
            "group stop --force",
        ),
        (
            vec!["group", "delete", &group, "--force"],
            "group delete --force",
        ),
    ] {
        let out = d.cli(&args);
        assert_fails_with(&out, EXIT_FAILED, "session K1", what);
        assert_fails_with(&out, EXIT_FAILED, "session terminate K1", what);
    }
    let list = d.cli_json(&["session", "list"]);
    assert_eq!(session(&list, "K1")["state"], "active", "{list}");

    // A forced stop of FB00's map takes FB00 out of the chain with its own
    // tracks, which K1's image reads: K1's map is stopped as a dependant and
    // K1 is terminated at once, rows written. (Tracks K1 read through FB00
    // from FB02 alone would not count: K1's target sits in the same chain
    // below FB00 and still finds them on FB02.)
    assert_success(&d.cli(&["map", "stop", &outer, "--force"]), "outer stop");
    let list = d.cli_json(&["session", "list"]);
    assert_eq!(session(&list, "K1")["state"], "terminated", "{list}");
    assert_eq!(session(&list, "K1")["reason"], "image-lost", "{list}");
    assert_eq!(last_row(&d, "FB00", "K1")["reason"], "image-lost");
    let phys = d.cli_json(&["map", "list"]);
    assert!(
        !phys
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["source"] == "FB00" && m["target"] == "FB01"),
        "K1's maps are withdrawn: {phys}"
    );

    // Operator termination.
    let s = d.cli_json(&[
        "session", "start", "--id", "K2", "--extent", "FB02:0-3", "--target", "FB03",
    ]);
    assert_eq!(s["state"], "active", "{s}");
    let t = d.cli_json(&["session", "terminate", "K2", "--reason", "wrong extents"]);
    assert_eq!(t["state"], "terminated", "{t}");
    assert_eq!(t["reason"], "operator", "{t}");
    assert_eq!(last_row(&d, "FB02", "K2")["reason"], "operator");
    let again = d.cli_json(&["session", "terminate", "K2"]);
    assert_eq!(
        again["reason"], "operator",
        "a second terminate keeps the first"
    );
    let out = d.cli(&["session", "complete", "K2"]);
    assert_fails_with(&out, EXIT_FAILED, "terminated", "complete after terminate");
    let out = d.cli(&["session", "terminate", "K404"]);
    assert_fails_with(&out, EXIT_FAILED, "K404", "terminate of an unknown session");
}

#[test]
fn a_damaged_subsystem_table_is_rebuilt_from_the_volume_tables_at_ipl() {
    // Patent A: the per-volume tables are the fallback of the subsystem table.
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    for (id, extent, target) in [("VT1", "FB00:0-3", "FB01"), ("VT2", "FB02:0-3", "FB03")] {
        d.cli_json(&[
            "session", "start", "--id", id, "--extent", extent, "--target", target,
        ]);
    }
    let data_dir = d.data_dir.clone();
    assert!(d.terminate().success());
    let table = data_dir.join("tables/subsystem.tbl");
    let mut bytes = std::fs::read(&table).unwrap();
    let at = bytes
        .windows(3)
        .position(|w| w == b"VT1")
        .expect("VT1's row in subsystem.tbl");
    bytes[at] ^= 0xff;
    std::fs::write(&table, &bytes).unwrap();

    let d = Daemon::boot(tmp.path());
    let log = d.log_text();
    assert!(
        log.contains("table subsystem: was damaged")
            && log.contains("rebuilt from 8 volume table(s), 2 entries"),
        "the IPL says where the sessions came from:\n{log}"
    );
    let list = d.cli_json(&["session", "list"]);
    for id in ["VT1", "VT2"] {
        assert_eq!(session(&list, id)["state"], "terminated", "{list}");
        assert_eq!(session(&list, id)["reason"], "ipl", "{list}");
        assert_eq!(session(&list, id)["host"], "SYS-SS01", "{list}");
    }
    // The rebuilt rows keep their owner host (sessions are keyed by it).
    let rows = d.cli_json(&["table", "show"]);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["host"] == "SYS-SS01"),
        "{rows}"
    );
    assert_eq!(
        std::fs::read(data_dir.join("tables/subsystem.tbl.damaged-1")).unwrap(),
        bytes,
        "the damaged file is kept as it was"
    );
    // A missing subsystem table is rebuilt the same way.
    assert!(d.terminate().success());
    std::fs::remove_file(&table).unwrap();
    let d = Daemon::boot(tmp.path());
    assert!(
        d.log_text().contains("table subsystem: was missing"),
        "{}",
        d.log_text()
    );
    let list = d.cli_json(&["session", "list"]);
    assert_eq!(session(&list, "VT1")["reason"], "ipl", "{list}");
}

/// Owner hosts and logical completion through the CLI: a session started with
/// `--host SYS2` lists that host, `event ipl --host SYS2` ends it alone (the
/// subsystem keeps running, the daemon's own session stays), the tables name
/// the owner, and a released session is listed as logically complete and is
/// still ended by its host's resource-manager restart.
#[test]
fn hosts_own_their_sessions_and_release_marks_logical_completion() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let start = |id: &str, src: &str, tgt: &str, host: Option<&str>| {
        let mut args = vec![
            "session", "start", "--id", id, "--extent", src, "--target", tgt,
        ];
        if let Some(h) = host {
            args.extend(["--host", h]);
        }
        d.cli_json(&args)
    };
    let own = start("OWN", "FB00:0-15", "FB01", None);
    assert_eq!(own["host"], "SYS-SS01", "{own}");
    let other = start("OTHER", "FB02:0-15", "FB03", Some("SYS2"));
    assert_eq!(other["host"], "SYS2", "{other}");
    let out = d.cli(&["session", "list"]);
    assert_success(&out, "session list");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("HOST") && text.contains("SYS2"), "{text}");

    // A bad host id, a session id the subsystems refuse and an empty program
    // are named, with the rule, before anything starts.
    let out = d.cli(&["event", "ipl", "--host", "two words"]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "host id `two words` contains ' '; allowed: A-Z a-z 0-9 . _ -",
        "event ipl --host with a space",
    );
    let bad_start = |id: &str, program: &str| {
        d.cli(&[
            "session",
            "start",
            "--id",
            id,
            "--extent",
            "FB02:0-3",
            "--target",
            "FB03",
            "--program",
            program,
        ])
    };
    let out = bad_start("A#B", "P");
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "session id `A#B` contains '#'",
        "id with #",
    );
    let out = bad_start("EMPTYPROG", "");
    assert_fails_with(&out, EXIT_FAILED, "program name is empty", "empty program");
    // A session's target is freed by its session, and the refusal says so.
    let out = d.cli(&[
        "map", "create", "--source", "FB02", "--target", "FB01", "--type", "nocopy",
    ]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "`session complete OWN` (once its copy is done) or `session terminate OWN` frees it",
        "map onto a session's target",
    );

    // SYS2 IPLs alone: OTHER ends (ipl), OWN is untouched and still copying.
    let r = d.cli_json(&["event", "ipl", "--host", "SYS2"]);
    assert_eq!(decision(&r, "OTHER")["reason"], "ipl", "{r}");
    assert_eq!(decision(&r, "OWN")["outcome"], "untouched", "{r}");
    assert!(
        decision(&r, "OWN")["why"]
            .as_str()
            .unwrap()
            .contains("owned by host SYS-SS01"),
        "{r}"
    );
    let list = d.cli_json(&["session", "list"]);
    assert_eq!(session(&list, "OWN")["state"], "active", "{list}");
    assert_eq!(session(&list, "OTHER")["reason"], "ipl", "{list}");
    let rows = d.cli_json(&["table", "show", "--volume", "FB02"]);
    assert!(
        rows.as_array().unwrap().iter().all(|e| e["host"] == "SYS2"),
        "{rows}"
    );

    // Release: logically complete, still active.
    let s = d.cli_json(&["session", "release", "OWN"]);
    assert_eq!(s["logically_complete"], true, "{s}");
    assert_eq!(s["state"], "active", "{s}");
    let row = last_row(&d, "FB00", "OWN");
    assert_eq!(row["status"], "logically-complete", "{row}");
    // An abend of another host's program of that name leaves it alone.
    let r = d.cli_json(&["event", "abend", "--program", "operator", "--host", "SYS2"]);
    assert_eq!(decision(&r, "OWN")["outcome"], "untouched", "{r}");
    // Its own host's resource manager restarts: it ends, and the why says the
    // backup must be taken again.
    let r = d.cli_json(&["event", "rm-restart"]);
    let own = decision(&r, "OWN");
    assert_eq!(own["reason"], "rm-restart", "{r}");
    assert!(
        own["why"].as_str().unwrap().contains("logically complete"),
        "{r}"
    );
    let out = d.cli(&["session", "release", "OWN"]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "terminated",
        "release of a terminated session",
    );
}

/// `session wait` returns once the copy has finished (then `session
/// complete` works; `--complete` does it), fails at once on a terminated
/// session naming why, and `session complete` of an unfinished copy names the
/// wait.
#[test]
fn session_wait_returns_when_the_copy_is_done_and_names_a_terminated_session() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let s = d.cli_json(&[
        "session",
        "start",
        "--id",
        "W1",
        "--extent",
        "FB00:0-2047",
        "--target",
        "FB01",
    ]);
    assert_eq!(s["state"], "active", "{s}");
    // Right after the start the copy has barely begun: complete refuses and
    // names the verb that waits.
    let out = d.cli(&["session", "complete", "W1"]);
    if !out.status.success() {
        assert_fails_with(
            &out,
            EXIT_FAILED,
            "session wait W1",
            "complete of an unfinished copy",
        );
    }
    let w = d.cli_json(&["session", "wait", "W1", "--complete", "--timeout", "120"]);
    assert_eq!(w["state"], "completed", "{w}");
    let out = d.cli(&["session", "wait", "W1"]);
    assert_success(&out, "wait on a completed session");

    d.cli_json(&[
        "session",
        "start",
        "--id",
        "W2",
        "--extent",
        "FB02:0-15",
        "--target",
        "FB03",
    ]);
    d.cli_json(&["session", "terminate", "W2"]);
    let out = d.cli(&["session", "wait", "W2"]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "was terminated (operator)",
        "wait on a terminated session",
    );
    let out = d.cli(&["session", "wait", "NOPE"]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "unknown session NOPE",
        "wait on an unknown session",
    );
}

/// `session start --copy-rate N` sets the background rate of the session's
/// maps: 0 copies only what writes touch (a wait gives up at its timeout,
/// naming the progress), and a rate outside 0-150 is refused.
#[test]
fn a_session_takes_its_own_copy_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    d.cli_json(&[
        "session",
        "start",
        "--id",
        "R0",
        "--extent",
        "FB00:0-15",
        "--target",
        "FB01",
        "--copy-rate",
        "0",
    ]);
    let maps = d.cli_json(&["map", "list"]);
    let m = maps
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["source"] == "FB00")
        .unwrap_or_else(|| panic!("no session map in {maps}"));
    assert_eq!(m["copy_rate"], 0, "{m}");
    let out = d.cli(&["session", "wait", "R0", "--timeout", "1"]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "still active (0.0% copied)",
        "wait on a rate-0 session",
    );
    let out = d.cli(&[
        "session",
        "start",
        "--id",
        "R1",
        "--extent",
        "FB02:0-15",
        "--target",
        "FB03",
        "--copy-rate",
        "151",
    ]);
    assert_eq!(out.status.code(), Some(2), "clap refuses 151");
}
