//! Replays the committed fuzz corpora (fuzz/corpus/<target>/, minimized with
//! `cargo fuzz cmin`) through the same `sim::fuzz` functions the cargo-fuzz
//! targets call, on the stable toolchain, in every `cargo test --workspace`.
//! A crash the fuzzer found and that was fixed stays fixed: its input is in
//! the corpus (or a regression test of the owning crate).

use std::path::PathBuf;

use sim::fuzz;

/// Every file of one target's corpus, sorted by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| {
            let p = e.expect("corpus entry").path();
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "corpus {} has {} inputs: was it committed?",
        dir.display(),
        files.len()
    );
    files
}

#[test]
fn nbd_request_corpus() {
    for (_, bytes) in corpus("nbd_request") {
        fuzz::nbd_parsers(&bytes);
    }
}

#[test]
fn nbd_session_corpus() {
    for (name, bytes) in corpus("nbd_session") {
        fuzz::nbd_session_script(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn activity_table_corpus() {
    let dir = tempfile::tempdir().unwrap();
    for (_, bytes) in corpus("activity_table") {
        fuzz::activity_table_file(&bytes, dir.path());
    }
}

#[test]
fn engine_state_corpus() {
    for (name, bytes) in corpus("engine_state") {
        fuzz::engine_state(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn config_toml_corpus() {
    for (name, bytes) in corpus("config_toml") {
        fuzz::config_toml(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn scenario_toml_corpus() {
    for (_, bytes) in corpus("scenario_toml") {
        fuzz::scenario_toml(&bytes);
    }
}

#[test]
fn psk_file_corpus() {
    for (name, bytes) in corpus("psk_file") {
        fuzz::psk_file(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
