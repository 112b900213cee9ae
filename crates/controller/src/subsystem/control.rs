//! Control requests: volumes, maps, consistency groups, listings.
//!
//! Every topology change takes the exclusive `topo` lock, which waits for
//! in-flight host I/O and holds new I/O back (the consistency-group pause of
//! docs/SEMANTICS.md, "Concurrency"), applies the change to the engine, and writes a checkpoint
//! before returning: a control request that returned `Ok` survives a crash.

use std::sync::Arc;
use std::time::{Duration, Instant};

use geometry::{DeviceModel, ExtentSet, Geometry};
use serde::Serialize;
use timezero::{CopyType, MapId, MapSpec, MapState, StartOptions, VolumeId};

use super::{Core, Subsystem, Volume};
use crate::config::check_id;
use crate::error::{err, ErrorKind, Result};

/// A new mapping, by volume names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapCreate {
    /// Source volume.
    pub source: String,
    /// Target volume.
    pub target: String,
    /// `full` (clone) or `nocopy` (snapshot).
    pub copy_type: CopyType,
    /// Keep a difference bitmap (full maps only).
    pub incremental: bool,
    /// Tracks covered; `None` = the whole volume.
    pub extents: Option<ExtentSet>,
    /// Background copy rate 0..=150 (default 50; nocopy maps copy nothing regardless).
    pub copy_rate: Option<u8>,
    /// Cleaning rate 0..=150 (default 50).
    pub clean_rate: Option<u8>,
    /// Delete the map when its copy completes.
    pub autodelete: bool,
}

impl MapCreate {
    /// A whole-volume map with default rates.
    pub fn new(source: &str, target: &str, copy_type: CopyType) -> MapCreate {
        MapCreate {
            source: source.into(),
            target: target.into(),
            copy_type,
            incremental: false,
            extents: None,
            copy_rate: None,
            clean_rate: None,
            autodelete: false,
        }
    }
}

/// A volume as listed by the control API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VolumeView {
    /// Volume id (export name).
    pub id: String,
    /// Device model.
    pub model: String,
    /// Export size in bytes.
    pub size_bytes: u64,
    /// Tracks (grains).
    pub tracks: u64,
    /// Bytes per track.
    pub track_size_bytes: u64,
    /// Maps with this volume as source.
    pub source_of: Vec<u32>,
    /// Map with this volume as target.
    pub target_of: Option<u32>,
    /// Physical sessions protecting extents of this volume.
    pub sessions: Vec<u8>,
    /// Hosts may read and write it now (NBD I/O gets EIO while it is not).
    pub online: bool,
    /// Why it is offline, naming the map and what ends it.
    pub offline_reason: Option<String>,
    /// Tracks its own store holds data for (the rest are holes: thin
    /// provisioning; from the store's in-memory allocation map).
    pub allocated_tracks: u64,
}

/// A map as listed by the control API (`map show --json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapView {
    /// Map id.
    pub id: u32,
    /// Source volume.
    pub source: String,
    /// Target volume.
    pub target: String,
    /// `full` or `nocopy`.
    #[serde(rename = "type")]
    pub copy_type: CopyType,
    /// Incremental.
    pub incremental: bool,
    /// FlashCopy state name.
    pub state: MapState,
    /// Split grains / covered grains, percent.
    pub progress_percent: u8,
    /// While stopping: grains cleaned / grains to clean at the stop, percent
    /// (`None` in other states; after an IPL it counts from the IPL).
    pub cleaning_percent: Option<u8>,
    /// Copy rate 0..=150.
    pub copy_rate: u8,
    /// Clean rate 0..=150.
    pub clean_rate: u8,
    /// Cascade the target is a member of.
    pub cascade: Option<u32>,
    /// Consistency group.
    pub group: Option<u32>,
    /// Started with restore and still active.
    pub restoring: bool,
    /// Covered extents (geometry text form); `None` = whole volume.
    pub extents: Option<String>,
    /// Autodelete on completion.
    pub autodelete: bool,
    /// Its backup session ended while an older session's target still read
    /// through its target: it cleans, then deletes itself.
    pub withdrawn: bool,
    /// The background copy's (or cleaning's) last attempt failed with this
    /// error, and none has moved data since: the copy is stalled (a full
    /// disk, a failing target); it retries every tick.
    pub copy_stalled: Option<String>,
}

