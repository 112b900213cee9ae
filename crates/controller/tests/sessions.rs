//! Physical sessions, controller reset and activity tables, and the sparse
//! full copy of a large volume.

use std::time::Instant;

use activity_table::{EntryStatus, NewEntry, PhysSessionId, SessionId};
use controller::testing::VirtualSubsystem;
use controller::{
    CopyType, ErrorKind, MapCreate, MapState, PhysSessionState, SessionPair, Subsystem,
    SubsystemConfig, MAX_SESSIONS_PER_VOLUME,
};
use geometry::{Extent, ExtentSet};

fn config() -> SubsystemConfig {
    let mut t = String::from("id = \"SESS\"\n");
    for i in 0..20 {
        t.push_str(&format!(
            "[[volumes]]\nid = \"V{i:02}\"\nmodel = \"3390-A:4\"\n"
        ));
    }
    SubsystemConfig::from_toml_str(&t).unwrap()
}

fn ext(a: u64, b: u64) -> ExtentSet {
    ExtentSet::from(Extent { first: a, last: b })
}

fn pair(s: &str, a: u64, b: u64, t: &str) -> SessionPair {
    SessionPair {
        source: s.into(),
        extents: ext(a, b),
        target: t.into(),
        copy_rate: None,
    }
}

const TRACK: u64 = 57_344;

#[test]
fn session_copies_its_extents_at_time_zero() {
    let vs = VirtualSubsystem::boot(config()).unwrap();
    let sub = vs.sub();
    vs.write_pattern("V00", 0, (60 * TRACK) as usize, 1, true)
        .unwrap();
    vs.write_pattern("V01", 0, (60 * TRACK) as usize, 9, true)
        .unwrap();
    let phys = sub
        .establish_session("BKUP1", None, &[pair("V00", 10, 19, "V01")])
        .unwrap();
    assert_eq!(phys, 1);
    assert_eq!(sub.active_extents(phys, "V00"), Some(ext(10, 19)));
    assert_eq!(sub.active_extents(phys, "V01"), None);
    // Writes after time zero do not reach the target's image.
    vs.write_pattern("V00", 12 * TRACK, (3 * TRACK) as usize, 2, false)
        .unwrap();
    while sub.copy_step(1 << 30).unwrap().more {}
    vs.check_pattern("V01", 10 * TRACK, (10 * TRACK) as usize, 1)
        .unwrap();
    // Outside the extents the target keeps its own data.
    vs.check_pattern("V01", 0, (10 * TRACK) as usize, 9)
        .unwrap();
    vs.check_pattern("V01", 20 * TRACK, (40 * TRACK) as usize, 9)
        .unwrap();
    assert_eq!(sub.session_progress(phys), Some((10, 10)));
    let info = sub.session_info(phys).unwrap();
    assert_eq!(
        (info.session.as_str(), info.state),
        ("BKUP1", PhysSessionState::Active)
    );
    // A volume in a session cannot be deleted; withdraw releases it.
    assert_eq!(
        sub.delete_volume("V01").unwrap_err().kind(),
        ErrorKind::Busy
    );
    assert!(
        !sub.withdraw_session(phys, Some("OTHER")).unwrap(),
        "owned by another session: left alone"
    );
    assert!(sub.withdraw_session(phys, Some("BKUP1")).unwrap());
    assert!(!sub.withdraw_session(phys, None).unwrap(), "idempotent");
    assert!(sub.physical_sessions().is_empty());
    assert!(sub.maps().is_empty());
    sub.delete_volume("V01").unwrap();
}

#[test]
fn session_limits_are_enforced_with_clear_errors() {
    let vs = VirtualSubsystem::boot(config()).unwrap();
    let sub = vs.sub();
    for i in 0..MAX_SESSIONS_PER_VOLUME {
        // Extent-level maps from one source to distinct targets would need 16
        // targets; use one track range per session on distinct target volumes.
        let t = format!("V{:02}", 1 + i);
        sub.establish_session(
            &format!("S{i}"),
            None,
            &[pair("V00", i as u64, i as u64, &t)],
        )
        .unwrap();
    }
    let e = sub
        .establish_session("S99", None, &[pair("V00", 30, 30, "V19")])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Limit);
    assert!(e.to_string().contains("V00"), "{e}");
    let e = sub
        .establish_session("bad id", None, &[pair("V00", 1, 1, "V19")])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    let e = sub
        .establish_session("S100", None, &[pair("V18", 0, 100_000, "V19")])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfRange);
    let e = sub
        .establish_session("S101", None, &[pair("NOPE", 0, 1, "V19")])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[test]
