//! The PostgreSQL implementation of [`clavis_store::Store`], for several stateless Clavis nodes
//! sharing one database (`clavis serve --database-url postgres://...`).
//!
//! It owns the schema and its migrations, the SQL, and the mapping between rows and records.
//! Like the SQLite backend it never interprets records and never sees unsealed key material.
//!
//! Concurrency: every multi-statement change runs in one transaction at READ COMMITTED; the
//! compare-and-swap on a key's `revision` is a single `UPDATE ... WHERE revision = $n`, which
//! PostgreSQL re-checks against the newest row version, so two nodes can never both win. Where a
//! check and a change must not interleave (the tag count, destruction), the key's row is locked
//! first (`SELECT ... FOR UPDATE`). Leases are an `INSERT ... ON CONFLICT DO UPDATE ... WHERE`,
//! atomic in one statement.
//!
//! Failure: every database error other than a uniqueness violation is
//! [`StoreError::Unavailable`]; the pool gives up on an unreachable server after a few seconds
//! instead of waiting forever, and replaces broken connections once the server is back.

mod schema;

use clavis_store::{
    AccessKeyRecord, AccountRecord, AliasRecord, DeletionRequest, GrantRecord, ImportParamsRecord, KeyMaterialRecord, KeyRecord,
    SealedRecord, SealedTable, Store, StoreError, StoreResult, Tag, UserRecord,
};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

/// A connection pool to the PostgreSQL database holding all Clavis state.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A database error: a uniqueness violation is [`StoreError::AlreadyExists`]; anything else
/// means the database could not do the work.
fn pg(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::AlreadyExists,
        // A NUL character (or bytes that are not UTF-8) in a text value: the client's input.
        Some(c) if *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE || *c == SqlState::UNTRANSLATABLE_CHARACTER => {
            StoreError::InvalidInput("a string member contains a character that cannot be stored (NUL)".into())
        }
        _ => unavailable(e),
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("stored {what} is out of range"))
}

fn u32_of(v: i64, what: &str) -> StoreResult<u32> {
    u32::try_from(v).map_err(|_| corrupt(what))
}

