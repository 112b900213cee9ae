//! [`Client`]: the blocking client of one control API address, one typed
//! method per route, plus the polling waits the CLI's `map wait` and
//! `session wait` use.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ClientError, ErrorKind};
use crate::model::{
    ActionDone, CascadeInfo, CreateGroup, CreateMap, CreateVolume, ErrorBody, EventReport,
    EventRequest, ForceFlag, GroupInfo, GroupMember, Health, MapInfo, RestoreRequest, SessionInfo,
    StartFlags, StartSession, TableEntryInfo, TerminateSession, VolumeInfo,
};

/// Largest response body accepted (activity tables can be long).
const BODY_LIMIT_BYTES: u64 = 256 << 20;

/// The environment variable holding the control API's token.
pub const TOKEN_ENV: &str = "FIRMWARE_SIM_API_TOKEN";

/// The environment variable naming the PEM file of the certificate (or CA)
/// to trust for an `https://` control API (`boot --api-tls`).
pub const CA_ENV: &str = "FIRMWARE_SIM_API_CA";

/// A CA file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot use CA file {}: {reason}", path.display())]
pub struct CaError {
    /// The file.
    pub path: PathBuf,
    /// Why (unreadable, or no PEM certificate in it).
    pub reason: String,
}

/// How often the waits ([`Client::wait_map`], [`Client::wait_session`]) ask.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

type Result<T> = std::result::Result<T, ClientError>;

