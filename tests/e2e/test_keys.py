"""Key management through boto3: CreateKey, DescribeKey, ListKeys, UpdateKeyDescription,
Enable/DisableKey, aliases, tags and the stored key policy."""

import json

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION, error_code


def test_create_and_describe_key(kms):
    meta = kms.create_key(Description="orders DB root key", Tags=[{"TagKey": "team", "TagValue": "payments"}])["KeyMetadata"]
    assert meta["Arn"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{meta['KeyId']}"
    assert meta["AWSAccountId"] == ACCOUNT
    assert (meta["KeyState"], meta["Enabled"], meta["KeyUsage"], meta["KeySpec"], meta["Origin"]) == (
        "Enabled", True, "ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT", "AWS_KMS")
    assert meta["CustomerMasterKeySpec"] == "SYMMETRIC_DEFAULT"
    assert meta["KeyManager"] == "CUSTOMER"
    assert meta["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"]
    assert meta["Description"] == "orders DB root key"
    described = kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]
    assert described == meta
    assert kms.list_resource_tags(KeyId=meta["KeyId"])["Tags"] == [{"TagKey": "team", "TagValue": "payments"}]


def test_create_key_validation(kms):
    for kwargs, code in [
        ({"KeyUsage": "SIGN_VERIFY"}, "ValidationException"),
        ({"KeySpec": "RSA_2048", "CustomerMasterKeySpec": "RSA_2048"}, "ValidationException"),
        ({"Description": "x" * 8193}, "ValidationException"),
        ({"Policy": "not json"}, "MalformedPolicyDocumentException"),
        ({"Tags": [{"TagKey": "aws:reserved", "TagValue": "x"}]}, "TagException"),
        ({"Tags": [{"TagKey": f"k{i}", "TagValue": "v"} for i in range(51)]}, "LimitExceededException"),
        ({"MultiRegion": True}, "UnsupportedOperationException"),
        ({"Origin": "AWS_CLOUDHSM"}, "UnsupportedOperationException"),
    ]:
        with pytest.raises(ClientError) as e:
            kms.create_key(**kwargs)
        assert error_code(e) == code, kwargs


def test_policy_is_stored_and_returned(kms):
    default_key = kms.create_key()["KeyMetadata"]
    policy = json.loads(kms.get_key_policy(KeyId=default_key["KeyId"], PolicyName="default")["Policy"])
    assert policy["Statement"][0]["Principal"]["AWS"] == f"arn:aws:iam::{ACCOUNT}:root"
    assert kms.list_key_policies(KeyId=default_key["KeyId"])["PolicyNames"] == ["default"]
    custom = json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"}]}
    )
    k = kms.create_key(Policy=custom)["KeyMetadata"]
    assert kms.get_key_policy(KeyId=k["KeyId"])["Policy"] == custom


def test_list_keys_paginates(kms):
    created = {kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(5)}
    seen, marker, pages = [], None, 0
    while True:
        page = kms.list_keys(Limit=2, **({"Marker": marker} if marker else {}))
        pages += 1
        assert len(page["Keys"]) <= 2
        seen += [k["KeyId"] for k in page["Keys"]]
        for k in page["Keys"]:
            assert k["KeyArn"].endswith(k["KeyId"])
        if not page["Truncated"]:
            assert "NextMarker" not in page
            break
        marker = page["NextMarker"]
    assert created <= set(seen)
    assert len(seen) == len(set(seen)) and pages >= 3
    # The paginator sees the same keys.
    via_paginator = [k["KeyId"] for p in kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 3}) for k in p["Keys"]]
    assert via_paginator == seen
    with pytest.raises(ClientError) as e:
        kms.list_keys(Marker="garbage")
    assert error_code(e) == "InvalidMarkerException"
    with pytest.raises(ClientError) as e:
        kms.list_keys(Limit=1001)
    assert error_code(e) == "ValidationException"


def test_update_description_enable_disable(kms):
    k = kms.create_key(Description="before")["KeyMetadata"]
    kms.update_key_description(KeyId=k["Arn"], Description="after")
    assert kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["Description"] == "after"
    kms.disable_key(KeyId=k["KeyId"])
    m = kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]
    assert (m["KeyState"], m["Enabled"]) == ("Disabled", False)
    kms.disable_key(KeyId=k["KeyId"])  # idempotent
    kms.enable_key(KeyId=k["Arn"])
    m = kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]
    assert (m["KeyState"], m["Enabled"]) == ("Enabled", True)
    with pytest.raises(ClientError) as e:
        kms.disable_key(KeyId="11111111-2222-4333-8444-555555555555")
    assert error_code(e) == "NotFoundException"


