//! Activity-table fault sites reached through `OpenOptions::faults`: the hook
//! the controller installs on every table it opens forwards `table.append`
//! and `table.sync` to the subsystem's fault point. A failed append is an I/O
//! error naming the site and changes no table; a failed sync refuses further
//! appends (what reached the file is unknown) until an IPL, which reads back
//! a consistent table.

mod common;

use std::sync::Arc;

use activity_table::{ActivityEntry, EntryStatus, NewEntry, PhysSessionId, SessionId};
use common::config;
use controller::testing::VirtualSubsystem;
use controller::ErrorKind;
use geometry::{Extent, ExtentSet};
use volume_store::{FaultEffect, FaultInjector, FaultPoint, FaultSite, Trigger};

fn entry(volume: Option<&str>, status: EntryStatus) -> NewEntry {
    NewEntry {
        session_id: SessionId::new("B1").unwrap(),
        phys_session_id: PhysSessionId::new(1).unwrap(),
        subsystem: "CRASH".into(),
        volume: volume.map(str::to_string),
        extents: ExtentSet::from(Extent::new(0, 3).unwrap()),
        status,
        program: Some("DSS".into()),
        host: None,
        time_unix_ms: 1,
    }
}

fn statuses(entries: &[ActivityEntry]) -> Vec<(u64, EntryStatus)> {
    entries.iter().map(|e| (e.seq, e.status)).collect()
}

#[test]
fn an_injected_append_fault_fails_cleanly_and_writes_nothing() {
    let inj = Arc::new(FaultInjector::new(1).with_rule(
        FaultSite::TableAppend,
        Trigger::Nth(1),
        FaultEffect::Eio,
    ));
    let mut vs =
        VirtualSubsystem::boot_with(config(), 1, Some(inj.clone() as Arc<dyn FaultPoint>)).unwrap();
    let start = [
        entry(None, EntryStatus::Initiated),
        entry(Some("S"), EntryStatus::Initiated),
    ];
    let e = vs.sub().append_activity(&start).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{}", e.full_message());
    let msg = e.full_message();
    assert!(msg.contains("subsystem table"), "{msg}");
    assert!(msg.contains("table.append"), "{msg}");
    assert!(msg.contains("injected"), "{msg}");
    assert!(vs.sub().activity_entries().unwrap().is_empty());
    assert!(vs.sub().volume_activity_entries("S").unwrap().is_empty());
    // The table is not poisoned: nothing reached the file.
    assert_eq!(vs.sub().append_activity(&start).unwrap(), vec![1, 2]);
    assert_eq!(inj.stats(FaultSite::TableAppend).hits, 3);
    assert_eq!(inj.stats(FaultSite::TableAppend).faults, 1);
    assert!(inj.stats(FaultSite::TableSync).hits >= 2);
    vs.ipl().unwrap();
    assert_eq!(
        statuses(&vs.sub().activity_entries().unwrap()),
        vec![(1, EntryStatus::Initiated), (2, EntryStatus::Initiated)]
    );
    assert_eq!(vs.sub().volume_activity_entries("S").unwrap().len(), 1);
}

#[test]
fn an_injected_sync_fault_refuses_appends_until_an_ipl() {
    let inj = Arc::new(FaultInjector::new(1).with_rule(
        FaultSite::TableSync,
        Trigger::Nth(2),
        FaultEffect::Eio,
    ));
    let mut vs =
        VirtualSubsystem::boot_with(config(), 1, Some(inj.clone() as Arc<dyn FaultPoint>)).unwrap();
    vs.sub()
        .append_activity(&[entry(None, EntryStatus::Initiated)])
        .unwrap();
    let done = [entry(None, EntryStatus::Completed)];
    let e = vs.sub().append_activity(&done).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(
        e.full_message().contains("table.sync"),
        "{}",
        e.full_message()
    );
    assert_eq!(vs.sub().activity_entries().unwrap().len(), 1);
    // Poisoned: what reached the file is unknown, so no append until reopened.
    let e = vs.sub().append_activity(&done).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(
        e.full_message().contains("poisoned"),
        "{}",
        e.full_message()
    );
    vs.ipl().unwrap();
    // The record whose sync failed may or may not be there; either way the
    // table is intact and appends work again with fresh sequence numbers.
    let after = vs.sub().activity_entries().unwrap();
    assert!(
        statuses(&after) == vec![(1, EntryStatus::Initiated)]
            || statuses(&after) == vec![(1, EntryStatus::Initiated), (2, EntryStatus::Completed)],
        "{after:?}"
    );
    let seqs = vs.sub().append_activity(&done).unwrap();
    assert_eq!(seqs, vec![after.len() as u64 + 1]);
}
