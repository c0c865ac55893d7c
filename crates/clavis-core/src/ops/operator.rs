//! The root of trust as operators drive it: status, Shamir initialisation and unseal (the
//! unauthenticated operator paths) and ClavisAdmin.Seal.

use crate::api::*;
use crate::operation::Operation;
use crate::{Caller, Kms, KmsError, validate};
use clavis_crypto::random;

/// How long an unseal may take from its first share; after that the shares submitted so far
/// are forgotten and a new unseal (with a new nonce) begins.
const UNSEAL_SESSION_MS: i64 = 10 * 60 * 1000;

impl Kms {
    // ----- root of trust (operator) -----

    /// Whether the server is sealed and its master key's current version, without touching
    /// the database (for metrics).
    pub fn operator_status_local(&self) -> LocalStatus {
        let s = self.root().status();
        LocalStatus { sealed: s.sealed, master_key_version: s.master_key_version }
    }

    /// The root of trust's state (provider, sealed or not, master-key version, unseal progress).
    pub async fn operator_status(&self) -> OperatorStatus {
        let s = self.root().status();
        // Best effort: the rotation state needs the database, which may be down.
        let rotation = if self.root().is_sealed() {
            None
        } else {
            self.settings().get_setting(crate::master_key::ROTATION_SETTING).await.ok().flatten()
        };
        OperatorStatus {
            provider: s.kind.to_owned(),
            initialized: s.initialized,
            sealed: s.sealed,
            master_key_version: s.master_key_version,
            master_key_versions: self.root().versions(),
            rotation,
            shares: s.shares,
            threshold: s.threshold,
            progress: s.progress,
            nonce: None,
        }
    }

    /// Initialises a Shamir root of trust: returns the shares (shown once). Unauthenticated,
    /// like Vault's: only an uninitialised server accepts it.
    pub fn operator_init(&self, req: OperatorInitRequest) -> Result<OperatorInitResponse, KmsError> {
        let shares = validate::required(req.shares, "shares")?;
        let threshold = validate::required(req.threshold, "threshold")?;
        if threshold < 2 || shares < threshold {
            return Err(KmsError::Validation("Need 2 <= Threshold <= Shares <= 255.".into()));
        }
        let shares = self.root().init_shares(shares, threshold).map_err(Self::operator_error)?;
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
        if req.nonce.as_deref().is_some_and(|n| !super::is_unseal_nonce(n)) {
            return Err(KmsError::Validation("Nonce must be the 32 hexadecimal digits returned with the unseal's first share.".into()));
        }
        let nonce = {
            let mut session = self.unseal_session().lock().map_err(|_| KmsError::Internal("unseal session lock poisoned".into()))?;
            let now = self.now_ms();
            let expired = session.as_ref().is_some_and(|(_, started)| now - started > UNSEAL_SESSION_MS);
            // A session whose shares are gone (a failed reconstruction reset them, or a seal)
            // is over too.
            if expired || self.root().status().progress == 0 {
                self.root().reset_unseal().map_err(Self::operator_error)?;
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
            let submitted = self.root().submit_share(share.expose_secret()).map_err(Self::operator_error);
            if submitted.is_err() && self.root().status().progress == 0 || !self.root().is_sealed() {
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
        self.seal_and_forget().map_err(Self::operator_error)?;
        Ok(Empty {})
    }

    /// ClavisAdmin.RotateMasterKey: makes a new master-key version (in the provider the server
    /// was started with, so a file-keyed deployment restarted with `--root-of-trust pkcs11`
    /// migrates into the HSM) and reseals everything under it. Resumes an unfinished rotation
    /// instead of starting another. Operator administrators only.
    pub async fn rotate_master_key(&self, caller: &Caller, req: RotateMasterKeyRequest) -> Result<RotateMasterKeyResponse, KmsError> {
        self.authorize(caller, Operation::RotateMasterKey)?;
        self.require_operator_account(caller, Operation::RotateMasterKey, "rotate the master key").await?;
        self.rotate_master_key_now(req).await
    }
}
