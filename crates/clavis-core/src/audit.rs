//! Audit emission: the CloudTrail-shaped record of one request, and the [`AuditSink`] trait
//! that makes it durable. The request's outcome is released to the client only after
//! [`AuditSink::append`] returns `Ok` (invariant 5: fail closed).
//!
//! What a record never contains: plaintext, key material, secrets, signatures or ciphertext
//! blobs. Request members come from the decoded request ([`AuditParams`]), which leaves blobs
//! out by type; response members from the typed response, with every member named in
//! [`REDACTED_MEMBERS`] removed, recursively. Every record is bounded (docs/formats.md).
//!
//! The rule "no response before its durable record" is applied by [`crate::Kms::audited`],
//! which every front end calls. The changes the server makes on its own (the scheduler's) are
//! [`ServiceEventName`]s, CloudTrail's `AwsServiceEvent`s, whose records the same builder makes
//! and the kernel appends before the change.

use crate::{Caller, KmsError};
use serde::Serialize;
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

    /// Appends several records, in order, and returns once all are durable. A sink that batches
    /// commits makes them durable together (one wait); the default appends them one by one.
    async fn append_many(&self, records: Vec<Vec<u8>>) -> Result<(), AuditFailure> {
        for r in records {
            self.append(r).await?;
        }
        Ok(())
    }

    /// Up to `max` records (parsed), newest first, with sequence numbers below `before`, that
    /// pass `keep`; and where to continue. Sinks that cannot be read back return an error.
    async fn lookup(&self, query: LookupQuery) -> Result<(Vec<Value>, Option<u64>), AuditFailure>;

    /// Appends one record, or, when the sink cannot write yet (a sealed server's log opens at
    /// unseal), holds it in memory to be written first when it opens. For the operator paths
    /// only, which must work while sealed.
    async fn append_or_hold(&self, record: Vec<u8>) -> Result<(), AuditFailure> {
        self.append(record).await
    }

    /// [`AuditSink::append_or_hold`] for the record of a refused operator attempt, which
    /// changed nothing: a sink that holds records may count it instead of holding it once it
    /// holds many (so that strangers' junk cannot fill the room an operator's accepted shares
    /// need while sealed). Follows a reservation like `append_or_hold`.
    async fn hold_refusal(&self, record: Vec<u8>) -> Result<(), AuditFailure> {
        self.append_or_hold(record).await
    }

    /// Reserves room for one record of [`AuditSink::append_or_hold`] before the operation it
    /// describes runs, so that an operation never runs whose record could not be held; false
    /// when there is none. Each `true` is followed by one `append_or_hold` or one
    /// [`AuditSink::release_hold`].
    fn reserve_hold(&self) -> bool {
        true
    }

    /// Gives back a reservation that no record used.
    fn release_hold(&self) {}

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
    "RawSecretAccessKey",
    "Shares",
    "Share",
    "SecretString",
    "SecretBinary",
    "Signature",
    "Message",
    "Mac",
    "Recipient",
    "SharedSecret",
    "SharedSecretCiphertextBlob",
    "RandomPassword",
    "PrivateKeyCiphertextBlob",
];

/// The most bytes one string in a record's `requestParameters` / `responseElements` keeps (the
/// largest legitimate member, a key policy, is 32 KiB).
pub const MAX_FIELD_BYTES: usize = 32 * 1024;
/// The most bytes a whole record of an authenticated request may have.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// The most bytes a whole record of an unauthenticated request may have.
pub const MAX_UNAUTHENTICATED_RECORD_BYTES: usize = 16 * 1024;
/// Caps of the header-borne fields and of the error message (docs/formats.md).
const MAX_USER_AGENT: usize = 256;
const MAX_ACCESS_KEY_ID: usize = 128;
const MAX_OPERATION: usize = 128;
const MAX_REGION: usize = 32;
const MAX_ERROR_MESSAGE: usize = 1024;

/// What the front end knows about a request before it runs: the parts of its record that do
/// not depend on the outcome. Header-borne values are the client's claims, capped when the
/// record is built.
#[derive(Debug, Clone)]
pub struct RequestEvent<'a> {
    /// The id returned in `x-amzn-RequestId`.
    pub request_id: &'a str,
    /// The client's address.
    pub source_ip: Option<std::net::IpAddr>,
    /// The `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// The operation named by `X-Amz-Target` (or the operator path).
    pub operation: &'a str,
    /// The event source (`kms.amazonaws.com`, `admin.clavis`, `operator.clavis`).
    pub event_source: &'a str,
    /// The access key id the request claimed, if it could be read.
    pub claimed_access_key_id: Option<&'a str>,
    /// The region of the credential scope, if it could be read.
    pub region: Option<&'a str>,
}

/// What a front end hands back to [`crate::Kms::audited`] once a request has run.
#[derive(Debug)]
pub struct Outcome<T> {
    /// The authenticated caller, if authentication succeeded. Its [`Resources`] are the keys
    /// the core resolved.
    pub caller: Option<Caller>,
    /// The decoded request's members ([`AuditParams`]), once decoding succeeded.
    pub request_parameters: Option<Map<String, Value>>,
    /// The response's members ([`response_elements`]), for operations that change something.
    pub response_elements: Option<Value>,
    /// Unauthenticated failures from this source refused without a record of their own since
    /// the last one that got one (rate limiting of floods); shown in this record.
    pub suppressed_before: u64,
    /// This request is an unauthenticated failure refused by rate limiting: it gets no record
    /// of its own (a later one counts it). Honoured only for a refusal without a caller.
    pub suppress: bool,
    /// The result.
    pub result: Result<T, KmsError>,
}

