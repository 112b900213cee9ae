//! Token bucket that paces background copy and cleaning (QA Q21).
//!
//! Invariants: budget accrues at the map's rate (docs/ENGINE.md, "Copy and clean rates"; scaled
//! down by the config caps) for the time that passed; a grain is copied only
//! when a whole grain's budget is available; unused (fractional) budget
//! carries over to the next tick; the bucket holds at most one second of
//! budget (and never less than one grain), so idle time does not burst.

use std::time::Duration;

/// Byte budget of one map's background work.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct RateBucket {
    tokens: f64,
}

impl RateBucket {
    /// Adds `bytes_per_s * elapsed` of budget, capped at one second's worth
    /// (at least one grain).
    pub(crate) fn refill(&mut self, bytes_per_s: f64, elapsed: Duration, grain_bytes: u64) {
        let cap = bytes_per_s.max(grain_bytes as f64);
        self.tokens = (self.tokens + bytes_per_s * elapsed.as_secs_f64()).min(cap);
    }

    /// Bytes that may be moved now: whole grains only (0 when less than one
    /// grain's budget has accrued).
    pub(crate) fn allowance(&self, grain_bytes: u64) -> u64 {
        if grain_bytes == 0 {
            return 0;
        }
        if self.tokens < grain_bytes as f64 {
            return 0;
        }
        (self.tokens / grain_bytes as f64) as u64 * grain_bytes
    }

    /// Takes `bytes` moved out of the budget (the rest carries over). A
    /// chunk that overshot (chained runs are not split) leaves a debt that
    /// later refills repay, so the long-run rate still holds.
    pub(crate) fn spend(&mut self, bytes: u64) {
        self.tokens -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timezero::rate_bytes_per_second;

    const GRAIN: u64 = 64 << 10;

    /// Grains copied in `secs` of simulated 100 ms ticks, spending all
    /// allowed grains each tick.
    fn grains_in(rate: u8, secs: u64) -> u64 {
        let mut b = RateBucket::default();
        let mut grains = 0;
        for _ in 0..secs * 10 {
            b.refill(
                rate_bytes_per_second(rate) as f64,
                Duration::from_millis(100),
                GRAIN,
            );
            let n = b.allowance(GRAIN) / GRAIN;
            b.spend(n * GRAIN);
            grains += n;
        }
        grains
    }

    #[test]
    fn rate_10_allows_two_64k_grains_per_second() {
        // 128 KiB/s: 2 grains per second, not one per 100 ms tick.
        assert_eq!(grains_in(10, 1), 2);
        assert_eq!(grains_in(10, 60), 120);
    }

    #[test]
    fn rates_1_to_10_all_run_at_128_kib_per_second() {
        for rate in 1..=10 {
            assert_eq!(grains_in(rate, 30) * GRAIN, 30 * 128 * 1024, "rate {rate}");
        }
        // 11..20 doubles it.
        assert_eq!(grains_in(11, 30) * GRAIN, 30 * 256 * 1024);
    }

    #[test]
    fn rate_50_runs_at_2_mib_per_second() {
        // 3.2 grains per tick: the fraction carries, no rounding up to 4.
        assert_eq!(grains_in(50, 10) * GRAIN, 10 * 2 * 1024 * 1024);
    }

    #[test]
    fn idle_time_does_not_burst_and_no_grain_before_its_budget() {
        let mut b = RateBucket::default();
        let r = rate_bytes_per_second(10) as f64;
        b.refill(r, Duration::from_millis(400), GRAIN);
        assert_eq!(b.allowance(GRAIN), 0, "0.8 grain accrued: nothing yet");
        b.refill(r, Duration::from_millis(100), GRAIN);
        assert_eq!(b.allowance(GRAIN), GRAIN);
        b.refill(r, Duration::from_secs(3600), GRAIN);
        assert_eq!(b.allowance(GRAIN), 2 * GRAIN, "capped at one second");
        // A partial spend (holes are free, or a smaller last grain) keeps the rest.
        b.spend(GRAIN / 2);
        assert_eq!(b.allowance(GRAIN), GRAIN);
        // An overshoot is repaid before the next grain.
        b.spend(2 * GRAIN); // 1.5 grains banked: half a grain of debt
        b.refill(r, Duration::from_millis(500), GRAIN);
        assert_eq!(b.allowance(GRAIN), 0);
        b.refill(r, Duration::from_millis(500), GRAIN);
        assert_eq!(b.allowance(GRAIN), GRAIN);
        // A rate below one grain per second still gets whole grains.
        let mut slow = RateBucket::default();
        slow.refill(1000.0, Duration::from_secs(1000), GRAIN);
        assert_eq!(slow.allowance(GRAIN), GRAIN);
        assert_eq!(slow.allowance(0), 0);
    }
}
