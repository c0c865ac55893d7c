//! `clavis encrypt` and `clavis decrypt`: envelope encryption of files in the AWS Encryption SDK
//! message format (docs/envelope.md). A fresh data key per file from GenerateDataKey, wrapped
//! again with Encrypt under each further `--key-id`, unwrapped with Decrypt on the way back,
//! all through the command-line client (`client.rs`); the format itself is `clavis-esdk`.
//!
//! Output goes to a temporary file beside the destination (mode 0600) and is renamed over it
//! only when the whole message was written or read and authenticated: a failed or tampered
//! decrypt leaves nothing under the output name. Standard output (`-`) and non-regular files
//! (`/dev/null`, pipes) are written directly, frame by frame as each authenticates.

use crate::client::{Client, Endpoint};
use anyhow::{Context, bail};
use base64::Engine as _;
use clavis_crypto::SecretBytes;
use clavis_esdk::{Decryptor, EncryptMaterials, EncryptedDataKey, EncryptionContext, Limits, StreamOptions, Suite};
use serde_json::json;
use std::fs::File;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// The key provider id of KMS-wrapped data keys.
const KMS_PROVIDER: &str = "aws-kms";

/// Where the KMS calls go, and how the command reports.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The server (default: `AWS_ENDPOINT_URL_KMS`, then `AWS_ENDPOINT_URL`, then
    /// http://127.0.0.1:8484).
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Signing region.
    #[arg(long)]
    region: Option<String>,
    /// Encryption context pairs `key=value`. Encrypting: stored in the header and bound to the
    /// data key. Decrypting: each pair must be in the message's context.
    #[arg(long = "context", value_name = "KEY=VALUE", value_parser = parse_pair)]
    context: Vec<(String, String)>,
    /// Refuse messages (or, encrypting, requests) with more wrapped data keys than this.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    max_encrypted_data_keys: Option<u16>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// The input file, `-` for standard input.
    input: PathBuf,
    /// The output file, `-` for standard output.
    output: PathBuf,
}

/// `clavis encrypt`
#[derive(Debug, clap::Args)]
pub struct EncryptArgs {
    /// The KMS key for the data key (GenerateDataKey); each further `--key-id` adds a copy of
    /// the data key wrapped under that key (Encrypt), any one of which can decrypt.
    #[arg(long, required = true)]
    key_id: Vec<String>,
    /// The algorithm suite, as aws-encryption-cli names it.
    #[arg(long, default_value = "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384", value_parser = parse_suite)]
    algorithm: Suite,
    /// Plaintext bytes per frame (1 to 16777216).
    #[arg(long, default_value_t = clavis_esdk::DEFAULT_FRAME_LENGTH, value_parser = clap::value_parser!(u32).range(1..=i64::from(clavis_esdk::MAX_FRAME_LENGTH)))]
    frame_length: u32,
    #[command(flatten)]
    common: Common,
}

/// `clavis decrypt`
#[derive(Debug, clap::Args)]
pub struct DecryptArgs {
    /// Only these KMS keys may unwrap the data key (default: the key each wrapped copy names).
    #[arg(long)]
    key_id: Vec<String>,
    /// Require this algorithm suite (default: either committing suite).
    #[arg(long, value_parser = parse_suite)]
    algorithm: Option<Suite>,
    #[command(flatten)]
    common: Common,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, not {s:?}")),
    }
}

fn parse_suite(s: &str) -> Result<Suite, String> {
    Suite::from_name(s).ok_or_else(|| {
        format!("unsupported algorithm {s:?}: AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384 or AES_256_GCM_HKDF_SHA512_COMMIT_KEY")
    })
}

impl Common {
    fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let url = self
            .endpoint_url
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_KMS").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .unwrap_or_else(|| "http://127.0.0.1:8484".to_owned());
        Endpoint::from_env(&url, self.region.clone())
    }

    fn context(&self) -> anyhow::Result<EncryptionContext> {
        let mut context = EncryptionContext::new();
        for (k, v) in &self.context {
            if context.insert(k.clone(), v.clone()).is_some() {
                bail!("--context {k} is given twice");
            }
        }
        Ok(context)
    }

    fn limits(&self) -> Limits {
        Limits { max_encrypted_data_keys: self.max_encrypted_data_keys }
    }
}