/// A cascade as listed by the control API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CascadeView {
    /// Cascade id.
    pub id: u32,
    /// `full` or `nocopy`.
    #[serde(rename = "type")]
    pub copy_type: CopyType,
    /// Head (source) volume.
    pub head: String,
    /// The head stands for its physical data (restore).
    pub head_frozen: bool,
    /// Targets, upstream to downstream.
    pub members: Vec<String>,
}

/// A consistency group as listed by the control API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupView {
    /// Group id.
    pub id: u32,
    /// Deleted when its last map leaves.
    pub autodelete: bool,
    /// Member maps.
    pub members: Vec<u32>,
    /// The group's state, from its members' (SVC's consistency-group
    /// states): `empty`; the members' common state; else the most active of
    /// them (suspended, preparing, prepared, copying, stopping), then
    /// `stopped`, then `idle_or_copied`.
    pub state: String,
}

/// A group's state from its members' states (see [`GroupView::state`]).
pub(crate) fn group_state(states: &[MapState]) -> String {
    const ORDER: [MapState; 7] = [
        MapState::Suspended,
        MapState::Preparing,
        MapState::Prepared,
        MapState::Copying,
        MapState::Stopping,
        MapState::Stopped,
        MapState::IdleOrCopied,
    ];
    if states.is_empty() {
        return "empty".into();
    }
    ORDER
        .iter()
        .find(|s| states.contains(s))
        .map_or_else(|| "empty".into(), |s| s.to_string())
}

/// Tracks of `v`'s own store that hold data (0 when the store cannot say).
fn allocated_tracks(v: &super::Volume) -> u64 {
    let tracks = v.geometry.tracks();
    if tracks == 0 {
        return 0;
    }
    v.store
        .allocated(geometry::Extent {
            first: 0,
            last: tracks - 1,
        })
        .map_or(0, |a| a.track_count())
}

impl Subsystem {
    /// Runs a topology change under the exclusive lock and checkpoints it.
    pub(crate) fn control<T>(&self, f: impl FnOnce(&Self, &mut Core) -> Result<T>) -> Result<T> {
        self.check_open()?;
        let inner = &*self.inner;
        let _topo = self.control_lock()?;
        let mut cur = inner.journal.lock();
        let before = inner.snapshot();
        let r = {
            let mut core = inner.core.lock();
            let r = f(self, &mut core);
            inner.after_engine_change(&mut core);
            inner.refresh_maps(&mut core);
            r
        };
        // A refused request (the engine said no) is undone as well, in case
        // it changed something before refusing; only an accepted change that
        // could not be made durable is worth a warning.
        let refused = r.is_err();
        let r = r.and_then(|v| {
            inner.checkpoint(&mut cur).map(|()| v).map_err(|e| {
                if e.kind() == ErrorKind::Fenced {
                    e.context("the outcome of this change is unknown")
                } else {
                    e.context("change not made durable, so it was undone")
                }
            })
        });
        match &r {
            // Unknown outcome: memory is not trusted either way; the fence
            // refuses everything until an IPL or reset reloads the durable state.
            Err(e) if e.kind() == ErrorKind::Fenced => {}
            Err(e) => {
                inner.roll_back(before);
                if !refused {
                    tracing::warn!(subsystem = %inner.id, error = %e.full_message(),
                        "control request failed: its change was undone");
                }
            }
            Ok(_) => {}
        }
        r
    }

    pub(crate) fn name_of(&self, id: VolumeId) -> String {
        self.inner
            .volumes
            .read()
            .by_id
            .get(&id)
            .map_or_else(|| format!("vol{}", id.0), |v| v.name.clone())
    }

    // ---- volumes ---------------------------------------------------------

