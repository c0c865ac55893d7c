//! Authorization: the identity step ([`Kms::authorize`], the caller's role as its IAM policy)
//! and the key step ([`Kms::authorize_key`], AWS's evaluation of key policy, role and grants),
//! the operator-account rule, and the policy lockout check.

use super::key::Key;
use crate::operation::Operation;
use crate::policy::Policy;
use crate::types::{EncryptionContext, SYMMETRIC_DEFAULT};
use crate::{Caller, Kms, KmsError, validate};

/// What a request does with a key, for the key-level authorization ([`Kms::authorize_key`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Access<'a> {
    /// The policy action without its `kms:` prefix (`Encrypt`, `ReEncryptFrom`, ...).
    pub action: &'static str,
    /// The request's encryption context, for the operations that take one.
    pub context: Option<&'a EncryptionContext>,
    /// For CreateGrant: the grant asked for, which policy conditions and parent grants test.
    pub new_grant: Option<&'a super::grant_check::GrantSpec>,
    /// The alias the request named the key by, as `alias/<name>` (`kms:RequestAlias`). Set by
    /// the key resolvers, not by the operations.
    pub request_alias: Option<&'a str>,
    /// Condition keys that come from the operation's parameters (lower-case names), such as
    /// `kms:rotationperiodindays`.
    pub params: &'a [(String, Vec<String>)],
}

impl<'a> Access<'a> {
    /// An action with no encryption context.
    pub fn to(action: &'static str) -> Access<'static> {
        Access { action, context: None, new_grant: None, request_alias: None, params: &[] }
    }

    /// An action with the request's encryption context.
    pub fn with_context(action: &'static str, context: &'a EncryptionContext) -> Access<'a> {
        Access { context: Some(context), ..Access::to(action) }
    }

    /// The same access, with condition keys from the operation's parameters.
    pub fn with_params(self, params: &'a [(String, Vec<String>)]) -> Access<'a> {
        Access { params, ..self }
    }
}

/// One condition key of an operation's parameters, for [`Access::with_params`].
pub(crate) fn param(name: &str, value: impl ToString) -> (String, Vec<String>) {
    (name.to_ascii_lowercase(), vec![value.to_string()])
}

/// The `aws:RequestTag/<key>` and `aws:TagKeys` condition keys of a request that sets tags.
pub(crate) fn request_tag_params<'a>(tags: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<(String, Vec<String>)> {
    let mut keys = Vec::new();
    let mut params = Vec::new();
    for (k, v) in tags {
        params.push((format!("aws:requesttag/{}", k.to_ascii_lowercase()), vec![v.to_owned()]));
        keys.push(k.to_owned());
    }
    params.push(("aws:tagkeys".to_owned(), keys));
    params
}

/// The actions whose requests carry `kms:EncryptionAlgorithm`. An operation that uses another
/// algorithm than `SYMMETRIC_DEFAULT` (RSA-OAEP) passes it as a parameter; otherwise the value
/// is `SYMMETRIC_DEFAULT`, as AWS gives it when the request omits it.
const ENCRYPTION_ALGORITHM_ACTIONS: &[&str] = &[
    "Encrypt",
    "Decrypt",
    "ReEncryptFrom",
    "ReEncryptTo",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
];

/// The role operation that stands for a policy action (a role allows `ReEncrypt` as a whole).
pub(crate) fn role_operation(action: &str) -> &str {
    match action {
        "ReEncryptFrom" | "ReEncryptTo" => "ReEncrypt",
        other => other,
    }
}

/// The key a policy lockout check is about: an existing key (PutKeyPolicy) or the one being
/// created (CreateKey), with the facts its policy may test.
pub(crate) struct LockoutKey<'a> {
    pub arn: &'a str,
    pub facts: crate::policy::KeyFacts<'a>,
    pub tags: &'a [(String, String)],
    pub aliases: &'a [String],
}
impl Kms {
    /// Whether the caller belongs to the operator's account (the one made at first start).
    pub(crate) async fn in_operator_account(&self, caller: &Caller) -> Result<bool, KmsError> {
        Ok(self.account_id().await?.as_ref() == Some(&caller.account))
    }

