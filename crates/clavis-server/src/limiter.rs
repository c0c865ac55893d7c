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

/// Token buckets by source: an IPv4 address, or an IPv6 /64 (one host usually holds a whole
/// /64, so keying by address would give it 2^64 buckets).
pub struct FailureLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    by_source: HashMap<IpAddr, Bucket>,
    /// Shared by the sources that arrive while the table is full of sources mid-flood: they are
    /// limited together, and their refusals are counted here, not lost.
    overflow: Option<Bucket>,
}

/// The key a source is limited under.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(std::net::Ipv6Addr::from(seg))
            }
        },
        v4 => v4,
    }
}

impl FailureLimiter {
    /// `per_second` failures refill per source, up to `burst` at once. A rate of 0 disables
    /// the limit.
    pub fn new(per_second: f64, burst: f64) -> FailureLimiter {
        FailureLimiter { per_second, burst: burst.max(1.0), buckets: Mutex::new(Buckets::default()) }
    }

    fn refill(&self, b: &mut Bucket) {
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * self.per_second).min(self.burst);
        b.last = now;
    }

    /// Spends a token for one attempt from `source`: whether to refuse it, and how many
    /// refusals to count in its record.
    pub fn failure(&self, source: Option<IpAddr>) -> Verdict {
        let pass = Verdict { throttled: false, suppressed_before: 0 };
        let (Some(ip), true) = (source, self.per_second > 0.0) else { return pass };
        let ip = source_key(ip);
        let Ok(mut buckets) = self.buckets.lock() else { return pass };
        let fresh = Bucket { tokens: self.burst, last: Instant::now(), suppressed: 0 };
        if buckets.by_source.len() >= MAX_SOURCES && !buckets.by_source.contains_key(&ip) {
            // Forget sources that have refilled and have nothing to report.
            let now = Instant::now();
            let (rate, burst) = (self.per_second, self.burst);
            buckets.by_source.retain(|_, b| b.suppressed > 0 || b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
        }
        let bucket = if buckets.by_source.len() < MAX_SOURCES || buckets.by_source.contains_key(&ip) {
            buckets.by_source.entry(ip).or_insert(fresh)
        } else {
            buckets.overflow.get_or_insert(fresh)
        };
        self.refill(bucket);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Verdict { throttled: false, suppressed_before: std::mem::take(&mut bucket.suppressed) }
        } else {
            bucket.suppressed += 1;
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
        // The next attempt after a refill reports the refusals.
        let l2 = FailureLimiter::new(1000.0, 1.0);
        assert!(!l2.failure(ip).throttled);
        assert!(l2.failure(ip).throttled);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(l2.failure(ip).suppressed_before, 1);
        // One IPv6 host's /64 is one source.
        let a = "2001:db8::1".parse().ok();
        let b = "2001:db8::ffff:1".parse().ok();
        let one = FailureLimiter::new(0.001, 1.0);
        assert!(!one.failure(a).throttled);
        assert!(one.failure(b).throttled);
        // Another source is unaffected.
        assert!(!l.failure("192.0.2.2".parse().ok()).throttled);
        let fast = FailureLimiter::new(1_000_000.0, 1.0);
        assert!(!fast.failure(ip).throttled);
        assert!(!FailureLimiter::new(0.0, 1.0).failure(ip).throttled);
    }
}