/// The input: a file or standard input, read without Rust's small stdin buffer.
fn open_input(path: &Path) -> anyhow::Result<(File, Option<u64>)> {
    if path == Path::new("-") {
        let fd = std::io::stdin().as_fd().try_clone_to_owned().context("standard input")?;
        return Ok((File::from(fd), None));
    }
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let meta = file.metadata().with_context(|| format!("reading {}", path.display()))?;
    if meta.is_dir() {
        bail!("{} is a directory", path.display());
    }
    Ok((file, meta.is_file().then_some(meta.len())))
}

/// The output: a temporary file renamed over the destination on success, or a direct write.
struct Output {
    file: File,
    /// For a temporary file: its path and the destination.
    rename: Option<(PathBuf, PathBuf)>,
    committed: bool,
}

impl Output {
    fn create(path: &Path, input: &Path) -> anyhow::Result<Output> {
        if path == Path::new("-") {
            let fd = std::io::stdout().as_fd().try_clone_to_owned().context("standard output")?;
            return Ok(Output { file: File::from(fd), rename: None, committed: false });
        }
        match std::fs::metadata(path) {
            // Devices and pipes (/dev/null, a FIFO) cannot be replaced by a rename.
            Ok(meta) if !meta.is_file() && !meta.is_dir() => {
                let file = std::fs::OpenOptions::new().write(true).open(path).with_context(|| format!("opening {}", path.display()))?;
                return Ok(Output { file, rename: None, committed: false });
            }
            Ok(meta) if meta.is_dir() => bail!("{} is a directory", path.display()),
            Ok(_) if input != Path::new("-") && same_file(path, input) => {
                bail!("the output {} is the input file", path.display())
            }
            _ => {}
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let suffix = hex_suffix()?;
        let temp = dir.join(format!(".{name}.{suffix}.clavis-tmp"));
        let file = std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().write(true).create_new(true), 0o600)
            .open(&temp)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        Ok(Output { file, rename: Some((temp, path.to_path_buf())), committed: false })
    }

