//! Grants: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant. The check
//! that lets a grant allow a request its key's policy does not is the kernel's
//! (`kernel::grant_check`).
//!
//! Grants are read from storage on every check (no cache), so a grant is in force on every node
//! the moment CreateGrant returns and gone the moment RetireGrant or RevokeGrant returns. A grant
//! token therefore never needs to wait for propagation; Clavis checks that each token it is given
//! is one it could have issued (`InvalidGrantTokenException` otherwise) and honours it at once.
//!
//! A check reads only the grants that name the caller (or its account) and list the action
//! (`GrantStore::grants_for`, indexed on key and grantee; the operation is matched in the same query
//! on those few rows), never all of the key's grants: with thousands of grants to other
//! principals, a check, allowed or refused, costs what it costs with one.

use crate::api::*;
use crate::kernel::{Access, GrantSpec, Key};
use crate::paging::Page;
use crate::types::secs;
use crate::types::{KeySpec, KeyUsage};
use crate::{Caller, Kms, KmsError, validate};
use clavis_store::{GrantRecord, StoreError};

/// The most grants one key may have (AWS's quota).
const MAX_GRANTS_PER_KEY: usize = 50_000;

/// A principal a grant may name: an IAM user, role or account root ARN, or a 12-digit account.
fn principal(v: Option<String>, field: &str) -> Result<Option<String>, KmsError> {
    let Some(p) = v else { return Ok(None) };
    validate::str_len(&p, field, 1, 256)?;
    let valid = crate::policy::Policy::parse(
        &serde_json::json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": p}, "Action": "kms:*", "Resource": "*"}}).to_string(),
    )
    .is_ok()
        && p != "*";
    if !valid {
        return Err(KmsError::validation(format!(
            "Value '{p}' at '{field}' failed to satisfy constraint: Member must be an IAM principal ARN (arn:aws:iam::<account>:user/<name>, :role/<name> or :root)"
        )));
    }
    // A bare account id names the account root.
    Ok(Some(if p.len() == 12 { format!("arn:aws:iam::{p}:root") } else { p }))
}

/// Whether `principal` (a grant's grantee or retiring principal) names the caller: its ARN, or
/// the root of its account (which stands for every principal of the account).
fn names_caller(principal: &str, caller: &Caller) -> bool {
    principal == caller.principal_arn || principal == caller.account.root_arn()
}

fn parse_constraints(json: Option<&str>) -> Option<GrantConstraints> {
    json.and_then(|j| serde_json::from_str(j).ok())
}

/// Whether a grant operation is one the key can do (AWS refuses the others at CreateGrant).
fn grant_operation_fits(op: &str, key: &Key) -> bool {
    let symmetric = key.spec == KeySpec::SymmetricDefault;
    match op {
        "DescribeKey" | "CreateGrant" | "RetireGrant" => true,
        "Encrypt" | "Decrypt" | "ReEncryptFrom" | "ReEncryptTo" => key.usage == KeyUsage::EncryptDecrypt,
        "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" | "GenerateDataKeyPair" | "GenerateDataKeyPairWithoutPlaintext" => symmetric,
        "Sign" | "Verify" => key.usage == KeyUsage::SignVerify,
        "GetPublicKey" => key.spec.is_asymmetric(),
        "GenerateMac" | "VerifyMac" => key.usage == KeyUsage::GenerateVerifyMac,
        "DeriveSharedSecret" => key.usage == KeyUsage::KeyAgreement,
        "Encapsulate" | "Decapsulate" => key.usage == KeyUsage::EncapsulateDecapsulate,
        _ => false,
    }
}

fn entry(g: GrantRecord, key_arn: String) -> GrantListEntry {
    let issuing_account = g.issuing_principal.split(':').nth(4).map(|a| format!("arn:aws:iam::{a}:root")).unwrap_or_default();
    GrantListEntry {
        key_id: key_arn,
        constraints: parse_constraints(g.constraints.as_deref()),
        operations: g.operations.split(',').filter(|o| !o.is_empty()).map(str::to_owned).collect(),
        grant_id: g.grant_id,
        name: g.name,
        creation_date: secs(g.created_ms),
        grantee_principal: g.grantee_principal,
        retiring_principal: g.retiring_principal,
        issuing_account,
    }
}

