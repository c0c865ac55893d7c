//! [`clavis_store::GrantStore`] for PostgreSQL: grants on keys, and the grant check's query.

use super::*;
use clavis_store::GrantStore;

#[async_trait::async_trait]
impl GrantStore for PostgresStore {
    async fn create_grant(&self, g: &GrantRecord) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                &format!("INSERT INTO grants ({GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
                &[
                    &g.grant_id,
                    &g.key_id,
                    &g.name,
                    &g.grantee_principal,
                    &g.retiring_principal,
                    &g.operations,
                    &g.constraints,
                    &g.issuing_principal,
                    &g.created_ms,
                    &g.token,
                ],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn get_grant(&self, grant_id: &str) -> StoreResult<Option<GrantRecord>> {
        let client = self.client().await?;
        let row = client.query_opt(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE grant_id = $1"), &[&grant_id]).await.map_err(pg)?;
        row.as_ref().map(grant_from_row).transpose()
    }

    async fn list_grants(&self, key_id: &str) -> StoreResult<Vec<GrantRecord>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE key_id = $1 ORDER BY created_ms, grant_id"))
            .await
            .map_err(pg)?;
        rows(client.query(&st, &[&key_id]).await.map_err(pg)?, grant_from_row)
    }

    async fn grants_for(&self, key_id: &str, grantees: &[&str], operation: &str) -> StoreResult<Vec<GrantRecord>> {
        // A name with a comma (or none) is no single member of any list.
        if operation.is_empty() || operation.contains(',') {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        // `= ANY` is answered from the (key_id, grantee_principal) index; the operation is matched
        // as a whole member of the comma-separated list (position, not LIKE, so no character acts
        // as a wildcard).
        let st = client
            .prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS} FROM grants WHERE key_id = $1 AND grantee_principal = ANY($2) \
                 AND position(',' || $3 || ',' in ',' || operations || ',') > 0 ORDER BY created_ms, grant_id"
            ))
            .await
            .map_err(pg)?;
        rows(client.query(&st, &[&key_id, &grantees, &operation]).await.map_err(pg)?, grant_from_row)
    }

    async fn list_retirable_grants(&self, retiring_principal: &str) -> StoreResult<Vec<GrantRecord>> {
        let client = self.client().await?;
        let r = client
            .query(
                &format!("SELECT {GRANT_COLUMNS} FROM grants WHERE retiring_principal = $1 ORDER BY created_ms, grant_id"),
                &[&retiring_principal],
            )
            .await
            .map_err(pg)?;
        rows(r, grant_from_row)
    }

    async fn delete_grant(&self, grant_id: &str) -> StoreResult<()> {
        let client = self.client().await?;
        let n = client.execute("DELETE FROM grants WHERE grant_id = $1", &[&grant_id]).await.map_err(pg)?;
        if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
    }
}

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
