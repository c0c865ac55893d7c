//! Verification and export of an audit directory, for `clavis audit verify` and
//! `clavis audit export`. Verification reads every segment in order and names the first
//! place where the log is not exactly what the writer produced.
//!
//! It may run while the log is written (LookupEvents reads the live log): it then verifies the
//! log as far as it had been written when read, HEAD first. A file read while it is written is
//! not a snapshot, so what only a file at rest could show (data after the live segment's zeros,
//! a HEAD that does not verify) is judged once it reads the same again.
//!
//! A log whose first segments retention deleted starts at the segment its MACed `ANCHOR` names,
//! from the chain position the anchor gives; without a valid anchor, a log that does not start
//! at segment 1 fails, as any removal does (docs/formats.md, "Retention").

use crate::format::{self, Hash};
use clavis_crypto::SecretBytes;
use clavis_crypto::digest::HmacSha256Key;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

/// Where and why verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {reason}")]
pub struct VerifyError {
    /// `segment-00000001.jsonl:17`, or the file concerned.
    pub location: String,
    /// What is wrong there.
    pub reason: String,
}

/// A successful verification's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Number of segments.
    pub segments: u64,
    /// Number of records verified.
    pub records: u64,
    /// The sequence number of the first record verified (1 unless retention deleted the log's
    /// first segments; 0 for a log without records).
    pub first_seq: u64,
    /// The sequence number of the last record (0 for a log without records).
    pub last_seq: u64,
    /// The last record's MAC (hex), the value to compare with a copy kept elsewhere.
    pub last_hash: String,
    /// Non-zero bytes after the end of the log in the live segment: a batch an unclean stop
    /// left half-written, never acknowledged (the server removes it when it starts).
    pub unacknowledged_tail_bytes: u64,
    /// The anchor, when retention deleted the log's first segments: the segments before
    /// `anchor.segment` and the records up to `anchor.seq` were deleted, and an `AuditRetention`
    /// record in the log says so.
    pub anchor: Option<format::Anchor>,
}

fn fail(location: impl Into<String>, reason: impl Into<String>) -> VerifyError {
    VerifyError { location: location.into(), reason: reason.into() }
}

/// The chain as a reader follows it, line by line.
struct Chain {
    /// The audit key prepared for record MACs.
    record_key: HmacSha256Key,
    /// The last record's sequence number and MAC (where the next record must continue from).
    seq: u64,
    prev: Hash,
    /// The next record starts the chain wherever it says it does (its MAC still verifies): the
    /// first record of a segment that an interrupted retention pass left below the anchor.
    loose: bool,
    /// Records verified, and the first one's sequence number.
    count: u64,
    first_seq: Option<u64>,
}

/// One verified line of a segment.
enum Line<'a> {
    /// A record: its sequence number, MAC and event's exact bytes.
    Record { seq: u64, mac: Hash, event: &'a str },
    /// The segment's checkpoint.
    Checkpoint,
}

impl Chain {
    fn new(key: &SecretBytes, seq: u64, prev: Hash) -> Chain {
        Chain { record_key: format::record_key(key), seq, prev, loose: false, count: 0, first_seq: None }
    }

