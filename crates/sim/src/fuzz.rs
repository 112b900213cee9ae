//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the stable
//! smoke test (`tests/fuzz_smoke.rs`): each takes untrusted bytes and must
//! neither panic nor hang, whatever they hold.
//!
//! - [`nbd_parsers`]: the NBD request-header, INFO and meta-context parsers;
//! - [`nbd_session`]: a whole NBD connection (handshake, options,
//!   transmission, disconnect mid-request) against an in-memory export;
//! - [`activity_table_file`]: an activity-table file opened strictly, for
//!   inspection and with salvage, on the raw bytes and on the bytes framed
//!   with a valid header and valid record checksums
//!   ([`frame_activity_table`], so the decoders behind the checksums are
//!   reached);
//! - [`engine_state`]: the engine state loader, on the raw bytes and on the
//!   bytes framed with a valid header and checksum (so the decoder behind
//!   the checksum is reached);
//! - [`nbd_session_script`]: [`nbd_session`] on a client script decoded from
//!   the bytes with `arbitrary` (what the `nbd_session` target runs);
//! - [`config_toml`]: the subsystem config parser (a config that parses
//!   must serialize and parse again to the same config);
//! - [`scenario_toml`]: the resource-manager scenario parser and step checks;
//! - [`psk_file`]: the NBD TLS-PSK key file parser.
//!
//! Every target's corpus (fuzz/corpus/) is replayed on stable by
//! `tests/fuzz_corpus.rs`, through these same functions.
//!
//! [`NbdMsg`] and [`encode_nbd`] turn structured messages into a byte
//! stream, so a fuzzer (or a seeded generator) gets past the magics.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nbd::proto::{self, RequestHeader, REQUEST_HEADER_BYTES};
use nbd::testing::MemExport;
use nbd::{Server, ServerConfig, StaticRegistry};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One client message of an NBD session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NbdMsg {
    /// Bytes as they are.
    Raw(Vec<u8>),
    /// The client flags after the greeting.
    ClientFlags(u32),
    /// An option (`IHAVEOPT`, code, length, data).
    Opt {
        /// Option code.
        code: u32,
        /// Payload.
        data: Vec<u8>,
    },
    /// A transmission request (header, then `payload` as sent, whatever `length` says).
    Request {
        /// Header.
        header: RequestHeader,
        /// Bytes after the header.
        payload: Vec<u8>,
    },
}

/// The byte stream a client sending `msgs` produces.
pub fn encode_nbd(msgs: &[NbdMsg]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    for m in msgs {
        match m {
            NbdMsg::Raw(b) => out.extend_from_slice(b),
            NbdMsg::ClientFlags(f) => out.extend_from_slice(&f.to_be_bytes()),
            NbdMsg::Opt { code, data } => {
                out.extend_from_slice(&proto::IHAVEOPT.to_be_bytes());
                out.extend_from_slice(&code.to_be_bytes());
                out.extend_from_slice(&(data.len() as u32).to_be_bytes());
                out.extend_from_slice(data);
            }
            NbdMsg::Request { header, payload } => {
                proto::encode_request(&mut out, header);
                out.extend_from_slice(payload);
            }
        }
    }
    out.to_vec()
}

/// Option data of `GO`/`INFO` for export `name` with `infos` requests.
pub fn go_data(name: &[u8], infos: &[u16]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name);
    d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
    for i in infos {
        d.extend_from_slice(&i.to_be_bytes());
    }
    d
}

/// Runs the NBD parsers on `bytes` (must not panic).
pub fn nbd_parsers(bytes: &[u8]) {
    if let Some(head) = bytes.get(..REQUEST_HEADER_BYTES) {
        let mut buf = [0u8; REQUEST_HEADER_BYTES];
        buf.copy_from_slice(head);
        let _ = proto::parse_request(&buf);
    }
    let _ = proto::parse_info_request(bytes);
    let _ = proto::parse_meta_request(bytes);
}

/// Size of the export served by [`nbd_session`].
pub const FUZZ_EXPORT_BYTES: u64 = 1 << 20;

