//! The resource manager's knowledge of sessions, folded from activity-table entries.
//!
//! Everything here is rebuilt from the subsystem tables ([`Ledger::rebuild`]); nothing is
//! kept that the tables do not say. Invariants:
//! - a row key is (subsystem, volume); its status is the status of its latest entry;
//! - a session is `completed` if any row ever said Completed, else `terminated(reason)` if
//!   any row said Terminated (reason of the first such entry seen), else `resumed` if any
//!   row's latest status is Resumed, else `active`;
//! - a session is *unsettled* if it is completed or terminated while some row is still open
//!   (Initiated/Resumed/LogicallyComplete): a recovery or completion was interrupted and
//!   must be finished;
//! - a session is keyed by its id *and* the host its rows record ([`SessionKey`]): every
//!   entry of a session names the host that started it (the resource manager writes the
//!   owner's host on the rows it adds for it), so two hosts that started the same id at the
//!   same instant, each where the other's rows were not yet visible, hold two sessions,
//!   and one host's restart events never decide for the other's (`None` for sessions
//!   recorded before hosts were: the resource manager counts them as its own);
//! - a session is *logically complete* once any row said LogicallyComplete (the image is
//!   fixed and serialization released); that is an attribute, not a state: the session
//!   stays active or resumed until it completes or is terminated.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use activity_table::{ActivityEntry, EntryStatus, PhysSessionId, SessionId, TerminateReason};
use geometry::ExtentSet;

/// The state of a logical session (cli.md names). JSON: `{"state": "active"}`,
/// `{"state": "terminated", "reason": "ipl"}`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "kebab-case")]
pub enum SessionState {
    /// Initiated, neither completed nor terminated, never resumed.
    Active,
    /// Completed successfully (terminal).
    Completed,
    /// Terminated by recovery or rollback (terminal).
    Terminated(TerminateReason),
    /// Resumed after a reset notification whose extents matched.
    Resumed,
}

impl SessionState {
    /// Completed or terminated.
    pub fn is_terminal(self) -> bool {
        matches!(self, SessionState::Completed | SessionState::Terminated(_))
    }

    /// The state name without the reason: `active|completed|terminated|resumed`.
    pub fn name(self) -> &'static str {
        match self {
            SessionState::Active => "active",
            SessionState::Completed => "completed",
            SessionState::Terminated(_) => "terminated",
            SessionState::Resumed => "resumed",
        }
    }

    /// The termination reason, if terminated.
    pub fn reason(self) -> Option<TerminateReason> {
        match self {
            SessionState::Terminated(r) => Some(r),
            _ => None,
        }
    }
}

impl fmt::Display for SessionState {
    /// `active`, `completed`, `terminated(<reason>)`, `resumed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionState::Terminated(r) => write!(f, "terminated({r})"),
            s => f.write_str(s.name()),
        }
    }
}

/// One (session, subsystem, volume) row: the recorded domain and the latest status.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Row {
    pub phys: PhysSessionId,
    pub extents: ExtentSet,
    pub status: EntryStatus,
}

/// What a logical session is known by in the ledger: its id and the host its rows name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) struct SessionKey {
    pub id: SessionId,
    pub host: Option<String>,
}

/// A logical session as the tables describe it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct SessionLedger {
    pub id: SessionId,
    pub program: Option<String>,
    /// The host that started it, as the rows record it.
    pub host: Option<String>,
    /// Some row said LogicallyComplete.
    pub logically_complete: bool,
    /// Some row said Resumed: a later LogicallyComplete row (a release)
    /// replaces the row's status, not the session's history.
    pub resumed: bool,
    /// subsystem -> volume -> row.
    pub rows: BTreeMap<String, BTreeMap<String, Row>>,
    pub completed: bool,
    pub terminated: Option<TerminateReason>,
    /// The time of its earliest Initiated row (ms since the epoch, the
    /// starting manager's clock).
    pub initiated_ms: Option<u64>,
}

impl SessionLedger {
    fn new(key: SessionKey) -> SessionLedger {
        SessionLedger {
            id: key.id,
            program: None,
            host: key.host,
            logically_complete: false,
            resumed: false,
            rows: BTreeMap::new(),
            completed: false,
            terminated: None,
            initiated_ms: None,
        }
    }

    /// Its key in the ledger.
    pub fn key(&self) -> SessionKey {
        SessionKey {
            id: self.id.clone(),
            host: self.host.clone(),
        }
    }

