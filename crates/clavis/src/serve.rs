//! `clavis serve`: open (or initialise) the data directory and serve the KMS API.

use crate::root::{RootArgs, key_file_path};
use anyhow::{Context, bail};
use clavis_audit::{AuditConfig, AuditLog, StreamSink};
use clavis_core::audit::AuditSink;
use clavis_core::master_key::{CURRENT_SETTING, MASTER_KEYS_SETTING, ROTATION_SETTING, parse_registry};
use clavis_core::types::AccountId;
use clavis_core::{Clock, Kms, KmsConfig, SystemClock, TestClock};
use clavis_crypto::SecretBytes;
use clavis_crypto::seal::{KeyMaker, Keyring, LocalKeyFile, RootOfTrust, SHAMIR_CONFIG_FILE, ShamirRoot};
use clavis_server::listener::ListenerConfig;
use clavis_server::{AppState, ServerConfig};
use clavis_store::Store;
use clavis_store_postgres::PostgresStore;
use clavis_store_sqlite::SqliteStore;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Arguments of `clavis serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A TOML file with any of these flags (docs/operations.md has a commented example); the
    /// command line and the environment override it. `clavis config check FILE` validates one.
    #[arg(long, env = "CLAVIS_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    root: RootArgs,
    /// Data directory: database, master key file, generated credentials.
    #[arg(long, env = "CLAVIS_DATA_DIR", default_value = "./clavis-data")]
    data_dir: PathBuf,
    /// PostgreSQL database shared by several nodes (`postgres://user:password@host:port/db`).
    /// Default: the embedded SQLite database in the data directory.
    #[arg(long, env = "CLAVIS_DATABASE_URL")]
    database_url: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "CLAVIS_LISTEN", default_value = "127.0.0.1:8484")]
    listen: String,
    /// TLS certificate chain (PEM). With --tls-key, the server speaks only HTTPS; SIGHUP reloads
    /// both files without a restart.
    #[arg(long, env = "CLAVIS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of --tls-cert.
    #[arg(long, env = "CLAVIS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates issued by this CA (PEM): mutual TLS.
    #[arg(long, env = "CLAVIS_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// A secret rotation executor, `NAME=PATH` (repeatable): a secret whose RotationLambdaARN's
    /// function name is NAME is rotated by running PATH for each step (docs/api.md).
    #[arg(long = "rotation-executor", value_name = "NAME=PATH")]
    rotation_executor: Vec<String>,
    /// The key that signs webhook rotation executors' requests (HMAC-SHA256): a file of at least
    /// 32 bytes (its first line, trimmed, or its raw bytes).
    #[arg(long, env = "CLAVIS_ROTATION_WEBHOOK_KEY_FILE")]
    rotation_webhook_key_file: Option<PathBuf>,
    /// The URL rotation executors reach this server at (default: http(s)://127.0.0.1:PORT of
    /// --listen).
    #[arg(long, env = "CLAVIS_ROTATION_ENDPOINT")]
    rotation_endpoint: Option<String>,
    /// Allow plain HTTP on a non-loopback address (when a proxy in front terminates TLS).
    #[arg(long, env = "CLAVIS_INSECURE_HTTP")]
    insecure_http: bool,
    /// Host names under which the operator endpoints may be reached, besides IP addresses and
    /// localhost (comma-separated).
    #[arg(long, env = "CLAVIS_PUBLIC_NAMES", value_delimiter = ',')]
    public_name: Vec<String>,
    /// The most connections open at once (default: what the open-file limit leaves after 128
    /// descriptors for the rest of the process and room for evicted connections still closing).
    #[arg(long, env = "CLAVIS_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Seconds a client has for the TLS handshake and each request's header block; an idle
    /// keep-alive connection is closed after this long too.
    #[arg(long, env = "CLAVIS_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    header_read_timeout_secs: u64,
    /// Seconds a client has to send a whole request body.
    #[arg(long, env = "CLAVIS_BODY_READ_TIMEOUT_SECS", default_value_t = 30)]
    body_read_timeout_secs: u64,
    /// Failed authentications allowed per second from one address (bursts of five times as
    /// many); beyond it ThrottlingException. 0 disables the limit.
    #[arg(long, env = "CLAVIS_AUTH_FAILURES_PER_SECOND", default_value_t = 10.0)]
    auth_failures_per_second: f64,
    /// Comma-separated regions that requests may be scoped to (default: any).
    #[arg(long, env = "CLAVIS_ALLOWED_REGIONS", value_delimiter = ',')]
    allowed_regions: Option<Vec<String>>,
    /// Close an audit segment once it reaches this many bytes.
    #[arg(long, env = "CLAVIS_AUDIT_SEGMENT_BYTES", default_value_t = 64 * 1024 * 1024)]
    audit_segment_bytes: u64,
    /// When a request's audit record counts as committed: `fsync` (default: synced to disk
    /// before the response; survives a power loss) or `write` (written to the operating system
    /// before the response and synced at once in the background; survives a crash of Clavis,
    /// not a power loss). See docs/operations.md.
    #[arg(long, env = "CLAVIS_AUDIT_DURABILITY", default_value = "fsync")]
    audit_durability: clavis_audit::Durability,
    /// Also stream every audit record to `stdout` or `file:PATH` (for a SIEM).
    #[arg(long, env = "CLAVIS_AUDIT_STREAM")]
    audit_stream: Option<String>,
    /// Also close an audit segment once its first record is this old (`24h`, `30m`, `3600s`,
    /// `7d`; default: by size only). Checked at every commit and at least once a minute.
    #[arg(long, env = "CLAVIS_AUDIT_SEGMENT_MAX_AGE", value_parser = clavis_audit::parse_duration)]
    audit_segment_max_age: Option<std::time::Duration>,
    /// Delete closed audit segments whose newest record is older than this many days (default
    /// 0: keep every segment). What remains still verifies; see docs/operations.md.
    #[arg(long, env = "CLAVIS_AUDIT_RETAIN_DAYS", default_value_t = 0)]
    audit_retain_days: u32,
    /// Also stream every audit record to a syslog collector, `tcp://HOST:PORT` or `unix:/PATH`
    /// (RFC 5424 messages, octet-counted; facility authpriv unless `?facility=auth|local0..7`).
    #[arg(long, env = "CLAVIS_AUDIT_SYSLOG")]
    audit_syslog: Option<clavis_audit::SyslogSink>,
    /// DANGEROUS, for benchmarks only: serve without an audit log. Requests are then not
    /// recorded anywhere.
    #[arg(long, env = "CLAVIS_DANGEROUS_NO_AUDIT")]
    dangerous_no_audit: bool,
    /// The AWS KMS external key store (XKS) proxy API's path prefix: its calls are
    /// `POST <prefix>/kms/xks/v1/...` (default: no prefix). At most 100 characters of
    /// `a-zA-Z0-9/_-`, starting with `/`.
    #[arg(long, env = "CLAVIS_XKS_PATH_PREFIX", default_value = "")]
    xks_path_prefix: String,
    /// Where `GET /metrics` (Prometheus) is served: `main` (the API listener, default), a
    /// `HOST:PORT` of its own (plain HTTP), or `off`.
    #[arg(long, env = "CLAVIS_METRICS_LISTEN", default_value = "main")]
    metrics_listen: String,
    /// Cryptographic requests per second per account, all regions together (AWS's request
    /// quotas; beyond it ThrottlingException). 0 = unlimited.
    #[arg(long, env = "CLAVIS_ACCOUNT_REQUESTS_PER_SECOND", default_value_t = 10_000.0)]
    account_requests_per_second: f64,
    /// Requests of any operation per second per access key (beyond AWS). 0 = unlimited.
    #[arg(long, env = "CLAVIS_ACCESS_KEY_REQUESTS_PER_SECOND", default_value_t = 0.0)]
    access_key_requests_per_second: f64,
    /// The largest burst above those rates, in requests (0 = one second's worth of each).
    #[arg(long, env = "CLAVIS_LIMITS_BURST", default_value_t = 0.0)]
    limits_burst: f64,
    /// How often the background scheduler looks for keys whose rotation or deletion is due.
    #[arg(long, env = "CLAVIS_SCHEDULER_INTERVAL_MS", default_value_t = 10_000)]
    scheduler_interval_ms: u64,
    /// DANGEROUS, for tests only: abort the process after resealing this many values during a
    /// master-key rotation (to test that a restart completes it).
    #[arg(long, hide = true)]
    dangerous_test_crash_after_reseals: Option<u64>,
    /// DANGEROUS, for tests only: a clock that `ClavisAdmin.AdvanceTestClock` can move forward
    /// (rotation and deletion dates then come early). Never use it with real keys.
    #[arg(long, hide = true)]
    dangerous_test_clock: bool,
}

