//! [`FailingStore`]: a store that forwards every call to the store it wraps, unless a failure is
//! injected. The forwarding is written once, by the `forward!` macro, one line per method: a
//! method added to a family trait must be added there too, or this crate does not compile.

use crate::{
    AccessKeyRecord, AccountRecord, AliasRecord, AliasStore, GrantRecord, GrantStore, IdentityStore, ImportParamsRecord, ImportStore,
    KeyMaterialRecord, KeyRecord, KeyStore, SealedRecord, SealedStore, SealedTable, SecretRecord, SecretStore, SecretVersionRecord,
    SettingStore, StoreError, StoreResult, Tag, TagStore, UserRecord,
};
use std::sync::atomic::{AtomicBool, Ordering};

/// Decides, from a method's name, whether a call fails (`Err`) or goes through (`Ok`).
type Hook = Box<dyn Fn(&'static str) -> StoreResult<()> + Send + Sync>;

/// Wraps a store and fails calls on demand: every call while it is [down](Self::set_down), and
/// whichever calls its hook refuses.
pub struct FailingStore<S> {
    inner: S,
    down: AtomicBool,
    hook: Option<Hook>,
}

impl<S> FailingStore<S> {
    /// Wraps `inner`; no call fails until told to.
    pub fn new(inner: S) -> Self {
        Self { inner, down: AtomicBool::new(false), hook: None }
    }

    /// Wraps `inner`, asking `hook` before each call (with the method's name, e.g.
    /// `"destroy_key"`) whether it fails; an `Err` is returned in place of the call.
    pub fn with_hook(inner: S, hook: impl Fn(&'static str) -> StoreResult<()> + Send + Sync + 'static) -> Self {
        Self { inner, down: AtomicBool::new(false), hook: Some(Box::new(hook)) }
    }

    /// While `down`, every call fails with [`StoreError::Unavailable`], as when the database
    /// cannot be reached.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn check(&self, method: &'static str) -> StoreResult<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected outage".into()));
        }
        self.hook.as_ref().map_or(Ok(()), |hook| hook(method))
    }
}

/// Implements one family trait for [`FailingStore`]: each method checks for an injected failure,
/// then calls the same method of the wrapped store with the same arguments.
macro_rules! forward {
    ($family:ident { $(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)* }) => {
        #[async_trait::async_trait]
        impl<S: $family> $family for FailingStore<S> {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.check(stringify!($name))?;
                    self.inner.$name($($arg),*).await
                }
            )*
        }
    };
}

