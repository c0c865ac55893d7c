//! Rotation executors: what runs the four steps of a secret's rotation (`createSecret`,
//! `setSecret`, `testSecret`, `finishSecret`) in place of AWS Lambda. The operator registers
//! executors by name when starting the server; a secret's `RotationLambdaARN` selects one by its
//! function name (the ARN's last `:`-separated part, or the whole value). Implementations live
//! outside the core (a local command, in the `clavis` binary), which knows nothing of how an
//! executor runs.

/// Runs one rotation step. The event is AWS's Lambda event for secret rotation:
/// `{"Step": ..., "SecretId": <secret ARN>, "ClientRequestToken": <new version id>,
/// "RotationToken": ...}`. The executor calls the Secrets Manager API back with credentials of
/// its own (it is not the caller of RotateSecret), as a rotation function does.
#[async_trait::async_trait]
pub trait RotationExecutor: Send + Sync {
    /// Runs the step; `Err` with a message that names no secret value when it failed.
    async fn run_step(&self, event: &serde_json::Value) -> Result<(), String>;
}
