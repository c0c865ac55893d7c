//! `clavis operator backup` and `clavis operator restore`: an online, consistent copy of an
//! SQLite deployment's data directory as one archive, and its restoration into an empty
//! directory.
//!
//! The backup runs on the server's host, beside a server that keeps serving: (1) it reads the
//! sealed audit key; (2) it snapshots the database with `VACUUM INTO` (one read transaction:
//! exactly the transactions committed before it began); (3) it waits `--audit-settle-ms`, so
//! that requests that changed the database just before the snapshot have written their audit
//! records; (4) it copies the audit log as far as it is written: HEAD first, then every closed
//! segment whole and the live segment up to its last complete record that continues the chain
//! (a half-written batch is left out). HEAD names a record the copy holds, so the restored
//! directory passes `clavis audit verify`. docs/operations.md ("Backup and restore") states what
//! the copy guarantees.
//!
//! The archive is a POSIX tar file (mode 0600, written under a temporary name and renamed when
//! complete): the members, then `clavis-backup.json`, the manifest, with each member's size and
//! SHA-256. It never holds a master key: the master key stays in its root of trust (a key file
//! kept apart, Shamir shares, an HSM), and a restore says which one the operator must supply.
//! Restore reads the archive twice: once to check every member against the manifest, writing
//! nothing, then to write the members (checking them again); on any failure it removes what it
//! wrote. PostgreSQL deployments are backed up with PostgreSQL's tools (docs/operations.md).

use anyhow::{Context, bail, ensure};
use clavis_audit::format::{self, ANCHOR_FILE, CheckpointLine, Hash, RecordLine};
use clavis_core::master_key::{CURRENT_SETTING, MASTER_KEYS_SETTING, ROTATION_SETTING, parse_registry};
use clavis_crypto::digest::Sha256;
use clavis_crypto::seal::SHAMIR_CONFIG_FILE;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The manifest's name in the archive (its last member).
const MANIFEST: &str = "clavis-backup.json";
/// The manifest's `format`.
const FORMAT: &str = "clavis-backup-v1";
/// The largest manifest a restore reads (a manifest lists one line per audit segment; a
/// million segments of the default 64 MiB is 64 TiB of audit log).
const MAX_MANIFEST_BYTES: u64 = 256 * 1024 * 1024;
/// The most members a restore accepts.
const MAX_MEMBERS: usize = 1_000_000;
/// The database file inside a data directory.
const DB_FILE: &str = "clavis.db";
/// The node's name inside a data directory.
const NODE_ID_FILE: &str = "node-id";
/// What a PostgreSQL deployment does instead.
const POSTGRES_ADVICE: &str = "a PostgreSQL deployment keeps its tables in PostgreSQL: back the database up with pg_dump or \
     continuous archiving (point-in-time recovery) and each node's audit/ directory per node, as docs/operations.md \
     (\"Backup and restore\") describes";

/// Arguments of `clavis operator backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The data directory of the SQLite deployment to back up (the server may keep serving).
    #[arg(long, env = "CLAVIS_DATA_DIR", default_value = "./clavis-data")]
    data_dir: PathBuf,
    /// The archive to write: a new file (mode 0600), written under a temporary name beside it
    /// and renamed when complete.
    #[arg(long)]
    out: PathBuf,
    /// Milliseconds to wait after the database snapshot before copying the audit log, so that
    /// requests whose changes the snapshot holds have written their audit records
    /// (docs/operations.md, "Backup and restore"). At most 60000.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    audit_settle_ms: u64,
    /// Set for a PostgreSQL deployment, which this command refuses (see docs/operations.md).
    #[arg(long, env = "CLAVIS_DATABASE_URL", hide = true)]
    database_url: Option<String>,
}

/// Arguments of `clavis operator restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The archive `clavis operator backup` wrote.
    #[arg(long)]
    from: PathBuf,
    /// The data directory to restore into: new, or empty.
    #[arg(long)]
    data_dir: PathBuf,
}

/// The manifest: what the archive holds and how it was made.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    /// [`FORMAT`].
    format: String,
    /// The version of the `clavis` that made the backup.
    clavis_version: String,
    /// When the backup was made (UTC).
    created: String,
    /// The backed-up node's `node-id`, if it had one.
    node_id: Option<String>,
    root_of_trust: RootOfTrustInfo,
    database: DatabaseInfo,
    audit: AuditInfo,
    members: Vec<Member>,
}

