//! Read-back checks shared by every world: each track of each volume is read
//! the way a host would read it and compared with the [`Model`]; split bits are
//! compared with where the data actually is.
//!
//! Which invariant a wrong read breaks depends on the volume's role:
//! - the target of an active map in a cascade with other targets: CAS-1;
//! - the target of an active map: PIT-1;
//! - any other volume (plain-disk semantics, acknowledged writes): PIT-2.

use timezero::{CascadeInfo, MapInfo, MapState, VolumeId};

use crate::check::{Invariant, Violation};
use crate::model::{Model, ReadCheck};
use crate::summary::RunStats;

/// What reading one track gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackRead {
    /// The bytes (one track).
    Data(Vec<u8>),
    /// The volume is not accessible (its map's state takes it offline); the
    /// text says why.
    Refused(String),
    /// The read failed with an I/O error.
    Failed(String),
    /// The read was refused or failed and nothing the model knows justifies
    /// it (no map state takes the volume offline, no fault hits the track):
    /// always a violation.
    Unjustified(String),
}

/// The invariant a wrong read of `volume` breaks (see the module docs).
pub fn role_of(volume: VolumeId, maps: &[MapInfo], cascades: &[CascadeInfo]) -> Invariant {
    let Some(m) = maps
        .iter()
        .find(|m| m.spec.target == volume && m.state.is_active())
    else {
        return Invariant::Pit2;
    };
    role_of_target(
        m.cascade
            .and_then(|c| cascades.iter().find(|x| x.id == c))
            .map(|c| c.members.len()),
    )
}

/// The invariant a wrong read of an active target breaks, given the size of
/// its cascade (if any): CAS-1 when it shares a cascade, else PIT-1.
pub(crate) fn role_of_target(cascade_members: Option<usize>) -> Invariant {
    if cascade_members.is_some_and(|n| n > 1) {
        Invariant::Cas1
    } else {
        Invariant::Pit1
    }
}

/// Whether `volume` is the target of a map whose state makes its contents
/// undefined (stopped, or prepared/preparing before the start).
pub fn target_undefined(volume: VolumeId, maps: &[MapInfo]) -> bool {
    maps.iter()
        .any(|m| m.spec.target == volume && m.state == MapState::Stopped)
}

/// Reads every track of volume `vol` (model index) with `read` and checks it
/// against `model`. Refused reads are skipped (the caller checks that the
/// refusal is justified); failed reads are skipped when `allow_failed`, else
/// they break `role`.
#[allow(clippy::too_many_arguments)]
pub fn verify_volume(
    model: &mut Model,
    vol: usize,
    name: &str,
    role: Invariant,
    mode: ReadCheck,
    allow_failed: bool,
    stats: &mut RunStats,
    mut read: impl FnMut(u64) -> TrackRead,
) -> Result<(), Violation> {
    stats.checked(role);
    for track in 0..model.tracks() {
        match read(track) {
            TrackRead::Data(buf) => {
                stats.tracks_verified += 1;
                model
                    .check_track(vol, track, &buf, mode)
                    .map_err(|m| Violation::new(role, m.to_string()).on(name, Some(track)))?;
            }
            TrackRead::Refused(_) => {
                if mode == ReadCheck::AfterCrash {
                    model.crash_unread(vol, track);
                }
            }
            TrackRead::Failed(_) if allow_failed => {
                if mode == ReadCheck::AfterCrash {
                    model.crash_unread(vol, track);
                }
            }
            TrackRead::Failed(e) => {
                return Err(Violation::new(
                    role,
                    format!("read failed without an injected fault: {e}"),
                )
                .on(name, Some(track)))
            }
            TrackRead::Unjustified(e) => {
                return Err(Violation::new(role, e).on(name, Some(track)));
            }
        }
    }
    Ok(())
}
