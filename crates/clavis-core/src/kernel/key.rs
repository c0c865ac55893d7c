//! A key as the operations see it: a parsed [`KeyRecord`] plus the state rules, and the cache
//! of unsealed material.
//!
//! Unsealed material lives only here, as expanded AES keys ([`AeadKey`]) inside `Arc`s; the
//! buffers are wiped when the last reference drops.

use crate::KmsError;
use crate::policy::Policy;
use crate::types::{KeyId, KeySpec, KeyState, KeyUsage, Origin, key_arn};
use clavis_crypto::aead::AeadKey;
use clavis_crypto::asymmetric::{MacHash, MacKey, PairSpec, PrivateKey};
use clavis_store::KeyRecord;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A key record that has been parsed and checked.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    /// Shared, so that cached keys are cheap to hand out.
    pub rec: Arc<KeyRecord>,
    pub id: KeyId,
    pub state: KeyState,
    /// The record's key spec, usage and origin, parsed once.
    pub spec: KeySpec,
    pub usage: KeyUsage,
    pub origin: Origin,
    pub arn: String,
    /// The parsed key policy ([`Policy::for_stored`]): a stored document that no longer parses
    /// is kept as an unreadable policy that denies every request, never replaced by another.
    pub policy: Arc<Policy>,
}

impl Key {
    pub fn from_record(rec: KeyRecord) -> Result<Key, KmsError> {
        let id = KeyId::parse(&rec.key_id).ok_or_else(|| KmsError::Internal(format!("stored key id {:?} is not a UUID", rec.key_id)))?;
        let state = KeyState::parse(&rec.key_state)
            .ok_or_else(|| KmsError::Internal(format!("stored key {} has unknown state {:?}", rec.key_id, rec.key_state)))?;
        let bad = |what: &str, value: &str| KmsError::Internal(format!("stored key {} has unknown {what} {value:?}", rec.key_id));
        let spec = KeySpec::parse(&rec.key_spec).ok_or_else(|| bad("key spec", &rec.key_spec))?;
        let usage = KeyUsage::parse(&rec.key_usage).ok_or_else(|| bad("key usage", &rec.key_usage))?;
        let origin = Origin::parse(&rec.origin).ok_or_else(|| bad("origin", &rec.origin))?;
        let arn = key_arn(&rec.region, &rec.account_id, &rec.key_id);
        // The key itself stays readable (the scheduler must still be able to destroy it, an
        // operator to see it in ListKeys); only authorization refuses.
        let policy = Arc::new(Policy::for_stored(&rec.policy));
        Ok(Key { rec: Arc::new(rec), id, state, spec, usage, origin, arn, policy })
    }

    /// The key may be used for cryptography only when Enabled; otherwise the AWS error for its
    /// state.
    pub fn check_usable(&self) -> Result<(), KmsError> {
        match self.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::Disabled(format!("{} is disabled.", self.arn))),
            other => Err(self.invalid_state(other)),
        }
    }

    pub fn invalid_state(&self, state: KeyState) -> KmsError {
        let what = match state {
            KeyState::PendingDeletion => "pending deletion",
            KeyState::PendingImport => "pending import",
            KeyState::Disabled => "disabled",
            KeyState::Enabled => "enabled",
        };
        KmsError::InvalidState(format!("{} is {what}.", self.arn))
    }

    /// The key's usage must be `usage` for `operation` (AWS's words).
    pub fn check_usage(&self, usage: KeyUsage, operation: &str) -> Result<(), KmsError> {
        if self.usage != usage {
            return Err(KmsError::InvalidKeyUsage(format!(
                "{} key usage is {} which is not valid for {operation}.",
                self.arn, self.rec.key_usage
            )));
        }
        Ok(())
    }

    /// Symmetric encryption needs an ENCRYPT_DECRYPT key of spec SYMMETRIC_DEFAULT.
    /// AWS's words: the usage first ("key usage is SIGN_VERIFY which is not valid for ..."),
    /// then the algorithm ("Algorithm SYMMETRIC_DEFAULT is incompatible with key spec RSA_2048.").
    pub fn check_symmetric_encrypt(&self) -> Result<(), KmsError> {
        if self.usage != KeyUsage::EncryptDecrypt {
            return Err(KmsError::InvalidKeyUsage(format!(
                "{} key usage is {} which is not valid for symmetric encryption (SYMMETRIC_DEFAULT).",
                self.arn, self.rec.key_usage
            )));
        }
        if self.spec != KeySpec::SymmetricDefault {
            return Err(KmsError::InvalidKeyUsage(format!(
                "Algorithm SYMMETRIC_DEFAULT is incompatible with key spec {}.",
                self.rec.key_spec
            )));
        }
        Ok(())
    }
}

