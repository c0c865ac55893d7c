//! The key lifecycle: material versions and rotation (automatic and on demand), scheduled
//! deletion and cancellation, and the background work that rotates and destroys keys when they
//! fall due.
//!
//! Concurrency: every change is a compare-and-swap on the key's revision, so two nodes acting
//! on the same due key produce one rotation or one destruction; the scheduler additionally runs
//! only on the node holding the `scheduler` lease.

use crate::api::*;
use crate::audit::{ServiceEvent, ServiceEventName};
use crate::kernel::key::{Material, material_seal_context};
use crate::kernel::{Access, Key, key_not_found};
use crate::paging::Page;
use crate::types::{KeyState, secs};
use crate::{Caller, Kms, KmsError, validate};
use clavis_crypto::random;
use clavis_store::{DeletionRequest, KeyMaterialRecord, KeyRecord, StoreError};

const DAY_MS: i64 = 86_400_000;
/// AWS's limit on on-demand rotations per key (developer guide, 2025: 25).
pub const MAX_ON_DEMAND_ROTATIONS: usize = 25;
/// How long the scheduler lease lasts; a node renews it on every run.
const SCHEDULER_LEASE_MS: i64 = 30_000;
/// How long a dual-authorization deletion request waits for a second principal (Key Protect:
/// seven days).
pub const DUAL_AUTH_APPROVAL_MS: i64 = 7 * DAY_MS;

/// What one scheduler run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DueWork {
    /// Keys rotated automatically.
    pub rotated: usize,
    /// Keys destroyed at the end of their waiting period.
    pub destroyed: usize,
    /// Keys whose imported material expired.
    pub expired: usize,
    /// Import parameters deleted because they were used or long expired.
    pub purged_import_params: u64,
    /// Secrets destroyed at the end of their recovery window.
    pub secrets_destroyed: usize,
}

impl Kms {
    fn require_state(key: &Key, allowed: &[KeyState]) -> Result<(), KmsError> {
        if allowed.contains(&key.state) { Ok(()) } else { Err(key.invalid_state(key.state)) }
    }

    fn require_rotatable(key: &Key) -> Result<(), KmsError> {
        if key.spec != crate::types::KeySpec::SymmetricDefault || key.origin != crate::types::Origin::AwsKms {
            return Err(KmsError::UnsupportedOperation(format!(
                "{} cannot be rotated: rotation is supported for symmetric keys whose material Clavis generated.",
                key.arn
            )));
        }
        Ok(())
    }

    /// Adds a new material version (`AUTOMATIC` or `ON_DEMAND`); for automatic rotation the next
    /// rotation date moves one period on. Fails with `Conflict` if the key changed meanwhile.
    async fn add_version(&self, key: &Key, rotation_type: &str) -> Result<Key, StoreError> {
        let now = self.now_ms();
        let version = key.rec.current_version + 1;
        let material = random::secret(clavis_crypto::aead::KEY_LEN).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let sealed =
            self.root().seal(&material_seal_context(&key.id, version), &material).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let mut rec = (*key.rec).clone();
        rec.current_version = version;
        if rotation_type == "AUTOMATIC"
            && let (Some(next), Some(days)) = (rec.next_rotation_ms, rec.rotation_period_days)
        {
            // The schedule keeps its rhythm; if the node was down for several periods it
            // rotates once and schedules the next one in the future.
            let period = i64::from(days) * DAY_MS;
            let mut n = next + period;
            while n <= now {
                n += period;
            }
            rec.next_rotation_ms = Some(n);
        }
        let mat = KeyMaterialRecord {
            key_id: rec.key_id.clone(),
            version,
            sealed,
            created_ms: now,
            rotation_type: Some(rotation_type.to_owned()),
        };
        let plain = Material::from_bytes(key.spec, &material).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        self.add_material(key, rec, &mat, plain).await
    }

