//! Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases.

use crate::api::*;
use crate::kernel::{Access, Key, alias_not_found};
use crate::operation::Operation;
use crate::paging::{self, Page};
use crate::types::{AliasName, KeyState, alias_arn, secs};
use crate::{Caller, Kms, KmsError, validate};
use clavis_store::{AliasRecord, StoreError};

impl Kms {
    async fn alias_target(&self, caller: &Caller, action: &'static str, target: Option<&str>) -> Result<Key, KmsError> {
        let key = self.key_for_no_alias(caller, Access::to(action), target, "targetKeyId").await?;
        if key.state == KeyState::PendingDeletion {
            return Err(key.invalid_state(key.state));
        }
        Ok(key)
    }

    /// Authorizes `action` on the key an existing alias of the caller's account points to
    /// (`NotFoundException` if there is no such alias).
    async fn authorize_alias_target(&self, caller: &Caller, action: &'static str, alias_name: &str) -> Result<(), KmsError> {
        self.key_of_alias(caller, Access::to(action), alias_name).await.map(|_| ())
    }

    /// CreateAlias.
    pub async fn create_alias(&self, caller: &Caller, req: AliasTargetRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::CreateAlias)?;
        let name = AliasName::parse(validate::required(req.alias_name.as_deref(), "aliasName")?, "aliasName")?;
        let key = self.alias_target(caller, "CreateAlias", req.target_key_id.as_deref()).await?;
        let now = self.now_ms();
        let rec = AliasRecord {
            account_id: caller.account.as_str().to_owned(),
            region: caller.region.as_str().to_owned(),
            alias_name: name.as_str().to_owned(),
            target_key_id: key.rec.key_id.clone(),
            creation_date_ms: now,
            last_updated_date_ms: now,
        };
        match self.aliases().create_alias(&rec).await {
            Ok(()) => Ok(Empty {}),
            Err(StoreError::AlreadyExists) => Err(KmsError::AlreadyExists(format!(
                "An alias with the name {} already exists",
                alias_arn(&rec.region, &rec.account_id, &rec.alias_name)
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// UpdateAlias.
    pub async fn update_alias(&self, caller: &Caller, req: AliasTargetRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::UpdateAlias)?;
        let name = AliasName::parse(validate::required(req.alias_name.as_deref(), "aliasName")?, "aliasName")?;
        let key = self.alias_target(caller, "UpdateAlias", req.target_key_id.as_deref()).await?;
        let (region, account) = (caller.region.as_str(), caller.account.as_str());
        // AWS needs kms:UpdateAlias on the key the alias leaves too: otherwise a key's policy could
        // be escaped by pointing its alias at a key the caller controls.
        self.authorize_alias_target(caller, "UpdateAlias", name.as_str()).await?;
        match self.aliases().update_alias(account, region, name.as_str(), &key.rec.key_id, self.now_ms()).await {
            Ok(()) => Ok(Empty {}),
            Err(StoreError::NotFound) => Err(alias_not_found(region, account, name.as_str())),
            Err(e) => Err(e.into()),
        }
    }

    /// DeleteAlias.
    pub async fn delete_alias(&self, caller: &Caller, req: DeleteAliasRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::DeleteAlias)?;
        let name = AliasName::parse(validate::required(req.alias_name.as_deref(), "aliasName")?, "aliasName")?;
        let (region, account) = (caller.region.as_str(), caller.account.as_str());
        self.authorize_alias_target(caller, "DeleteAlias", name.as_str()).await?;
        match self.aliases().delete_alias(account, region, name.as_str()).await {
            Ok(()) => Ok(Empty {}),
            Err(StoreError::NotFound) => Err(alias_not_found(region, account, name.as_str())),
            Err(e) => Err(e.into()),
        }
    }

    /// ListAliases, for the account and region or for one key.
    pub async fn list_aliases(&self, caller: &Caller, req: ListAliasesRequest) -> Result<ListAliasesResponse, KmsError> {
        self.authorize(caller, Operation::ListAliases)?;
        let limit = validate::limit(req.limit, 50, 100)?;
        let marker = validate::marker(req.marker.as_deref())?;
        if marker.is_some_and(|m| !m.starts_with("alias/")) {
            return Err(KmsError::InvalidMarker);
        }
        let key_filter = match req.key_id.as_deref() {
            Some(raw) => Some(self.key_for_no_alias(caller, Access::to("ListAliases"), Some(raw), "keyId").await?.rec.key_id.clone()),
            None => None,
        };
        let (region, account) = (caller.region.as_str(), caller.account.as_str());
        let recs = self.aliases().list_aliases(account, region, key_filter.as_deref(), marker, paging::fetch_len(limit)).await?;
        let Page { items, next_marker, truncated } = Page::cut(recs, limit, |a| a.alias_name.clone());
        let aliases = items
            .into_iter()
            .map(|a| AliasListEntry {
                alias_arn: alias_arn(&a.region, &a.account_id, &a.alias_name),
                alias_name: a.alias_name,
                target_key_id: a.target_key_id,
                creation_date: secs(a.creation_date_ms),
                last_updated_date: secs(a.last_updated_date_ms),
            })
            .collect();
        Ok(ListAliasesResponse { aliases, next_marker, truncated })
    }
}
