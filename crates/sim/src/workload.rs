//! Operations of a simulated workload and the seeded generator that picks them.
//!
//! The same operation list drives the engine-only world and the controller
//! world; a world ignores what it cannot do (and records that in the trace).
//! Map operations name a *slot*: the n-th map the run created, so a sequence
//! stays meaningful whatever ids the system hands out.

use std::fmt;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use timezero::CopyType;

/// How a simulated crash treats unflushed writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashKind {
    /// Process crash: volatile state lost, writes handed to the OS survive.
    Process,
    /// Power loss: unflushed writes dropped.
    PowerLoss,
    /// Power loss where each pending write lands whole, as a sector prefix or
    /// not at all (seeded).
    Torn,
    /// Power loss keeping a random subset of pending writes (seeded).
    RandomSubset,
}

impl CrashKind {
    /// Name used in the trace and the fault counters.
    pub fn name(self) -> &'static str {
        match self {
            CrashKind::Process => "crash.process",
            CrashKind::PowerLoss => "crash.power-loss",
            CrashKind::Torn => "crash.torn",
            CrashKind::RandomSubset => "crash.random-subset",
        }
    }
}

/// A host-side event the resource manager recovers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostEvent {
    /// The resource manager restarted.
    RmRestart,
    /// The host operating system was IPL'd.
    HostIpl,
    /// Backup program `P<n>` ended abnormally.
    Abend(u8),
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Host write of whole sectors.
    Write {
        /// Volume index.
        vol: usize,
        /// First sector.
        sector: u64,
        /// Sectors.
        sectors: u64,
    },
    /// Host write of whole sectors with FUA (forced unit access): durable
    /// once acknowledged.
    WriteFua {
        /// Volume index.
        vol: usize,
        /// First sector.
        sector: u64,
        /// Sectors.
        sectors: u64,
    },
    /// Host writes a client had in flight together, handed to the
    /// controller as one batch (`Subsystem::write_many`), applied in order.
    WriteBatch {
        /// Volume index.
        vol: usize,
        /// (first sector, sectors) of each write.
        writes: Vec<(u64, u64)>,
    },
    /// NBD TRIM (discard): the range reads as zeros afterwards.
    Trim {
        /// Volume index.
        vol: usize,
        /// First sector.
        sector: u64,
        /// Sectors.
        sectors: u64,
    },
    /// NBD WRITE_ZEROES, with or without FUA.
    WriteZeroes {
        /// Volume index.
        vol: usize,
        /// First sector.
        sector: u64,
        /// Sectors.
        sectors: u64,
        /// Forced unit access: durable once acknowledged.
        fua: bool,
    },
    /// Host flush of one volume.
    Flush {
        /// Volume index.
        vol: usize,
    },
    /// Define a map.
    CreateMap {
        /// Source volume index.
        source: usize,
        /// Target volume index.
        target: usize,
        /// Clone or snapshot.
        copy_type: CopyType,
        /// Background copy rate (0..=150).
        copy_rate: u8,
        /// Incremental (full maps only).
        incremental: bool,
    },
    /// Prepare and start a map (restore allowed if `restore`).
    Start {
        /// Map slot.
        slot: usize,
        /// `-restore`.
        restore: bool,
    },
    /// Stop a map.
    Stop {
        /// Map slot.
        slot: usize,
        /// `-force`.
        force: bool,
    },
    /// Delete a map.
    Delete {
        /// Map slot.
        slot: usize,
        /// `-force`.
        force: bool,
    },
    /// Start the maps of slots `a` and `b` at one instant as a consistency
    /// group (made for the op; both sources flushed first). Unless `keep`,
    /// the group is deleted afterwards (its maps stay as the start left
    /// them); a kept group takes the starts, stops and deletes of its maps
    /// from then on.
    StartGroup {
        /// First map slot.
        a: usize,
        /// Second map slot (not `a`).
        b: usize,
        /// `-restore`.
        restore: bool,
        /// Keep the group after the start.
        keep: bool,
    },
    /// Bitmap offline.
    Suspend {
        /// Map slot.
        slot: usize,
    },
    /// Bitmap online.
    Resume {
        /// Map slot.
        slot: usize,
    },
    /// Background copy or cleaning of up to `grains` grains.
    CopyStep {
        /// Map slot.
        slot: usize,
        /// Grains.
        grains: usize,
    },
    /// Crash and IPL (engine world: save and reload the engine).
    Crash {
        /// How unflushed writes fare.
        kind: CrashKind,
        /// Also crash once during the IPL's replay.
        during_replay: bool,
    },
    /// Subsystem reset notification.
    Reset {
        /// The subsystem lost its volatile state (sessions, caches).
        lose_volatile: bool,
    },
    /// Start a backup copy session (patent A) through the resource manager:
    /// tracks `first..first+tracks` of `source` onto `target`.
    StartSession {
        /// Source volume index.
        source: usize,
        /// Target volume index.
        target: usize,
        /// First protected track.
        first: u64,
        /// Protected tracks.
        tracks: u64,
        /// Backup program number (`P<n>`).
        program: u8,
    },
    /// Complete the n-th session started.
    CompleteSession {
        /// Session slot.
        slot: usize,
    },
    /// A host-side event for the resource manager.
    Host(HostEvent),
    /// Delete volume `vol` and create it again under the same name and
    /// model (refused while a map or session uses it): the new volume reads
    /// zeros, and no IPL brings the old data back.
    Recreate {
        /// Volume index.
        vol: usize,
        /// The volume's sectors (all become zeros).
        sectors: u64,
    },
}

