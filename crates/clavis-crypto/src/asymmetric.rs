//! Asymmetric keys: RSA (signatures and OAEP encryption), ECDSA and ECDH on the NIST curves,
//! ECDSA on secp256k1, Ed25519, ML-DSA (FIPS 204) and ML-KEM (FIPS 203); and HMAC keys.
//!
//! Private keys travel and rest as PKCS#8 DER (ML-KEM: the decapsulation key's bytes, for
//! which aws-lc-rs has no PKCS#8 form) inside [`SecretBytes`]; they are parsed once into a
//! [`PrivateKey`] that the core caches, so a request does no key parsing. Public keys leave as
//! DER SubjectPublicKeyInfo.

use crate::{CryptoError, SecretBytes};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::{self, KeyPair};
use aws_lc_rs::{agreement, digest, hmac, kem, rsa};

/// What kind of key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PairSpec {
    /// RSA with a 2048-bit modulus.
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    Rsa3072,
    /// RSA with a 4096-bit modulus.
    Rsa4096,
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
    /// NIST P-521.
    P521,
    /// SECG secp256k1.
    Secp256k1,
    /// Ed25519.
    Ed25519,
    /// ML-DSA-44.
    MlDsa44,
    /// ML-DSA-65.
    MlDsa65,
    /// ML-DSA-87.
    MlDsa87,
    /// ML-KEM-512.
    MlKem512,
    /// ML-KEM-768.
    MlKem768,
    /// ML-KEM-1024.
    MlKem1024,
}

/// A hash function of a signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    /// The digest's length in bytes.
    pub fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// Never empty; for clippy's `len_without_is_empty`.
    pub fn is_empty(self) -> bool {
        false
    }

    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha384 => &digest::SHA384,
            Hash::Sha512 => &digest::SHA512,
        }
    }
}

/// A signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// RSASSA-PSS with MGF1 of the same hash and a salt as long as the hash.
    RsaPss(Hash),
    /// RSASSA-PKCS1-v1_5.
    RsaPkcs1(Hash),
    /// ECDSA with a DER-encoded signature; the hash is the curve's.
    Ecdsa(Hash),
    /// Ed25519 (pure: the message, not a digest).
    Ed25519,
    /// ML-DSA (pure, empty context).
    MlDsa,
}

/// What is signed: the message itself or its digest under the scheme's hash.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// The message.
    Raw(&'a [u8]),
    /// The message's digest (exactly the hash's length).
    Digest(&'a [u8]),
}

/// The hash of RSA-OAEP (MGF1 uses the same hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oaep {
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
}

impl Oaep {
    fn algorithm(self) -> &'static rsa::OaepAlgorithm {
        match self {
            Oaep::Sha1 => &rsa::OAEP_SHA1_MGF1SHA1,
            Oaep::Sha256 => &rsa::OAEP_SHA256_MGF1SHA256,
        }
    }
}

fn bad(what: &'static str) -> impl Fn(aws_lc_rs::error::Unspecified) -> CryptoError {
    move |_| CryptoError::Malformed(what)
}

fn rejected(what: &'static str) -> impl Fn(aws_lc_rs::error::KeyRejected) -> CryptoError {
    move |_| CryptoError::Malformed(what)
}

fn ecdsa_signing(spec: PairSpec) -> Option<&'static signature::EcdsaSigningAlgorithm> {
    Some(match spec {
        PairSpec::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        PairSpec::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        PairSpec::P521 => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
        PairSpec::Secp256k1 => &signature::ECDSA_P256K1_SHA256_ASN1_SIGNING,
        _ => return None,
    })
}

fn ecdsa_verification(spec: PairSpec) -> Option<&'static signature::EcdsaVerificationAlgorithm> {
    Some(match spec {
        PairSpec::P256 => &signature::ECDSA_P256_SHA256_ASN1,
        PairSpec::P384 => &signature::ECDSA_P384_SHA384_ASN1,
        PairSpec::P521 => &signature::ECDSA_P521_SHA512_ASN1,
        PairSpec::Secp256k1 => &signature::ECDSA_P256K1_SHA256_ASN1,
        _ => return None,
    })
}

fn ecdh(spec: PairSpec) -> Option<&'static agreement::Algorithm> {
    Some(match spec {
        PairSpec::P256 => &agreement::ECDH_P256,
        PairSpec::P384 => &agreement::ECDH_P384,
        PairSpec::P521 => &agreement::ECDH_P521,
        _ => return None,
    })
}

