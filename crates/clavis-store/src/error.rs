//! The storage crate's one error type.

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record to change does not exist.
    #[error("not found")]
    NotFound,
    /// A record with the same identity already exists.
    #[error("already exists")]
    AlreadyExists,
    /// A concurrent writer changed the record first (optimistic concurrency).
    #[error("concurrent modification")]
    Conflict,
    /// The change would exceed a limit the caller set.
    #[error("limit exceeded")]
    LimitExceeded,
    /// The database cannot be reached or refused the operation; the caller should fail the
    /// request with a service-unavailable error, never treat it as absence.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The database cannot store a value the client sent (PostgreSQL refuses NUL characters in
    /// text): a client error.
    #[error("value not storable: {0}")]
    InvalidInput(String),
    /// Stored data does not parse: a bug or tampering, never a client error.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}
