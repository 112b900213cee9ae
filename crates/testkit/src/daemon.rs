//! [`Subsystem`]: one running daemon for a test, and its [`Builder`].

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::api::{Api, ApiError};

/// How long a boot may take.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a subsystem could not be booted or driven. Its `Debug` is its
/// message (a boot failure holds the daemon's output and log, which an
/// `unwrap()` then prints with their line breaks).
#[derive(thiserror::Error)]
pub enum Error {
    /// No usable `firmware-sim` binary.
    #[error("{0}")]
    Binary(String),
    /// The daemon did not come up; the message holds its output and log.
    #[error("firmware-sim boot failed: {0}")]
    Boot(String),
    /// Local I/O (temporary directory, config file, process).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The control API refused a request.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// `$FIRMWARE_SIM_BIN`, else `firmware-sim` on `PATH`.
pub fn find_binary() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("FIRMWARE_SIM_BIN") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(Error::Binary(format!(
                "FIRMWARE_SIM_BIN={} is not a file",
                p.display()
            )));
        }
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("firmware-sim"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Binary(
                "no firmware-sim binary: set FIRMWARE_SIM_BIN or put it on PATH \
                 (cargo build --release -p firmware-sim builds target/release/firmware-sim)"
                    .into(),
            )
        })
}

/// What to boot: the embedded default subsystem (SS01: CKD00..03 and
/// FB00..03), or one built here.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    id: Option<String>,
    volumes: Vec<(String, String)>,
    args: Vec<String>,
    api_ca: Option<PathBuf>,
}

impl Builder {
    /// The subsystem id (default `SS01`); only with [`Builder::volume`]
    /// (`boot` refuses an id without one).
    pub fn id(mut self, id: &str) -> Builder {
        self.id = Some(id.to_string());
        self
    }

    /// A volume `id` of device model `model` (`fb:64M`, `3390-3`, ...). With
    /// any volume given, the subsystem has exactly these.
    pub fn volume(mut self, id: &str, model: &str) -> Builder {
        self.volumes.push((id.to_string(), model.to_string()));
        self
    }

    /// An extra `boot` argument (e.g. `--peer`, `SS01=127.0.0.1:PORT`).
    pub fn arg(mut self, a: &str) -> Builder {
        self.args.push(a.to_string());
        self
    }

    /// The PEM file (certificate or CA) the kit's client trusts when the
    /// daemon serves its API over HTTPS (with `.arg("--api-tls")` and the
    /// `--tls-cert`/`--tls-key` arguments).
    pub fn api_ca(mut self, ca: &Path) -> Builder {
        self.api_ca = Some(ca.to_path_buf());
        self
    }

    fn config(&self) -> Option<String> {
        if self.volumes.is_empty() {
            return None;
        }
        let mut t = format!(
            "id = \"{}\"\ndurability = \"strict\"\n",
            self.id.as_deref().unwrap_or("SS01")
        );
        for (id, model) in &self.volumes {
            t.push_str(&format!(
                "\n[[volumes]]\nid = \"{id}\"\nmodel = \"{model}\"\n"
            ));
        }
        Some(t)
    }

    /// Boots it.
    pub fn boot(self) -> Result<Subsystem, Error> {
        if self.id.is_some() && self.volumes.is_empty() {
            // The id goes into the config the builder writes, which it
            // writes only for volumes of its own.
            return Err(Error::Boot(
                "Builder::id needs at least one Builder::volume (the embedded default \
                 subsystem is SS01)"
                    .into(),
            ));
        }
        let bin = find_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("firmware-sim-")
            .tempdir()
            .map_err(io("create a temporary directory"))?;
        let mut extra = self.args.clone();
        if let Some(text) = self.config() {
            let cfg = dir.path().join("subsystem.toml");
            std::fs::write(&cfg, text).map_err(io("write the config"))?;
            extra.insert(0, cfg.display().to_string());
            extra.insert(0, "--config".into());
        }
        let mut s = Subsystem {
            bin,
            dir,
            args: self.args.clone(),
            child: None,
            api: Api::new("http://127.0.0.1:0"),
            api_ca: self.api_ca.clone(),
            nbd_base: String::new(),
            ports: ("0".into(), "0".into()),
            banner: String::new(),
        };
        s.start(&extra)?;
        Ok(s)
    }
}

/// A running subsystem. Dropping it stops the daemon and removes its data
/// directory.
pub struct Subsystem {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// The builder's boot arguments, given again at every IPL (the config
    /// is not: after the first boot the data directory holds it, changed by
    /// whatever volumes the test created or deleted).
    args: Vec<String>,
    child: Option<Child>,
    api: Api,
    api_ca: Option<PathBuf>,
    nbd_base: String,
    ports: (String, String),
    banner: String,
}