fn ml_dsa(spec: PairSpec) -> Option<(&'static signature::PqdsaSigningAlgorithm, &'static signature::PqdsaVerificationAlgorithm)> {
    Some(match spec {
        PairSpec::MlDsa44 => (&signature::ML_DSA_44_SIGNING, &signature::ML_DSA_44),
        PairSpec::MlDsa65 => (&signature::ML_DSA_65_SIGNING, &signature::ML_DSA_65),
        PairSpec::MlDsa87 => (&signature::ML_DSA_87_SIGNING, &signature::ML_DSA_87),
        _ => return None,
    })
}

fn ml_kem(spec: PairSpec) -> Option<(&'static kem::Algorithm, u8)> {
    // The last arc of the algorithm's OID (2.16.840.1.101.3.4.4.n, FIPS 203 / RFC 9935).
    Some(match spec {
        PairSpec::MlKem512 => (&kem::ML_KEM_512, 1),
        PairSpec::MlKem768 => (&kem::ML_KEM_768, 2),
        PairSpec::MlKem1024 => (&kem::ML_KEM_1024, 3),
        _ => return None,
    })
}

fn rsa_size(spec: PairSpec) -> Option<rsa::KeySize> {
    Some(match spec {
        PairSpec::Rsa2048 => rsa::KeySize::Rsa2048,
        PairSpec::Rsa3072 => rsa::KeySize::Rsa3072,
        PairSpec::Rsa4096 => rsa::KeySize::Rsa4096,
        _ => return None,
    })
}

fn pkcs8<T: AsDer<Pkcs8V1Der<'static>>>(key: &T) -> Result<SecretBytes, CryptoError> {
    Ok(SecretBytes::new(key.as_der().map_err(bad("key encoding"))?.as_ref().to_vec()))
}

fn spki<T: AsDer<PublicKeyX509Der<'static>>>(key: &T) -> Result<Vec<u8>, CryptoError> {
    Ok(key.as_der().map_err(bad("public key encoding"))?.as_ref().to_vec())
}

/// A DER length.
fn der_len(len: usize, out: &mut Vec<u8>) {
    match len {
        0..=0x7f => out.push(len as u8),
        0x80..=0xff => out.extend_from_slice(&[0x81, len as u8]),
        _ => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
    }
}

/// The SubjectPublicKeyInfo of an ML-KEM encapsulation key (the algorithm identifier has no
/// parameters).
fn ml_kem_spki(arc: u8, key: &[u8]) -> Vec<u8> {
    let alg = [0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x04, arc];
    let mut bits = vec![0x03];
    der_len(key.len() + 1, &mut bits);
    bits.push(0);
    bits.extend_from_slice(key);
    let mut out = vec![0x30];
    der_len(alg.len() + bits.len(), &mut out);
    out.extend_from_slice(&alg);
    out.extend_from_slice(&bits);
    out
}

/// The key inside an ML-KEM SubjectPublicKeyInfo of this parameter set.
fn ml_kem_spki_key(arc: u8, spki: &[u8]) -> Option<&[u8]> {
    let expected_prefix = ml_kem_spki(arc, &[]);
    // Same structure, longer lengths: compare the algorithm identifier and take the rest.
    let alg = &expected_prefix[expected_prefix.len() - 16..expected_prefix.len() - 3];
    let at = spki.windows(alg.len()).position(|w| w == alg)?;
    let rest = &spki[at + alg.len()..];
    let (tag, rest) = rest.split_first()?;
    if *tag != 0x03 {
        return None;
    }
    let (len, rest) = match rest {
        [0x82, hi, lo, rest @ ..] => ((usize::from(*hi) << 8) | usize::from(*lo), rest),
        [0x81, n, rest @ ..] => (usize::from(*n), rest),
        [n, rest @ ..] if *n < 0x80 => (usize::from(*n), rest),
        _ => return None,
    };
    match rest {
        [0, key @ ..] if key.len() + 1 == len => Some(key),
        _ => None,
    }
}

/// Whether `der` is exactly one DER SEQUENCE (tag, length, and nothing after its contents).
pub fn is_single_der_sequence(der: &[u8]) -> bool {
    let Some((&0x30, rest)) = der.split_first() else { return false };
    let (len, header) = match rest {
        [n, ..] if *n < 0x80 => (usize::from(*n), 2),
        [0x81, n, ..] if *n >= 0x80 => (usize::from(*n), 3),
        [0x82, hi, lo, ..] if *hi != 0 => ((usize::from(*hi) << 8) | usize::from(*lo), 4),
        [0x83, a, b, c, ..] if *a != 0 => ((usize::from(*a) << 16) | (usize::from(*b) << 8) | usize::from(*c), 5),
        _ => return false,
    };
    der.len() == header + len
}

