//! What every JSON front end shares (the KMS JSON 1.1 API today; the Secrets Manager API and
//! the integrations later): decoding a request shape with bounded nesting, recording its
//! members for the audit, encoding the response shape, and [`Kms::invoke_json`], the dispatch
//! of the catalogue generated from [`crate::operation`] (the identity step first, from the
//! catalogue entry, then the entry's method).
//!
//! The audit rule itself is [`Kms::audited`]'s: a front end runs this inside it.

use crate::audit::{self, AuditParams};
use crate::{Caller, Kms, KmsError, Operation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Request options a front end takes from outside the body (headers), which a shape may use.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOptions {
    /// `X-Clavis-Rewrap: true`: Decrypt re-wraps an old ciphertext under the newest version.
    pub rewrap: bool,
}

/// A request shape: decoded from JSON, recorded by [`AuditParams`], and told the request's
/// options (most shapes ignore them).
pub trait RequestShape: DeserializeOwned + AuditParams {
    /// Applies the options a front end took from outside the body.
    fn apply(&mut self, _options: &RequestOptions) {}

    /// Members the options added, for the record (beyond [`AuditParams`]'s).
    fn extra_audit_params(&self, _out: &mut Map<String, Value>) {}
}

/// What the audit record needs from a decoded request and its response.
#[derive(Debug, Default)]
pub struct Members {
    /// The decoded request's members ([`AuditParams`]), once decoding succeeded.
    pub request_parameters: Option<Map<String, Value>>,
    /// The response's members, for an operation that changes something.
    pub response_elements: Option<Value>,
}

/// The deepest JSON nesting a request body may have (the deepest AWS KMS shape, a grant's
/// constraints, nests three levels).
pub const MAX_JSON_DEPTH: usize = 32;

/// Decodes the request shape, runs `op`, encodes the response shape; notes the decoded
/// members and (when `record_response`) the response's in `members`.
pub async fn call<Req, Resp, Fut>(
    body: &[u8],
    record_response: bool,
    options: &RequestOptions,
    members: &mut Members,
    op: impl FnOnce(Req) -> Fut,
) -> Result<Vec<u8>, KmsError>
where
    Req: RequestShape,
    Resp: Serialize,
    Fut: Future<Output = Result<Resp, KmsError>>,
{
    // An empty body is an empty request object, as botocore sends for operations without members.
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    // serde_json skips unknown members without a depth limit; no AWS shape nests deeper than a
    // few levels, so deeper input is refused before anything runs.
    if !nesting_within(body, MAX_JSON_DEPTH) {
        return Err(KmsError::Serialization(format!("The request body nests JSON deeper than {MAX_JSON_DEPTH} levels.")));
    }
    let mut req: Req = serde_json::from_slice(body).map_err(|e| KmsError::Serialization(serialization_message(&e)))?;
    req.apply(options);
    let mut params = req.audit_params();
    req.extra_audit_params(&mut params);
    members.request_parameters = Some(params);
    let resp = op(req).await?;
    if record_response {
        members.response_elements = audit::response_elements(&resp);
    }
    serde_json::to_vec(&resp).map_err(|e| KmsError::Internal(format!("response encoding: {e}")))
}

/// Whether `body`'s arrays and objects nest at most `max` deep (brackets inside strings do not
/// count). Malformed JSON passes here and fails in the parser.
pub fn nesting_within(body: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

fn serialization_message(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => format!("The request body is not valid JSON: {e}"),
        _ => format!("The request body does not match the operation's input shape: {}", without_string_value(&e.to_string())),
    }
}

/// serde_json's message with the string it quotes left out (`invalid type: string "...",
/// expected a boolean`): a client that put a plaintext or a secret in the wrong member must not
/// find it in its error message and the audit record's `errorMessage`.
pub fn without_string_value(message: &str) -> String {
    for prefix in ["invalid type: string \"", "invalid value: string \""] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some(end) = rest.rfind("\", expected ")
        {
            let (kind, _) = prefix.split_once('"').unwrap_or((prefix, ""));
            return format!("{kind}of {} characters{}", rest[..end].chars().count(), &rest[end + 1..]);
        }
    }
    message.to_owned()
}

impl Kms {
    /// Runs one operation of the catalogue on a JSON body for an authenticated caller: decodes
    /// its shape, takes the identity step for its catalogue entry, runs the entry's method and
    /// encodes the response. Generated from the catalogue ([`crate::operation`]), so an
    /// operation cannot be added without its method.
    pub async fn invoke_json(
        &self,
        caller: &Caller,
        op: Operation,
        body: &[u8],
        options: &RequestOptions,
        members: &mut Members,
    ) -> Result<Vec<u8>, KmsError> {
        crate::operation::dispatch_json(self, caller, op, body, options, members).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert!(nesting_within(br#"{"a": [[1]], "b": "[[[[[[[[["}"#, 3));
        assert!(!nesting_within(br#"{"a": [[[1]]]}"#, 3));
        assert!(nesting_within(br#"{"a": "\"[[[[", "b": {}}"#, 2));
        let deep = format!("{{\"Junk\": {}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(!nesting_within(deep.as_bytes(), MAX_JSON_DEPTH));
    }

    #[test]
    fn misplaced_strings_are_not_echoed() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Shape {
            dry_run: Option<bool>,
        }
        let e = serde_json::from_slice::<Shape>(br#"{"dry_run": "c2VjcmV0IHBsYWludGV4dA=="}"#).unwrap_err();
        let m = serialization_message(&e);
        assert!(!m.contains("c2VjcmV0"), "{m}");
        assert!(m.contains("invalid type: string of 24 characters, expected a boolean"), "{m}");
    }
}
