//! [`clavis_store::TagStore`] for PostgreSQL: tags on keys.

use super::*;
use clavis_store::TagStore;

#[async_trait::async_trait]
impl TagStore for PostgresStore {
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
}
