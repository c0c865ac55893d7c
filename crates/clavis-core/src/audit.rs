//! Audit emission: the CloudTrail-shaped record of one request, and the [`AuditSink`] trait
//! that makes it durable. The request's outcome is released to the client only after
//! [`AuditSink::append`] returns `Ok` (invariant 5: fail closed).
//!
//! What a record never contains: plaintext, key material, secrets, signatures or ciphertext
//! blobs. Request and response members are copied with every member named in
//! [`REDACTED_MEMBERS`] removed, recursively.

use crate::{Caller, KmsError};
use serde_json::{Map, Value, json};

/// A durable, append-only destination for audit records.
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync {
    /// Appends one record (a compact JSON object) and returns once it is durable.
    async fn append(&self, record: Vec<u8>) -> Result<(), AuditFailure>;
}

/// Why a record could not be made durable. The operation it describes must then fail.
#[derive(Debug, thiserror::Error)]
#[error("audit log unavailable: {0}")]
pub struct AuditFailure(pub String);

/// Members that are never written to the audit log, wherever they appear.
pub const REDACTED_MEMBERS: &[&str] = &[
    "Plaintext",
    "PrivateKeyPlaintext",
    "CiphertextBlob",
    "CiphertextForRecipient",
    "EncryptedKeyMaterial",
    "ImportToken",
    "SecretAccessKey",
    "SecretString",
    "SecretBinary",
    "Signature",
    "Message",
    "Mac",
    "Recipient",
];

/// Everything the record of one request is made from.
#[derive(Debug)]
pub struct AuditInput<'a> {
    /// The id returned in `x-amzn-RequestId`.
    pub request_id: &'a str,
    /// When the request arrived (Unix milliseconds).
    pub time_ms: i64,
    /// The client's address.
    pub source_ip: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// The operation named by `X-Amz-Target`.
    pub operation: &'a str,
    /// The event source (`kms.amazonaws.com`).
    pub event_source: &'a str,
    /// The authenticated caller, if authentication succeeded.
    pub caller: Option<&'a Caller>,
    /// The access key id the request claimed, if it could be read.
    pub claimed_access_key_id: Option<&'a str>,
    /// The region of the credential scope, if it could be read.
    pub region: Option<&'a str>,
    /// The request body, if it was JSON.
    pub request: Option<&'a Value>,
    /// The response body, on success.
    pub response: Option<&'a Value>,
    /// The error, on failure.
    pub error: Option<&'a KmsError>,
    /// Time spent serving the request, in microseconds.
    pub duration_us: u64,
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Copies a JSON value without redacted members, renaming keys to CloudTrail's lowerCamelCase
/// (map keys of an encryption context or tags are data, not members, and keep their case).
fn sanitize(v: &Value, rename: bool) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, val) in m {
                if REDACTED_MEMBERS.contains(&k.as_str()) {
                    continue;
                }
                let is_data_map = k.ends_with("EncryptionContext");
                let key = if rename { lower_first(k) } else { k.clone() };
                out.insert(key, sanitize(val, rename && !is_data_map));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| sanitize(x, rename)).collect()),
        other => other.clone(),
    }
}

fn collect_key_arns(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                if let Value::String(s) = val
                    && matches!(k.as_str(), "KeyId" | "SourceKeyId" | "Arn" | "DestinationKeyId" | "TargetKeyId")
                    && s.starts_with("arn:aws:kms:")
                    && s.contains(":key/")
                    && !out.contains(s)
                {
                    out.push(s.clone());
                }
                collect_key_arns(val, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_key_arns(x, out)),
        _ => {}
    }
}

fn is_read_only(op: &str) -> bool {
    op.starts_with("Describe")
        || op.starts_with("List")
        || op.starts_with("Get")
        || op.starts_with("Lookup")
        || matches!(op, "Encrypt" | "Decrypt" | "ReEncrypt" | "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" | "GenerateRandom")
}

fn is_crypto(op: &str) -> bool {
    matches!(op, "Encrypt" | "Decrypt" | "ReEncrypt" | "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" | "GenerateRandom")
}