/// Generates a private key of this kind: PKCS#8 DER (ML-KEM: the decapsulation key).
pub fn generate(spec: PairSpec) -> Result<SecretBytes, CryptoError> {
    if let Some(size) = rsa_size(spec) {
        return pkcs8(&rsa::KeyPair::generate(size).map_err(bad("RSA key generation"))?);
    }
    if let Some(alg) = ecdsa_signing(spec) {
        let doc = signature::EcdsaKeyPair::generate_pkcs8(alg, &aws_lc_rs::rand::SystemRandom::new()).map_err(bad("EC key generation"))?;
        return Ok(SecretBytes::new(doc.as_ref().to_vec()));
    }
    if spec == PairSpec::Ed25519 {
        return pkcs8(&signature::Ed25519KeyPair::generate().map_err(bad("Ed25519 key generation"))?);
    }
    if let Some((alg, _)) = ml_dsa(spec) {
        let pair = signature::PqdsaKeyPair::generate(alg).map_err(bad("ML-DSA key generation"))?;
        let doc = pair.to_pkcs8v1().map_err(bad("ML-DSA key encoding"))?;
        return Ok(SecretBytes::new(doc.as_ref().to_vec()));
    }
    if let Some((alg, _)) = ml_kem(spec) {
        let key = kem::DecapsulationKey::generate(alg).map_err(bad("ML-KEM key generation"))?;
        let bytes = key.key_bytes().map_err(bad("ML-KEM key encoding"))?;
        return Ok(SecretBytes::new(bytes.as_ref().to_vec()));
    }
    Err(CryptoError::Unsupported("key pair spec"))
}

enum Inner {
    Rsa {
        pair: rsa::KeyPair,
        decrypt: rsa::OaepPrivateDecryptingKey,
        encrypt: rsa::OaepPublicEncryptingKey,
        /// The public key parsed once per signature scheme (PSS and PKCS#1 v1.5, each hash).
        verify: Vec<(Scheme, signature::ParsedPublicKey)>,
    },
    Ec {
        pair: signature::EcdsaKeyPair,
        verify: signature::ParsedPublicKey,
        agree: Option<agreement::PrivateKey>,
    },
    Ed25519 {
        pair: signature::Ed25519KeyPair,
        verify: signature::ParsedPublicKey,
    },
    MlDsa {
        pair: signature::PqdsaKeyPair,
        verify: signature::ParsedPublicKey,
    },
    MlKem {
        key: kem::DecapsulationKey,
        public: kem::EncapsulationKey,
    },
}

/// A parsed private key with its public key, ready for many operations. Deliberately not
/// `Debug` or `Clone`.
pub struct PrivateKey {
    spec: PairSpec,
    inner: Inner,
    public: Vec<u8>,
}

