//! Test harness (feature `test-utils`): a subsystem whose volumes and metadata
//! live in memory behind `FaultyStore`s that outlive a simulated crash.
//!
//! ```text
//! VirtualSubsystem
//!   tempdir: LOCK, subsystem.toml, tables/   (real files: tables are durable on append)
//!   MemStores: FaultyStore<MemStore> per volume + one for metadata
//!   crash(mode): drop the Subsystem without flushing, then every store loses
//!                or tears its unflushed writes per `mode`; ipl(): open again
//! ```
//!
//! Patterns are a pure function of (seed, byte offset), so any range can be
//! checked without keeping the data.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use geometry::Geometry;
use parking_lot::Mutex;
use volume_store::{CrashMode, FaultPoint, FaultyStore, MemStore, TrackStore};

use crate::config::SubsystemConfig;
use crate::error::{err, ErrorKind, Result};
use crate::meta::{meta_geometry, META_VOLUME_ID};
use crate::provider::StoreProvider;
use crate::subsystem::{OpenOptions, Subsystem};

/// A faulty in-memory store.
pub type VirtualStore = FaultyStore<MemStore>;

/// In-memory stores that survive the subsystem that uses them.
pub struct MemStores {
    seed: u64,
    volumes: Mutex<BTreeMap<String, Arc<VirtualStore>>>,
    meta: Mutex<Option<Arc<VirtualStore>>>,
}

impl MemStores {
    /// Empty; `seed` seeds each store's fault RNG (mixed with its name).
    pub fn new(seed: u64) -> MemStores {
        MemStores {
            seed,
            volumes: Mutex::new(BTreeMap::new()),
            meta: Mutex::new(None),
        }
    }

    fn new_store(&self, name: &str, g: Geometry) -> Arc<VirtualStore> {
        let salt = name
            .bytes()
            .fold(self.seed, |h, b| h.rotate_left(5) ^ u64::from(b));
        Arc::new(FaultyStore::new(MemStore::with_id(name, g), salt))
    }

    /// A volume's store (to add fault rules or inspect pending writes).
    pub fn volume(&self, name: &str) -> Option<Arc<VirtualStore>> {
        self.volumes.lock().get(name).cloned()
    }

    /// The metadata store.
    pub fn meta(&self) -> Option<Arc<VirtualStore>> {
        self.meta.lock().clone()
    }

    /// Every store (volumes by name, then `_meta`).
    pub fn all(&self) -> Vec<(String, Arc<VirtualStore>)> {
        let mut v: Vec<(String, Arc<VirtualStore>)> = self
            .volumes
            .lock()
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        if let Some(m) = self.meta() {
            v.push((META_VOLUME_ID.to_string(), m));
        }
        v
    }

    /// Applies a power loss to every store: unflushed writes dropped, kept or
    /// torn per `mode` (a seeded mode gets a different seed per store).
    pub fn crash(&self, mode: CrashMode) -> Result<()> {
        for (i, (name, s)) in self.all().into_iter().enumerate() {
            let m = match mode {
                CrashMode::RandomSubset { seed } => CrashMode::RandomSubset {
                    seed: seed.wrapping_add(i as u64 * 7919),
                },
                CrashMode::Torn { seed } => CrashMode::Torn {
                    seed: seed.wrapping_add(i as u64 * 7919),
                },
                m => m,
            };
            s.crash(m)
                .map_err(|e| crate::meta::store_err(&format!("crash store {name}"), e))?;
        }
        Ok(())
    }
}

impl StoreProvider for MemStores {
    fn create_volume(&self, name: &str, geometry: Geometry) -> Result<Arc<dyn TrackStore>> {
        let s = self.new_store(name, geometry);
        self.volumes.lock().insert(name.to_string(), s.clone());
        Ok(s)
    }

    fn open_volume(&self, name: &str, geometry: Geometry) -> Result<Arc<dyn TrackStore>> {
        let s = self
            .volume(name)
            .ok_or_else(|| err(ErrorKind::NotFound, format!("no store for volume {name}")))?;
        if s.geometry() != geometry {
            return Err(err(
                ErrorKind::Corrupt,
                format!("store of {name} is a {}, expected {geometry}", s.geometry()),
            ));
        }
        s.reopen();
        Ok(s)
    }

    fn remove_volume(&self, name: &str) -> Result<()> {
        self.volumes.lock().remove(name);
        Ok(())
    }

    fn volume_names(&self) -> Result<Vec<String>> {
        Ok(self.volumes.lock().keys().cloned().collect())
    }

    fn volume_holds_data(&self, name: &str) -> Result<bool> {
        Ok(self
            .volume(name)
            .is_some_and(|s| crate::provider::holds_data(&*s)))
    }

    fn open_meta(&self) -> Result<(Arc<dyn TrackStore>, bool)> {
        let mut m = self.meta.lock();
        if let Some(s) = &*m {
            s.reopen();
            return Ok((s.clone(), false));
        }
        let s = self.new_store(META_VOLUME_ID, meta_geometry());
        *m = Some(s.clone());
        Ok((s, true))
    }
}

