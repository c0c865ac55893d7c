//! Grants: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant, and the
//! check that lets a grant allow a request its key's policy does not ([`Kms::grant_allows`]).
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
use crate::keys::Key;
use crate::paging::Page;
use crate::service::{Access, secs};
use crate::{Caller, Kms, KmsError, validate};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clavis_store::{GrantRecord, StoreError};
use std::collections::BTreeMap;

/// The most grants one key may have (AWS's quota).
const MAX_GRANTS_PER_KEY: usize = 50_000;

/// A grant being asked for, as policy conditions and parent grants see it.
#[derive(Debug, Clone)]
pub(crate) struct GrantSpec {
    pub operations: Vec<String>,
    pub grantee: String,
    pub retiring: Option<String>,
    pub constraints: Option<GrantConstraints>,
}

impl GrantSpec {
    /// The `kms:Grant*` condition keys of a CreateGrant request (lower-case names).
    pub fn condition_keys(&self) -> Vec<(String, Vec<String>)> {
        let mut keys = vec![
            ("kms:grantoperations".to_owned(), self.operations.clone()),
            ("kms:granteeprincipal".to_owned(), vec![self.grantee.clone()]),
        ];
        if let Some(r) = &self.retiring {
            keys.push(("kms:retiringprincipal".to_owned(), vec![r.clone()]));
        }
        if let Some(c) = &self.constraints {
            let kind = if c.encryption_context_equals.is_some() { "EncryptionContextEquals" } else { "EncryptionContextSubset" };
            keys.push(("kms:grantconstrainttype".to_owned(), vec![kind.to_owned()]));
        }
        keys
    }
}

/// A grant token: `v1.<grant id>.<random>` in unpadded base64url. Opaque to clients.
fn make_token(grant_id: &str) -> Result<String, KmsError> {
    let nonce = hex::encode(clavis_crypto::random::bytes(16)?);
    Ok(URL_SAFE_NO_PAD.encode(format!("v1.{grant_id}.{nonce}")))
}

/// The grant id inside a token Clavis issued, or `InvalidGrantTokenException`.
pub(crate) fn token_grant_id(token: &str) -> Result<String, KmsError> {
    let invalid = || KmsError::InvalidGrantToken("The grant token is not valid.".into());
    let text = URL_SAFE_NO_PAD.decode(token.as_bytes()).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(invalid)?;
    let mut parts = text.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("v1"), Some(id), Some(nonce), None) if is_grant_id(id) && nonce.len() == 32 => Ok(id.to_owned()),
        _ => Err(invalid()),
    }
}

fn is_grant_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

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

/// A grant's stored constraint for the grant check: `Ok(None)` when it has none, `Err` when the
/// text does not parse or names no constraint (CreateGrant never stores an empty one).
fn stored_constraints(json: Option<&str>) -> Result<Option<GrantConstraints>, ()> {
    let Some(text) = json else { return Ok(None) };
    match serde_json::from_str::<GrantConstraints>(text) {
        Ok(c) if c.encryption_context_equals.is_some() || c.encryption_context_subset.is_some() => Ok(Some(c)),
        _ => Err(()),
    }
}