/// The seal context that binds a sealed blob to one key-material version.
pub(crate) fn material_seal_context(key_id: &KeyId, version: u32) -> Vec<u8> {
    let mut c = b"clavis/key-material/v1\0".to_vec();
    c.extend_from_slice(key_id.as_bytes());
    c.extend_from_slice(&version.to_be_bytes());
    c
}

/// The seal context that binds a sealed secret to one access key id.
pub(crate) fn access_key_seal_context(access_key_id: &str) -> Vec<u8> {
    let mut c = b"clavis/access-key/v1\0".to_vec();
    c.extend_from_slice(access_key_id.as_bytes());
    c
}

/// How long expired import parameters are kept before they are purged, so that a late
/// ImportKeyMaterial still gets `ExpiredImportTokenException` rather than
/// `InvalidImportTokenException`.
pub(crate) const EXPIRED_PARAMS_KEPT_MS: i64 = 24 * 3_600_000;

/// The seal context of an import token's wrapping private key.
pub(crate) fn import_params_seal_context(key_id: &crate::types::KeyId, token_id: &str) -> Vec<u8> {
    let mut c = b"clavis/import-wrapping-key/v1\0".to_vec();
    c.extend_from_slice(key_id.as_bytes());
    c.extend_from_slice(token_id.as_bytes());
    c
}

/// Unsealed key material of one version, by key family, parsed once (the cache holds it
/// expanded, so a request does no key parsing).
// Material lives only behind an `Arc` in the cache, one allocation per version, so the size
// of its largest variant costs nothing per use.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Material {
    /// A SYMMETRIC_DEFAULT key's AES-256-GCM key.
    Aes256(AeadKey),
    /// An HMAC key.
    Mac(MacKey),
    /// A key pair (RSA, ECC, ML-DSA, ML-KEM).
    Pair(PrivateKey),
}

/// The crypto layer's kind of key pair for a key spec.
pub(crate) fn pair_spec(spec: KeySpec) -> Option<PairSpec> {
    Some(match spec {
        KeySpec::Rsa2048 => PairSpec::Rsa2048,
        KeySpec::Rsa3072 => PairSpec::Rsa3072,
        KeySpec::Rsa4096 => PairSpec::Rsa4096,
        KeySpec::EccNistP256 => PairSpec::P256,
        KeySpec::EccNistP384 => PairSpec::P384,
        KeySpec::EccNistP521 => PairSpec::P521,
        KeySpec::EccSecgP256k1 => PairSpec::Secp256k1,
        KeySpec::EccNistEdwards25519 => PairSpec::Ed25519,
        KeySpec::MlDsa44 => PairSpec::MlDsa44,
        KeySpec::MlDsa65 => PairSpec::MlDsa65,
        KeySpec::MlDsa87 => PairSpec::MlDsa87,
        KeySpec::MlKem512 => PairSpec::MlKem512,
        KeySpec::MlKem768 => PairSpec::MlKem768,
        KeySpec::MlKem1024 => PairSpec::MlKem1024,
        KeySpec::SymmetricDefault | KeySpec::Hmac224 | KeySpec::Hmac256 | KeySpec::Hmac384 | KeySpec::Hmac512 | KeySpec::Sm2 => {
            return None;
        }
    })
}

/// The hash and key length (bytes) of an HMAC key spec.
pub(crate) fn mac_params(spec: KeySpec) -> Option<(MacHash, usize)> {
    Some(match spec {
        KeySpec::Hmac224 => (MacHash::Sha224, 28),
        KeySpec::Hmac256 => (MacHash::Sha256, 32),
        KeySpec::Hmac384 => (MacHash::Sha384, 48),
        KeySpec::Hmac512 => (MacHash::Sha512, 64),
        _ => return None,
    })
}

impl Material {
    /// Material of a key of this spec from its unsealed bytes.
    pub fn from_bytes(spec: KeySpec, bytes: &clavis_crypto::SecretBytes) -> Result<Material, KmsError> {
        if spec == KeySpec::SymmetricDefault {
            return Ok(Material::Aes256(AeadKey::new(bytes)?));
        }
        if let Some((hash, _)) = mac_params(spec) {
            return Ok(Material::Mac(MacKey::new(hash, bytes)));
        }
        match pair_spec(spec) {
            Some(kind) => Ok(Material::Pair(PrivateKey::from_der(kind, bytes)?)),
            None => Err(KmsError::Internal(format!("no material of key spec {} can be loaded", spec.as_str()))),
        }
    }