impl<T> Outcome<T> {
    /// An outcome with nothing but a result and, maybe, a caller.
    pub fn new(caller: Option<Caller>, result: Result<T, KmsError>) -> Outcome<T> {
        Outcome { caller, request_parameters: None, response_elements: None, suppressed_before: 0, suppress: false, result }
    }
}

/// The members of a decoded request, as they appear in a record's `requestParameters`: names
/// in CloudTrail's lowerCamelCase, blobs and free-form JSON left out by type ([`AuditValue`]).
/// Built from the value the operation received, never by parsing the body again, so what the
/// record shows is what the operation used.
pub trait AuditParams {
    /// The members that are present.
    fn audit_params(&self) -> Map<String, Value>;
}

/// How one member's value appears in a record; `None` leaves it out (blobs, secrets).
pub trait AuditValue {
    /// The value to record, if any.
    fn audit_value(&self) -> Option<Value>;
}

impl AuditValue for String {
    fn audit_value(&self) -> Option<Value> {
        Some(Value::String(self.clone()))
    }
}
impl AuditValue for bool {
    fn audit_value(&self) -> Option<Value> {
        Some(Value::Bool(*self))
    }
}
impl AuditValue for i64 {
    fn audit_value(&self) -> Option<Value> {
        Some(Value::from(*self))
    }
}
impl AuditValue for u8 {
    fn audit_value(&self) -> Option<Value> {
        Some(Value::from(*self))
    }
}
impl AuditValue for f64 {
    fn audit_value(&self) -> Option<Value> {
        serde_json::Number::from_f64(*self).map(Value::Number)
    }
}
impl<T: AuditValue> AuditValue for Vec<T> {
    fn audit_value(&self) -> Option<Value> {
        Some(Value::Array(self.iter().filter_map(AuditValue::audit_value).collect()))
    }
}
/// An encryption context: its keys are data and keep their case.
impl AuditValue for BTreeMap<String, String> {
    fn audit_value(&self) -> Option<Value> {
        Some(Value::Object(self.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect()))
    }
}
/// Ciphertexts are never recorded (CloudTrail leaves them out too).
impl AuditValue for crate::api::Blob {
    fn audit_value(&self) -> Option<Value> {
        None
    }
}
/// Secrets (access-key secrets, unseal shares) are never recorded.
impl AuditValue for crate::api::SecretText {
    fn audit_value(&self) -> Option<Value> {
        None
    }
}
/// Plaintexts are never recorded.
impl AuditValue for crate::api::SecretBlob {
    fn audit_value(&self) -> Option<Value> {
        None
    }
}
/// Free-form JSON members (`Recipient`, an attestation document) are not recorded.
impl AuditValue for Value {
    fn audit_value(&self) -> Option<Value> {
        None
    }
}
/// Nested request structures are objects of their recorded members.
impl<T: AuditParams> AuditValue for T {
    fn audit_value(&self) -> Option<Value> {
        Some(Value::Object(self.audit_params()))
    }
}

/// `key_id` -> `keyId`: a request member's Rust name in CloudTrail's lowerCamelCase.
pub fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether a record carries the operation's `responseElements`: CloudTrail records none for
/// read operations (and LookupEvents's response holds earlier records, so each lookup of
/// lookups would be about three times larger than the last).
pub fn records_response(operation: &str) -> bool {
    !is_read_only(operation)
}

/// The response's members for a record: serialised from the typed response the operation
/// returned (never from client bytes), with every member named in [`REDACTED_MEMBERS`]
/// removed and names in lowerCamelCase.
pub fn response_elements<T: Serialize>(response: &T) -> Option<Value> {
    serde_json::to_value(response).ok().map(|v| sanitize(&v, true))
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
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

/// CloudTrail's `readOnly`: from the catalogue; for a name outside it (an unknown operation,
/// refused), by AWS's naming conventions.
fn is_read_only(op: &str) -> bool {
    if let Some(known) = crate::Operation::from_name(op) {
        return known.read_only();
    }
    op.starts_with("Describe")
        || op.starts_with("List")
        || op.starts_with("Get")
        || op.starts_with("Lookup")
        || matches!(op, "Encrypt" | "Decrypt" | "ReEncrypt" | "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" | "GenerateRandom")
}

/// Formats Unix milliseconds as CloudTrail's `eventTime` (`2026-01-02T03:04:05Z`).
pub fn event_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = clavis_sigv4::civil_from_days(days);
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
#[serde(untagged)]
enum UserIdentity<'a> {
    /// A request's caller (or, unauthenticated, the access key it claimed).
    #[serde(rename_all = "camelCase")]
    Principal {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        principal_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        arn: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        account_id: Option<&'a str>,
        access_key_id: Option<&'a str>,
    },
    /// The service itself, on the resource owner's account, as CloudTrail writes it for an
    /// `AwsServiceEvent` (no `type`, no principal).
    #[serde(rename_all = "camelCase")]
    Service { account_id: &'a str, invoked_by: &'static str },
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

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct AdditionalEventData<'a> {
    /// How long a request took (service events have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_micros: Option<u64>,
    /// The secret a Secrets Manager service event is about (CloudTrail's member name).
    #[serde(rename = "SecretId", skip_serializing_if = "Option::is_none")]
    secret_id: Option<&'a str>,
    /// On a service event's second record: the `eventID` of the record written before the
    /// change, which this one says was not made.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_made_event_id: Option<&'a str>,
    /// Fields cut to their cap, or left out to keep the record under its total cap.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    truncated: Vec<String>,
    /// Unauthenticated failures from this source refused without a record since the last one.
    #[serde(skip_serializing_if = "is_zero")]
    suppressed_failures: u64,
}

