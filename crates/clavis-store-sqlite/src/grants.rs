//! [`clavis_store::GrantStore`] for SQLite: grants on keys, and the grant check's query.

use super::*;
use clavis_store::GrantStore;

#[async_trait::async_trait]
impl GrantStore for SqliteStore {
    async fn create_grant(&self, grant: &GrantRecord) -> StoreResult<()> {
        let g = grant.clone();
        self.write(move |conn| {
            inserted(conn.execute(
                &format!("INSERT INTO grants ({GRANT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    g.grant_id,
                    g.key_id,
                    g.name,
                    g.grantee_principal,
                    g.retiring_principal,
                    g.operations,
                    g.constraints,
                    g.issuing_principal,
                    g.created_ms,
                    g.token
                ],
            ))
        })
        .await
    }

    async fn get_grant(&self, grant_id: &str) -> StoreResult<Option<GrantRecord>> {
        let id = grant_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE grant_id = ?1"))
                .and_then(|mut st| st.query_row(params![id], grant_from_row).optional())
                .map_err(unavailable)
        })
        .await
    }

    async fn list_grants(&self, key_id: &str) -> StoreResult<Vec<GrantRecord>> {
        let id = key_id.to_owned();
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE key_id = ?1 ORDER BY created_ms, grant_id"))
                .map_err(unavailable)?;
            st.query_map(params![id], grant_from_row).and_then(Iterator::collect).map_err(unavailable)
        })
        .await
    }

    async fn grants_for(&self, key_id: &str, grantees: &[&str], operation: &str) -> StoreResult<Vec<GrantRecord>> {
        // A name with a comma (or none) is no single member of any list.
        if operation.is_empty() || operation.contains(',') {
            return Ok(Vec::new());
        }
        let (id, op) = (key_id.to_owned(), operation.to_owned());
        let mut grantees: Vec<String> = grantees.iter().map(|g| (*g).to_owned()).collect();
        grantees.sort();
        grantees.dedup();
        self.read(move |conn| {
            // One grantee at a time keeps the statement cacheable and each lookup on the
            // (key_id, grantee_principal) index; the operation is matched as a whole member of
            // the comma-separated list (instr, not LIKE, so no character acts as a wildcard).
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {GRANT_COLUMNS} FROM grants INDEXED BY grants_grantee WHERE key_id = ?1 AND grantee_principal = ?2 \
                     AND instr(',' || operations || ',', ',' || ?3 || ',') > 0"
                ))
                .map_err(unavailable)?;
            let mut out: Vec<GrantRecord> = Vec::new();
            for g in &grantees {
                let rows: Vec<GrantRecord> =
                    st.query_map(params![id, g, op], grant_from_row).and_then(Iterator::collect).map_err(unavailable)?;
                out.extend(rows);
            }
            out.sort_by(|a, b| (a.created_ms, &a.grant_id).cmp(&(b.created_ms, &b.grant_id)));
            Ok(out)
        })
        .await
    }

    async fn list_retirable_grants(&self, retiring_principal: &str) -> StoreResult<Vec<GrantRecord>> {
        let p = retiring_principal.to_owned();
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE retiring_principal = ?1 ORDER BY created_ms, grant_id"))
                .map_err(unavailable)?;
            st.query_map(params![p], grant_from_row).and_then(Iterator::collect).map_err(unavailable)
        })
        .await
    }

    async fn delete_grant(&self, grant_id: &str) -> StoreResult<()> {
        let id = grant_id.to_owned();
        self.write(move |conn| {
            let n = conn.execute("DELETE FROM grants WHERE grant_id = ?1", params![id]).map_err(unavailable)?;
            if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
        })
        .await
    }
}

const GRANT_COLUMNS: &str =
    "grant_id, key_id, name, grantee_principal, retiring_principal, operations, constraints, issuing_principal, created_ms, token";

fn grant_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<GrantRecord> {
    Ok(GrantRecord {
        grant_id: r.get(0)?,
        key_id: r.get(1)?,
        name: r.get(2)?,
        grantee_principal: r.get(3)?,
        retiring_principal: r.get(4)?,
        operations: r.get(5)?,
        constraints: r.get(6)?,
        issuing_principal: r.get(7)?,
        created_ms: r.get(8)?,
        token: r.get(9)?,
    })
}
