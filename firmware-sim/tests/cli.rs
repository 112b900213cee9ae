//! The CLI and control API as users script them: every public verb exists,
//! `--json` output carries the documented fields, and failures exit non-zero
//! with one line naming what was wrong.

mod common;

use common::{assert_fails_with, assert_success, http, run, Daemon, BIN};

/// Exit status of a refused request (CliError::Api).
const EXIT_FAILED: i32 = 1;
/// Exit status when the API cannot be reached.
const EXIT_UNREACHABLE: i32 = 3;

fn help(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--help");
    let out = run(BIN, &all);
    assert_success(&out, &format!("firmware-sim {}", all.join(" ")));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn every_verb_and_flag_of_cli_md_exists() {
    let top = help(&[]);
    for verb in [
        "boot",
        "volume",
        "map",
        "cascade",
        "group",
        "session",
        "table",
        "event",
        "replay",
        "fault-run",
        "check",
        "bench",
        "completions",
        "man",
    ] {
        assert!(
            top.contains(&format!("  {verb}")),
            "top-level verb {verb} missing:\n{top}"
        );
    }
    let cases: &[(&[&str], &[&str])] = &[
        (&["boot"], &["--config", "--data-dir", "--nbd", "--api"]),
        (&["volume"], &["list", "create", "delete"]),
        (
            &["volume", "create"],
            &["--id", "--model", "--api", "--json"],
        ),
        (
            &["map"],
            &[
                "create", "start", "prepare", "stop", "delete", "list", "show", "wait", "restore",
            ],
        ),
        (
            &["map", "create"],
            &[
                "--source",
                "--target",
                "--type",
                "--incremental",
                "--extent",
                "--copy-rate",
                "--clean-rate",
                "--id",
                "--name",
            ],
        ),
        (&["map", "stop"], &["--force"]),
        (&["map", "wait"], &["--progress"]),
        (&["cascade"], &["list"]),
        (&["map", "start"], &["--restore"]),
        (&["boot"], &["--peer"]),
        (
            &["group"],
            &["create", "start", "stop", "delete", "add", "remove"],
        ),
        (&["group", "start"], &["--restore"]),
        (&["group", "stop"], &["--force"]),
        (&["group", "create"], &["--maps", "--name"]),
        (
            &["session"],
            &["start", "release", "wait", "complete", "terminate", "list"],
        ),
        (
            &["session", "wait"],
            &["--progress", "--complete", "--timeout"],
        ),
        (&["event", "ipl"], &["--host"]),
        (&["event", "abend"], &["--program", "--host"]),
        (&["session", "terminate"], &["--reason"]),
        (
            &["session", "start"],
            &[
                "--id",
                "--extent",
                "--target",
                "--program",
                "--host",
                "--copy-rate",
            ],
        ),
        (&["table", "show"], &["--volume"]),
        (&["event"], &["ipl", "rm-restart", "abend", "reset"]),
        (&["event", "abend"], &["--program"]),
        (&["event", "reset"], &["--lose-volatile"]),
        (&["fault-run"], &["--seed", "--runs", "--json"]),
        (&["check"], &["--data-dir"]),
        (&["boot"], &["--read-only"]),
        (&["bench"], &["copy", "cow", "nbd"]),
        (
            &["bench", "copy"],
            &["--model", "--written", "--dir", "--json"],
        ),
        (
            &["bench", "cow"],
            &["--writes", "--threads", "--rounds", "--seed"],
        ),
        (&["bench", "nbd"], &["--runtime", "--qd"]),
    ];
    for (args, words) in cases {
        let text = help(args);
        for w in *words {
            assert!(
                text.contains(w),
                "`firmware-sim {}` lacks {w}:\n{text}",
                args.join(" ")
            );
        }
    }
}

#[test]
fn unreachable_api_exits_3_naming_the_address() {
    // Port 9 (discard) on loopback: nothing listens there in the test sandbox.
    for args in [
        &["volume", "list"][..],
        &["map", "start", "1"],
        &["event", "ipl"],
    ] {
        let mut all = args.to_vec();
        all.extend(["--api", "127.0.0.1:9"]);
        let out = run(BIN, &all);
        assert_fails_with(&out, EXIT_UNREACHABLE, "127.0.0.1:9", &all.join(" "));
    }
}

#[test]
fn the_api_address_comes_from_the_environment_unless_given() {
    let with_env = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .env("FIRMWARE_SIM_API", "127.0.0.1:9")
            .output()
            .expect("run the CLI")
    };
    let out = with_env(&["volume", "list"]);
    assert_fails_with(
        &out,
        EXIT_UNREACHABLE,
        "127.0.0.1:9",
        "$FIRMWARE_SIM_API used",
    );
    let out = with_env(&["volume", "list", "--api", "127.0.0.1:8"]);
    assert_fails_with(
        &out,
        EXIT_UNREACHABLE,
        "127.0.0.1:8",
        "--api wins over the env",
    );
}

/// QA: `--default-export NOPE` was accepted; clients asking for the
/// default export then got "unknown export" at connect.
#[test]
fn boot_refuses_a_default_export_that_is_no_volume() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let out = run(
        BIN,
        &[
            "boot",
            "--data-dir",
            data.to_str().expect("utf-8 path"),
            "--api",
            "127.0.0.1:0",
            "--nbd",
            "127.0.0.1:0",
            "--default-export",
            "NOPE",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--default-export NOPE") && err.contains("FB00"),
        "the flag and the volumes there are: {err}"
    );
    // A volume made by `volume create` (kept in the metadata, not in the
    // config) is a valid default export.
    let d = Daemon::boot(tmp.path());
    assert_success(
        &d.cli(&["volume", "create", "--id", "DB01", "--model", "fb:16M"]),
        "volume create",
    );
    assert!(d.terminate().success());
    let d = Daemon::boot_with(tmp.path(), &["--default-export", "DB01"]);
    assert_success(&d.cli(&["volume", "list"]), "serving with DB01 the default");
}

