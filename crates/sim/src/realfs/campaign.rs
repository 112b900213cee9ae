//! The workload, the model and the checks of crash-point enumeration over
//! real files (the recording layer is in [`super`]).
//!
//! A workload is a seeded sequence of [`Step`]s on four FB volumes of eight
//! 4 KiB tracks (`fb:32K:4K`): host writes of self-describing sectors
//! ([`crate::data`]), some FUA, discards and write_zeroes, host flushes, map
//! creation (nocopy and full), starts (the source is flushed first, as its
//! own unit, so the point-in-time image is certain), copy steps
//! (`Subsystem::copy_map`), stops and deletes. Each unit runs with capture
//! armed; afterwards the live volumes are read back against the model, and
//! every crash image of every captured flush boundary is IPL'd with the
//! production provider and checked:
//! - IPL-1: the open succeeds, and every map is in the state it had before
//!   the unit or the one the unit left it in;
//! - META-1: the IPL's checker (run because the image is dirty) finds nothing;
//! - PIT-1 / PIT-2: every sector reads one of the writes the model allows
//!   after a crash: a flushed (or FUA) write is certain, an unflushed one may
//!   or may not be there, a target started in the image reads its source's
//!   image at the start, a stopped target is undefined; garbage, a torn
//!   sector or a sector written for another place is never allowed;
//! - a refused read (offline) is allowed only where a map state explains it.
//!
//! Everything is deterministic from the workload seed (ChaCha8).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use controller::{
    CopyType, ErrorKind, MapCreate, MapId, MapState, MapView, OpenOptions, Subsystem,
    SubsystemConfig, VolumeConfig,
};
use geometry::DeviceModel;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{CaptureRule, CrashPoint, RealFileStores};
use crate::data::{decode_sector, write_data, SectorContent, SECTOR_BYTES};

/// Volumes of a workload.
pub const VOLUMES: usize = 4;
/// Tracks per volume.
pub const TRACKS: u64 = 8;
/// Bytes per track (= grain).
pub const TRACK_BYTES: u64 = 4096;
const SPT: u64 = TRACK_BYTES / SECTOR_BYTES as u64;
const SECTORS: u64 = TRACKS * SPT;
const VOLUME_BYTES: usize = (TRACKS * TRACK_BYTES) as usize;
/// "Any content": the sector is undefined (target of a stopped map).
const ANY: u32 = u32::MAX;

/// One workload operation. Map slots are taken modulo the maps created so
/// far (no map yet: the step does nothing), so a sequence stays valid
/// whatever the controller accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Host write of `count` sectors from `first`.
    Write {
        /// Volume index.
        vol: usize,
        /// First sector.
        first: u64,
        /// Sectors.
        count: u64,
        /// Forced unit access.
        fua: bool,
    },
    /// Host discard (`discard`) or write_zeroes.
    Zero {
        /// Volume index.
        vol: usize,
        /// First sector.
        first: u64,
        /// Sectors.
        count: u64,
        /// Discard rather than write_zeroes.
        discard: bool,
        /// Forced unit access.
        fua: bool,
    },
    /// Host flush.
    Flush {
        /// Volume index.
        vol: usize,
    },
    /// Creates a map.
    CreateMap {
        /// Source volume index.
        source: usize,
        /// Target volume index.
        target: usize,
        /// Full (clone) rather than nocopy (snapshot).
        full: bool,
    },
    /// Host flush of the source, then start.
    Start {
        /// Map slot.
        slot: usize,
    },
    /// `copy_map` with a budget of `grains` grains.
    CopyStep {
        /// Map slot.
        slot: usize,
        /// Grains.
        grains: u64,
    },
    /// Stop.
    Stop {
        /// Map slot.
        slot: usize,
        /// Force.
        force: bool,
    },
    /// Delete.
    Delete {
        /// Map slot.
        slot: usize,
        /// Force.
        force: bool,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fua = |b: bool| if b { " fua" } else { "" };
        match *self {
            Step::Write {
                vol,
                first,
                count,
                fua: u,
            } => write!(f, "write v{vol} sectors {first}+{count}{}", fua(u)),
            Step::Zero {
                vol,
                first,
                count,
                discard,
                fua: u,
            } => write!(
                f,
                "{} v{vol} sectors {first}+{count}{}",
                if discard { "discard" } else { "write_zeroes" },
                fua(u)
            ),
            Step::Flush { vol } => write!(f, "flush v{vol}"),
            Step::CreateMap {
                source,
                target,
                full,
            } => write!(
                f,
                "create {} map v{source} -> v{target}",
                if full { "full" } else { "nocopy" }
            ),
            Step::Start { slot } => write!(f, "start slot {slot}"),
            Step::CopyStep { slot, grains } => write!(f, "copy slot {slot} {grains} grains"),
            Step::Stop { slot, force } => {
                write!(f, "stop slot {slot}{}", if force { " force" } else { "" })
            }
            Step::Delete { slot, force } => {
                write!(f, "delete slot {slot}{}", if force { " force" } else { "" })
            }
        }
    }
}

