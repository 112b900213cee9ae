//! firmware-sim: the binary. `boot` runs the simulated subsystem as a daemon
//! (NBD exports plus a JSON control API); every other verb is a thin client
//! of that API, except the offline ones (`replay`, `fault-run`, `check`).
//!
//! Must not: reach into controller internals from the CLI (client verbs speak
//! only HTTP), or map controller errors anywhere but `api::error` (HTTP) and
//! `daemon::export` (NBD errno).

use clap::Parser;

mod api;
mod cli;
mod client;
mod daemon;
mod error;
mod logging;
mod metrics;
mod node;
mod output;

fn main() {
    let cli = cli::Cli::parse();
    let daemon = matches!(
        cli.command,
        cli::Command::Boot(_) | cli::Command::ServeStdio(_)
    );
    logging::init(cli.log_format, if daemon { "info" } else { "warn" });
    if let Err(e) = cli::run(cli) {
        eprintln!("firmware-sim: error: {e}");
        std::process::exit(e.exit_code());
    }
}