#[test]
fn boot_refuses_one_port_for_nbd_and_the_api_naming_both_flags() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let out = run(
        BIN,
        &[
            "boot",
            "--data-dir",
            data.to_str().expect("utf-8 path"),
            "--nbd",
            "127.0.0.1:17999",
            "--api",
            "127.0.0.1:17999",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "flags: a usage error: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot listen on one port") && err.contains("--nbd or --api"),
        "the clash is named with the flags that fix it: {err}"
    );
    // From the config: a bad config, exit 1 (QA: it was 2, a bad command line).
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        "id = \"SS01\"\n[listen]\nnbd = \"127.0.0.1:17998\"\napi = \"127.0.0.1:17998\"\n\n[[volumes]]\nid = \"V\"\nmodel = \"fb:16M\"\n",
    )
    .unwrap();
    let out = run(
        BIN,
        &[
            "boot",
            "--data-dir",
            tmp.path().join("d2").to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on one port"));
}

#[test]
fn check_defaults_to_boots_data_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check")
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("firmware-sim-data"), "{err}");
}

#[test]
fn json_errors_are_json_on_stdout_with_a_non_zero_exit() {
    let out = run(BIN, &["volume", "list", "--json", "--api", "127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(EXIT_UNREACHABLE));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", out.stdout));
    assert_eq!(v["kind"], "unreachable", "{v}");
    assert_eq!(v["exit"], EXIT_UNREACHABLE, "{v}");
    assert!(v["error"].as_str().unwrap().contains("127.0.0.1:9"), "{v}");
    // Without --json stdout stays empty (the one line goes to stderr).
    let out = run(BIN, &["volume", "list", "--api", "127.0.0.1:9"]);
    assert!(out.stdout.is_empty());
    // A bad command line under --json: a usage document, exit 2.
    for (args, needle) in [
        (&["map", "show", "--json"][..], "<ID>"),
        (
            &["map", "create", "--json", "--type", "bogus"][..],
            "full, nocopy",
        ),
    ] {
        let out = run(BIN, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {:?}", out.stdout));
        assert_eq!(
            (v["kind"].as_str(), v["exit"].as_i64()),
            (Some("usage"), Some(2))
        );
        assert!(v["error"].as_str().unwrap().contains(needle), "{v}");
    }
}

#[test]
fn volumes_maps_groups_and_errors_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    assert!(
        d.banner.contains(&d.uri("FB00")),
        "boot prints the NBD URIs:\n{}",
        d.banner
    );
    let abs = std::fs::canonicalize(tmp.path()).unwrap().join("data");
    assert!(
        d.banner.contains(&abs.display().to_string()),
        "the banner names the data directory absolutely:\n{}",
        d.banner
    );
    // An API error under --json: a JSON document on stdout, exit 1.
    let out = d.cli(&["map", "show", "99", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", out.stdout));
    assert_eq!(v["kind"], "unknown_map", "{v}");
    assert_eq!(v["status"], 404, "{v}");

    let (status, text) = http("GET", &format!("http://{}/health", d.api), None);
    assert_eq!(status, 200, "{text}");
    let health: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(health["status"], "ok");

    // Volumes: the embedded default, then create and delete.
    let vols = d.cli_json(&["volume", "list"]);
    let ids: Vec<&str> = vols
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["CKD00", "CKD01", "CKD02", "CKD03", "FB00", "FB01", "FB02", "FB03"]
    );
    let fb = vols
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "FB00")
        .unwrap();
    assert_eq!(fb["size_bytes"], 1u64 << 30);
    let v = d.cli_json(&["volume", "create", "--id", "EXTRA", "--model", "3390-1"]);
    assert_eq!(v["model"], "3390-1");
    let out = d.cli(&["volume", "create", "--id", "BAD", "--model", "3390-7"]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "3390-7",
        "volume create with a bad model",
    );
    assert_success(&d.cli(&["volume", "delete", "EXTRA"]), "volume delete");
    let out = d.cli(&["volume", "delete", "EXTRA"]);
    assert_fails_with(&out, EXIT_FAILED, "EXTRA", "delete of a deleted volume");

    // Unknown volume and bad extent when creating maps.
    let out = d.cli(&[
        "map", "create", "--source", "NOPE", "--target", "FB01", "--type", "full",
    ]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "NOPE",
        "map create with an unknown volume",
    );
    // A typo of one volume is named.
    let out = d.cli(&["volume", "delete", "fb00"]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "unknown volume fb00 (did you mean FB00? ids are case-sensitive",
        "volume delete with the wrong case",
    );
    let out = d.cli(&[
        "map",
        "create",
        "--source",
        "CKD00",
        "--target",
        "CKD01",
        "--type",
        "full",
        "--extent",
        "00000000-FFFF000E",
    ]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "extent",
        "map create with an extent past the end",
    );
    let out = d.cli(&[
        "map", "create", "--source", "CKD00", "--target", "CKD01", "--type", "full", "--extent",
        "banana",
    ]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "banana",
        "map create with an unparsable extent",
    );

    // A map's life: create (idle_or_copied), start (copying), show, stop.
    let m = d.cli_json(&[
        "map", "create", "--source", "FB00", "--target", "FB01", "--type", "nocopy", "--id", "0",
    ]);
    assert_eq!(m["id"], 0);
    assert_eq!(m["state"], "idle_or_copied");
    // Waiting for a map that was never started is an error that says so.
    let out = d.cli(&["map", "wait", "0"]);
    assert_fails_with(&out, 1, "not started", "map wait on an idle map");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("firmware-sim map start 0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for field in [
        "id",
        "source",
        "target",
        "type",
        "incremental",
        "state",
        "progress_percent",
        "copy_rate",
        "clean_rate",
        "cascade",
    ] {
        assert!(m.get(field).is_some(), "map JSON lacks {field}: {m}");
    }
    let stopped = d.cli_json(&["map", "stop", "0"]);
    assert_eq!(
        stopped["state"], "idle_or_copied",
        "stop of an idle map is a no-op"
    );
    let m = d.cli_json(&["map", "start", "0"]);
    assert_eq!(m["state"], "copying");
    for verb in ["start", "prepare", "delete"] {
        let out = d.cli(&["map", verb, "0"]);
        assert_fails_with(
            &out,
            EXIT_FAILED,
            "wrong_state",
            &format!("{verb} of a copying map"),
        );
    }
    let out = d.cli(&["map", "show", "99"]);
    assert_fails_with(&out, EXIT_FAILED, "99", "show of an unknown map");

    // Cascade order: the newest target goes right after the source.
    let m2 = d.cli_json(&[
        "map", "create", "--source", "FB00", "--target", "FB02", "--type", "nocopy",
    ]);
    d.cli_json(&["map", "start", &m2["id"].to_string()]);
    let out = d.cli(&["cascade", "list"]);
    assert_success(&out, "cascade list");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FB00 -> FB02 -> FB01"),
        "cascade list:\n{text}"
    );
    let cs = d.cli_json(&["cascade", "list"]);
    assert_eq!(
        cs[0]["order"],
        serde_json::json!(["FB00", "FB02", "FB01"]),
        "{cs}"
    );
    let shown = d.cli_json(&["map", "show", "0"]);
    assert_eq!(
        shown["cascade"]["order"],
        serde_json::json!(["FB00", "FB02", "FB01"]),
        "{shown}"
    );

    // Consistency group of two CKD maps started at one instant.
    let a = d.cli_json(&[
        "map", "create", "--source", "CKD00", "--target", "CKD01", "--type", "nocopy",
    ]);
    let b = d.cli_json(&[
        "map", "create", "--source", "CKD02", "--target", "CKD03", "--type", "nocopy",
    ]);
    let maps = format!("{},{}", a["id"], b["id"]);
    d.cli_json(&["group", "create", "0", "--maps", &maps]);
    let started = d.cli_json(&["group", "start", "0"]);
    assert_eq!(started.as_array().unwrap().len(), 2, "{started}");
    for m in started.as_array().unwrap() {
        assert_eq!(m["state"], "copying", "{m}");
    }
    let out = d.cli(&["group", "start", "6"]);
    assert_fails_with(&out, EXIT_FAILED, "6", "start of an unknown group");

    // A target belongs to one map at a time.
    let out = d.cli(&[
        "map", "create", "--source", "FB03", "--target", "FB01", "--type", "full",
    ]);
    assert_fails_with(&out, EXIT_FAILED, "FB01", "second map onto the same target");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[busy]"),
        "{out:?}"
    );

    // A full map with background copy finishes; wait --progress returns it copied.
    d.cli_json(&["volume", "create", "--id", "SRC16", "--model", "fb:16M"]);
    d.cli_json(&["volume", "create", "--id", "DST16", "--model", "fb:16M"]);
    let f = d.cli_json(&[
        "map",
        "create",
        "--source",
        "SRC16",
        "--target",
        "DST16",
        "--type",
        "full",
        "--copy-rate",
        "150",
    ]);
    let fid = f["id"].to_string();
    d.cli_json(&["map", "start", &fid]);
    let out = d.cli(&["map", "wait", &fid, "--progress", "--timeout", "120"]);
    assert_success(&out, "map wait --progress");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("100%"),
        "{out:?}"
    );
    let f = d.cli_json(&["map", "show", &fid]);
    assert_eq!(f["progress_percent"], 100, "{f}");
    let out = d.cli(&["map", "wait", "0"]);
    assert_fails_with(&out, EXIT_FAILED, "never", "wait on a nocopy map");

    // prepare -> prepared (wait returns), then start -> copying; volumes in a map
    // cannot be deleted.
    d.cli_json(&["volume", "create", "--id", "P1", "--model", "fb:16M"]);
    d.cli_json(&["volume", "create", "--id", "P2", "--model", "fb:16M"]);
    let p = d.cli_json(&[
        "map",
        "create",
        "--source",
        "P1",
        "--target",
        "P2",
        "--type",
        "full",
        "--copy-rate",
        "0",
    ]);
    let pid = p["id"].to_string();
    let p = d.cli_json(&["map", "prepare", &pid]);
    assert_eq!(p["state"], "prepared", "{p}");
    let p = d.cli_json(&["map", "wait", &pid]);
    assert_eq!(p["state"], "prepared", "{p}");
    let url = format!("http://{}", d.api);
    let out = run(BIN, &["map", "start", &pid, "--json", "--api", &url]);
    assert_success(&out, "map start with --api http://HOST:PORT");
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["state"], "copying", "{p}");
    let out = d.cli(&["volume", "delete", "P1"]);
    assert_fails_with(&out, EXIT_FAILED, "busy", "delete of a volume in a map");

    // Listing in text form names every map.
    let out = d.cli(&["map", "list"]);
    assert_success(&out, "map list");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FB00"),
        "map list text"
    );

    // Prometheus metrics carry per-volume I/O, copy progress and flush latency.
    let (status, text) = http("GET", &format!("http://{}/metrics", d.api), None);
    assert_eq!(status, 200, "{text}");
    for series in [
        "firmware_sim_map_progress_percent{map=\"0\"",
        "firmware_sim_cow_copies_total",
        "firmware_sim_flush_latency_seconds_bucket",
        "firmware_sim_nbd_reads_total",
    ] {
        assert!(text.contains(series), "/metrics lacks {series}:\n{text}");
    }
    // Counters never go down across an IPL (the controller's start again
    // with the new handle; the daemon adds those of the old one).
    let counter = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    let before = counter(&text, "firmware_sim_cow_copies_total");
    let records = counter(&text, "firmware_sim_flush_latency_seconds_count");
    assert!(records > 0, "{text}");
    d.cli_json(&["event", "ipl"]);
    let (_, after) = http("GET", &format!("http://{}/metrics", d.api), None);
    assert!(
        counter(&after, "firmware_sim_cow_copies_total") >= before,
        "{after}"
    );
    assert!(
        counter(&after, "firmware_sim_flush_latency_seconds_count") >= records,
        "store flushes went down across an IPL:\n{after}"
    );

    // A bad JSON body gets a JSON error with a kind.
    let (status, text) = http("POST", &format!("http://{}/mappings", d.api), Some("{"));
    assert_eq!(status, 400, "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["kind"], "bad_request", "{body}");
    let (status, text) = http("GET", &format!("http://{}/volumes/NOPE", d.api), None);
    assert_eq!(status, 404, "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["kind"], "unknown_volume", "{body}");
    // A method a route does not have answers JSON too.
    let (status, text) = http("DELETE", &format!("http://{}/volumes", d.api), None);
    assert_eq!(status, 404, "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["kind"], "not_found", "{body}");
    // A misspelt field is refused rather than silently ignored.
    let (status, text) = http(
        "POST",
        &format!("http://{}/volumes", d.api),
        Some(r#"{"id":"X9","model":"fb:64M","modle":"fb:1G"}"#),
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("modle"), "{text}");
}

#[test]
fn group_create_takes_the_id_the_user_chose() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    for (s, t) in [("FB00", "FB01"), ("FB02", "FB03")] {
        d.cli_json(&[
            "map", "create", "--source", s, "--target", t, "--type", "nocopy",
        ]);
    }
    // An id ahead of the subsystem's next one is honoured.
    let g = d.cli_json(&["group", "create", "3", "--maps", "0"]);
    assert_eq!(g["id"], 3, "{g}");
    let out = d.cli(&["group", "create", "3", "--maps", "1"]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "group 3 already exists",
        "taken group id",
    );
    // An id the subsystem has passed is refused with a hint that works.
    let out = d.cli(&["group", "create", "1", "--maps", "1"]);
    // (The refusal creates nothing: the id it names is the next one.)
    assert_fails_with(&out, EXIT_FAILED, "is 4", "group id below the next one");
    let g = d.cli_json(&["group", "create", "4", "--maps", "1"]);
    assert_eq!(g["id"], 4, "{g}");
    let ids: Vec<u64> = d
        .cli_json(&["group", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [3, 4], "only the groups the user created");
    // Without an id the subsystem assigns the next free one, past the
    // session groups it keeps hidden, and prints it.
    d.cli_json(&[
        "session",
        "start",
        "--id",
        "K1",
        "--extent",
        "CKD00:00000000-0000000E",
        "--target",
        "CKD01",
    ]);
    d.cli_json(&[
        "map", "create", "--source", "CKD02", "--target", "CKD03", "--type", "nocopy",
    ]);
    let g = d.cli_json(&["group", "create", "--maps", "3"]);
    let id = g["id"].as_u64().expect("an id");
    assert!(id > 5, "{g}");
    let listed: Vec<u64> = d
        .cli_json(&["group", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_u64().unwrap())
        .collect();
    assert!(listed.contains(&id), "{listed:?}");
    d.cli_json(&["group", "delete", &id.to_string(), "--force"]);
    let out = d.cli(&["group", "create", "--maps", "3"]);
    assert_success(&out, "group create without an id");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("created group "), "{text}");
}

#[test]
fn map_restore_needs_an_image_and_takes_a_copy_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let m = d.cli_json(&[
        "map", "create", "--source", "FB00", "--target", "FB01", "--type", "nocopy",
    ]);
    let id = m["id"].to_string();
    // Never started: the target holds no image of the source.
    let out = d.cli(&["map", "restore", &id]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "no point-in-time image",
        "restore of an unstarted map",
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[wrong_state]"),
        "{out:?}"
    );
    assert_eq!(
        d.cli_json(&["map", "list"]).as_array().unwrap().len(),
        1,
        "a refused restore creates no map"
    );
    d.cli_json(&["map", "start", &id]);
    let out = d.cli(&["map", "restore", &id, "--copy-rate", "151"]);
    assert_fails_with(&out, EXIT_FAILED, "0-150", "restore rate out of range");
    // A nocopy map has copy rate 0: the reverse map gets the rate asked for.
    let r = d.cli_json(&["map", "restore", &id, "--copy-rate", "100"]);
    assert_eq!(r["source"], "FB01", "{r}");
    assert_eq!(r["copy_rate"], 100, "{r}");

    // Without --copy-rate a nocopy map's restore copies at the documented 50.
    let m = d.cli_json(&[
        "map", "create", "--source", "FB02", "--target", "FB03", "--type", "nocopy",
    ]);
    let id = m["id"].to_string();
    d.cli_json(&["map", "start", &id]);
    let r = d.cli_json(&["map", "restore", &id]);
    assert_eq!(r["copy_rate"], 50, "{r}");

    // A full reverse map that exists already is the one started: at rate 0
    // it copies at 50, and --copy-rate is taken, not ignored (0 too: a
    // restore must finish).
    for (rate, want) in [(None, 50), (Some("30"), 30), (Some("0"), 50)] {
        let tmp = tempfile::tempdir().unwrap();
        let d = Daemon::boot(tmp.path());
        let create = |s: &str, t: &str, more: &[&str]| create_map(&d, s, t, more);
        let id = create("FB00", "FB01", &["--type", "nocopy"]);
        d.cli_json(&["map", "start", &id]);
        let rev = create("FB01", "FB00", &["--type", "full", "--copy-rate", "0"]);
        let mut args = vec!["map", "restore", id.as_str()];
        args.extend(rate.iter().flat_map(|r| ["--copy-rate", r]));
        let r = d.cli_json(&args);
        assert_eq!(r["id"].to_string(), rev, "{r}");
        assert_eq!(r["copy_rate"], want, "{r}");
    }
}

/// `map create --source S --target T MORE...` on `d`; the new map's id.
fn create_map(d: &Daemon, source: &str, target: &str, more: &[&str]) -> String {
    let mut args = vec!["map", "create", "--source", source, "--target", target];
    args.extend(more);
    d.cli_json(&args)["id"].to_string()
}

/// QA: a restore through a nocopy or narrower reverse map copied back part
/// of the image (or never finished) and said it was running; a refused
/// restore of a stopped map named a map it created and deleted behind the
/// scenes (using up its id); `--copy-rate 0` made a restore that never ends.
#[test]
fn map_restore_refuses_what_cannot_copy_back_the_whole_image() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let create = |s: &str, t: &str, more: &[&str]| create_map(&d, s, t, more);
    let id = create("FB00", "FB01", &["--type", "nocopy"]);
    d.cli_json(&["map", "start", &id]);
    for (more, said) in [
        (&["--type", "nocopy"][..], "a nocopy map"),
        (
            &["--type", "full", "--extent", "0-15"][..],
            "limited to tracks 0-15",
        ),
    ] {
        let rev = create("FB01", "FB00", more);
        let out = d.cli(&["map", "restore", &id]);
        assert_fails_with(
            &out,
            EXIT_FAILED,
            said,
            "restore through a partial reverse map",
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&format!("map delete {rev}")),
            "{out:?}"
        );
        d.cli_json(&["map", "delete", &rev]);
    }
    // Restoring a restore whose original map still copies: refused naming
    // that map (QA: the controller's "map 0 is copying: start is not
    // allowed").
    let full = create("FB02", "FB03", &["--type", "full", "--copy-rate", "0"]);
    d.cli_json(&["map", "start", &full]);
    let back = d.cli_json(&["map", "restore", &full]);
    let back = back["id"].to_string();
    assert_fails_with(
        &d.cli(&["map", "restore", &back]),
        EXIT_FAILED,
        &format!("map {full} (FB02 -> FB03), the reverse of map {back}, is copying"),
        "restore of a restore",
    );
    d.cli_json(&["map", "delete", &back, "--force"]);
    d.cli_json(&["map", "delete", &full, "--force"]);
    // A stopped map has no image: refused naming it, and no map is made.
    let before = d.cli_json(&["map", "list"]).as_array().unwrap().len();
    d.cli_json(&["map", "stop", &id]);
    let out = d.cli(&["map", "restore", &id]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        &format!("map {id} is stopped"),
        "restore of a stopped map",
    );
    assert_eq!(
        d.cli_json(&["map", "list"]).as_array().unwrap().len(),
        before
    );
    // --copy-rate 0 on a new reverse map: copied at 50.
    let id = create("FB02", "FB03", &["--type", "nocopy"]);
    d.cli_json(&["map", "start", &id]);
    let r = d.cli_json(&["map", "restore", &id, "--copy-rate", "0"]);
    assert_eq!(r["copy_rate"], 50, "{r}");
    // Only a suspended map resumes.
    let out = d.cli(&["map", "resume", &id]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "[wrong_state]",
        "resume of a copying map",
    );
}

