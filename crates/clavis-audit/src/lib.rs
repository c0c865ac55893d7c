//! The Clavis audit log (`DATA_DIR/audit/`): every request's record, durable before its
//! response is sent, in append-only segments of JSON lines.
//!
//! It owns the on-disk format ([`format`](mod@format)), the group-committing writer ([`AuditLog`], which
//! implements the core's `AuditSink`), and verification and export ([`verify`]). Format details
//! are in `docs/formats.md`.
//!
//! Tamper evidence: every record carries an HMAC-SHA256 over its sequence number, the previous
//! record's MAC and its exact bytes, under an audit key that is sealed by the root of trust. A
//! closed segment ends with a MACed checkpoint; the live segment's end is pinned by the MACed
//! `HEAD` file, rewritten after every commit. Modification, deletion, insertion, reordering and
//! truncation are all detected by [`verify::verify`].
//!
//! Segments also close by age, and retention deletes closed segments older than a number of
//! days: the first kept segment then starts from a MACed `ANCHOR`, and an `AuditRetention`
//! record in the log says what was deleted, so the rest still verifies and a deletion without
//! them is still detected. Committed records can also be streamed to a file, standard output or
//! a syslog collector ([`SyslogSink`]), best effort.
//!
//! It must not interpret the records (the core builds them; retention reads only their
//! `eventTime`) and never sees key material.

pub mod format;
mod retention;
mod syslog;
pub mod verify;
mod writer;

pub use retention::{RETENTION_EVENT_NAME, RETENTION_EVENT_SOURCE, parse_duration};
pub use syslog::{SyslogSink, SyslogTarget};
pub use writer::{AuditConfig, AuditLog, Durability, SYNC_INTERVAL, StreamSink};

use clavis_crypto::SecretBytes;
use clavis_crypto::seal::RootOfTrust;
use std::path::Path;

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Reading or writing the log failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The audit key could not be created or unsealed.
    #[error("audit key: {0}")]
    Key(String),
    /// The log on disk is not what this node wrote (see `clavis audit verify`).
    #[error("audit log is inconsistent: {0}")]
    Inconsistent(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AuditError {
    let context = context.into();
    move |source| AuditError::Io { context, source }
}

/// The seal context of the audit key.
const AUDIT_KEY_CONTEXT: &[u8] = b"clavis/audit-key/v1\0";
/// File holding the sealed audit key.
pub const AUDIT_KEY_FILE: &str = "audit.key.sealed";

/// Reseals the audit MAC key in `dir` under `root`'s current master key (master-key rotation):
/// the new sealed file replaces the old one atomically.
pub fn reseal_key(dir: &Path, root: &dyn RootOfTrust, key: &SecretBytes) -> Result<(), AuditError> {
    let sealed = root.seal(AUDIT_KEY_CONTEXT, key).map_err(|e| AuditError::Key(e.to_string()))?;
    let path = dir.join(AUDIT_KEY_FILE);
    let tmp = dir.join(format!("{AUDIT_KEY_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    writer::write_durably(&tmp, &sealed)?;
    // The rename replaces the old file atomically; syncing the directory makes it durable.
    std::fs::rename(&tmp, &path).map_err(io(format!("replacing {}", path.display())))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(format!("syncing {}", dir.display())))
}

/// Loads the audit MAC key from `dir`, creating (and sealing) a new one if `create` and none
/// exists.
pub fn load_key(dir: &Path, root: &dyn RootOfTrust, create: bool) -> Result<SecretBytes, AuditError> {
    let path = dir.join(AUDIT_KEY_FILE);
    match std::fs::read(&path) {
        Ok(sealed) => root.unseal(AUDIT_KEY_CONTEXT, &sealed).map_err(|e| AuditError::Key(format!("unsealing {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let key = clavis_crypto::random::secret(32).map_err(|e| AuditError::Key(e.to_string()))?;
            let sealed = root.seal(AUDIT_KEY_CONTEXT, &key).map_err(|e| AuditError::Key(e.to_string()))?;
            writer::write_durably(&path, &sealed)?;
            Ok(key)
        }
        Err(e) => Err(io(format!("reading {}", path.display()))(e)),
    }
}
