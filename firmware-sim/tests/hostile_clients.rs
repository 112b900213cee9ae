//! Hostile NBD clients against a booted daemon (issue 14): garbage
//! handshakes, slowloris negotiation and request headers, a flood of bad
//! requests whose replies are never read, 200 idle connections, writes cut
//! off halfway, oversize requests and payloads longer than announced,
//! overlapping concurrent writes, and TLS downgrade attempts.
//!
//! Throughout, a well-behaved client writes and reads back every 50 ms and
//! must be answered within a second. At the end: the daemon is alive and
//! exits cleanly, its RSS and log grew by bounded amounts (printed), and
//! every acknowledged write reads back intact.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::nbd_client::NbdConn;
use common::Daemon;

const NBDMAGIC: &[u8] = b"NBDMAGIC";
const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const OPT_EXPORT_NAME: u32 = 1;
const OPT_LIST: u32 = 3;
const OPT_STARTTLS: u32 = 5;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;
const OPT_STRUCTURED_REPLY: u32 = 8;
const REP_ACK: u32 = 1;
const REP_ERR_INVALID: u32 = (1 << 31) + 3;
const REP_ERR_TLS_REQD: u32 = (1 << 31) + 5;
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const EINVAL: u32 = 22;
const MIB: u64 = 1 << 20;
/// The daemon's handshake deadline and idle timeout in these tests.
const DEADLINE_S: u64 = 2;

fn opt(option: u32, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + data.len());
    v.extend_from_slice(&IHAVEOPT.to_be_bytes());
    v.extend_from_slice(&option.to_be_bytes());
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn request(cmd: u16, cookie: u64, offset: u64, len: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(28);
    v.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
    v.extend_from_slice(&0u16.to_be_bytes());
    v.extend_from_slice(&cmd.to_be_bytes());
    v.extend_from_slice(&cookie.to_be_bytes());
    v.extend_from_slice(&offset.to_be_bytes());
    v.extend_from_slice(&len.to_be_bytes());
    v
}

/// Connects and reads the greeting.
fn greeted(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    let mut g = [0u8; 18];
    s.read_exact(&mut g).expect("greeting");
    assert_eq!(&g[..8], NBDMAGIC);
    s
}

/// Greeting, flags, EXPORT_NAME: a simple-reply session, or `None` if the
/// server closed the connection (e.g. all slots taken).
fn try_attach(addr: &str, export: &str) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut g = [0u8; 18];
    s.read_exact(&mut g).ok()?;
    s.write_all(&3u32.to_be_bytes()).ok()?;
    s.write_all(&opt(OPT_EXPORT_NAME, export.as_bytes())).ok()?;
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).ok()?;
    Some(s)
}

fn attach(addr: &str, export: &str) -> TcpStream {
    try_attach(addr, export).unwrap_or_else(|| panic!("export {export} not served"))
}

/// One option reply: (type, data).
fn opt_reply(s: &mut TcpStream) -> (u32, Vec<u8>) {
    let mut h = [0u8; 20];
    s.read_exact(&mut h).expect("option reply");
    assert_eq!(
        u64::from_be_bytes(h[..8].try_into().unwrap()),
        OPT_REPLY_MAGIC
    );
    let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
    let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
    let mut data = vec![0u8; len as usize];
    s.read_exact(&mut data).unwrap();
    (kind, data)
}

/// STRUCTURED_REPLY then GO: a structured-reply session.
fn attach_structured(addr: &str, export: &str) -> TcpStream {
    let mut s = greeted(addr);
    s.write_all(&3u32.to_be_bytes()).unwrap();
    s.write_all(&opt(OPT_STRUCTURED_REPLY, &[])).unwrap();
    assert_eq!(opt_reply(&mut s).0, REP_ACK);
    let mut go = (export.len() as u32).to_be_bytes().to_vec();
    go.extend_from_slice(export.as_bytes());
    go.extend_from_slice(&0u16.to_be_bytes());
    s.write_all(&opt(OPT_GO, &go)).unwrap();
    loop {
        let (kind, _) = opt_reply(&mut s);
        assert!(kind < 1 << 31, "GO refused: 0x{kind:x}");
        if kind == REP_ACK {
            return s;
        }
    }
}

