//! [`clavis_store::KeyStore`] for PostgreSQL: keys and their sealed material.

use super::*;
use clavis_store::{KEY_DESTRUCTION, KeyStore};

#[async_trait::async_trait]
impl KeyStore for PostgresStore {
    async fn create_key(&self, key: &KeyRecord, material: Option<&KeyMaterialRecord>, tags: &[Tag]) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute(
            &format!(
                "INSERT INTO keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"
            ),
            &[
                &key.key_id,
                &key.account_id,
                &key.region,
                &key.description,
                &key.key_usage,
                &key.key_spec,
                &key.origin,
                &key.key_state,
                &key.creation_date_ms,
                &key.deletion_date_ms,
                &key.policy,
                &i64::from(key.current_version),
                &rev_i64(key.revision)?,
                &key.rotation_period_days.map(i64::from),
                &key.next_rotation_ms,
                &key.dual_auth,
                &key.deletion_request.as_ref().map(|d| d.requested_by.clone()),
                &key.deletion_request.as_ref().map(|d| d.requested_ms),
                &key.deletion_request.as_ref().map(|d| i64::from(d.window_days)),
                &key.valid_to_ms,
                &key.expiration_model,
                &key.import_fingerprint,
            ],
        )
        .await
        .map_err(pg)?;
        if let Some(m) = material {
            insert_material(&tx, m).await?;
        }
        for t in tags {
            tx.execute(
                "INSERT INTO tags (key_id, tag_key, tag_value) VALUES ($1, $2, $3) ON CONFLICT (key_id, tag_key) DO UPDATE SET tag_value = $3",
                &[&key.key_id, &t.key, &t.value],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)
    }

    async fn get_key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>> {
        let client = self.client().await?;
        let st = client.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE key_id = $1")).await.map_err(pg)?;
        client.query_opt(&st, &[&key_id]).await.map_err(pg)?.as_ref().map(key_from_row).transpose()
    }

    async fn update_key(&self, key: &KeyRecord, expected_revision: u64) -> StoreResult<()> {
        let client = self.client().await?;
        update_key_row(&client, key, expected_revision).await
    }

    async fn list_keys(&self, account_id: &str, region: &str, after: Option<&str>, limit: usize) -> StoreResult<Vec<KeyRecord>> {
        let client = self.client().await?;
        let r = client
            .query(
                &format!("SELECT {KEY_COLUMNS} FROM keys WHERE account_id = $1 AND region = $2 AND key_id > $3 ORDER BY key_id LIMIT $4"),
                &[&account_id, &region, &after.unwrap_or(""), &limit_i64(limit)],
            )
            .await
            .map_err(pg)?;
        rows(r, key_from_row)
    }

