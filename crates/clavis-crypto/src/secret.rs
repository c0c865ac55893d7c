//! Secret byte buffers: zeroized on drop, redacted in `Debug`, read only through
//! [`SecretBytes::expose_secret`].

use zeroize::Zeroizing;

/// Bytes that must never be logged or written to disk in the clear: key material, data-key
/// plaintext, decrypted payloads, access-key secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`; the buffer is wiped when the value is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    /// Copies `bytes` into a new secret buffer.
    pub fn from_slice(bytes: &[u8]) -> Self {
        SecretBytes::new(bytes.to_vec())
    }

    /// The secret bytes. Every call site is a place where plaintext leaves the secret type, so
    /// keep them few and obvious.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// Mutable access for in-place decryption inside this crate.
    pub(crate) fn expose_secret_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    /// Shortens the buffer (the whole allocation is still wiped on drop).
    pub(crate) fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes([REDACTED; {}])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = SecretBytes::from_slice(b"hunter2");
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("104")); // 'h' as a decimal byte
        assert_eq!(shown, "SecretBytes([REDACTED; 7])");
    }
}
