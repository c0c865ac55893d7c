//! [`clavis_store::AliasStore`] for PostgreSQL: aliases.

use super::*;
use clavis_store::AliasStore;

#[async_trait::async_trait]
impl AliasStore for PostgresStore {
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