/// Serves one connection whose client sends `bytes` and then closes its
/// sending side, draining every reply. `Err` if the server did not finish
/// within 10 s (a hang); panics propagate.
pub fn nbd_session(bytes: &[u8]) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        let export = Arc::new(MemExport::new(FUZZ_EXPORT_BYTES));
        let registry = Arc::new(StaticRegistry::single("vol", export));
        let config = ServerConfig {
            handshake_timeout: Duration::from_secs(5),
            ..ServerConfig::default()
        };
        let server = Server::new(config).map_err(|e| e.to_string())?;
        let (client, server_end) = tokio::io::duplex(1 << 16);
        let (mut rd, mut wr) = tokio::io::split(client);
        let input = bytes.to_vec();
        let writer = async move {
            let _ = wr.write_all(&input).await;
            let _ = wr.shutdown().await;
            wr
        };
        let reader = async move {
            let mut sink = vec![0u8; 1 << 16];
            while let Ok(n) = rd.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        };
        let serve = server.serve_stream(server_end, registry);
        let all = async {
            let (_, _, wr) = tokio::join!(serve, reader, writer);
            drop(wr);
        };
        tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .map_err(|_| "NBD session did not finish within 10 s".to_string())
    })
}

/// A seeded client session: a valid opening (usually), then a mix of valid,
/// corrupted and truncated options and requests, possibly cut mid-message.
pub fn random_nbd_session(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut msgs = Vec::new();
    let flags = if rng.random_bool(0.9) {
        3
    } else {
        rng.random()
    };
    msgs.push(NbdMsg::ClientFlags(flags));
    for _ in 0..rng.random_range(0..4) {
        let code = [1, 3, 6, 8, 9, 10, 11, rng.random_range(0..20)][rng.random_range(0..8)];
        let data = match code {
            6 | 7 => go_data(
                if rng.random_bool(0.7) {
                    b"vol"
                } else {
                    b"nope"
                },
                &[0, 1, 2, 3],
            ),
            9 | 10 => {
                let mut d = go_data(b"vol", &[]);
                d.truncate(d.len() - 2);
                d.extend_from_slice(&1u32.to_be_bytes());
                let q = b"base:allocation";
                d.extend_from_slice(&(q.len() as u32).to_be_bytes());
                d.extend_from_slice(q);
                d
            }
            _ => random_bytes(rng, 0..24),
        };
        msgs.push(NbdMsg::Opt { code, data });
    }
    msgs.push(NbdMsg::Opt {
        code: 7,
        data: go_data(b"vol", &[3]),
    });
    for _ in 0..rng.random_range(0..12) {
        let kind: u16 = if rng.random_bool(0.9) {
            rng.random_range(0..10)
        } else {
            rng.random()
        };
        let near_end = FUZZ_EXPORT_BYTES.saturating_sub(rng.random_range(0..8192));
        let offset = [
            0,
            512 * rng.random_range(0..2048u64),
            near_end,
            rng.random(),
        ][rng.random_range(0..4)];
        let length: u32 =
            [0, 512, 4096, rng.random_range(0..70_000), rng.random()][rng.random_range(0..5)];
        let payload = if kind == 1 {
            random_bytes(rng, 0..(length.min(9000) as usize + 1))
        } else {
            Vec::new()
        };
        let header = RequestHeader {
            flags: rng.random_range(0..16),
            kind,
            cookie: rng.random(),
            offset,
            length,
        };
        msgs.push(NbdMsg::Request { header, payload });
    }
    let mut bytes = encode_nbd(&msgs);
    mutate(rng, &mut bytes);
    bytes
}

/// Opens `bytes` as an activity-table file in `dir` in each mode, raw and
/// framed by [`frame_activity_table`] (must not panic).
pub fn activity_table_file(bytes: &[u8], dir: &Path) {
    open_activity_table(bytes, dir);
    if let Some(framed) = frame_activity_table(bytes, dir) {
        open_activity_table(&framed, dir);
    }
}

/// Opens `bytes` as an activity-table file strictly, then with salvage.
fn open_activity_table(bytes: &[u8], dir: &Path) {
    let path = dir.join("fuzz.table");
    if std::fs::write(&path, bytes).is_err() {
        return;
    }
    let _ = activity_table::ActivityTable::read(&path);
    if let Ok((id, _, _)) = activity_table::ActivityTable::read(&path) {
        let _ = activity_table::ActivityTable::open_salvage(&path, id);
    } else if std::fs::write(&path, bytes).is_ok() {
        let id = activity_table::TableId::Subsystem("fuzz".into());
        let _ = activity_table::ActivityTable::open_salvage(&path, id);
    }
    let _ = std::fs::remove_file(&path);
}

