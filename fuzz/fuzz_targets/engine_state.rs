//! The engine state loader on arbitrary bytes, raw and framed with a valid
//! header and checksum (so the decoder and validation behind the checksum
//! are reached). A state that loads must save and load again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = sim::fuzz::engine_state(data) {
        panic!("{e}");
    }
});
