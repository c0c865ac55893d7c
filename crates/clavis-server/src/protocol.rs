//! The AWS JSON 1.1 protocol: `X-Amz-Target: TrentService.<Operation>`, JSON bodies in, JSON
//! bodies out, errors as `{"__type": ..., "message": ...}` with the status the core assigns;
//! and the unauthenticated operator paths.
//!
//! Every request runs inside [`clavis_core::Kms::audited`], which releases its result only once its
//! record is durable; this module reports what the record needs (the caller, the decoded
//! request's members, the typed response's members) and never builds a record itself.

use crate::limiter::Verdict;
use crate::listener::{Activity, ActivityGuard};
use crate::{AppState, RequestId, auth};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clavis_core::audit::{self, Outcome, RequestEvent};
use clavis_core::front::{self, Members, RequestOptions, RequestShape};
use clavis_core::operation::Family;
use clavis_core::{Caller, KmsError, Operation};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const TARGET_PREFIX: &str = "TrentService.";
/// Clavis's own administration API (same endpoint, same signing, AWS-style JSON shapes).
const ADMIN_PREFIX: &str = "ClavisAdmin.";

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

/// Renders a core error in AWS's shape. The message of an internal error is generic; its
/// detail is logged by the caller.
pub fn error_response(e: &KmsError) -> Response {
    let body = serde_json::json!({ "__type": e.code(), "message": e.to_string() });
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, serde_json::to_vec(&body).unwrap_or_default())
}

/// What the audit record needs from one request, filled in as it runs.
#[derive(Default)]
struct Recorded {
    caller: Option<Caller>,
    members: Members,
    limiter: Option<Verdict>,
}

impl Recorded {
    fn outcome(self, result: Result<Vec<u8>, KmsError>) -> Outcome<Vec<u8>> {
        let limiter = self.limiter.unwrap_or(Verdict { throttled: false, suppressed_before: 0 });
        Outcome {
            caller: self.caller,
            request_parameters: self.members.request_parameters,
            response_elements: self.members.response_elements,
            suppressed_before: limiter.suppressed_before,
            suppress: limiter.throttled,
            result,
        }
    }
}

