//! Raw-socket tests of the transmission phase: errors and their errnos,
//! the connection staying usable, oversize and truncated requests,
//! out-of-order replies, DISC, shutdown, durability calls.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::raw::{descriptors, Raw, Reply};
use common::{pattern, TestServer};
use nbd::proto::{cflag, chunk, cmd, tflag};
use nbd::testing::{FileExport, MemExport};
use nbd::{ErrorKind, Export, ExportError, ServerConfig, ZeroFlags};

const MIB: u64 = 1 << 20;
const EPERM: u32 = 1;
const EIO: u32 = 5;
const EINVAL: u32 = 22;
const ENOSPC: u32 = 28;
const ENOTSUP: u32 = 95;

fn mem_server(e: MemExport, cfg: ServerConfig) -> (TestServer, Arc<MemExport>) {
    let e = Arc::new(e);
    let d: Arc<dyn Export> = e.clone();
    (TestServer::start_with(vec![("disk", d)], cfg), e)
}

#[test]
fn write_read_roundtrip_fua_flush_and_holes() {
    let (srv, e) = mem_server(MemExport::new(4 * MIB), ServerConfig::default());
    let (mut c, info) = Raw::open(&srv.socket, "disk");
    assert_eq!(info.size, 4 * MIB);
    let data = pattern(65536, 1);
    assert_eq!(c.simple(0, cmd::WRITE, 1, 4096, 65536, &data), 0);
    assert!(c.read(2, 4096, 65536).unwrap() == data, "read back differs");
    assert_eq!(e.counts.fua_writes.load(Ordering::SeqCst), 0);
    assert_eq!(c.simple(cflag::FUA, cmd::WRITE, 3, 0, 512, &[7u8; 512]), 0);
    assert_eq!(
        e.counts.fua_writes.load(Ordering::SeqCst),
        1,
        "FUA reached the export"
    );
    assert_eq!(c.simple(0, cmd::FLUSH, 4, 0, 0, &[]), 0);
    assert_eq!(e.counts.flushes.load(Ordering::SeqCst), 1);
    // An unwritten 128 KiB range comes back as hole chunks.
    c.request(0, cmd::READ, 5, 2 * MIB, 131072, &[]);
    let ch = c.chunks();
    assert!(ch
        .iter()
        .all(|r| matches!(r, Reply::Chunk { kind, .. } if *kind == chunk::OFFSET_HOLE)));
    // DF: exactly one chunk.
    c.request(cflag::DF, cmd::READ, 6, 0, 131072, &[]);
    assert_eq!(c.chunks().len(), 1);
}

#[test]
fn out_of_range_requests_get_errno_and_connection_stays_usable() {
    let (srv, _e) = mem_server(MemExport::new(MIB), ServerConfig::default());
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    let end = MIB;
    assert_eq!(c.read(1, end - 512, 1024), Err(EINVAL));
    assert_eq!(c.read(2, end, 512), Err(EINVAL));
    assert_eq!(
        c.read(3, u64::MAX - 100, 512),
        Err(EINVAL),
        "offset overflow"
    );
    assert_eq!(
        c.simple(0, cmd::WRITE, 4, end - 512, 1024, &[1u8; 1024]),
        ENOSPC
    );
    assert_eq!(
        c.simple(0, cmd::WRITE_ZEROES, 5, end - 512, 1024, &[]),
        ENOSPC
    );
    assert_eq!(c.simple(0, cmd::TRIM, 6, end, 512, &[]), EINVAL);
    assert_eq!(c.simple(0, cmd::CACHE, 7, end, 512, &[]), EINVAL);
    c.request(0, cmd::BLOCK_STATUS, 8, end, 512, &[]);
    assert_eq!(c.chunks()[0].errno(), EINVAL);
    // Still in sync: the failed WRITE's payload was consumed.
    assert_eq!(c.read(9, end - 512, 512).unwrap(), vec![0; 512]);
}

