//! The Clavis storage boundary: plain records, the [`Store`] trait every backend implements (one
//! sub-trait per family: [`KeyStore`], [`AliasStore`], [`TagStore`], [`GrantStore`],
//! [`IdentityStore`], [`ImportStore`], [`SettingStore`], [`SealedStore`], [`SecretStore`]), and, with the
//! `testing` feature, the conformance suite every backend must pass and a failure-injecting
//! wrapper store (`testing`).
//!
//! Architecture invariant: this crate depends on no database driver and no cryptography. Key
//! material reaches it only sealed (`sealed: Vec<u8>` fields, opaque bytes); it cannot unseal
//! them and never sees plaintext. Records are plain data: the core parses them into its domain
//! types and owns every rule about what values are valid.

mod error;
mod records;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::StoreError;
pub use records::{
    AccessKeyRecord, AccountRecord, AliasRecord, DeletionRequest, GrantRecord, ImportParamsRecord, KeyMaterialRecord, KeyRecord,
    SealedRecord, SealedTable, SecretRecord, SecretVersionRecord, Tag, UserRecord,
};

/// Result alias for storage operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// The tables a key's destruction clears ([`KeyStore::destroy_key`]), each with the column that
/// names the key: its dependants first, the key's own row last. Both backends share these table
/// names and delete from exactly these, in this order, in one transaction, so a new table that
/// holds a key's data is added to destruction here, once.
pub const KEY_DESTRUCTION: &[(&str, &str)] = &[
    ("key_material", "key_id"),
    ("tags", "key_id"),
    ("aliases", "target_key_id"),
    ("grants", "key_id"),
    ("import_params", "key_id"),
    ("keys", "key_id"),
];

/// Persistent state of a Clavis deployment: every storage family together. The core holds an
/// `Arc<dyn Store>`; a backend implements each family's trait and gets `Store` from the blanket
/// implementation.
///
/// Every method of every family is atomic; a returned `Ok` means the change is durable (it
/// survives `kill -9` of the process). Errors are never swallowed: a backend that cannot reach
/// its database returns [`StoreError::Unavailable`], which is never confused with "not found"
/// (`Ok(None)`).
pub trait Store:
    KeyStore + AliasStore + TagStore + GrantStore + IdentityStore + ImportStore + SettingStore + SealedStore + SecretStore + 'static
{
}

impl<T> Store for T where
    T: KeyStore + AliasStore + TagStore + GrantStore + IdentityStore + ImportStore + SettingStore + SealedStore + SecretStore + 'static
{
}

