//! [`clavis_store::IdentityStore`] for PostgreSQL: accounts, users and their access keys (secrets sealed).

use super::*;
use clavis_store::IdentityStore;

#[async_trait::async_trait]
impl IdentityStore for PostgresStore {
    async fn create_account(&self, a: &AccountRecord, k: &AccessKeyRecord) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute("INSERT INTO accounts (account_id, name, created_ms) VALUES ($1, $2, $3)", &[&a.account_id, &a.name, &a.created_ms])
            .await
            .map_err(pg)?;
        tx.execute(
            &format!("INSERT INTO access_keys ({ACCESS_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
            &[&k.access_key_id, &k.sealed_secret, &k.account_id, &k.principal_arn, &k.status, &k.created_ms],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>> {
        let client = self.client().await?;
        let r = client.query("SELECT account_id, name, created_ms FROM accounts ORDER BY account_id", &[]).await.map_err(pg)?;
        rows(r, |row| {
            Ok(AccountRecord {
                account_id: row.try_get(0).map_err(unavailable)?,
                name: row.try_get(1).map_err(unavailable)?,
                created_ms: row.try_get(2).map_err(unavailable)?,
            })
        })
    }

    async fn create_user(&self, u: &UserRecord, k: &AccessKeyRecord) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute(
            "INSERT INTO users (account_id, user_name, arn, created_ms, role) VALUES ($1, $2, $3, $4, $5)",
            &[&u.account_id, &u.user_name, &u.arn, &u.created_ms, &u.role],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            &format!("INSERT INTO access_keys ({ACCESS_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
            &[&k.access_key_id, &k.sealed_secret, &k.account_id, &k.principal_arn, &k.status, &k.created_ms],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn list_users(&self, account_id: &str) -> StoreResult<Vec<UserRecord>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached("SELECT account_id, user_name, arn, created_ms, role FROM users WHERE account_id = $1 ORDER BY user_name")
            .await
            .map_err(pg)?;
        let r = client.query(&st, &[&account_id]).await.map_err(pg)?;
        rows(r, |row| {
            Ok(UserRecord {
                account_id: row.try_get(0).map_err(unavailable)?,
                user_name: row.try_get(1).map_err(unavailable)?,
                arn: row.try_get(2).map_err(unavailable)?,
                created_ms: row.try_get(3).map_err(unavailable)?,
                role: row.try_get(4).map_err(unavailable)?,
            })
        })
    }

    async fn put_access_key(&self, k: &AccessKeyRecord) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                &format!("INSERT INTO access_keys ({ACCESS_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
                &[&k.access_key_id, &k.sealed_secret, &k.account_id, &k.principal_arn, &k.status, &k.created_ms],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn get_access_key(&self, access_key_id: &str) -> StoreResult<Option<AccessKeyRecord>> {
        let client = self.client().await?;
        let st =
            client.prepare_cached(&format!("SELECT {ACCESS_KEY_COLUMNS} FROM access_keys WHERE access_key_id = $1")).await.map_err(pg)?;
        client.query_opt(&st, &[&access_key_id]).await.map_err(pg)?.as_ref().map(access_key_from_row).transpose()
    }

    async fn list_access_keys(&self, principal_arn: &str) -> StoreResult<Vec<AccessKeyRecord>> {
        let client = self.client().await?;
        let r = client
            .query(
                &format!("SELECT {ACCESS_KEY_COLUMNS} FROM access_keys WHERE principal_arn = $1 ORDER BY access_key_id"),
                &[&principal_arn],
            )
            .await
            .map_err(pg)?;
        rows(r, access_key_from_row)
    }

    async fn set_access_key_status(&self, access_key_id: &str, status: &str) -> StoreResult<()> {
        let client = self.client().await?;
        let n =
            client.execute("UPDATE access_keys SET status = $2 WHERE access_key_id = $1", &[&access_key_id, &status]).await.map_err(pg)?;
        if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
    }

    async fn delete_access_key(&self, access_key_id: &str) -> StoreResult<()> {
        let client = self.client().await?;
        let n = client.execute("DELETE FROM access_keys WHERE access_key_id = $1", &[&access_key_id]).await.map_err(pg)?;
        if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
    }
}

fn access_key_from_row(r: &Row) -> StoreResult<AccessKeyRecord> {
    Ok(AccessKeyRecord {
        access_key_id: r.try_get(0).map_err(unavailable)?,
        sealed_secret: r.try_get(1).map_err(unavailable)?,
        account_id: r.try_get(2).map_err(unavailable)?,
        principal_arn: r.try_get(3).map_err(unavailable)?,
        status: r.try_get(4).map_err(unavailable)?,
        created_ms: r.try_get(5).map_err(unavailable)?,
    })
}

const ACCESS_KEY_COLUMNS: &str = "access_key_id, sealed_secret, account_id, principal_arn, status, created_ms";