fn reset_loses_only_unhardened_sessions_and_keeps_images() {
    let mut vs = VirtualSubsystem::boot(config()).unwrap();
    vs.write_pattern("V00", 0, (60 * TRACK) as usize, 1, true)
        .unwrap();
    let kept = vs
        .sub()
        .establish_session("KEEP", None, &[pair("V00", 0, 29, "V01")])
        .unwrap();
    vs.sub().harden().unwrap();
    let lost = vs
        .sub()
        .establish_session("LOSE", None, &[pair("V00", 30, 59, "V02")])
        .unwrap();
    assert!(!vs.sub().session_info(lost).unwrap().hardened);
    // A first write after the session: its copy hardens nothing yet for LOSE?
    // It does: the group commit hardens before committing a grain of an unhardened map.
    let r = vs.sub().reset(true).unwrap();
    assert_eq!(r.sessions_lost, vec![lost]);
    assert_eq!(r.sessions, vec![kept]);
    assert_eq!(
        vs.sub().session_info(kept).unwrap().state,
        PhysSessionState::Quiesced
    );
    assert_eq!(vs.sub().active_extents(lost, "V00"), None);
    // Quiesced: protection continues, background copy waits for resume.
    vs.write_pattern("V00", 0, (5 * TRACK) as usize, 2, false)
        .unwrap();
    assert_eq!(vs.sub().copy_step(1 << 30).unwrap().grains, 0);
    vs.sub().resume_session(kept).unwrap();
    while vs.sub().copy_step(1 << 30).unwrap().more {}
    vs.check_pattern("V01", 0, (30 * TRACK) as usize, 1)
        .unwrap();

    // A session whose map committed a grain was hardened by that commit.
    let s3 = vs
        .sub()
        .establish_session("HARD", None, &[pair("V00", 40, 49, "V03")])
        .unwrap();
    vs.write_pattern("V00", 40 * TRACK, 4096, 3, false).unwrap();
    assert!(vs.sub().session_info(s3).unwrap().hardened);
    let r = vs.sub().reset(true).unwrap();
    assert!(r.sessions_lost.is_empty());
    assert_eq!(vs.sub().active_extents(s3, "V00"), Some(ext(40, 49)));
    vs.sub().resume_session(s3).unwrap();
    while vs.sub().copy_step(1 << 30).unwrap().more {}
    vs.check_pattern("V03", 40 * TRACK, (10 * TRACK) as usize, 1)
        .unwrap();

    // reset(false) loses nothing; an IPL keeps hardened sessions too.
    let s4 = vs
        .sub()
        .establish_session("SOFT", None, &[pair("V05", 0, 9, "V06")])
        .unwrap();
    let r = vs.sub().reset(false).unwrap();
    assert!(r.sessions_lost.is_empty() && r.sessions.contains(&s4));
    vs.ipl().unwrap();
    assert_eq!(vs.sub().active_extents(s4, "V05"), Some(ext(0, 9)));
}

/// QA: a reset that lost an unhardened session handed its map ids out
/// again (docs/CLI.md: an id is never reused). The counters survive the
/// reset, and the next IPL, above every id handed out.
#[test]
fn ids_of_lost_sessions_are_not_reused() {
    let mut vs = VirtualSubsystem::boot(config()).unwrap();
    let before = vs
        .sub()
        .create_map(&MapCreate::new("V10", "V11", CopyType::Nocopy))
        .unwrap();
    let lost = vs
        .sub()
        .establish_session("LOSE", None, &[pair("V00", 0, 9, "V02")])
        .unwrap();
    let lost_maps = vs.sub().session_info(lost).unwrap().maps;
    let r = vs.sub().reset(true).unwrap();
    assert_eq!(r.sessions_lost, vec![lost]);
    let next = vs
        .sub()
        .create_map(&MapCreate::new("V12", "V13", CopyType::Nocopy))
        .unwrap();
    assert!(next.0 > before.0);
    assert!(
        lost_maps.iter().all(|m| next.0 > *m),
        "map id {} reused one of the lost session's {lost_maps:?}",
        next.0
    );
    vs.ipl().unwrap();
    let after_ipl = vs
        .sub()
        .create_map(&MapCreate::new("V14", "V15", CopyType::Nocopy))
        .unwrap();
    assert!(after_ipl.0 > next.0);
}

