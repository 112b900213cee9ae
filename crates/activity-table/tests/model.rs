//! Property test: random appends, batches, compactions, torn appends and
//! reopens against a `Vec` model. Cases: PROPTEST_CASES (default 64).

mod common;

use activity_table::{
    ActivityEntry, ActivityTable, EntryStatus, NewEntry, PhysSessionId, SessionId, TerminateReason,
};
use common::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Append(NewEntry),
    Batch(Vec<NewEntry>),
    Reopen,
    /// Keep entries whose seq is not a multiple of the value.
    Compact(u64),
    /// Crash during an append: a prefix (this many bytes) of a frame lands.
    TornAppend(NewEntry, usize),
}

fn status() -> impl Strategy<Value = EntryStatus> {
    prop_oneof![
        Just(EntryStatus::Initiated),
        Just(EntryStatus::Completed),
        Just(EntryStatus::Resumed),
        Just(EntryStatus::LogicallyComplete),
        (0usize..TerminateReason::ALL.len()).prop_map(|i| EntryStatus::Terminated {
            reason: TerminateReason::ALL[i]
        }),
    ]
}

fn new_entry() -> impl Strategy<Value = NewEntry> {
    (
        0u32..6,
        1u8..=255,
        prop::option::of(0u32..4),
        prop::collection::vec((0u64..10_000, 0u64..50), 0..5),
        status(),
        prop::option::of("[A-Za-z0-9 .]{0,20}"),
        prop::option::of("[A-Z0-9]{1,8}"),
        any::<u64>(),
    )
        .prop_map(|(s, p, v, ext, status, program, host, t)| NewEntry {
            session_id: SessionId::new(format!("S{s}")).unwrap(),
            phys_session_id: PhysSessionId::new(p).unwrap(),
            subsystem: SUB.into(),
            volume: v.map(|v| format!("VOL{v}")),
            extents: extents(&ext.iter().map(|&(a, l)| (a, a + l)).collect::<Vec<_>>()),
            status,
            program,
            host,
            time_unix_ms: t,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => new_entry().prop_map(Op::Append),
        2 => prop::collection::vec(new_entry(), 0..4).prop_map(Op::Batch),
        2 => Just(Op::Reopen),
        1 => (1u64..4).prop_map(Op::Compact),
        1 => (new_entry(), 1usize..200).prop_map(|(e, n)| Op::TornAppend(e, n)),
    ]
}

fn check(t: &ActivityTable, model: &[ActivityEntry], next: u64) {
    assert_eq!(t.entries(), model);
    assert_eq!(t.next_seq(), next);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn table_matches_vec_model(ops in prop::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let path = file_in(&dir, "t");
        let (mut t, _) = ActivityTable::open(&path, sub_id()).unwrap();
        let mut model: Vec<ActivityEntry> = Vec::new();
        let mut next = 1u64;
        for op in ops {
            match op {
                Op::Append(e) => {
                    prop_assert_eq!(t.append(e.clone()).unwrap(), next);
                    model.push(e.with_seq(next));
                    next += 1;
                }
                Op::Batch(es) => {
                    let seqs = t.append_batch(&es).unwrap();
                    prop_assert_eq!(seqs, (next..next + es.len() as u64).collect::<Vec<_>>());
                    for e in es {
                        model.push(e.with_seq(next));
                        next += 1;
                    }
                }
                Op::Reopen => {
                    drop(t);
                    let (t2, report) = ActivityTable::open(&path, sub_id()).unwrap();
                    prop_assert_eq!(report.truncated_bytes(), 0);
                    t = t2;
                }
                Op::Compact(k) => {
                    t.compact(|e| e.seq % k != 0).unwrap();
                    model.retain(|e| e.seq % k != 0);
                }
                Op::TornAppend(e, n) => {
                    // Append to a copy to get the frame bytes, then put only a
                    // prefix of them on the real file, as a crash would.
                    drop(t);
                    let before = std::fs::read(&path).unwrap();
                    let (mut t2, _) = ActivityTable::open(&path, sub_id()).unwrap();
                    t2.append(e).unwrap();
                    drop(t2);
                    let after = std::fs::read(&path).unwrap();
                    let keep = before.len() + n.min(after.len() - before.len() - 1);
                    std::fs::write(&path, &after[..keep]).unwrap();
                    let (t3, report) = ActivityTable::open(&path, sub_id()).unwrap();
                    prop_assert_eq!(report.truncated_bytes(), (keep - before.len()) as u64);
                    t = t3;
                    // The lost append's seq was never acknowledged; it may be reused.
                }
            }
            check(&t, &model, next);
        }
        drop(t);
        let (t, _) = ActivityTable::open(&path, sub_id()).unwrap();
        check(&t, &model, next);
    }
}
