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

from conftest import AKID, SECRET, Server, error_code
from harness import run_clavis, sealed_master_version


def operator(server, *args, stdin=None, check=True, creds=True):
    env = {}
    # An unseal's later shares carry the nonce its first share's answer gave (as the share
    # holders of one unseal pass it to each other).
    if args and args[0] == "unseal" and getattr(server, "unseal_nonce", None):
        env["CLAVIS_UNSEAL_NONCE"] = server.unseal_nonce
    p = server.clavis("operator", *args, akid=AKID, secret=SECRET, creds=creds, env=env, input=stdin, timeout=30, check=False)
    if not check:
        return p
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    if args and args[0] == "unseal":
        server.unseal_nonce = out.get("Nonce")
    return out


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
        assert status == {
            "Provider": "shamir",
            "Initialized": False,
            "Sealed": True,
            "MasterKeyVersion": 1,
            "MasterKeyVersions": [1],
            "Progress": 0,
        }
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
        # A wrong share: refused on its own, as it is submitted (checked against its digest in
        # shamir.conf), without counting; the unseal goes on.
        bad = shares[0][:-1] + ("0" if shares[0][-1] != "0" else "1")
        operator(s, "unseal", stdin=shares[3], creds=False)
        p = operator(s, "unseal", stdin=bad, creds=False, check=False)
        assert p.returncode != 0 and "not an unseal share of this server" in p.stderr
        assert not any(sh in p.stderr for sh in shares) and bad not in p.stderr
        assert operator(s, "status")["Sealed"] and operator(s, "status")["Progress"] == 1
        assert operator(s, "unseal", stdin="not-a-share", creds=False, check=False).returncode != 0
        for sh in [shares[0], shares[2]]:
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
        out = run_clavis("audit", "verify", "--data-dir", s.data_dir, *files, check=False)
        assert out.returncode == 0, out.stderr
        out = run_clavis("audit", "verify", "--data-dir", s.data_dir, check=False)
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
        status, body, _ = s.raw(
            "ClavisAdmin.Seal", "{}", akid=body["AccessKey"]["AccessKeyId"], secret=body["AccessKey"]["SecretAccessKey"]
        )
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
        st = operator(s, "status")
        assert (st["Provider"], st["Initialized"], st["Sealed"], st["MasterKeyVersion"], st["MasterKeyVersions"]) == (
            "pkcs11",
            True,
            False,
            1,
            [1],
        )
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
        p = run_clavis("audit", "verify", "--data-dir", s.data_dir, env=env, check=False)
        assert p.returncode != 0, "the audit key is sealed by the HSM, not by a key file"
        p = run_clavis("audit", "verify", "--data-dir", s.data_dir, *hsm_args(), env=env, check=False)
        assert p.returncode == 0, p.stderr

        # A wrong PIN or a missing token stops the start with a clear message.
        for bad_env, args, message in [
            ({"CLAVIS_PKCS11_PIN": "9999"}, hsm_args(), "PIN is incorrect"),
            ({}, hsm_args("no-such-token"), "no token labelled"),
            # An initialised deployment never creates a master key in the token: a key that is
            # not there (deleted, or another label) is reported, not silently replaced.
            ({}, hsm_args() + ["--pkcs11-key-label", "not-this-deployments-key"], 'no key labelled "not-this-deployments-key"'),
        ]:
            bad = Server(tmp_path / "hsm", env={**env, **bad_env}, args=args)
            bad.port = s.port
            bad.start(wait=False)
            assert bad.proc.wait(timeout=30) != 0
            assert message in bad.log_path.read_text()
    finally:
        s.stop()


def sealed_versions(data_dir):
    """The master-key version in the header of every sealed value in the database."""
    import sqlite3
    db = sqlite3.connect(f"file:{data_dir / 'clavis.db'}?mode=ro", uri=True)
    try:
        return {table: {sealed_master_version(row[0]) for row in db.execute(f"SELECT {col} FROM {table}")}
                for table, col in [("key_material", "sealed"), ("access_keys", "sealed_secret"), ("import_params", "sealed_private_key")]}
    finally:
        db.close()


