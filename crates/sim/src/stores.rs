//! [`SimStores`]: the store provider of the controller world. Every volume and
//! the metadata store are `FaultyStore<MemStore>`s (a volatile write cache
//! with crash images and injected faults) that outlive the subsystem using
//! them, wrapped in a [`SimStore`] that adds two things:
//!
//! - **crash capture**: just before any flush of any store, while a capture
//!   is armed, the crash images of *all* stores are recorded (CrashMonkey
//!   style: the states a power loss at that I/O boundary could leave);
//! - **the deliberate bug** ([`Bug::BitsBeforeData`]): flushes of volume
//!   stores issued by the controller itself do nothing, so copied grains are
//!   not durable when their split bits are journalled (breaking rule 1,
//!   "data before metadata", of docs/DURABILITY.md). Host flushes stay
//!   honest, so only the copy-on-write path is wrong. Test-only: used to show
//!   the checkers catch it.
//!
//! Invariant: the inner `FaultyStore` is written only through its wrapper, so
//! its pending list always describes the difference to the durable image.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use controller::StoreProvider;
use geometry::{Extent, ExtentSet, Geometry};
use parking_lot::Mutex;
use volume_store::{CrashMode, FaultyStore, MemStore, StoreError, TrackStore};

/// Name of the metadata store.
pub const META: &str = "_meta";

/// A deliberate bug the sim can switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// Volume flushes issued by the controller are skipped: split bits become
    /// durable before the copied data.
    BitsBeforeData,
    /// The controller journals under a root generation whose root is not
    /// durable: roots are written once, unflushed and unverified, and a root
    /// write that fails (fault site `root.write`) is ignored
    /// (`OpenOptions::journal_before_durable_root`).
    JournalBeforeRoot,
}

/// The crash images of every store at one instant, for several crash modes.
#[derive(Debug)]
pub struct ImageSet {
    /// Which store flush was about to run.
    pub at: String,
    /// Per crash mode: a label and the image of every store by name.
    pub images: Vec<(String, BTreeMap<String, MemStore>)>,
}

/// Crash capture configuration and results.
#[derive(Debug, Default)]
struct Capture {
    armed: bool,
    /// Images sets still allowed in this capture.
    budget: usize,
    seed: u64,
    sets: Vec<ImageSet>,
}

/// Shared state of the stores of one world.
pub struct Registry {
    seed: u64,
    volumes: Mutex<BTreeMap<String, Arc<SimStore>>>,
    meta: Mutex<Option<Arc<SimStore>>>,
    bug: Mutex<Option<Bug>>,
    honest: AtomicBool,
    capture: Mutex<Capture>,
}

/// The provider handed to `Subsystem::open_with`.
#[derive(Clone)]
pub struct SimStores {
    reg: Arc<Registry>,
}

/// One store: a `FaultyStore<MemStore>` plus the hooks above.
pub struct SimStore {
    name: String,
    faulty: FaultyStore<MemStore>,
    reg: Weak<Registry>,
}

impl SimStore {
    /// The fault-injecting store inside (rules, latent errors, pending count).
    pub fn faulty(&self) -> &FaultyStore<MemStore> {
        &self.faulty
    }

    fn before_flush(&self) {
        if let Some(reg) = self.reg.upgrade() {
            reg.capture_now(&self.name);
        }
    }
}

impl TrackStore for SimStore {
    fn geometry(&self) -> Geometry {
        self.faulty.geometry()
    }
    fn volume_id(&self) -> &str {
        self.faulty.volume_id()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        self.faulty.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        self.faulty.write_at(offset, data)
    }
    fn discard(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        self.faulty.discard(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), StoreError> {
        self.faulty.write_zeroes(offset, len)
    }
    fn allocated(&self, extent: Extent) -> Result<ExtentSet, StoreError> {
        self.faulty.allocated(extent)
    }
    fn poisoned(&self) -> bool {
        self.faulty.poisoned()
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.before_flush();
        if let Some(reg) = self.reg.upgrade() {
            let lie = *reg.bug.lock() == Some(Bug::BitsBeforeData)
                && self.name != META
                && !reg.honest.load(Ordering::SeqCst);
            if lie {
                return Ok(());
            }
        }
        self.faulty.flush()
    }
}

fn salt(seed: u64, name: &str) -> u64 {
    name.bytes()
        .fold(seed, |h, b| h.rotate_left(5) ^ u64::from(b))
}

impl Registry {
    fn new_store(self: &Arc<Self>, name: &str, inner: MemStore) -> Arc<SimStore> {
        Arc::new(SimStore {
            name: name.to_string(),
            faulty: FaultyStore::new(inner, salt(self.seed, name)),
            reg: Arc::downgrade(self),
        })
    }

