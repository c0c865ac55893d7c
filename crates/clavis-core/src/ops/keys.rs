//! Key management: CreateKey, DescribeKey, ListKeys, UpdateKeyDescription, EnableKey,
//! DisableKey, and the KeyMetadata shape every key operation answers with.

use crate::api::*;
use crate::kernel::key::{Material, mac_params, material_seal_context, pair_spec};
use crate::kernel::{Access, Key, LockoutKey};
use crate::operation::Operation;
use crate::paging::{self, Page};
use crate::policy::Policy;
use crate::types::{AccountId, KeyId, KeySpec, KeyState, KeyUsage, Origin, SYMMETRIC_DEFAULT, key_arn, secs};
use crate::{Caller, Kms, KmsError, validate};
use clavis_crypto::{SecretBytes, random};
use clavis_store::{KeyMaterialRecord, KeyRecord};

/// New key material of a spec: 32 random bytes for SYMMETRIC_DEFAULT, the spec's key length
/// for HMAC, a generated key pair (PKCS#8) otherwise, made on the blocking pool (RSA-4096 takes
/// a core for up to seconds).
async fn new_material(spec: KeySpec) -> Result<SecretBytes, KmsError> {
    if let Some((_, len)) = mac_params(spec) {
        return Ok(random::secret(len)?);
    }
    match pair_spec(spec) {
        Some(kind) => super::generate_pair(kind).await,
        None => Ok(random::secret(clavis_crypto::aead::KEY_LEN)?),
    }
}

/// A new key's record: Enabled with material version 1, or (Origin EXTERNAL) PendingImport
/// without material. `kind` is (key spec, key usage, origin).
fn new_key_record(
    id: &KeyId,
    account: &str,
    region: &str,
    kind: (&str, &str, &str),
    policy: String,
    description: String,
    now: i64,
) -> KeyRecord {
    let (spec, usage, origin) = kind;
    let external = Origin::parse(origin) == Some(Origin::External);
    KeyRecord {
        key_id: id.to_string(),
        account_id: account.to_owned(),
        region: region.to_owned(),
        description,
        key_usage: usage.to_owned(),
        key_spec: spec.to_owned(),
        origin: origin.to_owned(),
        key_state: if external { KeyState::PendingImport } else { KeyState::Enabled }.as_str().to_owned(),
        creation_date_ms: now,
        deletion_date_ms: None,
        policy,
        current_version: if external { 0 } else { 1 },
        rotation_period_days: None,
        next_rotation_ms: None,
        dual_auth: false,
        deletion_request: None,
        valid_to_ms: None,
        expiration_model: None,
        import_fingerprint: None,
        revision: 1,
    }
}

