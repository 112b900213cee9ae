//! Shared test harness: an in-process server on a unix socket in a
//! tempdir, helpers to run real NBD clients with a timeout, and a minimal
//! synchronous raw-protocol client.
#![allow(dead_code)]

pub mod raw;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nbd::testing::MemExport;
use nbd::{Export, Server, ServerConfig, StaticRegistry};

/// A server running on its own tokio runtime thread.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub registry: Arc<StaticRegistry>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), nbd::ServerError>>>,
}

impl TestServer {
    /// Serve `exports` (first one is the default) with the default config.
    pub fn start(exports: Vec<(&str, Arc<dyn Export>)>) -> TestServer {
        Self::start_with(exports, ServerConfig::default())
    }

    pub fn start_with(exports: Vec<(&str, Arc<dyn Export>)>, config: ServerConfig) -> TestServer {
        init_logging();
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("nbd.sock");
        let registry = Arc::new(StaticRegistry::new());
        for (i, (name, e)) in exports.into_iter().enumerate() {
            registry.insert(name, e);
            if i == 0 {
                registry.set_default(Some(name));
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reg: Arc<dyn nbd::ExportRegistry> = registry.clone();
        let sock = socket.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let server = Server::new(config)?;
                let listener = tokio::net::UnixListener::bind(&sock)?;
                let _ = ready_tx.send(());
                server
                    .serve_unix(listener, reg, async {
                        let _ = rx.await;
                    })
                    .await
            })
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server did not start");
        TestServer {
            dir,
            socket,
            registry,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// One 64 MiB MemExport called "disk".
    pub fn mem(size: u64) -> (TestServer, Arc<MemExport>) {
        let e = Arc::new(MemExport::new(size).description("test disk"));
        (Self::start(vec![("disk", e.clone())]), e)
    }

    pub fn uri(&self, export: &str) -> String {
        format!("nbd+unix:///{export}?socket={}", self.socket.display())
    }

    /// Start shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shut down and wait until the serve call returns (bounded).
    pub fn stop(&mut self) -> Result<(), nbd::ServerError> {
        self.begin_shutdown();
        let Some(t) = self.thread.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !t.is_finished() {
            assert!(Instant::now() < deadline, "server did not stop within 20 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        t.join().expect("server thread panicked")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = self.stop();
        } else {
            self.begin_shutdown();
        }
    }
}

pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
}

/// Fail (not skip) when a client the test needs is missing: CI installs it.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "required NBD client `{tool}` is not installed: run `apt-get install -y {package}` \
         (scripts/test installs it)"
    );
}

/// Run a command with a timeout; panics with its output on timeout.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let child = cmd
        .env(
            "PATH",
            format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    let id = child.id();
    let deadline = Instant::now() + timeout;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    loop {
        match rx.try_recv() {
            Ok(out) => return out.expect("wait failed"),
            Err(_) if Instant::now() > deadline => {
                let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
                panic!("{desc} did not finish within {timeout:?}");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Run and require success; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let desc = format!("{cmd:?}");
    let out = run(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{desc} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Path of the `mem-server` example (cargo test builds examples).
pub fn mem_server_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let p = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("examples").join("mem-server"))
        .expect("target dir");
    assert!(
        p.exists(),
        "{} is missing: run the tests with `cargo test -p nbd` (which builds examples)",
        p.display()
    );
    p
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
