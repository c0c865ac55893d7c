//! The cryptographic operations of symmetric keys: Encrypt, Decrypt (with Clavis's re-wrap on
//! unwrap), ReEncrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext, GenerateRandom.

use crate::api::*;
use crate::ciphertext::{self, Header};
use crate::kernel::{Access, Key, param};
use crate::operation::Operation;
use crate::types::{EncryptionContext, KeyRef, KeyUsage, SYMMETRIC_DEFAULT};
use crate::{Caller, Kms, KmsError, validate};
use clavis_crypto::asymmetric::Oaep;
use clavis_crypto::{SecretBytes, random};

/// The most plaintext Encrypt accepts (AWS limit).
pub const MAX_PLAINTEXT: usize = 4096;
/// The most ciphertext Decrypt accepts (AWS limit).
pub const MAX_CIPHERTEXT: usize = 6144;
/// `Recipient` (Nitro Enclaves attestation) is an AWS feature Clavis does not offer.
pub(crate) fn refuse_recipient(recipient: Option<&serde_json::Value>) -> Result<(), KmsError> {
    match recipient {
        Some(_) => Err(KmsError::UnsupportedOperation("Recipient (Nitro Enclaves attestation) is not supported by Clavis.".into())),
        None => Ok(()),
    }
}
/// Every `EncryptionAlgorithmSpec` (botocore's model).
const ENCRYPTION_ALGORITHMS: &[&str] = &[SYMMETRIC_DEFAULT, "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE"];

/// The request's `EncryptionAlgorithm` (default `SYMMETRIC_DEFAULT`), one of AWS's names.
fn encryption_algorithm(v: Option<&str>) -> Result<&str, KmsError> {
    algorithm_member(v, "encryptionAlgorithm")
}

/// An encryption algorithm member (default `SYMMETRIC_DEFAULT`), one of AWS's names.
fn algorithm_member<'a>(v: Option<&'a str>, field: &str) -> Result<&'a str, KmsError> {
    validate::one_of(v.unwrap_or(SYMMETRIC_DEFAULT), field, ENCRYPTION_ALGORITHMS)
}

/// The OAEP hash of an RSA encryption algorithm (`None`: SYMMETRIC_DEFAULT, or SM2PKE, which
/// no Clavis key offers).
fn oaep(algorithm: &str) -> Option<Oaep> {
    match algorithm {
        "RSAES_OAEP_SHA_1" => Some(Oaep::Sha1),
        "RSAES_OAEP_SHA_256" => Some(Oaep::Sha256),
        _ => None,
    }
}

impl Kms {
    /// The RSA ENCRYPT_DECRYPT key an Encrypt or Decrypt with an RSAES algorithm names. The
    /// standard asymmetric algorithms take no encryption context (AWS's API reference: "An
    /// encryption context is valid only for cryptographic operations with a symmetric
    /// encryption KMS key"); Clavis refuses one rather than ignore it, so that no caller
    /// believes a context binds an RSA ciphertext.
    async fn rsa_key(
        &self,
        caller: &Caller,
        access: Access<'_>,
        key_id: Option<&str>,
        algorithm: &str,
        context: &EncryptionContext,
        operation: &str,
    ) -> Result<Key, KmsError> {
        let key = self.key_for(caller, access, key_id, "keyId").await?;
        key.check_usable()?;
        key.check_usage(KeyUsage::EncryptDecrypt, operation)?;
        if !key.spec.algorithms(key.usage).encryption.contains(&algorithm) {
            return Err(KmsError::InvalidKeyUsage(format!("Algorithm {algorithm} is incompatible with key spec {}.", key.spec.as_str())));
        }
        if !context.is_empty() {
            return Err(KmsError::Validation(format!(
                "EncryptionContext is not supported with {algorithm}: an encryption context is valid only with symmetric encryption KMS keys."
            )));
        }
        Ok(key)
    }

    /// The key an Encrypt or GenerateDataKey names, usable for symmetric encryption; then the
    /// DryRun answer if one was asked for.
    async fn encryption_key(
        &self,
        caller: &Caller,
        access: Access<'_>,
        key_id: Option<&str>,
        dry_run: Option<bool>,
    ) -> Result<Key, KmsError> {
        let key = self.key_for(caller, access, key_id, "keyId").await?;
        key.check_usable()?;
        key.check_symmetric_encrypt()?;
        if dry_run == Some(true) {
            return Err(KmsError::DryRun);
        }
        Ok(key)
    }

