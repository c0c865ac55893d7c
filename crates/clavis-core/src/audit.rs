//! Audit emission: the CloudTrail-shaped record of one request, and the [`AuditSink`] trait
//! that makes it durable. The request's outcome is released to the client only after
//! [`AuditSink::append`] returns `Ok` (invariant 5: fail closed).
//!
//! What a record never contains: plaintext, key material, secrets, signatures or ciphertext
//! blobs. Request and response members are copied with every member named in
//! [`REDACTED_MEMBERS`] removed, recursively.

use crate::{Caller, KmsError};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The keys (ARNs) the core resolved while serving one request: the record's `resources`.
/// Shared by the clones of one request's [`Caller`]; only the core adds to it.
#[derive(Debug, Clone, Default)]
pub struct Resources(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Resources {
    /// Notes a key the request resolved (once).
    pub(crate) fn add(&self, arn: &str) {
        if let Ok(mut v) = self.0.lock()
            && !v.iter().any(|a| a == arn)
        {
            v.push(arn.to_owned());
        }
    }

    /// The keys noted so far.
    pub fn arns(&self) -> Vec<String> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// A durable, append-only destination for audit records.
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync {
    /// Appends one record (a compact JSON object) and returns once it is durable.
    async fn append(&self, record: Vec<u8>) -> Result<(), AuditFailure>;

    /// Up to `max` records (parsed), newest first, with sequence numbers below `before`, that
    /// pass `keep`; and where to continue. Sinks that cannot be read back return an error.
    async fn lookup(&self, query: LookupQuery) -> Result<(Vec<Value>, Option<u64>), AuditFailure>;

    /// Reseals the sink's MAC key under `root`'s current master key (master-key rotation).
    /// Sinks without a sealed key have nothing to do.
    fn reseal_key(&self, _root: &dyn clavis_crypto::seal::RootOfTrust) -> Result<(), AuditFailure> {
        Ok(())
    }
}

/// A search of the audit log (the LookupEvents operation).
pub struct LookupQuery {
    /// Only records with a sequence number below this (pagination).
    pub before: Option<u64>,
    /// Page size.
    pub max: usize,
    /// The filter.
    pub keep: Box<dyn Fn(&Value) -> bool + Send + Sync>,
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
    "ClavisRewrappedCiphertextBlob",
    "CiphertextForRecipient",
    "EncryptedKeyMaterial",
    "ImportToken",
    "PublicKey",
    "ClavisImportNonce",
    "ClavisEncryptedNonce",
    "ClavisNonceIv",
    "SecretAccessKey",
    "Shares",
    "Share",
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
    /// The request body, if it was read.
    pub request: Option<&'a [u8]>,
    /// The response body, on success.
    pub response: Option<&'a [u8]>,
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

/// A member name in CloudTrail's lowerCamelCase, written without an intermediate string.
struct LowerFirst<'a>(&'a str);

impl Serialize for LowerFirst<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::fmt::Display for LowerFirst<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut chars = self.0.chars();
        match chars.next() {
            Some(first) => {
                for c in first.to_lowercase() {
                    std::fmt::Write::write_char(f, c)?;
                }
                f.write_str(chars.as_str())
            }
            None => Ok(()),
        }
    }
}

/// Copies a JSON value without redacted members, renaming keys to CloudTrail's lowerCamelCase
/// (map keys of an encryption context are data, not members, and keep their case).
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

/// The top-level members of a JSON object body, borrowed without decoding their values (so a
/// plaintext member is never even copied).
type Members<'a> = BTreeMap<&'a str, &'a RawValue>;

fn members(body: Option<&[u8]>) -> Option<Members<'_>> {
    serde_json::from_slice(body?).ok()
}

/// `requestParameters` / `responseElements`: the members without redacted ones, names in
/// lowerCamelCase. Scalar members are copied as raw JSON; structured ones are decoded and
/// sanitised recursively.
struct Sanitized<'a>(&'a Members<'a>);

impl Serialize for Sanitized<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (k, raw) in self.0 {
            if REDACTED_MEMBERS.contains(k) {
                continue;
            }
            let text = raw.get();
            let key = LowerFirst(k);
            if text.starts_with('{') || text.starts_with('[') {
                let v: Value = serde_json::from_str(text).map_err(serde::ser::Error::custom)?;
                map.serialize_entry(&key, &sanitize(&v, !k.ends_with("EncryptionContext")))?;
            } else {
                map.serialize_entry(&key, raw)?;
            }
        }
        map.end()
    }
}

/// Key ARNs a request or response names at the top level (or in `KeyMetadata.Arn`).
fn key_arns<'a>(m: &'a Members<'a>, out: &mut Vec<String>) {
    for name in ["KeyId", "SourceKeyId", "DestinationKeyId", "TargetKeyId"] {
        if let Some(raw) = m.get(name)
            && let Ok(s) = serde_json::from_str::<&str>(raw.get())
            && s.starts_with("arn:aws:kms:")
            && s.contains(":key/")
            && !out.iter().any(|a| a == s)
        {
            out.push(s.to_owned());
        }
    }
    if let Some(raw) = m.get("KeyMetadata")
        && let Ok(meta) = serde_json::from_str::<BTreeMap<&str, &RawValue>>(raw.get())
        && let Some(arn) = meta.get("Arn").and_then(|r| serde_json::from_str::<&str>(r.get()).ok())
        && !out.iter().any(|a| a == arn)
    {
        out.push(arn.to_owned());
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
    if !(0..=9999).contains(&y) {
        return format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60);
    }
    // Digits written directly (this runs for every request; `format!` was a tenth of a record).
    let mut out = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses an `eventTime` back to Unix seconds.