/// QA: a session establish that failed after creating its maps in memory
/// gave their ids to the next maps created. A request undone keeps its ids
/// used.
#[test]
fn ids_of_an_undone_establish_are_not_reused() {
    let vs = VirtualSubsystem::boot(config()).unwrap();
    let first = vs
        .sub()
        .create_map(&MapCreate::new("V10", "V11", CopyType::Nocopy))
        .unwrap();
    // The second pair's target is already a target: refused after the
    // first pair's map was made.
    let e = vs
        .sub()
        .establish_session(
            "FAIL",
            None,
            &[pair("V00", 0, 9, "V02"), pair("V03", 0, 9, "V11")],
        )
        .unwrap_err();
    assert!(vs.sub().maps().iter().all(|m| m.id == first.0), "{e}");
    let next = vs
        .sub()
        .create_map(&MapCreate::new("V12", "V13", CopyType::Nocopy))
        .unwrap();
    assert!(
        next.0 >= first.0 + 2,
        "map id {} reused (first {})",
        next.0,
        first.0
    );
}

#[test]
fn activity_tables_are_per_subsystem_and_per_volume() {
    let mut vs = VirtualSubsystem::boot(config()).unwrap();
    let entry = |vol: Option<&str>, status| NewEntry {
        session_id: SessionId::new("B1").unwrap(),
        phys_session_id: PhysSessionId::new(3).unwrap(),
        subsystem: "SESS".into(),
        volume: vol.map(str::to_string),
        extents: ext(1, 5),
        status,
        program: Some("DFDSS".into()),
        host: None,
        time_unix_ms: 1,
    };
    vs.sub()
        .append_activity(&[
            entry(None, EntryStatus::Initiated),
            entry(Some("V00"), EntryStatus::Initiated),
        ])
        .unwrap();
    vs.sub()
        .append_activity(&[entry(Some("V00"), EntryStatus::Completed)])
        .unwrap();
    let e = vs
        .sub()
        .append_activity(&[entry(Some("NOPE"), EntryStatus::Completed)])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    // A domain past the volume's last track is refused, nothing appended.
    let before = vs.sub().activity_entries().unwrap().len();
    let mut past = entry(Some("V00"), EntryStatus::Initiated);
    past.extents = ext(1, 1 << 40);
    let e = vs.sub().append_activity(&[past]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
    assert!(e.to_string().contains("past its last track"), "{e}");
    assert_eq!(vs.sub().activity_entries().unwrap().len(), before);
    // One batch per touched table, not one fdatasync per entry.
    let before = vs.sub().metrics().table_appends;
    let many: Vec<NewEntry> = (0..10)
        .map(|i| {
            entry(
                Some(if i % 2 == 0 { "V03" } else { "V02" }),
                EntryStatus::Initiated,
            )
        })
        .collect();
    vs.sub().append_activity(&many).unwrap();
    assert_eq!(vs.sub().metrics().table_appends - before, 3);
    assert_eq!(vs.sub().volume_activity_entries("V03").unwrap().len(), 5);
    vs.ipl().unwrap();
    assert_eq!(vs.sub().activity_entries().unwrap().len(), 13);
    assert_eq!(vs.sub().volume_activity_entries("V02").unwrap().len(), 5);
    let v = vs.sub().volume_activity_entries("V00").unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[1].status, EntryStatus::Completed);
    assert!(vs.sub().volume_activity_entries("V01").unwrap().is_empty());
}

