//! Physical sessions (patent A): the subsystem side of a backup copy session.
//!
//! A physical session protects extent sets of source volumes with full,
//! extent-level maps to target volumes, all started at one instant as one
//! consistency group. Its id is 1..=255, unique in the subsystem.
//!
//! Invariants:
//! - at most [`MAX_SESSIONS_PER_SUBSYSTEM`] sessions, and at most
//!   [`MAX_SESSIONS_PER_VOLUME`] sessions naming any one volume (as source or target);
//! - a session is *hardened* once a durable root lists it; establishing one
//!   does not write a root, but the group commit writes one before the first
//!   grain of any of its maps is committed (docs/DURABILITY.md, "Hardening"),
//!   so losing an unhardened session never loses data another map needs;
//! - after a reset every surviving session is `quiesced` (protection goes on,
//!   background copy waits) until the resource manager resumes or withdraws it.

use std::collections::BTreeMap;

use geometry::ExtentSet;
use serde::Serialize;
use timezero::{CopyType, GroupId, MapId, MapSpec, MapState, StartOptions};

use super::persist::{SessionMemberRecord, SessionRecord};
use super::{Core, Subsystem};
use crate::config::check_id;
use crate::error::{err, ErrorKind, Result};

/// Sessions per volume (as source or target).
pub const MAX_SESSIONS_PER_VOLUME: usize = 16;
/// Sessions per subsystem.
pub const MAX_SESSIONS_PER_SUBSYSTEM: usize = 64;
/// Copy rate of session maps (64 MiB/s; docs/ENGINE.md, "Copy and clean rates").
const SESSION_COPY_RATE: u8 = 100;

/// One protected source extent set and the volume receiving its image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionPair {
    /// Source volume.
    pub source: String,
    /// Tracks of the source protected by the session.
    pub extents: ExtentSet,
    /// Target volume (same geometry as the source).
    pub target: String,
    /// Background copy rate of the pair's map, SVC 0-150 (`None`: 100, 64 MiB/s).
    pub copy_rate: Option<u8>,
}

/// State of a physical session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhysSessionState {
    /// Protecting its domain and copying.
    Active,
    /// After a reset: still protecting, background copy held until resumed.
    Quiesced,
    /// A map of the session was stopped or suspended: its image is not whole.
    Failed,
}

/// A physical session as reported to the resource manager.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PhysSessionInfo {
    /// Physical session id, 1..=255.
    pub phys: u8,
    /// The logical (host) session it serves.
    pub session: String,
    /// The host that established it (`None`: established before hosts were recorded).
    pub host: Option<String>,
    /// State.
    pub state: PhysSessionState,
    /// Listed in a durable root.
    pub hardened: bool,
    /// Active track extents per source volume (maps that hold a valid image).
    pub domain: BTreeMap<String, ExtentSet>,
    /// Tracks of the domain already on the targets.
    pub copied_tracks: u64,
    /// Tracks in the domain.
    pub total_tracks: u64,
    /// The session's maps.
    pub maps: Vec<u32>,
}

/// A physical session in memory.
#[derive(Clone, Debug)]
pub(crate) struct PhysSession {
    pub(crate) phys: u8,
    pub(crate) session: String,
    pub(crate) host: Option<String>,
    pub(crate) group: GroupId,
    pub(crate) members: Vec<(SessionPair, MapId)>,
    pub(crate) hardened: bool,
    pub(crate) quiesced: bool,
}

impl PhysSession {
    pub(crate) fn uses(&self, volume: &str) -> bool {
        self.members
            .iter()
            .any(|(p, _)| p.source == volume || p.target == volume)
    }

    pub(crate) fn maps(&self) -> Vec<MapId> {
        self.members.iter().map(|(_, m)| *m).collect()
    }

