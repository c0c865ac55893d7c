//! Bring your own key: RSA wrapping key pairs for import (RSA 2048/3072/4096), and unwrapping
//! imported key material as AWS KMS defines it:
//!
//! - `RSAES_OAEP_SHA_1` / `RSAES_OAEP_SHA_256`: the material encrypted with RSA-OAEP
//!   (RFC 8017, MGF1 with the same hash).
//! - `RSA_AES_KEY_WRAP_SHA_1` / `RSA_AES_KEY_WRAP_SHA_256`: an ephemeral AES-256 key encrypted
//!   with RSA-OAEP, followed by the material wrapped under that key with AES key wrap with
//!   padding (RFC 5649).
//!
//! The client side ([`wrap_for_import`]) is here too, for `clavis key import`.

use crate::aead::AeadKey;
use crate::digest::hmac_sha256;
use crate::{CryptoError, SecretBytes, random};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::key_wrap::{AES_256, KeyEncryptionKey, KeyWrapPadded};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};

/// How imported material is wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportWrapping {
    /// RSAES_OAEP_SHA_1.
    OaepSha1,
    /// RSAES_OAEP_SHA_256.
    OaepSha256,
    /// RSA_AES_KEY_WRAP_SHA_1.
    RsaAesSha1,
    /// RSA_AES_KEY_WRAP_SHA_256.
    RsaAesSha256,
}

impl ImportWrapping {
    /// Parses the AWS name.
    pub fn parse(name: &str) -> Option<ImportWrapping> {
        Some(match name {
            "RSAES_OAEP_SHA_1" => ImportWrapping::OaepSha1,
            "RSAES_OAEP_SHA_256" => ImportWrapping::OaepSha256,
            "RSA_AES_KEY_WRAP_SHA_1" => ImportWrapping::RsaAesSha1,
            "RSA_AES_KEY_WRAP_SHA_256" => ImportWrapping::RsaAesSha256,
            _ => return None,
        })
    }

    fn oaep(self) -> &'static OaepAlgorithm {
        match self {
            ImportWrapping::OaepSha1 | ImportWrapping::RsaAesSha1 => &OAEP_SHA1_MGF1SHA1,
            ImportWrapping::OaepSha256 | ImportWrapping::RsaAesSha256 => &OAEP_SHA256_MGF1SHA256,
        }
    }

    fn uses_aes_wrap(self) -> bool {
        matches!(self, ImportWrapping::RsaAesSha1 | ImportWrapping::RsaAesSha256)
    }
}

/// A fresh RSA wrapping key pair: the private key as PKCS#8 DER (secret; seal it before
/// storing) and the public key as DER SubjectPublicKeyInfo.
pub fn generate_wrapping_key(bits: u32) -> Result<(SecretBytes, Vec<u8>), CryptoError> {
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        _ => return Err(CryptoError::Malformed("unsupported RSA key size")),
    };
    let private = PrivateDecryptingKey::generate(size).map_err(|_| CryptoError::Rng)?;
    let pkcs8 = private.as_der().map_err(|_| CryptoError::Malformed("PKCS#8 encoding"))?;
    let public = private.public_key().as_der().map_err(|_| CryptoError::Malformed("SPKI encoding"))?;
    Ok((SecretBytes::from_slice(pkcs8.as_ref()), public.as_ref().to_vec()))
}

/// Unwraps imported material with the wrapping private key (PKCS#8). Any failure means the
/// material was not wrapped for this key and algorithm.
pub fn unwrap_import(private_pkcs8: &SecretBytes, wrapping: ImportWrapping, wrapped: &[u8]) -> Result<SecretBytes, CryptoError> {
    let private = PrivateDecryptingKey::from_pkcs8(private_pkcs8.expose_secret()).map_err(|_| CryptoError::Malformed("wrapping key"))?;
    let key = OaepPrivateDecryptingKey::new(private).map_err(|_| CryptoError::Malformed("wrapping key"))?;
    let rsa_len = key.key_size_bytes();
    let (rsa_part, rest) = if wrapping.uses_aes_wrap() {
        if wrapped.len() <= rsa_len {
            return Err(CryptoError::AuthenticationFailed);
        }
        wrapped.split_at(rsa_len)
    } else {
        (wrapped, &[][..])
    };
    let mut buf = SecretBytes::new(vec![0u8; key.min_output_size()]);
    let n = key.decrypt(wrapping.oaep(), rsa_part, buf.expose_secret_mut(), None).map_err(|_| CryptoError::AuthenticationFailed)?.len();
    buf.truncate(n);
    if !wrapping.uses_aes_wrap() {
        return Ok(buf);
    }
    let kek = KeyEncryptionKey::new(&AES_256, buf.expose_secret()).map_err(|_| CryptoError::AuthenticationFailed)?;
    let mut out = SecretBytes::new(vec![0u8; rest.len()]);
    let n = kek.unwrap_with_padding(rest, out.expose_secret_mut()).map_err(|_| CryptoError::AuthenticationFailed)?.len();
    out.truncate(n);
    Ok(out)
}