/// The seeded workload of `seed`: `steps` operations.
pub fn generate(seed: u64, steps: usize) -> Vec<Step> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(steps);
    for i in 0..steps {
        let r = if i == 0 {
            55
        } else {
            rng.random_range(0..100u32)
        };
        let vol = rng.random_range(0..VOLUMES);
        let slot = rng.random_range(0..64usize);
        let step = match r {
            0..32 => {
                let first = rng.random_range(0..SECTORS);
                let count = rng.random_range(1..=(SECTORS - first).min(12));
                Step::Write {
                    vol,
                    first,
                    count,
                    fua: rng.random_ratio(1, 8),
                }
            }
            32..38 => {
                let (first, count) = if rng.random_bool(0.5) {
                    let t = rng.random_range(0..TRACKS);
                    (t * SPT, rng.random_range(1..=(TRACKS - t).min(2)) * SPT)
                } else {
                    let first = rng.random_range(0..SECTORS);
                    (first, rng.random_range(1..=(SECTORS - first).min(8)))
                };
                Step::Zero {
                    vol,
                    first,
                    count,
                    discard: rng.random_bool(0.5),
                    fua: rng.random_ratio(1, 8),
                }
            }
            38..50 => Step::Flush { vol },
            50..60 => Step::CreateMap {
                source: vol,
                target: (vol + rng.random_range(1..VOLUMES)) % VOLUMES,
                full: rng.random_bool(0.5),
            },
            60..72 => Step::Start { slot },
            72..86 => Step::CopyStep {
                slot,
                grains: rng.random_range(1..=4),
            },
            86..95 => Step::Stop {
                slot,
                force: rng.random_ratio(1, 4),
            },
            _ => Step::Delete {
                slot,
                force: rng.random_bool(0.5),
            },
        };
        out.push(step);
    }
    out
}

/// How much to enumerate.
#[derive(Debug, Clone)]
pub struct RealFsConfig {
    /// Operations per workload.
    pub steps: usize,
    /// Chance, in percent, that a flush boundary is captured.
    pub capture_percent: u32,
    /// At most this many captured boundaries per unit.
    pub captures_per_unit: usize,
    /// Also capture after every unit (not at a flush).
    pub after_each_unit: bool,
    /// Metadata prefixes per boundary (ends included).
    pub meta_prefixes: usize,
    /// Seeded random-subset images per boundary.
    pub random_images: usize,
    /// Seeded torn images per boundary.
    pub torn_images: usize,
    /// Deliberate bug (checker self-test): the controller's own volume
    /// flushes do nothing; host flushes stay real.
    pub skip_volume_flushes: bool,
    /// Where data directories and images go (default: `SIM_REALFS_DIR`,
    /// else `/dev/shm` when present, else the system temp directory).
    pub root: Option<PathBuf>,
}

impl RealFsConfig {
    /// The CI tier: every flush boundary, one random and one torn image each
    /// (100 workloads in well under a minute in debug).
    pub fn ci() -> RealFsConfig {
        RealFsConfig {
            random_images: 1,
            torn_images: 1,
            ..RealFsConfig::default()
        }
    }
}

impl Default for RealFsConfig {
    /// The thorough setting: every flush boundary (at most 8 per unit),
    /// metadata at 4 prefixes, two random and two torn images each.
    fn default() -> Self {
        RealFsConfig {
            steps: 30,
            capture_percent: 100,
            captures_per_unit: 8,
            after_each_unit: false,
            meta_prefixes: 4,
            random_images: 2,
            torn_images: 2,
            skip_volume_flushes: false,
            root: None,
        }
    }
}

/// A broken check, with what reproduces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealFsViolation {
    /// Workload seed.
    pub seed: u64,
    /// Step index (0-based; the number of steps for the final close).
    pub step: usize,
    /// The step as text.
    pub op: String,
    /// The crash image (`None`: the live run).
    pub image: Option<String>,
    /// `IPL-1`, `META-1`, `PIT-1`, `PIT-2`, `LIVE` (unexpected error or refusal).
    pub check: String,
    /// What was expected and found.
    pub detail: String,
}

impl fmt::Display for RealFsViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} seed {} step {} ({}){}: {} (reproduce: SIM_REALFS_SEED={} cargo test -p sim --test real_files one_seed -- --ignored --nocapture)",
            self.check,
            self.seed,
            self.step,
            self.op,
            self.image
                .as_ref()
                .map(|i| format!(" [crash image {i}]"))
                .unwrap_or_default(),
            self.detail,
            self.seed
        )
    }
}