    /// The AES-256-GCM key of a symmetric key.
    pub fn aes(&self) -> Result<&AeadKey, KmsError> {
        match self {
            Material::Aes256(k) => Ok(k),
            _ => Err(KmsError::Internal("not a symmetric key's material".into())),
        }
    }

    /// The HMAC key of an HMAC key.
    pub fn mac(&self) -> Result<&MacKey, KmsError> {
        match self {
            Material::Mac(k) => Ok(k),
            _ => Err(KmsError::Internal("not an HMAC key's material".into())),
        }
    }

    /// The private key of a key pair.
    pub fn pair(&self) -> Result<&PrivateKey, KmsError> {
        match self {
            Material::Pair(k) => Ok(k),
            _ => Err(KmsError::Internal("not a key pair's material".into())),
        }
    }
}

/// Unsealed key material by (key, version). Material versions are immutable, so entries never
/// go stale; destruction (a later issue) must evict.
#[derive(Default)]
pub(crate) struct MaterialCache {
    map: RwLock<HashMap<(KeyId, u32), Arc<Material>>>,
}

/// Bounds memory: past this many entries the cache is cleared and refills on demand.
const MATERIAL_CACHE_MAX: usize = 100_000;

impl MaterialCache {
    pub fn get(&self, id: KeyId, version: u32) -> Option<Arc<Material>> {
        self.map.read().ok()?.get(&(id, version)).cloned()
    }

    /// Drops every entry (sealing: the unsealed material is wiped as its last `Arc` drops).
    pub fn clear(&self) {
        if let Ok(mut m) = self.map.write() {
            m.clear();
        }
    }

    /// Drops every version of a key (destroyed, or its imported material replaced).
    pub fn remove_key(&self, id: KeyId) {
        if let Ok(mut m) = self.map.write() {
            m.retain(|(k, _), _| *k != id);
        }
    }

    /// Caches material unsealed a moment ago, unless the server was sealed since: `unsealed` is
    /// checked under the cache's lock, and sealing seals the root before it clears the cache,
    /// so material unsealed before a seal can never be put back after the clear.
    pub fn insert(&self, id: KeyId, version: u32, key: Arc<Material>, unsealed: impl Fn() -> bool) {
        if let Ok(mut m) = self.map.write() {
            if !unsealed() {
                return;
            }
            if m.len() >= MATERIAL_CACHE_MAX {
                m.clear();
            }
            m.insert((id, version), key);
        }
    }
}

/// How long a cached key record may be served without reading storage again. Changes made
/// through this node replace the entry at once; the TTL bounds how stale a change made by
/// another node sharing the database can be: 0.9 s, so that a change is in force on every
/// node within one second of its acknowledgement, request time included.
pub(crate) const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_millis(900);

/// Parsed key records by id, each with the instant it was read.
#[derive(Default)]
pub(crate) struct KeyCache {
    map: RwLock<HashMap<KeyId, (Key, std::time::Instant)>>,
}

impl KeyCache {
    pub fn get(&self, id: &KeyId) -> Option<Key> {
        let map = self.map.read().ok()?;
        let (key, at) = map.get(id)?;
        (at.elapsed() < KEY_CACHE_TTL).then(|| key.clone())
    }

    pub fn remove(&self, id: &KeyId) {
        if let Ok(mut m) = self.map.write() {
            m.remove(id);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut m) = self.map.write() {
            m.clear();
        }
    }

    pub fn put(&self, key: &Key) {
        if let Ok(mut m) = self.map.write() {
            if m.len() >= MATERIAL_CACHE_MAX {
                m.retain(|_, (_, at)| at.elapsed() < KEY_CACHE_TTL);
            }
            m.insert(key.id, (key.clone(), std::time::Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Test code.
    use super::*;
    use clavis_crypto::SecretBytes;

    #[test]
    fn material_unsealed_before_a_seal_is_not_cached_after_it() {
        let cache = MaterialCache::default();
        let id = KeyId::parse("1234abcd-12ab-34cd-56ef-1234567890ab").unwrap();
        let aead = Arc::new(Material::Aes256(AeadKey::new(&SecretBytes::new(vec![1u8; 32])).unwrap()));
        cache.insert(id, 1, aead.clone(), || true);
        assert!(cache.get(id, 1).is_some());
        // Sealing: the root is sealed, then the cache cleared; a request that unsealed the
        // material before the seal inserts it afterwards.
        let sealed = std::sync::atomic::AtomicBool::new(true);
        cache.clear();
        cache.insert(id, 1, aead, || !sealed.load(std::sync::atomic::Ordering::SeqCst));
        assert!(cache.get(id, 1).is_none(), "material cached after the seal");
    }
}
