//! The failure-injecting wrapper store (`clavis_store::testing::FailingStore`) over SQLite: an
//! injected failure is returned in place of the call, and the calls it spares reach the store.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code.

use clavis_store::testing::FailingStore;
use clavis_store::{SettingStore, StoreError};
use clavis_store_sqlite::SqliteStore;

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("clavis-sqlite-failing-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("clavis.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_fails_the_calls_it_names_and_down_fails_all() {
    let store = FailingStore::with_hook(SqliteStore::open(&temp_db("hook")).unwrap(), |method| match method {
        "set_setting" => Err(StoreError::Unavailable("injected".into())),
        _ => Ok(()),
    });
    assert!(matches!(store.set_setting("x", "1").await, Err(StoreError::Unavailable(_))));
    assert_eq!(store.inner().get_setting("x").await.unwrap(), None, "the refused call never reached the store");
    assert_eq!(store.init_setting("x", "2").await.unwrap(), "2");
    store.set_down(true);
    assert!(matches!(store.get_setting("x").await, Err(StoreError::Unavailable(_))));
    store.set_down(false);
    assert_eq!(store.get_setting("x").await.unwrap().as_deref(), Some("2"));
}