/// The master keys the backup's sealed values need (none of them is in the archive).
#[derive(Debug, Serialize, Deserialize)]
struct RootOfTrustInfo {
    /// The master-key version that seals new values.
    current_version: u32,
    /// Every version the database's registry names, with its provider (`file`, `shamir`,
    /// `pkcs11`).
    versions: Vec<MasterKeyVersion>,
    /// The state of master-key rotation (`done`, or the reseal in progress).
    rotation: String,
    /// The version the audit MAC key is sealed under.
    audit_key_version: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct MasterKeyVersion {
    version: u32,
    provider: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct DatabaseInfo {
    /// `sqlite`.
    engine: String,
    /// `VACUUM INTO`.
    method: String,
    /// SQLite's `user_version` of the copy.
    schema_version: u32,
    /// When the snapshot's read transaction began (at or after this instant) ...
    snapshot_started: String,
    /// ... and when the copy was complete.
    snapshot_finished: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct AuditInfo {
    /// The copy's first segment: 1, or the one `ANCHOR` names once retention deleted earlier
    /// ones.
    first_segment: u64,
    /// How many segments the copy holds.
    segments: u64,
    /// The copy's last record.
    last_seq: u64,
    /// The record HEAD names in the copy (at or before `last_seq`).
    head_seq: u64,
    /// The wait between the snapshot and the copy.
    settle_ms: u64,
    /// When the copy of the audit log began (after the settle wait).
    copy_started: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Member {
    name: String,
    size: u64,
    /// Lower-case hex.
    sha256: String,
}

/// A member an archive may hold. Anything else (a master key above all) is refused by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberKind {
    Database,
    NodeId,
    ShamirConfig,
    AuditKey,
    Head,
    Anchor,
    Segment(u64),
}

impl MemberKind {
    fn parse(name: &str) -> anyhow::Result<MemberKind> {
        let kind = match name {
            DB_FILE => MemberKind::Database,
            NODE_ID_FILE => MemberKind::NodeId,
            SHAMIR_CONFIG_FILE => MemberKind::ShamirConfig,
            _ => match name.strip_prefix("audit/") {
                Some(clavis_audit::AUDIT_KEY_FILE) => MemberKind::AuditKey,
                Some("HEAD") => MemberKind::Head,
                Some(ANCHOR_FILE) => MemberKind::Anchor,
                Some(file) => match format::parse_segment_name(file) {
                    Some(i) if i > 0 && format::segment_name(i) == file => MemberKind::Segment(i),
                    _ => bail!("the archive holds {name:?}, which is not part of a Clavis backup"),
                },
                None if name.ends_with(".key") => {
                    bail!("the archive holds {name:?}, a master key file, which a Clavis backup never holds: refusing it")
                }
                None => bail!("the archive holds {name:?}, which is not part of a Clavis backup"),
            },
        };
        Ok(kind)
    }

    fn in_audit_dir(self) -> bool {
        matches!(self, MemberKind::AuditKey | MemberKind::Head | MemberKind::Anchor | MemberKind::Segment(_))
    }
}

/// The time as RFC 3339 UTC with milliseconds.
fn rfc3339(t: std::time::SystemTime) -> String {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    let (y, m, d) = clavis_sigv4::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", s / 3600, s % 3600 / 60, s % 60, since.subsec_millis())
}

fn private_file(path: &Path) -> anyhow::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).with_context(|| format!("creating {}", path.display()))
}

fn private_dir(path: &Path) -> anyhow::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(path).with_context(|| format!("creating {}", path.display()))
}

fn sync_dir(path: &Path) -> anyhow::Result<()> {
    File::open(path).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", path.display()))
}

