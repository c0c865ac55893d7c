//! The embedded SQLite implementation of [`clavis_store::Store`], the default backend.
//!
//! It owns the schema and its migrations, the SQL, and the mapping between rows and records.
//! It must not interpret records (states, specs, policies are opaque strings here) and never
//! sees unsealed key material.
//!
//! Durability: WAL journal with `synchronous=FULL`, so a committed transaction survives `kill -9`
//! and power loss. One writer connection serialises writes (SQLite allows one writer anyway);
//! readers use a small pool of their own connections so reads do not queue behind writes. All
//! database work runs on tokio's blocking pool, never on the async worker threads.

mod schema;
mod snapshot;

pub use snapshot::{Snapshot, snapshot_into};

// The Store families, one module each. They are parts of one implementation: each takes the
// connection handling, row mapping and imports of this module with `use super::*`, and keeps the
// SQL and helpers only it uses.
mod aliases;
mod grants;
mod identity;
mod imports;
mod keys;
mod sealed;
mod secrets;
mod settings;
mod tags;

use clavis_store::{
    AccessKeyRecord, AccountRecord, AliasRecord, DeletionRequest, GrantRecord, ImportParamsRecord, KeyMaterialRecord, KeyRecord,
    SealedRecord, SealedTable, SecretRecord, SecretVersionRecord, StoreError, StoreResult, Tag, UserRecord,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A SQLite database file holding all Clavis state.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// The outcome of an INSERT: a duplicate key is [`StoreError::AlreadyExists`].
fn inserted(result: rusqlite::Result<usize>) -> StoreResult<()> {
    match result {
        Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists),
        other => other.map(|_| ()).map_err(unavailable),
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(unavailable)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(unavailable)?;
    // secure_delete: deleted rows (destroyed key material) are overwritten with zeros, not
    // only unlinked.
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;")
        .map_err(unavailable)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let mut writer = open_connection(path)?;
        schema::migrate(&mut writer)?;
        Ok(SqliteStore { inner: Arc::new(Inner { path: path.to_owned(), writer: Mutex::new(writer), readers: Mutex::new(Vec::new()) }) })
    }

    /// Runs `f` with the writer connection on the blocking pool.
    async fn write<T: Send + 'static>(&self, f: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.writer.lock().map_err(|_| StoreError::Unavailable("writer lock poisoned".into()))?;
            f(&mut conn)
        })
        .await
        .map_err(unavailable)?
    }

    /// Runs `f` with a pooled reader connection on the blocking pool.
    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().map_err(|_| StoreError::Unavailable("reader pool poisoned".into()))?.pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_connection(&inner.path)?,
            };
            let result = f(&conn);
            if let Ok(mut pool) = inner.readers.lock()
                && pool.len() < 8
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(unavailable)?
    }
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn rev_i64(rev: u64) -> StoreResult<i64> {
    i64::try_from(rev).map_err(|_| StoreError::Corrupt("revision out of range".into()))
}

/// After deleting key material or a secret's values: secure_delete zeroed the pages in the WAL's
/// newest frames; a truncating checkpoint writes them over the main file and discards the WAL
/// frames that still held the deleted bytes. Readers can delay it briefly.
fn erase_checkpoint(conn: &Connection) -> StoreResult<()> {
    for _ in 0..50 {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).map_err(unavailable)?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(StoreError::Unavailable(
        "the data is deleted but the WAL checkpoint that erases it stayed busy; it will complete at the next checkpoint".into(),
    ))
}
