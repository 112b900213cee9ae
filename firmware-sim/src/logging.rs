//! Logging setup: tracing to stderr (stdout carries URIs, JSON output and, in
//! `serve-stdio`, the NBD protocol), human lines or JSON lines, `RUST_LOG`
//! honoured; the default is `info` for the daemon and `warn` for client verbs
//! (whose stderr is reserved for the one-line error).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber. Safe to call once per process.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Colour only on a terminal, and never with NO_COLOR set (no-color.org).
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let res = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(e) = res {
        eprintln!("firmware-sim: logging not initialised: {e}");
    }
}
