//! The data directory: its layout and the lock that keeps a second process out.
//!
//! ```text
//! <data-dir>/
//!   LOCK                 flock(2)-held while a subsystem has the directory open; holds the pid
//!   subsystem.toml       the config the subsystem runs with (a deleted config volume leaves it)
//!   meta.store           metadata store: two root slots + the bitmap journal (docs/FORMATS.md)
//!   volumes/<ID>.vol     one sparse track file per volume
//!   tables/subsystem.tbl the subsystem's activity table
//!   tables/<ID>.tbl      one activity table per volume
//! ```
//!
//! Invariant: at most one [`DataDirLock`] exists per directory across all
//! processes of the machine (the kernel's flock is the arbiter; it is released
//! when the holder exits, however it exits).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{err, ControllerError, ErrorKind, Result};

/// Paths inside one data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The layout rooted at `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `LOCK`.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("LOCK")
    }
    /// `subsystem.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("subsystem.toml")
    }
    /// Makes `subsystem.toml` hold `config`, unless it already does: written
    /// to a temporary file, flushed, renamed over the old one and the
    /// directory flushed, so a crash leaves the old file or the new one.
    /// Returns whether the file changed.
    pub fn store_config(&self, config: &crate::config::SubsystemConfig) -> Result<bool> {
        let path = self.config_path();
        let text = config.to_toml_string();
        if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
            return Ok(false);
        }
        let tmp = path.with_extension("toml.tmp");
        let what = || format!("write {}", path.display());
        let written = File::create(&tmp).and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        });
        if let Err(e) = written {
            // No half-written copy is left beside the config.
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(what(), e));
        }
        sync_dir(&self.root)?;
        Ok(true)
    }
    /// `meta.store`.
    pub fn meta_path(&self) -> PathBuf {
        self.root.join("meta.store")
    }
    /// `volumes/`.
    pub fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }
    /// `volumes/<ID>.vol`.
    pub fn volume_path(&self, volume: &str) -> PathBuf {
        self.volumes_dir().join(format!("{volume}.vol"))
    }
    /// `tables/`.
    pub fn tables_dir(&self) -> PathBuf {
        self.root.join("tables")
    }
    /// `tables/subsystem.tbl`.
    pub fn subsystem_table_path(&self) -> PathBuf {
        self.tables_dir().join("subsystem.tbl")
    }
    /// `tables/<ID>.tbl`.
    pub fn volume_table_path(&self, volume: &str) -> PathBuf {
        self.tables_dir().join(format!("{volume}.tbl"))
    }

    /// Creates the directory tree (idempotent) and fsyncs the directories.
    pub fn create_tree(&self) -> Result<()> {
        for d in [self.root.clone(), self.volumes_dir(), self.tables_dir()] {
            std::fs::create_dir_all(&d)
                .map_err(|e| io_err(format!("create directory {}", d.display()), e))?;
        }
        for d in [self.root.as_path(), &self.volumes_dir(), &self.tables_dir()] {
            sync_dir(d)?;
        }
        Ok(())
    }

    /// Volume names that have a file in `volumes/` (for the checker).
    pub fn volume_files(&self) -> Result<Vec<String>> {
        let dir = self.volumes_dir();
        let mut names = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(e) => return Err(io_err(format!("list {}", dir.display()), e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err(format!("list {}", dir.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".vol") {
                names.push(stem.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Takes the directory lock; a second holder gets [`ErrorKind::Busy`]
    /// naming the pid recorded by the first.
    pub fn lock(&self) -> Result<DataDirLock> {
        let path = self.lock_path();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_err(format!("open lock file {}", path.display()), e))?;
        if let Err(e) =
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("process {holder}")
            };
            return Err(err(
                ErrorKind::Busy,
                format!(
                    "data directory {} is in use by {who} (lock {}: {e}); stop it first",
                    self.root.display(),
                    path.display()
                ),
            ));
        }
        // Record our pid for the error message above; best effort.
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
        Ok(DataDirLock { _file: file })
    }
}

/// Holds the data directory's flock until dropped.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// fsyncs a directory so that entries created in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(format!("fsync directory {}", dir.display()), e))
}

pub(crate) fn io_err(what: String, e: std::io::Error) -> ControllerError {
    let kind = if e.raw_os_error() == Some(28) {
        ErrorKind::NoSpace
    } else {
        ErrorKind::Io
    };
    ControllerError::with_source(kind, what, e)
}
