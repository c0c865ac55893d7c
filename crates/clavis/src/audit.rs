//! `clavis audit verify` and `clavis audit export`: offline checks of a data directory's audit
//! log (they need the data directory's root of trust to unseal the audit key).

use crate::serve::{AUDIT_DIR, MASTER_KEY_FILE};
use anyhow::Context;
use clavis_audit::verify::{Filter, export, verify};
use clavis_crypto::seal::LocalKeyFile;
use std::path::{Path, PathBuf};

/// `clavis audit ...`
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the whole log; exits non-zero naming the first bad record.
    Verify {
        /// The data directory.
        #[arg(long, env = "CLAVIS_DATA_DIR", default_value = "./clavis-data")]
        data_dir: PathBuf,
    },
    /// Print events as JSON lines (verifying the chain as it reads).
    Export {
        /// The data directory.
        #[arg(long, env = "CLAVIS_DATA_DIR", default_value = "./clavis-data")]
        data_dir: PathBuf,
        /// Only events at or after this time (ISO 8601 UTC, e.g. 2026-11-23T18:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Only events before this time.
        #[arg(long)]
        until: Option<String>,
        /// Only events concerning this key (id, ARN or alias).
        #[arg(long)]
        key: Option<String>,
        /// Only events of this principal ARN.
        #[arg(long)]
        principal: Option<String>,
    },
}

fn audit_key(data_dir: &Path) -> anyhow::Result<clavis_crypto::SecretBytes> {
    let root = LocalKeyFile::open(&data_dir.join(MASTER_KEY_FILE)).context("opening the master key file")?;
    Ok(clavis_audit::load_key(&data_dir.join(AUDIT_DIR), &root, false)?)
}

/// Runs an audit subcommand.
pub fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { data_dir } => {
            let key = audit_key(&data_dir)?;
            match verify(&data_dir.join(AUDIT_DIR), &key) {
                Ok(r) => {
                    println!("audit log OK: {} records in {} segments; last record MAC {}", r.records, r.segments, r.last_hash);
                    Ok(())
                }
                Err(e) => {
                    eprintln!("audit log verification FAILED at {}: {}", e.location, e.reason);
                    std::process::exit(1);
                }
            }
        }
        AuditCommand::Export { data_dir, since, until, key, principal } => {
            let audit_key = audit_key(&data_dir)?;
            let filter = Filter { since, until, key, principal };
            let mut out = std::io::stdout().lock();
            match export(&data_dir.join(AUDIT_DIR), &audit_key, &filter, &mut out) {
                Ok(_) => Ok(()),
                Err(e) => {
                    eprintln!("audit log verification FAILED at {}: {}", e.location, e.reason);
                    std::process::exit(1);
                }
            }
        }
    }
}
