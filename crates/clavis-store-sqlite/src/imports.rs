//! [`clavis_store::ImportStore`] for SQLite: import parameters (bring your own key).

use super::*;
use clavis_store::ImportStore;

#[async_trait::async_trait]
impl ImportStore for SqliteStore {
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
}

/// The import parameters of a key that are unused and still valid at `now_ms`.
fn count_outstanding(conn: &Connection, key_id: &str, now_ms: i64) -> StoreResult<i64> {
    conn.prepare_cached("SELECT COUNT(*) FROM import_params WHERE key_id = ?1 AND expires_ms > ?2 AND used = 0")
        .and_then(|mut st| st.query_row(params![key_id, now_ms], |r| r.get(0)))
        .map_err(unavailable)
}
