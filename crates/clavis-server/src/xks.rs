//! AWS KMS's External Key Store proxy API (the "AWS KMS XKS Proxy API Specification", v1):
//! `POST [/<prefix>]/kms/xks/v1/keys/<externalKeyId>/{metadata,encrypt,decrypt}` and
//! `POST [/<prefix>]/kms/xks/v1/health`, JSON in and out, SigV4 with the service name
//! `kms-xks-proxy` and XKS credentials only, errors as `{"errorName", "errorMessage"}` with the
//! spec's HTTP statuses. The operations are the core's (`clavis_core::xks`); every request
//! is recorded like a KMS request ([`clavis_core::Kms::audited`]), with the request metadata
//! AWS KMS sent (its `awsPrincipalArn` and `kmsRequestId` are recorded, never trusted).

use crate::auth::{self, Api};
use crate::limiter::Verdict;
use crate::protocol::{authenticate_limited, read_body_limited, request_event};
use crate::{AppState, RequestId};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clavis_core::audit::Outcome;
use clavis_core::{Caller, KmsError, Operation};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The part of every XKS path after the optional prefix.
pub const API_PATH: &str = "/kms/xks/v1";
/// The event source of XKS records.
const EVENT_SOURCE: &str = "kms-xks-proxy.clavis";
/// The longest `externalKeyId` the spec allows.
const MAX_KEY_ID: usize = 128;
/// The longest value of a `requestMetadata` member (ARNs: the spec says up to 2048).
const MAX_METADATA_VALUE: usize = 2048;

/// One XKS operation, from the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `keys/<id>/metadata`.
    Metadata(String),
    /// `keys/<id>/encrypt`.
    Encrypt(String),
    /// `keys/<id>/decrypt`.
    Decrypt(String),
    /// `health`.
    Health,
}

impl Call {
    fn name(&self) -> &'static str {
        match self {
            Call::Metadata(_) => "XksGetKeyMetadata",
            Call::Encrypt(_) => "XksEncrypt",
            Call::Decrypt(_) => "XksDecrypt",
            Call::Health => "XksGetHealthStatus",
        }
    }
}

/// What a path means: an XKS call, a path under an XKS API root that names none (or the wrong
/// prefix), or not XKS at all.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// A call of the API.
    Call(Call),
    /// `.../kms/xks/v1/...` that is not a call of this proxy: `InvalidUriPathException`.
    Invalid,
    /// Not an XKS path.
    NotXks,
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_KEY_ID && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// Parses `path` for the proxy configured with `prefix` (empty, or `/a/b` without a trailing
/// slash).
pub fn route(prefix: &str, path: &str) -> Route {
    let Some(at) = path.find(API_PATH) else { return Route::NotXks };
    if &path[..at] != prefix {
        return Route::Invalid;
    }
    let rest = &path[at + API_PATH.len()..];
    if rest == "/health" {
        return Route::Call(Call::Health);
    }
    let Some(rest) = rest.strip_prefix("/keys/") else { return Route::Invalid };
    let Some((id, op)) = rest.split_once('/') else { return Route::Invalid };
    if !valid_key_id(id) {
        return Route::Invalid;
    }
    let id = id.to_owned();
    Route::Call(match op {
        "metadata" => Call::Metadata(id),
        "encrypt" => Call::Encrypt(id),
        "decrypt" => Call::Decrypt(id),
        _ => return Route::Invalid,
    })
}

/// The spec's error name and HTTP status for a core error.
fn error_parts(e: &KmsError) -> (StatusCode, &'static str) {
    use KmsError as E;
    match e {
        E::Disabled(_) | E::InvalidState(_) => (StatusCode::BAD_REQUEST, "InvalidStateException"),
        E::InvalidCiphertext(_) => (StatusCode::BAD_REQUEST, "InvalidCiphertextException"),
        E::InvalidKeyUsage(_) => (StatusCode::BAD_REQUEST, "InvalidKeyUsageException"),
        E::MissingAuthenticationToken | E::IncompleteSignature(_) | E::InvalidSignature(_) | E::UnrecognizedClient => {
            (StatusCode::UNAUTHORIZED, "AuthenticationFailedException")
        }
        E::AccessDenied(_) => (StatusCode::FORBIDDEN, "AccessDeniedException"),
        E::NotFound(_) | E::InvalidArn(_) => (StatusCode::NOT_FOUND, "KeyNotFoundException"),
        E::UnknownOperation(_) => (StatusCode::NOT_FOUND, "InvalidUriPathException"),
        E::Throttling(_) => (StatusCode::TOO_MANY_REQUESTS, "ThrottlingException"),
        E::UnsupportedOperation(_) | E::RequestEntityTooLarge(_) => (StatusCode::NOT_IMPLEMENTED, "UnsupportedOperationException"),
        E::Unavailable(_) | E::AuditUnavailable(_) | E::Sealed | E::RequestTimeout(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "DependencyTimeoutException")
        }
        E::Validation(_) | E::Serialization(_) => (StatusCode::BAD_REQUEST, "ValidationException"),
        E::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalException"),
        _ => (StatusCode::BAD_REQUEST, "ValidationException"),
    }
}

