//! Whether requests are served: the root of trust unsealed and start-up finished.

use crate::{Kms, KmsError};

impl Kms {
    /// Whether requests are refused as sealed: the root of trust is sealed, or what needs it at
    /// start has not finished yet ([`Kms::set_ready`]).
    pub fn is_sealed(&self) -> bool {
        self.root.is_sealed() || !self.ready.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Marks the start-up work that needs the master key as done (the audit log is open, the
    /// deployment initialised): requests may be served.
    pub fn set_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Seals: forgets the master key, then wipes every unsealed key, material and credential
    /// from memory (in that order: a request that unsealed something just before cannot cache
    /// it after the wipe).
    pub(crate) fn seal_and_forget(&self) -> Result<(), clavis_crypto::CryptoError> {
        self.root.seal_now()?;
        self.materials.clear();
        self.keys.clear();
        self.secrets.clear();
        if let Ok(mut m) = self.credentials.write() {
            m.clear();
        }
        Ok(())
    }

    /// A root-of-trust error of an operator request, as the client should see it.
    pub(crate) fn operator_error(e: clavis_crypto::CryptoError) -> KmsError {
        match e {
            clavis_crypto::CryptoError::Unseal(m) => KmsError::Validation(m),
            clavis_crypto::CryptoError::Unsupported(m) => KmsError::UnsupportedOperation(m.to_owned()),
            clavis_crypto::CryptoError::Malformed(m) => KmsError::Validation(m.to_owned()),
            other => other.into(),
        }
    }
}
