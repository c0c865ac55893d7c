//! Parsed domain types: once a value has one of these types it is valid ("parse, don't
//! validate"). Parsing errors are the AWS errors a client would get for that input.

use crate::KmsError;
use std::collections::BTreeMap;

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountId(String);

impl AccountId {
    /// Parses a 12-digit account id.
    pub fn parse(s: &str) -> Option<AccountId> {
        (s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())).then(|| AccountId(s.to_owned()))
    }
    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The account's root principal ARN.
    pub fn root_arn(&self) -> String {
        format!("arn:aws:iam::{}:root", self.0)
    }
    /// A new random account id: the one rule for every account Clavis makes (the operator's at
    /// first start, CreateAccount's without an `AccountId`). Twelve digits from the system RNG,
    /// the first never 0, as AWS's never are. An account id is not a secret, so the slight bias
    /// of reducing a byte modulo 9 or 10 does not matter.
    pub fn generate() -> Result<AccountId, clavis_crypto::CryptoError> {
        let bytes = clavis_crypto::random::bytes(12)?;
        let digit = |i: usize, b: u8| if i == 0 { char::from(b'1' + b % 9) } else { char::from(b'0' + b % 10) };
        Ok(AccountId(bytes.iter().enumerate().map(|(i, &b)| digit(i, b)).collect()))
    }
}

/// A region name such as `us-east-1` (lower-case letters, digits and hyphens).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Region(String);