/// A reader that yields exactly `remaining` bytes of `inner`, hashing them; a file that ends
/// early is an error rather than a short member (the tar header already gave its size).
struct Exact<R> {
    inner: R,
    remaining: u64,
    hash: Sha256,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(buf.len());
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file ended before its recorded size"));
        }
        self.hash.update(&buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    len: u64,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// The backup's working directory beside the archive (mode 0700): the database snapshot, the
/// copy of the live audit segment and the archive before its rename. Removed on every exit.
struct Staging {
    dir: PathBuf,
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One member to write: its name in the archive, the file holding it and its size.
struct Source {
    name: String,
    path: PathBuf,
    size: u64,
}

/// The audit log as copied.
struct AuditCopy {
    sources: Vec<Source>,
    first_segment: u64,
    segments: u64,
    last_seq: u64,
    head_seq: u64,
}

/// Runs `clavis operator backup`.
pub fn backup(args: BackupArgs) -> anyhow::Result<()> {
    if args.database_url.is_some() {
        bail!("clavis operator backup copies an SQLite deployment, and CLAVIS_DATABASE_URL is set: {POSTGRES_ADVICE}");
    }
    let db = args.data_dir.join(DB_FILE);
    if !db.is_file() {
        bail!("{} has no SQLite database ({DB_FILE}): it is not a Clavis data directory, or {POSTGRES_ADVICE}", args.data_dir.display());
    }
    let audit_dir = args.data_dir.join(crate::serve::AUDIT_DIR);
    let audit_key_path = audit_dir.join(clavis_audit::AUDIT_KEY_FILE);
    if std::fs::symlink_metadata(&args.out).is_ok() {
        bail!("{} already exists: give a new file name (a backup never overwrites one)", args.out.display());
    }
    let parent = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = args.out.file_name().and_then(|n| n.to_str()).context("--out must name a file")?;

    // The sealed audit key first: a master-key rotation that runs meanwhile reseals it under a
    // version the snapshot's registry already names (it records a version before sealing under
    // it), and is caught by reading the key again at the end.
    let sealed_audit_key = std::fs::read(&audit_key_path).with_context(|| {
        format!("reading {} (a data directory whose server has never been unsealed has nothing to back up)", audit_key_path.display())
    })?;
    let audit_key_version = clavis_crypto::seal::sealed_version(&sealed_audit_key).context("the sealed audit key is malformed")?;

    let suffix: String = clavis_crypto::random::bytes(6)?.iter().map(|b| format!("{b:02x}")).collect();
    let staging_dir = parent.join(format!(".{file_name}.partial-{suffix}"));
    private_dir(&staging_dir)?;
    let staging = Staging { dir: staging_dir };

    let snapshot_path = staging.dir.join(DB_FILE);
    drop(private_file(&snapshot_path)?);
    let snapshot_started = std::time::SystemTime::now();
    let snapshot = clavis_store_sqlite::snapshot_into(&db, &snapshot_path).context("snapshotting the database")?;
    let snapshot_finished = std::time::SystemTime::now();

    let registry_text = snapshot
        .setting(MASTER_KEYS_SETTING)
        .context("the database has no master-key registry: the deployment was never initialised, so there is nothing to back up")?;
    let registry = parse_registry(registry_text).context("the database's master_keys setting is malformed")?;
    let current_version: u32 = snapshot.setting(CURRENT_SETTING).and_then(|v| v.parse().ok()).unwrap_or(1);
    let rotation = snapshot.setting(ROTATION_SETTING).unwrap_or("done").to_owned();
    if !registry.iter().any(|(v, _)| *v == audit_key_version) {
        bail!(
            "the audit key is sealed under master-key version {audit_key_version}, which the database's registry does not name: \
             run the backup again (a master-key rotation may have run meanwhile)"
        );
    }

    std::thread::sleep(std::time::Duration::from_millis(args.audit_settle_ms));
    let copy_started = std::time::SystemTime::now();
    // A HEAD read that raced its rewrite, or retention deleting segments while they were
    // listed, makes a copy that does not hold together: it is made again, from a fresh read.
    let mut attempt = 0;
    let audit = loop {
        attempt += 1;
        let into = staging.dir.join(format!("audit-{attempt}"));
        private_dir(&into)?;
        match copy_audit(&audit_dir, &into) {
            Ok(copy) => break copy,
            Err(e) if attempt < 3 => tracing::warn!(error = %format!("{e:#}"), "copying the audit log again"),
            Err(e) => return Err(e.context("copying the audit log")),
        }
    };
    let sealed_again = std::fs::read(&audit_key_path).with_context(|| format!("reading {}", audit_key_path.display()))?;
    if sealed_again != sealed_audit_key {
        bail!("a master-key rotation resealed the audit key while the backup ran: run the backup again");
    }

    let node_id = std::fs::read_to_string(args.data_dir.join(NODE_ID_FILE)).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let key_copy = staging.dir.join(clavis_audit::AUDIT_KEY_FILE);
    private_file(&key_copy)?.write_all(&sealed_audit_key)?;
    let mut sources = vec![Source { name: DB_FILE.into(), size: std::fs::metadata(&snapshot_path)?.len(), path: snapshot_path }];
    // node-id and shamir.conf are small and written once; read whole, they are staged like
    // the audit key so their size and content cannot change under the archive.
    for name in [NODE_ID_FILE, SHAMIR_CONFIG_FILE] {
        match std::fs::read(args.data_dir.join(name)) {
            Ok(bytes) => {
                let path = staging.dir.join(name);
                private_file(&path)?.write_all(&bytes)?;
                sources.push(Source { name: name.into(), path, size: bytes.len() as u64 });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", args.data_dir.join(name).display())),
        }
    }
    sources.push(Source { name: format!("audit/{}", clavis_audit::AUDIT_KEY_FILE), path: key_copy, size: sealed_audit_key.len() as u64 });
    sources.extend(audit.sources);

    let archive_tmp = staging.dir.join("archive.tar");
    let mtime = copy_started.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut builder = tar::Builder::new(BufWriter::new(private_file(&archive_tmp)?));
    let mut members = Vec::with_capacity(sources.len());
    for source in &sources {
        let file = match File::open(&source.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && source.name.starts_with("audit/segment-") => {
                bail!("audit retention deleted {} while the backup ran: run the backup again", source.path.display())
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", source.path.display())),
        };
        let mut reader = Exact { inner: BufReader::new(file), remaining: source.size, hash: Sha256::new() };
        builder.append(&header(&source.name, source.size, mtime)?, &mut reader).with_context(|| format!("archiving {}", source.name))?;
        ensure!(reader.remaining == 0, "{} was shorter than its recorded size", source.name);
        members.push(Member { name: source.name.clone(), size: source.size, sha256: format::hex32(&reader.hash.finish()) });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        clavis_version: env!("CARGO_PKG_VERSION").into(),
        created: rfc3339(copy_started),
        node_id: node_id.clone(),
        root_of_trust: RootOfTrustInfo {
            current_version,
            versions: registry.iter().map(|(v, p)| MasterKeyVersion { version: *v, provider: p.clone() }).collect(),
            rotation,
            audit_key_version,
        },
        database: DatabaseInfo {
            engine: "sqlite".into(),
            method: "VACUUM INTO".into(),
            schema_version: snapshot.schema_version,
            snapshot_started: rfc3339(snapshot_started),
            snapshot_finished: rfc3339(snapshot_finished),
        },
        audit: AuditInfo {
            first_segment: audit.first_segment,
            segments: audit.segments,
            last_seq: audit.last_seq,
            head_seq: audit.head_seq,
            settle_ms: args.audit_settle_ms,
            copy_started: rfc3339(copy_started),
        },
        members,
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest)?;
    builder.append(&header(MANIFEST, manifest_bytes.len() as u64, mtime)?, manifest_bytes.as_slice())?;
    let file = builder.into_inner()?.into_inner().map_err(|e| e.into_error()).context("writing the archive")?;
    file.sync_all().context("syncing the archive")?;
    let size = file.metadata()?.len();
    drop(file);
    // Renamed only when complete and durable: FILE is a whole backup or absent.
    std::fs::rename(&archive_tmp, &args.out).with_context(|| format!("renaming the archive to {}", args.out.display()))?;
    sync_dir(&parent)?;
    drop(staging);

    println!(
        "backup written to {} ({size} bytes, mode 0600): database snapshot (VACUUM INTO, schema version {}), \
         audit log up to record {} in {} segments (HEAD at record {}){}",
        args.out.display(),
        manifest.database.schema_version,
        manifest.audit.last_seq,
        manifest.audit.segments,
        manifest.audit.head_seq,
        node_id.map(|n| format!(", node {n}")).unwrap_or_default(),
    );
    println!(
        "not in the backup: the master key ({}). Keep it apart from this archive: whoever holds both can decrypt every key.",
        describe_versions(&manifest.root_of_trust.versions)
    );
    Ok(())
}

/// A tar header for a regular file of `size` bytes, mode 0600, owned by nobody in particular.
fn header(name: &str, size: u64, mtime: u64) -> anyhow::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).with_context(|| format!("naming {name} in the archive"))?;
    h.set_size(size);
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

fn describe_versions(versions: &[MasterKeyVersion]) -> String {
    versions
        .iter()
        .map(|v| match v.provider.as_str() {
            "file" => format!("version {}: the key file {}", v.version, key_file_name(v.version)),
            "shamir" => format!("version {}: the Shamir shares", v.version),
            "pkcs11" => format!("version {}: the HSM key", v.version),
            other => format!("version {}: provider {other}", v.version),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn key_file_name(version: u32) -> String {
    crate::root::key_file_path(Path::new(""), version).display().to_string()
}

/// Where a segment's copy starts in the chain: the sequence number and MAC of the record before
/// its first.
#[derive(Debug, Clone, Copy)]
struct ChainAt {
    seq: u64,
    mac: Hash,
}

/// Reads HEAD until two reads in a row are the same and parse. The server rewrites HEAD in
/// place after every commit, and a read racing that write can return part of each version.
fn read_head_stable(dir: &Path) -> anyhow::Result<(Vec<u8>, format::Head)> {
    let path = dir.join("HEAD");
    let mut last: Option<Vec<u8>> = None;
    for _ in 0..1000 {
        let now = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        if last.as_ref() == Some(&now) {
            let head: format::Head = std::str::from_utf8(&now)
                .ok()
                .and_then(|t| serde_json::from_str(t.trim()).ok())
                .with_context(|| format!("{} is malformed (run clavis audit verify)", path.display()))?;
            if format::parse_hash(&head.hash).is_some() && format::parse_hash(&head.mac).is_some() {
                return Ok((now, head));
            }
            bail!("{} is malformed (run clavis audit verify)", path.display());
        }
        last = Some(now);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    bail!("{} changed on every read for a second", path.display())
}

/// The checkpoint that ends a closed segment (its last line).
fn closing_checkpoint(path: &Path, index: u64, len: u64) -> anyhow::Result<ChainAt> {
    let mut f = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let start = len.saturating_sub(4096);
    f.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    f.take(len - start).read_to_end(&mut tail)?;
    let line = tail.strip_suffix(b"\n").and_then(|body| match body.iter().rposition(|b| *b == b'\n') {
        Some(p) => Some(&body[p + 1..]),
        None if start == 0 => Some(body),
        None => None,
    });
    match line.and_then(|l| serde_json::from_slice::<CheckpointLine>(l).ok()) {
        Some(cp) if cp.checkpoint.segment == index => {
            let mac = format::parse_hash(&cp.checkpoint.hash).context("malformed checkpoint hash")?;
            Ok(ChainAt { seq: cp.checkpoint.seq, mac })
        }
        _ => bail!("{} is closed (a later segment exists) but does not end with its checkpoint: run clavis audit verify", path.display()),
    }
}

/// The MAC of record `seq` in the segment at `path`, if it holds it.
fn record_mac_in(path: &Path, seq: u64) -> anyhow::Result<Option<Hash>> {
    let reader = BufReader::new(File::open(path).with_context(|| format!("reading {}", path.display()))?);
    for line in reader.split(b'\n') {
        let line = line?;
        if let Ok(rec) = serde_json::from_slice::<RecordLine<'_>>(&line)
            && rec.seq == seq
        {
            return Ok(format::parse_hash(&rec.mac));
        }
    }
    Ok(None)
}

/// Copies `src` into `dst` up to its first zero byte: the live segment is preallocated with
/// zeros ahead of its last record, and records never contain one. Returns the bytes copied.
fn copy_until_zero(src: &Path, dst: &Path) -> anyhow::Result<u64> {
    let mut input = File::open(src).with_context(|| format!("reading {}", src.display()))?;
    let mut output = BufWriter::new(private_file(dst)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let end = buf[..n].iter().position(|b| *b == 0).unwrap_or(n);
        output.write_all(&buf[..end])?;
        copied += end as u64;
        if end < n {
            break;
        }
    }
    output.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(copied)
}

/// Cuts the staged copy of the live segment after its last complete line that continues the
/// chain from `from`: a line cut off by the end of what was written, a half-written batch, or
/// records of a batch the server cut back and wrote again while it was read do not. Returns the
/// chain position at the cut and whether `head` (seq and MAC) was among the kept records.
fn cut_live_copy(path: &Path, index: u64, from: ChainAt, head: (u64, Hash)) -> anyhow::Result<(ChainAt, bool, u64)> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut at = from;
    let mut keep = 0u64;
    let mut head_found = head.0 == from.seq && head.1 == from.mac;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        let text = &line[..n - 1];
        if let Ok(cp) = serde_json::from_slice::<CheckpointLine>(text) {
            if cp.checkpoint.segment == index && cp.checkpoint.seq == at.seq && format::parse_hash(&cp.checkpoint.hash) == Some(at.mac) {
                keep += n as u64;
            }
            // Nothing follows a checkpoint.
            break;
        }
        let Ok(rec) = serde_json::from_slice::<RecordLine<'_>>(text) else { break };
        let (Some(prev), Some(mac)) = (format::parse_hash(&rec.prev), format::parse_hash(&rec.mac)) else { break };
        if rec.seq != at.seq + 1 || prev != at.mac {
            break;
        }
        at = ChainAt { seq: rec.seq, mac };
        keep += n as u64;
        head_found |= at.seq == head.0 && at.mac == head.1;
    }
    drop(reader);
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(keep)?;
    f.sync_all()?;
    Ok((at, head_found, keep))
}

/// Copies the audit log as far as it is written (see the module documentation), in the order
/// `clavis audit verify` reads a live log: HEAD, the listing of the segments, then `ANCHOR`
/// (retention writes the anchor before it deletes the segments below it, so a listing that
/// misses deleted segments is read with the anchor that allowed their deletion). The closed
/// segments from the anchor's on are archived from the data directory; the live one is staged
/// in `staging` and cut at its last record that continues the chain.
fn copy_audit(dir: &Path, staging: &Path) -> anyhow::Result<AuditCopy> {
    let (head_bytes, head) = read_head_stable(dir)?;
    let head_hash = format::parse_hash(&head.hash).context("malformed HEAD")?;
    let mut indices = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        if let Some(i) = e?.file_name().to_str().and_then(format::parse_segment_name) {
            indices.push(i);
        }
    }
    indices.sort_unstable();
    let anchor_bytes = match std::fs::read(dir.join(ANCHOR_FILE)) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.join(ANCHOR_FILE).display())),
    };
    let mut at = ChainAt { seq: 0, mac: [0u8; 32] };
    let mut first = 1;
    if let Some(bytes) = &anchor_bytes {
        // The anchor has HEAD's fields. Its MAC needs the audit key, which a backup does not
        // unseal: `clavis audit verify` checks it on the restored copy. Here it says where the
        // copy starts: the first kept segment, and the chain position it continues from.
        let anchor: format::Head = std::str::from_utf8(bytes)
            .ok()
            .and_then(|t| serde_json::from_str(t.trim()).ok())
            .with_context(|| format!("{} is malformed (run clavis audit verify)", dir.join(ANCHOR_FILE).display()))?;
        at = ChainAt { seq: anchor.seq, mac: format::parse_hash(&anchor.hash).context("malformed ANCHOR")? };
        first = anchor.segment;
        // Segments below the anchor are deleted (an interrupted retention pass may have left
        // some for its next pass): they are not copied.
        indices.retain(|i| *i >= first);
        ensure!(
            indices.first() == Some(&first),
            "ANCHOR names segment {first} as the first kept, but it is missing: run clavis audit verify"
        );
    }
    for (n, i) in indices.iter().enumerate() {
        ensure!(*i == first + n as u64, "segment {} of the audit log is missing: run clavis audit verify", first + n as u64);
    }
    let last = indices.last().copied();

    let mut sources = Vec::new();
    if let Some(bytes) = anchor_bytes {
        let path = staging.join(ANCHOR_FILE);
        private_file(&path)?.write_all(&bytes)?;
        sources.push(Source { name: format!("audit/{ANCHOR_FILE}"), path, size: bytes.len() as u64 });
    }
    // HEAD's record is looked up by its sequence number in the segment whose range holds it.
    let mut head_found = head.seq == 0;
    for &index in indices.iter().filter(|i| Some(**i) != last) {
        let name = format::segment_name(index);
        let path = dir.join(&name);
        // A segment before the last is closed: cut to its exact length after its checkpoint,
        // and never written again (retention may delete it: the archive then says so).
        let size = std::fs::metadata(&path)?.len();
        let end = closing_checkpoint(&path, index, size)?;
        if head.seq > at.seq && head.seq <= end.seq {
            head_found = record_mac_in(&path, head.seq)? == Some(head_hash);
        }
        at = end;
        sources.push(Source { name: format!("audit/{name}"), path, size });
    }
    if let Some(index) = last {
        let name = format::segment_name(index);
        let staged = staging.join(&name);
        copy_until_zero(&dir.join(&name), &staged)?;
        let (end, found, size) = cut_live_copy(&staged, index, at, (head.seq, head_hash))?;
        at = end;
        head_found |= found;
        sources.push(Source { name: format!("audit/{name}"), path: staged, size });
    }
    if !head_found {
        bail!(
            "HEAD names record {} (segment {}), which the copy of the log does not hold as HEAD describes it: \
             run the backup again, and if this persists, clavis audit verify",
            head.seq,
            head.segment
        );
    }
    let head_path = staging.join("HEAD");
    private_file(&head_path)?.write_all(&head_bytes)?;
    sources.push(Source { name: "audit/HEAD".into(), path: head_path, size: head_bytes.len() as u64 });
    Ok(AuditCopy { sources, first_segment: first, segments: indices.len() as u64, last_seq: at.seq, head_seq: head.seq })
}

/// What [`read_archive`] found.
struct ArchiveContents {
    manifest: Manifest,
}

/// Reads the archive at `path` member by member, in one pass: each name is checked against what
/// a backup holds, each member's data is hashed while `store` consumes it (and then to its end),
/// the manifest (the last member) is parsed, and every member is checked against it.
fn read_archive(
    path: &Path,
    store: &mut dyn FnMut(MemberKind, &str, &mut dyn Read) -> anyhow::Result<()>,
) -> anyhow::Result<ArchiveContents> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut seen: Vec<Member> = Vec::new();
    let mut names = std::collections::HashSet::new();
    let mut manifest: Option<Manifest> = None;
    for entry in archive.entries().context("reading the archive")? {
        let mut entry = entry.context("reading the archive (it is damaged or not a tar file)")?;
        ensure!(manifest.is_none(), "the archive has members after its manifest {MANIFEST}");
        ensure!(seen.len() < MAX_MEMBERS, "the archive has more than {MAX_MEMBERS} members");
        let name = entry.path().context("a member's name")?.to_str().context("a member's name is not UTF-8")?.to_owned();
        ensure!(
            entry.header().entry_type() == tar::EntryType::Regular,
            "the archive member {name:?} is not a regular file (a backup holds only regular files)"
        );
        ensure!(names.insert(name.clone()), "the archive holds {name:?} twice");
        let size = entry.header().size().context("a member's size")?;
        if name == MANIFEST {
            ensure!(size <= MAX_MANIFEST_BYTES, "the manifest is larger than {MAX_MANIFEST_BYTES} bytes");
            let mut bytes = Vec::new();
            (&mut entry).take(MAX_MANIFEST_BYTES).read_to_end(&mut bytes)?;
            let parsed: Manifest = serde_json::from_slice(&bytes).context("the manifest is malformed")?;
            ensure!(parsed.format == FORMAT, "the manifest's format is {:?}, not {FORMAT:?}", parsed.format);
            manifest = Some(parsed);
            continue;
        }
        let kind = MemberKind::parse(&name)?;
        let mut reader = Hashing { inner: &mut entry, len: 0, hash: Sha256::new() };
        store(kind, &name, &mut reader).with_context(|| format!("restoring {name}"))?;
        std::io::copy(&mut reader, &mut std::io::sink())?;
        ensure!(reader.len == size, "{name}: the archive ends inside it");
        seen.push(Member { name, size, sha256: format::hex32(&reader.hash.finish()) });
    }
    let manifest = manifest.context("the archive has no manifest (clavis-backup.json): it is incomplete or not a Clavis backup")?;
    ensure!(
        manifest.members.len() == seen.len(),
        "the archive holds {} members but its manifest lists {}",
        seen.len(),
        manifest.members.len()
    );
    for (listed, found) in manifest.members.iter().zip(&seen) {
        ensure!(
            listed.name == found.name,
            "the archive's members are not the ones its manifest lists ({} where it lists {})",
            found.name,
            listed.name
        );
        ensure!(listed.size == found.size, "{}: {} bytes, but the manifest says {}", found.name, found.size, listed.size);
        ensure!(
            listed.sha256 == found.sha256,
            "{}: its SHA-256 does not match the manifest: the archive is damaged or was altered",
            found.name
        );
    }
    let kinds: Vec<MemberKind> = seen.iter().map(|m| MemberKind::parse(&m.name)).collect::<anyhow::Result<_>>()?;
    for required in [MemberKind::Database, MemberKind::AuditKey, MemberKind::Head] {
        ensure!(kinds.contains(&required), "the archive lacks {required:?}: it is not a whole Clavis backup");
    }
    let segments: Vec<u64> = kinds.iter().filter_map(|k| if let MemberKind::Segment(i) = k { Some(*i) } else { None }).collect();
    // From 1, or from the segment the anchor names once retention deleted earlier ones.
    let first = segments.first().copied().unwrap_or(1);
    ensure!(
        segments.iter().enumerate().all(|(n, i)| *i == first + n as u64) && (first == 1 || kinds.contains(&MemberKind::Anchor)),
        "the archive's audit segments are not consecutive from segment 1 (or from the one its ANCHOR names)"
    );
    Ok(ArchiveContents { manifest })
}