def test_master_key_rotation_survives_a_crash_in_the_middle(tmp_path):
    # A test-only hook aborts the process after 7 values are resealed.
    s = Server(tmp_path / "rotation", args=["--dangerous-test-crash-after-reseals", "7"])
    try:
        s.start()
        kms = s.client()
        keys = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(12)]
        kms.rotate_key_on_demand(KeyId=keys[0])
        blobs = [(k, kms.encrypt(KeyId=k, Plaintext=k.encode())["CiphertextBlob"]) for k in keys]
        ext = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
        kms.get_parameters_for_import(KeyId=ext, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
        status, user, _ = s.raw("ClavisAdmin.CreateUser", json.dumps({"UserName": "app", "Role": "reader"}))
        assert status == 200
        assert sealed_versions(s.data_dir) == {"key_material": {1}, "access_keys": {1}, "import_params": {1}}

        assert operator(s, "rotate-master-key", check=False).returncode != 0
        assert s.proc.wait(timeout=30) != 0, "the hook aborted the server mid-rotation"
        mixed = sealed_versions(s.data_dir)["key_material"]
        assert mixed == {1, 2}, mixed

        # Restarted (without the hook): every value is readable, and the rotation completes.
        s.args = []
        s.start()
        wait_until(lambda: operator(s, "status").get("Rotation") == "done")
        st = operator(s, "status")
        assert (st["MasterKeyVersion"], st["MasterKeyVersions"]) == (2, [1, 2])
        assert sealed_versions(s.data_dir) == {"key_material": {2}, "access_keys": {2}, "import_params": {2}}
        kms = s.client()
        for k, blob in blobs:
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == k.encode()
        app = s.client(akid=user["AccessKey"]["AccessKeyId"], secret=user["AccessKey"]["SecretAccessKey"])
        assert app.decrypt(CiphertextBlob=blobs[1][1])["Plaintext"] == keys[1].encode()
        # Online: another rotation while the server serves.
        out = operator(s, "rotate-master-key")
        assert out["MasterKeyVersion"] == 3 and out["Resealed"] >= 15
        assert sealed_versions(s.data_dir)["key_material"] == {3}
        assert kms.decrypt(CiphertextBlob=blobs[0][1])["Plaintext"] == keys[0].encode()
        status, body, _ = s.raw(
            "ClavisAdmin.RotateMasterKey", "{}", akid=user["AccessKey"]["AccessKeyId"], secret=user["AccessKey"]["SecretAccessKey"]
        )
        assert (status, body["__type"]) == (400, "AccessDeniedException")
        s.stop()
        p = run_clavis("audit", "verify", "--data-dir", s.data_dir, check=False)
        assert p.returncode == 0, p.stderr
    finally:
        s.stop()


def test_migration_from_key_file_to_hsm(tmp_path):
    conf = softhsm_token(tmp_path)
    env = {"SOFTHSM2_CONF": str(conf), "CLAVIS_PKCS11_PIN": "1234"}
    s = Server(tmp_path / "migrate", env=env)
    try:
        s.start()
        kms = s.client()
        keys = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(5)]
        blobs = [(k, kms.encrypt(KeyId=k, Plaintext=k.encode())["CiphertextBlob"]) for k in keys]
        s.stop()
        # Restarted with the HSM configured; a rotation puts the new master key in the HSM.
        s.args = hsm_args()
        s.start()
        assert operator(s, "status")["Provider"] == "file"
        out = operator(s, "rotate-master-key")
        assert out["MasterKeyVersion"] == 2
        st = operator(s, "status")
        assert (st["Provider"], st["Rotation"]) == ("pkcs11", "done")
        assert sealed_versions(s.data_dir)["key_material"] == {2}
        s.stop()
        # The key file is no longer needed: retire it; everything still decrypts.
        (s.data_dir / "master.key").unlink()
        s.start()
        kms = s.client()
        for k, blob in blobs:
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == k.encode()
        assert kms.create_key()["KeyMetadata"]["Enabled"]
        s.stop()
        p = run_clavis("audit", "verify", "--data-dir", s.data_dir, *hsm_args(), env=env, check=False)
        assert p.returncode == 0, p.stderr
    finally:
        s.stop()


def test_migration_from_key_file_to_shamir(tmp_path):
    s = Server(tmp_path / "to-shamir")
    try:
        s.start()
        kms = s.client()
        keys = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(4)]
        blobs = [(k, kms.encrypt(KeyId=k, Plaintext=k.encode())["CiphertextBlob"]) for k in keys]
        s.stop()
        # Restarted with Shamir configured: still serving under the key file until the rotation.
        s.args = ["--root-of-trust", "shamir"]
        s.start()
        assert operator(s, "status")["Provider"] == "file"
        assert operator(s, "rotate-master-key", check=False).returncode != 0, "a Shamir key needs --shares and --threshold"
        # Phase one makes the Shamir key and hands out its shares; nothing is sealed under it yet.
        out = operator(s, "rotate-master-key", "--shares", "3", "--threshold", "2")
        assert (out["MasterKeyVersion"], out["PendingVersion"], len(out["Shares"])) == (1, 2, 3)
        assert sealed_versions(s.data_dir)["key_material"] == {1}
        # Phase two switches to it and reseals everything.
        done = operator(s, "rotate-master-key")
        assert done["MasterKeyVersion"] == 2 and "Shares" not in done
        st = operator(s, "status")
        assert (st["Provider"], st["Sealed"], st["Rotation"], st["Threshold"]) == ("shamir", False, "done", 2)
        assert sealed_versions(s.data_dir)["key_material"] == {2}
        s.stop()
        # The key file is retired; the server now starts sealed and two shares unseal it.
        (s.data_dir / "master.key").unlink()
        start_sealed(s)
        sealed_refusal(s.client())
        operator(s, "unseal", stdin=out["Shares"][2], creds=False)
        assert not operator(s, "unseal", stdin=out["Shares"][0], creds=False)["Sealed"]
        wait_until(lambda: http_status(s, "/readyz") == 200)
        kms = s.client()
        for k, blob in blobs:
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == k.encode()
        s.stop()
        files = []
        for i in (0, 1):
            f = tmp_path / f"share-{i}"
            f.write_text(out["Shares"][i])
            files += ["--share-file", str(f)]
        p = run_clavis("audit", "verify", "--data-dir", s.data_dir, *files, check=False)
        assert p.returncode == 0, p.stderr
        # The shares never reach the audit log (the RotateMasterKey response is redacted).
        p = run_clavis("audit", "export", "--data-dir", s.data_dir, *files, check=False)
        assert p.returncode == 0 and "RotateMasterKey" in p.stdout, p.stderr
        for share in out["Shares"]:
            assert share.split("-", 1)[1] not in p.stdout
        for path in (s.data_dir / "audit").iterdir():
            for share in out["Shares"]:
                assert share.split("-", 1)[1].encode() not in path.read_bytes(), path
    finally:
        s.stop()
