//! A control request is all or nothing: the state before it (engine,
//! sessions, volumes, open activity tables) is kept and put back when the
//! request fails, including when its checkpoint fails, so memory never shows
//! a change that an IPL would lose (a rejected start leaves no `prepared` map,
//! a map created without a durable root is not listed).
//!
//! Safe because control requests hold the exclusive topology lock: no host
//! I/O, group commit or background copy changes the core meanwhile. A
//! volume create refused inside its request removes the file it made; one
//! undone because its checkpoint failed leaves the file (whether the root
//! naming it landed is unknown until the IPL): the checker reports it as a
//! leaked volume file, and the next create of the name replaces it and
//! retires its table. Ids handed out by the undone request (volume serials,
//! map and group ids) are not handed out again. Events already sent for the
//! undone change are not recalled.

use super::{Core, Inner, Volumes};

/// The state a control request started from.
pub(crate) struct Before {
    core: Core,
    volumes: Volumes,
}

impl Inner {
    /// The state now (called under the exclusive topology lock).
    pub(crate) fn snapshot(&self) -> Before {
        Before {
            core: self.core.lock().clone(),
            volumes: self.volumes.read().clone(),
        }
    }

    /// Puts `before` back and reopens or closes activity tables to match its volumes.
    pub(crate) fn roll_back(&self, before: Before) {
        let names: Vec<String> = before.volumes.by_name.keys().cloned().collect();
        {
            let mut core = self.core.lock();
            // Volume serials, map and group ids are never handed out twice,
            // not even those of an undone request.
            core.replace_keeping_ids(before.core);
            let _ = core.engine.take_events();
            core.refresh_vol_maps();
        }
        *self.volumes.write() = before.volumes;
        self.publish_mapped(&self.core.lock());
        let r = self.with_tables(|t| {
            let open: Vec<String> = t.volumes.keys().cloned().collect();
            for v in open.iter().filter(|v| !names.contains(v)) {
                t.close_volume(v);
            }
            for v in names.iter().filter(|v| !open.contains(v)) {
                t.open_volume(&self.dir, &self.id, v)?;
            }
            Ok(())
        });
        if let Err(e) = r {
            tracing::error!(subsystem = %self.id, error = %e.full_message(), "rollback: activity tables not reopened");
        }
        tracing::debug!(subsystem = %self.id, "control request undone");
    }
}
