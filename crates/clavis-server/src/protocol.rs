//! The AWS JSON 1.1 protocol: `X-Amz-Target: TrentService.<Operation>`, JSON bodies in, JSON
//! bodies out, errors as `{"__type": ..., "message": ...}` with the status the core assigns.

use crate::{AppState, RequestId, auth};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clavis_core::audit::AuditInput;
use clavis_core::{Caller, Kms, KmsError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::time::Instant;

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

/// Decodes the request shape, runs the operation, encodes the response shape.
async fn call<Req, Resp, Fut>(body: &[u8], op: impl FnOnce(Req) -> Fut) -> Result<Vec<u8>, KmsError>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    Fut: Future<Output = Result<Resp, KmsError>>,
{
    // An empty body is an empty request object, as botocore sends for operations without members.
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    let req: Req = serde_json::from_slice(body).map_err(|e| KmsError::Serialization(serialization_message(&e)))?;
    let resp = op(req).await?;
    serde_json::to_vec(&resp).map_err(|e| KmsError::Internal(format!("response encoding: {e}")))
}

fn serialization_message(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => format!("The request body is not valid JSON: {e}"),
        _ => format!("The request body does not match the operation's input shape: {e}"),
    }
}

async fn dispatch(kms: &Kms, caller: &Caller, operation: &str, body: &[u8], rewrap: bool) -> Result<Vec<u8>, KmsError> {
    macro_rules! op {
        ($method:ident) => {
            call(body, |req| kms.$method(caller, req)).await
        };
    }
    match operation {
        "CreateKey" => op!(create_key),
        "DescribeKey" => op!(describe_key),
        "ListKeys" => op!(list_keys),
        "UpdateKeyDescription" => op!(update_key_description),
        "EnableKey" => op!(enable_key),
        "DisableKey" => op!(disable_key),
        "Encrypt" => op!(encrypt),
        "Decrypt" => {
            call(body, |mut req: clavis_core::api::DecryptRequest| {
                req.rewrap = rewrap;
                kms.decrypt(caller, req)
            })
            .await
        }
        "ReEncrypt" => op!(re_encrypt),
        "GenerateDataKey" => call(body, |req| kms.generate_data_key(caller, req, true)).await,
        "GenerateDataKeyWithoutPlaintext" => call(body, |req| kms.generate_data_key(caller, req, false)).await,
        "GenerateRandom" => op!(generate_random),
        "CreateAlias" => op!(create_alias),
        "UpdateAlias" => op!(update_alias),
        "DeleteAlias" => op!(delete_alias),
        "ListAliases" => op!(list_aliases),
        "TagResource" => op!(tag_resource),
        "UntagResource" => op!(untag_resource),
        "ListResourceTags" => op!(list_resource_tags),
        "GetKeyPolicy" => op!(get_key_policy),
        "ListKeyPolicies" => op!(list_key_policies),
        "PutKeyPolicy" => op!(put_key_policy),
        "CreateGrant" => op!(create_grant),
        "ListGrants" => op!(list_grants),
        "ListRetirableGrants" => op!(list_retirable_grants),
        "RetireGrant" => op!(retire_grant),
        "RevokeGrant" => op!(revoke_grant),
        "EnableKeyRotation" => op!(enable_key_rotation),
        "DisableKeyRotation" => op!(disable_key_rotation),
        "GetKeyRotationStatus" => op!(get_key_rotation_status),
        "RotateKeyOnDemand" => op!(rotate_key_on_demand),
        "ListKeyRotations" => op!(list_key_rotations),
        "ScheduleKeyDeletion" => op!(schedule_key_deletion),
        "CancelKeyDeletion" => op!(cancel_key_deletion),
        "GetParametersForImport" => op!(get_parameters_for_import),
        "ImportKeyMaterial" => op!(import_key_material),
        "DeleteImportedKeyMaterial" => op!(delete_imported_key_material),
        other => Err(KmsError::UnknownOperation(format!("Operation {other} is not supported by this Clavis version."))),
    }
}