    /// Creates a volume (a new sparse track file) and its activity table.
    pub fn create_volume(&self, name: &str, model: DeviceModel) -> Result<VolumeView> {
        check_id("volume id", name).map_err(|m| err(ErrorKind::InvalidRequest, m))?;
        let geometry = Geometry::new(model)
            .map_err(|e| err(ErrorKind::InvalidRequest, format!("model {model}: {e}")))?;
        self.control(|s, core| {
            if s.inner.volumes.read().by_name.contains_key(name) {
                return Err(err(
                    ErrorKind::AlreadyExists,
                    format!("volume {name} already exists"),
                ));
            }
            s.inner.add_new_volume(core, name, model, geometry)
        })?;
        self.volume_view(name)
    }

    /// Deletes a volume; refused while it is in a map or a physical session.
    /// A volume already deleted whose name the config still lists (its
    /// update failed) is taken out of the config: the delete finishes.
    pub fn delete_volume(&self, name: &str) -> Result<()> {
        if self.finish_config_forget(name)? {
            return Ok(());
        }
        self.control(|s, core| {
            let v = s.inner.volume(name)?;
            if let Some(p) = core.sessions.values().find(|p| p.uses(name)) {
                return Err(err(
                    ErrorKind::Busy,
                    format!(
                        "volume {name} is in backup session {} (physical session {:02X}); \
                         `session complete {0}` or `session terminate {0}` frees it",
                        p.session, p.phys
                    ),
                ));
            }
            core.engine.remove_volume(v.id).map_err(|e| {
                s.inner
                    .engine_err(core, e)
                    .context(format!("delete volume {name}"))
            })?;
            s.inner.volumes.write().remove(name);
            s.inner.with_tables(|t| {
                t.close_volume(name);
                Ok(())
            })?;
            Ok(())
        })?;
        // The root without the volume is durable. Under the topology lock
        // (a create of the same name waits, and one that came first made
        // the file and table its own): the config forgets it, the file
        // goes, and its activity table is retired (a re-created volume
        // starts empty).
        let _topo = self.control_lock()?;
        if self.inner.volumes.read().by_name.contains_key(name) {
            return Ok(());
        }
        // The file goes before the config changes: on a full disk, the
        // space it frees is what lets the config be written.
        self.inner.provider.remove_volume(name)?;
        super::tables::retire_volume_table(&self.inner.dir, name)?;
        self.forget_config_volume(name)
            .map_err(|e| self.still_listed(name, e))
    }

    /// For [`Self::delete_volume`]: when `name` is no volume but the config
    /// still lists it (a delete whose config update failed), takes it out
    /// of the config now; `true` if that was the case.
    fn finish_config_forget(&self, name: &str) -> Result<bool> {
        let listed = || {
            self.inner
                .config
                .read()
                .volumes
                .iter()
                .any(|v| v.id == name)
        };
        if self.inner.volumes.read().by_name.contains_key(name) || !listed() {
            return Ok(false);
        }
        let _topo = self.control_lock()?;
        if self.inner.volumes.read().by_name.contains_key(name) || !listed() {
            return Ok(false);
        }
        self.forget_config_volume(name)
            .map_err(|e| self.still_listed(name, e))?;
        tracing::info!(subsystem = %self.inner.id, volume = name,
            "the config no longer lists deleted volume");
        Ok(true)
    }

    /// A deleted volume's config update failed: said with what it means and
    /// the way out, keeping the cause's kind (`no_space`, ...).
    fn still_listed(&self, name: &str, e: crate::ControllerError) -> crate::ControllerError {
        tracing::warn!(subsystem = %self.inner.id, volume = name, error = %e.full_message(),
            "volume deleted, but the config still lists it");
        e.context(format!(
            "volume {name} is deleted, but {} still lists it, so the next boot would create \
             it again, empty: fix the cause and run `volume delete {name}` again",
            self.inner.dir.config_path().display()
        ))
    }