/// Header bodies of a real subsystem table and a real volume table (as
/// `ActivityTable::open` writes them), made once in the first `dir` given.
fn table_header_bodies(dir: &Path) -> Option<&'static [Vec<u8>; 2]> {
    static BODIES: std::sync::OnceLock<Option<[Vec<u8>; 2]>> = std::sync::OnceLock::new();
    BODIES
        .get_or_init(|| {
            let body = |name: &str, id: activity_table::TableId| {
                let path = dir.join(name);
                let _ = std::fs::remove_file(&path);
                drop(activity_table::ActivityTable::open(&path, id).ok()?);
                let bytes = std::fs::read(&path).ok()?;
                let _ = std::fs::remove_file(&path);
                bytes.get(TABLE_HEADER_FIXED..).map(<[u8]>::to_vec)
            };
            Some([
                body(
                    "fuzz-ss.table",
                    activity_table::TableId::Subsystem("SS01".into()),
                )?,
                body(
                    "fuzz-vol.table",
                    activity_table::TableId::Volume {
                        subsystem: "SS01".into(),
                        volume: "FB01".into(),
                    },
                )?,
            ])
        })
        .as_ref()
}

/// Bytes of an activity-table header before its body (magic, version,
/// reserved, body length, crc32c).
const TABLE_HEADER_FIXED: usize = 20;

/// The next chunk of `rest`: a little-endian u16 length, then up to that
/// many bytes.
fn take_chunk<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let len = match rest {
        [a, b, tail @ ..] => {
            *rest = tail;
            usize::from(u16::from_le_bytes([*a, *b]))
        }
        _ => {
            let all = *rest;
            *rest = &[];
            return all;
        }
    };
    let (chunk, tail) = rest.split_at(len.min(rest.len()));
    *rest = tail;
    chunk
}

/// Frames fuzzer bytes as an activity-table file whose header and records
/// carry valid magics, lengths and checksums, so the decoders behind the
/// checksums (header body, record payloads) see the fuzzer's bytes; random
/// bytes almost never pass the checksums by themselves.
///
/// `data[0]` chooses the layout: bit 0 set takes the header body from the
/// data (a u16-length-prefixed chunk), else a real header of a subsystem
/// table (bit 1 clear) or a volume table (bit 1 set); bit 2 set leaves the
/// last chunk unframed (a torn tail). The rest is u16-length-prefixed record
/// payloads. `None` when `dir` cannot hold the template tables.
pub fn frame_activity_table(data: &[u8], dir: &Path) -> Option<Vec<u8>> {
    let (&mode, mut rest) = data.split_first()?;
    let body: Vec<u8> = if mode & 1 != 0 {
        take_chunk(&mut rest).to_vec()
    } else {
        table_header_bodies(dir)?[usize::from(mode & 2 != 0)].clone()
    };
    let mut out = activity_table::FILE_MAGIC.to_vec();
    out.extend_from_slice(&activity_table::FILE_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &body);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&body);
    while !rest.is_empty() {
        let payload = take_chunk(&mut rest);
        if rest.is_empty() && mode & 4 != 0 {
            out.extend_from_slice(payload);
            break;
        }
        let start = out.len();
        out.extend_from_slice(&activity_table::RECORD_MAGIC);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..]), payload);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(payload);
    }
    Some(out)
}

