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
mod daemon;
mod error;
mod logging;
mod metrics;
mod names;
mod node;
mod output;
mod peer;
mod recent;
mod sched;

/// Exit status when stdout is a closed pipe (`... | head`), as if killed by SIGPIPE.
pub(crate) const EXIT_BROKEN_PIPE: i32 = 141;

fn main() {
    // Rust ignores SIGPIPE, so `println!` into a closed pipe panics; leave
    // quietly instead, the way a process killed by SIGPIPE would.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("Broken pipe") {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
        default_hook(info);
    }));
    let json = std::env::args().any(|a| a == "--json");
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version are not failures; a bad command line under
            // --json is also a JSON document on stdout (kind `usage`, exit 2).
            let usage = !matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            );
            if json && usage {
                // clap's first paragraph, on one line (it may list the
                // missing arguments or the possible values below the first).
                let text = e.to_string();
                let line = text
                    .lines()
                    .map(str::trim)
                    .skip_while(|l| l.is_empty())
                    .take_while(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                let line = line.trim_start_matches("error: ").to_string();
                println!("{}", error::CliError::Usage(line).to_json());
            }
            e.exit()
        }
    };
    // Daemons log their life at info; client verbs keep stderr for the one-line
    // error; replay and check drive simulated resets whose warnings are
    // expected, so they show errors only; fault-run injects failures on
    // purpose, so the subsystem's error logs are noise there (its summary
    // reports them). RUST_LOG overrides all of this.
    let default_level = match cli.command {
        cli::Command::Boot(_) | cli::Command::ServeStdio(_) => "info",
        cli::Command::Replay(_) | cli::Command::Check(_) => "error",
        cli::Command::FaultRun(_) => "off",
        _ => "warn",
    };
    logging::init(cli.log_format, default_level);
    if let Err(e) = cli::run(cli) {
        eprintln!("firmware-sim: error: {e}");
        // Under --json the error is a JSON document on stdout too, so
        // `... --json | jq` sees it. Expectation failures (fault-run, replay,
        // check) have already printed their own JSON report there.
        if json && !matches!(e, error::CliError::Expectation(_)) {
            println!("{}", e.to_json());
        }
        std::process::exit(e.exit_code());
    }
}
