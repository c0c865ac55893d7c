//! AWS KMS's External Key Store (XKS) proxy API, served by Clavis so that keys in an AWS KMS
//! external key store live in Clavis: GetKeyMetadata, Encrypt, Decrypt and GetHealthStatus
//! (the "AWS KMS XKS Proxy API Specification", v1). The HTTP front end (`clavis-server`'s
//! `xks` module) parses the requests; here they are authorized and performed like KMS
//! operations on the caller's key: its state, key policy and grants apply.
//!
//! - An `externalKeyId` is a Clavis key id (a SYMMETRIC_DEFAULT key) of the credential's
//!   account.
//! - The caller is an XKS credential: an access key of a user `xks/NAME` of that account
//!   ([`is_xks_principal`]). Such a name cannot be made through `CreateUser` (its pattern has
//!   no `/`), and the KMS front end refuses XKS credentials, so the two kinds never mix.
//! - Encrypt uses the key's current material with a random 96-bit IV. `ciphertextMetadata` is
//!   5 bytes: a format byte (1) and the material version (big-endian u32), so a rotated key
//!   still decrypts old ciphertexts. The AES-GCM AAD is a domain tag, then the spec's
//!   `len16(aad) || aad || len8(metadata) || metadata` (the tag keeps XKS ciphertexts and
//!   Clavis's own, whose AAD starts with a format byte 1, from ever being confused).

use crate::api::*;
use crate::kernel::Access;
use crate::operation::Operation;
use crate::types::{KeyState, secs};
use crate::{Caller, Kms, KmsError};
use clavis_crypto::SecretBytes;
use clavis_crypto::aead::{NONCE_LEN, TAG_LEN};

/// The ARN path under which XKS credentials' users live: `arn:aws:iam::ACCOUNT:user/xks/NAME`.
const XKS_USER_PATH: &str = "xks/";
/// The AAD domain tag of XKS ciphertexts.
const AAD_DOMAIN: &[u8] = b"clavis/xks/v1\0";
/// `ciphertextMetadata`'s format byte.
const METADATA_V1: u8 = 1;
/// The spec's limits: plaintext and ciphertext up to 4300 bytes must be supported; AAD up to
/// 8192. Clavis accepts exactly those (more is `ValidationException`).
pub const MAX_PLAINTEXT: usize = 4300;
/// See [`MAX_PLAINTEXT`].
pub const MAX_AAD: usize = 8192;
/// Characters of XKS access key ids: the spec's `A`-`Z` and `2`-`7`.
const XKS_AKID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Characters of XKS secrets (the spec's: letters, digits, `+`, `/`; `=` is allowed but unused).
const XKS_SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Whether `principal_arn` is an XKS credential's user.
pub fn is_xks_principal(principal_arn: &str) -> bool {
    principal_arn.split_once(":user/").is_some_and(|(_, name)| name.starts_with(XKS_USER_PATH))
}

/// GetKeyMetadata's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XksKeyMetadata {
    /// `ENABLED` or `DISABLED`.
    pub key_status: &'static str,
}

/// What decrypt is given, each field raw (the front end decodes them).
#[derive(Debug, Clone, Copy)]
pub struct XksSealed<'a> {
    /// The ciphertext.
    pub ciphertext: &'a [u8],
    /// `ciphertextMetadata` (empty when absent).
    pub metadata: &'a [u8],
    /// The IV.
    pub iv: &'a [u8],
    /// The tag.
    pub tag: &'a [u8],
}

/// Encrypt's answer, each field raw (the front end encodes them).
pub struct XksCiphertext {
    /// The ciphertext (as long as the plaintext).
    pub ciphertext: Vec<u8>,
    /// The material version, for decrypt.
    pub metadata: Vec<u8>,
    /// The 12-byte IV.
    pub iv: Vec<u8>,
    /// The 16-byte tag.
    pub tag: Vec<u8>,
    /// SHA-256 over `aad || metadata || iv || ciphertext || tag`, when asked for.
    pub integrity: Option<[u8; 32]>,
}

fn xks_aad(aad: &[u8], metadata: &[u8]) -> Result<Vec<u8>, KmsError> {
    let aad_len = u16::try_from(aad.len()).map_err(|_| KmsError::validation("additionalAuthenticatedData is too long"))?;
    let meta_len = u8::try_from(metadata.len()).map_err(|_| KmsError::InvalidCiphertext(String::new()))?;
    let mut out = Vec::with_capacity(AAD_DOMAIN.len() + 3 + aad.len() + metadata.len());
    out.extend_from_slice(AAD_DOMAIN);
    out.extend_from_slice(&aad_len.to_be_bytes());
    out.extend_from_slice(aad);
    out.push(meta_len);
    out.extend_from_slice(metadata);
    Ok(out)
}