/// Whether a request's encryption context meets a grant's constraints. Operations that take no
/// encryption context (DescribeKey, CreateGrant, RetireGrant) are not constrained, as in AWS;
/// a grant made through a constrained grant must carry the same constraint instead.
fn constraints_met(constraints: Option<&GrantConstraints>, context: Option<&BTreeMap<String, String>>) -> bool {
    let Some(c) = constraints else { return true };
    let Some(ctx) = context else { return true };
    if let Some(eq) = &c.encryption_context_equals
        && eq != ctx
    {
        return false;
    }
    if let Some(sub) = &c.encryption_context_subset
        && !sub.iter().all(|(k, v)| ctx.get(k) == Some(v))
    {
        return false;
    }
    true
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
    /// Whether one of the key's grants allows `access` to the caller: it names the caller (or
    /// its account), lists the action, and the request's encryption context meets its
    /// constraints. A grant that allows CreateGrant allows only grants for a subset of its own
    /// operations, with its own constraints.
    pub(crate) async fn grant_allows(&self, caller: &Caller, key: &Key, access: Access<'_>) -> Result<bool, KmsError> {
        // Only the grants that could match: those naming the caller or its account and listing
        // the action, by an indexed query, so a check costs the same however many grants other
        // principals hold on the key. The tests below stay as the rule itself.
        let account_root = caller.account.root_arn();
        let grantees = [caller.principal_arn.as_str(), account_root.as_str()];
        let grants = self.store.grants_for(&key.rec.key_id, &grantees, access.action).await?;
        let context = access.context.map(crate::types::EncryptionContext::as_map);
        Ok(grants.iter().any(|g| {
            let ops: Vec<&str> = g.operations.split(',').collect();
            let Ok(constraints) = stored_constraints(g.constraints.as_deref()) else {
                // Read as "no constraint", an unreadable constraint would widen the grant to
                // every encryption context: the grant matches nothing instead.
                tracing::warn!(grant = %g.grant_id, "a stored grant constraint no longer parses; the grant allows nothing");
                return false;
            };
            let child_ok = access.new_grant.is_none_or(|child| {
                child.operations.iter().all(|o| ops.contains(&o.as_str())) && (constraints.is_none() || child.constraints == constraints)
            });
            // A grant to the caller's account (its root) reaches the account's principals as a
            // key policy naming the account does: as far as their roles allow the action.
            let grantee_ok = g.grantee_principal == caller.principal_arn
                || (g.grantee_principal == caller.account.root_arn() && caller.role.allows(crate::service::role_operation(access.action)));
            grantee_ok && ops.contains(&access.action) && constraints_met(constraints.as_ref(), context) && child_ok
        }))
    }

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
        if req.dry_run == Some(true) {
            return Err(KmsError::DryRun);
        }
        let ops_text = operations.join(",");
        let constraints_text =
            spec.constraints.as_ref().map(serde_json::to_string).transpose().map_err(|e| KmsError::Internal(e.to_string()))?;
        let existing = self.store.list_grants(&key.rec.key_id).await?;
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
            created_ms: self.clock.now_ms(),
            token: make_token(&grant_id)?,
        };
        self.store.create_grant(&rec).await?;
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
            .store
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
        for g in self.store.list_retirable_grants(&retiring).await? {
            let arn = match self.store.get_key(&g.key_id).await? {
                Some(k) => crate::types::key_arn(&k.region, &k.account_id, &k.key_id),
                None => continue,
            };
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
                let id = token_grant_id(token)?;
                match self.store.get_grant(&id).await? {
                    Some(g) if g.token == *token => g,
                    _ => return Err(KmsError::InvalidGrantToken("The grant token is not valid or its grant no longer exists.".into())),
                }
            }
            (None, Some(key_id), Some(grant_id)) => self.grant_on_key(caller, "RetireGrant", key_id, grant_id, false).await?,
            _ => {
                return Err(KmsError::Validation("Specify either GrantToken, or both KeyId and GrantId.".into()));
            }
        };
        let key_account = match self.store.get_key(&grant.key_id).await? {
            Some(k) => {
                // The grant's key is the record's resource, however the grant was named.
                caller.resources.add(&crate::types::key_arn(&k.region, &k.account_id, &k.key_id));
                k.account_id
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
        if !is_grant_id(grant_id) {
            return Err(KmsError::InvalidGrantId(format!("Grant ID {grant_id} is not valid.")));
        }
        match self.store.get_grant(grant_id).await? {
            Some(g) if g.key_id == key.rec.key_id => Ok(g),
            _ => Err(KmsError::NotFound(format!("Grant ID {grant_id} does not exist on key {}.", key.arn))),
        }
    }

    async fn delete_grant(&self, grant_id: &str) -> Result<Empty, KmsError> {
        match self.store.delete_grant(grant_id).await {
            // Retired or revoked concurrently: the outcome the caller wanted.
            Ok(()) | Err(StoreError::NotFound) => Ok(Empty {}),
            Err(e) => Err(e.into()),
        }
    }
}
