//! Turning an export's allocation extents into `BLOCK_STATUS` descriptors.
//!
//! Invariants of the output (what qemu and libnbd check):
//! - at least one descriptor, each with a non-zero length;
//! - every length is a multiple of the minimum block size, except the last
//!   one when it ends exactly at the end of the request;
//! - the sum never exceeds the request length; with `REQ_ONE` there is
//!   exactly one descriptor;
//! - a block made of several extents gets only the flags all of them share
//!   (claiming less is always safe: flags 0 means "data").

use crate::export::Extent;

/// Most descriptors in one reply (8 bytes each); the rest is left for the
/// client's next request.
pub const MAX_DESCRIPTORS: usize = 1 << 16;

/// Build descriptors `(length, flags)` for a request of `len` bytes from
/// extents starting at the request offset. `min` is the minimum block size.
/// Returns `None` if the extents cover nothing.
pub fn descriptors(
    extents: &[Extent],
    len: u32,
    min: u32,
    req_one: bool,
) -> Option<Vec<(u32, u32)>> {
    let len = u64::from(len);
    let min = u64::from(min.max(1));
    let mut out: Vec<(u32, u32)> = Vec::new();
    let emit = |out: &mut Vec<(u32, u32)>, n: u64, flags: u32| match out.last_mut() {
        Some(last) if last.1 == flags => last.0 += n as u32,
        _ => out.push((n as u32, flags)),
    };
    let mut pos = 0u64;
    // A block only partly covered so far: (block start, flags shared so far).
    let mut partial: Option<(u64, u32)> = None;
    'runs: for e in extents {
        let end = pos.saturating_add(e.len).min(len);
        let f = e.flags.bits();
        while pos < end {
            // With REQ_ONE the first descriptor is final once a second starts.
            if out.len() >= MAX_DESCRIPTORS || (req_one && out.len() > 1) {
                break 'runs;
            }
            if let Some((bstart, acc)) = partial {
                let block_end = (bstart + min).min(len);
                let acc = acc & f;
                pos = end.min(block_end);
                if pos == block_end {
                    emit(&mut out, block_end - bstart, acc);
                    partial = None;
                } else {
                    partial = Some((bstart, acc));
                }
            } else {
                let whole_end = if end == len { end } else { end - end % min };
                if whole_end > pos {
                    emit(&mut out, whole_end - pos, f);
                    pos = whole_end;
                } else {
                    partial = Some((pos, u32::MAX));
                }
            }
        }
        if pos >= len {
            break;
        }
    }
    if out.is_empty() {
        // Extents stopped inside the first block: claim plain data for it.
        let (bstart, _) = partial?;
        out.push((((bstart + min).min(len) - bstart) as u32, 0));
    }
    if req_one {
        out.truncate(1);
    }
    // The reply holds this vector until the client reads it, and is charged
    // by the descriptors it may carry (transmit.rs): a vector grown by
    // doubling could hold up to twice that.
    out.shrink_to_fit();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::ExtentFlags as F;

    fn ext(v: &[(u64, F)]) -> Vec<Extent> {
        v.iter()
            .map(|&(len, flags)| Extent { len, flags })
            .collect()
    }

    #[test]
    fn aligned_extents_pass_through_and_merge_equal_neighbours() {
        let e = ext(&[(4096, F::DATA), (4096, F::DATA), (8192, F::HOLE_ZERO)]);
        assert_eq!(
            descriptors(&e, 16384, 512, false),
            Some(vec![(8192, 0), (8192, 3)])
        );
    }

    #[test]
    fn clipped_to_request_length() {
        let e = ext(&[(1 << 20, F::HOLE_ZERO)]);
        assert_eq!(descriptors(&e, 4096, 512, false), Some(vec![(4096, 3)]));
    }

    #[test]
    fn partial_block_takes_shared_flags() {
        // 100 bytes data then hole: the first 512-byte block is data.
        let e = ext(&[(100, F::DATA), (4000, F::HOLE_ZERO)]);
        assert_eq!(
            descriptors(&e, 4096, 512, false),
            Some(vec![(512, 0), (3584, 3)])
        );
        let e = ext(&[(100, F::HOLE_ZERO), (412, F::ZERO), (512, F::HOLE_ZERO)]);
        assert_eq!(
            descriptors(&e, 1024, 512, false),
            Some(vec![(512, 2), (512, 3)])
        );
    }

    #[test]
    fn every_length_is_a_multiple_of_min_except_at_request_end() {
        let e = ext(&[(700, F::DATA), (300, F::HOLE_ZERO), (1000, F::ZERO)]);
        let d = descriptors(&e, 1500, 512, false).unwrap();
        let sum: u32 = d.iter().map(|x| x.0).sum();
        assert!(sum <= 1500);
        for (i, (l, _)) in d.iter().enumerate() {
            assert!(*l > 0);
            assert!(l % 512 == 0 || (i == d.len() - 1 && sum == 1500), "{d:?}");
        }
    }

    #[test]
    fn short_extents_inside_first_block_claim_data() {
        let e = ext(&[(100, F::HOLE_ZERO)]);
        assert_eq!(descriptors(&e, 4096, 512, false), Some(vec![(512, 0)]));
        assert_eq!(descriptors(&[], 4096, 512, false), None);
    }

    #[test]
    fn req_one_gives_exactly_one() {
        let e = ext(&[(4096, F::DATA), (4096, F::HOLE_ZERO)]);
        assert_eq!(descriptors(&e, 8192, 512, true), Some(vec![(4096, 0)]));
    }

    /// A reply waits in memory until the client reads it and is charged by
    /// its descriptors: the vector must hold no more. With REQ_ONE over
    /// 40,000 alternating extents it held a 512 KiB vector while charged
    /// for one descriptor.
    #[test]
    fn descriptors_hold_no_spare_capacity() {
        let many: Vec<Extent> = (0..40_000)
            .map(|i| Extent {
                len: 512,
                flags: if i % 2 == 0 { F::DATA } else { F::HOLE_ZERO },
            })
            .collect();
        let len = 40_000 * 512;
        let one = descriptors(&many, len, 512, true).unwrap();
        assert_eq!(one, vec![(512, 0)]);
        assert_eq!(one.capacity(), 1);
        let all = descriptors(&many, len, 512, false).unwrap();
        assert_eq!(all.len(), 40_000);
        assert_eq!(all.capacity(), 40_000);
    }

    #[test]
    fn zero_length_extents_are_skipped() {
        let e = ext(&[(0, F::DATA), (4096, F::HOLE)]);
        assert_eq!(descriptors(&e, 4096, 512, false), Some(vec![(4096, 1)]));
    }
}