impl Region {
    /// Parses a region name.
    pub fn parse(s: &str) -> Option<Region> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        ok.then(|| Region(s.to_owned()))
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key's UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(uuid::Uuid);

impl KeyId {
    /// A fresh random (v4) key id.
    pub fn generate() -> KeyId {
        KeyId(uuid::Uuid::new_v4())
    }
    /// Parses the canonical hyphenated form (any case).
    pub fn parse(s: &str) -> Option<KeyId> {
        if s.len() != 36 {
            return None;
        }
        uuid::Uuid::try_parse(s).ok().map(KeyId)
    }
    /// The 16 raw bytes (as stored in ciphertext blobs).
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
    /// From the 16 raw bytes.
    pub fn from_bytes(b: [u8; 16]) -> KeyId {
        KeyId(uuid::Uuid::from_bytes(b))
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// `arn:aws:kms:<region>:<account>:key/<uuid>`.
pub fn key_arn(region: &str, account: &str, key_id: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:key/{key_id}")
}

/// `arn:aws:kms:<region>:<account>:<alias/name>`.
pub fn alias_arn(region: &str, account: &str, alias_name: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:{alias_name}")
}

/// An alias name: `alias/` followed by letters, digits, `/`, `_`, `-` or `:`; at most 256
/// characters in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasName(String);

impl AliasName {
    /// Parses an alias name for creating or updating an alias (reserved `alias/aws/` refused).
    pub fn parse(s: &str, field: &str) -> Result<AliasName, KmsError> {
        if s.is_empty() || s.len() > 256 {
            return Err(KmsError::validation(format!(
                "Value '{s}' at '{field}' failed to satisfy constraint: Member must have length {}",
                if s.is_empty() { "greater than or equal to 1" } else { "less than or equal to 256" }
            )));
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'_' | b'-')) {
            return Err(KmsError::validation(format!(
                "Value '{s}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
            )));
        }
        // AWS's codes here differ from botocore's model (responses captured from AWS):
        // ValidationException for the prefix and for a colon, NotAuthorizedException for the
        // reserved alias/aws/ prefix.
        if !s.starts_with("alias/") || s.len() == "alias/".len() {
            return Err(KmsError::Validation("Alias must start with the prefix \"alias/\". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html".to_string()));
        }
        if s.contains(':') {
            return Err(KmsError::Validation(format!("Alias {s} contains invalid characters for an alias")));
        }
        if s.starts_with("alias/aws/") {
            return Err(KmsError::NotAuthorized(format!(
                "Cannot create, update or delete alias {s}: the prefix alias/aws/ is reserved for AWS managed keys."
            )));
        }
        Ok(AliasName(s.to_owned()))
    }
    /// The name, including `alias/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a request names a key: the forms AWS accepts in a `KeyId` member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// A bare key id.
    Id(KeyId),
    /// A key ARN, with the region and account it names.
    Arn {
        /// Region from the ARN.
        region: String,
        /// Account from the ARN.
        account: String,
        /// Key id from the ARN.
        key_id: KeyId,
    },
    /// `alias/name`.
    Alias(String),
    /// An alias ARN.
    AliasArn {
        /// Region from the ARN.
        region: String,
        /// Account from the ARN.
        account: String,
        /// `alias/name`.
        alias_name: String,
    },
}

impl KeyRef {
    /// Parses a `KeyId` member (length 1..2048, as AWS constrains it). Unrecognised forms are
    /// `NotFoundException: Invalid keyId`, as in AWS.
    pub fn parse(s: &str, field: &str) -> Result<KeyRef, KmsError> {
        if s.is_empty() || s.len() > 2048 {
            return Err(KmsError::validation(format!(
                "Value at '{field}' failed to satisfy constraint: Member must have length {}",
                if s.is_empty() { "greater than or equal to 1" } else { "less than or equal to 2048" }
            )));
        }
        let invalid = || KmsError::NotFound(format!("Invalid keyId '{s}'"));
        if let Some(rest) = s.strip_prefix("arn:") {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            let [partition, service, region, account, resource] = parts[..] else {
                return Err(KmsError::InvalidArn(format!("Invalid arn {s}")));
            };
            if partition != "aws" || service != "kms" || Region::parse(region).is_none() || AccountId::parse(account).is_none() {
                return Err(KmsError::InvalidArn(format!("Invalid arn {s}")));
            }
            if let Some(id) = resource.strip_prefix("key/") {
                let key_id = KeyId::parse(id).ok_or_else(invalid)?;
                return Ok(KeyRef::Arn { region: region.to_owned(), account: account.to_owned(), key_id });
            }
            if resource.starts_with("alias/") {
                return Ok(KeyRef::AliasArn { region: region.to_owned(), account: account.to_owned(), alias_name: resource.to_owned() });
            }
            return Err(invalid());
        }
        if s.starts_with("alias/") {
            return Ok(KeyRef::Alias(s.to_owned()));
        }
        KeyId::parse(s).map(KeyRef::Id).ok_or_else(invalid)
    }

    /// True for the alias forms.
    pub fn is_alias(&self) -> bool {
        matches!(self, KeyRef::Alias(_) | KeyRef::AliasArn { .. })
    }

    /// The alias name (`alias/<name>`) of the alias forms, whether named by name or by ARN (the
    /// value of the `kms:RequestAlias` condition key).
    pub fn alias_name(&self) -> Option<&str> {
        match self {
            KeyRef::Alias(name) | KeyRef::AliasArn { alias_name: name, .. } => Some(name),
            KeyRef::Id(_) | KeyRef::Arn { .. } => None,
        }
    }
}

/// The most bytes an encryption context's keys and values may total (AWS documents 8 KB).
pub const MAX_ENCRYPTION_CONTEXT_BYTES: usize = 8192;

/// The encryption context: string pairs bound to a ciphertext as additional authenticated data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionContext(BTreeMap<String, String>);

impl EncryptionContext {
    /// Parses the request member. Keys must be non-empty.
    pub fn parse(map: Option<BTreeMap<String, String>>, field: &str) -> Result<EncryptionContext, KmsError> {
        let map = map.unwrap_or_default();
        let size: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_ENCRYPTION_CONTEXT_BYTES {
            return Err(KmsError::validation(format!(
                "Value at '{field}' failed to satisfy constraint: the encryption context's keys and values must total at most {MAX_ENCRYPTION_CONTEXT_BYTES} bytes"
            )));
        }
        if map.keys().any(String::is_empty) {
            return Err(KmsError::validation(format!(
                "Value at '{field}' failed to satisfy constraint: Map keys must have length greater than or equal to 1"
            )));
        }
        Ok(EncryptionContext(map))
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.as_map().is_empty()
    }

