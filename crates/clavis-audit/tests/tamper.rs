//! The audit log through its public API: records written by the writer verify; every kind of
//! tampering is detected and located; a failed write is never acknowledged and the writer
//! recovers; a restart continues the chain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failure should stop the test loudly.

use clavis_audit::verify::{Filter, export, verify};
use clavis_audit::{AuditConfig, AuditLog};
use clavis_core::audit::AuditSink;
use clavis_crypto::SecretBytes;
use std::path::{Path, PathBuf};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("clavis-audit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn key() -> SecretBytes {
    SecretBytes::new(vec![7u8; 32])
}

async fn write_records(d: &Path, n: usize, segment_bytes: u64) {
    let log = AuditLog::open(AuditConfig { segment_bytes, ..AuditConfig::new(d.to_owned()) }, key()).unwrap();
    for i in 0..n {
        let ev = format!("{{\"eventName\":\"Encrypt\",\"eventTime\":\"2026-01-01T00:00:{i:02}Z\",\"n\":{i}}}");
        log.append(ev.into_bytes()).await.unwrap();
    }
}

fn segment(d: &Path, i: u64) -> PathBuf {
    d.join(format!("segment-{i:08}.jsonl"))
}

/// The segment's lines (without the zero bytes preallocated after a live segment's records).
fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p).unwrap().trim_end_matches('\0').lines().map(str::to_owned).collect()
}