    pub(crate) fn record(&self) -> SessionRecord {
        SessionRecord {
            phys: self.phys,
            session: self.session.clone(),
            host: self.host.clone(),
            group: self.group.0,
            members: self
                .members
                .iter()
                .map(|(p, m)| SessionMemberRecord {
                    source: p.source.clone(),
                    extents: p
                        .extents
                        .extents()
                        .iter()
                        .map(|e| (e.first, e.last))
                        .collect(),
                    target: p.target.clone(),
                    map: m.0,
                })
                .collect(),
        }
    }

    pub(crate) fn from_record(r: &SessionRecord) -> PhysSession {
        PhysSession {
            phys: r.phys,
            session: r.session.clone(),
            host: r.host.clone(),
            group: GroupId(r.group),
            members: r
                .members
                .iter()
                .map(|m| {
                    let extents: ExtentSet = m
                        .extents
                        .iter()
                        .filter_map(|&(a, b)| geometry::Extent::new(a, b))
                        .collect();
                    (
                        SessionPair {
                            source: m.source.clone(),
                            extents,
                            target: m.target.clone(),
                            // The map keeps its own rate; the pair is a record.
                            copy_rate: None,
                        },
                        MapId(m.map),
                    )
                })
                .collect(),
            hardened: true,
            quiesced: false,
        }
    }
}

/// Ones of `bm` inside `first..=last`.
fn count_ones_in(bm: &timezero::Bitmap, first: u64, last: u64) -> u64 {
    let last = last.min(bm.len().saturating_sub(1));
    if first > last {
        return 0;
    }
    let w = bm.as_words();
    let (fw, lw) = ((first / 64) as usize, (last / 64) as usize);
    let mut n = 0u64;
    for (i, &word) in w.iter().enumerate().take(lw + 1).skip(fw) {
        let mut x = word;
        if i == fw {
            x &= u64::MAX << (first % 64);
        }
        if i == lw && last % 64 != 63 {
            x &= (1u64 << (last % 64 + 1)) - 1;
        }
        n += u64::from(x.count_ones());
    }
    n
}

fn info_of(core: &Core, s: &PhysSession) -> PhysSessionInfo {
    let mut domain: BTreeMap<String, ExtentSet> = BTreeMap::new();
    let (mut copied, mut total) = (0u64, 0u64);
    let mut failed = false;
    for (p, m) in &s.members {
        let state = core.engine.map_state(*m);
        let valid = matches!(state, Some(MapState::Copying | MapState::IdleOrCopied));
        failed |= !valid;
        total += p.extents.track_count();
        if valid {
            let d = domain.entry(p.source.clone()).or_default();
            *d = d.union(&p.extents);
            if let Some(bm) = core.engine.split_bitmap(*m) {
                copied += p
                    .extents
                    .extents()
                    .iter()
                    .map(|e| count_ones_in(bm, e.first, e.last))
                    .sum::<u64>();
            }
        }
    }
    let state = if failed {
        PhysSessionState::Failed
    } else if s.quiesced {
        PhysSessionState::Quiesced
    } else {
        PhysSessionState::Active
    };
    PhysSessionInfo {
        phys: s.phys,
        session: s.session.clone(),
        host: s.host.clone(),
        state,
        hardened: s.hardened,
        domain,
        copied_tracks: copied,
        total_tracks: total,
        maps: s.members.iter().map(|(_, m)| m.0).collect(),
    }
}