/// The error for a target that names no operation of the catalogue, in the words of its family.
fn unknown_target(target: &str) -> KmsError {
    if let Some(name) = target.strip_prefix(ADMIN_PREFIX) {
        KmsError::UnknownOperation(format!("Administration operation {name} does not exist."))
    } else if let Some(name) = target.strip_prefix(Family::SecretsManager.target_prefix()) {
        match name {
            // Secrets Manager has no "unsupported" error: AWS's own word for a request the
            // resource cannot take is InvalidRequestException.
            "ReplicateSecretToRegions" | "RemoveRegionsFromReplication" | "StopReplicationToReplica" => {
                KmsError::InvalidRequest(format!("{name}: Clavis serves one region; secrets cannot be replicated to others."))
            }
            _ => KmsError::UnknownOperation(format!("Secrets Manager operation {name} is not supported by this Clavis version.")),
        }
    } else if let Some(name) = target.strip_prefix(TARGET_PREFIX) {
        KmsError::UnknownOperation(format!("Operation {name} is not supported by this Clavis version."))
    } else {
        KmsError::UnknownOperation(format!("The X-Amz-Target header must name a TrentService operation, not '{target}'."))
    }
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// Authenticates a request for `api` on behalf of every front end: a failure the client
/// caused spends a token of its source's failed-authentication bucket (`limiter` says how it
/// went, for the record), and once that is empty the refusal is `ThrottlingException`. The
/// caller's `aws:SecureTransport` comes from the connection.
pub(crate) async fn authenticate_limited(
    state: &AppState,
    parts: &Parts,
    parsed: &auth::ParsedAuthorization,
    body: &[u8],
    api: auth::Api<'_>,
    limiter: &mut Option<Verdict>,
) -> Result<Caller, KmsError> {
    let mut caller = match auth::authenticate_as(&state.kms, &state.config, parts, parsed, body, api, now_secs()).await {
        Ok(c) => c,
        // Not the client's failure: nothing to rate-limit.
        Err(e @ (KmsError::Sealed | KmsError::Unavailable(_) | KmsError::Internal(_))) => return Err(e),
        Err(e) => return Err(spend_failure(state, parts, limiter).unwrap_or(e)),
    };
    caller.secure_transport = parts.extensions.get::<crate::listener::SecureTransport>().is_some_and(|s| s.0);
    Ok(caller)
}

/// Spends a token of the source's failed-request bucket for a failure the client caused before
/// it was authenticated; once the bucket is empty, the refusal to give instead (its record may
/// then be left out: the next one counts it).
fn spend_failure(state: &AppState, parts: &Parts, limiter: &mut Option<Verdict>) -> Option<KmsError> {
    let verdict = state.failures.failure(source_ip(parts));
    *limiter = Some(verdict);
    verdict.throttled.then(|| {
        crate::metrics::auth_failure_throttled();
        KmsError::Throttling("Rate exceeded: too many requests that failed authentication from this address.".into())
    })
}

/// [`read_body`] for the authenticated APIs, whose body is read before the signature over it
/// can be checked: a body too large or too slow is a failure of an unauthenticated client, so
/// it spends the source's failed-request bucket like a bad signature (a flood of oversized
/// bodies is throttled, its records counted rather than written one each).
pub(crate) async fn read_body_limited(
    state: &AppState,
    parts: &Parts,
    body: Body,
    limiter: &mut Option<Verdict>,
) -> Result<(Bytes, Option<ActivityGuard>), KmsError> {
    match read_body(state, parts, body).await {
        Ok(read) => Ok(read),
        Err(e) => Err(spend_failure(state, parts, limiter).unwrap_or(e)),
    }
}

/// What the audit record says about a request before it runs, for every front end.
pub(crate) fn request_event<'a>(
    parts: &'a Parts,
    request_id: &'a str,
    claimed: Option<&'a clavis_sigv4::Authorization>,
    operation: &'a str,
    event_source: &'a str,
) -> RequestEvent<'a> {
    RequestEvent {
        request_id,
        source_ip: source_ip(parts),
        user_agent: parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()),
        operation,
        event_source,
        claimed_access_key_id: claimed.map(|a| a.access_key_id.as_str()),
        region: claimed.map(|a| a.region.as_str()),
    }
}

pub(crate) fn source_ip(parts: &Parts) -> Option<IpAddr> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// Reads the whole body within the size limit and the body-read timeout. The timeout bounds
/// the whole body, not the gap between two reads (a client trickling one byte at a time
/// would defeat an inactivity timeout).
/// Once it has, the request counts as in flight on its connection (which eviction spares) for
/// as long as the returned guard lives.
pub(crate) async fn read_body(state: &AppState, parts: &Parts, body: Body) -> Result<(Bytes, Option<ActivityGuard>), KmsError> {
    let limit = state.config.max_body_bytes;
    let timeout = state.config.body_read_timeout;
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok((bytes, parts.extensions.get::<Activity>().map(Activity::begin))),
        // A body that cannot be read within the limit is refused as too large.
        Ok(Err(_)) => Err(KmsError::RequestEntityTooLarge(limit)),
        Err(_) => Err(KmsError::RequestTimeout(timeout.as_secs())),
    }
}

