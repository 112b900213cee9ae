//! User names of maps and groups (`map create --name`, `group create
//! --name`), kept in the data directory's `names.json`.
//!
//! Names are labels the daemon keeps beside the subsystem, not subsystem
//! state: the controller knows maps and groups by id only. Invariants:
//! - a name is 1..=64 characters of `A-Z a-z 0-9 . _ -`, not starting with
//!   `.` or `-`, and not all digits (so an argument is an id or a name,
//!   never both); names are unique among maps and among groups;
//! - the file is replaced atomically (written aside, flushed, renamed, the
//!   directory flushed), after the map or group it names exists durably: a
//!   crash in between leaves the object without its name, never a name
//!   without an object that a later object could inherit (ids are never
//!   reused);
//! - a file that cannot be read is set aside as `names.json.damaged` and the
//!   daemon boots without names (they are labels; no data depends on them).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// What `names.json` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamesFile {
    #[serde(default)]
    maps: BTreeMap<u32, String>,
    #[serde(default)]
    groups: BTreeMap<u32, String>,
}

/// Which objects a name belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A map.
    Map,
    /// A consistency group.
    Group,
}

/// Added to a save error when the filesystem is full (the API answers such
/// a failure `no_space`, not `internal`).
const NO_SPACE: &str = " (the data directory's filesystem is full)";

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Map => "map",
            Kind::Group => "group",
        }
    }
}

/// The names of one data directory.
pub struct Names {
    path: PathBuf,
    file: Mutex<NamesFile>,
}

impl Names {
    /// Loads `DIR/names.json` (none yet: no names). A damaged file is set
    /// aside and reported in the returned warning.
    pub fn load(dir: &Path) -> (Names, Option<String>) {
        let path = dir.join("names.json");
        let (file, warning) = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (NamesFile::default(), None),
            Err(e) => (
                NamesFile::default(),
                Some(format!(
                    "{}: {e}; booting without map and group names",
                    path.display()
                )),
            ),
            Ok(bytes) => match serde_json::from_slice::<NamesFile>(&bytes) {
                Ok(f) if f.valid() => (f, None),
                other => {
                    let why = match other {
                        Err(e) => e.to_string(),
                        Ok(_) => "an invalid or duplicate name".into(),
                    };
                    let aside = dir.join("names.json.damaged");
                    let _ = std::fs::rename(&path, &aside);
                    (
                        NamesFile::default(),
                        Some(format!(
                            "{} is damaged ({why}); set aside as {} and booting without map \
                             and group names (no data depends on them)",
                            path.display(),
                            aside.display()
                        )),
                    )
                }
            },
        };
        (
            Names {
                path,
                file: Mutex::new(file),
            },
            warning,
        )
    }

    /// The name of `id`, if it has one.
    pub fn name(&self, kind: Kind, id: u32) -> Option<String> {
        self.file.lock().table(kind).get(&id).cloned()
    }

    /// The id named `name`, if any.
    pub fn id(&self, kind: Kind, name: &str) -> Option<u32> {
        self.file
            .lock()
            .table(kind)
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(id, _)| *id)
    }

    /// The id an argument means: a number is an id, anything else a name.
    pub fn resolve(&self, kind: Kind, arg: &str) -> Option<u32> {
        arg.parse::<u32>().ok().or_else(|| self.id(kind, arg))
    }

    /// Checks that `name` may be given to a new object of `kind`.
    pub fn check_new(&self, kind: Kind, name: &str) -> Result<(), String> {
        check_name(kind, name)?;
        match self.id(kind, name) {
            Some(id) => Err(format!(
                "{} name `{name}` is taken by {} {id}",
                kind.word(),
                kind.word()
            )),
            None => Ok(()),
        }
    }

    /// Names `id` (checked again) and saves the file.
    pub fn set(&self, kind: Kind, id: u32, name: &str) -> Result<(), String> {
        let mut f = self.file.lock();
        check_name(kind, name)?;
        if let Some((other, _)) = f.table(kind).iter().find(|(i, n)| *n == name && **i != id) {
            return Err(format!(
                "{} name `{name}` is taken by {} {other}",
                kind.word(),
                kind.word()
            ));
        }
        let before = f.table_mut(kind).insert(id, name.to_string());
        self.save(&f).inspect_err(|_| {
            // Not saved: not shown either (an IPL would not have it).
            match before {
                Some(old) => f.table_mut(kind).insert(id, old),
                None => f.table_mut(kind).remove(&id),
            };
        })
    }

    /// True if `error` (from [`Names::set`] and the like) says the
    /// filesystem is full.
    pub fn is_no_space(error: &str) -> bool {
        error.contains(NO_SPACE)
    }

    /// Forgets the name of `id` (its object was deleted) and saves.
    pub fn remove(&self, kind: Kind, id: u32) -> Result<(), String> {
        let mut f = self.file.lock();
        if f.table_mut(kind).remove(&id).is_none() {
            return Ok(());
        }
        self.save(&f)
    }

    /// Drops the names of objects that do not exist (deleted while a crash
    /// kept the name) and saves if anything changed.
    pub fn retain(&self, kind: Kind, exists: impl Fn(u32) -> bool) -> Result<(), String> {
        let mut f = self.file.lock();
        let before = f.table(kind).len();
        f.table_mut(kind).retain(|id, _| exists(*id));
        if f.table(kind).len() == before {
            return Ok(());
        }
        self.save(&f)
    }

    fn save(&self, f: &NamesFile) -> Result<(), String> {
        let fail = |e: std::io::Error| {
            let full = e.kind() == std::io::ErrorKind::StorageFull;
            format!(
                "saving {}: {e}{}",
                self.path.display(),
                if full { NO_SPACE } else { "" }
            )
        };
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(f).map_err(|e| e.to_string())?;
        let mut out = std::fs::File::create(&tmp).map_err(fail)?;
        out.write_all(&bytes).map_err(fail)?;
        out.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &self.path).map_err(fail)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(fail)?;
        }
        Ok(())
    }
}

