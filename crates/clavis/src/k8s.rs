//! `clavis k8s-kms-plugin`: the Kubernetes KMS v2 plugin. kube-apiserver encrypts each data
//! encryption key seed through this process, on a Unix socket, with the gRPC API
//! `k8s.io/kms/apis/v2` (`v2.KeyManagementService`: Status, Encrypt, Decrypt; the wire contract
//! is `proto/kms_v2.proto`). The plugin is a client of a running Clavis server: it signs KMS JSON
//! calls with the operator's credentials (`client.rs`) and holds no key material itself.
//!
//! What it owns: the socket (mode 0600 or 0660, a stale one replaced, removed on shutdown), the
//! gRPC messages (declared here with prost, by hand, so that the build needs no `protoc`), the
//! mapping of Clavis errors to gRPC status codes, and the health cache that Status answers from.
//! The key id it reports is the Clavis key's ARN and its current material version
//! (`<ARN>#v<N>`), so RotateKeyOnDemand changes it: the cache is refreshed in the background by a
//! probe Encrypt, whose ciphertext header names the version (docs/formats.md), and by every
//! Encrypt the API server asks for, so Encrypt's key id is always the latest Status key id.
//!
//! What it must not do: decide anything about keys (Clavis's key policy and the credentials'
//! role do), take an encryption context from the request (every call binds
//! `{"kubernetes.io/kms": "v2"}`, so the plugin cannot be used to decrypt other ciphertexts under
//! the same key), log plaintexts or ciphertexts, or crash when Clavis is unreachable or sealed
//! (Status turns unhealthy instead).

use crate::client::{Client, Endpoint};
use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::collections::HashMap;
use std::convert::Infallible;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::UnaryService;
use tonic::{Code, Status};

/// The encryption context of every Encrypt and Decrypt the plugin sends: it binds the
/// ciphertexts to this use, so a ciphertext made for another purpose under the same key does
/// not decrypt through the plugin (and the key policy can allow the plugin exactly this context
/// with `kms:EncryptionContext:kubernetes.io/kms`).
const CONTEXT_KEY: &str = "kubernetes.io/kms";
const CONTEXT_VALUE: &str = "v2";
/// What the background probe encrypts (a constant: its ciphertext is thrown away).
const PROBE_PLAINTEXT: &[u8] = b"clavis k8s-kms-plugin status probe";
/// The Clavis limits: Encrypt takes 1 to 4096 bytes, Decrypt a blob of at most 6144.
const MAX_PLAINTEXT: usize = 4096;
const MAX_CIPHERTEXT: usize = 6144;
/// The API's limits (as the API server checks them): a key id of at most 1 KiB, annotations whose
/// keys and values add up to less than 32 KiB.
const MAX_KEY_ID: usize = 1024;
const MAX_ANNOTATIONS: usize = 32 * 1024;
/// The largest request message accepted: a ciphertext, the annotations, the key id and the uid
/// fit with room to spare; anything larger is refused by the gRPC layer before it is decoded.
const MAX_MESSAGE: usize = 64 * 1024;
/// The uid is only logged; longer ones are cut.
const MAX_LOGGED_UID: usize = 64;
/// The ciphertext blob's header (docs/formats.md): format 0x01, key id (16), version (u32).
const BLOB_FORMAT: u8 = 0x01;
const BLOB_HEADER: usize = 21;
const BLOB_OVERHEAD: usize = 49;
/// At most this many calls to Clavis at once (and connections kept open for them).
const MAX_CONCURRENT_CALLS: usize = 16;
/// HTTP/2 streams per connection from the API server.
const MAX_STREAMS: u32 = 64;
/// The healthz text is shown in the API server's health endpoint: kept short.
const MAX_HEALTHZ: usize = 512;

/// `clavis k8s-kms-plugin`
#[derive(Debug, clap::Args)]
pub struct PluginArgs {
    /// The Unix socket to serve on (the `endpoint: unix:///...` of the EncryptionConfiguration).
    /// A stale socket left there is replaced; a live one is an error.
    #[arg(long)]
    socket: PathBuf,
    /// The Clavis key: key id, key ARN, alias name or alias ARN. Encrypt uses it; Decrypt uses
    /// the key the ciphertext names, so moving an alias keeps old data readable.
    #[arg(long)]
    key_id: String,
    /// The Clavis server and signing region.
    #[command(flatten)]
    connection: crate::admin::Connection,
    /// How often the health and current key version are checked with Clavis, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    refresh_interval_ms: u64,
    /// How long one call to Clavis may take, in milliseconds.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    call_timeout_ms: u64,
    /// The socket's file mode: 600 (only the plugin's user) or 660 (and its group).
    #[arg(long, default_value = "600", value_parser = ["600", "660"])]
    socket_mode: String,
}

