//! The core through its public operations, on the real SQLite store, plus a fault-injecting
//! store that shows a database outage is reported as unavailable, never as "not found".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failure should stop the test loudly.

use clavis_core::api::*;
use clavis_core::types::{AccountId, Region, Role};
use clavis_core::{Caller, Kms, KmsConfig, KmsError, SystemClock};
use clavis_crypto::SecretBytes;
use clavis_crypto::seal::LocalKeyFile;
use clavis_store::{
    AccessKeyRecord, AccountRecord, AliasRecord, GrantRecord, ImportParamsRecord, KeyMaterialRecord, KeyRecord, SealedRecord, SealedTable,
    Store, StoreError, StoreResult, Tag, UserRecord,
};
use clavis_store_sqlite::SqliteStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// A store that can be switched to failing, to check how outages surface.
struct FlakyStore {
    inner: SqliteStore,
    down: AtomicBool,
}

impl FlakyStore {
    fn check(&self) -> StoreResult<()> {
        if self.down.load(Ordering::SeqCst) { Err(StoreError::Unavailable("injected outage".into())) } else { Ok(()) }
    }
}

#[async_trait::async_trait]
impl Store for FlakyStore {
    async fn create_key(&self, k: &KeyRecord, m: Option<&KeyMaterialRecord>, t: &[Tag]) -> StoreResult<()> {
        self.check()?;
        self.inner.create_key(k, m, t).await
    }
    async fn get_key(&self, id: &str) -> StoreResult<Option<KeyRecord>> {
        self.check()?;
        self.inner.get_key(id).await
    }
    async fn update_key(&self, k: &KeyRecord, rev: u64) -> StoreResult<()> {
        self.check()?;
        self.inner.update_key(k, rev).await
    }
    async fn list_keys(&self, a: &str, r: &str, after: Option<&str>, l: usize) -> StoreResult<Vec<KeyRecord>> {
        self.check()?;
        self.inner.list_keys(a, r, after, l).await
    }
    async fn get_material(&self, id: &str, v: u32) -> StoreResult<Option<KeyMaterialRecord>> {
        self.check()?;
        self.inner.get_material(id, v).await
    }
    async fn add_material(&self, k: &KeyRecord, rev: u64, m: &KeyMaterialRecord) -> StoreResult<()> {
        self.check()?;
        self.inner.add_material(k, rev, m).await
    }
    async fn list_materials(&self, id: &str) -> StoreResult<Vec<KeyMaterialRecord>> {
        self.check()?;
        self.inner.list_materials(id).await
    }
    async fn destroy_key(&self, id: &str, rev: u64) -> StoreResult<()> {
        self.check()?;
        self.inner.destroy_key(id, rev).await
    }
    async fn keys_due(&self, now: i64, l: usize) -> StoreResult<Vec<KeyRecord>> {
        self.check()?;
        self.inner.keys_due(now, l).await
    }
    async fn try_lease(&self, n: &str, h: &str, now: i64, until: i64) -> StoreResult<bool> {
        self.check()?;
        self.inner.try_lease(n, h, now, until).await
    }
    async fn put_import_params(&self, p: &ImportParamsRecord, now: i64, max: usize) -> StoreResult<()> {
        self.check()?;
        self.inner.put_import_params(p, now, max).await
    }
    async fn count_import_params(&self, k: &str, now: i64) -> StoreResult<usize> {
        self.check()?;
        self.inner.count_import_params(k, now).await
    }
    async fn purge_import_params(&self, k: Option<&str>, by: i64) -> StoreResult<u64> {
        self.check()?;
        self.inner.purge_import_params(k, by).await
    }
    async fn get_import_params(&self, t: &str) -> StoreResult<Option<ImportParamsRecord>> {
        self.check()?;
        self.inner.get_import_params(t).await
    }
    async fn import_material(&self, k: &KeyRecord, rev: u64, m: &KeyMaterialRecord, t: &str) -> StoreResult<()> {
        self.check()?;
        self.inner.import_material(k, rev, m, t).await
    }
    async fn stage_material(&self, k: &KeyRecord, rev: u64, m: &KeyMaterialRecord, t: &str) -> StoreResult<()> {
        self.check()?;
        self.inner.stage_material(k, rev, m, t).await
    }
    async fn promote_material(&self, k: &KeyRecord, rev: u64, v: u32, r: &str) -> StoreResult<()> {
        self.check()?;
        self.inner.promote_material(k, rev, v, r).await
    }
    async fn delete_material(&self, k: &KeyRecord, rev: u64) -> StoreResult<()> {
        self.check()?;
        self.inner.delete_material(k, rev).await
    }
    async fn create_alias(&self, a: &AliasRecord) -> StoreResult<()> {
        self.check()?;
        self.inner.create_alias(a).await
    }
    async fn get_alias(&self, a: &str, r: &str, n: &str) -> StoreResult<Option<AliasRecord>> {
        self.check()?;
        self.inner.get_alias(a, r, n).await
    }
    async fn update_alias(&self, a: &str, r: &str, n: &str, t: &str, now: i64) -> StoreResult<()> {
        self.check()?;
        self.inner.update_alias(a, r, n, t, now).await
    }
    async fn delete_alias(&self, a: &str, r: &str, n: &str) -> StoreResult<()> {
        self.check()?;
        self.inner.delete_alias(a, r, n).await
    }
    async fn list_aliases(&self, a: &str, r: &str, k: Option<&str>, after: Option<&str>, l: usize) -> StoreResult<Vec<AliasRecord>> {
        self.check()?;
        self.inner.list_aliases(a, r, k, after, l).await
    }
    async fn put_tags(&self, id: &str, t: &[Tag], max: usize) -> StoreResult<()> {
        self.check()?;
        self.inner.put_tags(id, t, max).await
    }
    async fn delete_tags(&self, id: &str, k: &[String]) -> StoreResult<()> {
        self.check()?;
        self.inner.delete_tags(id, k).await
    }
    async fn list_tags(&self, id: &str, after: Option<&str>, l: usize) -> StoreResult<Vec<Tag>> {
        self.check()?;
        self.inner.list_tags(id, after, l).await
    }
    async fn put_access_key(&self, k: &AccessKeyRecord) -> StoreResult<()> {
        self.check()?;
        self.inner.put_access_key(k).await
    }
    async fn get_access_key(&self, id: &str) -> StoreResult<Option<AccessKeyRecord>> {
        self.check()?;
        self.inner.get_access_key(id).await
    }
    async fn create_user(&self, u: &UserRecord, k: &AccessKeyRecord) -> StoreResult<()> {
        self.check()?;
        self.inner.create_user(u, k).await
    }
    async fn list_access_keys(&self, a: &str) -> StoreResult<Vec<AccessKeyRecord>> {
        self.check()?;
        self.inner.list_access_keys(a).await
    }
    async fn set_access_key_status(&self, id: &str, st: &str) -> StoreResult<()> {
        self.check()?;
        self.inner.set_access_key_status(id, st).await
    }
    async fn delete_access_key(&self, id: &str) -> StoreResult<()> {
        self.check()?;
        self.inner.delete_access_key(id).await
    }
    async fn list_users(&self, a: &str) -> StoreResult<Vec<UserRecord>> {
        self.check()?;
        self.inner.list_users(a).await
    }
    async fn get_setting(&self, n: &str) -> StoreResult<Option<String>> {
        self.check()?;
        self.inner.get_setting(n).await
    }
    async fn init_setting(&self, n: &str, v: &str) -> StoreResult<String> {
        self.check()?;
        self.inner.init_setting(n, v).await
    }
    async fn create_grant(&self, g: &GrantRecord) -> StoreResult<()> {
        self.check()?;
        self.inner.create_grant(g).await
    }
    async fn get_grant(&self, id: &str) -> StoreResult<Option<GrantRecord>> {
        self.check()?;
        self.inner.get_grant(id).await
    }
    async fn list_grants(&self, k: &str) -> StoreResult<Vec<GrantRecord>> {
        self.check()?;
        self.inner.list_grants(k).await
    }
    async fn grants_for(&self, k: &str, grantees: &[&str], op: &str) -> StoreResult<Vec<GrantRecord>> {
        self.check()?;
        self.inner.grants_for(k, grantees, op).await
    }
    async fn list_retirable_grants(&self, p: &str) -> StoreResult<Vec<GrantRecord>> {
        self.check()?;
        self.inner.list_retirable_grants(p).await
    }
    async fn delete_grant(&self, id: &str) -> StoreResult<()> {
        self.check()?;
        self.inner.delete_grant(id).await
    }
    async fn create_account(&self, a: &AccountRecord, k: &AccessKeyRecord) -> StoreResult<()> {
        self.check()?;
        self.inner.create_account(a, k).await
    }
    async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>> {
        self.check()?;
        self.inner.list_accounts().await
    }
    async fn set_setting(&self, n: &str, v: &str) -> StoreResult<()> {
        self.check()?;
        self.inner.set_setting(n, v).await
    }
    async fn list_sealed(&self, t: SealedTable, after: Option<(&str, u32)>, l: usize) -> StoreResult<Vec<SealedRecord>> {
        self.check()?;
        self.inner.list_sealed(t, after, l).await
    }
    async fn replace_sealed(&self, r: &SealedRecord, new: &[u8]) -> StoreResult<()> {
        self.check()?;
        self.inner.replace_sealed(r, new).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_outage_is_unavailable_not_not_found() {
    let dir = temp_dir("flaky");
    let flaky = Arc::new(FlakyStore { inner: SqliteStore::open(&dir.join("clavis.db")).unwrap(), down: AtomicBool::new(false) });
    let writer = kms_on(flaky.clone(), &dir);
    let c = caller("us-east-1");
    let id = new_key(&writer, &c).await;
    // A second service on the same store has nothing cached, so it must read storage.
    let root = LocalKeyFile::open(&dir.join("master.key")).unwrap();
    let kms = Kms::new(flaky.clone(), Arc::new(root), Arc::new(SystemClock), KmsConfig::default());
    flaky.down.store(true, Ordering::SeqCst);
    let r = kms.describe_key(&c, DescribeKeyRequest { key_id: Some(id.clone()), ..Default::default() }).await;
    assert!(matches!(r, Err(KmsError::Unavailable(_))), "{r:?}");
    let r = kms.create_key(&c, CreateKeyRequest::default()).await;
    assert!(matches!(r, Err(KmsError::Unavailable(_))), "{r:?}");
    let r = kms.credential("AKIATEST").await;
    assert!(matches!(r, Err(KmsError::Unavailable(_))), "{r:?}");
    flaky.down.store(false, Ordering::SeqCst);
    assert!(kms.describe_key(&c, DescribeKeyRequest { key_id: Some(id), ..Default::default() }).await.is_ok());
}