#[test]
fn a_foreign_http_server_is_named_and_proxies_are_ignored() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let out = std::process::Command::new(BIN)
        .args(["volume", "list", "--api", &addr])
        .env("http_proxy", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_fails_with(
        &out,
        EXIT_UNREACHABLE,
        "answered HTTP 404 without a control-API error (not a firmware-sim control API?)",
        "a foreign server behind a proxy setting",
    );
}

#[test]
fn map_create_id_takes_a_free_id_at_or_above_the_next_one() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let create = |id: &str| {
        d.cli(&[
            "map", "create", "--source", "FB02", "--target", "FB03", "--type", "nocopy", "--id",
            id, "--json",
        ])
    };
    let m = d.cli_json(&[
        "map", "create", "--source", "FB00", "--target", "FB01", "--type", "nocopy", "--id", "0",
    ]);
    assert_eq!(m["id"], 0, "{m}");
    assert_fails_with(
        &create("0"),
        EXIT_FAILED,
        "map 0 already exists",
        "taken map id",
    );
    let out = create("4");
    assert_success(&out, "map create --id 4");
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["id"], 4, "{m}");
    d.cli_json(&["map", "delete", "4"]);
    // The subsystem has passed 2: refused, and the id the hint names works.
    let out = create("2");
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "lowest it can give now is 5",
        "passed map id",
    );
    assert_eq!(d.cli_json(&["map", "list"]).as_array().unwrap().len(), 1);
    let out = create("5");
    assert_success(&out, "map create --id 5 (the hint)");
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["id"], 5, "{m}");
}

