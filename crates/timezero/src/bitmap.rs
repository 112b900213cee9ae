//! [`Bitmap`]: one bit per grain (split and difference bitmaps).
//!
//! Wraps `bitvec::BitVec<u64, Lsb0>`: bit `i` is bit `i % 64` of little-endian
//! word `i / 64`, which is exactly the on-disk layout (`as_words`). Hot paths
//! (next/previous zero or one, popcount, and-not scans) loop over raw words.
//!
//! Invariants:
//! - the bits of the last word beyond `len` are always zero (so words compare
//!   and persist deterministically);
//! - `ones` equals the number of set bits;
//! - a word whose content changed since the last [`Bitmap::take_dirty`] has its
//!   dirty bit set (the controller persists only those words).

use bitvec::prelude::{BitVec, Lsb0};
use thiserror::Error;

const WORD_BITS: u64 = 64;

/// A bitmap given as raw words does not fit its declared length.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BitmapError {
    /// Wrong number of words for the length.
    #[error("bitmap of {len} bits needs {expected} words, got {actual}")]
    WordCount {
        /// Declared length in bits.
        len: u64,
        /// Words needed.
        expected: usize,
        /// Words given.
        actual: usize,
    },
    /// Bits set beyond the length in the last word.
    #[error("bitmap of {len} bits has bits set beyond its length")]
    TrailingBits {
        /// Declared length in bits.
        len: u64,
    },
}

/// A fixed-length bitmap with cached popcount and dirty-word tracking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitmap {
    bits: BitVec<u64, Lsb0>,
    ones: u64,
    dirty: BitVec<u64, Lsb0>,
}

/// Number of u64 words holding `len` bits.
pub fn words_for(len: u64) -> usize {
    len.div_ceil(WORD_BITS) as usize
}

fn tail_mask(len: u64) -> u64 {
    match len % WORD_BITS {
        0 => u64::MAX,
        r => (1u64 << r) - 1,
    }
}

impl Bitmap {
    /// `len` zero bits.
    pub fn new(len: u64) -> Bitmap {
        let words = words_for(len);
        let mut bits = BitVec::from_vec(vec![0u64; words]);
        bits.truncate(len as usize);
        Bitmap {
            bits,
            ones: 0,
            dirty: BitVec::repeat(false, words),
        }
    }

    /// `len` one bits.
    pub fn ones(len: u64) -> Bitmap {
        let mut b = Bitmap::new(len);
        b.fill(true);
        b
    }

    /// Rebuild from raw little-endian words (as stored by [`Bitmap::as_words`]).
    pub fn from_words(len: u64, words: &[u64]) -> Result<Bitmap, BitmapError> {
        let mut b = Bitmap::new(len);
        b.replace_words(words)?;
        b.clear_dirty();
        Ok(b)
    }

    /// Replace the whole content with raw words (all words become dirty).
    pub fn replace_words(&mut self, words: &[u64]) -> Result<(), BitmapError> {
        let len = self.len();
        let expected = words_for(len);
        if words.len() != expected {
            return Err(BitmapError::WordCount {
                len,
                expected,
                actual: words.len(),
            });
        }
        if let Some(last) = words.last() {
            if last & !tail_mask(len) != 0 {
                return Err(BitmapError::TrailingBits { len });
            }
        }
        self.bits.as_raw_mut_slice().copy_from_slice(words);
        self.ones = words.iter().map(|w| u64::from(w.count_ones())).sum();
        self.dirty.fill(true);
        Ok(())
    }

    /// Number of bits.
    pub fn len(&self) -> u64 {
        self.bits.len() as u64
    }

    /// Whether the bitmap has no bits at all.
    pub fn is_empty(&self) -> bool {
        self.bits.is_empty()
    }

    /// Raw little-endian words (bit `i` = bit `i % 64` of word `i / 64`).
    pub fn as_words(&self) -> &[u64] {
        self.bits.as_raw_slice()
    }

    /// Bit `i`; `false` beyond the length.
    pub fn get(&self, i: u64) -> bool {
        i < self.len() && self.bits[i as usize]
    }

    /// Set bit `i`; returns whether it changed. Beyond the length: no-op, `false`.
    pub fn set(&mut self, i: u64) -> bool {
        if i >= self.len() || self.bits[i as usize] {
            return false;
        }
        self.bits.set(i as usize, true);
        self.ones += 1;
        self.dirty.set((i / WORD_BITS) as usize, true);
        true
    }

