//! Retention: which closed segments are old enough to delete, the `AuditRetention` record that
//! says they were deleted, the anchor the first kept segment then starts from, and the deletion.
//! The writer's maintenance thread runs the steps in the order that keeps the log verifiable
//! (writer.rs, `maintain`); this module does each one.
//!
//! A segment's age is its newest record's `eventTime` (MACed with the record, so it cannot be
//! changed to make a segment look older, as a file's modification time could be): the only field
//! of a record the audit log reads. A segment whose last record has no `eventTime` is kept, and
//! so is every segment after it. Segments that do not verify are never deleted: retention must
//! not erase the evidence of tampering.

use crate::format::{self, Anchor, Hash};
use crate::writer::{segments, sync_dir, write_durably};
use crate::{AuditError, io};
use clavis_crypto::SecretBytes;
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

/// What one retention pass deletes.
pub(crate) struct Plan {
    /// Segments below the current anchor that an interrupted pass left behind: their deletion is
    /// on record already.
    pub leftovers: Vec<u64>,
    /// The closed segments that expired, if any.
    pub expiry: Option<Expiry>,
}

/// Closed segments `first..=last`, verified, whose newest records are older than the cut-off.
pub(crate) struct Expiry {
    pub first: u64,
    pub last: u64,
    /// Their first and last records' sequence numbers.
    pub first_seq: u64,
    pub last_seq: u64,
    /// The newest `eventTime` among them (Unix milliseconds).
    pub newest_ms: i64,
    /// The anchor once they are gone: segment `last + 1` continues from their last record.
    pub anchor: Anchor,
}

/// Decides what to delete: the closed segments (below `live`, the live segment's index) whose
/// newest record is older than `cutoff_ms`, oldest first, stopping at the first younger one.
/// They must continue the chain from the anchor (or from record 1) and verify; otherwise
/// nothing is deleted and the error says why.
pub(crate) fn plan(dir: &Path, key: &SecretBytes, live: u64, cutoff_ms: i64) -> Result<Plan, AuditError> {
    let present = segments(dir)?;
    let anchor = crate::verify::read_anchor(dir, key).map_err(|e| AuditError::Inconsistent(format!("retention deletes nothing: {e}")))?;
    let kept_from = anchor.map_or(1, |a| a.segment);
    let leftovers: Vec<u64> = present.iter().copied().filter(|i| *i < kept_from).collect();
    let mut expired: Option<(u64, i64)> = None;
    for (n, index) in present.iter().copied().filter(|i| (kept_from..live).contains(i)).enumerate() {
        if index != kept_from + n as u64 {
            return Err(AuditError::Inconsistent(format!(
                "retention deletes nothing: segment {} is missing (run `clavis audit verify`)",
                kept_from + n as u64
            )));
        }
        match newest_record_ms(&dir.join(format::segment_name(index)))? {
            Some(t) if t < cutoff_ms => expired = Some((index, expired.map_or(t, |(_, newest)| newest.max(t)))),
            _ => break,
        }
    }
    let Some((last, newest_ms)) = expired else { return Ok(Plan { leftovers, expiry: None }) };
    let start: (u64, Hash) = anchor.map_or((0, [0u8; 32]), |a| (a.seq, a.hash));
    let (seq, hash) = crate::verify::verify_closed(dir, key, kept_from, last, start)
        .map_err(|e| AuditError::Inconsistent(format!("retention deletes nothing: {e} (run `clavis audit verify`)")))?;
    Ok(Plan {
        leftovers,
        expiry: Some(Expiry {
            first: kept_from,
            last,
            first_seq: start.0 + 1,
            last_seq: seq,
            newest_ms,
            anchor: Anchor { segment: last + 1, seq, hash },
        }),
    })
}

/// The name of the record retention commits before it deletes (`eventName`).
pub const RETENTION_EVENT_NAME: &str = "AuditRetention";
/// Its `eventSource`: the audit log itself (no front end builds records with this source).
pub const RETENTION_EVENT_SOURCE: &str = "audit.clavis";

/// The `AuditRetention` record for `expiry`, made at `now_ms` under a retention of `retain_ms`:
/// CloudTrail-shaped like every record, with what is deleted and the new anchor in
/// `additionalEventData`.
pub(crate) fn event(expiry: &Expiry, now_ms: i64, retain_ms: i64) -> Result<Vec<u8>, AuditError> {
    let id = clavis_crypto::random::bytes(16).map_err(|e| AuditError::Key(format!("random event id: {e}")))?;
    let hex = hex::encode(id);
    let event_id = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
    let event = serde_json::json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "AWSService", "invokedBy": RETENTION_EVENT_SOURCE},
        "eventTime": clavis_core::audit::event_time(now_ms),
        "eventSource": RETENTION_EVENT_SOURCE,
        "eventName": RETENTION_EVENT_NAME,
        "sourceIPAddress": RETENTION_EVENT_SOURCE,
        "userAgent": RETENTION_EVENT_SOURCE,
        "requestParameters": {"retainSeconds": retain_ms / 1000},
        "responseElements": null,
        "additionalEventData": {
            "deletedSegments": {"first": expiry.first, "last": expiry.last},
            "deletedRecords": {"first": expiry.first_seq, "last": expiry.last_seq},
            "newestDeletedEventTime": clavis_core::audit::event_time(expiry.newest_ms),
            "anchor": {"segment": expiry.anchor.segment, "seq": expiry.anchor.seq, "hash": format::hex32(&expiry.anchor.hash)},
        },
        "eventID": event_id,
        "readOnly": false,
        "eventType": "AwsServiceEvent",
        "managementEvent": true,
    });
    serde_json::to_vec(&event).map_err(|e| AuditError::Inconsistent(format!("encoding the retention record: {e}")))
}

