//! The table itself: opening (create or recover), appending, compaction.
//!
//! Invariants owned here:
//! - `entries` is exactly the decoded content of the file's records, in file
//!   order, and `len` is the file offset just past the last of them;
//! - sequence numbers are strictly increasing and `next_seq` is greater than
//!   every seq ever written to this table (the header's `base_seq` carries that
//!   floor across compaction), so a seq is never reused;
//! - an entry is in `entries` only after its record is durable (fdatasync);
//! - after a failed write or sync the table is poisoned: no further appends
//!   until it is reopened, because what reached the disk is unknown;
//! - one open `ActivityTable` per file: the file is `flock`ed exclusively.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fault_site::FaultSite;

use crate::codec;
use crate::error::TableError;
use crate::format;
use crate::fsio::{damaged_copy_path, lock, read_all_at, remove_stale_temp, write_replacement};
use crate::recovery::{load, Mode, RecoveryReport};
use crate::types::{entry_belongs, ActivityEntry, NewEntry, TableId};

/// A fault-injection hook: called with the [`FaultSite`] before the operation
/// there ([`FaultSite::TableAppend`], [`FaultSite::TableSync`],
/// [`FaultSite::TableCompactRename`]); an `Err` makes the operation fail with
/// that error (as [`TableError::Io`] with `op` = the site's name) without
/// touching the file.
///
/// This crate does not depend on `volume-store`; to drive the hook from its
/// `FaultPoint`, wrap it:
/// `Arc::new(move |site| fp.check(site).map_err(std::io::Error::other))`
/// (the controller does so for every table it opens).
pub type FaultHook = Arc<dyn Fn(FaultSite) -> std::io::Result<()> + Send + Sync>;

/// What [`ActivityTable::compact`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactReport {
    /// Entries before.
    pub entries_before: usize,
    /// Entries kept.
    pub entries_after: usize,
    /// File size before, bytes.
    pub bytes_before: u64,
    /// File size after, bytes.
    pub bytes_after: u64,
}

/// A crash-safe, append-only activity table backed by one file.
pub struct ActivityTable {
    path: PathBuf,
    id: TableId,
    file: File,
    len: u64,
    next_seq: u64,
    entries: Vec<ActivityEntry>,
    fault: Option<FaultHook>,
    poisoned: Option<&'static str>,
}

