//! The writer: the live segment and the chain. A committer task takes every record already queued,
//! writes them with one `pwrite`, makes them durable with one `fdatasync` (group commit),
//! rewrites `HEAD`, and only then answers every waiter.
//!
//! The live segment is preallocated: zero bytes are written (and synced) ahead of the last
//! record in chunks, so a commit overwrites bytes that already exist and its `fdatasync` has no
//! file size or block allocation to persist, only data (on this project's test machine about a
//! quarter of an appending `fdatasync`'s latency). Readers stop at the zeros of the live
//! segment; a closed segment is cut to its exact length after its checkpoint. On any failure nothing in the batch is acknowledged, the
//! segment is cut back to its last durable length, and the next batch starts afresh, so the
//! service recovers by itself once the disk is writable again.
//!
//! A maintenance thread (when a maximum segment age or retention is set) closes a live segment
//! that has grown too old even while no request comes, and runs retention ([`crate::retention`])
//! after each rotation and at least once a minute.

use crate::format::{self, Hash};
use crate::syslog::SyslogSink;
use crate::{AuditError, io, retention};
use clavis_core::Clock;
use clavis_core::audit::{AuditFailure, AuditSink, LookupQuery};
use clavis_crypto::SecretBytes;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Where committed records are also streamed (for shipping to a SIEM). Best effort: a stream
/// failure is logged and never fails a request; the local log is the record of truth.
#[derive(Debug, Clone)]
pub enum StreamSink {
    /// Standard output.
    Stdout,
    /// Appended to a file (or a named pipe).
    File(PathBuf),
}

/// Audit log settings.
#[derive(Clone)]
pub struct AuditConfig {
    /// The audit directory (`DATA_DIR/audit`).
    pub dir: PathBuf,
    /// A segment is closed once it holds at least this many bytes.
    pub segment_bytes: u64,
    /// Optional streaming copy of every committed record.
    pub stream: Option<StreamSink>,
    /// Optional copy of every committed record for a syslog collector (beside `stream`).
    pub syslog: Option<SyslogSink>,
    /// When a record counts as committed (and its request may be answered).
    pub durability: Durability,
    /// A segment is also closed once its first record is this old (`None`: by size only): at
    /// the next commit, or by the maintenance thread's check if no request comes.
    pub segment_max_age: Option<Duration>,
    /// Closed segments whose newest record is older than this are deleted (`None`: every
    /// segment is kept).
    pub retain: Option<Duration>,
    /// The clock that dates segments for the maximum age and retention: the service's clock,
    /// so that a test clock (`--dangerous-test-clock`) moves the audit log's time too.
    pub clock: Arc<dyn Clock>,
    /// Whether a thread runs maintenance (age rotation, retention) by itself, once a minute and
    /// after each rotation (`true`, the default). Without it nothing runs maintenance but
    /// [`AuditLog::run_maintenance`]: for tools and tests that must know when passes happen.
    pub maintenance_thread: bool,
}

impl AuditConfig {
    /// The defaults for `dir`: 64 MiB segments closed by size only, kept forever, no stream,
    /// `fsync` durability, the system clock.
    pub fn new(dir: PathBuf) -> AuditConfig {
        AuditConfig {
            dir,
            segment_bytes: 64 * 1024 * 1024,
            stream: None,
            syslog: None,
            durability: Durability::default(),
            segment_max_age: None,
            retain: None,
            clock: Arc::new(clavis_core::SystemClock),
            maintenance_thread: true,
        }
    }
}

impl std::fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditConfig")
            .field("dir", &self.dir)
            .field("segment_bytes", &self.segment_bytes)
            .field("stream", &self.stream)
            .field("syslog", &self.syslog)
            .field("durability", &self.durability)
            .field("segment_max_age", &self.segment_max_age)
            .field("retain", &self.retain)
            .finish_non_exhaustive()
    }
}

/// When a record counts as committed, so that its request may be answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// After `fdatasync`: the record survives a crash of Clavis and a power loss.
    #[default]
    Fsync,
    /// After `pwrite` (the operating system holds it): the record survives a crash of Clavis
    /// but not a power loss. The request's own task writes it (no hand-off to another thread);
    /// a background `fdatasync` follows within [`SYNC_INTERVAL`] plus one sync's latency; if it
    /// fails, every later request is refused until restart. HEAD is rewritten only after that
    /// sync, so it never leads the durable log.
    Write,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Durability, String> {
        match s {
            "fsync" => Ok(Durability::Fsync),
            "write" => Ok(Durability::Write),
            other => Err(format!("audit durability must be `fsync` or `write`, not `{other}`")),
        }
    }
}

/// Creates `path` with mode 0600 holding `bytes`, durably.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), AuditError> {
    let mut f = private_options().write(true).create_new(true).open(path).map_err(io(format!("creating {}", path.display())))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io(format!("writing {}", path.display())))?;
    sync_dir(path)
}

fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// Syncs the directory that holds `path` (so that a file's creation, rename or removal is durable).
pub(crate) fn sync_dir(path: &Path) -> Result<(), AuditError> {
    if let Some(parent) = path.parent() {
        File::open(parent).and_then(|d| d.sync_all()).map_err(io(format!("syncing {}", parent.display())))?;
    }
    Ok(())
}