/// Replaces `ANCHOR` durably: written whole beside it, synced, renamed over it, the directory
/// synced. A reader sees the old anchor or the new one, never part of either.
pub(crate) fn write_anchor(dir: &Path, key: &SecretBytes, anchor: &Anchor) -> Result<(), AuditError> {
    let path = dir.join(format::ANCHOR_FILE);
    let tmp = dir.join(format!("{}.tmp", format::ANCHOR_FILE));
    let _ = std::fs::remove_file(&tmp);
    write_durably(&tmp, format::anchor_content(key, anchor).as_bytes())?;
    std::fs::rename(&tmp, &path).map_err(io(format!("replacing {}", path.display())))?;
    sync_dir(&path)
}

/// Deletes segments `indices` (oldest first) and the half-written batches set aside beside them
/// (`torn-<segment>-<offset>.bin`), then syncs the directory.
pub(crate) fn delete(dir: &Path, indices: &[u64]) -> Result<(), AuditError> {
    let mut indices = indices.to_vec();
    indices.sort_unstable();
    for &i in &indices {
        let path = dir.join(format::segment_name(i));
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(io(format!("deleting {}", path.display()))(e));
        }
    }
    for e in std::fs::read_dir(dir).map_err(io(format!("listing {}", dir.display())))? {
        let e = e.map_err(io("listing the audit directory"))?;
        let name = e.file_name();
        let torn_of = name.to_str().and_then(|n| n.strip_prefix("torn-")?.split('-').next()?.parse::<u64>().ok());
        if torn_of.is_some_and(|i| indices.binary_search(&i).is_ok()) {
            std::fs::remove_file(e.path()).map_err(io(format!("deleting {}", e.path().display())))?;
        }
    }
    sync_dir(&dir.join(format::ANCHOR_FILE))?;
    tracing::info!(
        first = indices.first().copied().unwrap_or_default(),
        last = indices.last().copied().unwrap_or_default(),
        "audit retention deleted segments"
    );
    Ok(())
}

/// The most of a closed segment's end read to find its last record: a record is at most
/// 64 KiB of event (docs/formats.md, "Caps") plus its envelope, and a checkpoint is short.
const TAIL_WINDOW: u64 = 256 * 1024;

/// The `eventTime` of a closed segment's last record (the line before its checkpoint), in Unix
/// milliseconds; `None` if it has none that parses.
fn newest_record_ms(path: &Path) -> Result<Option<i64>, AuditError> {
    let ctx = format!("reading {}", path.display());
    let mut f = std::fs::File::open(path).map_err(io(ctx.clone()))?;
    let len = f.metadata().map_err(io(ctx.clone()))?.len();
    let start = len.saturating_sub(TAIL_WINDOW);
    let mut tail = Vec::new();
    f.seek(SeekFrom::Start(start)).and_then(|_| f.read_to_end(&mut tail)).map_err(io(ctx))?;
    let mut lines = tail.split(|b| *b == b'\n').rev().skip_while(|l| l.is_empty());
    let (Some(checkpoint), Some(record)) = (lines.next(), lines.next()) else { return Ok(None) };
    // The record line is whole unless the window began inside it (then it is the first piece).
    if start > 0 && lines.next().is_none() {
        return Ok(None);
    }
    if serde_json::from_slice::<format::CheckpointLine>(checkpoint).is_err() {
        return Ok(None);
    }
    Ok(record_time_ms(record))
}

/// The `eventTime` of the first record of a segment, in Unix milliseconds (the live segment's
/// age after a restart).
pub(crate) fn first_record_ms(path: &Path) -> Option<i64> {
    let f = std::fs::File::open(path).ok()?;
    let mut line = Vec::new();
    std::io::BufReader::new(f).take(TAIL_WINDOW).read_until(b'\n', &mut line).ok()?;
    record_time_ms(line.strip_suffix(b"\n")?)
}

/// A record line's event's `eventTime`, in Unix milliseconds.
fn record_time_ms(line: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Timed {
        #[serde(rename = "eventTime")]
        event_time: Option<String>,
    }
    let rec: format::RecordLine<'_> = serde_json::from_slice(line).ok()?;
    let timed: Timed = serde_json::from_str(rec.event.get()).ok()?;
    clavis_core::audit::parse_event_time(&timed.event_time?)?.checked_mul(1000)
}

/// Parses a duration such as `24h`, `30m`, `3600s`, `7d` or `1h30m` (whole numbers, each with a
/// unit: `s`, `m`, `h` or `d`). Zero and more than ten years are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration like `24h`, `30m`, `3600s` or `7d`");
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|s| total.checked_add(s)).ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    if total > 10 * 366 * 86_400 {
        return Err(format!("`{text}` is more than ten years"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Test code: a failure should stop the test loudly.
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("3600s"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        for bad in ["", "0s", "10", "h", "1.5h", "-1h", "1w", "99999999999999999999s", "4000d", "1h 30m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