    pub(crate) async fn encrypt_with(&self, key: &Key, context: &EncryptionContext, plaintext: &[u8]) -> Result<Vec<u8>, KmsError> {
        let version = key.rec.current_version;
        let material = self.material(key, version).await?;
        ciphertext::seal(material.aes()?, Header { key_id: key.id, version }, context, plaintext)
    }

    /// Finds the key of a ciphertext, checks it against an optional KeyId, and decrypts;
    /// `access` is what the request does with that key (Decrypt, ReEncryptFrom).
    pub(crate) async fn decrypt_blob(
        &self,
        caller: &Caller,
        access: Access<'_>,
        blob: &[u8],
        key_id: Option<&str>,
        context: &EncryptionContext,
        key_field: &str,
    ) -> Result<(Key, SecretBytes), KmsError> {
        validate::blob_len(blob.len(), "ciphertextBlob", 1, MAX_CIPHERTEXT)?;
        let key = self.key_for_ciphertext(caller, access, blob, key_id, key_field).await?;
        let header = ciphertext::parse_header(blob)?;
        key.check_usable()?;
        key.check_symmetric_encrypt()?;
        if header.version == 0 || header.version > key.rec.current_version {
            return Err(KmsError::InvalidCiphertext(
                "The ciphertext is invalid, was not produced by this service, or was modified.".into(),
            ));
        }
        let material = self.material(&key, header.version).await?;
        let plaintext = ciphertext::open(material.aes()?, blob, context)?;
        Ok((key, plaintext))
    }

    /// Encrypt.
    pub async fn encrypt(&self, caller: &Caller, req: EncryptRequest) -> Result<EncryptResponse, KmsError> {
        self.authorize(caller, Operation::Encrypt)?;
        let plaintext = validate::required(req.plaintext, "plaintext")?;
        validate::blob_len(plaintext.0.len(), "plaintext", 1, MAX_PLAINTEXT)?;
        let algorithm = encryption_algorithm(req.encryption_algorithm.as_deref())?;
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        let context = EncryptionContext::parse(req.encryption_context, "encryptionContext")?;
        if algorithm != SYMMETRIC_DEFAULT {
            let params = [param("kms:EncryptionAlgorithm", algorithm)];
            let access = Access::with_context("Encrypt", &context).with_params(&params);
            let key = self.rsa_key(caller, access, req.key_id.as_deref(), algorithm, &context, "Encrypt").await?;
            let oaep = oaep(algorithm).ok_or_else(|| KmsError::Internal(format!("{algorithm} is not RSA-OAEP")))?;
            let material = self.material(&key, key.rec.current_version).await?;
            let pair = material.pair()?;
            let max = pair.oaep_max_plaintext(oaep).unwrap_or(0);
            if plaintext.0.len() > max {
                return Err(KmsError::Validation(format!(
                    "Plaintext is too long for {algorithm} with key spec {}: at most {max} bytes.",
                    key.spec.as_str()
                )));
            }
            if req.dry_run == Some(true) {
                return Err(KmsError::DryRun);
            }
            let blob = pair.encrypt_oaep(oaep, plaintext.0.expose_secret())?;
            return Ok(EncryptResponse { ciphertext_blob: Blob(blob), key_id: key.arn, encryption_algorithm: algorithm.into() });
        }
        let access = Access::with_context("Encrypt", &context);
        let key = self.encryption_key(caller, access, req.key_id.as_deref(), req.dry_run).await?;
        let blob = self.encrypt_with(&key, &context, plaintext.0.expose_secret()).await?;
        Ok(EncryptResponse { ciphertext_blob: Blob(blob), key_id: key.arn, encryption_algorithm: SYMMETRIC_DEFAULT.into() })
    }