/// Runs the plugin until SIGTERM or SIGINT.
pub fn run(args: PluginArgs) -> anyhow::Result<()> {
    let endpoint = args.connection.endpoint()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(serve(args, endpoint))
}

async fn serve(args: PluginArgs, endpoint: Endpoint) -> anyhow::Result<()> {
    let mode = if args.socket_mode == "660" { 0o660 } else { 0o600 };
    // Installed before the socket exists, so that a SIGTERM right after start still removes it.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let (listener, identity) = bind(&args.socket, mode).await?;
    let plugin = Arc::new(Plugin {
        endpoint,
        key_id: args.key_id.clone(),
        timeout: Duration::from_millis(args.call_timeout_ms),
        idle: Mutex::new(Vec::new()),
        permits: tokio::sync::Semaphore::new(MAX_CONCURRENT_CALLS),
        health: Mutex::new(Health { healthz: "starting: Clavis not asked yet".to_owned(), key: None, ticket: 0 }),
        tickets: std::sync::atomic::AtomicU64::new(1),
    });
    let refresher = tokio::spawn(refresh(plugin.clone(), Duration::from_millis(args.refresh_interval_ms)));
    tracing::info!(socket = %args.socket.display(), key_id = %args.key_id, "Kubernetes KMS v2 plugin listening");
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let result = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(MAX_STREAMS))
        .serve_with_incoming_shutdown(KmsService(plugin), incoming, async {
            tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = terminate.recv() => {} }
            tracing::info!("shutting down");
        })
        .await;
    refresher.abort();
    remove_socket(&args.socket, identity);
    result.context("serving the KMS plugin socket")?;
    tracing::info!("Kubernetes KMS v2 plugin stopped");
    Ok(())
}

/// Binds the socket with its final mode before anyone can reach it: bound under a temporary
/// name beside it, given `mode`, then renamed over `path`. A socket already at `path` is removed
/// first only if nothing answers on it (stale); anything else there is left alone and refused.
/// Returns the listener and the socket file's (device, inode), so that shutdown removes only
/// this process's socket.
async fn bind(path: &Path, mode: u32) -> anyhow::Result<(tokio::net::UnixListener, (u64, u64))> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                bail!("{} is in use by a running process (another plugin?)", path.display());
            }
            tracing::info!(socket = %path.display(), "replacing a stale socket");
        }
        Ok(_) => bail!("{} exists and is not a socket: refusing to replace it", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let name = path.file_name().with_context(|| format!("{} has no file name", path.display()))?;
    let mut temporary = name.to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary);
    // A leftover from a crashed start of a process with the same id.
    let _ = std::fs::remove_file(&temporary);
    let listener = tokio::net::UnixListener::bind(&temporary).with_context(|| format!("binding {}", temporary.display()))?;
    let placed = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::fs::rename(&temporary, path))
        .and_then(|()| std::fs::symlink_metadata(path));
    match placed {
        Ok(meta) => Ok((listener, (meta.dev(), meta.ino()))),
        Err(e) => {
            let _ = std::fs::remove_file(&temporary);
            Err(e).with_context(|| format!("placing the socket at {}", path.display()))
        }
    }
}

/// Removes the socket at shutdown, unless another process has replaced it meanwhile.
fn remove_socket(path: &Path, identity: (u64, u64)) {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && (meta.dev(), meta.ino()) == identity
        && let Err(e) = std::fs::remove_file(path)
    {
        tracing::warn!(socket = %path.display(), error = %e, "could not remove the socket");
    }
}

// ---------------------------------------------------------------------------------------------
// The wire messages (proto/kms_v2.proto, package `v2`).

/// `v2.StatusRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {}

/// `v2.StatusResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusResponse {
    /// "v2".
    #[prost(string, tag = "1")]
    pub version: String,
    /// "ok" or the error.
    #[prost(string, tag = "2")]
    pub healthz: String,
    /// The current key and material version.
    #[prost(string, tag = "3")]
    pub key_id: String,
}

