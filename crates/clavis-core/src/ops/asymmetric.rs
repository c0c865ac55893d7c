//! The operations of asymmetric and HMAC keys: Sign, Verify, GetPublicKey, GenerateMac,
//! VerifyMac, DeriveSharedSecret (ECDH), Encapsulate and Decapsulate (ML-KEM), and
//! GenerateDataKeyPair(WithoutPlaintext) (a key pair whose private half is encrypted under a
//! symmetric key). RSA Encrypt and Decrypt are in `crypto.rs` with the symmetric ones.
//!
//! The order of checks is AWS's: the request's members, then the key (resolution and
//! authorization), its state, its usage, the algorithm against its spec, the message against
//! the algorithm, and only then DryRun and the work.

use super::crypto::{MAX_CIPHERTEXT, MAX_PLAINTEXT, refuse_recipient};
use crate::api::*;
use crate::kernel::key::{Material, pair_spec};
use crate::kernel::{Access, Key, param};
use crate::operation::Operation;
use crate::types::{EncryptionContext, KeySpec, KeyUsage};
use crate::{Caller, Kms, KmsError, validate};
use clavis_crypto::asymmetric::{self, Hash, Input, PairSpec, Scheme};

/// Every `SigningAlgorithmSpec` (botocore's model).
const SIGNING_ALGORITHMS: &[&str] = &[
    "RSASSA_PSS_SHA_256",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_512",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
    "ECDSA_SHA_256",
    "ECDSA_SHA_384",
    "ECDSA_SHA_512",
    "SM2DSA",
    "ML_DSA_SHAKE_256",
    "ED25519_SHA_512",
    "ED25519_PH_SHA_512",
];
const MESSAGE_TYPES: &[&str] = &["RAW", "DIGEST", "EXTERNAL_MU"];
const MAC_ALGORITHMS: &[&str] = &["HMAC_SHA_224", "HMAC_SHA_256", "HMAC_SHA_384", "HMAC_SHA_512"];
/// Every `DataKeyPairSpec` (botocore's model).
const DATA_KEY_PAIR_SPECS: &[&str] = &[
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "SM2",
    "ECC_NIST_EDWARDS25519",
    "ML_KEM_512",
    "ML_KEM_768",
    "ML_KEM_1024",
];
/// The most a `PublicKey` member may hold (AWS's `PublicKeyType`).
const MAX_PUBLIC_KEY: usize = 8192;

fn incompatible(algorithm: &str, key: &Key) -> KmsError {
    KmsError::InvalidKeyUsage(format!("Algorithm {algorithm} is incompatible with key spec {}.", key.spec.as_str()))
}

/// The signature scheme of `algorithm`, which must be one the key offers.
fn signing_scheme(key: &Key, algorithm: &str) -> Result<Scheme, KmsError> {
    if !key.spec.algorithms(key.usage).signing.contains(&algorithm) {
        return Err(incompatible(algorithm, key));
    }
    Ok(match algorithm {
        "RSASSA_PSS_SHA_256" => Scheme::RsaPss(Hash::Sha256),
        "RSASSA_PSS_SHA_384" => Scheme::RsaPss(Hash::Sha384),
        "RSASSA_PSS_SHA_512" => Scheme::RsaPss(Hash::Sha512),
        "RSASSA_PKCS1_V1_5_SHA_256" => Scheme::RsaPkcs1(Hash::Sha256),
        "RSASSA_PKCS1_V1_5_SHA_384" => Scheme::RsaPkcs1(Hash::Sha384),
        "RSASSA_PKCS1_V1_5_SHA_512" => Scheme::RsaPkcs1(Hash::Sha512),
        "ECDSA_SHA_256" => Scheme::Ecdsa(Hash::Sha256),
        "ECDSA_SHA_384" => Scheme::Ecdsa(Hash::Sha384),
        "ECDSA_SHA_512" => Scheme::Ecdsa(Hash::Sha512),
        "ED25519_SHA_512" => Scheme::Ed25519,
        "ML_DSA_SHAKE_256" => Scheme::MlDsa,
        "ED25519_PH_SHA_512" => {
            return Err(KmsError::UnsupportedOperation(
                "ED25519_PH_SHA_512 (pre-hashed Ed25519) is not supported by Clavis: its cryptography library signs Ed25519 messages only; use ED25519_SHA_512 with MessageType RAW."
                    .into(),
            ));
        }
        other => return Err(incompatible(other, key)),
    })
}

