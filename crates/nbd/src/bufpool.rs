//! A small per-connection pool of data buffers, so READ replies and WRITE
//! payloads do not allocate (and page-fault) a fresh buffer per request.
//!
//! Invariants:
//! - At most [`POOL_BUFFERS`] buffers of at most [`POOL_BUFFER_MAX_BYTES`]
//!   capacity are kept; larger ones are freed.
//! - A buffer from [`BufPool::take_filled`] may hold bytes of an earlier
//!   request of the same connection; it is only sent after the export's
//!   `read` succeeded, which overwrites every byte (the `Export` contract).

use parking_lot::Mutex;

/// Buffers kept per connection.
pub(crate) const POOL_BUFFERS: usize = 16;
/// Largest buffer capacity kept.
pub(crate) const POOL_BUFFER_MAX_BYTES: usize = 1 << 20;

#[derive(Default)]
pub(crate) struct BufPool {
    bufs: Mutex<Vec<Vec<u8>>>,
}

impl BufPool {
    fn pop(&self, len: usize) -> Option<Vec<u8>> {
        if len > POOL_BUFFER_MAX_BYTES {
            return None;
        }
        let mut bufs = self.bufs.lock();
        let i = bufs.iter().rposition(|b| b.capacity() >= len)?;
        Some(bufs.swap_remove(i))
    }

    /// A buffer of exactly `len` bytes with unspecified contents.
    pub fn take_filled(&self, len: usize) -> Vec<u8> {
        match self.pop(len) {
            Some(mut b) => {
                if b.len() >= len {
                    b.truncate(len);
                } else {
                    b.resize(len, 0);
                }
                b
            }
            None => vec![0u8; len],
        }
    }

    /// An empty buffer with room for `cap` bytes.
    pub fn take_empty(&self, cap: usize) -> Vec<u8> {
        match self.pop(cap) {
            Some(mut b) => {
                b.clear();
                b
            }
            None => Vec::with_capacity(cap),
        }
    }

    /// Return a buffer for reuse.
    pub fn give(&self, b: Vec<u8>) {
        if b.capacity() == 0 || b.capacity() > POOL_BUFFER_MAX_BYTES {
            return;
        }
        let mut bufs = self.bufs.lock();
        if bufs.len() < POOL_BUFFERS {
            bufs.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_and_bounds() {
        let p = BufPool::default();
        let b = p.take_filled(4096);
        assert_eq!(b.len(), 4096);
        let ptr = b.as_ptr();
        p.give(b);
        let b = p.take_filled(1024);
        assert_eq!((b.len(), b.as_ptr()), (1024, ptr), "reused");
        p.give(b);
        let e = p.take_empty(2048);
        assert!(e.is_empty() && e.capacity() >= 2048);
        for _ in 0..100 {
            p.give(vec![0; 16]);
        }
        assert_eq!(p.bufs.lock().len(), POOL_BUFFERS);
        p.give(vec![0; POOL_BUFFER_MAX_BYTES + 1]);
        assert!(p
            .bufs
            .lock()
            .iter()
            .all(|b| b.capacity() <= POOL_BUFFER_MAX_BYTES));
    }
}
