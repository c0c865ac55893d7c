//! The AWS KMS request and response shapes, member for member as botocore's service model names
//! them. Every request member is optional here: which are required, and every other constraint,
//! is checked by the operations, so that a missing member is a `ValidationException` in AWS's
//! words rather than a deserialisation error. A member of the wrong JSON type (or a blob that is
//! not base64) is a `SerializationException`, as in AWS.
//!
//! This module holds data only: no validation, no storage, no crypto.

// The one exception to the workspace's `missing_docs`, for the shapes' members: each is AWS's,
// named as botocore's service model names it and documented member by member in the AWS KMS
// API reference (the Clavis-only members too, in docs/api.md); a copy of that reference here
// would only drift from it. Every shape and every other item here still carries its own doc.
#![allow(missing_docs)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clavis_crypto::SecretBytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// A base64 blob member that is not secret (ciphertexts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD.decode(s.as_bytes()).map(Blob).map_err(|_| serde::de::Error::custom("Invalid base64 in a blob member"))
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

/// A base64 blob member that is secret (plaintexts). Decoded straight into a zeroizing buffer.
#[derive(Debug, Clone)]
pub struct SecretBlob(pub SecretBytes);

impl<'de> Deserialize<'de> for SecretBlob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut buf = Vec::with_capacity(s.len() / 4 * 3 + 3);
        STANDARD.decode_vec(s.as_bytes(), &mut buf).map_err(|_| serde::de::Error::custom("Invalid base64 in a blob member"))?;
        Ok(SecretBlob(SecretBytes::new(buf)))
    }
}

impl Serialize for SecretBlob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The response body necessarily carries the plaintext: this is where the API returns it.
        s.serialize_str(&STANDARD.encode(self.0.expose_secret()))
    }
}

/// A secret string member: an access key's secret, an unseal share. Zeroized on drop, redacted
/// in `Debug`, read through [`SecretText::expose_secret`], never in an audit record (its
/// member names are in `audit::REDACTED_MEMBERS`, which the tidy test checks).
#[derive(Clone)]
pub struct SecretText(SecretBytes);

impl SecretText {
    /// Takes ownership of `text`.
    pub fn new(text: String) -> SecretText {
        SecretText(SecretBytes::new(text.into_bytes()))
    }

    /// The secret text. Every call site is a place where the secret leaves its type.
    pub fn expose_secret(&self) -> &str {
        // Built only from `String`s, so always UTF-8; an empty string is the safe fallback.
        std::str::from_utf8(self.0.expose_secret()).unwrap_or_default()
    }
}

impl From<String> for SecretText {
    fn from(text: String) -> SecretText {
        SecretText::new(text)
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText([REDACTED])")
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretText::new)
    }
}

impl Serialize for SecretText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The response that returns the secret (once) is the only place it is written.
        s.serialize_str(self.expose_secret())
    }
}

/// An encryption context member.
pub type ContextMap = BTreeMap<String, String>;

macro_rules! request {
    ($(#[$m:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(rename_all = "PascalCase")]
        pub struct $name { $(pub $field: Option<$ty>),* }
        audit_params!($name { $($field),* });
        impl crate::front::RequestShape for $name {}
    };
}

/// The audit record's view of a request shape: the listed members that are present, by type
/// ([`crate::audit::AuditValue`]: blobs and free-form JSON are never recorded). A member left
/// off the list is never recorded (an unseal share).
macro_rules! audit_params {
    ($name:ident { $($field:ident),* $(,)? }) => {
        impl crate::audit::AuditParams for $name {
            #[allow(unused_mut)] // A shape with no recorded member.
            fn audit_params(&self) -> serde_json::Map<String, serde_json::Value> {
                let mut out = serde_json::Map::new();
                $(
                    if let Some(v) = self.$field.as_ref().and_then(crate::audit::AuditValue::audit_value) {
                        out.insert(crate::audit::camel(stringify!($field)), v);
                    }
                )*
                out
            }
        }
    };
}

request!(
    /// CreateKey.
    CreateKeyRequest {
        policy: String,
        description: String,
        key_usage: String,
        customer_master_key_spec: String,
        key_spec: String,
        origin: String,
        custom_key_store_id: String,
        bypass_policy_lockout_safety_check: bool,
        tags: Vec<TagEntry>,
        multi_region: bool,
        xks_key_id: String,
    }
);
request!(
    /// DescribeKey.
    DescribeKeyRequest { key_id: String, grant_tokens: Vec<String> }
);
request!(
    /// ListKeys.
    ListKeysRequest { limit: i64, marker: String }
);
request!(
    /// UpdateKeyDescription.
    UpdateKeyDescriptionRequest { key_id: String, description: String }
);
request!(
    /// EnableKey and DisableKey.
    KeyIdRequest { key_id: String }
);
request!(
    /// Encrypt.
    EncryptRequest {
        key_id: String,
        plaintext: SecretBlob,
        encryption_context: ContextMap,
        grant_tokens: Vec<String>,
        encryption_algorithm: String,
        dry_run: bool,
    }
);
/// Decrypt.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DecryptRequest {
    pub ciphertext_blob: Option<Blob>,
    pub encryption_context: Option<ContextMap>,
    pub grant_tokens: Option<Vec<String>>,
    pub key_id: Option<String>,
    pub encryption_algorithm: Option<String>,
    pub recipient: Option<serde_json::Value>,
    pub dry_run: Option<bool>,
    /// Re-wrap on unwrap (Clavis extension), set from the `X-Clavis-Rewrap: true` header, never
    /// from the body.
    #[serde(skip)]
    pub rewrap: bool,
}
audit_params!(DecryptRequest { ciphertext_blob, encryption_context, grant_tokens, key_id, encryption_algorithm, recipient, dry_run });
impl crate::front::RequestShape for DecryptRequest {
    fn apply(&mut self, options: &crate::front::RequestOptions) {
        self.rewrap = options.rewrap;
    }