/// `POST /`: the KMS endpoint. Every request, whatever its outcome, is recorded in the audit
/// log before its response leaves ([`clavis_core::Kms::audited`]).
pub async fn handle(State(state): State<AppState>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    let known = Operation::from_target(target);
    let family = Family::from_target(target);
    let operation = family.map_or(target, |f| &target[f.target_prefix().len()..]);
    let parsed = auth::parse_authorization(&parts);
    let claimed = parsed.as_ref().and_then(|r| r.as_ref().ok());
    let event = request_event(&parts, &request_id, claimed, operation, family.unwrap_or(Family::Kms).event_source());
    let started = std::time::Instant::now();
    let result = state
        .kms
        .audited(&event, async {
            let mut rec = Recorded::default();
            let result = serve_request(&state, &parts, &parsed, body, target, known, &mut rec).await;
            rec.outcome(result)
        })
        .await;
    let elapsed = started.elapsed();
    crate::metrics::request(known, result.as_ref().err().map(KmsError::code), elapsed.as_secs_f64());
    let duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    match result {
        Ok(body) => {
            tracing::debug!(request_id, operation, status = 200, duration_us, "request");
            json_response(StatusCode::OK, body)
        }
        Err(e) => {
            match &e {
                KmsError::Internal(detail) | KmsError::Unavailable(detail) | KmsError::AuditUnavailable(detail) => {
                    tracing::error!(request_id, operation, code = e.code(), detail, duration_us, "request failed");
                }
                _ => tracing::info!(request_id, operation, code = e.code(), duration_us, "request refused"),
            }
            error_response(&e)
        }
    }
}

async fn serve_request(
    state: &AppState,
    parts: &Parts,
    parsed: &auth::ParsedAuthorization,
    body: Body,
    target: &str,
    known: Option<Operation>,
    rec: &mut Recorded,
) -> Result<Vec<u8>, KmsError> {
    let (body, _in_flight) = read_body_limited(state, parts, body, &mut rec.limiter).await?;
    // A request is signed for its family's service (`kms`, or `secretsmanager`).
    let service = Family::from_target(target).unwrap_or(Family::Kms).signing_service();
    let caller = authenticate_limited(state, parts, parsed, &body, auth::Api::Aws(service), &mut rec.limiter).await?;
    let caller = rec.caller.insert(caller).clone();
    let op = known.ok_or_else(|| unknown_target(target))?;
    if let Err(exceeded) = state.quota.admit(caller.account.as_str(), caller.region.as_str(), &caller.access_key_id, op) {
        crate::metrics::throttled(exceeded);
        // AWS's words for each API's quota (KMS: "Request quotas"; Secrets Manager: "Rate exceeded").
        return Err(KmsError::Throttling(match op.family() {
            Family::SecretsManager => "Rate exceeded".into(),
            _ => "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.".into(),
        }));
    }
    // Re-wrap on unwrap is asked for with a header, so that an unmodified AWS client can
    // opt in from an event hook without changing the request body.
    let rewrap = parts.headers.get("x-clavis-rewrap").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    state.kms.invoke_json(&caller, op, &body, &RequestOptions { rewrap }, &mut rec.members).await
}

/// `GET /operator/status`: the root of trust's provider, sealed state, master-key version and
/// unseal progress. Unauthenticated, like Vault's seal status: it reveals no secret.
pub async fn operator_status(State(state): State<AppState>) -> Response {
    match serde_json::to_vec(&state.kms.operator_status().await) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => error_response(&KmsError::Internal(e.to_string())),
    }
}

/// Constant-time comparison of two byte strings (an init token).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks that apply to both operator paths before their body is looked at: a JSON content
/// type (a web page can POST text/plain across origins without a preflight, but not JSON), a
/// Host header that names this server (an IP literal, `localhost`, or a configured public
/// name: a DNS-rebinding page's host is its own domain), and the per-source rate limit.
fn operator_precheck(state: &AppState, parts: &Parts) -> Result<(), KmsError> {
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(KmsError::Validation("The operator endpoints accept only Content-Type: application/json.".into()));
    }
    let host = parts.headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !state.config.host_allowed(host) {
        return Err(KmsError::AccessDenied(format!(
            "Host '{}' is not a name of this server; add it with --public-name to reach the operator endpoints through it.",
            host.chars().take(128).collect::<String>()
        )));
    }
    Ok(())
}