fn write_lines(p: &Path, lines: &[String]) {
    std::fs::write(p, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

/// A fresh copy of a verified log with `tamper` applied; returns the verification error.
async fn tampered(name: &str, segment_bytes: u64, tamper: impl FnOnce(&Path)) -> String {
    let d = dir(name);
    write_records(&d, 10, segment_bytes).await;
    verify(&d, &key()).unwrap();
    tamper(&d);
    verify(&d, &key()).unwrap_err().to_string()
}

#[tokio::test]
async fn intact_log_verifies_across_segments_and_restarts() {
    let d = dir("intact");
    write_records(&d, 5, 300).await;
    write_records(&d, 5, 300).await; // reopen: the chain continues
    let report = verify(&d, &key()).unwrap();
    assert_eq!(report.records, 10);
    assert!(report.segments > 2, "small segments must rotate: {report:?}");
    let mut out = Vec::new();
    let n = export(&d, &key(), &Filter { since: Some("2026-01-01T00:00:03Z".into()), ..Filter::default() }, &mut out).unwrap();
    assert_eq!(n, 4, "each of the two runs wrote records 3 and 4 at or after :03");
    assert!(verify(&d, &SecretBytes::new(vec![8u8; 32])).is_err(), "another key must not verify");
}

#[tokio::test]
async fn flipped_byte_is_located() {
    let e = tampered("flip", 1 << 20, |d| {
        let p = segment(d, 1);
        let mut l = lines(&p);
        l[3] = l[3].replace("Encrypt", "Decrypt");
        write_lines(&p, &l);
    })
    .await;
    assert!(e.contains("segment-00000001.jsonl:4") && e.contains("modified"), "{e}");
}

#[tokio::test]
async fn deleted_record_is_located() {
    let e = tampered("delete", 1 << 20, |d| {
        let p = segment(d, 1);
        let mut l = lines(&p);
        l.remove(4);
        write_lines(&p, &l);
    })
    .await;
    assert!(e.contains("segment-00000001.jsonl:5") && e.contains("expected record 5"), "{e}");
}

#[tokio::test]
async fn swapped_records_are_located() {
    let e = tampered("swap", 1 << 20, |d| {
        let p = segment(d, 1);
        let mut l = lines(&p);
        l.swap(2, 3);
        write_lines(&p, &l);
    })
    .await;
    assert!(e.contains("segment-00000001.jsonl:3"), "{e}");
}

#[tokio::test]
async fn inserted_record_is_located() {
    let e = tampered("insert", 1 << 20, |d| {
        let p = segment(d, 1);
        let mut l = lines(&p);
        let copy = l[1].clone();
        l.insert(6, copy);
        write_lines(&p, &l);
    })
    .await;
    assert!(e.contains("segment-00000001.jsonl:7"), "{e}");
}

#[tokio::test]
async fn truncated_last_record_is_detected() {
    let e = tampered("truncate", 1 << 20, |d| {
        let p = segment(d, 1);
        let mut l = lines(&p);
        l.pop();
        write_lines(&p, &l);
    })
    .await;
    assert!(e.contains("truncated") && e.contains("record 10"), "{e}");
    // A torn last line is a truncation too.
    let e = tampered("torn", 1 << 20, |d| {
        let p = segment(d, 1);
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text.trim_end_matches('\0');
        std::fs::write(&p, &text[..text.len() - 20]).unwrap();
    })
    .await;
    assert!(e.contains("segment-00000001.jsonl:10") && e.contains("truncated"), "{e}");
}

#[tokio::test]
async fn removed_segment_or_checkpoint_is_detected() {
    let e = tampered("drop-middle", 300, |d| std::fs::remove_file(segment(d, 2)).unwrap()).await;
    assert!(e.contains("segment 2 is missing"), "{e}");
    let e = tampered("drop-checkpoint", 300, |d| {
        let p = segment(d, 1);
        let mut l = lines(&p);
        l.pop();
        write_lines(&p, &l);
    })
    .await;
    assert!(e.contains("segment-00000001.jsonl") && e.contains("checkpoint"), "{e}");
    let e = tampered("drop-last-segment", 300, |d| {
        let last = (1..).take_while(|i| segment(d, *i).exists()).last().unwrap();
        std::fs::remove_file(segment(d, last)).unwrap();
    })
    .await;
    assert!(e.contains("truncated") || e.contains("HEAD"), "{e}");
}

#[tokio::test]
async fn restart_refuses_a_truncated_log() {
    let d = dir("restart-truncated");
    write_records(&d, 3, 1 << 20).await;
    let p = segment(&d, 1);
    let mut l = lines(&p);
    l.pop();
    write_lines(&p, &l);
    let err = AuditLog::open(AuditConfig { segment_bytes: 1 << 20, ..AuditConfig::new(d.clone()) }, key()).err().expect("must refuse");
    assert!(err.to_string().contains("HEAD records sequence 3"), "{err}");
}

#[cfg(unix)]
#[tokio::test]
async fn full_disk_fails_closed_and_recovers() {
    let d = dir("full");
    let log = AuditLog::open(AuditConfig { segment_bytes: 1, ..AuditConfig::new(d.clone()) }, key()).unwrap();
    log.append(b"{\"n\":1}".to_vec()).await.unwrap();
    // The next record rotates into segment 2; make that "file" a full device.
    std::os::unix::fs::symlink("/dev/full", segment(&d, 2)).unwrap();
    assert!(log.append(b"{\"n\":2}".to_vec()).await.is_err(), "a record that cannot be written must not be acknowledged");
    assert!(log.append(b"{\"n\":3}".to_vec()).await.is_err());
    std::fs::remove_file(segment(&d, 2)).unwrap();
    log.append(b"{\"n\":4}".to_vec()).await.unwrap();
    let report = verify(&d, &key()).unwrap();
    assert_eq!(report.records, 2, "only acknowledged records are in the log");
}

/// Requests can be cancelled (a client disconnects) while their record waits for a commit:
/// that must never stop later records from being committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_appends_never_stall_the_log() {
    let d = dir("cancelled");
    let log = AuditLog::open(AuditConfig { segment_bytes: 1 << 20, ..AuditConfig::new(d.clone()) }, key()).unwrap();
    for round in 0..40 {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let l = log.clone();
                tokio::spawn(async move { l.append(format!("{{\"round\":{round},\"i\":{i}}}").into_bytes()).await })
            })
            .collect();
        // Let them queue (and one commit start) before half of them are cancelled.
        tokio::time::sleep(std::time::Duration::from_micros(100 * (round % 5))).await;
        for h in handles.iter().step_by(2) {
            h.abort();
        }
        for h in handles {
            let _ = h.await;
        }
    }
    // A liveness check, not a timing one: without a committer that outlives cancelled
    // requests, this append would wait forever.
    tokio::time::timeout(std::time::Duration::from_secs(60), log.append(b"{\"last\":true}".to_vec()))
        .await
        .expect("the log stalled after cancelled appends")
        .unwrap();
    verify(&d, &key()).unwrap();
}

