//! Bring your own key: GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial,
//! and the expiry of imported material.
//!
//! A key created with Origin EXTERNAL has no material (PendingImport). The import parameters
//! are an RSA wrapping key pair (private half sealed like any key material) and a single-use
//! token, valid 24 hours, bound to the key, the wrapping algorithm and that key pair. The first
//! material imported fixes the key: a one-way fingerprint is kept, so that after a deletion or
//! expiry only the same material imports again, and then every old ciphertext decrypts again.
//!
//! Import parameters are bounded work and bounded state. RSA wrapping keys (up to 4096 bits,
//! hundreds of milliseconds of a core each, sometimes seconds) are generated on the blocking
//! pool, at most `generation_permits()` at a time in the process, never on the async workers
//! that serve every other request. A key has at most [`MAX_OUTSTANDING_IMPORT_TOKENS`] unused,
//! unexpired tokens. A token's parameters are deleted when ImportKeyMaterial consumes it, and
//! expired ones a day after their expiry (until then ImportKeyMaterial can still say the token
//! expired rather than that it is unknown): on GetParametersForImport for that key and in the
//! scheduler's due work. Master-key rotation skips expired ones.

use crate::api::*;
use crate::kernel::key::{EXPIRED_PARAMS_KEPT_MS, Material, import_params_seal_context, material_seal_context};
use crate::kernel::{Access, Key, key_not_found};
use crate::types::{KeySpec, KeyState, secs};
use crate::{Caller, Kms, KmsError, validate};
use clavis_crypto::import::{ImportWrapping, generate_wrapping_key, material_fingerprint, unwrap_import, verify_nonce};
use clavis_store::{ImportParamsRecord, KeyMaterialRecord, KeyRecord, StoreError};

const PARAMS_VALID_MS: i64 = 24 * 3_600_000;
/// The most import tokens a key may have unused and unexpired at once. AWS documents no such
/// quota; without one, every call leaves a sealed RSA private key in storage for a day (and in
/// every master-key reseal), and a client can ask for them as fast as the CPU makes them.
/// Ten covers retries and one token per wrapping algorithm with room to spare.
pub(crate) const MAX_OUTSTANDING_IMPORT_TOKENS: usize = 10;
/// Rotation type of imported material waiting for RotateKeyOnDemand.
pub(crate) const PENDING_ROTATION: &str = "PENDING_ROTATION";
/// The longest ValidTo AWS accepts: 365 days ahead.
const MAX_VALID_TO_MS: i64 = 365 * 86_400_000;

fn import_key_context(key: &Key, token_id: &str) -> Vec<u8> {
    import_params_seal_context(&key.id, token_id)
}

/// Imported material must be what the key's spec holds: 32 bytes for SYMMETRIC_DEFAULT, AWS's
/// length range for an HMAC key, a PKCS#8 private key of the spec (curve, modulus size) for a
/// key pair.
fn check_imported_material(key: &Key, material: &clavis_crypto::SecretBytes) -> Result<(), KmsError> {
    let len = material.len();
    let (min, max) = match key.spec {
        KeySpec::SymmetricDefault => (32, 32),
        KeySpec::Hmac224 => (28, 64),
        KeySpec::Hmac256 => (32, 64),
        KeySpec::Hmac384 => (48, 128),
        KeySpec::Hmac512 => (64, 128),
        spec => {
            return match Material::from_bytes(spec, material) {
                Ok(Material::Pair(_)) => Ok(()),
                _ => Err(KmsError::IncorrectKeyMaterial(format!(
                    "The key material is not a DER-encoded PKCS#8 private key of key spec {}.",
                    spec.as_str()
                ))),
            };
        }
    };
    if len < min || len > max {
        return Err(KmsError::IncorrectKeyMaterial(if min == max {
            format!("Key material for a {} key must be {} bits ({min} bytes), not {len} bytes.", key.spec.as_str(), min * 8)
        } else {
            format!("Key material for a {} key must be {min} to {max} bytes, not {len} bytes.", key.spec.as_str())
        }));
    }
    Ok(())
}

fn too_many_tokens(key: &Key) -> KmsError {
    KmsError::LimitExceeded(format!(
        "{} already has {MAX_OUTSTANDING_IMPORT_TOKENS} unused import tokens that have not expired (the most a key may have); \
         use one with ImportKeyMaterial or wait for one to expire.",
        key.arn
    ))
}

fn invalid_token() -> KmsError {
    KmsError::InvalidImportToken("The import token is invalid: it was not issued for this key, or it has already been used.".into())
}

impl Kms {
    fn require_external(key: &Key) -> Result<(), KmsError> {
        if key.origin != crate::types::Origin::External {
            return Err(KmsError::UnsupportedOperation(format!("{} origin is {}, not EXTERNAL.", key.arn, key.rec.origin)));
        }
        Ok(())
    }

