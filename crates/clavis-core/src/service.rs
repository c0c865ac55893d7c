//! The operations. Each public method is one AWS KMS operation: validate the request shape into
//! domain types, resolve the key, apply the state rules, do the work through the traits, and
//! build the response shape.

use crate::api::*;
use crate::audit::{self, AuditSink};
use crate::ciphertext::{self, Header};
use crate::keys::{Key, KeyCache, MaterialCache, access_key_seal_context, material_seal_context};
use crate::operation::Operation;
use crate::paging::{self, Page};
use crate::policy::Policy;
use crate::types::{
    AccountId, AliasName, EncryptionContext, KeyId, KeyRef, KeySpec, KeyState, KeyUsage, Origin, Region, Role, alias_arn, key_arn,
};
use crate::validate;
use crate::{Clock, KmsError, TestClock};
use clavis_crypto::aead::AeadKey;
use clavis_crypto::seal::RootOfTrust;
use clavis_crypto::{SecretBytes, random};
use clavis_store::{AccessKeyRecord, AliasRecord, KeyMaterialRecord, KeyRecord, Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

const ROOT_CHECK_CONTEXT: &[u8] = b"clavis/root-check/v1\0";
const ROOT_CHECK_TEXT: &[u8] = b"clavis root of trust";

/// The most plaintext Encrypt accepts (AWS limit).
pub const MAX_PLAINTEXT: usize = 4096;
/// The most ciphertext Decrypt accepts (AWS limit).
pub const MAX_CIPHERTEXT: usize = 6144;
pub(crate) const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";
/// How long an access key's unsealed secret and status may be served from memory.
const CREDENTIAL_CACHE_TTL: std::time::Duration = std::time::Duration::from_millis(900);

/// An authenticated caller, as established by the HTTP layer.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The caller's account.
    pub account: AccountId,
    /// The region named by the request's credential scope.
    pub region: Region,
    /// The caller's principal ARN.
    pub principal_arn: String,
    /// The access key that signed the request.
    pub access_key_id: String,
    /// The caller's built-in role.
    pub role: Role,
    /// The client's address (for `aws:SourceIp` conditions), when known.
    pub source_ip: Option<std::net::IpAddr>,
    /// Whether the request arrived over TLS (the `aws:SecureTransport` condition key).
    pub secure_transport: bool,
    /// The keys the core resolved while serving this request, for the audit record's
    /// `resources` (filled by the core, never by a front end).
    pub resources: crate::audit::Resources,
}

/// What a request does with a key, for the key-level authorization ([`Kms::authorize_key`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Access<'a> {
    /// The policy action without its `kms:` prefix (`Encrypt`, `ReEncryptFrom`, ...).
    pub action: &'static str,
    /// The request's encryption context, for the operations that take one.
    pub context: Option<&'a EncryptionContext>,
    /// For CreateGrant: the grant asked for, which policy conditions and parent grants test.
    pub new_grant: Option<&'a crate::grants::GrantSpec>,
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

/// The actions whose requests carry `kms:EncryptionAlgorithm`. Clavis refuses every algorithm
/// but `SYMMETRIC_DEFAULT` before authorization, and AWS gives the key its default value when
/// the request omits it, so the value is always `SYMMETRIC_DEFAULT`.
const ENCRYPTION_ALGORITHM_ACTIONS: &[&str] =
    &["Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext"];

/// The role operation that stands for a policy action (a role allows `ReEncrypt` as a whole).
pub(crate) fn role_operation(action: &str) -> &str {
    match action {
        "ReEncryptFrom" | "ReEncryptTo" => "ReEncrypt",
        other => other,
    }
}

/// The key a policy lockout check is about: an existing key (PutKeyPolicy) or the one being
/// created (CreateKey), with the facts its policy may test.
struct LockoutKey<'a> {
    arn: &'a str,
    facts: crate::policy::KeyFacts<'a>,
    tags: &'a [(String, String)],
    aliases: &'a [String],
}

/// An access key with its unsealed secret, for SigV4 verification.
pub struct Credential {
    /// The public id.
    pub access_key_id: String,
    /// The principal's account.
    pub account: AccountId,
    /// The principal's ARN.
    pub principal_arn: String,
    /// The secret access key.
    pub secret: SecretBytes,
    /// False once deactivated.
    pub active: bool,
    /// The principal's built-in role.
    pub role: Role,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("access_key_id", &self.access_key_id)
            .field("principal_arn", &self.principal_arn)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// Settings of the core.
#[derive(Clone, Default)]
pub struct KmsConfig {
    /// Where every request's record goes. `None` only when the operator explicitly disabled
    /// auditing (for benchmarks); see `clavis serve --no-audit`.
    pub audit: Option<Arc<dyn AuditSink>>,
    /// The movable clock, when the operator started the server with the test-only clock (the
    /// same object must also be the service's clock). `None` in every normal configuration.
    pub test_clock: Option<Arc<TestClock>>,
    /// Test-only: abort the process after resealing this many values during a master-key
    /// rotation (`clavis serve --dangerous-test-crash-after-reseals`), to test crash recovery.
    pub crash_after_reseals: Option<u64>,
    /// A name for this node that survives restarts (leases it held before a crash are its own
    /// again); a random one per process if `None`.
    pub node_id: Option<String>,
}

/// The KMS service: operations over a store, a root of trust and a clock.
pub struct Kms {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) root: Arc<dyn RootOfTrust>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) materials: MaterialCache,
    pub(crate) keys: KeyCache,
    credentials: RwLock<HashMap<String, (Arc<Credential>, std::time::Instant)>>,
    pub(crate) audit: Option<Arc<dyn AuditSink>>,
    test_clock: Option<Arc<TestClock>>,
    /// Set once what needs the master key at start (audit log, initialisation) is done; until
    /// then requests are refused as sealed.
    ready: std::sync::atomic::AtomicBool,
    pub(crate) rotating: std::sync::atomic::AtomicBool,
    /// This process's name for leases.
    pub(crate) node_id: String,
    pub(crate) crash_after_reseals: Option<u64>,
    /// The unseal in progress: its nonce and when its first share arrived (Unix ms).
    unseal_session: std::sync::Mutex<Option<(String, i64)>>,
}

/// How long an unseal may take from its first share; after that the shares submitted so far
/// are forgotten and a new unseal (with a new nonce) begins.
const UNSEAL_SESSION_MS: i64 = 10 * 60 * 1000;

