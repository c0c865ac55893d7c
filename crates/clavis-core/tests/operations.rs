//! The core through its public operations, on the real SQLite store, plus a fault-injecting
//! store that shows a database outage is reported as unavailable, never as "not found".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failure should stop the test loudly.

use clavis_core::api::*;
use clavis_core::types::{AccountId, Region, Role};
use clavis_core::{Caller, Kms, KmsConfig, KmsError, SystemClock};
use clavis_crypto::SecretBytes;
use clavis_crypto::seal::LocalKeyFile;
use clavis_store::Store;
use clavis_store::testing::FailingStore;
use clavis_store_sqlite::SqliteStore;
use std::sync::Arc;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("clavis-core-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn caller(region: &str) -> Caller {
    Caller {
        account: AccountId::parse("111122223333").unwrap(),
        region: Region::parse(region).unwrap(),
        principal_arn: "arn:aws:iam::111122223333:root".into(),
        access_key_id: "AKIATEST".into(),
        role: Role::Admin,
        source_ip: None,
        secure_transport: false,
        resources: Default::default(),
    }
}

fn kms_on(store: Arc<dyn Store>, dir: &std::path::Path) -> Kms {
    let root = LocalKeyFile::create(&dir.join("master.key")).unwrap();
    Kms::new(store, Arc::new(root), Arc::new(SystemClock), KmsConfig::default())
}

fn sqlite_kms(name: &str) -> Kms {
    let dir = temp_dir(name);
    kms_on(Arc::new(SqliteStore::open(&dir.join("clavis.db")).unwrap()), &dir)
}

fn blob(b: &[u8]) -> Option<SecretBlob> {
    Some(SecretBlob(SecretBytes::from_slice(b)))
}

async fn new_key(kms: &Kms, c: &Caller) -> String {
    kms.create_key(c, CreateKeyRequest::default()).await.unwrap().key_metadata.key_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypt_decrypt_and_state_rules() {
    let kms = sqlite_kms("ops");
    let c = caller("us-east-1");
    let id = new_key(&kms, &c).await;
    let ctx: ContextMap = [("k".to_string(), "v".to_string())].into();
    let enc = kms
        .encrypt(
            &c,
            EncryptRequest {
                key_id: Some(id.clone()),
                plaintext: blob(b"hello"),
                encryption_context: Some(ctx.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let dec = kms
        .decrypt(
            &c,
            DecryptRequest {
                ciphertext_blob: Some(enc.ciphertext_blob.clone()),
                encryption_context: Some(ctx.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(dec.plaintext.0.expose_secret(), b"hello");

    let wrong_ctx = kms.decrypt(&c, DecryptRequest { ciphertext_blob: Some(enc.ciphertext_blob.clone()), ..Default::default() }).await;
    assert!(matches!(wrong_ctx, Err(KmsError::InvalidCiphertext(_))));

    kms.disable_key(&c, KeyIdRequest { key_id: Some(id.clone()) }).await.unwrap();
    let disabled = kms
        .decrypt(
            &c,
            DecryptRequest {
                ciphertext_blob: Some(enc.ciphertext_blob.clone()),
                encryption_context: Some(ctx.clone()),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(disabled, Err(KmsError::Disabled(_))));
    kms.enable_key(&c, KeyIdRequest { key_id: Some(id.clone()) }).await.unwrap();

    // Another region does not see the key.
    let west = caller("eu-west-1");
    let other_region = kms.describe_key(&west, DescribeKeyRequest { key_id: Some(id.clone()), ..Default::default() }).await;
    assert!(matches!(other_region, Err(KmsError::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn material_survives_a_cold_cache() {
    // A second service instance on the same database and key file must unseal from storage.
    let dir = temp_dir("cold");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("clavis.db")).unwrap());
    let first = kms_on(store.clone(), &dir);
    let c = caller("us-east-1");
    let id = new_key(&first, &c).await;
    let enc = first.encrypt(&c, EncryptRequest { key_id: Some(id), plaintext: blob(b"cold"), ..Default::default() }).await.unwrap();
    let root = LocalKeyFile::open(&dir.join("master.key")).unwrap();
    let second = Kms::new(store, Arc::new(root), Arc::new(SystemClock), KmsConfig::default());
    let dec = second.decrypt(&c, DecryptRequest { ciphertext_blob: Some(enc.ciphertext_blob), ..Default::default() }).await.unwrap();
    assert_eq!(dec.plaintext.0.expose_secret(), b"cold");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_messages_match_aws() {
    let kms = sqlite_kms("validation");
    let c = caller("us-east-1");
    let id = new_key(&kms, &c).await;
    let big = kms.encrypt(&c, EncryptRequest { key_id: Some(id), plaintext: blob(&[0u8; 4097]), ..Default::default() }).await;
    match big {
        Err(KmsError::Validation(m)) => assert_eq!(
            m,
            "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096"
        ),
        other => panic!("expected ValidationException, got {other:?}"),
    }
    let missing = kms.encrypt(&c, EncryptRequest { plaintext: blob(b"x"), ..Default::default() }).await;
    assert!(matches!(missing, Err(KmsError::Validation(m)) if m.contains("Value null at 'keyId'")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_outage_is_unavailable_not_not_found() {
    let dir = temp_dir("flaky");
    let flaky = Arc::new(FailingStore::new(SqliteStore::open(&dir.join("clavis.db")).unwrap()));
    let writer = kms_on(flaky.clone(), &dir);
    let c = caller("us-east-1");
    let id = new_key(&writer, &c).await;
    // A second service on the same store has nothing cached, so it must read storage.
    let root = LocalKeyFile::open(&dir.join("master.key")).unwrap();
    let kms = Kms::new(flaky.clone(), Arc::new(root), Arc::new(SystemClock), KmsConfig::default());
    flaky.set_down(true);
    let r = kms.describe_key(&c, DescribeKeyRequest { key_id: Some(id.clone()), ..Default::default() }).await;
    assert!(matches!(r, Err(KmsError::Unavailable(_))), "{r:?}");
    let r = kms.create_key(&c, CreateKeyRequest::default()).await;
    assert!(matches!(r, Err(KmsError::Unavailable(_))), "{r:?}");
    let r = kms.credential("AKIATEST").await;
    assert!(matches!(r, Err(KmsError::Unavailable(_))), "{r:?}");
    flaky.set_down(false);
    assert!(kms.describe_key(&c, DescribeKeyRequest { key_id: Some(id), ..Default::default() }).await.is_ok());
}