    /// Checks one line (`text`, without its end of line) of segment `index`, found at `at`.
    fn line<'a>(&mut self, key: &SecretBytes, index: u64, at: &str, text: &'a str) -> Result<Line<'a>, VerifyError> {
        if let Ok(cp) = serde_json::from_str::<format::CheckpointLine>(text) {
            let hash = format::parse_hash(&cp.checkpoint.hash).ok_or_else(|| fail(at, "malformed checkpoint"))?;
            let mac = format::position_mac(key, "checkpoint", index, cp.checkpoint.seq, &hash);
            if format::parse_hash(&cp.mac) != Some(mac) || cp.checkpoint.segment != index {
                return Err(fail(at, "checkpoint modified (MAC does not verify)"));
            }
            if cp.checkpoint.seq != self.seq || hash != self.prev {
                return Err(fail(
                    at,
                    format!("checkpoint says the segment ends at record {} but it ends at {}", cp.checkpoint.seq, self.seq),
                ));
            }
            return Ok(Line::Checkpoint);
        }
        let rec: format::RecordLine<'a> = serde_json::from_str(text).map_err(|e| fail(at, format!("not a record: {e}")))?;
        let rec_prev = format::parse_hash(&rec.prev).ok_or_else(|| fail(at, "malformed prev"))?;
        let mac = format::record_mac(&self.record_key, rec.seq, &rec_prev, rec.event.get().as_bytes());
        if format::parse_hash(&rec.mac) != Some(mac) {
            return Err(fail(at, "record modified (MAC does not verify)"));
        }
        if std::mem::take(&mut self.loose) {
            self.seq = rec.seq.checked_sub(1).ok_or_else(|| fail(at, "malformed sequence number"))?;
            self.prev = rec_prev;
        }
        if rec.seq != self.seq + 1 {
            return Err(fail(
                at,
                format!("expected record {} but found record {} (records removed, inserted or reordered)", self.seq + 1, rec.seq),
            ));
        }
        if rec_prev != self.prev {
            return Err(fail(at, "chain broken: the record does not follow the previous one"));
        }
        self.seq = rec.seq;
        self.prev = mac;
        self.count += 1;
        self.first_seq.get_or_insert(rec.seq);
        Ok(Line::Record { seq: rec.seq, mac, event: rec.event.get() })
    }
}