/// What is signed: the message, or (MessageType DIGEST) a digest of exactly the scheme's
/// hash length.
fn signing_input<'a>(scheme: Scheme, algorithm: &str, message_type: &str, message: &'a [u8]) -> Result<Input<'a>, KmsError> {
    match (message_type, scheme) {
        ("RAW", _) => Ok(Input::Raw(message)),
        ("DIGEST", Scheme::RsaPss(h) | Scheme::RsaPkcs1(h) | Scheme::Ecdsa(h)) => {
            if message.len() != h.len() {
                return Err(KmsError::Validation(format!(
                    "Digest is invalid length for algorithm {algorithm}: a {}-byte digest is required, got {} bytes.",
                    h.len(),
                    message.len()
                )));
            }
            Ok(Input::Digest(message))
        }
        ("DIGEST", _) => Err(KmsError::Validation(format!("MessageType DIGEST is not valid for the signing algorithm {algorithm}."))),
        (_, Scheme::MlDsa) => Err(KmsError::UnsupportedOperation(
            "MessageType EXTERNAL_MU is not supported by Clavis: its cryptography library signs ML-DSA messages, not external mu values; use MessageType RAW."
                .into(),
        )),
        _ => Err(KmsError::Validation(format!("MessageType EXTERNAL_MU is valid only with the ML_DSA_SHAKE_256 signing algorithm, not {algorithm}."))),
    }
}

/// The key pair spec of a data key pair, or the refusal of one Clavis cannot make.
fn data_key_pair_spec(spec: &str) -> Result<PairSpec, KmsError> {
    match spec {
        "SM2" => Err(KmsError::UnsupportedOperation("KeyPairSpec SM2 is supported only in the AWS China Regions.".into())),
        "ML_KEM_512" | "ML_KEM_768" | "ML_KEM_1024" => Err(KmsError::UnsupportedOperation(format!(
            "KeyPairSpec {spec} is not supported by Clavis: its cryptography library has no PKCS#8 form for ML-KEM private keys."
        ))),
        other => KeySpec::parse(other).and_then(pair_spec).ok_or_else(|| KmsError::Internal(format!("no key pair for {other}"))),
    }
}

fn optional(list: &'static [&'static str]) -> Option<Vec<String>> {
    (!list.is_empty()).then(|| list.iter().map(|s| (*s).to_owned()).collect())
}

impl Kms {
    /// A usable key of `usage` for `operation`, authorized for `access`.
    async fn key_of_usage(
        &self,
        caller: &Caller,
        access: Access<'_>,
        key_id: Option<&str>,
        usage: KeyUsage,
        operation: &str,
    ) -> Result<Key, KmsError> {
        let key = self.key_for(caller, access, key_id, "keyId").await?;
        key.check_usable()?;
        key.check_usage(usage, operation)?;
        Ok(key)
    }

