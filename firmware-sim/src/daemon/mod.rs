//! The daemon behind `firmware-sim boot`: loads the configuration, opens the
//! data directory (an IPL when it exists), binds the NBD and control API
//! listeners, prints the NBD URIs, and serves until SIGINT/SIGTERM.
//!
//! Shutdown order (cli.md): stop accepting on every listener, let in-flight
//! NBD requests finish and reply, flush every volume and close the data
//! directory cleanly, exit 0.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use config::ConfigSource;
use controller::SubsystemConfig;
use nbd::{Listener, Server, ServerConfig};
use tokio::net::{TcpListener, UnixListener};
use tracing::{info, warn};

use crate::cli::{DEFAULT_API, DEFAULT_NBD};
use crate::error::CliError;
use crate::node::{decision_lines, ipl_notes, Node};
use crate::output::human_bytes;

pub mod config;
pub mod export;
mod signals;

use export::NodeRegistry;

/// Everything `boot` was asked for, before anything is opened.
#[derive(Debug, Clone)]
pub struct BootPlan {
    /// `--config`.
    pub config_file: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--nbd`.
    pub nbd_tcp: Option<String>,
    /// `--nbd-unix`.
    pub nbd_unix: Option<PathBuf>,
    /// `--api`.
    pub api: Option<String>,
    /// `--no-api`.
    pub no_api: bool,
    /// `--default-export`.
    pub default_export: Option<String>,
    /// `--peer ID=HOST:PORT` flags.
    pub peers: Vec<String>,
    /// `--api-token-file`.
    pub api_token_file: Option<PathBuf>,
    /// `--nbd-idle-timeout` (0: never; absent: the config's `[nbd]`, else never).
    pub nbd_idle_timeout_s: Option<u64>,
    /// `--nbd-handshake-timeout` (absent: the config's `[nbd]`, else 30 s).
    pub nbd_handshake_timeout_s: Option<u64>,
    /// `--api-header-timeout` (absent: 20 s).
    pub api_header_timeout_s: Option<u64>,
    /// `--nbd-max-conns-per-peer` (absent: the config's `[nbd]`, else 16).
    pub nbd_max_conns_per_peer: Option<u64>,
    /// `--read-only`: every export refuses writes.
    pub read_only: bool,
    /// `--stop-on-stdin-eof`: stdin's end of file stops the daemon.
    pub stop_on_stdin_eof: bool,
    /// `--tls`: `None` off, `Some(require)` on.
    pub tls: Option<bool>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--tls-psk`: pre-shared keys instead of a certificate.
    pub tls_psk: Option<PathBuf>,
    /// `--api-tls`: serve the control API over HTTPS with `--tls-cert`/`--tls-key`.
    pub api_tls: bool,
    /// `--peer-ca`: certificates trusted for `https://` peers.
    pub peer_ca: Option<PathBuf>,
    /// `--peer-timeout`: seconds one call to a peer may take.
    pub peer_timeout_s: u64,
}

/// The control API's TLS configuration under `--api-tls` (X.509 from
/// `--tls-cert`/`--tls-key`, offering HTTP/1.1), or `None` for plain HTTP.
fn api_tls(plan: &BootPlan) -> Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>, CliError> {
    if !plan.api_tls {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&plan.tls_cert, &plan.tls_key) else {
        return Err(CliError::Usage(
            "--api-tls needs --tls-cert FILE and --tls-key FILE (PEM; a --tls-psk key cannot \
             serve HTTPS)"
                .into(),
        ));
    };
    let (certs, key) =
        nbd::load_pem_cert_key(cert, key).map_err(|e| CliError::failed("control API TLS", e))?;
    nbd::rustls_server_config(certs, key, vec![b"http/1.1".to_vec()])
        .map(Some)
        .map_err(|e| CliError::failed("control API TLS", e))
}