    fn extra_audit_params(&self, out: &mut serde_json::Map<String, serde_json::Value>) {
        // Re-wrap changes what Decrypt does (a new ciphertext): the record says so.
        if self.rewrap {
            out.insert("clavisRewrap".to_owned(), serde_json::Value::Bool(true));
        }
    }
}

request!(
    /// ReEncrypt.
    ReEncryptRequest {
        ciphertext_blob: Blob,
        source_encryption_context: ContextMap,
        source_key_id: String,
        destination_key_id: String,
        destination_encryption_context: ContextMap,
        source_encryption_algorithm: String,
        destination_encryption_algorithm: String,
        grant_tokens: Vec<String>,
        dry_run: bool,
    }
);
request!(
    /// GenerateDataKey and GenerateDataKeyWithoutPlaintext.
    GenerateDataKeyRequest {
        key_id: String,
        encryption_context: ContextMap,
        number_of_bytes: i64,
        key_spec: String,
        grant_tokens: Vec<String>,
        recipient: serde_json::Value,
        dry_run: bool,
    }
);
request!(
    /// GenerateRandom.
    GenerateRandomRequest { number_of_bytes: i64, custom_key_store_id: String, recipient: serde_json::Value }
);
request!(
    /// CreateAlias and UpdateAlias.
    AliasTargetRequest { alias_name: String, target_key_id: String }
);
request!(
    /// DeleteAlias.
    DeleteAliasRequest { alias_name: String }
);
request!(
    /// ListAliases.
    ListAliasesRequest { key_id: String, limit: i64, marker: String }
);
request!(
    /// TagResource.
    TagResourceRequest { key_id: String, tags: Vec<TagEntry> }
);
request!(
    /// UntagResource.
    UntagResourceRequest { key_id: String, tag_keys: Vec<String> }
);
request!(
    /// ListResourceTags and ListKeyPolicies.
    ListForKeyRequest { key_id: String, limit: i64, marker: String }
);
request!(
    /// GetKeyPolicy.
    GetKeyPolicyRequest { key_id: String, policy_name: String }
);
request!(
    /// PutKeyPolicy.
    PutKeyPolicyRequest { key_id: String, policy_name: String, policy: String, bypass_policy_lockout_safety_check: bool }
);

/// Grant constraints as on the wire.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct GrantConstraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_subset: Option<ContextMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_equals: Option<ContextMap>,
}
audit_params!(GrantConstraints { encryption_context_subset, encryption_context_equals });

request!(
    /// CreateGrant.
    CreateGrantRequest {
        key_id: String,
        grantee_principal: String,
        retiring_principal: String,
        operations: Vec<String>,
        constraints: GrantConstraints,
        grant_tokens: Vec<String>,
        name: String,
        dry_run: bool,
    }
);
request!(
    /// ListGrants.
    ListGrantsRequest { limit: i64, marker: String, key_id: String, grant_id: String, grantee_principal: String }
);
request!(
    /// ListRetirableGrants.
    ListRetirableGrantsRequest { limit: i64, marker: String, retiring_principal: String }
);
request!(
    /// RetireGrant.
    RetireGrantRequest { grant_token: String, key_id: String, grant_id: String, dry_run: bool }
);
request!(
    /// RevokeGrant.
    RevokeGrantRequest { key_id: String, grant_id: String, dry_run: bool }
);

