//! [`clavis_store::SecretStore`] for PostgreSQL: secrets of the Secrets Manager API and their
//! encrypted versions.

use super::*;
use clavis_store::SecretStore;

#[async_trait::async_trait]
impl SecretStore for PostgresStore {
    async fn create_secret(&self, secret: &SecretRecord, version: Option<&SecretVersionRecord>) -> StoreResult<()> {
        let stages = version.map(|v| check_version(&secret.arn, v)).transpose()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute(
            &format!("INSERT INTO secrets ({SECRET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"),
            &[
                &secret.arn,
                &secret.account_id,
                &secret.region,
                &secret.name,
                &secret.description,
                &secret.kms_key_id,
                &secret.created_ms,
                &secret.last_changed_ms,
                &secret.last_accessed_ms,
                &secret.deletion_date_ms,
                &secret.tags_json,
                &secret.policy,
                &secret.rotation_json,
                &secret.next_rotation_ms,
                &rev_i64(secret.revision)?,
            ],
        )
        .await
        .map_err(pg)?;
        if let (Some(v), Some(stages)) = (version, &stages) {
            upsert_version(&tx, v, stages).await?;
        }
        tx.commit().await.map_err(pg)
    }

    async fn get_secret(&self, arn: &str) -> StoreResult<Option<SecretRecord>> {
        let client = self.client().await?;
        let st = client.prepare_cached(&format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE arn = $1")).await.map_err(pg)?;
        client.query_opt(&st, &[&arn]).await.map_err(pg)?.as_ref().map(secret_from_row).transpose()
    }

    async fn get_secret_by_name(&self, account_id: &str, region: &str, name: &str) -> StoreResult<Option<SecretRecord>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(&format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE account_id = $1 AND region = $2 AND name = $3"))
            .await
            .map_err(pg)?;
        client.query_opt(&st, &[&account_id, &region, &name]).await.map_err(pg)?.as_ref().map(secret_from_row).transpose()
    }

    async fn list_secrets(&self, account_id: &str, region: &str) -> StoreResult<Vec<SecretRecord>> {
        let client = self.client().await?;
        let r = client
            .query(
                &format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE account_id = $1 AND region = $2 ORDER BY name"),
                &[&account_id, &region],
            )
            .await
            .map_err(pg)?;
        rows(r, secret_from_row)
    }

    async fn update_secret(
        &self,
        secret: &SecretRecord,
        expected_revision: u64,
        upsert_versions: &[SecretVersionRecord],
        delete_versions: &[String],
    ) -> StoreResult<()> {
        let stages = upsert_versions.iter().map(|v| check_version(&secret.arn, v)).collect::<StoreResult<Vec<_>>>()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        update_secret_row(&tx, secret, expected_revision).await?;
        for (v, stages) in upsert_versions.iter().zip(&stages) {
            upsert_version(&tx, v, stages).await?;
        }
        for version_id in delete_versions {
            tx.execute("DELETE FROM secret_versions WHERE secret_arn = $1 AND version_id = $2", &[&secret.arn, version_id])
                .await
                .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)
    }

    async fn list_secret_versions(&self, arn: &str) -> StoreResult<Vec<SecretVersionRecord>> {
        let client = self.client().await?;
        let r = client
            .query(
                &format!("SELECT {VERSION_META_COLUMNS} FROM secret_versions WHERE secret_arn = $1 ORDER BY created_ms, version_id"),
                &[&arn],
            )
            .await
            .map_err(pg)?;
        rows(r, version_from_row)
    }

    async fn get_secret_version(&self, arn: &str, version_id: &str) -> StoreResult<Option<SecretVersionRecord>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(&format!("SELECT {VERSION_COLUMNS} FROM secret_versions WHERE secret_arn = $1 AND version_id = $2"))
            .await
            .map_err(pg)?;
        client.query_opt(&st, &[&arn, &version_id]).await.map_err(pg)?.as_ref().map(version_from_row).transpose()
    }

