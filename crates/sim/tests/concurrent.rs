//! The concurrent tier (`sim::concurrent`): writers, a reader of the
//! point-in-time targets and the copier on real threads, then a power loss
//! and IPL. `SIM_CONC_ROUNDS=N` repeats it N times (default 3).

#[test]
fn racing_writers_reader_and_copier_keep_every_write_and_image() {
    let rounds: usize = std::env::var("SIM_CONC_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for round in 0..rounds {
        let r = sim::concurrent::run(8, 150).unwrap_or_else(|e| panic!("round {round}: {e}"));
        println!("round {round}: {r:?}");
        assert_eq!(r.writes_acked, 8 * 150);
        assert!(r.racing_reads > 0, "{r:?}");
        assert!(
            r.group_commit_items > r.group_commits,
            "group commit never batched more than one item: {r:?}"
        );
    }
}
