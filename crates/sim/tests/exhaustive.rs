//! Bounded-exhaustive sequences (length <= 2; `SIM_EXHAUSTIVE_LEN=3` for
//! length 3; `SIM_SEQUENCE=n` reruns one numbered sequence), on the engine
//! alone and on the real controller.

use sim::engine_world::EngineWorld;
use sim::exhaustive::{exhaustive, exhaustive_with, sequences, TINY};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn len() -> usize {
    env_u64("SIM_EXHAUSTIVE_LEN").unwrap_or(2) as usize
}

#[test]
fn engine_every_short_sequence_keeps_every_invariant() {
    let summary = exhaustive_with(len(), env_u64("SIM_SEQUENCE"), &TINY, || {
        EngineWorld::new(TINY)
    });
    assert!(summary.passed(), "{summary}");
    if env_u64("SIM_SEQUENCE").is_none() {
        assert_eq!(summary.seeds_run, 2 * sequences(len()).len() as u64);
    }
}

#[test]
fn controller_every_short_sequence_keeps_every_invariant() {
    let summary = exhaustive(len(), env_u64("SIM_SEQUENCE")).unwrap();
    println!("{summary}");
    assert!(summary.passed(), "{summary}");
    if env_u64("SIM_SEQUENCE").is_none() {
        assert_eq!(summary.seeds_run, 2 * sequences(len()).len() as u64);
        let s = &summary.stats;
        assert!(
            s.ipls > 0 && s.resets_lose_volatile > 0 && s.writes_acked > 0,
            "{summary}"
        );
    }
}