/// The figures of a campaign.
#[derive(Debug, Clone, Default)]
pub struct RealFsFigures {
    /// Workloads run.
    pub workloads: u64,
    /// Steps run.
    pub steps: u64,
    /// Units run (a start is two: the source flush, then the start).
    pub units: u64,
    /// Requests the controller rejected (state, offline, limits).
    pub rejected: u64,
    /// Host writes acknowledged.
    pub host_writes: u64,
    /// Host discards and write_zeroes acknowledged.
    pub host_zeroes: u64,
    /// Host flushes acknowledged.
    pub host_flushes: u64,
    /// Maps created.
    pub maps_created: u64,
    /// Starts accepted.
    pub starts: u64,
    /// Grains copied by copy steps.
    pub grains_copied: u64,
    /// Stops accepted.
    pub stops: u64,
    /// Deletes accepted.
    pub deletes: u64,
    /// File flushes (fdatasync) seen during units.
    pub flush_boundaries: u64,
    /// Crash points taken (boundaries captured, plus after-unit points).
    pub crash_points: u64,
    /// Unflushed operations over all crash points.
    pub pending_ops: u64,
    /// Most unflushed operations at one crash point.
    pub max_pending: u64,
    /// Crash images built, IPL'd and checked.
    pub images: u64,
    /// IPLs that succeeded (= images when nothing failed).
    pub ipls: u64,
    /// Images holding at least one write torn at 4 KiB.
    pub images_torn: u64,
    /// Images of a unit that changed map states which came back in the
    /// states before it.
    pub images_state_before: u64,
    /// ... and those that came back in the states after it.
    pub images_state_after: u64,
    /// Sectors compared with the model (live and in images).
    pub sectors_checked: u64,
    /// Volume reads refused with a map state that explains it.
    pub refused_reads: u64,
    /// Clean IPLs at the end of workloads (close, reopen, compare).
    pub clean_ipls: u64,
    /// Time spent building and IPLing images.
    pub image_time: Duration,
    /// Wall time.
    pub wall: Duration,
    /// Everything that broke (at most one per workload: it stops there).
    pub violations: Vec<RealFsViolation>,
}

impl RealFsFigures {
    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &RealFsFigures) {
        self.workloads += o.workloads;
        self.steps += o.steps;
        self.units += o.units;
        self.rejected += o.rejected;
        self.host_writes += o.host_writes;
        self.host_zeroes += o.host_zeroes;
        self.host_flushes += o.host_flushes;
        self.maps_created += o.maps_created;
        self.starts += o.starts;
        self.grains_copied += o.grains_copied;
        self.stops += o.stops;
        self.deletes += o.deletes;
        self.flush_boundaries += o.flush_boundaries;
        self.crash_points += o.crash_points;
        self.pending_ops += o.pending_ops;
        self.max_pending = self.max_pending.max(o.max_pending);
        self.images += o.images;
        self.ipls += o.ipls;
        self.images_torn += o.images_torn;
        self.images_state_before += o.images_state_before;
        self.images_state_after += o.images_state_after;
        self.sectors_checked += o.sectors_checked;
        self.refused_reads += o.refused_reads;
        self.clean_ipls += o.clean_ipls;
        self.image_time += o.image_time;
        self.wall += o.wall;
        self.violations.extend(o.violations.iter().cloned());
    }
}

impl fmt::Display for RealFsFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "real-file crash points: {} workloads, {} steps ({} units, {} rejected), {:.1} s",
            self.workloads,
            self.steps,
            self.units,
            self.rejected,
            self.wall.as_secs_f64()
        )?;
        writeln!(
            f,
            "  host: {} writes, {} discards/write_zeroes, {} flushes; maps: {} created, {} starts, {} grains copied, {} stops, {} deletes",
            self.host_writes,
            self.host_zeroes,
            self.host_flushes,
            self.maps_created,
            self.starts,
            self.grains_copied,
            self.stops,
            self.deletes
        )?;
        writeln!(
            f,
            "  flush boundaries: {}, crash points: {} ({} unflushed ops, at most {} at one point)",
            self.flush_boundaries, self.crash_points, self.pending_ops, self.max_pending
        )?;
        writeln!(
            f,
            "  crash images: {} built, {} IPL'd and checked ({} with a torn write; control units: {} back in the state before, {} after), {:.1} s",
            self.images,
            self.ipls,
            self.images_torn,
            self.images_state_before,
            self.images_state_after,
            self.image_time.as_secs_f64()
        )?;
        writeln!(
            f,
            "  sectors checked: {}, refused reads (explained): {}, clean IPLs: {}",
            self.sectors_checked, self.refused_reads, self.clean_ipls
        )?;
        write!(f, "  violations: {}", self.violations.len())?;
        for v in &self.violations {
            write!(f, "\n    {v}")?;
        }
        Ok(())
    }
}

/// Per sector, the write ids it may hold after a crash; the last is what it
/// holds now (0 = zeros, [`ANY`] = undefined).
#[derive(Debug, Clone)]
struct Model {
    vols: Vec<Vec<Vec<u32>>>,
    next: u32,
}

fn describe(c: SectorContent) -> String {
    match c {
        SectorContent::Zero => "zeros".into(),
        SectorContent::Write(w) => format!("#{w}"),
        SectorContent::Misplaced { write, sector } => {
            format!("#{write} written for sector {sector}")
        }
        SectorContent::Garbage => "garbage".into(),
    }
}

impl Model {
    fn new() -> Model {
        Model {
            vols: vec![vec![vec![0]; SECTORS as usize]; VOLUMES],
            next: 1,
        }
    }

