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
    /// The best kept buffer for `len` bytes: the smallest with room for
    /// them, and with `filled`, one already that long first (so it needs no
    /// zero-filling). A 4 KiB WRITE payload thus does not take (and empty)
    /// a 1 MiB READ buffer that the next large READ would have to zero again.
    fn pop(&self, len: usize, filled: bool) -> Option<Vec<u8>> {
        if len == 0 || len > POOL_BUFFER_MAX_BYTES {
            return None;
        }
        let mut bufs = self.bufs.lock();
        let i = bufs
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| (filled && b.len() < len, b.capacity()))?
            .0;
        Some(bufs.swap_remove(i))
    }

    /// A buffer of exactly `len` bytes with unspecified contents.
    pub fn take_filled(&self, len: usize) -> Vec<u8> {
        match self.pop(len, true) {
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

    /// An empty buffer with room for `cap` bytes (no allocation for 0).
    pub fn take_empty(&self, cap: usize) -> Vec<u8> {
        match self.pop(cap, false) {
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
        p.give(e);
        // A request without payload takes nothing from the pool.
        let none = p.take_empty(0);
        assert_eq!(none.capacity(), 0);
        assert_eq!(p.bufs.lock().len(), 1);
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

    /// Large READ buffers stay filled: small payloads take the small
    /// buffers, and a READ takes a buffer already its length.
    #[test]
    fn best_fit_keeps_large_read_buffers_filled() {
        let p = BufPool::default();
        let big = p.take_filled(1 << 20);
        let big_ptr = big.as_ptr();
        let small = p.take_filled(4096);
        let small_ptr = small.as_ptr();
        p.give(big);
        p.give(small);
        let w = p.take_empty(4096);
        assert_eq!(
            w.as_ptr(),
            small_ptr,
            "a 4 KiB payload takes the 4 KiB buffer"
        );
        let r = p.take_filled(1 << 20);
        assert_eq!((r.as_ptr(), r.len()), (big_ptr, 1 << 20));
        p.give(w);
        p.give(r);
        // An emptied large buffer is still used when nothing else fits.
        let e = p.take_empty(1 << 20);
        assert_eq!(e.as_ptr(), big_ptr);
    }
}
