//! Plain storage records. Timestamps are Unix milliseconds; states and specs are the AWS names
//! as strings, parsed by the core.

/// A KMS key's metadata (never its material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key's UUID, lower-case hyphenated.
    pub key_id: String,
    /// Owning account (12 digits).
    pub account_id: String,
    /// Region the key lives in.
    pub region: String,
    /// Free-text description.
    pub description: String,
    /// AWS KeyUsage, e.g. `ENCRYPT_DECRYPT`.
    pub key_usage: String,
    /// AWS KeySpec, e.g. `SYMMETRIC_DEFAULT`.
    pub key_spec: String,
    /// AWS Origin, e.g. `AWS_KMS`.
    pub origin: String,
    /// AWS KeyState, e.g. `Enabled`.
    pub key_state: String,
    /// Creation time.
    pub creation_date_ms: i64,
    /// When the key will be destroyed, if deletion is scheduled.
    pub deletion_date_ms: Option<i64>,
    /// The key policy document (JSON).
    pub policy: String,
    /// The material version that Encrypt uses.
    pub current_version: u32,
    /// Automatic rotation period, when automatic rotation is enabled.
    pub rotation_period_days: Option<u32>,
    /// When automatic rotation is next due.
    pub next_rotation_ms: Option<i64>,
    /// Deletion needs a second principal's approval (irreversible once set).
    pub dual_auth: bool,
    /// A deletion request waiting for approval: who asked, when, and the window they asked for.
    pub deletion_request: Option<DeletionRequest>,
    /// Imported material: when it expires (`KEY_MATERIAL_EXPIRES`).
    pub valid_to_ms: Option<i64>,
    /// Imported material: `KEY_MATERIAL_EXPIRES` or `KEY_MATERIAL_DOES_NOT_EXPIRE`.
    pub expiration_model: Option<String>,
    /// Imported material: a one-way fingerprint (hex) of the first material imported, so that
    /// only the same material can be imported again.
    pub import_fingerprint: Option<String>,
    /// Incremented on every update; used for optimistic concurrency and cache invalidation.
    pub revision: u64,
}

/// A deletion requested under dual authorization, waiting for a second principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionRequest {
    /// The requesting principal's ARN.
    pub requested_by: String,
    /// When it was requested.
    pub requested_ms: i64,
    /// The waiting period asked for, in days.
    pub window_days: u32,
}

/// One version of a key's material, sealed by the root of trust.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterialRecord {
    /// The key this material belongs to.
    pub key_id: String,
    /// Version number, starting at 1.
    pub version: u32,
    /// The sealed material: opaque bytes to storage.
    pub sealed: Vec<u8>,
    /// When this version was created.
    pub created_ms: i64,
    /// How this version came to be: `None` for the first, else `AUTOMATIC` or `ON_DEMAND`.
    pub rotation_type: Option<String>,
}

impl std::fmt::Debug for KeyMaterialRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterialRecord")
            .field("key_id", &self.key_id)
            .field("version", &self.version)
            .field("sealed_len", &self.sealed.len())
            .finish_non_exhaustive()
    }
}

/// An alias: a friendly name for a key in one account and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasRecord {
    /// Owning account.
    pub account_id: String,
    /// Region.
    pub region: String,
    /// The name, including the `alias/` prefix.
    pub alias_name: String,
    /// The key it points to.
    pub target_key_id: String,
    /// Creation time.
    pub creation_date_ms: i64,
    /// Last time the target changed.
    pub last_updated_date_ms: i64,
}

/// A key tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// Tag key.
    pub key: String,
    /// Tag value.
    pub value: String,
}

/// An access key that signs requests.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKeyRecord {
    /// The public id (`AKIA...`).
    pub access_key_id: String,
    /// The secret, sealed by the root of trust.
    pub sealed_secret: Vec<u8>,
    /// The account of the principal.
    pub account_id: String,
    /// The principal's ARN, e.g. `arn:aws:iam::111122223333:root`.
    pub principal_arn: String,
    /// `Active` or `Inactive`.
    pub status: String,
    /// Creation time.
    pub created_ms: i64,
}

impl std::fmt::Debug for AccessKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyRecord")
            .field("access_key_id", &self.access_key_id)
            .field("principal_arn", &self.principal_arn)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A user: a principal of an account, with its own access keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Owning account.
    pub account_id: String,
    /// The user name (unique per account).
    pub user_name: String,
    /// `arn:aws:iam::<account>:user/<name>`.
    pub arn: String,
    /// Built-in role (`admin`, `manager`, `writer`, `reader`).
    pub role: String,
    /// Creation time.
    pub created_ms: i64,
}

/// Import parameters handed out by GetParametersForImport: the token, what it is bound to, and
/// the sealed wrapping private key.
#[derive(Clone, PartialEq, Eq)]
pub struct ImportParamsRecord {
    /// The token's id (hex of its random bytes).
    pub token_id: String,
    /// The key it was issued for.
    pub key_id: String,
    /// The wrapping algorithm (AWS name).
    pub wrapping_algorithm: String,
    /// The wrapping key spec (AWS name).
    pub wrapping_key_spec: String,
    /// The wrapping private key (PKCS#8), sealed by the root of trust.
    pub sealed_private_key: Vec<u8>,
    /// The proof-of-possession nonce (Clavis extension).
    pub nonce: Vec<u8>,
    /// When the parameters stop being valid.
    pub expires_ms: i64,
    /// Whether the token has been used.
    pub used: bool,
}

