//! [`ApiClient`]: the blocking HTTP client the CLI verbs use. It speaks the
//! control API's JSON and turns its `{error, kind}` answers and connection
//! failures into [`CliError`]s that name the address.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::model::ErrorBody;
use crate::error::CliError;

/// Largest response body accepted (activity tables can be long).
const BODY_LIMIT_BYTES: u64 = 256 << 20;

/// A client of one control API address.
pub struct ApiClient {
    addr: String,
    base: String,
    agent: ureq::Agent,
    /// `Authorization: Bearer ...` value, when the API needs a token.
    auth: Option<String>,
}

impl ApiClient {
    /// A client for `addr` (`HOST:PORT` or `http://HOST:PORT`).
    pub fn new(addr: &str) -> ApiClient {
        let addr = addr.trim_end_matches('/').to_string();
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.clone()
        } else {
            format!("http://{addr}")
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(300)))
            // The control API is a direct connection: http_proxy/HTTP_PROXY
            // in the environment must not reroute it.
            .proxy(None)
            .build();
        ApiClient {
            addr,
            base,
            agent: ureq::Agent::new_with_config(config),
            auth: None,
        }
    }

    /// The same client, sending `token` as a bearer token.
    pub fn with_token(mut self, token: Option<String>) -> ApiClient {
        self.auth = token.map(|t| format!("Bearer {}", t.trim()));
        self
    }

    fn authorize<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.auth {
            Some(a) => r.header("Authorization", a),
            None => r,
        }
    }

    /// `GET path`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let res = self
            .authorize(self.agent.get(format!("{}{path}", self.base)))
            .call();
        self.finish(path, res)
    }

    /// `POST path` with a JSON body.
    pub fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, CliError> {
        let res = self
            .authorize(self.agent.post(format!("{}{path}", self.base)))
            .send_json(body);
        self.finish(path, res)
    }

    /// `DELETE path`.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        // State-changing requests carry JSON (the API refuses others).
        let res = self
            .authorize(self.agent.delete(format!("{}{path}", self.base)))
            .force_send_body()
            .send_json(serde_json::json!({}));
        self.finish(path, res)
    }

    fn read(
        &self,
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, String), CliError> {
        let mut resp = res.map_err(|e| CliError::Unreachable {
            addr: self.addr.clone(),
            cause: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT_BYTES)
            .read_to_string()
            .map_err(|e| CliError::Unreachable {
                addr: self.addr.clone(),
                cause: format!("reading the answer failed: {e}"),
            })?;
        Ok((status, text))
    }

    fn finish<T: DeserializeOwned>(
        &self,
        path: &str,
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, CliError> {
        let (status, text) = self.read(res)?;
        if status >= 400 {
            return Err(self.api_error(status, &text));
        }
        serde_json::from_str(&text).map_err(|e| {
            CliError::Failed(format!(
                "the API at {} answered {path} with unexpected JSON: {e}",
                self.addr
            ))
        })
    }
}

impl ApiClient {
    /// An error answer: the API's `{error, kind}`; anything else means
    /// something other than a firmware-sim control API answered.
    fn api_error(&self, status: u16, text: &str) -> CliError {
        match serde_json::from_str::<ErrorBody>(text) {
            Ok(b) => CliError::Api {
                status,
                kind: b.kind,
                message: b.error,
            },
            Err(_) => CliError::Unreachable {
                addr: self.addr.clone(),
                cause: format!(
                    "the server there answered HTTP {status}{} without a control-API error \
                     (not a firmware-sim control API?)",
                    match text.trim() {
                        "" => String::new(),
                        t => format!(" ({})", t.chars().take(80).collect::<String>()),
                    }
                ),
            },
        }
    }
}
