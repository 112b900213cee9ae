//! The reference model (oracle): what every volume must read, sector by sector.
//!
//! For each sector of each volume the model keeps the list of write ids the
//! sector may hold after a crash, the last one being what it must hold now:
//! - an acknowledged host write appends its id; a successful flush of the
//!   volume collapses every list to its last entry (PIT-2: flushed data is
//!   never lost);
//! - starting a map copies the source's lists to the target (PIT-1: the
//!   target's image is the source's view at the start instant, then the
//!   target's own writes overlay it);
//! - a volume whose contents are undefined (target of a stopped map, or being
//!   prepared) holds [`ANY`] until written;
//! - a failed write may or may not have landed: the sector becomes
//!   *uncertain* until the next read settles it;
//! - after a crash every sector must hold one of its listed ids, and the list
//!   collapses to what was found (the crash image is now the durable state).
//!
//! Invariant: every list is non-empty; ids are never reused within a run.

use serde::{Deserialize, Serialize};

use crate::data::{decode_sector, write_data, SectorContent, SECTOR_BYTES};

/// "Any content is acceptable here" (undefined data).
pub const ANY: u32 = u32::MAX;

/// How a read is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadCheck {
    /// No crash since the last check: the sector must hold its current id
    /// (or, if uncertain, any listed id).
    Now,
    /// Just after a crash and recovery: any listed id.
    AfterCrash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SectorExpect {
    allowed: Vec<u32>,
    uncertain: bool,
}

impl SectorExpect {
    fn zero() -> SectorExpect {
        SectorExpect {
            allowed: vec![0],
            uncertain: false,
        }
    }

    fn current(&self) -> u32 {
        self.allowed.last().copied().unwrap_or(ANY)
    }

    fn admits(&self, found: SectorContent, mode: ReadCheck) -> bool {
        let any = self.allowed.contains(&ANY);
        match (mode, self.uncertain) {
            (ReadCheck::Now, false) if self.current() != ANY => found.id() == Some(self.current()),
            _ => any || found.id().is_some_and(|id| self.allowed.contains(&id)),
        }
    }
}

/// A sector that does not read as the model says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// Volume index.
    pub volume: usize,
    /// Track.
    pub track: u64,
    /// Sector within the volume.
    pub sector: u64,
    /// Ids the sector may hold (`ANY` = u32::MAX).
    pub expected: Vec<u32>,
    /// What it holds, as text (`#17`, `zeros`, `garbage`, `#17 written for sector 9`).
    pub found: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self
            .expected
            .iter()
            .map(|i| {
                if *i == ANY {
                    "any".into()
                } else {
                    format!("#{i}")
                }
            })
            .collect();
        write!(
            f,
            "sector {} expected {} found {}",
            self.sector,
            ids.join("|"),
            self.found
        )
    }
}

fn describe(c: SectorContent) -> String {
    match c {
        SectorContent::Zero => "zeros (#0)".into(),
        SectorContent::Write(w) => format!("#{w}"),
        SectorContent::Misplaced { write, sector } => {
            format!("#{write} written for sector {sector}")
        }
        SectorContent::Garbage => "garbage".into(),
    }
}

/// The oracle of one run.
#[derive(Debug, Clone)]
pub struct Model {
    sectors_per_track: u64,
    tracks: u64,
    vols: Vec<Vec<SectorExpect>>,
    next_write: u32,
}

impl Model {
    /// `volumes` volumes of `tracks` tracks of `track_bytes` bytes, all zeros.
    pub fn new(volumes: usize, tracks: u64, track_bytes: u64) -> Model {
        let sectors_per_track = track_bytes / SECTOR_BYTES as u64;
        let n = (tracks * sectors_per_track) as usize;
        Model {
            sectors_per_track,
            tracks,
            vols: vec![vec![SectorExpect::zero(); n]; volumes],
            next_write: 1,
        }
    }

    /// Sectors per track.
    pub fn sectors_per_track(&self) -> u64 {
        self.sectors_per_track
    }