    /// Decrypt. With `req.rewrap` (the `X-Clavis-Rewrap` extension), a ciphertext made under an
    /// older material version also comes back re-encrypted under the key's newest version, with
    /// the same encryption context, in the same call.
    pub async fn decrypt(&self, caller: &Caller, req: DecryptRequest) -> Result<DecryptResponse, KmsError> {
        self.authorize(caller, Operation::Decrypt)?;
        let blob = validate::required(req.ciphertext_blob, "ciphertextBlob")?;
        let algorithm = encryption_algorithm(req.encryption_algorithm.as_deref())?;
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        refuse_recipient(req.recipient.as_ref())?;
        let context = EncryptionContext::parse(req.encryption_context, "encryptionContext")?;
        if algorithm != SYMMETRIC_DEFAULT {
            validate::blob_len(blob.0.len(), "ciphertextBlob", 1, MAX_CIPHERTEXT)?;
            if req.key_id.is_none() {
                return Err(KmsError::Validation(format!(
                    "KeyId is required to decrypt with {algorithm}: a ciphertext of an asymmetric key does not name its key."
                )));
            }
            let params = [param("kms:EncryptionAlgorithm", algorithm)];
            let access = Access::with_context("Decrypt", &context).with_params(&params);
            let key = self.rsa_key(caller, access, req.key_id.as_deref(), algorithm, &context, "Decrypt").await?;
            let oaep = oaep(algorithm).ok_or_else(|| KmsError::Internal(format!("{algorithm} is not RSA-OAEP")))?;
            if req.dry_run == Some(true) {
                return Err(KmsError::DryRun);
            }
            let material = self.material(&key, key.rec.current_version).await?;
            let plaintext = material.pair()?.decrypt_oaep(oaep, &blob.0).map_err(|_| {
                KmsError::InvalidCiphertext(format!("The ciphertext is invalid, or was not made by this key with {algorithm}."))
            })?;
            return Ok(DecryptResponse {
                key_id: key.arn,
                plaintext: SecretBlob(plaintext),
                encryption_algorithm: algorithm.into(),
                rewrapped_ciphertext_blob: None,
                key_material_version: None,
            });
        }
        let access = Access::with_context("Decrypt", &context);
        let (key, plaintext) = self.decrypt_blob(caller, access, &blob.0, req.key_id.as_deref(), &context, "keyId").await?;
        if req.dry_run == Some(true) {
            return Err(KmsError::DryRun);
        }
        let (mut rewrapped, mut newest) = (None, None);
        if req.rewrap {
            // Re-wrapping encrypts under the key: the caller must be allowed that too (kms:Encrypt,
            // or both halves of kms:ReEncrypt*), whether or not this ciphertext needs it.
            self.authorize_rewrap(caller, &key, &context).await?;
            let source_version = ciphertext::parse_header(&blob.0)?.version;
            let current = key.rec.current_version;
            newest = Some(current);
            if source_version < current {
                rewrapped = Some(Blob(self.encrypt_with(&key, &context, plaintext.expose_secret()).await?));
            }
        }
        Ok(DecryptResponse {
            key_id: key.arn,
            plaintext: SecretBlob(plaintext),
            encryption_algorithm: SYMMETRIC_DEFAULT.into(),
            rewrapped_ciphertext_blob: rewrapped,
            key_material_version: newest,
        })
    }

