"""The Secrets Manager API (#18) through boto3, the AWS CLI and AWS's client-side caching
library: versions and staging labels, encryption under a Clavis key (with the KMS records in
the audit log), deletion and restore, filters and pagination, GetRandomPassword, and no secret
value in the data directory."""

import json
import string
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION, error_code
from harness import run_clavis


def fails(call, code):
    with pytest.raises(ClientError) as e:
        call()
    assert error_code(e) == code, e.value.response["Error"]
    return e.value.response["Error"]["Message"]


@pytest.fixture()
def sm(server):
    return server.client(service="secretsmanager")


def name():
    return f"test/{uuid.uuid4().hex[:12]}"


def test_create_get_and_arn_forms(sm):
    n = name()
    created = sm.create_secret(Name=n, SecretString="hunter2", Description="a password")
    arn = created["ARN"]
    assert (
        arn.startswith(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{n}-")
        and len(arn) == len(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{n}-") + 6
    )
    assert created["Name"] == n and len(created["VersionId"]) == 36
    # SecretId is a name, a full ARN or a partial ARN (without the random suffix).
    for secret_id in (n, arn, arn[:-7]):
        got = sm.get_secret_value(SecretId=secret_id)
        assert got["SecretString"] == "hunter2" and got["VersionStages"] == ["AWSCURRENT"] and got["ARN"] == arn
    binary = sm.create_secret(Name=name(), SecretBinary=b"\x00\x01binary")
    assert sm.get_secret_value(SecretId=binary["ARN"])["SecretBinary"] == b"\x00\x01binary"
    fails(lambda: sm.create_secret(Name=n, SecretString="again"), "ResourceExistsException")
    fails(lambda: sm.get_secret_value(SecretId="test/does-not-exist"), "ResourceNotFoundException")
    fails(lambda: sm.create_secret(Name=name(), SecretString="a", SecretBinary=b"b"), "InvalidParameterException")
    fails(lambda: sm.create_secret(Name="bad name!"), "InvalidParameterException")
    fails(lambda: sm.create_secret(Name=name(), SecretString="x" * 65537), "ValidationException")
    assert sm.create_secret(Name=name(), SecretString="x" * 65536)["VersionId"]


def test_versions_labels_and_idempotency(sm):
    n = name()
    v1 = sm.create_secret(Name=n, SecretString="one", ClientRequestToken="a" * 32)["VersionId"]
    assert v1 == "a" * 32
    v2 = sm.put_secret_value(SecretId=n, SecretString="two")
    assert v2["VersionStages"] == ["AWSCURRENT"]
    # The same token and value is the same version; another value is ResourceExists.
    again = sm.put_secret_value(SecretId=n, SecretString="two", ClientRequestToken=v2["VersionId"])
    assert again["VersionId"] == v2["VersionId"]
    fails(lambda: sm.put_secret_value(SecretId=n, SecretString="other", ClientRequestToken=v2["VersionId"]), "ResourceExistsException")
    stages = sm.describe_secret(SecretId=n)["VersionIdsToStages"]
    assert stages == {v1: ["AWSPREVIOUS"], v2["VersionId"]: ["AWSCURRENT"]}
    assert sm.get_secret_value(SecretId=n, VersionStage="AWSPREVIOUS")["SecretString"] == "one"
    assert sm.get_secret_value(SecretId=n, VersionId=v1)["SecretString"] == "one"
    # A pending version, then promoted with UpdateSecretVersionStage.
    v3 = sm.put_secret_value(SecretId=n, SecretString="three", VersionStages=["AWSPENDING"])["VersionId"]
    assert sm.get_secret_value(SecretId=n)["SecretString"] == "two"
    fails(lambda: sm.update_secret_version_stage(SecretId=n, VersionStage="AWSCURRENT", MoveToVersionId=v3), "InvalidParameterException")
    sm.update_secret_version_stage(SecretId=n, VersionStage="AWSCURRENT", MoveToVersionId=v3, RemoveFromVersionId=v2["VersionId"])
    stages = sm.describe_secret(SecretId=n)["VersionIdsToStages"]
    assert stages[v3] == ["AWSPENDING", "AWSCURRENT"] and stages[v2["VersionId"]] == ["AWSPREVIOUS"] and v1 not in stages
    assert sm.get_secret_value(SecretId=n)["SecretString"] == "three"
    listed = sm.list_secret_version_ids(SecretId=n)["Versions"]
    assert {v["VersionId"] for v in listed} == {v2["VersionId"], v3}
    with_deprecated = sm.list_secret_version_ids(SecretId=n, IncludeDeprecated=True)["Versions"]
    assert {v["VersionId"] for v in with_deprecated} == {v1, v2["VersionId"], v3}
    fails(lambda: sm.get_secret_value(SecretId=n, VersionStage="NOPE"), "ResourceNotFoundException")
    fails(
        lambda: sm.update_secret_version_stage(SecretId=n, VersionStage="AWSCURRENT", RemoveFromVersionId=v3), "InvalidParameterException"
    )


def test_update_secret_and_kms_key(server, sm):
    kms = server.client()
    key = kms.create_key(Description="for secrets")["KeyMetadata"]
    n = name()
    sm.create_secret(Name=n, SecretString="v1")
    updated = sm.update_secret(SecretId=n, Description="new", KmsKeyId=key["KeyId"], SecretString="v2")
    assert updated["VersionId"]
    d = sm.describe_secret(SecretId=n)
    assert d["Description"] == "new" and d["KmsKeyId"] == key["KeyId"]
    assert sm.get_secret_value(SecretId=n)["SecretString"] == "v2"
    assert sm.get_secret_value(SecretId=n, VersionStage="AWSPREVIOUS")["SecretString"] == "v1"
    versions = {v["VersionId"]: v["KmsKeyIds"] for v in sm.list_secret_version_ids(SecretId=n)["Versions"]}
    assert all(ids == [key["Arn"]] for ids in versions.values()), versions
    # The key disabled: reads fail with DecryptionFailure, writes with EncryptionFailure.
    kms.disable_key(KeyId=key["KeyId"])
    fails(lambda: sm.get_secret_value(SecretId=n), "DecryptionFailure")
    fails(lambda: sm.put_secret_value(SecretId=n, SecretString="v3"), "EncryptionFailure")
    kms.enable_key(KeyId=key["KeyId"])
    assert sm.get_secret_value(SecretId=n)["SecretString"] == "v2"
    # The default key is the account's alias/aws/secretsmanager key.
    aliases = [a["AliasName"] for a in kms.list_aliases()["Aliases"]]
    assert "alias/aws/secretsmanager" in aliases


def test_kms_key_policy_applies_to_secrets(server, sm):
    kms = server.client()
    key = kms.create_key()["KeyMetadata"]
    n = name()
    sm.create_secret(Name=n, SecretString="guarded", KmsKeyId=key["Arn"])
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"},
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}},
            },
        ],
    }
    kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=json.dumps(policy))
    assert fails(lambda: sm.get_secret_value(SecretId=n), "AccessDeniedException") == "Access to KMS is not allowed"