pub fn parse_event_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (y, mo, d, h, mi, se) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400 + h * 3600 + mi * 60 + se)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserIdentity<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
    access_key_id: Option<&'a str>,
}

#[derive(Serialize)]
struct Resource<'a> {
    #[serde(rename = "ARN")]
    arn: &'a str,
    #[serde(rename = "accountId")]
    account_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdditionalEventData {
    duration_micros: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    event_version: &'static str,
    user_identity: UserIdentity<'a>,
    event_time: String,
    event_source: &'a str,
    event_name: &'a str,
    aws_region: Option<&'a str>,
    #[serde(rename = "sourceIPAddress")]
    source_ip_address: Option<&'a str>,
    user_agent: Option<&'a str>,
    request_parameters: Option<Sanitized<'a>>,
    response_elements: Option<Sanitized<'a>>,
    #[serde(rename = "requestID")]
    request_id: &'a str,
    #[serde(rename = "eventID")]
    event_id: &'a str,
    read_only: bool,
    resources: Vec<Resource<'a>>,
    event_type: &'static str,
    management_event: bool,
    recipient_account_id: Option<&'a str>,
    additional_event_data: AdditionalEventData,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
}

/// Builds the CloudTrail-shaped record as compact JSON.
pub fn record(input: &AuditInput<'_>) -> Result<Vec<u8>, serde_json::Error> {
    let user_identity = match input.caller {
        Some(c) => UserIdentity {
            kind: if c.principal_arn.ends_with(":root") { "Root" } else { "IAMUser" },
            principal_id: Some(c.account.as_str()),
            arn: Some(&c.principal_arn),
            account_id: Some(c.account.as_str()),
            access_key_id: Some(&c.access_key_id),
        },
        None => {
            UserIdentity { kind: "Unknown", principal_id: None, arn: None, account_id: None, access_key_id: input.claimed_access_key_id }
        }
    };
    let request = members(input.request);
    let response = members(input.response);
    let mut arns = Vec::new();
    if let Some(r) = &response {
        key_arns(r, &mut arns);
    }
    if let Some(r) = &request {
        key_arns(r, &mut arns);
    }
    let resources =
        arns.iter().map(|arn| Resource { arn, account_id: arn.split(':').nth(4).unwrap_or_default(), kind: "AWS::KMS::Key" }).collect();
    let mut event_id = uuid::Uuid::encode_buffer();
    let event_id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut event_id);
    let record = Record {
        event_version: "1.08",
        user_identity,
        event_time: event_time(input.time_ms),
        event_source: input.event_source,
        event_name: input.operation,
        aws_region: input.region.or(input.caller.map(|c| c.region.as_str())),
        source_ip_address: input.source_ip.as_deref(),
        user_agent: input.user_agent,
        request_parameters: request.as_ref().map(Sanitized),
        response_elements: if is_crypto(input.operation) { None } else { response.as_ref().map(Sanitized) },
        request_id: input.request_id,
        event_id,
        read_only: is_read_only(input.operation),
        resources,
        event_type: "AwsApiCall",
        management_event: true,
        recipient_account_id: input.caller.map(|c| c.account.as_str()),
        additional_event_data: AdditionalEventData { duration_micros: input.duration_us },
        error_code: input.error.map(KmsError::code),
        error_message: input.error.map(ToString::to_string),
    };
    // Sized for a typical record (about 900 bytes), so the buffer rarely grows.
    let mut out = Vec::with_capacity(1024);
    serde_json::to_writer(&mut out, &record)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        assert_eq!(parse_event_time("2015-08-30T12:36:00Z"), Some(1_440_938_160));
        assert_eq!(parse_event_time(&event_time(1_790_000_000_000)), Some(1_790_000_000));
        assert_eq!(event_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(event_time(1_440_938_160_999), "2015-08-30T12:36:00Z");
        assert_eq!(event_time(253_402_300_799_000), "9999-12-31T23:59:59Z");
        assert_eq!(event_time(-1_000), "1969-12-31T23:59:59Z");
        // Every day of a leap year and its neighbours round-trips.
        for day in 0..3 * 366 {
            let ms = 1_704_067_200_000 + day * 86_400_000 + 45_296_000; // from 2024-01-01, 12:34:56
            let text = event_time(ms);
            assert_eq!(parse_event_time(&text), Some(ms / 1000), "{text}");
            assert!(text.ends_with("T12:34:56Z"), "{text}");
        }
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
            request: Some(br#"{"KeyId": "k", "Plaintext": "c2VjcmV0"}"#),
            response: None,
            error: Some(&e),
            duration_us: 5,
        })
        .unwrap();
        assert!(!String::from_utf8_lossy(&r).contains("c2VjcmV0"));
        let r: Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(r["requestParameters"], json!({"keyId": "k"}));
        assert_eq!(r["errorCode"], "UnrecognizedClientException");
        assert_eq!(r["userIdentity"]["type"], "Unknown");
    }
}
