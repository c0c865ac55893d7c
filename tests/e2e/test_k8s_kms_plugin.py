"""`clavis k8s-kms-plugin` (#22, part 1): the Kubernetes KMS v2 plugin through the real binary.

A Python gRPC client is generated here from the project's own proto (crates/clavis/proto/
kms_v2.proto) with grpcio-tools, as kube-apiserver would use the API, and calls Status, Encrypt
and Decrypt on the plugin's Unix socket; the plugin is a client of a real `clavis serve`."""

import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from conftest import AKID, CLAVIS, REGION, ROOT, SECRET, Server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from harness import parse_blob  # noqa: E402

PROTO_DIR = ROOT / "crates" / "clavis" / "proto"
CONTEXT = {"kubernetes.io/kms": "v2"}


@pytest.fixture(scope="module")
def api():
    """The generated modules (kms_v2_pb2, kms_v2_pb2_grpc) and the grpc package."""
    import grpc
    from grpc_tools import protoc

    out = Path(tempfile.mkdtemp(prefix="clavis-k8s-proto-"))
    argv = ["grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--grpc_python_out={out}", str(PROTO_DIR / "kms_v2.proto")]
    rc = protoc.main(argv)
    assert rc == 0, "protoc failed on kms_v2.proto"
    sys.path.insert(0, str(out))
    import kms_v2_pb2
    import kms_v2_pb2_grpc

    class Api:
        pb = kms_v2_pb2
        stub_class = kms_v2_pb2_grpc.KeyManagementServiceStub

    Api.grpc = grpc
    yield Api
    sys.path.remove(str(out))


@pytest.fixture(scope="module")
def short_dir():
    # Unix socket paths are limited to 107 bytes: a short directory of our own.
    d = Path(tempfile.mkdtemp(prefix="ck8s-"))
    yield d
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


