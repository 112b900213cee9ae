//! Stable smoke run of the fuzz entry points (cargo-fuzz needs nightly; the
//! targets in fuzz/ call the same functions). A few thousand seeded inputs:
//! random bytes, and valid inputs damaged by flips, truncation and
//! duplication. Passing means: no panic, no hang, and loaded engine states
//! reload. `SIM_FUZZ_CASES` sets the number of cases per target.

use activity_table::{ActivityTable, EntryStatus, NewEntry, PhysSessionId, SessionId, TableId};
use geometry::{Extent, ExtentSet};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim::fuzz::{self, NbdMsg};
use sim::workload::Op;
use sim::World;
use timezero::CopyType;

fn cases(default: u64) -> u64 {
    std::env::var("SIM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn nbd_parsers_take_any_bytes() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..cases(5000) {
        let bytes = fuzz::random_bytes(&mut rng, 0..64);
        fuzz::nbd_parsers(&bytes);
    }
}

#[test]
fn nbd_sessions_with_hostile_clients_end_cleanly() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let n = cases(400);
    for i in 0..n {
        let bytes = if i % 8 == 0 {
            fuzz::random_bytes(&mut rng, 0..200)
        } else {
            fuzz::random_nbd_session(&mut rng)
        };
        fuzz::nbd_session(&bytes).unwrap_or_else(|e| panic!("case {i}: {e}"));
    }
    // A well-formed session must get past the handshake: GO then a READ and a
    // clean disconnect (DISC) finish without error.
    let ok = fuzz::encode_nbd(&[
        NbdMsg::ClientFlags(3),
        NbdMsg::Opt {
            code: 7,
            data: fuzz::go_data(b"vol", &[]),
        },
        NbdMsg::Request {
            header: nbd::proto::RequestHeader {
                flags: 0,
                kind: 0,
                cookie: 1,
                offset: 0,
                length: 512,
            },
            payload: vec![],
        },
        NbdMsg::Request {
            header: nbd::proto::RequestHeader {
                flags: 0,
                kind: 2,
                cookie: 2,
                offset: 0,
                length: 0,
            },
            payload: vec![],
        },
    ]);
    fuzz::nbd_session(&ok).unwrap();
}

fn valid_table(dir: &std::path::Path) -> Vec<u8> {
    let path = dir.join("seed.table");
    let (mut t, _) = ActivityTable::open(&path, TableId::Subsystem("SS01".into())).unwrap();
    for (i, status) in [
        EntryStatus::Initiated,
        EntryStatus::Completed,
        EntryStatus::Initiated,
    ]
    .into_iter()
    .enumerate()
    {
        t.append(NewEntry {
            session_id: SessionId::new(format!("JOB{i}")).unwrap(),
            phys_session_id: PhysSessionId::new(i as u8 + 1).unwrap(),
            subsystem: "SS01".into(),
            volume: Some("VOL1".into()),
            extents: ExtentSet::from_iter([Extent::new(0, 14).unwrap()]),
            status,
            program: Some("DFSMSdss".into()),
            host: None,
            time_unix_ms: 1_700_000_000_000 + i as u64,
        })
        .unwrap();
    }
    drop(t);
    std::fs::read(&path).unwrap()
}

#[test]
fn activity_table_decoder_takes_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let valid = valid_table(dir.path());
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for i in 0..cases(1500) {
        let mut bytes = if i % 4 == 0 {
            fuzz::random_bytes(&mut rng, 0..300)
        } else {
            valid.clone()
        };
        fuzz::mutate(&mut rng, &mut bytes);
        fuzz::activity_table_file(&bytes, dir.path());
    }
}

/// The framed mode reaches the record decoder: a real table taken apart
/// into the fuzzer's layout (mode byte, then length-prefixed record
/// payloads) and framed again reads back with every entry, and a damaged
/// payload is reported by the decoder, not by the checksum.
#[test]
fn framed_activity_table_reaches_the_decoder() {
    let dir = tempfile::tempdir().unwrap();
    let file = valid_table(dir.path());
    let (_, entries, _) = ActivityTable::read(dir.path().join("seed.table")).unwrap();
    assert!(!entries.is_empty());
    let body_len = u32::from_le_bytes(file[12..16].try_into().unwrap()) as usize;
    let mut data = vec![1u8];
    data.extend_from_slice(&(body_len as u16).to_le_bytes());
    data.extend_from_slice(&file[20..20 + body_len]);
    let mut pos = 20 + body_len;
    let mut payloads = Vec::new();
    while pos < file.len() {
        let len = u32::from_le_bytes(file[pos + 4..pos + 8].try_into().unwrap()) as usize;
        payloads.push(file[pos + 12..pos + 12 + len].to_vec());
        pos += 12 + len;
    }
    for p in &payloads {
        data.extend_from_slice(&(p.len() as u16).to_le_bytes());
        data.extend_from_slice(p);
    }
    let framed = fuzz::frame_activity_table(&data, dir.path()).unwrap();
    assert_eq!(framed, file, "the framing is the table's own format");
    let path = dir.path().join("framed.table");
    // The first record's version byte changed: the checksum holds, so the
    // decoder is what refuses it.
    data[1 + 2 + body_len + 2] = 0xEE;
    std::fs::write(
        &path,
        fuzz::frame_activity_table(&data, dir.path()).unwrap(),
    )
    .unwrap();
    let err = ActivityTable::read(&path).unwrap_err().to_string();
    assert!(!err.contains("checksum"), "{err}");
    // The real header templates (mode bit 0 clear) make readable tables too.
    for mode in [0u8, 2] {
        let mut d = vec![mode];
        for p in &payloads {
            d.extend_from_slice(&(p.len() as u16).to_le_bytes());
            d.extend_from_slice(p);
        }
        std::fs::write(&path, fuzz::frame_activity_table(&d, dir.path()).unwrap()).unwrap();
        let _ = ActivityTable::read(&path);
    }
}

fn saved_engine() -> Vec<u8> {
    let shape = sim::workload::Shape {
        volumes: 3,
        tracks: 8,
        sectors_per_track: 8,
    };
    let mut w = sim::engine_world::EngineWorld::new(shape);
    let mut trace = sim::trace::Trace::new();
    for op in [
        Op::CreateMap {
            source: 0,
            target: 1,
            copy_type: CopyType::Full,
            copy_rate: 50,
            incremental: true,
        },
        Op::CreateMap {
            source: 0,
            target: 2,
            copy_type: CopyType::Nocopy,
            copy_rate: 0,
            incremental: false,
        },
        Op::Start {
            slot: 0,
            restore: false,
        },
        Op::Start {
            slot: 1,
            restore: false,
        },
        Op::Write {
            vol: 0,
            sector: 3,
            sectors: 9,
        },
        Op::CopyStep { slot: 0, grains: 2 },
    ] {
        w.apply(&op, &mut trace).unwrap();
    }
    w.engine().save()
}

#[test]
fn engine_loader_takes_any_state() {
    let valid = saved_engine();
    fuzz::engine_state(&valid).unwrap();
    let payload = valid[24..].to_vec();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for i in 0..cases(5000) {
        let mut bytes = match i % 4 {
            0 => fuzz::random_bytes(&mut rng, 0..200),
            1 => valid.clone(),
            _ => payload.clone(),
        };
        fuzz::mutate(&mut rng, &mut bytes);
        if rng.random_bool(0.3) && !bytes.is_empty() {
            let at = rng.random_range(0..bytes.len());
            bytes[at] = 0xff;
        }
        fuzz::engine_state(&bytes).unwrap_or_else(|e| panic!("case {i}: {e}"));
    }
}
