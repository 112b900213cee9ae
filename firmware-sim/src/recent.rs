//! The daemon's recent events, for the status page and `GET /events`: the
//! controller's state changes (map states, completions, cleaning,
//! deletions, suspensions, poisoned stores) and the daemon's IPLs, newest
//! last, at most [`KEEP`]. Progress ticks and checkpoints are left out (the
//! maps table shows progress). Kept in memory only: an IPL keeps them, a
//! restart of the daemon starts empty.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use controller::Event;
use firmware_sim_client::model::RecentEvent;
use parking_lot::Mutex;

/// Events kept.
pub const KEEP: usize = 200;

/// The ring of recent events (cheap to clone).
#[derive(Clone, Default)]
pub struct Recent {
    ring: Arc<Mutex<VecDeque<RecentEvent>>>,
}

impl Recent {
    /// Records `text` now.
    pub fn push(&self, text: String) {
        let time_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut ring = self.ring.lock();
        if ring.len() == KEEP {
            ring.pop_front();
        }
        ring.push_back(RecentEvent { time_unix_ms, text });
    }

    /// The events kept, oldest first.
    pub fn list(&self) -> Vec<RecentEvent> {
        self.ring.lock().iter().cloned().collect()
    }

    /// Follows one subsystem handle's events until the handle is replaced
    /// (its channel closes) or dropped.
    pub fn follow(
        &self,
        runtime: &tokio::runtime::Handle,
        mut rx: tokio::sync::broadcast::Receiver<Event>,
        subsystem: String,
    ) {
        let me = self.clone();
        runtime.spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) => {
                        if let Some(text) = describe(&e) {
                            me.push(format!("{subsystem}: {text}"));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        me.push(format!(
                            "{subsystem}: {n} events not shown (the page fell behind)"
                        ));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}

/// One event in words; `None` for the ones the page leaves out.
fn describe(e: &Event) -> Option<String> {
    Some(match e {
        Event::MapState { map, from, to } => format!("map {} {from} -> {to}", map.0),
        Event::CopyCompleted { map } => format!("map {} copy complete", map.0),
        Event::CleaningDone { map } => format!("map {} cleaning done", map.0),
        Event::MapDeleted { map, autodelete } => format!(
            "map {} deleted{}",
            map.0,
            if *autodelete { " (autodelete)" } else { "" }
        ),
        Event::MapSuspended { map, reason } => format!("map {} suspended: {reason}", map.0),
        Event::StorePoisoned { volume, reason } => {
            format!("store of {volume} refuses writes until an IPL: {reason}")
        }
        Event::Progress { .. } | Event::Checkpoint { .. } => return None,
    })
}
