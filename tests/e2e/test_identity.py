"""Users and their access keys through the administration API and `clavis admin`, and dual
authorization for deletion (which needs two principals)."""

import json

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, error_code
from harness import run_clavis
from test_access_control import admin_cli


def new_user(server, name, role="manager"):
    out = admin_cli(server, "admin", "user", "create", name, "--role", role)
    assert out["Role"] == role
    assert out["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/{name}"
    assert out["AccessKeyId"].startswith("AKIA") and len(out["AccessKeyId"]) == 20 and len(out["SecretAccessKey"]) == 40
    return out, server.client(akid=out["AccessKeyId"], secret=out["SecretAccessKey"])


def test_users_and_access_keys(fresh_server):
    s = fresh_server.start()
    alice, alice_kms = new_user(s, "alice")
    key = alice_kms.create_key(Description="made by alice")["KeyMetadata"]
    assert key["AWSAccountId"] == ACCOUNT
    assert s.client().describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Description"] == "made by alice"
    assert [u["UserName"] for u in admin_cli(s, "admin", "user", "list")] == ["alice"]

    status, body, _ = s.raw("ClavisAdmin.CreateUser", json.dumps({"UserName": "alice"}))
    assert (status, body["__type"]) == (400, "AlreadyExistsException")
    status, body, _ = s.raw("ClavisAdmin.CreateUser", json.dumps({"UserName": "bad name!"}))
    assert (status, body["__type"]) == (400, "ValidationException")
    # Only the account's root principal administers.
    for target in ["ClavisAdmin.CreateUser", "ClavisAdmin.ListUsers", "ClavisAdmin.LookupEvents"]:
        status, body, _ = s.raw(target, json.dumps({"UserName": "mallory"}), akid=alice["AccessKeyId"], secret=alice["SecretAccessKey"])
        assert (status, body["__type"]) == (400, "AccessDeniedException"), target
    with pytest.raises(ClientError) as e:
        s.client(akid=alice["AccessKeyId"], secret="x" * 40).list_keys()
    assert error_code(e) == "InvalidSignatureException"
    s.stop()
    # The secret appears in the CreateUser response only: never in the audit log or database.
    for p in list((s.data_dir / "audit").iterdir()) + [p for p in s.data_dir.iterdir() if p.name.startswith("clavis.db")]:
        if p.is_file():
            assert alice["SecretAccessKey"].encode() not in p.read_bytes(), p.name
    events = run_clavis("audit", "export", "--data-dir", s.data_dir, check=False).stdout
    created = [json.loads(ln) for ln in events.splitlines() if '"CreateUser"' in ln and "errorCode" not in ln]
    assert created and created[0]["responseElements"]["accessKey"]["accessKeyId"] == alice["AccessKeyId"]


def test_dual_authorization_for_deletion(fresh_server):
    s = fresh_server.start()
    root = s.client()
    _, bob = new_user(s, "bob")
    _, carol = new_user(s, "carol")
    key = root.create_key()["KeyMetadata"]["KeyId"]
    admin_cli(s, "key", "enable-dual-authorization", "--key-id", key)
    assert root.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"
    status, body, _ = s.raw("TrentService.DescribeKey", json.dumps({"KeyId": key}))
    assert body["KeyMetadata"]["ClavisDualAuthorization"] is True

    # One principal asks: nothing is scheduled, the key stays usable.
    out = bob.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    assert out["KeyState"] == "Enabled" and "DeletionDate" not in out
    status, raw, _ = s.raw("TrentService.DescribeKey", json.dumps({"KeyId": key}))
    assert raw["KeyMetadata"]["KeyState"] == "Enabled"
    blob = bob.encrypt(KeyId=key, Plaintext=b"still usable")["CiphertextBlob"]
    # Asking again alone changes nothing.
    assert bob.schedule_key_deletion(KeyId=key)["KeyState"] == "Enabled"
    # The request can be withdrawn.
    bob.cancel_key_deletion(KeyId=key)
    assert carol.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)["KeyState"] == "Enabled", "a fresh request by carol"
    # A different principal approves: now it is scheduled, with the requester's window.
    body = json.loads(json.dumps(s.raw("TrentService.ScheduleKeyDeletion", json.dumps({"KeyId": key, "PendingWindowInDays": 30}))[1]))
    assert body["KeyState"] == "PendingDeletion" and body["PendingWindowInDays"] == 7 and "DeletionDate" in body
    assert body["ClavisDualAuthorization"]["Status"] == "Approved"
    assert body["ClavisDualAuthorization"]["RequestedBy"].endswith(":user/carol")
    assert body["ClavisDualAuthorization"]["ApprovedBy"].endswith(":root")
    with pytest.raises(ClientError) as e:
        bob.decrypt(CiphertextBlob=blob)
    assert error_code(e) == "KMSInvalidStateException"
    root.cancel_key_deletion(KeyId=key)
    assert root.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Disabled"

    # Without dual authorization one principal schedules deletion directly.
    plain = root.create_key()["KeyMetadata"]["KeyId"]
    assert bob.schedule_key_deletion(KeyId=plain, PendingWindowInDays=7)["KeyState"] == "PendingDeletion"


