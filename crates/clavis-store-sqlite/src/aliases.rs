//! [`clavis_store::AliasStore`] for SQLite: aliases.

use super::*;
use clavis_store::AliasStore;

#[async_trait::async_trait]
impl AliasStore for SqliteStore {
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
