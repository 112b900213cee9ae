//! The subsystem configuration: what `firmware-sim boot --config FILE` reads.
//!
//! A config names the subsystem, its volumes (id and device model), the listen
//! addresses of its NBD and control endpoints, caps on background copy and
//! cleaning bandwidth, and the durability mode. [`SubsystemConfig::from_toml_str`]
//! parses and validates; every error names the line and the field.
//!
//! Invariants owned here (checked by [`SubsystemConfig::validate`], which
//! `from_toml_str` and `Subsystem::open` both call):
//! - the subsystem id and every volume id is a safe export name: 1..=64 bytes of
//!   `[A-Za-z0-9._-]`, not starting with `.` or `-`;
//! - volume ids are unique (case-sensitive, as NBD export names are);
//! - every model gives a valid [`Geometry`];
//! - listen addresses, when given, have the form `HOST:PORT`.
//!
//! ```toml
//! id = "SS01"
//! durability = "strict"          # or "nosync" (see docs/DURABILITY.md)
//!
//! [listen]
//! nbd = "127.0.0.1:10809"
//! api = "127.0.0.1:10810"
//!
//! [rates]
//! copy_mib_per_s_max = 512       # cap over all background copies; absent = no cap
//! clean_mib_per_s_max = 256
//!
//! [[volumes]]
//! id = "CKD00"
//! model = "3390-3"
//! ```

use std::fmt;

use geometry::{DeviceModel, Geometry};
use serde::{Deserialize, Serialize};

/// The configuration `firmware-sim boot` uses when given no `--config`:
/// four 3390-3 volumes `CKD00..CKD03` and four 1 GiB FB volumes `FB00..FB03`.
pub const EMBEDDED_DEFAULT_TOML: &str = r#"# firmware-sim embedded default subsystem
id = "SS01"
durability = "strict"

[listen]
nbd = "127.0.0.1:10809"
api = "127.0.0.1:10810"

[rates]
# No cap beyond each mapping's own copy/clean rate (SVC 0-150 scale).

[[volumes]]
id = "CKD00"
model = "3390-3"

[[volumes]]
id = "CKD01"
model = "3390-3"

[[volumes]]
id = "CKD02"
model = "3390-3"

[[volumes]]
id = "CKD03"
model = "3390-3"

[[volumes]]
id = "FB00"
model = "fb:1G"

[[volumes]]
id = "FB01"
model = "fb:1G"

[[volumes]]
id = "FB02"
model = "fb:1G"

[[volumes]]
id = "FB03"
model = "fb:1G"
"#;

/// Longest subsystem or volume id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// A whole subsystem configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsystemConfig {
    /// Subsystem id (the name activity tables record), a safe export name.
    pub id: String,
    /// How strictly writes are made durable.
    #[serde(default)]
    pub durability: DurabilityMode,
    /// Where the daemon listens; the library itself opens no socket.
    #[serde(default)]
    pub listen: ListenConfig,
    /// The daemon's NBD server settings (`[nbd]`); `boot` flags override them.
    #[serde(default, skip_serializing_if = "NbdConfig::is_default")]
    pub nbd: NbdConfig,
    /// Caps on background copy and cleaning bandwidth.
    #[serde(default)]
    pub rates: RateLimits,
    /// The volumes to create at the first boot (and to check at every IPL).
    #[serde(default)]
    pub volumes: Vec<VolumeConfig>,
    /// Other subsystems (daemons) whose volumes this daemon's sessions may
    /// span, reached over their control APIs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerConfig>,
    /// The host id of the daemon's resource manager: the owner recorded for
    /// sessions started without `--host` (default: [`SubsystemConfig::host_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Another subsystem reached over its control API (`[[peers]]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Its subsystem id (as its own config names it).
    pub id: String,
    /// Its control API address, `HOST:PORT`.
    pub api: String,
}

/// One configured volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeConfig {
    /// Volume id, also its NBD export name.
    pub id: String,
    /// Device model: `3390-1|3|9|27|54`, `3390-A:<cylinders>`, `fb:<size>[:<track-size>]`.
    pub model: DeviceModel,
    /// Served read-only over NBD (`read_only = true`): writes, trims and
    /// zeroing get EPERM and the export flags say so. Copy-on-write and
    /// background copy into it as a target still happen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// Listen addresses of the daemon's endpoints (`HOST:PORT`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// NBD server address, e.g. `127.0.0.1:10809`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbd: Option<String>,
    /// Control API address, e.g. `127.0.0.1:10810`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

/// Largest `[nbd] idle_timeout_s` (and `--nbd-idle-timeout`): a year.
pub const MAX_IDLE_TIMEOUT_S: u64 = 366 * 24 * 3600;