/// The audit directory inside a data directory.
pub const AUDIT_DIR: &str = "audit";

/// The audit log once it can be opened: it needs the root of trust to unseal its MAC key, so a
/// sealed server opens it at unseal. Until then every append fails (fail closed), except that
/// the core does not record refusals for being sealed (nothing can succeed while sealed).
/// Operator attempts made while sealed are held (see [`AuditSink::append_or_hold`]). Accepted
/// ones (a share that counts, an init) need a valid share or the first init, so only operators
/// make them and their number is small; room is refused (fail closed) only at this many held
/// or reserved records, which no stream of refusals reaches:
const MAX_HELD_RECORDS: usize = 65_536;

/// And at most this many bytes of held records (an unauthenticated record is at most 16 KiB;
/// an accepted operator action's is far smaller).
const MAX_HELD_BYTES: usize = 64 * 1024 * 1024;

/// Records of refused operator attempts (which changed nothing) are held only while fewer than
/// this many records are held; later ones are counted instead (the count is logged when the
/// log opens), so strangers' junk cannot use up the room operators' accepted shares need.
const MAX_HELD_REFUSALS: usize = 4096;

#[derive(Default)]
struct DeferredAudit {
    log: std::sync::OnceLock<Arc<dyn AuditSink>>,
    held: std::sync::Mutex<Held>,
    /// `held.open`, readable without the lock: every request's append checks it, and after
    /// unseal it never changes again.
    open: std::sync::atomic::AtomicBool,
}