class Plugin:
    """One `clavis k8s-kms-plugin` process and a gRPC stub on its socket."""

    def __init__(self, api, server, socket_path, key_id, refresh_ms=300, extra=()):
        self.api = api
        self.socket = Path(socket_path)
        self.log_path = Path(str(socket_path) + ".log")
        env = dict(os.environ, AWS_ACCESS_KEY_ID=AKID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION=REGION, RUST_LOG="info")
        argv = [str(CLAVIS), "k8s-kms-plugin", "--socket", str(self.socket), "--key-id", key_id, "--endpoint-url", server.endpoint]
        argv += ["--refresh-interval-ms", str(refresh_ms), "--call-timeout-ms", "2000", *extra]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 20
        while not self.accepts():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the plugin exited with {self.proc.returncode}: {self.log_path.read_text()}")
            if time.time() > deadline:
                raise RuntimeError("the plugin did not listen on its socket")
            time.sleep(0.05)
        # As kube-apiserver dials the plugin (grpc.WithAuthority("localhost")): grpcio's default
        # authority for a Unix socket is the escaped path, which HTTP/2 servers refuse.
        self.channel = api.grpc.insecure_channel(f"unix://{self.socket}", options=[("grpc.default_authority", "localhost")])
        self.stub = api.stub_class(self.channel)

    def accepts(self):
        """Whether something listens on the socket (a stale socket file refuses connections)."""
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(self.socket))
                return True
            except OSError:
                return False

    def status(self):
        return self.stub.Status(self.api.pb.StatusRequest(), timeout=5)

    def encrypt(self, plaintext, uid="uid-1"):
        return self.stub.Encrypt(self.api.pb.EncryptRequest(plaintext=plaintext, uid=uid), timeout=10)

    def decrypt(self, ciphertext, key_id, annotations=None, uid="uid-2"):
        request = self.api.pb.DecryptRequest(ciphertext=ciphertext, uid=uid, key_id=key_id, annotations=annotations or {})
        return self.stub.Decrypt(request, timeout=10).plaintext

    def wait_status(self, predicate, timeout=15):
        deadline = time.time() + timeout
        while True:
            s = self.status()
            if predicate(s):
                return s
            assert time.time() < deadline, f"status never became as expected; last: {s}"
            time.sleep(0.1)

    def code(self, call):
        with pytest.raises(self.api.grpc.RpcError) as e:
            call()
        return e.value.code()

    def stop(self):
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture()
def plugins(api, short_dir):
    started = []

    def start(server, key_id, name=None, **kw):
        p = Plugin(api, server, short_dir / (name or f"{uuid.uuid4().hex[:8]}.sock"), key_id, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def new_key(kms):
    key = kms.create_key(Description="k8s secrets")["KeyMetadata"]
    alias = f"alias/k8s-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    return key, alias


def test_status_encrypt_decrypt_round_trip(server, kms, plugins):
    key, alias = new_key(kms)
    plugin = plugins(server, alias)
    status = plugin.wait_status(lambda s: s.healthz == "ok")
    assert status.version == "v2"
    assert status.key_id == f"{key['Arn']}#v1"

    seed = os.urandom(32)
    enc = plugin.encrypt(seed)
    assert enc.key_id == status.key_id
    assert dict(enc.annotations) == {}
    blob = parse_blob(enc.ciphertext)
    assert (blob.key_id, blob.key_version) == (key["KeyId"], 1)
    assert seed not in enc.ciphertext
    assert plugin.decrypt(enc.ciphertext, enc.key_id) == seed
    # Annotations that follow the API's rules are accepted (kube-apiserver sends back what
    # Encrypt returned, here none).
    assert plugin.decrypt(enc.ciphertext, enc.key_id, {"version.encryption.example.com": b"1"}) == seed

    # The ciphertext is an ordinary Clavis ciphertext bound to the plugin's encryption context:
    # Decrypt without it fails, with it succeeds.
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=enc.ciphertext)
    assert kms.decrypt(CiphertextBlob=enc.ciphertext, EncryptionContext=CONTEXT)["Plaintext"] == seed
    # And a ciphertext made for another purpose under the same key does not decrypt through the
    # plugin, even with the right key id.
    other = kms.encrypt(KeyId=key["KeyId"], Plaintext=seed, EncryptionContext={"purpose": "other"})["CiphertextBlob"]
    assert plugin.code(lambda: plugin.decrypt(other, enc.key_id)) == plugin.api.grpc.StatusCode.INVALID_ARGUMENT


def test_rotation_changes_the_key_id_and_old_ciphertexts_still_decrypt(server, kms, plugins):
    key, alias = new_key(kms)
    # A refresh interval of an hour: every key id change below comes from the plugin's own
    # Encrypt, which shows that Encrypt's key id is always the latest Status key id.
    plugin = plugins(server, alias, refresh_ms=3_600_000)
    v1 = plugin.wait_status(lambda s: s.healthz == "ok").key_id
    assert v1 == f"{key['Arn']}#v1"
    old_seed = os.urandom(32)
    old = plugin.encrypt(old_seed)
    assert old.key_id == v1

    kms.rotate_key_on_demand(KeyId=key["KeyId"])
    assert plugin.status().key_id == v1  # answered from the cache, not from Clavis
    new_seed = os.urandom(32)
    new = plugin.encrypt(new_seed)
    assert new.key_id == f"{key['Arn']}#v2"
    assert plugin.status().key_id == new.key_id
    assert parse_blob(new.ciphertext).key_version == 2

    assert plugin.decrypt(old.ciphertext, old.key_id) == old_seed
    assert plugin.decrypt(new.ciphertext, new.key_id) == new_seed

    # A plugin that refreshes in the background sees the rotation without any Encrypt.
    watcher = plugins(server, alias, refresh_ms=200)
    assert watcher.wait_status(lambda s: s.healthz == "ok").key_id == new.key_id
    kms.rotate_key_on_demand(KeyId=key["KeyId"])
    v3 = watcher.wait_status(lambda s: s.key_id != new.key_id).key_id
    assert v3 == f"{key['Arn']}#v3"
    third = watcher.encrypt(b"s" * 32)
    assert third.key_id == v3
    assert watcher.decrypt(old.ciphertext, old.key_id) == old_seed

    # The alias moved to another key: the key id names the new key, and data written under the
    # old one still decrypts (Decrypt follows the key the ciphertext names).
    successor = kms.create_key(Description="k8s secrets, next")["KeyMetadata"]
    kms.update_alias(AliasName=alias, TargetKeyId=successor["KeyId"])
    moved = watcher.wait_status(lambda s: s.key_id != v3).key_id
    assert moved == f"{successor['Arn']}#v1"
    fourth = watcher.encrypt(b"t" * 32)
    assert fourth.key_id == moved
    assert watcher.decrypt(third.ciphertext, third.key_id) == b"s" * 32
    assert watcher.decrypt(old.ciphertext, old.key_id) == old_seed
    assert watcher.decrypt(fourth.ciphertext, fourth.key_id) == b"t" * 32