    /// Refuses `op` to a caller outside the operator's account. For work whose effect is the
    /// whole deployment's (sealing, the master key, accounts, the test clock), which even an
    /// administrator of another account must not do; the role check (`authorize`) comes first.
    /// `what` ends the message: "only the operator's account can {what}".
    pub(crate) async fn require_operator_account(&self, caller: &Caller, op: Operation, what: &str) -> Result<(), KmsError> {
        if self.in_operator_account(caller).await? {
            return Ok(());
        }
        Err(KmsError::AccessDenied(format!(
            "User: {} is not authorized to perform: clavis:{} because only the operator's account can {what}",
            caller.principal_arn,
            op.name()
        )))
    }

    /// The identity step of every operation, where the caller's role plays the part of AWS's
    /// identity-based (IAM) policy. An operation that is not on a key (CreateKey, ListKeys,
    /// ListAliases, GenerateRandom, the alias operations, `ClavisAdmin.*`) needs the role to
    /// allow it. An operation on a key ([`KEY_OPERATIONS`]) is not refused here: the key's
    /// policy may name the caller, or a grant may allow it, whatever its role, so the role is
    /// weighed with them in [`Kms::authorize_key`].
    pub(crate) fn authorize(&self, caller: &Caller, operation: Operation) -> Result<(), KmsError> {
        if operation.on_key() || caller.role.allows_operation(operation) {
            return Ok(());
        }
        let (service, name) = (operation.family().service(), operation.name());
        Err(KmsError::AccessDenied(format!(
            "User: {} is not authorized to perform: {service}:{name} because no identity-based policy allows the {service}:{name} action",
            caller.principal_arn
        )))
    }

