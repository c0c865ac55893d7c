//! The Clavis core: the AWS KMS operations, the key state machine, the ciphertext format and
//! the caches in front of storage.
//!
//! Architecture invariant: the core depends on traits — [`clavis_store::Store`],
//! [`clavis_crypto::seal::RootOfTrust`], [`Clock`] — and on `clavis-crypto`'s narrow API, never
//! on the HTTP framework, a SQL driver or the cryptography library itself. Operations take the
//! AWS request shapes of [`api`] and a [`Caller`] that the HTTP layer has already authenticated,
//! and return the AWS response shapes or a [`KmsError`].

pub mod api;
pub mod audit;
mod byok;
pub mod ciphertext;
mod clock;
mod error;
mod grants;
pub mod identity;
mod keys;
mod lifecycle;
pub mod master_key;
pub mod operation;
mod paging;
pub mod policy;
mod service;
pub mod types;
mod validate;

pub use clock::{Clock, SystemClock, TestClock};
pub use error::KmsError;
pub use lifecycle::DueWork;
pub use operation::Operation;
pub use service::{Caller, Credential, Kms, KmsConfig};
