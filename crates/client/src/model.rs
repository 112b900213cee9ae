//! The JSON documents of the control API: the one definition the server's
//! handlers, the CLI and every other client share, so that both sides agree
//! on every field name. With the `openapi` feature each type also derives
//! `utoipa::ToSchema`, from which the daemon's OpenAPI document is built.
//!
//! Field names are part of the public contract (docs/CLI.md, "Control API"):
//! `map show --json` carries at least `id, source, target, type,
//! incremental, state, progress_percent, copy_rate, clean_rate, cascade`.

use serde::{Deserialize, Serialize};

/// Body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What was wrong, one line.
    pub error: String,
    /// Machine-readable kind, e.g. `unknown_volume`, `bad_extent`, `wrong_state`.
    pub kind: String,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok` while the subsystem serves I/O; `degraded` while some volume's
    /// store is poisoned by a failed flush (its writes fail until `event
    /// ipl`: see `poisoned_volumes`); `fenced` after a metadata write
    /// failed (every request is refused until `event ipl` or a reboot:
    /// see `fenced`).
    pub status: String,
    /// Why the subsystem is fenced, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced: Option<String>,
    /// Volumes whose store a failed flush poisoned: they serve no writes
    /// until an IPL (`event ipl`) reopens them (`volume list` says why).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poisoned_volumes: Vec<String>,
    /// Subsystem id.
    pub subsystem: String,
    /// firmware-sim version.
    pub version: String,
    /// Seconds since boot.
    pub uptime_s: u64,
    /// Number of volumes.
    pub volumes: usize,
    /// NBD listen address(es), as URIs without an export name.
    pub nbd: Vec<String>,
    /// What this daemon's resource manager owes peers that did not answer
    /// an event or a terminate, one line each (`rm-restart on host SYS1,
    /// owed to SS02`): paid within seconds of the peer answering again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owed: Vec<String>,
}

/// One recent event of the daemon (`GET /events`): a controller state
/// change or an IPL, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecentEvent {
    /// When, in milliseconds since the Unix epoch.
    pub time_unix_ms: u64,
    /// What happened, e.g. `SS01: map 0 copying -> idle_or_copied`.
    pub text: String,
}

/// One volume (`GET /volumes`, `GET /volumes/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VolumeInfo {
    /// Volume id, also the NBD export name.
    pub id: String,
    /// Device model, e.g. `3390-3` or `fb:1G`.
    pub model: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Number of tracks.
    pub tracks: u64,
    /// Bytes per track.
    pub track_size_bytes: u64,
    /// True for a CKD (3390) volume.
    pub ckd: bool,
    /// Mappings this volume is the source or target of.
    #[serde(default)]
    pub mappings: Vec<u32>,
    /// Physical sessions protecting extents of this volume.
    #[serde(default)]
    pub sessions: Vec<u8>,
    /// The NBD URI of its export, when the daemon serves TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbd_uri: Option<String>,
    /// Hosts may read and write it now (NBD I/O gets EIO while it is not).
    #[serde(default = "yes")]
    pub online: bool,
    /// Why it is offline, naming the map and what brings it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_reason: Option<String>,
    /// Bytes its own store holds data for (thin provisioning: the rest are
    /// holes that read as zeros or through a map).
    #[serde(default)]
    pub allocated_bytes: u64,
    /// Set only in the answer to a create that leaves the volumes able to
    /// outgrow their filesystem (thin provisioning): writes then fail with
    /// ENOSPC once it fills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

fn yes() -> bool {
    true
}

/// `POST /volumes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateVolume {
    /// New volume id.
    pub id: String,
    /// Device model.
    pub model: String,
}

/// One mapping (`GET /mappings`, `GET /mappings/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MapInfo {
    /// Map id.
    pub id: u32,
    /// The name given at `map create --name`, if any.
    #[serde(default)]
    pub name: Option<String>,
    /// Source volume.
    pub source: String,
    /// Target volume.
    pub target: String,
    /// `full` or `nocopy`.
    #[serde(rename = "type")]
    pub copy_type: String,
    /// Incremental (keeps its bitmaps after the copy completes).
    pub incremental: bool,
    /// FlashCopy state name (`idle_or_copied`, `copying`, ...).
    pub state: String,
    /// Share of grains on the target (or cleaned, while stopping), 0-100.
    pub progress_percent: u8,
    /// Background copy rate, SVC 0-150 scale.
    pub copy_rate: u8,
    /// Cleaning rate, SVC 0-150 scale.
    pub clean_rate: u8,
    /// The cascade the map belongs to (its order, head first), if started.
    pub cascade: Option<CascadeInfo>,
    /// Extents of the source the map covers (`all` for the whole volume).
    pub extents: String,
    /// Consistency group, if any.
    #[serde(default)]
    pub group: Option<u32>,
    /// Started as a restore (the reverse of another map: the image on its
    /// source is copied back onto its target) and still active.
    #[serde(default)]
    pub restoring: bool,
    /// Its backup session ended and it is handing the tracks an older
    /// session's target reads through it down to that target; it deletes
    /// itself when done (state `stopping`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub withdrawn: bool,
    /// The background copy (or cleaning) is stalled: its last attempt failed
    /// with this error (a full disk, a failing target) and none has moved
    /// data since; it retries on its own. Absent while the copy moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_stalled: Option<String>,
    /// Maps this request stopped besides this one, one line each: a forced
    /// stop also stops the maps whose images read through its target
    /// (their targets go offline). Only in the answer to a stop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_stopped: Vec<String>,
}

