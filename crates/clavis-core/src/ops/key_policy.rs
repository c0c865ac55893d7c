//! Key policies: PutKeyPolicy, GetKeyPolicy, ListKeyPolicies.

use crate::api::*;
use crate::kernel::{Access, LockoutKey, param};
use crate::operation::Operation;
use crate::policy::Policy;
use crate::{Caller, Kms, KmsError, validate};
use clavis_store::KeyRecord;

impl Kms {
    /// PutKeyPolicy: validates the document and refuses one that would lock the caller out
    /// (unless BypassPolicyLockoutSafetyCheck). In force on this node at once, on others within
    /// the key cache's lifetime (one second).
    pub async fn put_key_policy(&self, caller: &Caller, req: PutKeyPolicyRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::PutKeyPolicy)?;
        let name = req.policy_name.unwrap_or_else(|| "default".to_owned());
        validate::str_len(&name, "policyName", 1, 128)?;
        let doc = validate::required(req.policy, "policy")?;
        validate::str_len(&doc, "policy", 1, crate::policy::MAX_POLICY_BYTES)?;
        let params = [param("kms:BypassPolicyLockoutSafetyCheck", req.bypass_policy_lockout_safety_check.unwrap_or(false))];
        let access = Access::to("PutKeyPolicy").with_params(&params);
        let key = self.key_for_no_alias(caller, access, req.key_id.as_deref(), "keyId").await?;
        self.refuse_service_key(&key, "given another key policy").await?;
        if name != "default" {
            return Err(KmsError::NotFound(format!("Policy {name} does not exist on key {}", key.arn)));
        }
        let policy = Policy::parse(&doc)?;
        let (tags, aliases) = self.policy_facts(&policy, &key).await?;
        let facts = crate::policy::KeyFacts { key_spec: &key.rec.key_spec, key_usage: &key.rec.key_usage, origin: &key.rec.origin };
        let target = LockoutKey { arn: &key.arn, facts, tags: &tags, aliases: &aliases };
        self.lockout_check(caller, &policy, target, req.bypass_policy_lockout_safety_check)?;
        self.update_key(key, |k| Ok(Some(KeyRecord { policy: doc.clone(), ..(*k.rec).clone() }))).await?;
        Ok(Empty {})
    }

    /// GetKeyPolicy.
    pub async fn get_key_policy(&self, caller: &Caller, req: GetKeyPolicyRequest) -> Result<GetKeyPolicyResponse, KmsError> {
        self.authorize(caller, Operation::GetKeyPolicy)?;
        let name = req.policy_name.unwrap_or_else(|| "default".to_owned());
        validate::str_len(&name, "policyName", 1, 128)?;
        let key = self.key_for_no_alias(caller, Access::to("GetKeyPolicy"), req.key_id.as_deref(), "keyId").await?;
        if name != "default" {
            return Err(KmsError::NotFound(format!("Policy {name} does not exist on key {}", key.arn)));
        }
        Ok(GetKeyPolicyResponse { policy: key.rec.policy.clone(), policy_name: name })
    }

    /// ListKeyPolicies (always `["default"]`, as in AWS).
    pub async fn list_key_policies(&self, caller: &Caller, req: ListForKeyRequest) -> Result<ListKeyPoliciesResponse, KmsError> {
        self.authorize(caller, Operation::ListKeyPolicies)?;
        validate::limit(req.limit, 100, 1000)?;
        validate::marker(req.marker.as_deref())?;
        self.key_for_no_alias(caller, Access::to("ListKeyPolicies"), req.key_id.as_deref(), "keyId").await?;
        Ok(ListKeyPoliciesResponse { policy_names: vec!["default".to_owned()], truncated: false })
    }
}