/// What a restore created, removed again if it fails.
struct Undo {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    armed: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for f in self.files.iter().rev() {
            let _ = std::fs::remove_file(f);
        }
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Runs `clavis operator restore`.
pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let dir = &args.data_dir;
    let mut undo = Undo { files: Vec::new(), dirs: Vec::new(), armed: true };
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        Ok(meta) if !meta.is_dir() => bail!("{} exists and is not a directory", dir.display()),
        Ok(_) => {
            if std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?.next().is_some() {
                bail!(
                    "{} is not empty: restore only into a new or empty directory (a restore never mixes a backup with other data)",
                    dir.display()
                );
            }
        }
    }

    // First pass: every member against the manifest, writing nothing.
    read_archive(&args.from, &mut |_, _, _| Ok(())).with_context(|| format!("checking {}", args.from.display()))?;

    // Second pass: write the members, checking them again (the file could have changed).
    if std::fs::symlink_metadata(dir).is_err() {
        private_dir(dir)?;
        undo.dirs.push(dir.clone());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", dir.display()))?;
    }
    let audit_dir = dir.join(crate::serve::AUDIT_DIR);
    let contents = {
        let undo = &mut undo;
        read_archive(&args.from, &mut |kind, name, data| {
            if kind.in_audit_dir() && !undo.dirs.contains(&audit_dir) {
                private_dir(&audit_dir)?;
                undo.dirs.push(audit_dir.clone());
            }
            let path = dir.join(name);
            let mut out = private_file(&path)?;
            undo.files.push(path);
            std::io::copy(data, &mut out)?;
            out.sync_all()?;
            Ok(())
        })
        .with_context(|| format!("restoring {}", args.from.display()))?
    };
    if undo.dirs.contains(&audit_dir) {
        sync_dir(&audit_dir)?;
    }
    sync_dir(dir)?;
    undo.armed = false;

    let m = &contents.manifest;
    println!(
        "restored into {}: the backup of {} made {} by clavis {} (database schema version {}, audit log up to record {} in {} segments)",
        dir.display(),
        m.node_id.as_deref().unwrap_or("a node"),
        m.created,
        m.clavis_version,
        m.database.schema_version,
        m.audit.last_seq,
        m.audit.segments,
    );
    println!(
        "The master key is never in a backup. Before `clavis serve --data-dir {}`, supply the one this backup was made under:",
        dir.display()
    );
    for line in supply_instructions(&m.root_of_trust, dir) {
        println!("  - {line}");
    }
    println!("Then `clavis audit verify --data-dir {}` checks the restored audit log.", dir.display());
    Ok(())
}