def test_delete_restore_and_force(sm):
    n = name()
    sm.create_secret(Name=n, SecretString="to delete")
    fails(lambda: sm.delete_secret(SecretId=n, RecoveryWindowInDays=6), "InvalidParameterException")
    fails(lambda: sm.delete_secret(SecretId=n, RecoveryWindowInDays=7, ForceDeleteWithoutRecovery=True), "InvalidParameterException")
    deleted = sm.delete_secret(SecretId=n, RecoveryWindowInDays=7)
    assert deleted["Name"] == n
    fails(lambda: sm.get_secret_value(SecretId=n), "InvalidRequestException")
    fails(lambda: sm.put_secret_value(SecretId=n, SecretString="x"), "InvalidRequestException")
    fails(lambda: sm.delete_secret(SecretId=n), "InvalidRequestException")
    assert "DeletedDate" in sm.describe_secret(SecretId=n)
    names = [s["Name"] for s in sm.list_secrets(Filters=[{"Key": "name", "Values": [n]}])["SecretList"]]
    assert names == []
    names = [s["Name"] for s in sm.list_secrets(IncludePlannedDeletion=True, Filters=[{"Key": "name", "Values": [n]}])["SecretList"]]
    assert names == [n]
    fails(lambda: sm.create_secret(Name=n, SecretString="same name"), "ResourceExistsException")
    sm.restore_secret(SecretId=n)
    assert sm.get_secret_value(SecretId=n)["SecretString"] == "to delete"
    sm.delete_secret(SecretId=n, ForceDeleteWithoutRecovery=True)
    fails(lambda: sm.describe_secret(SecretId=n), "ResourceNotFoundException")
    # Idempotent for a secret that does not exist, as AWS documents.
    assert sm.delete_secret(SecretId=n, ForceDeleteWithoutRecovery=True)["Name"] == n
    assert sm.create_secret(Name=n, SecretString="reused")["ARN"]