/// The NBD TLS setting from `--tls`, `--tls-cert` and `--tls-key`.
fn nbd_tls(plan: &BootPlan) -> Result<Option<nbd::TlsConfig>, CliError> {
    match (plan.tls, &plan.tls_cert, &plan.tls_key, &plan.tls_psk) {
        (None, None, None, None) => Ok(None),
        // The certificate is for the control API only.
        (None, Some(_), Some(_), None) if plan.api_tls => Ok(None),
        (None, _, _, _) => Err(CliError::Usage(
            "--tls-cert/--tls-key/--tls-psk given with --tls off: add --tls on or --tls require"
                .into(),
        )),
        (Some(require), None, None, Some(psk)) => nbd::TlsConfig::from_psk_file(psk, require)
            .map(Some)
            .map_err(|e| CliError::failed("NBD TLS", e)),
        (Some(_), _, _, Some(_)) => Err(CliError::Usage(
            "--tls-psk replaces --tls-cert and --tls-key: give one or the other".into(),
        )),
        (Some(_), None, _, None) | (Some(_), _, None, None) => Err(CliError::Usage(
            "--tls on|require needs --tls-cert FILE and --tls-key FILE (PEM), or --tls-psk FILE"
                .into(),
        )),
        (Some(require), Some(cert), Some(key), None) => {
            nbd::TlsConfig::from_pem_files(cert, key, require)
                .map(Some)
                .map_err(|e| CliError::failed("NBD TLS", e))
        }
    }
}

/// An IPL that ran out of space (its checkpoint, a config volume's file)
/// can say "fenced" or name a file; the cause is the disk.
fn no_space_hint(e: &controller::ControllerError, data_dir: &Path) -> String {
    let full = e.kind() == controller::ErrorKind::NoSpace
        || e.full_message().contains("No space left on device");
    if full {
        format!(
            "; the filesystem holding {} is full: free space there and boot again",
            data_dir.display()
        )
    } else {
        String::new()
    }
}

/// Whether two listen addresses would take the same TCP port: the same
/// text, or the same fixed port on the same address or on a wildcard one
/// (port 0 picks a free port for each, so never clashes).
fn same_port(a: &str, b: &str) -> bool {
    use std::net::SocketAddr;
    if a == b && !a.ends_with(":0") {
        return true;
    }
    match (a.parse::<SocketAddr>(), b.parse::<SocketAddr>()) {
        (Ok(x), Ok(y)) => {
            x.port() != 0
                && x.port() == y.port()
                && (x.ip() == y.ip() || x.ip().is_unspecified() || y.ip().is_unspecified())
        }
        _ => false,
    }
}

async fn bind_tcp(what: &str, addr: &str) -> Result<TcpListener, CliError> {
    TcpListener::bind(addr).await.map_err(|e| {
        // A port in use is usually another daemon (a second subsystem on the
        // defaults): name the flag that moves this one.
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            let flag = if what == "NBD" { "--nbd" } else { "--api" };
            format!(
                " (another process listens there, perhaps another firmware-sim: give this \
                 one another address with {flag} HOST:PORT)"
            )
        } else {
            String::new()
        };
        CliError::failed(format!("cannot listen for {what} on {addr}{hint}"), e)
    })
}

async fn bind_unix(path: &Path) -> Result<UnixListener, CliError> {
    use std::os::unix::fs::FileTypeExt;
    // A socket left by a killed daemon would make bind fail; remove only
    // sockets nobody listens on (QA: a second daemon took over a live
    // daemon's socket, and NBD clients silently reached the wrong subsystem).
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(CliError::Failed(format!(
                "cannot listen for NBD on unix socket {}: the path exists and is not a \
                 socket; give another path with --nbd-unix PATH",
                path.display()
            )));
        }
        // Non-blocking, with a deadline: a live listener whose queue is
        // full counts as live, and must not hang the boot.
        let probe = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            tokio::net::UnixStream::connect(path),
        )
        .await;
        let live = match probe {
            Ok(Ok(_)) | Err(_) => true,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                let _ = std::fs::remove_file(path);
                false
            }
            Ok(Err(_)) => false,
        };
        if live {
            return Err(CliError::Failed(format!(
                "cannot listen for NBD on unix socket {}: another process listens there, \
                 perhaps another firmware-sim; give this one another path with --nbd-unix PATH",
                path.display()
            )));
        }
    }
    UnixListener::bind(path).map_err(|e| {
        CliError::failed(
            format!("cannot listen for NBD on unix socket {}", path.display()),
            e,
        )
    })
}