impl std::fmt::Debug for ActivityTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityTable")
            .field("path", &self.path)
            .field("id", &self.id)
            .field("entries", &self.entries.len())
            .field("next_seq", &self.next_seq)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl ActivityTable {
    /// Opens the table at `path`, creating it (header only, durable, directory
    /// fsynced) if missing. Recovery keeps every intact record, truncates a torn
    /// tail, and fails with [`TableError::CorruptRecord`] if a damaged record is
    /// followed by intact ones. A header naming another table is
    /// [`TableError::WrongTable`].
    pub fn open(path: impl AsRef<Path>, id: TableId) -> Result<(Self, RecoveryReport), TableError> {
        Self::open_mode(path.as_ref(), id, Mode::Strict)
    }

    /// Like [`ActivityTable::open`], but damaged records in the middle (and
    /// records that fail validation) are left out and listed in the report.
    /// If anything was left out, the damaged file is first copied to
    /// `<name>.damaged-<n>`, then replaced by a clean file holding the kept
    /// records (write new, fsync, rename, fsync directory).
    pub fn open_salvage(
        path: impl AsRef<Path>,
        id: TableId,
    ) -> Result<(Self, RecoveryReport), TableError> {
        Self::open_mode(path.as_ref(), id, Mode::Salvage)
    }

    /// Reads a table without modifying it or taking its lock (for inspection
    /// tools): its id, its entries, and what recovery would do (a torn tail is
    /// reported, not truncated). Middle corruption is an error as in `open`.
    pub fn read(
        path: impl AsRef<Path>,
    ) -> Result<(TableId, Vec<ActivityEntry>, RecoveryReport), TableError> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(|e| TableError::io("open", path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| TableError::io("read", path, e))?;
        let loaded = load(path, &bytes, None, Mode::Strict)?;
        let report = RecoveryReport {
            records: loaded.entries.len(),
            torn_tail: loaded.torn_tail,
            ..RecoveryReport::default()
        };
        Ok((loaded.id, loaded.entries, report))
    }

    fn open_mode(
        path: &Path,
        id: TableId,
        mode: Mode,
    ) -> Result<(Self, RecoveryReport), TableError> {
        id.validate()?;
        let mut report = RecoveryReport::default();
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                remove_stale_temp(path, &mut report)?;
                let (f, _) = write_replacement(path, &id, 1, &[], None)?;
                report.created = true;
                f
            }
            Err(e) => return Err(TableError::io("open", path, e)),
        };
        lock(&file, path)?;
        remove_stale_temp(path, &mut report)?;
        let bytes = read_all_at(&file, path)?;
        let loaded = load(path, &bytes, Some(&id), mode)?;
        report.records = loaded.entries.len();
        report.torn_tail = loaded.torn_tail.clone();
        report.skipped = loaded.skipped.clone();
        let next_seq = loaded.entries.last().map_or(loaded.base_seq, |e| {
            loaded.base_seq.max(e.seq.saturating_add(1))
        });

        let mut table = ActivityTable {
            path: path.to_path_buf(),
            id,
            file,
            len: loaded.valid_end as u64,
            next_seq,
            entries: loaded.entries,
            fault: None,
            poisoned: None,
        };
        if !report.skipped.is_empty() {
            let copy = damaged_copy_path(path);
            std::fs::copy(path, &copy)
                .and_then(|_| File::open(&copy)?.sync_all())
                .map_err(|e| TableError::io("copy damaged table", &copy, e))?;
            report.damaged_copy = Some(copy);
            table.rewrite(table.entries.clone())?;
            tracing::warn!(path = %path.display(), skipped = report.skipped.len(),
                "activity table salvaged: damaged records left out");
        } else if let Some(tail) = &report.torn_tail {
            table
                .file
                .set_len(tail.offset)
                .map_err(|e| TableError::io("truncate torn tail", path, e))?;
            table
                .file
                .sync_all()
                .map_err(|e| TableError::io("fsync", path, e))?;
            tracing::warn!(path = %path.display(), offset = tail.offset, bytes = tail.len,
                reason = %tail.reason, "activity table: torn tail truncated");
        }
        Ok((table, report))
    }

    /// The table this file is.
    pub fn id(&self) -> &TableId {
        &self.id
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry, in sequence order.
    pub fn entries(&self) -> &[ActivityEntry] {
        &self.entries
    }

    /// The sequence number the next append will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Size of the file's intact content, bytes.
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// Installs (or removes) the fault-injection hook (see [`FaultHook`]).
    pub fn set_fault_hook(&mut self, hook: Option<FaultHook>) {
        self.fault = hook;
    }

    /// Appends one entry; it is durable (fdatasync) when this returns `Ok`
    /// with its sequence number.
    pub fn append(&mut self, entry: NewEntry) -> Result<u64, TableError> {
        let seqs = self.append_batch(std::slice::from_ref(&entry))?;
        Ok(seqs[0])
    }

    /// Appends entries with one write and one fdatasync; all or none become
    /// part of the table. Returns their sequence numbers in order.
    pub fn append_batch(&mut self, entries: &[NewEntry]) -> Result<Vec<u64>, TableError> {
        if let Some(op) = self.poisoned {
            return Err(TableError::Poisoned {
                path: self.path.clone(),
                op,
            });
        }
        let mut buf = Vec::new();
        let mut stored = Vec::with_capacity(entries.len());
        for (i, new) in entries.iter().enumerate() {
            new.validate()?;
            if !entry_belongs(&new.subsystem, new.volume.as_deref(), &self.id) {
                return Err(TableError::MisdirectedEntry {
                    table: self.id.clone(),
                    subsystem: new.subsystem.clone(),
                    volume: new.volume.clone(),
                    offset: None,
                });
            }
            let entry = new.clone().with_seq(self.next_seq + i as u64);
            let payload = codec::encode_entry(&entry).map_err(TableError::Encode)?;
            format::push_frame(&mut buf, &payload)?;
            stored.push(entry);
        }
        if stored.is_empty() {
            return Ok(Vec::new());
        }
        self.fault_check(FaultSite::TableAppend)?;
        if let Err(e) = self.file.write_all_at(&buf, self.len) {
            // Take back whatever part of the write landed; if even that fails
            // the file's content is unknown.
            if self.file.set_len(self.len).is_err() {
                self.poisoned = Some("write");
            }
            return Err(TableError::io("write", &self.path, e));
        }
        let synced = self.fault_check(FaultSite::TableSync).and_then(|()| {
            self.file
                .sync_data()
                .map_err(|e| TableError::io("fdatasync", &self.path, e))
        });
        if let Err(e) = synced {
            self.poisoned = Some("fdatasync");
            return Err(e);
        }
        self.len += buf.len() as u64;
        self.next_seq += stored.len() as u64;
        let seqs = stored.iter().map(|e| e.seq).collect();
        self.entries.extend(stored);
        Ok(seqs)
    }

    /// Rewrites the table keeping only the entries `keep` accepts (sequence
    /// numbers unchanged; the next seq stays where it was). Crash safe: the new
    /// file is written and fsynced under a temporary name, renamed over the
    /// old one, and the directory fsynced; a crash at any point leaves either
    /// the old or the new file, never a mix.
    pub fn compact(
        &mut self,
        keep: impl Fn(&ActivityEntry) -> bool,
    ) -> Result<CompactReport, TableError> {
        if let Some(op) = self.poisoned {
            return Err(TableError::Poisoned {
                path: self.path.clone(),
                op,
            });
        }
        let before = (self.entries.len(), self.len);
        let kept: Vec<ActivityEntry> = self.entries.iter().filter(|e| keep(e)).cloned().collect();
        self.rewrite(kept)?;
        Ok(CompactReport {
            entries_before: before.0,
            entries_after: self.entries.len(),
            bytes_before: before.1,
            bytes_after: self.len,
        })
    }

    /// Replaces the file with one holding exactly `kept` (and the current seq floor).
    fn rewrite(&mut self, kept: Vec<ActivityEntry>) -> Result<(), TableError> {
        let (file, len) = write_replacement(
            &self.path,
            &self.id,
            self.next_seq,
            &kept,
            self.fault.as_ref(),
        )?;
        self.file = file;
        self.len = len;
        self.entries = kept;
        Ok(())
    }

    fn fault_check(&self, site: FaultSite) -> Result<(), TableError> {
        match &self.fault {
            Some(hook) => hook(site).map_err(|e| TableError::io(site.as_str(), &self.path, e)),
            None => Ok(()),
        }
    }
}
