"""Asymmetric, HMAC and post-quantum keys (#17), through boto3 and the AWS CLI, with every
signature, public key, ciphertext and shared secret checked outside Clavis: openssl for RSA,
ECDSA, Ed25519 and ECDH, Python `cryptography` (OpenSSL) for ML-DSA and ML-KEM, and the
documented sealed format for what reaches the data directory."""

import base64
import hashlib
import sqlite3
import subprocess

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from conftest import error_code
from harness import key_material_seal_context, unseal
from test_byok import wrap_with_cryptography

HASHES = {"256": "sha256", "384": "sha384", "512": "sha512"}


def fails(call, code):
    with pytest.raises(ClientError) as e:
        call()
    assert error_code(e) == code, e.value.response["Error"]
    return e.value.response["Error"]["Message"]


def create(kms, spec, usage):
    return kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]


def openssl(*args, input=None):
    return subprocess.run(["openssl", *args], input=input, capture_output=True, check=False)


def public_pem(tmp_path, der, name="pub"):
    path = tmp_path / f"{name}.pem"
    path.write_bytes(
        serialization.load_der_public_key(der).public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


@pytest.fixture(scope="module")
def keys(server):
    kms = server.client()
    return {
        "rsa_sign": create(kms, "RSA_2048", "SIGN_VERIFY"),
        "rsa_enc": create(kms, "RSA_2048", "ENCRYPT_DECRYPT"),
        "p256": create(kms, "ECC_NIST_P256", "SIGN_VERIFY"),
        "p384": create(kms, "ECC_NIST_P384", "SIGN_VERIFY"),
        "p521": create(kms, "ECC_NIST_P521", "SIGN_VERIFY"),
        "k1": create(kms, "ECC_SECG_P256K1", "SIGN_VERIFY"),
        "ed": create(kms, "ECC_NIST_EDWARDS25519", "SIGN_VERIFY"),
        "mldsa": create(kms, "ML_DSA_65", "SIGN_VERIFY"),
        "ecdh": create(kms, "ECC_NIST_P384", "KEY_AGREEMENT"),
        "hmac": create(kms, "HMAC_256", "GENERATE_VERIFY_MAC"),
        "mlkem": create(kms, "ML_KEM_768", "ENCAPSULATE_DECAPSULATE"),
        "sym": kms.create_key()["KeyMetadata"],
    }


def test_key_metadata_lists_the_algorithms_as_aws(kms, keys):
    m = keys["rsa_sign"]
    assert m["KeySpec"] == m["CustomerMasterKeySpec"] == "RSA_2048" and m["KeyUsage"] == "SIGN_VERIFY"
    assert m["SigningAlgorithms"] == [
        "RSASSA_PKCS1_V1_5_SHA_256",
        "RSASSA_PKCS1_V1_5_SHA_384",
        "RSASSA_PKCS1_V1_5_SHA_512",
        "RSASSA_PSS_SHA_256",
        "RSASSA_PSS_SHA_384",
        "RSASSA_PSS_SHA_512",
    ]
    assert "EncryptionAlgorithms" not in m
    assert keys["rsa_enc"]["EncryptionAlgorithms"] == ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
    assert keys["p384"]["SigningAlgorithms"] == ["ECDSA_SHA_384"]
    assert keys["k1"]["SigningAlgorithms"] == ["ECDSA_SHA_256"]
    assert keys["ed"]["SigningAlgorithms"] == ["ED25519_SHA_512", "ED25519_PH_SHA_512"]
    assert keys["mldsa"]["SigningAlgorithms"] == ["ML_DSA_SHAKE_256"]
    assert keys["ecdh"]["KeyAgreementAlgorithms"] == ["ECDH"]
    assert keys["hmac"]["MacAlgorithms"] == ["HMAC_SHA_256"] and "EncryptionAlgorithms" not in keys["hmac"]
    assert keys["mlkem"]["EncapsulationAlgorithms"] == ["ML_KEM"]
    assert keys["sym"]["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"]
    assert kms.describe_key(KeyId=keys["p256"]["KeyId"])["KeyMetadata"]["SigningAlgorithms"] == ["ECDSA_SHA_256"]
    # The deprecated member works too, and the bigger RSA sizes and HMAC sizes are made.
    assert kms.create_key(CustomerMasterKeySpec="RSA_3072", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeySpec"] == "RSA_3072"
    for size in ("224", "384", "512"):
        assert create(kms, f"HMAC_{size}", "GENERATE_VERIFY_MAC")["MacAlgorithms"] == [f"HMAC_SHA_{size}"]


@pytest.mark.parametrize(
    "spec,usage,code",
    [
        ("SM2", "SIGN_VERIFY", "UnsupportedOperationException"),
        ("HMAC_256", "ENCRYPT_DECRYPT", "ValidationException"),
        ("RSA_2048", "KEY_AGREEMENT", "ValidationException"),
        ("ECC_SECG_P256K1", "KEY_AGREEMENT", "ValidationException"),
        ("ML_DSA_44", "ENCRYPT_DECRYPT", "ValidationException"),
        ("ML_KEM_512", "SIGN_VERIFY", "ValidationException"),
        ("SYMMETRIC_DEFAULT", "SIGN_VERIFY", "ValidationException"),
    ],
)
def test_incompatible_specs_and_usages_are_refused(kms, spec, usage, code):
    fails(lambda: kms.create_key(KeySpec=spec, KeyUsage=usage), code)


def test_hmac_key_without_a_usage_is_refused(kms):
    # KeyUsage defaults to ENCRYPT_DECRYPT, which an HMAC key cannot have.
    fails(lambda: kms.create_key(KeySpec="HMAC_256"), "ValidationException")


@pytest.mark.parametrize(
    "key,algorithm",
    [
        ("rsa_sign", "RSASSA_PSS_SHA_256"),
        ("rsa_sign", "RSASSA_PSS_SHA_384"),
        ("rsa_sign", "RSASSA_PSS_SHA_512"),
        ("rsa_sign", "RSASSA_PKCS1_V1_5_SHA_256"),
        ("rsa_sign", "RSASSA_PKCS1_V1_5_SHA_384"),
        ("rsa_sign", "RSASSA_PKCS1_V1_5_SHA_512"),
        ("p256", "ECDSA_SHA_256"),
        ("p384", "ECDSA_SHA_384"),
        ("p521", "ECDSA_SHA_512"),
        ("k1", "ECDSA_SHA_256"),
    ],
)
@pytest.mark.parametrize("message_type", ["RAW", "DIGEST"])
def test_signatures_verify_with_openssl(kms, keys, tmp_path, key, algorithm, message_type):
    key_id = keys[key]["KeyId"]
    digest_name = HASHES[algorithm[-3:]]
    message = b"the message signed by Clavis " + key.encode()
    digest = hashlib.new(digest_name, message).digest()
    signed = digest if message_type == "DIGEST" else message
    sig = kms.sign(KeyId=key_id, Message=signed, MessageType=message_type, SigningAlgorithm=algorithm)
    assert sig["SigningAlgorithm"] == algorithm and sig["KeyId"] == keys[key]["Arn"]
    pem = public_pem(tmp_path, kms.get_public_key(KeyId=key_id)["PublicKey"])
    (tmp_path / "sig").write_bytes(sig["Signature"])
    (tmp_path / "msg").write_bytes(message)
    opts = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"] if "PSS" in algorithm else []
    checked = openssl("dgst", f"-{digest_name}", "-verify", str(pem), *opts, "-signature", str(tmp_path / "sig"), str(tmp_path / "msg"))
    assert checked.returncode == 0 and b"Verified OK" in checked.stdout, checked.stderr
    # Clavis agrees, and refuses a tampered signature and a tampered message.
    ok = kms.verify(KeyId=key_id, Message=signed, MessageType=message_type, Signature=sig["Signature"], SigningAlgorithm=algorithm)
    assert ok["SignatureValid"] is True
    bad = bytearray(sig["Signature"])
    bad[len(bad) // 2] ^= 1
    fails(
        lambda: kms.verify(KeyId=key_id, Message=signed, MessageType=message_type, Signature=bytes(bad), SigningAlgorithm=algorithm),
        "KMSInvalidSignatureException",
    )
    other = hashlib.new(digest_name, b"another").digest() if message_type == "DIGEST" else b"another"
    fails(
        lambda: kms.verify(KeyId=key_id, Message=other, MessageType=message_type, Signature=sig["Signature"], SigningAlgorithm=algorithm),
        "KMSInvalidSignatureException",
    )


def test_signing_refusals(kms, keys):
    p256 = keys["p256"]["KeyId"]
    # A digest of the wrong length, a wrong algorithm for the key, a wrong usage.
    fails(lambda: kms.sign(KeyId=p256, Message=b"x" * 31, MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256"), "ValidationException")
    fails(lambda: kms.sign(KeyId=p256, Message=b"m", SigningAlgorithm="ECDSA_SHA_384"), "InvalidKeyUsageException")
    fails(lambda: kms.sign(KeyId=p256, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256"), "InvalidKeyUsageException")
    fails(lambda: kms.sign(KeyId=keys["rsa_enc"]["KeyId"], Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256"), "InvalidKeyUsageException")
    fails(lambda: kms.sign(KeyId=keys["sym"]["KeyId"], Message=b"m", SigningAlgorithm="ECDSA_SHA_256"), "InvalidKeyUsageException")
    fails(lambda: kms.sign(KeyId=p256, Message=b"m", SigningAlgorithm="NOPE"), "ValidationException")
    fails(lambda: kms.sign(KeyId=p256, Message=b"m" * 4097, SigningAlgorithm="ECDSA_SHA_256"), "ValidationException")
    fails(lambda: kms.sign(KeyId=p256, Message=b"m", MessageType="EXTERNAL_MU", SigningAlgorithm="ECDSA_SHA_256"), "ValidationException")
    fails(
        lambda: kms.sign(KeyId=keys["mldsa"]["KeyId"], Message=b"m" * 64, MessageType="EXTERNAL_MU", SigningAlgorithm="ML_DSA_SHAKE_256"),
        "UnsupportedOperationException",
    )
    fails(lambda: kms.sign(KeyId=p256, Message=b"m", SigningAlgorithm="ECDSA_SHA_256", DryRun=True), "DryRunOperationException")
    # Wrong usage the other way round.
    fails(lambda: kms.encrypt(KeyId=p256, Plaintext=b"m"), "InvalidKeyUsageException")
    fails(lambda: kms.generate_data_key(KeyId=keys["rsa_enc"]["KeyId"], KeySpec="AES_256"), "InvalidKeyUsageException")
    fails(lambda: kms.get_public_key(KeyId=keys["sym"]["KeyId"]), "UnsupportedOperationException")
    fails(lambda: kms.get_public_key(KeyId=keys["hmac"]["KeyId"]), "UnsupportedOperationException")
    fails(lambda: kms.enable_key_rotation(KeyId=p256), "UnsupportedOperationException")
    fails(lambda: kms.rotate_key_on_demand(KeyId=keys["rsa_enc"]["KeyId"]), "UnsupportedOperationException")


def test_ed25519_signature_verifies_with_openssl(kms, keys, tmp_path):
    key_id = keys["ed"]["KeyId"]
    message = b"an Ed25519 message"
    sig = kms.sign(KeyId=key_id, Message=message, SigningAlgorithm="ED25519_SHA_512")["Signature"]
    assert len(sig) == 64
    pem = public_pem(tmp_path, kms.get_public_key(KeyId=key_id)["PublicKey"])
    (tmp_path / "sig").write_bytes(sig)
    (tmp_path / "msg").write_bytes(message)
    checked = openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", str(pem), "-rawin", "-in", str(tmp_path / "msg"), "-sigfile", str(tmp_path / "sig")
    )
    assert checked.returncode == 0 and b"Signature Verified Successfully" in checked.stdout, checked.stderr
    assert kms.verify(KeyId=key_id, Message=message, Signature=sig, SigningAlgorithm="ED25519_SHA_512")["SignatureValid"]
    fails(
        lambda: kms.sign(
            KeyId=key_id, Message=hashlib.sha512(message).digest(), MessageType="DIGEST", SigningAlgorithm="ED25519_PH_SHA_512"
        ),
        "UnsupportedOperationException",
    )


def test_ml_dsa_signature_verifies_with_cryptography(kms, keys):
    key_id = keys["mldsa"]["KeyId"]
    message = b"a post-quantum message"
    sig = kms.sign(KeyId=key_id, Message=message, SigningAlgorithm="ML_DSA_SHAKE_256")["Signature"]
    public = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
    public.verify(sig, message)  # raises InvalidSignature if wrong
    assert kms.verify(KeyId=key_id, Message=message, Signature=sig, SigningAlgorithm="ML_DSA_SHAKE_256")["SignatureValid"]
    fails(
        lambda: kms.verify(KeyId=key_id, Message=message + b"!", Signature=sig, SigningAlgorithm="ML_DSA_SHAKE_256"),
        "KMSInvalidSignatureException",
    )
    fails(
        lambda: kms.sign(KeyId=key_id, Message=b"x" * 32, MessageType="DIGEST", SigningAlgorithm="ML_DSA_SHAKE_256"), "ValidationException"
    )


def test_get_public_key_shape(kms, keys):
    pk = kms.get_public_key(KeyId=keys["rsa_enc"]["Arn"])
    assert pk["KeySpec"] == "RSA_2048" and pk["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert pk["EncryptionAlgorithms"] == ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"] and "SigningAlgorithms" not in pk
    assert serialization.load_der_public_key(pk["PublicKey"]).key_size == 2048
    assert kms.get_public_key(KeyId=keys["mlkem"]["KeyId"])["EncapsulationAlgorithms"] == ["ML_KEM"]


def test_rsa_encryption_with_openssl_and_clavis(kms, keys, tmp_path):
    key_id = keys["rsa_enc"]["KeyId"]
    pem = public_pem(tmp_path, kms.get_public_key(KeyId=key_id)["PublicKey"])
    # openssl encrypts with the public key; Clavis decrypts.
    (tmp_path / "pt").write_bytes(b"wrapped outside Clavis")
    for alg, md in (("RSAES_OAEP_SHA_256", "sha256"), ("RSAES_OAEP_SHA_1", "sha1")):
        made = openssl(
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            str(pem),
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            f"rsa_oaep_md:{md}",
            "-pkeyopt",
            f"rsa_mgf1_md:{md}",
            "-in",
            str(tmp_path / "pt"),
        )
        assert made.returncode == 0, made.stderr
        out = kms.decrypt(KeyId=key_id, CiphertextBlob=made.stdout, EncryptionAlgorithm=alg)
        assert out["Plaintext"] == b"wrapped outside Clavis" and out["EncryptionAlgorithm"] == alg
    # Clavis encrypts; the ciphertext is raw RSA-OAEP of the modulus size, and decrypts.
    enc = kms.encrypt(KeyId=key_id, Plaintext=b"x" * 190, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert len(enc["CiphertextBlob"]) == 256 and enc["EncryptionAlgorithm"] == "RSAES_OAEP_SHA_256"
    assert (
        kms.decrypt(KeyId=key_id, CiphertextBlob=enc["CiphertextBlob"], EncryptionAlgorithm="RSAES_OAEP_SHA_256")["Plaintext"] == b"x" * 190
    )
    # AWS's limits and rules.
    fails(lambda: kms.encrypt(KeyId=key_id, Plaintext=b"x" * 191, EncryptionAlgorithm="RSAES_OAEP_SHA_256"), "ValidationException")
    assert kms.encrypt(KeyId=key_id, Plaintext=b"x" * 214, EncryptionAlgorithm="RSAES_OAEP_SHA_1")["CiphertextBlob"]
    fails(lambda: kms.encrypt(KeyId=key_id, Plaintext=b"x"), "InvalidKeyUsageException")
    fails(
        lambda: kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256", EncryptionContext={"a": "b"}),
        "ValidationException",
    )
    fails(
        lambda: kms.encrypt(KeyId=keys["sym"]["KeyId"], Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256"),
        "InvalidKeyUsageException",
    )
    fails(lambda: kms.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionAlgorithm="RSAES_OAEP_SHA_256"), "ValidationException")
    fails(
        lambda: kms.decrypt(KeyId=key_id, CiphertextBlob=enc["CiphertextBlob"], EncryptionAlgorithm="RSAES_OAEP_SHA_1"),
        "InvalidCiphertextException",
    )


def test_hmac(kms, keys):
    key_id = keys["hmac"]["KeyId"]
    mac = kms.generate_mac(KeyId=key_id, Message=b"message", MacAlgorithm="HMAC_SHA_256")
    assert len(mac["Mac"]) == 32 and mac["MacAlgorithm"] == "HMAC_SHA_256"
    assert kms.generate_mac(KeyId=key_id, Message=b"message", MacAlgorithm="HMAC_SHA_256")["Mac"] == mac["Mac"]
    assert kms.verify_mac(KeyId=key_id, Message=b"message", Mac=mac["Mac"], MacAlgorithm="HMAC_SHA_256")["MacValid"] is True
    fails(lambda: kms.verify_mac(KeyId=key_id, Message=b"messagf", Mac=mac["Mac"], MacAlgorithm="HMAC_SHA_256"), "KMSInvalidMacException")
    bad = bytes([mac["Mac"][0] ^ 1]) + mac["Mac"][1:]
    fails(lambda: kms.verify_mac(KeyId=key_id, Message=b"message", Mac=bad, MacAlgorithm="HMAC_SHA_256"), "KMSInvalidMacException")
    fails(lambda: kms.generate_mac(KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_384"), "InvalidKeyUsageException")
    fails(lambda: kms.generate_mac(KeyId=keys["sym"]["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256"), "InvalidKeyUsageException")
    fails(lambda: kms.encrypt(KeyId=key_id, Plaintext=b"m"), "InvalidKeyUsageException")
    fails(lambda: kms.generate_mac(KeyId=key_id, Message=b"m" * 4097, MacAlgorithm="HMAC_SHA_256"), "ValidationException")


def test_ecdh_matches_openssl_derive(kms, keys, tmp_path):
    key_id = keys["ecdh"]["KeyId"]
    local = ec.generate_private_key(ec.SECP384R1())
    (tmp_path / "local.pem").write_bytes(
        local.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    local_spki = local.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    out = kms.derive_shared_secret(KeyId=key_id, KeyAgreementAlgorithm="ECDH", PublicKey=local_spki)
    assert out["KeyAgreementAlgorithm"] == "ECDH" and out["KeyOrigin"] == "AWS_KMS"
    peer = public_pem(tmp_path, kms.get_public_key(KeyId=key_id)["PublicKey"], "peer")
    derived = openssl("pkeyutl", "-derive", "-inkey", str(tmp_path / "local.pem"), "-peerkey", str(peer))
    assert derived.returncode == 0, derived.stderr
    assert out["SharedSecret"] == derived.stdout and len(derived.stdout) == 48
    # A point of another curve, junk, and a signing key are refused.
    other = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    fails(lambda: kms.derive_shared_secret(KeyId=key_id, KeyAgreementAlgorithm="ECDH", PublicKey=other), "ValidationException")
    fails(lambda: kms.derive_shared_secret(KeyId=key_id, KeyAgreementAlgorithm="ECDH", PublicKey=b"junk"), "ValidationException")
    fails(
        lambda: kms.derive_shared_secret(KeyId=keys["p384"]["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=local_spki),
        "InvalidKeyUsageException",
    )


def test_ml_kem_decapsulates_what_cryptography_encapsulates(kms, keys):
    key_id = keys["mlkem"]["KeyId"]
    public = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
    secret, ciphertext = public.encapsulate()
    out = kms.decapsulate(KeyId=key_id, SharedSecretCiphertextBlob=ciphertext, EncapsulationAlgorithm="ML_KEM")
    assert out["SharedSecret"] == secret and len(secret) == 32
    # Clavis's own encapsulation decapsulates to the same secret.
    enc = kms.encapsulate(KeyId=key_id, EncapsulationAlgorithm="ML_KEM")
    assert len(enc["SharedSecretCiphertextBlob"]) == 1088
    back = kms.decapsulate(KeyId=key_id, SharedSecretCiphertextBlob=enc["SharedSecretCiphertextBlob"], EncapsulationAlgorithm="ML_KEM")
    assert back["SharedSecret"] == enc["SharedSecret"]
    fails(
        lambda: kms.decapsulate(KeyId=key_id, SharedSecretCiphertextBlob=ciphertext[:-1], EncapsulationAlgorithm="ML_KEM"),
        "InvalidCiphertextException",
    )
    fails(
        lambda: kms.decapsulate(KeyId=keys["sym"]["KeyId"], SharedSecretCiphertextBlob=ciphertext, EncapsulationAlgorithm="ML_KEM"),
        "InvalidKeyUsageException",
    )


@pytest.mark.parametrize("spec", ["RSA_2048", "ECC_NIST_P256", "ECC_NIST_P521", "ECC_SECG_P256K1", "ECC_NIST_EDWARDS25519"])
def test_data_key_pairs(kms, keys, spec):
    sym = keys["sym"]["KeyId"]
    pair = kms.generate_data_key_pair(KeyId=sym, KeyPairSpec=spec, EncryptionContext={"purpose": "test"})
    assert pair["KeyPairSpec"] == spec and pair["KeyId"] == keys["sym"]["Arn"]
    private = serialization.load_der_private_key(pair["PrivateKeyPlaintext"], password=None)
    public_der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert public_der == pair["PublicKey"]
    # The private key is wrapped like any data key.
    assert (
        kms.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"], EncryptionContext={"purpose": "test"})["Plaintext"]
        == pair["PrivateKeyPlaintext"]
    )
    bare = kms.generate_data_key_pair_without_plaintext(KeyId=sym, KeyPairSpec=spec)
    assert "PrivateKeyPlaintext" not in bare
    assert serialization.load_der_public_key(bare["PublicKey"]) is not None


def test_data_key_pair_refusals(kms, keys):
    sym = keys["sym"]["KeyId"]
    fails(lambda: kms.generate_data_key_pair(KeyId=sym, KeyPairSpec="SM2"), "UnsupportedOperationException")
    fails(lambda: kms.generate_data_key_pair(KeyId=sym, KeyPairSpec="ML_KEM_768"), "UnsupportedOperationException")
    fails(lambda: kms.generate_data_key_pair(KeyId=sym, KeyPairSpec="NOPE"), "ValidationException")
    fails(lambda: kms.generate_data_key_pair(KeyId=keys["rsa_enc"]["KeyId"], KeyPairSpec="ECC_NIST_P256"), "InvalidKeyUsageException")


def test_rsa_pss_signature_checked_by_cryptography_too(kms, keys):
    key_id = keys["rsa_sign"]["KeyId"]
    sig = kms.sign(KeyId=key_id, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_384")["Signature"]
    public = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
    # Salt length = hash length, as AWS documents.
    public.verify(sig, b"m", padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48), hashes.SHA384())


def test_aws_cli_sign_and_get_public_key(server, keys, tmp_path):
    key_id = keys["p256"]["KeyId"]
    message = tmp_path / "message"
    message.write_bytes(b"from the CLI")
    out = server.cli(
        "kms",
        "sign",
        "--key-id",
        key_id,
        "--message",
        f"fileb://{message}",
        "--message-type",
        "RAW",
        "--signing-algorithm",
        "ECDSA_SHA_256",
    )
    sig = base64.b64decode(out["Signature"])
    pk = server.cli("kms", "get-public-key", "--key-id", key_id)
    assert pk["KeySpec"] == "ECC_NIST_P256" and pk["SigningAlgorithms"] == ["ECDSA_SHA_256"]
    public = serialization.load_der_public_key(base64.b64decode(pk["PublicKey"]))
    public.verify(sig, b"from the CLI", ec.ECDSA(hashes.SHA256()))
    mac = server.cli(
        "kms",
        "generate-mac",
        "--key-id",
        keys["hmac"]["KeyId"],
        "--message",
        f"fileb://{message}",
        "--mac-algorithm",
        "HMAC_SHA_256",
    )
    assert len(base64.b64decode(mac["Mac"])) == 32


def test_private_keys_are_sealed_at_rest(fresh_server):
    s = fresh_server.start()
    kms = s.client()
    key = create(kms, "ECC_NIST_P256", "SIGN_VERIFY")
    public = kms.get_public_key(KeyId=key["KeyId"])["PublicKey"]
    s.kill9()
    master = (s.data_dir / "master.key").read_bytes()
    db = sqlite3.connect(f"file:{s.data_dir / 'clavis.db'}?mode=ro", uri=True)
    (sealed,) = db.execute("SELECT sealed FROM key_material WHERE key_id = ? AND version = 1", (key["KeyId"],)).fetchone()
    db.close()
    # Sealed in the documented format; unsealed, it is the PKCS#8 private key of the public key.
    assert sealed[0] == 1
    pkcs8 = unseal(master, sealed, key_material_seal_context(key["KeyId"], 1))
    private = serialization.load_der_private_key(pkcs8, password=None)
    assert private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == public
    scalar = private.private_numbers().private_value.to_bytes(32, "big")
    for p in (q for q in s.data_dir.iterdir() if q.is_file() and q.name != "master.key"):
        content = p.read_bytes()
        assert pkcs8 not in content and scalar not in content, f"a private key in clear in {p.name}"


def import_into(kms, spec, usage, material, algorithm="RSA_AES_KEY_WRAP_SHA_256"):
    key = kms.create_key(KeySpec=spec, KeyUsage=usage, Origin="EXTERNAL")["KeyMetadata"]
    assert key["KeyState"] == "PendingImport"
    params = kms.get_parameters_for_import(KeyId=key["KeyId"], WrappingAlgorithm=algorithm, WrappingKeySpec="RSA_2048")
    wrapped = wrap_with_cryptography(params["PublicKey"], algorithm, material)
    kms.import_key_material(
        KeyId=key["KeyId"], ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE"
    )
    return key["KeyId"]


def test_imported_hmac_material_matches_python_hmac(kms):
    import hmac
    import os

    material = os.urandom(32)
    key_id = import_into(kms, "HMAC_256", "GENERATE_VERIFY_MAC", material, "RSAES_OAEP_SHA_256")
    mac = kms.generate_mac(KeyId=key_id, Message=b"checked outside", MacAlgorithm="HMAC_SHA_256")["Mac"]
    assert mac == hmac.new(material, b"checked outside", hashlib.sha256).digest()
    # AWS's length range for HMAC_256 material is 32 to 64 bytes.
    key = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC", Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    params = kms.get_parameters_for_import(KeyId=key, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
    fails(
        lambda: kms.import_key_material(
            KeyId=key,
            ImportToken=params["ImportToken"],
            EncryptedKeyMaterial=wrap_with_cryptography(params["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(16)),
            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
        ),
        "IncorrectKeyMaterialException",
    )


def test_imported_ec_and_rsa_private_keys_sign_for_their_public_keys(kms):
    from cryptography.hazmat.primitives.asymmetric import rsa

    local_ec = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = local_ec.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key_id = import_into(kms, "ECC_NIST_P256", "SIGN_VERIFY", pkcs8)
    public = local_ec.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert kms.get_public_key(KeyId=key_id)["PublicKey"] == public
    sig = kms.sign(KeyId=key_id, Message=b"imported", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    local_ec.public_key().verify(sig, b"imported", ec.ECDSA(hashes.SHA256()))

    local_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs8 = local_rsa.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key_id = import_into(kms, "RSA_2048", "ENCRYPT_DECRYPT", pkcs8)
    ct = local_rsa.public_key().encrypt(
        b"to the imported key", padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    )
    assert kms.decrypt(KeyId=key_id, CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_256")["Plaintext"] == b"to the imported key"

    # A private key of another curve or size, or junk, is not the key's material; RSA-OAEP
    # cannot carry a private key (AWS's wrapping table).
    other = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fails(lambda: import_into(kms, "ECC_NIST_P256", "SIGN_VERIFY", other), "IncorrectKeyMaterialException")
    fails(lambda: import_into(kms, "RSA_3072", "SIGN_VERIFY", pkcs8), "IncorrectKeyMaterialException")
    fails(lambda: import_into(kms, "ECC_NIST_P256", "SIGN_VERIFY", b"junk" * 10), "IncorrectKeyMaterialException")
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY", Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    fails(
        lambda: kms.get_parameters_for_import(KeyId=key, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"),
        "ValidationException",
    )
    fails(lambda: kms.create_key(KeySpec="ML_DSA_65", KeyUsage="SIGN_VERIFY", Origin="EXTERNAL"), "UnsupportedOperationException")


def test_re_encrypt_between_symmetric_and_rsa_keys(kms, keys):
    rsa_key, sym = keys["rsa_enc"]["KeyId"], keys["sym"]["KeyId"]
    blob = kms.encrypt(KeyId=sym, Plaintext=b"moves between keys", EncryptionContext={"c": "1"})["CiphertextBlob"]
    to_rsa = kms.re_encrypt(
        CiphertextBlob=blob,
        SourceEncryptionContext={"c": "1"},
        DestinationKeyId=rsa_key,
        DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_256",
    )
    assert to_rsa["SourceEncryptionAlgorithm"] == "SYMMETRIC_DEFAULT" and to_rsa["DestinationEncryptionAlgorithm"] == "RSAES_OAEP_SHA_256"
    assert len(to_rsa["CiphertextBlob"]) == 256
    back = kms.re_encrypt(
        CiphertextBlob=to_rsa["CiphertextBlob"],
        SourceKeyId=rsa_key,
        SourceEncryptionAlgorithm="RSAES_OAEP_SHA_256",
        DestinationKeyId=sym,
        DestinationEncryptionContext={"c": "2"},
    )
    assert back["SourceKeyId"] == keys["rsa_enc"]["Arn"]
    assert kms.decrypt(CiphertextBlob=back["CiphertextBlob"], EncryptionContext={"c": "2"})["Plaintext"] == b"moves between keys"
    fails(
        lambda: kms.re_encrypt(
            CiphertextBlob=to_rsa["CiphertextBlob"], SourceEncryptionAlgorithm="RSAES_OAEP_SHA_256", DestinationKeyId=sym
        ),
        "ValidationException",
    )
    fails(
        lambda: kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"c": "1"}, DestinationKeyId=rsa_key),
        "InvalidKeyUsageException",
    )


# Regressions from the adversarial review of #17.


def test_constrained_grants_and_grants_a_key_cannot_use_are_refused(kms, keys):
    grantee = "arn:aws:iam::111122223333:user/nobody"
    constraint = {"EncryptionContextEquals": {"a": "b"}}
    # A constraint would not apply to Sign (no encryption context): AWS refuses it on
    # asymmetric and HMAC keys rather than let the grant open up.
    for key, ops in (("p384", ["Sign"]), ("mlkem", ["Decapsulate"]), ("hmac", ["GenerateMac"]), ("rsa_enc", ["Decrypt"])):
        fails(
            lambda: kms.create_grant(KeyId=keys[key]["KeyId"], GranteePrincipal=grantee, Operations=ops, Constraints=constraint),
            "ValidationException",
        )
    # An operation the key cannot do is not a grant AWS makes.
    for key, ops in (("sym", ["Sign"]), ("rsa_enc", ["GenerateDataKey"]), ("p256", ["GenerateMac"]), ("sym", ["GetPublicKey"])):
        fails(lambda: kms.create_grant(KeyId=keys[key]["KeyId"], GranteePrincipal=grantee, Operations=ops), "ValidationException")
    assert kms.create_grant(KeyId=keys["p256"]["KeyId"], GranteePrincipal=grantee, Operations=["Sign", "Verify", "GetPublicKey"])["GrantId"]


def policy_with(account, deny_action, condition):
    import json

    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "kms:*", "Resource": "*"},
                {"Effect": "Deny", "Principal": "*", "Action": deny_action, "Resource": "*", "Condition": {"StringEquals": condition}},
            ],
        }
    )


def test_condition_keys_of_the_new_operations(kms):
    account = kms.describe_key(KeyId=kms.create_key()["KeyMetadata"]["KeyId"])["KeyMetadata"]["AWSAccountId"]
    rsa_key = create(kms, "RSA_2048", "SIGN_VERIFY")["KeyId"]
    kms.put_key_policy(
        KeyId=rsa_key, PolicyName="default", Policy=policy_with(account, "kms:Sign", {"kms:SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256"})
    )
    fails(lambda: kms.sign(KeyId=rsa_key, Message=b"m", SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256"), "AccessDeniedException")
    assert kms.sign(KeyId=rsa_key, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")["Signature"]
    kms.put_key_policy(KeyId=rsa_key, PolicyName="default", Policy=policy_with(account, "kms:Sign", {"kms:MessageType": "DIGEST"}))
    fails(
        lambda: kms.sign(KeyId=rsa_key, Message=b"d" * 32, MessageType="DIGEST", SigningAlgorithm="RSASSA_PSS_SHA_256"),
        "AccessDeniedException",
    )
    assert kms.sign(KeyId=rsa_key, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")["Signature"]

    mac_key = create(kms, "HMAC_256", "GENERATE_VERIFY_MAC")["KeyId"]
    kms.put_key_policy(
        KeyId=mac_key, PolicyName="default", Policy=policy_with(account, "kms:GenerateMac", {"kms:MacAlgorithm": "HMAC_SHA_256"})
    )
    fails(lambda: kms.generate_mac(KeyId=mac_key, Message=b"m", MacAlgorithm="HMAC_SHA_256"), "AccessDeniedException")

    agree = create(kms, "ECC_NIST_P256", "KEY_AGREEMENT")["KeyId"]
    kms.put_key_policy(
        KeyId=agree, PolicyName="default", Policy=policy_with(account, "kms:DeriveSharedSecret", {"kms:KeyAgreementAlgorithm": "ECDH"})
    )
    peer = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    fails(lambda: kms.derive_shared_secret(KeyId=agree, KeyAgreementAlgorithm="ECDH", PublicKey=peer), "AccessDeniedException")

    sym = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.put_key_policy(
        KeyId=sym, PolicyName="default", Policy=policy_with(account, "kms:GenerateDataKeyPair*", {"kms:DataKeyPairSpec": "RSA_2048"})
    )
    fails(lambda: kms.generate_data_key_pair(KeyId=sym, KeyPairSpec="RSA_2048"), "AccessDeniedException")
    assert kms.generate_data_key_pair(KeyId=sym, KeyPairSpec="ECC_NIST_P256")["PublicKey"]
    kms.put_key_policy(
        KeyId=sym,
        PolicyName="default",
        Policy=policy_with(account, "kms:GenerateDataKeyPair", {"kms:EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
    )
    fails(lambda: kms.generate_data_key_pair(KeyId=sym, KeyPairSpec="ECC_NIST_P256"), "AccessDeniedException")


def test_public_keys_and_private_keys_are_parsed_strictly(kms, keys):
    from cryptography.hazmat.primitives.asymmetric import rsa

    agree = create(kms, "ECC_NIST_P256", "KEY_AGREEMENT")["KeyId"]
    local = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = local.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    point = local.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    assert kms.derive_shared_secret(KeyId=agree, KeyAgreementAlgorithm="ECDH", PublicKey=spki)["SharedSecret"]
    for bad in (spki + b"\x00", point):
        fails(lambda: kms.derive_shared_secret(KeyId=agree, KeyAgreementAlgorithm="ECDH", PublicKey=bad), "ValidationException")
        fails(
            lambda: kms.derive_shared_secret(KeyId=agree, KeyAgreementAlgorithm="ECDH", PublicKey=bad, DryRun=True), "ValidationException"
        )
    # The exact modulus size and a public exponent above 2^16; no trailing bytes.
    der = serialization.Encoding.DER
    pkcs8 = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    short = rsa.generate_private_key(public_exponent=65537, key_size=3070).private_bytes(der, pkcs8, none)
    fails(lambda: import_into(kms, "RSA_3072", "SIGN_VERIFY", short), "IncorrectKeyMaterialException")
    e3 = rsa.generate_private_key(public_exponent=3, key_size=2048).private_bytes(der, pkcs8, none)
    fails(lambda: import_into(kms, "RSA_2048", "SIGN_VERIFY", e3), "IncorrectKeyMaterialException")
    ok = ec.generate_private_key(ec.SECP256R1()).private_bytes(der, pkcs8, none)
    fails(lambda: import_into(kms, "ECC_NIST_P256", "SIGN_VERIFY", ok + b"\x00"), "IncorrectKeyMaterialException")


def test_rsa_generation_floods_are_bounded(kms, keys):
    import concurrent.futures

    sym = keys["sym"]["KeyId"]

    def rsa_pair(_):
        try:
            kms.generate_data_key_pair_without_plaintext(KeyId=sym, KeyPairSpec="RSA_4096")
            return "ok"
        except ClientError as e:
            return e.response["Error"]["Code"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=48) as pool:
        flood = [pool.submit(rsa_pair, i) for i in range(48)]
        # An EC pair does not queue behind the RSA generations: it is made inline.
        assert kms.generate_data_key_pair(KeyId=sym, KeyPairSpec="ECC_NIST_P256")["PrivateKeyPlaintext"]
        outcomes = [f.result() for f in flood]
    # At most half the cores running and 16 waiting: the rest of a burst is throttled, as AWS
    # throttles (48 requests exceed that on any machine up to 64 cores).
    assert outcomes.count("ThrottlingException") >= 1, outcomes
    assert set(outcomes) <= {"ok", "ThrottlingException"}, outcomes
