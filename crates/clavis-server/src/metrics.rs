//! `GET /metrics`: the process's Prometheus metrics (`clavis-metrics`), unauthenticated like
//! `/healthz` (no label holds a key id, principal or secret), and what the HTTP layer records
//! into them: requests by operation and outcome, latency, throttled requests.

use crate::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use clavis_core::Operation;
use clavis_metrics::{METRICS, OperationLabels, QuotaLabels, RequestLabels};

/// Records one answered request: `operation` if the target named one of the catalogue,
/// `code` its AWS error code (`None`: success), after `seconds`.
pub fn request(operation: Option<Operation>, code: Option<&'static str>, seconds: f64) {
    let operation = operation.map_or("unknown", Operation::name);
    METRICS.requests.get_or_create(&RequestLabels { operation, code: code.unwrap_or("ok") }).inc();
    METRICS.request_seconds.get_or_create(&OperationLabels { operation }).observe(seconds);
}

/// Records one answered XKS proxy request, named as its audit record is (`XksEncrypt`, ...).
pub fn xks_request(operation: &'static str, code: Option<&'static str>, seconds: f64) {
    METRICS.requests.get_or_create(&RequestLabels { operation, code: code.unwrap_or("ok") }).inc();
    METRICS.request_seconds.get_or_create(&OperationLabels { operation }).observe(seconds);
}

/// Counts a request refused by a quota.
pub fn throttled(exceeded: crate::quota::Exceeded) {
    let quota = match exceeded {
        crate::quota::Exceeded::Account => "account",
        crate::quota::Exceeded::AccessKey => "access_key",
    };
    METRICS.throttled.get_or_create(&QuotaLabels { quota }).inc();
}

/// Counts a request refused by the failed-authentication limit.
pub fn auth_failure_throttled() {
    METRICS.throttled.get_or_create(&QuotaLabels { quota: "auth_failures" }).inc();
}

/// `GET /metrics`.
pub async fn handler(State(state): State<AppState>) -> Response {
    let status = state.kms.operator_status_local();
    METRICS.sealed.set(i64::from(status.sealed));
    METRICS.master_key_version.set(i64::from(status.master_key_version));
    match clavis_metrics::encode() {
        Ok(text) => ([(header::CONTENT_TYPE, clavis_metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed\n").into_response(),
    }
}