/// The live state of the chain.
struct Writer {
    dir: PathBuf,
    key: SecretBytes,
    /// `key` prepared for record MACs.
    record_key: clavis_crypto::digest::HmacSha256Key,
    segment_bytes: u64,
    /// The streaming threads' queues (committed batches): the stream sink, the syslog stream.
    streams: Vec<Outlet>,
    /// Index of the live segment.
    segment: u64,
    /// The maximum age of the live segment and the retention, in milliseconds of `clock`.
    segment_max_age_ms: Option<i64>,
    retain_ms: Option<i64>,
    clock: Arc<dyn Clock>,
    /// When the live segment's first record was committed (by `clock`), if it holds records and
    /// a maximum age is set.
    segment_started_ms: i64,
    /// Woken after each rotation, when retention is on (a closed segment may now be deleted).
    maintenance: Option<Arc<Maintenance>>,
    durability: Durability,
    /// Set when a background sync failed after its records were acknowledged (`write`
    /// durability): every later commit fails (closed) until restart.
    failed: Option<String>,
    /// The open live segment, if any (reopened after a failure).
    file: Option<Arc<File>>,
    /// Durable length of the live segment (its records; preallocated zeros follow).
    segment_len: u64,
    /// Bytes of the live segment file that exist on disk (records and preallocated zeros).
    allocated: u64,
    /// Records in the live segment.
    segment_records: u64,
    /// Last committed sequence number and MAC.
    seq: u64,
    prev: Hash,
    /// The open HEAD file.
    head: Option<File>,
}

/// HEAD is always exactly this many bytes (JSON padded with spaces).
const HEAD_BLOCK: usize = 256;

/// Where a segment's durable records end, found without changing the file.
///
/// The durable records of a live segment end at its first zero byte (records never contain
/// one): a batch is written only after every earlier batch is durable, so zeros followed by
/// more data (a "hole") can only be a batch that an unclean stop left half-written, which was
/// never acknowledged. [`Writer::recover`] checks those bytes before it sets them aside.
struct Tail {
    /// The last complete line before the first zero byte.
    line: Option<String>,
    /// Just past that line: where the segment is cut.
    keep: u64,
    /// The bytes from `keep` to the last non-zero byte: a half-written batch, if any.
    torn: Vec<u8>,
    /// The file's length.
    len: u64,
}

fn scan_tail(path: &Path) -> Result<Tail, AuditError> {
    let ctx = format!("reading {}", path.display());
    let mut f = File::open(path).map_err(io(ctx.clone()))?;
    let meta = f.metadata().map_err(io(ctx.clone()))?;
    if !meta.is_file() {
        return Err(AuditError::Inconsistent(format!("{} is not a regular file", path.display())));
    }
    let len = meta.len();
    let data_end = first_zero(&mut f, len).map_err(io(ctx.clone()))?;
    let start = data_end.saturating_sub(1 << 20);
    f.seek(SeekFrom::Start(start)).map_err(io(ctx.clone()))?;
    let mut tail = vec![0u8; usize::try_from(data_end - start).unwrap_or(0)];
    f.read_exact(&mut tail).map_err(io(ctx.clone()))?;
    let complete = match tail.iter().rposition(|b| *b == b'\n') {
        Some(p) => p + 1,
        None if start > 0 => {
            return Err(AuditError::Inconsistent(format!("{}: no end of line in the last MiB before its end", path.display())));
        }
        None => 0,
    };
    let keep = start + complete as u64;
    let written_end = last_nonzero_end(&mut f, len).map_err(io(ctx.clone()))?;
    let mut torn = vec![0u8; usize::try_from(written_end.saturating_sub(keep)).unwrap_or(0)];
    f.seek(SeekFrom::Start(keep)).and_then(|_| f.read_exact(&mut torn)).map_err(io(ctx))?;
    let text = String::from_utf8_lossy(&tail[..complete]);
    Ok(Tail { line: text.lines().last().map(str::to_owned), keep, torn, len })
}

/// Cuts a segment back to `tail.keep`, first copying a half-written batch (already checked) to
/// `torn-<segment>-<offset>.bin` beside it, so nothing is destroyed.
fn cut_tail(path: &Path, tail: &Tail, index: u64) -> Result<(), AuditError> {
    let ctx = format!("cutting {}", path.display());
    let f = OpenOptions::new().write(true).open(path).map_err(io(ctx.clone()))?;
    if !tail.torn.is_empty() {
        let torn = &tail.torn;
        let side = path.with_file_name(format!("torn-{index:08}-{}.bin", tail.keep));
        if !side.exists() {
            write_durably(&side, torn)?;
        }
        tracing::warn!(
            file = %path.display(),
            bytes = torn.len(),
            kept_in = %side.display(),
            "set aside the unacknowledged, half-written last batch of the audit segment (an unclean stop)"
        );
    }
    if tail.keep < tail.len {
        // The torn tail and the preallocated zeros go; the writer preallocates again.
        f.set_len(tail.keep).and_then(|_| f.sync_all()).map_err(io(ctx))?;
    }
    Ok(())
}

/// The offset of the first zero byte among the file's first `len` bytes (`len` if none),
/// reading from the start in blocks.
fn first_zero(f: &mut File, len: u64) -> std::io::Result<u64> {
    const BLOCK: usize = 1 << 20;
    let mut buf = vec![0u8; BLOCK];
    f.seek(SeekFrom::Start(0))?;
    let mut at = 0u64;
    while at < len {
        let n = usize::try_from(len - at).unwrap_or(BLOCK).min(BLOCK);
        f.read_exact(&mut buf[..n])?;
        if let Some(p) = buf[..n].iter().position(|b| *b == 0) {
            return Ok(at + p as u64);
        }
        at += n as u64;
    }
    Ok(len)
}