/// Opens the subsystem on the blocking pool, logs what the IPL found, runs
/// the resource manager's IPL recovery, and makes `DIR/subsystem.toml` the
/// config it runs with.
async fn open_node(
    data_dir: &Path,
    config: SubsystemConfig,
    source: &ConfigSource,
) -> Result<Arc<Node>, CliError> {
    info!("config: {source}");
    let dir = data_dir.to_path_buf();
    let rt = tokio::runtime::Handle::current();
    let cfg = config.clone();
    let node = tokio::task::spawn_blocking(move || Node::open(&dir, cfg, rt))
        .await
        .map_err(|e| CliError::failed("opening the subsystem failed", e))?
        .map_err(|e| {
            CliError::failed(
                format!("cannot open the subsystem in {}", data_dir.display()),
                format!(
                    "{}{}{}{}",
                    crate::cli::salvage::name_salvage(&e.full_message(), data_dir),
                    config::mismatch_hint(data_dir, &config, source, e.kind()),
                    volume_file_hint(&e.full_message(), data_dir),
                    no_space_hint(&e, data_dir)
                ),
            )
        })?;
    // Volumes the data directory holds that the config does not list stay
    // (they may hold data); say so, and keep them in the stored config
    // (QA: they were kept without a word, and subsystem.toml dropped them).
    let mut config = config;
    let kept: Vec<(String, String)> = node.with(|s| {
        s.volumes()
            .into_iter()
            .filter(|v| !config.volumes.iter().any(|c| c.id == v.id))
            .map(|v| (v.id, v.model))
            .collect()
    });
    if !kept.is_empty() {
        let names: Vec<&str> = kept.iter().map(|(id, _)| id.as_str()).collect();
        warn!(
            "volumes {} are in the data directory but not in the config: kept as they are \
             (`firmware-sim volume delete ID` removes one)",
            names.join(", ")
        );
        for (id, model) in kept {
            if let Ok(model) = model.parse() {
                config.volumes.push(controller::VolumeConfig {
                    id,
                    model,
                    read_only: false,
                });
            }
        }
    }
    // DIR/subsystem.toml becomes the config this boot runs with (a crash
    // leaves the old file or the new one).
    let dir = controller::datadir::DataDir::new(data_dir);
    match dir.store_config(&config) {
        Ok(true) => info!(
            "{} now holds the config this boot runs with",
            dir.config_path().display()
        ),
        Ok(false) => {}
        Err(e) => warn!(error = %e, "cannot update the data directory's subsystem.toml"),
    }
    let (report, notes, maps) = node.with(|s| {
        let r = s.ipl_report();
        let notes = ipl_notes(&r, s);
        (r, notes, s.maps().len())
    });
    // The outcome as fields (for `--log-format json` and log shippers);
    // the sentences below say the same for people.
    info!(
        created = report.created,
        unclean = report.dirty,
        root_generation = report.root_generation,
        journal_records = report.journal_records,
        maps,
        check_findings = report.check_findings.len(),
        suspended_maps = report.suspended_maps.len(),
        physical_sessions = report.sessions.len(),
        physical_sessions_lost = report.sessions_lost.len(),
        host = node.host(),
        "subsystem opened"
    );
    info!(
        "resource manager speaks for host {} (the owner of sessions started without --host; config key `host`)",
        node.host()
    );
    for line in notes {
        info!("{line}");
    }
    let node = Arc::new(node);
    if !report.created {
        // An existing data dir is an IPL (cli.md): the resource manager replays
        // the activity tables and ends the sessions the IPL interrupted before
        // anything is served or copied.
        let n = node.clone();
        let recovered = tokio::task::spawn_blocking(move || n.recover_at_ipl())
            .await
            .map_err(|e| CliError::failed("IPL session recovery failed", e))?;
        match recovered {
            Ok(d) => {
                for line in decision_lines(&d) {
                    if line.starts_with("INCOMPLETE") {
                        warn!("IPL session recovery: {line}");
                    } else {
                        info!("IPL session recovery: {line}");
                    }
                }
            }
            Err(e) => {
                let n = node.clone();
                let _ = tokio::task::spawn_blocking(move || n.close()).await;
                return Err(CliError::failed(
                    format!(
                        "IPL of {}: the resource manager could not recover the sessions",
                        data_dir.display()
                    ),
                    e,
                ));
            }
        }
    }
    Ok(node)
}

