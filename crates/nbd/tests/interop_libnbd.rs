//! Interop with libnbd's tools: nbdinfo, nbdcopy, nbdsh (negative tests
//! with strict mode off), socket activation and stdin/stdout mode.
//! A missing tool fails the test with the package to install.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::{mem_server_bin, pattern, require_tool, run_ok, TestServer};
use nbd::testing::MemExport;
use nbd::Export;

const MIB: u64 = 1 << 20;

fn server() -> (TestServer, Arc<MemExport>) {
    let e = Arc::new(MemExport::new(64 * MIB).description("test disk"));
    let small: Arc<dyn Export> = Arc::new(MemExport::new(MIB));
    let d: Arc<dyn Export> = e.clone();
    (TestServer::start(vec![("disk", d), ("small", small)]), e)
}

#[test]
fn nbdinfo_json_reports_size_flags_and_block_sizes() {
    let nbdinfo = require_tool("nbdinfo", "libnbd-bin");
    let (srv, _e) = server();
    let out = run_ok(Command::new(&nbdinfo).arg("--json").arg(srv.uri("disk")));
    let v: serde_json::Value = serde_json::from_str(&out).expect("nbdinfo --json output");
    assert_eq!(v["protocol"], "newstyle-fixed");
    assert_eq!(v["structured"], true);
    let e = &v["exports"][0];
    assert_eq!(e["export-name"], "disk");
    assert_eq!(e["export-size"], 64 * MIB);
    assert_eq!(e["description"], "test disk");
    assert_eq!(e["block_size_minimum"], 512);
    assert_eq!(e["block_size_preferred"], 4096);
    assert_eq!(e["block_size_maximum"], 32 * MIB);
    for cap in [
        "can_flush",
        "can_fua",
        "can_trim",
        "can_zero",
        "can_fast_zero",
        "can_df",
        "can_cache",
        "can_multi_conn",
    ] {
        assert_eq!(e[cap], true, "{cap}");
    }
    assert_eq!(e["is_read_only"], false);
    assert_eq!(e["contexts"][0], "base:allocation");
}

#[test]
fn nbdinfo_list_shows_all_exports() {
    let nbdinfo = require_tool("nbdinfo", "libnbd-bin");
    let (srv, _e) = server();
    let out = run_ok(
        Command::new(&nbdinfo)
            .arg("--list")
            .arg("--json")
            .arg(srv.uri("")),
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let names: Vec<&str> = v["exports"]
        .as_array()
        .expect("exports")
        .iter()
        .map(|e| e["export-name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, vec!["disk", "small"]);
    assert_eq!(v["exports"][1]["export-size"], MIB);
}

#[test]
fn nbdinfo_map_shows_allocation() {
    let nbdinfo = require_tool("nbdinfo", "libnbd-bin");
    let (srv, e) = server();
    e.write(MIB, &pattern(MIB as usize, 1), false).unwrap();
    let out = run_ok(Command::new(&nbdinfo).arg("--map").arg(srv.uri("disk")));
    let rows: Vec<Vec<String>> = out
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    let expect = [
        ("0", "1048576", "3"),
        ("1048576", "1048576", "0"),
        ("2097152", "65011712", "3"),
    ];
    assert_eq!(rows.len(), 3, "{out}");
    for (row, (off, len, ty)) in rows.iter().zip(expect) {
        assert_eq!(
            (row[0].as_str(), row[1].as_str(), row[2].as_str()),
            (off, len, ty),
            "{out}"
        );
    }
}

#[test]
fn nbdcopy_to_and_from_a_file() {
    let nbdcopy = require_tool("nbdcopy", "libnbd-bin");
    let (srv, e) = server();
    let src = srv.dir.path().join("src.img");
    let mut data = pattern(16 * MIB as usize, 2);
    data[4 * MIB as usize..8 * MIB as usize].fill(0);
    data.resize(64 * MIB as usize, 0);
    std::fs::write(&src, &data).unwrap();
    run_ok(
        Command::new(&nbdcopy)
            .arg("--flush")
            .arg(&src)
            .arg(srv.uri("disk")),
    );
    assert!(
        e.snapshot(0, data.len()) == data,
        "export differs from the source file"
    );
    let out = srv.dir.path().join("out.img");
    run_ok(Command::new(&nbdcopy).arg(srv.uri("disk")).arg(&out));
    let back = std::fs::read(&out).unwrap();
    assert!(back == data, "copied file differs");
    assert!(
        e.counts.flushes.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "--flush reached the export"
    );
}

#[test]
fn nbdsh_negative_requests_get_errnos_and_connection_stays_usable() {
    require_tool("nbdsh", "libnbd-bin");
    let py = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import nbd"])
        .status();
    assert!(
        matches!(py, Ok(s) if s.success()),
        "python3-libnbd is not installed: run `apt-get install -y python3-libnbd`"
    );
    let (srv, _e) = server();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nbdsh/negative.py");
    let out = run_ok(
        Command::new("/usr/bin/nbdsh")
            .env("NBD_URI", srv.uri("disk"))
            .arg("-c")
            .arg(format!("exec(open({script:?}).read())")),
    );
    assert!(out.contains("ALL OK"), "{out}");
}

#[test]
fn socket_activation_serves_nbdinfo() {
    let nbdinfo = require_tool("nbdinfo", "libnbd-bin");
    let bin = mem_server_bin();
    let out = run_ok(
        Command::new(&nbdinfo)
            .args(["--size", "--", "["])
            .arg(&bin)
            .args(["systemd", "8", "]"]),
    );
    assert_eq!(out.trim(), (8 * MIB).to_string());
}

#[test]
fn stdio_mode_serves_connect_command() {
    require_tool("nbdsh", "libnbd-bin");
    let bin = mem_server_bin();
    let code = format!(
        "h.connect_command([{:?}, 'stdio', '2'])\n\
         assert h.get_size() == 2 * 1024 * 1024\n\
         h.pwrite(b'q' * 4096, 4096)\n\
         assert h.pread(4096, 4096) == b'q' * 4096\n\
         print('STDIO OK')",
        bin.display().to_string()
    );
    let out = run_ok(Command::new("/usr/bin/nbdsh").arg("-c").arg(code));
    assert!(out.contains("STDIO OK"), "{out}");
}