    /// Tracks per volume.
    pub fn tracks(&self) -> u64 {
        self.tracks
    }

    /// Number of volumes.
    pub fn volumes(&self) -> usize {
        self.vols.len()
    }

    /// Allocates a write id and returns it with the bytes to write at
    /// `first_sector..first_sector+count`. Nothing changes until
    /// [`Model::write_done`].
    pub fn new_write(&mut self, first_sector: u64, count: u64) -> (u32, Vec<u8>) {
        let id = self.next_write;
        self.next_write += 1;
        (id, write_data(id, first_sector, count))
    }

    /// The "write" of zeros over `count` sectors: write id 0 (an all-zero
    /// sector decodes as [`SectorContent::Zero`], id 0), allocating no id.
    /// Record its outcome with [`Model::write_done`] like any write.
    pub fn zero_write(&self, count: u64) -> (u32, Vec<u8>) {
        (0, vec![0u8; count as usize * SECTOR_BYTES])
    }

    /// Records the outcome of write `id` to `volume`: acknowledged (`ok`) or
    /// failed (the sectors become uncertain).
    pub fn write_done(&mut self, volume: usize, first_sector: u64, count: u64, id: u32, ok: bool) {
        for s in &mut self.vols[volume][first_sector as usize..(first_sector + count) as usize] {
            s.allowed.retain(|x| *x != id);
            s.allowed.push(id);
            if !ok {
                s.uncertain = true;
            }
        }
    }

    /// A successful flush of `volume`: its acknowledged writes are durable.
    pub fn flushed(&mut self, volume: usize) {
        for s in &mut self.vols[volume] {
            if !s.uncertain {
                let c = s.current();
                s.allowed.clear();
                s.allowed.push(c);
            }
        }
    }

    /// A successful FUA write (or write of zeros) to `count` sectors from
    /// `first_sector` of `volume`: only those sectors are durable now, each
    /// keeping exactly its current id across a crash.
    pub fn flushed_range(&mut self, volume: usize, first_sector: u64, count: u64) {
        for s in &mut self.vols[volume][first_sector as usize..(first_sector + count) as usize] {
            if !s.uncertain {
                let c = s.current();
                s.allowed.clear();
                s.allowed.push(c);
            }
        }
    }

    /// A map from `source` to `target` started: the target's image is the
    /// source's at this instant.
    pub fn snapshot(&mut self, source: usize, target: usize) {
        let image = self.vols[source].clone();
        self.vols[target] = image;
    }

    /// The snapshots of one start of several maps (a consistency group),
    /// `(source, target)` each: the engine inserts a map whose source is
    /// another member's target after that member, so that target's image is
    /// taken first and the later one reads it (docs/ENGINE.md, "Group
    /// starts"); the others are independent of order.
    pub fn snapshot_group(&mut self, pairs: &[(usize, usize)]) {
        let mut left: Vec<(usize, usize)> = pairs.to_vec();
        while !left.is_empty() {
            let i = left
                .iter()
                .position(|&(s, _)| !left.iter().any(|&(_, t)| t == s))
                .unwrap_or(0);
            let (s, t) = left.remove(i);
            self.snapshot(s, t);
        }
    }

    /// Like [`Model::snapshot`], for tracks `first..first+count` only (an
    /// extent-level copy; the target keeps its own data elsewhere).
    pub fn snapshot_tracks(&mut self, source: usize, target: usize, first: u64, count: u64) {
        let a = (first * self.sectors_per_track) as usize;
        let b = ((first + count) * self.sectors_per_track) as usize;
        let image = self.vols[source][a..b].to_vec();
        self.vols[target][a..b].clone_from_slice(&image);
    }

    /// `volume`'s contents become undefined (until written).
    pub fn forget(&mut self, volume: usize) {
        for s in &mut self.vols[volume] {
            *s = SectorExpect {
                allowed: vec![ANY],
                uncertain: false,
            };
        }
    }

