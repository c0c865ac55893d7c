"""Bring your own key through boto3 against the real binary, with the client side done by
standard tools as AWS's documentation shows: Python `cryptography` and the `openssl` command
line, for every wrapping algorithm and key size; token expiry and reuse; wrong material on
re-import; delete and re-import; material expiry; the CLI's one-command import in both flows."""

import json
import os
import shutil
import subprocess
import time

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

from conftest import Server, error_code
from harness import decrypt_blob, encrypt_blob, parse_blob, sealed_master_version

ALGORITHMS = ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256"]
SPECS = ["RSA_2048", "RSA_3072", "RSA_4096"]


def wrap_with_cryptography(public_der, algorithm, material):
    public = serialization.load_der_public_key(public_der)
    h = hashes.SHA1() if algorithm.endswith("SHA_1") else hashes.SHA256()
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=h), algorithm=h, label=None)
    if algorithm.startswith("RSAES_OAEP"):
        return public.encrypt(material, oaep)
    ephemeral = os.urandom(32)
    return public.encrypt(ephemeral, oaep) + aes_key_wrap_with_padding(ephemeral, material)


def external_key(kms):
    meta = kms.create_key(Origin="EXTERNAL", Description="byok")["KeyMetadata"]
    assert (meta["Origin"], meta["KeyState"], meta["Enabled"]) == ("EXTERNAL", "PendingImport", False)
    return meta["KeyId"]


