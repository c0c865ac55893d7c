//! `clavis audit verify` and `clavis audit export`: offline checks of a data directory's audit
//! log (they need the data directory's root of trust to unseal the audit key).

use crate::root::RootArgs;
use crate::serve::AUDIT_DIR;
use anyhow::Context;
use clavis_audit::verify::{Filter, export, verify};
use clavis_crypto::seal::{RootOfTrust, SHAMIR_CONFIG_FILE, ShamirRoot};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `clavis audit ...`
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the whole log; exits non-zero naming the first bad record.
    Verify {
        /// The data directory.
        #[arg(long, env = "CLAVIS_DATA_DIR", default_value = "./clavis-data")]
        data_dir: PathBuf,
        /// For a Shamir-sealed data directory: files holding enough unseal shares (repeat).
        #[arg(long)]
        share_file: Vec<PathBuf>,
        #[command(flatten)]
        root: RootArgs,
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
        /// For a Shamir-sealed data directory: files holding enough unseal shares (repeat).
        #[arg(long)]
        share_file: Vec<PathBuf>,
        #[command(flatten)]
        root: RootArgs,
    },
    /// Look events up on a running server (ClavisAdmin.LookupEvents), newest first, as JSON
    /// lines. Endpoint and credentials are read as AWS tools read them.
    Lookup {
        /// The server.
        #[arg(long, env = "AWS_ENDPOINT_URL", default_value = "http://127.0.0.1:8484")]
        endpoint_url: String,
        /// Signing region (default: AWS_REGION, AWS_DEFAULT_REGION, us-east-1).
        #[arg(long)]
        region: Option<String>,
        /// Only this operation (CloudTrail attribute EventName).
        #[arg(long)]
        event_name: Option<String>,
        /// Only events naming this key id or ARN (ResourceName).
        #[arg(long)]
        resource_name: Option<String>,
        /// Only events of this user (Username).
        #[arg(long)]
        username: Option<String>,
        /// Only events at or after this Unix time.
        #[arg(long)]
        start_time: Option<f64>,
        /// Only events at or before this Unix time.
        #[arg(long)]
        end_time: Option<f64>,
        /// At most this many events.
        #[arg(long, default_value_t = 50)]
        max_items: usize,
    },
}

/// The audit MAC key, unsealed with the data directory's root of trust: its master key file, an
/// HSM (the same `--root-of-trust pkcs11` options as `clavis serve`), or for a Shamir data
/// directory the unseal shares in `share_files`.
fn audit_key(data_dir: &Path, share_files: &[PathBuf], root_args: &RootArgs) -> anyhow::Result<clavis_crypto::SecretBytes> {
    let shamir = data_dir.join(SHAMIR_CONFIG_FILE);
    let root: Arc<dyn RootOfTrust> = if shamir.exists() {
        let root = ShamirRoot::load(&shamir).context("loading shamir.conf")?.read_only();
        for f in share_files {
            let share = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            root.submit_share(share.trim()).with_context(|| format!("unseal share {}", f.display()))?;
        }
        anyhow::ensure!(!root.is_sealed(), "this data directory is Shamir-sealed: give enough --share-file to unseal its audit key");
        Arc::new(root)
    } else {
        let sealed_key = data_dir.join(AUDIT_DIR).join(clavis_audit::AUDIT_KEY_FILE);
        let sealed = std::fs::read(&sealed_key).with_context(|| format!("reading {}", sealed_key.display()))?;
        root_args.open_for_blob(data_dir, &sealed)?
    };
    Ok(clavis_audit::load_key(&data_dir.join(AUDIT_DIR), root.as_ref(), false)?)
}

/// Runs an audit subcommand.
pub fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { data_dir, share_file, root } => {
            let key = audit_key(&data_dir, &share_file, &root)?;
            match verify(&data_dir.join(AUDIT_DIR), &key) {
                Ok(r) => {
                    println!("audit log OK: {} records in {} segments; last record MAC {}", r.records, r.segments, r.last_hash);
                    if let Some(anchor) = r.anchor {
                        println!(
                            "retention: records 1 to {} (the segments before segment {}) were deleted by retention, as an {} \
                             record in the log says; the segments kept continue from the MACed ANCHOR",
                            anchor.seq,
                            anchor.segment,
                            clavis_audit::RETENTION_EVENT_NAME
                        );
                    }
                    if r.unacknowledged_tail_bytes > 0 {
                        println!(
                            "note: {} bytes after the last record belong to a batch an unclean stop left half-written; \
                             it was never acknowledged, and the server removes it when it starts",
                            r.unacknowledged_tail_bytes
                        );
                    }
                    Ok(())
                }
                Err(e) => {
                    eprintln!("audit log verification FAILED at {}: {}", e.location, e.reason);
                    std::process::exit(1);
                }
            }
        }
        AuditCommand::Lookup { endpoint_url, region, event_name, resource_name, username, start_time, end_time, max_items } => {
            let endpoint = crate::client::Endpoint::from_env(&endpoint_url, region)?;
            let attribute = [("EventName", event_name), ("ResourceName", resource_name), ("Username", username)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| serde_json::json!({"AttributeKey": k, "AttributeValue": v})))
                .collect::<Vec<_>>();
            if attribute.len() > 1 {
                anyhow::bail!("give at most one of --event-name, --resource-name, --username");
            }
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let mut client = crate::client::Client::connect(&endpoint).await?;
                let (mut printed, mut token): (usize, Option<String>) = (0, None);
                loop {
                    let mut body = serde_json::json!({"LookupAttributes": attribute, "MaxResults": (max_items - printed).min(50)});
                    if let Some(t) = &token {
                        body["NextToken"] = serde_json::Value::String(t.clone());
                    }
                    if let Some(t) = start_time {
                        body["StartTime"] = t.into();
                    }
                    if let Some(t) = end_time {
                        body["EndTime"] = t.into();
                    }
                    let page = client.call_json("ClavisAdmin.LookupEvents", body).await?;
                    for e in page["Events"].as_array().into_iter().flatten() {
                        println!("{}", e["CloudTrailEvent"].as_str().unwrap_or_default());
                        printed += 1;
                    }
                    token = page["NextToken"].as_str().map(str::to_owned);
                    if token.is_none() || printed >= max_items {
                        return Ok(());
                    }
                }
            })
        }
        AuditCommand::Export { data_dir, since, until, key, principal, share_file, root } => {
            let audit_key = audit_key(&data_dir, &share_file, &root)?;
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
