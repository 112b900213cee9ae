//! [`Api`]: a small client of the control API returning JSON values, with
//! the API's error kinds.

use std::time::Duration;

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

/// The control API of one subsystem.
#[derive(Clone)]
pub struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    /// A client of `base` (`http://HOST:PORT`).
    pub fn new(base: &str) -> Api {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .proxy(None)
            .build();
        Api {
            base: base.trim_end_matches('/').to_string(),
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// `http://HOST:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn finish(
        &self,
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, ApiError> {
        let transport = |cause: String| ApiError::Transport {
            addr: self.base.clone(),
            cause,
        };
        let mut resp = res.map_err(|e| transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| transport(e.to_string()))?;
        let doc: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| transport(format!("not JSON ({e}): {text}")))?
        };
        if status >= 400 {
            return Err(ApiError::Api {
                status,
                kind: doc["kind"].as_str().unwrap_or("unknown").to_string(),
                message: doc["error"].as_str().unwrap_or(&text).to_string(),
            });
        }
        Ok(doc)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.finish(self.agent.get(format!("{}{path}", self.base)).call())
    }

    /// `POST path` with a JSON body (`json!({})` when there is nothing to say).
    pub fn post(&self, path: &str, body: Value) -> Result<Value, ApiError> {
        self.finish(
            self.agent
                .post(format!("{}{path}", self.base))
                .send_json(body),
        )
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<Value, ApiError> {
        self.finish(
            self.agent
                .delete(format!("{}{path}", self.base))
                .force_send_body()
                .send_json(serde_json::json!({})),
        )
    }

    /// A recovery event: `ipl`, `rm-restart`, `abend` (`{"program": P}`),
    /// `reset` (`{"lose_volatile": bool}`); returns its decisions.
    pub fn event(&self, name: &str, body: Value) -> Result<Value, ApiError> {
        self.post(&format!("/events/{name}"), body)
    }
}
