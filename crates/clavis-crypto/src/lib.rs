//! The only Clavis crate that touches the cryptography library (aws-lc-rs).
//!
//! It owns: secret byte buffers that zeroize on drop and never print ([`SecretBytes`]),
//! AES-256-GCM ([`aead`]; with caller-chosen IVs for framed formats in [`gcm`]), HKDF-SHA512
//! ([`kdf`]), ECDSA P-384 over a streamed SHA-384 ([`ecdsa`]), asymmetric and HMAC keys ([`asymmetric`]), SHA-256 and HMAC-SHA256 ([`digest`]), the system random number
//! generator ([`random`]) and the root of trust that seals key material at rest ([`seal`]; an
//! HSM through PKCS#11 in `pkcs11`, with the default `pkcs11` feature).
//!
//! It must not know about keys, ciphertext blobs, storage or the wire protocol: those belong to
//! `clavis-core`. Nothing from aws-lc-rs appears in its public API, so a different backend could
//! replace it without touching any other crate.

pub mod aead;
pub mod asymmetric;
pub mod digest;
pub mod ecdsa;
mod error;
pub mod gcm;
pub mod import;
pub mod kdf;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
pub mod random;
pub mod seal;
mod secret;
pub mod shamir;

pub use error::CryptoError;
pub use secret::SecretBytes;
