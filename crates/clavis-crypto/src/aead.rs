//! AES-256-GCM (NIST SP 800-38D) with 96-bit random nonces and 128-bit tags.

use crate::{CryptoError, SecretBytes, random};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// Key length in bytes.
pub const KEY_LEN: usize = 32;
/// Nonce length in bytes.
pub const NONCE_LEN: usize = 12;
/// Tag length in bytes.
pub const TAG_LEN: usize = 16;

/// An expanded AES-256-GCM key, ready to seal and open. Building one costs a key schedule, so
/// callers cache it rather than the raw bytes.
pub struct AeadKey(LessSafeKey);

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadKey([REDACTED])")
    }
}

impl AeadKey {
    /// Expands a 32-byte key.
    pub fn new(key: &SecretBytes) -> Result<Self, CryptoError> {
        if key.len() != KEY_LEN {
            return Err(CryptoError::InvalidKeyLength { expected: KEY_LEN, actual: key.len() });
        }
        let unbound = UnboundKey::new(&AES_256_GCM, key.expose_secret())
            .map_err(|_| CryptoError::InvalidKeyLength { expected: KEY_LEN, actual: key.len() })?;
        Ok(AeadKey(LessSafeKey::new(unbound)))
    }

    /// Encrypts `plaintext` with a fresh random nonce and appends `nonce || ciphertext || tag`
    /// to `out`.
    pub fn seal_append(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        random::fill(&mut nonce)?;
        out.reserve(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out[start..])
            .map_err(|_| CryptoError::Malformed("plaintext too long"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Decrypts `nonce || ciphertext || tag` as written by [`AeadKey::seal_append`].
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed("sealed data too short"));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let mut nonce_arr = [0u8; NONCE_LEN];
        nonce_arr.copy_from_slice(nonce);
        // Decrypt in place inside the zeroizing buffer, so the plaintext never exists elsewhere.
        let mut buf = SecretBytes::from_slice(body);
        let plain_len = self
            .0
            .open_in_place(Nonce::assume_unique_for_key(nonce_arr), Aad::from(aad), buf.expose_secret_mut())
            .map(|p| p.len())
            .map_err(|_| CryptoError::AuthenticationFailed)?;
        buf.truncate(plain_len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> AeadKey {
        AeadKey::new(&SecretBytes::new(vec![b; KEY_LEN])).expect("valid key")
    }

    #[test]
    fn round_trip_and_tamper() {
        let k = key(7);
        let mut out = Vec::new();
        k.seal_append(b"aad", b"hello", &mut out).expect("seal");
        assert_eq!(out.len(), NONCE_LEN + 5 + TAG_LEN);
        assert_eq!(k.open(b"aad", &out).expect("open").expose_secret(), b"hello");
        assert!(matches!(k.open(b"other", &out), Err(CryptoError::AuthenticationFailed)));
        assert!(matches!(key(8).open(b"aad", &out), Err(CryptoError::AuthenticationFailed)));
        for i in 0..out.len() {
            let mut t = out.clone();
            t[i] ^= 1;
            assert!(k.open(b"aad", &t).is_err(), "flip at {i} must fail");
        }
        assert!(k.open(b"aad", &out[..10]).is_err());
    }

    #[test]
    fn nonces_differ() {
        let k = key(1);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        k.seal_append(b"", b"x", &mut a).expect("seal");
        k.seal_append(b"", b"x", &mut b).expect("seal");
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
    }

    #[test]
    fn rejects_short_key() {
        assert!(matches!(AeadKey::new(&SecretBytes::new(vec![0; 16])), Err(CryptoError::InvalidKeyLength { expected: 32, actual: 16 })));
    }

    /// NIST GCM test vector (gcmEncryptExtIV256.rsp, Count = 0 with PTlen 128, AADlen 0 is not
    /// used here; this is test case 16 of the original McGrew/Viega GCM specification):
    /// K = feffe9928665731c6d6a8f9467308308 feffe9928665731c6d6a8f9467308308.
    #[test]
    fn gcm_spec_test_case_16() {
        let k =
            AeadKey::new(&SecretBytes::new(hex::decode("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308").expect("hex")))
                .expect("key");
        let iv = hex::decode("cafebabefacedbaddecaf888").expect("hex");
        let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").expect("hex");
        let ct = hex::decode(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        )
        .expect("hex");
        let tag = hex::decode("76fc6ece0f4e1768cddf8853bb2d551b").expect("hex");
        let mut sealed = iv;
        sealed.extend_from_slice(&ct);
        sealed.extend_from_slice(&tag);
        let pt = k.open(&aad, &sealed).expect("vector must open");
        assert_eq!(
            hex::encode(pt.expose_secret()),
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
        );
    }
}