forward!(KeyStore {
    fn create_key(&self, key: &KeyRecord, material: Option<&KeyMaterialRecord>, tags: &[Tag]) -> StoreResult<()>;
    fn get_key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>>;
    fn update_key(&self, key: &KeyRecord, expected_revision: u64) -> StoreResult<()>;
    fn list_keys(&self, account_id: &str, region: &str, after: Option<&str>, limit: usize) -> StoreResult<Vec<KeyRecord>>;
    fn get_material(&self, key_id: &str, version: u32) -> StoreResult<Option<KeyMaterialRecord>>;
    fn add_material(&self, key: &KeyRecord, expected_revision: u64, material: &KeyMaterialRecord) -> StoreResult<()>;
    fn list_materials(&self, key_id: &str) -> StoreResult<Vec<KeyMaterialRecord>>;
    fn destroy_key(&self, key_id: &str, expected_revision: u64) -> StoreResult<()>;
    fn import_material(&self, key: &KeyRecord, expected_revision: u64, material: &KeyMaterialRecord, token_id: &str) -> StoreResult<()>;
    fn stage_material(&self, key: &KeyRecord, expected_revision: u64, material: &KeyMaterialRecord, token_id: &str) -> StoreResult<()>;
    fn promote_material(&self, key: &KeyRecord, expected_revision: u64, version: u32, rotation_type: &str) -> StoreResult<()>;
    fn delete_material(&self, key: &KeyRecord, expected_revision: u64) -> StoreResult<()>;
    fn keys_due(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<KeyRecord>>;
});

forward!(AliasStore {
    fn create_alias(&self, alias: &AliasRecord) -> StoreResult<()>;
    fn get_alias(&self, account_id: &str, region: &str, alias_name: &str) -> StoreResult<Option<AliasRecord>>;
    fn update_alias(&self, account_id: &str, region: &str, alias_name: &str, target_key_id: &str, now_ms: i64) -> StoreResult<()>;
    fn delete_alias(&self, account_id: &str, region: &str, alias_name: &str) -> StoreResult<()>;
    fn list_aliases(&self, account_id: &str, region: &str, key_id: Option<&str>, after: Option<&str>, limit: usize) -> StoreResult<Vec<AliasRecord>>;
});

forward!(TagStore {
    fn put_tags(&self, key_id: &str, tags: &[Tag], max_tags: usize) -> StoreResult<()>;
    fn delete_tags(&self, key_id: &str, tag_keys: &[String]) -> StoreResult<()>;
    fn list_tags(&self, key_id: &str, after: Option<&str>, limit: usize) -> StoreResult<Vec<Tag>>;
});

forward!(GrantStore {
    fn create_grant(&self, grant: &GrantRecord) -> StoreResult<()>;
    fn get_grant(&self, grant_id: &str) -> StoreResult<Option<GrantRecord>>;
    fn list_grants(&self, key_id: &str) -> StoreResult<Vec<GrantRecord>>;
    fn grants_for(&self, key_id: &str, grantees: &[&str], operation: &str) -> StoreResult<Vec<GrantRecord>>;
    fn list_retirable_grants(&self, retiring_principal: &str) -> StoreResult<Vec<GrantRecord>>;
    fn delete_grant(&self, grant_id: &str) -> StoreResult<()>;
});

forward!(IdentityStore {
    fn create_account(&self, account: &AccountRecord, root_key: &AccessKeyRecord) -> StoreResult<()>;
    fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>>;
    fn create_user(&self, user: &UserRecord, key: &AccessKeyRecord) -> StoreResult<()>;
    fn list_users(&self, account_id: &str) -> StoreResult<Vec<UserRecord>>;
    fn put_access_key(&self, key: &AccessKeyRecord) -> StoreResult<()>;
    fn get_access_key(&self, access_key_id: &str) -> StoreResult<Option<AccessKeyRecord>>;
    fn list_access_keys(&self, principal_arn: &str) -> StoreResult<Vec<AccessKeyRecord>>;
    fn set_access_key_status(&self, access_key_id: &str, status: &str) -> StoreResult<()>;
    fn delete_access_key(&self, access_key_id: &str) -> StoreResult<()>;
});

forward!(ImportStore {
    fn put_import_params(&self, params: &ImportParamsRecord, now_ms: i64, max_outstanding: usize) -> StoreResult<()>;
    fn count_import_params(&self, key_id: &str, now_ms: i64) -> StoreResult<usize>;
    fn purge_import_params(&self, key_id: Option<&str>, expired_by_ms: i64) -> StoreResult<u64>;
    fn get_import_params(&self, token_id: &str) -> StoreResult<Option<ImportParamsRecord>>;
});

forward!(SettingStore {
    fn get_setting(&self, name: &str) -> StoreResult<Option<String>>;
    fn init_setting(&self, name: &str, value: &str) -> StoreResult<String>;
    fn set_setting(&self, name: &str, value: &str) -> StoreResult<()>;
    fn try_lease(&self, name: &str, holder: &str, now_ms: i64, until_ms: i64) -> StoreResult<bool>;
});

forward!(SealedStore {
    fn list_sealed(&self, table: SealedTable, after: Option<(&str, u32)>, limit: usize) -> StoreResult<Vec<SealedRecord>>;
    fn replace_sealed(&self, record: &SealedRecord, new_sealed: &[u8]) -> StoreResult<()>;
});

forward!(SecretStore {
    fn create_secret(&self, secret: &SecretRecord, version: Option<&SecretVersionRecord>) -> StoreResult<()>;
    fn get_secret(&self, arn: &str) -> StoreResult<Option<SecretRecord>>;
    fn get_secret_by_name(&self, account_id: &str, region: &str, name: &str) -> StoreResult<Option<SecretRecord>>;
    fn list_secrets(&self, account_id: &str, region: &str) -> StoreResult<Vec<SecretRecord>>;
    fn update_secret(&self, secret: &SecretRecord, expected_revision: u64, upsert_versions: &[SecretVersionRecord], delete_versions: &[String]) -> StoreResult<()>;
    fn list_secret_versions(&self, arn: &str) -> StoreResult<Vec<SecretVersionRecord>>;
    fn get_secret_version(&self, arn: &str, version_id: &str) -> StoreResult<Option<SecretVersionRecord>>;
    fn destroy_secret(&self, arn: &str, expected_revision: u64) -> StoreResult<()>;
    fn secrets_due(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<SecretRecord>>;
});