def test_list_filters_sort_and_pagination(sm):
    prefix = f"list/{uuid.uuid4().hex[:8]}/"
    for i in range(5):
        sm.create_secret(Name=f"{prefix}{i}", SecretString=str(i), Description=f"desc {i}", Tags=[{"Key": "team", "Value": f"t{i % 2}"}])
    names = [
        s["Name"] for s in sm.list_secrets(Filters=[{"Key": "name", "Values": [prefix]}], SortBy="name", SortOrder="asc")["SecretList"]
    ]
    assert names == [f"{prefix}{i}" for i in range(5)]
    page = sm.list_secrets(Filters=[{"Key": "name", "Values": [prefix]}], SortBy="name", SortOrder="asc", MaxResults=2)
    assert [s["Name"] for s in page["SecretList"]] == [f"{prefix}0", f"{prefix}1"] and page["NextToken"]
    rest = sm.list_secrets(
        Filters=[{"Key": "name", "Values": [prefix]}], SortBy="name", SortOrder="asc", MaxResults=2, NextToken=page["NextToken"]
    )
    assert [s["Name"] for s in rest["SecretList"]] == [f"{prefix}2", f"{prefix}3"]
    paginator = sm.get_paginator("list_secrets")
    everything = [
        s["Name"]
        for p in paginator.paginate(Filters=[{"Key": "name", "Values": [prefix]}], PaginationConfig={"PageSize": 2})
        for s in p["SecretList"]
    ]
    assert sorted(everything) == [f"{prefix}{i}" for i in range(5)]
    odd = sm.list_secrets(Filters=[{"Key": "name", "Values": [prefix]}, {"Key": "tag-value", "Values": ["t1"]}])["SecretList"]
    assert sorted(s["Name"] for s in odd) == [f"{prefix}1", f"{prefix}3"]
    not_odd = sm.list_secrets(Filters=[{"Key": "name", "Values": [prefix]}, {"Key": "tag-value", "Values": ["!t1"]}])["SecretList"]
    assert sorted(s["Name"] for s in not_odd) == [f"{prefix}0", f"{prefix}2", f"{prefix}4"]
    entry = [s for s in odd if s["Name"] == f"{prefix}1"][0]
    assert entry["Tags"] == [{"Key": "team", "Value": "t1"}] and list(entry["SecretVersionsToStages"].values()) == [["AWSCURRENT"]]
    fails(lambda: sm.list_secrets(NextToken="junk"), "InvalidNextTokenException")
    fails(lambda: sm.list_secrets(Filters=[{"Key": "colour", "Values": ["x"]}]), "ValidationException")


def test_batch_get_and_tags(sm):
    a, b = name(), name()
    sm.create_secret(Name=a, SecretString="A")
    sm.create_secret(Name=b, SecretString="B")
    out = sm.batch_get_secret_value(SecretIdList=[a, b, "test/missing"])
    assert sorted(v["SecretString"] for v in out["SecretValues"]) == ["A", "B"]
    assert [(e["SecretId"], e["ErrorCode"]) for e in out["Errors"]] == [("test/missing", "ResourceNotFoundException")]
    fails(lambda: sm.batch_get_secret_value(SecretIdList=[a], Filters=[{"Key": "name", "Values": [a]}]), "InvalidParameterException")
    sm.tag_resource(SecretId=a, Tags=[{"Key": "env", "Value": "prod"}, {"Key": "owner", "Value": "me"}])
    sm.untag_resource(SecretId=a, TagKeys=["owner"])
    assert sm.describe_secret(SecretId=a)["Tags"] == [{"Key": "env", "Value": "prod"}]
    fails(lambda: sm.tag_resource(SecretId=a, Tags=[{"Key": "aws:x", "Value": "y"}]), "InvalidParameterException")


