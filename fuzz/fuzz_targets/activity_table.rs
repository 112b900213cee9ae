//! The activity-table file decoder (strict read, open with salvage) on
//! arbitrary file contents.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    sim::fuzz::activity_table_file(data, dir.path());
});
