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

use clavis_store::{
    AccessKeyRecord, AccountRecord, AliasRecord, DeletionRequest, GrantRecord, ImportParamsRecord, KeyMaterialRecord, KeyRecord,
    SealedRecord, SealedTable, Store, StoreError, StoreResult, Tag, UserRecord,
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

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_key(&self, key: &KeyRecord, material: Option<&KeyMaterialRecord>, tags: &[Tag]) -> StoreResult<()> {
        let (key, material, tags) = (key.clone(), material.cloned(), tags.to_vec());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            let res = tx.execute(
                &format!("INSERT INTO keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)"),
                params![
                    key.key_id,
                    key.account_id,
                    key.region,
                    key.description,
                    key.key_usage,
                    key.key_spec,
                    key.origin,
                    key.key_state,
                    key.creation_date_ms,
                    key.deletion_date_ms,
                    key.policy,
                    key.current_version,
                    rev_i64(key.revision)?,
                    key.rotation_period_days,
                    key.next_rotation_ms,
                    i64::from(key.dual_auth),
                    key.deletion_request.as_ref().map(|d| d.requested_by.clone()),
                    key.deletion_request.as_ref().map(|d| d.requested_ms),
                    key.deletion_request.as_ref().map(|d| d.window_days),
                    key.valid_to_ms,
                    key.expiration_model,
                    key.import_fingerprint
                ],
            );
            inserted(res)?;
            if let Some(m) = &material {
                insert_material(&tx, m)?;
            }
            for t in &tags {
                tx.execute(
                    "INSERT OR REPLACE INTO tags (key_id, tag_key, tag_value) VALUES (?1, ?2, ?3)",
                    params![key.key_id, t.key, t.value],
                )
                .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn get_key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>> {
        let key_id = key_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE key_id = ?1"))
                .and_then(|mut st| st.query_row(params![key_id], key_from_row).optional())
                .map_err(unavailable)
        })
        .await
    }

    async fn update_key(&self, key: &KeyRecord, expected_revision: u64) -> StoreResult<()> {
        let key = key.clone();
        self.write(move |conn| update_key_row(conn, &key, expected_revision)).await
    }

    async fn add_material(&self, key: &KeyRecord, expected_revision: u64, material: &KeyMaterialRecord) -> StoreResult<()> {
        let (key, material) = (key.clone(), material.clone());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            update_key_row(&tx, &key, expected_revision)?;
            insert_material(&tx, &material)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn list_materials(&self, key_id: &str) -> StoreResult<Vec<KeyMaterialRecord>> {
        let key_id = key_id.to_owned();
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached("SELECT version, sealed, created_ms, rotation_type FROM key_material WHERE key_id = ?1 ORDER BY version")
                .map_err(unavailable)?;
            st.query_map(params![key_id], |r| {
                Ok(KeyMaterialRecord {
                    key_id: key_id.clone(),
                    version: r.get(0)?,
                    sealed: r.get(1)?,
                    created_ms: r.get(2)?,
                    rotation_type: r.get(3)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(unavailable)
        })
        .await
    }

    async fn destroy_key(&self, key_id: &str, expected_revision: u64) -> StoreResult<()> {
        let key_id = key_id.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            let rev: Option<i64> = tx
                .query_row("SELECT revision FROM keys WHERE key_id = ?1", params![key_id], |r| r.get(0))
                .optional()
                .map_err(unavailable)?;
            match rev {
                None => return Err(StoreError::NotFound),
                Some(r) if r != rev_i64(expected_revision)? => return Err(StoreError::Conflict),
                Some(_) => {}
            }
            for sql in [
                "DELETE FROM key_material WHERE key_id = ?1",
                "DELETE FROM tags WHERE key_id = ?1",
                "DELETE FROM aliases WHERE target_key_id = ?1",
                "DELETE FROM grants WHERE key_id = ?1",
                "DELETE FROM import_params WHERE key_id = ?1",
                "DELETE FROM keys WHERE key_id = ?1",
            ] {
                tx.execute(sql, params![key_id]).map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)?;
            erase_checkpoint(conn)
        })
        .await
    }

    async fn put_import_params(&self, p: &ImportParamsRecord, now_ms: i64, max_outstanding: usize) -> StoreResult<()> {
        let p = p.clone();
        // The one writer connection serialises this count and insert against every other write.
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            let outstanding = count_outstanding(&tx, &p.key_id, now_ms)?;
            if outstanding >= limit_i64(max_outstanding) {
                return Err(StoreError::LimitExceeded);
            }
            inserted(tx.execute(
                "INSERT INTO import_params (token_id, key_id, wrapping_algorithm, wrapping_key_spec, sealed_private_key, nonce, expires_ms, used) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![p.token_id, p.key_id, p.wrapping_algorithm, p.wrapping_key_spec, p.sealed_private_key, p.nonce, p.expires_ms, i64::from(p.used)],
            ))?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn count_import_params(&self, key_id: &str, now_ms: i64) -> StoreResult<usize> {
        let key_id = key_id.to_owned();
        self.read(move |conn| count_outstanding(conn, &key_id, now_ms).map(|n| usize::try_from(n).unwrap_or(usize::MAX))).await
    }

    async fn purge_import_params(&self, key_id: Option<&str>, expired_by_ms: i64) -> StoreResult<u64> {
        let key_id = key_id.map(str::to_owned);
        self.write(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM import_params WHERE (?1 IS NULL OR key_id = ?1) AND (used <> 0 OR expires_ms <= ?2)",
                    params![key_id, expired_by_ms],
                )
                .map_err(unavailable)?;
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
        .await
    }

    async fn get_import_params(&self, token_id: &str) -> StoreResult<Option<ImportParamsRecord>> {
        let token_id = token_id.to_owned();
        self.read(move |conn| {
            conn.query_row(
                "SELECT token_id, key_id, wrapping_algorithm, wrapping_key_spec, sealed_private_key, nonce, expires_ms, used \
                 FROM import_params WHERE token_id = ?1",
                params![token_id],
                |r| {
                    Ok(ImportParamsRecord {
                        token_id: r.get(0)?,
                        key_id: r.get(1)?,
                        wrapping_algorithm: r.get(2)?,
                        wrapping_key_spec: r.get(3)?,
                        sealed_private_key: r.get(4)?,
                        nonce: r.get(5)?,
                        expires_ms: r.get(6)?,
                        used: r.get::<_, i64>(7)? != 0,
                    })
                },
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    async fn import_material(
        &self,
        key: &KeyRecord,
        expected_revision: u64,
        material: &KeyMaterialRecord,
        token_id: &str,
    ) -> StoreResult<()> {
        let (key, material, token_id) = (key.clone(), material.clone(), token_id.to_owned());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            update_key_row(&tx, &key, expected_revision)?;
            consume_token(&tx, &token_id)?;
            tx.execute("DELETE FROM key_material WHERE key_id = ?1", params![key.key_id]).map_err(unavailable)?;
            insert_material(&tx, &material)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn stage_material(
        &self,
        key: &KeyRecord,
        expected_revision: u64,
        material: &KeyMaterialRecord,
        token_id: &str,
    ) -> StoreResult<()> {
        let (key, material, token_id) = (key.clone(), material.clone(), token_id.to_owned());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            update_key_row(&tx, &key, expected_revision)?;
            consume_token(&tx, &token_id)?;
            insert_material(&tx, &material)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn promote_material(&self, key: &KeyRecord, expected_revision: u64, version: u32, rotation_type: &str) -> StoreResult<()> {
        let (key, rotation_type) = (key.clone(), rotation_type.to_owned());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            update_key_row(&tx, &key, expected_revision)?;
            let n = tx
                .execute(
                    "UPDATE key_material SET rotation_type = ?3 WHERE key_id = ?1 AND version = ?2",
                    params![key.key_id, version, rotation_type],
                )
                .map_err(unavailable)?;
            if n != 1 {
                return Err(StoreError::NotFound);
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn delete_material(&self, key: &KeyRecord, expected_revision: u64) -> StoreResult<()> {
        let key = key.clone();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            update_key_row(&tx, &key, expected_revision)?;
            tx.execute("DELETE FROM key_material WHERE key_id = ?1", params![key.key_id]).map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            erase_checkpoint(conn)
        })
        .await
    }

    async fn keys_due(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<KeyRecord>> {
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM keys WHERE (next_rotation_ms IS NOT NULL AND next_rotation_ms <= ?1) \
                     OR (deletion_date_ms IS NOT NULL AND deletion_date_ms <= ?1) \
                     OR (valid_to_ms IS NOT NULL AND valid_to_ms <= ?1) ORDER BY key_id LIMIT ?2"
                ))
                .map_err(unavailable)?;
            st.query_map(params![now_ms, limit_i64(limit)], key_from_row).and_then(Iterator::collect).map_err(unavailable)
        })
        .await
    }

    async fn try_lease(&self, name: &str, holder: &str, now_ms: i64, until_ms: i64) -> StoreResult<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "INSERT INTO leases (name, holder, until_ms) VALUES (?1, ?2, ?4) \
                     ON CONFLICT (name) DO UPDATE SET holder = ?2, until_ms = ?4 WHERE leases.holder = ?2 OR leases.until_ms < ?3",
                    params![name, holder, now_ms, until_ms],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }

    async fn list_keys(&self, account_id: &str, region: &str, after: Option<&str>, limit: usize) -> StoreResult<Vec<KeyRecord>> {
        let (account_id, region, after) = (account_id.to_owned(), region.to_owned(), after.unwrap_or("").to_owned());
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM keys WHERE account_id = ?1 AND region = ?2 AND key_id > ?3 ORDER BY key_id LIMIT ?4"
                ))
                .map_err(unavailable)?;
            st.query_map(params![account_id, region, after, limit_i64(limit)], key_from_row)
                .and_then(Iterator::collect)
                .map_err(unavailable)
        })
        .await
    }

    async fn get_material(&self, key_id: &str, version: u32) -> StoreResult<Option<KeyMaterialRecord>> {
        let key_id = key_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT sealed, created_ms, rotation_type FROM key_material WHERE key_id = ?1 AND version = ?2")
                .and_then(|mut st| {
                    st.query_row(params![key_id, version], |r| {
                        Ok(KeyMaterialRecord {
                            key_id: key_id.clone(),
                            version,
                            sealed: r.get(0)?,
                            created_ms: r.get(1)?,
                            rotation_type: r.get(2)?,
                        })
                    })
                    .optional()
                })
                .map_err(unavailable)
        })
        .await
    }

    async fn create_alias(&self, alias: &AliasRecord) -> StoreResult<()> {
        let a = alias.clone();
        self.write(move |conn| {
            inserted(conn.execute(
                "INSERT INTO aliases (account_id, region, alias_name, target_key_id, creation_date_ms, last_updated_date_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![a.account_id, a.region, a.alias_name, a.target_key_id, a.creation_date_ms, a.last_updated_date_ms],
            ))
        })
        .await
    }

    async fn get_alias(&self, account_id: &str, region: &str, alias_name: &str) -> StoreResult<Option<AliasRecord>> {
        let (account_id, region, alias_name) = (account_id.to_owned(), region.to_owned(), alias_name.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT account_id, region, alias_name, target_key_id, creation_date_ms, last_updated_date_ms \
                 FROM aliases WHERE account_id = ?1 AND region = ?2 AND alias_name = ?3",
            )
            .and_then(|mut st| st.query_row(params![account_id, region, alias_name], alias_from_row).optional())
            .map_err(unavailable)
        })
        .await
    }

    async fn update_alias(&self, account_id: &str, region: &str, alias_name: &str, target_key_id: &str, now_ms: i64) -> StoreResult<()> {
        let (account_id, region, alias_name, target) =
            (account_id.to_owned(), region.to_owned(), alias_name.to_owned(), target_key_id.to_owned());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE aliases SET target_key_id = ?4, last_updated_date_ms = ?5 WHERE account_id = ?1 AND region = ?2 AND alias_name = ?3",
                    params![account_id, region, alias_name, target, now_ms],
                )
                .map_err(unavailable)?;
            if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
        })
        .await
    }

    async fn delete_alias(&self, account_id: &str, region: &str, alias_name: &str) -> StoreResult<()> {
        let (account_id, region, alias_name) = (account_id.to_owned(), region.to_owned(), alias_name.to_owned());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM aliases WHERE account_id = ?1 AND region = ?2 AND alias_name = ?3",
                    params![account_id, region, alias_name],
                )
                .map_err(unavailable)?;
            if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
        })
        .await
    }

    async fn list_aliases(
        &self,
        account_id: &str,
        region: &str,
        key_id: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<AliasRecord>> {
        let (account_id, region) = (account_id.to_owned(), region.to_owned());
        let (key_id, after) = (key_id.map(str::to_owned), after.unwrap_or("").to_owned());
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT account_id, region, alias_name, target_key_id, creation_date_ms, last_updated_date_ms \
                     FROM aliases WHERE account_id = ?1 AND region = ?2 AND (?3 IS NULL OR target_key_id = ?3) \
                     AND alias_name > ?4 ORDER BY alias_name LIMIT ?5",
                )
                .map_err(unavailable)?;
            st.query_map(params![account_id, region, key_id, after, limit_i64(limit)], alias_from_row)
                .and_then(Iterator::collect)
                .map_err(unavailable)
        })
        .await
    }

    async fn put_tags(&self, key_id: &str, tags: &[Tag], max_tags: usize) -> StoreResult<()> {
        let (key_id, tags) = (key_id.to_owned(), tags.to_vec());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            for t in &tags {
                tx.execute("INSERT OR REPLACE INTO tags (key_id, tag_key, tag_value) VALUES (?1, ?2, ?3)", params![key_id, t.key, t.value])
                    .map_err(unavailable)?;
            }
            let count: i64 =
                tx.query_row("SELECT COUNT(*) FROM tags WHERE key_id = ?1", params![key_id], |r| r.get(0)).map_err(unavailable)?;
            if count > limit_i64(max_tags) {
                // Dropping the transaction rolls it back.
                return Err(StoreError::LimitExceeded);
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn delete_tags(&self, key_id: &str, tag_keys: &[String]) -> StoreResult<()> {
        let (key_id, tag_keys) = (key_id.to_owned(), tag_keys.to_vec());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            for k in &tag_keys {
                tx.execute("DELETE FROM tags WHERE key_id = ?1 AND tag_key = ?2", params![key_id, k]).map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn list_tags(&self, key_id: &str, after: Option<&str>, limit: usize) -> StoreResult<Vec<Tag>> {
        let (key_id, after) = (key_id.to_owned(), after.unwrap_or("").to_owned());
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached("SELECT tag_key, tag_value FROM tags WHERE key_id = ?1 AND tag_key > ?2 ORDER BY tag_key LIMIT ?3")
                .map_err(unavailable)?;
            st.query_map(params![key_id, after, limit_i64(limit)], |r| Ok(Tag { key: r.get(0)?, value: r.get(1)? }))
                .and_then(Iterator::collect)
                .map_err(unavailable)
        })
        .await
    }

    async fn put_access_key(&self, key: &AccessKeyRecord) -> StoreResult<()> {
        let k = key.clone();
        self.write(move |conn| {
            inserted(conn.execute(
                "INSERT INTO access_keys (access_key_id, sealed_secret, account_id, principal_arn, status, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![k.access_key_id, k.sealed_secret, k.account_id, k.principal_arn, k.status, k.created_ms],
            ))
        })
        .await
    }

    async fn get_access_key(&self, access_key_id: &str) -> StoreResult<Option<AccessKeyRecord>> {
        let id = access_key_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT access_key_id, sealed_secret, account_id, principal_arn, status, created_ms FROM access_keys WHERE access_key_id = ?1",
            )
            .and_then(|mut st| {
                st.query_row(params![id], access_key_from_row)
                .optional()
            })
            .map_err(unavailable)
        })
        .await
    }

    async fn create_user(&self, user: &UserRecord, key: &AccessKeyRecord) -> StoreResult<()> {
        let (u, k) = (user.clone(), key.clone());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            inserted(tx.execute(
                "INSERT INTO users (account_id, user_name, arn, created_ms, role) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![u.account_id, u.user_name, u.arn, u.created_ms, u.role],
            ))?;
            inserted(tx.execute(
                "INSERT INTO access_keys (access_key_id, sealed_secret, account_id, principal_arn, status, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![k.access_key_id, k.sealed_secret, k.account_id, k.principal_arn, k.status, k.created_ms],
            ))?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn list_access_keys(&self, principal_arn: &str) -> StoreResult<Vec<AccessKeyRecord>> {
        let arn = principal_arn.to_owned();
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT access_key_id, sealed_secret, account_id, principal_arn, status, created_ms FROM access_keys \
                     WHERE principal_arn = ?1 ORDER BY access_key_id",
                )
                .map_err(unavailable)?;
            st.query_map(params![arn], access_key_from_row).and_then(Iterator::collect).map_err(unavailable)
        })
        .await
    }

    async fn set_access_key_status(&self, access_key_id: &str, status: &str) -> StoreResult<()> {
        let (id, status) = (access_key_id.to_owned(), status.to_owned());
        self.write(move |conn| {
            let n =
                conn.execute("UPDATE access_keys SET status = ?2 WHERE access_key_id = ?1", params![id, status]).map_err(unavailable)?;
            if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
        })
        .await
    }

    async fn delete_access_key(&self, access_key_id: &str) -> StoreResult<()> {
        let id = access_key_id.to_owned();
        self.write(move |conn| {
            let n = conn.execute("DELETE FROM access_keys WHERE access_key_id = ?1", params![id]).map_err(unavailable)?;
            if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
        })
        .await
    }

    async fn list_users(&self, account_id: &str) -> StoreResult<Vec<UserRecord>> {
        let account_id = account_id.to_owned();
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached("SELECT account_id, user_name, arn, created_ms, role FROM users WHERE account_id = ?1 ORDER BY user_name")
                .map_err(unavailable)?;
            st.query_map(params![account_id], |r| {
                Ok(UserRecord { account_id: r.get(0)?, user_name: r.get(1)?, arn: r.get(2)?, created_ms: r.get(3)?, role: r.get(4)? })
            })
            .and_then(Iterator::collect)
            .map_err(unavailable)
        })
        .await
    }

    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.query_row("SELECT value FROM settings WHERE name = ?1", params![name], |r| r.get(0)).optional().map_err(unavailable)
        })
        .await
    }

    async fn init_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            tx.execute("INSERT OR IGNORE INTO settings (name, value) VALUES (?1, ?2)", params![name, value]).map_err(unavailable)?;
            let stored: String =
                tx.query_row("SELECT value FROM settings WHERE name = ?1", params![name], |r| r.get(0)).map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(stored)
        })
        .await
    }

    async fn create_grant(&self, grant: &GrantRecord) -> StoreResult<()> {
        let g = grant.clone();
        self.write(move |conn| {
            inserted(conn.execute(
                &format!("INSERT INTO grants ({GRANT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    g.grant_id,
                    g.key_id,
                    g.name,
                    g.grantee_principal,
                    g.retiring_principal,
                    g.operations,
                    g.constraints,
                    g.issuing_principal,
                    g.created_ms,
                    g.token
                ],
            ))
        })
        .await
    }

    async fn get_grant(&self, grant_id: &str) -> StoreResult<Option<GrantRecord>> {
        let id = grant_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE grant_id = ?1"))
                .and_then(|mut st| st.query_row(params![id], grant_from_row).optional())
                .map_err(unavailable)
        })
        .await
    }

    async fn list_grants(&self, key_id: &str) -> StoreResult<Vec<GrantRecord>> {
        let id = key_id.to_owned();
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE key_id = ?1 ORDER BY created_ms, grant_id"))
                .map_err(unavailable)?;
            st.query_map(params![id], grant_from_row).and_then(Iterator::collect).map_err(unavailable)
        })
        .await
    }

    async fn grants_for(&self, key_id: &str, grantees: &[&str], operation: &str) -> StoreResult<Vec<GrantRecord>> {
        // A name with a comma (or none) is no single member of any list.
        if operation.is_empty() || operation.contains(',') {
            return Ok(Vec::new());
        }
        let (id, op) = (key_id.to_owned(), operation.to_owned());
        let mut grantees: Vec<String> = grantees.iter().map(|g| (*g).to_owned()).collect();
        grantees.sort();
        grantees.dedup();
        self.read(move |conn| {
            // One grantee at a time keeps the statement cacheable and each lookup on the
            // (key_id, grantee_principal) index; the operation is matched as a whole member of
            // the comma-separated list (instr, not LIKE, so no character acts as a wildcard).
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {GRANT_COLUMNS} FROM grants INDEXED BY grants_grantee WHERE key_id = ?1 AND grantee_principal = ?2 \
                     AND instr(',' || operations || ',', ',' || ?3 || ',') > 0"
                ))
                .map_err(unavailable)?;
            let mut out: Vec<GrantRecord> = Vec::new();
            for g in &grantees {
                let rows: Vec<GrantRecord> =
                    st.query_map(params![id, g, op], grant_from_row).and_then(Iterator::collect).map_err(unavailable)?;
                out.extend(rows);
            }
            out.sort_by(|a, b| (a.created_ms, &a.grant_id).cmp(&(b.created_ms, &b.grant_id)));
            Ok(out)
        })
        .await
    }

    async fn list_retirable_grants(&self, retiring_principal: &str) -> StoreResult<Vec<GrantRecord>> {
        let p = retiring_principal.to_owned();
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE retiring_principal = ?1 ORDER BY created_ms, grant_id"))
                .map_err(unavailable)?;
            st.query_map(params![p], grant_from_row).and_then(Iterator::collect).map_err(unavailable)
        })
        .await
    }

    async fn delete_grant(&self, grant_id: &str) -> StoreResult<()> {
        let id = grant_id.to_owned();
        self.write(move |conn| {
            let n = conn.execute("DELETE FROM grants WHERE grant_id = ?1", params![id]).map_err(unavailable)?;
            if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
        })
        .await
    }

    async fn create_account(&self, account: &AccountRecord, root_key: &AccessKeyRecord) -> StoreResult<()> {
        let (a, k) = (account.clone(), root_key.clone());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            inserted(tx.execute(
                "INSERT INTO accounts (account_id, name, created_ms) VALUES (?1, ?2, ?3)",
                params![a.account_id, a.name, a.created_ms],
            ))?;
            inserted(tx.execute(
                "INSERT INTO access_keys (access_key_id, sealed_secret, account_id, principal_arn, status, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![k.access_key_id, k.sealed_secret, k.account_id, k.principal_arn, k.status, k.created_ms],
            ))?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>> {
        self.read(move |conn| {
            let mut st =
                conn.prepare_cached("SELECT account_id, name, created_ms FROM accounts ORDER BY account_id").map_err(unavailable)?;
            st.query_map([], |r| Ok(AccountRecord { account_id: r.get(0)?, name: r.get(1)?, created_ms: r.get(2)? }))
                .and_then(Iterator::collect)
                .map_err(unavailable)
        })
        .await
    }

    async fn set_setting(&self, name: &str, value: &str) -> StoreResult<()> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |conn| {
            conn.execute("INSERT OR REPLACE INTO settings (name, value) VALUES (?1, ?2)", params![name, value])
                .map(|_| ())
                .map_err(unavailable)
        })
        .await
    }

    async fn list_sealed(&self, table: SealedTable, after: Option<(&str, u32)>, limit: usize) -> StoreResult<Vec<SealedRecord>> {
        let (after_id, after_version) = after.map_or((String::new(), 0), |(i, v)| (i.to_owned(), v));
        let first = after.is_none();
        self.read(move |conn| {
            let sql = match table {
                SealedTable::Material => {
                    "SELECT key_id, version, '', sealed FROM key_material WHERE ?1 OR key_id > ?2 OR (key_id = ?2 AND version > ?3) \
                     ORDER BY key_id, version LIMIT ?4"
                }
                SealedTable::AccessKey => {
                    "SELECT access_key_id, 0, '', sealed_secret FROM access_keys WHERE (?1 OR access_key_id > ?2) AND ?3 >= 0 \
                     ORDER BY access_key_id LIMIT ?4"
                }
                SealedTable::ImportParams => {
                    "SELECT token_id, 0, key_id, sealed_private_key, expires_ms FROM import_params WHERE (?1 OR token_id > ?2) AND ?3 >= 0 \
                     ORDER BY token_id LIMIT ?4"
                }
            };
            let mut st = conn.prepare_cached(sql).map_err(unavailable)?;
            let has_expiry = table == SealedTable::ImportParams;
            st.query_map(params![first, after_id, after_version, limit_i64(limit)], |r| {
                Ok(SealedRecord {
                    table,
                    id: r.get(0)?,
                    version: r.get(1)?,
                    owner: r.get(2)?,
                    expires_ms: if has_expiry { r.get(4)? } else { None },
                    sealed: r.get(3)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(unavailable)
        })
        .await
    }

    async fn replace_sealed(&self, record: &SealedRecord, new_sealed: &[u8]) -> StoreResult<()> {
        let (r, new) = (record.clone(), new_sealed.to_vec());
        self.write(move |conn| {
            let (update, exists) = match r.table {
                SealedTable::Material => (
                    "UPDATE key_material SET sealed = ?4 WHERE key_id = ?1 AND version = ?2 AND sealed = ?3",
                    "SELECT EXISTS (SELECT 1 FROM key_material WHERE key_id = ?1 AND version = ?2)",
                ),
                SealedTable::AccessKey => (
                    "UPDATE access_keys SET sealed_secret = ?4 WHERE access_key_id = ?1 AND ?2 = 0 AND sealed_secret = ?3",
                    "SELECT EXISTS (SELECT 1 FROM access_keys WHERE access_key_id = ?1 AND ?2 = 0)",
                ),
                SealedTable::ImportParams => (
                    "UPDATE import_params SET sealed_private_key = ?4 WHERE token_id = ?1 AND ?2 = 0 AND sealed_private_key = ?3",
                    "SELECT EXISTS (SELECT 1 FROM import_params WHERE token_id = ?1 AND ?2 = 0)",
                ),
            };
            let n = conn.execute(update, params![r.id, r.version, r.sealed, new]).map_err(unavailable)?;
            if n == 1 {
                return Ok(());
            }
            let present: bool = conn.query_row(exists, params![r.id, r.version], |row| row.get(0)).map_err(unavailable)?;
            Err(if present { StoreError::Conflict } else { StoreError::NotFound })
        })
        .await
    }
}
