//! Golden outputs of the common verbs (issue 15): what an operator reads
//! after booting the default subsystem, taking a snapshot, a clone, a group
//! and a backup session. The snapshots live in tests/snapshots/; a wording
//! change shows up as a diff to review (`cargo insta review`, or
//! `INSTA_UPDATE=always cargo test -p firmware-sim --test cli_golden` and
//! read `git diff`). Ports, paths, times and versions are redacted.

mod common;

use common::{assert_success, Daemon};

fn text(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    assert_success(&out, &format!("firmware-sim {}", args.join(" ")));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failure(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    format!(
        "exit {}\nstdout: {}stderr: {}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

macro_rules! golden {
    ($name:expr, $value:expr) => {
        insta::with_settings!({
            filters => vec![
                (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
                (r"/tmp/[^\s]+", "[PATH]"),
                (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?", "[TIME]"),
                (r"\d+(\.\d+)? ?(ms|us|µs|s) ago", "[AGE]"),
            ],
            snapshot_path => "snapshots",
            prepend_module_to_snapshot => false,
        }, {
            insta::assert_snapshot!($name, $value);
        });
    };
}

#[test]
fn common_verbs_read_as_before() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    golden!("volume_list", text(&d, &["volume", "list"]));
    let snap = text(
        &d,
        &[
            "map", "create", "--source", "FB00", "--target", "FB01", "--type", "nocopy", "--name",
            "nightly",
        ],
    );
    golden!("map_create_nocopy", snap);
    golden!("map_start", text(&d, &["map", "start", "nightly"]));
    golden!(
        "map_create_full",
        text(
            &d,
            &[
                "map",
                "create",
                "--source",
                "FB00",
                "--target",
                "FB02",
                "--type",
                "full",
                "--copy-rate",
                "0",
            ],
        )
    );
    golden!("map_start_full", text(&d, &["map", "start", "1"]));
    golden!("map_list", text(&d, &["map", "list"]));
    golden!("map_show", text(&d, &["map", "show", "nightly"]));
    golden!("cascade_list", text(&d, &["cascade", "list"]));
    text(
        &d,
        &[
            "map",
            "create",
            "--source",
            "FB01",
            "--target",
            "FB03",
            "--type",
            "nocopy",
            "--name",
            "weekly-snap",
        ],
    );
    golden!(
        "group_create",
        text(
            &d,
            &[
                "group",
                "create",
                "--name",
                "weekly",
                "--maps",
                "weekly-snap"
            ]
        )
    );
    golden!("group_list", text(&d, &["group", "list"]));
    golden!(
        "session_start",
        text(
            &d,
            &[
                "session",
                "start",
                "--id",
                "BK1",
                "--extent",
                "CKD00:00000000-0000000E",
                "--target",
                "CKD01",
                "--program",
                "BACKUP",
                "--copy-rate",
                "0",
            ],
        )
    );
    golden!("session_list", text(&d, &["session", "list"]));
    golden!("map_show_unknown", failure(&d, &["map", "show", "99"]));
    golden!("map_start_session_map", failure(&d, &["map", "start", "3"]));
    golden!(
        "session_complete_unfinished",
        failure(&d, &["session", "complete", "BK1"])
    );
    d.terminate();
}