fn json(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, serde_json::to_vec(body).unwrap_or_default()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The spec's error body: `errorName`, and an `errorMessage` of printable ASCII under 512
/// characters.
fn error_response(e: &KmsError) -> Response {
    let (status, name) = error_parts(e);
    let message: String = match e {
        // Internal details are logged, not sent.
        KmsError::Internal(_) => "An internal error occurred.".to_owned(),
        other => other.to_string(),
    }
    .chars()
    .filter(|c| (' '..='~').contains(c))
    .take(511)
    .collect();
    json(status, &json!({ "errorName": name, "errorMessage": message }))
}

fn invalid_path() -> Response {
    error_response(&KmsError::UnknownOperation("The request was rejected because the specified URI path is not valid.".into()))
}

/// Whether this request is for the XKS API (so the fallback hands it here).
pub fn is_xks_path(path: &str) -> bool {
    path.contains(API_PATH)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body64 {
    request_metadata: Option<Map<String, Value>>,
    plaintext: Option<String>,
    ciphertext: Option<String>,
    ciphertext_metadata: Option<String>,
    encryption_algorithm: Option<String>,
    additional_authenticated_data: Option<String>,
    initialization_vector: Option<String>,
    authentication_tag: Option<String>,
    ciphertext_data_integrity_value_algorithm: Option<String>,
}

fn b64(value: Option<&str>, member: &str, required: bool) -> Result<Vec<u8>, KmsError> {
    match value {
        Some(v) => B64.decode(v).map_err(|_| KmsError::validation(format!("{member} is not valid Base64"))),
        None if required => Err(KmsError::validation(format!("{member} is required"))),
        None => Ok(Vec::new()),
    }
}

/// The members the spec defines: recorded first, each up to [`MAX_METADATA_VALUE`].
const KNOWN_METADATA: [&str; 7] =
    ["awsPrincipalArn", "kmsKeyArn", "kmsOperation", "kmsRequestId", "kmsViaService", "awsSourceVpc", "awsSourceVpce"];
/// Other (future) members are accepted, and at most this many recorded, each cut to
/// [`MAX_UNKNOWN_VALUE`] characters, so they can never crowd the known ones out of the record.
const MAX_UNKNOWN_MEMBERS: usize = 8;
/// See [`MAX_UNKNOWN_MEMBERS`].
const MAX_UNKNOWN_VALUE: usize = 256;

/// The request metadata as recorded: string members only; the spec's members first and whole
/// (up to an ARN's length), then a few capped unknown ones. Required members are checked per
/// call.
fn recorded_metadata(meta: Option<&Map<String, Value>>) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(meta) = meta else { return out };
    for k in KNOWN_METADATA {
        if let Some(s) = meta.get(k).and_then(Value::as_str) {
            out.insert(k.to_owned(), Value::String(s.chars().take(MAX_METADATA_VALUE).collect()));
        }
    }
    let unknown = meta.iter().filter(|(k, _)| !KNOWN_METADATA.contains(&k.as_str()));
    for (k, v) in unknown.filter_map(|(k, v)| v.as_str().map(|s| (k, s))).take(MAX_UNKNOWN_MEMBERS) {
        out.insert(k.chars().take(64).collect(), Value::String(v.chars().take(MAX_UNKNOWN_VALUE).collect()));
    }
    out
}

fn require_metadata(meta: &Map<String, Value>, members: &[&str]) -> Result<(), KmsError> {
    for m in members {
        if !meta.get(*m).is_some_and(Value::is_string) {
            return Err(KmsError::validation(format!("requestMetadata.{m} is required")));
        }
    }
    Ok(())
}

/// What the audit record needs from one XKS request, filled in as it runs.
#[derive(Default)]
struct Recorded {
    caller: Option<Caller>,
    params: Option<Map<String, Value>>,
    limiter: Option<Verdict>,
}

/// `POST` under the XKS API root (the router's fallback sends every path containing
/// `/kms/xks/v1` here).
pub async fn handle(State(state): State<AppState>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let call = match route(&state.config.xks_path_prefix, parts.uri.path()) {
        Route::Call(call) => call,
        _ => return invalid_path(),
    };
    // The spec: a GET (or any other method) at an API's URI is 405.
    if parts.method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")]).into_response();
    }
    let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    let parsed = auth::parse_authorization(&parts);
    let claimed = parsed.as_ref().and_then(|r| r.as_ref().ok());
    let event = request_event(&parts, &request_id, claimed, call.name(), EVENT_SOURCE);
    let started = std::time::Instant::now();
    let result = state
        .kms
        .audited(&event, async {
            let mut rec = Recorded::default();
            let result = serve(&state, &parts, &parsed, body, &call, &mut rec).await;
            // As on the KMS API: an unauthenticated refusal the failure limiter throttled gets
            // no record of its own; the next recorded one from that source counts it.
            let verdict = rec.limiter.unwrap_or(Verdict { throttled: false, suppressed_before: 0 });
            Outcome {
                caller: rec.caller,
                request_parameters: rec.params,
                response_elements: None,
                suppressed_before: verdict.suppressed_before,
                suppress: verdict.throttled,
                result,
            }
        })
        .await;
    crate::metrics::xks_request(call.name(), result.as_ref().err().map(KmsError::code), started.elapsed().as_secs_f64());
    match result {
        Ok(body) => json(StatusCode::OK, &body),
        Err(e) => {
            if let KmsError::Internal(detail) = &e {
                tracing::error!(request_id, operation = call.name(), detail, "XKS request failed");
            }
            error_response(&e)
        }
    }
}

