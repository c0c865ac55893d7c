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

// The Store families, one module each.
mod aliases;
mod grants;
mod identity;
mod imports;
mod keys;
mod sealed;
mod settings;
mod tags;

use clavis_store::{
    AccessKeyRecord, AccountRecord, AliasRecord, DeletionRequest, GrantRecord, ImportParamsRecord, KeyMaterialRecord, KeyRecord,
    SealedRecord, SealedTable, StoreError, StoreResult, Tag, UserRecord,
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

const KEY_COLUMNS: &str = "key_id, account_id, region, description, key_usage, key_spec, origin, key_state, \
     creation_date_ms, deletion_date_ms, policy, current_version, revision, rotation_period_days, next_rotation_ms, \
     dual_auth, deletion_requested_by, deletion_requested_ms, deletion_request_window_days, valid_to_ms, expiration_model, \
     import_fingerprint";

fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        key_id: r.get(0)?,
        account_id: r.get(1)?,
        region: r.get(2)?,
        description: r.get(3)?,
        key_usage: r.get(4)?,
        key_spec: r.get(5)?,
        origin: r.get(6)?,
        key_state: r.get(7)?,
        creation_date_ms: r.get(8)?,
        deletion_date_ms: r.get(9)?,
        policy: r.get(10)?,
        current_version: r.get(11)?,
        revision: u64::try_from(r.get::<_, i64>(12)?).unwrap_or_default(),
        rotation_period_days: r.get(13)?,
        next_rotation_ms: r.get(14)?,
        dual_auth: r.get::<_, i64>(15)? != 0,
        deletion_request: match (r.get::<_, Option<String>>(16)?, r.get::<_, Option<i64>>(17)?, r.get::<_, Option<u32>>(18)?) {
            (Some(requested_by), Some(requested_ms), Some(window_days)) => {
                Some(DeletionRequest { requested_by, requested_ms, window_days })
            }
            _ => None,
        },
        valid_to_ms: r.get(19)?,
        expiration_model: r.get(20)?,
        import_fingerprint: r.get(21)?,
    })
}

fn access_key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccessKeyRecord> {
    Ok(AccessKeyRecord {
        access_key_id: r.get(0)?,
        sealed_secret: r.get(1)?,
        account_id: r.get(2)?,
        principal_arn: r.get(3)?,
        status: r.get(4)?,
        created_ms: r.get(5)?,
    })
}

const GRANT_COLUMNS: &str =
    "grant_id, key_id, name, grantee_principal, retiring_principal, operations, constraints, issuing_principal, created_ms, token";

fn grant_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<GrantRecord> {
    Ok(GrantRecord {
        grant_id: r.get(0)?,
        key_id: r.get(1)?,
        name: r.get(2)?,
        grantee_principal: r.get(3)?,
        retiring_principal: r.get(4)?,
        operations: r.get(5)?,
        constraints: r.get(6)?,
        issuing_principal: r.get(7)?,
        created_ms: r.get(8)?,
        token: r.get(9)?,
    })
}

fn alias_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AliasRecord> {
    Ok(AliasRecord {
        account_id: r.get(0)?,
        region: r.get(1)?,
        alias_name: r.get(2)?,
        target_key_id: r.get(3)?,
        creation_date_ms: r.get(4)?,
        last_updated_date_ms: r.get(5)?,
    })
}

fn insert_material(conn: &Connection, m: &KeyMaterialRecord) -> StoreResult<()> {
    inserted(conn.execute(
        "INSERT INTO key_material (key_id, version, sealed, created_ms, rotation_type) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![m.key_id, m.version, m.sealed, m.created_ms, m.rotation_type],
    ))
}

/// Compare-and-swap of a key row on its revision.
fn update_key_row(conn: &Connection, key: &KeyRecord, expected_revision: u64) -> StoreResult<()> {
    let n = conn
        .prepare_cached(
            "UPDATE keys SET description = ?2, key_usage = ?3, key_spec = ?4, origin = ?5, key_state = ?6, \
             deletion_date_ms = ?7, policy = ?8, current_version = ?9, revision = ?10, rotation_period_days = ?12, \
             next_rotation_ms = ?13, dual_auth = ?14, deletion_requested_by = ?15, deletion_requested_ms = ?16, \
             deletion_request_window_days = ?17, valid_to_ms = ?18, expiration_model = ?19, import_fingerprint = ?20 \
             WHERE key_id = ?1 AND revision = ?11",
        )
        .and_then(|mut st| {
            st.execute(params![
                key.key_id,
                key.description,
                key.key_usage,
                key.key_spec,
                key.origin,
                key.key_state,
                key.deletion_date_ms,
                key.policy,
                key.current_version,
                rev_i64(key.revision).unwrap_or(i64::MAX),
                rev_i64(expected_revision).unwrap_or(i64::MAX),
                key.rotation_period_days,
                key.next_rotation_ms,
                i64::from(key.dual_auth),
                key.deletion_request.as_ref().map(|d| d.requested_by.clone()),
                key.deletion_request.as_ref().map(|d| d.requested_ms),
                key.deletion_request.as_ref().map(|d| d.window_days),
                key.valid_to_ms,
                key.expiration_model,
                key.import_fingerprint
            ])
        })
        .map_err(unavailable)?;
    if n == 1 {
        return Ok(());
    }
    let exists: bool =
        conn.query_row("SELECT EXISTS (SELECT 1 FROM keys WHERE key_id = ?1)", params![key.key_id], |r| r.get(0)).map_err(unavailable)?;
    Err(if exists { StoreError::Conflict } else { StoreError::NotFound })
}

/// After deleting key material: secure_delete zeroed the pages in the WAL's newest frames; a
/// truncating checkpoint writes them over the main file and discards the WAL frames that still
/// held the material. Readers can delay it briefly.
fn erase_checkpoint(conn: &Connection) -> StoreResult<()> {
    for _ in 0..50 {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).map_err(unavailable)?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(StoreError::Unavailable(
        "the material is deleted but the WAL checkpoint that erases it stayed busy; it will complete at the next checkpoint".into(),
    ))
}

/// Consumes an import token: its parameters are deleted (a used token has no further use, and
/// its sealed wrapping key should not wait for a purge); [`StoreError::Conflict`] if it was
/// already consumed (or is unknown).
fn consume_token(conn: &Connection, token_id: &str) -> StoreResult<()> {
    let n = conn.execute("DELETE FROM import_params WHERE token_id = ?1 AND used = 0", params![token_id]).map_err(unavailable)?;
    if n == 1 { Ok(()) } else { Err(StoreError::Conflict) }
}

/// The import parameters of a key that are unused and still valid at `now_ms`.
fn count_outstanding(conn: &Connection, key_id: &str, now_ms: i64) -> StoreResult<i64> {
    conn.prepare_cached("SELECT COUNT(*) FROM import_params WHERE key_id = ?1 AND expires_ms > ?2 AND used = 0")
        .and_then(|mut st| st.query_row(params![key_id, now_ms], |r| r.get(0)))
        .map_err(unavailable)
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn rev_i64(rev: u64) -> StoreResult<i64> {
    i64::try_from(rev).map_err(|_| StoreError::Corrupt("revision out of range".into()))
}
