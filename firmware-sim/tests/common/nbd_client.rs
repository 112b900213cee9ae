//! A minimal blocking NBD client for tests that need to time their writes
//! (each call waits for its reply): fixed newstyle handshake with
//! `NBD_OPT_EXPORT_NAME` and `NO_ZEROES`, then simple replies only.

use std::io::{Read, Write};
use std::net::TcpStream;

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const FLAG_FIXED_NEWSTYLE: u32 = 1;
const FLAG_NO_ZEROES: u32 = 2;
const OPT_EXPORT_NAME: u32 = 1;
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;

/// One connection to one export.
pub struct NbdConn {
    s: TcpStream,
    next: u64,
    /// Export size in bytes.
    pub size: u64,
}

impl NbdConn {
    /// Connects to `addr` (`HOST:PORT`) and opens export `name`.
    pub fn open(addr: &str, name: &str) -> NbdConn {
        let mut s = TcpStream::connect(addr).expect("connect to the NBD port");
        s.set_nodelay(true).ok();
        let mut hello = [0u8; 18];
        s.read_exact(&mut hello).expect("server greeting");
        assert_eq!(
            u64::from_be_bytes(hello[0..8].try_into().unwrap()),
            NBDMAGIC
        );
        assert_eq!(
            u64::from_be_bytes(hello[8..16].try_into().unwrap()),
            IHAVEOPT
        );
        s.write_all(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes())
            .unwrap();
        let mut opt = Vec::new();
        opt.extend_from_slice(&IHAVEOPT.to_be_bytes());
        opt.extend_from_slice(&OPT_EXPORT_NAME.to_be_bytes());
        opt.extend_from_slice(&(name.len() as u32).to_be_bytes());
        opt.extend_from_slice(name.as_bytes());
        s.write_all(&opt).unwrap();
        let mut info = [0u8; 10];
        s.read_exact(&mut info)
            .unwrap_or_else(|e| panic!("export {name} refused: {e}"));
        NbdConn {
            s,
            next: 1,
            size: u64::from_be_bytes(info[0..8].try_into().unwrap()),
        }
    }

    fn request(&mut self, cmd: u16, offset: u64, len: u32, data: &[u8]) {
        let error = self.try_request(cmd, offset, len, data);
        assert_eq!(error, 0, "NBD error {error} at offset {offset}");
    }

    /// Sends one request and returns the reply's error code (0: success).
    fn try_request(&mut self, cmd: u16, offset: u64, len: u32, data: &[u8]) -> u32 {
        let mut r = Vec::with_capacity(28 + data.len());
        r.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        r.extend_from_slice(&0u16.to_be_bytes());
        r.extend_from_slice(&cmd.to_be_bytes());
        r.extend_from_slice(&self.next.to_be_bytes());
        r.extend_from_slice(&offset.to_be_bytes());
        r.extend_from_slice(&len.to_be_bytes());
        r.extend_from_slice(data);
        self.s.write_all(&r).unwrap();
        let mut reply = [0u8; 16];
        self.s.read_exact(&mut reply).unwrap();
        assert_eq!(
            u32::from_be_bytes(reply[0..4].try_into().unwrap()),
            SIMPLE_REPLY_MAGIC
        );
        let error = u32::from_be_bytes(reply[4..8].try_into().unwrap());
        assert_eq!(
            u64::from_be_bytes(reply[8..16].try_into().unwrap()),
            self.next
        );
        self.next += 1;
        error
    }

    /// Writes `data` at `offset`; returns when the server acknowledged it.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        self.request(CMD_WRITE, offset, data.len() as u32, data);
    }

    /// Reads `len` bytes at `offset`.
    pub fn read(&mut self, offset: u64, len: u32) -> Vec<u8> {
        self.try_read(offset, len)
            .unwrap_or_else(|e| panic!("NBD error {e} at offset {offset}"))
    }

    /// Writes `data` at `offset`; the reply's error code (0: success).
    pub fn try_write(&mut self, offset: u64, data: &[u8]) -> u32 {
        self.try_request(CMD_WRITE, offset, data.len() as u32, data)
    }

    /// Reads `len` bytes at `offset`, or the reply's error code.
    pub fn try_read(&mut self, offset: u64, len: u32) -> Result<Vec<u8>, u32> {
        match self.try_request(CMD_READ, offset, len, &[]) {
            0 => {
                let mut buf = vec![0u8; len as usize];
                self.s.read_exact(&mut buf).unwrap();
                Ok(buf)
            }
            e => Err(e),
        }
    }
}