/// `v2.DecryptRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct DecryptRequest {
    /// What Encrypt returned.
    #[prost(bytes = "vec", tag = "1")]
    pub ciphertext: Vec<u8>,
    /// The API server's request id.
    #[prost(string, tag = "2")]
    pub uid: String,
    /// What Encrypt returned as key id.
    #[prost(string, tag = "3")]
    pub key_id: String,
    /// What Encrypt returned as annotations.
    #[prost(map = "string, bytes", tag = "4")]
    pub annotations: HashMap<String, Vec<u8>>,
}

/// `v2.DecryptResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct DecryptResponse {
    /// The plaintext.
    #[prost(bytes = "vec", tag = "1")]
    pub plaintext: Vec<u8>,
}

/// `v2.EncryptRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct EncryptRequest {
    /// The plaintext (a data encryption key seed).
    #[prost(bytes = "vec", tag = "1")]
    pub plaintext: Vec<u8>,
    /// The API server's request id.
    #[prost(string, tag = "2")]
    pub uid: String,
}

/// `v2.EncryptResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct EncryptResponse {
    /// The Clavis ciphertext blob.
    #[prost(bytes = "vec", tag = "1")]
    pub ciphertext: Vec<u8>,
    /// The key and material version that made it.
    #[prost(string, tag = "2")]
    pub key_id: String,
    /// Stored in clear beside the data (the plugin adds none).
    #[prost(map = "string, bytes", tag = "3")]
    pub annotations: HashMap<String, Vec<u8>>,
}

// ---------------------------------------------------------------------------------------------
// The service: gRPC routing by path, as generated code would do it.

const STATUS_PATH: &str = "/v2.KeyManagementService/Status";
const ENCRYPT_PATH: &str = "/v2.KeyManagementService/Encrypt";
const DECRYPT_PATH: &str = "/v2.KeyManagementService/Decrypt";

#[derive(Clone)]
struct KmsService(Arc<Plugin>);

/// A unary method as a closure.
struct Unary<F>(F);

impl<Req, Resp, F, Fut> UnaryService<Req> for Unary<F>
where
    F: FnMut(Req) -> Fut,
    Fut: std::future::Future<Output = Result<Resp, Status>> + Send + 'static,
{
    type Response = Resp;
    type Future = BoxFuture<tonic::Response<Resp>, Status>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        let fut = (self.0)(request.into_inner());
        Box::pin(async move { fut.await.map(tonic::Response::new) })
    }
}

fn grpc<E, D>() -> tonic::server::Grpc<tonic::codec::ProstCodec<E, D>>
where
    E: prost::Message + 'static,
    D: prost::Message + Default + 'static,
{
    tonic::server::Grpc::new(tonic::codec::ProstCodec::default()).apply_max_message_size_config(Some(MAX_MESSAGE), None)
}

