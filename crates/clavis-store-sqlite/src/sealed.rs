//! [`clavis_store::SealedStore`] for SQLite: every sealed value, by table, for master-key rotation (reseal).

use super::*;
use clavis_store::SealedStore;

#[async_trait::async_trait]
impl SealedStore for SqliteStore {
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
