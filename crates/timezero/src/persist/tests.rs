//! Field validation of persisted state.

use super::*;
use crate::types::MapState;

fn base() -> EngineDto {
    EngineDto {
        next_map: 1,
        next_group: 0,
        next_cascade: 1,
        volumes: vec![(0, 70), (1, 70)],
        maps: vec![MapDto {
            id: 0,
            source: 0,
            target: 1,
            copy_type: 1,
            incremental: false,
            extents: None,
            copy_rate: 0,
            clean_rate: 50,
            autodelete: false,
            state: state_code(MapState::Copying),
            resume_to: None,
            group: None,
            started_once: true,
            restoring: false,
            split: vec![0, 0],
            diff: None,
        }],
        cascades: vec![CascadeDto {
            id: 0,
            copy_type: 1,
            head: 0,
            frozen: false,
            private: false,
            members: vec![1],
        }],
        groups: vec![],
        withdrawn: Vec::new(),
    }
}

fn load_dto(d: &EngineDto) -> Result<Engine, LoadError> {
    Engine::load(&frame(d))
}

#[test]
fn valid_dto_loads() {
    let e = load_dto(&base()).unwrap();
    assert_eq!(e.cascades().len(), 1);
    assert_eq!(e.save(), frame(&base()));
}

#[test]
fn invalid_fields_are_named_errors() {
    type Edit = Box<dyn Fn(&mut EngineDto)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("dup volume", Box::new(|d| d.volumes.push((0, 70)))),
        ("unknown target", Box::new(|d| d.maps[0].target = 9)),
        ("size mismatch", Box::new(|d| d.volumes[1].1 = 71)),
        ("bad state", Box::new(|d| d.maps[0].state = 42)),
        ("bad type", Box::new(|d| d.maps[0].copy_type = 7)),
        ("short bitmap", Box::new(|d| d.maps[0].split = vec![0])),
        (
            "trailing bits",
            Box::new(|d| d.maps[0].split = vec![0, 1 << 10]),
        ),
        ("member of idle map", Box::new(|d| d.maps[0].state = 0)),
        ("rate", Box::new(|d| d.maps[0].copy_rate = 200)),
        ("id beyond counter", Box::new(|d| d.next_map = 0)),
        ("empty cascade", Box::new(|d| d.cascades[0].members.clear())),
        (
            "head is member",
            Box::new(|d| d.cascades[0].members = vec![0]),
        ),
        ("cascade type", Box::new(|d| d.cascades[0].copy_type = 0)),
        (
            "stopping outside chain",
            Box::new(|d| {
                d.maps[0].state = state_code(MapState::Stopping);
                d.cascades.clear();
            }),
        ),
        (
            "resume without suspend",
            Box::new(|d| d.maps[0].resume_to = Some(3)),
        ),
        (
            "incremental nocopy",
            Box::new(|d| {
                d.maps[0].incremental = true;
                d.maps[0].diff = Some(vec![0, 0]);
            }),
        ),
        ("unknown group", Box::new(|d| d.maps[0].group = Some(3))),
        (
            "extent beyond",
            Box::new(|d| d.maps[0].extents = Some(vec![(0, 70)])),
        ),
        (
            "reversed extent",
            Box::new(|d| d.maps[0].extents = Some(vec![(5, 4)])),
        ),
    ];
    for (what, f) in cases {
        let mut d = base();
        f(&mut d);
        assert!(
            matches!(load_dto(&d), Err(LoadError::Invalid(_))),
            "{what}: {:?}",
            load_dto(&d).err()
        );
    }
}