impl Subsystem {
    /// Establishes a physical session for logical session `session`, owned by
    /// `host` (the host that started it; the resource managers of other hosts
    /// leave it alone): one full extent-level map per pair, started at one
    /// instant as a consistency group. Returns its id (the lowest free in
    /// 1..=255). Not hardened on return (see the module doc);
    /// [`Subsystem::harden`] hardens at once.
    pub fn establish_session(
        &self,
        session: &str,
        host: Option<&str>,
        pairs: &[SessionPair],
    ) -> Result<u8> {
        check_id("session id", session).map_err(|m| err(ErrorKind::InvalidRequest, m))?;
        if let Some(h) = host {
            check_id("host id", h).map_err(|m| err(ErrorKind::InvalidRequest, m))?;
        }
        if pairs.is_empty() {
            return Err(err(
                ErrorKind::InvalidRequest,
                "a physical session needs at least one extent pair",
            ));
        }
        let mut resolved = Vec::with_capacity(pairs.len());
        for p in pairs {
            let (s, t) = (self.inner.volume(&p.source)?, self.inner.volume(&p.target)?);
            if p.extents.is_empty() {
                return Err(err(
                    ErrorKind::InvalidRequest,
                    format!("empty extent set on volume {}", p.source),
                ));
            }
            if p.extents
                .extents()
                .last()
                .is_some_and(|e| e.last >= s.geometry.tracks())
            {
                return Err(err(
                    ErrorKind::OutOfRange,
                    format!(
                        "extents {} reach beyond volume {} ({} tracks)",
                        s.geometry.format_extent_set(&p.extents),
                        p.source,
                        s.geometry.tracks()
                    ),
                ));
            }
            resolved.push((s.id, t.id));
        }
        self.check_open()?;
        self.refuse_poisoned(
            pairs
                .iter()
                .flat_map(|p| [p.source.as_str(), p.target.as_str()]),
        )?;
        let inner = &*self.inner;
        let _topo = self.control_lock()?;
        let _cur = inner.journal.lock();
        let mut core = inner.core.lock();
        if core.sessions.len() >= MAX_SESSIONS_PER_SUBSYSTEM {
            return Err(err(
                ErrorKind::Limit,
                format!(
                    "subsystem {} already has {MAX_SESSIONS_PER_SUBSYSTEM} physical sessions",
                    inner.id
                ),
            ));
        }
        for p in pairs {
            for vol in [&p.source, &p.target] {
                let n = core.sessions.values().filter(|s| s.uses(vol)).count();
                if n >= MAX_SESSIONS_PER_VOLUME {
                    return Err(err(ErrorKind::Limit, format!("volume {vol} is already in {MAX_SESSIONS_PER_VOLUME} physical sessions")));
                }
            }
        }
        let phys = (1..=255u8)
            .find(|p| !core.sessions.contains_key(p))
            .ok_or_else(|| err(ErrorKind::Limit, "all 255 physical session ids are in use"))?;
        // Create, group, prepare and start; undo everything on the first failure.
        let before = core.clone();
        let mut maps = Vec::new();
        let group = core.engine.create_group(false);
        let result = (|| -> Result<()> {
            for (p, (s, t)) in pairs.iter().zip(&resolved) {
                let mut spec = MapSpec::new(*s, *t, CopyType::Full);
                spec.extents = Some(p.extents.clone());
                spec.copy_rate = p.copy_rate.unwrap_or(SESSION_COPY_RATE);
                let m = core.engine.create_map(spec).map_err(|e| {
                    inner
                        .engine_err(&core, e)
                        .context(format!("session pair {} -> {}", p.source, p.target))
                })?;
                maps.push(m);
                core.engine
                    .add_to_group(m, group)
                    .map_err(|e| inner.engine_err(&core, e))?;
            }
            core.engine
                .prepare_group(group)
                .map_err(|e| inner.engine_err(&core, e))?;
            // Prepare: the sources' writes are made durable before the instant,
            // so the image a crash leaves is the one the host saw.
            let mut sources: Vec<&str> = pairs.iter().map(|p| p.source.as_str()).collect();
            sources.sort_unstable();
            sources.dedup();
            for name in sources {
                let v = inner.volume(name)?;
                inner.flush_store(&v.name, &v.store)?;
            }
            for m in &maps {
                core.engine
                    .flush_done(*m)
                    .map_err(|e| inner.engine_err(&core, e))?;
            }
            core.engine
                .start_group(group, StartOptions::default())
                .map_err(|e| inner.engine_err(&core, e))
        })();
        if let Err(e) = result {
            // All or nothing: the state from before (a map already prepared
            // cannot simply be deleted), but the ids it used stay used (QA:
            // the next map created got the undone map's id, which an error
            // may have named).
            core.replace_keeping_ids(before);
            let _ = core.engine.take_events();
            inner.refresh_maps(&mut core);
            return Err(e.context(format!("establish physical session for {session}")));
        }
        core.unhardened_maps.extend(maps.iter().copied());
        core.sessions.insert(
            phys,
            PhysSession {
                phys,
                session: session.to_string(),
                host: host.map(str::to_string),
                group,
                members: pairs.iter().cloned().zip(maps.iter().copied()).collect(),
                hardened: false,
                quiesced: false,
            },
        );
        inner.after_engine_change(&mut core);
        inner.refresh_maps(&mut core);
        tracing::info!(subsystem = %inner.id, session, phys, maps = ?maps, "physical session established");
        Ok(phys)
    }

