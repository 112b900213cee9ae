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
use crate::datadir::{io_err, DataDir};
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
    let (mut table, rep) = ActivityTable::open(&path, TableId::Subsystem(subsystem.into()))
        .map_err(|e| table_err(&format!("create activity table {}", path.display()), e))?;
    // Time order across volumes; each volume's own order is kept (stable sort).
    let mut all: Vec<(u64, usize, NewEntry)> = Vec::new();
    for vt in volumes.values() {
        for e in vt.entries() {
            all.push((e.time_unix_ms, all.len(), key(e)));
        }
    }
    all.sort_by_key(|(t, i, _)| (*t, *i));
    let entries: Vec<NewEntry> = all.into_iter().map(|(_, _, e)| e).collect();
    if !entries.is_empty() {
        table
            .append_batch(&entries)
            .map_err(|e| table_err("rebuild the subsystem table", e))?;
    }
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
