//! The resource-manager scenario parser and step checks on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sim::fuzz::scenario_toml(data);
});