/// CreateGrant response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateGrantResponse {
    pub grant_token: String,
    pub grant_id: String,
}

/// One grant in ListGrants / ListRetirableGrants.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GrantListEntry {
    pub key_id: String,
    pub grant_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub creation_date: f64,
    pub grantee_principal: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retiring_principal: Option<String>,
    pub issuing_account: String,
    pub operations: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraints: Option<GrantConstraints>,
}

/// ListGrants / ListRetirableGrants response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListGrantsResponse {
    pub grants: Vec<GrantListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub truncated: bool,
}

/// A tag as it appears on the wire.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct TagEntry {
    /// Tag key.
    #[serde(default)]
    pub tag_key: Option<String>,
    /// Tag value.
    #[serde(default)]
    pub tag_value: Option<String>,
}
audit_params!(TagEntry { tag_key, tag_value });

/// An empty request or response (`{}`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Empty {}

impl crate::audit::AuditParams for Empty {
    fn audit_params(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
}
impl crate::front::RequestShape for Empty {}

/// `GET /operator/status` and the unseal response: the root of trust's state.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct OperatorStatus {
    pub provider: String,
    pub initialized: bool,
    pub sealed: bool,
    pub master_key_version: u32,
    pub master_key_versions: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u8>,
    pub progress: usize,
    /// The nonce of the unseal in progress: only in the answer to a share, never in the
    /// public status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// ClavisAdmin.RotateMasterKey response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotateMasterKeyResponse {
    pub master_key_version: u32,
    pub resealed: u64,
    /// A rotation into Shamir: the new master key's shares, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares: Option<Vec<SecretText>>,
    /// A rotation into Shamir: the version made but not yet in use (the next
    /// RotateMasterKey switches to it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_version: Option<u32>,
}

/// ClavisAdmin.RotateMasterKey request: for a new Shamir master key, its shares and threshold.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotateMasterKeyRequest {
    pub shares: Option<u8>,
    pub threshold: Option<u8>,
}
audit_params!(RotateMasterKeyRequest { shares, threshold });
impl crate::front::RequestShape for RotateMasterKeyRequest {}

/// `POST /operator/init` request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OperatorInitRequest {
    pub shares: Option<u8>,
    pub threshold: Option<u8>,
}
audit_params!(OperatorInitRequest { shares, threshold });
impl crate::front::RequestShape for OperatorInitRequest {}

/// `POST /operator/init` response: the shares, shown once.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct OperatorInitResponse {
    pub shares: Vec<SecretText>,
    pub threshold: u8,
}

/// `POST /operator/unseal` request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OperatorUnsealRequest {
    pub share: Option<SecretText>,
    /// The unseal's nonce, returned with its first share; every later share must carry it.
    pub nonce: Option<String>,
}
// The share is the credential: never recorded. The nonce is recorded (it is not a secret once
// the unseal ends, and it tells which attempts belonged to one unseal), only in its own form
// (32 hex digits): anything else a stranger sends is refused and must not make held records
// (a sealed server holds them in memory) large.
impl crate::audit::AuditParams for OperatorUnsealRequest {
    fn audit_params(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        if let Some(nonce) = self.nonce.as_deref() {
            let value = if crate::ops::is_unseal_nonce(nonce) { nonce.into() } else { "(malformed)".into() };
            out.insert("nonce".into(), serde_json::Value::String(value));
        }
        out
    }
}
impl crate::front::RequestShape for OperatorUnsealRequest {}

/// Key metadata as DescribeKey and CreateKey return it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    #[serde(rename = "AWSAccountId")]
    pub aws_account_id: String,
    pub key_id: String,
    pub arn: String,
    pub creation_date: f64,
    pub enabled: bool,
    pub description: String,
    pub key_usage: String,
    pub key_state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<f64>,
    pub origin: String,
    pub key_manager: String,
    pub customer_master_key_spec: String,
    pub key_spec: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_algorithms: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_algorithms: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_algorithms: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_agreement_algorithms: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encapsulation_algorithms: Option<Vec<String>>,
    pub multi_region: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_model: Option<String>,
    /// Clavis extension: deletion needs a second principal's approval.
    #[serde(rename = "ClavisDualAuthorization", skip_serializing_if = "Option::is_none")]
    pub dual_authorization: Option<bool>,
}

/// CreateKey and DescribeKey response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadataResponse {
    /// The key's metadata.
    pub key_metadata: KeyMetadata,
}