    fn new_id(&mut self) -> u32 {
        let id = self.next;
        self.next += 1;
        id
    }

    fn sectors(first: u64, count: u64) -> std::ops::Range<usize> {
        first as usize..(first + count) as usize
    }

    fn write(&mut self, vol: usize, first: u64, count: u64, id: u32) {
        for s in &mut self.vols[vol][Self::sectors(first, count)] {
            // An undefined sector stays possible until the write is flushed.
            s.retain(|x| *x != id);
            s.push(id);
        }
    }

    fn durable(&mut self, vol: usize, first: u64, count: u64) {
        for s in &mut self.vols[vol][Self::sectors(first, count)] {
            let last = *s.last().expect("never empty");
            *s = vec![last];
        }
    }

    fn flushed(&mut self, vol: usize) {
        self.durable(vol, 0, SECTORS);
    }

    fn snapshot(&mut self, source: usize, target: usize) {
        self.vols[target] = self.vols[source].clone();
    }

    fn forget(&mut self, vol: usize) {
        for s in &mut self.vols[vol] {
            *s = vec![ANY];
        }
    }

    fn check(
        &self,
        vol: usize,
        sector: u64,
        found: SectorContent,
        after_crash: bool,
    ) -> Result<(), String> {
        let allowed = &self.vols[vol][sector as usize];
        let ok = if after_crash {
            allowed.contains(&ANY) || found.id().is_some_and(|id| allowed.contains(&id))
        } else {
            allowed.last() == Some(&ANY) || found.id() == allowed.last().copied()
        };
        if ok {
            return Ok(());
        }
        let expected: Vec<String> = if after_crash {
            allowed.iter().map(|i| format!("#{i}")).collect()
        } else {
            vec![format!("#{}", allowed.last().copied().unwrap_or(0))]
        };
        Err(format!(
            "v{vol} sector {sector} (track {}) expected {} found {}",
            sector / SPT,
            expected.join("|"),
            describe(found)
        ))
    }
}

/// What one unit does.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Write {
        vol: usize,
        first: u64,
        count: u64,
        fua: bool,
    },
    Zero {
        vol: usize,
        first: u64,
        count: u64,
        discard: bool,
        fua: bool,
    },
    Flush {
        vol: usize,
    },
    Create {
        source: usize,
        target: usize,
        full: bool,
    },
    Start {
        map: MapId,
    },
    Copy {
        map: MapId,
        grains: u64,
    },
    Stop {
        map: MapId,
        force: bool,
    },
    Delete {
        map: MapId,
        force: bool,
    },
}

impl Unit {
    fn is_control(&self) -> bool {
        matches!(
            self,
            Unit::Create { .. }
                | Unit::Start { .. }
                | Unit::Copy { .. }
                | Unit::Stop { .. }
                | Unit::Delete { .. }
        )
    }
}

fn name(vol: usize) -> String {
    format!("v{vol}")
}

/// The subsystem config of every workload.
pub fn subsystem_config() -> SubsystemConfig {
    let model = DeviceModel::Fb {
        size_bytes: TRACKS * TRACK_BYTES,
        track_size_bytes: TRACK_BYTES,
    };
    SubsystemConfig {
        id: "RFS01".into(),
        durability: Default::default(),
        listen: Default::default(),
        nbd: Default::default(),
        rates: Default::default(),
        volumes: (0..VOLUMES)
            .map(|i| VolumeConfig {
                id: name(i),
                model,
                read_only: false,
            })
            .collect(),
        peers: Vec::new(),
        host: None,
    }
}

/// Where workloads put their directories (see [`RealFsConfig::root`]).
pub fn scratch_root(cfg: &RealFsConfig) -> PathBuf {
    cfg.root
        .clone()
        .or_else(|| std::env::var_os("SIM_REALFS_DIR").map(PathBuf::from))
        .unwrap_or_else(|| {
            // tmpfs: real files through the kernel (pwrite, hole punching,
            // SEEK_DATA/SEEK_HOLE, fdatasync), without a disk's fsync cost.
            let shm = PathBuf::from("/dev/shm");
            if shm.is_dir() {
                shm
            } else {
                std::env::temp_dir()
            }
        })
}

/// A refused read or write of `vol` is explained by a map state: the target
/// of a map that is not copying or idle, or either volume of a suspended map.
fn refusal_explained(vol: &str, maps: &[MapView]) -> bool {
    maps.iter().any(|m| {
        (m.target == vol && !matches!(m.state, MapState::Copying | MapState::IdleOrCopied))
            || ((m.source == vol || m.target == vol) && m.state == MapState::Suspended)
    })
}

/// PIT-1 for the target of an active map, else PIT-2.
fn role(vol: &str, maps: &[MapView]) -> &'static str {
    if maps.iter().any(|m| m.target == vol && m.state.is_active()) {
        "PIT-1"
    } else {
        "PIT-2"
    }
}

type States = BTreeMap<u32, MapState>;