/// The backquoted commands in an error message, as argument lists.
fn hinted_commands(stderr: &str) -> Vec<Vec<String>> {
    stderr
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|c| c.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn every_hint_names_a_command_that_then_works() {
    // Issue 15: hints named verbs and flags that did not exist.
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let id = |m: &serde_json::Value| m["id"].as_u64().unwrap().to_string();
    let create = |args: &[&str]| {
        let mut all = vec!["map", "create"];
        all.extend_from_slice(args);
        id(&d.cli_json(&all))
    };
    // Run the hinted command the message names; it must succeed.
    let follow = |out: &std::process::Output, pick: &str| {
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let cmds = hinted_commands(&err);
        let cmd = cmds
            .iter()
            .find(|c| c.join(" ").starts_with(pick))
            .unwrap_or_else(|| panic!("no `{pick} ...` hint in: {err}"));
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        assert_success(&d.cli(&args), &format!("hinted `{}`", cmd.join(" ")));
    };

    // A restore onto the source of a snapshot: start --restore.
    let snap = create(&["--source", "FB00", "--target", "FB01", "--type", "nocopy"]);
    assert_success(&d.cli(&["map", "start", &snap]), "snapshot start");
    let back = create(&["--source", "FB02", "--target", "FB00", "--type", "full"]);
    let out = d.cli(&["map", "start", &back]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "--restore",
        "start onto an active source",
    );
    follow(&out, "map start");
    let m = d.cli_json(&["map", "show", &back]);
    assert_eq!(m["state"], "copying", "{m}");

    // A group member is controlled through the group, or taken out of it.
    let member = create(&["--source", "FB01", "--target", "FB03", "--type", "nocopy"]);
    assert_success(
        &d.cli(&["group", "create", "7", "--maps", &member]),
        "group",
    );
    let out = d.cli(&["map", "start", &member]);
    assert_fails_with(&out, EXIT_FAILED, "group start 7", "start of a member");
    follow(&out, "group start");
    let state = |d: &Daemon| d.cli_json(&["group", "list"])[0]["state"].clone();
    assert_eq!(state(&d), "copying");
    let stopped = d.cli_json(&["group", "stop", "7", "--force"]);
    assert_eq!(stopped[0]["state"], "stopped", "{stopped}");
    assert_eq!(state(&d), "stopped", "the group's state follows its maps");
    let out = d.cli(&["map", "stop", &member]);
    assert_fails_with(&out, EXIT_FAILED, "group remove 7", "stop of a member");
    follow(&out, "group remove");
    assert_success(&d.cli(&["group", "delete", "7"]), "group delete");
    let groups = d.cli_json(&["group", "list"]);
    assert!(groups.as_array().unwrap().is_empty(), "{groups}");

    // A target still held by a stopped map: the hint deletes that map.
    let out = d.cli(&[
        "map", "create", "--source", "FB02", "--target", "FB03", "--type", "nocopy",
    ]);
    assert_fails_with(&out, EXIT_FAILED, "already the target", "target in use");
    follow(&out, "map delete");
    let last = create(&["--source", "FB02", "--target", "FB03", "--type", "nocopy"]);
    assert_success(
        &d.cli(&["map", "start", &last]),
        "start after the hinted delete",
    );

    // A plain delete of a copying map names the forced one.
    let out = d.cli(&["map", "delete", &last]);
    assert_fails_with(&out, EXIT_FAILED, "--force", "delete of a copying map");
    let hinted = hinted_commands(&String::from_utf8_lossy(&out.stderr));
    assert!(
        hinted
            .iter()
            .any(|c| c.join(" ") == format!("map delete {last} --force")),
        "{hinted:?}"
    );
}

#[test]
fn volume_list_shows_which_volumes_are_offline_and_why() {
    // Issue 15: a read failing with EIO was the only sign of an offline target.
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let m = d.cli_json(&[
        "map", "create", "--source", "FB00", "--target", "FB01", "--type", "nocopy",
    ]);
    let id = m["id"].to_string();
    assert_success(&d.cli(&["map", "prepare", &id]), "prepare");
    let vols = d.cli_json(&["volume", "list"]);
    let fb01 = vols
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "FB01")
        .unwrap();
    assert_eq!(fb01["online"], false, "{fb01}");
    let reason = fb01["offline_reason"].as_str().unwrap();
    assert!(reason.contains(&format!("`map start {id}`")), "{reason}");
    let text = String::from_utf8_lossy(&d.cli(&["volume", "list"]).stdout).to_string();
    assert!(
        text.contains(&format!("FB01 is offline: target of map {id} (prepared)")),
        "{text}"
    );
    assert_success(&d.cli(&["map", "start", &id]), "start");
    let vols = d.cli_json(&["volume", "list"]);
    let v = vols
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "FB01")
        .unwrap();
    assert_eq!(v["online"], true, "{v}");
    assert!(v.get("offline_reason").is_none(), "{v}");
}

