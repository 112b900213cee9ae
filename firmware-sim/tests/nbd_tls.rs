//! NBD over TLS with real clients: `boot --tls require` with an X.509
//! certificate signed by a test CA. nbdinfo (libnbd, gnutls) and qemu-io
//! (qemu's tls-creds-x509) read and write over TLS; a client in the clear is
//! refused and sees no export list; bad TLS flags are usage errors.

mod common;

use std::path::Path;

use common::{assert_fails_with, assert_success, require_tool, run, Daemon, BIN};

/// Writes `ca/ca-cert.pem` (what clients trust), `server-cert.pem` and
/// `server-key.pem` (for 127.0.0.1 and localhost) under `dir`.
fn make_certs(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "firmware-sim test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = p.signed_by(&key, &issuer).unwrap();
    std::fs::create_dir_all(dir.join("ca")).unwrap();
    std::fs::write(dir.join("ca/ca-cert.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server-cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server-key.pem"), key.serialize_pem()).unwrap();
}

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
    let tls_uri = format!(
        "{}?tls-certificates={}",
        d.uri("FB00").replacen("nbd://", "nbds://", 1),
        ca.display()
    );
    let out = run("nbdinfo", &["--json", &tls_uri]);
    assert_success(&out, "nbdinfo over TLS");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["TLS"], true, "{info}");
    assert_eq!(info["exports"][0]["export-size"], 1u64 << 30, "{info}");

    // In the clear: no export served, none listed (TCP and unix socket).
    let out = run("nbdinfo", &[&d.uri("FB00")]);
    assert!(
        !out.status.success(),
        "a clear client was served under --tls require"
    );
    let out = run("nbdinfo", &["--list", &d.uri("")]);
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
