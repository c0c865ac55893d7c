//! [`clavis_store::IdentityStore`] for SQLite: accounts, users and their access keys (secrets sealed).

use super::*;
use clavis_store::IdentityStore;

#[async_trait::async_trait]
impl IdentityStore for SqliteStore {
    async fn create_account(&self, account: &AccountRecord, root_key: &AccessKeyRecord) -> StoreResult<()> {
        let (a, k) = (account.clone(), root_key.clone());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            inserted(tx.execute(
                "INSERT INTO accounts (account_id, name, created_ms) VALUES (?1, ?2, ?3)",
                params![a.account_id, a.name, a.created_ms],
            ))?;
            inserted(tx.execute(
                "INSERT INTO access_keys (access_key_id, sealed_secret, account_id, principal_arn, status, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![k.access_key_id, k.sealed_secret, k.account_id, k.principal_arn, k.status, k.created_ms],
            ))?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>> {
        self.read(move |conn| {
            let mut st =
                conn.prepare_cached("SELECT account_id, name, created_ms FROM accounts ORDER BY account_id").map_err(unavailable)?;
            st.query_map([], |r| Ok(AccountRecord { account_id: r.get(0)?, name: r.get(1)?, created_ms: r.get(2)? }))
                .and_then(Iterator::collect)
                .map_err(unavailable)
        })
        .await
    }

    async fn create_user(&self, user: &UserRecord, key: &AccessKeyRecord) -> StoreResult<()> {
        let (u, k) = (user.clone(), key.clone());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            inserted(tx.execute(
                "INSERT INTO users (account_id, user_name, arn, created_ms, role) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![u.account_id, u.user_name, u.arn, u.created_ms, u.role],
            ))?;
            inserted(tx.execute(
                "INSERT INTO access_keys (access_key_id, sealed_secret, account_id, principal_arn, status, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![k.access_key_id, k.sealed_secret, k.account_id, k.principal_arn, k.status, k.created_ms],
            ))?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn list_users(&self, account_id: &str) -> StoreResult<Vec<UserRecord>> {
        let account_id = account_id.to_owned();
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached("SELECT account_id, user_name, arn, created_ms, role FROM users WHERE account_id = ?1 ORDER BY user_name")
                .map_err(unavailable)?;
            st.query_map(params![account_id], |r| {
                Ok(UserRecord { account_id: r.get(0)?, user_name: r.get(1)?, arn: r.get(2)?, created_ms: r.get(3)?, role: r.get(4)? })
            })
            .and_then(Iterator::collect)
            .map_err(unavailable)
        })
        .await
    }

    async fn put_access_key(&self, key: &AccessKeyRecord) -> StoreResult<()> {
        let k = key.clone();
        self.write(move |conn| {
            inserted(conn.execute(
                "INSERT INTO access_keys (access_key_id, sealed_secret, account_id, principal_arn, status, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![k.access_key_id, k.sealed_secret, k.account_id, k.principal_arn, k.status, k.created_ms],
            ))
        })
        .await
    }

    async fn get_access_key(&self, access_key_id: &str) -> StoreResult<Option<AccessKeyRecord>> {
        let id = access_key_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT access_key_id, sealed_secret, account_id, principal_arn, status, created_ms FROM access_keys WHERE access_key_id = ?1",
            )
            .and_then(|mut st| {
                st.query_row(params![id], access_key_from_row)
                .optional()
            })
            .map_err(unavailable)
        })
        .await
    }

    async fn list_access_keys(&self, principal_arn: &str) -> StoreResult<Vec<AccessKeyRecord>> {
        let arn = principal_arn.to_owned();
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT access_key_id, sealed_secret, account_id, principal_arn, status, created_ms FROM access_keys \
                     WHERE principal_arn = ?1 ORDER BY access_key_id",
                )
                .map_err(unavailable)?;
            st.query_map(params![arn], access_key_from_row).and_then(Iterator::collect).map_err(unavailable)
        })
        .await
    }

    async fn set_access_key_status(&self, access_key_id: &str, status: &str) -> StoreResult<()> {
        let (id, status) = (access_key_id.to_owned(), status.to_owned());
        self.write(move |conn| {
            let n =
                conn.execute("UPDATE access_keys SET status = ?2 WHERE access_key_id = ?1", params![id, status]).map_err(unavailable)?;
            if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
        })
        .await
    }

    async fn delete_access_key(&self, access_key_id: &str) -> StoreResult<()> {
        let id = access_key_id.to_owned();
        self.write(move |conn| {
            let n = conn.execute("DELETE FROM access_keys WHERE access_key_id = ?1", params![id]).map_err(unavailable)?;
            if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
        })
        .await
    }
}

fn access_key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccessKeyRecord> {
    Ok(AccessKeyRecord {
        access_key_id: r.get(0)?,
        sealed_secret: r.get(1)?,
        account_id: r.get(2)?,
        principal_arn: r.get(3)?,
        status: r.get(4)?,
        created_ms: r.get(5)?,
    })
}