/// One entry of ListKeys.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyListEntry {
    pub key_id: String,
    pub key_arn: String,
}

/// ListKeys response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeysResponse {
    pub keys: Vec<KeyListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub truncated: bool,
}

/// Encrypt response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptResponse {
    pub ciphertext_blob: Blob,
    pub key_id: String,
    pub encryption_algorithm: String,
}

/// Decrypt response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DecryptResponse {
    pub key_id: String,
    pub plaintext: SecretBlob,
    pub encryption_algorithm: String,
    /// Clavis extension (re-wrap on unwrap): the plaintext re-encrypted under the newest
    /// material version, when the ciphertext was made under an older one.
    #[serde(rename = "ClavisRewrappedCiphertextBlob", skip_serializing_if = "Option::is_none")]
    pub rewrapped_ciphertext_blob: Option<Blob>,
    /// Clavis extension: the key's newest material version (present when re-wrap was asked).
    #[serde(rename = "ClavisKeyMaterialVersion", skip_serializing_if = "Option::is_none")]
    pub key_material_version: Option<u32>,
}

/// ReEncrypt response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReEncryptResponse {
    pub ciphertext_blob: Blob,
    pub source_key_id: String,
    pub key_id: String,
    pub source_encryption_algorithm: String,
    pub destination_encryption_algorithm: String,
}

/// GenerateDataKey (and, without `Plaintext`, GenerateDataKeyWithoutPlaintext) response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyResponse {
    pub ciphertext_blob: Blob,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<SecretBlob>,
    pub key_id: String,
}

/// GenerateRandom response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateRandomResponse {
    pub plaintext: SecretBlob,
}

/// One entry of ListAliases.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasListEntry {
    pub alias_name: String,
    pub alias_arn: String,
    pub target_key_id: String,
    pub creation_date: f64,
    pub last_updated_date: f64,
}

/// ListAliases response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAliasesResponse {
    pub aliases: Vec<AliasListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub truncated: bool,
}

/// ListResourceTags response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListResourceTagsResponse {
    pub tags: Vec<TagEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub truncated: bool,
}

/// GetKeyPolicy response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetKeyPolicyResponse {
    pub policy: String,
    pub policy_name: String,
}

/// ListKeyPolicies response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeyPoliciesResponse {
    pub policy_names: Vec<String>,
    pub truncated: bool,
}

/// One LookupEvents attribute filter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupAttribute {
    pub attribute_key: Option<String>,
    pub attribute_value: Option<String>,
}
audit_params!(LookupAttribute { attribute_key, attribute_value });

request!(
    /// ClavisAdmin.LookupEvents (CloudTrail's LookupEvents, over the Clavis audit log).
    LookupEventsRequest {
        lookup_attributes: Vec<LookupAttribute>,
        start_time: f64,
        end_time: f64,
        max_results: i64,
        next_token: String,
    }
);

/// A resource named by an event.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventResource {
    pub resource_type: String,
    pub resource_name: String,
}

/// One event, as CloudTrail's LookupEvents returns it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupEvent {
    pub event_id: String,
    pub event_name: String,
    pub read_only: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    pub event_time: f64,
    pub event_source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub resources: Vec<EventResource>,
    pub cloud_trail_event: String,
}

/// LookupEvents response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupEventsResponse {
    pub events: Vec<LookupEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

request!(
    /// EnableKeyRotation.
    EnableKeyRotationRequest { key_id: String, rotation_period_in_days: i64 }
);
request!(
    /// ScheduleKeyDeletion.
    ScheduleKeyDeletionRequest { key_id: String, pending_window_in_days: i64 }
);

/// GetKeyRotationStatus response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetKeyRotationStatusResponse {
    pub key_rotation_enabled: bool,
    pub key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_period_in_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_demand_rotation_start_date: Option<f64>,
}

/// GetKeyLastUsage response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetKeyLastUsageResponse {
    pub key_id: String,
    /// Empty (`{}`) when the key has not been used since tracking began.
    pub key_last_usage: KeyLastUsageData,
    pub tracking_start_date: f64,
    pub key_creation_date: f64,
}

/// The last successful cryptographic use of a key.
#[derive(Debug, Default, Serialize)]
pub struct KeyLastUsageData {
    #[serde(rename = "Operation", skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(rename = "Timestamp", skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<f64>,
    #[serde(rename = "CloudTrailEventId", skip_serializing_if = "Option::is_none")]
    pub cloud_trail_event_id: Option<String>,
    #[serde(rename = "KmsRequestId", skip_serializing_if = "Option::is_none")]
    pub kms_request_id: Option<String>,
}

