//! The SQLite schema and its forward-only migrations, tracked by `PRAGMA user_version`.

use clavis_store::StoreError;
use rusqlite::Connection;

/// Migration `i` takes the schema from version `i` to `i + 1`. Never edit a released migration;
/// append a new one.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE settings (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;
    CREATE TABLE keys (
        key_id            TEXT PRIMARY KEY,
        account_id        TEXT NOT NULL,
        region            TEXT NOT NULL,
        description       TEXT NOT NULL,
        key_usage         TEXT NOT NULL,
        key_spec          TEXT NOT NULL,
        origin            TEXT NOT NULL,
        key_state         TEXT NOT NULL,
        creation_date_ms  INTEGER NOT NULL,
        deletion_date_ms  INTEGER,
        policy            TEXT NOT NULL,
        current_version   INTEGER NOT NULL,
        revision          INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX keys_by_account_region ON keys (account_id, region, key_id);
    CREATE TABLE key_material (
        key_id      TEXT NOT NULL REFERENCES keys (key_id),
        version     INTEGER NOT NULL,
        sealed      BLOB NOT NULL,
        created_ms  INTEGER NOT NULL,
        PRIMARY KEY (key_id, version)
    ) STRICT;
    CREATE TABLE aliases (
        account_id            TEXT NOT NULL,
        region                TEXT NOT NULL,
        alias_name            TEXT NOT NULL,
        target_key_id         TEXT NOT NULL,
        creation_date_ms      INTEGER NOT NULL,
        last_updated_date_ms  INTEGER NOT NULL,
        PRIMARY KEY (account_id, region, alias_name)
    ) STRICT;
    CREATE INDEX aliases_by_target ON aliases (target_key_id);
    CREATE TABLE tags (
        key_id     TEXT NOT NULL,
        tag_key    TEXT NOT NULL,
        tag_value  TEXT NOT NULL,
        PRIMARY KEY (key_id, tag_key)
    ) STRICT;
    CREATE TABLE access_keys (
        access_key_id  TEXT PRIMARY KEY,
        sealed_secret  BLOB NOT NULL,
        account_id     TEXT NOT NULL,
        principal_arn  TEXT NOT NULL,
        status         TEXT NOT NULL,
        created_ms     INTEGER NOT NULL
    ) STRICT;
",
    "
    ALTER TABLE keys ADD COLUMN rotation_period_days INTEGER;
    ALTER TABLE keys ADD COLUMN next_rotation_ms INTEGER;
    CREATE INDEX keys_next_rotation ON keys (next_rotation_ms) WHERE next_rotation_ms IS NOT NULL;
    CREATE INDEX keys_deletion ON keys (deletion_date_ms) WHERE deletion_date_ms IS NOT NULL;
    ALTER TABLE key_material ADD COLUMN rotation_type TEXT;
    CREATE TABLE leases (
        name      TEXT PRIMARY KEY,
        holder    TEXT NOT NULL,
        until_ms  INTEGER NOT NULL
    ) STRICT;
",
    "
    ALTER TABLE keys ADD COLUMN dual_auth INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE keys ADD COLUMN deletion_requested_by TEXT;
    ALTER TABLE keys ADD COLUMN deletion_requested_ms INTEGER;
    ALTER TABLE keys ADD COLUMN deletion_request_window_days INTEGER;
    CREATE TABLE users (
        account_id  TEXT NOT NULL,
        user_name   TEXT NOT NULL,
        arn         TEXT NOT NULL,
        created_ms  INTEGER NOT NULL,
        PRIMARY KEY (account_id, user_name)
    ) STRICT;
",
    "
    ALTER TABLE keys ADD COLUMN valid_to_ms INTEGER;
    ALTER TABLE keys ADD COLUMN expiration_model TEXT;
    ALTER TABLE keys ADD COLUMN import_fingerprint TEXT;
    CREATE INDEX keys_valid_to ON keys (valid_to_ms) WHERE valid_to_ms IS NOT NULL;
    CREATE TABLE import_params (
        token_id            TEXT PRIMARY KEY,
        key_id              TEXT NOT NULL,
        wrapping_algorithm  TEXT NOT NULL,
        wrapping_key_spec   TEXT NOT NULL,
        sealed_private_key  BLOB NOT NULL,
        nonce               BLOB NOT NULL,
        expires_ms          INTEGER NOT NULL,
        used                INTEGER NOT NULL
    ) STRICT;
",
    // Users created before roles existed keep full key access.
    "ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'manager';",
    "
    CREATE TABLE grants (
        grant_id            TEXT PRIMARY KEY,
        key_id              TEXT NOT NULL,
        name                TEXT,
        grantee_principal   TEXT NOT NULL,
        retiring_principal  TEXT,
        operations          TEXT NOT NULL,
        constraints         TEXT,
        issuing_principal   TEXT NOT NULL,
        created_ms          INTEGER NOT NULL,
        token               TEXT NOT NULL
    ) STRICT;
    CREATE INDEX grants_key ON grants (key_id, created_ms, grant_id);
    CREATE INDEX grants_retiring ON grants (retiring_principal, created_ms, grant_id) WHERE retiring_principal IS NOT NULL;
    CREATE TABLE accounts (
        account_id  TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        created_ms  INTEGER NOT NULL
    ) STRICT;
",
    // The grant check reads one grantee's grants on a key, not all of the key's grants; import
    // parameters are counted per key (the cap on outstanding tokens) and purged by expiry.
    "
    CREATE INDEX grants_grantee ON grants (key_id, grantee_principal);
    CREATE INDEX import_params_by_key ON import_params (key_id, expires_ms);
    CREATE INDEX import_params_expiry ON import_params (expires_ms);
",
    // Secrets of the Secrets Manager API and their encrypted versions. A name is unique in its
    // account and region (the unique index also serves listing by name); `secrets_due` reads
    // the two date indexes. A version's staging labels are comma-joined (a label is never empty
    // and has no comma; empty text is no label). `is_binary`, not `binary`, which PostgreSQL
    // reserves: both backends use the same column names.
    "
    CREATE TABLE secrets (
        arn               TEXT PRIMARY KEY,
        account_id        TEXT NOT NULL,
        region            TEXT NOT NULL,
        name              TEXT NOT NULL,
        description       TEXT,
        kms_key_id        TEXT,
        created_ms        INTEGER NOT NULL,
        last_changed_ms   INTEGER NOT NULL,
        last_accessed_ms  INTEGER,
        deletion_date_ms  INTEGER,
        tags_json         TEXT NOT NULL,
        policy            TEXT,
        rotation_json     TEXT,
        next_rotation_ms  INTEGER,
        revision          INTEGER NOT NULL
    ) STRICT;
    CREATE UNIQUE INDEX secrets_by_name ON secrets (account_id, region, name);
    CREATE INDEX secrets_deletion ON secrets (deletion_date_ms) WHERE deletion_date_ms IS NOT NULL;
    CREATE INDEX secrets_next_rotation ON secrets (next_rotation_ms) WHERE next_rotation_ms IS NOT NULL;
    CREATE TABLE secret_versions (
        secret_arn          TEXT NOT NULL REFERENCES secrets (arn),
        version_id          TEXT NOT NULL,
        stages              TEXT NOT NULL,
        created_ms          INTEGER NOT NULL,
        last_accessed_ms    INTEGER,
        kms_key_arn         TEXT NOT NULL,
        encrypted_data_key  BLOB NOT NULL,
        ciphertext          BLOB NOT NULL,
        is_binary           INTEGER NOT NULL,
        PRIMARY KEY (secret_arn, version_id)
    ) STRICT;
",
];

/// Applies every migration the database has not seen, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let err = |e: rusqlite::Error| StoreError::Unavailable(format!("migration: {e}"));
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).map_err(err)?.try_into().unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "database schema version {current} is newer than this binary understands ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", i64::try_from(i + 1).unwrap_or(i64::MAX)).map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}