    /// GetParametersForImport.
    pub async fn get_parameters_for_import(
        &self,
        caller: &Caller,
        req: GetParametersForImportRequest,
    ) -> Result<GetParametersForImportResponse, KmsError> {
        self.authorize(caller, crate::Operation::GetParametersForImport)?;
        let alg = validate::required(req.wrapping_algorithm, "wrappingAlgorithm")?;
        validate::one_of(
            &alg,
            "wrappingAlgorithm",
            &["RSAES_PKCS1_V1_5", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256", "SM2PKE"],
        )?;
        let spec = validate::required(req.wrapping_key_spec, "wrappingKeySpec")?;
        let bits = match validate::one_of(&spec, "wrappingKeySpec", &["RSA_2048", "RSA_3072", "RSA_4096", "SM2"])? {
            "RSA_2048" => 2048,
            "RSA_3072" => 3072,
            "RSA_4096" => 4096,
            _ => return Err(KmsError::UnsupportedOperation("SM2 wrapping keys are only available in China Regions.".into())),
        };
        if ImportWrapping::parse(&alg).is_none() {
            return Err(KmsError::UnsupportedOperation(format!(
                "Wrapping algorithm {alg} is not supported; use RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256."
            )));
        }
        let conditions = [crate::kernel::param("kms:WrappingAlgorithm", &alg), crate::kernel::param("kms:WrappingKeySpec", &spec)];
        let access = Access::to("GetParametersForImport").with_params(&conditions);
        let key = self.key_for_no_alias(caller, access, req.key_id.as_deref(), "keyId").await?;
        Self::require_external(&key)?;
        if key.state == KeyState::PendingDeletion {
            return Err(key.invalid_state(key.state));
        }
        if key.spec.is_asymmetric() && alg.starts_with("RSAES_OAEP") {
            // A PKCS#8 private key is longer than RSA-OAEP can carry (AWS's table of wrapping
            // algorithms: asymmetric private keys take the RSA_AES_KEY_WRAP algorithms).
            return Err(KmsError::Validation(format!(
                "WrappingAlgorithm {alg} cannot wrap the private key of a {} key; use RSA_AES_KEY_WRAP_SHA_256 or RSA_AES_KEY_WRAP_SHA_1.",
                key.spec.as_str()
            )));
        }
        let now = self.now_ms();
        // Checked before the expensive generation, so a client at the cap costs a count, not an
        // RSA key; checked again atomically with the insert, for concurrent requests.
        self.imports().purge_import_params(Some(&key.rec.key_id), now.saturating_sub(EXPIRED_PARAMS_KEPT_MS)).await?;
        if self.imports().count_import_params(&key.rec.key_id, now).await? >= MAX_OUTSTANDING_IMPORT_TOKENS {
            return Err(too_many_tokens(&key));
        }
        let (private, public) = super::generate_off_runtime(move || generate_wrapping_key(bits)).await?;
        let token = clavis_crypto::random::bytes(32)?;
        let token_id = hex::encode(&token);
        let nonce = clavis_crypto::random::bytes(16)?;
        let params = ImportParamsRecord {
            token_id: token_id.clone(),
            key_id: key.rec.key_id.clone(),
            wrapping_algorithm: alg,
            wrapping_key_spec: spec,
            sealed_private_key: self.root().seal(&import_key_context(&key, &token_id), &private)?,
            nonce: nonce.clone(),
            expires_ms: now + PARAMS_VALID_MS,
            used: false,
        };
        match self.imports().put_import_params(&params, now, MAX_OUTSTANDING_IMPORT_TOKENS).await {
            Ok(()) => {}
            Err(StoreError::LimitExceeded) => return Err(too_many_tokens(&key)),
            Err(e) => return Err(e.into()),
        }
        Ok(GetParametersForImportResponse {
            key_id: key.arn.clone(),
            import_token: Blob(token),
            public_key: Blob(public),
            parameters_valid_to: secs(params.expires_ms),
            nonce: Blob(nonce),
        })
    }

    /// ImportKeyMaterial.
    pub async fn import_key_material(&self, caller: &Caller, req: ImportKeyMaterialRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, crate::Operation::ImportKeyMaterial)?;
        let token = validate::required(req.import_token, "importToken")?;
        let wrapped = validate::required(req.encrypted_key_material, "encryptedKeyMaterial")?;
        validate::blob_len(token.0.len(), "importToken", 1, 6144)?;
        validate::blob_len(wrapped.0.len(), "encryptedKeyMaterial", 1, 6144)?;
        let model = req.expiration_model.unwrap_or_else(|| "KEY_MATERIAL_DOES_NOT_EXPIRE".into());
        validate::one_of(&model, "expirationModel", &["KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE"])?;
        let now = self.now_ms();
        let valid_to_ms = match (model.as_str(), req.valid_to) {
            ("KEY_MATERIAL_EXPIRES", Some(t)) => {
                let ms = (t * 1000.0) as i64;
                if ms <= now || ms > now + MAX_VALID_TO_MS {
                    return Err(KmsError::Validation("ValidTo must be in the future and at most 365 days from now.".into()));
                }
                Some(ms)
            }
            ("KEY_MATERIAL_EXPIRES", None) => {
                return Err(KmsError::Validation("A ValidTo date is required when ExpirationModel is KEY_MATERIAL_EXPIRES.".into()));
            }
            (_, Some(_)) => {
                return Err(KmsError::Validation("ValidTo must not be set when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE.".into()));
            }
            (_, None) => None,
        };
        let import_type = req.import_type.as_deref().unwrap_or("EXISTING_KEY_MATERIAL");
        validate::one_of(import_type, "importType", &["EXISTING_KEY_MATERIAL", "NEW_KEY_MATERIAL"])?;
        let new_material = import_type == "NEW_KEY_MATERIAL";
        // kms:ValidTo is the ValidTo timestamp in seconds since 1970, present only with it.
        let mut conditions = vec![crate::kernel::param("kms:ExpirationModel", &model)];
        conditions.extend(valid_to_ms.map(|ms| crate::kernel::param("kms:ValidTo", ms / 1000)));
        let access = Access::to("ImportKeyMaterial").with_params(&conditions);
        let key = self.key_for_no_alias(caller, access, req.key_id.as_deref(), "keyId").await?;
        Self::require_external(&key)?;
        if new_material {
            if !matches!(key.state, KeyState::Enabled | KeyState::Disabled) {
                return Err(KmsError::InvalidState(format!(
                    "{} is {}; new key material for rotation can be imported only into a key that has key material.",
                    key.arn,
                    key.state.as_str()
                )));
            }
        } else if key.state != KeyState::PendingImport {
            return Err(KmsError::InvalidState(format!(
                "{} is {}; import key material into a key that is pending import.",
                key.arn,
                key.state.as_str()
            )));
        }
        let token_id = hex::encode(&token.0);
        let params = self.imports().get_import_params(&token_id).await?.ok_or_else(invalid_token)?;
        if params.key_id != key.rec.key_id || params.used {
            return Err(invalid_token());
        }
        if params.expires_ms <= now {
            return Err(KmsError::ExpiredImportToken("The import token has expired; call GetParametersForImport again.".into()));
        }
        let wrapping = ImportWrapping::parse(&params.wrapping_algorithm).ok_or_else(invalid_token)?;
        let private = self.root().unseal(&import_key_context(&key, &token_id), &params.sealed_private_key)?;
        let material = unwrap_import(&private, wrapping, &wrapped.0).map_err(|_| {
            KmsError::InvalidCiphertext(format!(
                "The encrypted key material could not be unwrapped with the wrapping key of this import token ({}).",
                params.wrapping_algorithm
            ))
        })?;
        check_imported_material(&key, &material)?;
        if key.spec != KeySpec::SymmetricDefault && (req.encrypted_nonce.is_some() || req.nonce_iv.is_some()) {
            return Err(KmsError::Validation("The import nonce proof (ClavisEncryptedNonce) is for SYMMETRIC_DEFAULT keys only.".into()));
        }
        match (&req.encrypted_nonce, &req.nonce_iv) {
            (Some(enc), Some(iv)) if !verify_nonce(&material, &iv.0, &enc.0, &params.nonce) => {
                return Err(KmsError::IncorrectKeyMaterial(
                    "ClavisEncryptedNonce does not decrypt to the import nonce under the uploaded key material.".into(),
                ));
            }
            // Half a proof is no proof: refused rather than skipped.
            (Some(_), None) | (None, Some(_)) => {
                return Err(KmsError::Validation(
                    "ClavisEncryptedNonce and ClavisNonceIv go together: give both (the import nonce proof) or neither.".into(),
                ));
            }
            _ => {}
        }
        let fingerprint = hex::encode(material_fingerprint(&material, key.id.as_bytes()));
        if new_material && key.spec != KeySpec::SymmetricDefault {
            return Err(KmsError::UnsupportedOperation(format!(
                "ImportType NEW_KEY_MATERIAL (on-demand rotation of imported material) is for SYMMETRIC_DEFAULT keys only, not {}.",
                key.spec.as_str()
            )));
        }
        if new_material {
            return self.stage_new_material(&key, &material, &fingerprint, &token_id, now).await;
        }
        if key.rec.import_fingerprint.as_deref().is_some_and(|f| f != fingerprint) {
            return Err(KmsError::IncorrectKeyMaterial(format!(
                "The key material is different from the material previously imported into {}.",
                key.arn
            )));
        }
        let mut rec: KeyRecord = (*key.rec).clone();
        rec.key_state = KeyState::Enabled.as_str().to_owned();
        rec.current_version = 1;
        rec.valid_to_ms = valid_to_ms;
        rec.expiration_model = Some(model);
        rec.import_fingerprint = Some(fingerprint);
        let sealed = self.root().seal(&material_seal_context(&key.id, 1), &material)?;
        let mat = KeyMaterialRecord { key_id: rec.key_id.clone(), version: 1, sealed, created_ms: now, rotation_type: None };
        let plain = Material::from_bytes(key.spec, &material)?;
        match self.import_material(&key, rec, &mat, &token_id, plain).await {
            Ok(_) => {}
            Err(StoreError::Conflict) => return Err(invalid_token()),
            Err(StoreError::NotFound) => return Err(key_not_found(&key.rec.region, &key.rec.account_id, &key.rec.key_id)),
            Err(e) => return Err(e.into()),
        }
        Ok(Empty {})
    }