/// Records held while sealed, and room reserved for ones about to be; one lock decides
/// between holding and writing, so none can be left behind when the log opens.
#[derive(Default)]
struct Held {
    open: bool,
    records: Vec<Vec<u8>>,
    /// The bytes of `records`.
    bytes: usize,
    reserved: usize,
    /// Refusals counted rather than held (over [`MAX_HELD_REFUSALS`]).
    refusals_not_held: u64,
}

impl DeferredAudit {
    /// Opens the deferred log: the records held while sealed are written first, in order, and
    /// from then on records go straight to the log.
    async fn open(&self, log: Arc<dyn AuditSink>) -> anyhow::Result<()> {
        let _ = self.log.set(log.clone());
        loop {
            let batch = {
                let mut held = self.held.lock().map_err(|_| anyhow::anyhow!("held audit records lock poisoned"))?;
                if held.records.is_empty() {
                    held.open = true;
                    self.open.store(true, std::sync::atomic::Ordering::Release);
                    if held.refusals_not_held > 0 {
                        tracing::warn!(
                            count = held.refusals_not_held,
                            "refused operator attempts made while sealed were counted, not recorded one by one: {MAX_HELD_REFUSALS} records were held already"
                        );
                    }
                    return Ok(());
                }
                held.bytes = 0;
                std::mem::take(&mut held.records)
            };
            for record in batch {
                log.append(record).await.map_err(|e| anyhow::anyhow!("writing the operator records held while sealed: {e}"))?;
            }
        }
    }
}

#[async_trait::async_trait]
impl AuditSink for DeferredAudit {
    async fn append(&self, record: Vec<u8>) -> Result<(), clavis_core::audit::AuditFailure> {
        match (self.open.load(std::sync::atomic::Ordering::Acquire), self.log.get()) {
            (true, Some(log)) => log.append(record).await,
            _ => Err(clavis_core::audit::AuditFailure("the audit log opens when the server is unsealed".into())),
        }
    }

    async fn append_many(&self, records: Vec<Vec<u8>>) -> Result<(), clavis_core::audit::AuditFailure> {
        match (self.open.load(std::sync::atomic::Ordering::Acquire), self.log.get()) {
            (true, Some(log)) => log.append_many(records).await,
            _ => Err(clavis_core::audit::AuditFailure("the audit log opens when the server is unsealed".into())),
        }
    }

    async fn append_or_hold(&self, record: Vec<u8>) -> Result<(), clavis_core::audit::AuditFailure> {
        {
            let mut held = self.held.lock().map_err(|_| clavis_core::audit::AuditFailure("held records lock poisoned".into()))?;
            held.reserved = held.reserved.saturating_sub(1);
            if !held.open {
                if held.bytes + record.len() > MAX_HELD_BYTES {
                    return Err(clavis_core::audit::AuditFailure("no room to hold another operator record while sealed".into()));
                }
                held.bytes += record.len();
                held.records.push(record);
                return Ok(());
            }
        }
        match self.log.get() {
            Some(log) => log.append(record).await,
            None => Err(clavis_core::audit::AuditFailure("the audit log is not open".into())),
        }
    }

    async fn hold_refusal(&self, record: Vec<u8>) -> Result<(), clavis_core::audit::AuditFailure> {
        {
            let mut held = self.held.lock().map_err(|_| clavis_core::audit::AuditFailure("held records lock poisoned".into()))?;
            if !held.open && held.records.len() >= MAX_HELD_REFUSALS {
                held.reserved = held.reserved.saturating_sub(1);
                held.refusals_not_held += 1;
                return Ok(());
            }
        }
        self.append_or_hold(record).await
    }

    fn reserve_hold(&self) -> bool {
        let Ok(mut held) = self.held.lock() else { return false };
        if held.open {
            held.reserved += 1;
            return true;
        }
        if held.records.len() + held.reserved >= MAX_HELD_RECORDS {
            return false;
        }
        held.reserved += 1;
        true
    }

    fn release_hold(&self) {
        if let Ok(mut held) = self.held.lock() {
            held.reserved = held.reserved.saturating_sub(1);
        }
    }

    fn reseal_key(&self, root: &dyn RootOfTrust) -> Result<(), clavis_core::audit::AuditFailure> {
        match self.log.get() {
            Some(log) => log.reseal_key(root),
            None => Err(clavis_core::audit::AuditFailure("the audit log is not open".into())),
        }
    }

    async fn lookup(
        &self,
        query: clavis_core::audit::LookupQuery,
    ) -> Result<(Vec<serde_json::Value>, Option<u64>), clavis_core::audit::AuditFailure> {
        match self.log.get() {
            Some(log) => log.lookup(query).await,
            None => Err(clavis_core::audit::AuditFailure("the audit log opens when the server is unsealed".into())),
        }
    }
}