#[test]
fn bad_flags_unknown_commands_alignment_and_zero_length() {
    let (srv, e) = mem_server(MemExport::new(MIB), ServerConfig::default());
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    c.request(0x8000, cmd::READ, 1, 0, 512, &[]);
    assert_eq!(c.chunks()[0].errno(), EINVAL);
    assert_eq!(
        c.simple(cflag::REQ_ONE, cmd::WRITE, 2, 0, 512, &[1; 512]),
        EINVAL
    );
    assert_eq!(c.simple(cflag::NO_HOLE, cmd::TRIM, 3, 0, 512, &[]), EINVAL);
    assert_eq!(c.simple(0, 42, 4, 0, 512, &[]), EINVAL);
    assert_eq!(c.simple(0, 0xffff, 5, 0, 0, &[]), EINVAL);
    // GO asked for BLOCK_SIZE, so unaligned requests are refused.
    assert_eq!(c.read(6, 1, 1), Err(EINVAL));
    assert_eq!(c.simple(0, cmd::WRITE, 7, 100, 512, &[1; 512]), EINVAL);
    assert_eq!(
        e.counts.writes.load(Ordering::SeqCst),
        0,
        "refused writes never reach the export"
    );
    // Zero length: READ succeeds with a NONE chunk, WRITE/TRIM succeed, BLOCK_STATUS is EINVAL.
    c.request(0, cmd::READ, 8, 0, 0, &[]);
    let ch = c.chunks();
    assert!(
        matches!(
            &ch[..],
            [Reply::Chunk {
                kind: chunk::NONE,
                ..
            }]
        ),
        "{ch:?}"
    );
    assert_eq!(c.simple(0, cmd::WRITE, 9, 0, 0, &[]), 0);
    assert_eq!(c.simple(0, cmd::TRIM, 10, 0, 0, &[]), 0);
    c.request(0, cmd::BLOCK_STATUS, 11, 0, 0, &[]);
    assert_eq!(c.chunks()[0].errno(), EINVAL);
    assert_eq!(c.read(12, 0, 512).unwrap(), vec![0; 512]);
}

#[test]
fn oversize_write_is_discarded_then_einval_and_absurd_one_disconnects() {
    let cfg = ServerConfig {
        max_request_bytes: MIB as u32,
        max_inflight_bytes_per_conn: 2 * MIB as usize,
        max_discard_bytes: 4 * MIB as u32,
        ..ServerConfig::default()
    };
    let (srv, e) = mem_server(MemExport::new(16 * MIB), cfg);
    let (mut c, info) = Raw::open(&srv.socket, "disk");
    assert_eq!(
        info.block_size.unwrap().2,
        MIB as u32,
        "max capped by config"
    );
    let big = vec![0xabu8; 2 * MIB as usize];
    assert_eq!(
        c.simple(0, cmd::WRITE, 1, 0, big.len() as u32, &big),
        EINVAL
    );
    assert_eq!(
        c.read(2, 0, 512).unwrap(),
        vec![0; 512],
        "payload not applied"
    );
    assert_eq!(c.read(3, 0, 2 * MIB as u32), Err(EINVAL), "oversize READ");
    assert_eq!(e.counts.writes.load(Ordering::SeqCst), 0);
    // Absurd: announced length beyond the discard limit closes the connection.
    c.request(0, cmd::WRITE, 4, 0, 0xffff_0000, &[]);
    assert!(c.closed());
}

#[test]
fn bad_request_magic_closes_connection_only() {
    let (srv, _e) = mem_server(MemExport::new(MIB), ServerConfig::default());
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    c.send(&[0x12u8; 28]);
    assert!(c.closed());
    let (mut d, _) = Raw::open(&srv.socket, "disk");
    assert_eq!(d.read(1, 0, 512).unwrap(), vec![0; 512]);
}

