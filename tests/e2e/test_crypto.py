"""Envelope encryption through boto3: Encrypt, Decrypt, ReEncrypt, GenerateDataKey*,
GenerateRandom, the encryption context, aliases in every KeyId position, and the errors a
client must get for bad input."""

import base64

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from conftest import ACCOUNT, REGION, error_code


@pytest.fixture()
def key(kms):
    return kms.create_key(Description="crypto test")["KeyMetadata"]


def test_encrypt_decrypt_round_trip_with_and_without_key_id(kms, key):
    out = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"attack at dawn")
    assert out["KeyId"] == key["Arn"]
    assert out["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    assert b"attack at dawn" not in out["CiphertextBlob"]
    # KeyId is optional for symmetric Decrypt: the blob names its key.
    dec = kms.decrypt(CiphertextBlob=out["CiphertextBlob"])
    assert dec["Plaintext"] == b"attack at dawn"
    assert dec["KeyId"] == key["Arn"]
    assert dec["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    dec2 = kms.decrypt(CiphertextBlob=out["CiphertextBlob"], KeyId=key["Arn"])
    assert dec2["Plaintext"] == b"attack at dawn"


def test_ciphertexts_are_randomised(kms, key):
    a = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"same")["CiphertextBlob"]
    b = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"same")["CiphertextBlob"]
    assert a != b


def test_encryption_context_is_bound(kms, key):
    ctx = {"tenant": "acme", "purpose": "backup"}
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x", EncryptionContext=ctx)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=dict(reversed(list(ctx.items()))))["Plaintext"] == b"x"
    for wrong in [None, {"tenant": "acme"}, {"tenant": "evil", "purpose": "backup"}, {**ctx, "extra": "1"}]:
        with pytest.raises(ClientError) as e:
            if wrong is None:
                kms.decrypt(CiphertextBlob=blob)
            else:
                kms.decrypt(CiphertextBlob=blob, EncryptionContext=wrong)
        assert error_code(e) == "InvalidCiphertextException"


def test_tampered_ciphertext_is_refused(kms, key):
    blob = bytearray(kms.encrypt(KeyId=key["KeyId"], Plaintext=b"integrity")["CiphertextBlob"])
    for i in [0, 1, 20, 25, len(blob) - 1]:
        t = bytearray(blob)
        t[i] ^= 0x01
        with pytest.raises(ClientError) as e:
            kms.decrypt(CiphertextBlob=bytes(t))
        assert error_code(e) in ("InvalidCiphertextException",), i
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=bytes(blob[:30]))
    assert error_code(e) == "InvalidCiphertextException"
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=b"not a clavis ciphertext at all, just bytes")
    assert error_code(e) == "InvalidCiphertextException"


def test_mismatched_key_id_is_incorrect_key(kms, key):
    other = kms.create_key()["KeyMetadata"]
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=blob, KeyId=other["KeyId"])
    assert error_code(e) == "IncorrectKeyException"


def test_plaintext_limits(server, kms, key):
    assert kms.decrypt(CiphertextBlob=kms.encrypt(KeyId=key["KeyId"], Plaintext=b"a" * 4096)["CiphertextBlob"])["Plaintext"] == b"a" * 4096
    # botocore validates lengths client-side; send the oversize request raw to test the server.
    status, body, _ = server.raw(
        "TrentService.Encrypt", '{"KeyId": "%s", "Plaintext": "%s"}' % (key["KeyId"], base64.b64encode(b"a" * 4097).decode())
    )
    assert (status, body["__type"]) == (400, "ValidationException")
    assert "4096" in body["message"]
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=key["KeyId"], Plaintext=b"")
    assert error_code(e) == "ValidationException"


def test_unknown_and_disabled_keys(kms, key):
    missing = "11111111-2222-4333-8444-555555555555"
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=missing, Plaintext=b"x")
    assert error_code(e) == "NotFoundException"
    assert missing in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId="not-a-key-id", Plaintext=b"x")
    assert error_code(e) == "NotFoundException"
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId="alias/does-not-exist", Plaintext=b"x")
    assert error_code(e) == "NotFoundException"

    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    kms.disable_key(KeyId=key["KeyId"])
    for call in [
        lambda: kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x"),
        lambda: kms.decrypt(CiphertextBlob=blob),
        lambda: kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256"),
        lambda: kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=key["KeyId"]),
    ]:
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == "DisabledException"
        assert "disabled" in e.value.response["Error"]["Message"]
    kms.enable_key(KeyId=key["KeyId"])
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