#[test]
fn a_deleted_volume_table_is_retired_and_a_recreated_volume_starts_empty() {
    let vs = VirtualSubsystem::boot(config()).unwrap();
    let model: geometry::DeviceModel = "3390-A:4".parse().unwrap();
    let entry = |vol: &str| NewEntry {
        session_id: SessionId::new("B1").unwrap(),
        phys_session_id: PhysSessionId::new(3).unwrap(),
        subsystem: "SESS".into(),
        volume: Some(vol.to_string()),
        extents: ext(1, 5),
        status: EntryStatus::Initiated,
        program: None,
        host: None,
        time_unix_ms: 1,
    };
    let tables = vs.data_dir().join("tables");
    vs.sub().create_volume("J1", model).unwrap();
    vs.sub().append_activity(&[entry("J1")]).unwrap();
    vs.sub().delete_volume("J1").unwrap();
    assert!(!tables.join("J1.tbl").exists());
    assert!(
        tables.join("J1.tbl.deleted.1").exists(),
        "history kept aside"
    );
    vs.sub().create_volume("J1", model).unwrap();
    assert!(vs.sub().volume_activity_entries("J1").unwrap().is_empty());
    // A crash between the delete's root and the rename leaves J1.tbl: the
    // next create of J1 retires it too.
    vs.sub().append_activity(&[entry("J1")]).unwrap();
    let saved = std::fs::read(tables.join("J1.tbl")).unwrap();
    vs.sub().delete_volume("J1").unwrap();
    std::fs::write(tables.join("J1.tbl"), saved).unwrap();
    vs.sub().create_volume("J1", model).unwrap();
    assert!(vs.sub().volume_activity_entries("J1").unwrap().is_empty());
    assert!(tables.join("J1.tbl.deleted.3").exists());
    // The subsystem table keeps every entry.
    assert_eq!(vs.sub().activity_entries().unwrap().len(), 2);
}

#[test]
fn sparse_full_copy_of_a_3390_54_with_ten_written_tracks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SubsystemConfig::from_toml_str(
        "id = \"BIG\"\n[[volumes]]\nid = \"A\"\nmodel = \"3390-54\"\n[[volumes]]\nid = \"B\"\nmodel = \"3390-54\"\n",
    )
    .unwrap();
    let sub = Subsystem::open(dir.path(), cfg).unwrap();
    let tracks = sub.geometry("A").unwrap().tracks();
    let written: Vec<u64> = (0..10).map(|i| i * (tracks / 10) + 7).collect();
    for &t in &written {
        sub.write("A", t * TRACK, &vec![t as u8 | 1; TRACK as usize], false)
            .unwrap();
    }
    // Stale data on the target where the source has a hole: discarded by the copy.
    sub.write("B", 5 * TRACK, &vec![0xEE; TRACK as usize], false)
        .unwrap();
    let m = sub
        .create_map(&MapCreate::new("A", "B", CopyType::Full))
        .unwrap();
    sub.start_map(m, false).unwrap();
    let commits = sub.metrics().group_commits;
    let t0 = Instant::now();
    while sub.copy_step(1 << 30).unwrap().more {}
    let took = t0.elapsed();
    // Planned as runs: a few chunks (one group commit each), not one per 64 Ki grains.
    let chunks = sub.metrics().group_commits - commits;
    assert!(chunks <= 4, "{chunks} group commits for a sparse copy");
    assert_eq!(sub.map(m).unwrap().state, MapState::IdleOrCopied);
    eprintln!("sparse full copy of {tracks} tracks with 10 written took {took:?}");
    // Only the written tracks hold data on the target.
    let alloc = sub.allocation("B", 0, tracks * TRACK).unwrap();
    let data: u64 = alloc.iter().filter(|e| e.allocated).map(|e| e.len).sum();
    assert_eq!(data, 10 * TRACK);
    for &t in &written {
        let mut b = vec![0u8; TRACK as usize];
        sub.read("B", t * TRACK, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == t as u8 | 1));
    }
    assert_eq!(sub.metrics().background_bytes, 10 * TRACK);
    let mut b = vec![1u8; TRACK as usize];
    sub.read("B", 5 * TRACK, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0), "stale target data discarded");
    sub.close().unwrap();
}

#[test]
fn a_session_with_a_suspended_map_can_be_withdrawn() {
    use std::sync::Arc;
    use volume_store::{FaultEffect, FaultInjector, FaultPoint, FaultSite, Trigger};
    let inj: Arc<dyn FaultPoint> = Arc::new(FaultInjector::new(3).with_rule(
        FaultSite::CowFlush,
        Trigger::Nth(1),
        FaultEffect::Eio,
    ));
    let vs = VirtualSubsystem::boot_with(config(), 1, Some(inj)).unwrap();
    vs.write_pattern("V00", 0, (10 * TRACK) as usize, 1, true)
        .unwrap();
    let phys = vs
        .sub()
        .establish_session("SUSP", None, &[pair("V00", 0, 9, "V01")])
        .unwrap();
    // The copy-on-write's target flush fails: the session's map is suspended.
    vs.write_pattern("V00", 0, TRACK as usize, 2, false)
        .unwrap_err();
    let info = vs.sub().session_info(phys).unwrap();
    assert!(
        info.maps
            .iter()
            .any(|m| vs.sub().map(controller::MapId(*m)).unwrap().state == MapState::Suspended),
        "{info:?}"
    );
    assert!(vs.sub().withdraw_session(phys, Some("SUSP")).unwrap());
    assert!(vs.sub().session_info(phys).is_none());
    // Both volumes are online again.
    let mut b = vec![0u8; 512];
    vs.sub().read("V00", 0, &mut b).unwrap();
    vs.sub().read("V01", 0, &mut b).unwrap();
}

