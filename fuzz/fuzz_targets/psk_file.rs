//! The NBD TLS-PSK key file parser (`boot --tls-psk FILE`) on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = sim::fuzz::psk_file(data) {
        panic!("{e}");
    }
});