/// Shortest token accepted (a guessable token protects nothing).
const MIN_TOKEN_LEN: usize = 16;

/// The token of `--api-token-file` (trimmed), checked.
fn read_token(file: Option<&Path>) -> Result<Option<String>, CliError> {
    let Some(f) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(f)
        .map_err(|e| CliError::failed(format!("--api-token-file {}", f.display()), e))?;
    let token = text.trim().to_string();
    if token.len() < MIN_TOKEN_LEN || token.chars().any(char::is_whitespace) {
        return Err(CliError::Usage(format!(
            "--api-token-file {}: the token must be one word of at least {MIN_TOKEN_LEN} \
             characters (e.g. `head -c 32 /dev/urandom | base64 > FILE`)",
            f.display()
        )));
    }
    Ok(Some(token))
}

/// A control API reachable from other hosts needs a token: refuse to bind
/// outside loopback without `--api-token-file`.
fn check_api_exposure(addr: &str, token_file: Option<&Path>) -> Result<(), CliError> {
    if token_file.is_some() {
        return Ok(());
    }
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return Ok(());
    }
    Err(CliError::Usage(format!(
        "--api {addr} is reachable from other hosts, and the control API can delete every \
         volume: give it a token with --api-token-file FILE (or bind 127.0.0.1)"
    )))
}

/// What to do when a volume's file is missing or damaged (the open names it
/// as `open volume ID`): every volume stays offline until it is back.
fn volume_file_hint(message: &str, data_dir: &Path) -> String {
    if !message.starts_with("open volume ") {
        return String::new();
    }
    format!(
        "; put the volume's file back from a copy (`firmware-sim check --data-dir {}` lists \
         every volume affected)",
        data_dir.display()
    )
}

