//! Concurrent control requests whose handlers take several controller steps
//! (QA: a name check, a create and a rename interleaved; a refused restore
//! deleted the reverse map a concurrent restore had started). Each round
//! fires the requests from threads at once, against a real daemon.

mod common;

use std::sync::Barrier;

use common::nbd_client::NbdConn;
use common::Daemon;
use firmware_sim_client::model::{CreateGroup, CreateMap, CreateVolume};
use firmware_sim_client::{Client, ClientError};

const ROUNDS: usize = 8;

/// Runs `f(i)` on `n` threads released at once; their results in order.
fn at_once<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let go = Barrier::new(n);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let (go, f) = (&go, &f);
                s.spawn(move || {
                    go.wait();
                    f(i)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn status(r: &Result<impl Sized, ClientError>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(ClientError::Api { status, .. }) => *status,
        Err(e) => panic!("transport error: {e}"),
    }
}

#[test]
fn concurrent_creates_of_one_name_make_one_map_or_group_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let c = Client::new(&d.api);
    for round in 0..ROUNDS {
        let made = at_once(3, |i| {
            c.create_map(&CreateMap {
                source: "FB00".into(),
                target: format!("FB0{}", i + 1),
                copy_type: "nocopy".into(),
                name: Some("nightly".into()),
                ..Default::default()
            })
        });
        let codes: Vec<u16> = made.iter().map(status).collect();
        assert_eq!(
            codes.iter().filter(|c| **c == 200).count(),
            1,
            "round {round}: {made:?}"
        );
        assert!(
            codes.iter().all(|c| *c == 200 || *c == 400),
            "round {round}: a refused name is a bad request, not {codes:?}"
        );
        let maps = c.maps().unwrap();
        assert_eq!(
            maps.len(),
            1,
            "round {round}: unnamed maps were left: {maps:?}"
        );
        assert_eq!(maps[0].name.as_deref(), Some("nightly"));

        let groups = at_once(3, |_| {
            c.create_group(&CreateGroup {
                id: None,
                maps: vec![maps[0].id],
                name: Some("db".into()),
            })
        });
        let ok = groups.iter().filter(|g| g.is_ok()).count();
        let all = c.groups().unwrap();
        assert!(ok <= 1, "round {round}: {groups:?}");
        assert_eq!(
            all.len(),
            ok,
            "round {round}: unnamed groups were left: {all:?}"
        );
        for g in all {
            c.delete_group(&g.id.to_string(), true).unwrap();
        }
        c.delete_map(&maps[0].id.to_string(), true).unwrap();
    }
}

#[test]
fn of_concurrent_restores_of_one_map_the_one_answered_runs_to_its_end() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let c = Client::new(&d.api);
    for v in ["SRC", "TGT"] {
        c.create_volume(&CreateVolume {
            id: v.into(),
            model: "fb:16M".into(),
        })
        .unwrap();
    }
    let m = c
        .create_map(&CreateMap {
            source: "SRC".into(),
            target: "TGT".into(),
            copy_type: "full".into(),
            copy_rate: Some(150),
            ..Default::default()
        })
        .unwrap();
    // Data in every track, so a restore at rate 1 copies for a while.
    let mut src = NbdConn::open(&d.nbd_addr(), "SRC");
    let chunk = vec![0x11u8; 1 << 20];
    for mib in 0..16u64 {
        src.write(mib << 20, &chunk);
    }
    let id = m.id.to_string();
    c.start_map(&id, false).unwrap();
    c.wait_map(&id, None, |_| {}).unwrap();
    for round in 0..ROUNDS {
        let tries = at_once(3, |_| c.restore_map(&id, Some(1)));
        let ok: Vec<_> = tries.iter().filter_map(|t| t.as_ref().ok()).collect();
        assert_eq!(ok.len(), 1, "round {round}: {tries:?}");
        assert!(
            tries.iter().all(|t| status(t) == 200 || status(t) == 409),
            "round {round}: {tries:?}"
        );
        // The reverse map the 200 named is still there, restoring.
        let rev = c.map(&ok[0].id.to_string()).unwrap_or_else(|e| {
            panic!(
                "round {round}: the answered restore's map {} is gone: {e}",
                ok[0].id
            )
        });
        assert!(rev.restoring, "round {round}: {rev:?}");
        assert_eq!(rev.state, "copying", "round {round}: {rev:?}");
        // The next round restores again over a fresh reverse map.
        c.delete_map(&rev.id.to_string(), true).unwrap();
    }
}

#[test]
fn a_volume_create_racing_its_delete_answers_what_it_did() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let c = Client::new(&d.api);
    // QA: 5 of 240 creates answered 404 'unknown volume X' for the volume
    // they had just created, when a delete of it ran at the same time.
    for round in 0..60 {
        let out = at_once(2, |i| {
            if i == 0 {
                c.create_volume(&CreateVolume {
                    id: "RACE".into(),
                    model: "fb:16M".into(),
                })
                .map(|v| v.id)
            } else {
                c.delete_volume("RACE").map(|_| String::new())
            }
        });
        assert_eq!(status(&out[0]), 200, "round {round}: {out:?}");
        assert!(
            matches!(status(&out[1]), 200 | 404),
            "round {round}: {out:?}"
        );
        let _ = c.delete_volume("RACE");
    }
}

#[test]
fn a_refused_chosen_id_uses_up_no_id() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let c = Client::new(&d.api);
    let map = |id: Option<u32>, target: &str| {
        c.create_map(&CreateMap {
            source: "FB00".into(),
            target: target.into(),
            copy_type: "nocopy".into(),
            id,
            ..Default::default()
        })
    };
    // QA: each refusal of an id too far ahead used one up ("the next map
    // id is 1", then 2...), until the skip limit was worn down.
    for _ in 0..3 {
        let e = map(Some(70), "FB01").unwrap_err();
        assert!(e.to_string().contains("the next map id is 0"), "{e}");
    }
    assert_eq!(map(None, "FB01").unwrap().id, 0);
    assert_eq!(map(Some(5), "FB02").unwrap().id, 5);
    let e = map(Some(3), "FB03").unwrap_err();
    assert!(e.to_string().contains("lowest it can give now is 6"), "{e}");
    let group = |id: u32| {
        c.create_group(&CreateGroup {
            id: Some(id),
            maps: vec![0],
            name: None,
        })
    };
    for _ in 0..3 {
        let e = group(90).unwrap_err();
        assert!(e.to_string().contains("the next group id is 0"), "{e}");
    }
    assert_eq!(group(0).unwrap().id, 0);
}