struct Run<'a> {
    seed: u64,
    cfg: &'a RealFsConfig,
    fig: RealFsFigures,
    _root: tempfile::TempDir,
    scratch: PathBuf,
    live: PathBuf,
    config: SubsystemConfig,
    stores: RealFileStores,
    sub: Subsystem,
    model: Model,
    /// Maps not deleted, in creation order (what step slots choose from).
    slots: Vec<MapId>,
    /// Source and target of every map ever created.
    ends: BTreeMap<u32, (usize, usize)>,
    states: States,
    step: usize,
    op: String,
    points: u64,
    decoder: Decoder,
}

/// [`decode_sector`] with the sectors already seen remembered: a sector equal
/// to a remembered one is decoded by one comparison (the debug build checks
/// millions of sectors).
#[derive(Default)]
struct Decoder {
    seen: std::collections::HashMap<(u32, u64), Vec<u8>>,
}

impl Decoder {
    fn decode(&mut self, buf: &[u8], sector: u64) -> SectorContent {
        const ZERO: [u8; SECTOR_BYTES] = [0; SECTOR_BYTES];
        if buf == ZERO {
            return SectorContent::Zero;
        }
        if buf.len() == SECTOR_BYTES && buf[8..16] == sector.to_le_bytes() {
            let id = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
            if let Some(known) = self.seen.get(&(id, sector)) {
                if known == buf {
                    return SectorContent::Write(id);
                }
            }
        }
        let found = decode_sector(buf, sector);
        if let SectorContent::Write(id) = found {
            self.seen.insert((id, sector), buf.to_vec());
        }
        found
    }
}

/// Reads a whole volume: `Ok(None)` when the read is refused.
fn read_volume(sub: &Subsystem, vol: usize) -> controller::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; VOLUME_BYTES];
    match sub.read(&name(vol), 0, &mut buf) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if matches!(e.kind(), ErrorKind::Offline | ErrorKind::State) => Ok(None),
        Err(e) => Err(e),
    }
}