/// Runs the daemon until a shutdown signal.
pub async fn boot(mut plan: BootPlan) -> Result<(), CliError> {
    let (mut config, source) = config::load_config(plan.config_file.as_deref(), &plan.data_dir)?;
    config::add_peers(&mut config, &plan.peers)?;
    crate::peer::set_peer_timeout(std::time::Duration::from_secs(plan.peer_timeout_s));
    if let Some(ca) = &plan.peer_ca {
        let roots = firmware_sim_client::load_ca_file(ca)
            .map_err(|e| CliError::Usage(format!("--peer-ca: {e}")))?;
        crate::peer::set_peer_roots(roots);
    }
    // `boot` flags win over the config's `[nbd]` section (not saved back).
    let nbd_idle_s = plan
        .nbd_idle_timeout_s
        .or(config.nbd.idle_timeout_s)
        .unwrap_or(0);
    let nbd_handshake_s = plan
        .nbd_handshake_timeout_s
        .or(config.nbd.handshake_timeout_s)
        .unwrap_or(30)
        .max(1);
    let nbd_per_peer = plan
        .nbd_max_conns_per_peer
        .or(config.nbd.max_conns_per_peer)
        .unwrap_or(16) as usize;
    let nbd_read_only = plan.read_only || config.nbd.read_only;
    let tls = nbd_tls(&plan)?;
    std::fs::create_dir_all(&plan.data_dir).map_err(|e| {
        CliError::failed(
            format!("cannot create data dir {}", plan.data_dir.display()),
            e,
        )
    })?;
    // The banner, logs and hints name the data directory absolutely: a
    // relative default depends on where the daemon happened to start.
    if let Ok(abs) = std::fs::canonicalize(&plan.data_dir) {
        plan.data_dir = abs;
    }
    let shutdown = signals::Shutdown::install(plan.stop_on_stdin_eof)
        .map_err(|e| CliError::failed("cannot install signal handlers", e))?;

    // Listeners first, so a taken port fails before the subsystem is opened.
    let mut listeners: Vec<(Listener, String)> = Vec::new();
    let activated =
        nbd::listener_from_systemd_env().map_err(|e| CliError::failed("socket activation", e))?;
    let socket_activated = activated.is_some();
    if let Some(l) = activated {
        info!("serving NBD on the socket passed by systemd socket activation (fd 3)");
        listeners.push((l, "nbd+unix:///?socket=(activated)".into()));
    }
    let tcp_addr = match (&plan.nbd_tcp, &plan.nbd_unix, listeners.is_empty()) {
        (Some(a), _, _) => Some(a.clone()),
        (None, None, true) => Some(
            config
                .listen
                .nbd
                .clone()
                .unwrap_or_else(|| DEFAULT_NBD.into()),
        ),
        _ => None,
    };
    if let Some(a) = &tcp_addr {
        let l = bind_tcp("NBD", a).await?;
        let local = l
            .local_addr()
            .map_err(|e| CliError::failed("NBD listener has no address", e))?;
        listeners.push((Listener::Tcp(l), format!("nbd://{local}/")));
    }
    if let Some(p) = &plan.nbd_unix {
        let l = bind_unix(p).await?;
        listeners.push((
            Listener::Unix(l),
            format!("nbd+unix:///?socket={}", p.display()),
        ));
    }
    let api_listener = if plan.no_api {
        None
    } else {
        let a = plan
            .api
            .clone()
            .or_else(|| config.listen.api.clone())
            .unwrap_or_else(|| DEFAULT_API.into());
        check_api_exposure(&a, plan.api_token_file.as_deref())?;
        if let Some(n) = tcp_addr.as_deref().filter(|n| same_port(n, &a)) {
            let text = format!(
                "NBD ({n}) and the control API ({a}) cannot listen on one port: give one of \
                 them another with --nbd or --api (or listen.nbd / listen.api in the config)"
            );
            // A bad command line (exit 2) only when both came from flags;
            // else the config is what is wrong (exit 1, as its other
            // errors; QA).
            return Err(if plan.nbd_tcp.is_some() && plan.api.is_some() {
                CliError::Usage(text)
            } else {
                CliError::Failed(text)
            });
        }
        Some(bind_tcp("the control API", &a).await?)
    };
    if plan.api_tls && plan.no_api {
        return Err(CliError::Usage(
            "--api-tls and --no-api contradict each other".into(),
        ));
    }
    let api_tls = api_tls(&plan)?;
    let guard = crate::api::guard::Guard {
        token: read_token(plan.api_token_file.as_deref())?.map(Arc::new),
        scheme: if api_tls.is_some() { "https" } else { "http" },
    };
    if let Some(t) = &guard.token {
        crate::peer::set_peer_token(t);
    }

    let subsystem_id = config.id.clone();
    config::check_volume_sizes(&plan.data_dir, &config)?;
    let node = match open_node(&plan.data_dir, config, &source).await {
        Ok(n) => n,
        Err(e) => {
            if let Some(p) = &plan.nbd_unix {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
    };
    // QA: an unknown default export was accepted, and every client that
    // asked for the default then got "unknown export" at connect. Checked
    // against the opened subsystem: volumes made with `volume create` live
    // in its metadata, not in the config.
    if let Some(name) = &plan.default_export {
        let ids: Vec<String> = node
            .with(|s| s.volumes())
            .into_iter()
            .map(|v| v.id)
            .collect();
        if !ids.contains(name) {
            let sub = node.with(|s| s.id().to_string());
            if let Some(p) = &plan.nbd_unix {
                let _ = std::fs::remove_file(p);
            }
            if let Err(e) = node.with(|s| s.close()) {
                warn!(error = %e.full_message(), "closing after a refused --default-export");
            }
            return Err(CliError::Usage(format!(
                "--default-export {name}: subsystem {sub} has no volume {name} (its volumes: {})",
                ids.join(", ")
            )));
        }
    }
    // Under `--tls require` a client must speak TLS: the URIs say so
    // (`nbds://`, `nbds+unix://`), so that they work as printed.
    let tls_required = plan.tls == Some(true);
    *node.nbd_bases.write() = listeners
        .iter()
        .map(|(_, b)| match b.strip_prefix("nbd") {
            Some(rest) if tls_required => format!("nbds{rest}"),
            _ => b.clone(),
        })
        .collect();
    node.start_copier();
    spawn_payer(&node);
    let ipl = !node.with(|s| s.ipl_report().created);
    if let Some(w) = node.with(config::overcommit_of) {
        tracing::warn!("{w}");
    }

    // Under socket activation stdout belongs to the parent (nbdinfo prints there).
    let banner = banner(
        &node,
        &subsystem_id,
        ipl,
        &plan.data_dir,
        api_listener.as_ref(),
        guard.scheme,
    );
    if socket_activated {
        eprint!("{banner}");
    } else {
        use std::io::Write;
        print!("{banner}");
        let _ = std::io::stdout().flush();
    }

    let server = Server::new(ServerConfig {
        idle_timeout: (nbd_idle_s > 0).then(|| std::time::Duration::from_secs(nbd_idle_s)),
        max_connections_per_peer: nbd_per_peer,
        handshake_timeout: std::time::Duration::from_secs(nbd_handshake_s),
        tls,
        ..ServerConfig::default()
    })
    .map_err(|e| CliError::failed("NBD server configuration", e))?;
    let registry = Arc::new(
        NodeRegistry::new(node.clone(), plan.default_export.clone()).read_only(nbd_read_only),
    );
    let mut tasks = Vec::new();
    for (l, base) in listeners {
        let (server, registry, sd) = (server.clone(), registry.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = server
                .serve(l, registry, async move { sd.wait().await })
                .await
            {
                warn!(listener = %base, error = %e, "NBD server ended with an error");
            }
        }));
    }
    if let Some(l) = api_listener {
        let header_timeout = plan.api_header_timeout_s.map_or(
            crate::api::serve::HEADER_TIMEOUT,
            std::time::Duration::from_secs,
        );
        let router = crate::api::router(crate::api::AppState { node: node.clone() }, guard);
        let sd = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let stop = async move { sd.wait().await };
            match api_tls {
                Some(config) => match crate::api::tls::TlsListener::new(l, config) {
                    Ok(tls) => crate::api::serve::serve(tls, router, header_timeout, stop).await,
                    Err(e) => warn!(error = %e, "control API ended with an error"),
                },
                None => crate::api::serve::serve(l, router, header_timeout, stop).await,
            }
        }));
    }

    shutdown.wait().await;
    info!("listeners closing, finishing in-flight requests");
    for t in tasks {
        let _ = t.await;
    }
    let n = node.clone();
    let closed = tokio::task::spawn_blocking(move || n.close())
        .await
        .map_err(|e| CliError::failed("shutdown failed", e))?;
    if let Some(p) = &plan.nbd_unix {
        let _ = std::fs::remove_file(p);
    }
    match closed {
        Ok(()) => {
            info!("clean shutdown: every volume flushed, data directory closed");
            Ok(())
        }
        Err(e) => Err(CliError::failed(
            "shutdown: flushing the subsystem failed",
            e.full_message(),
        )),
    }
}