/// `Recipient` (Nitro Enclaves attestation) is an AWS feature Clavis does not offer.
fn refuse_recipient(recipient: Option<&serde_json::Value>) -> Result<(), KmsError> {
    match recipient {
        Some(_) => Err(KmsError::UnsupportedOperation("Recipient (Nitro Enclaves attestation) is not supported by Clavis.".into())),
        None => Ok(()),
    }
}

fn alias_not_found(region: &str, account: &str, alias_name: &str) -> KmsError {
    KmsError::NotFound(format!("Alias {} is not found.", alias_arn(region, account, alias_name)))
}

pub(crate) fn key_not_found(region: &str, account: &str, id: &str) -> KmsError {
    KmsError::NotFound(format!("Key '{}' does not exist", key_arn(region, account, id)))
}

pub(crate) fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

impl Kms {
    /// Builds the service.
    pub fn new(store: Arc<dyn Store>, root: Arc<dyn RootOfTrust>, clock: Arc<dyn Clock>, config: KmsConfig) -> Kms {
        Kms {
            store,
            root,
            clock,
            materials: MaterialCache::default(),
            keys: KeyCache::default(),
            credentials: RwLock::new(HashMap::new()),
            audit: config.audit,
            test_clock: config.test_clock,
            ready: std::sync::atomic::AtomicBool::new(false),
            rotating: std::sync::atomic::AtomicBool::new(false),
            node_id: config
                .node_id
                .clone()
                .unwrap_or_else(|| format!("node-{}-{}", std::process::id(), hex::encode(random::bytes(6).unwrap_or_default()))),
            crash_after_reseals: config.crash_after_reseals,
            unseal_session: std::sync::Mutex::new(None),
        }
    }

    /// Runs one request of any front end and releases its result only once the request's
    /// record is durable (invariant 5). `work` authenticates, decodes, calls the operation and
    /// reports what the record needs ([`audit::Outcome`]); the record is then built from the
    /// decoded request, the typed response and the keys the core resolved — it cannot fail
    /// to build — and appended. If it cannot be made durable the client gets
    /// `DependencyTimeoutException` and nothing the operation produced.
    pub async fn audited<T>(&self, event: &audit::RequestEvent<'_>, work: impl Future<Output = audit::Outcome<T>>) -> Result<T, KmsError> {
        self.audited_in(event, work, false).await
    }

    /// [`Kms::audited`] for the unauthenticated operator paths (init, unseal), which must work
    /// while the server is sealed and its audit log cannot be written yet: their records are
    /// then held in memory and written first when the log opens ([`AuditSink::append_or_hold`]).
    pub async fn audited_operator<T>(
        &self,
        event: &audit::RequestEvent<'_>,
        work: impl Future<Output = audit::Outcome<T>>,
    ) -> Result<T, KmsError> {
        self.audited_in(event, work, true).await
    }

    async fn audited_in<T>(
        &self,
        event: &audit::RequestEvent<'_>,
        work: impl Future<Output = audit::Outcome<T>>,
        hold: bool,
    ) -> Result<T, KmsError> {
        let time_ms = self.clock.now_ms();
        let started = std::time::Instant::now();
        // An operator request runs only if its record has room to be held (a sealed server).
        if hold && self.audit.as_ref().is_some_and(|sink| !sink.reserve_hold()) {
            return Err(KmsError::AuditUnavailable("no room to hold the record of an operator request while sealed".into()));
        }
        let release = || {
            if hold && let Some(sink) = &self.audit {
                sink.release_hold();
            }
        };
        let outcome = work.await;
        let Some(sink) = &self.audit else { return outcome.result };
        // While sealed the audit key is sealed too, so the log cannot be written; nothing can
        // succeed while sealed (every request fails authenticating), and a refusal for being
        // sealed has no effect to record.
        if !hold && matches!(outcome.result, Err(KmsError::Sealed)) && self.is_sealed() {
            return outcome.result;
        }
        // A front end may leave out the record of an unauthenticated refusal it rate-limited
        // (a later record counts it); never that of anything that ran.
        if outcome.suppress && outcome.caller.is_none() && outcome.result.is_err() {
            release();
            return outcome.result;
        }
        let record = audit::record(audit::RecordInput {
            event,
            time_ms,
            duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            caller: outcome.caller.as_ref(),
            request_parameters: outcome.request_parameters,
            response_elements: outcome.response_elements,
            error: outcome.result.as_ref().err(),
            suppressed_before: outcome.suppressed_before,
            operator: hold,
        });
        let appended = if hold { sink.append_or_hold(record).await } else { sink.append(record).await };
        match appended {
            Ok(()) => outcome.result,
            Err(e) => Err(KmsError::AuditUnavailable(e.to_string())),
        }
    }

