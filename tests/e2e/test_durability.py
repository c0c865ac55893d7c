"""Durability and data-at-rest: restart after kill -9, no plaintext key material in the data
directory (checked from the outside with the documented formats), first-start initialisation."""

import os
import re
import sqlite3
import stat
import time

import pytest
from botocore.exceptions import ClientError

from conftest import AKID, SECRET, Server, error_code
from harness import access_key_seal_context, decrypt_blob, key_material_seal_context, parse_blob, run_clavis, unseal


def test_kill_9_loses_nothing_acknowledged(fresh_server):
    s = fresh_server.start()
    kms = s.client()
    keys = [kms.create_key(Description=f"k{i}")["KeyMetadata"] for i in range(5)]
    kms.create_alias(AliasName="alias/survivor", TargetKeyId=keys[0]["KeyId"])
    kms.tag_resource(KeyId=keys[2]["KeyId"], Tags=[{"TagKey": "t", "TagValue": "v"}])
    blobs = [(k, kms.encrypt(KeyId=k["KeyId"], Plaintext=f"secret {i}".encode(), EncryptionContext={"i": str(i)})["CiphertextBlob"])
             for i, k in enumerate(keys)]
    kms.disable_key(KeyId=keys[1]["KeyId"])
    dk = kms.generate_data_key(KeyId="alias/survivor", KeySpec="AES_256")
    s.kill9()

    s.start()
    kms = s.client()
    listed = {k["KeyId"] for k in kms.list_keys()["Keys"]}
    assert {k["KeyId"] for k in keys} <= listed
    assert kms.describe_key(KeyId="alias/survivor")["KeyMetadata"]["KeyId"] == keys[0]["KeyId"]
    assert kms.describe_key(KeyId=keys[1]["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"
    assert kms.list_resource_tags(KeyId=keys[2]["KeyId"])["Tags"] == [{"TagKey": "t", "TagValue": "v"}]
    for i, (k, blob) in enumerate(blobs):
        if i == 1:
            with pytest.raises(ClientError) as e:
                kms.decrypt(CiphertextBlob=blob, EncryptionContext={"i": "1"})
            assert error_code(e) == "DisabledException"
            continue
        assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"i": str(i)})["Plaintext"] == f"secret {i}".encode()
    assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]


def test_data_directory_holds_no_plaintext_key_material(fresh_server):
    s = fresh_server.start()
    kms = s.client()
    key = kms.create_key()["KeyMetadata"]
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"needle", EncryptionContext={"a": "b"})["CiphertextBlob"]
    s.kill9()  # leave whatever the WAL holds in place

    data = s.data_dir
    master = (data / "master.key").read_bytes()
    assert len(master) == 32
    assert stat.S_IMODE(os.stat(data / "master.key").st_mode) == 0o600
    db = sqlite3.connect(f"file:{data / 'clavis.db'}?mode=ro", uri=True)
    (sealed,) = db.execute("SELECT sealed FROM key_material WHERE key_id = ? AND version = 1", (key["KeyId"],)).fetchone()
    (sealed_secret,) = db.execute("SELECT sealed_secret FROM access_keys WHERE access_key_id = ?", (AKID,)).fetchone()
    db.close()

    # The sealed format of docs/formats.md: 0x01 | master-key version u32 | nonce | ct+tag.
    assert sealed[0] == 1 and sealed_secret[0] == 1
    material = unseal(master, sealed, key_material_seal_context(key["KeyId"], 1))
    assert len(material) == 32
    # The unsealed bytes really are the key: they open the Encrypt ciphertext (docs/formats.md).
    header = parse_blob(blob)
    assert header.format == 1 and header.key_id == key["KeyId"] and header.key_version == 1
    assert decrypt_blob(material, blob, {"a": "b"}) == b"needle"
    assert unseal(master, sealed_secret, access_key_seal_context(AKID)) == SECRET.encode()

    files = [p for p in data.iterdir() if p.is_file() and p.name != "master.key"]
    assert any(p.name == "clavis.db" for p in files)
    found_sealed = False
    for p in files:
        content = p.read_bytes()
        assert material not in content, f"plaintext key material found in {p.name}"
        assert master not in content, f"master key found in {p.name}"
        assert SECRET.encode() not in content, f"plaintext access-key secret found in {p.name}"
        found_sealed |= sealed in content
    # The scan can see stored bytes: the sealed form is there.
    assert found_sealed


def test_generated_credentials_are_printed_once_and_saved_0600(tmp_root):
    s = Server(
        tmp_root / "generated", env={"CLAVIS_ROOT_ACCESS_KEY_ID": None, "CLAVIS_ROOT_SECRET_ACCESS_KEY": None, "CLAVIS_ACCOUNT_ID": None}
    )
    s.start()
    try:
        out = b""
        deadline = time.time() + 5
        while b"account" not in out and time.time() < deadline:
            out += s.proc.stdout.readline()
        text = out.decode()
        akid = re.search(r"AWS_ACCESS_KEY_ID=(\S+)", text).group(1)
        secret = re.search(r"AWS_SECRET_ACCESS_KEY=(\S+)", text).group(1)
        account = re.search(r"account (\d{12})", text).group(1)
        creds = s.data_dir / "admin-credentials"
        assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
        saved = creds.read_text()
        assert f"aws_access_key_id = {akid}" in saved and f"aws_secret_access_key = {secret}" in saved
        meta = s.client(akid=akid, secret=secret).create_key()["KeyMetadata"]
        assert meta["AWSAccountId"] == account
        s.stop()
        s.start()
        s.stop()
        assert b"AWS_SECRET_ACCESS_KEY" not in s.proc.stdout.read()
    finally:
        s.stop()


def test_restart_refuses_contradicting_configuration(fresh_server):
    fresh_server.start()
    fresh_server.stop()
    env = dict(fresh_server.env, CLAVIS_ACCOUNT_ID="999999999999")
    p = run_clavis("serve", "--data-dir", fresh_server.data_dir, "--listen", "127.0.0.1:0", env=env, timeout=20, check=False)
    assert p.returncode != 0 and "CLAVIS_ACCOUNT_ID" in p.stderr
    env = dict(fresh_server.env, CLAVIS_ROOT_SECRET_ACCESS_KEY="another-secret-0123456789")
    p = run_clavis("serve", "--data-dir", fresh_server.data_dir, "--listen", "127.0.0.1:0", env=env, timeout=20, check=False)
    assert p.returncode != 0 and "do not match" in p.stderr
    (fresh_server.data_dir / "master.key").rename(fresh_server.data_dir / "master.key.bak")
    p = run_clavis("serve", "--data-dir", fresh_server.data_dir, "--listen", "127.0.0.1:0", env=fresh_server.env, timeout=20,
                   check=False)
    assert p.returncode != 0 and "master key" in p.stderr
    assert not (fresh_server.data_dir / "master.key").exists(), "a new master key must not be created over existing data"


def test_sigterm_is_a_clean_shutdown(fresh_server):
    s = fresh_server.start()
    s.client().create_key()
    s.proc.terminate()
    assert s.proc.wait(timeout=10) == 0
