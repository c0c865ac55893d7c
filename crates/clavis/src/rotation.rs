//! Secret rotation executors of `clavis serve --rotation-executor NAME=PATH|URL`: a local command
//! that receives each rotation step's event (AWS's Lambda event, one JSON object) on its standard
//! input and succeeds by exiting with status 0, as a rotation function succeeds by returning; or
//! an HTTPS webhook that receives the event as a POST body signed with HMAC-SHA256
//! (`X-Clavis-Timestamp: <Unix seconds>`, `X-Clavis-Signature: hex(HMAC(key, timestamp "." body))`,
//! the key from `--rotation-webhook-key-file`) and succeeds by answering 2xx.
//!
//! The command calls the Secrets Manager API back with credentials of its own. It starts with
//! an environment of its own too, not the server's (which may hold an init token or database
//! credentials): `PATH`, `HOME`, `LANG`, `TMPDIR` and `AWS_CA_BUNDLE` when set, and
//! `SECRETS_MANAGER_ENDPOINT`, `AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_REGION` and
//! `AWS_DEFAULT_REGION` for this server and the secret's region (AWS's rotation templates read
//! `SECRETS_MANAGER_ENDPOINT`). Its output is not logged (it may print a secret).

use clavis_core::executor::RotationExecutor;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long one step may run before it is killed and counted as failed (Lambda's limit is 15
/// minutes; a rotation step is usually seconds).
const STEP_TIMEOUT: Duration = Duration::from_secs(300);

/// Variables passed through from the server's environment when set.
const PASSED: &[&str] = &["PATH", "HOME", "LANG", "TMPDIR", "AWS_CA_BUNDLE"];

/// A rotation executor that runs a local command.
pub struct CommandExecutor {
    path: PathBuf,
    endpoint: String,
}

impl CommandExecutor {
    /// Runs `path` for each step; the command reaches this server at `endpoint`.
    pub fn new(path: PathBuf, endpoint: String) -> CommandExecutor {
        CommandExecutor { path, endpoint }
    }
}

/// An executor of `--rotation-executor`: `NAME=PATH` (a command) or `NAME=https://...` (a
/// webhook, which needs `webhook_key`).
pub fn executor(
    spec: &str,
    endpoint: &str,
    webhook_key: Option<&clavis_crypto::SecretBytes>,
) -> anyhow::Result<(String, std::sync::Arc<dyn RotationExecutor>)> {
    if let Some((name, url)) = spec.split_once('=').filter(|(_, v)| v.starts_with("https://") || v.starts_with("http://")) {
        check_name(name)?;
        if !url.starts_with("https://") {
            anyhow::bail!("--rotation-executor {name}: a webhook must be https://, not {url}");
        }
        let key = webhook_key.ok_or_else(|| anyhow::anyhow!("--rotation-executor {name}: a webhook needs --rotation-webhook-key-file"))?;
        return Ok((name.to_owned(), std::sync::Arc::new(WebhookExecutor::new(url, key)?)));
    }
    let (name, path) = parse(spec)?;
    Ok((name, std::sync::Arc::new(CommandExecutor::new(path, endpoint.to_owned()))))
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
        anyhow::bail!("--rotation-executor: the name '{name}' must be letters, digits, '-' or '_' (a Lambda function name)");
    }
    Ok(())
}

/// `NAME=PATH` of `--rotation-executor`.
pub fn parse(spec: &str) -> anyhow::Result<(String, PathBuf)> {
    let (name, path) = spec.split_once('=').ok_or_else(|| anyhow::anyhow!("--rotation-executor takes NAME=PATH, not '{spec}'"))?;
    check_name(name)?;
    let path = PathBuf::from(path);
    if !path.is_file() {
        anyhow::bail!("--rotation-executor {name}: {} is not a file", path.display());
    }
    Ok((name.to_owned(), path))
}

#[async_trait::async_trait]
impl RotationExecutor for CommandExecutor {
    async fn run_step(&self, event: &serde_json::Value) -> Result<(), String> {
        let region = event["SecretId"].as_str().and_then(|arn| arn.split(':').nth(3)).unwrap_or("us-east-1").to_owned();
        let mut cmd = tokio::process::Command::new(&self.path);
        cmd.env_clear();
        for var in PASSED {
            if let Ok(v) = std::env::var(var) {
                cmd.env(var, v);
            }
        }
        cmd.env("SECRETS_MANAGER_ENDPOINT", &self.endpoint)
            .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &self.endpoint)
            .env("AWS_REGION", &region)
            .env("AWS_DEFAULT_REGION", &region)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| format!("the executor {} could not start: {e}", self.path.display()))?;
        let mut input = serde_json::to_vec(event).map_err(|e| e.to_string())?;
        input.push(b'\n');
        if let Some(mut stdin) = child.stdin.take() {
            // A command that exits without reading its input is judged by its status alone.
            let _ = stdin.write_all(&input).await;
        }
        match tokio::time::timeout(STEP_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("the executor exited with {status}")),
            Ok(Err(e)) => Err(format!("the executor could not be waited for: {e}")),
            Err(_) => Err(format!("the executor ran longer than {} s and was stopped", STEP_TIMEOUT.as_secs())),
        }
    }
}

/// A rotation executor that POSTs each step's event to an HTTPS URL, signed.
pub struct WebhookExecutor {
    target: crate::client::Target,
    authority: String,
    path: String,
    key: clavis_crypto::digest::HmacSha256Key,
}

impl WebhookExecutor {
    /// A webhook at `url` (`https://host[:port]/path`), signing with `key`.
    pub fn new(url: &str, key: &clavis_crypto::SecretBytes) -> anyhow::Result<WebhookExecutor> {
        let rest = url.strip_prefix("https://").ok_or_else(|| anyhow::anyhow!("a webhook must be https://"))?;
        let (hostport, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
        let target = crate::client::Target::parse(&format!("https://{hostport}"))?;
        Ok(WebhookExecutor {
            target,
            authority: hostport.to_owned(),
            path,
            key: clavis_crypto::digest::HmacSha256Key::new(key.expose_secret()),
        })
    }

    async fn post(&self, body: Vec<u8>) -> anyhow::Result<u16> {
        use http_body_util::Full;
        use hyper::body::Bytes;
        let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs().to_string();
        let mac = self.key.sign(&[timestamp.as_bytes(), b".", &body]);
        let signature: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        let stream = self.target.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let request = hyper::Request::post(&self.path)
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .header("x-clavis-timestamp", &timestamp)
            .header("x-clavis-signature", signature)
            .body(Full::new(Bytes::from(body)))?;
        Ok(sender.send_request(request).await?.status().as_u16())
    }
}

#[async_trait::async_trait]
impl RotationExecutor for WebhookExecutor {
    async fn run_step(&self, event: &serde_json::Value) -> Result<(), String> {
        let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
        match tokio::time::timeout(STEP_TIMEOUT, self.post(body)).await {
            Ok(Ok(status)) if (200..300).contains(&status) => Ok(()),
            Ok(Ok(status)) => Err(format!("the webhook answered HTTP {status}")),
            Ok(Err(e)) => Err(format!("the webhook could not be reached: {e}")),
            Err(_) => Err(format!("the webhook took longer than {} s", STEP_TIMEOUT.as_secs())),
        }
    }
}