/// Runs one operator request inside [`clavis_core::Kms::audited_operator`]: its record has the source
/// address and the request's recorded members (never a share).
async fn operator_request<Req, Resp, Fut>(
    state: &AppState,
    req: Request<Body>,
    operation: &'static str,
    extra_check: impl FnOnce(&Parts) -> Result<(), KmsError>,
    op: impl FnOnce(Req) -> Fut,
) -> Response
where
    Req: RequestShape,
    Resp: Serialize,
    Fut: Future<Output = Result<Resp, KmsError>>,
{
    let (parts, body) = req.into_parts();
    let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    let event = RequestEvent {
        request_id: &request_id,
        source_ip: source_ip(&parts),
        user_agent: parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()),
        operation,
        event_source: "operator.clavis",
        claimed_access_key_id: None,
        region: None,
    };
    let result = state
        .kms
        .audited_operator(&event, async {
            let mut rec = Recorded::default();
            // Every attempt spends its source's budget, refused ones included (so that neither
            // refusals nor junk shares can grow the log or the held records without bound). A
            // source over its budget is refused before anything else, without a record of its
            // own; the next record from it counts the refusals.
            let verdict = state.operator_attempts.failure(source_ip(&parts));
            rec.limiter = Some(verdict);
            if verdict.throttled {
                return rec.outcome(Err(KmsError::Throttling(
                    "Rate exceeded: too many operator attempts from this address; wait and retry.".into(),
                )));
            }
            let result = async {
                operator_precheck(state, &parts)?;
                extra_check(&parts)?;
                let (body, _in_flight) = read_body(state, &parts, body).await?;
                front::call(&body, audit::records_response(operation), &RequestOptions::default(), &mut rec.members, op).await
            }
            .await;
            rec.outcome(result)
        })
        .await;
    match result {
        Ok(body) => {
            tracing::warn!(operation, "operator request accepted");
            json_response(StatusCode::OK, body)
        }
        Err(e) => {
            tracing::warn!(operation, code = e.code(), "operator request refused");
            error_response(&e)
        }
    }
}

/// `POST /operator/init` (`{"Shares": N, "Threshold": K}`): initialises a Shamir root of trust
/// and returns the shares once. Unauthenticated: only an uninitialised server accepts it, and
/// only with the init token when one is configured (`CLAVIS_INIT_TOKEN`).
pub async fn operator_init(State(state): State<AppState>, req: Request<Body>) -> Response {
    let token = state.config.init_token.clone();
    let check = move |parts: &Parts| match &token {
        None => Ok(()),
        Some(expected) => {
            let given = parts.headers.get("x-clavis-init-token").map(HeaderValue::as_bytes).unwrap_or_default();
            if same_bytes(given, expected.as_bytes()) {
                Ok(())
            } else {
                Err(KmsError::AccessDenied("This server requires its init token (X-Clavis-Init-Token) to initialise.".into()))
            }
        }
    };
    let kms = state.kms.clone();
    operator_request(&state, req, "OperatorInit", check, |r| async move { kms.operator_init(r) }).await
}

/// `POST /operator/unseal` (`{"Share": "...", "Nonce": "..."}`): one unseal share.
/// Unauthenticated: the share is the credential; a wrong one resets the unseal without saying
/// which was wrong. Returns once the server serves requests (or with the progress so far).
pub async fn operator_unseal(State(state): State<AppState>, req: Request<Body>) -> Response {
    let kms = state.kms.clone();
    operator_request(
        &state,
        req,
        "OperatorUnseal",
        |_| Ok(()),
        |r| async move {
            let status = kms.operator_unseal(r).await?;
            if status.sealed {
                return Ok(status);
            }
            // The last share unsealed the root of trust; what needs it at start (the audit log,
            // the database check) runs next. Answer once requests are served, so that the first
            // request after a successful unseal succeeds.
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
            while kms.is_sealed() {
                if tokio::time::Instant::now() >= deadline {
                    return Err(KmsError::Unavailable("the server did not finish opening after unseal".into()));
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Ok(kms.operator_status().await)
        },
    )
    .await
}