    /// Takes `name` out of the config the subsystem runs with and out of
    /// `subsystem.toml`, durably, so neither an IPL nor the next boot creates
    /// it again as a config volume. Done once the root without the volume
    /// is durable: a crash in between leaves a config that lists a deleted
    /// volume, which the next boot creates again, empty. The other order
    /// could leave a volume that stays but that the config no longer lists,
    /// and so no longer marks `read_only`.
    fn forget_config_volume(&self, name: &str) -> Result<()> {
        let mut config = self.inner.config.write();
        if !config.volumes.iter().any(|v| v.id == name) {
            return Ok(());
        }
        let mut less = config.clone();
        less.volumes.retain(|v| v.id != name);
        self.inner
            .dir
            .store_config(&less)
            .map_err(|e| e.context(format!("delete volume {name}: update subsystem.toml")))?;
        *config = less;
        Ok(())
    }

    /// Every volume.
    pub fn volumes(&self) -> Vec<VolumeView> {
        let names: Vec<String> = self.inner.volumes.read().by_name.keys().cloned().collect();
        names
            .iter()
            .filter_map(|n| self.volume_view(n).ok())
            .collect()
    }

    /// Names of the volumes whose store a failed flush poisoned (writes fail
    /// until an IPL reopens them), in volume order.
    pub fn poisoned_volumes(&self) -> Vec<String> {
        self.inner
            .volumes
            .read()
            .by_name
            .values()
            .filter(|v| v.store.poisoned())
            .map(|v| v.name.clone())
            .collect()
    }

    /// One volume.
    pub fn volume_view(&self, name: &str) -> Result<VolumeView> {
        let fenced = self.fenced();
        let v = self.inner.volume(name)?;
        let core = self.inner.core.lock();
        let maps = core.engine.maps();
        Ok(VolumeView {
            id: v.name.clone(),
            model: v.model.to_string(),
            size_bytes: v.geometry.size_bytes(),
            tracks: v.geometry.tracks(),
            track_size_bytes: v.geometry.track_size_bytes(),
            source_of: maps
                .iter()
                .filter(|m| m.spec.source == v.id)
                .map(|m| m.id.0)
                .collect(),
            target_of: maps.iter().find(|m| m.spec.target == v.id).map(|m| m.id.0),
            sessions: core
                .sessions
                .values()
                .filter(|p| p.uses(name))
                .map(|p| p.phys)
                .collect(),
            online: fenced.is_none() && core.engine.access(v.id).is_ok() && !v.store.poisoned(),
            // A fenced subsystem serves no volume: say why first.
            offline_reason: fenced
                .clone()
                .or_else(|| core.engine.access(v.id).err().map(|e| offline_reason(&e)))
                .or_else(|| {
                    v.store.poisoned().then(|| {
                        "its store is poisoned by a failed flush (see the log): writes fail \
                         until an IPL (`event ipl`) reopens it"
                            .to_string()
                    })
                }),
            allocated_tracks: allocated_tracks(&v),
        })
    }

    /// Geometry of a volume.
    pub fn geometry(&self, name: &str) -> Result<Geometry> {
        Ok(self.inner.volume(name)?.geometry)
    }

    // ---- maps ------------------------------------------------------------

    /// Creates a map (idle_or_copied).
    pub fn create_map(&self, req: &MapCreate) -> Result<MapId> {
        let (s, t) = (
            self.inner.volume(&req.source)?,
            self.inner.volume(&req.target)?,
        );
        let mut spec = MapSpec::new(s.id, t.id, req.copy_type);
        spec.incremental = req.incremental;
        spec.extents = req.extents.clone();
        spec.copy_rate = req
            .copy_rate
            .unwrap_or(if req.copy_type == CopyType::Nocopy {
                0
            } else {
                50
            });
        spec.clean_rate = req.clean_rate.unwrap_or(50);
        spec.autodelete = req.autodelete;
        self.control(|s, core| {
            core.engine
                .create_map(spec)
                .map_err(|e| s.inner.engine_err(core, e))
        })
    }

    /// prestartfcmap: the map goes through preparing (the source is flushed) to prepared.
    pub fn prepare_map(&self, map: MapId) -> Result<()> {
        self.control(|s, core| {
            Subsystem::not_session_owned(core, &[map], None, "prepare")?;
            s.not_on_session_target(core, &[map], "prepare")?;
            core.engine
                .prepare(map)
                .map_err(|e| s.inner.engine_err(core, e))?;
            s.finish_prepare(core, &[map])
        })
    }

