//! Key resolution: a `KeyId` member (id, ARN, alias name or alias ARN) to a key of the
//! caller's account (or, for the actions AWS allows, another's), authorized for the access
//! asked. The only way an operation obtains a [`Key`].

use super::authz::Access;
use super::key::Key;
use crate::types::{KeyId, KeyRef, alias_arn, key_arn};
use crate::{Caller, Kms, KmsError, validate};

pub(crate) fn alias_not_found(region: &str, account: &str, alias_name: &str) -> KmsError {
    KmsError::NotFound(format!("Alias {} is not found.", alias_arn(region, account, alias_name)))
}

pub(crate) fn key_not_found(region: &str, account: &str, id: &str) -> KmsError {
    KmsError::NotFound(format!("Key '{}' does not exist", key_arn(region, account, id)))
}

impl Kms {
    // ----- key resolution -----

    /// The key with this id if it belongs to `account` and `region`.
    async fn load_key(&self, account: &str, region: &str, key_id: &KeyId) -> Result<Key, KmsError> {
        match self.store_key(key_id).await? {
            Some(k) if k.rec.account_id == account && k.rec.region == region => Ok(k),
            _ => Err(key_not_found(region, account, &key_id.to_string())),
        }
    }

    /// The key with this id in any account (cached).
    async fn store_key(&self, key_id: &KeyId) -> Result<Option<Key>, KmsError> {
        if let Some(k) = self.keys.get(key_id) {
            clavis_metrics::cache_lookup("key", true);
            return Ok(Some(k));
        }
        clavis_metrics::cache_lookup("key", false);
        let Some(rec) = self.store.get_key(&key_id.to_string()).await? else { return Ok(None) };
        let k = Key::from_record(rec)?;
        self.keys.put(&k);
        Ok(Some(k))
    }

    /// Reads a key from storage again, bypassing the cache (before changing it).
    pub(crate) async fn load_key_fresh(&self, key: &Key) -> Result<Key, KmsError> {
        match self.store.get_key(&key.rec.key_id).await? {
            Some(rec) if rec.account_id == key.rec.account_id && rec.region == key.rec.region => {
                let k = Key::from_record(rec)?;
                self.keys.put(&k);
                Ok(k)
            }
            _ => Err(key_not_found(&key.rec.region, &key.rec.account_id, &key.rec.key_id)),
        }
    }

    async fn resolve_alias(&self, account: &str, region: &str, alias_name: &str) -> Result<Key, KmsError> {
        let alias = self.store.get_alias(account, region, alias_name).await?.ok_or_else(|| alias_not_found(region, account, alias_name))?;
        let id = KeyId::parse(&alias.target_key_id).ok_or_else(|| KmsError::Internal("alias target is not a key id".into()))?;
        self.load_key(account, region, &id).await
    }

    /// Resolves any `KeyId` form, aliases included. A key id or alias name means the caller's
    /// account; an ARN may name another account's key only for the actions AWS allows across
    /// accounts (authorization then decides).
    async fn resolve(&self, caller: &Caller, action: &str, key_ref: &KeyRef) -> Result<Key, KmsError> {
        let (region, account) = (caller.region.as_str(), caller.account.as_str());
        // The catalogue says which actions may reach another account's key (AWS's list).
        let reachable = |a: &str| a == account || crate::operation::cross_account_action(action);
        match key_ref {
            KeyRef::Id(id) => self.load_key(account, region, id).await,
            KeyRef::Arn { region: r, account: a, key_id } => {
                if r != region || !reachable(a) {
                    return Err(KmsError::NotFound(format!("Key '{}' does not exist", key_arn(r, a, &key_id.to_string()))));
                }
                self.load_key(a, r, key_id).await
            }
            KeyRef::Alias(name) => self.resolve_alias(account, region, name).await,
            KeyRef::AliasArn { region: r, account: a, alias_name } => {
                if r != region || !reachable(a) {
                    return Err(alias_not_found(r, a, alias_name));
                }
                self.resolve_alias(a, r, alias_name).await
            }
        }
    }