impl AdditionalEventData<'_> {
    fn is_empty(&self) -> bool {
        self.duration_micros.is_none()
            && self.secret_id.is_none()
            && self.not_made_event_id.is_none()
            && self.truncated.is_empty()
            && self.suppressed_failures == 0
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
    source_ip_address: Option<String>,
    user_agent: Option<&'a str>,
    request_parameters: Option<Map<String, Value>>,
    response_elements: Option<Value>,
    #[serde(rename = "requestID", skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(rename = "eventID")]
    event_id: &'a str,
    read_only: bool,
    resources: Vec<Resource<'a>>,
    event_type: &'static str,
    management_event: bool,
    recipient_account_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_event_details: Option<Value>,
    #[serde(skip_serializing_if = "AdditionalEventData::is_empty")]
    additional_event_data: AdditionalEventData<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<&'a str>,
}

/// `s` cut to at most `max` bytes on a character boundary, and whether it was cut.
fn cap(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

/// The bytes a character takes in a JSON string as serde_json writes it (`\"`, `\\`, the short
/// escapes of five control characters, `\u00XX` for the other ones).
fn escaped_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        c if u32::from(c) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// The bytes `s` takes inside a JSON string.
fn escaped_len(s: &str) -> usize {
    s.chars().map(escaped_char_len).sum()
}

/// The length in bytes of the longest prefix of `s` (on a character boundary) that takes at
/// most `max` bytes once escaped, and whether that is shorter than `s`.
fn cap_escaped(s: &str, max: usize) -> (usize, bool) {
    let mut written = 0;
    for (i, c) in s.char_indices() {
        written += escaped_char_len(c);
        if written > max {
            return (i, true);
        }
    }
    (s.len(), false)
}

/// The most bytes (escaped) a member name keeps in a record: longer names (an encryption
/// context's keys are client-chosen) are cut.
const MAX_MEMBER_NAME_BYTES: usize = 256;

/// The most entries `additionalEventData.truncated` lists (then one `... N more`), and the most
/// bytes (escaped) one of its paths keeps.
const MAX_TRUNCATED_ENTRIES: usize = 16;
const MAX_TRUNCATED_PATH_BYTES: usize = 256;

/// Notes a cut at `path`, within the bounds of the `truncated` list (the last entry counts the
/// paths left out).
fn note_cut(truncated: &mut Vec<String>, path: &str) {
    if truncated.len() < MAX_TRUNCATED_ENTRIES {
        truncated.push(path[..cap_escaped(path, MAX_TRUNCATED_PATH_BYTES).0].to_owned());
        return;
    }
    let more = truncated.get(MAX_TRUNCATED_ENTRIES).and_then(|m| m.strip_prefix("... ")?.strip_suffix(" more")?.parse::<u64>().ok());
    truncated.truncate(MAX_TRUNCATED_ENTRIES);
    truncated.push(format!("... {} more", more.unwrap_or(0) + 1));
}

/// Appends `.name` to a path, the name cut to a few escaped bytes (paths are only pointers).
fn push_path(path: &mut String, name: &str) {
    path.push('.');
    path.push_str(&name[..cap_escaped(name, 64).0]);
}

/// Cuts every string in `v` that takes more than `max` bytes once escaped (a control character
/// takes six) to `max`, and every member name to [`MAX_MEMBER_NAME_BYTES`], noting the paths.
fn cut_strings(v: &mut Value, max: usize, path: &mut String, truncated: &mut Vec<String>) {
    match v {
        // (A string escapes to at most six times its length: only a longer one needs measuring.)
        Value::String(s) if s.len().saturating_mul(6) > max && cap_escaped(s, max).1 => {
            let keep = cap_escaped(s, max).0;
            s.truncate(keep);
            note_cut(truncated, path);
        }
        Value::Object(m) => {
            if m.keys().any(|k| k.len().saturating_mul(6) > MAX_MEMBER_NAME_BYTES && cap_escaped(k, MAX_MEMBER_NAME_BYTES).1) {
                let len = path.len();
                push_path(path, "*");
                note_cut(truncated, path);
                path.truncate(len);
                // Cut names stay distinct (`#2`, `#3`, ... after a name another one was cut to),
                // so no member is lost to a collision.
                // Unique against every name kept so far, cut or not (a per-base counter keeps
                // the search linear).
                let mut cut = Map::new();
                let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
                for (k, val) in std::mem::take(m) {
                    let base = k[..cap_escaped(&k, MAX_MEMBER_NAME_BYTES - 8).0].to_owned();
                    let n = seen.entry(base.clone()).or_insert(1);
                    let mut name = base.clone();
                    while cut.contains_key(&name) {
                        *n += 1;
                        name = format!("{base}#{n}");
                    }
                    cut.insert(name, val);
                }
                *m = cut;
            }
            for (k, val) in m.iter_mut() {
                let len = path.len();
                push_path(path, k);
                cut_strings(val, max, path, truncated);
                path.truncate(len);
            }
        }
        Value::Array(a) => {
            for val in a.iter_mut() {
                cut_strings(val, max, path, truncated);
            }
        }
        _ => {}
    }
}

/// Cuts every string in `v` longer than [`MAX_FIELD_BYTES`] (escaped), and long member names.
fn cap_strings(v: &mut Value, path: &mut String, truncated: &mut Vec<String>) {
    cut_strings(v, MAX_FIELD_BYTES, path, truncated);
}

/// Applies a cap (`cap_strings`, `cap_lists`, a level of `cut_strings`) to every request and
/// response member, with the member's path for `additionalEventData.truncated`.
fn each_member(
    params: &mut Option<Map<String, Value>>,
    response: &mut Option<Value>,
    truncated: &mut Vec<String>,
    apply: &mut dyn FnMut(&mut Value, &mut String, &mut Vec<String>),
) {
    let mut path = String::new();
    if let Some(params) = params {
        for (k, v) in params.iter_mut() {
            path.clear();
            path.push_str("requestParameters");
            push_path(&mut path, k);
            apply(v, &mut path, truncated);
        }
    }
    if let Some(response) = response {
        path.clear();
        path.push_str("responseElements");
        apply(response, &mut path, truncated);
    }
}

/// How many members of one list a record keeps when lists must be cut.
const MAX_LIST_MEMBERS: usize = 32;

/// Cuts every list in `v` longer than [`MAX_LIST_MEMBERS`], noting `path[kept of total]`.
fn cap_lists(v: &mut Value, path: &mut String, truncated: &mut Vec<String>) {
    match v {
        Value::Array(a) => {
            if a.len() > MAX_LIST_MEMBERS {
                note_cut(truncated, &format!("{path}[{MAX_LIST_MEMBERS} of {}]", a.len()));
                a.truncate(MAX_LIST_MEMBERS);
            }
            for val in a.iter_mut() {
                cap_lists(val, path, truncated);
            }
        }
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                let len = path.len();
                push_path(path, k);
                cap_lists(val, path, truncated);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// The escaped lengths of the string values in `v`.
fn string_lengths(v: &Value, out: &mut Vec<usize>) {
    match v {
        Value::String(s) => out.push(escaped_len(s)),
        Value::Object(m) => m.values().for_each(|val| string_lengths(val, out)),
        Value::Array(a) => a.iter().for_each(|val| string_lengths(val, out)),
        _ => {}
    }
}

/// The shortest strings are never cut below this (escaped bytes): identifiers (key ids, ARNs,
/// names) stay whole.
const MIN_CUT_LEVEL: usize = 256;

/// The highest level such that cutting every string longer than it (escaped) to it saves at
/// least `excess` bytes, at least [`MIN_CUT_LEVEL`] (water filling over the sorted lengths).
fn cut_level(mut lengths: Vec<usize>, excess: usize) -> usize {
    lengths.sort_unstable_by(|a, b| b.cmp(a));
    let mut sum = 0usize;
    for (k, len) in lengths.iter().enumerate() {
        sum += len;
        let next = lengths.get(k + 1).copied().unwrap_or(0);
        // Cutting the k+1 longest to `level` saves sum - (k+1) * level; solve for the level.
        if sum >= excess {
            let level = (sum - excess) / (k + 1);
            if level >= next {
                return level.max(MIN_CUT_LEVEL);
            }
        }
    }
    MIN_CUT_LEVEL
}

/// Replaces the largest request member (then the response) by a note of its size, once; false
/// when nothing is left to replace. The small members that name what ran stay.
fn summarise_largest_member(params: &mut Option<Map<String, Value>>, response: &mut Option<Value>, truncated: &mut Vec<String>) -> bool {
    let summary = |v: &Value| Value::String(format!("({} bytes not recorded)", serde_json::to_vec(v).map_or(0, |b| b.len())));
    let largest = params.as_ref().and_then(|p| {
        p.iter()
            .filter(|(_, v)| !v.is_string() || v.as_str().is_some_and(|s| !s.ends_with(" bytes not recorded)")))
            .map(|(k, v)| (serde_json::to_vec(v).map_or(0, |b| b.len()), k.clone()))
            .filter(|(len, _)| *len > MIN_CUT_LEVEL)
            .max()
    });
    if let (Some((_, name)), Some(p)) = (largest, params.as_mut())
        && let Some(v) = p.get_mut(&name)
    {
        *v = summary(v);
        let mut path = "requestParameters".to_owned();
        push_path(&mut path, &name);
        note_cut(truncated, &path);
        return true;
    }
    if let Some(r) = response.take() {
        note_cut(truncated, "responseElements");
        *response = Some(summary(&r));
        return !r.is_string();
    }
    false
}

/// Everything a record is made from, gathered by [`crate::Kms::audited`].
pub(crate) struct RecordInput<'a> {
    pub event: &'a RequestEvent<'a>,
    /// The record's `eventID` (a UUID; GetKeyLastUsage reports it too).
    pub event_id: &'a str,
    pub time_ms: i64,
    pub duration_us: u64,
    pub caller: Option<&'a Caller>,
    pub request_parameters: Option<Map<String, Value>>,
    pub response_elements: Option<Value>,
    pub error: Option<&'a KmsError>,
    pub suppressed_before: u64,
    /// An operator path (init, unseal): unauthenticated by design, its decoded members (which
    /// never include a share) are recorded.
    pub operator: bool,
}

/// Builds the CloudTrail-shaped record as compact JSON. Infallible and bounded: every
/// client-controlled field has a cap and the whole record one too ([`MAX_RECORD_BYTES`], or
/// [`MAX_UNAUTHENTICATED_RECORD_BYTES`] without a caller); what was cut is listed in
/// `additionalEventData.truncated`. A request without an authenticated caller records no
/// request parameters (its body was never decoded), except on the operator paths.
pub(crate) fn record(input: RecordInput<'_>) -> Vec<u8> {
    let RecordInput {
        event,
        event_id,
        time_ms,
        duration_us,
        caller,
        mut request_parameters,
        mut response_elements,
        error,
        suppressed_before,
        operator,
    } = input;
    let mut truncated = Vec::new();
    let (operation, cut) = cap(event.operation, MAX_OPERATION);
    if cut {
        truncated.push("eventName".to_owned());
    }
    let user_agent = event.user_agent.map(|u| {
        let (u, cut) = cap(u, MAX_USER_AGENT);
        if cut {
            truncated.push("userAgent".to_owned());
        }
        u
    });
    let message = error.map(ToString::to_string);
    let error_message = message.as_deref().map(|m| {
        let (m, cut) = cap(m, MAX_ERROR_MESSAGE);
        if cut {
            truncated.push("errorMessage".to_owned());
        }
        m
    });
    let region = match caller {
        Some(c) => Some(c.region.as_str()),
        None => event.region.map(|r| cap(r, MAX_REGION).0),
    };
    if caller.is_none() && !operator {
        request_parameters = None;
        response_elements = None;
    }
    if !records_response(event.operation) {
        response_elements = None;
    }
    each_member(&mut request_parameters, &mut response_elements, &mut truncated, &mut cap_strings);
    let user_identity = match caller {
        Some(c) => UserIdentity::Principal {
            kind: if c.principal_arn.ends_with(":root") { "Root" } else { "IAMUser" },
            principal_id: Some(c.account.as_str()),
            arn: Some(&c.principal_arn),
            account_id: Some(c.account.as_str()),
            access_key_id: Some(&c.access_key_id),
        },
        None => UserIdentity::Principal {
            kind: "Unknown",
            principal_id: None,
            arn: None,
            account_id: None,
            access_key_id: event.claimed_access_key_id.map(|a| cap(a, MAX_ACCESS_KEY_ID).0),
        },
    };
    let arns = caller.map(|c| c.resources.arns()).unwrap_or_default();
    let resources: Vec<Resource<'_>> = arns.iter().map(|arn| resource(arn)).collect();
    let limit = if caller.is_some() { MAX_RECORD_BYTES } else { MAX_UNAUTHENTICATED_RECORD_BYTES };
    let rec = Record {
        event_version: "1.08",
        user_identity,
        event_time: event_time(time_ms),
        event_source: event.event_source,
        event_name: operation,
        aws_region: region,
        source_ip_address: event.source_ip.map(|ip| ip.to_string()),
        user_agent,
        request_parameters,
        response_elements,
        request_id: Some(event.request_id),
        event_id,
        read_only: is_read_only(event.operation),
        resources,
        event_type: "AwsApiCall",
        management_event: true,
        recipient_account_id: caller.map(|c| c.account.as_str()),
        service_event_details: None,
        additional_event_data: AdditionalEventData {
            duration_micros: Some(duration_us),
            truncated,
            suppressed_failures: suppressed_before,
            ..AdditionalEventData::default()
        },
        error_code: error.map(KmsError::code),
        error_message,
    };
    finish(rec, limit)
}

/// A key or secret as a record's resource.
fn resource(arn: &str) -> Resource<'_> {
    Resource {
        arn,
        account_id: arn.split(':').nth(4).unwrap_or_default(),
        kind: if arn.starts_with("arn:aws:secretsmanager:") { "AWS::SecretsManager::Secret" } else { "AWS::KMS::Key" },
    }
}

/// A change the service makes on its own, not at a caller's request (the scheduler's work),
/// under the event name AWS CloudTrail records it with (`eventType` `AwsServiceEvent`). The
/// one list of them: the source, the identity and the details of each record derive from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceEventName {
    /// KMS destroyed a key at the end of its deletion window.
    DeleteKey,
    /// KMS rotated a key's material automatically.
    RotateKey,
    /// KMS erased imported key material past its `ValidTo`.
    DeleteExpiredKeyMaterial,
    /// Secrets Manager destroyed a secret, with all its versions, at the end of its recovery
    /// window (AWS's non-API deletion events are per version: `StartSecretVersionDelete`,
    /// `CancelSecretVersionDelete`, `EndSecretVersionDelete`; Clavis records the end, once
    /// per secret).
    EndSecretVersionDelete,
    /// Secrets Manager began a scheduled rotation of a secret.
    RotationStarted,
    /// A scheduled rotation finished.
    RotationSucceeded,
    /// A scheduled rotation failed (`errorMessage` says why).
    RotationFailed,
}