def test_access_key_lifecycle(fresh_server):
    s = fresh_server.start()
    alice, alice_kms = new_user(s, "alice")
    key = alice_kms.create_key()["KeyMetadata"]["KeyId"]
    second = admin_cli(s, "admin", "access-key", "create", "--user", "alice")
    assert second["AccessKeyId"].startswith("AKIA") and len(second["SecretAccessKey"]) == 40
    listed = admin_cli(s, "admin", "access-key", "list", "--user", "alice")
    assert sorted(k["AccessKeyId"] for k in listed) == sorted([alice["AccessKeyId"], second["AccessKeyId"]])
    assert all(k["Status"] == "Active" and "SecretAccessKey" not in k for k in listed)
    alice2 = s.client(akid=second["AccessKeyId"], secret=second["SecretAccessKey"])
    assert alice2.describe_key(KeyId=key)["KeyMetadata"]["KeyId"] == key

    # Deactivation works at once: the very next request is refused.
    admin_cli(s, "admin", "access-key", "deactivate", alice["AccessKeyId"])
    with pytest.raises(ClientError) as e:
        alice_kms.encrypt(KeyId=key, Plaintext=b"x")
    assert error_code(e) == "UnrecognizedClientException"
    assert alice2.encrypt(KeyId=key, Plaintext=b"x")["KeyId"].endswith(key)
    admin_cli(s, "admin", "access-key", "activate", alice["AccessKeyId"])
    assert alice_kms.encrypt(KeyId=key, Plaintext=b"x")["KeyId"].endswith(key)
    admin_cli(s, "admin", "access-key", "delete", second["AccessKeyId"])
    with pytest.raises(ClientError) as e:
        alice2.list_keys()
    assert error_code(e) == "UnrecognizedClientException"

    # The administrator cannot lock itself out with the key it signs with; unknown ids are NotFound.
    status, body, _ = s.raw(
        "ClavisAdmin.UpdateAccessKey", json.dumps({"AccessKeyId": s.env["CLAVIS_ROOT_ACCESS_KEY_ID"], "Status": "Inactive"})
    )
    assert (status, body["__type"]) == (400, "ValidationException")
    status, body, _ = s.raw("ClavisAdmin.DeleteAccessKey", json.dumps({"AccessKeyId": "AKIANOSUCHKEY0000000"}))
    assert (status, body["__type"]) == (400, "NotFoundException")
    status, body, _ = s.raw("ClavisAdmin.ListAccessKeys", json.dumps({"UserName": "nobody"}))
    assert (status, body["__type"]) == (400, "NotFoundException")
    # The root principal's own keys (no UserName) can be rotated.
    root_key = admin_cli(s, "admin", "access-key", "create")
    assert s.client(akid=root_key["AccessKeyId"], secret=root_key["SecretAccessKey"]).list_keys()["Keys"]
    # A user cannot manage access keys.
    status, body, _ = s.raw("ClavisAdmin.CreateAccessKey", "{}", akid=alice["AccessKeyId"], secret=alice["SecretAccessKey"])
    assert (status, body["__type"]) == (400, "AccessDeniedException")