def test_get_random_password(server, sm):
    p = sm.get_random_password()["RandomPassword"]
    assert len(p) == 32
    for cls in (string.ascii_lowercase, string.ascii_uppercase, string.digits):
        assert any(c in cls for c in p)
    p = sm.get_random_password(PasswordLength=64, ExcludePunctuation=True, ExcludeCharacters="abc", IncludeSpace=True)["RandomPassword"]
    assert len(p) == 64 and not set(p) & set(string.punctuation + "abc")
    digits = sm.get_random_password(PasswordLength=12, ExcludeLowercase=True, ExcludeUppercase=True, ExcludePunctuation=True)[
        "RandomPassword"
    ]
    assert digits.isdigit()
    # boto3 checks the bounds itself; a raw request reaches the server's check.
    status, out, _ = server.raw("secretsmanager.GetRandomPassword", '{"PasswordLength": 0}', service="secretsmanager")
    assert status == 400 and out["__type"] == "ValidationException"
    fails(
        lambda: sm.get_random_password(ExcludeLowercase=True, ExcludeUppercase=True, ExcludeNumbers=True, ExcludePunctuation=True),
        "InvalidParameterException",
    )


def test_aws_cli_and_the_caching_library(server, sm):
    n = name()
    out = server.cli("secretsmanager", "create-secret", "--name", n, "--secret-string", '{"user":"app","password":"p@ss"}')
    assert out["Name"] == n
    got = server.cli("secretsmanager", "get-secret-value", "--secret-id", n)
    assert json.loads(got["SecretString"]) == {"user": "app", "password": "p@ss"}
    from aws_secretsmanager_caching import SecretCache, SecretCacheConfig

    cache = SecretCache(config=SecretCacheConfig(), client=sm)
    assert json.loads(cache.get_secret_string(n))["password"] == "p@ss"
    sm.put_secret_value(SecretId=n, SecretString='{"user":"app","password":"new"}')
    # The cache serves its copy until its refresh interval; a new cache reads the new value.
    assert json.loads(SecretCache(config=SecretCacheConfig(), client=sm).get_secret_string(n))["password"] == "new"


def test_replication_and_unsupported_operations(server):
    body = json.dumps({"SecretId": "x", "AddReplicaRegions": [{"Region": "eu-west-1"}]})
    status, out, _ = server.raw("secretsmanager.ReplicateSecretToRegions", body, service="secretsmanager")
    assert status == 400 and out["__type"] == "InvalidRequestException"
    # A KMS-scoped signature is refused for the Secrets Manager API, and the other way round.
    status, out, _ = server.raw("secretsmanager.ListSecrets", "{}", service="kms")
    assert status == 400 and out["__type"] == "InvalidSignatureException"
    status, out, _ = server.raw("TrentService.ListKeys", "{}", service="secretsmanager")
    assert status == 400 and out["__type"] == "InvalidSignatureException"


def test_secret_values_never_reach_disk_or_audit_in_clear(fresh_server):
    s = fresh_server.start()
    sm = s.client(service="secretsmanager")
    needle = "needle-" + uuid.uuid4().hex
    n = name()
    sm.create_secret(Name=n, SecretString=needle)
    sm.put_secret_value(SecretId=n, SecretBinary=needle.encode() + b"-binary")
    assert sm.get_secret_value(SecretId=n)["SecretBinary"] == needle.encode() + b"-binary"
    s.kill9()
    files = [p for p in s.data_dir.rglob("*") if p.is_file()]
    assert any(p.name == "clavis.db" for p in files)
    for p in files:
        assert needle.encode() not in p.read_bytes(), f"a secret value in clear in {p}"
    log = (s.data_dir.parent / f"{s.data_dir.name}.log").read_bytes()
    assert needle.encode() not in log
    # Both the Secrets Manager records and the KMS records Secrets Manager made.
    exported = run_clavis("audit", "export", "--data-dir", s.data_dir)
    assert needle.encode() not in exported.stdout.encode()
    records = [json.loads(line) for line in exported.stdout.splitlines() if line.strip()]
    sources = {(r.get("eventSource"), r.get("eventName")) for r in records}
    assert ("secretsmanager.amazonaws.com", "CreateSecret") in sources and ("secretsmanager.amazonaws.com", "GetSecretValue") in sources
    assert ("kms.amazonaws.com", "GenerateDataKey") in sources and ("kms.amazonaws.com", "Decrypt") in sources


def sm_user(server, role):
    out = json.loads(server.clavis("admin", "user", "create", f"sm-{role}-{uuid.uuid4().hex[:6]}", "--role", role, timeout=30).stdout)
    kms = server.client(akid=out["AccessKeyId"], secret=out["SecretAccessKey"])
    return out, server.client(service="secretsmanager", akid=out["AccessKeyId"], secret=out["SecretAccessKey"]), kms