impl<'a> Run<'a> {
    fn new(seed: u64, cfg: &'a RealFsConfig) -> Result<Run<'a>, String> {
        let root = tempfile::Builder::new()
            .prefix("realfs-")
            .tempdir_in(scratch_root(cfg))
            .map_err(|e| format!("temp dir: {e}"))?;
        let live = root.path().join("live");
        let scratch = root.path().join("scratch");
        std::fs::create_dir_all(&scratch).map_err(|e| format!("scratch dir: {e}"))?;
        let stores = RealFileStores::new(&live, &scratch);
        stores.skip_volume_flushes(cfg.skip_volume_flushes);
        let config = subsystem_config();
        let options = OpenOptions {
            provider: Some(std::sync::Arc::new(stores.clone())),
            ..OpenOptions::default()
        };
        let sub = Subsystem::open_with(&live, config.clone(), options)
            .map_err(|e| format!("first boot: {}", e.full_message()))?;
        Ok(Run {
            seed,
            cfg,
            fig: RealFsFigures::default(),
            _root: root,
            scratch,
            live,
            config,
            stores,
            sub,
            model: Model::new(),
            slots: Vec::new(),
            ends: BTreeMap::new(),
            states: BTreeMap::new(),
            step: 0,
            op: String::new(),
            points: 0,
            decoder: Decoder::default(),
        })
    }

    fn violation(&self, check: &str, image: Option<&str>, detail: String) -> RealFsViolation {
        RealFsViolation {
            seed: self.seed,
            step: self.step,
            op: self.op.clone(),
            image: image.map(str::to_string),
            check: check.to_string(),
            detail,
        }
    }

    fn ends(&self, id: u32) -> Option<(usize, usize)> {
        self.ends.get(&id).copied()
    }

    fn units(&self, step: &Step) -> Vec<Unit> {
        let slot = |s: usize| {
            (!self.slots.is_empty()).then(|| {
                let map = self.slots[s % self.slots.len()];
                let (source, target) = self.ends[&map.0];
                (map, source, target)
            })
        };
        match *step {
            Step::Write {
                vol,
                first,
                count,
                fua,
            } => vec![Unit::Write {
                vol,
                first,
                count,
                fua,
            }],
            Step::Zero {
                vol,
                first,
                count,
                discard,
                fua,
            } => vec![Unit::Zero {
                vol,
                first,
                count,
                discard,
                fua,
            }],
            Step::Flush { vol } => vec![Unit::Flush { vol }],
            Step::CreateMap {
                source,
                target,
                full,
            } => vec![Unit::Create {
                source,
                target,
                full,
            }],
            Step::Start { slot: s } => slot(s).map_or(Vec::new(), |(map, source, _)| {
                vec![Unit::Flush { vol: source }, Unit::Start { map }]
            }),
            Step::CopyStep { slot: s, grains } => {
                slot(s).map_or(Vec::new(), |(map, _, _)| vec![Unit::Copy { map, grains }])
            }
            Step::Stop { slot: s, force } => {
                slot(s).map_or(Vec::new(), |(map, _, _)| vec![Unit::Stop { map, force }])
            }
            Step::Delete { slot: s, force } => {
                slot(s).map_or(Vec::new(), |(map, _, _)| vec![Unit::Delete { map, force }])
            }
        }
    }

    /// Sorts a controller answer: accepted, rejected (counted), or a
    /// violation (an I/O or metadata failure with no fault injected).
    fn outcome<T>(
        &mut self,
        r: controller::Result<T>,
        host_vol: Option<usize>,
    ) -> Result<Option<T>, RealFsViolation> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e)
                if matches!(e.kind(), ErrorKind::Offline | ErrorKind::State)
                    && host_vol.is_some() =>
            {
                let vol = name(host_vol.unwrap_or(0));
                if !refusal_explained(&vol, &self.sub.maps()) {
                    return Err(self.violation(
                        "LIVE",
                        None,
                        format!(
                            "host I/O to {vol} refused with no map state explaining it: {}",
                            e.full_message()
                        ),
                    ));
                }
                self.fig.rejected += 1;
                Ok(None)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Io | ErrorKind::Corrupt | ErrorKind::Fenced | ErrorKind::NoSpace
                ) =>
            {
                Err(self.violation(
                    "LIVE",
                    None,
                    format!("failed with no fault injected: {}", e.full_message()),
                ))
            }
            Err(_) => {
                self.fig.rejected += 1;
                Ok(None)
            }
        }
    }

    /// Runs `u`; the model follows what was acknowledged. Returns the host
    /// write that was in flight (volume, first, count, id; not for a refused
    /// one) for the images taken inside.
    fn perform(&mut self, u: Unit) -> Result<Option<(usize, u64, u64, u32)>, RealFsViolation> {
        let sub = self.sub.clone();
        match u {
            Unit::Write {
                vol,
                first,
                count,
                fua,
            } => {
                let id = self.model.new_id();
                let data = write_data(id, first, count);
                let r = sub.write(&name(vol), first * SECTOR_BYTES as u64, &data, fua);
                if self.outcome(r, Some(vol))?.is_none() {
                    return Ok(None);
                }
                self.fig.host_writes += 1;
                self.model.write(vol, first, count, id);
                if fua {
                    self.model.durable(vol, first, count);
                }
                Ok(Some((vol, first, count, id)))
            }
            Unit::Zero {
                vol,
                first,
                count,
                discard,
                fua,
            } => {
                let (off, len) = (first * SECTOR_BYTES as u64, count * SECTOR_BYTES as u64);
                let r = if discard {
                    sub.discard(&name(vol), off, len, fua)
                } else {
                    sub.write_zeroes(&name(vol), off, len, fua)
                };
                if self.outcome(r, Some(vol))?.is_none() {
                    return Ok(None);
                }
                self.fig.host_zeroes += 1;
                self.model.write(vol, first, count, 0);
                if fua {
                    self.model.durable(vol, first, count);
                }
                Ok(Some((vol, first, count, 0)))
            }
            Unit::Flush { vol } => {
                let r = self.stores.honest(|| sub.flush(&name(vol)));
                if self.outcome(r, None)?.is_some() {
                    self.fig.host_flushes += 1;
                    self.model.flushed(vol);
                }
                Ok(None)
            }
            Unit::Create {
                source,
                target,
                full,
            } => {
                let ty = if full {
                    CopyType::Full
                } else {
                    CopyType::Nocopy
                };
                let r = sub.create_map(&MapCreate::new(&name(source), &name(target), ty));
                if let Some(id) = self.outcome(r, None)? {
                    self.fig.maps_created += 1;
                    self.slots.push(id);
                    self.ends.insert(id.0, (source, target));
                }
                Ok(None)
            }
            Unit::Start { map } => {
                let r = sub.start_map(map, false);
                if self.outcome(r, None)?.is_some() {
                    self.fig.starts += 1;
                }
                Ok(None)
            }
            Unit::Copy { map, grains } => {
                let r = sub.copy_map(map, grains * TRACK_BYTES);
                if let Some((g, _)) = self.outcome(r, None)? {
                    self.fig.grains_copied += g;
                }
                Ok(None)
            }
            Unit::Stop { map, force } => {
                let r = sub.stop_map(map, force);
                if self.outcome(r, None)?.is_some() {
                    self.fig.stops += 1;
                }
                Ok(None)
            }
            Unit::Delete { map, force } => {
                let r = sub.delete_map(map, force);
                if self.outcome(r, None)?.is_some() {
                    self.fig.deletes += 1;
                }
                Ok(None)
            }
        }
    }

    /// Applies the map state changes from `from` to `to` to `model`: a map
    /// started by `started` that is now copying snapshots its source, a map
    /// newly stopped (or deleted before its copy completed) leaves its
    /// target undefined.
    fn follow_states(&self, model: &mut Model, from: &States, to: &States, started: Option<MapId>) {
        for (id, st) in to {
            if from.get(id) == Some(st) {
                continue;
            }
            let Some((source, target)) = self.ends(*id) else {
                continue;
            };
            if *st == MapState::Copying && started.is_some_and(|m| m.0 == *id) {
                model.snapshot(source, target);
            }
            if *st == MapState::Stopped {
                model.forget(target);
            }
        }
        for (id, st) in from {
            if !to.contains_key(id) && *st != MapState::IdleOrCopied {
                if let Some((_, target)) = self.ends(*id) {
                    model.forget(target);
                }
            }
        }
    }

    /// Reads every volume of `sub` and checks it against `model`.
    fn check_volumes(
        &mut self,
        sub: &Subsystem,
        model: &Model,
        after_crash: bool,
        image: Option<&str>,
    ) -> Result<(), RealFsViolation> {
        let maps = sub.maps();
        for vol in 0..VOLUMES {
            let buf = read_volume(sub, vol).map_err(|e| {
                self.violation(
                    "LIVE",
                    image,
                    format!("read of v{vol} failed: {}", e.full_message()),
                )
            })?;
            let Some(buf) = buf else {
                if !refusal_explained(&name(vol), &maps) {
                    return Err(self.violation(
                        "LIVE",
                        image,
                        format!(
                            "read of v{vol} refused with no map state explaining it; maps {maps:?}"
                        ),
                    ));
                }
                self.fig.refused_reads += 1;
                continue;
            };
            for s in 0..SECTORS {
                let at = s as usize * SECTOR_BYTES;
                let found = self.decoder.decode(&buf[at..at + SECTOR_BYTES], s);
                self.fig.sectors_checked += 1;
                if let Err(d) = model.check(vol, s, found, after_crash) {
                    return Err(self.violation(role(&name(vol), &maps), image, d));
                }
            }
        }
        Ok(())
    }

    fn read_states(sub: &Subsystem) -> States {
        sub.maps().iter().map(|m| (m.id, m.state)).collect()
    }

    /// One unit: run it with capture armed, follow it in the model, check
    /// the live volumes, then every crash image of every point taken.
    fn unit(&mut self, u: Unit) -> Result<(), RealFsViolation> {
        self.fig.units += 1;
        let pre_model = self.model.clone();
        let pre_states = self.states.clone();
        self.stores.arm(CaptureRule {
            percent: self.cfg.capture_percent,
            budget: self.cfg.captures_per_unit,
            seed: self
                .seed
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(self.fig.units),
        });
        let performed = self.perform(u);
        let (points, boundaries) = self.stores.disarm();
        self.fig.flush_boundaries += boundaries;
        let inflight = performed?;
        let post_states = Self::read_states(&self.sub);
        let started = match u {
            Unit::Start { map } => Some(map),
            _ => None,
        };
        let mut model = std::mem::replace(&mut self.model, Model::new());
        self.follow_states(&mut model, &self.states, &post_states, started);
        self.model = model;
        self.slots.retain(|m| post_states.contains_key(&m.0));
        self.states = post_states.clone();
        let live_model = self.model.clone();
        let sub = self.sub.clone();
        self.check_volumes(&sub, &live_model, false, None)?;

        let mut during = pre_model;
        if let Some((vol, first, count, id)) = inflight {
            during.write(vol, first, count, id);
        }
        for p in points {
            let p = p.map_err(|e| self.violation("HARNESS", None, format!("crash point: {e}")))?;
            self.check_point(
                &p,
                &during,
                &pre_states,
                &post_states,
                started,
                u.is_control(),
            )?;
        }
        if self.cfg.after_each_unit {
            let p = self
                .stores
                .crash_point_now("after the unit")
                .map_err(|e| self.violation("HARNESS", None, format!("crash point: {e}")))?;
            self.check_point(&p, &live_model, &post_states, &post_states, None, false)?;
        }
        Ok(())
    }

    /// Builds, IPLs and checks every image of `p`.
    fn check_point(
        &mut self,
        p: &CrashPoint,
        model: &Model,
        pre: &States,
        post: &States,
        started: Option<MapId>,
        control: bool,
    ) -> Result<(), RealFsViolation> {
        self.points += 1;
        self.fig.crash_points += 1;
        let pending = p.pending() as u64;
        self.fig.pending_ops += pending;
        self.fig.max_pending = self.fig.max_pending.max(pending);
        let seed = self
            .seed
            .wrapping_mul(0xff51_afd7_ed55_8ccd)
            .wrapping_add(self.points);
        let specs = p.specs(
            seed,
            self.cfg.meta_prefixes,
            self.cfg.random_images,
            self.cfg.torn_images,
        );
        for spec in specs {
            let label = format!("{} {}", spec.label, p.at);
            let t0 = Instant::now();
            let dir = tempfile::Builder::new()
                .prefix("rfs-image-")
                .tempdir_in(&self.scratch)
                .map_err(|e| self.violation("HARNESS", Some(&label), e.to_string()))?;
            let img = dir.path().join("data");
            let built = p
                .build(&spec, &img)
                .map_err(|e| self.violation("HARNESS", Some(&label), format!("build: {e}")))?;
            self.fig.images += 1;
            if built.torn > 0 {
                self.fig.images_torn += 1;
            }
            // The production open: FileStores over the image directory.
            let sub = Subsystem::open_with(&img, self.config.clone(), OpenOptions::default())
                .map_err(|e| {
                    self.violation(
                        "IPL-1",
                        Some(&label),
                        format!("the crash image does not IPL: {}", e.full_message()),
                    )
                })?;
            self.fig.ipls += 1;
            let report = sub.ipl_report();
            if !report.check_findings.is_empty() {
                return Err(self.violation(
                    "META-1",
                    Some(&label),
                    report.check_findings.join("; "),
                ));
            }
            let after = Self::read_states(&sub);
            let ids: BTreeSet<u32> = pre
                .keys()
                .chain(post.keys())
                .chain(after.keys())
                .copied()
                .collect();
            for id in ids {
                let a = after.get(&id);
                if a != pre.get(&id) && a != post.get(&id) {
                    return Err(self.violation(
                        "IPL-1",
                        Some(&label),
                        format!(
                            "map{id} is {a:?} after the IPL: neither {:?} (before the unit) nor {:?} (after it)",
                            pre.get(&id),
                            post.get(&id)
                        ),
                    ));
                }
            }
            if control && pre != post {
                if after == *pre {
                    self.fig.images_state_before += 1;
                } else if after == *post {
                    self.fig.images_state_after += 1;
                }
            }
            let mut m = model.clone();
            self.follow_states(&mut m, pre, &after, started);
            self.check_volumes(&sub, &m, true, Some(&label))?;
            sub.abandon();
            drop(sub);
            drop(dir);
            self.fig.image_time += t0.elapsed();
        }
        Ok(())
    }

    /// The end of a workload: a clean close, an IPL with the production
    /// provider, and every volume as the model says.
    fn finish(&mut self) -> Result<(), RealFsViolation> {
        self.op = "close and clean IPL".into();
        self.fig.units += 1;
        self.stores.arm(CaptureRule {
            percent: self.cfg.capture_percent,
            budget: self.cfg.captures_per_unit,
            seed: self.seed ^ 0xc105e,
        });
        let closed = self.sub.close();
        let (points, boundaries) = self.stores.disarm();
        self.fig.flush_boundaries += boundaries;
        closed.map_err(|e| self.violation("LIVE", None, format!("close: {}", e.full_message())))?;
        // A power loss during the shutdown: the state of every map is kept.
        let (model, states) = (self.model.clone(), self.states.clone());
        for p in points {
            let p = p.map_err(|e| self.violation("HARNESS", None, format!("crash point: {e}")))?;
            self.check_point(&p, &model, &states, &states, None, false)?;
        }
        let sub = Subsystem::open(&self.live, self.config.clone()).map_err(|e| {
            self.violation("IPL-1", None, format!("clean IPL: {}", e.full_message()))
        })?;
        self.fig.clean_ipls += 1;
        let after = Self::read_states(&sub);
        if after != self.states {
            return Err(self.violation(
                "IPL-1",
                None,
                format!(
                    "maps changed across a clean IPL: before {:?}, after {after:?}",
                    self.states
                ),
            ));
        }
        let model = self.model.clone();
        self.check_volumes(&sub, &model, false, None)?;
        sub.close()
            .map_err(|e| self.violation("LIVE", None, format!("close: {}", e.full_message())))
    }
}

