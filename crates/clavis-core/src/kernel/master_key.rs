//! Master-key rotation and migration between root-of-trust providers: a new master-key version
//! is made (in the provider new keys go to: a key file, an HSM key) and becomes the one every
//! seal uses; then every sealed value in storage (key material, access-key secrets, import
//! wrapping keys, the root-of-trust canary, the audit MAC key) is unsealed with the version its
//! header names and sealed again under the new one, each row by compare-and-swap. Import
//! wrapping keys past their expiry are skipped (no request unseals them again; the scheduler
//! purges them), and used or long-expired ones are purged before the first pass.
//!
//! Crash safety: the registry of versions (`master_keys`, `master_key_current`) is written
//! before any value is resealed, and older versions stay in the keyring, so at every moment each
//! stored value is sealed under a version some node can open. A crash in the middle leaves
//! `master_key_rotation = resealing`; the next start (or the next rotate command) resumes and
//! completes the reseal. Nothing is ever unreadable, and no value is lost: a row changed
//! concurrently is left to its new writer (who sealed it under the current version).

use super::key::{access_key_seal_context, material_seal_context};
use crate::api::{RotateMasterKeyRequest, RotateMasterKeyResponse};
use crate::types::KeyId;
use crate::{Kms, KmsError};
use clavis_store::{SealedRecord, SealedTable, StoreError};

/// `"1:file,2:pkcs11"`: every master-key version and its provider.
pub const MASTER_KEYS_SETTING: &str = "master_keys";
/// The version new seals use.
pub const CURRENT_SETTING: &str = "master_key_current";
/// `resealing` while a rotation's reseal is unfinished, `done` after.
pub const ROTATION_SETTING: &str = "master_key_rotation";
/// A Shamir master key made but not yet in use (its shares were handed out).
pub const PENDING_SETTING: &str = "master_key_pending";
const ROTATION_LEASE: &str = "master-key-rotation";
/// Renewed on every page of the reseal, so a node that dies frees it within a minute.
const ROTATION_LEASE_MS: i64 = 60 * 1000;

/// Parses the `master_keys` setting into (version, provider) pairs.
pub fn parse_registry(value: &str) -> Option<Vec<(u32, String)>> {
    value
        .split(',')
        .map(|entry| {
            let (v, kind) = entry.split_once(':')?;
            Some((v.parse().ok()?, kind.to_owned()))
        })
        .collect()
}

fn registry_text(entries: &[(u32, String)]) -> String {
    entries.iter().map(|(v, k)| format!("{v}:{k}")).collect::<Vec<_>>().join(",")
}

impl Kms {
    /// Makes a new master-key version and reseals everything under it, or resumes an unfinished
    /// rotation (see `ops::operator`'s RotateMasterKey, which authorizes).
    pub(crate) async fn rotate_master_key_now(&self, req: RotateMasterKeyRequest) -> Result<RotateMasterKeyResponse, KmsError> {
        let _one_at_a_time = self.rotation_guard()?;
        // One node at a time across a shared database.
        let now = self.clock.now_ms();
        if !self.store.try_lease(ROTATION_LEASE, &self.node_id, now, now + ROTATION_LEASE_MS).await? {
            return Err(KmsError::Unavailable("another node is rotating the master key; retry when it completes".into()));
        }
        if self.store.get_setting(ROTATION_SETTING).await?.as_deref() == Some("resealing") {
            let resealed = self.reseal_all().await?;
            return Ok(RotateMasterKeyResponse {
                master_key_version: self.root.status().master_key_version,
                resealed,
                shares: None,
                pending_version: None,
            });
        }
        let pending = self.store.get_setting(PENDING_SETTING).await?.and_then(|v| v.parse::<u32>().ok());
        let version = match pending {
            Some(v) => v,
            None => {
                let new_version = self.root.versions().into_iter().max().unwrap_or(0) + 1;
                let params = clavis_crypto::seal::NewKeyParams { shares: req.shares, threshold: req.threshold };
                let prepared = self.root.prepare_version(new_version, &params).map_err(Self::operator_error)?;
                let mut registry = self.registry().await?;
                registry.retain(|(v, _)| *v != new_version);
                registry.push((new_version, prepared.kind.to_owned()));
                self.store.set_setting(MASTER_KEYS_SETTING, &registry_text(&registry)).await?;
                if prepared.shares.is_some() {
                    // A Shamir key: nothing is sealed under it until its shares are in the
                    // operators' hands. The next rotate-master-key switches to it.
                    self.store.set_setting(PENDING_SETTING, &new_version.to_string()).await?;
                    tracing::warn!(version = new_version, "Shamir master key made; run rotate-master-key again to switch to it");
                    return Ok(RotateMasterKeyResponse {
                        master_key_version: self.root.status().master_key_version,
                        resealed: 0,
                        shares: prepared.shares.map(|v| v.into_iter().map(crate::api::SecretText::new).collect()),
                        pending_version: Some(new_version),
                    });
                }
                new_version
            }
        };
        // From here a crash resumes: "resealing" is durable before the switch.
        self.store.set_setting(ROTATION_SETTING, "resealing").await?;
        self.root.set_rotation_unfinished(true);
        self.store.set_setting(CURRENT_SETTING, &version.to_string()).await?;
        self.store.set_setting(PENDING_SETTING, "").await?;
        self.root.use_version(version).map_err(|e| match e {
            clavis_crypto::CryptoError::Sealed => KmsError::Sealed,
            other => Self::operator_error(other),
        })?;
        tracing::warn!(version, "master key rotated; resealing every stored value");
        let resealed = self.reseal_all().await?;
        Ok(RotateMasterKeyResponse {
            master_key_version: self.root.status().master_key_version,
            resealed,
            shares: None,
            pending_version: None,
        })
    }

