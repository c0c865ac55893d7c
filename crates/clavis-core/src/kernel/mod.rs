//! The kernel: the state of [`Kms`] and the rules every operation relies on. Its fields are
//! private to this module and its children; the operation modules (`crate::ops`) reach keys,
//! material, caches and storage only through the methods here, so that, by privacy rather
//! than by review:
//!
//! - an operation cannot read a key without resolving it through [`Kms::key_for`] and its
//!   kin, which authorize (the key-family store is not reachable from `ops`; the other
//!   families are, through narrow accessors);
//! - every cache update happens here, under the guard against a race with sealing;
//! - a change to a key's record is a compare-and-swap ([`Kms::update_key`]);
//! - no front end returns a result before its audit record is durable ([`Kms::audited`]), and
//!   the scheduler makes no change before its record is durable ([`Kms::service_change`]).
//!
//! Children: `authz` (the identity and key steps of authorization, grants' part in it, the
//! policy lockout check), `resolve` (key references to authorized keys), `keystore` (key
//! records and material, and their caches), `credentials` (access keys, initialisation, the
//! root-of-trust canary), `sealing` (sealed/ready state), `master_key` (master-key rotation:
//! resealing everything sealed), `key` (the in-memory key and its caches).

pub(crate) mod authz;
mod credentials;
mod grant_check;
pub(crate) mod key;
mod keystore;
pub mod last_usage;
pub mod master_key;
mod resolve;
mod sealing;
mod secret_cache;

pub(crate) use authz::{Access, LockoutKey, param, request_tag_params};
pub(crate) use grant_check::GrantSpec;
pub(crate) use key::Key;
pub(crate) use resolve::{alias_not_found, key_not_found};

use crate::audit::{self, AuditSink};
use crate::types::{AccountId, Region, Role};
use crate::{Clock, KmsError, TestClock};
use clavis_crypto::SecretBytes;
use clavis_crypto::random;
use clavis_crypto::seal::RootOfTrust;
use clavis_store::{AliasStore, GrantStore, IdentityStore, ImportStore, SecretStore, SettingStore, Store, TagStore};
use key::{KeyCache, MaterialCache};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

tokio::task_local! {
    /// The records of nested calls of the request [`Kms::audited`] is running.
    static NESTED_RECORDS: std::cell::RefCell<Vec<Vec<u8>>>;
}

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
    /// The secret rotation executors, by name (`clavis serve --rotation-executor NAME=PATH`).
    pub rotation_executors: std::collections::BTreeMap<String, Arc<dyn crate::executor::RotationExecutor>>,
}