    async fn destroy_secret(&self, arn: &str, expected_revision: u64) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // The row lock keeps a concurrent update from slipping in between the check and the deletes.
        let rev: Option<i64> =
            tx.query_opt("SELECT revision FROM secrets WHERE arn = $1 FOR UPDATE", &[&arn]).await.map_err(pg)?.map(|r| r.get(0));
        match rev {
            None => return Err(StoreError::NotFound),
            Some(r) if r != rev_i64(expected_revision)? => return Err(StoreError::Conflict),
            Some(_) => {}
        }
        tx.execute("DELETE FROM secret_versions WHERE secret_arn = $1", &[&arn]).await.map_err(pg)?;
        tx.execute("DELETE FROM secrets WHERE arn = $1", &[&arn]).await.map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn secrets_due(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<SecretRecord>> {
        let client = self.client().await?;
        let r = client
            .query(
                &format!(
                    "SELECT {SECRET_COLUMNS} FROM secrets WHERE (deletion_date_ms IS NOT NULL AND deletion_date_ms <= $1) \
                     OR (next_rotation_ms IS NOT NULL AND next_rotation_ms <= $1) ORDER BY arn LIMIT $2"
                ),
                &[&now_ms, &limit_i64(limit)],
            )
            .await
            .map_err(pg)?;
        rows(r, secret_from_row)
    }
}

const SECRET_COLUMNS: &str = "arn, account_id, region, name, description, kms_key_id, created_ms, last_changed_ms, \
     last_accessed_ms, deletion_date_ms, tags_json, policy, rotation_json, next_rotation_ms, revision";

/// A version's columns without its value (the blobs as empty ones), for listings.
const VERSION_META_COLUMNS: &str = "secret_arn, version_id, stages, created_ms, last_accessed_ms, kms_key_arn, \
     ''::bytea AS encrypted_data_key, ''::bytea AS ciphertext, is_binary";
const VERSION_COLUMNS: &str =
    "secret_arn, version_id, stages, created_ms, last_accessed_ms, kms_key_arn, encrypted_data_key, ciphertext, is_binary";

fn secret_from_row(r: &Row) -> StoreResult<SecretRecord> {
    let g = |e: tokio_postgres::Error| unavailable(e);
    Ok(SecretRecord {
        arn: r.try_get(0).map_err(g)?,
        account_id: r.try_get(1).map_err(g)?,
        region: r.try_get(2).map_err(g)?,
        name: r.try_get(3).map_err(g)?,
        description: r.try_get(4).map_err(g)?,
        kms_key_id: r.try_get(5).map_err(g)?,
        created_ms: r.try_get(6).map_err(g)?,
        last_changed_ms: r.try_get(7).map_err(g)?,
        last_accessed_ms: r.try_get(8).map_err(g)?,
        deletion_date_ms: r.try_get(9).map_err(g)?,
        tags_json: r.try_get(10).map_err(g)?,
        policy: r.try_get(11).map_err(g)?,
        rotation_json: r.try_get(12).map_err(g)?,
        next_rotation_ms: r.try_get(13).map_err(g)?,
        revision: u64::try_from(r.try_get::<_, i64>(14).map_err(g)?).map_err(|_| corrupt("revision"))?,
    })
}

fn version_from_row(r: &Row) -> StoreResult<SecretVersionRecord> {
    let g = |e: tokio_postgres::Error| unavailable(e);
    let stages: String = r.try_get(2).map_err(g)?;
    Ok(SecretVersionRecord {
        secret_arn: r.try_get(0).map_err(g)?,
        version_id: r.try_get(1).map_err(g)?,
        stages: if stages.is_empty() { Vec::new() } else { stages.split(',').map(str::to_owned).collect() },
        created_ms: r.try_get(3).map_err(g)?,
        last_accessed_ms: r.try_get(4).map_err(g)?,
        kms_key_arn: r.try_get(5).map_err(g)?,
        encrypted_data_key: r.try_get(6).map_err(g)?,
        ciphertext: r.try_get(7).map_err(g)?,
        binary: r.try_get(8).map_err(g)?,
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
async fn upsert_version(tx: &impl deadpool_postgres::GenericClient, v: &SecretVersionRecord, stages: &str) -> StoreResult<()> {
    tx.execute(
        &format!(
            "INSERT INTO secret_versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (secret_arn, version_id) DO UPDATE SET stages = EXCLUDED.stages, created_ms = EXCLUDED.created_ms, \
             last_accessed_ms = EXCLUDED.last_accessed_ms, kms_key_arn = EXCLUDED.kms_key_arn, \
             encrypted_data_key = EXCLUDED.encrypted_data_key, ciphertext = EXCLUDED.ciphertext, is_binary = EXCLUDED.is_binary"
        ),
        &[
            &v.secret_arn,
            &v.version_id,
            &stages,
            &v.created_ms,
            &v.last_accessed_ms,
            &v.kms_key_arn,
            &v.encrypted_data_key,
            &v.ciphertext,
            &v.binary,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Compare-and-swap of a secret row on its revision. Its identity (ARN, account, region, name)
/// and creation time are fixed at creation.
async fn update_secret_row(tx: &impl deadpool_postgres::GenericClient, s: &SecretRecord, expected_revision: u64) -> StoreResult<()> {
    let n = tx
        .execute(
            "UPDATE secrets SET description = $2, kms_key_id = $3, last_changed_ms = $4, last_accessed_ms = $5, \
             deletion_date_ms = $6, tags_json = $7, policy = $8, rotation_json = $9, next_rotation_ms = $10, revision = $11 \
             WHERE arn = $1 AND revision = $12",
            &[
                &s.arn,
                &s.description,
                &s.kms_key_id,
                &s.last_changed_ms,
                &s.last_accessed_ms,
                &s.deletion_date_ms,
                &s.tags_json,
                &s.policy,
                &s.rotation_json,
                &s.next_rotation_ms,
                &rev_i64(s.revision)?,
                &rev_i64(expected_revision)?,
            ],
        )
        .await
        .map_err(pg)?;
    if n == 1 {
        return Ok(());
    }
    let exists = tx.query_opt("SELECT 1 FROM secrets WHERE arn = $1", &[&s.arn]).await.map_err(pg)?.is_some();
    Err(if exists { StoreError::Conflict } else { StoreError::NotFound })
}
