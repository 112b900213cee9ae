//! `FaultyStore` and `FaultInjector`: crash images, injected errors, poison,
//! misdirected writes, latent errors, bit flips, and determinism from the seed.

use std::time::Duration;

use geometry::{Extent, Geometry};
use volume_store::{
    CrashMode, ErrorKind, FaultEffect, FaultInjector, FaultPoint, FaultRule, FaultyStore, MemStore,
    OpFilter, TrackStore, Trigger,
};

const TS: usize = 4096;

fn geo() -> Geometry {
    "fb:64K:4K".parse().expect("valid")
}

fn faulty(seed: u64) -> FaultyStore<MemStore> {
    FaultyStore::new(MemStore::with_id("F0", geo()), seed)
}

fn image(s: &dyn TrackStore) -> Vec<u8> {
    let mut v = vec![0u8; s.geometry().size_bytes() as usize];
    s.read_at(0, &mut v).expect("read image");
    v
}

fn apply(model: &mut [u8], offset: usize, data: &[u8]) {
    model[offset..offset + data.len()].copy_from_slice(data);
}

/// Writes: a flushed base, then three pending writes and a pending discard.
fn scenario(s: &FaultyStore<MemStore>) -> (Vec<u8>, Vec<(usize, Vec<u8>)>) {
    s.write_at(0, &vec![1u8; 3 * TS]).expect("base");
    s.flush().expect("flush");
    let base = image(s);
    let writes = vec![
        (100usize, vec![2u8; 2000]),
        (TS + 700, vec![3u8; 5000]),
        (5 * TS, vec![4u8; TS]),
    ];
    for (off, d) in &writes {
        s.write_at(*off as u64, d).expect("pending write");
    }
    (base, writes)
}

#[test]
fn crash_modes_give_the_durable_image() {
    let s = faulty(1);
    let (base, writes) = scenario(&s);
    s.discard(2 * TS as u64, TS as u64)
        .expect("pending discard");
    assert_eq!(s.pending_count(), 4);
    let current = image(&s);

    assert!(image(&s.crash_image(CrashMode::DropAll).expect("img")) == base);
    assert!(image(&s.crash_image(CrashMode::KeepAll).expect("img")) == current);
    for k in 0..=3 {
        let mut model = base.clone();
        for (off, d) in &writes[..k] {
            apply(&mut model, *off, d);
        }
        assert!(
            image(&s.crash_image(CrashMode::KeepPrefix(k)).expect("img")) == model,
            "prefix {k}"
        );
    }
    // Allocation comes back too: track 5 was never durable.
    let dropped = s.crash_image(CrashMode::DropAll).expect("img");
    assert_eq!(
        dropped.allocated(geo().full_extent()).expect("a"),
        Extent { first: 0, last: 2 }.into()
    );
    // Same seed, same image; the store itself is unchanged by crash_image.
    let a = image(
        &s.crash_image(CrashMode::RandomSubset { seed: 9 })
            .expect("img"),
    );
    let b = image(
        &s.crash_image(CrashMode::RandomSubset { seed: 9 })
            .expect("img"),
    );
    assert!(a == b);
    assert!(image(&s) == current);
}

#[test]
fn torn_writes_land_as_sector_prefixes() {
    let mut torn_seen = false;
    for seed in 0..40 {
        let s = faulty(seed);
        let (base, writes) = scenario(&s);
        let img = image(&s.crash_image(CrashMode::Torn { seed }).expect("img"));
        for (off, d) in &writes {
            // Bytes of this write that landed form a prefix ending on a 512-byte
            // boundary of the volume (or the write's end).
            let landed = (0..d.len()).take_while(|&i| img[off + i] == d[i]).count();
            let end = off + landed;
            assert!(
                landed == 0 || landed == d.len() || end % 512 == 0,
                "seed {seed}: cut at {end}"
            );
            assert!(
                img[end..off + d.len()] == base[end..off + d.len()],
                "seed {seed}: tail not old data"
            );
            torn_seen |= landed != 0 && landed != d.len();
        }
    }
    assert!(torn_seen, "no seed produced a torn write");
}

#[test]
fn crash_in_place_restarts_the_volume() {
    let s = faulty(2);
    let (base, _) = scenario(&s);
    s.crash(CrashMode::DropAll).expect("crash");
    assert_eq!(s.pending_count(), 0);
    assert!(image(&s) == base);
    assert!(image(s.inner()) == base);
}