    /// ImportType NEW_KEY_MATERIAL: stores the material as the next version, pending rotation;
    /// RotateKeyOnDemand makes it current.
    async fn stage_new_material(
        &self,
        key: &Key,
        material: &clavis_crypto::SecretBytes,
        fingerprint: &str,
        token_id: &str,
        now: i64,
    ) -> Result<Empty, KmsError> {
        if key.rec.import_fingerprint.as_deref() == Some(fingerprint) {
            return Err(KmsError::IncorrectKeyMaterial(
                "New key material for rotation must differ from the key's original material.".into(),
            ));
        }
        let materials = self.material_records(key).await?;
        if materials.iter().any(|m| m.rotation_type.as_deref() == Some(PENDING_ROTATION)) {
            return Err(KmsError::InvalidState(format!("{} already has key material pending rotation; rotate or wait.", key.arn)));
        }
        let version = key.rec.current_version + 1;
        let sealed = self.root().seal(&material_seal_context(&key.id, version), material)?;
        let mat = KeyMaterialRecord {
            key_id: key.rec.key_id.clone(),
            version,
            sealed,
            created_ms: now,
            rotation_type: Some(PENDING_ROTATION.into()),
        };
        let rec: KeyRecord = (*key.rec).clone();
        match self.stage_material(key, rec, &mat, token_id).await {
            Ok(_) => {}
            Err(StoreError::Conflict) => return Err(invalid_token()),
            Err(StoreError::AlreadyExists) => {
                return Err(KmsError::InvalidState(format!("{} already has key material pending rotation.", key.arn)));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Empty {})
    }

    /// RotateKeyOnDemand for an imported key: the staged material becomes current.
    pub(crate) async fn rotate_imported(&self, key: &Key) -> Result<Key, KmsError> {
        let version = key.rec.current_version + 1;
        let staged = self.material_record(key, version).await?;
        if staged.is_none_or(|m| m.rotation_type.as_deref() != Some(PENDING_ROTATION)) {
            return Err(KmsError::InvalidState(format!(
                "{} has no key material pending rotation: import it first with ImportKeyMaterial and ImportType NEW_KEY_MATERIAL.",
                key.arn
            )));
        }
        let mut rec: KeyRecord = (*key.rec).clone();
        rec.current_version = version;
        match self.promote_material(key, rec, version, "ON_DEMAND").await {
            Ok(updated) => Ok(updated),
            Err(StoreError::Conflict) => Err(KmsError::Unavailable("the key changed concurrently; retry".into())),
            Err(e) => Err(e.into()),
        }
    }

    /// DeleteImportedKeyMaterial: the material is erased and the key returns to PendingImport.
    pub async fn delete_imported_key_material(&self, caller: &Caller, req: KeyIdRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, crate::Operation::DeleteImportedKeyMaterial)?;
        let key = self.key_for_no_alias(caller, Access::to("DeleteImportedKeyMaterial"), req.key_id.as_deref(), "keyId").await?;
        Self::require_external(&key)?;
        self.remove_imported_material(&key, "deleted").await?;
        Ok(Empty {})
    }

    /// Erases a key's imported material (deletion or expiry).
    pub(crate) async fn remove_imported_material(&self, key: &Key, why: &str) -> Result<(), KmsError> {
        if !matches!(key.state, KeyState::Enabled | KeyState::Disabled | KeyState::PendingImport) {
            return Err(key.invalid_state(key.state));
        }
        let mut rec: KeyRecord = (*key.rec).clone();
        rec.key_state = KeyState::PendingImport.as_str().to_owned();
        rec.valid_to_ms = None;
        match self.delete_material(key, rec).await {
            Ok(_) => {}
            Err(StoreError::Conflict) => return Err(KmsError::Unavailable("the key changed concurrently; retry".into())),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(key = %key.arn, why, "imported key material erased");
        Ok(())
    }
}
