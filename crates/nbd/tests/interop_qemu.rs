//! Interop with qemu 10's NBD client (qemu-img, qemu-io): it negotiates
//! with EXTENDED_HEADERS first, then structured replies and base:allocation.

mod common;

use std::process::Command;

use common::{pattern, require_tool, run_ok, TestServer};

const MIB: u64 = 1 << 20;

#[test]
fn qemu_img_info_reports_size() {
    let qemu_img = require_tool("qemu-img", "qemu-utils");
    let (srv, _e) = TestServer::mem(64 * MIB);
    let out = run_ok(
        Command::new(&qemu_img)
            .args(["info", "--output=json"])
            .arg(srv.uri("disk")),
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("qemu-img json");
    assert_eq!(v["virtual-size"], 64 * MIB);
}

#[test]
fn qemu_io_pattern_write_read_zero_discard_flush() {
    let qemu_io = require_tool("qemu-io", "qemu-utils");
    let (srv, e) = TestServer::mem(64 * MIB);
    run_ok(
        Command::new(&qemu_io)
            .args(["-f", "raw"])
            .args(["-c", "write -P 0xab 0 64k", "-c", "read -P 0xab 0 64k"])
            .args(["-c", "write -P 0xcd 1M 1M", "-c", "write -z 1536k 256k"])
            .args(["-c", "discard 4M 1M", "-c", "flush"])
            .arg(srv.uri("disk")),
    );
    assert!(e.snapshot(0, 65536).iter().all(|&b| b == 0xab));
    let mid = e.snapshot(MIB, MIB as usize);
    assert!(mid[..512 * 1024].iter().all(|&b| b == 0xcd));
    assert!(mid[512 * 1024..768 * 1024].iter().all(|&b| b == 0));
    assert!(mid[768 * 1024..].iter().all(|&b| b == 0xcd));
    assert!(e.counts.flushes.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    // A pattern mismatch must fail: qemu-io reports it on stdout.
    let out = common::run(
        Command::new(&qemu_io)
            .args(["-f", "raw", "-c", "read -P 0x11 0 4k"])
            .arg(srv.uri("disk")),
        std::time::Duration::from_secs(60),
    );
    assert!(!out.status.success(), "a wrong pattern must fail");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Pattern verification failed"));
}

#[test]
fn qemu_img_convert_to_and_from_export_roundtrips() {
    let qemu_img = require_tool("qemu-img", "qemu-utils");
    let (srv, e) = TestServer::mem(32 * MIB);
    let src = srv.dir.path().join("src.img");
    let mut data = pattern(32 * MIB as usize, 9);
    data[8 * MIB as usize..20 * MIB as usize].fill(0);
    std::fs::write(&src, &data).unwrap();
    run_ok(
        Command::new(&qemu_img)
            .args(["convert", "-n", "-f", "raw", "-O", "raw"])
            .arg(&src)
            .arg(srv.uri("disk")),
    );
    assert!(
        e.snapshot(0, data.len()) == data,
        "export differs after convert"
    );
    let back = srv.dir.path().join("back.img");
    run_ok(
        Command::new(&qemu_img)
            .args(["convert", "-f", "raw", "-O", "raw"])
            .arg(srv.uri("disk"))
            .arg(&back),
    );
    let cmp = Command::new("cmp")
        .arg(&src)
        .arg(&back)
        .status()
        .expect("cmp");
    assert!(cmp.success(), "cmp: images differ");
    let out = run_ok(
        Command::new(&qemu_img)
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(&src)
            .arg(srv.uri("disk")),
    );
    assert!(out.contains("Images are identical"), "{out}");
}
