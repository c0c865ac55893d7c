//! `clavis operator ...`: the root of trust from the command line. `init`, `unseal` and
//! `status` talk to a server's unauthenticated `/operator/*` paths (a sealed server has no way
//! to check a signature); `seal` is an administrator's signed `ClavisAdmin.Seal` request.
//! `backup` and `restore` work on a data directory on this host (the `backup` module).

use crate::client::{Client, Endpoint, plain_request};
use anyhow::{Context, bail};
use serde_json::json;
use std::io::BufRead;

/// Where the server is.
#[derive(Debug, clap::Args)]
pub struct Server {
    /// The server.
    #[arg(long, env = "AWS_ENDPOINT_URL", default_value = "http://127.0.0.1:8484")]
    endpoint_url: String,
}

/// `clavis operator ...`
#[derive(Debug, clap::Subcommand)]
pub enum OperatorCommand {
    /// Initialise a server started with `--root-of-trust shamir`: creates the master key and
    /// prints its unseal shares as JSON, once. Give each share to a different person.
    Init {
        /// How many shares to make.
        #[arg(long)]
        shares: u8,
        /// How many shares unseal the server.
        #[arg(long)]
        threshold: u8,
        #[command(flatten)]
        server: Server,
    },
    /// Submit one unseal share, read from `--share-file` or from standard input (never from
    /// the command line, where other users and shell history would see it).
    Unseal {
        /// A file holding the share.
        #[arg(long)]
        share_file: Option<std::path::PathBuf>,
        /// The unseal's nonce, printed with the answer to its first share; every later share
        /// must give it (CLAVIS_UNSEAL_NONCE).
        #[arg(long, env = "CLAVIS_UNSEAL_NONCE")]
        nonce: Option<String>,
        #[command(flatten)]
        server: Server,
    },
    /// Seal the server: it forgets the master key and every unsealed key (administrators only;
    /// signed with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
    Seal {
        #[command(flatten)]
        server: Server,
    },
    /// Make a new master-key version and reseal every stored value under it, online
    /// (administrators of the operator's account; signed with AWS_ACCESS_KEY_ID /
    /// AWS_SECRET_ACCESS_KEY). The new key goes to the provider the server was started with, so
    /// restarting a file-keyed server with `--root-of-trust pkcs11` and rotating migrates it into
    /// the HSM.
    RotateMasterKey {
        /// Into Shamir (a server started with `--root-of-trust shamir`): how many shares to make.
        #[arg(long)]
        shares: Option<u8>,
        /// Into Shamir: how many shares unseal.
        #[arg(long)]
        threshold: Option<u8>,
        #[command(flatten)]
        server: Server,
    },
    /// The root of trust's provider, sealed state, master-key version and unseal progress.
    Status {
        #[command(flatten)]
        server: Server,
    },
    /// Back up an SQLite deployment while it serves, on its host: a consistent snapshot of the
    /// database and its audit log in one archive (mode 0600). The master key is never in it.
    Backup(crate::backup::BackupArgs),
    /// Restore a backup into a new or empty data directory; prints which master key the
    /// operator must supply (a backup never holds one).
    Restore(crate::backup::RestoreArgs),
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn checked(status: u16, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
    if status != 200 {
        bail!("{} ({status}): {}", body["__type"].as_str().unwrap_or("error"), body["message"].as_str().unwrap_or(""));
    }
    Ok(body)
}

/// Runs an operator subcommand.
pub fn run(cmd: OperatorCommand) -> anyhow::Result<()> {
    let rt = runtime()?;
    let out = match cmd {
        // Offline commands on the data directory: they print their own report.
        OperatorCommand::Backup(args) => return crate::backup::backup(args),
        OperatorCommand::Restore(args) => return crate::backup::restore(args),
        OperatorCommand::Init { shares, threshold, server } => {
            let (status, body) = rt.block_on(plain_request(
                &server.endpoint_url,
                "POST",
                "/operator/init",
                Some(json!({"Shares": shares, "Threshold": threshold})),
            ))?;
            checked(status, body)?
        }
        OperatorCommand::Unseal { share_file, nonce, server } => {
            let share = match share_file {
                Some(path) => std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
                None => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line).context("reading the share from standard input")?;
                    line
                }
            };
            let share = share.trim().to_owned();
            if share.is_empty() {
                bail!("no share given (standard input was empty)");
            }
            let request = match nonce {
                Some(n) => json!({"Share": share, "Nonce": n}),
                None => json!({"Share": share}),
            };
            let (status, body) = rt.block_on(plain_request(&server.endpoint_url, "POST", "/operator/unseal", Some(request)))?;
            checked(status, body)?
        }
        OperatorCommand::Seal { server } => {
            let endpoint = Endpoint::from_env(&server.endpoint_url, None)?;
            rt.block_on(async { Client::connect(&endpoint).await?.call_json("ClavisAdmin.Seal", json!({})).await })?;
            let (status, body) = rt.block_on(plain_request(&server.endpoint_url, "GET", "/operator/status", None))?;
            checked(status, body)?
        }
        OperatorCommand::RotateMasterKey { shares, threshold, server } => {
            let endpoint = Endpoint::from_env(&server.endpoint_url, None)?;
            let mut body = json!({});
            if let (Some(n), Some(k)) = (shares, threshold) {
                body = json!({"Shares": n, "Threshold": k});
            }
            rt.block_on(async { Client::connect(&endpoint).await?.call_json("ClavisAdmin.RotateMasterKey", body).await })?
        }
        OperatorCommand::Status { server } => {
            let (status, body) = rt.block_on(plain_request(&server.endpoint_url, "GET", "/operator/status", None))?;
            checked(status, body)?
        }
    };
    println!("{out}");
    Ok(())
}