#[test]
fn injected_eio_and_enospc_fail_the_call_and_write_nothing() {
    let s = faulty(3);
    s.add_rule(FaultRule::new(
        OpFilter::Write,
        Trigger::Nth(2),
        FaultEffect::Eio,
    ));
    s.add_rule(FaultRule::new(
        OpFilter::Discard,
        Trigger::Always,
        FaultEffect::Enospc,
    ));
    s.add_rule(
        FaultRule::new(OpFilter::Read, Trigger::Always, FaultEffect::Eio)
            .on_tracks(Extent::single(9)),
    );
    s.write_at(0, b"one").expect("first write");
    let e = s
        .write_at(TS as u64, b"two")
        .expect_err("second write fails");
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.is_injected() && e.to_string().contains("injected"), "{e}");
    s.write_at(2 * TS as u64, b"three").expect("third write");
    assert_eq!(
        s.discard(0, 10).expect_err("discard").kind(),
        ErrorKind::NoSpace
    );
    assert_eq!(
        s.read_at(9 * TS as u64, &mut [0u8; 4])
            .expect_err("track 9")
            .kind(),
        ErrorKind::Io
    );
    s.read_at(8 * TS as u64, &mut [0u8; 4])
        .expect("track 8 reads");
    let mut back = [0u8; 3];
    s.read_at(TS as u64, &mut back).expect("read");
    assert_eq!(back, [0, 0, 0], "failed write wrote nothing");
    assert_eq!(s.injected_counts().get("write.eio"), Some(&1));
    s.set_faults_enabled(false);
    s.discard(0, 10).expect("faults off");
}

#[test]
fn failed_flush_poisons_until_reopen() {
    let s = faulty(4);
    s.add_rule(FaultRule::fail_flush(Trigger::Nth(1)));
    s.write_at(0, b"data").expect("write");
    assert_eq!(s.flush().expect_err("flush").kind(), ErrorKind::Io);
    assert!(s.is_poisoned());
    assert_eq!(
        s.write_at(0, b"more").expect_err("write").kind(),
        ErrorKind::Poisoned
    );
    assert_eq!(
        s.discard(0, 1).expect_err("discard").kind(),
        ErrorKind::Poisoned
    );
    assert_eq!(s.flush().expect_err("flush").kind(), ErrorKind::Poisoned);
    // Unflushed data is still pending: a crash now may lose it.
    assert_eq!(s.pending_count(), 1);
    s.reopen();
    s.flush().expect("second flush succeeds after reopen");
    assert_eq!(s.pending_count(), 0);
}

#[test]
fn misdirected_write_lands_on_another_track() {
    let s = faulty(5);
    s.write_at(0, &vec![1u8; 16 * TS]).expect("fill");
    s.flush().expect("flush");
    s.add_rule(FaultRule::new(
        OpFilter::Write,
        Trigger::Nth(1),
        FaultEffect::Misdirect,
    ));
    s.write_at(3 * TS as u64 + 10, &[9u8; 100])
        .expect("reported as success");
    let img = image(&s);
    assert!(
        img[3 * TS..4 * TS].iter().all(|&b| b == 1),
        "intended track keeps old data"
    );
    let hit: Vec<usize> = (0..16)
        .filter(|t| img[t * TS + 10..t * TS + 110].iter().all(|&b| b == 9))
        .collect();
    assert_eq!(hit.len(), 1, "exactly one other track got the data");
    assert_ne!(hit[0], 3);
    // The crash model knows where it landed.
    assert!(image(&s.crash_image(CrashMode::DropAll).expect("img"))
        .iter()
        .all(|&b| b == 1));
}

#[test]
fn latent_errors_and_bit_flips() {
    let s = faulty(6);
    s.write_at(0, &vec![0u8; 2 * TS]).expect("fill");
    s.add_latent_error(1);
    assert_eq!(
        s.read_at(TS as u64 + 5, &mut [0u8; 1])
            .expect_err("latent")
            .kind(),
        ErrorKind::Io
    );
    s.read_at(0, &mut [0u8; TS]).expect("track 0 fine");
    s.write_track(1, &[0u8; TS]).expect("rewrite");
    s.read_at(TS as u64, &mut [0u8; TS])
        .expect("rewrite clears the latent error");

    s.add_rule(FaultRule::new(
        OpFilter::Write,
        Trigger::Nth(2),
        FaultEffect::BitFlip,
    ));
    s.write_track(0, &[0u8; TS]).expect("clean write");
    s.write_track(0, &[0u8; TS]).expect("flipped write");
    let img = image(&s);
    let ones: u32 = img[..TS].iter().map(|b| b.count_ones()).sum();
    assert_eq!(ones, 1, "exactly one bit flipped");

    s.clear_rules();
    s.add_rule(FaultRule::new(
        OpFilter::Any,
        Trigger::Always,
        FaultEffect::Latency(Duration::from_micros(50)),
    ));
    s.write_at(0, b"slow").expect("latency only delays");
}