impl ServiceEventName {
    /// The `eventName`.
    pub fn name(self) -> &'static str {
        match self {
            Self::DeleteKey => "DeleteKey",
            Self::RotateKey => "RotateKey",
            Self::DeleteExpiredKeyMaterial => "DeleteExpiredKeyMaterial",
            Self::EndSecretVersionDelete => "EndSecretVersionDelete",
            Self::RotationStarted => "RotationStarted",
            Self::RotationSucceeded => "RotationSucceeded",
            Self::RotationFailed => "RotationFailed",
        }
    }

    fn is_kms(self) -> bool {
        matches!(self, Self::DeleteKey | Self::RotateKey | Self::DeleteExpiredKeyMaterial)
    }

    /// The `eventSource`.
    pub fn source(self) -> &'static str {
        if self.is_kms() { "kms.amazonaws.com" } else { "secretsmanager.amazonaws.com" }
    }

    /// `userIdentity.invokedBy`, `sourceIPAddress` and `userAgent`: CloudTrail writes
    /// `AWS Internal` for KMS's service events and the service principal for Secrets
    /// Manager's.
    fn invoked_by(self) -> &'static str {
        if self.is_kms() { "AWS Internal" } else { "secretsmanager.amazonaws.com" }
    }
}

/// What the record of a service event is built from: the event and the one key or secret it
/// changed. Nothing else goes in (no request parameters: no one sent any).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServiceEvent<'a> {
    pub name: ServiceEventName,
    /// The key's or secret's ARN (its account and region are the record's).
    pub arn: &'a str,
    /// Links the records of one secret rotation (`Rotation-<ARN>-<token>`, as AWS).
    pub request_id: Option<&'a str>,
}

