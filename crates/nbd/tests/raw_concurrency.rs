//! Raw-socket tests of concurrency in the transmission phase: out-of-order
//! replies, DISC with requests in flight, the in-flight budget, pipelined
//! (batched) requests and graceful shutdown.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw::{Raw, Reply};
use common::{pattern, TestServer};
use nbd::proto::{chunk, cmd};
use nbd::testing::MemExport;
use nbd::{Export, ServerConfig};

const MIB: u64 = 1 << 20;
const ESHUTDOWN: u32 = 108;

fn mem_server(e: MemExport, cfg: ServerConfig) -> (TestServer, Arc<MemExport>) {
    let e = Arc::new(e);
    let d: Arc<dyn Export> = e.clone();
    (TestServer::start_with(vec![("disk", d)], cfg), e)
}

#[test]
fn replies_go_out_of_order() {
    let (srv, e) = mem_server(MemExport::new(MIB), ServerConfig::default());
    e.set_delay(0, Duration::from_millis(400));
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    c.request(0, cmd::READ, 1, 0, 4096, &[]);
    c.request(0, cmd::READ, 2, 8192, 4096, &[]);
    let first = c.chunks();
    let second = c.chunks();
    assert_eq!(first[0].cookie(), 2, "the fast read overtook the slow one");
    assert_eq!(second[0].cookie(), 1);
}

#[test]
fn disc_finishes_in_flight_requests_before_closing() {
    let (srv, e) = mem_server(MemExport::new(MIB), ServerConfig::default());
    e.set_delay(65536, Duration::from_millis(300));
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    c.request(0, cmd::WRITE, 1, 65536, 4096, &[3u8; 4096]);
    c.request(0, cmd::DISC, 2, 0, 0, &[]);
    assert_eq!(
        c.reply(),
        Reply::Simple {
            cookie: 1,
            errno: 0
        }
    );
    assert!(c.closed());
    assert_eq!(e.snapshot(65536, 4096), vec![3u8; 4096]);
}

#[test]
fn inflight_budget_smaller_than_queue_still_completes() {
    let cfg = ServerConfig {
        max_request_bytes: MIB as u32,
        max_inflight_bytes_per_conn: MIB as usize + 4096,
        ..ServerConfig::default()
    };
    let (srv, e) = mem_server(MemExport::new(8 * MIB), cfg);
    e.set_delay(0, Duration::from_millis(50));
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    let payload = pattern(MIB as usize, 3);
    for i in 0..8u64 {
        c.request(0, cmd::WRITE, i, i * MIB, MIB as u32, &payload);
    }
    let mut seen: Vec<u64> = (0..8)
        .map(|_| c.reply())
        .map(|r| {
            assert_eq!(r.errno(), 0);
            r.cookie()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, (0..8).collect::<Vec<_>>());
    assert!(
        e.snapshot(7 * MIB, MIB as usize) == payload,
        "last write not applied"
    );
}

#[test]
fn shutdown_finishes_in_flight_answers_eshutdown_and_stops() {
    let cfg = ServerConfig {
        shutdown_grace: Duration::from_secs(5),
        ..ServerConfig::default()
    };
    let (mut srv, e) = mem_server(MemExport::new(MIB), cfg);
    e.set_delay(0, Duration::from_millis(500));
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    c.request(0, cmd::WRITE, 1, 0, 4096, &[6u8; 4096]);
    std::thread::sleep(Duration::from_millis(100));
    srv.begin_shutdown();
    std::thread::sleep(Duration::from_millis(100));
    // New connections are refused; new requests get ESHUTDOWN.
    assert!(std::os::unix::net::UnixStream::connect(&srv.socket).is_err());
    assert_eq!(c.simple(0, cmd::WRITE, 2, 8192, 512, &[1; 512]), ESHUTDOWN);
    assert_eq!(
        c.reply(),
        Reply::Simple {
            cookie: 1,
            errno: 0
        },
        "in-flight write finished"
    );
    assert_eq!(e.snapshot(0, 4096), vec![6u8; 4096]);
    assert_eq!(e.snapshot(8192, 512), vec![0u8; 512]);
    // Nothing in flight any more: the server closes the connection itself.
    assert!(c.closed(), "an idle connection stayed open during shutdown");
    let t = Instant::now();
    srv.stop().expect("serve returned an error");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "stop waited for the grace period"
    );
}

#[test]
fn shutdown_closes_an_idle_connection_at_once() {
    // QA: a test kit's clean stop took the whole 10 s grace whenever a
    // client held an idle connection.
    let cfg = ServerConfig {
        shutdown_grace: Duration::from_secs(10),
        ..ServerConfig::default()
    };
    let (mut srv, _e) = mem_server(MemExport::new(MIB), cfg);
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    assert_eq!(c.simple(0, cmd::WRITE, 1, 0, 512, &[3; 512]), 0);
    let t = Instant::now();
    srv.stop().expect("stop");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop waited {:?} for an idle connection",
        t.elapsed()
    );
    assert!(c.closed());
}

