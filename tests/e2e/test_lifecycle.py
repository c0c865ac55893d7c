"""Key lifecycle through boto3 against the real binary: material versions, rotation on demand
and automatic (with the test-only clock), re-wrap on unwrap from an unmodified boto3, scheduled
deletion, cancellation and destruction, and the key-state refusals."""

import base64
import json
import sqlite3
import time

import pytest
from botocore.exceptions import ClientError

from conftest import REGION, Server, error_code
from harness import parse_blob, run_clavis

DAY = 86_400
# The scheduler period of the `clocked` servers.
SCHEDULER_INTERVAL_MS = 200


@pytest.fixture()
def clocked(tmp_root, request):
    args = ["--dangerous-test-clock", "--scheduler-interval-ms", str(SCHEDULER_INTERVAL_MS)]
    s = Server(tmp_root / f"clock-{request.node.name}", args=args).start()
    yield s
    s.stop()


def advance(server, days, run_scheduler=True):
    status, body, _ = server.raw("ClavisAdmin.AdvanceTestClock", json.dumps({"Seconds": int(days * DAY), "RunScheduler": run_scheduler}))
    assert status == 200, body
    return body


def version_of(blob):
    return parse_blob(blob).key_version


def test_rotate_on_demand_keeps_old_versions_decryptable(kms):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    blobs = [kms.encrypt(KeyId=key, Plaintext=b"v1", EncryptionContext={"n": "1"})["CiphertextBlob"]]
    for n in (2, 3):
        assert kms.rotate_key_on_demand(KeyId=key)["KeyId"].endswith(key)
        blobs.append(kms.encrypt(KeyId=key, Plaintext=f"v{n}".encode(), EncryptionContext={"n": str(n)})["CiphertextBlob"])
    assert [version_of(b) for b in blobs] == [1, 2, 3]
    for n, b in enumerate(blobs, start=1):
        assert kms.decrypt(CiphertextBlob=b, EncryptionContext={"n": str(n)})["Plaintext"] == f"v{n}".encode()
    rotations = kms.list_key_rotations(KeyId=key)
    assert [r["RotationType"] for r in rotations["Rotations"]] == ["ON_DEMAND", "ON_DEMAND"]
    assert all(r["KeyId"].endswith(key) and r["RotationDate"] for r in rotations["Rotations"])
    assert rotations["Truncated"] is False
    page = kms.list_key_rotations(KeyId=key, Limit=1)
    assert page["Truncated"] and len(page["Rotations"]) == 1
    rest = kms.list_key_rotations(KeyId=key, Marker=page["NextMarker"])
    assert len(rest["Rotations"]) == 1
    status = kms.get_key_rotation_status(KeyId=key)
    assert status["KeyRotationEnabled"] is False and "RotationPeriodInDays" not in status
    # ReEncrypt moves an old ciphertext to the newest version.
    out = kms.re_encrypt(CiphertextBlob=blobs[0], SourceEncryptionContext={"n": "1"}, DestinationKeyId=key)
    assert version_of(out["CiphertextBlob"]) == 3


def test_rotation_status_and_validation(server, kms):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    st = kms.get_key_rotation_status(KeyId=key)
    assert st["KeyRotationEnabled"] is True and st["RotationPeriodInDays"] == 90
    assert abs(st["NextRotationDate"].timestamp() - (time.time() + 90 * DAY)) < 120
    kms.enable_key_rotation(KeyId=key)  # default period
    assert kms.get_key_rotation_status(KeyId=key)["RotationPeriodInDays"] == 365
    for days in (89, 2561):  # botocore checks these too, so send them raw to test the server
        status, body, _ = server.raw("TrentService.EnableKeyRotation", json.dumps({"KeyId": key, "RotationPeriodInDays": days}))
        assert (status, body["__type"]) == (400, "ValidationException"), days
    kms.disable_key_rotation(KeyId=key)
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is False


def test_automatic_rotation_when_the_period_passes(clocked):
    kms = clocked.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    old = kms.encrypt(KeyId=key, Plaintext=b"before rotation")["CiphertextBlob"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    first_due = kms.get_key_rotation_status(KeyId=key)["NextRotationDate"].timestamp()
    assert advance(clocked, 30)["Rotated"] == 0
    assert kms.list_key_rotations(KeyId=key)["Rotations"] == []
    assert advance(clocked, 61)["Rotated"] == 1
    rot = kms.list_key_rotations(KeyId=key)["Rotations"]
    assert [r["RotationType"] for r in rot] == ["AUTOMATIC"]
    assert abs(kms.get_key_rotation_status(KeyId=key)["NextRotationDate"].timestamp() - (first_due + 90 * DAY)) < 5
    assert version_of(kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]) == 2
    assert kms.decrypt(CiphertextBlob=old)["Plaintext"] == b"before rotation"
    # The background scheduler (every SCHEDULER_INTERVAL_MS here) rotates without being asked, exactly once.
    advance(clocked, 91, run_scheduler=False)
    deadline = time.time() + 10
    while time.time() < deadline and len(kms.list_key_rotations(KeyId=key)["Rotations"]) < 2:
        time.sleep(0.1)
    time.sleep(3 * SCHEDULER_INTERVAL_MS / 1000)  # several more scheduler runs: still one rotation for this period
    assert [r["RotationType"] for r in kms.list_key_rotations(KeyId=key)["Rotations"]] == ["AUTOMATIC", "AUTOMATIC"]


