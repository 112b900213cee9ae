//! [`RemotePort`]: the resource manager's port to a peer daemon's subsystem.

use std::time::{Duration, Instant};

use activity_table::{ActivityEntry, NewEntry, PhysSessionId, SessionId};
use geometry::DeviceModel;
use parking_lot::Mutex;
use resource_manager::{CopyPair, HeldSession, PhysicalSession, PortError, SubsystemPort};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::routes::{EstablishBody, FreezeBody, IdBody, PhysBody, ThawBody, WithdrawBody};

/// How long one call to a peer may take (connect + answer), unless
/// `--peer-timeout` says otherwise.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to a peer may take (at most the call timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After a call to a peer timed out, further calls fail at once for this
/// long (or the call timeout, if shorter) instead of each waiting out the
/// timeout (QA: with a hung peer an IPL, a queued start and a list each
/// waited 30 s, 90 s in all).
const SILENT_FOR: Duration = Duration::from_secs(10);

fn silent_for() -> Duration {
    SILENT_FOR.min(call_timeout())
}

static PEER_TIMEOUT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// Sets how long one call to a peer may take (once, at boot, from
/// `--peer-timeout`).
pub fn set_peer_timeout(t: Duration) {
    let _ = PEER_TIMEOUT.set(t);
}

fn call_timeout() -> Duration {
    PEER_TIMEOUT.get().copied().unwrap_or(CALL_TIMEOUT)
}

/// The bearer token this daemon sends its peers (its own `--api-token-file`:
/// daemons that share sessions share a token).
static PEER_TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

static PEER_ROOTS: std::sync::OnceLock<Vec<ureq::tls::Certificate<'static>>> =
    std::sync::OnceLock::new();

/// Sets the certificates trusted for peers served over `https://` (once, at
/// boot, from `--peer-ca`); without them the public web roots are used.
pub fn set_peer_roots(roots: Vec<ureq::tls::Certificate<'static>>) {
    let _ = PEER_ROOTS.set(roots);
}

/// Sets the token sent to peers (once, at boot).
pub fn set_peer_token(token: &str) {
    let _ = PEER_TOKEN.set(token.to_string());
}

fn authorize<B>(r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
    match PEER_TOKEN.get() {
        Some(t) => r.header("Authorization", &format!("Bearer {t}")),
        None => r,
    }
}

/// A peer subsystem reached over its daemon's control API.
pub struct RemotePort {
    id: String,
    addr: String,
    base: String,
    agent: ureq::Agent,
    /// The peer answered `/port/id` with `id` (checked once per process).
    verified: Mutex<bool>,
    /// When a call last timed out, until one is answered (see `SILENT_FOR`).
    timed_out_at: Mutex<Option<Instant>>,
}