/// Reads and checks `ANCHOR` in `dir`: `None` when there is none (retention never deleted
/// anything).
pub fn read_anchor(dir: &Path, key: &SecretBytes) -> Result<Option<format::Anchor>, VerifyError> {
    match std::fs::read_to_string(dir.join(format::ANCHOR_FILE)) {
        Ok(text) => format::parse_anchor(key, &text).map(Some).map_err(|e| fail(format::ANCHOR_FILE, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(fail(format::ANCHOR_FILE, e.to_string())),
    }
}

/// The anchor an `AuditRetention` record (which the writer makes) names, if `event` is one.
/// Only its top-level `eventSource` counts: the core sets that field on every record it builds,
/// so no client can make a record that passes for one.
fn retention_anchor(event: &str) -> Option<format::Anchor> {
    if !event.contains(crate::RETENTION_EVENT_NAME) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(event).ok()?;
    if v["eventSource"] != crate::RETENTION_EVENT_SOURCE || v["eventName"] != crate::RETENTION_EVENT_NAME {
        return None;
    }
    let a = &v["additionalEventData"]["anchor"];
    Some(format::Anchor { segment: a["segment"].as_u64()?, seq: a["seq"].as_u64()?, hash: format::parse_hash(a["hash"].as_str()?)? })
}

/// Calls `f` with every record's event (exact bytes) in order, after checking the chain.
fn walk(dir: &Path, key: &SecretBytes, f: impl FnMut(u64, &str)) -> Result<Report, VerifyError> {
    walk_observed(dir, key, f, &mut || {})
}

/// [`walk`], running `at_live_end` when the live segment's records are found to end (at its
/// first zero byte) and before the bytes after that end are read: the moment at which a commit
/// running meanwhile makes the bytes read a mix of two states of the file. A test seam (the
/// tests write there what the writer would); a no-op otherwise.
fn walk_observed(
    dir: &Path,
    key: &SecretBytes,
    mut f: impl FnMut(u64, &str),
    at_live_end: &mut dyn FnMut(),
) -> Result<Report, VerifyError> {
    // HEAD first: the writer rewrites it only after the records it names are written, so read
    // before the segments it never names a record they lack, even while the log is being
    // written (LookupEvents reads the live log).
    let head_text = read_head(key, || std::fs::read_to_string(dir.join("HEAD")));
    let mut indices = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| fail(dir.display().to_string(), e.to_string()))?;
    for e in entries {
        let e = e.map_err(|e| fail(dir.display().to_string(), e.to_string()))?;
        if let Some(i) = e.file_name().to_str().and_then(format::parse_segment_name) {
            indices.push(i);
        }
    }
    indices.sort_unstable();
    // ANCHOR after the listing: retention writes it before it deletes anything, so a listing
    // that misses deleted segments is read with the anchor that allowed their deletion.
    let anchor = read_anchor(dir, key)?;
    let mut chain = Chain::new(key, 0, [0u8; 32]);
    let first = indices.first().copied().unwrap_or(1);
    match (&anchor, indices.first()) {
        (Some(a), None) => {
            return Err(fail(format::ANCHOR_FILE, format!("names segment {} as the first kept, but no segment exists", a.segment)));
        }
        (Some(a), Some(&i)) if i > a.segment => {
            return Err(fail(
                format::segment_name(i),
                format!("segment {} is missing (ANCHOR names it as the first segment kept)", a.segment),
            ));
        }
        (Some(a), Some(&i)) if i == a.segment => (chain.seq, chain.prev) = (a.seq, a.hash),
        // Segments below the anchor that an interrupted retention pass has not deleted yet:
        // their records verify, and they must end where the anchor says the kept log begins.
        (Some(_), Some(&i)) if i > 1 => chain.loose = true,
        (None, Some(&i)) if i > 1 => return Err(fail(format::segment_name(i), "segment 1 is missing")),
        _ => {}
    }
    if let (Some(a), Some(&last)) = (&anchor, indices.last())
        && last < a.segment
    {
        return Err(fail(
            format::segment_name(last + 1),
            format!("segment {} is missing (ANCHOR names it as the first segment kept)", a.segment),
        ));
    }
    let mut hash_at_seq = std::collections::HashMap::new();
    let mut anchors_recorded = Vec::new();
    let mut tail_bytes = 0u64;
    // The bytes after the end of the log in the live segment, checked once HEAD is read.
    let mut tail: Option<Tail> = None;
    for (n, &index) in indices.iter().enumerate() {
        let name = format::segment_name(index);
        let expected = first + n as u64;
        if index != expected {
            return Err(fail(name, format!("segment {expected} is missing")));
        }
        if let Some(a) = &anchor
            && a.segment == index
            && n > 0
            && (chain.seq, chain.prev) != (a.seq, a.hash)
        {
            return Err(fail(
                name,
                format!("the segments before it end at record {}, not where ANCHOR says it begins (after record {})", chain.seq, a.seq),
            ));
        }
        let is_last = n + 1 == indices.len();
        let file = std::fs::File::open(dir.join(&name)).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                fail(&name, "deleted while it was being read (by retention, if ANCHOR now names a later segment): read the log again")
            } else {
                fail(&name, e.to_string())
            }
        })?;
        let mut reader = BufReader::new(file);
        let mut raw = Vec::new();
        let mut line_no = 0u64;
        let mut closed = false;
        // Where `raw` starts in the file.
        let mut offset = 0u64;
        loop {
            raw.clear();
            let start = offset;
            let read = reader.read_until(b'\n', &mut raw).map_err(|e| fail(&name, e.to_string()))?;
            if read == 0 {
                break;
            }
            offset += read as u64;
            // The live segment is preallocated with zero bytes beyond its last record (so a
            // commit's fdatasync never has to persist a new file size); they are not data. Its
            // records end at the first zero byte: what follows can only be a batch an unclean
            // stop left half-written, which was never acknowledged (as truncation is, its
            // removal is caught by HEAD below).
            if is_last && raw.contains(&0) {
                at_live_end();
                let mut rest = Vec::new();
                std::io::Read::read_to_end(&mut reader, &mut rest).map_err(|e| fail(&name, e.to_string()))?;
                let torn: Vec<u8> = raw.iter().chain(&rest).copied().collect();
                tail_bytes = torn.iter().filter(|b| **b != 0).count() as u64;
                if tail_bytes > 0 {
                    tail = Some(Tail { at: format!("{name}:{}", line_no + 1), index, path: dir.join(&name), start, torn });
                }
                break;
            }
            line_no += 1;
            let at = format!("{name}:{line_no}");
            let line = std::str::from_utf8(&raw).map_err(|_| fail(&at, "not UTF-8 text"))?;
            if closed {
                return Err(fail(at, "data after the segment's checkpoint"));
            }
            let Some(text) = line.strip_suffix('\n') else {
                return Err(fail(at, "truncated record (no end of line)"));
            };
            match chain.line(key, index, &at, text)? {
                Line::Checkpoint => closed = true,
                Line::Record { seq, mac, event } => {
                    hash_at_seq.insert(seq, mac);
                    if let Some(a) = retention_anchor(event) {
                        anchors_recorded.push(a);
                    }
                    f(seq, event);
                }
            }
        }
        if !closed && !is_last {
            return Err(fail(name, "segment truncated: it has no closing checkpoint"));
        }
    }
    // The deletion is on record: the writer commits the AuditRetention record that names an
    // anchor (durably) before it writes that anchor, and never deletes the segment holding it
    // while the anchor is current (the record lies after the anchor's position).
    if let Some(a) = &anchor
        && !anchors_recorded.contains(a)
    {
        return Err(fail(
            format::ANCHOR_FILE,
            format!("no {} record in the log names this anchor (segment {}, record {})", crate::RETENTION_EVENT_NAME, a.segment, a.seq),
        ));
    }
    // HEAD pins the end of the live segment.
    let head_seq = head_text.as_ref().ok().and_then(|t| serde_json::from_str::<format::Head>(t.trim()).ok()).map(|h| h.seq);
    if let Some(t) = &tail {
        // Bytes after zeros are judged only if they are still what was read. The writer
        // appends behind its last record, into the preallocated zeros, so while it commits, a
        // reader that reached those zeros and then read on can see zeros followed by records
        // (and, if the segment was closed meanwhile, its checkpoint) that were written after
        // it read the zeros: a mix of two states of the file, which at rest would mean damage.
        // Those bytes then no longer read as they did (the zeros are records now), and the log
        // ends, for this reader, at its last record before the zeros, which is at or after the
        // record HEAD named when it started. At rest, nothing changes and the rule is strict.
        match format::unacknowledged_tail_problem_at(&t.torn, key, t.index, head_seq) {
            Some((problem, end)) => {
                if t.still_reads(end)? {
                    return Err(fail(&t.at, problem));
                }
                tail_bytes = 0;
            }
            None => {
                let written = t.torn.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
                if !t.still_reads(written)? {
                    // Records being appended, not a half-written batch.
                    tail_bytes = 0;
                }
            }
        }
    }
    let seq = chain.seq;
    match head_text {
        Ok(text) => {
            let head: format::Head = serde_json::from_str(text.trim()).map_err(|e| fail("HEAD", format!("malformed: {e}")))?;
            let hash = format::parse_hash(&head.hash).ok_or_else(|| fail("HEAD", "malformed hash"))?;
            if format::parse_hash(&head.mac) != Some(format::position_mac(key, "head", head.segment, head.seq, &hash)) {
                return Err(fail("HEAD", "modified (MAC does not verify)"));
            }
            if head.seq > seq {
                let last = indices.last().map(|i| format::segment_name(*i)).unwrap_or_else(|| "audit log".into());
                return Err(fail(last, format!("truncated: HEAD records record {} but the log ends at record {seq}", head.seq)));
            }
            let deleted = chain.first_seq.map_or(anchor.map(|a| a.seq), |first| first.checked_sub(1));
            if head.seq > 0 && deleted.is_some_and(|d| head.seq < d) {
                return Err(fail("HEAD", format!("names record {}, which is no longer in the log", head.seq)));
            }
            if head.seq > 0 && hash_at_seq.get(&head.seq) != Some(&hash) && anchor.is_none_or(|a| (a.seq, a.hash) != (head.seq, hash)) {
                return Err(fail("HEAD", format!("record {} differs from the one HEAD pinned", head.seq)));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && seq == 0 => {}
        Err(e) => return Err(fail("HEAD", e.to_string())),
    }
    Ok(Report {
        segments: indices.len() as u64,
        records: chain.count,
        first_seq: chain.first_seq.unwrap_or(0),
        last_seq: seq,
        last_hash: hex::encode(chain.prev),
        unacknowledged_tail_bytes: tail_bytes,
        anchor,
    })
}

/// Verifies the closed segments `first..=last` of `dir` as one run of the chain that continues
/// from `start` (the sequence number and MAC before the first record: `(0, zeros)` for segment
/// 1): every record, and each segment's checkpoint. Returns where the last one ends. Retention
/// runs it before it deletes segments, so it never deletes one that would not verify.
pub fn verify_closed(dir: &Path, key: &SecretBytes, first: u64, last: u64, start: (u64, Hash)) -> Result<(u64, Hash), VerifyError> {
    let mut chain = Chain::new(key, start.0, start.1);
    for index in first..=last {
        let name = format::segment_name(index);
        let file = std::fs::File::open(dir.join(&name)).map_err(|e| fail(&name, e.to_string()))?;
        let mut reader = BufReader::new(file);
        let (mut raw, mut line_no, mut closed) = (Vec::new(), 0u64, false);
        loop {
            raw.clear();
            if reader.read_until(b'\n', &mut raw).map_err(|e| fail(&name, e.to_string()))? == 0 {
                break;
            }
            line_no += 1;
            let at = format!("{name}:{line_no}");
            if closed {
                return Err(fail(at, "data after the segment's checkpoint"));
            }
            let line = std::str::from_utf8(&raw).map_err(|_| fail(&at, "not UTF-8 text"))?;
            let text = line.strip_suffix('\n').ok_or_else(|| fail(&at, "truncated record (no end of line)"))?;
            if let Line::Checkpoint = chain.line(key, index, &at, text)? {
                closed = true;
            }
        }
        if !closed {
            return Err(fail(name, "segment truncated: it has no closing checkpoint"));
        }
    }
    Ok((chain.seq, chain.prev))
}

/// The bytes a reader found after the first zero byte of the live segment.
struct Tail {
    /// `segment-…:line` where they start.
    at: String,
    /// The segment's index.
    index: u64,
    /// The segment's path.
    path: std::path::PathBuf,
    /// Their offset in the segment.
    start: u64,
    /// The bytes, from the start of the line holding the first zero byte to the end of the file.
    torn: Vec<u8>,
}

impl Tail {
    /// True when the segment still holds the first `len` of these bytes at their offset; false
    /// when they changed (or the file is shorter) since they were read.
    fn still_reads(&self, len: usize) -> Result<bool, VerifyError> {
        let seen = &self.torn[..len.min(self.torn.len())];
        let failed = |e: std::io::Error| fail(&self.at, format!("reading again: {e}"));
        let mut file = std::fs::File::open(&self.path).map_err(failed)?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(self.start)).map_err(failed)?;
        let mut now = vec![0u8; seen.len()];
        match std::io::Read::read_exact(&mut file, &mut now) {
            Ok(()) => Ok(now == seen),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(failed(e)),
        }
    }
}