async fn dispatch_admin(kms: &Kms, caller: &Caller, operation: &str, body: &[u8]) -> Result<Vec<u8>, KmsError> {
    match operation {
        "LookupEvents" => call(body, |req| kms.lookup_events(caller, req)).await,
        "AdvanceTestClock" => call(body, |req| kms.advance_test_clock(caller, req)).await,
        "CreateAccount" => call(body, |req| kms.create_account(caller, req)).await,
        "ListAccounts" => call(body, |req| kms.list_accounts(caller, req)).await,
        "CreateUser" => call(body, |req| kms.create_user(caller, req)).await,
        "ListUsers" => call(body, |req| kms.list_users(caller, req)).await,
        "CreateAccessKey" => call(body, |req| kms.create_access_key(caller, req)).await,
        "ListAccessKeys" => call(body, |req| kms.list_access_keys(caller, req)).await,
        "UpdateAccessKey" => call(body, |req| kms.update_access_key(caller, req)).await,
        "DeleteAccessKey" => call(body, |req| kms.delete_access_key(caller, req)).await,
        "EnableKeyDualAuthorization" => call(body, |req| kms.enable_key_dual_authorization(caller, req)).await,
        "Seal" => call(body, |req| kms.seal(caller, req)).await,
        "RotateMasterKey" => call(body, |req| kms.rotate_master_key(caller, req)).await,
        other => Err(KmsError::UnknownOperation(format!("Administration operation {other} does not exist."))),
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// `POST /`: the KMS endpoint. Every request, whatever its outcome, is recorded in the audit
/// log before its response leaves; if the record cannot be written the client gets
/// `DependencyTimeoutException` and nothing the operation produced.
pub async fn handle(State(state): State<AppState>, req: Request<Body>) -> Response {
    let started = Instant::now();
    let time_ms = state.kms.now_ms();
    let (parts, body) = req.into_parts();
    let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let is_admin = target.starts_with(ADMIN_PREFIX);
    let operation = target.strip_prefix(TARGET_PREFIX).or_else(|| target.strip_prefix(ADMIN_PREFIX)).unwrap_or(&target).to_owned();

    let limit = state.config.max_body_bytes;
    // A body that cannot be read within the limit is refused as too large.
    let body: Option<Bytes> = axum::body::to_bytes(body, limit).await.ok();
    let mut caller = None;
    let result: Result<Vec<u8>, KmsError> = async {
        let body = body.as_ref().ok_or(KmsError::RequestEntityTooLarge(limit))?;
        let c = auth::authenticate(&state.kms, &state.config, &parts, body, now_secs()).await?;
        let c = caller.insert(c);
        if is_admin {
            return dispatch_admin(&state.kms, c, &operation, body).await;
        }
        if !target.starts_with(TARGET_PREFIX) {
            return Err(KmsError::UnknownOperation(format!("The X-Amz-Target header must name a TrentService operation, not '{target}'.")));
        }
        // Re-wrap on unwrap is asked for with a header, so that an unmodified AWS client can
        // opt in from an event hook without changing the request body.
        let rewrap = parts.headers.get("x-clavis-rewrap").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        dispatch(&state.kms, c, &operation, body, rewrap).await
    }
    .await;

    // The audit record is built by the core from the raw bodies (it redacts secret members).
    let claimed = parts.headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|h| clavis_sigv4::Authorization::parse(h).ok());
    let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let input = AuditInput {
        request_id: &request_id,
        time_ms,
        source_ip: parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()),
        user_agent: parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()),
        operation: &operation,
        event_source: if is_admin { "admin.clavis" } else { "kms.amazonaws.com" },
        caller: caller.as_ref(),
        claimed_access_key_id: claimed.as_ref().map(|a| a.access_key_id.as_str()),
        region: claimed.as_ref().map(|a| a.region.as_str()),
        request: body.as_deref(),
        response: result.as_ref().ok().map(Vec::as_slice),
        error: result.as_ref().err(),
        duration_us,
    };
    let result = match (state.kms.audit(&input).await, result) {
        (Ok(()), r) => r,
        (Err(audit_err), _) => Err(audit_err),
    };

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

/// `GET /operator/status`: the root of trust's provider, sealed state, master-key version and
/// unseal progress. Unauthenticated, like Vault's seal status: it reveals no secret.
pub async fn operator_status(State(state): State<AppState>) -> Response {
    match serde_json::to_vec(&state.kms.operator_status().await) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => error_response(&KmsError::Internal(e.to_string())),
    }
}

/// `POST /operator/init` (`{"Shares": N, "Threshold": K}`): initialises a Shamir root of trust
/// and returns the shares once. Unauthenticated: only an uninitialised server accepts it.
pub async fn operator_init(State(state): State<AppState>, body: Bytes) -> Response {
    let result = call(&body, |req| async { state.kms.operator_init(req) }).await;
    operator_reply("init", result)
}

/// `POST /operator/unseal` (`{"Share": "..."}`): one unseal share. Unauthenticated: the share
/// is the credential; a wrong one resets the unseal without saying which was wrong.
pub async fn operator_unseal(State(state): State<AppState>, body: Bytes) -> Response {
    let result = call(&body, |req| state.kms.operator_unseal(req)).await;
    operator_reply("unseal", result)
}

fn operator_reply(what: &str, result: Result<Vec<u8>, KmsError>) -> Response {
    match result {
        Ok(body) => {
            tracing::warn!(operation = what, "operator {what} accepted");
            json_response(StatusCode::OK, body)
        }
        Err(e) => {
            tracing::warn!(operation = what, code = e.code(), "operator {what} refused");
            error_response(&e)
        }
    }
}
