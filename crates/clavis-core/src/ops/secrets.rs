//! The AWS Secrets Manager API (`secretsmanager.<Operation>`): secrets with versions and
//! staging labels, each version's value encrypted under its own data key from the secret's
//! KMS key.
//!
//! Encryption goes through the KMS core as the caller: a new version asks for a data key
//! (GenerateDataKey under the secret's `KmsKeyId`, or the account's `alias/aws/secretsmanager`
//! key, made on first use) and a read decrypts it (Decrypt), each with the encryption context
//! `{"SecretARN": arn, "SecretVersionId": id}` and `kms:ViaService` =
//! `secretsmanager.<region>.amazonaws.com`, so the key's policy and grants apply and each of
//! those KMS calls has its own audit record (source `secretsmanager.amazonaws.com`, as AWS
//! records calls a service makes for a caller). The value is sealed with AES-256-GCM under the
//! data key; the store holds only the wrapped data key and that ciphertext.

use crate::api::*;
use crate::audit::{self, RequestEvent, ServiceEvent, ServiceEventName};
use crate::kernel::{Access, Key, param};
use crate::operation::Operation;
use crate::policy::{Decision, Policy, RequestContext};
use crate::schedule::Schedule;
use crate::types::{EncryptionContext, KeyRef, key_arn, secs};
use crate::{Caller, Kms, KmsError};
use clavis_crypto::aead::AeadKey;
use clavis_crypto::{SecretBytes, random};
use clavis_store::{AliasRecord, SecretRecord, SecretVersionRecord, StoreError};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

const CURRENT: &str = "AWSCURRENT";
const PREVIOUS: &str = "AWSPREVIOUS";
/// The most bytes a SecretString or SecretBinary may hold (AWS quota).
const MAX_VALUE_BYTES: usize = 65_536;
/// The account's default key for secrets (reserved: users cannot create `alias/aws/...`).
const DEFAULT_KEY_ALIAS: &str = "alias/aws/secretsmanager";
/// Past this many versions, deprecated versions (no staging label) older than a day are
/// removed, oldest first, as AWS does.
const MAX_VERSIONS: usize = 100;
/// The most staging labels one version may carry (AWS quota).
const MAX_LABELS_PER_VERSION: usize = 20;
/// The most tags one secret may carry (AWS quota).
const MAX_TAGS: usize = 50;
const DAY_MS: i64 = 86_400_000;
/// The punctuation GetRandomPassword draws from (AWS's set).
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

fn not_found() -> KmsError {
    KmsError::ResourceNotFound("Secrets Manager can't find the specified secret.".into())
}

/// A change that lost to concurrent changes of the same secret too many times. Secrets Manager
/// has no conflict error; its retryable server error is InternalServiceError, which AWS SDKs
/// retry.
fn conflict() -> KmsError {
    KmsError::InternalServiceError("The secret was changed by concurrent requests; retry.".into())
}

fn marked_for_deletion() -> KmsError {
    KmsError::InvalidRequest("You can't perform this operation on the secret because it was marked for deletion.".into())
}

fn required<T>(v: Option<T>, member: &str) -> Result<T, KmsError> {
    v.ok_or_else(|| KmsError::validation(format!("Value null at '{member}' failed to satisfy constraint: Member must not be null")))
}

fn length(v: &str, member: &str, min: usize, max: usize) -> Result<(), KmsError> {
    // The same on every backend: PostgreSQL text cannot hold NUL, so no member may.
    if v.contains('\0') {
        return Err(KmsError::validation(format!(
            "Value at '{member}' failed to satisfy constraint: Member must not contain NUL characters"
        )));
    }
    let n = v.chars().count();
    if n < min || n > max {
        let bound = if n < min { format!("greater than or equal to {min}") } else { format!("less than or equal to {max}") };
        return Err(KmsError::validation(format!("Value at '{member}' failed to satisfy constraint: Member must have length {bound}")));
    }
    Ok(())
}

/// A secret name: 1–512 of ASCII letters, digits and `/_+=.@-`.
fn check_name(name: &str, member: &str) -> Result<(), KmsError> {
    length(name, member, 1, 512)?;
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b)) {
        return Err(KmsError::InvalidParameter(
            "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!".into(),
        ));
    }
    Ok(())
}

/// A staging label: 1–256 characters, no comma (Clavis stores a version's labels as one
/// comma-separated text).
fn check_label(label: &str, member: &str) -> Result<(), KmsError> {
    length(label, member, 1, 256)?;
    if label.contains(',') {
        return Err(KmsError::validation(format!(
            "Value '{label}' at '{member}' failed to satisfy constraint: Member must not contain a comma"
        )));
    }
    Ok(())
}

/// The version id of a new version: the client's token (32–64 characters) or a new UUID.
fn client_token(token: Option<String>) -> Result<String, KmsError> {
    match token {
        Some(t) => {
            length(&t, "clientRequestToken", 32, 64)?;
            Ok(t)
        }
        None => Ok(uuid::Uuid::new_v4().to_string()),
    }
}

/// A secret value as stored: its bytes and whether it is SecretBinary.
struct SecretValue {
    bytes: SecretBytes,
    binary: bool,
}

impl SecretValue {
    fn same(&self, other: &SecretValue) -> bool {
        self.binary == other.binary && clavis_crypto::digest::constant_time_eq(self.bytes.expose_secret(), other.bytes.expose_secret())
    }
}

/// The value of a request's SecretString or SecretBinary (not both), if any.
fn value_of(string: Option<SecretText>, binary: Option<SecretBlob>) -> Result<Option<SecretValue>, KmsError> {
    match (string, binary) {
        (Some(_), Some(_)) => Err(KmsError::InvalidParameter(
            "You can't specify both a binary secret value and a string secret value in the same secret.".into(),
        )),
        (Some(s), None) => {
            if s.expose_secret().len() > MAX_VALUE_BYTES {
                return Err(KmsError::validation(
                    "Value at 'secretString' failed to satisfy constraint: Member must have length less than or equal to 65536",
                ));
            }
            Ok(Some(SecretValue { bytes: SecretBytes::from_slice(s.expose_secret().as_bytes()), binary: false }))
        }
        (None, Some(b)) => {
            if b.0.len() > MAX_VALUE_BYTES {
                return Err(KmsError::validation(
                    "Value at 'secretBinary' failed to satisfy constraint: Member must have length less than or equal to 65536",
                ));
            }
            Ok(Some(SecretValue { bytes: b.0, binary: true }))
        }
        (None, None) => Ok(None),
    }
}

/// The additional data that binds a sealed value to its secret and version.
fn value_aad(arn: &str, version_id: &str) -> Vec<u8> {
    let mut aad = b"clavis/secret-value/v1\0".to_vec();
    aad.extend_from_slice(arn.as_bytes());
    aad.push(0);
    aad.extend_from_slice(version_id.as_bytes());
    aad
}

/// The encryption context of a version's data key (AWS's).
fn key_context(arn: &str, version_id: &str) -> Result<EncryptionContext, KmsError> {
    let map = BTreeMap::from([("SecretARN".to_owned(), arn.to_owned()), ("SecretVersionId".to_owned(), version_id.to_owned())]);
    EncryptionContext::parse(Some(map), "encryptionContext")
}

fn tags_of(rec: &SecretRecord) -> Vec<SmTag> {
    serde_json::from_str(&rec.tags_json).unwrap_or_default()
}

fn check_tags(tags: &[SmTag]) -> Result<(), KmsError> {
    let mut seen = BTreeSet::new();
    for t in tags {
        if !seen.insert(t.key.clone()) {
            return Err(KmsError::InvalidParameter(format!("Duplicate tag key: {}", t.key.as_deref().unwrap_or_default())));
        }
        let key = required(t.key.as_deref(), "tags.member.key")?;
        length(key, "tags.member.key", 1, 128)?;
        length(t.value.as_deref().unwrap_or_default(), "tags.member.value", 0, 256)?;
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(KmsError::InvalidParameter("Invalid tag key: the prefix aws: is reserved for AWS use.".into()));
        }
    }
    Ok(())
}

/// A day's start: LastAccessedDate is kept to the day, as AWS does (and so a read writes at
/// most once a day per secret).
fn day(ms: i64) -> i64 {
    ms - ms.rem_euclid(DAY_MS)
}

/// The staging labels after `stages` move to `new` among `versions`: a label a version gets is
/// taken from any other; when AWSCURRENT moves, the version that had it becomes AWSPREVIOUS.
/// Returns every version whose labels changed, and `new` with its labels.
fn move_labels(versions: &[SecretVersionRecord], new_id: &str, stages: &[String]) -> Vec<(String, Vec<String>)> {
    let moving_current = stages.iter().any(|s| s == CURRENT);
    let old_current =
        versions.iter().find(|v| v.version_id != new_id && v.stages.iter().any(|s| s == CURRENT)).map(|v| v.version_id.clone());
    let mut out = Vec::new();
    for v in versions.iter().filter(|v| v.version_id != new_id) {
        let mut labels: Vec<String> = v.stages.iter().filter(|s| !stages.contains(s)).cloned().collect();
        // A request that places AWSPREVIOUS itself decides where it goes.
        if moving_current && old_current.is_some() && !stages.iter().any(|s| s == PREVIOUS) {
            if Some(&v.version_id) == old_current.as_ref() {
                if !labels.iter().any(|s| s == PREVIOUS) {
                    labels.push(PREVIOUS.to_owned());
                }
            } else {
                labels.retain(|s| s != PREVIOUS);
            }
        }
        if labels != v.stages {
            out.push((v.version_id.clone(), labels));
        }
    }
    out
}

/// The deprecated versions to remove once there are more than [`MAX_VERSIONS`]: those without
/// a label and older than a day, oldest first.
fn prune(versions: &[SecretVersionRecord], now_ms: i64) -> Vec<String> {
    let excess = versions.len().saturating_sub(MAX_VERSIONS);
    versions.iter().filter(|v| v.stages.is_empty() && v.created_ms < now_ms - DAY_MS).take(excess).map(|v| v.version_id.clone()).collect()
}

/// A ListSecrets / BatchGetSecretValue filter, parsed.
struct Filter {
    key: String,
    values: Vec<(bool, String)>,
}

fn parse_filters(filters: &[SmFilter]) -> Result<Vec<Filter>, KmsError> {
    const KEYS: &[&str] = &["description", "name", "tag-key", "tag-value", "primary-region", "owning-service", "all"];
    if filters.len() > 10 {
        return Err(KmsError::validation(
            "Value at 'filters' failed to satisfy constraint: Member must have length less than or equal to 10",
        ));
    }
    let mut out = Vec::new();
    for f in filters {
        let key = required(f.key.as_deref(), "filters.member.key")?;
        if !KEYS.contains(&key) {
            return Err(KmsError::validation(format!(
                "Value '{key}' at 'filters.member.key' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                KEYS.join(", ")
            )));
        }
        let values = f.values.clone().unwrap_or_default();
        if values.is_empty() || values.len() > 10 {
            return Err(KmsError::InvalidParameter(format!("Filter {key} needs 1 to 10 values.")));
        }
        let mut parsed = Vec::new();
        for v in values {
            length(&v, "filters.member.values.member", 1, 512)?;
            match v.strip_prefix('!') {
                Some(rest) => parsed.push((true, rest.to_owned())),
                None => parsed.push((false, v)),
            }
        }
        out.push(Filter { key: key.to_owned(), values: parsed });
    }
    Ok(out)
}

