//! Runs the shared storage conformance suite against a real PostgreSQL server, and checks that
//! migrations are applied once when several nodes start at the same time.
//!
//! The server: `CLAVIS_TEST_DATABASE_URL` if set (scripts/test.sh starts one), otherwise a
//! throwaway cluster started here with scripts/pg-cluster.sh (which installs PostgreSQL from
//! Debian's packages if it is missing). Each test works in a database of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code.

use clavis_store::SettingStore;
use clavis_store_postgres::PostgresStore;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The server's base URL (database `postgres`), started once per test binary if needed.
fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("CLAVIS_TEST_DATABASE_URL") {
            return url;
        }
        let dir = std::env::temp_dir().join(format!("clavis-pg-conformance-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let out = Command::new(repo_root().join("scripts/pg-cluster.sh"))
            .args(["start", dir.join("data").to_str().unwrap(), &port.to_string()])
            .output()
            .expect("running scripts/pg-cluster.sh");
        assert!(out.status.success(), "could not start PostgreSQL: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}

/// A fresh, empty database on the server; returns its URL.
async fn fresh_database(name: &str) -> String {
    let base = server_url();
    let (client, conn) = tokio_postgres::connect(base, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let db = format!("clavis_test_{}_{name}", std::process::id());
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {db}")).await.unwrap();
    client.batch_execute(&format!("CREATE DATABASE {db}")).await.unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{db}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let url = fresh_database("conformance").await;
    let store = PostgresStore::connect(&url).await.unwrap();
    clavis_store::testing::conformance::run(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_migrate_once_and_share_state() {
    let url = fresh_database("nodes").await;
    let (a, b, c) = tokio::join!(PostgresStore::connect(&url), PostgresStore::connect(&url), PostgresStore::connect(&url));
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    // One node's write is the others' read; the first initialiser wins everywhere.
    assert_eq!(a.init_setting("account_id", "111111111111").await.unwrap(), "111111111111");
    assert_eq!(b.init_setting("account_id", "222222222222").await.unwrap(), "111111111111");
    assert_eq!(c.get_setting("account_id").await.unwrap().as_deref(), Some("111111111111"));
    // A lease has one holder at a time across nodes.
    let (la, lb) = tokio::join!(a.try_lease("scheduler", "node-a", 1000, 2000), b.try_lease("scheduler", "node-b", 1000, 2000));
    assert!(la.unwrap() ^ lb.unwrap(), "exactly one node holds the lease");
    // Reconnecting finds the schema in place (no second migration, no error).
    drop((a, b, c));
    let again = PostgresStore::connect(&url).await.unwrap();
    assert_eq!(again.get_setting("account_id").await.unwrap().as_deref(), Some("111111111111"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_unavailable_not_a_hang() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = PostgresStore::connect(&format!("postgres://clavis@127.0.0.1:{port}/postgres")).await.err().unwrap();
    assert!(matches!(err, clavis_store::StoreError::Unavailable(_)), "{err:?}");
}