impl Op {
    /// Whether the op's map or session slot exists in a run that has
    /// `maps` map slots and `sessions` session slots (a fixed sequence
    /// replayed on a changed system may name one that was never made).
    pub fn fits(&self, maps: usize, sessions: usize) -> bool {
        match *self {
            Op::Start { slot, .. }
            | Op::Stop { slot, .. }
            | Op::Delete { slot, .. }
            | Op::Suspend { slot }
            | Op::Resume { slot }
            | Op::CopyStep { slot, .. } => slot < maps,
            Op::StartGroup { a, b, .. } => a < maps && b < maps,
            Op::CompleteSession { slot } => slot < sessions,
            _ => true,
        }
    }
}

impl Op {
    /// Whether the op starts maps (a map start, or a group start).
    pub fn starts_maps(&self) -> bool {
        matches!(self, Op::Start { .. } | Op::StartGroup { .. })
    }
}

/// What a host data operation writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostWrite {
    /// Volume index.
    pub vol: usize,
    /// First sector.
    pub sector: u64,
    /// Sectors.
    pub sectors: u64,
    /// Zeros (write id 0) rather than a new write's data.
    pub zeros: bool,
    /// Durable once acknowledged.
    pub fua: bool,
}

impl Op {
    /// The sectors a host data operation (write, FUA write, trim, write
    /// zeroes) changes, or `None` for any other operation.
    pub fn host_write(&self) -> Option<HostWrite> {
        let (vol, sector, sectors, zeros, fua) = match *self {
            Op::Write {
                vol,
                sector,
                sectors,
            } => (vol, sector, sectors, false, false),
            Op::WriteFua {
                vol,
                sector,
                sectors,
            } => (vol, sector, sectors, false, true),
            Op::Trim {
                vol,
                sector,
                sectors,
            } => (vol, sector, sectors, true, false),
            Op::WriteZeroes {
                vol,
                sector,
                sectors,
                fua,
            } => (vol, sector, sectors, true, fua),
            // Every sector becomes zeros, durably once acknowledged.
            Op::Recreate { vol, sectors } => (vol, 0, sectors, true, true),
            _ => return None,
        };
        Some(HostWrite {
            vol,
            sector,
            sectors,
            zeros,
            fua,
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Write {
                vol,
                sector,
                sectors,
            } => write!(f, "write v{vol} sectors {sector}+{sectors}"),
            Op::WriteFua {
                vol,
                sector,
                sectors,
            } => write!(f, "write-fua v{vol} sectors {sector}+{sectors}"),
            Op::Trim {
                vol,
                sector,
                sectors,
            } => write!(f, "trim v{vol} sectors {sector}+{sectors}"),
            Op::WriteZeroes {
                vol,
                sector,
                sectors,
                fua,
            } => write!(
                f,
                "write-zeroes v{vol} sectors {sector}+{sectors}{}",
                if *fua { " fua" } else { "" }
            ),
            Op::WriteBatch { vol, writes } => {
                write!(f, "write-batch v{vol} sectors")?;
                for (sector, sectors) in writes {
                    write!(f, " {sector}+{sectors}")?;
                }
                Ok(())
            }
            Op::Flush { vol } => write!(f, "flush v{vol}"),
            Op::CreateMap {
                source,
                target,
                copy_type,
                copy_rate,
                incremental,
            } => write!(
                f,
                "create-map v{source}->v{target} {copy_type} rate {copy_rate}{}",
                if *incremental { " incremental" } else { "" }
            ),
            Op::Start { slot, restore } => write!(
                f,
                "start m#{slot}{}",
                if *restore { " -restore" } else { "" }
            ),
            Op::Stop { slot, force } => {
                write!(f, "stop m#{slot}{}", if *force { " -force" } else { "" })
            }
            Op::Delete { slot, force } => {
                write!(f, "delete m#{slot}{}", if *force { " -force" } else { "" })
            }
            Op::StartGroup {
                a,
                b,
                restore,
                keep,
            } => write!(
                f,
                "start-group m#{a} m#{b}{}{}",
                if *restore { " -restore" } else { "" },
                if *keep { " keep" } else { "" }
            ),
            Op::Suspend { slot } => write!(f, "suspend m#{slot}"),
            Op::Resume { slot } => write!(f, "resume m#{slot}"),
            Op::CopyStep { slot, grains } => write!(f, "copy-step m#{slot} {grains}"),
            Op::Crash {
                kind,
                during_replay,
            } => {
                write!(
                    f,
                    "{}{}",
                    kind.name(),
                    if *during_replay {
                        " +crash-during-replay"
                    } else {
                        ""
                    }
                )
            }
            Op::Reset { lose_volatile } => write!(
                f,
                "reset{}",
                if *lose_volatile { " lose-volatile" } else { "" }
            ),
            Op::StartSession {
                source,
                target,
                first,
                tracks,
                program,
            } => {
                write!(
                    f,
                    "start-session v{source}[{first}+{tracks}]->v{target} P{program}"
                )
            }
            Op::CompleteSession { slot } => write!(f, "complete-session s#{slot}"),
            Op::Host(e) => write!(f, "host {e:?}"),
            Op::Recreate { vol, .. } => write!(f, "recreate v{vol}"),
        }
    }
}

impl Op {
    /// The operation as Rust source (`Op::Write { .. }`), for pasting a
    /// failing run into tests/regressions.rs.
    pub fn to_rust(&self) -> String {
        let text = format!("Op::{self:?}");
        text.replace("copy_type: Full", "copy_type: CopyType::Full")
            .replace("copy_type: Nocopy", "copy_type: CopyType::Nocopy")
            .replace("kind: Process", "kind: CrashKind::Process")
            .replace("kind: PowerLoss", "kind: CrashKind::PowerLoss")
            .replace("kind: Torn", "kind: CrashKind::Torn")
            .replace("kind: RandomSubset", "kind: CrashKind::RandomSubset")
            .replace("Host(", "Op::Host(HostEvent::")
            .replace("Op::Op::Host", "Op::Host")
            .replace("writes: [", "writes: vec![")
    }
}

/// Shape of the simulated system the generator aims at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Volumes.
    pub volumes: usize,
    /// Tracks per volume.
    pub tracks: u64,
    /// Sectors per track.
    pub sectors_per_track: u64,
}