/// Formats Unix milliseconds as CloudTrail's `eventTime` (`2026-01-02T03:04:05Z`).
pub fn event_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Builds the CloudTrail-shaped record.
pub fn record(input: &AuditInput<'_>) -> Value {
    let user_identity = match input.caller {
        Some(c) => {
            let is_root = c.principal_arn.ends_with(":root");
            json!({
                "type": if is_root { "Root" } else { "IAMUser" },
                "principalId": c.account.as_str(),
                "arn": c.principal_arn,
                "accountId": c.account.as_str(),
                "accessKeyId": c.access_key_id,
            })
        }
        None => json!({ "type": "Unknown", "accessKeyId": input.claimed_access_key_id }),
    };
    let mut arns = Vec::new();
    if let Some(resp) = input.response {
        collect_key_arns(resp, &mut arns);
    }
    if let Some(req) = input.request {
        collect_key_arns(req, &mut arns);
    }
    let resources: Vec<Value> = arns
        .iter()
        .map(|arn| {
            let account = arn.split(':').nth(4).unwrap_or_default();
            json!({ "ARN": arn, "accountId": account, "type": "AWS::KMS::Key" })
        })
        .collect();
    let response_elements = match input.response {
        Some(r) if !is_crypto(input.operation) => sanitize(r, true),
        _ => Value::Null,
    };
    let mut event = json!({
        "eventVersion": "1.08",
        "userIdentity": user_identity,
        "eventTime": event_time(input.time_ms),
        "eventSource": input.event_source,
        "eventName": input.operation,
        "awsRegion": input.region.or(input.caller.map(|c| c.region.as_str())),
        "sourceIPAddress": input.source_ip,
        "userAgent": input.user_agent,
        "requestParameters": input.request.map(|r| sanitize(r, true)),
        "responseElements": response_elements,
        "requestID": input.request_id,
        "eventID": uuid::Uuid::new_v4().to_string(),
        "readOnly": is_read_only(input.operation),
        "resources": resources,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": input.caller.map(|c| c.account.as_str()),
        "additionalEventData": { "durationMicros": input.duration_us },
    });
    if let (Some(e), Value::Object(m)) = (input.error, &mut event) {
        m.insert("errorCode".into(), Value::String(e.code().to_owned()));
        m.insert("errorMessage".into(), Value::String(e.to_string()));
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secrets_and_keeps_context_keys() {
        let req = json!({"KeyId": "alias/x", "Plaintext": "c2VjcmV0", "EncryptionContext": {"Tenant": "a"}});
        let s = sanitize(&req, true);
        assert_eq!(s, json!({"keyId": "alias/x", "encryptionContext": {"Tenant": "a"}}));
        let resp = json!({"KeyMetadata": {"Arn": "arn:aws:kms:us-east-1:111122223333:key/k"}, "Plaintext": "x", "CiphertextBlob": "y"});
        assert_eq!(sanitize(&resp, true), json!({"keyMetadata": {"arn": "arn:aws:kms:us-east-1:111122223333:key/k"}}));
    }

    #[test]
    fn formats_event_time() {
        assert_eq!(event_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(event_time(1_440_938_160_999), "2015-08-30T12:36:00Z");
    }

    #[test]
    fn unauthenticated_record_has_error() {
        let e = KmsError::UnrecognizedClient;
        let r = record(&AuditInput {
            request_id: "r",
            time_ms: 0,
            source_ip: Some("127.0.0.1".into()),
            user_agent: None,
            operation: "Encrypt",
            event_source: "kms.amazonaws.com",
            caller: None,
            claimed_access_key_id: Some("AKIA"),
            region: Some("us-east-1"),
            request: Some(&json!({"KeyId": "k", "Plaintext": "c2VjcmV0"})),
            response: None,
            error: Some(&e),
            duration_us: 5,
        });
        assert_eq!(r["errorCode"], "UnrecognizedClientException");
        assert_eq!(r["userIdentity"]["type"], "Unknown");
        assert!(!r.to_string().contains("c2VjcmV0"));
    }
}