/// A response carrying only the key ARN (RotateKeyOnDemand, CancelKeyDeletion).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyIdResponse {
    pub key_id: String,
}

/// One completed rotation.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotationsListEntry {
    pub key_id: String,
    pub rotation_date: f64,
    pub rotation_type: String,
}

/// ListKeyRotations response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListKeyRotationsResponse {
    pub rotations: Vec<RotationsListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub truncated: bool,
}

/// ScheduleKeyDeletion response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduleKeyDeletionResponse {
    pub key_id: String,
    /// Absent while a dual-authorization request waits for approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<f64>,
    pub key_state: String,
    pub pending_window_in_days: i64,
    /// Clavis extension, for keys under dual authorization.
    #[serde(rename = "ClavisDualAuthorization", skip_serializing_if = "Option::is_none")]
    pub dual_authorization: Option<DualAuthorizationStatus>,
}

/// Where a dual-authorization deletion stands.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DualAuthorizationStatus {
    /// `PendingApproval` or `Approved`.
    pub status: String,
    pub requested_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// The last moment another principal can approve (epoch seconds).
    pub approve_by: f64,
}

request!(
    /// ClavisAdmin.AdvanceTestClock (test-only extension).
    AdvanceTestClockRequest { seconds: i64, run_scheduler: bool }
);

/// ClavisAdmin.AdvanceTestClock response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AdvanceTestClockResponse {
    pub now: f64,
    pub rotated: usize,
    pub destroyed: usize,
    pub expired: usize,
}

request!(
    /// ClavisAdmin.CreateUser.
    CreateUserRequest { user_name: String, role: String, account_id: String }
);
request!(
    /// ClavisAdmin.CreateXksCredential.
    CreateXksCredentialRequest { account_id: String, name: String, role: String }
);
request!(
    /// ClavisAdmin.CreateAccount.
    CreateAccountRequest { account_id: String, account_name: String }
);
request!(
    /// ClavisAdmin.ListAccounts.
    ListAccountsRequest { marker: String }
);
request!(
    /// ClavisAdmin.ListUsers.
    ListUsersRequest { marker: String }
);
request!(
    /// ClavisAdmin.EnableKeyDualAuthorization.
    EnableKeyDualAuthorizationRequest { key_id: String }
);

/// A user as the administration API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserEntry {
    pub user_name: String,
    pub arn: String,
    pub create_date: f64,
    pub role: String,
}

/// A new access key, with its secret (shown once).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NewAccessKey {
    pub access_key_id: String,
    pub secret_access_key: SecretText,
    pub status: String,
}

/// An account in ClavisAdmin responses.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountEntry {
    pub account_id: String,
    pub account_name: String,
    pub arn: String,
    pub create_date: f64,
}

/// ClavisAdmin.CreateAccount response: the account and its root access key (shown once).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateAccountResponse {
    pub account: AccountEntry,
    pub access_key: NewAccessKey,
}

/// ClavisAdmin.ListAccounts response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAccountsResponse {
    pub accounts: Vec<AccountEntry>,
}

/// ClavisAdmin.CreateUser response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateUserResponse {
    pub user: UserEntry,
    pub access_key: NewAccessKey,
}

/// ClavisAdmin.ListUsers response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListUsersResponse {
    pub users: Vec<UserEntry>,
}

request!(
    /// GetParametersForImport.
    GetParametersForImportRequest { key_id: String, wrapping_algorithm: String, wrapping_key_spec: String }
);

/// GetParametersForImport response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetParametersForImportResponse {
    pub key_id: String,
    pub import_token: Blob,
    pub public_key: Blob,
    pub parameters_valid_to: f64,
    /// Clavis extension (proof of possession, as IBM Key Protect's import token nonce): return
    /// it encrypted under the imported material with AES-256-GCM in ImportKeyMaterial.
    #[serde(rename = "ClavisImportNonce")]
    pub nonce: Blob,
}

