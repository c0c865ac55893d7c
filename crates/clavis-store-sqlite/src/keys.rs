//! [`clavis_store::KeyStore`] for SQLite: keys and their sealed material.

use super::*;
use clavis_store::{KEY_DESTRUCTION, KeyStore};

#[async_trait::async_trait]
impl KeyStore for SqliteStore {
    async fn create_key(&self, key: &KeyRecord, material: Option<&KeyMaterialRecord>, tags: &[Tag]) -> StoreResult<()> {
        let (key, material, tags) = (key.clone(), material.cloned(), tags.to_vec());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            let res = tx.execute(
                &format!("INSERT INTO keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)"),
                params![
                    key.key_id,
                    key.account_id,
                    key.region,
                    key.description,
                    key.key_usage,
                    key.key_spec,
                    key.origin,
                    key.key_state,
                    key.creation_date_ms,
                    key.deletion_date_ms,
                    key.policy,
                    key.current_version,
                    rev_i64(key.revision)?,
                    key.rotation_period_days,
                    key.next_rotation_ms,
                    i64::from(key.dual_auth),
                    key.deletion_request.as_ref().map(|d| d.requested_by.clone()),
                    key.deletion_request.as_ref().map(|d| d.requested_ms),
                    key.deletion_request.as_ref().map(|d| d.window_days),
                    key.valid_to_ms,
                    key.expiration_model,
                    key.import_fingerprint
                ],
            );
            inserted(res)?;
            if let Some(m) = &material {
                insert_material(&tx, m)?;
            }
            for t in &tags {
                tx.execute(
                    "INSERT OR REPLACE INTO tags (key_id, tag_key, tag_value) VALUES (?1, ?2, ?3)",
                    params![key.key_id, t.key, t.value],
                )
                .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn get_key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>> {
        let key_id = key_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE key_id = ?1"))
                .and_then(|mut st| st.query_row(params![key_id], key_from_row).optional())
                .map_err(unavailable)
        })
        .await
    }

    async fn update_key(&self, key: &KeyRecord, expected_revision: u64) -> StoreResult<()> {
        let key = key.clone();
        self.write(move |conn| update_key_row(conn, &key, expected_revision)).await
    }

