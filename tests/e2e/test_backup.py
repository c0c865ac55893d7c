"""Backup and restore (issue #20): `clavis operator backup` takes an online, consistent copy of
an SQLite deployment while it serves under write load, and `clavis operator restore` puts it in
a fresh directory where, once the operator has supplied the master key (never in the archive),
every key made before the backup decrypts what it encrypted, every key in the restored database
has its CreateKey record in the restored audit log, and `clavis audit verify` passes (also for a
log whose first segments retention deleted: the copy starts at its ANCHOR). Bad input
(a non-empty directory, a tampered or truncated archive, an archive holding a master key, a
PostgreSQL deployment) is refused with a clear error and a non-zero exit, leaving nothing
behind."""

import io
import json
import os
import shutil
import sqlite3
import stat
import tarfile
import threading
import time

from conftest import SECRET, Server
from harness import free_port, run_clavis

# Small audit segments, so that the backup copies closed segments and the server rotates
# segments while the log is copied.
SEGMENT_BYTES = "65536"
WRITERS = 4
# The environment of the command-line runs: nothing inherited that points elsewhere.
CLEAN = {"CLAVIS_DATABASE_URL": None, "CLAVIS_DATA_DIR": None}


def backup(data_dir, out, *extra, env=None, check=True):
    return run_clavis("operator", "backup", "--data-dir", data_dir, "--out", out, *extra, env={**CLEAN, **(env or {})}, check=check)


def restore(archive, data_dir, check=True):
    return run_clavis("operator", "restore", "--from", archive, "--data-dir", data_dir, env=CLEAN, check=check)


class Load:
    """Writer threads, each a boto3 client: CreateKey, then Encrypt under the new key, in a loop.
    `done` holds (key id, ciphertext, plaintext, time acknowledged); `sent` holds (key id, time
    the CreateKey was sent)."""

    def __init__(self, server):
        self.server = server
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.done = []
        self.sent = []
        self.errors = []
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(WRITERS)]

    def run(self, i):
        kms = self.server.client()
        n = 0
        try:
            while not self.stop_event.is_set():
                t_sent = time.time()
                key = kms.create_key(Description=f"load {i}-{n}")["KeyMetadata"]["KeyId"]
                with self.lock:
                    self.sent.append((key, t_sent))
                plaintext = f"plaintext {i}-{n}".encode()
                blob = kms.encrypt(KeyId=key, Plaintext=plaintext, EncryptionContext={"writer": str(i)})["CiphertextBlob"]
                with self.lock:
                    self.done.append((key, blob, plaintext, time.time(), str(i)))
                n += 1
        except Exception as e:  # any failure is reported: the test fails on it
            self.errors.append(repr(e))

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=30)


