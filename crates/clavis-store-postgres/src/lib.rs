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