#[test]
fn shutdown_closes_idle_connections_after_grace() {
    let cfg = ServerConfig {
        shutdown_grace: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let (mut srv, _e) = mem_server(MemExport::new(MIB), cfg);
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    let mut h = Raw::start(&srv.socket); // one still negotiating
    srv.stop().expect("stop");
    assert!(c.closed());
    // The server may already have closed: ignore write errors.
    let _ = std::io::Write::write_all(&mut h.s, &[0u8; 16]);
    assert!(h.closed());
}

#[test]
fn pipelined_small_requests_all_answered_with_their_own_data() {
    let (srv, _e) = mem_server(MemExport::new(4 * MIB), ServerConfig::default());
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    // Warm up so the server sees a fast export and batches.
    for i in 0..32u64 {
        assert_eq!(
            c.simple(0, cmd::WRITE, i, i * 4096, 4096, &[i as u8; 4096]),
            0
        );
    }
    for round in 0..4u64 {
        let mut wire = Vec::new();
        for i in 0..64u64 {
            let mut b = bytes::BytesMut::new();
            let h = nbd::proto::RequestHeader {
                flags: 0,
                kind: cmd::WRITE,
                cookie: 1000 + i,
                offset: i * 4096,
                length: 4096,
            };
            nbd::proto::encode_request(&mut b, &h);
            b.extend_from_slice(&[(i + round) as u8; 4096]);
            wire.extend_from_slice(&b);
        }
        c.send(&wire);
        let mut acks: Vec<u64> = (0..64)
            .map(|_| c.reply())
            .map(|r| {
                assert_eq!(r.errno(), 0);
                r.cookie()
            })
            .collect();
        acks.sort();
        assert_eq!(acks, (1000..1064).collect::<Vec<_>>());
        for i in 0..64u64 {
            c.request(0, cmd::READ, 5000 + i, i * 4096, 4096, &[]);
        }
        let mut got = 0;
        while got < 64 {
            let ch = c.chunks();
            let Reply::Chunk {
                cookie,
                payload,
                kind,
                ..
            } = &ch[0]
            else {
                panic!("{ch:?}")
            };
            let i = cookie - 5000;
            let want = (i + round) as u8;
            if *kind == chunk::OFFSET_HOLE {
                assert_eq!(want, 0, "request {i}: hole for non-zero data");
            } else {
                assert!(
                    payload[8..].iter().all(|&b| b == want),
                    "request {i} got another request's data"
                );
            }
            got += 1;
        }
    }
}

/// QA: 63 connections pipelining 1 MiB READs and never reading a reply
/// took the daemon to 4 GiB, each within its own budget. What connections
/// hold above their floor now comes from one server-wide budget: the flood
/// is bounded by it (plus each socket's send buffer), and a well-behaved
/// connection, under its floor, is still answered at once.
#[test]
fn unread_replies_on_many_connections_are_bounded_server_wide() {
    let cfg = ServerConfig {
        max_inflight_bytes_per_conn: 32 * MIB as usize,
        inflight_floor_per_conn: MIB as usize,
        max_inflight_bytes_total: 2 * MIB as usize,
        max_request_bytes: MIB as u32,
        ..ServerConfig::default()
    };
    let (srv, e) = mem_server(MemExport::new(64 * MIB), cfg);
    // Data everywhere, so every READ reply carries its 1 MiB (a hole's is
    // a few bytes).
    let (mut w, _) = Raw::open(&srv.socket, "disk");
    for i in 0..64u64 {
        assert_eq!(
            w.simple(
                0,
                cmd::WRITE,
                i,
                i * MIB,
                MIB as u32,
                &pattern(MIB as usize, i)
            ),
            0
        );
    }
    let before = nbd::testing::CallCounts::get(&e.counts.reads);
    let mut flood = Vec::new();
    for k in 0..4u64 {
        let (mut c, _) = Raw::open(&srv.socket, "disk");
        c.s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        for i in 0..48u64 {
            c.request(0, cmd::READ, k * 100 + i, (i % 64) * MIB, MIB as u32, &[]);
        }
        flood.push(c);
    }
    std::thread::sleep(Duration::from_millis(500));
    // Each flood connection: 1 MiB floor, its share of the 2 MiB, and what
    // its socket's send buffer (4 MiB asked, up to 8 MiB given) took. Each
    // alone may hold 32 MiB: 4 x (32 + 8) = 160 reads without the shared
    // budget.
    let reads = nbd::testing::CallCounts::get(&e.counts.reads) - before;
    assert!(reads <= 48, "the flood was served {reads} 1 MiB reads");
    let (mut good, _) = Raw::open(&srv.socket, "disk");
    let t = Instant::now();
    assert!(good.read(1, 0, 4096).is_ok());
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "a connection under its floor waited {:?}",
        t.elapsed()
    );
    drop(flood);
}
