//! What the per-family operation tests share: a `Kms` on a real SQLite store in its own
//! temporary directory, with a `LocalKeyFile` root of trust and the movable `TestClock`;
//! callers of the built-in roles; and small request helpers. Each test file compiles this
//! module on its own, so a helper one file does not use is not dead code.
#![allow(dead_code)] // Each test crate uses a different subset of these helpers.

use clavis_core::api::*;
use clavis_core::audit::AuditSink;
use clavis_core::types::{AccountId, Region, Role};
use clavis_core::{Caller, Kms, KmsConfig, KmsError, TestClock};
use clavis_crypto::SecretBytes;
use clavis_crypto::seal::LocalKeyFile;
use clavis_store_sqlite::SqliteStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The operator's account: the one `Kms::initialize` records.
pub const OPERATOR: &str = "111122223333";
/// Another tenant.
pub const TENANT: &str = "444455556666";
pub const REGION: &str = "us-east-1";
/// The operator root's access key id.
pub const OPERATOR_AKID: &str = "AKIAOPERATORTEST0001";
pub const DAY_S: i64 = 86_400;

/// A directory of the test's own, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let d = std::env::temp_dir().join(format!("clavis-core-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A service under test and what a test needs to reach around it.
pub struct Env {
    pub kms: Kms,
    pub clock: Arc<TestClock>,
    pub dir: TempDir,
}

impl Env {
    /// A fresh service on an empty SQLite database, without auditing.
    pub fn new(name: &str) -> Env {
        Env::with_audit(name, None)
    }

    /// A fresh service whose records go to `audit`.
    pub fn with_audit(name: &str, audit: Option<Arc<dyn AuditSink>>) -> Env {
        let dir = TempDir::new(name);
        let store = SqliteStore::open(&dir.path().join("clavis.db")).unwrap();
        let root = LocalKeyFile::create(&dir.path().join("master.key")).unwrap();
        let clock = Arc::new(TestClock::default());
        let config = KmsConfig { audit, test_clock: Some(clock.clone()), ..KmsConfig::default() };
        let kms = Kms::new(Arc::new(store), Arc::new(root), clock.clone(), config);
        Env { kms, clock, dir }
    }

    /// As the server does at first start: records the operator's account and root access key.
    pub async fn initialized(name: &str) -> Env {
        let env = Env::new(name);
        env.initialize().await;
        env
    }

    pub async fn initialize(&self) {
        let secret = SecretBytes::from_slice(b"operator-secret-0123456789abcdefghijklmn");
        let account = self.kms.initialize(&account(OPERATOR), OPERATOR_AKID, &secret).await.unwrap();
        assert_eq!(account.as_str(), OPERATOR);
    }

    /// Moves the test clock forward by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.clock.advance(seconds * 1000);
    }

    /// The service's current time, in the epoch seconds the API uses.
    pub fn now_s(&self) -> f64 {
        self.kms.now_ms() as f64 / 1000.0
    }
}

pub fn account(id: &str) -> AccountId {
    AccountId::parse(id).unwrap()
}

/// A caller as the HTTP layer builds one after authentication.
pub fn caller(account_id: &str, principal_arn: &str, role: Role) -> Caller {
    Caller {
        account: account(account_id),
        region: Region::parse(REGION).unwrap(),
        principal_arn: principal_arn.to_owned(),
        access_key_id: format!("AKIA{:0>16}", principal_arn.len()),
        role,
        source_ip: None,
        secure_transport: true,
        resources: Default::default(),
    }
}

/// The root of an account (an administrator).
pub fn root(account_id: &str) -> Caller {
    Caller {
        access_key_id: if account_id == OPERATOR { OPERATOR_AKID.to_owned() } else { "AKIATENANTROOT000001".to_owned() },
        ..caller(account_id, &format!("arn:aws:iam::{account_id}:root"), Role::Admin)
    }
}

/// The operator account's root.
pub fn admin() -> Caller {
    root(OPERATOR)
}

/// The ARN of a user of an account.
pub fn user_arn(account_id: &str, name: &str) -> String {
    format!("arn:aws:iam::{account_id}:user/{name}")
}

/// A user of the operator's account with a role.
pub fn user(name: &str, role: Role) -> Caller {
    caller(OPERATOR, &user_arn(OPERATOR, name), role)
}

/// The same caller with a fresh set of resolved resources (a new request).
pub fn fresh(c: &Caller) -> Caller {
    Caller { resources: Default::default(), ..c.clone() }
}

pub fn blob(b: &[u8]) -> Option<SecretBlob> {
    Some(SecretBlob(SecretBytes::from_slice(b)))
}

pub fn ctx(pairs: &[(&str, &str)]) -> ContextMap {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

pub async fn new_key(kms: &Kms, c: &Caller) -> String {
    kms.create_key(c, CreateKeyRequest::default()).await.unwrap().key_metadata.key_id
}

pub async fn new_key_with_policy(kms: &Kms, c: &Caller, policy: serde_json::Value) -> String {
    let req = CreateKeyRequest { policy: Some(policy.to_string()), ..Default::default() };
    kms.create_key(c, req).await.unwrap().key_metadata.key_id
}

pub async fn describe(kms: &Kms, c: &Caller, key_id: &str) -> Result<KeyMetadata, KmsError> {
    kms.describe_key(c, DescribeKeyRequest { key_id: Some(key_id.to_owned()), ..Default::default() }).await.map(|r| r.key_metadata)
}

pub async fn encrypt(kms: &Kms, c: &Caller, key_id: &str, plaintext: &[u8], context: Option<ContextMap>) -> Result<Blob, KmsError> {
    let req =
        EncryptRequest { key_id: Some(key_id.to_owned()), plaintext: blob(plaintext), encryption_context: context, ..Default::default() };
    kms.encrypt(c, req).await.map(|r| r.ciphertext_blob)
}

pub async fn decrypt(kms: &Kms, c: &Caller, ciphertext: &Blob, context: Option<ContextMap>) -> Result<Vec<u8>, KmsError> {
    let req = DecryptRequest { ciphertext_blob: Some(ciphertext.clone()), encryption_context: context, ..Default::default() };
    kms.decrypt(c, req).await.map(|r| r.plaintext.0.expose_secret().to_vec())
}

pub fn key_req(key_id: &str) -> KeyIdRequest {
    KeyIdRequest { key_id: Some(key_id.to_owned()) }
}

/// The error's AWS code and message, for assertions on both.
#[track_caller]
pub fn error<T: std::fmt::Debug>(r: Result<T, KmsError>) -> (&'static str, String) {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => (e.code(), e.to_string()),
    }
}

/// Asserts the AWS error code and that the message contains `fragment`.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(r: Result<T, KmsError>, code: &str, fragment: &str) {
    let (c, m) = error(r);
    assert_eq!(c, code, "message: {m}");
    assert!(m.contains(fragment), "{code} message {m:?} does not contain {fragment:?}");
}