impl PrivateKey {
    /// Parses a private key of this kind (as [`generate`] makes them, or imported PKCS#8).
    pub fn from_der(spec: PairSpec, der: &SecretBytes) -> Result<PrivateKey, CryptoError> {
        let der = der.expose_secret();
        // One DER structure exactly: trailing bytes after the PKCS#8 are not a key.
        if !is_single_der_sequence(der) && ml_kem(spec).is_none() {
            return Err(CryptoError::Malformed("not a single DER-encoded private key"));
        }
        let (inner, public) = if let Some(size) = rsa_size(spec) {
            let pair = rsa::KeyPair::from_pkcs8(der).map_err(rejected("not an RSA PKCS#8 private key"))?;
            // The exact modulus size in bits (a 4092-bit key is not an RSA_4096 key), and a
            // public exponent above 2^16 (FIPS 186-5), so e = 3 keys are refused.
            let modulus = pair.public_key().modulus();
            let bytes = modulus.big_endian_without_leading_zero();
            let bits = bytes.len() * 8 - modulus.first_byte().leading_zeros() as usize;
            if bits != size.len() * 8 {
                return Err(CryptoError::Malformed("the RSA key's size does not match its key spec"));
            }
            let exponent = pair.public_key().exponent();
            let e = exponent.big_endian_without_leading_zero();
            if e.len() < 3 || e.last().is_some_and(|b| b & 1 == 0) {
                return Err(CryptoError::Malformed("the RSA key's public exponent must be odd and above 65536"));
            }
            let private = rsa::PrivateDecryptingKey::from_pkcs8(der).map_err(rejected("not an RSA PKCS#8 private key"))?;
            let public = spki(pair.public_key())?;
            let encrypt = rsa::OaepPublicEncryptingKey::new(private.public_key()).map_err(bad("RSA public key"))?;
            let decrypt = rsa::OaepPrivateDecryptingKey::new(private).map_err(bad("RSA private key"))?;
            let mut verify = Vec::new();
            for h in [Hash::Sha256, Hash::Sha384, Hash::Sha512] {
                for scheme in [Scheme::RsaPss(h), Scheme::RsaPkcs1(h)] {
                    let key = signature::ParsedPublicKey::new(rsa_parameters(scheme, h), &public).map_err(rejected("RSA public key"))?;
                    verify.push((scheme, key));
                }
            }
            (Inner::Rsa { pair, decrypt, encrypt, verify }, public)
        } else if let (Some(sign_alg), Some(verify_alg)) = (ecdsa_signing(spec), ecdsa_verification(spec)) {
            let pair =
                signature::EcdsaKeyPair::from_pkcs8(sign_alg, der).map_err(rejected("not an EC PKCS#8 private key of this curve"))?;
            let public = spki(pair.public_key())?;
            let verify = signature::ParsedPublicKey::new(verify_alg, &public).map_err(rejected("EC public key"))?;
            let agree = match ecdh(spec) {
                Some(alg) => Some(agreement::PrivateKey::from_private_key_der(alg, der).map_err(rejected("EC private key"))?),
                None => None,
            };
            (Inner::Ec { pair, verify, agree }, public)
        } else if spec == PairSpec::Ed25519 {
            let pair = signature::Ed25519KeyPair::from_pkcs8(der).map_err(rejected("not an Ed25519 PKCS#8 private key"))?;
            let public = spki(pair.public_key())?;
            let verify = signature::ParsedPublicKey::new(&signature::ED25519, &public).map_err(rejected("Ed25519 public key"))?;
            (Inner::Ed25519 { pair, verify }, public)
        } else if let Some((sign_alg, verify_alg)) = ml_dsa(spec) {
            let pair =
                signature::PqdsaKeyPair::from_pkcs8(sign_alg, der).map_err(rejected("not an ML-DSA PKCS#8 private key of this size"))?;
            let public = spki(pair.public_key())?;
            let verify = signature::ParsedPublicKey::new(verify_alg, &public).map_err(rejected("ML-DSA public key"))?;
            (Inner::MlDsa { pair, verify }, public)
        } else if let Some((alg, arc)) = ml_kem(spec) {
            let key = kem::DecapsulationKey::new(alg, der).map_err(rejected("not an ML-KEM decapsulation key of this size"))?;
            // FIPS 203: dk = dk_PKE (384k bytes) || ek (384k + 32 bytes) || H(ek) || z. A key
            // made from bytes cannot give its encapsulation key back, so it is read from dk.
            let k = usize::from(arc) + 1;
            let ek = der.get(384 * k..384 * k + 384 * k + 32).ok_or(CryptoError::Malformed("ML-KEM decapsulation key"))?;
            let public = kem::EncapsulationKey::new(alg, ek).map_err(rejected("ML-KEM decapsulation key"))?;
            (Inner::MlKem { key, public }, ml_kem_spki(arc, ek))
        } else {
            return Err(CryptoError::Unsupported("key pair spec"));
        };
        Ok(PrivateKey { spec, inner, public })
    }

    /// The kind of key.
    pub fn spec(&self) -> PairSpec {
        self.spec
    }