/// The offset just past the last non-zero byte of the file's first `len` bytes (reading back
/// from the end in blocks).
fn last_nonzero_end(f: &mut File, len: u64) -> std::io::Result<u64> {
    const BLOCK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let n = usize::try_from(end - start).unwrap_or(0);
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(p) = buf[..n].iter().rposition(|b| *b != 0) {
            return Ok(start + p as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The most zero bytes preallocated at a time (bounded by the segment size, so tiny test
/// segments do not write megabytes).
const PREALLOCATE_MAX: u64 = 1 << 20;
const PREALLOCATE_MIN: u64 = 64 * 1024;

/// The indices of the segments in `dir`, in order.
pub(crate) fn segments(dir: &Path) -> Result<Vec<u64>, AuditError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(format!("listing {}", dir.display())))? {
        let e = e.map_err(io("listing audit directory"))?;
        if let Some(i) = e.file_name().to_str().and_then(format::parse_segment_name) {
            out.push(i);
        }
    }
    out.sort_unstable();
    Ok(out)
}

impl Writer {
    fn recover(config: &AuditConfig, key: SecretBytes, maintenance: Option<Arc<Maintenance>>) -> Result<Writer, AuditError> {
        let mut streams = Vec::new();
        if let Some(sink) = config.stream.clone() {
            streams.push(Outlet { name: "stream", tx: start_stream(sink)?, dropped: 0 });
        }
        if let Some(sink) = config.syslog.clone() {
            streams.push(Outlet { name: "syslog stream", tx: crate::syslog::start(sink)?, dropped: 0 });
        }
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1);
        let mut w = Writer {
            dir: config.dir.clone(),
            record_key: format::record_key(&key),
            key,
            segment_bytes: config.segment_bytes.max(1),
            durability: config.durability,
            failed: None,
            streams,
            segment: 1,
            segment_max_age_ms: config.segment_max_age.map(millis),
            retain_ms: config.retain.map(millis),
            clock: config.clock.clone(),
            segment_started_ms: 0,
            maintenance,
            file: None,
            segment_len: 0,
            allocated: 0,
            segment_records: 0,
            seq: 0,
            prev: [0u8; 32],
            head: None,
        };
        // HEAD is read first: it tells a half-written last batch (records after HEAD's) from
        // damage inside acknowledged records, before anything is cut.
        let head = std::fs::read_to_string(w.dir.join("HEAD")).ok().and_then(|text| serde_json::from_str::<format::Head>(&text).ok());
        let mut segs = segments(&w.dir)?;
        while let Some(&last) = segs.last() {
            let path = w.dir.join(format::segment_name(last));
            let tail = scan_tail(&path)?;
            if !tail.torn.is_empty()
                && let Some(problem) = format::unacknowledged_tail_problem(&tail.torn, &w.key, last, head.as_ref().map(|h| h.seq))
            {
                return Err(AuditError::Inconsistent(format!(
                    "{} at offset {}: {problem}; nothing was changed (run `clavis audit verify`)",
                    path.display(),
                    tail.keep
                )));
            }
            cut_tail(&path, &tail, last)?;
            let Some(line) = tail.line else {
                // An empty segment: created, never written. Remove it and look further back.
                std::fs::remove_file(&path).map_err(io(format!("removing empty {}", path.display())))?;
                segs.pop();
                continue;
            };
            if let Ok(cp) = serde_json::from_str::<format::CheckpointLine>(&line) {
                let hash = format::parse_hash(&cp.checkpoint.hash).ok_or_else(|| AuditError::Inconsistent("bad checkpoint hash".into()))?;
                let mac = format::position_mac(&w.key, "checkpoint", last, cp.checkpoint.seq, &hash);
                if format::parse_hash(&cp.mac) != Some(mac) {
                    return Err(AuditError::Inconsistent(format!("checkpoint of {} does not verify", path.display())));
                }
                (w.segment, w.seq, w.prev) = (last + 1, cp.checkpoint.seq, hash);
            } else {
                let rec: format::RecordLine<'_> = serde_json::from_str(&line)
                    .map_err(|e| AuditError::Inconsistent(format!("last line of {} does not parse: {e}", path.display())))?;
                let prev = format::parse_hash(&rec.prev).ok_or_else(|| AuditError::Inconsistent("bad prev".into()))?;
                let mac = format::record_mac(&w.record_key, rec.seq, &prev, rec.event.get().as_bytes());
                if format::parse_hash(&rec.mac) != Some(mac) {
                    return Err(AuditError::Inconsistent(format!(
                        "the last record of {} does not verify under this data directory's audit key",
                        path.display()
                    )));
                }
                let len = std::fs::metadata(&path).map_err(io("stat segment"))?.len();
                (w.segment, w.seq, w.prev, w.segment_len) = (last, rec.seq, mac, len);
                // The exact count is only needed to decide whether a segment holds records.
                w.segment_records = 1;
                if w.segment_max_age_ms.is_some() {
                    // The live segment's age counts from its first record's time (or from now,
                    // if that cannot be read: the segment then closes later, never early).
                    w.segment_started_ms = retention::first_record_ms(&path).unwrap_or_else(|| w.clock.now_ms());
                }
            }
            break;
        }
        if w.seq == 0 && w.dir.join(format::ANCHOR_FILE).exists() {
            // Retention never deletes the live segment (its own record is there): the chain must
            // not restart at record 1 beside an anchor.
            return Err(AuditError::Inconsistent(format!(
                "{} exists but the log has no record: its segments were removed (run `clavis audit verify`)",
                format::ANCHOR_FILE
            )));
        }
        if let Some(head) = head
            && head.seq > w.seq
        {
            return Err(AuditError::Inconsistent(format!(
                "HEAD records sequence {} but the log ends at {}: records were removed (run `clavis audit verify`)",
                head.seq, w.seq
            )));
        }
        // HEAD exists, whole, before any record is written: a reader of the live log (it reads
        // HEAD first) never finds records and no HEAD, or an empty one.
        match std::fs::symlink_metadata(w.dir.join("HEAD")) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => w.write_head(w.segment, w.seq, &w.prev.clone())?,
            _ => {}
        }
        Ok(w)
    }

    fn open_segment(&mut self) -> Result<&Arc<File>, AuditError> {
        if self.file.is_none() {
            let path = self.dir.join(format::segment_name(self.segment));
            let created = !path.exists();
            let f = private_options()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io(format!("opening {}", path.display())))?;
            if created {
                // The new file's directory entry is durable before any record in it is
                // acknowledged (an fdatasync of the file does not cover its name).
                sync_dir(&path)?;
            }
            let len = f.metadata().map_err(io("stat segment"))?.len();
            if len < self.segment_len {
                return Err(AuditError::Inconsistent(format!("{} is shorter than its committed length", path.display())));
            }
            if len > self.segment_len && f.metadata().is_ok_and(|m| m.is_file()) {
                // Bytes of a failed, unacknowledged batch (or old preallocation): cut them off.
                f.set_len(self.segment_len).map_err(io(format!("truncating {}", path.display())))?;
            }
            self.allocated = self.segment_len;
            self.file = Some(Arc::new(f));
        }
        self.file.as_ref().ok_or_else(|| AuditError::Inconsistent("segment not open".into()))
    }

    /// Makes sure the live segment file has bytes up to `end`: writes zeros ahead in chunks and
    /// syncs them (file size and blocks included), so that commits up to there only overwrite.
    fn preallocate(&mut self, end: u64) -> Result<(), AuditError> {
        if end <= self.allocated {
            return Ok(());
        }
        let chunk = self.segment_bytes.clamp(PREALLOCATE_MIN, PREALLOCATE_MAX);
        let new_end = end.max(self.allocated + chunk);
        let from = self.allocated;
        let f = self.open_segment()?;
        // One zero-filled block, reused (allocating a fresh megabyte of zeros each time costs
        // page faults on every chunk).
        static ZEROS: [u8; 64 * 1024] = [0u8; 64 * 1024];
        let mut at = from;
        while at < new_end {
            let n = usize::try_from(new_end - at).unwrap_or(usize::MAX).min(ZEROS.len());
            write_at(f, &ZEROS[..n], at).map_err(io("preallocating the audit segment"))?;
            at += n as u64;
        }
        f.sync_data().map_err(io("preallocating the audit segment"))?;
        self.allocated = new_end;
        Ok(())
    }

    /// Closes the live segment with a checkpoint once it is full or too old.
    fn maybe_rotate(&mut self) -> Result<(), AuditError> {
        if self.segment_records == 0 || (self.segment_len < self.segment_bytes && !self.too_old()) {
            return Ok(());
        }
        self.close_segment()
    }

    /// True when the live segment's first record is older than the maximum age.
    fn too_old(&self) -> bool {
        self.segment_max_age_ms.is_some_and(|max| self.clock.now_ms().saturating_sub(self.segment_started_ms) >= max)
    }

    /// The maintenance thread's check: closes the live segment if it holds records and is too
    /// old, so that an idle log rotates too.
    fn rotate_if_old(&mut self) -> Result<(), AuditError> {
        if let Some(failure) = &self.failed {
            return Err(AuditError::Inconsistent(failure.clone()));
        }
        if self.segment_records > 0 && self.too_old() {
            self.close_segment()?;
        }
        Ok(())
    }

    /// Closes the live segment with its checkpoint; the next commit starts the next segment.
    fn close_segment(&mut self) -> Result<(), AuditError> {
        let line = format::checkpoint_line(&self.key, self.segment, self.seq, &self.prev);
        let end = self.segment_len + line.len() as u64;
        let at = self.segment_len;
        self.open_segment()?;
        self.preallocate(end)?;
        let f = self.open_segment()?;
        // The closed segment ends exactly at its checkpoint: no preallocated zeros remain.
        write_at(f, line.as_bytes(), at).and_then(|_| f.set_len(end)).and_then(|_| f.sync_all()).map_err(io("writing checkpoint"))?;
        self.file = None;
        self.segment += 1;
        self.segment_len = 0;
        self.segment_records = 0;
        if self.retain_ms.is_some()
            && let Some(m) = &self.maintenance
        {
            m.signal(|s| s.due = true);
        }
        Ok(())
    }

    /// Commits retention's record durably (whatever the durability setting: the anchor that
    /// follows names it), then writes the anchor. Returns what the syncer should pin in HEAD.
    fn record_retention(&mut self, event: Vec<u8>, anchor: &format::Anchor) -> Result<Option<Unsynced>, AuditError> {
        let unsynced = self.commit(&[event])?;
        if let Some(u) = &unsynced {
            if let Err(e) = u.file.sync_data() {
                // Records written before this one may be lost as well: fail closed, as the syncer.
                self.failed.get_or_insert_with(|| format!("an audit sync failed ({e}); restart Clavis to recover the log"));
                return Err(AuditError::Io { context: "syncing the audit log".into(), source: e });
            }
            self.write_head(u.segment, u.seq, &u.prev)?;
        }
        retention::write_anchor(&self.dir, &self.key, anchor)?;
        Ok(unsynced)
    }

    /// Writes `batch` after the last committed record. With `fsync` durability it is durable
    /// and HEAD rewritten on return; with `write` it is written to the operating system, and
    /// the returned [`Unsynced`] is for the syncer to make durable and pin in HEAD.
    fn commit(&mut self, batch: &[Vec<u8>]) -> Result<Option<Unsynced>, AuditError> {
        let started = std::time::Instant::now();
        let result = self.commit_batch(batch);
        let m = &clavis_metrics::METRICS;
        match &result {
            Ok(_) => m.audit_commit_seconds.observe(started.elapsed().as_secs_f64()),
            Err(_) => {
                m.audit_failures.inc();
            }
        }
        result
    }

    fn commit_batch(&mut self, batch: &[Vec<u8>]) -> Result<Option<Unsynced>, AuditError> {
        if let Some(failure) = &self.failed {
            return Err(AuditError::Inconsistent(failure.clone()));
        }
        self.maybe_rotate()?;
        let first_in_segment = self.segment_records == 0;
        let mut buf = Vec::with_capacity(batch.iter().map(|e| e.len() + 220).sum());
        let (mut seq, mut prev) = (self.seq, self.prev);
        for event in batch {
            seq += 1;
            prev = format::write_record(&mut buf, &self.record_key, seq, &prev, event);
        }
        let durable_len = self.segment_len;
        let sync = self.durability == Durability::Fsync;
        self.open_segment()?;
        // Preallocation saves the fsync path a size update per commit; with `write`
        // durability the background sync persists the size and appending is cheaper.
        if sync && let Err(e) = self.preallocate(durable_len + buf.len() as u64) {
            self.file = None;
            return Err(e);
        }
        let f = self.open_segment()?.clone();
        if let Err(e) = write_at(&f, &buf, durable_len).and_then(|_| if sync { f.sync_data() } else { Ok(()) }) {
            // Cut back to the last durable record and reopen next time: nothing of this batch
            // is acknowledged, and the chain continues from the last durable record.
            let _ = f.set_len(durable_len);
            self.file = None;
            return Err(AuditError::Io { context: format!("appending to {}", format::segment_name(self.segment)), source: e });
        }
        clavis_metrics::METRICS.audit_bytes.inc_by(buf.len() as u64);
        clavis_metrics::METRICS.audit_batch_records.observe(batch.len() as f64);
        self.segment_len += buf.len() as u64;
        // Without preallocation (`write` durability) the write extended the file itself.
        self.allocated = self.allocated.max(self.segment_len);
        self.segment_records += batch.len() as u64;
        if first_in_segment && self.segment_max_age_ms.is_some() {
            self.segment_started_ms = self.clock.now_ms();
        }
        (self.seq, self.prev) = (seq, prev);
        self.stream_out(&buf);
        if sync {
            self.write_head(self.segment, seq, &prev)?;
            return Ok(None);
        }
        Ok(Some(Unsynced { file: f, segment: self.segment, seq, prev }))
    }

    /// Rewrites HEAD in place: one `pwrite` of a fixed-size block at offset 0 (smaller than a
    /// disk sector, so it is not torn on disk; a reader racing the write may still see part of
    /// each version, and reads again). Not fsynced: after a crash HEAD may lag the durable
    /// log, never lead it, which is all verification needs. A missing HEAD is created whole
    /// (written aside and renamed into place), never seen empty.
    fn write_head(&mut self, segment: u64, seq: u64, prev: &Hash) -> Result<(), AuditError> {
        let mut content = format::head_content(&self.key, segment, seq, prev).into_bytes();
        // Pad to a fixed size with spaces so a shorter HEAD never leaves old bytes behind.
        content.resize(HEAD_BLOCK, b' ');
        if self.head.is_none() {
            let path = self.dir.join("HEAD");
            match OpenOptions::new().write(true).open(&path) {
                Ok(f) => self.head = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let tmp = self.dir.join("HEAD.tmp");
                    let _ = std::fs::remove_file(&tmp);
                    write_durably(&tmp, &content)?;
                    std::fs::rename(&tmp, &path).map_err(io("creating HEAD"))?;
                    sync_dir(&path)?;
                    self.head = Some(OpenOptions::new().write(true).open(&path).map_err(io("opening HEAD"))?);
                    return Ok(());
                }
                Err(e) => return Err(io("opening HEAD")(e)),
            }
        }
        let f = self.head.as_ref().ok_or_else(|| AuditError::Inconsistent("HEAD not open".into()))?;
        let result = {
            #[cfg(unix)]
            {
                use std::os::unix::fs::FileExt;
                f.write_all_at(&content, 0)
            }
            #[cfg(not(unix))]
            {
                let mut f = f;
                f.seek(SeekFrom::Start(0)).and_then(|_| f.write_all(&content))
            }
        };
        result.map_err(|e| {
            self.head = None;
            AuditError::Io { context: "writing HEAD".into(), source: e }
        })
    }

    /// Hands a committed batch to the streaming thread without waiting: a slow or blocked
    /// stream (a full pipe, a stalled SIEM) never holds up the log; batches it has no room for
    /// are dropped from the stream (the local log keeps them) and counted in a warning.
    fn stream_out(&mut self, lines: &[u8]) {
        if self.streams.is_empty() {
            return;
        }
        // One copy of the batch, shared by every stream.
        let batch: Arc<[u8]> = Arc::from(lines);
        self.streams.retain_mut(|outlet| outlet.send(&batch));
    }
}