/// Completion scripts and the man page come from the parser's own tree: the
/// real verbs appear in them, and an unknown shell is a usage error.
#[test]
fn completions_and_man_page_name_the_real_verbs() {
    let out = run(BIN, &["completions", "bash"]);
    assert_success(&out, "completions bash");
    let bash = String::from_utf8_lossy(&out.stdout);
    for verb in ["fault-run", "session", "bench", "--read-only"] {
        assert!(bash.contains(verb), "bash completion lacks {verb}");
    }
    // The script completes below the first word (clap_complete 4.6 named
    // those branches so that only the top-level verbs completed).
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("c.bash");
    std::fs::write(&script, bash.as_bytes()).unwrap();
    let complete = |words: &str| {
        let out = run(
            "bash",
            &[
                "-c",
                &format!(
                    "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); \
                     _firmware__sim firmware-sim \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; \
                     echo \"${{COMPREPLY[*]}}\"",
                    script.display()
                ),
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(complete("firmware-sim map cr"), "create");
    assert_eq!(complete("firmware-sim map create --type ''"), "full nocopy");
    assert!(complete("firmware-sim completions ''").contains("bash elvish fish"));
    let out = run(BIN, &["completions", "zsh"]);
    assert_success(&out, "completions zsh");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("#compdef firmware-sim"));
    let out = run(BIN, &["completions", "tcsh"]);
    assert_fails_with(&out, 2, "tcsh", "completions tcsh");

    let out = run(BIN, &["man"]);
    assert_success(&out, "man");
    let man = String::from_utf8_lossy(&out.stdout);
    assert!(man.contains(".TH firmware-sim 1"), "main page header");
    for page in [
        "firmware\\-sim\\-map",
        "firmware\\-sim\\-session",
        "firmware\\-sim\\-boot",
    ] {
        assert!(man.contains(page), "man page lacks the section {page}");
    }
    // Verbs of verbs have pages too, with their own flags.
    assert!(
        man.contains(".TH firmware-sim-map-create 1"),
        "no map create page"
    );
    assert!(
        man.contains("copy\\-rate"),
        "map create's --copy-rate is missing"
    );
    // --dir writes one file per page, the names the SEE ALSO lines give.
    let dir = tmp.path().join("man1");
    let out = run(BIN, &["man", "--dir", dir.to_str().unwrap()]);
    assert_success(&out, "man --dir");
    for page in [
        "firmware-sim.1",
        "firmware-sim-map.1",
        "firmware-sim-map-create.1",
    ] {
        assert!(dir.join(page).is_file(), "{page} not written");
    }
}

/// `cascade list --dot` draws what users need to see: the cascade in read-
/// through order with its head in bold, and a map outside any cascade (a
/// restore, or one not started) dashed.
#[test]
fn cascade_list_dot_draws_cascades_and_maps_outside_them() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    for args in [
        &[
            "map", "create", "--source", "FB00", "--target", "FB01", "--type", "nocopy",
        ][..],
        &["map", "start", "0"],
        &[
            "map", "create", "--source", "FB00", "--target", "FB02", "--type", "nocopy",
        ],
        &["map", "start", "1"],
        &[
            "map", "create", "--source", "FB03", "--target", "FB00", "--type", "full",
        ],
    ] {
        assert_success(&d.cli(args), &args.join(" "));
    }
    let out = d.cli(&["cascade", "list", "--dot"]);
    assert_success(&out, "cascade list --dot");
    let dot = String::from_utf8_lossy(&out.stdout);
    assert!(dot.starts_with("digraph cascades {"), "{dot}");
    assert!(
        dot.contains("\"FB00\" [style=bold]"),
        "head in bold:\n{dot}"
    );
    assert!(
        dot.contains("\"FB00\" -> \"FB02\" [label=\"map 1 (nocopy)\"]"),
        "{dot}"
    );
    assert!(
        dot.contains("\"FB02\" -> \"FB01\" [label=\"map 0 (nocopy)\"]"),
        "{dot}"
    );
    assert!(
        dot.contains("\"FB03\" -> \"FB00\" [style=dashed, label=\"map 2 (full, idle_or_copied)\"]"),
        "{dot}"
    );
    let out = d.cli(&["cascade", "list", "--dot", "--json"]);
    assert_fails_with(&out, 2, "cannot be used with", "--dot with --json");
}

/// Maps and groups may be named at create; every verb then takes the name in
/// place of the id, lists show it, a reboot keeps it, and a bad or taken
/// name is refused before anything is created.
#[test]
fn maps_and_groups_answer_to_their_names_across_a_reboot() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let m = d.cli_json(&[
        "map", "create", "--source", "FB00", "--target", "FB01", "--type", "nocopy", "--name",
        "nightly",
    ]);
    assert_eq!(m["name"], "nightly", "{m}");
    let id = m["id"].as_u64().unwrap();
    let out = d.cli(&[
        "map", "create", "--source", "FB02", "--target", "FB03", "--type", "nocopy", "--name",
        "nightly",
    ]);
    assert_fails_with(&out, EXIT_FAILED, "taken by map", "a taken map name");
    let out = d.cli(&[
        "map", "create", "--source", "FB02", "--target", "FB03", "--type", "nocopy", "--name", "42",
    ]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "all digits",
        "a name that reads as an id",
    );
    assert_eq!(
        d.cli_json(&["map", "list"]).as_array().unwrap().len(),
        1,
        "nothing created"
    );
    let g = d.cli_json(&["group", "create", "--maps", "nightly", "--name", "db"]);
    assert_eq!(
        (g["name"].as_str(), g["maps"][0].as_u64()),
        (Some("db"), Some(id)),
        "{g}"
    );
    d.cli_json(&["group", "start", "db"]);
    let shown = d.cli_json(&["map", "show", "nightly"]);
    assert_eq!(shown["state"], "copying", "{shown}");
    let out = d.cli(&["map", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nightly"));

    let d = d.reboot();
    assert_eq!(
        d.cli_json(&["map", "show", "nightly"])["id"].as_u64(),
        Some(id)
    );
    assert_eq!(d.cli_json(&["group", "list"])[0]["name"], "db");
    d.cli_json(&["group", "stop", "db", "--force"]);
    d.cli_json(&["group", "delete", "db", "--force"]);
    d.cli_json(&["map", "delete", "nightly", "--force"]);
    let out = d.cli(&["map", "show", "nightly"]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "unknown map nightly",
        "a deleted map's name",
    );
    // The name is free again.
    let m = d.cli_json(&[
        "map", "create", "--source", "FB02", "--target", "FB03", "--type", "nocopy", "--name",
        "nightly",
    ]);
    assert_ne!(m["id"].as_u64(), Some(id));
}

/// A full copy that finished while an older copy still reads through its
/// target is cut from its chain and stays copying at 100 %: `cascade list`
/// says whose finished copy the head of the remaining chain is (issue 15:
/// the cascade view includes cut maps).
#[test]
fn cascade_list_names_the_cut_map_a_chain_reads_through() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let slow = d.cli_json(&[
        "map",
        "create",
        "--source",
        "FB00",
        "--target",
        "FB01",
        "--type",
        "full",
        "--copy-rate",
        "0",
    ]);
    let slow = slow["id"].as_u64().unwrap().to_string();
    assert_success(&d.cli(&["map", "start", &slow]), "start slow");
    let fast = d.cli_json(&[
        "map",
        "create",
        "--source",
        "FB00",
        "--target",
        "FB02",
        "--type",
        "full",
        "--copy-rate",
        "150",
    ]);
    let fast = fast["id"].as_u64().unwrap().to_string();
    assert_success(&d.cli(&["map", "start", &fast]), "start fast");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let cs = d.cli_json(&["cascade", "list"]);
        let cut = cs
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["order"][0] == "FB02");
        if let Some(c) = cut {
            assert_eq!(c["order"], serde_json::json!(["FB02", "FB01"]), "{cs}");
            assert_eq!(c["head_map"].as_u64().unwrap().to_string(), fast, "{cs}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never cut: {cs}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = d.cli(&["cascade", "list"]);
    assert_success(&out, "cascade list");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "FB02 is map {fast}'s finished copy, cut from its chain"
        )),
        "{text}"
    );
    let m = d.cli_json(&["map", "show", &fast]);
    assert_eq!(m["state"], "copying", "{m}");
    assert_eq!(m["progress_percent"], 100, "{m}");
    assert_eq!(
        m["cascade"]["order"],
        serde_json::json!(["FB02", "FB01"]),
        "{m}"
    );
    let out = d.cli(&["map", "show", &fast]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("full FB02 -> FB01 (cut at 100 %"), "{text}");
    d.terminate();
}