    /// The pairs.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// The canonical encoding bound as AAD: a big-endian u32 pair count, then for each pair in
    /// byte-wise key order the key and the value, each as a big-endian u32 length and UTF-8
    /// bytes. Unambiguous: no two different contexts encode alike.
    pub fn canonical_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&u32::try_from(self.0.len()).unwrap_or(u32::MAX).to_be_bytes());
        for (k, v) in &self.0 {
            for s in [k, v] {
                out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

/// A built-in role: what an identity may do, so that an operator need not write policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything, including identities and the audit log.
    Admin,
    /// Every key operation.
    Manager,
    /// Create and use keys; no disable, delete, rotation or policy changes.
    Writer,
    /// Use keys (encrypt, decrypt, data keys) and read metadata; nothing that changes a key.
    Reader,
    /// Nothing by itself: the role of a user created without one. Such a user can still use a
    /// key whose policy names it, or a grant to it (see `docs/api.md`, "Access control").
    None,
}

impl Role {
    /// Every role's name, from the most to the least privileged.
    pub const NAMES: &'static [&'static str] = &["admin", "manager", "writer", "reader", "none"];

    /// Parses `admin`, `manager`, `writer`, `reader` or `none`.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "manager" => Role::Manager,
            "writer" => Role::Writer,
            "reader" => Role::Reader,
            "none" => Role::None,
            _ => return None,
        })
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::None => "none",
        }
    }

    /// Whether this is the administrator role.
    pub fn is_admin(self) -> bool {
        self == Role::Admin
    }

    /// How much the role allows: each role allows what the ones below it do.
    fn rank(self) -> u8 {
        match self {
            Role::Admin => 4,
            Role::Manager => 3,
            Role::Writer => 2,
            Role::Reader => 1,
            Role::None => 0,
        }
    }

    /// Whether the role may call `operation` (the catalogue's `min_role`).
    pub fn allows_operation(self, operation: crate::Operation) -> bool {
        self.rank() >= operation.spec().min_role.rank()
    }

    /// Whether the role may call the operation named `operation` (an AWS or Clavis operation
    /// name; a policy action's operation is [`crate::Operation::for_action`]'s). An
    /// administrator may do anything; other roles nothing outside the catalogue.
    pub fn allows(self, operation: &str) -> bool {
        self == Role::Admin || crate::Operation::from_name(operation).is_some_and(|op| self.allows_operation(op))
    }
}

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $(
                #[doc = concat!("`", $text, "`.")]
                $variant,
            )*
        }

        impl $name {
            /// Every value, as AWS lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// Parses the wire name.
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// Every wire name (for `validate::one_of`).
            pub fn names() -> Vec<&'static str> {
                $name::ALL.iter().map(|v| v.as_str()).collect()
            }
        }
    };
}

wire_enum!(
    /// A key spec (AWS `KeySpec`): what kind of material a key holds, in the order CreateKey's
    /// validation message lists them (botocore's model). Clavis creates every one but `SM2`
    /// (refused as AWS refuses it outside China Regions).
    KeySpec {
        Rsa2048 = "RSA_2048",
        Rsa3072 = "RSA_3072",
        Rsa4096 = "RSA_4096",
        EccNistP256 = "ECC_NIST_P256",
        EccNistP384 = "ECC_NIST_P384",
        EccNistP521 = "ECC_NIST_P521",
        EccSecgP256k1 = "ECC_SECG_P256K1",
        SymmetricDefault = "SYMMETRIC_DEFAULT",
        Hmac224 = "HMAC_224",
        Hmac256 = "HMAC_256",
        Hmac384 = "HMAC_384",
        Hmac512 = "HMAC_512",
        Sm2 = "SM2",
        MlDsa44 = "ML_DSA_44",
        MlDsa65 = "ML_DSA_65",
        MlDsa87 = "ML_DSA_87",
        EccNistEdwards25519 = "ECC_NIST_EDWARDS25519",
        MlKem512 = "ML_KEM_512",
        MlKem768 = "ML_KEM_768",
        MlKem1024 = "ML_KEM_1024",
    }
);

