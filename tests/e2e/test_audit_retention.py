"""Audit retention and the syslog stream through the real binary (issue #20): segments close by
size and by age, `--audit-retain-days` deletes closed segments whose records are older (on the
server's test clock, moved two days on) while `clavis audit verify` still passes on what remains,
the deletion is on record, and removing the anchor is detected; every record also reaches a
syslog collector (a Python TCP listener and a Unix socket listener that parse RFC 6587
octet-counted RFC 5424 frames), and an absent collector never fails a request."""

import json
import re
import shutil
import socket
import threading
import time

from conftest import Server
from harness import run_clavis

# RFC 5424: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD SP MSG
SYSLOG_MESSAGE = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z) (?P<host>[!-~]{1,255})"
    r" clavis (?P<pid>\d+) audit - (?P<msg>.*)\Z",
    re.S,
)
AUTHPRIV_INFO = 10 * 8 + 6
LOCAL0_INFO = 16 * 8 + 6


def audit(data_dir, *args, check=True):
    p = run_clavis("audit", *args, "--data-dir", data_dir, check=False)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def events(data_dir):
    return [json.loads(ln) for ln in audit(data_dir, "export").stdout.splitlines() if ln.strip()]


def segments(data_dir):
    return sorted(p.name for p in (data_dir / "audit").glob("segment-*.jsonl"))


def wait_for(condition, what, timeout=30):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_retention_deletes_old_segments_and_the_rest_verifies(tmp_root):
    s = Server(
        tmp_root / "retention",
        args=["--dangerous-test-clock", "--audit-segment-bytes", "4096", "--audit-segment-max-age", "1h", "--audit-retain-days", "1"],
    ).start()
    try:
        kms = s.client()
        key = kms.create_key(Description="retention")["KeyMetadata"]["KeyId"]
        old_ids = [kms.encrypt(KeyId=key, Plaintext=b"old")["ResponseMetadata"]["RequestId"] for _ in range(30)]
        before = segments(s.data_dir)
        assert len(before) >= 3 and before[0] == "segment-00000001.jsonl", before

        status, body, _ = s.raw("ClavisAdmin.AdvanceTestClock", json.dumps({"Seconds": 2 * 86400, "RunScheduler": False}))
        assert status == 200, body
        # The next commit closes the live segment (older than an hour on the server's clock), and
        # retention then deletes every closed segment whose newest record is over a day old.
        new_ids = [kms.encrypt(KeyId=key, Plaintext=b"new")["ResponseMetadata"]["RequestId"] for _ in range(3)]
        wait_for(lambda: "segment-00000001.jsonl" not in segments(s.data_dir), "retention to delete segment 1")
        assert (s.data_dir / "audit" / "ANCHOR").exists()
        new_ids.append(kms.list_keys()["ResponseMetadata"]["RequestId"])

        # Verified while the server runs, and what it says.
        out = audit(s.data_dir, "verify").stdout
        assert "audit log OK" in out and "deleted by retention" in out, out
        evs = events(s.data_dir)
        recorded = {e.get("requestID") for e in evs}
        assert all(r in recorded for r in new_ids), "the records after the deletion are all there"
        assert not any(r in recorded for r in old_ids), "the old records went with their segments"
        retention = [e for e in evs if e["eventName"] == "AuditRetention"]
        assert len(retention) == 1, retention
        data = retention[0]["additionalEventData"]
        assert retention[0]["eventSource"] == "audit.clavis"
        assert data["deletedSegments"]["first"] == 1 and data["deletedRecords"]["first"] == 1
        kept = segments(s.data_dir)
        assert f"segment-{data['anchor']['segment']:08}.jsonl" == kept[0], (data, kept)
        assert all(name not in kept for name in before[:-1]), "every closed old segment went"
    finally:
        s.stop()

    # At rest, after a restart that continues the chain, it still verifies.
    s.start()
    s.client().list_keys()
    s.stop()
    assert "deleted by retention" in audit(s.data_dir, "verify").stdout

    # A copy without the anchor: the deleted segments are now missing, as an attacker's deletion.
    copy = tmp_root / "retention-copy"
    shutil.copytree(s.data_dir, copy)
    (copy / "audit" / "ANCHOR").unlink()
    p = audit(copy, "verify", check=False)
    assert p.returncode != 0 and "segment 1 is missing" in p.stderr, p.stderr


