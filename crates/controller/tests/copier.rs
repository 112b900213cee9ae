//! The tokio copier runs background copy at the map's rate to completion and
//! publishes progress; it yields to host I/O without losing any image.

use std::time::Duration;

use controller::testing::VirtualSubsystem;
use controller::{CopyType, Event, MapCreate, MapState, SubsystemConfig};

#[test]
fn tokio_copier_completes_a_clone_with_progress_events() {
    let cfg = SubsystemConfig::from_toml_str(
        "id = \"CP\"\n[[volumes]]\nid = \"S\"\nmodel = \"fb:8M:64K\"\n[[volumes]]\nid = \"T\"\nmodel = \"fb:8M:64K\"\n",
    )
    .unwrap();
    let vs = VirtualSubsystem::boot(cfg).unwrap();
    vs.write_pattern("S", 0, 8 << 20, 1, true).unwrap();
    let mut req = MapCreate::new("S", "T", CopyType::Full);
    req.copy_rate = Some(150);
    let m = vs.sub().create_map(&req).unwrap();
    let mut events = vs.sub().subscribe();
    vs.sub().start_map(m, false).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let copier = vs.sub().start_copier(rt.handle());
    // Host writes meanwhile: the image must stay the time-zero one.
    for i in 0..32u64 {
        vs.write_pattern("S", i * (256 << 10), 4096, 2, false)
            .unwrap();
    }
    let mut seen = Vec::new();
    let v = vs
        .sub()
        .wait_map(m, Duration::from_secs(60), |p| seen.push(p))
        .unwrap();
    assert_eq!(v.state, MapState::IdleOrCopied);
    assert_eq!(seen.last(), Some(&100));
    rt.block_on(copier.stop());
    vs.check_pattern("T", 0, 8 << 20, 1).unwrap();
    let mut progress = 0;
    while let Ok(e) = events.try_recv() {
        if matches!(e, Event::Progress { map, .. } if map == m) {
            progress += 1;
        }
    }
    assert!(progress > 0);
}

#[test]
fn test_utils_expose_the_engine_state_and_volume_ids() {
    let cfg = SubsystemConfig::from_toml_str(
        "id = \"EN\"\n[[volumes]]\nid = \"S\"\nmodel = \"fb:1M:64K\"\n[[volumes]]\nid = \"T\"\nmodel = \"fb:1M:64K\"\n",
    )
    .unwrap();
    let vs = VirtualSubsystem::boot(cfg).unwrap();
    let m = vs
        .sub()
        .create_map(&MapCreate::new("S", "T", CopyType::Nocopy))
        .unwrap();
    vs.sub().start_map(m, false).unwrap();
    vs.write_pattern("S", 0, 4096, 3, false).unwrap();
    let (s, t) = (
        vs.sub().engine_volume_id("S").unwrap(),
        vs.sub().engine_volume_id("T").unwrap(),
    );
    assert_ne!(s, t);
    assert!(vs.sub().engine_volume_id("NOPE").is_none());
    let engine = vs.sub().engine_snapshot();
    let info = engine.map_info(m).unwrap();
    assert_eq!((info.spec.source, info.spec.target), (s, t));
}

/// QA: a background copy that fails every tick (a full disk) looked like a
/// healthy copy stuck at some percent. `map show` now says why it stalls.
/// Here the target's file is deleted under the subsystem: its next flush
/// fails, and the map names that until the copy moves again.
#[test]
fn a_background_copy_that_keeps_failing_is_shown_as_stalled_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SubsystemConfig::from_toml_str(
        "id = \"CP\"\n[[volumes]]\nid = \"S\"\nmodel = \"fb:8M:64K\"\n[[volumes]]\nid = \"T\"\nmodel = \"fb:8M:64K\"\n",
    )
    .unwrap();
    let s = controller::Subsystem::open(dir.path(), cfg).unwrap();
    s.write("S", 0, &vec![0x44; 8 << 20], true).unwrap();
    let mut req = MapCreate::new("S", "T", CopyType::Full);
    req.copy_rate = Some(150);
    let m = s.create_map(&req).unwrap();
    s.start_map(m, false).unwrap();
    assert_eq!(s.map(m).unwrap().copy_stalled, None);
    std::fs::remove_file(dir.path().join("volumes/T.vol")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let copier = s.start_copier(rt.handle());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let stalled = loop {
        let v = s.map(m).unwrap();
        if let Some(why) = v.copy_stalled {
            break why;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never shown stalled: {v:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    rt.block_on(copier.stop());
    assert!(
        stalled.contains("deleted or replaced while in use"),
        "{stalled}"
    );
    // A failed flush also suspends the map (docs/DURABILITY.md); a copy
    // that fails before its flush (a full disk) stays copying.
    let state = s.map(m).unwrap().state;
    assert!(
        matches!(state, MapState::Suspended | MapState::Copying),
        "never done: {state:?}"
    );
}