impl MapInfo {
    /// True once the map no longer copies or cleans: copied (a full map may
    /// stay `copying` at 100% while dependants need it), stopped, or waiting
    /// for a start.
    pub fn settled(&self) -> bool {
        matches!(
            self.state.as_str(),
            "idle_or_copied" | "stopped" | "prepared"
        ) || (self.state == "copying" && self.progress_percent == 100)
    }
}

/// `POST /mappings`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateMap {
    /// Source volume.
    pub source: String,
    /// Target volume.
    pub target: String,
    /// `full` or `nocopy`.
    #[serde(rename = "type")]
    pub copy_type: String,
    /// Keep bitmaps for incremental refresh.
    #[serde(default)]
    pub incremental: bool,
    /// `CCHH-CCHH,...` (CKD) or `FIRST-LAST,...` tracks (FB); absent = whole volume.
    #[serde(default)]
    pub extent: Option<String>,
    /// Background copy rate 0-150.
    #[serde(default)]
    pub copy_rate: Option<u8>,
    /// Cleaning rate 0-150.
    #[serde(default)]
    pub clean_rate: Option<u8>,
    /// Requested map id.
    #[serde(default)]
    pub id: Option<u32>,
    /// A name for the map (every verb then takes it in place of the id).
    #[serde(default)]
    pub name: Option<String>,
}

/// Body of `POST /sessions/{id}/terminate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TerminateSession {
    /// Why, in the operator's words (logged; the rows carry `operator`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Body of `POST /mappings/{id}/start` and `/groups/{id}/start` (optional:
/// no body is `{"restore": false}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartFlags {
    /// Start with restore: the target may be the source of active maps
    /// (their cascades keep the target's current data).
    #[serde(default)]
    pub restore: bool,
}

/// Body of `POST /groups/{id}/maps`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GroupMember {
    /// The map to add.
    pub map: u32,
}

/// `POST /mappings/{id}/stop` and `DELETE /mappings/{id}?force=true`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ForceFlag {
    /// Force (stop: skip cleaning, dependants stop too).
    #[serde(default)]
    pub force: bool,
}

/// `POST /mappings/{id}/restore`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Background copy rate (0-150) of the reverse map; default: the map's
    /// own copy rate, or 50 (2 MiB/s) when that is 0 (nocopy maps).
    #[serde(default)]
    pub copy_rate: Option<u8>,
}

/// One cascade (`GET /cascades`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CascadeInfo {
    /// Cascade id.
    pub id: u32,
    /// `full` or `nocopy`.
    #[serde(rename = "type")]
    pub copy_type: String,
    /// Volumes, head (cascade source) first.
    pub order: Vec<String>,
    /// Maps linking neighbours, in order.
    #[serde(default)]
    pub maps: Vec<u32>,
    /// The map whose finished copy the head is, when that map was cut from
    /// its own chain at 100 % and stays copying while these members read
    /// through the head (`null` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_map: Option<u32>,
}

/// One consistency group (`GET /groups`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupInfo {
    /// Group id.
    pub id: u32,
    /// The name given at `group create --name`, if any.
    #[serde(default)]
    pub name: Option<String>,
    /// Member maps.
    pub maps: Vec<u32>,
    /// `empty`, the members' common state, else the most active of them.
    #[serde(default)]
    pub state: String,
    /// The backup session whose maps these are (groups the resource manager
    /// created for a session), `null` for groups users created.
    #[serde(default)]
    pub session: Option<String>,
}

/// `POST /groups`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// Group id; `None` (or absent): the subsystem assigns the next free one.
    #[serde(default)]
    pub id: Option<u32>,
    /// A name for the group (every verb then takes it in place of the id).
    #[serde(default)]
    pub name: Option<String>,
    /// Member maps.
    pub maps: Vec<u32>,
}

/// Answer of an action (`POST .../start`, `DELETE ...`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionDone {
    /// What was done, one line.
    pub message: String,
}

/// `POST /sessions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartSession {
    /// Logical session id.
    pub id: String,
    /// `VOL:CCHH-CCHH[,...]` (FB: `VOL:FIRST-LAST`); a range without `VOL:`
    /// belongs to the previous volume.
    pub extent: String,
    /// Target volume.
    pub target: String,
    /// Backup program that owns the session.
    #[serde(default)]
    pub program: Option<String>,
    /// The host starting it, its owner (default: the daemon's host id).
    #[serde(default)]
    pub host: Option<String>,
    /// Background copy rate of its maps, SVC 0-150 (default 100, 64 MiB/s).
    #[serde(default)]
    pub copy_rate: Option<u8>,
}