impl RemotePort {
    /// A port to subsystem `id` served by the daemon whose control API is at
    /// `addr` (`HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT`).
    /// Nothing is contacted until the first call.
    pub fn new(id: &str, addr: &str) -> RemotePort {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT.min(call_timeout())))
            .timeout_global(Some(call_timeout()))
            // Well below a peer's 20 s keep-alive (api/serve.rs): a pooled
            // connection is never reused just as the peer closes it.
            .max_idle_age(std::time::Duration::from_secs(5))
            .proxy(None);
        if let Some(roots) = PEER_ROOTS.get() {
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(roots))
                    .build(),
            );
        }
        let addr = addr.trim_end_matches('/');
        let base = firmware_sim_client::base_url(addr);
        RemotePort {
            id: id.to_string(),
            addr: addr.to_string(),
            base,
            agent: ureq::Agent::new_with_config(config.build()),
            verified: Mutex::new(false),
            timed_out_at: Mutex::new(None),
        }
    }

    fn failed(&self, what: &str, cause: impl std::fmt::Display) -> PortError {
        PortError::Failed {
            reason: format!("peer {} at {}: {what}: {cause}", self.id, self.addr),
        }
    }

    fn decode<T: DeserializeOwned>(
        &self,
        path: &str,
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, PortError> {
        let mut resp = res.map_err(|e| {
            if matches!(e, ureq::Error::Timeout(_)) {
                *self.timed_out_at.lock() = Some(Instant::now());
            }
            PortError::Unreachable {
                reason: format!("peer {} at {}: {path}: {e}", self.id, self.addr),
            }
        })?;
        *self.timed_out_at.lock() = None;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| self.failed(path, e))?;
        if status == 401 || status == 403 {
            // A configuration mismatch between daemons, not a fault of
            // either: unavailable (503) with what to fix, not internal.
            return Err(PortError::Misconfigured {
                reason: format!(
                    "peer {} at {}: {path}: HTTP {status}: {} (both daemons must be given \
                     the same --api-token-file, or neither)",
                    self.id,
                    self.addr,
                    text.trim()
                ),
            });
        }
        if status != 200 {
            return Err(self.failed(path, format!("HTTP {status}: {}", text.trim())));
        }
        serde_json::from_str::<Result<T, PortError>>(&text)
            .map_err(|e| self.failed(path, format!("unreadable answer: {e}")))?
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, PortError> {
        self.verify()?;
        self.get_raw(path)
    }

    /// Fails at once while the peer is taken for silent: a call timed out
    /// less than `SILENT_FOR` ago.
    fn not_silent(&self, path: &str) -> Result<(), PortError> {
        let Some(at) = *self.timed_out_at.lock() else {
            return Ok(());
        };
        let ago = at.elapsed();
        if ago >= silent_for() {
            return Ok(());
        }
        Err(PortError::Unreachable {
            reason: format!(
                "peer {} at {}: {path}: not asked: it did not answer {:.1} s ago (a call of \
                 {} s or a probe timed out); it is asked again {} s after that",
                self.id,
                self.addr,
                ago.as_secs_f64(),
                call_timeout().as_secs_f64(),
                silent_for().as_secs()
            ),
        })
    }

    fn get_raw<T: DeserializeOwned>(&self, path: &str) -> Result<T, PortError> {
        self.not_silent(path)?;
        let res = authorize(self.agent.get(format!("{}{path}", self.base))).call();
        self.decode(path, res)
    }

    fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, PortError> {
        self.verify()?;
        self.not_silent(path)?;
        let res = authorize(self.agent.post(format!("{}{path}", self.base))).send_json(body);
        self.decode(path, res)
    }

    /// Whether the peer's daemon answers `GET /health` within `t` (a probe
    /// that never waits out the call timeout). An answer also ends the
    /// silence a timed-out call began: the peer runs again.
    pub fn answers_within(&self, t: Duration) -> bool {
        let res = self
            .agent
            .get(format!("{}/health", self.base))
            .config()
            .timeout_global(Some(t))
            .build()
            .call();
        let ok = res.is_ok_and(|r| r.status().as_u16() == 200);
        // A peer that does not answer the probe is taken for silent, as
        // after a call's timeout: other calls fail at once for a while
        // instead of each waiting out the call timeout (review).
        *self.timed_out_at.lock() = if ok { None } else { Some(Instant::now()) };
        ok
    }

    /// The daemon at `addr` must serve subsystem `id`: a wrong `--peer`
    /// must not write rows into another subsystem's tables.
    fn verify(&self) -> Result<(), PortError> {
        let mut ok = self.verified.lock();
        if *ok {
            return Ok(());
        }
        let got: IdBody = self.get_raw("/port/id")?;
        if got.id != self.id {
            // Unavailable (503) on every route, as for a peer that is down:
            // this address does not serve that subsystem.
            return Err(PortError::Misconfigured {
                reason: format!(
                    "peer {} at {}: it serves subsystem {}, not {} (check --peer / \
                     [[peers]])",
                    self.id, self.addr, got.id, self.id
                ),
            });
        }
        *ok = true;
        Ok(())
    }

    /// The device model of the peer's volume `name` (to parse extents given
    /// in its geometry).
    pub fn volume_model(&self, name: &str) -> Result<DeviceModel, PortError> {
        let path = format!("/port/volumes/{}", percent(name));
        let model: String = self.get(&path)?;
        model
            .parse()
            .map_err(|e| self.failed(&path, format!("model {model:?}: {e}")))
    }
}

/// `name` with everything but unreserved characters percent-encoded.
fn percent(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl SubsystemPort for RemotePort {
    fn id(&self) -> &str {
        &self.id
    }

    fn establish(
        &self,
        session: &SessionId,
        host: &str,
        pairs: &[CopyPair],
    ) -> Result<PhysSessionId, PortError> {
        self.post(
            "/port/establish",
            &EstablishBody {
                session: session.clone(),
                host: host.to_string(),
                pairs: pairs.to_vec(),
            },
        )
    }

    fn freeze(&self, volumes: &[String], hold_ms: u64) -> Result<u64, PortError> {
        self.post(
            "/port/freeze",
            &FreezeBody {
                volumes: volumes.to_vec(),
                hold_ms,
            },
        )
    }

    fn thaw(&self, token: u64) -> Result<bool, PortError> {
        self.post("/port/thaw", &ThawBody { token })
    }

    fn withdraw(&self, session: &SessionId, phys: PhysSessionId) -> Result<(), PortError> {
        self.post(
            "/port/withdraw",
            &WithdrawBody {
                session: session.clone(),
                phys,
            },
        )
    }

    fn query(&self, phys: PhysSessionId) -> Result<Option<PhysicalSession>, PortError> {
        self.get(&format!("/port/sessions/{}", phys.get()))
    }

    fn physical_sessions(&self) -> Result<Vec<HeldSession>, PortError> {
        self.get("/port/sessions")
    }

    fn resume(&self, phys: PhysSessionId) -> Result<(), PortError> {
        self.post("/port/resume", &PhysBody { phys })
    }

    fn append(&self, entries: &[NewEntry]) -> Result<(), PortError> {
        self.post("/port/append", &entries)
    }

    fn entries(&self) -> Result<Vec<ActivityEntry>, PortError> {
        self.get("/port/entries")
    }

    fn is_remote(&self) -> bool {
        true
    }
}