/// One streaming thread's queue of committed batches.
struct Outlet {
    /// What the warnings call it.
    name: &'static str,
    tx: std::sync::mpsc::SyncSender<Arc<[u8]>>,
    /// Batches the queue had no room for since the last warning.
    dropped: u64,
}

impl Outlet {
    /// Queues `batch` without waiting; false once the thread is gone (the outlet is dropped).
    fn send(&mut self, batch: &Arc<[u8]>) -> bool {
        match self.tx.try_send(batch.clone()) {
            Ok(()) => {
                if self.dropped > 0 {
                    tracing::warn!(
                        batches = self.dropped,
                        "the audit {} fell behind; batches were left out of it (the local audit log has them)",
                        self.name
                    );
                    self.dropped = 0;
                }
                true
            }
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                self.dropped += 1;
                true
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Batches waiting for a streaming thread, at most.
pub(crate) const STREAM_QUEUE: usize = 4096;

/// Starts the thread that copies committed batches to the stream sink. Best effort: a write
/// failure is logged and the file reopened for the next batch.
/// Opens the `file:` stream for appending: created with mode 0600, like the segments (the
/// records hold policies, principals and encryption contexts); an existing regular file that
/// others may read is made private, or the stream is not written.
fn open_stream_file(path: &std::path::Path) -> Option<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = OpenOptions::new().append(true).create(true).mode(0o600).open(path).ok()?;
    let meta = f.metadata().ok()?;
    if meta.is_file()
        && meta.permissions().mode() & 0o077 != 0
        && let Err(e) = f.set_permissions(std::fs::Permissions::from_mode(0o600))
    {
        tracing::warn!(path = %path.display(), error = %e, "the audit stream file is readable by others and cannot be made private; not writing it");
        return None;
    }
    Some(f)
}

fn start_stream(sink: StreamSink) -> Result<std::sync::mpsc::SyncSender<Arc<[u8]>>, AuditError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<[u8]>>(STREAM_QUEUE);
    std::thread::Builder::new()
        .name("clavis-audit-stream".into())
        .spawn(move || {
            let mut file: Option<File> = None;
            for lines in rx {
                let result = match &sink {
                    StreamSink::Stdout => {
                        let mut out = std::io::stdout().lock();
                        out.write_all(&lines).and_then(|_| out.flush())
                    }
                    StreamSink::File(path) => {
                        if file.is_none() {
                            file = open_stream_file(path);
                        }
                        match &mut file {
                            Some(f) => f.write_all(&lines),
                            None => Err(std::io::Error::other("cannot open the audit stream file")),
                        }
                    }
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "audit stream write failed (the local audit log is unaffected)");
                    file = None;
                }
            }
        })
        .map_err(io("starting the audit stream thread"))?;
    Ok(tx)
}

