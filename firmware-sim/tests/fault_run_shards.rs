//! A fault-run campaign split over processes: `fault-run --shard K/N` in
//! parallel, then `fault-run merge`, gives the figures of one process running
//! every seed (docs/RELIABILITY.md, "Campaigns across processes and
//! machines"); bad shards and sets of summaries that are not one whole
//! campaign are refused with one line naming the shard or file.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{assert_fails_with, assert_success, run, BIN};
use serde_json::Value;

/// Exit status of a usage error (CliError::Usage, clap).
const EXIT_USAGE: i32 = 2;
/// Exit status when a seed failed.
const EXIT_EXPECTATION: i32 = 4;
/// Exit status when a file cannot be read.
const EXIT_FAILED: i32 = 1;

/// Seeds of the campaign the parallel test runs (about 0.1 s each in debug).
const RUNS: &str = "30";
const SEED: &str = "21";

/// Exit 0 or 4 (a seed failing is the simulator's business here), and the
/// JSON on stdout.
fn summary(out: &Output, what: &str) -> Value {
    assert!(
        matches!(out.status.code(), Some(0 | EXIT_EXPECTATION)),
        "{what}: {out:?}"
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON: {e}\n{out:?}"))
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&common::read_file(p))
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()))
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Runs `fault-run --seed seed --runs runs --shard k/n --out DIR/shard-k.json`.
fn shard_file(dir: &Path, seed: &str, runs: &str, shard: &str, name: &str) -> String {
    let file = dir.join(name);
    let out = run(
        BIN,
        &[
            "fault-run",
            "--seed",
            seed,
            "--runs",
            runs,
            "--shard",
            shard,
            "--out",
            path_str(&file),
        ],
    );
    assert!(
        matches!(out.status.code(), Some(0 | EXIT_EXPECTATION)),
        "{out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("seeds run / failed"),
        "--out still prints the human summary: {out:?}"
    );
    path_str(&file).to_string()
}

#[test]
fn parallel_shards_merge_to_the_figures_of_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let files: Vec<_> = (1..=3)
        .map(|k| tmp.path().join(format!("shard-{}.json", k - 1)))
        .collect();
    let children: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            Command::new(BIN)
                .args(["fault-run", "--seed", SEED, "--runs", RUNS])
                .args(["--shard", &format!("{}/3", i + 1), "--json"])
                .args(["--out", path_str(file)])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a shard")
        })
        .collect();
    let whole_out = run(
        BIN,
        &["fault-run", "--seed", SEED, "--runs", RUNS, "--json"],
    );
    let mut per_shard = 0;
    for (child, file) in children.into_iter().zip(&files) {
        let out = child.wait_with_output().expect("wait for a shard");
        let printed = summary(&out, "a shard");
        assert_eq!(printed, read_json(file), "--out writes what --json prints");
        per_shard += printed["seeds_run"].as_u64().unwrap();
        assert_eq!(printed["seeds_run"], 10, "{printed}");
        assert!(printed.get("merged").is_none(), "{printed}");
    }
    assert_eq!(per_shard, 30);
    let whole = summary(&whole_out, "one process");

    // In another order than the shards, as a glob over a directory may list them.
    let merged_file = tmp.path().join("merged.json");
    let out = run(
        BIN,
        &[
            "fault-run",
            "merge",
            path_str(&files[2]),
            path_str(&files[0]),
            path_str(&files[1]),
            "--json",
            "--out",
            path_str(&merged_file),
        ],
    );
    assert_eq!(
        out.status.code(),
        whole_out.status.code(),
        "merge exits as one process does: {out:?}"
    );
    let merged = summary(&out, "merge");
    assert_eq!(merged, read_json(&merged_file));
    for field in [
        "config",
        "seeds_run",
        "seeds_failed",
        "failure_signatures",
        // Every counter: steps, checks per invariant, faults per site, IPLs...
        "stats",
    ] {
        assert_eq!(merged[field], whole[field], "{field} differs");
    }
    let seeds = |v: &Value| -> Vec<Value> {
        v["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["seed"].clone())
            .collect()
    };
    assert_eq!(seeds(&merged), seeds(&whole), "the same failed seeds");
    assert_eq!(merged["seeds_run"], 30);
    assert!(merged["stats"]["steps"].as_u64().unwrap() > 0);
    assert_eq!(merged["merged"]["shards"], 3);
    assert_eq!(
        merged["determinism"]["mismatched_seeds"],
        serde_json::json!([])
    );

    let out = run(
        BIN,
        &[
            "fault-run",
            "merge",
            path_str(&files[0]),
            path_str(&files[1]),
            path_str(&files[2]),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("merged from 3 shard summaries"), "{text}");
    assert!(
        text.contains(&format!(
            "seeds run / failed      30 / {}",
            whole["seeds_failed"]
        )),
        "{text}"
    );
    assert!(text.contains("--seed 21 --runs 30 --shard 1/1"), "{text}");

    // A failed seed in any shard fails the merge, naming it and how to reproduce it.
    let mut doctored = read_json(&files[1]);
    let seeds_failed = doctored["seeds_failed"].as_u64().unwrap();
    doctored["seeds_failed"] = (seeds_failed + 1).into();
    doctored["failures"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "seed": 22,
            "violation": {
                "invariant": "PIT-1", "volume": "FB01", "track": 3, "seed": 22,
                "step": 9, "kind": "fault_run", "detail": "sector 24 expected #5 found #2"
            },
            "trace_tail": ["step 9 write FB01 track 3"]
        }));
    let bad = tmp.path().join("shard-1-failed.json");
    std::fs::write(&bad, doctored.to_string()).unwrap();
    let out = run(
        BIN,
        &[
            "fault-run",
            "merge",
            path_str(&files[0]),
            path_str(&bad),
            path_str(&files[2]),
        ],
    );
    assert_fails_with(
        &out,
        EXIT_EXPECTATION,
        "reproduce: firmware-sim fault-run --seed 22 --runs 1",
        "merge of a shard with a failed seed",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FAIL seed 22"),
        "{out:?}"
    );
}

