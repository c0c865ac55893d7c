"""The Shamir root of trust end to end (issue #8): a server started with
`--root-of-trust shamir` is sealed, `clavis operator init` prints the shares once, any K of N
unseal it, fewer keep it sealed, a wrong share is refused without saying which, `clavis operator
seal` wipes it again, and the data directory never holds the master key or a share."""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import AKID, CLAVIS, REGION, SECRET, Server, error_code


def operator(server, *args, stdin=None, check=True, creds=True):
    env = dict(os.environ, AWS_ENDPOINT_URL=server.endpoint, AWS_REGION=REGION)
    if creds:
        env.update(AWS_ACCESS_KEY_ID=AKID, AWS_SECRET_ACCESS_KEY=SECRET)
    p = subprocess.run([str(CLAVIS), "operator", *args], env=env, input=stdin, capture_output=True, text=True, timeout=30)
    if not check:
        return p
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def http_status(server, path):
    try:
        with urllib.request.urlopen(server.endpoint + path, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def wait_until(predicate, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def start_sealed(server):
    server.start(wait=False)
    wait_until(lambda: _answers(server))
    return server


def _answers(server):
    try:
        return http_status(server, "/operator/status") == 200
    except (urllib.error.URLError, OSError):
        return False


def sealed_refusal(client):
    with pytest.raises(ClientError) as e:
        client.list_keys()
    assert error_code(e) == "ServiceUnavailableException"
    assert "sealed" in e.value.response["Error"]["Message"]


def test_shamir_init_unseal_seal(tmp_path):
    s = Server(tmp_path / "shamir", args=["--root-of-trust", "shamir"])
    try:
        start_sealed(s)
        status = operator(s, "status")
        assert status == {"Provider": "shamir", "Initialized": False, "Sealed": True, "MasterKeyVersion": 1, "Progress": 0}
        assert http_status(s, "/readyz") == 503
        sealed_refusal(s.client())

        shares = operator(s, "init", "--shares", "5", "--threshold", "3")["Shares"]
        assert len(shares) == 5 and len(set(shares)) == 5
        assert operator(s, "init", "--shares", "5", "--threshold", "3", check=False).returncode != 0, "initialised once"
        wait_until(lambda: http_status(s, "/readyz") == 200)
        kms = s.client()
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"behind five shares")["CiphertextBlob"]

        # Restart: sealed; fewer than three shares keep it sealed; any three unseal it.
        s.stop()
        start_sealed(s)
        sealed_refusal(s.client())
        assert operator(s, "unseal", stdin=shares[4] + "\n", creds=False)["Progress"] == 1
        st = operator(s, "unseal", stdin=shares[1], creds=False)
        assert st["Sealed"] and st["Progress"] == 2
        sealed_refusal(s.client())
        assert http_status(s, "/readyz") == 503
        share_file = tmp_path / "share3"
        share_file.write_text(shares[2])
        assert not operator(s, "unseal", "--share-file", str(share_file), creds=False)["Sealed"]
        wait_until(lambda: http_status(s, "/readyz") == 200)
        assert s.client().decrypt(CiphertextBlob=blob)["Plaintext"] == b"behind five shares"

        # Seal (administrators only): every key is unusable until unsealed again.
        assert operator(s, "seal")["Sealed"]
        sealed_refusal(s.client())
        assert http_status(s, "/readyz") == 503
        # A wrong share: refused once the threshold is reached, without naming it; reset.
        bad = shares[0][:-1] + ("0" if shares[0][-1] != "0" else "1")
        operator(s, "unseal", stdin=bad, creds=False)
        operator(s, "unseal", stdin=shares[3], creds=False)
        p = operator(s, "unseal", stdin=shares[2], creds=False, check=False)
        assert p.returncode != 0 and "do not reconstruct the master key" in p.stderr
        assert not any(sh in p.stderr for sh in shares)
        assert operator(s, "status")["Sealed"] and operator(s, "status")["Progress"] == 0
        assert operator(s, "unseal", stdin="not-a-share", creds=False, check=False).returncode != 0
        for sh in [shares[0], shares[3], shares[2]]:
            st = operator(s, "unseal", stdin=sh, creds=False)
        assert not st["Sealed"]
        assert s.client().decrypt(CiphertextBlob=blob)["Plaintext"] == b"behind five shares"
        s.stop()

        # Nothing on disk can rebuild the master key: no key file, no share anywhere.
        assert not (s.data_dir / "master.key").exists()
        for path in s.data_dir.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                for sh in shares:
                    assert sh.split("-", 1)[1].encode() not in data, path
        # The audit log verifies with the shares (its key is sealed under the master key).
        files = []
        for i in (0, 2, 4):
            f = tmp_path / f"audit-share-{i}"
            f.write_text(shares[i])
            files += ["--share-file", str(f)]
        out = subprocess.run([str(CLAVIS), "audit", "verify", "--data-dir", str(s.data_dir), *files], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        out = subprocess.run([str(CLAVIS), "audit", "verify", "--data-dir", str(s.data_dir)], capture_output=True, text=True)
        assert out.returncode != 0 and "share" in out.stderr
    finally:
        s.stop()


def test_only_administrators_seal(tmp_path):
    s = Server(tmp_path / "shamir2", args=["--root-of-trust", "shamir"])
    try:
        start_sealed(s)
        operator(s, "init", "--shares", "2", "--threshold", "2")
        wait_until(lambda: http_status(s, "/readyz") == 200)
        status, body, _ = s.raw("ClavisAdmin.CreateUser", json.dumps({"UserName": "ops", "Role": "manager"}))
        assert status == 200
        status, body, _ = s.raw("ClavisAdmin.Seal", "{}", akid=body["AccessKey"]["AccessKeyId"], secret=body["AccessKey"]["SecretAccessKey"])
        assert (status, body["__type"]) == (400, "AccessDeniedException")
        assert not operator(s, "status")["Sealed"]
    finally:
        s.stop()


def test_file_root_reports_status(server):
    st = operator(server, "status")
    assert st["Provider"] == "file" and st["Sealed"] is False and st["Initialized"] and st["MasterKeyVersion"] == 1
    p = operator(server, "init", "--shares", "3", "--threshold", "2", check=False)
    assert p.returncode != 0 and "UnsupportedOperationException" in p.stderr


SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def softhsm_token(tmp_path, label="clavis-e2e", pin="1234"):
    """A SoftHSM2 token of the test's own: a config file and token directory under tmp_path."""
    tokens = tmp_path / "softhsm-tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = dict(os.environ, SOFTHSM2_CONF=str(conf))
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "5678"],
                   env=env, check=True, capture_output=True)
    return conf


