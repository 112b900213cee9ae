//! The NBD request-header, INFO and meta-context parsers on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sim::fuzz::nbd_parsers(data);
});