/// ImportKeyMaterial.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportKeyMaterialRequest {
    pub key_id: Option<String>,
    pub import_token: Option<Blob>,
    pub encrypted_key_material: Option<Blob>,
    pub valid_to: Option<f64>,
    pub expiration_model: Option<String>,
    pub import_type: Option<String>,
    pub key_material_description: Option<String>,
    pub key_material_id: Option<String>,
    /// Clavis extension: the import nonce encrypted under the material (AES-256-GCM, with tag).
    #[serde(rename = "ClavisEncryptedNonce")]
    pub encrypted_nonce: Option<Blob>,
    /// Clavis extension: the 12-byte AES-GCM IV used for `ClavisEncryptedNonce`.
    #[serde(rename = "ClavisNonceIv")]
    pub nonce_iv: Option<Blob>,
}
audit_params!(ImportKeyMaterialRequest {
    key_id,
    import_token,
    encrypted_key_material,
    valid_to,
    expiration_model,
    import_type,
    key_material_description,
    key_material_id,
    encrypted_nonce,
    nonce_iv
});
impl crate::front::RequestShape for ImportKeyMaterialRequest {}

request!(
    /// ClavisAdmin.CreateAccessKey (IAM's shape): for `UserName`, or the caller when absent.
    CreateAccessKeyRequest { user_name: String }
);
request!(
    /// ClavisAdmin.ListAccessKeys.
    ListAccessKeysRequest { user_name: String }
);
request!(
    /// ClavisAdmin.UpdateAccessKey.
    UpdateAccessKeyRequest { access_key_id: String, status: String }
);
request!(
    /// ClavisAdmin.DeleteAccessKey.
    DeleteAccessKeyRequest { access_key_id: String }
);

/// ClavisAdmin.CreateAccessKey response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateAccessKeyResponse {
    pub access_key: NewAccessKey,
}

/// An access key without its secret.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessKeyMetadata {
    pub user_name: String,
    pub access_key_id: String,
    pub status: String,
    pub create_date: f64,
}

/// ClavisAdmin.ListAccessKeys response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAccessKeysResponse {
    pub access_key_metadata: Vec<AccessKeyMetadata>,
}

request!(
    /// Sign.
    SignRequest {
        key_id: String,
        message: SecretBlob,
        message_type: String,
        grant_tokens: Vec<String>,
        signing_algorithm: String,
        dry_run: bool,
    }
);

/// Sign response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SignResponse {
    pub key_id: String,
    pub signature: Blob,
    pub signing_algorithm: String,
}

request!(
    /// Verify.
    VerifyRequest {
        key_id: String,
        message: SecretBlob,
        message_type: String,
        signature: Blob,
        signing_algorithm: String,
        grant_tokens: Vec<String>,
        dry_run: bool,
    }
);

/// Verify response (only for a valid signature: an invalid one is `KMSInvalidSignatureException`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VerifyResponse {
    pub key_id: String,
    pub signature_valid: bool,
    pub signing_algorithm: String,
}

request!(
    /// GetPublicKey.
    GetPublicKeyRequest { key_id: String, grant_tokens: Vec<String> }
);

/// GetPublicKey response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetPublicKeyResponse {
    pub key_id: String,
    pub public_key: Blob,
    pub customer_master_key_spec: String,
    pub key_spec: String,
    pub key_usage: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_algorithms: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_algorithms: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_agreement_algorithms: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encapsulation_algorithms: Option<Vec<String>>,
}

request!(
    /// GenerateMac.
    GenerateMacRequest { message: SecretBlob, key_id: String, mac_algorithm: String, grant_tokens: Vec<String>, dry_run: bool }
);

/// GenerateMac response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateMacResponse {
    pub mac: Blob,
    pub mac_algorithm: String,
    pub key_id: String,
}

request!(
    /// VerifyMac.
    VerifyMacRequest {
        message: SecretBlob,
        key_id: String,
        mac_algorithm: String,
        mac: Blob,
        grant_tokens: Vec<String>,
        dry_run: bool,
    }
);

/// VerifyMac response (only for a valid MAC: an invalid one is `KMSInvalidMacException`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VerifyMacResponse {
    pub key_id: String,
    pub mac_valid: bool,
    pub mac_algorithm: String,
}

request!(
    /// DeriveSharedSecret.
    DeriveSharedSecretRequest {
        key_id: String,
        key_agreement_algorithm: String,
        public_key: Blob,
        grant_tokens: Vec<String>,
        dry_run: bool,
        recipient: serde_json::Value,
    }
);

/// DeriveSharedSecret response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeriveSharedSecretResponse {
    pub key_id: String,
    pub shared_secret: SecretBlob,
    pub key_agreement_algorithm: String,
    pub key_origin: String,
}

request!(
    /// GenerateDataKeyPair and GenerateDataKeyPairWithoutPlaintext.
    GenerateDataKeyPairRequest {
        encryption_context: ContextMap,
        key_id: String,
        key_pair_spec: String,
        grant_tokens: Vec<String>,
        recipient: serde_json::Value,
        dry_run: bool,
    }
);

