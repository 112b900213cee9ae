//! [`CliError`]: every way a command fails, each printed as one line on
//! stderr, and the exit status it gives.

/// Exit status for a refused or failed request (API error, bad config).
pub const EXIT_FAILED: i32 = 1;
/// Exit status for a bad command line (clap uses it too).
pub const EXIT_USAGE: i32 = 2;
/// Exit status when the control API cannot be reached.
pub const EXIT_UNREACHABLE: i32 = 3;
/// Exit status when a replay expectation, fault-run invariant or check fails.
pub const EXIT_EXPECTATION: i32 = 4;

/// Why a command failed; `Display` is the one-line message.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Nothing answered at the API address.
    #[error("cannot reach the control API at {addr} (is `firmware-sim boot` running?): {cause}")]
    Unreachable {
        /// The address tried.
        addr: String,
        /// What the connection attempt said.
        cause: String,
    },
    /// The API answered with an error.
    #[error("{message} [{kind}]")]
    Api {
        /// HTTP status.
        status: u16,
        /// Machine-readable kind (`unknown_volume`, `bad_extent`, `wrong_state`, ...).
        kind: String,
        /// What was wrong.
        message: String,
    },
    /// A bad argument found before anything was sent.
    #[error("{0}")]
    Usage(String),
    /// A local failure (config, data directory, sockets).
    #[error("{0}")]
    Failed(String),
    /// A replay expectation, fault-run invariant or offline check failed.
    #[error("{0}")]
    Expectation(String),
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Unreachable { .. } => EXIT_UNREACHABLE,
            CliError::Api { .. } | CliError::Failed(_) => EXIT_FAILED,
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Expectation(_) => EXIT_EXPECTATION,
        }
    }

    /// The machine-readable kind: the API's (`unknown_map`, `wrong_state`,
    /// ...) or `unreachable`, `usage`, `failed`, `expectation`.
    pub fn kind(&self) -> &str {
        match self {
            CliError::Unreachable { .. } => "unreachable",
            CliError::Api { kind, .. } => kind,
            CliError::Usage(_) => "usage",
            CliError::Failed(_) => "failed",
            CliError::Expectation(_) => "expectation",
        }
    }

    /// The error as the JSON document `--json` prints on stdout:
    /// `{"error": message, "kind": kind, "exit": status}` (and the HTTP
    /// status of an API error).
    pub fn to_json(&self) -> serde_json::Value {
        let message = match self {
            CliError::Api { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let mut v = serde_json::json!({
            "error": message,
            "kind": self.kind(),
            "exit": self.exit_code(),
        });
        if let CliError::Api { status, .. } = self {
            v["status"] = serde_json::json!(status);
        }
        v
    }

    /// A local failure with context.
    pub fn failed(context: impl std::fmt::Display, cause: impl std::fmt::Display) -> Self {
        CliError::Failed(format!("{context}: {cause}"))
    }
}

/// A client failure as the CLI reports it: the API's errors keep their kind
/// and status, transport failures are `unreachable` (exit 3), a bad id is a
/// usage error (exit 2), an unreadable answer or a wait that timed out is a
/// failure (exit 1).
impl From<firmware_sim_client::ClientError> for CliError {
    fn from(e: firmware_sim_client::ClientError) -> Self {
        use firmware_sim_client::ClientError as E;
        match e {
            E::Api {
                status,
                kind,
                message,
            } => CliError::Api {
                status,
                kind: kind.to_string(),
                message,
            },
            // Something answered, but its certificate is not trusted.
            E::Transport { addr, cause } if cause.starts_with("TLS: ") => {
                CliError::Failed(format!("cannot talk to the control API at {addr}: {cause}"))
            }
            E::Transport { addr, mut cause } => {
                // QA: pointed at the wrong kind of port, the cause alone
                // did not say what to change.
                if cause.contains("invalid HTTP version") {
                    cause.push_str(
                        " (what answered does not speak plain HTTP: an API booted with \
                         --api-tls wants https://HOST:PORT and --api-ca; an NBD port is not \
                         the control API, whose address the boot banner's `control API:` line \
                         gives)",
                    );
                } else if !addr.starts_with("https://") && cause.contains("Peer disconnected") {
                    cause.push_str(
                        " (an API booted with --api-tls closes plain HTTP: give \
                         https://HOST:PORT and --api-ca)",
                    );
                }
                CliError::Unreachable { addr, cause }
            }
            e @ E::InvalidId { .. } => CliError::Usage(e.to_string()),
            e @ (E::Decode { .. } | E::Timeout(_)) => CliError::Failed(e.to_string()),
        }
    }
}