def test_roles_and_resource_policies(server, sm):
    reader, reader_sm, _ = sm_user(server, "reader")
    nobody, nobody_sm, _ = sm_user(server, "none")
    _, writer_sm, _ = sm_user(server, "writer")
    n = name()
    arn = writer_sm.create_secret(Name=n, SecretString="team secret")["ARN"]
    # Roles: a reader reads but cannot write or delete; a writer cannot delete; none does nothing.
    assert reader_sm.get_secret_value(SecretId=n)["SecretString"] == "team secret"
    fails(lambda: reader_sm.put_secret_value(SecretId=n, SecretString="x"), "AccessDeniedException")
    fails(lambda: writer_sm.delete_secret(SecretId=n), "AccessDeniedException")
    fails(lambda: nobody_sm.describe_secret(SecretId=n), "AccessDeniedException")
    fails(lambda: nobody_sm.list_secrets(), "AccessDeniedException")
    # A resource policy: an explicit Deny beats the reader's role; an Allow naming a user lets
    # it describe the secret (reading the value also needs kms:Decrypt on the key, which a
    # role of none does not have under the default key policy).
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Principal": {"AWS": reader["Arn"]}, "Action": "secretsmanager:GetSecretValue", "Resource": "*"},
            {
                "Effect": "Allow",
                "Principal": {"AWS": nobody["Arn"]},
                "Action": ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
                "Resource": "*",
            },
        ],
    }
    fails(lambda: writer_sm.put_resource_policy(SecretId=n, ResourcePolicy=json.dumps(doc)), "AccessDeniedException")
    sm.put_resource_policy(SecretId=n, ResourcePolicy=json.dumps(doc))
    assert json.loads(sm.get_resource_policy(SecretId=arn)["ResourcePolicy"]) == doc
    fails(lambda: reader_sm.get_secret_value(SecretId=n), "AccessDeniedException")
    assert reader_sm.describe_secret(SecretId=n)["Name"] == n
    assert nobody_sm.describe_secret(SecretId=n)["Name"] == n
    assert fails(lambda: nobody_sm.get_secret_value(SecretId=n), "AccessDeniedException") == "Access to KMS is not allowed"
    sm.delete_resource_policy(SecretId=n)
    assert "ResourcePolicy" not in sm.get_resource_policy(SecretId=n)
    assert reader_sm.get_secret_value(SecretId=n)["SecretString"] == "team secret"
    # BlockPublicPolicy, an unknown condition key, and ValidateResourcePolicy.
    public = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "secretsmanager:*", "Resource": "*"}]}
    fails(lambda: sm.put_resource_policy(SecretId=n, ResourcePolicy=json.dumps(public), BlockPublicPolicy=True), "PublicPolicyException")
    odd = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"x:y": "z"}}}],
    }
    fails(lambda: sm.put_resource_policy(SecretId=n, ResourcePolicy=json.dumps(odd)), "MalformedPolicyDocumentException")
    checked = sm.validate_resource_policy(ResourcePolicy=json.dumps(odd))
    assert checked["PolicyValidationPassed"] is False and checked["ValidationErrors"][0]["CheckName"] == "SYNTAX_CHECKING"
    assert sm.validate_resource_policy(SecretId=n, ResourcePolicy=json.dumps(doc))["PolicyValidationPassed"] is True
    fails(lambda: sm.validate_resource_policy(ResourcePolicy="{not json"), "MalformedPolicyDocumentException")


# Regressions from the adversarial review of #18.