    /// Refuses a point in time onto or from a volume whose store a failed
    /// flush poisoned (QA: a session started onto one, and every write to
    /// its source's protected tracks then failed with EIO while everything
    /// looked healthy). `names`: the volumes the start would use.
    pub(super) fn refuse_poisoned<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<()> {
        for name in names {
            let v = self.inner.volume(name)?;
            if v.store.poisoned() {
                return Err(err(
                    ErrorKind::State,
                    format!(
                        "the store of volume {name} is poisoned by a failed flush (see the \
                         log): its writes fail until an IPL (`event ipl`) reopens it"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// [`Self::refuse_poisoned`] for the sources and targets of `maps`.
    pub(super) fn refuse_poisoned_maps(&self, core: &Core, maps: &[MapId]) -> Result<()> {
        let names: Vec<String> = maps
            .iter()
            .filter_map(|m| core.engine.map_info(*m))
            .flat_map(|i| [self.name_of(i.spec.source), self.name_of(i.spec.target)])
            .collect();
        self.refuse_poisoned(names.iter().map(String::as_str))
    }

    /// Flushes the sources of preparing maps, then flush done (or failed -> stopped).
    pub(super) fn finish_prepare(&self, core: &mut Core, maps: &[MapId]) -> Result<()> {
        for &m in maps {
            let Some(info) = core.engine.map_info(m) else {
                continue;
            };
            let src = self.inner.volume_by_id(info.spec.source)?;
            match self.inner.flush_store(&src.name, &src.store) {
                Ok(()) => core
                    .engine
                    .flush_done(m)
                    .map_err(|e| self.inner.engine_err(core, e))?,
                Err(e) => {
                    core.engine
                        .flush_failed(m)
                        .map_err(|e| self.inner.engine_err(core, e))?;
                    return Err(e.context(format!(
                        "prepare {m}: source flush failed (the request is undone)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// startfcmap: the point in time is now. An idle_or_copied or stopped map
    /// is prepared first (`-prep`). `restore` allows a target that is the
    /// source of active maps (reverse copy).
    pub fn start_map(&self, map: MapId, restore: bool) -> Result<()> {
        self.control(|s, core| {
            Subsystem::not_session_owned(core, &[map], None, "start")?;
            s.not_on_session_target(core, &[map], "start")?;
            s.refuse_poisoned_maps(core, &[map])?;
            if matches!(
                core.engine.map_state(map),
                Some(MapState::IdleOrCopied | MapState::Stopped)
            ) {
                // A start that would be refused must not leave the map
                // prepared (its target offline): ask before preparing.
                core.engine
                    .check_start(
                        map,
                        StartOptions {
                            restore,
                            prepare: true,
                        },
                    )
                    .map_err(|e| s.inner.engine_err(core, e))?;
                core.engine
                    .prepare_for_restore(map)
                    .map_err(|e| s.inner.engine_err(core, e))?;
                s.finish_prepare(core, &[map])?;
            }
            core.engine
                .start(
                    map,
                    StartOptions {
                        restore,
                        prepare: false,
                    },
                )
                .map_err(|e| s.inner.engine_err(core, e))
        })
    }

    /// stopfcmap [-force].
    pub fn stop_map(&self, map: MapId, force: bool) -> Result<()> {
        self.control(|s, core| {
            Subsystem::not_session_owned(core, &[map], None, "stop")?;
            core.engine
                .stop(map, force)
                .map_err(|e| s.inner.engine_err(core, e))?;
            s.note_clean_total(&core.engine, map);
            Ok(())
        })
    }

    /// rmfcmap [-force].
    pub fn delete_map(&self, map: MapId, force: bool) -> Result<()> {
        self.control(|s, core| {
            Subsystem::not_session_owned(core, &[map], None, "delete")?;
            core.engine
                .delete(map, force)
                .map_err(|e| s.inner.engine_err(core, e))
        })
    }

    /// Changes a map's copy and/or clean rate.
    pub fn set_map_rates(
        &self,
        map: MapId,
        copy_rate: Option<u8>,
        clean_rate: Option<u8>,
    ) -> Result<()> {
        self.control(|s, core| {
            if let Some(r) = copy_rate {
                core.engine
                    .set_copy_rate(map, r)
                    .map_err(|e| s.inner.engine_err(core, e))?;
            }
            if let Some(r) = clean_rate {
                core.engine
                    .set_clean_rate(map, r)
                    .map_err(|e| s.inner.engine_err(core, e))?;
            }
            Ok(())
        })
    }

    /// Copies map `map`'s target back onto its source: creates (or reuses) the
    /// reverse map target -> source and starts it with restore. Returns the reverse map.
    pub fn restore_map(&self, map: MapId) -> Result<MapId> {
        // A session's target copied back onto its source mid-backup would
        // change the source under the session.
        Subsystem::not_session_owned(&self.inner.core.lock(), &[map], None, "restore")?;
        let info = self
            .inner
            .core
            .lock()
            .engine
            .map_info(map)
            .ok_or_else(|| err(ErrorKind::NotFound, format!("unknown map {}", map.0)))?;
        let existing = self
            .inner
            .core
            .lock()
            .engine
            .maps()
            .into_iter()
            .find(|m| m.spec.source == info.spec.target && m.spec.target == info.spec.source)
            .map(|m| m.id);
        let reverse = match existing {
            Some(r) => r,
            None => {
                let mut req = MapCreate::new(
                    &self.name_of(info.spec.target),
                    &self.name_of(info.spec.source),
                    CopyType::Full,
                );
                req.extents = info.spec.extents.clone();
                req.copy_rate = Some(info.spec.copy_rate.max(1));
                req.clean_rate = Some(info.spec.clean_rate);
                self.create_map(&req)?
            }
        };
        self.start_map(reverse, true)?;
        Ok(reverse)
    }

    /// One map.
    pub fn map(&self, map: MapId) -> Result<MapView> {
        let core = self.inner.core.lock();
        let info = core
            .engine
            .map_info(map)
            .ok_or_else(|| err(ErrorKind::NotFound, format!("unknown map {}", map.0)))?;
        let cleaning = self.cleaning_percent(&core.engine, map);
        Ok(self.map_view(&info, cleaning, core.engine.is_withdrawn(map)))
    }

    /// The split bitmap of `map` (grains its target holds itself), for
    /// checkers that compare where data is with where it should be (the
    /// simulator's COW-1). `None` for an unknown map or one without a bitmap.
    pub fn split_bitmap(&self, map: MapId) -> Option<timezero::Bitmap> {
        self.inner.core.lock().engine.split_bitmap(map).cloned()
    }

    /// The id the next map created gets (ids only go up and are never
    /// reused), without creating one.
    pub fn next_map_id(&self) -> u32 {
        self.inner.core.lock().engine.id_counters().0
    }

    /// The id the next group created gets, without creating one.
    pub fn next_group_id(&self) -> u32 {
        self.inner.core.lock().engine.id_counters().1
    }

    /// Every map, ascending by id.
    pub fn maps(&self) -> Vec<MapView> {
        let infos: Vec<_> = {
            let core = self.inner.core.lock();
            core.engine
                .maps()
                .into_iter()
                .map(|i| {
                    let c = self.cleaning_percent(&core.engine, i.id);
                    let w = core.engine.is_withdrawn(i.id);
                    (i, c, w)
                })
                .collect()
        };
        infos
            .iter()
            .map(|(i, c, w)| self.map_view(i, *c, *w))
            .collect()
    }

    fn map_view(
        &self,
        i: &timezero::MapInfo,
        cleaning_percent: Option<u8>,
        withdrawn: bool,
    ) -> MapView {
        let source = self.name_of(i.spec.source);
        let extents = i.spec.extents.as_ref().map(|e| {
            self.inner
                .volume(&source)
                .map_or_else(|_| format!("{e:?}"), |v| v.geometry.format_extent_set(e))
        });
        MapView {
            id: i.id.0,
            source,
            target: self.name_of(i.spec.target),
            copy_type: i.spec.copy_type,
            incremental: i.spec.incremental,
            state: i.state,
            progress_percent: i.progress_percent,
            cleaning_percent,
            copy_rate: i.spec.copy_rate,
            clean_rate: i.spec.clean_rate,
            cascade: i.cascade.map(|c| c.0),
            group: i.group.map(|g| g.0),
            restoring: i.restoring,
            extents,
            autodelete: i.spec.autodelete,
            withdrawn,
            copy_stalled: self.inner.copy_stalls.lock().get(&i.id).cloned(),
        }
    }

    /// Every cascade with its order.
    pub fn cascades(&self) -> Vec<CascadeView> {
        let cs = self.inner.core.lock().engine.cascades();
        cs.into_iter()
            .map(|c| CascadeView {
                id: c.id.0,
                copy_type: c.copy_type,
                head: self.name_of(c.head),
                head_frozen: c.head_frozen,
                members: c.members.iter().map(|m| self.name_of(*m)).collect(),
            })
            .collect()
    }

    /// Waits until `map` is neither copying nor stopping (or `timeout` passes);
    /// `progress` is called with each new percentage (the cleaning percent
    /// while stopping, 100 once that cleaning is done). Returns the final view.
    pub fn wait_map(
        &self,
        map: MapId,
        timeout: Duration,
        mut progress: impl FnMut(u8),
    ) -> Result<MapView> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        let mut cleaning = false;
        loop {
            let v = self.map(map)?;
            let shown = match v.cleaning_percent {
                Some(c) => {
                    cleaning = true;
                    c
                }
                None if cleaning => 100,
                None => v.progress_percent,
            };
            if last != Some(shown) {
                progress(shown);
                last = Some(shown);
            }
            let busy = matches!(
                v.state,
                MapState::Copying | MapState::Stopping | MapState::Preparing
            ) && !(v.state == MapState::Copying
                && v.progress_percent == 100
                && v.cascade.is_none());
            if !busy {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                return Err(err(
                    ErrorKind::State,
                    format!(
                        "{map} still {} at {}% after {timeout:?}",
                        v.state, v.progress_percent
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Why a volume is offline, in the words `volume list` prints.
pub(crate) fn offline_reason(e: &timezero::AccessError) -> String {
    use timezero::AccessError as A;
    match e {
        A::TargetOffline { map, state, .. } => {
            let next = match state {
                MapState::Preparing | MapState::Prepared => format!("`map start {}`", map.0),
                MapState::Stopped => format!("`map delete {} --force` or a new start", map.0),
                _ => "the end of cleaning".to_string(),
            };
            format!(
                "target of map {} ({state}); online again after {next}",
                map.0
            )
        }
        A::Suspended { map, .. } => format!(
            "map {} is suspended (its bitmap is offline after a failed flush): once an IPL \
             (`event ipl`) has reopened the stores, `map resume {0}` brings it back (a `map \
             stop {0}` given before then takes effect at the resume; `map stop {0} --force` \
             drops the target's image at once)",
            map.0
        ),
        other => other.to_string(),
    }
}

impl super::Inner {
    /// Makes volume `name`: its store, its engine volume, its activity
    /// table. A failure before any root names it (QA: out of descriptors
    /// at the table's open) removes the new file too, not only the
    /// in-memory state (which the caller's rollback restores), so `check`
    /// finds no orphan.
    pub(super) fn add_new_volume(
        &self,
        core: &mut Core,
        name: &str,
        model: DeviceModel,
        geometry: Geometry,
    ) -> Result<()> {
        let id = VolumeId(core.next_volume_id);
        let store = self.provider.create_volume(name, geometry)?;
        let rest = || {
            core.engine
                .add_volume(id, geometry.tracks())
                .map_err(|e| self.engine_err(core, e))?;
            core.next_volume_id += 1;
            self.volumes
                .write()
                .insert(Arc::new(Volume::new(name, id, model, geometry, store)));
            self.with_tables(|t| t.open_new_volume(&self.dir, &self.id, name))
        };
        rest().inspect_err(|_| {
            let _ = self.provider.remove_volume(name);
        })
    }
}
