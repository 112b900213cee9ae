//! The concurrent tier: several host writers, a reader of the point-in-time
//! targets and the background copier on real threads against one real
//! controller, then a crash and IPL.
//!
//! Each writer owns a disjoint set of sectors of the source and writes them
//! again and again with self-describing data (fresh write ids), so the
//! expected content of every sector is the last write its owner had
//! acknowledged. Checked:
//! - every acknowledged write is readable (after the run, and after a crash
//!   and IPL that follow a host flush: flushed writes are never lost);
//! - every point-in-time image is intact while writers and copier race
//!   (the reader thread) and afterwards: a nocopy and a full target read the
//!   source as it was at the start;
//! - group commit really batched (more than one item per batch on average),
//!   so the interleavings above went through multi-item batches.
//!
//! What it does not do: inject faults (the seeded single-threaded worlds do),
//! or decide interleavings (the OS does; a failure prints the seed of the
//! data, not a schedule).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use controller::{
    CopyType, DurabilityMode, MapCreate, OpenOptions, Subsystem, SubsystemConfig, VolumeConfig,
};
use geometry::DeviceModel;
use volume_store::{CrashMode, FaultEffect, FaultRule, OpFilter, Trigger};

use crate::data::{decode_sector, fill_sector, SECTOR_BYTES};
use crate::stores::SimStores;

/// What one concurrent run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConcurrentReport {
    /// Host writes acknowledged.
    pub writes_acked: u64,
    /// Reads of the point-in-time targets made while writers ran.
    pub racing_reads: u64,
    /// Group commits and the items they carried.
    pub group_commits: u64,
    /// Items committed by those group commits.
    pub group_commit_items: u64,
    /// Grains copied in the background while writers ran.
    pub background_grains: u64,
}

const TRACKS: u64 = 256;
const SECTORS_PER_TRACK: u64 = 8;

fn config() -> SubsystemConfig {
    let model = DeviceModel::Fb {
        size_bytes: TRACKS * SECTORS_PER_TRACK * SECTOR_BYTES as u64,
        track_size_bytes: SECTORS_PER_TRACK * SECTOR_BYTES as u64,
    };
    SubsystemConfig {
        id: "CONC01".into(),
        durability: DurabilityMode::Strict,
        listen: Default::default(),
        nbd: Default::default(),
        rates: Default::default(),
        volumes: ["S", "N", "F"]
            .iter()
            .map(|n| VolumeConfig {
                id: n.to_string(),
                model,
                read_only: false,
            })
            .collect(),
        peers: Vec::new(),
        host: None,
    }
}

fn open(dir: &std::path::Path, stores: &SimStores) -> Result<Subsystem, String> {
    let options = OpenOptions {
        provider: Some(Arc::new(stores.clone())),
        ..OpenOptions::default()
    };
    Subsystem::open_with(dir, config(), options).map_err(|e| e.full_message())
}

/// Reads every sector of `vol` and returns the write id each holds (or an
/// error naming the sector that is garbage or misplaced).
fn ids_of(sub: &Subsystem, vol: &str) -> Result<Vec<u32>, String> {
    let sectors = TRACKS * SECTORS_PER_TRACK;
    let mut buf = vec![0u8; (sectors as usize) * SECTOR_BYTES];
    sub.read(vol, 0, &mut buf)
        .map_err(|e| format!("read {vol}: {}", e.full_message()))?;
    buf.chunks(SECTOR_BYTES)
        .enumerate()
        .map(|(i, c)| {
            decode_sector(c, i as u64)
                .id()
                .ok_or_else(|| format!("{vol} sector {i} is not an intact write"))
        })
        .collect()
}

/// The bytes of `ids` written from `sector` on.
fn id_data(sector: u64, ids: &[u32]) -> Vec<u8> {
    let mut data = vec![0u8; ids.len() * SECTOR_BYTES];
    for (i, id) in ids.iter().enumerate() {
        fill_sector(
            &mut data[i * SECTOR_BYTES..(i + 1) * SECTOR_BYTES],
            *id,
            sector + i as u64,
        );
    }
    data
}

fn write_ids(sub: &Subsystem, vol: &str, sector: u64, ids: &[u32]) -> controller::Result<()> {
    sub.write(
        vol,
        sector * SECTOR_BYTES as u64,
        &id_data(sector, ids),
        false,
    )
}