    /// The members Sign and Verify share (SigningAlgorithm, MessageType, GrantTokens, then the
    /// key, authorized with `kms:SigningAlgorithm` and `kms:MessageType`, usable, SIGN_VERIFY,
    /// offering the algorithm): the key, the scheme, the algorithm and the message type.
    async fn signing_key<'a>(
        &self,
        caller: &Caller,
        operation: &'static str,
        key_id: Option<&str>,
        algorithm: Option<&'a str>,
        message_type: Option<&'a str>,
        grant_tokens: Option<&Vec<String>>,
    ) -> Result<(Key, Scheme, &'a str, &'a str), KmsError> {
        let algorithm = validate::required(algorithm, "signingAlgorithm")?;
        validate::one_of(algorithm, "signingAlgorithm", SIGNING_ALGORITHMS)?;
        let message_type = message_type.unwrap_or("RAW");
        validate::one_of(message_type, "messageType", MESSAGE_TYPES)?;
        validate::grant_tokens(grant_tokens)?;
        let params = [param("kms:SigningAlgorithm", algorithm), param("kms:MessageType", message_type)];
        let access = Access::to(operation).with_params(&params);
        let key = self.key_of_usage(caller, access, key_id, KeyUsage::SignVerify, operation).await?;
        let scheme = signing_scheme(&key, algorithm)?;
        Ok((key, scheme, algorithm, message_type))
    }

    /// Sign: a signature of the message (or its digest) with the key's private half.
    pub async fn sign(&self, caller: &Caller, req: SignRequest) -> Result<SignResponse, KmsError> {
        self.authorize(caller, Operation::Sign)?;
        let message = validate::required(req.message, "message")?;
        validate::blob_len(message.0.len(), "message", 1, MAX_PLAINTEXT)?;
        let (algorithm, message_type) = (req.signing_algorithm.as_deref(), req.message_type.as_deref());
        let (key, scheme, algorithm, message_type) =
            self.signing_key(caller, "Sign", req.key_id.as_deref(), algorithm, message_type, req.grant_tokens.as_ref()).await?;
        let input = signing_input(scheme, algorithm, message_type, message.0.expose_secret())?;
        if req.dry_run == Some(true) {
            return Err(KmsError::DryRun);
        }
        let material = self.material(&key, key.rec.current_version).await?;
        let signature = material.pair()?.sign(scheme, input)?;
        Ok(SignResponse { key_id: key.arn, signature: Blob(signature), signing_algorithm: algorithm.to_owned() })
    }

    /// Verify: `KMSInvalidSignatureException` unless the signature is the key's over the
    /// message (or digest).
    pub async fn verify(&self, caller: &Caller, req: VerifyRequest) -> Result<VerifyResponse, KmsError> {
        self.authorize(caller, Operation::Verify)?;
        let message = validate::required(req.message, "message")?;
        validate::blob_len(message.0.len(), "message", 1, MAX_PLAINTEXT)?;
        let signature = validate::required(req.signature, "signature")?;
        validate::blob_len(signature.0.len(), "signature", 1, MAX_CIPHERTEXT)?;
        let (algorithm, message_type) = (req.signing_algorithm.as_deref(), req.message_type.as_deref());
        let (key, scheme, algorithm, message_type) =
            self.signing_key(caller, "Verify", req.key_id.as_deref(), algorithm, message_type, req.grant_tokens.as_ref()).await?;
        let input = signing_input(scheme, algorithm, message_type, message.0.expose_secret())?;
        if req.dry_run == Some(true) {
            return Err(KmsError::DryRun);
        }
        let material = self.material(&key, key.rec.current_version).await?;
        if !material.pair()?.verify(scheme, input, &signature.0)? {
            return Err(KmsError::KmsInvalidSignature("The signature is not valid for this message, key and signing algorithm.".into()));
        }
        Ok(VerifyResponse { key_id: key.arn, signature_valid: true, signing_algorithm: algorithm.to_owned() })
    }

    /// GetPublicKey: the public half of an asymmetric key as DER SubjectPublicKeyInfo.
    pub async fn get_public_key(&self, caller: &Caller, req: GetPublicKeyRequest) -> Result<GetPublicKeyResponse, KmsError> {
        self.authorize(caller, Operation::GetPublicKey)?;
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        let key = self.key_for(caller, Access::to("GetPublicKey"), req.key_id.as_deref(), "keyId").await?;
        if !key.spec.is_asymmetric() {
            return Err(KmsError::UnsupportedOperation(format!(
                "{} is not an asymmetric KMS key (key spec {}); GetPublicKey needs an asymmetric key.",
                key.arn,
                key.spec.as_str()
            )));
        }
        key.check_usable()?;
        let material = self.material(&key, key.rec.current_version).await?;
        let public_key = material.pair()?.public_key_der().to_vec();
        let algorithms = key.spec.algorithms(key.usage);
        Ok(GetPublicKeyResponse {
            key_id: key.arn.clone(),
            public_key: Blob(public_key),
            customer_master_key_spec: key.rec.key_spec.clone(),
            key_spec: key.rec.key_spec.clone(),
            key_usage: key.rec.key_usage.clone(),
            encryption_algorithms: optional(algorithms.encryption),
            signing_algorithms: optional(algorithms.signing),
            key_agreement_algorithms: optional(algorithms.key_agreement),
            encapsulation_algorithms: optional(algorithms.encapsulation),
        })
    }

    /// The HMAC key a GenerateMac or VerifyMac names, with its algorithm checked.
    async fn mac_key(&self, caller: &Caller, operation: &'static str, key_id: Option<&str>, algorithm: &str) -> Result<Key, KmsError> {
        let params = [param("kms:MacAlgorithm", algorithm)];
        let access = Access::to(operation).with_params(&params);
        let key = self.key_of_usage(caller, access, key_id, KeyUsage::GenerateVerifyMac, operation).await?;
        if !key.spec.algorithms(key.usage).mac.contains(&algorithm) {
            return Err(incompatible(algorithm, &key));
        }
        Ok(key)
    }

    /// GenerateMac: HMAC of the message.
    pub async fn generate_mac(&self, caller: &Caller, req: GenerateMacRequest) -> Result<GenerateMacResponse, KmsError> {
        self.authorize(caller, Operation::GenerateMac)?;
        let message = validate::required(req.message, "message")?;
        validate::blob_len(message.0.len(), "message", 1, MAX_PLAINTEXT)?;
        let algorithm = validate::required(req.mac_algorithm.as_deref(), "macAlgorithm")?;
        validate::one_of(algorithm, "macAlgorithm", MAC_ALGORITHMS)?;
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        let key = self.mac_key(caller, "GenerateMac", req.key_id.as_deref(), algorithm).await?;
        if req.dry_run == Some(true) {
            return Err(KmsError::DryRun);
        }
        let material = self.material(&key, key.rec.current_version).await?;
        let mac = material.mac()?.sign(message.0.expose_secret());
        Ok(GenerateMacResponse { mac: Blob(mac), mac_algorithm: algorithm.to_owned(), key_id: key.arn })
    }

    /// VerifyMac: `KMSInvalidMacException` unless the MAC is the key's over the message.
    pub async fn verify_mac(&self, caller: &Caller, req: VerifyMacRequest) -> Result<VerifyMacResponse, KmsError> {
        self.authorize(caller, Operation::VerifyMac)?;
        let message = validate::required(req.message, "message")?;
        validate::blob_len(message.0.len(), "message", 1, MAX_PLAINTEXT)?;
        let mac = validate::required(req.mac, "mac")?;
        validate::blob_len(mac.0.len(), "mac", 1, MAX_CIPHERTEXT)?;
        let algorithm = validate::required(req.mac_algorithm.as_deref(), "macAlgorithm")?;
        validate::one_of(algorithm, "macAlgorithm", MAC_ALGORITHMS)?;
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        let key = self.mac_key(caller, "VerifyMac", req.key_id.as_deref(), algorithm).await?;
        if req.dry_run == Some(true) {
            return Err(KmsError::DryRun);
        }
        let material = self.material(&key, key.rec.current_version).await?;
        if !material.mac()?.verify(message.0.expose_secret(), &mac.0) {
            return Err(KmsError::KmsInvalidMac("The MAC is not valid for this message, key and MAC algorithm.".into()));
        }
        Ok(VerifyMacResponse { key_id: key.arn, mac_valid: true, mac_algorithm: algorithm.to_owned() })
    }

    /// DeriveSharedSecret: ECDH between the key's private half and a peer's public key.
    pub async fn derive_shared_secret(
        &self,
        caller: &Caller,
        req: DeriveSharedSecretRequest,
    ) -> Result<DeriveSharedSecretResponse, KmsError> {
        self.authorize(caller, Operation::DeriveSharedSecret)?;
        let algorithm = validate::required(req.key_agreement_algorithm.as_deref(), "keyAgreementAlgorithm")?;
        validate::one_of(algorithm, "keyAgreementAlgorithm", &["ECDH"])?;
        let public_key = validate::required(req.public_key, "publicKey")?;
        validate::blob_len(public_key.0.len(), "publicKey", 1, MAX_PUBLIC_KEY)?;
        if !asymmetric::is_single_der_sequence(&public_key.0) {
            return Err(KmsError::Validation("The PublicKey is not a DER-encoded SubjectPublicKeyInfo.".into()));
        }
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        refuse_recipient(req.recipient.as_ref())?;
        let params = [param("kms:KeyAgreementAlgorithm", algorithm)];
        let access = Access::to("DeriveSharedSecret").with_params(&params);
        let key = self.key_of_usage(caller, access, req.key_id.as_deref(), KeyUsage::KeyAgreement, "DeriveSharedSecret").await?;
        if req.dry_run == Some(true) {
            return Err(KmsError::DryRun);
        }
        let material = self.material(&key, key.rec.current_version).await?;
        let secret = material.pair()?.derive(&public_key.0).map_err(|_| {
            KmsError::Validation(format!(
                "The PublicKey is not a valid DER-encoded SubjectPublicKeyInfo of a point on the curve of key spec {}.",
                key.spec.as_str()
            ))
        })?;
        Ok(DeriveSharedSecretResponse {
            key_id: key.arn.clone(),
            shared_secret: SecretBlob(secret),
            key_agreement_algorithm: algorithm.to_owned(),
            key_origin: key.rec.origin.clone(),
        })
    }

    /// Encapsulate: a fresh shared secret and its ML-KEM ciphertext under the key.
    pub async fn encapsulate(&self, caller: &Caller, req: EncapsulateRequest) -> Result<EncapsulateResponse, KmsError> {
        self.authorize(caller, Operation::Encapsulate)?;
        let algorithm = validate::required(req.encapsulation_algorithm.as_deref(), "encapsulationAlgorithm")?;
        validate::one_of(algorithm, "encapsulationAlgorithm", &["ML_KEM"])?;
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        let access = Access::to("Encapsulate");
        let key = self.key_of_usage(caller, access, req.key_id.as_deref(), KeyUsage::EncapsulateDecapsulate, "Encapsulate").await?;
        if req.dry_run == Some(true) {
            return Err(KmsError::DryRun);
        }
        let material = self.material(&key, key.rec.current_version).await?;
        let (ciphertext, secret) = material.pair()?.encapsulate()?;
        Ok(EncapsulateResponse {
            key_id: key.arn,
            shared_secret: SecretBlob(secret),
            shared_secret_ciphertext_blob: Blob(ciphertext),
            encapsulation_algorithm: algorithm.to_owned(),
        })
    }

    /// Decapsulate: the shared secret of an ML-KEM ciphertext made to the key's public half.
    pub async fn decapsulate(&self, caller: &Caller, req: DecapsulateRequest) -> Result<DecapsulateResponse, KmsError> {
        self.authorize(caller, Operation::Decapsulate)?;
        let ciphertext = validate::required(req.shared_secret_ciphertext_blob, "sharedSecretCiphertextBlob")?;
        validate::blob_len(ciphertext.0.len(), "sharedSecretCiphertextBlob", 1, MAX_CIPHERTEXT)?;
        let algorithm = validate::required(req.encapsulation_algorithm.as_deref(), "encapsulationAlgorithm")?;
        validate::one_of(algorithm, "encapsulationAlgorithm", &["ML_KEM"])?;
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        let access = Access::to("Decapsulate");
        let key = self.key_of_usage(caller, access, req.key_id.as_deref(), KeyUsage::EncapsulateDecapsulate, "Decapsulate").await?;
        let material = self.material(&key, key.rec.current_version).await?;
        let pair = material.pair()?;
        if pair.kem_ciphertext_len() != Some(ciphertext.0.len()) {
            return Err(KmsError::InvalidCiphertext(format!(
                "The ciphertext is not an ML-KEM ciphertext of key spec {} ({} bytes).",
                key.spec.as_str(),
                pair.kem_ciphertext_len().unwrap_or(0)
            )));
        }
        if req.dry_run == Some(true) {
            return Err(KmsError::DryRun);
        }
        let secret = pair.decapsulate(&ciphertext.0).map_err(|_| KmsError::InvalidCiphertext("The ciphertext is invalid.".into()))?;
        Ok(DecapsulateResponse { key_id: key.arn, shared_secret: SecretBlob(secret), encapsulation_algorithm: algorithm.to_owned() })
    }

    /// GenerateDataKeyPair.
    pub async fn generate_data_key_pair(
        &self,
        caller: &Caller,
        req: GenerateDataKeyPairRequest,
    ) -> Result<GenerateDataKeyPairResponse, KmsError> {
        self.authorize(caller, Operation::GenerateDataKeyPair)?;
        self.new_data_key_pair(caller, req, true).await
    }

    /// GenerateDataKeyPairWithoutPlaintext.
    pub async fn generate_data_key_pair_without_plaintext(
        &self,
        caller: &Caller,
        req: GenerateDataKeyPairRequest,
    ) -> Result<GenerateDataKeyPairResponse, KmsError> {
        self.authorize(caller, Operation::GenerateDataKeyPairWithoutPlaintext)?;
        self.new_data_key_pair(caller, req, false).await
    }

    /// A new key pair whose private half (PKCS#8 DER) is encrypted under the request's
    /// symmetric key, like a data key; the public half is returned as SPKI DER.
    async fn new_data_key_pair(
        &self,
        caller: &Caller,
        req: GenerateDataKeyPairRequest,
        with_plaintext: bool,
    ) -> Result<GenerateDataKeyPairResponse, KmsError> {
        let spec_name = validate::required(req.key_pair_spec.as_deref(), "keyPairSpec")?;
        validate::one_of(spec_name, "keyPairSpec", DATA_KEY_PAIR_SPECS)?;
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        refuse_recipient(req.recipient.as_ref())?;
        let context = EncryptionContext::parse(req.encryption_context, "encryptionContext")?;
        let spec = data_key_pair_spec(spec_name)?;
        let action = if with_plaintext { "GenerateDataKeyPair" } else { "GenerateDataKeyPairWithoutPlaintext" };
        let params = [param("kms:DataKeyPairSpec", spec_name)];
        let access = Access::with_context(action, &context).with_params(&params);
        let key = self.key_for(caller, access, req.key_id.as_deref(), "keyId").await?;
        key.check_usable()?;
        key.check_symmetric_encrypt()?;
        if req.dry_run == Some(true) {
            return Err(KmsError::DryRun);
        }
        let private = super::generate_pair(spec).await?;
        let public = match Material::from_bytes(KeySpec::parse(spec_name).unwrap_or(KeySpec::Sm2), &private)? {
            Material::Pair(pair) => pair.public_key_der().to_vec(),
            _ => return Err(KmsError::Internal("a data key pair is not a key pair".into())),
        };
        let blob = self.encrypt_with(&key, &context, private.expose_secret()).await?;
        Ok(GenerateDataKeyPairResponse {
            private_key_ciphertext_blob: Blob(blob),
            private_key_plaintext: with_plaintext.then_some(SecretBlob(private)),
            public_key: Blob(public),
            key_id: key.arn,
            key_pair_spec: spec_name.to_owned(),
        })
    }
}
