//! Key records and material: unsealed material through its cache, compare-and-swap updates
//! of a key's record, and the writes the operation modules make. Every write takes the
//! [`Key`] it changes (so the key was resolved, and authorized, first) and keeps both caches
//! right; every cache insert is guarded against a race with sealing.

use super::key::{Key, Material, material_seal_context};
use crate::types::KeyId;
use crate::{Kms, KmsError};
use clavis_store::{KeyMaterialRecord, KeyRecord, StoreError, StoreResult, Tag};
use std::sync::Arc;

impl Kms {
    /// The unsealed material of one version of a key, from the cache or unsealed from storage.
    pub(crate) async fn material(&self, key: &Key, version: u32) -> Result<Arc<Material>, KmsError> {
        if let Some(m) = self.materials.get(key.id, version) {
            return Ok(m);
        }
        let rec = self
            .store
            .get_material(&key.rec.key_id, version)
            .await?
            .ok_or_else(|| KmsError::Internal(format!("material version {version} of {} is missing", key.arn)))?;
        let bytes = self.root.unseal(&material_seal_context(&key.id, version), &rec.sealed)?;
        let material = Arc::new(Material::from_bytes(key.spec, &bytes)?);
        self.cache_material(key.id, version, material.clone());
        Ok(material)
    }

    /// Caches unsealed material, unless the root of trust was sealed meanwhile: checked under
    /// the cache's lock, so material unsealed just before a seal is never cached after the seal
    /// cleared the cache. The one place material enters the cache.
    fn cache_material(&self, id: KeyId, version: u32, material: Arc<Material>) {
        self.materials.insert(id, version, material, || !self.root.is_sealed());
    }

    /// Applies `change` to a key's record with optimistic concurrency, retrying on conflict.
    pub(crate) async fn update_key(
        &self,
        mut key: Key,
        change: impl Fn(&Key) -> Result<Option<KeyRecord>, KmsError>,
    ) -> Result<Key, KmsError> {
        for _ in 0..5 {
            let Some(mut rec) = change(&key)? else {
                return Ok(key);
            };
            let expected = key.rec.revision;
            rec.revision = expected + 1;
            match self.store.update_key(&rec, expected).await {
                Ok(()) => return self.remember(rec),
                Err(StoreError::Conflict) => key = self.load_key_fresh(&key).await?,
                Err(StoreError::NotFound) => return Err(super::key_not_found(&key.rec.region, &key.rec.account_id, &key.rec.key_id)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(KmsError::Unavailable("too many concurrent updates to the key; retry".into()))
    }

    /// Parses a record just written and caches it.
    fn remember(&self, rec: KeyRecord) -> Result<Key, KmsError> {
        let key = Key::from_record(rec)?;
        self.keys.put(&key);
        Ok(key)
    }

    /// Stores a new key with its first material (none for a key awaiting import) and tags; the
    /// material, given unsealed as well, warms the cache so the first use need not unseal.
    pub(crate) async fn insert_key(
        &self,
        rec: KeyRecord,
        material: Option<(KeyMaterialRecord, Material)>,
        tags: &[Tag],
    ) -> Result<Key, KmsError> {
        self.store.create_key(&rec, material.as_ref().map(|(m, _)| m), tags).await?;
        let key = self.remember(rec)?;
        if let Some((m, plain)) = material {
            self.cache_material(key.id, m.version, Arc::new(plain));
        }
        Ok(key)
    }

    /// Adds a material version and makes it current (`rec` is the key's new record).
    pub(crate) async fn add_material(&self, key: &Key, mut rec: KeyRecord, mat: &KeyMaterialRecord, plain: Material) -> StoreResult<Key> {
        rec.revision = key.rec.revision + 1;
        self.store.add_material(&rec, key.rec.revision, mat).await?;
        self.cache_material(key.id, mat.version, Arc::new(plain));
        self.remember(rec).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Replaces a key's material with imported material (version 1), consuming its import token.
    pub(crate) async fn import_material(
        &self,
        key: &Key,
        mut rec: KeyRecord,
        mat: &KeyMaterialRecord,
        token_id: &str,
        plain: Material,
    ) -> StoreResult<Key> {
        rec.revision = key.rec.revision + 1;
        self.store.import_material(&rec, key.rec.revision, mat, token_id).await?;
        self.materials.remove_key(key.id);
        self.cache_material(key.id, mat.version, Arc::new(plain));
        self.remember(rec).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Stores imported material as a version pending rotation, consuming its import token.
    pub(crate) async fn stage_material(&self, key: &Key, mut rec: KeyRecord, mat: &KeyMaterialRecord, token_id: &str) -> StoreResult<Key> {
        rec.revision = key.rec.revision + 1;
        self.store.stage_material(&rec, key.rec.revision, mat, token_id).await?;
        self.remember(rec).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Makes a staged material version current.
    pub(crate) async fn promote_material(&self, key: &Key, mut rec: KeyRecord, version: u32, rotation_type: &str) -> StoreResult<Key> {
        rec.revision = key.rec.revision + 1;
        self.store.promote_material(&rec, key.rec.revision, version, rotation_type).await?;
        self.remember(rec).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Erases a key's (imported) material.
    pub(crate) async fn delete_material(&self, key: &Key, mut rec: KeyRecord) -> StoreResult<Key> {
        rec.revision = key.rec.revision + 1;
        self.store.delete_material(&rec, key.rec.revision).await?;
        self.materials.remove_key(key.id);
        self.remember(rec).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Destroys a key and everything stored with it, and every cached trace of it.
    pub(crate) async fn destroy_key(&self, key: &Key) -> StoreResult<()> {
        self.store.destroy_key(&key.rec.key_id, key.rec.revision).await?;
        self.materials.remove_key(key.id);
        self.keys.remove(&key.id);
        Ok(())
    }

    /// A key's material versions (sealed), oldest first.
    pub(crate) async fn material_records(&self, key: &Key) -> Result<Vec<KeyMaterialRecord>, KmsError> {
        Ok(self.store.list_materials(&key.rec.key_id).await?)
    }

    /// One material version's record (sealed), if it exists.
    pub(crate) async fn material_record(&self, key: &Key, version: u32) -> Result<Option<KeyMaterialRecord>, KmsError> {
        Ok(self.store.get_material(&key.rec.key_id, version).await?)
    }

    /// Keys whose scheduled work (rotation, deletion, material expiry) is due: system work of
    /// the scheduler, on behalf of no caller.
    pub(crate) async fn keys_due(&self, now_ms: i64, limit: usize) -> Result<Vec<Key>, KmsError> {
        self.store.keys_due(now_ms, limit).await?.into_iter().map(Key::from_record).collect()
    }

    /// One page of an account's key ids and ARNs (ListKeys: the identity step allows listing
    /// every key of the account, not using any).
    pub(crate) async fn key_ids(
        &self,
        account: &str,
        region: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, KmsError> {
        let recs = self.store.list_keys(account, region, after, limit).await?;
        Ok(recs.into_iter().map(|r| (crate::types::key_arn(&r.region, &r.account_id, &r.key_id), r.key_id)).collect())
    }

    /// Where a key lives (its ARN and account), without the key: for naming a grant's key in
    /// listings and records.
    pub(crate) async fn key_home(&self, key_id: &str) -> Result<Option<(String, String)>, KmsError> {
        Ok(self.store.get_key(key_id).await?.map(|k| (crate::types::key_arn(&k.region, &k.account_id, &k.key_id), k.account_id)))
    }
}