    /// Whether every sector of `volume` is undefined.
    pub fn is_forgotten(&self, volume: usize) -> bool {
        self.vols[volume].iter().all(|s| s.allowed == [ANY])
    }

    /// The id `volume`'s sector must hold now (`ANY` if undefined or uncertain).
    pub fn current(&self, volume: usize, sector: u64) -> u32 {
        let s = &self.vols[volume][sector as usize];
        if s.uncertain {
            ANY
        } else {
            s.current()
        }
    }

    /// Checks one track read back as `buf` (one track long) and settles
    /// uncertain sectors (and, after a crash, every sector) to what was found.
    /// Returns the first mismatching sector.
    pub fn check_track(
        &mut self,
        volume: usize,
        track: u64,
        buf: &[u8],
        mode: ReadCheck,
    ) -> Result<(), Mismatch> {
        let first = track * self.sectors_per_track;
        for (i, chunk) in buf
            .chunks(SECTOR_BYTES)
            .enumerate()
            .take(self.sectors_per_track as usize)
        {
            let sector = first + i as u64;
            let found = decode_sector(chunk, sector);
            let s = &mut self.vols[volume][sector as usize];
            if !s.admits(found, mode) {
                return Err(Mismatch {
                    volume,
                    track,
                    sector,
                    expected: s.allowed.clone(),
                    found: describe(found),
                });
            }
            let settled = found.id().unwrap_or(ANY);
            match mode {
                ReadCheck::AfterCrash => {
                    s.allowed = vec![settled];
                    s.uncertain = false;
                }
                ReadCheck::Now if s.uncertain => {
                    s.allowed.retain(|x| *x != settled);
                    s.allowed.push(settled);
                    s.uncertain = false;
                }
                ReadCheck::Now => {}
            }
        }
        Ok(())
    }

    /// A crash happened but `track` of `volume` could not be read back (I/O
    /// error, or offline): it may hold any listed id, to be settled by the
    /// next read.
    pub fn crash_unread(&mut self, volume: usize, track: u64) {
        let first = (track * self.sectors_per_track) as usize;
        for s in &mut self.vols[volume][first..first + self.sectors_per_track as usize] {
            if s.allowed.len() > 1 {
                s.uncertain = true;
            }
        }
    }

