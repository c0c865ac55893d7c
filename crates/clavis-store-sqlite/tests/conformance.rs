//! Runs the shared storage conformance suite against SQLite, and checks durability across reopen.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code.

use clavis_store::SettingStore;
use clavis_store_sqlite::SqliteStore;

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("clavis-sqlite-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("clavis.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let path = temp_db("conformance");
    let store = SqliteStore::open(&path).unwrap();
    clavis_store::testing::conformance::run(&store).await;
}

/// Each family's checks stand alone: they pass on a store that holds nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_family_on_a_fresh_store() {
    use clavis_store::testing::conformance;
    conformance::key_store(&SqliteStore::open(&temp_db("family-keys")).unwrap()).await;
    conformance::alias_store(&SqliteStore::open(&temp_db("family-aliases")).unwrap()).await;
    conformance::tag_store(&SqliteStore::open(&temp_db("family-tags")).unwrap()).await;
    conformance::identity_store(&SqliteStore::open(&temp_db("family-identity")).unwrap()).await;
    conformance::setting_store(&SqliteStore::open(&temp_db("family-settings")).unwrap()).await;
    conformance::import_store(&SqliteStore::open(&temp_db("family-imports")).unwrap()).await;
    conformance::grant_store(&SqliteStore::open(&temp_db("family-grants")).unwrap()).await;
    conformance::sealed_store(&SqliteStore::open(&temp_db("family-sealed")).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_reopen_and_migrates_once() {
    let path = temp_db("reopen");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.init_setting("account_id", "123456789012").await.unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.get_setting("account_id").await.unwrap().as_deref(), Some("123456789012"));
}