fn rev_i64(rev: u64) -> StoreResult<i64> {
    i64::try_from(rev).map_err(|_| corrupt("revision"))
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`), builds the pool and
    /// applies migrations. Fails with [`StoreError::Unavailable`] if the server cannot be
    /// reached.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| StoreError::Unavailable(format!("database URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(3));
        }
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let timeouts =
            Timeouts { wait: Some(Duration::from_secs(5)), create: Some(Duration::from_secs(3)), recycle: Some(Duration::from_secs(3)) };
        let pool = Pool::builder(manager).max_size(16).timeouts(timeouts).runtime(Runtime::Tokio1).build().map_err(unavailable)?;
        let mut client = pool.get().await.map_err(unavailable)?;
        schema::migrate(&mut client).await?;
        drop(client);
        Ok(PostgresStore { pool })
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(unavailable)
    }
}

const KEY_COLUMNS: &str = "key_id, account_id, region, description, key_usage, key_spec, origin, key_state, \
     creation_date_ms, deletion_date_ms, policy, current_version, revision, rotation_period_days, next_rotation_ms, \
     dual_auth, deletion_requested_by, deletion_requested_ms, deletion_request_window_days, valid_to_ms, expiration_model, \
     import_fingerprint";

fn key_from_row(r: &Row) -> StoreResult<KeyRecord> {
    let g = |e: tokio_postgres::Error| unavailable(e);
    Ok(KeyRecord {
        key_id: r.try_get(0).map_err(g)?,
        account_id: r.try_get(1).map_err(g)?,
        region: r.try_get(2).map_err(g)?,
        description: r.try_get(3).map_err(g)?,
        key_usage: r.try_get(4).map_err(g)?,
        key_spec: r.try_get(5).map_err(g)?,
        origin: r.try_get(6).map_err(g)?,
        key_state: r.try_get(7).map_err(g)?,
        creation_date_ms: r.try_get(8).map_err(g)?,
        deletion_date_ms: r.try_get(9).map_err(g)?,
        policy: r.try_get(10).map_err(g)?,
        current_version: u32_of(r.try_get(11).map_err(g)?, "version")?,
        revision: u64::try_from(r.try_get::<_, i64>(12).map_err(g)?).map_err(|_| corrupt("revision"))?,
        rotation_period_days: r.try_get::<_, Option<i64>>(13).map_err(g)?.map(|d| u32_of(d, "rotation period")).transpose()?,
        next_rotation_ms: r.try_get(14).map_err(g)?,
        dual_auth: r.try_get(15).map_err(g)?,
        deletion_request: match (
            r.try_get::<_, Option<String>>(16).map_err(g)?,
            r.try_get::<_, Option<i64>>(17).map_err(g)?,
            r.try_get::<_, Option<i64>>(18).map_err(g)?,
        ) {
            (Some(requested_by), Some(requested_ms), Some(window)) => {
                Some(DeletionRequest { requested_by, requested_ms, window_days: u32_of(window, "deletion window")? })
            }
            _ => None,
        },
        valid_to_ms: r.try_get(19).map_err(g)?,
        expiration_model: r.try_get(20).map_err(g)?,
        import_fingerprint: r.try_get(21).map_err(g)?,
    })
}

fn access_key_from_row(r: &Row) -> StoreResult<AccessKeyRecord> {
    Ok(AccessKeyRecord {
        access_key_id: r.try_get(0).map_err(unavailable)?,
        sealed_secret: r.try_get(1).map_err(unavailable)?,
        account_id: r.try_get(2).map_err(unavailable)?,
        principal_arn: r.try_get(3).map_err(unavailable)?,
        status: r.try_get(4).map_err(unavailable)?,
        created_ms: r.try_get(5).map_err(unavailable)?,
    })
}

const ACCESS_KEY_COLUMNS: &str = "access_key_id, sealed_secret, account_id, principal_arn, status, created_ms";

const GRANT_COLUMNS: &str =
    "grant_id, key_id, name, grantee_principal, retiring_principal, operations, constraints, issuing_principal, created_ms, token";

fn grant_from_row(r: &Row) -> StoreResult<GrantRecord> {
    Ok(GrantRecord {
        grant_id: r.try_get(0).map_err(unavailable)?,
        key_id: r.try_get(1).map_err(unavailable)?,
        name: r.try_get(2).map_err(unavailable)?,
        grantee_principal: r.try_get(3).map_err(unavailable)?,
        retiring_principal: r.try_get(4).map_err(unavailable)?,
        operations: r.try_get(5).map_err(unavailable)?,
        constraints: r.try_get(6).map_err(unavailable)?,
        issuing_principal: r.try_get(7).map_err(unavailable)?,
        created_ms: r.try_get(8).map_err(unavailable)?,
        token: r.try_get(9).map_err(unavailable)?,
    })
}

const ALIAS_COLUMNS: &str = "account_id, region, alias_name, target_key_id, creation_date_ms, last_updated_date_ms";

fn alias_from_row(r: &Row) -> StoreResult<AliasRecord> {
    Ok(AliasRecord {
        account_id: r.try_get(0).map_err(unavailable)?,
        region: r.try_get(1).map_err(unavailable)?,
        alias_name: r.try_get(2).map_err(unavailable)?,
        target_key_id: r.try_get(3).map_err(unavailable)?,
        creation_date_ms: r.try_get(4).map_err(unavailable)?,
        last_updated_date_ms: r.try_get(5).map_err(unavailable)?,
    })
}

fn material_from_row(key_id: &str, r: &Row) -> StoreResult<KeyMaterialRecord> {
    Ok(KeyMaterialRecord {
        key_id: key_id.to_owned(),
        version: u32_of(r.try_get(0).map_err(unavailable)?, "version")?,
        sealed: r.try_get(1).map_err(unavailable)?,
        created_ms: r.try_get(2).map_err(unavailable)?,
        rotation_type: r.try_get(3).map_err(unavailable)?,
    })
}

fn rows<T>(rows: Vec<Row>, f: impl Fn(&Row) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(f).collect()
}

async fn insert_material(tx: &impl deadpool_postgres::GenericClient, m: &KeyMaterialRecord) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO key_material (key_id, version, sealed, created_ms, rotation_type) VALUES ($1, $2, $3, $4, $5)",
        &[&m.key_id, &i64::from(m.version), &m.sealed, &m.created_ms, &m.rotation_type],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Compare-and-swap of a key row on its revision.
async fn update_key_row(tx: &impl deadpool_postgres::GenericClient, key: &KeyRecord, expected_revision: u64) -> StoreResult<()> {
    let n = tx
        .execute(
            "UPDATE keys SET description = $2, key_usage = $3, key_spec = $4, origin = $5, key_state = $6, \
             deletion_date_ms = $7, policy = $8, current_version = $9, revision = $10, rotation_period_days = $12, \
             next_rotation_ms = $13, dual_auth = $14, deletion_requested_by = $15, deletion_requested_ms = $16, \
             deletion_request_window_days = $17, valid_to_ms = $18, expiration_model = $19, import_fingerprint = $20 \
             WHERE key_id = $1 AND revision = $11",
            &[
                &key.key_id,
                &key.description,
                &key.key_usage,
                &key.key_spec,
                &key.origin,
                &key.key_state,
                &key.deletion_date_ms,
                &key.policy,
                &i64::from(key.current_version),
                &rev_i64(key.revision)?,
                &rev_i64(expected_revision)?,
                &key.rotation_period_days.map(i64::from),
                &key.next_rotation_ms,
                &key.dual_auth,
                &key.deletion_request.as_ref().map(|d| d.requested_by.clone()),
                &key.deletion_request.as_ref().map(|d| d.requested_ms),
                &key.deletion_request.as_ref().map(|d| i64::from(d.window_days)),
                &key.valid_to_ms,
                &key.expiration_model,
                &key.import_fingerprint,
            ],
        )
        .await
        .map_err(pg)?;
    if n == 1 {
        return Ok(());
    }
    let exists = tx.query_opt("SELECT 1 FROM keys WHERE key_id = $1", &[&key.key_id]).await.map_err(pg)?.is_some();
    Err(if exists { StoreError::Conflict } else { StoreError::NotFound })
}

/// Locks a key's row for the rest of the transaction and returns its revision.
async fn lock_key(tx: &impl deadpool_postgres::GenericClient, key_id: &str) -> StoreResult<Option<i64>> {
    Ok(tx.query_opt("SELECT revision FROM keys WHERE key_id = $1 FOR UPDATE", &[&key_id]).await.map_err(pg)?.map(|r| r.get(0)))
}

/// Consumes an import token: its parameters are deleted (a used token has no further use, and
/// its sealed wrapping key should not wait for a purge); [`StoreError::Conflict`] if it was
/// already consumed (or is unknown).
async fn use_token(tx: &impl deadpool_postgres::GenericClient, token_id: &str) -> StoreResult<()> {
    let n = tx.execute("DELETE FROM import_params WHERE token_id = $1 AND NOT used", &[&token_id]).await.map_err(pg)?;
    if n == 1 { Ok(()) } else { Err(StoreError::Conflict) }
}

/// The import parameters of a key that are unused and still valid at `now_ms`.
async fn count_outstanding(client: &impl deadpool_postgres::GenericClient, key_id: &str, now_ms: i64) -> StoreResult<i64> {
    let row = client
        .query_one("SELECT COUNT(*) FROM import_params WHERE key_id = $1 AND expires_ms > $2 AND NOT used", &[&key_id, &now_ms])
        .await
        .map_err(pg)?;
    row.try_get(0).map_err(unavailable)
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn create_key(&self, key: &KeyRecord, material: Option<&KeyMaterialRecord>, tags: &[Tag]) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute(
            &format!(
                "INSERT INTO keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"
            ),
            &[
                &key.key_id,
                &key.account_id,
                &key.region,
                &key.description,
                &key.key_usage,
                &key.key_spec,
                &key.origin,
                &key.key_state,
                &key.creation_date_ms,
                &key.deletion_date_ms,
                &key.policy,
                &i64::from(key.current_version),
                &rev_i64(key.revision)?,
                &key.rotation_period_days.map(i64::from),
                &key.next_rotation_ms,
                &key.dual_auth,
                &key.deletion_request.as_ref().map(|d| d.requested_by.clone()),
                &key.deletion_request.as_ref().map(|d| d.requested_ms),
                &key.deletion_request.as_ref().map(|d| i64::from(d.window_days)),
                &key.valid_to_ms,
                &key.expiration_model,
                &key.import_fingerprint,
            ],
        )
        .await
        .map_err(pg)?;
        if let Some(m) = material {
            insert_material(&tx, m).await?;
        }
        for t in tags {
            tx.execute(
                "INSERT INTO tags (key_id, tag_key, tag_value) VALUES ($1, $2, $3) ON CONFLICT (key_id, tag_key) DO UPDATE SET tag_value = $3",
                &[&key.key_id, &t.key, &t.value],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)
    }

    async fn get_key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>> {
        let client = self.client().await?;
        let st = client.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE key_id = $1")).await.map_err(pg)?;
        client.query_opt(&st, &[&key_id]).await.map_err(pg)?.as_ref().map(key_from_row).transpose()
    }

    async fn update_key(&self, key: &KeyRecord, expected_revision: u64) -> StoreResult<()> {
        let client = self.client().await?;
        update_key_row(&client, key, expected_revision).await
    }

    async fn list_keys(&self, account_id: &str, region: &str, after: Option<&str>, limit: usize) -> StoreResult<Vec<KeyRecord>> {
        let client = self.client().await?;
        let r = client
            .query(
                &format!("SELECT {KEY_COLUMNS} FROM keys WHERE account_id = $1 AND region = $2 AND key_id > $3 ORDER BY key_id LIMIT $4"),
                &[&account_id, &region, &after.unwrap_or(""), &limit_i64(limit)],
            )
            .await
            .map_err(pg)?;
        rows(r, key_from_row)
    }

    async fn get_material(&self, key_id: &str, version: u32) -> StoreResult<Option<KeyMaterialRecord>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached("SELECT version, sealed, created_ms, rotation_type FROM key_material WHERE key_id = $1 AND version = $2")
            .await
            .map_err(pg)?;
        client.query_opt(&st, &[&key_id, &i64::from(version)]).await.map_err(pg)?.map(|r| material_from_row(key_id, &r)).transpose()
    }

    async fn add_material(&self, key: &KeyRecord, expected_revision: u64, material: &KeyMaterialRecord) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        update_key_row(&tx, key, expected_revision).await?;
        insert_material(&tx, material).await?;
        tx.commit().await.map_err(pg)
    }

    async fn list_materials(&self, key_id: &str) -> StoreResult<Vec<KeyMaterialRecord>> {
        let client = self.client().await?;
        let r = client
            .query("SELECT version, sealed, created_ms, rotation_type FROM key_material WHERE key_id = $1 ORDER BY version", &[&key_id])
            .await
            .map_err(pg)?;
        rows(r, |row| material_from_row(key_id, row))
    }

    async fn destroy_key(&self, key_id: &str, expected_revision: u64) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        match lock_key(&tx, key_id).await? {
            None => return Err(StoreError::NotFound),
            Some(r) if r != rev_i64(expected_revision)? => return Err(StoreError::Conflict),
            Some(_) => {}
        }
        for sql in [
            "DELETE FROM key_material WHERE key_id = $1",
            "DELETE FROM tags WHERE key_id = $1",
            "DELETE FROM aliases WHERE target_key_id = $1",
            "DELETE FROM grants WHERE key_id = $1",
            "DELETE FROM import_params WHERE key_id = $1",
            "DELETE FROM keys WHERE key_id = $1",
        ] {
            tx.execute(sql, &[&key_id]).await.map_err(pg)?;
        }
        tx.commit().await.map_err(pg)
    }

    async fn put_import_params(&self, p: &ImportParamsRecord, now_ms: i64, max_outstanding: usize) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // Serialises token issue for one key, so two nodes cannot each stay under the cap.
        lock_key(&tx, &p.key_id).await?;
        if count_outstanding(&tx, &p.key_id, now_ms).await? >= limit_i64(max_outstanding) {
            return Err(StoreError::LimitExceeded);
        }
        tx.execute(
            "INSERT INTO import_params (token_id, key_id, wrapping_algorithm, wrapping_key_spec, sealed_private_key, nonce, expires_ms, used) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[&p.token_id, &p.key_id, &p.wrapping_algorithm, &p.wrapping_key_spec, &p.sealed_private_key, &p.nonce, &p.expires_ms, &p.used],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn count_import_params(&self, key_id: &str, now_ms: i64) -> StoreResult<usize> {
        let client = self.client().await?;
        Ok(usize::try_from(count_outstanding(&client, key_id, now_ms).await?).unwrap_or(usize::MAX))
    }

    async fn purge_import_params(&self, key_id: Option<&str>, expired_by_ms: i64) -> StoreResult<u64> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM import_params WHERE ($1::TEXT IS NULL OR key_id = $1) AND (used OR expires_ms <= $2)",
                &[&key_id, &expired_by_ms],
            )
            .await
            .map_err(pg)
    }

    async fn get_import_params(&self, token_id: &str) -> StoreResult<Option<ImportParamsRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT token_id, key_id, wrapping_algorithm, wrapping_key_spec, sealed_private_key, nonce, expires_ms, used \
                 FROM import_params WHERE token_id = $1",
                &[&token_id],
            )
            .await
            .map_err(pg)?;
        row.map(|r| {
            Ok(ImportParamsRecord {
                token_id: r.try_get(0).map_err(unavailable)?,
                key_id: r.try_get(1).map_err(unavailable)?,
                wrapping_algorithm: r.try_get(2).map_err(unavailable)?,
                wrapping_key_spec: r.try_get(3).map_err(unavailable)?,
                sealed_private_key: r.try_get(4).map_err(unavailable)?,
                nonce: r.try_get(5).map_err(unavailable)?,
                expires_ms: r.try_get(6).map_err(unavailable)?,
                used: r.try_get(7).map_err(unavailable)?,
            })
        })
        .transpose()
    }

    async fn import_material(
        &self,
        key: &KeyRecord,
        expected_revision: u64,
        material: &KeyMaterialRecord,
        token_id: &str,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        update_key_row(&tx, key, expected_revision).await?;
        use_token(&tx, token_id).await?;
        tx.execute("DELETE FROM key_material WHERE key_id = $1", &[&key.key_id]).await.map_err(pg)?;
        insert_material(&tx, material).await?;
        tx.commit().await.map_err(pg)
    }

    async fn stage_material(
        &self,
        key: &KeyRecord,
        expected_revision: u64,
        material: &KeyMaterialRecord,
        token_id: &str,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        update_key_row(&tx, key, expected_revision).await?;
        use_token(&tx, token_id).await?;
        insert_material(&tx, material).await?;
        tx.commit().await.map_err(pg)
    }

    async fn promote_material(&self, key: &KeyRecord, expected_revision: u64, version: u32, rotation_type: &str) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        update_key_row(&tx, key, expected_revision).await?;
        let n = tx
            .execute(
                "UPDATE key_material SET rotation_type = $3 WHERE key_id = $1 AND version = $2",
                &[&key.key_id, &i64::from(version), &rotation_type],
            )
            .await
            .map_err(pg)?;
        if n != 1 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await.map_err(pg)
    }

    async fn delete_material(&self, key: &KeyRecord, expected_revision: u64) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        update_key_row(&tx, key, expected_revision).await?;
        tx.execute("DELETE FROM key_material WHERE key_id = $1", &[&key.key_id]).await.map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn keys_due(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<KeyRecord>> {
        let client = self.client().await?;
        let r = client
            .query(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM keys WHERE (next_rotation_ms IS NOT NULL AND next_rotation_ms <= $1) \
                     OR (deletion_date_ms IS NOT NULL AND deletion_date_ms <= $1) \
                     OR (valid_to_ms IS NOT NULL AND valid_to_ms <= $1) ORDER BY key_id LIMIT $2"
                ),
                &[&now_ms, &limit_i64(limit)],
            )
            .await
            .map_err(pg)?;
        rows(r, key_from_row)
    }

    async fn try_lease(&self, name: &str, holder: &str, now_ms: i64, until_ms: i64) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $4) \
                 ON CONFLICT (name) DO UPDATE SET holder = $2, until_ms = $4 WHERE leases.holder = $2 OR leases.until_ms < $3",
                &[&name, &holder, &now_ms, &until_ms],
            )
            .await
            .map_err(pg)?;
        Ok(n == 1)
    }

    async fn create_alias(&self, a: &AliasRecord) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                &format!("INSERT INTO aliases ({ALIAS_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
                &[&a.account_id, &a.region, &a.alias_name, &a.target_key_id, &a.creation_date_ms, &a.last_updated_date_ms],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn get_alias(&self, account_id: &str, region: &str, alias_name: &str) -> StoreResult<Option<AliasRecord>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(&format!("SELECT {ALIAS_COLUMNS} FROM aliases WHERE account_id = $1 AND region = $2 AND alias_name = $3"))
            .await
            .map_err(pg)?;
        client.query_opt(&st, &[&account_id, &region, &alias_name]).await.map_err(pg)?.as_ref().map(alias_from_row).transpose()
    }

    async fn update_alias(&self, account_id: &str, region: &str, alias_name: &str, target_key_id: &str, now_ms: i64) -> StoreResult<()> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE aliases SET target_key_id = $4, last_updated_date_ms = $5 WHERE account_id = $1 AND region = $2 AND alias_name = $3",
                &[&account_id, &region, &alias_name, &target_key_id, &now_ms],
            )
            .await
            .map_err(pg)?;
        if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
    }

    async fn delete_alias(&self, account_id: &str, region: &str, alias_name: &str) -> StoreResult<()> {
        let client = self.client().await?;
        let n = client
            .execute("DELETE FROM aliases WHERE account_id = $1 AND region = $2 AND alias_name = $3", &[&account_id, &region, &alias_name])
            .await
            .map_err(pg)?;
        if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
    }

    async fn list_aliases(
        &self,
        account_id: &str,
        region: &str,
        key_id: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<AliasRecord>> {
        let client = self.client().await?;
        let r = client
            .query(
                &format!(
                    "SELECT {ALIAS_COLUMNS} FROM aliases WHERE account_id = $1 AND region = $2 \
                     AND ($3::TEXT IS NULL OR target_key_id = $3) AND alias_name > $4 ORDER BY alias_name LIMIT $5"
                ),
                &[&account_id, &region, &key_id, &after.unwrap_or(""), &limit_i64(limit)],
            )
            .await
            .map_err(pg)?;
        rows(r, alias_from_row)
    }

    async fn put_tags(&self, key_id: &str, tags: &[Tag], max_tags: usize) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // Serialises tag changes of one key, so two nodes cannot each stay under the limit.
        lock_key(&tx, key_id).await?;
        for t in tags {
            tx.execute(
                "INSERT INTO tags (key_id, tag_key, tag_value) VALUES ($1, $2, $3) ON CONFLICT (key_id, tag_key) DO UPDATE SET tag_value = $3",
                &[&key_id, &t.key, &t.value],
            )
            .await
            .map_err(pg)?;
        }
        let count: i64 = tx.query_one("SELECT COUNT(*) FROM tags WHERE key_id = $1", &[&key_id]).await.map_err(pg)?.get(0);
        if count > limit_i64(max_tags) {
            // Dropping the transaction rolls it back.
            return Err(StoreError::LimitExceeded);
        }
        tx.commit().await.map_err(pg)
    }

    async fn delete_tags(&self, key_id: &str, tag_keys: &[String]) -> StoreResult<()> {
        let client = self.client().await?;
        client.execute("DELETE FROM tags WHERE key_id = $1 AND tag_key = ANY($2)", &[&key_id, &tag_keys]).await.map_err(pg)?;
        Ok(())
    }

    async fn list_tags(&self, key_id: &str, after: Option<&str>, limit: usize) -> StoreResult<Vec<Tag>> {
        let client = self.client().await?;
        let r = client
            .query(
                "SELECT tag_key, tag_value FROM tags WHERE key_id = $1 AND tag_key > $2 ORDER BY tag_key LIMIT $3",
                &[&key_id, &after.unwrap_or(""), &limit_i64(limit)],
            )
            .await
            .map_err(pg)?;
        rows(r, |row| Ok(Tag { key: row.try_get(0).map_err(unavailable)?, value: row.try_get(1).map_err(unavailable)? }))
    }

    async fn put_access_key(&self, k: &AccessKeyRecord) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                &format!("INSERT INTO access_keys ({ACCESS_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
                &[&k.access_key_id, &k.sealed_secret, &k.account_id, &k.principal_arn, &k.status, &k.created_ms],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn get_access_key(&self, access_key_id: &str) -> StoreResult<Option<AccessKeyRecord>> {
        let client = self.client().await?;
        let st =
            client.prepare_cached(&format!("SELECT {ACCESS_KEY_COLUMNS} FROM access_keys WHERE access_key_id = $1")).await.map_err(pg)?;
        client.query_opt(&st, &[&access_key_id]).await.map_err(pg)?.as_ref().map(access_key_from_row).transpose()
    }

    async fn create_user(&self, u: &UserRecord, k: &AccessKeyRecord) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute(
            "INSERT INTO users (account_id, user_name, arn, created_ms, role) VALUES ($1, $2, $3, $4, $5)",
            &[&u.account_id, &u.user_name, &u.arn, &u.created_ms, &u.role],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            &format!("INSERT INTO access_keys ({ACCESS_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
            &[&k.access_key_id, &k.sealed_secret, &k.account_id, &k.principal_arn, &k.status, &k.created_ms],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn list_access_keys(&self, principal_arn: &str) -> StoreResult<Vec<AccessKeyRecord>> {
        let client = self.client().await?;
        let r = client
            .query(
                &format!("SELECT {ACCESS_KEY_COLUMNS} FROM access_keys WHERE principal_arn = $1 ORDER BY access_key_id"),
                &[&principal_arn],
            )
            .await
            .map_err(pg)?;
        rows(r, access_key_from_row)
    }

    async fn set_access_key_status(&self, access_key_id: &str, status: &str) -> StoreResult<()> {
        let client = self.client().await?;
        let n =
            client.execute("UPDATE access_keys SET status = $2 WHERE access_key_id = $1", &[&access_key_id, &status]).await.map_err(pg)?;
        if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
    }

    async fn delete_access_key(&self, access_key_id: &str) -> StoreResult<()> {
        let client = self.client().await?;
        let n = client.execute("DELETE FROM access_keys WHERE access_key_id = $1", &[&access_key_id]).await.map_err(pg)?;
        if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
    }

    async fn list_users(&self, account_id: &str) -> StoreResult<Vec<UserRecord>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached("SELECT account_id, user_name, arn, created_ms, role FROM users WHERE account_id = $1 ORDER BY user_name")
            .await
            .map_err(pg)?;
        let r = client.query(&st, &[&account_id]).await.map_err(pg)?;
        rows(r, |row| {
            Ok(UserRecord {
                account_id: row.try_get(0).map_err(unavailable)?,
                user_name: row.try_get(1).map_err(unavailable)?,
                arn: row.try_get(2).map_err(unavailable)?,
                created_ms: row.try_get(3).map_err(unavailable)?,
                role: row.try_get(4).map_err(unavailable)?,
            })
        })
    }

    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>> {
        let client = self.client().await?;
        let st = client.prepare_cached("SELECT value FROM settings WHERE name = $1").await.map_err(pg)?;
        Ok(client.query_opt(&st, &[&name]).await.map_err(pg)?.map(|r| r.get(0)))
    }

    async fn init_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        let client = self.client().await?;
        client
            .execute("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", &[&name, &value])
            .await
            .map_err(pg)?;
        Ok(client.query_one("SELECT value FROM settings WHERE name = $1", &[&name]).await.map_err(pg)?.get(0))
    }

    async fn create_grant(&self, g: &GrantRecord) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                &format!("INSERT INTO grants ({GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
                &[
                    &g.grant_id,
                    &g.key_id,
                    &g.name,
                    &g.grantee_principal,
                    &g.retiring_principal,
                    &g.operations,
                    &g.constraints,
                    &g.issuing_principal,
                    &g.created_ms,
                    &g.token,
                ],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn get_grant(&self, grant_id: &str) -> StoreResult<Option<GrantRecord>> {
        let client = self.client().await?;
        let row = client.query_opt(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE grant_id = $1"), &[&grant_id]).await.map_err(pg)?;
        row.as_ref().map(grant_from_row).transpose()
    }

    async fn list_grants(&self, key_id: &str) -> StoreResult<Vec<GrantRecord>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE key_id = $1 ORDER BY created_ms, grant_id"))
            .await
            .map_err(pg)?;
        rows(client.query(&st, &[&key_id]).await.map_err(pg)?, grant_from_row)
    }

    async fn grants_for(&self, key_id: &str, grantees: &[&str], operation: &str) -> StoreResult<Vec<GrantRecord>> {
        // A name with a comma (or none) is no single member of any list.
        if operation.is_empty() || operation.contains(',') {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        // `= ANY` is answered from the (key_id, grantee_principal) index; the operation is matched
        // as a whole member of the comma-separated list (position, not LIKE, so no character acts
        // as a wildcard).
        let st = client
            .prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS} FROM grants WHERE key_id = $1 AND grantee_principal = ANY($2) \
                 AND position(',' || $3 || ',' in ',' || operations || ',') > 0 ORDER BY created_ms, grant_id"
            ))
            .await
            .map_err(pg)?;
        rows(client.query(&st, &[&key_id, &grantees, &operation]).await.map_err(pg)?, grant_from_row)
    }

    async fn list_retirable_grants(&self, retiring_principal: &str) -> StoreResult<Vec<GrantRecord>> {
        let client = self.client().await?;
        let r = client
            .query(
                &format!("SELECT {GRANT_COLUMNS} FROM grants WHERE retiring_principal = $1 ORDER BY created_ms, grant_id"),
                &[&retiring_principal],
            )
            .await
            .map_err(pg)?;
        rows(r, grant_from_row)
    }

    async fn delete_grant(&self, grant_id: &str) -> StoreResult<()> {
        let client = self.client().await?;
        let n = client.execute("DELETE FROM grants WHERE grant_id = $1", &[&grant_id]).await.map_err(pg)?;
        if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
    }

    async fn create_account(&self, a: &AccountRecord, k: &AccessKeyRecord) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute("INSERT INTO accounts (account_id, name, created_ms) VALUES ($1, $2, $3)", &[&a.account_id, &a.name, &a.created_ms])
            .await
            .map_err(pg)?;
        tx.execute(
            &format!("INSERT INTO access_keys ({ACCESS_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
            &[&k.access_key_id, &k.sealed_secret, &k.account_id, &k.principal_arn, &k.status, &k.created_ms],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>> {
        let client = self.client().await?;
        let r = client.query("SELECT account_id, name, created_ms FROM accounts ORDER BY account_id", &[]).await.map_err(pg)?;
        rows(r, |row| {
            Ok(AccountRecord {
                account_id: row.try_get(0).map_err(unavailable)?,
                name: row.try_get(1).map_err(unavailable)?,
                created_ms: row.try_get(2).map_err(unavailable)?,
            })
        })
    }

    async fn set_setting(&self, name: &str, value: &str) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = $2", &[&name, &value])
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn list_sealed(&self, table: SealedTable, after: Option<(&str, u32)>, limit: usize) -> StoreResult<Vec<SealedRecord>> {
        let client = self.client().await?;
        let first = after.is_none();
        let (after_id, after_version) = after.map_or(("", 0i64), |(i, v)| (i, i64::from(v)));
        let sql = match table {
            SealedTable::Material => {
                "SELECT key_id, version, '', sealed FROM key_material WHERE $1 OR key_id > $2 OR (key_id = $2 AND version > $3) \
                 ORDER BY key_id, version LIMIT $4"
            }
            SealedTable::AccessKey => {
                "SELECT access_key_id, 0::BIGINT, '', sealed_secret FROM access_keys WHERE ($1 OR access_key_id > $2) AND $3::BIGINT >= 0 \
                 ORDER BY access_key_id LIMIT $4"
            }
            SealedTable::ImportParams => {
                "SELECT token_id, 0::BIGINT, key_id, sealed_private_key, expires_ms FROM import_params WHERE ($1 OR token_id > $2) AND $3::BIGINT >= 0 \
                 ORDER BY token_id LIMIT $4"
            }
        };
        let has_expiry = table == SealedTable::ImportParams;
        let r = client.query(sql, &[&first, &after_id, &after_version, &limit_i64(limit)]).await.map_err(pg)?;
        rows(r, |row| {
            Ok(SealedRecord {
                table,
                id: row.try_get(0).map_err(unavailable)?,
                version: u32_of(row.try_get(1).map_err(unavailable)?, "version")?,
                owner: row.try_get(2).map_err(unavailable)?,
                expires_ms: if has_expiry { Some(row.try_get(4).map_err(unavailable)?) } else { None },
                sealed: row.try_get(3).map_err(unavailable)?,
            })
        })
    }

    async fn replace_sealed(&self, record: &SealedRecord, new_sealed: &[u8]) -> StoreResult<()> {
        let client = self.client().await?;
        let (update, exists) = match record.table {
            SealedTable::Material => (
                "UPDATE key_material SET sealed = $4 WHERE key_id = $1 AND version = $2 AND sealed = $3",
                "SELECT 1 FROM key_material WHERE key_id = $1 AND version = $2",
            ),
            SealedTable::AccessKey => (
                "UPDATE access_keys SET sealed_secret = $4 WHERE access_key_id = $1 AND $2::BIGINT = 0 AND sealed_secret = $3",
                "SELECT 1 FROM access_keys WHERE access_key_id = $1 AND $2::BIGINT = 0",
            ),
            SealedTable::ImportParams => (
                "UPDATE import_params SET sealed_private_key = $4 WHERE token_id = $1 AND $2::BIGINT = 0 AND sealed_private_key = $3",
                "SELECT 1 FROM import_params WHERE token_id = $1 AND $2::BIGINT = 0",
            ),
        };
        let version = i64::from(record.version);
        let n = client.execute(update, &[&record.id, &version, &record.sealed, &new_sealed]).await.map_err(pg)?;
        if n == 1 {
            return Ok(());
        }
        let present = client.query_opt(exists, &[&record.id, &version]).await.map_err(pg)?.is_some();
        Err(if present { StoreError::Conflict } else { StoreError::NotFound })
    }
}