    /// The public key, DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public
    }

    /// Signs `input` with `scheme`. A digest must be exactly the scheme's hash length; the
    /// caller checks that and that the scheme fits the key (else `Unsupported`).
    pub fn sign(&self, scheme: Scheme, input: Input<'_>) -> Result<Vec<u8>, CryptoError> {
        let unsupported = || CryptoError::Unsupported("this signing algorithm for this key");
        match (&self.inner, scheme) {
            (Inner::Rsa { pair, .. }, Scheme::RsaPss(h) | Scheme::RsaPkcs1(h)) => {
                let encoding = rsa_encoding(scheme, h);
                let mut sig = vec![0u8; pair.public_modulus_len()];
                match input {
                    Input::Raw(m) => {
                        pair.sign(encoding, &aws_lc_rs::rand::SystemRandom::new(), m, &mut sig).map_err(bad("RSA signing"))?;
                    }
                    Input::Digest(d) => {
                        let digest = digest::Digest::import_less_safe(d, h.algorithm()).map_err(bad("digest length"))?;
                        pair.sign_digest(encoding, &digest, &mut sig).map_err(bad("RSA signing"))?;
                    }
                }
                Ok(sig)
            }
            (Inner::Ec { pair, .. }, Scheme::Ecdsa(h)) if Some(h) == curve_hash(self.spec) => {
                let sig = match input {
                    Input::Raw(m) => pair.sign(&aws_lc_rs::rand::SystemRandom::new(), m).map_err(bad("ECDSA signing"))?,
                    Input::Digest(d) => {
                        let digest = digest::Digest::import_less_safe(d, h.algorithm()).map_err(bad("digest length"))?;
                        pair.sign_digest(&digest).map_err(bad("ECDSA signing"))?
                    }
                };
                Ok(sig.as_ref().to_vec())
            }
            (Inner::Ed25519 { pair, .. }, Scheme::Ed25519) => match input {
                Input::Raw(m) => Ok(pair.sign(m).as_ref().to_vec()),
                Input::Digest(_) => Err(unsupported()),
            },
            (Inner::MlDsa { pair, .. }, Scheme::MlDsa) => match input {
                Input::Raw(m) => {
                    let mut sig = vec![0u8; pair.algorithm().signature_len()];
                    let n = pair.sign(m, &mut sig).map_err(bad("ML-DSA signing"))?;
                    sig.truncate(n);
                    Ok(sig)
                }
                Input::Digest(_) => Err(unsupported()),
            },
            _ => Err(unsupported()),
        }
    }

    /// Whether `sig` is a valid signature of `input` with `scheme` by this key.
    pub fn verify(&self, scheme: Scheme, input: Input<'_>, sig: &[u8]) -> Result<bool, CryptoError> {
        let unsupported = || CryptoError::Unsupported("this signing algorithm for this key");
        let digest_of = |h: Hash, d: &[u8]| digest::Digest::import_less_safe(d, h.algorithm()).map_err(bad("digest length"));
        let ok = match (&self.inner, scheme) {
            (Inner::Rsa { verify, .. }, Scheme::RsaPss(h) | Scheme::RsaPkcs1(h)) => {
                let Some((_, key)) = verify.iter().find(|(s, _)| *s == scheme) else { return Err(unsupported()) };
                match input {
                    Input::Raw(m) => key.verify_sig(m, sig).is_ok(),
                    Input::Digest(d) => key.verify_digest_sig(&digest_of(h, d)?, sig).is_ok(),
                }
            }
            (Inner::Ec { verify, .. }, Scheme::Ecdsa(h)) if Some(h) == curve_hash(self.spec) => match input {
                Input::Raw(m) => verify.verify_sig(m, sig).is_ok(),
                Input::Digest(d) => verify.verify_digest_sig(&digest_of(h, d)?, sig).is_ok(),
            },
            (Inner::Ed25519 { verify, .. }, Scheme::Ed25519) | (Inner::MlDsa { verify, .. }, Scheme::MlDsa) => match input {
                Input::Raw(m) => verify.verify_sig(m, sig).is_ok(),
                Input::Digest(_) => return Err(unsupported()),
            },
            _ => return Err(unsupported()),
        };
        Ok(ok)
    }

    /// The most plaintext RSA-OAEP with `hash` can encrypt under this key (`None`: not RSA).
    pub fn oaep_max_plaintext(&self, hash: Oaep) -> Option<usize> {
        match &self.inner {
            Inner::Rsa { encrypt, .. } => Some(encrypt.max_plaintext_size(hash.algorithm())),
            _ => None,
        }
    }

    /// RSA-OAEP encryption under this key's public half.
    pub fn encrypt_oaep(&self, hash: Oaep, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let Inner::Rsa { encrypt, .. } = &self.inner else { return Err(CryptoError::Unsupported("RSA-OAEP for this key")) };
        let mut out = vec![0u8; encrypt.ciphertext_size()];
        let n = encrypt.encrypt(hash.algorithm(), plaintext, &mut out, None).map_err(bad("RSA-OAEP plaintext"))?.len();
        out.truncate(n);
        Ok(out)
    }

    /// RSA-OAEP decryption; `AuthenticationFailed` if the ciphertext does not decrypt.
    pub fn decrypt_oaep(&self, hash: Oaep, ciphertext: &[u8]) -> Result<SecretBytes, CryptoError> {
        let Inner::Rsa { decrypt, .. } = &self.inner else { return Err(CryptoError::Unsupported("RSA-OAEP for this key")) };
        let mut out = SecretBytes::new(vec![0u8; decrypt.min_output_size()]);
        let n = decrypt
            .decrypt(hash.algorithm(), ciphertext, out.expose_secret_mut(), None)
            .map_err(|_| CryptoError::AuthenticationFailed)?
            .len();
        Ok(SecretBytes::from_slice(&out.expose_secret()[..n]))
    }

    /// ECDH with a peer's public key (DER SubjectPublicKeyInfo on this key's curve): the raw
    /// shared secret (the x coordinate). `Malformed` if the peer key is not a valid point of
    /// the curve.
    pub fn derive(&self, peer_spki: &[u8]) -> Result<SecretBytes, CryptoError> {
        let Inner::Ec { agree: Some(private), .. } = &self.inner else { return Err(CryptoError::Unsupported("ECDH for this key")) };
        // A SubjectPublicKeyInfo exactly: not a bare point, nothing after it.
        if !is_single_der_sequence(peer_spki) {
            return Err(CryptoError::Malformed("the public key is not one DER-encoded SubjectPublicKeyInfo"));
        }
        let peer = agreement::UnparsedPublicKey::new(private.algorithm(), peer_spki);
        agreement::agree(private, peer, CryptoError::Malformed("the public key is not a valid key of this curve"), |secret| {
            Ok(SecretBytes::from_slice(secret))
        })
    }

    /// ML-KEM decapsulation: the shared secret of `ciphertext`. (ML-KEM's implicit rejection
    /// turns a wrong ciphertext of the right length into an unrelated secret.)
    pub fn decapsulate(&self, ciphertext: &[u8]) -> Result<SecretBytes, CryptoError> {
        let Inner::MlKem { key, .. } = &self.inner else { return Err(CryptoError::Unsupported("ML-KEM for this key")) };
        let secret = key.decapsulate(kem::Ciphertext::from(ciphertext)).map_err(bad("ML-KEM ciphertext"))?;
        Ok(SecretBytes::from_slice(secret.as_ref()))
    }

    /// ML-KEM encapsulation to this key's public half: (ciphertext, shared secret).
    pub fn encapsulate(&self) -> Result<(Vec<u8>, SecretBytes), CryptoError> {
        let Inner::MlKem { public, .. } = &self.inner else { return Err(CryptoError::Unsupported("ML-KEM for this key")) };
        let (ct, secret) = public.encapsulate().map_err(bad("ML-KEM encapsulation"))?;
        Ok((ct.as_ref().to_vec(), SecretBytes::from_slice(secret.as_ref())))
    }

    /// The length of this key's ML-KEM ciphertexts (`None`: not ML-KEM).
    pub fn kem_ciphertext_len(&self) -> Option<usize> {
        match self.spec {
            PairSpec::MlKem512 => Some(768),
            PairSpec::MlKem768 => Some(1088),
            PairSpec::MlKem1024 => Some(1568),
            _ => None,
        }
    }
}

