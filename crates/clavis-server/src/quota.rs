//! Request quotas: token buckets per account for cryptographic operations (AWS KMS's request
//! quotas are per account and region; Clavis counts every region of an account together, since
//! it accepts any region name), and optionally per access key for every operation. A request
//! beyond them is refused with `ThrottlingException` before it runs; the AWS SDKs retry those
//! with backoff.
//!
//! It must not limit what it cannot attribute: it runs after authentication, on the caller's
//! verified account, region and access key.

use clavis_core::Operation;
use clavis_core::operation::Family;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// The quota settings. A rate of 0 is unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Cryptographic requests per second per account, all regions together (AWS's default
    /// quotas, per account and region, are 5,500 to 100,000; Clavis's default is 10,000).
    pub account_requests_per_second: f64,
    /// Requests of any operation per second per access key (beyond AWS; 0 = unlimited).
    pub access_key_requests_per_second: f64,
    /// Requests a bucket holds at most, that is the largest burst above the rate (0 = one
    /// second's worth of each rate).
    pub burst: f64,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits { account_requests_per_second: 10_000.0, access_key_requests_per_second: 0.0, burst: 0.0 }
    }
}

/// The AWS KMS operations counted against the cryptographic-operations quota (AWS's "request
/// quotas": cryptographic operations share one quota per account and region).
pub fn is_cryptographic(op: Operation) -> bool {
    op.family() == Family::Kms
        && matches!(
            op.name(),
            "Encrypt"
                | "Decrypt"
                | "ReEncrypt"
                | "GenerateDataKey"
                | "GenerateDataKeyWithoutPlaintext"
                | "GenerateDataKeyPair"
                | "GenerateDataKeyPairWithoutPlaintext"
                | "GenerateRandom"
                | "Sign"
                | "Verify"
                | "GenerateMac"
                | "VerifyMac"
                | "DeriveSharedSecret"
        )
}

/// Buckets tracked at most per table; beyond it, buckets that have refilled are forgotten
/// (they would start full anyway), and if none has, the request is refused (fail closed).
const MAX_BUCKETS: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Default)]
struct Tables {
    accounts: HashMap<String, Bucket>,
    access_keys: HashMap<String, Bucket>,
}

/// Which quota refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// The account's cryptographic-request quota.
    Account,
    /// The access key's own quota.
    AccessKey,
}

/// The buckets, shared by every connection.
pub struct RequestLimiter {
    limits: RateLimits,
    tables: Mutex<Tables>,
}

/// Refills `bucket` (or a full new one) and whether it holds a token.
fn refilled(table: &mut HashMap<String, Bucket>, key: &str, rate: f64, cap: f64, now: Instant) -> Option<Bucket> {
    let b = table.get(key).map_or(Bucket { tokens: cap, last: now }, |b| Bucket {
        tokens: (b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate).min(cap),
        last: now,
    });
    if table.len() >= MAX_BUCKETS && !table.contains_key(key) {
        table.retain(|_, b| b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < cap);
        if table.len() >= MAX_BUCKETS {
            return None;
        }
    }
    Some(b)
}

impl RequestLimiter {
    /// A limiter enforcing `limits`.
    pub fn new(limits: RateLimits) -> RequestLimiter {
        RequestLimiter { limits, tables: Mutex::default() }
    }