/// At most this many reads of HEAD while it reads differently each time and does not verify.
const HEAD_READS: usize = 100;

/// Reads HEAD with `read`. The writer rewrites HEAD in place after every commit, and a read that
/// races the rewrite can return part of the old content and part of the new (a HEAD that does
/// not verify). Such a read is repeated until HEAD verifies or reads the same twice in a row: a
/// HEAD that does not verify at rest reads the same every time and is reported.
fn read_head(key: &SecretBytes, mut read: impl FnMut() -> std::io::Result<String>) -> std::io::Result<String> {
    let verifies = |text: &str| {
        serde_json::from_str::<format::Head>(text.trim()).ok().is_some_and(|h| {
            format::parse_hash(&h.hash)
                .is_some_and(|hash| format::parse_hash(&h.mac) == Some(format::position_mac(key, "head", h.segment, h.seq, &hash)))
        })
    };
    let mut last = read();
    for _ in 1..HEAD_READS {
        if last.as_ref().is_ok_and(|t| verifies(t)) {
            break;
        }
        std::thread::yield_now();
        let again = read();
        let same = match (&last, &again) {
            (Ok(a), Ok(b)) => a == b,
            (Err(a), Err(b)) => a.kind() == b.kind(),
            _ => false,
        };
        last = again;
        if same {
            break;
        }
    }
    last
}

