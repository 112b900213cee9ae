//! The subsystem config parser (`subsystem.toml`, `boot --config`) on
//! arbitrary text; a config that parses must save and load back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = sim::fuzz::config_toml(data) {
        panic!("{e}");
    }
});