/// A subsystem booted in a temp directory over in-memory faulty stores.
pub struct VirtualSubsystem {
    dir: tempfile::TempDir,
    config: SubsystemConfig,
    stores: Arc<MemStores>,
    faults: Option<Arc<dyn FaultPoint>>,
    sub: Option<Subsystem>,
}

impl VirtualSubsystem {
    /// Boots a new subsystem from `config`.
    pub fn boot(config: SubsystemConfig) -> Result<VirtualSubsystem> {
        Self::boot_with(config, 0, None)
    }

    /// Boots with a store seed and named fault sites.
    pub fn boot_with(
        config: SubsystemConfig,
        seed: u64,
        faults: Option<Arc<dyn FaultPoint>>,
    ) -> Result<VirtualSubsystem> {
        let dir =
            tempfile::tempdir().map_err(|e| crate::datadir::io_err("create temp dir".into(), e))?;
        let mut v = VirtualSubsystem {
            dir,
            config,
            stores: Arc::new(MemStores::new(seed)),
            faults,
            sub: None,
        };
        v.ipl()?;
        Ok(v)
    }

    /// The running subsystem. Panics after [`VirtualSubsystem::crash`] until
    /// [`VirtualSubsystem::ipl`] (a test sequencing error, not input).
    pub fn sub(&self) -> &Subsystem {
        self.sub
            .as_ref()
            .expect("VirtualSubsystem is crashed: call ipl() first")
    }

    /// The stores (fault rules, pending writes).
    pub fn stores(&self) -> &Arc<MemStores> {
        &self.stores
    }

    /// The data directory (tables, lock).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces the fault sites used from the next IPL on.
    pub fn set_faults(&mut self, faults: Option<Arc<dyn FaultPoint>>) {
        self.faults = faults;
    }

    /// Power loss: the subsystem is dropped without flushing, then every store
    /// keeps, drops or tears its unflushed writes per `mode`.
    pub fn crash(&mut self, mode: CrashMode) -> Result<()> {
        if let Some(s) = self.sub.take() {
            // Clones held elsewhere (threads of a test) refuse work from now on.
            s.abandon();
        }
        self.stores.crash(mode)
    }

    /// Opens the subsystem (again): an IPL of the same stores and directory.
    pub fn ipl(&mut self) -> Result<&Subsystem> {
        if let Some(s) = self.sub.take() {
            if let Err(e) = s.close() {
                tracing::warn!(error = %e.full_message(), "shutdown before IPL not clean");
            }
        }
        let options = OpenOptions {
            provider: Some(self.stores.clone()),
            faults: self.faults.clone(),
            lock: true,
            ..OpenOptions::default()
        };
        self.sub = Some(Subsystem::open_with(
            self.dir.path(),
            self.config.clone(),
            options,
        )?);
        Ok(self.sub())
    }

    /// Writes `pattern(seed)` over `offset..offset+len` of `volume`.
    pub fn write_pattern(
        &self,
        volume: &str,
        offset: u64,
        len: usize,
        seed: u64,
        fua: bool,
    ) -> Result<()> {
        self.sub()
            .write(volume, offset, &pattern(seed, offset, len), fua)
    }

    /// Checks that `volume` reads `pattern(seed)` over the range; the error
    /// names the first differing byte.
    pub fn check_pattern(&self, volume: &str, offset: u64, len: usize, seed: u64) -> Result<()> {
        let mut got = vec![0u8; len];
        self.sub().read(volume, offset, &mut got)?;
        let want = pattern(seed, offset, len);
        match got.iter().zip(&want).position(|(a, b)| a != b) {
            None => Ok(()),
            Some(i) => Err(err(
                ErrorKind::Corrupt,
                format!(
                    "volume {volume} byte {}: read {:#04x}, expected {:#04x} (pattern {seed})",
                    offset + i as u64,
                    got[i],
                    want[i]
                ),
            )),
        }
    }
}

/// Deterministic bytes for `seed` at absolute offsets `offset..offset+len`
/// (each 8-byte word names its seed and offset, so a misplaced grain is caught).
pub fn pattern(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let at = offset + i;
            let word = (at / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ seed.wrapping_mul(0xD6E8_FEB8_6659_FD93);
            (word >> ((at % 8) * 8)) as u8
        })
        .collect()
}

impl Subsystem {
    /// A copy of the engine state (for the simulator's checks of split bits
    /// against where the data is). Test builds only.
    pub fn engine_snapshot(&self) -> timezero::Engine {
        self.inner.core.lock().engine.clone()
    }

    /// The engine's id of volume `name`, if it exists. Test builds only.
    pub fn engine_volume_id(&self, name: &str) -> Option<timezero::VolumeId> {
        self.inner.volume(name).ok().map(|v| v.id)
    }
}
