//! `firmware-sim bench copy|cow` as a user runs them: small volumes in a
//! scratch dir, JSON output with the figures the tables print, the scratch
//! data dir removed afterwards, and bad arguments refused with a clear line.
//! (Speed itself is measured by running the commands, never asserted here.)

mod common;

use common::{assert_fails_with, assert_success, run, BIN};
use serde_json::Value;

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).expect("bench --json prints one JSON object")
}

fn no_scratch_left(dir: &std::path::Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "scratch data dirs left behind: {left:?}");
}

#[test]
fn bench_copy_copies_the_written_share_and_reports_it_beside_cp() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_str().expect("utf-8 path");
    let out = run(
        BIN,
        &[
            "bench",
            "copy",
            "--model",
            "fb:4M",
            "--written",
            "25%",
            "--dir",
            dir,
            "--json",
        ],
    );
    assert_success(&out, "bench copy");
    let r = json_of(&out);
    assert_eq!(r["tracks"], 64, "fb:4M has 64 tracks of 64 KiB");
    assert_eq!(r["tracks_written"], 16, "25% of 64 tracks");
    assert_eq!(r["data_bytes"], 16 * 65536);
    assert!(r["copy_mib_per_s"].as_f64().expect("number") > 0.0);
    assert!(r["cp_mib_per_s"].as_f64().expect("number") > 0.0);
    assert!(r["load"]["cpus"].as_u64().expect("cpus") >= 1);
    no_scratch_left(tmp.path());
}

/// Runs `bench cow` on a small volume with `extra` arguments; its JSON report.
fn bench_cow(dir: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let d = dir.to_str().expect("utf-8 path");
    let mut args = vec![
        "bench", "cow", "--model", "fb:4M", "--writes", "40", "--rounds", "1", "--dir", d, "--json",
    ];
    args.extend_from_slice(extra);
    let out = run(BIN, &args);
    assert_success(&out, "bench cow");
    json_of(&out)
}

#[test]
fn bench_cow_copies_grains_for_the_snapshot_and_none_for_plain_writes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // `--threads` is the old name of `--qd`; a batch larger than the queue
    // depth is cut to it.
    let one_by_one = bench_cow(tmp.path(), &["--threads", "4", "--batch", "1"]);
    assert_eq!(one_by_one["writes"], 40);
    assert_eq!(
        (
            &one_by_one["qd"],
            &one_by_one["batch"],
            &one_by_one["threads"]
        ),
        (&4.into(), &1.into(), &4.into())
    );
    let copied = one_by_one["grains_copied_per_round"]
        .as_u64()
        .expect("copies");
    // 40 random 4 KiB writes over 64 grains: at least one grain is new, and
    // no grain is copied twice.
    assert!((1..=40).contains(&copied), "{copied} grains copied");
    assert!(one_by_one["snapshot_iops"].as_f64().expect("n") > 0.0);
    assert!(one_by_one["plain_iops"].as_f64().expect("n") > 0.0);
    // The same offsets in batches copy the same grains, each once.
    let batched = bench_cow(tmp.path(), &["--qd", "16", "--batch", "8"]);
    assert_eq!(
        (&batched["qd"], &batched["batch"], &batched["threads"]),
        (&16.into(), &8.into(), &2.into())
    );
    assert_eq!(batched["grains_copied_per_round"], copied);
    let capped = bench_cow(tmp.path(), &["--qd", "4", "--batch", "8"]);
    assert_eq!(
        (&capped["batch"], &capped["threads"]),
        (&4.into(), &1.into())
    );
    no_scratch_left(tmp.path());
}

#[test]
fn bench_refuses_a_bad_share_and_a_bad_model() {
    let out = run(BIN, &["bench", "copy", "--written", "150%"]);
    assert_fails_with(&out, 2, "0% to 100%", "bench copy --written 150%");
    let out = run(BIN, &["bench", "cow", "--model", "fb:3K"]);
    assert_fails_with(&out, 2, "fb:3K", "bench cow --model fb:3K");
}

#[test]
fn a_missing_dir_or_a_count_of_zero_is_a_usage_error() {
    // QA: --dir /nonexistent was created (and measured the root disk), and
    // --qd 0, --writes 0, --rounds 0 were quietly changed.
    let missing = "/nonexistent-fsim-bench-dir/x";
    let out = run(BIN, &["bench", "copy", "--dir", missing]);
    assert_fails_with(&out, 2, "not an existing directory", "bench copy --dir");
    assert!(!std::path::Path::new("/nonexistent-fsim-bench-dir").exists());
    for args in [
        &["bench", "cow", "--qd", "0"][..],
        &["bench", "cow", "--writes", "0"],
        &["bench", "cow", "--rounds", "0"],
        &["bench", "nbd", "--qd", "0"],
    ] {
        let out = run(BIN, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}
