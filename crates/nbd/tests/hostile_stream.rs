//! Property tests in the spirit of nbdkit's fuzzing: arbitrary client bytes
//! (raw garbage, or well-framed requests with arbitrary fields) are fed to
//! one connection through `serve_stream`. The server must never panic and
//! must always finish once the client stops sending.
//! `PROPTEST_CASES=5000 cargo test -p nbd --test hostile_stream` for a long run.

use std::sync::Arc;
use std::time::Duration;

use nbd::proto::{self, opt};
use nbd::testing::MemExport;
use nbd::{Export, Server, ServerConfig, StaticRegistry};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SIZE: u64 = 1 << 20;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48)
}

fn opt_bytes(option: u32, data: &[u8]) -> Vec<u8> {
    let mut b = proto::IHAVEOPT.to_be_bytes().to_vec();
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    b
}

/// Client flags, STRUCTURED_REPLY, SET_META_CONTEXT and GO for "disk".
fn negotiation() -> Vec<u8> {
    let mut b = 3u32.to_be_bytes().to_vec();
    b.extend(opt_bytes(opt::STRUCTURED_REPLY, &[]));
    let mut meta = 4u32.to_be_bytes().to_vec();
    meta.extend_from_slice(b"disk");
    meta.extend_from_slice(&1u32.to_be_bytes());
    meta.extend_from_slice(&15u32.to_be_bytes());
    meta.extend_from_slice(b"base:allocation");
    b.extend(opt_bytes(opt::SET_META_CONTEXT, &meta));
    let mut go = 4u32.to_be_bytes().to_vec();
    go.extend_from_slice(b"disk");
    go.extend_from_slice(&1u16.to_be_bytes());
    go.extend_from_slice(&3u16.to_be_bytes());
    b.extend(opt_bytes(opt::GO, &go));
    b
}

/// Run one connection fed `input`; panics if the server panics or hangs.
/// Returns what the server sent.
fn drive(input: Vec<u8>) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let export: Arc<dyn Export> = Arc::new(MemExport::new(SIZE));
        let registry = Arc::new(StaticRegistry::single("disk", export));
        let server = Server::new(ServerConfig {
            handshake_timeout: Duration::from_secs(5),
            max_request_bytes: 1 << 20,
            max_inflight_bytes_per_conn: 2 << 20,
            max_discard_bytes: 4 << 20,
            ..ServerConfig::default()
        })
        .expect("config");
        let (client, conn) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(async move { server.serve_stream(conn, registry).await });
        let (mut cr, mut cw) = tokio::io::split(client);
        let drain = tokio::spawn(async move {
            let mut out = Vec::new();
            let mut chunk = vec![0u8; 65536];
            while let Ok(n) = cr.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                if out.len() < 1 << 20 {
                    out.extend_from_slice(&chunk[..n]);
                }
            }
            out
        });
        let _ = cw.write_all(&input).await;
        let _ = cw.shutdown().await;
        drop(cw);
        let res = tokio::time::timeout(Duration::from_secs(20), task).await;
        let joined = res.expect("server did not finish after the client stopped");
        assert!(
            !joined.as_ref().is_err_and(|e| e.is_panic()),
            "server panicked"
        );
        drain.await.unwrap_or_default()
    })
}

#[test]
fn the_harness_reaches_transmission() {
    let mut input = negotiation();
    let mut b = bytes::BytesMut::new();
    let h = proto::RequestHeader {
        flags: 0,
        kind: proto::cmd::READ,
        cookie: 77,
        offset: 0,
        length: 512,
    };
    proto::encode_request(&mut b, &h);
    input.extend_from_slice(&b);
    let out = drive(input);
    // The last reply is the READ's: a hole chunk (the export is empty) for cookie 77.
    let tail = &out[out.len() - 32..];
    assert_eq!(&tail[..4], &proto::STRUCTURED_REPLY_MAGIC.to_be_bytes());
    assert_eq!(&tail[6..8], &proto::chunk::OFFSET_HOLE.to_be_bytes());
    assert_eq!(&tail[8..16], &77u64.to_be_bytes());
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    let offset = prop_oneof![
        Just(0u64),
        Just(SIZE - 512),
        Just(SIZE),
        Just(u64::MAX - 1),
        any::<u64>()
    ];
    let length = prop_oneof![
        Just(0u32),
        Just(1u32),
        Just(512u32),
        Just(4096u32),
        Just(2 << 20),
        any::<u32>()
    ];
    (
        any::<u16>(),
        0u16..10,
        offset,
        length,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(flags, kind, offset, length, mask_flags, cookie)| {
            let flags = if mask_flags { flags & 0x1f } else { flags };
            let mut b = bytes::BytesMut::new();
            proto::encode_request(
                &mut b,
                &proto::RequestHeader {
                    flags,
                    kind,
                    cookie,
                    offset,
                    length,
                },
            );
            if kind == proto::cmd::WRITE && length <= 8192 {
                b.extend_from_slice(&vec![0x5a; length as usize]);
            }
            b.to_vec()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn garbage_at_any_phase_never_panics_or_hangs(
        phase in 0usize..3,
        garbage in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut input = Vec::new();
        match phase {
            0 => {}
            1 => input.extend_from_slice(&3u32.to_be_bytes()),
            _ => input.extend(negotiation()),
        }
        input.extend(garbage);
        let _ = drive(input);
    }

    #[test]
    fn framed_requests_with_arbitrary_fields_never_panic_or_hang(
        reqs in proptest::collection::vec(request(), 1..24),
    ) {
        let mut input = negotiation();
        for r in reqs {
            input.extend(r);
        }
        let _ = drive(input);
    }
}
