//! The audit segment format. One JSON object per line:
//!
//! ```text
//! {"seq":N,"prev":"<64 hex>","event":{...},"mac":"<64 hex>"}
//! {"checkpoint":{"segment":K,"seq":N,"hash":"<64 hex>"},"mac":"<64 hex>"}   (last line of a closed segment)
//! ```
//!
//! `mac = HMAC-SHA256(audit key, "clavis-audit-record-v1" 0x00 || seq (u64 BE) || prev (32 bytes)
//! || the event's exact bytes)`; `prev` is the previous record's `mac` (32 zero bytes before the
//! first record). The checkpoint's, HEAD's and ANCHOR's MACs cover their fields the same way.

use clavis_crypto::SecretBytes;
use clavis_crypto::digest::{HmacSha256Key, hmac_sha256};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A MAC or chain hash.
pub type Hash = [u8; 32];

/// Lower-case hex of a hash, without per-character iterator overhead (this runs for every
/// record on the writer thread).
pub fn hex32(h: &Hash) -> String {
    let mut out = Vec::with_capacity(64);
    push_hex32(&mut out, h);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends the lower-case hex of a hash to `out`.
fn push_hex32(out: &mut Vec<u8>, h: &Hash) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in h {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
}

/// Segment file name for index `i` (1-based).
pub fn segment_name(i: u64) -> String {
    format!("segment-{i:08}.jsonl")
}

/// Parses a segment file name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    name.strip_prefix("segment-")?.strip_suffix(".jsonl")?.parse().ok()
}

/// The audit key prepared for record MACs (computed once per log, not once per record).
pub fn record_key(key: &SecretBytes) -> HmacSha256Key {
    HmacSha256Key::new(key.expose_secret())
}

/// The MAC of a record.
pub fn record_mac(key: &HmacSha256Key, seq: u64, prev: &Hash, event: &[u8]) -> Hash {
    key.sign(&[b"clavis-audit-record-v1\0", &seq.to_be_bytes(), prev, event])
}

/// The MAC of a checkpoint or HEAD (`kind` distinguishes them).
pub fn position_mac(key: &SecretBytes, kind: &str, segment: u64, seq: u64, hash: &Hash) -> Hash {
    let mut msg = Vec::with_capacity(64 + 16 + 32);
    msg.extend_from_slice(b"clavis-audit-");
    msg.extend_from_slice(kind.as_bytes());
    msg.extend_from_slice(b"-v1\0");
    msg.extend_from_slice(&segment.to_be_bytes());
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.extend_from_slice(hash);
    hmac_sha256(key.expose_secret(), &msg)
}

/// Writes one record line (with its trailing newline) into `out`.
pub fn write_record(out: &mut Vec<u8>, key: &HmacSha256Key, seq: u64, prev: &Hash, event: &[u8]) -> Hash {
    let mac = record_mac(key, seq, prev, event);
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b",\"prev\":\"");
    push_hex32(out, prev);
    out.extend_from_slice(b"\",\"event\":");
    out.extend_from_slice(event);
    out.extend_from_slice(b",\"mac\":\"");
    push_hex32(out, &mac);
    out.extend_from_slice(b"\"}\n");
    mac
}

/// The checkpoint line that closes segment `segment` after record `seq` with MAC `hash`.
pub fn checkpoint_line(key: &SecretBytes, segment: u64, seq: u64, hash: &Hash) -> String {
    let mac = position_mac(key, "checkpoint", segment, seq, hash);
    format!("{{\"checkpoint\":{{\"segment\":{segment},\"seq\":{seq},\"hash\":\"{}\"}},\"mac\":\"{}\"}}\n", hex32(hash), hex32(&mac))
}

/// The HEAD file's content.
pub fn head_content(key: &SecretBytes, segment: u64, seq: u64, hash: &Hash) -> String {
    let mac = position_mac(key, "head", segment, seq, hash);
    format!("{{\"segment\":{segment},\"seq\":{seq},\"hash\":\"{}\",\"mac\":\"{}\"}}\n", hex32(hash), hex32(&mac))
}

/// The file that holds the anchor, once retention has deleted segments.
pub const ANCHOR_FILE: &str = "ANCHOR";

/// Where the log kept after retention begins: the first kept segment and the chain position
/// (sequence number and MAC of the last deleted record) its first record continues from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// The first segment kept.
    pub segment: u64,
    /// The sequence number of the last record deleted (the kept log starts at the next one).
    pub seq: u64,
    /// The MAC of that record (the first kept record's `prev`).
    pub hash: Hash,
}

