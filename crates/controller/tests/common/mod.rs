//! A byte-level model of what each volume must read after a crash, and a
//! small workload over snapshots, clones, cascades and an incremental map.
#![allow(dead_code)]

use std::collections::BTreeMap;

use controller::testing::{pattern, VirtualSubsystem};
use controller::{CopyType, MapCreate, MapId, Result, SubsystemConfig};

pub const VOL_BYTES: usize = 512 << 10;
pub const GRAIN: u64 = 64 << 10;
pub const SECTOR: usize = 512;

pub fn config() -> SubsystemConfig {
    let mut text = String::from("id = \"CRASH\"\n");
    for v in ["S", "T1", "T2", "C", "I"] {
        text.push_str(&format!(
            "[[volumes]]\nid = \"{v}\"\nmodel = \"fb:512K:64K\"\n"
        ));
    }
    SubsystemConfig::from_toml_str(&text).unwrap()
}

/// Per volume: what reads return now, what survives a power loss for sure,
/// and the writes since the last flush (each may land, torn by sectors, or not).
#[derive(Clone, Default)]
pub struct Model {
    pub current: BTreeMap<String, Vec<u8>>,
    pub durable: BTreeMap<String, Vec<u8>>,
    pub pending: BTreeMap<String, Vec<(usize, Vec<u8>)>>,
    pub maps: BTreeMap<&'static str, MapId>,
}

impl Model {
    pub fn new() -> Model {
        let mut m = Model::default();
        for v in ["S", "T1", "T2", "C", "I"] {
            m.current.insert(v.into(), vec![0; VOL_BYTES]);
            m.durable.insert(v.into(), vec![0; VOL_BYTES]);
            m.pending.insert(v.into(), Vec::new());
        }
        m
    }

    pub fn write(&mut self, v: &str, off: usize, data: &[u8], fua: bool) {
        self.current.get_mut(v).unwrap()[off..off + data.len()].copy_from_slice(data);
        if fua {
            self.durable.get_mut(v).unwrap()[off..off + data.len()].copy_from_slice(data);
        }
        self.pending.get_mut(v).unwrap().push((off, data.to_vec()));
    }

    /// A write that failed: it may or may not have landed.
    pub fn maybe_write(&mut self, v: &str, off: usize, data: &[u8]) {
        self.pending.get_mut(v).unwrap().push((off, data.to_vec()));
    }

    pub fn flush(&mut self, v: &str) {
        let c = self.current[v].clone();
        self.durable.insert(v.into(), c);
        self.pending.get_mut(v).unwrap().clear();
    }

    /// A map source -> target starts: prepare flushes the source; the target
    /// reads the source's image from now on.
    pub fn start(&mut self, source: &str, target: &str) {
        self.flush(source);
        let img = self.current[source].clone();
        self.current.insert(target.into(), img.clone());
        self.durable.insert(target.into(), img);
        self.pending.get_mut(target).unwrap().clear();
    }

    /// Checks `img` of `v` after a crash: every sector is durable or one of
    /// the pending writes' values. Returns the first bad sector.
    pub fn check_after_crash(&self, v: &str, img: &[u8]) -> std::result::Result<(), String> {
        let durable = &self.durable[v];
        for s in (0..VOL_BYTES).step_by(SECTOR) {
            let got = &img[s..s + SECTOR];
            if got == &durable[s..s + SECTOR] {
                continue;
            }
            let ok = self.pending[v].iter().any(|(off, d)| {
                *off <= s && s + SECTOR <= off + d.len() && &d[s - off..s - off + SECTOR] == got
            });
            if !ok {
                return Err(format!(
                    "volume {v}: sector at byte {s} is neither durable nor a pending write"
                ));
            }
        }
        Ok(())
    }

    /// After a verified crash, what was read is the new truth.
    pub fn settle(&mut self, v: &str, img: Vec<u8>) {
        self.current.insert(v.into(), img.clone());
        self.durable.insert(v.into(), img);
        self.pending.get_mut(v).unwrap().clear();
    }
}

