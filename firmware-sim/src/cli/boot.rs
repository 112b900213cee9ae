//! `firmware-sim boot` and `firmware-sim serve-stdio`: argument parsing and
//! hand-off to [`crate::daemon`].

use std::path::PathBuf;

use clap::Args;

use crate::daemon::{self, BootPlan};
use crate::error::CliError;
use crate::sched::{self, CpuScheduling};

/// `boot [--config FILE] [--data-dir DIR] [--nbd ADDR] [--api ADDR]`.
#[derive(Debug, Args)]
pub struct BootArgs {
    /// Subsystem configuration (TOML); default: the data dir's subsystem.toml, else the embedded one.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (created; reusing it is an IPL).
    #[arg(long, value_name = "DIR", default_value = "./firmware-sim-data")]
    pub data_dir: PathBuf,
    /// NBD TCP address (default: the config's, else 127.0.0.1:10809; port 0 = any free port).
    #[arg(long, value_name = "ADDR")]
    pub nbd: Option<String>,
    /// Also (or, without --nbd, only) serve NBD on this unix socket.
    #[arg(long, value_name = "PATH")]
    pub nbd_unix: Option<PathBuf>,
    /// Control API address (default: the config's, else 127.0.0.1:10810; port 0 = any free port).
    #[arg(long, value_name = "ADDR")]
    pub api: Option<String>,
    /// Do not serve the control API (e.g. under socket activation).
    #[arg(long, conflicts_with = "api")]
    pub no_api: bool,
    /// The volume an empty NBD export name selects (none by default).
    #[arg(long, value_name = "VOL")]
    pub default_export: Option<String>,
    /// Close an NBD connection that sends no request for this long with none
    /// in flight (default 0: never; a mounted kernel client may idle for hours).
    #[arg(long, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(0..=controller::config::MAX_IDLE_TIMEOUT_S))]
    pub nbd_idle_timeout: Option<u64>,
    /// Drop an NBD connection that has not finished option negotiation (TLS
    /// handshake included) this long after it was accepted (default 30):
    /// a client that dribbles its handshake cannot hold a slot for longer.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub nbd_handshake_timeout: Option<u64>,
    /// Close a control-API connection whose request header has not arrived
    /// this long after the connection started waiting for it (default 20;
    /// also how long an idle keep-alive connection stays open).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub api_header_timeout: Option<u64>,
    /// NBD connections one remote IP address may hold at once (of 64 in all;
    /// loopback and unix-socket clients are not counted).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub nbd_max_conns_per_peer: Option<u64>,
    /// Serve every volume read-only: NBD writes, trims and zeroing get EPERM
    /// and the export flags say so (per volume: `read_only = true` in the
    /// config). Copy-on-write and background copies still run.
    #[arg(long)]
    pub read_only: bool,
    /// Stop cleanly (as on SIGTERM) when stdin reaches end of file: a test
    /// kit that starts the daemon with a pipe on its stdin gets it stopped
    /// when the test process dies, even by SIGKILL.
    #[arg(long)]
    pub stop_on_stdin_eof: bool,
    /// NBD TLS: `off` (STARTTLS refused), `on` (clients may upgrade with
    /// STARTTLS) or `require` (nothing is listed or served in the clear).
    /// Needs --tls-cert and --tls-key, or --tls-psk.
    #[arg(long, value_enum, default_value_t = TlsMode::Off)]
    pub tls: TlsMode,
    /// PEM file with the server certificate (then any intermediates).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the certificate's private key.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// TLS with pre-shared keys instead of a certificate: a file of
    /// `username:hexkey` lines (nbdkit's --tls-psk format, e.g. from
    /// `psktool -u alice -p FILE`); only clients holding a listed key connect.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_psk: Option<PathBuf>,
    /// File holding the control API's bearer token: required to bind the API
    /// outside loopback; every client then sends it (CLI: --token-file or
    /// FIRMWARE_SIM_API_TOKEN); peers are sent the same token.
    #[arg(long, value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Another subsystem whose volumes sessions may span: ID=HOST:PORT of its
    /// control API (repeatable; adds to or replaces the config's [[peers]]).
    #[arg(long = "peer", value_name = "ID=HOST:PORT")]
    pub peers: Vec<String>,
    /// PEM file of the certificate (or CA) to trust for peers whose API is
    /// `https://` (peers booted with --api-tls); default: the public web roots.
    #[arg(long, value_name = "FILE")]
    pub peer_ca: Option<PathBuf>,
    /// How long one call to a peer may take, in seconds (1-3600). After a
    /// call times out, the peer is not asked again for 10 s (or this long,
    /// if shorter): requests that need it fail at once, and events go on
    /// without it.
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub peer_timeout: u64,
    /// CPU scheduling of the daemon's threads: `batch` (SCHED_BATCH: a
    /// thread the daemon wakes does not preempt the one that woke it, which
    /// keeps request hand-offs cheap on few cores) or `inherit` (leave the
    /// policy it was started with).
    #[arg(long, value_enum, default_value_t = CpuScheduling::Batch)]
    pub cpu_scheduling: CpuScheduling,
    /// Serve the control API over HTTPS with the certificate of --tls-cert
    /// and --tls-key (NBD TLS stays as --tls sets it). Clients trust it
    /// with --api-ca FILE or FIRMWARE_SIM_API_CA.
    #[arg(long)]
    pub api_tls: bool,
}

