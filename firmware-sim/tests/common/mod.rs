//! Test harness: boots the real `firmware-sim` binary on free ports and a unix
//! socket inside a temporary directory, runs CLI verbs and real NBD clients
//! against it, and shuts it down with SIGTERM.
//!
//! A missing client tool fails the test with a message saying which package
//! to install (scripts/test installs them for CI).

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod nbd_client;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_firmware-sim");

/// How long a boot may take before the test fails.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    /// The data directory (inside `tmp`).
    pub data_dir: PathBuf,
    /// Control API address, `127.0.0.1:PORT` (`https://127.0.0.1:PORT` under `--api-tls`).
    pub api: String,
    /// NBD TCP base URI, `nbd://127.0.0.1:PORT/`.
    pub nbd_base: String,
    /// Unix socket the daemon also serves NBD on.
    pub socket: PathBuf,
    /// What the daemon printed on stdout at boot.
    pub banner: String,
    log: PathBuf,
}

/// Fails the test unless `tool` is on PATH, naming the package that has it.
pub fn require_tool(tool: &str) {
    let package = match tool {
        "qemu-img" | "qemu-io" => "qemu-utils",
        "nbdinfo" | "nbdcopy" | "nbdsh" => "libnbd-bin (nbdsh also python3-libnbd)",
        "fio" => "fio",
        "nbdkit" => "nbdkit",
        "curl" => "curl",
        _ => tool,
    };
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "interop test needs `{tool}` on PATH: install the `{package}` package \
         (./scripts/test installs every client the tests use)"
    );
}

impl Daemon {
    /// Boots a fresh subsystem (embedded default config) in a new directory under `tmp`.
    pub fn boot(tmp: &Path) -> Daemon {
        Self::boot_with(tmp, &[])
    }

    /// Boots with extra `boot` arguments (e.g. `--config FILE`).
    pub fn boot_with(tmp: &Path, extra: &[&str]) -> Daemon {
        let data_dir = tmp.join("data");
        let socket = tmp.join("nbd.sock");
        let log = tmp.join(format!("daemon-{}.log", std::process::id()));
        Self::start(data_dir, socket, log, extra)
    }

