//! ECDSA over P-384 with SHA-384 (FIPS 186-4), for signatures over messages too large to hold:
//! the caller feeds a streaming [`Sha384`] and signs or verifies its digest. Public keys travel
//! as compressed SEC 1 points (section 2.3.3, 49 bytes) and signatures as DER `ECDSA-Sig-Value`,
//! the encodings the AWS Encryption SDK's signed algorithm suites use.

use crate::CryptoError;
use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsBigEndian, EcPublicKeyCompressedBin};
use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey};

/// Length of a compressed P-384 public key.
pub const P384_COMPRESSED_LEN: usize = 49;
/// The longest DER signature a P-384 key produces (two 49-byte integers and their headers).
pub const P384_MAX_SIGNATURE_LEN: usize = 104;

/// SHA-384 (FIPS 180-4) of data given in parts. Deliberately not `Debug`.
#[derive(Clone)]
pub struct Sha384(digest::Context);

impl Default for Sha384 {
    fn default() -> Sha384 {
        Sha384(digest::Context::new(&digest::SHA384))
    }
}

/// A finished SHA-384, to sign or verify.
pub struct Sha384Digest(digest::Digest);

impl Sha384Digest {
    /// The 48 digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_ref()
    }
}

impl Sha384 {
    /// A hash of nothing yet.
    pub fn new() -> Sha384 {
        Sha384::default()
    }

    /// Appends `data` to the hashed message.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything given to [`Sha384::update`].
    pub fn finish(self) -> Sha384Digest {
        Sha384Digest(self.0.finish())
    }
}

/// A fresh P-384 signing key, used for one message and then dropped (aws-lc-rs wipes it).
pub struct EcdsaP384SigningKey(EcdsaKeyPair);

impl std::fmt::Debug for EcdsaP384SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EcdsaP384SigningKey([REDACTED])")
    }
}

impl EcdsaP384SigningKey {
    /// Generates a key from the system random number generator.
    pub fn generate() -> Result<EcdsaP384SigningKey, CryptoError> {
        EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING).map(EcdsaP384SigningKey).map_err(|_| CryptoError::Rng)
    }

    /// The public key as a compressed SEC 1 point.
    pub fn public_key_compressed(&self) -> Result<Vec<u8>, CryptoError> {
        let bin: EcPublicKeyCompressedBin<'static> =
            self.0.public_key().as_be_bytes().map_err(|_| CryptoError::Malformed("cannot encode the public key"))?;
        Ok(bin.as_ref().to_vec())
    }

    /// A DER signature of the message whose SHA-384 is `digest`.
    pub fn sign_digest(&self, digest: &Sha384Digest) -> Result<Vec<u8>, CryptoError> {
        let sig = self.0.sign_digest(&digest.0).map_err(|_| CryptoError::Malformed("signing failed"))?;
        Ok(sig.as_ref().to_vec())
    }
}

/// Checks a DER `signature` of the message whose SHA-384 is `digest` under a compressed (or
/// uncompressed) SEC 1 P-384 public key. Any failure, including a malformed key, is
/// [`CryptoError::AuthenticationFailed`].
pub fn verify_p384(public_key: &[u8], digest: &Sha384Digest, signature: &[u8]) -> Result<(), CryptoError> {
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, public_key)
        .verify_digest(&digest.0, signature)
        .map_err(|_| CryptoError::AuthenticationFailed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test vectors are constants; a failure is the test failing")]
    use super::*;

    fn sha384(data: &[u8]) -> Sha384Digest {
        let mut h = Sha384::new();
        h.update(data);
        h.finish()
    }

    /// FIPS 180-2 appendix D.1: SHA-384("abc"), fed in two parts.
    #[test]
    fn sha384_fips_vector() {
        let mut h = Sha384::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(
            hex::encode(h.finish().as_bytes()),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"
        );
    }

    /// A signature of "abc" made by Python's `cryptography` (OpenSSL) with a fixed private key,
    /// and its compressed public key: verifies here, and fails for any other message or any
    /// flipped bit.
    #[test]
    fn verifies_a_signature_from_another_implementation() {
        let public =
            hex::decode("02d14d023e2d61d6f45b8112d8e12583523cb28a45a6ce3dc2002a70613c5bf368be183574cf8e0ed669674a414a469593").unwrap();
        let sig = hex::decode("3065023060ccb052ccc2f7f541debacde9b668dd201040913d0c4fb31205af88e45fe9362761345e93e58fc25fc8ad4aa351bca402310092aeb79e69bd2c62e363e29c4cc74514d786d9698adc8998190d89136caedc6372e4fb7b2f91d8def864842a063022b4").unwrap();
        verify_p384(&public, &sha384(b"abc"), &sig).unwrap();
        assert!(verify_p384(&public, &sha384(b"abd"), &sig).is_err());
        for i in 0..sig.len() {
            let mut t = sig.clone();
            t[i] ^= 1;
            assert!(verify_p384(&public, &sha384(b"abc"), &t).is_err(), "flip at {i}");
        }
        assert!(verify_p384(&public[..48], &sha384(b"abc"), &sig).is_err());
        assert!(verify_p384(&[], &sha384(b"abc"), &sig).is_err());
    }

    #[test]
    fn sign_and_verify_round_trip() {
        let key = EcdsaP384SigningKey::generate().unwrap();
        let public = key.public_key_compressed().unwrap();
        assert_eq!(public.len(), P384_COMPRESSED_LEN);
        assert!(public[0] == 2 || public[0] == 3);
        let sig = key.sign_digest(&sha384(b"message")).unwrap();
        assert!(sig.len() <= P384_MAX_SIGNATURE_LEN && sig[0] == 0x30);
        verify_p384(&public, &sha384(b"message"), &sig).unwrap();
        assert!(verify_p384(&public, &sha384(b"messagf"), &sig).is_err());
        let other = EcdsaP384SigningKey::generate().unwrap().public_key_compressed().unwrap();
        assert!(verify_p384(&other, &sha384(b"message"), &sig).is_err());
        assert_eq!(format!("{key:?}"), "EcdsaP384SigningKey([REDACTED])");
    }
}