/// A token file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read token file {}: {source}", path.display())]
pub struct TokenError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// The token to send, the way the CLI finds it: `explicit` if given, else
/// the contents of `file` if given, else `$FIRMWARE_SIM_API_TOKEN`. Surrounding
/// white space is dropped and an empty token is no token.
pub fn resolve_token(
    explicit: Option<String>,
    file: Option<&Path>,
) -> std::result::Result<Option<String>, TokenError> {
    let token = match (explicit, file) {
        (Some(t), _) => Some(t),
        (None, Some(p)) => Some(std::fs::read_to_string(p).map_err(|source| TokenError {
            path: p.to_path_buf(),
            source,
        })?),
        (None, None) => std::env::var(TOKEN_ENV).ok(),
    };
    Ok(token
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

/// The base URL of a control API given as `HOST:PORT` (plain HTTP),
/// `http://HOST:PORT` or `https://HOST:PORT`, without a trailing `/`.
pub fn base_url(addr: &str) -> String {
    let addr = addr.trim_end_matches('/');
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// The certificates of a PEM file, to trust for an `https` API (the CA
/// that signed a daemon's `--tls-cert`, or that certificate itself).
pub fn load_ca_file(
    ca: &Path,
) -> std::result::Result<Vec<ureq::tls::Certificate<'static>>, CaError> {
    let bad = |reason: String| CaError {
        path: ca.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(ca).map_err(|e| bad(e.to_string()))?;
    let mut roots = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => roots.push(c),
            Ok(_) => {}
            Err(e) => return Err(bad(format!("not PEM: {e}"))),
        }
    }
    if roots.is_empty() {
        return Err(bad("no CERTIFICATE block in it".into()));
    }
    Ok(roots)
}

/// What a failed connection says; a TLS failure (most often a certificate
/// nobody told the client to trust) starts with `TLS: ` and says how to fix it.
fn transport_cause(e: &ureq::Error) -> String {
    let text = e.to_string();
    let tls = matches!(e, ureq::Error::Tls(_) | ureq::Error::Rustls(_))
        || text.contains("peer certificate")
        || text.contains("HandshakeFailure");
    if tls {
        format!(
            "TLS: {text} (an https API's certificate must be trusted: --api-ca FILE or \
             ${CA_ENV} naming the PEM of the certificate or of its CA)"
        )
    } else {
        text
    }
}

/// The CA file to trust for an `https` API, the way the CLI finds it:
/// `file` if given, else `$FIRMWARE_SIM_API_CA` if set and not empty.
pub fn resolve_ca(file: Option<&Path>) -> Option<PathBuf> {
    file.map(Path::to_path_buf).or_else(|| {
        std::env::var_os(CA_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// Checks that a user-given id or name can be put into a URL path as it is.
pub fn check_id(id: &str) -> Result<&str> {
    if !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
    {
        Ok(id)
    } else {
        Err(ClientError::InvalidId { id: id.to_string() })
    }
}

/// A subsystem event (`POST /events/{name}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// IPL: the daemon's (subsystem and host restart, tables replayed), or
    /// with `host` that host's IPL alone (the subsystem keeps running).
    Ipl {
        /// The host that IPLs alone.
        host: Option<String>,
    },
    /// A host's resource manager restarts (default: the daemon's host).
    RmRestart {
        /// The host.
        host: Option<String>,
    },
    /// A backup program ends abnormally.
    Abend {
        /// The program.
        program: String,
        /// The host it ran on (default: the daemon's host).
        host: Option<String>,
    },
    /// Controller warmstart.
    Reset {
        /// Lose volatile state.
        lose_volatile: bool,
    },
}

impl Event {
    /// The route's name (`ipl`, `rm-restart`, `abend`, `reset`).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Ipl { .. } => "ipl",
            Event::RmRestart { .. } => "rm-restart",
            Event::Abend { .. } => "abend",
            Event::Reset { .. } => "reset",
        }
    }

    /// The request body.
    pub fn request(&self) -> EventRequest {
        match self.clone() {
            Event::Ipl { host } | Event::RmRestart { host } => EventRequest {
                host,
                ..EventRequest::default()
            },
            Event::Abend { program, host } => EventRequest {
                program: Some(program),
                host,
                lose_volatile: false,
            },
            Event::Reset { lose_volatile } => EventRequest {
                lose_volatile,
                ..EventRequest::default()
            },
        }
    }
}

/// A client of one control API address. Cloning is cheap (connections are
/// shared).
#[derive(Clone)]
pub struct Client {
    addr: String,
    base: String,
    agent: ureq::Agent,
    /// `Authorization: Bearer ...` value, when the API needs a token.
    auth: Option<String>,
    /// The CA file trusted for `https`, if one was given.
    roots_from: Option<PathBuf>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("token", &self.auth.is_some())
            .field("ca", &self.roots_from)
            .finish()
    }
}

impl Client {
    /// A client for `addr` (`HOST:PORT`, `http://HOST:PORT` or
    /// `https://HOST:PORT`), without a token; an `https` API's certificate
    /// is checked against the public web roots (see [`Client::with_ca_file`]
    /// for a private CA or a self-signed certificate).
    pub fn new(addr: &str) -> Client {
        Self::build(addr, None)
    }

    fn build(addr: &str, roots: Option<Vec<ureq::tls::Certificate<'static>>>) -> Client {
        let addr = addr.trim_end_matches('/').to_string();
        let base = base_url(&addr);
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(300)))
            // Well below the daemon's 20 s keep-alive (its header read
            // timeout): a pooled connection is never reused just as the
            // daemon closes it.
            .max_idle_age(Duration::from_secs(5))
            // The control API is a direct connection: http_proxy/HTTP_PROXY
            // in the environment must not reroute it.
            .proxy(None);
        if let Some(roots) = roots {
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                    .build(),
            );
        }
        Client {
            addr,
            base,
            agent: ureq::Agent::new_with_config(config.build()),
            auth: None,
            roots_from: None,
        }
    }

    /// The same client, trusting only the certificates in the PEM file
    /// `ca` for an `https://` API: the CA that signed the daemon's
    /// `--tls-cert`, or that certificate itself when it is self-signed.
    pub fn with_ca_file(self, ca: &Path) -> std::result::Result<Client, CaError> {
        let roots = load_ca_file(ca)?;
        let mut c = Self::build(&self.addr, Some(roots));
        c.auth = self.auth;
        c.roots_from = Some(ca.to_path_buf());
        Ok(c)
    }

    /// The same client, sending `token` (trimmed; empty is none) as a bearer token.
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.auth = token
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .map(|t| format!("Bearer {t}"));
        self
    }

    /// The address as given (`HOST:PORT` or a URL).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The base URL (`http://HOST:PORT` or `https://HOST:PORT`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn authorize<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.auth {
            Some(a) => r.header("Authorization", a),
            None => r,
        }
    }

    /// `GET path`, decoded as `T`. For routes this client has no method
    /// for yet; prefer the typed methods.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let res = self
            .authorize(self.agent.get(format!("{}{path}", self.base)))
            .call();
        self.finish(path, res)
    }

    /// `POST path` with a JSON body, decoded as `T` (see [`Client::get`]).
    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        let res = self
            .authorize(self.agent.post(format!("{}{path}", self.base)))
            .send_json(body);
        self.finish(path, res)
    }

    /// `DELETE path`, decoded as `T` (see [`Client::get`]).
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        // State-changing requests carry JSON (the API refuses others).
        let res = self
            .authorize(self.agent.delete(format!("{}{path}", self.base)))
            .force_send_body()
            .send_json(serde_json::json!({}));
        self.finish(path, res)
    }

    fn read(
        &self,
        res: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, String)> {
        let transport = |cause: String| ClientError::Transport {
            addr: self.addr.clone(),
            cause,
        };
        let mut resp = res.map_err(|e| transport(transport_cause(&e)))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT_BYTES)
            .read_to_string()
            .map_err(|e| transport(format!("reading the answer failed: {e}")))?;
        Ok((status, text))
    }

    fn finish<T: DeserializeOwned>(
        &self,
        path: &str,
        res: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T> {
        let (status, text) = self.read(res)?;
        if status >= 400 {
            return Err(api_error(&self.addr, status, &text));
        }
        // An empty answer reads as JSON `null`.
        let text = if text.trim().is_empty() {
            "null"
        } else {
            &text
        };
        serde_json::from_str(text).map_err(|e| ClientError::Decode {
            addr: self.addr.clone(),
            path: path.to_string(),
            cause: e.to_string(),
        })
    }

    /// `GET path` as text (the Prometheus metrics).
    fn get_text(&self, path: &str) -> Result<String> {
        let res = self
            .authorize(self.agent.get(format!("{}{path}", self.base)))
            .call();
        let (status, text) = self.read(res)?;
        if status >= 400 {
            return Err(api_error(&self.addr, status, &text));
        }
        Ok(text)
    }
}

