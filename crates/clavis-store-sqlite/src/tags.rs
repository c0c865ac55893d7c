//! [`clavis_store::TagStore`] for SQLite: tags on keys.

use super::*;
use clavis_store::TagStore;

#[async_trait::async_trait]
impl TagStore for SqliteStore {
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
}
