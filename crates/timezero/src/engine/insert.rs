//! Where a started map's target joins the cascade structure (Patent B,
//! claim 1; E2 and E6 in the engine module). One function decides for the
//! engine's start and for the structure-only checks of `cycles.rs`, so the
//! loop check always tries the insertion the start will make.

use std::collections::BTreeMap;

use crate::types::{CascadeId, CopyType, VolumeId};

use super::Cascade;

/// The place of a new target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// Insert at this members index (right after the source).
    At(CascadeId, usize),
    /// Start a new cascade `[source, target]`.
    New {
        /// Not used for insertion from its head (E2, E6).
        private: bool,
    },
}

/// Where the target of a map `source -> target` of type `ty` goes;
/// `extent_limited` says the map has an extent set, `is_transparent(v)` that
/// `v` is an extent-limited member of a shared cascade.
///
/// - A target joins the chain of its type right after its source (the
///   source's member role, else the shared cascade of that type it heads);
///   extent-limited maps too, but never into a private cascade.
/// - A map whose source is an extent-limited member of a shared chain
///   starts a private cascade (nothing in a shared chain derives from such
///   a member).
/// - Otherwise a new cascade starts; it is private only for an
///   extent-limited map whose source is a member of a private chain of the
///   type (its source has a role of the type already, E2).
pub(crate) fn place(
    cascades: &BTreeMap<CascadeId, Cascade>,
    source: VolumeId,
    ty: CopyType,
    extent_limited: bool,
    is_transparent: impl Fn(VolumeId) -> bool,
) -> Place {
    let member = cascades.iter().find_map(|(id, c)| {
        c.members
            .iter()
            .position(|x| *x == source)
            .map(|i| (*id, c, i))
    });
    if let Some((cid, c, i)) = member {
        if !c.private && is_transparent(source) {
            return Place::New { private: true };
        }
        if c.ty == ty && !(extent_limited && c.private) {
            return Place::At(cid, i + 1);
        }
    }
    if let Some((cid, _)) = cascades
        .iter()
        .find(|(_, c)| c.head == source && !c.frozen && !c.private && c.ty == ty)
    {
        return Place::At(*cid, 0);
    }
    Place::New {
        private: extent_limited && member.is_some_and(|(_, c, _)| c.ty == ty),
    }
}