#[test]
fn an_establish_rejected_after_prepare_leaves_nothing_behind() {
    let vs = VirtualSubsystem::boot(config()).unwrap();
    let sub = vs.sub();
    // V01 is the source of an active map, so a session targeting V01 is
    // rejected at start (after its prepare flushed the sources).
    let x = sub
        .create_map(&MapCreate::new("V01", "V02", CopyType::Nocopy))
        .unwrap();
    sub.start_map(x, false).unwrap();
    let e = sub
        .establish_session("REJ", None, &[pair("V00", 0, 9, "V01")])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::State, "{e}");
    assert_eq!(
        sub.maps().iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![x.0],
        "no map of the rejected session is left"
    );
    assert!(sub.physical_sessions().is_empty());
    let mut b = vec![0u8; 512];
    sub.read("V01", 0, &mut b).unwrap();
}

/// A session's target holds its time-zero image until the session ends: a
/// map from it (a restore from an unfinished backup) or onto it may not be
/// started or prepared, with a message naming the session and how to end
/// it; once the session is withdrawn the same start works. Without this a
/// restore from the target could make the session's withdraw close a loop
/// of restores and be refused (simulator seed 420052397).
#[test]
fn a_session_target_is_reserved_until_the_session_ends() {
    let vs = VirtualSubsystem::boot(config()).unwrap();
    let sub = vs.sub();
    let phys = sub
        .establish_session("BKUP9", None, &[pair("V00", 0, 3, "V01")])
        .unwrap();
    let from_target = sub
        .create_map(&MapCreate::new("V01", "V02", CopyType::Full))
        .unwrap();
    // Onto the target: refused already at create (one map per target).
    let e = sub
        .create_map(&MapCreate::new("V03", "V01", CopyType::Full))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    for restore in [false, true] {
        let e = sub.start_map(from_target, restore).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
        let msg = e.full_message();
        assert!(
            msg.contains("volume V01 is the target of session BKUP9"),
            "{msg}"
        );
        assert!(msg.contains("cannot start"), "{msg}");
        assert!(msg.contains("session terminate BKUP9"), "{msg}");
    }
    let e = sub.prepare_map(from_target).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    assert_eq!(sub.map(from_target).unwrap().state, MapState::IdleOrCopied);
    assert!(sub.withdraw_session(phys, Some("BKUP9")).unwrap());
    sub.start_map(from_target, false).unwrap();
}

