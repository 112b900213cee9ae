//! Opening a data directory: first boot, IPL (reopen), controller reset.
//!
//! IPL: newest valid root -> validate payload -> `Engine::load` -> open every
//! volume store (identity and geometry checked by the store) -> replay the
//! journal records of the root's generation -> if the root says OPEN (no clean
//! shutdown) run the checker -> create config volumes that are missing ->
//! checkpoint (a new generation, OPEN set) so stale journal records can never
//! be replayed into maps created later.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use geometry::{DeviceModel, Geometry};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use timezero::{Engine, VolumeId};
use volume_store::NoFaults;

use super::commit::Committer;
use super::cow::replay_record;
use super::locks::GrainLocks;
use super::persist::RootPayload;
use super::sessions::PhysSession;
use super::tables::Tables;
use super::{Core, Inner, JournalCursor, OpenOptions, Subsystem, Volume, Volumes};
use crate::config::SubsystemConfig;
use crate::datadir::DataDir;
use crate::error::{err, ErrorKind, Result};
use crate::events::EVENT_CAPACITY;
use crate::meta::{JournalStop, MetaStore, ROOT_FLAG_OPEN};
use crate::metrics::Metrics;
use crate::provider::FileStores;

/// What opening (or resetting) the subsystem found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IplReport {
    /// The data directory was created by this open.
    pub created: bool,
    /// The directory had not been shut down cleanly (OPEN flag set).
    pub dirty: bool,
    /// Root generation loaded (0 when created).
    pub root_generation: u64,
    /// Journal records replayed.
    pub journal_records: usize,
    /// Why journal replay stopped (`end`, or a torn tail).
    pub journal_stop: String,
    /// Findings of the checker (run when dirty); empty = clean.
    pub check_findings: Vec<String>,
    /// Config volumes created because the directory lacked them.
    pub volumes_created: Vec<String>,
    /// Maps that are suspended (sticky across IPL).
    pub suspended_maps: Vec<u32>,
    /// Physical sessions found (all quiesced after a reset).
    pub sessions: Vec<u8>,
    /// Physical sessions lost by a reset that dropped volatile state.
    pub sessions_lost: Vec<u8>,
    /// Activity-table recovery notes (torn tails truncated, temp files removed).
    pub table_notes: Vec<String>,
    /// Set when the slot the newest checkpoint went to held no valid root,
    /// so the older one was loaded: a checkpoint torn by a crash (nothing
    /// acknowledged is lost) or a damaged root (its changes are lost). Says
    /// which slot, why, and what to compare.
    pub root_warning: Option<String>,
    /// Journal records whose damaged header was recognised by their checksum
    /// and replayed: metadata damage to look into, nothing lost.
    pub journal_repaired: Vec<String>,
}

impl IplReport {
    /// Logs the report as fields with a one-line message (`reset` is
    /// `Some(lose_volatile)` for a controller reset, `None` for an open).
    fn log(&self, subsystem: &str, maps: usize, reset: Option<bool>) {
        let list = |v: &[String]| v.join("; ");
        let ids = |v: &[u8]| v.iter().map(u8::to_string).collect::<Vec<_>>().join(",");
        let suspended = self
            .suspended_maps
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        macro_rules! emit {
            ($level:ident, $msg:expr, $($extra:tt)*) => {
                tracing::$level!(
                    subsystem,
                    $($extra)*
                    created = self.created,
                    unclean = self.dirty,
                    root_generation = self.root_generation,
                    journal_records = self.journal_records,
                    journal_stop = %self.journal_stop,
                    maps,
                    suspended_maps = %suspended,
                    sessions = %ids(&self.sessions),
                    sessions_lost = %ids(&self.sessions_lost),
                    volumes_created = %self.volumes_created.join(","),
                    check_findings = %list(&self.check_findings),
                    table_notes = %list(&self.table_notes),
                    root_warning = %self.root_warning.as_deref().unwrap_or(""),
                    journal_repaired = %list(&self.journal_repaired),
                    "{}", $msg
                )
            };
        }
        let state = if self.created {
            "created"
        } else if self.dirty {
            "recovered after an unclean shutdown"
        } else {
            "opened after a clean shutdown"
        };
        match reset {
            None => {
                let msg = format!(
                    "subsystem {subsystem} {state}: generation {}, {} journal record(s) replayed, {maps} map(s) restored",
                    self.root_generation, self.journal_records
                );
                emit!(info, msg,)
            }
            Some(lose_volatile) => {
                let msg = format!(
                    "controller reset of {subsystem}: generation {}, {} journal record(s) replayed, {maps} map(s), {} session(s) lost",
                    self.root_generation,
                    self.journal_records,
                    self.sessions_lost.len()
                );
                emit!(warn, msg, lose_volatile,)
            }
        }
    }
}