/// The service's clock, for the audit log's segment ages and retention (so that a test clock
/// moves them too); held weakly, since the service holds the log.
struct ServiceClock(std::sync::Weak<Kms>);

impl Clock for ServiceClock {
    fn now_ms(&self) -> i64 {
        self.0.upgrade().map_or_else(|| SystemClock.now_ms(), |kms| kms.now_ms())
    }
}

fn open_audit(args: &ServeArgs, root: &dyn RootOfTrust, kms: &Arc<Kms>) -> anyhow::Result<Arc<dyn AuditSink>> {
    let stream = match args.audit_stream.as_deref() {
        None => None,
        Some("stdout") => Some(StreamSink::Stdout),
        Some(other) => match other.strip_prefix("file:") {
            Some(path) => Some(StreamSink::File(path.into())),
            None => bail!("--audit-stream must be `stdout` or `file:PATH`"),
        },
    };
    let dir = args.data_dir.join(AUDIT_DIR);
    // Mode 0700 like the data directory (docs/formats.md), before the key is written into it.
    create_data_dir(&dir)?;
    let key = clavis_audit::load_key(&dir, root, true)?;
    let clock: Arc<dyn Clock> = if args.dangerous_test_clock { Arc::new(ServiceClock(Arc::downgrade(kms))) } else { Arc::new(SystemClock) };
    let config = AuditConfig {
        segment_bytes: args.audit_segment_bytes,
        stream,
        syslog: args.audit_syslog.clone(),
        durability: args.audit_durability,
        segment_max_age: args.audit_segment_max_age,
        retain: (args.audit_retain_days > 0).then(|| std::time::Duration::from_secs(u64::from(args.audit_retain_days) * 86_400)),
        clock,
        ..AuditConfig::new(dir)
    };
    let log = AuditLog::open(config, key).context("opening the audit log")?;
    Ok(Arc::new(log))
}

/// The root of trust from the database's master-key registry (`master_keys`): every version it
/// names, each opened from its provider (key files in the data directory; HSM keys in the
/// configured token), sealing with `master_key_current`; rotation makes the next version in the
/// provider this node was started with. A fresh deployment starts with version 1 of that
/// provider. A deployment has at most one Shamir master key (`shamir.conf`); while it is the
/// current version the server starts sealed.
async fn open_keyring(args: &ServeArgs, store: &dyn Store, may_create_key_file: bool) -> anyhow::Result<Arc<dyn RootOfTrust>> {
    let configured = args.root.kind_name();
    let stored_registry = store.get_setting(MASTER_KEYS_SETTING).await?;
    // Only a deployment that has never started may create its first HSM key; any other finds
    // its keys in the token or refuses to start (a created key could read nothing).
    let fresh = stored_registry.is_none() && store.get_setting("root_check").await?.is_none();
    let registry = match stored_registry {
        Some(text) => parse_registry(&text).context("the database's master_keys setting is malformed")?,
        // No registry: a fresh deployment (version 1 of the configured provider), or one from
        // before the registry existed, whose version 1 is its key file if it has one.
        None if args.data_dir.join(crate::root::MASTER_KEY_FILE).exists() => vec![(1, "file".to_owned())],
        None => vec![(1, configured.to_owned())],
    };
    let current: u32 = store.get_setting(CURRENT_SETTING).await?.and_then(|v| v.parse().ok()).unwrap_or(1);
    // A Shamir master key (there is at most one: `shamir.conf`) starts sealed.
    let shamir_path = args.data_dir.join(SHAMIR_CONFIG_FILE);
    let shamir = if configured == "shamir" || registry.iter().any(|(_, k)| k == "shamir") {
        Some(Arc::new(ShamirRoot::load(&shamir_path).context("loading shamir.conf")?))
    } else {
        None
    };
    let hsm = if configured == "pkcs11" || registry.iter().any(|(_, k)| k == "pkcs11") { Some(args.root.open_pkcs11()?) } else { None };
    let rotation_done = store.get_setting(ROTATION_SETTING).await?.is_none_or(|s| s == "done");
    let mut members: Vec<(u32, Arc<dyn RootOfTrust>)> = Vec::new();
    for (version, kind) in &registry {
        let opened = (|| -> anyhow::Result<Arc<dyn RootOfTrust>> {
            Ok(match (kind.as_str(), &hsm) {
                ("file", _) if *version == 1 => Arc::new(open_root(&args.data_dir, may_create_key_file)?) as Arc<dyn RootOfTrust>,
                ("file", _) => Arc::new(
                    LocalKeyFile::open(&key_file_path(&args.data_dir, *version))
                        .with_context(|| format!("opening master-key version {version}'s key file"))?
                        .with_version(*version),
                ),
                ("pkcs11", Some(token)) => args.root.hsm_key(token, *version, fresh)?,
                ("pkcs11", None) => bail!("master-key version {version} is in an HSM: start with --root-of-trust pkcs11 and its options"),
                ("shamir", _) => match &shamir {
                    Some(root) if root.status().master_key_version == *version => root.clone() as Arc<dyn RootOfTrust>,
                    _ => bail!("master-key version {version} is a Shamir key, but {} holds another", shamir_path.display()),
                },
                (other, _) => bail!("master-key version {version} has an unknown provider {other:?}"),
            })
        })();
        match opened {
            Ok(root) => members.push((*version, root)),
            // After a completed rotation nothing is sealed under an older version: its key may
            // have been retired (a deleted key file after migrating into an HSM).
            Err(e) if *version != current && rotation_done => {
                tracing::warn!(version, error = %format!("{e:#}"), "an older master-key version is unavailable; nothing should be sealed under it since the last rotation completed");
            }
            Err(e) => return Err(e),
        }
    }
    let data_dir = args.data_dir.clone();
    let base_label = args.root.clone();
    let maker: KeyMaker = match configured {
        "pkcs11" => {
            let token = hsm.clone().context("the HSM")?;
            Box::new(move |v, _| Ok((base_label.hsm_key(&token, v, true)?, None)))
        }
        "shamir" => Box::new(move |v, params| {
            let (Some(shares), Some(threshold)) = (params.shares, params.threshold) else {
                return Err(clavis_crypto::CryptoError::Unseal("a new Shamir master key needs Shares and Threshold".into()));
            };
            let (root, parts) = ShamirRoot::create(&shamir_path, v, shares, threshold)?;
            Ok((Arc::new(root) as Arc<dyn RootOfTrust>, Some(parts)))
        }),
        _ => Box::new(move |v, _| {
            // A key file left by a rotation that crashed before recording it is adopted.
            let path = key_file_path(&data_dir, v);
            let file = if path.exists() { LocalKeyFile::open(&path)? } else { LocalKeyFile::create(&path)? };
            Ok((Arc::new(file.with_version(v)) as Arc<dyn RootOfTrust>, None))
        }),
    };
    // The database says a Shamir key is in use, but its shamir.conf is gone.
    if let Some(root) = &shamir
        && !root.status().initialized
        && registry.iter().any(|(_, k)| k == "shamir")
        && store.get_setting("root_check").await?.is_some()
    {
        bail!(
            "this deployment is initialised but {} is missing: restore it (a new Shamir key cannot read existing data)",
            args.data_dir.join(SHAMIR_CONFIG_FILE).display()
        );
    }
    let ring = Keyring::new(members, current, Some(maker)).context("building the keyring")?;
    // An unfinished rotation may still need every version: start sealed if one is.
    ring.set_rotation_unfinished(!rotation_done);
    Ok(Arc::new(ring))
}