/// Keys and their sealed material: records with optimistic concurrency, material versions (generated, rotated, imported, staged), due work and destruction. Part of [`Store`].
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a new key with its first material version (none for a key awaiting imported
    /// material) and tags, atomically. [`StoreError::AlreadyExists`] if the key id is taken.
    async fn create_key(&self, key: &KeyRecord, material: Option<&KeyMaterialRecord>, tags: &[Tag]) -> StoreResult<()>;

    /// The key with this id, in any account or region.
    async fn get_key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>>;

    /// Replaces a key's record if its stored `revision` equals `expected_revision`; the stored
    /// revision becomes `key.revision`. [`StoreError::Conflict`] if another writer got there
    /// first, [`StoreError::NotFound`] if the key does not exist.
    async fn update_key(&self, key: &KeyRecord, expected_revision: u64) -> StoreResult<()>;

    /// Keys of one account and region ordered by key id, starting after `after`.
    async fn list_keys(&self, account_id: &str, region: &str, after: Option<&str>, limit: usize) -> StoreResult<Vec<KeyRecord>>;

    /// One version of a key's sealed material.
    async fn get_material(&self, key_id: &str, version: u32) -> StoreResult<Option<KeyMaterialRecord>>;

    /// Adds a material version and replaces the key record in one transaction, with the same
    /// optimistic concurrency as [`KeyStore::update_key`]: two nodes rotating the same key at once
    /// produce one rotation, and the loser gets [`StoreError::Conflict`].
    async fn add_material(&self, key: &KeyRecord, expected_revision: u64, material: &KeyMaterialRecord) -> StoreResult<()>;

    /// Every material version of a key (sealed bytes included), ordered by version.
    async fn list_materials(&self, key_id: &str) -> StoreResult<Vec<KeyMaterialRecord>>;

    /// Destroys a key: its record, every material version, its tags, aliases, grants and import
    /// parameters, in one transaction, and then makes sure the bytes are gone from the storage
    /// files (not only unlinked from an index). [`StoreError::Conflict`] if the record changed
    /// since `expected_revision`.
    async fn destroy_key(&self, key_id: &str, expected_revision: u64) -> StoreResult<()>;

    /// Imports material: replaces the key record (compare-and-swap on its revision), stores the
    /// material as the only version, and consumes the token (deletes its parameters), in one
    /// transaction. [`StoreError::Conflict`] if the key changed or the token was consumed
    /// meanwhile.
    async fn import_material(
        &self,
        key: &KeyRecord,
        expected_revision: u64,
        material: &KeyMaterialRecord,
        token_id: &str,
    ) -> StoreResult<()>;

    /// Stages new imported material (rotation of an imported key): adds `material` as a
    /// version beyond the current one, replaces the key record (compare-and-swap) and consumes
    /// the token (deletes its parameters), in one transaction. [`StoreError::AlreadyExists`] if that version exists.
    async fn stage_material(
        &self,
        key: &KeyRecord,
        expected_revision: u64,
        material: &KeyMaterialRecord,
        token_id: &str,
    ) -> StoreResult<()>;

    /// Makes a staged version current: replaces the key record (compare-and-swap) and sets the
    /// version's rotation type, in one transaction.
    async fn promote_material(&self, key: &KeyRecord, expected_revision: u64, version: u32, rotation_type: &str) -> StoreResult<()>;

    /// Deletes every material version of a key and replaces its record (compare-and-swap), in
    /// one transaction, erasing the bytes from the storage files as [`KeyStore::destroy_key`] does.
    async fn delete_material(&self, key: &KeyRecord, expected_revision: u64) -> StoreResult<()>;

    /// Keys with work due at `now_ms` that the scheduler will do, at most `limit`: a
    /// `PendingDeletion` key past its deletion date, an `Enabled` or `Disabled` key past its
    /// imported material's expiry, an `Enabled` key past its rotation date. Only those: keys
    /// whose date has passed but whose state defers the work (a disabled key rotates once
    /// enabled again) would otherwise fill every page and starve the rest.
    async fn keys_due(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<KeyRecord>>;
}

/// Aliases: names in an account and region that point at a key. Part of [`Store`].
#[async_trait::async_trait]
pub trait AliasStore: Send + Sync {
    /// Creates an alias. [`StoreError::AlreadyExists`] if the name is taken in that account and
    /// region.
    async fn create_alias(&self, alias: &AliasRecord) -> StoreResult<()>;

    /// The alias with this name in an account and region.
    async fn get_alias(&self, account_id: &str, region: &str, alias_name: &str) -> StoreResult<Option<AliasRecord>>;

    /// Points an existing alias at another key. [`StoreError::NotFound`] if it does not exist.
    async fn update_alias(&self, account_id: &str, region: &str, alias_name: &str, target_key_id: &str, now_ms: i64) -> StoreResult<()>;

    /// Deletes an alias. [`StoreError::NotFound`] if it does not exist.
    async fn delete_alias(&self, account_id: &str, region: &str, alias_name: &str) -> StoreResult<()>;

    /// Aliases of an account and region (optionally only those naming `key_id`), ordered by
    /// name, starting after `after`.
    async fn list_aliases(
        &self,
        account_id: &str,
        region: &str,
        key_id: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<AliasRecord>>;
}

/// Tags on keys. Part of [`Store`].
#[async_trait::async_trait]
pub trait TagStore: Send + Sync {
    /// Adds or overwrites tags on a key. If the key would then carry more than `max_tags` tags,
    /// nothing changes and [`StoreError::LimitExceeded`] is returned.
    async fn put_tags(&self, key_id: &str, tags: &[Tag], max_tags: usize) -> StoreResult<()>;

    /// Removes the named tags from a key (absent names are ignored).
    async fn delete_tags(&self, key_id: &str, tag_keys: &[String]) -> StoreResult<()>;

    /// A key's tags ordered by tag key, starting after `after`.
    async fn list_tags(&self, key_id: &str, after: Option<&str>, limit: usize) -> StoreResult<Vec<Tag>>;
}

/// Grants on keys, and the grant check's query. Part of [`Store`].
#[async_trait::async_trait]
pub trait GrantStore: Send + Sync {
    /// Stores a grant. [`StoreError::AlreadyExists`] if its id is taken.
    async fn create_grant(&self, grant: &GrantRecord) -> StoreResult<()>;

    /// The grant with this id.
    async fn get_grant(&self, grant_id: &str) -> StoreResult<Option<GrantRecord>>;

    /// The grants on a key, ordered by creation time then id.
    async fn list_grants(&self, key_id: &str) -> StoreResult<Vec<GrantRecord>>;

    /// The grants on a key whose grantee is one of `grantees` and whose operations include
    /// `operation` (an exact member of the comma-separated list), ordered by creation time then
    /// id. This is the grant check's query: backends answer it from an index on
    /// `(key_id, grantee_principal)`, so its cost does not grow with other principals' grants.
    async fn grants_for(&self, key_id: &str, grantees: &[&str], operation: &str) -> StoreResult<Vec<GrantRecord>>;

    /// The grants a principal may retire (it is their retiring principal), ordered by creation
    /// time then id.
    async fn list_retirable_grants(&self, retiring_principal: &str) -> StoreResult<Vec<GrantRecord>>;

    /// Deletes a grant. [`StoreError::NotFound`] if unknown.
    async fn delete_grant(&self, grant_id: &str) -> StoreResult<()>;
}

/// Identities: accounts, users and their access keys (secrets sealed). Part of [`Store`].
#[async_trait::async_trait]
pub trait IdentityStore: Send + Sync {
    /// Creates an account with its root access key, in one transaction.
    /// [`StoreError::AlreadyExists`] if the account id or the access key id is taken.
    async fn create_account(&self, account: &AccountRecord, root_key: &AccessKeyRecord) -> StoreResult<()>;

    /// The accounts created by operators, ordered by id.
    async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>>;

    /// Creates a user and its first access key in one transaction. [`StoreError::AlreadyExists`]
    /// if the name is taken in the account.
    async fn create_user(&self, user: &UserRecord, key: &AccessKeyRecord) -> StoreResult<()>;

    /// The users of an account, ordered by name.
    async fn list_users(&self, account_id: &str) -> StoreResult<Vec<UserRecord>>;

    /// Stores a new access key. [`StoreError::AlreadyExists`] if the id is taken.
    async fn put_access_key(&self, key: &AccessKeyRecord) -> StoreResult<()>;

    /// The access key with this id.
    async fn get_access_key(&self, access_key_id: &str) -> StoreResult<Option<AccessKeyRecord>>;

    /// The access keys of a principal, ordered by id.
    async fn list_access_keys(&self, principal_arn: &str) -> StoreResult<Vec<AccessKeyRecord>>;

    /// Sets an access key's status (`Active` / `Inactive`). [`StoreError::NotFound`] if unknown.
    async fn set_access_key_status(&self, access_key_id: &str, status: &str) -> StoreResult<()>;

    /// Deletes an access key. [`StoreError::NotFound`] if unknown.
    async fn delete_access_key(&self, access_key_id: &str) -> StoreResult<()>;
}

/// Import parameters (bring your own key): the sealed wrapping keys behind import tokens, capped per key and purged when used or expired. Part of [`Store`].
#[async_trait::async_trait]
pub trait ImportStore: Send + Sync {
    /// Stores import parameters, if their key has fewer than `max_outstanding` parameters that
    /// are unused and still valid at `now_ms` ([`StoreError::LimitExceeded`] otherwise). The
    /// count and the insert are one atomic step, so concurrent requests, on one node or several,
    /// cannot pass the cap together.
    async fn put_import_params(&self, params: &ImportParamsRecord, now_ms: i64, max_outstanding: usize) -> StoreResult<()>;

    /// How many import parameters of a key are unused and still valid at `now_ms`.
    async fn count_import_params(&self, key_id: &str, now_ms: i64) -> StoreResult<usize>;

    /// Deletes import parameters that are used or that expired at or before `expired_by_ms`,
    /// those of one key or (`None`) of every key. Returns how many rows it deleted.
    async fn purge_import_params(&self, key_id: Option<&str>, expired_by_ms: i64) -> StoreResult<u64>;

    /// Import parameters by token id.
    async fn get_import_params(&self, token_id: &str) -> StoreResult<Option<ImportParamsRecord>>;
}

/// Deployment-wide settings and the leases that elect the node doing background work. Part of [`Store`].
#[async_trait::async_trait]
pub trait SettingStore: Send + Sync {
    /// A deployment-wide setting (for example the administrator's account id).
    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>>;

    /// Sets a deployment-wide setting only if it is not yet set; returns the value now stored.
    async fn init_setting(&self, name: &str, value: &str) -> StoreResult<String>;

    /// Sets a deployment-wide setting, replacing any value.
    async fn set_setting(&self, name: &str, value: &str) -> StoreResult<()>;

    /// Takes or renews the named lease for `holder` until `until_ms`, if it is free, expired
    /// (`now_ms` past its end) or already held by `holder`. Returns whether `holder` holds it.
    /// Background work runs only on the node that holds its lease.
    async fn try_lease(&self, name: &str, holder: &str, now_ms: i64, until_ms: i64) -> StoreResult<bool>;
}

/// Every sealed value, by table, for master-key rotation (reseal): listing and compare-and-swap replacement. Part of [`Store`].
#[async_trait::async_trait]
pub trait SealedStore: Send + Sync {
    /// Sealed values of one table ordered by (id, version), starting after `after`.
    async fn list_sealed(&self, table: SealedTable, after: Option<(&str, u32)>, limit: usize) -> StoreResult<Vec<SealedRecord>>;

    /// Replaces a sealed value if it still holds `record.sealed` (compare-and-swap):
    /// [`StoreError::Conflict`] if it changed, [`StoreError::NotFound`] if its row is gone.
    async fn replace_sealed(&self, record: &SealedRecord, new_sealed: &[u8]) -> StoreResult<()>;
}

/// Secrets of the Secrets Manager API and their encrypted versions. Part of [`Store`].
#[async_trait::async_trait]
pub trait SecretStore: Send + Sync {
    /// Stores a new secret with its first version, if any, atomically.
    /// [`StoreError::AlreadyExists`] if a secret of the same account, region and name exists
    /// (one scheduled for deletion included).
    async fn create_secret(&self, secret: &SecretRecord, version: Option<&SecretVersionRecord>) -> StoreResult<()>;

    /// A secret by ARN.
    async fn get_secret(&self, arn: &str) -> StoreResult<Option<SecretRecord>>;

    /// A secret by account, region and name.
    async fn get_secret_by_name(&self, account_id: &str, region: &str, name: &str) -> StoreResult<Option<SecretRecord>>;

    /// Every secret of an account and region (scheduled for deletion included), ordered by name.
    async fn list_secrets(&self, account_id: &str, region: &str) -> StoreResult<Vec<SecretRecord>>;

    /// Replaces a secret's record if its revision is still `expected_revision` (compare-and-swap;
    /// [`StoreError::Conflict`] otherwise, [`StoreError::NotFound`] if it is gone), and in the
    /// same transaction inserts or replaces `upsert_versions` (by secret ARN and version id) and
    /// deletes the versions named in `delete_versions`.
    async fn update_secret(
        &self,
        secret: &SecretRecord,
        expected_revision: u64,
        upsert_versions: &[SecretVersionRecord],
        delete_versions: &[String],
    ) -> StoreResult<()>;

    /// A secret's versions, oldest first (by creation time, then version id), without their
    /// values: `encrypted_data_key` and `ciphertext` are empty (read a value with
    /// [`SecretStore::get_secret_version`]), so listing costs the same however large the values.
    async fn list_secret_versions(&self, arn: &str) -> StoreResult<Vec<SecretVersionRecord>>;

    /// One version of a secret.
    async fn get_secret_version(&self, arn: &str, version_id: &str) -> StoreResult<Option<SecretVersionRecord>>;

    /// Destroys a secret and all its versions, if its revision is still `expected_revision`
    /// ([`StoreError::Conflict`] otherwise, [`StoreError::NotFound`] if it is gone).
    async fn destroy_secret(&self, arn: &str, expected_revision: u64) -> StoreResult<()>;

    /// Secrets whose deletion date or next rotation is at or before `now_ms`, at most `limit`.
    async fn secrets_due(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<SecretRecord>>;
}