def test_clavis_stopped_makes_status_unhealthy_and_it_recovers(tmp_root, plugins):
    server = Server(tmp_root / "k8s-restart").start()
    try:
        kms = server.client()
        key, alias = new_key(kms)
        plugin = plugins(server, alias, refresh_ms=200)
        ok = plugin.wait_status(lambda s: s.healthz == "ok")
        seed = os.urandom(32)
        enc = plugin.encrypt(seed)

        server.stop()
        down = plugin.wait_status(lambda s: s.healthz != "ok")
        assert "unreachable" in down.healthz, down.healthz
        assert down.version == "v2"
        assert down.key_id == ok.key_id  # the last known key is still named
        grpc = plugin.api.grpc
        assert plugin.code(lambda: plugin.encrypt(seed)) == grpc.StatusCode.UNAVAILABLE
        assert plugin.code(lambda: plugin.decrypt(enc.ciphertext, enc.key_id)) == grpc.StatusCode.UNAVAILABLE
        assert plugin.proc.poll() is None, "the plugin must keep running while Clavis is down"

        server.start()
        assert plugin.wait_status(lambda s: s.healthz == "ok").key_id == ok.key_id
        assert plugin.decrypt(enc.ciphertext, enc.key_id) == seed
        assert plugin.encrypt(seed).key_id == ok.key_id

        # A key that cannot be used makes Status unhealthy with Clavis's reason, and Encrypt
        # fails with FAILED_PRECONDITION; enabling it again recovers.
        kms.disable_key(KeyId=key["KeyId"])
        disabled = plugin.wait_status(lambda s: s.healthz != "ok")
        assert "DisabledException" in disabled.healthz, disabled.healthz
        assert plugin.code(lambda: plugin.encrypt(seed)) == grpc.StatusCode.FAILED_PRECONDITION
        kms.enable_key(KeyId=key["KeyId"])
        plugin.wait_status(lambda s: s.healthz == "ok")
    finally:
        server.stop()


