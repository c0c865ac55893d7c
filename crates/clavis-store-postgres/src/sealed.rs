//! [`clavis_store::SealedStore`] for PostgreSQL: every sealed value, by table, for master-key rotation (reseal).

use super::*;
use clavis_store::SealedStore;

#[async_trait::async_trait]
impl SealedStore for PostgresStore {
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
