//! The offline metadata checker (`firmware-sim check --data-dir DIR`), also
//! run at IPL when the directory was not shut down cleanly.
//!
//! It validates both root slots, decodes the newest root, loads the engine
//! state, replays the journal, opens every volume store (identity and
//! geometry), reads every activity table, and looks for leaked space (volume
//! files no root lists) and dangling references (sessions naming missing maps).

use std::path::Path;

use activity_table::ActivityTable;
use geometry::{DeviceModel, Geometry};
use serde::Serialize;

use crate::datadir::DataDir;
use crate::error::Result;
use crate::meta::{MetaStore, SlotStatus};
use crate::provider::{FileStores, StoreProvider};
use crate::subsystem::ipl::load_durable;
use crate::subsystem::{Core, Volumes};

/// What the checker found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// No errors (warnings allowed).
    pub ok: bool,
    /// Problems that make the directory unusable or data wrong.
    pub errors: Vec<String>,
    /// Harmless leftovers (leaked files of crashed creates, torn journal or table tails).
    pub warnings: Vec<String>,
    /// Status of root slot 0 and 1.
    pub slots: Vec<String>,
    /// Generation of the newest valid root.
    pub root_generation: u64,
    /// The root's OPEN flag: the subsystem was not shut down cleanly.
    pub dirty: bool,
    /// Journal records that replay.
    pub journal_records: usize,
    /// Why the journal scan stopped.
    pub journal_stop: String,
    /// Volumes in the root.
    pub volumes: usize,
    /// Maps in the engine state.
    pub maps: usize,
    /// Physical sessions in the root.
    pub sessions: usize,
    /// The metadata (root and journal) was loaded; when false the generation,
    /// journal and shutdown fields mean nothing (see [`CheckReport::summary`]).
    pub metadata_loaded: bool,
}

impl CheckReport {
    /// One line on the metadata state, for people: generation, journal and
    /// shutdown when the metadata loaded, otherwise that it could not be read.
    pub fn summary(&self) -> String {
        if !self.metadata_loaded {
            return "metadata not loaded (see the errors): generation, journal and shutdown state unknown"
                .to_string();
        }
        format!(
            "generation {}, {} journal record(s) (stop: {}), {}",
            self.root_generation,
            self.journal_records,
            self.journal_stop,
            if self.dirty {
                "not shut down cleanly"
            } else {
                "shut down cleanly"
            }
        )
    }
}

/// The subsystem the newest valid root of `data_dir` belongs to, if any
/// (read only; for error hints when no `subsystem.toml` says it).
pub fn subsystem_of(data_dir: impl AsRef<Path>) -> Option<String> {
    let dir = DataDir::new(data_dir.as_ref());
    if !dir.meta_path().is_file() {
        return None;
    }
    let (store, _) = FileStores::new(dir).open_meta().ok()?;
    let scan = MetaStore::new(store, false).scan_roots(None).ok()?;
    scan.newest().map(|(h, _)| h.subsystem.clone())
}