#[test]
fn disconnect_mid_request_leaves_data_and_server_intact() {
    let (srv, e) = mem_server(MemExport::new(MIB), ServerConfig::default());
    {
        let (mut c, _) = Raw::open(&srv.socket, "disk");
        assert_eq!(c.simple(0, cmd::WRITE, 1, 0, 4096, &[5u8; 4096]), 0);
        // Header announcing 64 KiB, then only 1000 bytes, then gone.
        c.request(0, cmd::WRITE, 2, 0, 65536, &[9u8; 1000]);
    }
    {
        let (mut c, _) = Raw::open(&srv.socket, "disk");
        c.send(&[0x25, 0x60, 0x95]); // a third of a header
    }
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    assert_eq!(
        c.read(1, 0, 4096).unwrap(),
        vec![5u8; 4096],
        "acknowledged data kept, partial write not applied"
    );
    assert_eq!(e.counts.writes.load(Ordering::SeqCst), 1);
}

#[test]
fn simple_reply_mode_without_structured_replies() {
    let (srv, _e) = mem_server(MemExport::new(MIB), ServerConfig::default());
    let mut c = Raw::start(&srv.socket);
    let info = c.go("disk");
    assert_eq!(info.tflags & tflag::SEND_DF, 0);
    assert_eq!(c.simple(0, cmd::WRITE, 1, 0, 512, &[4u8; 512]), 0);
    c.request(0, cmd::READ, 2, 0, 512, &[]);
    assert_eq!(
        c.reply(),
        Reply::Simple {
            cookie: 2,
            errno: 0
        }
    );
    assert_eq!(c.read_n(512), vec![4u8; 512]);
    // Errors are simple replies with no data; DF was not advertised.
    c.request(0, cmd::READ, 3, MIB, 512, &[]);
    assert_eq!(
        c.reply(),
        Reply::Simple {
            cookie: 3,
            errno: EINVAL
        }
    );
    c.request(cflag::DF, cmd::READ, 4, 0, 512, &[]);
    assert_eq!(
        c.reply(),
        Reply::Simple {
            cookie: 4,
            errno: EINVAL
        }
    );
    c.request(0, cmd::BLOCK_STATUS, 5, 0, 512, &[]);
    assert_eq!(
        c.reply(),
        Reply::Simple {
            cookie: 5,
            errno: EINVAL
        }
    );
}

#[test]
fn write_zeroes_fast_zero_no_hole_and_fallback() {
    let (srv, e) = mem_server(
        MemExport::new(MIB).fast_zero(false),
        ServerConfig::default(),
    );
    let (mut c, info) = Raw::open(&srv.socket, "disk");
    assert_ne!(info.tflags & tflag::SEND_FAST_ZERO, 0);
    assert_eq!(c.simple(0, cmd::WRITE, 1, 0, 65536, &[8u8; 65536]), 0);
    assert_eq!(
        c.simple(cflag::FAST_ZERO, cmd::WRITE_ZEROES, 2, 0, 4096, &[]),
        ENOTSUP
    );
    assert_eq!(
        e.snapshot(0, 4096),
        vec![8u8; 4096],
        "failed fast zero changed nothing"
    );
    assert_eq!(
        c.simple(cflag::NO_HOLE, cmd::WRITE_ZEROES, 3, 0, 8192, &[]),
        0
    );
    assert_eq!(c.simple(0, cmd::WRITE_ZEROES, 4, 16384, 16384, &[]), 0);
    let back = c.read(5, 0, 65536).unwrap();
    assert!(back[..8192].iter().all(|&b| b == 0), "NO_HOLE range zeroed");
    assert!(
        back[8192..16384].iter().all(|&b| b == 8),
        "untouched range kept"
    );
    assert!(
        back[16384..32768].iter().all(|&b| b == 0),
        "fallback range zeroed"
    );
    c.request(0, cmd::BLOCK_STATUS, 6, 0, 65536, &[]);
    let Reply::Chunk { payload, .. } = &c.chunks()[0] else {
        panic!()
    };
    // NO_HOLE range stays allocated; the plain zeroed range may be a hole.
    assert_eq!(
        descriptors(payload).1,
        vec![(16384, 0), (16384, 3), (32768, 0)]
    );
}

