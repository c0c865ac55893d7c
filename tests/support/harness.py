"""What the end-to-end suite (tests/e2e, through its conftest.py) and the benchmark drivers
(scripts/bench*.py) share: where the binaries are, the test identity, the cache lifetime the
multi-node tests wait for, a `clavis serve` process, the `clavis` and AWS command lines, a
throwaway PostgreSQL cluster, and docs/formats.md's binary formats encoded and decoded once.

A plain module: the standard library only at import, so `python3 scripts/bench_audit.py` runs
without the venv. boto3 and botocore are imported when a client or a signed request is made,
`cryptography` when a blob is encrypted or opened. Importable from tests/e2e and scripts/ after
`sys.path.insert(0, "<checkout>/tests/support")`."""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLAVIS = Path(os.environ.get("CLAVIS_BIN", ROOT / "target" / "release" / "clavis"))
AWS_CLI = Path(sys.executable).parent / "aws"
PG_SCRIPT = ROOT / "scripts" / "pg-cluster.sh"
ACCOUNT = "111122223333"
AKID = "AKIACLAVISTESTADMIN1"
SECRET = "clavis-test-secret-0123456789abcdefghijk"
REGION = "us-east-1"
# The longest a node serves a key record, or an access key's secret and status, from memory
# (ARCHITECTURE.md, "Caches": KEY_CACHE_TTL and CREDENTIAL_CACHE_TTL, 0.9 s). A change made
# through one node is in force on the others once this has passed since it was acknowledged.
CACHE_LIFETIME_SECONDS = 0.9
# What a test waits for that: the lifetime plus a margin for the request in flight.
CACHE_WAIT_SECONDS = CACHE_LIFETIME_SECONDS + 0.1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, proc=None, timeout=20, poll=0.05, any_status=False, name="server", log_path=None):
    """Polls `url` every `poll` seconds until it answers 200 (or, with `any_status`, any HTTP
    status); raises RuntimeError if `proc` exits first (with `log_path`'s text) or `timeout`
    passes."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}" + (f": {Path(log_path).read_text()}" if log_path else ""))
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError:
            if any_status:
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(poll)
    raise RuntimeError(f"{name} did not become ready ({url})")


def merged_env(base, changes):
    """`base` with `changes` applied: a None value removes the variable."""
    env = dict(base)
    for k, v in (changes or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run_clavis(*args, env=None, input=None, timeout=60, check=True, binary=None):
    """Runs `clavis ARGS` (the binary at CLAVIS, or `binary`) with this process's environment
    changed by `env` (a None value removes a variable); returns the finished process, text
    output captured. With `check`, a non-zero exit raises AssertionError with its stderr."""
    argv = [str(binary or CLAVIS), *map(str, args)]
    p = subprocess.run(argv, env=merged_env(os.environ, env), input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"clavis {' '.join(argv[1:])} failed ({p.returncode}): {p.stderr}")
    return p


def run_aws(*args, endpoint, akid=AKID, secret=SECRET, region=REGION, home, env=None, check=True):
    """Runs the AWS CLI (at AWS_CLI) against `endpoint` with JSON output, in an environment of
    its own (PATH, HOME=`home`, the access key, the region, one attempt; `env` added); returns
    the finished process. With `check`, a non-zero exit raises AssertionError with its stderr."""
    e = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": akid,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": region,
        "AWS_MAX_ATTEMPTS": "1",
    }
    e.update(env or {})
    p = subprocess.run([str(AWS_CLI), "--endpoint-url", endpoint, "--output", "json", *args], env=e, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"aws {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


# Benchmarks measure beyond the default request quota (10,000 cryptographic requests per second
# per account and region): their servers run without it.
NO_QUOTA = {"CLAVIS_ACCOUNT_REQUESTS_PER_SECOND": "0"}


def cpu_ticks(pid):
    """utime + stime of process `pid` so far, in clock ticks (os.sysconf("SC_CLK_TCK") a second)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def run_bench(endpoint, op, connections, duration, *, binary=None, akid=AKID, secret=SECRET, env=None):
    """One `clavis bench --json` run against `endpoint`; returns its first result (requests,
    requests_per_second, p50_us, p99_us, max_us, errors)."""
    e = {"AWS_ACCESS_KEY_ID": akid, "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": REGION, **(env or {})}
    argv = ["bench", "--endpoint-url", endpoint, "--op", op, "--connections", connections, "--duration", duration, "--json"]
    return json.loads(run_clavis(*argv, env=e, timeout=None, binary=binary).stdout)["results"][0]