/// A simple reply: its errno.
fn simple_reply(s: &mut TcpStream, cookie: u64) -> u32 {
    let mut r = [0u8; 16];
    s.read_exact(&mut r).expect("simple reply");
    assert_eq!(
        u32::from_be_bytes(r[..4].try_into().unwrap()),
        SIMPLE_REPLY_MAGIC
    );
    assert_eq!(u64::from_be_bytes(r[8..16].try_into().unwrap()), cookie);
    u32::from_be_bytes(r[4..8].try_into().unwrap())
}

/// Whether the server closes `s` within `within` (reading and dropping
/// whatever it still sends).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let end = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("daemon alive");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(131).wrapping_add(i as u64 / 512) % 251) as u8 + 1)
        .collect()
}

/// The well-behaved client: writes a 4 KiB block and reads it back every
/// 50 ms on FB01 (offsets below 1 MiB), timing each round trip.
struct Probe {
    stop: Arc<AtomicBool>,
    worst: Arc<Mutex<Duration>>,
    thread: std::thread::JoinHandle<Vec<(u64, Vec<u8>)>>,
}

impl Probe {
    fn start(addr: &str) -> Probe {
        let mut c = NbdConn::open(addr, "FB01");
        let stop = Arc::new(AtomicBool::new(false));
        let worst = Arc::new(Mutex::new(Duration::ZERO));
        let (st, w) = (stop.clone(), worst.clone());
        let thread = std::thread::spawn(move || {
            let mut model: Vec<(u64, Vec<u8>)> = Vec::new();
            let mut i = 0u64;
            while !st.load(Ordering::Relaxed) {
                let off = (i % 256) * 4096;
                let data = pattern(1000 + i, 4096);
                let t = Instant::now();
                c.write(off, &data);
                let back = c.read(off, 4096);
                let took = t.elapsed();
                assert_eq!(back, data, "the probe read back other bytes at {off}");
                let mut worst = w.lock().unwrap();
                *worst = (*worst).max(took);
                drop(worst);
                model.retain(|(o, _)| *o != off);
                model.push((off, data));
                i += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            model
        });
        Probe {
            stop,
            worst,
            thread,
        }
    }

    fn worst(&self) -> Duration {
        *self.worst.lock().unwrap()
    }

    fn finish(self) -> (Duration, Vec<(u64, Vec<u8>)>) {
        self.stop.store(true, Ordering::Relaxed);
        let model = self.thread.join().expect("probe thread");
        let worst = *self.worst.lock().unwrap();
        (worst, model)
    }
}

/// Figures of one phase: (name, seconds, RSS KiB, log bytes).
struct Figures {
    pid: u32,
    start: Instant,
    rows: Vec<(String, f64, u64, u64)>,
}

impl Figures {
    fn mark(&mut self, d: &Daemon, phase: &str, probe: &Probe) {
        let row = (
            phase.to_string(),
            self.start.elapsed().as_secs_f64(),
            rss_kib(self.pid),
            d.log_len(),
        );
        println!(
            "hostile: {:<34} t={:>5.1}s  RSS {:>7} KiB  log {:>7} B  probe worst {:?}",
            row.0,
            row.1,
            row.2,
            row.3,
            probe.worst()
        );
        self.rows.push(row);
    }
}

fn garbage_handshakes(addr: &str, n: usize) {
    for i in 0..n {
        let mut s = greeted(addr);
        let junk: Vec<u8> = match i % 4 {
            // Unknown client flag bits.
            0 => (0..64).map(|k| (k * 37 + i) as u8 | 0x80).collect(),
            // Good flags, then a bad option magic.
            1 => [
                3u32.to_be_bytes().to_vec(),
                b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            ]
            .concat(),
            // Good flags, an option of absurd length.
            2 => [
                3u32.to_be_bytes().to_vec(),
                opt(OPT_INFO, &[])[..12].to_vec(),
                u32::MAX.to_be_bytes().to_vec(),
            ]
            .concat(),
            // Half a greeting reply, then close.
            _ => vec![0, 0],
        };
        let _ = s.write_all(&junk);
        if i % 4 == 3 {
            continue; // dropped by the client
        }
        assert!(
            closed_within(&mut s, Duration::from_secs(5)),
            "garbage handshake {i} not closed"
        );
    }
}

/// One connection that sends 100,000 malformed options (each answered with
/// an error): log lines must not follow one per option.
fn malformed_option_storm(addr: &str) -> usize {
    let mut s = greeted(addr);
    s.write_all(&3u32.to_be_bytes()).unwrap();
    let mut reader = s.try_clone().unwrap();
    let counter = std::thread::spawn(move || {
        let mut n = 0usize;
        let mut h = [0u8; 20];
        while reader.read_exact(&mut h).is_ok() {
            let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
            let mut d = vec![0u8; len as usize];
            if reader.read_exact(&mut d).is_err() {
                break;
            }
            assert_eq!(
                u32::from_be_bytes(h[12..16].try_into().unwrap()),
                REP_ERR_INVALID
            );
            n += 1;
        }
        n
    });
    // INFO whose name length runs past its payload.
    let one = opt(OPT_INFO, &[0, 0, 1, 0, b'x']);
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
    for _ in 0..100 {
        if s.write_all(&batch).is_err() {
            break; // cut off by the handshake deadline
        }
    }
    let _ = s.shutdown(Shutdown::Write);
    counter.join().unwrap()
}

/// Connections that dribble their option bytes; each must be dropped at the
/// handshake deadline. Returns the slowest drop.
fn slowloris_negotiation(addr: &str, conns: usize) -> Duration {
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let t = Instant::now();
                let s = TcpStream::connect(&addr).unwrap();
                s.set_nodelay(true).unwrap();
                let mut w = s.try_clone().unwrap();
                let mut bytes = 3u32.to_be_bytes().to_vec();
                bytes.extend(opt(OPT_INFO, &[b'n'; 200]));
                let dribble = std::thread::spawn(move || {
                    for b in bytes {
                        if w.write_all(&[b]).is_err() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                });
                let mut r = s;
                assert!(
                    closed_within(&mut r, Duration::from_secs(DEADLINE_S + 5)),
                    "a dribbled handshake was kept open"
                );
                let took = t.elapsed();
                let _ = r.shutdown(Shutdown::Both);
                let _ = dribble.join();
                took
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .max()
        .unwrap()
}

/// A session whose request header comes one byte per 200 ms: the idle
/// timeout covers the whole header, so it is closed.
fn slowloris_header(addr: &str) -> Duration {
    let s = attach(addr, "FB02");
    let t = Instant::now();
    let mut w = s.try_clone().unwrap();
    let hdr = request(CMD_READ, 1, 0, 4096);
    let dribble = std::thread::spawn(move || {
        for b in hdr {
            if w.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let mut r = s;
    assert!(
        closed_within(&mut r, Duration::from_secs(DEADLINE_S + 5)),
        "a dribbled request header was kept open"
    );
    let took = t.elapsed();
    let _ = r.shutdown(Shutdown::Both);
    let _ = dribble.join();
    took
}

/// A WRITE whose 4 KiB payload comes one byte per 200 ms: the payload
/// deadline (the idle timeout plus a second per 64 KiB) closes it, and none
/// of it is written.
fn slowloris_payload(addr: &str) -> Duration {
    let s = attach(addr, "FB03");
    let t = Instant::now();
    let mut w = s.try_clone().unwrap();
    w.write_all(&request(CMD_WRITE, 1, 0, 4096)).unwrap();
    let dribble = std::thread::spawn(move || {
        for _ in 0..4096 {
            if w.write_all(&[0xee]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let mut r = s;
    assert!(
        closed_within(&mut r, Duration::from_secs(DEADLINE_S + 5)),
        "a dribbled WRITE payload was kept open"
    );
    let took = t.elapsed();
    let _ = r.shutdown(Shutdown::Both);
    let _ = dribble.join();
    let mut check = NbdConn::open(addr, "FB03");
    assert!(
        check.read(0, 4096).iter().all(|b| *b != 0xee),
        "part of an unfinished WRITE payload reached the volume"
    );
    took
}

/// Most bad requests the flood sends: it stops when the daemon stops reading.
const FLOOD_MAX: usize = 2_000_000;

/// READs past the end on a structured session, replies never read, until
/// the daemon stops reading (or `FLOOD_MAX`). Returns how many the daemon
/// and the socket buffers between took, and the socket to close later.
fn unread_flood(addr: &str, size: u64) -> (usize, TcpStream) {
    let mut s = attach_structured(addr, "FB03");
    const N: usize = FLOOD_MAX;
    let one = request(CMD_READ, 7, size, 512);
    let chunk: Vec<u8> = one.iter().copied().cycle().take(one.len() * 4096).collect();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut written = 0usize;
    while written < N * one.len() {
        let at = written % chunk.len();
        let end = chunk.len().min(at + N * one.len() - written);
        match s.write(&chunk[at..end]) {
            Ok(n) => written += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => panic!("write to the daemon: {e}"),
        }
    }
    (written / one.len(), s)
}

#[test]
fn hostile_clients_do_not_hurt_the_daemon_or_other_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let secs = DEADLINE_S.to_string();
    let d = Daemon::boot_with(
        tmp.path(),
        &[
            "--nbd-idle-timeout",
            &secs,
            "--nbd-handshake-timeout",
            &secs,
        ],
    );
    let addr = d.nbd_addr();
    let mut good = NbdConn::open(&addr, "FB00");
    let size = good.size;
    // What every later abuse of FB00 must leave intact.
    let base = pattern(1, MIB as usize);
    for k in 0..16u64 {
        let o = k * 64 * 1024;
        good.write(o, &base[o as usize..o as usize + 64 * 1024]);
    }
    drop(good);
    let probe = Probe::start(&addr);
    let mut fig = Figures {
        pid: d.pid(),
        start: Instant::now(),
        rows: Vec::new(),
    };
    fig.mark(&d, "booted, probe running", &probe);

    garbage_handshakes(&addr, 2000);
    fig.mark(&d, "2,000 garbage handshakes", &probe);

    let answered = malformed_option_storm(&addr);
    println!("hostile: malformed options answered before the deadline: {answered}");
    assert!(answered > 0, "no malformed option was answered");
    fig.mark(&d, "malformed option storm", &probe);

    let slowest = slowloris_negotiation(&addr, 20);
    println!("hostile: 20 dribbled handshakes, slowest dropped after {slowest:?}");
    assert!(
        slowest < Duration::from_secs(DEADLINE_S + 2),
        "dribbled handshake held {slowest:?} (deadline {DEADLINE_S} s)"
    );
    let took = slowloris_header(&addr);
    println!("hostile: dribbled request header dropped after {took:?}");
    assert!(took < Duration::from_secs(DEADLINE_S + 2), "{took:?}");
    let took = slowloris_payload(&addr);
    println!("hostile: dribbled WRITE payload dropped after {took:?}");
    assert!(took < Duration::from_secs(DEADLINE_S + 2), "{took:?}");
    fig.mark(&d, "slowloris handshakes and header", &probe);

    let (taken, flood) = unread_flood(&addr, size);
    println!(
        "hostile: unread flood: {taken} bad requests taken (daemon and socket buffers), then the daemon stopped reading"
    );
    assert!(
        taken < FLOOD_MAX,
        "the daemon took {taken} requests whose replies nobody read"
    );
    // The in-flight budget (64 MiB) plus slack bounds what it holds.
    let rss_flood = rss_kib(fig.pid);
    fig.mark(&d, "unread bad requests (flood)", &probe);
    drop(flood);

    // 200 idle connections: loopback is not limited per peer, so they take
    // the free slots of the TCP listener (64 in all) and the rest are
    // closed at once; the idle timeout frees every slot.
    let t_idle = Instant::now();
    let mut idle = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        match try_attach(&addr, "FB02") {
            Some(s) => idle.push(s),
            None => refused += 1,
        }
    }
    println!(
        "hostile: 200 idle connections: {} served, {refused} closed at once",
        idle.len()
    );
    assert!(
        idle.len() <= 64 && idle.len() >= 50,
        "{} served",
        idle.len()
    );
    // The connection already open is still served meanwhile (the probe), and
    // so is a new unix-socket client (its own listener and slots).
    let mut unix = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    let t = Instant::now();
    let mut g = [0u8; 18];
    unix.read_exact(&mut g).unwrap();
    assert_eq!(&g[..8], NBDMAGIC);
    assert!(t.elapsed() < Duration::from_secs(1));
    drop(unix);
    for s in &mut idle {
        assert!(
            closed_within(s, Duration::from_secs(DEADLINE_S + 5)),
            "an idle connection was kept"
        );
    }
    let freed = t_idle.elapsed();
    println!("hostile: every idle connection closed {freed:?} after the first");
    let mut after = try_attach(&addr, "FB02").expect("a slot is free again");
    after.write_all(&request(CMD_READ, 5, 0, 512)).unwrap();
    assert_eq!(simple_reply(&mut after, 5), 0);
    drop(after);
    drop(idle);
    fig.mark(&d, "200 idle connections", &probe);

    // Writes cut off halfway: never applied.
    for k in 0..50u64 {
        let mut s = attach(&addr, "FB00");
        let o = (k % 16) * 64 * 1024;
        s.write_all(&request(CMD_WRITE, k, o, 64 * 1024)).unwrap();
        s.write_all(&vec![0xEE; 32 * 1024]).unwrap();
        drop(s);
    }
    fig.mark(&d, "50 writes cut off halfway", &probe);

    // Oversize requests.
    let mut s = attach(&addr, "FB00");
    s.write_all(&request(CMD_READ, 1, 0, 33 << 20)).unwrap();
    assert_eq!(simple_reply(&mut s, 1), EINVAL, "READ over the block size");
    s.write_all(&request(CMD_WRITE, 2, 0, 33 << 20)).unwrap();
    s.write_all(&vec![0xEE; 33 << 20]).unwrap();
    assert_eq!(simple_reply(&mut s, 2), EINVAL, "WRITE over the block size");
    s.write_all(&request(CMD_READ, 3, 0, 4096)).unwrap();
    assert_eq!(simple_reply(&mut s, 3), 0, "usable after oversize requests");
    let mut back = vec![0u8; 4096];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, base[..4096], "an oversize WRITE changed data");
    s.write_all(&request(CMD_WRITE, 4, 0, 200 << 20)).unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(5)),
        "a 200 MiB WRITE was not refused by closing"
    );
    // A payload longer than announced: the first 4 KiB are the write, the
    // rest is read as a request header with a bad magic.
    let at = 2 * MIB;
    let mut s = attach(&addr, "FB00");
    let mut w = request(CMD_WRITE, 9, at, 4096);
    w.extend(vec![0x41; 8192]);
    s.write_all(&w).unwrap();
    assert_eq!(simple_reply(&mut s, 9), 0);
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    fig.mark(&d, "oversize requests and payloads", &probe);

    // Overlapping concurrent writes: four clients, 64 KiB each, 16 KiB
    // apart; every 512-byte sector ends up from one of the writers covering it.
    let region = 8 * MIB;
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut c = NbdConn::open(&addr, "FB00");
                for _ in 0..100 {
                    c.write(region + t * 16 * 1024, &vec![0x10 + t as u8; 64 * 1024]);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let mut c = NbdConn::open(&addr, "FB00");
    let got = c.read(region, 112 * 1024);
    for (i, sector) in got.chunks(512).enumerate() {
        let at = i as u64 * 512;
        let covering: Vec<u8> = (0..4u64)
            .filter(|t| at >= t * 16 * 1024 && at < t * 16 * 1024 + 64 * 1024)
            .map(|t| 0x10 + t as u8)
            .collect();
        assert!(
            sector.iter().all(|&b| b == sector[0]) && covering.contains(&sector[0]),
            "sector {i} holds a mix or a byte no writer wrote: {:?}",
            &sector[..8]
        );
    }
    fig.mark(&d, "overlapping concurrent writes", &probe);

    // Every acknowledged write is intact.
    let (worst, model) = probe.finish();
    let mut c = NbdConn::open(&addr, "FB00");
    assert_eq!(c.read(0, MIB as u32), base, "FB00 changed under the abuse");
    let mut w = vec![0x41; 4096];
    w.extend(vec![0; 4096]);
    assert_eq!(
        c.read(at, 8192),
        w,
        "the acknowledged write, and nothing after it"
    );
    let mut c1 = NbdConn::open(&addr, "FB01");
    for (off, data) in &model {
        assert_eq!(&c1.read(*off, 4096), data, "the probe's block at {off}");
    }
    println!(
        "hostile: probe: {} blocks verified, worst round trip {worst:?}",
        model.len()
    );
    assert!(
        worst < Duration::from_secs(1),
        "the well-behaved client waited {worst:?}"
    );

    let first = &fig.rows[0];
    let rss_end = rss_kib(fig.pid);
    let log_end = d.log_len();
    let rss_growth = rss_end.max(rss_flood).saturating_sub(first.2);
    println!(
        "hostile: RSS {} KiB -> peak {} KiB -> {} KiB (growth {} KiB); log {} B -> {} B (+{} B)",
        first.2,
        rss_flood.max(rss_end),
        rss_end,
        rss_growth,
        first.3,
        log_end,
        log_end - first.3
    );
    assert!(
        rss_growth < 100 * 1024,
        "RSS grew by {rss_growth} KiB (one connection's in-flight budget is 64 MiB)"
    );
    assert!(
        log_end - first.3 < 16 * 1024,
        "the log grew by {} bytes",
        log_end - first.3
    );
    drop((c, c1));
    let status = d.terminate();
    assert!(status.success(), "daemon exit after the abuse: {status}");
}

/// Writes a self-signed certificate and key under `dir`.
fn make_cert(dir: &std::path::Path) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let c = dir.join("cert.pem");
    let k = dir.join("key.pem");
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c.display().to_string(), k.display().to_string())
}

#[test]
fn tls_downgrade_attempts_are_refused_under_tls_require() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(tmp.path());
    let d = Daemon::boot_with(
        tmp.path(),
        &[
            "--tls",
            "require",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--nbd-handshake-timeout",
            "2",
        ],
    );
    let addr = d.nbd_addr();
    let log0 = d.log_len();
    for round in 0..200 {
        // Every option but STARTTLS in the clear: ERR_TLS_REQD, nothing else.
        let mut s = greeted(&addr);
        s.write_all(&3u32.to_be_bytes()).unwrap();
        let mut go = 4u32.to_be_bytes().to_vec();
        go.extend_from_slice(b"FB00");
        go.extend_from_slice(&0u16.to_be_bytes());
        for (o, data) in [
            (OPT_LIST, vec![]),
            (OPT_INFO, go.clone()),
            (OPT_GO, go.clone()),
            (OPT_STRUCTURED_REPLY, vec![]),
        ] {
            s.write_all(&opt(o, &data)).unwrap();
            let (kind, _) = opt_reply(&mut s);
            assert_eq!(
                kind, REP_ERR_TLS_REQD,
                "option {o} in the clear (round {round})"
            );
        }
        // EXPORT_NAME in the clear: closed, with no export data sent.
        s.write_all(&opt(OPT_EXPORT_NAME, b"FB00")).unwrap();
        let mut rest = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "bytes after a clear EXPORT_NAME: {rest:?}");
    }
    // STARTTLS with a plaintext option pipelined behind it: closed.
    let mut s = greeted(&addr);
    let mut both = 3u32.to_be_bytes().to_vec();
    both.extend(opt(OPT_STARTTLS, &[]));
    both.extend(opt(OPT_GO, &[0, 0, 0, 0, 0, 0]));
    s.write_all(&both).unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(5)),
        "pipelined STARTTLS kept"
    );
    // STARTTLS acknowledged, then plaintext instead of a TLS hello: closed.
    let mut s = greeted(&addr);
    s.write_all(&3u32.to_be_bytes()).unwrap();
    s.write_all(&opt(OPT_STARTTLS, &[])).unwrap();
    assert_eq!(opt_reply(&mut s).0, REP_ACK);
    s.write_all(&opt(OPT_GO, &[0, 0, 0, 0, 0, 0])).unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(5)),
        "plaintext after STARTTLS kept"
    );
    let grew = d.log_len() - log0;
    println!("hostile TLS: 200 downgrade rounds and 2 broken upgrades logged {grew} bytes");
    assert!(grew < 16 * 1024, "the log grew by {grew} bytes");
    let status = d.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn an_export_name_cannot_forge_log_lines_or_send_terminal_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::boot(tmp.path());
    // QA: the name went into the log raw, so a newline forged a line of
    // its own and ESC[2J cleared the screen of whoever tailed the log.
    let forged = "x\n2026-12-08T00:00:00.000000Z ERROR controller: FORGED\u{1b}[2J";
    assert!(try_attach(&d.nbd_addr(), forged).is_none());
    std::thread::sleep(Duration::from_millis(300));
    let log = d.log_text();
    assert!(log.contains("unknown export"), "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("2026-12-08T00:00:00")),
        "a forged line reached the log:\n{log}"
    );
    assert!(!log.contains('\u{1b}'), "a terminal escape reached the log");
}