fn random_string(alphabet: &[u8], len: usize) -> Result<String, KmsError> {
    // Power-of-two alphabets: reducing a random byte is unbiased.
    let bytes = clavis_crypto::random::bytes(len)?;
    Ok(bytes.iter().map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()])).collect())
}

fn invalid_ciphertext() -> KmsError {
    KmsError::InvalidCiphertext(
        "The request was rejected because the specified ciphertext, initialization vector, additional authenticated data or authentication tag is corrupted, missing, or otherwise invalid.".into(),
    )
}

impl Kms {
    /// The caller's symmetric key `external_key_id`, authorized for `action` (key policy,
    /// grants, role) and checked to be a SYMMETRIC_DEFAULT encryption key.
    async fn xks_key(
        &self,
        caller: &Caller,
        op: Operation,
        action: &'static str,
        external_key_id: &str,
    ) -> Result<crate::kernel::Key, KmsError> {
        self.authorize(caller, op)?;
        // The spec's externalKeyId alphabet has no `/` or `:`: never an alias or an ARN.
        let key = self.key_for_no_alias(caller, Access::to(action), Some(external_key_id), "externalKeyId").await?;
        key.check_symmetric_encrypt()?;
        Ok(key)
    }

    /// GetKeyMetadata: `AES_256`, `ENCRYPT`/`DECRYPT`, and the key's status (a key pending
    /// deletion or import is `InvalidStateException`).
    pub async fn xks_key_metadata(&self, caller: &Caller, external_key_id: &str) -> Result<XksKeyMetadata, KmsError> {
        let key = self.xks_key(caller, Operation::DescribeKey, "DescribeKey", external_key_id).await?;
        match key.state {
            KeyState::Enabled => Ok(XksKeyMetadata { key_status: "ENABLED" }),
            KeyState::Disabled => Ok(XksKeyMetadata { key_status: "DISABLED" }),
            other => Err(key.invalid_state(other)),
        }
    }

