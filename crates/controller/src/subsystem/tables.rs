//! The subsystem's activity tables: one for the subsystem, one per volume,
//! in `tables/` of the data directory (crates/activity-table).
//!
//! A volume's table lives as long as the volume: deleting the volume renames
//! `tables/V.tbl` to `tables/V.tbl.deleted.N` (first free N; history kept for
//! analysis, no longer read), and creating a volume retires a table left by
//! a crash between the delete's root and that rename, so a re-created volume
//! of the same name starts with an empty table. The subsystem table keeps
//! every entry either way.
//!
//! Every table opened here gets a fault hook that forwards its sites
//! (`table.append`, `table.sync`, `table.compact.rename`) to the subsystem's
//! [`FaultPoint`] (`OpenOptions::faults`), so a simulation injects table
//! failures through the same injector as every other site.

use std::collections::BTreeMap;
use std::sync::Arc;

use activity_table::{
    ActivityEntry, ActivityTable, FaultHook, NewEntry, RecoveryReport, TableError, TableId,
};
use volume_store::FaultPoint;

use super::{table_recovery, Subsystem};
use crate::datadir::DataDir;
use crate::error::{err, ControllerError, ErrorKind, Result};
use crate::metrics::Metrics;

pub(crate) struct Tables {
    pub(crate) subsystem: ActivityTable,
    pub(crate) volumes: BTreeMap<String, ActivityTable>,
    /// What recovery found in each table at open (for the IPL report).
    pub(crate) reports: Vec<(String, RecoveryReport)>,
    /// Cross-check findings and rebuilds at open (for the IPL report).
    pub(crate) notes: Vec<String>,
    /// Installed on every table opened (module doc).
    hook: FaultHook,
}

/// The activity-table hook that asks `faults` about each table site.
fn fault_hook(faults: Arc<dyn FaultPoint>) -> FaultHook {
    Arc::new(move |site| faults.check(site).map_err(std::io::Error::other))
}

pub(crate) fn table_err(what: &str, e: TableError) -> ControllerError {
    let kind = match &e {
        TableError::CorruptRecord { .. } | TableError::WrongTable { .. } => ErrorKind::Corrupt,
        _ => ErrorKind::Io,
    };
    ControllerError::with_source(kind, what.to_string(), e)
}

fn open(
    path: std::path::PathBuf,
    id: TableId,
    hook: &FaultHook,
) -> Result<(ActivityTable, RecoveryReport)> {
    let (mut t, rep) = ActivityTable::open(&path, id)
        .map_err(|e| table_err(&format!("open activity table {}", path.display()), e))?;
    t.set_fault_hook(Some(hook.clone()));
    Ok((t, rep))
}

impl Tables {
    /// Opens the subsystem table and those of `volumes`; `faults` is asked
    /// about every table fault site from now on.
    pub(crate) fn open(
        dir: &DataDir,
        subsystem: &str,
        volumes: &[String],
        faults: Arc<dyn FaultPoint>,
    ) -> Result<Tables> {
        let hook = fault_hook(faults);
        let mut vols = BTreeMap::new();
        let mut reports = Vec::new();
        // Every volume the root lists got its table when it was created: one
        // that is missing now was lost (QA: deleted tables were recreated
        // empty without a word).
        let mut missing = Vec::new();
        for v in volumes {
            let id = TableId::Volume {
                subsystem: subsystem.to_string(),
                volume: v.to_string(),
            };
            let (t, rep) = open(dir.volume_table_path(v), id, &hook)?;
            if rep.created {
                missing.push(v.clone());
            }
            reports.push((v.to_string(), rep));
            vols.insert(v.to_string(), t);
        }
        // The subsystem table, or its rebuild from the volume tables
        // (table_recovery.rs).
        let path = dir.subsystem_table_path();
        let id = TableId::Subsystem(subsystem.to_string());
        let any_entries = vols.values().any(|t| !t.entries().is_empty());
        let (mut sub, rep, mut notes) = match ActivityTable::open(&path, id) {
            // Missing (just created), or empty while the volume tables hold
            // rows (a rebuild interrupted before this version renamed it in).
            Ok((t, rep)) if any_entries && (rep.created || t.entries().is_empty()) => {
                // QA: an existing table whose only record was dropped (a
                // damaged tail) was reported as missing.
                let why = (!rep.created).then_some(
                    "it held no entries while the volume tables hold some (its records were \
                     dropped as a damaged tail, or a rebuild was interrupted)",
                );
                drop(t);
                let (t, rep, note) = table_recovery::rebuild(dir, subsystem, &vols, why)?;
                (t, rep, vec![note])
            }
            Ok((t, rep)) => {
                let mut notes = table_recovery::cross_check(&t, &vols);
                if rep.created && !volumes.is_empty() {
                    let note = format!(
                        "the subsystem activity table {} was missing and is created empty: \
                         the history of sessions that had no rows in a volume table is lost",
                        path.display()
                    );
                    tracing::warn!(%subsystem, "{note}");
                    notes.push(note);
                }
                (t, rep, notes)
            }
            Err(e @ TableError::CorruptRecord { .. }) => {
                let why = e.to_string();
                let (t, rep, note) = table_recovery::rebuild(dir, subsystem, &vols, Some(&why))?;
                (t, rep, vec![note])
            }
            Err(e) => {
                return Err(table_err(
                    &format!("open activity table {}", path.display()),
                    e,
                ))
            }
        };
        sub.set_fault_hook(Some(hook.clone()));
        reports.insert(0, ("subsystem".into(), rep));
        let mut t = Tables {
            subsystem: sub,
            volumes: vols,
            reports,
            notes: Vec::new(),
            hook,
        };
        t.notes.append(&mut notes);
        if !missing.is_empty() {
            // A loss of history: a warning, as the subsystem table's rebuild
            // is (QA: it was an info line among the IPL's notes).
            let note = format!(
                "the activity table(s) of volume(s) {} were missing and are created empty: \
                 the session history they held is lost (a session that had rows only there \
                 no longer shows)",
                missing.join(", ")
            );
            tracing::warn!(%subsystem, "{note}");
            t.notes.push(note);
        }
        Ok(t)
    }