def test_kms_key_changes_are_checked_and_atomic(server, sm):
    import base64
    import threading

    kms = server.client()
    k1, k2 = kms.create_key()["KeyMetadata"]["KeyId"], kms.create_key()["KeyMetadata"]["KeyId"]
    n = name()
    sm.create_secret(Name=n, SecretString="start", KmsKeyId=k1)
    # A key the caller cannot use is refused, and nothing changes.
    fails(lambda: sm.update_secret(SecretId=n, KmsKeyId="alias/does-not-exist"), "EncryptionFailure")
    assert sm.describe_secret(SecretId=n)["KmsKeyId"] == k1
    # Key changes racing value writes never leave two AWSCURRENT versions.
    errors = []

    def flip():
        for i in range(15):
            try:
                sm.update_secret(SecretId=n, KmsKeyId=(k2 if i % 2 == 0 else k1))
            except ClientError as e:
                errors.append(e.response["Error"]["Code"])

    def put():
        for _ in range(15):
            try:
                sm.put_secret_value(SecretId=n, SecretString=base64.b64encode(os_random(12)).decode())
            except ClientError as e:
                errors.append(e.response["Error"]["Code"])

    threads = [threading.Thread(target=flip), threading.Thread(target=put), threading.Thread(target=put)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(errors) <= {"InternalServiceError"}, errors
    stages = sm.describe_secret(SecretId=n)["VersionIdsToStages"]
    holders = [v for v, labels in stages.items() if "AWSCURRENT" in labels]
    assert len(holders) == 1, stages
    assert sum("AWSPREVIOUS" in labels for labels in stages.values()) == 1, stages
    assert sm.get_secret_value(SecretId=n)["VersionId"] == holders[0]


def os_random(n):
    import os

    return os.urandom(n)


def test_a_writer_without_decrypt_cannot_move_a_secret_to_its_own_key(server, sm):
    kms = server.client()
    writer, writer_sm, writer_kms = sm_user(server, "writer")
    guarded = kms.create_key()["KeyMetadata"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": writer["Arn"]}, "Action": "kms:Decrypt", "Resource": "*"},
        ],
    }
    kms.put_key_policy(KeyId=guarded["KeyId"], PolicyName="default", Policy=json.dumps(policy))
    n = name()
    sm.create_secret(Name=n, SecretString="write-only for the writer", KmsKeyId=guarded["KeyId"])
    fails(lambda: writer_sm.get_secret_value(SecretId=n), "AccessDeniedException")
    own = writer_kms.create_key()["KeyMetadata"]["KeyId"]
    fails(lambda: writer_sm.update_secret(SecretId=n, KmsKeyId=own), "AccessDeniedException")
    assert sm.describe_secret(SecretId=n)["KmsKeyId"] == guarded["KeyId"]
    sm.put_secret_value(SecretId=n, SecretString="rotated by the application")
    fails(lambda: writer_sm.get_secret_value(SecretId=n), "AccessDeniedException")


def test_labels_are_unique_and_bounded(server, sm):
    n = name()
    first = sm.create_secret(Name=n, SecretString="one")["VersionId"]
    second = sm.put_secret_value(SecretId=n, SecretString="two", VersionStages=["AWSCURRENT", "AWSPREVIOUS", "dup", "dup"])
    assert second["VersionStages"] == ["AWSCURRENT", "AWSPREVIOUS", "dup"]
    assert first not in sm.describe_secret(SecretId=n)["VersionIdsToStages"]
    fails(lambda: sm.put_secret_value(SecretId=n, SecretString="x", VersionStages=["a,b"]), "ValidationException")
    fails(lambda: sm.create_secret(Name=name(), SecretString="x", Description="nul\x00"), "ValidationException")
    fails(lambda: sm.create_secret(Name=name(), Tags=[{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}]), "InvalidParameterException")
    # At most 100 versions: labelled or younger than a day, none can be removed yet.
    many = name()
    sm.create_secret(Name=many, SecretString="0")
    for i in range(99):
        sm.put_secret_value(SecretId=many, SecretString=str(i + 1))
    fails(lambda: sm.put_secret_value(SecretId=many, SecretString="101"), "LimitExceededException")
    assert sm.get_secret_value(SecretId=many)["SecretString"] == "99"
    # A token Clavis did not issue, past the end of the list.
    import base64

    huge = base64.b64encode(b"clavis-page:18446744073709551615").decode()
    fails(lambda: sm.list_secrets(NextToken=huge), "InvalidNextTokenException")


def test_password_with_narrow_classes_is_prompt_and_complete(sm):
    lower = "bcdefghijklmnopqrstuvwxyz"
    upper = "BCDEFGHIJKLMNOPQRSTUVWXYZ"
    for _ in range(20):
        p = sm.get_random_password(PasswordLength=5, ExcludeCharacters=lower + upper + "123456789", IncludeSpace=True)["RandomPassword"]
        assert len(p) == 5 and {"a", "A", "0", " "} <= set(p), p