/// The record of a service event, through the same record type, caps and serialisation as a
/// request's. `not_made`: the change announced by the record `eventID` did not happen, for the
/// reason given (the second record of a change that failed after its record was written).
pub(crate) fn service_record(
    ev: &ServiceEvent<'_>,
    event_id: &str,
    time_ms: i64,
    error: Option<&KmsError>,
    not_made: Option<&str>,
) -> Vec<u8> {
    let parts: Vec<&str> = ev.arn.splitn(6, ':').collect();
    let (region, account) = (parts.get(3).copied().unwrap_or_default(), parts.get(4).copied().unwrap_or_default());
    let mut truncated = Vec::new();
    let message = error.map(ToString::to_string);
    let error_message = message.as_deref().map(|m| {
        let (m, cut) = cap(m, MAX_ERROR_MESSAGE);
        if cut {
            truncated.push("errorMessage".to_owned());
        }
        m
    });
    let key_id = ev.arn.rsplit_once(":key/").map(|(_, id)| id);
    // As CloudTrail: DeleteKey names the key in responseElements (since December 2022), the
    // other KMS events in serviceEventDetails, Secrets Manager's in additionalEventData.
    let (response_elements, service_event_details) = match ev.name {
        ServiceEventName::DeleteKey => (Some(serde_json::json!({"keyId": ev.arn})), None),
        ServiceEventName::RotateKey => (None, Some(serde_json::json!({"rotationType": "AUTOMATIC", "keyId": key_id}))),
        ServiceEventName::DeleteExpiredKeyMaterial => (None, Some(serde_json::json!({"keyId": key_id}))),
        _ => (None, None),
    };
    let invoked_by = ev.name.invoked_by();
    let rec = Record {
        event_version: "1.08",
        user_identity: UserIdentity::Service { account_id: account, invoked_by },
        event_time: event_time(time_ms),
        event_source: ev.name.source(),
        event_name: ev.name.name(),
        aws_region: Some(region),
        source_ip_address: Some(invoked_by.to_owned()),
        user_agent: Some(invoked_by),
        request_parameters: None,
        response_elements,
        request_id: ev.request_id,
        event_id,
        read_only: false,
        resources: vec![resource(ev.arn)],
        event_type: "AwsServiceEvent",
        management_event: true,
        recipient_account_id: Some(account),
        service_event_details,
        additional_event_data: AdditionalEventData {
            secret_id: (!ev.name.is_kms()).then_some(ev.arn),
            not_made_event_id: not_made,
            truncated,
            ..AdditionalEventData::default()
        },
        error_code: error.map(KmsError::code),
        error_message,
    };
    finish(rec, MAX_RECORD_BYTES)
}

