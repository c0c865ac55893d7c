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
pub mod ciphertext;
mod clock;
mod error;
pub mod executor;
pub mod front;
mod kernel;
pub mod operation;
mod ops;
mod paging;
pub mod policy;
pub mod schedule;
pub mod types;
mod validate;

pub use clock::{Clock, SystemClock, TestClock};
pub use error::KmsError;
pub use kernel::master_key;
pub use kernel::{Caller, Credential, Kms, KmsConfig};
pub use operation::Operation;
pub use ops::identity;
pub use ops::lifecycle::DueWork;
pub use ops::xks;
