//! NBD over TLS with real clients: `boot --tls require` with an X.509
//! certificate signed by a test CA. nbdinfo (libnbd, gnutls) and qemu-io
//! (qemu's tls-creds-x509) read and write over TLS; a client in the clear is
//! refused and sees no export list; bad TLS flags are usage errors.

mod common;

use std::path::Path;

use common::{assert_fails_with, assert_success, make_certs, require_tool, run, Daemon, BIN};

fn qemu_tls(ca: &Path, d: &Daemon, volume: &str, cmds: &[&str]) -> std::process::Output {
    let port = d
        .uri("")
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let obj = format!(
        "tls-creds-x509,id=tls0,endpoint=client,dir={}",
        ca.display()
    );
    let img = format!(
        "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={port},export={volume},tls-creds=tls0"
    );
    let mut args = vec!["--object", &obj, "--image-opts", &img];
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    run("qemu-io", &args)
}

#[test]
fn tls_required_serves_tls_clients_and_refuses_clear_ones() {
    require_tool("nbdinfo");
    require_tool("qemu-io");
    let tmp = tempfile::tempdir().unwrap();
    make_certs(tmp.path());
    let cert = tmp.path().join("server-cert.pem");
    let key = tmp.path().join("server-key.pem");
    let ca = tmp.path().join("ca");
    let d = Daemon::boot_with(
        tmp.path(),
        &[
            "--tls",
            "require",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    // Under --tls require the URIs printed are the TLS ones.
    assert!(d.uri("FB00").starts_with("nbds://"), "{}", d.banner);
    let tls_uri = format!("{}?tls-certificates={}", d.uri("FB00"), ca.display());
    let out = run("nbdinfo", &["--json", &tls_uri]);
    assert_success(&out, "nbdinfo over TLS");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["TLS"], true, "{info}");
    assert_eq!(info["exports"][0]["export-size"], 1u64 << 30, "{info}");

    // In the clear: no export served, none listed (TCP and unix socket).
    let clear = |export: &str| format!("nbd://{}/{export}", d.nbd_addr());
    let out = run("nbdinfo", &[&clear("FB00")]);
    assert!(
        !out.status.success(),
        "a clear client was served under --tls require"
    );
    let out = run("nbdinfo", &["--list", &clear("")]);
    assert!(
        !out.status.success(),
        "exports listed in the clear under --tls require"
    );
    let out = run("nbdinfo", &[&d.unix_uri("FB00")]);
    assert!(
        !out.status.success(),
        "a clear unix-socket client was served"
    );

    // qemu writes and reads back over TLS.
    let out = qemu_tls(&ca, &d, "FB01", &["write -P 0x5c 65536 65536", "flush"]);
    assert_success(&out, "qemu-io write over TLS");
    let out = qemu_tls(&ca, &d, "FB01", &["read -P 0x5c 65536 65536"]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !text.contains("verification failed"),
        "qemu-io read over TLS:\n{text}"
    );
}

#[test]
fn bad_tls_flags_are_usage_errors_naming_the_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let d = dir.to_str().unwrap();
    let out = run(BIN, &["boot", "--data-dir", d, "--tls", "require"]);
    assert_fails_with(&out, 2, "--tls-cert", "--tls require without a certificate");
    let out = run(
        BIN,
        &[
            "boot",
            "--data-dir",
            d,
            "--tls-cert",
            "x.pem",
            "--tls-key",
            "y.pem",
        ],
    );
    assert_fails_with(&out, 2, "--tls on", "certificate flags with --tls off");
    let missing = tmp.path().join("missing.pem");
    let m = missing.to_str().unwrap();
    let out = run(
        BIN,
        &[
            "boot",
            "--data-dir",
            d,
            "--tls",
            "on",
            "--tls-cert",
            m,
            "--tls-key",
            m,
        ],
    );
    assert_fails_with(
        &out,
        1,
        "missing.pem",
        "a certificate file that does not exist",
    );
}