/// The KMS service: operations over a store, a root of trust and a clock.
pub struct Kms {
    store: Arc<dyn Store>,
    root: Arc<dyn RootOfTrust>,
    clock: Arc<dyn Clock>,
    materials: MaterialCache,
    keys: KeyCache,
    credentials: RwLock<HashMap<String, (Arc<Credential>, std::time::Instant)>>,
    audit: Option<Arc<dyn AuditSink>>,
    test_clock: Option<Arc<TestClock>>,
    /// Set once what needs the master key at start (audit log, initialisation) is done; until
    /// then requests are refused as sealed.
    ready: std::sync::atomic::AtomicBool,
    rotating: std::sync::atomic::AtomicBool,
    /// This process's name for leases.
    node_id: String,
    crash_after_reseals: Option<u64>,
    /// Secrets' records, version lists and read versions (ciphertext), briefly.
    secrets: secret_cache::SecretCache,
    /// The secret rotation executors, by name.
    rotation_executors: std::collections::BTreeMap<String, Arc<dyn crate::executor::RotationExecutor>>,
    /// The unseal in progress: its nonce and when its first share arrived (Unix ms).
    unseal_session: std::sync::Mutex<Option<(String, i64)>>,
    /// Keys' last cryptographic uses seen by this node (`GetKeyLastUsage`).
    last_usage: last_usage::Tracker,
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
            secrets: secret_cache::SecretCache::default(),
            rotation_executors: config.rotation_executors,
            last_usage: last_usage::Tracker::default(),
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
        // Records of the calls the core makes for this request on the caller's behalf (the KMS
        // calls of a Secrets Manager request) wait here and are appended with its own record,
        // in one batch: none is durable later than the request's own, and none costs a wait.
        let (mut outcome, nested) = NESTED_RECORDS
            .scope(std::cell::RefCell::new(Vec::new()), async {
                let outcome = work.await;
                (outcome, NESTED_RECORDS.with(std::cell::RefCell::take))
            })
            .await;
        let Some(sink) = &self.audit else { return outcome.result };
        // While sealed nothing can succeed (every request fails authenticating), and a refusal
        // for being sealed has no effect to record. Not so for a request that authenticated, or
        // made calls of its own, before a seal landed mid-request: those may have changed
        // something, so their records are written (or the request fails trying).
        if !hold && matches!(outcome.result, Err(KmsError::Sealed)) && self.is_sealed() && outcome.caller.is_none() && nested.is_empty() {
            return outcome.result;
        }
        // A front end may leave out the record of an unauthenticated refusal it rate-limited
        // (a later record counts it); never that of anything that ran.
        if outcome.suppress && outcome.caller.is_none() && outcome.result.is_err() {
            release();
            return outcome.result;
        }
        let mut event_id = uuid::Uuid::encode_buffer();
        let event_id = &*uuid::Uuid::new_v4().hyphenated().encode_lower(&mut event_id);
        let suppressed_before = outcome.suppressed_before;
        let record = record_of(event, event_id, time_ms, started, &mut outcome, suppressed_before, hold);
        let appended = if hold {
            if outcome.result.is_err() { sink.hold_refusal(record).await } else { sink.append_or_hold(record).await }
        } else if nested.is_empty() {
            sink.append(record).await
        } else {
            let mut records = nested;
            records.push(record);
            sink.append_many(records).await
        };
        match appended {
            Ok(()) => {
                if outcome.result.is_ok()
                    && let Some(caller) = &outcome.caller
                {
                    self.note_key_use(&caller.resources.arns(), event.operation, time_ms, event.request_id, event_id);
                }
                outcome.result
            }
            Err(e) => Err(KmsError::AuditUnavailable(e.to_string())),
        }
    }

    /// Runs a call the core makes on a caller's behalf inside a request (Secrets Manager's
    /// GenerateDataKey and Decrypt), with its own record. Inside [`Kms::audited`] the record is
    /// appended with the request's own, in the same batch (so it is durable before anything of
    /// the request leaves, at no extra wait); outside it, it is appended before the result is
    /// released.
    pub(crate) async fn audited_nested<T>(
        &self,
        event: &audit::RequestEvent<'_>,
        work: impl Future<Output = audit::Outcome<T>>,
    ) -> Result<T, KmsError> {
        let time_ms = self.clock.now_ms();
        let started = std::time::Instant::now();
        let mut outcome = work.await;
        let Some(sink) = &self.audit else { return outcome.result };
        let mut event_id = uuid::Uuid::encode_buffer();
        let event_id = &*uuid::Uuid::new_v4().hyphenated().encode_lower(&mut event_id);
        if outcome.result.is_ok()
            && let Some(caller) = &outcome.caller
        {
            // Appended with the outer request's record, which fails the request if it cannot be.
            self.note_key_use(&caller.resources.arns(), event.operation, time_ms, event.request_id, event_id);
        }
        let record = record_of(event, event_id, time_ms, started, &mut outcome, 0, false);
        let mut pending = Some(record);
        let _ = NESTED_RECORDS.try_with(|n| {
            if let Some(r) = pending.take() {
                n.borrow_mut().push(r);
            }
        });
        if let Some(record) = pending {
            sink.append(record).await.map_err(|e| KmsError::AuditUnavailable(e.to_string()))?;
        }
        outcome.result
    }

    /// Runs `change`, a change the service makes on its own (the scheduler's work: no caller,
    /// no request), only once its record is durable: the scheduler's side of invariant 5.
    ///
    /// The record is written **before** the change, naming the change as it will be made, so
    /// that no change is ever visible without its durable record (a crash between the two
    /// leaves a record of a change the next pass makes, and records, again). If the record
    /// cannot be written the change does not run and the result is `Err(AuditUnavailable)`:
    /// the caller must then stop making changes. If the change itself fails (the key or secret
    /// changed meanwhile, a storage outage), a second record of the same event with
    /// `errorCode`/`errorMessage` (from `why`) says it was not made; if that one cannot be
    /// written either, the result is `Err(AuditUnavailable)` too. Otherwise the change's own
    /// result. Without an audit sink (`--dangerous-no-audit`) the change simply runs.
    pub(crate) async fn service_change<T, E>(
        &self,
        event: &audit::ServiceEvent<'_>,
        change: impl Future<Output = Result<T, E>>,
        why: impl FnOnce(&E) -> KmsError,
    ) -> Result<Result<T, E>, KmsError> {
        let announced = self.record_service_event(event, None, None).await?;
        let result = change.await;
        if let (Err(e), Some(announced)) = (&result, &announced) {
            self.record_service_event(event, Some(&why(e)), Some(announced)).await?;
        }
        Ok(result)
    }

    /// Appends the record of a service event ([`Kms::service_change`]; alone for an event that
    /// reports an outcome rather than makes a change, such as `RotationSucceeded`) and returns
    /// its `eventID`, or `None` when auditing is disabled. Appended directly, never with the
    /// records of a request that may be running ([`Kms::audited`] appends those after its work):
    /// it must be durable before the change it describes.
    pub(crate) async fn record_service_event(
        &self,
        event: &audit::ServiceEvent<'_>,
        error: Option<&KmsError>,
        not_made: Option<&str>,
    ) -> Result<Option<String>, KmsError> {
        let Some(sink) = &self.audit else { return Ok(None) };
        let event_id = uuid::Uuid::new_v4().hyphenated().to_string();
        let record = audit::service_record(event, &event_id, self.clock.now_ms(), error, not_made);
        match sink.append(record).await {
            Ok(()) => Ok(Some(event_id)),
            Err(e) => {
                tracing::error!(
                    event = event.name.name(),
                    resource = event.arn,
                    error = %e,
                    "the audit log cannot be written: the scheduler makes no further change until its next run"
                );
                Err(KmsError::AuditUnavailable(e.to_string()))
            }
        }
    }

    /// The current time (Unix milliseconds) by the service's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// A request's record from what its front end reported, `started` to now being its duration
