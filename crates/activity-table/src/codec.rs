//! The payload codec: the only module that knows about bincode.
//!
//! Header bodies and record payloads are encoded here with serde + bincode
//! `=2.0.1` in the fixed-int, little-endian configuration; the framing around
//! them (magic, length, crc32c) lives in `format`. To swap the codec (e.g. to
//! postcard), change this file and bump [`RECORD_VERSION`] / the header version.
//!
//! The wire structs are private and separate from the public types, so the
//! public types can change without changing the bytes. Byte layouts are in
//! docs/FORMATS.md ("Activity tables").
//!
//! Invariants: every decoded value is validated exactly as the public
//! constructors validate it (names, phys id 1..=255, normalized extents, known
//! status codes), and a payload must be consumed completely.

use geometry::{Extent, ExtentSet};
use serde::{Deserialize, Serialize};

use crate::types::{
    check_name, check_program, ActivityEntry, EntryStatus, PhysSessionId, SessionId, TableId,
    TerminateReason,
};

/// Version byte that starts every record payload written by this build.
/// Version 1 records (no host, no logically-complete status) are still read.
pub const RECORD_VERSION: u8 = 2;

/// Largest body either decoder will allocate for (equals the record limit).
const DECODE_LIMIT: usize = crate::format::MAX_RECORD_LEN;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian()
        .with_limit::<DECODE_LIMIT>()
}

/// Why a payload could not be decoded (the caller adds path and offset).
#[derive(Debug)]
pub enum DecodeFailure {
    /// The payload's version byte is not one this build reads.
    Version(u8),
    /// The bytes do not decode, or decode to invalid values.
    Invalid(String),
}

#[derive(Serialize, Deserialize)]
struct HeaderBodyV1 {
    subsystem: String,
    volume: Option<String>,
    base_seq: u64,
}

/// The first record layout; read, never written.
#[derive(Serialize, Deserialize)]
struct RecordV1 {
    seq: u64,
    session_id: String,
    phys_session_id: u8,
    subsystem: String,
    volume: Option<String>,
    extents: Vec<(u64, u64)>,
    status: u8,
    reason: u8,
    program: Option<String>,
    time_unix_ms: u64,
}

/// Version 2: V1 plus the owner host (after `program`).
#[derive(Serialize, Deserialize)]
struct RecordV2 {
    seq: u64,
    session_id: String,
    phys_session_id: u8,
    subsystem: String,
    volume: Option<String>,
    extents: Vec<(u64, u64)>,
    status: u8,
    reason: u8,
    program: Option<String>,
    host: Option<String>,
    time_unix_ms: u64,
}

impl From<RecordV1> for RecordV2 {
    fn from(r: RecordV1) -> RecordV2 {
        RecordV2 {
            seq: r.seq,
            session_id: r.session_id,
            phys_session_id: r.phys_session_id,
            subsystem: r.subsystem,
            volume: r.volume,
            extents: r.extents,
            status: r.status,
            reason: r.reason,
            program: r.program,
            host: None,
            time_unix_ms: r.time_unix_ms,
        }
    }
}

/// Header body: which table the file is, and the sequence floor (the next
/// sequence number is never below it, so compaction never lets a seq be reused).
pub fn encode_header_body(id: &TableId, base_seq: u64) -> Result<Vec<u8>, String> {
    let body = HeaderBodyV1 {
        subsystem: id.subsystem().to_string(),
        volume: id.volume().map(str::to_string),
        base_seq,
    };
    bincode::serde::encode_to_vec(&body, config()).map_err(|e| e.to_string())
}

/// Inverse of [`encode_header_body`]: `(table id, base_seq)`.
pub fn decode_header_body(bytes: &[u8]) -> Result<(TableId, u64), String> {
    let body: HeaderBodyV1 = decode_all(bytes)?;
    let id = match body.volume {
        None => TableId::Subsystem(body.subsystem),
        Some(volume) => TableId::Volume {
            subsystem: body.subsystem,
            volume,
        },
    };
    id.validate().map_err(|e| e.to_string())?;
    Ok((id, body.base_seq))
}