wire_enum!(
    /// A key usage (AWS `KeyUsage`).
    KeyUsage {
        SignVerify = "SIGN_VERIFY",
        EncryptDecrypt = "ENCRYPT_DECRYPT",
        GenerateVerifyMac = "GENERATE_VERIFY_MAC",
        KeyAgreement = "KEY_AGREEMENT",
        EncapsulateDecapsulate = "ENCAPSULATE_DECAPSULATE",
    }
);

/// The algorithms a key of one spec and usage offers, as KeyMetadata and GetPublicKey list
/// them (empty lists are left out of the responses, as AWS does).
#[derive(Debug, Clone, Copy, Default)]
pub struct Algorithms {
    /// `EncryptionAlgorithms`.
    pub encryption: &'static [&'static str],
    /// `SigningAlgorithms`.
    pub signing: &'static [&'static str],
    /// `MacAlgorithms`.
    pub mac: &'static [&'static str],
    /// `KeyAgreementAlgorithms`.
    pub key_agreement: &'static [&'static str],
    /// `EncapsulationAlgorithms`.
    pub encapsulation: &'static [&'static str],
}

const RSA_SIGNING: &[&str] = &[
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
    "RSASSA_PSS_SHA_256",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_512",
];

impl KeySpec {
    /// The key usages a key of this spec may have (empty: a spec Clavis does not create).
    pub fn usages(self) -> &'static [KeyUsage] {
        use KeySpec::*;
        match self {
            SymmetricDefault => &[KeyUsage::EncryptDecrypt],
            Rsa2048 | Rsa3072 | Rsa4096 => &[KeyUsage::EncryptDecrypt, KeyUsage::SignVerify],
            EccNistP256 | EccNistP384 | EccNistP521 => &[KeyUsage::SignVerify, KeyUsage::KeyAgreement],
            EccSecgP256k1 | EccNistEdwards25519 | MlDsa44 | MlDsa65 | MlDsa87 => &[KeyUsage::SignVerify],
            Hmac224 | Hmac256 | Hmac384 | Hmac512 => &[KeyUsage::GenerateVerifyMac],
            MlKem512 | MlKem768 | MlKem1024 => &[KeyUsage::EncapsulateDecapsulate],
            Sm2 => &[],
        }
    }

    /// Whether the key is an HMAC key.
    pub fn is_hmac(self) -> bool {
        matches!(self, KeySpec::Hmac224 | KeySpec::Hmac256 | KeySpec::Hmac384 | KeySpec::Hmac512)
    }

    /// Whether the key is a key pair (RSA, ECC, ML-DSA, ML-KEM).
    pub fn is_asymmetric(self) -> bool {
        !matches!(self, KeySpec::SymmetricDefault | KeySpec::Sm2) && !self.is_hmac()
    }

    /// The algorithms of a key of this spec and usage.
    pub fn algorithms(self, usage: KeyUsage) -> Algorithms {
        use KeySpec::*;
        let none = Algorithms::default();
        match (self, usage) {
            (SymmetricDefault, KeyUsage::EncryptDecrypt) => Algorithms { encryption: &[SYMMETRIC_DEFAULT], ..none },
            (Rsa2048 | Rsa3072 | Rsa4096, KeyUsage::EncryptDecrypt) => {
                Algorithms { encryption: &["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"], ..none }
            }
            (Rsa2048 | Rsa3072 | Rsa4096, KeyUsage::SignVerify) => Algorithms { signing: RSA_SIGNING, ..none },
            (EccNistP256 | EccSecgP256k1, KeyUsage::SignVerify) => Algorithms { signing: &["ECDSA_SHA_256"], ..none },
            (EccNistP384, KeyUsage::SignVerify) => Algorithms { signing: &["ECDSA_SHA_384"], ..none },
            (EccNistP521, KeyUsage::SignVerify) => Algorithms { signing: &["ECDSA_SHA_512"], ..none },
            (EccNistP256 | EccNistP384 | EccNistP521, KeyUsage::KeyAgreement) => Algorithms { key_agreement: &["ECDH"], ..none },
            (EccNistEdwards25519, KeyUsage::SignVerify) => Algorithms { signing: &["ED25519_SHA_512", "ED25519_PH_SHA_512"], ..none },
            (MlDsa44 | MlDsa65 | MlDsa87, KeyUsage::SignVerify) => Algorithms { signing: &["ML_DSA_SHAKE_256"], ..none },
            (Hmac224, _) => Algorithms { mac: &["HMAC_SHA_224"], ..none },
            (Hmac256, _) => Algorithms { mac: &["HMAC_SHA_256"], ..none },
            (Hmac384, _) => Algorithms { mac: &["HMAC_SHA_384"], ..none },
            (Hmac512, _) => Algorithms { mac: &["HMAC_SHA_512"], ..none },
            (MlKem512 | MlKem768 | MlKem1024, _) => Algorithms { encapsulation: &["ML_KEM"], ..none },
            _ => none,
        }
    }
}