/// GenerateDataKeyPair and GenerateDataKeyPairWithoutPlaintext response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyPairResponse {
    pub private_key_ciphertext_blob: Blob,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key_plaintext: Option<SecretBlob>,
    pub public_key: Blob,
    pub key_id: String,
    pub key_pair_spec: String,
}

request!(
    /// Encapsulate.
    EncapsulateRequest { key_id: String, encapsulation_algorithm: String, grant_tokens: Vec<String>, dry_run: bool }
);

/// Encapsulate response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncapsulateResponse {
    pub key_id: String,
    pub shared_secret: SecretBlob,
    pub shared_secret_ciphertext_blob: Blob,
    pub encapsulation_algorithm: String,
}

request!(
    /// Decapsulate.
    DecapsulateRequest {
        key_id: String,
        shared_secret_ciphertext_blob: Blob,
        encapsulation_algorithm: String,
        grant_tokens: Vec<String>,
        dry_run: bool,
    }
);

/// Decapsulate response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DecapsulateResponse {
    pub key_id: String,
    pub shared_secret: SecretBlob,
    pub encapsulation_algorithm: String,
}

// ----- Secrets Manager (`secretsmanager.<Operation>`) -----

/// A Secrets Manager tag (`Key`, `Value`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SmTag {
    pub key: Option<String>,
    pub value: Option<String>,
}
audit_params!(SmTag { key, value });

/// A ListSecrets / BatchGetSecretValue filter.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SmFilter {
    pub key: Option<String>,
    pub values: Option<Vec<String>>,
}
audit_params!(SmFilter { key, values });

request!(
    /// CreateSecret.
    CreateSecretRequest {
        name: String,
        client_request_token: String,
        description: String,
        kms_key_id: String,
        secret_binary: SecretBlob,
        secret_string: SecretText,
        tags: Vec<SmTag>,
        add_replica_regions: serde_json::Value,
        force_overwrite_replica_secret: bool,
    }
);

/// CreateSecret response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateSecretResponse {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

request!(
    /// GetSecretValue.
    GetSecretValueRequest { secret_id: String, version_id: String, version_stage: String }
);

/// GetSecretValue response (and one entry of BatchGetSecretValue's `SecretValues`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetSecretValueResponse {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    pub version_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_binary: Option<SecretBlob>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_string: Option<SecretText>,
    pub version_stages: Vec<String>,
    pub created_date: f64,
}

request!(
    /// PutSecretValue.
    PutSecretValueRequest {
        secret_id: String,
        client_request_token: String,
        secret_binary: SecretBlob,
        secret_string: SecretText,
        version_stages: Vec<String>,
        rotation_token: String,
    }
);

/// PutSecretValue response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutSecretValueResponse {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    pub version_id: String,
    pub version_stages: Vec<String>,
}

request!(
    /// UpdateSecret.
    UpdateSecretRequest {
        secret_id: String,
        client_request_token: String,
        description: String,
        kms_key_id: String,
        secret_binary: SecretBlob,
        secret_string: SecretText,
    }
);

/// UpdateSecret response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateSecretResponse {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

request!(
    /// DescribeSecret, RestoreSecret.
    SecretIdRequest { secret_id: String }
);

/// DescribeSecret response (and one entry of ListSecrets' `SecretList`, without
/// `VersionIdsToStages` unless asked for).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSecretResponse {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_enabled: Option<bool>,
    #[serde(rename = "RotationLambdaARN", skip_serializing_if = "Option::is_none")]
    pub rotation_lambda_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_rules: Option<RotationRules>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotated_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_changed_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_accessed_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_date: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<SmTag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_ids_to_stages: Option<std::collections::BTreeMap<String, Vec<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_versions_to_stages: Option<std::collections::BTreeMap<String, Vec<String>>>,
    pub created_date: f64,
}

request!(
    /// ListSecrets.
    ListSecretsRequest {
        include_planned_deletion: bool,
        max_results: i64,
        next_token: String,
        filters: Vec<SmFilter>,
        sort_order: String,
        sort_by: String,
    }
);

/// ListSecrets response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListSecretsResponse {
    pub secret_list: Vec<DescribeSecretResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

request!(
    /// DeleteSecret.
    DeleteSecretRequest { secret_id: String, recovery_window_in_days: i64, force_delete_without_recovery: bool }
);

/// DeleteSecret response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteSecretResponse {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    pub deletion_date: f64,
}

/// RestoreSecret, UpdateSecretVersionStage response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecretArnNameResponse {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
}