/// A frozen volume holds its writers (before any lock: a session can be
/// established meanwhile), the image is taken without the held write, and the
/// thaw lets it through; a bad freeze is refused, naming what is wrong.
#[test]
fn a_freeze_holds_writes_while_a_session_is_established() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    let vs = VirtualSubsystem::boot(config()).unwrap();
    let sub = vs.sub();
    vs.write_pattern("V00", 0, TRACK as usize, 1, true).unwrap();
    let token = sub
        .freeze_writes(&["V00".to_string()], Duration::from_secs(30))
        .unwrap();
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let writer = {
        let (sub, done) = (sub.clone(), done.clone());
        std::thread::spawn(move || {
            sub.write("V00", 0, &vec![0xEE; TRACK as usize], false)
                .unwrap();
            done.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(!done.load(Ordering::SeqCst), "a write passed the freeze");
    // Reads and other volumes are not held.
    let mut buf = vec![0u8; 512];
    sub.read("V00", 0, &mut buf).unwrap();
    sub.write("V02", 0, &[7u8; 512], false).unwrap();
    let phys = sub
        .establish_session("FROZEN", Some("SYS1"), &[pair("V00", 0, 0, "V01")])
        .unwrap();
    assert_eq!(
        sub.session_info(phys).unwrap().host.as_deref(),
        Some("SYS1")
    );
    assert!(!done.load(Ordering::SeqCst));
    assert!(sub.thaw_writes(token), "the freeze held until its thaw");
    writer.join().unwrap();
    // The image is from before the held write; the source has it now.
    while sub.copy_step(1 << 30).unwrap().more {}
    vs.check_pattern("V01", 0, TRACK as usize, 1).unwrap();
    let mut now = vec![0u8; 16];
    sub.read("V00", 0, &mut now).unwrap();
    assert_eq!(now, [0xEE; 16]);
    assert!(!sub.thaw_writes(token), "a second thaw holds nothing");

    let e = sub
        .freeze_writes(&["NOPE".to_string()], Duration::from_secs(1))
        .unwrap_err();
    assert!(e.to_string().contains("NOPE"), "{e}");
    let e = sub
        .freeze_writes(&["V00".to_string()], Duration::from_secs(3600))
        .unwrap_err();
    assert!(e.to_string().contains("60 s"), "{e}");
}

/// Patent B, claim 1: k backup sessions on one volume share one cascade, so
/// a host's first write to a track they all protect copies once, not k
/// times, and each session still reads its own time zero. Ending the newest
/// session hands the tracks it holds to the older ones first.
#[test]
fn sessions_on_one_volume_cost_one_copy_per_first_write() {
    let vs = VirtualSubsystem::boot(config()).unwrap();
    let sub = vs.sub();
    vs.write_pattern("V00", 0, (40 * TRACK) as usize, 1, true)
        .unwrap();
    let mut phys = Vec::new();
    for (k, t) in ["V01", "V02", "V03", "V04"].iter().enumerate() {
        let mut p = pair("V00", 0, 39, t);
        p.copy_rate = Some(0);
        phys.push(sub.establish_session(&format!("K{k}"), None, &[p]).unwrap());
        // Each session sees a different time zero.
        vs.write_pattern(
            "V00",
            (30 + k as u64) * TRACK,
            TRACK as usize,
            10 + k as u64,
            true,
        )
        .unwrap();
    }
    let cascades = sub.cascades();
    assert_eq!(cascades.len(), 1, "one shared cascade: {cascades:?}");
    let before = sub.metrics().cow_copies;
    vs.write_pattern("V00", 5 * TRACK, (4 * TRACK) as usize, 7, true)
        .unwrap();
    let copies = sub.metrics().cow_copies - before;
    assert_eq!(
        copies, 4,
        "4 first-written tracks, 4 sessions: one copy per track"
    );
    // Every session reads its own time zero: the tracks written before it
    // started, the original data elsewhere.
    for (k, t) in ["V01", "V02", "V03", "V04"].iter().enumerate() {
        vs.check_pattern(t, 5 * TRACK, (4 * TRACK) as usize, 1)
            .unwrap();
        for j in 0..4u64 {
            let seed = if (j as usize) < k { 10 + j } else { 1 };
            vs.check_pattern(t, (30 + j) * TRACK, TRACK as usize, seed)
                .unwrap_or_else(|e| panic!("{t} track {}: {e}", 30 + j));
        }
    }
    // The newest session ends; the older ones keep their images.
    assert!(sub.withdraw_session(phys[3], Some("K3")).unwrap());
    // Until it has handed its tracks down (the 4 written above and track 33,
    // written after K3 started), K3's target is still in use.
    let e = sub
        .establish_session("K4", None, &[pair("V00", 0, 39, "V04")])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    assert!(
        e.to_string()
            .contains("handing 5 track(s) to an older session's target"),
        "{e}"
    );
    let draining = sub
        .maps()
        .into_iter()
        .find(|m| m.target == "V04")
        .expect("K3's map cleans before it goes");
    assert!(draining.withdrawn, "{draining:?}");
    assert_eq!(draining.state, MapState::Stopping);
    while sub.copy_step(1 << 30).unwrap().more {}
    // Then it is free again.
    let k4 = sub
        .establish_session("K4", None, &[pair("V00", 0, 39, "V04")])
        .unwrap();
    assert!(sub.withdraw_session(k4, Some("K4")).unwrap());
    for t in ["V01", "V02", "V03"] {
        vs.check_pattern(t, 5 * TRACK, (4 * TRACK) as usize, 1)
            .unwrap();
    }
    assert!(sub
        .physical_sessions()
        .iter()
        .all(|s| s.state == PhysSessionState::Active));
}
