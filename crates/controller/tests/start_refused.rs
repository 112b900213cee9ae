//! A start the engine refuses must change nothing: the map stays in its
//! state and its target stays readable and writable (QA finding Q32: a
//! refused `map start` used to leave the map prepared, its target offline).

use controller::{CopyType, ErrorKind, MapCreate, MapState, Subsystem, SubsystemConfig};

fn config() -> SubsystemConfig {
    SubsystemConfig::from_toml_str(
        r#"
id = "T1"
[[volumes]]
id = "A"
model = "fb:1M:64K"
[[volumes]]
id = "B"
model = "fb:1M:64K"
[[volumes]]
id = "C"
model = "fb:1M:64K"
"#,
    )
    .unwrap()
}

/// B is the source of an active snapshot B -> C; starting A -> B without
/// restore is refused, and must leave A -> B idle and B fully usable.
fn setup(s: &Subsystem) -> (controller::MapId, controller::MapId) {
    let bc = s
        .create_map(&MapCreate::new("B", "C", CopyType::Nocopy))
        .unwrap();
    s.start_map(bc, false).unwrap();
    let ab = s
        .create_map(&MapCreate::new("A", "B", CopyType::Full))
        .unwrap();
    (ab, bc)
}

fn assert_b_usable(s: &Subsystem) {
    s.write("B", 0, &[0x5a; 4096], false).unwrap();
    let mut buf = vec![0u8; 4096];
    s.read("B", 0, &mut buf).unwrap();
    assert_eq!(buf, vec![0x5a; 4096]);
}

#[test]
fn refused_map_start_leaves_the_map_idle_and_its_target_online() {
    let dir = tempfile::tempdir().unwrap();
    let s = Subsystem::open(dir.path(), config()).unwrap();
    let (ab, bc) = setup(&s);
    let e = s.start_map(ab, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::State, "{e}");
    // It names the map that reads through B and the start that works (QA).
    let text = e.to_string();
    assert!(
        text.contains(&format!("map {}", bc.0)) && text.contains("--restore"),
        "{text}"
    );
    assert_eq!(s.map(ab).unwrap().state, MapState::IdleOrCopied);
    assert_b_usable(&s);
    s.close().unwrap();
}

#[test]
fn refused_group_start_leaves_every_member_idle() {
    let dir = tempfile::tempdir().unwrap();
    let s = Subsystem::open(dir.path(), config()).unwrap();
    let (ab, _) = setup(&s);
    let g = s.create_group(&[ab], false).unwrap();
    assert!(s.start_group(g, false).is_err());
    assert_eq!(s.map(ab).unwrap().state, MapState::IdleOrCopied);
    assert_b_usable(&s);
    s.close().unwrap();
}

/// A second `group start` names the group and the way to a new point in
/// time, not one of its member maps, and changes nothing.
#[test]
fn starting_a_started_group_again_names_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let s = Subsystem::open(dir.path(), config()).unwrap();
    let ab = s
        .create_map(&MapCreate::new("A", "B", CopyType::Nocopy))
        .unwrap();
    let g = s.create_group(&[ab], false).unwrap();
    s.start_group(g, false).unwrap();
    s.write("A", 0, &[0x11; 4096], false).unwrap();
    let e = s.start_group(g, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::State, "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("group {} is already started", g.0)) && text.contains("group stop"),
        "{text}"
    );
    assert_eq!(s.map(ab).unwrap().state, MapState::Copying);
    let mut buf = vec![0u8; 4096];
    s.read("B", 0, &mut buf).unwrap();
    assert_eq!(
        buf,
        vec![0u8; 4096],
        "the snapshot still holds its time zero"
    );
    s.close().unwrap();
}

/// A stop refused because the target is the source of a map still copying
/// from it says what `--force` would do to that map: stop it only when its
/// image reads grains the target holds (QA: the hint said "which stops it
/// too", and the forced stop left it copying, correctly).
#[test]
fn refused_stop_says_what_the_forced_stop_does_to_the_map_copying_from_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let s = Subsystem::open(dir.path(), config()).unwrap();
    let full = |src: &str, tgt: &str| {
        let mut c = MapCreate::new(src, tgt, CopyType::Full);
        c.copy_rate = Some(0);
        s.create_map(&c).unwrap()
    };
    s.write("A", 0, &[0x11; 65536], false).unwrap();
    let ab = full("A", "B");
    let bc = full("B", "C");
    s.start_map(ab, false).unwrap();
    s.start_map(bc, false).unwrap();
    let e = s.stop_map(ab, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::State, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("goes on copying"), "{msg}");
    s.stop_map(ab, true).unwrap();
    assert_eq!(s.map(ab).unwrap().state, MapState::Stopped);
    assert_eq!(s.map(bc).unwrap().state, MapState::Copying);
    // C keeps its image (B as it was at B -> C's start: A's data), also
    // across a later write to A.
    s.write("A", 0, &[0x22; 65536], false).unwrap();
    let mut buf = vec![0u8; 65536];
    s.read("C", 0, &mut buf).unwrap();
    assert!(buf.iter().all(|b| *b == 0x11), "C lost its image");
    s.close().unwrap();
}

/// QA: `map delete` of a prepared map suggested `map delete --force`, which
/// is refused too. The hint now names what works from that state, and
/// following it works.
#[test]
fn a_refused_delete_names_what_works_from_the_maps_state() {
    let dir = tempfile::tempdir().unwrap();
    let s = Subsystem::open(dir.path(), config()).unwrap();
    let m = s
        .create_map(&MapCreate::new("A", "B", CopyType::Full))
        .unwrap();
    s.prepare_map(m).unwrap();
    for force in [false, true] {
        let e = s.delete_map(m, force).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("`map stop {} --force` first", m.0)),
            "{msg}"
        );
    }
    s.stop_map(m, true).unwrap();
    s.delete_map(m, true).unwrap();
    assert!(s.maps().is_empty());
    s.close().unwrap();
}

/// QA: a refused `group stop` named `map stop 0 --force`, which is itself
/// refused for a group member; and the refusal of a stop whose target heads
/// a cascade of the other type was `invalid_request` where its twin (the
/// target still copied from) is a state conflict. Both are state
/// conflicts, and the hint names the group's own forced stop.
#[test]
fn a_refused_group_stop_names_the_groups_forced_stop() {
    let dir = tempfile::tempdir().unwrap();
    let s = Subsystem::open(dir.path(), config()).unwrap();
    let mut full = MapCreate::new("A", "B", CopyType::Full);
    full.copy_rate = Some(0);
    let ab = s.create_map(&full).unwrap();
    let bc = s
        .create_map(&MapCreate::new("B", "C", CopyType::Nocopy))
        .unwrap();
    let g = s.create_group(&[ab], false).unwrap();
    s.start_map(bc, false).unwrap();
    s.start_group(g, true).unwrap();
    let e = s.stop_group(g, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::State, "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("group stop {} --force", g.0)),
        "{text}"
    );
    assert!(!text.contains("map stop 0 --force"), "{text}");
    s.stop_group(g, true).unwrap();
    s.close().unwrap();
}