def test_alias_lifecycle(kms):
    a = kms.create_key()["KeyMetadata"]
    b = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/lifecycle", TargetKeyId=a["KeyId"])
    with pytest.raises(ClientError) as e:
        kms.create_alias(AliasName="alias/lifecycle", TargetKeyId=b["KeyId"])
    assert error_code(e) == "AlreadyExistsException"
    for bad, code in [
        # AWS's codes (#17): ValidationException for a missing prefix or a colon,
        # NotAuthorizedException for the reserved prefix.
        ("lifecycle", "ValidationException"),
        ("alias/aws/reserved", "NotAuthorizedException"),
        ("alias/bad name", "ValidationException"),
        ("alias/my:alias", "ValidationException"),
    ]:
        with pytest.raises(ClientError) as e:
            kms.create_alias(AliasName=bad, TargetKeyId=a["KeyId"])
        assert error_code(e) == code, bad
    with pytest.raises(ClientError) as e:
        kms.create_alias(AliasName="alias/to-nothing", TargetKeyId="11111111-2222-4333-8444-555555555555")
    assert error_code(e) == "NotFoundException"

    entry = [x for x in kms.list_aliases()["Aliases"] if x["AliasName"] == "alias/lifecycle"][0]
    assert entry["TargetKeyId"] == a["KeyId"]
    assert entry["AliasArn"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/lifecycle"
    assert [x["AliasName"] for x in kms.list_aliases(KeyId=a["KeyId"])["Aliases"]] == ["alias/lifecycle"]
    assert kms.list_aliases(KeyId=b["Arn"])["Aliases"] == []

    kms.update_alias(AliasName="alias/lifecycle", TargetKeyId=b["Arn"])
    assert kms.describe_key(KeyId="alias/lifecycle")["KeyMetadata"]["KeyId"] == b["KeyId"]
    kms.delete_alias(AliasName="alias/lifecycle")
    with pytest.raises(ClientError) as e:
        kms.describe_key(KeyId="alias/lifecycle")
    assert error_code(e) == "NotFoundException"
    for call in [
        lambda: kms.delete_alias(AliasName="alias/lifecycle"),
        lambda: kms.update_alias(AliasName="alias/lifecycle", TargetKeyId=a["KeyId"]),
    ]:
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == "NotFoundException"


def test_list_aliases_paginates(kms):
    k = kms.create_key()["KeyMetadata"]
    names = [f"alias/page-{i}" for i in range(5)]
    for n in names:
        kms.create_alias(AliasName=n, TargetKeyId=k["KeyId"])
    got = [
        a["AliasName"]
        for p in kms.get_paginator("list_aliases").paginate(KeyId=k["KeyId"], PaginationConfig={"PageSize": 2})
        for a in p["Aliases"]
    ]
    assert got == names


def test_tags(kms):
    k = kms.create_key()["KeyMetadata"]
    kms.tag_resource(KeyId=k["KeyId"], Tags=[{"TagKey": "b", "TagValue": "2"}, {"TagKey": "a", "TagValue": "1"}])
    kms.tag_resource(KeyId=k["Arn"], Tags=[{"TagKey": "a", "TagValue": "one"}])
    assert kms.list_resource_tags(KeyId=k["KeyId"])["Tags"] == [{"TagKey": "a", "TagValue": "one"}, {"TagKey": "b", "TagValue": "2"}]
    kms.untag_resource(KeyId=k["KeyId"], TagKeys=["a"])
    assert kms.list_resource_tags(KeyId=k["KeyId"])["Tags"] == [{"TagKey": "b", "TagValue": "2"}]
    kms.tag_resource(KeyId=k["KeyId"], Tags=[{"TagKey": f"t{i:02}", "TagValue": ""} for i in range(49)])
    page = kms.list_resource_tags(KeyId=k["KeyId"], Limit=10)
    assert page["Truncated"] and len(page["Tags"]) == 10
    rest = kms.list_resource_tags(KeyId=k["KeyId"], Marker=page["NextMarker"], Limit=50)
    assert len(page["Tags"]) + len(rest["Tags"]) == 50 and not rest["Truncated"]
    with pytest.raises(ClientError) as e:
        kms.tag_resource(KeyId=k["KeyId"], Tags=[{"TagKey": "one-too-many", "TagValue": "x"}])
    assert error_code(e) == "LimitExceededException"
    with pytest.raises(ClientError) as e:
        kms.tag_resource(KeyId=k["KeyId"], Tags=[{"TagKey": "aws:x", "TagValue": "x"}])
    assert error_code(e) == "TagException"
