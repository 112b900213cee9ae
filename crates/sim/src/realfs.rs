//! Crash-point enumeration over real files (ALICE / CrashMonkey style).
//!
//! The rest of the simulator crashes `MemStore`s; this module crashes the
//! production backend: [`RealFileStores`] is a [`StoreProvider`] that opens
//! and creates exactly what [`FileStores`] does (it *is* a `FileStores` over
//! the same [`DataDir`], so `volumes/<ID>.vol` and `meta.store` are real
//! sparse files written with pwrite, hole punching and fdatasync) and wraps
//! every store in a [`RecordingStore`]. The recorder forwards each operation
//! to the real `SparseFileStore` and keeps, per file, the operations not yet
//! covered by a successful flush: every pwrite with its bytes, every discard
//! (hole punch or zeroing) and every write_zeroes, each with the pre-image of
//! the tracks it touched (read before forwarding). A successful flush
//! (fdatasync) of a file clears its list.
//!
//! Crash points: while armed, just before a flush of any file, a
//! [`CrashPoint`] is taken: a copy of the data directory holding every
//! recorded file as it was at its last flush (the live file copied hole for
//! hole, then its pending operations undone in reverse order from their
//! pre-images, as `volume_store::faulty::crash` does for `MemStore`), the
//! activity tables and `subsystem.toml` copied as they are at that instant
//! (the activity-table crate syncs its own files), and the pending operations
//! themselves. [`CrashPoint::build`] then writes one crash image into a fresh
//! directory: the durable state plus the subset of the pending operations an
//! [`ImageSpec`] selects (all, none, a prefix, a seeded random subset, or
//! torn at 4 KiB: an unflushed pwrite keeps a prefix of its 4 KiB blocks).
//! Such a directory is what the file system could hold after a power loss at
//! that instant; `Subsystem::open` on it (production `FileStores`) must IPL.
//! The [`campaign`] module drives workloads and checks every image.
//!
//! Invariant: every write to a recorded file goes through its recorder and
//! the registry lock is held from the pre-image read to the recording, so
//! undoing a file's list in reverse always gives its content at its last
//! successful flush.

pub mod campaign;

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use controller::datadir::DataDir;
use controller::{FileStores, StoreProvider};
use geometry::{Extent, ExtentSet, Geometry, TrackNo};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use volume_store::trailer::TRAILER_BYTES;
use volume_store::{SparseFileStore, StoreError, TrackStore};

/// Key (path in the data directory) of the metadata store.
const META_KEY: &str = "meta.store";

/// Granularity of torn writes: file system blocks.
pub const TEAR_BYTES: u64 = 4096;