    pub(crate) fn open_volume(
        &mut self,
        dir: &DataDir,
        subsystem: &str,
        volume: &str,
    ) -> Result<()> {
        let id = TableId::Volume {
            subsystem: subsystem.to_string(),
            volume: volume.to_string(),
        };
        let (t, rep) = open(dir.volume_table_path(volume), id, &self.hook)?;
        self.reports.push((volume.to_string(), rep));
        self.volumes.insert(volume.to_string(), t);
        Ok(())
    }

    pub(crate) fn close_volume(&mut self, volume: &str) {
        self.volumes.remove(volume);
    }

    /// Opens the table of a volume being created: a leftover table of a
    /// deleted volume of the same name is retired first (module doc).
    pub(crate) fn open_new_volume(
        &mut self,
        dir: &DataDir,
        subsystem: &str,
        volume: &str,
    ) -> Result<()> {
        if let Some(p) = retire_volume_table(dir, volume)? {
            tracing::warn!(%volume, retired = %p.display(), "activity table of an earlier volume of this name retired");
        }
        self.open_volume(dir, subsystem, volume)
    }
}

/// Renames `tables/V.tbl` (if any) to `tables/V.tbl.deleted.N`, N the first free number.
pub(crate) fn retire_volume_table(
    dir: &DataDir,
    volume: &str,
) -> Result<Option<std::path::PathBuf>> {
    let from = dir.volume_table_path(volume);
    if !from.exists() {
        return Ok(None);
    }
    let mut n = 1u32;
    let to = loop {
        let to = dir.tables_dir().join(format!("{volume}.tbl.deleted.{n}"));
        if !to.exists() {
            break to;
        }
        n += 1;
    };
    std::fs::rename(&from, &to).map_err(|e| {
        crate::datadir::io_err(
            format!(
                "retire activity table {} to {}",
                from.display(),
                to.display()
            ),
            e,
        )
    })?;
    Ok(Some(to))
}

impl Subsystem {
    /// Appends `entries` to the subsystem table and each entry naming a volume
    /// to that volume's table too; durable before return. One batch append
    /// (one fdatasync) per touched table. On error a prefix may have been
    /// written: of the subsystem table's batch, then of the volume tables in
    /// volume-name order (the resource manager copes with that).
    pub fn append_activity(&self, entries: &[NewEntry]) -> Result<Vec<u64>> {
        self.check_open()?;
        // A row's domain lies on its volume (rows also come from peers,
        // through the port routes). Checked before the tables are locked.
        for e in entries {
            let Some(v) = &e.volume else { continue };
            let Ok(vol) = self.inner.volume(v) else {
                continue; // named below, under the tables lock
            };
            let tracks = vol.geometry.tracks();
            if !e.extents.is_subset(&geometry::ExtentSet::full(tracks)) {
                return Err(err(
                    ErrorKind::InvalidRequest,
                    format!(
                        "entry for volume {v} names tracks past its last track {}",
                        tracks.saturating_sub(1)
                    ),
                ));
            }
        }
        self.inner.with_tables(|t| {
            for e in entries {
                if e.subsystem != self.inner.id {
                    return Err(err(
                        ErrorKind::InvalidRequest,
                        format!(
                            "entry names subsystem {} but this is {}",
                            e.subsystem, self.inner.id
                        ),
                    ));
                }
                if let Some(v) = &e.volume {
                    if !t.volumes.contains_key(v) {
                        return Err(err(
                            ErrorKind::NotFound,
                            format!("no activity table for volume {v}"),
                        ));
                    }
                }
            }
            let metrics = &self.inner.metrics;
            let seqs = t
                .subsystem
                .append_batch(entries)
                .map_err(|e| table_err("append to the subsystem table", e))?;
            Metrics::add(&metrics.table_appends, 1);
            // One batch (one fdatasync) per volume table, entries in call order.
            let mut by_volume: BTreeMap<&str, Vec<NewEntry>> = BTreeMap::new();
            for e in entries {
                if let Some(v) = &e.volume {
                    by_volume.entry(v.as_str()).or_default().push(e.clone());
                }
            }
            for (v, batch) in by_volume {
                if let Some(vt) = t.volumes.get_mut(v) {
                    vt.append_batch(&batch).map_err(|er| {
                        table_err(&format!("append to the table of volume {v}"), er)
                    })?;
                    Metrics::add(&metrics.table_appends, 1);
                }
            }
            Ok(seqs)
        })
    }

    /// The subsystem table, in sequence order.
    pub fn activity_entries(&self) -> Result<Vec<ActivityEntry>> {
        self.inner
            .with_tables(|t| Ok(t.subsystem.entries().to_vec()))
    }

    /// One volume's table, in sequence order.
    pub fn volume_activity_entries(&self, volume: &str) -> Result<Vec<ActivityEntry>> {
        self.inner.with_tables(|t| {
            t.volumes
                .get(volume)
                .map(|t| t.entries().to_vec())
                .ok_or_else(|| {
                    err(
                        ErrorKind::NotFound,
                        format!("no activity table for volume {volume}"),
                    )
                })
        })
    }
}