wire_enum!(
    /// Where a key's material comes from (AWS `Origin`).
    Origin {
        AwsKms = "AWS_KMS",
        External = "EXTERNAL",
        AwsCloudhsm = "AWS_CLOUDHSM",
        ExternalKeyStore = "EXTERNAL_KEY_STORE",
    }
);

/// The AWS key states Clavis uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// Suspended; reversible.
    Disabled,
    /// Scheduled for deletion.
    PendingDeletion,
    /// Waiting for imported material.
    PendingImport,
}

impl KeyState {
    /// The AWS name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
            KeyState::PendingImport => "PendingImport",
        }
    }
    /// Parses a stored state.
    pub fn parse(s: &str) -> Option<KeyState> {
        Some(match s {
            "Enabled" => KeyState::Enabled,
            "Disabled" => KeyState::Disabled,
            "PendingDeletion" => KeyState::PendingDeletion,
            "PendingImport" => KeyState::PendingImport,
            _ => return None,
        })
    }
}

/// Unix milliseconds as the seconds (with fraction) AWS's JSON timestamps carry.
pub(crate) fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A grant token: `v1.<grant id>.<random>` in unpadded base64url. Opaque to clients.
pub(crate) fn make_grant_token(grant_id: &str) -> Result<String, KmsError> {
    let nonce = hex::encode(clavis_crypto::random::bytes(16)?);
    Ok(URL_SAFE_NO_PAD.encode(format!("v1.{grant_id}.{nonce}")))
}

/// The grant id inside a token Clavis issued, or `InvalidGrantTokenException`.
pub(crate) fn grant_token_id(token: &str) -> Result<String, KmsError> {
    let invalid = || KmsError::InvalidGrantToken("The grant token is not valid.".into());
    let text = URL_SAFE_NO_PAD.decode(token.as_bytes()).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(invalid)?;
    let mut parts = text.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("v1"), Some(id), Some(nonce), None) if is_grant_id(id) && nonce.len() == 32 => Ok(id.to_owned()),
        _ => Err(invalid()),
    }
}