/// An operation on a file not yet covered by a successful flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// pwrite of these bytes.
    Write {
        /// Byte offset in the volume (= in the file).
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Discard: whole tracks punched, partial tracks zeroed.
    Discard {
        /// Byte offset.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// write_zeroes (zeros written, tracks stay allocated).
    WriteZeroes {
        /// Byte offset.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
}

impl FileOp {
    fn range(&self) -> (u64, u64) {
        match self {
            FileOp::Write { offset, data } => (*offset, data.len() as u64),
            FileOp::Discard { offset, len } | FileOp::WriteZeroes { offset, len } => {
                (*offset, *len)
            }
        }
    }

    /// Applies the first `keep` bytes of the operation to `store` (a discard
    /// is applied whole or not at all).
    fn apply(&self, store: &dyn TrackStore, keep: u64) -> Result<(), StoreError> {
        if keep == 0 {
            return Ok(());
        }
        match self {
            FileOp::Write { offset, data } => store.write_at(*offset, &data[..keep as usize]),
            FileOp::Discard { offset, len } => store.discard(*offset, *len),
            FileOp::WriteZeroes { offset, .. } => store.write_zeroes(*offset, keep),
        }
    }

    /// The byte counts a tear may keep: 0, every 4 KiB block boundary inside
    /// the operation, and its whole length.
    fn tear_points(&self) -> Vec<u64> {
        let (offset, len) = self.range();
        let mut cuts = vec![0];
        if !matches!(self, FileOp::Discard { .. }) {
            let mut b = (offset / TEAR_BYTES + 1) * TEAR_BYTES;
            while b < offset + len {
                cuts.push(b - offset);
                b += TEAR_BYTES;
            }
        }
        cuts.push(len);
        cuts
    }
}

/// The tracks an operation touched and the old bytes of those that held data
/// (the others were holes).
#[derive(Debug, Clone)]
struct PreImage {
    tracks: Extent,
    saved: Vec<(TrackNo, Vec<u8>)>,
}

impl PreImage {
    fn read(store: &dyn TrackStore, offset: u64, len: u64) -> Result<PreImage, StoreError> {
        let g = store.geometry();
        volume_store::store::check_range(
            &g,
            store.volume_id(),
            volume_store::Op::Read,
            offset,
            len,
        )?;
        let ts = g.track_size_bytes();
        let tracks = Extent {
            first: offset / ts,
            last: (offset + len.max(1) - 1) / ts,
        };
        let mut saved = Vec::new();
        for t in store.allocated(tracks)?.tracks() {
            let mut buf = vec![0u8; ts as usize];
            store.read_track(t, &mut buf)?;
            saved.push((t, buf));
        }
        Ok(PreImage { tracks, saved })
    }

    /// Puts the tracks back: holes punched, then the saved tracks written.
    fn restore(&self, store: &dyn TrackStore) -> Result<(), StoreError> {
        let ts = store.geometry().track_size_bytes();
        store.discard(self.tracks.first * ts, self.tracks.track_count() * ts)?;
        for (t, bytes) in &self.saved {
            store.write_track(*t, bytes)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Pending {
    op: FileOp,
    pre: PreImage,
}

/// One recorded file.
struct FileState {
    /// The newest handle (any handle reads the same file).
    store: Arc<dyn TrackStore>,
    pending: Vec<Pending>,
}

/// When crash points are taken.
#[derive(Debug, Clone)]
pub struct CaptureRule {
    /// Chance, in percent, that a flush boundary is captured (100: every one).
    pub percent: u32,
    /// At most this many crash points until the capture is disarmed.
    pub budget: usize,
    /// Seed of the choice of boundaries.
    pub seed: u64,
}

#[derive(Default)]
struct CaptureState {
    rule: Option<(CaptureRule, ChaCha8Rng)>,
    /// Flush boundaries seen while armed.
    boundaries: u64,
    taken: Vec<Result<CrashPoint, String>>,
}

struct State {
    files: BTreeMap<String, FileState>,
    capture: CaptureState,
}

/// Shared state of the stores of one data directory.
struct Registry {
    dir: DataDir,
    scratch: PathBuf,
    state: Mutex<State>,
    /// Deliberate bug: volume flushes do nothing (see [`RealFileStores::skip_volume_flushes`]).
    skip_volume_flushes: AtomicBool,
    /// Flushes are honest while set (host flush requests).
    honest: AtomicBool,
}

/// The provider: production [`FileStores`] with every store recorded.
#[derive(Clone)]
pub struct RealFileStores {
    files: Arc<FileStores>,
    reg: Arc<Registry>,
}

/// A real store plus the recording (see the module docs).
pub struct RecordingStore {
    key: String,
    inner: Arc<dyn TrackStore>,
    reg: Arc<Registry>,
}

fn rel_key(dir: &DataDir, path: &Path) -> String {
    path.strip_prefix(dir.root())
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

impl RecordingStore {
    fn record(
        &self,
        offset: u64,
        len: u64,
        op: impl FnOnce() -> FileOp,
        forward: impl FnOnce(&dyn TrackStore) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut st = self.reg.state.lock();
        let pre = if len == 0 {
            None
        } else {
            match PreImage::read(&*self.inner, offset, len) {
                Ok(p) => Some(p),
                // Out of range: the store refuses it and nothing changes.
                Err(e) if e.kind() == volume_store::ErrorKind::OutOfRange => None,
                Err(e) => return Err(e),
            }
        };
        forward(&*self.inner)?;
        if let (Some(pre), Some(f)) = (pre, st.files.get_mut(&self.key)) {
            f.pending.push(Pending { op: op(), pre });
        }
        Ok(())
    }
}

impl TrackStore for RecordingStore {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }
    fn volume_id(&self) -> &str {
        self.inner.volume_id()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        self.record(
            offset,
            data.len() as u64,
            || FileOp::Write {
                offset,
                data: data.to_vec(),
            },
            |s| s.write_at(offset, data),
        )
    }
    fn discard(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        self.record(
            offset,
            len,
            || FileOp::Discard { offset, len },
            |s| s.discard(offset, len),
        )
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        self.record(
            offset,
            len,
            || FileOp::WriteZeroes { offset, len },
            |s| s.write_zeroes(offset, len),
        )
    }
    fn allocated(&self, extent: Extent) -> Result<ExtentSet, StoreError> {
        self.inner.allocated(extent)
    }
    fn poisoned(&self) -> bool {
        self.inner.poisoned()
    }
    fn flush(&self) -> Result<(), StoreError> {
        let mut st = self.reg.state.lock();
        self.reg.before_flush(&mut st, &self.key);
        if self.key != META_KEY
            && self.reg.skip_volume_flushes.load(Ordering::SeqCst)
            && !self.reg.honest.load(Ordering::SeqCst)
        {
            // The deliberate bug: nothing became durable.
            return Ok(());
        }
        self.inner.flush()?;
        if let Some(f) = st.files.get_mut(&self.key) {
            f.pending.clear();
        }
        Ok(())
    }
}

impl Registry {
    /// Counts the boundary and takes a crash point if the rule says so.
    fn before_flush(&self, st: &mut State, key: &str) {
        let go = match &mut st.capture.rule {
            None => return,
            Some((rule, rng)) => {
                let pick = rng.random_range(0..100u32) < rule.percent;
                let go = pick && rule.budget > 0;
                if go {
                    rule.budget -= 1;
                }
                go
            }
        };
        st.capture.boundaries += 1;
        if go {
            let at = format!("before flush of {key}");
            let point = self.crash_point(st, &at).map_err(|e| format!("{at}: {e}"));
            st.capture.taken.push(point);
        }
    }

    fn crash_point(&self, st: &State, at: &str) -> io::Result<CrashPoint> {
        let base = tempfile::Builder::new()
            .prefix("rfs-point-")
            .tempdir_in(&self.scratch)?;
        copy_tree(self.dir.root(), base.path())?;
        let mut files = Vec::new();
        for (key, f) in &st.files {
            if f.pending.is_empty() {
                continue;
            }
            let path = base.path().join(key);
            let g = f.store.geometry();
            let id = f.store.volume_id().to_string();
            let copy = SparseFileStore::open(&path, &id, g).map_err(io::Error::other)?;
            for p in f.pending.iter().rev() {
                p.pre.restore(&copy).map_err(io::Error::other)?;
            }
            files.push(FileRecord {
                key: key.clone(),
                volume_id: id,
                geometry: g,
                ops: f.pending.iter().map(|p| p.op.clone()).collect(),
            });
        }
        Ok(CrashPoint {
            at: at.to_string(),
            base,
            files,
        })
    }
}

impl RealFileStores {
    /// Stores in `data_dir` (as `FileStores` would open them); crash points
    /// are written under `scratch` (which must exist, on any file system).
    pub fn new(data_dir: impl Into<PathBuf>, scratch: impl Into<PathBuf>) -> RealFileStores {
        let dir = DataDir::new(data_dir);
        RealFileStores {
            files: Arc::new(FileStores::new(dir.clone())),
            reg: Arc::new(Registry {
                dir,
                scratch: scratch.into(),
                state: Mutex::new(State {
                    files: BTreeMap::new(),
                    capture: CaptureState::default(),
                }),
                skip_volume_flushes: AtomicBool::new(false),
                honest: AtomicBool::new(false),
            }),
        }
    }

    fn wrap(&self, path: &Path, store: Arc<dyn TrackStore>, fresh: bool) -> Arc<dyn TrackStore> {
        let key = rel_key(&self.reg.dir, path);
        {
            let mut st = self.reg.state.lock();
            match st.files.get_mut(&key) {
                // Reopened: the page cache still holds what was not flushed.
                Some(f) if !fresh => f.store = store.clone(),
                _ => {
                    st.files.insert(
                        key.clone(),
                        FileState {
                            store: store.clone(),
                            pending: Vec::new(),
                        },
                    );
                }
            }
        }
        Arc::new(RecordingStore {
            key,
            inner: store,
            reg: self.reg.clone(),
        })
    }

    /// Deliberate bug for the checkers' self-test: flushes of volume files
    /// issued by the controller itself do nothing (so copied grains are not
    /// durable when their split bits are journalled); flushes inside
    /// [`RealFileStores::honest`] (the host's own) stay real.
    pub fn skip_volume_flushes(&self, on: bool) {
        self.reg.skip_volume_flushes.store(on, Ordering::SeqCst);
    }

    /// Runs `f` with every flush real (a host flush request).
    pub fn honest<T>(&self, f: impl FnOnce() -> T) -> T {
        self.reg.honest.store(true, Ordering::SeqCst);
        let out = f();
        self.reg.honest.store(false, Ordering::SeqCst);
        out
    }

    /// Arms crash capture: flush boundaries are captured per `rule`.
    pub fn arm(&self, rule: CaptureRule) {
        let rng = ChaCha8Rng::seed_from_u64(rule.seed);
        self.reg.state.lock().capture.rule = Some((rule, rng));
    }

    /// Disarms capture; returns the crash points taken (an `Err` says why
    /// one could not be taken) and the flush boundaries seen while armed.
    pub fn disarm(&self) -> (Vec<Result<CrashPoint, String>>, u64) {
        let mut st = self.reg.state.lock();
        st.capture.rule = None;
        let boundaries = std::mem::take(&mut st.capture.boundaries);
        (std::mem::take(&mut st.capture.taken), boundaries)
    }

    /// A crash point now (not at a flush), labelled `at`.
    pub fn crash_point_now(&self, at: &str) -> io::Result<CrashPoint> {
        let st = self.reg.state.lock();
        self.reg.crash_point(&st, at)
    }

    /// Pending (unflushed) operations per recorded file.
    pub fn pending_counts(&self) -> BTreeMap<String, usize> {
        self.reg
            .state
            .lock()
            .files
            .iter()
            .map(|(k, f)| (k.clone(), f.pending.len()))
            .collect()
    }
}

impl StoreProvider for RealFileStores {
    fn create_volume(
        &self,
        name: &str,
        geometry: Geometry,
    ) -> controller::Result<Arc<dyn TrackStore>> {
        let s = self.files.create_volume(name, geometry)?;
        Ok(self.wrap(&self.reg.dir.volume_path(name), s, true))
    }

    fn open_volume(
        &self,
        name: &str,
        geometry: Geometry,
    ) -> controller::Result<Arc<dyn TrackStore>> {
        let s = self.files.open_volume(name, geometry)?;
        Ok(self.wrap(&self.reg.dir.volume_path(name), s, false))
    }

    fn remove_volume(&self, name: &str) -> controller::Result<()> {
        let key = rel_key(&self.reg.dir, &self.reg.dir.volume_path(name));
        let mut st = self.reg.state.lock();
        self.files.remove_volume(name)?;
        st.files.remove(&key);
        Ok(())
    }

    fn volume_names(&self) -> controller::Result<Vec<String>> {
        self.files.volume_names()
    }

    fn volume_holds_data(&self, name: &str) -> controller::Result<bool> {
        self.files.volume_holds_data(name)
    }

    fn open_meta(&self) -> controller::Result<(Arc<dyn TrackStore>, bool)> {
        let (s, created) = self.files.open_meta()?;
        Ok((self.wrap(&self.reg.dir.meta_path(), s, created), created))
    }
}

/// A recorded file's pending operations at a crash point.
#[derive(Debug, Clone)]
pub struct FileRecord {
    /// Path relative to the data directory (`meta.store`, `volumes/v0.vol`).
    pub key: String,
    /// Volume id in its trailer.
    pub volume_id: String,
    /// Its geometry.
    pub geometry: Geometry,
    /// Unflushed operations, oldest first.
    pub ops: Vec<FileOp>,
}

impl FileRecord {
    /// True for the metadata store.
    pub fn is_meta(&self) -> bool {
        self.key == META_KEY
    }
}

/// Which pending operations of a file survive the crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Every one (a process crash; the page cache was written back).
    All,
    /// None (power loss right after the last flush).
    None,
    /// The first n, in order.
    Prefix(usize),
    /// Each independently, seeded.
    Random(u64),
    /// Each whole, not at all, or (writes) a prefix of its 4 KiB blocks, seeded.
    Torn(u64),
}

/// One crash image: what the metadata store keeps and what the volumes keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// Label for reports.
    pub label: String,
    /// The metadata store.
    pub meta: Keep,
    /// Every volume file (seeded modes are salted per file).
    pub volumes: Keep,
}

/// What building one image did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Built {
    /// Pending operations applied whole.
    pub kept: u64,
    /// Pending operations dropped.
    pub dropped: u64,
    /// Writes applied as a strict prefix of their blocks.
    pub torn: u64,
}

/// The durable state of a data directory at one instant plus the operations
/// that may or may not have reached the disk (see the module docs).
pub struct CrashPoint {
    /// Where it was taken (`before flush of meta.store`, ...).
    pub at: String,
    base: tempfile::TempDir,
    /// Files with pending operations.
    pub files: Vec<FileRecord>,
}

impl std::fmt::Debug for CrashPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrashPoint")
            .field("at", &self.at)
            .field("base", &self.base.path())
            .field("files", &self.files.len())
            .finish()
    }
}