request!(
    /// TagResource (Secrets Manager).
    SmTagResourceRequest { secret_id: String, tags: Vec<SmTag> }
);
request!(
    /// UntagResource (Secrets Manager).
    SmUntagResourceRequest { secret_id: String, tag_keys: Vec<String> }
);
request!(
    /// ListSecretVersionIds.
    ListSecretVersionIdsRequest { secret_id: String, max_results: i64, next_token: String, include_deprecated: bool }
);

/// One entry of ListSecretVersionIds.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecretVersionEntry {
    pub version_id: String,
    pub version_stages: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_accessed_date: Option<f64>,
    pub created_date: f64,
    pub kms_key_ids: Vec<String>,
}

/// ListSecretVersionIds response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListSecretVersionIdsResponse {
    pub versions: Vec<SecretVersionEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
}

request!(
    /// UpdateSecretVersionStage.
    UpdateSecretVersionStageRequest { secret_id: String, version_stage: String, remove_from_version_id: String, move_to_version_id: String }
);
request!(
    /// BatchGetSecretValue.
    BatchGetSecretValueRequest { secret_id_list: Vec<String>, filters: Vec<SmFilter>, max_results: i64, next_token: String }
);

/// One error of BatchGetSecretValue.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SmApiError {
    pub secret_id: String,
    pub error_code: String,
    pub message: String,
}

/// BatchGetSecretValue response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchGetSecretValueResponse {
    pub secret_values: Vec<GetSecretValueResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    pub errors: Vec<SmApiError>,
}

request!(
    /// GetRandomPassword.
    GetRandomPasswordRequest {
        password_length: i64,
        exclude_characters: String,
        exclude_numbers: bool,
        exclude_punctuation: bool,
        exclude_uppercase: bool,
        exclude_lowercase: bool,
        include_space: bool,
        require_each_included_type: bool,
    }
);

/// GetRandomPassword response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRandomPasswordResponse {
    pub random_password: SecretText,
}

request!(
    /// PutResourcePolicy.
    PutResourcePolicyRequest { secret_id: String, resource_policy: String, policy_name: String, block_public_policy: bool }
);
request!(
    /// GetResourcePolicy, DeleteResourcePolicy.
    ResourcePolicyRequest { secret_id: String, policy_name: String }
);

/// PutResourcePolicy, GetResourcePolicy and DeleteResourcePolicy response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourcePolicyResponse {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_policy: Option<String>,
}

request!(
    /// ValidateResourcePolicy.
    ValidateResourcePolicyRequest { secret_id: String, resource_policy: String }
);

/// One finding of ValidateResourcePolicy.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyValidationError {
    pub check_name: String,
    pub error_message: String,
}

/// ValidateResourcePolicy response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ValidateResourcePolicyResponse {
    pub policy_validation_passed: bool,
    pub validation_errors: Vec<PolicyValidationError>,
}

/// A secret's rotation schedule (`RotationRules`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotationRules {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automatically_after_days: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_expression: Option<String>,
}
audit_params!(RotationRules { automatically_after_days, duration, schedule_expression });

/// RotateSecret (written out: `RotationLambdaARN` is not PascalCase of its member name).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotateSecretRequest {
    pub secret_id: Option<String>,
    pub client_request_token: Option<String>,
    #[serde(rename = "RotationLambdaARN")]
    pub rotation_lambda_arn: Option<String>,
    pub rotation_rules: Option<RotationRules>,
    pub rotate_immediately: Option<bool>,
    pub external_secret_rotation_metadata: Option<serde_json::Value>,
    pub external_secret_rotation_role_arn: Option<String>,
}
audit_params!(RotateSecretRequest {
    secret_id,
    client_request_token,
    rotation_lambda_arn,
    rotation_rules,
    rotate_immediately,
    external_secret_rotation_metadata,
    external_secret_rotation_role_arn,
});
impl crate::front::RequestShape for RotateSecretRequest {}

/// RotateSecret and CancelRotateSecret response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotateSecretResponse {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// What `Kms::operator_status_local` reports.
#[derive(Debug, Clone, Copy)]
pub struct LocalStatus {
    /// The server is sealed.
    pub sealed: bool,
    /// The master key's current version.
    pub master_key_version: u32,
}

/// ClavisAdmin.CreateXksCredential response: what AWS KMS's CreateCustomKeyStore needs as
/// `XksProxyAuthenticationCredential`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateXksCredentialResponse {
    /// The credential's user.
    pub arn: String,
    pub role: String,
    pub create_date: f64,
    pub access_key_id: String,
    pub raw_secret_access_key: SecretText,
}
