//! The Clavis HTTP layer: the AWS JSON 1.1 transport over HTTP/1.1.
//!
//! It owns: connections and their limits ([`listener`]: timeouts, the connection cap),
//! routing (`POST /` with `X-Amz-Target`, `GET /healthz` and `GET /readyz`, the operator
//! paths), the request id on every response, the body limit and timeout, SigV4 authentication
//! ([`auth`]), rate limits on failed authentication ([`limiter`]), decoding request JSON into
//! the core's shapes and encoding responses and errors in AWS's shapes (`protocol`). TLS
//! itself is the binary's (it needs the crypto provider); this layer takes a handshake.
//!
//! Architecture invariant: it authenticates and translates, nothing more. It makes no
//! authorization decision and does no cryptography of its own (SigV4's HMACs are computed by
//! `clavis-sigv4` through `clavis-crypto`); every operation is a call into `clavis_core::Kms`.

pub mod auth;
pub mod limiter;
pub mod listener;
pub mod metrics;
mod protocol;
pub mod quota;
pub mod xks;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clavis_core::Kms;
use std::sync::Arc;

/// Server settings that the HTTP layer enforces.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Regions a credential scope may name; `None` accepts any well-formed region.
    pub allowed_regions: Option<Vec<String>>,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long a whole request body may take to arrive.
    pub body_read_timeout: std::time::Duration,
    /// How far `X-Amz-Date` may be from the server's clock, in seconds (AWS: 15 minutes).
    pub max_clock_skew_secs: i64,
    /// Host names (besides IP literals and `localhost`) under which the operator endpoints
    /// may be reached.
    pub public_names: Vec<String>,
    /// A token `/operator/init` must present (`X-Clavis-Init-Token`), when set.
    pub init_token: Option<String>,
    /// The XKS proxy API's optional path prefix (`--xks-path-prefix`): empty, or `/a/b`.
    pub xks_path_prefix: String,
    /// Serve `GET /metrics` on this listener (false when `--metrics-listen` moves it elsewhere
    /// or turns it off).
    pub metrics: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            allowed_regions: None,
            max_body_bytes: 256 * 1024,
            body_read_timeout: std::time::Duration::from_secs(30),
            max_clock_skew_secs: 15 * 60,
            public_names: Vec::new(),
            init_token: None,
            xks_path_prefix: String::new(),
            metrics: true,
        }
    }
}

impl ServerConfig {
    /// Whether a `Host` header names this server: an IP literal, `localhost`, or one of the
    /// configured public names (any port). A DNS-rebinding page reaches the server under a
    /// name of the attacker's, which is none of these.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            // [v6]:port
            Some(rest) => return rest.split(']').next().is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok()),
            None => host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(n, _)| n),
        };
        name.parse::<std::net::IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self.public_names.iter().any(|p| p.eq_ignore_ascii_case(name))
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The KMS operations.
    pub kms: Arc<Kms>,
    /// HTTP-layer settings.
    pub config: Arc<ServerConfig>,
    /// Failed authentications per source address.
    pub failures: Arc<limiter::FailureLimiter>,
    /// Failed operator (init, unseal) attempts per source address.
    pub operator_attempts: Arc<limiter::FailureLimiter>,
    /// Request quotas per account and region, and per access key.
    pub quota: Arc<quota::RequestLimiter>,
}

impl AppState {
    /// State with the default limits: 10 failed authentications per second per source (bursts
    /// of 50), and 10 operator attempts per minute per source (bursts of 20).
    pub fn new(kms: Arc<Kms>, config: ServerConfig) -> AppState {
        AppState::with_limits(kms, config, 10.0, 50.0)
    }

    /// State with a given failed-authentication rate per source (0 disables the limit).
    pub fn with_limits(kms: Arc<Kms>, config: ServerConfig, failures_per_second: f64, failure_burst: f64) -> AppState {
        AppState {
            kms,
            config: Arc::new(config),
            failures: Arc::new(limiter::FailureLimiter::new(failures_per_second, failure_burst)),
            operator_attempts: Arc::new(limiter::FailureLimiter::new(10.0 / 60.0, 20.0)),
            quota: Arc::new(quota::RequestLimiter::new(quota::RateLimits::default())),
        }
    }

    /// The same state with request quotas `limits` instead of the defaults.
    pub fn with_quota(mut self, limits: quota::RateLimits) -> AppState {
        self.quota = Arc::new(quota::RequestLimiter::new(limits));
        self
    }
}

/// The request id of the current request (`x-amzn-RequestId`), placed in request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The metrics alone (`--metrics-listen HOST:PORT`): `GET /metrics` and nothing else.
pub fn metrics_app(state: AppState) -> Router {
    Router::new().route("/metrics", get(metrics::handler)).with_state(state)
}

/// The whole HTTP application. Tests drive it without a socket; `clavis serve` binds it.
pub fn app(state: AppState) -> Router {
    let router = if state.config.metrics { Router::new().route("/metrics", get(metrics::handler)) } else { Router::new() };
    router
        .route("/", post(protocol::handle))
        .route("/healthz", get(healthz))
        .route("/readyz", get(healthz))
        .route("/operator/status", get(protocol::operator_status))
        .route("/operator/init", post(protocol::operator_init))
        .route("/operator/unseal", post(protocol::operator_unseal))
        .fallback(fallback)
        .layer(axum::middleware::from_fn(request_id))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> Response {
    if state.kms.is_sealed() {
        return (StatusCode::SERVICE_UNAVAILABLE, "sealed\n").into_response();
    }
    // Ready when the store answers: a read that touches the database.
    match state.kms.account_id().await {
        Ok(Some(_)) => (StatusCode::OK, "ok\n").into_response(),
        Ok(None) => (StatusCode::SERVICE_UNAVAILABLE, "not initialised\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable\n").into_response()
        }
    }
}

/// Paths no route matched: the XKS proxy API (its paths carry an external key id and an
/// optional prefix), or an error.
async fn fallback(state: State<AppState>, req: Request<Body>) -> Response {
    if xks::is_xks_path(req.uri().path()) {
        return xks::handle(state, req).await;
    }
    not_found().await
}

async fn not_found() -> Response {
    protocol::error_response(&clavis_core::KmsError::UnknownOperation("Clavis serves the AWS KMS JSON protocol at POST /.".into()))
}

/// Gives every request an id and puts it on every response as `x-amzn-RequestId`.
async fn request_id(mut req: Request<Body>, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}