/// From async code (feature `async`): the calls block, so they run on
/// tokio's blocking pool.
#[cfg(feature = "async")]
impl Client {
    /// Runs `f` with (a clone of) this client on tokio's blocking pool:
    /// `api.spawn(|c| c.map("nightly")).await`. Needs a tokio runtime.
    pub async fn spawn<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Client) -> Result<T> + Send + 'static,
    {
        let c = self.clone();
        tokio::task::spawn_blocking(move || f(&c))
            .await
            .map_err(|e| ClientError::Transport {
                addr: self.addr.clone(),
                cause: format!("the blocking task of the call failed: {e}"),
            })?
    }
}

/// An error answer: the API's `{error, kind}`; anything else means something
/// other than a firmware-sim control API answered.
pub(crate) fn api_error(addr: &str, status: u16, text: &str) -> ClientError {
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(b) => ClientError::Api {
            status,
            kind: ErrorKind::parse(&b.kind),
            message: b.error,
        },
        Err(_) => ClientError::Transport {
            addr: addr.to_string(),
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

/// Health, metrics and the API description.
impl Client {
    /// `GET /health` (answered without a token).
    pub fn health(&self) -> Result<Health> {
        self.get("/health")
    }

    /// `GET /events`: the daemon's recent events, oldest first.
    pub fn recent_events(&self) -> Result<Vec<crate::model::RecentEvent>> {
        self.get("/events")
    }

    /// `GET /metrics`: Prometheus text.
    pub fn metrics(&self) -> Result<String> {
        self.get_text("/metrics")
    }

    /// `GET /openapi.json`: the OpenAPI 3 document of this API.
    pub fn openapi(&self) -> Result<serde_json::Value> {
        self.get("/openapi.json")
    }
}

/// Volumes.
impl Client {
    /// `GET /volumes`.
    pub fn volumes(&self) -> Result<Vec<VolumeInfo>> {
        self.get("/volumes")
    }

    /// `GET /volumes/{id}`.
    pub fn volume(&self, id: &str) -> Result<VolumeInfo> {
        self.get(&format!("/volumes/{}", check_id(id)?))
    }

    /// `POST /volumes`.
    pub fn create_volume(&self, req: &CreateVolume) -> Result<VolumeInfo> {
        self.post("/volumes", req)
    }

    /// `DELETE /volumes/{id}`.
    pub fn delete_volume(&self, id: &str) -> Result<ActionDone> {
        self.delete(&format!("/volumes/{}", check_id(id)?))
    }
}

/// Mappings and cascades. A map is named by its id or its name.
impl Client {
    /// `GET /mappings`.
    pub fn maps(&self) -> Result<Vec<MapInfo>> {
        self.get("/mappings")
    }

    /// `GET /mappings/{id}`.
    pub fn map(&self, id: &str) -> Result<MapInfo> {
        self.get(&format!("/mappings/{}", check_id(id)?))
    }

    /// The numeric id of map `id_or_name` (asks the API only for a name).
    pub fn map_id(&self, id_or_name: &str) -> Result<u32> {
        match id_or_name.parse::<u32>() {
            Ok(id) => Ok(id),
            Err(_) => Ok(self.map(id_or_name)?.id),
        }
    }

    /// `POST /mappings`.
    pub fn create_map(&self, req: &CreateMap) -> Result<MapInfo> {
        self.post("/mappings", req)
    }

    /// `POST /mappings/{id}/start`: its point in time is now (`restore`: the
    /// target may be the source of active maps).
    pub fn start_map(&self, id: &str, restore: bool) -> Result<MapInfo> {
        self.post(
            &format!("/mappings/{}/start", check_id(id)?),
            &StartFlags { restore },
        )
    }

    /// `POST /mappings/{id}/prepare`.
    pub fn prepare_map(&self, id: &str) -> Result<MapInfo> {
        self.post(
            &format!("/mappings/{}/prepare", check_id(id)?),
            &ForceFlag::default(),
        )
    }

    /// `POST /mappings/{id}/resume`: a suspended map copies again (or
    /// stops, if a stop was asked while it was suspended).
    pub fn resume_map(&self, id: &str) -> Result<MapInfo> {
        self.post(
            &format!("/mappings/{}/resume", check_id(id)?),
            &ForceFlag::default(),
        )
    }

    /// `POST /mappings/{id}/stop` (`force`: at once, dependants stop too).
    pub fn stop_map(&self, id: &str, force: bool) -> Result<MapInfo> {
        self.post(
            &format!("/mappings/{}/stop", check_id(id)?),
            &ForceFlag { force },
        )
    }

    /// `POST /mappings/{id}/restore`: the reverse map, started; answers it.
    pub fn restore_map(&self, id: &str, copy_rate: Option<u8>) -> Result<MapInfo> {
        self.post(
            &format!("/mappings/{}/restore", check_id(id)?),
            &RestoreRequest { copy_rate },
        )
    }

    /// `DELETE /mappings/{id}?force=...`.
    pub fn delete_map(&self, id: &str, force: bool) -> Result<ActionDone> {
        self.delete(&format!("/mappings/{}?force={force}", check_id(id)?))
    }

    /// `GET /cascades`.
    pub fn cascades(&self) -> Result<Vec<CascadeInfo>> {
        self.get("/cascades")
    }

    /// Polls map `id` until it is copied or stopped ([`MapInfo::settled`]),
    /// calling `on_poll` with each answer. Refused with `wrong_state` when
    /// there is nothing to wait for (never started) or the wait would never
    /// end (a copying map with copy rate 0); [`ClientError::Timeout`] after
    /// `timeout`.
    pub fn wait_map(
        &self,
        id: &str,
        timeout: Option<Duration>,
        mut on_poll: impl FnMut(&MapInfo),
    ) -> Result<MapInfo> {
        let started = Instant::now();
        let mut first = true;
        loop {
            let m = self.map(id)?;
            on_poll(&m);
            // Idle below 100 % before anything ran: nothing to wait for.
            if first && m.state == "idle_or_copied" && m.progress_percent < 100 {
                return Err(ClientError::refused(
                    409,
                    ErrorKind::WrongState,
                    format!(
                        "map {id} is not started (idle_or_copied at {}%: never started, or \
                         stopped before its copy finished), so there is nothing to wait for; \
                         start it with `firmware-sim map start {id}`",
                        m.progress_percent
                    ),
                ));
            }
            first = false;
            if m.settled() {
                return Ok(m);
            }
            if m.state == "copying" && (m.copy_type == "nocopy" || m.copy_rate == 0) {
                return Err(ClientError::refused(
                    409,
                    ErrorKind::WrongState,
                    format!(
                        "map {id} is a {} map with copy rate {}: it copies only on write and \
                         never finishes; stop it, or use a full map with --copy-rate",
                        m.copy_type, m.copy_rate
                    ),
                ));
            }
            if let Some(t) = timeout {
                if started.elapsed() >= t {
                    return Err(ClientError::Timeout(format!(
                        "map {id} still {} ({}%) after {}s{}",
                        m.state,
                        m.progress_percent,
                        t.as_secs(),
                        m.copy_stalled
                            .as_ref()
                            .map(|why| format!("; its copy is stalled: {why}"))
                            .unwrap_or_default()
                    )));
                }
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

/// Consistency groups. A group is named by its id or its name.
impl Client {
    /// `GET /groups`.
    pub fn groups(&self) -> Result<Vec<GroupInfo>> {
        self.get("/groups")
    }

    /// `POST /groups`.
    pub fn create_group(&self, req: &CreateGroup) -> Result<GroupInfo> {
        self.post("/groups", req)
    }

    /// `POST /groups/{id}/start`: every member at one instant.
    pub fn start_group(&self, id: &str, restore: bool) -> Result<Vec<MapInfo>> {
        self.post(
            &format!("/groups/{}/start", check_id(id)?),
            &StartFlags { restore },
        )
    }

    /// `POST /groups/{id}/stop`.
    pub fn stop_group(&self, id: &str, force: bool) -> Result<Vec<MapInfo>> {
        self.post(
            &format!("/groups/{}/stop", check_id(id)?),
            &ForceFlag { force },
        )
    }

    /// `DELETE /groups/{id}?force=...` (`force`: its maps leave it first).
    pub fn delete_group(&self, id: &str, force: bool) -> Result<ActionDone> {
        self.delete(&format!("/groups/{}?force={force}", check_id(id)?))
    }

    /// `POST /groups/{id}/maps`: the members afterwards.
    pub fn add_group_map(&self, id: &str, map: u32) -> Result<Vec<MapInfo>> {
        self.post(
            &format!("/groups/{}/maps", check_id(id)?),
            &GroupMember { map },
        )
    }

    /// `DELETE /groups/{id}/maps/{map}`: the members afterwards.
    pub fn remove_group_map(&self, id: &str, map: u32) -> Result<Vec<MapInfo>> {
        self.delete(&format!("/groups/{}/maps/{map}", check_id(id)?))
    }
}

/// Backup copy sessions.
impl Client {
    /// `GET /sessions`.
    pub fn sessions(&self) -> Result<Vec<SessionInfo>> {
        self.get("/sessions")
    }

    /// `GET /sessions?local=true`: what the daemon's own subsystem's tables
    /// say, asking no peer (for use while a peer does not answer: a spanning
    /// session shows only its parts there, in the state those rows decide).
    pub fn sessions_local(&self) -> Result<Vec<SessionInfo>> {
        self.get("/sessions?local=true")
    }

    /// Session `id` (from `GET /sessions`); `unknown_session` if there is none.
    pub fn session(&self, id: &str) -> Result<SessionInfo> {
        self.sessions()?
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(|| {
                ClientError::refused(
                    404,
                    ErrorKind::UnknownSession,
                    format!("unknown session {id} (`firmware-sim session list` shows them)"),
                )
            })
    }

    /// `POST /sessions`.
    pub fn start_session(&self, req: &StartSession) -> Result<SessionInfo> {
        self.post("/sessions", req)
    }

    /// `POST /sessions/{id}/release`: logically complete.
    pub fn release_session(&self, id: &str) -> Result<SessionInfo> {
        self.post(
            &format!("/sessions/{}/release", check_id(id)?),
            &ForceFlag::default(),
        )
    }

    /// `POST /sessions/{id}/complete` (its copy has finished).
    pub fn complete_session(&self, id: &str) -> Result<SessionInfo> {
        self.post(
            &format!("/sessions/{}/complete", check_id(id)?),
            &ForceFlag::default(),
        )
    }

    /// `POST /sessions/{id}/terminate`.
    pub fn terminate_session(&self, id: &str, reason: Option<String>) -> Result<SessionInfo> {
        self.post(
            &format!("/sessions/{}/terminate", check_id(id)?),
            &TerminateSession { reason },
        )
    }

    /// Polls session `id` until its copy has finished on every subsystem
    /// (or it is completed), calling `on_poll` with each answer. A
    /// terminated session is `wrong_state` (its copy will never finish);
    /// without a timeout, so is a session whose maps here all copy at rate
    /// 0; [`ClientError::Timeout`] after `timeout`.
    pub fn wait_session(
        &self,
        id: &str,
        timeout: Option<Duration>,
        mut on_poll: impl FnMut(&SessionInfo),
    ) -> Result<SessionInfo> {
        let started = Instant::now();
        let mut first = timeout.is_none();
        loop {
            let s = self.session(id)?;
            on_poll(&s);
            match s.state.as_str() {
                "completed" => return Ok(s),
                "terminated" => {
                    return Err(ClientError::refused(
                        409,
                        ErrorKind::WrongState,
                        format!(
                            "session {id} was terminated ({}): its copy will not finish; start \
                             a new session for the backup",
                            s.reason.as_deref().unwrap_or("unknown reason")
                        ),
                    ))
                }
                _ => {}
            }
            if let Some(p) = s.parts.iter().find(|p| p.broken.is_some()) {
                return Err(ClientError::refused(
                    409,
                    ErrorKind::WrongState,
                    format!(
                        "session {id}: its physical session {:02X} on {} is {}, so its image is \
                         lost and its copy will not finish; `session terminate {id}` ends it \
                         (so does the next event)",
                        p.phys,
                        p.subsystem,
                        p.broken.as_deref().unwrap_or_default()
                    ),
                ));
            }
            if s.copied() {
                return Ok(s);
            }
            if first && self.session_copies_nothing(id)? {
                return Err(ClientError::refused(
                    409,
                    ErrorKind::WrongState,
                    format!(
                        "session {id} copies at rate 0: only what writes touch is copied, so \
                         its copy may never finish; wait with --timeout, or start it with \
                         --copy-rate"
                    ),
                ));
            }
            first = false;
            if let Some(t) = timeout {
                if started.elapsed() >= t {
                    return Err(ClientError::Timeout(format!(
                        "session {id} still {} ({:.1}% copied) after {}s",
                        s.state,
                        s.progress_percent.unwrap_or(0.0),
                        t.as_secs()
                    )));
                }
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Whether every map of session `id` on this daemon copies at rate 0
    /// (and there is at least one).
    fn session_copies_nothing(&self, id: &str) -> Result<bool> {
        let groups = self.groups()?;
        let Some(g) = groups.iter().find(|g| g.session.as_deref() == Some(id)) else {
            return Ok(false);
        };
        let rates: Vec<u8> = self
            .maps()?
            .iter()
            .filter(|m| g.maps.contains(&m.id))
            .map(|m| m.copy_rate)
            .collect();
        Ok(!rates.is_empty() && rates.iter().all(|r| *r == 0))
    }
}

/// Events and activity tables.
impl Client {
    /// `POST /events/{name}`.
    pub fn event(&self, event: &Event) -> Result<EventReport> {
        self.post(&format!("/events/{}", event.name()), &event.request())
    }

    /// `GET /tables` (the subsystem's table) or `GET /tables?volume=VOL`.
    pub fn table(&self, volume: Option<&str>) -> Result<Vec<TableEntryInfo>> {
        match volume {
            Some(v) => self.get(&format!("/tables?volume={}", check_id(v)?)),
            None => self.get("/tables"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_document_becomes_an_api_error_with_its_kind() {
        let e = api_error(
            "127.0.0.1:1",
            404,
            r#"{"error":"unknown map 9 (no map has that id or name)","kind":"unknown_map"}"#,
        );
        match e {
            ClientError::Api {
                status,
                kind,
                message,
            } => {
                assert_eq!(status, 404);
                assert_eq!(kind, ErrorKind::UnknownMap);
                assert_eq!(message, "unknown map 9 (no map has that id or name)");
            }
            other => panic!("expected an API error, got {other:?}"),
        }
        let e = api_error("a", 409, r#"{"error":"x","kind":"frozen_solid"}"#);
        assert_eq!(e.kind(), Some(&ErrorKind::Other("frozen_solid".into())));
    }

    #[test]
    fn an_error_answer_that_is_not_the_apis_is_a_transport_error() {
        let e = api_error("127.0.0.1:8080", 502, "<html>Bad Gateway</html>");
        match &e {
            ClientError::Transport { addr, cause } => {
                assert_eq!(addr, "127.0.0.1:8080");
                assert!(
                    cause.contains("HTTP 502 (<html>Bad Gateway</html>)"),
                    "{cause}"
                );
                assert!(cause.contains("not a firmware-sim control API?"), "{cause}");
            }
            other => panic!("expected a transport error, got {other:?}"),
        }
        // A JSON body without `kind` is not the API's either.
        let e = api_error("a", 500, r#"{"error":"boom"}"#);
        assert!(matches!(e, ClientError::Transport { .. }), "{e:?}");
        let e = api_error("a", 404, "");
        assert!(
            e.to_string().ends_with(
                "answered HTTP 404 without a control-API error (not a firmware-sim control API?)"
            ),
            "{e}"
        );
    }

    #[test]
    fn ids_that_would_change_the_route_are_refused_before_sending() {
        assert_eq!(check_id("FB00").unwrap(), "FB00");
        assert_eq!(check_id("nightly-1.2_a:b").unwrap(), "nightly-1.2_a:b");
        for bad in ["", "a/b", "../x", "a b", "a?force=true", "é"] {
            let e = check_id(bad).unwrap_err();
            assert!(
                matches!(&e, ClientError::InvalidId { id } if id == bad),
                "{bad}: {e:?}"
            );
        }
        // The typed methods check before any connection is tried.
        let c = Client::new("127.0.0.1:1");
        assert!(matches!(
            c.start_map("a/b", false),
            Err(ClientError::InvalidId { .. })
        ));
    }

    #[test]
    fn a_refused_connection_is_a_transport_error_naming_the_address() {
        // Port 1 on loopback: nothing listens there.
        let c = Client::new("http://127.0.0.1:1/");
        assert_eq!(c.addr(), "http://127.0.0.1:1");
        match c.health() {
            Err(ClientError::Transport { addr, .. }) => assert_eq!(addr, "http://127.0.0.1:1"),
            other => panic!("expected a transport error, got {other:?}"),
        }
    }

    #[test]
    fn tokens_come_from_the_option_else_the_file_else_nowhere_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cret\n").unwrap();
        assert_eq!(
            resolve_token(Some("given".into()), Some(&file)).unwrap(),
            Some("given".into())
        );
        assert_eq!(
            resolve_token(None, Some(&file)).unwrap(),
            Some("s3cret".into())
        );
        std::fs::write(&file, "\n").unwrap();
        assert_eq!(resolve_token(None, Some(&file)).unwrap(), None);
        let missing = dir.path().join("missing");
        let e = resolve_token(None, Some(&missing)).unwrap_err();
        assert_eq!(e.path, missing);
        assert_eq!(resolve_token(Some("  ".into()), None).unwrap(), None);
    }

    #[cfg(feature = "async")]
    #[test]
    fn spawn_runs_the_call_on_the_blocking_pool_and_keeps_its_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let c = Client::new("127.0.0.1:1");
        let r = rt.block_on(c.spawn(|c| c.volumes()));
        assert!(matches!(r, Err(ClientError::Transport { .. })), "{r:?}");
        let r = rt.block_on(c.spawn(|c| c.map("a/b")));
        assert!(matches!(r, Err(ClientError::InvalidId { .. })), "{r:?}");
    }

    #[test]
    fn events_name_their_route_and_carry_their_fields() {
        let e = Event::Abend {
            program: "DFDSS".into(),
            host: Some("SYS2".into()),
        };
        assert_eq!(e.name(), "abend");
        let r = e.request();
        assert_eq!(r.program.as_deref(), Some("DFDSS"));
        assert_eq!(r.host.as_deref(), Some("SYS2"));
        let r = Event::Reset {
            lose_volatile: true,
        }
        .request();
        assert!(r.lose_volatile && r.program.is_none());
        assert_eq!(Event::RmRestart { host: None }.name(), "rm-restart");
        assert_eq!(Event::Ipl { host: None }.name(), "ipl");
    }
}