impl Kms {
    pub(crate) fn metadata(key: &Key) -> KeyMetadata {
        let r = &key.rec;
        let algorithms = key.spec.algorithms(key.usage);
        let list = |l: &'static [&'static str]| (!l.is_empty()).then(|| l.iter().map(|a| (*a).to_owned()).collect());
        KeyMetadata {
            aws_account_id: r.account_id.clone(),
            key_id: r.key_id.clone(),
            arn: key.arn.clone(),
            creation_date: secs(r.creation_date_ms),
            enabled: key.state == KeyState::Enabled,
            description: r.description.clone(),
            key_usage: r.key_usage.clone(),
            key_state: r.key_state.clone(),
            deletion_date: r.deletion_date_ms.map(secs),
            origin: r.origin.clone(),
            key_manager: "CUSTOMER".to_owned(),
            customer_master_key_spec: r.key_spec.clone(),
            key_spec: r.key_spec.clone(),
            encryption_algorithms: list(algorithms.encryption),
            signing_algorithms: list(algorithms.signing),
            mac_algorithms: list(algorithms.mac),
            key_agreement_algorithms: list(algorithms.key_agreement),
            encapsulation_algorithms: list(algorithms.encapsulation),
            multi_region: false,
            dual_authorization: r.dual_auth.then_some(true),
            valid_to: r.valid_to_ms.map(secs),
            expiration_model: r.expiration_model.clone(),
        }
    }

    fn default_policy(account: &AccountId) -> String {
        Policy::default_document(account.as_str())
    }

    // ----- key management -----

    /// CreateKey.
    pub async fn create_key(&self, caller: &Caller, req: CreateKeyRequest) -> Result<KeyMetadataResponse, KmsError> {
        self.authorize(caller, Operation::CreateKey)?;
        let description = req.description.unwrap_or_default();
        validate::str_len(&description, "description", 0, 8192)?;
        if req.key_spec.is_some() && req.customer_master_key_spec.is_some() {
            return Err(KmsError::Validation(
                "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec is deprecated.".into(),
            ));
        }
        let (spec_field, spec) = match (&req.key_spec, &req.customer_master_key_spec) {
            (Some(s), _) => ("keySpec", s.as_str()),
            (None, Some(s)) => ("customerMasterKeySpec", s.as_str()),
            (None, None) => ("keySpec", SYMMETRIC_DEFAULT),
        };
        validate::one_of(spec, spec_field, &KeySpec::names())?;
        let usage = req.key_usage.as_deref().unwrap_or(KeyUsage::EncryptDecrypt.as_str());
        validate::one_of(usage, "keyUsage", &KeyUsage::names())?;
        let origin = req.origin.as_deref().unwrap_or(Origin::AwsKms.as_str());
        validate::one_of(origin, "origin", &Origin::names())?;
        let key_spec = KeySpec::parse(spec).unwrap_or(KeySpec::SymmetricDefault);
        if key_spec == KeySpec::Sm2 {
            return Err(KmsError::UnsupportedOperation("KeySpec SM2 is supported only in the AWS China Regions.".into()));
        }
        if !KeyUsage::parse(usage).is_some_and(|u| key_spec.usages().contains(&u)) {
            return Err(KmsError::Validation(format!("KeyUsage {usage} is not compatible with KeySpec {spec}.")));
        }
        if !matches!(Origin::parse(origin), Some(Origin::AwsKms | Origin::External)) {
            return Err(KmsError::UnsupportedOperation(format!("Origin {origin} is not supported by Clavis; use AWS_KMS or EXTERNAL.")));
        }
        if Origin::parse(origin) == Some(Origin::External)
            && matches!(
                key_spec,
                KeySpec::MlDsa44 | KeySpec::MlDsa65 | KeySpec::MlDsa87 | KeySpec::MlKem512 | KeySpec::MlKem768 | KeySpec::MlKem1024
            )
        {
            return Err(KmsError::UnsupportedOperation(format!(
                "Origin EXTERNAL (imported key material) is not supported by Clavis for {spec} keys."
            )));
        }
        if req.custom_key_store_id.is_some() || req.xks_key_id.is_some() {
            return Err(KmsError::UnsupportedOperation("Custom key stores are not supported by Clavis.".into()));
        }
        if req.multi_region == Some(true) {
            return Err(KmsError::UnsupportedOperation("Multi-Region keys are not supported by Clavis.".into()));
        }
        let tags = validate::tags(req.tags.as_deref().unwrap_or_default())?;
        let id = KeyId::generate();
        let policy = match req.policy {
            Some(p) => {
                validate::str_len(&p, "policy", 1, crate::policy::MAX_POLICY_BYTES)?;
                let parsed = Policy::parse(&p)?;
                let arn = key_arn(caller.region.as_str(), caller.account.as_str(), &id.to_string());
                let tag_pairs: Vec<(String, String)> = tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect();
                let facts = crate::policy::KeyFacts { key_spec: spec, key_usage: usage, origin };
                let key = LockoutKey { arn: &arn, facts, tags: &tag_pairs, aliases: &[] };
                self.lockout_check(caller, &parsed, key, req.bypass_policy_lockout_safety_check)?;
                p
            }
            None => Self::default_policy(&caller.account),
        };

        let now = self.now_ms();
        let external = Origin::parse(origin) == Some(Origin::External);
        let rec = new_key_record(&id, caller.account.as_str(), caller.region.as_str(), (spec, usage, origin), policy, description, now);
        caller.resources.add(&key_arn(&rec.region, &rec.account_id, &rec.key_id));
        if external {
            // No material until ImportKeyMaterial.
            let key = self.insert_key(rec, None, &tags).await?;
            return Ok(KeyMetadataResponse { key_metadata: Self::metadata(&key) });
        }
        let key = self.store_new_key(rec, key_spec, &tags).await?;
        Ok(KeyMetadataResponse { key_metadata: Self::metadata(&key) })
    }

    /// A symmetric key the service makes for itself in an account (the Secrets Manager default
    /// key behind `alias/aws/secretsmanager`), with the default key policy.
    pub(crate) async fn create_service_key(&self, account: &AccountId, region: &str, description: &str) -> Result<Key, KmsError> {
        let id = KeyId::generate();
        let (spec, usage, origin) = (KeySpec::SymmetricDefault, KeyUsage::EncryptDecrypt, Origin::AwsKms);
        let names = (spec.as_str(), usage.as_str(), origin.as_str());
        let rec =
            new_key_record(&id, account.as_str(), region, names, Self::default_policy(account), description.to_owned(), self.now_ms());
        self.store_new_key(rec, spec, &[]).await
    }

    /// Generates a new key's first material, seals it and stores the key with it; the material
    /// goes into the cache too, so the first use need not unseal.
    async fn store_new_key(&self, rec: KeyRecord, spec: KeySpec, tags: &[clavis_store::Tag]) -> Result<Key, KmsError> {
        let id = KeyId::parse(&rec.key_id).ok_or_else(|| KmsError::Internal("a new key id is not a UUID".into()))?;
        let material = new_material(spec).await?;
        let sealed = self.root().seal(&material_seal_context(&id, 1), &material)?;
        let mat =
            KeyMaterialRecord { key_id: rec.key_id.clone(), version: 1, sealed, created_ms: rec.creation_date_ms, rotation_type: None };
        self.insert_key(rec, Some((mat, Material::from_bytes(spec, &material)?)), tags).await
    }

    /// Refuses to manage a key the service made for itself (the target of an `alias/aws/...`
    /// alias, such as the Secrets Manager default key): like an AWS managed key, it cannot be
    /// disabled, scheduled for deletion or given another policy, since every secret of the
    /// account that uses the default key depends on it.
    pub(crate) async fn refuse_service_key(&self, key: &Key, what: &str) -> Result<(), KmsError> {
        let aliases = self.aliases().list_aliases(&key.rec.account_id, &key.rec.region, Some(&key.rec.key_id), None, 100).await?;
        match aliases.iter().find(|a| a.alias_name.starts_with("alias/aws/")) {
            Some(a) => {
                Err(KmsError::UnsupportedOperation(format!("{} is an AWS managed key ({}); it cannot be {what}.", key.arn, a.alias_name)))
            }
            None => Ok(()),
        }
    }

    /// DescribeKey.
    pub async fn describe_key(&self, caller: &Caller, req: DescribeKeyRequest) -> Result<KeyMetadataResponse, KmsError> {
        self.authorize(caller, Operation::DescribeKey)?;
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        let key = self.key_for(caller, Access::to("DescribeKey"), req.key_id.as_deref(), "keyId").await?;
        Ok(KeyMetadataResponse { key_metadata: Self::metadata(&key) })
    }

    /// ListKeys.
    pub async fn list_keys(&self, caller: &Caller, req: ListKeysRequest) -> Result<ListKeysResponse, KmsError> {
        self.authorize(caller, Operation::ListKeys)?;
        let limit = validate::limit(req.limit, 100, 1000)?;
        let marker = validate::marker(req.marker.as_deref())?;
        if marker.is_some_and(|m| KeyId::parse(m).is_none()) {
            return Err(KmsError::InvalidMarker);
        }
        let ids = self.key_ids(caller.account.as_str(), caller.region.as_str(), marker, paging::fetch_len(limit)).await?;
        let Page { items, next_marker, truncated } = Page::cut(ids, limit, |(_, id)| id.clone());
        let keys = items.into_iter().map(|(key_arn, key_id)| KeyListEntry { key_arn, key_id }).collect();
        Ok(ListKeysResponse { keys, next_marker, truncated })
    }

    /// UpdateKeyDescription.
    pub async fn update_key_description(&self, caller: &Caller, req: UpdateKeyDescriptionRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::UpdateKeyDescription)?;
        let description = validate::required(req.description, "description")?;
        validate::str_len(&description, "description", 0, 8192)?;
        let key = self.key_for_no_alias(caller, Access::to("UpdateKeyDescription"), req.key_id.as_deref(), "keyId").await?;
        self.update_key(key, |k| {
            if k.state == KeyState::PendingDeletion {
                return Err(k.invalid_state(k.state));
            }
            Ok(Some(KeyRecord { description: description.clone(), ..(*k.rec).clone() }))
        })
        .await?;
        Ok(Empty {})
    }

    /// EnableKey (Disabled -> Enabled; a no-op when Enabled).
    pub async fn enable_key(&self, caller: &Caller, req: KeyIdRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::EnableKey)?;
        self.set_enabled(caller, req, true).await
    }

    /// DisableKey (Enabled -> Disabled; a no-op when Disabled).
    pub async fn disable_key(&self, caller: &Caller, req: KeyIdRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::DisableKey)?;
        self.set_enabled(caller, req, false).await
    }

    async fn set_enabled(&self, caller: &Caller, req: KeyIdRequest, enable: bool) -> Result<Empty, KmsError> {
        let access = Access::to(if enable { "EnableKey" } else { "DisableKey" });
        let key = self.key_for_no_alias(caller, access, req.key_id.as_deref(), "keyId").await?;
        if !enable {
            self.refuse_service_key(&key, "disabled").await?;
        }
        let target = if enable { KeyState::Enabled } else { KeyState::Disabled };
        self.update_key(key, |k| match k.state {
            s if s == target => Ok(None),
            KeyState::Enabled | KeyState::Disabled => Ok(Some(KeyRecord { key_state: target.as_str().to_owned(), ..(*k.rec).clone() })),
            other => Err(k.invalid_state(other)),
        })
        .await?;
        Ok(Empty {})
    }
}