async fn serve(
    state: &AppState,
    parts: &axum::http::request::Parts,
    parsed: &auth::ParsedAuthorization,
    body: Body,
    call: &Call,
    rec: &mut Recorded,
) -> Result<Value, KmsError> {
    let (body, _in_flight) = read_body_limited(state, parts, body, &mut rec.limiter).await?;
    let caller = authenticate_limited(state, parts, parsed, &body, Api::Xks, &mut rec.limiter).await?;
    let caller = rec.caller.insert(caller).clone();
    // The KMS operation each call performs counts against the same request quotas.
    let op = match call {
        Call::Encrypt(_) => Some(Operation::Encrypt),
        Call::Decrypt(_) => Some(Operation::Decrypt),
        Call::Metadata(_) => Some(Operation::DescribeKey),
        Call::Health => None,
    };
    if let Some(op) = op
        && let Err(exceeded) = state.quota.admit(caller.account.as_str(), caller.region.as_str(), &caller.access_key_id, op)
    {
        crate::metrics::throttled(exceeded);
        return Err(KmsError::Throttling("The request rate exceeds this account's quota.".into()));
    }
    // AWS KMS's health checks may come with an empty body (the spec's test client sends one).
    let req: Body64 = if body.is_empty() && *call == Call::Health {
        Body64 {
            request_metadata: None,
            plaintext: None,
            ciphertext: None,
            ciphertext_metadata: None,
            encryption_algorithm: None,
            additional_authenticated_data: None,
            initialization_vector: None,
            authentication_tag: None,
            ciphertext_data_integrity_value_algorithm: None,
        }
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            KmsError::validation(format!(
                "the request body is not a valid request: {}",
                clavis_core::front::without_string_value(&e.to_string())
            ))
        })?
    };
    let meta = recorded_metadata(req.request_metadata.as_ref());
    let mut recorded = Map::new();
    recorded.insert("requestMetadata".into(), Value::Object(meta.clone()));
    if let Call::Metadata(id) | Call::Encrypt(id) | Call::Decrypt(id) = call {
        recorded.insert("externalKeyId".into(), Value::String(id.clone()));
    }
    if let Some(alg) = &req.encryption_algorithm {
        recorded.insert("encryptionAlgorithm".into(), Value::String(alg.chars().take(32).collect()));
    }
    rec.params = Some(recorded);
    let algorithm_ok = || match req.encryption_algorithm.as_deref() {
        Some("AES_GCM") => Ok(()),
        Some(other) => Err(KmsError::UnsupportedOperation(format!("encryptionAlgorithm {other} is not supported; v1 has AES_GCM only"))),
        None => Err(KmsError::validation("encryptionAlgorithm is required")),
    };
    match call {
        Call::Health => {
            state.kms.xks_health(&caller).await?;
            Ok(json!({
                "xksProxyFleetSize": 1,
                "xksProxyVendor": "Clavis",
                "xksProxyModel": concat!("Clavis ", env!("CARGO_PKG_VERSION")),
                "ekmVendor": "Clavis",
                "ekmFleetDetails": [{ "id": "clavis", "model": concat!("Clavis ", env!("CARGO_PKG_VERSION")), "healthStatus": "ACTIVE" }],
            }))
        }
        Call::Metadata(id) => {
            require_metadata(&meta, &["awsPrincipalArn", "kmsOperation", "kmsRequestId"])?;
            let m = state.kms.xks_key_metadata(&caller, id).await?;
            Ok(json!({ "keySpec": "AES_256", "keyUsage": ["ENCRYPT", "DECRYPT"], "keyStatus": m.key_status }))
        }
        Call::Encrypt(id) => {
            require_metadata(&meta, &["awsPrincipalArn", "kmsKeyArn", "kmsOperation", "kmsRequestId"])?;
            algorithm_ok()?;
            let integrity = match req.ciphertext_data_integrity_value_algorithm.as_deref() {
                None => false,
                Some("SHA_256") => true,
                Some(other) => return Err(KmsError::validation(format!("ciphertextDataIntegrityValueAlgorithm {other} is not SHA_256"))),
            };
            let plaintext = b64(req.plaintext.as_deref(), "plaintext", true)?;
            let aad = b64(req.additional_authenticated_data.as_deref(), "additionalAuthenticatedData", false)?;
            let out = state.kms.xks_encrypt(&caller, id, plaintext, &aad, integrity).await?;
            let mut body = json!({
                "ciphertext": B64.encode(&out.ciphertext),
                "ciphertextMetadata": B64.encode(&out.metadata),
                "initializationVector": B64.encode(&out.iv),
                "authenticationTag": B64.encode(&out.tag),
            });
            if let Some(cdiv) = out.integrity {
                body["ciphertextDataIntegrityValue"] = Value::String(B64.encode(cdiv));
            }
            Ok(body)
        }
        Call::Decrypt(id) => {
            require_metadata(&meta, &["awsPrincipalArn", "kmsKeyArn", "kmsOperation", "kmsRequestId"])?;
            algorithm_ok()?;
            let ciphertext = b64(req.ciphertext.as_deref(), "ciphertext", true)?;
            let metadata = b64(req.ciphertext_metadata.as_deref(), "ciphertextMetadata", false)?;
            let iv = b64(req.initialization_vector.as_deref(), "initializationVector", true)?;
            let tag = b64(req.authentication_tag.as_deref(), "authenticationTag", true)?;
            let aad = b64(req.additional_authenticated_data.as_deref(), "additionalAuthenticatedData", false)?;
            let sealed = clavis_core::xks::XksSealed { ciphertext: &ciphertext, metadata: &metadata, iv: &iv, tag: &tag };
            let plaintext = state.kms.xks_decrypt(&caller, id, &sealed, &aad).await?;
            Ok(json!({ "plaintext": B64.encode(plaintext.expose_secret()) }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("", "/kms/xks/v1/health"), Route::Call(Call::Health));
        assert_eq!(route("/p/q", "/p/q/kms/xks/v1/keys/abc-1.2_3/encrypt"), Route::Call(Call::Encrypt("abc-1.2_3".into())));
        assert_eq!(route("/p", "/kms/xks/v1/health"), Route::Invalid);
        assert_eq!(route("", "/other/kms/xks/v1/health"), Route::Invalid);
        assert_eq!(route("", "/kms/xks/v1/keys/a/b/encrypt"), Route::Invalid);
        assert_eq!(route("", "/kms/xks/v1/keys/a%2F/encrypt"), Route::Invalid);
        assert_eq!(route("", "/kms/xks/v1/keys/a/sign"), Route::Invalid);
        assert_eq!(route("", "/kms/xks/v1/keys//encrypt"), Route::Invalid);
        assert_eq!(route("", "/"), Route::NotXks);
    }
}