/// Frames `payload` as saved engine state with a valid header and checksum.
pub fn frame_engine_payload(payload: &[u8]) -> Vec<u8> {
    let mut out = timezero::MAGIC.to_vec();
    out.extend_from_slice(&timezero::FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Loads `bytes` as engine state, raw and framed (must not panic); a state
/// that loads must save and load again.
pub fn engine_state(bytes: &[u8]) -> Result<(), String> {
    for candidate in [bytes.to_vec(), frame_engine_payload(bytes)] {
        if let Ok(engine) = timezero::Engine::load(&candidate) {
            timezero::Engine::load(&engine.save())
                .map_err(|e| format!("loaded state does not reload: {e}"))?;
        }
    }
    Ok(())
}

/// Random bytes with a length in `len`.
pub fn random_bytes(rng: &mut ChaCha8Rng, len: std::ops::Range<usize>) -> Vec<u8> {
    let n = rng.random_range(len);
    (0..n).map(|_| rng.random()).collect()
}

/// Seeded damage: bit flips, overwritten bytes, truncation, duplication.
pub fn mutate(rng: &mut ChaCha8Rng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.random_range(0..4) {
        if bytes.is_empty() {
            return;
        }
        let i = rng.random_range(0..bytes.len());
        match rng.random_range(0..4) {
            0 => bytes[i] ^= 1 << rng.random_range(0..8),
            1 => bytes[i] = rng.random(),
            2 => bytes.truncate(i),
            _ => {
                let end = (i + rng.random_range(1..64)).min(bytes.len());
                let chunk = bytes[i..end].to_vec();
                bytes.splice(i..i, chunk);
            }
        }
    }
}

/// One client message of a fuzzed script: the structured form gets the
/// fuzzer past the magics, `Raw` keeps byte-level freedom.
#[derive(Debug, arbitrary::Arbitrary)]
enum ScriptMsg {
    Raw(Vec<u8>),
    ClientFlags(u32),
    Opt {
        code: u8,
        data: Vec<u8>,
    },
    Go {
        name_is_vol: bool,
        infos: Vec<u16>,
    },
    Request {
        flags: u16,
        kind: u8,
        cookie: u64,
        offset: u64,
        length: u32,
        payload: Vec<u8>,
    },
}

/// [`nbd_session`] on a client script of at most 64 messages decoded from
/// `data` with `arbitrary` (the `nbd_session` fuzz target).
pub fn nbd_session_script(data: &[u8]) -> Result<(), String> {
    use arbitrary::Arbitrary;
    let u = arbitrary::Unstructured::new(data);
    let Ok(script) = Vec::<ScriptMsg>::arbitrary_take_rest(u) else {
        return Ok(());
    };
    let msgs: Vec<NbdMsg> = script
        .into_iter()
        .take(64)
        .map(|m| match m {
            ScriptMsg::Raw(b) => NbdMsg::Raw(b),
            ScriptMsg::ClientFlags(f) => NbdMsg::ClientFlags(f),
            ScriptMsg::Opt { code, data } => NbdMsg::Opt {
                code: u32::from(code),
                data,
            },
            ScriptMsg::Go { name_is_vol, infos } => NbdMsg::Opt {
                code: 7,
                data: go_data(if name_is_vol { b"vol" } else { b"other" }, &infos),
            },
            ScriptMsg::Request {
                flags,
                kind,
                cookie,
                offset,
                length,
                payload,
            } => NbdMsg::Request {
                header: RequestHeader {
                    flags,
                    kind: u16::from(kind),
                    cookie,
                    offset,
                    length,
                },
                payload,
            },
        })
        .collect();
    nbd_session(&encode_nbd(&msgs))
}

/// Parses `bytes` (lossily decoded as UTF-8) as a subsystem config. Must
/// not panic; a config that parses must serialize and parse back equal.
pub fn config_toml(bytes: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    let Ok(config) = controller::config::SubsystemConfig::from_toml_str(&text) else {
        return Ok(());
    };
    let saved = config.to_toml_string();
    match controller::config::SubsystemConfig::from_toml_str(&saved) {
        Ok(again) if again == config => Ok(()),
        Ok(again) => Err(format!(
            "config changed through save and load:\n{config:?}\n{again:?}\nsaved:\n{saved}"
        )),
        Err(e) => Err(format!("saved config does not load ({e}):\n{saved}")),
    }
}

/// Parses and checks `bytes` (lossily decoded as UTF-8) as a scenario
/// file, without running it. Must not panic.
pub fn scenario_toml(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = resource_manager::check_scenario_str("fuzz.toml", &text);
}

/// Parses `bytes` (lossily decoded as UTF-8) as an NBD TLS-PSK file
/// (`username:hexkey` lines). Must not panic; an error never shows a key.
pub fn psk_file(bytes: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    match nbd::parse_psk_file(&text) {
        Ok(keys) => {
            if keys.values().any(|k| k.len() < 16) {
                return Err("a key shorter than 16 bytes was accepted".into());
            }
            Ok(())
        }
        Err(_) => Ok(()),
    }
}