/// The client side: wraps `material` for the public key (DER SubjectPublicKeyInfo).
pub fn wrap_for_import(public_der: &[u8], wrapping: ImportWrapping, material: &SecretBytes) -> Result<Vec<u8>, CryptoError> {
    let public = PublicEncryptingKey::from_der(public_der).map_err(|_| CryptoError::Malformed("wrapping public key"))?;
    let key = OaepPublicEncryptingKey::new(public).map_err(|_| CryptoError::Malformed("wrapping public key"))?;
    let rsa_encrypt = |plain: &[u8]| -> Result<Vec<u8>, CryptoError> {
        let mut out = vec![0u8; key.ciphertext_size()];
        let n = key.encrypt(wrapping.oaep(), plain, &mut out, None).map_err(|_| CryptoError::Malformed("RSA-OAEP"))?.len();
        out.truncate(n);
        Ok(out)
    };
    if !wrapping.uses_aes_wrap() {
        return rsa_encrypt(material.expose_secret());
    }
    let ephemeral = random::secret(32)?;
    let mut out = rsa_encrypt(ephemeral.expose_secret())?;
    let kek = KeyEncryptionKey::new(&AES_256, ephemeral.expose_secret()).map_err(|_| CryptoError::Malformed("AES key"))?;
    let mut wrapped = vec![0u8; material.len() + 16];
    let n = kek.wrap_with_padding(material.expose_secret(), &mut wrapped).map_err(|_| CryptoError::Malformed("AES-KWP"))?.len();
    out.extend_from_slice(&wrapped[..n]);
    Ok(out)
}

/// A one-way fingerprint of imported material, bound to `context` (the key id), so that a
/// re-import can be checked against the first one after the material itself was deleted.
pub fn material_fingerprint(material: &SecretBytes, context: &[u8]) -> [u8; 32] {
    let mut msg = b"clavis/import-fingerprint/v1\0".to_vec();
    msg.extend_from_slice(context);
    hmac_sha256(material.expose_secret(), &msg)
}

/// Proof of possession (the IBM Key Protect nonce flow): `iv || AES-256-GCM(material, nonce)`
/// must decrypt to the nonce the import parameters carried.
pub fn verify_nonce(material: &SecretBytes, iv: &[u8], encrypted_nonce: &[u8], expected: &[u8]) -> bool {
    let Ok(key) = AeadKey::new(material) else { return false };
    let mut sealed = iv.to_vec();
    sealed.extend_from_slice(encrypted_nonce);
    key.open(b"", &sealed).is_ok_and(|n| crate::digest::constant_time_eq(n.expose_secret(), expected))
}

/// The client side of the nonce flow: returns `(iv, AES-256-GCM(material, nonce) with tag)`.
pub fn encrypt_nonce(material: &SecretBytes, nonce: &[u8]) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let key = AeadKey::new(material)?;
    let mut out = Vec::new();
    key.seal_append(b"", nonce, &mut out)?;
    let body = out.split_off(crate::aead::NONCE_LEN);
    Ok((out, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_algorithm() {
        let (private, public) = generate_wrapping_key(2048).expect("keygen");
        let material = SecretBytes::new(vec![0x42; 32]);
        for w in [ImportWrapping::OaepSha1, ImportWrapping::OaepSha256, ImportWrapping::RsaAesSha1, ImportWrapping::RsaAesSha256] {
            let wrapped = wrap_for_import(&public, w, &material).expect("wrap");
            assert_eq!(unwrap_import(&private, w, &wrapped).expect("unwrap"), material, "{w:?}");
            let mut bad = wrapped.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(unwrap_import(&private, w, &bad).is_err(), "{w:?} tampered");
        }
        // The OAEP hash is part of the algorithm.
        let wrapped = wrap_for_import(&public, ImportWrapping::OaepSha1, &material).expect("wrap");
        assert!(unwrap_import(&private, ImportWrapping::OaepSha256, &wrapped).is_err());
    }

    #[test]
    fn nonce_proof() {
        let material = SecretBytes::new(vec![9; 32]);
        let (iv, enc) = encrypt_nonce(&material, b"nonce-123").expect("encrypt");
        assert!(verify_nonce(&material, &iv, &enc, b"nonce-123"));
        assert!(!verify_nonce(&material, &iv, &enc, b"nonce-124"));
        assert!(!verify_nonce(&SecretBytes::new(vec![8; 32]), &iv, &enc, b"nonce-123"));
    }
}
