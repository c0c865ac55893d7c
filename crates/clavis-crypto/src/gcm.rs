//! AES-256-GCM (NIST SP 800-38D) with an initialisation vector the caller chooses, sealing and
//! opening in place: what a framed message format needs, where each frame's IV is derived from
//! its sequence number under a key used for that one message only.
//!
//! Nonce uniqueness is the caller's obligation here (unlike [`crate::aead`], which draws random
//! nonces): a key from this module must be single-use, derived per message.

use crate::{CryptoError, SecretBytes};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// Key length in bytes.
pub const KEY_LEN: usize = 32;
/// IV length in bytes.
pub const IV_LEN: usize = 12;
/// Tag length in bytes.
pub const TAG_LEN: usize = 16;

/// An expanded AES-256-GCM key for caller-chosen IVs. `Sync`, so worker threads share it.
pub struct Aes256GcmKey(LessSafeKey);

impl std::fmt::Debug for Aes256GcmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Aes256GcmKey([REDACTED])")
    }
}

impl Aes256GcmKey {
    /// Expands a 32-byte key.
    pub fn new(key: &SecretBytes) -> Result<Aes256GcmKey, CryptoError> {
        if key.len() != KEY_LEN {
            return Err(CryptoError::InvalidKeyLength { expected: KEY_LEN, actual: key.len() });
        }
        let unbound = UnboundKey::new(&AES_256_GCM, key.expose_secret())
            .map_err(|_| CryptoError::InvalidKeyLength { expected: KEY_LEN, actual: key.len() })?;
        Ok(Aes256GcmKey(LessSafeKey::new(unbound)))
    }

    /// Encrypts `in_out` in place under `iv` and `aad`; returns the tag.
    pub fn seal_in_place(&self, iv: [u8; IV_LEN], aad: &[u8], in_out: &mut [u8]) -> Result<[u8; TAG_LEN], CryptoError> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad), in_out)
            .map_err(|_| CryptoError::Malformed("plaintext too long"))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts `ciphertext || tag` in place; on success the first `in_out.len() - TAG_LEN`
    /// bytes hold the plaintext and that length is returned. On failure the buffer's contents
    /// are unspecified and must not be used.
    pub fn open_in_place(&self, iv: [u8; IV_LEN], aad: &[u8], in_out: &mut [u8]) -> Result<usize, CryptoError> {
        if in_out.len() < TAG_LEN {
            return Err(CryptoError::Malformed("sealed data too short"));
        }
        self.0
            .open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(aad), in_out)
            .map(|p| p.len())
            .map_err(|_| CryptoError::AuthenticationFailed)
    }

    /// Decrypts `in_out` in place with the tag given apart, so that the contents of many
    /// frames can sit back to back in one buffer. On failure the buffer's contents are
    /// unspecified and must not be used.
    pub fn open_in_place_separate_tag(
        &self,
        iv: [u8; IV_LEN],
        aad: &[u8],
        tag: &[u8; TAG_LEN],
        in_out: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.0
            .open_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad), tag, in_out)
            .map(|_| ())
            .map_err(|_| CryptoError::AuthenticationFailed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test vectors are constants; a failure is the test failing")]
    use super::*;

    /// Test case 16 of McGrew and Viega's GCM specification (AES-256, 60-byte plaintext, AAD).
    #[test]
    fn gcm_spec_test_case_16() {
        let k =
            Aes256GcmKey::new(&SecretBytes::new(hex::decode("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308").unwrap()))
                .unwrap();
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&hex::decode("cafebabefacedbaddecaf888").unwrap());
        let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let pt = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
        let mut buf = hex::decode(pt).unwrap();
        let tag = k.seal_in_place(iv, &aad, &mut buf).unwrap();
        assert_eq!(
            hex::encode(&buf),
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
        );
        assert_eq!(hex::encode(tag), "76fc6ece0f4e1768cddf8853bb2d551b");
        buf.extend_from_slice(&tag);
        let mut apart = buf[..buf.len() - TAG_LEN].to_vec();
        let n = k.open_in_place(iv, &aad, &mut buf).unwrap();
        assert_eq!(hex::encode(&buf[..n]), pt);
        k.open_in_place_separate_tag(iv, &aad, &tag, &mut apart).unwrap();
        assert_eq!(hex::encode(&apart), pt);
    }

    #[test]
    fn tamper_wrong_iv_and_short_input_fail() {
        let k = Aes256GcmKey::new(&SecretBytes::new(vec![3; KEY_LEN])).unwrap();
        let mut buf = b"frame content".to_vec();
        let tag = k.seal_in_place([1; IV_LEN], b"aad", &mut buf).unwrap();
        buf.extend_from_slice(&tag);
        for i in 0..buf.len() {
            let mut t = buf.clone();
            t[i] ^= 0x80;
            assert!(k.open_in_place([1; IV_LEN], b"aad", &mut t).is_err(), "flip at {i}");
        }
        assert!(k.open_in_place([2; IV_LEN], b"aad", &mut buf.clone()).is_err());
        let (body, t) = buf.split_at(buf.len() - TAG_LEN);
        let mut tag2 = [0u8; TAG_LEN];
        tag2.copy_from_slice(t);
        assert!(k.open_in_place_separate_tag([1; IV_LEN], b"aad", &tag2, &mut body.to_vec()).is_ok());
        tag2[0] ^= 1;
        assert!(k.open_in_place_separate_tag([1; IV_LEN], b"aad", &tag2, &mut body.to_vec()).is_err());
        assert!(k.open_in_place([1; IV_LEN], b"aaD", &mut buf.clone()).is_err());
        assert!(k.open_in_place([1; IV_LEN], b"aad", &mut [0u8; TAG_LEN - 1]).is_err());
        assert!(Aes256GcmKey::new(&SecretBytes::new(vec![0; 16])).is_err());
        assert_eq!(format!("{k:?}"), "Aes256GcmKey([REDACTED])");
    }
}