/// A forced delete of a map in the middle of a cascade stops the older maps
/// that read through it; the answer names each, with its target offline.
#[test]
fn a_forced_delete_names_the_maps_it_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let mut ids = Vec::new();
    // Oldest first: FB00 -> FB03 -> FB02 -> FB01 once all three started.
    common::require_tool("qemu-io");
    for t in ["FB01", "FB02", "FB03"] {
        let m = d.cli_json(&[
            "map", "create", "--source", "FB00", "--target", t, "--type", "nocopy",
        ]);
        let id = m["id"].to_string();
        d.cli_json(&["map", "start", &id]);
        ids.push(id);
        if t == "FB02" {
            // The grain FB01 reads through FB02 for: FB02 holds it alone.
            let out = run(
                "qemu-io",
                &["-f", "raw", "-c", "write -P 0x22 0 64k", &d.uri("FB00")],
            );
            assert_success(&out, "qemu-io write");
        }
    }
    let out = d.cli(&["map", "delete", &ids[1], "--force"]);
    assert_success(&out, "forced delete of the middle map");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "also stopped map {} (FB00 -> FB01), which read through it: FB01 is offline",
            ids[0]
        )),
        "{text}"
    );
    assert!(!text.contains("FB03"), "the newer map is untouched: {text}");
}