/// Durable state rebuilt from the metadata store.
pub(crate) struct Loaded {
    pub(crate) payload: RootPayload,
    pub(crate) core: Core,
    pub(crate) cursor: JournalCursor,
    pub(crate) dirty: bool,
    pub(crate) journal_records: usize,
    pub(crate) journal_stop: JournalStop,
    /// [`IplReport::root_warning`].
    pub(crate) root_warning: Option<String>,
    /// [`IplReport::journal_repaired`].
    pub(crate) journal_repaired: Vec<String>,
}

/// A blank metadata store (a missing `meta.store`, or every root header
/// blank) in a directory that still holds an earlier subsystem's data:
/// volume stores with allocated tracks, or activity tables with rows.
/// Starting a new subsystem there would replace every volume with an empty
/// one, so it is refused, naming what is there; nothing is changed.
///
/// What a crash during a first boot or a create leaves (volume stores with
/// no data: nothing is served before the first root is durable) and empty
/// tables do not count, so such a directory still boots.
fn refuse_blank_over_data(
    dir: &DataDir,
    provider: &dyn crate::StoreProvider,
    meta_created: bool,
) -> Result<()> {
    let mut found = Vec::new();
    for name in provider.volume_names()? {
        if provider.volume_holds_data(&name)? {
            found.push(format!("volume file {name}.vol"));
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir.tables_dir()) {
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "tbl")
                && activity_table::ActivityTable::read(&path)
                    .map_or(true, |(_, rows, _)| !rows.is_empty())
            {
                found.push(format!(
                    "activity table {}",
                    e.file_name().to_string_lossy()
                ));
            }
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    if meta_created {
        // Leave the directory as it was found: the next boot says the same.
        let _ = std::fs::remove_file(dir.meta_path());
    }
    found.sort();
    let shown = found.len().min(6);
    let more = found.len() - shown;
    Err(err(
        ErrorKind::Corrupt,
        format!(
            "{} {}, but {} holds an earlier subsystem's data ({}{}): refusing to create a new \
             subsystem over it, which would replace those volumes with empty ones; nothing was \
             changed. Put back the metadata store (from a backup), or copy the data out (each \
             volume file is a raw image of its volume, trailer after its last track) and boot \
             a new data directory",
            dir.meta_path().display(),
            if meta_created {
                "is missing"
            } else {
                "holds no metadata root (every root header is blank)"
            },
            dir.root().display(),
            found[..shown].join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ),
    ))
}

/// Loads the newest root and replays its journal.
pub(crate) fn load_durable(meta: &MetaStore, subsystem: &str) -> Result<Option<Loaded>> {
    let scan = meta.scan_roots(Some(subsystem))?;
    if scan.is_blank() {
        return Ok(None);
    }
    let Some((header, bytes)) = scan.newest() else {
        let why = scan.describe();
        return Err(err(
            ErrorKind::Corrupt,
            format!(
                "no valid metadata root for subsystem {subsystem} ({})",
                why.join("; ")
            ),
        ));
    };
    let payload = RootPayload::decode(bytes)?;
    if payload.subsystem != subsystem {
        return Err(err(
            ErrorKind::Corrupt,
            format!(
                "root names subsystem {} (expected {subsystem})",
                payload.subsystem
            ),
        ));
    }
    let engine = Engine::load(&payload.engine).map_err(|e| {
        err(
            ErrorKind::Corrupt,
            format!("engine state of root generation {}: {e}", header.generation),
        )
    })?;
    let mut core = Core::new(engine, payload.next_volume_id);
    for r in &payload.sessions {
        core.sessions.insert(r.phys, PhysSession::from_record(r));
    }
    let root_warning = scan.unreadable_other_slot(header.slot).map(|why| {
        format!(
            "{why}; generation {} from slot {} was loaded. A crash during a checkpoint \
             leaves this, and then nothing acknowledged is lost; if no crash interrupted a \
             control request, the newest root was damaged and the changes it recorded \
             (volumes, maps or sessions created, changed or deleted just before) are lost: \
             compare `volume list` and `map list` with what you expect",
            header.generation, header.slot
        )
    });
    let scan = meta.scan_journal(header.generation).map_err(|e| {
        e.context(format!(
            "IPL of subsystem {subsystem} from root generation {} (slot {})",
            header.generation, header.slot
        ))
    })?;
    for (i, rec) in scan.records.iter().enumerate() {
        replay_record(&mut core, rec)
            .map_err(|e| e.context(format!("journal record {}", i + 1)))?;
    }
    let _ = core.engine.take_events();
    core.refresh_vol_maps();
    let cursor = JournalCursor {
        generation: header.generation,
        slot: header.slot,
        offset: scan.end,
        seq: scan.records.len() as u64 + 1,
        flags: ROOT_FLAG_OPEN,
    };
    Ok(Some(Loaded {
        dirty: header.flags & ROOT_FLAG_OPEN != 0,
        journal_records: scan.records.len(),
        journal_stop: scan.stop,
        root_warning,
        journal_repaired: scan.repaired,
        payload,
        core,
        cursor,
    }))
}

pub(crate) fn open(
    root: &Path,
    config: SubsystemConfig,
    options: OpenOptions,
) -> Result<Subsystem> {
    config
        .validate()
        .map_err(|e| err(ErrorKind::InvalidRequest, format!("config: {e}")))?;
    let dir = DataDir::new(root);
    dir.create_tree()?;
    let lock = if options.lock {
        Some(dir.lock()?)
    } else {
        None
    };
    let provider = options
        .provider
        .clone()
        .unwrap_or_else(|| Arc::new(FileStores::new(dir.clone())));
    let faults = options.faults.clone().unwrap_or_else(|| Arc::new(NoFaults));
    let sync = config.durability == crate::config::DurabilityMode::Strict;
    let (meta_store, meta_created) = provider.open_meta()?;
    let reopen_from = provider.clone();
    let meta = MetaStore::with_recovery(
        meta_store,
        sync,
        Arc::new(move || reopen_from.open_meta().map(|(s, _)| s)),
        faults.clone(),
    );
    let meta = if options.journal_before_durable_root {
        meta.with_unsafe_roots()
    } else {
        meta
    };
    let mut report = IplReport::default();
    let loaded = load_durable(&meta, &config.id)?;
    let (core, cursor, volumes) = match loaded {
        None => {
            refuse_blank_over_data(&dir, provider.as_ref(), meta_created)?;
            report.created = true;
            if !dir.config_path().exists() {
                std::fs::write(dir.config_path(), config.to_toml_string()).map_err(|e| {
                    crate::datadir::io_err(format!("write {}", dir.config_path().display()), e)
                })?;
            }
            let cursor = JournalCursor {
                generation: 0,
                slot: 1,
                offset: 0,
                seq: 1,
                flags: ROOT_FLAG_OPEN,
            };
            (Core::new(Engine::new(), 1), cursor, Volumes::default())
        }
        Some(l) => {
            report.dirty = l.dirty;
            report.root_generation = l.cursor.generation;
            report.journal_records = l.journal_records;
            report.journal_stop = format!("{:?}", l.journal_stop);
            report.root_warning = l.root_warning.clone();
            if let Some(w) = &l.root_warning {
                tracing::warn!(subsystem = %config.id, "IPL: {w}");
            }
            report.journal_repaired = l.journal_repaired.clone();
            for w in &l.journal_repaired {
                tracing::warn!(subsystem = %config.id, "IPL: {w}");
            }
            let mut volumes = Volumes::default();
            for v in &l.payload.volumes {
                let model: DeviceModel = v
                    .model
                    .parse()
                    .map_err(|e| err(ErrorKind::Corrupt, format!("volume {}: {e}", v.name)))?;
                let geometry = Geometry::new(model)
                    .map_err(|e| err(ErrorKind::Corrupt, format!("volume {}: {e}", v.name)))?;
                let store = provider.open_volume(&v.name, geometry)?;
                volumes.insert(Arc::new(Volume::new(
                    &v.name,
                    VolumeId(v.id),
                    model,
                    geometry,
                    store,
                )));
            }
            if l.dirty {
                report.check_findings = crate::check::check_loaded(&l.core, &volumes, &*provider);
                for f in &report.check_findings {
                    tracing::warn!(subsystem = %config.id, finding = %f, "IPL check");
                }
            }
            (l.core, l.cursor, volumes)
        }
    };
    let names: Vec<String> = volumes.by_name.keys().cloned().collect();
    let tables = Tables::open(&dir, &config.id, &names, faults.clone())?;
    let inner = Arc::new(Inner {
        id: config.id.clone(),
        config: RwLock::new(config.clone()),
        dir: dir.clone(),
        lock: Mutex::new(lock),
        provider: provider.clone(),
        faults,
        meta,
        sync,
        topo: RwLock::new(()),
        core: Mutex::new(core),
        volumes: RwLock::new(volumes),
        journal: Mutex::new(cursor),
        grains: GrainLocks::new(),
        committer: Committer::new(),
        metrics: Metrics::default(),
        events: tokio::sync::broadcast::channel(EVENT_CAPACITY).0,
        tables: Mutex::new(Some(tables)),
        host_active: AtomicUsize::new(0),
        copy_stalls: Mutex::new(std::collections::HashMap::new()),
        closed: AtomicBool::new(false),
        fenced: Mutex::new(None),
        state_dirty: AtomicBool::new(false),
        ipl_report: Mutex::new(IplReport::default()),
        clean_totals: Mutex::new(Default::default()),
        freezes: Default::default(),
        options,
    });
    let sub = Subsystem { inner };
    // Config volumes missing from the directory are created; a model clash is an error.
    for vc in &config.volumes {
        match sub.inner.volume(&vc.id) {
            Ok(v) if v.model != vc.model => {
                return Err(err(
                    ErrorKind::InvalidRequest,
                    format!(
                        "volume {} is a {} in the data directory but the config says {}",
                        vc.id, v.model, vc.model
                    ),
                ))
            }
            Ok(_) => {}
            Err(_) => {
                sub.create_volume_unchecked(&vc.id, vc.model)?;
                report.volumes_created.push(vc.id.clone());
            }
        }
    }
    {
        let core = sub.inner.core.lock();
        // Volumes start as mapped (slow path); unmapped ones go plain from here.
        sub.inner.publish_mapped(&core);
        report.suspended_maps = core
            .engine
            .maps()
            .iter()
            .filter(|m| m.state == timezero::MapState::Suspended)
            .map(|m| m.id.0)
            .collect();
        report.sessions = core.sessions.keys().copied().collect();
    }
    let (reports, notes) = sub
        .inner
        .with_tables(|t| Ok((t.reports.clone(), t.notes.clone())))?;
    report.table_notes.extend(notes);
    for (name, r) in &reports {
        if let Some(t) = &r.torn_tail {
            report.table_notes.push(format!(
                "table {name}: torn tail of {} bytes truncated",
                t.len
            ));
        }
        for p in &r.removed_temp_files {
            report
                .table_notes
                .push(format!("table {name}: removed {}", p.display()));
        }
    }
    {
        let mut cur = sub.inner.journal.lock();
        cur.flags = ROOT_FLAG_OPEN;
        sub.inner.checkpoint(&mut cur)?;
    }
    let maps = sub.inner.core.lock().engine.maps().len();
    report.log(&config.id.to_string(), maps, None);
    *sub.inner.ipl_report.lock() = report;
    Ok(sub)
}

impl Subsystem {
    /// Creates a volume inside `open` (before the first checkpoint; no lock needed).
    fn create_volume_unchecked(&self, name: &str, model: DeviceModel) -> Result<()> {
        let geometry =
            Geometry::new(model).map_err(|e| err(ErrorKind::InvalidRequest, format!("{e}")))?;
        let mut core = self.inner.core.lock();
        self.inner.add_new_volume(&mut core, name, model, geometry)
    }

    /// Controller warmstart: volatile state is rebuilt from durable metadata.
    /// With `lose_volatile`, what was not hardened is lost (sessions
    /// established since the last checkpoint; docs/DURABILITY.md); without it,
    /// everything is hardened first and nothing is lost. Host I/O is drained
    /// meanwhile. Every surviving session is quiesced afterwards.
    pub fn reset(&self, lose_volatile: bool) -> Result<IplReport> {
        self.check_open()?;
        let inner = &*self.inner;
        let _topo = inner.topo.write();
        if inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(err(
                ErrorKind::Offline,
                format!("subsystem {} is shut down", inner.id),
            ));
        }
        // A fenced subsystem's memory is not trusted: reopen the metadata
        // store and rebuild from what is durable (nothing can be hardened).
        let fenced = inner.fenced.lock().is_some();
        let mut cur = inner.journal.lock();
        if fenced {
            inner.meta.reopen()?;
        } else if !lose_volatile {
            inner.checkpoint(&mut cur)?;
        }
        let before: Vec<u8> = inner.core.lock().sessions.keys().copied().collect();
        let l = load_durable(&inner.meta, &inner.id)?
            .ok_or_else(|| err(ErrorKind::Corrupt, "reset: the metadata store has no root"))?;
        let mut report = IplReport {
            root_generation: l.cursor.generation,
            journal_records: l.journal_records,
            journal_stop: format!("{:?}", l.journal_stop),
            root_warning: l.root_warning.clone(),
            journal_repaired: l.journal_repaired.clone(),
            ..IplReport::default()
        };
        {
            let mut core = inner.core.lock();
            // Ids handed to sessions lost with volatile state stay used.
            core.replace_keeping_ids(l.core);
            // The durable maps may differ from the lost ones: republish.
            inner.publish_mapped(&core);
            for s in core.sessions.values_mut() {
                s.quiesced = true;
            }
            report.sessions = core.sessions.keys().copied().collect();
            report.sessions_lost = before
                .iter()
                .copied()
                .filter(|p| !core.sessions.contains_key(p))
                .collect();
            report.suspended_maps = core
                .engine
                .maps()
                .iter()
                .filter(|m| m.state == timezero::MapState::Suspended)
                .map(|m| m.id.0)
                .collect();
        }
        // Volumes are created and deleted with a checkpoint, so the set is unchanged.
        cur.generation = l.cursor.generation;
        cur.slot = l.cursor.slot;
        cur.offset = l.cursor.offset;
        cur.seq = l.cursor.seq;
        inner.checkpoint(&mut cur)?;
        if inner.fenced.lock().take().is_some() {
            tracing::warn!(subsystem = %inner.id, "fence lifted: state rebuilt from durable metadata");
        }
        let maps = inner.core.lock().engine.maps().len();
        report.log(&inner.id.to_string(), maps, Some(lose_volatile));
        *inner.ipl_report.lock() = report.clone();
        Ok(report)
    }

    /// IPL: a shutdown (clean if the stores allow it) followed by a fresh
    /// open of the same data directory with the same stores: volatile state is
    /// rebuilt, poisoned stores are reopened. The old handle and its clones
    /// refuse work afterwards.
    pub fn ipl(&self) -> Result<Subsystem> {
        if let Err(e) = self.close() {
            tracing::warn!(subsystem = %self.inner.id, error = %e.full_message(), "IPL: shutdown not clean; the open runs the checker");
        }
        open(
            self.inner.dir.root(),
            self.config(),
            self.inner.options.clone(),
        )
    }
}