/// ML-KEM encapsulation to a public key (DER SubjectPublicKeyInfo): (ciphertext, secret).
pub fn encapsulate_to(spec: PairSpec, public_spki: &[u8]) -> Result<(Vec<u8>, SecretBytes), CryptoError> {
    let (alg, arc) = ml_kem(spec).ok_or(CryptoError::Unsupported("ML-KEM for this key"))?;
    let raw = ml_kem_spki_key(arc, public_spki).ok_or(CryptoError::Malformed("not an ML-KEM public key of this size"))?;
    let key = kem::EncapsulationKey::new(alg, raw).map_err(rejected("ML-KEM public key"))?;
    let (ct, secret) = key.encapsulate().map_err(bad("ML-KEM encapsulation"))?;
    Ok((ct.as_ref().to_vec(), SecretBytes::from_slice(secret.as_ref())))
}

fn curve_hash(spec: PairSpec) -> Option<Hash> {
    match spec {
        PairSpec::P256 | PairSpec::Secp256k1 => Some(Hash::Sha256),
        PairSpec::P384 => Some(Hash::Sha384),
        PairSpec::P521 => Some(Hash::Sha512),
        _ => None,
    }
}

fn rsa_encoding(scheme: Scheme, h: Hash) -> &'static dyn signature::RsaEncoding {
    match (scheme, h) {
        (Scheme::RsaPss(_), Hash::Sha256) => &signature::RSA_PSS_SHA256,
        (Scheme::RsaPss(_), Hash::Sha384) => &signature::RSA_PSS_SHA384,
        (Scheme::RsaPss(_), Hash::Sha512) => &signature::RSA_PSS_SHA512,
        (_, Hash::Sha256) => &signature::RSA_PKCS1_SHA256,
        (_, Hash::Sha384) => &signature::RSA_PKCS1_SHA384,
        (_, Hash::Sha512) => &signature::RSA_PKCS1_SHA512,
    }
}

