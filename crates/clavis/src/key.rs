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
    /// Bring your own key in one command: read the material from a file (or generate it and
    /// save a copy), fetch import parameters, wrap the material locally, upload it.
    Import {
        /// Key id or key ARN of a key created with Origin EXTERNAL.
        #[arg(long)]
        key_id: String,
        /// 32 bytes of key material to import.
        #[arg(long, conflicts_with = "generate")]
        material_file: Option<PathBuf>,
        /// Generate the material locally instead (written to --material-out, mode 0600).
        #[arg(long, requires = "material_out")]
        generate: bool,
        /// Where to keep the generated material.
        #[arg(long)]
        material_out: Option<PathBuf>,
        /// RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1 or RSA_AES_KEY_WRAP_SHA_256.
        #[arg(long, default_value = "RSAES_OAEP_SHA_256")]
        wrapping_algorithm: String,
        /// RSA_2048, RSA_3072 or RSA_4096.
        #[arg(long, default_value = "RSA_4096")]
        wrapping_key_spec: String,
        /// Expire the material at this Unix time (KEY_MATERIAL_EXPIRES).
        #[arg(long)]
        valid_to: Option<f64>,
        /// Prove possession of the material with the import nonce (Clavis extension, as IBM Key
        /// Protect's import token nonce).
        #[arg(long)]
        nonce: bool,
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
        KeyCommand::Import {
            key_id,
            material_file,
            generate,
            material_out,
            wrapping_algorithm,
            wrapping_key_spec,
            valid_to,
            nonce,
            endpoint_url,
            region,
        } => {
            let wrapping = clavis_crypto::import::ImportWrapping::parse(&wrapping_algorithm).context("unknown --wrapping-algorithm")?;
            let material = match (material_file, generate) {
                (Some(path), false) => {
                    clavis_crypto::SecretBytes::new(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)
                }
                (None, true) => {
                    let m = clavis_crypto::random::secret(32)?;
                    let out = material_out.context("--generate needs --material-out")?;
                    write_private(&out, m.expose_secret())?;
                    m
                }
                _ => anyhow::bail!("give --material-file FILE or --generate --material-out FILE"),
            };
            let endpoint = Endpoint::from_env(&endpoint_url, region)?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let mut client = Client::connect(&endpoint).await?;
                let params = client
                    .call_json(
                        "TrentService.GetParametersForImport",
                        serde_json::json!({"KeyId": key_id, "WrappingAlgorithm": wrapping_algorithm, "WrappingKeySpec": wrapping_key_spec}),
                    )
                    .await?;
                let b64 = |v: &serde_json::Value| STANDARD.decode(v.as_str().unwrap_or_default());
                let public = b64(&params["PublicKey"])?;
                let wrapped = clavis_crypto::import::wrap_for_import(&public, wrapping, &material)?;
                let mut body = serde_json::json!({
                    "KeyId": key_id,
                    "ImportToken": params["ImportToken"],
                    "EncryptedKeyMaterial": STANDARD.encode(&wrapped),
                });
                match valid_to {
                    Some(t) => {
                        body["ExpirationModel"] = "KEY_MATERIAL_EXPIRES".into();
                        body["ValidTo"] = t.into();
                    }
                    None => body["ExpirationModel"] = "KEY_MATERIAL_DOES_NOT_EXPIRE".into(),
                }
                if nonce {
                    let (iv, enc) = clavis_crypto::import::encrypt_nonce(&material, &b64(&params["ClavisImportNonce"])?)?;
                    body["ClavisNonceIv"] = STANDARD.encode(iv).into();
                    body["ClavisEncryptedNonce"] = STANDARD.encode(enc).into();
                }
                client.call_json("TrentService.ImportKeyMaterial", body).await?;
                println!("{}", serde_json::json!({"KeyId": params["KeyId"], "Imported": true, "NonceVerified": nonce}));
                Ok(())
            })
        }
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

fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}
