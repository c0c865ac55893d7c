//! HKDF with HMAC-SHA512 (RFC 5869), extract once and expand several times, as the AWS
//! Encryption SDK's committing algorithm suites derive their encryption and commitment keys.

use crate::{CryptoError, SecretBytes};
use aws_lc_rs::hkdf;

/// The longest output one expand step may produce (RFC 5869: 255 times the hash length).
pub const MAX_OUTPUT_LEN: usize = 255 * 64;

/// A pseudorandom key from HKDF-SHA512's extract step. Deliberately not `Debug` or `Clone`.
pub struct HkdfSha512Prk(hkdf::Prk);

/// The output length, as aws-lc-rs's expand step asks for it.
struct OutputLen(usize);

impl hkdf::KeyType for OutputLen {
    fn len(&self) -> usize {
        self.0
    }
}

impl HkdfSha512Prk {
    /// The extract step: HMAC-SHA512 of the input keying material `ikm` keyed with `salt`.
    pub fn extract(salt: &[u8], ikm: &SecretBytes) -> HkdfSha512Prk {
        HkdfSha512Prk(hkdf::Salt::new(hkdf::HKDF_SHA512, salt).extract(ikm.expose_secret()))
    }

    /// The expand step: `len` bytes of output keying material bound to `info`.
    pub fn expand(&self, info: &[&[u8]], len: usize) -> Result<SecretBytes, CryptoError> {
        if len == 0 || len > MAX_OUTPUT_LEN {
            return Err(CryptoError::Malformed("HKDF output length out of range"));
        }
        let mut out = SecretBytes::new(vec![0u8; len]);
        self.0
            .expand(info, OutputLen(len))
            .and_then(|okm| okm.fill(out.expose_secret_mut()))
            .map_err(|_| CryptoError::Malformed("HKDF expand failed"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test vectors are constants; a failure is the test failing")]
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 5869 test case 1's inputs with SHA-512 in place of SHA-256 (the RFC has no SHA-512
    /// vectors); the expected output was computed independently with Python's `cryptography`
    /// (OpenSSL) HKDF, so this is a cross-implementation check rather than a published vector.
    #[test]
    fn rfc5869_case_1_inputs_with_sha512() {
        let prk = HkdfSha512Prk::extract(&unhex("000102030405060708090a0b0c"), &SecretBytes::new(vec![0x0b; 22]));
        let okm = prk.expand(&[&unhex("f0f1f2f3f4f5f6f7f8f9")], 42).unwrap();
        assert_eq!(hex::encode(okm.expose_secret()), OKM_CASE_1);
    }

    const OKM_CASE_1: &str = "832390086cda71fb47625bb5ceb168e4c8e26a1a16ed34d9fc7fe92c1481579338da362cb8d9f925d7cb";

    #[test]
    fn info_parts_concatenate_and_lengths_are_bounded() {
        let prk = HkdfSha512Prk::extract(b"salt", &SecretBytes::new(vec![7; 32]));
        let joined = prk.expand(&[b"abcDERIVEKEY"], 32).unwrap().expose_secret().to_vec();
        let parts = prk.expand(&[b"abc", b"DERIVEKEY"], 32).unwrap().expose_secret().to_vec();
        assert_eq!(joined.len(), 32);
        assert_eq!(joined, parts);
        assert_ne!(joined, prk.expand(&[b"COMMITKEY"], 32).unwrap().expose_secret().to_vec());
        assert!(prk.expand(&[b""], 0).is_err());
        assert!(prk.expand(&[b""], MAX_OUTPUT_LEN + 1).is_err());
        assert!(prk.expand(&[b""], MAX_OUTPUT_LEN).is_ok());
    }
}
