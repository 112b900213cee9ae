//! firmware-sim: the binary. `boot` runs the simulated subsystem as a daemon
//! (NBD exports plus a JSON control API); every other verb is a thin client
//! of that API, except the offline ones (`replay`, `fault-run`, `check`).
//!
//! Must not: reach into controller internals from the CLI (client verbs speak
//! only HTTP), or map controller errors anywhere but `api::error` (HTTP) and
//! `daemon::export` (NBD errno).

// Interim while the controller is wired in: parts of the API error and
// client surface are used only by routes still being added.
#![allow(dead_code)]

use clap::Parser;

mod api;
mod cli;
mod client;
mod daemon;
mod error;
mod logging;
mod output;

fn main() {
    let cli = cli::Cli::parse();
    logging::init(cli.log_format);
    if let Err(e) = cli::run(cli) {
        eprintln!("firmware-sim: error: {e}");
        std::process::exit(e.exit_code());
    }
}