/// Power lost during a commit: the batch's later page reached the disk, its earlier one did
/// not (zeros, a "hole"), and HEAD, which is written after each commit, still names the last
/// acknowledged record. The log is intact up to the hole; the restart removes the half-written
/// batch and continues the chain from the last acknowledged record.
#[tokio::test]
async fn a_half_written_batch_after_power_loss_is_removed_not_chained() {
    let d = dir("hole");
    write_records(&d, 8, 1 << 20).await;
    let head_after_8 = std::fs::read(d.join("HEAD")).unwrap();
    write_records(&d, 2, 1 << 20).await;
    // Records 9 and 10 become the batch that was never acknowledged: record 9 is lost (zeros),
    // record 10 is on disk, HEAD is the one written after record 8.
    let p = segment(&d, 1);
    let mut bytes = std::fs::read(&p).unwrap();
    let starts: Vec<usize> = std::iter::once(0).chain(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).collect();
    let (nine, ten) = (starts[8], starts[9]);
    assert!(bytes[ten..].starts_with(b"{\"seq\":10,"), "test setup: line 10 is record 10");
    bytes[nine..ten].fill(0);
    std::fs::write(&p, &bytes).unwrap();
    std::fs::write(d.join("HEAD"), &head_after_8).unwrap();

    let report = verify(&d, &key()).unwrap();
    assert_eq!(report.records, 8, "the log ends at the hole");
    assert!(report.unacknowledged_tail_bytes > 0, "{report:?}");
    let torn_record_10 = bytes[ten..].split(|b| *b == b'\n').next().unwrap().to_vec();

    // Restart: the half-written batch goes, and new records follow record 8.
    write_records(&d, 2, 1 << 20).await;
    let report = verify(&d, &key()).unwrap();
    assert_eq!(report.records, 10);
    assert_eq!(report.unacknowledged_tail_bytes, 0);
    let l = lines(&p);
    assert_eq!(l.len(), 10);
    assert!(l[8].starts_with("{\"seq\":9,") && l[9].starts_with("{\"seq\":10,"));
    assert!(l[9].contains("\"n\":1"), "record 10 is the new one, not the half-written batch's: {}", l[9]);
    // The half-written batch was set aside, not destroyed.
    let side: Vec<_> =
        std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).filter(|p| p.to_string_lossy().contains("torn-00000001-")).collect();
    assert_eq!(side.len(), 1, "{side:?}");
    let kept = std::fs::read(&side[0]).unwrap();
    assert!(kept.windows(torn_record_10.len()).any(|w| w == torn_record_10.as_slice()));
}

/// The same hole without a stale HEAD is records removed from the end: still detected.
#[tokio::test]
async fn zeroed_last_records_with_a_current_head_are_detected() {
    let e = tampered("zeroed-tail", 1 << 20, |d| {
        let p = segment(d, 1);
        let mut bytes = std::fs::read(&p).unwrap();
        let nl: Vec<usize> = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect();
        bytes[nl[7]..nl[8]].fill(0);
        std::fs::write(&p, &bytes).unwrap();
    })
    .await;
    assert!(e.contains("segment-00000001.jsonl:9") && e.contains("acknowledged record 10"), "{e}");
}

