"""`clavis encrypt` / `clavis decrypt` (issue #21): files in the AWS Encryption SDK message format,
interoperable both ways with AWS's own `aws-encryption-cli` pointed at Clavis through
AWS_ENDPOINT_URL_KMS; standard input and output, several wrapping keys, frame lengths, the data
key limit, and bad input (truncation, a flipped bit, a wrong context, a key the caller may not
use, another suite) failing with one line and leaving no output file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REGION

ESDK_CLI = Path(sys.executable).parent / "aws-encryption-cli"
SIGNED = "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384"
UNSIGNED = "AES_256_GCM_HKDF_SHA512_COMMIT_KEY"


def esdk_cli(server, *args, home, check=True, input=None):
    """Runs aws-encryption-cli against `server` (its root credentials), in an environment of its
    own; returns the finished process."""
    akid, secret = server.root_credentials
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "AWS_ENDPOINT_URL_KMS": server.endpoint,
        "AWS_ACCESS_KEY_ID": akid,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_MAX_ATTEMPTS": "1",
    }
    p = subprocess.run([str(ESDK_CLI), *map(str, args)], env=env, capture_output=True, input=input, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"aws-encryption-cli {' '.join(map(str, args))} failed ({p.returncode}): {p.stderr.decode()}")
    return p


def new_key(server):
    return server.cli("kms", "create-key")["KeyMetadata"]["Arn"]


@pytest.fixture(scope="module")
def key(server):
    return new_key(server)


def payload(n):
    return os.urandom(n)


def leftovers(directory):
    return sorted(p.name for p in Path(directory).iterdir() if "clavis-tmp" in p.name)


@pytest.mark.parametrize("algorithm", [SIGNED, UNSIGNED])
@pytest.mark.parametrize("size", [0, 1, 4096, 100_000])
def test_clavis_to_aws_encryption_cli(server, key, tmp_path, algorithm, size):
    plain, enc, back = tmp_path / "plain", tmp_path / "plain.enc", tmp_path / "plain.back"
    plain.write_bytes(payload(size))
    server.clavis("encrypt", "--key-id", key, "--algorithm", algorithm, "--context", "purpose=test", "--context", "team=a b",
                  plain, enc)
    assert enc.read_bytes()[:3] == bytes([0x02]) + (b"\x05\x78" if algorithm == SIGNED else b"\x04\x78")
    esdk_cli(server, "--decrypt", "-i", enc, "-o", back, "-w", f"key={key}", "-S",
             "--commitment-policy", "require-encrypt-require-decrypt", "-c", "purpose=test", home=tmp_path)
    assert back.read_bytes() == plain.read_bytes()


@pytest.mark.parametrize("algorithm", [SIGNED, UNSIGNED])
@pytest.mark.parametrize("frame_length", [128, 4096, 1048576])
def test_aws_encryption_cli_to_clavis(server, key, tmp_path, algorithm, frame_length):
    plain, enc, back = tmp_path / "plain", tmp_path / "plain.enc", tmp_path / "plain.back"
    plain.write_bytes(payload(300_000))
    esdk_cli(server, "--encrypt", "-i", plain, "-o", enc, "-w", f"key={key}", "-S", "--algorithm", algorithm,
             "--frame-length", frame_length, "-c", "purpose=test", home=tmp_path)
    server.clavis("decrypt", "--context", "purpose=test", "--algorithm", algorithm, enc, back)
    assert back.read_bytes() == plain.read_bytes()


def test_stdin_stdout_and_metadata_output(server, key, tmp_path):
    data = payload(70_000)
    akid, secret = server.root_credentials
    env = dict(os.environ, AWS_ENDPOINT_URL=server.endpoint, AWS_REGION=REGION, AWS_ACCESS_KEY_ID=akid, AWS_SECRET_ACCESS_KEY=secret)
    enc = subprocess.run([str(server.binary), "encrypt", "--key-id", key, "-", "-"], input=data, capture_output=True, env=env, check=True)
    assert enc.stdout[:1] == b"\x02" and enc.stderr == b""
    dec = subprocess.run([str(server.binary), "decrypt", "-", "-"], input=enc.stdout, capture_output=True, env=env, check=True)
    assert dec.stdout == data
    # The other tool's standard streams too.
    out = esdk_cli(server, "--decrypt", "-i", "-", "-o", "-", "-w", f"key={key}", "-S", input=enc.stdout, home=tmp_path)
    assert out.stdout == data
    assert leftovers(Path.cwd()) == []


def test_several_key_ids_each_decrypts(server, tmp_path):
    keys = [new_key(server) for _ in range(3)]
    plain, enc = tmp_path / "plain", tmp_path / "plain.enc"
    plain.write_bytes(payload(10_000))
    server.clavis("encrypt", *[a for k in keys for a in ("--key-id", k)], "--frame-length", "1000", plain, enc)
    for i, k in enumerate(keys):
        back = tmp_path / f"back-{i}"
        esdk_cli(server, "--decrypt", "-i", enc, "-o", back, "-w", f"key={k}", "-S", home=tmp_path)
        assert back.read_bytes() == plain.read_bytes()
        back2 = tmp_path / f"back2-{i}"
        server.clavis("decrypt", "--key-id", k, enc, back2)
        assert back2.read_bytes() == plain.read_bytes()
    # The data key limit, both ways and in both tools.
    limited = server.clavis("decrypt", "--max-encrypted-data-keys", "2", enc, tmp_path / "no", check=False)
    assert limited.returncode != 0 and "3 encrypted data keys, more than the maximum of 2" in limited.stderr
    assert not (tmp_path / "no").exists()
    server.clavis("decrypt", "--max-encrypted-data-keys", "3", enc, tmp_path / "yes")
    refused = server.clavis("encrypt", "--key-id", keys[0], "--key-id", keys[1], "--max-encrypted-data-keys", "1",
                            plain, tmp_path / "no2", check=False)
    assert refused.returncode != 0 and not (tmp_path / "no2").exists()
    python_limited = esdk_cli(server, "--decrypt", "-i", enc, "-o", tmp_path / "no3", "-w", f"key={keys[0]}", "-S",
                              "--max-encrypted-data-keys", "2", home=tmp_path, check=False)
    assert python_limited.returncode != 0


def test_frame_length_changes_the_layout(server, key, tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(payload(10_000))
    sizes = {}
    for frame in (100, 4096):
        enc = tmp_path / f"enc-{frame}"
        server.clavis("encrypt", "--key-id", key, "--algorithm", UNSIGNED, "--frame-length", frame, plain, enc)
        sizes[frame] = enc.stat().st_size
        back = tmp_path / f"back-{frame}"
        server.clavis("decrypt", enc, back)
        assert back.read_bytes() == plain.read_bytes()
    # 10,000 bytes are 100 regular frames of 100 (and an empty final frame) or 2 regular frames
    # of 4096 (and a final frame of 1808): 98 more regular frames, 32 bytes of IV, sequence
    # number and tag each.
    assert sizes[100] - sizes[4096] == (100 - 2) * 32
    bad = server.clavis("encrypt", "--key-id", key, "--frame-length", "0", plain, tmp_path / "x", check=False)
    assert bad.returncode != 0


def one_line_failure(p, expected):
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert expected in lines[0], p.stderr
    return lines[0]


def test_bad_input_fails_cleanly_and_writes_nothing(server, key, tmp_path):
    plain, enc = tmp_path / "plain", tmp_path / "plain.enc"
    plain.write_bytes(payload(50_000))
    server.clavis("encrypt", "--key-id", key, "--context", "purpose=test", plain, enc)
    message = enc.read_bytes()
    out = tmp_path / "out"

    def decrypt(data, *args, name="in"):
        src = tmp_path / name
        src.write_bytes(data)
        return server.clavis("decrypt", *args, src, out, check=False)

    # Truncated: in the header, in a frame, in the signature.
    for cut in (10, len(message) // 2, len(message) - 3):
        one_line_failure(decrypt(message[:cut]), "truncated")
        assert not out.exists() and leftovers(tmp_path) == []
    # A flipped bit in the first frame, the last frame and the signature.
    for at in (len(message) // 3, len(message) - 200, len(message) - 20):
        t = bytearray(message)
        t[at] ^= 0x10
        line = one_line_failure(decrypt(bytes(t)), "decrypting")
        assert "failed authentication" in line or "signature" in line, line
        assert not out.exists() and leftovers(tmp_path) == []
    # A context the message does not hold.
    one_line_failure(decrypt(message, "--context", "purpose=other"), "does not hold purpose=other")
    assert not out.exists()
    # Another suite than required.
    one_line_failure(decrypt(message, "--algorithm", UNSIGNED), "not the required AES_256_GCM_HKDF_SHA512_COMMIT_KEY")
    # A message from a non-committing suite (format version 1) is refused by its first byte.
    esdk_cli(server, "--encrypt", "-i", plain, "-o", tmp_path / "v1.enc", "-w", f"key={key}", "-S",
             "--algorithm", "AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384", "--commitment-policy", "forbid-encrypt-allow-decrypt",
             home=tmp_path)
    one_line_failure(decrypt((tmp_path / "v1.enc").read_bytes(), name="v1"), "unsupported message format version 0x01")
    # Not a message at all.
    one_line_failure(decrypt(b"hello, world\n", name="text"), "unsupported message format version 0x68")
    # Trailing bytes after the signature.
    one_line_failure(decrypt(message + b"\0", name="trailing"), "after the end of the message")
    assert not out.exists() and leftovers(tmp_path) == []
    # An existing output file is left as it was when decryption fails.
    out.write_bytes(b"keep me")
    one_line_failure(decrypt(message[:-1], name="cut"), "truncated")
    assert out.read_bytes() == b"keep me"
    out.unlink()
    # A missing input and a reserved context key.
    one_line_failure(server.clavis("decrypt", tmp_path / "missing", out, check=False), "missing")
    one_line_failure(server.clavis("encrypt", "--key-id", key, "--context", "aws-crypto-public-key=x", plain, out, check=False),
                     "reserved")
    one_line_failure(server.clavis("encrypt", "--key-id", key, plain, plain, check=False), "is the input file")
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_key_the_caller_may_not_use(server, key, tmp_path):
    user = json.loads(server.clavis("admin", "user", "create", "envelope-nobody", "--role", "none").stdout)
    plain, enc = tmp_path / "plain", tmp_path / "plain.enc"
    plain.write_bytes(payload(1000))
    server.clavis("encrypt", "--key-id", key, plain, enc)
    creds = {"akid": user["AccessKeyId"], "secret": user["SecretAccessKey"]}
    out = tmp_path / "out"
    line = one_line_failure(server.clavis("decrypt", enc, out, check=False, **creds), "AccessDeniedException")
    assert "no encrypted data key could be decrypted" in line
    one_line_failure(server.clavis("encrypt", "--key-id", key, plain, out, check=False, **creds), "AccessDeniedException")
    assert not out.exists() and leftovers(tmp_path) == []
    # A --key-id other than the one the data key is wrapped under.
    other = new_key(server)
    one_line_failure(server.clavis("decrypt", "--key-id", other, enc, out, check=False), "no encrypted data key could be decrypted")
    assert not out.exists()


def test_writes_to_a_device_directly(server, key, tmp_path):
    plain, enc = tmp_path / "plain", tmp_path / "plain.enc"
    plain.write_bytes(payload(5000))
    server.clavis("encrypt", "--key-id", key, plain, "/dev/null")
    server.clavis("encrypt", "--key-id", key, plain, enc)
    server.clavis("decrypt", enc, "/dev/null")
    assert Path("/dev/null").is_char_device()
