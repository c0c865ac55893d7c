//! Access keys (the secrets SigV4 verifies against, cached briefly), first-start
//! initialisation and the root-of-trust canary.

use super::Credential;
use super::key::access_key_seal_context;
use crate::types::{AccountId, Role};
use crate::{Kms, KmsError};
use clavis_crypto::SecretBytes;
use clavis_store::{AccessKeyRecord, StoreError};
use std::sync::Arc;

const ROOT_CHECK_CONTEXT: &[u8] = b"clavis/root-check/v1\0";
const ROOT_CHECK_TEXT: &[u8] = b"clavis root of trust";
/// How long an access key's unsealed secret and status may be served from memory.
const CREDENTIAL_CACHE_TTL: std::time::Duration = std::time::Duration::from_millis(900);

impl Kms {
    // ----- initialisation and credentials -----

    /// Records the administrator's account and access key on first start. Idempotent: the first
    /// account id stored wins, and an existing access key is left alone. Returns the account id
    /// in force.
    pub async fn initialize(&self, account: &AccountId, access_key_id: &str, secret: &SecretBytes) -> Result<AccountId, KmsError> {
        let stored = self.store.init_setting("account_id", account.as_str()).await?;
        let stored = AccountId::parse(&stored).ok_or_else(|| KmsError::Internal("stored account id is malformed".into()))?;
        if self.store.get_access_key(access_key_id).await?.is_none() {
            let sealed_secret = self.root.seal(&access_key_seal_context(access_key_id), secret)?;
            let rec = AccessKeyRecord {
                access_key_id: access_key_id.to_owned(),
                sealed_secret,
                account_id: stored.as_str().to_owned(),
                principal_arn: stored.root_arn(),
                status: "Active".to_owned(),
                created_ms: self.clock.now_ms(),
            };
            match self.store.put_access_key(&rec).await {
                Ok(()) | Err(StoreError::AlreadyExists) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(stored)
    }

    /// Checks that this node's root of trust is the one the database was initialised with: the
    /// database holds a canary sealed by the first node; unsealing it must succeed. On a new
    /// database the canary is written. Several nodes sharing a database with different master
    /// keys would each write material the others cannot read.
    pub async fn check_root_of_trust(&self) -> Result<(), KmsError> {
        let canary = self.root.seal(ROOT_CHECK_CONTEXT, &SecretBytes::new(ROOT_CHECK_TEXT.to_vec()))?;
        let stored = self.store.init_setting("root_check", &hex::encode(&canary)).await?;
        let sealed = hex::decode(&stored).map_err(|_| KmsError::Internal("stored root check is not hex".into()))?;
        match self.root.unseal(ROOT_CHECK_CONTEXT, &sealed) {
            Ok(_) => Ok(()),
            Err(_) => Err(KmsError::Internal("this root of trust cannot unseal the database's canary".into())),
        }
    }

    /// Reseals the root-of-trust canary under the current master key (rotation).
    pub(crate) async fn reseal_canary(&self) -> Result<(), KmsError> {
        let canary = self.root.seal(ROOT_CHECK_CONTEXT, &SecretBytes::new(ROOT_CHECK_TEXT.to_vec()))?;
        self.store.set_setting("root_check", &hex::encode(&canary)).await?;
        Ok(())
    }

    /// The account id recorded at initialisation, if any.
    pub async fn account_id(&self) -> Result<Option<AccountId>, KmsError> {
        Ok(self.store.get_setting("account_id").await?.as_deref().and_then(AccountId::parse))
    }

    /// The access key with this id and its unsealed secret, or `None` if unknown. Cached for at
    /// most one second (the secret is needed on every request); a change made through this node
    /// (`Kms::forget_credential`) takes effect at once, one made on another node within that
    /// second.
    pub async fn credential(&self, access_key_id: &str) -> Result<Option<Arc<Credential>>, KmsError> {
        if self.root.is_sealed() {
            return Err(KmsError::Sealed);
        }
        if let Some((c, at)) = self.credentials.read().ok().and_then(|m| m.get(access_key_id).cloned())
            && at.elapsed() < CREDENTIAL_CACHE_TTL
        {
            clavis_metrics::cache_lookup("credential", true);
            return Ok(Some(c));
        }
        clavis_metrics::cache_lookup("credential", false);
        let Some(rec) = self.store.get_access_key(access_key_id).await? else {
            self.forget_credential(access_key_id);
            return Ok(None);
        };
        let secret = self.root.unseal(&access_key_seal_context(&rec.access_key_id), &rec.sealed_secret)?;
        let account = AccountId::parse(&rec.account_id).ok_or_else(|| KmsError::Internal("stored access key has a bad account".into()))?;
        let role = self.role_of(&account, &rec.principal_arn).await?;
        let cred = Arc::new(Credential {
            access_key_id: rec.access_key_id,
            account,
            principal_arn: rec.principal_arn,
            secret,
            active: rec.status == "Active",
            role,
        });
        // Checked under the lock, as for key material: a credential unsealed just before a
        // seal is not cached after the seal cleared the cache.
        if let Ok(mut m) = self.credentials.write()
            && !self.root.is_sealed()
        {
            m.insert(access_key_id.to_owned(), (cred.clone(), std::time::Instant::now()));
        }
        Ok(Some(cred))
    }

    /// The role of a principal: the account root is an administrator; a user has the role it was
    /// created with. An unknown principal (a deleted user) or a stored role this version does
    /// not know has no permissions at all: an unreadable role must not read as some default.
    async fn role_of(&self, account: &AccountId, principal_arn: &str) -> Result<Role, KmsError> {
        if principal_arn == account.root_arn() {
            return Ok(Role::Admin);
        }
        let users = self.store.list_users(account.as_str()).await?;
        Ok(users.iter().find(|u| u.arn == principal_arn).and_then(|u| Role::parse(&u.role)).unwrap_or(Role::None))
    }

    /// Drops a cached credential (after its status changed or it was deleted).
    pub(crate) fn forget_credential(&self, access_key_id: &str) {
        if let Ok(mut m) = self.credentials.write() {
            m.remove(access_key_id);
        }
    }
}