/// Zeros inside acknowledged records (a lost sector, a stray write) are not a half-written
/// batch: the server refuses to start and changes nothing, instead of cutting the log there.
#[tokio::test]
async fn zeros_inside_acknowledged_records_stop_the_start_and_change_nothing() {
    let d = dir("zeroed-middle");
    write_records(&d, 10, 1 << 20).await;
    let p = segment(&d, 1);
    let mut bytes = std::fs::read(&p).unwrap();
    let nl: Vec<usize> = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect();
    bytes[nl[3] + 10..nl[4] - 10].fill(0);
    std::fs::write(&p, &bytes).unwrap();
    let err = AuditLog::open(AuditConfig { segment_bytes: 1 << 20, ..AuditConfig::new(d.clone()) }, key()).err().expect("must refuse");
    assert!(err.to_string().contains("acknowledged record 6"), "{err}");
    assert_eq!(std::fs::read(&p).unwrap(), bytes, "the segment must be left as it was");
    let e = verify(&d, &key()).unwrap_err().to_string();
    assert!(e.contains("segment-00000001.jsonl:5") && e.contains("damaged"), "{e}");
}

/// A stream nobody reads (a FIFO without a reader: even opening it blocks) never holds up the
/// log: appends complete and the local log has every record.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_stream_never_holds_up_the_log() {
    let d = dir("blocked-stream");
    std::fs::create_dir_all(&d).unwrap();
    let fifo = d.join("siem.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let config =
        AuditConfig { segment_bytes: 1 << 20, stream: Some(clavis_audit::StreamSink::File(fifo)), ..AuditConfig::new(d.join("audit")) };
    let log = AuditLog::open(config, key()).unwrap();
    let appends = async {
        for i in 0..5000 {
            log.append(format!("{{\"n\":{i}}}").into_bytes()).await.unwrap();
        }
    };
    // A liveness bound, not a timing assertion: with a blocking stream this never completes.
    tokio::time::timeout(std::time::Duration::from_secs(120), appends).await.expect("the log stalled behind its stream");
    assert_eq!(verify(&d.join("audit"), &key()).unwrap().records, 5000);
}

