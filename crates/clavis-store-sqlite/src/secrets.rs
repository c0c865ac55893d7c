//! [`clavis_store::SecretStore`] for SQLite: secrets of the Secrets Manager API and their
//! encrypted versions.

use super::*;
use clavis_store::SecretStore;

#[async_trait::async_trait]
impl SecretStore for SqliteStore {
    async fn create_secret(&self, secret: &SecretRecord, version: Option<&SecretVersionRecord>) -> StoreResult<()> {
        let (secret, version) = (secret.clone(), version.cloned());
        self.write(move |conn| {
            let stages = version.as_ref().map(|v| check_version(&secret.arn, v)).transpose()?;
            let tx = conn.transaction().map_err(unavailable)?;
            inserted(tx.execute(
                &format!(
                    "INSERT INTO secrets ({SECRET_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
                ),
                params![
                    secret.arn,
                    secret.account_id,
                    secret.region,
                    secret.name,
                    secret.description,
                    secret.kms_key_id,
                    secret.created_ms,
                    secret.last_changed_ms,
                    secret.last_accessed_ms,
                    secret.deletion_date_ms,
                    secret.tags_json,
                    secret.policy,
                    secret.rotation_json,
                    secret.next_rotation_ms,
                    rev_i64(secret.revision)?
                ],
            ))?;
            if let (Some(v), Some(stages)) = (&version, &stages) {
                upsert_version(&tx, v, stages)?;
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn get_secret(&self, arn: &str) -> StoreResult<Option<SecretRecord>> {
        let arn = arn.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE arn = ?1"))
                .and_then(|mut st| st.query_row(params![arn], secret_from_row).optional())
                .map_err(unavailable)
        })
        .await
    }

    async fn get_secret_by_name(&self, account_id: &str, region: &str, name: &str) -> StoreResult<Option<SecretRecord>> {
        let (account_id, region, name) = (account_id.to_owned(), region.to_owned(), name.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE account_id = ?1 AND region = ?2 AND name = ?3"))
                .and_then(|mut st| st.query_row(params![account_id, region, name], secret_from_row).optional())
                .map_err(unavailable)
        })
        .await
    }

    async fn list_secrets(&self, account_id: &str, region: &str) -> StoreResult<Vec<SecretRecord>> {
        let (account_id, region) = (account_id.to_owned(), region.to_owned());
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(&format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE account_id = ?1 AND region = ?2 ORDER BY name"))
                .map_err(unavailable)?;
            st.query_map(params![account_id, region], secret_from_row).and_then(Iterator::collect).map_err(unavailable)
        })
        .await
    }

    async fn update_secret(
        &self,
        secret: &SecretRecord,
        expected_revision: u64,
        upsert_versions: &[SecretVersionRecord],
        delete_versions: &[String],
    ) -> StoreResult<()> {
        let (secret, upserts, deletes) = (secret.clone(), upsert_versions.to_vec(), delete_versions.to_vec());
        self.write(move |conn| {
            let stages = upserts.iter().map(|v| check_version(&secret.arn, v)).collect::<StoreResult<Vec<_>>>()?;
            let tx = conn.transaction().map_err(unavailable)?;
            update_secret_row(&tx, &secret, expected_revision)?;
            for (v, stages) in upserts.iter().zip(&stages) {
                upsert_version(&tx, v, stages)?;
            }
            for version_id in &deletes {
                tx.execute("DELETE FROM secret_versions WHERE secret_arn = ?1 AND version_id = ?2", params![secret.arn, version_id])
                    .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn list_secret_versions(&self, arn: &str) -> StoreResult<Vec<SecretVersionRecord>> {
        let arn = arn.to_owned();
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {VERSION_META_COLUMNS} FROM secret_versions WHERE secret_arn = ?1 ORDER BY created_ms, version_id"
                ))
                .map_err(unavailable)?;
            st.query_map(params![arn], version_from_row).and_then(Iterator::collect).map_err(unavailable)
        })
        .await
    }

    async fn get_secret_version(&self, arn: &str, version_id: &str) -> StoreResult<Option<SecretVersionRecord>> {
        let (arn, version_id) = (arn.to_owned(), version_id.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {VERSION_COLUMNS} FROM secret_versions WHERE secret_arn = ?1 AND version_id = ?2"))
                .and_then(|mut st| st.query_row(params![arn, version_id], version_from_row).optional())
                .map_err(unavailable)
        })
        .await
    }

    async fn destroy_secret(&self, arn: &str, expected_revision: u64) -> StoreResult<()> {
        let arn = arn.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            let rev: Option<i64> =
                tx.query_row("SELECT revision FROM secrets WHERE arn = ?1", params![arn], |r| r.get(0)).optional().map_err(unavailable)?;
            match rev {
                None => return Err(StoreError::NotFound),
                Some(r) if r != rev_i64(expected_revision)? => return Err(StoreError::Conflict),
                Some(_) => {}
            }
            tx.execute("DELETE FROM secret_versions WHERE secret_arn = ?1", params![arn]).map_err(unavailable)?;
            tx.execute("DELETE FROM secrets WHERE arn = ?1", params![arn]).map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            // The encrypted values and data keys leave the files, as destroyed key material does.
            erase_checkpoint(conn)
        })
        .await
    }

    async fn secrets_due(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<SecretRecord>> {
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {SECRET_COLUMNS} FROM secrets WHERE (deletion_date_ms IS NOT NULL AND deletion_date_ms <= ?1) \
                     OR (next_rotation_ms IS NOT NULL AND next_rotation_ms <= ?1) ORDER BY arn LIMIT ?2"
                ))
                .map_err(unavailable)?;
            st.query_map(params![now_ms, limit_i64(limit)], secret_from_row).and_then(Iterator::collect).map_err(unavailable)
        })
        .await
    }
}

