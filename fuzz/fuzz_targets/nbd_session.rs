//! A whole NBD connection (handshake, options, transmission, disconnect at
//! any byte) from a client script decoded from the input with `arbitrary`,
//! against an in-memory export (`sim::fuzz::nbd_session_script`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = sim::fuzz::nbd_session_script(data) {
        panic!("{e}");
    }
});
