//! Serve one in-memory export over a unix socket, TCP, socket activation or
//! stdin/stdout. Used by benches/nbd-compare.sh and for manual interop.
//!
//! ```text
//! mem-server unix:/tmp/s.sock [size_mib] [name]
//! mem-server tcp:127.0.0.1:10809 [size_mib] [name]
//! mem-server systemd [size_mib] [name]     # LISTEN_FDS=1, fd 3
//! mem-server stdio [size_mib] [name]
//! ```
//! Logs go to stderr (RUST_LOG, default warn). SIGINT/SIGTERM shut down gracefully.

use std::sync::Arc;

use nbd::testing::MemExport;
use nbd::{Server, ServerConfig, StaticRegistry};

fn usage() -> ! {
    eprintln!("usage: mem-server unix:PATH|tcp:ADDR|systemd|stdio [size_mib] [name]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args: Vec<String> = std::env::args().collect();
    let Some(mode) = args.get(1) else { usage() };
    let size_mib: u64 = match args.get(2).map(|s| s.parse()) {
        None => 64,
        Some(Ok(n)) => n,
        Some(Err(_)) => usage(),
    };
    let name = args.get(3).cloned().unwrap_or_else(|| "disk".to_string());
    let export = Arc::new(MemExport::new(size_mib << 20).description("in-memory test export"));
    let registry = Arc::new(StaticRegistry::single(&name, export));
    // NBD_MAX_BATCH=1 turns request batching off (for A/B benchmarks).
    let mut config = ServerConfig::default();
    if let Some(n) = std::env::var("NBD_MAX_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.max_batch = n;
    }
    let server = match Server::new(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mem-server: {e}");
            std::process::exit(1)
        }
    };
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let res = if let Some(path) = mode.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        match tokio::net::UnixListener::bind(path) {
            Ok(l) => server.serve_unix(l, registry, shutdown).await,
            Err(e) => Err(e.into()),
        }
    } else if let Some(addr) = mode.strip_prefix("tcp:") {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => server.serve_tcp(l, registry, shutdown).await,
            Err(e) => Err(e.into()),
        }
    } else if mode == "systemd" {
        match nbd::listener_from_systemd_env() {
            Ok(Some(l)) => server.serve(l, registry, shutdown).await,
            Ok(None) => {
                eprintln!("mem-server: not socket-activated (LISTEN_PID/LISTEN_FDS)");
                std::process::exit(1)
            }
            Err(e) => Err(e),
        }
    } else if mode == "stdio" {
        server.serve_stdio(registry).await
    } else {
        usage()
    };
    if let Err(e) = res {
        eprintln!("mem-server: {e}");
        std::process::exit(1);
    }
}