fn salt(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

impl CrashPoint {
    /// Pending operations of the metadata store.
    pub fn meta_pending(&self) -> usize {
        self.files
            .iter()
            .find(|f| f.is_meta())
            .map_or(0, |f| f.ops.len())
    }

    /// Pending operations of every file.
    pub fn pending(&self) -> usize {
        self.files.iter().map(|f| f.ops.len()).sum()
    }

    /// The images to check: (a) everything kept, (b) everything dropped, (c)
    /// the metadata store at up to `meta_prefixes` prefixes of its pending
    /// writes (spread, ends included) with the volumes dropping or keeping
    /// all theirs, (d) `random` seeded random subsets, (e) `torn` seeded
    /// torn variants. Duplicates are left out (nothing pending: one image).
    pub fn specs(
        &self,
        seed: u64,
        meta_prefixes: usize,
        random: usize,
        torn: usize,
    ) -> Vec<ImageSpec> {
        let mut out: Vec<ImageSpec> = Vec::new();
        let mut push = |label: String, meta: Keep, volumes: Keep| {
            if !out.iter().any(|s| s.meta == meta && s.volumes == volumes) {
                out.push(ImageSpec {
                    label,
                    meta,
                    volumes,
                });
            }
        };
        let m = self.meta_pending();
        let vol_pending = self.pending() > m;
        let norm = |k: usize, vols: Keep| -> (Keep, Keep) {
            let meta = if k == 0 {
                Keep::None
            } else if k >= m {
                Keep::All
            } else {
                Keep::Prefix(k)
            };
            let vols = if vol_pending { vols } else { Keep::None };
            let meta = if m == 0 { Keep::None } else { meta };
            (meta, vols)
        };
        let (a, b) = norm(m, Keep::All);
        push("keep-all".into(), a, b);
        let (a, b) = norm(0, Keep::None);
        push("drop-all".into(), a, b);
        let mut prefixes: Vec<usize> = (0..=m).collect();
        if prefixes.len() > meta_prefixes.max(2) {
            let n = prefixes.len();
            let k = meta_prefixes.max(2);
            prefixes = (0..k).map(|i| i * (n - 1) / (k - 1)).collect();
            prefixes.dedup();
        }
        for k in prefixes {
            for (vols, what) in [(Keep::None, "drop"), (Keep::All, "keep")] {
                let (a, b) = norm(k, vols);
                push(format!("meta-prefix-{k}+volumes-{what}"), a, b);
            }
        }
        if self.pending() > 0 {
            for i in 0..random as u64 {
                let s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i);
                push(format!("random-{s:x}"), Keep::Random(s), Keep::Random(s));
            }
            for i in 0..torn as u64 {
                let s = seed.wrapping_mul(0x2545_f491_4f6c_dd1d).wrapping_add(i);
                push(format!("torn-{s:x}"), Keep::Torn(s), Keep::Torn(s));
            }
        }
        out
    }

    /// Writes the image `spec` into `into` (created; must not exist).
    pub fn build(&self, spec: &ImageSpec, into: &Path) -> io::Result<Built> {
        copy_tree(self.base.path(), into)?;
        let mut built = Built::default();
        for f in &self.files {
            let keep = if f.is_meta() { spec.meta } else { spec.volumes };
            let store = SparseFileStore::open(into.join(&f.key), &f.volume_id, f.geometry)
                .map_err(io::Error::other)?;
            let mut rng = match keep {
                Keep::Random(s) | Keep::Torn(s) => ChaCha8Rng::seed_from_u64(s ^ salt(&f.key)),
                _ => ChaCha8Rng::seed_from_u64(0),
            };
            for (i, op) in f.ops.iter().enumerate() {
                let (_, len) = op.range();
                let n = match keep {
                    Keep::All => len,
                    Keep::None => 0,
                    Keep::Prefix(k) => {
                        if i < k {
                            len
                        } else {
                            0
                        }
                    }
                    Keep::Random(_) => {
                        if rng.random_bool(0.5) {
                            len
                        } else {
                            0
                        }
                    }
                    Keep::Torn(_) => {
                        // Whole, lost, or cut at a block boundary inside it
                        // (a write within one block is whole or lost).
                        let cuts = op.tear_points();
                        match rng.random_range(0..3u8) {
                            0 => len,
                            1 => 0,
                            _ if cuts.len() > 2 => cuts[rng.random_range(1..cuts.len() - 1)],
                            _ => cuts[rng.random_range(0..2)],
                        }
                    }
                };
                if n == len && len > 0 {
                    built.kept += 1;
                } else if n == 0 {
                    built.dropped += 1;
                } else {
                    built.torn += 1;
                }
                op.apply(&store, n).map_err(io::Error::other)?;
            }
        }
        Ok(built)
    }
}

