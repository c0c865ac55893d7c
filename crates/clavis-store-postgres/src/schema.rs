//! The PostgreSQL schema and its forward-only migrations, tracked in `clavis_schema`. Several
//! nodes may start at once: migrations run in one transaction under an advisory lock, so exactly
//! one node applies each.
//!
//! Text columns that are ordered or compared for pagination use the "C" collation, so that
//! PostgreSQL orders exactly as SQLite does (byte order) whatever the database's locale.

use clavis_store::StoreError;
use tokio_postgres::Client;

/// Migration `i` takes the schema from version `i` to `i + 1`. Never edit a released migration;
/// append a new one. Version 1 is the whole schema as of SQLite migration 7.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE settings (
        name   TEXT COLLATE \"C\" PRIMARY KEY,
        value  TEXT NOT NULL
    );
    CREATE TABLE keys (
        key_id                        TEXT COLLATE \"C\" PRIMARY KEY,
        account_id                    TEXT COLLATE \"C\" NOT NULL,
        region                        TEXT COLLATE \"C\" NOT NULL,
        description                   TEXT NOT NULL,
        key_usage                     TEXT NOT NULL,
        key_spec                      TEXT NOT NULL,
        origin                        TEXT NOT NULL,
        key_state                     TEXT NOT NULL,
        creation_date_ms              BIGINT NOT NULL,
        deletion_date_ms              BIGINT,
        policy                        TEXT NOT NULL,
        current_version               BIGINT NOT NULL,
        revision                      BIGINT NOT NULL,
        rotation_period_days          BIGINT,
        next_rotation_ms              BIGINT,
        dual_auth                     BOOLEAN NOT NULL,
        deletion_requested_by         TEXT,
        deletion_requested_ms         BIGINT,
        deletion_request_window_days  BIGINT,
        valid_to_ms                   BIGINT,
        expiration_model              TEXT,
        import_fingerprint            TEXT
    );
    CREATE INDEX keys_by_account_region ON keys (account_id, region, key_id);
    CREATE INDEX keys_next_rotation ON keys (next_rotation_ms) WHERE next_rotation_ms IS NOT NULL;
    CREATE INDEX keys_deletion ON keys (deletion_date_ms) WHERE deletion_date_ms IS NOT NULL;
    CREATE INDEX keys_valid_to ON keys (valid_to_ms) WHERE valid_to_ms IS NOT NULL;
    CREATE TABLE key_material (
        key_id         TEXT COLLATE \"C\" NOT NULL REFERENCES keys (key_id),
        version        BIGINT NOT NULL,
        sealed         BYTEA NOT NULL,
        created_ms     BIGINT NOT NULL,
        rotation_type  TEXT,
        PRIMARY KEY (key_id, version)
    );
    CREATE TABLE aliases (
        account_id            TEXT COLLATE \"C\" NOT NULL,
        region                TEXT COLLATE \"C\" NOT NULL,
        alias_name            TEXT COLLATE \"C\" NOT NULL,
        target_key_id         TEXT COLLATE \"C\" NOT NULL,
        creation_date_ms      BIGINT NOT NULL,
        last_updated_date_ms  BIGINT NOT NULL,
        PRIMARY KEY (account_id, region, alias_name)
    );
    CREATE INDEX aliases_by_target ON aliases (target_key_id);
    CREATE TABLE tags (
        key_id     TEXT COLLATE \"C\" NOT NULL,
        tag_key    TEXT COLLATE \"C\" NOT NULL,
        tag_value  TEXT NOT NULL,
        PRIMARY KEY (key_id, tag_key)
    );
    CREATE TABLE access_keys (
        access_key_id  TEXT COLLATE \"C\" PRIMARY KEY,
        sealed_secret  BYTEA NOT NULL,
        account_id     TEXT COLLATE \"C\" NOT NULL,
        principal_arn  TEXT COLLATE \"C\" NOT NULL,
        status         TEXT NOT NULL,
        created_ms     BIGINT NOT NULL
    );
    CREATE INDEX access_keys_by_principal ON access_keys (principal_arn, access_key_id);
    CREATE TABLE leases (
        name      TEXT COLLATE \"C\" PRIMARY KEY,
        holder    TEXT NOT NULL,
        until_ms  BIGINT NOT NULL
    );
    CREATE TABLE users (
        account_id  TEXT COLLATE \"C\" NOT NULL,
        user_name   TEXT COLLATE \"C\" NOT NULL,
        arn         TEXT NOT NULL,
        created_ms  BIGINT NOT NULL,
        role        TEXT NOT NULL,
        PRIMARY KEY (account_id, user_name)
    );
    CREATE TABLE import_params (
        token_id            TEXT COLLATE \"C\" PRIMARY KEY,
        key_id              TEXT NOT NULL,
        wrapping_algorithm  TEXT NOT NULL,
        wrapping_key_spec   TEXT NOT NULL,
        sealed_private_key  BYTEA NOT NULL,
        nonce               BYTEA NOT NULL,
        expires_ms          BIGINT NOT NULL,
        used                BOOLEAN NOT NULL
    );
    CREATE TABLE grants (
        grant_id            TEXT COLLATE \"C\" PRIMARY KEY,
        key_id              TEXT COLLATE \"C\" NOT NULL,
        name                TEXT,
        grantee_principal   TEXT NOT NULL,
        retiring_principal  TEXT COLLATE \"C\",
        operations          TEXT NOT NULL,
        constraints         TEXT,
        issuing_principal   TEXT NOT NULL,
        created_ms          BIGINT NOT NULL,
        token               TEXT NOT NULL
    );
    CREATE INDEX grants_key ON grants (key_id, created_ms, grant_id);
    CREATE INDEX grants_retiring ON grants (retiring_principal, created_ms, grant_id) WHERE retiring_principal IS NOT NULL;
    CREATE TABLE accounts (
        account_id  TEXT COLLATE \"C\" PRIMARY KEY,
        name        TEXT NOT NULL,
        created_ms  BIGINT NOT NULL
    );
