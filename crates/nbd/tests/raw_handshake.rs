//! Hand-written raw-socket tests of the handshake and option haggling:
//! what a hostile or unusual client gets, and that the server stays usable.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use common::raw::{be32, info_payload, meta_payload, Raw};
use common::TestServer;
use nbd::proto::{cmd, opt, rep, tflag};
use nbd::testing::MemExport;
use nbd::{Export, ServerConfig};

const MIB: u64 = 1 << 20;

fn two_exports() -> TestServer {
    let a: Arc<dyn Export> = Arc::new(MemExport::new(4 * MIB).description("first"));
    let b: Arc<dyn Export> = Arc::new(MemExport::new(8 * MIB));
    TestServer::start(vec![("disk", a), ("other", b)])
}

/// The server still completes a full negotiation on a fresh connection.
fn still_serves(srv: &TestServer) {
    let (mut c, info) = Raw::open(&srv.socket, "disk");
    assert_eq!(info.size, 4 * MIB);
    assert_eq!(c.read(1, 0, 512).unwrap(), vec![0u8; 512]);
}

#[test]
fn greeting_is_fixed_newstyle_with_no_zeroes() {
    let srv = two_exports();
    let mut c = Raw::connect(&srv.socket);
    assert_eq!(c.greeting(), 0x3);
}

#[test]
fn unknown_client_flag_bits_close_the_connection() {
    let srv = two_exports();
    let mut c = Raw::connect(&srv.socket);
    c.greeting();
    c.send(&0x7u32.to_be_bytes());
    assert!(c.closed());
    still_serves(&srv);
}

#[test]
fn garbage_during_handshake_closes_and_server_survives() {
    let srv = two_exports();
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0xffu8; 64][..],
        &[0u8; 3][..],
    ] {
        let mut c = Raw::connect(&srv.socket);
        c.greeting();
        c.send(garbage);
        let _ = c.s.shutdown(std::net::Shutdown::Write);
        assert!(
            c.closed(),
            "garbage {garbage:?} did not close the connection"
        );
    }
    still_serves(&srv);
}

#[test]
fn bad_option_magic_closes() {
    let srv = two_exports();
    let mut c = Raw::start(&srv.socket);
    let mut b = 0x1122334455667788u64.to_be_bytes().to_vec();
    b.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 0]);
    c.send(&b);
    assert!(c.closed());
    still_serves(&srv);
}

#[test]
fn unknown_options_get_err_unsup_and_negotiation_continues() {
    let srv = two_exports();
    let mut c = Raw::start(&srv.socket);
    for o in [opt::EXTENDED_HEADERS, 99, 0xdead_beef] {
        let r = c.ask(o, b"some payload");
        assert_eq!(r, vec![(rep::ERR_UNSUP, r[0].1.clone())]);
    }
    // STARTTLS: no TLS here, and never ERR_TLS_REQD.
    assert_eq!(c.ask(opt::STARTTLS, &[])[0].0, rep::ERR_UNSUP);
    let info = c.go("disk");
    assert_eq!(info.size, 4 * MIB);
}

#[test]
fn huge_option_length_closes_without_hanging() {
    let srv = two_exports();
    let mut c = Raw::start(&srv.socket);
    let mut b = nbd::proto::IHAVEOPT.to_be_bytes().to_vec();
    b.extend_from_slice(&opt::GO.to_be_bytes());
    b.extend_from_slice(&0xffff_fff0u32.to_be_bytes());
    c.send(&b);
    assert!(c.closed());
    still_serves(&srv);
}

#[test]
fn oversize_option_is_discarded_with_err_too_big() {
    let srv = two_exports();
    let mut c = Raw::start(&srv.socket);
    let r = c.ask(opt::LIST, &vec![7u8; 200 * 1024]);
    assert_eq!(r[0].0, rep::ERR_TOO_BIG);
    // The stream is still in sync.
    let r = c.ask(opt::LIST, &[]);
    assert_eq!(r.last().unwrap().0, rep::ACK);
}

