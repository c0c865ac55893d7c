//! `clavis admin ...`: the administration API (ClavisAdmin.*) from the command line. Endpoint
//! and credentials are read the way AWS tools read them (`AWS_ENDPOINT_URL`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`), with flags to override.

use crate::client::{Client, Endpoint};
use serde_json::json;

/// Where to send administration requests.
#[derive(Debug, clap::Args)]
pub struct Connection {
    /// The server.
    #[arg(long, env = "AWS_ENDPOINT_URL", default_value = "http://127.0.0.1:8484")]
    endpoint_url: String,
    /// Signing region (else AWS_REGION, AWS_DEFAULT_REGION, us-east-1).
    #[arg(long)]
    region: Option<String>,
}

impl Connection {
    /// The endpoint, with credentials and trust from the environment.
    pub fn endpoint(&self) -> anyhow::Result<Endpoint> {
        Endpoint::from_env(&self.endpoint_url, self.region.clone())
    }
}

/// `clavis admin ...`
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Accounts (tenants); operator administrators only.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Users of the caller's account.
    #[command(subcommand)]
    User(UserCommand),
    /// Access keys of a user (or of the caller).
    #[command(subcommand)]
    AccessKey(AccessKeyCommand),
    /// Credentials AWS KMS signs XKS proxy requests with (external key stores).
    #[command(subcommand)]
    XksCredential(XksCredentialCommand),
}

/// `clavis admin xks-credential ...`
#[derive(Debug, clap::Subcommand)]
pub enum XksCredentialCommand {
    /// Create an XKS credential for an account's keys; prints the JSON file the AWS KMS console
    /// accepts for an external key store (`XksProxyUriPath`, `XksProxyAuthenticationCredential`)
    /// plus its `Arn`. The secret is shown once. Rotate by creating a second one, updating the
    /// key store in AWS, then `clavis admin access-key delete` on the old id.
    Create {
        /// The account whose keys it may use (default: the caller's; another account needs an
        /// operator administrator).
        #[arg(long)]
        account: Option<String>,
        /// A name (default: random); its user is `xks/NAME`.
        #[arg(long)]
        name: Option<String>,
        /// Its built-in role (default reader: Encrypt, Decrypt, DescribeKey).
        #[arg(long, default_value = "reader")]
        role: String,
        /// The server's `--xks-path-prefix`, for the printed `XksProxyUriPath`.
        #[arg(long, default_value = "")]
        xks_path_prefix: String,
        #[command(flatten)]
        connection: Connection,
    },
}

