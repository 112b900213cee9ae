//! Bounded-exhaustive sequences (length <= 2; `SIM_EXHAUSTIVE_LEN=3` for
//! length 3; `SIM_SEQUENCE=n` reruns one numbered sequence).

use sim::engine_world::EngineWorld;
use sim::exhaustive::{exhaustive_with, sequences, TINY};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn engine_every_short_sequence_keeps_every_invariant() {
    let len = env_u64("SIM_EXHAUSTIVE_LEN").unwrap_or(2) as usize;
    let summary = exhaustive_with(len, env_u64("SIM_SEQUENCE"), &TINY, || {
        EngineWorld::new(TINY)
    });
    assert!(summary.passed(), "{summary}");
    if env_u64("SIM_SEQUENCE").is_none() {
        assert_eq!(summary.seeds_run, 2 * sequences(len).len() as u64);
    }
}