pub fn read_all(vs: &VirtualSubsystem, v: &str) -> Result<Vec<u8>> {
    let mut b = vec![0u8; VOL_BYTES];
    vs.sub().read(v, 0, &mut b)?;
    Ok(b)
}

/// Number of steps in [`step`].
pub const STEPS: usize = 16;

fn wr(
    vs: &VirtualSubsystem,
    m: &mut Model,
    v: &str,
    off: usize,
    len: usize,
    seed: u64,
    fua: bool,
) -> Result<()> {
    let data = pattern(seed, off as u64, len);
    match vs.sub().write(v, off as u64, &data, fua) {
        Ok(()) => {
            m.write(v, off, &data, fua);
            Ok(())
        }
        Err(e) => {
            m.maybe_write(v, off, &data);
            Err(e)
        }
    }
}

fn start(
    vs: &VirtualSubsystem,
    m: &mut Model,
    name: &'static str,
    s: &str,
    t: &str,
    ty: CopyType,
    incremental: bool,
) -> Result<()> {
    let id = match m.maps.get(name) {
        Some(id) => *id,
        None => {
            let mut req = MapCreate::new(s, t, ty);
            req.incremental = incremental;
            let id = vs.sub().create_map(&req)?;
            m.maps.insert(name, id);
            id
        }
    };
    vs.sub().start_map(id, false)?;
    m.start(s, t);
    Ok(())
}

/// Step `i` (0-based) of the workload; the model follows what succeeded.
pub fn step(vs: &VirtualSubsystem, m: &mut Model, i: usize) -> Result<()> {
    let sub = vs.sub();
    match i {
        0 => {
            wr(vs, m, "S", 0, VOL_BYTES, 1, false)?;
            sub.flush("S")?;
            m.flush("S");
            Ok(())
        }
        1 => start(vs, m, "snap1", "S", "T1", CopyType::Nocopy, false),
        2 => wr(vs, m, "S", 1024, 69_632, 2, false),
        3 => wr(vs, m, "T1", 4096, 4096, 3, true),
        4 => start(vs, m, "clone", "S", "C", CopyType::Full, false),
        5 => {
            wr(vs, m, "S", 2 * GRAIN as usize, GRAIN as usize, 4, false)?;
            sub.flush("S")?;
            m.flush("S");
            Ok(())
        }
        6 => sub.copy_step(128 << 10).map(|_| ()),
        7 => start(vs, m, "snap2", "S", "T2", CopyType::Nocopy, false),
        8 => wr(vs, m, "S", 0, 4 * GRAIN as usize, 5, false),
        9 => wr(vs, m, "T2", 5 * GRAIN as usize, GRAIN as usize, 6, true),
        10 => {
            start(vs, m, "incr", "S", "I", CopyType::Full, true)?;
            while sub.copy_step(1 << 30)?.more {}
            Ok(())
        }
        11 => {
            wr(vs, m, "S", 6 * GRAIN as usize + 512, 1024, 7, false)?;
            sub.flush("S")?;
            m.flush("S");
            Ok(())
        }
        12 => start(vs, m, "incr", "S", "I", CopyType::Full, true),
        13 => sub.copy_step(64 << 10).map(|_| ()),
        14 => wr(vs, m, "S", 3 * GRAIN as usize - 512, 2048, 8, false),
        15 => {
            sub.flush("S")?;
            m.flush("S");
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `len` bytes of a pattern that differs per `tag` and per offset.
pub fn tagged(tag: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| tag ^ (i as u8).wrapping_mul(31)).collect()
}

/// Reads `len` bytes at `off` of volume `v` (panics on an error).
pub fn read_at(s: &controller::Subsystem, v: &str, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    s.read(v, off, &mut b).unwrap();
    b
}