#[test]
fn list_shows_every_export_with_description() {
    let srv = two_exports();
    let mut c = Raw::start(&srv.socket);
    let r = c.ask(opt::LIST, &[]);
    assert_eq!(r.len(), 3);
    let entries: Vec<(String, String)> = r[..2]
        .iter()
        .map(|(t, d)| {
            assert_eq!(*t, rep::SERVER);
            let n = be32(d) as usize;
            (
                String::from_utf8(d[4..4 + n].to_vec()).unwrap(),
                String::from_utf8(d[4 + n..].to_vec()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        vec![("disk".into(), "first".into()), ("other".into(), "".into())]
    );
    assert_eq!(r[2].0, rep::ACK);
    assert_eq!(c.ask(opt::LIST, b"xx")[0].0, rep::ERR_INVALID);
}

#[test]
fn info_answers_unknown_default_and_name() {
    let srv = two_exports();
    let mut c = Raw::start(&srv.socket);
    assert_eq!(
        c.ask(opt::INFO, &info_payload("nope", &[]))[0].0,
        rep::ERR_UNKNOWN
    );
    // "" is the default export; NAME gives its canonical name.
    let r = c.ask(opt::INFO, &info_payload("", &[nbd::proto::info::NAME]));
    assert_eq!(r.last().unwrap().0, rep::ACK);
    let name = r
        .iter()
        .find(|(t, d)| *t == rep::INFO && d[..2] == [0, 1])
        .unwrap();
    assert_eq!(&name.1[2..], b"disk");
    let g = common::raw::parse_info(&r);
    assert_eq!(g.size, 4 * MIB);
    assert_eq!(g.block_size, Some((512, 4096, 32 << 20)));
    // Malformed payload: name length past the end.
    let mut bad = 100u32.to_be_bytes().to_vec();
    bad.extend_from_slice(b"disk");
    assert_eq!(c.ask(opt::INFO, &bad)[0].0, rep::ERR_INVALID);
    // INFO then GO with the same parameters answer the same.
    let i = c.ask(opt::INFO, &info_payload("other", &[3]));
    let g = c.ask(opt::GO, &info_payload("other", &[3]));
    assert_eq!(i, g);
}

/// A registry whose exports are unavailable (a fenced subsystem) answers
/// INFO and GO with ERR_SHUTDOWN and its reason, not "unknown export"; an
/// unknown name while available is still ERR_UNKNOWN.
#[test]
fn unavailable_exports_are_refused_with_the_reason() {
    let srv = two_exports();
    srv.registry
        .set_unavailable(Some("subsystem SS01 is fenced"));
    let mut c = Raw::start(&srv.socket);
    for option in [opt::INFO, opt::GO] {
        let r = c.ask(option, &info_payload("disk", &[]));
        assert_eq!(r[0].0, rep::ERR_SHUTDOWN);
        assert_eq!(r[0].1, b"subsystem SS01 is fenced");
    }
    srv.registry.set_unavailable(None);
    assert_eq!(
        c.ask(opt::INFO, &info_payload("nope", &[]))[0].0,
        rep::ERR_UNKNOWN
    );
    still_serves(&srv);
}

#[test]
fn export_name_replies_with_and_without_zero_padding() {
    let srv = two_exports();
    for (flags, len) in [(3u32, 10usize), (1, 134)] {
        let mut c = Raw::connect(&srv.socket);
        c.greeting();
        c.send(&flags.to_be_bytes());
        c.send_opt(opt::EXPORT_NAME, b"other");
        let r = c.read_n(len);
        assert_eq!(common::raw::be64(&r), 8 * MIB);
        let tflags = u16::from_be_bytes([r[8], r[9]]);
        assert_ne!(tflags & tflag::HAS_FLAGS, 0);
        assert_eq!(tflags & tflag::SEND_DF, 0, "DF needs structured replies");
        assert!(r[10..].iter().all(|&b| b == 0));
        // Transmission works: simple replies.
        c.request(0, cmd::READ, 9, 0, 512, &[]);
        let rep = c.reply();
        assert_eq!(rep.errno(), 0);
        assert_eq!(c.read_n(512), vec![0u8; 512]);
    }
    let mut c = Raw::start(&srv.socket);
    c.send_opt(opt::EXPORT_NAME, b"nope");
    assert!(c.closed(), "unknown EXPORT_NAME must close");
}

#[test]
fn abort_acks_then_closes() {
    let srv = two_exports();
    let mut c = Raw::start(&srv.socket);
    assert_eq!(c.ask(opt::ABORT, &[])[0].0, rep::ACK);
    assert!(c.closed());
    // A client that aborts and leaves at once does not disturb the server.
    let mut c = Raw::start(&srv.socket);
    c.send_opt(opt::ABORT, &[]);
    drop(c);
    still_serves(&srv);
}

#[test]
fn meta_context_rules() {
    let srv = two_exports();
    let mut c = Raw::start(&srv.socket);
    // Before STRUCTURED_REPLY: ERR_INVALID.
    let r = c.ask(
        opt::SET_META_CONTEXT,
        &meta_payload("disk", &["base:allocation"]),
    );
    assert_eq!(r[0].0, rep::ERR_INVALID);
    c.structured();
    // LIST with no queries lists base:allocation; unknown export -> ERR_UNKNOWN.
    let r = c.ask(opt::LIST_META_CONTEXT, &meta_payload("disk", &[]));
    assert_eq!(r.len(), 2);
    assert_eq!(&r[0].1[4..], b"base:allocation");
    assert_eq!(
        c.ask(opt::LIST_META_CONTEXT, &meta_payload("nope", &[]))[0].0,
        rep::ERR_UNKNOWN
    );
    // SET with an unknown context selects nothing.
    let r = c.ask(
        opt::SET_META_CONTEXT,
        &meta_payload("disk", &["qemu:dirty-bitmap:x"]),
    );
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, rep::ACK);
    c.go("disk");
    // No context selected: BLOCK_STATUS is EINVAL and the connection stays up.
    c.request(0, cmd::BLOCK_STATUS, 1, 0, 4096, &[]);
    assert_eq!(c.chunks()[0].errno(), 22);
    assert_eq!(c.read(2, 0, 512).unwrap(), vec![0; 512]);
}

#[test]
fn meta_context_survives_info_for_other_export_but_not_go_for_it() {
    let srv = two_exports();
    // SET(disk), INFO(nope), INFO(other), GO(disk): context kept.
    let mut c = Raw::start(&srv.socket);
    c.structured();
    let id = c.set_meta("disk").expect("context id");
    assert_eq!(
        c.ask(opt::INFO, &info_payload("nope", &[]))[0].0,
        rep::ERR_UNKNOWN
    );
    assert_eq!(
        c.ask(opt::INFO, &info_payload("other", &[]))
            .last()
            .unwrap()
            .0,
        rep::ACK
    );
    c.go("disk");
    c.request(0, cmd::BLOCK_STATUS, 1, 0, 8192, &[]);
    let ch = c.chunks();
    let nbd_payload = match &ch[0] {
        common::raw::Reply::Chunk { payload, .. } => payload.clone(),
        r => panic!("{r:?}"),
    };
    let (ctx, d) = common::raw::descriptors(&nbd_payload);
    assert_eq!(ctx, id);
    assert_eq!(d, vec![(8192, 3)]);
    // SET(disk), GO(other): context dropped.
    let mut c = Raw::start(&srv.socket);
    c.structured();
    c.set_meta("disk");
    c.go("other");
    c.request(0, cmd::BLOCK_STATUS, 1, 0, 8192, &[]);
    assert_eq!(c.chunks()[0].errno(), 22);
}

#[test]
fn idle_handshake_times_out() {
    let cfg = ServerConfig {
        handshake_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let e: Arc<dyn Export> = Arc::new(MemExport::new(MIB));
    let srv = TestServer::start_with(vec![("disk", e)], cfg);
    let mut c = Raw::connect(&srv.socket);
    c.greeting();
    // Send half a client-flags word and stall.
    c.s.write_all(&[0, 0]).unwrap();
    assert!(c.closed(), "server kept an idle handshake open");
}

#[test]
fn connection_limit_closes_extra_connections() {
    let cfg = ServerConfig {
        max_connections: 2,
        ..ServerConfig::default()
    };
    let e: Arc<dyn Export> = Arc::new(MemExport::new(MIB));
    let srv = TestServer::start_with(vec![("disk", e)], cfg);
    let (a, _) = Raw::open(&srv.socket, "disk");
    let (_b, _) = Raw::open(&srv.socket, "disk");
    let mut c = Raw::connect(&srv.socket);
    assert!(c.closed(), "third connection was served over the limit");
    drop(a);
    // The slot frees once the first connection is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Raw::connect(&srv.socket);
        let mut g = [0u8; 18];
        if std::io::Read::read_exact(&mut c.s, &mut g).is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tls_config(require: bool) -> nbd::TlsConfig {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = rustls_pki_der(&key);
    nbd::TlsConfig::from_der(vec![cert.der().clone()], der, require).unwrap()
}

fn rustls_pki_der(key: &rcgen::KeyPair) -> rustls::pki_types::PrivateKeyDer<'static> {
    rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into())
}

/// The TLS option rules in the clear: without TLS STARTTLS is unsupported;
/// with TLS a STARTTLS payload is invalid; under `require` every other
/// option (LIST, INFO, GO) gets ERR_TLS_REQD and EXPORT_NAME closes the
/// connection, so nothing about the exports crosses in the clear; ABORT
/// still ends cleanly.
#[test]
fn starttls_rules_in_the_clear() {
    let (srv, _) = TestServer::mem(MIB);
    let mut c = Raw::start(&srv.socket);
    assert_eq!(c.ask(opt::STARTTLS, &[])[0].0, rep::ERR_UNSUP);
    drop(c);

    let e: Arc<dyn Export> = Arc::new(MemExport::new(MIB));
    let cfg = ServerConfig {
        tls: Some(tls_config(true)),
        ..ServerConfig::default()
    };
    let srv = TestServer::start_with(vec![("disk", e)], cfg);
    let mut c = Raw::start(&srv.socket);
    assert_eq!(c.ask(opt::STARTTLS, &[1, 2])[0].0, rep::ERR_INVALID);
    for option in [opt::LIST, opt::STRUCTURED_REPLY] {
        let replies = c.ask(option, &[]);
        assert_eq!(
            replies.len(),
            1,
            "nothing but the refusal for option {option}"
        );
        assert_eq!(replies[0].0, rep::ERR_TLS_REQD, "option {option}");
    }
    let mut go = 4u32.to_be_bytes().to_vec();
    go.extend_from_slice(b"disk");
    go.extend_from_slice(&0u16.to_be_bytes());
    assert_eq!(c.ask(opt::GO, &go)[0].0, rep::ERR_TLS_REQD);
    assert_eq!(c.ask(opt::ABORT, &[])[0].0, rep::ACK);

    let mut c = Raw::start(&srv.socket);
    c.send_opt(opt::EXPORT_NAME, b"disk");
    let mut b = [0u8; 1];
    use std::io::Read;
    assert_eq!(
        c.s.read(&mut b).unwrap_or(0),
        0,
        "EXPORT_NAME in the clear closes the connection"
    );
}