impl Service<hyper::Request<tonic::body::Body>> for KmsService {
    type Response = hyper::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: hyper::Request<tonic::body::Body>) -> Self::Future {
        let plugin = self.0.clone();
        Box::pin(async move {
            let response = match request.uri().path() {
                STATUS_PATH => grpc().unary(Unary(move |_: StatusRequest| std::future::ready(Ok(plugin.status()))), request).await,
                ENCRYPT_PATH => {
                    let method = Unary(move |r: EncryptRequest| {
                        let plugin = plugin.clone();
                        async move { plugin.encrypt(r).await }
                    });
                    grpc().unary(method, request).await
                }
                DECRYPT_PATH => {
                    let method = Unary(move |r: DecryptRequest| {
                        let plugin = plugin.clone();
                        async move { plugin.decrypt(r).await }
                    });
                    grpc().unary(method, request).await
                }
                _ => Status::unimplemented("not a method of v2.KeyManagementService").into_http(),
            };
            Ok(response)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The plugin: Clavis calls, the health cache, request checks.

struct Plugin {
    endpoint: Endpoint,
    /// The key Encrypt uses, as given on the command line.
    key_id: String,
    timeout: Duration,
    /// Open connections to Clavis not in use.
    idle: Mutex<Vec<Client>>,
    permits: tokio::sync::Semaphore,
    health: Mutex<Health>,
    /// Numbers the Encrypts in the order they are sent, so that a slow answer cannot replace
    /// what a later call saw (an alias moved meanwhile).
    tickets: std::sync::atomic::AtomicU64,
}

/// What Status answers.
struct Health {
    /// "ok" or the last error.
    healthz: String,
    /// The newest key version seen (kept while unhealthy, so Status still names it).
    key: Option<KeyVersion>,
    /// The ticket of the Encrypt that saw `key`.
    ticket: u64,
}

/// A Clavis key and one of its material versions: what the API names `key_id`.
#[derive(Clone, Debug, PartialEq)]
struct KeyVersion {
    /// The key ARN (as Clavis's Encrypt returns it).
    arn: String,
    version: u32,
}

impl KeyVersion {
    fn key_id(&self) -> String {
        format!("{}#v{}", self.arn, self.version)
    }

    /// Parses what [`KeyVersion::key_id`] wrote.
    fn parse(key_id: &str) -> Option<KeyVersion> {
        let (arn, version) = key_id.rsplit_once("#v")?;
        if !arn.starts_with("arn:") || version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(KeyVersion { arn: arn.to_owned(), version: version.parse().ok()? })
    }

    /// The key's UUID, the last part of its ARN (`...:key/<uuid>`).
    fn uuid(&self) -> &str {
        self.arn.rsplit_once(":key/").map_or("", |(_, id)| id)
    }
}

/// The key id and version a Clavis ciphertext blob names in its header (docs/formats.md), or
/// `None` when the bytes cannot be a Clavis ciphertext.
fn blob_key(blob: &[u8]) -> Option<(String, u32)> {
    if blob.len() < BLOB_OVERHEAD || blob.first() != Some(&BLOB_FORMAT) {
        return None;
    }
    let id = blob.get(1..17)?;
    let version = u32::from_be_bytes(blob.get(17..BLOB_HEADER)?.try_into().ok()?);
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let uuid = format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
    Some((uuid, version))
}

/// Why a call to Clavis failed.
enum CallError {
    /// No answer: connection refused or broken, timeout.
    Unreachable(String),
    /// An AWS error reply.
    Refused { status: u16, kind: String, message: String },
    /// A 200 reply the plugin cannot use.
    BadReply(String),
}

impl CallError {
    fn describe(&self) -> String {
        match self {
            CallError::Unreachable(e) => format!("Clavis unreachable: {e}"),
            CallError::Refused { status, kind, message } => format!("Clavis refused ({status}): {kind}: {message}"),
            CallError::BadReply(e) => format!("unexpected reply from Clavis: {e}"),
        }
    }

    /// The gRPC code for the API server: retryable outages are `Unavailable`; a ciphertext that
    /// does not decrypt is `InvalidArgument`; a key that cannot be used now is
    /// `FailedPrecondition`; credentials or policy are `Unauthenticated` / `PermissionDenied`.
    fn code(&self) -> Code {
        match self {
            CallError::Unreachable(_) => Code::Unavailable,
            CallError::BadReply(_) => Code::Internal,
            CallError::Refused { status, kind, .. } => match kind.as_str() {
                "InvalidCiphertextException" | "IncorrectKeyException" | "ValidationException" | "InvalidKeyUsageException" => {
                    Code::InvalidArgument
                }
                "DisabledException" | "KMSInvalidStateException" | "KeyUnavailableException" => Code::FailedPrecondition,
                "NotFoundException" => Code::NotFound,
                "AccessDeniedException" => Code::PermissionDenied,
                "UnrecognizedClientException" | "InvalidSignatureException" | "IncompleteSignature" | "MissingAuthenticationToken" => {
                    Code::Unauthenticated
                }
                "ThrottlingException" | "LimitExceededException" => Code::ResourceExhausted,
                "ServiceUnavailableException" | "DependencyTimeoutException" => Code::Unavailable,
                _ if *status == 503 => Code::Unavailable,
                _ => Code::Internal,
            },
        }
    }

    fn status(&self) -> Status {
        Status::new(self.code(), self.describe())
    }
}

impl Plugin {
    /// One signed KMS call, on an idle connection or a new one; a connection that failed is
    /// dropped, one that answered is kept for the next call.
    async fn call(&self, target: &str, body: &serde_json::Value) -> Result<serde_json::Value, CallError> {
        let _permit = self.permits.acquire().await.map_err(|e| CallError::Unreachable(e.to_string()))?;
        let bytes = serde_json::to_vec(body).map_err(|e| CallError::BadReply(e.to_string()))?;
        let idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let attempt = async {
            let mut client = match idle {
                Some(client) => client,
                None => Client::connect(&self.endpoint).await?,
            };
            let reply = client.call(target, bytes).await?;
            anyhow::Ok((client, reply))
        };
        let (client, reply) = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(CallError::Unreachable(format!("{e:#}"))),
            Err(_) => return Err(CallError::Unreachable(format!("no answer within {} ms", self.timeout.as_millis()))),
        };
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(client);
        let value: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null);
        if reply.status == 200 {
            return Ok(value);
        }
        let kind = value["__type"].as_str().unwrap_or("UnknownError");
        // AWS may qualify the type with a namespace (`com.amazonaws.kms#...`).
        let kind = kind.rsplit_once('#').map_or(kind, |(_, k)| k).to_owned();
        let message = value["message"].as_str().or_else(|| value["Message"].as_str()).unwrap_or("").to_owned();
        Err(CallError::Refused { status: reply.status, kind, message })
    }

    /// Encrypt under the configured key with the plugin's context; returns the blob and the key
    /// version its header names (checked against the ARN Clavis returned), and the call's ticket.
    async fn clavis_encrypt(&self, plaintext: &[u8]) -> Result<(Vec<u8>, KeyVersion, u64), CallError> {
        let ticket = self.tickets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = serde_json::json!({
            "KeyId": self.key_id,
            "Plaintext": B64.encode(plaintext),
            "EncryptionContext": {CONTEXT_KEY: CONTEXT_VALUE},
        });
        let reply = self.call("TrentService.Encrypt", &body).await?;
        let arn = reply["KeyId"].as_str().ok_or_else(|| CallError::BadReply("no KeyId".to_owned()))?;
        let blob = reply["CiphertextBlob"]
            .as_str()
            .and_then(|b| B64.decode(b).ok())
            .ok_or_else(|| CallError::BadReply("no CiphertextBlob".to_owned()))?;
        let key = match blob_key(&blob) {
            Some((uuid, version)) if arn.ends_with(&format!(":key/{uuid}")) => KeyVersion { arn: arn.to_owned(), version },
            _ => return Err(CallError::BadReply("the ciphertext does not name the key Clavis reported".to_owned())),
        };
        Ok((blob, key, ticket))
    }

    /// Records a key version seen by the Encrypt with `ticket`: the newest version of a key
    /// wins (versions only grow), and another key (an alias moved) replaces the current one if
    /// its Encrypt was sent later than the one that saw the current one.
    fn observe(&self, key: KeyVersion, ticket: u64) {
        let mut health = self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let newer = match &health.key {
            Some(current) if current.arn == key.arn => key.version > current.version,
            Some(_) => ticket > health.ticket,
            None => true,
        };
        if health.healthz != "ok" {
            tracing::info!(key_id = %key.key_id(), "status ok");
            health.healthz = "ok".to_owned();
        }
        if newer {
            if let Some(old) = &health.key {
                tracing::info!(old = %old.key_id(), new = %key.key_id(), "the key id changed");
            }
            health.key = Some(key);
            health.ticket = health.ticket.max(ticket);
        }
    }

    fn unhealthy(&self, error: &CallError) {
        let mut text = error.describe();
        if text.len() > MAX_HEALTHZ {
            let mut end = MAX_HEALTHZ;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        let mut health = self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if health.healthz != text {
            tracing::warn!(error = %text, "status unhealthy");
            health.healthz = text;
        }
    }

    fn status(&self) -> StatusResponse {
        let health = self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        StatusResponse {
            version: "v2".to_owned(),
            healthz: health.healthz.clone(),
            key_id: health.key.as_ref().map(KeyVersion::key_id).unwrap_or_default(),
        }
    }

    async fn encrypt(&self, request: EncryptRequest) -> Result<EncryptResponse, Status> {
        let uid = logged_uid(&request.uid);
        if request.plaintext.is_empty() || request.plaintext.len() > MAX_PLAINTEXT {
            return Err(Status::invalid_argument(format!("the plaintext must be 1 to {MAX_PLAINTEXT} bytes")));
        }
        match self.clavis_encrypt(&request.plaintext).await {
            Ok((ciphertext, key, ticket)) => {
                let key_id = key.key_id();
                self.observe(key, ticket);
                Ok(EncryptResponse { ciphertext, key_id, annotations: HashMap::new() })
            }
            Err(e) => {
                tracing::warn!(uid, error = %e.describe(), "Encrypt failed");
                if e.code() == Code::Unavailable {
                    self.unhealthy(&e);
                }
                Err(e.status())
            }
        }
    }

    async fn decrypt(&self, request: DecryptRequest) -> Result<DecryptResponse, Status> {
        let uid = logged_uid(&request.uid);
        let key = check_decrypt(&request)?;
        let body = serde_json::json!({
            "KeyId": key.arn,
            "CiphertextBlob": B64.encode(&request.ciphertext),
            "EncryptionContext": {CONTEXT_KEY: CONTEXT_VALUE},
        });
        let reply = match self.call("TrentService.Decrypt", &body).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(uid, key_id = %key.key_id(), error = %e.describe(), "Decrypt failed");
                if e.code() == Code::Unavailable {
                    self.unhealthy(&e);
                }
                return Err(e.status());
            }
        };
        let plaintext = reply["Plaintext"].as_str().and_then(|p| B64.decode(p).ok());
        match plaintext {
            Some(plaintext) => Ok(DecryptResponse { plaintext }),
            None => Err(CallError::BadReply("no Plaintext".to_owned()).status()),
        }
    }
}