    /// Writes a checkpoint now: every established session becomes hardened.
    pub fn harden(&self) -> Result<()> {
        self.check_open()?;
        let _topo = self.io_lock()?;
        let mut cur = self.inner.journal.lock();
        self.inner.checkpoint(&mut cur)
    }

    /// Withdraws physical session `phys` (maps stopped and deleted, protection
    /// dropped). If `owner` is given and the session belongs to another logical
    /// session (ids are reused), nothing happens. Returns whether a session was withdrawn.
    pub fn withdraw_session(&self, phys: u8, owner: Option<&str>) -> Result<bool> {
        self.control(|_, core| {
            let Some(s) = core.sessions.get(&phys) else {
                return Ok(false);
            };
            if owner.is_some_and(|o| o != s.session) {
                return Ok(false);
            }
            let s = s.clone();
            // Each map ends with a stop with cleaning: an older session's
            // target in the same cascade may read through this one's (E6 in
            // timezero), and gets those grains before the map goes. A map
            // with nothing to hand down goes at once; one that cannot clean
            // (suspended) is force-stopped and deleted.
            let mut draining = Vec::new();
            for m in s.maps() {
                if core.engine.map_state(m).is_some() {
                    let gone = core.engine.withdraw(m).map_err(|e| {
                        self.inner
                            .engine_err(core, e)
                            .context(format!("withdraw session {phys}"))
                    })?;
                    if !gone {
                        draining.push(m);
                    }
                }
            }
            if core.engine.groups().iter().any(|g| g.id == s.group) {
                core.engine
                    .delete_group(s.group, true)
                    .map_err(|e| self.inner.engine_err(core, e))?;
            }
            if !draining.is_empty() {
                tracing::info!(session = %s.session, phys, maps = ?draining, "session maps hand their grains to older sessions before they go");
            }
            core.sessions.remove(&phys);
            core.unhardened_maps.retain(|m| !s.maps().contains(m));
            tracing::info!(session = %s.session, phys, "physical session withdrawn");
            Ok(true)
        })
    }

    /// Returns a quiesced session to active (background copy continues from
    /// the durable bitmaps). A failed session cannot resume.
    pub fn resume_session(&self, phys: u8) -> Result<()> {
        let mut core = self.inner.core.lock();
        let info = core.sessions.get(&phys).map(|s| info_of(&core, s));
        match info {
            None => Err(err(
                ErrorKind::NotFound,
                format!("no physical session {phys:02X}"),
            )),
            Some(i) if i.state == PhysSessionState::Failed => Err(err(
                ErrorKind::State,
                format!("physical session {phys:02X} failed (a map is stopped or suspended)"),
            )),
            Some(_) => {
                if let Some(s) = core.sessions.get_mut(&phys) {
                    s.quiesced = false;
                }
                Ok(())
            }
        }
    }

    /// The active track extents of `volume` under physical session `phys`
    /// (maps that still hold a valid image); `None` if the session does not
    /// exist or protects nothing on that volume.
    pub fn active_extents(&self, phys: u8, volume: &str) -> Option<ExtentSet> {
        self.session_info(phys)?.domain.remove(volume)
    }

    /// (tracks copied, tracks in the domain) of a session.
    pub fn session_progress(&self, phys: u8) -> Option<(u64, u64)> {
        self.session_info(phys)
            .map(|i| (i.copied_tracks, i.total_tracks))
    }

