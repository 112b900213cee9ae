//! Patent A's redundancy between the activity tables: every entry naming a
//! volume is written to the subsystem table and then to that volume's table,
//! so at IPL the two are cross-checked, and a subsystem table that is
//! damaged, or missing while volume tables hold entries, is rebuilt from the
//! volume tables instead of keeping the subsystem down.
//!
//! Rules:
//! - the subsystem table is authoritative when it opens cleanly; a volume
//!   table that lacks its newest entries (a crash between the two appends)
//!   is reported, not changed;
//! - a rebuild keeps the damaged file as `subsystem.tbl.damaged-N`, appends
//!   every volume-table entry in time order (each volume's own order kept),
//!   and says so in the IPL report; entries that named no volume cannot be
//!   recovered and the note says that too.

use std::collections::BTreeMap;
use std::path::PathBuf;

use activity_table::{ActivityEntry, ActivityTable, NewEntry, RecoveryReport, TableId};

use super::tables::table_err;
use crate::datadir::{io_err, sync_dir, DataDir};
use crate::error::Result;

/// What an entry says, without its table-local sequence number.
fn key(e: &ActivityEntry) -> NewEntry {
    NewEntry {
        session_id: e.session_id.clone(),
        phys_session_id: e.phys_session_id,
        subsystem: e.subsystem.clone(),
        volume: e.volume.clone(),
        extents: e.extents.clone(),
        status: e.status,
        program: e.program.clone(),
        host: None,
        time_unix_ms: e.time_unix_ms,
    }
}

/// Differences between the subsystem table and the volume tables, one note
/// per volume that differs.
pub(crate) fn cross_check(
    subsystem: &ActivityTable,
    volumes: &BTreeMap<String, ActivityTable>,
) -> Vec<String> {
    let mut notes = Vec::new();
    for (name, vt) in volumes {
        let from_sub: Vec<NewEntry> = subsystem
            .entries()
            .iter()
            .filter(|e| e.volume.as_deref() == Some(name))
            .map(key)
            .collect();
        let own: Vec<NewEntry> = vt.entries().iter().map(key).collect();
        // Equal, or the table of a re-created volume (the subsystem table
        // also keeps the rows of the earlier volume of that name).
        if from_sub.ends_with(&own) {
            continue;
        }
        if from_sub.starts_with(&own) {
            notes.push(format!(
                "table {name}: lacks the newest {} entr(ies) of the subsystem table (a crash \
                 between the two appends); the subsystem table is used",
                from_sub.len() - own.len()
            ));
        } else {
            notes.push(format!(
                "table {name}: differs from the subsystem table ({} entries there, {} here); \
                 the subsystem table is used",
                from_sub.len(),
                own.len()
            ));
        }
    }
    notes
}

/// First free `tables/subsystem.tbl.damaged.N`.
fn damaged_path(dir: &DataDir) -> PathBuf {
    let mut n = 1u32;
    loop {
        let p = dir.tables_dir().join(format!("subsystem.tbl.damaged-{n}"));
        if !p.exists() {
            return p;
        }
        n += 1;
    }
}

/// Every volume-table entry, merged by time while keeping each volume's own
/// order (a k-way merge: clocks may step back, and a volume's rows must stay
/// in the order they were written).
fn merged(volumes: &BTreeMap<String, ActivityTable>) -> Vec<NewEntry> {
    let mut heads: Vec<(&[ActivityEntry], usize)> =
        volumes.values().map(|t| (t.entries(), 0)).collect();
    let mut out = Vec::new();
    loop {
        let next = heads
            .iter()
            .enumerate()
            .filter(|(_, (list, i))| *i < list.len())
            .min_by_key(|(k, (list, i))| (list[*i].time_unix_ms, *k))
            .map(|(k, _)| k);
        let Some(k) = next else {
            return out;
        };
        let (list, i) = &mut heads[k];
        // The rebuilt rows keep their host: the resource manager keys a
        // session by id and owner host, so a row without one here would
        // split a session spanning subsystems in two.
        out.push(NewEntry {
            host: list[*i].host.clone(),
            ..key(&list[*i])
        });
        *i += 1;
    }
}

/// Rebuilds the subsystem table from `volumes`. `damaged` says why (and
/// whether a damaged file must be moved aside first). Returns the new table,
/// its open report and the note for the IPL report.
pub(crate) fn rebuild(
    dir: &DataDir,
    subsystem: &str,
    volumes: &BTreeMap<String, ActivityTable>,
    damaged: Option<&str>,
) -> Result<(ActivityTable, RecoveryReport, String)> {
    let path = dir.subsystem_table_path();
    let mut kept = None;
    if damaged.is_some() && path.exists() {
        let to = damaged_path(dir);
        std::fs::rename(&path, &to).map_err(|e| {
            io_err(
                format!("move damaged {} to {}", path.display(), to.display()),
                e,
            )
        })?;
        kept = Some(to);
    }
    // Built aside and renamed into place: a crash or a failed append in
    // between never leaves a valid but empty subsystem table behind.
    let aside = dir.tables_dir().join("subsystem.tbl.rebuild");
    if aside.exists() {
        std::fs::remove_file(&aside)
            .map_err(|e| io_err(format!("remove stale {}", aside.display()), e))?;
    }
    let entries = merged(volumes);
    {
        let (mut t, _) = ActivityTable::open(&aside, TableId::Subsystem(subsystem.into()))
            .map_err(|e| table_err(&format!("create activity table {}", aside.display()), e))?;
        if !entries.is_empty() {
            t.append_batch(&entries)
                .map_err(|e| table_err("rebuild the subsystem table", e))?;
        }
    }
    std::fs::rename(&aside, &path).map_err(|e| {
        io_err(
            format!("rename {} to {}", aside.display(), path.display()),
            e,
        )
    })?;
    sync_dir(&dir.tables_dir())?;
    let (table, rep) = ActivityTable::open(&path, TableId::Subsystem(subsystem.into()))
        .map_err(|e| table_err(&format!("open activity table {}", path.display()), e))?;
    let why = match (damaged, &kept) {
        (Some(d), Some(k)) => format!("was damaged ({d}; kept as {})", k.display()),
        (Some(d), None) => format!("was damaged ({d})"),
        (None, _) => "was missing".to_string(),
    };
    let note = format!(
        "table subsystem: {why}; rebuilt from {} volume table(s), {} entries (entries that \
         named no volume are not recoverable)",
        volumes.len(),
        entries.len()
    );
    tracing::warn!(%subsystem, note, "subsystem activity table recovered from the volume tables");
    Ok((table, rep, note))
}