/// QA: a volume larger than its filesystem's free space was created
/// silently; the overcommit warning came only at the next boot. The create
/// answers with the warning, and the CLI prints it.
#[test]
fn a_volume_create_that_overcommits_the_filesystem_warns() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = Daemon::boot(tmp.path());
    let out = d.cli(&["volume", "create", "--id", "BIG", "--model", "fb:15T"]);
    assert_success(&out, "create a 15 TiB thin volume");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning") && err.contains("ENOSPC"), "{err}");
    let out = d.cli(&[
        "volume", "create", "--id", "SMALL", "--model", "fb:16M", "--json",
    ]);
    assert_success(&out, "create a small volume");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["warning"].as_str().is_some_and(|w| w.contains("free")),
        "{v}"
    );
    // (That a create which fits has no warning depends on this machine's
    // free space: `overcommit`'s unit test covers it.)
    let out = d.cli(&["volume", "delete", "BIG"]);
    assert_success(&out, "delete it");
}

/// QA: `map stop --force` of a snapshot of a snapshot also stopped an older
/// snapshot of the root (its target sat behind in the same cascade and read
/// through the stopped target, I6) and said nothing of it. The answer now
/// names every map it stopped besides.
#[test]
fn a_forced_stop_names_the_maps_it_stops_besides() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let mut a = common::nbd_client::NbdConn::open(&d.nbd_addr(), "FB00");
    a.write(0, &vec![0x11; 1 << 20]);
    for (src, tgt) in [("FB00", "FB01"), ("FB00", "FB02"), ("FB02", "FB03")] {
        let m = d.cli_json(&[
            "map", "create", "--source", src, "--target", tgt, "--type", "nocopy",
        ]);
        let id = m["id"].to_string();
        assert_success(&d.cli(&["map", "start", &id]), "map start");
    }
    let mut dv = common::nbd_client::NbdConn::open(&d.nbd_addr(), "FB02");
    dv.write(0, &vec![0x22; 1 << 20]);
    let out = d.cli(&["map", "stop", "2", "--force"]);
    assert_success(&out, "forced stop of FB02 -> FB03");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("also stopped map 0 (FB00 -> FB01)"), "{text}");
    let maps = d.cli_json(&["map", "list"]);
    assert_eq!(maps[0]["state"], "stopped", "{maps}");
}