/// `serve-stdio --data-dir DIR --export VOL`.
#[derive(Debug, Args)]
pub struct ServeStdioArgs {
    /// Subsystem configuration (TOML); default: the data dir's subsystem.toml, else the embedded one.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (created; reusing it is an IPL).
    #[arg(long, value_name = "DIR", default_value = "./firmware-sim-data")]
    pub data_dir: PathBuf,
    /// Volume served (the export an empty export name selects); all volumes stay listed.
    #[arg(long, value_name = "VOL")]
    pub export: Option<String>,
}

/// `boot --tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsMode {
    /// No TLS: STARTTLS is answered "unsupported".
    Off,
    /// TLS offered: clients may upgrade with STARTTLS, or stay in the clear.
    On,
    /// TLS required: every option but STARTTLS is refused in the clear.
    Require,
}

/// Runs `boot`.
pub fn run(a: BootArgs) -> Result<(), CliError> {
    sched::apply(a.cpu_scheduling);
    let plan = BootPlan {
        config_file: a.config,
        data_dir: a.data_dir,
        nbd_tcp: a.nbd,
        nbd_unix: a.nbd_unix,
        api: a.api,
        no_api: a.no_api,
        default_export: a.default_export,
        peers: a.peers,
        api_token_file: a.api_token_file,
        nbd_idle_timeout_s: a.nbd_idle_timeout,
        nbd_handshake_timeout_s: a.nbd_handshake_timeout,
        api_header_timeout_s: a.api_header_timeout,
        nbd_max_conns_per_peer: a.nbd_max_conns_per_peer,
        read_only: a.read_only,
        stop_on_stdin_eof: a.stop_on_stdin_eof,
        tls: match a.tls {
            TlsMode::Off => None,
            TlsMode::On => Some(false),
            TlsMode::Require => Some(true),
        },
        tls_cert: a.tls_cert,
        tls_key: a.tls_key,
        tls_psk: a.tls_psk,
        api_tls: a.api_tls,
        peer_ca: a.peer_ca,
        peer_timeout_s: a.peer_timeout,
    };
    runtime()?.block_on(daemon::boot(plan))
}

/// Runs `serve-stdio`.
pub fn run_stdio(a: ServeStdioArgs) -> Result<(), CliError> {
    sched::apply(CpuScheduling::Batch);
    runtime()?.block_on(daemon::serve_stdio(a.config_file(), a.data_dir, a.export))
}

impl ServeStdioArgs {
    fn config_file(&self) -> Option<PathBuf> {
        self.config.clone()
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("firmware-sim")
        .build()
        .map_err(|e| CliError::failed("cannot start the async runtime", e))
}
