//! `check --data-dir DIR --salvage-tables`: the way out of a damaged activity
//! table (a record in the middle of `DIR/tables/*.tbl` fails its checksum
//! while later ones are intact, so boot refuses the table rather than drop
//! records silently).
//!
//! Every `*.tbl` file is opened with
//! [`activity_table::ActivityTable::open_salvage`]: intact records are kept,
//! damaged ones are left out and listed, and the damaged file is first copied
//! to `<name>.damaged-<n>`. A table whose header is damaged cannot be
//! salvaged (nothing says which table its records belong to); it is reported
//! and left as it is. The daemon must not run (the data directory's lock is
//! taken for the duration).

use std::path::{Path, PathBuf};

use activity_table::{ActivityTable, TableId};
use controller::datadir::DataDir;
use serde::Serialize;

use crate::daemon::config::stored_subsystem_id;
use crate::error::CliError;

/// What salvage did with one table file.
#[derive(Debug, Serialize)]
pub struct TableSalvage {
    /// The file.
    pub path: PathBuf,
    /// Records kept.
    pub kept: usize,
    /// Damaged records left out: `offset N, L bytes: reason`.
    pub skipped: Vec<String>,
    /// Where the damaged file was copied before it was rewritten.
    pub damaged_copy: Option<PathBuf>,
    /// Bytes of a torn tail cut off (expected after a crash).
    pub torn_tail_bytes: u64,
    /// Why the table could not be salvaged (then nothing was changed).
    pub error: Option<String>,
}

impl std::fmt::Display for TableSalvage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.path.display();
        if let Some(e) = &self.error {
            return write!(
                f,
                "{name}: NOT SALVAGED (left unchanged): {e}; to boot anyway, move it aside \
                 (mv {name} {name}.damaged): the table then starts empty and the sessions \
                 recorded only in it are forgotten"
            );
        }
        if self.skipped.is_empty() {
            write!(f, "{name}: intact, {} record(s)", self.kept)?;
        } else {
            write!(
                f,
                "{name}: {} record(s) kept, {} damaged record(s) left out ({})",
                self.kept,
                self.skipped.len(),
                self.skipped.join("; ")
            )?;
        }
        if let Some(c) = &self.damaged_copy {
            write!(f, "; damaged file kept as {}", c.display())?;
        }
        if self.torn_tail_bytes > 0 {
            write!(f, "; torn tail of {} byte(s) cut", self.torn_tail_bytes)?;
        }
        Ok(())
    }
}

/// The table a file name stands for (`subsystem.tbl`, `<VOLUME>.tbl`);
/// `None` for anything else (retired `*.tbl.deleted.N`, damaged copies).
fn table_id(file_name: &str, subsystem: &str) -> Option<TableId> {
    let stem = file_name.strip_suffix(".tbl")?;
    Some(if stem == "subsystem" {
        TableId::Subsystem(subsystem.to_string())
    } else {
        TableId::Volume {
            subsystem: subsystem.to_string(),
            volume: stem.to_string(),
        }
    })
}

/// The subsystem the directory belongs to: its `subsystem.toml`, else the
/// header of any intact table.
fn subsystem_of(dir: &DataDir, files: &[PathBuf]) -> Option<String> {
    stored_subsystem_id(dir.root()).or_else(|| {
        files
            .iter()
            .find_map(|p| ActivityTable::read(p).ok())
            .map(|(id, _, _)| match id {
                TableId::Subsystem(s) | TableId::Volume { subsystem: s, .. } => s,
            })
    })
}

/// Salvages every activity table of `data_dir`; one entry per table file.
pub fn salvage_tables(data_dir: &Path) -> Result<Vec<TableSalvage>, CliError> {
    let dir = DataDir::new(data_dir);
    let tables = dir.tables_dir();
    if !tables.is_dir() {
        return Err(CliError::Failed(format!(
            "{}: no activity tables (is it a firmware-sim data directory?)",
            tables.display()
        )));
    }
    let _lock = dir.lock().map_err(|e| {
        CliError::failed(
            format!("salvage {}: the daemon must be stopped", data_dir.display()),
            e.full_message(),
        )
    })?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&tables)
        .map_err(|e| CliError::failed(format!("read {}", tables.display()), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tbl"))
        .collect();
    files.sort();
    let subsystem = subsystem_of(&dir, &files).ok_or_else(|| {
        CliError::Failed(format!(
            "salvage {}: cannot tell which subsystem the tables belong to (no subsystem.toml, no intact table)",
            data_dir.display()
        ))
    })?;
    let mut out = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(id) = table_id(&name, &subsystem) else {
            continue;
        };
        let entry = match ActivityTable::open_salvage(&path, id) {
            Ok((_table, r)) => TableSalvage {
                path,
                kept: r.records,
                skipped: r
                    .skipped
                    .iter()
                    .map(|s| format!("offset {}, {} bytes: {}", s.offset, s.len, s.reason))
                    .collect(),
                damaged_copy: r.damaged_copy.clone(),
                torn_tail_bytes: r.truncated_bytes(),
                error: None,
            },
            Err(e) => TableSalvage {
                path,
                kept: 0,
                skipped: Vec::new(),
                damaged_copy: None,
                torn_tail_bytes: 0,
                error: Some(e.to_string()),
            },
        };
        out.push(entry);
    }
    Ok(out)
}

/// Names the salvage command where a table error says "(use salvage)".
pub fn name_salvage(message: &str, data_dir: &Path) -> String {
    let how = if message.contains("subsystem.tbl") {
        // Boot rebuilds the subsystem table from the volume tables (every
        // entry that names a volume is in both): nothing is lost that way.
        format!(
            "(boot the subsystem on {}: its IPL rebuilds this table from the volume tables and \
             loses no entry; `--salvage-tables` would drop the damaged record)",
            data_dir.display()
        )
    } else {
        format!(
            "(stop the daemon and keep the intact records with `firmware-sim check --data-dir {} --salvage-tables`)",
            data_dir.display()
        )
    };
    message.replace("(use salvage)", &how)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_map_to_tables() {
        assert_eq!(
            table_id("subsystem.tbl", "SS01"),
            Some(TableId::Subsystem("SS01".into()))
        );
        assert_eq!(
            table_id("FB00.tbl", "SS01"),
            Some(TableId::Volume {
                subsystem: "SS01".into(),
                volume: "FB00".into()
            })
        );
        assert_eq!(table_id("FB00.tbl.deleted.1", "SS01"), None);
        // The way out named for each kind of table.
        let dir = Path::new("/d");
        let sub = name_salvage("t/subsystem.tbl: corrupt record (use salvage)", dir);
        assert!(sub.contains("boot the subsystem on /d") && sub.contains("loses no entry"));
        let vol = name_salvage("t/FB00.tbl: corrupt record (use salvage)", dir);
        assert!(
            vol.contains("check --data-dir /d --salvage-tables"),
            "{vol}"
        );
        assert_eq!(table_id("FB00.tbl.damaged-1", "SS01"), None);
    }
}