#[test]
fn write_zeroes_falls_back_to_writes_when_export_cannot_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.img");
    std::fs::write(&path, vec![0x55u8; MIB as usize]).unwrap();
    let e = Arc::new(FileExport::open(&path).unwrap());
    let d: Arc<dyn Export> = e.clone();
    let srv = TestServer::start(vec![("disk", d)]);
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    assert_eq!(
        c.simple(cflag::FAST_ZERO, cmd::WRITE_ZEROES, 1, 0, 8192, &[]),
        ENOTSUP
    );
    assert_eq!(c.simple(cflag::FUA, cmd::WRITE_ZEROES, 2, 0, 8192, &[]), 0);
    let f = std::fs::read(&path).unwrap();
    assert!(f[..8192].iter().all(|&b| b == 0) && f[8192] == 0x55);
    assert!(
        e.counts.flushes.load(Ordering::SeqCst) >= 1,
        "FUA zeroing synced"
    );
    // Trim not supported by the export is still a success (advisory).
    assert_eq!(c.simple(0, cmd::TRIM, 3, 0, 4096, &[]), 0);
}

#[test]
fn fua_and_flush_reach_fdatasync_before_the_reply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.img");
    std::fs::write(&path, vec![0u8; MIB as usize]).unwrap();
    let e = Arc::new(FileExport::open(&path).unwrap());
    let d: Arc<dyn Export> = e.clone();
    let srv = TestServer::start(vec![("disk", d)]);
    let (mut c, info) = Raw::open(&srv.socket, "disk");
    assert_eq!(
        info.tflags & tflag::CAN_MULTI_CONN,
        0,
        "FileExport does not promise multi-conn"
    );
    assert_eq!(c.simple(0, cmd::WRITE, 1, 0, 4096, &[1u8; 4096]), 0);
    assert_eq!(e.counts.flushes.load(Ordering::SeqCst), 0);
    assert_eq!(
        c.simple(cflag::FUA, cmd::WRITE, 2, 4096, 4096, &[2u8; 4096]),
        0
    );
    assert_eq!(
        e.counts.flushes.load(Ordering::SeqCst),
        1,
        "synced before the FUA reply"
    );
    assert_eq!(c.simple(0, cmd::FLUSH, 3, 0, 0, &[]), 0);
    assert_eq!(
        e.counts.flushes.load(Ordering::SeqCst),
        2,
        "synced before the FLUSH reply"
    );
    let f = std::fs::read(&path).unwrap();
    assert_eq!(&f[..4096], &[1u8; 4096][..]);
    assert_eq!(&f[4096..8192], &[2u8; 4096][..]);
}

#[test]
fn read_only_export_refuses_writes_with_eperm() {
    let (srv, _e) = mem_server(
        MemExport::new(MIB).read_only(true).multi_conn(false),
        ServerConfig::default(),
    );
    let (mut c, info) = Raw::open(&srv.socket, "disk");
    assert_ne!(info.tflags & tflag::READ_ONLY, 0);
    assert_eq!(info.tflags & tflag::CAN_MULTI_CONN, 0);
    assert_eq!(c.simple(0, cmd::WRITE, 1, 0, 512, &[1; 512]), EPERM);
    assert_eq!(c.simple(0, cmd::TRIM, 2, 0, 512, &[]), EPERM);
    assert_eq!(c.simple(0, cmd::WRITE_ZEROES, 3, 0, 512, &[]), EPERM);
    assert_eq!(c.read(4, 0, 512).unwrap(), vec![0; 512]);
}

