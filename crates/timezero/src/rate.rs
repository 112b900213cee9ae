//! The SVC copy/clean rate table (docs/ENGINE.md, "Copy and clean rates"), the same for both rates.
//!
//! Rate 0 copies nothing; 1-10 is 128 KiB/s and every further step of 10
//! doubles it: 91-100 is 64 MiB/s, 141-150 is 2 GiB/s (the rows above 100
//! continue the doubling; no published table was checked for them).

/// Highest valid rate.
pub const RATE_MAX: u8 = 150;

/// Bytes per second for a copy or clean rate (0 for rate 0; rates above 150
/// are treated as 150).
pub fn rate_bytes_per_second(rate: u8) -> u64 {
    if rate == 0 {
        return 0;
    }
    let step = (u32::from(rate.min(RATE_MAX)) - 1) / 10;
    (128 * 1024u64) << step
}

/// Grains per second for a rate and a grain (track) size; fractional rates
/// (e.g. 0.5 grains/s of 256 KiB at rate 5) are kept.
pub fn rate_grains_per_second(rate: u8, grain_bytes: u64) -> f64 {
    if grain_bytes == 0 {
        return 0.0;
    }
    rate_bytes_per_second(rate) as f64 / grain_bytes as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_svc_table_rows() {
        let kib = 1024u64;
        assert_eq!(rate_bytes_per_second(0), 0);
        assert_eq!(rate_bytes_per_second(1), 128 * kib);
        assert_eq!(rate_bytes_per_second(10), 128 * kib);
        assert_eq!(rate_bytes_per_second(11), 256 * kib);
        assert_eq!(rate_bytes_per_second(50), 2 * 1024 * kib);
        assert_eq!(rate_bytes_per_second(100), 64 * 1024 * kib);
        assert_eq!(rate_bytes_per_second(150), 2 * 1024 * 1024 * kib);
        assert_eq!(rate_grains_per_second(5, 256 * kib), 0.5);
        assert_eq!(rate_grains_per_second(100, 64 * kib), 1024.0);
    }
}