/// Relative weights of the operation kinds (0 disables one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    /// Host writes.
    pub write: u32,
    /// Host writes with FUA.
    pub write_fua: u32,
    /// TRIM / discard.
    pub trim: u32,
    /// WRITE_ZEROES (with or without FUA).
    pub write_zeroes: u32,
    /// Flushes.
    pub flush: u32,
    /// Map creation.
    pub create: u32,
    /// Starts.
    pub start: u32,
    /// Stops.
    pub stop: u32,
    /// Deletes.
    pub delete: u32,
    /// Consistency-group starts.
    pub group: u32,
    /// Suspend and resume.
    pub suspend: u32,
    /// Background copy steps.
    pub copy: u32,
    /// Crashes with IPL.
    pub crash: u32,
    /// Reset notifications.
    pub reset: u32,
    /// Session starts and completions.
    pub session: u32,
    /// Host events (resource-manager restart, host IPL, program abend).
    pub host: u32,
    /// Volume deleted and created again under its name.
    pub recreate: u32,
}

impl Weights {
    /// A mix for runs with crashes and resets.
    pub const DEFAULT: Weights = Weights {
        write: 36,
        write_fua: 4,
        trim: 3,
        write_zeroes: 3,
        flush: 10,
        create: 8,
        start: 10,
        stop: 6,
        delete: 3,
        group: 3,
        suspend: 3,
        copy: 16,
        crash: 5,
        reset: 3,
        session: 6,
        host: 3,
        recreate: 2,
    };