/// `pwrite`: writes all of `buf` at `offset`.
fn write_at(f: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        f.write_all_at(buf, offset)
    }
    #[cfg(not(unix))]
    {
        let mut f = f;
        f.seek(SeekFrom::Start(offset)).and_then(|_| f.write_all(buf))
    }
}

/// One group commit: every record queued while the previous commit was in progress. Its
/// waiters share this (one allocation and one wake-up call per batch, not per record).
#[derive(Default)]
struct Batch {
    /// The commit's outcome, set once before the waiters are woken.
    result: std::sync::OnceLock<Result<(), String>>,
    notify: tokio::sync::Notify,
}

/// Records waiting for the committer, and the batch they will be committed in.
#[derive(Default)]
struct Queue {
    records: Vec<Vec<u8>>,
    batch: Option<Arc<Batch>>,
    /// The committer is waiting on the condition variable (so an append must signal it).
    idle: bool,
    /// Every [`AuditLog`] handle is gone: the committer finishes the queue and exits.
    shutdown: bool,
}

/// Records written to the operating system but not yet synced (`write` durability): the
/// newest such position, for the syncer thread.
struct Unsynced {
    file: Arc<File>,
    segment: u64,
    seq: u64,
    prev: Hash,
}

/// The syncer's work: the newest unsynced position, and whether the log is closing.
#[derive(Default)]
struct SyncQueue {
    pending: Option<Unsynced>,
    /// The syncer waits for work (so a writer must signal it).
    idle: bool,
    shutdown: bool,
}