impl NamesFile {
    fn table(&self, kind: Kind) -> &BTreeMap<u32, String> {
        match kind {
            Kind::Map => &self.maps,
            Kind::Group => &self.groups,
        }
    }

    fn table_mut(&mut self, kind: Kind) -> &mut BTreeMap<u32, String> {
        match kind {
            Kind::Map => &mut self.maps,
            Kind::Group => &mut self.groups,
        }
    }

    fn valid(&self) -> bool {
        [Kind::Map, Kind::Group].into_iter().all(|k| {
            let t = self.table(k);
            let mut seen = std::collections::BTreeSet::new();
            t.values()
                .all(|n| check_name(k, n).is_ok() && seen.insert(n.as_str()))
        })
    }
}

/// The rules of the module doc.
fn check_name(kind: Kind, name: &str) -> Result<(), String> {
    let what = format!("{} name", kind.word());
    controller::check_id(&what, name)?;
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{what} `{name}` is all digits, which reads as an id; use a name with a letter"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name that could not be saved is not shown either (an IPL would not
    /// have it), and the earlier name of the object stays.
    #[test]
    fn a_name_not_saved_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (n, _) = Names::load(dir.path());
        n.set(Kind::Map, 1, "old").unwrap();
        // The directory is gone: the save fails.
        let gone = dir.path().to_path_buf();
        drop(dir);
        assert!(!gone.exists());
        assert!(n.set(Kind::Map, 1, "new").is_err());
        assert!(n.set(Kind::Map, 2, "other").is_err());
        assert_eq!(n.name(Kind::Map, 1).as_deref(), Some("old"));
        assert_eq!(n.name(Kind::Map, 2), None);
        assert!(Names::is_no_space(&format!("saving x: e{NO_SPACE}")));
    }

    #[test]
    fn names_persist_are_unique_and_never_look_like_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (n, w) = Names::load(dir.path());
        assert!(w.is_none());
        n.set(Kind::Map, 3, "nightly").unwrap();
        n.set(Kind::Group, 3, "nightly").unwrap();
        assert!(n
            .check_new(Kind::Map, "nightly")
            .unwrap_err()
            .contains("map 3"));
        assert!(n
            .check_new(Kind::Map, "42")
            .unwrap_err()
            .contains("all digits"));
        assert!(n.check_new(Kind::Map, "a b").is_err());
        let (again, _) = Names::load(dir.path());
        assert_eq!(again.id(Kind::Map, "nightly"), Some(3));
        assert_eq!(again.name(Kind::Group, 3).as_deref(), Some("nightly"));
        again.remove(Kind::Map, 3).unwrap();
        again.retain(Kind::Group, |_| false).unwrap();
        let (last, _) = Names::load(dir.path());
        assert_eq!(last.id(Kind::Map, "nightly"), None);
        assert_eq!(last.name(Kind::Group, 3), None);
    }

    #[test]
    fn a_damaged_file_is_set_aside_and_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("names.json"), b"{\"maps\": {\"1\": \"7\"}}").unwrap();
        let (n, w) = Names::load(dir.path());
        assert!(w.unwrap().contains("names.json.damaged"));
        assert!(dir.path().join("names.json.damaged").exists());
        assert_eq!(n.name(Kind::Map, 1), None);
    }
}