/// (the decoded members are taken from `outcome`; its result stays).
fn record_of<T>(
    event: &audit::RequestEvent<'_>,
    event_id: &str,
    time_ms: i64,
    started: std::time::Instant,
    outcome: &mut audit::Outcome<T>,
    suppressed_before: u64,
    operator: bool,
) -> Vec<u8> {
    audit::record(audit::RecordInput {
        event,
        event_id,
        time_ms,
        duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        caller: outcome.caller.as_ref(),
        request_parameters: outcome.request_parameters.take(),
        response_elements: outcome.response_elements.take(),
        error: outcome.result.as_ref().err(),
        suppressed_before,
        operator,
    })
}

/// Narrow views of storage for the operation modules: every family but keys and material, whose
/// reads go through the resolvers (authorization) and whose writes through the keystore.
impl Kms {
    pub(crate) fn aliases(&self) -> &dyn AliasStore {
        &*self.store
    }

    pub(crate) fn tags(&self) -> &dyn TagStore {
        &*self.store
    }

    pub(crate) fn grant_store(&self) -> &dyn GrantStore {
        &*self.store
    }

    pub(crate) fn identities(&self) -> &dyn IdentityStore {
        &*self.store
    }

    pub(crate) fn imports(&self) -> &dyn ImportStore {
        &*self.store
    }

    pub(crate) fn settings(&self) -> &dyn SettingStore {
        &*self.store
    }

    pub(crate) fn secret_store(&self) -> &dyn SecretStore {
        &*self.store
    }

    /// A secret's record and version list (without values), from the cache or the store.
    pub(crate) async fn secret_snapshot(&self, arn: &str) -> Result<Option<secret_cache::CachedSecret>, KmsError> {
        if let Some(s) = self.secrets.get(arn) {
            clavis_metrics::cache_lookup("secret", true);
            return Ok(Some(s));
        }
        clavis_metrics::cache_lookup("secret", false);
        let Some(record) = self.store.get_secret(arn).await? else { return Ok(None) };
        let versions = self.store.list_secret_versions(arn).await?;
        let snapshot = secret_cache::CachedSecret { record, versions };
        self.secrets.put(snapshot.clone());
        Ok(Some(snapshot))
    }

    /// The ARN of the secret with this name in an account and region, from the cache or the
    /// store.
    pub(crate) async fn secret_arn_by_name(&self, account: &str, region: &str, name: &str) -> Result<Option<String>, KmsError> {
        if let Some(arn) = self.secrets.arn_of(account, region, name) {
            return Ok(Some(arn));
        }
        Ok(self.store.get_secret_by_name(account, region, name).await?.map(|s| s.arn))
    }

    /// One version of a secret with its value (ciphertext), from the cache or the store.
    pub(crate) async fn secret_version(&self, arn: &str, version_id: &str) -> Result<Option<clavis_store::SecretVersionRecord>, KmsError> {
        if let Some(v) = self.secrets.version(arn, version_id) {
            return Ok(Some(v));
        }
        let found = self.store.get_secret_version(arn, version_id).await?;
        if let Some(v) = &found {
            self.secrets.put_version(v.clone());
        }
        Ok(found)
    }

    /// The rotation executor registered under `name`.
    pub(crate) fn rotation_executor(&self, name: &str) -> Option<Arc<dyn crate::executor::RotationExecutor>> {
        self.rotation_executors.get(name).cloned()
    }

    /// Forgets what this node cached of a secret (after it changed it, or tried to).
    pub(crate) fn forget_secret(&self, arn: &str) {
        self.secrets.forget(arn);
    }

    /// The root of trust, for sealing new material and secrets (unsealing stored material is
    /// the keystore's).
    pub(crate) fn root(&self) -> &dyn RootOfTrust {
        &*self.root
    }

    /// The audit sink, unless auditing is disabled.
    pub(crate) fn audit_sink(&self) -> Option<&Arc<dyn AuditSink>> {
        self.audit.as_ref()
    }

    /// The movable clock, when the server runs with the test-only clock.
    pub(crate) fn test_clock(&self) -> Option<&Arc<TestClock>> {
        self.test_clock.as_ref()
    }

    /// The unseal in progress (ops::operator keeps its rules).
    pub(crate) fn unseal_session(&self) -> &std::sync::Mutex<Option<(String, i64)>> {
        &self.unseal_session
    }
}
