"""Every v0 operation through the AWS CLI, unchanged but for --endpoint-url."""

import base64
import json


from conftest import ACCOUNT, REGION


def test_cli_full_tour(server, tmp_path):
    meta = server.cli("kms", "create-key", "--description", "cli key", "--tags", "TagKey=env,TagValue=test")["KeyMetadata"]
    key_id = meta["KeyId"]
    assert meta["Arn"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"
    assert server.cli("kms", "describe-key", "--key-id", key_id)["KeyMetadata"]["Description"] == "cli key"
    assert key_id in [k["KeyId"] for k in server.cli("kms", "list-keys")["Keys"]]
    server.cli("kms", "update-key-description", "--key-id", key_id, "--description", "renamed")
    assert server.cli("kms", "describe-key", "--key-id", key_id)["KeyMetadata"]["Description"] == "renamed"

    server.cli("kms", "create-alias", "--alias-name", "alias/cli-tour", "--target-key-id", key_id)
    assert any(a["AliasName"] == "alias/cli-tour" for a in server.cli("kms", "list-aliases")["Aliases"])
    assert server.cli("kms", "list-aliases", "--key-id", key_id)["Aliases"][0]["AliasName"] == "alias/cli-tour"

    # Encrypt a file and decrypt it back, as the AWS documentation shows.
    src = tmp_path / "plain.txt"
    src.write_bytes(b"hello from the AWS CLI")
    enc = server.cli("kms", "encrypt", "--key-id", "alias/cli-tour", "--plaintext", f"fileb://{src}",
                     "--encryption-context", "app=tour")
    assert enc["KeyId"].endswith(key_id)
    blob = tmp_path / "blob.bin"
    blob.write_bytes(base64.b64decode(enc["CiphertextBlob"]))
    dec = server.cli("kms", "decrypt", "--ciphertext-blob", f"fileb://{blob}", "--encryption-context", "app=tour")
    assert base64.b64decode(dec["Plaintext"]) == b"hello from the AWS CLI"
    failed = server.cli("kms", "decrypt", "--ciphertext-blob", f"fileb://{blob}", check=False)
    assert failed.returncode != 0 and "InvalidCiphertextException" in failed.stderr

    other = server.cli("kms", "create-key")["KeyMetadata"]["KeyId"]
    re = server.cli("kms", "re-encrypt", "--ciphertext-blob", f"fileb://{blob}", "--source-encryption-context", "app=tour",
                    "--destination-key-id", other)
    assert re["KeyId"].endswith(other)

    dk = server.cli("kms", "generate-data-key", "--key-id", key_id, "--key-spec", "AES_256")
    assert len(base64.b64decode(dk["Plaintext"])) == 32
    dkw = server.cli("kms", "generate-data-key-without-plaintext", "--key-id", key_id, "--number-of-bytes", "16")
    assert "Plaintext" not in dkw
    assert len(base64.b64decode(server.cli("kms", "generate-random", "--number-of-bytes", "24")["Plaintext"])) == 24

    server.cli("kms", "tag-resource", "--key-id", key_id, "--tags", "TagKey=owner,TagValue=ops")
    tags = server.cli("kms", "list-resource-tags", "--key-id", key_id)["Tags"]
    assert {"TagKey": "owner", "TagValue": "ops"} in tags
    server.cli("kms", "untag-resource", "--key-id", key_id, "--tag-keys", "owner")
    assert {"TagKey": "owner", "TagValue": "ops"} not in server.cli("kms", "list-resource-tags", "--key-id", key_id)["Tags"]

    policy = json.loads(server.cli("kms", "get-key-policy", "--key-id", key_id, "--policy-name", "default")["Policy"])
    assert policy["Version"] == "2012-10-17"

    server.cli("kms", "disable-key", "--key-id", key_id)
    assert server.cli("kms", "describe-key", "--key-id", key_id)["KeyMetadata"]["KeyState"] == "Disabled"
    failed = server.cli("kms", "encrypt", "--key-id", key_id, "--plaintext", f"fileb://{src}", check=False)
    assert failed.returncode != 0 and "DisabledException" in failed.stderr
    server.cli("kms", "enable-key", "--key-id", key_id)
    server.cli("kms", "update-alias", "--alias-name", "alias/cli-tour", "--target-key-id", other)
    assert server.cli("kms", "describe-key", "--key-id", "alias/cli-tour")["KeyMetadata"]["KeyId"] == other
    server.cli("kms", "delete-alias", "--alias-name", "alias/cli-tour")
    failed = server.cli("kms", "describe-key", "--key-id", "alias/cli-tour", check=False)
    assert failed.returncode != 0 and "NotFoundException" in failed.stderr


def test_cli_wrong_credentials(server):
    p = server.cli("kms", "list-keys", check=False, secret="wrong-secret-wrong-secret-wrong")
    assert p.returncode != 0 and "InvalidSignatureException" in p.stderr
    p = server.cli("kms", "list-keys", check=False, akid="AKIANOBODYNOBODY0000")
    assert p.returncode != 0 and "UnrecognizedClientException" in p.stderr