/// One run: `writers` threads doing `writes_each` writes of 1-8 sectors.
pub fn run(writers: usize, writes_each: usize) -> Result<ConcurrentReport, String> {
    let dir = crate::controller_world::sim_tempdir().map_err(|e| e.to_string())?;
    let stores = SimStores::new(7);
    let sub = open(dir.path(), &stores)?;
    let sectors = TRACKS * SECTORS_PER_TRACK;
    // The image: every source sector written once (id = sector + 1), flushed.
    let next = Arc::new(AtomicU32::new(1));
    let image: Vec<u32> = (0..sectors as u32).map(|s| s + 1).collect();
    next.store(sectors as u32 + 1, Ordering::SeqCst);
    write_ids(&sub, "S", 0, &image).map_err(|e| e.full_message())?;
    sub.flush("S").map_err(|e| e.full_message())?;
    for (target, ty, rate) in [("N", CopyType::Nocopy, 0u8), ("F", CopyType::Full, 100)] {
        let mut req = MapCreate::new("S", target, ty);
        req.copy_rate = Some(rate);
        let m = sub.create_map(&req).map_err(|e| e.full_message())?;
        sub.start_map(m, false).map_err(|e| e.full_message())?;
    }
    // Flushes take a while (as on a disk), so commits overlap and batch.
    for vol in ["S", "N", "F"] {
        if let Some(s) = stores.volume(vol) {
            s.faulty().add_rule(FaultRule::new(
                OpFilter::Flush,
                Trigger::Always,
                FaultEffect::Latency(std::time::Duration::from_micros(500)),
            ));
        }
    }
    let before = sub.metrics();
    let stop = Arc::new(AtomicBool::new(false));
    // Expected source content: sector -> last acknowledged id (owner-ordered).
    let expect: Arc<Mutex<BTreeMap<u64, u32>>> = Arc::new(Mutex::new(
        (0..sectors).map(|s| (s, s as u32 + 1)).collect(),
    ));
    let mut handles = Vec::new();
    for w in 0..writers {
        let (sub, next, expect) = (sub.clone(), next.clone(), expect.clone());
        handles.push(std::thread::spawn(move || -> Result<u64, String> {
            // Writer w owns the sectors s with (s / 4) % writers == w (runs of
            // 4 sectors, so writes span tracks and share grains with others).
            let mine: Vec<u64> = (0..sectors)
                .filter(|s| (s / 4) % writers as u64 == w as u64)
                .collect();
            // Odd writers hand their writes over three at a time, as one
            // batch (`write_many`, what the NBD server does with writes a
            // client has in flight together); even ones one at a time.
            let per_call = if w % 2 == 1 { 3 } else { 1 };
            let mut acked = 0;
            let mut i = 0;
            while i < writes_each {
                let mut calls: Vec<(u64, Vec<u32>)> = Vec::new();
                for _ in 0..per_call.min(writes_each - i) {
                    let start = mine[(i * 7 + w * 13) % mine.len()];
                    let len = (1 + (i % 4) as u64).min(4 - start % 4);
                    let ids: Vec<u32> = (0..len)
                        .map(|_| next.fetch_add(1, Ordering::SeqCst))
                        .collect();
                    calls.push((start, ids));
                    i += 1;
                }
                let data: Vec<Vec<u8>> = calls.iter().map(|(s, ids)| id_data(*s, ids)).collect();
                let batch: Vec<(u64, &[u8])> = calls
                    .iter()
                    .zip(&data)
                    .map(|((s, _), d)| (s * SECTOR_BYTES as u64, d.as_slice()))
                    .collect();
                let outcomes = sub.write_many("S", &batch);
                if outcomes.len() != calls.len() {
                    return Err(format!(
                        "writer {w}: {} outcomes for {} writes",
                        outcomes.len(),
                        calls.len()
                    ));
                }
                let mut ex = expect.lock().map_err(|e| e.to_string())?;
                for ((start, ids), r) in calls.iter().zip(outcomes) {
                    r.map_err(|e| format!("writer {w}: {}", e.full_message()))?;
                    for (k, id) in ids.iter().enumerate() {
                        ex.insert(start + k as u64, *id);
                    }
                    acked += 1;
                }
            }
            Ok(acked)
        }));
    }
    let reader = {
        let (sub, stop, image) = (sub.clone(), stop.clone(), image.clone());
        std::thread::spawn(move || -> Result<u64, String> {
            let mut reads = 0;
            while !stop.load(Ordering::SeqCst) {
                for vol in ["N", "F"] {
                    if ids_of(&sub, vol)? != image {
                        return Err(format!(
                            "point-in-time image of {vol} changed while writers ran"
                        ));
                    }
                    reads += 1;
                }
            }
            Ok(reads)
        })
    };
    let copier = {
        let (sub, stop) = (sub.clone(), stop.clone());
        std::thread::spawn(move || -> Result<u64, String> {
            let mut grains = 0;
            while !stop.load(Ordering::SeqCst) {
                let r = sub.copy_step(64 * 1024).map_err(|e| e.full_message())?;
                grains += r.grains;
                if !r.more {
                    std::thread::yield_now();
                }
            }
            Ok(grains)
        })
    };
    let mut report = ConcurrentReport::default();
    for h in handles {
        report.writes_acked += h.join().map_err(|_| "writer panicked".to_string())??;
    }
    stop.store(true, Ordering::SeqCst);
    report.racing_reads = reader.join().map_err(|_| "reader panicked".to_string())??;
    report.background_grains = copier.join().map_err(|_| "copier panicked".to_string())??;
    let after = sub.metrics();
    report.group_commits = after.group_commits - before.group_commits;
    report.group_commit_items = after.group_commit_items - before.group_commit_items;
    let expected: Vec<u32> = expect
        .lock()
        .map_err(|e| e.to_string())?
        .values()
        .copied()
        .collect();
    let check = |sub: &Subsystem, when: &str| -> Result<(), String> {
        if ids_of(sub, "S")? != expected {
            return Err(format!(
                "{when}: an acknowledged write of S is not readable"
            ));
        }
        for vol in ["N", "F"] {
            if ids_of(sub, vol)? != image {
                return Err(format!("{when}: the point-in-time image of {vol} changed"));
            }
        }
        Ok(())
    };
    check(&sub, "after the run")?;
    // Flushed writes survive a power loss.
    sub.flush("S").map_err(|e| e.full_message())?;
    sub.abandon();
    stores
        .crash(CrashMode::DropAll)
        .map_err(|e| e.to_string())?;
    let sub = open(dir.path(), &stores)?;
    check(&sub, "after a power loss and IPL")?;
    sub.close().map_err(|e| e.full_message())?;
    Ok(report)
}