/// What `boot` prints once it serves: subsystem, API address, one line per
/// export with its URI, and a final `ready:` line (scripts wait for it).
fn banner(
    node: &Node,
    id: &str,
    ipl: bool,
    data_dir: &Path,
    api: Option<&TcpListener>,
    scheme: &str,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "firmware-sim {}: subsystem {id} ({}, data dir {})",
        env!("CARGO_PKG_VERSION"),
        if ipl {
            "IPL of an existing subsystem"
        } else {
            "first boot"
        },
        data_dir.display()
    );
    if let Some(a) = api.and_then(|l| l.local_addr().ok()) {
        let _ = writeln!(out, "control API: {scheme}://{a}");
    }
    let _ = writeln!(out, "NBD exports:");
    for v in node.with(|s| s.volumes()) {
        let _ = writeln!(
            out,
            "  {:<8} {:<10} {:>9}  {}",
            v.id,
            v.model,
            human_bytes(v.size_bytes),
            node.nbd_uri(&v.id).unwrap_or_default()
        );
    }
    let _ = writeln!(out, "ready: serving until SIGINT/SIGTERM (Ctrl-C)");
    out
}

/// Serves one NBD connection on stdin/stdout, then closes the subsystem.
/// How often the daemon tries to pay what its resource manager owes peers
/// that did not answer an event (`Node::pay_owed`).
const PAY_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts the task that pays the resource manager's debts to peers once
/// they answer again, so a session an event could not reach ends within
/// seconds of its peer's return, not at the next session request. It ends
/// with the node.
fn spawn_payer(node: &Arc<Node>) {
    let weak = Arc::downgrade(node);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(PAY_EVERY).await;
            let Some(n) = weak.upgrade() else { return };
            if n.owed().is_empty() {
                continue;
            }
            if let Err(e) = tokio::task::spawn_blocking(move || n.pay_owed()).await {
                tracing::error!(error = %e, "the task paying what peers are owed stopped; \
                    session requests still pay what they can");
                return;
            }
        }
    });
}

