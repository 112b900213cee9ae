//! A minimal synchronous NBD client speaking raw bytes, for tests that send
//! what real clients never would. Every read has a timeout, so a server
//! that fails to answer makes the test fail instead of hang.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use nbd::proto::{self, opt, rep};

pub struct Raw {
    pub s: UnixStream,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple {
        cookie: u64,
        errno: u32,
    },
    Chunk {
        flags: u16,
        kind: u16,
        cookie: u64,
        payload: Vec<u8>,
    },
}

impl Reply {
    pub fn cookie(&self) -> u64 {
        match self {
            Reply::Simple { cookie, .. } | Reply::Chunk { cookie, .. } => *cookie,
        }
    }
    pub fn done(&self) -> bool {
        match self {
            Reply::Simple { .. } => true,
            Reply::Chunk { flags, .. } => flags & proto::chunk::FLAG_DONE != 0,
        }
    }
    /// errno of a simple reply or an error chunk (0 otherwise).
    pub fn errno(&self) -> u32 {
        match self {
            Reply::Simple { errno, .. } => *errno,
            Reply::Chunk { kind, payload, .. } if kind & 0x8000 != 0 => be32(&payload[..4]),
            _ => 0,
        }
    }
}

pub fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}
pub fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap())
}

pub struct GoInfo {
    pub size: u64,
    pub tflags: u16,
    pub block_size: Option<(u32, u32, u32)>,
}

impl Raw {
    pub fn connect(path: &Path) -> Raw {
        let s = UnixStream::connect(path).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw { s }
    }

    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.s.read_exact(&mut b).expect("read from server");
        b
    }

    pub fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).expect("write to server");
    }

    /// Read the greeting; returns the handshake flags.
    pub fn greeting(&mut self) -> u16 {
        let g = self.read_n(18);
        assert_eq!(be64(&g[..8]), proto::NBD_MAGIC);
        assert_eq!(be64(&g[8..16]), proto::IHAVEOPT);
        u16::from_be_bytes([g[16], g[17]])
    }

    /// Greeting plus client flags FIXED_NEWSTYLE|NO_ZEROES.
    pub fn start(path: &Path) -> Raw {
        let mut r = Raw::connect(path);
        assert_eq!(r.greeting(), 3);
        r.send(&3u32.to_be_bytes());
        r
    }

    pub fn send_opt(&mut self, option: u32, data: &[u8]) {
        let mut b = Vec::new();
        b.extend_from_slice(&proto::IHAVEOPT.to_be_bytes());
        b.extend_from_slice(&option.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        self.send(&b);
    }

    /// Read option replies up to the final one: (type, data) each.
    pub fn opt_replies(&mut self, option: u32) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let h = self.read_n(20);
            assert_eq!(be64(&h[..8]), proto::OPT_REPLY_MAGIC, "option reply magic");
            assert_eq!(be32(&h[8..12]), option, "option echoed");
            let kind = be32(&h[12..16]);
            let data = self.read_n(be32(&h[16..20]) as usize);
            out.push((kind, data));
            if !matches!(kind, rep::SERVER | rep::INFO | rep::META_CONTEXT) {
                return out;
            }
        }
    }

    pub fn ask(&mut self, option: u32, data: &[u8]) -> Vec<(u32, Vec<u8>)> {
        self.send_opt(option, data);
        self.opt_replies(option)
    }

    pub fn structured(&mut self) {
        let r = self.ask(opt::STRUCTURED_REPLY, &[]);
        assert_eq!(r[0].0, rep::ACK);
    }

    /// SET_META_CONTEXT base:allocation for `export`; returns the context id.
    pub fn set_meta(&mut self, export: &str) -> Option<u32> {
        let r = self.ask(
            opt::SET_META_CONTEXT,
            &meta_payload(export, &["base:allocation"]),
        );
        assert_eq!(r.last().unwrap().0, rep::ACK);
        r.iter()
            .find(|(t, _)| *t == rep::META_CONTEXT)
            .map(|(_, d)| be32(d))
    }

    /// GO for `export` asking for BLOCK_SIZE; panics unless it succeeds.
    pub fn go(&mut self, export: &str) -> GoInfo {
        let r = self.ask(opt::GO, &info_payload(export, &[proto::info::BLOCK_SIZE]));
        assert_eq!(r.last().unwrap().0, rep::ACK, "GO failed: {r:?}");
        parse_info(&r)
    }

    /// Structured replies + base:allocation + GO.
    pub fn open(path: &Path, export: &str) -> (Raw, GoInfo) {
        let mut r = Raw::start(path);
        r.structured();
        r.set_meta(export);
        let info = r.go(export);
        (r, info)
    }

    pub fn request(
        &mut self,
        flags: u16,
        kind: u16,
        cookie: u64,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) {
        let mut b = bytes::BytesMut::new();
        proto::encode_request(
            &mut b,
            &proto::RequestHeader {
                flags,
                kind,
                cookie,
                offset,
                length: len,
            },
        );
        b.extend_from_slice(payload);
        self.send(&b);
    }

    /// One simple reply or structured chunk.
    pub fn reply(&mut self) -> Reply {
        let m = be32(&self.read_n(4));
        if m == proto::SIMPLE_REPLY_MAGIC {
            let h = self.read_n(12);
            return Reply::Simple {
                errno: be32(&h[..4]),
                cookie: be64(&h[4..12]),
            };
        }
        assert_eq!(m, proto::STRUCTURED_REPLY_MAGIC, "reply magic");
        let h = self.read_n(16);
        let len = be32(&h[12..16]) as usize;
        Reply::Chunk {
            flags: u16::from_be_bytes([h[0], h[1]]),
            kind: u16::from_be_bytes([h[2], h[3]]),
            cookie: be64(&h[4..12]),
            payload: self.read_n(len),
        }
    }

    /// All chunks of one structured reply (the next reply on the wire).
    pub fn chunks(&mut self) -> Vec<Reply> {
        let mut v = Vec::new();
        loop {
            let r = self.reply();
            let done = r.done();
            v.push(r);
            if done {
                return v;
            }
        }
    }

    /// Structured READ: the bytes assembled from data and hole chunks.
    pub fn read(&mut self, cookie: u64, offset: u64, len: u32) -> Result<Vec<u8>, u32> {
        self.request(0, proto::cmd::READ, cookie, offset, len, &[]);
        let mut buf = vec![0xEEu8; len as usize];
        for c in self.chunks() {
            assert_eq!(c.cookie(), cookie);
            if c.errno() != 0 {
                return Err(c.errno());
            }
            if let Reply::Chunk { kind, payload, .. } = c {
                let off = be64(&payload[..8]) - offset;
                match kind {
                    proto::chunk::OFFSET_DATA => buf
                        [off as usize..off as usize + payload.len() - 8]
                        .copy_from_slice(&payload[8..]),
                    proto::chunk::OFFSET_HOLE => {
                        let n = be32(&payload[8..12]) as usize;
                        buf[off as usize..off as usize + n].fill(0)
                    }
                    proto::chunk::NONE => {}
                    k => panic!("unexpected chunk type {k}"),
                }
            }
        }
        Ok(buf)
    }

    /// Simple-reply command (not READ): returns the errno.
    pub fn simple(
        &mut self,
        flags: u16,
        kind: u16,
        cookie: u64,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) -> u32 {
        self.request(flags, kind, cookie, offset, len, payload);
        let r = self.reply();
        assert_eq!(r.cookie(), cookie);
        assert!(r.done(), "expected a final reply, got {r:?}");
        r.errno()
    }

    /// True if the server closed the connection (EOF or reset).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.s.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                false
            }
            Err(_) => true,
        }
    }
}