/// `clavis admin account ...`
#[derive(Debug, clap::Subcommand)]
pub enum AccountCommand {
    /// Create an account; prints JSON with `AccountId`, `Arn` (its root), `AccessKeyId` and
    /// `SecretAccessKey` (the root's, shown once).
    Create {
        /// A display name.
        #[arg(long, default_value = "")]
        name: String,
        /// The 12-digit id (default: a random one).
        #[arg(long)]
        account_id: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// List the accounts as JSON.
    List {
        #[command(flatten)]
        connection: Connection,
    },
}

/// `clavis admin access-key ...`
#[derive(Debug, clap::Subcommand)]
pub enum AccessKeyCommand {
    /// A new access key; prints JSON with `AccessKeyId` and `SecretAccessKey` (shown once).
    Create {
        /// The user (default: the caller).
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// The access keys of a user (default: the caller), without secrets.
    List {
        /// The user (default: the caller).
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Stop an access key from signing requests (at once on the node that receives this).
    Deactivate {
        /// The access key id.
        access_key_id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Let a deactivated access key sign requests again.
    Activate {
        /// The access key id.
        access_key_id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete an access key.
    Delete {
        /// The access key id.
        access_key_id: String,
        #[command(flatten)]
        connection: Connection,
    },
}

/// `clavis admin user ...`
#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user and its first access key; prints JSON with `Arn`, `AccessKeyId` and
    /// `SecretAccessKey` (shown once).
    Create {
        /// The user name.
        name: String,
        /// Built-in role: admin, manager, writer, reader or none. Without it the user gets
        /// `none`: no permissions of its own, only what a key policy naming its ARN or a grant
        /// to it allows.
        #[arg(long, default_value = "none")]
        role: String,
        /// The account (default: the caller's; another account needs an operator administrator).
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// List the account's users as JSON.
    List {
        #[command(flatten)]
        connection: Connection,
    },
}

fn call(connection: &Connection, target: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let endpoint = connection.endpoint()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move { Client::connect(&endpoint).await?.call_json(target, body).await })
}

/// Runs an admin subcommand.
pub fn run(cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Account(AccountCommand::Create { name, account_id, connection }) => {
            let mut body = json!({"AccountName": name});
            if let Some(id) = account_id {
                body["AccountId"] = json!(id);
            }
            let out = call(&connection, "ClavisAdmin.CreateAccount", body)?;
            println!(
                "{}",
                json!({
                    "AccountId": out["Account"]["AccountId"],
                    "AccountName": out["Account"]["AccountName"],
                    "Arn": out["Account"]["Arn"],
                    "AccessKeyId": out["AccessKey"]["AccessKeyId"],
                    "SecretAccessKey": out["AccessKey"]["SecretAccessKey"],
                })
            );
            Ok(())
        }
        AdminCommand::Account(AccountCommand::List { connection }) => {
            let out = call(&connection, "ClavisAdmin.ListAccounts", json!({}))?;
            println!("{}", out["Accounts"]);
            Ok(())
        }
        AdminCommand::User(UserCommand::Create { name, role, account, connection }) => {
            let mut body = json!({"UserName": name, "Role": role});
            if let Some(a) = account {
                body["AccountId"] = json!(a);
            }
            let out = call(&connection, "ClavisAdmin.CreateUser", body)?;
            println!(
                "{}",
                json!({
                    "UserName": out["User"]["UserName"],
                    "Arn": out["User"]["Arn"],
                    "Role": out["User"]["Role"],
                    "AccessKeyId": out["AccessKey"]["AccessKeyId"],
                    "SecretAccessKey": out["AccessKey"]["SecretAccessKey"],
                })
            );
            Ok(())
        }
        AdminCommand::AccessKey(cmd) => {
            let out = match cmd {
                AccessKeyCommand::Create { user, connection } => {
                    let body = user.map_or_else(|| json!({}), |u| json!({"UserName": u}));
                    call(&connection, "ClavisAdmin.CreateAccessKey", body)?["AccessKey"].take()
                }
                AccessKeyCommand::List { user, connection } => {
                    let body = user.map_or_else(|| json!({}), |u| json!({"UserName": u}));
                    call(&connection, "ClavisAdmin.ListAccessKeys", body)?["AccessKeyMetadata"].take()
                }
                AccessKeyCommand::Deactivate { access_key_id, connection } => {
                    call(&connection, "ClavisAdmin.UpdateAccessKey", json!({"AccessKeyId": access_key_id, "Status": "Inactive"}))?;
                    json!({"AccessKeyId": access_key_id, "Status": "Inactive"})
                }
                AccessKeyCommand::Activate { access_key_id, connection } => {
                    call(&connection, "ClavisAdmin.UpdateAccessKey", json!({"AccessKeyId": access_key_id, "Status": "Active"}))?;
                    json!({"AccessKeyId": access_key_id, "Status": "Active"})
                }
                AccessKeyCommand::Delete { access_key_id, connection } => {
                    call(&connection, "ClavisAdmin.DeleteAccessKey", json!({"AccessKeyId": access_key_id}))?;
                    json!({"AccessKeyId": access_key_id, "Deleted": true})
                }
            };
            println!("{out}");
            Ok(())
        }
        AdminCommand::XksCredential(XksCredentialCommand::Create { account, name, role, xks_path_prefix, connection }) => {
            let mut body = json!({"Role": role});
            if let Some(a) = account {
                body["AccountId"] = json!(a);
            }
            if let Some(n) = name {
                body["Name"] = json!(n);
            }
            let out = call(&connection, "ClavisAdmin.CreateXksCredential", body)?;
            println!(
                "{}",
                json!({
                    "XksProxyUriPath": format!("{}/kms/xks/v1", xks_path_prefix.trim_end_matches('/')),
                    "XksProxyAuthenticationCredential": {
                        "AccessKeyId": out["AccessKeyId"],
                        "RawSecretAccessKey": out["RawSecretAccessKey"],
                    },
                    "Arn": out["Arn"],
                    "Role": out["Role"],
                })
            );
            Ok(())
        }
        AdminCommand::User(UserCommand::List { connection }) => {
            let out = call(&connection, "ClavisAdmin.ListUsers", json!({}))?;
            println!("{}", out["Users"]);
            Ok(())
        }
    }
}
