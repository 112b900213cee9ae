//! A stopping map reports its cleaning progress (QA Q25): grains cleaned of
//! those it had to clean when stopped, rising with background work, and gone
//! once the map is stopped.

use std::time::Duration;

use controller::testing::VirtualSubsystem;
use controller::{CopyType, MapCreate, MapState, SubsystemConfig};

#[test]
fn stopping_map_shows_cleaning_progress() {
    let cfg = SubsystemConfig::from_toml_str(
        "id = \"CL\"\n[[volumes]]\nid = \"S\"\nmodel = \"fb:8M:64K\"\n[[volumes]]\nid = \"T\"\nmodel = \"fb:8M:64K\"\n[[volumes]]\nid = \"U\"\nmodel = \"fb:8M:64K\"\n",
    )
    .unwrap();
    let vs = VirtualSubsystem::boot(cfg).unwrap();
    let s = vs.sub();
    vs.write_pattern("S", 0, 2 << 20, 1, false).unwrap();
    let older = s
        .create_map(&MapCreate::new("S", "T", CopyType::Nocopy))
        .unwrap();
    s.start_map(older, false).unwrap();
    let newer = s
        .create_map(&MapCreate::new("S", "U", CopyType::Nocopy))
        .unwrap();
    s.start_map(newer, false).unwrap();
    assert_eq!(s.map(newer).unwrap().cleaning_percent, None, "not stopping");
    // 16 grains split onto U only: stopping U cleans them into T.
    vs.write_pattern("S", 0, 1 << 20, 2, false).unwrap();
    s.stop_map(newer, false).unwrap();
    let v = s.map(newer).unwrap();
    assert_eq!(v.state, MapState::Stopping);
    assert_eq!(v.cleaning_percent, Some(0));
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["cleaning_percent"], 0);

    // A quarter of the grains' budget cleans about a quarter.
    s.copy_step(4 * (64 << 10)).unwrap();
    let p = s.map(newer).unwrap().cleaning_percent.unwrap();
    assert!((25..100).contains(&p), "after 4 of 16 grains: {p}%");
    let listed = s.maps().into_iter().find(|m| m.id == newer.0).unwrap();
    assert_eq!(listed.cleaning_percent, Some(p));

    // The tokio copier finishes at the clean rate; wait_map shows cleaning.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let copier = s.start_copier(rt.handle());
    let mut seen = Vec::new();
    let v = s
        .wait_map(newer, Duration::from_secs(60), |p| seen.push(p))
        .unwrap();
    rt.block_on(copier.stop());
    assert_eq!(seen.first(), Some(&p), "starts at the cleaning percent");
    assert_eq!(seen.last(), Some(&100));
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(v.state, MapState::Stopped);
    assert_eq!(v.cleaning_percent, None);
    vs.check_pattern("T", 0, 2 << 20, 1).unwrap();
    assert_eq!(s.map(older).unwrap().cleaning_percent, None);
}