pub fn info_payload(export: &str, infos: &[u16]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&(export.len() as u32).to_be_bytes());
    d.extend_from_slice(export.as_bytes());
    d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
    for i in infos {
        d.extend_from_slice(&i.to_be_bytes());
    }
    d
}

pub fn meta_payload(export: &str, queries: &[&str]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&(export.len() as u32).to_be_bytes());
    d.extend_from_slice(export.as_bytes());
    d.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        d.extend_from_slice(&(q.len() as u32).to_be_bytes());
        d.extend_from_slice(q.as_bytes());
    }
    d
}

pub fn parse_info(r: &[(u32, Vec<u8>)]) -> GoInfo {
    let mut g = GoInfo {
        size: 0,
        tflags: 0,
        block_size: None,
    };
    for (t, d) in r {
        if *t != rep::INFO {
            continue;
        }
        match u16::from_be_bytes([d[0], d[1]]) {
            proto::info::EXPORT => {
                g.size = be64(&d[2..10]);
                g.tflags = u16::from_be_bytes([d[10], d[11]]);
            }
            proto::info::BLOCK_SIZE => {
                g.block_size = Some((be32(&d[2..6]), be32(&d[6..10]), be32(&d[10..14])))
            }
            _ => {}
        }
    }
    g
}

/// Block-status descriptors of a BLOCK_STATUS chunk payload.
pub fn descriptors(payload: &[u8]) -> (u32, Vec<(u32, u32)>) {
    let id = be32(&payload[..4]);
    let d = payload[4..]
        .chunks(8)
        .map(|c| (be32(&c[..4]), be32(&c[4..8])))
        .collect();
    (id, d)
}