/// Verifies the whole log.
pub fn verify(dir: &Path, key: &SecretBytes) -> Result<Report, VerifyError> {
    walk(dir, key, |_, _| {})
}

/// Which events to export.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Only events at or after this `eventTime` (ISO 8601 UTC, compared as text).
    pub since: Option<String>,
    /// Only events before this `eventTime`.
    pub until: Option<String>,
    /// Only events whose resources or request name this key (id, ARN or alias, as a substring).
    pub key: Option<String>,
    /// Only events of this principal ARN.
    pub principal: Option<String>,
}

impl Filter {
    /// True when `event` passes the filter.
    pub fn matches(&self, event: &serde_json::Value) -> bool {
        let time = event["eventTime"].as_str().unwrap_or_default();
        if self.since.as_deref().is_some_and(|s| time < s) || self.until.as_deref().is_some_and(|u| time >= u) {
            return false;
        }
        if let Some(p) = &self.principal
            && event["userIdentity"]["arn"].as_str() != Some(p.as_str())
        {
            return false;
        }
        if let Some(k) = &self.key {
            let in_resources = event["resources"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|r| r["ARN"].as_str().is_some_and(|a| a.contains(k.as_str()))));
            let in_request = event["requestParameters"].to_string().contains(k.as_str());
            if !in_resources && !in_request {
                return false;
            }
        }
        true
    }
}