    fn total(&self) -> u32 {
        self.write
            + self.write_fua
            + self.trim
            + self.write_zeroes
            + self.flush
            + self.create
            + self.start
            + self.stop
            + self.delete
            + self.group
            + self.suspend
            + self.copy
            + self.crash
            + self.reset
            + self.session
            + self.host
            + self.recreate
    }
}

/// Picks the next operation; `maps` / `sessions` are how many map and
/// session slots exist.
pub fn next_op(
    rng: &mut ChaCha8Rng,
    shape: &Shape,
    weights: &Weights,
    maps: usize,
    sessions: usize,
) -> Op {
    let total = weights.total().max(1);
    loop {
        let mut x = rng.random_range(0..total);
        let mut pick = |w: u32| {
            if x < w {
                true
            } else {
                x -= w;
                false
            }
        };
        let vol = rng.random_range(0..shape.volumes);
        if pick(weights.write) {
            return write_op(rng, shape, vol);
        }
        if pick(weights.write_fua) {
            let (sector, sectors) = write_range(rng, shape);
            return Op::WriteFua {
                vol,
                sector,
                sectors,
            };
        }
        if pick(weights.trim) {
            let (sector, sectors) = write_range(rng, shape);
            return Op::Trim {
                vol,
                sector,
                sectors,
            };
        }
        if pick(weights.write_zeroes) {
            let (sector, sectors) = write_range(rng, shape);
            return Op::WriteZeroes {
                vol,
                sector,
                sectors,
                fua: rng.random_bool(0.3),
            };
        }
        if pick(weights.flush) {
            return Op::Flush { vol };
        }
        if pick(weights.create) {
            let mut target = rng.random_range(0..shape.volumes - 1);
            if target >= vol {
                target += 1;
            }
            let copy_type = if rng.random_bool(0.6) {
                CopyType::Full
            } else {
                CopyType::Nocopy
            };
            let copy_rate = match copy_type {
                CopyType::Full => [0, 50, 100][rng.random_range(0..3)],
                _ => 0,
            };
            let incremental = copy_type == CopyType::Full && rng.random_bool(0.3);
            return Op::CreateMap {
                source: vol,
                target,
                copy_type,
                copy_rate,
                incremental,
            };
        }
        let slot_weights = [
            weights.start,
            weights.stop,
            weights.delete,
            weights.group,
            weights.suspend,
            weights.copy,
        ];
        if maps == 0 {
            // No map yet: the map operations' share falls through to the rest.
            for w in slot_weights {
                pick(w);
            }
        } else {
            let slot = rng.random_range(0..maps);
            if pick(weights.start) {
                return Op::Start {
                    slot,
                    restore: rng.random_bool(0.2),
                };
            }
            if pick(weights.stop) {
                return Op::Stop {
                    slot,
                    force: rng.random_bool(0.25),
                };
            }
            if pick(weights.delete) {
                return Op::Delete {
                    slot,
                    force: rng.random_bool(0.5),
                };
            }
            if pick(weights.group) && maps >= 2 {
                let mut b = rng.random_range(0..maps - 1);
                if b >= slot {
                    b += 1;
                }
                return Op::StartGroup {
                    a: slot,
                    b,
                    restore: rng.random_bool(0.2),
                    keep: rng.random_bool(0.5),
                };
            }
            if pick(weights.suspend) {
                return if rng.random_bool(0.5) {
                    Op::Suspend { slot }
                } else {
                    Op::Resume { slot }
                };
            }
            if pick(weights.copy) {
                return Op::CopyStep {
                    slot,
                    grains: rng.random_range(1..=4),
                };
            }
        }
        if pick(weights.crash) {
            let kind = [
                CrashKind::Process,
                CrashKind::PowerLoss,
                CrashKind::Torn,
                CrashKind::RandomSubset,
            ][rng.random_range(0..4)];
            return Op::Crash {
                kind,
                during_replay: rng.random_bool(0.2),
            };
        }
        if pick(weights.reset) {
            return Op::Reset {
                lose_volatile: rng.random_bool(0.5),
            };
        }
        if pick(weights.session) {
            if sessions > 0 && rng.random_bool(0.4) {
                return Op::CompleteSession {
                    slot: rng.random_range(0..sessions),
                };
            }
            let mut target = rng.random_range(0..shape.volumes - 1);
            if target >= vol {
                target += 1;
            }
            let first = rng.random_range(0..shape.tracks);
            let tracks = rng.random_range(1..=shape.tracks - first);
            return Op::StartSession {
                source: vol,
                target,
                first,
                tracks,
                program: rng.random_range(0..2),
            };
        }
        if pick(weights.host) {
            return Op::Host(match rng.random_range(0..3) {
                0 => HostEvent::RmRestart,
                1 => HostEvent::HostIpl,
                _ => HostEvent::Abend(rng.random_range(0..2)),
            });
        }
        if pick(weights.recreate) {
            return Op::Recreate {
                vol,
                sectors: shape.tracks * shape.sectors_per_track,
            };
        }
    }
}

