//! The command line: one clap-derive tree whose verbs and flags are exactly
//! the public names of `docs/CLI.md`. Client verbs are
//! thin wrappers over the control API's typed client ([`firmware_sim_client`]); each noun lives in
//! its own module with its argument structs and its `run` function.

use clap::{Args, Parser, Subcommand, ValueEnum};

pub mod bench;
pub mod boot;
pub mod cascade;
pub mod event;
pub mod group;
pub mod map;
pub mod offline;
pub mod salvage;
pub mod session;
pub mod shell;
pub mod table;
pub mod volume;

use crate::error::CliError;
use firmware_sim_client::Client;

/// Default control API address (`--api`).
pub const DEFAULT_API: &str = "127.0.0.1:10810";
/// Default NBD address (`boot --nbd`).
pub const DEFAULT_NBD: &str = "127.0.0.1:10809";

/// firmware-sim: a simulated disk-subsystem controller with time-zero copies,
/// served over NBD and driven through a JSON control API.
#[derive(Debug, Parser)]
#[command(name = "firmware-sim", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr (RUST_LOG selects levels, default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Options every client verb takes.
#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// Control API address (HOST:PORT, http://HOST:PORT, or https://HOST:PORT
    /// for a daemon booted with --api-tls); default: $FIRMWARE_SIM_API, else
    /// the daemon's default address.
    #[arg(
        long,
        value_name = "ADDR",
        env = "FIRMWARE_SIM_API",
        default_value = DEFAULT_API,
        global = true
    )]
    pub api: String,
    /// Machine-readable output: one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// File holding the control API's token (a daemon booted with
    /// --api-token-file); default: $FIRMWARE_SIM_API_TOKEN.
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<std::path::PathBuf>,
    /// PEM file of the certificate (or its CA) to trust for an https:// API;
    /// default: $FIRMWARE_SIM_API_CA, else the public web roots.
    #[arg(long, value_name = "FILE", global = true)]
    pub api_ca: Option<std::path::PathBuf>,
}

impl ClientOpts {
    /// A client for the configured API address (a malformed one is a usage
    /// error), with the token from --token-file, else
    /// $FIRMWARE_SIM_API_TOKEN (an unreadable file is a usage error: QA, a
    /// typo in its name went unnoticed against a daemon without a token),
    /// trusting the CA file of --api-ca, else $FIRMWARE_SIM_API_CA (an
    /// unusable one is an error).
    pub fn client(&self) -> Result<Client, CliError> {
        check_api_address(&self.api).map_err(CliError::Usage)?;
        let token =
            firmware_sim_client::resolve_token(None, self.token_file.as_deref()).map_err(|e| {
                CliError::Usage(format!(
                    "cannot read --token-file {}: {}",
                    e.path.display(),
                    e.source
                ))
            })?;
        let client = Client::new(&self.api).with_token(token);
        match firmware_sim_client::resolve_ca(self.api_ca.as_deref()) {
            Some(ca) => client
                .with_ca_file(&ca)
                .map_err(|e| CliError::Usage(e.to_string())),
            None => Ok(client),
        }
    }
}

/// Checks an `--api` address: `HOST:PORT`, optionally after `http://` or
/// `https://` (QA: `bogus:::`, `127.0.0.1:99999` and `ftp://...` were
/// tried as addresses and reported as a daemon that does not answer).
fn check_api_address(api: &str) -> Result<(), String> {
    let expected = "expected HOST:PORT, e.g. 127.0.0.1:10810, optionally after http:// or https://";
    let rest = match api.split_once("://") {
        Some(("http" | "https", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "--api {api}: {scheme}:// is not an API scheme ({expected})"
            ))
        }
        None => api,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let bad = |why: &str| Err(format!("--api {api}: {why} ({expected})"));
    if rest.contains(['/', '@', '?', '#', ' ']) {
        return bad("not a bare address");
    }
    let Some((host, port)) = rest.rsplit_once(':') else {
        return bad("no port");
    };
    let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
    if host.is_empty()
        || (host.contains(':') && !bracketed)
        || host.contains(['[', ']']) && !bracketed
    {
        return bad(&format!("bad host `{host}`"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => bad(&format!("port `{port}` is not 1-65535")),
    }
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the subsystem daemon: NBD exports and the control API.
    Boot(boot::BootArgs),
    /// Serve one volume over NBD on stdin/stdout (for `nbdsh` connect_command, fuzzing).
    ServeStdio(boot::ServeStdioArgs),
    /// Volumes (NBD exports).
    Volume(volume::VolumeCmd),
    /// Time-zero mappings (FlashCopy maps).
    Map(map::MapCmd),
    /// Cascades of mappings.
    Cascade(cascade::CascadeCmd),
    /// Consistency groups.
    Group(group::GroupCmd),
    /// Backup copy sessions (resource manager).
    Session(session::SessionCmd),
    /// Activity tables.
    Table(table::TableCmd),
    /// Subsystem events: IPL, resource-manager restart, abend, reset.
    Event(event::EventCmd),
    /// Run a scenario file and check its expected outcomes.
    Replay(offline::ReplayArgs),
    /// Seeded fault injection; one summary line per invariant.
    FaultRun(offline::FaultRunArgs),
    /// Offline metadata checker for a data directory.
    Check(offline::CheckArgs),
    /// Benchmarks on this machine's disk: track copy, copy-on-write, NBD.
    Bench(bench::BenchCmd),
    /// Shell completion script on stdout (bash, zsh, fish, elvish, powershell).
    Completions(shell::CompletionsArgs),
    /// The man pages (roff): all on stdout, or one file per page with --dir.
    Man(shell::ManArgs),
    /// The control API's OpenAPI 3 document on stdout (as GET /openapi.json
    /// serves it; docs/openapi.json is a copy).
    Openapi,
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Boot(a) => boot::run(a),
        Command::ServeStdio(a) => boot::run_stdio(a),
        Command::Volume(c) => volume::run(c),
        Command::Map(c) => map::run(c),
        Command::Cascade(c) => cascade::run(c),
        Command::Group(c) => group::run(c),
        Command::Session(c) => session::run(c),
        Command::Table(c) => table::run(c),
        Command::Event(c) => event::run(c),
        Command::Replay(a) => offline::replay(a),
        Command::FaultRun(a) => offline::fault_run(a),
        Command::Check(a) => offline::check(a),
        Command::Bench(c) => bench::run(c),
        Command::Completions(a) => shell::completions(a),
        Command::Man(a) => shell::man(a),
        Command::Openapi => {
            print!("{}", crate::api::openapi::document_json());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_api_address;

    #[test]
    fn api_addresses_are_checked_before_any_request() {
        for ok in [
            "127.0.0.1:10810",
            "localhost:1",
            "http://127.0.0.1:10810/",
            "https://host.example:443",
            "[::1]:10810",
            "http://[::1]:10810",
        ] {
            assert_eq!(check_api_address(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("bogus:::", "bad host"),
            ("127.0.0.1:99999", "not 1-65535"),
            ("127.0.0.1:0", "not 1-65535"),
            ("127.0.0.1", "no port"),
            ("ftp://127.0.0.1:21", "ftp:// is not an API scheme"),
            ("http://127.0.0.1:10810/path", "not a bare address"),
            ("user@127.0.0.1:10810", "not a bare address"),
            (":10810", "bad host"),
        ] {
            let e = check_api_address(bad).unwrap_err();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }
}
