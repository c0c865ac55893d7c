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
    conformance::secret_store(&SqliteStore::open(&temp_db("family-secrets")).unwrap()).await;
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

/// A destroyed secret's encrypted values and data keys leave the database files (main file and
/// WAL), not only the tables, as destroyed key material does; the store stays open meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroyed_secret_bytes_leave_the_files() {
    use clavis_store::{SecretRecord, SecretStore, SecretVersionRecord};
    let path = temp_db("secret-erase");
    let store = SqliteStore::open(&path).unwrap();
    let marker = |tag: u8| -> Vec<u8> { (0..64u8).map(|i| i ^ tag).chain(*b"CLAVIS-SECRET-MARKER").collect() };
    let (ciphertext, data_key, kept) = (marker(0x11), marker(0x22), marker(0x33));
    let secret = |name: &str| SecretRecord {
        arn: format!("arn:aws:secretsmanager:us-east-1:111111111111:secret:{name}-AbCdEf"),
        account_id: "111111111111".into(),
        region: "us-east-1".into(),
        name: name.into(),
        description: None,
        kms_key_id: None,
        created_ms: 1,
        last_changed_ms: 1,
        last_accessed_ms: None,
        deletion_date_ms: Some(2),
        tags_json: "[]".into(),
        policy: None,
        rotation_json: None,
        next_rotation_ms: None,
        revision: 1,
    };
    let version = |s: &SecretRecord, ciphertext: &[u8], data_key: &[u8]| SecretVersionRecord {
        secret_arn: s.arn.clone(),
        version_id: "v1".into(),
        stages: vec!["AWSCURRENT".into()],
        created_ms: 1,
        last_accessed_ms: None,
        kms_key_arn: "arn:aws:kms:us-east-1:111111111111:key/00000000-0000-4000-8000-000000000001".into(),
        encrypted_data_key: data_key.to_vec(),
        ciphertext: ciphertext.to_vec(),
        binary: true,
    };
    let (doomed, keep) = (secret("doomed"), secret("keep"));
    store.create_secret(&doomed, Some(&version(&doomed, &ciphertext, &data_key))).await.unwrap();
    store.create_secret(&keep, Some(&version(&keep, &kept, &kept))).await.unwrap();
    // A reader connection in the pool, as on a serving node.
    assert!(store.get_secret_version(&doomed.arn, "v1").await.unwrap().is_some());

    let files = || -> Vec<u8> {
        let dir = path.parent().unwrap();
        let mut all = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.file_name().unwrap().to_string_lossy().starts_with("clavis.db") {
                all.extend(std::fs::read(p).unwrap());
            }
        }
        all
    };
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let before = files();
    assert!(contains(&before, &ciphertext) && contains(&before, &data_key), "the scan must see the stored bytes");

    store.destroy_secret(&doomed.arn, 1).await.unwrap();
    let after = files();
    assert!(contains(&after, &kept), "the scan must see the database's contents");
    assert!(!contains(&after, &ciphertext), "a destroyed secret's ciphertext is still in the database files");
    assert!(!contains(&after, &data_key), "a destroyed secret's data key is still in the database files");
}