    async fn get_material(&self, key_id: &str, version: u32) -> StoreResult<Option<KeyMaterialRecord>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached("SELECT version, sealed, created_ms, rotation_type FROM key_material WHERE key_id = $1 AND version = $2")
            .await
            .map_err(pg)?;
        client.query_opt(&st, &[&key_id, &i64::from(version)]).await.map_err(pg)?.map(|r| material_from_row(key_id, &r)).transpose()
    }

    async fn add_material(&self, key: &KeyRecord, expected_revision: u64, material: &KeyMaterialRecord) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        update_key_row(&tx, key, expected_revision).await?;
        insert_material(&tx, material).await?;
        tx.commit().await.map_err(pg)
    }

    async fn list_materials(&self, key_id: &str) -> StoreResult<Vec<KeyMaterialRecord>> {
        let client = self.client().await?;
        let r = client
            .query("SELECT version, sealed, created_ms, rotation_type FROM key_material WHERE key_id = $1 ORDER BY version", &[&key_id])
            .await
            .map_err(pg)?;
        rows(r, |row| material_from_row(key_id, row))
    }

    async fn destroy_key(&self, key_id: &str, expected_revision: u64) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        match lock_key(&tx, key_id).await? {
            None => return Err(StoreError::NotFound),
            Some(r) if r != rev_i64(expected_revision)? => return Err(StoreError::Conflict),
            Some(_) => {}
        }
        // The one list of what a key owns, shared with the other backend.
        for (table, column) in KEY_DESTRUCTION {
            tx.execute(&format!("DELETE FROM {table} WHERE {column} = $1"), &[&key_id]).await.map_err(pg)?;
        }
        tx.commit().await.map_err(pg)
    }

    async fn import_material(
        &self,
        key: &KeyRecord,
        expected_revision: u64,
        material: &KeyMaterialRecord,
        token_id: &str,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        update_key_row(&tx, key, expected_revision).await?;
        use_token(&tx, token_id).await?;
        tx.execute("DELETE FROM key_material WHERE key_id = $1", &[&key.key_id]).await.map_err(pg)?;
        insert_material(&tx, material).await?;
        tx.commit().await.map_err(pg)
    }

    async fn stage_material(
        &self,
        key: &KeyRecord,
        expected_revision: u64,
        material: &KeyMaterialRecord,
        token_id: &str,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        update_key_row(&tx, key, expected_revision).await?;
        use_token(&tx, token_id).await?;
        insert_material(&tx, material).await?;
        tx.commit().await.map_err(pg)
    }

    async fn promote_material(&self, key: &KeyRecord, expected_revision: u64, version: u32, rotation_type: &str) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        update_key_row(&tx, key, expected_revision).await?;
        let n = tx
            .execute(
                "UPDATE key_material SET rotation_type = $3 WHERE key_id = $1 AND version = $2",
                &[&key.key_id, &i64::from(version), &rotation_type],
            )
            .await
            .map_err(pg)?;
        if n != 1 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await.map_err(pg)
    }

    async fn delete_material(&self, key: &KeyRecord, expected_revision: u64) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        update_key_row(&tx, key, expected_revision).await?;
        tx.execute("DELETE FROM key_material WHERE key_id = $1", &[&key.key_id]).await.map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn keys_due(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<KeyRecord>> {
        let client = self.client().await?;
        let r = client
            .query(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM keys WHERE (key_state = 'PendingDeletion' AND deletion_date_ms <= $1) \
                     OR (key_state IN ('Enabled', 'Disabled') AND valid_to_ms <= $1) \
                     OR (key_state = 'Enabled' AND next_rotation_ms <= $1) ORDER BY key_id LIMIT $2"
                ),
                &[&now_ms, &limit_i64(limit)],
            )
            .await
            .map_err(pg)?;
        rows(r, key_from_row)
    }
}

const KEY_COLUMNS: &str = "key_id, account_id, region, description, key_usage, key_spec, origin, key_state, \
     creation_date_ms, deletion_date_ms, policy, current_version, revision, rotation_period_days, next_rotation_ms, \
     dual_auth, deletion_requested_by, deletion_requested_ms, deletion_request_window_days, valid_to_ms, expiration_model, \
     import_fingerprint";

fn key_from_row(r: &Row) -> StoreResult<KeyRecord> {
    let g = |e: tokio_postgres::Error| unavailable(e);
    Ok(KeyRecord {
        key_id: r.try_get(0).map_err(g)?,
        account_id: r.try_get(1).map_err(g)?,
        region: r.try_get(2).map_err(g)?,
        description: r.try_get(3).map_err(g)?,
        key_usage: r.try_get(4).map_err(g)?,
        key_spec: r.try_get(5).map_err(g)?,
        origin: r.try_get(6).map_err(g)?,
        key_state: r.try_get(7).map_err(g)?,
        creation_date_ms: r.try_get(8).map_err(g)?,
        deletion_date_ms: r.try_get(9).map_err(g)?,
        policy: r.try_get(10).map_err(g)?,
        current_version: u32_of(r.try_get(11).map_err(g)?, "version")?,
        revision: u64::try_from(r.try_get::<_, i64>(12).map_err(g)?).map_err(|_| corrupt("revision"))?,
        rotation_period_days: r.try_get::<_, Option<i64>>(13).map_err(g)?.map(|d| u32_of(d, "rotation period")).transpose()?,
        next_rotation_ms: r.try_get(14).map_err(g)?,
        dual_auth: r.try_get(15).map_err(g)?,
        deletion_request: match (
            r.try_get::<_, Option<String>>(16).map_err(g)?,
            r.try_get::<_, Option<i64>>(17).map_err(g)?,
            r.try_get::<_, Option<i64>>(18).map_err(g)?,
        ) {
            (Some(requested_by), Some(requested_ms), Some(window)) => {
                Some(DeletionRequest { requested_by, requested_ms, window_days: u32_of(window, "deletion window")? })
            }
            _ => None,
        },
        valid_to_ms: r.try_get(19).map_err(g)?,
        expiration_model: r.try_get(20).map_err(g)?,
        import_fingerprint: r.try_get(21).map_err(g)?,
    })
}

