//! `clavis key ...`: key commands that AWS tools cannot express. `clavis key rewrap` uses
//! Clavis's re-wrap on unwrap to bring a stored ciphertext (a wrapped data key) up to the key's
//! newest material version without the plaintext ever leaving the server's response path.

use crate::client::{Client, Endpoint};
use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::path::PathBuf;

/// `clavis key ...`
#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Re-wrap a ciphertext under its key's newest material version (Decrypt with
    /// `X-Clavis-Rewrap: true`). Prints JSON; never prints the plaintext.
    Rewrap {
        /// The ciphertext blob (raw bytes, as `aws kms encrypt ... | base64 -d` writes it).
        #[arg(long)]
        ciphertext_file: PathBuf,
        /// Where to write the re-wrapped blob (written only when it changed).
        #[arg(long)]
        out: PathBuf,
        /// Encryption context pairs `key=value` (repeat the flag).
        #[arg(long = "encryption-context", value_name = "KEY=VALUE")]
        context: Vec<String>,
        /// The server.
        #[arg(long, env = "AWS_ENDPOINT_URL", default_value = "http://127.0.0.1:8484")]
        endpoint_url: String,
        /// Signing region.
        #[arg(long)]
        region: Option<String>,
    },
    /// Require a second principal's approval for deleting a key (irreversible).
    EnableDualAuthorization {
        /// Key id or key ARN.
        #[arg(long)]
        key_id: String,
        /// The server.
        #[arg(long, env = "AWS_ENDPOINT_URL", default_value = "http://127.0.0.1:8484")]
        endpoint_url: String,
        /// Signing region.
        #[arg(long)]
        region: Option<String>,
    },
}

/// Runs a key subcommand.
pub fn run(cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::EnableDualAuthorization { key_id, endpoint_url, region } => {
            let endpoint = Endpoint::from_env(&endpoint_url, region)?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let mut client = Client::connect(&endpoint).await?;
                client.call_json("ClavisAdmin.EnableKeyDualAuthorization", serde_json::json!({"KeyId": key_id})).await?;
                println!("{}", serde_json::json!({"KeyId": key_id, "DualAuthorization": true}));
                Ok(())
            })
        }
        KeyCommand::Rewrap { ciphertext_file, out, context, endpoint_url, region } => {
            let blob = std::fs::read(&ciphertext_file).with_context(|| format!("reading {}", ciphertext_file.display()))?;
            let mut ctx = serde_json::Map::new();
            for pair in context {
                let (k, v) = pair.split_once('=').context("--encryption-context takes KEY=VALUE")?;
                ctx.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
            }
            let endpoint = Endpoint::from_env(&endpoint_url, region)?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let mut client = Client::connect(&endpoint).await?;
                let mut body = serde_json::json!({"CiphertextBlob": STANDARD.encode(&blob)});
                if !ctx.is_empty() {
                    body["EncryptionContext"] = serde_json::Value::Object(ctx);
                }
                let reply = client.call_json_with("TrentService.Decrypt", body, Some(("x-clavis-rewrap", "true"))).await?;
                let version = reply["ClavisKeyMaterialVersion"].as_u64();
                let rewrapped = match reply["ClavisRewrappedCiphertextBlob"].as_str() {
                    Some(b64) => {
                        std::fs::write(&out, STANDARD.decode(b64)?).with_context(|| format!("writing {}", out.display()))?;
                        true
                    }
                    None => false,
                };
                println!("{}", serde_json::json!({"KeyId": reply["KeyId"], "KeyMaterialVersion": version, "Rewrapped": rewrapped}));
                Ok(())
            })
        }
    }
}