    /// True if a physical session established for `owner` by `host` is this session's
    /// (a side that recorded no host, from before hosts were, matches any host).
    pub fn owns(&self, owner: &SessionId, host: Option<&str>) -> bool {
        self.id == *owner
            && match (self.host.as_deref(), host) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    pub fn state(&self) -> SessionState {
        if self.completed {
            SessionState::Completed
        } else if let Some(r) = self.terminated {
            SessionState::Terminated(r)
        } else if self.resumed {
            SessionState::Resumed
        } else {
            SessionState::Active
        }
    }

    /// Terminal state but rows still open: an interrupted completion or termination.
    pub fn is_unsettled(&self) -> bool {
        self.state().is_terminal() && self.open_rows().next().is_some()
    }

    /// (subsystem, volume, row) of every row whose latest status is open.
    pub fn open_rows(&self) -> impl Iterator<Item = (&str, &str, &Row)> {
        self.rows.iter().flat_map(|(s, vols)| {
            vols.iter()
                .filter(|(_, r)| r.status.is_open())
                .map(move |(v, r)| (s.as_str(), v.as_str(), r))
        })
    }

    /// Physical ids recorded on `subsystem`.
    pub fn phys_on(&self, subsystem: &str) -> BTreeSet<PhysSessionId> {
        self.rows
            .get(subsystem)
            .map(|v| v.values().map(|r| r.phys).collect())
            .unwrap_or_default()
    }

    /// Physical ids recorded with open rows on `subsystem`.
    pub fn open_phys_on(&self, subsystem: &str) -> BTreeSet<PhysSessionId> {
        self.rows
            .get(subsystem)
            .map(|v| {
                v.values()
                    .filter(|r| r.status.is_open())
                    .map(|r| r.phys)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn apply(&mut self, e: &ActivityEntry) {
        let Some(volume) = &e.volume else {
            // Subsystem-level rows carry no domain; the RM never writes them.
            return;
        };
        debug_assert!(
            e.host.is_none() || self.host == e.host,
            "an entry folded into another host's session"
        );
        if self.program.is_none() {
            self.program.clone_from(&e.program);
        }
        let vols = self.rows.entry(e.subsystem.clone()).or_default();
        match vols.get_mut(volume) {
            Some(row) => {
                row.status = e.status;
                if e.status == EntryStatus::Initiated {
                    row.extents = e.extents.clone();
                    row.phys = e.phys_session_id;
                }
            }
            None => {
                vols.insert(
                    volume.clone(),
                    Row {
                        phys: e.phys_session_id,
                        extents: e.extents.clone(),
                        status: e.status,
                    },
                );
            }
        }
        match e.status {
            EntryStatus::Completed => self.completed = true,
            EntryStatus::Terminated { reason } => {
                self.terminated.get_or_insert(reason);
            }
            EntryStatus::LogicallyComplete => self.logically_complete = true,
            EntryStatus::Resumed => self.resumed = true,
            EntryStatus::Initiated => {
                let t = e.time_unix_ms;
                self.initiated_ms = Some(self.initiated_ms.map_or(t, |i| i.min(t)));
            }
        }
    }
}

/// All sessions found in the tables of the attached subsystems.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub(crate) struct Ledger {
    pub sessions: BTreeMap<SessionKey, SessionLedger>,
}

impl Ledger {
    /// Folds the entries of every subsystem table (each in sequence order).
    /// A row that names no host (written before hosts were, or by a table
    /// rebuilt from an older format) belongs to the one session of its id
    /// that has a host, if there is exactly one: hosts are learnt from every
    /// table first, so the order of the tables does not matter.
    pub fn rebuild<'a>(tables: impl IntoIterator<Item = &'a [ActivityEntry]>) -> Ledger {
        let tables: Vec<&[ActivityEntry]> = tables.into_iter().collect();
        let mut hosts: BTreeMap<&SessionId, BTreeSet<&str>> = BTreeMap::new();
        for e in tables.iter().flat_map(|t| t.iter()) {
            if let (Some(h), Some(_)) = (&e.host, &e.volume) {
                hosts.entry(&e.session_id).or_default().insert(h);
            }
        }
        let mut ledger = Ledger::default();
        for e in tables.iter().flat_map(|t| t.iter()) {
            let host = match (&e.host, hosts.get(&e.session_id)) {
                (Some(h), _) => Some(h.clone()),
                (None, Some(only)) if only.len() == 1 => only.first().map(|h| h.to_string()),
                (None, _) => None,
            };
            ledger.apply_as(e, host);
        }
        ledger
    }

    /// Folds one entry (in table order); a row without a host joins the one
    /// session of its id that has a host, if there is exactly one.
    pub fn apply(&mut self, e: &ActivityEntry) {
        let host = match &e.host {
            Some(h) => Some(h.clone()),
            None => {
                let mut owned = self.with_id(&e.session_id).filter_map(|s| s.host.clone());
                match (owned.next(), owned.next()) {
                    (Some(h), None) => Some(h),
                    _ => None,
                }
            }
        };
        self.apply_as(e, host);
    }

    /// Folds `e` into the session of its id and `host`.
    fn apply_as(&mut self, e: &ActivityEntry, host: Option<String>) {
        let key = SessionKey {
            id: e.session_id.clone(),
            host,
        };
        self.sessions
            .entry(key)
            .or_insert_with_key(|k| SessionLedger::new(k.clone()))
            .apply(e);
    }

    /// Every session recorded under `id` (more than one only when hosts raced to start
    /// the same id), in host order.
    pub fn with_id<'a>(&'a self, id: &'a SessionId) -> impl Iterator<Item = &'a SessionLedger> {
        self.sessions
            .range(
                SessionKey {
                    id: id.clone(),
                    host: None,
                }..,
            )
            .take_while(move |(k, _)| k.id == *id)
            .map(|(_, s)| s)
    }
}
