//! Engine errors in the names users know: volume names instead of engine
//! volume ids, `map 7` instead of `map7`, sizes with models and bytes, and the
//! physical session a hidden session map belongs to. The kinds stay those of
//! [`control_kind`] (docs/CLI.md shows the messages).

use timezero::{ControlError, GroupId, MapId, MapState, Operation, VolumeId};

use super::{Core, Inner};
use crate::error::{err, ControllerError, ErrorKind};

/// The controller kind of an engine control error.
pub(crate) fn control_kind(e: &ControlError) -> ErrorKind {
    use ControlError as C;
    match e {
        C::UnknownVolume(_) | C::UnknownMap(_) | C::UnknownGroup(_) => ErrorKind::NotFound,
        C::VolumeExists(_) => ErrorKind::AlreadyExists,
        C::VolumeInUse { .. } | C::TargetInUse { .. } | C::VolumeInCascade { .. } => {
            ErrorKind::Busy
        }
        C::TooManyMapsPerSource { .. } | C::TooManyConnectedMaps { .. } => ErrorKind::Limit,
        C::InvalidState { .. }
        | C::TargetIsActiveSource { .. }
        | C::SourceNotAccessible { .. }
        | C::GroupMember { .. }
        | C::SourceOfCopyingMap { .. }
        | C::OtherTypeDependants { .. }
        | C::RestoreCycle { .. }
        | C::GroupBusy { .. }
        | C::GroupNotEmpty(_) => ErrorKind::State,
        _ => ErrorKind::InvalidRequest,
    }
}