def test_rotation_schedule_survives_restart(clocked):
    kms = clocked.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    clocked.kill9()
    clocked.start()  # the test clock starts again at real time
    kms = clocked.client()
    assert kms.get_key_rotation_status(KeyId=key)["RotationPeriodInDays"] == 90
    assert advance(clocked, 91)["Rotated"] == 1
    assert len(kms.list_key_rotations(KeyId=key)["Rotations"]) == 1


def rewrap_client(server, **credentials):
    """An unmodified boto3 client plus two documented event hooks (README: re-wrap on unwrap)."""
    kms = server.client(**credentials)

    def ask_for_rewrap(request, **kwargs):
        request.headers["X-Clavis-Rewrap"] = "true"

    def expose_rewrap(http_response, parsed, **kwargs):
        if http_response.status_code == 200:
            raw = json.loads(http_response.content)
            for member in ("ClavisRewrappedCiphertextBlob", "ClavisKeyMaterialVersion"):
                if member in raw:
                    parsed[member] = raw[member]

    kms.meta.events.register("before-sign.kms.Decrypt", ask_for_rewrap)
    kms.meta.events.register("after-call.kms.Decrypt", expose_rewrap)
    return kms


def test_rewrap_on_unwrap_from_unmodified_boto3(server, kms):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    dk = kms.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext={"file": "a"})
    kms.rotate_key_on_demand(KeyId=key)
    kms.rotate_key_on_demand(KeyId=key)

    rk = rewrap_client(server)
    out = rk.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"file": "a"})
    assert out["Plaintext"] == dk["Plaintext"]
    assert out["ClavisKeyMaterialVersion"] == 3
    new_blob = base64.b64decode(out["ClavisRewrappedCiphertextBlob"])
    assert version_of(new_blob) == 3 and new_blob != dk["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=new_blob, EncryptionContext={"file": "a"})["Plaintext"] == dk["Plaintext"]
    # Already at the newest version: nothing to re-wrap.
    again = rk.decrypt(CiphertextBlob=new_blob, EncryptionContext={"file": "a"})
    assert again["ClavisKeyMaterialVersion"] == 3 and "ClavisRewrappedCiphertextBlob" not in again
    # A plain Decrypt stays exactly AWS-shaped.
    status, body, _ = server.raw(
        "TrentService.Decrypt",
        json.dumps({"CiphertextBlob": base64.b64encode(dk["CiphertextBlob"]).decode(), "EncryptionContext": {"file": "a"}}),
    )
    assert status == 200 and set(body) == {"KeyId", "Plaintext", "EncryptionAlgorithm"}


def test_rewrap_from_the_clavis_cli(server, kms, tmp_path):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"cli rewrap", EncryptionContext={"a": "b"})["CiphertextBlob"]
    kms.rotate_key_on_demand(KeyId=key)
    src, dst = tmp_path / "old.bin", tmp_path / "new.bin"
    src.write_bytes(blob)
    akid, secret = server.root_credentials
    env = {"AWS_ACCESS_KEY_ID": akid, "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": REGION}
    p = run_clavis("key", "rewrap", "--endpoint-url", server.endpoint, "--ciphertext-file", src, "--out", dst,
                   "--encryption-context", "a=b", env=env, timeout=30, check=False)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["Rewrapped"] is True and result["KeyMaterialVersion"] == 2
    assert "cli rewrap" not in p.stdout
    assert version_of(dst.read_bytes()) == 2
    assert kms.decrypt(CiphertextBlob=dst.read_bytes(), EncryptionContext={"a": "b"})["Plaintext"] == b"cli rewrap"


