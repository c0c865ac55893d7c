"""Makes python_sdk_vectors.json beside this file: messages written by the AWS Encryption SDK for
Python (both committing suites, frame length 128, 300 bytes) with a raw AES wrapping key, and
the data key recovered from each. Run with the e2e venv: .venv/bin/python make_vectors.py."""

import json
import sys

import aws_encryption_sdk
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.identifiers import Algorithm, EncryptionKeyType, WrappingAlgorithm
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKeyProvider


class Provider(RawMasterKeyProvider):
    provider_id = "clavis-test"

    def _get_raw_key(self, key_id):
        return WrappingKey(
            wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
            wrapping_key=bytes(range(32)),
            wrapping_key_type=EncryptionKeyType.SYMMETRIC,
        )


client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
provider = Provider()
provider.add_master_key(b"wrapping-key-1")
plaintext = bytes(i % 251 for i in range(300))
out = {}
SUITES = [("0478", Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY), ("0578", Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384)]
for name, alg in SUITES:
    context = {"purpose": "test", "b": "2"}
    ct, header = client.encrypt(source=plaintext, key_provider=provider, encryption_context=context, algorithm=alg, frame_length=128)
    edk = next(iter(header.encrypted_data_keys))
    data_key = provider.decrypt_data_key(edk, alg, header.encryption_context).data_key
    out[name] = {"message": ct.hex(), "data_key": data_key.hex(), "plaintext": plaintext.hex()}
json.dump(out, sys.stdout, indent=1)