/// What the operator must supply: the current master-key version, the one the audit key is
/// sealed under, and while a rotation is unfinished every version (docs/operations.md).
fn supply_instructions(root: &RootOfTrustInfo, dir: &Path) -> Vec<String> {
    let needed = |v: u32| root.rotation != "done" || v == root.current_version || v == root.audit_key_version;
    let mut lines = Vec::new();
    for v in root.versions.iter().filter(|v| needed(v.version)) {
        lines.push(match v.provider.as_str() {
            "file" => format!(
                "master-key version {} (file): copy {} from the original data directory (or where it is kept) to {}, mode 0600",
                v.version,
                key_file_name(v.version),
                crate::root::key_file_path(dir, v.version).display()
            ),
            "shamir" => format!(
                "master-key version {} (shamir): {} is restored; start with --root-of-trust shamir and unseal with the shares of \
                 that key (clavis operator unseal); clavis audit verify needs them too (--share-file)",
                v.version, SHAMIR_CONFIG_FILE
            ),
            "pkcs11" => format!(
                "master-key version {} (pkcs11): start with --root-of-trust pkcs11 and the options of the HSM token that holds it \
                 (label --pkcs11-key-label for version 1, LABEL-vN after); give the audit commands the same options",
                v.version
            ),
            other => format!("master-key version {} (provider {other})", v.version),
        });
    }
    let unneeded: Vec<String> = root.versions.iter().filter(|v| !needed(v.version)).map(|v| v.version.to_string()).collect();
    if !unneeded.is_empty() {
        lines.push(format!(
            "not needed: master-key version(s) {} (a completed rotation resealed everything under a later one)",
            unneeded.join(", ")
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failure should stop the test loudly.

    use super::*;

    #[test]
    fn member_names_are_an_allowlist() {
        assert_eq!(MemberKind::parse("clavis.db").unwrap(), MemberKind::Database);
        assert_eq!(MemberKind::parse("audit/segment-00000012.jsonl").unwrap(), MemberKind::Segment(12));
        assert_eq!(MemberKind::parse("audit/HEAD").unwrap(), MemberKind::Head);
        for bad in [
            "master.key",
            "master-v2.key",
            "audit/../master.key",
            "/etc/passwd",
            "../clavis.db",
            "audit/segment-12.jsonl",
            "audit/segment-00000000.jsonl",
            "audit/torn-00000001-0.bin",
            "admin-credentials",
            "audit/",
        ] {
            assert!(MemberKind::parse(bad).is_err(), "{bad} must be refused");
        }
        assert!(MemberKind::parse("master.key").unwrap_err().to_string().contains("master key"));
    }

    #[test]
    fn rfc3339_formats_utc() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_764_473_696_789);
        assert_eq!(rfc3339(t), "2025-11-30T03:34:56.789Z");
    }

    fn record(seq: u64, prev: &Hash, mac: &Hash) -> String {
        format!("{{\"seq\":{seq},\"prev\":\"{}\",\"event\":{{}},\"mac\":\"{}\"}}\n", format::hex32(prev), format::hex32(mac))
    }

    /// The live copy keeps the records that continue the chain and cuts the rest: a line cut
    /// off by the end of what was written, and a record that does not follow its predecessor
    /// (a batch the server cut back and wrote again while it was read).
    #[test]
    fn live_copy_is_cut_after_the_last_record_that_continues_the_chain() {
        let dir = std::env::temp_dir().join(format!("clavis-backup-cut-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("segment-00000001.jsonl");
        let (z, a, b, c) = ([0u8; 32], [1u8; 32], [2u8; 32], [3u8; 32]);
        let good = format!("{}{}", record(1, &z, &a), record(2, &a, &b));
        let bad = record(3, &c, &c);
        std::fs::write(&path, format!("{good}{bad}{{\"seq\":4,\"pr")).unwrap();
        let (at, head_found, keep) = cut_live_copy(&path, 1, ChainAt { seq: 0, mac: z }, (2, b)).unwrap();
        assert_eq!((at.seq, at.mac, head_found, keep), (2, b, true, good.len() as u64));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), good);
        // HEAD naming a record with another MAC than the copy's is not found.
        let (_, head_found, _) = cut_live_copy(&path, 1, ChainAt { seq: 0, mac: z }, (2, c)).unwrap();
        assert!(!head_found);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
