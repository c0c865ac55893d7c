//! The syslog stream: every committed record also goes to a syslog collector as one RFC 5424
//! message, framed by octet counting (RFC 6587, `LEN SP MSG`), over TCP or a Unix stream
//! socket.
//!
//! Best effort, like the stream sink: the writer hands each committed batch to this module's
//! thread without waiting (a full queue drops the batch, counted in a warning), so a slow,
//! absent or failing collector never blocks or fails a request; the thread reconnects with
//! backoff and counts the batches it could not deliver meanwhile. The local log stays the
//! record of truth.

use crate::writer::STREAM_QUEUE;
use crate::{AuditError, io};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

/// Where the syslog stream goes, and under which facility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogSink {
    /// The collector.
    pub target: SyslogTarget,
    /// The syslog facility code (RFC 5424 section 6.2.1): 10 (authpriv) unless the address says
    /// otherwise.
    pub facility: u8,
}

/// A syslog collector's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    /// `HOST:PORT`, resolved at each connection.
    Tcp(String),
    /// A Unix stream socket.
    Unix(PathBuf),
}

/// The facilities an address may name: security messages go to auth or authpriv, or to a
/// local facility that the collector routes.
const FACILITIES: [(&str, u8); 10] = [
    ("auth", 4),
    ("authpriv", 10),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// Severity of every message: informational (an audit record is neither an error nor a warning
/// about the service).
const SEVERITY_INFO: u16 = 6;

impl std::str::FromStr for SyslogSink {
    type Err = String;

    /// `tcp://HOST:PORT` or `unix:/PATH`, optionally followed by `?facility=NAME` (`auth`,
    /// `authpriv`, `local0` to `local7`).
    fn from_str(text: &str) -> Result<SyslogSink, String> {
        let usage = || {
            format!(
                "the audit syslog address must be `tcp://HOST:PORT` or `unix:/PATH` (with `?facility=auth|authpriv|local0..local7` if wanted), not `{text}`"
            )
        };
        let (address, facility) = match text.rsplit_once("?facility=") {
            Some((address, name)) => {
                let code = FACILITIES.iter().find(|(n, _)| *n == name).map(|(_, c)| *c).ok_or_else(usage)?;
                (address, code)
            }
            None => (text, 10),
        };
        let target = if let Some(host_port) = address.strip_prefix("tcp://") {
            let (host, port) = host_port.rsplit_once(':').ok_or_else(usage)?;
            if host.is_empty() || !port.parse::<u16>().is_ok_and(|p| p != 0) {
                return Err(usage());
            }
            SyslogTarget::Tcp(host_port.to_owned())
        } else if let Some(path) = address.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(usage());
            }
            SyslogTarget::Unix(PathBuf::from(path))
        } else {
            return Err(usage());
        };
        Ok(SyslogSink { target, facility })
    }
}

/// How long a connection attempt or a write may take before the collector counts as unreachable.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The first and the longest wait before reconnecting after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Starts the thread that sends committed batches to the collector; returns its queue.
pub(crate) fn start(sink: SyslogSink) -> Result<SyncSender<Arc<[u8]>>, AuditError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<[u8]>>(STREAM_QUEUE);
    std::thread::Builder::new()
        .name("clavis-audit-syslog".into())
        .spawn(move || run(&sink, &rx))
        .map_err(io("starting the audit syslog thread"))?;
    Ok(tx)
}

/// An open connection to the collector.
enum Connection {
    Tcp(std::net::TcpStream),
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixStream),
}

impl Connection {
    fn open(target: &SyslogTarget) -> std::io::Result<Connection> {
        match target {
            SyslogTarget::Tcp(address) => {
                let mut last = None;
                for a in std::net::ToSocketAddrs::to_socket_addrs(address.as_str())? {
                    match std::net::TcpStream::connect_timeout(&a, IO_TIMEOUT) {
                        Ok(s) => {
                            s.set_write_timeout(Some(IO_TIMEOUT))?;
                            s.set_nodelay(true)?;
                            return Ok(Connection::Tcp(s));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| std::io::Error::other(format!("{address} resolves to no address"))))
            }
            #[cfg(unix)]
            SyslogTarget::Unix(path) => {
                let s = std::os::unix::net::UnixStream::connect(path)?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok(Connection::Unix(s))
            }
            #[cfg(not(unix))]
            SyslogTarget::Unix(_) => Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "Unix sockets need a Unix system")),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Connection::Tcp(s) => s.write_all(bytes).and_then(|_| s.flush()),
            #[cfg(unix)]
            Connection::Unix(s) => s.write_all(bytes).and_then(|_| s.flush()),
        }
    }
}