",
    // The grant check reads one grantee's grants on a key, not all of the key's grants; import
    // parameters are counted per key (the cap on outstanding tokens) and purged by expiry.
    "
    CREATE INDEX grants_grantee ON grants (key_id, grantee_principal);
    CREATE INDEX import_params_by_key ON import_params (key_id, expires_ms);
    CREATE INDEX import_params_expiry ON import_params (expires_ms);
",
    // Secrets of the Secrets Manager API and their encrypted versions (SQLite migration 8). A
    // name is unique in its account and region (the unique index also serves listing by name);
    // `secrets_due` reads the two date indexes. A version's staging labels are comma-joined, as
    // in SQLite (a label is never empty and has no comma; empty text is no label).
    "
    CREATE TABLE secrets (
        arn               TEXT COLLATE \"C\" PRIMARY KEY,
        account_id        TEXT COLLATE \"C\" NOT NULL,
        region            TEXT COLLATE \"C\" NOT NULL,
        name              TEXT COLLATE \"C\" NOT NULL,
        description       TEXT,
        kms_key_id        TEXT,
        created_ms        BIGINT NOT NULL,
        last_changed_ms   BIGINT NOT NULL,
        last_accessed_ms  BIGINT,
        deletion_date_ms  BIGINT,
        tags_json         TEXT NOT NULL,
        policy            TEXT,
        rotation_json     TEXT,
        next_rotation_ms  BIGINT,
        revision          BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX secrets_by_name ON secrets (account_id, region, name);
    CREATE INDEX secrets_deletion ON secrets (deletion_date_ms) WHERE deletion_date_ms IS NOT NULL;
    CREATE INDEX secrets_next_rotation ON secrets (next_rotation_ms) WHERE next_rotation_ms IS NOT NULL;
    CREATE TABLE secret_versions (
        secret_arn          TEXT COLLATE \"C\" NOT NULL REFERENCES secrets (arn),
        version_id          TEXT COLLATE \"C\" NOT NULL,
        stages              TEXT NOT NULL,
        created_ms          BIGINT NOT NULL,
        last_accessed_ms    BIGINT,
        kms_key_arn         TEXT NOT NULL,
        encrypted_data_key  BYTEA NOT NULL,
        ciphertext          BYTEA NOT NULL,
        is_binary           BOOLEAN NOT NULL,
        PRIMARY KEY (secret_arn, version_id)
    );
",
];

/// An arbitrary constant: the advisory lock that serialises migrations across nodes.
const MIGRATION_LOCK: i64 = 0x636c_6176_6973; // "clavis"

fn err(e: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("migration: {e}"))
}

/// Applies every migration the database has not seen, all in one transaction.
pub async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(err)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS clavis_schema (version BIGINT NOT NULL)").await.map_err(err)?;
    let current: i64 = match tx.query_opt("SELECT version FROM clavis_schema", &[]).await.map_err(err)? {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO clavis_schema (version) VALUES (0)", &[]).await.map_err(err)?;
            0
        }
    };
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "database schema version {current} is newer than this binary understands ({})",
            MIGRATIONS.len()
        )));
    }
    for sql in MIGRATIONS.iter().skip(current) {
        tx.batch_execute(sql).await.map_err(err)?;
    }
    let version = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    tx.execute("UPDATE clavis_schema SET version = $1", &[&version]).await.map_err(err)?;
    tx.commit().await.map_err(err)
}