/// LookupEvents reads the live log while it is written: a read racing commits must never
/// report truncation or damage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifying_while_the_log_is_written_never_reports_damage() {
    let d = dir("live-verify");
    let log = AuditLog::open(AuditConfig { segment_bytes: 64 * 1024, ..AuditConfig::new(d.clone()) }, key()).unwrap();
    log.append(b"{\"n\":0}".to_vec()).await.unwrap();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let l = log.clone();
            tokio::spawn(async move {
                for i in 0..500 {
                    l.append(format!("{{\"w\":{w},\"i\":{i}}}").into_bytes()).await.unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let d = d.clone();
        tokio::task::spawn_blocking(move || {
            let mut checks = 0;
            while checks < 40 {
                if let Err(e) = verify(&d, &key()) {
                    panic!("verify failed during writes after {checks} checks: {e}");
                }
                checks += 1;
            }
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    reader.await.unwrap();
    assert_eq!(verify(&d, &key()).unwrap().records, 4_001);
}

/// The same race made likely. A reader races a rotation when it reaches the zeros after the
/// live segment's records and, before it reads on, the segment's last batch is written there
/// and the next commit closes the segment with its checkpoint: it then reads zeros followed by
/// records and a valid checkpoint, damage if the file were at rest. Short logs verify quickly,
/// so many fresh ones, each with 64 KiB segments and writers enough for a few rotations, give
/// many verifications near a rotation. No verification while they write may report damage.
/// (Counting a batch that landed mid-read as unacknowledged tail bytes is a report, not an
/// error, and the same race without a rotation: it is not asserted, as CI showed it can happen.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifying_fresh_logs_through_their_rotations_never_reports_damage() {
    const ROUNDS: usize = 16;
    const WRITERS: usize = 8;
    const EACH: usize = 120;
    let mut checks = 0u64;
    for round in 0..ROUNDS {
        let d = dir(&format!("live-verify-rotating-{round}"));
        let log = AuditLog::open(AuditConfig { segment_bytes: 64 * 1024, ..AuditConfig::new(d.clone()) }, key()).unwrap();
        log.append(b"{\"n\":0}".to_vec()).await.unwrap();
        let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let reader = {
            let (d, writing) = (d.clone(), writing.clone());
            tokio::task::spawn_blocking(move || {
                let mut checks = 0u64;
                while writing.load(std::sync::atomic::Ordering::SeqCst) {
                    // A batch that lands while the reader reads the live end may still be counted
                    // as unacknowledged tail bytes (a report, not an error: the next read sees it
                    // whole); what must never happen is a report of damage.
                    if let Err(e) = verify(&d, &key()) {
                        panic!("round {round}: verify failed during writes after {checks} checks: {e}");
                    }
                    checks += 1;
                }
                checks
            })
        };
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let l = log.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        l.append(format!("{{\"w\":{w},\"i\":{i}}}").into_bytes()).await.unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        writing.store(false, std::sync::atomic::Ordering::SeqCst);
        checks += reader.await.unwrap();
        let report = verify(&d, &key()).unwrap();
        assert_eq!(report.records, 1 + (WRITERS * EACH) as u64);
        assert!(report.segments >= 2, "the segments must rotate: {report:?}");
        let _ = std::fs::remove_dir_all(&d);
    }
    eprintln!("{checks} verifications during the writes");
}

/// HEAD exists (whole) before the first record is written, so a reader of a new log never finds
/// records without a HEAD, or an empty one.
#[tokio::test]
async fn a_new_log_has_its_head_before_its_first_record() {
    let d = dir("new-head");
    let log = AuditLog::open(AuditConfig { segment_bytes: 1 << 20, ..AuditConfig::new(d.clone()) }, key()).unwrap();
    assert_eq!(std::fs::read(d.join("HEAD")).unwrap().len(), 256, "HEAD is written whole when the log is opened");
    assert_eq!(verify(&d, &key()).unwrap().records, 0);
    log.append(b"{\"n\":1}".to_vec()).await.unwrap();
    assert_eq!(verify(&d, &key()).unwrap().records, 1);
    let names: Vec<String> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "no temporary file is left behind: {names:?}");
}

/// `write` durability: records are readable as soon as `append` returns (before any sync),
/// HEAD pins them only once the background sync has run, segments rotate, a reopen in either
/// mode continues the chain, and the whole log verifies.
#[tokio::test]
async fn write_durability_verifies_and_continues_the_chain() {
    let d = dir("write-durability");
    let config = |durability| AuditConfig { segment_bytes: 400, durability, ..AuditConfig::new(d.clone()) };
    {
        let log = AuditLog::open(config(clavis_audit::Durability::Write), key()).unwrap();
        for i in 0..20 {
            log.append(format!("{{\"eventName\":\"Encrypt\",\"n\":{i}}}").into_bytes()).await.unwrap();
        }
        // Written to the operating system before append returned: a reader sees every record.
        assert_eq!(verify(&d, &key()).unwrap().records, 20);
        // The syncer pins the newest synced record in HEAD within its interval.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let head: serde_json::Value = serde_json::from_str(std::fs::read_to_string(d.join("HEAD")).unwrap().trim()).unwrap();
            if head["seq"] == 20 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "HEAD never reached the last record: {head}");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    {
        let log = AuditLog::open(config(clavis_audit::Durability::Fsync), key()).unwrap();
        log.append(b"{\"eventName\":\"Decrypt\"}".to_vec()).await.unwrap();
    }
    {
        let log = AuditLog::open(config(clavis_audit::Durability::Write), key()).unwrap();
        log.append(b"{\"eventName\":\"Decrypt\"}".to_vec()).await.unwrap();
    }
    let report = verify(&d, &key()).unwrap();
    assert_eq!(report.records, 22);
    assert!(report.segments > 2, "small segments must rotate: {report:?}");
}
