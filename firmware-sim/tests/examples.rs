//! The files in examples/ that users copy work as written: each config
//! boots (ports overridden to free ones), the two-daemon pair starts a
//! session spanning both, and the systemd service's ExecStart line serves
//! NBD under socket activation, the way systemd would start it.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_success, require_tool, run, Daemon, BIN};

fn example(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(rel)
}

fn config_arg(rel: &str) -> String {
    example(rel).to_str().unwrap().to_string()
}

#[test]
fn the_example_configs_boot_and_the_pair_spans_a_session() {
    let tmp = tempfile::tempdir().unwrap();
    let one = Daemon::boot_with(
        tmp.path(),
        &["--config", &config_arg("configs/one-subsystem.toml")],
    );
    let vols: Vec<String> = one
        .cli_json(&["volume", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        vols,
        ["BKUP01", "BKUP02", "LNX0", "LNX0SNAP", "PROD01", "PROD02"]
    );
    let s = one.cli_json(&[
        "session",
        "start",
        "--id",
        "K1",
        "--extent",
        "LNX0:0-15",
        "--target",
        "LNX0SNAP",
    ]);
    assert_eq!(s["host"], "SYSA", "the config's host id owns sessions: {s}");
    drop(one);

    let t1 = tempfile::tempdir().unwrap();
    let t2 = tempfile::tempdir().unwrap();
    let ss01 = Daemon::boot_with(t1.path(), &["--config", &config_arg("configs/ss01.toml")]);
    let peer = format!("SS01={}", ss01.api);
    let ss02 = Daemon::boot_with(
        t2.path(),
        &[
            "--config",
            &config_arg("configs/ss02.toml"),
            "--peer",
            &peer,
        ],
    );
    let s = ss02.cli_json(&[
        "session",
        "start",
        "--id",
        "X",
        "--extent",
        "SS01/V0:0-15",
        "--extent",
        "SS02/V0:0-15",
        "--target",
        "SS01/V1",
        "--target",
        "SS02/V1",
        "--program",
        "NIGHTLY",
    ]);
    let subs: Vec<&str> = s["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["subsystem"].as_str().unwrap())
        .collect();
    assert_eq!(subs, ["SS01", "SS02"], "{s}");
}

#[test]
fn the_systemd_service_line_serves_nbd_under_socket_activation() {
    require_tool("nbdinfo");
    let unit = std::fs::read_to_string(example("systemd/firmware-sim.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart in the service unit");
    let socket = std::fs::read_to_string(example("systemd/firmware-sim.socket")).unwrap();
    assert!(socket.contains("ListenStream=127.0.0.1:10809"), "{socket}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    // The unit's own line; only the paths and the API port (any free one
    // here, not 10810) differ.
    let line = exec
        .replace("/usr/local/bin/firmware-sim", BIN)
        .replace("/var/lib/firmware-sim", dir.to_str().unwrap())
        .replace("--api 127.0.0.1:10810", "--api 127.0.0.1:0");
    let mut args = vec!["--size", "--", "["];
    args.extend(line.split_whitespace());
    args.push("]");
    let out = run("nbdinfo", &args);
    assert_success(&out, "nbdinfo -- [ the service's ExecStart ]");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        (1u64 << 30).to_string()
    );
}
