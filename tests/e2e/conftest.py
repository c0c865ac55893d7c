"""Fixtures for the end-to-end suite: a real `clavis` process on a temporary data directory,
and real AWS clients (boto3, the AWS CLI) pointed at it. The server, the command lines, the
constants and the documented formats are in tests/support/harness.py (shared with the
benchmark drivers in scripts/); the names the tests import from here are re-exported."""

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from harness import (  # noqa: E402, F401  (re-exported: the tests import these from conftest)
    ACCOUNT,
    AKID,
    AWS_CLI,
    CACHE_LIFETIME_SECONDS,
    CACHE_WAIT_SECONDS,
    CLAVIS,
    REGION,
    ROOT,
    SECRET,
    Server,
    free_port,
)


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