fn material_from_row(key_id: &str, r: &Row) -> StoreResult<KeyMaterialRecord> {
    Ok(KeyMaterialRecord {
        key_id: key_id.to_owned(),
        version: u32_of(r.try_get(0).map_err(unavailable)?, "version")?,
        sealed: r.try_get(1).map_err(unavailable)?,
        created_ms: r.try_get(2).map_err(unavailable)?,
        rotation_type: r.try_get(3).map_err(unavailable)?,
    })
}

async fn insert_material(tx: &impl deadpool_postgres::GenericClient, m: &KeyMaterialRecord) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO key_material (key_id, version, sealed, created_ms, rotation_type) VALUES ($1, $2, $3, $4, $5)",
        &[&m.key_id, &i64::from(m.version), &m.sealed, &m.created_ms, &m.rotation_type],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Compare-and-swap of a key row on its revision.
async fn update_key_row(tx: &impl deadpool_postgres::GenericClient, key: &KeyRecord, expected_revision: u64) -> StoreResult<()> {
    let n = tx
        .execute(
            "UPDATE keys SET description = $2, key_usage = $3, key_spec = $4, origin = $5, key_state = $6, \
             deletion_date_ms = $7, policy = $8, current_version = $9, revision = $10, rotation_period_days = $12, \
             next_rotation_ms = $13, dual_auth = $14, deletion_requested_by = $15, deletion_requested_ms = $16, \
             deletion_request_window_days = $17, valid_to_ms = $18, expiration_model = $19, import_fingerprint = $20 \
             WHERE key_id = $1 AND revision = $11",
            &[
                &key.key_id,
                &key.description,
                &key.key_usage,
                &key.key_spec,
                &key.origin,
                &key.key_state,
                &key.deletion_date_ms,
                &key.policy,
                &i64::from(key.current_version),
                &rev_i64(key.revision)?,
                &rev_i64(expected_revision)?,
                &key.rotation_period_days.map(i64::from),
                &key.next_rotation_ms,
                &key.dual_auth,
                &key.deletion_request.as_ref().map(|d| d.requested_by.clone()),
                &key.deletion_request.as_ref().map(|d| d.requested_ms),
                &key.deletion_request.as_ref().map(|d| i64::from(d.window_days)),
                &key.valid_to_ms,
                &key.expiration_model,
                &key.import_fingerprint,
            ],
        )
        .await
        .map_err(pg)?;
    if n == 1 {
        return Ok(());
    }
    let exists = tx.query_opt("SELECT 1 FROM keys WHERE key_id = $1", &[&key.key_id]).await.map_err(pg)?.is_some();
    Err(if exists { StoreError::Conflict } else { StoreError::NotFound })
}

/// Consumes an import token: its parameters are deleted (a used token has no further use, and
/// its sealed wrapping key should not wait for a purge); [`StoreError::Conflict`] if it was
/// already consumed (or is unknown).
async fn use_token(tx: &impl deadpool_postgres::GenericClient, token_id: &str) -> StoreResult<()> {
    let n = tx.execute("DELETE FROM import_params WHERE token_id = $1 AND NOT used", &[&token_id]).await.map_err(pg)?;
    if n == 1 { Ok(()) } else { Err(StoreError::Conflict) }
}