fn logged_uid(uid: &str) -> String {
    uid.chars().take(MAX_LOGGED_UID).collect()
}

/// A request refused before anything is sent to Clavis: `INVALID_ARGUMENT` with this message.
#[derive(Debug)]
struct Invalid(String);

impl Invalid {
    fn new(message: impl Into<String>) -> Invalid {
        Invalid(message.into())
    }
}

impl From<Invalid> for Status {
    fn from(e: Invalid) -> Status {
        Status::invalid_argument(e.0)
    }
}

/// Checks a Decrypt request before anything is sent: the sizes, the annotations' rules, and
/// that the key id is one the plugin wrote and names the key and version in the ciphertext's
/// header (so a ciphertext cannot be passed off under another key id). Returns that key.
fn check_decrypt(request: &DecryptRequest) -> Result<KeyVersion, Invalid> {
    if request.ciphertext.len() > MAX_CIPHERTEXT {
        return Err(Invalid::new(format!("the ciphertext is longer than {MAX_CIPHERTEXT} bytes")));
    }
    if request.key_id.len() > MAX_KEY_ID {
        return Err(Invalid::new(format!("the key_id is longer than {MAX_KEY_ID} bytes")));
    }
    check_annotations(&request.annotations)?;
    let Some((uuid, version)) = blob_key(&request.ciphertext) else {
        return Err(Invalid::new("the ciphertext is not a Clavis ciphertext"));
    };
    let Some(key) = KeyVersion::parse(&request.key_id) else {
        return Err(Invalid::new("the key_id is not one this plugin returned (<key ARN>#v<version>)"));
    };
    if key.uuid() != uuid || key.version != version {
        return Err(Invalid::new("the key_id does not name the ciphertext's key and version"));
    }
    Ok(key)
}