    /// Re-wrap on unwrap produces a new ciphertext under `key`: allowed when Encrypt is, or when
    /// both ReEncryptFrom and ReEncryptTo are (what a ReEncrypt onto the same key would need).
    async fn authorize_rewrap(&self, caller: &Caller, key: &Key, context: &EncryptionContext) -> Result<(), KmsError> {
        let access = |action| Access::with_context(action, context);
        if self.authorize_key(caller, access("Encrypt"), key).await.is_ok() {
            return Ok(());
        }
        // A re-wrap is a re-encryption onto the same key: a policy denying that
        // (kms:ReEncryptOnSameKey) applies.
        let same_key = [param("kms:ReEncryptOnSameKey", true)];
        let access = |action| Access::with_context(action, context).with_params(&same_key);
        match (self.authorize_key(caller, access("ReEncryptFrom"), key).await, self.authorize_key(caller, access("ReEncryptTo"), key).await)
        {
            (Ok(()), Ok(())) => Ok(()),
            (Err(KmsError::AccessDenied(_)), _) | (_, Err(KmsError::AccessDenied(_))) => Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to re-wrap under {}: re-wrap on unwrap needs kms:Encrypt, or kms:ReEncryptFrom and kms:ReEncryptTo, on the key",
                caller.principal_arn, key.arn
            ))),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }

    /// ReEncrypt: decrypt under the source key and encrypt under the destination key, without
    /// the plaintext leaving the service.
    pub async fn re_encrypt(&self, caller: &Caller, req: ReEncryptRequest) -> Result<ReEncryptResponse, KmsError> {
        self.authorize(caller, Operation::ReEncrypt)?;
        let blob = validate::required(req.ciphertext_blob, "ciphertextBlob")?;
        let dest_raw = validate::required(req.destination_key_id.as_deref(), "destinationKeyId")?;
        let source_alg = algorithm_member(req.source_encryption_algorithm.as_deref(), "sourceEncryptionAlgorithm")?;
        let dest_alg = algorithm_member(req.destination_encryption_algorithm.as_deref(), "destinationEncryptionAlgorithm")?;
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        let source_ctx = EncryptionContext::parse(req.source_encryption_context, "sourceEncryptionContext")?;
        let dest_ctx = EncryptionContext::parse(req.destination_encryption_context, "destinationEncryptionContext")?;
        // kms:ReEncryptOnSameKey, worked out before either key is authorized: a reference that
        // does not resolve is not the same key (its error comes from the step that needs it).
        // An RSA ciphertext does not name its key: its source is SourceKeyId.
        let source_id = if source_alg == SYMMETRIC_DEFAULT {
            ciphertext::parse_header(&blob.0).ok().map(|h| h.key_id)
        } else {
            match req.source_key_id.as_deref().map(|raw| KeyRef::parse(raw, "sourceKeyId")) {
                Some(Ok(r)) => self.key_id_of(caller, "ReEncryptFrom", &r).await,
                _ => None,
            }
        };
        let dest_id = match KeyRef::parse(dest_raw, "destinationKeyId") {
            Ok(r) => self.key_id_of(caller, "ReEncryptTo", &r).await,
            Err(_) => None,
        };
        let same_key = [param("kms:ReEncryptOnSameKey", source_id.is_some() && source_id == dest_id)];
        let (source, plaintext) = if source_alg == SYMMETRIC_DEFAULT {
            let access = Access::with_context("ReEncryptFrom", &source_ctx).with_params(&same_key);
            self.decrypt_blob(caller, access, &blob.0, req.source_key_id.as_deref(), &source_ctx, "sourceKeyId").await?
        } else {
            validate::blob_len(blob.0.len(), "ciphertextBlob", 1, MAX_CIPHERTEXT)?;
            if req.source_key_id.is_none() {
                return Err(KmsError::Validation(format!(
                    "SourceKeyId is required to re-encrypt from {source_alg}: a ciphertext of an asymmetric key does not name its key."
                )));
            }
            let params = [same_key[0].clone(), param("kms:EncryptionAlgorithm", source_alg)];
            let access = Access::with_context("ReEncryptFrom", &source_ctx).with_params(&params);
            let key = self.rsa_key(caller, access, req.source_key_id.as_deref(), source_alg, &source_ctx, "ReEncrypt").await?;
            let oaep = oaep(source_alg).ok_or_else(|| KmsError::Internal(format!("{source_alg} is not RSA-OAEP")))?;
            let material = self.material(&key, key.rec.current_version).await?;
            let plaintext = material.pair()?.decrypt_oaep(oaep, &blob.0).map_err(|_| {
                KmsError::InvalidCiphertext(format!("The ciphertext is invalid, or was not made by the source key with {source_alg}."))
            })?;
            (key, plaintext)
        };
        let out = if dest_alg == SYMMETRIC_DEFAULT {
            let access = Access::with_context("ReEncryptTo", &dest_ctx).with_params(&same_key);
            let dest = self.key_for(caller, access, Some(dest_raw), "destinationKeyId").await?;
            dest.check_usable()?;
            dest.check_symmetric_encrypt()?;
            if req.dry_run == Some(true) {
                return Err(KmsError::DryRun);
            }
            let out = self.encrypt_with(&dest, &dest_ctx, plaintext.expose_secret()).await?;
            (dest, out)
        } else {
            let params = [same_key[0].clone(), param("kms:EncryptionAlgorithm", dest_alg)];
            let access = Access::with_context("ReEncryptTo", &dest_ctx).with_params(&params);
            let dest = self.rsa_key(caller, access, Some(dest_raw), dest_alg, &dest_ctx, "ReEncrypt").await?;
            let oaep = oaep(dest_alg).ok_or_else(|| KmsError::Internal(format!("{dest_alg} is not RSA-OAEP")))?;
            let material = self.material(&dest, dest.rec.current_version).await?;
            let pair = material.pair()?;
            let max = pair.oaep_max_plaintext(oaep).unwrap_or(0);
            if plaintext.len() > max {
                return Err(KmsError::Validation(format!(
                    "The plaintext is too long for {dest_alg} with key spec {}: at most {max} bytes.",
                    dest.spec.as_str()
                )));
            }
            if req.dry_run == Some(true) {
                return Err(KmsError::DryRun);
            }
            let out = pair.encrypt_oaep(oaep, plaintext.expose_secret())?;
            (dest, out)
        };
        let (dest, out) = out;
        Ok(ReEncryptResponse {
            ciphertext_blob: Blob(out),
            source_key_id: source.arn,
            key_id: dest.arn,
            source_encryption_algorithm: source_alg.into(),
            destination_encryption_algorithm: dest_alg.into(),
        })
    }

    /// GenerateDataKey.
    pub async fn generate_data_key(&self, caller: &Caller, req: GenerateDataKeyRequest) -> Result<GenerateDataKeyResponse, KmsError> {
        self.authorize(caller, Operation::GenerateDataKey)?;
        self.new_data_key(caller, req, true).await
    }

    /// GenerateDataKeyWithoutPlaintext.
    pub async fn generate_data_key_without_plaintext(
        &self,
        caller: &Caller,
        req: GenerateDataKeyRequest,
    ) -> Result<GenerateDataKeyResponse, KmsError> {
        self.authorize(caller, Operation::GenerateDataKeyWithoutPlaintext)?;
        self.new_data_key(caller, req, false).await
    }

    /// A new data key, encrypted under the request's key, with its plaintext or without.
    async fn new_data_key(
        &self,
        caller: &Caller,
        req: GenerateDataKeyRequest,
        with_plaintext: bool,
    ) -> Result<GenerateDataKeyResponse, KmsError> {
        let len = match (req.number_of_bytes, req.key_spec.as_deref()) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(KmsError::Validation("Please specify either number of bytes or key spec.".into()));
            }
            (Some(n), None) => {
                validate::int_range(n, "numberOfBytes", 1, 1024)?;
                usize::try_from(n).unwrap_or(0)
            }
            (None, Some(spec)) => match validate::one_of(spec, "keySpec", &["AES_256", "AES_128"])? {
                "AES_128" => 16,
                _ => 32,
            },
        };
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        refuse_recipient(req.recipient.as_ref())?;
        let context = EncryptionContext::parse(req.encryption_context, "encryptionContext")?;
        let action = if with_plaintext { "GenerateDataKey" } else { "GenerateDataKeyWithoutPlaintext" };
        let key = self.encryption_key(caller, Access::with_context(action, &context), req.key_id.as_deref(), req.dry_run).await?;
        let data_key = random::secret(len)?;
        let blob = self.encrypt_with(&key, &context, data_key.expose_secret()).await?;
        Ok(GenerateDataKeyResponse {
            ciphertext_blob: Blob(blob),
            plaintext: with_plaintext.then_some(SecretBlob(data_key)),
            key_id: key.arn,
        })
    }

    /// GenerateRandom.
    pub async fn generate_random(&self, caller: &Caller, req: GenerateRandomRequest) -> Result<GenerateRandomResponse, KmsError> {
        self.authorize(caller, Operation::GenerateRandom)?;
        let n = validate::required(req.number_of_bytes, "numberOfBytes")?;
        validate::int_range(n, "numberOfBytes", 1, 1024)?;
        if req.custom_key_store_id.is_some() {
            return Err(KmsError::UnsupportedOperation("Custom key stores are not supported by Clavis.".into()));
        }
        refuse_recipient(req.recipient.as_ref())?;
        let bytes = random::secret(usize::try_from(n).unwrap_or(0))?;
        Ok(GenerateRandomResponse { plaintext: SecretBlob(bytes) })
    }
}