    /// One physical session.
    pub fn session_info(&self, phys: u8) -> Option<PhysSessionInfo> {
        let core = self.inner.core.lock();
        core.sessions.get(&phys).map(|s| info_of(&core, s))
    }

    /// Every physical session, ascending by id.
    pub fn physical_sessions(&self) -> Vec<PhysSessionInfo> {
        let core = self.inner.core.lock();
        core.sessions.values().map(|s| info_of(&core, s)).collect()
    }

    /// `Err` (busy, naming the session and the verbs that end it) if `map`
    /// belongs to a backup session: for callers that must ask before they
    /// change anything (a restore creates its reverse map first).
    pub fn ensure_not_session_map(&self, map: MapId, verb: &str) -> Result<()> {
        Subsystem::not_session_owned(&self.inner.core.lock(), &[map], None, verb)
    }

    /// Refuses a request on a session's map or group from outside the
    /// resource manager: only it may start, stop or delete them, or the
    /// session's time-zero image could change behind its back (a new point in
    /// time from a group start, a stopped map under an active session). The
    /// message names the session and the verbs that end it.
    pub(crate) fn not_session_owned(
        core: &Core,
        maps: &[MapId],
        group: Option<GroupId>,
        verb: &str,
    ) -> Result<()> {
        let owner = core
            .sessions
            .values()
            .find(|p| group == Some(p.group) || p.members.iter().any(|(_, m)| maps.contains(m)));
        match owner {
            None => Ok(()),
            Some(p) => {
                let what = match group {
                    Some(g) if g == p.group => format!("group {}", g.0),
                    _ => {
                        let m = p.maps().into_iter().find(|m| maps.contains(m));
                        format!("map {}", m.map_or(0, |m| m.0))
                    }
                };
                Err(err(
                    ErrorKind::Busy,
                    format!(
                        "{what} belongs to session {} (physical session {:02X}): only the session \
                         may {verb} it; end the session with `session complete {}` or \
                         `session terminate {}`",
                        p.session, p.phys, p.session, p.session
                    ),
                ))
            }
        }
    }

    /// A session's target holds the session's time-zero image until the
    /// session ends, so no other map may be prepared or started from or onto
    /// it. The resource manager must always be able to withdraw a session;
    /// a user map reading from its target (a restore from an unfinished
    /// backup) could make that withdraw close a loop of restores, which the
    /// engine refuses, and leave a terminated session holding its physical
    /// session (seed 420052397).
    pub(crate) fn not_on_session_target(
        &self,
        core: &Core,
        maps: &[MapId],
        verb: &str,
    ) -> Result<()> {
        for &m in maps {
            let Some(info) = core.engine.map_info(m) else {
                continue;
            };
            for vid in [info.spec.source, info.spec.target] {
                let Ok(v) = self.inner.volume_by_id(vid) else {
                    continue;
                };
                let owner = core.sessions.values().find(|p| {
                    !p.maps().contains(&m)
                        && p.members.iter().any(|(pair, _)| pair.target == v.name)
                });
                if let Some(p) = owner {
                    return Err(err(
                        ErrorKind::Busy,
                        format!(
                            "map {} cannot {verb}: volume {} is the target of session {} (physical \
                             session {:02X}) and holds its time-zero image until the session ends; \
                             `session complete {}` or `session terminate {}` first",
                            m.0, v.name, p.session, p.phys, p.session, p.session
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether background copy of `map` is held (its session is quiesced).
    pub(crate) fn map_held(core: &Core, map: MapId) -> bool {
        core.sessions
            .values()
            .any(|s| s.quiesced && s.members.iter().any(|(_, m)| *m == map))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn count_ones_in_respects_bounds() {
        let mut bm = timezero::Bitmap::new(200);
        bm.set_range(10, 150);
        assert_eq!(super::count_ones_in(&bm, 0, 199), 140);
        assert_eq!(super::count_ones_in(&bm, 63, 64), 2);
        assert_eq!(super::count_ones_in(&bm, 149, 180), 1);
        assert_eq!(super::count_ones_in(&bm, 150, 180), 0);
    }
}