    /// Whether any sector of `volume`'s `track` may still change on a crash
    /// (holds unflushed or uncertain data).
    pub fn track_is_volatile(&self, volume: usize, track: u64) -> bool {
        let first = (track * self.sectors_per_track) as usize;
        self.vols[volume][first..first + self.sectors_per_track as usize]
            .iter()
            .any(|s| s.uncertain || s.allowed.len() > 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TB: u64 = 4096;

    fn track_of(model: &mut Model, writes: &[(u32, u64)]) -> Vec<u8> {
        // Builds a track image from (write id, sector) pairs over zeros.
        let mut buf = vec![0u8; TB as usize];
        for (id, sector) in writes {
            let d = write_data(*id, *sector, 1);
            let i = (*sector % model.sectors_per_track()) as usize * SECTOR_BYTES;
            buf[i..i + SECTOR_BYTES].copy_from_slice(&d);
        }
        buf
    }

    #[test]
    fn acknowledged_write_must_read_back_and_survive_only_if_flushed() {
        let mut m = Model::new(2, 4, TB);
        let (a, data) = m.new_write(1, 1);
        m.write_done(0, 1, 1, a, true);
        assert_eq!(data.len(), SECTOR_BYTES);
        let zeros = vec![0u8; TB as usize];
        assert!(
            m.check_track(0, 0, &zeros, ReadCheck::Now).is_err(),
            "lost write seen now"
        );
        assert!(
            m.check_track(0, 0, &zeros, ReadCheck::AfterCrash).is_ok(),
            "unflushed may vanish"
        );
        // After the crash the lost write is gone from the model.
        let with_a = track_of(&mut m, &[(a, 1)]);
        assert!(m.check_track(0, 0, &with_a, ReadCheck::Now).is_err());
        let (b, _) = m.new_write(1, 1);
        m.write_done(0, 1, 1, b, true);
        m.flushed(0);
        let e = m
            .check_track(0, 0, &zeros, ReadCheck::AfterCrash)
            .unwrap_err();
        assert_eq!((e.sector, e.expected.clone()), (1, vec![b]));
        assert!(e.to_string().contains("found zeros"), "{e}");
    }

    #[test]
    fn fua_write_is_durable_for_its_sectors_only_and_zeros_are_id_0() {
        let mut m = Model::new(1, 2, TB);
        let (a, _) = m.new_write(0, 2);
        m.write_done(0, 0, 2, a, true);
        let (b, _) = m.new_write(1, 1);
        m.write_done(0, 1, 1, b, true);
        m.flushed_range(0, 1, 1);
        let zeros = vec![0u8; TB as usize];
        // Sector 0 (not FUA) may still be lost; sector 1 (FUA) may not.
        let e = m
            .check_track(0, 0, &zeros, ReadCheck::AfterCrash)
            .unwrap_err();
        assert_eq!((e.sector, e.expected.clone()), (1, vec![b]));
        let img = track_of(&mut m, &[(b, 1)]);
        assert!(m.check_track(0, 0, &img, ReadCheck::AfterCrash).is_ok());
        // A write of zeros is write id 0: it must read back as zeros now,
        // and the earlier id survives a crash unless the zeros were FUA.
        let (z, data) = m.zero_write(1);
        assert_eq!(z, 0);
        assert_eq!(decode_sector(&data, 1), SectorContent::Zero);
        m.write_done(0, 1, 1, z, true);
        assert!(m.check_track(0, 0, &img, ReadCheck::Now).is_err());
        assert!(m.check_track(0, 0, &zeros, ReadCheck::Now).is_ok());
        let mut m2 = m.clone();
        assert!(m2.check_track(0, 0, &img, ReadCheck::AfterCrash).is_ok());
        m.flushed_range(0, 1, 1);
        assert!(m.check_track(0, 0, &img, ReadCheck::AfterCrash).is_err());
    }

    #[test]
    fn snapshot_keeps_the_source_image_while_the_source_changes() {
        let mut m = Model::new(2, 4, TB);
        let (a, _) = m.new_write(0, 1);
        m.write_done(0, 0, 1, a, true);
        m.flushed(0);
        m.snapshot(0, 1);
        let (b, _) = m.new_write(0, 1);
        m.write_done(0, 0, 1, b, true);
        let img_a = track_of(&mut m, &[(a, 0)]);
        let img_b = track_of(&mut m, &[(b, 0)]);
        assert!(m.check_track(1, 0, &img_a, ReadCheck::Now).is_ok());
        assert!(
            m.check_track(1, 0, &img_b, ReadCheck::Now).is_err(),
            "target must not see the new write"
        );
        assert!(m.check_track(0, 0, &img_b, ReadCheck::Now).is_ok());
    }

    #[test]
    fn failed_write_is_settled_by_the_next_read_and_forgotten_reads_anything() {
        let mut m = Model::new(1, 2, TB);
        let (a, _) = m.new_write(0, 1);
        m.write_done(0, 0, 1, a, false);
        assert_eq!(m.current(0, 0), ANY);
        let zeros = vec![0u8; TB as usize];
        assert!(m.check_track(0, 0, &zeros, ReadCheck::Now).is_ok());
        let img_a = track_of(&mut m, &[(a, 0)]);
        assert!(
            m.check_track(0, 0, &img_a, ReadCheck::Now).is_err(),
            "settled to zeros"
        );
        m.forget(0);
        let mut garbage = vec![7u8; TB as usize];
        garbage[0] = 1;
        assert!(m.check_track(0, 0, &garbage, ReadCheck::Now).is_ok());
        assert!(m.is_forgotten(0));
    }
}
