//! The crypto crate's one error type.

/// Why a cryptographic operation failed. Deliberately coarse: an authentication failure never
/// says which byte was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The AEAD tag did not verify: wrong key, wrong additional data or tampered ciphertext.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// A key of the wrong length was supplied.
    #[error("invalid key length: expected {expected} bytes, got {actual}")]
    InvalidKeyLength {
        /// The length the algorithm requires.
        expected: usize,
        /// The length supplied.
        actual: usize,
    },
    /// The input is malformed (too short, unknown version, ...).
    #[error("malformed input: {0}")]
    Malformed(&'static str),
    /// The system random number generator failed.
    #[error("random number generator failure")]
    Rng,
    /// Reading or writing the root-of-trust key file failed.
    #[error("key file {path}: {source}")]
    KeyFile {
        /// The file concerned.
        path: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The root of trust is sealed: its master key is not in memory.
    #[error("the root of trust is sealed")]
    Sealed,
    /// The provider does not do this (for example unseal shares for a key file).
    #[error("not supported by this root of trust: {0}")]
    Unsupported(&'static str),
    /// An unseal attempt failed or was refused; the message is safe to show.
    #[error("{0}")]
    Unseal(String),
    /// The HSM (PKCS#11 module) failed or refused.
    #[error("HSM: {0}")]
    Hsm(String),
}
