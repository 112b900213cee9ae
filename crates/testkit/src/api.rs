//! [`Api`]: the control API of a booted subsystem as JSON values, with the
//! API's error kinds. It is a thin layer over the typed client
//! ([`firmware_sim_client::Client`], [`Api::client`]), which tests should
//! prefer: it has one method per route and typed answers.

use firmware_sim_client::{Client, ClientError};
use serde_json::Value;

/// An error answer of the control API, or a transport failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with `{"error", "kind"}` (docs/CLI.md lists the kinds:
    /// `unknown_map`, `wrong_state`, `busy`, ...).
    #[error("{message} [{kind}] (HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// Machine-readable kind.
        kind: String,
        /// What was wrong.
        message: String,
    },
    /// Nothing answered, or the answer was not the API's JSON.
    #[error("control API at {addr}: {cause}")]
    Transport {
        /// The address.
        addr: String,
        /// What went wrong.
        cause: String,
    },
}

impl ApiError {
    /// The API's error kind, if it answered.
    pub fn kind(&self) -> Option<&str> {
        match self {
            ApiError::Api { kind, .. } => Some(kind),
            ApiError::Transport { .. } => None,
        }
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api {
                status,
                kind,
                message,
            } => ApiError::Api {
                status,
                kind: kind.to_string(),
                message,
            },
            ClientError::Transport { addr, cause } => ApiError::Transport { addr, cause },
            ClientError::Decode { addr, path, cause } => ApiError::Transport {
                addr,
                cause: format!("{path}: not the expected JSON ({cause})"),
            },
            e @ (ClientError::InvalidId { .. } | ClientError::Timeout(_)) => ApiError::Transport {
                addr: String::new(),
                cause: e.to_string(),
            },
        }
    }
}

/// The control API of one subsystem.
#[derive(Clone, Debug)]
pub struct Api {
    client: Client,
}

impl Api {
    /// A client of `base` (`http://HOST:PORT`).
    pub fn new(base: &str) -> Api {
        Api {
            client: Client::new(base),
        }
    }

    /// The same API, trusting the certificates of the PEM file `ca` for
    /// `https` (a daemon booted with `--api-tls`).
    pub fn with_ca_file(self, ca: &std::path::Path) -> Result<Api, crate::Error> {
        let client = self
            .client
            .with_ca_file(ca)
            .map_err(|e| crate::Error::Boot(e.to_string()))?;
        Ok(Api { client })
    }

    /// `http://HOST:PORT` (or `https://`).
    pub fn base(&self) -> &str {
        self.client.base_url()
    }

    /// The typed client: one method per route, typed answers and
    /// [`firmware_sim_client::ErrorKind`]s.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Value, ApiError> {
        Ok(self.client.get(path)?)
    }

    /// `POST path` with a JSON body (`json!({})` when there is nothing to say).
    pub fn post(&self, path: &str, body: Value) -> Result<Value, ApiError> {
        Ok(self.client.post(path, &body)?)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<Value, ApiError> {
        Ok(self.client.delete(path)?)
    }

    /// A recovery event: `ipl`, `rm-restart`, `abend` (`{"program": P}`),
    /// `reset` (`{"lose_volatile": bool}`); returns its decisions.
    pub fn event(&self, name: &str, body: Value) -> Result<Value, ApiError> {
        self.post(&format!("/events/{name}"), body)
    }
}
