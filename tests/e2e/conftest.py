"""Fixtures for the end-to-end suite: a real `clavis` process on a temporary data directory,
and real AWS clients (boto3, the AWS CLI) pointed at it."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
CLAVIS = Path(os.environ.get("CLAVIS_BIN", ROOT / "target" / "release" / "clavis"))
AWS_CLI = Path(sys.executable).parent / "aws"
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


class Server:
    """One `clavis serve` process. `kill9()` + `start()` simulate a crash and restart."""

    def __init__(self, data_dir, env=None, args=()):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        self.env.update(
            {
                "CLAVIS_ROOT_ACCESS_KEY_ID": AKID,
                "CLAVIS_ROOT_SECRET_ACCESS_KEY": SECRET,
                "CLAVIS_ACCOUNT_ID": ACCOUNT,
                "RUST_LOG": "info",
            }
        )
        if env is not None:
            for k, v in env.items():
                if v is None:
                    self.env.pop(k, None)
                else:
                    self.env[k] = v
        self.args = list(args)
        self.proc = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(CLAVIS), "serve", "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port}", *self.args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clavis exited with {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.endpoint + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError("clavis did not become ready")

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
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.data_dir.parent),
            "AWS_ACCESS_KEY_ID": akid,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": region,
            "AWS_MAX_ATTEMPTS": "1",
        }
        p = subprocess.run(
            [str(AWS_CLI), "--endpoint-url", self.endpoint, "--output", "json", *args],
            env=env,
            capture_output=True,
            text=True,
        )
        if not check:
            return p
        if p.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return json.loads(p.stdout) if p.stdout.strip() else {}

    def raw(self, target, body, *, akid=AKID, secret=SECRET, region=REGION, service="kms", sign=True, headers=None, region_in_scope=None):
        """Sends a hand-made request, signed by botocore's own SigV4 signer; returns
        (status, json body, headers)."""
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


@pytest.fixture(scope="session")
def tmp_root():
    d = Path(tempfile.mkdtemp(prefix="clavis-e2e-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def server(tmp_root):
    s = Server(tmp_root / "shared").start()
    yield s
    s.stop()


@pytest.fixture()
def fresh_server(tmp_root, request):
    """A server of its own, for tests that crash, restart or inspect the data directory."""
    s = Server(tmp_root / f"fresh-{request.node.name}")
    yield s
    s.stop()


@pytest.fixture()
def kms(server):
    return server.client()


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]
