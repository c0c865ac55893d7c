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

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn rev_i64(rev: u64) -> StoreResult<i64> {
    i64::try_from(rev).map_err(|_| corrupt("revision"))
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

fn rows<T>(rows: Vec<Row>, f: impl Fn(&Row) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(f).collect()
}

/// Locks a key's row for the rest of the transaction and returns its revision.
async fn lock_key(tx: &impl deadpool_postgres::GenericClient, key_id: &str) -> StoreResult<Option<i64>> {
    Ok(tx.query_opt("SELECT revision FROM keys WHERE key_id = $1 FOR UPDATE", &[&key_id]).await.map_err(pg)?.map(|r| r.get(0)))
}