/// Runs the workload `steps` (from [`generate`] or a fixed sequence) with
/// capture choices seeded by `seed`.
pub fn run_steps(seed: u64, steps: &[Step], cfg: &RealFsConfig) -> RealFsFigures {
    let started = Instant::now();
    let mut run = match Run::new(seed, cfg) {
        Ok(r) => r,
        Err(e) => {
            let mut fig = RealFsFigures {
                workloads: 1,
                ..RealFsFigures::default()
            };
            fig.violations.push(RealFsViolation {
                seed,
                step: 0,
                op: "boot".into(),
                image: None,
                check: "HARNESS".into(),
                detail: e,
            });
            return fig;
        }
    };
    let mut result = Ok(());
    for (i, step) in steps.iter().enumerate() {
        run.step = i;
        run.op = step.to_string();
        run.fig.steps += 1;
        for u in run.units(step) {
            result = run.unit(u);
            if result.is_err() {
                break;
            }
        }
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        run.step = steps.len();
        result = run.finish();
    } else {
        run.sub.abandon();
    }
    let mut fig = std::mem::take(&mut run.fig);
    fig.workloads = 1;
    if let Err(v) = result {
        fig.violations.push(v);
    }
    fig.wall = started.elapsed();
    fig
}

/// Runs the seeded workload of `seed` ([`generate`] with `cfg.steps`).
pub fn run_workload(seed: u64, cfg: &RealFsConfig) -> RealFsFigures {
    run_steps(seed, &generate(seed, cfg.steps), cfg)
}

/// Runs workloads `first..first + runs`.
pub fn campaign(first: u64, runs: u64, cfg: &RealFsConfig) -> RealFsFigures {
    let started = Instant::now();
    let mut total = RealFsFigures::default();
    for seed in first..first + runs {
        total.merge(&run_workload(seed, cfg));
    }
    total.wall = started.elapsed();
    total
}
