//! A whole NBD connection (handshake, options, transmission, disconnect at
//! any byte) from a structured client script, against an in-memory export.
//! The script form gets the fuzzer past the magics; `Raw` keeps byte-level
//! freedom.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nbd::proto::RequestHeader;
use sim::fuzz::NbdMsg;

#[derive(Debug, Arbitrary)]
enum Msg {
    Raw(Vec<u8>),
    ClientFlags(u32),
    Opt { code: u8, data: Vec<u8> },
    Go { name_is_vol: bool, infos: Vec<u16> },
    Request { flags: u16, kind: u8, cookie: u64, offset: u64, length: u32, payload: Vec<u8> },
}

fuzz_target!(|script: Vec<Msg>| {
    let msgs: Vec<NbdMsg> = script
        .into_iter()
        .take(64)
        .map(|m| match m {
            Msg::Raw(b) => NbdMsg::Raw(b),
            Msg::ClientFlags(f) => NbdMsg::ClientFlags(f),
            Msg::Opt { code, data } => NbdMsg::Opt { code: u32::from(code), data },
            Msg::Go { name_is_vol, infos } => NbdMsg::Opt {
                code: 7,
                data: sim::fuzz::go_data(if name_is_vol { b"vol" } else { b"other" }, &infos),
            },
            Msg::Request { flags, kind, cookie, offset, length, payload } => NbdMsg::Request {
                header: RequestHeader { flags, kind: u16::from(kind), cookie, offset, length },
                payload,
            },
        })
        .collect();
    let bytes = sim::fuzz::encode_nbd(&msgs);
    if let Err(e) = sim::fuzz::nbd_session(&bytes) {
        panic!("{e}");
    }
});
