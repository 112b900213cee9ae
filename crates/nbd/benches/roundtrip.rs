//! In-process NBD round trips: a raw client on a unix socket keeps 16
//! requests in flight against a `MemExport` (4 KiB random reads and writes,
//! 1 MiB sequential reads). Measures the server's per-request cost without
//! fio or libnbd in the loop. `cargo bench -p nbd --bench roundtrip`.
//! The comparison with nbdkit and qemu-nbd is `benches/nbd-compare.sh`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nbd::proto::{self, cmd, opt};
use nbd::testing::MemExport;
use nbd::{Export, Server, ServerConfig, StaticRegistry};

const SIZE: u64 = 256 << 20;
const QD: usize = 16;

fn start() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("b.sock");
    let path = sock.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let export: Arc<dyn Export> = Arc::new(MemExport::new(SIZE));
            let reg = Arc::new(StaticRegistry::single("disk", export));
            let server = Server::new(ServerConfig::default()).expect("config");
            let l = tokio::net::UnixListener::bind(&path).expect("bind");
            ready_tx.send(()).expect("ready");
            let _ = server.serve_unix(l, reg, std::future::pending()).await;
        });
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server start");
    (dir, sock)
}

fn connect(sock: &std::path::Path) -> UnixStream {
    let mut s = UnixStream::connect(sock).expect("connect");
    let mut g = [0u8; 18];
    s.read_exact(&mut g).expect("greeting");
    s.write_all(&3u32.to_be_bytes()).expect("flags");
    // GO "disk" without structured replies: READ data comes in simple replies.
    let mut data = 4u32.to_be_bytes().to_vec();
    data.extend_from_slice(b"disk");
    data.extend_from_slice(&0u16.to_be_bytes());
    let mut o = proto::IHAVEOPT.to_be_bytes().to_vec();
    o.extend_from_slice(&opt::GO.to_be_bytes());
    o.extend_from_slice(&(data.len() as u32).to_be_bytes());
    o.extend_from_slice(&data);
    s.write_all(&o).expect("GO");
    loop {
        let mut h = [0u8; 20];
        s.read_exact(&mut h).expect("reply");
        let kind = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let len = u32::from_be_bytes([h[16], h[17], h[18], h[19]]) as usize;
        let mut d = vec![0u8; len];
        s.read_exact(&mut d).expect("reply data");
        if kind == proto::rep::ACK {
            return s;
        }
        assert_eq!(kind, proto::rep::INFO, "GO failed");
    }
}

/// Send `QD` requests, then read the `QD` replies.
fn burst(
    s: &mut UnixStream,
    kind: u16,
    len: u32,
    offsets: &[u64],
    buf: &mut Vec<u8>,
    payload: &[u8],
) {
    buf.clear();
    for (i, &off) in offsets.iter().enumerate() {
        let mut b = bytes::BytesMut::new();
        let h = proto::RequestHeader {
            flags: 0,
            kind,
            cookie: i as u64,
            offset: off,
            length: len,
        };
        proto::encode_request(&mut b, &h);
        buf.extend_from_slice(&b);
        if kind == cmd::WRITE {
            buf.extend_from_slice(payload);
        }
    }
    s.write_all(buf).expect("send");
    let mut hdr = [0u8; 16];
    let mut data = vec![0u8; len as usize];
    for _ in offsets {
        s.read_exact(&mut hdr).expect("reply");
        assert_eq!(&hdr[4..8], &[0, 0, 0, 0], "request failed");
        if kind == cmd::READ {
            s.read_exact(&mut data).expect("data");
        }
    }
}

fn bench(c: &mut Criterion) {
    let (_dir, sock) = start();
    let mut s = connect(&sock);
    let mut buf = Vec::new();
    let payload = vec![0x5au8; 4096];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut offsets = move || -> Vec<u64> {
        (0..QD)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % (SIZE / 4096)) * 4096
            })
            .collect()
    };
    // Fill so reads move real data.
    for chunk in 0..(SIZE >> 20) {
        let offs: Vec<u64> = (0..1).map(|_| chunk << 20).collect();
        burst(
            &mut s,
            cmd::WRITE,
            1 << 20,
            &offs,
            &mut buf,
            &vec![0x33u8; 1 << 20],
        );
    }
    let mut g = c.benchmark_group("nbd_qd16");
    g.throughput(Throughput::Elements(QD as u64));
    g.bench_function("randread_4k", |b| {
        b.iter(|| burst(&mut s, cmd::READ, 4096, &offsets(), &mut buf, &[]))
    });
    g.bench_function("randwrite_4k", |b| {
        b.iter(|| burst(&mut s, cmd::WRITE, 4096, &offsets(), &mut buf, &payload))
    });
    g.throughput(Throughput::Bytes(QD as u64 * (1 << 20)));
    let mut seq = 0u64;
    g.bench_function("seqread_1m", |b| {
        b.iter(|| {
            let offs: Vec<u64> = (0..QD as u64)
                .map(|i| ((seq + i) % (SIZE >> 20)) << 20)
                .collect();
            seq += QD as u64;
            burst(&mut s, cmd::READ, 1 << 20, &offs, &mut buf, &[])
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
