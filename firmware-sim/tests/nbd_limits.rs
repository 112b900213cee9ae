//! NBD limits against abusive clients (issue 14): idle connections closed
//! when asked for, local clients not limited per address, and a flood of bad
//! requests writes a few log lines, not one per request.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Daemon;

const NBDMAGIC: &[u8] = b"NBDMAGIC";
const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
const REQUEST_MAGIC: u32 = 0x2560_9513;

/// Newstyle handshake with NBD_OPT_EXPORT_NAME; returns the export size.
fn attach(addr: &str, export: &str) -> (TcpStream, u64) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut greet = [0u8; 18];
    s.read_exact(&mut greet).unwrap();
    assert_eq!(&greet[..8], NBDMAGIC);
    s.write_all(&3u32.to_be_bytes()).unwrap(); // FIXED_NEWSTYLE | NO_ZEROES
    let mut opt = Vec::new();
    opt.extend_from_slice(&IHAVEOPT.to_be_bytes());
    opt.extend_from_slice(&1u32.to_be_bytes()); // EXPORT_NAME
    opt.extend_from_slice(&(export.len() as u32).to_be_bytes());
    opt.extend_from_slice(export.as_bytes());
    s.write_all(&opt).unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).unwrap();
    (s, u64::from_be_bytes(reply[..8].try_into().unwrap()))
}

/// Whether the server closed `s` within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0))
}

#[test]
fn idle_connections_are_closed_and_local_clients_are_not_limited_per_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot_with(
        tmp.path(),
        &["--nbd-idle-timeout", "1", "--nbd-max-conns-per-peer", "2"],
    );
    let addr = d.nbd_addr();
    let (mut a, size) = attach(&addr, "FB00");
    assert_eq!(size, 1 << 30);
    let (_b, _) = attach(&addr, "FB01");
    // Loopback clients share one address and are not counted against the
    // per-peer limit (remote addresses are: nbd/src/limits.rs tests).
    let (_c, _) = attach(&addr, "FB02");
    // The idle one goes after the timeout.
    let t = Instant::now();
    assert!(
        closed_within(&mut a, Duration::from_secs(10)),
        "idle connection kept"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        t.elapsed()
    );
    assert!(
        d.log_text()
            .contains("no request for the idle timeout; closing"),
        "{}",
        d.log_text()
    );
    // Its slot is free again.
    let (_a2, _) = attach(&addr, "FB00");
}

#[test]
fn a_flood_of_bad_requests_writes_a_few_log_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    let (mut s, size) = attach(&d.nbd_addr(), "FB02");
    let n = 20_000u64;
    let mut batch = Vec::with_capacity(28 * 1000);
    for i in 0..n {
        // READ of 512 bytes past the end: refused with EINVAL.
        batch.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        batch.extend_from_slice(&0u16.to_be_bytes());
        batch.extend_from_slice(&0u16.to_be_bytes()); // READ
        batch.extend_from_slice(&i.to_be_bytes());
        batch.extend_from_slice(&(size + 4096).to_be_bytes());
        batch.extend_from_slice(&512u32.to_be_bytes());
        if batch.len() >= 28 * 1000 {
            s.write_all(&batch).unwrap();
            batch.clear();
            // Drain replies so the server's writer never blocks.
            let mut sink = vec![0u8; 16 * 1000];
            s.read_exact(&mut sink).unwrap();
        }
    }
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    let log = d.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("request refused"))
        .count();
    assert!(
        (1..=10).contains(&lines),
        "{n} refused requests logged in {lines} lines"
    );
    assert!(
        log.contains("more_refused"),
        "the count is reported:\n{log}"
    );
}