/// With `write` durability, the syncer starts a sync at most this often.
pub const SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

impl Shared {
    /// Hands the newest written position to the syncer.
    fn hand_to_syncer(&self, unsynced: Unsynced) {
        let mut q = lock(&self.sync);
        q.pending = Some(unsynced);
        if std::mem::take(&mut q.idle) {
            self.sync_wake.notify_one();
        }
    }
}

/// What the committer thread, the syncer thread, the maintenance thread and the handles share.
struct Shared {
    queue: Mutex<Queue>,
    wake: std::sync::Condvar,
    writer: Mutex<Writer>,
    sync: Mutex<SyncQueue>,
    sync_wake: std::sync::Condvar,
    durability: Durability,
    maintenance: Arc<Maintenance>,
    /// Held for writing while retention deletes segments, and for reading by this process's
    /// readers of the log (LookupEvents), so that no segment vanishes under them.
    retention: RwLock<()>,
}

/// The maintenance thread's wake-ups.
#[derive(Default)]
struct Maintenance {
    state: Mutex<MaintenanceState>,
    wake: std::sync::Condvar,
}

#[derive(Default)]
struct MaintenanceState {
    /// A segment was closed: run retention now rather than at the next periodic check.
    due: bool,
    /// Every handle is gone.
    stop: bool,
}

impl Maintenance {
    fn signal(&self, change: impl FnOnce(&mut MaintenanceState)) {
        change(&mut lock(&self.state));
        self.wake.notify_one();
    }
}

/// The longest the maintenance thread waits between two checks.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// The maintenance thread: age rotation of an idle log and retention, once per `interval`
/// and after each rotation, until every handle is gone.
fn maintain_forever(shared: &Shared, interval: Duration) {
    loop {
        {
            let mut m = lock(&shared.maintenance.state);
            if !m.due && !m.stop {
                m = shared.maintenance.wake.wait_timeout(m, interval).unwrap_or_else(std::sync::PoisonError::into_inner).0;
            }
            if m.stop {
                return;
            }
            m.due = false;
        }
        if let Err(e) = maintain(shared) {
            tracing::error!(
                error = %e,
                "audit log maintenance (age rotation, retention) failed; nothing was deleted after the step that failed, and the next check tries again"
            );
        }
    }
}