/// Whether a secret passes every filter (AWS: values match as prefixes, case-sensitively; `!`
/// negates; several values of one key are alternatives, several keys must all hold).
fn filters_match(filters: &[Filter], rec: &SecretRecord) -> bool {
    let tags = tags_of(rec);
    filters.iter().all(|f| {
        let texts: Vec<String> = match f.key.as_str() {
            "name" => vec![rec.name.clone()],
            "description" => rec.description.iter().cloned().collect(),
            "tag-key" => tags.iter().filter_map(|t| t.key.clone()).collect(),
            "tag-value" => tags.iter().filter_map(|t| t.value.clone()).collect(),
            "primary-region" => vec![rec.region.clone()],
            "owning-service" => Vec::new(),
            _ => {
                let mut all = vec![rec.name.clone()];
                all.extend(rec.description.iter().cloned());
                all.extend(tags.iter().filter_map(|t| t.key.clone()));
                all.extend(tags.iter().filter_map(|t| t.value.clone()));
                all
            }
        };
        let positive: Vec<&String> = f.values.iter().filter(|(neg, _)| !neg).map(|(_, v)| v).collect();
        let negative: Vec<&String> = f.values.iter().filter(|(neg, _)| *neg).map(|(_, v)| v).collect();
        let any_prefix = |v: &String| texts.iter().any(|t| t.starts_with(v.as_str()));
        (positive.is_empty() || positive.iter().any(|v| any_prefix(v))) && negative.iter().all(|v| !any_prefix(v))
    })
}

/// A pagination token: the offset into the sorted list, opaque to clients.
fn encode_token(offset: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("clavis-page:{offset}"))
}

