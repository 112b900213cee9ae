//! Where the subsystem's stores come from: files in the data directory, or
//! (tests) in-memory stores behind `FaultyStore` that outlive a simulated crash.
//!
//! One factory opens and probes a store and hands back a ready
//! `Arc<dyn TrackStore>`; the subsystem never assembles backends itself.

use std::sync::Arc;

use geometry::Geometry;
use volume_store::{SparseFileStore, TrackStore};

use crate::datadir::DataDir;
use crate::error::Result;
use crate::meta::{meta_geometry, store_err, META_VOLUME_ID};

/// Opens and creates the stores of one subsystem.
pub trait StoreProvider: Send + Sync {
    /// Creates the store of a new volume, replacing any leftover of an earlier
    /// create or delete that crashed before its metadata was committed (the
    /// caller only creates volumes that the durable root does not list).
    fn create_volume(&self, name: &str, geometry: Geometry) -> Result<Arc<dyn TrackStore>>;
    /// Opens an existing volume store, checking its identity and geometry.
    fn open_volume(&self, name: &str, geometry: Geometry) -> Result<Arc<dyn TrackStore>>;
    /// Removes a volume store (idempotent).
    fn remove_volume(&self, name: &str) -> Result<()>;
    /// Names of every volume store present (for the checker).
    fn volume_names(&self) -> Result<Vec<String>>;
    /// Whether the store of volume `name` holds any data (an allocated
    /// track). A store whose identity cannot be read counts as holding data:
    /// the answer decides whether it may be replaced.
    fn volume_holds_data(&self, name: &str) -> Result<bool>;
    /// Opens the metadata store, creating it when absent; `true` if created.
    fn open_meta(&self) -> Result<(Arc<dyn TrackStore>, bool)>;
}

/// Whether `store` has an allocated track (for
/// [`StoreProvider::volume_holds_data`]); a store that cannot answer counts
/// as holding data.
pub fn holds_data(store: &dyn TrackStore) -> bool {
    let tracks = store.geometry().tracks();
    tracks > 0
        && store
            .allocated(geometry::Extent {
                first: 0,
                last: tracks - 1,
            })
            .map_or(true, |a| a.track_count() > 0)
}

/// Sparse files under a [`DataDir`].
pub struct FileStores {
    dir: DataDir,
}

impl FileStores {
    /// Stores under `dir` (whose tree must exist).
    pub fn new(dir: DataDir) -> FileStores {
        FileStores { dir }
    }
}

impl StoreProvider for FileStores {
    fn create_volume(&self, name: &str, geometry: Geometry) -> Result<Arc<dyn TrackStore>> {
        let path = self.dir.volume_path(name);
        if path.exists() {
            self.remove_volume(name)?;
        }
        let s = SparseFileStore::create(&path, name, geometry).map_err(|e| {
            // A create that failed part way (out of descriptors at the
            // directory's sync, a full disk at the trailer) leaves no file.
            let _ = std::fs::remove_file(&path);
            store_err(&format!("create volume {name}"), e)
        })?;
        Ok(Arc::new(s))
    }

    fn open_volume(&self, name: &str, geometry: Geometry) -> Result<Arc<dyn TrackStore>> {
        let path = self.dir.volume_path(name);
        let s = SparseFileStore::open(&path, name, geometry).map_err(|e| {
            use volume_store::ErrorKind as K;
            if !matches!(e.kind(), K::BadHeader | K::WrongFile) {
                return store_err(&format!("open volume {name}"), e);
            }
            let expected = SparseFileStore::file_len(geometry);
            let why = match std::fs::metadata(&path).map(|m| m.len()) {
                // Not the trailer alone: the file lost (or gained) data.
                Ok(size) if size != expected => format!(
                    "open volume {name}: {} is {size} bytes, expected {expected} ({geometry}): \
                     it was truncated or extended, so its data is not all there; restore it \
                     from a backup, or delete the volume",
                    path.display(),
                ),
                // The trailer only names the file; the root records the same.
                _ => format!(
                    "open volume {name}: {e}; if only the file's trailer (its last 4 KiB, \
                     which names the volume) is damaged, stop the daemon and run \
                     `firmware-sim check --data-dir {} --repair-trailers`: it rewrites the \
                     trailer from the metadata root and leaves the data as it is",
                    self.dir.root().display()
                ),
            };
            crate::error::err(crate::error::ErrorKind::Corrupt, why)
        })?;
        Ok(Arc::new(s))
    }

    fn remove_volume(&self, name: &str) -> Result<()> {
        let path = self.dir.volume_path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => crate::datadir::sync_dir(&self.dir.volumes_dir()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(crate::datadir::io_err(
                format!("remove {}", path.display()),
                e,
            )),
        }
    }

    fn volume_names(&self) -> Result<Vec<String>> {
        self.dir.volume_files()
    }

    fn volume_holds_data(&self, name: &str) -> Result<bool> {
        let path = self.dir.volume_path(name);
        let Ok(trailer) = SparseFileStore::probe(&path) else {
            return Ok(true);
        };
        let Ok(s) = SparseFileStore::open(&path, &trailer.volume_id, trailer.geometry) else {
            return Ok(true);
        };
        Ok(crate::provider::holds_data(&s))
    }

    fn open_meta(&self) -> Result<(Arc<dyn TrackStore>, bool)> {
        let path = self.dir.meta_path();
        if path.exists() {
            let s = SparseFileStore::open(&path, META_VOLUME_ID, meta_geometry()).map_err(|e| {
                use volume_store::ErrorKind as K;
                if matches!(e.kind(), K::BadHeader) {
                    // Its trailer holds only the store's fixed identity.
                    return crate::error::err(
                        crate::error::ErrorKind::Corrupt,
                        format!(
                            "open metadata store: {e}; if only its trailer (the last 4 KiB) \
                             is damaged, stop the daemon and run `firmware-sim check \
                             --data-dir {} --repair-trailers`: it rewrites the trailer and \
                             leaves the metadata as it is",
                            self.dir.root().display()
                        ),
                    );
                }
                store_err("open metadata store", e)
            })?;
            Ok((Arc::new(s), false))
        } else {
            let s = SparseFileStore::create(&path, META_VOLUME_ID, meta_geometry())
                .map_err(|e| store_err("create metadata store", e))?;
            Ok((Arc::new(s), true))
        }
    }
}