#[test]
fn export_failures_map_to_errnos() {
    let (srv, e) = mem_server(MemExport::new(MIB), ServerConfig::default());
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    e.set_failure(Some(ErrorKind::Io));
    c.request(0, cmd::READ, 1, 0, 512, &[]);
    let ch = c.chunks();
    assert!(
        matches!(
            &ch[..],
            [Reply::Chunk {
                kind: chunk::ERROR,
                ..
            }]
        ),
        "{ch:?}"
    );
    assert_eq!(ch[0].errno(), EIO);
    assert_eq!(c.simple(0, cmd::WRITE, 2, 0, 512, &[1; 512]), EIO);
    assert_eq!(c.simple(0, cmd::FLUSH, 3, 0, 0, &[]), EIO);
    e.set_failure(Some(ErrorKind::NoSpace));
    assert_eq!(c.simple(0, cmd::WRITE, 4, 0, 512, &[1; 512]), ENOSPC);
    e.set_failure(Some(ErrorKind::NotSupported));
    assert_eq!(
        c.simple(0, cmd::WRITE, 5, 0, 512, &[1; 512]),
        EINVAL,
        "ENOTSUP is only for FAST_ZERO"
    );
    e.set_failure(None);
    assert_eq!(c.read(6, 0, 512).unwrap(), vec![0; 512]);
}

struct PanickyExport;
impl Export for PanickyExport {
    fn size(&self) -> u64 {
        MIB
    }
    fn read(&self, _: u64, _: &mut [u8]) -> Result<(), ExportError> {
        panic!("bug in the export")
    }
    fn write(&self, _: u64, _: &[u8], _: bool) -> Result<(), ExportError> {
        Ok(())
    }
    fn flush(&self) -> Result<(), ExportError> {
        Ok(())
    }
    fn trim(&self, _: u64, _: u64, _: bool) -> Result<(), ExportError> {
        Ok(())
    }
    fn write_zeroes(&self, _: u64, _: u64, _: ZeroFlags) -> Result<(), ExportError> {
        Ok(())
    }
}

#[test]
fn a_panicking_export_gives_eio_not_a_hang() {
    let srv = TestServer::start(vec![("disk", Arc::new(PanickyExport) as Arc<dyn Export>)]);
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    assert_eq!(c.read(1, 0, 512), Err(EIO));
    assert_eq!(c.simple(0, cmd::WRITE, 2, 0, 512, &[1; 512]), 0);
}

#[test]
fn block_status_descriptors_and_req_one() {
    let (srv, _e) = mem_server(MemExport::new(MIB), ServerConfig::default());
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    assert_eq!(c.simple(0, cmd::WRITE, 1, 8192, 4096, &[1; 4096]), 0);
    c.request(0, cmd::BLOCK_STATUS, 2, 0, MIB as u32, &[]);
    let ch = c.chunks();
    assert_eq!(ch.len(), 1);
    let Reply::Chunk { payload, kind, .. } = &ch[0] else {
        panic!()
    };
    assert_eq!(*kind, chunk::BLOCK_STATUS);
    assert_eq!(
        descriptors(payload).1,
        vec![(8192, 3), (4096, 0), (MIB as u32 - 12288, 3)]
    );
    c.request(cflag::REQ_ONE, cmd::BLOCK_STATUS, 3, 0, MIB as u32, &[]);
    let Reply::Chunk { payload, .. } = &c.chunks()[0] else {
        panic!()
    };
    assert_eq!(descriptors(payload).1, vec![(8192, 3)]);
}

/// A client that floods refused requests (READ past the end) and never reads
/// a reply is stopped by the in-flight budget: each error reply the server
/// queues is charged by its bytes, so once the budget and the socket buffers
/// are full the server stops reading and the client's writes block, long
/// before 500,000 requests. Every request the server took is then answered,
/// and a new connection is served at once.
#[test]
fn refused_requests_whose_replies_are_never_read_stop_being_read() {
    let cfg = ServerConfig {
        max_inflight_bytes_per_conn: 256 << 10,
        max_request_bytes: 256 << 10,
        ..ServerConfig::default()
    };
    let (srv, _) = mem_server(MemExport::new(MIB), cfg);
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    // 28-byte READ requests of 512 bytes at the end of the export: EINVAL.
    const N: usize = 500_000;
    const CHUNK: usize = 256;
    let mut one = bytes::BytesMut::new();
    nbd::proto::encode_request(
        &mut one,
        &nbd::proto::RequestHeader {
            flags: 0,
            kind: cmd::READ,
            cookie: 7,
            offset: MIB,
            length: 512,
        },
    );
    let chunk: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * CHUNK)
        .collect();
    c.s.set_write_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let mut written = 0usize;
    use std::io::Write;
    while written < N * one.len() {
        let at = written % chunk.len();
        match c.s.write(&chunk[at..]) {
            Ok(n) => written += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => panic!("write to server: {e}"),
        }
    }
    let sent = written / one.len();
    assert!(
        sent < N / 4,
        "the server kept reading refused requests whose replies nobody read: {sent} of {N} taken"
    );
    // Every whole request taken is answered with EINVAL, in order of arrival.
    for i in 0..sent {
        match c.reply() {
            Reply::Simple { errno, .. } => assert_eq!(errno, EINVAL, "reply {i}"),
            Reply::Chunk { .. } => {} // structured error chunk: also a refusal
        }
    }
    let (mut d, _) = Raw::open(&srv.socket, "disk");
    assert_eq!(d.simple(0, cmd::WRITE, 1, 0, 512, &[9u8; 512]), 0);
}