    /// Every store, volumes by name then the metadata store.
    pub fn all(&self) -> Vec<(String, Arc<SimStore>)> {
        let mut v: Vec<(String, Arc<SimStore>)> = self
            .volumes
            .lock()
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        if let Some(m) = self.meta.lock().clone() {
            v.push((META.to_string(), m));
        }
        v
    }

    fn capture_now(&self, at: &str) {
        let (seed, go) = {
            let mut c = self.capture.lock();
            let go = c.armed && c.budget > 0;
            if go {
                c.budget -= 1;
            }
            (c.seed.wrapping_add(c.sets.len() as u64), go)
        };
        if !go {
            return;
        }
        let set = self.images(at, seed);
        self.capture.lock().sets.push(set);
    }

    /// The crash images of all stores now: the metadata store at every
    /// prefix of its pending writes (at most 6, spread) with the volumes
    /// losing or keeping all theirs, plus seeded random subsets and torn
    /// variants of everything.
    pub fn images(&self, at: &str, seed: u64) -> ImageSet {
        let stores = self.all();
        let meta_pending = stores
            .iter()
            .find(|(n, _)| n == META)
            .map_or(0, |(_, s)| s.faulty.pending_count());
        let mut prefixes: Vec<usize> = (0..=meta_pending).collect();
        if prefixes.len() > 6 {
            let n = prefixes.len();
            prefixes = (0..6).map(|i| i * (n - 1) / 5).collect();
            prefixes.dedup();
        }
        let mut modes: Vec<(String, CrashMode, CrashMode)> = Vec::new();
        for k in prefixes {
            modes.push((
                format!("meta-prefix-{k}+data-drop"),
                CrashMode::KeepPrefix(k),
                CrashMode::DropAll,
            ));
            modes.push((
                format!("meta-prefix-{k}+data-keep"),
                CrashMode::KeepPrefix(k),
                CrashMode::KeepAll,
            ));
        }
        for i in 0..2u64 {
            let s = seed.wrapping_mul(31).wrapping_add(i);
            modes.push((
                format!("random-subset-{s}"),
                CrashMode::RandomSubset { seed: s },
                CrashMode::RandomSubset { seed: s },
            ));
            modes.push((
                format!("torn-{s}"),
                CrashMode::Torn { seed: s },
                CrashMode::Torn { seed: s },
            ));
        }
        let mut images = Vec::new();
        for (label, meta_mode, data_mode) in modes {
            let mut set = BTreeMap::new();
            let mut ok = true;
            for (i, (name, s)) in stores.iter().enumerate() {
                let mode = if name == META { meta_mode } else { data_mode };
                let mode = match mode {
                    CrashMode::RandomSubset { seed } => CrashMode::RandomSubset {
                        seed: seed ^ i as u64,
                    },
                    CrashMode::Torn { seed } => CrashMode::Torn {
                        seed: seed ^ i as u64,
                    },
                    m => m,
                };
                match s.faulty.crash_image(mode) {
                    Ok(img) => {
                        set.insert(name.clone(), img);
                    }
                    Err(_) => ok = false,
                }
            }
            if ok {
                images.push((label, set));
            }
        }
        ImageSet {
            at: at.to_string(),
            images,
        }
    }
}

impl SimStores {
    /// Empty; `seed` seeds each store's fault RNG (mixed with its name).
    pub fn new(seed: u64) -> SimStores {
        SimStores {
            reg: Arc::new(Registry {
                seed,
                volumes: Mutex::new(BTreeMap::new()),
                meta: Mutex::new(None),
                bug: Mutex::new(None),
                honest: AtomicBool::new(false),
                capture: Mutex::new(Capture::default()),
            }),
        }
    }

    /// Stores holding exactly the given images (an IPL of a crash image).
    pub fn from_images(seed: u64, images: BTreeMap<String, MemStore>) -> SimStores {
        let s = SimStores::new(seed);
        for (name, img) in images {
            let store = s.reg.new_store(&name, img);
            if name == META {
                *s.reg.meta.lock() = Some(store);
            } else {
                s.reg.volumes.lock().insert(name, store);
            }
        }
        s
    }