/// Writes the events that pass `filter` as JSON lines, after verifying the chain as it reads.
/// Fails (having written only verified events) at the first inconsistency.
pub fn export(dir: &Path, key: &SecretBytes, filter: &Filter, out: &mut dyn Write) -> Result<u64, VerifyError> {
    let mut written = 0u64;
    let mut write_err = None;
    let report = walk(dir, key, |_, event| {
        if write_err.is_some() {
            return;
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(event)
            && filter.matches(&v)
        {
            match out.write_all(event.as_bytes()).and_then(|_| out.write_all(b"\n")) {
                Ok(()) => written += 1,
                Err(e) => write_err = Some(e.to_string()),
            }
        }
    });
    if let Some(e) = write_err {
        return Err(fail("output", e));
    }
    report.map(|_| written)
}

/// Events for an API lookup, newest first: at most `max` events with sequence numbers below
/// `before` that pass `keep`. Returns the events and, when more may exist, the sequence number
/// to continue below.
pub fn lookup(
    dir: &Path,
    key: &SecretBytes,
    before: Option<u64>,
    max: usize,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> Result<(Vec<serde_json::Value>, Option<u64>), VerifyError> {
    let mut matched: Vec<(u64, serde_json::Value)> = Vec::new();
    walk(dir, key, |seq, event| {
        if before.is_some_and(|b| seq >= b) {
            return;
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(event)
            && keep(&v)
        {
            matched.push((seq, v));
        }
    })?;
    matched.reverse();
    let more = matched.len() > max;
    matched.truncate(max);
    let next = if more { matched.last().map(|(seq, _)| *seq) } else { None };
    Ok((matched.into_iter().map(|(_, v)| v).collect(), next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditConfig, AuditLog};
    use clavis_core::audit::AuditSink;
    use std::io::{Seek, SeekFrom};
    use std::path::PathBuf;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("clavis-audit-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn key() -> SecretBytes {
        SecretBytes::new(vec![7u8; 32])
    }

    async fn append(d: &Path, segment_bytes: u64, from: usize, to: usize) {
        let log = AuditLog::open(AuditConfig { segment_bytes, ..AuditConfig::new(d.to_owned()) }, key()).unwrap();
        for i in from..to {
            // About 1 KiB per record, so that a few dozen fill more than the live segment's
            // preallocated zeros.
            log.append(format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(1000)).into_bytes()).await.unwrap();
        }
    }

    /// Overwrites `path` in place (the same file, which a reader may hold open) with `bytes`.
    fn overwrite(path: &Path, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(bytes).unwrap();
        f.set_len(bytes.len() as u64).unwrap();
    }

    /// A read of HEAD that races its rewrite (part old, part new) is read again; a HEAD that
    /// does not verify and reads the same twice (at rest) is returned as it is, to be reported.
    #[test]
    fn a_torn_read_of_head_is_read_again() {
        let old = format::head_content(&key(), 1, 9, &[1; 32]);
        let new = format::head_content(&key(), 1, 10, &[2; 32]);
        let torn = format!("{}{}", &new[..100], &old[100..]);
        let mut reads = [torn.clone(), new.clone()].into_iter();
        assert_eq!(read_head(&key(), || Ok(reads.next().unwrap())).unwrap(), new);
        let mut count = 0;
        let at_rest = read_head(&key(), || {
            count += 1;
            Ok(torn.clone())
        });
        assert_eq!((at_rest.unwrap(), count), (torn.clone(), 2));
        let mut count = 0;
        let missing = read_head(&key(), || {
            count += 1;
            Err(std::io::ErrorKind::NotFound.into())
        });
        assert_eq!((missing.unwrap_err().kind(), count), (std::io::ErrorKind::NotFound, 2));
    }

    /// A reader reaches the end of the live segment's records (its first zero byte) and, before
    /// it reads on, the writer commits batch after batch into those zeros and closes the
    /// segment with its checkpoint: the reader then sees zeros followed by valid records and a
    /// valid checkpoint, which in a file at rest would be damage. Read live, it is not: the log
    /// ends, for this reader, at the last record before the zeros (HEAD, read first, names no
    /// later one). The same bytes at rest are still damage.
    #[tokio::test]
    async fn commits_and_a_rotation_during_the_read_of_the_live_end_are_not_damage() {
        let d = dir("live-end");
        let seg = d.join(format::segment_name(1));
        append(&d, 1 << 20, 0, 5).await;
        // What the reader's first read of the segment (8 KiB, BufReader's buffer) returns: the
        // five records, then zeros. It reads on from there only after the commits below.
        let early_seg = std::fs::read(&seg).unwrap()[..8192].to_vec();
        let early_head = std::fs::read(d.join("HEAD")).unwrap();
        assert!(early_seg.ends_with(&[0; 100]), "test setup: the records end within the first read");
        // What the writer goes on to write: records past the zeros the reader has seen, then a
        // rotation (any segment size is reached) closes segment 1 with a checkpoint.
        append(&d, 1 << 20, 5, 80).await;
        append(&d, 1, 80, 81).await;
        let (late_seg, late_head) = (std::fs::read(&seg).unwrap(), std::fs::read(d.join("HEAD")).unwrap());
        assert!(late_seg.len() > early_seg.len() && !late_seg.contains(&0), "test setup: segment 1 closed past the early zeros");
        assert!(String::from_utf8_lossy(&late_seg).contains("{\"checkpoint\":"), "test setup: segment 1 closed");

        // The reader starts on the early state (HEAD names record 5; segment 2 does not exist).
        std::fs::remove_file(d.join(format::segment_name(2))).unwrap();
        overwrite(&seg, &early_seg);
        overwrite(&d.join("HEAD"), &early_head);
        let mut commits = || {
            overwrite(&seg, &late_seg);
            overwrite(&d.join("HEAD"), &late_head);
        };
        let report = walk_observed(&d, &key(), |_, _| {}, &mut commits).unwrap();
        assert_eq!(report.records, 5, "the log ends, for this reader, where HEAD and the records it read end");
        assert_eq!(report.unacknowledged_tail_bytes, 0, "records appended while reading are not a half-written batch");

        // At rest, the same picture (zeros over records, then the segment's checkpoint) is damage.
        let mut holed = late_seg.clone();
        let end_of_5 = holed.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(4).unwrap().0 + 1;
        holed[end_of_5..end_of_5 + 2000].fill(0);
        overwrite(&seg, &holed);
        overwrite(&d.join("HEAD"), &early_head);
        let e = verify(&d, &key()).unwrap_err().to_string();
        assert!(e.contains("segment-00000001.jsonl:6") && e.contains("checkpoint") && e.contains("damaged"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