/// The API's rules for annotations: each key a fully qualified domain name (RFC 1123 labels,
/// at least two, at most 253 characters), keys and values together at most 32 KiB.
fn check_annotations(annotations: &HashMap<String, Vec<u8>>) -> Result<(), Invalid> {
    let mut total = 0usize;
    for (key, value) in annotations {
        total = total.saturating_add(key.len()).saturating_add(value.len());
        if !is_fqdn(key) {
            return Err(Invalid::new("an annotation key is not a fully qualified domain name"));
        }
    }
    if total > MAX_ANNOTATIONS {
        return Err(Invalid::new(format!("the annotations exceed {MAX_ANNOTATIONS} bytes")));
    }
    Ok(())
}

fn is_fqdn(name: &str) -> bool {
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    name.len() <= 253 && name.split('.').count() >= 2 && name.split('.').all(label)
}

/// The background refresh: a probe Encrypt every `interval` (at once at start), so that Status
/// answers from memory with the health and the newest key version.
async fn refresh(plugin: Arc<Plugin>, interval: Duration) {
    loop {
        match plugin.clavis_encrypt(PROBE_PLAINTEXT).await {
            Ok((_, key, ticket)) => plugin.observe(key, ticket),
            Err(e) => plugin.unhealthy(&e),
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;
    use prost::Message as _;

    /// The prost declarations above and `proto/kms_v2.proto` name the same fields with the
    /// same numbers and types: the encoding shows the Rust side's numbers and wire types, the
    /// proto text is checked for the same declarations.
    #[test]
    fn messages_match_the_proto_file() {
        let proto = include_str!("../proto/kms_v2.proto");
        let declared = |message: &str, field: &str| {
            let start = proto.find(&format!("message {message} {{")).unwrap();
            let end = start + proto[start..].find('}').unwrap();
            proto[start..end].lines().any(|l| l.trim() == field)
        };
        assert!(proto.contains("package v2;"));
        assert!(proto.contains("service KeyManagementService {"));
        for (method, request, response) in [
            ("Status", "StatusRequest", "StatusResponse"),
            ("Decrypt", "DecryptRequest", "DecryptResponse"),
            ("Encrypt", "EncryptRequest", "EncryptResponse"),
        ] {
            assert!(proto.contains(&format!("rpc {method}({request}) returns ({response}) {{}}")), "{method}");
        }
        assert_eq!(STATUS_PATH, "/v2.KeyManagementService/Status");

        let status = StatusResponse { version: "a".into(), healthz: "b".into(), key_id: "c".into() };
        assert_eq!(status.encode_to_vec(), b"\x0a\x01a\x12\x01b\x1a\x01c");
        for field in ["string version = 1;", "string healthz = 2;", "string key_id = 3;"] {
            assert!(declared("StatusResponse", field), "{field}");
        }

        let one = |k: &str| HashMap::from([(k.to_owned(), b"v".to_vec())]);
        let decrypt = DecryptRequest { ciphertext: b"x".to_vec(), uid: "u".into(), key_id: "k".into(), annotations: one("a") };
        // Field 4, a map entry: key = field 1 (string), value = field 2 (bytes).
        assert_eq!(decrypt.encode_to_vec(), b"\x0a\x01x\x12\x01u\x1a\x01k\x22\x06\x0a\x01a\x12\x01v");
        for field in ["bytes ciphertext = 1;", "string uid = 2;", "string key_id = 3;", "map<string, bytes> annotations = 4;"] {
            assert!(declared("DecryptRequest", field), "{field}");
        }

        assert_eq!(DecryptResponse { plaintext: b"p".to_vec() }.encode_to_vec(), b"\x0a\x01p");
        assert!(declared("DecryptResponse", "bytes plaintext = 1;"));

        let encrypt = EncryptRequest { plaintext: b"p".to_vec(), uid: "u".into() };
        assert_eq!(encrypt.encode_to_vec(), b"\x0a\x01p\x12\x01u");
        for field in ["bytes plaintext = 1;", "string uid = 2;"] {
            assert!(declared("EncryptRequest", field), "{field}");
        }

        let encrypted = EncryptResponse { ciphertext: b"c".to_vec(), key_id: "k".into(), annotations: one("a") };
        assert_eq!(encrypted.encode_to_vec(), b"\x0a\x01c\x12\x01k\x1a\x06\x0a\x01a\x12\x01v");
        for field in ["bytes ciphertext = 1;", "string key_id = 2;", "map<string, bytes> annotations = 3;"] {
            assert!(declared("EncryptResponse", field), "{field}");
        }
        assert!(proto.contains("message StatusRequest {}"));
    }

    fn blob(version: u32) -> Vec<u8> {
        let mut b = vec![BLOB_FORMAT];
        b.extend_from_slice(&[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        b.extend_from_slice(&version.to_be_bytes());
        b.extend_from_slice(&[0; 28]);
        b
    }

    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/12345678-9abc-def0-0123-456789abcdef";

    #[test]
    fn key_ids_name_the_key_and_version_of_the_blob() {
        assert_eq!(blob_key(&blob(3)), Some(("12345678-9abc-def0-0123-456789abcdef".to_owned(), 3)));
        assert_eq!(blob_key(&blob(3)[..48]), None);
        let mut other_format = blob(3);
        other_format[0] = 2;
        assert_eq!(blob_key(&other_format), None);

        let key = KeyVersion { arn: ARN.to_owned(), version: 3 };
        assert_eq!(key.key_id(), format!("{ARN}#v3"));
        assert_eq!(KeyVersion::parse(&key.key_id()), Some(key.clone()));
        for bad in ["", "#v3", "key#v3", &format!("{ARN}#v"), &format!("{ARN}#vx"), &format!("{ARN}#v99999999999")] {
            assert_eq!(KeyVersion::parse(bad), None, "{bad}");
        }

        let request =
            |ciphertext: Vec<u8>, key_id: String| DecryptRequest { ciphertext, uid: String::new(), key_id, annotations: HashMap::new() };
        assert_eq!(check_decrypt(&request(blob(3), format!("{ARN}#v3"))).unwrap(), key);
        for (ciphertext, key_id) in [
            (blob(3), format!("{ARN}#v2")),
            (blob(3), "arn:aws:kms:us-east-1:111122223333:key/00000000-9abc-def0-0123-456789abcdef#v3".to_owned()),
            (blob(3), "alias/k8s".to_owned()),
            (b"garbage".to_vec(), format!("{ARN}#v3")),
            (vec![1; MAX_CIPHERTEXT + 1], format!("{ARN}#v3")),
            (blob(3), format!("{ARN}#v3{}", "0".repeat(MAX_KEY_ID))),
        ] {
            assert_eq!(Status::from(check_decrypt(&request(ciphertext, key_id)).unwrap_err()).code(), Code::InvalidArgument);
        }
    }

    #[test]
    fn a_later_encrypt_wins_and_versions_only_grow() {
        let target = crate::client::Target::parse("http://127.0.0.1:9").unwrap();
        let endpoint = Endpoint {
            authority: target.authority.clone(),
            target,
            region: "us-east-1".into(),
            access_key_id: "AKID".into(),
            secret: "secret".into(),
        };
        let plugin = Plugin {
            endpoint,
            key_id: "alias/k8s".into(),
            timeout: Duration::from_secs(1),
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(1),
            health: Mutex::new(Health { healthz: "starting".into(), key: None, ticket: 0 }),
            tickets: std::sync::atomic::AtomicU64::new(1),
        };
        let other = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-0000-0000-000000000000";
        let key = |arn: &str, version| KeyVersion { arn: arn.to_owned(), version };
        assert_eq!(plugin.status().key_id, "");
        assert_eq!(plugin.status().healthz, "starting");
        plugin.observe(key(ARN, 2), 5);
        assert_eq!(plugin.status().key_id, format!("{ARN}#v2"));
        assert_eq!(plugin.status().healthz, "ok");
        // An older answer about the same key cannot take its version back.
        plugin.observe(key(ARN, 1), 6);
        assert_eq!(plugin.status().key_id, format!("{ARN}#v2"));
        // Another key seen by an Encrypt sent earlier is stale; by one sent later, it wins.
        plugin.observe(key(other, 1), 4);
        assert_eq!(plugin.status().key_id, format!("{ARN}#v2"));
        plugin.observe(key(other, 1), 7);
        assert_eq!(plugin.status().key_id, format!("{other}#v1"));
        // Unhealthy keeps the last key id.
        plugin.unhealthy(&CallError::Unreachable("connection refused".into()));
        let status = plugin.status();
        assert_eq!((status.version.as_str(), status.key_id), ("v2", format!("{other}#v1")));
        assert_eq!(status.healthz, "Clavis unreachable: connection refused");
        plugin.unhealthy(&CallError::Unreachable("x".repeat(2 * MAX_HEALTHZ)));
        assert_eq!(plugin.status().healthz.len(), MAX_HEALTHZ);
    }

    #[test]
    fn annotations_follow_the_api_rules() {
        let check = |pairs: &[(&str, usize)]| check_annotations(&pairs.iter().map(|(k, n)| ((*k).to_owned(), vec![0; *n])).collect());
        assert!(check(&[]).is_ok());
        assert!(check(&[("version.encryption.example.com", 10), ("a.b", 0)]).is_ok());
        assert!(check(&[("a.b", MAX_ANNOTATIONS - 3)]).is_ok());
        assert!(check(&[("a.b", MAX_ANNOTATIONS - 2)]).is_err());
        for key in [
            "",
            "nodot",
            "UPPER.example.com",
            "-a.example.com",
            "a-.example.com",
            "a..b",
            "a_b.example.com",
            &format!("{}.com", "a".repeat(64)),
        ] {
            assert!(check(&[(key, 1)]).is_err(), "{key}");
        }
    }

    #[test]
    fn errors_map_to_grpc_codes() {
        let refused = |status: u16, kind: &str| CallError::Refused { status, kind: kind.to_owned(), message: String::new() }.code();
        assert_eq!(CallError::Unreachable("refused".into()).code(), Code::Unavailable);
        assert_eq!(refused(400, "InvalidCiphertextException"), Code::InvalidArgument);
        assert_eq!(refused(400, "DisabledException"), Code::FailedPrecondition);
        assert_eq!(refused(400, "AccessDeniedException"), Code::PermissionDenied);
        assert_eq!(refused(400, "UnrecognizedClientException"), Code::Unauthenticated);
        assert_eq!(refused(400, "ThrottlingException"), Code::ResourceExhausted);
        assert_eq!(refused(503, "ServiceUnavailableException"), Code::Unavailable);
        assert_eq!(refused(500, "KMSInternalException"), Code::Internal);
        assert_eq!(refused(400, "SomethingNew"), Code::Internal);
    }
}