const SECRET_COLUMNS: &str = "arn, account_id, region, name, description, kms_key_id, created_ms, last_changed_ms, \
     last_accessed_ms, deletion_date_ms, tags_json, policy, rotation_json, next_rotation_ms, revision";

/// A version's columns without its value (the blobs as empty ones), for listings.
const VERSION_META_COLUMNS: &str = "secret_arn, version_id, stages, created_ms, last_accessed_ms, kms_key_arn, \
     X'' AS encrypted_data_key, X'' AS ciphertext, is_binary";
const VERSION_COLUMNS: &str =
    "secret_arn, version_id, stages, created_ms, last_accessed_ms, kms_key_arn, encrypted_data_key, ciphertext, is_binary";

fn secret_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SecretRecord> {
    Ok(SecretRecord {
        arn: r.get(0)?,
        account_id: r.get(1)?,
        region: r.get(2)?,
        name: r.get(3)?,
        description: r.get(4)?,
        kms_key_id: r.get(5)?,
        created_ms: r.get(6)?,
        last_changed_ms: r.get(7)?,
        last_accessed_ms: r.get(8)?,
        deletion_date_ms: r.get(9)?,
        tags_json: r.get(10)?,
        policy: r.get(11)?,
        rotation_json: r.get(12)?,
        next_rotation_ms: r.get(13)?,
        revision: u64::try_from(r.get::<_, i64>(14)?).unwrap_or_default(),
    })
}

fn version_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SecretVersionRecord> {
    let stages: String = r.get(2)?;
    Ok(SecretVersionRecord {
        secret_arn: r.get(0)?,
        version_id: r.get(1)?,
        stages: if stages.is_empty() { Vec::new() } else { stages.split(',').map(str::to_owned).collect() },
        created_ms: r.get(3)?,
        last_accessed_ms: r.get(4)?,
        kms_key_arn: r.get(5)?,
        encrypted_data_key: r.get(6)?,
        ciphertext: r.get(7)?,
        binary: r.get::<_, i64>(8)? != 0,
    })
}

/// A version to store under the secret `arn`: it must name that secret, and its staging labels
/// must survive the comma-joined column (none empty, none with a comma; AWS labels are letters,
/// digits and `_+=.@-`). Returns the column's text.
fn check_version(arn: &str, v: &SecretVersionRecord) -> StoreResult<String> {
    if v.secret_arn != arn {
        return Err(StoreError::InvalidInput(format!("version {} names another secret", v.version_id)));
    }
    if v.stages.iter().any(|s| s.is_empty() || s.contains(',')) {
        return Err(StoreError::InvalidInput("a staging label is empty or contains a comma".into()));
    }
    Ok(v.stages.join(","))
}

/// Inserts a version, or replaces the one with the same secret ARN and version id.
fn upsert_version(conn: &Connection, v: &SecretVersionRecord, stages: &str) -> StoreResult<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO secret_versions ({VERSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (secret_arn, version_id) DO UPDATE SET stages = excluded.stages, created_ms = excluded.created_ms, \
         last_accessed_ms = excluded.last_accessed_ms, kms_key_arn = excluded.kms_key_arn, \
         encrypted_data_key = excluded.encrypted_data_key, ciphertext = excluded.ciphertext, is_binary = excluded.is_binary"
    ))
    .and_then(|mut st| {
        st.execute(params![
            v.secret_arn,
            v.version_id,
            stages,
            v.created_ms,
            v.last_accessed_ms,
            v.kms_key_arn,
            v.encrypted_data_key,
            v.ciphertext,
            i64::from(v.binary)
        ])
    })
    .map(|_| ())
    .map_err(unavailable)
}

/// Compare-and-swap of a secret row on its revision. Its identity (ARN, account, region, name)
/// and creation time are fixed at creation.
fn update_secret_row(conn: &Connection, s: &SecretRecord, expected_revision: u64) -> StoreResult<()> {
    let n = conn
        .prepare_cached(
            "UPDATE secrets SET description = ?2, kms_key_id = ?3, last_changed_ms = ?4, last_accessed_ms = ?5, \
             deletion_date_ms = ?6, tags_json = ?7, policy = ?8, rotation_json = ?9, next_rotation_ms = ?10, revision = ?11 \
             WHERE arn = ?1 AND revision = ?12",
        )
        .and_then(|mut st| {
            st.execute(params![
                s.arn,
                s.description,
                s.kms_key_id,
                s.last_changed_ms,
                s.last_accessed_ms,
                s.deletion_date_ms,
                s.tags_json,
                s.policy,
                s.rotation_json,
                s.next_rotation_ms,
                rev_i64(s.revision).unwrap_or(i64::MAX),
                rev_i64(expected_revision).unwrap_or(i64::MAX)
            ])
        })
        .map_err(unavailable)?;
    if n == 1 {
        return Ok(());
    }
    let exists: bool =
        conn.query_row("SELECT EXISTS (SELECT 1 FROM secrets WHERE arn = ?1)", params![s.arn], |r| r.get(0)).map_err(unavailable)?;
    Err(if exists { StoreError::Conflict } else { StoreError::NotFound })
}
