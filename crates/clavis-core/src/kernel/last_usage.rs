//! Key last-usage tracking for `GetKeyLastUsage`: the last successful cryptographic operation
//! on each key, noted in memory once the request's audit record is durable, and written to the
//! store at most once per key per minute per node ([`WRITE_INTERVAL_MS`]), never on the
//! request path.
//!
//! Storage: one setting per key, `key-last-usage/<key id>`, holding the JSON of [`LastUse`];
//! a node writes its entry only if it is newer than the stored one. The deployment's tracking
//! start is the setting `key-last-usage-tracking-start` (Unix ms), set on first start.

use super::Kms;
use crate::KmsError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A node writes a key's last use at most this often.
pub const WRITE_INTERVAL_MS: i64 = 60_000;
/// The setting holding when this deployment began tracking (Unix ms).
pub const TRACKING_START_SETTING: &str = "key-last-usage-tracking-start";
/// The most keys tracked in memory between writes; beyond it, new uses are written at the
/// next flush only if room was made (the oldest written entries are forgotten first).
const MAX_TRACKED: usize = 100_000;

/// The operations `GetKeyLastUsage` reports (AWS's `KeyLastUsageTrackingOperation`).
pub const TRACKED_OPERATIONS: [&str; 14] = [
    "Decrypt",
    "DeriveSharedSecret",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateMac",
    "ReEncrypt",
    "Sign",
    "Verify",
    "VerifyMac",
    "Encapsulate",
    "Decapsulate",
];

/// One key's last successful cryptographic use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastUse {
    /// The operation.
    pub operation: String,
    /// When (Unix ms).
    pub time_ms: i64,
    /// The request id.
    pub request_id: String,
    /// The audit record's `eventID`.
    pub event_id: String,
}

/// This node's entries: the last use, and when it was last written (None: never).
#[derive(Default)]
pub(crate) struct Tracker {
    entries: std::sync::Mutex<HashMap<String, (LastUse, Option<i64>)>>,
    /// The deployment's tracking start, once read.
    tracking_start: std::sync::OnceLock<i64>,
}

fn setting_name(key_id: &str) -> String {
    format!("key-last-usage/{key_id}")
}

/// The key id of a key ARN (`arn:aws:kms:REGION:ACCOUNT:key/ID`), if it is one.
fn key_id_of(arn: &str) -> Option<&str> {
    arn.strip_prefix("arn:aws:kms:").and_then(|rest| rest.split_once(":key/")).map(|(_, id)| id)
}

impl Kms {
    /// Notes a successful request's use of the keys in `arns` (its audit record's resources),
    /// if `operation` is one `GetKeyLastUsage` tracks. Memory only.
    pub(crate) fn note_key_use(&self, arns: &[String], operation: &str, time_ms: i64, request_id: &str, event_id: &str) {
        // An external key store's calls (AWS KMS using the key through the XKS proxy API) are
        // Encrypt and Decrypt uses of the key.
        let operation = match operation {
            "XksEncrypt" => "Encrypt",
            "XksDecrypt" => "Decrypt",
            other => other,
        };
        if !TRACKED_OPERATIONS.contains(&operation) {
            return;
        }
        let Ok(mut entries) = self.last_usage.entries.lock() else { return };
        for id in arns.iter().filter_map(|a| key_id_of(a)) {
            let use_ =
                LastUse { operation: operation.to_owned(), time_ms, request_id: request_id.to_owned(), event_id: event_id.to_owned() };
            if let Some((last, _)) = entries.get_mut(id) {
                if last.time_ms <= time_ms {
                    *last = use_;
                }
                continue;
            }
            if entries.len() >= MAX_TRACKED {
                // Full: forget entries already written (the store has them).
                entries.retain(|_, (last, written)| written.is_none_or(|w| w < last.time_ms));
            }
            if entries.len() < MAX_TRACKED {
                entries.insert(id.to_owned(), (use_, None));
            }
        }
    }

    /// Writes the last uses not written in the last `WRITE_INTERVAL_MS` (each only if newer
    /// than what the store holds). Run by the scheduler on every node. Returns how many were
    /// written.
    pub async fn flush_key_usage(&self) -> Result<usize, KmsError> {
        // The first run (at start) fixes the deployment's tracking start.
        self.tracking_start_ms().await?;
        let now = self.clock.now_ms();
        let due: Vec<(String, LastUse)> = match self.last_usage.entries.lock() {
            Ok(entries) => entries
                .iter()
                .filter(|(_, (last, written))| written.is_none_or(|w| w < last.time_ms && now - w >= WRITE_INTERVAL_MS))
                .map(|(id, (last, _))| (id.clone(), last.clone()))
                .collect(),
            Err(_) => return Ok(0),
        };
        let mut count = 0;
        for (id, last) in due {
            let stored = self.stored_last_use(&id).await?;
            if stored.as_ref().is_none_or(|s| s.time_ms < last.time_ms) {
                let json = serde_json::to_string(&last).map_err(|e| KmsError::Internal(e.to_string()))?;
                self.store.set_setting(&setting_name(&id), &json).await?;
                count += 1;
            }
            if let Ok(mut entries) = self.last_usage.entries.lock()
                && let Some((_, written)) = entries.get_mut(&id)
            {
                *written = Some(now);
            }
        }
        Ok(count)
    }

    async fn stored_last_use(&self, key_id: &str) -> Result<Option<LastUse>, KmsError> {
        Ok(self.store.get_setting(&setting_name(key_id)).await?.and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// The key's last use: this node's (even if not yet written) or the store's (every
    /// node's, as of their last write), whichever is later.
    pub(crate) async fn key_last_use(&self, key_id: &str) -> Result<Option<LastUse>, KmsError> {
        let local = self.last_usage.entries.lock().ok().and_then(|e| e.get(key_id).map(|(l, _)| l.clone()));
        let stored = self.stored_last_use(key_id).await?;
        Ok(match (local, stored) {
            (Some(l), Some(s)) => Some(if l.time_ms >= s.time_ms { l } else { s }),
            (l, s) => l.or(s),
        })
    }

    /// When this deployment began tracking key use (Unix ms): stored on the first call (the
    /// scheduler's first run at start, so before any use is written), then read from memory.
    pub async fn tracking_start_ms(&self) -> Result<i64, KmsError> {
        if let Some(v) = self.last_usage.tracking_start.get() {
            return Ok(*v);
        }
        let now = self.clock.now_ms().to_string();
        let v = self.store.init_setting(TRACKING_START_SETTING, &now).await?.parse().unwrap_or(0);
        let _ = self.last_usage.tracking_start.set(v);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_come_from_key_arns_only() {
        assert_eq!(
            key_id_of("arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
            Some("1234abcd-12ab-34cd-56ef-1234567890ab")
        );
        assert_eq!(key_id_of("arn:aws:kms:us-east-1:111122223333:alias/x"), None);
        assert_eq!(key_id_of("arn:aws:secretsmanager:us-east-1:111122223333:secret:x"), None);
    }
}