impl Subsystem {
    /// What to boot; `Subsystem::builder().boot()` is the embedded default.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The embedded default subsystem.
    pub fn boot_default() -> Result<Subsystem, Error> {
        Builder::default().boot()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn start(&mut self, extra: &[String]) -> Result<(), Error> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(io("open the daemon log"))?;
        let mut child = Command::new(&self.bin)
            .arg("boot")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--api", &format!("127.0.0.1:{}", self.ports.0)])
            .args(["--nbd", &format!("127.0.0.1:{}", self.ports.1)])
            // The pipe on stdin closes when this process dies, even by
            // SIGKILL: the daemon then stops instead of outliving the test.
            .arg("--stop-on-stdin-eof")
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(io(format!("start {}", self.bin.display())))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let (mut api, mut nbd, mut banner) = (None, None, String::new());
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    banner.push_str(&line);
                    banner.push('\n');
                    if let Some(a) = line.strip_prefix("control API: ") {
                        api = Some(a.trim().to_string());
                    }
                    // `nbds://` under `--tls require`.
                    for scheme in ["nbd://", "nbds://"] {
                        if let Some(i) = line.find(scheme) {
                            let uri = line[i..].split_whitespace().next().unwrap_or("");
                            if let Some(slash) = uri[scheme.len()..].find('/') {
                                nbd.get_or_insert_with(|| uri[..=scheme.len() + slash].to_string());
                            }
                        }
                    }
                    if line.starts_with("ready:") {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    return Err(Error::Boot(format!(
                        "not ready ({status:?}); stdout:\n{banner}\nlog:\n{}",
                        self.log()
                    )));
                }
            }
        }
        // Keep draining stdout so the daemon never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        let (Some(api), Some(nbd)) = (api, nbd) else {
            let _ = child.kill();
            return Err(Error::Boot(format!("no API or NBD address in:\n{banner}")));
        };
        self.ports = (
            api.rsplit(':').next().unwrap_or("0").to_string(),
            nbd.trim_end_matches('/')
                .rsplit(':')
                .next()
                .unwrap_or("0")
                .to_string(),
        );
        self.api = match &self.api_ca {
            Some(ca) => Api::new(&api).with_ca_file(ca).inspect_err(|_| {
                let _ = child.kill();
            })?,
            None => Api::new(&api),
        };
        self.nbd_base = nbd;
        self.banner = banner;
        self.child = Some(child);
        Ok(())
    }

    /// The control API.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// The typed client of the control API (same as `api().client()`).
    pub fn client(&self) -> &firmware_sim_client::Client {
        self.api.client()
    }

    /// `http://127.0.0.1:PORT` of the control API.
    pub fn api_url(&self) -> &str {
        self.api.base()
    }

    /// `nbd://127.0.0.1:PORT/VOLUME` (`nbds://` under `--tls require`).
    pub fn nbd_uri(&self, volume: &str) -> String {
        format!("{}{volume}", self.nbd_base)
    }

    /// What `boot` printed.
    pub fn banner(&self) -> &str {
        &self.banner
    }

    /// Whether the daemon runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `SIGKILL`: no shutdown at all, like a power loss of the host process.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Clean shutdown (`SIGTERM`): every volume flushed.
    pub fn stop(&mut self) -> Result<(), Error> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = c.try_wait() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return Err(Error::Boot(format!(
                    "no clean stop within 30 s of SIGTERM; log:\n{}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Boots the same data directory again (an IPL), after a clean stop if
    /// it still runs, on the same API and NBD ports and with the builder's
    /// boot arguments (TLS, read-only, token...).
    pub fn ipl(&mut self) -> Result<(), Error> {
        if self.running() {
            self.stop()?;
        }
        self.child = None;
        let args = self.args.clone();
        self.start(&args)
    }

    /// Makes `other` (running) a peer of this subsystem: adds `--peer
    /// ID=HOST:PORT` for it to the boot arguments and IPLs this daemon. A
    /// session spanning both needs each to know the other (with only the
    /// coordinator knowing its peer, the peer's IPL cannot end the
    /// coordinator's part): call it both ways, before starting sessions,
    /// since the IPL ends this daemon's sessions.
    pub fn peer_with(&mut self, other: &Subsystem) -> Result<(), Error> {
        let id = other
            .client()
            .health()
            .map_err(crate::api::ApiError::from)?
            .subsystem;
        let address = other
            .api_url()
            .split_once("://")
            .map_or(other.api_url(), |(_, a)| a)
            .to_string();
        self.args
            .extend(["--peer".to_string(), format!("{id}={address}")]);
        if let Some(ca) = &other.api_ca {
            if !self.args.iter().any(|a| a == "--peer-ca") {
                self.args
                    .extend(["--peer-ca".to_string(), ca.display().to_string()]);
            }
        }
        self.ipl()
    }

    /// A controller reset and its notification; returns the decisions.
    pub fn reset(&self, lose_volatile: bool) -> Result<serde_json::Value, Error> {
        Ok(self.api.event(
            "reset",
            serde_json::json!({ "lose_volatile": lose_volatile }),
        )?)
    }

    /// The daemon's recent events (`GET /events`), oldest first: map state
    /// changes, completions, cleaning, deletions, suspensions, IPLs.
    pub fn events(&self) -> Result<Vec<firmware_sim_client::model::RecentEvent>, Error> {
        Ok(self
            .client()
            .recent_events()
            .map_err(crate::api::ApiError::from)?)
    }

    /// The path of the data directory's volume file, for tests that look at
    /// the bytes on disk.
    pub fn volume_file(&self, volume: &str) -> PathBuf {
        Path::new(&self.data_dir())
            .join("volumes")
            .join(format!("{volume}.vol"))
    }
}

impl Drop for Subsystem {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- firmware-sim log ({}) ---\n{}",
                self.log_path().display(),
                self.log()
            );
        }
        if self.stop().is_err() {
            self.crash();
        }
    }
}