def test_the_default_key_is_protected_and_records_name_the_secret(server, sm, tmp_path):
    kms = server.client()
    n = name()
    sm.create_secret(Name=n, SecretString="under the default key")
    default = kms.describe_key(KeyId="alias/aws/secretsmanager")["KeyMetadata"]["KeyId"]
    fails(lambda: kms.disable_key(KeyId=default), "UnsupportedOperationException")
    fails(lambda: kms.schedule_key_deletion(KeyId=default, PendingWindowInDays=7), "UnsupportedOperationException")
    open_policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}]}
    fails(lambda: kms.put_key_policy(KeyId=default, PolicyName="default", Policy=json.dumps(open_policy)), "UnsupportedOperationException")
    assert sm.get_secret_value(SecretId=n)["SecretString"] == "under the default key"
    arn = sm.describe_secret(SecretId=n)["ARN"]
    exported = run_clavis("audit", "export", "--data-dir", server.data_dir).stdout
    named = [json.loads(line) for line in exported.splitlines() if arn in line]
    assert any(r["eventName"] == "GetSecretValue" and r["resources"][0]["type"] == "AWS::SecretsManager::Secret" for r in named)


def rotation_server(tmp_root, request, extra_args=()):
    """A server with two rotation executors: `rotator` runs the template-shaped function with the
    test's credentials; `broken` always fails."""
    import os
    import stat
    import sys
    from pathlib import Path

    from conftest import AKID, SECRET, Server

    base = tmp_root / f"rot-{request.node.name}"
    base.mkdir(parents=True, exist_ok=True)
    template = Path(__file__).resolve().parent / "rotation" / "template_rotator.py"
    rotator = base / "rotator.sh"
    rotator.write_text(f"#!/bin/sh\nexport AWS_ACCESS_KEY_ID={AKID} AWS_SECRET_ACCESS_KEY={SECRET}\nexec {sys.executable} {template}\n")
    broken = base / "broken.sh"
    broken.write_text("#!/bin/sh\ncat >/dev/null\nexit 3\n")
    for p in (rotator, broken):
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    args = ["--rotation-executor", f"rotator={rotator}", "--rotation-executor", f"broken={broken}", *extra_args]
    s = Server(base / "data", args=args)
    assert os.access(rotator, os.X_OK)
    return s


LAMBDA = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:rotator"


def test_rotation_through_the_template_function(tmp_root, request):
    s = rotation_server(tmp_root, request).start()
    try:
        sm = s.client(service="secretsmanager")
        n = name()
        first = sm.create_secret(Name=n, SecretString="initial password")["VersionId"]
        out = sm.rotate_secret(SecretId=n, RotationLambdaARN=LAMBDA, RotationRules={"AutomaticallyAfterDays": 30})
        new = out["VersionId"]
        current = sm.get_secret_value(SecretId=n)
        assert current["VersionId"] == new and current["SecretString"] != "initial password" and len(current["SecretString"]) == 32
        assert current["VersionStages"] == ["AWSCURRENT"]
        assert sm.get_secret_value(SecretId=n, VersionStage="AWSPREVIOUS")["SecretString"] == "initial password"
        d = sm.describe_secret(SecretId=n)
        assert d["RotationEnabled"] is True and d["RotationLambdaARN"] == LAMBDA and d["RotationRules"]["AutomaticallyAfterDays"] == 30
        assert "LastRotatedDate" in d and "NextRotationDate" in d
        assert d["VersionIdsToStages"] == {first: ["AWSPREVIOUS"], new: ["AWSCURRENT"]}
        # A failing step leaves AWSPENDING on the new version; the next RotateSecret retries it.
        fails(lambda: sm.rotate_secret(SecretId=n, RotationLambdaARN=LAMBDA.replace("rotator", "broken")), "InvalidRequestException")
        pending = [v for v, st in sm.describe_secret(SecretId=n)["VersionIdsToStages"].items() if st == ["AWSPENDING"]]
        assert len(pending) == 1
        fails(lambda: sm.get_secret_value(SecretId=n, VersionStage="AWSPENDING"), "ResourceNotFoundException")
        again = sm.rotate_secret(SecretId=n, RotationLambdaARN=LAMBDA)
        assert again["VersionId"] == pending[0]
        assert sm.get_secret_value(SecretId=n)["VersionId"] == pending[0]
        fails(lambda: sm.rotate_secret(SecretId=n, RotationLambdaARN=LAMBDA.replace("rotator", "nobody")), "InvalidRequestException")
        fails(lambda: sm.rotate_secret(SecretId=n, RotationRules={"ScheduleExpression": "cron(0 12 L * ? *)"}), "InvalidParameterException")
        # A cron schedule (UTC): the next rotation is at the next 12:00.
        sm.rotate_secret(SecretId=n, RotationRules={"ScheduleExpression": "cron(0 12 * * ? *)"}, RotateImmediately=False)
        when = sm.describe_secret(SecretId=n)["NextRotationDate"]
        assert (when.astimezone(__import__("datetime").timezone.utc).hour, when.minute) == (12, 0)
        cancelled = sm.cancel_rotate_secret(SecretId=n)
        assert cancelled["Name"] == n
        d = sm.describe_secret(SecretId=n)
        assert d["RotationEnabled"] is False and "NextRotationDate" not in d
    finally:
        s.stop()