def test_idle_segment_closes_by_age(tmp_root):
    s = Server(tmp_root / "age", args=["--audit-segment-max-age", "2s"]).start()
    try:
        s.client().list_keys()
        first = s.data_dir / "audit" / "segment-00000001.jsonl"
        # No request comes: the periodic check closes the segment once it is two seconds old.
        wait_for(lambda: b'{"checkpoint":' in first.read_bytes(), "the idle segment to close")
        s.client().list_keys()
        assert segments(s.data_dir)[-1] == "segment-00000002.jsonl"
    finally:
        s.stop()
    assert "audit log OK" in audit(s.data_dir, "verify").stdout


class Collector:
    """A syslog collector on a stream socket: accepts connections and parses RFC 6587
    octet-counted frames (`LEN SP MSG`) into RFC 5424 messages."""

    def __init__(self, family, address):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.messages = []
        self.errors = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()

    def accept(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            threading.Thread(target=self.read, args=(conn,), daemon=True).start()

    def read(self, conn):
        buf = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b" " in buf[:12]:
                    length, rest = buf.split(b" ", 1)
                    if not length.isdigit():
                        self.errors.append(f"not an octet count: {buf[:40]!r}")
                        return
                    if len(rest) < int(length):
                        break
                    frame, buf = rest[: int(length)], rest[int(length) :]
                    m = SYSLOG_MESSAGE.match(frame.decode())
                    with self.lock:
                        if m is None:
                            self.errors.append(f"not an RFC 5424 message: {frame[:120]!r}")
                        else:
                            self.messages.append(m)

    def records(self):
        """The records the messages carry, by the request id of their event."""
        with self.lock:
            return {json.loads(m["msg"])["event"].get("requestID"): m for m in self.messages}

    def close(self):
        self.running = False
        self.sock.close()


def check_messages(s, collector, request_ids, pri):
    wait_for(lambda: all(r in collector.records() for r in request_ids), "the requests' records at the collector")
    assert not collector.errors, collector.errors
    records = collector.records()
    for rid in request_ids:
        m = records[rid]
        assert int(m["pri"]) == pri and int(m["pid"]) == s.proc.pid, m.groupdict()
        record = json.loads(m["msg"])
        assert set(record) == {"seq", "prev", "event", "mac"} and record["event"]["requestID"] == rid
    seqs = [json.loads(m["msg"])["seq"] for m in collector.messages]
    assert seqs == sorted(seqs), "records arrive in the log's order"


def test_syslog_over_tcp(tmp_root):
    collector = Collector(socket.AF_INET, ("127.0.0.1", 0))
    port = collector.sock.getsockname()[1]
    s = Server(tmp_root / "syslog-tcp", args=["--audit-syslog", f"tcp://127.0.0.1:{port}"]).start()
    try:
        kms = s.client()
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        ids = [kms.encrypt(KeyId=key, Plaintext=b"x")["ResponseMetadata"]["RequestId"] for _ in range(5)]
        check_messages(s, collector, ids, AUTHPRIV_INFO)
        assert json.loads(collector.records()[ids[0]]["msg"])["event"]["eventName"] == "Encrypt"
    finally:
        s.stop()
        collector.close()


def test_syslog_over_a_unix_socket_with_a_facility(tmp_root):
    path = tmp_root / "syslog.sock"
    collector = Collector(socket.AF_UNIX, str(path))
    s = Server(tmp_root / "syslog-unix", env={"CLAVIS_AUDIT_SYSLOG": f"unix:{path}?facility=local0"}).start()
    try:
        kms = s.client()
        ids = [kms.list_keys()["ResponseMetadata"]["RequestId"] for _ in range(3)]
        check_messages(s, collector, ids, LOCAL0_INFO)
    finally:
        s.stop()
        collector.close()


def test_an_absent_collector_never_fails_a_request_and_is_reconnected(tmp_root):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = Server(tmp_root / "syslog-absent", args=["--audit-syslog", f"tcp://127.0.0.1:{port}"]).start()
    collector = None
    try:
        kms = s.client()
        for _ in range(20):
            kms.list_keys()
        collector = Collector(socket.AF_INET, ("127.0.0.1", port))
        # The stream reconnects (with backoff) on a later batch.
        deadline = time.time() + 60
        later = []
        while not any(r in collector.records() for r in later):
            assert time.time() < deadline, "the stream never reconnected"
            later.append(kms.list_keys()["ResponseMetadata"]["RequestId"])
            time.sleep(0.2)
        assert not collector.errors, collector.errors
        wait_for(lambda: "left out of the syslog stream" in s.log_path.read_text(), "the warning that counts the dropped batches")
    finally:
        s.stop()
        if collector:
            collector.close()
    assert "audit log OK" in audit(s.data_dir, "verify").stdout
