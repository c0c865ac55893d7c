//! Secret rotation executors of `clavis serve --rotation-executor NAME=PATH`: a local command
//! that receives each rotation step's event (AWS's Lambda event, one JSON object) on its standard
//! input and succeeds by exiting with status 0, as a rotation function succeeds by returning.
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

/// `NAME=PATH` of `--rotation-executor`.
pub fn parse(spec: &str) -> anyhow::Result<(String, PathBuf)> {
    let (name, path) = spec.split_once('=').ok_or_else(|| anyhow::anyhow!("--rotation-executor takes NAME=PATH, not '{spec}'"))?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
        anyhow::bail!("--rotation-executor: the name '{name}' must be letters, digits, '-' or '_' (a Lambda function name)");
    }
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
