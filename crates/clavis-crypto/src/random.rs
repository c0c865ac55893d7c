//! The system random number generator (aws-lc's DRBG, seeded from the OS).

use crate::{CryptoError, SecretBytes};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// Fills `buf` with random bytes.
pub fn fill(buf: &mut [u8]) -> Result<(), CryptoError> {
    SystemRandom::new().fill(buf).map_err(|_| CryptoError::Rng)
}

/// `len` random bytes that are not secret (nonces, identifiers).
pub fn bytes(len: usize) -> Result<Vec<u8>, CryptoError> {
    let mut v = vec![0u8; len];
    fill(&mut v)?;
    Ok(v)
}

/// `len` random bytes that are secret (key material, data keys). The buffer is moved, not
/// copied, into the zeroizing wrapper.
pub fn secret(len: usize) -> Result<SecretBytes, CryptoError> {
    let mut buf = vec![0u8; len];
    fill(&mut buf)?;
    Ok(SecretBytes::new(buf))
}