fn write_op(rng: &mut ChaCha8Rng, shape: &Shape, vol: usize) -> Op {
    // A quarter of the writes come as a batch of 2 to 5 (what a client with
    // several writes in flight hands the controller), overlapping at times.
    if rng.random_bool(0.25) {
        let n = rng.random_range(2..=5);
        return Op::WriteBatch {
            vol,
            writes: (0..n).map(|_| write_range(rng, shape)).collect(),
        };
    }
    let (sector, sectors) = write_range(rng, shape);
    Op::Write {
        vol,
        sector,
        sectors,
    }
}

/// A host range: whole tracks (no fill needed on an unsplit target grain)
/// or any sectors.
fn write_range(rng: &mut ChaCha8Rng, shape: &Shape) -> (u64, u64) {
    let spt = shape.sectors_per_track;
    let total = shape.tracks * spt;
    if rng.random_bool(0.3) {
        let track = rng.random_range(0..shape.tracks);
        let n = rng.random_range(1..=2).min(shape.tracks - track);
        return (track * spt, n * spt);
    }
    let sector = rng.random_range(0..total);
    let sectors = rng.random_range(1..=2 * spt).min(total - sector);
    (sector, sectors)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn ops_stay_inside_the_shape_and_cover_every_kind() {
        let shape = Shape {
            volumes: 3,
            tracks: 8,
            sectors_per_track: 8,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut kinds = std::collections::HashSet::new();
        for i in 0..5000 {
            let op = next_op(&mut rng, &shape, &Weights::DEFAULT, i % 4, i % 3);
            if let Some(w) = op.host_write() {
                assert!(
                    w.vol < 3 && w.sectors >= 1 && w.sector + w.sectors <= 64,
                    "{op}"
                );
            }
            if let Op::WriteBatch { vol, writes } = &op {
                assert!(*vol < 3 && (2..=5).contains(&writes.len()), "{op}");
                assert!(writes.iter().all(|&(s, n)| n >= 1 && s + n <= 64), "{op}");
            }
            match &op {
                Op::CreateMap { source, target, .. } => assert!(source != target && *target < 3),
                Op::Start { slot, .. } | Op::Stop { slot, .. } | Op::CopyStep { slot, .. } => {
                    assert!(*slot < i % 4)
                }
                _ => {}
            }
            kinds.insert(std::mem::discriminant(&op));
        }
        assert_eq!(kinds.len(), 20);
    }

    #[test]
    fn new_host_ops_round_trip_and_print() {
        let ops = [
            Op::WriteFua {
                vol: 1,
                sector: 3,
                sectors: 2,
            },
            Op::Trim {
                vol: 0,
                sector: 8,
                sectors: 8,
            },
            Op::WriteZeroes {
                vol: 2,
                sector: 5,
                sectors: 1,
                fua: true,
            },
        ];
        for op in &ops {
            let json = serde_json::to_string(op).unwrap();
            assert_eq!(&serde_json::from_str::<Op>(&json).unwrap(), op);
            assert!(op.to_rust().starts_with("Op::"), "{}", op.to_rust());
            assert!(op.host_write().is_some());
        }
        assert_eq!(ops[2].to_string(), "write-zeroes v2 sectors 5+1 fua");
        let batch = Op::WriteBatch {
            vol: 1,
            writes: vec![(0, 8), (4, 2)],
        };
        let json = serde_json::to_string(&batch).unwrap();
        assert_eq!(serde_json::from_str::<Op>(&json).unwrap(), batch);
        assert_eq!(batch.to_string(), "write-batch v1 sectors 0+8 4+2");
        assert_eq!(
            batch.to_rust(),
            "Op::WriteBatch { vol: 1, writes: vec![(0, 8), (4, 2)] }"
        );
        assert!(batch.host_write().is_none());
        let old: Op =
            serde_json::from_str(r#"{"write":{"vol":0,"sector":1,"sectors":2}}"#).unwrap();
        assert_eq!(
            old.host_write().map(|w| (w.zeros, w.fua)),
            Some((false, false))
        );
    }
}
