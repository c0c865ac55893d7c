//! The grant step of key authorization: whether one of a key's grants allows a request its
//! key policy does not ([`Kms::grant_allows`]), and the grant a CreateGrant asks for as
//! policies and parent grants see it ([`GrantSpec`]).

use super::authz::{Access, role_operation};
use super::key::Key;
use crate::api::GrantConstraints;
use crate::{Caller, Kms, KmsError};
use std::collections::BTreeMap;

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

/// A grant's stored constraint for the grant check: `Ok(None)` when it has none, `Err` when the
/// text does not parse or names no constraint (CreateGrant never stores an empty one).
fn stored_constraints(json: Option<&str>) -> Result<Option<GrantConstraints>, ()> {
    let Some(text) = json else { return Ok(None) };
    match serde_json::from_str::<GrantConstraints>(text) {
        Ok(c) if c.encryption_context_equals.is_some() || c.encryption_context_subset.is_some() => Ok(Some(c)),
        _ => Err(()),
    }
}

/// The operations a constrained grant allows without an encryption context, as in AWS: they
/// take none, so the constraint does not apply (a grant made through a constrained grant must
/// carry the same constraint instead).
pub(crate) const UNCONSTRAINED_OPERATIONS: &[&str] = &["DescribeKey", "CreateGrant", "RetireGrant"];

/// Whether a request's encryption context meets a grant's constraints. Only the operations in
/// [`UNCONSTRAINED_OPERATIONS`] pass without a context; any other request without one (Sign,
/// GetPublicKey, GenerateMac, Decapsulate, ...) fails closed, so a constraint can never be
/// side-stepped by an operation that takes no context.
fn constraints_met(constraints: Option<&GrantConstraints>, action: &str, context: Option<&BTreeMap<String, String>>) -> bool {
    let Some(c) = constraints else { return true };
    let Some(ctx) = context else { return UNCONSTRAINED_OPERATIONS.contains(&action) };
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
                || (g.grantee_principal == caller.account.root_arn() && caller.role.allows(role_operation(access.action)));
            grantee_ok && ops.contains(&access.action) && constraints_met(constraints.as_ref(), access.action, context) && child_ok
        }))
    }
}
