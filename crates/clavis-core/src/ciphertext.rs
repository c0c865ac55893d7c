//! The ciphertext blob that Encrypt and GenerateDataKey return (format in `docs/formats.md`):
//!
//! ```text
//! offset  size  field
//! 0       1     format version, 0x01
//! 1       16    key id (UUID bytes)
//! 17      4     key-material version (u32, big endian)
//! 21      12    AES-GCM nonce
//! 33      n     AES-256-GCM ciphertext of the plaintext
//! 33+n    16    AES-GCM tag
//! ```
//!
//! The additional authenticated data is the 21-byte header followed by the canonical encoding
//! of the encryption context ([`EncryptionContext::canonical_bytes`]), so neither the key id, the
//! version, nor the context can be changed without the tag failing.
//!
//! This module parses and lays out bytes; the AES-GCM itself is done by `clavis-crypto`.

use crate::KmsError;
use crate::types::{EncryptionContext, KeyId};
use clavis_crypto::SecretBytes;
use clavis_crypto::aead::{AeadKey, NONCE_LEN, TAG_LEN};

/// The only format version so far.
pub const FORMAT_V1: u8 = 1;
/// Length of the header that precedes the nonce.
pub const HEADER_LEN: usize = 1 + 16 + 4;
/// Bytes a blob adds to the plaintext.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// The parsed header of a ciphertext blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The key that made the ciphertext.
    pub key_id: KeyId,
    /// The key-material version used.
    pub version: u32,
}

fn invalid() -> KmsError {
    KmsError::InvalidCiphertext("The ciphertext is invalid, was not produced by this service, or was modified.".into())
}

/// Reads the header without decrypting (to find the key).
pub fn parse_header(blob: &[u8]) -> Result<Header, KmsError> {
    if blob.len() < OVERHEAD || blob[0] != FORMAT_V1 {
        return Err(invalid());
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&blob[1..17]);
    let mut ver = [0u8; 4];
    ver.copy_from_slice(&blob[17..21]);
    Ok(Header { key_id: KeyId::from_bytes(id), version: u32::from_be_bytes(ver) })
}

fn aad(header: &[u8], context: &EncryptionContext) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + 64);
    aad.extend_from_slice(header);
    context.canonical_bytes(&mut aad);
    aad
}

/// Encrypts `plaintext` under `key` (material `header.version` of `header.key_id`).
pub fn seal(key: &AeadKey, header: Header, context: &EncryptionContext, plaintext: &[u8]) -> Result<Vec<u8>, KmsError> {
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(header.key_id.as_bytes());
    out.extend_from_slice(&header.version.to_be_bytes());
    let aad = aad(&out, context);
    key.seal_append(&aad, plaintext, &mut out)?;
    Ok(out)
}

/// Decrypts a blob whose header was parsed by [`parse_header`]. Any failure is
/// `InvalidCiphertextException`, without saying which part was wrong.
pub fn open(key: &AeadKey, blob: &[u8], context: &EncryptionContext) -> Result<SecretBytes, KmsError> {
    if blob.len() < OVERHEAD {
        return Err(invalid());
    }
    let (header, body) = blob.split_at(HEADER_LEN);
    key.open(&aad(header, context), body).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        EncryptionContext::parse(Some(map), "c").expect("ctx")
    }

    fn key(b: u8) -> AeadKey {
        AeadKey::new(&SecretBytes::new(vec![b; 32])).expect("key")
    }

    #[test]
    fn round_trip_and_tamper_cases() {
        let k = key(3);
        let h = Header { key_id: KeyId::generate(), version: 7 };
        let c = ctx(&[("purpose", "test")]);
        let blob = seal(&k, h, &c, b"secret data").expect("seal");
        assert_eq!(blob.len(), OVERHEAD + 11);
        assert_eq!(parse_header(&blob).expect("header"), h);
        assert_eq!(open(&k, &blob, &c).expect("open").expose_secret(), b"secret data");

        // Wrong or missing context, wrong key.
        assert!(matches!(open(&k, &blob, &ctx(&[("purpose", "other")])), Err(KmsError::InvalidCiphertext(_))));
        assert!(matches!(open(&k, &blob, &ctx(&[])), Err(KmsError::InvalidCiphertext(_))));
        assert!(matches!(open(&key(4), &blob, &c), Err(KmsError::InvalidCiphertext(_))));
        // Every single-bit flip anywhere is detected (header flips included: they are AAD).
        for i in 0..blob.len() {
            let mut t = blob.clone();
            t[i] ^= 0x80;
            let failed = match parse_header(&t) {
                Err(_) => true,
                Ok(_) => open(&k, &t, &c).is_err(),
            };
            assert!(failed, "flip at byte {i} went undetected");
        }
        // Truncation and garbage.
        for n in [0, 1, HEADER_LEN, OVERHEAD - 1] {
            assert!(parse_header(&blob[..n]).is_err());
        }
        let mut v2 = blob.clone();
        v2[0] = 2;
        assert!(parse_header(&v2).is_err());
    }

    #[test]
    fn empty_plaintext_is_still_authenticated() {
        let k = key(9);
        let h = Header { key_id: KeyId::generate(), version: 1 };
        let blob = seal(&k, h, &ctx(&[]), b"").expect("seal");
        assert_eq!(blob.len(), OVERHEAD);
        assert!(open(&k, &blob, &ctx(&[])).expect("open").is_empty());
    }
}