/// The ANCHOR file's content: HEAD's fields, under the MAC domain `clavis-audit-anchor-v1`.
pub fn anchor_content(key: &SecretBytes, anchor: &Anchor) -> String {
    let mac = position_mac(key, "anchor", anchor.segment, anchor.seq, &anchor.hash);
    format!("{{\"segment\":{},\"seq\":{},\"hash\":\"{}\",\"mac\":\"{}\"}}\n", anchor.segment, anchor.seq, hex32(&anchor.hash), hex32(&mac))
}

/// Parses ANCHOR's content and checks its MAC; says what is wrong otherwise.
pub fn parse_anchor(key: &SecretBytes, text: &str) -> Result<Anchor, String> {
    let fields: Head = serde_json::from_str(text.trim()).map_err(|e| format!("malformed: {e}"))?;
    let hash = parse_hash(&fields.hash).ok_or("malformed hash")?;
    if parse_hash(&fields.mac) != Some(position_mac(key, "anchor", fields.segment, fields.seq, &hash)) {
        return Err("modified (MAC does not verify)".into());
    }
    Ok(Anchor { segment: fields.segment, seq: fields.seq, hash })
}

/// A parsed record line, with the event's exact bytes.
#[derive(Debug, Deserialize)]
pub struct RecordLine<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Previous record's MAC, hex.
    pub prev: String,
    /// The event, unparsed.
    #[serde(borrow)]
    pub event: &'a RawValue,
    /// This record's MAC, hex.
    pub mac: String,
}

/// A checkpoint's position.
#[derive(Debug, Deserialize)]
pub struct Position {
    /// Segment index.
    pub segment: u64,
    /// Last sequence number.
    pub seq: u64,
    /// Last record's MAC, hex.
    pub hash: String,
}

/// A parsed checkpoint line.
#[derive(Debug, Deserialize)]
pub struct CheckpointLine {
    /// Where the segment ended.
    pub checkpoint: Position,
    /// The checkpoint's MAC, hex.
    pub mac: String,
}

/// The parsed HEAD file.
#[derive(Debug, Deserialize)]
pub struct Head {
    /// Segment index of the live segment.
    pub segment: u64,
    /// Last committed sequence number.
    pub seq: u64,
    /// Last committed record's MAC, hex.
    pub hash: String,
    /// HEAD's MAC, hex.
    pub mac: String,
}

/// Decodes a 64-hex-digit hash.
pub fn parse_hash(s: &str) -> Option<Hash> {
    let v = hex::decode(s).ok()?;
    v.try_into().ok()
}

/// Checks the bytes after the end of a live segment's records (from the last complete line
/// before its first zero byte to its last non-zero byte) before they are set aside as a batch an
/// unclean stop left half-written. Such a batch was never acknowledged, so none of its records
/// can be at or before HEAD's sequence number, and it holds no checkpoint. Returns why the bytes
/// are not such a batch (damage inside acknowledged records, or tampering), if they are not.
pub fn unacknowledged_tail_problem(tail: &[u8], key: &SecretBytes, segment: u64, head_seq: Option<u64>) -> Option<String> {
    unacknowledged_tail_problem_at(tail, key, segment, head_seq).map(|(problem, _)| problem)
}

/// [`unacknowledged_tail_problem`], also returning where in `tail` the line that shows the
/// problem ends (so that a reader of a live log can tell whether those bytes were still being
/// written while it read them).
pub fn unacknowledged_tail_problem_at(tail: &[u8], key: &SecretBytes, segment: u64, head_seq: Option<u64>) -> Option<(String, usize)> {
    let record_key = record_key(key);
    let mut end = 0usize;
    for line in tail.split(|b| *b == b'\n') {
        end = (end + line.len() + 1).min(tail.len());
        let line: Vec<u8> = line.iter().copied().filter(|b| *b != 0).collect();
        let Ok(text) = std::str::from_utf8(&line) else { continue };
        if let Ok(cp) = serde_json::from_str::<CheckpointLine>(text)
            && let Some(hash) = parse_hash(&cp.checkpoint.hash)
            && parse_hash(&cp.mac) == Some(position_mac(key, "checkpoint", segment, cp.checkpoint.seq, &hash))
        {
            return Some((format!("a valid checkpoint (record {}) lies after zero bytes: the segment is damaged", cp.checkpoint.seq), end));
        }
        if let Ok(rec) = serde_json::from_str::<RecordLine<'_>>(text)
            && let Some(prev) = parse_hash(&rec.prev)
            && parse_hash(&rec.mac) == Some(record_mac(&record_key, rec.seq, &prev, rec.event.get().as_bytes()))
            && head_seq.is_some_and(|h| rec.seq <= h)
        {
            return Some((
                format!(
                    "acknowledged record {} (HEAD names record {}) lies after zero bytes: the segment is damaged",
                    rec.seq,
                    head_seq.unwrap_or_default()
                ),
                end,
            ));
        }
    }
    None
}
