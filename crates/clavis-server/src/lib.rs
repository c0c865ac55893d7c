//! The Clavis HTTP layer: the AWS JSON 1.1 transport over HTTP/1.1.
//!
//! It owns: routing (`POST /` with `X-Amz-Target`, `GET /healthz` and `GET /readyz`), the request id on every
//! response, the body limit, SigV4 authentication ([`auth`]), decoding request JSON into the
//! core's shapes and encoding responses and errors in AWS's shapes ([`protocol`]).
//!
//! Architecture invariant: it authenticates and translates, nothing more. It makes no
//! authorization decision and does no cryptography of its own (SigV4's HMACs are computed by
//! `clavis-sigv4` through `clavis-crypto`); every operation is a call into `clavis_core::Kms`.

pub mod auth;
mod protocol;

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
    /// How far `X-Amz-Date` may be from the server's clock, in seconds (AWS: 15 minutes).
    pub max_clock_skew_secs: i64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { allowed_regions: None, max_body_bytes: 256 * 1024, max_clock_skew_secs: 15 * 60 }
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The KMS operations.
    pub kms: Arc<Kms>,
    /// HTTP-layer settings.
    pub config: Arc<ServerConfig>,
}

/// The request id of the current request (`x-amzn-RequestId`), placed in request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The whole HTTP application. Tests drive it without a socket; `clavis serve` binds it.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", post(protocol::handle))
        .route("/healthz", get(healthz))
        .route("/readyz", get(healthz))
        .route("/operator/status", get(protocol::operator_status))
        .route("/operator/init", post(protocol::operator_init))
        .route("/operator/unseal", post(protocol::operator_unseal))
        .fallback(not_found)
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