/// One maintenance pass. Retention's steps, in this order, keep the log verifiable at every
/// moment (docs/formats.md, "Retention"): the segments to delete are verified; the
/// `AuditRetention` record that names them and the new anchor is committed durably; the
/// anchor is written (durably, by rename); then the segments are deleted, oldest first. A
/// crash between two steps leaves a log that verifies, and the next pass finishes the work.
fn maintain(shared: &Shared) -> Result<(), AuditError> {
    let writer = || shared.writer.lock().map_err(|_| AuditError::Inconsistent("the audit writer is poisoned".into()));
    let (dir, key, live, now, retain) = {
        let mut w = writer()?;
        w.rotate_if_old()?;
        let Some(retain) = w.retain_ms else { return Ok(()) };
        (w.dir.clone(), w.key.clone(), w.segment, w.clock.now_ms(), retain)
    };
    let _deleting = shared.retention.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    if lock(&shared.maintenance.state).stop {
        // The log was closed meanwhile (and may be open again elsewhere in this process).
        return Ok(());
    }
    // Closed segments do not change, so they are read and verified without the writer's lock.
    let plan = retention::plan(&dir, &key, live, now.saturating_sub(retain))?;
    let mut doomed = plan.leftovers;
    if let Some(expiry) = &plan.expiry {
        let event = retention::event(expiry, now, retain)?;
        let unsynced = writer()?.record_retention(event, &expiry.anchor)?;
        if let Some(unsynced) = unsynced {
            shared.hand_to_syncer(unsynced);
        }
        doomed.extend(expiry.first..=expiry.last);
    }
    if !doomed.is_empty() {
        retention::delete(&dir, &doomed)?;
    }
    Ok(())
}

/// Dropped with the last [`AuditLog`] handle: stops the committer thread, and the maintenance
/// thread, whose pass in progress (a retention pass deletes segments) is waited for, so that
/// nothing of this log touches its directory once the last handle is gone.
struct Stop(Arc<Shared>, Mutex<Option<std::thread::JoinHandle<()>>>);

impl Drop for Stop {
    fn drop(&mut self) {
        lock(&self.0.queue).shutdown = true;
        self.0.wake.notify_one();
        self.0.maintenance.signal(|s| s.stop = true);
        if self.0.durability == Durability::Write {
            // Records are written inline in this mode: the syncer makes the last ones durable.
            lock(&self.0.sync).shutdown = true;
            self.0.sync_wake.notify_one();
        }
        if let Some(maintainer) = lock(&self.1).take() {
            let _ = maintainer.join();
        }
    }
}

/// The audit log: cheap to clone, safe to share.
///
/// Group commit by a committer thread of its own (not a runtime worker, which its
/// `fdatasync` would block): it takes every queued record as one batch, writes the batch with
/// one `pwrite`, makes it durable with one `fdatasync`, and wakes that batch's waiters. Records
/// that arrive meanwhile form the next batch, so under load the thread goes straight from one
/// commit to the next without sleeping, and a request costs a queue push and one wake-up.
#[derive(Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
    _stop: Arc<Stop>,
    dir: PathBuf,
    key: Arc<SecretBytes>,
}

impl AuditLog {
    /// Opens the log in `config.dir` (creating it), recovers the chain and starts the
    /// committer thread.
    pub fn open(config: AuditConfig, key: SecretBytes) -> Result<AuditLog, AuditError> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&config.dir).map_err(io(format!("creating {}", config.dir.display())))?;
        let reader_key = Arc::new(key.clone());
        let maintenance = Arc::new(Maintenance::default());
        let writer = Writer::recover(&config, key, Some(maintenance.clone()))?;
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            wake: std::sync::Condvar::new(),
            writer: Mutex::new(writer),
            sync: Mutex::default(),
            sync_wake: std::sync::Condvar::new(),
            durability: config.durability,
            maintenance,
            retention: RwLock::new(()),
        });
        let mut maintenance_thread = None;
        if config.maintenance_thread && (config.segment_max_age.is_some() || config.retain.is_some()) {
            // Often enough that an idle segment closes within about half its maximum age after
            // it is due (at least once a minute, at most once a second).
            let interval =
                config.segment_max_age.map_or(MAINTENANCE_INTERVAL, |age| (age / 2).clamp(Duration::from_secs(1), MAINTENANCE_INTERVAL));
            let maintainer = shared.clone();
            maintenance_thread = Some(
                std::thread::Builder::new()
                    .name("clavis-audit-maintenance".into())
                    .spawn(move || maintain_forever(&maintainer, interval))
                    .map_err(io("starting the audit maintenance thread"))?,
            );
        }
        let stop = Arc::new(Stop(shared.clone(), Mutex::new(maintenance_thread)));
        if config.durability == Durability::Write {
            let syncer = shared.clone();
            std::thread::Builder::new()
                .name("clavis-audit-sync".into())
                .spawn(move || sync_forever(&syncer))
                .map_err(io("starting the audit sync thread"))?;
            return Ok(AuditLog { _stop: stop, shared, dir: config.dir, key: reader_key });
        }
        let committer = shared.clone();
        std::thread::Builder::new()
            .name("clavis-audit".into())
            .spawn(move || commit_forever(&committer))
            .map_err(io("starting the audit committer thread"))?;
        Ok(AuditLog { _stop: stop, shared, dir: config.dir, key: reader_key })
    }
}

impl AuditLog {
    /// Runs the maintenance thread's check now (it blocks on the disk): closes the live segment
    /// if it is older than the maximum age, and applies retention. The thread runs it at least
    /// once a minute and after each rotation; tests and tools call it so as not to wait.
    pub fn run_maintenance(&self) -> Result<(), AuditError> {
        maintain(&self.shared)
    }

    /// `write` durability: the caller's task writes its records itself (one `pwrite` under the
    /// writer's lock, which is never held across a sync in this mode) and hands the position
    /// to the syncer. A thread hand-off and wake-up per request would cost more than the write.
    fn write_inline(&self, records: &[Vec<u8>]) -> Result<(), AuditFailure> {
        let unsynced = {
            let mut w = self.shared.writer.lock().map_err(|_| AuditFailure("the audit writer is poisoned".into()))?;
            w.commit(records).map_err(|e| {
                tracing::error!(error = %e, records = records.len(), "audit write failed; failing the request");
                AuditFailure(e.to_string())
            })?
        };
        if let Some(unsynced) = unsynced {
            self.shared.hand_to_syncer(unsynced);
        }
        Ok(())
    }
}