    /// Encrypt under the key's current material (AES-256-GCM, random IV).
    pub async fn xks_encrypt(
        &self,
        caller: &Caller,
        external_key_id: &str,
        plaintext: Vec<u8>,
        aad: &[u8],
        integrity: bool,
    ) -> Result<XksCiphertext, KmsError> {
        // Wiped when dropped, whatever happens below.
        let plaintext = SecretBytes::new(plaintext);
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(KmsError::validation(format!("plaintext is longer than {MAX_PLAINTEXT} bytes")));
        }
        if aad.len() > MAX_AAD {
            return Err(KmsError::validation(format!("additionalAuthenticatedData is longer than {MAX_AAD} bytes")));
        }
        let key = self.xks_key(caller, Operation::Encrypt, "Encrypt", external_key_id).await?;
        key.check_usable()?;
        let version = key.rec.current_version;
        let mut metadata = vec![METADATA_V1];
        metadata.extend_from_slice(&version.to_be_bytes());
        let material = self.material(&key, version).await?;
        let aes = material.aes()?;
        let full_aad = xks_aad(aad, &metadata)?;
        let mut sealed = Vec::new();
        aes.seal_append(&full_aad, plaintext.expose_secret(), &mut sealed)?;
        if sealed.len() != NONCE_LEN + plaintext.len() + TAG_LEN {
            return Err(KmsError::Internal("unexpected AES-GCM output length".into()));
        }
        let (iv, rest) = sealed.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(plaintext.len());
        let (iv, ciphertext, tag) = (iv.to_vec(), ciphertext.to_vec(), tag.to_vec());
        // Appendix C: the integrity value first, then a decrypt of exactly what is returned, so
        // a bit flip after encryption is caught before the caller destroys its plaintext.
        let cdiv = integrity.then(|| clavis_crypto::digest::sha256(&[aad, &metadata, &iv, &ciphertext, &tag].concat()));
        let check = aes.open(&full_aad, &sealed).map_err(|_| KmsError::Internal("the encrypt output did not decrypt".into()))?;
        if check.expose_secret() != plaintext.expose_secret() {
            return Err(KmsError::Internal("the encrypt output did not decrypt to its plaintext".into()));
        }
        Ok(XksCiphertext { ciphertext, metadata, iv, tag, integrity: cdiv })
    }

    /// Decrypt: the material version from `sealed.metadata`, then AES-GCM with the same AAD.
    pub async fn xks_decrypt(
        &self,
        caller: &Caller,
        external_key_id: &str,
        sealed: &XksSealed<'_>,
        aad: &[u8],
    ) -> Result<SecretBytes, KmsError> {
        let XksSealed { ciphertext, metadata, iv, tag } = *sealed;
        if ciphertext.len() > MAX_PLAINTEXT || aad.len() > MAX_AAD {
            return Err(KmsError::validation(format!(
                "ciphertext or additionalAuthenticatedData is longer than {MAX_PLAINTEXT} / {MAX_AAD} bytes"
            )));
        }
        let key = self.xks_key(caller, Operation::Decrypt, "Decrypt", external_key_id).await?;
        key.check_usable()?;
        let [format, v0, v1, v2, v3] = metadata else { return Err(invalid_ciphertext()) };
        if *format != METADATA_V1 || iv.len() != NONCE_LEN || tag.len() != TAG_LEN {
            return Err(invalid_ciphertext());
        }
        let version = u32::from_be_bytes([*v0, *v1, *v2, *v3]);
        if version == 0 || version > key.rec.current_version {
            return Err(invalid_ciphertext());
        }
        let material = self.material(&key, version).await.map_err(|_| invalid_ciphertext())?;
        let mut sealed = Vec::with_capacity(iv.len() + ciphertext.len() + tag.len());
        sealed.extend_from_slice(iv);
        sealed.extend_from_slice(ciphertext);
        sealed.extend_from_slice(tag);
        material.aes()?.open(&xks_aad(aad, metadata)?, &sealed).map_err(|_| invalid_ciphertext())
    }

    /// GetHealthStatus: deep, as the spec asks: the root of trust unsealed and the database
    /// answering (a failure is `DependencyTimeoutException` or `InvalidStateException`).
    pub async fn xks_health(&self, caller: &Caller) -> Result<(), KmsError> {
        let _ = caller;
        if self.is_sealed() {
            return Err(KmsError::Sealed);
        }
        self.account_id().await?.ok_or_else(|| KmsError::Unavailable("not initialised".into()))?;
        Ok(())
    }

    /// ClavisAdmin.CreateXksCredential: an XKS proxy credential for an account: a user
    /// `xks/NAME` with a role (default `reader`: Encrypt, Decrypt, DescribeKey) and an access key
    /// in the spec's formats (26 characters `A`-`Z2`-`7`; a 44-character secret). The secret is
    /// in this response only. It signs XKS requests and nothing else.
    pub async fn create_xks_credential(
        &self,
        caller: &Caller,
        req: CreateXksCredentialRequest,
    ) -> Result<CreateXksCredentialResponse, KmsError> {
        self.authorize(caller, Operation::CreateXksCredential)?;
        let name = match req.name {
            Some(n) => n,
            None => random_string(b"abcdefghijklmnopqrstuvwxyz234567", 12)?,
        };
        crate::validate::str_len(&name, "name", 1, 56)?;
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b)) {
            return Err(KmsError::validation(format!(
                "Value '{name}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+"
            )));
        }
        let role = req.role.unwrap_or_else(|| crate::types::Role::Reader.as_str().to_owned());
        crate::validate::one_of(&role, "role", crate::types::Role::NAMES)?;
        let account = match req.account_id.as_deref() {
            None => caller.account.as_str().to_owned(),
            Some(a) if a == caller.account.as_str() => a.to_owned(),
            Some(a) => self.other_account(caller, a).await?,
        };
        let user_name = format!("{XKS_USER_PATH}{name}");
        let arn = format!("arn:aws:iam::{account}:user/{user_name}");
        let now = self.now_ms();
        let access_key_id = random_string(XKS_AKID_ALPHABET, 26)?;
        let secret = SecretBytes::new(random_string(XKS_SECRET_ALPHABET, 44)?.into_bytes());
        if !self.store_user_with_key(&account, &user_name, &arn, &role, &access_key_id, &secret, now).await? {
            return Err(KmsError::AlreadyExists(format!("XKS credential {name} already exists.")));
        }
        Ok(CreateXksCredentialResponse {
            arn,
            role,
            create_date: secs(now),
            access_key_id,
            raw_secret_access_key: String::from_utf8_lossy(secret.expose_secret()).into_owned().into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xks_principals_are_the_xks_path_only() {
        assert!(is_xks_principal("arn:aws:iam::111122223333:user/xks/proxy"));
        assert!(!is_xks_principal("arn:aws:iam::111122223333:user/xksproxy"));
        assert!(!is_xks_principal("arn:aws:iam::111122223333:root"));
        assert!(!is_xks_principal("arn:aws:iam::111122223333:user/alice"));
    }

    #[test]
    fn aad_binds_lengths_and_domain() {
        // Moving bytes between the AAD and the metadata changes the AES-GCM AAD.
        assert_ne!(xks_aad(b"ab", b"c").ok(), xks_aad(b"a", b"bc").ok());
        assert_ne!(xks_aad(b"", b"\x01abcd").ok(), xks_aad(b"\x01abcd", b"").ok());
        let a = xks_aad(b"", b"").unwrap_or_default();
        assert!(a.starts_with(AAD_DOMAIN) && a[0] != crate::ciphertext::FORMAT_V1);
    }
}