class Server:
    """One `clavis serve` process. `kill9()` + `start()` simulate a crash and restart.

    `env` changes the server's environment (a None value removes a variable); `args` follow
    `serve --data-dir D --listen HOST:PORT`. `binary` runs another build than CLAVIS; `host` is
    the address it listens on (the endpoint is always 127.0.0.1); `ready_path` is what
    `wait_ready` polls, every `poll` seconds; `preexec_fn` runs in the child before exec (e.g. to
    lower its limits). stderr goes to `<data_dir>.log` beside the data directory."""

    def __init__(self, data_dir, env=None, args=(), *, binary=None, host="127.0.0.1", ready_path="/healthz", poll=0.05, preexec_fn=None):
        self.data_dir = Path(data_dir)
        self.binary = Path(binary or CLAVIS)
        self.host = host
        self.ready_path = ready_path
        self.poll = poll
        self.preexec_fn = preexec_fn
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = merged_env(
            os.environ,
            {
                "CLAVIS_ROOT_ACCESS_KEY_ID": AKID,
                "CLAVIS_ROOT_SECRET_ACCESS_KEY": SECRET,
                "CLAVIS_ACCOUNT_ID": ACCOUNT,
                "RUST_LOG": "info",
            },
        )
        self.env = merged_env(self.env, env)
        self.args = list(args)
        self.proc = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def root_credentials(self):
        return self.env["CLAVIS_ROOT_ACCESS_KEY_ID"], self.env["CLAVIS_ROOT_SECRET_ACCESS_KEY"]

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--data-dir", str(self.data_dir), "--listen", f"{self.host}:{self.port}", *self.args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            preexec_fn=self.preexec_fn,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        wait_http(self.endpoint + self.ready_path, self.proc, timeout, self.poll, name="clavis", log_path=self.log_path)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self, region=REGION, akid=AKID, secret=SECRET, service="kms"):
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=region,
            aws_access_key_id=akid,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1}),
        )

    def cli(self, *args, region=REGION, check=True, akid=AKID, secret=SECRET):
        """Runs the AWS CLI against this server; returns parsed JSON output (or the process)."""
        p = run_aws(*args, endpoint=self.endpoint, akid=akid, secret=secret, region=region, home=self.data_dir.parent, check=check)
        if not check:
            return p
        return json.loads(p.stdout) if p.stdout.strip() else {}

    def clavis(self, *args, akid=None, secret=None, creds=True, env=None, **kw):
        """Runs `clavis ARGS` as a client of this server (AWS_ENDPOINT_URL and AWS_REGION name it;
        with `creds`, the access key is akid/secret, by default this server's root); the rest as
        run_clavis."""
        e = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": REGION}
        if creds:
            root_akid, root_secret = self.root_credentials
            e.update(AWS_ACCESS_KEY_ID=akid or root_akid, AWS_SECRET_ACCESS_KEY=secret or root_secret)
        e.update(env or {})
        return run_clavis(*args, env=e, **kw)

    def raw(self, target, body, *, akid=AKID, secret=SECRET, region=REGION, service="kms", sign=True, headers=None, region_in_scope=None):
        """Sends a hand-made request, signed by botocore's own SigV4 signer; returns
        (status, json body, headers)."""
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials

        if isinstance(body, str):
            body = body.encode()
        h = {"Content-Type": "application/x-amz-json-1.1"}
        if target is not None:
            h["X-Amz-Target"] = target
        h.update(headers or {})
        req = botocore.awsrequest.AWSRequest(method="POST", url=self.endpoint + "/", data=body, headers=h)
        if sign:
            creds = botocore.credentials.Credentials(akid, secret)
            botocore.auth.SigV4Auth(creds, service, region_in_scope or region).add_auth(req)
        prepared = req.prepare()
        r = urllib.request.Request(prepared.url, data=prepared.body, headers=dict(prepared.headers), method="POST")
        try:
            with urllib.request.urlopen(r, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"{}"), dict(resp.headers)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}"), dict(e.headers)


def start_node(data_dir, url=None, *, master_from=None, args=(), **kw):
    """A started node on the database at `url` (SQLite in its data directory when None). With
    `master_from` (another node's data directory) it gets a copy of that node's master key first,
    as the operator's runbook says for every node after the one that initialised the database.
    `kw` as Server."""
    data_dir = Path(data_dir)
    if master_from is not None:
        data_dir.mkdir(mode=0o700)
        shutil.copy2(Path(master_from) / "master.key", data_dir / "master.key")
    db = ["--database-url", url] if url else []
    return Server(data_dir, args=[*db, *args], **kw).start()


def start_nodes(parent, url, n=3, args=(), **kw):
    """`n` nodes on one database, in parent/node-a, node-b, ...: node A initialises the database
    and makes the master key, the others start with a copy of it."""
    nodes = []
    for i in range(n):
        master_from = nodes[0].data_dir if nodes else None
        nodes.append(start_node(Path(parent) / f"node-{'abcdefgh'[i]}", url, master_from=master_from, args=args, **kw))
    return nodes


