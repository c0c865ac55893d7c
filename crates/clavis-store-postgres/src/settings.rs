//! [`clavis_store::SettingStore`] for PostgreSQL: deployment-wide settings and the leases that elect the node doing background work.

use super::*;
use clavis_store::SettingStore;

#[async_trait::async_trait]
impl SettingStore for PostgresStore {
    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>> {
        let client = self.client().await?;
        let st = client.prepare_cached("SELECT value FROM settings WHERE name = $1").await.map_err(pg)?;
        Ok(client.query_opt(&st, &[&name]).await.map_err(pg)?.map(|r| r.get(0)))
    }

    async fn init_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        let client = self.client().await?;
        client
            .execute("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", &[&name, &value])
            .await
            .map_err(pg)?;
        Ok(client.query_one("SELECT value FROM settings WHERE name = $1", &[&name]).await.map_err(pg)?.get(0))
    }

    async fn set_setting(&self, name: &str, value: &str) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = $2", &[&name, &value])
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn try_lease(&self, name: &str, holder: &str, now_ms: i64, until_ms: i64) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $4) \
                 ON CONFLICT (name) DO UPDATE SET holder = $2, until_ms = $4 WHERE leases.holder = $2 OR leases.until_ms < $3",
                &[&name, &holder, &now_ms, &until_ms],
            )
            .await
            .map_err(pg)?;
        Ok(n == 1)
    }
}
