//! File-system helpers: replacement files (write new, fsync, rename, fsync
//! directory), temp-file naming and cleanup, locking, whole-file reads.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use fault_site::FaultSite;

use crate::codec;
use crate::error::TableError;
use crate::format;
use crate::recovery::RecoveryReport;
use crate::table::FaultHook;
use crate::types::{ActivityEntry, TableId};

/// Writes header + `entries` to the temporary name, fsyncs it, renames it over
/// `path` and fsyncs the directory. Returns the new file (locked) and its length.
pub(crate) fn write_replacement(
    path: &Path,
    id: &TableId,
    base_seq: u64,
    entries: &[ActivityEntry],
    fault: Option<&FaultHook>,
) -> Result<(File, u64), TableError> {
    let tmp = temp_path(path);
    let mut buf = format::encode_header(id, base_seq)?;
    for e in entries {
        let payload = codec::encode_entry(e).map_err(TableError::Encode)?;
        format::push_frame(&mut buf, &payload)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| TableError::io("create", &tmp, e))?;
    let result = (|| {
        lock(&file, &tmp)?;
        file.write_all(&buf)
            .map_err(|e| TableError::io("write", &tmp, e))?;
        file.sync_all()
            .map_err(|e| TableError::io("fsync", &tmp, e))?;
        if let Some(hook) = fault {
            let site = FaultSite::TableCompactRename;
            hook(site).map_err(|e| TableError::io(site.as_str(), path, e))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| TableError::io("rename", path, e))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(path)?;
    Ok((file, buf.len() as u64))
}

/// `<dir>/<name>.tmp`: where creation and compaction build the new file.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

pub(crate) fn damaged_copy_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    (1u32..)
        .map(|n| path.with_file_name(format!("{name}.damaged-{n}")))
        .find(|p| !p.exists())
        .unwrap_or_else(|| path.with_file_name(format!("{name}.damaged")))
}

pub(crate) fn remove_stale_temp(
    path: &Path,
    report: &mut RecoveryReport,
) -> Result<(), TableError> {
    let tmp = temp_path(path);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {
            report.removed_temp_files.push(tmp);
            sync_dir(path)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(TableError::io("remove stale temp file", &tmp, e)),
    }
}

/// The whole file, read from offset 0 whatever the handle's position.
pub(crate) fn read_all_at(file: &File, path: &Path) -> Result<Vec<u8>, TableError> {
    let len = file
        .metadata()
        .map_err(|e| TableError::io("stat", path, e))?
        .len();
    let len = usize::try_from(len).map_err(|_| TableError::NotATable {
        path: path.to_path_buf(),
        reason: format!("file of {len} bytes is too large"),
    })?;
    let mut bytes = vec![0u8; len];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| TableError::io("read", path, e))?;
    Ok(bytes)
}

pub(crate) fn sync_dir(path: &Path) -> Result<(), TableError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| TableError::io("fsync directory", dir, e))
}

pub(crate) fn lock(file: &File, path: &Path) -> Result<(), TableError> {
    match rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(TableError::Locked {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(TableError::io("flock", path, e.into())),
    }
}
