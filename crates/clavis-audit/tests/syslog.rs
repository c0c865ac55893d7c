//! The syslog stream through the public API: committed records reach a TCP collector as RFC 5424
//! messages in RFC 6587 octet-counted frames, in order; a collector that never reads, or none at
//! all, never holds up or fails an append.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failure should stop the test loudly.

use clavis_audit::verify::verify;
use clavis_audit::{AuditConfig, AuditLog, SyslogSink};
use clavis_core::audit::AuditSink;
use clavis_crypto::SecretBytes;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("clavis-audit-syslog-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn key() -> SecretBytes {
    SecretBytes::new(vec![7u8; 32])
}

fn open(d: &std::path::Path, syslog: &str) -> AuditLog {
    let sink: SyslogSink = syslog.parse().unwrap();
    AuditLog::open(AuditConfig { syslog: Some(sink), ..AuditConfig::new(d.to_owned()) }, key()).unwrap()
}

#[tokio::test]
async fn records_reach_a_tcp_collector_as_octet_counted_rfc5424_messages() {
    let d = dir("tcp");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = open(&d, &format!("tcp://127.0.0.1:{port}"));
    for i in 0..3 {
        log.append(format!("{{\"eventName\":\"Encrypt\",\"n\":{i}}}").into_bytes()).await.unwrap();
    }
    let messages = tokio::task::spawn_blocking(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let (mut buf, mut messages) = (Vec::new(), Vec::new());
        while messages.len() < 3 {
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).unwrap();
            assert!(n > 0, "the stream closed early");
            buf.extend_from_slice(&chunk[..n]);
            while let Some(sp) = buf.iter().position(|b| *b == b' ') {
                let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().expect("an octet count");
                if buf.len() < sp + 1 + len {
                    break;
                }
                messages.push(String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap());
                buf.drain(..sp + 1 + len);
            }
        }
        messages
    })
    .await
    .unwrap();
    let pid = std::process::id();
    for (i, m) in messages.iter().enumerate() {
        assert!(m.starts_with("<86>1 "), "authpriv.info: {m}");
        let (header, record) = m.split_once(&format!(" clavis {pid} audit - ")).expect("APP-NAME, PROCID, MSGID and no structured data");
        assert_eq!(header.split(' ').count(), 3, "PRI+VERSION, TIMESTAMP, HOSTNAME: {header}");
        let record: serde_json::Value = serde_json::from_str(record).unwrap();
        assert_eq!((record["seq"].as_u64(), record["event"]["n"].as_u64()), (Some(i as u64 + 1), Some(i as u64)), "{record}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// A collector that accepts connections and never reads: its socket buffers fill, and the
/// stream's writes time out, but appends go on (5000 records of 2 KiB, more than the buffers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_reads_never_holds_up_the_log() {
    let d = dir("stalled");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let log = open(&d, &format!("tcp://127.0.0.1:{port}"));
    let pad = "x".repeat(2048);
    let appends = async {
        for i in 0..5000 {
            log.append(format!("{{\"n\":{i},\"pad\":\"{pad}\"}}").into_bytes()).await.unwrap();
        }
    };
    // A liveness bound, not a timing assertion: a stream that blocked the log never completes.
    tokio::time::timeout(Duration::from_secs(120), appends).await.expect("the log stalled behind its syslog stream");
    assert_eq!(verify(&d, &key()).unwrap().records, 5000);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn an_absent_collector_never_fails_an_append() {
    let d = dir("absent");
    let log = open(&d, &format!("unix:{}", d.join("no-such.sock").display()));
    for i in 0..100 {
        log.append(format!("{{\"n\":{i}}}").into_bytes()).await.unwrap();
    }
    assert_eq!(verify(&d, &key()).unwrap().records, 100);
    let _ = std::fs::remove_dir_all(&d);
}