/// One page of grants: those after `marker` (a grant id), at most `limit`.
fn page(grants: Vec<GrantListEntry>, marker: Option<&str>, limit: usize) -> Result<ListGrantsResponse, KmsError> {
    let start = match marker {
        None => 0,
        Some(m) => grants.iter().position(|g| g.grant_id == m).map(|i| i + 1).ok_or(KmsError::InvalidMarker)?,
    };
    let rest: Vec<GrantListEntry> = grants.into_iter().skip(start).collect();
    let Page { items, next_marker, truncated } = Page::cut(rest, limit, |g| g.grant_id.clone());
    Ok(ListGrantsResponse { grants: items, next_marker, truncated })
}

impl Kms {
    /// CreateGrant.
    pub async fn create_grant(&self, caller: &Caller, req: CreateGrantRequest) -> Result<CreateGrantResponse, KmsError> {
        self.authorize(caller, crate::Operation::CreateGrant)?;
        let grantee = principal(req.grantee_principal, "granteePrincipal")?.ok_or_else(|| {
            KmsError::validation("Value null at 'granteePrincipal' failed to satisfy constraint: Member must not be null")
        })?;
        let retiring = principal(req.retiring_principal, "retiringPrincipal")?;
        let operations = validate::required(req.operations, "operations")?;
        if operations.is_empty() {
            return Err(KmsError::validation(
                "Value '[]' at 'operations' failed to satisfy constraint: Member must have length greater than or equal to 1",
            ));
        }
        for op in &operations {
            validate::one_of(op, "operations.member", &crate::operation::grant_operations())?;
        }
        let mut operations = operations;
        operations.sort();
        operations.dedup();
        if let Some(name) = &req.name {
            validate::str_len(name, "name", 1, 256)?;
            if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b":/_-".contains(&b)) {
                return Err(KmsError::validation(format!(
                    "Value '{name}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
                )));
            }
        }
        let constraints = match req.constraints {
            Some(c) if c.encryption_context_equals.is_some() && c.encryption_context_subset.is_some() => {
                return Err(KmsError::Validation(
                    "A grant can have only one constraint: EncryptionContextEquals or EncryptionContextSubset.".into(),
                ));
            }
            Some(c) if c.encryption_context_equals.is_none() && c.encryption_context_subset.is_none() => None,
            other => other,
        };
        for map in constraints.iter().flat_map(|c| [&c.encryption_context_equals, &c.encryption_context_subset]).flatten() {
            crate::types::EncryptionContext::parse(Some(map.clone()), "constraints")?;
        }
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        let spec = GrantSpec { operations: operations.clone(), grantee: grantee.clone(), retiring: retiring.clone(), constraints };
        let access = Access { new_grant: Some(&spec), ..Access::to("CreateGrant") };
        let key = self.key_for_no_alias(caller, access, req.key_id.as_deref(), "keyId").await?;
        if key.state == crate::types::KeyState::PendingDeletion {
            return Err(key.invalid_state(key.state));
        }
        if let Some(op) = operations.iter().find(|op| !grant_operation_fits(op, &key)) {
            return Err(KmsError::Validation(format!(
                "Grant operation {op} is not valid for {} (key spec {}, key usage {}).",
                key.arn,
                key.spec.as_str(),
                key.usage.as_str()
            )));
        }
        if spec.constraints.is_some() && key.spec != KeySpec::SymmetricDefault {
            // AWS: "You cannot use an encryption context grant constraint for cryptographic
            // operations with asymmetric KMS keys or HMAC KMS keys."
            return Err(KmsError::Validation(format!(
                "Encryption context grant constraints are valid only on symmetric encryption KMS keys, not on {} (key spec {}).",
                key.arn,
                key.spec.as_str()
            )));
        }
        if req.dry_run == Some(true) {
            return Err(KmsError::DryRun);
        }
        let ops_text = operations.join(",");
        let constraints_text =
            spec.constraints.as_ref().map(serde_json::to_string).transpose().map_err(|e| KmsError::Internal(e.to_string()))?;
        let existing = self.grant_store().list_grants(&key.rec.key_id).await?;
        // Same name and same parameters: the same grant (CreateGrant is idempotent by name).
        if req.name.is_some()
            && let Some(g) = existing.iter().find(|g| {
                g.name == req.name
                    && g.issuing_principal == caller.principal_arn
                    && g.grantee_principal == grantee
                    && g.retiring_principal == retiring
                    && g.operations == ops_text
                    && g.constraints == constraints_text
            })
        {
            return Ok(CreateGrantResponse { grant_token: g.token.clone(), grant_id: g.grant_id.clone() });
        }
        if existing.len() >= MAX_GRANTS_PER_KEY {
            return Err(KmsError::LimitExceeded(format!("The key {} has the maximum number of grants ({MAX_GRANTS_PER_KEY}).", key.arn)));
        }
        let grant_id = hex::encode(clavis_crypto::random::bytes(32)?);
        let rec = GrantRecord {
            grant_id: grant_id.clone(),
            key_id: key.rec.key_id.clone(),
            name: req.name,
            grantee_principal: grantee,
            retiring_principal: retiring,
            operations: ops_text,
            constraints: constraints_text,
            issuing_principal: caller.principal_arn.clone(),
            created_ms: self.now_ms(),
            token: crate::types::make_grant_token(&grant_id)?,
        };
        self.grant_store().create_grant(&rec).await?;
        Ok(CreateGrantResponse { grant_token: rec.token, grant_id })
    }

    /// ListGrants: the grants of one key.
    pub async fn list_grants(&self, caller: &Caller, req: ListGrantsRequest) -> Result<ListGrantsResponse, KmsError> {
        self.authorize(caller, crate::Operation::ListGrants)?;
        let limit = validate::limit(req.limit, 50, 100)?;
        let marker = validate::marker(req.marker.as_deref())?;
        if let Some(id) = &req.grant_id {
            validate::str_len(id, "grantId", 1, 128)?;
        }
        if let Some(p) = &req.grantee_principal {
            validate::str_len(p, "granteePrincipal", 1, 256)?;
        }
        let key = self.key_for_no_alias(caller, Access::to("ListGrants"), req.key_id.as_deref(), "keyId").await?;
        let grants = self
            .grant_store()
            .list_grants(&key.rec.key_id)
            .await?
            .into_iter()
            .filter(|g| req.grant_id.as_ref().is_none_or(|id| *id == g.grant_id))
            .filter(|g| req.grantee_principal.as_ref().is_none_or(|p| *p == g.grantee_principal))
            .map(|g| entry(g, key.arn.clone()))
            .collect();
        page(grants, marker, limit)
    }

    /// ListRetirableGrants: the grants naming a principal of the caller's account as retiring
    /// principal.
    pub async fn list_retirable_grants(&self, caller: &Caller, req: ListRetirableGrantsRequest) -> Result<ListGrantsResponse, KmsError> {
        self.authorize(caller, crate::Operation::ListRetirableGrants)?;
        let limit = validate::limit(req.limit, 50, 100)?;
        let marker = validate::marker(req.marker.as_deref())?;
        let retiring = principal(req.retiring_principal, "retiringPrincipal")?.ok_or_else(|| {
            KmsError::validation("Value null at 'retiringPrincipal' failed to satisfy constraint: Member must not be null")
        })?;
        if retiring.split(':').nth(4) != Some(caller.account.as_str()) {
            return Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: kms:ListRetirableGrants for principal {retiring} of another account",
                caller.principal_arn
            )));
        }
        let mut out = Vec::new();
        for g in self.grant_store().list_retirable_grants(&retiring).await? {
            let Some((arn, _)) = self.key_home(&g.key_id).await? else { continue };
            out.push(entry(g, arn));
        }
        page(out, marker, limit)
    }

    /// RetireGrant, by grant token or by key and grant id. Allowed to the grant's retiring
    /// principal, to its grantee when RetireGrant is one of its operations, and to an
    /// administrator of the account that issued it or of the key's account.
    pub async fn retire_grant(&self, caller: &Caller, req: RetireGrantRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, crate::Operation::RetireGrant)?;
        let grant = match (&req.grant_token, &req.key_id, &req.grant_id) {
            (Some(token), None, None) => {
                validate::str_len(token, "grantToken", 1, 8192)?;
                let id = crate::types::grant_token_id(token)?;
                match self.grant_store().get_grant(&id).await? {
                    Some(g) if g.token == *token => g,
                    _ => return Err(KmsError::InvalidGrantToken("The grant token is not valid or its grant no longer exists.".into())),
                }
            }
            (None, Some(key_id), Some(grant_id)) => self.grant_on_key(caller, "RetireGrant", key_id, grant_id, false).await?,
            _ => {
                return Err(KmsError::Validation("Specify either GrantToken, or both KeyId and GrantId.".into()));
            }
        };
        let key_account = match self.key_home(&grant.key_id).await? {
            Some((arn, account)) => {
                // The grant's key is the record's resource, however the grant was named.
                caller.resources.add(&arn);
                account
            }
            None => return Err(KmsError::NotFound(format!("Grant {} does not exist.", grant.grant_id))),
        };
        // AWS: the retiring principal, the grantee when RetireGrant is a grant operation, or the
        // account that created the grant (here: its administrators; the key owner's too).
        let issuing_account = grant.issuing_principal.split(':').nth(4).unwrap_or_default();
        let allowed = grant.retiring_principal.as_deref().is_some_and(|r| names_caller(r, caller))
            || (names_caller(&grant.grantee_principal, caller) && grant.operations.split(',').any(|o| o == "RetireGrant"))
            || (caller.role.is_admin() && (caller.account.as_str() == key_account || caller.account.as_str() == issuing_account));
        if !allowed {
            return Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: kms:RetireGrant on grant {}: it is neither the retiring principal nor a grantee allowed to retire it",
                caller.principal_arn, grant.grant_id
            )));
        }
        if req.dry_run == Some(true) {
            return Err(KmsError::DryRun);
        }
        self.delete_grant(&grant.grant_id).await
    }

    /// RevokeGrant.
    pub async fn revoke_grant(&self, caller: &Caller, req: RevokeGrantRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, crate::Operation::RevokeGrant)?;
        let key_id = validate::required(req.key_id.as_deref(), "keyId")?;
        let grant_id = validate::required(req.grant_id.as_deref(), "grantId")?;
        let grant = self.grant_on_key(caller, "RevokeGrant", key_id, grant_id, true).await?;
        if req.dry_run == Some(true) {
            return Err(KmsError::DryRun);
        }
        self.delete_grant(&grant.grant_id).await
    }

    /// The grant `grant_id` of the key `key_id` names; the key-level authorization of `action`
    /// is checked when `authorize` is set.
    async fn grant_on_key(
        &self,
        caller: &Caller,
        action: &'static str,
        key_id: &str,
        grant_id: &str,
        authorize: bool,
    ) -> Result<GrantRecord, KmsError> {
        validate::str_len(grant_id, "grantId", 1, 128)?;
        let key = if authorize {
            self.key_for_no_alias(caller, Access::to(action), Some(key_id), "keyId").await?
        } else {
            self.key_unauthorized(caller, action, key_id).await?
        };
        if !crate::types::is_grant_id(grant_id) {
            return Err(KmsError::InvalidGrantId(format!("Grant ID {grant_id} is not valid.")));
        }
        match self.grant_store().get_grant(grant_id).await? {
            Some(g) if g.key_id == key.rec.key_id => Ok(g),
            _ => Err(KmsError::NotFound(format!("Grant ID {grant_id} does not exist on key {}.", key.arn))),
        }
    }

    async fn delete_grant(&self, grant_id: &str) -> Result<Empty, KmsError> {
        match self.grant_store().delete_grant(grant_id).await {
            // Retired or revoked concurrently: the outcome the caller wanted.
            Ok(()) | Err(StoreError::NotFound) => Ok(Empty {}),
            Err(e) => Err(e.into()),
        }
    }
}