def test_scheduled_deletion_cancel_and_state_rules(server, kms):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    for days in (6, 31):
        status, body, _ = server.raw("TrentService.ScheduleKeyDeletion", json.dumps({"KeyId": key, "PendingWindowInDays": days}))
        assert (status, body["__type"]) == (400, "ValidationException"), days
    with pytest.raises(ClientError) as e:
        kms.cancel_key_deletion(KeyId=key)
    assert error_code(e) == "KMSInvalidStateException" and "not pending deletion" in e.value.response["Error"]["Message"]

    out = kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    assert out["KeyState"] == "PendingDeletion" and out["PendingWindowInDays"] == 7
    assert abs(out["DeletionDate"].timestamp() - (time.time() + 7 * DAY)) < 120
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion" and meta["Enabled"] is False and "DeletionDate" in meta
    assert kms.schedule_key_deletion(KeyId=kms.create_key()["KeyMetadata"]["KeyId"])["PendingWindowInDays"] == 30

    refusals = [
        lambda: kms.encrypt(KeyId=key, Plaintext=b"x"),
        lambda: kms.decrypt(CiphertextBlob=blob),
        lambda: kms.generate_data_key(KeyId=key, KeySpec="AES_256"),
        lambda: kms.enable_key(KeyId=key),
        lambda: kms.disable_key(KeyId=key),
        lambda: kms.rotate_key_on_demand(KeyId=key),
        lambda: kms.enable_key_rotation(KeyId=key),
        lambda: kms.schedule_key_deletion(KeyId=key),
        lambda: kms.tag_resource(KeyId=key, Tags=[{"TagKey": "a", "TagValue": "b"}]),
        lambda: kms.update_key_description(KeyId=key, Description="d"),
        lambda: kms.create_alias(AliasName="alias/to-pending", TargetKeyId=key),
    ]
    for call in refusals:
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == "KMSInvalidStateException"
        assert "pending deletion" in e.value.response["Error"]["Message"]

    assert kms.cancel_key_deletion(KeyId=key)["KeyId"].endswith(key)
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "Disabled" and "DeletionDate" not in meta
    for call in [lambda: kms.rotate_key_on_demand(KeyId=key), lambda: kms.enable_key_rotation(KeyId=key)]:
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == "KMSInvalidStateException"
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=blob)
    assert error_code(e) == "DisabledException"
    kms.enable_key(KeyId=key)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


def test_expiry_destroys_the_key_and_its_material(clocked):
    kms = clocked.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.rotate_key_on_demand(KeyId=key)
    kms.create_alias(AliasName="alias/doomed", TargetKeyId=key)
    blob = kms.encrypt(KeyId=key, Plaintext=b"shred me")["CiphertextBlob"]
    keep = kms.create_key()["KeyMetadata"]["KeyId"]
    db = sqlite3.connect(f"file:{clocked.data_dir / 'clavis.db'}?mode=ro", uri=True)
    sealed = [row[0] for row in db.execute("SELECT sealed FROM key_material WHERE key_id = ?", (key,))]
    db.close()
    assert len(sealed) == 2

    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    assert advance(clocked, 6)["Destroyed"] == 0
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert advance(clocked, 1.1)["Destroyed"] == 1
    for call in [lambda: kms.describe_key(KeyId=key), lambda: kms.describe_key(KeyId="alias/doomed")]:
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == "NotFoundException"
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=blob)
    assert error_code(e) == "InvalidCiphertextException"
    assert kms.describe_key(KeyId=keep)["KeyMetadata"]["KeyState"] == "Enabled"

    clocked.stop()
    files = [p for p in clocked.data_dir.iterdir() if p.name.startswith("clavis.db")]
    content = b"".join(p.read_bytes() for p in files)
    assert keep.encode() in content, "the scan must see the database's contents"
    for s in sealed:
        assert s not in content, "destroyed key material is still in the database files"


def test_test_clock_is_off_by_default(server):
    status, body, _ = server.raw("ClavisAdmin.AdvanceTestClock", json.dumps({"Seconds": 86400}))
    assert (status, body["__type"]) == (400, "UnsupportedOperationException")


def test_cli_rotation_and_deletion(server):
    key = server.cli("kms", "create-key")["KeyMetadata"]["KeyId"]
    server.cli("kms", "rotate-key-on-demand", "--key-id", key)
    assert server.cli("kms", "list-key-rotations", "--key-id", key)["Rotations"][0]["RotationType"] == "ON_DEMAND"
    server.cli("kms", "enable-key-rotation", "--key-id", key, "--rotation-period-in-days", "180")
    assert server.cli("kms", "get-key-rotation-status", "--key-id", key)["RotationPeriodInDays"] == 180
    out = server.cli("kms", "schedule-key-deletion", "--key-id", key, "--pending-window-in-days", "7")
    assert out["KeyState"] == "PendingDeletion"
    server.cli("kms", "cancel-key-deletion", "--key-id", key)
    assert server.cli("kms", "describe-key", "--key-id", key)["KeyMetadata"]["KeyState"] == "Disabled"