    /// Spends one token of each quota that applies to a caller (its verified account, region
    /// and access key) calling `op`, or says which one is exhausted (then none is spent).
    pub fn admit(&self, account: &str, region: &str, access_key_id: &str, op: Operation) -> Result<(), Exceeded> {
        let account_rate = if is_cryptographic(op) { self.limits.account_requests_per_second } else { 0.0 };
        let key_rate = self.limits.access_key_requests_per_second;
        if account_rate <= 0.0 && key_rate <= 0.0 {
            return Ok(());
        }
        let cap = |rate: f64| if self.limits.burst > 0.0 { self.limits.burst } else { rate }.max(1.0);
        let now = Instant::now();
        // A poisoned lock only means a panic elsewhere mid-update of plain numbers: go on.
        let mut tables = self.tables.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // By account alone: Clavis accepts any well-formed region name (without
        // --allowed-regions), so a bucket per region would multiply the quota by made-up names.
        let _ = region;
        let account_key = account.to_owned();
        let account = if account_rate > 0.0 {
            match refilled(&mut tables.accounts, &account_key, account_rate, cap(account_rate), now) {
                Some(b) if b.tokens >= 1.0 => Some(b),
                _ => return Err(Exceeded::Account),
            }
        } else {
            None
        };
        let access_key = if key_rate > 0.0 {
            match refilled(&mut tables.access_keys, access_key_id, key_rate, cap(key_rate), now) {
                Some(b) if b.tokens >= 1.0 => Some(b),
                _ => return Err(Exceeded::AccessKey),
            }
        } else {
            None
        };
        if let Some(b) = account {
            tables.accounts.insert(account_key, Bucket { tokens: b.tokens - 1.0, last: b.last });
        }
        if let Some(b) = access_key {
            tables.access_keys.insert(access_key_id.to_owned(), Bucket { tokens: b.tokens - 1.0, last: b.last });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failure should stop the test loudly")]
    use super::*;

    /// A caller: account and access key (region us-east-1).
    fn caller<'a>(account: &'a str, key: &'a str) -> (&'a str, &'a str) {
        (account, key)
    }

    impl RequestLimiter {
        fn admit_as(&self, who: &(&str, &str), op: Operation) -> Result<(), Exceeded> {
            self.admit(who.0, "us-east-1", who.1, op)
        }
    }

    fn op(name: &str) -> Operation {
        Operation::from_name(name).unwrap()
    }

    #[test]
    fn account_quota_counts_cryptographic_operations_only() {
        let l = RequestLimiter::new(RateLimits { account_requests_per_second: 0.001, access_key_requests_per_second: 0.0, burst: 3.0 });
        let a = caller("111122223333", "AKIAAAAAAAAAAAAAAAAA");
        for _ in 0..3 {
            l.admit_as(&a, op("Encrypt")).unwrap();
        }
        assert_eq!(l.admit_as(&a, op("Decrypt")), Err(Exceeded::Account));
        // Management operations have no quota by default.
        l.admit_as(&a, op("ListKeys")).unwrap();
        // Another access key of the same account shares the account's quota...
        assert_eq!(l.admit_as(&caller("111122223333", "AKIABBBBBBBBBBBBBBBB"), op("Encrypt")), Err(Exceeded::Account));
        // ...another account does not.
        l.admit_as(&caller("444455556666", "AKIACCCCCCCCCCCCCCCC"), op("Encrypt")).unwrap();
    }

    #[test]
    fn access_key_quota_is_per_key_and_spends_nothing_when_refused() {
        let l = RequestLimiter::new(RateLimits { account_requests_per_second: 0.001, access_key_requests_per_second: 0.001, burst: 2.0 });
        let a = caller("111122223333", "AKIAAAAAAAAAAAAAAAAA");
        let b = caller("111122223333", "AKIABBBBBBBBBBBBBBBB");
        l.admit_as(&a, op("ListKeys")).unwrap();
        l.admit_as(&a, op("ListKeys")).unwrap();
        // Key a is exhausted; the account quota was not touched by management calls.
        assert_eq!(l.admit_as(&a, op("Encrypt")), Err(Exceeded::AccessKey));
        l.admit_as(&b, op("Encrypt")).unwrap();
        l.admit_as(&b, op("Encrypt")).unwrap();
        assert_eq!(l.admit_as(&b, op("Encrypt")), Err(Exceeded::Account));
        // Unlimited.
        let none = RequestLimiter::new(RateLimits { account_requests_per_second: 0.0, access_key_requests_per_second: 0.0, burst: 0.0 });
        for _ in 0..1000 {
            none.admit_as(&a, op("Encrypt")).unwrap();
        }
    }

    #[test]
    fn tokens_refill_at_the_rate() {
        let l = RequestLimiter::new(RateLimits { account_requests_per_second: 1000.0, access_key_requests_per_second: 0.0, burst: 1.0 });
        let a = caller("111122223333", "AKIAAAAAAAAAAAAAAAAA");
        l.admit_as(&a, op("Encrypt")).unwrap();
        assert!(l.admit_as(&a, op("Encrypt")).is_err());
        std::thread::sleep(std::time::Duration::from_millis(5));
        l.admit_as(&a, op("Encrypt")).unwrap();
    }
}
