//! The secrets cache: a secret's record and version list, and the versions read, served from
//! memory for at most [`SECRET_CACHE_TTL`], so a GetSecretValue needs no store read while a
//! secret is read often. As with the key cache, a change made through this node replaces its
//! entries at once (every write forgets the secret), and one made on another node sharing the
//! database is in force here within one second. Entries are ciphertext and metadata, never a
//! value in clear.

use clavis_store::{SecretRecord, SecretVersionRecord};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// How long a cached secret may be served (as [`super::key::KEY_CACHE_TTL`]).
pub(crate) const SECRET_CACHE_TTL: Duration = Duration::from_millis(900);
/// Past this many entries a map is cleared and refills on demand (a version may hold 64 KiB of
/// ciphertext, so the version map is the smaller).
const MAX_SECRETS: usize = 10_000;
const MAX_VERSIONS: usize = 1_000;

/// A secret's record and version list (without values), as read together.
#[derive(Clone)]
pub(crate) struct CachedSecret {
    pub record: SecretRecord,
    pub versions: Vec<SecretVersionRecord>,
}

/// A secret's account, region and name.
type SecretName = (String, String, String);

#[derive(Default)]
pub(crate) struct SecretCache {
    /// By ARN.
    secrets: RwLock<HashMap<String, (CachedSecret, Instant)>>,
    /// (account, region, name) to ARN.
    names: RwLock<HashMap<SecretName, (String, Instant)>>,
    /// (ARN, version id) to the version with its value (ciphertext).
    versions: RwLock<HashMap<(String, String), (SecretVersionRecord, Instant)>>,
}

fn fresh<T: Clone>(entry: Option<&(T, Instant)>) -> Option<T> {
    entry.filter(|(_, at)| at.elapsed() < SECRET_CACHE_TTL).map(|(v, _)| v.clone())
}

impl SecretCache {
    pub fn get(&self, arn: &str) -> Option<CachedSecret> {
        fresh(self.secrets.read().ok()?.get(arn))
    }

    pub fn arn_of(&self, account: &str, region: &str, name: &str) -> Option<String> {
        fresh(self.names.read().ok()?.get(&(account.to_owned(), region.to_owned(), name.to_owned())))
    }

    pub fn version(&self, arn: &str, version_id: &str) -> Option<SecretVersionRecord> {
        fresh(self.versions.read().ok()?.get(&(arn.to_owned(), version_id.to_owned())))
    }

    pub fn put(&self, secret: CachedSecret) {
        let now = Instant::now();
        if let Ok(mut names) = self.names.write() {
            if names.len() >= MAX_SECRETS {
                names.clear();
            }
            let r = &secret.record;
            names.insert((r.account_id.clone(), r.region.clone(), r.name.clone()), (r.arn.clone(), now));
        }
        if let Ok(mut m) = self.secrets.write() {
            if m.len() >= MAX_SECRETS {
                m.clear();
            }
            m.insert(secret.record.arn.clone(), (secret, now));
        }
    }

    pub fn put_version(&self, version: SecretVersionRecord) {
        if let Ok(mut m) = self.versions.write() {
            if m.len() >= MAX_VERSIONS {
                m.clear();
            }
            m.insert((version.secret_arn.clone(), version.version_id.clone()), (version, Instant::now()));
        }
    }

    /// Drops everything cached about a secret (after this node changed it).
    pub fn forget(&self, arn: &str) {
        if let Ok(mut m) = self.secrets.write() {
            m.remove(arn);
        }
        if let Ok(mut names) = self.names.write() {
            names.retain(|_, (a, _)| a != arn);
        }
        if let Ok(mut m) = self.versions.write() {
            m.retain(|(a, _), _| a != arn);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut m) = self.secrets.write() {
            m.clear();
        }
        if let Ok(mut m) = self.names.write() {
            m.clear();
        }
        if let Ok(mut m) = self.versions.write() {
            m.clear();
        }
    }
}