    /// EnableKeyRotation.
    pub async fn enable_key_rotation(&self, caller: &Caller, req: EnableKeyRotationRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, crate::Operation::EnableKeyRotation)?;
        let days = req.rotation_period_in_days.unwrap_or(365);
        validate::int_range(days, "rotationPeriodInDays", 90, 2560)?;
        let days = u32::try_from(days).unwrap_or(365);
        let params = [crate::kernel::param("kms:RotationPeriodInDays", days)];
        let access = Access::to("EnableKeyRotation").with_params(&params);
        let key = self.key_for_no_alias(caller, access, req.key_id.as_deref(), "keyId").await?;
        Self::require_rotatable(&key)?;
        let now = self.now_ms();
        self.update_key(key, |k| {
            Self::require_state(k, &[KeyState::Enabled])?;
            // Re-enabling with a different period keeps the last rotation as the reference.
            let next = now + i64::from(days) * DAY_MS;
            Ok(Some(KeyRecord { rotation_period_days: Some(days), next_rotation_ms: Some(next), ..(*k.rec).clone() }))
        })
        .await?;
        Ok(Empty {})
    }

    /// DisableKeyRotation.
    pub async fn disable_key_rotation(&self, caller: &Caller, req: KeyIdRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, crate::Operation::DisableKeyRotation)?;
        let key = self.key_for_no_alias(caller, Access::to("DisableKeyRotation"), req.key_id.as_deref(), "keyId").await?;
        Self::require_rotatable(&key)?;
        self.update_key(key, |k| {
            Self::require_state(k, &[KeyState::Enabled])?;
            if k.rec.rotation_period_days.is_none() {
                return Ok(None);
            }
            Ok(Some(KeyRecord { rotation_period_days: None, next_rotation_ms: None, ..(*k.rec).clone() }))
        })
        .await?;
        Ok(Empty {})
    }

    /// GetKeyRotationStatus (imported keys report automatic rotation off).
    pub async fn get_key_rotation_status(&self, caller: &Caller, req: KeyIdRequest) -> Result<GetKeyRotationStatusResponse, KmsError> {
        self.authorize(caller, crate::Operation::GetKeyRotationStatus)?;
        let key = self.key_for_no_alias(caller, Access::to("GetKeyRotationStatus"), req.key_id.as_deref(), "keyId").await?;
        if key.origin != crate::types::Origin::External {
            Self::require_rotatable(&key)?;
        }
        Ok(GetKeyRotationStatusResponse {
            key_rotation_enabled: key.rec.rotation_period_days.is_some(),
            key_id: key.arn.clone(),
            rotation_period_in_days: key.rec.rotation_period_days,
            next_rotation_date: key.rec.next_rotation_ms.map(secs),
            // On-demand rotations complete within the call, so none is ever in progress.
            on_demand_rotation_start_date: None,
        })
    }

    /// GetKeyLastUsage: the key's last successful cryptographic operation (as this node saw
    /// it, or as any node wrote it: nodes write at most once per key per minute), and when
    /// tracking began. Key id or ARN only, as on AWS; no cross-account use.
    pub async fn get_key_last_usage(&self, caller: &Caller, req: KeyIdRequest) -> Result<GetKeyLastUsageResponse, KmsError> {
        self.authorize(caller, crate::Operation::GetKeyLastUsage)?;
        let key = self.key_for_no_alias(caller, Access::to("GetKeyLastUsage"), req.key_id.as_deref(), "keyId").await?;
        let last = self.key_last_use(&key.rec.key_id).await?;
        let tracking_start = self.tracking_start_ms().await?.max(key.rec.creation_date_ms);
        Ok(GetKeyLastUsageResponse {
            key_id: key.rec.key_id.clone(),
            key_last_usage: last.map_or_else(KeyLastUsageData::default, |l| KeyLastUsageData {
                operation: Some(l.operation),
                timestamp: Some(secs(l.time_ms)),
                cloud_trail_event_id: Some(l.event_id),
                kms_request_id: Some(l.request_id),
            }),
            tracking_start_date: secs(tracking_start),
            key_creation_date: secs(key.rec.creation_date_ms),
        })
    }

    /// AWS's per-key limit on on-demand rotations.
    async fn check_on_demand_limit(&self, key: &Key) -> Result<(), KmsError> {
        let materials = self.material_records(key).await?;
        let on_demand = materials.iter().filter(|m| m.rotation_type.as_deref() == Some("ON_DEMAND")).count();
        if on_demand >= MAX_ON_DEMAND_ROTATIONS {
            return Err(KmsError::LimitExceeded(format!(
                "{} has reached the limit of {MAX_ON_DEMAND_ROTATIONS} on-demand rotations.",
                key.arn
            )));
        }
        Ok(())
    }

    /// RotateKeyOnDemand: a new material version now; the automatic schedule is unchanged. For
    /// an imported key the new version is the material staged with ImportType NEW_KEY_MATERIAL.
    pub async fn rotate_key_on_demand(&self, caller: &Caller, req: KeyIdRequest) -> Result<KeyIdResponse, KmsError> {
        self.authorize(caller, crate::Operation::RotateKeyOnDemand)?;
        let mut key = self.key_for_no_alias(caller, Access::to("RotateKeyOnDemand"), req.key_id.as_deref(), "keyId").await?;
        if key.origin == crate::types::Origin::External && key.spec == crate::types::KeySpec::SymmetricDefault {
            Self::require_state(&key, &[KeyState::Enabled])?;
            self.check_on_demand_limit(&key).await?;
            return Ok(KeyIdResponse { key_id: self.rotate_imported(&key).await?.arn });
        }
        Self::require_rotatable(&key)?;
        for _ in 0..5 {
            Self::require_state(&key, &[KeyState::Enabled])?;
            self.check_on_demand_limit(&key).await?;
            match self.add_version(&key, "ON_DEMAND").await {
                Ok(k) => return Ok(KeyIdResponse { key_id: k.arn }),
                Err(StoreError::Conflict) => key = self.load_key_fresh(&key).await?,
                Err(StoreError::NotFound) => return Err(key_not_found(&key.rec.region, &key.rec.account_id, &key.rec.key_id)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(KmsError::Unavailable("too many concurrent updates to the key; retry".into()))
    }

    /// ListKeyRotations: completed rotations (not the initial material), oldest first.
    pub async fn list_key_rotations(&self, caller: &Caller, req: ListForKeyRequest) -> Result<ListKeyRotationsResponse, KmsError> {
        self.authorize(caller, crate::Operation::ListKeyRotations)?;
        let limit = validate::limit(req.limit, 100, 1000)?;
        let after = match validate::marker(req.marker.as_deref())? {
            Some(m) => m.parse::<u32>().map_err(|_| KmsError::InvalidMarker)?,
            None => 1,
        };
        let key = self.key_for_no_alias(caller, Access::to("ListKeyRotations"), req.key_id.as_deref(), "keyId").await?;
        if key.origin != crate::types::Origin::External {
            Self::require_rotatable(&key)?;
        }
        // Staged imported material is not a rotation until RotateKeyOnDemand.
        let versions: Vec<KeyMaterialRecord> = self
            .material_records(&key)
            .await?
            .into_iter()
            .filter(|m| m.version > after && m.rotation_type.as_deref().is_some_and(|t| t != crate::ops::byok::PENDING_ROTATION))
            .collect();
        let Page { items, next_marker, truncated } = Page::cut(versions, limit, |m| m.version.to_string());
        let rotations = items
            .into_iter()
            .map(|m| RotationsListEntry {
                key_id: key.arn.clone(),
                rotation_date: secs(m.created_ms),
                rotation_type: m.rotation_type.unwrap_or_default(),
            })
            .collect();
        Ok(ListKeyRotationsResponse { rotations, next_marker, truncated })
    }

    /// ScheduleKeyDeletion: PendingDeletion for 7–30 days (default 30), then destruction.
    ///
    /// Under dual authorization (Clavis extension) the first call only records a request; the
    /// deletion is scheduled when a different principal calls ScheduleKeyDeletion on the key
    /// within seven days. Until then the key stays usable and CancelKeyDeletion withdraws the
    /// request.
    pub async fn schedule_key_deletion(
        &self,
        caller: &Caller,
        req: ScheduleKeyDeletionRequest,
    ) -> Result<ScheduleKeyDeletionResponse, KmsError> {
        self.authorize(caller, crate::Operation::ScheduleKeyDeletion)?;
        let days = req.pending_window_in_days.unwrap_or(30);
        validate::int_range(days, "pendingWindowInDays", 7, 30)?;
        let window_days = u32::try_from(days).unwrap_or(30);
        let params = [crate::kernel::param("kms:ScheduleKeyDeletionPendingWindowInDays", window_days)];
        let access = Access::to("ScheduleKeyDeletion").with_params(&params);
        let key = self.key_for_no_alias(caller, access, req.key_id.as_deref(), "keyId").await?;
        self.refuse_service_key(&key, "scheduled for deletion").await?;
        let now = self.now_ms();
        let me = caller.principal_arn.clone();
        // The request this call approved, if any (set inside the retried closure).
        let approved: std::sync::Mutex<Option<DeletionRequest>> = std::sync::Mutex::new(None);
        let key = self
            .update_key(key, |k| {
                // A retried attempt must not report an approval from an attempt that lost.
                if let Ok(mut a) = approved.lock() {
                    *a = None;
                }
                Self::require_state(k, &[KeyState::Enabled, KeyState::Disabled, KeyState::PendingImport])?;
                let mut rec = (*k.rec).clone();
                if !rec.dual_auth {
                    rec.key_state = KeyState::PendingDeletion.as_str().to_owned();
                    rec.deletion_date_ms = Some(now + days * DAY_MS);
                    return Ok(Some(rec));
                }
                let open = rec.deletion_request.clone().filter(|r| now - r.requested_ms <= DUAL_AUTH_APPROVAL_MS);
                match open {
                    Some(r) if r.requested_by != me => {
                        rec.key_state = KeyState::PendingDeletion.as_str().to_owned();
                        rec.deletion_date_ms = Some(now + i64::from(r.window_days) * DAY_MS);
                        rec.deletion_request = None;
                        if let Ok(mut a) = approved.lock() {
                            *a = Some(r);
                        }
                        Ok(Some(rec))
                    }
                    Some(_) => Ok(None),
                    None => {
                        rec.deletion_request = Some(DeletionRequest { requested_by: me.clone(), requested_ms: now, window_days });
                        Ok(Some(rec))
                    }
                }
            })
            .await?;
        let approved = approved.lock().ok().and_then(|mut a| a.take());
        let dual = if key.rec.dual_auth {
            match (&approved, &key.rec.deletion_request) {
                (Some(r), _) => Some(DualAuthorizationStatus {
                    status: "Approved".into(),
                    requested_by: r.requested_by.clone(),
                    approved_by: Some(me.clone()),
                    approve_by: secs(r.requested_ms + DUAL_AUTH_APPROVAL_MS),
                }),
                (None, Some(r)) => Some(DualAuthorizationStatus {
                    status: "PendingApproval".into(),
                    requested_by: r.requested_by.clone(),
                    approved_by: None,
                    approve_by: secs(r.requested_ms + DUAL_AUTH_APPROVAL_MS),
                }),
                (None, None) => None,
            }
        } else {
            None
        };
        let pending_window_in_days = match (&approved, &key.rec.deletion_request) {
            (Some(r), _) | (None, Some(r)) => i64::from(r.window_days),
            _ => days,
        };
        Ok(ScheduleKeyDeletionResponse {
            key_id: key.arn.clone(),
            deletion_date: key.rec.deletion_date_ms.map(secs),
            key_state: key.state.as_str().to_owned(),
            pending_window_in_days,
            dual_authorization: dual,
        })
    }

    /// CancelKeyDeletion: PendingDeletion -> Disabled (as AWS does); under dual authorization it
    /// also withdraws a deletion request that waits for approval (the key's state is unchanged).
    pub async fn cancel_key_deletion(&self, caller: &Caller, req: KeyIdRequest) -> Result<KeyIdResponse, KmsError> {
        self.authorize(caller, crate::Operation::CancelKeyDeletion)?;
        let key = self.key_for_no_alias(caller, Access::to("CancelKeyDeletion"), req.key_id.as_deref(), "keyId").await?;
        let key = self
            .update_key(key, |k| {
                if k.state == KeyState::PendingDeletion {
                    return Ok(Some(KeyRecord {
                        key_state: KeyState::Disabled.as_str().to_owned(),
                        deletion_date_ms: None,
                        ..(*k.rec).clone()
                    }));
                }
                if k.rec.deletion_request.is_some() {
                    return Ok(Some(KeyRecord { deletion_request: None, ..(*k.rec).clone() }));
                }
                Err(KmsError::InvalidState(format!("{} is not pending deletion.", k.arn)))
            })
            .await?;
        Ok(KeyIdResponse { key_id: key.arn })
    }

    /// ClavisAdmin.EnableKeyDualAuthorization: from now on deleting the key needs two
    /// principals. Irreversible, so that one principal cannot switch it off and delete alone.
    pub async fn enable_key_dual_authorization(&self, caller: &Caller, req: EnableKeyDualAuthorizationRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, crate::Operation::EnableKeyDualAuthorization)?;
        let key = self.key_for_no_alias(caller, Access::to("EnableKeyDualAuthorization"), req.key_id.as_deref(), "keyId").await?;
        self.update_key(key, |k| {
            Self::require_state(k, &[KeyState::Enabled, KeyState::Disabled, KeyState::PendingImport])?;
            if k.rec.dual_auth {
                return Ok(None);
            }
            Ok(Some(KeyRecord { dual_auth: true, ..(*k.rec).clone() }))
        })
        .await?;
        Ok(Empty {})
    }

    /// One scheduler pass: if this node holds the scheduler lease, rotate every key whose
    /// automatic rotation is due (Enabled keys only; a disabled key rotates once re-enabled),
    /// erase imported material past its `ValidTo`, destroy every key whose deletion date has
    /// passed, and do the secrets' due work (`Kms::destroy_due_secrets`).
    ///
    /// Each of these changes is an `AwsServiceEvent` whose record is durable before the change
    /// is made (`Kms::service_change`). If the audit log cannot be written, the pass stops
    /// there with `AuditUnavailable`: no further change is made until a later pass can record
    /// it. While the root of trust is sealed (the audit key with it) the pass does nothing.
    pub async fn run_due_work(&self, node_id: &str) -> Result<DueWork, KmsError> {
        let now = self.now_ms();
        let mut done = DueWork::default();
        // Every node writes its own keys' last uses (at most once per key per minute).
        if let Err(e) = self.flush_key_usage().await {
            tracing::warn!(error = %e, "writing key last-usage failed; retrying at the next run");
        }
        if self.root().is_sealed() {
            return Ok(done);
        }
        if !self.settings().try_lease("scheduler", node_id, now, now + SCHEDULER_LEASE_MS).await? {
            return Ok(done);
        }
        for key in self.keys_due(now, 1000).await? {
            if key.state == KeyState::PendingDeletion && key.rec.deletion_date_ms.is_some_and(|d| d <= now) {
                let event = ServiceEvent { name: ServiceEventName::DeleteKey, arn: &key.arn, request_id: None };
                match self.service_change(&event, self.destroy_key(&key), |e| not_made(&key.arn, e)).await? {
                    Ok(()) => {
                        done.destroyed += 1;
                        tracing::info!(key = %key.arn, "key destroyed at the end of its deletion window");
                    }
                    Err(StoreError::Conflict | StoreError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            } else if matches!(key.state, KeyState::Enabled | KeyState::Disabled) && key.rec.valid_to_ms.is_some_and(|v| v <= now) {
                // Imported material past its ValidTo: erased, the key waits for a re-import.
                let event = ServiceEvent { name: ServiceEventName::DeleteExpiredKeyMaterial, arn: &key.arn, request_id: None };
                let change = self.remove_imported_material(&key, "expired");
                match self.service_change(&event, change, |e| KmsError::InvalidState(format!("not made: {e}"))).await? {
                    Ok(()) => done.expired += 1,
                    Err(KmsError::Unavailable(_)) => {}
                    Err(e) => return Err(e),
                }
            } else if key.state == KeyState::Enabled && key.rec.next_rotation_ms.is_some_and(|n| n <= now) {
                let event = ServiceEvent { name: ServiceEventName::RotateKey, arn: &key.arn, request_id: None };
                match self.service_change(&event, self.add_version(&key, "AUTOMATIC"), |e| not_made(&key.arn, e)).await? {
                    Ok(k) => {
                        done.rotated += 1;
                        tracing::info!(key = %k.arn, version = k.rec.current_version, "key rotated automatically");
                    }
                    Err(StoreError::Conflict | StoreError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        done.secrets_destroyed = self.destroy_due_secrets(now).await?;
        // Import parameters of keys no one asks about again would otherwise stay for ever (and
        // be resealed by every master-key rotation). Not an event of its own: the parameters
        // deleted were used (their use is on record) or expired, and so no longer usable.
        done.purged_import_params =
            self.imports().purge_import_params(None, now.saturating_sub(crate::kernel::key::EXPIRED_PARAMS_KEPT_MS)).await?;
        Ok(done)
    }
}

/// Why a change the scheduler announced in the audit log was not made, for the record that
/// says so ([`Kms::service_change`]): the key or secret changed (or went) meanwhile, or the
/// store failed.
pub(crate) fn not_made(arn: &str, e: &StoreError) -> KmsError {
    match e {
        StoreError::Conflict | StoreError::NotFound => {
            KmsError::InvalidState(format!("{arn} changed before the change was made; it was not made."))
        }
        StoreError::Unavailable(m) => KmsError::Unavailable(m.clone()),
        other => KmsError::Internal(format!("storage: {other}")),
    }
}