def test_scheduled_rotation_runs_once(tmp_root, request):
    s = rotation_server(tmp_root, request, ["--dangerous-test-clock", "--scheduler-interval-ms", "50"]).start()
    try:
        sm = s.client(service="secretsmanager")
        n = name()
        sm.create_secret(Name=n, SecretString="v0")
        sm.rotate_secret(
            SecretId=n, RotationLambdaARN=LAMBDA, RotationRules={"ScheduleExpression": "rate(10 days)"}, RotateImmediately=False
        )
        assert sm.get_secret_value(SecretId=n)["SecretString"] == "v0"
        status, body, _ = s.raw("ClavisAdmin.AdvanceTestClock", json.dumps({"Seconds": 11 * 86400}))
        assert status == 200, body
        import time

        deadline = time.time() + 20
        while time.time() < deadline and sm.get_secret_value(SecretId=n)["SecretString"] == "v0":
            time.sleep(0.1)
        assert sm.get_secret_value(SecretId=n)["SecretString"] != "v0"
        time.sleep(0.5)  # ten more scheduler periods: the rotation is not repeated
        assert len(sm.list_secret_version_ids(SecretId=n)["Versions"]) == 2
        assert s.log_path.read_text().count("secret rotated") == 1
    finally:
        s.stop()


def test_rotation_through_a_signed_https_webhook(tmp_root, request):
    import hashlib
    import hmac
    import http.server
    import os
    import ssl
    import subprocess
    import sys
    import threading
    import time
    from pathlib import Path

    from conftest import AKID, SECRET, Server, free_port
    from test_transport_hardening import make_ca, make_cert

    d = tmp_root / f"hook-{request.node.name}"
    d.mkdir(parents=True, exist_ok=True)
    ca = make_ca(d, "hookca")
    cert, key = make_cert(d, "hook", ca="hookca")
    secret_key = os.urandom(32).hex().encode()
    (d / "webhook.key").write_bytes(secret_key + b"\n")
    template = Path(__file__).resolve().parent / "rotation" / "template_rotator.py"
    seen = []
    endpoint = {}

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ts = self.headers.get("X-Clavis-Timestamp", "")
            expected = hmac.new(secret_key, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            ok = hmac.compare_digest(expected, self.headers.get("X-Clavis-Signature", "")) and abs(time.time() - int(ts or 0)) < 300
            seen.append((json.loads(body)["Step"], ok))
            if not ok:
                self.send_response(403)
                self.end_headers()
                return
            env = {
                **os.environ,
                "AWS_ACCESS_KEY_ID": AKID,
                "AWS_SECRET_ACCESS_KEY": SECRET,
                "AWS_DEFAULT_REGION": REGION,
                "SECRETS_MANAGER_ENDPOINT": endpoint["url"],
            }
            done = subprocess.run([sys.executable, str(template)], input=body, env=env, capture_output=True)
            self.send_response(200 if done.returncode == 0 else 500)
            self.end_headers()

        def log_message(self, *args):
            pass

    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Hook)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    args = ["--rotation-executor", f"hook=https://127.0.0.1:{port}/rotate", "--rotation-webhook-key-file", str(d / "webhook.key")]
    s = Server(d / "data", args=args, env={"AWS_CA_BUNDLE": str(ca)}).start()
    try:
        endpoint["url"] = s.endpoint
        sm = s.client(service="secretsmanager")
        n = name()
        sm.create_secret(Name=n, SecretString="before the webhook")
        sm.rotate_secret(SecretId=n, RotationLambdaARN=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:hook")
        assert sm.get_secret_value(SecretId=n)["SecretString"] != "before the webhook"
        assert seen == [("createSecret", True), ("setSecret", True), ("testSecret", True), ("finishSecret", True)]
    finally:
        s.stop()
        httpd.shutdown()