    /// Resolves a key id or key ARN without the key-level authorization, for the operations
    /// that decide access themselves (RetireGrant).
    pub(crate) async fn key_unauthorized(&self, caller: &Caller, action: &str, raw: &str) -> Result<Key, KmsError> {
        let key_ref = KeyRef::parse(raw, "keyId")?;
        if key_ref.is_alias() {
            return Err(KmsError::NotFound(format!("Invalid keyId '{raw}': this operation accepts a key id or key ARN, not an alias.")));
        }
        let key = self.resolve(caller, action, &key_ref).await?;
        caller.resources.add(&key.arn);
        Ok(key)
    }

    /// Resolves a `KeyId` member where AWS accepts aliases, and authorizes `access` on it.
    pub(crate) async fn key_for(&self, caller: &Caller, access: Access<'_>, key_id: Option<&str>, field: &str) -> Result<Key, KmsError> {
        let raw = validate::required(key_id, field)?;
        let key_ref = KeyRef::parse(raw, field)?;
        let key = self.resolve(caller, access.action, &key_ref).await?;
        self.authorize_key(caller, Access { request_alias: key_ref.alias_name(), ..access }, &key).await?;
        Ok(key)
    }

    /// Resolves a `KeyId` member where AWS accepts only a key id or key ARN, and authorizes
    /// `access` on it.
    pub(crate) async fn key_for_no_alias(
        &self,
        caller: &Caller,
        access: Access<'_>,
        key_id: Option<&str>,
        field: &str,
    ) -> Result<Key, KmsError> {
        let raw = validate::required(key_id, field)?;
        let key_ref = KeyRef::parse(raw, field)?;
        if key_ref.is_alias() {
            return Err(KmsError::NotFound(format!("Invalid keyId '{raw}': this operation accepts a key id or key ARN, not an alias.")));
        }
        let key = self.resolve(caller, access.action, &key_ref).await?;
        self.authorize_key(caller, access, &key).await?;
        Ok(key)
    }

    /// The key a ciphertext names, authorized for `access`, and checked against the request's
    /// optional `KeyId` (resolved and authorized first, before anything is said about the
    /// ciphertext's key). The blob may name another account's key: authorization decides. A
    /// blob naming a key that does not exist here (another region, account or deployment) is
    /// simply not a ciphertext this service can decrypt.
    pub(crate) async fn key_for_ciphertext(
        &self,
        caller: &Caller,
        access: Access<'_>,
        blob: &[u8],
        key_id: Option<&str>,
        key_field: &str,
    ) -> Result<Key, KmsError> {
        let requested = match key_id {
            Some(raw) => {
                let key_ref = KeyRef::parse(raw, key_field)?;
                let k = self.resolve(caller, access.action, &key_ref).await?;
                self.authorize_key(caller, Access { request_alias: key_ref.alias_name(), ..access }, &k).await?;
                Some(k)
            }
            None => None,
        };
        let header = crate::ciphertext::parse_header(blob)?;
        let key = match requested {
            Some(k) if k.id != header.key_id => return Err(KmsError::IncorrectKey),
            Some(k) => k,
            None => {
                let key = match self.store_key(&header.key_id).await? {
                    Some(k) if k.rec.region == caller.region.as_str() => k,
                    _ => {
                        return Err(KmsError::InvalidCiphertext(
                            "The ciphertext refers to a key that does not exist in this region, or was not produced by this service."
                                .into(),
                        ));
                    }
                };
                self.authorize_key(caller, access, &key).await?;
                key
            }
        };
        // A version newer than the cached record knows may have been made by another node.
        if header.version > key.rec.current_version { self.load_key_fresh(&key).await } else { Ok(key) }
    }

    /// The id of the key a reference resolves to, without authorizing anything: only to
    /// compare two references (`kms:ReEncryptOnSameKey`). `None` if it does not resolve.
    pub(crate) async fn key_id_of(&self, caller: &Caller, action: &str, key_ref: &KeyRef) -> Option<KeyId> {
        self.resolve(caller, action, key_ref).await.ok().map(|k| k.id)
    }

    /// The key an alias of the caller's account points to, authorized for `access`
    /// (`NotFoundException` if there is no such alias).
    pub(crate) async fn key_of_alias(&self, caller: &Caller, access: Access<'_>, alias_name: &str) -> Result<Key, KmsError> {
        let key = self.resolve_alias(caller.account.as_str(), caller.region.as_str(), alias_name).await?;
        self.authorize_key(caller, access, &key).await?;
        Ok(key)
    }
}