    /// Set every bit to `value`.
    pub fn fill(&mut self, value: bool) {
        let len = self.len();
        let words = self.bits.as_raw_mut_slice();
        let n = words.len();
        for (i, w) in words.iter_mut().enumerate() {
            *w = if !value {
                0
            } else if i + 1 == n {
                tail_mask(len)
            } else {
                u64::MAX
            };
        }
        self.ones = if value { len } else { 0 };
        self.dirty.fill(true);
    }

    /// Set bits `start..end` (clamped to the length).
    pub fn set_range(&mut self, start: u64, end: u64) {
        let end = end.min(self.len());
        let mut i = start;
        while i < end {
            let wi = (i / WORD_BITS) as usize;
            let lo = i % WORD_BITS;
            let hi = (end - wi as u64 * WORD_BITS).min(WORD_BITS);
            let mask = if hi - lo == WORD_BITS {
                u64::MAX
            } else {
                ((1u64 << (hi - lo)) - 1) << lo
            };
            let w = &mut self.bits.as_raw_mut_slice()[wi];
            let added = (mask & !*w).count_ones();
            if added != 0 {
                *w |= mask;
                self.ones += u64::from(added);
                self.dirty.set(wi, true);
            }
            i = wi as u64 * WORD_BITS + hi;
        }
    }

    /// `self &= !other` (lengths must match; otherwise nothing happens and `false`).
    pub fn and_not_assign(&mut self, other: &Bitmap) -> bool {
        self.zip_assign(other, |a, b| a & !b)
    }

    /// `self &= other` (lengths must match; otherwise nothing happens and `false`).
    pub fn and_assign(&mut self, other: &Bitmap) -> bool {
        self.zip_assign(other, |a, b| a & b)
    }

    /// Whether some bit is set in both (lengths must match).
    pub fn any_and(&self, other: &Bitmap) -> bool {
        other.len() == self.len()
            && self
                .as_words()
                .iter()
                .zip(other.as_words())
                .any(|(a, b)| a & b != 0)
    }

    /// `self |= other` (lengths must match; otherwise nothing happens and `false`).
    pub fn or_assign(&mut self, other: &Bitmap) -> bool {
        self.zip_assign(other, |a, b| a | b)
    }

    fn zip_assign(&mut self, other: &Bitmap, f: impl Fn(u64, u64) -> u64) -> bool {
        if other.len() != self.len() {
            return false;
        }
        let mut ones = 0u64;
        for (a, b) in self
            .bits
            .as_raw_mut_slice()
            .iter_mut()
            .zip(other.as_words())
        {
            *a = f(*a, *b);
            ones += u64::from(a.count_ones());
        }
        self.ones = ones;
        self.dirty.fill(true);
        true
    }

    /// Number of set bits (cached, O(1)).
    pub fn count_ones(&self) -> u64 {
        self.ones
    }

    /// Every bit is set.
    pub fn is_full(&self) -> bool {
        self.ones == self.len()
    }

    /// Lowest set bit at or above `from`.
    pub fn next_one(&self, from: u64) -> Option<u64> {
        self.next_matching(from, |w| w)
    }

    /// Lowest clear bit at or above `from`.
    pub fn next_zero(&self, from: u64) -> Option<u64> {
        self.next_matching(from, |w| !w)
    }

    /// Highest clear bit at or below `at_or_below` (clamped to the length).
    pub fn prev_zero(&self, at_or_below: u64) -> Option<u64> {
        self.prev_matching(at_or_below, |_, w| !w)
    }

    /// Highest set bit at or below `at_or_below` (clamped to the length).
    pub fn prev_one(&self, at_or_below: u64) -> Option<u64> {
        self.prev_matching(at_or_below, |_, w| w)
    }

    /// Highest clear bit.
    pub fn highest_zero(&self) -> Option<u64> {
        self.prev_zero(u64::MAX)
    }

    /// Highest bit at or below `at_or_below` that is set here and clear in
    /// `other` (the cleaning scan). `None` if lengths differ.
    pub fn prev_one_and_not(&self, other: &Bitmap, at_or_below: u64) -> Option<u64> {
        if other.len() != self.len() {
            return None;
        }
        let ow = other.as_words();
        self.prev_matching(at_or_below, |i, w| w & !ow[i])
    }

    /// Whether some bit is set here and clear in `other` (lengths must match).
    pub fn any_and_not(&self, other: &Bitmap) -> bool {
        other.len() == self.len()
            && self
                .as_words()
                .iter()
                .zip(other.as_words())
                .any(|(a, b)| a & !b != 0)
    }

