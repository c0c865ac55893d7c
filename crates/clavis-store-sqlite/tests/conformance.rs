//! Runs the shared storage conformance suite against SQLite, and checks durability across reopen.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code.

use clavis_store::Store;
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
    clavis_store::conformance::run(&store).await;
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
