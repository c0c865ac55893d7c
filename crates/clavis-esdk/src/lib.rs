//! The AWS Encryption SDK message format, version 2, as `clavis encrypt` writes and
//! `clavis decrypt` reads it (docs/envelope.md): a header holding the encryption context and
//! the data key wrapped under one or more KMS keys, a body of AES-256-GCM frames under a key
//! derived from the data key with HKDF-SHA512 and committed to in the header, and for the
//! signed suite a footer with an ECDSA P-384 signature over everything before it.
//!
//! It owns the byte layout, key derivation and the streaming pipelines ([`encrypt`],
//! [`Decryptor`]). It does no I/O beyond the `Read` and `Write` it is given and knows nothing
//! of KMS: the caller wraps and unwraps the data key. Parsing never panics and bounds every
//! length it reads ([`Limits`]); the only suites are the two committing ones, 0x0478 and
//! 0x0578. All cryptography goes through `clavis-crypto`.

mod header;
mod input;
mod stream;
mod suite;

pub use header::{EncryptedDataKey, EncryptionContext, Header, PUBLIC_KEY_CONTEXT_KEY, RESERVED_CONTEXT_PREFIX};
pub use stream::{Decryptor, EncryptMaterials, StreamOptions, encrypt, prepare_context};
pub use suite::Suite;

/// The default frame length, as the AWS Encryption SDK's command line uses.
pub const DEFAULT_FRAME_LENGTH: u32 = 4096;
/// The longest frame this implementation writes or reads. The format allows up to 2^32 - 1
/// bytes, but a frame is held in memory whole until its tag verifies, so the cap bounds memory.
pub const MAX_FRAME_LENGTH: u32 = 16 << 20;
/// The longest header this implementation reads (encryption context and wrapped data keys).
pub const MAX_HEADER_LEN: usize = 1 << 20;

/// What a reader accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// At most this many wrapped data keys in a header (`--max-encrypted-data-keys`).
    pub max_encrypted_data_keys: Option<u16>,
}

/// Why a message could not be written or read. Every variant's message is one line, safe to
/// show: it never contains key material or plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended inside the message.
    #[error("the message is truncated")]
    Truncated,
    /// A field does not hold what the format allows.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// The message is of another format version (version 1 messages use non-committing suites).
    #[error("unsupported message format version {0:#04x} (only version 2 with a committing algorithm suite is supported)")]
    UnsupportedVersion(u8),
    /// The message uses an algorithm suite this implementation does not read.
    #[error("unsupported algorithm suite {0:#06x} (supported: 0x0478 and 0x0578)")]
    UnsupportedSuite(u16),
    /// The message's suite is not the one the caller required.
    #[error("the message uses algorithm suite {found}, not the required {expected}")]
    WrongSuite {
        /// The suite in the message.
        found: Suite,
        /// The suite required.
        expected: Suite,
    },
    /// The body is not framed.
    #[error("non-framed message bodies are not supported")]
    NonFramed,
    /// The frame length is zero or above [`MAX_FRAME_LENGTH`].
    #[error("frame length {0} out of range (1 to 16777216)")]
    FrameLength(u32),
    /// The header is longer than [`MAX_HEADER_LEN`].
    #[error("the message header is longer than 1 MiB")]
    HeaderTooLarge,
    /// More wrapped data keys than allowed.
    #[error("the message has {count} encrypted data keys, more than the maximum of {max}")]
    TooManyDataKeys {
        /// Found (or asked for).
        count: usize,
        /// Allowed.
        max: u16,
    },
    /// The caller gave an invalid encryption context or too many wrapped keys to write.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The data key does not match the header's key commitment.
    #[error("the data key does not match the message's key commitment")]
    Commitment,
    /// The header's authentication tag did not verify.
    #[error("the message header failed authentication")]
    HeaderAuthentication,
    /// A frame's authentication tag did not verify.
    #[error("frame {0} failed authentication")]
    FrameAuthentication(u32),
    /// The footer's signature did not verify.
    #[error("the message signature did not verify")]
    Signature,
    /// Bytes follow the end of the message.
    #[error("unexpected data after the end of the message")]
    TrailingData,
    /// Reading the input or writing the output failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A cryptographic primitive failed (randomness, key generation).
    #[error("{0}")]
    Crypto(#[from] clavis_crypto::CryptoError),
}