def test_built_in_roles_deny_matrix(fresh_server):
    s = fresh_server.start()
    root = s.client()
    key = root.create_key()["KeyMetadata"]["KeyId"]
    blob = root.encrypt(KeyId=key, Plaintext=b"shared")["CiphertextBlob"]
    _, reader = new_user(s, "reader1", "reader")
    _, writer = new_user(s, "writer1", "writer")
    _, manager = new_user(s, "manager1", "manager")
    admin_user, admin_kms = new_user(s, "admin1", "admin")

    def denied(call, action):
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == "AccessDeniedException", action
        msg = e.value.response["Error"]["Message"]
        assert "is not authorized to perform" in msg and action in msg, msg

    # A reader wraps and unwraps but changes nothing.
    assert reader.decrypt(CiphertextBlob=blob)["Plaintext"] == b"shared"
    dk = reader.generate_data_key(KeyId=key, KeySpec="AES_256")
    assert reader.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]
    assert reader.describe_key(KeyId=key)["KeyMetadata"]["KeyId"] == key
    assert reader.list_keys()["Keys"]
    denied(lambda: reader.disable_key(KeyId=key), "kms:DisableKey")
    denied(lambda: reader.schedule_key_deletion(KeyId=key, PendingWindowInDays=7), "kms:ScheduleKeyDeletion")
    denied(lambda: reader.create_key(), "kms:CreateKey")
    denied(lambda: reader.tag_resource(KeyId=key, Tags=[{"TagKey": "a", "TagValue": "b"}]), "kms:TagResource")
    denied(lambda: reader.rotate_key_on_demand(KeyId=key), "kms:RotateKeyOnDemand")
    # A writer creates and uses keys, but does not disable, delete or rotate them.
    wkey = writer.create_key(Description="writer's")["KeyMetadata"]["KeyId"]
    writer.create_alias(AliasName="alias/writer", TargetKeyId=wkey)
    writer.tag_resource(KeyId=wkey, Tags=[{"TagKey": "owner", "TagValue": "writer"}])
    assert writer.decrypt(CiphertextBlob=writer.encrypt(KeyId="alias/writer", Plaintext=b"w")["CiphertextBlob"])["Plaintext"] == b"w"
    denied(lambda: writer.disable_key(KeyId=wkey), "kms:DisableKey")
    denied(lambda: writer.schedule_key_deletion(KeyId=wkey, PendingWindowInDays=7), "kms:ScheduleKeyDeletion")
    denied(lambda: writer.enable_key_rotation(KeyId=wkey), "kms:EnableKeyRotation")
    # A manager does every key operation, but not identities or the audit log.
    manager.disable_key(KeyId=wkey)
    manager.enable_key(KeyId=wkey)
    manager.rotate_key_on_demand(KeyId=wkey)
    assert manager.schedule_key_deletion(KeyId=wkey, PendingWindowInDays=7)["KeyState"] == "PendingDeletion"
    for target in ["ClavisAdmin.CreateUser", "ClavisAdmin.LookupEvents"]:
        status, body, _ = s.raw(target, json.dumps({"UserName": "x"}), akid=_akid(manager), secret=_secret(manager))
        assert (status, body["__type"]) == (400, "AccessDeniedException"), target
    # An admin user manages identities like the root principal.
    status, body, _ = s.raw("ClavisAdmin.CreateUser", json.dumps({"UserName": "made-by-admin", "Role": "reader"}),
                            akid=admin_user["AccessKeyId"], secret=admin_user["SecretAccessKey"])
    assert status == 200 and body["User"]["Role"] == "reader"
    status, body, _ = s.raw("ClavisAdmin.CreateUser", json.dumps({"UserName": "bad-role", "Role": "superuser"}))
    assert (status, body["__type"]) == (400, "ValidationException")
    # Every refusal is in the audit log with the principal.
    s.stop()
    events = run_clavis("audit", "export", "--data-dir", s.data_dir, check=False).stdout
    refused = [json.loads(ln) for ln in events.splitlines() if "AccessDeniedException" in ln]
    assert any(e["eventName"] == "DisableKey" and e["userIdentity"]["arn"].endswith(":user/reader1") for e in refused)


def _akid(client):
    return client._request_signer._credentials.access_key


def _secret(client):
    return client._request_signer._credentials.secret_key