    async fn list_keys(&self, account_id: &str, region: &str, after: Option<&str>, limit: usize) -> StoreResult<Vec<KeyRecord>> {
        let (account_id, region, after) = (account_id.to_owned(), region.to_owned(), after.unwrap_or("").to_owned());
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM keys WHERE account_id = ?1 AND region = ?2 AND key_id > ?3 ORDER BY key_id LIMIT ?4"
                ))
                .map_err(unavailable)?;
            st.query_map(params![account_id, region, after, limit_i64(limit)], key_from_row)
                .and_then(Iterator::collect)
                .map_err(unavailable)
        })
        .await
    }

    async fn get_material(&self, key_id: &str, version: u32) -> StoreResult<Option<KeyMaterialRecord>> {
        let key_id = key_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT sealed, created_ms, rotation_type FROM key_material WHERE key_id = ?1 AND version = ?2")
                .and_then(|mut st| {
                    st.query_row(params![key_id, version], |r| {
                        Ok(KeyMaterialRecord {
                            key_id: key_id.clone(),
                            version,
                            sealed: r.get(0)?,
                            created_ms: r.get(1)?,
                            rotation_type: r.get(2)?,
                        })
                    })
                    .optional()
                })
                .map_err(unavailable)
        })
        .await
    }

    async fn add_material(&self, key: &KeyRecord, expected_revision: u64, material: &KeyMaterialRecord) -> StoreResult<()> {
        let (key, material) = (key.clone(), material.clone());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            update_key_row(&tx, &key, expected_revision)?;
            insert_material(&tx, &material)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn list_materials(&self, key_id: &str) -> StoreResult<Vec<KeyMaterialRecord>> {
        let key_id = key_id.to_owned();
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached("SELECT version, sealed, created_ms, rotation_type FROM key_material WHERE key_id = ?1 ORDER BY version")
                .map_err(unavailable)?;
            st.query_map(params![key_id], |r| {
                Ok(KeyMaterialRecord {
                    key_id: key_id.clone(),
                    version: r.get(0)?,
                    sealed: r.get(1)?,
                    created_ms: r.get(2)?,
                    rotation_type: r.get(3)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(unavailable)
        })
        .await
    }

    async fn destroy_key(&self, key_id: &str, expected_revision: u64) -> StoreResult<()> {
        let key_id = key_id.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            let rev: Option<i64> = tx
                .query_row("SELECT revision FROM keys WHERE key_id = ?1", params![key_id], |r| r.get(0))
                .optional()
                .map_err(unavailable)?;
            match rev {
                None => return Err(StoreError::NotFound),
                Some(r) if r != rev_i64(expected_revision)? => return Err(StoreError::Conflict),
                Some(_) => {}
            }
            // The one list of what a key owns, shared with the other backend.
            for (table, column) in KEY_DESTRUCTION {
                tx.execute(&format!("DELETE FROM {table} WHERE {column} = ?1"), params![key_id]).map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)?;
            erase_checkpoint(conn)
        })
        .await
    }

    async fn import_material(
        &self,
        key: &KeyRecord,
        expected_revision: u64,
        material: &KeyMaterialRecord,
        token_id: &str,
    ) -> StoreResult<()> {
        let (key, material, token_id) = (key.clone(), material.clone(), token_id.to_owned());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            update_key_row(&tx, &key, expected_revision)?;
            consume_token(&tx, &token_id)?;
            tx.execute("DELETE FROM key_material WHERE key_id = ?1", params![key.key_id]).map_err(unavailable)?;
            insert_material(&tx, &material)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn stage_material(
        &self,
        key: &KeyRecord,
        expected_revision: u64,
        material: &KeyMaterialRecord,
        token_id: &str,
    ) -> StoreResult<()> {
        let (key, material, token_id) = (key.clone(), material.clone(), token_id.to_owned());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            update_key_row(&tx, &key, expected_revision)?;
            consume_token(&tx, &token_id)?;
            insert_material(&tx, &material)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn promote_material(&self, key: &KeyRecord, expected_revision: u64, version: u32, rotation_type: &str) -> StoreResult<()> {
        let (key, rotation_type) = (key.clone(), rotation_type.to_owned());
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            update_key_row(&tx, &key, expected_revision)?;
            let n = tx
                .execute(
                    "UPDATE key_material SET rotation_type = ?3 WHERE key_id = ?1 AND version = ?2",
                    params![key.key_id, version, rotation_type],
                )
                .map_err(unavailable)?;
            if n != 1 {
                return Err(StoreError::NotFound);
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn delete_material(&self, key: &KeyRecord, expected_revision: u64) -> StoreResult<()> {
        let key = key.clone();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            update_key_row(&tx, &key, expected_revision)?;
            tx.execute("DELETE FROM key_material WHERE key_id = ?1", params![key.key_id]).map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            erase_checkpoint(conn)
        })
        .await
    }

    async fn keys_due(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<KeyRecord>> {
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM keys WHERE (key_state = 'PendingDeletion' AND deletion_date_ms <= ?1) \
                     OR (key_state IN ('Enabled', 'Disabled') AND valid_to_ms <= ?1) \
                     OR (key_state = 'Enabled' AND next_rotation_ms <= ?1) ORDER BY key_id LIMIT ?2"
                ))
                .map_err(unavailable)?;
            st.query_map(params![now_ms, limit_i64(limit)], key_from_row).and_then(Iterator::collect).map_err(unavailable)
        })
        .await
    }
}

const KEY_COLUMNS: &str = "key_id, account_id, region, description, key_usage, key_spec, origin, key_state, \
     creation_date_ms, deletion_date_ms, policy, current_version, revision, rotation_period_days, next_rotation_ms, \
     dual_auth, deletion_requested_by, deletion_requested_ms, deletion_request_window_days, valid_to_ms, expiration_model, \
     import_fingerprint";

fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        key_id: r.get(0)?,
        account_id: r.get(1)?,
        region: r.get(2)?,
        description: r.get(3)?,
        key_usage: r.get(4)?,
        key_spec: r.get(5)?,
        origin: r.get(6)?,
        key_state: r.get(7)?,
        creation_date_ms: r.get(8)?,
        deletion_date_ms: r.get(9)?,
        policy: r.get(10)?,
        current_version: r.get(11)?,
        revision: u64::try_from(r.get::<_, i64>(12)?).unwrap_or_default(),
        rotation_period_days: r.get(13)?,
        next_rotation_ms: r.get(14)?,
        dual_auth: r.get::<_, i64>(15)? != 0,
        deletion_request: match (r.get::<_, Option<String>>(16)?, r.get::<_, Option<i64>>(17)?, r.get::<_, Option<u32>>(18)?) {
            (Some(requested_by), Some(requested_ms), Some(window_days)) => {
                Some(DeletionRequest { requested_by, requested_ms, window_days })
            }
            _ => None,
        },
        valid_to_ms: r.get(19)?,
        expiration_model: r.get(20)?,
        import_fingerprint: r.get(21)?,
    })
}

fn insert_material(conn: &Connection, m: &KeyMaterialRecord) -> StoreResult<()> {
    inserted(conn.execute(
        "INSERT INTO key_material (key_id, version, sealed, created_ms, rotation_type) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![m.key_id, m.version, m.sealed, m.created_ms, m.rotation_type],
    ))
}

/// Compare-and-swap of a key row on its revision.
fn update_key_row(conn: &Connection, key: &KeyRecord, expected_revision: u64) -> StoreResult<()> {
    let n = conn
        .prepare_cached(
            "UPDATE keys SET description = ?2, key_usage = ?3, key_spec = ?4, origin = ?5, key_state = ?6, \
             deletion_date_ms = ?7, policy = ?8, current_version = ?9, revision = ?10, rotation_period_days = ?12, \
             next_rotation_ms = ?13, dual_auth = ?14, deletion_requested_by = ?15, deletion_requested_ms = ?16, \
             deletion_request_window_days = ?17, valid_to_ms = ?18, expiration_model = ?19, import_fingerprint = ?20 \
             WHERE key_id = ?1 AND revision = ?11",
        )
        .and_then(|mut st| {
            st.execute(params![
                key.key_id,
                key.description,
                key.key_usage,
                key.key_spec,
                key.origin,
                key.key_state,
                key.deletion_date_ms,
                key.policy,
                key.current_version,
                rev_i64(key.revision).unwrap_or(i64::MAX),
                rev_i64(expected_revision).unwrap_or(i64::MAX),
                key.rotation_period_days,
                key.next_rotation_ms,
                i64::from(key.dual_auth),
                key.deletion_request.as_ref().map(|d| d.requested_by.clone()),
                key.deletion_request.as_ref().map(|d| d.requested_ms),
                key.deletion_request.as_ref().map(|d| d.window_days),
                key.valid_to_ms,
                key.expiration_model,
                key.import_fingerprint
            ])
        })
        .map_err(unavailable)?;
    if n == 1 {
        return Ok(());
    }
    let exists: bool =
        conn.query_row("SELECT EXISTS (SELECT 1 FROM keys WHERE key_id = ?1)", params![key.key_id], |r| r.get(0)).map_err(unavailable)?;
    Err(if exists { StoreError::Conflict } else { StoreError::NotFound })
}

/// Consumes an import token: its parameters are deleted (a used token has no further use, and
/// its sealed wrapping key should not wait for a purge); [`StoreError::Conflict`] if it was
/// already consumed (or is unknown).
fn consume_token(conn: &Connection, token_id: &str) -> StoreResult<()> {
    let n = conn.execute("DELETE FROM import_params WHERE token_id = ?1 AND used = 0", params![token_id]).map_err(unavailable)?;
    if n == 1 { Ok(()) } else { Err(StoreError::Conflict) }
}