    /// Makes the output durable and puts it under its name.
    fn commit(mut self) -> anyhow::Result<()> {
        if let Some((temp, dest)) = self.rename.take() {
            let result = self
                .file
                .sync_all()
                .context("syncing the output")
                .and_then(|()| std::fs::rename(&temp, &dest).with_context(|| format!("renaming the output to {}", dest.display())));
            if result.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            result?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if !self.committed
            && let Some((temp, _)) = &self.rename
        {
            let _ = std::fs::remove_file(temp);
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

fn hex_suffix() -> anyhow::Result<String> {
    let bytes = clavis_crypto::random::bytes(6)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A progress bar on a terminal (stderr), nothing otherwise.
fn progress_bar(quiet: bool, len: Option<u64>) -> Option<indicatif::ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template = if len.is_some() {
        "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
    } else {
        "{spinner} {bytes} {binary_bytes_per_sec}"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    Some(bar)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn b64_field(value: &serde_json::Value, field: &str) -> anyhow::Result<Vec<u8>> {
    let s = value[field].as_str().with_context(|| format!("the KMS response has no {field}"))?;
    base64::engine::general_purpose::STANDARD.decode(s).with_context(|| format!("the KMS response's {field} is not base64"))
}

fn kms_context(context: &EncryptionContext) -> serde_json::Value {
    serde_json::Value::Object(context.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

/// Runs `clavis encrypt`.
pub fn encrypt(args: EncryptArgs) -> anyhow::Result<()> {
    let common = &args.common;
    if let Some(max) = common.max_encrypted_data_keys
        && args.key_id.len() > usize::from(max)
    {
        bail!("{} key ids give more encrypted data keys than --max-encrypted-data-keys {max}", args.key_id.len());
    }
    let endpoint = common.endpoint()?;
    let (input, len) = open_input(&common.input)?;
    let (context, signing_key) = clavis_esdk::prepare_context(args.algorithm, common.context()?)?;
    let output = Output::create(&common.output, &common.input)?;

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (data_key, data_keys) = runtime.block_on(async {
        let mut client = Client::connect(&endpoint).await?;
        let ec = kms_context(&context);
        let mut key_ids = args.key_id.iter();
        let first = key_ids.next().context("--key-id is required")?;
        let generated = client
            .call_json("TrentService.GenerateDataKey", json!({"KeyId": first, "NumberOfBytes": 32, "EncryptionContext": ec}))
            .await
            .with_context(|| format!("generating a data key under {first}"))?;
        let data_key = SecretBytes::new(b64_field(&generated, "Plaintext")?);
        if data_key.len() != 32 {
            bail!("KMS returned a data key of {} bytes, not 32", data_key.len());
        }
        let mut data_keys = vec![edk(&generated)?];
        for key_id in key_ids {
            let wrapped = client
                .call_json(
                    "TrentService.Encrypt",
                    json!({"KeyId": key_id, "Plaintext": b64(data_key.expose_secret()), "EncryptionContext": ec}),
                )
                .await
                .with_context(|| format!("wrapping the data key under {key_id}"))?;
            data_keys.push(edk(&wrapped)?);
        }
        anyhow::Ok((data_key, data_keys))
    })?;

    let bar = progress_bar(common.quiet, len);
    let progress = |n: u64| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    };
    let materials = EncryptMaterials { suite: args.algorithm, context, data_keys, data_key, signing_key, frame_length: args.frame_length };
    let opts = StreamOptions { progress: &progress, ..StreamOptions::default() };
    let mut out = &output.file;
    let result = clavis_esdk::encrypt(input, &mut out, materials, &opts);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    result.with_context(|| format!("encrypting {}", common.input.display()))?;
    output.commit()
}

fn edk(response: &serde_json::Value) -> anyhow::Result<EncryptedDataKey> {
    let arn = response["KeyId"].as_str().context("the KMS response has no KeyId")?;
    Ok(EncryptedDataKey {
        provider_id: KMS_PROVIDER.to_owned(),
        provider_info: arn.as_bytes().to_vec(),
        ciphertext: b64_field(response, "CiphertextBlob")?,
    })
}

/// Runs `clavis decrypt`.
pub fn decrypt(args: DecryptArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let endpoint = common.endpoint()?;
    let required = common.context()?;
    let (input, len) = open_input(&common.input)?;
    let output = Output::create(&common.output, &common.input)?;
    let what = || format!("decrypting {}", common.input.display());
    let decryptor = Decryptor::new(input, &common.limits()).with_context(what)?;
    let header = decryptor.header();
    if let Some(expected) = args.algorithm
        && header.suite != expected
    {
        return Err(clavis_esdk::Error::WrongSuite { found: header.suite, expected }).with_context(what);
    }
    for (k, v) in &required {
        if header.context.get(k) != Some(v) {
            bail!("{}: the message's encryption context does not hold {k}={v}", what());
        }
    }
    let data_key = unwrap_data_key(&endpoint, header, &args.key_id).with_context(what)?;

    let bar = progress_bar(common.quiet, len);
    let progress = |n: u64| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    };
    let opts = StreamOptions { progress: &progress, ..StreamOptions::default() };
    let mut out = &output.file;
    let result = decryptor.decrypt(&data_key, &mut out, &opts);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    result.with_context(what)?;
    output.commit()
}

/// Asks KMS to unwrap each `aws-kms` data key in turn (under `key_ids` if given) until one
/// succeeds.
fn unwrap_data_key(endpoint: &Endpoint, header: &clavis_esdk::Header, key_ids: &[String]) -> anyhow::Result<SecretBytes> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut client = Client::connect(endpoint).await?;
        let ec = kms_context(&header.context);
        let mut last_error = None;
        for edk in header.data_keys.iter().filter(|k| k.provider_id == KMS_PROVIDER) {
            let named = String::from_utf8_lossy(&edk.provider_info).into_owned();
            let candidates: Vec<&str> = if key_ids.is_empty() { vec![&named] } else { key_ids.iter().map(String::as_str).collect() };
            for key_id in candidates {
                let body = json!({"CiphertextBlob": b64(&edk.ciphertext), "KeyId": key_id, "EncryptionContext": ec});
                match client.call_json("TrentService.Decrypt", body).await {
                    Ok(reply) => {
                        let key = SecretBytes::new(b64_field(&reply, "Plaintext")?);
                        if key.len() != 32 {
                            bail!("KMS returned a data key of {} bytes, not 32", key.len());
                        }
                        return Ok(key);
                    }
                    Err(e) => last_error = Some(e),
                }
            }
        }
        match last_error {
            Some(e) => Err(e.context("no encrypted data key could be decrypted")),
            None => bail!("the message has no data key wrapped by KMS (provider aws-kms)"),
        }
    })
}