def restored_key_ids(data_dir):
    # immutable=1: read the file as it is, without creating -wal/-shm files in the directory.
    db = sqlite3.connect(f"file:{data_dir / 'clavis.db'}?mode=ro&immutable=1", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT key_id FROM keys")}
    finally:
        db.close()


def audit_events(data_dir):
    out = run_clavis("audit", "export", "--data-dir", data_dir, env=CLEAN).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_backup_under_write_load_restores_every_key_and_a_verifying_log(tmp_path):
    for durability in ["fsync", "write"]:
        backup_and_restore_under_load(tmp_path / durability, durability)


def backup_and_restore_under_load(root, durability):
    root.mkdir()
    original = Server(root / "original", args=["--audit-segment-bytes", SEGMENT_BYTES, "--audit-durability", durability]).start()
    load = Load(original)
    try:
        load.start()
        time.sleep(1.5)
        archive = root / "backup.tar"
        started = time.time()
        p = backup(original.data_dir, archive)
        finished = time.time()
        time.sleep(0.3)
        load.stop()
    finally:
        load.stop()
        original.stop()
    assert not load.errors, load.errors
    before = [d for d in load.done if d[3] < started]
    assert len(before) >= 10, f"the load acknowledged only {len(before)} keys before the backup"
    assert any(started < d[3] < finished for d in load.done), "no request was acknowledged while the backup ran"
    sent_after = {key for key, t in load.sent if t > finished}
    assert sent_after, "no key was created after the backup"
    assert "backup written to" in p.stdout and "master key" in p.stdout

    # The archive: private, whole, with its manifest last, and no master key in it.
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert sorted(x.name for x in root.iterdir()) == ["backup.tar", "original", "original.log"], "the backup left files behind"
    with tarfile.open(archive) as t:
        names = t.getnames()
        manifest = json.load(t.extractfile("clavis-backup.json"))
    assert names[-1] == "clavis-backup.json"
    assert "clavis.db" in names and "audit/HEAD" in names and "audit/audit.key.sealed" in names
    assert not any(n.endswith(".key") for n in names), names
    master = (original.data_dir / "master.key").read_bytes()
    content = archive.read_bytes()
    assert master not in content, "the master key is in the archive"
    assert SECRET.encode() not in content, "the administrator's secret is in the archive in clear"
    assert manifest["root_of_trust"]["versions"] == [{"version": 1, "provider": "file"}]
    assert manifest["database"]["method"] == "VACUUM INTO"
    assert manifest["audit"]["segments"] >= 2, manifest["audit"]
    assert [m["name"] for m in manifest["members"]] == names[:-1]

    # Restore into a directory that does not exist yet.
    restored = root / "restored"
    p = restore(archive, restored)
    assert "master.key" in p.stdout, p.stdout
    assert not (restored / "master.key").exists()
    assert stat.S_IMODE(restored.stat().st_mode) == 0o700
    assert stat.S_IMODE((restored / "audit").stat().st_mode) == 0o700
    for f in [*restored.iterdir(), *(restored / "audit").iterdir()]:
        if f.is_file():
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f

    # The snapshot is a moment within the backup's run: everything acknowledged before it
    # started is there, nothing created after it finished is.
    in_db = restored_key_ids(restored)
    assert {d[0] for d in before} <= in_db
    assert not (sent_after & in_db)

    # The operator's step: the master key, from where it is kept.
    shutil.copy(original.data_dir / "master.key", restored / "master.key")
    os.chmod(restored / "master.key", 0o600)
    verified = run_clavis("audit", "verify", "--data-dir", restored, env=CLEAN, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "audit log OK" in verified.stdout

    # The gap the backup closes: every key in the snapshot has its CreateKey record in the copy.
    created_in_log = {
        e["responseElements"]["keyMetadata"]["keyId"]
        for e in audit_events(restored)
        if e["eventName"] == "CreateKey" and "errorCode" not in e and e.get("responseElements")
    }
    assert in_db <= created_in_log, f"keys in the snapshot without their CreateKey record: {in_db - created_in_log}"

    # The restored directory serves: every key made before the backup decrypts its ciphertext.
    copy = Server(restored, args=["--audit-segment-bytes", SEGMENT_BYTES, "--audit-durability", durability]).start()
    try:
        kms = copy.client()
        for key, blob, plaintext, _, writer in before:
            out = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"writer": writer})
            assert out["Plaintext"] == plaintext and out["KeyId"].endswith(key)
    finally:
        copy.stop()
    # The restored log goes on from the copy and still verifies.
    verified = run_clavis("audit", "verify", "--data-dir", restored, env=CLEAN, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_restore_refuses_bad_input_and_leaves_nothing_behind(tmp_path):
    original = Server(tmp_path / "original").start()
    try:
        kms = original.client()
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        kms.encrypt(KeyId=key, Plaintext=b"x")
        archive = tmp_path / "backup.tar"
        backup(original.data_dir, archive, "--audit-settle-ms", "0")
        # An existing file is never overwritten.
        p = backup(original.data_dir, archive, "--audit-settle-ms", "0", check=False)
        assert p.returncode != 0 and "already exists" in p.stderr, p.stderr
    finally:
        original.stop()
    good = archive.read_bytes()

    # A non-empty directory.
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep").write_text("mine")
    p = restore(archive, busy, check=False)
    assert p.returncode != 0 and "not empty" in p.stderr, p.stderr
    assert os.listdir(busy) == ["keep"]

    # A byte changed inside the database member: its SHA-256 no longer matches the manifest.
    with tarfile.open(archive) as t:
        member = t.getmember("clavis.db")
    tampered = bytearray(good)
    tampered[member.offset_data + member.size // 2] ^= 0x01
    (tmp_path / "tampered.tar").write_bytes(tampered)
    p = restore(tmp_path / "tampered.tar", tmp_path / "t1", check=False)
    assert p.returncode != 0 and "clavis.db" in p.stderr and "SHA-256 does not match" in p.stderr, p.stderr
    assert not (tmp_path / "t1").exists()
    # Into an empty directory that exists: the failure leaves it empty.
    (tmp_path / "t2").mkdir()
    p = restore(tmp_path / "tampered.tar", tmp_path / "t2", check=False)
    assert p.returncode != 0
    assert os.listdir(tmp_path / "t2") == []

    # A truncated archive.
    (tmp_path / "truncated.tar").write_bytes(good[: len(good) // 2])
    p = restore(tmp_path / "truncated.tar", tmp_path / "t3", check=False)
    assert p.returncode != 0 and p.stderr.strip(), p.stderr
    assert not (tmp_path / "t3").exists()

    # An archive that carries a master key (with the manifest it came with).
    with tarfile.open(archive) as src, tarfile.open(tmp_path / "with-key.tar", "w", format=tarfile.USTAR_FORMAT) as dst:
        for m in src.getmembers():
            if m.name == "clavis-backup.json":
                extra = tarfile.TarInfo("master.key")
                extra.size, extra.mode = 32, 0o600
                dst.addfile(extra, io.BytesIO(b"k" * 32))
            dst.addfile(m, src.extractfile(m))
    p = restore(tmp_path / "with-key.tar", tmp_path / "t4", check=False)
    assert p.returncode != 0 and "master key" in p.stderr, p.stderr
    assert not (tmp_path / "t4").exists()

    # The good archive restores, and the restored directory does not start without the master
    # key the operator must supply.
    restored = tmp_path / "restored"
    restore(archive, restored)
    p = run_clavis("serve", "--data-dir", restored, "--listen", f"127.0.0.1:{free_port()}", env=CLEAN, check=False, timeout=30)
    assert p.returncode != 0 and "master key" in p.stderr, p.stderr
    assert not (restored / "master.key").exists()


def test_backup_refuses_a_postgresql_deployment(tmp_path):
    node = tmp_path / "pg-node"
    (node / "audit").mkdir(parents=True)
    (node / "node-id").write_text("node-0123456789abcdef")
    out = tmp_path / "backup.tar"
    # The server's setting in the environment, as a node sharing PostgreSQL is run.
    p = backup(node, out, env={"CLAVIS_DATABASE_URL": "postgres://clavis@127.0.0.1:1/clavis"}, check=False)
    assert p.returncode != 0 and "pg_dump" in p.stderr and "per node" in p.stderr, p.stderr
    # Without it: the data directory has no SQLite database.
    p = backup(node, out, check=False)
    assert p.returncode != 0 and "pg_dump" in p.stderr, p.stderr
    assert not out.exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["pg-node"]


def test_backup_of_a_log_that_retention_has_cut(tmp_path):
    """Once retention deleted the log's first segments, the backup starts at the segment ANCHOR
    names, carries ANCHOR, and the restored log verifies from it."""
    s = Server(
        tmp_path / "original",
        args=["--dangerous-test-clock", "--audit-segment-bytes", "4096", "--audit-segment-max-age", "1h", "--audit-retain-days", "1"],
    ).start()
    try:
        kms = s.client()
        key = kms.create_key(Description="retention")["KeyMetadata"]["KeyId"]
        old = kms.encrypt(KeyId=key, Plaintext=b"old")["CiphertextBlob"]
        for _ in range(30):
            kms.encrypt(KeyId=key, Plaintext=b"old")
        status, body, _ = s.raw("ClavisAdmin.AdvanceTestClock", json.dumps({"Seconds": 2 * 86400, "RunScheduler": False}))
        assert status == 200, body
        deadline = time.time() + 30
        while (s.data_dir / "audit" / "segment-00000001.jsonl").exists():
            assert time.time() < deadline, "retention did not delete segment 1"
            kms.encrypt(KeyId=key, Plaintext=b"new")
            time.sleep(0.05)
        assert (s.data_dir / "audit" / "ANCHOR").exists()
        archive = tmp_path / "backup.tar"
        backup(s.data_dir, archive, "--audit-settle-ms", "0")
    finally:
        s.stop()
    with tarfile.open(archive) as t:
        names = t.getnames()
        manifest = json.load(t.extractfile("clavis-backup.json"))
    assert "audit/ANCHOR" in names and "audit/segment-00000001.jsonl" not in names, names
    assert manifest["audit"]["first_segment"] > 1, manifest["audit"]

    restored = tmp_path / "restored"
    restore(archive, restored)
    shutil.copy(s.data_dir / "master.key", restored / "master.key")
    os.chmod(restored / "master.key", 0o600)
    verified = run_clavis("audit", "verify", "--data-dir", restored, env=CLEAN, check=False)
    assert verified.returncode == 0 and "deleted by retention" in verified.stdout, verified.stdout + verified.stderr
    copy = Server(restored, args=["--dangerous-test-clock"]).start()
    try:
        assert copy.client().decrypt(CiphertextBlob=old)["Plaintext"] == b"old"
    finally:
        copy.stop()