/// The committer thread: commits batch after batch until every handle is dropped.
fn commit_forever(shared: &Shared) {
    loop {
        let (records, batch) = {
            // A poisoned queue is still consistent (nothing under its lock panics midway), and
            // returning would leave waiters asleep: carry on with it.
            let mut q = shared.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            loop {
                if !q.records.is_empty() {
                    break;
                }
                if q.shutdown {
                    // The syncer (if any) makes the last written records durable, then exits.
                    lock(&shared.sync).shutdown = true;
                    shared.sync_wake.notify_one();
                    return;
                }
                q.idle = true;
                q = shared.wake.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            (std::mem::take(&mut q.records), q.batch.take())
        };

        // A panic in a commit fails its batch (and, through the poisoned writer, every later
        // one: fail closed) instead of leaving its waiters asleep forever.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match shared.writer.lock() {
            Ok(mut w) => w.commit(&records).map_err(|e| {
                tracing::error!(error = %e, records = records.len(), "audit commit failed; failing the requests");
                e.to_string()
            }),
            Err(_) => Err("the audit writer is poisoned".to_owned()),
        }))
        .unwrap_or_else(|_| Err("the audit writer failed".to_owned()))
        .map(|unsynced| {
            if let Some(unsynced) = unsynced {
                shared.hand_to_syncer(unsynced);
            }
        });
        if let Some(batch) = batch {
            let _ = batch.result.set(result);
            batch.notify.notify_waiters();
        }
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (nothing under these
/// locks panics midway), so a panic elsewhere never leaves a waiter asleep.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The syncer thread (`write` durability): makes the newest written records durable as soon as
/// they are handed over (one `fdatasync` covers every record written before it), then pins them
/// in HEAD. Under load the syncs run back to back, so a record is durable within about one
/// sync's latency of its response. A failed sync cannot un-answer its requests: it marks the
/// writer failed, so that every later request is refused (fail closed) until restart, whose
/// recovery keeps only what is on disk.
fn sync_forever(shared: &Shared) {
    let mut last_start: Option<std::time::Instant> = None;
    loop {
        let next = {
            let mut q = lock(&shared.sync);
            loop {
                if q.pending.is_some() {
                    // Paced: at most one sync per interval, each covering every record written
                    // before it (under load that is hundreds of records per sync).
                    let wait = last_start.map_or(std::time::Duration::ZERO, |t| SYNC_INTERVAL.saturating_sub(t.elapsed()));
                    if wait.is_zero() || q.shutdown {
                        break q.pending.take();
                    }
                    q = shared.sync_wake.wait_timeout(q, wait).unwrap_or_else(std::sync::PoisonError::into_inner).0;
                    continue;
                }
                if q.shutdown {
                    return;
                }
                q.idle = true;
                q = shared.sync_wake.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        let Some(next) = next else { continue };
        last_start = Some(std::time::Instant::now());
        let synced = next.file.sync_data();
        let mut w = lock(&shared.writer);
        let result = synced
            .map_err(|e| AuditError::Io { context: "syncing the audit log".into(), source: e })
            .and_then(|()| w.write_head(next.segment, next.seq, &next.prev));
        if let Err(e) = result {
            tracing::error!(error = %e, seq = next.seq, "audit sync failed after its records were acknowledged; refusing every request until restart");
            w.failed.get_or_insert_with(|| format!("an earlier audit sync failed ({e}); restart Clavis to recover the log"));
        }
    }
}

#[async_trait::async_trait]
impl AuditSink for AuditLog {
    fn reseal_key(&self, root: &dyn clavis_crypto::seal::RootOfTrust) -> Result<(), AuditFailure> {
        crate::reseal_key(&self.dir, root, &self.key).map_err(|e| AuditFailure(e.to_string()))
    }

    async fn append(&self, record: Vec<u8>) -> Result<(), AuditFailure> {
        self.append_many(vec![record]).await
    }

    /// The records go into the queue together, in order, so they commit in the same batch and
    /// one wait covers them all.
    async fn append_many(&self, records: Vec<Vec<u8>>) -> Result<(), AuditFailure> {
        if self.shared.durability == Durability::Write {
            return self.write_inline(&records);
        }
        let batch = {
            let mut q = self.shared.queue.lock().map_err(|_| AuditFailure("the audit queue is poisoned".into()))?;
            q.records.extend(records);
            if std::mem::take(&mut q.idle) {
                self.shared.wake.notify_one();
            }
            q.batch.get_or_insert_with(Arc::default).clone()
        };
        let notified = batch.notify.notified();
        tokio::pin!(notified);
        loop {
            // Registered before the result is checked, so a wake-up in between is not lost.
            notified.as_mut().enable();
            if let Some(r) = batch.result.get() {
                return r.clone().map_err(AuditFailure);
            }
            notified.as_mut().await;
            notified.set(batch.notify.notified());
        }
    }

    async fn lookup(&self, query: LookupQuery) -> Result<(Vec<serde_json::Value>, Option<u64>), AuditFailure> {
        let (dir, key, shared) = (self.dir.clone(), self.key.clone(), self.shared.clone());
        // Reading the whole log is O(records): fine for an administrator's occasional query;
        // an index arrives when logs grow beyond that.
        tokio::task::spawn_blocking(move || {
            // No segment is deleted by retention while this reads.
            let _reading = shared.retention.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            crate::verify::lookup(&dir, &key, query.before, query.max, query.keep)
        })
        .await
        .map_err(|e| AuditFailure(e.to_string()))?
        .map_err(|e| AuditFailure(format!("the audit log does not verify: {e}")))
    }
}