    fn next_matching(&self, from: u64, f: impl Fn(u64) -> u64) -> Option<u64> {
        let len = self.len();
        if from >= len {
            return None;
        }
        let words = self.as_words();
        let mut wi = (from / WORD_BITS) as usize;
        let mut w = f(words[wi]) & (u64::MAX << (from % WORD_BITS));
        loop {
            if w != 0 {
                let bit = wi as u64 * WORD_BITS + u64::from(w.trailing_zeros());
                return (bit < len).then_some(bit);
            }
            wi += 1;
            if wi >= words.len() {
                return None;
            }
            w = f(words[wi]);
        }
    }

    fn prev_matching(&self, at_or_below: u64, f: impl Fn(usize, u64) -> u64) -> Option<u64> {
        let len = self.len();
        if len == 0 {
            return None;
        }
        let start = at_or_below.min(len - 1);
        let words = self.as_words();
        let mut wi = (start / WORD_BITS) as usize;
        let keep = start % WORD_BITS;
        let first_mask = if keep == 63 {
            u64::MAX
        } else {
            (1u64 << (keep + 1)) - 1
        };
        let tail = if wi + 1 == words.len() {
            tail_mask(len)
        } else {
            u64::MAX
        };
        let mut w = f(wi, words[wi]) & first_mask & tail;
        loop {
            if w != 0 {
                return Some(wi as u64 * WORD_BITS + 63 - u64::from(w.leading_zeros()));
            }
            if wi == 0 {
                return None;
            }
            wi -= 1;
            w = f(wi, words[wi]);
        }
    }

    /// Indices of the words changed since the last call (ascending), and
    /// clear the dirty set.
    pub fn take_dirty(&mut self) -> Vec<usize> {
        let out: Vec<usize> = self.dirty.iter_ones().collect();
        self.dirty.fill(false);
        out
    }

    /// Whether any word changed since the last [`Bitmap::take_dirty`].
    pub fn has_dirty(&self) -> bool {
        self.dirty.any()
    }

    /// Forget the dirty set (after a full persist).
    pub fn clear_dirty(&mut self) {
        self.dirty.fill(false);
    }

    /// Heap bytes used (bits plus dirty tracker).
    pub fn heap_bytes(&self) -> usize {
        (self.bits.as_raw_slice().len() + self.dirty.as_raw_slice().len()) * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_match_naive() {
        for len in [0u64, 1, 63, 64, 65, 130, 200] {
            let mut b = Bitmap::new(len);
            for i in (0..len).filter(|i| i % 7 == 3 || i % 11 == 0) {
                assert!(b.set(i));
            }
            let naive: Vec<bool> = (0..len).map(|i| i % 7 == 3 || i % 11 == 0).collect();
            assert_eq!(b.count_ones(), naive.iter().filter(|x| **x).count() as u64);
            for from in 0..=len + 1 {
                let n1 = (from..len).find(|&i| naive[i as usize]);
                let n0 = (from..len).find(|&i| !naive[i as usize]);
                assert_eq!(b.next_one(from), n1, "len {len} from {from}");
                assert_eq!(b.next_zero(from), n0, "len {len} from {from}");
                let p0 = (0..len.min(from + 1)).rev().find(|&i| !naive[i as usize]);
                assert_eq!(b.prev_zero(from), p0, "len {len} at {from}");
            }
            let w = b.as_words().to_vec();
            assert_eq!(Bitmap::from_words(len, &w).unwrap(), {
                let mut c = b.clone();
                c.clear_dirty();
                c
            });
        }
    }

    #[test]
    fn fill_keeps_tail_clear_and_from_words_checks() {
        let mut b = Bitmap::new(70);
        b.fill(true);
        assert!(b.is_full());
        assert_eq!(b.as_words()[1], 0b11_1111);
        assert_eq!(b.highest_zero(), None);
        assert!(matches!(
            Bitmap::from_words(70, &[0, 1 << 6]),
            Err(BitmapError::TrailingBits { len: 70 })
        ));
        assert!(matches!(
            Bitmap::from_words(70, &[0]),
            Err(BitmapError::WordCount { expected: 2, .. })
        ));
    }

    #[test]
    fn dirty_words_and_and_not() {
        let mut a = Bitmap::new(200);
        a.set(5);
        a.set(130);
        assert_eq!(a.take_dirty(), vec![0, 2]);
        assert!(a.take_dirty().is_empty());
        let mut b = Bitmap::new(200);
        b.set(5);
        assert_eq!(a.prev_one_and_not(&b, 199), Some(130));
        assert_eq!(a.prev_one_and_not(&b, 129), None);
        assert!(a.any_and_not(&b));
        a.and_not_assign(&b);
        assert_eq!(a.count_ones(), 1);
    }
}