/// The thread: frames each batch and sends it, reconnecting with backoff.
fn run(sink: &SyslogSink, rx: &Receiver<Arc<[u8]>>) {
    let hostname = hostname();
    let procid = std::process::id();
    // Facilities are 0 to 23 (RFC 5424 section 6.2.1).
    let pri = u16::from(sink.facility.min(23)) * 8 + SEVERITY_INFO;
    let collector = match &sink.target {
        SyslogTarget::Tcp(a) => format!("tcp://{a}"),
        SyslogTarget::Unix(p) => format!("unix:{}", p.display()),
    };
    let mut connection: Option<Connection> = None;
    let (mut backoff, mut retry_at): (Duration, Option<Instant>) = (BACKOFF_MIN, None);
    // Batches not delivered since the collector was last reachable.
    let mut dropped = 0u64;
    for batch in rx {
        let bytes = frames(&batch, pri, &timestamp(), &hostname, procid);
        let mut sent = false;
        // Two tries: a connection the collector closed since the last batch fails only when
        // written to, and the batch then goes through a new connection at once.
        for _ in 0..2 {
            if connection.is_none() {
                if retry_at.is_some_and(|t| Instant::now() < t) {
                    break;
                }
                match Connection::open(&sink.target) {
                    Ok(c) => (connection, backoff, retry_at) = (Some(c), BACKOFF_MIN, None),
                    Err(e) => {
                        if dropped == 0 {
                            tracing::warn!(%collector, error = %e, "cannot reach the audit syslog collector; retrying with backoff (the local audit log is unaffected)");
                        }
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        break;
                    }
                }
            }
            if let Some(c) = &mut connection {
                match c.send(&bytes) {
                    Ok(()) => {
                        sent = true;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(%collector, error = %e, "audit syslog write failed; reconnecting (the local audit log is unaffected)");
                        connection = None;
                    }
                }
            }
        }
        if !sent {
            dropped += 1;
        } else if dropped > 0 {
            tracing::warn!(
                %collector,
                batches = dropped,
                "the audit syslog collector was unreachable; batches were left out of the syslog stream (the local audit log has them)"
            );
            dropped = 0;
        }
    }
}

/// The RFC 6587 octet-counted frames of one committed batch: one RFC 5424 message per record
/// line, `<PRI>1 TIMESTAMP HOSTNAME clavis PROCID audit - RECORD`, where RECORD is the record's
/// line as in the segment (`{"seq":..,"prev":..,"event":{..},"mac":..}`) without its end of line.
/// The message is MSG-ANY (no byte-order mark): JSON text, UTF-8 where an event has non-ASCII.
pub(crate) fn frames(batch: &[u8], pri: u16, timestamp: &str, hostname: &str, procid: u32) -> Vec<u8> {
    let header = format!("<{pri}>1 {timestamp} {hostname} clavis {procid} audit - ");
    let mut out = Vec::with_capacity(batch.len() + 96 * (1 + batch.len() / 512));
    for line in batch.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        out.extend_from_slice((header.len() + line.len()).to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(line);
    }
    out
}

/// Now, as an RFC 5424 TIMESTAMP in UTC with milliseconds (`2026-11-30T03:19:28.123Z`): when the
/// message was made; the event's own time is its `eventTime`.
fn timestamp() -> String {
    let ms = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(0);
    let seconds = clavis_core::audit::event_time(ms);
    format!("{}.{:03}Z", seconds.get(..19).unwrap_or(&seconds), ms.rem_euclid(1000))
}

/// This machine's name for the HOSTNAME field: printable ASCII without spaces, at most 255
/// characters, or `-` (RFC 5424's NILVALUE) when it cannot be read.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name.trim().chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    if name.is_empty() { "-".to_owned() } else { name }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Test code: a failure should stop the test loudly.
    use super::*;

    #[test]
    fn addresses() {
        let tcp: SyslogSink = "tcp://127.0.0.1:6514".parse().unwrap();
        assert_eq!(tcp, SyslogSink { target: SyslogTarget::Tcp("127.0.0.1:6514".into()), facility: 10 });
        let v6: SyslogSink = "tcp://[::1]:514?facility=local3".parse().unwrap();
        assert_eq!(v6, SyslogSink { target: SyslogTarget::Tcp("[::1]:514".into()), facility: 19 });
        let unix: SyslogSink = "unix:/run/syslog.sock?facility=auth".parse().unwrap();
        assert_eq!(unix, SyslogSink { target: SyslogTarget::Unix("/run/syslog.sock".into()), facility: 4 });
        for bad in
            ["", "udp://h:514", "tcp://h", "tcp://:514", "tcp://h:0", "tcp://h:99999", "unix:", "tcp://h:514?facility=kern", "/dev/log"]
        {
            assert!(bad.parse::<SyslogSink>().is_err(), "{bad}");
        }
    }

    /// Each record line becomes one frame whose length counts the message's octets exactly
    /// (multi-byte UTF-8 included).
    #[test]
    fn frames_count_octets() {
        let batch = "{\"seq\":1,\"event\":{\"d\":\"é\"}}\n{\"seq\":2}\n".as_bytes();
        let out = frames(batch, 86, "2026-11-30T03:19:28.123Z", "host", 42);
        let mut rest = out.as_slice();
        let mut messages = Vec::new();
        while !rest.is_empty() {
            let sp = rest.iter().position(|b| *b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
            messages.push(String::from_utf8(rest[sp + 1..sp + 1 + len].to_vec()).unwrap());
            rest = &rest[sp + 1 + len..];
        }
        assert_eq!(
            messages,
            [
                "<86>1 2026-11-30T03:19:28.123Z host clavis 42 audit - {\"seq\":1,\"event\":{\"d\":\"é\"}}",
                "<86>1 2026-11-30T03:19:28.123Z host clavis 42 audit - {\"seq\":2}"
            ]
        );
        let stamp = timestamp();
        assert_eq!((stamp.len(), &stamp[10..11], &stamp[19..20], &stamp[23..]), (24, "T", ".", "Z"), "{stamp}");
    }
}