    /// The current time (Unix milliseconds) by the service's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

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
            return Ok(Some(c));
        }
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
        let mut extra = access.new_grant.map(crate::grants::GrantSpec::condition_keys).unwrap_or_default();
        extra.extend(access.params.iter().cloned());
        if ENCRYPTION_ALGORITHM_ACTIONS.contains(&access.action) {
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
    async fn policy_facts(&self, policy: &Policy, key: &Key) -> Result<(Vec<(String, String)>, Vec<String>), KmsError> {
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

    // ----- root of trust (operator) -----

    /// The root of trust's state (provider, sealed or not, master-key version, unseal progress).
    pub async fn operator_status(&self) -> OperatorStatus {
        let s = self.root.status();
        // Best effort: the rotation state needs the database, which may be down.
        let rotation =
            if self.root.is_sealed() { None } else { self.store.get_setting(crate::master_key::ROTATION_SETTING).await.ok().flatten() };
        OperatorStatus {
            provider: s.kind.to_owned(),
            initialized: s.initialized,
            sealed: s.sealed,
            master_key_version: s.master_key_version,
            master_key_versions: self.root.versions(),
            rotation,
            shares: s.shares,
            threshold: s.threshold,
            progress: s.progress,
            nonce: None,
        }
    }

    /// Whether requests are refused as sealed: the root of trust is sealed, or what needs it at
    /// start has not finished yet ([`Kms::set_ready`]).
    pub fn is_sealed(&self) -> bool {
        self.root.is_sealed() || !self.ready.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Marks the start-up work that needs the master key as done (the audit log is open, the
    /// deployment initialised): requests may be served.
    pub fn set_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Initialises a Shamir root of trust: returns the shares (shown once). Unauthenticated,
    /// like Vault's: only an uninitialised server accepts it.
    pub fn operator_init(&self, req: OperatorInitRequest) -> Result<OperatorInitResponse, KmsError> {
        let shares = validate::required(req.shares, "shares")?;
        let threshold = validate::required(req.threshold, "threshold")?;
        if threshold < 2 || shares < threshold {
            return Err(KmsError::Validation("Need 2 <= Threshold <= Shares <= 255.".into()));
        }
        let shares = self.root.init_shares(shares, threshold).map_err(Self::operator_error)?;
        Ok(OperatorInitResponse { shares: shares.into_iter().map(SecretText::new).collect(), threshold })
    }

    /// Submits one unseal share. Unauthenticated (the share is the credential).
    ///
    /// An unseal is a session: the first share starts it and its answer carries a `Nonce`;
    /// every later share must carry that nonce, so that whoever does not know it (a stranger
    /// submitting junk) cannot spoil the operators' unseal. A session not completed within 10
    /// minutes of its first share expires: its shares are forgotten and the next share starts
    /// a new one.
    pub async fn operator_unseal(&self, req: OperatorUnsealRequest) -> Result<OperatorStatus, KmsError> {
        let share = validate::required(req.share, "share")?;
        let nonce = {
            let mut session = self.unseal_session.lock().map_err(|_| KmsError::Internal("unseal session lock poisoned".into()))?;
            let now = self.clock.now_ms();
            let expired = session.as_ref().is_some_and(|(_, started)| now - started > UNSEAL_SESSION_MS);
            // A session whose shares are gone (a failed reconstruction reset them, or a seal)
            // is over too.
            if expired || self.root.status().progress == 0 {
                self.root.reset_unseal().map_err(Self::operator_error)?;
                *session = None;
            }
            let nonce = match (session.as_ref(), req.nonce.as_deref()) {
                (None, _) => {
                    let fresh = hex::encode(random::bytes(16)?);
                    *session = Some((fresh.clone(), now));
                    fresh
                }
                (Some((current, _)), Some(given)) if clavis_crypto::digest::constant_time_eq(current.as_bytes(), given.as_bytes()) => {
                    current.clone()
                }
                (Some(_), _) => {
                    return Err(KmsError::Validation(
                        "An unseal is in progress: give the Nonce returned with its first share (it expires 10 minutes after the first share).".into(),
                    ));
                }
            };
            let submitted = self.root.submit_share(share.expose_secret()).map_err(Self::operator_error);
            if submitted.is_err() && self.root.status().progress == 0 || !self.root.is_sealed() {
                *session = None;
            }
            submitted?;
            nonce
        };
        let mut status = self.operator_status().await;
        if status.sealed && status.progress > 0 {
            status.nonce = Some(nonce);
        }
        Ok(status)
    }

    /// ClavisAdmin.Seal: forgets the master key and wipes every unsealed key and credential from
    /// memory; every request is then refused until an operator unseals again.
    pub async fn seal(&self, caller: &Caller, _req: Empty) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::Seal)?;
        // Sealing stops every tenant: only the operator's administrators may.
        self.require_operator_account(caller, Operation::Seal, "seal the server").await?;
        self.root.seal_now().map_err(Self::operator_error)?;
        self.materials.clear();
        self.keys.clear();
        if let Ok(mut m) = self.credentials.write() {
            m.clear();
        }
        Ok(Empty {})
    }

    pub(crate) fn operator_error(e: clavis_crypto::CryptoError) -> KmsError {
        match e {
            clavis_crypto::CryptoError::Unseal(m) => KmsError::Validation(m),
            clavis_crypto::CryptoError::Unsupported(m) => KmsError::UnsupportedOperation(m.to_owned()),
            clavis_crypto::CryptoError::Malformed(m) => KmsError::Validation(m.to_owned()),
            other => other.into(),
        }
    }

    /// Drops a cached credential (after its status changed or it was deleted).
    pub(crate) fn forget_credential(&self, access_key_id: &str) {
        if let Ok(mut m) = self.credentials.write() {
            m.remove(access_key_id);
        }
    }

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
            return Ok(Some(k));
        }
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

    pub(crate) async fn aead_key(&self, key: &Key, version: u32) -> Result<Arc<AeadKey>, KmsError> {
        if let Some(k) = self.materials.get(key.id, version) {
            return Ok(k);
        }
        let rec = self
            .store
            .get_material(&key.rec.key_id, version)
            .await?
            .ok_or_else(|| KmsError::Internal(format!("material version {version} of {} is missing", key.arn)))?;
        let material = self.root.unseal(&material_seal_context(&key.id, version), &rec.sealed)?;
        let aead = Arc::new(AeadKey::new(&material)?);
        self.cache_material(key.id, version, aead.clone());
        Ok(aead)
    }

    /// Caches unsealed material, unless the root of trust was sealed meanwhile: checked under
    /// the cache's lock, so material unsealed just before a seal is never cached after the seal
    /// cleared the cache. The one place material enters the cache.
    pub(crate) fn cache_material(&self, id: KeyId, version: u32, aead: Arc<AeadKey>) {
        self.materials.insert(id, version, aead, || !self.root.is_sealed());
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
                Ok(()) => {
                    let updated = Key::from_record(rec)?;
                    self.keys.put(&updated);
                    return Ok(updated);
                }
                Err(StoreError::Conflict) => key = self.load_key_fresh(&key).await?,
                Err(StoreError::NotFound) => return Err(key_not_found(&key.rec.region, &key.rec.account_id, &key.rec.key_id)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(KmsError::Unavailable("too many concurrent updates to the key; retry".into()))
    }

    pub(crate) fn metadata(key: &Key) -> KeyMetadata {
        let r = &key.rec;
        KeyMetadata {
            aws_account_id: r.account_id.clone(),
            key_id: r.key_id.clone(),
            arn: key.arn.clone(),
            creation_date: secs(r.creation_date_ms),
            enabled: key.state == KeyState::Enabled,
            description: r.description.clone(),
            key_usage: r.key_usage.clone(),
            key_state: r.key_state.clone(),
            deletion_date: r.deletion_date_ms.map(secs),
            origin: r.origin.clone(),
            key_manager: "CUSTOMER".to_owned(),
            customer_master_key_spec: r.key_spec.clone(),
            key_spec: r.key_spec.clone(),
            encryption_algorithms: vec![SYMMETRIC_DEFAULT.to_owned()],
            multi_region: false,
            dual_authorization: r.dual_auth.then_some(true),
            valid_to: r.valid_to_ms.map(secs),
            expiration_model: r.expiration_model.clone(),
        }
    }

    /// Refuses a policy under which the caller could not change the policy again (AWS's
    /// "policy lockout safety check"), unless the caller bypasses the check. The rule is
    /// [`Kms::authorize_key`]'s for a later PutKeyPolicy by the same caller: no `Deny`, and an
    /// `Allow` naming the caller, or naming its account while its role allows PutKeyPolicy
    /// (grants cannot allow PutKeyPolicy).
    fn lockout_check(&self, caller: &Caller, policy: &Policy, key: LockoutKey<'_>, bypass: Option<bool>) -> Result<(), KmsError> {
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

    fn default_policy(account: &AccountId) -> String {
        Policy::default_document(account.as_str())
    }

    // ----- key management -----

    /// CreateKey.
    pub async fn create_key(&self, caller: &Caller, req: CreateKeyRequest) -> Result<KeyMetadataResponse, KmsError> {
        self.authorize(caller, Operation::CreateKey)?;
        let description = req.description.unwrap_or_default();
        validate::str_len(&description, "description", 0, 8192)?;
        if req.key_spec.is_some() && req.customer_master_key_spec.is_some() {
            return Err(KmsError::Validation(
                "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec is deprecated.".into(),
            ));
        }
        let (spec_field, spec) = match (&req.key_spec, &req.customer_master_key_spec) {
            (Some(s), _) => ("keySpec", s.as_str()),
            (None, Some(s)) => ("customerMasterKeySpec", s.as_str()),
            (None, None) => ("keySpec", SYMMETRIC_DEFAULT),
        };
        validate::one_of(spec, spec_field, &KeySpec::names())?;
        let usage = req.key_usage.as_deref().unwrap_or(KeyUsage::EncryptDecrypt.as_str());
        validate::one_of(usage, "keyUsage", &KeyUsage::names())?;
        let origin = req.origin.as_deref().unwrap_or(Origin::AwsKms.as_str());
        validate::one_of(origin, "origin", &Origin::names())?;
        if KeySpec::parse(spec) != Some(KeySpec::SymmetricDefault) {
            return Err(KmsError::UnsupportedOperation(format!(
                "KeySpec {spec} is not supported by this Clavis version; use SYMMETRIC_DEFAULT."
            )));
        }
        if KeyUsage::parse(usage) != Some(KeyUsage::EncryptDecrypt) {
            return Err(KmsError::Validation(format!("KeyUsage {usage} is not compatible with KeySpec {spec}.")));
        }
        if !matches!(Origin::parse(origin), Some(Origin::AwsKms | Origin::External)) {
            return Err(KmsError::UnsupportedOperation(format!("Origin {origin} is not supported by Clavis; use AWS_KMS or EXTERNAL.")));
        }
        if req.custom_key_store_id.is_some() || req.xks_key_id.is_some() {
            return Err(KmsError::UnsupportedOperation("Custom key stores are not supported by Clavis.".into()));
        }
        if req.multi_region == Some(true) {
            return Err(KmsError::UnsupportedOperation("Multi-Region keys are not supported by Clavis.".into()));
        }
        let tags = validate::tags(req.tags.as_deref().unwrap_or_default())?;
        let id = KeyId::generate();
        let policy = match req.policy {
            Some(p) => {
                validate::str_len(&p, "policy", 1, crate::policy::MAX_POLICY_BYTES)?;
                let parsed = Policy::parse(&p)?;
                let arn = key_arn(caller.region.as_str(), caller.account.as_str(), &id.to_string());
                let tag_pairs: Vec<(String, String)> = tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect();
                let facts = crate::policy::KeyFacts { key_spec: spec, key_usage: usage, origin };
                let key = LockoutKey { arn: &arn, facts, tags: &tag_pairs, aliases: &[] };
                self.lockout_check(caller, &parsed, key, req.bypass_policy_lockout_safety_check)?;
                p
            }
            None => Self::default_policy(&caller.account),
        };

        let now = self.clock.now_ms();
        let external = Origin::parse(origin) == Some(Origin::External);
        let rec = KeyRecord {
            key_id: id.to_string(),
            account_id: caller.account.as_str().to_owned(),
            region: caller.region.as_str().to_owned(),
            description,
            key_usage: usage.to_owned(),
            key_spec: spec.to_owned(),
            origin: origin.to_owned(),
            key_state: if external { KeyState::PendingImport } else { KeyState::Enabled }.as_str().to_owned(),
            creation_date_ms: now,
            deletion_date_ms: None,
            policy,
            current_version: if external { 0 } else { 1 },
            rotation_period_days: None,
            next_rotation_ms: None,
            dual_auth: false,
            deletion_request: None,
            valid_to_ms: None,
            expiration_model: None,
            import_fingerprint: None,
            revision: 1,
        };
        caller.resources.add(&key_arn(&rec.region, &rec.account_id, &rec.key_id));
        if external {
            // No material until ImportKeyMaterial.
            self.store.create_key(&rec, None, &tags).await?;
            let key = Key::from_record(rec)?;
            self.keys.put(&key);
            return Ok(KeyMetadataResponse { key_metadata: Self::metadata(&key) });
        }
        let material = random::secret(clavis_crypto::aead::KEY_LEN)?;
        let sealed = self.root.seal(&material_seal_context(&id, 1), &material)?;
        let mat = KeyMaterialRecord { key_id: rec.key_id.clone(), version: 1, sealed, created_ms: now, rotation_type: None };
        self.store.create_key(&rec, Some(&mat), &tags).await?;
        let key = Key::from_record(rec)?;
        self.keys.put(&key);
        // Warm the cache: the first Encrypt need not unseal.
        self.cache_material(id, 1, Arc::new(AeadKey::new(&material)?));
        Ok(KeyMetadataResponse { key_metadata: Self::metadata(&key) })
    }

    /// DescribeKey.
    pub async fn describe_key(&self, caller: &Caller, req: DescribeKeyRequest) -> Result<KeyMetadataResponse, KmsError> {
        self.authorize(caller, Operation::DescribeKey)?;
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        let key = self.key_for(caller, Access::to("DescribeKey"), req.key_id.as_deref(), "keyId").await?;
        Ok(KeyMetadataResponse { key_metadata: Self::metadata(&key) })
    }

    /// ListKeys.
    pub async fn list_keys(&self, caller: &Caller, req: ListKeysRequest) -> Result<ListKeysResponse, KmsError> {
        self.authorize(caller, Operation::ListKeys)?;
        let limit = validate::limit(req.limit, 100, 1000)?;
        let marker = validate::marker(req.marker.as_deref())?;
        if marker.is_some_and(|m| KeyId::parse(m).is_none()) {
            return Err(KmsError::InvalidMarker);
        }
        let recs = self.store.list_keys(caller.account.as_str(), caller.region.as_str(), marker, paging::fetch_len(limit)).await?;
        let Page { items, next_marker, truncated } = Page::cut(recs, limit, |r| r.key_id.clone());
        let keys =
            items.into_iter().map(|r| KeyListEntry { key_arn: key_arn(&r.region, &r.account_id, &r.key_id), key_id: r.key_id }).collect();
        Ok(ListKeysResponse { keys, next_marker, truncated })
    }

    /// UpdateKeyDescription.
    pub async fn update_key_description(&self, caller: &Caller, req: UpdateKeyDescriptionRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::UpdateKeyDescription)?;
        let description = validate::required(req.description, "description")?;
        validate::str_len(&description, "description", 0, 8192)?;
        let key = self.key_for_no_alias(caller, Access::to("UpdateKeyDescription"), req.key_id.as_deref(), "keyId").await?;
        self.update_key(key, |k| {
            if k.state == KeyState::PendingDeletion {
                return Err(k.invalid_state(k.state));
            }
            Ok(Some(KeyRecord { description: description.clone(), ..(*k.rec).clone() }))
        })
        .await?;
        Ok(Empty {})
    }

    /// EnableKey (Disabled -> Enabled; a no-op when Enabled).
    pub async fn enable_key(&self, caller: &Caller, req: KeyIdRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::EnableKey)?;
        self.set_enabled(caller, req, true).await
    }

    /// DisableKey (Enabled -> Disabled; a no-op when Disabled).
    pub async fn disable_key(&self, caller: &Caller, req: KeyIdRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::DisableKey)?;
        self.set_enabled(caller, req, false).await
    }

    async fn set_enabled(&self, caller: &Caller, req: KeyIdRequest, enable: bool) -> Result<Empty, KmsError> {
        let access = Access::to(if enable { "EnableKey" } else { "DisableKey" });
        let key = self.key_for_no_alias(caller, access, req.key_id.as_deref(), "keyId").await?;
        let target = if enable { KeyState::Enabled } else { KeyState::Disabled };
        self.update_key(key, |k| match k.state {
            s if s == target => Ok(None),
            KeyState::Enabled | KeyState::Disabled => Ok(Some(KeyRecord { key_state: target.as_str().to_owned(), ..(*k.rec).clone() })),
            other => Err(k.invalid_state(other)),
        })
        .await?;
        Ok(Empty {})
    }

    // ----- cryptographic operations -----

    /// The key an Encrypt or GenerateDataKey names, usable for symmetric encryption; then the
    /// DryRun answer if one was asked for.
    async fn encryption_key(
        &self,
        caller: &Caller,
        access: Access<'_>,
        key_id: Option<&str>,
        dry_run: Option<bool>,
    ) -> Result<Key, KmsError> {
        let key = self.key_for(caller, access, key_id, "keyId").await?;
        key.check_usable()?;
        key.check_symmetric_encrypt()?;
        if dry_run == Some(true) {
            return Err(KmsError::DryRun);
        }
        Ok(key)
    }

    pub(crate) async fn encrypt_with(&self, key: &Key, context: &EncryptionContext, plaintext: &[u8]) -> Result<Vec<u8>, KmsError> {
        let version = key.rec.current_version;
        let aead = self.aead_key(key, version).await?;
        ciphertext::seal(&aead, Header { key_id: key.id, version }, context, plaintext)
    }

    /// Finds the key of a ciphertext, checks it against an optional KeyId, and decrypts;
    /// `access` is what the request does with that key (Decrypt, ReEncryptFrom).
    pub(crate) async fn decrypt_blob(
        &self,
        caller: &Caller,
        access: Access<'_>,
        blob: &[u8],
        key_id: Option<&str>,
        context: &EncryptionContext,
        key_field: &str,
    ) -> Result<(Key, SecretBytes), KmsError> {
        validate::blob_len(blob.len(), "ciphertextBlob", 1, MAX_CIPHERTEXT)?;
        let requested = match key_id {
            Some(raw) => {
                let key_ref = KeyRef::parse(raw, key_field)?;
                let k = self.resolve(caller, access.action, &key_ref).await?;
                // Authorized before anything is said about the ciphertext's key.
                self.authorize_key(caller, Access { request_alias: key_ref.alias_name(), ..access }, &k).await?;
                Some(k)
            }
            None => None,
        };
        let header = ciphertext::parse_header(blob)?;
        let authorized = requested.is_some();
        let key = match requested {
            Some(k) if k.id != header.key_id => return Err(KmsError::IncorrectKey),
            Some(k) => k,
            // A blob naming a key that does not exist here (another region, account or
            // deployment) is simply not a ciphertext this service can decrypt.
            // The blob names its key; it may be another account's (authorization decides).
            None => match self.store_key(&header.key_id).await? {
                Some(k) if k.rec.region == caller.region.as_str() => k,
                _ => {
                    return Err(KmsError::InvalidCiphertext(
                        "The ciphertext refers to a key that does not exist in this region, or was not produced by this service.".into(),
                    ));
                }
            },
        };
        if !authorized {
            self.authorize_key(caller, access, &key).await?;
        }
        // A version newer than the cached record knows may have been made by another node.
        let key = if header.version > key.rec.current_version { self.load_key_fresh(&key).await? } else { key };
        key.check_usable()?;
        key.check_symmetric_encrypt()?;
        if header.version == 0 || header.version > key.rec.current_version {
            return Err(KmsError::InvalidCiphertext(
                "The ciphertext is invalid, was not produced by this service, or was modified.".into(),
            ));
        }
        let aead = self.aead_key(&key, header.version).await?;
        let plaintext = ciphertext::open(&aead, blob, context)?;
        Ok((key, plaintext))
    }

    /// Encrypt.
    pub async fn encrypt(&self, caller: &Caller, req: EncryptRequest) -> Result<EncryptResponse, KmsError> {
        self.authorize(caller, Operation::Encrypt)?;
        let plaintext = validate::required(req.plaintext, "plaintext")?;
        validate::blob_len(plaintext.0.len(), "plaintext", 1, MAX_PLAINTEXT)?;
        validate::symmetric_algorithm(req.encryption_algorithm.as_deref(), "encryptionAlgorithm")?;
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        let context = EncryptionContext::parse(req.encryption_context, "encryptionContext")?;
        let access = Access::with_context("Encrypt", &context);
        let key = self.encryption_key(caller, access, req.key_id.as_deref(), req.dry_run).await?;
        let blob = self.encrypt_with(&key, &context, plaintext.0.expose_secret()).await?;
        Ok(EncryptResponse { ciphertext_blob: Blob(blob), key_id: key.arn, encryption_algorithm: SYMMETRIC_DEFAULT.into() })
    }

    /// Decrypt. With `req.rewrap` (the `X-Clavis-Rewrap` extension), a ciphertext made under an
    /// older material version also comes back re-encrypted under the key's newest version, with
    /// the same encryption context, in the same call.
    pub async fn decrypt(&self, caller: &Caller, req: DecryptRequest) -> Result<DecryptResponse, KmsError> {
        self.authorize(caller, Operation::Decrypt)?;
        let blob = validate::required(req.ciphertext_blob, "ciphertextBlob")?;
        validate::symmetric_algorithm(req.encryption_algorithm.as_deref(), "encryptionAlgorithm")?;
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        refuse_recipient(req.recipient.as_ref())?;
        let context = EncryptionContext::parse(req.encryption_context, "encryptionContext")?;
        let access = Access::with_context("Decrypt", &context);
        let (key, plaintext) = self.decrypt_blob(caller, access, &blob.0, req.key_id.as_deref(), &context, "keyId").await?;
        if req.dry_run == Some(true) {
            return Err(KmsError::DryRun);
        }
        let (mut rewrapped, mut newest) = (None, None);
        if req.rewrap {
            // Re-wrapping encrypts under the key: the caller must be allowed that too (kms:Encrypt,
            // or both halves of kms:ReEncrypt*), whether or not this ciphertext needs it.
            self.authorize_rewrap(caller, &key, &context).await?;
            let source_version = ciphertext::parse_header(&blob.0)?.version;
            let current = key.rec.current_version;
            newest = Some(current);
            if source_version < current {
                rewrapped = Some(Blob(self.encrypt_with(&key, &context, plaintext.expose_secret()).await?));
            }
        }
        Ok(DecryptResponse {
            key_id: key.arn,
            plaintext: SecretBlob(plaintext),
            encryption_algorithm: SYMMETRIC_DEFAULT.into(),
            rewrapped_ciphertext_blob: rewrapped,
            key_material_version: newest,
        })
    }

    /// Re-wrap on unwrap produces a new ciphertext under `key`: allowed when Encrypt is, or when
    /// both ReEncryptFrom and ReEncryptTo are (what a ReEncrypt onto the same key would need).
    async fn authorize_rewrap(&self, caller: &Caller, key: &Key, context: &EncryptionContext) -> Result<(), KmsError> {
        let access = |action| Access::with_context(action, context);
        if self.authorize_key(caller, access("Encrypt"), key).await.is_ok() {
            return Ok(());
        }
        // A re-wrap is a re-encryption onto the same key: a policy denying that
        // (kms:ReEncryptOnSameKey) applies.
        let same_key = [param("kms:ReEncryptOnSameKey", true)];
        let access = |action| Access::with_context(action, context).with_params(&same_key);
        match (self.authorize_key(caller, access("ReEncryptFrom"), key).await, self.authorize_key(caller, access("ReEncryptTo"), key).await)
        {
            (Ok(()), Ok(())) => Ok(()),
            (Err(KmsError::AccessDenied(_)), _) | (_, Err(KmsError::AccessDenied(_))) => Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to re-wrap under {}: re-wrap on unwrap needs kms:Encrypt, or kms:ReEncryptFrom and kms:ReEncryptTo, on the key",
                caller.principal_arn, key.arn
            ))),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }

    /// ReEncrypt: decrypt under the source key and encrypt under the destination key, without
    /// the plaintext leaving the service.
    pub async fn re_encrypt(&self, caller: &Caller, req: ReEncryptRequest) -> Result<ReEncryptResponse, KmsError> {
        self.authorize(caller, Operation::ReEncrypt)?;
        let blob = validate::required(req.ciphertext_blob, "ciphertextBlob")?;
        let dest_raw = validate::required(req.destination_key_id.as_deref(), "destinationKeyId")?;
        validate::symmetric_algorithm(req.source_encryption_algorithm.as_deref(), "sourceEncryptionAlgorithm")?;
        validate::symmetric_algorithm(req.destination_encryption_algorithm.as_deref(), "destinationEncryptionAlgorithm")?;
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        let source_ctx = EncryptionContext::parse(req.source_encryption_context, "sourceEncryptionContext")?;
        let dest_ctx = EncryptionContext::parse(req.destination_encryption_context, "destinationEncryptionContext")?;
        // kms:ReEncryptOnSameKey, worked out before either key is authorized: a reference that
        // does not resolve is not the same key (its error comes from the step that needs it).
        let source_id = ciphertext::parse_header(&blob.0).ok().map(|h| h.key_id);
        let dest_id = match KeyRef::parse(dest_raw, "destinationKeyId") {
            Ok(r) => self.resolve(caller, "ReEncryptTo", &r).await.ok().map(|k| k.id),
            Err(_) => None,
        };
        let same_key = [param("kms:ReEncryptOnSameKey", source_id.is_some() && source_id == dest_id)];
        let access = Access::with_context("ReEncryptFrom", &source_ctx).with_params(&same_key);
        let (source, plaintext) =
            self.decrypt_blob(caller, access, &blob.0, req.source_key_id.as_deref(), &source_ctx, "sourceKeyId").await?;
        let access = Access::with_context("ReEncryptTo", &dest_ctx).with_params(&same_key);
        let dest = self.key_for(caller, access, Some(dest_raw), "destinationKeyId").await?;
        dest.check_usable()?;
        dest.check_symmetric_encrypt()?;
        if req.dry_run == Some(true) {
            return Err(KmsError::DryRun);
        }
        let out = self.encrypt_with(&dest, &dest_ctx, plaintext.expose_secret()).await?;
        Ok(ReEncryptResponse {
            ciphertext_blob: Blob(out),
            source_key_id: source.arn,
            key_id: dest.arn,
            source_encryption_algorithm: SYMMETRIC_DEFAULT.into(),
            destination_encryption_algorithm: SYMMETRIC_DEFAULT.into(),
        })
    }

    /// GenerateDataKey (`with_plaintext`) and GenerateDataKeyWithoutPlaintext.
    pub async fn generate_data_key(
        &self,
        caller: &Caller,
        req: GenerateDataKeyRequest,
        with_plaintext: bool,
    ) -> Result<GenerateDataKeyResponse, KmsError> {
        self.authorize(caller, if with_plaintext { Operation::GenerateDataKey } else { Operation::GenerateDataKeyWithoutPlaintext })?;
        let len = match (req.number_of_bytes, req.key_spec.as_deref()) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(KmsError::Validation("Please specify either number of bytes or key spec.".into()));
            }
            (Some(n), None) => {
                validate::int_range(n, "numberOfBytes", 1, 1024)?;
                usize::try_from(n).unwrap_or(0)
            }
            (None, Some(spec)) => match validate::one_of(spec, "keySpec", &["AES_256", "AES_128"])? {
                "AES_128" => 16,
                _ => 32,
            },
        };
        validate::grant_tokens(req.grant_tokens.as_ref())?;
        refuse_recipient(req.recipient.as_ref())?;
        let context = EncryptionContext::parse(req.encryption_context, "encryptionContext")?;
        let action = if with_plaintext { "GenerateDataKey" } else { "GenerateDataKeyWithoutPlaintext" };
        let key = self.encryption_key(caller, Access::with_context(action, &context), req.key_id.as_deref(), req.dry_run).await?;
        let data_key = random::secret(len)?;
        let blob = self.encrypt_with(&key, &context, data_key.expose_secret()).await?;
        Ok(GenerateDataKeyResponse {
            ciphertext_blob: Blob(blob),
            plaintext: with_plaintext.then_some(SecretBlob(data_key)),
            key_id: key.arn,
        })
    }

    /// GenerateRandom.
    pub async fn generate_random(&self, caller: &Caller, req: GenerateRandomRequest) -> Result<GenerateRandomResponse, KmsError> {
        self.authorize(caller, Operation::GenerateRandom)?;
        let n = validate::required(req.number_of_bytes, "numberOfBytes")?;
        validate::int_range(n, "numberOfBytes", 1, 1024)?;
        if req.custom_key_store_id.is_some() {
            return Err(KmsError::UnsupportedOperation("Custom key stores are not supported by Clavis.".into()));
        }
        refuse_recipient(req.recipient.as_ref())?;
        let bytes = random::secret(usize::try_from(n).unwrap_or(0))?;
        Ok(GenerateRandomResponse { plaintext: SecretBlob(bytes) })
    }

    // ----- aliases -----

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
        let key = self.resolve_alias(caller.account.as_str(), caller.region.as_str(), alias_name).await?;
        self.authorize_key(caller, Access::to(action), &key).await
    }

    /// CreateAlias.
    pub async fn create_alias(&self, caller: &Caller, req: AliasTargetRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::CreateAlias)?;
        let name = AliasName::parse(validate::required(req.alias_name.as_deref(), "aliasName")?, "aliasName")?;
        let key = self.alias_target(caller, "CreateAlias", req.target_key_id.as_deref()).await?;
        let now = self.clock.now_ms();
        let rec = AliasRecord {
            account_id: caller.account.as_str().to_owned(),
            region: caller.region.as_str().to_owned(),
            alias_name: name.as_str().to_owned(),
            target_key_id: key.rec.key_id.clone(),
            creation_date_ms: now,
            last_updated_date_ms: now,
        };
        match self.store.create_alias(&rec).await {
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
        match self.store.update_alias(account, region, name.as_str(), &key.rec.key_id, self.clock.now_ms()).await {
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
        match self.store.delete_alias(account, region, name.as_str()).await {
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
        let recs = self.store.list_aliases(account, region, key_filter.as_deref(), marker, paging::fetch_len(limit)).await?;
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

    // ----- tags -----

    /// TagResource.
    pub async fn tag_resource(&self, caller: &Caller, req: TagResourceRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::TagResource)?;
        let tags = validate::tags(&validate::required(req.tags, "tags")?)?;
        let params = request_tag_params(tags.iter().map(|t| (t.key.as_str(), t.value.as_str())));
        let key = self.key_for_no_alias(caller, Access::to("TagResource").with_params(&params), req.key_id.as_deref(), "keyId").await?;
        if key.state == KeyState::PendingDeletion {
            return Err(key.invalid_state(key.state));
        }
        match self.store.put_tags(&key.rec.key_id, &tags, validate::MAX_TAGS_PER_KEY).await {
            Ok(()) => Ok(Empty {}),
            Err(StoreError::LimitExceeded) => {
                Err(KmsError::LimitExceeded(format!("A key can have at most {} tags.", validate::MAX_TAGS_PER_KEY)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// UntagResource.
    pub async fn untag_resource(&self, caller: &Caller, req: UntagResourceRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::UntagResource)?;
        let tag_keys = validate::required(req.tag_keys, "tagKeys")?;
        for k in &tag_keys {
            validate::str_len(k, "tagKeys.member", 1, 128)?;
        }
        let params = [("aws:tagkeys".to_owned(), tag_keys.clone())];
        let key = self.key_for_no_alias(caller, Access::to("UntagResource").with_params(&params), req.key_id.as_deref(), "keyId").await?;
        if key.state == KeyState::PendingDeletion {
            return Err(key.invalid_state(key.state));
        }
        self.store.delete_tags(&key.rec.key_id, &tag_keys).await?;
        Ok(Empty {})
    }

    /// ListResourceTags.
    pub async fn list_resource_tags(&self, caller: &Caller, req: ListForKeyRequest) -> Result<ListResourceTagsResponse, KmsError> {
        self.authorize(caller, Operation::ListResourceTags)?;
        let limit = validate::limit(req.limit, 50, 50)?;
        let marker = validate::marker(req.marker.as_deref())?;
        let key = self.key_for_no_alias(caller, Access::to("ListResourceTags"), req.key_id.as_deref(), "keyId").await?;
        let tags = self.store.list_tags(&key.rec.key_id, marker, paging::fetch_len(limit)).await?;
        let Page { items, next_marker, truncated } = Page::cut(tags, limit, |t| t.key.clone());
        let tags = items.into_iter().map(|t| TagEntry { tag_key: Some(t.key), tag_value: Some(t.value) }).collect();
        Ok(ListResourceTagsResponse { tags, next_marker, truncated })
    }

    // ----- key policy -----

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

    // ----- administration -----

    /// ClavisAdmin.LookupEvents: search the audit log (administrators only).
    pub async fn lookup_events(&self, caller: &Caller, req: LookupEventsRequest) -> Result<LookupEventsResponse, KmsError> {
        self.authorize(caller, Operation::LookupEvents)?;
        let max = validate::limit(req.max_results, 50, 50)?;
        let before = match req.next_token.as_deref() {
            None => None,
            Some(t) => Some(t.parse::<u64>().map_err(|_| KmsError::Validation("Invalid NextToken.".into()))?),
        };
        let attrs = req.lookup_attributes.unwrap_or_default();
        if attrs.len() > 1 {
            return Err(KmsError::Validation("LookupAttributes accepts at most one attribute.".into()));
        }
        let mut filter: Option<(String, String)> = None;
        for a in attrs {
            let k = validate::required(a.attribute_key, "lookupAttributes.member.attributeKey")?;
            let v = validate::required(a.attribute_value, "lookupAttributes.member.attributeValue")?;
            validate::one_of(
                &k,
                "lookupAttributes.member.attributeKey",
                &["EventId", "EventName", "ReadOnly", "Username", "ResourceName", "AccessKeyId", "EventSource"],
            )?;
            filter = Some((k, v));
        }
        let start = req.start_time.map(|t| audit::event_time((t * 1000.0) as i64));
        let end = req.end_time.map(|t| audit::event_time((t * 1000.0) as i64));
        let account = caller.account.as_str().to_owned();
        // Unauthenticated requests belong to no account: only the operator's administrators
        // see them (they name claimed access keys and source addresses).
        let operator = self.account_id().await?.is_some_and(|a| a == caller.account);
        let keep = move |e: &serde_json::Value| -> bool {
            let time = e["eventTime"].as_str().unwrap_or_default();
            if start.as_deref().is_some_and(|s| time < s) || end.as_deref().is_some_and(|s| time > s) {
                return false;
            }
            // An account sees its own events, and (as CloudTrail delivers them to the key owner
            // too) other accounts' requests that used one of its keys; unauthenticated ones are
            // the operator's.
            let uses_our_key =
                || e["resources"].as_array().is_some_and(|rs| rs.iter().any(|r| r["accountId"].as_str() == Some(account.as_str())));
            match e["recipientAccountId"].as_str() {
                Some(a) if a != account && !uses_our_key() => return false,
                None if !operator => return false,
                _ => {}
            }
            match &filter {
                None => true,
                Some((k, v)) => match k.as_str() {
                    "EventId" => e["eventID"] == v.as_str(),
                    "EventName" => e["eventName"] == v.as_str(),
                    "ReadOnly" => e["readOnly"].as_bool().map(|b| b.to_string()).as_deref() == Some(v.as_str()),
                    "Username" => e["userIdentity"]["arn"].as_str().is_some_and(|a| a == v || a.ends_with(&format!("/{v}"))),
                    "AccessKeyId" => e["userIdentity"]["accessKeyId"] == v.as_str(),
                    "EventSource" => e["eventSource"] == v.as_str(),
                    _ => e["resources"]
                        .as_array()
                        .is_some_and(|rs| rs.iter().any(|r| r["ARN"].as_str().is_some_and(|a| a == v || a.ends_with(&format!("/{v}"))))),
                },
            }
        };
        let sink = self.audit.as_ref().ok_or_else(|| KmsError::UnsupportedOperation("Auditing is disabled on this server.".into()))?;
        let (events, next) = sink
            .lookup(audit::LookupQuery { before, max, keep: Box::new(keep) })
            .await
            .map_err(|e| KmsError::AuditUnavailable(e.to_string()))?;
        let events = events
            .into_iter()
            .map(|e| LookupEvent {
                event_id: e["eventID"].as_str().unwrap_or_default().to_owned(),
                event_name: e["eventName"].as_str().unwrap_or_default().to_owned(),
                read_only: e["readOnly"].as_bool().unwrap_or(false).to_string(),
                access_key_id: e["userIdentity"]["accessKeyId"].as_str().map(str::to_owned),
                event_time: audit::parse_event_time(e["eventTime"].as_str().unwrap_or_default()).unwrap_or(0) as f64,
                event_source: e["eventSource"].as_str().unwrap_or_default().to_owned(),
                username: e["userIdentity"]["arn"].as_str().map(|a| a.rsplit(['/', ':']).next().unwrap_or(a).to_owned()),
                resources: e["resources"]
                    .as_array()
                    .map(|rs| {
                        rs.iter()
                            .map(|r| EventResource {
                                resource_type: r["type"].as_str().unwrap_or_default().to_owned(),
                                resource_name: r["ARN"].as_str().unwrap_or_default().to_owned(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                cloud_trail_event: e.to_string(),
            })
            .collect();
        Ok(LookupEventsResponse { events, next_token: next.map(|n| n.to_string()) })
    }

    /// ClavisAdmin.AdvanceTestClock: moves the test clock forward and runs the scheduler once.
    /// Refused unless the server was started with the test-only clock.
    pub async fn advance_test_clock(&self, caller: &Caller, req: AdvanceTestClockRequest) -> Result<AdvanceTestClockResponse, KmsError> {
        self.authorize(caller, Operation::AdvanceTestClock)?;
        let Some(clock) = &self.test_clock else {
            return Err(KmsError::UnsupportedOperation("The test clock is not enabled on this server.".into()));
        };
        // The clock is the whole deployment's: only the operator's administrators move it.
        self.require_operator_account(caller, Operation::AdvanceTestClock, "move the clock").await?;
        let seconds = validate::required(req.seconds, "seconds")?;
        validate::int_range(seconds, "seconds", 0, 100 * 365 * 86_400)?;
        clock.advance(seconds * 1000);
        let done = if req.run_scheduler.unwrap_or(true) { self.run_due_work("test-clock").await? } else { crate::DueWork::default() };
        Ok(AdvanceTestClockResponse {
            now: secs(self.clock.now_ms()),
            rotated: done.rotated,
            destroyed: done.destroyed,
            expired: done.expired,
        })
    }
}