/// Serialises a record within `limit` bytes, the last step of every record's building.
fn finish(mut rec: Record<'_>, limit: usize) -> Vec<u8> {
    // Sized for a typical record (about 900 bytes), so the buffer rarely grows.
    let mut out = Vec::with_capacity(1024);
    // Serialising these types cannot fail (string keys, written to memory). A record over its
    // cap is made smaller in steps, each keeping as much of what ran as fits: long lists are
    // the usual way a record grows, so they are cut to their first members (noting how many
    // were cut); then the longest strings are halved, one at a time, so that the short members
    // that say what ran (key ids, principals, names) stay; only if it is still too large are
    // the members dropped whole.
    if serde_json::to_writer(&mut out, &rec).is_ok() && out.len() <= limit {
        return out;
    }
    each_member(&mut rec.request_parameters, &mut rec.response_elements, &mut rec.additional_event_data.truncated, &mut cap_lists);
    out.clear();
    if serde_json::to_writer(&mut out, &rec).is_ok() && out.len() <= limit {
        return out;
    }
    // One cut of the longest strings to a common level that saves what is over (and a margin
    // for the notes of what was cut): the short members that say what ran stay whole.
    let mut lengths = Vec::new();
    rec.request_parameters
        .iter()
        .flat_map(|p| p.values())
        .chain(rec.response_elements.iter())
        .for_each(|v| string_lengths(v, &mut lengths));
    let level = cut_level(lengths, out.len().saturating_sub(limit) + 8 * 1024);
    each_member(&mut rec.request_parameters, &mut rec.response_elements, &mut rec.additional_event_data.truncated, &mut |v, path, t| {
        cut_strings(v, level, path, t)
    });
    out.clear();
    if serde_json::to_writer(&mut out, &rec).is_ok() && out.len() <= limit {
        return out;
    }
    // Then the largest members, one by one, are replaced by their size (a member is at most
    // the record's size: as many steps as there are members, each one serialisation).
    let members = rec.request_parameters.as_ref().map_or(0, Map::len) + 1;
    for _ in 0..members {
        if !summarise_largest_member(&mut rec.request_parameters, &mut rec.response_elements, &mut rec.additional_event_data.truncated) {
            break;
        }
        out.clear();
        if serde_json::to_writer(&mut out, &rec).is_ok() && out.len() <= limit {
            return out;
        }
    }
    for (name, present) in [("requestParameters", rec.request_parameters.is_some()), ("responseElements", rec.response_elements.is_some())]
    {
        if present {
            note_cut(&mut rec.additional_event_data.truncated, name);
        }
    }
    rec.request_parameters = None;
    rec.response_elements = None;
    out.clear();
    let _ = serde_json::to_writer(&mut out, &rec);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_secrets_and_keeps_context_keys() {
        let resp = json!({"KeyMetadata": {"Arn": "arn:aws:kms:us-east-1:111122223333:key/k"}, "Plaintext": "x", "CiphertextBlob": "y", "EncryptionContext": {"Tenant": "a"}});
        assert_eq!(
            sanitize(&resp, true),
            json!({"keyMetadata": {"arn": "arn:aws:kms:us-east-1:111122223333:key/k"}, "encryptionContext": {"Tenant": "a"}})
        );
        assert_eq!(camel("bypass_policy_lockout_safety_check"), "bypassPolicyLockoutSafetyCheck");
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

    fn event<'a>(operation: &'a str, user_agent: Option<&'a str>, claimed: Option<&'a str>) -> RequestEvent<'a> {
        RequestEvent {
            request_id: "r",
            source_ip: "127.0.0.1".parse().ok(),
            user_agent,
            operation,
            event_source: "kms.amazonaws.com",
            claimed_access_key_id: claimed,
            region: Some("us-east-1"),
        }
    }

    #[test]
    fn unauthenticated_record_has_no_parameters_and_is_bounded() {
        let e = KmsError::UnrecognizedClient;
        let huge = "x".repeat(300_000);
        let ev = event(&huge, Some(&huge), Some(&huge));
        let mut params = Map::new();
        params.insert("keyId".into(), json!("k"));
        let r = record(RecordInput {
            event: &ev,
            event_id: "00000000-0000-4000-8000-000000000000",
            time_ms: 0,
            duration_us: 5,
            caller: None,
            request_parameters: Some(params),
            response_elements: None,
            error: Some(&e),
            suppressed_before: 3,
            operator: false,
        });
        assert!(r.len() <= MAX_UNAUTHENTICATED_RECORD_BYTES, "{}", r.len());
        let r: Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(r["requestParameters"], Value::Null);
        assert_eq!(r["errorCode"], "UnrecognizedClientException");
        assert_eq!(r["userIdentity"]["type"], "Unknown");
        assert_eq!(r["additionalEventData"]["suppressedFailures"], 3);
        assert_eq!(r["additionalEventData"]["truncated"], json!(["eventName", "userAgent"]));
    }

    /// The account root, an administrator, with no resources yet.
    fn admin_caller() -> Caller {
        Caller {
            account: crate::types::AccountId::parse("111122223333").unwrap(),
            region: crate::types::Region::parse("us-east-1").unwrap(),
            principal_arn: "arn:aws:iam::111122223333:root".into(),
            access_key_id: "AKIA".into(),
            role: crate::types::Role::Admin,
            source_ip: None,
            secure_transport: false,
            resources: Resources::default(),
        }
    }

    /// The record of a successful request by `caller` with these request members.
    fn authenticated_record(ev: &RequestEvent<'_>, caller: &Caller, params: Map<String, Value>) -> Vec<u8> {
        record(RecordInput {
            event: ev,
            event_id: "00000000-0000-4000-8000-000000000000",
            time_ms: 0,
            duration_us: 5,
            caller: Some(caller),
            request_parameters: Some(params),
            response_elements: None,
            error: None,
            suppressed_before: 0,
            operator: false,
        })
    }

    #[test]
    fn authenticated_record_caps_fields_and_total() {
        let caller = admin_caller();
        caller.resources.add("arn:aws:kms:us-east-1:111122223333:key/k");
        let ev = event("PutKeyPolicy", None, None);
        let mut params = Map::new();
        params.insert("policy".into(), json!("p".repeat(40_000)));
        let r = authenticated_record(&ev, &caller, params);
        let r: Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(r["requestParameters"]["policy"].as_str().unwrap().len(), MAX_FIELD_BYTES);
        assert_eq!(r["additionalEventData"]["truncated"], json!(["requestParameters.policy"]));
        assert_eq!(r["resources"][0]["ARN"], "arn:aws:kms:us-east-1:111122223333:key/k");
        // Many large members: the longest are cut until the record fits; the short ones stay.
        let mut params = Map::new();
        for i in 0..4 {
            params.insert(format!("m{i}"), json!("q".repeat(30_000)));
        }
        params.insert("keyId".into(), json!("k"));
        let r = authenticated_record(&ev, &caller, params);
        assert!(r.len() <= MAX_RECORD_BYTES);
        let r: Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(r["requestParameters"]["keyId"], "k");
        let kept: usize = (0..4).map(|i| r["requestParameters"][format!("m{i}")].as_str().unwrap().len()).sum();
        assert!(kept > MAX_RECORD_BYTES / 2, "as much as fits is kept: {kept}");
        assert!(r["additionalEventData"]["truncated"].as_array().unwrap().len() >= 2);

        // Padding that escaping multiplies (a control character takes six bytes, a newline two)
        // cannot push the identifying members out (review: a 32 KiB policy of newlines left a
        // record with no request parameters at all).
        let mut params = Map::new();
        params.insert("keyId".into(), json!("k"));
        params.insert("policy".into(), json!(format!("{{}}{}", "\n".repeat(32_700))));
        for i in 0..7 {
            params.insert(format!("meta{i}"), json!("\u{1}".repeat(2048)));
        }
        let r = authenticated_record(&ev, &caller, params);
        assert!(r.len() <= MAX_RECORD_BYTES, "{}", r.len());
        let r: Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(r["requestParameters"]["keyId"], "k");
        let policy = r["requestParameters"]["policy"].as_str().unwrap();
        assert!(policy.starts_with("{}\n") && policy.len() > 1024, "cut to a common length, not summarised: {}", policy.len());
        assert!(r["additionalEventData"]["truncated"].as_array().unwrap().contains(&json!("requestParameters.policy")));
    }

    #[test]
    fn client_chosen_member_names_and_many_members_cannot_push_identifiers_out() {
        let caller = admin_caller();
        let ev = event("ReEncrypt", None, None);
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        // Second review: encryption contexts whose keys escape to six times their size (a ReEncrypt
        // with both contexts lost every member; 300 such keys made a 197 KB record with 257 notes
        // of what was cut), and 2,000 values just over the cut level.
        let control_keys = |n: usize| -> Value {
            (0..n).map(|i| (format!("{}{i:08}", "\u{1}".repeat(120)), json!("v".repeat(100)))).collect::<Map<String, Value>>().into()
        };
        let many_values: Value = (0..2000).map(|i| (format!("k{i}"), json!("x".repeat(100)))).collect::<Map<String, Value>>().into();
        for (source, destination) in [(control_keys(66), control_keys(66)), (control_keys(300), json!({})), (many_values, json!({}))] {
            let mut params = Map::new();
            params.insert("destinationKeyId".into(), json!(arn));
            params.insert("sourceEncryptionContext".into(), source);
            params.insert("destinationEncryptionContext".into(), destination);
            let r = authenticated_record(&ev, &caller, params);
            assert!(r.len() <= MAX_RECORD_BYTES, "{}", r.len());
            let r: Value = serde_json::from_slice(&r).unwrap();
            assert_eq!(r["requestParameters"]["destinationKeyId"], arn);
            let notes = r["additionalEventData"]["truncated"].as_array().unwrap();
            assert!(!notes.is_empty() && notes.len() <= MAX_TRUNCATED_ENTRIES + 1, "{notes:?}");
        }
    }

    #[test]
    fn cut_member_names_never_overwrite_one_another() {
        // The reviewer's case: a name that is not cut, equal to what a cut name's suffix makes.
        let q = "中".repeat(82);
        let mut context = Map::new();
        context.insert(format!("{q}#2"), json!("ORIGINAL"));
        context.insert(format!("{q}中{}", "a".repeat(269)), json!("A"));
        context.insert(format!("{q}中{}", "b".repeat(269)), json!("B"));
        let mut v = Value::Object(context);
        let (mut path, mut truncated) = (String::new(), Vec::new());
        cap_strings(&mut v, &mut path, &mut truncated);
        let values: std::collections::BTreeSet<&str> = v.as_object().unwrap().values().filter_map(Value::as_str).collect();
        assert_eq!(values, ["A", "B", "ORIGINAL"].into_iter().collect(), "{v}");
        assert_eq!(v[format!("{q}#2")], "ORIGINAL");
    }

    #[test]
    fn escaped_lengths_match_serde_json() {
        for s in ["plain", "quote\"back\\slash", "\n\r\t\u{8}\u{c}", "\u{1}\u{1f}\u{7f}", "é中🦀"] {
            assert_eq!(escaped_len(s) + 2, serde_json::to_string(s).unwrap().len(), "{s:?}");
        }
        let (end, cut) = cap_escaped("ab\ncd", 4);
        assert!(cut && end == 3, "{end}");
    }

    #[test]
    fn long_lists_are_cut_before_members_are_dropped() {
        let caller = admin_caller();
        let ev = event("CreateGrant", None, None);
        let mut params = Map::new();
        params.insert("granteePrincipal".into(), json!("arn:aws:iam::999988887777:root"));
        params.insert("operations".into(), json!(vec!["Decrypt"; 20_000]));
        let r = record(RecordInput {
            event: &ev,
            event_id: "00000000-0000-4000-8000-000000000000",
            time_ms: 0,
            duration_us: 5,
            caller: Some(&caller),
            request_parameters: Some(params),
            response_elements: Some(json!({"grantId": "g"})),
            error: None,
            suppressed_before: 0,
            operator: false,
        });
        let r: Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(r["requestParameters"]["granteePrincipal"], "arn:aws:iam::999988887777:root");
        assert_eq!(r["requestParameters"]["operations"].as_array().unwrap().len(), 32);
        assert_eq!(r["responseElements"]["grantId"], "g");
        assert_eq!(r["additionalEventData"]["truncated"], json!(["requestParameters.operations[32 of 20000]"]));
    }

    #[test]
    fn read_operations_record_no_response() {
        let ev = event("LookupEvents", None, None);
        assert!(!records_response(ev.operation));
        assert!(records_response("CreateKey") && !records_response("Decrypt") && !records_response("DescribeKey"));
    }
}