/// Record payload: version byte, then the bincode body.
pub fn encode_entry(e: &ActivityEntry) -> Result<Vec<u8>, String> {
    let (status, reason) = status_code(e.status);
    let rec = RecordV2 {
        seq: e.seq,
        session_id: e.session_id.as_str().to_string(),
        phys_session_id: e.phys_session_id.get(),
        subsystem: e.subsystem.clone(),
        volume: e.volume.clone(),
        extents: e
            .extents
            .extents()
            .iter()
            .map(|x| (x.first, x.last))
            .collect(),
        status,
        reason,
        program: e.program.clone(),
        host: e.host.clone(),
        time_unix_ms: e.time_unix_ms,
    };
    let mut out = vec![RECORD_VERSION];
    bincode::serde::encode_into_std_write(&rec, &mut out, config()).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Inverse of [`encode_entry`], with every field validated.
pub fn decode_entry(payload: &[u8]) -> Result<ActivityEntry, DecodeFailure> {
    let (&version, body) = payload
        .split_first()
        .ok_or_else(|| DecodeFailure::Invalid("empty payload".into()))?;
    let r: RecordV2 = match version {
        1 => decode_all::<RecordV1>(body)
            .map_err(DecodeFailure::Invalid)?
            .into(),
        RECORD_VERSION => decode_all(body).map_err(DecodeFailure::Invalid)?,
        other => return Err(DecodeFailure::Version(other)),
    };
    if version == 1 && r.status == 5 {
        return Err(DecodeFailure::Invalid(
            "status code 5 (logically complete) in a version 1 record".into(),
        ));
    }
    let inv = |e: crate::TableError| DecodeFailure::Invalid(e.to_string());
    check_name("subsystem", &r.subsystem).map_err(inv)?;
    if let Some(v) = &r.volume {
        check_name("volume", v).map_err(inv)?;
    }
    if let Some(p) = &r.program {
        check_program(p).map_err(inv)?;
    }
    if let Some(h) = &r.host {
        check_name("host", h).map_err(inv)?;
    }
    Ok(ActivityEntry {
        seq: r.seq,
        session_id: SessionId::new(r.session_id).map_err(inv)?,
        phys_session_id: PhysSessionId::new(r.phys_session_id).map_err(inv)?,
        subsystem: r.subsystem,
        volume: r.volume,
        extents: decode_extents(&r.extents).map_err(DecodeFailure::Invalid)?,
        status: status_from_code(r.status, r.reason).map_err(DecodeFailure::Invalid)?,
        program: r.program,
        host: r.host,
        time_unix_ms: r.time_unix_ms,
    })
}

fn decode_all<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (v, used) =
        bincode::serde::decode_from_slice::<T, _>(bytes, config()).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!(
            "{} trailing byte(s) after the value",
            bytes.len() - used
        ));
    }
    Ok(v)
}

/// Extents must be stored normalized (sorted, `first <= last`, neither
/// overlapping nor adjacent), exactly as [`ExtentSet`] keeps them.
fn decode_extents(list: &[(u64, u64)]) -> Result<ExtentSet, String> {
    let mut prev_last: Option<u64> = None;
    for &(first, last) in list {
        if first > last {
            return Err(format!("extent {first}-{last} is reversed"));
        }
        if let Some(p) = prev_last {
            if first <= p.saturating_add(1) {
                return Err(format!(
                    "extent {first}-{last} overlaps or touches the one before"
                ));
            }
        }
        prev_last = Some(last);
    }
    Ok(list
        .iter()
        .map(|&(first, last)| Extent { first, last })
        .collect())
}

/// Status codes on disk: 1 initiated, 2 completed, 3 terminated, 4 resumed,
/// 5 logically complete (version 2);
/// reason 0 unless terminated, then 1 ipl, 2 rm-restart, 3 abend,
/// 4 reset-mismatch, 5 operator.
fn status_code(s: EntryStatus) -> (u8, u8) {
    match s {
        EntryStatus::Initiated => (1, 0),
        EntryStatus::Completed => (2, 0),
        EntryStatus::Terminated { reason } => (3, reason_code(reason)),
        EntryStatus::Resumed => (4, 0),
        EntryStatus::LogicallyComplete => (5, 0),
    }
}

fn reason_code(r: TerminateReason) -> u8 {
    match r {
        TerminateReason::Ipl => 1,
        TerminateReason::RmRestart => 2,
        TerminateReason::Abend => 3,
        TerminateReason::ResetMismatch => 4,
        TerminateReason::Operator => 5,
        TerminateReason::StartFailed => 6,
        TerminateReason::ImageLost => 7,
    }
}

fn status_from_code(status: u8, reason: u8) -> Result<EntryStatus, String> {
    let no_reason = |s: EntryStatus| {
        if reason == 0 {
            Ok(s)
        } else {
            Err(format!("status {s} carries reason code {reason}"))
        }
    };
    match status {
        1 => no_reason(EntryStatus::Initiated),
        2 => no_reason(EntryStatus::Completed),
        3 => {
            let reason = TerminateReason::ALL
                .into_iter()
                .find(|r| reason_code(*r) == reason)
                .ok_or_else(|| format!("unknown terminate reason code {reason}"))?;
            Ok(EntryStatus::Terminated { reason })
        }
        4 => no_reason(EntryStatus::Resumed),
        5 => no_reason(EntryStatus::LogicallyComplete),
        other => Err(format!("unknown status code {other}")),
    }
}
