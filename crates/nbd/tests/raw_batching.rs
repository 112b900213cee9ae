//! Writes a client has in flight together reach an export that shares work
//! between them (`Export::batches_writes`) as `Export::write_many` calls:
//! each write still gets its own reply with its own outcome, and the data
//! lands where it was sent.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::raw::Raw;
use common::{pattern, TestServer};
use nbd::proto::{cflag, cmd};
use nbd::{ErrorKind, Export, ExportError, ZeroFlags};

const SIZE: u64 = 1 << 20;
const ENOSPC: u32 = 28;
/// A write here fails (its neighbours in the batch must not).
const BAD_OFFSET: u64 = 13 * 4096;

/// A slow export whose writes share a commit when batched.
struct Batching {
    data: Mutex<Vec<u8>>,
    /// Sizes of the `write_many` calls.
    calls: Mutex<Vec<usize>>,
    /// Writes that came one at a time.
    singles: AtomicUsize,
}

impl Batching {
    fn put(&self, offset: u64, data: &[u8]) -> Result<(), ExportError> {
        if offset == BAD_OFFSET {
            return Err(ExportError::new(ErrorKind::NoSpace, "full"));
        }
        let mut d = self.data.lock().unwrap();
        d[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
}

impl Export for Batching {
    fn size(&self) -> u64 {
        SIZE
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), ExportError> {
        let d = self.data.lock().unwrap();
        buf.copy_from_slice(&d[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8], _fua: bool) -> Result<(), ExportError> {
        self.singles.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(2));
        self.put(offset, data)
    }
    fn batches_writes(&self) -> bool {
        true
    }
    fn write_many(&self, writes: &[(u64, &[u8])]) -> Vec<Result<(), ExportError>> {
        self.calls.lock().unwrap().push(writes.len());
        // One commit for the whole batch.
        std::thread::sleep(Duration::from_millis(2));
        writes.iter().map(|&(o, d)| self.put(o, d)).collect()
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

/// Sends `writes` (offset, data, flags) in one go, then reads every reply:
/// errno by cookie (cookie = index + 1).
fn pipelined(c: &mut Raw, writes: &[(u64, Vec<u8>, u16)]) -> Vec<u32> {
    let mut wire = Vec::new();
    for (i, (off, data, flags)) in writes.iter().enumerate() {
        let mut b = bytes::BytesMut::new();
        nbd::proto::encode_request(
            &mut b,
            &nbd::proto::RequestHeader {
                flags: *flags,
                kind: cmd::WRITE,
                cookie: i as u64 + 1,
                offset: *off,
                length: data.len() as u32,
            },
        );
        wire.extend_from_slice(&b);
        wire.extend_from_slice(data);
    }
    c.send(&wire);
    let mut errno = vec![u32::MAX; writes.len()];
    for _ in writes {
        let r = c.reply();
        assert!(r.done());
        let i = r.cookie() as usize - 1;
        assert_eq!(errno[i], u32::MAX, "two replies for cookie {}", i + 1);
        errno[i] = r.errno();
    }
    errno
}

#[test]
fn writes_in_flight_together_reach_write_many_with_their_own_replies() {
    let e = Arc::new(Batching {
        data: Mutex::new(vec![0; SIZE as usize]),
        calls: Mutex::new(Vec::new()),
        singles: AtomicUsize::new(0),
    });
    let d: Arc<dyn Export> = e.clone();
    let srv = TestServer::start(vec![("disk", d)]);
    let (mut c, _) = Raw::open(&srv.socket, "disk");
    // 32 writes of 4 KiB, one of them refused by the export, one with FUA
    // (never batched: it must be durable on its own).
    let writes: Vec<(u64, Vec<u8>, u16)> = (0..32u64)
        .map(|i| {
            let flags = if i == 20 { cflag::FUA } else { 0 };
            (i * 4096, pattern(4096, i + 100), flags)
        })
        .collect();
    let errno = pipelined(&mut c, &writes);
    for (i, (off, _, _)) in writes.iter().enumerate() {
        let want = if *off == BAD_OFFSET { ENOSPC } else { 0 };
        assert_eq!(errno[i], want, "write {i}");
    }
    for (i, (off, data, _)) in writes.iter().enumerate() {
        let got = c.read(1000 + i as u64, *off, 4096).unwrap();
        if *off == BAD_OFFSET {
            assert_eq!(got, vec![0; 4096], "the refused write changed data");
        } else {
            assert_eq!(&got, data, "write {i}");
        }
    }
    let calls = e.calls.lock().unwrap().clone();
    let batched: usize = calls.iter().sum();
    let singles = e.singles.load(Ordering::SeqCst);
    assert_eq!(
        batched + singles,
        32,
        "every write ran once: {calls:?} + {singles}"
    );
    assert!(
        calls.iter().any(|&n| n > 1),
        "no write_many call had more than one write: {calls:?}"
    );
    assert!(singles >= 1, "the FUA write went into a batch");
}