pub async fn serve_stdio(
    config_file: Option<PathBuf>,
    data_dir: PathBuf,
    export: Option<String>,
) -> Result<(), CliError> {
    let (config, source) = config::load_config(config_file.as_deref(), &data_dir)?;
    std::fs::create_dir_all(&data_dir).map_err(|e| {
        CliError::failed(format!("cannot create data dir {}", data_dir.display()), e)
    })?;
    config::check_volume_sizes(&data_dir, &config)?;
    let node = open_node(&data_dir, config, &source).await?;
    if let Some(e) = &export {
        node.with(|s| s.volume_view(e))
            .map_err(|err| CliError::Failed(format!("--export {e}: {}", err.full_message())))?;
    }
    node.start_copier();
    let server = Server::new(ServerConfig::default())
        .map_err(|e| CliError::failed("NBD server configuration", e))?;
    let registry = Arc::new(NodeRegistry::new(node.clone(), export));
    let served = server.serve_stdio(registry).await;
    let n = node.clone();
    let closed = tokio::task::spawn_blocking(move || n.close())
        .await
        .map_err(|e| CliError::failed("shutdown failed", e))?;
    if let Err(e) = served {
        warn!(error = %e, "stdio connection ended with an error");
    }
    closed.map_err(|e| CliError::failed("flushing the subsystem failed", e.full_message()))
}

#[cfg(test)]
mod tests {
    use super::same_port;

    #[test]
    fn same_port_names_a_clash_but_not_port_zero_or_other_addresses() {
        assert!(same_port("127.0.0.1:10809", "127.0.0.1:10809"));
        assert!(same_port("0.0.0.0:10809", "127.0.0.1:10809"));
        assert!(same_port("[::1]:7000", "[::]:7000"));
        assert!(same_port("localhost:7000", "localhost:7000"));
        assert!(!same_port("127.0.0.1:0", "127.0.0.1:0"));
        assert!(!same_port("127.0.0.1:10809", "127.0.0.1:10810"));
        assert!(!same_port("127.0.0.1:7000", "127.0.0.2:7000"));
    }
}