impl Inner {
    /// `e` with names instead of engine ids; `core` is the state it came from.
    pub(crate) fn engine_err(&self, core: &Core, e: ControlError) -> ControllerError {
        use ControlError as C;
        let vols = self.volumes.read();
        let vol = |id: VolumeId| {
            vols.by_id
                .get(&id)
                .map_or_else(|| format!("vol{}", id.0), |v| v.name.clone())
        };
        let size = |id: VolumeId| {
            vols.by_id.get(&id).map_or_else(
                || format!("vol{}", id.0),
                |v| {
                    format!(
                        "{} ({}, {} bytes)",
                        v.name,
                        v.model,
                        v.geometry.size_bytes()
                    )
                },
            )
        };
        let map = |m: MapId| match core.sessions.values().find(|p| p.maps().contains(&m)) {
            Some(p) => format!(
                "map {} (physical session {:02X} of session {})",
                m.0, p.phys, p.session
            ),
            None => format!("map {}", m.0),
        };
        let group = |g: GroupId| format!("group {}", g.0);
        // A group member is stopped with its group (QA: a `group stop`
        // refusal named `map stop N --force`, itself refused for a member).
        let stop_force = |m: MapId| match core.engine.map_info(m).and_then(|i| i.group) {
            Some(g) => format!("group stop {} --force", g.0),
            None => format!("map stop {} --force", m.0),
        };
        let msg = match &e {
            C::UnknownVolume(v) => format!("unknown volume {}", vol(*v)),
            C::UnknownMap(m) => format!("unknown map {}", m.0),
            C::UnknownGroup(g) => format!("unknown consistency group {}", g.0),
            C::VolumeExists(v) => format!("volume {} already exists", vol(*v)),
            C::VolumeInUse { volume, map: m } => {
                format!("volume {} is used by {}", vol(*volume), map(*m))
            }
            C::VolumeInCascade {
                volume, dependents, ..
            } => format!(
                "volume {} holds data that {} read{} through it (they are in one cascade); \
                 stop or delete their maps first",
                vol(*volume),
                dependents
                    .iter()
                    .map(|d| vol(*d))
                    .collect::<Vec<_>>()
                    .join(", "),
                if dependents.len() == 1 { "s" } else { "" }
            ),
            C::SameVolume(v) => format!("map source and target are both {}", vol(*v)),
            C::SizeMismatch {
                source_volume,
                target,
                ..
            } => {
                let bytes = |id: VolumeId| vols.by_id.get(&id).map(|v| v.geometry.size_bytes());
                if bytes(*source_volume).is_some() && bytes(*source_volume) == bytes(*target) {
                    // Same bytes, other tracks: a map copies track by track.
                    let tracks = |id: VolumeId| {
                        vols.by_id.get(&id).map_or_else(
                            || format!("vol{}", id.0),
                            |v| {
                                format!(
                                    "{} ({}, {} tracks of {} bytes)",
                                    v.name,
                                    v.model,
                                    v.geometry.tracks(),
                                    v.geometry.track_size_bytes()
                                )
                            },
                        )
                    };
                    format!(
                        "track size mismatch: source {} and target {} hold the same bytes in \
                         tracks of other sizes; a map needs volumes of the same geometry",
                        tracks(*source_volume),
                        tracks(*target)
                    )
                } else {
                    format!(
                        "size mismatch: source {} and target {} differ; a map needs volumes of \
                         the same size",
                        size(*source_volume),
                        size(*target)
                    )
                }
            }
            C::TargetInUse { target, map: m } => {
                let owner = core.sessions.values().find(|p| p.maps().contains(m));
                let free = match (owner, core.engine.map_state(*m)) {
                    // Only its session may end a session's map.
                    (Some(p), _) => format!(
                        "; `session complete {0}` (once its copy is done) or \
                         `session terminate {0}` frees it",
                        p.session
                    ),
                    (None, Some(MapState::Stopping)) if core.engine.is_withdrawn(*m) => format!(
                        "; that map's session has ended and it is handing {} track(s) to an \
                         older session's target before it deletes itself (`map show {}`)",
                        core.engine.clean_remaining(*m).unwrap_or(0),
                        m.0
                    ),
                    (None, Some(MapState::IdleOrCopied)) => {
                        format!("; `map delete {}` frees it", m.0)
                    }
                    (None, Some(MapState::Stopped)) => format!(
                        "; `map delete {} --force` frees it (its target keeps what it holds)",
                        m.0
                    ),
                    _ => String::new(),
                };
                format!(
                    "volume {} is already the target of {}{free}",
                    vol(*target),
                    map(*m)
                )
            }
            C::TooManyMapsPerSource {
                source_volume,
                limit,
            } => format!(
                "volume {} is already the source of {limit} maps",
                vol(*source_volume)
            ),
            C::InvalidState { map: m, op, state } => {
                let hint = match op {
                    // Name only what the engine accepts from this state
                    // (QA: a prepared map's hint named a refused --force).
                    Operation::Delete | Operation::DeleteForce => match state {
                        MapState::Copying | MapState::Stopped if *op == Operation::Delete => {
                            format!(
                                "; `map delete {} --force` deletes it anyway (the target keeps \
                                 possibly inconsistent data)",
                                m.0
                            )
                        }
                        MapState::Preparing
                        | MapState::Prepared
                        | MapState::Stopping
                        | MapState::Suspended => format!(
                            "; `map stop {0} --force` first, then `map delete {0} --force` (the \
                             target keeps possibly inconsistent data)",
                            m.0
                        ),
                        _ => String::new(),
                    },
                    Operation::Stop => format!(
                        "; `{}` stops it at once (the target keeps possibly inconsistent data)",
                        stop_force(*m)
                    ),
                    Operation::ChangeGroup => {
                        match core.engine.map_info(*m).and_then(|i| i.group) {
                            Some(g) => format!("; `group stop {}` first", g.0),
                            None => String::new(),
                        }
                    }
                    _ => String::new(),
                };
                format!("{} is {state}: {op} is not allowed{hint}", map(*m))
            }
            C::TargetIsActiveSource { map: m, target } => {
                let how = match core.engine.map_info(*m).and_then(|i| i.group) {
                    Some(g) => format!("`group start {} --restore`", g.0),
                    None => format!("`map start {} --restore`", m.0),
                };
                // Name the maps that read through it (QA: "the source of
                // active maps" when no map has it as its source: it heads
                // the cascade its dependants read their images from).
                let members: Vec<VolumeId> = core
                    .engine
                    .cascades()
                    .into_iter()
                    .filter(|c| c.head == *target && !c.head_frozen)
                    .flat_map(|c| c.members)
                    .collect();
                let readers: Vec<String> = core
                    .engine
                    .maps()
                    .into_iter()
                    .filter(|i| members.contains(&i.spec.target))
                    .map(|i| map(i.id))
                    .collect();
                format!(
                    "target {} of {} heads a cascade that {} still read their images \
                     through; {how} starts it as a restore (their images stay)",
                    vol(*target),
                    map(*m),
                    if readers.is_empty() {
                        "other maps".to_string()
                    } else {
                        readers.join(", ")
                    }
                )
            }
            C::SourceNotAccessible {
                map: m,
                source_volume,
            } => format!(
                "source {} of {} is not accessible",
                vol(*source_volume),
                map(*m)
            ),
            C::GroupMember { map: m, group: g } => format!(
                "{} is a member of {}: control the group (`group start {}`, `group stop {}`), \
                 or take the map out first (`group remove {} --map {}`)",
                map(*m),
                group(*g),
                g.0,
                g.0,
                g.0,
                m.0
            ),
            C::AlreadyInGroup { map: m, group: g } => {
                format!("{} is already in {}", map(*m), group(*g))
            }
            C::GroupBusy { group: g, state } => format!(
                "{} has a member in state {state}; `group stop {}` first",
                group(*g),
                g.0
            ),
            C::GroupExists(g) => format!("{} already exists", group(*g)),
            C::GroupEmpty(g) => format!("{} has no maps", group(*g)),
            C::GroupNotEmpty(g) => format!(
                "{} still has maps; `group delete {} --force` deletes it anyway (the maps stay), \
                 or take them out first (`group remove {} --map M`)",
                group(*g),
                g.0,
                g.0
            ),
            C::OtherTypeDependants {
                map: m,
                target,
                other,
            } => format!(
                "target {} of {} heads a {other} cascade with dependants; `{}` stops them too",
                vol(*target),
                map(*m),
                stop_force(*m)
            ),
            C::SourceOfCopyingMap {
                map: m,
                target,
                dependant,
            } => {
                // Say what the forced stop really does: it stops the
                // dependant only when its image reads grains the target
                // holds (I6); otherwise the dependant goes on copying.
                let force = if core.engine.dependent_maps(*m).contains(dependant) {
                    format!("which stops {} too", map(*dependant))
                } else {
                    format!(
                        "{} goes on copying: its image reads nothing {} holds",
                        map(*dependant),
                        vol(*target)
                    )
                };
                format!(
                    "target {} of {} is the source of {}, which still copies from it; stop it \
                     first (`map stop {}`), or `{}` ({force}; {} is left stopped, with possibly \
                     inconsistent data)",
                    vol(*target),
                    map(*m),
                    map(*dependant),
                    dependant.0,
                    stop_force(*m),
                    vol(*target)
                )
            }
            C::RestoreCycle { map: m, volumes } => {
                let path: Vec<String> = volumes
                    .iter()
                    .chain(volumes.first())
                    .map(|v| vol(*v))
                    .collect();
                format!(
                    "{} would close a loop of restores ({}): writes there could not be resolved; \
                     stop or delete one of those restores first (map stop ID, map delete ID)",
                    map(*m),
                    path.join(" -> ")
                )
            }
            _ => e.to_string(),
        };
        err(control_kind(&e), msg)
    }
}