def hsm_args(label="clavis-e2e"):
    return ["--root-of-trust", "pkcs11", "--pkcs11-module", SOFTHSM_MODULE, "--pkcs11-token-label", label]


def test_pkcs11_softhsm_end_to_end(tmp_path):
    conf = softhsm_token(tmp_path)
    env = {"SOFTHSM2_CONF": str(conf), "CLAVIS_PKCS11_PIN": "1234"}
    s = Server(tmp_path / "hsm", env=env, args=hsm_args())
    try:
        s.start()
        assert operator(s, "status") == {"Provider": "pkcs11", "Initialized": True, "Sealed": False, "MasterKeyVersion": 1, "Progress": 0}
        kms = s.client()
        keys = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(3)]
        blobs = [kms.encrypt(KeyId=k, Plaintext=k.encode())["CiphertextBlob"] for k in keys]
        s.stop()
        # Restart: the same HSM key is adopted by its label; everything decrypts.
        s.start()
        kms = s.client()
        for k, b in zip(keys, blobs):
            assert kms.decrypt(CiphertextBlob=b)["Plaintext"] == k.encode()
        s.stop()
        # No master key in the data directory: no key file, and a file root cannot read it.
        assert not (s.data_dir / "master.key").exists() and not (s.data_dir / "shamir.conf").exists()
        p = subprocess.run([str(CLAVIS), "audit", "verify", "--data-dir", str(s.data_dir)], capture_output=True, text=True,
                           env=dict(os.environ, **env))
        assert p.returncode != 0, "the audit key is sealed by the HSM, not by a key file"
        p = subprocess.run([str(CLAVIS), "audit", "verify", "--data-dir", str(s.data_dir), *hsm_args()], capture_output=True, text=True,
                           env=dict(os.environ, **env))
        assert p.returncode == 0, p.stderr

        # A wrong PIN or a missing token stops the start with a clear message.
        for bad_env, args, message in [
            ({"CLAVIS_PKCS11_PIN": "9999"}, hsm_args(), "PIN is incorrect"),
            ({}, hsm_args("no-such-token"), "no token labelled"),
        ]:
            bad = Server(tmp_path / "hsm", env={**env, **bad_env}, args=args)
            bad.port = s.port
            bad.start(wait=False)
            assert bad.proc.wait(timeout=30) != 0
            assert message in bad.log_path.read_text()
    finally:
        s.stop()