    async fn registry(&self) -> Result<Vec<(u32, String)>, KmsError> {
        match self.store.get_setting(MASTER_KEYS_SETTING).await? {
            Some(text) => parse_registry(&text).ok_or_else(|| KmsError::Internal("the master_keys setting is malformed".into())),
            None => Ok(Vec::new()),
        }
    }

    /// Records the first master-key version (`1:<provider>`) of a deployment that has no
    /// registry yet; an existing registry is left alone.
    pub async fn record_master_key(&self, provider: &str) -> Result<(), KmsError> {
        self.store.init_setting(MASTER_KEYS_SETTING, &format!("1:{provider}")).await?;
        self.store.init_setting(CURRENT_SETTING, "1").await?;
        Ok(())
    }

    /// Completes an unfinished rotation (called at start). Returns how many values it resealed,
    /// or `None` if there was nothing to resume.
    pub async fn resume_master_key_rotation(&self) -> Result<Option<u64>, KmsError> {
        let _one_at_a_time = self.rotation_guard()?;
        if self.store.get_setting(ROTATION_SETTING).await?.as_deref() != Some("resealing") {
            return Ok(None);
        }
        self.reseal_all().await.map(Some)
    }

    /// One rotation at a time on this node (across nodes, each reseal is a compare-and-swap, so
    /// two nodes resealing at once only repeat work).
    fn rotation_guard(&self) -> Result<RotationGuard<'_>, KmsError> {
        if self.rotating.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Err(KmsError::Unavailable("a master-key rotation is already running on this node; retry when it completes".into()));
        }
        Ok(RotationGuard(&self.rotating))
    }

    /// The seal context of a stored sealed value (the same contexts the operations seal with).
    fn sealed_context(r: &SealedRecord) -> Result<Vec<u8>, KmsError> {
        let key_id = |s: &str| KeyId::parse(s).ok_or_else(|| KmsError::Internal(format!("stored key id {s:?} is not a UUID")));
        Ok(match r.table {
            SealedTable::Material => material_seal_context(&key_id(&r.id)?, r.version),
            SealedTable::AccessKey => access_key_seal_context(&r.id),
            SealedTable::ImportParams => super::key::import_params_seal_context(&key_id(&r.owner)?, &r.id),
        })
    }

    async fn reseal_all(&self) -> Result<u64, KmsError> {
        let current = self.root.status().master_key_version;
        let now = self.clock.now_ms();
        self.store.purge_import_params(None, now.saturating_sub(super::key::EXPIRED_PARAMS_KEPT_MS)).await?;
        let mut resealed = 0u64;
        // A write that sealed under the old version just before the switch may commit after a
        // pass went by its row: passes repeat until one finds nothing left to reseal.
        for _pass in 0..10 {
            let n = self.reseal_pass(current, resealed).await?;
            resealed += n;
            if n == 0 {
                break;
            }
        }
        self.reseal_canary().await?;
        if let Some(audit) = &self.audit {
            audit.reseal_key(self.root.as_ref()).map_err(|e| KmsError::AuditUnavailable(e.to_string()))?;
        }
        self.store.set_setting(ROTATION_SETTING, "done").await?;
        self.root.set_rotation_unfinished(false);
        // Release the lease (it ends now).
        let now = self.clock.now_ms();
        self.store.try_lease(ROTATION_LEASE, &self.node_id, now, now - 1).await?;
        tracing::warn!(resealed, version = current, "master-key rotation complete");
        Ok(resealed)
    }

    /// One pass over every sealed value; returns how many it resealed.
    async fn reseal_pass(&self, current: u32, already: u64) -> Result<u64, KmsError> {
        let mut resealed = 0u64;
        for table in [SealedTable::Material, SealedTable::AccessKey, SealedTable::ImportParams] {
            let mut after: Option<(String, u32)> = None;
            loop {
                let now = self.clock.now_ms();
                // Keep the rotation lease while working (the resume at start takes it too).
                if !self.store.try_lease(ROTATION_LEASE, &self.node_id, now, now + ROTATION_LEASE_MS).await? {
                    return Err(KmsError::Unavailable("another node took over the master-key rotation".into()));
                }
                let page = self.store.list_sealed(table, after.as_ref().map(|(i, v)| (i.as_str(), *v)), 500).await?;
                let Some(last) = page.last() else { break };
                after = Some((last.id.clone(), last.version));
                for r in &page {
                    // An expired import wrapping key is never unsealed again (ImportKeyMaterial
                    // refuses an expired token before it unseals), so it stays as it is until
                    // the purge deletes it.
                    if r.expires_ms.is_some_and(|e| e <= now) || clavis_crypto::seal::sealed_version(&r.sealed)? == current {
                        continue;
                    }
                    let context = Self::sealed_context(r)?;
                    let plain = self.root.unseal(&context, &r.sealed)?;
                    let new = self.root.seal(&context, &plain)?;
                    match self.store.replace_sealed(r, &new).await {
                        // Changed or deleted meanwhile: its new writer sealed it under the
                        // current version, or it is gone.
                        Ok(()) | Err(StoreError::Conflict) | Err(StoreError::NotFound) => {}
                        Err(e) => return Err(e.into()),
                    }
                    resealed += 1;
                    if self.crash_after_reseals.is_some_and(|n| already + resealed >= n) {
                        tracing::error!(resealed, "--dangerous-test-crash-after-reseals reached: aborting");
                        std::process::abort();
                    }
                }
            }
        }
        Ok(resealed)
    }
}

struct RotationGuard<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for RotationGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}