def test_bad_input_is_an_error_code_not_a_crash(server, kms, plugins):
    key, alias = new_key(kms)
    plugin = plugins(server, alias)
    plugin.wait_status(lambda s: s.healthz == "ok")
    grpc = plugin.api.grpc
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    seed = os.urandom(32)
    enc = plugin.encrypt(seed)
    ct, kid = enc.ciphertext, enc.key_id

    tampered = bytearray(ct)
    tampered[40] ^= 1
    cases = {
        "garbage": lambda: plugin.decrypt(b"not a ciphertext", kid),
        "empty ciphertext": lambda: plugin.decrypt(b"", kid),
        "tampered": lambda: plugin.decrypt(bytes(tampered), kid),
        "truncated": lambda: plugin.decrypt(ct[:-1], kid),
        "wrong version in key id": lambda: plugin.decrypt(ct, kid.replace("#v1", "#v2")),
        "foreign key id": lambda: plugin.decrypt(ct, "some-other-plugin-key"),
        "empty key id": lambda: plugin.decrypt(ct, ""),
        "oversized annotations": lambda: plugin.decrypt(ct, kid, {"big.example.com": b"x" * (33 * 1024)}),
        "annotation key not an FQDN": lambda: plugin.decrypt(ct, kid, {"not_a_domain": b"x"}),
        "empty plaintext": lambda: plugin.encrypt(b""),
        "plaintext over 4096 bytes": lambda: plugin.encrypt(b"x" * 4097),
    }
    for name, call in cases.items():
        assert plugin.code(call) == invalid, name
    # A message beyond the plugin's 64 KiB cap is refused by the gRPC layer (tonic) before it is
    # decoded.
    assert plugin.code(lambda: plugin.decrypt(ct, kid, {"big.example.com": b"x" * (70 * 1024)})) == grpc.StatusCode.OUT_OF_RANGE
    # Decrypt follows the key the ciphertext names (an alias moved to a new key keeps old data
    # readable); a key that cannot be used now is FAILED_PRECONDITION, from Clavis's state error.
    other, _ = new_key(kms)
    other_ct = kms.encrypt(KeyId=other["KeyId"], Plaintext=seed, EncryptionContext=CONTEXT)["CiphertextBlob"]
    other_kid = f"{other['Arn']}#v1"
    assert plugin.decrypt(other_ct, other_kid) == seed
    kms.schedule_key_deletion(KeyId=other["KeyId"], PendingWindowInDays=7)
    assert plugin.code(lambda: plugin.decrypt(other_ct, other_kid)) == grpc.StatusCode.FAILED_PRECONDITION

    # An unknown method of the service.
    unknown = plugin.channel.unary_unary("/v2.KeyManagementService/Rotate")
    with pytest.raises(grpc.RpcError) as e:
        unknown(b"", timeout=5)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED

    assert plugin.proc.poll() is None
    assert plugin.status().healthz == "ok"
    assert plugin.decrypt(ct, kid) == seed


def test_socket_mode_stale_socket_and_shutdown(server, kms, plugins, short_dir):
    _, alias = new_key(kms)
    path = short_dir / "kms.sock"
    # A stale socket (its process died without removing it) is replaced.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    assert path.exists()
    plugin = plugins(server, alias, name="kms.sock")
    plugin.wait_status(lambda s: s.healthz == "ok")
    assert stat.S_ISSOCK(path.lstat().st_mode)
    assert stat.S_IMODE(path.lstat().st_mode) == 0o600

    # A live socket is not taken over.
    second = subprocess.run(
        [str(CLAVIS), "k8s-kms-plugin", "--socket", str(path), "--key-id", alias, "--endpoint-url", server.endpoint],
        env=dict(os.environ, AWS_ACCESS_KEY_ID=AKID, AWS_SECRET_ACCESS_KEY=SECRET),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert second.returncode != 0 and "in use" in second.stderr, second.stderr
    assert plugin.status().healthz == "ok"

    # Shutdown removes the socket and exits cleanly.
    assert plugin.stop() == 0
    assert not path.exists()

    # Something that is not a socket is never replaced.
    path.write_text("not a socket")
    refused = subprocess.run(
        [str(CLAVIS), "k8s-kms-plugin", "--socket", str(path), "--key-id", alias, "--endpoint-url", server.endpoint],
        env=dict(os.environ, AWS_ACCESS_KEY_ID=AKID, AWS_SECRET_ACCESS_KEY=SECRET),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert refused.returncode != 0 and "not a socket" in refused.stderr, refused.stderr
    assert path.read_text() == "not a socket"
    path.unlink()

    # 0660 when asked for (the API server in the plugin's group).
    group = plugins(server, alias, name="group.sock", extra=("--socket-mode", "660"))
    assert stat.S_IMODE(group.socket.lstat().st_mode) == 0o660
    group.wait_status(lambda s: s.healthz == "ok")