def test_generate_data_key_envelope(kms, key):
    ctx = {"file": "report.pdf"}
    dk = kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256", EncryptionContext=ctx)
    assert len(dk["Plaintext"]) == 32 and dk["KeyId"] == key["Arn"]
    assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"] == dk["Plaintext"]
    assert len(kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_128")["Plaintext"]) == 16
    assert len(kms.generate_data_key(KeyId=key["KeyId"], NumberOfBytes=64)["Plaintext"]) == 64
    wp = kms.generate_data_key_without_plaintext(KeyId=key["KeyId"], KeySpec="AES_256")
    assert "Plaintext" not in wp
    assert len(kms.decrypt(CiphertextBlob=wp["CiphertextBlob"])["Plaintext"]) == 32
    for kwargs in [{}, {"KeySpec": "AES_256", "NumberOfBytes": 32}, {"NumberOfBytes": 1025}]:
        with pytest.raises(ClientError) as e:
            kms.generate_data_key(KeyId=key["KeyId"], **kwargs)
        assert error_code(e) == "ValidationException", kwargs


def test_re_encrypt_moves_between_keys_and_contexts(kms, key):
    dest = kms.create_key()["KeyMetadata"]
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"move me", EncryptionContext={"a": "1"})["CiphertextBlob"]
    out = kms.re_encrypt(
        CiphertextBlob=blob, SourceEncryptionContext={"a": "1"}, DestinationKeyId=dest["KeyId"], DestinationEncryptionContext={"b": "2"}
    )
    assert out["SourceKeyId"] == key["Arn"] and out["KeyId"] == dest["Arn"]
    assert out["SourceEncryptionAlgorithm"] == out["DestinationEncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    dec = kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"b": "2"})
    assert dec["Plaintext"] == b"move me" and dec["KeyId"] == dest["Arn"]
    with pytest.raises(ClientError) as e:
        kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=dest["KeyId"])  # source context missing
    assert error_code(e) == "InvalidCiphertextException"
    with pytest.raises(ClientError) as e:
        kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"a": "1"}, SourceKeyId=dest["KeyId"], DestinationKeyId=dest["KeyId"])
    assert error_code(e) == "IncorrectKeyException"


def test_generate_random(server, kms):
    a = kms.generate_random(NumberOfBytes=32)["Plaintext"]
    b = kms.generate_random(NumberOfBytes=32)["Plaintext"]
    assert len(a) == 32 and a != b
    assert len(kms.generate_random(NumberOfBytes=1024)["Plaintext"]) == 1024
    for n in [0, 1025]:
        with pytest.raises((ClientError, ParamValidationError)):
            kms.generate_random(NumberOfBytes=n)
    status, body, _ = server.raw("TrentService.GenerateRandom", '{"NumberOfBytes": 1025}')
    assert (status, body["__type"]) == (400, "ValidationException")


def test_aliases_in_every_key_id_position(kms, key):
    name = "alias/crypto-every-position"
    kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
    alias_arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:{name}"
    for ref in [name, alias_arn, key["KeyId"], key["Arn"]]:
        assert kms.describe_key(KeyId=ref)["KeyMetadata"]["KeyId"] == key["KeyId"], ref
        blob = kms.encrypt(KeyId=ref, Plaintext=b"p")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob, KeyId=ref)["Plaintext"] == b"p"
        dk = kms.generate_data_key(KeyId=ref, KeySpec="AES_256")
        assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]
        kms.generate_data_key_without_plaintext(KeyId=ref, NumberOfBytes=16)
        out = kms.re_encrypt(CiphertextBlob=blob, SourceKeyId=ref, DestinationKeyId=ref)
        assert kms.decrypt(CiphertextBlob=out["CiphertextBlob"])["Plaintext"] == b"p"


def test_dry_run(kms, key):
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x", DryRun=True)
    assert error_code(e) == "DryRunOperationException"