#[test]
fn bad_shards_are_usage_errors() {
    for shard in ["0/3", "4/3", "3", "a/b", "1/0", "", "2/3/4"] {
        let out = run(
            BIN,
            &["fault-run", "--seed", "1", "--runs", "3", "--shard", shard],
        );
        assert_fails_with(&out, EXIT_USAGE, "bad shard", &format!("--shard {shard:?}"));
        assert!(out.stdout.is_empty(), "nothing run for {shard:?}: {out:?}");
    }
    let out = run(BIN, &["fault-run", "--runs", "3", "--shard", "1/2"]);
    assert_fails_with(&out, EXIT_USAGE, "needs --seed", "--shard without --seed");
    let out = run(BIN, &["fault-run", "merge"]);
    assert_eq!(
        out.status.code(),
        Some(EXIT_USAGE),
        "merge of nothing: {out:?}"
    );
}

#[test]
fn merge_refuses_what_is_not_one_whole_campaign() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let s1 = shard_file(dir, "5", "4", "1/2", "s1.json");
    let s2 = shard_file(dir, "5", "4", "2/2", "s2.json");
    let other_seed = shard_file(dir, "6", "4", "2/2", "other-seed.json");
    let other_runs = shard_file(dir, "5", "6", "2/2", "other-runs.json");
    let other_count = shard_file(dir, "5", "4", "2/3", "other-count.json");
    let three_1 = shard_file(dir, "5", "4", "1/3", "t1.json");
    let three_3 = shard_file(dir, "5", "4", "3/3", "t3.json");

    let out = run(BIN, &["fault-run", "merge", &s1, &s2]);
    assert!(
        matches!(out.status.code(), Some(0 | EXIT_EXPECTATION)),
        "{out:?}"
    );

    let cases: &[(&[&str], &str)] = &[
        (&[&s1], "shard 2/2 missing"),
        (&[&three_3, &three_1], "shard 2/3 missing"),
        (&[&s1, &s2, &s1], "shard 1/2 given twice"),
        (&[&s1, &other_seed], "--seed 6, not 5"),
        (&[&s1, &other_runs], "--runs 6, not 4"),
        (&[&s1, &other_count], "3 shards (--shard 2/3), not 2"),
    ];
    for (files, needle) in cases {
        let mut args = vec!["fault-run", "merge"];
        args.extend_from_slice(files);
        let out = run(BIN, &args);
        assert_fails_with(&out, EXIT_USAGE, needle, &format!("merge {files:?}"));
        assert!(out.stdout.is_empty(), "no summary printed: {out:?}");
    }
    // The duplicate and the mixed campaign are named by file.
    let out = run(BIN, &["fault-run", "merge", &s1, &s2, &s1]);
    assert_fails_with(&out, EXIT_USAGE, &format!("{s1} and {s1}"), "duplicate");
    let out = run(BIN, &["fault-run", "merge", &s1, &other_seed]);
    assert_fails_with(&out, EXIT_USAGE, &other_seed, "mixed campaigns");

    let not_json = dir.join("notes.txt");
    std::fs::write(&not_json, "fault-run --seed 5\n").unwrap();
    let out = run(BIN, &["fault-run", "merge", &s1, path_str(&not_json)]);
    assert_fails_with(
        &out,
        EXIT_USAGE,
        "not a `fault-run --json` summary",
        "a file that is not a summary",
    );
    let missing = dir.join("absent.json");
    let out = run(BIN, &["fault-run", "merge", &s1, path_str(&missing)]);
    assert_fails_with(
        &out,
        EXIT_FAILED,
        "absent.json",
        "a file that does not exist",
    );

    let out = run(BIN, &["fault-run", "merge", &s2, &s1, "--json"]);
    let merged = summary(&out, "merge of the two shards");
    assert_eq!(merged["seeds_run"], 4);
    assert_success(
        &run(BIN, &["fault-run", "merge", "--help"]),
        "fault-run merge --help",
    );
}

#[test]
fn an_out_file_that_cannot_be_written_is_refused_before_any_seed_runs() {
    // QA: all seeds ran, then the summary was lost to a typo in --out.
    let out = run(
        BIN,
        &[
            "fault-run",
            "--seed",
            "1",
            "--runs",
            "100000",
            "--out",
            "/nonexistent/dir/x.json",
        ],
    );
    assert_fails_with(
        &out,
        1,
        "--out /nonexistent/dir/x.json: cannot write it",
        "fault-run",
    );
    let out = run(
        BIN,
        &[
            "fault-run",
            "merge",
            "a.json",
            "--out",
            "/nonexistent/dir/x.json",
        ],
    );
    assert_fails_with(&out, 1, "cannot write it", "fault-run merge");
}