#[test]
fn probability_rules_are_deterministic_from_the_seed() {
    let pattern = |seed| {
        let s = faulty(seed);
        s.add_rule(FaultRule::new(
            OpFilter::Write,
            Trigger::Probability(0.3),
            FaultEffect::Eio,
        ));
        (0..64)
            .map(|i| s.write_at(i * 100, b"x").is_err())
            .collect::<Vec<_>>()
    };
    assert_eq!(pattern(11), pattern(11));
    assert_ne!(pattern(11), pattern(12));
    let fails = pattern(11).iter().filter(|&&f| f).count();
    assert!((5..40).contains(&fails), "{fails} of 64 failed at p = 0.3");
}

#[test]
fn fault_injector_fails_sites_and_counts_hits() {
    use volume_store::FaultSite::{BitmapCommit, CowCopyWrite, RootWrite, TableAppend};
    let inj = FaultInjector::new(42)
        .with_rule(BitmapCommit, Trigger::Nth(2), FaultEffect::Eio)
        .with_rule(TableAppend, Trigger::Always, FaultEffect::Enospc);
    assert!(inj.check(BitmapCommit).is_ok());
    let e = inj.check(BitmapCommit).expect_err("second commit fails");
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.to_string().contains("bitmap.commit"), "{e}");
    assert!(inj.check(BitmapCommit).is_ok());
    assert_eq!(
        inj.check(TableAppend).expect_err("always").kind(),
        ErrorKind::NoSpace
    );
    assert!(inj.check(CowCopyWrite).is_ok());
    assert_eq!(inj.stats(BitmapCommit).hits, 3);
    assert_eq!(inj.stats(BitmapCommit).faults, 1);
    assert_eq!(inj.stats(RootWrite), volume_store::SiteStats::default());
    let names: Vec<String> = inj.all_stats().keys().map(|s| s.to_string()).collect();
    assert_eq!(names, ["cow.copy.write", "bitmap.commit", "table.append"]);
    inj.set_enabled(false);
    assert!(inj.check(TableAppend).is_ok());
    assert_eq!(inj.stats(TableAppend).hits, 2);
    let any = FaultInjector::new(1).with_rule_all(Trigger::After(1), FaultEffect::Eio);
    assert!(any.check(RootWrite).is_ok());
    assert!(any.check(TableAppend).is_err());
    for site in volume_store::FaultSite::ALL {
        assert!(volume_store::NoFaults.check(*site).is_ok());
    }
}

mod crash_prefix_model {
    //! Random writes, discards and flushes; after each sequence the crash image
    //! keeping the first k pending entries equals a model that replays everything
    //! up to the last successful flush plus those k entries.

    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        Write { offset: usize, len: usize, byte: u8 },
        Discard { offset: usize, len: usize },
        Flush,
    }

    fn step() -> impl Strategy<Value = Step> {
        let size = 16 * TS;
        let range = (0..size).prop_flat_map(move |o| (Just(o), 1..=(size - o).min(2 * TS)));
        prop_oneof![
            4 => (range.clone(), 1u8..=255).prop_map(|((offset, len), byte)| Step::Write { offset, len, byte }),
            1 => range.prop_map(|(offset, len)| Step::Discard { offset, len }),
            1 => Just(Step::Flush),
        ]
    }

    fn apply_step(model: &mut [u8], s: &Step) {
        match *s {
            Step::Write { offset, len, byte } => model[offset..offset + len].fill(byte),
            Step::Discard { offset, len } => model[offset..offset + len].fill(0),
            Step::Flush => {}
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn keep_prefix_matches_model(steps in prop::collection::vec(step(), 1..20)) {
            let s = faulty(0);
            let mut durable = vec![0u8; 16 * TS];
            let mut pending: Vec<Step> = Vec::new();
            for st in &steps {
                match st {
                    Step::Write { offset, len, byte } => s.write_at(*offset as u64, &vec![*byte; *len]).expect("write"),
                    Step::Discard { offset, len } => s.discard(*offset as u64, *len as u64).expect("discard"),
                    Step::Flush => s.flush().expect("flush"),
                }
                if let Step::Flush = st {
                    for p in pending.drain(..) {
                        apply_step(&mut durable, &p);
                    }
                } else {
                    pending.push(st.clone());
                }
            }
            prop_assert_eq!(s.pending_count(), pending.len());
            for k in 0..=pending.len() {
                let mut model = durable.clone();
                for p in &pending[..k] {
                    apply_step(&mut model, p);
                }
                let img = image(&s.crash_image(CrashMode::KeepPrefix(k)).expect("image"));
                prop_assert!(img == model, "prefix {} of {}", k, pending.len());
            }
        }
    }
}
