//! Clavis's Prometheus metrics: one process-wide registry that the server, the core, the audit
//! log and the scheduler record into, served at `GET /metrics` (docs/operations.md lists every
//! metric).
//!
//! It owns the metric names, types and label sets, and the encoding (prometheus-client's
//! OpenMetrics text). Labels are bounded sets only: operation names from the catalogue, AWS
//! error codes, fixed words. It must never be given a key id, principal, access key, alias,
//! secret or any other client-chosen string as a label value.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;

/// The Content-Type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of a request: its operation (a catalogue name, or `unknown`) and outcome (`ok` or
/// the AWS error code).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The operation's name.
    pub operation: &'static str,
    /// `ok`, or the error code.
    pub code: &'static str,
}

/// Labels naming an operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The operation's name.
    pub operation: &'static str,
}

/// Labels naming which quota refused a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuotaLabels {
    /// `account` or `access_key`, or `auth_failures` for the failed-authentication limit.
    pub quota: &'static str,
}

/// Labels of a cache lookup.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// Which cache: `key`, `credential`, `secret`.
    pub cache: &'static str,
}

/// Every metric.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by operation and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency (seconds, from the request's arrival to its response), by operation.
    pub request_seconds: Family<OperationLabels, Histogram>,
    /// Requests refused by a quota.
    pub throttled: Family<QuotaLabels, Counter>,
    /// Time from an audit batch's first write to its commit (seconds).
    pub audit_commit_seconds: Histogram,
    /// Records per audit commit.
    pub audit_batch_records: Histogram,
    /// Bytes appended to the audit log.
    pub audit_bytes: Counter,
    /// Audit commits that failed.
    pub audit_failures: Counter,
    /// Cache hits, by cache.
    pub cache_hits: Family<CacheLabels, Counter>,
    /// Cache misses, by cache.
    pub cache_misses: Family<CacheLabels, Counter>,
    /// 1 while sealed, else 0.
    pub sealed: Gauge,
    /// The master key's current version.
    pub master_key_version: Gauge,
    /// Runs of the background scheduler (rotations and deletions due).
    pub scheduler_runs: Counter,
    /// Keys rotated or deleted by the scheduler.
    pub scheduler_actions: Counter,
    /// Client connections open.
    pub connections_open: Gauge,
    /// Client connections accepted.
    pub connections_accepted: Counter,
}

/// The latency buckets: 50 µs to about 3.3 s, doubling.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_05, 2.0, 17)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("clavis");
        let m = Metrics {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            throttled: Family::default(),
            audit_commit_seconds: Histogram::new(latency_buckets()),
            audit_batch_records: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            audit_bytes: Counter::default(),
            audit_failures: Counter::default(),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            sealed: Gauge::default(),
            master_key_version: Gauge::default(),
            scheduler_runs: Counter::default(),
            scheduler_actions: Counter::default(),
            connections_open: Gauge::default(),
            connections_accepted: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "Requests answered, by operation and outcome (ok or the AWS error code)", m.requests.clone());
        registry.register("request_duration_seconds", "Request latency from arrival to response, by operation", m.request_seconds.clone());
        registry.register("throttled_requests", "Requests refused by a quota (ThrottlingException)", m.throttled.clone());
        registry.register(
            "audit_commit_duration_seconds",
            "Audit commit latency: write (and fdatasync with fsync durability)",
            m.audit_commit_seconds.clone(),
        );
        registry.register("audit_batch_records", "Records per audit commit", m.audit_batch_records.clone());
        registry.register("audit_written_bytes", "Bytes appended to the audit log", m.audit_bytes.clone());
        registry.register("audit_commit_failures", "Audit commits that failed (their requests failed closed)", m.audit_failures.clone());
        registry.register("cache_hits", "Cache hits, by cache", m.cache_hits.clone());
        registry.register("cache_misses", "Cache misses, by cache", m.cache_misses.clone());
        registry.register("sealed", "1 while the server is sealed", m.sealed.clone());
        registry.register("master_key_version", "The master key's current version", m.master_key_version.clone());
        registry.register("scheduler_runs", "Runs of the background scheduler", m.scheduler_runs.clone());
        registry.register("scheduler_actions", "Key rotations and deletions made by the scheduler", m.scheduler_actions.clone());
        registry.register("connections_open", "Client connections open", m.connections_open.clone());
        registry.register("connections_accepted", "Client connections accepted", m.connections_accepted.clone());
        Metrics { registry, ..m }
    }
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Encodes every metric in the OpenMetrics text format ([`CONTENT_TYPE`]).
pub fn encode() -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &METRICS.registry)?;
    Ok(out)
}

/// Counts a cache lookup.
pub fn cache_lookup(cache: &'static str, hit: bool) {
    let family = if hit { &METRICS.cache_hits } else { &METRICS.cache_misses };
    family.get_or_create(&CacheLabels { cache }).inc();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failure should stop the test loudly")]
    use super::*;

    #[test]
    fn encodes_openmetrics_with_the_prefix() {
        METRICS.requests.get_or_create(&RequestLabels { operation: "Encrypt", code: "ok" }).inc();
        cache_lookup("key", true);
        let text = encode().unwrap();
        assert!(text.contains("clavis_requests_total{operation=\"Encrypt\",code=\"ok\"}"), "{text}");
        assert!(text.contains("clavis_cache_hits_total{cache=\"key\"} 1"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