pub(crate) fn is_grant_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The value of `kms:EncryptionAlgorithm`, KeyMetadata's algorithm and the responses' for a
/// symmetric key.
pub(crate) const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_account_ids_parse_and_never_start_with_zero() {
        for _ in 0..200 {
            let id = AccountId::generate().unwrap();
            assert_eq!(AccountId::parse(id.as_str()), Some(id.clone()));
            assert!(!id.as_str().starts_with('0'), "{}", id.as_str());
        }
    }

    #[test]
    fn parses_key_refs() {
        let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
        assert!(matches!(KeyRef::parse(id, "keyId"), Ok(KeyRef::Id(_))));
        assert!(matches!(KeyRef::parse(&format!("arn:aws:kms:us-east-1:111122223333:key/{id}"), "keyId"), Ok(KeyRef::Arn { .. })));
        assert_eq!(KeyRef::parse("alias/x", "keyId").ok(), Some(KeyRef::Alias("alias/x".into())));
        assert!(matches!(KeyRef::parse("arn:aws:kms:us-east-1:111122223333:alias/x", "keyId"), Ok(KeyRef::AliasArn { .. })));
        assert!(matches!(KeyRef::parse("", "keyId"), Err(KmsError::Validation(_))));
        assert!(matches!(KeyRef::parse(&"a".repeat(2049), "keyId"), Err(KmsError::Validation(_))));
        assert!(matches!(KeyRef::parse("nope", "keyId"), Err(KmsError::NotFound(_))));
        assert!(matches!(KeyRef::parse("arn:aws:kms:us-east-1:1:key/x", "keyId"), Err(KmsError::InvalidArn(_))));
    }

    #[test]
    fn roles_nest() {
        for op in crate::Operation::ALL.iter().filter(|o| o.spec().min_role != Role::Admin) {
            assert!(Role::Admin.allows_operation(*op) && Role::Manager.allows_operation(*op), "{op:?}");
        }
        assert!(Role::Reader.allows("Decrypt") && !Role::Reader.allows("CreateKey") && !Role::Reader.allows("DisableKey"));
        assert!(Role::Writer.allows("CreateKey") && !Role::Writer.allows("ScheduleKeyDeletion") && !Role::Writer.allows("PutKeyPolicy"));
        assert!(
            Role::Manager.allows("ScheduleKeyDeletion") && !Role::Manager.allows("CreateUser") && !Role::Manager.allows("LookupEvents")
        );
        assert!(Role::Admin.allows("CreateUser"));
        assert_eq!(Role::parse("writer"), Some(Role::Writer));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn alias_names() {
        // AWS's codes (#17): the prefix and a colon are ValidationException, the reserved
        // prefix NotAuthorizedException.
        assert!(AliasName::parse("alias/my-key_1/x", "aliasName").is_ok());
        assert!(matches!(AliasName::parse("alias/my:key", "aliasName"), Err(KmsError::Validation(_))));
        assert!(matches!(AliasName::parse("my-key", "aliasName"), Err(KmsError::Validation(_))));
        assert!(matches!(AliasName::parse("alias/", "aliasName"), Err(KmsError::Validation(_))));
        assert!(matches!(AliasName::parse("alias/aws/s3", "aliasName"), Err(KmsError::NotAuthorized(_))));
        assert!(matches!(AliasName::parse("alias/sp ace", "aliasName"), Err(KmsError::Validation(_))));
        assert!(matches!(AliasName::parse(&format!("alias/{}", "a".repeat(251)), "aliasName"), Err(KmsError::Validation(_))));
    }

    #[test]
    fn context_encoding_is_unambiguous() {
        let enc = |pairs: &[(&str, &str)]| {
            let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let mut out = Vec::new();
            EncryptionContext::parse(Some(map), "c").expect("valid").canonical_bytes(&mut out);
            out
        };
        assert_eq!(enc(&[]), vec![0, 0, 0, 0]);
        assert_ne!(enc(&[("ab", "c")]), enc(&[("a", "bc")]));
        assert_eq!(enc(&[("b", "2"), ("a", "1")]), enc(&[("a", "1"), ("b", "2")]));
        assert_ne!(enc(&[("a", "")]), enc(&[]));
    }
}