/// Writes a PSK file for alice (the same key qemu reads as DIR/keys.psk).
fn write_psk(dir: &Path, user: &str, key_hex: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("keys.psk");
    std::fs::write(&p, format!("{user}:{key_hex}\n")).unwrap();
    p
}

#[test]
fn tls_psk_serves_clients_holding_the_key_and_refuses_others() {
    require_tool("nbdinfo");
    require_tool("qemu-img");
    require_tool("qemu-io");
    let tmp = tempfile::tempdir().unwrap();
    let key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let server_keys = write_psk(&tmp.path().join("server"), "alice", key);
    let d = Daemon::boot_with(
        tmp.path(),
        &[
            "--tls",
            "require",
            "--tls-psk",
            server_keys.to_str().unwrap(),
        ],
    );
    let port = d.nbd_addr().rsplit(':').next().unwrap().to_string();
    let psk_uri = |user: &str, file: &Path| {
        format!(
            "nbds://{user}@127.0.0.1:{port}/FB00?tls-psk-file={}",
            file.display()
        )
    };

    // nbdinfo (libnbd, gnutls) with alice's key reads the export.
    let alice = write_psk(&tmp.path().join("alice"), "alice", key);
    let out = run("nbdinfo", &["--json", &psk_uri("alice", &alice)]);
    assert_success(&out, "nbdinfo with alice's PSK");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["TLS"], true, "{info}");
    assert_eq!(info["exports"][0]["export-size"], 1u64 << 30, "{info}");

    // qemu (tls-creds-psk, keys.psk in a directory) writes and reads back.
    let obj = format!(
        "tls-creds-psk,id=tls0,endpoint=client,dir={},username=alice",
        alice.parent().unwrap().display()
    );
    let img = format!("driver=nbd,host=127.0.0.1,port={port},export=FB01,tls-creds=tls0");
    let out = run(
        "qemu-img",
        &["info", "--object", &obj, "--image-opts", &img],
    );
    assert_success(&out, "qemu-img info with a PSK");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 GiB"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let io = |cmd: &str| {
        run(
            "qemu-io",
            &["--object", &obj, "--image-opts", &img, "-c", cmd],
        )
    };
    assert_success(&io("write -P 0x3c 4096 4096"), "qemu-io write with a PSK");
    let out = io("read -P 0x3c 4096 4096");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !text.contains("verification failed"),
        "qemu-io read back with a PSK:\n{text}"
    );

    // A wrong key, an unknown username, and no TLS at all: refused.
    let wrong = write_psk(
        &tmp.path().join("wrong"),
        "alice",
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    );
    let out = run("nbdinfo", &[&psk_uri("alice", &wrong)]);
    assert!(!out.status.success(), "a wrong key was accepted");
    let mallory = write_psk(&tmp.path().join("mallory"), "mallory", key);
    let out = run("nbdinfo", &[&psk_uri("mallory", &mallory)]);
    assert!(!out.status.success(), "an unknown username was accepted");
    let out = run("nbdinfo", &[&format!("nbd://{}/FB00", d.nbd_addr())]);
    assert!(!out.status.success(), "a clear client was served");
    let status = d.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn bad_psk_flags_and_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let d = dir.to_str().unwrap();
    let keys = write_psk(tmp.path(), "alice", "00112233445566778899aabbccddeeff");
    let k = keys.to_str().unwrap();
    let out = run(BIN, &["boot", "--data-dir", d, "--tls-psk", k]);
    assert_fails_with(&out, 2, "--tls on", "--tls-psk with --tls off");
    let bad = tmp.path().join("bad.psk");
    std::fs::write(&bad, "alice:xyz\n").unwrap();
    let out = run(
        BIN,
        &[
            "boot",
            "--data-dir",
            d,
            "--tls",
            "require",
            "--tls-psk",
            bad.to_str().unwrap(),
        ],
    );
    assert_fails_with(&out, 1, "line 1", "a PSK file with a bad key");
}