/// Checks the data directory `data_dir` (which must not be in use).
pub fn check(data_dir: impl AsRef<Path>) -> Result<CheckReport> {
    let dir = DataDir::new(data_dir.as_ref());
    let mut r = CheckReport::default();
    // Before the lock: a directory that is not a data directory is left as
    // it is (no LOCK file created in it).
    if !dir.meta_path().exists() {
        r.errors.push(format!(
            "{} does not exist: not a data directory",
            dir.meta_path().display()
        ));
        return Ok(r);
    }
    let _lock = dir.lock()?;
    let provider = FileStores::new(dir.clone());
    let (store, _) = provider.open_meta()?;
    let meta = MetaStore::new(store, true);
    let scan = meta.scan_roots(None)?;
    for (i, copies) in scan.copies.iter().enumerate() {
        for (c, s) in copies.iter().enumerate() {
            r.slots.push(match s {
                SlotStatus::Empty => format!("slot {i} copy {c}: empty"),
                SlotStatus::BlankHeader => format!("slot {i} copy {c}: {}", s.describe()),
                SlotStatus::Invalid(why) => format!("slot {i} copy {c}: invalid ({why})"),
                SlotStatus::Valid { header, .. } => format!(
                    "slot {i} copy {c}: generation {} of subsystem {}",
                    header.generation, header.subsystem
                ),
            });
        }
    }
    for (i, copies) in scan.copies.iter().enumerate() {
        let SlotStatus::Valid { header: best, .. } = scan.slot(i) else {
            continue;
        };
        for (c, s) in copies.iter().enumerate() {
            if !matches!(s, SlotStatus::Valid { header, .. } if header == best) {
                r.warnings.push(format!(
                    "root slot {i} copy {c} is {} while the other copy holds generation {}: \
                     redundancy is reduced until the next checkpoint rewrites this slot",
                    s.describe(),
                    best.generation
                ));
            }
        }
    }
    let Some((header, _)) = scan.newest() else {
        r.errors.push("no valid root in either slot".into());
        return Ok(r);
    };
    let subsystem = header.subsystem.clone();
    let loaded = match load_durable(&meta, &subsystem) {
        Ok(Some(l)) => l,
        Ok(None) => {
            r.errors.push("no root".into());
            return Ok(r);
        }
        Err(e) => {
            r.errors.push(e.full_message());
            return Ok(r);
        }
    };
    if let Some(w) = &loaded.root_warning {
        r.warnings.push(w.clone());
    }
    for w in &loaded.journal_repaired {
        r.warnings.push(format!(
            "{w}: the metadata store is damaged there (both copies of that record); nothing \
             was lost, but look at the disk"
        ));
    }
    r.metadata_loaded = true;
    r.root_generation = loaded.cursor.generation;
    r.dirty = loaded.dirty;
    r.journal_records = loaded.journal_records;
    r.journal_stop = format!("{:?}", loaded.journal_stop);
    if let crate::meta::JournalStop::Torn(why) = &loaded.journal_stop {
        r.warnings.push(format!(
            "journal ends in a torn record: {why}. A crash during an append leaves this, and \
             then nothing acknowledged is lost; if no crash interrupted a write, the last record \
             was damaged and the grains it recorded as copied read through to their source"
        ));
    }
    r.volumes = loaded.payload.volumes.len();
    r.maps = loaded.core.engine.maps().len();
    r.sessions = loaded.core.sessions.len();
    let mut volumes = Volumes::default();
    for v in &loaded.payload.volumes {
        let opened = v
            .model
            .parse::<DeviceModel>()
            .map_err(|e| e.to_string())
            .and_then(|m| Geometry::new(m).map(|g| (m, g)).map_err(|e| e.to_string()))
            .and_then(|(m, g)| {
                provider
                    .open_volume(&v.name, g)
                    .map(|s| (m, g, s))
                    .map_err(|e| e.full_message())
            });
        match opened {
            Ok((model, geometry, store)) => {
                volumes.insert(std::sync::Arc::new(crate::subsystem::Volume::new(
                    &v.name,
                    timezero::VolumeId(v.id),
                    model,
                    geometry,
                    store,
                )))
            }
            Err(e) => r.errors.push(format!("volume {}: {e}", v.name)),
        }
    }
    r.errors
        .extend(check_loaded(&loaded.core, &volumes, &provider));
    // Leaked space: volume files that no root lists.
    for name in provider.volume_names()? {
        if !loaded.payload.volumes.iter().any(|v| v.name == name) {
            r.warnings.push(format!(
                "volume file {name}.vol is listed by no root (left by a crashed create or delete)"
            ));
        }
    }
    // Activity tables: every volume the root lists has one, and so does
    // the subsystem (the next boot recreates a missing one empty).
    let missing: Vec<&str> = loaded
        .payload
        .volumes
        .iter()
        .map(|v| v.name.as_str())
        .filter(|v| !dir.volume_table_path(v).exists())
        .collect();
    if !missing.is_empty() {
        r.warnings.push(format!(
            "the activity table(s) of volume(s) {} are missing: the session history they \
             held is lost (boot creates them empty)",
            missing.join(", ")
        ));
    }
    if !loaded.payload.volumes.is_empty() && !dir.subsystem_table_path().exists() {
        r.warnings.push(format!(
            "the subsystem activity table {} is missing (boot rebuilds it from the volume \
             tables)",
            dir.subsystem_table_path().display()
        ));
    }
    if let Ok(entries) = std::fs::read_dir(dir.tables_dir()) {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "tbl") {
                match ActivityTable::read(&p) {
                    Ok((_, _, rep)) => {
                        if let Some(t) = rep.torn_tail {
                            r.warnings.push(format!(
                                "table {}: torn tail of {} bytes",
                                p.display(),
                                t.len
                            ));
                        }
                    }
                    Err(err) => {
                        // Most table errors name their file already.
                        let (path, msg) = (p.display().to_string(), err.to_string());
                        r.errors.push(if msg.starts_with(&path) {
                            format!("table {msg}")
                        } else {
                            format!("table {path}: {msg}")
                        });
                    }
                }
            }
        }
    }
    r.ok = r.errors.is_empty();
    Ok(r)
}

