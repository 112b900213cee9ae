//! fio's nbd engine at queue depth 16 with crc32c verification: load,
//! pipelining and out-of-order completion with real data checks.

mod common;

use std::process::Command;

use common::{require_tool, run_ok, TestServer};

#[test]
fn fio_randrw_qd16_verifies() {
    let fio = require_tool("fio", "fio");
    let (srv, _e) = TestServer::mem(64 << 20);
    let out = run_ok(
        Command::new(&fio)
            .current_dir(srv.dir.path())
            .args([
                "--name=verify",
                "--ioengine=nbd",
                "--rw=randrw",
                "--bs=4k",
                "--iodepth=16",
            ])
            .args([
                "--size=16m",
                "--verify=crc32c",
                "--do_verify=1",
                "--verify_fatal=1",
            ])
            .args(["--verify_state_save=0", "--output-format=json"])
            .arg(format!("--uri={}", srv.uri("disk"))),
    );
    let start = out.find('{').expect("fio json");
    let v: serde_json::Value = serde_json::from_str(&out[start..]).expect("fio json");
    let job = &v["jobs"][0];
    assert_eq!(job["error"], 0, "{out}");
    assert!(
        job["write"]["io_bytes"].as_u64().unwrap_or(0) > 0,
        "fio wrote nothing"
    );
    assert!(
        job["read"]["io_bytes"].as_u64().unwrap_or(0) > 0,
        "fio read nothing"
    );
}
