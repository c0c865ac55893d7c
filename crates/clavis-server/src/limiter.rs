//! Per-source token buckets for requests that fail before they reach an operation: failed
//! authentications and operator (init/unseal) attempts. A flood from one address is refused
//! with `ThrottlingException` once its bucket is empty, and its refusals are counted in the
//! next record from that address instead of each writing one (the audit log's growth per
//! source is then bounded by the refill rate).
//!
//! It must not limit authenticated requests: those are the clients the server exists for.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// The most sources tracked at once; beyond it, sources whose buckets have refilled are
/// forgotten (they would start full anyway).
const MAX_SOURCES: usize = 16_384;

struct Bucket {
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

/// What to do with one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Refuse it with `ThrottlingException` and write no record of its own.
    pub throttled: bool,
    /// Earlier refusals from this source without a record, to count in this one's record.
    pub suppressed_before: u64,
}

/// Token buckets by source address.
pub struct FailureLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl FailureLimiter {
    /// `per_second` failures refill per source, up to `burst` at once. A rate of 0 disables
    /// the limit.
    pub fn new(per_second: f64, burst: f64) -> FailureLimiter {
        FailureLimiter { per_second, burst: burst.max(1.0), buckets: Mutex::new(HashMap::new()) }
    }

    /// Whether `source` is over its limit, without spending a token (for requests that a
    /// throttled source may not even attempt, such as unseal shares).
    pub fn is_throttled(&self, source: Option<IpAddr>) -> bool {
        let (Some(ip), true) = (source, self.per_second > 0.0) else { return false };
        let Ok(mut buckets) = self.buckets.lock() else { return false };
        buckets.get_mut(&ip).is_some_and(|b| {
            self.refill(b);
            b.tokens < 1.0
        })
    }

    fn refill(&self, b: &mut Bucket) {
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * self.per_second).min(self.burst);
        b.last = now;
    }

    /// Spends a token for one failure from `source`.
    pub fn failure(&self, source: Option<IpAddr>) -> Verdict {
        let pass = Verdict { throttled: false, suppressed_before: 0 };
        let (Some(ip), true) = (source, self.per_second > 0.0) else { return pass };
        let Ok(mut buckets) = self.buckets.lock() else { return pass };
        if buckets.len() >= MAX_SOURCES && !buckets.contains_key(&ip) {
            let now = Instant::now();
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst || b.suppressed > 0);
            if buckets.len() >= MAX_SOURCES {
                // Every tracked source is mid-flood: refuse newcomers rather than forget one.
                return Verdict { throttled: true, suppressed_before: 0 };
            }
        }
        let b = buckets.entry(ip).or_insert(Bucket { tokens: self.burst, last: Instant::now(), suppressed: 0 });
        self.refill(b);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            let suppressed_before = std::mem::take(&mut b.suppressed);
            Verdict { throttled: false, suppressed_before }
        } else {
            b.suppressed += 1;
            Verdict { throttled: true, suppressed_before: 0 }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_throttled_and_counted() {
        let l = FailureLimiter::new(0.001, 3.0);
        let ip = "192.0.2.1".parse().ok();
        for _ in 0..3 {
            assert_eq!(l.failure(ip), Verdict { throttled: false, suppressed_before: 0 });
        }
        for _ in 0..5 {
            assert!(l.failure(ip).throttled);
        }
        assert!(l.is_throttled(ip));
        // Another source is unaffected.
        assert!(!l.failure("192.0.2.2".parse().ok()).throttled);
        let fast = FailureLimiter::new(1_000_000.0, 1.0);
        assert!(!fast.failure(ip).throttled);
        assert!(!FailureLimiter::new(0.0, 1.0).failure(ip).throttled);
    }
}