/// NBD server settings of the daemon (`[nbd]`). The library serves no NBD;
/// the daemon reads these, and its `boot` flags of the same names win.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NbdConfig {
    /// Close a connection that sends no request for this many seconds, with
    /// none in flight (`--nbd-idle-timeout`; absent or 0: never; at most
    /// [`MAX_IDLE_TIMEOUT_S`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_s: Option<u64>,
    /// Seconds from accept to the end of option negotiation (TLS handshake
    /// included) before a connection is dropped (`--nbd-handshake-timeout`;
    /// absent: 30; at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_timeout_s: Option<u64>,
    /// NBD connections one remote IP address may hold at once, 1..=64
    /// (`--nbd-max-conns-per-peer`; absent: 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_conns_per_peer: Option<u64>,
    /// Serve every volume read-only (`--read-only`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

impl NbdConfig {
    fn is_default(&self) -> bool {
        *self == NbdConfig::default()
    }
}

/// Subsystem-wide caps on background work, in MiB/s; `None` = no cap beyond
/// each mapping's own rate (docs/ENGINE.md, "Copy and clean rates").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Cap on the sum of all background copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_mib_per_s_max: Option<u64>,
    /// Cap on the sum of all cleaning (stopping maps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_mib_per_s_max: Option<u64>,
}

/// How writes are made durable (docs/DURABILITY.md has the exact guarantees).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Every rule of docs/DURABILITY.md: copies, bits and flushed host writes
    /// survive power loss.
    #[default]
    Strict,
    /// No fdatasync at all: ordering is kept in the page cache, so a process
    /// crash loses nothing, but a power loss may lose acknowledged writes and
    /// break point-in-time images. For benchmarks and throw-away runs.
    Nosync,
}

impl fmt::Display for DurabilityMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DurabilityMode::Strict => "strict",
            DurabilityMode::Nosync => "nosync",
        })
    }
}

/// A config that could not be parsed or is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}field `{field}`: {message}", line.map(|l| format!("config line {l}, ")).unwrap_or_default())]
pub struct ConfigError {
    /// 1-based line of the offending value, when known.
    pub line: Option<usize>,
    /// Dotted path of the field, e.g. `volumes[2].model`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The raw shape of a config file, with spans, used to give line numbers to
/// validation errors. Converted into [`SubsystemConfig`] once valid.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    id: toml::Spanned<String>,
    #[serde(default)]
    durability: DurabilityMode,
    #[serde(default)]
    listen: RawListen,
    #[serde(default)]
    nbd: NbdConfig,
    #[serde(default)]
    rates: RateLimits,
    #[serde(default)]
    volumes: Vec<RawVolume>,
    #[serde(default)]
    peers: Vec<RawPeer>,
    host: Option<toml::Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    id: toml::Spanned<String>,
    api: toml::Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawListen {
    nbd: Option<toml::Spanned<String>>,
    api: Option<toml::Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVolume {
    id: toml::Spanned<String>,
    model: toml::Spanned<String>,
    #[serde(default)]
    read_only: bool,
}

fn line_of(text: &str, byte: usize) -> usize {
    let end = byte.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The key written at the start of `line` (1-based), if that line is `key = ...`.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (key, _) = l.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || key.starts_with('#') {
        return None;
    }
    // The dotted path, with the table the line sits in (QA: type errors
    // named `idle_timeout_s`, not `nbd.idle_timeout_s`).
    let mut table = String::new();
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for t in text.lines().take(line - 1).map(str::trim) {
        if let Some(h) = t.strip_prefix("[[") {
            let name = h.trim_end_matches("]]").trim().to_string();
            let n = counts.entry(name.clone()).or_insert(0);
            table = format!("{name}[{n}]");
            *n += 1;
        } else if let Some(h) = t.strip_prefix('[') {
            table = h.trim_end_matches(']').trim().to_string();
        }
    }
    Some(if table.is_empty() {
        key.to_string()
    } else {
        format!("{table}.{key}")
    })
}

/// The line (1-based) that sets `table.key`: `key = ...` under `[table]`,
/// or `table.key = ...` before any table; `None` when written another way
/// (an inline table).
fn line_of_key(text: &str, table: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if let Some(h) = t.strip_prefix('[') {
            current = h.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            continue;
        }
        let Some((k, _)) = t.split_once('=') else {
            continue;
        };
        let k = k.split('.').map(str::trim).collect::<Vec<_>>().join(".");
        if (current == table && k == key) || (current.is_empty() && k == format!("{table}.{key}")) {
            return Some(i + 1);
        }
    }
    None
}

impl SubsystemConfig {
    /// The embedded default ([`EMBEDDED_DEFAULT_TOML`]).
    pub fn embedded_default() -> SubsystemConfig {
        // The constant is tested to parse; a failure here is a build defect, not input.
        Self::from_toml_str(EMBEDDED_DEFAULT_TOML).expect("embedded default config is valid")
    }