/// This node's lasting name (`DATA_DIR/node-id`, random, made on first start): leases taken
/// before a crash are recognised as its own after the restart.
fn node_id(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = format!("node-{}", hex_string(clavis_crypto::random::bytes(8)?));
            std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
            Ok(id)
        }
    }
}

/// What needs the master key: the audit log, the check against the database's canary, and the
/// first-start initialisation. Runs at start, or at unseal for a server that starts sealed.
async fn open_unsealed(
    args: &ServeArgs,
    root: &dyn RootOfTrust,
    kms: &Arc<Kms>,
    audit: Option<&DeferredAudit>,
) -> anyhow::Result<AccountId> {
    if let Some(deferred) = audit {
        let log = open_audit(args, root, kms)?;
        // A node that missed a rotation (another node ran it) reseals its own audit key.
        let sealed_key = std::fs::read(args.data_dir.join(AUDIT_DIR).join(clavis_audit::AUDIT_KEY_FILE)).unwrap_or_default();
        if clavis_crypto::seal::sealed_version(&sealed_key).is_ok_and(|v| v != root.status().master_key_version) {
            log.reseal_key(root).map_err(|e| anyhow::anyhow!("resealing the audit key under the current master key: {e}"))?;
        }
        deferred.open(log).await?;
    }
    kms.check_root_of_trust().await.context(
        "the master key does not match the database: every node sharing a database needs the same master key (copy master.key from the first node)",
    )?;
    let account = initialise(kms, &args.data_dir).await?;
    kms.record_master_key(args.root.kind_name()).await?;
    kms.set_ready();
    // A rotation interrupted by a crash completes now, in the background.
    let resume = kms.clone();
    tokio::spawn(async move {
        match resume.resume_master_key_rotation().await {
            Ok(Some(n)) => tracing::warn!(resealed = n, "resumed and completed an interrupted master-key rotation"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "resuming the master-key rotation failed; run clavis operator rotate-master-key again"),
        }
    });
    Ok(account)
}

const DB_FILE: &str = "clavis.db";
pub use crate::root::MASTER_KEY_FILE;
const CREDENTIALS_FILE: &str = "admin-credentials";

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn write_private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Creates a data directory with mode 0700, or tightens an existing one that other users could
/// read or enter (its database holds policies, users and grant tokens in clear). A directory
/// this process cannot tighten (another owner) stops the start.
fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).with_context(|| format!("creating data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(|| {
                format!("{} has mode {mode:o}, open to other users; it must be 0700 and could not be changed", dir.display())
            })?;
            tracing::warn!(dir = %dir.display(), was = format!("{mode:o}"), "data directory was open to other users; its mode is now 0700");
        }
    }
    Ok(())
}