impl std::fmt::Debug for ImportParamsRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportParamsRecord").field("key_id", &self.key_id).field("used", &self.used).finish_non_exhaustive()
    }
}

/// A grant: a permission on one key for one grantee principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    /// The grant's id (64 hex characters).
    pub grant_id: String,
    /// The key it is on.
    pub key_id: String,
    /// The optional name (idempotency of CreateGrant).
    pub name: Option<String>,
    /// Who may use it.
    pub grantee_principal: String,
    /// Who may retire it, besides the grantee when `RetireGrant` is among its operations.
    pub retiring_principal: Option<String>,
    /// The operations it allows (AWS names), comma-separated.
    pub operations: String,
    /// Its constraints as a JSON object (`EncryptionContextEquals` / `...Subset`), if any.
    pub constraints: Option<String>,
    /// The principal that created it.
    pub issuing_principal: String,
    /// Creation time.
    pub created_ms: i64,
    /// The grant token handed out by CreateGrant.
    pub token: String,
}

/// An account (tenant) created by an operator; the initial account is the `account_id`
/// setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// 12 digits.
    pub account_id: String,
    /// A display name.
    pub name: String,
    /// Creation time.
    pub created_ms: i64,
}

/// The tables that hold sealed values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedTable {
    /// `key_material.sealed` (id: key id, version: material version).
    Material,
    /// `access_keys.sealed_secret` (id: access key id).
    AccessKey,
    /// `import_params.sealed_private_key` (id: token id, owner: key id).
    ImportParams,
}

/// One sealed value in storage, for master-key rotation (which reseals every one).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedRecord {
    /// Its table.
    pub table: SealedTable,
    /// Its row's id.
    pub id: String,
    /// The material version (0 outside `key_material`).
    pub version: u32,
    /// The key it belongs to, where that is not `id` (import parameters); else empty.
    pub owner: String,
    /// When the value stops being usable (import parameters: their expiry); `None` for values
    /// that do not expire. Master-key rotation skips a value past this time rather than reseal
    /// something no request can use again.
    pub expires_ms: Option<i64>,
    /// The sealed bytes.
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedRecord")
            .field("table", &self.table)
            .field("id", &self.id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A secret of the Secrets Manager API (its versions are [`SecretVersionRecord`]s). Values never
/// reach this record: a version holds its value encrypted under a data key wrapped by a KMS key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    /// `arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 random characters>`; the id.
    pub arn: String,
    /// The owning account.
    pub account_id: String,
    /// The region.
    pub region: String,
    /// The name, unique in its account and region among secrets not yet destroyed (one pending
    /// deletion keeps its name).
    pub name: String,
    /// The description, if any.
    pub description: Option<String>,
    /// The KMS key the user chose (key id, ARN or alias, as given); `None` for the account's
    /// default key.
    pub kms_key_id: Option<String>,
    /// Creation time (Unix ms).
    pub created_ms: i64,
    /// Last change of the secret or its values (Unix ms).
    pub last_changed_ms: i64,
    /// Last read of a value (Unix ms, kept to the day as AWS does), if any.
    pub last_accessed_ms: Option<i64>,
    /// When the secret is destroyed, if deletion is scheduled (Unix ms).
    pub deletion_date_ms: Option<i64>,
    /// The tags, as the core serialises them (JSON); opaque here.
    pub tags_json: String,
    /// The resource policy document, if any.
    pub policy: Option<String>,
    /// The rotation configuration, as the core serialises it (JSON); opaque here.
    pub rotation_json: Option<String>,
    /// When the next rotation is due (Unix ms), if rotation is on.
    pub next_rotation_ms: Option<i64>,
    /// Optimistic-concurrency revision, starting at 1.
    pub revision: u64,
}

/// One version of a secret's value, encrypted: the value sealed with AES-256-GCM under a data
/// key, and that data key as a KMS ciphertext. The store sees neither in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersionRecord {
    /// The secret's ARN.
    pub secret_arn: String,
    /// The version id (the ClientRequestToken that made it: a UUID unless the client chose).
    pub version_id: String,
    /// Its staging labels (`AWSCURRENT`, `AWSPREVIOUS`, `AWSPENDING`, custom); empty for a
    /// deprecated version.
    pub stages: Vec<String>,
    /// Creation time (Unix ms).
    pub created_ms: i64,
    /// Last read (Unix ms, to the day), if any.
    pub last_accessed_ms: Option<i64>,
    /// The ARN of the KMS key that wrapped the data key.
    pub kms_key_arn: String,
    /// The data key, as the KMS key's ciphertext.
    pub encrypted_data_key: Vec<u8>,
    /// The value, sealed under the data key (opaque here).
    pub ciphertext: Vec<u8>,
    /// Whether the value is SecretBinary (else SecretString).
    pub binary: bool,
}