    /// The host id the daemon's resource manager speaks for: `host` if set,
    /// else `SYS-` and the subsystem id (so two daemons never share one by
    /// default), or the subsystem id alone if that would be too long.
    pub fn host_id(&self) -> String {
        match &self.host {
            Some(h) => h.clone(),
            None if self.id.len() + 4 <= MAX_ID_LEN => format!("SYS-{}", self.id),
            None => self.id.clone(),
        }
    }

    /// Parses and validates a TOML config; errors name the line and field.
    pub fn from_toml_str(text: &str) -> Result<SubsystemConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let field = line
                .and_then(|l| key_on_line(text, l))
                .unwrap_or_else(|| "(document)".into());
            ConfigError {
                line,
                field,
                message: e.message().trim().to_string(),
            }
        })?;
        let at = |span: std::ops::Range<usize>, field: String, message: String| ConfigError {
            line: Some(line_of(text, span.start)),
            field,
            message,
        };
        check_id("id", raw.id.get_ref()).map_err(|m| at(raw.id.span(), "id".into(), m))?;
        let mut volumes = Vec::with_capacity(raw.volumes.len());
        for (i, v) in raw.volumes.iter().enumerate() {
            let field = format!("volumes[{i}].id");
            check_id("volume id", v.id.get_ref()).map_err(|m| at(v.id.span(), field.clone(), m))?;
            if let Some(j) = raw.volumes[..i]
                .iter()
                .position(|o| o.id.get_ref() == v.id.get_ref())
            {
                let first = line_of(text, raw.volumes[j].id.span().start);
                let msg = format!(
                    "duplicate volume id `{}` (first defined at line {first})",
                    v.id.get_ref()
                );
                return Err(at(v.id.span(), field, msg));
            }
            let mfield = format!("volumes[{i}].model");
            let model: DeviceModel = v
                .model
                .get_ref()
                .parse()
                .map_err(|e| at(v.model.span(), mfield.clone(), format!("{e}")))?;
            Geometry::new(model).map_err(|e| at(v.model.span(), mfield, format!("{e}")))?;
            volumes.push(VolumeConfig {
                id: v.id.get_ref().clone(),
                model,
                read_only: v.read_only,
            });
        }
        let mut listen = ListenConfig::default();
        for (name, addr, slot) in [
            ("nbd", &raw.listen.nbd, &mut listen.nbd),
            ("api", &raw.listen.api, &mut listen.api),
        ] {
            if let Some(a) = addr {
                check_listen(a.get_ref()).map_err(|m| at(a.span(), format!("listen.{name}"), m))?;
                *slot = Some(a.get_ref().clone());
            }
        }
        let mut peers: Vec<PeerConfig> = Vec::with_capacity(raw.peers.len());
        for (i, p) in raw.peers.iter().enumerate() {
            let field = format!("peers[{i}].id");
            let id = p.id.get_ref();
            check_id("peer id", id).map_err(|m| at(p.id.span(), field.clone(), m))?;
            if id == raw.id.get_ref() {
                let msg = format!("peer `{id}` is this subsystem's own id");
                return Err(at(p.id.span(), field, msg));
            }
            if peers.iter().any(|o| o.id == *id) {
                return Err(at(p.id.span(), field, format!("duplicate peer `{id}`")));
            }
            check_peer_api(p.api.get_ref())
                .map_err(|m| at(p.api.span(), format!("peers[{i}].api"), m))?;
            peers.push(PeerConfig {
                id: id.clone(),
                api: p.api.get_ref().clone(),
            });
        }
        if let Some(n) = raw.nbd.max_conns_per_peer {
            if !(1..=64).contains(&n) {
                return Err(ConfigError {
                    line: line_of_key(text, "nbd", "max_conns_per_peer"),
                    field: "nbd.max_conns_per_peer".into(),
                    message: format!("{n} is not in 1..=64"),
                });
            }
        }
        if let Some(n) = raw.nbd.idle_timeout_s {
            // QA: a value near u64::MAX overflowed the connection's payload
            // deadline and failed every request with EIO.
            if n > MAX_IDLE_TIMEOUT_S {
                return Err(ConfigError {
                    line: line_of_key(text, "nbd", "idle_timeout_s"),
                    field: "nbd.idle_timeout_s".into(),
                    message: format!(
                        "{n} is not in 0..={MAX_IDLE_TIMEOUT_S} (0: never; at most a year)"
                    ),
                });
            }
        }
        if let Some(n) = raw.nbd.handshake_timeout_s {
            if !(1..=3600).contains(&n) {
                return Err(ConfigError {
                    line: line_of_key(text, "nbd", "handshake_timeout_s"),
                    field: "nbd.handshake_timeout_s".into(),
                    message: format!("{n} is not in 1..=3600"),
                });
            }
        }
        if let Some(h) = &raw.host {
            check_id("host id", h.get_ref()).map_err(|m| at(h.span(), "host".into(), m))?;
        }
        let config = SubsystemConfig {
            id: raw.id.into_inner(),
            durability: raw.durability,
            listen,
            nbd: raw.nbd,
            rates: raw.rates,
            volumes,
            peers,
            host: raw.host.map(toml::Spanned::into_inner),
        };
        // The checks of configs built in code know no lines: find the key's
        // (QA: a rates cap of 0 was named without one).
        config.validate().map_err(|mut e| {
            if e.line.is_none() {
                if let Some((table, key)) = e.field.rsplit_once('.') {
                    e.line = line_of_key(text, table, key);
                }
            }
            e
        })?;
        Ok(config)
    }

    /// Serializes back to TOML (what the data directory keeps as `subsystem.toml`).
    pub fn to_toml_string(&self) -> String {
        // Every field is a plain string, integer, enum or table: serialization cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks the invariants listed in the module doc (for configs built in code).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field: String, message: String| ConfigError {
            line: None,
            field,
            message,
        };
        check_id("id", &self.id).map_err(|m| err("id".into(), m))?;
        if let Some(h) = &self.host {
            check_id("host id", h).map_err(|m| err("host".into(), m))?;
        }
        for (i, v) in self.volumes.iter().enumerate() {
            check_id("volume id", &v.id).map_err(|m| err(format!("volumes[{i}].id"), m))?;
            if self.volumes[..i].iter().any(|o| o.id == v.id) {
                return Err(err(
                    format!("volumes[{i}].id"),
                    format!("duplicate volume id `{}`", v.id),
                ));
            }
            Geometry::new(v.model)
                .map_err(|e| err(format!("volumes[{i}].model"), e.to_string()))?;
        }
        if let Some(a) = &self.listen.nbd {
            check_listen(a).map_err(|m| err("listen.nbd".into(), m))?;
        }
        if let Some(a) = &self.listen.api {
            check_listen(a).map_err(|m| err("listen.api".into(), m))?;
        }
        for (name, v) in [
            ("copy", self.rates.copy_mib_per_s_max),
            ("clean", self.rates.clean_mib_per_s_max),
        ] {
            if v == Some(0) {
                return Err(err(
                    format!("rates.{name}_mib_per_s_max"),
                    "a cap of 0 would stop all background work; omit the field for no cap".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Checks that `id` is a safe export / file name; returns the reason if not.
pub fn check_id(what: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        // A hostile id is not echoed whole (QA: 100,000 bytes came back).
        let shown = match id.char_indices().nth(MAX_ID_LEN) {
            Some((cut, _)) => format!("{}...", &id[..cut]),
            None => id.to_string(),
        };
        return Err(format!(
            "{what} `{shown}` ({} bytes) must be 1..={MAX_ID_LEN} bytes long",
            id.len()
        ));
    }
    if id.starts_with('.') || id.starts_with('-') {
        return Err(format!("{what} `{id}` must not start with `.` or `-`"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{what} `{id}` contains {c:?}; allowed: A-Z a-z 0-9 . _ -"
        ));
    }
    Ok(())
}

/// Checks a peer's control API: `HOST:PORT`, `http://HOST:PORT`, or
/// `https://HOST:PORT` for a peer booted with `--api-tls`.
pub fn check_peer_api(addr: &str) -> Result<(), String> {
    let bare = addr
        .strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .unwrap_or(addr);
    if bare.contains("://") || bare.trim_end_matches('/').contains('/') {
        return Err(format!(
            "peer API `{addr}` must be HOST:PORT, http://HOST:PORT or https://HOST:PORT"
        ));
    }
    check_listen(bare.trim_end_matches('/'))
}

/// Checks a `HOST:PORT` listen or peer address.
pub fn check_listen(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("listen address `{addr}` must be HOST:PORT"))?;
    if host.is_empty() {
        return Err(format!("listen address `{addr}` has no host"));
    }
    port.parse::<u16>()
        .map(|_| ())
        .map_err(|_| format!("listen address `{addr}`: port `{port}` is not 0..=65535"))
}