#[test]
fn generated_text_into_a_closed_pipe_ends_quietly_like_sigpipe() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    // QA: `man | head` and `completions bash | head` said "Broken pipe"
    // and exited 1, where every other verb exits 141 quietly.
    for args in [&["man"][..], &["completions", "bash"], &["openapi"]] {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 16];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut first)
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(141), "{args:?}: {out:?}");
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn volumes_the_config_leaves_out_are_kept_and_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        "id = \"SS01\"\n\n[[volumes]]\nid = \"V\"\nmodel = \"fb:16M\"\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let d = Daemon::boot_with(tmp.path(), &["--config", cfg]);
    assert_success(
        &d.cli(&["volume", "create", "--id", "W", "--model", "fb:16M"]),
        "volume create W",
    );
    assert!(d.terminate().success());
    // QA: booting with a config that lacks W kept W without a word, and
    // the data directory's subsystem.toml then dropped it.
    let d = Daemon::boot_with(tmp.path(), &["--config", cfg]);
    let log = d.log_text();
    assert!(
        log.contains("volumes W are in the data directory but not in the config"),
        "{log}"
    );
    let stored = std::fs::read_to_string(tmp.path().join("data/subsystem.toml")).unwrap();
    assert!(stored.contains("\"W\""), "{stored}");
    let list = d.cli_json(&["volume", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}