def import_material(kms, key, material, algorithm="RSAES_OAEP_SHA_256", spec="RSA_2048", **extra):
    params = kms.get_parameters_for_import(KeyId=key, WrappingAlgorithm=algorithm, WrappingKeySpec=spec)
    wrapped = wrap_with_cryptography(params["PublicKey"], algorithm, material)
    kms.import_key_material(KeyId=key, ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped,
                            ExpirationModel=extra.pop("ExpirationModel", "KEY_MATERIAL_DOES_NOT_EXPIRE"), **extra)
    return params


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_import_with_python_cryptography(kms, algorithm, spec):
    key = external_key(kms)
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=key, Plaintext=b"x")
    assert error_code(e) == "KMSInvalidStateException" and "pending import" in e.value.response["Error"]["Message"]
    material = os.urandom(32)
    params = import_material(kms, key, material, algorithm, spec)
    public = serialization.load_der_public_key(params["PublicKey"])
    assert public.key_size == int(spec.split("_")[1])
    assert abs(params["ParametersValidTo"].timestamp() - (time.time() + 86400)) < 120
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "Enabled" and meta["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE"
    # What the client encrypted offline with its own copy of the material decrypts in Clavis,
    # and what Clavis encrypts the client can decrypt offline.
    blob = encrypt_blob(material, key, b"encrypted offline", {"src": "client"})
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"src": "client"})["Plaintext"] == b"encrypted offline"
    out = kms.encrypt(KeyId=key, Plaintext=b"from clavis")["CiphertextBlob"]
    assert decrypt_blob(material, out) == b"from clavis"


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_import_with_openssl(kms, tmp_path, algorithm, spec):
    if shutil.which("openssl") is None:
        pytest.fail("openssl is required for this test (Debian package openssl)")
    md = "sha1" if algorithm.endswith("SHA_1") else "sha256"
    key = external_key(kms)
    material = os.urandom(32)
    (tmp_path / "material.bin").write_bytes(material)
    params = kms.get_parameters_for_import(KeyId=key, WrappingAlgorithm=algorithm, WrappingKeySpec=spec)
    (tmp_path / "pub.der").write_bytes(params["PublicKey"])
    rsa = ["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", str(tmp_path / "pub.der"), "-keyform", "DER",
           "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", f"rsa_oaep_md:{md}", "-pkeyopt", f"rsa_mgf1_md:{md}"]
    if algorithm.startswith("RSAES_OAEP"):
        wrapped = subprocess.run(rsa + ["-in", str(tmp_path / "material.bin")], capture_output=True, check=True).stdout
    else:
        aes = os.urandom(32)
        (tmp_path / "aes.bin").write_bytes(aes)
        wrapped_material = subprocess.run(["openssl", "enc", "-id-aes256-wrap-pad", "-K", aes.hex(), "-iv", "A65959A6",
                                           "-in", str(tmp_path / "material.bin")], capture_output=True, check=True).stdout
        wrapped_aes = subprocess.run(rsa + ["-in", str(tmp_path / "aes.bin")], capture_output=True, check=True).stdout
        wrapped = wrapped_aes + wrapped_material
    kms.import_key_material(KeyId=key, ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped,
                            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    blob = encrypt_blob(material, key, b"openssl flow", {})
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"openssl flow"
    assert kms.decrypt(CiphertextBlob=kms.encrypt(KeyId=key, Plaintext=b"round trip")["CiphertextBlob"])["Plaintext"] == b"round trip"


def test_token_rules(clocked_byok):
    s = clocked_byok
    kms = s.client()
    key, other = external_key(kms), external_key(kms)
    material = os.urandom(32)
    params = kms.get_parameters_for_import(KeyId=key, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
    wrapped = wrap_with_cryptography(params["PublicKey"], "RSAES_OAEP_SHA_256", material)
    # A token is bound to its key.
    with pytest.raises(ClientError) as e:
        kms.import_key_material(
            KeyId=other, ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE"
        )
    assert error_code(e) == "InvalidImportTokenException"
    with pytest.raises(ClientError) as e:
        kms.import_key_material(
            KeyId=key, ImportToken=os.urandom(32), EncryptedKeyMaterial=wrapped, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE"
        )
    assert error_code(e) == "InvalidImportTokenException"
    # Badly wrapped material.
    with pytest.raises(ClientError) as e:
        kms.import_key_material(
            KeyId=key,
            ImportToken=params["ImportToken"],
            EncryptedKeyMaterial=os.urandom(256),
            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
        )
    assert error_code(e) == "InvalidCiphertextException"
    # Wrapped with the wrong algorithm for this token.
    wrong = wrap_with_cryptography(params["PublicKey"], "RSAES_OAEP_SHA_1", material)
    with pytest.raises(ClientError) as e:
        kms.import_key_material(
            KeyId=key, ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrong, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE"
        )
    assert error_code(e) == "InvalidCiphertextException"
    # Material of the wrong length.
    short = wrap_with_cryptography(params["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(16))
    with pytest.raises(ClientError) as e:
        kms.import_key_material(
            KeyId=key, ImportToken=params["ImportToken"], EncryptedKeyMaterial=short, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE"
        )
    assert error_code(e) == "IncorrectKeyMaterialException"
    # ValidTo rules.
    with pytest.raises(ClientError) as e:
        kms.import_key_material(
            KeyId=key, ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped, ExpirationModel="KEY_MATERIAL_EXPIRES"
        )
    assert error_code(e) == "ValidationException"
    # The first good use succeeds; the token is then spent.
    kms.import_key_material(
        KeyId=key, ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE"
    )
    kms.delete_imported_key_material(KeyId=key)
    with pytest.raises(ClientError) as e:
        kms.import_key_material(
            KeyId=key, ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE"
        )
    assert error_code(e) == "InvalidImportTokenException"
    # Parameters are valid for 24 hours.
    late = kms.get_parameters_for_import(KeyId=key, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
    late_wrapped = wrap_with_cryptography(late["PublicKey"], "RSAES_OAEP_SHA_256", material)
    status, _, _ = s.raw("ClavisAdmin.AdvanceTestClock", json.dumps({"Seconds": 24 * 3600 + 60}))
    assert status == 200
    with pytest.raises(ClientError) as e:
        kms.import_key_material(
            KeyId=key, ImportToken=late["ImportToken"], EncryptedKeyMaterial=late_wrapped, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE"
        )
    assert error_code(e) == "ExpiredImportTokenException"


def test_delete_reimport_and_wrong_material(kms):
    key = external_key(kms)
    material = os.urandom(32)
    import_material(kms, key, material)
    old = kms.encrypt(KeyId=key, Plaintext=b"survives", EncryptionContext={"k": "v"})["CiphertextBlob"]
    kms.delete_imported_key_material(KeyId=key)
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingImport"
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=old, EncryptionContext={"k": "v"})
    assert error_code(e) == "KMSInvalidStateException"
    with pytest.raises(ClientError) as e:
        import_material(kms, key, os.urandom(32))
    assert error_code(e) == "IncorrectKeyMaterialException"
    import_material(kms, key, material, "RSA_AES_KEY_WRAP_SHA_256", "RSA_3072")
    assert kms.decrypt(CiphertextBlob=old, EncryptionContext={"k": "v"})["Plaintext"] == b"survives"
    # Importing into a key that has material is a state error; automatic rotation is refused.
    with pytest.raises(ClientError) as e:
        import_material(kms, key, material)
    assert error_code(e) == "KMSInvalidStateException"
    with pytest.raises(ClientError) as e:
        kms.enable_key_rotation(KeyId=key)
    assert error_code(e) == "UnsupportedOperationException"
    # A key with generated material cannot take imported material.
    normal = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as e:
        kms.get_parameters_for_import(KeyId=normal, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
    assert error_code(e) == "UnsupportedOperationException"


@pytest.fixture()
def clocked_byok(tmp_root, request):
    s = Server(tmp_root / f"byok-{request.node.name}", args=["--dangerous-test-clock"]).start()
    yield s
    s.stop()


def test_material_expiry(clocked_byok):
    s = clocked_byok
    kms = s.client()
    key = external_key(kms)
    material = os.urandom(32)
    status, body, _ = s.raw("ClavisAdmin.AdvanceTestClock", json.dumps({"Seconds": 0}))
    now = body["Now"]
    import_material(kms, key, material, ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=now + 3 * 86400)
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["ExpirationModel"] == "KEY_MATERIAL_EXPIRES" and abs(meta["ValidTo"].timestamp() - (now + 3 * 86400)) < 2
    blob = kms.encrypt(KeyId=key, Plaintext=b"expiring")["CiphertextBlob"]
    status, body, _ = s.raw("ClavisAdmin.AdvanceTestClock", json.dumps({"Seconds": 4 * 86400}))
    assert body["Expired"] == 1
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingImport"
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=blob)
    assert error_code(e) == "KMSInvalidStateException"
    import_material(kms, key, material)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"expiring"


def test_cli_one_command_import(server, kms, tmp_path):
    def clavis(*args):
        p = server.clavis("key", "import", *args, timeout=60, check=False)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    # Flow 1: material from a file, AWS-style.
    key = external_key(kms)
    material = os.urandom(32)
    (tmp_path / "m.bin").write_bytes(material)
    assert clavis("--key-id", key, "--material-file", str(tmp_path / "m.bin"), "--wrapping-algorithm", "RSA_AES_KEY_WRAP_SHA_256",
                  "--wrapping-key-spec", "RSA_3072")["Imported"] is True
    assert kms.decrypt(CiphertextBlob=encrypt_blob(material, key, b"cli", {}))["Plaintext"] == b"cli"
    # Flow 2: generated locally, with the proof-of-possession nonce (Key Protect style).
    key2 = external_key(kms)
    out = clavis("--key-id", key2, "--generate", "--material-out", str(tmp_path / "gen.bin"), "--nonce")
    assert out["NonceVerified"] is True
    gen = (tmp_path / "gen.bin").read_bytes()
    assert len(gen) == 32 and oct(os.stat(tmp_path / "gen.bin").st_mode & 0o777) == "0o600"
    assert kms.decrypt(CiphertextBlob=encrypt_blob(gen, key2, b"gen", {}))["Plaintext"] == b"gen"


def test_nonce_proof_is_checked(server, kms):
    key = external_key(kms)
    material = os.urandom(32)
    # An earlier, unused set of parameters: the nonce checked below is the later set's.
    kms.get_parameters_for_import(KeyId=key, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
    import base64

    status, raw, _ = server.raw(
        "TrentService.GetParametersForImport",
        json.dumps({"KeyId": key, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"}),
    )
    nonce = base64.b64decode(raw["ClavisImportNonce"])
    public = base64.b64decode(raw["PublicKey"])
    wrapped = wrap_with_cryptography(public, "RSAES_OAEP_SHA_256", material)
    iv = os.urandom(12)
    wrong = AESGCM(os.urandom(32)).encrypt(iv, nonce, b"")
    body = {"KeyId": key, "ImportToken": raw["ImportToken"], "EncryptedKeyMaterial": base64.b64encode(wrapped).decode(),
            "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE", "ClavisNonceIv": base64.b64encode(iv).decode(),
            "ClavisEncryptedNonce": base64.b64encode(wrong).decode()}
    status, resp, _ = server.raw("TrentService.ImportKeyMaterial", json.dumps(body))
    assert (status, resp["__type"]) == (400, "IncorrectKeyMaterialException")
    body["ClavisEncryptedNonce"] = base64.b64encode(AESGCM(material).encrypt(iv, nonce, b"")).decode()
    status, resp, _ = server.raw("TrentService.ImportKeyMaterial", json.dumps(body))
    assert status == 200, resp


def test_on_demand_rotation_with_new_imported_material(kms):
    key = external_key(kms)
    m1, m2 = os.urandom(32), os.urandom(32)
    import_material(kms, key, m1)
    blob1 = kms.encrypt(KeyId=key, Plaintext=b"under m1")["CiphertextBlob"]
    with pytest.raises(ClientError) as e:
        kms.rotate_key_on_demand(KeyId=key)
    assert error_code(e) == "KMSInvalidStateException" and "NEW_KEY_MATERIAL" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        import_material(kms, key, m1, ImportType="NEW_KEY_MATERIAL")
    assert error_code(e) == "IncorrectKeyMaterialException"
    import_material(kms, key, m2, "RSA_AES_KEY_WRAP_SHA_256", "RSA_2048", ImportType="NEW_KEY_MATERIAL")
    assert parse_blob(kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]).key_version == 1, "staged, not yet current"
    assert kms.list_key_rotations(KeyId=key)["Rotations"] == []
    kms.rotate_key_on_demand(KeyId=key)
    blob2 = kms.encrypt(KeyId=key, Plaintext=b"under m2")["CiphertextBlob"]
    assert parse_blob(blob2).key_version == 2
    assert decrypt_blob(m2, blob2) == b"under m2"
    assert kms.decrypt(CiphertextBlob=blob1)["Plaintext"] == b"under m1"
    assert [r["RotationType"] for r in kms.list_key_rotations(KeyId=key)["Rotations"]] == ["ON_DEMAND"]
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is False


def import_rows(s, key):
    """The token ids (hex) of a key's import parameters in the server's SQLite database, and the
    master-key version in the header of each one's sealed wrapping key."""
    import sqlite3
    db = sqlite3.connect(f"file:{s.data_dir / 'clavis.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT token_id, sealed_private_key FROM import_params WHERE key_id = ?", (key,)).fetchall()
        return {token: sealed_master_version(sealed) for token, sealed in rows}
    finally:
        db.close()


def params_for(kms, key, spec="RSA_2048"):
    return kms.get_parameters_for_import(KeyId=key, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec=spec)


def advance(s, seconds):
    status, body, _ = s.raw("ClavisAdmin.AdvanceTestClock", json.dumps({"Seconds": seconds}))
    assert status == 200, body
    return body


def test_issue_14_import_tokens_are_capped_per_key_and_purged(clocked_byok):
    """Issue 14, item 8: a key has at most 10 unused, unexpired import tokens
    (LimitExceededException beyond); a consumed token's parameters are deleted at once, and
    expired ones a day after their expiry (until then a late import still says "expired")."""
    s = clocked_byok
    kms = s.client()
    key, other = external_key(kms), external_key(kms)
    tokens = [params_for(kms, key) for _ in range(10)]
    with pytest.raises(ClientError) as e:
        params_for(kms, key)
    assert error_code(e) == "LimitExceededException"
    assert "10 unused import tokens" in e.value.response["Error"]["Message"]
    assert set(import_rows(s, key)) == {t["ImportToken"].hex() for t in tokens}, "a refused request stores nothing"
    late = params_for(kms, other)  # the cap is per key
    # A consumed token's row (its sealed wrapping key) is deleted, and its place is free again.
    material = os.urandom(32)
    kms.import_key_material(KeyId=key, ImportToken=tokens[0]["ImportToken"], ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
                            EncryptedKeyMaterial=wrap_with_cryptography(tokens[0]["PublicKey"], "RSAES_OAEP_SHA_256", material))
    assert tokens[0]["ImportToken"].hex() not in import_rows(s, key)
    assert len(import_rows(s, key)) == 9
    params_for(kms, key)
    with pytest.raises(ClientError) as e:
        params_for(kms, key)
    assert error_code(e) == "LimitExceededException"
    # Expired tokens no longer count; for a day after expiry they still say they expired.
    advance(s, 24 * 3600 + 60)
    fresh = params_for(kms, key)
    with pytest.raises(ClientError) as e:
        kms.import_key_material(KeyId=other, ImportToken=late["ImportToken"], ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
                                EncryptedKeyMaterial=wrap_with_cryptography(late["PublicKey"], "RSAES_OAEP_SHA_256", material))
    assert error_code(e) == "ExpiredImportTokenException"
    assert len(import_rows(s, key)) == 11
    # A day later the scheduler's due work has purged them, of both keys.
    advance(s, 24 * 3600 + 60)
    assert set(import_rows(s, key)) == {fresh["ImportToken"].hex()}
    assert import_rows(s, other) == {}
    with pytest.raises(ClientError) as e:
        kms.import_key_material(KeyId=other, ImportToken=late["ImportToken"], ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
                                EncryptedKeyMaterial=wrap_with_cryptography(late["PublicKey"], "RSAES_OAEP_SHA_256", material))
    assert error_code(e) == "InvalidImportTokenException"


def test_issue_14_master_key_rotation_skips_expired_import_parameters(clocked_byok):
    """Issue 14, item 8: a master-key rotation reseals live import parameters only; expired ones
    (no request unseals them again) stay as they are until the purge deletes them."""
    s = clocked_byok
    kms = s.client()
    stale, live = external_key(kms), external_key(kms)
    params_for(kms, stale)
    advance(s, 24 * 3600 + 60)
    fresh = params_for(kms, live)
    assert list(import_rows(s, stale).values()) == [1] and list(import_rows(s, live).values()) == [1]
    status, body, _ = s.raw("ClavisAdmin.RotateMasterKey", "{}")
    assert status == 200, body
    assert import_rows(s, live) == {fresh["ImportToken"].hex(): body["MasterKeyVersion"]}
    assert list(import_rows(s, stale).values()) == [1], "the expired wrapping key was not resealed"
    # The live token still works after the rotation.
    material = os.urandom(32)
    kms.import_key_material(KeyId=live, ImportToken=fresh["ImportToken"], ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
                            EncryptedKeyMaterial=wrap_with_cryptography(fresh["PublicKey"], "RSAES_OAEP_SHA_256", material))
    assert import_rows(s, live) == {}
