//! [`clavis_store::SettingStore`] for SQLite: deployment-wide settings and the leases that elect the node doing background work.

use super::*;
use clavis_store::SettingStore;

#[async_trait::async_trait]
impl SettingStore for SqliteStore {
    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.query_row("SELECT value FROM settings WHERE name = ?1", params![name], |r| r.get(0)).optional().map_err(unavailable)
        })
        .await
    }

    async fn init_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            tx.execute("INSERT OR IGNORE INTO settings (name, value) VALUES (?1, ?2)", params![name, value]).map_err(unavailable)?;
            let stored: String =
                tx.query_row("SELECT value FROM settings WHERE name = ?1", params![name], |r| r.get(0)).map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(stored)
        })
        .await
    }

    async fn set_setting(&self, name: &str, value: &str) -> StoreResult<()> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |conn| {
            conn.execute("INSERT OR REPLACE INTO settings (name, value) VALUES (?1, ?2)", params![name, value])
                .map(|_| ())
                .map_err(unavailable)
        })
        .await
    }

    async fn try_lease(&self, name: &str, holder: &str, now_ms: i64, until_ms: i64) -> StoreResult<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "INSERT INTO leases (name, holder, until_ms) VALUES (?1, ?2, ?4) \
                     ON CONFLICT (name) DO UPDATE SET holder = ?2, until_ms = ?4 WHERE leases.holder = ?2 OR leases.until_ms < ?3",
                    params![name, holder, now_ms, until_ms],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
        .await
    }
}
