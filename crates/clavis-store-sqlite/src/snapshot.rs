//! An online snapshot of a database file, for `clavis operator backup`: `VACUUM INTO` on a
//! read-only connection of its own, beside a server that keeps serving from the same file.
//!
//! `VACUUM INTO` runs in one read transaction, so the copy holds exactly the transactions
//! committed before it began (in WAL mode a reader never blocks the writer, nor the writer a
//! reader). The copy is rebuilt from the live rows: it holds no free pages, so no byte of a row
//! deleted before the snapshot (destroyed key material) reaches it. This module only copies:
//! it interprets no record and writes nothing to the source.

use clavis_store::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeMap;
use std::path::Path;

/// What a snapshot holds, read back from the copy.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The copy's schema version (SQLite's `user_version`).
    pub schema_version: u32,
    /// The copy's `settings` table (deployment-wide settings: the account, the master-key
    /// registry; sealed values stay sealed).
    settings: BTreeMap<String, String>,
}

impl Snapshot {
    /// The value of the setting `name` in the copy.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings.get(name).map(String::as_str)
    }
}

fn failed(what: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Unavailable(format!("{what}: {e}"))
}

/// Copies the database at `source` into `target` as one consistent state while other
/// connections (a serving Clavis) keep reading and writing it, then checks the copy
/// (`PRAGMA quick_check`) and reads its schema version and settings.
///
/// `target` must not exist or be an empty file (SQLite's rule for `VACUUM INTO`); the caller
/// creates it empty with the mode it wants, since SQLite would create it with the umask's.
pub fn snapshot_into(source: &Path, target: &Path) -> Result<Snapshot, StoreError> {
    let target_text = target.to_str().ok_or_else(|| StoreError::Unavailable(format!("{} is not a UTF-8 path", target.display())))?;
    // Read-only and without SQLITE_OPEN_CREATE: a mistyped path is an error, not a new empty
    // database, and nothing here can change the source.
    let conn = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(failed("opening the database"))?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(failed("opening the database"))?;
    conn.execute("VACUUM INTO ?1", [target_text]).map_err(failed("VACUUM INTO"))?;
    drop(conn);

    let copy = Connection::open_with_flags(target, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(failed("opening the snapshot"))?;
    let check: String = copy.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(failed("checking the snapshot"))?;
    if check != "ok" {
        return Err(StoreError::Corrupt(format!("the snapshot fails PRAGMA quick_check: {check}")));
    }
    let schema_version: u32 = copy.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(failed("reading the schema version"))?;
    let mut settings = BTreeMap::new();
    let mut stmt = copy.prepare("SELECT name, value FROM settings").map_err(failed("reading the settings"))?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(failed("reading the settings"))?;
    for row in rows {
        let (name, value) = row.map_err(failed("reading the settings"))?;
        settings.insert(name, value);
    }
    Ok(Snapshot { schema_version, settings })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failure should stop the test loudly.

    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("clavis-snapshot-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A snapshot taken while a transaction is open on another connection holds what was
    /// committed before it, not the open transaction's rows, and is a database of its own.
    #[test]
    fn snapshot_holds_committed_state_only() {
        let dir = temp_dir("committed");
        let db = dir.join("clavis.db");
        let store = crate::SqliteStore::open(&db).unwrap();
        let writer = Connection::open(&db).unwrap();
        writer.execute("INSERT INTO settings (name, value) VALUES ('committed', 'yes')", []).unwrap();
        writer.execute_batch("BEGIN IMMEDIATE; INSERT INTO settings (name, value) VALUES ('uncommitted', 'no');").unwrap();

        let target = dir.join("copy.db");
        let snap = snapshot_into(&db, &target).unwrap();
        writer.execute_batch("COMMIT").unwrap();

        assert_eq!(snap.setting("committed"), Some("yes"));
        assert_eq!(snap.setting("uncommitted"), None);
        assert!(snap.schema_version > 0);
        // The copy opens as a Clavis database of the same schema.
        drop(store);
        let reopened = crate::SqliteStore::open(&target).unwrap();
        drop(reopened);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn snapshot_refuses_a_missing_source_and_an_existing_target() {
        let dir = temp_dir("refuses");
        assert!(snapshot_into(&dir.join("absent.db"), &dir.join("copy.db")).is_err());
        assert!(!dir.join("absent.db").exists(), "a missing source must not be created");
        let db = dir.join("clavis.db");
        drop(crate::SqliteStore::open(&db).unwrap());
        std::fs::write(dir.join("taken.db"), b"not empty").unwrap();
        assert!(snapshot_into(&db, &dir.join("taken.db")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