    /// The shared registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.reg
    }

    /// A volume's store.
    pub fn volume(&self, name: &str) -> Option<Arc<SimStore>> {
        self.reg.volumes.lock().get(name).cloned()
    }

    /// Switches a deliberate bug on or off.
    pub fn set_bug(&self, bug: Option<Bug>) {
        *self.reg.bug.lock() = bug;
    }

    /// The deliberate bug switched on, if any.
    pub fn bug(&self) -> Option<Bug> {
        *self.reg.bug.lock()
    }

    /// Runs `f` with volume flushes honest (the host's own flush requests).
    pub fn honest<T>(&self, f: impl FnOnce() -> T) -> T {
        self.reg.honest.store(true, Ordering::SeqCst);
        let out = f();
        self.reg.honest.store(false, Ordering::SeqCst);
        out
    }

    /// Arms crash capture for at most `budget` flush boundaries.
    pub fn arm_capture(&self, budget: usize, seed: u64) {
        let mut c = self.reg.capture.lock();
        c.armed = true;
        c.budget = budget;
        c.seed = seed;
    }

    /// Disarms capture and returns what was captured.
    pub fn take_capture(&self) -> Vec<ImageSet> {
        let mut c = self.reg.capture.lock();
        c.armed = false;
        std::mem::take(&mut c.sets)
    }

    /// Power loss of every store per `mode` (seeded modes vary per store).
    pub fn crash(&self, mode: CrashMode) -> Result<(), StoreError> {
        for (i, (_, s)) in self.reg.all().into_iter().enumerate() {
            let m = match mode {
                CrashMode::RandomSubset { seed } => CrashMode::RandomSubset {
                    seed: seed ^ (i as u64 * 7919),
                },
                CrashMode::Torn { seed } => CrashMode::Torn {
                    seed: seed ^ (i as u64 * 7919),
                },
                m => m,
            };
            s.faulty.crash(m)?;
        }
        Ok(())
    }

    /// Faults injected by the stores, by `store.op.effect`.
    pub fn injected(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (name, s) in self.reg.all() {
            let kind = if name == META { "meta" } else { "volume" };
            for (k, v) in s.faulty.injected_counts() {
                *out.entry(format!("store.{kind}.{k}")).or_insert(0) += v;
            }
        }
        out
    }
}

fn store_err(name: &str, what: &str) -> controller::ControllerError {
    controller::ControllerError::new(controller::ErrorKind::NotFound, format!("{what} {name}"))
}

impl StoreProvider for SimStores {
    fn create_volume(
        &self,
        name: &str,
        geometry: Geometry,
    ) -> controller::Result<Arc<dyn TrackStore>> {
        let s = self.reg.new_store(name, MemStore::with_id(name, geometry));
        self.reg.volumes.lock().insert(name.to_string(), s.clone());
        Ok(s)
    }

    fn open_volume(
        &self,
        name: &str,
        geometry: Geometry,
    ) -> controller::Result<Arc<dyn TrackStore>> {
        let s = self
            .volume(name)
            .ok_or_else(|| store_err(name, "no store for volume"))?;
        if s.geometry() != geometry {
            return Err(store_err(name, "wrong geometry of volume"));
        }
        s.faulty.reopen();
        Ok(s)
    }

    fn remove_volume(&self, name: &str) -> controller::Result<()> {
        self.reg.volumes.lock().remove(name);
        Ok(())
    }

    fn volume_names(&self) -> controller::Result<Vec<String>> {
        Ok(self.reg.volumes.lock().keys().cloned().collect())
    }

    fn volume_holds_data(&self, name: &str) -> controller::Result<bool> {
        Ok(self
            .volume(name)
            .is_some_and(|s| controller::provider::holds_data(&*s)))
    }

    fn open_meta(&self) -> controller::Result<(Arc<dyn TrackStore>, bool)> {
        let mut m = self.reg.meta.lock();
        if let Some(s) = &*m {
            s.faulty.reopen();
            return Ok((s.clone(), false));
        }
        let s = self.reg.new_store(
            META,
            MemStore::with_id(META, controller::meta::meta_geometry()),
        );
        *m = Some(s.clone());
        Ok((s, true))
    }
}