fn decode_token(token: Option<&str>) -> Result<usize, KmsError> {
    use base64::Engine;
    let Some(t) = token else { return Ok(0) };
    let invalid = || KmsError::InvalidNextToken("The NextToken value is not valid.".into());
    let text = base64::engine::general_purpose::STANDARD.decode(t).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(invalid)?;
    text.strip_prefix("clavis-page:")
        .filter(|n| !n.is_empty() && n.len() <= 12 && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .ok_or_else(invalid)
}

/// One page of `items` from `offset` (a token's), and the next page's token. An offset past the
/// end is a token Clavis did not issue.
fn page<T>(items: Vec<T>, offset: usize, limit: usize) -> Result<(Vec<T>, Option<String>), KmsError> {
    if offset > items.len() {
        return Err(KmsError::InvalidNextToken("The NextToken value is not valid.".into()));
    }
    let end = offset.saturating_add(limit);
    let next = (end < items.len()).then(|| encode_token(end));
    Ok((items.into_iter().skip(offset).take(limit).collect(), next))
}

fn max_results(v: Option<i64>, max: i64) -> Result<usize, KmsError> {
    match v {
        None => Ok(usize::try_from(max).unwrap_or(100)),
        Some(n) if (1..=max).contains(&n) => Ok(usize::try_from(n).unwrap_or(1)),
        Some(_) => Err(KmsError::validation(format!(
            "Value at 'maxResults' failed to satisfy constraint: Member must have value between 1 and {max}"
        ))),
    }
}

/// An error of the KMS step, as Secrets Manager reports it (`failure` builds
/// EncryptionFailure or DecryptionFailure).
fn kms_error(e: KmsError, failure: fn(String) -> KmsError) -> KmsError {
    match e {
        KmsError::AccessDenied(_) => KmsError::AccessDenied("Access to KMS is not allowed".into()),
        KmsError::Disabled(m)
        | KmsError::InvalidState(m)
        | KmsError::InvalidKeyUsage(m)
        | KmsError::NotFound(m)
        | KmsError::InvalidCiphertext(m)
        | KmsError::InvalidArn(m) => failure(m),
        KmsError::IncorrectKey => failure("The ciphertext's key is not the version's key.".into()),
        other => other,
    }
}

impl Kms {
    /// The `kms:ViaService` value of calls made for Secrets Manager in the caller's region.
    fn via_service(caller: &Caller) -> String {
        format!("secretsmanager.{}.amazonaws.com", caller.region.as_str())
    }

    /// A secret of the caller's account and region by `SecretId` (its name, its full ARN, or a
    /// partial ARN: the ARN without the six random characters, as AWS resolves them),
    /// authorized for `op` ([`Kms::authorize_secret`]). The only way an operation gets a secret.
    async fn find_secret(&self, caller: &Caller, op: Operation, secret_id: Option<&str>) -> Result<SecretRecord, KmsError> {
        let secret = self.lookup_secret(caller, secret_id).await?;
        // The secret is the record's resource, allowed or refused.
        caller.resources.add(&secret.arn);
        self.authorize_secret(caller, op, &secret)?;
        Ok(secret)
    }

    /// The resource step for a secret, AWS's evaluation for a caller of the secret's own
    /// account: an explicit `Deny` in the secret's resource policy refuses (so does a stored
    /// policy that no longer parses); an `Allow` naming the caller allows; otherwise the
    /// caller's role (its identity policy) decides.
    fn authorize_secret(&self, caller: &Caller, op: Operation, secret: &SecretRecord) -> Result<(), KmsError> {
        let action = format!("secretsmanager:{}", op.name());
        let refusal = |why: &str| {
            KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: {action} on resource: {} {why}",
                caller.principal_arn, secret.arn
            ))
        };
        let decision = match &secret.policy {
            None => Decision::NotApplicable,
            Some(text) => {
                let policy = Policy::for_stored(text);
                if policy.is_unreadable() {
                    return Err(refusal("with an explicit deny in a resource-based policy (the secret's stored policy is not valid)"));
                }
                let tags: Vec<(String, String)> =
                    tags_of(secret).into_iter().map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default())).collect();
                let ctx = RequestContext {
                    principal_arn: &caller.principal_arn,
                    principal_account: caller.account.as_str(),
                    action: &action,
                    resource: &secret.arn,
                    encryption_context: None,
                    source_ip: caller.source_ip,
                    secure_transport: caller.secure_transport,
                    now_ms: self.now_ms(),
                    key: None,
                    resource_tags: &tags,
                    resource_aliases: &[],
                    request_alias: None,
                    extra: &[],
                };
                policy.evaluate(&ctx)
            }
        };
        match decision {
            Decision::ExplicitDeny => Err(refusal("with an explicit deny in a resource-based policy")),
            Decision::AllowPrincipal => Ok(()),
            _ if caller.role.allows_operation(op) => Ok(()),
            _ => Err(refusal(&format!("because no identity-based policy allows the {action} action"))),
        }
    }

    /// A secret by `SecretId`, without authorization (see [`Kms::find_secret`]).
    async fn lookup_secret(&self, caller: &Caller, secret_id: Option<&str>) -> Result<SecretRecord, KmsError> {
        let id = required(secret_id, "secretId")?;
        length(id, "secretId", 1, 2048)?;
        let (account, region) = (caller.account.as_str(), caller.region.as_str());
        let by_name = |name: &str| {
            let name = name.to_owned();
            async move {
                match self.secret_arn_by_name(account, region, &name).await? {
                    Some(arn) => Ok::<_, KmsError>(self.secret_snapshot(&arn).await?.map(|s| s.record)),
                    None => Ok(None),
                }
            }
        };
        let found = if let Some(rest) = id.strip_prefix("arn:") {
            let prefix = format!("aws:secretsmanager:{region}:{account}:secret:");
            let Some(name) = rest.strip_prefix(&prefix) else { return Err(not_found()) };
            match self.secret_snapshot(id).await? {
                Some(s) => Some(s.record),
                None => by_name(name).await?,
            }
        } else {
            by_name(id).await?
        };
        found.filter(|s| s.account_id == account && s.region == region).ok_or_else(not_found)
    }

    /// The ARN of the account's default key for secrets, made (with its alias) on first use.
    async fn default_secret_key(&self, caller: &Caller) -> Result<String, KmsError> {
        let (account, region) = (caller.account.as_str(), caller.region.as_str());
        if let Some(a) = self.aliases().get_alias(account, region, DEFAULT_KEY_ALIAS).await? {
            return Ok(key_arn(region, account, &a.target_key_id));
        }
        let key = self
            .create_service_key(&caller.account, region, "Default key that protects my Secrets Manager data when no other key is defined")
            .await?;
        let now = self.now_ms();
        let alias = AliasRecord {
            account_id: account.to_owned(),
            region: region.to_owned(),
            alias_name: DEFAULT_KEY_ALIAS.to_owned(),
            target_key_id: key.rec.key_id.clone(),
            creation_date_ms: now,
            last_updated_date_ms: now,
        };
        match self.aliases().create_alias(&alias).await {
            // Another request made it first: its key is the default (this one stays unused).
            Ok(()) | Err(StoreError::AlreadyExists) => {}
            Err(e) => return Err(e.into()),
        }
        let a = self.aliases().get_alias(account, region, DEFAULT_KEY_ALIAS).await?.ok_or_else(not_found)?;
        Ok(key_arn(region, account, &a.target_key_id))
    }

    /// The audit event of a KMS call Secrets Manager makes for the caller.
    fn service_event<'a>(caller: &'a Caller, operation: &'a str, request_id: &'a str) -> RequestEvent<'a> {
        RequestEvent {
            request_id,
            source_ip: None,
            user_agent: Some("secretsmanager.amazonaws.com"),
            operation,
            event_source: "kms.amazonaws.com",
            claimed_access_key_id: Some(&caller.access_key_id),
            region: Some(caller.region.as_str()),
        }
    }

    /// Encrypts a version's value: a data key from the secret's KMS key (as the caller, with
    /// its own KMS audit record), the value sealed under it.
    async fn seal_value(
        &self,
        caller: &Caller,
        secret: &SecretRecord,
        version_id: &str,
        value: &SecretValue,
    ) -> Result<SecretVersionRecord, KmsError> {
        let key_ref = match &secret.kms_key_id {
            Some(k) => k.clone(),
            None => self.default_secret_key(caller).await?,
        };
        let context = key_context(&secret.arn, version_id)?;
        let via = [param("kms:ViaService", Self::via_service(caller))];
        let inner = Caller { resources: Default::default(), ..caller.clone() };
        let request_id = uuid::Uuid::new_v4().to_string();
        let event = Self::service_event(caller, "GenerateDataKey", &request_id);
        let params = json!({"keyId": key_ref, "encryptionContext": context.as_map(), "keySpec": "AES_256"});
        let generated = self
            .audited_nested(&event, async {
                let result = async {
                    let access = Access::with_context("GenerateDataKey", &context).with_params(&via);
                    let key: Key = self.key_for(&inner, access, Some(&key_ref), "keyId").await?;
                    key.check_usable()?;
                    key.check_symmetric_encrypt()?;
                    let data_key = random::secret(clavis_crypto::aead::KEY_LEN)?;
                    let blob = self.encrypt_with(&key, &context, data_key.expose_secret()).await?;
                    Ok((key.arn.clone(), data_key, blob))
                }
                .await;
                audit::Outcome { request_parameters: params.as_object().cloned(), ..audit::Outcome::new(Some(inner.clone()), result) }
            })
            .await
            .map_err(|e| kms_error(e, KmsError::EncryptionFailure))?;
        let (kms_key_arn, data_key, encrypted_data_key) = generated;
        let mut ciphertext = Vec::new();
        AeadKey::new(&data_key)?.seal_append(&value_aad(&secret.arn, version_id), value.bytes.expose_secret(), &mut ciphertext)?;
        Ok(SecretVersionRecord {
            secret_arn: secret.arn.clone(),
            version_id: version_id.to_owned(),
            stages: Vec::new(),
            created_ms: self.now_ms(),
            last_accessed_ms: None,
            kms_key_arn,
            encrypted_data_key,
            ciphertext,
            binary: value.binary,
        })
    }

    /// Decrypts a version's value (its data key through Decrypt, as the caller, with its own
    /// KMS audit record).
    async fn open_value(&self, caller: &Caller, version: &SecretVersionRecord) -> Result<SecretValue, KmsError> {
        let context = key_context(&version.secret_arn, &version.version_id)?;
        let via = [param("kms:ViaService", Self::via_service(caller))];
        let inner = Caller { resources: Default::default(), ..caller.clone() };
        let request_id = uuid::Uuid::new_v4().to_string();
        let event = Self::service_event(caller, "Decrypt", &request_id);
        let params =
            json!({"keyId": version.kms_key_arn, "encryptionContext": context.as_map(), "encryptionAlgorithm": "SYMMETRIC_DEFAULT"});
        let data_key = self
            .audited_nested(&event, async {
                let access = Access::with_context("Decrypt", &context).with_params(&via);
                let result = self
                    .decrypt_blob(&inner, access, &version.encrypted_data_key, Some(&version.kms_key_arn), &context, "keyId")
                    .await
                    .map(|(_, plaintext)| plaintext);
                audit::Outcome { request_parameters: params.as_object().cloned(), ..audit::Outcome::new(Some(inner.clone()), result) }
            })
            .await
            .map_err(|e| kms_error(e, KmsError::DecryptionFailure))?;
        let bytes =
            AeadKey::new(&data_key)?.open(&value_aad(&version.secret_arn, &version.version_id), &version.ciphertext).map_err(|_| {
                KmsError::DecryptionFailure("Secrets Manager can't decrypt the protected secret text using the provided KMS key.".into())
            })?;
        Ok(SecretValue { bytes, binary: version.binary })
    }

    /// Adds a version with `value` under the id `token` and gives it `stages` (taken from other
    /// versions; AWSCURRENT moving makes the old current AWSPREVIOUS). The same token with the
    /// same value is the same version (idempotent); with another value, ResourceExists.
    async fn add_secret_version(
        &self,
        caller: &Caller,
        mut secret: SecretRecord,
        token: &str,
        value: &SecretValue,
        stages: &[String],
        extra: impl Fn(&mut SecretRecord),
    ) -> Result<(SecretRecord, Vec<String>), KmsError> {
        let mut sealed: Option<SecretVersionRecord> = None;
        for _ in 0..5 {
            let versions = self.secret_store().list_secret_versions(&secret.arn).await?;
            let existing = match versions.iter().find(|v| v.version_id == token) {
                Some(v) => Some(self.full_version(v).await?),
                None => None,
            };
            // A rotation's placeholder (no value yet) takes the value: it is not an existing version.
            if let Some(existing) = existing.as_ref().filter(|v| !v.ciphertext.is_empty()) {
                let old = self.open_value(caller, existing).await?;
                if old.same(value) {
                    return Ok((secret, existing.stages.clone()));
                }
                return Err(KmsError::ResourceExists("You can't modify an existing version, you can only create a new version.".into()));
            }
            let mut version = match sealed.take() {
                Some(v) => v,
                None => self.seal_value(caller, &secret, token, value).await?,
            };
            version.stages = stages.to_vec();
            let mut upserts: Vec<SecretVersionRecord> = Vec::new();
            let changes = move_labels(&versions, token, stages);
            for (id, labels) in &changes {
                if let Some(v) = versions.iter().find(|v| &v.version_id == id) {
                    // Rows are written whole: a listed one has no value, so read it.
                    upserts.push(SecretVersionRecord { stages: labels.clone(), ..self.full_version(v).await? });
                }
            }
            let mut after: Vec<SecretVersionRecord> = versions
                .iter()
                .map(|v| {
                    let stages =
                        upserts.iter().find(|u| u.version_id == v.version_id).map_or_else(|| v.stages.clone(), |u| u.stages.clone());
                    SecretVersionRecord { stages, ..v.clone() }
                })
                .collect();
            after.retain(|v| v.version_id != token);
            after.push(SecretVersionRecord { encrypted_data_key: Vec::new(), ciphertext: Vec::new(), ..version.clone() });
            let deletes = prune(&after, self.now_ms());
            if after.len() - deletes.len() > MAX_VERSIONS {
                return Err(KmsError::LimitExceeded(format!(
                    "The secret already has {MAX_VERSIONS} versions, the most it may keep; versions without a staging label are removed once a day old. Retry later."
                )));
            }
            upserts.push(version.clone());
            let mut rec = secret.clone();
            rec.last_changed_ms = self.now_ms();
            rec.revision = secret.revision + 1;
            extra(&mut rec);
            match self.write_secret(&rec, secret.revision, &upserts, &deletes).await {
                Ok(()) => return Ok((rec, version.stages)),
                Err(StoreError::Conflict) => {
                    sealed = Some(version);
                    secret = self.reload_live_secret(&secret.arn).await?;
                }
                Err(StoreError::NotFound) => return Err(not_found()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict())
    }

    /// Replaces a secret's record (compare-and-swap, retried on conflict), with `change`
    /// applied to the freshest record.
    async fn change_secret(
        &self,
        mut secret: SecretRecord,
        change: impl Fn(&mut SecretRecord) -> Result<(), KmsError>,
    ) -> Result<SecretRecord, KmsError> {
        for _ in 0..5 {
            let mut rec = secret.clone();
            change(&mut rec)?;
            rec.revision = secret.revision + 1;
            match self.write_secret(&rec, secret.revision, &[], &[]).await {
                Ok(()) => return Ok(rec),
                Err(StoreError::Conflict) => secret = self.secret_store().get_secret(&secret.arn).await?.ok_or_else(not_found)?,
                Err(StoreError::NotFound) => return Err(not_found()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict())
    }

    /// CreateSecret.
    pub async fn create_secret(&self, caller: &Caller, req: CreateSecretRequest) -> Result<CreateSecretResponse, KmsError> {
        self.authorize(caller, Operation::CreateSecret)?;
        let name = required(req.name, "name")?;
        check_name(&name, "name")?;
        if let Some(d) = &req.description {
            length(d, "description", 0, 2048)?;
        }
        if let Some(k) = &req.kms_key_id {
            length(k, "kmsKeyId", 0, 2048)?;
            KeyRef::parse(k, "kmsKeyId").map_err(|e| KmsError::InvalidParameter(e.to_string()))?;
        }
        if req.add_replica_regions.is_some() || req.force_overwrite_replica_secret.is_some() {
            return Err(KmsError::InvalidRequest(
                "Replication to other regions is not supported by Clavis (a single-region service).".into(),
            ));
        }
        let tags = req.tags.unwrap_or_default();
        if tags.len() > MAX_TAGS {
            return Err(KmsError::validation(
                "Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50",
            ));
        }
        check_tags(&tags)?;
        let value = value_of(req.secret_string, req.secret_binary)?;
        let token = client_token(req.client_request_token)?;
        let (account, region) = (caller.account.as_str(), caller.region.as_str());
        if let Some(existing) = self.secret_store().get_secret_by_name(account, region, &name).await? {
            let why = if existing.deletion_date_ms.is_some() { " and is scheduled for deletion" } else { "" };
            return Err(KmsError::ResourceExists(format!("The operation failed because the secret {name} already exists{why}.")));
        }
        let suffix: String = {
            const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            random::bytes(6)?.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
        };
        let now = self.now_ms();
        let rec = SecretRecord {
            arn: format!("arn:aws:secretsmanager:{region}:{account}:secret:{name}-{suffix}"),
            account_id: account.to_owned(),
            region: region.to_owned(),
            name: name.clone(),
            description: req.description,
            kms_key_id: req.kms_key_id,
            created_ms: now,
            last_changed_ms: now,
            last_accessed_ms: None,
            deletion_date_ms: None,
            tags_json: serde_json::to_string(&tags).map_err(|e| KmsError::Internal(e.to_string()))?,
            policy: None,
            rotation_json: None,
            next_rotation_ms: None,
            revision: 1,
        };
        let version = match &value {
            Some(v) => {
                let mut sealed = self.seal_value(caller, &rec, &token, v).await?;
                sealed.stages = vec![CURRENT.to_owned()];
                Some(sealed)
            }
            None => None,
        };
        match self.secret_store().create_secret(&rec, version.as_ref()).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists) => {
                return Err(KmsError::ResourceExists(format!("The operation failed because the secret {name} already exists.")));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(CreateSecretResponse { arn: rec.arn, name: rec.name, version_id: version.map(|v| v.version_id) })
    }

    /// The version a GetSecretValue names: VersionId and/or VersionStage (default AWSCURRENT).
    async fn pick_version(
        &self,
        secret: &SecretRecord,
        version_id: Option<&str>,
        stage: Option<&str>,
    ) -> Result<SecretVersionRecord, KmsError> {
        if let Some(id) = version_id {
            length(id, "versionId", 32, 64)?;
        }
        if let Some(s) = stage {
            check_label(s, "versionStage")?;
        }
        let versions = self.secret_snapshot(&secret.arn).await?.map(|s| s.versions).unwrap_or_default();
        let stage = stage.or(if version_id.is_none() { Some(CURRENT) } else { None });
        let found = versions
            .into_iter()
            .find(|v| version_id.is_none_or(|id| v.version_id == id) && stage.is_none_or(|s| v.stages.iter().any(|l| l == s)));
        found.ok_or_else(|| match (version_id, stage) {
            (Some(id), _) => {
                KmsError::ResourceNotFound(format!("Secrets Manager can't find the specified secret value for VersionId: {id}"))
            }
            (None, Some(s)) => {
                KmsError::ResourceNotFound(format!("Secrets Manager can't find the specified secret value for staging label: {s}"))
            }
            (None, None) => not_found(),
        })
    }

    /// Reads and decrypts one version, noting the access (at most one write a day).
    async fn read_version(
        &self,
        caller: &Caller,
        secret: &SecretRecord,
        version: &SecretVersionRecord,
    ) -> Result<GetSecretValueResponse, KmsError> {
        let version = &self.full_version(version).await?;
        if version.ciphertext.is_empty() {
            // A rotation's version that has no value yet.
            return Err(KmsError::ResourceNotFound(format!(
                "Secrets Manager can't find the specified secret value for VersionId: {}",
                version.version_id
            )));
        }
        let value = self.open_value(caller, version).await?;
        let today = day(self.now_ms());
        if secret.last_accessed_ms != Some(today) || version.last_accessed_ms != Some(today) {
            let mut rec = secret.clone();
            rec.last_accessed_ms = Some(today);
            rec.revision = secret.revision + 1;
            let touched = SecretVersionRecord { last_accessed_ms: Some(today), ..version.clone() };
            // Best effort: a concurrent change wins, the date is set by a later read.
            let _ = self.write_secret(&rec, secret.revision, &[touched], &[]).await;
        }
        let (secret_string, secret_binary) = if value.binary {
            (None, Some(SecretBlob(value.bytes)))
        } else {
            (Some(SecretText::new(String::from_utf8_lossy(value.bytes.expose_secret()).into_owned())), None)
        };
        Ok(GetSecretValueResponse {
            arn: secret.arn.clone(),
            name: secret.name.clone(),
            version_id: version.version_id.clone(),
            secret_binary,
            secret_string,
            version_stages: version.stages.clone(),
            created_date: secs(version.created_ms),
        })
    }

    /// GetSecretValue.
    pub async fn get_secret_value(&self, caller: &Caller, req: GetSecretValueRequest) -> Result<GetSecretValueResponse, KmsError> {
        self.authorize(caller, Operation::GetSecretValue)?;
        let secret = self.find_secret(caller, Operation::GetSecretValue, req.secret_id.as_deref()).await?;
        if secret.deletion_date_ms.is_some() {
            return Err(marked_for_deletion());
        }
        let version = self.pick_version(&secret, req.version_id.as_deref(), req.version_stage.as_deref()).await?;
        self.read_version(caller, &secret, &version).await
    }

    /// BatchGetSecretValue: up to 20 secrets by id, or the secrets a filter selects; a secret
    /// that cannot be read is an entry of `Errors`, not a failure of the call.
    pub async fn batch_get_secret_value(
        &self,
        caller: &Caller,
        req: BatchGetSecretValueRequest,
    ) -> Result<BatchGetSecretValueResponse, KmsError> {
        self.authorize(caller, Operation::BatchGetSecretValue)?;
        let (ids, next_token) = match (req.secret_id_list, req.filters) {
            (Some(_), Some(_)) => {
                return Err(KmsError::InvalidParameter("Either 'SecretIdList' or 'Filters' must be provided, but not both.".into()));
            }
            (None, None) => return Err(KmsError::InvalidParameter("Either 'SecretIdList' or 'Filters' must be provided.".into())),
            (Some(ids), None) => {
                let mut seen = BTreeSet::new();
                let ids: Vec<String> = ids.into_iter().filter(|id| seen.insert(id.clone())).collect();
                if ids.is_empty() || ids.len() > 20 {
                    return Err(KmsError::validation(
                        "Value at 'secretIdList' failed to satisfy constraint: Member must have length between 1 and 20",
                    ));
                }
                if req.max_results.is_some() || req.next_token.is_some() {
                    return Err(KmsError::InvalidParameter("MaxResults and NextToken are valid only with Filters.".into()));
                }
                (ids, None)
            }
            (None, Some(filters)) => {
                let filters = parse_filters(&filters)?;
                let limit = max_results(req.max_results, 20)?;
                let offset = decode_token(req.next_token.as_deref())?;
                let all: Vec<SecretRecord> = self
                    .secret_store()
                    .list_secrets(caller.account.as_str(), caller.region.as_str())
                    .await?
                    .into_iter()
                    .filter(|s| s.deletion_date_ms.is_none() && filters_match(&filters, s))
                    .collect();
                let (items, next) = page(all, offset, limit)?;
                (items.into_iter().map(|s| s.arn).collect(), next)
            }
        };
        let mut secret_values = Vec::new();
        let mut errors = Vec::new();
        for id in ids {
            let read = async {
                let secret = self.find_secret(caller, Operation::GetSecretValue, Some(&id)).await?;
                if secret.deletion_date_ms.is_some() {
                    return Err(marked_for_deletion());
                }
                let version = self.pick_version(&secret, None, None).await?;
                self.read_version(caller, &secret, &version).await
            }
            .await;
            match read {
                Ok(v) => secret_values.push(v),
                Err(e @ (KmsError::Sealed | KmsError::Unavailable(_) | KmsError::AuditUnavailable(_) | KmsError::Internal(_))) => {
                    return Err(e);
                }
                Err(e) => errors.push(SmApiError { secret_id: id, error_code: e.code().to_owned(), message: e.to_string() }),
            }
        }
        Ok(BatchGetSecretValueResponse { secret_values, next_token, errors })
    }

    /// PutSecretValue.
    pub async fn put_secret_value(&self, caller: &Caller, req: PutSecretValueRequest) -> Result<PutSecretValueResponse, KmsError> {
        self.authorize(caller, Operation::PutSecretValue)?;
        let value = value_of(req.secret_string, req.secret_binary)?
            .ok_or_else(|| KmsError::InvalidParameter("You must provide either SecretString or SecretBinary.".into()))?;
        let token = client_token(req.client_request_token)?;
        let mut stages = req.version_stages.unwrap_or_else(|| vec![CURRENT.to_owned()]);
        let mut seen = BTreeSet::new();
        stages.retain(|s| seen.insert(s.clone()));
        if stages.is_empty() || stages.len() > MAX_LABELS_PER_VERSION {
            return Err(KmsError::validation(
                "Value at 'versionStages' failed to satisfy constraint: Member must have length between 1 and 20",
            ));
        }
        for s in &stages {
            check_label(s, "versionStages.member")?;
        }
        let secret = self.find_secret(caller, Operation::PutSecretValue, req.secret_id.as_deref()).await?;
        if secret.deletion_date_ms.is_some() {
            return Err(marked_for_deletion());
        }
        let (rec, stages) = self.add_secret_version(caller, secret, &token, &value, &stages, |_| {}).await?;
        Ok(PutSecretValueResponse { arn: rec.arn, name: rec.name, version_id: token, version_stages: stages })
    }

    /// UpdateSecret: description, KMS key and, with a value, a new AWSCURRENT version.
    pub async fn update_secret(&self, caller: &Caller, req: UpdateSecretRequest) -> Result<UpdateSecretResponse, KmsError> {
        self.authorize(caller, Operation::UpdateSecret)?;
        if let Some(d) = &req.description {
            length(d, "description", 0, 2048)?;
        }
        if let Some(k) = &req.kms_key_id {
            length(k, "kmsKeyId", 0, 2048)?;
            KeyRef::parse(k, "kmsKeyId").map_err(|e| KmsError::InvalidParameter(e.to_string()))?;
        }
        let value = value_of(req.secret_string, req.secret_binary)?;
        let token = client_token(req.client_request_token)?;
        let secret = self.find_secret(caller, Operation::UpdateSecret, req.secret_id.as_deref()).await?;
        if secret.deletion_date_ms.is_some() {
            return Err(marked_for_deletion());
        }
        let key_changes = req.kms_key_id.is_some() && req.kms_key_id != secret.kms_key_id;
        let description = req.description.clone();
        if value.is_none() && description.is_none() && req.kms_key_id.is_none() {
            return Err(KmsError::InvalidParameter(
                "Specify at least one of Description, KmsKeyId, SecretString or SecretBinary to update.".into(),
            ));
        }
        let mut rec = secret;
        if let (true, Some(new_key)) = (key_changes, req.kms_key_id.as_deref()) {
            rec = self.change_secret_key(caller, rec, new_key, description.as_deref()).await?;
        }
        let has_description = description.is_some();
        let apply = move |r: &mut SecretRecord| {
            if let Some(d) = &description {
                r.description = Some(d.clone());
            }
        };
        let (rec, version_id) = match &value {
            // The new version is encrypted under the secret's (new) key.
            Some(v) => (self.add_secret_version(caller, rec, &token, v, &[CURRENT.to_owned()], &apply).await?.0, Some(token)),
            None if !key_changes && has_description => {
                let now = self.now_ms();
                let rec = self
                    .change_secret(rec, |r| {
                        apply(r);
                        r.last_changed_ms = now;
                        Ok(())
                    })
                    .await?;
                (rec, None)
            }
            None => (rec, None),
        };
        Ok(UpdateSecretResponse { arn: rec.arn, name: rec.name, version_id })
    }

    /// Whether the caller may have data keys made under `key_ref` for Secrets Manager: the
    /// key resolves, is usable and symmetric, and its policy or grants allow the caller
    /// GenerateDataKey through Secrets Manager. Checked before a secret is moved to the key.
    async fn check_secret_key(&self, caller: &Caller, key_ref: &str) -> Result<(), KmsError> {
        let via = [param("kms:ViaService", Self::via_service(caller))];
        let inner = Caller { resources: Default::default(), ..caller.clone() };
        let access = Access::to("GenerateDataKey").with_params(&via);
        let key = self.key_for(&inner, access, Some(key_ref), "keyId").await.map_err(|e| kms_error(e, KmsError::EncryptionFailure))?;
        key.check_usable().and_then(|()| key.check_symmetric_encrypt()).map_err(|e| kms_error(e, KmsError::EncryptionFailure))
    }

    /// Moves a secret to another KMS key: the new key is checked for the caller, the versions
    /// labelled AWSCURRENT, AWSPENDING and AWSPREVIOUS are decrypted (as the caller, under
    /// their key) and encrypted again under the new key, as AWS does (older versions keep
    /// theirs), and the key change and the re-encrypted versions are one compare-and-swap
    /// against the revision at which the versions were read: a concurrent change makes the
    /// whole step run again, and a failure anywhere changes nothing.
    async fn change_secret_key(
        &self,
        caller: &Caller,
        mut secret: SecretRecord,
        new_key: &str,
        description: Option<&str>,
    ) -> Result<SecretRecord, KmsError> {
        for _ in 0..3 {
            self.check_secret_key(caller, new_key).await?;
            let target = SecretRecord {
                kms_key_id: Some(new_key.to_owned()),
                description: description.map(str::to_owned).or_else(|| secret.description.clone()),
                last_changed_ms: self.now_ms(),
                revision: secret.revision + 1,
                ..secret.clone()
            };
            let versions = self.secret_store().list_secret_versions(&secret.arn).await?;
            let mut upserts = Vec::new();
            for meta in versions.iter().filter(|v| v.stages.iter().any(|s| s == CURRENT || s == PREVIOUS || s == "AWSPENDING")) {
                let full = self.full_version(meta).await?;
                if full.ciphertext.is_empty() {
                    continue;
                }
                let value = self.open_value(caller, &full).await?;
                let fresh = self.seal_value(caller, &target, &full.version_id, &value).await?;
                upserts.push(SecretVersionRecord {
                    kms_key_arn: fresh.kms_key_arn,
                    encrypted_data_key: fresh.encrypted_data_key,
                    ciphertext: fresh.ciphertext,
                    ..full
                });
            }
            match self.write_secret(&target, secret.revision, &upserts, &[]).await {
                Ok(()) => return Ok(target),
                Err(StoreError::Conflict) => secret = self.reload_live_secret(&secret.arn).await?,
                Err(StoreError::NotFound) => return Err(not_found()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict())
    }

    /// The freshest record of a secret after a lost compare-and-swap, refused when it was
    /// scheduled for deletion meanwhile.
    async fn reload_live_secret(&self, arn: &str) -> Result<SecretRecord, KmsError> {
        let secret = self.secret_store().get_secret(arn).await?.ok_or_else(not_found)?;
        if secret.deletion_date_ms.is_some() {
            return Err(marked_for_deletion());
        }
        Ok(secret)
    }

    /// A listed version with its value (listings carry none).
    async fn full_version(&self, meta: &SecretVersionRecord) -> Result<SecretVersionRecord, KmsError> {
        self.secret_version(&meta.secret_arn, &meta.version_id).await?.ok_or_else(conflict)
    }

    /// [`clavis_store::SecretStore::update_secret`], then this node forgets what it cached of
    /// the secret (whatever the outcome: a conflict means the cache was stale).
    async fn write_secret(
        &self,
        secret: &SecretRecord,
        expected_revision: u64,
        upserts: &[SecretVersionRecord],
        deletes: &[String],
    ) -> Result<(), StoreError> {
        let result = self.secret_store().update_secret(secret, expected_revision, upserts, deletes).await;
        self.forget_secret(&secret.arn);
        result
    }

    /// [`clavis_store::SecretStore::destroy_secret`], then this node forgets the secret.
    async fn erase_secret(&self, arn: &str, expected_revision: u64) -> Result<(), StoreError> {
        let result = self.secret_store().destroy_secret(arn, expected_revision).await;
        self.forget_secret(arn);
        result
    }

    fn describe(&self, secret: &SecretRecord, versions: Option<&[SecretVersionRecord]>, list_entry: bool) -> DescribeSecretResponse {
        let rotation = rotation_of(secret);
        let stages: Option<BTreeMap<String, Vec<String>>> =
            versions.map(|vs| vs.iter().filter(|v| !v.stages.is_empty()).map(|v| (v.version_id.clone(), v.stages.clone())).collect());
        DescribeSecretResponse {
            arn: secret.arn.clone(),
            name: secret.name.clone(),
            description: secret.description.clone(),
            kms_key_id: secret.kms_key_id.clone(),
            rotation_enabled: rotation.as_ref().map(|c| c.enabled),
            rotation_lambda_arn: rotation.as_ref().map(|c| c.lambda_arn.clone()),
            rotation_rules: rotation.as_ref().map(|c| c.rules.clone()),
            last_rotated_date: rotation.as_ref().and_then(|c| c.last_rotated_ms).map(secs),
            next_rotation_date: secret.next_rotation_ms.map(secs),
            last_changed_date: Some(secs(secret.last_changed_ms)),
            last_accessed_date: secret.last_accessed_ms.map(secs),
            deleted_date: secret.deletion_date_ms.map(secs),
            tags: tags_of(secret),
            version_ids_to_stages: if list_entry { None } else { stages.clone() },
            secret_versions_to_stages: if list_entry { stages } else { None },
            created_date: secs(secret.created_ms),
        }
    }

    /// DescribeSecret.
    pub async fn describe_secret(&self, caller: &Caller, req: SecretIdRequest) -> Result<DescribeSecretResponse, KmsError> {
        self.authorize(caller, Operation::DescribeSecret)?;
        let secret = self.find_secret(caller, Operation::DescribeSecret, req.secret_id.as_deref()).await?;
        let versions = self.secret_store().list_secret_versions(&secret.arn).await?;
        Ok(self.describe(&secret, Some(&versions), false))
    }

    /// ListSecrets.
    pub async fn list_secrets(&self, caller: &Caller, req: ListSecretsRequest) -> Result<ListSecretsResponse, KmsError> {
        self.authorize(caller, Operation::ListSecrets)?;
        let limit = max_results(req.max_results, 100)?;
        let offset = decode_token(req.next_token.as_deref())?;
        let filters = parse_filters(req.filters.as_deref().unwrap_or_default())?;
        let order = req.sort_order.as_deref().unwrap_or("desc");
        if !matches!(order, "asc" | "desc") {
            return Err(KmsError::validation(format!(
                "Value '{order}' at 'sortOrder' failed to satisfy constraint: Member must satisfy enum value set: [asc, desc]"
            )));
        }
        let by = req.sort_by.as_deref().unwrap_or("created-date");
        const SORT_BY: &[&str] = &["created-date", "last-accessed-date", "last-changed-date", "name"];
        if !SORT_BY.contains(&by) {
            return Err(KmsError::validation(format!(
                "Value '{by}' at 'sortBy' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                SORT_BY.join(", ")
            )));
        }
        let planned = req.include_planned_deletion == Some(true);
        let mut all: Vec<SecretRecord> = self
            .secret_store()
            .list_secrets(caller.account.as_str(), caller.region.as_str())
            .await?
            .into_iter()
            .filter(|s| (planned || s.deletion_date_ms.is_none()) && filters_match(&filters, s))
            .collect();
        all.sort_by(|a, b| {
            let o = match by {
                "name" => a.name.cmp(&b.name),
                "last-accessed-date" => a.last_accessed_ms.cmp(&b.last_accessed_ms),
                "last-changed-date" => a.last_changed_ms.cmp(&b.last_changed_ms),
                _ => a.created_ms.cmp(&b.created_ms),
            }
            .then_with(|| a.arn.cmp(&b.arn));
            if order == "asc" { o } else { o.reverse() }
        });
        let (items, next_token) = page(all, offset, limit)?;
        let mut secret_list = Vec::new();
        for s in items {
            let versions = self.secret_store().list_secret_versions(&s.arn).await?;
            secret_list.push(self.describe(&s, Some(&versions), true));
        }
        Ok(ListSecretsResponse { secret_list, next_token })
    }

    /// ListSecretVersionIds.
    pub async fn list_secret_version_ids(
        &self,
        caller: &Caller,
        req: ListSecretVersionIdsRequest,
    ) -> Result<ListSecretVersionIdsResponse, KmsError> {
        self.authorize(caller, Operation::ListSecretVersionIds)?;
        let limit = max_results(req.max_results, 100)?;
        let offset = decode_token(req.next_token.as_deref())?;
        let secret = self.find_secret(caller, Operation::ListSecretVersionIds, req.secret_id.as_deref()).await?;
        let mut versions: Vec<SecretVersionRecord> = self
            .secret_store()
            .list_secret_versions(&secret.arn)
            .await?
            .into_iter()
            .filter(|v| req.include_deprecated == Some(true) || !v.stages.is_empty())
            .collect();
        versions.reverse();
        let (items, next_token) = page(versions, offset, limit)?;
        let versions = items
            .into_iter()
            .map(|v| SecretVersionEntry {
                version_id: v.version_id,
                version_stages: v.stages,
                last_accessed_date: v.last_accessed_ms.map(secs),
                created_date: secs(v.created_ms),
                kms_key_ids: if v.kms_key_arn.is_empty() { Vec::new() } else { vec![v.kms_key_arn] },
            })
            .collect();
        Ok(ListSecretVersionIdsResponse { versions, next_token, arn: secret.arn, name: secret.name })
    }

    /// UpdateSecretVersionStage: moves a staging label to a version, or removes it from one.
    pub async fn update_secret_version_stage(
        &self,
        caller: &Caller,
        req: UpdateSecretVersionStageRequest,
    ) -> Result<SecretArnNameResponse, KmsError> {
        self.authorize(caller, Operation::UpdateSecretVersionStage)?;
        let stage = required(req.version_stage, "versionStage")?;
        check_label(&stage, "versionStage")?;
        for id in [&req.remove_from_version_id, &req.move_to_version_id].into_iter().flatten() {
            length(id, "versionId", 32, 64)?;
        }
        let secret = self.find_secret(caller, Operation::UpdateSecretVersionStage, req.secret_id.as_deref()).await?;
        if secret.deletion_date_ms.is_some() {
            return Err(marked_for_deletion());
        }
        let versions = self.secret_store().list_secret_versions(&secret.arn).await?;
        let holder = versions.iter().find(|v| v.stages.contains(&stage)).map(|v| v.version_id.clone());
        if let Some(from) = &req.remove_from_version_id
            && holder.as_ref() != Some(from)
        {
            return Err(KmsError::InvalidParameter(format!("The staging label {stage} is not attached to version {from}.")));
        }
        let Some(to) = req.move_to_version_id else {
            if stage == CURRENT {
                return Err(KmsError::InvalidParameter(
                    "You can only move staging label AWSCURRENT to a different secret version. It can't be completely removed.".into(),
                ));
            }
            let Some(from) = req.remove_from_version_id else {
                return Err(KmsError::InvalidParameter("Specify RemoveFromVersionId, MoveToVersionId or both.".into()));
            };
            let mut upserts: Vec<SecretVersionRecord> = Vec::new();
            for v in versions.iter().filter(|v| v.version_id == from) {
                let stages = v.stages.iter().filter(|s| **s != stage).cloned().collect();
                upserts.push(SecretVersionRecord { stages, ..self.full_version(v).await? });
            }
            let rec = SecretRecord { revision: secret.revision + 1, last_changed_ms: self.now_ms(), ..secret.clone() };
            self.commit_versions(&secret, &rec, &upserts).await?;
            return Ok(SecretArnNameResponse { arn: secret.arn, name: secret.name });
        };
        let Some(target) = versions.iter().find(|v| v.version_id == to) else {
            return Err(KmsError::ResourceNotFound(format!("Secrets Manager can't find the specified secret version: {to}")));
        };
        if let Some(h) = &holder
            && h != &to
            && req.remove_from_version_id.is_none()
        {
            return Err(KmsError::InvalidParameter(format!(
                "The parameter RemoveFromVersionId can't be empty. Staging label {stage} is currently attached to version {h}, so you must explicitly reference that version in RemoveFromVersionId."
            )));
        }
        if !target.stages.contains(&stage) && target.stages.len() >= MAX_LABELS_PER_VERSION {
            return Err(KmsError::LimitExceeded(format!("A version can have at most {MAX_LABELS_PER_VERSION} staging labels.")));
        }
        let mut upserts: Vec<SecretVersionRecord> = Vec::new();
        for (id, labels) in move_labels(&versions, &to, std::slice::from_ref(&stage)) {
            if let Some(v) = versions.iter().find(|v| v.version_id == id) {
                upserts.push(SecretVersionRecord { stages: labels, ..self.full_version(v).await? });
            }
        }
        if !target.stages.contains(&stage) {
            let mut labels = target.stages.clone();
            labels.push(stage.clone());
            labels.retain(|s| stage != CURRENT || s != PREVIOUS);
            upserts.push(SecretVersionRecord { stages: labels, ..self.full_version(target).await? });
        }
        let rec = SecretRecord { revision: secret.revision + 1, last_changed_ms: self.now_ms(), ..secret.clone() };
        self.commit_versions(&secret, &rec, &upserts).await?;
        Ok(SecretArnNameResponse { arn: secret.arn, name: secret.name })
    }

    async fn commit_versions(&self, before: &SecretRecord, after: &SecretRecord, upserts: &[SecretVersionRecord]) -> Result<(), KmsError> {
        match self.write_secret(after, before.revision, upserts, &[]).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict) => Err(conflict()),
            Err(StoreError::NotFound) => Err(not_found()),
            Err(e) => Err(e.into()),
        }
    }

    /// DeleteSecret: scheduled after a recovery window (7–30 days, default 30), or at once with
    /// ForceDeleteWithoutRecovery (idempotent: a secret that does not exist is deleted too).
    pub async fn delete_secret(&self, caller: &Caller, req: DeleteSecretRequest) -> Result<DeleteSecretResponse, KmsError> {
        self.authorize(caller, Operation::DeleteSecret)?;
        let force = req.force_delete_without_recovery == Some(true);
        if force && req.recovery_window_in_days.is_some() {
            return Err(KmsError::InvalidParameter(
                "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.".into(),
            ));
        }
        let days = req.recovery_window_in_days.unwrap_or(30);
        if !(7..=30).contains(&days) {
            return Err(KmsError::InvalidParameter("The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).".into()));
        }
        let now = self.now_ms();
        let secret = match self.find_secret(caller, Operation::DeleteSecret, req.secret_id.as_deref()).await {
            Ok(s) => s,
            Err(KmsError::ResourceNotFound(_)) if force => {
                let id = req.secret_id.unwrap_or_default();
                let name = id.rsplit(':').next().unwrap_or(&id).to_owned();
                return Ok(DeleteSecretResponse { arn: id, name, deletion_date: secs(now) });
            }
            Err(e) => return Err(e),
        };
        if force {
            match self.erase_secret(&secret.arn, secret.revision).await {
                Ok(()) | Err(StoreError::NotFound) => {}
                Err(StoreError::Conflict) => return Err(conflict()),
                Err(e) => return Err(e.into()),
            }
            return Ok(DeleteSecretResponse { arn: secret.arn, name: secret.name, deletion_date: secs(now) });
        }
        if secret.deletion_date_ms.is_some() {
            return Err(KmsError::InvalidRequest("You can't delete secret because it was already scheduled for deletion.".into()));
        }
        let when = now + days * DAY_MS;
        let rec = self
            .change_secret(secret, |r| {
                if r.deletion_date_ms.is_some() {
                    return Err(KmsError::InvalidRequest("You can't delete secret because it was already scheduled for deletion.".into()));
                }
                r.deletion_date_ms = Some(when);
                Ok(())
            })
            .await?;
        Ok(DeleteSecretResponse { arn: rec.arn, name: rec.name, deletion_date: secs(when) })
    }

    /// RestoreSecret: cancels a scheduled deletion (a no-op for a secret not scheduled).
    pub async fn restore_secret(&self, caller: &Caller, req: SecretIdRequest) -> Result<SecretArnNameResponse, KmsError> {
        self.authorize(caller, Operation::RestoreSecret)?;
        let secret = self.find_secret(caller, Operation::RestoreSecret, req.secret_id.as_deref()).await?;
        let rec = if secret.deletion_date_ms.is_some() {
            self.change_secret(secret, |r| {
                r.deletion_date_ms = None;
                Ok(())
            })
            .await?
        } else {
            secret
        };
        Ok(SecretArnNameResponse { arn: rec.arn, name: rec.name })
    }

    /// TagResource (Secrets Manager): adds or replaces tags.
    pub async fn tag_secret(&self, caller: &Caller, req: SmTagResourceRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::TagSecret)?;
        let tags = required(req.tags, "tags")?;
        check_tags(&tags)?;
        let secret = self.find_secret(caller, Operation::TagSecret, req.secret_id.as_deref()).await?;
        if secret.deletion_date_ms.is_some() {
            return Err(marked_for_deletion());
        }
        self.change_secret(secret, |r| {
            let mut current = tags_of(r);
            for t in &tags {
                current.retain(|c| c.key != t.key);
                current.push(SmTag { key: t.key.clone(), value: Some(t.value.clone().unwrap_or_default()) });
            }
            if current.len() > MAX_TAGS {
                return Err(KmsError::LimitExceeded(format!("A secret can have at most {MAX_TAGS} tags.")));
            }
            r.tags_json = serde_json::to_string(&current).map_err(|e| KmsError::Internal(e.to_string()))?;
            Ok(())
        })
        .await?;
        Ok(Empty {})
    }

    /// UntagResource (Secrets Manager).
    pub async fn untag_secret(&self, caller: &Caller, req: SmUntagResourceRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::UntagSecret)?;
        let keys: BTreeSet<String> = required(req.tag_keys, "tagKeys")?.into_iter().collect();
        if keys.len() > 200 {
            return Err(KmsError::validation(
                "Value at 'tagKeys' failed to satisfy constraint: Member must have length less than or equal to 200",
            ));
        }
        for k in &keys {
            length(k, "tagKeys.member", 1, 128)?;
        }
        let secret = self.find_secret(caller, Operation::UntagSecret, req.secret_id.as_deref()).await?;
        if secret.deletion_date_ms.is_some() {
            return Err(marked_for_deletion());
        }
        self.change_secret(secret, |r| {
            let current: Vec<SmTag> = tags_of(r).into_iter().filter(|t| t.key.as_ref().is_none_or(|k| !keys.contains(k))).collect();
            r.tags_json = serde_json::to_string(&current).map_err(|e| KmsError::Internal(e.to_string()))?;
            Ok(())
        })
        .await?;
        Ok(Empty {})
    }

    /// GetRandomPassword.
    pub async fn get_random_password(&self, caller: &Caller, req: GetRandomPasswordRequest) -> Result<GetRandomPasswordResponse, KmsError> {
        self.authorize(caller, Operation::GetRandomPassword)?;
        let len = req.password_length.unwrap_or(32);
        if !(1..=4096).contains(&len) {
            return Err(KmsError::validation(
                "Value at 'passwordLength' failed to satisfy constraint: Member must have value between 1 and 4096",
            ));
        }
        let exclude = req.exclude_characters.unwrap_or_default();
        length(&exclude, "excludeCharacters", 0, 4096)?;
        let class = |chars: &str, skip: Option<bool>| -> Vec<char> {
            if skip == Some(true) { Vec::new() } else { chars.chars().filter(|c| !exclude.contains(*c)).collect() }
        };
        let mut classes = vec![
            class("abcdefghijklmnopqrstuvwxyz", req.exclude_lowercase),
            class("ABCDEFGHIJKLMNOPQRSTUVWXYZ", req.exclude_uppercase),
            class("0123456789", req.exclude_numbers),
            class(PUNCTUATION, req.exclude_punctuation),
        ];
        if req.include_space == Some(true) {
            classes.push(class(" ", None));
        }
        classes.retain(|c| !c.is_empty());
        let all: Vec<char> = classes.iter().flatten().copied().collect();
        if all.is_empty() {
            return Err(KmsError::InvalidParameter("The password cannot be generated: every character is excluded.".into()));
        }
        let len = usize::try_from(len).unwrap_or(32);
        let require_each = req.require_each_included_type != Some(false);
        if require_each && len < classes.len() {
            return Err(KmsError::InvalidParameter(format!(
                "PasswordLength {len} is too short to include each of the {} character types.",
                classes.len()
            )));
        }
        // One character of each required type, the rest from all of them, then a uniform
        // shuffle: bounded work whatever the exclusions (no retry until every type appears).
        let mut chars: Vec<char> = Vec::with_capacity(len);
        if require_each {
            for c in &classes {
                chars.push(c[uniform(c.len())?]);
            }
        }
        while chars.len() < len {
            chars.push(all[uniform(all.len())?]);
        }
        for i in (1..chars.len()).rev() {
            chars.swap(i, uniform(i + 1)?);
        }
        Ok(GetRandomPasswordResponse { random_password: SecretText::new(chars.into_iter().collect()) })
    }

    /// PutResourcePolicy: validated by the key-policy engine (condition keys it does not
    /// evaluate are refused, so a policy never silently fails to apply); with
    /// BlockPublicPolicy, a policy that allows a wildcard principal is refused.
    pub async fn put_resource_policy(&self, caller: &Caller, req: PutResourcePolicyRequest) -> Result<ResourcePolicyResponse, KmsError> {
        self.authorize(caller, Operation::PutResourcePolicy)?;
        let text = required(req.resource_policy, "resourcePolicy")?;
        length(&text, "resourcePolicy", 1, 20_480)?;
        check_policy_name(req.policy_name.as_deref())?;
        Policy::parse(&text)?;
        if req.block_public_policy == Some(true) && allows_public(&text) {
            return Err(KmsError::PublicPolicy(
                "The BlockPublicPolicy parameter is set to true, and the resource policy did not prevent broad access to the secret."
                    .into(),
            ));
        }
        let secret = self.find_secret(caller, Operation::PutResourcePolicy, req.secret_id.as_deref()).await?;
        if secret.deletion_date_ms.is_some() {
            return Err(marked_for_deletion());
        }
        let rec = self
            .change_secret(secret, |r| {
                r.policy = Some(text.clone());
                Ok(())
            })
            .await?;
        Ok(ResourcePolicyResponse { arn: rec.arn, name: rec.name, resource_policy: None })
    }

    /// GetResourcePolicy.
    pub async fn get_resource_policy(&self, caller: &Caller, req: ResourcePolicyRequest) -> Result<ResourcePolicyResponse, KmsError> {
        self.authorize(caller, Operation::GetResourcePolicy)?;
        check_policy_name(req.policy_name.as_deref())?;
        let secret = self.find_secret(caller, Operation::GetResourcePolicy, req.secret_id.as_deref()).await?;
        Ok(ResourcePolicyResponse { arn: secret.arn, name: secret.name, resource_policy: secret.policy })
    }

    /// DeleteResourcePolicy.
    pub async fn delete_resource_policy(&self, caller: &Caller, req: ResourcePolicyRequest) -> Result<ResourcePolicyResponse, KmsError> {
        self.authorize(caller, Operation::DeleteResourcePolicy)?;
        check_policy_name(req.policy_name.as_deref())?;
        let secret = self.find_secret(caller, Operation::DeleteResourcePolicy, req.secret_id.as_deref()).await?;
        let rec = self
            .change_secret(secret, |r| {
                r.policy = None;
                Ok(())
            })
            .await?;
        Ok(ResourcePolicyResponse { arn: rec.arn, name: rec.name, resource_policy: None })
    }

    /// ValidateResourcePolicy: whether PutResourcePolicy would accept the document. Not JSON is
    /// MalformedPolicyDocumentException; a document the policy engine refuses is a failed
    /// validation with the engine's reason; a policy with a wildcard principal passes with a
    /// finding that BlockPublicPolicy would refuse it.
    pub async fn validate_resource_policy(
        &self,
        caller: &Caller,
        req: ValidateResourcePolicyRequest,
    ) -> Result<ValidateResourcePolicyResponse, KmsError> {
        self.authorize(caller, Operation::ValidateResourcePolicy)?;
        let text = required(req.resource_policy, "resourcePolicy")?;
        length(&text, "resourcePolicy", 1, 20_480)?;
        if serde_json::from_str::<serde_json::Value>(&text).is_err() {
            return Err(KmsError::MalformedPolicyDocument("The resource policy is not valid JSON.".into()));
        }
        if req.secret_id.is_some() {
            self.find_secret(caller, Operation::GetResourcePolicy, req.secret_id.as_deref()).await?;
        }
        let mut validation_errors = Vec::new();
        if let Err(e) = Policy::parse(&text) {
            validation_errors.push(PolicyValidationError { check_name: "SYNTAX_CHECKING".into(), error_message: e.to_string() });
        } else if allows_public(&text) {
            validation_errors.push(PolicyValidationError {
                check_name: "PUBLIC_ACCESS_CHECKING".into(),
                error_message: "The policy allows a wildcard principal: PutResourcePolicy with BlockPublicPolicy refuses it.".into(),
            });
        }
        let passed = validation_errors.iter().all(|e| e.check_name != "SYNTAX_CHECKING");
        Ok(ValidateResourcePolicyResponse { policy_validation_passed: passed, validation_errors })
    }

    /// RotateSecret: sets the secret's rotation (executor and schedule) and, unless
    /// RotateImmediately is false, rotates it now through the executor's four steps. Unlike
    /// AWS, which answers at once and rotates in the background, Clavis answers when the steps
    /// have run (a failure of a step is this call's InvalidRequestException).
    pub async fn rotate_secret(&self, caller: &Caller, req: RotateSecretRequest) -> Result<RotateSecretResponse, KmsError> {
        self.authorize(caller, Operation::RotateSecret)?;
        if req.external_secret_rotation_metadata.is_some() || req.external_secret_rotation_role_arn.is_some() {
            return Err(KmsError::InvalidRequest("Managed external secret rotation is not supported by Clavis.".into()));
        }
        let token = client_token(req.client_request_token)?;
        if let Some(a) = &req.rotation_lambda_arn {
            length(a, "rotationLambdaARN", 1, 2048)?;
        }
        let secret = self.find_secret(caller, Operation::RotateSecret, req.secret_id.as_deref()).await?;
        if secret.deletion_date_ms.is_some() {
            return Err(marked_for_deletion());
        }
        let old = rotation_of(&secret).unwrap_or_default();
        let lambda_arn = req.rotation_lambda_arn.clone().or_else(|| (!old.lambda_arn.is_empty()).then(|| old.lambda_arn.clone()));
        let Some(lambda_arn) = lambda_arn else {
            return Err(KmsError::InvalidRequest("No Lambda rotation function ARN is associated with this secret.".into()));
        };
        let rules = req.rotation_rules.clone().unwrap_or(old.rules);
        let schedule = rotation_schedule(&rules)?;
        let name = function_name(&lambda_arn);
        let executor = self.rotation_executor(name).ok_or_else(|| {
            KmsError::InvalidRequest(format!(
                "No rotation executor named '{name}' is registered on this server (clavis serve --rotation-executor NAME=PATH)."
            ))
        })?;
        let now = self.now_ms();
        let config = RotationConfig { lambda_arn, rules, enabled: true, last_rotated_ms: old.last_rotated_ms };
        let text = serde_json::to_string(&config).map_err(|e| KmsError::Internal(e.to_string()))?;
        let rec = self
            .change_secret(secret, |r| {
                r.rotation_json = Some(text.clone());
                r.next_rotation_ms = schedule.as_ref().and_then(|sc| sc.next_after(now));
                Ok(())
            })
            .await?;
        if req.rotate_immediately == Some(false) {
            return Ok(RotateSecretResponse { arn: rec.arn, name: rec.name, version_id: None });
        }
        let version_id = self.rotate_now(&rec, &token, executor.as_ref()).await?;
        Ok(RotateSecretResponse { arn: rec.arn, name: rec.name, version_id: Some(version_id) })
    }

    /// CancelRotateSecret: turns the secret's rotation off (an unfinished rotation's AWSPENDING
    /// version stays, as on AWS; its id is returned).
    pub async fn cancel_rotate_secret(&self, caller: &Caller, req: SecretIdRequest) -> Result<RotateSecretResponse, KmsError> {
        self.authorize(caller, Operation::CancelRotateSecret)?;
        let secret = self.find_secret(caller, Operation::CancelRotateSecret, req.secret_id.as_deref()).await?;
        if secret.deletion_date_ms.is_some() {
            return Err(marked_for_deletion());
        }
        let pending = self
            .secret_store()
            .list_secret_versions(&secret.arn)
            .await?
            .into_iter()
            .find(|v| v.stages.iter().any(|s| s == PENDING) && !v.stages.iter().any(|s| s == CURRENT))
            .map(|v| v.version_id);
        let rec = self
            .change_secret(secret, |r| {
                if let Some(mut config) = rotation_of(r) {
                    config.enabled = false;
                    r.rotation_json = Some(serde_json::to_string(&config).map_err(|e| KmsError::Internal(e.to_string()))?);
                }
                r.next_rotation_ms = None;
                Ok(())
            })
            .await?;
        Ok(RotateSecretResponse { arn: rec.arn, name: rec.name, version_id: pending })
    }

    /// Runs a rotation: the new version (`token`, or the AWSPENDING version of an unfinished
    /// rotation, which is reattempted) is made an AWSPENDING placeholder without a value, as AWS
    /// does before it calls the function; the executor runs the four steps (and puts the value,
    /// and moves AWSCURRENT, through the API); then AWSPENDING is removed and the rotation date
    /// recorded. Returns the version id.
    async fn rotate_now(
        &self,
        secret: &SecretRecord,
        token: &str,
        executor: &dyn crate::executor::RotationExecutor,
    ) -> Result<String, KmsError> {
        let versions = self.secret_store().list_secret_versions(&secret.arn).await?;
        let unfinished = versions
            .iter()
            .find(|v| v.stages.iter().any(|s| s == PENDING) && !v.stages.iter().any(|s| s == CURRENT))
            .map(|v| v.version_id.clone());
        let token = unfinished.unwrap_or_else(|| token.to_owned());
        if !versions.iter().any(|v| v.version_id == token) {
            self.add_pending_placeholder(secret, &token).await?;
        }
        for step in ROTATION_STEPS {
            let rotation_token = uuid::Uuid::new_v4().to_string();
            let event = json!({"Step": step, "SecretId": secret.arn, "ClientRequestToken": token, "RotationToken": rotation_token});
            if let Err(e) = executor.run_step(&event).await {
                tracing::warn!(secret = %secret.arn, step, error = %e, "secret rotation step failed");
                return Err(KmsError::InvalidRequest(format!(
                    "Rotation of {} failed at step {step}: {e}. AWSPENDING stays on version {token}; the next RotateSecret reattempts it.",
                    secret.arn
                )));
            }
        }
        for _ in 0..5 {
            let current = self.secret_store().get_secret(&secret.arn).await?.ok_or_else(not_found)?;
            let versions = self.secret_store().list_secret_versions(&secret.arn).await?;
            let Some(done) = versions.iter().find(|v| v.version_id == token) else { return Err(not_found()) };
            if !done.stages.iter().any(|s| s == CURRENT) {
                return Err(KmsError::InvalidRequest(format!(
                    "The rotation's finishSecret step returned without moving AWSCURRENT to version {token}."
                )));
            }
            let cleaned = SecretVersionRecord {
                stages: done.stages.iter().filter(|s| *s != PENDING).cloned().collect(),
                ..self.full_version(done).await?
            };
            let mut rec = SecretRecord { revision: current.revision + 1, ..current.clone() };
            if let Some(mut config) = rotation_of(&rec) {
                config.last_rotated_ms = Some(self.now_ms());
                rec.rotation_json = Some(serde_json::to_string(&config).map_err(|e| KmsError::Internal(e.to_string()))?);
            }
            match self.write_secret(&rec, current.revision, &[cleaned], &[]).await {
                Ok(()) => {
                    tracing::info!(secret = %secret.arn, version = %token, "secret rotated");
                    return Ok(token);
                }
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => return Err(not_found()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict())
    }

    /// Adds the version a rotation is about to create: AWSPENDING, without a value yet (the
    /// executor's PutSecretValue with this version id gives it one).
    async fn add_pending_placeholder(&self, secret: &SecretRecord, token: &str) -> Result<(), KmsError> {
        let mut secret = secret.clone();
        for _ in 0..5 {
            let versions = self.secret_store().list_secret_versions(&secret.arn).await?;
            if versions.iter().any(|v| v.version_id == token) {
                return Ok(());
            }
            let mut upserts = Vec::new();
            for (id, labels) in move_labels(&versions, token, &[PENDING.to_owned()]) {
                if let Some(v) = versions.iter().find(|v| v.version_id == id) {
                    upserts.push(SecretVersionRecord { stages: labels, ..self.full_version(v).await? });
                }
            }
            upserts.push(SecretVersionRecord {
                secret_arn: secret.arn.clone(),
                version_id: token.to_owned(),
                stages: vec![PENDING.to_owned()],
                created_ms: self.now_ms(),
                last_accessed_ms: None,
                kms_key_arn: String::new(),
                encrypted_data_key: Vec::new(),
                ciphertext: Vec::new(),
                binary: false,
            });
            let rec = SecretRecord { revision: secret.revision + 1, last_changed_ms: self.now_ms(), ..secret.clone() };
            match self.write_secret(&rec, secret.revision, &upserts, &[]).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict) => secret = self.secret_store().get_secret(&secret.arn).await?.ok_or_else(not_found)?,
                Err(StoreError::NotFound) => return Err(not_found()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict())
    }

    /// The scheduler's part of a due rotation: claims it (the next date moves one period on,
    /// compare-and-swap, so one node rotates it once), then runs it.
    ///
    /// Recorded as AWS records it: `RotationStarted` before the claim, durable before any
    /// change; it stands for the scheduler's own changes of this rotation (the claim, the
    /// AWSPENDING placeholder and, at the end, AWSPENDING's removal), while the executor's
    /// changes are API calls with records of their own. Then `RotationSucceeded`, or
    /// `RotationFailed` with the reason. Fails only when the audit log cannot be written (the
    /// pass must stop); a failed rotation is logged and recorded.
    async fn rotate_when_due(&self, s: SecretRecord, now_ms: i64) -> Result<(), KmsError> {
        let Some(config) = rotation_of(&s).filter(|c| c.enabled) else { return Ok(()) };
        let schedule = rotation_schedule(&config.rules).ok().flatten();
        let claimed =
            SecretRecord { next_rotation_ms: schedule.and_then(|sc| sc.next_after(now_ms)), revision: s.revision + 1, ..s.clone() };
        let token = uuid::Uuid::new_v4().to_string();
        let request_id = format!("Rotation-{}-{token}", s.arn);
        let started = ServiceEvent { name: ServiceEventName::RotationStarted, arn: &s.arn, request_id: Some(&request_id) };
        let claim = self.write_secret(&claimed, s.revision, &[], &[]);
        if self.service_change(&started, claim, |e| crate::ops::lifecycle::not_made(&s.arn, e)).await?.is_err() {
            return Ok(());
        }
        let outcome = match self.rotation_executor(function_name(&config.lambda_arn)) {
            Some(executor) => self.rotate_now(&claimed, &token, executor.as_ref()).await.map(|_| ()),
            None => Err(KmsError::InvalidRequest(format!(
                "The rotation executor '{}' is not registered on this node; rotation skipped.",
                function_name(&config.lambda_arn)
            ))),
        };
        let (name, error) = match &outcome {
            Ok(()) => (ServiceEventName::RotationSucceeded, None),
            Err(e) => {
                tracing::warn!(secret = %s.arn, error = %e, "scheduled secret rotation failed");
                (ServiceEventName::RotationFailed, Some(e))
            }
        };
        let ended = ServiceEvent { name, arn: &s.arn, request_id: Some(&request_id) };
        self.record_service_event(&ended, error, None).await?;
        Ok(())
    }

    /// The scheduler's part for secrets: runs every scheduled rotation that is due and destroys
    /// every secret whose recovery window ended (`EndSecretVersionDelete`, recorded before the
    /// secret goes). Runs on the node holding the scheduler lease; a secret changed or
    /// destroyed meanwhile by another node is skipped (compare-and-swap), so each is destroyed
    /// once. Stops with `AuditUnavailable` as soon as a record cannot be written.
    pub(crate) async fn destroy_due_secrets(&self, now_ms: i64) -> Result<usize, KmsError> {
        let mut destroyed = 0;
        for s in self.secret_store().secrets_due(now_ms, 1000).await? {
            if s.deletion_date_ms.is_none() && s.next_rotation_ms.is_some_and(|n| n <= now_ms) {
                self.rotate_when_due(s, now_ms).await?;
                continue;
            }
            if s.deletion_date_ms.is_some_and(|d| d <= now_ms) {
                let event = ServiceEvent { name: ServiceEventName::EndSecretVersionDelete, arn: &s.arn, request_id: None };
                let erase = self.erase_secret(&s.arn, s.revision);
                match self.service_change(&event, erase, |e| crate::ops::lifecycle::not_made(&s.arn, e)).await? {
                    Ok(()) => {
                        destroyed += 1;
                        tracing::info!(secret = %s.arn, "secret destroyed at the end of its recovery window");
                    }
                    Err(StoreError::Conflict | StoreError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(destroyed)
    }
}

/// The steps of a rotation, in order (AWS's names).
const ROTATION_STEPS: [&str; 4] = ["createSecret", "setSecret", "testSecret", "finishSecret"];
const PENDING: &str = "AWSPENDING";

/// A secret's rotation configuration, as kept in its record (JSON).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct RotationConfig {
    lambda_arn: String,
    rules: RotationRules,
    enabled: bool,
    last_rotated_ms: Option<i64>,
}

fn rotation_of(rec: &SecretRecord) -> Option<RotationConfig> {
    rec.rotation_json.as_deref().and_then(|j| serde_json::from_str(j).ok())
}

/// The executor name a `RotationLambdaARN` selects: a Lambda ARN's function name
/// (`arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`), or the value itself.
fn function_name(lambda_arn: &str) -> &str {
    let parts: Vec<&str> = lambda_arn.split(':').collect();
    if parts.len() >= 7 && parts[0] == "arn" && parts[5] == "function" { parts[6] } else { lambda_arn }
}

/// The schedule of rotation rules (`None`: no schedule, rotation only when asked).
fn rotation_schedule(rules: &RotationRules) -> Result<Option<Schedule>, KmsError> {
    if let Some(d) = &rules.duration {
        let hours = d.strip_suffix('h').and_then(|h| h.parse::<i64>().ok());
        if !hours.is_some_and(|h| (1..=24).contains(&h)) {
            return Err(KmsError::InvalidParameter(format!("Duration {d} is not valid: give 1h to 24h.")));
        }
    }
    match (rules.automatically_after_days, rules.schedule_expression.as_deref()) {
        (Some(_), Some(_)) => {
            Err(KmsError::InvalidParameter("You can't specify both AutomaticallyAfterDays and ScheduleExpression.".into()))
        }
        (Some(days), None) if (1..=1000).contains(&days) => Ok(Some(Schedule::Every(days * DAY_MS))),
        (Some(_), None) => Err(KmsError::InvalidParameter("AutomaticallyAfterDays must be between 1 and 1000.".into())),
        (None, Some(expr)) => {
            crate::schedule::parse(expr).map(Some).map_err(|m| KmsError::InvalidParameter(format!("ScheduleExpression is not valid: {m}")))
        }
        (None, None) => Ok(None),
    }
}

/// A policy name, if given: 1–140 characters (Secrets Manager keeps one policy per secret).
fn check_policy_name(name: Option<&str>) -> Result<(), KmsError> {
    name.map_or(Ok(()), |n| length(n, "policyName", 1, 140))
}

/// Whether a policy has an `Allow` statement for a wildcard principal (`"*"` or
/// `{"AWS": "*"}`): broad access, which BlockPublicPolicy refuses. Conservative: conditions do
/// not count as narrowing it.
fn allows_public(text: &str) -> bool {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(text) else { return false };
    let statements = match &doc["Statement"] {
        serde_json::Value::Array(list) => list.clone(),
        other => vec![other.clone()],
    };
    let wildcard = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s == "*",
        serde_json::Value::Array(list) => list.iter().any(|x| x.as_str() == Some("*")),
        _ => false,
    };
    statements.iter().any(|s| {
        s["Effect"] == "Allow"
            && (s.get("NotPrincipal").is_some()
                || match &s["Principal"] {
                    serde_json::Value::String(p) => p == "*",
                    serde_json::Value::Object(m) => m.get("AWS").is_some_and(wildcard),
                    _ => false,
                })
    })
}

/// A uniformly random index below `n` (rejection sampling over 32-bit draws).
fn uniform(n: usize) -> Result<usize, KmsError> {
    let n = u32::try_from(n).map_err(|_| KmsError::Internal("alphabet too large".into()))?;
    let zone = u32::MAX - (u32::MAX % n);
    loop {
        let b = random::bytes(4)?;
        let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if v < zone {
            return Ok(usize::try_from(v % n).unwrap_or(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(id: &str, stages: &[&str], created_ms: i64) -> SecretVersionRecord {
        SecretVersionRecord {
            secret_arn: "arn".into(),
            version_id: id.into(),
            stages: stages.iter().map(|s| (*s).to_owned()).collect(),
            created_ms,
            last_accessed_ms: None,
            kms_key_arn: String::new(),
            encrypted_data_key: Vec::new(),
            ciphertext: Vec::new(),
            binary: false,
        }
    }

    #[test]
    fn moving_awscurrent_moves_awsprevious() {
        let versions = [version("a", &["AWSPREVIOUS"], 1), version("b", &["AWSCURRENT", "custom"], 2)];
        let changes = move_labels(&versions, "c", &["AWSCURRENT".to_owned()]);
        assert_eq!(changes, vec![("a".to_owned(), vec![]), ("b".to_owned(), vec!["custom".to_owned(), "AWSPREVIOUS".to_owned()])]);
        // A custom label moves alone.
        let changes = move_labels(&versions, "c", &["custom".to_owned()]);
        assert_eq!(changes, vec![("b".to_owned(), vec!["AWSCURRENT".to_owned()])]);
    }

    #[test]
    fn pruning_keeps_labelled_and_young_versions() {
        let day = DAY_MS;
        let mut versions: Vec<SecretVersionRecord> = (0..105).map(|i| version(&format!("v{i:03}"), &[], i)).collect();
        versions[0].stages = vec!["AWSCURRENT".into()];
        versions.push(version("young", &[], 10 * day));
        // 106 versions: 6 over; the labelled one and the young one are never pruned.
        let gone = prune(&versions, 10 * day + 1);
        assert_eq!(gone.len(), 6);
        assert!(!gone.contains(&"v000".to_owned()) && !gone.contains(&"young".to_owned()));
        assert_eq!(gone[0], "v001");
    }

    #[test]
    fn filters_match_prefixes_and_negations() {
        let rec = SecretRecord {
            arn: "arn".into(),
            account_id: "1".into(),
            region: "us-east-1".into(),
            name: "prod/db/password".into(),
            description: Some("database".into()),
            kms_key_id: None,
            created_ms: 0,
            last_changed_ms: 0,
            last_accessed_ms: None,
            deletion_date_ms: None,
            tags_json: r#"[{"Key":"team","Value":"payments"}]"#.into(),
            policy: None,
            rotation_json: None,
            next_rotation_ms: None,
            revision: 1,
        };
        let f = |key: &str, values: &[&str]| {
            parse_filters(&[SmFilter { key: Some(key.into()), values: Some(values.iter().map(|v| (*v).to_owned()).collect()) }])
                .unwrap_or_default()
        };
        assert!(filters_match(&f("name", &["prod/"]), &rec));
        assert!(!filters_match(&f("name", &["db"]), &rec));
        assert!(filters_match(&f("name", &["!dev/"]), &rec));
        assert!(!filters_match(&f("name", &["!prod"]), &rec));
        assert!(filters_match(&f("tag-key", &["te"]), &rec));
        assert!(filters_match(&f("tag-value", &["pay"]), &rec));
        assert!(filters_match(&f("all", &["data"]), &rec));
        assert!(filters_match(&f("description", &["x", "data"]), &rec));
    }
}