/// An export that can serve small reads and writes without waiting gets them
/// on the connection's task (`try_read_now`/`try_write_now`): data round
/// trips, errors keep their errno, FUA writes and the first large request
/// still take the blocking path (later large reads do not; large writes always do), and a delay (an
/// export that would wait) turns it off.
#[test]
fn small_requests_an_export_can_do_now_skip_the_blocking_pool() {
    let (srv, e) = mem_server(MemExport::new(4 * MIB).now(true), ServerConfig::default());
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    let now = |e: &MemExport| e.counts.now.load(Ordering::SeqCst);
    // The first call teaches the server the export is fast.
    assert_eq!(c.simple(0, cmd::WRITE, 1, 0, 4096, &pattern(4096, 1)), 0);
    let before = now(&e);
    for i in 0..50u64 {
        let data = pattern(4096, i);
        assert_eq!(c.simple(0, cmd::WRITE, 10 + i, i * 4096, 4096, &data), 0);
        assert_eq!(c.read(100 + i, i * 4096, 4096).unwrap(), data, "block {i}");
    }
    assert!(
        now(&e) >= before + 90,
        "{} of 100 served now",
        now(&e) - before
    );
    // FUA writes, and the first large request (nothing is known yet about
    // how long large ones take), go to the blocking pool.
    let n = now(&e);
    assert_eq!(c.simple(cflag::FUA, cmd::WRITE, 200, 0, 512, &[9; 512]), 0);
    let big = pattern(256 << 10, 77);
    assert_eq!(c.simple(0, cmd::WRITE, 201, MIB, 256 << 10, &big), 0);
    assert_eq!(
        now(&e),
        n,
        "a FUA write or the first large request was served now"
    );
    // Once large requests have been quick, large reads are served now too
    // (sent from the core that filled them), with the right data; large
    // writes keep the blocking pool, so the reader goes on receiving the
    // next payload meanwhile.
    for i in 0..4u64 {
        let data = pattern(256 << 10, 80 + i);
        assert_eq!(c.simple(0, cmd::WRITE, 210 + i, MIB, 256 << 10, &data), 0);
        assert_eq!(
            c.read(220 + i, MIB, 256 << 10).unwrap(),
            data,
            "large read {i}"
        );
    }
    assert!(
        (n + 3..=n + 4).contains(&now(&e)),
        "{} of 8 large requests of a quick export served now (the reads)",
        now(&e) - n
    );
    assert_eq!(c.read(230, 0, 512).unwrap(), [9u8; 512]);
    // Errors served now keep their errno.
    e.set_failure(Some(ErrorKind::NoSpace));
    assert_eq!(c.simple(0, cmd::WRITE, 202, 0, 512, &[1; 512]), ENOSPC);
    e.set_failure(None);
    // A delay means the export would wait: nothing is served now.
    e.set_delay(0, std::time::Duration::from_millis(1));
    let n = now(&e);
    assert_eq!(c.simple(0, cmd::WRITE, 203, 0, 512, &[2; 512]), 0);
    assert_eq!(now(&e), n);
}