/// Cross-checks loaded state: every engine volume has a store of the right
/// size, every session map exists and names the session's volumes. Returns findings.
pub(crate) fn check_loaded(
    core: &Core,
    volumes: &Volumes,
    _provider: &dyn StoreProvider,
) -> Vec<String> {
    let mut f = Vec::new();
    for id in core.engine.volumes() {
        match volumes.by_id.get(&id) {
            None => f.push(format!("engine volume {} has no store", id.0)),
            Some(v) => {
                if core.engine.volume_grains(id) != Some(v.geometry.tracks()) {
                    f.push(format!(
                        "volume {}: engine has {:?} grains, store {} tracks",
                        v.name,
                        core.engine.volume_grains(id),
                        v.geometry.tracks()
                    ));
                }
            }
        }
    }
    for s in core.sessions.values() {
        for (p, m) in &s.members {
            match core.engine.map_info(*m) {
                None => f.push(format!("physical session {:02X} names missing {m}", s.phys)),
                Some(info) => {
                    // A volume with no store reads as such, not as an empty
                    // name (QA: `map1 is FB02 -> , session says ...`).
                    let names = |id: timezero::VolumeId| {
                        volumes
                            .by_id
                            .get(&id)
                            .map(|v| v.name.clone())
                            .unwrap_or_else(|| format!("volume {} (no store)", id.0))
                    };
                    if names(info.spec.source) != p.source || names(info.spec.target) != p.target {
                        f.push(format!(
                            "physical session {:02X}: {m} is {} -> {}, session says {} -> {}",
                            s.phys,
                            names(info.spec.source),
                            names(info.spec.target),
                            p.source,
                            p.target
                        ));
                    }
                }
            }
        }
    }
    f
}

/// Writes again the damaged trailers of the volume files the newest root
/// lists (`check --repair-trailers`; the directory must not be in use).
///
/// A trailer only identifies its file (volume id, geometry); the root holds
/// the same, so a damaged one (bad magic, checksum or version) in a file of
/// exactly the right size is rewritten from the root, and the volume's bytes
/// are not touched. A valid trailer naming another volume, or a file of
/// another size, is left alone and reported. Returns one line per volume
/// repaired or not repairable.
pub fn repair_trailers(data_dir: impl AsRef<Path>) -> Result<Vec<String>> {
    use crate::error::{err, ErrorKind};
    let dir = DataDir::new(data_dir.as_ref());
    if !dir.meta_path().exists() {
        return Err(err(
            ErrorKind::NotFound,
            format!(
                "{} does not exist: not a data directory",
                dir.meta_path().display()
            ),
        ));
    }
    let _lock = dir.lock()?;
    let mut out = Vec::new();
    // The metadata store's trailer holds only its fixed identity.
    let meta_path = dir.meta_path();
    match volume_store::SparseFileStore::rewrite_trailer(
        &meta_path,
        crate::meta::META_VOLUME_ID,
        crate::meta::meta_geometry(),
    ) {
        Ok(true) => out.push(format!(
            "metadata store: the trailer of {} was damaged and is rewritten (it holds only \
             the store's fixed identity)",
            meta_path.display()
        )),
        Ok(false) => {}
        Err(e) => out.push(format!("metadata store: not repaired: {e}")),
    }
    let (store, _) = FileStores::new(dir.clone()).open_meta()?;
    let meta = MetaStore::new(store, true);
    let scan = meta.scan_roots(None)?;
    let Some((header, _)) = scan.newest() else {
        return Err(err(ErrorKind::Corrupt, "no valid root in either slot"));
    };
    let subsystem = header.subsystem.clone();
    let loaded = load_durable(&meta, &subsystem)?
        .ok_or_else(|| err(ErrorKind::Corrupt, "the metadata store has no root"))?;
    for v in &loaded.payload.volumes {
        let geometry = match v
            .model
            .parse::<DeviceModel>()
            .map_err(|e| e.to_string())
            .and_then(|m| Geometry::new(m).map_err(|e| e.to_string()))
        {
            Ok(g) => g,
            Err(e) => {
                out.push(format!("volume {}: model {:?}: {e}", v.name, v.model));
                continue;
            }
        };
        let path = dir.volume_path(&v.name);
        match volume_store::SparseFileStore::rewrite_trailer(&path, &v.name, geometry) {
            Ok(true) => out.push(format!(
                "volume {}: the trailer of {} was damaged and is rewritten from the root ({})",
                v.name,
                path.display(),
                v.model
            )),
            Ok(false) => {}
            Err(e) => out.push(format!("volume {}: not repaired: {e}", v.name)),
        }
    }
    Ok(out)
}