    fn start(data_dir: PathBuf, socket: PathBuf, log: PathBuf, extra: &[&str]) -> Daemon {
        let _ = std::fs::remove_file(&socket);
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("create daemon log file");
        let mut cmd = Command::new(BIN);
        cmd.arg("boot")
            .arg("--data-dir")
            .arg(&data_dir)
            // `extra` may choose the API address (peers that name each other).
            .args(if extra.contains(&"--api") {
                &[][..]
            } else {
                &["--api", "127.0.0.1:0"][..]
            })
            .args(["--nbd", "127.0.0.1:0", "--nbd-unix"])
            .arg(&socket)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        let mut child = cmd.spawn().expect("spawn firmware-sim boot");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut banner = String::new();
        let mut api = None;
        let mut nbd_base = None;
        let mut ready = false;
        while !ready {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    banner.push_str(&line);
                    banner.push('\n');
                    ready = line.starts_with("ready:");
                    if let Some(a) = line.strip_prefix("control API: http://") {
                        api = Some(a.trim().to_string());
                    }
                    if let Some(a) = line.strip_prefix("control API: ") {
                        if a.starts_with("https://") {
                            api = Some(a.trim().to_string());
                        }
                    }
                    // `nbds://` under `--tls require`.
                    for scheme in ["nbd://", "nbds://"] {
                        if let Some(i) = line.find(scheme) {
                            let uri = line[i..].split_whitespace().next().unwrap_or("");
                            if let Some(slash) = uri[scheme.len()..].find('/') {
                                nbd_base = Some(uri[..=scheme.len() + slash].to_string());
                            }
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    panic!(
                        "firmware-sim boot exited early ({status:?}); stdout:\n{banner}\nlog:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!(
                    "firmware-sim boot not ready after {BOOT_TIMEOUT:?}; stdout:\n{banner}\nlog:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
        // Keep draining stdout so the daemon never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Daemon {
            child: Some(child),
            data_dir,
            api: api.unwrap_or_else(|| panic!("no `control API:` line in:\n{banner}")),
            nbd_base: nbd_base.unwrap_or_else(|| panic!("no NBD URI in:\n{banner}")),
            socket,
            banner,
            log,
        }
    }

    /// TCP URI of an export.
    pub fn uri(&self, volume: &str) -> String {
        format!("{}{volume}", self.nbd_base)
    }

    /// The NBD TCP address, `HOST:PORT`.
    pub fn nbd_addr(&self) -> String {
        self.nbd_base
            .trim_start_matches("nbds://")
            .trim_start_matches("nbd://")
            .trim_end_matches('/')
            .to_string()
    }

    /// Unix-socket URI of an export.
    pub fn unix_uri(&self, volume: &str) -> String {
        format!("nbd+unix:///{volume}?socket={}", self.socket.display())
    }

    /// Runs a CLI verb against this daemon's API (with `--api`).
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--api", &self.api]);
        run(BIN, &all)
    }

    /// Runs a CLI verb with `--json`, asserts success and parses stdout.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let out = self.cli(&all);
        assert_success(&out, &format!("firmware-sim {}", args.join(" ")));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "firmware-sim {} --json printed invalid JSON ({e}):\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        signal(&child, "TERM");
        wait_timeout(&mut child, Duration::from_secs(60)).unwrap_or_else(|| {
            panic!(
                "daemon did not exit within 60 s of SIGTERM; log:\n{}",
                self.log_text()
            )
        })
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Bytes the daemon has logged so far.
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// The daemon's stderr log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the daemon with SIGKILL (no shutdown at all, like a power loss of
    /// the host process) and boots again on the same data directory.
    pub fn crash_and_reboot(mut self) -> Daemon {
        let mut child = self.child.take().expect("daemon running");
        signal(&child, "KILL");
        wait_timeout(&mut child, Duration::from_secs(20)).expect("killed daemon exits");
        Self::start(
            self.data_dir.clone(),
            self.socket.clone(),
            self.log.clone(),
            &[],
        )
    }

    /// Boots again on the same data directory (an IPL).
    pub fn reboot(self) -> Daemon {
        let data_dir = self.data_dir.clone();
        let socket = self.socket.clone();
        let log = self.log.clone();
        let status = self.terminate();
        assert!(status.success(), "clean shutdown expected, got {status}");
        Self::start(data_dir, socket, log, &[])
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            if wait_timeout(&mut child, Duration::from_secs(20)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            if std::thread::panicking() {
                eprintln!("--- daemon log ---\n{}", self.log_text());
            }
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status();
}

fn wait_timeout(child: &mut Child, t: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + t;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a program to completion.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs a program with stdin from `input`.
pub fn run_with_stdin(program: &str, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Asserts that a command succeeded, showing its output otherwise.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts a failure with exit code `code` and a one-line stderr containing `needle`.
pub fn assert_fails_with(out: &Output, code: i32, needle: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}, got {}; stderr:\n{stderr}",
        out.status
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected one error line, got:\n{stderr}"
    );
    assert!(
        lines[0].contains(needle),
        "{what}: error line should mention `{needle}`: {}",
        lines[0]
    );
}

/// Reads a whole file.
pub fn read_file(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    std::fs::File::open(p)
        .and_then(|mut f| f.read_to_end(&mut v))
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    v
}

/// The config of a second subsystem, SS02 (volumes V0 and V1), for
/// sessions across daemons.
pub const SS02: &str = r#"
id = "SS02"
durability = "strict"

[[volumes]]
id = "V0"
model = "fb:64M"

[[volumes]]
id = "V1"
model = "fb:64M"
"#;

/// `session start` of session `id` over SS01/FB00 and SS02/V0 (tracks
/// 0-15) to SS01/FB01 and SS02/V1, program SPAN: a session across daemons.
pub fn spanning_session_args(id: &str) -> [&str; 15] {
    [
        "session",
        "start",
        "--id",
        id,
        "--extent",
        "SS01/FB00:0-15",
        "--extent",
        "SS02/V0:0-15",
        "--target",
        "SS01/FB01",
        "--target",
        "SS02/V1",
        "--program",
        "SPAN",
        "--json",
    ]
}

/// Writes `ca/ca-cert.pem` (what clients trust), `server-cert.pem` and
/// `server-key.pem` (for 127.0.0.1 and localhost) under `dir`.
pub fn make_certs(dir: &Path) {
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

/// A raw HTTP request to the control API: (status, body). For tests of the
/// protocol itself (status codes, malformed bodies, headers such as Origin);
/// everything else goes through the typed client, firmware-sim-client.
pub fn http(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    http_with(method, url, body, &[])
}

/// [`http`] with extra request headers.
pub fn http_with(
    method: &str,
    url: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let with = |mut r: ureq::RequestBuilder<ureq::typestate::WithBody>| {
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r
    };
    let res = match (method, body) {
        ("GET", _) => {
            let mut r = agent.get(url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.call()
        }
        ("POST", Some(b)) => {
            with(agent.post(url).header("content-type", "application/json")).send(b)
        }
        ("POST", None) => with(agent.post(url)).send_empty(),
        ("DELETE", b) => with(
            agent
                .delete(url)
                .header("content-type", "application/json")
                .force_send_body(),
        )
        .send(b.unwrap_or("{}")),
        _ => panic!("unsupported method {method}"),
    };
    let mut resp = res.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, text)
}