    /// The key step, for an operation on a key, after the key is resolved and before its state
    /// is looked at (as AWS does). AWS's evaluation logic, with the caller's role as its
    /// identity-based policy:
    ///
    /// 1. a `Deny` in the key's policy that matches refuses (so does an unreadable stored policy);
    /// 2. an `Allow` that names the caller itself (its ARN, or `"*"`) allows;
    /// 3. an `Allow` that names the caller's account (its root, or the bare id) allows when the
    ///    caller's role allows the action: the account delegates to its identities;
    /// 4. otherwise a grant to the caller (or, with its role's consent, to its account) allows;
    /// 5. otherwise refused.
    pub(crate) async fn authorize_key(&self, caller: &Caller, access: Access<'_>, key: &Key) -> Result<(), KmsError> {
        use crate::policy::Decision;
        // Every key a request is authorized against is one of its record's resources, refused
        // or not (so a key's owner sees another account's refused attempts on it).
        caller.resources.add(&key.arn);
        let action = format!("kms:{}", access.action);
        let refusal = |why: &str| {
            KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: {action} on resource: {} {why}",
                caller.principal_arn, key.arn
            ))
        };
        if key.policy.is_unreadable() {
            tracing::warn!(key = %key.arn, "the key's stored policy no longer parses; every request on the key is refused");
            return Err(refusal(
                "with an explicit deny in a resource-based policy (the key's stored policy is not a valid policy document, and an unreadable policy denies every request)",
            ));
        }
        let mut extra = access.new_grant.map(super::grant_check::GrantSpec::condition_keys).unwrap_or_default();
        extra.extend(access.params.iter().cloned());
        // An operation that takes an algorithm other than the default passes it as a parameter.
        if ENCRYPTION_ALGORITHM_ACTIONS.contains(&access.action) && !extra.iter().any(|(k, _)| k == "kms:encryptionalgorithm") {
            extra.push(param("kms:EncryptionAlgorithm", SYMMETRIC_DEFAULT));
        }
        if matches!(access.action, "CreateGrant" | "ListGrants" | "RevokeGrant") {
            // Only an AWS service acting for a principal makes this true; Clavis has none.
            extra.push(param("kms:GrantIsForAWSResource", false));
        }
        let (tags, aliases) = self.policy_facts(&key.policy, key).await?;
        let ctx = self.request_context(caller, &action, key, &tags, &aliases, &extra, access);
        match key.policy.evaluate(&ctx) {
            Decision::ExplicitDeny => Err(refusal("with an explicit deny in a resource-based policy")),
            Decision::AllowPrincipal => Ok(()),
            Decision::AllowAccount if caller.role.allows(role_operation(access.action)) => Ok(()),
            decision => {
                if self.grant_allows(caller, key, access).await? {
                    return Ok(());
                }
                Err(refusal(&if decision == Decision::AllowAccount {
                    format!("because no identity-based policy allows the {action} action")
                } else {
                    format!("because no resource-based policy allows the {action} action")
                }))
            }
        }
    }

    /// The facts of a request that a key policy can test.
    #[allow(clippy::too_many_arguments)] // Each is a distinct fact; a builder would only rename them.
    fn request_context<'a>(
        &self,
        caller: &'a Caller,
        action: &'a str,
        key: &'a Key,
        tags: &'a [(String, String)],
        aliases: &'a [String],
        extra: &'a [(String, Vec<String>)],
        access: Access<'a>,
    ) -> crate::policy::RequestContext<'a> {
        crate::policy::RequestContext {
            principal_arn: &caller.principal_arn,
            principal_account: caller.account.as_str(),
            action,
            resource: &key.arn,
            encryption_context: access.context.map(EncryptionContext::as_map),
            source_ip: caller.source_ip,
            secure_transport: caller.secure_transport,
            now_ms: self.clock.now_ms(),
            key: Some(crate::policy::KeyFacts { key_spec: &key.rec.key_spec, key_usage: &key.rec.key_usage, origin: &key.rec.origin }),
            resource_tags: tags,
            resource_aliases: aliases,
            request_alias: access.request_alias,
            extra,
        }
    }

    /// The key's tags and alias names, read from the store only when `policy` tests them
    /// (`aws:ResourceTag/...`, `kms:ResourceAliases`), so that other requests pay nothing.
    pub(crate) async fn policy_facts(&self, policy: &Policy, key: &Key) -> Result<(Vec<(String, String)>, Vec<String>), KmsError> {
        let tags = if policy.tests_condition_key("aws:resourcetag/") {
            let tags = self.store.list_tags(&key.rec.key_id, None, validate::MAX_TAGS_PER_KEY + 1).await?;
            tags.into_iter().map(|t| (t.key, t.value)).collect()
        } else {
            Vec::new()
        };
        let aliases = if policy.tests_condition_key("kms:resourcealiases") {
            let list = self.store.list_aliases(&key.rec.account_id, &key.rec.region, Some(&key.rec.key_id), None, 10_000).await?;
            list.into_iter().map(|a| a.alias_name).collect()
        } else {
            Vec::new()
        };
        Ok((tags, aliases))
    }

    /// Refuses a policy under which the caller could not change the policy again (AWS's
    /// "policy lockout safety check"), unless the caller bypasses the check. The rule is
    /// [`Kms::authorize_key`]'s for a later PutKeyPolicy by the same caller: no `Deny`, and an
    /// `Allow` naming the caller, or naming its account while its role allows PutKeyPolicy
    /// (grants cannot allow PutKeyPolicy).
    pub(crate) fn lockout_check(
        &self,
        caller: &Caller,
        policy: &Policy,
        key: LockoutKey<'_>,
        bypass: Option<bool>,
    ) -> Result<(), KmsError> {
        if bypass == Some(true) {
            return Ok(());
        }
        let extra = [param("kms:BypassPolicyLockoutSafetyCheck", false)];
        let ctx = crate::policy::RequestContext {
            principal_arn: &caller.principal_arn,
            principal_account: caller.account.as_str(),
            action: "kms:PutKeyPolicy",
            resource: key.arn,
            encryption_context: None,
            source_ip: caller.source_ip,
            secure_transport: caller.secure_transport,
            now_ms: self.clock.now_ms(),
            key: Some(key.facts),
            resource_tags: key.tags,
            resource_aliases: key.aliases,
            request_alias: None,
            extra: &extra,
        };
        let allowed = match policy.evaluate(&ctx) {
            crate::policy::Decision::AllowPrincipal => true,
            crate::policy::Decision::AllowAccount => caller.role.allows("PutKeyPolicy"),
            crate::policy::Decision::ExplicitDeny | crate::policy::Decision::NotApplicable => false,
        };
        if allowed {
            return Ok(());
        }
        Err(KmsError::MalformedPolicyDocument("The new key policy will not allow you to update the key policy in the future.".into()))
    }
}