/// Makes the SQLite database file exist with mode 0600 before SQLite opens it: SQLite creates
/// its `-wal` and `-shm` files with the database file's mode, so all three stay private.
fn private_database_file(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", path.display()));
            if let Ok(meta) = std::fs::metadata(&p)
                && meta.permissions().mode() & 0o077 != 0
            {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("making {} private (mode 0600)", p.display()))?;
            }
        }
    }
    Ok(())
}

/// Opens the master key, creating it only for a brand-new data directory: a database without
/// its key file is unreadable, and a fresh key would not bring it back.
/// With PostgreSQL the database is elsewhere: a missing key file is created, and the check
/// against the database's root-of-trust canary (`Kms::check_root_of_trust`) refuses to start a
/// node whose key is not the one the database was initialised with.
fn open_root(dir: &Path, shared_database: bool) -> anyhow::Result<LocalKeyFile> {
    let key_path = dir.join(MASTER_KEY_FILE);
    if key_path.exists() {
        return LocalKeyFile::open(&key_path).context("opening the master key file");
    }
    if !shared_database && dir.join(DB_FILE).exists() {
        bail!(
            "{} exists but its master key {} is missing: restore the key file from backup (a new key cannot read existing data)",
            dir.join(DB_FILE).display(),
            key_path.display()
        );
    }
    LocalKeyFile::create(&key_path).context("creating the master key file")
}

/// First start: record the account and the administrator's credentials. Later starts: check
/// that the environment does not contradict what is stored.
async fn initialise(kms: &Kms, dir: &Path) -> anyhow::Result<AccountId> {
    let env_account = match env_nonempty("CLAVIS_ACCOUNT_ID") {
        Some(a) => Some(AccountId::parse(&a).context("CLAVIS_ACCOUNT_ID must be 12 digits")?),
        None => None,
    };
    let env_creds = match (env_nonempty("CLAVIS_ROOT_ACCESS_KEY_ID"), env_nonempty("CLAVIS_ROOT_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => Some((id, secret)),
        (None, None) => None,
        _ => bail!("set both CLAVIS_ROOT_ACCESS_KEY_ID and CLAVIS_ROOT_SECRET_ACCESS_KEY, or neither"),
    };
    if let Some((id, secret)) = &env_creds {
        if id.len() < 4 || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            bail!("CLAVIS_ROOT_ACCESS_KEY_ID must be 4 to 128 letters and digits");
        }
        if secret.len() < 16 || secret.bytes().any(|b| b.is_ascii_whitespace() || !b.is_ascii()) {
            bail!("CLAVIS_ROOT_SECRET_ACCESS_KEY must be at least 16 printable ASCII characters");
        }
    }

    if let Some(account) = kms.account_id().await? {
        if env_account.as_ref().is_some_and(|a| a != &account) {
            bail!("CLAVIS_ACCOUNT_ID differs from the account {} this data directory was initialised with", account.as_str());
        }
        if let Some((id, secret)) = &env_creds {
            let known = kms.credential(id).await?;
            let matches = known.is_some_and(|c| clavis_crypto::digest::constant_time_eq(c.secret.expose_secret(), secret.as_bytes()));
            if !matches {
                bail!(
                    "CLAVIS_ROOT_ACCESS_KEY_ID/CLAVIS_ROOT_SECRET_ACCESS_KEY do not match the administrator credentials of this data directory (they are set only at initialisation)"
                );
            }
        }
        return Ok(account);
    }

    let account = match env_account {
        Some(a) => a,
        None => AccountId::generate()?,
    };
    let generated = env_creds.is_none();
    let (id, secret) = match env_creds {
        Some(c) => c,
        None => {
            let (id, secret) = clavis_core::identity::generate_access_key()?;
            (id, String::from_utf8_lossy(secret.expose_secret()).into_owned())
        }
    };
    if generated {
        // Written before the credentials are stored, so a crash cannot leave credentials that
        // nobody ever saw.
        let creds_path = dir.join(CREDENTIALS_FILE);
        write_private_file(
            &creds_path,
            &format!("[clavis]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n# account {}\n", account.as_str()),
        )?;
    }
    let account = kms.initialize(&account, &id, &SecretBytes::new(secret.clone().into_bytes())).await?;
    if generated {
        println!("Clavis initialised {}.", dir.display());
        println!("Administrator credentials (shown once; also in {}, mode 0600):", dir.join(CREDENTIALS_FILE).display());
        println!("  AWS_ACCESS_KEY_ID={id}");
        println!("  AWS_SECRET_ACCESS_KEY={secret}");
        println!("  account {}", account.as_str());
    }
    Ok(account)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Rotates and destroys due keys in the background. Safe with several nodes on one database:
/// only the holder of the `scheduler` lease works, and each change is a compare-and-swap.
fn spawn_scheduler(kms: Arc<Kms>, interval: std::time::Duration) {
    let node_id = format!("node-{}", std::process::id()) + &clavis_crypto::random::bytes(6).map(hex_string).unwrap_or_default();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            clavis_metrics::METRICS.scheduler_runs.inc();
            match kms.run_due_work(&node_id).await {
                Ok(done) if done.rotated + done.destroyed > 0 => {
                    clavis_metrics::METRICS.scheduler_actions.inc_by(u64::try_from(done.rotated + done.destroyed).unwrap_or(u64::MAX));
                    tracing::info!(rotated = done.rotated, destroyed = done.destroyed, "scheduler run")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "scheduler run failed; retrying at the next interval"),
            }
        }
    });
}

