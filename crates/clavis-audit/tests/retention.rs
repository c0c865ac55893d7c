//! Segment age and retention through the public API: segments close by age at the next commit
//! and while idle; retention deletes expired closed segments and what remains verifies from its
//! anchor, with the deletion on record; removing the anchor, a kept segment or a segment in the
//! middle, or putting back an older anchor, is detected; an interrupted deletion verifies and is
//! finished; a tampered segment is never deleted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failure should stop the test loudly.

use clavis_audit::verify::{Filter, export, verify};
use clavis_audit::{AuditConfig, AuditLog, Durability};
use clavis_core::audit::{AuditSink, event_time};
use clavis_core::{Clock, TestClock};
use clavis_crypto::SecretBytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86_400);

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("clavis-audit-retention-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn key() -> SecretBytes {
    SecretBytes::new(vec![7u8; 32])
}

fn segment(d: &Path, i: u64) -> PathBuf {
    d.join(format!("segment-{i:08}.jsonl"))
}

fn present(d: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_prefix("segment-")?.strip_suffix(".jsonl")?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// A log of small segments that keeps one day, on a clock the test moves. Its passes are the
/// test's own (`run_maintenance`): the thread would run others after each rotation, at moments
/// the test's counts and staged crashes cannot foresee.
fn open(d: &Path, clock: &Arc<TestClock>, durability: Durability) -> AuditLog {
    let config = AuditConfig {
        segment_bytes: 300,
        durability,
        retain: Some(DAY),
        clock: clock.clone(),
        maintenance_thread: false,
        ..AuditConfig::new(d.to_owned())
    };
    AuditLog::open(config, key()).unwrap()
}

async fn append(log: &AuditLog, clock: &TestClock, from: usize, to: usize) {
    for i in from..to {
        let time = event_time(clock.now_ms());
        log.append(format!("{{\"eventName\":\"Encrypt\",\"eventTime\":\"{time}\",\"n\":{i}}}").into_bytes()).await.unwrap();
    }
}

fn events(d: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    export(d, &key(), &Filter::default(), &mut out).unwrap();
    String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn retention_records(d: &Path) -> Vec<serde_json::Value> {
    events(d).into_iter().filter(|e| e["eventName"] == clavis_audit::RETENTION_EVENT_NAME).collect()
}

/// Ten records, then two days later two more and a retention pass: the old segments go.
async fn expired_log(name: &str, durability: Durability) -> (PathBuf, Arc<TestClock>, AuditLog) {
    let d = dir(name);
    let clock = Arc::new(TestClock::default());
    let log = open(&d, &clock, durability);
    append(&log, &clock, 0, 10).await;
    assert!(present(&d).len() > 3, "test setup: small segments rotate");
    log.run_maintenance().unwrap();
    assert_eq!(present(&d)[0], 1, "nothing has expired yet");
    clock.advance(2 * 86_400_000);
    append(&log, &clock, 10, 12).await;
    log.run_maintenance().unwrap();
    (d, clock, log)
}

#[tokio::test]
async fn retention_deletes_expired_segments_and_the_rest_verifies() {
    for durability in [Durability::Fsync, Durability::Write] {
        let (d, clock, log) = expired_log(&format!("keeps-{durability:?}"), durability).await;
        let kept = present(&d);
        assert!(kept[0] > 1, "expired segments are deleted: {kept:?}");
        let report = verify(&d, &key()).unwrap();
        let anchor = report.anchor.expect("an anchor");
        assert_eq!(anchor.segment, kept[0]);
        assert_eq!(report.first_seq, anchor.seq + 1);
        assert!(anchor.seq >= 10 && anchor.seq < 12, "every old record went, no new one: {anchor:?}");
        assert_eq!(report.last_seq, 13, "twelve records and the retention record");
        // The deletion is on record, with what was deleted.
        let recorded = retention_records(&d);
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        let data = &recorded[0]["additionalEventData"];
        assert_eq!(data["deletedSegments"]["first"], 1);
        assert_eq!(data["deletedSegments"]["last"], anchor.segment - 1);
        assert_eq!((data["deletedRecords"]["first"].as_u64(), data["deletedRecords"]["last"].as_u64()), (Some(1), Some(anchor.seq)));
        assert_eq!(recorded[0]["eventSource"], clavis_audit::RETENTION_EVENT_SOURCE);
        // Nothing more expires on a second pass; a restart continues the chain.
        log.run_maintenance().unwrap();
        assert_eq!(present(&d)[0], kept[0]);
        drop(log);
        let log = open(&d, &clock, durability);
        append(&log, &clock, 12, 14).await;
        drop(log);
        let report = verify(&d, &key()).unwrap();
        assert_eq!((report.last_seq, report.anchor), (15, Some(anchor)));
        assert_eq!(retention_records(&d).len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[tokio::test]
async fn removing_the_anchor_or_a_segment_is_detected() {
    let (d, clock, log) = expired_log("tamper", Durability::Fsync).await;
    append(&log, &clock, 12, 18).await;
    drop(log);
    let kept = present(&d);
    assert!(kept.len() >= 3, "test setup: a segment in the middle of the kept ones: {kept:?}");
    let anchor_file = d.join("ANCHOR");
    let anchor = std::fs::read(&anchor_file).unwrap();
    verify(&d, &key()).unwrap();

    // Without the anchor, the log starts after segment 1: the segments before are missing.
    std::fs::remove_file(&anchor_file).unwrap();
    let e = verify(&d, &key()).unwrap_err().to_string();
    assert!(e.contains("segment 1 is missing"), "{e}");
    std::fs::write(&anchor_file, &anchor).unwrap();

    // An anchor the audit key did not MAC (moved on by one segment).
    let mut forged: serde_json::Value = serde_json::from_slice(&anchor).unwrap();
    forged["segment"] = (kept[0] + 1).into();
    std::fs::write(&anchor_file, forged.to_string()).unwrap();
    let e = verify(&d, &key()).unwrap_err().to_string();
    assert!(e.contains("ANCHOR") && e.contains("MAC"), "{e}");
    std::fs::write(&anchor_file, &anchor).unwrap();

    // The first kept segment deleted as well: the anchor names it.
    let first = std::fs::read(segment(&d, kept[0])).unwrap();
    std::fs::remove_file(segment(&d, kept[0])).unwrap();
    let e = verify(&d, &key()).unwrap_err().to_string();
    assert!(e.contains(&format!("segment {} is missing", kept[0])) && e.contains("ANCHOR"), "{e}");
    std::fs::write(segment(&d, kept[0]), &first).unwrap();

    // A segment in the middle.
    let middle = kept[1];
    std::fs::remove_file(segment(&d, middle)).unwrap();
    let e = verify(&d, &key()).unwrap_err().to_string();
    assert!(e.contains(&format!("segment {middle} is missing")), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

/// Two passes: the first pass's anchor, put back after the second, names a segment the second
/// deleted.
#[tokio::test]
async fn an_older_anchor_put_back_is_detected() {
    let (d, clock, log) = expired_log("replay", Durability::Fsync).await;
    let old_anchor = std::fs::read(d.join("ANCHOR")).unwrap();
    append(&log, &clock, 12, 20).await;
    clock.advance(2 * 86_400_000);
    append(&log, &clock, 20, 22).await;
    log.run_maintenance().unwrap();
    drop(log);
    assert_eq!(retention_records(&d).len(), 1, "the first pass's record went with its segment");
    verify(&d, &key()).unwrap();
    std::fs::write(d.join("ANCHOR"), &old_anchor).unwrap();
    let e = verify(&d, &key()).unwrap_err().to_string();
    assert!(e.contains("is missing (ANCHOR names it"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

/// A crash after the anchor was written and while the segments were deleted (oldest first)
/// leaves some of them: the log verifies meanwhile, and the next pass deletes them without a
/// second record. With every one of them back, it verifies from record 1.
#[tokio::test]
async fn an_interrupted_deletion_verifies_and_is_finished() {
    let d = dir("interrupted");
    let clock = Arc::new(TestClock::default());
    {
        // Written without retention (so no pass runs before the segments are copied).
        let config = AuditConfig { segment_bytes: 300, clock: clock.clone(), ..AuditConfig::new(d.clone()) };
        let log = AuditLog::open(config, key()).unwrap();
        append(&log, &clock, 0, 10).await;
        clock.advance(2 * 86_400_000);
        append(&log, &clock, 10, 12).await;
    }
    let before: Vec<(u64, Vec<u8>)> = present(&d).into_iter().map(|i| (i, std::fs::read(segment(&d, i)).unwrap())).collect();
    let log = open(&d, &clock, Durability::Fsync);
    log.run_maintenance().unwrap();
    // Closed, so that its maintenance thread (woken by the rotation the retention record
    // caused) cannot finish the deletion while the crash is staged: dropping the last handle
    // waits for that thread.
    drop(log);
    let first_kept = present(&d)[0];
    let deleted: Vec<&(u64, Vec<u8>)> = before.iter().filter(|(i, _)| *i < first_kept).collect();
    assert!(deleted.len() >= 3, "test setup: {deleted:?}");
    // The later half of them is back, as if the crash came midway.
    for (i, bytes) in &deleted[deleted.len() / 2..] {
        std::fs::write(segment(&d, *i), bytes).unwrap();
    }
    let report = verify(&d, &key()).unwrap();
    assert!(report.first_seq > 1 && report.anchor.is_some(), "{report:?}");
    let log = open(&d, &clock, Durability::Fsync);
    log.run_maintenance().unwrap();
    drop(log);
    assert_eq!(present(&d)[0], first_kept, "the next pass finishes the deletion");
    assert_eq!(retention_records(&d).len(), 1, "without a second record");
    // All of them back: the log verifies from record 1, through the anchor's position.
    for (i, bytes) in &deleted {
        std::fs::write(segment(&d, *i), bytes).unwrap();
    }
    assert_eq!(verify(&d, &key()).unwrap().first_seq, 1);
    let _ = std::fs::remove_dir_all(&d);
}

/// Retention verifies what it deletes: a modified record in an expired segment keeps every
/// segment (the evidence stays), and the pass says why.
#[tokio::test]
async fn a_tampered_segment_is_never_deleted() {
    let d = dir("tampered");
    let clock = Arc::new(TestClock::default());
    let log = open(&d, &clock, Durability::Fsync);
    append(&log, &clock, 0, 10).await;
    let p = segment(&d, 2);
    let text = std::fs::read_to_string(&p).unwrap().replace("Encrypt", "Decrypt");
    std::fs::write(&p, text).unwrap();
    clock.advance(2 * 86_400_000);
    append(&log, &clock, 10, 12).await;
    let e = log.run_maintenance().unwrap_err().to_string();
    assert!(e.contains("retention deletes nothing") && e.contains("segment-00000002.jsonl"), "{e}");
    assert_eq!(present(&d)[0], 1);
    assert!(!d.join("ANCHOR").exists());
    let _ = std::fs::remove_dir_all(&d);
}

/// A live segment older than the maximum age closes at the next commit (on the log's clock),
/// and by the periodic check when no commit comes.
#[tokio::test]
async fn segments_close_by_age() {
    let d = dir("age-commit");
    let clock = Arc::new(TestClock::default());
    let config = AuditConfig { segment_max_age: Some(Duration::from_secs(3600)), clock: clock.clone(), ..AuditConfig::new(d.clone()) };
    let log = AuditLog::open(config, key()).unwrap();
    append(&log, &clock, 0, 3).await;
    assert_eq!(present(&d), [1]);
    clock.advance(3_600_000);
    append(&log, &clock, 3, 4).await;
    assert_eq!(present(&d), [1, 2], "the commit after the age passed starts segment 2");
    assert_eq!(verify(&d, &key()).unwrap().records, 4);
    drop(log);
    let _ = std::fs::remove_dir_all(&d);

    let d = dir("age-idle");
    let clock = Arc::new(TestClock::default());
    let config = AuditConfig { segment_max_age: Some(Duration::from_secs(1)), clock: clock.clone(), ..AuditConfig::new(d.clone()) };
    let log = AuditLog::open(config, key()).unwrap();
    append(&log, &clock, 0, 1).await;
    // A liveness bound, not a timing assertion: the maintenance thread checks every second.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(segment(&d, 1)).unwrap().contains("{\"checkpoint\":") {
        assert!(std::time::Instant::now() < deadline, "the idle segment never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    verify(&d, &key()).unwrap();
    append(&log, &clock, 1, 2).await;
    assert_eq!(present(&d), [1, 2]);
    assert_eq!(verify(&d, &key()).unwrap().records, 2);
    let _ = std::fs::remove_dir_all(&d);
}
