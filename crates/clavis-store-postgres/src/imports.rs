//! [`clavis_store::ImportStore`] for PostgreSQL: import parameters (bring your own key).

use super::*;
use clavis_store::ImportStore;

#[async_trait::async_trait]
impl ImportStore for PostgresStore {
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
}

/// The import parameters of a key that are unused and still valid at `now_ms`.
async fn count_outstanding(client: &impl deadpool_postgres::GenericClient, key_id: &str, now_ms: i64) -> StoreResult<i64> {
    let row = client
        .query_one("SELECT COUNT(*) FROM import_params WHERE key_id = $1 AND expires_ms > $2 AND NOT used", &[&key_id, &now_ms])
        .await
        .map_err(pg)?;
    row.try_get(0).map_err(unavailable)
}