/// One source volume of a session part.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionVolume {
    /// Source volume.
    pub volume: String,
    /// Protected extents, in the volume's text form.
    pub extents: String,
}

/// One subsystem's physical session of a logical session.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionPart {
    /// Subsystem id.
    pub subsystem: String,
    /// Physical session id on that subsystem (1-255; shown in hex).
    pub phys: u8,
    /// Protected source volumes.
    pub volumes: Vec<SessionVolume>,
    /// Tracks on the target, when the subsystem reports it.
    pub copied_tracks: Option<u64>,
    /// Tracks in the domain, when the subsystem reports it.
    pub total_tracks: Option<u64>,
    /// While the session is open: its physical session here no longer
    /// serves the image (`failed`: a map of it was stopped or is suspended;
    /// `timed_out`; `gone`). The next event terminates the session
    /// (`image-lost`); `session terminate` does it now. Absent when whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
    /// Its physical session here is suspended by a reset of the subsystem
    /// and waits for the reset's judgment (resumed if its extents match);
    /// also while that judgment is owed to a peer that did not answer
    /// (`GET /health` lists it). Absent when not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
}

/// One backup copy session (`GET /sessions`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    /// Logical session id.
    pub id: String,
    /// Backup program.
    pub program: Option<String>,
    /// The host that started it (its owner).
    #[serde(default)]
    pub host: String,
    /// `active`, `completed`, `terminated` or `resumed`.
    pub state: String,
    /// Why it was terminated (`ipl`, `rm-restart`, `abend`, `reset-mismatch`, ...).
    pub reason: Option<String>,
    /// Serialization released (`session release`): the image is fixed and
    /// the copy goes on; a restart event still ends the session.
    #[serde(default)]
    pub logically_complete: bool,
    /// Per subsystem.
    pub parts: Vec<SessionPart>,
    /// Copy progress over all parts that answered, 0-100.
    pub progress_percent: Option<f64>,
}

impl SessionInfo {
    /// True once every part has reported its whole domain on the target
    /// (then `complete` succeeds).
    pub fn copied(&self) -> bool {
        !self.parts.is_empty()
            && self
                .parts
                .iter()
                .all(|p| matches!((p.copied_tracks, p.total_tracks), (Some(c), Some(t)) if c >= t))
    }
}

/// One decision of an event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecisionInfo {
    /// Logical session id.
    pub session: String,
    /// The host that owns the session (two hosts that raced to start one id
    /// hold one session each; `None`: rows recorded before hosts were).
    #[serde(default)]
    pub host: Option<String>,
    /// Backup program.
    pub program: Option<String>,
    /// `resumed`, `terminated` or `untouched`.
    pub outcome: String,
    /// Termination reason when terminated.
    pub reason: Option<String>,
    /// Whether this event changed anything for the session.
    pub acted: bool,
    /// Why, in words.
    pub why: String,
}

/// A physical session without an open activity row that an event withdrew.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrphanInfo {
    /// Subsystem id.
    pub subsystem: String,
    /// Physical session id (1-255; shown in hex).
    pub phys: u8,
    /// The logical session it belonged to.
    pub owner: String,
}

/// Answer of `POST /events/{event}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventReport {
    /// The event, e.g. `ipl` or `abend of program X`.
    pub event: String,
    /// Per session examined.
    pub decisions: Vec<DecisionInfo>,
    /// Orphan physical sessions withdrawn.
    pub orphans: Vec<OrphanInfo>,
    /// What else the event did (IPL replay outcome, maps restored), one line each.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Parts of the event that failed (a table append, a withdraw); what they
    /// concern is finished by the next event. Empty when the event completed.
    #[serde(default)]
    pub problems: Vec<String>,
}

/// Body of `POST /events/{event}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    /// Program name (`abend`).
    #[serde(default)]
    pub program: Option<String>,
    /// The host the event is about (`ipl`, `rm-restart`, `abend`); default:
    /// the daemon's own host. An `ipl` with a host is that host's IPL alone
    /// (the subsystem keeps running); without one it is the daemon's IPL.
    #[serde(default)]
    pub host: Option<String>,
    /// Lose volatile state (`reset`).
    #[serde(default)]
    pub lose_volatile: bool,
}

/// One activity-table entry, decoded (`GET /tables`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TableEntryInfo {
    /// Which table: the subsystem id or a volume id.
    pub table: String,
    /// Sequence number in that table.
    pub seq: u64,
    /// Logical session id.
    pub session_id: String,
    /// Physical session id (1-255; shown in hex).
    pub phys_session_id: u8,
    /// Subsystem id.
    pub subsystem: String,
    /// Volume (`-` for subsystem-level rows).
    pub volume: String,
    /// Extents in the volume's text form.
    pub extents: String,
    /// `initiated`, `completed`, `terminated` or `resumed`.
    pub status: String,
    /// Termination reason, if terminated.
    pub reason: Option<String>,
    /// Backup program.
    pub program: Option<String>,
    /// The host that started the session (rows written before hosts were
    /// recorded have none).
    #[serde(default)]
    pub host: Option<String>,
    /// Wall-clock time of the entry, Unix milliseconds.
    pub time_unix_ms: u64,
}