/// Whether `--listen` names only loopback addresses (`127.0.0.0/8`, `::1`, `localhost`).
fn is_loopback(listen: &str) -> bool {
    use std::net::ToSocketAddrs;
    match listen.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// Reloads the TLS certificate and key from their files on SIGHUP. A pair that fails to load
/// is reported and the current one stays in use.
fn spawn_certificate_reload(tls: Arc<crate::tls::ServerTls>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: the TLS certificate will not be reloaded");
            return;
        };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "TLS certificate reload failed; the previous certificate stays in use")
                }
            }
        }
    });
}

fn hex_string(bytes: Vec<u8>) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `clavis serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Before anything is created: plain HTTP on a network address would carry plaintexts,
    // data keys, new secrets and unseal shares in clear.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(crate::tls::ServerTls::new(cert, key, args.tls_client_ca.as_deref())?)),
        _ => None,
    };
    if tls.is_none() && !args.insecure_http && !is_loopback(&args.listen) {
        bail!(
            "--listen {} is not a loopback address: give --tls-cert and --tls-key, or --insecure-http if a proxy in front terminates TLS",
            args.listen
        );
    }
    args.root.check_available()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let handshake = tls.as_ref().map(|t| t.handshake());
        if let Some(tls) = tls.clone() {
            spawn_certificate_reload(tls);
        }
        create_data_dir(&args.data_dir)?;
        let shared_database = args.database_url.is_some();
        let fresh_sqlite = !shared_database && !args.data_dir.join(DB_FILE).exists();
        let store: Arc<dyn Store> = match &args.database_url {
            Some(url) => Arc::new(PostgresStore::connect(url).await.context("connecting to the PostgreSQL database")?),
            None => {
                private_database_file(&args.data_dir.join(DB_FILE))?;
                Arc::new(SqliteStore::open(&args.data_dir.join(DB_FILE)).context("opening the database")?)
            }
        };
        let root = open_keyring(&args, store.as_ref(), fresh_sqlite || shared_database).await?;
        let deferred = if args.dangerous_no_audit {
            tracing::warn!("AUDIT IS DISABLED (--dangerous-no-audit): requests are not recorded");
            None
        } else {
            Some(Arc::new(DeferredAudit::default()))
        };
        let audit = deferred.clone().map(|d| d as Arc<dyn AuditSink>);
        let (clock, test_clock): (Arc<dyn Clock>, Option<Arc<TestClock>>) = if args.dangerous_test_clock {
            tracing::warn!("TEST CLOCK ENABLED (--dangerous-test-clock): key rotation and deletion dates can be forced early");
            let c = Arc::new(TestClock::default());
            (c.clone(), Some(c))
        } else {
            (Arc::new(SystemClock), None)
        };
        let kms = Arc::new(Kms::new(
            store,
            root.clone(),
            clock,
            KmsConfig {
                audit,
                test_clock,
                crash_after_reseals: args.dangerous_test_crash_after_reseals,
                node_id: Some(node_id(&args.data_dir)?),
                rotation_executors: rotation_executors(&args)?,
            },
        ));
        let scheduler_interval = std::time::Duration::from_millis(args.scheduler_interval_ms.max(10));
        let args = Arc::new(args);
        if root.is_sealed() {
            tracing::warn!(
                initialized = root.status().initialized,
                "SEALED: every request is refused until operators unseal (clavis operator init / clavis operator unseal)"
            );
            let (args, root, kms) = (args.clone(), root.clone(), kms.clone());
            tokio::spawn(async move {
                while root.is_sealed() {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                match open_unsealed(&args, root.as_ref(), &kms, deferred.as_deref()).await {
                    Ok(account) => {
                        tracing::info!(account = account.as_str(), "unsealed");
                        spawn_scheduler(kms, scheduler_interval);
                    }
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "cannot serve after unseal; exiting");
                        std::process::exit(1);
                    }
                }
            });
        } else {
            let account = open_unsealed(&args, root.as_ref(), &kms, deferred.as_deref()).await?;
            tracing::info!(account = account.as_str(), "initialised");
            spawn_scheduler(kms.clone(), scheduler_interval);
        }
        let config = ServerConfig {
            allowed_regions: args.allowed_regions.clone(),
            body_read_timeout: std::time::Duration::from_secs(args.body_read_timeout_secs.max(1)),
            public_names: args.public_name.clone(),
            init_token: env_nonempty("CLAVIS_INIT_TOKEN"),
            ..ServerConfig::default()
        };
        let quota = clavis_server::quota::RateLimits {
            account_requests_per_second: args.account_requests_per_second,
            access_key_requests_per_second: args.access_key_requests_per_second,
            burst: args.limits_burst,
        };
        let metrics_addr = match args.metrics_listen.as_str() {
            "main" | "off" => None,
            addr => Some(addr.to_owned()),
        };
        let xks_path_prefix = args.xks_path_prefix.trim_end_matches('/').to_owned();
        if !xks_path_prefix.is_empty()
            && (!xks_path_prefix.starts_with('/')
                || xks_path_prefix.len() > 100
                || !xks_path_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b)))
        {
            bail!("--xks-path-prefix must start with / and hold at most 100 characters of a-z, A-Z, 0-9, /, _ and -");
        }
        let config = ServerConfig { metrics: args.metrics_listen == "main", xks_path_prefix, ..config };
        let state = AppState::with_limits(kms, config, args.auth_failures_per_second, (args.auth_failures_per_second * 5.0).max(1.0))
            .with_quota(quota);
        let header_read_timeout = std::time::Duration::from_secs(args.header_read_timeout_secs.max(1));
        // The default cap leaves the metrics listener's connections out of the main one's.
        let metrics_connections =
            if metrics_addr.is_some() { clavis_server::listener::descriptor_ceiling(METRICS_MAX_CONNECTIONS) } else { 0 };
        if let Some(addr) = metrics_addr {
            let metrics = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding --metrics-listen {addr}"))?;
            tracing::info!(listen = %metrics.local_addr()?, max_connections = METRICS_MAX_CONNECTIONS, "metrics serving (GET /metrics)");
            let app = clavis_server::metrics_app(state.clone());
            // The same bounds as the main listener (header-read and idle timeouts, a connection
            // cap that evicts idle connections), so that no client of this port can hold the
            // process's descriptors.
            let config =
                ListenerConfig { header_read_timeout, max_connections: METRICS_MAX_CONNECTIONS, shutdown_grace: std::time::Duration::ZERO };
            tokio::spawn(async move {
                if let Err(e) = clavis_server::listener::serve(metrics, app, config, None, std::future::pending()).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            });
        }
        let app = clavis_server::app(state);
        let listener_config = ListenerConfig {
            header_read_timeout,
            max_connections: args
                .max_connections
                .unwrap_or_else(|| clavis_server::listener::default_max_connections(metrics_connections))
                .max(1),
            shutdown_grace: std::time::Duration::from_secs(30),
        };
        let listener = tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
        tracing::info!(
            listen = %listener.local_addr()?,
            tls = handshake.is_some(),
            max_connections = listener_config.max_connections,
            data_dir = %args.data_dir.display(),
            "clavis serving"
        );
        clavis_server::listener::serve(listener, app, listener_config, handshake, shutdown_signal()).await?;
        Ok(())
    })
}

/// The most connections the `--metrics-listen` listener keeps open (a Prometheus server scrapes
/// over one); beyond it the oldest idle one is closed, as on the main listener.
const METRICS_MAX_CONNECTIONS: usize = 16;

/// The rotation executors of `--rotation-executor`, reaching this server at
/// `--rotation-endpoint` or its own loopback address.
fn rotation_executors(
    args: &ServeArgs,
) -> anyhow::Result<std::collections::BTreeMap<String, Arc<dyn clavis_core::executor::RotationExecutor>>> {
    let endpoint = match &args.rotation_endpoint {
        Some(e) => e.clone(),
        None => {
            let port = args.listen.rsplit(':').next().unwrap_or("8484");
            let scheme = if args.tls_cert.is_some() { "https" } else { "http" };
            format!("{scheme}://127.0.0.1:{port}")
        }
    };
    let mut out: std::collections::BTreeMap<String, Arc<dyn clavis_core::executor::RotationExecutor>> = std::collections::BTreeMap::new();
    let webhook_key = match &args.rotation_webhook_key_file {
        Some(path) => {
            let raw = std::fs::read(path).with_context(|| format!("--rotation-webhook-key-file {}", path.display()))?;
            let text = String::from_utf8_lossy(&raw).lines().next().unwrap_or_default().trim().as_bytes().to_vec();
            let key = if text.len() >= 32 { text } else { raw };
            if key.len() < 32 {
                anyhow::bail!("--rotation-webhook-key-file {}: the key must be at least 32 bytes", path.display());
            }
            Some(clavis_crypto::SecretBytes::new(key))
        }
        None => None,
    };
    for spec in &args.rotation_executor {
        let (name, executor) = crate::rotation::executor(spec, &endpoint, webhook_key.as_ref())?;
        out.insert(name, executor);
    }
    Ok(out)
}