fn rsa_parameters(scheme: Scheme, h: Hash) -> &'static signature::RsaParameters {
    match (scheme, h) {
        (Scheme::RsaPss(_), Hash::Sha256) => &signature::RSA_PSS_2048_8192_SHA256,
        (Scheme::RsaPss(_), Hash::Sha384) => &signature::RSA_PSS_2048_8192_SHA384,
        (Scheme::RsaPss(_), Hash::Sha512) => &signature::RSA_PSS_2048_8192_SHA512,
        (_, Hash::Sha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (_, Hash::Sha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (_, Hash::Sha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
    }
}

/// The hash of an HMAC key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacHash {
    /// HMAC-SHA-224.
    Sha224,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-384.
    Sha384,
    /// HMAC-SHA-512.
    Sha512,
}

impl MacHash {
    fn algorithm(self) -> hmac::Algorithm {
        match self {
            MacHash::Sha224 => hmac::HMAC_SHA224,
            MacHash::Sha256 => hmac::HMAC_SHA256,
            MacHash::Sha384 => hmac::HMAC_SHA384,
            MacHash::Sha512 => hmac::HMAC_SHA512,
        }
    }
}

/// An HMAC key prepared once. Deliberately not `Debug`.
pub struct MacKey {
    hash: MacHash,
    key: hmac::Key,
}

impl MacKey {
    /// Prepares `key` for HMAC with `hash`.
    pub fn new(hash: MacHash, key: &SecretBytes) -> MacKey {
        MacKey { hash, key: hmac::Key::new(hash.algorithm(), key.expose_secret()) }
    }

    /// The key's hash.
    pub fn hash(&self) -> MacHash {
        self.hash
    }

    /// The MAC of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        hmac::sign(&self.key, message).as_ref().to_vec()
    }

    /// Whether `mac` is the MAC of `message` (compared in constant time).
    pub fn verify(&self, message: &[u8], mac: &[u8]) -> bool {
        hmac::verify(&self.key, message, mac).is_ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Test code.
    use super::*;

    const ALL: [PairSpec; 14] = [
        PairSpec::Rsa2048,
        PairSpec::Rsa3072,
        PairSpec::Rsa4096,
        PairSpec::P256,
        PairSpec::P384,
        PairSpec::P521,
        PairSpec::Secp256k1,
        PairSpec::Ed25519,
        PairSpec::MlDsa44,
        PairSpec::MlDsa65,
        PairSpec::MlDsa87,
        PairSpec::MlKem512,
        PairSpec::MlKem768,
        PairSpec::MlKem1024,
    ];

    #[test]
    fn every_kind_generates_parses_and_has_a_public_key() {
        for spec in ALL.into_iter().filter(|s| *s != PairSpec::Rsa4096) {
            let der = generate(spec).unwrap();
            let key = PrivateKey::from_der(spec, &der).unwrap();
            assert!(key.public_key_der().len() > 30, "{spec:?}");
            assert_eq!(key.public_key_der()[0], 0x30, "{spec:?}");
        }
    }

    #[test]
    fn signatures_verify_and_tampering_is_caught() {
        let cases = [
            (PairSpec::Rsa2048, Scheme::RsaPss(Hash::Sha256)),
            (PairSpec::Rsa2048, Scheme::RsaPkcs1(Hash::Sha512)),
            (PairSpec::P256, Scheme::Ecdsa(Hash::Sha256)),
            (PairSpec::P384, Scheme::Ecdsa(Hash::Sha384)),
            (PairSpec::P521, Scheme::Ecdsa(Hash::Sha512)),
            (PairSpec::Secp256k1, Scheme::Ecdsa(Hash::Sha256)),
            (PairSpec::Ed25519, Scheme::Ed25519),
            (PairSpec::MlDsa65, Scheme::MlDsa),
        ];
        for (spec, scheme) in cases {
            let key = PrivateKey::from_der(spec, &generate(spec).unwrap()).unwrap();
            let sig = key.sign(scheme, Input::Raw(b"message")).unwrap();
            assert!(key.verify(scheme, Input::Raw(b"message"), &sig).unwrap(), "{spec:?}");
            assert!(!key.verify(scheme, Input::Raw(b"messagf"), &sig).unwrap(), "{spec:?}");
            let mut bad_sig = sig.clone();
            let last = bad_sig.len() - 1;
            bad_sig[last] ^= 1;
            assert!(!key.verify(scheme, Input::Raw(b"message"), &bad_sig).unwrap(), "{spec:?}");
            // A digest signature verifies as a signature of the message.
            if let Scheme::RsaPss(h) | Scheme::RsaPkcs1(h) | Scheme::Ecdsa(h) = scheme {
                let d = digest::digest(h.algorithm(), b"message");
                let sig = key.sign(scheme, Input::Digest(d.as_ref())).unwrap();
                assert!(key.verify(scheme, Input::Raw(b"message"), &sig).unwrap(), "{spec:?}");
            }
        }
        // A scheme of another key kind is refused, not answered.
        let ec = PrivateKey::from_der(PairSpec::P256, &generate(PairSpec::P256).unwrap()).unwrap();
        assert!(ec.sign(Scheme::Ecdsa(Hash::Sha384), Input::Raw(b"m")).is_err());
        assert!(ec.sign(Scheme::RsaPss(Hash::Sha256), Input::Raw(b"m")).is_err());
    }

    #[test]
    fn oaep_ecdh_and_ml_kem_round_trip() {
        let rsa = PrivateKey::from_der(PairSpec::Rsa2048, &generate(PairSpec::Rsa2048).unwrap()).unwrap();
        assert_eq!(rsa.oaep_max_plaintext(Oaep::Sha256), Some(190));
        assert_eq!(rsa.oaep_max_plaintext(Oaep::Sha1), Some(214));
        let ct = rsa.encrypt_oaep(Oaep::Sha256, b"secret").unwrap();
        assert_eq!(rsa.decrypt_oaep(Oaep::Sha256, &ct).unwrap().expose_secret(), b"secret");
        assert!(rsa.decrypt_oaep(Oaep::Sha1, &ct).is_err());

        let a = PrivateKey::from_der(PairSpec::P384, &generate(PairSpec::P384).unwrap()).unwrap();
        let b = PrivateKey::from_der(PairSpec::P384, &generate(PairSpec::P384).unwrap()).unwrap();
        let ab = a.derive(b.public_key_der()).unwrap();
        let ba = b.derive(a.public_key_der()).unwrap();
        assert_eq!(ab.expose_secret(), ba.expose_secret());
        assert_eq!(ab.len(), 48);
        let other_curve = PrivateKey::from_der(PairSpec::P256, &generate(PairSpec::P256).unwrap()).unwrap();
        assert!(a.derive(other_curve.public_key_der()).is_err());

        let kem = PrivateKey::from_der(PairSpec::MlKem768, &generate(PairSpec::MlKem768).unwrap()).unwrap();
        let (ct, secret) = encapsulate_to(PairSpec::MlKem768, kem.public_key_der()).unwrap();
        assert_eq!(ct.len(), kem.kem_ciphertext_len().unwrap());
        assert_eq!(kem.decapsulate(&ct).unwrap().expose_secret(), secret.expose_secret());
        let (ct2, secret2) = kem.encapsulate().unwrap();
        assert_eq!(kem.decapsulate(&ct2).unwrap().expose_secret(), secret2.expose_secret());
    }

    #[test]
    fn der_framing_is_exact() {
        let der = generate(PairSpec::P256).unwrap();
        assert!(is_single_der_sequence(der.expose_secret()));
        let mut trailing = der.expose_secret().to_vec();
        trailing.push(0);
        assert!(!is_single_der_sequence(&trailing));
        assert!(PrivateKey::from_der(PairSpec::P256, &SecretBytes::new(trailing)).is_err());
        let key = PrivateKey::from_der(PairSpec::P256, &der).unwrap();
        let point = &key.public_key_der()[key.public_key_der().len() - 65..];
        assert!(!is_single_der_sequence(point), "a bare point is not an SPKI");
        let agree = PrivateKey::from_der(PairSpec::P256, &generate(PairSpec::P256).unwrap()).unwrap();
        assert!(agree.derive(point).is_err());
        let mut spki = key.public_key_der().to_vec();
        assert!(agree.derive(&spki).is_ok());
        spki.push(0);
        assert!(agree.derive(&spki).is_err());
    }

    #[test]
    fn hmac_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2.
        let key = MacKey::new(MacHash::Sha256, &SecretBytes::from_slice(b"Jefe"));
        let mac = key.sign(b"what do ya want for nothing?");
        assert_eq!(hex::encode(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert!(key.verify(b"what do ya want for nothing?", &mac));
        assert!(!key.verify(b"what do ya want for nothing!", &mac));
    }
}
