//! The control API over HTTPS (`boot --api-tls` with `--tls-cert`/`--tls-key`):
//! the CLI reaches it with the CA given by `--api-ca` or
//! `FIRMWARE_SIM_API_CA`, refuses a certificate it cannot verify, a client in
//! the clear gets no answer (and takes nothing down), NBD stays as `--tls`
//! sets it, and bad flag combinations are usage errors naming the flags.

mod common;

use common::{
    assert_fails_with, assert_success, make_certs, require_tool, run, spanning_session_args,
    Daemon, BIN, SS02,
};

#[test]
fn https_api_serves_the_cli_with_the_ca_and_refuses_everything_else() {
    let tmp = tempfile::tempdir().unwrap();
    make_certs(tmp.path());
    let cert = tmp.path().join("server-cert.pem");
    let key = tmp.path().join("server-key.pem");
    let ca = tmp.path().join("ca/ca-cert.pem");
    let d = Daemon::boot_with(
        tmp.path(),
        &[
            "--api-tls",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        d.api.starts_with("https://127.0.0.1:"),
        "banner names an https API: {}",
        d.banner
    );

    // With the CA: the CLI works, reads and changes state.
    let listed = d.cli_json(&["volume", "list", "--api-ca", ca.to_str().unwrap()]);
    let ids: Vec<&str> = listed
        .as_array()
        .expect("volume list is an array")
        .iter()
        .filter_map(|v| v["id"].as_str())
        .collect();
    assert!(ids.contains(&"FB00"), "volumes over https: {ids:?}");
    let out = run_with_ca_env(
        &ca,
        &[
            "map", "create", "--source", "FB00", "--target", "FB01", "--type", "nocopy", "--api",
            &d.api,
        ],
    );
    assert_success(&out, "map create over https with FIRMWARE_SIM_API_CA");

    // QA: idle sockets that never start a handshake, more than the daemon
    // runs at once, locked every client out. The oldest idle ones give way.
    let addr = d.api.trim_start_matches("https://").to_string();
    let idle: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    let again = d.cli_json(&["volume", "list", "--api-ca", ca.to_str().unwrap()]);
    assert!(again.as_array().is_some_and(|a| !a.is_empty()), "{again}");
    drop(idle);

    // Without it: the certificate cannot be verified, and the CLI says so.
    let out = d.cli(&["volume", "list"]);
    assert_fails_with(&out, 1, "certificate", "https API without --api-ca");

    // A CA file that holds no certificate is a usage error naming the file.
    let out = d.cli(&["volume", "list", "--api-ca", key.to_str().unwrap()]);
    assert_fails_with(&out, 2, "server-key.pem", "--api-ca naming a key file");

    // In the clear: no answer, and the daemon goes on serving.
    let plain = d.api.replacen("https://", "http://", 1);
    let out = run(BIN, &["volume", "list", "--api", &plain]);
    assert!(
        !out.status.success(),
        "plain HTTP to the https API must fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // ... saying what to give instead (QA: "invalid HTTP version" alone).
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("https://HOST:PORT"), "{err}");
    let again = d.cli_json(&["map", "list", "--api-ca", ca.to_str().unwrap()]);
    assert_eq!(again.as_array().map(Vec::len), Some(1), "{again}");

    // A page served by this API (the status page) sends its https origin,
    // which is the API's own; the same origin over http is a foreign one.
    require_tool("curl");
    let status = |origin: &str| {
        let out = run(
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                ca.to_str().unwrap(),
                "-H",
                &format!("Origin: {origin}"),
                &format!("{}/volumes", d.api),
            ],
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(status(&d.api), "200", "own https origin");
    assert_eq!(status(&plain), "403", "the http origin is not this API's");

    // NBD is not under TLS here (--tls off): a clear client reads.
    require_tool("nbdinfo");
    let out = run("nbdinfo", &["--size", &d.uri("FB00")]);
    assert_success(&out, "nbdinfo in the clear");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1073741824");
}

fn run_with_ca_env(ca: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .env("FIRMWARE_SIM_API_CA", ca)
        .output()
        .expect("run firmware-sim")
}

#[test]
fn api_tls_flags_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let d = d.to_str().unwrap();
    let out = run(BIN, &["boot", "--data-dir", d, "--api-tls"]);
    assert_fails_with(&out, 2, "--tls-cert", "--api-tls without a certificate");
    make_certs(tmp.path());
    let cert = tmp.path().join("server-cert.pem");
    let key = tmp.path().join("server-key.pem");
    let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let out = run(
        BIN,
        &[
            "boot",
            "--data-dir",
            d,
            "--api-tls",
            "--no-api",
            "--tls-cert",
            c,
            "--tls-key",
            k,
        ],
    );
    assert!(!out.status.success(), "--api-tls with --no-api must fail");
    let out = run(BIN, &["boot", "--data-dir", d, "--api-tls", "--tls-psk", c]);
    assert!(
        !out.status.success(),
        "--api-tls with only a PSK file must fail"
    );
}

/// A session across daemons whose peer serves its API over HTTPS: the
/// daemon reaches it with `--peer ID=https://HOST:PORT --peer-ca FILE`, and
/// without the CA the session is refused with the reason.
#[test]
fn a_session_spans_a_peer_served_over_https() {
    let t1 = tempfile::tempdir().unwrap();
    make_certs(t1.path());
    let cert = t1.path().join("server-cert.pem");
    let key = t1.path().join("server-key.pem");
    let ca = t1.path().join("ca/ca-cert.pem");
    let ss01 = Daemon::boot_with(
        t1.path(),
        &[
            "--api-tls",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let start = |ss02: &Daemon, id: &str| ss02.cli(&spanning_session_args(id));
    let peer = format!("SS01={}", ss01.api);

    // Without the CA: the peer's certificate is not trusted, and the
    // session start says why.
    let t3 = tempfile::tempdir().unwrap();
    let cfg3 = t3.path().join("ss02.toml");
    std::fs::write(&cfg3, SS02).unwrap();
    let untrusting = Daemon::boot_with(
        t3.path(),
        &["--config", cfg3.to_str().unwrap(), "--peer", &peer],
    );
    let out = start(&untrusting, "Y");
    assert!(
        !out.status.success(),
        "a session over an untrusted peer must fail"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("certificate"),
        "names the certificate: {text}"
    );
    drop(untrusting);

    // With it: the session spans both subsystems.
    let t2 = tempfile::tempdir().unwrap();
    let cfg = t2.path().join("ss02.toml");
    std::fs::write(&cfg, SS02).unwrap();
    let ss02 = Daemon::boot_with(
        t2.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--peer",
            &peer,
            "--peer-ca",
            ca.to_str().unwrap(),
        ],
    );
    let out = start(&ss02, "X");
    assert_success(&out, "session start across an https peer");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["state"], "active", "{s}");
    let on1 = ss01.cli_json(&["session", "list", "--api-ca", ca.to_str().unwrap()]);
    let x = on1
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "X")
        .unwrap_or_else(|| panic!("SS01 records X: {on1}"));
    assert_eq!(x["state"], "active", "{on1}");
}