class Postgres:
    """A PostgreSQL cluster of one's own (scripts/pg-cluster.sh: initdb into a temporary
    directory, a free port, loopback only, no system service)."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="clavis-pg-"))
        self.dir.chmod(0o755)  # the server may run as the postgres user
        self.port = free_port()
        self.bin = Path(subprocess.run([str(PG_SCRIPT), "bin"], capture_output=True, text=True, check=True).stdout.strip())
        self.url = None

    def start(self):
        out = subprocess.run([str(PG_SCRIPT), "start", str(self.dir / "data"), str(self.port)], capture_output=True, text=True)
        if out.returncode != 0:
            raise AssertionError(f"pg-cluster.sh start failed: {out.stderr}")
        self.url = out.stdout.strip()
        return self

    def stop(self):
        subprocess.run([str(PG_SCRIPT), "stop", str(self.dir / "data")], capture_output=True, text=True, check=True)

    def database(self, name):
        """A new, empty database `name` (dropped first if it exists); returns its URL."""
        psql = self.bin / "psql"
        for sql in [f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}"]:
            subprocess.run([str(psql), self.url, "-q", "-c", sql], capture_output=True, text=True, check=True)
        return self.url.rsplit("/", 1)[0] + "/" + name

    def cleanup(self):
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


# docs/formats.md, "Ciphertext blob": all integers big-endian.
#   0  1   format version 0x01
#   1  16  key id (the UUID's 16 bytes)
#   17 4   key-material version (u32)
#   21 12  AES-GCM nonce
#   33 n   AES-256-GCM ciphertext, then the 16-byte tag
# AAD = the 21-byte header || the canonical encryption context.
BLOB_FORMAT = 1
BLOB_HEADER_LEN = 21
NONCE_LEN = 12
TAG_LEN = 16


@dataclass(frozen=True)
class Blob:
    """A ciphertext blob taken apart (parse_blob)."""

    format: int
    key_id: str  # the UUID, lower-case with hyphens, as KeyId
    key_version: int
    nonce: bytes
    ciphertext: bytes  # with the tag at its end
    header: bytes  # bytes 0..21, the first part of the AAD


def blob_header(key_id, key_version=1):
    return bytes([BLOB_FORMAT]) + uuid.UUID(key_id).bytes + struct.pack(">I", key_version)


def parse_blob(blob):
    blob = bytes(blob)
    if len(blob) < BLOB_HEADER_LEN + NONCE_LEN + TAG_LEN:
        raise ValueError(f"a ciphertext blob has at least {BLOB_HEADER_LEN + NONCE_LEN + TAG_LEN} bytes, not {len(blob)}")
    (version,) = struct.unpack(">I", blob[17:21])
    return Blob(
        format=blob[0],
        key_id=str(uuid.UUID(bytes=blob[1:17])),
        key_version=version,
        nonce=blob[21:33],
        ciphertext=blob[33:],
        header=blob[:21],
    )


def encode_context(context):
    """The canonical encryption context: u32 pair count, then per pair in byte-wise order of the
    UTF-8 keys, u32 length + key, u32 length + value. None or {} is 00 00 00 00."""
    context = context or {}
    out = struct.pack(">I", len(context))
    for k in sorted(context, key=lambda s: s.encode()):
        for s in (k, context[k]):
            out += struct.pack(">I", len(s.encode())) + s.encode()
    return out


def encrypt_blob(material, key_id, plaintext, context=None, key_version=1, nonce=None):
    """A Clavis ciphertext blob made without Clavis, from `material` (the key version's 32 bytes)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = blob_header(key_id, key_version)
    nonce = os.urandom(NONCE_LEN) if nonce is None else nonce
    return header + nonce + AESGCM(material).encrypt(nonce, plaintext, header + encode_context(context))


def decrypt_blob(material, blob, context=None):
    """The plaintext of a Clavis ciphertext blob, opened without Clavis (InvalidTag if the
    material, header or context is not the one it was made with)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    b = parse_blob(blob)
    return AESGCM(material).decrypt(b.nonce, b.ciphertext, b.header + encode_context(context))


# docs/formats.md, "Sealed data": 0x01 | master-key version u32 | 12-byte nonce | ciphertext+tag;
# AAD = "clavis-seal-v1" 0x00 || bytes 0..5 || the seal context.
SEAL_AAD_PREFIX = b"clavis-seal-v1\x00"


def sealed_master_version(sealed):
    """The master-key version in a sealed value's header."""
    return struct.unpack(">I", bytes(sealed[1:5]))[0]


def key_material_seal_context(key_id, version):
    return b"clavis/key-material/v1\x00" + uuid.UUID(key_id).bytes + struct.pack(">I", version)


def access_key_seal_context(access_key_id):
    return b"clavis/access-key/v1\x00" + access_key_id.encode()


def unseal(master, sealed, context):
    """Opens a sealed value with the 32-byte master key; `context` is its seal context."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if sealed[0] != 1:
        raise ValueError(f"sealed format {sealed[0]}, not 1")
    return AESGCM(master).decrypt(sealed[5:17], sealed[17:], SEAL_AAD_PREFIX + sealed[:5] + context)