/// True for files that are sparse volume files (a trailer at the end).
fn is_volume_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "vol")
        || path.file_name().is_some_and(|n| n == "meta.store")
}

/// Copies a data directory (without its `LOCK`): volume files hole for hole,
/// everything else byte for byte.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else if entry.file_name() == "LOCK" {
            continue;
        } else if is_volume_file(&src) {
            sparse_copy(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// Copies a volume file keeping its holes: only the tracks the store
/// reports allocated, and the trailer, are written.
fn sparse_copy(src: &Path, dst: &Path) -> io::Result<()> {
    let trailer = SparseFileStore::probe(src).map_err(io::Error::other)?;
    let g = trailer.geometry;
    let store = SparseFileStore::open(src, &trailer.volume_id, g).map_err(io::Error::other)?;
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)?;
    out.set_len(SparseFileStore::file_len(g))?;
    let all = Extent {
        first: 0,
        last: g.tracks() - 1,
    };
    let ts = g.track_size_bytes();
    let mut buf = vec![0u8; ts as usize];
    for t in store.allocated(all).map_err(io::Error::other)?.tracks() {
        store.read_track(t, &mut buf).map_err(io::Error::other)?;
        out.write_all_at(&buf, t * ts)?;
    }
    let mut tail = vec![0u8; TRAILER_BYTES];
    File::open(src)?.read_exact_at(&mut tail, g.size_bytes())?;
    out.write_all_at(&tail, g.size_bytes())?;
    Ok(())
}
